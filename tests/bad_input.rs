//! Wrong input of every kind ends in one clear line and a non-zero exit,
//! never a panic or a hang.

mod support;

use std::io::Write;
use std::time::Duration;

use support::*;

fn assert_clear_failure(out: &std::process::Output, expect: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "must exit non-zero; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "must not panic:\n{stderr}");
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in:\n{stderr}"));
    for e in expect {
        assert!(last.contains(e), "error line should mention `{e}`: {last}");
    }
    last.to_string()
}

fn master_args<'a>(source: &'a str, dir: &'a str, listen: &'a str) -> Vec<&'a str> {
    vec![
        "master",
        "--source",
        source,
        "--data-dir",
        dir,
        "--listen",
        listen,
    ]
}

#[test]
fn wrong_password_is_a_clear_error() {
    let primary = MariaDb::primary();
    primary.sql("CREATE USER repl@'%' IDENTIFIED BY 'right'; GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO repl@'%'");
    let dir = tempfile::tempdir().unwrap();
    let url = primary.url_as("repl", "wrong-secret");
    let out = run_rowcast(
        &master_args(&url, dir.path().to_str().unwrap(), &listen_addr()),
        Duration::from_secs(60),
    );
    let line = assert_clear_failure(&out, &["refused the login", "repl", "password"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("wrong-secret"),
        "password leaked: {line}"
    );
}

#[test]
fn unreachable_primary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mysql://root@127.0.0.1:{port}");
    let out = run_rowcast(
        &master_args(&url, dir.path().to_str().unwrap(), &listen_addr()),
        Duration::from_secs(60),
    );
    assert_clear_failure(&out, &["cannot connect", &port.to_string()]);
}

#[test]
fn statement_based_primary_is_refused_with_the_fix() {
    let primary = MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=STATEMENT",
        "--binlog_row_metadata=FULL",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = run_rowcast(
        &master_args(&primary.url(), dir.path().to_str().unwrap(), &listen_addr()),
        Duration::from_secs(60),
    );
    assert_clear_failure(&out, &["binlog_format", "STATEMENT", "ROW", "SET GLOBAL"]);
}

#[test]
fn primary_without_binlog_is_refused() {
    let no_binlog = MariaDb::replica();
    let dir = tempfile::tempdir().unwrap();
    let out = run_rowcast(
        &master_args(
            &no_binlog.url(),
            dir.path().to_str().unwrap(),
            &listen_addr(),
        ),
        Duration::from_secs(60),
    );
    assert_clear_failure(&out, &["log_bin", "--log-bin"]);
}

#[test]
fn missing_replication_grant_is_named() {
    let primary = MariaDb::primary();
    primary.sql("CREATE USER app@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO app@'%'");
    let dir = tempfile::tempdir().unwrap();
    let out = run_rowcast(
        &master_args(
            &primary.url_as("app", "pw"),
            dir.path().to_str().unwrap(),
            &listen_addr(),
        ),
        Duration::from_secs(60),
    );
    assert_clear_failure(&out, &["REPLICATION SLAVE", "GRANT"]);
}

#[test]
fn slave_pointed_at_a_database_port_is_told_so() {
    let replica = MariaDb::replica();
    let not_master = MariaDb::replica();
    let master = format!("127.0.0.1:{}", not_master.port);
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &master,
            "--target",
            &replica.url(),
            "--name",
            "s",
        ],
        Duration::from_secs(60),
    );
    assert_clear_failure(&out, &["not a rowcast master", "MySQL/MariaDB server"]);
}

#[test]
fn slave_pointed_at_a_silent_or_garbage_port_is_told_so() {
    let replica = MariaDb::replica();
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = garbage.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || {
        let (mut s, _) = garbage.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        std::thread::sleep(Duration::from_secs(2));
    });
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &addr,
            "--target",
            &replica.url(),
            "--name",
            "s",
        ],
        Duration::from_secs(60),
    );
    assert_clear_failure(&out, &["not a rowcast master", "HTTP"]);
    t.join().unwrap();
}

#[test]
fn bad_urls_are_rejected_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_rowcast(
        &master_args(
            "postgres://x@y",
            dir.path().to_str().unwrap(),
            &listen_addr(),
        ),
        Duration::from_secs(30),
    );
    assert_clear_failure(&out, &["invalid database URL", "mysql://"]);
}

#[test]
fn garbage_on_the_master_port_does_not_hurt_it() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&primary, data.path(), &listen);
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 64][..],
        &[0x10, 0, 0, 0, 1][..],
        b"",
    ] {
        let mut s = std::net::TcpStream::connect(&listen).unwrap();
        let _ = s.write_all(junk);
        drop(s);
    }
    // A length prefix claiming 2 GiB must not be allocated.
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    let _ = s.write_all(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
    drop(s);
    let _slave = Rowcast::slave(&listen, &replica, "s");
    primary.sql(
        "CREATE DATABASE g; CREATE TABLE g.t (id INT PRIMARY KEY); INSERT INTO g.t VALUES (1),(2)",
    );
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "g.t");
    assert!(master.is_running());
    assert!(master
        .log_text()
        .contains("did not complete the rowcast handshake"));
}

/// A slave of another protocol version (an older rowcast) is refused with
/// a message naming both versions and the fix, not a decoding failure:
/// `Hello` keeps its layout across versions so the master can read it.
#[test]
fn a_slave_of_another_protocol_version_is_told_to_run_the_same_version() {
    use rowcast::log::codec;
    use rowcast::net::wire::{self, ErrorKind, MasterMessage, SlaveMessage};
    use std::io::Read;

    fn read_message(s: &mut std::net::TcpStream) -> MasterMessage {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut payload).unwrap();
        codec::decode(&payload).unwrap()
    }

    let primary = MariaDb::primary();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut greeting = [0u8; wire::GREETING_LEN];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, wire::greeting());
    assert!(matches!(
        read_message(&mut s),
        MasterMessage::Challenge { .. }
    ));
    let old = wire::PROTOCOL_VERSION - 1;
    let hello = codec::encode(&SlaveMessage::Hello {
        protocol: old,
        name: "old".into(),
        auth: None,
        after: None,
    })
    .unwrap();
    s.write_all(&(hello.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&hello).unwrap();
    match read_message(&mut s) {
        MasterMessage::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::Incompatible, "{message}");
            for part in [
                format!("protocol {}", wire::PROTOCOL_VERSION),
                format!("protocol {old}"),
                "run the same rowcast version on the master and every slave".into(),
            ] {
                assert!(message.contains(&part), "`{part}` missing: {message}");
            }
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
