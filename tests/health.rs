//! The HTTP endpoint on `--metrics` against real servers: `/healthz`,
//! `/readyz` (a slave before it connects, streaming, over `--max-lag`
//! while its apply is blocked, disconnected; a master whose primary goes
//! down and comes back), `/status` as JSON, 404, garbage and a silent
//! client; and `rowcast status --watch`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// One answer: status code and body.
#[derive(Debug)]
struct Answer {
    code: u16,
    body: String,
}

/// Sends `request` as is and reads the whole answer (the server closes).
fn send_raw(addr: &str, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        code,
        body: body.to_string(),
    }
}

fn get(addr: &str, path: &str) -> Answer {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: rowcast-tests\r\n\r\n")
            .as_bytes(),
    )
}

/// Polls `path` until it answers `code`; returns the last answer.
fn wait_for(addr: &str, path: &str, code: u16, limit: Duration) -> Answer {
    wait_body(addr, path, code, "", limit)
}

/// Polls `path` until it answers `code` with a body starting with
/// `prefix`; returns that answer.
fn wait_body(addr: &str, path: &str, code: u16, prefix: &str, limit: Duration) -> Answer {
    let mut last = None;
    let ok = wait_until(limit, || {
        let a = get(addr, path);
        let done = a.code == code && a.body.starts_with(prefix);
        last = Some(a);
        done
    });
    let last = last.unwrap();
    assert!(
        ok,
        "{path} on {addr} never answered {code} {prefix:?}; last: {last:?}"
    );
    last
}

fn wait_http(addr: &str) {
    assert!(
        wait_until(CONVERGE, || TcpStream::connect(addr).is_ok()),
        "nothing listens on {addr}"
    );
}

#[test]
fn slave_readiness_follows_connection_and_lag_and_status_is_json() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE h; CREATE TABLE h.t (id INT PRIMARY KEY, v INT); INSERT INTO h.t VALUES (1, 1)",
    );
    let listen = listen_addr();
    let shttp = listen_addr();
    // The slave starts before its master: up, not ready.
    let mut slave = Rowcast::slave_with(
        &listen,
        &replica,
        "hs",
        &["--metrics", &shttp, "--max-lag", "3s"],
    );
    wait_http(&shttp);
    let h = get(&shttp, "/healthz");
    assert_eq!((h.code, h.body.as_str()), (200, "ok\n"));
    // (Once it says so, it has its replica connection and has tried the
    // master.)
    let r = wait_body(&shttp, "/readyz", 503, "disconnected", CONVERGE);
    assert!(r.body.contains(&listen), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&get(&shttp, "/status").body).unwrap();
    assert_eq!(v["name"], "hs");
    assert_eq!(v["state"], "disconnected");
    assert_eq!(v["ready"], false);

    // Seeding: held there by a global read lock on the replica, which
    // the seed's CREATE waits for.
    let mut read_lock = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", "-uroot"])
        .arg(format!("-P{}", replica.port))
        .args(["-e", "FLUSH TABLES WITH READ LOCK; SELECT SLEEP(600);"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        replica
            .sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(600)%'")
            .trim()
            == "1"
    }));
    let data = tempfile::tempdir().unwrap();
    let mhttp = listen_addr();
    let mut master = Rowcast::master_with(&primary, data.path(), &listen, &["--metrics", &mhttp]);
    wait_for(&mhttp, "/readyz", 200, CONVERGE);
    wait_body(&shttp, "/readyz", 503, "seeding", CONVERGE);
    // Its session ended, the lock goes.
    let id = replica
        .sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(600)%'");
    replica.sql(&format!("KILL {}", id.trim()));
    let _ = read_lock.wait();
    // Seeded and streaming: ready.
    let r = wait_for(&shttp, "/readyz", 200, CONVERGE);
    assert_eq!(r.body, "ready\n");
    primary.sql("INSERT INTO h.t VALUES (2, 2)");
    wait_caught_up(&primary, &replica, "hs");
    assert_same_table(&primary, &replica, "h.t");
    let v: serde_json::Value = serde_json::from_str(&get(&shttp, "/status").body).unwrap();
    assert_eq!(v["role"], "slave");
    assert_eq!(v["state"], "streaming", "{v}");
    assert_eq!(v["master"], listen.as_str());
    assert_eq!(v["max_lag_seconds"], 3);
    assert_eq!(v["lag_seconds"], 0, "{v}");
    assert!(v["applied_position"]["file"].is_string(), "{v}");
    assert_eq!(v["settings"]["delay_seconds"], 0);
    let m = get(&shttp, "/metrics").body;
    assert!(
        m.contains(r#"rowcast_ready{role="slave",slave="hs"} 1"#),
        "{m}"
    );
    assert!(m.contains("rowcast_applied_transactions_total{"), "{m}");

    // The master's /status is `rowcast status --json`.
    let ms: serde_json::Value = serde_json::from_str(&get(&mhttp, "/status").body).unwrap();
    let cli = status_json(&listen);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ms), keys(&cli));
    assert_eq!(ms["slaves"][0]["name"], "hs", "{ms}");
    assert_eq!(ms["log_dir"], cli["log_dir"]);
    assert!(ms["log_last_seq"].as_u64().unwrap() >= 1, "{ms}");

    // Its apply blocked by a lock on the replica while the primary
    // writes: the lag passes --max-lag and readiness goes.
    let mut lock = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", "-uroot"])
        .arg(format!("-P{}", replica.port))
        .args(["-e", "LOCK TABLES h.t WRITE; SELECT SLEEP(20);"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        replica
            .sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(20)%'")
            .trim()
            == "1"
    }));
    let blocked_at = Instant::now();
    primary.sql("INSERT INTO h.t VALUES (3, 3)");
    let r = wait_for(&shttp, "/readyz", 503, Duration::from_secs(18));
    assert!(
        r.body.starts_with("lag ") && r.body.contains("over --max-lag 3s"),
        "{r:?}"
    );
    assert!(blocked_at.elapsed() >= Duration::from_secs(3));
    let v: serde_json::Value = serde_json::from_str(&get(&shttp, "/status").body).unwrap();
    assert!(v["lag_seconds"].as_u64().unwrap() > 3, "{v}");
    let m = get(&shttp, "/metrics").body;
    assert!(
        m.contains(r#"rowcast_ready{role="slave",slave="hs"} 0"#),
        "{m}"
    );
    let _ = lock.wait();
    wait_for(&shttp, "/readyz", 200, CONVERGE);
    wait_caught_up(&primary, &replica, "hs");
    assert_same_table(&primary, &replica, "h.t");

    // Its master gone: disconnected.
    master.kill9();
    let r = wait_for(&shttp, "/readyz", 503, CONVERGE);
    assert!(r.body.starts_with("disconnected"), "{r:?}");
    assert!(slave.is_running());
}

#[test]
fn master_readiness_follows_its_primary_and_bad_requests_are_refused() {
    let mut primary = MariaDb::primary();
    primary.sql("CREATE DATABASE h; CREATE TABLE h.t (id INT PRIMARY KEY)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let http = listen_addr();
    let mut master = Rowcast::master_with(&primary, data.path(), &listen, &["--metrics", &http]);
    let r = wait_for(&http, "/readyz", 200, CONVERGE);
    assert_eq!(r.body, "ready\n");
    let m = get(&http, "/metrics").body;
    for series in [
        r#"rowcast_ready{role="master"} 1"#,
        r#"rowcast_master_source_up{role="master"} 1"#,
        r#"rowcast_log_retention_limit_bytes{role="master"} 10737418240"#,
    ] {
        assert!(m.contains(series), "{series} in\n{m}");
    }

    // 404, a wrong method, garbage, an oversized head: each its answer,
    // and the server goes on.
    assert_eq!(get(&http, "/nope").code, 404);
    assert_eq!(
        send_raw(&http, b"DELETE /readyz HTTP/1.1\r\n\r\n").code,
        405
    );
    assert_eq!(
        send_raw(
            &http,
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n"
        )
        .code,
        400
    );
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 20_000));
    assert_eq!(send_raw(&http, &huge).code, 431);
    // A client that connects and says nothing does not hold the server:
    // others are answered meanwhile, and it is timed out.
    let mut silent = TcpStream::connect(&http).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(get(&http, "/healthz").code, 200);
    let started = Instant::now();
    let mut out = String::new();
    let _ = silent.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // The primary goes down: not ready, with the reason; back: ready.
    primary.stop();
    let r = wait_for(&http, "/readyz", 503, CONVERGE);
    assert!(r.body.contains("primary unreachable"), "{r:?}");
    let m = get(&http, "/metrics").body;
    assert!(
        m.contains(r#"rowcast_master_source_up{role="master"} 0"#),
        "{m}"
    );
    assert!(get(&http, "/healthz").code == 200 && master.is_running());
    primary.restart();
    wait_for(&http, "/readyz", 200, CONVERGE);
    primary.sql("INSERT INTO h.t VALUES (1)");
    let v: serde_json::Value = serde_json::from_str(&get(&http, "/status").body).unwrap();
    assert!(v["primary_position"]["file"].is_string(), "{v}");
}

#[test]
fn status_watch_redraws_until_killed() {
    let primary = MariaDb::primary();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut watch = std::process::Command::new(ROWCAST)
        .args(["status", "--watch", "--interval", "1s", "--master", &listen])
        .stdout(out.reopen().unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    let twice = wait_until(CONVERGE, || {
        text = std::fs::read_to_string(out.path()).unwrap();
        text.matches("primary      ").count() >= 2
    });
    let still_running = matches!(watch.try_wait(), Ok(None));
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(twice, "{text}");
    assert!(still_running, "it exited by itself:\n{text}");
    // Without a terminal: snapshots, a blank line between, no escapes.
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(text.contains("master log"), "{text}");
    assert!(text.contains("\n\n"), "{text}");
}

#[test]
fn a_master_reading_binlog_files_is_ready() {
    let (archive, _) = archive_of("rust_mysql_common/mariadb-bin.000001");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let http = listen_addr();
    let _master =
        Rowcast::master_on_files(archive.path(), data.path(), &listen, &["--metrics", &http]);
    let r = wait_for(&http, "/readyz", 200, CONVERGE);
    assert_eq!(r.body, "ready\n");
    let v: serde_json::Value = serde_json::from_str(&get(&http, "/status").body).unwrap();
    assert!(v["log_last_seq"].as_u64().unwrap() >= 1, "{v}");
    // Idle at the files' end, it stays ready (the reader looks again and
    // again).
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(get(&http, "/readyz").code, 200);
}
