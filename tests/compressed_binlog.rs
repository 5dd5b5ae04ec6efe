//! A MariaDB primary with `log_bin_compress=ON` against real servers: its
//! DDL and big rows arrive as QUERY_COMPRESSED and ROWS_COMPRESSED events,
//! small ones (under `log_bin_compress_min_len`) as plain events, often in
//! the same transaction. The master expands the compressed ones; slaves,
//! live and from a backlog, must end with every table equal to the
//! primary's, including tables applied through the replica's row-event
//! applier (no primary key, partial row images), which replays the
//! expanded events themselves.

mod support;

use support::*;

fn compressed_primary(extra: &[&str]) -> MariaDb {
    let mut args = vec![
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        "--binlog_row_metadata=FULL",
        "--log-bin-compress=ON",
        "--log-bin-compress-min-len=10",
    ];
    args.extend_from_slice(extra);
    MariaDb::start_with(&args)
}

const TABLES: &[&str] = &["app.items", "app.nokey", "app.small"];

fn workload(primary: &MariaDb) {
    primary.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.items (id INT PRIMARY KEY, name VARCHAR(200) CHARACTER SET utf8mb4,
           body MEDIUMTEXT CHARACTER SET utf8mb4, img BLOB, price DECIMAL(10,2),
           at DATETIME(6), flags SET('a','b','c'), kind ENUM('x','y'), doc JSON,
           u BIGINT UNSIGNED, raw BINARY(4)) ENGINE=InnoDB;
         CREATE TABLE app.nokey (n INT, note VARCHAR(500) CHARACTER SET latin1) ENGINE=InnoDB;
         CREATE TABLE app.small (id TINYINT PRIMARY KEY, v TINYINT) ENGINE=InnoDB;",
    );
    // Rows big and small: the small ones stay uncompressed, and a 3 MB one
    // inflates in several steps.
    primary.sql(
        "INSERT INTO app.small VALUES (1, 1);
         INSERT INTO app.items (id) VALUES (1);
         INSERT INTO app.items VALUES (2, 'ü😀 naïve', REPEAT('body ', 5000), REPEAT(x'00ff', 2000),
           12.34, '2024-02-29 12:00:00.123456', 'a,c', 'y', '{\"k\": [1, \"ü\"]}',
           18446744073709551615, x'01');
         INSERT INTO app.items (id, name, body, price, kind)
           SELECT 100 + seq, CONCAT('name ', seq), REPEAT('r', seq * 3), seq / 7, 'x'
           FROM app.seq_1_to_500;
         INSERT INTO app.nokey SELECT seq, REPEAT('k', seq) FROM app.seq_1_to_300;
         INSERT INTO app.nokey VALUES (1, 'dup'), (1, 'dup');
         INSERT INTO app.items (id, body) VALUES (4, REPEAT('big compressible row ', 150000));",
    );
    primary.sql(
        "BEGIN;
         UPDATE app.items SET body = CONCAT(body, '!'), price = price + 1 WHERE id <= 2 OR id % 7 = 0;
         UPDATE app.small SET v = 2 WHERE id = 1;
         DELETE FROM app.items WHERE id % 5 = 0;
         UPDATE app.nokey SET note = CONCAT(note, 'u') WHERE n % 2 = 0;
         DELETE FROM app.nokey WHERE n % 3 = 0;
         COMMIT;",
    );
    // A DDL (compressed itself), then rows written under the new shape.
    primary.sql(
        "ALTER TABLE app.items ADD COLUMN extra VARCHAR(50) DEFAULT 'dflt' AFTER name;
         UPDATE app.items SET extra = 'after alter', doc = JSON_OBJECT('id', id) WHERE id % 3 = 0;
         INSERT INTO app.small VALUES (2, NULL);",
    );
    // Partial images: only the replica's row-event applier can apply them,
    // from the expanded events (one of 2.4 MB).
    primary.sql(
        "SET SESSION binlog_row_image = MINIMAL;
         UPDATE app.items SET name = REPEAT('minimal ', 20) WHERE id % 11 = 0;
         DELETE FROM app.items WHERE id = 1;
         INSERT INTO app.items (id, body) VALUES (3, REPEAT('m', 1000));
         UPDATE app.items SET body = REPEAT('minimal big ', 200000) WHERE id = 3;",
    );
    primary.sql(
        "BEGIN;
         SET SESSION binlog_row_image = NOBLOB;
         UPDATE app.items SET price = 0 WHERE id BETWEEN 100 AND 160;
         SET SESSION binlog_row_image = FULL;
         DELETE FROM app.nokey WHERE n > 250;
         DELETE FROM app.small WHERE id = 2;
         COMMIT;",
    );
}

/// What the primary holds, spelled out, so a replica equal to a wrong
/// primary cannot pass.
fn assert_expected_contents(db: &MariaDb) {
    let one = |sql: &str| db.sql(sql).trim().to_string();
    assert_eq!(one("SELECT COUNT(*) FROM app.items"), "403");
    assert_eq!(
        one("SELECT GROUP_CONCAT(LENGTH(body) ORDER BY id) FROM app.items WHERE id <= 5"),
        "25001,2400000,3150000"
    );
    assert_eq!(
        one("SELECT HEX(name) FROM app.items WHERE id = 2"),
        "C3BC F09F9880 206E61C3AF7665".replace(' ', "")
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM app.items WHERE extra = 'after alter'"),
        "133"
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM app.items WHERE name LIKE 'minimal %'"),
        "36"
    );
    assert_eq!(one("SELECT COUNT(*) FROM app.nokey"), "169");
    assert_eq!(
        one("SELECT GROUP_CONCAT(CONCAT(id, ':', IFNULL(v, '-'))) FROM app.small"),
        "1:2"
    );
}

#[test]
fn a_primary_with_log_bin_compress_replicates_exactly() {
    replicates_exactly(&[], "CRC32");
}

/// Without checksums the expanded events carry none either, and the
/// replayed ones are sealed without.
#[test]
fn a_primary_with_log_bin_compress_and_no_checksums_replicates_exactly() {
    replicates_exactly(&["--binlog-checksum=NONE"], "NONE");
}

fn replicates_exactly(primary_args: &[&str], checksum: &str) {
    let primary = compressed_primary(primary_args);
    assert_eq!(
        primary
            .sql("SELECT @@log_bin_compress, @@log_bin_compress_min_len, @@binlog_checksum")
            .trim(),
        format!("1\t10\t{checksum}")
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    let live_db = MariaDb::replica();
    let backlog_db = MariaDb::replica();
    let mut live = Rowcast::slave(&listen, &live_db, "live");
    let mut backlog = Rowcast::slave(&listen, &backlog_db, "backlog");
    wait_caught_up(&primary, &live_db, "live");
    wait_caught_up(&primary, &backlog_db, "backlog");
    backlog.stop();

    workload(&primary);
    // The primary really wrote compressed events of every kind, and plain
    // ones beside them.
    let events = primary.sql("SHOW BINLOG EVENTS IN 'binlog.000001'");
    for kind in [
        "Query_compressed",
        "Write_rows_compressed_v1",
        "Update_rows_compressed_v1",
        "Delete_rows_compressed_v1",
        "Write_rows_v1",
        "Update_rows_v1",
    ] {
        assert!(
            events.lines().any(|l| l.split('\t').nth(2) == Some(kind)),
            "no {kind} event in the primary's binlog:\n{events}"
        );
    }
    assert_expected_contents(&primary);

    wait_caught_up(&primary, &live_db, "live");
    for table in TABLES {
        assert_same_table(&primary, &live_db, table);
    }
    assert_expected_contents(&live_db);
    assert!(
        live.is_running(),
        "live slave stopped:\n{}",
        live.log_text()
    );

    // From the change log, in batches.
    let mut backlog = Rowcast::slave(&listen, &backlog_db, "backlog");
    wait_caught_up(&primary, &backlog_db, "backlog");
    for table in TABLES {
        assert_same_table(&primary, &backlog_db, table);
    }
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
}
