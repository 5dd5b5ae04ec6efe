//! `rowcast slave --delay`: a delayed replica applies each transaction no
//! earlier than its primary commit time plus the delay, against real
//! servers: absent well inside the window, present after it, applied once
//! across a restart during the wait, shown by status and not "stalled".

mod support;

use std::time::{Duration, Instant};

use support::*;

const DELAY: u64 = 6;

/// The primary's clock, whole seconds (a transaction it commits after
/// this has a commit time at least this).
fn primary_now(primary: &MariaDb) -> u64 {
    primary
        .sql("SELECT UNIX_TIMESTAMP()")
        .trim()
        .parse()
        .unwrap()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn has_row(replica: &MariaDb, id: u32) -> bool {
    replica
        .try_sql(&format!("SELECT COUNT(*) FROM d.t WHERE id = {id}"))
        .is_ok_and(|n| n.trim() == "1")
}

/// Asserts the row is absent when looked at well before it is due (at
/// least a second before `not_before`); returns whether it looked.
fn absent_while_waiting(replica: &MariaDb, id: u32, not_before: u64) -> bool {
    let started = unix_now();
    let present = has_row(replica, id);
    if started + 1.0 >= not_before as f64 {
        eprintln!("looked too late to judge (a slow machine): {started} vs due {not_before}");
        return false;
    }
    assert!(
        !present,
        "row {id} is on the replica at {started}, before its commit time plus --delay ({not_before})"
    );
    true
}

fn slave_status<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no slave {name} in {s}"))
}

#[test]
fn a_delayed_replica_applies_each_transaction_after_its_commit_time_plus_the_delay() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v INT)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let delay = DELAY.to_string();
    let mut slave = Rowcast::slave_with(&listen, &replica, "late", &["--delay", &delay]);
    wait_caught_up(&primary, &replica, "late");

    // One write: absent at about 2 s after its commit, present after 6 s.
    let t0 = primary_now(&primary);
    primary.sql("INSERT INTO d.t VALUES (1, 10)");
    let due = t0 + DELAY;
    std::thread::sleep(Duration::from_secs(2));
    let looked = absent_while_waiting(&replica, 1, due);

    // While it waits, status shows the delay, counts it as lag, and the
    // slave is not stalled.
    let s = status_json(&listen);
    let late = slave_status(&s, "late");
    assert_eq!(late["settings"]["delay_seconds"], DELAY, "{late}");
    assert_ne!(late["state"], "stalled", "{late}");
    if looked && unix_now() + 1.0 < due as f64 {
        assert!(late["lag_seconds"].as_u64().unwrap() >= 1, "{late}");
        assert!(late["lag_transactions"].as_u64().unwrap() >= 1, "{late}");
    }
    let text = run_rowcast(&["status", "--master", &listen], Duration::from_secs(60));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "late: delayed replica, applies each transaction {DELAY}s"
        )),
        "{text}"
    );

    assert!(
        wait_until(Duration::from_secs(60), || has_row(&replica, 1)),
        "the delayed row never arrived:\n{}",
        slave.log_text()
    );
    // Applied no earlier than its commit time plus the delay, by both
    // servers' own records (the replica's commit time of the checkpoint).
    let waited: f64 = replica
        .sql("SELECT UNIX_TIMESTAMP(applied_at) - source_time FROM rowcast.checkpoint WHERE slave_name = 'late'")
        .trim()
        .parse()
        .unwrap();
    assert!(
        waited >= DELAY as f64,
        "applied {waited}s after its commit, before the delay"
    );
    wait_caught_up(&primary, &replica, "late");
    assert_same_table(&primary, &replica, "d.t");

    // A slave stopped while it waits stops at once and loses nothing; its
    // next run applies the transaction once, still after the delay.
    let t1 = primary_now(&primary);
    primary.sql("INSERT INTO d.t VALUES (2, 20); INSERT INTO d.t VALUES (3, 30)");
    std::thread::sleep(Duration::from_secs(1));
    let stopping = Instant::now();
    let status = slave.stop().expect("the slave was running");
    assert!(status.success(), "{status:?}:\n{}", slave.log_text());
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "stopping during a delay took {:?}",
        stopping.elapsed()
    );
    absent_while_waiting(&replica, 2, t1 + DELAY);
    let mut again = Rowcast::slave_with(&listen, &replica, "late", &["--delay", &delay]);
    std::thread::sleep(Duration::from_secs(1));
    absent_while_waiting(&replica, 2, t1 + DELAY);
    wait_caught_up(&primary, &replica, "late");
    assert_same_table(&primary, &replica, "d.t");
    assert_eq!(replica.sql("SELECT COUNT(*) FROM d.t").trim(), "3");
    let waited: f64 = replica
        .sql("SELECT UNIX_TIMESTAMP(applied_at) - source_time FROM rowcast.checkpoint WHERE slave_name = 'late'")
        .trim()
        .parse()
        .unwrap();
    assert!(waited >= DELAY as f64, "applied {waited}s after its commit");
    assert!(again.is_running(), "{}", again.log_text());
}

/// A slave reading the change log from JetStream itself waits the same
/// way, and its progress report (status) shows the delay.
#[test]
fn a_delayed_replica_reading_jetstream_waits_the_same() {
    let nats = Nats::start();
    let url = nats.url("DELAYED");
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v INT)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_with(&primary, data.path(), &listen, &["--log", &url]);
    let delay = DELAY.to_string();
    let slave = Rowcast::slave_with(
        &listen,
        &replica,
        "late",
        &["--log", &url, "--delay", &delay],
    );
    wait_caught_up(&primary, &replica, "late");

    let t0 = primary_now(&primary);
    primary.sql("INSERT INTO d.t VALUES (1, 10)");
    std::thread::sleep(Duration::from_secs(2));
    absent_while_waiting(&replica, 1, t0 + DELAY);
    let s = status_json(&listen);
    let late = slave_status(&s, "late");
    assert_eq!(late["settings"]["delay_seconds"], DELAY, "{late}");
    assert_ne!(late["state"], "stalled", "{late}");
    assert_ne!(late["state"], "disconnected", "{late}");

    assert!(
        wait_until(Duration::from_secs(60), || has_row(&replica, 1)),
        "the delayed row never arrived:\n{}",
        slave.log_text()
    );
    let waited: f64 = replica
        .sql("SELECT UNIX_TIMESTAMP(applied_at) - source_time FROM rowcast.checkpoint WHERE slave_name = 'late'")
        .trim()
        .parse()
        .unwrap();
    assert!(waited >= DELAY as f64, "applied {waited}s after its commit");
    wait_caught_up(&primary, &replica, "late");
    assert_same_table(&primary, &replica, "d.t");
}

/// Under steady writes a delayed replica's queue never drains: it must
/// still tell the master where it is, or the master keeps its whole log
/// for it and status shows its position frozen at the connection's start.
#[test]
fn a_delayed_replica_under_steady_writes_keeps_reporting_its_position() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v INT)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let slave = Rowcast::slave_with(&listen, &replica, "busy", &["--delay", "3"]);
    wait_caught_up(&primary, &replica, "busy");
    let applied =
        |s: &serde_json::Value| slave_status(s, "busy")["applied_seq"].as_u64().unwrap_or(0);
    let before = applied(&status_json(&listen));

    // A write every 100 ms for at least 12 s: after the first 3 s,
    // something is always due and always more queued behind it.
    let writing = std::sync::atomic::AtomicBool::new(true);
    let (mid, later, later_status, still_writing) = std::thread::scope(|scope| {
        scope.spawn(|| {
            for id in 1..=120 {
                primary.sql(&format!("INSERT INTO d.t VALUES ({id}, {id})"));
                std::thread::sleep(Duration::from_millis(100));
            }
            writing.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        // Well inside the writes, the master has heard of progress twice.
        std::thread::sleep(Duration::from_secs(7));
        let mid = applied(&status_json(&listen));
        std::thread::sleep(Duration::from_secs(3));
        let later_status = status_json(&listen);
        let still_writing = writing.load(std::sync::atomic::Ordering::SeqCst);
        (mid, applied(&later_status), later_status, still_writing)
    });
    if still_writing {
        assert!(
            mid > before && later > mid,
            "the master's view of the slave did not move under load: {before} -> {mid} -> {later}\n{}",
            slave.log_text()
        );
        assert_ne!(
            slave_status(&later_status, "busy")["state"],
            "stalled",
            "{later_status}"
        );
    } else {
        eprintln!("the writes ended before the checks (a fast machine?): nothing to judge");
    }
    wait_caught_up(&primary, &replica, "busy");
    assert_same_table(&primary, &replica, "d.t");
}
