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
    let _master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
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
    let mut master = Rowcast::master_on_files(
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
    let _master = Rowcast::master_on_files(
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
    assert!(err.contains("cannot be used together"), "{err}");
}

/// A real MariaDB 10.5.15 binlog (rust_mysql_common's `mariadb-bin.000001`,
/// binlog_row_metadata=FULL): two inserts into `toddy_test.outbox`, whose
/// CREATE the file does not hold.
#[test]
fn a_mariadb_10_5_binlog_replays_into_a_replica() {
    let (archive, _) = archive_of("rust_mysql_common/mariadb-bin.000001");
    let replica = MariaDb::replica();
    replica.sql(
        "CREATE DATABASE toddy_test;
         CREATE TABLE toddy_test.outbox (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, topic VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL,
           event_type ENUM('BLOB','JSON','PROTOBUF') NOT NULL, event BLOB NOT NULL, created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
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
    let _master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
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

/// What an independent decoder (`mariadb-binlog -vv`, Debian MariaDB
/// 10.11) printed for one table: its column types, the rows the file
/// changes but did not insert (which the replica must hold first), and the
/// rows after the file.
#[derive(Default, Debug)]
struct DecodedTable {
    types: Vec<String>,
    before: Vec<Vec<String>>,
    after: Vec<Vec<String>>,
}

/// Reads a `mariadb-binlog -vv` decode of full row images into the state
/// of each table it touches (values as printed: strings quoted with
/// `\xNN` escapes, TIMESTAMP as epoch seconds, signed integers with their
/// unsigned reading after them in parentheses).
fn decoded_tables(vv: &str) -> std::collections::BTreeMap<String, DecodedTable> {
    #[derive(PartialEq)]
    enum Op {
        Insert,
        Update,
        Delete,
    }
    let mut tables: std::collections::BTreeMap<String, DecodedTable> = Default::default();
    let mut current: Option<(String, Op)> = None;
    let mut images: Vec<Vec<String>> = Vec::new();
    let flush = |current: &Option<(String, Op)>,
                 images: &mut Vec<Vec<String>>,
                 tables: &mut std::collections::BTreeMap<String, DecodedTable>| {
        let Some((table, op)) = current else { return };
        let t = tables.entry(table.clone()).or_default();
        let mut it = std::mem::take(images).into_iter();
        match op {
            Op::Insert => t.after.push(it.next().expect("an image")),
            Op::Update | Op::Delete => {
                let old = it.next().expect("a before image");
                match t.after.iter().position(|r| *r == old) {
                    Some(i) => {
                        t.after.remove(i);
                    }
                    None => t.before.push(old),
                }
                if *op == Op::Update {
                    t.after.push(it.next().expect("an after image"));
                }
            }
        }
    };
    for line in vv.lines() {
        let Some(rest) = line.strip_prefix("### ") else {
            continue;
        };
        let op = [
            ("INSERT INTO ", Op::Insert),
            ("UPDATE ", Op::Update),
            ("DELETE FROM ", Op::Delete),
        ]
        .into_iter()
        .find_map(|(p, op)| rest.strip_prefix(p).map(|t| (t.replace('`', ""), op)));
        if let Some(op) = op {
            flush(&current, &mut images, &mut tables);
            current = Some(op);
        } else if rest == "SET" || rest == "WHERE" {
            images.push(Vec::new());
        } else if let Some(col) = rest.trim_start().strip_prefix('@') {
            let (value, comment) = col.rsplit_once(" /* ").expect("a typed value");
            let (n, value) = value.split_once('=').unwrap();
            let n: usize = n.parse().unwrap();
            let image = images.last_mut().expect("SET or WHERE first");
            assert_eq!(image.len() + 1, n, "full row images only: {line}");
            image.push(value.to_string());
            let table = &current.as_ref().unwrap().0;
            let t = tables.entry(table.clone()).or_default();
            if t.types.len() < n {
                // BLOB's size class is in its meta (1-4 length bytes).
                let mut words = comment.split(' ');
                let ty = words.next().unwrap();
                t.types.push(match ty {
                    "BLOB/TEXT" => format!("{ty} {}", words.next().unwrap()),
                    _ => ty.to_string(),
                });
            }
        }
    }
    flush(&current, &mut images, &mut tables);
    tables
}

/// The bytes of a value `mariadb-binlog` printed quoted.
fn unquote(v: &str) -> Option<Vec<u8>> {
    let inner = v.strip_prefix('\'')?.strip_suffix('\'')?;
    let (mut out, mut b) = (Vec::new(), inner.bytes().peekable());
    while let Some(c) = b.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match b.next() {
            Some(b'x') => {
                let hex: Vec<u8> = (0..2).filter_map(|_| b.next()).collect();
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
            }
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    Some(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// A printed value as the replica-side SELECT of [`replica_rows`] shows it.
fn normalised(v: &str) -> String {
    if let Some(bytes) = unquote(v) {
        return hex(&bytes);
    }
    // `-1 (4294967295)`: the signed reading, as the tables here are signed.
    v.split(" (").next().unwrap().to_string()
}

/// A replica column for a printed type (binary strings: the bytes are
/// compared, whatever the primary's charset was).
fn column_type(t: &str) -> String {
    let arg = |t: &str| t[t.find('(').unwrap() + 1..t.find(')').unwrap()].to_string();
    match t {
        "TINYINT" => "TINYINT".into(),
        "SHORTINT" => "SMALLINT".into(),
        "MEDIUMINT" => "MEDIUMINT".into(),
        "INT" => "INT".into(),
        "LONGINT" => "BIGINT".into(),
        "DOUBLE" => "DOUBLE".into(),
        "FLOAT" => "FLOAT".into(),
        // The replica's row-event applier (tables without a key) wants
        // the very type, not a wider one.
        "BLOB/TEXT meta=1" => "TINYBLOB".into(),
        "BLOB/TEXT meta=2" => "BLOB".into(),
        "BLOB/TEXT meta=3" => "MEDIUMBLOB".into(),
        "BLOB/TEXT meta=4" => "LONGBLOB".into(),
        t if t.starts_with("VARSTRING(") => format!("VARBINARY({})", arg(t)),
        // CHAR stays CHAR (its trailing spaces are not stored): n bytes
        // of utf8 or latin1.
        t if t.starts_with("STRING(") => match arg(t).parse::<u32>().unwrap() {
            n if n % 3 == 0 => format!("CHAR({}) CHARACTER SET utf8mb3", n / 3),
            n => format!("CHAR({n}) CHARACTER SET latin1"),
        },
        t if t.starts_with("DECIMAL(") => format!("DECIMAL({})", arg(t)),
        t if t.starts_with("TIMESTAMP(") => format!("TIMESTAMP({}) NULL DEFAULT NULL", arg(t)),
        t if t.starts_with("DATETIME(") => format!("DATETIME({})", arg(t)),
        t if t.starts_with("TIME(") => format!("TIME({})", arg(t)),
        t => panic!("no replica type for {t}"),
    }
}

/// CREATE TABLE (columns c1..cN) for a table the file doesn't create.
fn create_table(name: &str, t: &DecodedTable) -> String {
    let (db, _) = name.split_once('.').unwrap();
    let cols: Vec<String> = t
        .types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("c{} {}", i + 1, column_type(ty)))
        .collect();
    format!(
        "CREATE DATABASE IF NOT EXISTS {db}; CREATE TABLE {name} ({})",
        cols.join(", ")
    )
}

/// An INSERT of the rows the file expects to find.
fn insert_rows(name: &str, t: &DecodedTable) -> Option<String> {
    let rows: Vec<String> = t
        .before
        .iter()
        .map(|r| {
            let vals: Vec<String> = r
                .iter()
                .zip(&t.types)
                .map(|(v, ty)| match (unquote(v), ty.starts_with("TIMESTAMP")) {
                    (Some(b), _) => format!("X'{}'", hex(&b)),
                    (None, true) if v != "NULL" => format!("FROM_UNIXTIME({v})"),
                    (None, _) => normalised(v),
                })
                .collect();
            format!("({})", vals.join(", "))
        })
        .collect();
    (!rows.is_empty()).then(|| {
        format!(
            "SET time_zone = '+00:00'; INSERT INTO {name} VALUES {}",
            rows.join(", ")
        )
    })
}

/// The replica's rows, each column as [`normalised`] prints its value.
fn replica_rows(replica: &MariaDb, name: &str) -> Vec<Vec<String>> {
    let (db, table) = name.split_once('.').unwrap();
    let cols = replica.sql(&format!(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = '{db}' AND table_name = '{table}' ORDER BY ordinal_position"
    ));
    let exprs: Vec<String> = cols
        .lines()
        .map(|l| {
            let (c, ty) = l.split_once('\t').unwrap();
            let e = match ty {
                "timestamp" => format!("UNIX_TIMESTAMP(`{c}`)"),
                "datetime" | "date" | "time" | "char" | "varchar" | "binary" | "varbinary"
                | "text" | "mediumtext" | "longtext" | "blob" | "mediumblob" | "longblob"
                | "tinyblob" => {
                    format!("HEX(`{c}`)")
                }
                _ => format!("`{c}`"),
            };
            format!("IFNULL({e}, 'NULL')")
        })
        .collect();
    if exprs.is_empty() {
        // The file has not created it yet.
        return Vec::new();
    }
    let mut rows: Vec<Vec<String>> = replica
        .sql(&format!(
            "SET time_zone = '+00:00'; SELECT {} FROM {name}",
            exprs.join(", ")
        ))
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    rows.sort();
    rows
}

/// Replays `file` (under testdata/mysql-binlogs/) into a fresh replica
/// after creating the tables in `create` (the file has no CREATE for them)
/// and the rows the file changes without inserting, then compares every
/// table the decode names with the decode, row by row and byte by byte.
fn replay_matches_decode(file: &str, vv: &str, create: &[&str]) {
    let decoded = decoded_tables(vv);
    assert!(!decoded.is_empty());
    let replica = MariaDb::replica();
    for (name, t) in &decoded {
        if create == ["*"] || create.contains(&name.as_str()) {
            replica.sql(&create_table(name, t));
        }
        if let Some(sql) = insert_rows(name, t) {
            replica.sql(&sql);
        }
    }
    let (archive, _) = archive_of(file);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
    let slave = Rowcast::slave(&listen, &replica, "decode");
    for (name, t) in &decoded {
        let mut want: Vec<Vec<String>> = t
            .after
            .iter()
            .map(|r| r.iter().map(|v| normalised(v)).collect())
            .collect();
        want.sort();
        let ok = wait_until(CONVERGE, || replica_rows(&replica, name) == want);
        assert!(
            ok,
            "{name} differs from the decode:\nreplica {:?}\ndecode  {want:?}\nslave:\n{}\nmaster:\n{}",
            replica_rows(&replica, name),
            slave.log_text(),
            master.log_text()
        );
    }
}

fn decode_of(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/mysql-binlogs/decoded")
            .join(format!("{file}.mariadb-binlog-vv.txt")),
    )
    .unwrap()
}

/// MySQL 5.7.21 with CRC32 checksums: 60 transactions of a real
/// application on 17 tables in 4 databases (inserts, updates and deletes,
/// some of rows from before the file), DOUBLE, TIMESTAMP2, DECIMAL, BIGINT;
/// no CREATE in the file and no column names in its TABLE_MAPs.
#[test]
fn a_mysql_5_7_application_binlog_matches_an_independent_decode() {
    replay_matches_decode(
        "shyiko-binlog-connector-java/mysql-bin.checksum-crc32",
        &decode_of("mysql-bin.checksum-crc32"),
        &["*"],
    );
}

/// MySQL 5.7.20 with binlog_checksum=NONE: DATETIME2 and CHAR(36) UUID
/// keys; the file creates three of its four tables.
#[test]
fn a_mysql_5_7_binlog_without_checksums_matches_an_independent_decode() {
    replay_matches_decode(
        "shyiko-binlog-connector-java/mysql-bin.checksum-none",
        &decode_of("mysql-bin.checksum-none"),
        &["meeteam_file_storage.meeteam_fs_storage"],
    );
}

/// Percona Server 5.6.16: DECIMAL in 11 precision/scale pairs, values
/// clamped by the server as the decode shows them.
#[test]
fn percona_5_6_decimals_match_an_independent_decode() {
    replay_matches_decode(
        "go-mysql/tcb-eval002c-bin.003320",
        &decode_of("tcb-eval002c-bin.003320"),
        &["*"],
    );
}

/// MySQL 8.0.40: a negative TIME of more than 24 hours (-507:48:27), in a
/// TABLE_MAP without optional metadata.
#[test]
fn a_negative_time_over_a_day_matches_an_independent_decode() {
    replay_matches_decode(
        "rust_mysql_common/time_issue.000001",
        &decode_of("time_issue.000001"),
        &["*"],
    );
}

/// A MariaDB primary's binlog written with binlog_row_metadata=MINIMAL (no
/// column names, keys or enum strings in its TABLE_MAPs) replays by
/// column position onto the tables its own DDL created on the replica.
#[test]
fn a_mariadb_binlog_with_minimal_metadata_replays_by_position() {
    let primary = MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        "--binlog_row_metadata=MINIMAL",
    ]);
    primary.sql(
        "CREATE DATABASE m;
         CREATE TABLE m.t (id INT UNSIGNED PRIMARY KEY, tiny TINYINT UNSIGNED, small SMALLINT UNSIGNED,
           mid MEDIUMINT UNSIGNED, big BIGINT UNSIGNED, s VARCHAR(20) CHARACTER SET utf8mb4, l VARCHAR(20) CHARACTER SET latin1,
           b BINARY(4), e ENUM('x','y','z'), st SET('a','b','c'), d DECIMAL(12,3), dt DATETIME(6), ts TIMESTAMP(3) NULL, j JSON);
         CREATE TABLE m.nokey (a INT, b VARCHAR(10));
         INSERT INTO m.t VALUES (4294967295, 255, 65535, 16777215, 18446744073709551615, 'ünï', 'café', 'ab', 'z', 'a,c', -123456789.123,
           '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.999', '{\"k\": [1, 2]}'),
           (1, 0, 0, 0, 0, '', '', '', 'x', '', 0, '1000-01-01 00:00:00', NULL, NULL);
         INSERT INTO m.nokey VALUES (1, 'one'), (1, 'one'), (2, 'two');
         FLUSH BINARY LOGS;
         UPDATE m.t SET big = big - 1, e = 'y', s = CONCAT(s, '✓') WHERE id = 4294967295;
         DELETE FROM m.nokey WHERE a = 1 LIMIT 1;
         UPDATE m.nokey SET b = 'TWO' WHERE a = 2;
         ALTER TABLE m.nokey ADD COLUMN c INT UNSIGNED DEFAULT 7;
         INSERT INTO m.nokey VALUES (3, 'three', 4000000000);",
    );
    let files = binlog_files(&primary);
    let archive = tempfile::tempdir().unwrap();
    for f in &files {
        copy(&datadir(&primary).join(f), &archive.path().join(f));
    }
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
    let _slave = Rowcast::slave(&listen, &replica, "minimal");
    wait_at(
        &replica,
        "minimal",
        &last_commit_or_ddl(&primary, files.last().unwrap()),
    );
    for t in ["m.t", "m.nokey"] {
        assert_same_table(&primary, &replica, t);
    }
}

/// Like [`last_commit`], also counting a DDL statement as a commit.
fn last_commit_or_ddl(primary: &MariaDb, file: &str) -> String {
    let events = primary.sql(&format!("SHOW BINLOG EVENTS IN '{file}'"));
    let end = events
        .lines()
        .rev()
        .find(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f[2] == "Xid"
                || (f[2] == "Query" && !f[5].starts_with("BEGIN") && !f[5].starts_with("COMMIT"))
        })
        .map(|l| l.split('\t').nth(4).unwrap().to_string())
        .expect("a transaction");
    format!("{file}:{end}")
}

/// A replica table whose column type differs from the primary's (here a
/// wider BLOB) on a table the replica's own row-event applier writes (no
/// primary key): the slave stops naming the column, both types and the
/// fix, rather than MariaDB's bare "Unknown error".
#[test]
fn a_replica_column_of_another_type_stops_with_the_servers_reason() {
    let primary = MariaDb::primary();
    primary.sql("CREATE DATABASE x; CREATE TABLE x.nokey (a INT, b BLOB); FLUSH BINARY LOGS; INSERT INTO x.nokey VALUES (1, 'one');");
    let files = binlog_files(&primary);
    let archive = tempfile::tempdir().unwrap();
    let last = files.last().unwrap();
    copy(&datadir(&primary).join(last), &archive.path().join(last));
    let replica = MariaDb::replica();
    replica.sql("CREATE DATABASE x; CREATE TABLE x.nokey (a INT, b LONGBLOB)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
    let mut slave = Rowcast::slave(&listen, &replica, "wide");
    assert!(
        wait_until(CONVERGE, || !slave.is_running()),
        "the slave kept running"
    );
    let log = slave.log_text();
    assert!(
        log.contains("cannot be converted from type 'blob' to type 'longblob'")
            && log.contains("same type"),
        "{log}"
    );
    assert_eq!(count(&replica, "x.nokey"), 0);
}

/// Replays one file of testdata/mysql-binlogs/ into a replica prepared
/// with `setup`; returns the servers and processes for the test to watch.
fn replay_file(file: &str, setup: &str) -> (MariaDb, Rowcast, Rowcast, [tempfile::TempDir; 2]) {
    let replica = MariaDb::replica();
    if !setup.is_empty() {
        replica.sql(setup);
    }
    let (archive, _) = archive_of(file);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
    let slave = Rowcast::slave(&listen, &replica, "file");
    // The archive and the change log live as long as the test holds them.
    (replica, master, slave, [archive, data])
}

fn wait_rows(replica: &MariaDb, sql: &str, want: &str, slave: &Rowcast) {
    let ok = wait_until(CONVERGE, || {
        replica
            .try_sql(sql)
            .map(|s| s.trim_end() == want)
            .unwrap_or(false)
    });
    assert!(
        ok,
        "`{sql}` gives {:?}, not {want:?}\n{}",
        replica.try_sql(sql),
        slave.log_text()
    );
}

/// MySQL 9.0.1: JSON documents holding opaque values (a MySQL-only type,
/// DATE, DATETIME, TIME, DECIMAL) reach the replica as MySQL's SELECT
/// prints them; the file creates `foo.test`, MINIMAL metadata.
#[test]
fn mysql_json_with_opaque_values_arrives_as_mysql_prints_it() {
    let (replica, _m, slave, _d) = replay_file("rust_mysql_common/json-opaque.binlog", "");
    wait_rows(
        &replica,
        "SELECT a FROM foo.test",
        r#"{"a": "base64:type15:VQ=="}
{"b": "2012-03-18"}
{"c": "2012-03-18 11:30:45.000000"}
{"c": "87:31:46.654321"}
{"d": 123.456}
{"e": 9.00}
{"e": [0, 1, true, false]}
{"e": null}"#,
        &slave,
    );
    // MySQL 9's default collation (utf8mb4_0900_ai_ci, in the CREATE
    // DATABASE's session context) became MariaDB's UCA 14 one.
    assert_eq!(
        replica
            .sql("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'foo'")
            .trim(),
        "utf8mb4_uca1400_ai_ci"
    );
}

/// MySQL 9.6.0: a transaction with a tagged GTID (GTID_TAGGED_LOG_EVENT);
/// the slave's checkpoint keeps the tag.
#[test]
fn a_tagged_gtid_from_mysql_9_6_is_applied_and_checkpointed() {
    let (replica, _m, slave, _d) = replay_file(
        "rust_mysql_common/binlog_transaction_with_GTID_TAG.000001",
        "CREATE DATABASE test; CREATE TABLE test.orders (a INT, b INT, c DECIMAL(10,2))",
    );
    wait_rows(
        &replica,
        "SELECT source_gtid FROM rowcast.checkpoint",
        "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3",
        &slave,
    );
    assert_eq!(replica.sql("SELECT COUNT(*) FROM test.orders").trim(), "1");
}

/// MySQL 8.0.32 with binlog_transaction_compression: the INSERT inside a
/// zstd TRANSACTION_PAYLOAD.
#[test]
fn a_compressed_mysql_transaction_is_expanded_and_applied() {
    let (replica, _m, slave, _d) = replay_file(
        "rust_mysql_common/transaction_compression.000001",
        "CREATE DATABASE test; CREATE TABLE test.tb1 (a INT)",
    );
    wait_rows(&replica, "SELECT a FROM test.tb1", "1", &slave);
}

/// MySQL 8.0.40, binlog_row_metadata=MINIMAL and binlog_row_image=MINIMAL:
/// an INSERT that logs only columns 1, 3 and 5; column 5 is INT UNSIGNED,
/// known from the SIGNEDNESS metadata (3230202323).
#[test]
fn a_minimal_image_with_minimal_metadata_from_mysql_8_is_applied_by_position() {
    let (replica, _m, slave, _d) = replay_file(
        "rust_mysql_common/minimal_row_metadata.000001",
        "CREATE DATABASE noria; CREATE TABLE noria.t1 (a INT NOT NULL, b TEXT, c CHAR(2) CHARACTER SET utf8mb4, d INT DEFAULT 42, e INT UNSIGNED)",
    );
    wait_rows(
        &replica,
        "SELECT a, b, c, d, e FROM noria.t1",
        "1\tNULL\ta\t42\t3230202323",
        &slave,
    );
}

/// Aurora MySQL 5.7.12 (osheroff's `mysql-bin.aurora-padding`): an event of
/// an unknown type (100) marked ignorable, then the file ends after a
/// BEGIN. The master reads it to its end and keeps serving; nothing is
/// logged or applied, since no transaction committed.
#[test]
fn an_aurora_file_with_an_ignorable_event_and_an_open_transaction_applies_nothing() {
    let (archive, name) = archive_of("osheroff-binlog-connector-java/mysql-bin.aurora-padding");
    let size = std::fs::metadata(archive.path().join(&name)).unwrap().len();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
    let _slave = Rowcast::slave(&listen, &replica, "aurora");
    let end = format!("\"file\":\"{name}\",\"offset\":{size}");
    let ok = wait_until(CONVERGE, || {
        let out = run_rowcast(
            &["status", "--master", &listen, "--json"],
            Duration::from_secs(30),
        );
        let status: String = String::from_utf8_lossy(&out.stdout)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        status.contains(&end) && status.contains("\"log_last_seq\":0")
    });
    assert!(
        ok,
        "status never showed the file read to {end} with nothing logged\n{}",
        master.log_text()
    );
    assert!(master.is_running(), "{}", master.log_text());
    assert_eq!(slave_position(&replica, "aurora"), "");
}
