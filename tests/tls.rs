//! TLS between slave and master: a slave that trusts the master's CA
//! replicates; one that trusts another CA, or speaks plain TCP, is refused;
//! with mutual TLS a slave without a client certificate is refused.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use support::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca() -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// Writes `name.pem` / `name.key` signed by `ca` for 127.0.0.1.
fn issue(ca: &Ca, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn write_ca(ca: &Ca, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.pem"));
    std::fs::write(&p, ca.cert.pem()).unwrap();
    p
}

#[test]
fn tls_links_trust_only_the_right_ca_and_client_certificates() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE t; CREATE TABLE t.x (id INT PRIMARY KEY); INSERT INTO t.x VALUES (1)",
    );
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (ca(), ca());
    let good_ca = write_ca(&good, dir.path(), "ca");
    let other_ca = write_ca(&other, dir.path(), "other-ca");
    let (srv_cert, srv_key) = issue(&good, dir.path(), "server");
    let (cli_cert, cli_key) = issue(&good, dir.path(), "client");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let listen = listen_addr();
    let data = dir.path().join("log");
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &primary.url(),
        "--listen",
        &listen,
        "--data-dir",
        &s(&data),
        "--tls-cert",
        &s(&srv_cert),
        "--tls-key",
        &s(&srv_key),
        "--tls-client-ca",
        &s(&good_ca),
    ]);
    master.wait_listening(&listen);
    let url = replica.url();

    // Trusting another CA: refused, and told why.
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &listen,
            "--target",
            &url,
            "--name",
            "x",
            "--tls-ca",
            &s(&other_ca),
            "--tls-cert",
            &s(&cli_cert),
            "--tls-key",
            &s(&cli_key),
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS handshake failed") && err.contains("--tls-ca"),
        "{err}"
    );

    // No client certificate while the master requires one: refused.
    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &listen,
            "--target",
            &url,
            "--name",
            "x",
            "--tls-ca",
            &s(&good_ca),
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS"), "{err}");

    // Plain TCP against a TLS master: refused with a hint.
    let out = run_rowcast(
        &[
            "slave", "--master", &listen, "--target", &url, "--name", "x",
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-ca"), "{err}");
    assert!(slave_position(&replica, "x").is_empty());
    assert!(master.log_text().contains("TLS handshake failed"));

    // The right CA and a client certificate: replicates.
    let _slave = Rowcast::spawn(&[
        "slave",
        "--master",
        &listen,
        "--target",
        &url,
        "--name",
        "ok",
        "--tls-ca",
        &s(&good_ca),
        "--tls-cert",
        &s(&cli_cert),
        "--tls-key",
        &s(&cli_key),
    ]);
    primary.sql("INSERT INTO t.x VALUES (2)");
    wait_caught_up(&primary, &replica, "ok");
    assert_same_table(&primary, &replica, "t.x");
    let out = run_rowcast(
        &[
            "status",
            "--master",
            &listen,
            "--tls-ca",
            &s(&good_ca),
            "--tls-cert",
            &s(&cli_cert),
            "--tls-key",
            &s(&cli_key),
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_to_the_primary_with_ssl_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (ca(), ca());
    let good_ca = write_ca(&good, dir.path(), "ca");
    let other_ca = write_ca(&other, dir.path(), "other-ca");
    let (cert, key) = issue(&good, dir.path(), "db");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let flags = [
        "--log-bin=binlog".to_string(),
        "--binlog_format=ROW".to_string(),
        "--binlog_row_metadata=FULL".to_string(),
        format!("--ssl-cert={}", s(&cert)),
        format!("--ssl-key={}", s(&key)),
        format!("--ssl-ca={}", s(&good_ca)),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let primary = MariaDb::start_with(&flags);
    assert_eq!(
        primary.sql("SELECT @@have_ssl").trim(),
        "YES",
        "the test server has TLS"
    );
    primary.sql(
        "CREATE USER secure@'%' IDENTIFIED BY 'pw' REQUIRE SSL;
         GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO secure@'%';
         CREATE DATABASE e; CREATE TABLE e.t (id INT PRIMARY KEY); INSERT INTO e.t VALUES (1);",
    );
    let replica = MariaDb::replica();
    let base = primary.url_as("secure", "pw");
    let run_master = |url: &str| {
        let d = tempfile::tempdir().unwrap();
        run_rowcast(
            &[
                "master",
                "--source",
                url,
                "--listen",
                &listen_addr(),
                "--data-dir",
                d.path().to_str().unwrap(),
            ],
            Duration::from_secs(60),
        )
    };
    // Without TLS the server refuses the user; with the wrong CA rowcast does.
    let out = run_master(&base);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the login"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_master(&format!(
        "{base}?ssl-mode=VERIFY_CA&ssl-ca={}",
        s(&other_ca)
    ));
    assert!(!out.status.success());
    let out = run_master(&format!("{base}?ssl-mode=VERIFY_CA"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs ssl-ca"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let url = format!("{base}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", s(&good_ca));
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &url,
        "--listen",
        &listen,
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    master.wait_listening(&listen);
    let _slave = Rowcast::slave(&listen, &replica, "tls");
    primary.sql("INSERT INTO e.t VALUES (2)");
    wait_caught_up(&primary, &replica, "tls");
    assert_same_table(&primary, &replica, "e.t");
    let encrypted =
        primary.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'secure'");
    assert!(
        encrypted.trim().parse::<u32>().unwrap() >= 1,
        "the master is connected as the REQUIRE SSL user"
    );
}
