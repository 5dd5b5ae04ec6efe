//! `rowcast master`: wires the stages together. The source stream feeds
//! the decoder; committed transactions go through a bounded channel to a
//! writer thread that appends them to the change log with group fsync; the
//! server streams durable records to slaves.
//!
//! A supervisor loop owns reconnection: a retryable source error (lost
//! connection, primary restarting) reconnects with exponential backoff and
//! resumes after the last transaction handed to the log; a fatal one stops
//! the master with the error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::log::codec::CodecError;
use crate::log::jetstream::{NatsError, NatsLog, NatsUrl, Tail};
use crate::log::segments::{ChangeLog, EncodedTxn, LogError, Retention};
use crate::net::serve::{Listener, ServeLog, ServerState, SnapshotSource};
use crate::ops::metrics::Metrics;
use crate::source::continuity::StreamOrder;
use crate::source::decode::{DecodeError, Decoder};
use crate::source::filter::Filter;
use crate::source::gtid_set::GtidSet;
use crate::source::position::SourcePosition;
use crate::source::{self, Source, SourceError, StreamStart};

#[derive(Clone)]
pub struct MasterConfig {
    pub source: Source,
    pub listen: String,
    pub data_dir: PathBuf,
    pub server_id: u32,
    pub filter: Filter,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<String>,
    /// Shared secret slaves must prove they know.
    pub token: Option<Vec<u8>>,
    pub retention: Retention,
    pub segment_bytes: u64,
    /// TLS for slave connections, if configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Transactions larger than this (row event bytes) are logged and
    /// shipped in parts.
    pub part_bytes: usize,
    /// Keep the change log on this JetStream stream instead of `data_dir`.
    pub nats: Option<NatsUrl>,
    /// Largest message body on NATS (default: the server's max_payload).
    pub nats_chunk_bytes: Option<usize>,
    /// A slave with work pending whose applied sequence has not moved for
    /// this long shows as `stalled`.
    pub stall_after: Duration,
}

/// Encoded transactions waiting for the log writer may hold at most this
/// much memory; the binlog reader waits when it is used up.
const WRITER_QUEUE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("could not encode a transaction for the change log: {0}")]
    Encode(#[from] CodecError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("cannot listen on {addr}: {reason}; choose a free address with --listen")]
    Listen { addr: String, reason: String },
}

/// A server id for the replication connection that real replicas will not
/// use: high bit set, the rest from the data dir, so two masters on one
/// primary differ.
pub fn default_server_id(data_dir: &std::path::Path) -> u32 {
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let h = crc32fast::hash(path.to_string_lossy().as_bytes());
    0x8000_0000 | (h & 0x7fff_ffff)
}

pub async fn run(
    config: MasterConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), MasterError> {
    let source = &config.source;
    let metrics = Metrics::new();
    if let Some(addr) = &config.metrics {
        crate::ops::metrics::serve(addr.clone(), metrics.clone(), "master")
            .await
            .map_err(|e| MasterError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let mut conn = source.connect().await?;
    let info = source::check_primary(source, &mut conn).await?;
    tracing::info!(primary = %source.endpoint(), version = %info.version, "primary checked: row-based binlog with full images and metadata");
    if let Some(url) = &config.nats {
        return run_on_nats(&config, url, &info, conn, metrics, shutdown).await;
    }
    let mut log = ChangeLog::open(&config.data_dir)?.with_segment_bytes(config.segment_bytes);
    if log.start_position().is_none() {
        // A MySQL primary resumes by GTID *set* after a failover: keep
        // the set the log starts from.
        let (mut start, gtids) = source::current_position_with_gtid_set(source, &mut conn).await?;
        start.gtid = match info.is_mariadb {
            true => source::gtid_at(&mut conn, &start).await,
            false => source::current_gtid(&mut conn).await,
        };
        tracing::info!(position = %start, gtid_executed = ?gtids.as_ref().map(|g| g.to_string()), "new change log starts at the primary's current position");
        log.initialise_with_gtids(start, gtids)?;
    }
    drop(conn);

    let listener = bind(&config).await?;
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "serving slaves");
    let state = Arc::new(ServerState::new(metrics.clone(), config.stall_after));
    // Lag needs the newest record's commit time from the start, not only
    // after the next append.
    if let Ok(Some((_, position, time))) = log.subscribe().record_at(log.end().last_seq) {
        *state.log_tip.lock().unwrap() = (Some(position), time);
    }
    let resume = log.resume_position().expect("initialised above");
    // Which primary is this? A different server than the log followed
    // means a failover: positions get a new epoch and the stream resumes
    // by GTID until the first transaction from the new primary is logged.
    let (followed, epoch) = log.source();
    let epoch = match next_epoch(followed, epoch, &info, &resume) {
        Some(epoch) => {
            log.set_source(info.server_id, epoch)?;
            epoch
        }
        None => epoch,
    };
    // Until the first transaction of a new epoch is logged, the stream is
    // requested by GTID; a MySQL server wants every GTID the log covers.
    let mysql_gtids = match (info.is_mariadb, resume.epoch != epoch) {
        (false, true) => log.executed_gtids()?,
        _ => None,
    };
    let server = spawn_server(
        &config,
        &info,
        epoch,
        listener,
        ServeLog::Local(log.subscribe()),
        &state,
        &shutdown,
    );

    let (tx, rx) = mpsc::channel::<ToWriter>(4096);
    let budget = Arc::new(Semaphore::new(WRITER_QUEUE_BYTES >> 10));
    // Retention also runs while the primary is idle.
    let ticker = tx.clone();
    let tick_task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            if ticker.send(ToWriter::Tick).await.is_err() {
                return;
            }
        }
    });
    let tip_state = state.clone();
    let retention = config.retention.clone();
    let writer = std::thread::spawn(move || write_loop(log, rx, tip_state, retention));

    let reading = BinlogReading {
        config: &config,
        epoch,
        mysql_gtids: mysql_gtids.as_ref(),
        tx: &tx,
        budget: &budget,
        state: &state,
    };
    let result = reading
        .supervise(resume, &mut shutdown, || writer.is_finished())
        .await;
    drop(tx);
    tick_task.abort();
    // The writer drains what was decoded, so nothing handed over is lost.
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .ok()
        .and_then(|r| r.ok());
    server.abort();
    match (result, written) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(Err(e))) => Err(e.into()),
        (Ok(()), _) => Ok(()),
    }
}

/// Which primary is this? A different server than the log followed means
/// a failover: positions get a new epoch and the stream resumes by GTID
/// until the first transaction from the new primary is logged. Returns
/// the epoch to record, or `None` when nothing changes.
fn next_epoch(
    followed: Option<u32>,
    epoch: u32,
    info: &source::PrimaryInfo,
    resume: &SourcePosition,
) -> Option<u32> {
    match followed {
        None => Some(epoch),
        Some(id) if id == info.server_id => None,
        Some(old) => {
            tracing::warn!(old_server_id = old, new_server_id = info.server_id, epoch = epoch + 1, gtid = ?resume.gtid.as_ref().map(|g| g.to_string()), "the primary changed: following the new one from the last logged GTID");
            Some(epoch + 1)
        }
    }
}

async fn bind(config: &MasterConfig) -> Result<TcpListener, MasterError> {
    TcpListener::bind(&config.listen)
        .await
        .map_err(|e| MasterError::Listen {
            addr: config.listen.clone(),
            reason: e.to_string(),
        })
}

/// The listener for slaves (and `rowcast status`), on its own task.
fn spawn_server(
    config: &MasterConfig,
    info: &source::PrimaryInfo,
    epoch: u32,
    listener: TcpListener,
    log: ServeLog,
    state: &Arc<ServerState>,
    shutdown: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let snapshots = SnapshotSource {
        source: config.source.clone(),
        is_mariadb: info.is_mariadb,
        filter: Arc::new(config.filter.clone()),
        token: config.token.clone().map(Arc::new),
        tls: config.tls.clone(),
        epoch,
    };
    tokio::spawn(Listener::new(listener, log, state.clone(), snapshots, shutdown.clone()).run())
}

/// What reading the binlog into the log writer's queue needs.
struct BinlogReading<'a> {
    config: &'a MasterConfig,
    epoch: u32,
    mysql_gtids: Option<&'a GtidSet>,
    tx: &'a mpsc::Sender<ToWriter>,
    budget: &'a Arc<Semaphore>,
    state: &'a Arc<ServerState>,
}

impl BinlogReading<'_> {
    /// Reads from `resume` on, reconnecting with backoff after retryable
    /// errors, until shutdown, a fatal error, or the writer stopping.
    async fn supervise(
        &self,
        mut resume: SourcePosition,
        shutdown: &mut watch::Receiver<bool>,
        writer_stopped: impl Fn() -> bool,
    ) -> Result<(), MasterError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let began = std::time::Instant::now();
            let outcome = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                // The writer stopped on an error (a full disk, say): stop
                // now, even while the primary is idle (run reports it).
                _ = self.tx.closed() => return Ok(()),
                r = stream_once(self.config, &resume, self.epoch, self.mysql_gtids, self.tx, self.budget, self.state) => r,
            };
            match outcome {
                Ok(last) => {
                    resume = last;
                    backoff = Duration::from_millis(200);
                }
                Err((last, e)) => {
                    resume = last;
                    match e {
                        MasterError::Source(ref s) if s.is_retryable() => {
                            self.state.metrics.reconnects.add(1);
                            // After a stream that had been working, start
                            // afresh: a link that breaks now and then must
                            // not be rejoined ever more slowly.
                            if began.elapsed() >= Duration::from_secs(10) {
                                backoff = Duration::from_millis(200);
                            }
                            tracing::warn!(cause = %s, retry_in = ?backoff, "primary connection lost; reconnecting");
                            tokio::select! {
                                _ = shutdown.changed() => return Ok(()),
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                        e => return Err(e),
                    }
                }
            }
            if writer_stopped() {
                return Ok(());
            }
        }
    }
}

/// `run` with the change log on a JetStream stream: the same binlog
/// reading, a publisher instead of the segment writer, and a listener that
/// only seeds slaves (they read the stream themselves).
async fn run_on_nats(
    config: &MasterConfig,
    url: &NatsUrl,
    info: &source::PrimaryInfo,
    mut conn: mysql_async::Conn,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), MasterError> {
    let source = &config.source;
    let mut nats = NatsLog::open(url, Some(&config.retention)).await?;
    if let Some(bytes) = config.nats_chunk_bytes {
        nats = nats.with_chunk_bytes(bytes);
    }
    // A transaction read again after a restart must be cut into the same
    // parts and chunks as before: the stream keeps the sizes it began with.
    let mut config = config.clone();
    match nats.sizes().await? {
        Some((part_bytes, chunk_bytes)) => {
            if part_bytes != config.part_bytes {
                tracing::warn!(stream = %url, part_bytes, "--part-kb differs from the stream's; keeping the stream's");
            }
            config.part_bytes = part_bytes;
            nats = nats.with_chunk_bytes(chunk_bytes);
        }
        None => {
            nats.set_sizes(config.part_bytes, nats.chunk_bytes())
                .await?
        }
    }
    let config = &config;
    let nats = Arc::new(nats);
    let mut tail = nats.tail().await?;
    let start = match nats.start().await? {
        Some(start) => start,
        None => {
            let mut start = source::current_position(source, &mut conn).await?;
            start.gtid = match info.is_mariadb {
                true => source::gtid_at(&mut conn, &start).await,
                false => source::current_gtid(&mut conn).await,
            };
            tracing::info!(position = %start, stream = %url, "new change log stream starts at the primary's current position");
            nats.set_start(&start).await?;
            start
        }
    };
    drop(conn);
    // A stream emptied by retention has no tail: the recorded tip says
    // where publishing stopped.
    let tip = nats.tip().await?;
    if tail.published.is_none() {
        tail.published = tip.clone();
        tail.resume = tip;
    }
    let resume = tail.resume.clone().unwrap_or(start);
    let (followed, epoch) = match nats.source().await? {
        Some((id, epoch)) => (Some(id), epoch),
        None => (None, 0),
    };
    let epoch = match next_epoch(followed, epoch, info, &resume) {
        Some(epoch) => {
            nats.set_source(info.server_id, epoch).await?;
            epoch
        }
        None => epoch,
    };
    let listener = bind(config).await?;
    tracing::info!(listen = %config.listen, stream = %url, resume = %resume, "serving snapshots; the change log is on NATS JetStream");
    let state = Arc::new(ServerState::new(metrics.clone(), config.stall_after));
    *state.log_tip.lock().unwrap() = (tail.resume.clone(), 0);
    let server = spawn_server(
        config,
        info,
        epoch,
        listener,
        ServeLog::Nats(nats.clone()),
        &state,
        &shutdown,
    );
    let (tx, rx) = mpsc::channel::<ToWriter>(4096);
    let budget = Arc::new(Semaphore::new(WRITER_QUEUE_BYTES >> 10));
    let writer = tokio::spawn(publish_loop(
        nats.clone(),
        rx,
        state.clone(),
        tail,
        shutdown.clone(),
    ));
    let reading = BinlogReading {
        config,
        epoch,
        mysql_gtids: None,
        tx: &tx,
        budget: &budget,
        state: &state,
    };
    let result = reading
        .supervise(resume, &mut shutdown, || writer.is_finished())
        .await;
    drop(tx);
    // The publisher drains what was decoded (unless shut down while NATS
    // is unreachable: then the restart reads it again from the binlog).
    let published = writer.await.ok();
    server.abort();
    match (result, published) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(Err(e))) => Err(e),
        (Ok(()), _) => Ok(()),
    }
}

/// The JetStream publisher: batches what is queued, publishes it (retrying
/// while NATS is unreachable, from the stream's tail as it then is) and
/// skips what the stream already holds.
async fn publish_loop(
    nats: Arc<NatsLog>,
    mut rx: mpsc::Receiver<ToWriter>,
    state: Arc<ServerState>,
    mut tail: Tail,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), MasterError> {
    const MAX_BATCH: usize = 1024;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut permits = Vec::with_capacity(MAX_BATCH);
    let mut tip_written: Option<std::time::Instant> = None;
    while let Some(first) = rx.recv().await {
        for item in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            if let ToWriter::Txn(t, p) = item {
                let fresh = tail
                    .published
                    .as_ref()
                    .is_none_or(|p| t.position.is_after(p));
                if fresh {
                    batch.push(t);
                }
                permits.push(p);
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
        }
        if batch.is_empty() {
            permits.clear();
            continue;
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match nats.publish(&batch, &mut tail).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    state.metrics.errors.add(1);
                    tracing::warn!(cause = %e, retry_in = ?backoff, "publishing to NATS failed; retrying from the stream's tail");
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Some of the batch may be stored: continue after it.
                    match nats.tail().await {
                        Ok(t) => tail = t,
                        Err(e) => tracing::warn!(cause = %e, "cannot read the stream's tail yet"),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let m = &state.metrics;
        m.transactions
            .add(batch.iter().filter(|t| !t.more).count() as u64);
        m.rows.add(batch.iter().map(|t| t.rows as u64).sum());
        m.bytes
            .add(batch.iter().map(|t| t.bytes.len() as u64).sum());
        if let Some(last) = batch.iter().rev().find(|t| !t.more) {
            *state.log_tip.lock().unwrap() = (Some(last.position.clone()), last.timestamp);
            if tip_written.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                // Best effort: the stream's own tail is the first source.
                if let Err(e) = nats.set_tip(&last.position).await {
                    tracing::warn!(cause = %e, "could not record the published tip");
                }
                tip_written = Some(std::time::Instant::now());
            }
        }
        batch.clear();
        permits.clear();
    }
    Ok(())
}

/// Reads the binlog from `from` until the stream fails; returns the
/// position after the last transaction sent to the writer (where the next
/// attempt resumes) with the error.
async fn stream_once(
    config: &MasterConfig,
    from: &SourcePosition,
    epoch: u32,
    mysql_gtids: Option<&GtidSet>,
    tx: &mpsc::Sender<ToWriter>,
    budget: &Arc<Semaphore>,
    state: &ServerState,
) -> Result<SourcePosition, (SourcePosition, MasterError)> {
    let mut last = from.clone();
    let by_gtid = from.epoch != epoch;
    let start = match (by_gtid, mysql_gtids) {
        (false, _) => StreamStart::Position,
        (true, Some(set)) => StreamStart::MySqlGtidSet(set),
        (true, None) => StreamStart::MariaDbGtid,
    };
    let mut stream = source::open_stream(&config.source, config.server_id, from, start)
        .await
        .map_err(|e| (last.clone(), e.into()))?;
    tracing::info!(from = %from, "streaming binlog");
    let mut decoder = Decoder::with_epoch(
        if by_gtid {
            String::new()
        } else {
            from.file.clone()
        },
        epoch,
    )
    .with_part_bytes(config.part_bytes);
    // Several heartbeat periods of silence mean the connection is dead
    // even if TCP has not noticed.
    let silence = source::HEARTBEAT_PERIOD * 5;
    let mut order = StreamOrder::after(from);
    loop {
        let event = match tokio::time::timeout(silence, stream.next()).await {
            Err(_) => {
                return Err((
                    last,
                    SourceError::Lost {
                        endpoint: config.source.endpoint().into(),
                        reason: format!("no event or heartbeat for {silence:?}"),
                    }
                    .into(),
                ))
            }
            Ok(None) => {
                return Err((
                    last,
                    SourceError::Lost {
                        endpoint: config.source.endpoint().into(),
                        reason: "the binlog stream ended".into(),
                    }
                    .into(),
                ))
            }
            Ok(Some(Err(e))) => {
                let e = match config.source.classify(e) {
                    // The dump's first answer says the file is gone: name
                    // what rowcast asked for.
                    SourceError::BinlogPurged { reason, .. } => SourceError::BinlogPurged {
                        position: last.to_string(),
                        reason,
                    },
                    other => other,
                };
                return Err((last, e.into()));
            }
            Ok(Some(Ok(event))) => event,
        };
        // Whatever the event (also one of a transaction the filter drops
        // entirely), the primary is streaming to this reader: with the
        // primary's position unreadable, status goes by this.
        state.reader_heard();
        // The primary sends a heartbeat only when this dump has read its
        // whole binlog: for lag, the moment the master was caught up.
        if let Some(beat) = source::as_heartbeat(&event) {
            let at = beat.position.map(|(file, offset)| SourcePosition {
                epoch,
                ..SourcePosition::new(file, offset)
            });
            state.caught_up(at);
            continue;
        }
        match decoder.feed(&event) {
            Ok(Some(mut txn)) => {
                // A binlog reset under a live dump can go on in a new
                // file: what went back must not be logged as new. (The
                // parts of one transaction share its GTID: the first
                // part speaks for them.)
                let went_back = if txn.part == 0 {
                    order.next(&txn.position)
                } else {
                    Ok(())
                };
                if let Err(reason) = went_back {
                    let e = SourceError::BinlogReset {
                        position: last.to_string(),
                        reason,
                    };
                    return Err((last, e.into()));
                }
                config.filter.retain(&mut txn);
                let encoded = EncodedTxn::new(&txn).map_err(|e| (last.clone(), e.into()))?;
                drop(txn);
                let kib = (encoded.bytes.len() >> 10).clamp(1, WRITER_QUEUE_BYTES >> 10) as u32;
                let Ok(permit) = budget.clone().acquire_many_owned(kib).await else {
                    return Ok(last);
                };
                let (position, commits) = (encoded.position.clone(), !encoded.more);
                if tx.send(ToWriter::Txn(encoded, permit)).await.is_err() {
                    // The writer stopped (its error is reported by run).
                    return Ok(last);
                }
                // A reconnect resumes after a whole transaction; parts of
                // the next one are read again and skipped by the log.
                if commits {
                    last = position;
                }
            }
            Ok(None) => {}
            Err(e) => return Err((last, e.into())),
        }
    }
}

/// What the source side hands the log writer.
enum ToWriter {
    /// With its share of the queue's memory budget, returned once written.
    Txn(EncodedTxn, OwnedSemaphorePermit),
    /// Time to apply retention.
    Tick,
}

/// The log writer: takes everything queued, appends it with one fsync, and
/// repeats; applies retention on ticks. Runs on its own thread because
/// fsync blocks.
fn write_loop(
    mut log: ChangeLog,
    mut rx: mpsc::Receiver<ToWriter>,
    state: Arc<ServerState>,
    retention: Retention,
) -> Result<(), LogError> {
    const MAX_BATCH: usize = 1024;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut permits = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut tick = false;
        match first {
            ToWriter::Txn(t, p) => {
                batch.push(t);
                permits.push(p);
            }
            ToWriter::Tick => tick = true,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(ToWriter::Txn(t, p)) => {
                    batch.push(t);
                    permits.push(p);
                }
                Ok(ToWriter::Tick) => tick = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let before = log.end();
            if let Err(e) = log.append_encoded(&batch) {
                state.metrics.errors.add(1);
                tracing::error!(cause = %e, "change log append failed; stopping");
                return Err(e);
            }
            let m = &state.metrics;
            m.transactions
                .add(batch.iter().filter(|t| !t.more).count() as u64);
            m.rows.add(batch.iter().map(|t| t.rows as u64).sum());
            let end = log.end();
            if end.segment == before.segment {
                m.bytes.add(end.offset.saturating_sub(before.offset));
            }
            m.last_seq.set(end.last_seq);
            if let Some(last) = batch.iter().rev().find(|t| !t.more) {
                *state.log_tip.lock().unwrap() = (Some(last.position.clone()), last.timestamp);
            }
            batch.clear();
            permits.clear();
        }
        if tick {
            if let Some(keep_from) = state.oldest_needed_seq() {
                log.purge(&retention, keep_from)?;
            }
        }
    }
    Ok(())
}
