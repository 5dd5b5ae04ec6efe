//! Seeding on the replica: creating the objects of a seed, loading its
//! chunks (each in one local transaction with its range's progress row in
//! `rowcast.seed`), and finishing it (triggers last, progress rows gone).
//! What of the stream applies meanwhile is `seed_gate.rs`'s business.

use mysql_async::prelude::Queryable;

use crate::log::change::{Change, Transaction};
use crate::log::codec;
use crate::net::wire::SnapshotObject;
use crate::replica::apply::{Applier, ApplyError, Checkpoint};
use crate::replica::apply_error::sql_error;
use crate::replica::seed_gate::SeedGate;
use crate::source::objects::{StoredObject, StoredObjects};
use crate::source::position::SourcePosition;
use crate::source::seed_plan::{Key, SeedChunk, SeedRange, SeedTable};
use crate::sql;

fn key_param(k: Key) -> mysql_async::Value {
    match i64::try_from(k) {
        Ok(i) => mysql_async::Value::Int(i),
        Err(_) => mysql_async::Value::UInt(k as u64),
    }
}

fn at() -> SourcePosition {
    SourcePosition::new("(seed)", 0)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Sql {
        position: "seed".into(),
        reason: format!(
            "rowcast.seed holds a {what} this rowcast cannot read ({e}); run the slave with --resnapshot"
        ),
    }
}

impl Applier {
    /// Reads this slave's seed progress (if it is being seeded).
    pub async fn load_seed(&mut self) -> Result<(), ApplyError> {
        type SeedRow = (Vec<u8>, Vec<u8>, u32, Vec<u8>, Vec<u8>);
        let rows: Vec<SeedRow> = self
            .conn
            .exec(
                "SELECT database_name, table_name, range_no, meta, state FROM rowcast.seed \
                 WHERE slave_name = ? ORDER BY database_name, table_name, range_no",
                (&self.name,),
            )
            .await
            .map_err(|e| sql_error(&at(), e))?;
        let mut tables: Vec<SeedTable> = Vec::new();
        for (_, _, _, meta, state) in rows {
            let meta: SeedTable = codec::decode(&meta).map_err(|e| corrupt("plan", e))?;
            let range: SeedRange = codec::decode(&state).map_err(|e| corrupt("range", e))?;
            match tables.last_mut() {
                Some(t) if t.database == meta.database && t.name == meta.name => {
                    t.ranges.push(range)
                }
                _ => tables.push(SeedTable {
                    ranges: vec![range],
                    ..meta
                }),
            }
        }
        let triggers: Option<Vec<u8>> = self
            .conn
            .exec_first(
                "SELECT triggers FROM rowcast.seed_triggers WHERE slave_name = ?",
                (&self.name,),
            )
            .await
            .map_err(|e| sql_error(&at(), e))?;
        self.snapshot_triggers = match triggers {
            Some(b) => codec::decode(&b).map_err(|e| corrupt("trigger list", e))?,
            None => Vec::new(),
        };
        let mut gate = SeedGate::new(tables);
        if let Some(p) = self.checkpoint.position.clone() {
            gate.passed(&p);
        }
        self.seed = gate;
        self.seed_key_places().await
    }

    /// Where each seeded table's key column is now: a row image without
    /// column names (`binlog_row_metadata=MINIMAL`) is read by place,
    /// and DDL on the stream (`ADD COLUMN … FIRST`) moves places. The
    /// replica's table is the primary's as of the stream applied so far.
    pub async fn seed_key_places(&mut self) -> Result<(), ApplyError> {
        let keyed: Vec<(String, String, String)> = self
            .seed
            .tables()
            .filter_map(|t| {
                t.key
                    .as_ref()
                    .map(|k| (t.database.clone(), t.name.clone(), k.name.clone()))
            })
            .collect();
        for (db, name, column) in keyed {
            let place: Option<u32> = self
                .conn
                .exec_first(
                    "SELECT ORDINAL_POSITION FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                    (&db, &name, &column),
                )
                .await
                .map_err(|e| sql_error(&at(), e))?;
            if let Some(p) = place {
                self.seed.set_key_ordinal(&db, &name, p.saturating_sub(1));
            }
        }
        Ok(())
    }

    /// Forgets any seed progress (a new seed, or `--resnapshot`).
    pub async fn forget_seed(&mut self) -> Result<(), ApplyError> {
        for table in ["rowcast.seed", "rowcast.seed_triggers"] {
            self.conn
                .exec_drop(
                    format!("DELETE FROM {table} WHERE slave_name = ?"),
                    (&self.name,),
                )
                .await
                .map_err(|e| sql_error(&at(), e))?;
        }
        self.seed = SeedGate::default();
        Ok(())
    }

    /// Starts a seed: every object created empty (views at once, triggers
    /// kept for the end), `position` stored as the checkpoint and the plan
    /// as the seed's progress, in that order: a slave killed in between
    /// has no checkpoint and is seeded afresh.
    pub async fn seed_begin(
        &mut self,
        position: &SourcePosition,
        databases: &[SnapshotObject],
        tables: &[SnapshotObject],
        views: Vec<SnapshotObject>,
        objects: StoredObjects,
        plan: Vec<SeedTable>,
    ) -> Result<(), ApplyError> {
        self.forget_seed().await?;
        let triggers = objects.triggers.clone();
        self.snapshot_begin(databases, tables, views, objects)
            .await?;
        // Views now (they hold no rows); triggers once the rows are in.
        self.snapshot_end_views().await?;
        self.snapshot_triggers = triggers;
        let p = position;
        self.local("START TRANSACTION", p).await?;
        for t in &plan {
            for (i, r) in t.ranges.iter().enumerate() {
                self.store_range(t, i as u32, r).await?;
            }
        }
        let triggers =
            codec::encode(&self.snapshot_triggers).map_err(|e| corrupt("trigger list", e))?;
        self.conn
            .exec_drop(
                "REPLACE INTO rowcast.seed_triggers (slave_name, triggers) VALUES (?, ?)",
                (&self.name, triggers),
            )
            .await
            .map_err(|e| sql_error(p, e))?;
        let txn = Transaction::local(position.clone(), Vec::new());
        self.write_checkpoint(0, &txn).await?;
        self.local("COMMIT", p).await?;
        self.checkpoint = Checkpoint {
            seq: 0,
            position: Some(position.clone()),
            ddl_pending_seq: None,
        };
        self.seed = SeedGate::new(plan);
        Ok(())
    }

    /// `--resync`: the table is emptied (created if the replica lacks it)
    /// at this point of the stream and joins the seed.
    pub async fn seed_table_begin(
        &mut self,
        database: &SnapshotObject,
        table: &SnapshotObject,
        plan: SeedTable,
    ) -> Result<(), ApplyError> {
        let db_exists: Option<u64> = self
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (&database.name,),
            )
            .await
            .map_err(|e| sql_error(&at(), e))?;
        if db_exists.unwrap_or(0) == 0 {
            // A database the master's filter let in later: as the
            // primary has it (its character set and collation).
            self.run_seed_ddl_nodb(&database.create_sql).await?;
        }
        let exists: Option<u64> = self
            .conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&table.database, &table.name),
            )
            .await
            .map_err(|e| sql_error(&at(), e))?;
        if exists.unwrap_or(0) == 0 {
            self.run_seed_ddl(&table.database, &table.create_sql)
                .await?;
        }
        let p = at();
        // The replica's triggers on the table must not fire on emptying it
        // nor on the copied rows (the copy already holds what the
        // primary's triggers wrote): they go now and come back with the
        // seed's end, like a new seed's. The list is stored with the
        // table's progress first, so a crash in between loses none.
        let triggers =
            crate::source::objects::triggers_of(&mut self.conn, &table.database, &table.name)
                .await
                .map_err(|e| sql_error(&p, e))?;
        if !triggers.is_empty() {
            for t in &triggers {
                if !self
                    .snapshot_triggers
                    .iter()
                    .any(|k| k.database == t.database && k.name == t.name)
                {
                    self.snapshot_triggers.push(t.clone());
                }
            }
            let list =
                codec::encode(&self.snapshot_triggers).map_err(|e| corrupt("trigger list", e))?;
            self.local("START TRANSACTION", &p).await?;
            self.conn
                .exec_drop(
                    "REPLACE INTO rowcast.seed_triggers (slave_name, triggers) VALUES (?, ?)",
                    (&self.name, list),
                )
                .await
                .map_err(|e| sql_error(&p, e))?;
            for (i, r) in plan.ranges.iter().enumerate() {
                self.store_range(&plan, i as u32, r).await?;
            }
            self.local("COMMIT", &p).await?;
            for t in &triggers {
                self.conn
                    .query_drop(format!(
                        "DROP TRIGGER IF EXISTS {}",
                        sql::table(&t.database, &t.name)
                    ))
                    .await
                    .map_err(|e| sql_error(&p, e))?;
            }
            tracing::info!(database = %table.database, table = %table.name, triggers = triggers.len(), "the table's triggers are set aside until its copy is in");
        }
        self.local("START TRANSACTION", &p).await?;
        self.conn
            .query_drop(format!(
                "DELETE FROM {}",
                sql::table(&table.database, &table.name)
            ))
            .await
            .map_err(|e| sql_error(&p, e))?;
        // A table copied again replaces its old plan (maybe other ranges).
        self.conn
            .exec_drop(
                "DELETE FROM rowcast.seed WHERE slave_name = ? AND database_name = ? AND table_name = ?",
                (&self.name, &table.database, &table.name),
            )
            .await
            .map_err(|e| sql_error(&p, e))?;
        for (i, r) in plan.ranges.iter().enumerate() {
            self.store_range(&plan, i as u32, r).await?;
        }
        self.local("COMMIT", &p).await?;
        self.plans.clear();
        tracing::info!(database = %table.database, table = %table.name, "table emptied; copying it again while the others stream");
        self.seed.insert(plan);
        self.seed_key_places().await
    }

    /// Stores one range's progress (inside the caller's transaction).
    async fn store_range(
        &mut self,
        table: &SeedTable,
        range: u32,
        state: &SeedRange,
    ) -> Result<(), ApplyError> {
        let meta = SeedTable {
            ranges: Vec::new(),
            ..table.clone()
        };
        let meta = codec::encode(&meta).map_err(|e| corrupt("plan", e))?;
        let state = codec::encode(state).map_err(|e| corrupt("range", e))?;
        self.conn
            .exec_drop(
                "REPLACE INTO rowcast.seed (slave_name, database_name, table_name, range_no, meta, state) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (&self.name, &table.database, &table.name, range, meta, state),
            )
            .await
            .map_err(|e| sql_error(&at(), e))
    }

    /// Loads one chunk and its range's new progress in one local
    /// transaction (on a loader connection).
    pub async fn seed_load(
        &mut self,
        chunk: &SeedChunk,
        table: &SeedTable,
        state: &SeedRange,
        prior_after: Option<Key>,
        clear: bool,
    ) -> Result<(), ApplyError> {
        let p = at();
        self.local("START TRANSACTION", &p).await?;
        let result = async {
            // The keys this chunk covers hold nothing yet, unless a load
            // whose commit was under way when a session ended went in:
            // emptied first, a chunk loads the same however often. (Only
            // a range's first chunk in a session: the range lock it takes
            // crosses the other loaders'.)
            if let (Some(key), false, true) = (&table.key, chunk.schema.columns.is_empty(), clear) {
                let k = sql::ident(&key.name);
                let mut conds = Vec::new();
                let mut params: Vec<mysql_async::Value> = Vec::new();
                match (prior_after, state.lo) {
                    (Some(a), _) => {
                        conds.push(format!("{k} > ?"));
                        params.push(key_param(a));
                    }
                    (None, Some(lo)) => {
                        conds.push(format!("{k} >= ?"));
                        params.push(key_param(lo));
                    }
                    (None, None) => {}
                }
                match (chunk.done, chunk.upto, state.hi) {
                    (true, _, Some(hi)) => {
                        conds.push(format!("{k} < ?"));
                        params.push(key_param(hi));
                    }
                    (true, _, None) => {}
                    (false, Some(u), _) => {
                        conds.push(format!("{k} <= ?"));
                        params.push(key_param(u));
                    }
                    (false, None, _) => conds.push("FALSE".into()),
                }
                let filter = match conds.is_empty() {
                    true => String::new(),
                    false => format!(" WHERE {}", conds.join(" AND ")),
                };
                self.conn
                    .exec_drop(
                        format!(
                            "DELETE FROM {}{filter}",
                            sql::table(&chunk.database, &chunk.name)
                        ),
                        mysql_async::Params::Positional(params),
                    )
                    .await
                    .map_err(|e| sql_error(&p, e))?;
            }
            if chunk.first && table.key.is_none() {
                self.conn
                    .query_drop(format!(
                        "DELETE FROM {}",
                        sql::table(&chunk.database, &chunk.name)
                    ))
                    .await
                    .map_err(|e| sql_error(&p, e))?;
            }
            if !chunk.rows.is_empty() && !chunk.schema.columns.is_empty() {
                let txn = Transaction::local(p.clone(), vec![chunk.schema.clone()]);
                let change = Change::Insert {
                    table: 0,
                    rows: chunk.rows.clone(),
                };
                self.load_rows(&txn, change).await?;
            }
            self.store_range(table, chunk.range, state).await
        }
        .await;
        if result.is_err() {
            let _ = self.conn.query_drop("ROLLBACK").await;
            return result;
        }
        self.local("COMMIT", &p).await
    }

    /// Forgets the statements made for the replica's tables (another
    /// connection applied DDL).
    pub fn forget_tables(&mut self) {
        self.plans.clear();
        self.positional.clear();
    }

    /// Every table is loaded and the stream has passed every chunk: the
    /// triggers are created and the progress rows go.
    pub async fn seed_finish(&mut self) -> Result<(), ApplyError> {
        let triggers: Vec<StoredObject> = std::mem::take(&mut self.snapshot_triggers);
        for t in &triggers {
            self.create_seed_object(t).await?;
        }
        self.forget_seed().await?;
        self.plans.clear();
        Ok(())
    }
}
