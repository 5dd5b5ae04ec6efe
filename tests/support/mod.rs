//! Test harness: throwaway MariaDB servers and rowcast processes.
//!
//! Every server gets a fresh data directory in a temp dir (copied from a
//! template installed once per test binary), a free port, and is stopped
//! when dropped. A missing `mariadbd` is a loud failure, never a skip:
//! `scripts/test` installs it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod objects;
#[allow(unused_imports)]
pub use objects::{assert_same_objects, assert_same_objects_renamed};

pub const ROWCAST: &str = env!("CARGO_BIN_EXE_rowcast");

/// How long to wait for replication to converge. Generous: CI is slow.
pub const CONVERGE: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(bin: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("`{bin}` not found: install its Debian package (scripts/test installs mariadb-server and nats-server)");
}

/// A data directory with the system tables, made once per MariaDB version
/// and user and copied per server. It lives at a fixed path under the temp
/// directory, shared by every test binary and run: a `TempDir` per binary
/// (a static is never dropped) leaked 114 MB on every run.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let version = Command::new(which("mariadbd"))
                .arg("--version")
                .output()
                .expect("running mariadbd --version");
            let tag: String = String::from_utf8_lossy(&version.stdout)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let uid = unsafe { libc::getuid() };
            let dir = std::env::temp_dir().join(format!(
                "rowcast-template-{uid}-{:016x}",
                fnv1a(tag.as_bytes())
            ));
            if dir.join("ready").exists() {
                return dir;
            }
            // Made aside and renamed into place, so a concurrent binary never
            // copies a half-made one.
            let making = tempfile::Builder::new()
                .prefix("rowcast-template-making-")
                .tempdir()
                .unwrap();
            let out = Command::new(which("mariadb-install-db"))
                .args([
                    "--no-defaults",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ])
                .arg(format!(
                    "--datadir={}",
                    making.path().join("data").display()
                ))
                .output()
                .expect("running mariadb-install-db");
            assert!(
                out.status.success(),
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(making.path().join("ready"), b"").unwrap();
            let made = making.keep();
            if std::fs::rename(&made, &dir).is_err() {
                // Another binary was first: use its copy.
                let _ = std::fs::remove_dir_all(&made);
                assert!(
                    dir.join("ready").exists(),
                    "{} exists but is not a finished template: remove it",
                    dir.display()
                );
            }
            dir
        })
        .as_path()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub struct MariaDb {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    args: Vec<String>,
}

impl MariaDb {
    /// A primary: binlog on, row format, full metadata.
    pub fn primary() -> MariaDb {
        Self::start_with(&[
            "--log-bin=binlog",
            "--binlog_format=ROW",
            "--binlog_row_image=FULL",
            "--binlog_row_metadata=FULL",
        ])
    }

    /// A plain server for a replica.
    pub fn replica() -> MariaDb {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> MariaDb {
        Self::start_at(None, extra)
    }

    /// [`MariaDb::start_with`], its datadir at `datadir` (a fresh path)
    /// instead of in its temp dir.
    pub fn start_at(datadir: Option<PathBuf>, extra: &[&str]) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("rowcast-db-")
            .tempdir()
            .unwrap();
        let data = datadir.unwrap_or_else(|| dir.path().join("data"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(template().join("data"))
            .arg(&data)
            .status()
            .unwrap();
        assert!(status.success(), "copying the template datadir to {data:?}");
        // A private tmpdir: the shared /tmp is not ours, and a server's internal
        // temporary tables there were once removed under a running snapshot.
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let server_id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--datadir={}", data.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", dir.path().join("sock").display()),
            format!("--pid-file={}", dir.path().join("pid").display()),
            format!("--log-error={}", dir.path().join("err.log").display()),
            format!("--tmpdir={}", dir.path().join("tmp").display()),
            "--user=root".into(),
            format!("--server-id={server_id}"),
            "--innodb-buffer-pool-size=64M".into(),
            "--innodb-log-file-size=64M".into(),
            "--skip-name-resolve".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut db = MariaDb {
            port: 0,
            dir,
            child: None,
            args,
        };
        db.launch();
        db
    }

    fn launch(&mut self) {
        for _attempt in 0..5 {
            let port = if self.port == 0 {
                free_port()
            } else {
                self.port
            };
            let child = Command::new(which("mariadbd"))
                .args(&self.args)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting mariadbd");
            self.port = port;
            self.child = Some(child);
            if self.wait_ready(Duration::from_secs(60)) {
                return;
            }
            self.kill();
            if self.port != 0 {
                // Maybe the port was taken in between: try another.
                self.port = 0;
            }
        }
        panic!(
            "mariadbd did not start; its log:\n{}",
            std::fs::read_to_string(self.dir.path().join("err.log")).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if self.try_sql("SELECT 1").is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("mysql://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        sql_at(self.port, sql)
    }

    /// Runs SQL and returns the tab-separated output; panics on error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("SQL failed on port {}: {e}\n{sql}", self.port))
    }

    /// Every row of `db.table` (names split at the first dot, so they
    /// may hold anything else), ordered by every column. Strings, binary,
    /// ENUM/SET, BIT, JSON and geometry are HEX'ed byte for byte; TIMESTAMP
    /// is shown in UTC; other values in their text form.
    pub fn dump(&self, table: &str) -> String {
        let (db, t) = table.split_once('.').expect("db.table");
        let lit = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
        let cols = self.sql(&format!(
            "SELECT GROUP_CONCAT(CASE \
               WHEN DATA_TYPE IN ('char','varchar','tinytext','text','mediumtext','longtext','binary', \
                 'varbinary','tinyblob','blob','mediumblob','longblob','enum','set','json','bit', \
                 'geometry','point','linestring','polygon','multipoint','multilinestring', \
                 'multipolygon','geometrycollection') \
               THEN CONCAT('HEX(`', REPLACE(COLUMN_NAME, '`', '``'), '`)') \
               ELSE CONCAT('CONCAT(`', REPLACE(COLUMN_NAME, '`', '``'), '`)') END \
               ORDER BY ORDINAL_POSITION SEPARATOR ',') \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = '{}'",
            lit(db),
            lit(t)
        ));
        let cols = cols.trim();
        assert!(
            !cols.is_empty() && cols != "NULL",
            "table {table} not found on port {}",
            self.port
        );
        self.sql(&format!(
            "SET SESSION time_zone = '+00:00'; SELECT {cols} FROM {} ORDER BY {cols}",
            quoted(table)
        ))
    }

    pub fn checksum(&self, table: &str) -> String {
        let out = self.sql(&format!("CHECKSUM TABLE {}", quoted(table)));
        out.split('\t').nth(1).unwrap_or("").trim().to_string()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the server on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs SQL on the server at `port` with the `mariadb` client (usable from
/// load threads, which cannot borrow a [`MariaDb`]).
pub fn sql_at(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new(which("mariadb"))
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "-uroot",
            "-N",
            "-B",
            "--raw",
            "--default-character-set=utf8mb4",
        ])
        .arg(format!("-P{port}"))
        .arg("-e")
        .arg(sql)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `db.table` as a quoted SQL name.
pub fn quoted(table: &str) -> String {
    let (db, t) = table.split_once('.').expect("db.table");
    format!("`{}`.`{}`", db.replace('`', "``"), t.replace('`', "``"))
}

/// A running rowcast process whose stderr goes to a file.
pub struct Rowcast {
    child: Option<Child>,
    pub log: PathBuf,
    _dir: Option<TempDir>,
}

impl Rowcast {
    pub fn spawn(args: &[&str]) -> Rowcast {
        let dir = tempfile::Builder::new()
            .prefix("rowcast-proc-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("stderr.log");
        let child = Command::new(ROWCAST)
            .args(args)
            .env("RUST_LOG", "info,rowcast=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting rowcast");
        Rowcast {
            child: Some(child),
            log,
            _dir: Some(dir),
        }
    }

    /// Starts a master and waits until it listens, which it does only
    /// after its change log has a start position: writes made after this
    /// returns are replicated.
    pub fn master(primary: &MariaDb, data_dir: &Path, listen: &str) -> Rowcast {
        let mut m = Rowcast::master_no_wait(primary, data_dir, listen);
        m.wait_listening(listen);
        m
    }

    /// Waits until this master accepts connections on `listen`; fails with
    /// its log if it exits first.
    pub fn wait_listening(&mut self, listen: &str) {
        let ok = wait_until(CONVERGE, || {
            std::net::TcpStream::connect(listen).is_ok() || !self.is_running()
        });
        assert!(
            ok && self.is_running(),
            "master did not start:\n{}",
            self.log_text()
        );
    }

    /// [`Rowcast::master`] with extra flags.
    pub fn master_with(
        primary: &MariaDb,
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> Rowcast {
        let source = primary.url();
        let mut args = vec![
            "master",
            "--source",
            &source,
            "--listen",
            listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut m = Rowcast::spawn(&args);
        m.wait_listening(listen);
        m
    }

    /// A master replaying the binlog files in `dir` (`--binlog-dir`), with
    /// extra flags; waits until it listens.
    pub fn master_on_files(dir: &Path, data_dir: &Path, listen: &str, extra: &[&str]) -> Rowcast {
        let mut args = vec![
            "master",
            "--binlog-dir",
            dir.to_str().unwrap(),
            "--listen",
            listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut m = Rowcast::spawn(&args);
        m.wait_listening(listen);
        m
    }

    pub fn master_no_wait(primary: &MariaDb, data_dir: &Path, listen: &str) -> Rowcast {
        Rowcast::spawn(&[
            "master",
            "--source",
            &primary.url(),
            "--listen",
            listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
    }

    pub fn slave(master: &str, target: &MariaDb, name: &str) -> Rowcast {
        Rowcast::slave_with(master, target, name, &[])
    }

    /// [`Rowcast::slave`] with extra flags.
    pub fn slave_with(master: &str, target: &MariaDb, name: &str, extra: &[&str]) -> Rowcast {
        let url = target.url();
        let mut args = vec![
            "slave",
            "--master",
            master,
            "--target",
            &url,
            "--name",
            name,
            "--master-timeout",
            "5",
        ];
        args.extend_from_slice(extra);
        Rowcast::spawn(&args)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Rowcast {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() || std::env::var_os("ROWCAST_TEST_LOGS").is_some() {
            eprintln!(
                "--- rowcast log {} ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Runs rowcast to completion (for commands that must fail fast).
pub fn run_rowcast(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(ROWCAST)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "rowcast {args:?} did not exit within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory holding one file of testdata/mysql-binlogs/ (`set/name`),
/// and the name it has there: its own when it is a binlog name
/// (`base.NNNNNN`), else `mysql-bin.000001`, as `--binlog-dir` reads only
/// binlog names and some projects' fixtures have others.
pub fn archive_of(file: &str) -> (TempDir, String) {
    let archive = tempfile::tempdir().unwrap();
    let own = Path::new(file).file_name().unwrap().to_str().unwrap();
    let name = match own.rsplit_once('.') {
        Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => own.to_string(),
        _ => "mysql-bin.000001".to_string(),
    };
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/mysql-binlogs")
        .join(file);
    std::fs::copy(&from, archive.path().join(&name))
        .unwrap_or_else(|e| panic!("copying {from:?}: {e}"));
    (archive, name)
}

pub fn listen_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

/// The primary's current binlog end as `file:pos`.
pub fn primary_position(primary: &MariaDb) -> String {
    let s = primary.sql("SHOW MASTER STATUS");
    let mut f = s.split('\t');
    format!("{}:{}", f.next().unwrap_or(""), f.next().unwrap_or(""))
}

/// The slave's checkpoint as `file:pos`.
pub fn slave_position(replica: &MariaDb, name: &str) -> String {
    replica
        .try_sql(&format!(
            "SELECT CONCAT(source_file, ':', source_offset) FROM rowcast.checkpoint WHERE slave_name='{name}'"
        ))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A log text without its terminal colour codes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// Whether the slave's seed (if any) is complete: no progress rows left.
pub fn seed_done(replica: &MariaDb, name: &str) -> bool {
    replica
        .try_sql(&format!(
            "SELECT COUNT(*) FROM rowcast.seed WHERE slave_name = '{name}'"
        ))
        .is_ok_and(|n| n.trim() == "0")
}

/// Waits until the slave has a checkpoint and its seed is complete.
pub fn wait_seeded(replica: &MariaDb, name: &str) -> bool {
    wait_until(CONVERGE, || {
        !slave_position(replica, name).is_empty() && seed_done(replica, name)
    })
}

/// Waits until the slave has applied everything the primary has written
/// (and its seed, if any, is complete).
pub fn wait_caught_up(primary: &MariaDb, replica: &MariaDb, name: &str) {
    let target = primary_position(primary);
    let ok = wait_until(CONVERGE, || {
        slave_position(replica, name) == target && seed_done(replica, name)
    });
    assert!(
        ok,
        "slave {name} did not reach {target}; it is at {}",
        slave_position(replica, name)
    );
}

/// Asserts a table is identical on both servers, by CHECKSUM TABLE and by
/// a row-by-row HEX dump.
pub fn assert_same_table(primary: &MariaDb, replica: &MariaDb, table: &str) {
    assert_eq!(
        primary.checksum(table),
        replica.checksum(table),
        "CHECKSUM TABLE {table} differs"
    );
    assert_eq!(
        primary.dump(table),
        replica.dump(table),
        "rows of {table} differ"
    );
}

/// A throwaway `nats-server` with JetStream, on a free port, storing in a
/// temp dir; stopped on drop.
pub struct Nats {
    pub port: u16,
    child: Child,
    config: PathBuf,
    dir: TempDir,
}

/// Client limits of a throwaway `nats-server`; `None` keeps the server's
/// default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NatsLimits {
    /// The largest message the server takes, in bytes.
    pub max_payload: Option<usize>,
    /// Bytes queued for a client past which the server drops it (a "slow
    /// consumer").
    pub max_pending: Option<usize>,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_with(NatsLimits::default())
    }

    /// `max_payload` lowers the server's largest message (bytes).
    pub fn start_with_max_payload(max_payload: Option<usize>) -> Nats {
        Nats::start_with(NatsLimits {
            max_payload,
            ..NatsLimits::default()
        })
    }

    /// The one way a test server starts: its config file (with `limits`)
    /// and JetStream storage in a temp dir, on a free port.
    pub fn start_with(limits: NatsLimits) -> Nats {
        let dir = tempfile::Builder::new()
            .prefix("rowcast-nats-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let config = dir.path().join("nats.conf");
        let mut conf = format!(
            "port: {port}\nhost: 127.0.0.1\njetstream {{ store_dir: \"{}\" }}\n",
            dir.path().join("js").display()
        );
        if let Some(n) = limits.max_payload {
            conf.push_str(&format!("max_payload: {n}\n"));
        }
        if let Some(n) = limits.max_pending {
            conf.push_str(&format!("max_pending: {n}\n"));
        }
        std::fs::write(&config, conf).unwrap();
        let child = Nats::spawn(&config, dir.path(), port);
        Nats {
            port,
            child,
            config,
            dir,
        }
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    fn spawn(config: &Path, dir: &Path, port: u16) -> Child {
        let child = Command::new(which("nats-server"))
            .arg("-c")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("nats.log"))
                    .unwrap(),
            )
            .spawn()
            .expect("starting nats-server (apt-get install nats-server)");
        let ok = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            ok,
            "nats-server did not start: {}",
            std::fs::read_to_string(dir.join("nats.log")).unwrap_or_default()
        );
        child
    }

    /// Stops the server for `down`, then starts it again on the same
    /// port and storage.
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = Nats::spawn(&self.config, self.dir.path(), self.port);
    }

    pub fn url(&self, stream: &str) -> String {
        format!("nats://127.0.0.1:{}/{stream}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes rows 1..=n into `t.log (n INT, pad VARCHAR(300))`, one
/// transaction each, `batch` statements per client call, in a thread;
/// `written` follows its progress and `done` is set at the end.
pub fn log_writer(
    port: u16,
    n: u64,
    batch: u64,
    pause: Duration,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut i = 1;
        while i <= n {
            let end = (i + batch - 1).min(n);
            let sql: String = (i..=end)
                .map(|k| format!("INSERT INTO t.log VALUES ({k}, REPEAT('x', {}));", k % 300))
                .collect();
            sql_at(port, &sql).unwrap_or_else(|e| panic!("{e}"));
            written.store(end, Ordering::SeqCst);
            i = end + 1;
            std::thread::sleep(pause);
        }
        done.store(true, Ordering::SeqCst);
    })
}

/// `t.log` holds each of 1..=n exactly once.
pub fn assert_each_row_once(replica: &MariaDb, n: u64) {
    let dupes =
        replica.sql("SELECT n, COUNT(*) FROM t.log GROUP BY n HAVING COUNT(*) <> 1 LIMIT 5");
    assert_eq!(dupes, "", "rows applied more than once");
    let count = replica.sql("SELECT COUNT(*), COUNT(DISTINCT n), MIN(n), MAX(n) FROM t.log");
    assert_eq!(count.trim(), format!("{n}\t{n}\t1\t{n}"), "rows lost");
}

/// How many records of a stopped master's change log are parts after the
/// first of a transaction: proof that a test's transactions travelled in
/// parts.
pub fn logged_parts(data_dir: &Path) -> usize {
    let log = rowcast::log::segments::ChangeLog::open(data_dir).unwrap();
    let handle = log.subscribe();
    drop(log);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut reader = handle.reader_after(None).unwrap();
        let mut parts = 0;
        while let Some(rec) = reader.next().await.unwrap() {
            parts += usize::from(rec.part > 0);
        }
        parts
    })
}

pub mod disk;
pub mod fault_proxy;
pub mod netns;

impl Rowcast {
    /// [`Rowcast::spawn`] inside a network namespace.
    pub fn spawn_in(ns: &netns::Netns, args: &[&str]) -> Rowcast {
        let dir = tempfile::Builder::new()
            .prefix("rowcast-proc-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("stderr.log");
        let child = ns
            .command(Path::new(ROWCAST))
            .args(args)
            .env("RUST_LOG", "info,rowcast=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting rowcast in a network namespace");
        Rowcast {
            child: Some(child),
            log,
            _dir: Some(dir),
        }
    }
}
pub mod nats_limits;

/// `rowcast status --json` of the master at `listen`.
pub fn status_json(listen: &str) -> serde_json::Value {
    let out = run_rowcast(
        &["status", "--master", listen, "--json"],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The metrics page served at `addr`.
pub fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
