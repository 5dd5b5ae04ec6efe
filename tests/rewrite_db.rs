//! `--rewrite-db shop=shop_copy`: the replica keeps the primary's `shop`
//! as `shop_copy`, and every other database under its own name.
//!
//! A live slave (started on an empty primary, so everything reaches it
//! through the stream) and a seeded one (started once the schema and rows
//! exist) follow a primary with two databases: rows on every apply path
//! (statements and net effects for plain tables, the replica's row-event
//! applier for a table with a trigger, one in a foreign key and one
//! without a key), DDL with qualified names (CREATE TABLE shop.t2 from
//! another default database, ALTER TABLE with FOREIGN KEY REFERENCES
//! shop.p, RENAME TABLE, a view, a trigger and a procedure over shop.t),
//! a cross-database statement, and CREATE/DROP DATABASE of a second
//! renamed database. Every row and object of `shop` must equal the
//! replica's `shop_copy` (SHOW CREATE with the name mapped), nothing may
//! land in a `shop` database on the replica, `rowcast checksum` must say
//! equal, and a restart with other rules must be refused.

mod support;

use std::time::Duration;

use support::*;

const SCHEMA: &str = "
CREATE DATABASE shop; CREATE DATABASE other;
CREATE TABLE shop.p (id INT PRIMARY KEY, name VARCHAR(20));
CREATE TABLE shop.t (id INT PRIMARY KEY, p INT, qty INT, note VARCHAR(30));
CREATE TABLE shop.nokey (a INT, b VARCHAR(10));
CREATE TABLE shop.log (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40));
CREATE TABLE other.o (id INT PRIMARY KEY, v VARCHAR(20));
CREATE TRIGGER shop.t_ai AFTER INSERT ON shop.t FOR EACH ROW
  INSERT INTO shop.log (note) VALUES (CONCAT('shop.t ', NEW.id));
CREATE VIEW shop.v AS SELECT t.id, t.qty, p.name FROM shop.t JOIN shop.p ON p.id = t.p;
CREATE PROCEDURE shop.bump(IN n INT) UPDATE shop.t SET qty = qty + 1 WHERE id = n;
CREATE SEQUENCE shop.seq START WITH 100 INCREMENT BY 5 CACHE 10;
CREATE TABLE shop.tickets (id BIGINT PRIMARY KEY DEFAULT NEXTVAL(shop.seq), note VARCHAR(10));
CREATE FUNCTION shop.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE VIEW shop.v2 AS SELECT id, shop.twice(qty) AS d FROM shop.t;
SET SESSION sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION';
CREATE TRIGGER shop.p_ai AFTER INSERT ON \"shop\".\"p\" FOR EACH ROW
  INSERT INTO \"shop\".\"log\" (note) VALUES ('p');
SET SESSION sql_mode = DEFAULT;
CREATE EVENT shop.ev ON SCHEDULE EVERY 1 DAY STARTS '2035-01-01 00:00:00' DO DELETE FROM shop.log;
";

const ROWS: &str = "
INSERT INTO shop.p VALUES (1, 'one'), (2, 'two'), (3, 'three');
INSERT INTO shop.t VALUES (1, 1, 10, 'shop.t in a string'), (2, 2, 20, NULL), (3, 3, 30, NULL);
INSERT INTO shop.nokey VALUES (1, 'a'), (1, 'a'), (2, 'b');
INSERT INTO other.o VALUES (1, 'x'), (2, 'y');
INSERT INTO shop.tickets (note) VALUES ('a'), ('b');
";

/// After both slaves run: rows on every path, and DDL naming `shop`.
const WORKLOAD: &str = "
USE other;
CREATE TABLE shop.t2 (id INT PRIMARY KEY, p INT);
ALTER TABLE shop.t2 ADD CONSTRAINT t2_p FOREIGN KEY (p) REFERENCES shop.p (id) ON DELETE CASCADE;
INSERT INTO shop.t2 VALUES (1, 1), (2, 2), (3, 3);
RENAME TABLE shop.t2 TO shop.t3;
INSERT INTO shop.t3 VALUES (4, 1);
DELETE FROM shop.p WHERE id = 3;
CREATE TABLE other.copy LIKE shop.t;
INSERT INTO other.copy SELECT * FROM shop.t;
UPDATE other.o JOIN shop.t ON t.id = o.id SET o.v = CONCAT(o.v, t.qty), t.qty = t.qty + 100;
USE shop;
CREATE TABLE plain (id INT PRIMARY KEY, n INT);
INSERT INTO plain VALUES (1, 1), (2, 2);
UPDATE plain SET n = n * 10;
INSERT INTO t VALUES (4, 1, 40, NULL);
CALL shop.bump(1);
UPDATE shop.nokey SET b = 'c' WHERE a = 2;
DELETE FROM shop.t WHERE id = 2;
CREATE OR REPLACE VIEW shop.v AS SELECT t.id, t.qty + 1 AS q1, p.name FROM shop.t JOIN shop.p ON p.id = t.p;
CREATE TRIGGER shop.t_bu BEFORE UPDATE ON shop.t FOR EACH ROW SET NEW.note = CONCAT('u', NEW.id);
UPDATE shop.t SET qty = qty + 1;
INSERT INTO shop.tickets (note) VALUES ('c');
INSERT INTO shop.p VALUES (5, 'five');
CREATE DATABASE gone;
CREATE TABLE gone.x (id INT PRIMARY KEY);
INSERT INTO gone.x VALUES (1);
DROP DATABASE gone;
";

const SHOP_TABLES: &[&str] = &["p", "t", "t3", "nokey", "log", "plain", "tickets"];
const OTHER_TABLES: &[&str] = &["o", "copy"];

fn count(server: &MariaDb, sql: &str) -> u64 {
    server.sql(sql).trim().parse().unwrap()
}

fn assert_replica_equal(primary: &MariaDb, replica: &MariaDb) {
    for t in SHOP_TABLES {
        assert_eq!(
            primary.dump(&format!("shop.{t}")),
            replica.dump(&format!("shop_copy.{t}")),
            "rows of shop.{t} (shop_copy.{t} on the replica) differ"
        );
    }
    for t in OTHER_TABLES {
        assert_same_table(primary, replica, &format!("other.{t}"));
    }
    for v in ["v", "v2"] {
        assert_eq!(
            primary.dump(&format!("shop.{v}")),
            replica.dump(&format!("shop_copy.{v}")),
            "the rows of view shop.{v} differ"
        );
    }
    assert_same_objects_renamed(primary, "shop", replica, "shop_copy");
    assert_same_objects(primary, replica, "other");
    assert_eq!(
        count(
            replica,
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('shop', 'gone', 'gone_copy')"
        ),
        0,
        "nothing may land in the primary's names of renamed databases on the replica"
    );
}

#[test]
fn a_renamed_database_is_replicated_whole_live_and_seeded() {
    let primary = MariaDb::primary();
    let live_replica = MariaDb::replica();
    let seeded_replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let rules = [
        "--rewrite-db",
        "shop=shop_copy",
        "--rewrite-db",
        "gone=gone_copy",
    ];
    let _live = Rowcast::slave_with(&listen, &live_replica, "live", &rules);
    assert!(wait_seeded(&live_replica, "live"), "the live slave started");

    primary.sql(SCHEMA);
    primary.sql(ROWS);
    wait_caught_up(&primary, &live_replica, "live");
    let mut seeded = Rowcast::slave_with(&listen, &seeded_replica, "seeded", &rules[..2]);
    assert!(
        wait_seeded(&seeded_replica, "seeded"),
        "the seeded slave was seeded"
    );
    primary.sql(WORKLOAD);
    // A backlog applied as one batch (net effects) on plain tables.
    let mut batch = String::new();
    for i in 10..200 {
        batch.push_str(&format!(
            "INSERT INTO shop.plain VALUES ({i}, {i}); UPDATE shop.plain SET n = n + 1 WHERE id = {}; INSERT INTO other.o VALUES ({i}, 'b');",
            i - 1
        ));
    }
    primary.sql(&batch);
    wait_caught_up(&primary, &live_replica, "live");
    wait_caught_up(&primary, &seeded_replica, "seeded");

    // Sanity of the setup: the cascade and the triggers did something.
    assert_eq!(count(&primary, "SELECT COUNT(*) FROM shop.t3"), 3);
    assert!(count(&primary, "SELECT COUNT(*) FROM shop.log") >= 4);
    for replica in [&live_replica, &seeded_replica] {
        assert_replica_equal(&primary, replica);
    }

    // `rowcast checksum` reads each slave's stored rules.
    let (p, l, s) = (primary.url(), live_replica.url(), seeded_replica.url());
    let out = run_rowcast(
        &[
            "checksum", "--source", &p, "--target", &l, "--target", &s, "--tables", "shop.*",
            "--tables", "other.*", "--wait", "120",
        ],
        Duration::from_secs(300),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "checksum: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("shop.t (as shop_copy)"), "{text}");
    assert!(
        !text.contains("DIFFERS") && !text.contains("NOT CHECKED"),
        "{text}"
    );

    // A real difference in the renamed database is found and named.
    seeded_replica
        .sql("SET GLOBAL read_only = 0; UPDATE shop_copy.p SET name = 'changed' WHERE id = 2;");
    let out = run_rowcast(
        &[
            "checksum", "--source", &p, "--target", &s, "--tables", "shop.p", "--wait", "120",
        ],
        Duration::from_secs(300),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("DIFFERS") && text.contains("2' differs"),
        "{text}"
    );

    // `rowcast show` names the primary's database.
    let out = run_rowcast(&["show", "--target", &s], Duration::from_secs(60));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("database `shop_copy` holds the primary's `shop`"),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.contains("shop_copy") && l.trim_end().ends_with("shop")),
        "{shown}"
    );

    // Other rules than those applied with: refused, the replica untouched.
    seeded.stop();
    let at = slave_position(&seeded_replica, "seeded");
    for other in [
        &["--rewrite-db", "shop=elsewhere"][..],
        &[][..],
        &["--rewrite-db", "shop=shop_copy", "--rewrite-db", "other=o2"][..],
    ] {
        let mut args = vec![
            "slave", "--master", &listen, "--target", &s, "--name", "seeded",
        ];
        args.extend_from_slice(other);
        let out = run_rowcast(&args, Duration::from_secs(120));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{other:?} was accepted: {err}");
        assert!(
            err.contains("applied its checkpoint with --rewrite-db shop=shop_copy")
                && err.contains("--resnapshot"),
            "{other:?}: {err}"
        );
    }
    // Rules that cannot work are refused before anything is touched.
    for (bad, says) in [
        (
            &["--rewrite-db", "mysql=m2"][..],
            "system or rowcast schema",
        ),
        (
            &["--rewrite-db", "shop=x", "--rewrite-db", "other=x"][..],
            "maps two databases to `x`",
        ),
    ] {
        let mut args = vec![
            "slave",
            "--master",
            &listen,
            "--target",
            &s,
            "--name",
            "seeded",
            "--resnapshot",
        ];
        args.extend_from_slice(bad);
        let out = run_rowcast(&args, Duration::from_secs(120));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(slave_position(&seeded_replica, "seeded"), at);
    // With the rules it applied with, it goes on; `--resync` names the
    // primary's table and repairs the diverged one in `shop_copy`.
    primary.sql("INSERT INTO shop.p VALUES (7, 'seven')");
    let resync = ["--rewrite-db", "shop=shop_copy", "--resync", "shop.p"];
    let mut again = Rowcast::slave_with(&listen, &seeded_replica, "seeded", &resync);
    assert!(
        wait_until(CONVERGE, || seeded_replica
            .try_sql("SELECT name FROM shop_copy.p WHERE id = 2")
            .is_ok_and(|n| n.trim() == "two")),
        "--resync shop.p repaired shop_copy.p"
    );
    wait_caught_up(&primary, &seeded_replica, "seeded");
    assert_replica_equal(&primary, &seeded_replica);

    // New rules take a new seed: --resnapshot with them.
    again.stop();
    let renew = ["--rewrite-db", "shop=shop_new", "--resnapshot"];
    let _renewed = Rowcast::slave_with(&listen, &seeded_replica, "seeded", &renew);
    primary.sql("INSERT INTO shop.p VALUES (8, 'eight')");
    wait_caught_up(&primary, &seeded_replica, "seeded");
    for t in SHOP_TABLES {
        assert_eq!(
            primary.dump(&format!("shop.{t}")),
            seeded_replica.dump(&format!("shop_new.{t}")),
            "rows of shop.{t} (shop_new.{t} after --resnapshot) differ"
        );
    }
    assert_same_objects_renamed(&primary, "shop", &seeded_replica, "shop_new");
    assert_eq!(
        seeded_replica
            .sql("SELECT from_db, to_db FROM rowcast.rewrite_db WHERE slave_name = 'seeded'")
            .trim(),
        "shop\tshop_new"
    );
}

/// A primary that logs no column names (`binlog_row_metadata=MINIMAL`):
/// rows are mapped by position onto the replica's renamed tables, whose
/// facts (key, signedness, triggers) come from `shop_copy`.
#[test]
fn positional_rows_land_in_the_renamed_database() {
    let primary = MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        "--binlog-row-metadata=MINIMAL",
    ]);
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _slave = Rowcast::slave_with(&listen, &replica, "s", &["--rewrite-db", "shop=shop_copy"]);
    assert!(wait_seeded(&replica, "s"), "the slave started");
    primary.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.k (id INT UNSIGNED PRIMARY KEY, b BINARY(4), v VARCHAR(10));
         CREATE TABLE shop.nokey (a INT UNSIGNED, b VARCHAR(5));
         CREATE TABLE shop.trg (id INT PRIMARY KEY, n INT);
         CREATE TABLE shop.trg_log (n INT);
         CREATE TRIGGER shop.trg_ai AFTER INSERT ON shop.trg FOR EACH ROW INSERT INTO shop.trg_log VALUES (NEW.n);
         INSERT INTO shop.k VALUES (4294967295, x'01', 'a'), (1, x'', 'b');
         INSERT INTO shop.nokey VALUES (4294967295, 'a'), (4294967295, 'a'), (0, 'b');
         INSERT INTO shop.trg VALUES (1, 10), (2, 20);
         UPDATE shop.k SET v = 'c' WHERE id = 1;
         UPDATE shop.nokey SET b = 'z' WHERE a = 0;
         DELETE FROM shop.trg WHERE id = 2;",
    );
    let mut batch = String::new();
    for i in 10..150 {
        batch.push_str(&format!(
            "INSERT INTO shop.k VALUES ({i}, x'02', 'n'); UPDATE shop.k SET v = 'm' WHERE id = {};",
            i - 1
        ));
    }
    primary.sql(&batch);
    wait_caught_up(&primary, &replica, "s");
    for t in ["k", "nokey", "trg", "trg_log"] {
        assert_eq!(
            primary.dump(&format!("shop.{t}")),
            replica.dump(&format!("shop_copy.{t}")),
            "rows of shop.{t} differ"
        );
    }
    assert_same_objects_renamed(&primary, "shop", &replica, "shop_copy");
    assert_eq!(
        count(
            &replica,
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'"
        ),
        0
    );
}

/// A slave of a JetStream master: its snapshot (`SnapshotBegin`/`Rows`)
/// and the stream it then reads itself are renamed the same way.
#[test]
fn a_jetstream_slave_keeps_the_renamed_database_too() {
    let nats = Nats::start();
    let url = nats.url("rw");
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(SCHEMA);
    primary.sql(ROWS);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_with(&primary, data.path(), &listen, &["--log", &url]);
    let slave = Rowcast::slave_with(
        &listen,
        &replica,
        "js",
        &["--log", &url, "--rewrite-db", "shop=shop_copy"],
    );
    assert!(
        wait_until(CONVERGE, || slave
            .log_text()
            .contains("reading the change log from NATS JetStream")),
        "{}",
        slave.log_text()
    );
    primary.sql(WORKLOAD);
    wait_caught_up(&primary, &replica, "js");
    assert_replica_equal(&primary, &replica);
}

/// Rows the slave process loaded from seed chunks (its `seed complete` line).
fn rows_loaded(slave: &Rowcast) -> u64 {
    let log = slave.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("seed complete"))
        .unwrap_or_else(|| panic!("no `seed complete` in the slave's log:\n{log}"));
    let plain = strip_ansi(line);
    let at = plain
        .find("rows_loaded=")
        .unwrap_or_else(|| panic!("no rows_loaded in {plain}"));
    plain[at + "rows_loaded=".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The seed progress a slave stores is in the replica's names and goes
/// back to the master in the primary's: a slave killed half way through
/// seeding `shop_copy` goes on from its last chunk.
#[test]
fn a_renamed_seed_resumes_from_its_last_chunk() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.big (id INT PRIMARY KEY, name VARCHAR(100));
         INSERT INTO shop.big SELECT seq, CONCAT('row ', MD5(seq)) FROM shop.seq_1_to_300000;",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let rules = ["--rewrite-db", "shop=shop_copy"];
    let mut slave = Rowcast::slave_with(&listen, &replica, "s", &rules);
    let count = || {
        replica
            .try_sql("SELECT COUNT(*) FROM shop_copy.big")
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(CONVERGE, || count() >= 100_000),
        "seed rows never arrived"
    );
    slave.kill9();
    let loaded = count();
    assert!(loaded < 300_000, "killed half way ({loaded} rows)");
    assert!(!seed_done(&replica, "s"), "progress is left");
    primary.sql("UPDATE shop.big SET name = 'after' WHERE id <= 10 OR id > 299990");
    let slave = Rowcast::slave_with(&listen, &replica, "s", &rules);
    wait_caught_up(&primary, &replica, "s");
    assert_eq!(primary.dump("shop.big"), replica.dump("shop_copy.big"));
    let again = rows_loaded(&slave);
    assert!(
        again + loaded < 300_000 * 16 / 10 && again < 300_000 * 7 / 10,
        "after a kill at {loaded} rows the seed copied {again} rows more"
    );
}
