//! Seeding new slaves from a consistent snapshot, schema changes in the
//! stream, filters and --resnapshot, against real MariaDB servers.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// Keeps writing to `big.t` and `small.kv` until `stop` is set.
fn load(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut i: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let sql = format!(
                "INSERT INTO big.t (id, name, amount) VALUES ({id}, 'new {i}', {i}.5);
                 UPDATE big.t SET amount = amount + 1, name = CONCAT(name, '+') WHERE id = {upd};
                 DELETE FROM big.t WHERE id = {del};
                 INSERT INTO big.nokey VALUES ({i}, 'x');
                 REPLACE INTO small.kv VALUES ('k{m}', {i});",
                id = 1_000_000 + i,
                upd = (i * 7919) % 100_000 + 1,
                del = (i * 104_729) % 100_000 + 1,
                m = i % 50
            );
            sql_at(port, &sql).unwrap_or_else(|e| panic!("{e}"));
        }
        i
    })
}

fn seed(primary: &MariaDb, rows: u64) {
    primary.sql(&format!(
        "CREATE DATABASE big;
         CREATE TABLE big.t (id INT PRIMARY KEY, name VARCHAR(100), amount DECIMAL(12,2), at DATETIME(6) DEFAULT '2024-01-01 00:00:00');
         INSERT INTO big.t (id, name, amount) SELECT seq, CONCAT('row ', MD5(seq)), seq / 7 FROM big.seq_1_to_{rows};
         CREATE TABLE big.nokey (n INT, s VARCHAR(10));
         INSERT INTO big.nokey SELECT seq % 1000, 'dup' FROM big.seq_1_to_20000;
         CREATE DATABASE small;
         CREATE TABLE small.kv (k VARCHAR(20), v INT, PRIMARY KEY (k));
         INSERT INTO small.kv VALUES ('a', 1), ('b', 2);
         CREATE VIEW small.v AS SELECT k, v * 2 AS twice FROM small.kv;
         CREATE VIEW small.vv AS SELECT COUNT(*) AS n FROM small.v;"
    ));
}

fn assert_all_equal(primary: &MariaDb, replica: &MariaDb) {
    for t in ["big.t", "big.nokey", "small.kv"] {
        assert_same_table(primary, replica, t);
    }
    for v in ["small.v", "small.vv"] {
        assert_eq!(primary.dump(v), replica.dump(v), "view {v}");
    }
}

/// Rows the slave process loaded from seed chunks, from its log line at
/// the end of the seed.
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

#[test]
fn new_slave_is_seeded_while_writes_go_on() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    seed(&primary, 100_000);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master(&primary, data.path(), &listen);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(primary.port, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let slave = Rowcast::slave(&listen, &replica, "seeded");
    // The writes go on while the tables are copied, chunk by chunk.
    let mut progress = serde_json::Value::Null;
    let saw_progress = wait_until(CONVERGE, || {
        let st = status_json(&listen);
        let s = &st["slaves"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .find(|s| s["name"] == "seeded")
            .cloned();
        if let Some(s) = s {
            if s["snapshot_rows"].as_u64().unwrap_or(0) > 0 {
                progress = s.clone();
                return true;
            }
        }
        false
    });
    assert!(saw_progress, "status never showed seed progress");
    assert!(
        progress["snapshot_estimated_rows"].as_u64().unwrap() >= 100_000
            && progress["snapshot_bytes"].as_u64().unwrap() > 0
            && progress["snapshot_estimated_bytes"].as_u64().unwrap() > 0,
        "progress names rows and bytes of the estimates: {progress}"
    );
    assert!(wait_seeded(&replica, "seeded"), "seed did not complete");
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    assert!(writes > 5, "the load ran during the seed ({writes} rounds)");
    wait_caught_up(&primary, &replica, "seeded");
    assert_all_equal(&primary, &replica);
    // Short transactions, no lock: big.t (100k rows, integer key) went in
    // ranges of chunks, each read at a position of its own.
    let log = strip_ansi(&master.log_text());
    assert!(log.contains("ranged=1 ranges=4"), "{log}");
    assert!(rows_loaded(&slave) >= 120_000);
}

#[test]
fn slave_killed_during_seed_resumes_from_its_last_chunk() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    seed(&primary, 300_000);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    let count = || {
        replica
            .try_sql("SELECT COUNT(*) FROM big.t")
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let halfway = wait_until(CONVERGE, || count() >= 140_000);
    assert!(halfway, "seed rows never arrived");
    slave.kill9();
    let loaded = count();
    assert!(
        loaded < 300_000,
        "killed halfway, not after the end ({loaded} rows)"
    );
    assert!(
        !seed_done(&replica, "s"),
        "a half-seeded slave has progress left"
    );
    primary.sql("UPDATE big.t SET amount = -1 WHERE id <= 10; UPDATE big.t SET amount = -2 WHERE id > 299990; INSERT INTO small.kv VALUES ('after-kill', 9)");

    let slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    assert_all_equal(&primary, &replica);
    // It went on from its last chunk: the second run copied what was left
    // (the 20 000 keyless rows again: a whole table starts over).
    let again = rows_loaded(&slave);
    let total = 300_000 + 20_000 + 2;
    assert!(
        again + loaded < total * 16 / 10 && again < total * 6 / 10,
        "after a kill at {loaded} rows the seed copied {again} rows more"
    );
}

#[test]
fn schema_changes_mid_stream_are_followed() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _slave = Rowcast::slave(&listen, &replica, "s");
    wait_seeded(&replica, "s");
    primary.sql(
        "CREATE DATABASE app;
         USE app;
         CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(20));
         INSERT INTO users VALUES (1, 'ann'), (2, 'bob');
         ALTER TABLE users ADD COLUMN email VARCHAR(50) DEFAULT 'none' AFTER name;
         INSERT INTO users VALUES (3, 'cy', 'cy@example.com');
         UPDATE users SET email = 'ann@example.com' WHERE id = 1;
         ALTER TABLE users MODIFY COLUMN name VARCHAR(40) NOT NULL, ADD COLUMN age SMALLINT UNSIGNED;
         INSERT INTO users VALUES (4, 'a much longer name here', 'd@e', 40);
         ALTER TABLE users DROP COLUMN email;
         INSERT INTO users VALUES (5, 'eve', 22);
         UPDATE users SET age = 30 WHERE id < 3;
         CREATE INDEX by_name ON users (name);
         CREATE TABLE IF NOT EXISTS users (x INT);
         CREATE TABLE logs (id INT AUTO_INCREMENT PRIMARY KEY, msg TEXT);
         INSERT INTO logs (msg) VALUES ('a'), ('b');
         RENAME TABLE logs TO events;
         INSERT INTO events (msg) VALUES ('c');
         CREATE TABLE scratch (a INT);
         INSERT INTO scratch VALUES (1);
         TRUNCATE TABLE scratch;
         INSERT INTO scratch VALUES (2);
         CREATE VIEW adults AS SELECT id, name FROM users WHERE age >= 30;
         CREATE TABLE t1 (a INT); CREATE TABLE t2 (a INT);
         DROP TABLE t1, t2;
         DROP TABLE IF EXISTS never_existed;
         DROP INDEX by_name ON users;
         ALTER DATABASE app CHARACTER SET utf8mb4;
         CREATE DATABASE gone; DROP DATABASE IF EXISTS gone;",
    );
    wait_caught_up(&primary, &replica, "s");
    for t in ["app.users", "app.events", "app.scratch"] {
        assert_same_table(&primary, &replica, t);
        let show = |db: &MariaDb| db.sql(&format!("SHOW CREATE TABLE {}", quoted(t)));
        assert_eq!(show(&primary), show(&replica), "SHOW CREATE TABLE {t}");
    }
    assert_eq!(primary.dump("app.adults"), replica.dump("app.adults"));
    let tables = "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY 1) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app'";
    assert_eq!(primary.sql(tables), replica.sql(tables));
    assert_eq!(replica.sql("SHOW DATABASES LIKE 'gone'"), "");
}

#[test]
fn filters_keep_excluded_objects_off_the_slave() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE shop; CREATE DATABASE other;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT);
         CREATE TABLE shop.secret (id INT PRIMARY KEY, v INT);
         CREATE TABLE other.t (id INT PRIMARY KEY);
         INSERT INTO shop.items VALUES (1, 1); INSERT INTO shop.secret VALUES (1, 1); INSERT INTO other.t VALUES (1);",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let dir = data.path().to_str().unwrap();
    let url = primary.url();
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &url,
        "--listen",
        &listen,
        "--data-dir",
        dir,
        "--include",
        "shop",
        "--include",
        "late*",
        "--exclude",
        "shop.secret",
    ]);
    master.wait_listening(&listen);
    let _slave = Rowcast::slave(&listen, &replica, "f");
    wait_seeded(&replica, "f");
    primary.sql(
        "INSERT INTO shop.items VALUES (2, 2); UPDATE shop.secret SET v = 5; INSERT INTO other.t VALUES (2);
         CREATE TABLE shop.secret2 (a INT); ALTER TABLE shop.secret ADD COLUMN w INT;
         CREATE DATABASE late; CREATE TABLE late.x (a INT PRIMARY KEY); INSERT INTO late.x VALUES (7);
         CREATE DATABASE notme; CREATE TABLE notme.y (a INT);
         GRANT SELECT ON shop.* TO 'reader'@'%' IDENTIFIED BY 'pw';",
    );
    wait_caught_up(&primary, &replica, "f");
    assert_same_table(&primary, &replica, "shop.items");
    assert_same_table(&primary, &replica, "late.x");
    assert_same_table(&primary, &replica, "shop.secret2");
    assert!(
        replica.try_sql("SELECT 1 FROM shop.secret").is_err(),
        "excluded table copied"
    );
    assert_eq!(replica.sql("SHOW DATABASES LIKE 'other'"), "");
    assert_eq!(replica.sql("SHOW DATABASES LIKE 'notme'"), "");
    assert_eq!(
        replica
            .sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'reader'")
            .trim(),
        "0"
    );
}

#[test]
fn resnapshot_repairs_a_diverged_replica() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql("CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY, v INT); INSERT INTO r.t VALUES (1,1),(2,2),(3,3)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    slave.stop();
    // Someone writes to the replica: it diverges, and the next change to
    // that row stops the slave with the key named.
    replica.sql("DELETE FROM r.t WHERE id = 2; INSERT INTO r.t VALUES (9, 9)");
    primary.sql("UPDATE r.t SET v = 20 WHERE id = 2");
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    assert!(
        wait_until(CONVERGE, || !slave.is_running()),
        "a diverged slave must stop"
    );
    let log = slave.log_text();
    assert!(
        log.contains("diverged") && log.contains("(id)=(2)") && log.contains("`r`.`t`"),
        "{log}"
    );

    let _slave = Rowcast::spawn(&[
        "slave",
        "--master",
        &listen,
        "--target",
        &replica.url(),
        "--name",
        "s",
        "--resnapshot",
    ]);
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "r.t");
}
