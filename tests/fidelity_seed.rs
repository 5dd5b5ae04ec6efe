//! A slave seeded from a snapshot is a copy of its primary in everything a
//! native replica would copy: triggers (with definer, sql_mode and
//! character-set context), procedures, functions, a view calling one,
//! events (disabled on the replica, as native replication marks them),
//! sequences with their state, system-versioned tables with their history,
//! and values the snapshot path used to refuse or change: UUID, INET6, the
//! empty ENUM a lax sql_mode stores, every temporal type at every
//! precision with both signs and the edge values. After seeding, rows
//! written on the primary must not fire the replica's triggers and events
//! must not run twice.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::*;

/// Arguments of a primary whose events run.
const PRIMARY: &[&str] = &[
    "--log-bin=binlog",
    "--binlog_format=ROW",
    "--binlog_row_image=FULL",
    "--binlog_row_metadata=FULL",
    "--event-scheduler=ON",
];

/// The application: triggers of every timing, a keyed audit table (a
/// second firing stops the slave on a duplicate key) and a keyless one,
/// routines, a view calling a function, events, sequences, versioned
/// tables. Defined under a non-default sql_mode and, for some objects,
/// another client character set, by a definer other than the session's.
const SCHEMA: &str = r#"
CREATE DATABASE app CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE SEQUENCE app.ticket START WITH 100 INCREMENT BY 5 CACHE 10;
CREATE SEQUENCE app.cyc START WITH 1 MINVALUE 1 MAXVALUE 3 CACHE 2 CYCLE;
CREATE TABLE app.orders (id INT PRIMARY KEY, qty INT, total INT, note VARCHAR(40));
CREATE TABLE app.audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, note VARCHAR(60));
CREATE TABLE app.audit_nokey (order_id INT, note VARCHAR(60));
CREATE TABLE app.ticks (id INT AUTO_INCREMENT PRIMARY KEY, source VARCHAR(10));
CREATE TABLE app.tickets (id BIGINT PRIMARY KEY DEFAULT NEXTVAL(app.ticket), note VARCHAR(10));
CREATE TABLE app.prices (id INT PRIMARY KEY, price INT) WITH SYSTEM VERSIONING;
CREATE TABLE app.stock (id INT PRIMARY KEY, n INT,
  vs TIMESTAMP(6) GENERATED ALWAYS AS ROW START INVISIBLE,
  ve TIMESTAMP(6) GENERATED ALWAYS AS ROW END INVISIBLE,
  PERIOD FOR SYSTEM_TIME (vs, ve)) WITH SYSTEM VERSIONING;
CREATE TABLE app.vlog (n INT, s VARCHAR(10)) WITH SYSTEM VERSIONING;
CREATE TABLE app.ids (id INT PRIMARY KEY, u UUID, a INET6);
CREATE TABLE app.ids_nokey (u UUID, a INET6);
CREATE TABLE app.enums (id INT PRIMARY KEY, e ENUM('a','b','c d'), s SET('x','y'), e2 ENUM('p','q') NOT NULL);
CREATE TABLE app.enums_nokey (e ENUM('a','b'), n INT);
CREATE TABLE app.times (id INT PRIMARY KEY,
  t0 TIME, t1 TIME(1), t2 TIME(2), t3 TIME(3), t4 TIME(4), t5 TIME(5), t6 TIME(6),
  d0 DATETIME, d1 DATETIME(1), d2 DATETIME(2), d3 DATETIME(3), d4 DATETIME(4), d5 DATETIME(5), d6 DATETIME(6),
  s0 TIMESTAMP NULL DEFAULT NULL, s1 TIMESTAMP(1) NULL DEFAULT NULL, s2 TIMESTAMP(2) NULL DEFAULT NULL,
  s3 TIMESTAMP(3) NULL DEFAULT NULL, s4 TIMESTAMP(4) NULL DEFAULT NULL, s5 TIMESTAMP(5) NULL DEFAULT NULL,
  s6 TIMESTAMP(6) NULL DEFAULT NULL,
  dt DATE, y YEAR);
SET SESSION sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION';
CREATE DEFINER = 'appuser'@'%' TRIGGER app.orders_bi BEFORE INSERT ON app.orders FOR EACH ROW
  SET NEW.total = NEW.qty * 2, NEW.note = 'q' || NEW.qty;
CREATE DEFINER = 'appuser'@'%' TRIGGER app.orders_ai AFTER INSERT ON app.orders FOR EACH ROW
  INSERT INTO app.audit (order_id, note) VALUES (NEW.id, 'insert ' || NEW.note);
CREATE TRIGGER app.orders_ai2 AFTER INSERT ON app.orders FOR EACH ROW FOLLOWS orders_ai
  INSERT INTO app.audit_nokey VALUES (NEW.id, 'second');
CREATE TRIGGER app.orders_bu BEFORE UPDATE ON app.orders FOR EACH ROW SET NEW.total = NEW.qty * 2;
CREATE TRIGGER app.orders_au AFTER UPDATE ON app.orders FOR EACH ROW
  INSERT INTO app.audit_nokey VALUES (NEW.id, 'update ' || OLD.qty || '->' || NEW.qty);
CREATE TRIGGER app.orders_bd BEFORE DELETE ON app.orders FOR EACH ROW
  INSERT INTO app.audit (order_id, note) VALUES (OLD.id, 'delete');
CREATE DEFINER = 'appuser'@'%' FUNCTION app.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE FUNCTION app.label(x INT) RETURNS VARCHAR(20) DETERMINISTIC RETURN 'n=' || x;
CREATE PROCEDURE app.bump(IN n INT) MODIFIES SQL DATA UPDATE app.orders SET qty = qty + n WHERE id = n;
CREATE VIEW app.order_view AS SELECT id, app.twice(qty) AS doubled, app.label(id) AS label FROM app.orders;
CREATE EVENT app.tick ON SCHEDULE EVERY 1 SECOND DO INSERT INTO app.ticks (source) VALUES ('tick');
CREATE EVENT app.later ON SCHEDULE EVERY 1 DAY STARTS '2035-01-01 00:00:00' DISABLE COMMENT 'not yet'
  DO DELETE FROM app.ticks;
SET NAMES latin1;
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';
CREATE TRIGGER app.ids_bi BEFORE INSERT ON app.ids FOR EACH ROW SET NEW.id = NEW.id + 0 /* é */;
CREATE PROCEDURE app.greet(OUT s VARCHAR(20)) SET s = 'café';
CREATE VIEW app.latin_view AS SELECT id, 'café' AS label FROM app.ids;
SET NAMES utf8mb3;
CREATE VIEW app.utf8mb3_view AS SELECT id FROM app.ids;
"#;

/// Values, under a lax sql_mode: what the primary stores is the truth,
/// including an ENUM's empty value for an invalid one and clipped times.
/// Temporal values are generated: both signs, every fraction digit, and
/// the edges of each type.
const VALUES: &str = r#"
SET SESSION sql_mode = '';
SET SESSION time_zone = '+00:00';
INSERT INTO app.ids VALUES (1, '00000000-0000-0000-0000-000000000001', '::1'),
  (2, 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
  (3, '12345678-1234-1234-1234-123456789abc', '::ffff:1.2.3.4'), (4, NULL, NULL),
  (5, UUID(), '2001:db8::1'), (6, '00000000-0000-0000-0000-000000000000', '::');
INSERT INTO app.ids_nokey SELECT u, a FROM app.ids;
INSERT INTO app.ids_nokey SELECT u, a FROM app.ids WHERE id <= 2;
INSERT INTO app.enums VALUES (1, 'zz', 'x,y', 'nope'), (2, 'a', '', 'q'), (3, 'c d', 'y', 'p'),
  (4, NULL, NULL, ''), (5, '', 'x', 'p');
INSERT INTO app.enums_nokey VALUES ('bad', 1), ('bad', 1), ('a', 2), (NULL, 3);
INSERT INTO app.times (id, t0, t1, t2, t3, t4, t5, t6, d0, d1, d2, d3, d4, d5, d6,
    s0, s1, s2, s3, s4, s5, s6, dt, y)
  SELECT seq, t, t, t, t, t, t, t, d, d, d, d, d, d, d, s, s, s, s, s, s, s, DATE(d), 1901 + seq % 255
  FROM (SELECT seq,
      CONCAT(IF(seq % 2, '-', ''), (seq * 7919) % 839, ':', LPAD((seq * 31) % 60, 2, '0'), ':',
        LPAD((seq * 17) % 60, 2, '0'), '.', LPAD((seq * 104729) % 1000000, 6, '0')) AS t,
      DATE_ADD(DATE_ADD('1000-01-01', INTERVAL (seq * 2654435761) % 3287000 DAY),
        INTERVAL (seq * 40503) % 86400000000 MICROSECOND) AS d,
      FROM_UNIXTIME(1 + (seq * 2654435761) % 2147483646 + ((seq * 104729) % 1000000) / 1000000) AS s
    FROM app.seq_1_to_300) g;
INSERT INTO app.times (id, t0, t1, t2, t3, t4, t5, t6, d0, d1, d2, d3, d4, d5, d6,
    s0, s1, s2, s3, s4, s5, s6, dt, y) VALUES
  (1001, '-838:59:59', '-838:59:59.9', '-838:59:59.99', '-838:59:59.999', '-838:59:59.9999',
    '-838:59:59.99999', '-838:59:59.999999',
    '1000-01-01', '1000-01-01', '1000-01-01', '1000-01-01', '1000-01-01', '1000-01-01', '1000-01-01',
    '1970-01-01 00:00:01', '1970-01-01 00:00:01', '1970-01-01 00:00:01', '1970-01-01 00:00:01',
    '1970-01-01 00:00:01', '1970-01-01 00:00:01', '1970-01-01 00:00:01', '1000-01-01', 1901),
  (1002, '838:59:59', '838:59:59.9', '838:59:59.99', '838:59:59.999', '838:59:59.9999',
    '838:59:59.99999', '838:59:59.999999',
    '9999-12-31 23:59:59', '9999-12-31 23:59:59.9', '9999-12-31 23:59:59.99', '9999-12-31 23:59:59.999',
    '9999-12-31 23:59:59.9999', '9999-12-31 23:59:59.99999', '9999-12-31 23:59:59.999999',
    '2038-01-19 03:14:07', '2038-01-19 03:14:07.9', '2038-01-19 03:14:07.99', '2038-01-19 03:14:07.999',
    '2038-01-19 03:14:07.9999', '2038-01-19 03:14:07.99999', '2038-01-19 03:14:07.999999', '9999-12-31', 2155),
  (1003, '-00:00:00.1', '-00:00:00.1', '-00:00:00.01', '-00:00:00.001', '-00:00:00.0001',
    '-00:00:00.00001', '-00:00:00.000001',
    '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00',
    '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00', '0000-00-00',
    '0000-00-00', 0),
  (1004, '-23:45:56.7', '-23:45:56.7', '-23:45:56.78', '-23:45:56.789', '-23:45:56.7891',
    '-23:45:56.78912', '-23:45:56.789123',
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (1005, '-839:00:00', '-900:00:00.5', '00:00:00', '-00:00:01', '-00:59:59.9999', '-01:00:00', '-00:00:00.000001',
    '2024-02-29 12:00:00', '2024-02-29 12:00:00.05', '2024-02-29 12:00:00.005', '2024-02-29 12:00:00.0005',
    '2024-02-29 12:00:00.00005', '2024-02-29 12:00:00.000005', '2024-02-29 12:00:00.0000005',
    '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-01',
    '2024-02-29', 2000);
"#;

/// Tables compared row by row.
const TABLES: &[&str] = &[
    "app.orders",
    "app.audit",
    "app.audit_nokey",
    "app.ticks",
    "app.tickets",
    "app.prices",
    "app.stock",
    "app.vlog",
    "app.ids",
    "app.ids_nokey",
    "app.enums",
    "app.enums_nokey",
    "app.times",
    "app.load",
];

/// One round of application writes: every trigger fires, a procedure
/// runs, versioned rows change, sequences advance.
fn round(i: u32) -> String {
    format!(
        "INSERT INTO app.orders (id, qty) VALUES ({i}, {i});
         UPDATE app.orders SET qty = qty + 1 WHERE id = {prev};
         CALL app.bump({prev2});
         DELETE FROM app.orders WHERE id = {del};
         INSERT INTO app.tickets (note) VALUES ('t{i}');
         INSERT INTO app.tickets VALUES (NEXTVAL(app.cyc) + 1000000 * {i}, 'c{i}');
         INSERT INTO app.prices VALUES ({i}, {i});
         UPDATE app.prices SET price = price + 1 WHERE id = {prev};
         INSERT INTO app.stock (id, n) VALUES ({i}, {i});
         UPDATE app.stock SET n = n * 2 WHERE id = {prev};
         DELETE FROM app.stock WHERE id = {del};
         INSERT INTO app.vlog VALUES ({i}, 'v'), ({i}, 'v');
         UPDATE app.vlog SET s = 'w' WHERE n = {prev} LIMIT 1;
         INSERT INTO app.ids VALUES ({id}, UUID(), CONCAT('2001:db8::', HEX({i})));
         INSERT INTO app.enums VALUES ({id}, 'b', 'x', 'q');
         INSERT INTO app.enums_nokey VALUES ('bad', {i});\n",
        prev = i.saturating_sub(1),
        prev2 = i.saturating_sub(2),
        del = i.saturating_sub(3),
        id = 10_000 + i
    )
}

fn workload(primary: &MariaDb, range: std::ops::Range<u32>) {
    let mut sql = String::from("SET SESSION sql_mode = '';\n");
    for i in range {
        sql.push_str(&format!("START TRANSACTION;\n{}COMMIT;\n", round(i)));
    }
    primary.sql(&sql);
}

/// Writes to `app.load` and through the triggers until `stop` is set.
fn load(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let sql = format!(
                "INSERT INTO app.load VALUES ({i}, REPEAT('x', {i} % 200));
                 INSERT INTO app.orders (id, qty) VALUES ({id}, {i});
                 INSERT INTO app.tickets (note) VALUES ('load');
                 UPDATE app.prices SET price = price + 1 WHERE id = {i} % 7;",
                id = 500_000 + i
            );
            sql_at(port, &sql).unwrap_or_else(|e| panic!("{e}"));
        }
        i
    })
}

fn history(server: &MariaDb) -> String {
    server.sql(
        "SET SESSION time_zone = '+00:00';
         SELECT id, price, row_start, row_end FROM app.prices FOR SYSTEM_TIME ALL ORDER BY id, row_start, row_end;
         SELECT id, n, vs, ve FROM app.stock FOR SYSTEM_TIME ALL ORDER BY id, vs, ve;
         SELECT n, s, row_start, row_end FROM app.vlog FOR SYSTEM_TIME ALL ORDER BY n, s, row_start, row_end;",
    )
}

fn assert_replica_equal(primary: &MariaDb, replica: &MariaDb) {
    for t in TABLES {
        assert_same_table(primary, replica, t);
    }
    assert_eq!(
        history(primary),
        history(replica),
        "system-versioned history differs"
    );
    assert_eq!(
        primary.dump("app.order_view"),
        replica.dump("app.order_view"),
        "the view calling functions differs"
    );
    assert_same_objects(primary, replica, "app");
}

#[test]
fn a_slave_seeded_while_writes_go_on_has_every_object_and_value_of_the_primary() {
    let primary = MariaDb::start_with(PRIMARY);
    let replica = MariaDb::start_with(&["--event-scheduler=ON"]);
    for db in [&primary, &replica] {
        db.sql("CREATE USER 'appuser'@'%'; GRANT ALL ON app.* TO 'appuser'@'%';");
    }
    primary.sql(SCHEMA);
    primary.sql("CREATE TABLE app.load (n INT PRIMARY KEY, pad VARCHAR(200))");
    primary.sql(VALUES);
    workload(&primary, 1..21);
    let ticks = || -> u64 {
        primary
            .sql("SELECT COUNT(*) FROM app.ticks")
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        wait_until(CONVERGE, || ticks() > 0),
        "the primary's event runs"
    );

    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(primary.port, stop.clone());
    let _slave = Rowcast::slave(&listen, &replica, "seeded");
    let seeded = wait_seeded(&replica, "seeded");
    assert!(seeded, "the slave was seeded");
    stop.store(true, Ordering::SeqCst);
    let loaded = writer.join().unwrap();
    assert!(loaded > 0, "writes went on while seeding");

    // Live writes after seeding: the replica's triggers must not fire on
    // them (a second audit row would stop the slave on its key, a second
    // BEFORE trigger would change `total`), and a new event created on
    // the primary must not run on the replica.
    workload(&primary, 21..41);
    // In UTC: the DDL's own time zone reaching the replica is issue 15
    // item 7, not this test's subject.
    let now = primary.sql("SELECT UTC_TIMESTAMP()");
    primary.sql(&format!(
        "SET time_zone = '+00:00'; CREATE EVENT app.tock ON SCHEDULE EVERY 1 SECOND STARTS '{}' \
         DO INSERT INTO app.ticks (source) VALUES ('tock')",
        now.trim()
    ));
    let tocks = || -> u64 {
        primary
            .sql("SELECT COUNT(*) FROM app.ticks WHERE source = 'tock'")
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        wait_until(CONVERGE, || tocks() > 1),
        "the new event runs on the primary"
    );
    // The events stop on the primary so both sides can be compared at
    // one position.
    primary.sql("ALTER EVENT app.tick DISABLE; ALTER EVENT app.tock DISABLE;");
    std::thread::sleep(std::time::Duration::from_secs(2));
    wait_caught_up(&primary, &replica, "seeded");
    assert_replica_equal(&primary, &replica);

    // Sanity of the setup: the triggers and the empty ENUMs are there.
    let audit = primary.sql("SELECT COUNT(*) FROM app.audit WHERE note LIKE 'insert q%'");
    assert!(audit.trim().parse::<u64>().unwrap() > 40, "{audit}");
    let empties = primary.sql("SELECT COUNT(*) FROM app.enums WHERE e = ''");
    assert!(empties.trim().parse::<u64>().unwrap() >= 2, "{empties}");
    // The replica still holds working objects of its own (for promotion):
    // a local write fires its triggers with the primary's sql_mode.
    replica.sql(
        "SET GLOBAL read_only = 0; INSERT INTO app.orders (id, qty) VALUES (900000, 7); \
         SET @s = ''; CALL app.greet(@s);",
    );
    assert_eq!(
        replica
            .sql("SELECT total, note FROM app.orders WHERE id = 900000")
            .trim(),
        "14\tq7"
    );
}
