//! The master's side of the wire: accepts slaves and streams the change
//! log to each from its checkpoint.
//!
//! [`Listener`] only accepts; each connection gets its own handler task.
//! A bad peer (wrong protocol, garbage, a stalled handshake) ends only its
//! own connection, with the reason logged against its address; the master
//! and its other slaves go on.
//!
//! It also owns what the master knows of each slave ([`ServerState`]) and
//! the operator's view of it ([`status_of`]):
//!
//! - **Lag** in seconds is now minus the primary commit time of the oldest
//!   transaction the slave has not applied: the change-log record right
//!   after its applied sequence, read from the log by sequence (a few
//!   header bytes, never the rows). That holds for connected, disconnected
//!   and stalled slaves alike, and for JetStream slaves (the message after
//!   the sequence in their progress report). A slave that applied the whole
//!   log can still be behind when the master is behind the primary: the
//!   transaction it misses is not in the log yet, so its commit time is
//!   unknown but later than the newest record and than the last moment the
//!   master's binlog reader was known to be caught up (the primary sends a
//!   binlog heartbeat only then); `now - max(those)` is a lower bound. It is
//!   0 only when nothing is pending: the primary's binlog end is not after
//!   what the master has read. A pending transaction counts at least 1 s
//!   (commit times have whole seconds).
//! - **Stalled**: a connected (or JetStream) slave with work pending whose
//!   applied sequence has not moved for `--stall-after`. For JetStream the
//!   master remembers when each name's reported sequence last changed (its
//!   progress report is rewritten on heartbeats, so its own time says
//!   nothing about progress).
//! - **One name, two connections**: the newer connection replaces the
//!   older, as a MariaDB/MySQL primary kills the older dump thread when a
//!   replica with the same server id connects. A slave that reconnects
//!   after a network failure its old TCP connection has not noticed (or
//!   after being frozen) must not be refused for minutes. Each connection
//!   has an id; the replaced handler ends (even inside a blocked write) and
//!   can no longer change the name's entry, so it neither marks the new
//!   connection disconnected nor moves the sequence retention keeps for it.
//!   Two live slaves sharing a name take the name from each other in turn,
//!   with a warning each time: names must be unique.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use tokio::sync::mpsc;

use crate::log::change::{Row, TableSchema};
use crate::log::{LogView, View};
use crate::net::connection::{ConnectionError, FrameReader, FrameWriter};
use crate::net::seed_serve::{Round, Seeder};
use crate::net::wire::{
    self, ErrorKind, MasterMessage, MasterStatus, SlaveMessage, SlaveSettings, SlaveStatus,
    SnapshotObject,
};
use crate::ops::health::{master_readiness, SourceState};
use crate::ops::metrics::{Metrics, SlaveGauges};
use crate::source::chunk_read::PointMethod;
use crate::source::filter::Filter;
use crate::source::origin::Origin;
use crate::source::position::SourcePosition;
use crate::source::seed_plan::SeedTable;
use crate::source::snapshot::{Snapshot, SnapshotError};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the per-slave metrics (and the JetStream slaves' progress
/// memory) are refreshed.
const SLAVE_METRICS_INTERVAL: Duration = Duration::from_secs(3);
/// The default of `--stall-after`.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);
/// A JetStream slave being seeded that sends nothing for this long
/// (snapshot progress comes every second or so while it loads rows; the
/// end of a load, index builds included, can be quiet for minutes) is
/// taken for gone and its connection dropped.
const SEED_SILENCE: Duration = Duration::from_secs(600);
/// How long retention keeps what a slave that left still needs, so a
/// restarted slave finds its position.
const RESTART_GRACE: Duration = Duration::from_secs(60);
/// An idle stream gets a heartbeat this often.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// What the master knows of each connected slave (for status and
/// retention).
#[derive(Debug, Clone)]
pub struct SlaveInfo {
    pub addr: SocketAddr,
    pub state: &'static str,
    /// The slave's progress: it has applied (or holds, if prepared XA)
    /// everything up to this sequence. Lag and `stalled` count from it.
    pub acked_seq: u64,
    pub acked_position: Option<SourcePosition>,
    pub acked_source_time: u32,
    /// Retention: the lowest sequence the slave may still read again
    /// (`SlaveMessage::Ack::keep_from`; below `acked_seq + 1` while it
    /// holds prepared XA transactions). 0 until known: keep everything.
    pub keep_from: u64,
    /// The first record sent on this connection (0: none yet).
    pub first_sent: u64,
    /// Highest sequence number sent, and the primary commit time of the
    /// oldest transaction sent but not yet acknowledged (0: none).
    pub sent_seq: u64,
    pub oldest_unacked_time: u32,
    pub snapshot_rows: u64,
    pub snapshot_estimated_rows: u64,
    pub snapshot_bytes: u64,
    pub snapshot_estimated_bytes: u64,
    pub snapshot_eta_seconds: Option<u64>,
    pub last_error: Option<String>,
    /// What it said of its delay, renames and skips.
    pub settings: SlaveSettings,
    /// Which connection this entry belongs to: a replaced connection's
    /// handler leaves a newer entry alone.
    pub conn: u64,
    /// When `acked_seq` last changed (or the connection began).
    pub progress_at: Instant,
    /// Notified when a newer connection takes the name over.
    pub kick: Arc<Notify>,
    /// When the connection ended (disconnected or failed).
    pub left_at: Option<Instant>,
}

impl SlaveInfo {
    /// The slave acknowledged: everything through `seq` is applied, and it
    /// may read the log again from `keep_from`.
    fn record_ack(&mut self, seq: u64, position: SourcePosition, source_time: u32, keep_from: u64) {
        self.state = "streaming";
        // Freshly seeded (nothing applied yet: sequence 0, nothing held,
        // since a prepare from before the snapshot stops a slave), it has
        // everything before the first record sent and needs only what
        // follows.
        let (seq, keep_from) = if seq == 0 && self.first_sent > 0 {
            (self.first_sent - 1, keep_from.max(self.first_sent))
        } else {
            (seq, keep_from)
        };
        // Progress is the applied sequence only: a held XA prepare keeps
        // `keep_from` back but is no lag, and must not look stalled.
        if self.acked_seq != seq {
            self.progress_at = Instant::now();
        }
        self.acked_seq = seq;
        self.keep_from = keep_from;
        self.acked_position = Some(position);
        // A heartbeat-time ack carries no source time.
        if source_time != 0 {
            self.acked_source_time = source_time;
        }
        if seq >= self.sent_seq {
            self.oldest_unacked_time = 0;
        } else if source_time != 0 {
            self.oldest_unacked_time = source_time;
        }
    }

    /// Record `seq`, committed on the primary at `timestamp`, was sent.
    fn record_sent(&mut self, seq: u64, timestamp: u32) {
        if self.sent_seq == 0 {
            self.first_sent = seq;
            // The reader starts right after the slave's checkpoint or
            // snapshot, so it has everything before this record (and more
            // when it is read again from before a held XA prepare: then
            // its early ack said so). What it may read again is known only
            // from its acks (a slave holding prepares acks right after the
            // handshake): `keep_from` stays as it is (0: keep everything,
            // or the last connection's floor) until then.
            if self.acked_seq < seq - 1 {
                self.acked_seq = seq - 1;
                self.progress_at = Instant::now();
            }
        }
        self.sent_seq = seq;
        if self.oldest_unacked_time == 0 {
            self.oldest_unacked_time = timestamp;
        }
    }
}

pub struct ServerState {
    pub slaves: Mutex<HashMap<String, SlaveInfo>>,
    /// Position and primary commit time of the newest logged transaction.
    pub log_tip: Mutex<(Option<SourcePosition>, u32)>,
    pub metrics: Arc<Metrics>,
    /// See `--stall-after`.
    pub stall_after: Duration,
    /// The last binlog heartbeat: where the primary's dump had got to (if
    /// it said) and when (ms since the epoch). The master's binlog reader
    /// had read everything the primary had then.
    caught_up: Mutex<Option<(Option<SourcePosition>, u64)>>,
    /// The primary's binlog up to this position is in the log, through
    /// this sequence number (the writer sets it after appending what the
    /// reader read before a heartbeat).
    covered: Mutex<Option<(SourcePosition, u64)>>,
    next_conn: AtomicU64,
    /// JetStream slaves: the sequence last reported and since when.
    nats_seen: Mutex<HashMap<String, (u64, Instant)>>,
    /// JetStream slaves: the `updated_ms` of the report last seen and
    /// when (on this master's clock) it was first seen.
    nats_written: Mutex<HashMap<String, (u64, Instant)>>,
    /// When the binlog reader last heard from the primary (any event or
    /// heartbeat; ms since the epoch, 0: never): the primary was reachable
    /// and streaming to it then.
    reader_seen_ms: AtomicU64,
    /// What the binlog reader is doing, for `/readyz`.
    source_state: Mutex<SourceState>,
}

impl ServerState {
    pub fn new(metrics: Arc<Metrics>, stall_after: Duration) -> ServerState {
        ServerState {
            slaves: Mutex::new(HashMap::new()),
            log_tip: Mutex::new((None, 0)),
            metrics,
            stall_after,
            caught_up: Mutex::new(None),
            covered: Mutex::new(None),
            next_conn: AtomicU64::new(1),
            nats_seen: Mutex::new(HashMap::new()),
            nats_written: Mutex::new(HashMap::new()),
            reader_seen_ms: AtomicU64::new(0),
            source_state: Mutex::new(SourceState::Starting),
        }
    }

    /// The binlog reader opened its stream (or the files).
    pub fn source_reading(&self) {
        *self.source_state.lock().unwrap() = SourceState::Reading;
        self.metrics.source_up.set(1);
    }

    /// The binlog reader lost its stream with `cause`; it reconnects.
    pub fn source_lost(&self, cause: String) {
        *self.source_state.lock().unwrap() = SourceState::Lost(cause);
        self.metrics.source_up.set(0);
    }

    /// Whether the master is ready (`/readyz`): see [`master_readiness`].
    pub fn readiness(&self, files: bool) -> Result<(), String> {
        let heard = self.reader_seen_ms.load(Ordering::Relaxed);
        let ago = (heard > 0).then(|| Duration::from_millis(now_ms().saturating_sub(heard)));
        let state = self.source_state.lock().unwrap().clone();
        master_readiness(&state, ago, files)
    }

    /// A binlog heartbeat arrived: the master had read the primary's
    /// binlog up to `at` (its end).
    pub fn caught_up(&self, at: Option<SourcePosition>) {
        let now = now_ms();
        *self.caught_up.lock().unwrap() = Some((at, now));
        self.reader_seen_ms.store(now, Ordering::Relaxed);
    }

    /// Everything the primary wrote up to `position` is logged, through
    /// sequence `seq`.
    pub fn set_covered(&self, position: SourcePosition, seq: u64) {
        *self.covered.lock().unwrap() = Some((position, seq));
    }

    /// The binlog reader got an event from the primary (a transaction's,
    /// one filtered out entirely included): the primary is streaming to
    /// it. When the primary's position cannot be read, this is what says
    /// whether the reader can still be current.
    pub fn reader_heard(&self) {
        self.reader_seen_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// How long ago a JetStream slave last wrote its progress report, as
    /// far as this master has seen: measured on this master's clock from
    /// when a new `updated_ms` was first seen (the slave's clock may be
    /// off), except for the first sighting, which can only go by the
    /// slave's own stamp.
    fn nats_report_age(&self, name: &str, updated_ms: u64) -> Duration {
        let mut written = self.nats_written.lock().unwrap();
        let entry = written.entry(name.to_string()).or_insert_with(|| {
            let age = Duration::from_millis(now_ms().saturating_sub(updated_ms));
            let since = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            (updated_ms, since)
        });
        if entry.0 != updated_ms {
            *entry = (updated_ms, Instant::now());
        }
        entry.1.elapsed()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SlaveInfo)) {
        if let Some(info) = self.slaves.lock().unwrap().get_mut(name) {
            f(info);
        }
    }

    /// When a JetStream slave's reported sequence last moved, as far as
    /// this master has seen (it looks every few seconds).
    fn nats_progressed(&self, name: &str, seq: u64) -> Instant {
        let mut seen = self.nats_seen.lock().unwrap();
        let entry = seen
            .entry(name.to_string())
            .or_insert((seq, Instant::now()));
        if entry.0 != seq {
            *entry = (seq, Instant::now());
        }
        entry.1
    }

    /// `update`, only while the entry still belongs to connection `conn`.
    fn update_conn(&self, name: &str, conn: u64, f: impl FnOnce(&mut SlaveInfo)) {
        if let Some(info) = self.slaves.lock().unwrap().get_mut(name) {
            if info.conn == conn {
                f(info);
            }
        }
    }

    /// Enters a new connection under `name`, replacing (and ending) an
    /// older one still connected under it. Returns the connection's id.
    fn register(&self, name: &str, mut info: SlaveInfo) -> u64 {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        info.conn = conn;
        let mut slaves = self.slaves.lock().unwrap();
        if let Some(old) = slaves.get(name) {
            if matches!(old.state, "snapshotting" | "streaming") {
                tracing::warn!(
                    slave = %name,
                    old_addr = %old.addr,
                    new_addr = %info.addr,
                    "a second connection under this slave name replaces the first; give every slave its own --name"
                );
                old.kick.notify_one();
            }
            // What the slave may read again (held XA prepares) is known
            // only from its acks: until the new connection's first one,
            // keep what the last connection under this name asked for.
            if info.keep_from == 0 {
                info.keep_from = old.keep_from;
            }
        }
        slaves.insert(name.to_string(), info);
        conn
    }

    /// The oldest sequence number a connected slave, or one that left
    /// less than `RESTART_GRACE` ago, still needs (`None`: a slave is being
    /// seeded and its need is not known yet, keep all).
    pub fn oldest_needed_seq(&self) -> Option<u64> {
        let slaves = self.slaves.lock().unwrap();
        let mut need = u64::MAX;
        for s in slaves.values() {
            match s.state {
                "snapshotting" => return None,
                "streaming" => need = need.min(s.keep_from),
                // A slave restarting (a deploy, a kill) must not find that
                // a retention tick in between dropped what it reads again,
                // a held XA prepare above all: that would cost a reseed.
                _ if s.keep_from > 0 && s.left_at.is_some_and(|t| t.elapsed() < RESTART_GRACE) => {
                    need = need.min(s.keep_from)
                }
                _ => {}
            }
        }
        Some(need)
    }

    fn connected_count(&self) -> u64 {
        self.slaves
            .lock()
            .unwrap()
            .values()
            .filter(|s| matches!(s.state, "snapshotting" | "streaming"))
            .count() as u64
    }
}

/// What a handler needs to seed a slave with a snapshot.
#[derive(Clone)]
pub struct SnapshotSource {
    pub origin: Origin,
    /// With binlog files as the origin there is nothing to copy: a new
    /// slave reads the change log from where it was started (its database
    /// holds the files' starting state).
    pub log_start: Option<SourcePosition>,
    pub is_mariadb: bool,
    pub filter: Arc<Filter>,
    /// The shared secret slaves must prove they know, if any.
    pub token: Option<Arc<Vec<u8>>>,
    /// TLS for slave connections, if configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The epoch of positions read from the current primary.
    pub epoch: u32,
    /// Connections a seed reads the primary with (`--snapshot-threads`).
    pub threads: usize,
    /// How a seed chunk's read view is tied to a binlog position.
    pub point: PointMethod,
}

pub struct Listener {
    listener: TcpListener,
    log: View,
    state: Arc<ServerState>,
    snapshots: SnapshotSource,
    shutdown: watch::Receiver<bool>,
}

impl Listener {
    pub fn new(
        listener: TcpListener,
        log: View,
        state: Arc<ServerState>,
        snapshots: SnapshotSource,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Listener {
            listener,
            log,
            state,
            snapshots,
            shutdown,
        }
    }

    pub async fn run(mut self) {
        let _refresh = AbortOnDrop(tokio::spawn(refresh_slave_metrics(
            self.log.clone(),
            self.state.clone(),
            self.snapshots.origin.clone(),
        )));
        let mut backoff = Duration::from_millis(10);
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, addr)) => {
                        backoff = Duration::from_millis(10);
                        let _ = socket.set_nodelay(true);
                        let handler = Handler {
                            addr,
                            log: self.log.clone(),
                            state: self.state.clone(),
                            snapshots: self.snapshots.clone(),
                            shutdown: self.shutdown.clone(),
                            conn: 0,
                            seed: Vec::new(),
                            resync: Vec::new(),
                        };
                        tokio::spawn(async move { handler.run(socket).await });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait, don't spin.
                        tracing::warn!(cause = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }
}

struct Handler {
    addr: SocketAddr,
    log: View,
    state: Arc<ServerState>,
    snapshots: SnapshotSource,
    shutdown: watch::Receiver<bool>,
    /// This connection's id once the slave is registered.
    conn: u64,
    /// What the slave said it is still being seeded with, and the tables
    /// it asks to be copied again (`SlaveMessage::Seed`).
    seed: Vec<SeedTable>,
    resync: Vec<(String, String)>,
}

/// A task that ends with its owner (a replaced handler's ack reader must
/// not outlive it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl Handler {
    async fn run(self, socket: TcpStream) {
        let addr = self.addr;
        match self.serve(socket).await {
            Ok(()) => tracing::info!(%addr, "slave connection closed"),
            Err(e) => tracing::warn!(%addr, cause = %e, "slave connection ended"),
        }
    }

    /// Whether the change log holds a statement (DDL) after `from` and up
    /// to `to`. Waits for the log to reach `to`; a log that stays idle for
    /// a few seconds before it does has nothing more in that range (the
    /// binlog can end in events that are not transactions).
    async fn ddl_between(
        &self,
        from: &SourcePosition,
        to: &SourcePosition,
    ) -> Result<bool, String> {
        self.log
            .ddl_between(from, to)
            .await
            .map_err(|e| e.to_string())
    }

    /// The catalog of what to copy, at a position it holds for: SHOW
    /// CREATE is not transactional, it shows the schema as of when it is
    /// read, so if DDL on a replicated object landed between the start
    /// position and the catalog's end it is read again. `consistent`
    /// opens the one-transaction snapshot (a JetStream slave's seed);
    /// otherwise the connection holds no transaction and no lock.
    async fn read_catalog(
        &self,
        source: &crate::source::Source,
        consistent: bool,
    ) -> Result<(Snapshot, crate::source::snapshot::Catalog), ServeError> {
        let snap = &self.snapshots;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut snapshot = match consistent {
                true => Snapshot::begin(source, snap.is_mariadb).await?,
                false => Snapshot::unlocked(source).await?,
            };
            snapshot.position.epoch = snap.epoch;
            let catalog = snapshot.catalog(&snap.filter).await?;
            let mut catalog_at = snapshot.source_end(source).await?;
            catalog_at.epoch = snap.epoch;
            match self.ddl_between(&snapshot.position, &catalog_at).await {
                Ok(false) => return Ok((snapshot, catalog)),
                Ok(true) if attempt < 20 => {
                    tracing::info!(
                        attempt,
                        "schema changed while the catalog was read; reading it again"
                    );
                    snapshot.finish().await;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Ok(true) => {
                    return Err(SnapshotError::Read {
                        object: "catalog".into(),
                        reason: "the schema kept changing during 20 attempts to read it".into(),
                    }
                    .into())
                }
                Err(reason) => {
                    return Err(SnapshotError::Read {
                        object: "change log".into(),
                        reason,
                    }
                    .into())
                }
            }
        }
    }

    /// Opens a seed: the catalog at the primary's position now (read again
    /// if DDL landed while it was read), sent with the plan of how each
    /// table is copied. Returns that position, where the slave's stream
    /// starts, and the plan.
    async fn seed_begin(
        &self,
        writer: &mut FrameWriter,
    ) -> Result<(SourcePosition, Vec<SeedTable>), ServeError> {
        let snap = &self.snapshots;
        let Some(source) = snap.origin.primary() else {
            unreachable!("binlog files are never seeded");
        };
        let (mut snapshot, catalog) = self.read_catalog(source, false).await?;
        let plan = snapshot.plan(&catalog, snap.threads as u32).await?;
        let position = snapshot.position.clone();
        tracing::info!(
            %position,
            databases = catalog.databases.len(),
            tables = catalog.tables.len(),
            ranged = plan.iter().filter(|t| t.key.is_some()).count(),
            ranges = plan.iter().map(|t| t.ranges.len()).sum::<usize>(),
            views = catalog.views.len(),
            objects = catalog.objects.len(),
            estimated_rows = catalog.estimated_rows,
            estimated_bytes = catalog.estimated_bytes,
            "seed started"
        );
        writer
            .send(&MasterMessage::SeedBegin {
                position: position.clone(),
                databases: catalog.databases,
                tables: catalog.tables,
                views: catalog.views,
                objects: catalog.objects,
                plan: plan.clone(),
            })
            .await?;
        Ok((position, plan))
    }

    /// `--resync`: for each table asked for, its CREATE statement and plan,
    /// sent before any record of this connection (so at the slave's
    /// checkpoint); the tables join the seed.
    async fn seed_tables_begin(&mut self, writer: &mut FrameWriter) -> Result<(), ServeError> {
        let snap = &self.snapshots;
        let Some(source) = snap.origin.primary() else {
            return Err(SnapshotError::Read {
                object: "resync".into(),
                reason: "a master reading binlog files has no primary to copy tables from".into(),
            }
            .into());
        };
        let mut snapshot = Snapshot::unlocked(source).await?;
        let catalog = snapshot.catalog(&snap.filter).await?;
        let plan = snapshot.plan(&catalog, snap.threads as u32).await?;
        let mut wanted: Vec<usize> = Vec::new();
        for (db, name) in std::mem::take(&mut self.resync) {
            let Some(i) = plan.iter().position(|t| t.database == db && t.name == name) else {
                return Err(SnapshotError::Read {
                    object: format!("{db}.{name}"),
                    reason: "no such table is replicated from the primary (is it in --include?); \
                             check the name given to --resync"
                        .into(),
                }
                .into());
            };
            // A table in foreign keys goes with every other such table:
            // they are read at one position, or a parent's cascade that
            // the replica did not see would leave children behind.
            if plan[i].group == 1 {
                for (j, t) in plan.iter().enumerate() {
                    if t.group == 1 && !wanted.contains(&j) {
                        if j != i {
                            tracing::info!(database = %t.database, table = %t.name, with = %format!("{db}.{name}"), "copying again with the table asked for: they share foreign keys");
                        }
                        wanted.push(j);
                    }
                }
            } else if !wanted.contains(&i) {
                wanted.push(i);
            }
        }
        for i in wanted {
            let plan = plan[i].clone();
            let (db, name) = (plan.database.clone(), plan.name.clone());
            let Some(table) = catalog
                .tables
                .iter()
                .find(|t| t.database == db && t.name == name)
            else {
                continue;
            };
            tracing::info!(database = %db, table = %name, "copying the table again (--resync)");
            writer
                .send(&MasterMessage::SeedTableBegin {
                    database: catalog
                        .databases
                        .iter()
                        .find(|d| d.name == db)
                        .cloned()
                        .unwrap_or_else(|| SnapshotObject {
                            database: db.clone(),
                            name: db.clone(),
                            create_sql: format!("CREATE DATABASE {}", crate::sql::ident(&db))
                                .into_bytes(),
                            charset: None,
                        }),
                    table: table.clone(),
                    plan: plan.clone(),
                })
                .await?;
            self.seed.retain(|t| !(t.database == db && t.name == name));
            self.seed.push(plan);
        }
        Ok(())
    }

    /// Reads a consistent snapshot and streams it; returns its position.
    /// The reading runs in its own task and hands chunks over a small
    /// channel, so at most a few chunks are in memory.
    async fn send_snapshot(
        &self,
        writer: &mut FrameWriter,
        name: &str,
    ) -> Result<SourcePosition, ServeError> {
        let snap = &self.snapshots;
        let Some(source) = snap.origin.primary() else {
            unreachable!("binlog files are never snapshot");
        };
        let (mut snapshot, catalog) = self.read_catalog(source, true).await?;
        let position = snapshot.position.clone();
        tracing::info!(
            %position,
            databases = catalog.databases.len(),
            tables = catalog.tables.len(),
            views = catalog.views.len(),
            objects = catalog.objects.len(),
            estimated_rows = catalog.estimated_rows,
            estimated_bytes = catalog.estimated_bytes,
            "snapshot started"
        );
        writer
            .send(&MasterMessage::SnapshotBegin {
                position: position.clone(),
                databases: catalog.databases,
                tables: catalog.tables.clone(),
                views: catalog.views,
                estimated_rows: catalog.estimated_rows,
                estimated_bytes: catalog.estimated_bytes,
                objects: catalog.objects,
            })
            .await?;
        let (tx, mut rx) = mpsc::channel::<(TableSchema, Vec<Row>)>(4);
        let tables = catalog.tables;
        let reader = tokio::spawn(async move {
            let mut total = 0;
            for t in &tables {
                total += snapshot
                    .read_table(&t.database, &t.name, |schema, rows| {
                        let tx = tx.clone();
                        async move { tx.send((schema, rows)).await.is_ok() }
                    })
                    .await?;
            }
            snapshot.finish().await;
            Ok::<u64, SnapshotError>(total)
        });
        let (mut rows_sent, mut bytes_sent, mut last_log) = (0u64, 0u64, std::time::Instant::now());
        while let Some((table, rows)) = rx.recv().await {
            rows_sent += rows.len() as u64;
            self.state.metrics.snapshot_rows.add(rows.len() as u64);
            self.state.update(name, |info| {
                info.snapshot_rows = rows_sent;
                info.snapshot_estimated_rows = catalog.estimated_rows;
            });
            bytes_sent += rows
                .iter()
                .map(crate::replica::statements::row_bytes)
                .sum::<usize>() as u64;
            writer
                .write_message(&MasterMessage::SnapshotRows { table, rows })
                .await?;
            writer.flush().await?;
            if last_log.elapsed() > Duration::from_secs(5) {
                tracing::info!(
                    rows = rows_sent,
                    bytes = bytes_sent,
                    estimated_rows = catalog.estimated_rows,
                    "snapshot progress"
                );
                last_log = std::time::Instant::now();
            }
        }
        let total = reader.await.map_err(|e| SnapshotError::Read {
            object: "snapshot".into(),
            reason: e.to_string(),
        })??;
        writer
            .send(&MasterMessage::SnapshotEnd {
                position: position.clone(),
                rows: total,
            })
            .await?;
        tracing::info!(rows = total, bytes = bytes_sent, %position, "snapshot sent");
        // The estimate came from table statistics; the copy is the truth.
        self.state.update(name, |info| {
            info.snapshot_rows = total;
            info.snapshot_estimated_rows = total;
        });
        Ok(position)
    }

    async fn serve(mut self, socket: TcpStream) -> Result<(), ServeError> {
        let (mut reader, mut writer) = match &self.snapshots.tls {
            None => crate::net::connection::split(socket, wire::HANDSHAKE_FRAME_LIMIT),
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        crate::net::connection::split(stream, wire::HANDSHAKE_FRAME_LIMIT)
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(addr = %self.addr, cause = %e, "refused a peer: TLS handshake failed");
                        return Ok(());
                    }
                    Err(_) => {
                        tracing::warn!(addr = %self.addr, "refused a peer: no TLS handshake within the timeout");
                        return Ok(());
                    }
                }
            }
        };
        writer.write_raw(&wire::greeting()).await?;
        let nonce = crate::net::auth::nonce();
        let token = self.snapshots.token.clone();
        writer
            .send(&MasterMessage::Challenge {
                nonce: nonce.to_vec(),
                token_required: token.is_some(),
            })
            .await?;
        let hello = match reader
            .read_message_timeout::<SlaveMessage>(HANDSHAKE_TIMEOUT)
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(addr = %self.addr, cause = %e, "refused a peer that did not complete the rowcast handshake");
                return Ok(());
            }
        };
        // Who is asking, and their answer to the challenge.
        let (who, answer) = match &hello {
            SlaveMessage::Hello { name, auth, .. } => (name.clone(), auth.clone()),
            SlaveMessage::StatusRequest { auth } => ("status".to_string(), auth.clone()),
            _ => (String::new(), None),
        };
        if let Some(token) = &token {
            let ok = answer
                .as_deref()
                .is_some_and(|a| crate::net::auth::verify(token, &nonce, &who, a));
            if !ok {
                let message = if answer.is_none() {
                    "this master requires a token: start the slave with --token-file pointing at the master's secret"
                } else {
                    "wrong token: the slave's --token-file does not hold the master's secret"
                };
                tracing::warn!(addr = %self.addr, name = %who, "refused a peer with a wrong or missing token");
                writer
                    .send(&MasterMessage::Error {
                        kind: ErrorKind::Unauthorized,
                        message: message.into(),
                    })
                    .await?;
                return Ok(());
            }
        }
        if let SlaveMessage::StatusRequest { .. } = hello {
            let status = self.status().await;
            writer.send(&MasterMessage::Status(status)).await?;
            return Ok(());
        }
        let SlaveMessage::Hello {
            protocol,
            name,
            after,
            ..
        } = hello
        else {
            tracing::warn!(addr = %self.addr, "refused a peer that did not start with Hello");
            return Ok(());
        };
        let span = tracing::info_span!("slave", name = %name, addr = %self.addr);
        let _enter = span.enter();
        let refusal = match (self.log.read_directly(), &after) {
            _ if protocol != wire::PROTOCOL_VERSION => Some(format!(
                "this master (rowcast {}) speaks rowcast protocol {}, the slave speaks protocol {}; \
                 run the same rowcast version on the master and every slave",
                env!("CARGO_PKG_VERSION"),
                wire::PROTOCOL_VERSION,
                protocol
            )),
            (Some(url), Some(_)) => Some(format!(
                "this master keeps its change log on NATS JetStream: start the slave with --log {url}"
            )),
            _ => None,
        };
        if let Some(message) = refusal {
            tracing::warn!(%message, "refused slave");
            writer
                .send(&MasterMessage::Error {
                    kind: ErrorKind::Incompatible,
                    message,
                })
                .await?;
            return Ok(());
        }
        // Every slave says next what it is being seeded with (a long list
        // for a big seed: a larger frame than the handshake's).
        reader.set_limit(16 << 20);
        let seed = reader
            .read_message_timeout::<SlaveMessage>(HANDSHAKE_TIMEOUT)
            .await;
        reader.set_limit(wire::HANDSHAKE_FRAME_LIMIT);
        match seed {
            Ok(Some(SlaveMessage::Seed { tables, resync })) => {
                self.seed = tables;
                self.resync = resync;
            }
            Ok(None) => return Ok(()),
            Ok(Some(_)) | Err(_) => {
                tracing::warn!(addr = %self.addr, "refused a slave that did not follow Hello with its seed state");
                return Ok(());
            }
        }
        writer
            .send(&MasterMessage::Welcome {
                last_seq: self.log.last_seq().await,
            })
            .await?;
        let kick = Arc::new(Notify::new());
        self.conn = self.state.register(
            &name,
            SlaveInfo {
                addr: self.addr,
                state: if after.is_some() {
                    "streaming"
                } else {
                    "snapshotting"
                },
                acked_seq: 0,
                acked_position: after.clone(),
                acked_source_time: 0,
                keep_from: 0,
                first_sent: 0,
                sent_seq: 0,
                oldest_unacked_time: 0,
                snapshot_rows: 0,
                snapshot_estimated_rows: 0,
                snapshot_bytes: 0,
                snapshot_estimated_bytes: 0,
                snapshot_eta_seconds: None,
                last_error: None,
                settings: SlaveSettings::default(),
                conn: 0,
                progress_at: Instant::now(),
                kick: kick.clone(),
                left_at: None,
            },
        );
        self.state
            .metrics
            .slaves_connected
            .set(self.state.connected_count());
        let conn = self.conn;
        // Dropping the stream ends it wherever it waits, a write to a peer
        // that stopped reading included.
        let result = tokio::select! {
            r = self.stream(name.clone(), after, reader, writer) => r,
            _ = kick.notified() => {
                tracing::warn!("a newer connection took this slave name over; closing this one");
                Ok(())
            }
        };
        self.state.update_conn(&name, conn, |info| {
            if info.state != "failed" {
                info.state = "disconnected";
            }
            info.left_at.get_or_insert_with(Instant::now);
        });
        self.state
            .metrics
            .slaves_connected
            .set(self.state.connected_count());
        result
    }

    async fn stream(
        &mut self,
        name: String,
        after: Option<SourcePosition>,
        mut reader: FrameReader,
        mut writer: FrameWriter,
    ) -> Result<(), ServeError> {
        // A slave without a checkpoint is seeded first (from binlog
        // files: starts at the log's beginning).
        let after = match (after, &self.snapshots.origin) {
            (Some(p), _) => Some(p),
            (None, Origin::BinlogDir(_)) => {
                // Its database holds the files' starting state: it needs
                // every record from the first on.
                let first = self.log.stats().await.first_seq;
                if first > 1 {
                    let message = format!(
                        "this master's change log no longer holds the start of the binlog files: \
                         retention dropped its records before sequence {first}, so a slave that has \
                         applied nothing cannot start here. Start a new master on a new --data-dir \
                         (with --start at the position its database was restored to), and raise \
                         --retain-mb/--retain-hours"
                    );
                    tracing::warn!(
                        first_seq = first,
                        "refused a new slave: the change log's start was dropped"
                    );
                    writer
                        .send(&MasterMessage::Error {
                            kind: ErrorKind::PositionPurged,
                            message,
                        })
                        .await?;
                    return Ok(());
                }
                let start = self.snapshots.log_start.clone();
                tracing::info!(start = ?start.as_ref().map(|p| p.to_string()), "new slave of binlog files: reading the change log from its start, without a snapshot");
                start
            }
            // A JetStream slave reads the stream itself: it is seeded by
            // one consistent snapshot (its stream cannot carry chunks).
            (None, Origin::Primary(_)) if self.log.read_directly().is_some() => {
                match self.send_snapshot(&mut writer, &name).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(cause = %e, "snapshot failed");
                        let _ = writer
                            .send(&MasterMessage::Error {
                                kind: ErrorKind::Internal,
                                message: e.to_string(),
                            })
                            .await;
                        return Ok(());
                    }
                }
            }
            (None, Origin::Primary(_)) => match self.seed_begin(&mut writer).await {
                Ok((p, plan)) => {
                    self.seed = plan;
                    Some(p)
                }
                Err(e) => {
                    tracing::error!(cause = %e, "seed failed to start");
                    let _ = writer
                        .send(&MasterMessage::Error {
                            kind: ErrorKind::Internal,
                            message: e.to_string(),
                        })
                        .await;
                    return Ok(());
                }
            },
        };
        // Tables to copy again, at this point of the slave's stream.
        if !self.resync.is_empty() {
            if let Err(e) = self.seed_tables_begin(&mut writer).await {
                tracing::error!(cause = %e, "resync failed to start");
                let _ = writer
                    .send(&MasterMessage::Error {
                        kind: ErrorKind::Internal,
                        message: e.to_string(),
                    })
                    .await;
                return Ok(());
            }
        }
        let mut seeder = match (self.seed.is_empty(), self.snapshots.origin.primary()) {
            (false, Some(source)) => Some(Seeder::new(
                std::mem::take(&mut self.seed),
                source.clone(),
                self.snapshots.point,
                self.snapshots.epoch,
                self.snapshots.threads,
            )),
            _ => None,
        };
        if let Some(s) = &seeder {
            tracing::info!(
                rows_done = s.progress.rows,
                estimated_rows = s.progress.estimated_rows,
                threads = self.snapshots.threads,
                "seeding the slave while streaming to it"
            );
        }
        if self.log.read_directly().is_some() {
            // The slave reads the log itself from here on.
            writer.flush().await?;
            self.wait_until_seeded(&name, reader).await;
            return Ok(());
        }
        let log = self.log.clone();
        let mut log_reader = match log.reader_after(after.as_ref()).await {
            Ok(r) => r,
            Err(e) => {
                let kind = match e.is_position_lost() {
                    true => ErrorKind::PositionPurged,
                    false => ErrorKind::Internal,
                };
                tracing::warn!(cause = %e, "cannot serve slave");
                writer
                    .send(&MasterMessage::Error {
                        kind,
                        message: e.to_string(),
                    })
                    .await?;
                return Ok(());
            }
        };
        tracing::info!(after = ?after.as_ref().map(|p| p.to_string()), "streaming to slave");
        let conn = self.conn;
        self.state.update_conn(&name, conn, |info| {
            info.state = "streaming";
            info.acked_position = after.clone();
        });
        writer
            .send(&MasterMessage::Welcome {
                last_seq: log.last_seq().await,
            })
            .await?;
        reader.set_limit(wire::HANDSHAKE_FRAME_LIMIT);
        let state = self.state.clone();
        let ack_name = name.clone();
        let mut acks = AbortOnDrop(tokio::spawn(async move {
            loop {
                match reader.read_message::<SlaveMessage>().await {
                    Ok(Some(SlaveMessage::Ack {
                        seq,
                        position,
                        source_time,
                        keep_from,
                    })) => {
                        state.update_conn(&ack_name, conn, |info| {
                            info.record_ack(seq, position, source_time, keep_from)
                        });
                    }
                    Ok(Some(SlaveMessage::SnapshotProgress { rows, estimated })) => {
                        state.update_conn(&ack_name, conn, |info| {
                            info.snapshot_rows = rows;
                            info.snapshot_estimated_rows = estimated;
                        });
                    }
                    Ok(Some(SlaveMessage::Settings(settings))) => {
                        state.update_conn(&ack_name, conn, |info| info.settings = settings);
                    }
                    Ok(Some(SlaveMessage::Failed { message })) => {
                        tracing::error!(slave = %ack_name, error = %message, "slave stopped with an error");
                        state.update_conn(&ack_name, conn, |info| {
                            info.state = "failed";
                            info.last_error = Some(message);
                            info.left_at = Some(Instant::now());
                        });
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }));
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        let tag = wire::transaction_frame_tag();
        let mut acks_done = false;
        // Seeding: the round being read, the last record sent, and the
        // record the stream must reach before the next round.
        let mut round: Option<Round> = None;
        let mut sent = match &after {
            Some(p) => log.seq_through(p).await.unwrap_or(0),
            None => 0,
        };
        let mut drain_to = log.last_seq().await;
        // The end of the last record sent (no chunk is read before it),
        // and whether it ended its transaction: a round between parts of
        // one would hold the slave's open local transaction against its
        // loaders.
        let mut sent_position = after.clone();
        let mut sent_whole = true;
        let result: Result<(), ServeError> = loop {
            if let Some(s) = seeder
                .as_mut()
                .filter(|_| round.is_none() && sent >= drain_to && sent_whole)
            {
                round = s.start_round(sent_position.clone());
                if round.is_none() {
                    tracing::info!(
                        rows = s.progress.rows,
                        bytes = s.progress.bytes,
                        "seed sent whole"
                    );
                    let p = s.progress.clone();
                    self.state.update_conn(&name, conn, |i| {
                        i.snapshot_rows = p.rows;
                        i.snapshot_estimated_rows = p.rows;
                        i.snapshot_bytes = p.bytes;
                        i.snapshot_estimated_bytes = p.bytes;
                        i.snapshot_eta_seconds = Some(0);
                    });
                    seeder = None;
                }
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break Ok(()),
                ack = &mut acks.0 => {
                    acks_done = true;
                    break match ack {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Ok(()),
                    };
                }
                chunk = next_chunk(&mut round), if round.is_some() => match (chunk, seeder.as_mut()) {
                    (Some(chunk), Some(s)) => {
                        s.note(&chunk);
                        let p = s.progress.clone();
                        self.state.metrics.snapshot_rows.add(chunk.rows.len() as u64);
                        self.state.update_conn(&name, conn, |i| {
                            i.snapshot_rows = p.rows;
                            i.snapshot_estimated_rows = p.estimated_rows;
                            i.snapshot_bytes = p.bytes;
                            i.snapshot_estimated_bytes = p.estimated_bytes;
                            i.snapshot_eta_seconds = p.eta_seconds();
                        });
                        writer.write_message(&MasterMessage::SeedChunk(chunk)).await?;
                        if writer.buffered() > 256 * 1024 {
                            writer.flush().await?;
                        }
                        heartbeat.reset();
                    }
                    (_, s) => {
                        let finished = match (round.take(), s) {
                            (Some(r), Some(s)) => s.finish_round(r).await,
                            _ => Ok(()),
                        };
                        if let Err(e) = finished {
                            tracing::error!(cause = %e, "seed read failed; the slave reconnects and goes on from its last chunk");
                            let _ = writer.send(&MasterMessage::Error { kind: ErrorKind::Internal, message: e.to_string() }).await;
                            break Ok(());
                        }
                        drain_to = log.last_seq().await;
                        // An idle primary sends no record: say where the
                        // stream is, so the slave's gate moves on (and its
                        // progress rows stay short).
                        let covered = self.state.covered.lock().unwrap().clone();
                        if let Some((position, _)) = covered.filter(|(_, seq)| sent >= *seq) {
                            let msg = MasterMessage::Heartbeat {
                                last_seq: log.last_seq().await,
                                position: Some(position),
                                now_ms: now_ms(),
                            };
                            writer.write_message(&msg).await?;
                        }
                    }
                },
                rec = log_reader.next(), if round.is_none() => match rec {
                    Ok(Some(rec)) => {
                        sent = rec.seq;
                        sent_whole = !rec.more;
                        sent_position = Some(rec.position.clone());
                        writer.write_frame_parts(&[&tag, &rec.payload]).await?;
                        self.state
                            .update_conn(&name, conn, |i| i.record_sent(rec.seq, rec.timestamp));
                        if writer.buffered() > 256 * 1024 {
                            writer.flush().await?;
                        }
                        heartbeat.reset();
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => {
                        tracing::error!(cause = %e, "change log read failed");
                        // A gap is permanent for this slave (what is missing
                        // will not come back): it must stop, not retry.
                        let kind = match e.is_position_lost() {
                            true => ErrorKind::PositionPurged,
                            false => ErrorKind::Internal,
                        };
                        let _ = writer.send(&MasterMessage::Error { kind, message: e.to_string() }).await;
                        break Ok(());
                    }
                },
                // Reached only when the log has nothing more right now.
                _ = async {}, if writer.buffered() > 0 => writer.flush().await?,
                _ = heartbeat.tick() => {
                    // With everything logged sent, where the stream is:
                    // no transaction ending before it will follow (a
                    // seeded slave's gate needs to know, see seed_gate).
                    let covered = self.state.covered.lock().unwrap().clone();
                    let position = covered
                        .filter(|(_, seq)| round.is_none() && sent >= *seq)
                        .map(|(p, _)| p);
                    let msg = MasterMessage::Heartbeat {
                        last_seq: log.last_seq().await,
                        position,
                        now_ms: now_ms(),
                    };
                    writer.write_message(&msg).await?;
                    writer.flush().await?;
                }
            }
        };
        // Let the ack reader take a last message (e.g. `Failed`) first.
        if !acks_done {
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut acks.0).await;
        }
        result
    }

    /// After the snapshot, a slave of a JetStream log still loads what it
    /// has queued (up to its receive budget) and reports progress on this
    /// connection; closing it then would reset the connection under those
    /// reports (unread data makes the close a TCP reset). So the slave
    /// hangs up, when it has loaded the copy and turns to the stream, or
    /// the master shuts down; however long the loading takes, as long as
    /// the slave is heard from within `SEED_SILENCE`.
    async fn wait_until_seeded(&mut self, name: &str, mut reader: FrameReader) {
        reader.set_limit(wire::HANDSHAKE_FRAME_LIMIT);
        loop {
            let msg = tokio::select! {
                _ = self.shutdown.changed() => return,
                msg = tokio::time::timeout(SEED_SILENCE, reader.read_message::<SlaveMessage>()) => msg,
            };
            // A slave host that vanished without closing the connection
            // must not hold this handler forever.
            let Ok(msg) = msg else {
                tracing::warn!(
                    silent_for = ?SEED_SILENCE,
                    "a JetStream slave being seeded sent nothing (no snapshot progress, no hang-up); dropping its connection: if it is still loading, it goes on and turns to the stream"
                );
                return;
            };
            match msg {
                Ok(Some(SlaveMessage::SnapshotProgress { rows, estimated })) => {
                    let conn = self.conn;
                    self.state.update_conn(name, conn, |info| {
                        info.snapshot_rows = rows;
                        info.snapshot_estimated_rows = estimated;
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }

    async fn status(&self) -> MasterStatus {
        status_of(
            &self.log,
            &self.state,
            &self.snapshots.origin,
            &mut PrimaryProbe::default(),
        )
        .await
    }
}

/// The next chunk of the round in flight (`None`: it is over).
async fn next_chunk(round: &mut Option<Round>) -> Option<crate::source::seed_plan::SeedChunk> {
    match round {
        Some(r) => r.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How long the primary may take to answer the position query on a kept
/// connection before it counts as unreadable (a frozen link never answers).
const PRIMARY_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the primary for reading its binlog end, kept between
/// reads (the metrics refresh asks every few seconds) and opened again
/// only when it fails.
#[derive(Default)]
pub struct PrimaryProbe {
    conn: Option<mysql_async::Conn>,
}

impl PrimaryProbe {
    /// The primary's binlog end right now, if it can be read.
    pub async fn position(&mut self, origin: &Origin) -> Option<SourcePosition> {
        let source = match origin {
            Origin::Primary(s) => s,
            // The files' end stands for the primary's binlog end.
            Origin::BinlogDir(dir) => {
                let dir = dir.clone();
                return tokio::task::spawn_blocking(move || dir.end())
                    .await
                    .ok()
                    .flatten();
            }
        };
        // A kept connection may have died since (the primary restarted,
        // wait_timeout): one more try on a fresh one.
        for _ in 0..2 {
            let fresh = self.conn.is_none();
            if fresh {
                self.conn = Some(source.connect().await.ok()?);
            }
            let conn = self.conn.as_mut()?;
            let read = tokio::time::timeout(
                PRIMARY_QUERY_TIMEOUT,
                crate::source::current_position(source, conn),
            )
            .await;
            match read {
                Ok(Ok(p)) => return Some(p),
                _ => {
                    self.conn = None;
                    if fresh {
                        return None;
                    }
                }
            }
        }
        None
    }
}

/// What lag in seconds is measured against: the commit time of the
/// oldest transaction a slave has not applied, as far as it can be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oldest {
    /// Nothing is pending.
    Nothing,
    /// That transaction's primary commit time.
    At(u32),
    /// Not in the log yet (the master is behind the primary): committed
    /// after this moment (epoch seconds, 0 when nothing is known).
    After(u32),
}

/// Lag in seconds at `now` (epoch seconds). Pending work counts at least
/// one second: commit times have whole seconds.
fn lag_seconds(now: u32, oldest: Oldest) -> u64 {
    match oldest {
        Oldest::Nothing => 0,
        Oldest::At(t) | Oldest::After(t) if t == 0 => 1,
        Oldest::At(t) | Oldest::After(t) => u64::from(now.saturating_sub(t)).max(1),
    }
}

/// The master's view of the primary, shared by every slave that applied
/// the whole log: behind it (and since when), or not.
#[derive(Debug, Clone, Copy)]
struct MasterFreshness {
    behind: bool,
    /// The newer of the newest record's commit time and the last moment
    /// the binlog reader was caught up (epoch seconds).
    known_until: u32,
}

/// With the primary's position unreadable (it is down or unreachable),
/// the binlog reader counts as current only while it has heard from the
/// primary within this long: an idle primary sends a heartbeat every
/// `HEARTBEAT_PERIOD`, a busy one events.
const READER_SILENCE: Duration = Duration::from_secs(crate::source::HEARTBEAT_PERIOD.as_secs() * 3);

impl MasterFreshness {
    fn read(
        state: &ServerState,
        primary: Option<&SourcePosition>,
        log_position: Option<&SourcePosition>,
        log_time: u32,
    ) -> MasterFreshness {
        Self::read_at(state, primary, log_position, log_time, now_ms())
    }

    /// `read` at `now` (ms since the epoch).
    fn read_at(
        state: &ServerState,
        primary: Option<&SourcePosition>,
        log_position: Option<&SourcePosition>,
        log_time: u32,
        now: u64,
    ) -> MasterFreshness {
        let caught_up = state.caught_up.lock().unwrap().clone();
        let read_to = [
            log_position.cloned(),
            caught_up.as_ref().and_then(|c| c.0.clone()),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| if b.is_after(&a) { b } else { a });
        let behind = match (primary, read_to) {
            // The primary may be committing what the master cannot read:
            // the reader is current only while it still hears from it.
            (None, _) => {
                let heard = state.reader_seen_ms.load(Ordering::Relaxed);
                heard == 0 || now.saturating_sub(heard) > READER_SILENCE.as_millis() as u64
            }
            (Some(_), None) => true,
            (Some(p), Some(r)) => {
                let p = SourcePosition {
                    epoch: r.epoch,
                    ..p.clone()
                };
                p.is_after(&r)
            }
        };
        let beat = caught_up.map(|c| (c.1 / 1000) as u32).unwrap_or(0);
        MasterFreshness {
            behind,
            known_until: log_time.max(beat),
        }
    }

    /// For a slave that applied the whole log.
    fn oldest(&self) -> Oldest {
        if self.behind {
            Oldest::After(self.known_until)
        } else {
            Oldest::Nothing
        }
    }
}

/// One slave as the master knows it, from its connection or from the
/// report it wrote to the log, before its lag is figured.
struct Seen {
    name: String,
    addr: String,
    /// `snapshotting`, `streaming`, `disconnected` or `failed`.
    state: &'static str,
    /// What it has applied; `None` while nothing is known (a slave being
    /// seeded that has not reported yet): no lag is counted.
    applied_seq: Option<u64>,
    applied_position: Option<SourcePosition>,
    /// Being seeded: nothing of the log is pending for it yet.
    seeding: bool,
    /// The commit time to count lag from when the record after the
    /// applied one cannot be read (retention dropped it).
    fallback_time: u32,
    /// When `applied_seq` last moved.
    progressed: Instant,
    snapshot_rows: u64,
    snapshot_estimated_rows: u64,
    snapshot_bytes: u64,
    snapshot_estimated_bytes: u64,
    snapshot_eta_seconds: Option<u64>,
    last_error: Option<String>,
    settings: SlaveSettings,
}

/// A slave that reports to the log whose report has not been rewritten
/// for this long is gone (crashed, cut off): a live one rewrites it at
/// least on every heartbeat (each second while idle, every half second at
/// most while applying), and gives up itself after `NATS_SILENCE` (15 s)
/// of failing writes. Generous, so that one long batch does not flap it.
const NATS_REPORT_SILENCE: Duration = Duration::from_secs(30);

/// Slaves that report their progress to the log (they read it
/// themselves): the log keeps the report, this master remembers when its
/// sequence last moved and when it was last rewritten.
fn seen_from_reports(
    reports: Vec<(String, crate::log::SlaveProgress)>,
    state: &ServerState,
) -> Vec<Seen> {
    reports
        .into_iter()
        .map(|(name, p)| {
            let progressed = state.nats_progressed(&name, p.seq);
            let silent = state.nats_report_age(&name, p.updated_ms) > NATS_REPORT_SILENCE;
            let shown = match (&p.error, p.position.is_some()) {
                (Some(_), _) => "failed",
                (None, false) => "snapshotting",
                // Its lag goes on counting from what it applied.
                (None, true) if silent => "disconnected",
                (None, true) => "streaming",
            };
            Seen {
                addr: "nats".into(),
                state: shown,
                applied_seq: Some(p.seq),
                seeding: p.position.is_none(),
                applied_position: p.position,
                fallback_time: p.source_time,
                progressed,
                snapshot_rows: 0,
                snapshot_estimated_rows: 0,
                snapshot_bytes: 0,
                snapshot_estimated_bytes: 0,
                snapshot_eta_seconds: None,
                last_error: p.error,
                settings: p.settings,
                name,
            }
        })
        .collect()
}

/// Slaves connected to this master (or that were): for a log slaves read
/// themselves, only those being seeded that have not reported yet.
async fn seen_from_connections(log: &View, state: &ServerState, reported: &[Seen]) -> Vec<Seen> {
    let direct = log.read_directly().is_some();
    let slaves_now: Vec<(String, SlaveInfo)> =
        state.slaves.lock().unwrap().clone().into_iter().collect();
    let mut seen = Vec::with_capacity(slaves_now.len());
    for (name, mut s) in slaves_now {
        if direct {
            if s.state == "snapshotting" && !reported.iter().any(|x| x.name == name) {
                seen.push(Seen {
                    name,
                    addr: s.addr.to_string(),
                    state: s.state,
                    applied_seq: None,
                    applied_position: None,
                    seeding: true,
                    fallback_time: 0,
                    progressed: s.progress_at,
                    snapshot_rows: s.snapshot_rows,
                    snapshot_estimated_rows: s.snapshot_estimated_rows,
                    snapshot_bytes: s.snapshot_bytes,
                    snapshot_estimated_bytes: s.snapshot_estimated_bytes,
                    snapshot_eta_seconds: s.snapshot_eta_seconds,
                    last_error: s.last_error.clone(),
                    settings: s.settings.clone(),
                });
            }
            continue;
        }
        // Sent nothing yet (nothing after its checkpoint or snapshot had
        // been logged): its position says how much of the log it has. The
        // search reads record headers (about 1 s for a full 64 MiB
        // segment), so its answer is kept.
        if s.sent_seq == 0 && s.acked_seq == 0 && s.state != "snapshotting" {
            if let Some(p) = s.acked_position.clone() {
                s.acked_seq = log.seq_through(&p).await.unwrap_or(0);
                let seq = s.acked_seq;
                state.update_conn(&name, s.conn, |info| {
                    if info.sent_seq == 0 && info.acked_seq == 0 {
                        info.acked_seq = seq;
                    }
                });
            }
        }
        seen.push(Seen {
            addr: s.addr.to_string(),
            state: s.state,
            applied_seq: Some(s.acked_seq),
            applied_position: s.acked_position.clone(),
            seeding: s.state == "snapshotting",
            // Cut by retention under a disconnected slave: the oldest
            // record kept is newer than what it misses.
            fallback_time: s.oldest_unacked_time,
            progressed: s.progress_at,
            snapshot_rows: s.snapshot_rows,
            snapshot_estimated_rows: s.snapshot_estimated_rows,
            snapshot_bytes: s.snapshot_bytes,
            snapshot_estimated_bytes: s.snapshot_estimated_bytes,
            snapshot_eta_seconds: s.snapshot_eta_seconds,
            last_error: s.last_error.clone(),
            settings: s.settings.clone(),
            name,
        });
    }
    seen
}

/// The master's status: its log, the primary, and every slave's state and
/// lag (see the module doc). `probe` reads the primary's position.
pub async fn status_of(
    log: &View,
    state: &ServerState,
    source: &Origin,
    probe: &mut PrimaryProbe,
) -> MasterStatus {
    status_and_freshness(log, state, source, probe).await.0
}

/// [`status_of`], with how many seconds the master itself is behind its
/// primary (what a slave that applied the whole log lags by: 0 when the
/// master has read the primary's whole binlog).
async fn status_and_freshness(
    log: &View,
    state: &ServerState,
    source: &Origin,
    probe: &mut PrimaryProbe,
) -> (MasterStatus, u64) {
    let primary_position = probe.position(source).await;
    let (log_position, tip_time) = state.log_tip.lock().unwrap().clone();
    let stats = log.stats().await;
    let log_time = stats.last_time.unwrap_or(tip_time);
    let fresh = MasterFreshness::read(
        state,
        primary_position.as_ref(),
        log_position.as_ref(),
        log_time,
    );
    let mut seen = seen_from_reports(log.reports().await, state);
    let connected = seen_from_connections(log, state, &seen).await;
    seen.extend(connected);
    let now = (now_ms() / 1000) as u32;
    let mut slaves: Vec<SlaveStatus> = Vec::with_capacity(seen.len());
    for s in seen {
        let lag_transactions = s
            .applied_seq
            .map_or(0, |seq| stats.last_seq.saturating_sub(seq));
        let applied_seq = s.applied_seq.unwrap_or(0);
        let oldest = if s.seeding {
            Oldest::Nothing
        } else if lag_transactions == 0 {
            fresh.oldest()
        } else {
            match log.time_at(applied_seq + 1).await {
                Some(t) => Oldest::At(t),
                None => Oldest::At(s.fallback_time),
            }
        };
        // A delayed slave waits on purpose until the oldest pending
        // transaction is `delay` old: only a wait past that is a stall.
        let waits_for_delay = match oldest {
            Oldest::At(t) if s.settings.delay_seconds > 0 => {
                u64::from(t) + s.settings.delay_seconds + state.stall_after.as_secs()
                    > u64::from(now)
            }
            _ => false,
        };
        let stalled = s.state == "streaming"
            && lag_transactions > 0
            && !waits_for_delay
            && s.progressed.elapsed() >= state.stall_after;
        slaves.push(SlaveStatus {
            addr: s.addr,
            state: if stalled { "stalled" } else { s.state }.to_string(),
            applied_seq,
            applied_position: s.applied_position,
            lag_transactions,
            lag_seconds: lag_seconds(now, oldest),
            snapshot_rows: s.snapshot_rows,
            snapshot_estimated_rows: s.snapshot_estimated_rows,
            snapshot_bytes: s.snapshot_bytes,
            snapshot_estimated_bytes: s.snapshot_estimated_bytes,
            snapshot_eta_seconds: s.snapshot_eta_seconds,
            last_error: s.last_error,
            settings: s.settings,
            name: s.name,
        });
    }
    slaves.sort_by(|a, b| a.name.cmp(&b.name));
    let behind = lag_seconds(now, fresh.oldest());
    let status = MasterStatus {
        primary: source.endpoint(),
        primary_position,
        log_position,
        log_time,
        log_first_seq: stats.first_seq,
        log_last_seq: stats.last_seq,
        log_segments: stats.segments,
        log_bytes: stats.bytes,
        log_dir: log.location(),
        slaves,
    };
    (status, behind)
}

/// Keeps the per-slave metrics (lag, stalled) current, and for JetStream
/// the memory of when each slave last advanced, without anyone asking for
/// status.
async fn refresh_slave_metrics(log: View, state: Arc<ServerState>, source: Origin) {
    let mut every = tokio::time::interval(SLAVE_METRICS_INTERVAL);
    // One primary connection for all the refreshes, not one each.
    let mut probe = PrimaryProbe::default();
    loop {
        every.tick().await;
        if !state.metrics.is_served() {
            // Nobody reads metrics: only JetStream progress needs
            // watching (no primary connection for that).
            for (name, p) in log.reports().await {
                state.nats_progressed(&name, p.seq);
                state.nats_report_age(&name, p.updated_ms);
            }
            continue;
        }
        let (status, behind) = status_and_freshness(&log, &state, &source, &mut probe).await;
        state.metrics.behind_primary_seconds.set(behind);
        state.metrics.log_size_bytes.set(status.log_bytes);
        state.metrics.set_slaves(
            status
                .slaves
                .iter()
                .map(|s| SlaveGauges {
                    name: s.name.clone(),
                    lag_seconds: s.lag_seconds,
                    lag_transactions: s.lag_transactions,
                    stalled: s.state == "stalled",
                    connected: matches!(s.state.as_str(), "streaming" | "stalled" | "snapshotting"),
                    failed: s.state == "failed",
                    delay_seconds: s.settings.delay_seconds,
                    snapshot_rows: s.snapshot_rows,
                    snapshot_estimated_rows: s.snapshot_estimated_rows,
                    snapshot_bytes: s.snapshot_bytes,
                    snapshot_estimated_bytes: s.snapshot_estimated_bytes,
                    snapshot_eta_seconds: s.snapshot_eta_seconds.unwrap_or(0),
                })
                .collect(),
        );
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::Transaction;
    use crate::log::segments::ChangeLog;

    fn txn(offset: u64, timestamp: u32) -> Transaction {
        Transaction::empty_at(offset, timestamp)
    }

    #[test]
    fn the_log_is_read_by_sequence_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path())
            .unwrap()
            .with_segment_bytes(1024);
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        let handle = log.subscribe();
        assert_eq!(handle.record_at(1).unwrap(), None);
        assert_eq!(
            handle
                .seq_through(&SourcePosition::new("b.000001", 4))
                .unwrap(),
            None
        );
        for i in 1..=200u64 {
            log.append(&[txn(100 * i, 1000 + i as u32)]).unwrap();
        }
        assert!(handle.stats().1 > 2, "several segments");
        for seq in 1..=200u64 {
            let (s, p, t) = handle.record_at(seq).unwrap().unwrap();
            assert_eq!((s, p.offset, t), (seq, 100 * seq, 1000 + seq as u32));
        }
        assert_eq!(handle.record_at(201).unwrap(), None);
        let through = |offset| handle.seq_through(&SourcePosition::new("b.000001", offset));
        assert_eq!(through(50).unwrap(), Some(0));
        assert_eq!(through(100).unwrap(), Some(1));
        assert_eq!(through(1050).unwrap(), Some(10));
        assert_eq!(through(15_099).unwrap(), Some(150));
        assert_eq!(through(20_000).unwrap(), Some(200));
        assert_eq!(through(99_999).unwrap(), Some(200));
    }

    #[test]
    fn lag_is_zero_only_when_nothing_is_pending() {
        assert_eq!(lag_seconds(1000, Oldest::Nothing), 0);
        assert_eq!(lag_seconds(1000, Oldest::At(990)), 10);
        // Committed this very second, or on a clock ahead of ours.
        assert_eq!(lag_seconds(1000, Oldest::At(1000)), 1);
        assert_eq!(lag_seconds(1000, Oldest::At(1005)), 1);
        assert_eq!(lag_seconds(1000, Oldest::After(0)), 1);
        assert_eq!(lag_seconds(1000, Oldest::After(997)), 3);
    }

    #[test]
    fn a_master_behind_the_primary_is_told_by_positions_and_heartbeats() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        let at = |o| SourcePosition::new("b.000002", o);
        let logged = at(500);
        // The primary is where the log is: nothing pending.
        let f = MasterFreshness::read(&state, Some(&at(500)), Some(&logged), 100);
        assert_eq!(f.oldest(), Oldest::Nothing);
        // The primary is further: the missing transaction is newer than
        // the newest logged one.
        let f = MasterFreshness::read(&state, Some(&at(900)), Some(&logged), 100);
        assert_eq!(f.oldest(), Oldest::After(100));
        // A heartbeat at the primary's end (events that are no
        // transaction): caught up.
        state.caught_up(Some(at(900)));
        let f = MasterFreshness::read(&state, Some(&at(900)), Some(&logged), 100);
        assert_eq!(f.oldest(), Oldest::Nothing);
        // Later writes: behind again, but not for longer than since the
        // heartbeat.
        let f = MasterFreshness::read(&state, Some(&at(1200)), Some(&logged), 100);
        let beat = (now_ms() / 1000) as u32;
        assert!(
            matches!(f.oldest(), Oldest::After(t) if t + 1 >= beat),
            "{f:?}"
        );
        // An unreachable primary, while the reader still hears from it
        // (the status query failed, not the stream): current.
        let now = now_ms();
        let f = MasterFreshness::read_at(&state, None, Some(&logged), 100, now);
        assert_eq!(f.oldest(), Oldest::Nothing);
    }

    #[test]
    fn an_unreachable_primary_makes_the_master_behind_once_the_reader_hears_nothing() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        let logged = SourcePosition::new("b.000002", 500);
        // Never heard from the primary: nothing says the master is current.
        let f = MasterFreshness::read(&state, None, Some(&logged), 100);
        assert_eq!(f.oldest(), Oldest::After(100));
        state.caught_up(Some(logged.clone()));
        let beat = now_ms();
        let at = |after: Duration| {
            MasterFreshness::read_at(
                &state,
                None,
                Some(&logged),
                100,
                beat + after.as_millis() as u64,
            )
        };
        assert_eq!(at(Duration::from_secs(1)).oldest(), Oldest::Nothing);
        assert_eq!(at(READER_SILENCE).oldest(), Oldest::Nothing);
        // Silent for longer: behind since the last heartbeat at least.
        let f = at(READER_SILENCE + Duration::from_secs(1));
        assert_eq!(f.oldest(), Oldest::After((beat / 1000) as u32));
        // A transaction read (even one filtered out) counts as hearing.
        state.reader_heard();
        let f = MasterFreshness::read(&state, None, Some(&logged), 100);
        assert_eq!(f.oldest(), Oldest::Nothing);
    }

    #[test]
    fn retention_keeps_what_slaves_may_read_again_not_what_they_applied() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        state.register("plain", slave_info("streaming", 80, 81));
        // Applied through 90, holding a prepare logged at 61.
        state.register("holding", slave_info("streaming", 90, 61));
        // Left long ago: no need; left just now: it may be restarting.
        let mut gone = slave_info("disconnected", 10, 11);
        gone.left_at = Instant::now().checked_sub(RESTART_GRACE * 2);
        state.register("gone", gone);
        assert_eq!(state.oldest_needed_seq(), Some(61));
        let mut restarting = slave_info("failed", 50, 51);
        restarting.left_at = Some(Instant::now());
        state.register("restarting", restarting);
        assert_eq!(state.oldest_needed_seq(), Some(51));
        state
            .slaves
            .lock()
            .unwrap()
            .get_mut("restarting")
            .unwrap()
            .left_at = Instant::now().checked_sub(RESTART_GRACE * 2);
        assert_eq!(state.oldest_needed_seq(), Some(61));
        // Connected, nothing known yet: keep everything.
        state.register("new", slave_info("streaming", 0, 0));
        assert_eq!(state.oldest_needed_seq(), Some(0));
        state.register("seeding", slave_info("snapshotting", 0, 0));
        assert_eq!(state.oldest_needed_seq(), None);
    }

    fn slave_info(state: &'static str, acked_seq: u64, keep_from: u64) -> SlaveInfo {
        SlaveInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            state,
            acked_seq,
            acked_position: None,
            acked_source_time: 0,
            keep_from,
            first_sent: 0,
            sent_seq: acked_seq,
            oldest_unacked_time: 0,
            snapshot_rows: 0,
            snapshot_estimated_rows: 0,
            snapshot_bytes: 0,
            snapshot_estimated_bytes: 0,
            snapshot_eta_seconds: None,
            last_error: None,
            settings: SlaveSettings::default(),
            conn: 0,
            progress_at: Instant::now(),
            kick: Arc::new(Notify::new()),
            left_at: None,
        }
    }

    fn streaming_info(acked_seq: u64, keep_from: u64) -> SlaveInfo {
        slave_info("streaming", acked_seq, keep_from)
    }

    #[test]
    fn a_replaced_connection_cannot_touch_the_one_that_replaced_it() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        let old = streaming_info(10, 11);
        let kicked = old.kick.clone();
        let first = state.register("s", old);
        let second = state.register("s", streaming_info(0, 0));
        assert_ne!(first, second);
        // The old connection was told to end (a permit is stored).
        assert!(futures_now(kicked.notified()));
        // Its handler ends and reports: the new entry is left alone.
        state.update_conn("s", first, |i| {
            i.state = "disconnected";
            i.keep_from = u64::MAX;
        });
        let slaves = state.slaves.lock().unwrap();
        assert_eq!(slaves["s"].state, "streaming");
        assert_eq!(slaves["s"].conn, second);
        drop(slaves);
        state.update_conn("s", second, |i| i.acked_seq = 12);
        assert_eq!(state.slaves.lock().unwrap()["s"].acked_seq, 12);
    }

    #[test]
    fn a_new_connection_keeps_what_the_last_one_asked_for_until_it_acks() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        // Applied through 90, holding a prepare logged at 61.
        state.register("s", streaming_info(90, 61));
        state.register("s", streaming_info(0, 0));
        assert_eq!(state.oldest_needed_seq(), Some(61));
    }

    /// Whether `f` is ready at once.
    fn futures_now(f: impl std::future::Future<Output = ()>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn a_jetstream_report_ages_from_when_this_master_saw_it_change() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        // First sighting of a report written a minute ago: a minute old.
        let old = now_ms() - 60_000;
        assert!(state.nats_report_age("a", old) >= Duration::from_secs(59));
        assert!(state.nats_report_age("a", old) > NATS_REPORT_SILENCE);
        // A newer report, even stamped by a clock far behind: fresh.
        assert!(state.nats_report_age("a", old + 1) < Duration::from_secs(5));
        // A stamp from a clock ahead counts as written now.
        assert!(state.nats_report_age("b", now_ms() + 3_600_000) < Duration::from_secs(5));
    }

    #[test]
    fn nothing_is_purged_for_a_new_connection_until_its_slave_acks() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        let conn = state.register("s", streaming_info(0, 0));
        let position = SourcePosition {
            epoch: 0,
            file: "binlog.000001".into(),
            offset: 4,
            gtid: None,
        };
        // A restarted slave holding a prepare logged at 61 is streamed
        // from there; the first record sent must not move the floor.
        state.update_conn("s", conn, |i| i.record_sent(62, 100));
        assert_eq!(state.oldest_needed_seq(), Some(0));
        assert_eq!(state.slaves.lock().unwrap()["s"].acked_seq, 61);
        // Its early ack says where it is and what it may read again.
        state.update_conn("s", conn, |i| i.record_ack(90, position.clone(), 0, 62));
        assert_eq!(state.oldest_needed_seq(), Some(62));
        // Records sent later do not undo what the ack said.
        state.update_conn("s", conn, |i| i.record_sent(63, 101));
        assert_eq!(state.slaves.lock().unwrap()["s"].acked_seq, 90);
        assert_eq!(state.oldest_needed_seq(), Some(62));
    }

    #[test]
    fn a_freshly_seeded_slave_keeps_only_what_came_after_its_snapshot() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        let conn = state.register("s", streaming_info(0, 0));
        let position = SourcePosition {
            epoch: 0,
            file: "binlog.000001".into(),
            offset: 4,
            gtid: None,
        };
        state.update_conn("s", conn, |i| i.record_sent(40, 100));
        // Nothing applied yet: the slave says "keep from 1".
        state.update_conn("s", conn, |i| i.record_ack(0, position, 0, 1));
        assert_eq!(state.oldest_needed_seq(), Some(40));
        assert_eq!(state.slaves.lock().unwrap()["s"].acked_seq, 39);
    }

    #[test]
    fn an_early_ack_is_not_undone_by_the_first_record_sent() {
        let state = ServerState::new(Metrics::new(), DEFAULT_STALL_AFTER);
        let conn = state.register("s", streaming_info(0, 0));
        let position = SourcePosition {
            epoch: 0,
            file: "binlog.000001".into(),
            offset: 4,
            gtid: None,
        };
        // Applied through 90, holding a prepare at 61: read again from 62.
        state.update_conn("s", conn, |i| i.record_ack(90, position, 0, 62));
        state.update_conn("s", conn, |i| i.record_sent(62, 100));
        let slaves = state.slaves.lock().unwrap();
        assert_eq!(slaves["s"].acked_seq, 90);
        assert_eq!(slaves["s"].keep_from, 62);
    }
}
