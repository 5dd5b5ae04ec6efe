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
use crate::position::SourcePosition;
use crate::snapshot::{Snapshot, SnapshotError};
use crate::source::Source;
use crate::wire::{self, ErrorKind, MasterMessage, SlaveMessage};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle stream gets a heartbeat this often.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// What the master knows of each connected slave (for status and
/// retention).
#[derive(Debug, Clone)]
pub struct SlaveInfo {
    pub addr: SocketAddr,
    pub acked_seq: u64,
    pub acked_position: Option<SourcePosition>,
    pub connected: bool,
}

#[derive(Default)]
pub struct ServerState {
    pub slaves: Mutex<HashMap<String, SlaveInfo>>,
}

/// What a handler needs to seed a slave with a snapshot.
#[derive(Clone)]
pub struct SnapshotSource {
    pub source: Source,
    pub is_mariadb: bool,
    pub filter: Arc<Filter>,
}

pub struct Listener {
    listener: TcpListener,
    log: LogHandle,
    state: Arc<ServerState>,
    snapshots: SnapshotSource,
    shutdown: watch::Receiver<bool>,
}

impl Listener {
    pub fn new(
        listener: TcpListener,
        log: LogHandle,
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
    log: LogHandle,
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
    ) -> Result<bool, LogError> {
        if !to.is_after(from) {
            return Ok(false);
        }
        let mut reader = self.log.reader_after(Some(from))?;
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
    async fn send_snapshot(&self, writer: &mut FrameWriter) -> Result<SourcePosition, ServeError> {
        let snap = &self.snapshots;
        // The catalog (SHOW CREATE ...) is not transactional: it shows the
        // schema as of when it is read, not as of the snapshot position.
        // If DDL on a replicated object landed in between, start over.
        let mut attempt = 0;
        let (mut snapshot, catalog) = loop {
            attempt += 1;
            let mut snapshot = Snapshot::begin(&snap.source, snap.is_mariadb).await?;
            let catalog = snapshot.catalog(&snap.filter).await?;
            let catalog_at = snapshot.source_end(&snap.source).await?;
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
                Err(e) => {
                    return Err(SnapshotError::Read {
                        object: "change log".into(),
                        reason: e.to_string(),
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
        Ok(position)
    }

    async fn serve(mut self, socket: TcpStream) -> Result<(), ServeError> {
        let (read_half, write_half) = socket.into_split();
        let mut reader = FrameReader::new(read_half, wire::HANDSHAKE_FRAME_LIMIT);
        let mut writer = FrameWriter::new(write_half);
        writer.write_raw(&wire::greeting()).await?;
        writer.flush().await?;
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
        let SlaveMessage::Hello {
            protocol,
            name,
            after,
        } = hello
        else {
            tracing::warn!(addr = %self.addr, "refused a peer that did not start with Hello");
            return Ok(());
        };
        let span = tracing::info_span!("slave", name = %name, addr = %self.addr);
        let _enter = span.enter();
        if protocol != wire::PROTOCOL_VERSION {
            let message = format!(
                "this master speaks rowcast protocol {}, the slave speaks {}; run the same rowcast version on both",
                wire::PROTOCOL_VERSION, protocol
            );
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
                last_seq: self.log.end().last_seq,
            })
            .await?;
        // A slave without a checkpoint is seeded first.
        let after = match after {
            Some(p) => Some(p),
            None => match self.send_snapshot(&mut writer).await {
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
        let mut log_reader = match self.log.reader_after(after.as_ref()) {
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
        tracing::info!(after = ?after.as_ref().map(|p| p.to_string()), "slave connected");
        writer
            .send(&MasterMessage::Welcome {
                last_seq: self.log.end().last_seq,
            })
            .await?;
        self.state.slaves.lock().unwrap().insert(
            name.clone(),
            SlaveInfo {
                addr: self.addr,
                acked_seq: 0,
                acked_position: after.clone(),
                connected: true,
            },
        );
        reader.set_limit(wire::HANDSHAKE_FRAME_LIMIT);
        let state = self.state.clone();
        let ack_name = name.clone();
        let mut acks = tokio::spawn(async move {
            loop {
                match reader.read_message::<SlaveMessage>().await {
                    Ok(Some(SlaveMessage::Ack { seq, position })) => {
                        if let Some(info) = state.slaves.lock().unwrap().get_mut(&ack_name) {
                            info.acked_seq = seq;
                            info.acked_position = Some(position);
                        }
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        let tag = wire::transaction_frame_tag();
        let result = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break Ok(()),
                ack = &mut acks => {
                    break match ack {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Ok(()),
                    };
                }
                rec = log_reader.next() => match rec {
                    Ok(Some(rec)) => {
                        writer.write_frame_parts(&[&tag, &rec.payload]).await?;
                        if writer.buffered() > 256 * 1024 {
                            writer.flush().await?;
                        }
                        heartbeat.reset();
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => {
                        tracing::error!(cause = %e, "change log read failed");
                        let _ = writer.send(&MasterMessage::Error { kind: ErrorKind::Internal, message: e.to_string() }).await;
                        break Ok(());
                    }
                },
                // Reached only when the log has nothing more right now.
                _ = async {}, if writer.buffered() > 0 => writer.flush().await?,
                _ = heartbeat.tick() => {
                    let end = self.log.end();
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
        acks.abort();
        if let Some(info) = self.state.slaves.lock().unwrap().get_mut(&name) {
            info.connected = false;
        }
        result
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
