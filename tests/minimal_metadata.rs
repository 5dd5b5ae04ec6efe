//! Replication from a primary that logs no column names: MariaDB with
//! `binlog_row_metadata=MINIMAL` (signedness and charsets, no names, no
//! key, as MySQL 8's default) and `NO_LOG` (no optional metadata at all,
//! as MySQL 5.7 and MariaDB before 10.5). The slave maps the rows onto
//! the replica's own table by column position (`replica/positional.rs`).

mod support;

use std::time::Duration;

use support::*;

const TABLES: [&str; 8] = [
    "m.ints", "m.bins", "m.bkey", "m.strs", "m.misc", "m.nokey", "m.later", "m.copied",
];

fn primary_with(metadata: &str) -> MariaDb {
    MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        &format!("--binlog-row-metadata={metadata}"),
    ])
}

/// Every type the mapping touches, changed by insert, update and delete,
/// and a DDL that adds a column while the slave runs.
fn replicates_every_table(metadata: &str) {
    let primary = primary_with(metadata);
    assert_eq!(primary.sql("SELECT @@binlog_row_metadata").trim(), metadata);
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    // Small parts: the large transaction below arrives in several.
    let mut master = Rowcast::master_with(&primary, data.path(), &listen, &["--part-kb", "64"]);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    // Everything below comes from the binlog, not from the snapshot.
    wait_caught_up(&primary, &replica, "s");
    primary.sql(
        "CREATE DATABASE m;
         CREATE TABLE m.ints (id INT PRIMARY KEY, t TINYINT UNSIGNED, s SMALLINT UNSIGNED,
           mi MEDIUMINT UNSIGNED, i INT UNSIGNED, b BIGINT UNSIGNED, st TINYINT, sm MEDIUMINT,
           sb BIGINT);
         CREATE TABLE m.bins (id INT PRIMARY KEY, b BINARY(8), vb VARBINARY(8), u UUID,
           k BINARY(3) NOT NULL, UNIQUE KEY (k));
         CREATE TABLE m.bkey (k BINARY(4) PRIMARY KEY, v INT);
         CREATE TABLE m.strs (id INT PRIMARY KEY, e ENUM('a','b','c'), st SET('x','y','z'),
           l1 VARCHAR(10) CHARACTER SET latin1, u8 VARCHAR(10) CHARACTER SET utf8mb4,
           c CHAR(5) CHARACTER SET utf8mb3, uc VARCHAR(10) CHARACTER SET ucs2,
           bl BLOB, tx TEXT CHARACTER SET utf8mb4);
         CREATE TABLE m.misc (id INT PRIMARY KEY, d DECIMAL(30,10), dt DATETIME(6),
           ts TIMESTAMP(3) NULL, tm TIME(2), y YEAR, dd DATE, j JSON, f FLOAT, db DOUBLE,
           bt BIT(10));
         CREATE TABLE m.nokey (a INT UNSIGNED, b VARCHAR(5));
         INSERT INTO m.ints VALUES
           (1, 255, 65535, 16777215, 4294967295, 18446744073709551615, -128, -8388608,
            -9223372036854775808),
           (2, 0, 0, 0, 0, 0, 127, 8388607, 9223372036854775807),
           (3, 128, 32768, 8388608, 2147483648, 9223372036854775808, -1, -1, -1),
           (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         INSERT INTO m.bins VALUES
           (1, x'01', x'01', '00000000-0000-0000-0000-000000000000', x'00'),
           (2, x'', x'', 'ffffffff-ffff-ffff-ffff-ffffffffffff', x'0100'),
           (3, x'0102030405060708', x'00', NULL, x'ff');
         INSERT INTO m.bkey VALUES (x'01', 1), (x'', 2), (x'01020304', 3);
         INSERT INTO m.strs VALUES
           (1, 'b', 'x,z', x'636166e9', 'ü😀', 'äö', 'ŝ', x'00ff', 'text ü'),
           (2, NULL, '', '', '', '', '', '', ''),
           (3, 'c', 'y', 'a', 'b', 'c', 'd', x'01', 'e');
         INSERT INTO m.misc VALUES
           (1, -12345678901234567890.0123456789, '2024-02-29 23:59:59.999999',
            '2038-01-19 03:14:07.999', '-838:59:59.99', 2155, '1000-01-01',
            '{\"k\": [1, \"ü\"]}', 1.5, -2.25e300, b'1000000001'),
           (2, 0, '0000-00-00 00:00:00', '1970-01-01 00:00:01', '00:00:00', 0, '0000-00-00',
            'null', 0, 0, 0),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         INSERT INTO m.nokey VALUES (4294967295, 'a'), (4294967295, 'a'), (0, 'b');",
    );
    primary.sql(
        "UPDATE m.ints SET i = i - 1, b = b - 1, t = t - 1 WHERE id = 1;
         UPDATE m.ints SET id = 10, mi = 16777214 WHERE id = 3;
         DELETE FROM m.ints WHERE id = 2;
         UPDATE m.bins SET b = x'02', u = '00000000-0000-0000-0000-000000000001' WHERE id = 1;
         UPDATE m.bins SET vb = x'0000' WHERE k = x'0100';
         DELETE FROM m.bins WHERE k = x'ff';
         UPDATE m.bkey SET v = 10 WHERE k = x'01000000';
         DELETE FROM m.bkey WHERE k = x'00000000';
         UPDATE m.strs SET e = 'a', st = 'x,y,z', l1 = x'dfff', tx = 'x' WHERE id = 1;
         DELETE FROM m.strs WHERE id = 3;
         UPDATE m.misc SET d = d + 1, ts = '2001-02-03 04:05:06.007', j = '[1,2]' WHERE id = 1;
         DELETE FROM m.misc WHERE id = 2;
         UPDATE m.nokey SET b = 'c' WHERE a = 0;
         DELETE FROM m.nokey LIMIT 1;
         ALTER TABLE m.ints ADD COLUMN extra INT UNSIGNED;
         INSERT INTO m.ints VALUES (20, 1, 2, 3, 4, 5, 6, 7, 8, 4294967295);
         UPDATE m.ints SET extra = 4000000000 WHERE id = 1;
         CREATE TABLE m.copied (id INT PRIMARY KEY, v INT UNSIGNED)
           SELECT id, i AS v FROM m.ints WHERE i IS NOT NULL;
         CREATE TABLE m.later (id BIGINT UNSIGNED PRIMARY KEY, v SMALLINT UNSIGNED);
         START TRANSACTION;
           INSERT INTO m.later VALUES (18446744073709551615, 65535), (1, 1);
           UPDATE m.later SET v = 65534 WHERE id = 18446744073709551615;
           INSERT INTO m.ints (id, i) VALUES (21, 4294967295);
         COMMIT;",
    );
    wait_caught_up(&primary, &replica, "s");
    // A backlog, which the slave applies in batches as net effects, and a
    // transaction large enough to come in parts.
    slave.stop();
    let mut backlog = String::new();
    for i in 0..150 {
        backlog.push_str(&format!(
            "INSERT INTO m.later VALUES ({}, {});
             UPDATE m.later SET v = 65535 - v WHERE id = {};
             UPDATE m.ints SET i = 4294967295 - {i}, b = 18446744073709551615 - {i} WHERE id = 1;
             UPDATE m.bkey SET v = {i} WHERE k = x'01000000';\n",
            1000 + i,
            60000 + i,
            1000 + i / 2,
        ));
    }
    primary.sql(&backlog);
    primary.sql(
        "SET SESSION max_recursive_iterations = 100000;
         START TRANSACTION;
         INSERT INTO m.later WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000)
           SELECT 100000 + n, n % 65536 FROM s;
         UPDATE m.later SET v = 65535 WHERE id > 110000;
         COMMIT;",
    );
    let _slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    for table in TABLES {
        assert_same_table(&primary, &replica, table);
    }
    assert_eq!(
        replica.sql("SELECT COUNT(*) FROM m.later").trim(),
        (2 + 150 + 20000).to_string()
    );
    assert_eq!(
        replica
            .sql("SELECT i, b, t, extra FROM m.ints WHERE id = 1")
            .trim(),
        "4294967146\t18446744073709551466\t254\t4000000000"
    );
    let log = master.log_text();
    master.stop();
    assert!(
        logged_parts(data.path()) > 0,
        "the large transaction came in parts"
    );
    assert!(
        log.contains("binlog_row_metadata")
            && log.contains("FULL")
            && log.contains("is recommended"),
        "the master warns what MINIMAL costs: {log}"
    );
}

#[test]
fn minimal_metadata_replicates_by_position() {
    replicates_every_table("MINIMAL");
}

/// No optional metadata at all: signedness and charsets come from the
/// replica's table too, as for a MySQL 5.7 or MariaDB 10.4 primary.
#[test]
fn no_metadata_at_all_replicates_by_position() {
    replicates_every_table("NO_LOG");
}

/// A replica's table that does not match the primary's by position stops
/// the slave with an error naming the table, the column and the fix, and
/// nothing of the transaction is applied.
#[test]
fn a_replica_table_that_does_not_match_stops_the_slave() {
    for (alter, expected) in [
        (
            "ALTER TABLE m.t MODIFY v BIGINT UNSIGNED",
            vec![
                "column 2 (`v` on the replica)",
                "INT",
                "`bigint(20) unsigned`",
            ],
        ),
        (
            "ALTER TABLE m.t ADD COLUMN more INT",
            vec!["2 columns", "has 3"],
        ),
    ] {
        let primary = primary_with("MINIMAL");
        let replica = MariaDb::replica();
        let data = tempfile::tempdir().unwrap();
        let listen = listen_addr();
        let _master = Rowcast::master(&primary, data.path(), &listen);
        let mut slave = Rowcast::slave(&listen, &replica, "s");
        wait_caught_up(&primary, &replica, "s");
        primary.sql(
            "CREATE DATABASE m;
             CREATE TABLE m.t (id INT PRIMARY KEY, v INT UNSIGNED);
             CREATE TABLE m.ok (id INT PRIMARY KEY);",
        );
        wait_caught_up(&primary, &replica, "s");
        replica.sql(alter);
        primary.sql(
            "START TRANSACTION;
               INSERT INTO m.ok VALUES (1);
               INSERT INTO m.t VALUES (1, 4294967295);
             COMMIT;",
        );
        let stopped = wait_until(Duration::from_secs(60), || !slave.is_running());
        let log = slave.log_text();
        assert!(stopped, "the slave must stop: {log}");
        for text in expected.iter().chain(&[
            "`m`.`t`",
            "by column position",
            "binlog_row_metadata=FULL",
            "make the replica's table match",
        ]) {
            assert!(log.contains(text), "`{text}` missing from: {log}");
        }
        assert_eq!(replica.sql("SELECT COUNT(*) FROM m.t").trim(), "0");
        assert_eq!(
            replica.sql("SELECT COUNT(*) FROM m.ok").trim(),
            "0",
            "nothing of the transaction is applied"
        );
    }
}
