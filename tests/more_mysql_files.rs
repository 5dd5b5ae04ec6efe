//! Real MySQL 8.0 binlog files other projects recorded
//! (testdata/mysql-binlogs/PROVENANCE.md) replayed through `rowcast master
//! --binlog-dir`: one whose tables are all in the `mysql` system schema,
//! which is never replicated, and a compressed UPDATE of a table the file
//! does not create. Their decoded values are checked in
//! `src/source/decode.rs`'s tests.

mod support;

use support::*;

/// Starts a master on a directory holding one file of testdata/mysql-binlogs/
/// and a slave named `file` that writes to `replica`; returns them with
/// the directories they use, which must outlive them.
fn replay_file(
    file: &str,
    replica: &MariaDb,
) -> (Rowcast, Rowcast, String, [tempfile::TempDir; 2]) {
    let (archive, _) = archive_of(file);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master_on_files(archive.path(), data.path(), &listen, &[]);
    let slave = Rowcast::slave(&listen, replica, "file");
    (master, slave, listen, [archive, data])
}

/// MySQL 8.0.22 (rust_mysql_common's `json.binlog.000001`): CREATE TABLE
/// `mysql.t` with binary JSON and generated columns, six inserts, a
/// full-image UPDATE and a PARTIAL_UPDATE_ROWS (PARTIAL_JSON, minimal
/// image). The master reads the whole file and the slave checkpoints its
/// end, but the replica's `mysql.t` gets nothing: the `mysql` schema is
/// the server's own (users, grants, time zones), so a replicator never
/// copies it, whatever a primary's session wrote there.
#[test]
fn a_file_writing_only_the_mysql_schema_is_read_to_its_end_and_replicates_nothing() {
    let replica = MariaDb::replica();
    // A table of the same shape the rows could have gone to.
    replica.sql(
        "CREATE TABLE mysql.t (id INT PRIMARY KEY AUTO_INCREMENT, json_col JSON,
           name VARCHAR(100) AS (JSON_UNQUOTE(JSON_EXTRACT(json_col, '$.name'))) VIRTUAL,
           age INT AS (JSON_EXTRACT(json_col, '$.age')) VIRTUAL)",
    );
    let (mut master, slave, listen, _dirs) =
        replay_file("rust_mysql_common/json.binlog.000001", &replica);
    // The file is 4011 bytes; its last transaction (the partial update)
    // ends there.
    let at_end = || {
        let st = status_json(&listen);
        st["log_position"]["file"] == "json.binlog.000001"
            && st["log_position"]["offset"].as_u64() == Some(4011)
    };
    assert!(
        wait_until(CONVERGE, at_end),
        "the change log did not reach json.binlog.000001:4011: {}\n{}",
        status_json(&listen),
        master.log_text()
    );
    assert!(
        wait_until(CONVERGE, || slave_position(&replica, "file")
            == "json.binlog.000001:4011"),
        "the slave did not checkpoint the file's end: {:?}\n{}",
        slave_position(&replica, "file"),
        slave.log_text()
    );
    assert!(master.is_running(), "{}", master.log_text());
    assert_eq!(replica.sql("SELECT COUNT(*) FROM mysql.t").trim(), "0");
    // Nor did the file's `ALTER USER 'root'@'localhost' IDENTIFIED WITH
    // 'caching_sha2_password'` (a statement on the `mysql` schema too).
    assert_eq!(
        replica
            .sql("SELECT COUNT(*) FROM mysql.user WHERE plugin = 'caching_sha2_password'")
            .trim(),
        "0"
    );
}

/// Replays MySQL 8.0.28's `mysql-bin.compressed` (osheroff/mysql-binlog-
/// connector-java): a zstd TRANSACTION_PAYLOAD holding one UPDATE of
/// `demo.movies`, 11 columns with long VARCHARs, whose CREATE the file does
/// not hold. The replica's table is created with `key` (a table clause or
/// nothing) and the before image; `mysql-replication`'s decode of the file
/// gives the after image: genres `Western` becomes `Western|Action`.
fn compressed_movie_update(key: &str) {
    let replica = MariaDb::replica();
    replica.sql(&format!(
        "CREATE DATABASE demo;
         CREATE TABLE demo.movies ({}{key}) CHARACTER SET utf8mb4;
         INSERT INTO demo.movies VALUES ({})",
        MOVIES_TYPES.join(", "),
        movie("Western")
    ));
    let (_master, slave, _listen, _dirs) = replay_file(
        "osheroff-binlog-connector-java/mysql-bin.compressed",
        &replica,
    );
    let names: Vec<&str> = MOVIES_TYPES
        .iter()
        .map(|c| c.split(' ').next().unwrap())
        .collect();
    let matching = format!(
        "SELECT COUNT(*) FROM demo.movies WHERE ({}) = ({})",
        names.join(", "),
        movie("Western|Action")
    );
    let ok = wait_until(CONVERGE, || {
        replica
            .try_sql(&matching)
            .map(|s| s.trim() == "1")
            .unwrap_or(false)
    });
    assert!(
        ok,
        "the after image did not arrive: {:?}\n{}",
        replica.try_sql("SELECT * FROM demo.movies"),
        slave.log_text()
    );
    assert_eq!(replica.sql("SELECT COUNT(*) FROM demo.movies").trim(), "1");
    assert_eq!(
        slave_position(&replica, "file"),
        "mysql-bin.000001:724",
        "the checkpoint is the end of the payload event (at 236, 488 bytes)"
    );
}

/// With a primary key the slave applies the update as a statement built
/// from the images, mapped by position (the file has no column names).
#[test]
fn a_compressed_update_of_an_eleven_column_table_is_applied() {
    compressed_movie_update(", PRIMARY KEY (id)");
}

/// Without a key the replica's own row-event applier takes the primary's
/// events, which needs each column's type to be the primary's.
#[test]
fn a_compressed_update_of_a_keyless_eleven_column_table_is_applied_by_the_row_event_applier() {
    compressed_movie_update("");
}

/// `demo.movies` with the primary's column types, from the file's TABLE_MAP
/// (binlog_row_metadata=MINIMAL, so no names): INT, VARCHAR of 1024 bytes
/// in utf8mb4 (256 characters) but `actors` 4096 and `directors` 2048. The
/// names are this test's own: only the positions must match.
const MOVIES_TYPES: [&str; 11] = [
    "id INT",
    "title VARCHAR(256)",
    "year INT",
    "country VARCHAR(256)",
    "genres VARCHAR(256)",
    "actors VARCHAR(1024)",
    "directors VARCHAR(512)",
    "composers VARCHAR(256)",
    "screenwriters VARCHAR(256)",
    "cinematographer VARCHAR(256)",
    "production_companies VARCHAR(256)",
];

/// The row of `demo.movies` the file updates, with `genres`, as SQL values.
fn movie(genres: &str) -> String {
    format!(
        "1, 'Once Upon a Time in the West', 1968, 'Italy', '{genres}', \
         'Claudia Cardinale|Charles Bronson|Henry Fonda|Gabriele Ferzetti|Frank Wolff|Al Mulock|Jason Robards|Woody Strode|Jack Elam|Lionel Stander|Paolo Stoppa|Keenan Wynn|Aldo Sambrell', \
         'Sergio Leone', 'Ennio Morricone', 'Sergio Leone|Sergio Donati|Dario Argento|Bernardo Bertolucci', \
         'Tonino Delli Colli', 'Paramount Pictures'"
    )
}
