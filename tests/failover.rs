//! Failover: two MariaDB servers with native GTID replication between
//! them. The master follows the first; the first dies and the second is
//! promoted; the master, pointed at the second, continues from the last
//! GTID it logged, and the slave ends equal with nothing lost or repeated.

mod support;

use support::*;

fn insert(db: &MariaDb, from: u32, to: u32) {
    let sql: String = (from..=to)
        .map(|n| format!("INSERT INTO f.log VALUES ({n}, 'row {n}');"))
        .collect();
    db.sql(&sql);
}

fn gtid_caught_up(primary: &MariaDb, replica: &MariaDb) {
    let target = primary.sql("SELECT @@gtid_binlog_pos").trim().to_string();
    let ok = wait_until(CONVERGE, || {
        replica.sql("SELECT @@gtid_slave_pos").trim() == target
    });
    assert!(ok, "native replica did not reach {target}");
}

#[test]
fn master_follows_a_promoted_replica_by_gtid() {
    let mut a = MariaDb::primary();
    let b = MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        "--binlog_row_metadata=FULL",
        "--log-slave-updates",
    ]);
    let replica = MariaDb::replica();
    a.sql("CREATE DATABASE f; CREATE TABLE f.log (n INT, pad VARCHAR(20))");
    b.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', MASTER_PASSWORD='', \
         MASTER_USE_GTID=slave_pos; START SLAVE;",
        a.port
    ));
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut master = Rowcast::master(&a, data.path(), &listen);
    let _slave = Rowcast::slave(&listen, &replica, "s");
    insert(&a, 1, 100);
    wait_caught_up(&a, &replica, "s");
    gtid_caught_up(&a, &b);

    // The master stops; the primary takes more writes, which reach the
    // native replica only; then the primary dies and the replica is
    // promoted.
    master.stop();
    insert(&a, 101, 150);
    gtid_caught_up(&a, &b);
    a.stop();
    b.sql("STOP SLAVE; RESET SLAVE ALL;");

    let master = Rowcast::master(&b, data.path(), &listen);
    insert(&b, 151, 200);
    wait_caught_up(&b, &replica, "s");
    let dupes = replica.sql("SELECT n, COUNT(*) FROM f.log GROUP BY n HAVING COUNT(*) <> 1");
    assert_eq!(dupes, "", "nothing repeated");
    assert_eq!(
        replica
            .sql("SELECT COUNT(*), MIN(n), MAX(n) FROM f.log")
            .trim(),
        "200\t1\t200",
        "nothing lost"
    );
    assert_same_table(&b, &replica, "f.log");
    assert!(
        master.log_text().contains("the primary changed"),
        "{}",
        master.log_text()
    );
    let epoch = replica.sql("SELECT source_epoch FROM rowcast.checkpoint WHERE slave_name = 's'");
    assert_eq!(epoch.trim(), "1");
}
