//! `rowcast master`: wires the stages together. The source stream feeds
//! the decoder; committed transactions go through a bounded channel to a
//! writer task that appends them in batches to the change log (any
//! [`LogWriter`]: segment files with one fsync per batch, or a JetStream
//! stream); the server seeds slaves and streams durable records to them
//! (or lets them read the log themselves, [`LogView::read_directly`]).
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
use crate::log::jetstream::NatsUrl;
use crate::log::segments::{EncodedTxn, Retention};
use crate::log::{ChangeLogError, Location, LogView, LogWriter, View, Writer, WriterOptions};
use crate::net::serve::{status_of, Listener, PrimaryProbe, ServerState, SnapshotSource};
use crate::ops::http::{BoxFuture, Endpoint, Probe};
use crate::ops::metrics::Metrics;
use crate::source::binlog_dir::{BinlogDirError, FileEvent, FileEvents};
use crate::source::continuity::StreamOrder;
use crate::source::decode::{DecodeError, Decoder};
use crate::source::filter::Filter;
use crate::source::gtid_set::GtidSet;
use crate::source::origin::Origin;
use crate::source::position::SourcePosition;
use crate::source::{self, SourceError, StreamStart};

#[derive(Clone)]
pub struct MasterConfig {
    pub origin: Origin,
    /// Binlog files only: where a new change log starts (`--start`);
    /// the first file's first event by default.
    pub start: Option<SourcePosition>,
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
    /// Connections a seed reads the primary with.
    pub snapshot_threads: usize,
    /// How seed chunks find their position (`None`: by server kind).
    pub seed_point: Option<crate::source::chunk_read::PointMethod>,
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
    Log(#[from] ChangeLogError),
    #[error("could not encode a transaction for the change log: {0}")]
    Encode(#[from] CodecError),
    #[error("cannot listen on {addr}: {reason}; choose a free address with --listen")]
    Listen { addr: String, reason: String },
    #[error(transparent)]
    BinlogDir(#[from] BinlogDirError),
    #[error(
        "--binlog-dir cannot keep its change log on NATS: slaves of a JetStream log are seeded \
         by the master, and binlog files have nothing to seed from. Drop --log (keep the change \
         log in --data-dir)"
    )]
    FilesOnNats,
    #[error(
        "this --data-dir holds the change log of a live primary (server id {server_id}), not of \
         binlog files: its slaves were seeded from that primary. Give --binlog-dir a new --data-dir"
    )]
    LogOfPrimary { server_id: u32 },
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
    mut config: MasterConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), MasterError> {
    let metrics = Metrics::new();
    // Served from the start: /healthz answers while the primary is checked.
    let endpoint = Endpoint::new(metrics.clone(), "master");
    if let Some(addr) = &config.metrics {
        crate::ops::http::serve(addr, endpoint.clone())
            .await
            .map_err(|e| MasterError::Listen {
                addr: addr.clone(),
                reason: format!("{e} (the --metrics address)"),
            })?;
    }
    if config.nats.is_none() {
        metrics
            .log_retention_limit_bytes
            .set(config.retention.max_bytes);
    }
    let mut primary = match &config.origin {
        Origin::Primary(source) => {
            let mut conn = source.connect().await?;
            let info = source::check_primary(source, &mut conn).await?;
            tracing::info!(primary = %source.endpoint(), version = %info.version, "primary checked: row-based binlog with full images");
            Some((source.clone(), conn, info))
        }
        Origin::BinlogDir(_) if config.nats.is_some() => return Err(MasterError::FilesOnNats),
        Origin::BinlogDir(dir) => {
            tracing::info!(dir = %dir.path().display(), "reading archived binlog files");
            None
        }
    };
    let location = match &config.nats {
        Some(url) => Location::JetStream {
            url: url.clone(),
            chunk_bytes: config.nats_chunk_bytes,
        },
        None => Location::Segments {
            dir: config.data_dir.clone(),
            segment_bytes: config.segment_bytes,
        },
    };
    let mut log = crate::log::open_writer(
        &location,
        WriterOptions {
            retention: config.retention.clone(),
            part_bytes: config.part_bytes,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        },
    )
    .await?;
    // The log may keep the part size it began with.
    config.part_bytes = log.part_bytes();
    let config = &config;
    // Only a new change log needs a start in the files.
    let files_start = match (&primary, &config.origin, log.start()) {
        (None, Origin::BinlogDir(dir), None) => Some(match &config.start {
            Some(start) => start.clone(),
            None => dir.first_position()?,
        }),
        (None, Origin::BinlogDir(_), Some(_)) => {
            if let (Some(server_id), _) = log.followed() {
                // Its start is a live primary's position, not the
                // files' beginning a new slave of files starts from.
                return Err(MasterError::LogOfPrimary { server_id });
            }
            log.start()
        }
        _ => None,
    };
    let info = primary.as_ref().map(|(_, _, info)| info.clone());
    match (log.start(), primary.take()) {
        (None, Some((source, mut conn, info))) => {
            // A MySQL primary resumes by GTID *set* after a failover:
            // keep the set the log starts from.
            let (mut start, gtids) =
                source::current_position_with_gtid_set(&source, &mut conn).await?;
            start.gtid = match info.is_mariadb {
                true => source::gtid_at(&mut conn, &start).await,
                false => source::current_gtid(&mut conn).await,
            };
            tracing::info!(position = %start, log = %log.location(), gtid_executed = ?gtids.as_ref().map(|g| g.to_string()), "new change log starts at the primary's current position");
            log.initialise(start, gtids).await?;
        }
        (None, None) => {
            let start = files_start
                .clone()
                .expect("set for a new log of binlog files");
            tracing::info!(position = %start, log = %log.location(), "new change log starts in the binlog files");
            log.initialise(start, None).await?;
        }
        (Some(logged), _) => {
            if let Some(asked) = &config.start {
                if asked.cmp_location(&logged) != std::cmp::Ordering::Equal {
                    tracing::warn!(start = %asked, log_start = %logged, "--start is ignored: the change log already exists and resumes where it stopped");
                }
            }
        }
    }

    let listener = bind(config).await?;
    let view = log.view();
    match view.read_directly() {
        None => {
            tracing::info!(listen = %config.listen, data_dir = %log.location(), "serving slaves")
        }
        Some(_) => {
            tracing::info!(listen = %config.listen, stream = %log.location(), "serving snapshots; slaves read the change log themselves")
        }
    }
    let state = Arc::new(ServerState::new(metrics.clone(), config.stall_after));
    endpoint.set_probe(Arc::new(MasterProbe {
        log: view.clone(),
        state: state.clone(),
        origin: config.origin.clone(),
        primary: tokio::sync::Mutex::new(PrimaryProbe::default()),
    }));
    // Lag needs the newest record's commit time from the start, not only
    // after the next append.
    *state.log_tip.lock().unwrap() = log.tip();
    // The covered sequence (see `ToWriter::Covered`) counts from the log's
    // end, not from 0.
    metrics.last_seq.set(view.last_seq().await);
    let resume = log.resume().expect("initialised above");
    // Which primary is this? A different server than the log followed
    // means a failover: positions get a new epoch and the stream resumes
    // by GTID until the first transaction from the new primary is logged.
    let (followed, epoch) = log.followed();
    // (Binlog files name no server to follow: their positions are the
    // files'.)
    let epoch = match info
        .as_ref()
        .and_then(|i| Some((i, next_epoch(followed, epoch, i, &resume)?)))
    {
        Some((info, epoch)) => {
            log.set_followed(info.server_id, epoch).await?;
            epoch
        }
        None => epoch,
    };
    // Until the first transaction of a new epoch is logged, the stream is
    // requested by GTID; a MySQL server wants every GTID the log covers.
    let mysql_gtids = match (info.as_ref().map(|i| i.is_mariadb), resume.epoch != epoch) {
        (Some(false), true) => log.executed_gtids()?,
        _ => None,
    };
    let log_start = files_start.is_some().then(|| log.start()).flatten();
    let server = spawn_server(
        config,
        info.as_ref(),
        epoch,
        log_start,
        (listener, view),
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
    let writer = tokio::spawn(write_loop(log, rx, state.clone()));

    let reading = BinlogReading {
        config,
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
    // The writer drains what was decoded, so nothing handed over is lost
    // (unless shut down while the log is unreachable: then the restart
    // reads it again from the binlog).
    let written = writer.await.ok();
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
    info: Option<&source::PrimaryInfo>,
    epoch: u32,
    log_start: Option<SourcePosition>,
    (listener, log): (TcpListener, View),
    state: &Arc<ServerState>,
    shutdown: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let snapshots = SnapshotSource {
        origin: config.origin.clone(),
        log_start,
        is_mariadb: info.is_some_and(|i| i.is_mariadb),
        filter: Arc::new(config.filter.clone()),
        token: config.token.clone().map(Arc::new),
        tls: config.tls.clone(),
        epoch,
        threads: config.snapshot_threads.max(1),
        point: config
            .seed_point
            .unwrap_or(if info.is_some_and(|i| i.is_mariadb) {
                crate::source::chunk_read::PointMethod::SnapshotStatus
            } else {
                crate::source::chunk_read::PointMethod::TableLock
            }),
    };
    tokio::spawn(Listener::new(listener, log, state.clone(), snapshots, shutdown.clone()).run())
}

/// What a master says on `/readyz` and `/status`.
struct MasterProbe {
    log: View,
    state: Arc<ServerState>,
    origin: Origin,
    /// One primary connection for every `/status`, kept between them.
    primary: tokio::sync::Mutex<PrimaryProbe>,
}

impl Probe for MasterProbe {
    fn readiness(&self) -> BoxFuture<'_, Result<(), String>> {
        let files = matches!(self.origin, Origin::BinlogDir(_));
        Box::pin(async move { self.state.readiness(files) })
    }

    fn status(&self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            let mut primary = self.primary.lock().await;
            let status = status_of(&self.log, &self.state, &self.origin, &mut primary).await;
            crate::ops::health::json_text(&status)
        })
    }
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
                            self.state.source_lost(s.to_string());
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
    let mut events = match &config.origin {
        Origin::Primary(source) => Events::Live(
            source::open_stream(source, config.server_id, from, start)
                .await
                .map_err(|e| (last.clone(), e.into()))?,
        ),
        Origin::BinlogDir(dir) => Events::Files(
            dir.events_from(from)
                .map_err(|e| (last.clone(), e.into()))?,
        ),
    };
    tracing::info!(from = %from, "streaming binlog");
    state.source_reading();
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
    // Events since the reader last told the status it is being fed.
    let mut unheard = 0u32;
    loop {
        let (event, waited) = match &mut events {
            Events::Live(stream) => match live_event(config, stream, silence, &last).await {
                Ok(e) => e,
                Err(e) => return Err((last, e.into())),
            },
            Events::Files(files) => match files.next().await {
                Ok(FileEvent::Event(e)) => (e, false),
                Ok(FileEvent::File(name)) => {
                    decoder.set_file(name);
                    continue;
                }
                Ok(FileEvent::End(at)) => {
                    // As a primary's heartbeat: everything there is was read.
                    state.reader_heard();
                    state.caught_up(Some(SourcePosition { epoch, ..at }));
                    continue;
                }
                Err(e) => return Err((last, e.into())),
            },
        };
        // Whatever the event (also one of a transaction the filter drops
        // entirely), the primary is streaming to this reader: with the
        // primary's position unreadable, status goes by this. Once every
        // 256 events read ahead is as good (well under a millisecond in a
        // backlog) and spares a clock read per event; an event that had to
        // be waited for (a quiet stream's, a heartbeat) always tells.
        unheard += 1;
        if waited || unheard >= 256 {
            state.reader_heard();
            unheard = 0;
        }
        // The primary sends a heartbeat only when this dump has read its
        // whole binlog: for lag, the moment the master was caught up.
        if let Some(beat) = source::as_heartbeat(&event) {
            let at = beat.position.map(|(file, offset)| SourcePosition {
                epoch,
                ..SourcePosition::new(file, offset)
            });
            // Only once nothing of a transaction is open: a heartbeat
            // inside one cannot happen, but the decoder is the judge.
            if let (Some(p), false) = (&at, decoder.in_transaction()) {
                if tx.send(ToWriter::Covered(p.clone())).await.is_err() {
                    return Ok(last);
                }
            }
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

/// Where stream_once reads events from.
enum Events {
    Live(mysql_async::BinlogStream),
    Files(FileEvents),
}

/// The next event of a live stream, and whether it had to be waited for
/// (it was not read ahead), or why there is none.
async fn live_event(
    config: &MasterConfig,
    stream: &mut mysql_async::BinlogStream,
    silence: Duration,
    last: &SourcePosition,
) -> Result<(mysql_common::binlog::events::Event, bool), SourceError> {
    let source = config
        .origin
        .primary()
        .expect("a live stream has a primary");
    // An event already read ahead needs no timer: arming one (a clock
    // read, which is a system call on some virtual machines) for each of
    // a backlog's millions of events was about 5% of the decode's time.
    let mut next = stream.next();
    let ready = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(std::pin::Pin::new(&mut next), cx))
    })
    .await;
    let (got, waited) = match ready {
        std::task::Poll::Ready(got) => (Ok(got), false),
        std::task::Poll::Pending => (tokio::time::timeout(silence, next).await, true),
    };
    match got {
        Err(_) => Err(SourceError::Lost {
            endpoint: source.endpoint().into(),
            reason: format!("no event or heartbeat for {silence:?}"),
        }),
        Ok(None) => Err(SourceError::Lost {
            endpoint: source.endpoint().into(),
            reason: "the binlog stream ended".into(),
        }),
        Ok(Some(Err(e))) => Err(match source.classify(e) {
            // The dump's first answer says the file is gone: name what
            // rowcast asked for.
            SourceError::BinlogPurged { reason, .. } => SourceError::BinlogPurged {
                position: last.to_string(),
                reason,
            },
            other => other,
        }),
        Ok(Some(Ok(event))) => Ok((event, waited)),
    }
}

/// What the source side hands the log writer.
enum ToWriter {
    /// With its share of the queue's memory budget, returned once written.
    Txn(EncodedTxn, OwnedSemaphorePermit),
    /// Time to apply retention.
    Tick,
    /// The primary's heartbeat: everything before this position was read.
    Covered(SourcePosition),
}

/// The log writer: takes everything queued, appends it as one batch
/// (one fsync, or one round of publish acks), and repeats; applies
/// retention on ticks.
async fn write_loop(
    mut log: Writer,
    mut rx: mpsc::Receiver<ToWriter>,
    state: Arc<ServerState>,
) -> Result<(), ChangeLogError> {
    const MAX_BATCH: usize = 1024;
    let mut permits = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut tick = false;
        let mut covered = None;
        match first {
            ToWriter::Txn(t, p) => {
                batch.push(t);
                permits.push(p);
            }
            ToWriter::Tick => tick = true,
            ToWriter::Covered(p) => covered = Some(p),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(ToWriter::Txn(t, p)) => {
                    batch.push(t);
                    permits.push(p);
                }
                Ok(ToWriter::Tick) => tick = true,
                // Later transactions in this batch count in the sequence
                // too: a later one, which is only more cautious.
                Ok(ToWriter::Covered(p)) => covered = Some(p),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let appended = match log.append(batch).await {
                Ok(Some(a)) => a,
                // Shut down while retrying: the restart reads it again.
                Ok(None) => return Ok(()),
                Err(e) => {
                    state.metrics.errors.add(1);
                    tracing::error!(cause = %e, "change log append failed; stopping");
                    return Err(e);
                }
            };
            let m = &state.metrics;
            m.transactions.add(appended.transactions);
            m.rows.add(appended.rows);
            m.bytes.add(appended.bytes);
            if let Some(last_seq) = appended.last_seq {
                m.last_seq.set(last_seq);
            }
            if let Some((position, time)) = appended.tip {
                *state.log_tip.lock().unwrap() = (Some(position), time);
            }
            permits.clear();
        }
        if let Some(p) = covered {
            state.set_covered(p, state.metrics.last_seq.get());
        }
        if tick {
            if let Some(keep_from) = state.oldest_needed_seq() {
                log.retain(keep_from).await?;
            }
        }
    }
    Ok(())
}
