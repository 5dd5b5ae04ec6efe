//! The change log on NATS JetStream: each test starts its own
//! `nats-server -js` on a free port (`support::Nats`), a master publishing
//! to a stream and slaves reading it directly.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rowcast::log::jetstream::{NatsLog, NatsUrl};
use support::*;

fn master_on(
    nats_url: &str,
    primary: &MariaDb,
    data: &Path,
    listen: &str,
    extra: &[&str],
) -> Rowcast {
    let mut args = vec!["--log", nats_url];
    args.extend_from_slice(extra);
    Rowcast::master_with(primary, data, listen, &args)
}

fn slave_on(nats_url: &str, master: &str, target: &MariaDb, name: &str) -> Rowcast {
    Rowcast::slave_with(master, target, name, &["--log", nats_url])
}

/// Every record in the stream, in order: (sequence, position, more).
fn stream_records(nats_url: &str) -> Vec<(u64, rowcast::source::position::SourcePosition, bool)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = NatsUrl::parse(nats_url).unwrap();
        let log = NatsLog::open(&url, None).await.unwrap();
        let (first, last, _) = log.state().await.unwrap();
        let mut out = Vec::new();
        if last == 0 {
            return out;
        }
        let mut reader = log.reader(first).await.unwrap();
        loop {
            let (seq, txn, _) = reader.next().await.unwrap();
            out.push((seq, txn.position.clone(), txn.more));
            if seq >= last {
                return out;
            }
        }
    })
}

/// A primary with the append-only `t.log` the load writes, and a replica.
fn primary_with_log_table() -> (MariaDb, MariaDb) {
    let primary = MariaDb::primary();
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))");
    (primary, MariaDb::replica())
}

type Load = (std::thread::JoinHandle<()>, Arc<AtomicBool>, Arc<AtomicU64>);

/// Writes rows 1..=n into `t.log`, one transaction each, in a thread.
fn start_load(primary: &MariaDb, n: u64) -> Load {
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let w = log_writer(
        primary.port,
        n,
        25,
        Duration::from_millis(5),
        done.clone(),
        written.clone(),
    );
    (w, done, written)
}

/// The stream holds the n INSERTs of the load once each, in order.
fn assert_stream_holds_each_once(url: &str, n: u64) {
    let records = stream_records(url);
    let positions: BTreeSet<String> = records.iter().map(|r| r.1.to_string()).collect();
    assert_eq!(
        positions.len(),
        records.len(),
        "a record was published twice"
    );
    assert!(records.windows(2).all(|w| w[1].1.is_after(&w[0].1)));
    assert_eq!(records.len() as u64, n, "one record per INSERT");
}

#[test]
fn slaves_read_the_stream_through_kills_and_without_the_master() {
    let nats = Nats::start();
    let url = nats.url("core");
    let primary = MariaDb::primary();
    let r1 = MariaDb::replica();
    let r2 = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(50));
         INSERT INTO shop.items VALUES (1, 'seeded');
         CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = master_on(&url, &primary, data.path(), &listen, &[]);
    // Both are seeded by the master, then read the stream.
    let mut s1 = slave_on(&url, &listen, &r1, "one");
    let _s2 = slave_on(&url, &listen, &r2, "two");
    primary.sql(
        "INSERT INTO shop.items VALUES (2, 'two'), (3, 'three');
         UPDATE shop.items SET name = 'changed' WHERE id = 1;
         ALTER TABLE shop.items ADD COLUMN qty INT NOT NULL DEFAULT 7;
         DELETE FROM shop.items WHERE id = 2;
         CREATE TABLE shop.more (k VARCHAR(10) PRIMARY KEY); INSERT INTO shop.more VALUES ('a')",
    );
    wait_caught_up(&primary, &r1, "one");
    wait_caught_up(&primary, &r2, "two");
    // A snapshot taken after those writes catches the slave up before it
    // opens the stream: wait for it to do so.
    assert!(
        wait_until(CONVERGE, || s1
            .log_text()
            .contains("reading the change log from NATS JetStream")),
        "{}",
        s1.log_text()
    );
    for t in ["shop.items", "shop.more"] {
        assert_same_table(&primary, &r1, t);
        assert_same_table(&primary, &r2, t);
    }

    // Under a write load: slave one SIGKILLed and restarted, the master
    // SIGKILLed and restarted.
    let n = 2000;
    let (w, _, written) = start_load(&primary, n);
    for round in 0..3 {
        wait_until(Duration::from_secs(20), || {
            written.load(Ordering::SeqCst) > (round + 1) * 300
        });
        s1.kill9();
        s1 = slave_on(&url, &listen, &r1, "one");
        master.kill9();
        master = master_on(&url, &primary, data.path(), &listen, &[]);
    }
    w.join().unwrap();
    wait_caught_up(&primary, &r1, "one");
    wait_caught_up(&primary, &r2, "two");
    assert_each_row_once(&r1, n);
    assert_each_row_once(&r2, n);

    // The master goes away; a stopped slave catches up on the stream alone.
    s1.stop();
    primary.sql("INSERT INTO shop.items VALUES (10, 'while one was down', 1)");
    let target = primary_position(&primary);
    assert!(wait_until(CONVERGE, || slave_position(&r2, "two") == target));
    master.stop();
    let s1 = slave_on(&url, &listen, &r1, "one");
    wait_caught_up(&primary, &r1, "one");
    assert_same_table(&primary, &r1, "shop.items");
    assert!(
        !s1.log_text().contains("connected to master"),
        "a seeded slave does not need the master"
    );

    // The stream holds every source transaction once, in order.
    let records = stream_records(&url);
    assert!(records.windows(2).all(|w| w[1].1.is_after(&w[0].1)));
}

#[test]
fn a_master_killed_while_publishing_publishes_each_transaction_once() {
    let nats = Nats::start();
    let url = nats.url("once");
    let (primary, replica) = primary_with_log_table();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = master_on(&url, &primary, data.path(), &listen, &[]);
    let _slave = slave_on(&url, &listen, &replica, "s");
    let n = 3000;
    let (w, done, _) = start_load(&primary, n);
    let mut kills = 0;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(300 + (kills % 5) * 97));
        master.kill9();
        kills += 1;
        master = master_on(&url, &primary, data.path(), &listen, &[]);
    }
    w.join().unwrap();
    assert!(kills >= 3, "the master was killed {kills} times");
    wait_caught_up(&primary, &replica, "s");
    assert_each_row_once(&replica, n);
    assert_stream_holds_each_once(&url, n);
}

#[test]
fn a_nats_restart_under_load_loses_and_repeats_nothing() {
    let mut nats = Nats::start();
    let url = nats.url("bounce");
    let (primary, replica) = primary_with_log_table();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = master_on(&url, &primary, data.path(), &listen, &[]);
    let slave = slave_on(&url, &listen, &replica, "s");
    let n = 3000;
    let (w, _, written) = start_load(&primary, n);
    // Publishes and reads fail while NATS is down; both sides retry from
    // the stream's tail and the slave's checkpoint.
    for round in 1..=3 {
        wait_until(Duration::from_secs(20), || {
            written.load(Ordering::SeqCst) > round * 600
        });
        nats.restart(Duration::from_millis(1500));
    }
    w.join().unwrap();
    wait_caught_up(&primary, &replica, "s");
    assert_each_row_once(&replica, n);
    assert!(
        master.log_text().contains("publishing to NATS failed"),
        "the master saw the outage:\n{}",
        master.log_text()
    );
    assert_stream_holds_each_once(&url, n);
    drop(slave);
}

#[test]
fn a_transaction_larger_than_the_max_payload_arrives_whole() {
    let nats = Nats::start_with_max_payload(Some(256 * 1024));
    let url = nats.url("big");
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql("CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, pad VARCHAR(200))");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    // Parts of 2 MiB, each cut into messages of at most 256 KiB.
    let _master = master_on(&url, &primary, data.path(), &listen, &["--part-kb", "2048"]);
    let _slave = slave_on(&url, &listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    let rows = 40_000;
    primary.sql(&format!(
        "INSERT INTO big.t SELECT seq, REPEAT(CHAR(65 + seq % 26), 200) FROM big.seq_1_to_{rows}"
    ));
    let mut seen = BTreeSet::new();
    let whole = wait_until(CONVERGE, || {
        let n: u64 = replica
            .try_sql("SELECT COUNT(*) FROM big.t")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        seen.insert(n);
        n == rows
    });
    assert!(whole, "the large transaction did not arrive");
    assert!(
        seen.iter().all(|n| *n == 0 || *n == rows),
        "part of it was visible: {seen:?}"
    );
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "big.t");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_, last, _) = rt.block_on(async {
        let log = NatsLog::open(&NatsUrl::parse(&url).unwrap(), None)
            .await
            .unwrap();
        log.state().await.unwrap()
    });
    let records = stream_records(&url);
    assert!(
        last as usize > records.len() + 10,
        "records were cut into messages: {last} messages for {} records",
        records.len()
    );
}

#[test]
fn status_shows_stream_sequences_and_a_purged_slave_is_told_to_resnapshot() {
    let nats = Nats::start();
    let url = nats.url("ops");
    let (primary, replica) = primary_with_log_table();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    // A 1 MiB stream: retention removes old messages quickly.
    let _master = master_on(&url, &primary, data.path(), &listen, &["--retain-mb", "1"]);
    let mut slave = slave_on(&url, &listen, &replica, "ops1");
    primary.sql("INSERT INTO t.log VALUES (1, 'a')");
    wait_caught_up(&primary, &replica, "ops1");
    let status = |_: ()| {
        let out = run_rowcast(
            &["status", "--master", &listen, "--json"],
            Duration::from_secs(30),
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let ok = wait_until(CONVERGE, || {
        let s = status(());
        s["slaves"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "ops1"))
            .is_some_and(|x| {
                x["applied_seq"].as_u64() == s["log_last_seq"].as_u64()
                    && x["lag_transactions"] == 0
            })
    });
    assert!(ok, "status: {}", status(()));
    slave.stop();
    // Without --log, a seeded slave is told where its log is.
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &listen,
            "--target",
            &replica.url(),
            "--name",
            "ops1",
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("start the slave with --log {url}")),
        "{err}"
    );
    let mut sql = String::new();
    for i in 2..=3000 {
        sql.push_str(&format!(
            "INSERT INTO t.log VALUES ({i}, REPEAT('p', 300));"
        ));
        if i % 200 == 0 {
            primary.sql(&std::mem::take(&mut sql));
        }
    }
    primary.sql(&sql);
    let lagging = wait_until(CONVERGE, || {
        let s = status(());
        s["slaves"][0]["lag_transactions"].as_u64().unwrap_or(0) > 1000
    });
    assert!(lagging, "status: {}", status(()));
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &listen,
            "--target",
            &replica.url(),
            "--name",
            "ops1",
            "--log",
            &url,
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--resnapshot"), "{err}");
    let _slave = Rowcast::spawn(&[
        "slave",
        "--master",
        &listen,
        "--target",
        &replica.url(),
        "--name",
        "ops1",
        "--log",
        &url,
        "--resnapshot",
    ]);
    wait_caught_up(&primary, &replica, "ops1");
    assert_same_table(&primary, &replica, "t.log");
}

/// A reader that goes (a slave's session ends) deletes its consumer at
/// once instead of leaving it on the server until it is inactive for a
/// minute; a reader still reading keeps one.
#[test]
fn a_dropped_reader_deletes_its_consumer() {
    async fn consumers(js: &async_nats::jetstream::Context) -> usize {
        let mut stream = js.get_stream("GONE").await.unwrap();
        stream.info().await.unwrap().state.consumer_count
    }
    let nats = Nats::start();
    let url = NatsUrl::parse(&nats.url("GONE")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let retention = rowcast::log::segments::Retention::default();
        let log = NatsLog::open(&url, Some(&retention)).await.unwrap();
        let client = async_nats::connect(format!("127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let reader = log.reader(1).await.unwrap();
        assert_eq!(consumers(&js).await, 1, "the reader has a consumer");
        drop(reader);
        // Well under the server's own inactive threshold (60 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while consumers(&js).await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped reader's consumer is still on the server"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
