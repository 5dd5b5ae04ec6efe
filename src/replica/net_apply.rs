//! Writing a batch of transactions (`Applier::apply_batch`) or one part of
//! a large transaction (`Applier::apply_part`) split by table
//! (`net_effect.rs`): for the tables that take a net effect, per table one
//! multi-key DELETE of the keys that existed before, then multi-row
//! INSERTs of the final rows; then the changes of the other (ordered)
//! tables one by one, in their order.
//!
//! Only tables whose plan allows it (`TableFacts::net_ok`) are netted,
//! and the replica must hold exactly what the net effect expects: a
//! DELETE that removes fewer keys or an INSERT that hits a duplicate
//! answers `false`, and the caller undoes the lot and applies it change by
//! change, which names the conflicting key. An ordered change that fails
//! fails as it would alone, naming its key. Nothing here begins or ends
//! the local transaction (`apply.rs` does).

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::Params;

use crate::log::change::{TableSchema, Transaction};
use crate::ops::checksum;
use crate::replica::apply::Applier;
use crate::replica::apply_error::{server_code, sql_error, ApplyError, ER_DUP_ENTRY};
use crate::replica::net_effect::{self, NetEffect, NetTable};
use crate::source::position::SourcePosition;

impl Applier {
    /// `txns` split into net and ordered tables, the replica's copy of
    /// each table having its say (`TablePlan::net_ok`); `None` when the
    /// batch must go in order whole.
    pub(super) async fn split<'a>(
        &mut self,
        txns: &[&'a Transaction],
        pos: &SourcePosition,
    ) -> Result<Option<NetEffect<'a>>, ApplyError> {
        // Few distinct tables, many transactions naming them.
        let mut asked: Vec<&TableSchema> = Vec::new();
        let mut refused = HashSet::new();
        for txn in txns {
            for schema in &txn.tables {
                if asked.contains(&schema) {
                    continue;
                }
                asked.push(schema);
                if !self.plan(schema, pos).await?.net_ok {
                    refused.insert((schema.database.as_str(), schema.name.as_str()));
                }
            }
        }
        Ok(net_effect::net_effect(
            txns,
            checksum::is_chunk_table,
            |s| !refused.contains(&(s.database.as_str(), s.name.as_str())),
        ))
    }

    /// Writes `txns` as `net` splits them, inside the caller's local
    /// transaction: the net effect, then the ordered tables' changes in
    /// order. `false` when the net effect surprised (nothing is undone
    /// here).
    pub(super) async fn apply_split(
        &mut self,
        txns: &[&Transaction],
        net: &NetEffect<'_>,
        pos: &SourcePosition,
    ) -> Result<bool, ApplyError> {
        if !self.apply_net(&net.tables, pos).await? {
            return Ok(false);
        }
        for txn in txns {
            for (i, change) in txn.changes.iter().enumerate() {
                // What the net effect did not take is applied here, so a
                // change of no known table (never split) is not dropped.
                let ordered = match change.table() {
                    Some(slot) => txn
                        .tables
                        .get(slot as usize)
                        .is_none_or(|schema| net.is_ordered(schema)),
                    None => true,
                };
                if ordered {
                    self.apply_change(txn, i, change).await?;
                }
            }
        }
        Ok(true)
    }

    /// Writes the net effect `net` inside the caller's local transaction
    /// (for a batch, `Applier::split_in_one_commit`'s). `false` when a table
    /// may not take it or the replica surprised it (a key missing or
    /// already present); the caller then undoes what was written.
    pub(super) async fn apply_net(
        &mut self,
        net: &[NetTable<'_>],
        pos: &SourcePosition,
    ) -> Result<bool, ApplyError> {
        let mut plans = Vec::with_capacity(net.len());
        for table in net {
            let plan = self.plan(table.schema, pos).await?;
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
                let named = plan.padded_keys(chunk.len());
                if let Some(last) = chunk.last() {
                    for _ in chunk.len()..named {
                        params.extend(plan.key_params(last));
                    }
                }
                let stmt = plan.delete_keys_sql(named);
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

    /// Applies part `txn` of a large transaction split by table, behind
    /// a savepoint, so a surprise undoes only this part before the exact
    /// path. `false`: nothing of the part is applied (no table of it takes
    /// a net effect, or the replica surprised it), the caller applies it
    /// change by change.
    pub(super) async fn part_as_net(&mut self, txn: &Transaction) -> Result<bool, ApplyError> {
        let pos = &txn.position;
        let net = match self.split(&[txn], pos).await? {
            Some(net) if !net.tables.is_empty() => net,
            _ => return Ok(false),
        };
        self.conn
            .query_drop("SAVEPOINT rowcast_part")
            .await
            .map_err(|e| sql_error(pos, e))?;
        if self.apply_split(&[txn], &net, pos).await? {
            tracing::debug!(
                part = txn.part,
                net_tables = net.tables.len(),
                ordered_tables = net.ordered_tables(),
                "part applied as its net effect"
            );
            return Ok(true);
        }
        self.conn
            .query_drop("ROLLBACK TO SAVEPOINT rowcast_part")
            .await
            .map_err(|e| sql_error(pos, e))?;
        Ok(false)
    }
}
