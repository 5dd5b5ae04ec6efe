//! Loading a snapshot into the replica (invariant 5): the checkpoint is
//! forgotten first, then each replicated database is created afresh with
//! its objects in dependency order (databases, sequences, tables, routines,
//! events), the rows are loaded chunk by chunk, then the views and
//! triggers are created and the snapshot position becomes the checkpoint.
//! Every object is created from its `SHOW CREATE` text in its definition
//! context; rows go through `rows.rs` like any insert.

use mysql_async::prelude::Queryable;

use crate::log::change::{Change, ColumnKind, Row, TableSchema, Transaction, Value};
use crate::net::wire::SnapshotObject;
use crate::replica::apply::{Applier, Checkpoint, SESSION_SETUP};
use crate::replica::apply_error::{server_code, sql_error, ApplyError};
use crate::source::objects::{self, StoredObject, StoredObjects};
use crate::source::position::SourcePosition;
use crate::sql;

/// `SESSION_SETUP`'s sql_mode without strictness, for the one kind of
/// value strict mode refuses although the primary stores it (see
/// `Applier::load_snapshot_rows`).
const LAX_SQL_MODE: &str = "SET SESSION sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

impl Applier {
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
        self.positional.clear();
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
        let txn = Transaction::local(at.clone(), vec![table.clone()]);
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
        self.snapshot_end_views().await?;
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
        let txn = Transaction::local(position.clone(), Vec::new());
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

    /// Creates the snapshot's views, in dependency order (retrying those
    /// that name a view not created yet).
    pub(super) async fn snapshot_end_views(&mut self) -> Result<(), ApplyError> {
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
        Ok(())
    }

    pub(super) async fn run_seed_ddl_nodb(&mut self, sql: &[u8]) -> Result<(), ApplyError> {
        self.run_snapshot_ddl(None, sql, None).await
    }

    pub(super) async fn run_seed_ddl(
        &mut self,
        database: &str,
        sql: &[u8],
    ) -> Result<(), ApplyError> {
        self.run_snapshot_ddl(Some(database), sql, None).await
    }

    pub(super) async fn load_rows(
        &mut self,
        txn: &Transaction,
        change: Change,
    ) -> Result<(), ApplyError> {
        self.load_snapshot_rows(txn, change).await
    }

    pub(super) async fn create_seed_object(
        &mut self,
        object: &StoredObject,
    ) -> Result<(), ApplyError> {
        self.run_snapshot_object(object).await
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
        // A MySQL 8 primary's SHOW CREATE names utf8mb4_0900 collations,
        // which a MariaDB replica lacks: the replica's counterparts.
        let dialect = self.dialect().await.map_err(|e| sql_error(&at, e))?;
        let sql = &dialect.translate(sql)[..];
        let charset = charset.map(|(client, connection)| {
            let connection = dialect
                .collation_name(connection)
                .unwrap_or_else(|| connection.clone());
            (client.clone(), connection)
        });
        let charset = charset.as_ref();
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
        let dialect = self.dialect().await.map_err(|e| sql_error(&at, e))?;
        let mut object = object.clone();
        let c = &mut object.context;
        for name in [&mut c.collation_connection, &mut c.collation_database] {
            if let Some(theirs) = dialect.collation_name(name) {
                *name = theirs;
            }
        }
        object.create_sql = dialect.translate(&object.create_sql).into_owned();
        let result = objects::create(&mut self.conn, &object).await;
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
}
