//! `rowcast slave`: connects to a master, shakes hands with its checkpoint,
//! and applies the transactions it receives.
//!
//! Each session has one [`Feed`]: where its transactions come from (the
//! master's stream, or with `--log` and a checkpoint the change log read
//! directly through [`LogView`]) and where its progress goes; both fill
//! the same queue for one `apply_loop`. A reader task receives into that
//! bounded channel while the applier commits, so network and database
//! work overlap. The slave reconnects
//! with backoff when the master goes away or goes silent (no frame or
//! heartbeat within the timeout); errors that a retry cannot fix (not a
//! master, incompatible protocol, purged position, a diverged replica)
//! stop it with the reason.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::log::change::Transaction;
use crate::log::codec::MAX_ENCODED_LEN;
use crate::log::jetstream::{NatsError, NatsUrl};
use crate::log::{ChangeLogError, Location, LogView, SlaveProgress, View};
use crate::net::connection::ConnectionError;
use crate::net::connection::FrameWriter;
use crate::net::tls::{ClientTls, ConnectError};
use crate::net::wire::{self, ErrorKind, MasterMessage, SlaveMessage, SlaveSettings};
use crate::ops::health::{SlaveHealth, SlaveState};
use crate::ops::http::Endpoint;
use crate::ops::metrics::Metrics;
use crate::replica::apply::{Applier, ApplyError};
use crate::replica::db_rewrite::DbRewrite;
use crate::replica::seed_loaders::{LoadJob, SeedLoaders};
use crate::source::Source;

#[derive(Debug, Clone)]
pub struct SlaveConfig {
    pub master: String,
    pub target: Source,
    pub name: String,
    /// Silence from the master longer than this drops the connection.
    pub master_timeout: Duration,
    /// Forget the checkpoint and seed the replica again.
    pub resnapshot: bool,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<String>,
    /// Shared secret to prove to the master.
    pub token: Option<Vec<u8>>,
    /// Set the target's `read_only` so only privileged users can write.
    pub read_only: bool,
    /// TLS to the master, if configured.
    pub tls: Option<ClientTls>,
    /// Read the change log from this stream; the master only seeds.
    pub nats: Option<NatsUrl>,
    /// Tables to copy again from the primary (`--resync db.table`).
    pub resync: Vec<(String, String)>,
    /// Connections that load seed chunks into the replica.
    pub snapshot_threads: usize,
    /// Apply each transaction no earlier than its primary commit time
    /// plus this (`--delay`; zero: as soon as it arrives).
    pub delay: Duration,
    /// `--rewrite-db FROM=TO`: the primary's database FROM is kept as TO.
    pub rewrite_db: Vec<(String, String)>,
    /// `--skip-at POSITION`: skip the transaction at this position once.
    pub skip_at: Option<String>,
    /// `/readyz` answers 503 once the lag (minus `delay`) is over this.
    pub max_lag: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SlaveError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{addr} is not a rowcast master: {what}")]
    NotAMaster { addr: String, what: String },
    #[error("master {addr} refused this slave: {message}")]
    Refused { addr: String, message: String },
    #[error("master {addr} is unavailable: {reason}")]
    Unavailable { addr: String, reason: String },
    #[error(transparent)]
    Log(#[from] ChangeLogError),
    #[error(
        "the change log stream jumped from sequence {last} to {found}: the transactions in \
         between never arrived (the master's log lost them under its reader, or two slaves \
         run with this --name); nothing was skipped, the slave stopped. Run one slave per \
         --name and restart it; if the master says its position is purged, seed it again with \
         `rowcast slave --resnapshot`"
    )]
    SequenceGap { last: u64, found: u64 },
    #[error(
        "--resync cannot run on a replica delayed by --delay: the copy holds the table as it is \
         now, and the stream must catch up with it, which would apply every delayed \
         transaction at once (a DROP the delay is there to catch included). Restart once without \
         --delay to resync (the whole replica catches up), or without --resync to keep the delay"
    )]
    ResyncDelayed,
    #[error(
        "{error}. Fix the replica and restart the slave, or skip this one transaction{named} \
         with `rowcast slave ... --skip-at {at}` (the replica then lacks its changes; the skip \
         is recorded in rowcast.skipped and shown by `rowcast status`)"
    )]
    Stopped {
        error: Box<ApplyError>,
        at: String,
        /// How the transaction is named when not by the failing change's
        /// own position.
        named: &'static str,
    },
    #[error(
        "{error}. The slave stopped at {at}, before reaching --skip-at {skip}: nothing was \
         skipped. Fix the replica for this transaction and restart with the same flag, or skip \
         this one instead (`--skip-at {at}`)"
    )]
    StoppedBefore {
        error: Box<ApplyError>,
        at: String,
        skip: String,
    },
}

impl SlaveError {
    fn is_retryable(&self) -> bool {
        match self {
            SlaveError::Apply(e) => e.is_retryable(),
            SlaveError::Unavailable { .. } => true,
            SlaveError::Log(e) => e.is_retryable(),
            _ => false,
        }
    }
}

pub async fn run(
    config: SlaveConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SlaveError> {
    if !config.resync.is_empty() && !config.delay.is_zero() {
        return Err(SlaveError::ResyncDelayed);
    }
    // A mistyped --skip-at is refused before anything is done.
    if let Some(text) = &config.skip_at {
        crate::replica::skip::parse_skip_at(text)?;
    }
    // Rules that cannot work stop the slave before it touches anything.
    let rewrite = DbRewrite::new(&config.rewrite_db).map_err(ApplyError::from)?;
    let metrics = Metrics::new();
    metrics.set_slave_name(&config.name);
    let health = Arc::new(SlaveHealth::new(
        &config.name,
        &config.master,
        config.max_lag,
        config.delay,
    ));
    if let Some(addr) = &config.metrics {
        let endpoint = Endpoint::new(metrics.clone(), "slave");
        endpoint.set_probe(health.clone());
        crate::ops::http::serve(addr, endpoint)
            .await
            .map_err(|e| SlaveError::Unavailable {
                addr: addr.clone(),
                reason: format!("cannot serve metrics and health (--metrics): {e}"),
            })?;
    }
    let mut applier = Applier::connect(&config.target, &config.name).await?;
    if config.read_only {
        if let Err(e) = applier.set_read_only().await {
            tracing::warn!(cause = %e, "could not set read_only on the target: users can still write to the replica. Fix: GRANT SUPER (MySQL) or READ_ONLY ADMIN (MariaDB) to rowcast's user, or pass --no-read-only");
        }
    }
    if config.resnapshot {
        tracing::warn!(name = %config.name, "--resnapshot: forgetting the checkpoint; the replicated databases will be dropped and copied again");
        applier.forget_checkpoint().await?;
        applier.forget_seed().await?;
    }
    // --rewrite-db: stored for a fresh replica, else the rules it applied
    // with (db_rewrite.rs, rewrite_rules.rs).
    applier.adopt_rewrite(rewrite).await?;
    // Each start with --resync copies those tables again (once: a
    // reconnect goes on with the copy); without a checkpoint the whole
    // seed copies them anyway.
    if applier.checkpoint().position.is_some() {
        applier.resync_pending = config.resync.clone();
    }
    applier.set_skip(config.skip_at.as_deref())?;
    if !applier.seed().is_empty() {
        tracing::info!(
            tables = applier.seed().tables().count(),
            "the seed goes on from its last loaded chunks"
        );
    }
    let cp = applier.checkpoint();
    tracing::info!(
        name = %config.name,
        target = %config.target.endpoint(),
        checkpoint = %cp.position.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "none".into()),
        "slave ready"
    );
    let mut backoff = Duration::from_millis(200);
    let mut connected_once = false;
    loop {
        let from_stream = match &config.nats {
            Some(url) if applier.checkpoint().position.is_some() => Some(url),
            _ => None,
        };
        let began = std::time::Instant::now();
        let result = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            r = session(&config, from_stream, &mut applier, &mut connected_once, &metrics, &health) => r,
        };
        health.set_state(match &result {
            Ok(()) if config.nats.is_some() && from_stream.is_none() => SlaveState::Starting,
            Ok(()) => SlaveState::Disconnected("the master closed the connection".into()),
            Err(e) if e.is_retryable() => SlaveState::Disconnected(e.to_string()),
            Err(e) => SlaveState::Failed(e.to_string()),
        });
        match result {
            // Seeded: go on with the stream at once.
            Ok(()) if config.nats.is_some() && from_stream.is_none() => continue,
            Ok(()) => {
                tracing::warn!(master = %config.master, "master closed the connection; reconnecting");
                backoff = Duration::from_millis(200);
            }
            Err(e) if e.is_retryable() => {
                metrics.reconnects.add(1);
                backoff = backoff_after(backoff, began.elapsed());
                tracing::warn!(cause = %e, retry_in = ?backoff, "connection problem; reconnecting");
                if let SlaveError::Apply(_) = e {
                    // The target connection may be broken, or frozen with
                    // a COMMIT still on its way: start it afresh. The old
                    // applier is never used again (its view of the
                    // checkpoint may be stale); the new session kills the
                    // old one if it still holds the session lock, and
                    // reads the checkpoint only once it is gone.
                    let resync = std::mem::take(&mut applier.resync_pending);
                    applier = loop {
                        match applier.reconnect().await {
                            Ok(mut a) => {
                                a.resync_pending = resync;
                                a.set_skip(config.skip_at.as_deref())?;
                                break a;
                            }
                            Err(err) if err.is_retryable() => {
                                backoff = (backoff * 2).min(Duration::from_secs(5));
                                tracing::warn!(cause = %err, retry_in = ?backoff, "cannot reconnect to the target; retrying");
                                tokio::select! {
                                    _ = shutdown.changed() => return Ok(()),
                                    _ = tokio::time::sleep(backoff) => {}
                                }
                            }
                            Err(err) => return Err(err.into()),
                        }
                    };
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The wait before reconnecting after a session that lasted `lasted`:
/// doubling while attempts keep failing, but afresh after a session that
/// had been working, so a link that breaks now and then is not rejoined
/// ever more slowly.
fn backoff_after(backoff: Duration, lasted: Duration) -> Duration {
    if lasted >= Duration::from_secs(10) {
        Duration::from_millis(200)
    } else {
        backoff
    }
}

/// Limits of one local commit holding several source transactions.
const MAX_BATCH_TXNS: usize = 200;
const MAX_BATCH_ROWS: usize = 20_000;
/// Frames received but not yet applied may hold at most this much (as
/// encoded); the reader stops reading from the master when it is used up.
const RECEIVE_QUEUE_BYTES: usize = 32 << 20;

/// An item from the master with its share of the receive budget, which
/// goes back when the item is dropped.
type Received = (Result<Incoming, SlaveError>, Option<OwnedSemaphorePermit>);

enum Incoming {
    Txn(u64, Transaction),
    /// The master is idle; with a position, no transaction ending before
    /// it follows.
    Heartbeat(Option<crate::source::position::SourcePosition>),
    Snapshot(MasterMessage),
}

/// Where a session's transactions come from (a reader task filling
/// `rx`) and where its progress goes (`reporter`): the master's rowcast
/// stream, or the change log read directly. `apply_loop` sees only this.
struct Feed {
    /// The task reading into `rx`; it ends with the feed (first: fields
    /// drop in order, and the reader goes before the link is closed).
    _reader: AbortOnDrop,
    rx: mpsc::Receiver<Received>,
    reporter: Reporter,
    /// Return once a snapshot is loaded: the log is read directly next.
    seed_only: bool,
    /// Connections to load seed chunks with.
    seed_threads: usize,
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One session: connects to where the transactions come from and applies
/// them until it ends. With a checkpoint and a log slaves read themselves
/// (`--log`), that is the log; otherwise the master (which seeds a slave
/// without a checkpoint, and then returns).
async fn session(
    config: &SlaveConfig,
    direct: Option<&NatsUrl>,
    applier: &mut Applier,
    connected_once: &mut bool,
    metrics: &Metrics,
    health: &SlaveHealth,
) -> Result<(), SlaveError> {
    let mut feed = match direct {
        Some(url) => {
            let location = Location::JetStream {
                url: url.clone(),
                chunk_bytes: None,
            };
            Feed::from_log(&location, &config.name, applier).await?
        }
        None => Feed::from_master(config, applier, connected_once).await?,
    };
    let settings = settings_of(config, applier);
    health.set_settings(settings.clone());
    let cp = applier.checkpoint();
    health.connected(seeding(applier), cp.seq, cp.position.clone());
    feed.reporter
        .send(&SlaveMessage::Settings(settings), applier)
        .await?;
    apply_loop(&mut feed, applier, metrics, config, health).await
}

/// Whether the replica is still being copied (a seed, or a snapshot not
/// yet loaded), for `/readyz`.
fn seeding(applier: &Applier) -> bool {
    applier.checkpoint().position.is_none() || !applier.seed().is_empty()
}

/// What this slave tells `rowcast status` of its delay, renames and skips.
fn settings_of(config: &SlaveConfig, applier: &Applier) -> SlaveSettings {
    SlaveSettings {
        delay_seconds: config.delay.as_secs(),
        rewrite_db: config.rewrite_db.clone(),
        skipped: applier.skipped().to_vec(),
    }
}

impl Feed {
    /// The master's stream: handshake with the checkpoint, then frames.
    async fn from_master(
        config: &SlaveConfig,
        applier: &mut Applier,
        connected_once: &mut bool,
    ) -> Result<Feed, SlaveError> {
        let addr = config.master.clone();
        let unavailable = |reason: String| SlaveError::Unavailable {
            addr: addr.clone(),
            reason,
        };
        let (mut reader, mut writer) = match crate::net::tls::connect(
            &addr,
            config.tls.as_ref(),
            MAX_ENCODED_LEN + 16,
        )
        .await
        {
            Ok(rw) => rw,
            Err(ConnectError::Tcp(e)) => return Err(unavailable(e)),
            Err(e @ ConnectError::Tls(_)) => {
                return Err(SlaveError::Refused {
                    addr,
                    message: e.to_string(),
                })
            }
        };

        let mut greeting = [0u8; wire::GREETING_LEN];
        match tokio::time::timeout(
            Duration::from_secs(10),
            reader.read_exact_raw(&mut greeting),
        )
        .await
        {
            Err(_) => return Err(SlaveError::NotAMaster {
                addr,
                what:
                    "it sent no rowcast greeting within 10s (if the master uses TLS, pass --tls-ca)"
                        .into(),
            }),
            Ok(Err(ConnectionError::Io(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // A master that is shutting down closes at once; a port that is
                // never a master closes the same way. Only the first is normal.
                return Err(if *connected_once {
                    unavailable("closed the connection during the greeting".into())
                } else {
                    SlaveError::NotAMaster {
                    addr,
                    what: "it closed the connection without a rowcast greeting (if the master uses TLS, pass --tls-ca)".into(),
                }
                });
            }
            // A TLS alert (e.g. the master wants a client certificate).
            Ok(Err(ConnectionError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(SlaveError::Refused {
                    addr,
                    message: format!(
                        "TLS: {e}; check --tls-cert/--tls-key against the master's --tls-client-ca"
                    ),
                })
            }
            Ok(Err(e)) => return Err(unavailable(e.to_string())),
            Ok(Ok(())) => {}
        }
        if &greeting[..8] != wire::MAGIC {
            return Err(SlaveError::NotAMaster {
                addr,
                what: wire::describe_foreign_greeting(&greeting),
            });
        }
        let nonce = match reader
            .read_message_timeout::<MasterMessage>(Duration::from_secs(10))
            .await
        {
            Ok(Some(MasterMessage::Challenge {
                nonce,
                token_required,
            })) => {
                if token_required && config.token.is_none() {
                    return Err(SlaveError::Refused {
                    addr,
                    message: "this master requires a token: start the slave with --token-file pointing at the master's secret".into(),
                });
                }
                nonce
            }
            Ok(other) => {
                return Err(SlaveError::NotAMaster {
                    addr,
                    what: format!("no challenge after the greeting ({other:?})"),
                })
            }
            Err(e) => return Err(unavailable(e.to_string())),
        };
        // From before the oldest held XA transaction after a restart.
        let (_, after) = applier.resume_point();
        let hello = SlaveMessage::Hello {
            protocol: wire::PROTOCOL_VERSION,
            auth: config
                .token
                .as_deref()
                .map(|t| crate::net::auth::respond(t, &nonce, &config.name)),
            name: config.name.clone(),
            after,
        };
        writer
            .send(&hello)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        // What of a seed is left (its progress), and what to copy again:
        // as stored, not as the last session believed (its loads in
        // flight when it ended may not have committed).
        applier.load_seed().await?;
        // The master knows the primary's database names only.
        let seed = SlaveMessage::Seed {
            tables: applier
                .seed()
                .tables()
                .cloned()
                .map(|t| applier.rewrite().seed_table_to_source(t))
                .collect(),
            resync: applier.resync_pending.clone(),
        };
        writer
            .send(&seed)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        match reader
            .read_message_timeout::<MasterMessage>(Duration::from_secs(30))
            .await
        {
            Ok(Some(MasterMessage::Welcome { last_seq })) => {
                tracing::info!(master = %addr, master_last_seq = last_seq, "connected to master");
                *connected_once = true;
            }
            Ok(Some(MasterMessage::Error { kind, message })) => {
                return Err(match kind {
                    ErrorKind::Internal => unavailable(message),
                    ErrorKind::Incompatible
                    | ErrorKind::PositionPurged
                    | ErrorKind::Unauthorized => SlaveError::Refused { addr, message },
                })
            }
            Ok(Some(other)) => {
                return Err(SlaveError::NotAMaster {
                    addr,
                    what: format!("unexpected first message {other:?}"),
                })
            }
            Ok(None) => {
                return Err(unavailable(
                    "closed the connection during the handshake".into(),
                ))
            }
            Err(e) => return Err(unavailable(e.to_string())),
        }

        // Parts of a large transaction applied before the connection broke
        // are rolled back: the master sends them again from the first.
        applier.abandon_parts().await;
        // Holding prepared XA transactions, say at once what retention must
        // keep and where this slave is: until a first ack the master keeps
        // everything for it. (Without held prepares the first ack comes
        // once the queue drains or ACK_EVERY into applying; its sequence
        // is then surely one of this master's log.)
        if let (Some(keep_from), Some(position)) = (
            applier.held_keep_from(),
            applier.checkpoint().position.clone(),
        ) {
            let ack = SlaveMessage::Ack {
                seq: applier.checkpoint().seq,
                position,
                source_time: 0,
                keep_from,
            };
            writer
                .send(&ack)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        }
        let (tx, rx) = mpsc::channel::<Received>(256);
        let timeout = config.master_timeout;
        let reader_addr = addr.clone();
        let budget = Arc::new(Semaphore::new(RECEIVE_QUEUE_BYTES >> 10));
        let rewrite = applier.rewrite().clone();
        let reader_task = tokio::spawn(async move {
            loop {
                let (message, permit) = match tokio::time::timeout(timeout, reader.read_frame())
                    .await
                {
                    Err(_) => (Err(ConnectionError::Timeout(timeout)), None),
                    Ok(Err(e)) => (Err(e), None),
                    Ok(Ok(None)) => (Ok(None), None),
                    Ok(Ok(Some(frame))) => {
                        let kib = (frame.len() >> 10).clamp(1, RECEIVE_QUEUE_BYTES >> 10) as u32;
                        let Ok(permit) = budget.clone().acquire_many_owned(kib).await else {
                            return;
                        };
                        (
                            crate::log::codec::decode::<MasterMessage>(&frame)
                                .map(|mut m| {
                                    // From here on only the replica's names.
                                    rewrite.master_message(&mut m);
                                    Some(m)
                                })
                                .map_err(ConnectionError::from),
                            Some(permit),
                        )
                    }
                };
                let item = match message {
                    Ok(Some(MasterMessage::Transaction(seq, txn))) => Ok(Incoming::Txn(seq, txn)),
                    Ok(Some(MasterMessage::Heartbeat { position, .. })) => {
                        Ok(Incoming::Heartbeat(position))
                    }
                    Ok(Some(MasterMessage::Error { kind, message })) => Err(match kind {
                        // The master's own trouble (a failed snapshot read):
                        // worth another try.
                        ErrorKind::Internal => SlaveError::Unavailable {
                            addr: reader_addr.clone(),
                            reason: message,
                        },
                        _ => SlaveError::Refused {
                            addr: reader_addr.clone(),
                            message,
                        },
                    }),
                    Ok(Some(
                        MasterMessage::Welcome { .. }
                        | MasterMessage::Status(_)
                        | MasterMessage::Challenge { .. },
                    )) => continue,
                    Ok(Some(m @ MasterMessage::SnapshotEnd { .. })) => {
                        // From here the copy no longer needs the master: it
                        // may hang up while the rest is loaded.
                        tracing::info!("snapshot received whole; loading what is queued");
                        Ok(Incoming::Snapshot(m))
                    }
                    Ok(Some(
                        m @ (MasterMessage::SnapshotBegin { .. }
                        | MasterMessage::SnapshotRows { .. }
                        | MasterMessage::SeedBegin { .. }
                        | MasterMessage::SeedChunk(_)
                        | MasterMessage::SeedTableBegin { .. }),
                    )) => Ok(Incoming::Snapshot(m)),
                    Ok(None) => return,
                    Err(e) => Err(SlaveError::Unavailable {
                        addr: reader_addr.clone(),
                        reason: e.to_string(),
                    }),
                };
                let stop = item.is_err();
                if tx.send((item, permit)).await.is_err() || stop {
                    return;
                }
            }
        });

        Ok(Feed {
            rx,
            reporter: Reporter::Master { writer, addr },
            seed_only: config.nats.is_some(),
            seed_threads: config.snapshot_threads.max(1),
            _reader: AbortOnDrop(reader_task),
        })
    }

    /// The change log read directly, from the record after the checkpoint;
    /// progress goes to the log, where the master reads it.
    async fn from_log(
        location: &Location,
        name: &str,
        applier: &mut Applier,
    ) -> Result<Feed, SlaveError> {
        applier.abandon_parts().await;
        let log = crate::log::open_view(location).await?;
        let cp = applier.checkpoint().clone();
        let from = log.read_from(cp.seq, cp.position.as_ref()).await?;
        if from.note_seq {
            // From now on the checkpoint names a sequence of the log.
            applier.note_seq(from.seq - 1).await?;
        }
        // Prepared XA transactions held before a restart are read again.
        let start = match applier.resume_point() {
            (seq, Some(_)) if cp.seq != 0 && seq < cp.seq => seq + 1,
            _ => from.seq,
        };
        let mut reader = log.reader_from(start).await?;
        let (tx, rx) = mpsc::channel::<Received>(256);
        let budget = Arc::new(Semaphore::new(RECEIVE_QUEUE_BYTES >> 10));
        let rewrite = applier.rewrite().clone();
        let reader_task = tokio::spawn(async move {
            loop {
                // A second without a record lets the applier report progress.
                let (item, permit) = match reader.next_within(Duration::from_secs(1)).await {
                    Ok(None) => {
                        if tx
                            .send((Ok(Incoming::Heartbeat(None)), None))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    Ok(Some((seq, mut txn, bytes))) => {
                        rewrite.transaction(&mut txn);
                        let kib = (bytes >> 10).clamp(1, RECEIVE_QUEUE_BYTES >> 10) as u32;
                        let Ok(permit) = budget.clone().acquire_many_owned(kib).await else {
                            return;
                        };
                        (Ok(Incoming::Txn(seq, txn)), Some(permit))
                    }
                    Err(e) => (Err(SlaveError::from(e)), None),
                };
                let stop = item.is_err();
                if tx.send((item, permit)).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Feed {
            rx,
            reporter: Reporter::Log {
                log,
                name: name.to_string(),
                floor: start.saturating_sub(1),
                source_time: 0,
                written: None,
                failing_since: None,
                settings: SlaveSettings::default(),
            },
            seed_only: false,
            seed_threads: 1,
            _reader: AbortOnDrop(reader_task),
        })
    }
}

/// Where a slave reports what it applied: to its master over the rowcast
/// connection, or (reading the log itself) to the log.
enum Reporter {
    Master {
        writer: FrameWriter,
        addr: String,
    },
    Log {
        log: View,
        name: String,
        /// Messages before this sequence are known applied (the snapshot
        /// covered them), even before the checkpoint names a sequence.
        floor: u64,
        /// Primary time of the last transaction applied.
        source_time: u32,
        /// When progress was last written (at most every half second).
        written: Option<std::time::Instant>,
        /// Since when every progress report has failed.
        failing_since: Option<std::time::Instant>,
        /// Stated with every report.
        settings: SlaveSettings,
    },
}

/// Progress reports failing this long mean the NATS connection is dead
/// although the client has not said so (a link frozen without FIN or RST:
/// the client's pings sit unanswered in a buffer): the session ends and a
/// new one connects afresh from the checkpoint.
const NATS_SILENCE: Duration = Duration::from_secs(15);

impl Reporter {
    /// Whether every record follows the one before by one: on the
    /// master's stream. (In a log read directly a record's number is its
    /// last message's, so records of several messages jump: its reader
    /// checks every message instead.)
    fn numbered(&self) -> bool {
        matches!(self, Reporter::Master { .. })
    }

    async fn send(&mut self, msg: &SlaveMessage, applier: &Applier) -> Result<(), SlaveError> {
        match self {
            Reporter::Master { writer, addr } => {
                writer.send(msg).await.map_err(|e| SlaveError::Unavailable {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
            }
            Reporter::Log {
                log,
                name,
                floor,
                source_time,
                written,
                failing_since,
                settings,
            } => {
                let error = match msg {
                    SlaveMessage::Settings(s) => {
                        *settings = s.clone();
                        None
                    }
                    SlaveMessage::Ack { source_time: t, .. } => {
                        if *t != 0 {
                            *source_time = *t;
                        }
                        // Acks come per batch; NATS needs no more than a
                        // fresh one every half second (heartbeats catch up).
                        if written.is_some_and(|w| w.elapsed() < Duration::from_millis(500)) {
                            return Ok(());
                        }
                        *written = Some(std::time::Instant::now());
                        None
                    }
                    SlaveMessage::Failed { message } => Some(message.clone()),
                    _ => return Ok(()),
                };
                let cp = applier.checkpoint();
                let progress = SlaveProgress {
                    seq: cp.seq.max(*floor),
                    position: cp.position.clone(),
                    source_time: *source_time,
                    updated_ms: crate::net::serve::now_ms(),
                    error,
                    settings: settings.clone(),
                };
                // Progress is for `rowcast status`; NATS trouble here must
                // not stop the applying.
                match log.report(name, &progress).await {
                    Ok(()) => *failing_since = None,
                    Err(e) => {
                        tracing::warn!(cause = %e, "could not report progress to NATS");
                        let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= NATS_SILENCE {
                            return Err(ChangeLogError::from(NatsError::JetStream {
                                what: "reporting progress",
                                reason: format!(
                                    "no report got through for {NATS_SILENCE:?} (last: {e}): the connection to NATS looks dead; reconnecting from the checkpoint"
                                ),
                            })
                            .into());
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// A seed that cannot go on: the master (and so `rowcast status`) is
/// told why, and the slave stops with it.
async fn stop(
    reporter: &mut Reporter,
    applier: &Applier,
    metrics: &Metrics,
    position: String,
    e: crate::replica::seed_gate::GateError,
) -> SlaveError {
    let e = SlaveError::from(ApplyError::Sql {
        position,
        reason: e.to_string(),
    });
    metrics.errors.add(1);
    let failed = SlaveMessage::Failed {
        message: e.to_string(),
    };
    let _ = reporter.send(&failed, applier).await;
    e
}

/// The stream has applied up to the checkpoint (or, idle, reached
/// `position`): chunks read before it take every later change, and once
/// every table is loaded and passed, the seed ends.
async fn seed_passed(
    applier: &mut Applier,
    loaders: &mut Option<SeedLoaders>,
    position: Option<crate::source::position::SourcePosition>,
    metrics: &Metrics,
) -> Result<(), SlaveError> {
    let applied = applier.checkpoint().position.clone();
    for p in [applied, position].into_iter().flatten() {
        applier.seed_mut().passed(&p);
    }
    applier.seed_mut().take_finished();
    if applier.seed().is_empty() {
        if loaders.as_ref().is_some_and(|l| l.has_deferred()) {
            return Err(ApplyError::Sql {
                position: "seed".into(),
                reason: "seed chunks wait for a DDL that never came: their columns are not on the replica's table; please report this as a rowcast bug, and run the slave with --resnapshot".into(),
            }
            .into());
        }
        *loaders = None;
        applier.seed_finish().await?;
        SeedBar::done();
        tracing::info!(
            rows_loaded = metrics.snapshot_rows.get(),
            "seed complete: every table is loaded and follows the stream"
        );
    }
    Ok(())
}

/// Seeding progress on a terminal (stderr), at most once a second.
struct SeedBar {
    tty: bool,
    last: std::time::Instant,
    started: std::time::Instant,
}

impl SeedBar {
    fn new() -> SeedBar {
        use std::io::IsTerminal;
        SeedBar {
            tty: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
            started: std::time::Instant::now(),
        }
    }

    fn show(&mut self, gate: &crate::replica::seed_gate::SeedGate) {
        if !self.tty || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = std::time::Instant::now();
        let (mut rows, mut est, mut bytes) = (0u64, 0u64, 0u64);
        for t in gate.tables() {
            rows += t.rows_done();
            bytes += t.bytes_done();
            est += t.estimated_rows.max(t.rows_done());
        }
        let pct = (rows * 100).checked_div(est).unwrap_or(0);
        let width = 30;
        let filled = (pct.min(100) as usize * width) / 100;
        let secs = self.started.elapsed().as_secs_f64();
        let eta = if rows > 0 && secs >= 1.0 {
            format!(
                "{}s",
                ((est.saturating_sub(rows)) as f64 / (rows as f64 / secs)).ceil()
            )
        } else {
            "?".into()
        };
        eprint!(
            "\rseeding [{}{}] {pct:>3}% {rows}/{est} rows, {} MiB, ETA {eta}   ",
            "#".repeat(filled),
            "-".repeat(width - filled),
            bytes >> 20
        );
    }

    fn done() {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}

/// The sequence number that must follow a batch's last transaction.
fn seq_next(batch: &[(u64, Transaction)]) -> u64 {
    batch.last().map_or(0, |(s, _)| s + 1)
}

/// Applies `batch`; when a transaction in it cannot be run on the
/// replica and it holds several, applies them one by one (each with its checkpoint), so
/// the error is that of the exact transaction that fails (its index) and
/// the ones before it are in.
async fn apply_exactly(
    applier: &mut Applier,
    batch: &[(u64, Transaction)],
) -> Result<(), (ApplyError, usize)> {
    let e = match applier.apply_batch_watched(batch).await {
        Ok(()) => return Ok(()),
        Err(e) => applier.explain_failure(e, batch),
    };
    // Only a transaction the replica cannot run is worth finding: a lost
    // connection, a full disk or a packet limit is about the whole batch.
    if !e.skippable() || batch.len() == 1 {
        return Err((e, batch.len() - 1));
    }
    tracing::debug!(cause = %e, transactions = batch.len(), "a batch failed; applying its transactions one by one to find the one that fails");
    for (i, one) in batch.chunks(1).enumerate() {
        if let Err(e) = applier.apply_batch_watched(one).await {
            return Err((applier.explain_failure(e, one), i));
        }
    }
    Ok(())
}

/// The error the slave stops with when `txn` cannot be applied: one the
/// replica cannot run names the transaction as `--skip-at` takes it (and
/// the replica notes it, for the skip's record).
async fn stopped_at(applier: &mut Applier, e: ApplyError, txn: &Transaction) -> SlaveError {
    if !e.skippable() {
        return e.into();
    }
    let at = crate::replica::skip::skip_form(&applier.skip_identity(txn));
    applier.record_failure(&at, &e.to_string()).await;
    let named = if txn.is_part() {
        " (a large transaction, sent in parts, is named by its first part)"
    } else if txn.xa.is_some() {
        " (an XA transaction is named by its XA COMMIT, where its prepared rows are applied)"
    } else {
        ""
    };
    match applier.skip_pending() {
        Some(skip) if skip == at => e.into(),
        Some(skip) => SlaveError::StoppedBefore {
            error: Box::new(e),
            at,
            skip,
        },
        None => SlaveError::Stopped {
            error: Box::new(e),
            at,
            named,
        },
    }
}

/// Whether a transaction committed on the primary at `timestamp` may be
/// applied by a replica delayed by `delay`.
fn is_due(timestamp: u32, delay: Duration) -> bool {
    delay.is_zero() || crate::net::serve::now_ms() >= due_ms(timestamp, delay)
}

fn due_ms(timestamp: u32, delay: Duration) -> u64 {
    (u64::from(timestamp) * 1000).saturating_add(delay.as_millis() as u64)
}

/// Waits until a transaction committed on the primary at `timestamp` is
/// `delay` old (`--delay`, as MASTER_DELAY's SQL thread sleeps while its
/// IO thread reads on). Meanwhile what arrives is taken into `queue`, so
/// the link is read and the master's heartbeats never pile up (a run of
/// heartbeats is kept as its last one; transactions keep their share of
/// the receive budget, so what is read ahead stays bounded and the
/// master's log keeps the rest); the replica session is kept alive and
/// the master told every second where this slave is, so neither takes it
/// for dead. Dropping this future (shutdown) loses nothing: the
/// transaction is not applied, and comes again after the checkpoint.
async fn wait_due(
    timestamp: u32,
    delay: Duration,
    rx: &mut mpsc::Receiver<Received>,
    queue: &mut VecDeque<Received>,
    applier: &mut Applier,
    reporter: &mut Reporter,
    last_ack: &mut std::time::Instant,
) -> Result<(), SlaveError> {
    let due = due_ms(timestamp, delay);
    let mut open = true;
    let mut told = false;
    loop {
        let now = crate::net::serve::now_ms();
        if now >= due {
            return Ok(());
        }
        if !told {
            tracing::debug!(
                wait_ms = due - now,
                commit_time = timestamp,
                "delayed replica: waiting until the transaction is due"
            );
            told = true;
        }
        let nap = Duration::from_millis((due - now).min(1000));
        if open {
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                item = rx.recv() => match item {
                    Some(item) => enqueue(queue, item),
                    None => open = false,
                },
            }
        } else {
            tokio::time::sleep(nap).await;
        }
        if last_ack.elapsed() >= ACK_EVERY {
            *last_ack = std::time::Instant::now();
            applier.keep_alive().await?;
            send_ack(reporter, applier, 0).await?;
        }
    }
}

/// Tells the master (or the JetStream report) where this slave is: its
/// checkpoint, and from where the log must be kept for it. `source_time`
/// is the primary commit time of the last transaction applied, 0 if none
/// was just applied.
async fn send_ack(
    reporter: &mut Reporter,
    applier: &Applier,
    source_time: u32,
) -> Result<(), SlaveError> {
    let cp = applier.checkpoint();
    let Some(position) = cp.position.clone() else {
        return Ok(());
    };
    let ack = SlaveMessage::Ack {
        seq: cp.seq,
        position,
        source_time,
        keep_from: applier.keep_from(),
    };
    reporter.send(&ack, applier).await
}

/// How often at least a busy slave tells the master where it is.
const ACK_EVERY: Duration = Duration::from_secs(1);

/// Queues an item read ahead, a heartbeat in place of one just before it
/// (a later heartbeat says at least as much).
fn enqueue(queue: &mut VecDeque<Received>, item: Received) {
    if let (Ok(Incoming::Heartbeat(new)), _) = &item {
        if let Some((Ok(Incoming::Heartbeat(old)), _)) = queue.back() {
            if new.is_some() || old.is_none() {
                queue.pop_back();
            }
        }
    }
    queue.push_back(item);
}

/// Applies what arrives on `rx` (batching what is queued into one local
/// commit) and reports progress. With `seed_only`, returns once a
/// snapshot is loaded.
async fn apply_loop(
    feed: &mut Feed,
    applier: &mut Applier,
    metrics: &Metrics,
    config: &SlaveConfig,
    health: &SlaveHealth,
) -> Result<(), SlaveError> {
    let delay = config.delay;
    let Feed {
        rx,
        reporter,
        seed_only,
        seed_threads,
        ..
    } = feed;
    let seed_only = *seed_only;
    let seed_threads = *seed_threads;
    // Seeding: the connections loading chunks, and the progress bar.
    let mut loaders: Option<SeedLoaders> = None;
    let mut bar = SeedBar::new();
    // DDL applied so far: loaders forget the replica's tables when it moves.
    let mut ddl_generation = 0u64;
    let mut progress = (0u64, 0u64, std::time::Instant::now());
    // Whether snapshot progress still reaches the master.
    let mut progress_reported = true;
    // Items taken from the channel but not handled yet, in order: the one
    // that ended a batch, and what arrived while a delay was waited out.
    let mut queue: VecDeque<Received> = VecDeque::new();
    // Within one master stream, every transaction follows the one
    // before: a sequence number that jumps means some never arrived. (On
    // NATS a record's number is its last message's, so records of several
    // messages jump: the NATS reader checks every message instead.)
    let numbered = reporter.numbered();
    let mut last_seq: Option<u64> = None;
    // When the master last heard where this slave is. A queue that never
    // drains (a delayed replica under steady writes, a long catch-up)
    // still acks every ACK_EVERY, or the master would keep its whole log
    // for it and call it stalled.
    let mut last_ack = std::time::Instant::now();
    let mut delay_suspended_told = false;
    loop {
        let (item, permit) = match queue.pop_front() {
            Some(i) => i,
            None => match rx.recv().await {
                Some(i) => i,
                None => break,
            },
        };
        match item? {
            Incoming::Txn(seq, txn) => {
                if let Some(last) = last_seq.filter(|l| numbered && seq != l + 1) {
                    let e = SlaveError::SequenceGap { last, found: seq };
                    metrics.errors.add(1);
                    let failed = SlaveMessage::Failed {
                        message: e.to_string(),
                    };
                    let _ = reporter.send(&failed, applier).await;
                    return Err(e);
                }
                last_seq = Some(seq);
                // A delayed replica: nothing is applied before it is due.
                // Not while seeding: the chunks hold the primary's rows as
                // they are now, so holding the stream back would only
                // slow the copy (the delay begins once it is done). A
                // seed of a table a wider filter lets in suspends it for
                // the whole stream, so that is said loudly (--resync and
                // --delay together are refused at start).
                let delay = if applier.seed().is_empty() {
                    delay
                } else {
                    if !delay.is_zero() && !delay_suspended_told {
                        tracing::warn!(
                            delay_seconds = delay.as_secs(),
                            tables = applier.seed().tables().count(),
                            "a seed is under way: --delay is suspended until it completes, and the \
                             stream is applied as it arrives meanwhile"
                        );
                        delay_suspended_told = true;
                    }
                    Duration::ZERO
                };
                // Lag counts from here: while the batch waits out a delay,
                // and while it commits.
                health.applying(txn.timestamp);
                if !delay.is_zero() {
                    wait_due(
                        txn.timestamp,
                        delay,
                        rx,
                        &mut queue,
                        applier,
                        reporter,
                        &mut last_ack,
                    )
                    .await?;
                }
                // Take what is already queued (and due) into one local commit
                // (a DDL statement or a part of a large transaction
                // goes alone).
                let alone = |t: &Transaction| t.is_ddl() || t.is_part() || t.xa.is_some();
                let mut permits = vec![permit];
                let mut batch = vec![(seq, txn)];
                let mut rows = batch[0].1.row_count();
                while batch.len() < MAX_BATCH_TXNS && rows < MAX_BATCH_ROWS && !alone(&batch[0].1) {
                    let next = match queue.pop_front() {
                        Some(i) => Ok(i),
                        None => rx.try_recv(),
                    };
                    match next {
                        Ok((Ok(Incoming::Txn(s, t)), p))
                            if !alone(&t)
                                && (!numbered || s == seq_next(&batch))
                                && is_due(t.timestamp, delay) =>
                        {
                            last_seq = Some(s);
                            rows += t.row_count();
                            batch.push((s, t));
                            permits.push(p);
                        }
                        Ok(other) => {
                            queue.push_front(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if !applier.seed().is_empty() {
                    if let Some(l) = loaders.as_mut() {
                        l.barrier().await?;
                    }
                    for (_, txn) in batch.iter_mut() {
                        // A prepare's rows are judged at its XA COMMIT.
                        if matches!(txn.xa, Some(crate::log::change::XaStep::Prepare(_))) {
                            continue;
                        }
                        if let Err(e) = applier.seed().filter(txn) {
                            let position = txn.position.to_string();
                            return Err(stop(reporter, applier, metrics, position, e).await);
                        }
                    }
                }
                if let Err((e, i)) = apply_exactly(applier, &batch).await {
                    let e = stopped_at(applier, e, &batch[i].1).await;
                    if !e.is_retryable() {
                        // Tell the master (and so `rowcast status`) why.
                        metrics.errors.add(1);
                        let _ = reporter
                            .send(
                                &SlaveMessage::Failed {
                                    message: e.to_string(),
                                },
                                applier,
                            )
                            .await;
                    }
                    return Err(e);
                }
                drop(permits);
                if applier.take_skip_news() {
                    // `rowcast status` shows the skip at once.
                    reporter
                        .send(
                            &SlaveMessage::Settings(settings_of(config, applier)),
                            applier,
                        )
                        .await?;
                }
                if !applier.seed().is_empty() {
                    if let Some(e) = batch.iter().find_map(|(_, t)| applier.seed().renamed_by(t)) {
                        return Err(stop(reporter, applier, metrics, "seed".into(), e).await);
                    }
                    if batch.iter().any(|(_, t)| t.is_ddl()) {
                        ddl_generation += 1;
                        applier.seed_key_places().await?;
                        if let Some(l) = loaders.as_mut().filter(|l| l.has_deferred()) {
                            l.retry_deferred(ddl_generation).await?;
                        }
                    }
                    seed_passed(applier, &mut loaders, None, metrics).await?;
                }
                let (seq, txn) = batch.last().expect("batch is not empty");
                metrics
                    .applied_transactions
                    .add(batch.iter().filter(|(_, t)| t.is_commit()).count() as u64);
                metrics.applied_rows.add(rows as u64);
                metrics.applied_seq.set(*seq);
                // More is queued: it committed no earlier than this batch.
                let more = !rx.is_empty() || !queue.is_empty();
                health.applied(
                    *seq,
                    applier.checkpoint().position.clone(),
                    more.then_some(txn.timestamp),
                    seeding(applier),
                );
                // Ack when the queue is drained, not per transaction, or
                // when the last ack is ACK_EVERY old.
                if (rx.is_empty() && queue.is_empty()) || last_ack.elapsed() >= ACK_EVERY {
                    last_ack = std::time::Instant::now();
                    send_ack(reporter, applier, txn.timestamp).await?;
                }
            }
            Incoming::Heartbeat(position) => {
                if !applier.seed().is_empty() {
                    if let Some(l) = loaders.as_mut() {
                        l.barrier().await?;
                    }
                    seed_passed(applier, &mut loaders, position, metrics).await?;
                }
                // An idle applier's session must not look like a zombie
                // to another slave waiting for its session lock.
                applier.keep_alive().await?;
                health.applied(
                    applier.checkpoint().seq,
                    applier.checkpoint().position.clone(),
                    None,
                    seeding(applier),
                );
                // Keep the master's view current even if the last
                // batch ended without a drained queue.
                send_ack(reporter, applier, 0).await?;
            }
            Incoming::Snapshot(MasterMessage::SnapshotBegin {
                position,
                databases,
                tables,
                views,
                estimated_rows,
                estimated_bytes,
                objects,
            }) => {
                tracing::info!(%position, tables = tables.len(), objects = objects.len(), estimated_rows, estimated_bytes, "receiving a snapshot");
                applier
                    .snapshot_begin(&databases, &tables, views, objects)
                    .await?;
                progress = (0, estimated_rows, std::time::Instant::now());
            }
            Incoming::Snapshot(MasterMessage::SnapshotRows { table, rows }) => {
                progress.0 += rows.len() as u64;
                metrics.snapshot_rows.add(rows.len() as u64);
                applier.snapshot_rows(&table, &rows).await?;
                if progress_reported && progress.2.elapsed() > Duration::from_secs(1) {
                    let msg = SlaveMessage::SnapshotProgress {
                        rows: progress.0,
                        estimated: progress.1,
                    };
                    // Progress is for `rowcast status`. A master that hung
                    // up after sending the last rows must not cost the
                    // copy: what is queued is loaded, and a copy cut short
                    // shows as an error after the queued rows.
                    if let Err(e) = reporter.send(&msg, applier).await {
                        tracing::warn!(cause = %e, "cannot report snapshot progress to the master; loading goes on");
                        progress_reported = false;
                    }
                }
                if progress.2.elapsed() > Duration::from_secs(5) {
                    tracing::info!(
                        rows = progress.0,
                        estimated_rows = progress.1,
                        "snapshot loading"
                    );
                    progress.2 = std::time::Instant::now();
                }
            }
            Incoming::Snapshot(MasterMessage::SnapshotEnd { position, rows }) => {
                applier.snapshot_end(&position).await?;
                tracing::info!(%position, rows, "snapshot loaded; following the change log");
                if seed_only {
                    return Ok(());
                }
            }
            Incoming::Snapshot(MasterMessage::SeedBegin {
                position,
                databases,
                tables,
                views,
                objects,
                plan,
            }) => {
                tracing::info!(%position, tables = plan.len(), ranged = plan.iter().filter(|t| t.key.is_some()).count(), objects = objects.len(), "seeding: the tables are created empty and filled while the stream goes on");
                loaders = None;
                applier
                    .seed_begin(&position, &databases, &tables, views, objects, plan)
                    .await?;
            }
            Incoming::Snapshot(MasterMessage::SeedTableBegin {
                database,
                table,
                plan,
            }) => {
                if let Some(l) = loaders.as_mut() {
                    l.barrier().await?;
                }
                // --resync names the primary's database, the table comes renamed.
                let rewrite = applier.rewrite().clone();
                applier.resync_pending.retain(|(d, t)| {
                    !(rewrite.to_replica(d) == table.database && t == &table.name)
                });
                applier.seed_table_begin(&database, &table, plan).await?;
                ddl_generation += 1;
            }
            Incoming::Snapshot(MasterMessage::SeedChunk(chunk)) => {
                let bytes = crate::source::chunk_read::chunk_bytes(&chunk);
                metrics.snapshot_rows.add(chunk.rows.len() as u64);
                let prior_after = applier
                    .seed()
                    .get(&chunk.database, &chunk.name)
                    .and_then(|t| t.ranges.get(chunk.range as usize))
                    .and_then(|r| r.after);
                let Some(table) = applier.seed_mut().loaded(&chunk, bytes) else {
                    tracing::warn!(database = %chunk.database, table = %chunk.name, "a seed chunk of a table this slave is not seeding; ignored");
                    continue;
                };
                let state = table.ranges[chunk.range as usize].clone();
                if loaders.is_none() {
                    loaders = Some(SeedLoaders::new(applier, seed_threads).await?);
                }
                let l = loaders.as_mut().expect("just made");
                l.dispatch(LoadJob {
                    chunk,
                    table,
                    state,
                    prior_after,
                    ddl_generation,
                    clear: false,
                })
                .await?;
                bar.show(applier.seed());
            }
            Incoming::Snapshot(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn a_session_that_worked_for_a_while_reconnects_without_the_grown_backoff() {
        let grown = Duration::from_secs(5);
        assert_eq!(
            backoff_after(grown, Duration::from_secs(60)),
            Duration::from_millis(200)
        );
        // Failing attempts in a row keep growing it.
        assert_eq!(backoff_after(grown, Duration::from_millis(300)), grown);
    }
}
