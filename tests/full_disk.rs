//! Full disks (issue 16, item 4), on small tmpfs mounts: the master's data
//! dir filling up stops the master with one clear error and a consistent
//! log it resumes from once space is freed; the replica's disk filling up
//! stops the slave with its checkpoint before everything unapplied, and the
//! restarted slave catches up.

mod support;

use std::path::Path;
use std::time::Duration;

use rowcast::log::change::{Change, Value};
use rowcast::log::segments::ChangeLog;
use support::disk::SmallDisk;
use support::*;

/// `t.log` with room for big rows, created before any master starts, so
/// that the change log's record k is the insert of row k.
fn create_table(primary: &MariaDb) {
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT PRIMARY KEY, pad MEDIUMTEXT)");
}

/// Rows `from..=to`, one transaction each, with `pad` bytes of padding.
fn insert_rows(primary: &MariaDb, from: u64, to: u64, pad: usize) {
    let mut i = from;
    while i <= to {
        let end = (i + 19).min(to);
        let sql: String = (i..=end)
            .map(|k| format!("INSERT INTO t.log VALUES ({k}, REPEAT('x', {pad}));"))
            .collect();
        primary.sql(&sql);
        i = end + 1;
    }
}

/// The `n` of every row each record of a stopped master's log inserts,
/// as `(seq, n values)`, checking positions strictly increase.
fn logged_rows(data_dir: &Path) -> Vec<(u64, Vec<i64>)> {
    let log = ChangeLog::open(data_dir).unwrap();
    let handle = log.subscribe();
    drop(log);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut reader = handle.reader_after(None).unwrap();
        let mut out = Vec::new();
        let mut last = None;
        while let Some(rec) = reader.next().await.unwrap() {
            if let Some(last) = &last {
                assert!(
                    rec.position.is_after(last),
                    "positions go back at {}",
                    rec.seq
                );
            }
            last = Some(rec.position.clone());
            let (seq, txn) = rec.decode().unwrap();
            let ns = txn
                .changes
                .iter()
                .flat_map(|c| match c {
                    Change::Insert { rows, .. } => rows.clone(),
                    other => panic!("unexpected change in the log: {other:?}"),
                })
                .map(|row| match row[0] {
                    Value::Int(n) => n,
                    ref v => panic!("n is {v:?}"),
                })
                .collect();
            out.push((seq, ns));
        }
        out
    })
}

/// The single `error:` line a stopped rowcast printed.
fn error_line(log: &str) -> String {
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{log}");
    errors[0].to_string()
}

/// The master's error line, which says the OS error once.
fn disk_full_line(log: &str) -> String {
    let error = error_line(log);
    assert_eq!(
        error.matches("No space left on device").count(),
        1,
        "{error}"
    );
    error
}

/// The newest segment file of a data dir and its length.
fn newest_segment(dir: &Path) -> (std::path::PathBuf, u64) {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a segment");
    let len = std::fs::metadata(&seg).unwrap().len();
    (seg, len)
}

/// The master's data dir fills up while it logs: it stops with exit code 1
/// and one error naming the data dir and the fix; the log is cut off at its
/// last fsynced record (a torn tail is left on disk and cut at the next
/// start), the slave has applied nothing beyond it, and after the filler is
/// deleted the restarted master resumes where its log ends: the replica
/// and the log hold every row once.
#[test]
fn a_full_data_dir_stops_the_master_and_it_resumes_once_space_is_freed() {
    const N: u64 = 150;
    let primary = MariaDb::primary();
    create_table(&primary);
    let disk = SmallDisk::mount(64);
    let data_dir = disk.path().join("data");
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, &data_dir, &listen);
    let replica = MariaDb::replica();
    let _slave = Rowcast::slave(&listen, &replica, "s1");
    assert!(wait_seeded(&replica, "s1"), "the slave was not seeded");

    // About 2 MiB left; the rows need ten times that in the log.
    disk.fill_leaving(2 << 20);
    insert_rows(&primary, 1, N, 40_000);
    assert!(
        wait_until(CONVERGE, || !master.is_running()),
        "the master kept running on a full data dir:\n{}",
        master.log_text()
    );
    let status = master.stop().expect("exit status");
    assert_eq!(status.code(), Some(1), "{}", master.log_text());
    let error = disk_full_line(&master.log_text());
    for expected in [
        format!(
            "no space left for the change log in data dir {}",
            data_dir.display()
        ),
        "Free space on that file system".to_string(),
        "--data-dir".to_string(),
    ] {
        assert!(error.contains(&expected), "{expected:?} not in {error}");
    }

    // What is durable: open a copy, which cuts what the master could not
    // finish (the real data dir keeps it for the master's next start).
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join("data");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&data_dir)
        .arg(&copied)
        .status()
        .unwrap()
        .success());
    let (seg, torn_len) = newest_segment(&copied);
    let durable = ChangeLog::open(&copied).unwrap().end().last_seq;
    let kept_len = std::fs::metadata(&seg).unwrap().len();
    assert!(
        kept_len < torn_len,
        "the failed write left no torn tail ({kept_len} bytes)"
    );
    assert!(
        (1..N).contains(&durable),
        "{durable} of {N} records durable"
    );
    // Nothing but durable records reached the slave: whatever it applied
    // is a prefix of the durable log, rows and checkpoint together.
    let applied = applied_prefix(&replica);
    assert!(
        applied <= durable,
        "the slave applied record {} but only {durable} were durable",
        applied
    );

    disk.free_filler();
    let mut master = Rowcast::master(&primary, &data_dir, &listen);
    wait_caught_up(&primary, &replica, "s1");
    assert_each_row_once(&replica, N);
    assert_same_table(&primary, &replica, "t.log");
    assert!(
        master.log_text().contains("cutting off a torn tail"),
        "{}",
        master.log_text()
    );
    assert_eq!(master.stop().and_then(|s| s.code()), Some(0));
    let logged = logged_rows(&data_dir);
    let expected: Vec<(u64, Vec<i64>)> = (1..=N).map(|k| (k, vec![k as i64])).collect();
    assert_eq!(logged, expected, "the log holds each row once, in order");
}

/// A data dir that is full before the master ever starts: the meta file
/// cannot be written, and the master says so and exits. Later, with the
/// meta file written but the disk full again, the first segment cannot be
/// created: the master notices at once although the primary is idle, and
/// leaves no half-made segment behind. Each time, freeing space and
/// starting again works, and nothing is lost.
#[test]
fn a_data_dir_full_at_start_is_reported_and_start_works_once_space_is_freed() {
    let primary = MariaDb::primary();
    create_table(&primary);
    let disk = SmallDisk::mount(16);
    let data_dir = disk.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let listen = listen_addr();
    disk.fill_leaving(0);
    let out = run_rowcast(
        &[
            "master",
            "--source",
            &primary.url(),
            "--listen",
            &listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        CONVERGE,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = disk_full_line(&stderr);
    for expected in [
        format!(
            "no space left for the change log in data dir {}",
            data_dir.display()
        ),
        "meta.bin".to_string(),
        "--data-dir".to_string(),
    ] {
        assert!(error.contains(&expected), "{expected:?} not in {error}");
    }
    let left: Vec<_> = std::fs::read_dir(&data_dir).unwrap().collect();
    assert!(left.is_empty(), "the failed start left files: {left:?}");

    // Space again: the master initialises its log (no segment until the
    // first transaction) and stops cleanly.
    disk.free_filler();
    let mut master = Rowcast::master(&primary, &data_dir, &listen);
    assert_eq!(master.stop().and_then(|s| s.code()), Some(0));
    assert!(data_dir.join("meta.bin").exists());

    // Full again: the first transaction needs a segment.
    disk.fill_leaving(0);
    let mut master = Rowcast::master(&primary, &data_dir, &listen);
    insert_rows(&primary, 1, 1, 10);
    assert!(
        wait_until(CONVERGE, || !master.is_running()),
        "the master did not stop when its log writer failed:\n{}",
        master.log_text()
    );
    assert_eq!(master.stop().and_then(|s| s.code()), Some(1));
    let error = disk_full_line(&master.log_text());
    assert!(
        error.contains("no space left for the change log")
            && error.contains("00000000000000000001.seg"),
        "{error}"
    );
    let segments = std::fs::read_dir(&data_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(segments, 0, "a segment that could not be created was left");

    disk.free_filler();
    let mut master = Rowcast::master(&primary, &data_dir, &listen);
    insert_rows(&primary, 2, 2, 10);
    let status = || {
        let out = run_rowcast(
            &["status", "--master", &listen, "--json"],
            Duration::from_secs(60),
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    assert!(
        wait_until(CONVERGE, || status()["log_last_seq"] == 2),
        "the master did not log both rows: {}",
        status()
    );
    assert_eq!(master.stop().and_then(|s| s.code()), Some(0));
    assert_eq!(
        logged_rows(&data_dir),
        vec![(1, vec![1]), (2, vec![2])],
        "the row written while the disk was full is logged once, before the next"
    );
}

/// The replica's datadir fills up: MariaDB answers "table is full" and the
/// slave stops with exit code 1 and an error naming the replica and the
/// fix, its checkpoint naming exactly the rows it committed. After the
/// filler is deleted the restarted slave catches up: the replica equals
/// the primary, every row once.
#[test]
fn a_full_replica_stops_the_slave_and_a_restart_catches_up() {
    const N: u64 = 3000;
    let primary = MariaDb::primary();
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT PRIMARY KEY, pad VARCHAR(3000))");
    let master_dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, master_dir.path(), &listen);
    let disk = SmallDisk::mount(256);
    let replica = MariaDb::replica_on(&disk);
    let mut slave = Rowcast::slave(&listen, &replica, "s1");
    assert!(
        wait_seeded(&replica, "s1"),
        "the slave was not seeded:\n{}",
        slave.log_text()
    );

    // 4 MiB left; the rows take about 6 MiB.
    disk.fill_leaving(4 << 20);
    let mut i = 1;
    while i <= N {
        let end = (i + 99).min(N);
        let sql: String = (i..=end)
            .map(|k| format!("INSERT INTO t.log VALUES ({k}, REPEAT('y', 2000));"))
            .collect();
        primary.sql(&sql);
        i = end + 1;
    }
    assert!(
        wait_until(CONVERGE, || !slave.is_running()),
        "the slave kept running on a full replica:\n{}\nreplica log:\n{}",
        slave.log_text(),
        replica.error_log()
    );
    assert_eq!(
        slave.stop().and_then(|s| s.code()),
        Some(1),
        "{}",
        slave.log_text()
    );
    let error = error_line(&slave.log_text());
    for expected in [
        format!(
            "the replica 127.0.0.1:{} (slave s1) has no space left",
            replica.port
        ),
        "(error 1114)".to_string(),
        "Free space on the replica's disk".to_string(),
    ] {
        assert!(error.contains(&expected), "{expected:?} not in {error}");
    }
    // The replica is up and holds exactly what the checkpoint names.
    let applied = applied_prefix(&replica);
    assert!(applied < N, "everything fitted: {applied:?}");

    disk.free_filler();
    let _slave = Rowcast::slave(&listen, &replica, "s1");
    wait_caught_up(&primary, &replica, "s1");
    assert_each_row_once(&replica, N);
    assert_same_table(&primary, &replica, "t.log");
}

/// The change log itself on a disk that fills up: the append that fails
/// publishes nothing, every later append is refused even once space is
/// back (after a failed write or fsync the file's tail is unknown), and a
/// reopened log ends at the last published record and appends after it.
#[test]
fn a_change_log_that_failed_a_write_publishes_nothing_more_until_reopened() {
    use rowcast::log::segments::LogError;
    use rowcast::source::position::SourcePosition;

    let txn = |offset: u64| rowcast::log::change::Transaction {
        position: SourcePosition::new("b.000001", offset),
        timestamp: 1,
        part: 0,
        more: false,
        tables: vec![],
        changes: vec![Change::Ddl(rowcast::log::change::Ddl {
            database: None,
            sql: vec![b'x'; 30_000],
            ..Default::default()
        })],
        events: None,
        xa: None,
    };
    let disk = SmallDisk::mount(4);
    let dir = disk.path().join("data");
    let mut log = ChangeLog::open(&dir).unwrap();
    log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
    let handle = log.subscribe();
    disk.fill_leaving(256 << 10);
    let mut offset = 100;
    let failure = loop {
        assert!(offset < 100 * 1000, "the disk never filled");
        let batch = [txn(offset), txn(offset + 50)];
        match log.append(&batch) {
            Ok(()) => offset += 100,
            Err(e) => break e,
        }
    };
    assert!(matches!(failure, LogError::DiskFull { .. }), "{failure}");
    let published = handle.end();
    assert_eq!(published.last_seq, (offset - 100) / 50, "{published:?}");

    disk.free_filler();
    assert!(matches!(
        log.append(&[txn(offset + 200)]),
        Err(LogError::Failed { .. })
    ));
    assert_eq!(handle.end(), published, "nothing more became visible");
    drop(log);

    let mut log = ChangeLog::open(&dir).unwrap();
    assert_eq!(log.end().last_seq, published.last_seq);
    assert_eq!(
        log.resume_position().unwrap(),
        SourcePosition::new("b.000001", offset - 50)
    );
    log.append(&[txn(offset)]).unwrap();
    assert_eq!(log.end().last_seq, published.last_seq + 1);
}

/// How many rows slave `s1` applied, checking that its checkpoint names
/// exactly that many records and that the rows are `1..=count`: what it
/// holds is a whole prefix of the log.
fn applied_prefix(replica: &MariaDb) -> u64 {
    let applied = replica.sql(
        "SELECT (SELECT log_seq FROM rowcast.checkpoint WHERE slave_name = 's1'), \
         COUNT(*), COALESCE(MAX(n), 0) FROM t.log",
    );
    let applied: Vec<u64> = applied
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(applied[0], applied[1], "checkpoint and rows: {applied:?}");
    assert_eq!(
        applied[1], applied[2],
        "rows are not 1..=count: {applied:?}"
    );
    applied[0]
}
