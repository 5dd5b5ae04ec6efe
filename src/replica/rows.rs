//! Row changes on the replica, one change at a time: the per-table
//! [`TablePlan`] cache (built from the binlog's description of a table and
//! the replica's [`TableFacts`]), and how one change is applied: through
//! the replica's row-event applier (`replay.rs`) for the tables and
//! changes that need it, otherwise as the plan's INSERT (multi-row),
//! UPDATE and DELETE statements, each UPDATE and DELETE required to match
//! exactly one row. A replicated checksum chunk is checked right after it
//! is inserted (`ops::checksum`).
//!
//! These run inside a local transaction that the commit protocol
//! (`apply.rs`) opened; nothing here begins or ends one.

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Value as MyValue};

use std::sync::Arc;

use crate::log::change::{Change, Row, TableSchema, Transaction};
use crate::ops::checksum;
use crate::replica::apply::Applier;
use crate::replica::apply_error::{
    replay_error, server_code, sql_error, ApplyError, ER_DUP_ENTRY, ER_LOCK_DEADLOCK,
    ER_LOCK_WAIT_TIMEOUT,
};

/// MariaDB's answer to a BINLOG statement whose row event fails.
const ER_UNKNOWN_ERROR: u16 = 1105;
use crate::replica::positional;
use crate::replica::replay;
use crate::replica::statements::TablePlan;
use crate::replica::table_facts::TableFacts;
use crate::source::position::SourcePosition;

/// Limits of one multi-row INSERT.
const INSERT_BATCH_ROWS: usize = 200;
/// A seed loader's statements are larger: nothing waits on them, and a
/// chunk goes in with fewer round trips.
pub(super) const SEED_INSERT_BATCH_ROWS: usize = 1000;
const INSERT_BATCH_BYTES: usize = 4 << 20;

impl Applier {
    /// The plan for a table, rebuilt when the binlog's description of it
    /// changes or after DDL; the replica's [`TableFacts`] are read only
    /// then, and the plan keeps what they decide.
    pub(super) async fn plan(
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
        let facts = TableFacts::read(&mut self.conn, &schema.database, &schema.name)
            .await
            .map_err(|e| sql_error(pos, e))?;
        let mut plan = TablePlan::new(schema.clone(), &facts.generated, &facts.json);
        plan.net_ok = facts.net_ok(schema);
        plan.native = facts.native(schema);
        let plan = Arc::new(plan);
        self.plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// Applies change `index` of `txn`: through the server's row-event
    /// applier when the replica's table needs it (`replay.rs`), otherwise
    /// as statements.
    pub(super) async fn apply_change(
        &mut self,
        txn: &Transaction,
        index: usize,
        change: &Change,
    ) -> Result<(), ApplyError> {
        let pos = &txn.position;
        let table = change
            .table()
            .unwrap_or_else(|| unreachable!("DDL is handled by apply_with_ddl"));
        let schema = &txn.tables[table as usize];
        // Mapped onto the replica's table as it is now, after any DDL
        // earlier in the transaction (`positional.rs`).
        let resolved;
        let (schema, change) = if schema.is_positional() {
            resolved = self.resolve_change(schema, change, pos).await?;
            (&resolved.0, &resolved.1)
        } else {
            (schema, change)
        };
        let plan = self.plan(schema, pos).await?;
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
                if checksum::is_chunk_table(&plan.schema) {
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
            if let Err(e) = self.conn.query_drop(statement).await {
                let map = &events.table_maps[table as usize];
                return Err(self.explain_replay_error(pos, plan, map, e).await);
            }
        }
        Ok(())
    }

    /// A failed BINLOG statement's error. MariaDB answers a row event it
    /// cannot apply to the replica's table (a column of another type, say)
    /// with a bare "Unknown error" and writes the reason only to its own
    /// error log, so the event's TABLE_MAP is compared with the replica's
    /// table here to name it.
    async fn explain_replay_error(
        &mut self,
        pos: &SourcePosition,
        plan: &TablePlan,
        table_map: &[u8],
        e: mysql_async::Error,
    ) -> ApplyError {
        if server_code(&e) != Some(ER_UNKNOWN_ERROR) {
            return replay_error(pos, plan, e);
        }
        let replica = self.replica_table(&plan.schema).await.ok().flatten();
        let Some(mismatch) = replica.and_then(|t| positional::row_event_mismatch(table_map, &t))
        else {
            return replay_error(pos, plan, e);
        };
        ApplyError::Sql {
            position: pos.to_string(),
            reason: format!(
                "the replica's row-event applier refused the primary's row event on {} \
                 ({e}): {mismatch}. It writes this table (no primary key, triggers, foreign \
                 keys or system versioning) and needs each column of the same type as on the \
                 primary: make the replica's table match the primary's (SHOW CREATE TABLE on \
                 both), then restart the slave",
                plan.table_name(),
            ),
        }
    }

    async fn check_chunk(
        &mut self,
        schema: &TableSchema,
        row: &Row,
        pos: &SourcePosition,
    ) -> Result<(), ApplyError> {
        checksum::check_replicated_chunk(&mut self.conn, &self.name, &self.rewrite, schema, row)
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

    /// Inserts `rows` in multi-row INSERTs; on error, also the rows of the
    /// failed statement.
    pub(super) async fn insert_rows<'r, R: std::borrow::Borrow<Row> + Sync>(
        &mut self,
        plan: &TablePlan,
        rows: &'r [R],
    ) -> Result<(), (mysql_async::Error, &'r [R])> {
        let mut rest = rows;
        let mut params = Vec::new();
        while !rest.is_empty() {
            let limit = match self.seed_loader {
                true => SEED_INSERT_BATCH_ROWS,
                false => INSERT_BATCH_ROWS,
            };
            let n = plan.insert_batch_len(rest, limit, INSERT_BATCH_BYTES);
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
}
