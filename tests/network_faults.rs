//! Network faults between rowcast's own test hosts, under a write load.
//!
//! The masters run in one network namespace, the slaves in another; every
//! link between them and the servers in the root namespace (primary,
//! replicas, NATS) crosses a veth pair of its own and a fault proxy
//! (`support::fault_proxy`) listening on the veth's root address. So each
//! link can be partitioned (its namespace end set down, or an iptables
//! DROP inside the namespace) and given latency, held-back bytes, a
//! freeze without FIN and a reset in the middle of a frame, one link at a
//! time, while rows keep coming. Afterwards every row is on every replica
//! exactly once, every process still runs, and each recovered by itself.
//!
//! Runs as root (`scripts/test`); a refused `ip netns add` fails the test.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::fault_proxy::{Fault, FaultProxy};
use support::netns::{Netns, Partition, Veth};
use support::*;

// ---- the proxy itself, against an echo server ----

/// An echo server on loopback; runs until the test process ends.
fn echo_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    addr
}

fn client(proxy: &FaultProxy) -> std::net::TcpStream {
    let c = std::net::TcpStream::connect(proxy.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Sends `msg` and reads it back; returns the round trip.
fn round_trip(c: &mut std::net::TcpStream, msg: &[u8]) -> Duration {
    use std::io::{Read, Write};
    let start = Instant::now();
    c.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, msg, "bytes changed or reordered");
    start.elapsed()
}

#[test]
fn proxy_passes_and_delays_in_order() {
    let proxy = FaultProxy::start("127.0.0.1:0", echo_server());
    let mut c = client(&proxy);
    assert!(round_trip(&mut c, b"hello") < Duration::from_millis(100));

    // Latency: 100 ms ± 50 ms each way, so a round trip takes 100..300
    // ms plus scheduling; many small writes arrive whole and in order.
    proxy.set(Fault::Latency);
    let rtt = round_trip(&mut c, b"ping");
    assert!(rtt >= Duration::from_millis(100), "round trip {rtt:?}");
    use std::io::{Read, Write};
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let chunk = i.to_le_bytes();
        c.write_all(&chunk).unwrap();
        sent.extend_from_slice(&chunk);
    }
    let mut back = vec![0u8; sent.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, sent, "latency reordered bytes");

    // Held back: nothing arrives before the hold ends.
    proxy.set(Fault::Hold(Duration::from_millis(800)));
    let rtt = round_trip(&mut c, b"held");
    assert!(rtt >= Duration::from_millis(1600), "round trip {rtt:?}");
    proxy.set(Fault::Pass);
    assert!(round_trip(&mut c, b"again") < Duration::from_millis(1000));
}

#[test]
fn proxy_freezes_without_fin_and_resets() {
    use std::io::{ErrorKind, Read, Write};
    let proxy = FaultProxy::start("127.0.0.1:0", echo_server());
    let mut c = client(&proxy);
    round_trip(&mut c, b"before");
    proxy.set(Fault::Freeze);
    c.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    c.write_all(b"frozen").unwrap();
    let mut buf = [0u8; 16];
    let e = c
        .read(&mut buf)
        .expect_err("a frozen link delivers nothing");
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "a frozen link must look open and silent (no FIN, no reset): {e}"
    );
    // A new connection is frozen too.
    let mut c2 = client(&proxy);
    c2.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c2.write_all(b"x").unwrap();
    assert!(c2.read(&mut buf).is_err());
    // A client that gives up on the frozen connection is seen doing so.
    let ids = proxy.live_ids();
    assert_eq!(ids.len(), 2);
    assert!(!proxy.all_abandoned(&ids));
    c2.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(!proxy.all_abandoned(&ids[..1]));
    assert!(wait_until(Duration::from_secs(5), || proxy.all_abandoned(&ids[1..])));
    assert_eq!(proxy.reset_all(), 2);
    proxy.set(Fault::Pass);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let e = c.read(&mut buf).expect_err("the freeze ends with a reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    // The link works again for new connections.
    let mut c3 = client(&proxy);
    round_trip(&mut c3, b"after");
}

#[test]
fn proxy_resets_in_the_middle_of_a_chunk() {
    use std::io::{ErrorKind, Read, Write};
    let proxy = FaultProxy::start("127.0.0.1:0", echo_server());
    let mut c = client(&proxy);
    round_trip(&mut c, b"warm");
    proxy.reset_mid_frame();
    c.write_all(&[7u8; 1000]).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match c.read(&mut buf) {
            Ok(0) => panic!("a reset, not a FIN, was expected after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(
        got.len() < 1000,
        "only part of the chunk arrives, got {}",
        got.len()
    );
    // Later connections are not affected.
    let mut c2 = client(&proxy);
    round_trip(&mut c2, b"next");
}

// ---- rowcast under faults ----

/// The slave's connection to its replica freezes in the middle of the
/// load (no FIN, no RST; the replica itself still answers new
/// connections): the slave sees the session idle on the server while it
/// waits for an answer, kills it and goes on with a new one, by itself.
/// Without that it would wait forever (keepalive cannot tell: the peer
/// still acknowledges).
#[test]
fn a_frozen_replica_connection_is_found_killed_and_replaced_by_the_slave() {
    let primary = MariaDb::primary();
    primary.sql("CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300))");
    let replica = MariaDb::replica();
    let proxy = FaultProxy::start(
        "127.0.0.1:0",
        SocketAddr::from(([127, 0, 0, 1], replica.port)),
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    let target = format!("mysql://root@{}", proxy.addr);
    let mut slave = Rowcast::spawn(&[
        "slave",
        "--master",
        &listen,
        "--target",
        &target,
        "--name",
        "f",
        "--master-timeout",
        "5",
    ]);
    wait_caught_up(&primary, &replica, "f");
    let n = 1500;
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let load = log_writer(
        primary.port,
        n,
        10,
        Duration::from_millis(20),
        done.clone(),
        written,
    );
    assert!(wait_until(CONVERGE, || max_n(replica.port) >= 200));
    let frozen = proxy.freeze_live();
    assert!(frozen >= 1, "the slave holds a connection to its replica");
    let frozen_at = Instant::now();
    let recovered = wait_until(Duration::from_secs(60), || {
        slave
            .log_text()
            .contains("the connection is frozen (killed it)")
    });
    assert!(
        recovered,
        "the slave did not notice its frozen replica connection within 60 s:\n{}",
        slave.log_text()
    );
    let noticed = frozen_at.elapsed();
    load.join().unwrap();
    // The frozen connections stay frozen: everything after goes through
    // the new one.
    wait_caught_up(&primary, &replica, "f");
    assert_each_row_once(&replica, n);
    assert_same_table(&primary, &replica, "t.log");
    assert!(slave.is_running() && master.is_running());
    println!(
        "frozen replica connection noticed and replaced after {:.1}s",
        noticed.as_secs_f64()
    );
}

/// One network link: its veth (in `ns`) and the proxies on it.
struct Link<'a> {
    name: &'static str,
    ns: &'a Netns,
    veth: Veth,
    proxies: Vec<&'a FaultProxy>,
    /// Indexes of the processes that hold connections on it.
    users: Vec<usize>,
    /// How long a freeze waits for them to notice it, and whether they
    /// must (see the slave-nats link).
    freeze_limit: Duration,
    must_notice_freeze: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Partition(Partition),
    Latency,
    Hold,
    Freeze,
    ResetMidFrame,
}

/// Full rounds of faults in the load test.
const ROUNDS: usize = 2;
/// How long a freeze waits for rowcast to notice it: above the slowest
/// detection (the applier's probe of an unanswered target session).
const FREEZE_LIMIT: Duration = Duration::from_secs(45);

const KINDS: [Kind; 6] = [
    Kind::Partition(Partition::LinkDown),
    Kind::Partition(Partition::Drop),
    Kind::Latency,
    Kind::Hold,
    Kind::Freeze,
    Kind::ResetMidFrame,
];

/// The row load: rows with unique `n` into the keyless `t.log` (single
/// and multi-row transactions), updates of earlier rows, and counter
/// updates on `t.acc` (by primary key). `written` is the highest `n`
/// committed.
fn start_load(
    port: u16,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        // Bounded in count as well as by `stop`.
        for call in 0..20_000u64 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let mut sql = String::new();
            for _ in 0..4 {
                n += 1;
                sql.push_str(&format!(
                    "INSERT INTO t.log VALUES ({n}, REPEAT('x', {}));",
                    n % 300
                ));
            }
            sql.push_str("BEGIN;");
            for _ in 0..4 {
                n += 1;
                sql.push_str(&format!("INSERT INTO t.log VALUES ({n}, 'multi');"));
            }
            sql.push_str(&format!(
                "UPDATE t.acc SET v = v + 1 WHERE id = {};COMMIT;",
                call % 8
            ));
            sql.push_str(&format!(
                "UPDATE t.log SET pad = CONCAT(pad, 'u') WHERE n = {};",
                n - 6
            ));
            sql_at(port, &sql).unwrap_or_else(|e| panic!("the load failed: {e}"));
            written.store(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
        }
        n
    })
}

fn max_n(replica_port: u16) -> u64 {
    sql_at(replica_port, "SELECT COALESCE(MAX(n), 0) FROM t.log")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn addr(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn dump_logs(procs: &[(&str, &Rowcast)]) -> String {
    procs
        .iter()
        .map(|(n, p)| {
            let text = p.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {n} ---\n{}\n", tail.join("\n"))
        })
        .collect()
}

#[test]
fn every_link_partitioned_delayed_frozen_and_reset_under_load_loses_nothing() {
    let started = Instant::now();
    let primary = MariaDb::primary();
    primary.sql(
        "CREATE DATABASE t; CREATE TABLE t.log (n INT, pad VARCHAR(300));
         CREATE TABLE t.acc (id INT PRIMARY KEY, v INT NOT NULL);
         INSERT INTO t.acc VALUES (0,0),(1,0),(2,0),(3,0),(4,0),(5,0),(6,0),(7,0)",
    );
    let r1 = MariaDb::replica();
    let r2 = MariaDb::replica();
    let nats = Nats::start();
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    // Masters in one namespace, slaves in another, one veth per link.
    let mut ns_m = Netns::new("m");
    let up = ns_m.add_veth(); // master -> primary (and the JetStream master -> NATS)
    let serve = ns_m.add_veth(); // where the masters listen
    let mut ns_s = Netns::new("s");
    let to_master = ns_s.add_veth();
    let to_replica = ns_s.add_veth();
    let to_nats = ns_s.add_veth();

    let any = |ip: std::net::Ipv4Addr| format!("{ip}:0");
    let p_primary = FaultProxy::start(&any(up.host_ip), local(primary.port));
    let p_nats_master = FaultProxy::start(&any(up.host_ip), local(nats.port));
    let p_master = FaultProxy::start(&any(to_master.host_ip), addr(serve.inner_ip, 7000));
    let p_master_js = FaultProxy::start(&any(to_master.host_ip), addr(serve.inner_ip, 7001));
    let p_r1 = FaultProxy::start(&any(to_replica.host_ip), local(r1.port));
    let p_r2 = FaultProxy::start(&any(to_replica.host_ip), local(r2.port));
    let p_nats_slave = FaultProxy::start(&any(to_nats.host_ip), local(nats.port));

    let data_a = tempfile::tempdir().unwrap();
    let data_b = tempfile::tempdir().unwrap();
    let source = format!("mysql://root@{}", p_primary.addr);
    let listen_a = addr(serve.inner_ip, 7000).to_string();
    let listen_b = addr(serve.inner_ip, 7001).to_string();
    let stream_for_master = format!("nats://{}/netfault", p_nats_master.addr);
    let stream_for_slave = format!("nats://{}/netfault", p_nats_slave.addr);
    let master_a = Rowcast::spawn_in(
        &ns_m,
        &[
            "master",
            "--source",
            &source,
            "--listen",
            &listen_a,
            "--data-dir",
            data_a.path().to_str().unwrap(),
        ],
    );
    let master_b = Rowcast::spawn_in(
        &ns_m,
        &[
            "master",
            "--source",
            &source,
            "--listen",
            &listen_b,
            "--data-dir",
            data_b.path().to_str().unwrap(),
            "--log",
            &stream_for_master,
        ],
    );
    for (l, m) in [(&listen_a, &master_a), (&listen_b, &master_b)] {
        assert!(
            wait_until(CONVERGE, || std::net::TcpStream::connect(l.as_str())
                .is_ok()),
            "master on {l} did not start:\n{}",
            m.log_text()
        );
    }
    let target_a = format!("mysql://root@{}", p_r1.addr);
    let target_b = format!("mysql://root@{}", p_r2.addr);
    let (pm, pmj) = (p_master.addr.to_string(), p_master_js.addr.to_string());
    let slave_a = Rowcast::spawn_in(
        &ns_s,
        &[
            "slave",
            "--master",
            &pm,
            "--target",
            &target_a,
            "--name",
            "a",
            "--master-timeout",
            "5",
        ],
    );
    let slave_b = Rowcast::spawn_in(
        &ns_s,
        &[
            "slave",
            "--master",
            &pmj,
            "--target",
            &target_b,
            "--name",
            "b",
            "--master-timeout",
            "5",
            "--log",
            &stream_for_slave,
        ],
    );
    let mut procs = [
        ("master (file log)", master_a),
        ("master (JetStream)", master_b),
        ("slave a", slave_a),
        ("slave b (JetStream)", slave_b),
    ];
    let logs = |procs: &[(&str, Rowcast)]| {
        dump_logs(&procs.iter().map(|(n, p)| (*n, p)).collect::<Vec<_>>())
    };
    wait_caught_up(&primary, &r1, "a");
    wait_caught_up(&primary, &r2, "b");

    let links = [
        Link {
            name: "master-primary",
            ns: &ns_m,
            veth: up.clone(),
            proxies: vec![&p_primary],
            users: vec![0, 1],
            freeze_limit: FREEZE_LIMIT,
            must_notice_freeze: true,
        },
        Link {
            name: "master-slave",
            ns: &ns_s,
            veth: to_master.clone(),
            proxies: vec![&p_master, &p_master_js],
            users: vec![2],
            freeze_limit: FREEZE_LIMIT,
            must_notice_freeze: true,
        },
        Link {
            name: "slave-replica",
            ns: &ns_s,
            veth: to_replica.clone(),
            proxies: vec![&p_r1, &p_r2],
            users: vec![2, 3],
            freeze_limit: FREEZE_LIMIT,
            must_notice_freeze: true,
        },
        Link {
            name: "slave-nats",
            ns: &ns_s,
            veth: to_nats.clone(),
            proxies: vec![&p_nats_slave],
            users: vec![3],
            // The slave ends a session whose progress reports have all
            // failed for 15 s and connects afresh.
            freeze_limit: FREEZE_LIMIT,
            must_notice_freeze: true,
        },
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let load = start_load(primary.port, stop.clone(), written.clone());

    struct Record {
        link: &'static str,
        kind: Kind,
        recovery: Duration,
        detected: Option<Duration>,
    }
    let mut records: Vec<Record> = Vec::new();
    let mut rounds = 0;
    // Two whole rounds: every kind on every link, then all of it again on
    // processes that already went through one round of faults (state left
    // behind by a recovery, such as a grown backoff or a lingering
    // consumer, shows in the second).
    for _round in 0..ROUNDS {
        for link in &links {
            for kind in KINDS {
                let fault_start = Instant::now();
                let mut detected = None;
                match kind {
                    Kind::Partition(how) => {
                        link.ns.partition(&link.veth, how);
                        std::thread::sleep(Duration::from_secs(3));
                        link.ns.heal(&link.veth, how);
                    }
                    Kind::Latency | Kind::Hold => {
                        let f = if kind == Kind::Latency {
                            Fault::Latency
                        } else {
                            Fault::Hold(Duration::from_millis(1500))
                        };
                        link.proxies.iter().for_each(|p| p.set(f));
                        std::thread::sleep(Duration::from_secs(3));
                        link.proxies.iter().for_each(|p| p.set(Fault::Pass));
                    }
                    Kind::Freeze => {
                        // Held until every process on the link has noticed the
                        // silent connection by itself and reconnects (bounded),
                        // then ended by resetting what is left.
                        let reconnects = |procs: &[(&str, Rowcast)]| -> Vec<usize> {
                            link.users
                                .iter()
                                .map(|&i| procs[i].1.log_text().matches("reconnecting").count())
                                .collect()
                        };
                        let before = reconnects(&procs);
                        link.proxies.iter().for_each(|p| p.set(Fault::Freeze));
                        let seen = wait_until(link.freeze_limit, || {
                            reconnects(&procs)
                                .iter()
                                .zip(&before)
                                .all(|(now, b)| now > b)
                        });
                        if seen {
                            detected = Some(fault_start.elapsed());
                        }
                        link.proxies.iter().for_each(|p| {
                            p.reset_all();
                            p.set(Fault::Pass);
                        });
                    }
                    Kind::ResetMidFrame => {
                        link.proxies.iter().for_each(|p| p.reset_mid_frame());
                        std::thread::sleep(Duration::from_secs(2));
                    }
                }
                // Recovered: every replica holds every row committed
                // before the fault ended.
                let healed = Instant::now();
                let target = written.load(Ordering::SeqCst);
                let ok = wait_until(Duration::from_secs(90), || {
                    max_n(r1.port) >= target && max_n(r2.port) >= target
                });
                let recovery = healed.elapsed();
                assert!(
                    ok,
                    "no recovery within 90 s after {kind:?} on {}: r1 at {}, r2 at {}, target {target}\n{}",
                    link.name,
                    max_n(r1.port),
                    max_n(r2.port),
                    logs(&procs)
                );
                for (name, p) in procs.iter_mut() {
                    assert!(
                        p.is_running(),
                        "{name} exited after {kind:?} on {}:\n{}",
                        link.name,
                        p.log_text()
                    );
                }
                eprintln!(
                    "[{:>5.1}s] {:<15} {:<22} detected {:<8} recovery {:.1}s",
                    started.elapsed().as_secs_f64(),
                    link.name,
                    format!("{kind:?}"),
                    detected.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64())),
                    recovery.as_secs_f64()
                );
                records.push(Record {
                    link: link.name,
                    kind,
                    recovery,
                    detected,
                });
            }
        }
        rounds += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let n = load.join().unwrap();
    wait_caught_up(&primary, &r1, "a");
    wait_caught_up(&primary, &r2, "b");
    for r in [&r1, &r2] {
        assert_each_row_once(r, n);
        assert_same_table(&primary, r, "t.log");
        assert_same_table(&primary, r, "t.acc");
    }
    for (name, p) in procs.iter_mut() {
        assert!(p.is_running(), "{name} exited:\n{}", p.log_text());
    }
    // Every fault made somebody reconnect: the processes did it alone.
    let reconnects: u64 = [
        &p_primary,
        &p_master,
        &p_master_js,
        &p_r1,
        &p_r2,
        &p_nats_slave,
    ]
    .iter()
    .map(|p| p.accepted())
    .sum();

    let count = |f: &dyn Fn(Kind) -> bool| records.iter().filter(|r| f(r.kind)).count();
    let longest = records.iter().max_by_key(|r| r.recovery).unwrap();
    let undetected: Vec<&str> = records
        .iter()
        .filter(|r| r.kind == Kind::Freeze && r.detected.is_none())
        .map(|r| r.link)
        .collect();
    let must_notice: Vec<&str> = links
        .iter()
        .filter(|l| l.must_notice_freeze)
        .map(|l| l.name)
        .collect();
    let freeze_detect: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.detected
                .map(|d| format!("{} {:.1}s", r.link, d.as_secs_f64()))
        })
        .collect();
    println!(
        "network faults: {rounds} full round(s), {} faults: {} link-down, {} iptables-drop, {} latency, {} hold, {} freeze, {} reset-mid-frame; \
         {n} rows written, lost 0, repeated 0; longest recovery {:.1}s ({:?} on {}); freezes detected by rowcast: [{}]; \
         not detected (ended by the reset): {:?}; connections accepted by the proxies {reconnects}; test took {:.0}s",
        records.len(),
        count(&|k| k == Kind::Partition(Partition::LinkDown)),
        count(&|k| k == Kind::Partition(Partition::Drop)),
        count(&|k| k == Kind::Latency),
        count(&|k| k == Kind::Hold),
        count(&|k| k == Kind::Freeze),
        count(&|k| k == Kind::ResetMidFrame),
        longest.recovery.as_secs_f64(),
        longest.kind,
        longest.link,
        freeze_detect.join(", "),
        undetected,
        started.elapsed().as_secs_f64(),
    );
    for r in &records {
        println!(
            "  {:<15} {:<22} recovery {:>5.1}s",
            r.link,
            format!("{:?}", r.kind),
            r.recovery.as_secs_f64()
        );
    }
    assert!(
        undetected.iter().all(|l| !must_notice.contains(l)),
        "a frozen connection (no FIN, no RST) went unnoticed for {FREEZE_LIMIT:?} on {undetected:?}:\n{}",
        logs(&procs)
    );
    // Processes before the namespaces: a namespace goes with its last process.
    drop(procs);
}
