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
//! checkpoint. The applier first records `ddl_pending_seq` (committed),
//! then runs the statement, then advances the checkpoint. A crash in
//! between leaves `ddl_pending_seq` set; the statement is then run again
//! and an "already exists"/"does not exist" answer is taken as proof that
//! it had been applied (MariaDB 10.6+ DDL is atomic, so it is all or
//! nothing).
//!
//! Row changes never guess: an update or delete that matches no row, or an
//! insert that hits a duplicate key, stops the slave with an error naming
//! the table, key and source position (the replica has diverged).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::change::{Change, ColumnKind, Ddl, Row, TableSchema, Transaction, Value};
use crate::compact::{self, NetTable};
use crate::migrations;
use crate::objects::{self, StoredObject, StoredObjects};
use crate::position::{Gtid, SourcePosition};
use crate::replay;
use crate::source::{Source, SourceError};
use crate::sql;
use crate::statements::TablePlan;
use crate::verify;
use crate::wire::SnapshotObject;

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
/// Errors that prove a repeated DDL statement had already been applied.
const DDL_ALREADY_APPLIED: &[u16] = &[
    1007, // database exists
    1008, // database doesn't exist
    1050, // table exists
    1051, // unknown table
    1060, // duplicate column
    1061, // duplicate key name
    1091, // can't drop: doesn't exist
    1146, // table doesn't exist
    4092, // unknown VIEW / sequence
];

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

pub struct Applier {
    conn: Conn,
    name: String,
    checkpoint: Checkpoint,
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

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

impl Applier {
    /// Connects to the target, creates the `rowcast` schema if needed and
    /// reads this slave's checkpoint.
    pub async fn connect(target: &Source, name: &str) -> Result<Applier, ApplyError> {
        let mut conn = target.connect().await?;
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
        Ok(Applier {
            conn,
            name: name.to_string(),
            checkpoint,
            plans: HashMap::new(),
            snapshot_views: Vec::new(),
            snapshot_triggers: Vec::new(),
            open_parts: None,
            replay_format: None,
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

    /// Applies one source transaction and its checkpoint, exactly once.
    /// A part of a large transaction goes to [`apply_part`](Self::apply_part).
    pub async fn apply(&mut self, seq: u64, txn: &Transaction) -> Result<(), ApplyError> {
        if txn.is_part() {
            return self.apply_part(seq, txn).await;
        }
        self.drop_unfinished(txn).await;
        if let Some(p) = &self.checkpoint.position {
            if !txn.position.is_after(p) {
                tracing::debug!(position = %txn.position, "already applied; skipping");
                return Ok(());
            }
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
        self.checkpoint = Checkpoint {
            seq,
            position: Some(txn.position.clone()),
            ddl_pending_seq: None,
        };
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
                return Ok(());
            }
        }
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
                self.conn
                    .query_drop("COMMIT")
                    .await
                    .map_err(|e| sql_error(pos, e))?;
                self.open_parts = None;
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.abandon_parts().await;
        }
        result?;
        if txn.is_commit() {
            self.checkpoint = Checkpoint {
                seq,
                position: Some(txn.position.clone()),
                ddl_pending_seq: None,
            };
        }
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

    /// Applies several source transactions (none of them DDL) in one local
    /// transaction whose checkpoint names the last of them: one commit (one
    /// fsync on the replica) for the lot, and still all or nothing.
    pub async fn apply_batch(&mut self, batch: &[(u64, Transaction)]) -> Result<(), ApplyError> {
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
        self.checkpoint = Checkpoint {
            seq: last_seq,
            position: Some(last.position.clone()),
            ddl_pending_seq: None,
        };
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
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| sql_error(pos, e))?;
        for txn in txns {
            for (i, change) in txn.changes.iter().enumerate() {
                self.apply_change(txn, i, change).await?;
            }
        }
        self.write_checkpoint(seq, last).await?;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| sql_error(pos, e))
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
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| sql_error(pos, e))?;
        if !self.apply_net(net, pos).await? {
            return Ok(false);
        }
        self.write_checkpoint(seq, last).await?;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| sql_error(pos, e))?;
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
        let retrying = self.checkpoint.ddl_pending_seq == Some(seq);
        self.mark_ddl_pending(seq, pos).await?;
        let mut in_rows_txn = false;
        for (i, change) in txn.changes.iter().enumerate() {
            match change {
                Change::Ddl(ddl) => {
                    if in_rows_txn {
                        self.conn
                            .query_drop("COMMIT")
                            .await
                            .map_err(|e| sql_error(pos, e))?;
                        in_rows_txn = false;
                    }
                    self.run_ddl(ddl, pos, retrying).await?;
                    self.plans.clear();
                }
                other => {
                    if !in_rows_txn {
                        self.conn
                            .query_drop("START TRANSACTION")
                            .await
                            .map_err(|e| sql_error(pos, e))?;
                        in_rows_txn = true;
                    }
                    self.apply_change(txn, i, other).await?;
                }
            }
        }
        if !in_rows_txn {
            self.conn
                .query_drop("START TRANSACTION")
                .await
                .map_err(|e| sql_error(pos, e))?;
        }
        self.write_checkpoint(seq, txn).await?;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| sql_error(pos, e))?;
        Ok(())
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
                   (slave_name, log_seq, source_epoch, source_file, source_offset, source_gtid, ddl_pending_seq) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE ddl_pending_seq = VALUES(ddl_pending_seq)",
                (&self.name, cp.seq, epoch, file, offset, gtid, seq),
            )
            .await
            .map_err(|e| sql_error(pos, e))?;
        Ok(())
    }

    async fn run_ddl(
        &mut self,
        ddl: &Ddl,
        pos: &SourcePosition,
        retrying: bool,
    ) -> Result<(), ApplyError> {
        let ddl_err = |reason: String| ApplyError::Ddl {
            position: pos.to_string(),
            sql: ddl.sql_text().chars().take(300).collect(),
            reason,
        };
        // The primary logs CREATE DATABASE with the new database as the
        // session's; it cannot be the default before it exists, and the
        // statement names it anyway.
        let creates_database = {
            let text = ddl.sql_text().to_ascii_uppercase();
            let mut words = text.split_whitespace();
            words.next() == Some("CREATE") && matches!(words.next(), Some("DATABASE" | "SCHEMA"))
        };
        if let Some(db) = ddl.database.as_ref().filter(|_| !creates_database) {
            if let Err(e) = self
                .conn
                .query_drop(format!("USE {}", sql::ident(db)))
                .await
            {
                return Err(match server_code(&e) {
                    Some(_) => ddl_err(format!(
                        "its default database `{db}` does not exist on the replica ({e})"
                    )),
                    None => ApplyError::Lost(e.to_string()),
                });
            }
        }
        let mut context = Vec::new();
        if let Some(mode) = ddl.sql_mode {
            context.push(format!("sql_mode={mode}"));
        }
        if let Some((client, conn, server)) = ddl.charset {
            context.push(format!(
                "character_set_client={client}, collation_connection={conn}, collation_server={server}"
            ));
        }
        if !context.is_empty() {
            self.conn
                .query_drop(format!("SET SESSION {}", context.join(", ")))
                .await
                .map_err(|e| sql_error(pos, e))?;
        }
        // A replicated event must not run here too.
        let statement = objects::disabled_on_replica(&ddl.sql);
        let result = self.conn.query_drop(statement.as_ref()).await;
        // Restore the apply session whatever happened.
        self.conn
            .query_drop(SESSION_SETUP)
            .await
            .map_err(|e| sql_error(pos, e))?;
        match result {
            Ok(()) => {
                tracing::info!(position = %pos, sql = %ddl.sql_text(), "applied statement");
                Ok(())
            }
            Err(e) => match server_code(&e) {
                Some(code) if retrying && DDL_ALREADY_APPLIED.contains(&code) => {
                    tracing::warn!(position = %pos, code, "statement was applied before a restart; continuing");
                    Ok(())
                }
                Some(_) => Err(ddl_err(e.to_string())),
                None => Err(ApplyError::Lost(e.to_string())),
            },
        }
    }

    async fn write_checkpoint(&mut self, seq: u64, txn: &Transaction) -> Result<(), ApplyError> {
        let p = &txn.position;
        self.conn
            .exec_drop(
                "INSERT INTO rowcast.checkpoint \
                   (slave_name, log_seq, source_epoch, source_file, source_offset, source_gtid, source_time, applied_at, ddl_pending_seq) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, NOW(6), NULL) \
                 ON DUPLICATE KEY UPDATE log_seq=VALUES(log_seq), source_epoch=VALUES(source_epoch), source_file=VALUES(source_file), \
                   source_offset=VALUES(source_offset), source_gtid=VALUES(source_gtid), \
                   source_time=VALUES(source_time), applied_at=VALUES(applied_at), ddl_pending_seq=NULL",
                (
                    &self.name,
                    seq,
                    p.epoch,
                    &p.file,
                    p.offset,
                    p.gtid.as_ref().map(|g| g.to_string()),
                    txn.timestamp,
                ),
            )
            .await
            .map_err(|e| sql_error(p, e))
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
        Ok(())
    }

    /// Runs a statement from `SHOW CREATE ...` (UTF-8 text).
    async fn run_snapshot_ddl(
        &mut self,
        database: Option<&str>,
        sql: &[u8],
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
            )
            .await?;
            self.run_snapshot_ddl(None, &db.create_sql).await?;
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
            self.run_snapshot_ddl(Some(&t.database), &t.create_sql)
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
                    .run_snapshot_ddl(Some(&v.database), &v.create_sql)
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
        };
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| sql_error(position, e))?;
        self.write_checkpoint(0, &txn).await?;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| sql_error(position, e))?;
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
        let table = match change {
            Change::Insert { table, .. }
            | Change::Update { table, .. }
            | Change::Delete { table, .. } => *table,
            Change::Ddl(_) => unreachable!("DDL is handled by apply_with_ddl"),
        };
        let plan = self.plan(&txn.tables[table as usize], pos).await?;
        // Snapshot rows have no events: they are loaded before the
        // replica's triggers exist and with foreign key checks off.
        if plan.native && txn.events.is_some() {
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
            Change::Ddl(_) => unreachable!("DDL is handled by apply_with_ddl"),
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
        let events = txn.events.as_ref().expect("checked by the caller");
        let Some(statements) =
            replay::change_statements(events, table, index, replay::STATEMENT_BYTES)
        else {
            return Err(ApplyError::Sql {
                position: pos.to_string(),
                reason: format!(
                    "the change log has no binlog events for the change on {}, which the replica must apply with its row-event applier (triggers, foreign keys, no primary key or system versioning); this is a rowcast bug, please report it",
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
