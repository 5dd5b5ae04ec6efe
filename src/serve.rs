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

use crate::changelog::{LogError, LogHandle};
use crate::connection::{ConnectionError, FrameReader, FrameWriter};
use crate::position::SourcePosition;
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

pub struct Listener {
    listener: TcpListener,
    log: LogHandle,
    state: Arc<ServerState>,
    shutdown: watch::Receiver<bool>,
}

impl Listener {
    pub fn new(
        listener: TcpListener,
        log: LogHandle,
        state: Arc<ServerState>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Listener {
            listener,
            log,
            state,
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
    shutdown: watch::Receiver<bool>,
}

impl Handler {
    async fn run(self, socket: TcpStream) {
        let addr = self.addr;
        match self.serve(socket).await {
            Ok(()) => tracing::info!(%addr, "slave connection closed"),
            Err(e) => tracing::warn!(%addr, cause = %e, "slave connection ended"),
        }
    }

    async fn serve(mut self, socket: TcpStream) -> Result<(), ConnectionError> {
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
                        Ok(Err(e)) => Err(e),
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
