//! Large source transactions travel in parts (the master runs with tiny
//! parts here) yet reach the replica whole: no reader of the replica ever
//! sees part of one, a slave killed between parts rolls them back and gets
//! them again, and a master killed between parts drops them at restart and
//! logs the transaction exactly once.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rowcast::log::segments::ChangeLog;
use support::*;

const ROWS: u64 = 60_000;

fn master_with_small_parts(primary: &MariaDb, data_dir: &Path, listen: &str) -> Rowcast {
    Rowcast::master_with(primary, data_dir, listen, &["--part-kb", "64"])
}

/// Polls `cond` quickly (the windows being aimed at are short).
fn poll_fast(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn count(db: &MariaDb) -> u64 {
    db.try_sql("SELECT COUNT(*) FROM big.t")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes in the master's change-log segments.
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn large_transactions_arrive_whole_through_kills() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, pad VARCHAR(200), n INT NOT NULL DEFAULT 0)",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = master_with_small_parts(&primary, data.path(), &listen);
    let mut slave = Rowcast::slave(&listen, &replica, "s1");
    wait_caught_up(&primary, &replica, "s1");

    // One INSERT of ROWS rows (about 13 MB of row events: some 200 parts).
    primary.sql(&format!(
        "INSERT INTO big.t (id, pad) SELECT seq, REPEAT(CHAR(65 + seq % 26), 200) FROM big.seq_1_to_{ROWS}"
    ));
    let mut seen = BTreeSet::new();
    let whole = poll_fast(CONVERGE, || {
        let n = count(&replica);
        seen.insert(n);
        n == ROWS
    });
    assert!(whole, "the insert did not arrive:\n{}", slave.log_text());
    assert!(
        seen.iter().all(|n| *n == 0 || *n == ROWS),
        "a reader of the replica saw part of a transaction: counts {seen:?}"
    );
    wait_caught_up(&primary, &replica, "s1");

    // The slave is killed while it applies the parts of an UPDATE of every
    // row; the parts it applied are rolled back and sent again. A reader
    // on the replica holds the last row's lock, so the slave waits there
    // with every earlier part applied.
    let mut holder = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-B"])
        .arg(format!("-P{}", replica.port))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut hold = holder.stdin.take().unwrap();
    writeln!(
        hold,
        "BEGIN; SELECT id FROM big.t WHERE id = {ROWS} FOR UPDATE;"
    )
    .unwrap();
    hold.flush().unwrap();
    assert!(wait_until(CONVERGE, || replica
        .sql("SELECT COUNT(*) FROM information_schema.innodb_trx")
        .trim()
        == "1"));
    primary.sql("UPDATE big.t SET n = n + 1, pad = REVERSE(pad)");
    let mid = wait_until(CONVERGE, || {
        replica
            .sql("SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' AND trx_rows_modified > 1000")
            .trim()
            == "1"
    });
    assert!(
        mid,
        "the slave never reached the locked row:\n{}",
        slave.log_text()
    );
    slave.kill9();
    writeln!(hold, "ROLLBACK;").unwrap();
    drop(hold);
    holder.wait().unwrap();
    let updated: u64 = replica
        .sql("SELECT COUNT(*) FROM big.t WHERE n = 1")
        .trim()
        .parse()
        .unwrap();
    assert!(
        updated == 0 || updated == ROWS,
        "the killed slave committed part of a transaction: {updated} rows"
    );
    let mut slave = Rowcast::slave(&listen, &replica, "s1");
    wait_caught_up(&primary, &replica, "s1");
    assert_same_table(&primary, &replica, "big.t");

    // The master is killed while it writes the parts of an UPDATE; at
    // restart it drops them and reads the transaction again. Aim a few
    // times: the window is a fraction of a second.
    let mut cut_mid_transaction = 0;
    for round in 2..=5 {
        let before = log_bytes(data.path());
        primary.sql("UPDATE big.t SET n = n + 1, pad = REVERSE(pad)");
        poll_fast(Duration::from_secs(30), || {
            log_bytes(data.path()) > before + (1 << 20)
        });
        master.kill9();
        master = master_with_small_parts(&primary, data.path(), &listen);
        wait_caught_up(&primary, &replica, "s1");
        assert_eq!(
            replica.sql("SELECT MIN(n), MAX(n) FROM big.t").trim(),
            format!("{round}\t{round}")
        );
        if master.log_text().contains("unfinished transaction") {
            cut_mid_transaction += 1;
            break;
        }
    }
    assert!(
        cut_mid_transaction > 0,
        "the master was never killed between the parts of a transaction"
    );
    assert_same_table(&primary, &replica, "big.t");
    slave.stop();
    master.stop();

    // The log holds every source transaction once, in order, and the
    // large ones in many parts.
    let log = ChangeLog::open(data.path()).unwrap();
    let handle = log.subscribe();
    drop(log);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let records = rt.block_on(async {
        let mut reader = handle.reader_after(None).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = reader.next().await.unwrap() {
            out.push(rec);
        }
        out
    });
    assert!(records
        .windows(2)
        .all(|w| w[1].position.is_after(&w[0].position) && w[1].seq == w[0].seq + 1));
    let commits: Vec<_> = records.iter().filter(|r| !r.more).collect();
    let gtids: BTreeSet<String> = commits
        .iter()
        .filter_map(|r| r.position.gtid.as_ref().map(|g| g.to_string()))
        .collect();
    assert_eq!(gtids.len(), commits.len(), "a transaction was logged twice");
    assert!(records.iter().filter(|r| r.part > 0).count() > 100);
}
