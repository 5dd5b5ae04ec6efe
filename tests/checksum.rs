//! `rowcast checksum` against real servers: equal replicas pass, every kind
//! of divergence is found and named, and a write load never causes a false
//! "differs".

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

struct Setup {
    primary: MariaDb,
    replica: MariaDb,
    _master: Rowcast,
    _slave: Rowcast,
    _data: tempfile::TempDir,
}

fn setup() -> Setup {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE c;
         CREATE TABLE c.t (id INT PRIMARY KEY, name VARCHAR(40), f FLOAT, d DOUBLE, b BLOB, ts TIMESTAMP(3) NULL);
         INSERT INTO c.t SELECT seq, CONCAT('n', seq), seq / 3, seq / 7, IF(seq % 5 = 0, NULL, REPEAT(CHAR(seq % 256), 100)), FROM_UNIXTIME(1600000000 + seq)
           FROM c.seq_1_to_20000;
         CREATE TABLE c.nokey (a INT, s VARCHAR(10));
         INSERT INTO c.nokey VALUES (1, 'x'), (1, 'x'), (2, NULL), (NULL, NULL);
         CREATE TABLE c.ck (a VARCHAR(10), b DATE, v INT, PRIMARY KEY (a, b));
         INSERT INTO c.ck VALUES ('é', '2024-01-01', 1), ('a', '2024-01-02', 2), ('a', '2023-12-31', 3);",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master(&primary, data.path(), &listen);
    let slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    Setup {
        primary,
        replica,
        _master: master,
        _slave: slave,
        _data: data,
    }
}

fn checksum(s: &Setup, extra: &[&str]) -> (i32, String) {
    checksum_waiting(s, "120", extra)
}

/// `rowcast checksum` of the setup's replica, waiting up to `wait` seconds
/// for it: exit code and everything printed.
fn checksum_waiting(s: &Setup, wait: &str, extra: &[&str]) -> (i32, String) {
    let (src, dst) = (s.primary.url(), s.replica.url());
    let mut args = vec![
        "checksum",
        "--source",
        &src,
        "--target",
        &dst,
        "--chunk-ms",
        "20",
        "--wait",
        wait,
    ];
    args.extend_from_slice(extra);
    let out = run_rowcast(&args, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}\n{stderr}"),
    )
}

#[test]
fn equal_replica_passes_and_differences_are_named() {
    let s = setup();
    let (code, out) = checksum(&s, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all tables equal"), "{out}");
    assert!(out.contains("c.t") && out.contains("20000"), "{out}");

    let (code, json) = checksum(&s, &["--json", "--tables", "c.t"]);
    assert_eq!(code, 0, "{json}");
    let start = json.find('{').unwrap();
    let end = json.rfind('}').unwrap();
    let report: serde_json::Value = serde_json::from_str(&json[start..=end]).unwrap();
    let tables = report["targets"][0]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "--tables limits the run");
    assert!(
        tables[0]["chunks"].as_u64().unwrap() > 1,
        "the table is chunked: {json}"
    );

    // Diverge the replica: a changed cell, a missing row, an extra row.
    s.replica.sql(
        "UPDATE c.t SET name = 'changed' WHERE id = 5;
         DELETE FROM c.t WHERE id = 17000;
         INSERT INTO c.nokey VALUES (3, 'extra');
         UPDATE c.ck SET v = 99 WHERE a = 'é';",
    );
    let (code, out) = checksum(&s, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIFFERENCES FOUND"), "{out}");
    assert!(
        out.contains("'5' differs"),
        "changed cell named by key: {out}"
    );
    assert!(
        out.contains("'17000' missing on the replica"),
        "missing row named: {out}"
    );
    assert!(
        out.contains("extra on the replica"),
        "extra row found: {out}"
    );
    assert!(
        out.contains("'é','2024-01-01' differs"),
        "composite key named: {out}"
    );
    for t in ["c.t", "c.nokey", "c.ck"] {
        let line = out.lines().find(|l| l.trim_start().starts_with(t)).unwrap();
        assert!(line.ends_with("DIFFERS"), "{line}");
    }
}

#[test]
fn repeated_runs_under_write_load_report_equal() {
    let s = setup();
    let stop = Arc::new(AtomicBool::new(false));
    let port = s.primary.port;
    let flag = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut i = 0u64;
        while !flag.load(Ordering::SeqCst) {
            i += 1;
            let sql = format!(
                "UPDATE c.t SET name = 'w{i}', f = f + 1 WHERE id = {};
                 INSERT INTO c.t (id, name) VALUES ({}, 'new');
                 DELETE FROM c.t WHERE id = {};
                 INSERT INTO c.nokey VALUES ({i}, 'load');",
                i % 20000 + 1,
                100_000 + i,
                (i * 31) % 20000 + 1
            );
            sql_at(port, &sql).unwrap_or_else(|e| panic!("{e}"));
        }
        i
    });
    for run in 0..3 {
        let (code, out) = checksum(&s, &[]);
        assert_eq!(code, 0, "run {run} under load: {out}");
    }
    stop.store(true, Ordering::SeqCst);
    assert!(writer.join().unwrap() > 3, "the load ran");
}

#[test]
fn checksum_errors_exit_2() {
    let replica = MariaDb::replica();
    let primary = MariaDb::primary();
    // A target that no slave writes to.
    let out = run_rowcast(
        &[
            "checksum",
            "--source",
            &primary.url(),
            "--target",
            &replica.url(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rowcast slave checkpoint"));
}

/// A replica still being seeded holds only part of its rows: the checksum
/// waits for the seed (up to --wait) and then refuses, instead of naming
/// rows the copy has not reached as differences.
#[test]
fn a_replica_still_being_seeded_is_waited_for_then_refused() {
    let s = setup();
    // A seed in progress, as the slave records one: a row per key range.
    s.replica.sql(
        "INSERT INTO rowcast.seed (slave_name, database_name, table_name, range_no, meta, state) \
         VALUES ('s', 'c', 't', 0, '', '')",
    );
    let (code, out) = checksum_waiting(&s, "3", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("still being seeded") && out.contains("c.t"),
        "{out}"
    );
    // Once the seed is over, the same replica passes.
    s.replica.sql("DELETE FROM rowcast.seed");
    let (code, out) = checksum_waiting(&s, "120", &[]);
    assert_eq!(code, 0, "{out}");
}
