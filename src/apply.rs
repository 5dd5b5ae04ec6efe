//! The slave's applier: writes source transactions into the target
//! database, exactly once.
//!
//! **Invariant:** each source transaction's rows and the checkpoint row
//! that names its position commit in one local transaction. A crash before
//! the COMMIT loses both; after it, both are there. On restart the slave
//! asks the master for what follows the checkpoint, so nothing is applied
//! twice and nothing is skipped.
//!
//! DDL commits implicitly and cannot share a transaction with the
//! checkpoint. The applier first records `ddl_pending_seq` (committed)
//! with a fingerprint of the catalog the statement can change
//! (`catalog_fingerprint`), then runs the statement, then advances the
//! checkpoint. A crash in between leaves `ddl_pending_seq` set; the
//! statement is then run again, and an "already exists"/"does not exist"
//! answer counts as "applied before the crash" only if that catalog has
//! changed since the marker (MariaDB 10.6+ DDL is atomic, so it is all or
//! nothing). Unchanged, the statement fails for real and the slave stops.
//!
//! A statement runs in the primary's session context (`ddl_session`) and
//! must end as it ended there: with the error the primary logged it with,
//! if any.
//!
//! A two-phase XA transaction arrives as two entries (see `decode.rs`):
//! its prepared rows, which the applier holds in memory without applying
//! them (only the checkpoint moves past them), and later its completion.
//! At `XA COMMIT` the held rows and the checkpoint naming the completion
//! commit in one local transaction; at `XA ROLLBACK` they are dropped.
//! **Invariant:** while rows are held, the checkpoint also stores
//! `xa_resume`, the entry just before the oldest held one. A new applier
//! (a restart) asks for the change log from there, holds the prepared
//! groups it meets again, forgets the ones whose completion it meets
//! before the checkpoint, and applies nothing up to the checkpoint twice.
//!
//! Row changes never guess: an update or delete that matches no row, or an
//! insert that hits a duplicate key, stops the slave with an error naming
//! the table, key and source position (the replica has diverged).
//!
//! Errors are classified in `sql_error`: a lost connection, a deadlock or a
//! lock wait timeout is retried (the slave reconnects and the master sends
//! the transaction again); anything else stops the slave. **A full replica
//! disk stops the slave** ([`ApplyError::DiskFull`]: error 1114 "table is
//! full", 1021 "disk full", 1878 "temporary file write failure", or errno
//! 28 / "No space left on device" in any error's message), like the native
//! SQL thread, rather than waiting: retrying would rerun the same local
//! transaction against the same full disk, and InnoDB on a disk with no
//! room even to roll back aborts the whole server. The local transaction
//! is rolled back, so the checkpoint stays before everything unapplied;
//! after space is freed the restarted slave resumes from it. (Where
//! MariaDB itself waits for space, e.g. Aria or MyISAM writes with "Waiting
//! for someone to free space", the statement just takes longer and the
//! slave waits with it. A replica server that crashes on a full disk is a
//! lost connection: the slave retries until it is back.)

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::catalog_fingerprint;
use crate::change::{Change, ColumnKind, Ddl, Row, TableSchema, Transaction, Value, XaStep, Xid};
use crate::compact::{self, NetTable};
use crate::ddl_session::{self, Verdict};
use crate::migrations;
use crate::objects::{self, StoredObject, StoredObjects};
use crate::position::{Gtid, SourcePosition};
use crate::replay;
use crate::source::{Source, SourceError, SESSION_SILENCE};
use crate::sql;
use crate::statements::TablePlan;
use crate::verify;
use crate::wire::SnapshotObject;
use std::time::Duration;

/// The apply session writes what it was given: UTC for TIMESTAMP, strict
/// so nothing is silently truncated, no auto-increment on an explicit 0,
/// and the `binary` charset so string bytes arrive unconverted in the
/// column's own charset.
const SESSION_SETUP: &str = "SET SESSION time_zone='+00:00', \
    sql_mode='NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', \
    foreign_key_checks=0, NAMES binary";

/// [`SESSION_SETUP`]'s sql_mode without strictness, for the one kind of
/// value strict mode refuses although the primary stores it (see
/// `Applier::load_snapshot_rows`).
const LAX_SQL_MODE: &str = "SET SESSION sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

const ER_DUP_ENTRY: u16 = 1062;
const ER_KEY_NOT_FOUND: u16 = 1032;
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
/// Unknown database.
const ER_BAD_DB_ERROR: u16 = 1049;
/// "The table is full": InnoDB could not extend a tablespace (or a MEMORY
/// table reached max_heap_table_size).
const ER_RECORD_FILE_FULL: u16 = 1114;
/// "Disk full; waiting for someone to free some space".
const ER_DISK_FULL: u16 = 1021;
const ER_TEMP_FILE_WRITE_FAILURE: u16 = 1878;

/// Limits of one multi-row INSERT.
const INSERT_BATCH_ROWS: usize = 200;
const INSERT_BATCH_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Target(#[from] SourceError),
    #[error("replica has diverged at source position {position}: {op} on {table} {key}: {reason}. The replica's checkpoint was not moved; fix the row on the replica (or re-seed it) and restart the slave")]
    Conflict {
        position: String,
        op: &'static str,
        table: String,
        key: String,
        reason: String,
    },
    #[error("statement from the primary failed on the replica at source position {position}: `{sql}`: {reason}")]
    Ddl {
        position: String,
        sql: String,
        reason: String,
    },
    #[error("applying the transaction at source position {position} failed: {reason}")]
    Sql { position: String, reason: String },
    #[error("lost the connection to the target database: {0}")]
    Lost(String),
    #[error(
        "{} has no space left at source position {position}: {reason}. The local transaction \
         was rolled back and the slave's checkpoint stays before it. Free space on the replica's \
         disk (its datadir, tmpdir or tablespaces; for a MEMORY table raise \
         max_heap_table_size), then start the slave again: it resumes after its checkpoint",
        .replica.as_deref().unwrap_or("the replica")
    )]
    DiskFull {
        /// The target and the slave's name, when known.
        replica: Option<String>,
        position: String,
        reason: String,
    },
    #[error("the transaction at source position {position} needs packets of {needed} bytes, but the replica accepts at most {limit} (max_allowed_packet); the primary accepted it. Fix: SET GLOBAL max_allowed_packet={setting} on the replica (and max_allowed_packet={setting} in its config), then restart the slave")]
    PacketTooLarge {
        position: String,
        needed: u64,
        limit: u64,
        setting: String,
    },
    #[error(
        "XA COMMIT {xid} at source position {position}: this slave never received that XA \
         transaction's prepared rows (it was prepared on the primary before the slave's \
         snapshot, or before the master began reading the binlog). The replica lacks its \
         rows: re-seed the slave (--resnapshot)"
    )]
    XaNotHeld { xid: String, position: String },
    #[error(
        "the slave holds a prepared XA transaction but has no checkpoint to resume from \
         at source position {position}; re-seed the slave (--resnapshot)"
    )]
    XaWithoutCheckpoint { position: String },
    #[error(
        "slave `{name}`: session {holder} on the replica {replica} holds this slave's lock \
         `{lock}` ({holder_info}) and still did after {waited_secs}s; this slave applied \
         nothing. Another `rowcast slave --name {name}` is running against this replica: run \
         one slave per --name (stop the other one, or give this one another --name). If that \
         session is a dead one's, KILL {holder} on the replica (or wait until the server drops \
         it: wait_timeout), then start this slave again"
    )]
    SessionLocked {
        name: String,
        replica: String,
        lock: String,
        holder: u64,
        holder_info: String,
        waited_secs: u64,
    },
}

impl ApplyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Target(e) => e.is_retryable(),
            ApplyError::Lost(_) => true,
            _ => false,
        }
    }
}

/// What `Applier::replica_table` found out about a replica table.
#[derive(Debug, Default)]
struct ReplicaTable {
    native: bool,
    net_ok: bool,
}

/// How far the slave has applied, as stored in `rowcast.checkpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub seq: u64,
    pub position: Option<SourcePosition>,
    pub ddl_pending_seq: Option<u64>,
}

/// The prepared rows of an XA transaction, waiting for its completion.
struct HeldXa {
    xid: Xid,
    /// The entry just before it in the change log: where a re-read that
    /// must find it again starts after.
    before: (u64, SourcePosition),
    txn: Transaction,
}

pub struct Applier {
    /// Holds [`session_lock_name`] for its whole life (see
    /// [`Applier::connect`]).
    conn: Conn,
    /// The session lock's name.
    lock: String,
    /// When `conn` last ran a command: an applier idle this long touches
    /// it ([`Applier::keep_alive`]) so it never looks like a zombie.
    last_active: std::time::Instant,
    /// Where `conn` goes, to watch it from a connection of its own.
    target: Source,
    /// The replica's `max_allowed_packet`, read at connect: a transaction
    /// needing more is a permanent error (see `packet_size`).
    max_packet: u64,
    name: String,
    /// The target's address, for errors the operator must act on.
    replica: String,
    checkpoint: Checkpoint,
    /// Prepared XA transactions, oldest first.
    held: Vec<HeldXa>,
    /// `held` knows every prepared group up to the checkpoint. False for a
    /// new applier whose checkpoint names an `xa_resume`, until the change
    /// log has been read again from there past the checkpoint.
    held_complete: bool,
    /// The `xa_resume` stored with the checkpoint.
    xa_resume: Option<(u64, SourcePosition)>,
    /// The last whole entry received (applied or skipped).
    last_seen: Option<(u64, SourcePosition)>,
    /// Statements per table, valid until the next DDL.
    plans: HashMap<(String, String), Arc<TablePlan>>,
    /// Views of a snapshot being loaded, created once all tables exist.
    snapshot_views: Vec<SnapshotObject>,
    /// Triggers of a snapshot being loaded, created once its rows are in
    /// (so they do not fire on them).
    snapshot_triggers: Vec<StoredObject>,
    /// While the parts of a large transaction are being applied in one
    /// open local transaction: the index of the part expected next.
    open_parts: Option<u32>,
    /// The FORMAT_DESCRIPTION event this connection's row-event applier
    /// was given last (see `replay.rs`).
    replay_format: Option<Vec<u8>>,
    /// The catalog fingerprint stored with the pending-DDL marker, as it
    /// was before that statement's first attempt.
    pending_fingerprint: Option<String>,
    /// For the transaction being retried: its catalog differs from the
    /// marker's fingerprint (see `apply_with_ddl`).
    retry_catalog_moved: bool,
}

fn sql_error(position: &SourcePosition, e: mysql_async::Error) -> ApplyError {
    match e {
        // Another session held a lock (a reader on the replica, say):
        // worth another try, not a reason to stop.
        mysql_async::Error::Server(s)
            if s.code == ER_LOCK_DEADLOCK || s.code == ER_LOCK_WAIT_TIMEOUT =>
        {
            ApplyError::Lost(format!("{} (error {}); retrying", s.message, s.code))
        }
        mysql_async::Error::Server(s) if is_disk_full(s.code, &s.message) => ApplyError::DiskFull {
            replica: None,
            position: position.to_string(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        mysql_async::Error::Server(s) => ApplyError::Sql {
            position: position.to_string(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        other => ApplyError::Lost(other.to_string()),
    }
}

/// What the replica's row-event applier's answer means.
fn replay_error(position: &SourcePosition, plan: &TablePlan, e: mysql_async::Error) -> ApplyError {
    match server_code(&e) {
        Some(code @ (ER_KEY_NOT_FOUND | ER_DUP_ENTRY)) => ApplyError::Conflict {
            position: position.to_string(),
            op: "row event",
            table: plan.table_name(),
            key: "(see the reason)".into(),
            reason: if code == ER_KEY_NOT_FOUND {
                format!("the row does not exist on the replica: {e}")
            } else {
                e.to_string()
            },
        },
        Some(ER_SPECIFIC_ACCESS_DENIED) => ApplyError::Sql {
            position: position.to_string(),
            reason: format!(
                "{e}. Tables with triggers, foreign keys, system versioning or without a primary key are applied by the replica's own row-event applier (a BINLOG statement): grant rowcast's replica user BINLOG REPLAY (MariaDB; SUPER before 10.5) or SYSTEM_VARIABLES_ADMIN and REPLICATION_APPLIER (MySQL)"
            ),
        },
        _ => sql_error(position, e),
    }
}

/// Whether a server error means the replica ran out of space: by code, or
/// by the OS error 28 (ENOSPC) that errors such as 3 (error writing file)
/// and 1030 (got error from storage engine) carry in their message.
fn is_disk_full(code: u16, message: &str) -> bool {
    if matches!(
        code,
        ER_RECORD_FILE_FULL | ER_DISK_FULL | ER_TEMP_FILE_WRITE_FAILURE
    ) {
        return true;
    }
    let m = message.to_ascii_lowercase();
    [
        "errno: 28 ",
        "errno: 28)",
        "errcode: 28 ",
        "no space left on device",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

impl Applier {
    /// Connects to the target, takes this slave's session lock, creates
    /// the `rowcast` schema if needed and reads this slave's checkpoint.
    ///
    /// **Invariant:** a session reads the checkpoint, and writes anything,
    /// only while it holds the server lock [`session_lock_name`] (taken
    /// with `GET_LOCK`, held until the session ends: the server frees it
    /// then, however the session ends). So one session at a time applies
    /// for a slave name on a replica: an older session of this slave that
    /// rowcast gave up without killing (a frozen connection, a probe that
    /// could not reach the server) commits before the new one reads the
    /// checkpoint, or never; and a second `rowcast slave` with the same
    /// name applies nothing while the first lives (it exits with
    /// [`ApplyError::SessionLocked`] after [`LOCK_WAIT_LIMIT`]).
    pub async fn connect(target: &Source, name: &str) -> Result<Applier, ApplyError> {
        Self::connect_after(target, name, None).await
    }

    /// A new applier in place of this one, whose session may be broken,
    /// frozen, or still alive (a retried deadlock): if it still holds the
    /// lock, it is killed, and waited for until it is gone.
    pub async fn reconnect(&self) -> Result<Applier, ApplyError> {
        Self::connect_after(&self.target, &self.name, Some(self.conn.id())).await
    }

    async fn connect_after(
        target: &Source,
        name: &str,
        previous: Option<u32>,
    ) -> Result<Applier, ApplyError> {
        let mut conn = target.connect().await?;
        let lock = session_lock_name(name);
        take_session_lock(&mut conn, target, name, &lock, previous).await?;
        migrations::run(&mut conn)
            .await
            .map_err(|e| target.classify(e))?;
        conn.query_drop(SESSION_SETUP)
            .await
            .map_err(|e| target.classify(e))?;
        type CheckpointRow = (u64, u32, Vec<u8>, u64, Option<Vec<u8>>, Option<u64>);
        let row: Option<CheckpointRow> = conn
            .exec_first(
                "SELECT log_seq, source_epoch, source_file, source_offset, source_gtid, ddl_pending_seq \
                 FROM rowcast.checkpoint WHERE slave_name = ?",
                (name,),
            )
            .await
            .map_err(|e| target.classify(e))?;
        type ResumeRow = (
            Option<u64>,
            Option<u32>,
            Option<Vec<u8>>,
            Option<u64>,
            Option<Vec<u8>>,
        );
        let resume: Option<ResumeRow> = conn
            .exec_first(
                "SELECT xa_resume_seq, xa_resume_epoch, xa_resume_file, xa_resume_offset, xa_resume_gtid \
                 FROM rowcast.checkpoint WHERE slave_name = ?",
                (name,),
            )
            .await
            .map_err(|e| target.classify(e))?;
        let xa_resume = match resume {
            Some((Some(seq), Some(epoch), Some(file), Some(offset), gtid)) => Some((
                seq,
                SourcePosition {
                    epoch,
                    file: String::from_utf8_lossy(&file).into_owned(),
                    offset,
                    gtid: gtid.and_then(|g| String::from_utf8_lossy(&g).parse::<Gtid>().ok()),
                },
            )),
            _ => None,
        };
        let checkpoint = match row {
            Some((seq, epoch, file, offset, gtid, ddl_pending_seq)) => {
                let file = String::from_utf8_lossy(&file).into_owned();
                let position = (!file.is_empty()).then(|| SourcePosition {
                    epoch,
                    file,
                    offset,
                    gtid: gtid.and_then(|g| String::from_utf8_lossy(&g).parse::<Gtid>().ok()),
                });
                Checkpoint {
                    seq,
                    position,
                    ddl_pending_seq,
                }
            }
            None => Checkpoint {
                seq: 0,
                position: None,
                ddl_pending_seq: None,
            },
        };
        let pending_fingerprint: Option<String> = conn
            .exec_first(
                "SELECT ddl_pending_fingerprint FROM rowcast.checkpoint WHERE slave_name = ?",
                (name,),
            )
            .await
            .map_err(|e| target.classify(e))?
            .flatten();
        let max_packet: Option<u64> = conn
            .query_first("SELECT @@GLOBAL.max_allowed_packet")
            .await
            .map_err(|e| target.classify(e))?;
        Ok(Applier {
            max_packet: max_packet.unwrap_or(u64::MAX),
            conn,
            lock,
            last_active: std::time::Instant::now(),
            target: target.clone(),
            name: name.to_string(),
            replica: target.endpoint().to_string(),
            checkpoint,
            held: Vec::new(),
            held_complete: xa_resume.is_none(),
            xa_resume,
            last_seen: None,
            plans: HashMap::new(),
            snapshot_views: Vec::new(),
            snapshot_triggers: Vec::new(),
            open_parts: None,
            replay_format: None,
            pending_fingerprint,
            retry_catalog_moved: false,
        })
    }

    /// Makes the target read-only for everyone without the READ_ONLY
    /// ADMIN (MariaDB) or SUPER privilege, so nobody diverges the replica
    /// by accident. rowcast's own user must have one of them.
    pub async fn set_read_only(&mut self) -> Result<(), mysql_async::Error> {
        self.conn.query_drop("SET GLOBAL read_only = 1").await
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Where the next read of the change log starts after: the checkpoint,
    /// or the `xa_resume` before it while prepared XA transactions must be
    /// read again (then what `held` knew is dropped, the re-read rebuilds it).
    pub fn resume_point(&mut self) -> (u64, Option<SourcePosition>) {
        if !self.held_complete {
            if let Some((seq, position)) = self.xa_resume.clone() {
                self.held.clear();
                self.last_seen = Some((seq, position.clone()));
                tracing::info!(from = %position, checkpoint = ?self.checkpoint.position.as_ref().map(|p| p.to_string()), "reading the change log again from before the oldest prepared XA transaction");
                return (seq, Some(position));
            }
            self.held_complete = true;
        }
        let cp = &self.checkpoint;
        self.last_seen = cp.position.clone().map(|p| (cp.seq, p));
        (cp.seq, cp.position.clone())
    }

    /// The log sequence to report as applied: the master keeps its change
    /// log from there, which must include held prepared XA transactions.
    pub fn ack_seq(&self) -> u64 {
        match self.current_resume() {
            Some((seq, _)) => seq.min(self.checkpoint.seq),
            None => self.checkpoint.seq,
        }
    }

    /// The `xa_resume` the next checkpoint write stores.
    fn current_resume(&self) -> Option<(u64, SourcePosition)> {
        if self.held_complete {
            self.held.first().map(|h| h.before.clone())
        } else {
            self.xa_resume.clone()
        }
    }

    /// An entry was received and applied or skipped.
    /// A statement of the local transaction's own (START TRANSACTION,
    /// COMMIT), its failure named by the source position being applied.
    async fn local(&mut self, statement: &str, pos: &SourcePosition) -> Result<(), ApplyError> {
        self.conn
            .query_drop(statement)
            .await
            .map_err(|e| sql_error(pos, e))
    }

    /// `txn` (the last part, if in parts) and its checkpoint are committed.
    fn applied(&mut self, seq: u64, txn: &Transaction) {
        if txn.is_commit() {
            self.checkpoint = Checkpoint {
                seq,
                position: Some(txn.position.clone()),
                ddl_pending_seq: None,
            };
        }
        self.seen(seq, txn);
    }

    fn seen(&mut self, seq: u64, txn: &Transaction) {
        if txn.is_commit() {
            self.last_seen = Some((seq, txn.position.clone()));
        }
    }

    /// One step of a two-phase XA transaction (see the module doc).
    async fn apply_xa(
        &mut self,
        seq: u64,
        txn: &Transaction,
        step: &XaStep,
    ) -> Result<(), ApplyError> {
        self.drop_unfinished(txn).await;
        let done = self
            .checkpoint
            .position
            .as_ref()
            .is_some_and(|p| !txn.position.is_after(p));
        if !done {
            self.held_complete = true;
        }
        let pos = &txn.position;
        let index = self.held.iter().position(|h| &h.xid == step.xid());
        match step {
            XaStep::Prepare(xid) => {
                if !self.held.iter().any(|h| h.txn.position == txn.position) {
                    let before = self
                        .last_seen
                        .clone()
                        .or_else(|| {
                            let cp = &self.checkpoint;
                            cp.position.clone().map(|p| (cp.seq, p))
                        })
                        .ok_or_else(|| ApplyError::XaWithoutCheckpoint {
                            position: pos.to_string(),
                        })?;
                    tracing::info!(position = %pos, %xid, rows = txn.row_count(), "XA transaction prepared on the primary; holding its rows until it completes");
                    self.held.push(HeldXa {
                        xid: xid.clone(),
                        before,
                        txn: txn.clone(),
                    });
                }
                if !done {
                    self.checkpoint_only(seq, txn).await?;
                }
            }
            XaStep::Commit(xid) => match (done, index) {
                (true, Some(i)) => {
                    self.held.remove(i);
                }
                (true, None) => {}
                (false, None) => {
                    return Err(ApplyError::XaNotHeld {
                        xid: xid.to_string(),
                        position: pos.to_string(),
                    })
                }
                (false, Some(i)) => {
                    let held = self.held.remove(i);
                    let rows = held.txn.row_count();
                    let result = self.commit_held(seq, txn, &held.txn).await;
                    if result.is_err() {
                        let _ = self.conn.query_drop("ROLLBACK").await;
                        self.held.insert(i, held);
                    }
                    result?;
                    tracing::info!(position = %pos, %xid, rows, "XA transaction committed");
                }
            },
            XaStep::Rollback(xid) => {
                if let Some(i) = index {
                    self.held.remove(i);
                }
                if !done {
                    tracing::info!(position = %pos, %xid, "XA transaction rolled back on the primary; its held rows are dropped");
                    self.checkpoint_only(seq, txn).await?;
                }
            }
        }
        if !done {
            self.checkpoint = Checkpoint {
                seq,
                position: Some(txn.position.clone()),
                ddl_pending_seq: None,
            };
        }
        self.seen(seq, txn);
        Ok(())
    }

    /// Moves the checkpoint to `txn` (whose rows are not applied now).
    async fn checkpoint_only(&mut self, seq: u64, txn: &Transaction) -> Result<(), ApplyError> {
        let pos = &txn.position;
        let result = async {
            self.local("START TRANSACTION", pos).await?;
            self.write_checkpoint(seq, txn).await?;
            self.local("COMMIT", pos).await
        }
        .await;
        if result.is_err() {
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
        result
    }

    /// Applies a prepared XA transaction's rows with the checkpoint naming
    /// its completion `done`, in one local transaction.
    async fn commit_held(
        &mut self,
        seq: u64,
        done: &Transaction,
        prepared: &Transaction,
    ) -> Result<(), ApplyError> {
        let pos = &done.position;
        self.local("START TRANSACTION", pos).await?;
        for (i, change) in prepared.changes.iter().enumerate() {
            self.apply_change(prepared, i, change).await?;
        }
        self.write_checkpoint(seq, done).await?;
        self.local("COMMIT", pos).await
    }

    /// Applies one source transaction and its checkpoint, exactly once.
    /// A part of a large transaction goes to [`apply_part`](Self::apply_part).
    pub async fn apply(&mut self, seq: u64, txn: &Transaction) -> Result<(), ApplyError> {
        if let Some(step) = &txn.xa {
            return self.apply_xa(seq, txn, step).await;
        }
        if txn.is_part() {
            return self.apply_part(seq, txn).await;
        }
        self.drop_unfinished(txn).await;
        if let Some(p) = &self.checkpoint.position {
            if !txn.position.is_after(p) {
                tracing::debug!(position = %txn.position, "already applied; skipping");
                self.seen(seq, txn);
                return Ok(());
            }
        }
        self.held_complete = true;
        let result = if txn.is_ddl() {
            self.apply_with_ddl(seq, txn).await
        } else {
            self.rows_in_one_commit(&[txn], seq).await
        };
        if result.is_err() {
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
        result?;
        self.applied(seq, txn);
        Ok(())
    }

    /// Applies one part of a large source transaction. The first part opens
    /// a local transaction, the last writes the checkpoint and commits it;
    /// the parts in between only add rows. So the replica shows all of the
    /// source transaction or none of it, as with a small one, while only
    /// one part is in memory.
    pub async fn apply_part(&mut self, seq: u64, txn: &Transaction) -> Result<(), ApplyError> {
        if let Some(p) = &self.checkpoint.position {
            if !txn.position.is_after(p) {
                self.seen(seq, txn);
                return Ok(());
            }
        }
        self.held_complete = true;
        if txn.part == 0 {
            self.drop_unfinished(txn).await;
        }
        let pos = &txn.position;
        let result = async {
            match self.open_parts {
                None if txn.part == 0 => self
                    .conn
                    .query_drop("START TRANSACTION")
                    .await
                    .map_err(|e| sql_error(pos, e))?,
                Some(next) if next == txn.part => {}
                expected => {
                    // Retryable: the slave reconnects and the master sends
                    // the transaction again from its first part.
                    return Err(ApplyError::Lost(format!(
                        "part {} of the transaction at {pos} arrived, part {} was expected",
                        txn.part,
                        expected.unwrap_or(0)
                    )));
                }
            }
            self.open_parts = Some(txn.part + 1);
            // A part is applied as its net effect too, behind a savepoint
            // so a surprise undoes only this part before the exact path.
            let mut exact = true;
            if let Some(net) = compact::net_effect(&[txn], verify::is_chunk_table) {
                self.conn
                    .query_drop("SAVEPOINT rowcast_part")
                    .await
                    .map_err(|e| sql_error(pos, e))?;
                exact = !self.apply_net(&net, pos).await?;
                if exact {
                    self.conn
                        .query_drop("ROLLBACK TO SAVEPOINT rowcast_part")
                        .await
                        .map_err(|e| sql_error(pos, e))?;
                }
            }
            if exact {
                for (i, change) in txn.changes.iter().enumerate() {
                    self.apply_change(txn, i, change).await?;
                }
            }
            if txn.is_commit() {
                self.write_checkpoint(seq, txn).await?;
                self.local("COMMIT", pos).await?;
                self.open_parts = None;
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.abandon_parts().await;
        }
        result?;
        self.applied(seq, txn);
        Ok(())
    }

    /// A new transaction begins while parts of another are open: that one
    /// never committed on the primary (a JetStream log keeps the parts of
    /// a transaction the master abandoned), so its parts are rolled back.
    /// Starting the new one first would commit them implicitly.
    async fn drop_unfinished(&mut self, next: &Transaction) {
        if self.open_parts.is_some() {
            tracing::warn!(next = %next.position, "parts of a transaction that never committed are rolled back");
            self.abandon_parts().await;
        }
    }

    /// Rolls back the parts of a large transaction applied so far (the
    /// connection to the master broke before its last part): they arrive
    /// again, from the first, after the checkpoint.
    pub async fn abandon_parts(&mut self) {
        if self.open_parts.take().is_some() {
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
    }

    /// Makes a failure to apply `batch` permanent when a transaction in it
    /// needs bigger packets than the replica accepts: the replica then
    /// drops the connection, which must not be retried as a network fault.
    pub fn explain_failure(&self, e: ApplyError, batch: &[(u64, Transaction)]) -> ApplyError {
        if let ApplyError::DiskFull {
            replica: None,
            position,
            reason,
        } = e
        {
            return ApplyError::DiskFull {
                replica: Some(format!(
                    "the replica {} (slave {})",
                    self.replica, self.name
                )),
                position,
                reason,
            };
        }
        let packet_like = match &e {
            ApplyError::Lost(_) | ApplyError::Target(_) => true,
            ApplyError::Sql { reason, .. } => {
                reason.contains("max_allowed_packet") || reason.contains("(error 1153)")
            }
            _ => false,
        };
        if !packet_like {
            return e;
        }
        // An XA COMMIT carries no rows: what it applies are the held ones.
        let rows_of = |t: &Transaction| match &t.xa {
            Some(XaStep::Commit(xid)) => self
                .held
                .iter()
                .find(|h| &h.xid == xid)
                .map_or(0, |h| crate::packet_size::needed_bytes(&h.txn)),
            _ => crate::packet_size::needed_bytes(t),
        };
        let too_big = batch
            .iter()
            .map(|(_, t)| (t, rows_of(t)))
            .find(|(_, n)| *n > self.max_packet);
        match too_big {
            Some((t, needed)) => ApplyError::PacketTooLarge {
                position: t.position.to_string(),
                needed,
                limit: self.max_packet,
                setting: crate::packet_size::as_setting(needed),
            },
            None => e,
        }
    }

    /// Applies several source transactions (none of them DDL) in one local
    /// transaction whose checkpoint names the last of them: one commit (one
    /// fsync on the replica) for the lot, and still all or nothing.
    pub async fn apply_batch(&mut self, batch: &[(u64, Transaction)]) -> Result<(), ApplyError> {
        // XA steps, and everything while held XA transactions are being
        // found again, go one by one.
        if !self.held_complete || batch.iter().any(|(_, t)| t.xa.is_some()) {
            for (seq, txn) in batch {
                self.apply(*seq, txn).await?;
            }
            return Ok(());
        }
        let fresh: Vec<&(u64, Transaction)> = batch
            .iter()
            .filter(|(_, t)| match &self.checkpoint.position {
                Some(p) => t.position.is_after(p),
                None => true,
            })
            .collect();
        let Some((last_seq, last)) = fresh.last().map(|(s, t)| (*s, t)) else {
            return Ok(());
        };
        if fresh.len() == 1 || fresh.iter().any(|(_, t)| t.is_ddl() || t.is_part()) {
            for (seq, txn) in fresh {
                self.apply(*seq, txn).await?;
            }
            return Ok(());
        }
        let txns: Vec<&Transaction> = fresh.iter().map(|(_, t)| t).collect();
        self.drop_unfinished(txns[0]).await;
        let result = match compact::net_effect(&txns, verify::is_chunk_table) {
            Some(net) => match self.net_in_one_commit(&net, last_seq, last).await {
                Ok(true) => {
                    tracing::debug!(
                        transactions = txns.len(),
                        tables = net.len(),
                        "batch applied as its net effect"
                    );
                    Ok(())
                }
                Ok(false) => {
                    tracing::debug!(transactions = txns.len(), "the batch could not be applied as its net effect (a replica table with triggers, history or other columns, or rows not as expected); applying it statement by statement");
                    // Something on the replica was not as the batch
                    // expects: the exact path finds and names it.
                    let _ = self.conn.query_drop("ROLLBACK").await;
                    self.rows_in_one_commit(&txns, last_seq).await
                }
                Err(e) => Err(e),
            },
            None => self.rows_in_one_commit(&txns, last_seq).await,
        };
        if result.is_err() {
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
        result?;
        self.applied(last_seq, last);
        Ok(())
    }

    /// Applies the row changes of `txns` and the checkpoint naming the
    /// last of them (as sequence number `seq`) in one local transaction.
    /// The caller rolls back on error.
    async fn rows_in_one_commit(
        &mut self,
        txns: &[&Transaction],
        seq: u64,
    ) -> Result<(), ApplyError> {
        let Some(last) = txns.last() else {
            return Ok(());
        };
        let pos = &last.position;
        self.local("START TRANSACTION", pos).await?;
        for txn in txns {
            for (i, change) in txn.changes.iter().enumerate() {
                self.apply_change(txn, i, change).await?;
            }
        }
        self.write_checkpoint(seq, last).await?;
        self.local("COMMIT", pos).await
    }

    /// Applies the net effect of a batch (see `compact.rs`) and the
    /// checkpoint of its last transaction in one local transaction: per
    /// table one multi-key DELETE of the rows that existed, then multi-row
    /// INSERTs of the final rows. `Ok(false)` when the replica surprised it
    /// (a key missing or already present); the caller rolls back.
    async fn net_in_one_commit(
        &mut self,
        net: &[NetTable],
        seq: u64,
        last: &Transaction,
    ) -> Result<bool, ApplyError> {
        let pos = &last.position;
        self.local("START TRANSACTION", pos).await?;
        if !self.apply_net(net, pos).await? {
            return Ok(false);
        }
        self.write_checkpoint(seq, last).await?;
        self.local("COMMIT", pos).await?;
        Ok(true)
    }

    /// The statements of [`net_in_one_commit`](Self::net_in_one_commit),
    /// inside the caller's transaction.
    async fn apply_net(
        &mut self,
        net: &[NetTable],
        pos: &SourcePosition,
    ) -> Result<bool, ApplyError> {
        let mut plans = Vec::with_capacity(net.len());
        for table in net {
            let plan = self.plan(&table.schema, pos).await?;
            if !plan.net_ok {
                return Ok(false);
            }
            plans.push(plan);
        }
        let mut params = Vec::new();
        for (table, plan) in net.iter().zip(plans) {
            for chunk in table.deletes.chunks(plan.keys_per_delete()) {
                params.clear();
                for row in chunk {
                    params.extend(plan.key_params(row));
                }
                let stmt = plan.delete_keys_sql(chunk.len());
                self.conn
                    .exec_drop(stmt, Params::Positional(std::mem::take(&mut params)))
                    .await
                    .map_err(|e| sql_error(pos, e))?;
                if self.conn.affected_rows() != chunk.len() as u64 {
                    return Ok(false);
                }
            }
            match self.insert_rows(&plan, &table.inserts).await {
                Ok(()) => {}
                Err((e, _)) if server_code(&e) == Some(ER_DUP_ENTRY) => return Ok(false),
                Err((e, _)) => return Err(sql_error(pos, e)),
            }
        }
        Ok(true)
    }

    /// Inserts `rows` in multi-row INSERTs; on error, also the rows of the
    /// failed statement.
    async fn insert_rows<'r>(
        &mut self,
        plan: &TablePlan,
        rows: &'r [Row],
    ) -> Result<(), (mysql_async::Error, &'r [Row])> {
        let mut rest = rows;
        let mut params = Vec::new();
        while !rest.is_empty() {
            let n = plan.insert_batch_len(rest, INSERT_BATCH_ROWS, INSERT_BATCH_BYTES);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            params.clear();
            plan.insert_params(chunk, &mut params);
            let params = Params::Positional(std::mem::take(&mut params));
            if let Err(e) = self.conn.exec_drop(plan.insert_sql(n), params).await {
                return Err((e, chunk));
            }
        }
        Ok(())
    }

    async fn apply_with_ddl(&mut self, seq: u64, txn: &Transaction) -> Result<(), ApplyError> {
        let pos = &txn.position;
        let mut retrying = self.checkpoint.ddl_pending_seq == Some(seq);
        // Whether the catalog the transaction's statements change has moved
        // since the marker: told before anything runs, with the same digest
        // the first attempt recorded, so a statement that would succeed a
        // second time (`ADD KEY (c)` makes `c_2`) is not run twice.
        self.retry_catalog_moved = false;
        if retrying {
            if let Some(before) = self.pending_fingerprint.clone() {
                let now = self.txn_fingerprint(txn, pos).await?;
                // Unchanged: nothing of it ran before the restart, and an
                // "already exists" now is a real failure (run_ddl says so).
                self.retry_catalog_moved = now != before;
            }
        } else {
            // Only a first attempt records the catalog: a retry compares
            // against what it was before the statement ever ran.
            let fingerprint = self.txn_fingerprint(txn, pos).await?;
            self.pending_fingerprint = Some(fingerprint);
        }
        let statements = txn
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Ddl(_)))
            .count();
        self.mark_ddl_pending(seq, pos).await?;
        let mut in_rows_txn = false;
        for (i, change) in txn.changes.iter().enumerate() {
            match change {
                Change::Ddl(ddl) => {
                    if in_rows_txn {
                        self.local("COMMIT", pos).await?;
                        in_rows_txn = false;
                    }
                    if retrying && self.retry_catalog_moved && statements == 1 {
                        // DDL is atomic (MariaDB 10.6+): the catalog moved,
                        // so the one statement ran before the restart.
                        tracing::warn!(position = %pos, sql = %ddl.sql_text(), "statement had been applied before the restart (its catalog changed since then); not running it again");
                        self.plans.clear();
                        retrying = false;
                        continue;
                    }
                    let verdict = self.run_ddl(ddl, pos, retrying).await?;
                    self.plans.clear();
                    if verdict == Verdict::Done {
                        // It had not run before the crash, so neither had
                        // the statements after it.
                        retrying = false;
                    }
                }
                other => {
                    if !in_rows_txn {
                        self.local("START TRANSACTION", pos).await?;
                        in_rows_txn = true;
                    }
                    self.apply_change(txn, i, other).await?;
                }
            }
        }
        if !in_rows_txn {
            self.local("START TRANSACTION", pos).await?;
        }
        self.write_checkpoint(seq, txn).await?;
        self.local("COMMIT", pos).await?;
        Ok(())
    }

    /// The fingerprint of the catalog `txn`'s statements can change.
    async fn txn_fingerprint(
        &mut self,
        txn: &Transaction,
        pos: &SourcePosition,
    ) -> Result<String, ApplyError> {
        use sha2::Digest;
        let mut all = Vec::new();
        for change in &txn.changes {
            if let Change::Ddl(ddl) = change {
                let fp = catalog_fingerprint::compute(&mut self.conn, ddl)
                    .await
                    .map_err(|e| sql_error(pos, e))?;
                all.push(fp);
            }
        }
        Ok(match &all[..] {
            [one] => one.clone(),
            _ => format!("{:x}", sha2::Sha256::digest(all.join(",").as_bytes())),
        })
    }

    async fn mark_ddl_pending(&mut self, seq: u64, pos: &SourcePosition) -> Result<(), ApplyError> {
        let cp = &self.checkpoint;
        let (epoch, file, offset, gtid) = match &cp.position {
            Some(p) => (
                p.epoch,
                p.file.clone(),
                p.offset,
                p.gtid.as_ref().map(|g| g.to_string()),
            ),
            None => (0, String::new(), 0, None),
        };
        self.conn
            .exec_drop(
                "INSERT INTO rowcast.checkpoint \
                   (slave_name, log_seq, source_epoch, source_file, source_offset, source_gtid, ddl_pending_seq, ddl_pending_fingerprint) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE ddl_pending_seq = VALUES(ddl_pending_seq), \
                   ddl_pending_fingerprint = VALUES(ddl_pending_fingerprint)",
                (&self.name, cp.seq, epoch, file, offset, gtid, seq, &self.pending_fingerprint),
            )
            .await
            .map_err(|e| sql_error(pos, e))?;
        Ok(())
    }

    /// Runs one statement in the primary's session context and judges how
    /// it ended against how it ended on the primary.
    async fn run_ddl(
        &mut self,
        ddl: &Ddl,
        pos: &SourcePosition,
        retrying: bool,
    ) -> Result<Verdict, ApplyError> {
        let ddl_err = |reason: String| ApplyError::Ddl {
            position: pos.to_string(),
            sql: ddl.sql_text().chars().take(300).collect(),
            reason,
        };
        let lost = |e: mysql_async::Error| match server_code(&e) {
            Some(_) => sql_error(pos, e),
            None => ApplyError::Lost(e.to_string()),
        };
        let db_absent = self.use_database(ddl, pos).await?;
        let context = ddl_session::context(ddl).join(", ");
        if let Err(e) = self.conn.query_drop(format!("SET SESSION {context}")).await {
            return Err(match server_code(&e) {
                Some(_) => ddl_err(format!(
                    "the replica does not accept the primary's session context `SET SESSION {context}`: {e}. \
                     Give the replica what the primary has (time zone tables loaded with \
                     mariadb-tzinfo-to-sql, the same collations and locales) and restart the slave"
                )),
                None => ApplyError::Lost(e.to_string()),
            });
        }
        // A replicated event must not run here too (native: SLAVESIDE_DISABLED).
        let statement = objects::disabled_on_replica(&ddl.sql);
        let result = self.conn.query_drop(statement.as_ref()).await;
        // Restore the apply session whatever happened.
        self.conn.query_drop(SESSION_SETUP).await.map_err(lost)?;
        self.conn
            .query_drop(format!(
                "SET SESSION {}",
                ddl_session::restore(ddl).join(", ")
            ))
            .await
            .map_err(lost)?;
        let (actual, message) = match result {
            Ok(()) => (0, String::from("success")),
            Err(e) => match server_code(&e) {
                Some(code) => (code, format!("error {code}: {e}")),
                None => return Err(ApplyError::Lost(e.to_string())),
            },
        };
        let check_catalog =
            retrying && actual != ddl.error_code && ddl_session::may_have_been_applied(actual);
        // Several statements: which of them ran before the restart cannot
        // be told one by one, only that the transaction's catalog moved.
        let catalog_moved = check_catalog && self.retry_catalog_moved;
        let verdict = ddl_session::verdict(ddl, actual, catalog_moved);
        let sql = ddl.sql_text();
        match verdict {
            Verdict::Done => tracing::info!(position = %pos, sql = %sql, "applied statement"),
            Verdict::SameError => tracing::info!(
                position = %pos, sql = %sql, code = actual,
                "applied statement; it ended with the same error as on the primary"
            ),
            Verdict::DroppedListed => tracing::warn!(
                position = %pos, sql = %sql, primary = ddl.error_code, replica = actual,
                "applied DROP; some listed objects existed on one side only, none exists on either now"
            ),
            Verdict::AppliedBeforeRestart => tracing::warn!(
                position = %pos, sql = %sql, code = actual,
                "statement had been applied before the restart (its catalog changed since then); continuing"
            ),
            Verdict::Differs => {
                let expected = match ddl.error_code {
                    0 => "success".to_string(),
                    code => format!("error {code}"),
                };
                let mut reason = format!(
                    "on the primary it ended with {expected}, on the replica with {message}"
                );
                if let Some(db) = db_absent {
                    reason.push_str(&format!(
                        " (its default database `{db}` does not exist on the replica, so it ran without one)"
                    ));
                }
                if check_catalog {
                    reason.push_str(match self.pending_fingerprint {
                        Some(_) => ". It was being applied when the slave stopped, and it fails for real: \
                                   the catalog it changes is as it was before its first attempt, so that \
                                   attempt had not applied it",
                        None => ". It was being applied when the slave stopped, and the marker of that \
                                attempt has no catalog fingerprint (an older rowcast wrote it), so whether \
                                it was applied cannot be told",
                    });
                }
                reason.push_str(
                    ". The replica's schema differs from the primary's; the checkpoint was not moved. \
                     Make the objects the statement names on the replica match the primary's as they were \
                     before it (or re-seed the slave with --resnapshot), then restart the slave",
                );
                return Err(ddl_err(reason));
            }
        }
        Ok(verdict)
    }

    /// Makes the statement's default database the session's, as a native
    /// replica does. One the replica lacks (`DROP DATABASE IF EXISTS x`,
    /// `CREATE OR REPLACE DATABASE x` are logged with `x` as theirs) leaves
    /// the session without a default database, as does a statement logged
    /// without one; returns the absent database's name.
    async fn use_database(
        &mut self,
        ddl: &Ddl,
        pos: &SourcePosition,
    ) -> Result<Option<String>, ApplyError> {
        let mut absent = None;
        if let Some(db) = &ddl.database {
            match self
                .conn
                .query_drop(format!("USE {}", sql::ident(db)))
                .await
            {
                Ok(()) => return Ok(None),
                Err(e) if server_code(&e) == Some(ER_BAD_DB_ERROR) => {
                    tracing::info!(position = %pos, database = %db, "the statement's default database does not exist on the replica; running it without one");
                    absent = Some(db.clone());
                }
                Err(e) => {
                    return Err(match server_code(&e) {
                        Some(_) => ApplyError::Ddl {
                            position: pos.to_string(),
                            sql: ddl.sql_text().chars().take(300).collect(),
                            reason: format!(
                                "cannot use its default database `{db}` on the replica: {e}"
                            ),
                        },
                        None => ApplyError::Lost(e.to_string()),
                    })
                }
            }
        }
        let current: Option<Option<String>> = self
            .conn
            .query_first("SELECT DATABASE()")
            .await
            .map_err(|e| ApplyError::Lost(e.to_string()))?;
        if current.flatten().is_some() {
            // A session cannot leave its default database by a statement;
            // COM_CHANGE_USER without one can. It resets the session too.
            self.conn
                .change_user(mysql_async::ChangeUserOpts::default().with_db_name(None))
                .await
                .map_err(|e| ApplyError::Lost(e.to_string()))?;
            self.relock().await?;
            self.conn
                .query_drop(SESSION_SETUP)
                .await
                .map_err(|e| sql_error(pos, e))?;
            self.replay_format = None;
        }
        Ok(absent)
    }

    async fn write_checkpoint(&mut self, seq: u64, txn: &Transaction) -> Result<(), ApplyError> {
        let p = &txn.position;
        let resume = self.current_resume();
        let r = resume.as_ref();
        self.conn
            .exec_drop(
                "INSERT INTO rowcast.checkpoint \
                   (slave_name, log_seq, source_epoch, source_file, source_offset, source_gtid, source_time, applied_at, ddl_pending_seq, \
                    xa_resume_seq, xa_resume_epoch, xa_resume_file, xa_resume_offset, xa_resume_gtid) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, NOW(6), NULL, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE log_seq=VALUES(log_seq), source_epoch=VALUES(source_epoch), source_file=VALUES(source_file), \
                   source_offset=VALUES(source_offset), source_gtid=VALUES(source_gtid), \
                   source_time=VALUES(source_time), applied_at=VALUES(applied_at), ddl_pending_seq=NULL, \
                   ddl_pending_fingerprint=NULL, xa_resume_seq=VALUES(xa_resume_seq), xa_resume_epoch=VALUES(xa_resume_epoch), \
                   xa_resume_file=VALUES(xa_resume_file), xa_resume_offset=VALUES(xa_resume_offset), \
                   xa_resume_gtid=VALUES(xa_resume_gtid)",
                Params::Positional(vec![
                    self.name.as_str().into(),
                    seq.into(),
                    p.epoch.into(),
                    p.file.as_str().into(),
                    p.offset.into(),
                    p.gtid.as_ref().map(|g| g.to_string()).into(),
                    txn.timestamp.into(),
                    r.map(|r| r.0).into(),
                    r.map(|r| r.1.epoch).into(),
                    r.map(|r| r.1.file.clone()).into(),
                    r.map(|r| r.1.offset).into(),
                    r.and_then(|r| r.1.gtid.as_ref().map(|g| g.to_string())).into(),
                ]),
            )
            .await
            .map_err(|e| sql_error(p, e))?;
        self.xa_resume = resume;
        Ok(())
    }

    /// Records that everything up to log sequence `seq` is applied when
    /// the checkpoint has no sequence yet (after a snapshot, when the log
    /// is a NATS stream and the first message after the snapshot is found).
    pub async fn note_seq(&mut self, seq: u64) -> Result<(), ApplyError> {
        if self.checkpoint.seq != 0 || seq == 0 {
            return Ok(());
        }
        self.conn
            .exec_drop(
                "UPDATE rowcast.checkpoint SET log_seq = ? WHERE slave_name = ? AND log_seq = 0",
                (seq, &self.name),
            )
            .await
            .map_err(|e| ApplyError::Lost(e.to_string()))?;
        self.checkpoint.seq = seq;
        Ok(())
    }

    /// Deletes this slave's checkpoint: the next connection asks for a
    /// snapshot.
    pub async fn forget_checkpoint(&mut self) -> Result<(), ApplyError> {
        let at = SourcePosition::new("(none)", 0);
        self.conn
            .exec_drop(
                "DELETE FROM rowcast.checkpoint WHERE slave_name = ?",
                (&self.name,),
            )
            .await
            .map_err(|e| sql_error(&at, e))?;
        self.checkpoint = Checkpoint {
            seq: 0,
            position: None,
            ddl_pending_seq: None,
        };
        if !self.held.is_empty() {
            tracing::warn!(held = self.held.len(), "forgetting the checkpoint drops the prepared XA transactions held; the snapshot will hold whatever the primary committed");
        }
        self.held.clear();
        self.held_complete = true;
        self.xa_resume = None;
        self.last_seen = None;
        Ok(())
    }

    /// Runs a statement from `SHOW CREATE ...` (UTF-8 text).
    async fn run_snapshot_ddl(
        &mut self,
        database: Option<&str>,
        sql: &[u8],
        charset: Option<&(String, String)>,
    ) -> Result<(), ApplyError> {
        let at = SourcePosition::new("(snapshot)", 0);
        let ddl_err = |e: mysql_async::Error| ApplyError::Ddl {
            position: "snapshot".into(),
            sql: String::from_utf8_lossy(sql).chars().take(300).collect(),
            reason: e.to_string(),
        };
        self.conn
            .query_drop("SET NAMES utf8mb4, SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'")
            .await
            .map_err(|e| sql_error(&at, e))?;
        if let Some((client, connection)) = charset {
            self.conn
                .exec_drop(
                    "SET SESSION character_set_client = ?, collation_connection = ?",
                    (client, connection),
                )
                .await
                .map_err(ddl_err)?;
        }
        if let Some(db) = database {
            self.conn
                .query_drop(format!("USE {}", sql::ident(db)))
                .await
                .map_err(ddl_err)?;
        }
        let result = self.conn.query_drop(sql).await;
        self.conn
            .query_drop(SESSION_SETUP)
            .await
            .map_err(|e| sql_error(&at, e))?;
        result.map_err(ddl_err)
    }

    /// Creates a stored object of a snapshot in its definition context.
    async fn run_snapshot_object(&mut self, object: &StoredObject) -> Result<(), ApplyError> {
        let at = SourcePosition::new("(snapshot)", 0);
        let result = objects::create(&mut self.conn, object).await;
        self.conn
            .query_drop(SESSION_SETUP)
            .await
            .map_err(|e| sql_error(&at, e))?;
        result.map_err(|e| match server_code(&e) {
            Some(_) => ApplyError::Ddl {
                position: "snapshot".into(),
                sql: String::from_utf8_lossy(&object.create_sql)
                    .chars()
                    .take(300)
                    .collect(),
                reason: format!(
                    "creating {} {}.{}: {e}",
                    object.kind.keyword().to_ascii_lowercase(),
                    object.database,
                    object.name
                ),
            },
            None => ApplyError::Lost(e.to_string()),
        })
    }

    /// Starts loading a snapshot: the checkpoint is removed first, so a
    /// slave interrupted while loading never believes it is complete; then
    /// each replicated database is dropped and created afresh with its
    /// sequences (which table defaults may name), tables, routines (before
    /// the views that call them, created at the end) and events (disabled
    /// on the replica). Triggers wait for the rows.
    pub async fn snapshot_begin(
        &mut self,
        databases: &[SnapshotObject],
        tables: &[SnapshotObject],
        views: Vec<SnapshotObject>,
        objects: StoredObjects,
    ) -> Result<(), ApplyError> {
        self.forget_checkpoint().await?;
        self.plans.clear();
        for db in databases {
            self.run_snapshot_ddl(
                None,
                format!("DROP DATABASE IF EXISTS {}", sql::ident(&db.name)).as_bytes(),
                None,
            )
            .await?;
            self.run_snapshot_ddl(None, &db.create_sql, None).await?;
        }
        let at = SourcePosition::new("(snapshot)", 0);
        for s in &objects.sequences {
            let result = objects::create_sequence(&mut self.conn, s).await;
            self.conn
                .query_drop(SESSION_SETUP)
                .await
                .map_err(|e| sql_error(&at, e))?;
            result.map_err(|e| ApplyError::Ddl {
                position: "snapshot".into(),
                sql: String::from_utf8_lossy(&s.create_sql).into_owned(),
                reason: format!("creating sequence {}.{}: {e}", s.database, s.name),
            })?;
        }
        for t in tables {
            self.run_snapshot_ddl(Some(&t.database), &t.create_sql, None)
                .await?;
        }
        for o in objects.routines.iter().chain(&objects.events) {
            self.run_snapshot_object(o).await?;
        }
        // History rows keep the primary's row start and end (MariaDB
        // 10.11+; elsewhere there are no versioned tables to load).
        if let Err(e) = self
            .conn
            .query_drop("SET SESSION system_versioning_insert_history = 1")
            .await
        {
            if server_code(&e).is_none() {
                return Err(ApplyError::Lost(e.to_string()));
            }
        }
        self.snapshot_views = views;
        self.snapshot_triggers = objects.triggers;
        Ok(())
    }

    /// Loads one chunk of snapshot rows in one local transaction.
    pub async fn snapshot_rows(
        &mut self,
        table: &TableSchema,
        rows: &[Row],
    ) -> Result<(), ApplyError> {
        let at = SourcePosition::new("(snapshot)", 0);
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| sql_error(&at, e))?;
        let change = Change::Insert {
            table: 0,
            rows: rows.to_vec(),
        };
        let txn = Transaction {
            position: at.clone(),
            timestamp: 0,
            part: 0,
            more: false,
            tables: vec![table.clone()],
            changes: Vec::new(),
            events: None,
            xa: None,
        };
        let result = self.load_snapshot_rows(&txn, change).await;
        if result.is_err() {
            let _ = self.conn.query_drop("ROLLBACK").await;
            return result;
        }
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| sql_error(&at, e))
    }

    /// Inserts snapshot rows. A row holding ENUM index 0 (the empty value
    /// a lax sql_mode on the primary stores for an invalid one) cannot be
    /// written in strict mode; it is written alone without it, and must
    /// cause exactly one warning per such value, nothing else.
    async fn load_snapshot_rows(
        &mut self,
        txn: &Transaction,
        change: Change,
    ) -> Result<(), ApplyError> {
        let Change::Insert { table, rows } = change else {
            unreachable!("snapshot chunks are inserts")
        };
        let enums: Vec<usize> = txn.tables[0]
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == ColumnKind::Enum)
            .map(|(i, _)| i)
            .collect();
        let empties = |row: &Row| {
            enums
                .iter()
                .filter(|&&i| matches!(row[i], Value::Int(0) | Value::UInt(0)))
                .count()
        };
        let (lax, strict): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| empties(r) > 0);
        if !strict.is_empty() {
            let change = Change::Insert {
                table,
                rows: strict,
            };
            self.apply_change(txn, 0, &change).await?;
        }
        for row in lax {
            let expected = empties(&row);
            self.conn
                .query_drop(LAX_SQL_MODE)
                .await
                .map_err(|e| sql_error(&txn.position, e))?;
            let change = Change::Insert {
                table,
                rows: vec![row],
            };
            let result = self.apply_change(txn, 0, &change).await;
            let warnings = usize::from(self.conn.get_warnings());
            self.conn
                .query_drop(SESSION_SETUP)
                .await
                .map_err(|e| sql_error(&txn.position, e))?;
            result?;
            if warnings != expected {
                let plan = self.plan(&txn.tables[0], &txn.position).await?;
                let Change::Insert { rows, .. } = &change else {
                    unreachable!()
                };
                return Err(ApplyError::Sql {
                    position: "snapshot".into(),
                    reason: format!(
                        "the row {} of {} holds {expected} empty ENUM value(s) but writing it gave {warnings} warnings: a value was changed on the way; please report this as a rowcast bug",
                        plan.describe_key(&rows[0]),
                        plan.table_name()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Creates the snapshot's views (in dependency order, by retrying the
    /// ones that name a view not yet created) and stores the snapshot
    /// position as the checkpoint: from here on the slave is complete.
    pub async fn snapshot_end(&mut self, position: &SourcePosition) -> Result<(), ApplyError> {
        let mut pending = std::mem::take(&mut self.snapshot_views);
        while !pending.is_empty() {
            let mut failed = Vec::new();
            let mut last_err = None;
            let before = pending.len();
            for v in pending {
                match self
                    .run_snapshot_ddl(Some(&v.database), &v.create_sql, v.charset.as_ref())
                    .await
                {
                    Ok(()) => {}
                    Err(e @ ApplyError::Lost(_)) => return Err(e),
                    Err(e) => {
                        last_err = Some(e);
                        failed.push(v);
                    }
                }
            }
            if failed.len() == before {
                return Err(last_err.expect("a failure was recorded"));
            }
            pending = failed;
        }
        for t in std::mem::take(&mut self.snapshot_triggers) {
            self.run_snapshot_object(&t).await?;
        }
        if let Err(e) = self
            .conn
            .query_drop("SET SESSION system_versioning_insert_history = 0")
            .await
        {
            if server_code(&e).is_none() {
                return Err(ApplyError::Lost(e.to_string()));
            }
        }
        let txn = Transaction {
            position: position.clone(),
            timestamp: 0,
            part: 0,
            more: false,
            tables: Vec::new(),
            changes: Vec::new(),
            events: None,
            xa: None,
        };
        self.local("START TRANSACTION", position).await?;
        self.write_checkpoint(0, &txn).await?;
        self.local("COMMIT", position).await?;
        self.checkpoint = Checkpoint {
            seq: 0,
            position: Some(position.clone()),
            ddl_pending_seq: None,
        };
        Ok(())
    }

    /// The plan for a table, rebuilt when the binlog's description of it
    /// changes or after DDL.
    async fn plan(
        &mut self,
        schema: &TableSchema,
        pos: &SourcePosition,
    ) -> Result<Arc<TablePlan>, ApplyError> {
        let key = (schema.database.clone(), schema.name.clone());
        if let Some(p) = self.plans.get(&key) {
            if &p.schema == schema {
                return Ok(p.clone());
            }
        }
        // MariaDB leaves GENERATION_EXPRESSION NULL for ordinary columns,
        // MySQL leaves it empty. A versioned table's declared row start and
        // end are written when a snapshot loads its history.
        let generated: Vec<Vec<u8>> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND GENERATION_EXPRESSION <> '' \
                   AND GENERATION_EXPRESSION NOT IN ('ROW START', 'ROW END')",
                (&schema.database, &schema.name),
            )
            .await
            .map_err(|e| sql_error(pos, e))?;
        let generated: HashSet<String> = generated
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect();
        let mut plan = TablePlan::new(schema.clone(), &generated);
        let facts = self.replica_table(schema, pos).await?;
        plan.net_ok = facts.net_ok;
        plan.native = facts.native;
        let plan = Arc::new(plan);
        self.plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// Applies change `index` of `txn`: through the server's row-event
    /// applier when the replica's table needs it (`replay.rs`), otherwise
    /// as statements.
    async fn apply_change(
        &mut self,
        txn: &Transaction,
        index: usize,
        change: &Change,
    ) -> Result<(), ApplyError> {
        let pos = &txn.position;
        let table = change
            .table()
            .unwrap_or_else(|| unreachable!("DDL is handled by apply_with_ddl"));
        let plan = self.plan(&txn.tables[table as usize], pos).await?;
        // Partial images have no rows to build statements from, whatever
        // the table's plan (`replay_change` refuses a change without events).
        if change.native_only() {
            return self.replay_change(txn, index, table, &plan).await;
        }
        // Snapshot rows have no events: they are loaded before the
        // replica's triggers exist and with foreign key checks off.
        // An empty ENUM value cannot be written by a strict statement;
        // the row-event applier writes the primary's bytes as they are.
        if (plan.native || change.holds_empty_enum()) && txn.events.is_some() {
            return self.replay_change(txn, index, table, &plan).await;
        }
        match change {
            Change::Insert { rows, .. } => {
                if let Err((e, chunk)) = self.insert_rows(&plan, rows).await {
                    return Err(match server_code(&e) {
                        Some(ER_DUP_ENTRY) => ApplyError::Conflict {
                            position: pos.to_string(),
                            op: "INSERT",
                            table: plan.table_name(),
                            key: match chunk {
                                [one] => plan.describe_key(one),
                                _ => format!("(one of {} rows)", chunk.len()),
                            },
                            reason: e.to_string(),
                        },
                        _ => sql_error(pos, e),
                    });
                }
                if verify::is_chunk_table(&plan.schema) {
                    for row in rows {
                        self.check_chunk(&plan.schema, row, pos).await?;
                    }
                }
            }
            Change::Update { rows, .. } => {
                for (before, after) in rows {
                    let (stmt, params) = plan.update_for(before, after);
                    self.exec_one_row(&stmt, params, pos, "UPDATE", &plan, before)
                        .await?;
                }
            }
            Change::Delete { rows, .. } => {
                for row in rows {
                    let params = plan.key_params(row);
                    self.exec_one_row(&plan.delete, params, pos, "DELETE", &plan, row)
                        .await?;
                }
            }
            Change::PartialImage { .. } | Change::Ddl(_) => {
                unreachable!("replayed above, or handled by apply_with_ddl")
            }
        }
        Ok(())
    }

    /// What the replica's copy of a table allows. The net effect (delete
    /// and re-insert) only for a plain copy of the source's table: no
    /// triggers (they would see DELETE+INSERT instead of UPDATE), a base
    /// table (not system-versioned, whose history would differ), no
    /// foreign keys (a re-inserted parent is not the same as an updated
    /// one), the same columns (replica-only defaults would be reset) and
    /// primary key. The server's row-event applier (`replay.rs`) for
    /// tables whose rows statements cannot reproduce: with triggers, in a
    /// foreign key, without a primary key, or not a base table.
    async fn replica_table(
        &mut self,
        schema: &TableSchema,
        pos: &SourcePosition,
    ) -> Result<ReplicaTable, ApplyError> {
        let (db, t) = (&schema.database, &schema.name);
        type Facts = (u64, u64, Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);
        let facts: Option<Facts> = self
            .conn
            .exec_first(
                "SELECT \
                   (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?), \
                   (SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS \
                      WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?)), \
                   (SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?), \
                   (SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR '\\n') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?), \
                   (SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR '\\n') FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY')",
                (db, t, db, t, db, t, db, t, db, t, db, t),
            )
            .await
            .map_err(|e| sql_error(pos, e))?;
        let Some((triggers, foreign_keys, kind, columns, key)) = facts else {
            return Ok(ReplicaTable::default());
        };
        let names = |idx: &mut dyn Iterator<Item = usize>| -> Vec<u8> {
            idx.map(|i| schema.columns[i].name.as_bytes().to_vec())
                .collect::<Vec<_>>()
                .join(&b'\n')
        };
        let source_columns = names(&mut (0..schema.columns.len()));
        let source_key = names(&mut schema.primary_key.iter().map(|&i| i as usize));
        let exists = kind.is_some();
        let base = kind.as_deref() == Some("BASE TABLE");
        let native =
            exists && (triggers > 0 || foreign_keys > 0 || !base || schema.primary_key.is_empty());
        Ok(ReplicaTable {
            native,
            net_ok: !native
                && columns.as_deref() == Some(&source_columns[..])
                && key.as_deref() == Some(&source_key[..]),
        })
    }

    /// Applies change `index` (on table slot `table`) of `txn` by handing
    /// the primary's own events to the replica's row-event applier.
    async fn replay_change(
        &mut self,
        txn: &Transaction,
        index: usize,
        table: u32,
        plan: &TablePlan,
    ) -> Result<(), ApplyError> {
        let pos = &txn.position;
        let found = txn.events.as_ref().and_then(|events| {
            replay::change_statements(events, table, index, replay::STATEMENT_BYTES)
                .map(|s| (events, s))
        });
        let Some((events, statements)) = found else {
            return Err(ApplyError::Sql {
                position: pos.to_string(),
                reason: format!(
                    "the change log has no binlog events for the change on {}, which the replica must apply with its row-event applier (triggers, foreign keys, no primary key, system versioning or a partial row image); this is a rowcast bug, please report it",
                    plan.table_name()
                ),
            });
        };
        if self.replay_format.as_deref() != Some(&events.format[..]) {
            self.conn
                .query_drop(replay::format_statement(events))
                .await
                .map_err(|e| replay_error(pos, plan, e))?;
            self.replay_format = Some(events.format.clone());
        }
        for statement in statements {
            self.conn
                .query_drop(statement)
                .await
                .map_err(|e| replay_error(pos, plan, e))?;
        }
        Ok(())
    }

    async fn check_chunk(
        &mut self,
        schema: &TableSchema,
        row: &Row,
        pos: &SourcePosition,
    ) -> Result<(), ApplyError> {
        verify::check_replicated_chunk(&mut self.conn, &self.name, schema, row)
            .await
            .map_err(|e| sql_error(pos, e))
    }

    async fn exec_one_row(
        &mut self,
        stmt: &str,
        params: Vec<MyValue>,
        pos: &SourcePosition,
        op: &'static str,
        plan: &TablePlan,
        row: &Row,
    ) -> Result<(), ApplyError> {
        let conflict = |reason: String| ApplyError::Conflict {
            position: pos.to_string(),
            op,
            table: plan.table_name(),
            key: plan.describe_key(row),
            reason,
        };
        if let Err(e) = self.conn.exec_drop(stmt, Params::Positional(params)).await {
            return Err(match server_code(&e) {
                Some(ER_DUP_ENTRY) => conflict(e.to_string()),
                Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT) => ApplyError::Lost(e.to_string()),
                _ => sql_error(pos, e),
            });
        }
        // The session has CLIENT_FOUND_ROWS: affected rows = matched rows.
        match self.conn.affected_rows() {
            1 => Ok(()),
            0 => Err(conflict("the row does not exist on the replica".into())),
            n => Err(conflict(format!("{n} rows matched the key"))),
        }
    }
}

impl Applier {
    /// [`Applier::apply_batch`], given up as [`ApplyError::Lost`] when the
    /// target leaves the session idle while its answer is awaited (a
    /// frozen connection, which neither TCP nor the server reports). The
    /// local transaction is rolled back with the session, so the batch is
    /// applied once, by the next applier.
    pub async fn apply_batch_watched(
        &mut self,
        batch: &[(u64, Transaction)],
    ) -> Result<(), ApplyError> {
        let (target, id) = (self.target.clone(), self.conn.id());
        let result = tokio::select! {
            r = self.apply_batch(batch) => r,
            reason = crate::source::watch_session(&target, id) => Err(ApplyError::Lost(reason)),
        };
        self.last_active = std::time::Instant::now();
        result
    }
}

/// How long a slave waits for its session lock while a live session holds
/// it, before it gives up with [`ApplyError::SessionLocked`]. A second
/// slave with the same name must not wait for ever unnoticed: it exits
/// with an error that names the other session and the fix.
pub const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// One `GET_LOCK` wait; between two the holder is looked at and logged.
const LOCK_STEP: Duration = Duration::from_secs(5);
/// An applier idle this long touches its session, so that its `Sleep`
/// time in the processlist stays well below [`SESSION_SILENCE`], the age
/// at which a holder of the lock counts as a zombie and is killed.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
/// MariaDB and MySQL refuse longer lock names.
const LOCK_NAME_MAX: usize = 64;

/// The server lock of slave `name`: `rowcast:<name>` when that fits in
/// 64 characters, otherwise `rowcast:<start of name>~<hash of name>`, so
/// it stays readable in a processlist and distinct for distinct names.
pub fn session_lock_name(name: &str) -> String {
    let plain = format!("rowcast:{name}");
    // Bytes, not characters: the bound holds however the server counts.
    if plain.len() <= LOCK_NAME_MAX {
        return plain;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let room = LOCK_NAME_MAX - "rowcast:".len() - 1 - hash.len();
    let mut start = String::new();
    for c in name.chars() {
        if start.len() + c.len_utf8() > room {
            break;
        }
        start.push(c);
    }
    format!("rowcast:{start}~{hash}")
}

/// Takes `lock` on `conn`, waiting while another session holds it. A
/// holder that is this process's previous session, or that has sat idle
/// (`Sleep`) for [`SESSION_SILENCE`] (a frozen or abandoned connection:
/// a live applier touches its session every [`KEEPALIVE_EVERY`]) is
/// killed and waited for until it is gone; any other holder is waited for
/// up to [`LOCK_WAIT_LIMIT`], then this slave stops.
async fn take_session_lock(
    conn: &mut Conn,
    target: &Source,
    name: &str,
    lock: &str,
    previous: Option<u32>,
) -> Result<(), ApplyError> {
    let started = std::time::Instant::now();
    // The first try does not wait, so a holder is reported at once.
    let mut wait = 0u64;
    let mut last_holder: Option<(u64, String)> = None;
    loop {
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (lock, wait))
            .await
            .map_err(|e| target.classify(e))?;
        if got.flatten() == Some(1) {
            if let Some((holder, _)) = last_holder {
                tracing::info!(slave = %name, lock, previous_holder = holder, waited = ?started.elapsed(), "took this slave's session lock on the replica");
            }
            return Ok(());
        }
        wait = LOCK_STEP.as_secs();
        let waited = started.elapsed();
        let holder: Option<Option<u64>> = conn
            .exec_first("SELECT IS_USED_LOCK(?)", (lock,))
            .await
            .map_err(|e| target.classify(e))?;
        let info: Option<(String, String, String, i64, Option<String>)> = match holder.flatten() {
            Some(id) => conn
                .exec_first(
                    "SELECT USER, HOST, COMMAND, TIME, STATE FROM information_schema.PROCESSLIST WHERE ID = ?",
                    (id,),
                )
                .await
                .map_err(|e| target.classify(e))?,
            None => None,
        };
        let (Some(holder), Some((user, host, command, time, state))) = (holder.flatten(), info)
        else {
            // Freed (or its session just ended) in between: try again.
            if waited >= LOCK_WAIT_LIMIT * 2 {
                let (holder, holder_info) =
                    last_holder.unwrap_or((0, "a session that kept changing".into()));
                return Err(locked(name, target, lock, holder, holder_info, waited));
            }
            continue;
        };
        let holder_info = match state.filter(|s| !s.is_empty()) {
            Some(state) => format!("{user}@{host}, {command} for {time}s, {state}"),
            None => format!("{user}@{host}, {command} for {time}s"),
        };
        last_holder = Some((holder, holder_info.clone()));
        let ours = previous.is_some_and(|p| u64::from(p) == holder);
        let idle = command == "Sleep" && time >= SESSION_SILENCE.as_secs() as i64;
        if waited >= LOCK_WAIT_LIMIT && !(ours || idle && waited < LOCK_WAIT_LIMIT * 2) {
            return Err(locked(name, target, lock, holder, holder_info, waited));
        }
        if ours || idle {
            // The previous session of this slave was given up (it may be
            // frozen, or alive after a retried error); an idle holder is
            // one nobody drives any more. Its open transaction rolls back;
            // a COMMIT of it still on its way lands before it is gone, or
            // never, and the checkpoint is read only after that.
            tracing::warn!(slave = %name, lock, holder, holder_info = %holder_info, previous = ours, "the session holding this slave's lock on the replica is this slave's previous one or has been idle too long: killing it");
            let id = u32::try_from(holder).unwrap_or(u32::MAX);
            if !crate::source::kill_and_wait(conn, id).await {
                tracing::warn!(slave = %name, holder, "the killed session is still listed on the replica; waiting for it");
            }
            continue;
        }
        tracing::warn!(
            slave = %name,
            lock,
            holder,
            holder_info = %holder_info,
            waited = ?waited,
            gives_up_after = ?LOCK_WAIT_LIMIT,
            "session {holder} holds this slave's lock on the replica, so this slave must not apply: another `rowcast slave --name {name}` is running against this replica (run one per --name), or a dead slave's session is still open (the server drops it after wait_timeout, or KILL {holder}); waiting"
        );
    }
}

fn locked(
    name: &str,
    target: &Source,
    lock: &str,
    holder: u64,
    holder_info: String,
    waited: Duration,
) -> ApplyError {
    ApplyError::SessionLocked {
        name: name.to_string(),
        replica: target.endpoint().to_string(),
        lock: lock.to_string(),
        holder,
        holder_info,
        waited_secs: waited.as_secs(),
    }
}

impl Applier {
    /// The session lock again after COM_CHANGE_USER, which resets the
    /// session and with it frees its user locks. Another session may have
    /// taken it in between: then this one must not go on.
    async fn relock(&mut self) -> Result<(), ApplyError> {
        let held: Option<Option<i64>> = self
            .conn
            .exec_first("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (&self.lock,))
            .await
            .map_err(|e| ApplyError::Lost(e.to_string()))?;
        if held.flatten() == Some(1) {
            return Ok(());
        }
        let got: Option<Option<i64>> = self
            .conn
            .exec_first("SELECT GET_LOCK(?, 0)", (&self.lock,))
            .await
            .map_err(|e| ApplyError::Lost(e.to_string()))?;
        if got.flatten() == Some(1) {
            return Ok(());
        }
        Err(ApplyError::Lost(format!(
            "another session took this slave's lock `{}` on the replica while this one changed its default database; reconnecting (the new session waits for the lock)",
            self.lock
        )))
    }

    /// Touches the session if it has been idle for [`KEEPALIVE_EVERY`], so
    /// that another slave started with the same name sees it alive and
    /// does not take it for a zombie. Call it while waiting for work.
    pub async fn keep_alive(&mut self) -> Result<(), ApplyError> {
        if self.last_active.elapsed() < KEEPALIVE_EVERY {
            return Ok(());
        }
        match tokio::time::timeout(SESSION_SILENCE, self.conn.query_drop("DO 0")).await {
            Ok(Ok(())) => {
                self.last_active = std::time::Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(ApplyError::Lost(e.to_string())),
            Err(_) => Err(ApplyError::Lost(format!(
                "the replica did not answer a keep-alive within {SESSION_SILENCE:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod disk_full_tests {
    use super::*;

    #[test]
    fn disk_full_is_recognised_by_code_or_by_errno_28() {
        assert!(is_disk_full(1114, "The table 'log' is full"));
        assert!(is_disk_full(
            1021,
            "Disk full (./t/x); waiting for someone to free some space..."
        ));
        assert!(is_disk_full(
            3,
            "Error writing file './t/x.MAD' (errno: 28 \"No space left on device\")"
        ));
        assert!(is_disk_full(
            1030,
            "Got error 28 \"No space left on device\" from storage engine InnoDB"
        ));
        assert!(!is_disk_full(
            3,
            "Error writing file './t/x.MAD' (errno: 5 \"Input/output error\")"
        ));
        assert!(!is_disk_full(1030, "Got error 280 from storage engine"));
        assert!(!is_disk_full(
            ER_DUP_ENTRY,
            "Duplicate entry '28' for key 'PRIMARY'"
        ));
    }

    #[test]
    fn a_full_replica_stops_the_slave() {
        let e = sql_error(
            &SourcePosition::new("b.000001", 4),
            mysql_async::Error::Server(mysql_async::ServerError {
                code: ER_RECORD_FILE_FULL,
                message: "The table 'log' is full".into(),
                state: "HY000".into(),
            }),
        );
        assert!(matches!(e, ApplyError::DiskFull { .. }));
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("no space left"), "{e}");
    }
}

#[cfg(test)]
mod session_lock_tests {
    use super::*;

    #[test]
    fn a_short_name_is_its_own_lock_and_a_long_one_is_hashed_within_64_bytes() {
        assert_eq!(session_lock_name("eu-replica-1"), "rowcast:eu-replica-1");
        let long = "x".repeat(56);
        assert_eq!(session_lock_name(&long), format!("rowcast:{long}"));
        let a = session_lock_name(&format!("{}a", "é".repeat(40)));
        let b = session_lock_name(&format!("{}b", "é".repeat(40)));
        assert!(a.len() <= 64 && b.len() <= 64, "{a} / {b}");
        assert_ne!(a, b, "names that differ after the kept start differ");
        assert!(a.starts_with("rowcast:éé"), "stays readable: {a}");
    }
}
