//! `rowcast slave --skip-at POSITION` against real servers: a transaction
//! the replica cannot apply stops the slave with an error naming it as
//! the flag takes it; the flag skips exactly that one transaction (all of
//! it, also in parts or XA), once, on record in `rowcast.skipped` and in
//! `rowcast status`; again it is a no-op; a wrong one is refused clearly.

mod support;

use std::time::Duration;

use support::*;

/// Waits for the slave to exit on an error; returns the position its
/// error tells `--skip-at` to take, and the log.
fn stopped_with_hint(slave: &mut Rowcast) -> (String, String) {
    let exited = wait_until(Duration::from_secs(120), || !slave.is_running());
    let log = strip_ansi(&slave.log_text());
    assert!(exited, "the slave did not stop:\n{log}");
    let status = slave.stop();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    let at = log
        .split("or skip this one transaction")
        .nth(1)
        .and_then(|rest| rest.split("`rowcast slave ... --skip-at ").nth(1))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no --skip-at in the error:\n{log}"))
        .to_string();
    (at, log)
}

/// Waits for the slave to exit on an error; returns its log.
fn stopped(slave: &mut Rowcast) -> String {
    let exited = wait_until(Duration::from_secs(120), || !slave.is_running());
    let log = strip_ansi(&slave.log_text());
    assert!(exited, "the slave did not stop:\n{log}");
    let status = slave.stop();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    log
}

fn rows(db: &MariaDb, sql: &str) -> String {
    db.sql(sql).trim().to_string()
}

fn slave_status<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no slave {name} in {s}"))
}

/// `file:offset` with the offset moved by `by`.
fn shifted(position: &str, by: u64) -> String {
    let (file, offset) = position.rsplit_once(':').unwrap();
    format!("{file}:{}", offset.parse::<u64>().unwrap() + by)
}

#[test]
fn a_transaction_the_replica_cannot_apply_is_skipped_once_on_purpose_and_on_record() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY, v INT); \
         INSERT INTO s.t VALUES (1, 1)",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let mut slave = Rowcast::slave(&listen, &replica, "sk");
    wait_caught_up(&primary, &replica, "sk");

    // The replica diverges; the primary's next transaction conflicts.
    replica.sql("INSERT INTO s.t VALUES (2, 99)");
    primary.sql("BEGIN; INSERT INTO s.t VALUES (3, 3); INSERT INTO s.t VALUES (2, 2); COMMIT");
    let failing = primary_position(&primary);
    let (at, log) = stopped_with_hint(&mut slave);
    assert_eq!(
        at, failing,
        "the error names the transaction's position:\n{log}"
    );
    assert!(log.contains("Fix the replica and restart"), "{log}");
    let s = status_json(&listen);
    let sk = slave_status(&s, "sk");
    assert_eq!(sk["state"], "failed", "{sk}");
    assert!(
        sk["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("--skip-at {at}")),
        "{sk}"
    );

    // Skipped: the slave goes on, later writes arrive, and exactly that
    // transaction is missing (its other row too).
    primary.sql("INSERT INTO s.t VALUES (4, 4)");
    let mut slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &at]);
    wait_caught_up(&primary, &replica, "sk");
    assert_eq!(
        rows(&replica, "SELECT id, v FROM s.t ORDER BY id"),
        "1\t1\n2\t99\n4\t4"
    );
    let record = rows(
        &replica,
        "SELECT position, reason FROM rowcast.skipped WHERE slave_name = 'sk'",
    );
    assert!(record.starts_with(&format!("{at}\t")), "{record}");
    assert!(
        record.contains("Duplicate entry"),
        "the reason is the error: {record}"
    );
    let log = strip_ansi(&slave.log_text());
    assert!(log.contains("skipped one transaction on purpose"), "{log}");
    // Status shows the skip.
    assert!(wait_until(Duration::from_secs(60), || {
        let s = status_json(&listen);
        let sk = slave_status(&s, "sk");
        sk["state"] == "streaming" && sk["settings"]["skipped"][0]["position"] == at.as_str()
    }));
    let text = run_rowcast(&["status", "--master", &listen], Duration::from_secs(60));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains(&format!("sk: skipped the transaction at {at}")),
        "{text}"
    );
    assert!(slave.stop().is_some_and(|s| s.success()));

    // The same flag again is a logged no-op.
    primary.sql("INSERT INTO s.t VALUES (5, 5)");
    let mut slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &at]);
    wait_caught_up(&primary, &replica, "sk");
    assert_eq!(
        rows(&replica, "SELECT id, v FROM s.t ORDER BY id"),
        "1\t1\n2\t99\n4\t4\n5\t5"
    );
    assert_eq!(rows(&replica, "SELECT COUNT(*) FROM rowcast.skipped"), "1");
    assert!(
        wait_until(Duration::from_secs(30), || strip_ansi(&slave.log_text())
            .contains("skipped already")),
        "{}",
        slave.log_text()
    );
    assert!(slave.stop().is_some_and(|s| s.success()));

    // A position that names no transaction is refused when the slave
    // would pass it, naming both; nothing after it is applied.
    let wrong = shifted(&primary_position(&primary), 1);
    let before = slave_position(&replica, "sk");
    let mut slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &wrong]);
    primary.sql("INSERT INTO s.t VALUES (6, 6)");
    let next = primary_position(&primary);
    let log = stopped(&mut slave);
    assert!(
        log.contains(&format!("--skip-at {wrong} names no transaction")) && log.contains(&next),
        "{log}"
    );
    assert_eq!(slave_position(&replica, "sk"), before);
    assert_eq!(rows(&replica, "SELECT COUNT(*) FROM s.t WHERE id = 6"), "0");
    assert_eq!(rows(&replica, "SELECT COUNT(*) FROM rowcast.skipped"), "1");

    // An unreadable one is refused before anything is done.
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &listen,
            "--target",
            &replica.url(),
            "--name",
            "sk",
            "--skip-at",
            "nonsense",
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not a source position"), "{err}");

    // Without the flag, the slave goes on with what it had not applied.
    let mut slave = Rowcast::slave(&listen, &replica, "sk");
    wait_caught_up(&primary, &replica, "sk");
    assert_eq!(rows(&replica, "SELECT COUNT(*) FROM s.t WHERE id = 6"), "1");
    assert!(slave.stop().is_some_and(|s| s.success()));

    // A backlog, applied in batches: the error still names the exact
    // transaction that fails, and the ones before it are in.
    replica.sql("INSERT INTO s.t VALUES (12, 99)");
    primary.sql("INSERT INTO s.t VALUES (10, 10)");
    primary.sql("INSERT INTO s.t VALUES (11, 11)");
    let before_bad = primary_position(&primary);
    primary.sql("INSERT INTO s.t VALUES (12, 12)");
    let bad = primary_position(&primary);
    primary.sql("INSERT INTO s.t VALUES (13, 13)");
    let mut slave = Rowcast::slave(&listen, &replica, "sk");
    let (at, log) = stopped_with_hint(&mut slave);
    assert_eq!(at, bad, "{log}");
    assert_eq!(slave_position(&replica, "sk"), before_bad);
    assert_eq!(
        rows(&replica, "SELECT id, v FROM s.t WHERE id >= 10 ORDER BY id"),
        "10\t10\n11\t11\n12\t99"
    );

    // A table missing on the replica: the same way out.
    let mut slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &at]);
    primary.sql("CREATE TABLE s.gone (id INT PRIMARY KEY)");
    wait_caught_up(&primary, &replica, "sk");
    assert_eq!(
        rows(&replica, "SELECT COUNT(*) FROM s.t WHERE id = 13"),
        "1"
    );
    replica.sql("DROP TABLE s.gone");
    primary.sql("INSERT INTO s.gone VALUES (1)");
    let missing = primary_position(&primary);
    let (at, log) = stopped_with_hint(&mut slave);
    assert_eq!(at, missing, "{log}");
    primary.sql("INSERT INTO s.t VALUES (14, 14)");
    let _slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &at]);
    wait_caught_up(&primary, &replica, "sk");
    assert_eq!(
        rows(&replica, "SELECT COUNT(*) FROM s.t WHERE id = 14"),
        "1"
    );
    assert_eq!(
        rows(&replica, "SELECT position FROM rowcast.skipped ORDER BY id"),
        format!("{}\n{bad}\n{missing}", failing)
    );
}

/// A large transaction sent in parts is skipped whole, named by its
/// first part; an XA transaction at its XA COMMIT, its held rows dropped;
/// a flag for a later position while the slave fails earlier says so.
#[test]
fn a_transaction_in_parts_and_an_xa_transaction_are_skipped_whole() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE s; CREATE TABLE s.big (id INT PRIMARY KEY, pad VARCHAR(200)); \
         CREATE TABLE s.t (id INT PRIMARY KEY, v INT)",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_with(&primary, data.path(), &listen, &["--part-kb", "1"]);
    let mut slave = Rowcast::slave(&listen, &replica, "sk");
    wait_caught_up(&primary, &replica, "sk");

    replica.sql("INSERT INTO s.big VALUES (1090, 'mine')");
    primary.sql("INSERT INTO s.big SELECT seq, REPEAT('x', 200) FROM s.seq_1000_to_1100");
    let big_commit = primary_position(&primary);
    primary.sql("INSERT INTO s.t VALUES (1, 1)");
    let (at, log) = stopped_with_hint(&mut slave);
    // Named by its first part, which ends before its commit: it did
    // travel in parts.
    let offset = |p: &str| p.rsplit_once(':').unwrap().1.parse::<u64>().unwrap();
    assert!(
        offset(&at) < offset(&big_commit),
        "{at} vs {big_commit}:\n{log}"
    );
    assert!(log.contains("named by its first part"), "{log}");
    let mut slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &at]);
    wait_caught_up(&primary, &replica, "sk");
    assert_eq!(rows(&replica, "SELECT id, pad FROM s.big"), "1090\tmine");
    assert_eq!(rows(&replica, "SELECT id, v FROM s.t"), "1\t1");
    assert_eq!(
        rows(&replica, "SELECT position FROM rowcast.skipped"),
        at,
        "the skip is recorded under the position the error named"
    );
    assert!(
        strip_ansi(&slave.log_text()).contains("skipped one transaction on purpose"),
        "{}",
        slave.log_text()
    );

    // XA: the prepared rows conflict at XA COMMIT.
    replica.sql("INSERT INTO s.t VALUES (20, 99)");
    primary.sql(
        "XA START 'x1'; INSERT INTO s.t VALUES (21, 21); INSERT INTO s.t VALUES (20, 20); \
         XA END 'x1'; XA PREPARE 'x1'",
    );
    primary.sql("XA COMMIT 'x1'");
    let xa_commit = primary_position(&primary);
    let (at2, log) = stopped_with_hint(&mut slave);
    assert_eq!(at2, xa_commit, "named by its XA COMMIT:\n{log}");
    assert!(log.contains("named by its XA COMMIT"), "{log}");

    // A flag for a later position: the slave stops on this one and says
    // it did not reach the flag's.
    let later = shifted(&xa_commit, 1000);
    let mut slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &later]);
    let log = stopped(&mut slave);
    assert!(
        log.contains(&format!(
            "The slave stopped at {at2}, before reaching --skip-at {later}"
        )),
        "{log}"
    );

    let mut slave = Rowcast::slave_with(&listen, &replica, "sk", &["--skip-at", &at2]);
    primary.sql("INSERT INTO s.t VALUES (22, 22)");
    wait_caught_up(&primary, &replica, "sk");
    assert_eq!(
        rows(&replica, "SELECT id, v FROM s.t ORDER BY id"),
        "1\t1\n20\t99\n22\t22"
    );
    assert_eq!(
        rows(&replica, "SELECT position FROM rowcast.skipped ORDER BY id"),
        format!("{at}\n{at2}")
    );
    assert!(slave.is_running(), "{}", slave.log_text());
}
