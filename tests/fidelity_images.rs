//! Partial row images against real servers: the primary's global
//! `binlog_row_image` is FULL, but a session may set MINIMAL or NOBLOB, and
//! its ROWS events then lack columns (an UPDATE's after image holds only
//! what changed, a DELETE's before image only the key). rowcast cannot
//! build statements from such rows; it hands the primary's own events to
//! the replica's row-event applier, as a native replica does. The master
//! and the slaves must keep running and every table must end equal to the
//! primary's, live and as a backlog (a slave restarted after the writes,
//! which takes them from the change log in batches).

mod support;

use support::*;

const SCHEMA: &str = "
CREATE DATABASE app;
CREATE TABLE app.plain (id INT PRIMARY KEY, a INT, b VARCHAR(20) DEFAULT 'dflt', c INT,
  t TIME(2) DEFAULT '-01:02:03.45') ENGINE=InnoDB;
CREATE TABLE app.docs (id INT PRIMARY KEY, title VARCHAR(40), body TEXT, img BLOB)
  ENGINE=InnoDB;
CREATE TABLE app.full (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
CREATE TABLE app.trig (id INT PRIMARY KEY, v INT, note VARCHAR(20)) ENGINE=InnoDB;
CREATE TABLE app.trig_log (n INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40))
  ENGINE=InnoDB;
CREATE TRIGGER app.trig_ins AFTER INSERT ON app.trig FOR EACH ROW
  INSERT INTO app.trig_log (what) VALUES (CONCAT('ins ', NEW.id));
CREATE TRIGGER app.trig_upd AFTER UPDATE ON app.trig FOR EACH ROW
  INSERT INTO app.trig_log (what) VALUES (CONCAT('upd ', NEW.id, ' ', NEW.v));
CREATE TABLE app.parent (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
CREATE TABLE app.child (id INT PRIMARY KEY, parent_id INT, v INT,
  FOREIGN KEY (parent_id) REFERENCES app.parent (id) ON DELETE CASCADE ON UPDATE CASCADE)
  ENGINE=InnoDB;
";

const TABLES: &[&str] = &[
    "app.plain",
    "app.docs",
    "app.full",
    "app.trig",
    "app.trig_log",
    "app.parent",
    "app.child",
];

/// Every `sql` call is its own connection, so each sets its session's
/// image. Transactions mix partial images with FULL-image rows of another
/// table (the session switches back inside the transaction), and FULL-only
/// transactions sit between them so a backlog batch holds both.
fn workload(primary: &MariaDb) {
    primary.sql(
        "INSERT INTO app.plain (id, a, b, c) VALUES (1, 1, 'one', 1), (2, 2, 'two', 2),
                                                    (3, 3, 'three', 3);
         INSERT INTO app.docs VALUES (1, 'a', REPEAT('text', 100), REPEAT(x'00ff', 300)),
                                     (2, 'b', 'short', x'01');
         INSERT INTO app.parent VALUES (1, 1), (2, 2);
         INSERT INTO app.child VALUES (10, 1, 1), (11, 1, 2), (20, 2, 3);",
    );
    primary.sql(
        "SET SESSION binlog_row_image = MINIMAL;
         INSERT INTO app.plain (id, a) VALUES (4, 4);
         UPDATE app.plain SET a = a + 10 WHERE id <= 2;
         UPDATE app.plain SET id = 30 WHERE id = 3;
         UPDATE app.plain SET t = '-23:45:56.7' WHERE id = 2;
         DELETE FROM app.plain WHERE id = 1;
         INSERT INTO app.trig VALUES (1, 1, 'x'), (2, 2, 'y');
         UPDATE app.trig SET v = 5 WHERE id = 1;
         DELETE FROM app.trig WHERE id = 2;
         UPDATE app.parent SET id = 3 WHERE id = 2;
         DELETE FROM app.parent WHERE id = 1;
         UPDATE app.child SET v = 33 WHERE id = 20;",
    );
    primary.sql("INSERT INTO app.full VALUES (1, 1), (2, 2)");
    primary.sql(
        "SET SESSION binlog_row_image = NOBLOB;
         UPDATE app.docs SET title = 'aa' WHERE id = 1;
         UPDATE app.docs SET body = 'changed' WHERE id = 2;
         INSERT INTO app.docs (id, title) VALUES (3, 'c');
         DELETE FROM app.docs WHERE id = 1;
         UPDATE app.plain SET c = 99 WHERE id = 2;",
    );
    primary.sql("UPDATE app.full SET v = 20 WHERE id = 2");
    // One transaction, partial and FULL images of several tables.
    primary.sql(
        "BEGIN;
         SET SESSION binlog_row_image = MINIMAL;
         UPDATE app.plain SET b = 'mixed' WHERE id = 4;
         INSERT INTO app.parent VALUES (5, 5);
         INSERT INTO app.child VALUES (50, 5, 5);
         SET SESSION binlog_row_image = FULL;
         INSERT INTO app.full VALUES (3, 3);
         UPDATE app.full SET v = 10 WHERE id = 1;
         SET SESSION binlog_row_image = NOBLOB;
         UPDATE app.docs SET img = x'abcd' WHERE id = 3;
         SET SESSION binlog_row_image = FULL;
         DELETE FROM app.full WHERE id = 2;
         SET SESSION binlog_row_image = MINIMAL;
         DELETE FROM app.parent WHERE id = 3;
         UPDATE app.trig SET v = 6 WHERE id = 1;
         COMMIT;",
    );
    primary.sql("INSERT INTO app.full VALUES (4, 4)");
    // What the primary holds, spelled out, so a replica equal to a wrong
    // primary cannot pass.
    assert_eq!(
        rows(
            primary,
            "SELECT GROUP_CONCAT(CONCAT_WS(':', id, a, b, IFNULL(c, '-')) ORDER BY id) FROM app.plain"
        ),
        "2:12:two:99,4:4:mixed:-,30:3:three:3"
    );
    assert_eq!(
        rows(
            primary,
            "SELECT GROUP_CONCAT(CONCAT_WS(':', id, parent_id, v) ORDER BY id) FROM app.child"
        ),
        "50:5:5",
        "the cascades of parent 1 and 3 removed their children"
    );
    assert_eq!(
        rows(
            primary,
            "SELECT GROUP_CONCAT(CONCAT(id, ':', v) ORDER BY id) FROM app.full"
        ),
        "1:10,3:3,4:4"
    );
    assert_eq!(
        rows(primary, "SELECT COUNT(*) FROM app.trig_log"),
        "4",
        "two inserts and two updates fired the triggers"
    );
}

fn assert_same(primary: &MariaDb, replica: &MariaDb) {
    for table in TABLES {
        assert_same_table(primary, replica, table);
    }
}

fn rows(db: &MariaDb, sql: &str) -> String {
    db.sql(sql).trim().to_string()
}

#[test]
fn partial_row_images_replicate_live_and_as_a_backlog() {
    live_and_backlog(&[], workload);
}

/// Transactions cut into parts (`--part-kb 1`), each part applied by
/// replaying its own events in the one local transaction.
#[test]
fn partial_row_images_in_transactions_cut_into_parts() {
    live_and_backlog(&["--part-kb", "1"], |primary| {
        workload(primary);
        primary.sql(
            "BEGIN;
             SET SESSION binlog_row_image = MINIMAL;
             INSERT INTO app.plain (id, a, b)
               SELECT 100 + seq, seq, REPEAT('p', 20) FROM app.seq_1_to_300;
             UPDATE app.plain SET a = a * 2 WHERE id > 100;
             SET SESSION binlog_row_image = FULL;
             INSERT INTO app.full SELECT 100 + seq, seq FROM app.seq_1_to_300;
             SET SESSION binlog_row_image = NOBLOB;
             UPDATE app.docs SET title = 'parts';
             SET SESSION binlog_row_image = MINIMAL;
             DELETE FROM app.plain WHERE id > 100 AND id % 3 = 0;
             UPDATE app.full SET v = v + 1 WHERE id > 100;
             COMMIT;",
        );
        assert_eq!(
            rows(primary, "SELECT COUNT(*) FROM app.plain WHERE id > 100"),
            "200"
        );
    });
}

fn live_and_backlog(master_args: &[&str], workload: impl Fn(&MariaDb)) {
    let primary = MariaDb::primary();
    primary.sql(SCHEMA);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master_with(&primary, data.path(), &listen, master_args);
    let live_db = MariaDb::replica();
    let backlog_db = MariaDb::replica();
    let mut live = Rowcast::slave(&listen, &live_db, "live");
    let mut backlog = Rowcast::slave(&listen, &backlog_db, "backlog");
    wait_caught_up(&primary, &live_db, "live");
    wait_caught_up(&primary, &backlog_db, "backlog");
    backlog.stop();

    workload(&primary);
    wait_caught_up(&primary, &live_db, "live");
    assert_same(&primary, &live_db);
    assert!(
        live.is_running(),
        "live slave stopped:\n{}",
        live.log_text()
    );

    let mut backlog = Rowcast::slave(&listen, &backlog_db, "backlog");
    wait_caught_up(&primary, &backlog_db, "backlog");
    assert_same(&primary, &backlog_db);
    assert!(
        backlog.is_running(),
        "backlog slave stopped:\n{}",
        backlog.log_text()
    );
    assert!(
        master.is_running(),
        "master stopped:\n{}",
        master.log_text()
    );
    // Warned once per table, not once per event.
    let log = plain_text(&master.log_text());
    let warned = |table: &str| {
        log.lines()
            .filter(|l| l.contains("partial row images") && l.contains(&format!("table={table}")))
            .count()
    };
    assert_eq!(warned("plain"), 1, "master log:\n{log}");
    assert_eq!(warned("docs"), 1, "master log:\n{log}");
    if master_args.contains(&"--part-kb") {
        master.stop();
        let parts = logged_parts(data.path());
        assert!(parts >= 3, "the transactions travelled in parts: {parts}");
    }
}

/// The same through a JetStream change log: the raw events travel in the
/// stream's records, and a slave reading the stream (live, then as a
/// backlog after a restart) applies them.
#[test]
fn partial_row_images_replicate_through_jetstream() {
    let nats = Nats::start();
    let url = nats.url("images");
    let primary = MariaDb::primary();
    primary.sql(SCHEMA);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master_with(&primary, data.path(), &listen, &["--log", &url]);
    let live_db = MariaDb::replica();
    let backlog_db = MariaDb::replica();
    let slave = |db: &MariaDb, name: &str| Rowcast::slave_with(&listen, db, name, &["--log", &url]);
    let mut live = slave(&live_db, "live");
    let mut backlog = slave(&backlog_db, "backlog");
    wait_caught_up(&primary, &live_db, "live");
    wait_caught_up(&primary, &backlog_db, "backlog");
    backlog.stop();

    workload(&primary);
    wait_caught_up(&primary, &live_db, "live");
    assert_same(&primary, &live_db);
    let mut backlog = slave(&backlog_db, "backlog");
    wait_caught_up(&primary, &backlog_db, "backlog");
    assert_same(&primary, &backlog_db);
    for (who, p) in [
        ("master", &mut master),
        ("live", &mut live),
        ("backlog", &mut backlog),
    ] {
        assert!(p.is_running(), "{who} stopped:\n{}", p.log_text());
    }
}

/// The log without its ANSI colour codes.
fn plain_text(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
