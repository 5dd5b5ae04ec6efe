//! Fault injection under a continuous write load: the slave and the master
//! SIGKILLed at random moments, the primary restarted, FLUSH LOGS in a
//! loop, and a TCP proxy between master and slave that cuts and stalls
//! connections. At the end every table equals the primary and an
//! append-only table shows no gap and no duplicate. Also: retention and a
//! purged position, and a read-only replica.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// Forwards a local port to `target`; `cut()` drops every connection,
/// `stall(true)` stops forwarding (a silent peer).
struct Proxy {
    addr: String,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stalled: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stalled = Arc::new(AtomicBool::new(false));
        let (c, st) = (conns.clone(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                c.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let st = st.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            while st.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            addr,
            conns,
            stalled,
        }
    }

    fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

fn append_load(
    port: u16,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let sql: String = (n + 1..=n + 20)
                .map(|k| format!("INSERT INTO f.log VALUES ({k}, REPEAT('x', {})); UPDATE f.kv SET v = v + 1 WHERE k = {};", k % 200, k % 10))
                .collect();
            let ok = std::process::Command::new("mariadb")
                .args(["--no-defaults", "-h127.0.0.1", "-uroot"])
                .arg(format!("-P{port}"))
                .arg("-e")
                .arg(&sql)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                n += 20;
                written.store(n, Ordering::SeqCst);
            } else {
                // The primary is restarting: autocommit statements of the
                // batch may have partly run. Continue after what it has,
                // once it answers again (guessing would write duplicates).
                loop {
                    std::thread::sleep(Duration::from_millis(200));
                    let out = std::process::Command::new("mariadb")
                        .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-B"])
                        .arg(format!("-P{port}"))
                        .args(["-e", "SELECT COALESCE(MAX(n), 0) FROM f.log"])
                        .output();
                    let max = out.ok().filter(|o| o.status.success()).and_then(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .trim()
                            .parse::<u64>()
                            .ok()
                    });
                    if let Some(m) = max {
                        n = m;
                        break;
                    }
                }
            }
        }
    })
}

#[test]
fn everything_killed_cut_and_rotated_under_load_loses_nothing() {
    let mut primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE f; CREATE TABLE f.log (n INT, pad VARCHAR(200));
         CREATE TABLE f.kv (k INT PRIMARY KEY, v BIGINT);
         INSERT INTO f.kv SELECT seq, 0 FROM f.seq_0_to_9;",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    let proxy = Proxy::start(listen.clone());
    let mut slave = Rowcast::slave(&proxy.addr, &replica, "f");
    wait_seeded(&replica, "f");

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let load = append_load(primary.port, stop.clone(), written.clone());
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let started = Instant::now();
    let mut faults = Vec::new();
    let mut step = 0;
    while started.elapsed() < Duration::from_secs(45) || step < 12 {
        std::thread::sleep(Duration::from_millis(300 + next() % 1200));
        step += 1;
        match step % 6 {
            0 => {
                slave.kill9();
                slave = Rowcast::slave(&proxy.addr, &replica, "f");
                faults.push("slave SIGKILL");
            }
            1 => {
                master.kill9();
                master = Rowcast::master(&primary, data.path(), &listen);
                faults.push("master SIGKILL");
            }
            2 => {
                let _ = primary.try_sql("FLUSH BINARY LOGS");
                faults.push("FLUSH LOGS");
            }
            3 => {
                proxy.cut();
                faults.push("connection cut");
            }
            4 => {
                proxy.stall(true);
                std::thread::sleep(Duration::from_secs(7));
                proxy.stall(false);
                faults.push("connection stalled 7s");
            }
            _ => {
                if step == 11 {
                    primary.restart();
                    faults.push("primary restart");
                }
            }
        }
        if step >= 30 {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let n = written.load(Ordering::SeqCst);
    assert!(n > 200, "the load ran ({n} rows)");
    assert!(faults.contains(&"primary restart"), "{faults:?}");
    wait_caught_up(&primary, &replica, "f");
    // The primary's own rows are the truth (a batch cut by its restart
    // may have committed part of itself).
    let dupes = "SELECT n, COUNT(*) FROM f.log GROUP BY n HAVING COUNT(*) <> 1 LIMIT 5";
    assert_eq!(primary.sql(dupes), "", "the load wrote no duplicate");
    assert_eq!(replica.sql(dupes), "", "no duplicate after {faults:?}");
    assert_same_table(&primary, &replica, "f.log");
    assert_same_table(&primary, &replica, "f.kv");
    let gaps = replica.sql("SELECT COUNT(*) FROM f.log a WHERE a.n > 1 AND NOT EXISTS (SELECT 1 FROM f.log b WHERE b.n = a.n - 1)");
    let primary_gaps = primary.sql("SELECT COUNT(*) FROM f.log a WHERE a.n > 1 AND NOT EXISTS (SELECT 1 FROM f.log b WHERE b.n = a.n - 1)");
    assert_eq!(gaps, primary_gaps, "no gap the primary does not have");
    drop(master);
}

#[test]
fn retention_purges_and_an_old_slave_is_told_to_resnapshot() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql("CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY, pad VARCHAR(500))");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let url = primary.url();
    let dir = data.path().to_str().unwrap();
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &url,
        "--listen",
        &listen,
        "--data-dir",
        dir,
        "--segment-bytes",
        "20000",
        "--retain-mb",
        "0",
    ]);
    master.wait_listening(&listen);
    let mut slave = Rowcast::slave(&listen, &replica, "old");
    primary.sql("INSERT INTO r.t VALUES (1, 'a')");
    wait_caught_up(&primary, &replica, "old");
    slave.stop();
    for i in 2..400 {
        primary.sql(&format!("INSERT INTO r.t VALUES ({i}, REPEAT('p', 400))"));
    }
    // Retention runs as transactions are logged; nobody holds the log.
    let purged = wait_until(CONVERGE, || {
        std::fs::read_dir(data.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count()
            <= 2
            && master.log_text().contains("removed by retention")
    });
    assert!(purged, "{}", master.log_text());
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &listen,
            "--target",
            &replica.url(),
            "--name",
            "old",
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
        "old",
        "--resnapshot",
    ]);
    wait_caught_up(&primary, &replica, "old");
    assert_same_table(&primary, &replica, "r.t");
}

#[test]
fn a_purged_primary_binlog_stops_the_master_with_the_position_and_the_fix() {
    let primary = MariaDb::primary();
    primary.sql("CREATE DATABASE p; CREATE TABLE p.t (id INT PRIMARY KEY)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    primary.sql("INSERT INTO p.t VALUES (1)");
    let logged = primary_position(&primary);
    assert!(wait_until(CONVERGE, || master
        .log_text()
        .contains("streaming binlog")));
    master.stop();
    // While the master is down, the primary moves on and purges the file
    // the master would resume in.
    let file = logged.split(':').next().unwrap().to_string();
    primary.sql("INSERT INTO p.t VALUES (2); FLUSH BINARY LOGS; INSERT INTO p.t VALUES (3)");
    let newest = primary_position(&primary);
    let newest_file = newest.split(':').next().unwrap();
    primary.sql(&format!("PURGE BINARY LOGS TO '{newest_file}'"));
    let out = run_rowcast(
        &[
            "master",
            "--source",
            &primary.url(),
            "--listen",
            &listen_addr(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no longer has the binlog"), "{err}");
    assert!(err.contains(&file), "names the missing file {file}: {err}");
    assert!(err.contains("--resnapshot"), "names the fix: {err}");
}

#[test]
fn replica_is_read_only_for_ordinary_users() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    replica.sql("CREATE USER app@'%' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO app@'%'; REVOKE SUPER, READ_ONLY ADMIN ON *.* FROM app@'%'");
    primary.sql("CREATE DATABASE ro; CREATE TABLE ro.t (id INT PRIMARY KEY)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _slave = Rowcast::slave(&listen, &replica, "ro");
    primary.sql("INSERT INTO ro.t VALUES (1)");
    wait_caught_up(&primary, &replica, "ro");
    let out = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", "-uapp", "-ppw"])
        .arg(format!("-P{}", replica.port))
        .args(["-e", "INSERT INTO ro.t VALUES (99)"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only")
            || String::from_utf8_lossy(&out.stderr).contains("READ-ONLY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    primary.sql("INSERT INTO ro.t VALUES (2)");
    wait_caught_up(&primary, &replica, "ro");
    assert_same_table(&primary, &replica, "ro.t");
}
