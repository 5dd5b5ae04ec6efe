//! XA transactions and savepoints against real servers: a prepared XA
//! transaction's rows reach the replica when the primary commits it (from
//! any session, after any restart of the slave or the master in between),
//! never when it rolls back, and exactly once; `ROLLBACK TO SAVEPOINT`
//! leaves the replica with what the primary kept, including the rows of a
//! non-transactional table that the rollback did not undo. Each case runs
//! live and as a backlog (a slave started after the writes, which takes
//! them from the change log in batches).

mod support;

use support::*;

const SCHEMA: &str = "
CREATE DATABASE app;
CREATE TABLE app.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
CREATE TABLE app.m (id INT PRIMARY KEY, v INT) ENGINE=MyISAM;
CREATE TABLE app.log (n INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB;
";

const TABLES: &[&str] = &["app.t", "app.m", "app.log"];

/// Every XA and savepoint shape; `XA COMMIT` of x5 comes from another
/// connection after the preparing client went away (each `sql` call is its
/// own connection).
fn workload(primary: &MariaDb) {
    primary.sql(
        "XA START 'x1'; INSERT INTO app.t VALUES (1, 1); UPDATE app.t SET v = 10 WHERE id = 1;
         XA END 'x1'; XA PREPARE 'x1'; XA COMMIT 'x1';
         XA START 'x2'; INSERT INTO app.t VALUES (2, 2); XA END 'x2'; XA COMMIT 'x2' ONE PHASE;
         XA START 'x3'; INSERT INTO app.t VALUES (3, 3); XA END 'x3'; XA PREPARE 'x3';
         XA ROLLBACK 'x3';
         XA START 'x4'; INSERT INTO app.t VALUES (4, 4); XA END 'x4'; XA ROLLBACK 'x4';
         XA START 'x5', 'bq', 7; INSERT INTO app.t VALUES (5, 5); INSERT INTO app.m VALUES (5, 5);
         XA END 'x5', 'bq', 7; XA PREPARE 'x5', 'bq', 7;",
    );
    // Ordinary transactions and other XA ones while x5 is prepared.
    primary.sql(
        "INSERT INTO app.log (note) VALUES ('between');
         XA START 'x6'; INSERT INTO app.t VALUES (6, 6); XA END 'x6'; XA PREPARE 'x6';",
    );
    primary.sql(
        "INSERT INTO app.t VALUES (7, 7);
         XA START 'x8'; DELETE FROM app.t WHERE id = 7; XA END 'x8'; XA PREPARE 'x8';
         XA COMMIT 'x8';",
    );
    primary.sql("XA COMMIT 'x6'");
    primary.sql("XA COMMIT 'x5', 'bq', 7");
    // Savepoints: the InnoDB rows after s1 are undone, the MyISAM row is
    // not; rows of one table on both sides of a savepoint.
    primary.sql(
        "BEGIN; INSERT INTO app.t VALUES (10, 1); SAVEPOINT s1;
         INSERT INTO app.t VALUES (11, 1); UPDATE app.t SET v = 99 WHERE id = 10;
         INSERT INTO app.m VALUES (11, 1); ROLLBACK TO SAVEPOINT s1;
         INSERT INTO app.t VALUES (12, 1); COMMIT;",
    );
    primary.sql(
        "BEGIN; INSERT INTO app.t VALUES (20, 1); SAVEPOINT a; INSERT INTO app.t VALUES (21, 1);
         SAVEPOINT b; DELETE FROM app.t WHERE id = 1; INSERT INTO app.m VALUES (21, 1);
         ROLLBACK TO b; INSERT INTO app.t VALUES (22, 1); RELEASE SAVEPOINT b;
         INSERT INTO app.t VALUES (23, 1); SAVEPOINT `A`; INSERT INTO app.t VALUES (24, 1);
         INSERT INTO app.m VALUES (24, 1); ROLLBACK TO `a`; UPDATE app.t SET v = 5 WHERE id = 20;
         COMMIT;",
    );
    // A rollback of the whole transaction keeps the MyISAM row only.
    primary.sql(
        "BEGIN; INSERT INTO app.t VALUES (30, 1); INSERT INTO app.m VALUES (30, 1); ROLLBACK;",
    );
    // Savepoints inside an XA transaction.
    primary.sql(
        "XA START 'x9'; INSERT INTO app.t VALUES (40, 1); SAVEPOINT s; INSERT INTO app.t VALUES (41, 1);
         INSERT INTO app.m VALUES (41, 1); ROLLBACK TO SAVEPOINT s; XA END 'x9'; XA PREPARE 'x9';
         XA COMMIT 'x9';",
    );
}

fn assert_same(primary: &MariaDb, replica: &MariaDb) {
    for table in TABLES {
        assert_same_table(primary, replica, table);
    }
}

fn ids(db: &MariaDb, table: &str) -> String {
    db.sql(&format!(
        "SELECT GROUP_CONCAT(CONCAT(id, ':', v) ORDER BY id) FROM {table}"
    ))
    .trim()
    .to_string()
}

#[test]
fn xa_and_savepoints_live_and_as_a_backlog() {
    let primary = MariaDb::primary();
    primary.sql(SCHEMA);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let live_db = MariaDb::replica();
    let backlog_db = MariaDb::replica();
    let mut live = Rowcast::slave(&listen, &live_db, "live");
    let mut backlog = Rowcast::slave(&listen, &backlog_db, "backlog");
    wait_caught_up(&primary, &live_db, "live");
    wait_caught_up(&primary, &backlog_db, "backlog");
    backlog.stop();

    workload(&primary);
    // What the primary kept, spelled out, so a replica equal to a wrong
    // primary cannot pass.
    assert_eq!(
        ids(&primary, "app.t"),
        "1:10,2:2,5:5,6:6,10:1,12:1,20:5,21:1,22:1,23:1,40:1"
    );
    assert_eq!(ids(&primary, "app.m"), "5:5,11:1,21:1,24:1,30:1,41:1");

    wait_caught_up(&primary, &live_db, "live");
    assert_same(&primary, &live_db);
    assert!(
        live.is_running(),
        "live slave stopped:\n{}",
        live.log_text()
    );

    let _backlog = Rowcast::slave(&listen, &backlog_db, "backlog");
    wait_caught_up(&primary, &backlog_db, "backlog");
    assert_same(&primary, &backlog_db);
}

/// x1 commits and x2 rolls back across kills of the slave and the master
/// while they are prepared; ordinary transactions in between are applied
/// exactly once although the restarted slave reads the change log again
/// from before x1.
#[test]
fn prepared_xa_survives_kills_of_slave_and_master() {
    let primary = MariaDb::primary();
    primary.sql(SCHEMA);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    let replica = MariaDb::replica();
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");

    primary.sql(
        "XA START 'x1'; INSERT INTO app.t VALUES (1, 1), (2, 2); XA END 'x1'; XA PREPARE 'x1';",
    );
    primary.sql("INSERT INTO app.log (note) VALUES ('a'), ('b')");
    primary.sql("XA START 'x2'; INSERT INTO app.t VALUES (3, 3); XA END 'x2'; XA PREPARE 'x2';");
    primary.sql("INSERT INTO app.log (note) VALUES ('c')");
    wait_caught_up(&primary, &replica, "s");
    // Prepared rows wait; the ordinary ones are there.
    assert_eq!(ids(&replica, "app.t"), "NULL");
    assert_eq!(replica.sql("SELECT COUNT(*) FROM app.log").trim(), "3");

    slave.kill9();
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO app.log (note) VALUES ('d')");
    wait_caught_up(&primary, &replica, "s");
    assert_eq!(replica.sql("SELECT COUNT(*) FROM app.log").trim(), "4");

    master.kill9();
    // Completed while the master is down, from another session.
    primary.sql("XA ROLLBACK 'x2'");
    master = Rowcast::master(&primary, data.path(), &listen);
    wait_caught_up(&primary, &replica, "s");
    assert_eq!(ids(&replica, "app.t"), "NULL");

    slave.kill9();
    primary.sql("XA COMMIT 'x1'");
    primary.sql("INSERT INTO app.log (note) VALUES ('e')");
    let slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    assert_eq!(ids(&replica, "app.t"), "1:1,2:2");
    assert_same(&primary, &replica);

    // Nothing is held any more: a restart reads from the checkpoint.
    assert_eq!(
        replica
            .sql("SELECT COALESCE(xa_resume_seq, 'none') FROM rowcast.checkpoint WHERE slave_name = 's'")
            .trim(),
        "none"
    );
    drop(slave);
    drop(master);
}

/// A transaction far larger than `--part-kb` that rolls back to a
/// savepoint: rows before the savepoint may leave in parts, rows after it
/// wait until it is released, so the rollback can still drop them.
#[test]
fn savepoints_in_a_transaction_cut_into_parts() {
    let primary = MariaDb::primary();
    primary.sql(SCHEMA);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master_with(&primary, data.path(), &listen, &["--part-kb", "1"]);
    let replica = MariaDb::replica();
    let _slave = Rowcast::slave(&listen, &replica, "parts");
    wait_caught_up(&primary, &replica, "parts");

    let rows = |from: u32, n: u32, table: &str| {
        (from..from + n)
            .map(|i| format!("INSERT INTO {table} VALUES ({i}, {i});"))
            .collect::<String>()
    };
    primary.sql(&format!(
        "BEGIN; {} SAVEPOINT s; {} INSERT INTO app.m VALUES (500, 1); ROLLBACK TO SAVEPOINT s; \
         {} SAVEPOINT r; {} RELEASE SAVEPOINT r; {} COMMIT;",
        rows(1000, 200, "app.t"),
        rows(2000, 200, "app.t"),
        rows(3000, 200, "app.t"),
        rows(4000, 200, "app.t"),
        rows(5000, 200, "app.t"),
    ));
    assert_eq!(
        primary
            .sql("SELECT COUNT(*), SUM(id BETWEEN 2000 AND 2199) FROM app.t")
            .trim(),
        "800\t0"
    );
    wait_caught_up(&primary, &replica, "parts");
    assert_same(&primary, &replica);

    // An XA group far larger than --part-kb is never cut (MariaDB marks it
    // only by a GTID flag): held whole while prepared, applied whole.
    primary.sql(&format!(
        "XA START 'big'; {} XA END 'big'; XA PREPARE 'big';",
        rows(6000, 300, "app.t")
    ));
    wait_caught_up(&primary, &replica, "parts");
    let big = "SELECT COUNT(*) FROM app.t WHERE id >= 6000";
    assert_eq!(replica.sql(big).trim(), "0", "prepared rows applied early");
    primary.sql("XA COMMIT 'big'");
    wait_caught_up(&primary, &replica, "parts");
    assert_eq!(replica.sql(big).trim(), "300");
    assert_same(&primary, &replica);
    assert!(
        master.is_running(),
        "master stopped:\n{}",
        master.log_text()
    );
}

/// One slave's entry in `status --json` (`Null` when the master does not
/// list it).
fn slave_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["slaves"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// A prepared XA transaction held by a slave that has applied everything
/// else is no lag: `status` shows the slave streaming with lag 0 well past
/// `--stall-after`, and `applied_seq` at the log's end, not at the held
/// prepare. Retention still keeps the log from the prepare for it (the
/// master deletes every segment it can, `--retain-mb 0`): a slave killed
/// and restarted while it holds the prepare reads it again, and applies it
/// at `XA COMMIT`.
#[test]
fn a_slave_holding_a_prepared_xa_is_caught_up_and_its_prepare_is_kept() {
    let primary = MariaDb::primary();
    primary.sql(SCHEMA);
    primary.sql("CREATE TABLE app.pad (id INT PRIMARY KEY, p VARCHAR(500)) ENGINE=InnoDB");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    // Small segments so the prepare's records and those around it lie in
    // segments retention would delete if nobody needed them.
    let master = Rowcast::master_with(
        &primary,
        data.path(),
        &listen,
        &[
            "--stall-after",
            "3s",
            "--segment-bytes",
            "20000",
            "--retain-mb",
            "0",
        ],
    );
    let replica = MariaDb::replica();
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");

    let pad = |from: u32| {
        (from..from + 120)
            .map(|i| format!("INSERT INTO app.pad VALUES ({i}, REPEAT('p', 400));"))
            .collect::<String>()
    };
    // Segments before the prepare are no one's need; those after it are.
    primary.sql(&pad(0));
    primary.sql(
        "XA START 'held'; INSERT INTO app.t VALUES (1, 1), (2, 2); XA END 'held'; XA PREPARE 'held';",
    );
    primary.sql(&pad(1000));
    primary.sql("INSERT INTO app.log (note) VALUES ('after')");
    wait_caught_up(&primary, &replica, "s");
    assert_eq!(
        ids(&replica, "app.t"),
        "NULL",
        "prepared rows applied early"
    );
    let resume: u64 = replica
        .sql("SELECT xa_resume_seq FROM rowcast.checkpoint WHERE slave_name = 's'")
        .trim()
        .parse()
        .expect("the checkpoint names an xa_resume while the prepare is held");

    // Caught up: streaming, no lag, applied through the log's end.
    let caught_up = |st: &serde_json::Value| {
        let s = slave_status(st, "s");
        s["state"] == "streaming"
            && s["lag_transactions"] == 0
            && s["lag_seconds"] == 0
            && s["applied_seq"] == st["log_last_seq"]
    };
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            caught_up(&last)
        }),
        "a slave holding only a prepared XA transaction is caught up: {last}"
    );
    // And stays so past the stall bound (3 s, twice over), while retention
    // (every 5 s) deletes what it may but nothing from the prepare on.
    let since = std::time::Instant::now();
    let mut polls = 0;
    while since.elapsed() < std::time::Duration::from_secs(8) || polls < 3 {
        let st = status_json(&listen);
        assert!(caught_up(&st), "lag or stall while holding a prepare: {st}");
        let first = st["log_first_seq"].as_u64().unwrap();
        assert!(
            first <= resume + 1,
            "retention dropped the held prepare (after seq {resume}): {st}"
        );
        polls += 1;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let mut first = 0;
    assert!(
        wait_until(CONVERGE, || {
            first = status_json(&listen)["log_first_seq"].as_u64().unwrap();
            first > 1
        }),
        "retention never deleted a segment, so this test shows nothing:\n{}",
        master.log_text()
    );
    assert!(
        first <= resume + 1,
        "log starts at {first}, after the held prepare {resume}"
    );

    // A restart reads the change log again from before the prepare.
    slave.kill9();
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO app.log (note) VALUES ('restarted')");
    wait_caught_up(&primary, &replica, "s");
    assert_eq!(
        ids(&replica, "app.t"),
        "NULL",
        "prepared rows applied early"
    );
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            caught_up(&last)
        }),
        "the restarted slave is caught up: {last}"
    );

    primary.sql("XA COMMIT 'held'");
    wait_caught_up(&primary, &replica, "s");
    assert_eq!(ids(&replica, "app.t"), "1:1,2:2");
    assert_same(&primary, &replica);
    assert_same_table(&primary, &replica, "app.pad");
    assert!(slave.is_running(), "slave stopped:\n{}", slave.log_text());
    assert_eq!(
        replica
            .sql("SELECT COALESCE(xa_resume_seq, 'none') FROM rowcast.checkpoint WHERE slave_name = 's'")
            .trim(),
        "none"
    );
}
