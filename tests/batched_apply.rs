//! A backlog is applied many transactions per local commit, as the net
//! effect per primary key (`src/replica/net_effect.rs`): the replica must end equal
//! to the primary whatever the transactions did to the same keys (delete
//! and re-insert, primary-key changes, swapped unique values), tables that
//! cannot be netted (foreign keys with cascades, no primary key, triggers)
//! are applied in order in the same local transaction, and a replica that
//! does not match the batch must still stop with the exact key and
//! position.

mod support;

use support::*;

/// Small transactions that revisit the same keys, in the shapes that make
/// merging them hard.
fn backlog(primary: &MariaDb, rounds: u32) {
    for start in (0..rounds).step_by(25) {
        backlog_rounds(primary, start..(start + 25).min(rounds));
    }
}

fn backlog_rounds(primary: &MariaDb, rounds: std::ops::Range<u32>) {
    let mut sql = String::new();
    for i in rounds {
        let a = i % 50 + 1;
        let b = (i * 7) % 50 + 1;
        sql.push_str(&format!(
            "START TRANSACTION;
             UPDATE b.kv SET v = CONCAT(v, '.') WHERE id = {a};
             DELETE FROM b.kv WHERE id = {b};
             INSERT INTO b.kv VALUES ({b}, {b} + 1000 * {i} + 100000, 'again');
             COMMIT;
             START TRANSACTION;
             UPDATE b.kv SET u = -u WHERE id = {a};
             UPDATE b.kv SET u = (SELECT -u FROM (SELECT u FROM b.kv WHERE id = {a}) x) WHERE id = {b} AND {a} <> {b};
             UPDATE b.kv SET u = {i} + 5000000 WHERE id = {a};
             COMMIT;
             UPDATE b.kv SET id = id + 100 WHERE id = {a};
             UPDATE b.kv SET id = id - 100 WHERE id = {a} + 100;
             INSERT INTO b.log (note) VALUES ('round {i}');\n"
        ));
    }
    primary.sql(&sql);
}

fn setup(primary: &MariaDb) {
    let mut rows = Vec::new();
    for id in 1..=50 {
        rows.push(format!("({id}, {id}, 'v{id}')"));
    }
    primary.sql(&format!(
        "CREATE DATABASE b;
         CREATE TABLE b.kv (id INT PRIMARY KEY, u INT NOT NULL, v VARCHAR(200), UNIQUE KEY (u), KEY (v));
         CREATE TABLE b.log (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40));
         INSERT INTO b.kv VALUES {};",
        rows.join(",")
    ));
}

/// A primary with the tables, its master, and a replica whose slave `s`
/// was seeded and then stopped: what the primary writes next is a backlog.
fn seeded_then_stopped() -> (MariaDb, MariaDb, tempfile::TempDir, String, Rowcast) {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master(&primary, data.path(), &listen);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    slave.stop();
    (primary, replica, data, listen, master)
}

#[test]
fn a_backlog_applied_as_net_effects_equals_the_primary() {
    let (primary, replica, _data, listen, _master) = seeded_then_stopped();
    backlog(&primary, 300);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "b.kv");
    assert_same_table(&primary, &replica, "b.log");
    let log = slave.log_text();
    assert!(log.contains("batch applied as its net effect"), "{log}");

    // A trigger on the replica's b.log puts that table on the native path
    // (the replica's row-event applier, as a native replica): batches
    // still net b.kv and apply b.log's changes in order, and the trigger
    // does not fire on replicated rows.
    slave.stop();
    replica.sql(
        "CREATE TABLE b.seen (n INT NOT NULL); INSERT INTO b.seen VALUES (0);
         CREATE TRIGGER b.count_log AFTER INSERT ON b.log FOR EACH ROW UPDATE b.seen SET n = n + 1",
    );
    backlog(&primary, 100);
    let slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "b.kv");
    assert_same_table(&primary, &replica, "b.log");
    assert_eq!(replica.sql("SELECT n FROM b.seen").trim(), "0");
    let log = strip_ansi(&slave.log_text());
    assert!(
        log.contains("batch applied as its net effect") && log.contains("ordered_tables=1"),
        "{log}"
    );
    assert!(
        !log.contains("could not be applied as its net effect"),
        "{log}"
    );
}

/// A batch is split by table: b.kv is written as its net effect, while a
/// parent and child linked by a cascading foreign key (the cascades are
/// not in the binlog: the replica's InnoDB performs them, in order), a
/// keyless table and one whose trigger filled a third table on the
/// primary are applied change by change, in the same local transaction.
#[test]
fn a_mixed_batch_nets_some_tables_and_applies_the_rest_in_order() {
    let (primary, replica, _data, listen, _master) = seeded_then_stopped();
    primary.sql(
        "CREATE TABLE b.parent (id INT PRIMARY KEY, v INT);
         CREATE TABLE b.child (id INT PRIMARY KEY, parent INT,
           FOREIGN KEY (parent) REFERENCES b.parent (id) ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE TABLE b.nokey (a INT, b VARCHAR(10));
         CREATE TABLE b.audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40));
         CREATE TRIGGER b.nokey_audit AFTER INSERT ON b.nokey FOR EACH ROW
           INSERT INTO b.audit (what) VALUES (CONCAT('nokey ', NEW.a));",
    );
    // The slave takes the DDL one by one before the batches of rows.
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    slave.stop();
    let mut sql = String::new();
    for i in 3..300 {
        if i % 25 == 0 {
            primary.sql(&std::mem::take(&mut sql));
        }
        let a = i % 50 + 1;
        sql.push_str(&format!(
            "START TRANSACTION;
             UPDATE b.kv SET v = CONCAT(LEFT(v, 150), 'm') WHERE id = {a};
             INSERT INTO b.parent VALUES ({i}, {i});
             INSERT INTO b.child VALUES ({i}, {i});
             INSERT INTO b.nokey VALUES ({i}, 'x');
             COMMIT;
             UPDATE b.parent SET id = id + 1000 WHERE id = {i} - 1;
             DELETE FROM b.parent WHERE id = {i} - 3 + 1000;
             UPDATE b.nokey SET b = 'y' WHERE a = {i} - 1;
             DELETE FROM b.nokey WHERE a = {i} - 3;
             UPDATE b.kv SET u = u + 1000000 WHERE id = {a};\n"
        ));
    }
    primary.sql(&sql);
    let slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    for t in ["b.kv", "b.parent", "b.child", "b.nokey", "b.audit"] {
        assert_same_table(&primary, &replica, t);
    }
    // The cascades happened: children follow their renamed parents and
    // went with the deleted ones.
    assert_eq!(
        replica
            .sql("SELECT COUNT(*), MIN(parent) FROM b.child")
            .trim(),
        "3\t299"
    );
    let log = strip_ansi(&slave.log_text());
    assert!(
        log.lines()
            .any(|l| l.contains("batch applied as its net effect")
                && l.contains("net_tables=2")
                && l.contains("ordered_tables=3")),
        "{log}"
    );
    assert!(
        !log.contains("could not be applied as its net effect"),
        "{log}"
    );
}

#[test]
fn a_replica_that_does_not_match_the_batch_stops_at_the_exact_key() {
    let (primary, replica, _data, listen, _master) = seeded_then_stopped();
    // Someone deletes a row on the replica behind rowcast's back.
    replica.sql("SET sql_log_bin = 0; DELETE FROM b.kv WHERE id = 42");
    let mut inserts = String::new();
    for i in 0..100 {
        inserts.push_str(&format!("INSERT INTO b.log (note) VALUES ('before {i}');"));
    }
    primary.sql(&inserts);
    let before = primary_position(&primary);
    primary.sql(
        "UPDATE b.kv SET v = 'changed' WHERE id = 42; INSERT INTO b.log (note) VALUES ('after');",
    );
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    assert!(
        wait_until(CONVERGE, || !slave.is_running()),
        "a diverged slave must stop"
    );
    let log = slave.log_text();
    assert!(
        log.contains("diverged") && log.contains("(id)=(42)") && log.contains("`b`.`kv`"),
        "{log}"
    );
    assert!(
        log.contains("applying it statement by statement"),
        "the conflict was found inside a batch: {log}"
    );
    // The checkpoint did not pass the conflicting transaction (the batch
    // holding it was rolled back whole), and nothing after it is applied.
    let offset = |p: &str| p.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert!(offset(&slave_position(&replica, "s")) <= offset(&before));
    assert_eq!(
        replica
            .sql("SELECT COUNT(*) FROM b.log WHERE note = 'after'")
            .trim(),
        "0"
    );
}
