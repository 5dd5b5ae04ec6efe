//! Operators' tools against real servers: `status` (lag, failed slaves),
//! `show` (data with its freshness) and Prometheus metrics.

mod support;

use std::time::Duration;

use support::*;

fn slave<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}

#[test]
fn status_shows_lag_and_failures_and_metrics_count() {
    let primary = MariaDb::primary();
    let fast = MariaDb::replica();
    let slow = MariaDb::replica();
    primary.sql("CREATE DATABASE o; CREATE TABLE o.t (id INT PRIMARY KEY, v INT); INSERT INTO o.t VALUES (1, 1)");
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mport = listen_addr();
    let dir = data.path().to_str().unwrap();
    let mut master = Rowcast::spawn(&[
        "master",
        "--source",
        &primary.url(),
        "--listen",
        &listen,
        "--data-dir",
        dir,
        "--metrics",
        &mport,
    ]);
    master.wait_listening(&listen);
    let sport = listen_addr();
    let _fast = Rowcast::spawn(&[
        "slave",
        "--master",
        &listen,
        "--target",
        &fast.url(),
        "--name",
        "fast",
        "--metrics",
        &sport,
    ]);
    let mut slow_slave = Rowcast::slave(&listen, &slow, "slow");
    primary.sql("INSERT INTO o.t VALUES (2, 2)");
    wait_caught_up(&primary, &fast, "fast");
    wait_caught_up(&primary, &slow, "slow");

    let s = status_json(&listen);
    assert!(s["primary_position"]["file"].is_string());
    assert_eq!(slave(&s, "fast")["state"], "streaming");
    assert_eq!(slave(&s, "fast")["lag_transactions"], 0);

    // Block the slow replica's table: its slave falls behind.
    let lock = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", "-uroot"])
        .arg(format!("-P{}", slow.port))
        .args(["-e", "LOCK TABLES o.t WRITE; SELECT SLEEP(8);"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 3..8 {
        primary.sql(&format!("INSERT INTO o.t VALUES ({i}, {i})"));
    }
    wait_caught_up(&primary, &fast, "fast");
    let lagging = wait_until(Duration::from_secs(7), || {
        let s = status_json(&listen);
        let sl = slave(&s, "slow");
        sl["lag_transactions"].as_u64().unwrap() > 0 && sl["lag_seconds"].as_u64().unwrap() > 0
    });
    assert!(
        lagging,
        "a blocked slave shows lag: {}",
        status_json(&listen)
    );
    let text = run_rowcast(&["status", "--master", &listen], Duration::from_secs(30));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("SLAVE") && text.contains("slow") && text.contains("streaming"),
        "{text}"
    );
    let mut lock = lock;
    let _ = lock.wait();
    wait_caught_up(&primary, &slow, "slow");

    // A diverged replica stops its slave; status names the error.
    slow.sql("DELETE FROM o.t WHERE id = 1");
    primary.sql("UPDATE o.t SET v = 10 WHERE id = 1");
    assert!(wait_until(CONVERGE, || !slow_slave.is_running()));
    let s = status_json(&listen);
    let sl = slave(&s, "slow");
    assert_eq!(sl["state"], "failed", "{s}");
    assert!(
        sl["last_error"].as_str().unwrap().contains("diverged"),
        "{s}"
    );

    // Metrics count what went through.
    wait_caught_up(&primary, &fast, "fast");
    let m = http_get(&mport);
    assert!(metric(&m, "rowcast_log_transactions_total") >= 7, "{m}");
    assert!(metric(&m, "rowcast_slaves_connected") >= 1, "{m}");
    // Per-slave series, labelled with the slave's name.
    let mut m = String::new();
    assert!(
        wait_until(CONVERGE, || {
            m = http_get(&mport);
            m.contains(r#"rowcast_slave_connected{role="master",slave="fast"} 1"#)
                && m.contains(r#"rowcast_slave_connected{role="master",slave="slow"} 0"#)
                && m.contains(r#"rowcast_slave_stalled{role="master",slave="fast"} 0"#)
        }),
        "{m}"
    );
    let m = http_get(&sport);
    assert!(metric(&m, "rowcast_applied_transactions_total") >= 6, "{m}");
    assert!(metric(&m, "rowcast_snapshot_rows_total") >= 1, "{m}");
}

#[test]
fn show_lists_databases_tables_and_rows_with_their_freshness() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(6,2));
         INSERT INTO shop.items VALUES (1, 'apple', 1.25), (2, 'pear', 2.50), (3, 'plum', NULL);",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = Rowcast::master(&primary, data.path(), &listen);
    let _slave = Rowcast::slave(&listen, &replica, "s");
    primary.sql("UPDATE shop.items SET price = 3.00 WHERE id = 2");
    wait_caught_up(&primary, &replica, "s");
    let show = |args: &[&str]| {
        let url = replica.url();
        let mut a = vec!["show", "--target", &url];
        a.extend_from_slice(args);
        let out = run_rowcast(&a, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pos = slave_position(&replica, "s");
    let dbs = show(&[]);
    assert!(
        dbs.contains(&format!("as of source position {pos}")),
        "{dbs}"
    );
    assert!(dbs.contains("shop") && !dbs.contains("mysql "), "{dbs}");
    let tables = show(&["shop"]);
    assert!(
        tables
            .lines()
            .any(|l| l.contains("items") && l.trim_end().ends_with('3')),
        "{tables}"
    );
    let rows = show(&["shop.items", "--where", "price > 2", "--limit", "10"]);
    assert!(
        rows.contains("pear") && rows.contains("3.00") && !rows.contains("apple"),
        "{rows}"
    );
    assert!(rows.contains("(1 row(s))"), "{rows}");
}
