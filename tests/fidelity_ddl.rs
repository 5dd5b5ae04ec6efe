//! Statements the primary logged as text run on the replica as they ran on
//! the primary: in its session context (time zone, timestamp,
//! auto-increment settings...), with a default database the replica may
//! lack, ending with the error the primary logged them with; and a
//! statement retried after a restart is taken as applied only when it had
//! been.

mod support;

use support::*;

/// Fields drop in this order: the processes before their servers.
struct Setup {
    slave: Rowcast,
    _master: Rowcast,
    listen: String,
    _data: tempfile::TempDir,
    replica: MariaDb,
    primary: MariaDb,
}

/// A primary with `schema`, its master, and a replica whose slave `name`
/// was seeded while the primary was empty; caught up.
fn setup(name: &str, schema: &str) -> Setup {
    let primary = MariaDb::primary();
    let replica = MariaDb::replica();
    let data = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let master = Rowcast::master(&primary, data.path(), &listen);
    let slave = Rowcast::slave(&listen, &replica, name);
    wait_caught_up(&primary, &replica, name);
    primary.sql(schema);
    wait_caught_up(&primary, &replica, name);
    Setup {
        slave,
        _master: master,
        listen,
        _data: data,
        replica,
        primary,
    }
}

/// Every object of the user schemas: tables and columns, views, routines,
/// triggers, as one comparable text.
fn catalog(db: &MariaDb) -> String {
    db.sql(
        "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
           WHERE TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys','rowcast') \
           ORDER BY 1, 2; \
         SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IFNULL(COLUMN_DEFAULT,'-'), EXTRA \
           FROM information_schema.COLUMNS \
           WHERE TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys','rowcast') \
           ORDER BY 1, 2, ORDINAL_POSITION; \
         SELECT SCHEMA_NAME FROM information_schema.SCHEMATA \
           WHERE SCHEMA_NAME NOT IN ('mysql','information_schema','performance_schema','sys','rowcast') \
           ORDER BY 1",
    )
}

fn wait_stopped(slave: &mut Rowcast) {
    assert!(
        wait_until(CONVERGE, || !slave.is_running()),
        "the slave kept running:\n{}",
        slave.log_text()
    );
}

#[test]
fn ddl_runs_in_the_primarys_session_context() {
    let mut s = setup(
        "ctx",
        "CREATE DATABASE app;
         CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 10), (2, 20), (3, 30);
         CREATE TABLE app.n (v INT);
         INSERT INTO app.n VALUES (7), (8), (9);",
    );
    // The primary's session has its own time zone, a fixed timestamp with
    // microseconds, and auto-increment settings; each fills the existing
    // rows of an added column.
    let session = "SET time_zone = '+05:00', timestamp = 1000000000.123456; \
         ALTER TABLE app.t ADD COLUMN dt DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           ADD COLUMN ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           ADD COLUMN d DATE NOT NULL DEFAULT (CURRENT_DATE); \
         SET auto_increment_increment = 5, auto_increment_offset = 3; \
         ALTER TABLE app.n ADD COLUMN k INT NOT NULL AUTO_INCREMENT UNIQUE;";
    s.primary.sql(session);
    wait_caught_up(&s.primary, &s.replica, "ctx");
    assert_eq!(
        s.primary.sql("SELECT DISTINCT dt FROM app.t").trim(),
        "2001-09-09 06:46:40.123456",
        "the primary itself did not fill the rows as the test expects"
    );
    assert_eq!(
        s.primary
            .sql("SELECT GROUP_CONCAT(k ORDER BY k) FROM app.n")
            .trim(),
        "8,13,18"
    );
    for table in ["app.t", "app.n"] {
        assert_same_table(&s.primary, &s.replica, table);
    }
    assert_eq!(catalog(&s.primary), catalog(&s.replica));

    // The same again across a slave restart in the middle of a backlog.
    s.slave.kill9();
    s.primary.sql(
        "SET time_zone = '-03:30', timestamp = 1200000000.5; \
         ALTER TABLE app.t ADD COLUMN dt2 DATETIME(1) NOT NULL DEFAULT CURRENT_TIMESTAMP(1); \
         INSERT INTO app.t (id, v) VALUES (4, 40);",
    );
    s.slave = Rowcast::slave(&s.listen, &s.replica, "ctx");
    wait_caught_up(&s.primary, &s.replica, "ctx");
    assert_same_table(&s.primary, &s.replica, "app.t");
    // The apply session got its own context back: a row applied after the
    // statements still arrives exactly.
    assert_eq!(
        s.replica.sql("SELECT dt2 FROM app.t WHERE id = 1").trim(),
        "2008-01-10 17:50:00.5"
    );
}

#[test]
fn statements_whose_default_database_is_missing_run_as_on_the_primary() {
    let mut s = setup(
        "nodb",
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY);",
    );
    s.primary.sql(
        "DROP DATABASE IF EXISTS never_there; \
         CREATE OR REPLACE DATABASE x; \
         CREATE TABLE x.t (id INT PRIMARY KEY); INSERT INTO x.t VALUES (1); \
         CREATE OR REPLACE DATABASE x; \
         CREATE TABLE x.u (id INT PRIMARY KEY); INSERT INTO x.u VALUES (2); \
         USE app; DROP DATABASE app; \
         CREATE DATABASE y; CREATE TABLE y.t (id INT PRIMARY KEY); INSERT INTO y.t VALUES (3);",
    );
    wait_caught_up(&s.primary, &s.replica, "nodb");
    assert!(s.slave.is_running(), "{}", s.slave.log_text());
    assert_eq!(catalog(&s.primary), catalog(&s.replica));
    assert_same_table(&s.primary, &s.replica, "x.u");
    assert_same_table(&s.primary, &s.replica, "y.t");
}

#[test]
fn a_statement_that_partly_failed_on_the_primary_ends_the_same_on_the_replica() {
    let mut s = setup(
        "partial",
        "CREATE DATABASE app; \
         CREATE TABLE app.a (id INT PRIMARY KEY); CREATE TABLE app.b (id INT PRIMARY KEY); \
         CREATE VIEW app.v1 AS SELECT 1 AS one; CREATE VIEW app.v2 AS SELECT 2 AS two; \
         CREATE SEQUENCE app.s1;",
    );
    // MariaDB 10.11 logs this one verbatim with error 4092 (Unknown VIEW)
    // in the query event, having dropped v1.
    assert!(s
        .primary
        .try_sql("DROP VIEW app.v1, app.v_missing")
        .is_err());
    // These it rewrites with every name and logs with error 0, having
    // dropped the ones that existed.
    assert!(s
        .primary
        .try_sql("DROP TABLE app.missing_x, app.a")
        .is_err());
    assert!(s
        .primary
        .try_sql("DROP SEQUENCE app.s1, app.s_missing")
        .is_err());
    let log = s.primary.sql("SHOW BINLOG EVENTS");
    assert!(
        log.contains("drop view app.v1, app.v_missing")
            || log.contains("DROP VIEW app.v1, app.v_missing"),
        "{log}"
    );
    s.primary
        .sql("CREATE TABLE app.after (id INT PRIMARY KEY); INSERT INTO app.after VALUES (1);");
    wait_caught_up(&s.primary, &s.replica, "partial");
    assert!(s.slave.is_running(), "{}", s.slave.log_text());
    assert_eq!(catalog(&s.primary), catalog(&s.replica));
    assert_same_table(&s.primary, &s.replica, "app.after");

    // A statement that ends otherwise than on the primary stops the slave,
    // naming the statement, the two outcomes and what to do.
    s.replica.sql("CREATE TABLE app.clash (id INT)");
    s.primary.sql("CREATE TABLE app.clash (id INT PRIMARY KEY)");
    wait_stopped(&mut s.slave);
    let log = s.slave.log_text();
    assert!(
        log.contains("CREATE TABLE app.clash")
            && log.contains("on the primary it ended with success, on the replica with error 1050")
            && log.contains("--resnapshot"),
        "{log}"
    );
}

/// The replica's catalog fingerprint of `app`, as the applier computes it.
fn fingerprint(db: &MariaDb) -> String {
    let q = rowcast::replica::catalog_fingerprint::query(Some(&["app".to_string()]));
    db.sql(&format!(
        "SET SESSION group_concat_max_len = 1073741824; {q}"
    ))
    .trim()
    .to_string()
}

/// Leaves the pending-DDL marker a crash between running the next logged
/// statement and its checkpoint would leave, with `fp` as the catalog
/// before its first attempt.
fn mark_pending(replica: &MariaDb, name: &str, fp: &str) {
    replica.sql(&format!(
        "UPDATE rowcast.checkpoint SET ddl_pending_seq = log_seq + 1, ddl_pending_fingerprint = '{fp}' \
         WHERE slave_name = '{name}'"
    ));
}

#[test]
fn a_retried_ddl_is_taken_as_applied_only_if_it_had_been() {
    let mut s = setup(
        "retry",
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1);
         CREATE TABLE app.k (id INT PRIMARY KEY, c INT);",
    );

    // Applied before the crash: the replica has the new table, and its
    // catalog moved since the marker.
    s.slave.kill9();
    let before = fingerprint(&s.replica);
    s.replica.sql("CREATE TABLE app.done (id INT PRIMARY KEY)");
    mark_pending(&s.replica, "retry", &before);
    s.primary
        .sql("CREATE TABLE app.done (id INT PRIMARY KEY); INSERT INTO app.done VALUES (5);");
    s.slave = Rowcast::slave(&s.listen, &s.replica, "retry");
    wait_caught_up(&s.primary, &s.replica, "retry");
    assert_same_table(&s.primary, &s.replica, "app.done");
    assert!(
        s.slave
            .log_text()
            .contains("had been applied before the restart"),
        "{}",
        s.slave.log_text()
    );

    // Applied before the crash, and it would succeed again: `ADD KEY (c)`
    // run twice makes a second index `c_2`. The moved catalog says it ran.
    s.slave.kill9();
    let before = fingerprint(&s.replica);
    s.replica.sql("ALTER TABLE app.k ADD KEY (c)");
    mark_pending(&s.replica, "retry", &before);
    s.primary.sql("ALTER TABLE app.k ADD KEY (c)");
    s.slave = Rowcast::slave(&s.listen, &s.replica, "retry");
    wait_caught_up(&s.primary, &s.replica, "retry");
    let show = |db: &MariaDb| db.sql("SHOW CREATE TABLE app.k");
    assert_eq!(
        show(&s.primary),
        show(&s.replica),
        "the key was added twice"
    );

    // Not applied, and failing for real: the table was there before the
    // statement's first attempt (a diverged replica), so the catalog is
    // what the marker recorded.
    s.slave.kill9();
    s.replica.sql("CREATE TABLE app.clash (id INT)");
    let before = fingerprint(&s.replica);
    mark_pending(&s.replica, "retry", &before);
    s.primary.sql("CREATE TABLE app.clash (id INT PRIMARY KEY)");
    s.slave = Rowcast::slave(&s.listen, &s.replica, "retry");
    wait_stopped(&mut s.slave);
    let log = s.slave.log_text();
    assert!(
        log.contains("CREATE TABLE app.clash")
            && log.contains("fails for real")
            && log.contains("error 1050"),
        "{log}"
    );
    // Nothing was skipped: the checkpoint stays before the statement.
    assert_ne!(
        slave_position(&s.replica, "retry"),
        primary_position(&s.primary)
    );
}
