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
//! A statement runs in the primary's session context (`ddl.rs`) and
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
//! Errors are classified in `apply_error.rs`: a lost connection, a
//! deadlock or a lock wait timeout is retried; a full replica disk stops
//! the slave with the local transaction rolled back; anything else stops it
//! too.
//!
//! This module owns the commit protocol: the checkpoint (read at
//! [`Applier::connect`], written with the rows it names), the local
//! transactions (one per transaction or batch, one across the parts of a
//! large transaction), the pending-DDL marker and the XA rows held. What
//! runs inside those transactions lives beside it, each an `impl Applier`
//! block of its own: one change at a time in `rows.rs` (with the
//! replica's table facts from `table_facts.rs`), a net effect in
//! `net_apply.rs`, logged statements in `ddl_apply.rs`, and a snapshot's
//! load in `snapshot_load.rs`.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params};

use std::collections::HashMap;
use std::sync::Arc;

use crate::log::change::{Transaction, XaStep, Xid};
use crate::net::wire::SnapshotObject;
use crate::replica::apply_error::sql_error;
pub use crate::replica::apply_error::ApplyError;
use crate::replica::migrations;
use crate::replica::net_effect::NetEffect;
use crate::replica::positional::ReplicaTable;
use crate::replica::seed_gate::SeedGate;
use crate::replica::session_lock::{session_lock_name, take_session_lock, AliveMarker};
use crate::replica::statements::TablePlan;
use crate::source::objects::StoredObject;
use crate::source::position::{Gtid, SourcePosition};
use crate::source::Source;

/// The apply session writes what it was given: UTC for TIMESTAMP, strict
/// so nothing is silently truncated, no auto-increment on an explicit 0,
/// and the `binary` charset so string bytes arrive unconverted in the
/// column's own charset (a MySQL JSON column, which refuses `binary`
/// strings, gets its values through `CONVERT(? USING utf8mb4)`: see
/// `statements.rs`).
pub(super) const SESSION_SETUP: &str = "SET SESSION time_zone='+00:00', \
    sql_mode='NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', \
    foreign_key_checks=0, NAMES binary";

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
    pub(super) conn: Conn,
    /// The session lock's name.
    pub(super) lock: String,
    /// Shows other processes that this slave is alive while `conn` idles
    /// (`None`: a seed loader's connection, which holds no lock).
    _alive: Option<AliveMarker>,
    /// When `conn` last ran a command: an applier idle this long touches
    /// it ([`Applier::keep_alive`]) so it never looks like a zombie.
    pub(super) last_active: std::time::Instant,
    /// Where `conn` goes, to watch it from a connection of its own.
    target: Source,
    /// The replica's `max_allowed_packet`, read at connect: a transaction
    /// needing more is a permanent error (see `packet_size`).
    max_packet: u64,
    pub(super) name: String,
    /// The target's address, for errors the operator must act on.
    replica: String,
    pub(super) checkpoint: Checkpoint,
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
    pub(super) plans: HashMap<(String, String), Arc<TablePlan>>,
    /// The replica's tables that positional schemas were mapped onto
    /// (`None`: no such table), valid until the next DDL, like `plans`.
    pub(super) positional: HashMap<(String, String), Option<Arc<ReplicaTable>>>,
    /// What the replica makes of a primary's session context
    /// (`ddl_apply`), read at the first statement.
    pub(super) dialect: Option<Arc<crate::replica::ddl::ReplicaDialect>>,
    /// Views of a snapshot being loaded, created once all tables exist.
    pub(super) snapshot_views: Vec<SnapshotObject>,
    /// Triggers of a snapshot being loaded, created once its rows are in
    /// (so they do not fire on them).
    pub(super) snapshot_triggers: Vec<StoredObject>,
    /// While the parts of a large transaction are being applied in one
    /// open local transaction: the index of the part expected next.
    open_parts: Option<u32>,
    /// The FORMAT_DESCRIPTION event this connection's row-event applier
    /// was given last (see `replay.rs`).
    pub(super) replay_format: Option<Vec<u8>>,
    /// The catalog fingerprint stored with the pending-DDL marker, as it
    /// was before that statement's first attempt.
    pub(super) pending_fingerprint: Option<String>,
    /// For the transaction being retried: its catalog differs from the
    /// marker's fingerprint (see `apply_with_ddl`).
    pub(super) retry_catalog_moved: bool,
    /// The tables still being seeded (`seed_gate.rs`).
    pub(super) seed: SeedGate,
    /// `--resync` tables not asked of the master yet.
    pub resync_pending: Vec<(String, String)>,
    /// A connection that only loads seed chunks (`loader`).
    pub(super) seed_loader: bool,
    /// `--skip-at`: the transaction still to skip (`skip.rs`).
    pub(super) skip: Option<SourcePosition>,
    /// What `rowcast.skipped` holds for this slave, oldest first.
    pub(super) skipped: Vec<crate::net::wire::Skipped>,
    /// A skip happened that `rowcast status` has not heard of yet.
    pub(super) skip_news: bool,
    /// The first part's position of the large transaction whose parts
    /// arrive (it names the transaction for `--skip-at`).
    pub(super) parts_first: Option<SourcePosition>,
    /// Skipping the parts of the transaction that began at this position.
    pub(super) skipping_parts: Option<SourcePosition>,
    /// `--rewrite-db` (`rewrite_rules.rs`): what arrives is already in the
    /// replica's names; the checksum query a chunk row carries is not.
    pub(super) rewrite: Arc<crate::replica::db_rewrite::DbRewrite>,
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
        let mut a = Self::connect_after(&self.target, &self.name, Some(self.conn.id())).await?;
        a.rewrite = self.rewrite.clone();
        Ok(a)
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
        let skipped = crate::replica::skip::load_skipped(&mut conn, name)
            .await
            .map_err(|e| target.classify(e))?;
        Applier {
            max_packet: max_packet.unwrap_or(u64::MAX),
            conn,
            lock,
            _alive: Some(AliveMarker::spawn(target.clone(), name)),
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
            positional: HashMap::new(),
            dialect: None,
            snapshot_views: Vec::new(),
            snapshot_triggers: Vec::new(),
            open_parts: None,
            replay_format: None,
            pending_fingerprint,
            retry_catalog_moved: false,
            seed: SeedGate::default(),
            resync_pending: Vec::new(),
            seed_loader: false,
            skip: None,
            skipped,
            skip_news: false,
            parts_first: None,
            skipping_parts: None,
            rewrite: Arc::default(),
        }
        .with_seed()
        .await
    }

    async fn with_seed(mut self) -> Result<Applier, ApplyError> {
        self.load_seed().await?;
        Ok(self)
    }

    /// A second connection to the replica for loading seed chunks beside
    /// this applier: no session lock (this applier holds it), no
    /// checkpoint of its own to write.
    pub async fn loader(&self) -> Result<Applier, ApplyError> {
        let mut conn = self.target.connect().await?;
        // The chunks are a copy of unique rows: secondary unique indexes
        // need no check while they are loaded.
        conn.query_drop(format!("{SESSION_SETUP}, unique_checks=0"))
            .await
            .map_err(|e| self.target.classify(e))?;
        if let Err(e) = conn
            .query_drop("SET SESSION system_versioning_insert_history = 1")
            .await
        {
            if crate::replica::apply_error::server_code(&e).is_none() {
                return Err(ApplyError::Lost(e.to_string()));
            }
        }
        Ok(Applier {
            max_packet: self.max_packet,
            conn,
            lock: String::new(),
            _alive: None,
            last_active: std::time::Instant::now(),
            target: self.target.clone(),
            name: self.name.clone(),
            replica: self.replica.clone(),
            checkpoint: self.checkpoint.clone(),
            held: Vec::new(),
            held_complete: true,
            xa_resume: None,
            last_seen: None,
            plans: HashMap::new(),
            positional: HashMap::new(),
            dialect: None,
            snapshot_views: Vec::new(),
            snapshot_triggers: Vec::new(),
            open_parts: None,
            replay_format: None,
            pending_fingerprint: None,
            retry_catalog_moved: false,
            seed: SeedGate::default(),
            resync_pending: Vec::new(),
            seed_loader: true,
            skip: None,
            skipped: Vec::new(),
            skip_news: false,
            parts_first: None,
            skipping_parts: None,
            rewrite: self.rewrite.clone(),
        })
    }

    /// The seed in progress (empty when there is none).
    pub fn seed(&self) -> &SeedGate {
        &self.seed
    }

    pub fn seed_mut(&mut self) -> &mut SeedGate {
        &mut self.seed
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

    /// The lowest log sequence this slave may still read again, which the
    /// master must keep (`SlaveMessage::Ack::keep_from`): the entry after
    /// the checkpoint, or while prepared XA transactions are held, the
    /// entry after their `xa_resume` (a restart reads from there). Progress
    /// is the checkpoint's sequence, not this: a slave holding a prepare
    /// has still applied everything up to its checkpoint.
    pub fn keep_from(&self) -> u64 {
        self.held_keep_from()
            .unwrap_or(self.checkpoint.seq.saturating_add(1))
    }

    /// [`Applier::keep_from`] while prepared XA transactions are held
    /// (`None`: nothing held, the entry after the checkpoint).
    pub fn held_keep_from(&self) -> Option<u64> {
        self.current_resume()
            .map(|(seq, _)| seq.min(self.checkpoint.seq).saturating_add(1))
    }

    /// The `xa_resume` the next checkpoint write stores.
    fn current_resume(&self) -> Option<(u64, SourcePosition)> {
        if self.held_complete {
            self.held.first().map(|h| h.before.clone())
        } else {
            self.xa_resume.clone()
        }
    }

    /// A statement of the local transaction's own (START TRANSACTION,
    /// COMMIT), its failure named by the source position being applied.
    pub(super) async fn local(
        &mut self,
        statement: &str,
        pos: &SourcePosition,
    ) -> Result<(), ApplyError> {
        self.conn
            .query_drop(statement)
            .await
            .map_err(|e| sql_error(pos, e))
    }

    /// `txn` (the last part, if in parts) and its checkpoint are committed.
    pub(super) fn applied(&mut self, seq: u64, txn: &Transaction) {
        if txn.is_commit() {
            self.checkpoint = Checkpoint {
                seq,
                position: Some(txn.position.clone()),
                ddl_pending_seq: None,
            };
        }
        self.seen(seq, txn);
    }

    /// An entry was received and applied or skipped.
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
        // `--skip-at` an XA COMMIT or ROLLBACK: its held rows are dropped
        // (a PREPARE is refused by the verdict).
        if !done && self.skip_verdict(txn)? {
            let removed = index.map(|i| (i, self.held.remove(i)));
            if let Err(e) = self.skip_write(seq, txn, &txn.position).await {
                if let Some((i, h)) = removed {
                    self.held.insert(i, h);
                }
                return Err(e);
            }
            return Ok(());
        }
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
                    // Seeding: the prepared rows became visible to the
                    // seed's reads only now, at the XA COMMIT.
                    let mut prepared = held.txn.clone();
                    if let Err(e) = self.seed.filter_at(&mut prepared, &txn.position) {
                        self.held.insert(i, held);
                        return Err(ApplyError::Sql {
                            position: pos.to_string(),
                            reason: e.to_string(),
                        });
                    }
                    let result = self.commit_held(seq, txn, &prepared).await;
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
        if self.skip_verdict(txn)? {
            return self.skip_write(seq, txn, &txn.position).await;
        }
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
            self.parts_first = Some(txn.position.clone());
            self.skipping_parts = None;
        }
        if self.skipping_parts.is_none() {
            let verdict = self.skip_verdict(txn);
            if verdict.is_err() {
                // Named inside this transaction, or passed: it is not
                // applied either.
                self.abandon_parts().await;
            }
            if verdict? {
                self.skipping_parts = Some(txn.position.clone());
            }
        }
        if let Some(first) = self.skipping_parts.clone() {
            // Skipped whole: nothing is applied, the last part writes the
            // skip and the checkpoint.
            if txn.is_commit() {
                self.skip_write(seq, txn, &first).await?;
                self.skipping_parts = None;
            }
            return Ok(());
        }
        let pos = &txn.position;
        let result = async {
            // A part holds no DDL (decode never cuts one): its tables are
            // mapped by position once, for its net effect.
            let txn = &*self.resolve_positional(txn).await?;
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
            // A part is applied as its net effect when it can be, otherwise
            // change by change.
            if !self.part_as_net(txn).await? {
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
        self.skipping_parts = None;
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
                .map_or(0, |h| crate::replica::packet_size::needed_bytes(&h.txn)),
            _ => crate::replica::packet_size::needed_bytes(t),
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
                setting: crate::replica::packet_size::as_setting(needed),
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
        // So does everything while a `--skip-at` is still to meet: the
        // skipped one commits alone, and none after it passes unchecked.
        if !self.held_complete || self.skip.is_some() || batch.iter().any(|(_, t)| t.xa.is_some()) {
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
        // No DDL here: each table is mapped by position once for the
        // batch, so the net effect sees names and keys.
        let mut resolved = Vec::with_capacity(fresh.len());
        for (_, t) in &fresh {
            resolved.push(self.resolve_positional(t).await?);
        }
        let txns: Vec<&Transaction> = resolved.iter().map(|t| t.as_ref()).collect();
        self.drop_unfinished(txns[0]).await;
        let result = match self.split(&txns, &last.position).await {
            Ok(Some(net)) if !net.tables.is_empty() => {
                match self.split_in_one_commit(&txns, &net, last_seq, last).await {
                    Ok(true) => {
                        tracing::debug!(
                            transactions = txns.len(),
                            net_tables = net.tables.len(),
                            ordered_tables = net.ordered_tables(),
                            "batch applied as its net effect"
                        );
                        Ok(())
                    }
                    Ok(false) => {
                        tracing::debug!(transactions = txns.len(), "the batch could not be applied as its net effect (rows not as expected on the replica); applying it statement by statement");
                        // Something on the replica was not as the batch
                        // expects: the exact path finds and names it.
                        let _ = self.conn.query_drop("ROLLBACK").await;
                        self.rows_in_one_commit(&txns, last_seq).await
                    }
                    Err(e) => Err(e),
                }
            }
            Ok(_) => self.rows_in_one_commit(&txns, last_seq).await,
            Err(e) => Err(e),
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

    /// Applies a batch split by table (`net_apply.rs`) and the checkpoint
    /// of its last transaction in one local transaction. `Ok(false)` when
    /// the replica surprised the net effect (a key missing or already
    /// present); the caller rolls back.
    async fn split_in_one_commit(
        &mut self,
        txns: &[&Transaction],
        net: &NetEffect<'_>,
        seq: u64,
        last: &Transaction,
    ) -> Result<bool, ApplyError> {
        let pos = &last.position;
        self.local("START TRANSACTION", pos).await?;
        if !self.apply_split(txns, net, pos).await? {
            return Ok(false);
        }
        self.write_checkpoint(seq, last).await?;
        self.local("COMMIT", pos).await?;
        Ok(true)
    }

    pub(super) async fn mark_ddl_pending(
        &mut self,
        seq: u64,
        pos: &SourcePosition,
    ) -> Result<(), ApplyError> {
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

    pub(super) async fn write_checkpoint(
        &mut self,
        seq: u64,
        txn: &Transaction,
    ) -> Result<(), ApplyError> {
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
        // A new copy holds every transaction the primary has: the skips
        // no longer make this replica differ (`skip.rs`).
        self.conn
            .exec_drop(
                "DELETE FROM rowcast.skipped WHERE slave_name = ?",
                (&self.name,),
            )
            .await
            .map_err(|e| sql_error(&at, e))?;
        self.skipped.clear();
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
