//! Writing a net effect (computed by `net_effect.rs`) on the replica: per
//! table one multi-key DELETE of the keys that existed before, then
//! multi-row INSERTs of the final rows, for a batch of transactions
//! (`Applier::apply_batch`) or one part of a large transaction
//! (`Applier::apply_part`).
//!
//! Only tables whose plan allows it (`TableFacts::net_ok`) take this path,
//! and the replica must hold exactly what the net effect expects: a
//! DELETE that removes fewer keys or an INSERT that hits a duplicate
//! answers `false`, and the caller undoes the lot and applies it change by
//! change, which names the conflicting key. Nothing here begins or ends
//! the local transaction (`apply.rs` does).

use mysql_async::prelude::Queryable;
use mysql_async::Params;

use crate::log::change::Transaction;
use crate::ops::checksum;
use crate::replica::apply::Applier;
use crate::replica::apply_error::{server_code, sql_error, ApplyError, ER_DUP_ENTRY};
use crate::replica::net_effect::{self, NetTable};
use crate::source::position::SourcePosition;

impl Applier {
    /// Writes the net effect `net` inside the caller's local transaction
    /// (for a batch, `Applier::net_in_one_commit`'s). `false` when a table
    /// may not take it or the replica surprised it (a key missing or
    /// already present); the caller then undoes what was written.
    pub(super) async fn apply_net(
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

    /// Applies part `txn` of a large transaction as its net effect, behind
    /// a savepoint, so a surprise undoes only this part before the exact
    /// path. `false`: nothing of the part is applied (it has no net effect,
    /// or the replica surprised it), the caller applies it change by change.
    pub(super) async fn part_as_net(&mut self, txn: &Transaction) -> Result<bool, ApplyError> {
        let pos = &txn.position;
        let Some(net) = net_effect::net_effect(&[txn], checksum::is_chunk_table) else {
            return Ok(false);
        };
        self.conn
            .query_drop("SAVEPOINT rowcast_part")
            .await
            .map_err(|e| sql_error(pos, e))?;
        if self.apply_net(&net, pos).await? {
            return Ok(true);
        }
        self.conn
            .query_drop("ROLLBACK TO SAVEPOINT rowcast_part")
            .await
            .map_err(|e| sql_error(pos, e))?;
        Ok(false)
    }
}
