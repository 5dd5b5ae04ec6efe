//! Every column type and table shape replicates losslessly: values are
//! compared byte for byte (HEX) and by CHECKSUM TABLE, which sums the
//! stored row bytes, so floats and dates must match bit for bit.

mod support;

use support::*;

const TABLES: &[&str] = &[
    "types.ints",
    "types.nums",
    "types.strs",
    "types.bins",
    "types.times",
    "types.misc",
    "types.gen",
    "types.nopk",
    "types.composite",
    "types.inv",
    "types.binkey",
    "types.enum0",
    "we`ird db.tab le ü",
];

const SCHEMA: &str = r#"
SET SESSION sql_mode = '';
CREATE DATABASE types;
CREATE TABLE types.ints (id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
  mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED);
CREATE TABLE types.nums (id INT PRIMARY KEY,
  d65 DECIMAL(65,30), d10 DECIMAL(10,0), d55 DECIMAL(5,5), du DECIMAL(20,4) UNSIGNED,
  f FLOAT, d DOUBLE);
CREATE TABLE types.strs (id INT PRIMARY KEY,
  c CHAR(10) CHARACTER SET utf8mb4, v VARCHAR(300) CHARACTER SET utf8mb4,
  vl VARCHAR(100) CHARACTER SET latin1, cl CHAR(5) CHARACTER SET latin1,
  t TEXT CHARACTER SET utf8mb4, mt MEDIUMTEXT CHARACTER SET utf8mb4,
  lt LONGTEXT CHARACTER SET latin1);
CREATE TABLE types.bins (id INT PRIMARY KEY,
  b BINARY(8), vb VARBINARY(300), bl BLOB, lb LONGBLOB);
CREATE TABLE types.times (id INT PRIMARY KEY,
  dt DATE, tm0 TIME, tm3 TIME(3), tm6 TIME(6),
  d0 DATETIME, d3 DATETIME(3), d6 DATETIME(6),
  ts0 TIMESTAMP NULL DEFAULT NULL, ts2 TIMESTAMP(2) NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
  y YEAR);
CREATE TABLE types.misc (id INT PRIMARY KEY,
  e ENUM('a','b','c d','é'), s SET('x','y','z','w'),
  b1 BIT(1), b7 BIT(7), b64 BIT(64), j JSON, g GEOMETRY, p POINT);
CREATE TABLE types.gen (id INT PRIMARY KEY, a INT,
  v INT AS (a * 2) VIRTUAL, st INT AS (a + 1) STORED, w VARCHAR(10));
CREATE TABLE types.nopk (a INT, f FLOAT, d DOUBLE, s VARCHAR(10), b BLOB);
CREATE TABLE types.composite (a VARCHAR(20), b DATETIME(3), c INT, v TEXT, PRIMARY KEY (a, b));
CREATE TABLE types.inv (id INT PRIMARY KEY, hidden INT INVISIBLE, `select` INT);
CREATE TABLE types.binkey (k BINARY(4) PRIMARY KEY, u UUID, i6 INET6, b255 BINARY(255), v INT);
CREATE TABLE types.enum0 (id INT PRIMARY KEY, e ENUM('a','b') NOT NULL, n INT);
CREATE DATABASE `we``ird db`;
CREATE TABLE `we``ird db`.`tab le ü` (`sélect` INT PRIMARY KEY, `from` VARCHAR(10), `a``b` INT, `naïve col` TEXT);
"#;

const INSERTS: &str = r#"
SET SESSION sql_mode = '';
SET SESSION time_zone = '+05:30';
INSERT INTO types.ints VALUES
  (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0),
  (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1);
INSERT INTO types.nums VALUES
  (1, '12345678901234567890123456789012345.123456789012345678901234567890', 9999999999, 0.99999, 9999999999999999.9999, 3.4028234e38, 1.7976931348623157e308),
  (2, '-12345678901234567890123456789012345.123456789012345678901234567890', -9999999999, -0.00001, 0, -1.17549435e-38, 2.2250738585072014e-308),
  (3, 0, 0, 0, 0, 0.1, 0.1),
  (4, '-0.000000000000000000000000000001', 1, 0.5, 0.0001, -0.0, 4.9406564584124654e-324),
  (5, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO types.strs VALUES
  (1, 'é😀', 'ü€😀 four-byte 𝄞', 'café é', 'àé', REPEAT('ß😀', 1000), REPEAT('x', 70000), REPEAT('é', 100000)),
  (2, '', '', '', '', '', '', ''),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, 'trail  ', 'trail  ', 'quote''s \\ back', ' ', 'tab	and
newline', '', '');
INSERT INTO types.bins VALUES
  (1, 0x00FF00FF00000000, 0x00, 0xFF, 0x00FF),
  (2, 0x01, REPEAT(0xFF, 300), REPEAT(0x00, 1000), REPEAT(0x00FF7F80, 1000000)),
  (3, NULL, NULL, NULL, NULL),
  (4, '', '', '', '');
INSERT INTO types.times VALUES
  (1, '1000-01-01', '-838:59:59', '-00:00:00.001', '838:59:59.999999', '1000-01-01 00:00:00', '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999999',
      '1970-01-01 05:30:01', '2038-01-19 08:44:07.99', '2000-02-29 12:00:00.000001', 1901),
  (2, '0000-00-00', '00:00:00', '-00:00:00.5', '-100:00:00.000001', '0000-00-00 00:00:00', '2020-00-00 00:00:00.000', '0000-00-00 00:00:00.000000',
      '0000-00-00 00:00:00', '0000-00-00 00:00:00', '2024-03-31 02:30:00.5', 2155),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, '2024-02-29', '25:00:00', '123:45:06.789', '-0:00:01.000001', '2024-06-01 12:34:56', '2024-06-01 12:34:56.7', '2024-06-01 12:34:56.123456',
      '2024-06-01 12:34:56', '2024-06-01 12:34:56.12', '2024-06-01 12:34:56.123456', 0);
INSERT INTO types.misc VALUES
  (1, 'a', 'x', b'0', b'0000000', b'0', '{"a": [1, 2.5, "ü"], "b": null, "c": {"d": true}}', ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))'), POINT(1.5, -2.25)),
  (2, 'é', 'x,y,z,w', b'1', b'1111111', b'1111111111111111111111111111111111111111111111111111111111111111', '[]', ST_GeomFromText('LINESTRING(0 0,1 1,2 3)'), POINT(0, 0)),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, 'c d', '', b'1', b'1010101', b'1000000000000000000000000000000000000000000000000000000000000001', '"str"', ST_GeomFromText('POINT(3 4)'), POINT(1e300, -1e-300));
INSERT INTO types.gen (id, a, w) VALUES (1, 1, 'one'), (2, NULL, 'null'), (3, -5, 'neg');
INSERT INTO types.nopk VALUES (1, 1.1, 2.2, 'dup', 0x00), (1, 1.1, 2.2, 'dup', 0x00), (2, 0.3, 0.30000000000000004, 'two', NULL), (NULL, NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL, NULL);
INSERT INTO types.composite VALUES ('k', '2024-01-01 00:00:00.001', 1, 'a'), ('k', '2024-01-01 00:00:00.002', 2, 'b'), ('ü', '2024-01-01 00:00:00', 3, 'c');
INSERT INTO `we``ird db`.`tab le ü` VALUES (1, 'select', 2, '😀'), (2, NULL, NULL, 'ü');
INSERT INTO types.inv (id, hidden, `select`) VALUES (1, 10, 100), (2, 20, 200);
INSERT INTO types.binkey VALUES
  (0x01000000, '00000000-0000-0000-0000-000000000000', '::', 0x01, 1),
  (0x02000000, '00000000-0000-0000-0000-000000000001', '::1', REPEAT(0x00, 255), 2),
  (0x00000000, 'ffffffff-ffff-ffff-ffff-ffffffffffff', '1.2.3.0', NULL, 3),
  (0x04000000, UUID(), '2001:db8::', NULL, 4);
INSERT INTO types.enum0 VALUES (1, 'not a member', 1), (2, 'a', 2);
"#;

const CHANGES: &str = r#"
SET SESSION sql_mode = '';
SET SESSION time_zone = '-03:00';
UPDATE types.ints SET ti = 127, tu = 255, bu = 18446744073709551614, bi = -1 WHERE id = 1;
UPDATE types.ints SET ti = NULL WHERE id = 2;
DELETE FROM types.ints WHERE id = 4;
UPDATE types.nums SET d65 = d65 / 3, f = f / 3, d = d / 3 WHERE id IN (1, 3);
DELETE FROM types.nums WHERE id = 2;
UPDATE types.strs SET v = CONCAT(v, '!'), vl = 'naïve', lt = REPEAT('ÿ', 10) WHERE id = 1;
UPDATE types.strs SET c = 'now set' WHERE id = 3;
DELETE FROM types.strs WHERE id = 2;
UPDATE types.bins SET lb = REPEAT(0xFE, 3000000), b = 0xFFFFFFFFFFFFFFFF WHERE id = 2;
DELETE FROM types.bins WHERE id = 4;
UPDATE types.times SET ts6 = '1999-12-31 23:59:59.999999', tm6 = '-838:59:59.000000', y = 1999 WHERE id = 1;
DELETE FROM types.times WHERE id = 2;
UPDATE types.misc SET e = 'b', s = 'y', b64 = b'1', j = JSON_SET(j, '$.a[0]', 42), p = POINT(9, 9) WHERE id = 1;
DELETE FROM types.misc WHERE id = 4;
UPDATE types.gen SET a = a + 10, w = 'changed' WHERE id IN (1, 3);
DELETE FROM types.gen WHERE id = 2;
DELETE FROM types.nopk WHERE a = 1 LIMIT 1;
UPDATE types.nopk SET s = 'float' WHERE f = 0.3 OR a = 2;
DELETE FROM types.nopk WHERE a IS NULL LIMIT 1;
UPDATE types.composite SET v = 'changed', c = 10 WHERE a = 'k' AND b = '2024-01-01 00:00:00.002';
DELETE FROM types.composite WHERE a = 'ü';
UPDATE types.inv SET hidden = 11 WHERE id = 1;
DELETE FROM types.inv WHERE id = 2;
UPDATE types.binkey SET v = 10, u = '01020304-0506-0708-090a-0b0c0d0e0f00' WHERE k = 0x01000000;
UPDATE types.binkey SET k = 0x03000000 WHERE k = 0x00000000;
DELETE FROM types.binkey WHERE k = 0x02000000;
UPDATE types.binkey SET v = 40 WHERE u IS NOT NULL AND k = 0x04000000;
UPDATE types.enum0 SET n = 10 WHERE id = 1;
UPDATE types.enum0 SET e = 'bad' WHERE id = 2;
INSERT INTO types.enum0 VALUES (3, 'x', 3);
UPDATE `we``ird db`.`tab le ü` SET `from` = 'where', `a``b` = 3 WHERE `sélect` = 1;
DELETE FROM `we``ird db`.`tab le ü` WHERE `sélect` = 2;
"#;

#[test]
fn every_type_round_trips_exactly() {
    // Different time zones on each side: TIMESTAMPs must still be equal.
    let primary = MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        "--binlog_row_metadata=FULL",
        "--default-time-zone=+05:30",
        "--max-allowed-packet=64M",
    ]);
    let replica = MariaDb::start_with(&["--default-time-zone=-08:00", "--max-allowed-packet=64M"]);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _slave = Rowcast::slave(&listen, &replica, "types");
    // Seeded while empty, so every value below arrives by the stream.
    wait_caught_up(&primary, &replica, "types");

    primary.sql(SCHEMA);
    primary.sql(INSERTS);
    wait_caught_up(&primary, &replica, "types");
    for t in TABLES {
        assert_same_table(&primary, &replica, t);
    }
    // The no-key table really holds its duplicates.
    assert_eq!(
        replica
            .sql("SELECT COUNT(*) FROM types.nopk WHERE a = 1")
            .trim(),
        "2"
    );

    primary.sql(CHANGES);
    wait_caught_up(&primary, &replica, "types");
    for t in TABLES {
        assert_same_table(&primary, &replica, t);
    }
    // Deleting one of two identical rows deleted exactly one on the slave.
    assert_eq!(
        replica
            .sql("SELECT COUNT(*) FROM types.nopk WHERE a = 1")
            .trim(),
        "1"
    );
    assert_eq!(
        replica
            .sql("SELECT COUNT(*) FROM types.nopk WHERE a IS NULL")
            .trim(),
        "1"
    );
    // Generated columns were computed by the replica, not written.
    assert_eq!(
        replica
            .sql("SELECT v, st FROM types.gen WHERE id = 1")
            .trim(),
        "22\t12"
    );
    for t in TABLES {
        let show = |db: &MariaDb| db.sql(&format!("SHOW CREATE TABLE {}", quoted(t)));
        assert_eq!(show(&primary), show(&replica), "SHOW CREATE TABLE {t}");
    }

    // `rowcast checksum` compares every type family correctly too.
    let (src, dst) = (primary.url(), replica.url());
    let args = [
        "checksum",
        "--source",
        &src,
        "--target",
        &dst,
        "--tables",
        "types",
        "--tables",
        "we`ird db",
    ];
    let out = run_rowcast(&args, std::time::Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("types.times") && stdout.contains("tab le ü"),
        "{stdout}"
    );
    // ...and notices a one-bit difference in a BIT(64) and a float.
    replica.sql("SET GLOBAL read_only = 0; UPDATE types.misc SET b64 = b64 ^ 1 WHERE id = 2; UPDATE types.nums SET f = f + 0.0001 WHERE id = 3");
    let out = run_rowcast(&args, std::time::Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("'2' differs") && stdout.contains("'3' differs"),
        "{stdout}"
    );
}
