//! Authentication between slave and master, and secrets kept out of logs.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn token_is_required_checked_and_never_sent() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY); INSERT INTO s.t VALUES (1)",
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = "correct horse battery staple 8c1f";
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, format!("{secret}\n")).unwrap();
    std::fs::write(&bad, "not the secret\n").unwrap();
    let data = dir.path().join("log");
    let listen = listen_addr();
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &primary.url(),
        "--listen",
        &listen,
        "--data-dir",
        data.to_str().unwrap(),
        "--token-file",
        good.to_str().unwrap(),
    ]);
    master.wait_listening(&listen);
    let url = replica.url();

    let out = run_rowcast(
        &[
            "slave", "--master", &listen, "--target", &url, "--name", "x",
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("requires a token") && err.contains("--token-file"),
        "{err}"
    );

    let out = run_rowcast(
        &[
            "slave",
            "--master",
            &listen,
            "--target",
            &url,
            "--name",
            "x",
            "--token-file",
            bad.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong token"), "{err}");
    assert!(master
        .log_text()
        .contains("refused a peer with a wrong or missing token"));
    assert!(
        master.log_text().contains("127.0.0.1:"),
        "the refused address is logged"
    );
    assert!(
        slave_position(&replica, "x").is_empty(),
        "a refused slave got nothing"
    );

    let _slave = Rowcast::spawn(&[
        "slave",
        "--master",
        &listen,
        "--target",
        &url,
        "--name",
        "ok",
        "--token-file",
        good.to_str().unwrap(),
    ]);
    primary.sql("INSERT INTO s.t VALUES (2)");
    wait_caught_up(&primary, &replica, "ok");
    assert_same_table(&primary, &replica, "s.t");

    let out = run_rowcast(&["status", "--master", &listen], Duration::from_secs(30));
    assert!(!out.status.success(), "status needs the token too");
    let out = run_rowcast(
        &[
            "status",
            "--master",
            &listen,
            "--token-file",
            good.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!master.log_text().contains(secret));
}

#[test]
fn passwords_stay_out_of_logs_and_errors() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let pw = "Pa55-w0rd-XYZ-7734";
    primary.sql(&format!(
        "CREATE USER repl@'%' IDENTIFIED BY '{pw}'; GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO repl@'%';
         CREATE DATABASE p; CREATE TABLE p.t (id INT PRIMARY KEY); INSERT INTO p.t VALUES (1);"
    ));
    replica.sql(&format!(
        "CREATE USER app@'%' IDENTIFIED BY '{pw}'; GRANT ALL ON *.* TO app@'%'"
    ));
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let src = primary.url_as("repl", pw);
    let dst = replica.url_as("app", pw);
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &src,
        "--listen",
        &listen,
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    master.wait_listening(&listen);
    let slave = Rowcast::spawn(&[
        "slave", "--master", &listen, "--target", &dst, "--name", "s",
    ]);
    primary.sql("INSERT INTO p.t VALUES (2)");
    wait_caught_up(&primary, &replica, "s");
    // An error path too: a wrong password for the same user.
    let other = tempfile::tempdir().unwrap();
    let out = run_rowcast(
        &[
            "master",
            "--source",
            &primary.url_as("repl", &format!("{pw}-wrong")),
            "--listen",
            &listen_addr(),
            "--data-dir",
            other.path().to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("refused the login"), "{err}");
    for text in [master.log_text(), slave.log_text(), err.into_owned()] {
        assert!(!text.contains(pw), "password leaked:\n{text}");
    }
}
