//! The master's side of the wire: accepts slaves and streams the change
//! log to each from its checkpoint.
//!
//! [`Listener`] only accepts; each connection gets its own handler task.
//! A bad peer (wrong protocol, garbage, a stalled handshake) ends only its
//! own connection, with the reason logged against its address; the master
//! and its other slaves go on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use tokio::sync::mpsc;

use crate::change::{Row, TableSchema};
use crate::changelog::{LogError, LogHandle};
use crate::connection::{ConnectionError, FrameReader, FrameWriter};
use crate::filter::Filter;
use crate::jetstream::NatsLog;
use crate::metrics::Metrics;
use crate::position::SourcePosition;
use crate::snapshot::{Snapshot, SnapshotError};
use crate::source::Source;
use crate::wire::{self, ErrorKind, MasterMessage, MasterStatus, SlaveMessage, SlaveStatus};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle stream gets a heartbeat this often.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// What the master knows of each connected slave (for status and
/// retention).
#[derive(Debug, Clone)]
pub struct SlaveInfo {
    pub addr: SocketAddr,
    pub state: &'static str,
    pub acked_seq: u64,
    pub acked_position: Option<SourcePosition>,
    pub acked_source_time: u32,
    /// Highest sequence number sent, and the primary commit time of the
    /// oldest transaction sent but not yet acknowledged (0: none).
    pub sent_seq: u64,
    pub oldest_unacked_time: u32,
    pub snapshot_rows: u64,
    pub snapshot_estimated_rows: u64,
    pub last_error: Option<String>,
}

pub struct ServerState {
    pub slaves: Mutex<HashMap<String, SlaveInfo>>,
    /// Position and primary commit time of the newest logged transaction.
    pub log_tip: Mutex<(Option<SourcePosition>, u32)>,
    pub metrics: Arc<Metrics>,
}

impl ServerState {
    pub fn new(metrics: Arc<Metrics>) -> ServerState {
        ServerState {
            slaves: Mutex::new(HashMap::new()),
            log_tip: Mutex::new((None, 0)),
            metrics,
        }
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SlaveInfo)) {
        if let Some(info) = self.slaves.lock().unwrap().get_mut(name) {
            f(info);
        }
    }

    /// The oldest sequence number a connected slave still needs (`None`:
    /// a slave is being seeded and its need is not known yet, keep all).
    pub fn oldest_needed_seq(&self) -> Option<u64> {
        let slaves = self.slaves.lock().unwrap();
        let mut need = u64::MAX;
        for s in slaves.values() {
            match s.state {
                "snapshotting" => return None,
                "streaming" => need = need.min(s.acked_seq + 1),
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
    pub source: Source,
    pub is_mariadb: bool,
    pub filter: Arc<Filter>,
    /// The shared secret slaves must prove they know, if any.
    pub token: Option<Arc<Vec<u8>>>,
    /// TLS for slave connections, if configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The epoch of positions read from the current primary.
    pub epoch: u32,
}

/// The change log slaves are served from: the master's segment files, or a
/// JetStream stream that slaves read themselves (the master then only
/// seeds them).
#[derive(Clone)]
pub enum ServeLog {
    Local(LogHandle),
    Nats(Arc<NatsLog>),
}

pub struct Listener {
    listener: TcpListener,
    log: ServeLog,
    state: Arc<ServerState>,
    snapshots: SnapshotSource,
    shutdown: watch::Receiver<bool>,
}

impl Listener {
    pub fn new(
        listener: TcpListener,
        log: ServeLog,
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
    log: ServeLog,
    state: Arc<ServerState>,
    snapshots: SnapshotSource,
    shutdown: watch::Receiver<bool>,
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
        let log = match &self.log {
            ServeLog::Local(log) => log,
            ServeLog::Nats(nats) => {
                return nats.ddl_between(from, to).await.map_err(|e| e.to_string())
            }
        };
        self.local_ddl_between(log, from, to)
            .await
            .map_err(|e| e.to_string())
    }

    async fn local_ddl_between(
        &self,
        log: &LogHandle,
        from: &SourcePosition,
        to: &SourcePosition,
    ) -> Result<bool, LogError> {
        if !to.is_after(from) {
            return Ok(false);
        }
        let mut reader = log.reader_after(Some(from))?;
        loop {
            let rec = match tokio::time::timeout(Duration::from_secs(3), reader.next()).await {
                Err(_) | Ok(Ok(None)) => return Ok(false),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Some(rec))) => rec,
            };
            if rec.position.is_after(to) {
                return Ok(false);
            }
            let (_, txn) = rec.decode()?;
            if txn.is_ddl() {
                return Ok(true);
            }
        }
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
        // The catalog (SHOW CREATE ...) is not transactional: it shows the
        // schema as of when it is read, not as of the snapshot position.
        // If DDL on a replicated object landed in between, start over.
        let mut attempt = 0;
        let (mut snapshot, catalog) = loop {
            attempt += 1;
            let mut snapshot = Snapshot::begin(&snap.source, snap.is_mariadb).await?;
            snapshot.position.epoch = snap.epoch;
            let catalog = snapshot.catalog(&snap.filter).await?;
            let mut catalog_at = snapshot.source_end(&snap.source).await?;
            catalog_at.epoch = snap.epoch;
            match self.ddl_between(&snapshot.position, &catalog_at).await {
                Ok(false) => break (snapshot, catalog),
                Ok(true) if attempt < 20 => {
                    tracing::info!(
                        attempt,
                        "schema changed while the snapshot started; starting it again"
                    );
                    snapshot.finish().await;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Ok(true) => {
                    return Err(SnapshotError::Read {
                        object: "catalog".into(),
                        reason: "the schema kept changing during 20 snapshot attempts".into(),
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
        };
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
            bytes_sent += rows.iter().map(crate::statements::row_bytes).sum::<usize>() as u64;
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
            None => crate::connection::split(socket, wire::HANDSHAKE_FRAME_LIMIT),
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => crate::connection::split(stream, wire::HANDSHAKE_FRAME_LIMIT),
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
        let nonce = crate::auth::nonce();
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
                .is_some_and(|a| crate::auth::verify(token, &nonce, &who, a));
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
        let refusal = match (&self.log, &after) {
            _ if protocol != wire::PROTOCOL_VERSION => Some(format!(
                "this master speaks rowcast protocol {}, the slave speaks {}; run the same rowcast version on both",
                wire::PROTOCOL_VERSION, protocol
            )),
            (ServeLog::Nats(nats), Some(_)) => Some(format!(
                "this master keeps its change log on NATS JetStream: start the slave with --log {}",
                nats.url()
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
        writer
            .send(&MasterMessage::Welcome {
                last_seq: self.last_seq().await,
            })
            .await?;
        self.state.slaves.lock().unwrap().insert(
            name.clone(),
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
                sent_seq: 0,
                oldest_unacked_time: 0,
                snapshot_rows: 0,
                snapshot_estimated_rows: 0,
                last_error: None,
            },
        );
        self.state
            .metrics
            .slaves_connected
            .set(self.state.connected_count());
        let result = self.stream(name.clone(), after, reader, writer).await;
        self.state.update(&name, |info| {
            if info.state != "failed" {
                info.state = "disconnected";
            }
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
        // A slave without a checkpoint is seeded first.
        let after = match after {
            Some(p) => Some(p),
            None => match self.send_snapshot(&mut writer, &name).await {
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
            },
        };
        let log = match &self.log {
            ServeLog::Local(log) => log.clone(),
            // The slave reads the stream itself from here on.
            ServeLog::Nats(_) => {
                writer.flush().await?;
                self.wait_until_seeded(&name, reader).await;
                return Ok(());
            }
        };
        let mut log_reader = match log.reader_after(after.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                let kind = match e {
                    LogError::Purged { .. } => ErrorKind::PositionPurged,
                    _ => ErrorKind::Internal,
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
        self.state.update(&name, |info| {
            info.state = "streaming";
            info.acked_position = after.clone();
        });
        writer
            .send(&MasterMessage::Welcome {
                last_seq: log.end().last_seq,
            })
            .await?;
        reader.set_limit(wire::HANDSHAKE_FRAME_LIMIT);
        let state = self.state.clone();
        let ack_name = name.clone();
        let mut acks = tokio::spawn(async move {
            loop {
                match reader.read_message::<SlaveMessage>().await {
                    Ok(Some(SlaveMessage::Ack {
                        seq,
                        position,
                        source_time,
                    })) => {
                        state.update(&ack_name, |info| {
                            info.state = "streaming";
                            info.acked_seq = seq;
                            info.acked_position = Some(position);
                            // A heartbeat-time ack carries no source time.
                            if source_time != 0 {
                                info.acked_source_time = source_time;
                            }
                            if seq >= info.sent_seq {
                                info.oldest_unacked_time = 0;
                            } else if source_time != 0 {
                                info.oldest_unacked_time = source_time;
                            }
                        });
                    }
                    Ok(Some(SlaveMessage::SnapshotProgress { rows, estimated })) => {
                        state.update(&ack_name, |info| {
                            info.snapshot_rows = rows;
                            info.snapshot_estimated_rows = estimated;
                        });
                    }
                    Ok(Some(SlaveMessage::Failed { message })) => {
                        tracing::error!(slave = %ack_name, error = %message, "slave stopped with an error");
                        state.update(&ack_name, |info| {
                            info.state = "failed";
                            info.last_error = Some(message);
                        });
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        let tag = wire::transaction_frame_tag();
        let mut acks_done = false;
        let result: Result<(), ServeError> = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break Ok(()),
                ack = &mut acks => {
                    acks_done = true;
                    break match ack {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Ok(()),
                    };
                }
                rec = log_reader.next() => match rec {
                    Ok(Some(rec)) => {
                        writer.write_frame_parts(&[&tag, &rec.payload]).await?;
                        self.state.update(&name, |i| {
                            if i.sent_seq == 0 && i.acked_seq == 0 {
                                // After a snapshot: everything before this
                                // record is in the slave's copy.
                                i.acked_seq = rec.seq - 1;
                            }
                            i.sent_seq = rec.seq;
                            if i.oldest_unacked_time == 0 {
                                i.oldest_unacked_time = rec.timestamp;
                            }
                        });
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
                        let kind = match e {
                            LogError::Gap { .. } => ErrorKind::PositionPurged,
                            _ => ErrorKind::Internal,
                        };
                        let _ = writer.send(&MasterMessage::Error { kind, message: e.to_string() }).await;
                        break Ok(());
                    }
                },
                // Reached only when the log has nothing more right now.
                _ = async {}, if writer.buffered() > 0 => writer.flush().await?,
                _ = heartbeat.tick() => {
                    let end = log.end();
                    let msg = MasterMessage::Heartbeat {
                        last_seq: end.last_seq,
                        position: None,
                        now_ms: now_ms(),
                    };
                    writer.write_message(&msg).await?;
                    writer.flush().await?;
                }
            }
        };
        // Let the ack reader take a last message (e.g. `Failed`) first.
        if !acks_done {
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut acks).await;
            acks.abort();
        }
        result
    }

    /// After the snapshot, a slave of a JetStream log still loads what it
    /// has queued (up to its receive budget) and reports progress on this
    /// connection; closing it then would reset the connection under those
    /// reports (unread data makes the close a TCP reset). So the slave
    /// hangs up, when it has loaded the copy and turns to the stream, or
    /// the master shuts down; however long the loading takes.
    async fn wait_until_seeded(&mut self, name: &str, mut reader: FrameReader) {
        reader.set_limit(wire::HANDSHAKE_FRAME_LIMIT);
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return,
                msg = reader.read_message::<SlaveMessage>() => match msg {
                    Ok(Some(SlaveMessage::SnapshotProgress { rows, estimated })) => {
                        self.state.update(name, |info| {
                            info.snapshot_rows = rows;
                            info.snapshot_estimated_rows = estimated;
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return,
                },
            }
        }
    }

    /// The primary's binlog end right now, if it can be read.
    async fn primary_position(&self) -> Option<SourcePosition> {
        let source = &self.snapshots.source;
        let mut conn = source.connect().await.ok()?;
        crate::source::current_position(source, &mut conn)
            .await
            .ok()
    }

    async fn last_seq(&self) -> u64 {
        match &self.log {
            ServeLog::Local(log) => log.end().last_seq,
            ServeLog::Nats(nats) => nats.state().await.map(|s| s.1).unwrap_or(0),
        }
    }

    async fn status(&self) -> MasterStatus {
        let log = match &self.log {
            ServeLog::Local(log) => log,
            ServeLog::Nats(nats) => return self.nats_status(nats).await,
        };
        let source = &self.snapshots.source;
        let primary_position = self.primary_position().await;
        let (log_position, log_time) = self.state.log_tip.lock().unwrap().clone();
        let end = log.end();
        let (first_seq, segments, bytes) = log.stats();
        let now = (now_ms() / 1000) as u32;
        let mut slaves: Vec<SlaveStatus> = self
            .state
            .slaves
            .lock()
            .unwrap()
            .iter()
            .map(|(name, s)| {
                // A slave that has been sent nothing yet is at the log's end
                // (just seeded) or is about to be sent its backlog.
                let lag_transactions = if s.sent_seq == 0 && s.acked_seq == 0 {
                    0
                } else {
                    end.last_seq.saturating_sub(s.acked_seq)
                };
                let lag_seconds = if lag_transactions == 0 || s.oldest_unacked_time == 0 {
                    0
                } else {
                    u64::from(now.saturating_sub(s.oldest_unacked_time))
                };
                SlaveStatus {
                    name: name.clone(),
                    addr: s.addr.to_string(),
                    state: s.state.to_string(),
                    applied_seq: s.acked_seq,
                    applied_position: s.acked_position.clone(),
                    lag_transactions,
                    lag_seconds,
                    snapshot_rows: s.snapshot_rows,
                    snapshot_estimated_rows: s.snapshot_estimated_rows,
                    last_error: s.last_error.clone(),
                }
            })
            .collect();
        slaves.sort_by(|a, b| a.name.cmp(&b.name));
        MasterStatus {
            primary: source.endpoint().to_string(),
            primary_position,
            log_position,
            log_time,
            log_first_seq: first_seq,
            log_last_seq: end.last_seq,
            log_segments: segments,
            log_bytes: bytes,
            log_dir: log.dir().display().to_string(),
            slaves,
        }
    }

    /// Status when the log is a stream: slaves report their progress to
    /// the stream's bucket; lag is counted in messages and in seconds of
    /// primary time behind the newest message.
    async fn nats_status(&self, nats: &NatsLog) -> MasterStatus {
        let source = &self.snapshots.source;
        let primary_position = self.primary_position().await;
        let (log_position, _) = self.state.log_tip.lock().unwrap().clone();
        let (first, last, log_time) = nats.state().await.unwrap_or((0, 0, 0));
        let snapshotting = self.state.slaves.lock().unwrap().clone();
        let mut slaves: Vec<SlaveStatus> = nats
            .progress()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(name, p)| SlaveStatus {
                addr: "nats".into(),
                state: match (&p.error, p.position.is_some()) {
                    (Some(_), _) => "failed",
                    (None, true) => "streaming",
                    (None, false) => "snapshotting",
                }
                .into(),
                applied_seq: p.seq,
                applied_position: p.position.clone(),
                lag_transactions: last.saturating_sub(p.seq),
                // Unknown (0) until the slave has applied something.
                lag_seconds: if last > p.seq && p.source_time > 0 {
                    u64::from(log_time.saturating_sub(p.source_time))
                } else {
                    0
                },
                snapshot_rows: 0,
                snapshot_estimated_rows: 0,
                last_error: p.error.clone(),
                name,
            })
            .collect();
        // Slaves being seeded have not reported to the bucket yet.
        for (name, s) in snapshotting {
            if s.state == "snapshotting" && !slaves.iter().any(|x| x.name == name) {
                slaves.push(SlaveStatus {
                    name,
                    addr: s.addr.to_string(),
                    state: s.state.to_string(),
                    applied_seq: 0,
                    applied_position: None,
                    lag_transactions: 0,
                    lag_seconds: 0,
                    snapshot_rows: s.snapshot_rows,
                    snapshot_estimated_rows: s.snapshot_estimated_rows,
                    last_error: s.last_error.clone(),
                });
            }
        }
        slaves.sort_by(|a, b| a.name.cmp(&b.name));
        MasterStatus {
            primary: source.endpoint().to_string(),
            primary_position,
            log_position,
            log_time,
            log_first_seq: first,
            log_last_seq: last,
            log_segments: 0,
            log_bytes: 0,
            log_dir: nats.url().to_string(),
            slaves,
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
