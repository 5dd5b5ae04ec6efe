//! `rowcast master --binlog-dir`: archived binlog files replayed into a
//! replica, exactly once across a killed slave, with files added while the
//! master runs; and real binlog files other projects recorded
//! (testdata/mysql-binlogs/PROVENANCE.md) replayed into a MariaDB replica
//! and compared with the values their README states.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

/// The binlog files the primary has written so far, in order.
fn binlog_files(primary: &MariaDb) -> Vec<String> {
    primary
        .sql("SHOW BINARY LOGS")
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// `file:pos` after the last transaction committed in `file` (MariaDB may
/// write a BINLOG_CHECKPOINT event after it, which no checkpoint names).
fn last_commit(primary: &MariaDb, file: &str) -> String {
    let events = primary.sql(&format!("SHOW BINLOG EVENTS IN '{file}'"));
    let end = events
        .lines()
        .rev()
        .find(|l| l.split('\t').nth(2) == Some("Xid"))
        .map(|l| l.split('\t').nth(4).unwrap().to_string())
        .expect("a committed transaction");
    format!("{file}:{end}")
}

/// Waits until the slave's checkpoint is `target` (`file:pos`).
fn wait_at(replica: &MariaDb, name: &str, target: &str) {
    let ok = wait_until(CONVERGE, || slave_position(replica, name) == target);
    assert!(
        ok,
        "slave {name} did not reach {target}; it is at {}",
        slave_position(replica, name)
    );
}

fn datadir(db: &MariaDb) -> std::path::PathBuf {
    db.sql("SELECT @@datadir").trim().into()
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {from:?} to {to:?}: {e}"));
}

fn master_on_files(dir: &Path, data: &Path, listen: &str, extra: &[&str]) -> Rowcast {
    let mut args = vec![
        "master",
        "--binlog-dir",
        dir.to_str().unwrap(),
        "--listen",
        listen,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut m = Rowcast::spawn(&args);
    m.wait_listening(listen);
    m
}

fn count(db: &MariaDb, table: &str) -> u64 {
    db.try_sql(&format!("SELECT COUNT(*) FROM {table}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn archived_files_replay_exactly_once_and_files_added_later_are_picked_up() {
    let primary = MariaDb::primary();
    primary.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), price DECIMAL(10,2), qty INT UNSIGNED);
         CREATE TABLE shop.ledger (kind VARCHAR(20), n INT);
         CREATE TABLE shop.audit (id INT PRIMARY KEY AUTO_INCREMENT, item INT, what VARCHAR(10));
         CREATE TRIGGER shop.items_ai AFTER INSERT ON shop.items FOR EACH ROW INSERT INTO shop.audit (item, what) VALUES (NEW.id, 'insert');
         INSERT INTO shop.items (name, price, qty) VALUES ('apple', 1.25, 10), ('pear', 2.50, 5);
         INSERT INTO shop.ledger VALUES ('open', 1);
         FLUSH BINARY LOGS;",
    );
    let mut work = String::new();
    for i in 0..300 {
        work.push_str(&format!(
            "START TRANSACTION;
             INSERT INTO shop.items (name, price, qty) VALUES ('item{i}', {i}.5, {i});
             UPDATE shop.ledger SET n = n + 1;
             INSERT INTO shop.ledger VALUES ('sale', {i});
             COMMIT;"
        ));
    }
    primary.sql(&work);
    primary.sql("FLUSH BINARY LOGS; UPDATE shop.items SET qty = qty + 1 WHERE id % 3 = 0; DELETE FROM shop.ledger WHERE n % 7 = 0;");
    let files = binlog_files(&primary);
    assert_eq!(files.len(), 3, "{files:?}");
    let source_dir = datadir(&primary);

    // The archive holds the first two files; the third comes later, first
    // cut inside an event, then whole.
    let archive = tempfile::tempdir().unwrap();
    for f in &files[..2] {
        copy(&source_dir.join(f), &archive.path().join(f));
    }
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master_on_files(archive.path(), data.path(), &listen, &[]);
    let mut slave = Rowcast::slave(&listen, &replica, "archive");
    // Killed part way, the slave resumes from its checkpoint: nothing
    // applied twice (ledger's running counter and its rows without a key
    // would show it).
    assert!(wait_until(CONVERGE, || count(&replica, "shop.items") >= 20));
    slave.kill9();
    let killed_at = count(&replica, "shop.items");
    let mut slave = Rowcast::slave(&listen, &replica, "archive");
    // 2 + 300 items, each with its trigger's audit row, which the binlog
    // carries as rows (the replica's own trigger must not add more).
    assert!(
        wait_until(CONVERGE, || count(&replica, "shop.items") == 302),
        "the first two files did not arrive: {} items\n{}",
        count(&replica, "shop.items"),
        slave.log_text()
    );
    assert_eq!(count(&replica, "shop.audit"), 302);
    assert_eq!(
        replica
            .sql("SELECT n FROM shop.ledger WHERE kind = 'open'")
            .trim(),
        "301",
        "killed after {killed_at} items"
    );

    let status = run_rowcast(
        &["status", "--master", &listen, "--json"],
        Duration::from_secs(60),
    );
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("binlog files in") && status.contains(&files[1]),
        "status does not show the files: {status}"
    );

    slave.kill9();
    let third = std::fs::read(source_dir.join(&files[2])).unwrap();
    std::fs::write(archive.path().join(&files[2]), &third[..third.len() - 20]).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(archive.path().join(&files[2]), &third).unwrap();
    let _slave = Rowcast::slave(&listen, &replica, "archive");
    wait_at(&replica, "archive", &last_commit(&primary, &files[2]));
    for t in ["shop.items", "shop.ledger", "shop.audit"] {
        assert_same_table(&primary, &replica, t);
    }
    assert_eq!(
        primary
            .sql("SHOW CREATE TRIGGER shop.items_ai")
            .split('\t')
            .nth(2),
        replica
            .sql("SHOW CREATE TRIGGER shop.items_ai")
            .split('\t')
            .nth(2),
    );
}

#[test]
fn a_master_restarted_on_its_change_log_reads_on_where_it_stopped_and_start_skips_ahead() {
    let primary = MariaDb::primary();
    primary.sql(
        "CREATE DATABASE a; CREATE TABLE a.t (id INT PRIMARY KEY, v INT);
         INSERT INTO a.t VALUES (1, 1), (2, 2);",
    );
    let skip_from = primary_position(&primary);
    primary.sql("FLUSH BINARY LOGS; INSERT INTO a.t VALUES (3, 3); UPDATE a.t SET v = v * 10;");
    let files = binlog_files(&primary);
    let archive = tempfile::tempdir().unwrap();
    for f in &files {
        copy(&datadir(&primary).join(f), &archive.path().join(f));
    }

    // --start after the first file's last transaction: the replica holds
    // what came before (here: created by hand, as a restored backup would).
    let replica = MariaDb::replica();
    replica.sql(
        "CREATE DATABASE a; CREATE TABLE a.t (id INT PRIMARY KEY, v INT);
         INSERT INTO a.t VALUES (1, 1), (2, 2);",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = master_on_files(
        archive.path(),
        data.path(),
        &listen,
        &["--start", &skip_from],
    );
    let _slave = Rowcast::slave(&listen, &replica, "later");
    wait_at(
        &replica,
        "later",
        &last_commit(&primary, files.last().unwrap()),
    );
    assert_same_table(&primary, &replica, "a.t");

    // Restarted on the same log, the master reads on from its end and
    // ignores a --start that no longer applies.
    master.stop();
    primary.sql("INSERT INTO a.t VALUES (4, 4)");
    let last = binlog_files(&primary).pop().unwrap();
    copy(&datadir(&primary).join(&last), &archive.path().join(&last));
    let _master = master_on_files(
        archive.path(),
        data.path(),
        &listen,
        &["--start", &format!("{}:4", files[0])],
    );
    wait_at(&replica, "later", &last_commit(&primary, &last));
    assert_same_table(&primary, &replica, "a.t");
}

#[test]
fn bad_binlog_dirs_and_start_positions_are_named() {
    let empty = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let dir = empty.path().to_str().unwrap();
    let out = run_rowcast(
        &[
            "master",
            "--binlog-dir",
            dir,
            "--listen",
            &listen,
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no binlog files in"), "{err}");

    let out = run_rowcast(
        &[
            "master",
            "--binlog-dir",
            dir,
            "--start",
            "nonsense",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid --start `nonsense`"), "{err}");

    let out = run_rowcast(
        &[
            "master",
            "--binlog-dir",
            dir,
            "--source",
            "mysql://root@127.0.0.1:1",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}

/// A real MariaDB 10.5.15 binlog (rust_mysql_common's `mariadb-bin.000001`,
/// binlog_row_metadata=FULL): two inserts into `toddy_test.outbox`, whose
/// CREATE the file does not hold.
#[test]
fn a_mariadb_10_5_binlog_replays_into_a_replica() {
    let archive = tempfile::tempdir().unwrap();
    copy(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/mysql-binlogs/rust_mysql_common/mariadb-bin.000001"
        )),
        &archive.path().join("mariadb-bin.000001"),
    );
    let replica = MariaDb::replica();
    replica.sql(
        "CREATE DATABASE toddy_test;
         CREATE TABLE toddy_test.outbox (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, topic VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL,
           event_type ENUM('BLOB','JSON','PROTOBUF') NOT NULL, event BLOB NOT NULL, created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master_on_files(archive.path(), data.path(), &listen, &[]);
    let slave = Rowcast::slave(&listen, &replica, "outbox");
    assert!(
        wait_until(CONVERGE, || count(&replica, "toddy_test.outbox") == 2),
        "rows did not arrive\n{}",
        slave.log_text()
    );
    // The file's decode (`mariadb-binlog -vv`): ids 62 and 63, 'foo', enum
    // index 2 of ('BLOB','JSON','PROTOBUF'), '{"foo":1}', and the commit
    // times 1650493084 and 1650493195.
    let rows = replica.sql(
        "SELECT id, topic, event_type, event, UNIX_TIMESTAMP(created) FROM toddy_test.outbox ORDER BY id",
    );
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(
        rows,
        [
            "62\tfoo\tJSON\t{\"foo\":1}\t1650493084",
            "63\tfoo\tJSON\t{\"foo\":1}\t1650493195"
        ]
    );
}

/// A real file of the whole sakila sample database loaded into MySQL
/// 5.5.27 (shyiko/mysql-binlog-connector-java's `mysql-bin.sakila.gz`): 36
/// CREATEs (tables with foreign keys, triggers, views, routines) and 1374
/// v1 WRITE_ROWS events, without checksums, with pre-5.6 TIMESTAMP and
/// DATETIME, and TABLE_MAPs without column names or signedness (5.5 has
/// no optional metadata), mapped by position onto the tables the file
/// creates. Expected values: the file's `mariadb-binlog -vv` decode.
#[test]
fn the_sakila_load_from_a_mysql_5_5_binlog_replays_whole() {
    let archive = tempfile::tempdir().unwrap();
    let gz = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/mysql-binlogs/shyiko-binlog-connector-java/mysql-bin.sakila.gz"
    );
    let out = std::process::Command::new("gzip")
        .args(["-dc", gz])
        .output()
        .expect("gzip");
    assert!(out.status.success());
    std::fs::write(archive.path().join("mysql-bin.000001"), &out.stdout).unwrap();

    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master_on_files(archive.path(), data.path(), &listen, &[]);
    let slave = Rowcast::slave(&listen, &replica, "sakila");
    let expected = [
        ("actor", 200),
        ("address", 603),
        ("category", 16),
        ("city", 600),
        ("country", 109),
        ("customer", 599),
        ("film", 1000),
        ("film_actor", 5462),
        ("film_category", 1000),
        ("film_text", 1000),
        ("inventory", 4581),
        ("language", 6),
        ("payment", 16049),
        ("rental", 16044),
        ("staff", 2),
        ("store", 2),
    ];
    assert!(
        wait_until(CONVERGE, || count(&replica, "sakila.rental") == 16044
            && count(&replica, "sakila.payment") == 16049),
        "sakila did not arrive\n{}",
        slave.log_text()
    );
    for (table, rows) in expected {
        assert_eq!(count(&replica, &format!("sakila.{table}")), rows, "{table}");
    }
    let q = |sql: &str| replica.sql(sql).trim().to_string();
    assert_eq!(
        q("SELECT SUM(amount), MAX(payment_date) FROM sakila.payment"),
        "67416.51\t2006-02-14 15:16:03"
    );
    assert_eq!(q("SELECT SUM(length) FROM sakila.film"), "115272");
    assert_eq!(
        q("SELECT title, release_year, rating, special_features, rental_rate, UNIX_TIMESTAMP(last_update) FROM sakila.film WHERE film_id = 1"),
        "ACADEMY DINOSAUR\t2006\tPG\tDeleted Scenes,Behind the Scenes\t0.99\t1139976222"
    );
    // Unsigned SMALLINT keys survive without signedness in the binlog.
    assert_eq!(
        q("SELECT MAX(customer_id), MAX(inventory_id) FROM sakila.rental"),
        "599\t4581"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = 'sakila'"),
        "6"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM information_schema.views WHERE table_schema = 'sakila'"),
        "7"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = 'sakila'"),
        "6"
    );
    // The film triggers filled film_text on the primary; their rows came
    // from the binlog, not from the replica's own triggers firing again.
    assert_eq!(
        q("SELECT title FROM sakila.film_text WHERE film_id = 1"),
        "ACADEMY DINOSAUR"
    );
}
