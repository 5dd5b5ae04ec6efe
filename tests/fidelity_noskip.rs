//! Nothing is ever skipped silently: a primary whose binlog is reset under
//! the master (stopped or running) stops the master with what happened and
//! the fix, and a stream with a hole in its sequence numbers (a lost frame
//! between master and slave, a message gone from the JetStream stream)
//! stops the slave before it applies anything after the hole.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

const RESET_ERROR: &str = "no longer continues from position";

fn wait_exit(p: &mut Rowcast, what: &str) {
    assert!(
        wait_until(CONVERGE, || !p.is_running()),
        "{what} kept running:\n{}",
        p.log_text()
    );
}

fn count(db: &MariaDb, sql: &str) -> u64 {
    db.sql(sql).trim().parse().unwrap_or(0)
}

#[test]
fn a_binlog_reset_while_the_master_is_down_stops_it_on_restart() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    let _slave = Rowcast::slave(&listen, &replica, "s");
    primary.sql("CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY, pad VARCHAR(100)); INSERT INTO r.t VALUES (1, 'before')");
    wait_caught_up(&primary, &replica, "s");
    master.stop();

    // The new binlog.000001 grows past the old offset: asked for the old
    // position, the primary would hand over the middle of these events.
    primary.sql("RESET MASTER");
    let mut sql = String::new();
    for i in 2..200 {
        sql.push_str(&format!(
            "INSERT INTO r.t VALUES ({i}, REPEAT('x', 100));\n"
        ));
    }
    primary.sql(&sql);

    let mut master = Rowcast::master_no_wait(&primary, data.path(), &listen);
    wait_exit(&mut master, "the master on a reset binlog");
    let log = master.log_text();
    assert!(
        log.contains(RESET_ERROR) && log.contains("RESET MASTER") && log.contains("--resnapshot"),
        "{log}"
    );
    assert_eq!(count(&replica, "SELECT COUNT(*) FROM r.t"), 1);
}

#[test]
fn a_binlog_reset_under_a_running_master_stops_it() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    let _slave = Rowcast::slave(&listen, &replica, "s");
    primary.sql("CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY, pad VARCHAR(100))");
    let mut sql = String::new();
    for i in 1..50 {
        sql.push_str(&format!("INSERT INTO r.t VALUES ({i}, 'before');\n"));
    }
    primary.sql(&sql);
    wait_caught_up(&primary, &replica, "s");
    let before = count(&replica, "SELECT COUNT(*) FROM r.t");

    primary.sql("RESET MASTER");
    let mut sql = String::new();
    for i in 1000..1300 {
        sql.push_str(&format!(
            "INSERT INTO r.t VALUES ({i}, REPEAT('y', 100));\n"
        ));
    }
    primary.sql(&sql);

    wait_exit(&mut master, "the master under a binlog reset");
    let log = master.log_text();
    assert!(
        log.contains(RESET_ERROR) && log.contains("--resnapshot"),
        "{log}"
    );
    assert!(
        !log.contains("truncated in the middle of event"),
        "the misleading error is gone: {log}"
    );
    // Nothing written after the reset reached the slave as if it followed.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&replica, "SELECT COUNT(*) FROM r.t"), before);
}

/// A TCP proxy between slave and master that forwards every frame but
/// the `drop_nth` transaction frame (master to slave) once armed.
struct FrameDropper {
    addr: String,
    armed: Arc<AtomicU32>,
}

impl FrameDropper {
    fn start(target: String) -> FrameDropper {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // 0: forward everything; n > 0: drop the n-th transaction frame
        // from now on, counting down.
        let armed = Arc::new(AtomicU32::new(0));
        let a = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(Shutdown::Both);
                });
                let a = a.clone();
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    // The master's 10-byte greeting comes before any frame.
                    let mut greeting = [0u8; 10];
                    if from.read_exact(&mut greeting).is_err() || to.write_all(&greeting).is_err() {
                        return;
                    }
                    loop {
                        let mut len = [0u8; 4];
                        if from.read_exact(&mut len).is_err() {
                            break;
                        }
                        let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
                        if from.read_exact(&mut payload).is_err() {
                            break;
                        }
                        // Tag 0 is a transaction (see wire::transaction_frame_tag).
                        if payload.first() == Some(&0) {
                            let n = a.load(Ordering::SeqCst);
                            if n > 0 {
                                a.store(n - 1, Ordering::SeqCst);
                                if n == 1 {
                                    continue;
                                }
                            }
                        }
                        if to.write_all(&len).is_err() || to.write_all(&payload).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        });
        FrameDropper { addr, armed }
    }
}

#[test]
fn a_slave_that_receives_seq_n_plus_2_after_n_stops() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let proxy = FrameDropper::start(listen.clone());
    let mut slave = Rowcast::slave(&proxy.addr, &replica, "gappy");
    primary.sql(
        "CREATE DATABASE g; CREATE TABLE g.t (id INT PRIMARY KEY); INSERT INTO g.t VALUES (1)",
    );
    wait_caught_up(&primary, &replica, "gappy");
    // One transaction on this connection, so the slave knows its number.
    primary.sql("INSERT INTO g.t VALUES (2)");
    wait_caught_up(&primary, &replica, "gappy");

    // The first transaction after this is lost on the way.
    proxy.armed.store(1, Ordering::SeqCst);
    primary
        .sql("INSERT INTO g.t VALUES (3); INSERT INTO g.t VALUES (4); INSERT INTO g.t VALUES (5)");
    wait_exit(&mut slave, "the slave after a lost transaction");
    let log = slave.log_text();
    assert!(
        log.contains("jumped from sequence") && log.contains("nothing was skipped"),
        "{log}"
    );
    assert_eq!(
        replica
            .sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM g.t")
            .trim(),
        "1,2",
        "nothing after the hole was applied"
    );
}

#[test]
fn a_message_missing_from_the_jetstream_stream_stops_the_slave() {
    let nats = Nats::start();
    let url = nats.url("gaps");
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_with(&primary, data.path(), &listen, &["--log", &url]);
    let mut slave = Rowcast::slave_with(&listen, &replica, "js", &["--log", &url]);
    primary.sql(
        "CREATE DATABASE g; CREATE TABLE g.t (id INT PRIMARY KEY); INSERT INTO g.t VALUES (1)",
    );
    wait_caught_up(&primary, &replica, "js");
    slave.stop();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let parsed = rowcast::log::jetstream::NatsUrl::parse(&url).unwrap();
    let last = || {
        rt.block_on(async {
            let log = rowcast::log::jetstream::NatsLog::open(&parsed, None)
                .await
                .unwrap();
            log.state().await.unwrap().1
        })
    };
    let before = last();
    primary
        .sql("INSERT INTO g.t VALUES (2); INSERT INTO g.t VALUES (3); INSERT INTO g.t VALUES (4)");
    assert!(
        wait_until(CONVERGE, || last() >= before + 3),
        "the master did not publish the three transactions"
    );
    // Each small transaction is one message: remove the one of row 3.
    rt.block_on(async {
        let client = async_nats::connect(parsed.server.as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(&parsed.stream).await.unwrap();
        assert!(stream.delete_message(before + 2).await.unwrap());
    });

    let mut slave = Rowcast::slave_with(&listen, &replica, "js", &["--log", &url]);
    wait_exit(&mut slave, "the slave reading a stream with a hole");
    let log = slave.log_text();
    assert!(
        log.contains("never arrived") && log.contains("--resnapshot"),
        "{log}"
    );
    assert_eq!(
        replica
            .sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM g.t")
            .trim(),
        "1,2",
        "the slave applied up to the hole and nothing after it"
    );
}

#[test]
fn a_value_bigger_than_the_replicas_packet_limit_stops_the_slave_with_the_setting() {
    packet_limit("INSERT INTO b.t VALUES (2, REPEAT('z', 20 << 20))");
}

/// The same inside an XA transaction: its XA COMMIT carries no rows, the
/// held prepared rows are what needs the packet.
#[test]
fn a_held_xa_bigger_than_the_replicas_packet_limit_stops_the_slave_with_the_setting() {
    packet_limit(
        "XA START 'big'; INSERT INTO b.t VALUES (2, REPEAT('z', 20 << 20)); XA END 'big'; \
         XA PREPARE 'big'; XA COMMIT 'big';",
    );
}

fn packet_limit(write: &str) {
    let primary = MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        "--binlog_row_metadata=FULL",
        "--max-allowed-packet=64M",
    ]);
    // One replica with the default 16 MiB limit, one that allows more.
    let small = MariaDb::replica();
    let big = MariaDb::start_with(&["--max-allowed-packet=64M"]);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _fits = Rowcast::slave(&listen, &big, "fits");
    let mut refused = Rowcast::slave(&listen, &small, "refused");
    primary.sql("CREATE DATABASE b; CREATE TABLE b.t (id INT PRIMARY KEY, v LONGBLOB); INSERT INTO b.t VALUES (1, 'small')");
    wait_caught_up(&primary, &small, "refused");
    primary.sql(write);

    // Fits: applied whole.
    wait_caught_up(&primary, &big, "fits");
    let digest = "SELECT LENGTH(v), MD5(v) FROM b.t WHERE id = 2";
    assert_eq!(big.sql(digest), primary.sql(digest));

    // Beyond the limit: one clear stop naming the setting and the value
    // it needs, not reconnections forever.
    wait_exit(&mut refused, "the slave whose replica refuses the packet");
    let log = refused.log_text();
    let needed: u64 = log
        .split("SET GLOBAL max_allowed_packet=")
        .nth(1)
        .and_then(|rest| rest.split('M').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no setting named:\n{log}"));
    assert!(needed >= 21, "a 20 MiB value needs at least 21M: {needed}M");
    assert!(
        !log.contains("connection problem; reconnecting"),
        "a refused packet is not retried as a network fault:\n{log}"
    );
    assert_eq!(
        count(&small, "SELECT COUNT(*) FROM b.t"),
        1,
        "the big row was not half applied"
    );
}
