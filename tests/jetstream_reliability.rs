//! A JetStream slave under the server's limits and failures: a backlog of
//! big transactions larger than the client's pending limit (read without
//! being dropped), a cut link and a NATS restart (recovered by itself),
//! and a master that dies after sending the snapshot while the slave
//! still loads it (the copy is kept, not taken again).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rowcast::log::jetstream::{NatsLog, NatsUrl};
use support::nats_limits::Link;
use support::*;

/// Rows of `t.big`; each whole-table UPDATE is one transaction of about
/// 9 MiB of row images, so cut in parts of 4 MiB and messages of 128 KiB.
const ROWS: u64 = 20_000;
const UPDATES: u64 = 8;
/// Far below the backlog: the old ordered consumer (500 messages a pull)
/// got the slave dropped as a slow consumer.
const MAX_PENDING: usize = 2 << 20;
const MAX_PAYLOAD: usize = 128 << 10;

fn primary_with_big_table() -> (MariaDb, MariaDb) {
    let primary = MariaDb::primary();
    primary.sql(&format!(
        "CREATE DATABASE t; CREATE TABLE t.big (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(200)); \
         USE t; INSERT INTO t.big SELECT seq, 0, REPEAT('p', 200) FROM seq_1_to_{ROWS}"
    ));
    (primary, MariaDb::replica())
}

fn master_on(nats_url: &str, primary: &MariaDb, data: &Path, listen: &str) -> Rowcast {
    Rowcast::master_with(primary, data, listen, &["--log", nats_url])
}

fn slave_on(nats_url: &str, master: &str, target: &MariaDb, name: &str) -> Rowcast {
    Rowcast::slave_with(master, target, name, &["--log", nats_url])
}

/// `(messages, bytes, last sequence)` of the stream.
fn stream_size(nats_url: &str) -> (u64, u64, u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = NatsUrl::parse(nats_url).unwrap();
        let log = NatsLog::open(&url, None).await.unwrap();
        let (first, last, _) = log.state().await.unwrap();
        // Messages are numbered without holes from `first`.
        let msgs = if last >= first { last - first + 1 } else { 0 };
        let bytes = stream_bytes(&url).await;
        (msgs, bytes, last)
    })
}

async fn stream_bytes(url: &NatsUrl) -> u64 {
    let client = async_nats::connect(url.server.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(&url.stream).await.unwrap();
    s.info().await.unwrap().state.bytes
}

/// Seeds a slave, stops it, and leaves a backlog of `UPDATES` whole-table
/// UPDATEs in the stream; returns the slave's name.
fn seed_then_backlog(
    nats_url: &str,
    primary: &MariaDb,
    replica: &MariaDb,
    listen: &str,
) -> &'static str {
    let name = "s1";
    let mut s = slave_on(nats_url, listen, replica, name);
    wait_caught_up(primary, replica, name);
    s.stop();
    for _ in 0..UPDATES {
        primary.sql("UPDATE t.big SET v = v + 1");
    }
    // The master has published it all when the stream's last record is
    // the primary's last transaction.
    let target = primary_position(primary);
    let ok = wait_until(CONVERGE, || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let url = NatsUrl::parse(nats_url).unwrap();
            let log = NatsLog::open(&url, None).await.unwrap();
            let (_, last, _) = log.state().await.unwrap();
            if last == 0 {
                return false;
            }
            let p = log.position_at(last).await.unwrap();
            format!("{}:{}", p.file, p.offset) == target
        })
    });
    assert!(ok, "the master did not publish the updates up to {target}");
    name
}

fn assert_every_update_once(primary: &MariaDb, replica: &MariaDb) {
    assert_every_update_once_of(primary, replica, UPDATES);
}

fn assert_every_update_once_of(primary: &MariaDb, replica: &MariaDb, updates: u64) {
    assert_eq!(
        replica
            .sql(&format!("SELECT COUNT(*) FROM t.big WHERE v <> {updates}"))
            .trim(),
        "0",
        "some row missed an update or got one twice"
    );
    assert_eq!(
        replica.sql("SELECT COUNT(*) FROM t.big").trim(),
        ROWS.to_string()
    );
    assert_same_table(primary, replica, "t.big");
}

#[test]
fn a_backlog_of_big_transactions_past_the_pending_limit_is_read_without_a_drop() {
    let nats = Nats::start_with_limits(MAX_PAYLOAD, MAX_PENDING);
    let url = nats.url("BIG");
    let (primary, replica) = primary_with_big_table();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master_on(&url, &primary, data.path(), &listen);
    let name = seed_then_backlog(&url, &primary, &replica, &listen);
    let (msgs, bytes, _) = stream_size(&url);
    assert!(
        bytes > 20 * MAX_PENDING as u64,
        "the backlog ({bytes} bytes) is not far past the pending limit"
    );

    let started = Instant::now();
    let mut s = slave_on(&url, &listen, &replica, name);
    wait_caught_up(&primary, &replica, name);
    let took = started.elapsed();
    eprintln!("backlog: {msgs} messages, {bytes} bytes, read and applied in {took:?}");
    assert_every_update_once(&primary, &replica);
    assert!(
        !nats.log_text().contains("Slow Consumer"),
        "the server dropped a slow consumer:\n{}",
        nats.log_text()
    );
    let log = s.log_text();
    assert!(
        !log.contains("reconnecting") && !log.contains("lost its place"),
        "the slave lost its consumer:\n{log}"
    );
    assert!(s.is_running());
}

#[test]
fn a_slave_resumes_by_itself_after_its_link_is_cut_and_nats_restarts() {
    let mut nats = Nats::start_with_limits(MAX_PAYLOAD, MAX_PENDING);
    let url = nats.url("CUT");
    let (primary, replica) = primary_with_big_table();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master_on(&url, &primary, data.path(), &listen);
    let name = seed_then_backlog(&url, &primary, &replica, &listen);

    // The slave reads the stream through a link that is cut twice while
    // it reads the backlog, then the server is killed and restarted.
    let link = Link::to(nats.port);
    let mut s = slave_on(&link.url("CUT"), &listen, &replica, name);
    let applied = |n: u64| {
        replica
            .try_sql(&format!("SELECT COUNT(*) FROM t.big WHERE v >= {n}"))
            .unwrap_or_default()
            .trim()
            == ROWS.to_string()
    };
    let mut cuts = 0;
    for after in [1, 3] {
        assert!(
            wait_until(CONVERGE, || applied(after)),
            "the slave did not apply update {after}:\n{}",
            s.log_text()
        );
        if !applied(UPDATES) {
            cuts += link.cut();
        }
    }
    if !applied(UPDATES) {
        nats.restart(Duration::from_millis(1000));
        cuts += 1;
    }
    assert!(cuts >= 2, "the backlog was read before the faults ({cuts})");
    wait_caught_up(&primary, &replica, name);
    assert_every_update_once(&primary, &replica);

    // Silence without an error: the link passes nothing back for longer
    // than the pull heartbeats while new big transactions arrive.
    link.freeze(true);
    for _ in 0..2 {
        primary.sql("UPDATE t.big SET v = v + 1");
    }
    std::thread::sleep(Duration::from_secs(20));
    link.freeze(false);
    wait_caught_up(&primary, &replica, name);
    assert_every_update_once_of(&primary, &replica, UPDATES + 2);
    assert!(s.is_running(), "the slave stopped:\n{}", s.log_text());

    // And it goes on with new transactions.
    primary.sql("UPDATE t.big SET v = v + 1 WHERE id <= 10");
    wait_caught_up(&primary, &replica, name);
    assert_same_table(&primary, &replica, "t.big");
}

#[test]
fn a_master_killed_while_the_slave_loads_its_snapshot_costs_no_second_copy() {
    let nats = Nats::start();
    let url = nats.url("SEED");
    let primary = MariaDb::primary();
    // About 26 MB of rows: less than the slave queues (32 MiB), so the
    // whole copy can arrive while the replica is held from loading it.
    const SEED_ROWS: u64 = 80_000;
    primary.sql(&format!(
        "CREATE DATABASE t; CREATE TABLE t.seed (id INT PRIMARY KEY, pad VARCHAR(300)); \
         USE t; INSERT INTO t.seed SELECT seq, REPEAT('s', 300) FROM seq_1_to_{SEED_ROWS}"
    ));
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = master_on(&url, &primary, data.path(), &listen);
    let mut s = slave_on(&url, &listen, &replica, "s1");

    // Once the first chunk is in, a read lock on the replica's table holds
    // the load back, so the master dies while the slave still has the copy
    // to load, whatever the speed of this machine.
    assert!(
        wait_until(CONVERGE, || replica
            .try_sql("SELECT COUNT(*) FROM t.seed")
            .is_ok_and(|n| n.trim() != "0")),
        "the snapshot's first chunk did not arrive:\n{}",
        s.log_text()
    );
    let lock = TableLock::hold(&replica, "t.seed");
    assert!(
        wait_until(CONVERGE, || s
            .log_text()
            .contains("snapshot received whole")),
        "the snapshot did not arrive:\n{}",
        s.log_text()
    );
    master.kill9();
    let loaded: u64 = replica
        .sql("SELECT COUNT(*) FROM t.seed")
        .trim()
        .parse()
        .unwrap();
    assert!(
        loaded < SEED_ROWS && !s.log_text().contains("snapshot loaded"),
        "the slave had loaded the copy before the master died ({loaded} rows): nothing tested"
    );
    lock.release(&replica);
    assert!(
        wait_until(CONVERGE, || s.log_text().contains("snapshot loaded")),
        "the slave did not finish loading:\n{}",
        s.log_text()
    );
    assert_eq!(
        replica.sql("SELECT COUNT(*) FROM t.seed").trim(),
        SEED_ROWS.to_string()
    );

    // The stream needs a master to publish; the slave needs none.
    let _master = master_on(&url, &primary, data.path(), &listen);
    primary.sql("INSERT INTO t.seed VALUES (0, 'after')");
    wait_caught_up(&primary, &replica, "s1");
    assert_same_table(&primary, &replica, "t.seed");
    let log = s.log_text();
    assert_eq!(
        log.matches("receiving a snapshot").count(),
        1,
        "the snapshot was taken again:\n{log}"
    );
    assert!(s.is_running());
}

/// `LOCK TABLES … READ` held by a client session on `db`, so that other
/// sessions cannot write the table until [`TableLock::release`].
struct TableLock {
    client: std::process::Child,
    marker: String,
}

impl TableLock {
    fn hold(db: &MariaDb, table: &str) -> TableLock {
        // A unique sleep length marks the session in the process list.
        let marker = "SELECT SLEEP(3601)".to_string();
        let client = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", "-uroot"])
            .arg(format!("-P{}", db.port))
            .args(["-e", &format!("LOCK TABLES {table} READ; {marker}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lock = TableLock { client, marker };
        assert!(
            wait_until(CONVERGE, || lock.session(db).is_some()),
            "the lock on {table} was not taken"
        );
        lock
    }

    fn session(&self, db: &MariaDb) -> Option<String> {
        let id = db
            .sql(&format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = '{}'",
                self.marker
            ))
            .trim()
            .to_string();
        (!id.is_empty()).then_some(id)
    }

    /// Kills the session on the server: a client killed alone would leave
    /// the server sleeping with the lock until it next writes to it.
    fn release(mut self, db: &MariaDb) {
        if let Some(id) = self.session(db) {
            db.sql(&format!("KILL {id}"));
        }
        let _ = self.client.kill();
        let _ = self.client.wait();
    }
}
