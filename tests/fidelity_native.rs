//! Replica tables that statements cannot reproduce are applied by the
//! replica's own row-event applier (`src/replica/replay.rs`), as a native replica
//! would: its triggers do not fire a second time, foreign-key cascades and
//! SET NULL happen, rows of a table without a key are found by their exact
//! bytes, and system-versioned history and sequences are kept. Each case
//! runs live (one transaction at a time), as a backlog (batches) and cut
//! into parts, and the replica must equal the primary table by table.

mod support;

use support::*;

const SCHEMA: &str = "
CREATE DATABASE app;
CREATE TABLE app.orders (id INT PRIMARY KEY, qty INT, total INT);
CREATE TABLE app.audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, note VARCHAR(40));
CREATE TABLE app.audit_nokey (order_id INT, note VARCHAR(40));
CREATE TRIGGER app.orders_bi BEFORE INSERT ON app.orders FOR EACH ROW SET NEW.total = NEW.qty * 2;
CREATE TRIGGER app.orders_ai AFTER INSERT ON app.orders FOR EACH ROW
  INSERT INTO app.audit (order_id, note) VALUES (NEW.id, 'insert');
CREATE TRIGGER app.orders_bu BEFORE UPDATE ON app.orders FOR EACH ROW SET NEW.total = NEW.qty * 2;
CREATE TRIGGER app.orders_au AFTER UPDATE ON app.orders FOR EACH ROW
  INSERT INTO app.audit_nokey VALUES (NEW.id, CONCAT('update ', OLD.qty, '->', NEW.qty));
CREATE TRIGGER app.orders_bd BEFORE DELETE ON app.orders FOR EACH ROW
  INSERT INTO app.audit (order_id, note) VALUES (OLD.id, 'delete');
CREATE TABLE app.customer (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB;
CREATE TABLE app.account (id INT PRIMARY KEY, customer_id INT NOT NULL,
  FOREIGN KEY (customer_id) REFERENCES app.customer (id) ON DELETE CASCADE ON UPDATE CASCADE);
CREATE TABLE app.entry (id INT PRIMARY KEY, account_id INT NOT NULL, amount INT,
  FOREIGN KEY (account_id) REFERENCES app.account (id) ON DELETE CASCADE);
CREATE TABLE app.tag (id INT PRIMARY KEY, customer_id INT NULL,
  FOREIGN KEY (customer_id) REFERENCES app.customer (id) ON DELETE SET NULL ON UPDATE CASCADE);
CREATE TABLE app.words (w VARCHAR(10) COLLATE utf8mb4_general_ci, d DECIMAL(20,10), n INT);
CREATE TABLE app.prices (id INT PRIMARY KEY, price INT) WITH SYSTEM VERSIONING;
CREATE SEQUENCE app.ticket;
CREATE TABLE app.tickets (id BIGINT PRIMARY KEY, note VARCHAR(10));
";

const TABLES: &[&str] = &[
    "app.orders",
    "app.audit",
    "app.audit_nokey",
    "app.customer",
    "app.account",
    "app.entry",
    "app.tag",
    "app.words",
    "app.prices",
    "app.tickets",
];

/// One round of the workload: every statement shape whose effect on the
/// replica depends on how it is applied.
fn round(i: u32) -> String {
    let mut sql = format!(
        "INSERT INTO app.orders (id, qty) VALUES ({i}, {i});
         UPDATE app.orders SET qty = qty + 1 WHERE id = {prev};
         INSERT INTO app.customer VALUES ({i}, 'c{i}');
         INSERT INTO app.account VALUES ({i}, {i}), ({i} + 100000, {i});
         INSERT INTO app.entry VALUES ({i}, {i}, 1), ({i} + 100000, {i} + 100000, 2);
         INSERT INTO app.tag VALUES ({i}, {i});
         INSERT INTO app.words VALUES ('a', 0.1000000001, {i}), ('A', 0.1000000002, {i}),
           ('x ', 0.5, {i}), ('x', 0.5, {i});
         UPDATE app.words SET n = -n WHERE w = BINARY 'A' AND n = {i};
         DELETE FROM app.words WHERE w = BINARY 'x ' AND n = {i};
         UPDATE app.words SET w = 'b' WHERE d = 0.1000000002 AND n = -{i};
         INSERT INTO app.prices VALUES ({i}, {i});
         UPDATE app.prices SET price = price + 1 WHERE id = {prev};
         INSERT INTO app.tickets VALUES (NEXTVAL(app.ticket), 't{i}');\n",
        prev = i.saturating_sub(1)
    );
    if i.is_multiple_of(3) {
        sql.push_str(&format!(
            "DELETE FROM app.orders WHERE id = {};\n",
            i.saturating_sub(2)
        ));
    }
    if i.is_multiple_of(4) && i >= 4 {
        // A cascade two levels deep and a SET NULL.
        sql.push_str(&format!("DELETE FROM app.customer WHERE id = {};\n", i - 2));
        // A multi-table DELETE whose parent row cascades.
        sql.push_str(&format!(
            "DELETE c FROM app.customer c JOIN app.orders o ON o.id = c.id WHERE c.id = {};\n",
            i - 3
        ));
    }
    if i.is_multiple_of(5) && i >= 5 {
        // ON UPDATE CASCADE of a parent key, and a versioned delete.
        sql.push_str(&format!(
            "UPDATE app.customer SET id = id + 500000 WHERE id = {};
             DELETE FROM app.prices WHERE id = {};
             DELETE e, t FROM app.entry e JOIN app.tag t ON t.id = e.id WHERE e.id = {};\n",
            i - 1,
            i - 4,
            i - 1
        ));
    }
    sql
}

/// Rounds `range`, each in one transaction (or autocommit, every third).
fn workload(primary: &MariaDb, range: std::ops::Range<u32>) {
    // Multi-table DELETE resolves its aliases in the default database.
    let mut sql = String::from("USE app;\n");
    for i in range {
        if i % 3 == 1 {
            sql.push_str(&round(i));
        } else {
            sql.push_str(&format!("START TRANSACTION;\n{}COMMIT;\n", round(i)));
        }
    }
    primary.sql(&sql);
}

fn assert_replica_equal(primary: &MariaDb, replica: &MariaDb) {
    for t in TABLES {
        assert_same_table(primary, replica, t);
    }
    // History: every version with its period, as the primary stored it.
    let history = "SELECT id, price, row_start, row_end FROM app.prices FOR SYSTEM_TIME ALL ORDER BY id, row_start";
    assert_eq!(
        primary.sql(history),
        replica.sql(history),
        "history of app.prices differs"
    );
    let sequence = "SELECT NEXT_NOT_CACHED_VALUE FROM app.ticket";
    assert_eq!(
        primary.sql(sequence),
        replica.sql(sequence),
        "sequence state differs"
    );
    let triggers = "SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'app' ORDER BY 1";
    assert_eq!(
        primary.sql(triggers),
        replica.sql(triggers),
        "triggers differ"
    );
    assert!(
        !primary.sql(triggers).trim().is_empty(),
        "the primary has triggers"
    );
}

/// Sanity of the workload itself: the primary did cascade, so a replica
/// that did not would differ.
fn assert_workload_cascaded(primary: &MariaDb) {
    let orphans = primary.sql(
        "SELECT COUNT(*) FROM app.tag WHERE customer_id IS NULL; \
         SELECT COUNT(*) FROM app.account WHERE customer_id > 500000;",
    );
    let counts: Vec<u64> = orphans
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        counts.iter().all(|&n| n > 0),
        "SET NULL and ON UPDATE CASCADE happened: {counts:?}"
    );
    let audit: u64 = primary
        .sql("SELECT COUNT(*) FROM app.audit")
        .trim()
        .parse()
        .unwrap();
    assert!(audit > 0, "the triggers wrote the audit table");
}

/// A primary, its master (with `master_flags`) and a replica whose slave
/// `name` was seeded while the primary was empty, so SCHEMA (and `extra`)
/// reach it through the stream; caught up.
/// Fields drop in this order: the processes before their servers.
struct Setup {
    slave: Rowcast,
    master: Rowcast,
    listen: String,
    data: tempfile::TempDir,
    replica: MariaDb,
    primary: MariaDb,
}

fn setup(name: &str, master_flags: &[&str], extra: &str) -> Setup {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master_with(&primary, data.path(), &listen, master_flags);
    let slave = Rowcast::slave(&listen, &replica, name);
    wait_caught_up(&primary, &replica, name);
    primary.sql(SCHEMA);
    if !extra.is_empty() {
        primary.sql(extra);
    }
    wait_caught_up(&primary, &replica, name);
    Setup {
        primary,
        replica,
        data,
        listen,
        master,
        slave,
    }
}

#[test]
fn live_rows_on_tables_with_triggers_keys_and_history_match_the_primary() {
    let s = setup("live", &[], "");
    for start in (1..41).step_by(5) {
        workload(&s.primary, start..start + 5);
        // Caught up after each step: one transaction at a time.
        wait_caught_up(&s.primary, &s.replica, "live");
    }
    assert_workload_cascaded(&s.primary);
    assert_replica_equal(&s.primary, &s.replica);
}

#[test]
fn a_backlog_on_tables_with_triggers_and_keys_matches_the_primary() {
    // A plain table in the same transactions: batches mix both kinds.
    let mut s = setup(
        "batch",
        &[],
        "CREATE TABLE app.plain (id INT PRIMARY KEY, v INT)",
    );
    s.slave.stop();
    let mut sql = String::new();
    for i in 1..=60u32 {
        sql.push_str(&format!("INSERT INTO app.plain VALUES ({i}, {i});\n"));
    }
    s.primary.sql(&sql);
    workload(&s.primary, 1..61);
    s.slave = Rowcast::slave(&s.listen, &s.replica, "batch");
    wait_caught_up(&s.primary, &s.replica, "batch");
    assert_workload_cascaded(&s.primary);
    assert_replica_equal(&s.primary, &s.replica);
    assert_same_table(&s.primary, &s.replica, "app.plain");
}

#[test]
fn large_transactions_in_parts_on_tables_with_triggers_and_keys_match_the_primary() {
    let mut s = setup("parts", &["--part-kb", "1"], "");
    // A keyed plain table takes the net-effect path in each part, except
    // for a part holding an ENUM's empty value, which no strict statement
    // can write.
    s.primary
        .sql("CREATE TABLE app.plain_enum (id INT PRIMARY KEY, e ENUM('a','b') NOT NULL, v INT)");
    // Whole workloads in single transactions, each far above 1 KiB of rows.
    for start in [1u32, 21] {
        let mut sql = String::from("USE app;\nSTART TRANSACTION;\n");
        for i in start..start + 20 {
            sql.push_str(&round(i));
        }
        sql.push_str("COMMIT;\n");
        s.primary.sql(&sql);
    }
    let mut sql = String::from("SET SESSION sql_mode = '';\nSTART TRANSACTION;\n");
    for i in 1..200 {
        sql.push_str(&format!(
            "INSERT INTO app.plain_enum VALUES ({i}, IF({i} % 7, 'a', 'bad'), {i});\n"
        ));
    }
    sql.push_str("COMMIT;\n");
    s.primary.sql(&sql);
    wait_caught_up(&s.primary, &s.replica, "parts");
    assert_same_table(&s.primary, &s.replica, "app.plain_enum");
    s.master.stop();
    let parts = logged_parts(s.data.path());
    assert!(parts > 10, "the transactions travelled in parts: {parts}");
    assert_workload_cascaded(&s.primary);
    assert_replica_equal(&s.primary, &s.replica);
    // Parts were split by table: the trigger-filled audit table and the
    // tickets netted, the tables in foreign keys, with triggers, history
    // or no key applied in order beside them.
    let log = strip_ansi(&s.slave.log_text());
    assert!(
        log.lines()
            .any(|l| l.contains("part applied as its net effect")
                && !l.contains("net_tables=0")
                && !l.contains("ordered_tables=0")),
        "{log}"
    );
}

#[test]
fn a_seeded_slave_with_triggers_keys_and_history_matches_the_primary() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    primary.sql(SCHEMA);
    workload(&primary, 1..21);
    // Seeded from a primary that already has rows, triggers and history,
    // then the same workload live on the seeded copy.
    let _slave = Rowcast::slave(&listen, &replica, "seeded");
    wait_caught_up(&primary, &replica, "seeded");
    workload(&primary, 21..41);
    wait_caught_up(&primary, &replica, "seeded");
    assert_workload_cascaded(&primary);
    assert_replica_equal(&primary, &replica);
    assert_same_objects(&primary, &replica, "app");
}
