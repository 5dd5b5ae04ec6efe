//! Lag operators can trust: seconds since the primary committed the oldest
//! transaction a slave has not applied, for disconnected, stalled and
//! JetStream slaves and while the master itself is behind the primary; the
//! `stalled` state; and a second connection under one slave name.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

fn status_text(listen: &str) -> String {
    let out = run_rowcast(&["status", "--master", listen], Duration::from_secs(60));
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One slave's entry (`Null` when the master does not list it).
fn slave(s: &serde_json::Value, name: &str) -> serde_json::Value {
    s["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn num(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// The value of `series` (name with its labels) in a metrics page.
fn series(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn signal(process: &Rowcast, sig: i32) {
    let rc = unsafe { libc::kill(process.pid() as i32, sig) };
    assert_eq!(rc, 0, "kill({sig}) failed");
}

/// The primary's clock, epoch seconds (commit times come from it).
fn primary_now(primary: &MariaDb) -> u64 {
    primary
        .sql("SELECT UNIX_TIMESTAMP()")
        .trim()
        .parse()
        .unwrap()
}

/// Waits until the primary's clock has moved `secs` past `from`.
fn wait_primary_clock(primary: &MariaDb, from: u64, secs: u64) {
    assert!(wait_until(Duration::from_secs(secs + 30), || {
        primary_now(primary) >= from + secs
    }));
}

fn setup(primary: &MariaDb) {
    primary.sql(
        "CREATE DATABASE g; CREATE TABLE g.t (id INT PRIMARY KEY, v INT); INSERT INTO g.t VALUES (0, 0)",
    );
}

#[test]
fn a_disconnected_slave_lags_by_the_age_of_its_oldest_unapplied_transaction() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let mut s = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    s.kill9();
    assert!(wait_until(CONVERGE, || slave(&status_json(&listen), "s")
        ["state"]
        == "disconnected"));

    // The oldest unapplied transaction is a few seconds older than the
    // newest: lag must follow the oldest.
    primary.sql("INSERT INTO g.t VALUES (2, 2)");
    let first_committed_by = primary_now(&primary);
    wait_primary_clock(&primary, first_committed_by, 3);
    for i in 3..23 {
        primary.sql(&format!("INSERT INTO g.t VALUES ({i}, {i})"));
    }
    let target: u64 = primary_position(&primary)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait_until(CONVERGE, || {
        status_json(&listen)["log_position"]["offset"].as_u64() == Some(target)
    }));
    let asked_at = primary_now(&primary);
    let st = status_json(&listen);
    let sl = slave(&st, "s");
    assert_eq!(sl["state"], "disconnected", "{st}");
    assert_eq!(num(&sl, "lag_transactions"), 21, "{st}");
    let lag = num(&sl, "lag_seconds");
    assert!(
        lag + 1 >= asked_at - first_committed_by && lag >= 3,
        "lag {lag} s, but the oldest unapplied transaction is at least {} s old: {st}",
        asked_at - first_committed_by
    );
    let text = status_text(&listen);
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.trim_start().starts_with("s "))
        .unwrap()
        .split_whitespace()
        .collect();
    let txns = row.iter().position(|c| *c == "21").expect("LAG TXNS 21");
    assert!(row.contains(&"disconnected"), "{text}");
    assert!(row[txns + 1].parse::<u64>().unwrap() >= 3, "LAG S: {text}");
}

#[test]
fn a_caught_up_slave_shows_zero_lag_while_the_primary_is_idle() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _s = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    // Idle for several binlog heartbeat periods, checked on each poll.
    let idle_since = primary_now(&primary);
    let mut polls = 0;
    while primary_now(&primary) < idle_since + 8 {
        let st = status_json(&listen);
        let sl = slave(&st, "s");
        if primary_now(&primary) >= idle_since + 3 {
            // By now a heartbeat has said the master read everything.
            assert_eq!(sl["state"], "streaming", "{st}");
            assert_eq!(num(&sl, "lag_transactions"), 0, "{st}");
            assert_eq!(num(&sl, "lag_seconds"), 0, "{st}");
            polls += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(polls >= 3, "only {polls} polls in the idle window");
}

#[test]
fn a_stalled_slave_shows_stalled_in_status_and_metrics_then_recovers() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mport = listen_addr();
    let _master = Rowcast::master_with(
        &primary,
        data.path(),
        &listen,
        &["--stall-after", "3s", "--metrics", &mport],
    );
    let s = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    signal(&s, libc::SIGSTOP);
    let started = primary_now(&primary);
    for i in 2..7 {
        primary.sql(&format!("INSERT INTO g.t VALUES ({i}, {i})"));
    }
    let mut last = serde_json::Value::Null;
    let stalled = wait_until(CONVERGE, || {
        last = status_json(&listen);
        slave(&last, "s")["state"] == "stalled"
    });
    assert!(
        stalled,
        "a frozen slave with work pending shows stalled: {last}"
    );
    let sl = slave(&last, "s");
    assert_eq!(num(&sl, "lag_transactions"), 5, "{last}");
    assert!(num(&sl, "lag_seconds") >= 1, "{last}");
    assert!(status_text(&listen).contains("stalled"));
    let mut page = String::new();
    assert!(
        wait_until(CONVERGE, || {
            page = http_get(&mport);
            series(&page, r#"rowcast_slave_stalled{role="master",slave="s"}"#) == Some(1)
        }),
        "{page}"
    );
    let lag = series(
        &page,
        r#"rowcast_slave_lag_seconds{role="master",slave="s"}"#,
    )
    .unwrap();
    assert!(
        lag >= 1 && lag <= primary_now(&primary) - started + 2,
        "{page}"
    );
    assert_eq!(
        series(
            &page,
            r#"rowcast_slave_lag_transactions{role="master",slave="s"}"#
        ),
        Some(5),
        "{page}"
    );

    signal(&s, libc::SIGCONT);
    wait_caught_up(&primary, &replica, "s");
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            let sl = slave(&last, "s");
            sl["state"] == "streaming" && sl["lag_seconds"] == 0
        }),
        "{last}"
    );
    assert!(
        wait_until(CONVERGE, || {
            page = http_get(&mport);
            series(&page, r#"rowcast_slave_stalled{role="master",slave="s"}"#) == Some(0)
        }),
        "{page}"
    );
}

/// A TCP proxy in front of the primary whose existing connections can be
/// frozen (nothing more reaches the client), while new ones pass.
struct FreezingProxy {
    port: u16,
    frozen: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    stop: Arc<AtomicBool>,
}

impl FreezingProxy {
    fn start(target: u16) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (frozen.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let flag = Arc::new(AtomicBool::new(false));
                f.lock().unwrap().push(flag.clone());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server, None));
                let st = st.clone();
                std::thread::spawn(move || pump(s2, c2, Some((flag, st))));
            }
        });
        FreezingProxy { port, frozen, stop }
    }

    /// From now on, nothing the primary sends on a connection open now
    /// reaches its client.
    fn freeze_existing(&self) {
        for f in self.frozen.lock().unwrap().iter() {
            f.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    freeze: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((frozen, stop)) = &freeze {
            if frozen.load(Ordering::Relaxed) {
                // Hold it: the client sees silence until the test ends.
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_caught_up_slave_lags_while_the_master_is_behind_the_primary() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let proxy = FreezingProxy::start(primary.port);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let source = format!("mysql://root@127.0.0.1:{}", proxy.port);
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &source,
        "--listen",
        &listen,
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    master.wait_listening(&listen);
    let _s = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    assert!(wait_until(CONVERGE, || {
        let sl = slave(&status_json(&listen), "s");
        sl["lag_seconds"] == 0 && sl["lag_transactions"] == 0
    }));

    // The master's binlog stream goes silent; the primary takes writes the
    // change log does not have: the slave has applied the whole log, yet it
    // is behind.
    proxy.freeze_existing();
    let frozen_at = primary_now(&primary);
    for i in 2..5 {
        primary.sql(&format!("INSERT INTO g.t VALUES ({i}, {i})"));
    }
    let mut last = serde_json::Value::Null;
    let behind = wait_until(Duration::from_secs(60), || {
        last = status_json(&listen);
        let sl = slave(&last, "s");
        let lag = sl["lag_seconds"].as_u64().unwrap_or(0);
        // Bounded by how long the master has not been reading.
        assert!(lag <= primary_now(&primary) - frozen_at + 4, "{last}");
        sl["lag_transactions"] == 0 && lag >= 2
    });
    assert!(
        behind,
        "a slave of a master behind the primary lags: {last}"
    );

    // The master notices the silence, reconnects and catches up.
    wait_caught_up(&primary, &replica, "s");
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            slave(&last, "s")["lag_seconds"] == 0
        }),
        "{last}"
    );
}

#[test]
fn a_jetstream_slave_shows_its_lag_and_stalls() {
    let nats = Nats::start();
    let url = nats.url("lag");
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_with(
        &primary,
        data.path(),
        &listen,
        &["--log", &url, "--stall-after", "3s"],
    );
    let s = Rowcast::slave_with(&listen, &replica, "js", &["--log", &url]);
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "js");
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            let sl = slave(&last, "js");
            sl["state"] == "streaming" && sl["lag_transactions"] == 0 && sl["lag_seconds"] == 0
        }),
        "{last}"
    );

    signal(&s, libc::SIGSTOP);
    primary.sql("INSERT INTO g.t VALUES (2, 2)");
    let first_committed_by = primary_now(&primary);
    wait_primary_clock(&primary, first_committed_by, 3);
    primary.sql("INSERT INTO g.t VALUES (3, 3)");
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            slave(&last, "js")["state"] == "stalled"
        }),
        "{last}"
    );
    let sl = slave(&last, "js");
    assert!(num(&sl, "lag_transactions") >= 2, "{last}");
    // Measured from the oldest unapplied message, not the newest.
    assert!(num(&sl, "lag_seconds") >= 3, "{last}");

    signal(&s, libc::SIGCONT);
    wait_caught_up(&primary, &replica, "js");
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            let sl = slave(&last, "js");
            sl["state"] == "streaming" && sl["lag_seconds"] == 0
        }),
        "{last}"
    );
}

#[test]
fn a_second_connection_under_one_name_replaces_the_first() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    // Tiny segments and no size allowance: retention drops every segment
    // no connected slave needs.
    let master = Rowcast::master_with(
        &primary,
        data.path(),
        &listen,
        &["--segment-bytes", "2048", "--retain-mb", "0"],
    );
    let mut old = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    let old_addr = slave(&status_json(&listen), "s")["addr"].clone();

    // The old slave freezes while idle (no locks held) with its connection
    // open; a new one takes over under the same name on the same replica.
    signal(&old, libc::SIGSTOP);
    for i in 2..12 {
        primary.sql(&format!("INSERT INTO g.t VALUES ({i}, {i})"));
    }
    let new = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    let st = status_json(&listen);
    let sl = slave(&st, "s");
    assert_ne!(sl["addr"], old_addr, "{st}");
    assert_eq!(sl["state"], "streaming", "{st}");
    assert!(
        wait_until(CONVERGE, || master
            .log_text()
            .contains("a newer connection took this slave name over")),
        "{}",
        master.log_text()
    );

    // The old process dies; its connection's end leaves the new one alone.
    old.kill9();
    primary.sql("INSERT INTO g.t VALUES (100, 100)");
    wait_caught_up(&primary, &replica, "s");
    let st = status_json(&listen);
    assert_eq!(slave(&st, "s")["state"], "streaming", "{st}");
    assert_ne!(slave(&st, "s")["addr"], old_addr, "{st}");
    // Retention is at work while the slave keeps up.
    for i in 200..230 {
        primary.sql(&format!("INSERT INTO g.t VALUES ({i}, {i})"));
    }
    wait_caught_up(&primary, &replica, "s");
    assert!(
        wait_until(CONVERGE, || num(&status_json(&listen), "log_first_seq") > 1),
        "retention dropped nothing: {}",
        status_json(&listen)
    );

    // The new slave freezes: retention keeps everything it still needs
    // over several retention ticks (every 5 s).
    assert!(wait_until(CONVERGE, || num(
        &slave(&status_json(&listen), "s"),
        "lag_transactions"
    ) == 0));
    signal(&new, libc::SIGSTOP);
    let applied = num(&slave(&status_json(&listen), "s"), "applied_seq");
    for i in 300..330 {
        primary.sql(&format!("INSERT INTO g.t VALUES ({i}, {i})"));
    }
    let watch_from = primary_now(&primary);
    while primary_now(&primary) < watch_from + 12 {
        let st = status_json(&listen);
        assert!(
            num(&st, "log_first_seq") <= applied + 1,
            "retention dropped what slave s still needs (applied {applied}): {st}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    signal(&new, libc::SIGCONT);
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "g.t");
    let _keep = new;
}

/// Epoch seconds on this machine's clock (the primary's is the same one).
fn local_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_caught_up_slave_lags_while_the_primary_is_down() {
    let mut primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _s = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            let sl = slave(&last, "s");
            sl["lag_seconds"] == 0 && sl["lag_transactions"] == 0
        }),
        "{last}"
    );

    // Down, the primary's position cannot be read, and it may have
    // committed what the master never got: the slave is not known to be
    // current, and the lower bound on its lag grows with the silence.
    let stopped_at = local_now();
    primary.stop();
    let mut first = 0;
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            first = slave(&last, "s")["lag_seconds"].as_u64().unwrap_or(0);
            first > 0
        }),
        "a slave of a master cut off from its primary shows lag 0: {last}"
    );
    let sl = slave(&last, "s");
    assert_eq!(num(&sl, "lag_transactions"), 0, "{last}");
    // Counted from the last moment the master was known caught up (just
    // before the stop), no earlier.
    assert!(first <= local_now() - stopped_at + 10, "{last}");
    let grown = wait_until(Duration::from_secs(60), || {
        last = status_json(&listen);
        num(&slave(&last, "s"), "lag_seconds") >= first + 3
    });
    assert!(
        grown,
        "lag stays at {first} s while the primary is down: {last}"
    );
}

#[test]
fn a_caught_up_slave_keeps_a_small_lag_while_the_primary_writes_only_filtered_out_tables() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    primary.sql("CREATE TABLE g.noise (id INT AUTO_INCREMENT PRIMARY KEY, v INT); CREATE DATABASE other; CREATE TABLE other.n (id INT AUTO_INCREMENT PRIMARY KEY, v INT)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master_with(
        &primary,
        data.path(),
        &listen,
        &["--exclude", "g.noise", "--exclude", "other"],
    );
    let _s = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            slave(&last, "s")["lag_seconds"] == 0
        }),
        "{last}"
    );

    // A busy primary (its dump thread never idle, so no heartbeats) whose
    // every write is filtered out.
    let stop = Arc::new(AtomicBool::new(false));
    let port = primary.port;
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let table = if n.is_multiple_of(2) {
                    "g.noise"
                } else {
                    "other.n"
                };
                sql_at(port, &format!("INSERT INTO {table} (v) VALUES ({n})")).unwrap();
                n += 1;
            }
            n
        })
    };
    let began = primary_now(&primary);
    let mut polls = 0;
    while primary_now(&primary) < began + 14 {
        let st = status_json(&listen);
        let sl = slave(&st, "s");
        assert_eq!(sl["state"], "streaming", "{st}");
        let lag = num(&sl, "lag_seconds");
        assert!(
            lag <= 5,
            "lag {lag} s with nothing replicated pending: {st}"
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes >= 20, "only {writes} filtered-out writes");
    assert!(polls >= 5, "only {polls} polls while the primary was busy");
    assert_eq!(replica.sql("SELECT COUNT(*) FROM g.t").trim(), "2");
}

#[test]
fn a_crashed_jetstream_slave_shows_disconnected_and_its_lag_goes_on() {
    let nats = Nats::start();
    let url = nats.url("crash");
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mport = listen_addr();
    let _master = Rowcast::master_with(
        &primary,
        data.path(),
        &listen,
        &["--log", &url, "--metrics", &mport],
    );
    let mut s = Rowcast::slave_with(&listen, &replica, "js", &["--log", &url]);
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "js");
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            let sl = slave(&last, "js");
            sl["state"] == "streaming" && sl["lag_seconds"] == 0
        }),
        "{last}"
    );
    // Idle and alive, it keeps its report fresh: still streaming well past
    // the silence bound.
    let idle_from = primary_now(&primary);
    wait_primary_clock(&primary, idle_from, 35);
    last = status_json(&listen);
    assert_eq!(slave(&last, "js")["state"], "streaming", "{last}");

    s.kill9();
    primary.sql("INSERT INTO g.t VALUES (2, 2)");
    let committed_by = primary_now(&primary);
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            slave(&last, "js")["state"] == "disconnected"
        }),
        "a crashed JetStream slave still shows as live: {last}"
    );
    let sl = slave(&last, "js");
    assert_eq!(num(&sl, "lag_transactions"), 1, "{last}");
    let lag = num(&sl, "lag_seconds");
    assert!(
        lag + 1 >= primary_now(&primary) - committed_by,
        "lag {lag} s stopped counting: {last}"
    );
    let mut page = String::new();
    assert!(
        wait_until(CONVERGE, || {
            page = http_get(&mport);
            series(
                &page,
                r#"rowcast_slave_connected{role="master",slave="js"}"#,
            ) == Some(0)
        }),
        "{page}"
    );
    assert!(
        series(
            &page,
            r#"rowcast_slave_lag_seconds{role="master",slave="js"}"#
        )
        .is_some_and(|l| l >= 1),
        "{page}"
    );

    // Back, it reports again and shows as streaming.
    let _s = Rowcast::slave_with(&listen, &replica, "js", &["--log", &url]);
    wait_caught_up(&primary, &replica, "js");
    assert!(
        wait_until(CONVERGE, || {
            last = status_json(&listen);
            let sl = slave(&last, "js");
            sl["state"] == "streaming" && sl["lag_seconds"] == 0
        }),
        "{last}"
    );
}

/// Connections the server has accepted so far (its `Connections` counter).
fn connections(db: &MariaDb) -> u64 {
    db.sql("SHOW GLOBAL STATUS LIKE 'Connections'")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_metrics_refresh_keeps_one_primary_connection() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    setup(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mport = listen_addr();
    let _master = Rowcast::master_with(&primary, data.path(), &listen, &["--metrics", &mport]);
    let _s = Rowcast::slave(&listen, &replica, "s");
    primary.sql("INSERT INTO g.t VALUES (1, 1)");
    wait_caught_up(&primary, &replica, "s");
    // Refreshes (every 3 s) have run and found the lag.
    let mut page = String::new();
    assert!(
        wait_until(CONVERGE, || {
            page = http_get(&mport);
            series(
                &page,
                r#"rowcast_slave_lag_seconds{role="master",slave="s"}"#,
            ) == Some(0)
        }),
        "{page}"
    );
    // Over five refreshes, and no status request: the refresh reads the
    // primary's position on the connection it keeps. (A measuring window,
    // not a wait: nothing else here connects to the primary meanwhile.)
    let before = connections(&primary);
    std::thread::sleep(Duration::from_secs(16));
    // Less the connection of this very query.
    let opened = connections(&primary) - before - 1;
    // One spare for a reconnect; one connection per refresh would be five.
    assert!(
        opened <= 2,
        "{opened} primary connections in 16 s of metrics refreshes"
    );
}
