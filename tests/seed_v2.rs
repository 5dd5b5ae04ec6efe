//! Seeding v2 under stress: a new slave copied table by table, in chunks
//! at exact binlog positions, while a load keeps writing to the primary
//! (inserts, updates, deletes, and updates that move primary keys between
//! the ranges being copied). Every test ends with the replica equal to the
//! primary, table by table and object by object.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// A thread running `round(i)` (SQL text) for i = 1, 2, ... on the server
/// at `port` until `stop` is set; `rounds` counts the rounds done. Every
/// statement must succeed.
struct Load {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, mut round: impl FnMut(u64) -> String + Send + 'static) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                // One transaction: a round rolled back by a deadlock goes
                // again whole.
                let sql = format!("START TRANSACTION; {} COMMIT;", round(i));
                let mut tries = 0;
                while let Err(e) = sql_at(port, &sql) {
                    tries += 1;
                    if !(e.contains("ERROR 1213") || e.contains("ERROR 1205")) || tries > 5 {
                        panic!("load round {i} failed: {e}\n{sql}");
                    }
                }
                r.store(i, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Load {
            stop,
            rounds,
            thread: Some(thread),
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::SeqCst)
    }

    /// Stops the load; returns how many rounds it ran.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the load panicked");
        self.rounds()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn count(db: &MariaDb, table: &str) -> u64 {
    db.try_sql(&format!("SELECT COUNT(*) FROM {}", quoted(table)))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the replica's `table` has at least `n` rows while the seed
/// is still going on: proof the load runs during the seed.
fn wait_mid_seed(replica: &MariaDb, name: &str, table: &str, n: u64) {
    let ok = wait_until(CONVERGE, || count(replica, table) >= n);
    assert!(ok, "{table} never reached {n} rows on the replica");
    assert!(
        !seed_done(replica, name),
        "the seed was already over at {n} rows of {table}: the test seeds too little"
    );
}

/// Waits until the seed is complete; fails at once (with its log) if the
/// slave exits first.
fn seeded(slave: &mut Rowcast, replica: &MariaDb, name: &str) {
    let ok = wait_until(CONVERGE, || {
        (seed_done(replica, name) && !slave_position(replica, name).is_empty())
            || !slave.is_running()
    }) && slave.is_running()
        && wait_seeded(replica, name);
    assert!(
        ok && slave.is_running(),
        "seed did not complete; the slave's log:\n{}",
        strip_ansi(&slave.log_text())
    );
}

fn master(primary: &MariaDb, data: &Path, listen: &str, extra: &[&str]) -> Rowcast {
    Rowcast::master_with(primary, data, listen, extra)
}

/// `big.t`: a ranged table (integer key) of `rows` rows, `big.nokey` (a
/// whole table without key) and `small.kv` (a string key).
fn standard_data(primary: &MariaDb, rows: u64) {
    primary.sql(&format!(
        "CREATE DATABASE big;
         CREATE TABLE big.t (id INT PRIMARY KEY, name VARCHAR(100), amount DECIMAL(12,2), pad CHAR(40) DEFAULT 'p');
         INSERT INTO big.t (id, name, amount) SELECT seq, CONCAT('row ', MD5(seq)), seq / 7 FROM big.seq_1_to_{rows};
         CREATE TABLE big.nokey (n INT, s VARCHAR(10));
         INSERT INTO big.nokey SELECT seq % 1000, 'dup' FROM big.seq_1_to_20000;
         CREATE DATABASE small;
         CREATE TABLE small.kv (k VARCHAR(20), v INT, PRIMARY KEY (k));
         INSERT INTO small.kv VALUES ('a', 1), ('b', 2);
         CREATE VIEW small.v AS SELECT k, v * 2 AS twice FROM small.kv;"
    ));
}

/// A round of writes on the standard data: keys moved up out of their
/// range (`id + 500000`: above every key there was), down into the first range (negative), rows
/// inserted above every range, updated and deleted all over.
fn standard_round(i: u64, rows: u64) -> String {
    let pick = |m: u64| (i * m) % rows + 1;
    format!(
        "INSERT INTO big.t (id, name, amount) VALUES ({new}, 'new {i}', {i}.5);
         UPDATE big.t SET amount = amount + 1, name = CONCAT(name, '+') WHERE id = {upd};
         DELETE FROM big.t WHERE id = {del};
         UPDATE big.t SET id = id + 500000 WHERE id = {mv};
         UPDATE big.t SET id = -id WHERE id = {neg};
         UPDATE big.t SET id = {back} WHERE id = {moved};
         INSERT INTO big.nokey VALUES ({i}, 'x');
         UPDATE big.nokey SET s = 'upd' WHERE n = {n} LIMIT 1;
         DELETE FROM big.nokey WHERE n = {dn} LIMIT 1;
         REPLACE INTO small.kv VALUES ('k{m}', {i});",
        new = 1_000_000 + i,
        upd = pick(7919),
        del = pick(104_729),
        mv = pick(15_485_863),
        neg = pick(32_452_843),
        // A key moved up three rounds ago comes back down to a free key.
        moved = (i.saturating_sub(3) * 15_485_863) % rows + 1 + 500_000,
        back = 2_000_000 + i,
        n = i % 1000,
        dn = (i * 7) % 1000,
        m = i % 50
    )
}

fn assert_standard_equal(primary: &MariaDb, replica: &MariaDb) {
    for t in ["big.t", "big.nokey", "small.kv"] {
        assert_same_table(primary, replica, t);
    }
    for db in ["big", "small"] {
        assert_same_objects(primary, replica, db);
    }
}

/// The standard data and load seeded by a slave with `slave_extra`, from a
/// master with `master_extra`: equal at the end.
fn seed_standard_under_load(rows: u64, master_extra: &[&str], slave_extra: &[&str]) -> Rowcast {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    standard_data(&primary, rows);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = master(&primary, data.path(), &listen, master_extra);
    let load = Load::start(primary.port, move |i| standard_round(i, rows));
    std::thread::sleep(Duration::from_millis(300));
    let mut slave = Rowcast::slave_with(&listen, &replica, "s", slave_extra);
    wait_mid_seed(&replica, "s", "big.t", rows / 4);
    let during = load.rounds();
    seeded(&mut slave, &replica, "s");
    let rounds = load.finish();
    assert!(
        rounds > during + 3,
        "the load ran while the seed went on ({during} -> {rounds} rounds)"
    );
    wait_caught_up(&primary, &replica, "s");
    assert_standard_equal(&primary, &replica);
    master
}

/// Parents and children in foreign keys with ON DELETE / ON UPDATE
/// CASCADE and SET NULL, parents deleted and their keys changed while they
/// are copied: the replica's own cascades reach the same rows.
#[test]
fn foreign_key_cascades_during_the_seed() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE fk;
         CREATE TABLE fk.p (id INT PRIMARY KEY, v INT, tag VARCHAR(20), UNIQUE KEY (tag));
         CREATE TABLE fk.c (id INT PRIMARY KEY, pid INT, v INT, KEY (pid),
           FOREIGN KEY (pid) REFERENCES fk.p (id) ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE TABLE fk.g (id INT PRIMARY KEY, cid INT, KEY (cid),
           FOREIGN KEY (cid) REFERENCES fk.c (id) ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE TABLE fk.n (id INT PRIMARY KEY, pid INT, KEY (pid),
           FOREIGN KEY (pid) REFERENCES fk.p (id) ON DELETE SET NULL ON UPDATE SET NULL);
         INSERT INTO fk.p SELECT seq, seq, CONCAT('t', seq) FROM fk.seq_1_to_30000;
         INSERT INTO fk.c SELECT seq, (seq % 30000) + 1, seq FROM fk.seq_1_to_90000;
         INSERT INTO fk.g SELECT seq, seq FROM fk.seq_1_to_40000;
         INSERT INTO fk.n SELECT seq, seq FROM fk.seq_1_to_20000;",
    );
    standard_data(&primary, 100_000);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master(&primary, data.path(), &listen, &[]);
    let load = Load::start(primary.port, |i| {
        let pick = |m: u64| (i * m) % 30_000 + 1;
        format!(
            "DELETE FROM fk.p WHERE id = {del};
             UPDATE fk.p SET id = id + 1000000, tag = CONCAT('m', id) WHERE id = {mv};
             INSERT INTO fk.p VALUES ({np}, {i}, NULL);
             INSERT INTO fk.c VALUES ({nc}, {np}, {i});
             INSERT INTO fk.g VALUES ({nc}, {nc});
             UPDATE fk.c SET id = id + 500000 WHERE id = {cmv};
             UPDATE fk.c SET pid = {np} WHERE id = {cre};
             DELETE FROM fk.c WHERE id = {cdel};
             UPDATE fk.n SET pid = {np} WHERE id = {nre};
             {std}",
            del = pick(7919),
            mv = pick(104_729),
            np = 2_000_000 + i,
            nc = 3_000_000 + i,
            cmv = (i * 15_485_863) % 90_000 + 1,
            cre = (i * 32_452_843) % 90_000 + 1,
            cdel = (i * 49_979_687) % 90_000 + 1,
            nre = (i * 86_028_121) % 20_000 + 1,
            std = standard_round(i, 100_000),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_mid_seed(&replica, "s", "big.t", 10_000);
    seeded(&mut slave, &replica, "s");
    let rounds = load.finish();
    assert!(rounds > 5, "the load ran during the seed ({rounds} rounds)");
    // The cascades really happened on the primary.
    assert!(count(&primary, "fk.c") < 90_000 + rounds);
    wait_caught_up(&primary, &replica, "s");
    for t in ["fk.p", "fk.c", "fk.g", "fk.n"] {
        assert_same_table(&primary, &replica, t);
    }
    assert_same_objects(&primary, &replica, "fk");
    assert_standard_equal(&primary, &replica);
}

/// MySQL's way to tie a read view to a position (a brief LOCK TABLES READ
/// from a second connection), exercised on MariaDB with writes going on.
#[test]
fn seed_point_by_table_lock_under_load() {
    let master = seed_standard_under_load(150_000, &["--seed-point", "lock"], &[]);
    let log = strip_ansi(&master.log_text());
    assert!(log.contains("ranged=1"), "big.t was read by ranges:\n{log}");
}

/// Four connections on both sides.
#[test]
fn four_snapshot_threads_on_both_sides() {
    let master = seed_standard_under_load(
        200_000,
        &["--snapshot-threads", "4"],
        &["--snapshot-threads", "4"],
    );
    let log = strip_ansi(&master.log_text());
    // Four ranges of big.t, one each for the two whole tables.
    assert!(
        log.contains("ranged=1 ranges=6"),
        "big.t in 4 ranges:\n{log}"
    );
}

/// Keys of every shape: none, a UNIQUE key only, a composite key, a
/// BIGINT UNSIGNED key with values above 2^63, negative keys, small
/// integer types.
#[test]
fn every_kind_of_key_under_load() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE k;
         CREATE TABLE k.nopk (a INT, b VARCHAR(20));
         INSERT INTO k.nopk SELECT seq % 5000, CONCAT('b', seq) FROM k.seq_1_to_30000;
         CREATE TABLE k.uniq (u INT NOT NULL, v INT, UNIQUE KEY (u));
         INSERT INTO k.uniq SELECT seq, seq FROM k.seq_1_to_30000;
         CREATE TABLE k.comp (a INT, b INT, v INT, PRIMARY KEY (a, b));
         INSERT INTO k.comp SELECT seq % 200, seq, seq FROM k.seq_1_to_40000;
         CREATE TABLE k.ubig (id BIGINT UNSIGNED PRIMARY KEY, v INT);
         INSERT INTO k.ubig SELECT seq, seq FROM k.seq_1_to_10;
         INSERT INTO k.ubig SELECT 9223372036854775808 + seq * 1000, seq FROM k.seq_0_to_59999;
         INSERT INTO k.ubig VALUES (18446744073709551615, -1), (18446744073709551614, -2);
         CREATE TABLE k.neg (id INT PRIMARY KEY, v INT);
         INSERT INTO k.neg SELECT CAST(seq AS SIGNED) - 40000, seq FROM k.seq_1_to_60000;
         CREATE TABLE k.sbig (id BIGINT PRIMARY KEY, v INT);
         INSERT INTO k.sbig SELECT -9223372036854775808 + CAST(seq AS SIGNED) * 1000, seq FROM k.seq_0_to_29999;
         INSERT INTO k.sbig VALUES (9223372036854775807, 1), (0, 0);
         CREATE TABLE k.tiny (id TINYINT PRIMARY KEY, v INT);
         INSERT INTO k.tiny SELECT CAST(seq AS SIGNED) - 128, seq FROM k.seq_0_to_200;
         CREATE TABLE k.med (id MEDIUMINT UNSIGNED PRIMARY KEY, v INT);
         INSERT INTO k.med SELECT seq * 500, seq FROM k.seq_1_to_30000;",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master(&primary, data.path(), &listen, &[]);
    let load = Load::start(primary.port, |i| {
        let top = 9_223_372_036_854_775_808u64;
        let u = |m: u64| top + ((i * m) % 60_000) * 1000;
        format!(
            "INSERT INTO k.nopk VALUES ({i}, 'new');
             UPDATE k.nopk SET b = CONCAT(b, '+') WHERE a = {na} LIMIT 2;
             DELETE FROM k.nopk WHERE a = {nd} LIMIT 1;
             UPDATE k.uniq SET u = u + 100000, v = v + 1 WHERE u = {um};
             DELETE FROM k.uniq WHERE u = {ud};
             INSERT INTO k.uniq VALUES ({un}, {i});
             UPDATE k.comp SET a = a + 1000 WHERE a = {ca} AND b = {cb};
             DELETE FROM k.comp WHERE a = {ca2} AND b = {cb2};
             UPDATE k.ubig SET id = id + 150007 WHERE id = {ub1};
             UPDATE k.ubig SET id = {i} + 1000 WHERE id = {ub2};
             UPDATE k.ubig SET v = v + 1 WHERE id = {ub3};
             DELETE FROM k.ubig WHERE id = {ub4};
             UPDATE k.ubig SET v = v + 1 WHERE id >= 18446744073709551614;
             INSERT INTO k.ubig VALUES (18446744073709551613 - {i}, {i});
             UPDATE k.neg SET id = id - 150000 WHERE id = {n1};
             UPDATE k.neg SET id = id + 150000 WHERE id = {n2};
             UPDATE k.neg SET v = -v WHERE id = {n3};
             DELETE FROM k.neg WHERE id = {n4};
             INSERT INTO k.neg VALUES ({nn}, {i});
             UPDATE k.sbig SET id = -id WHERE id = {s1};
             UPDATE k.sbig SET v = v + 1 WHERE id IN (9223372036854775807, 0, -9223372036854775808);
             UPDATE k.tiny SET v = v + 1 WHERE id = {t1};
             UPDATE k.med SET id = id + 1 WHERE id = {m1};
             INSERT IGNORE INTO k.med VALUES (16777215 - {i}, {i});",
            na = (i * 31) % 5000,
            nd = (i * 17) % 5000,
            um = (i * 7919) % 30_000 + 1,
            ud = (i * 104_729) % 30_000 + 1,
            un = 1_000_000 + i,
            ca = ((i * 7919) % 40_000 + 1) % 200,
            cb = (i * 7919) % 40_000 + 1,
            ca2 = ((i * 104_729) % 40_000 + 1) % 200,
            cb2 = (i * 104_729) % 40_000 + 1,
            ub1 = u(7919),
            ub2 = u(104_729),
            ub3 = u(15_485_863),
            ub4 = u(32_452_843),
            n1 = ((i * 7919) % 60_000) as i64 - 39_999,
            n2 = ((i * 104_729) % 60_000) as i64 - 39_999,
            n3 = ((i * 15_485_863) % 60_000) as i64 - 39_999,
            n4 = ((i * 32_452_843) % 60_000) as i64 - 39_999,
            nn = -1_000_000 - (i as i64),
            s1 = -9_223_372_036_854_775_808i64 + (((i * 7919) % 29_999) as i64 + 1) * 1000,
            t1 = (i % 200) as i64 - 128,
            m1 = ((i * 7919) % 30_000 + 1) * 500,
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    seeded(&mut slave, &replica, "s");
    let rounds = load.finish();
    assert!(rounds > 3, "the load ran during the seed ({rounds} rounds)");
    wait_caught_up(&primary, &replica, "s");
    for t in [
        "k.nopk", "k.uniq", "k.comp", "k.ubig", "k.neg", "k.sbig", "k.tiny", "k.med",
    ] {
        assert_same_table(&primary, &replica, t);
    }
    assert_same_objects(&primary, &replica, "k");
}

/// `xa.t`: 250 000 rows with an integer key, and a load on it that never
/// touches a key that is a multiple of 1000 (those are the XA
/// transactions'), plus the standard tables' load.
fn xa_data(primary: &MariaDb) {
    primary.sql(
        "CREATE DATABASE xa;
         CREATE TABLE xa.t (id INT PRIMARY KEY, v INT, s VARCHAR(40));
         INSERT INTO xa.t SELECT seq, seq, MD5(seq) FROM xa.seq_1_to_250000;",
    );
}

fn xa_round(i: u64) -> String {
    let pick = |m: u64| {
        let k = (i * m) % 250_000 + 1;
        if k.is_multiple_of(1000) {
            k + 1
        } else {
            k
        }
    };
    format!(
        "INSERT INTO xa.t VALUES ({new}, {i}, 'new');
         UPDATE xa.t SET v = v + 1 WHERE id = {upd};
         DELETE FROM xa.t WHERE id = {del};
         UPDATE xa.t SET id = id + 1000000 WHERE id = {mv};
         UPDATE xa.t SET id = -id WHERE id = {neg};",
        new = 2_000_001 + i * 1000,
        upd = pick(7919),
        del = pick(104_729),
        mv = pick(15_485_863),
        neg = pick(32_452_843),
    )
}

/// The statements of an XA transaction touching keys `a` and `b` (both
/// loaded already) and `c` and `d` (not yet): updates, deletes, inserts
/// and key moves between loaded and unloaded ranges.
fn xa_body(xid: &str, a: u64, b: u64, c: u64, d: u64, new: u64) -> String {
    format!(
        "XA START '{xid}';
         UPDATE xa.t SET v = -1, s = '{xid}' WHERE id IN ({a}, {c});
         DELETE FROM xa.t WHERE id IN ({b}, {d});
         INSERT INTO xa.t VALUES ({new}, 0, '{xid}');
         UPDATE xa.t SET id = {new} + 1 WHERE id = {a};
         UPDATE xa.t SET id = -{c} WHERE id = {c};
         XA END '{xid}'; XA PREPARE '{xid}';"
    )
}

/// XA transactions prepared while their table is copied: one committed
/// while the copy goes on, one after every chunk of the table is loaded,
/// one rolled back. Each one's rows are on the replica exactly once.
#[test]
fn xa_prepared_during_the_seed_committed_after_its_chunks() {
    xa_during_the_seed(&[]);
}

/// The same with MySQL's way of tying a read to a position (LOCK TABLES
/// READ, which a prepared XA transaction's metadata lock must not hold up
/// until its XA COMMIT).
#[test]
fn xa_prepared_during_a_seed_by_table_locks() {
    xa_during_the_seed(&["--seed-point", "lock"]);
}

fn xa_during_the_seed(master_extra: &[&str]) {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    xa_data(&primary);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master(&primary, data.path(), &listen, master_extra);
    let load = Load::start(primary.port, xa_round);
    std::thread::sleep(Duration::from_millis(300));
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    // Two ranges: [.., 125001) and [125001, ..); 20 000 rows in, each has
    // its first ~10 000 keys.
    wait_mid_seed(&replica, "s", "xa.t", 20_000);
    primary.sql(&xa_body("mid", 1000, 2000, 100_000, 240_000, 9_000_000));
    primary.sql(&xa_body("late", 3000, 126_000, 110_000, 200_000, 9_100_000));
    primary.sql(&xa_body("gone", 4000, 127_000, 111_000, 201_000, 9_200_000));
    assert!(
        count(&replica, "xa.t") < 200_000,
        "the XA transactions were prepared during the copy"
    );
    primary.sql("XA COMMIT 'mid'");
    primary.sql("XA ROLLBACK 'gone'");
    seeded(&mut slave, &replica, "s");
    // Every chunk is loaded and the stream has passed them.
    primary.sql("XA COMMIT 'late'");
    let rounds = load.finish();
    assert!(rounds > 3, "the load ran during the seed ({rounds} rounds)");
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "xa.t");
    let mine = "SELECT id, v, s FROM xa.t WHERE s IN ('mid', 'late', 'gone') ORDER BY id";
    assert_eq!(primary.sql(mine), replica.sql(mine));
    assert_eq!(
        replica
            .sql("SELECT COUNT(*) FROM xa.t WHERE s IN ('mid', 'late')")
            .trim(),
        "6",
        "each committed XA transaction's rows once"
    );
}

/// A table's columns added (one of them first) and dropped on the primary
/// while its chunks are read and loaded.
fn alter_during_the_seed(primary: MariaDb) {
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE alt;
         CREATE TABLE alt.t (id INT PRIMARY KEY, v INT, pad VARCHAR(40), n INT DEFAULT 5);
         INSERT INTO alt.t SELECT seq, seq, MD5(seq), seq FROM alt.seq_1_to_250000;",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master(&primary, data.path(), &listen, &[]);
    let load = Load::start(primary.port, |i| {
        let pick = |m: u64| (i * m) % 250_000 + 1;
        format!(
            "INSERT INTO alt.t (id, v) VALUES ({new}, {i});
             UPDATE alt.t SET v = v + 1 WHERE id = {upd};
             DELETE FROM alt.t WHERE id = {del};
             UPDATE alt.t SET id = id + 1000000 WHERE id = {mv};
             UPDATE alt.t SET id = -id WHERE id = {neg};",
            new = 2_000_000 + i,
            upd = pick(7919),
            del = pick(104_729),
            mv = pick(15_485_863),
            neg = pick(32_452_843),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_mid_seed(&replica, "s", "alt.t", 20_000);
    primary.sql("ALTER TABLE alt.t ADD COLUMN extra VARCHAR(20) NOT NULL DEFAULT 'dflt'");
    primary.sql("UPDATE alt.t SET extra = 'set' WHERE id % 1000 = 7");
    wait_mid_seed(&replica, "s", "alt.t", 60_000);
    primary.sql("ALTER TABLE alt.t DROP COLUMN pad");
    primary.sql("ALTER TABLE alt.t ADD COLUMN first_col INT NOT NULL DEFAULT 3 FIRST");
    primary.sql("UPDATE alt.t SET first_col = id % 10 WHERE id % 1000 = 9");
    wait_mid_seed(&replica, "s", "alt.t", 100_000);
    primary.sql("ALTER TABLE alt.t DROP COLUMN n, ADD COLUMN w BIGINT AFTER id");
    seeded(&mut slave, &replica, "s");
    let rounds = load.finish();
    assert!(rounds > 3, "the load ran during the seed ({rounds} rounds)");
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "alt.t");
    assert_same_objects(&primary, &replica, "alt");
}

#[test]
fn columns_added_and_dropped_while_a_ranged_table_is_copied() {
    alter_during_the_seed(MariaDb::primary());
}

/// The same from a primary that logs no column names: the slave finds the
/// key by its position, which a column added first moves.
#[test]
fn columns_added_first_while_copied_from_a_primary_without_column_names() {
    alter_during_the_seed(MariaDb::start_with(&[
        "--log-bin=binlog",
        "--binlog_format=ROW",
        "--binlog_row_image=FULL",
        "--binlog-row-metadata=MINIMAL",
    ]));
}

/// The master killed mid-seed and started again on its data dir: the
/// slave reconnects, goes on with its seed and converges.
#[test]
fn master_killed_mid_seed_and_restarted() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let rows = 300_000;
    standard_data(&primary, rows);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut m = master(&primary, data.path(), &listen, &[]);
    let load = Load::start(primary.port, move |i| standard_round(i, rows));
    std::thread::sleep(Duration::from_millis(300));
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_mid_seed(&replica, "s", "big.t", 60_000);
    m.kill9();
    let loaded = count(&replica, "big.t");
    std::thread::sleep(Duration::from_secs(2));
    let _m = master(&primary, data.path(), &listen, &[]);
    seeded(&mut slave, &replica, "s");
    let rounds = load.finish();
    assert!(rounds > 5, "the load ran during the seed ({rounds} rounds)");
    assert!(loaded < rows, "killed mid-seed ({loaded} rows in)");
    wait_caught_up(&primary, &replica, "s");
    assert_standard_equal(&primary, &replica);
}

/// `r.t` (100 000 rows, integer key) and `r.s` (no key): the tables a
/// `--resync` copies again, and the round of writes on them.
fn resync_data(primary: &MariaDb, db: &str) {
    primary.sql(&format!(
        "CREATE DATABASE {db};
         CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT, s VARCHAR(40));
         INSERT INTO {db}.t SELECT seq, seq, MD5(seq) FROM {db}.seq_1_to_100000;
         CREATE TABLE {db}.s (a INT, b VARCHAR(20));
         INSERT INTO {db}.s SELECT seq % 3000, 'b' FROM {db}.seq_1_to_30000;"
    ));
}

fn resync_round(db: &str, i: u64) -> String {
    let pick = |m: u64| (i * m) % 100_000 + 1;
    format!(
        "INSERT INTO {db}.t VALUES ({new}, {i}, 'new');
         UPDATE {db}.t SET v = v + 1 WHERE id = {upd};
         DELETE FROM {db}.t WHERE id = {del};
         UPDATE {db}.t SET id = id + 150000 WHERE id = {mv};
         UPDATE {db}.t SET id = -id WHERE id = {neg};
         INSERT INTO {db}.s VALUES ({i}, 'new');
         UPDATE {db}.s SET b = 'upd' WHERE a = {sa} LIMIT 1;",
        new = 1_000_000 + i,
        upd = pick(7919),
        del = pick(104_729),
        mv = pick(15_485_863),
        neg = pick(32_452_843),
        sa = (i * 7) % 3000,
    )
}

/// Waits until the slave logs that it emptied `table` for `--resync`,
/// then until that copy is complete.
fn wait_resynced(slave: &mut Rowcast, replica: &MariaDb, name: &str) {
    let began = wait_until(CONVERGE, || {
        strip_ansi(&slave.log_text()).contains("table emptied; copying it again")
            || !slave.is_running()
    });
    let began = began && slave.is_running();
    assert!(
        began,
        "the slave never began the resync:\n{}",
        slave.log_text()
    );
    assert!(wait_seeded(replica, name), "the resync did not complete");
}

/// A table that diverged on the replica while its slave was stopped is
/// copied again with `--resync` while writes go on to it and to the other
/// tables, which keep streaming.
#[test]
fn resync_repairs_a_diverged_table_while_the_others_stream() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    resync_data(&primary, "r");
    standard_data(&primary, 100_000);
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master(&primary, data.path(), &listen, &[]);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_caught_up(&primary, &replica, "s");
    slave.stop();
    replica.sql(
        "DELETE FROM r.t WHERE id % 7 = 0; UPDATE r.t SET v = -v WHERE id % 11 = 0;
         INSERT INTO r.t VALUES (5000000, 1, 'stray'), (-5000000, 1, 'stray');
         DELETE FROM r.s WHERE a % 5 = 0; INSERT INTO r.s VALUES (-1, 'stray');",
    );
    let load = Load::start(primary.port, |i| {
        format!("{} {}", resync_round("r", i), standard_round(i, 100_000))
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut slave = Rowcast::slave_with(
        &listen,
        &replica,
        "s",
        &["--resync", "r.t", "--resync", "r.s"],
    );
    wait_resynced(&mut slave, &replica, "s");
    // Meanwhile the other tables went on streaming.
    let before = replica.sql("SELECT MAX(id) FROM big.t WHERE id > 1000000");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        wait_until(CONVERGE, || replica
            .sql("SELECT MAX(id) FROM big.t WHERE id > 1000000")
            != before),
        "big.t stopped streaming"
    );
    let rounds = load.finish();
    assert!(
        rounds > 5,
        "the load ran during the resync ({rounds} rounds)"
    );
    wait_caught_up(&primary, &replica, "s");
    for t in ["r.t", "r.s"] {
        assert_same_table(&primary, &replica, t);
    }
    assert_same_objects(&primary, &replica, "r");
    assert_standard_equal(&primary, &replica);
    let log = strip_ansi(&slave.log_text());
    assert!(
        !log.contains("seeding: the tables are created empty"),
        "a resync does not seed everything again:\n{log}"
    );
}

/// Tables the master's filter kept out, then let in by a master
/// restarted with the `wide` filter: `--resync` creates them on the
/// replica and copies them while they are written to.
fn resync_after_the_filter_widens(narrow: &[&str], wide: &[&str], tables: &[&str]) {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    resync_data(&primary, "late");
    standard_data(&primary, 50_000);
    primary.sql(
        "CREATE TABLE big.hidden (id BIGINT PRIMARY KEY, v INT);
         INSERT INTO big.hidden SELECT seq, seq FROM big.seq_1_to_60000;",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let mut m = master(&primary, data.path(), &listen, narrow);
    let load = Load::start(primary.port, |i| {
        format!(
            "{} {} UPDATE big.hidden SET id = id + 100000 WHERE id = {h};
             INSERT INTO big.hidden VALUES ({n}, {i});",
            resync_round("late", i),
            standard_round(i, 50_000),
            h = (i * 7919) % 60_000 + 1,
            n = 1_000_000 + i,
        )
    });
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    seeded(&mut slave, &replica, "s");
    for t in tables {
        assert!(
            replica
                .try_sql(&format!("SELECT 1 FROM {t} LIMIT 1"))
                .is_err(),
            "{t} is outside the filter"
        );
    }
    slave.stop();
    m.stop();
    let _m = master(&primary, data.path(), &listen, wide);
    let mut args = Vec::new();
    for t in tables {
        args.extend(["--resync", t]);
    }
    let mut slave = Rowcast::slave_with(&listen, &replica, "s", &args);
    wait_resynced(&mut slave, &replica, "s");
    let rounds = load.finish();
    assert!(
        rounds > 5,
        "the load ran during the resync ({rounds} rounds)"
    );
    wait_caught_up(&primary, &replica, "s");
    for t in tables {
        assert_same_table(&primary, &replica, t);
    }
    assert_standard_equal(&primary, &replica);
}

/// A whole database outside the filter: the replica lacks the database
/// too.
#[test]
fn resync_brings_in_a_database_a_wider_filter_lets_in() {
    resync_after_the_filter_widens(
        &["--include", "big", "--include", "small"],
        &[
            "--include",
            "big",
            "--include",
            "small",
            "--include",
            "late",
        ],
        &["late.t", "late.s"],
    );
}

/// One table excluded from a replicated database.
#[test]
fn resync_brings_in_a_table_no_longer_excluded() {
    resync_after_the_filter_widens(
        &["--exclude", "big.hidden", "--exclude", "late"],
        &["--exclude", "late"],
        &["big.hidden"],
    );
}

/// The key column of a table being copied renamed on the primary: the
/// slave stops at the change naming `--resync` (it cannot tell which rows
/// the copy holds by a key it no longer sees), and `--resync` of that
/// table copies it again by its new key while writes go on.
#[test]
fn a_key_column_renamed_while_copied_stops_the_slave_and_resync_repairs_it() {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    primary.sql(
        "CREATE DATABASE ren;
         CREATE TABLE ren.t (id INT PRIMARY KEY, v INT);
         INSERT INTO ren.t SELECT seq, seq FROM ren.seq_1_to_200000;",
    );
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let _master = master(&primary, data.path(), &listen, &[]);
    let mut slave = Rowcast::slave(&listen, &replica, "s");
    wait_mid_seed(&replica, "s", "ren.t", 20_000);
    primary.sql("ALTER TABLE ren.t CHANGE id key_id INT NOT NULL");
    primary.sql("UPDATE ren.t SET v = -v WHERE key_id % 100 = 1");
    assert!(
        wait_until(CONVERGE, || !slave.is_running()),
        "the slave went on without the key"
    );
    let log = strip_ansi(&slave.log_text());
    assert!(
        log.contains("key column `id` of ren.t is gone") && log.contains("--resync ren.t"),
        "{log}"
    );
    let load = Load::start(primary.port, |i| {
        format!(
            "UPDATE ren.t SET v = v + 1 WHERE key_id = {};",
            (i * 7919) % 200_000 + 1
        )
    });
    let mut slave = Rowcast::slave_with(&listen, &replica, "s", &["--resync", "ren.t"]);
    wait_resynced(&mut slave, &replica, "s");
    load.finish();
    wait_caught_up(&primary, &replica, "s");
    assert_same_table(&primary, &replica, "ren.t");
    assert_same_objects(&primary, &replica, "ren");
}
