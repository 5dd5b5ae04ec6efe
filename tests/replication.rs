//! End-to-end replication against real MariaDB servers: primary → master
//! → change log → wire → slaves → replicas.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

#[test]
fn ddl_and_row_changes_reach_two_slaves() {
    let primary = MariaDb::primary();
    let r1 = MariaDb::replica();
    let r2 = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _s1 = Rowcast::slave(&listen, &r1, "one");
    let _s2 = Rowcast::slave(&listen, &r2, "two");

    primary.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), price DECIMAL(10,2), qty INT);
         CREATE TABLE shop.events (kind VARCHAR(20), n INT);
         INSERT INTO shop.items (name, price, qty) VALUES ('apple', 1.25, 10);
         INSERT INTO shop.items (name, price, qty) VALUES ('pear', 2.50, 5), ('plum', 0.99, 100), ('fig', NULL, NULL);
         UPDATE shop.items SET qty = qty - 1 WHERE name = 'apple';
         UPDATE shop.items SET price = price * 2 WHERE qty >= 5;
         DELETE FROM shop.items WHERE name = 'fig';
         FLUSH BINARY LOGS;
         START TRANSACTION;
           INSERT INTO shop.events VALUES ('sale', 1), ('sale', 1);
           UPDATE shop.items SET qty = 0 WHERE name = 'pear';
           DELETE FROM shop.events WHERE n = 1 LIMIT 1;
         COMMIT;
         START TRANSACTION;
           INSERT INTO shop.events VALUES ('rolled back', 99);
           DELETE FROM shop.items;
         ROLLBACK;
         CREATE TABLE shop.gone (a INT);
         INSERT INTO shop.gone VALUES (1);
         DROP TABLE shop.gone;
         FLUSH BINARY LOGS;
         CREATE DATABASE scratch;
         DROP DATABASE scratch;",
    );
    assert!(
        primary_position(&primary).starts_with("binlog.000003:"),
        "the binlog rotated twice"
    );
    for (replica, name) in [(&r1, "one"), (&r2, "two")] {
        wait_caught_up(&primary, replica, name);
        assert_same_table(&primary, replica, "shop.items");
        assert_same_table(&primary, replica, "shop.events");
        assert_eq!(
            replica
                .sql("SELECT COUNT(*) FROM shop.events WHERE n = 99")
                .trim(),
            "0"
        );
        assert_eq!(replica.sql("SELECT COUNT(*) FROM shop.items").trim(), "3");
        let tables = replica.sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='shop' ORDER BY 1",
        );
        assert_eq!(tables, "events\nitems\n", "dropped table must be gone");
        assert_eq!(replica.sql("SHOW DATABASES LIKE 'scratch'"), "");
    }
}

#[test]
fn slave_killed_mid_stream_resumes_exactly_once() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    // No key: a repeated insert would show as a duplicate row.
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))");

    let n = 3000;
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let w = log_writer(
        primary.port,
        n,
        50,
        Duration::ZERO,
        done.clone(),
        written.clone(),
    );
    let mut kills = 0;
    while !done.load(Ordering::SeqCst) || kills < 3 {
        // Kill once the slave is applying (its row count moves), then restart.
        let before = replica
            .try_sql("SELECT COUNT(*) FROM t.log")
            .unwrap_or_default();
        wait_until(Duration::from_secs(20), || {
            replica
                .try_sql("SELECT COUNT(*) FROM t.log")
                .unwrap_or_default()
                != before
        });
        slave.kill9();
        kills += 1;
        slave = Rowcast::slave(&listen, &replica, "s");
        if kills >= 8 {
            break;
        }
    }
    w.join().unwrap();
    wait_caught_up(&primary, &replica, "s");
    assert!(kills >= 3, "slave was killed {kills} times");
    assert_each_row_once(&replica, n);
    assert_same_table(&primary, &replica, "t.log");
    assert!(slave.is_running());
}

#[test]
fn master_restart_continues_from_its_log() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    let slave = Rowcast::slave(&listen, &replica, "s");
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))");
    primary.sql("INSERT INTO t.log VALUES (1, 'a'), (2, 'b')");
    wait_caught_up(&primary, &replica, "s");

    // A clean stop, writes while it is down, then a restart.
    let status = master.stop().expect("master was running");
    assert!(status.success(), "master exits 0 on SIGTERM: {status:?}");
    primary.sql("INSERT INTO t.log VALUES (3, 'c'); UPDATE t.log SET pad = 'B' WHERE n = 2;");
    master = Rowcast::master(&primary, data.path(), &listen);
    wait_caught_up(&primary, &replica, "s");

    // A SIGKILL under load, then a restart.
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(3));
    primary.sql("DELETE FROM t.log");
    let w = log_writer(
        primary.port,
        1500,
        50,
        Duration::ZERO,
        done.clone(),
        written.clone(),
    );
    wait_until(Duration::from_secs(30), || {
        written.load(Ordering::SeqCst) > 300
    });
    master.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let _master = Rowcast::master(&primary, data.path(), &listen);
    w.join().unwrap();
    wait_caught_up(&primary, &replica, "s");
    assert_each_row_once(&replica, 1500);
    assert_same_table(&primary, &replica, "t.log");
    drop(slave);
}
