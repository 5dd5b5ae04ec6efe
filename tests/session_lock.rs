//! The applier's session lock: one session at a time applies for a slave
//! name on a replica, so neither a second `rowcast slave` with the same
//! name nor a still-open old session (a zombie) can apply a transaction
//! twice.

mod support;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// A client session on `replica` that holds slave `name`'s lock, as an old
/// applier would (`then` runs in the same statement, after the lock is
/// taken); it lives as long as the child, whose stdin stays open.
fn hold_lock(replica: &MariaDb, name: &str, then: &str) -> (Child, u64) {
    let mut child = Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-B"])
        .arg(format!("-P{}", replica.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the mariadb client");
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "SELECT GET_LOCK('rowcast:{name}', 0){then};").unwrap();
    stdin.flush().unwrap();
    let mut holder = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            holder = replica
                .sql(&format!("SELECT IFNULL(IS_USED_LOCK('rowcast:{name}'), 0)"))
                .trim()
                .parse()
                .unwrap_or(0);
            holder != 0
        }),
        "the client session never took the lock"
    );
    (child, holder)
}

/// Whether the replica has anything of the slave's yet (its metadata
/// schema or the replicated database).
fn touched(replica: &MariaDb) -> String {
    replica.sql(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('rowcast', 't')",
    )
}

fn primary_with_rows(n: u64) -> MariaDb {
    let primary = MariaDb::primary();
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))");
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    log_writer(primary.port, n, 50, Duration::ZERO, done, written)
        .join()
        .unwrap();
    primary
}

#[test]
fn a_second_slave_with_the_same_name_applies_nothing_and_exits_naming_the_other() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    // No key: a transaction applied twice shows as a duplicate row.
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))");
    let mut first = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");

    let mut second = Rowcast::slave(&listen, &replica, "s");
    // Rows arrive while both run, with idle gaps longer than the zombie
    // age (15 s) at the end: the first slave must keep its session alive.
    let n = 1500;
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let w = log_writer(
        primary.port,
        n,
        50,
        Duration::from_millis(300),
        done.clone(),
        written.clone(),
    );
    w.join().unwrap();
    wait_caught_up(&primary, &replica, "s");

    // The second gives up after its bounded wait (60 s), with an error
    // that names the session holding the lock and the fix.
    assert!(
        wait_until(Duration::from_secs(150), || !second.is_running()),
        "the second slave with the same name is still running:\n{}",
        second.log_text()
    );
    let status = second.stop().expect("it had a child");
    assert!(!status.success(), "the second slave must fail: {status:?}");
    let log = second.log_text();
    assert!(
        log.contains("holds this slave's lock") && log.contains("one slave per --name"),
        "the second slave's error names the other session and the fix:\n{log}"
    );
    assert!(
        !log.contains("slave ready"),
        "the second slave read a checkpoint:\n{log}"
    );

    assert!(first.is_running(), "the first slave keeps running");
    primary.sql("INSERT INTO t.log VALUES (1501, 'after')");
    wait_caught_up(&primary, &replica, "s");
    assert_each_row_once(&replica, n + 1);
    assert_same_table(&primary, &replica, "t.log");
}

#[test]
fn a_busy_session_holding_the_lock_keeps_the_slave_waiting_until_it_ends() {
    let n = 500;
    let primary = primary_with_rows(n);
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    // An old applier still running a statement (not idle: never killed).
    let (mut holder, id) = hold_lock(&replica, "s", ", SLEEP(600)");
    let slave = Rowcast::slave(&listen, &replica, "s");
    assert!(
        wait_until(Duration::from_secs(60), || slave
            .log_text()
            .contains("holds this slave's lock")),
        "the slave does not say who holds its lock:\n{}",
        slave.log_text()
    );
    assert!(
        slave
            .log_text()
            .contains(&format!("session {id} holds this slave's lock"))
            && slave.log_text().contains(&format!("KILL {id}")),
        "the slave names the holding session {id}:\n{}",
        slave.log_text()
    );
    // A few lock-wait steps later, still nothing applied.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(touched(&replica).trim(), "0", "applied while locked out");

    // The old session ends: the slave takes over and applies it all once.
    replica.sql(&format!("KILL {id}"));
    let _ = holder.kill();
    let _ = holder.wait();
    wait_caught_up(&primary, &replica, "s");
    primary.sql("INSERT INTO t.log VALUES (501, 'after')");
    wait_caught_up(&primary, &replica, "s");
    assert_each_row_once(&replica, n + 1);
    assert_same_table(&primary, &replica, "t.log");
}

#[test]
fn an_idle_zombie_session_holding_the_lock_is_killed_and_the_slave_applies_once() {
    let n = 500;
    let primary = primary_with_rows(n);
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    // A session that sits idle holding the lock: what a frozen connection
    // or a dead machine's applier leaves behind.
    let (mut holder, id) = hold_lock(&replica, "s", "");
    let slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    let log = slave.log_text();
    assert!(
        log.contains("has been idle too long: killing it")
            && log.contains(&format!("session {id} holds this slave's lock")),
        "the slave killed the idle holder {id}:\n{log}"
    );
    assert_eq!(
        replica
            .sql(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}"
            ))
            .trim(),
        "0"
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_each_row_once(&replica, n);
    assert_same_table(&primary, &replica, "t.log");
}

#[test]
fn a_live_slave_whose_master_is_down_is_not_taken_for_a_zombie() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))");
    let mut first = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO t.log VALUES (1, 'one')");
    wait_caught_up(&primary, &replica, "s");

    // Without its master the first slave's applier session idles (no
    // heartbeats, reconnect backoff) for longer than the zombie age.
    master.kill9();
    std::thread::sleep(Duration::from_secs(20));
    let mut second = Rowcast::slave(&listen, &replica, "s");
    assert!(
        wait_until(Duration::from_secs(150), || !second.is_running()),
        "the second slave with the same name is still running:\n{}",
        second.log_text()
    );
    let log = second.log_text();
    assert!(
        log.contains("holds this slave's lock") && !log.contains("killing it"),
        "the second slave must leave the live first one alone and say why:\n{log}"
    );
    assert!(
        first.is_running(),
        "the first slave stopped:\n{}",
        first.log_text()
    );
    assert!(
        !first.log_text().contains("SessionLocked")
            && !first.log_text().contains("holds this slave's lock"),
        "the first slave lost its session:\n{}",
        first.log_text()
    );

    // Its master back, the first slave goes on, each row once.
    let _master = Rowcast::master(&primary, data.path(), &listen);
    primary.sql("INSERT INTO t.log VALUES (2, 'two')");
    wait_caught_up(&primary, &replica, "s");
    assert_each_row_once(&replica, 2);
    assert_same_table(&primary, &replica, "t.log");
}
