//! Seeding a new slave: a consistent read of the schema and every row at a
//! known binlog position, streamed as snapshot frames.
//!
//! Correctness argument:
//! 1. On MariaDB, `START TRANSACTION WITH CONSISTENT SNAPSHOT` fixes an
//!    InnoDB read view and, atomically with it, the binlog position
//!    (`binlog_snapshot_file` / `binlog_snapshot_position`): every
//!    transaction committed before that position is visible, none after.
//!    No lock is taken, writes go on. On MySQL the same pair needs a brief
//!    `FLUSH TABLES WITH READ LOCK` around the start and `SHOW MASTER
//!    STATUS`.
//! 2. All rows are read inside that one transaction, so they are exactly
//!    the state at the position P.
//! 3. The slave loads them and only then stores P as its checkpoint; the
//!    master continues with the first change-log record after P. Every
//!    transaction is therefore either in the snapshot or in the stream,
//!    never both, never neither.
//!
//! Tables with a primary key are read in key order, in chunks (keyset
//! pagination), and tables without one as a single streamed query, so
//! memory stays bounded by one chunk whatever the table size. A
//! system-versioned table is read with its whole history (`FOR SYSTEM_TIME
//! ALL`, its row start and end columns named, keyed by its key and row
//! end, which is what makes a version unique); the slave writes the
//! history back with `system_versioning_insert_history`. Sequences,
//! routines, triggers and events come from [`crate::source::objects`], sequences
//! with their state in the same read view.

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};

use crate::log::change::{ColumnDef, ColumnKind, Row, TableSchema, Value};
use crate::net::wire::SnapshotObject;
use crate::source::filter::Filter;
use crate::source::objects::{self, StoredObjects};
use crate::source::position::SourcePosition;
use crate::source::{Source, SourceError};
use crate::sql;

/// Rows per snapshot frame (and per keyset query).
pub const CHUNK_ROWS: usize = 5_000;
/// Bytes per snapshot frame, roughly.
pub const CHUNK_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("snapshot read failed on {object}: {reason}")]
    Read { object: String, reason: String },
}

impl SnapshotError {
    pub(crate) fn read(object: &str, e: mysql_async::Error) -> SnapshotError {
        SnapshotError::Read {
            object: object.to_string(),
            reason: e.to_string(),
        }
    }
}

/// The consistent read: its connection and the position it is at.
pub struct Snapshot {
    conn: Conn,
    pub position: SourcePosition,
}

/// What a snapshot will copy.
pub struct Catalog {
    pub databases: Vec<SnapshotObject>,
    pub tables: Vec<SnapshotObject>,
    pub views: Vec<SnapshotObject>,
    pub objects: StoredObjects,
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
    /// Each table's row and byte estimates, aligned with `tables`.
    pub sizes: Vec<(u64, u64)>,
}

/// One table to copy: its columns as read (generated ones left out) and
/// its primary key, by name.
pub(crate) struct TableRead {
    pub schema: TableSchema,
    /// SELECT expressions, aligned with `schema.columns`.
    pub select: Vec<String>,
    /// What follows the table name to read every version of a row.
    pub history: &'static str,
}

impl Snapshot {
    pub async fn begin(source: &Source, is_mariadb: bool) -> Result<Snapshot, SnapshotError> {
        let mut conn = source.connect().await?;
        let q = |e| SnapshotError::read("snapshot start", e);
        // UTC for TIMESTAMPs, raw bytes for strings (no charset conversion).
        conn.query_drop("SET SESSION time_zone = '+00:00', NAMES binary")
            .await
            .map_err(q)?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(q)?;
        let position = if is_mariadb {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(q)?;
            snapshot_position(&mut conn).await.map_err(q)?
        } else {
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
                .await
                .map_err(q)?;
            let started = conn
                .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await;
            let position = crate::source::current_position(source, &mut conn).await;
            conn.query_drop("UNLOCK TABLES").await.map_err(q)?;
            started.map_err(q)?;
            position?
        };
        Ok(Snapshot { conn, position })
    }

    /// A connection for the catalog of a seed, at the primary's binlog end
    /// now: no transaction, no lock (the seed's chunks read the rows).
    pub async fn unlocked(source: &Source) -> Result<Snapshot, SnapshotError> {
        let mut conn = source.connect().await?;
        conn.query_drop("SET SESSION time_zone = '+00:00', NAMES binary")
            .await
            .map_err(|e| SnapshotError::read("seed start", e))?;
        let position = crate::source::current_position(source, &mut conn).await?;
        Ok(Snapshot { conn, position })
    }

    /// How a seed copies each of `catalog`'s tables.
    pub async fn plan(
        &mut self,
        catalog: &Catalog,
        threads: u32,
    ) -> Result<Vec<crate::source::seed_plan::SeedTable>, SnapshotError> {
        let tables: Vec<crate::source::chunk_read::CatalogTable> = catalog
            .tables
            .iter()
            .zip(&catalog.sizes)
            .map(
                |(t, &(rows, bytes))| crate::source::chunk_read::CatalogTable {
                    database: t.database.clone(),
                    name: t.name.clone(),
                    estimated_rows: rows,
                    estimated_bytes: bytes,
                },
            )
            .collect();
        crate::source::chunk_read::plan(&mut self.conn, &tables, threads).await
    }

    /// Lists the databases, tables and views the filter admits, with their
    /// CREATE statements and size estimates.
    pub async fn catalog(&mut self, filter: &Filter) -> Result<Catalog, SnapshotError> {
        let q = |e| SnapshotError::read("catalog", e);
        let dbs: Vec<Vec<u8>> = self
            .conn
            .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
            .await
            .map_err(q)?;
        let mut catalog = Catalog {
            databases: Vec::new(),
            tables: Vec::new(),
            views: Vec::new(),
            objects: StoredObjects::default(),
            estimated_rows: 0,
            estimated_bytes: 0,
            sizes: Vec::new(),
        };
        for db in dbs {
            let db = String::from_utf8_lossy(&db).into_owned();
            if !filter.database_included(&db) {
                continue;
            }
            let row: Option<(Vec<u8>, Vec<u8>)> = self
                .conn
                .query_first(format!("SHOW CREATE DATABASE {}", sql::ident(&db)))
                .await
                .map_err(|e| SnapshotError::read(&db, e))?;
            let create_sql = row.map(|r| r.1).unwrap_or_default();
            catalog.databases.push(SnapshotObject {
                database: db.clone(),
                name: db.clone(),
                create_sql,
                charset: None,
            });
            type TableRow = (Vec<u8>, Vec<u8>, Option<u64>, Option<u64>);
            let tables: Vec<TableRow> = self
                .conn
                .exec(
                    "SELECT TABLE_NAME, TABLE_TYPE, TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
                    (&db,),
                )
                .await
                .map_err(|e| SnapshotError::read(&db, e))?;
            for (name, kind, rows, bytes) in tables {
                let name = String::from_utf8_lossy(&name).into_owned();
                if !filter.table_included(&db, &name) {
                    continue;
                }
                let is_view = kind == b"VIEW";
                let object = format!("{db}.{name}");
                if kind == b"SEQUENCE" {
                    let sequence = objects::read_sequence(&mut self.conn, &db, &name)
                        .await
                        .map_err(|e| SnapshotError::read(&object, e))?;
                    catalog.objects.sequences.push(sequence);
                    continue;
                }
                if !is_view && kind != b"BASE TABLE" && kind != b"SYSTEM VERSIONED" {
                    tracing::warn!(database = %db, table = %name, kind = %String::from_utf8_lossy(&kind), "not copied by the snapshot (only tables, views and sequences are); create it on the replica by hand");
                    continue;
                }
                let what = if is_view { "VIEW" } else { "TABLE" };
                let row: Option<mysql_async::Row> = self
                    .conn
                    .query_first(format!("SHOW CREATE {what} {}", sql::table(&db, &name)))
                    .await
                    .map_err(|e| SnapshotError::read(&object, e))?;
                let (create_sql, charset) = match row {
                    Some(r) if is_view => {
                        let text = |i| {
                            r.get::<Vec<u8>, _>(i)
                                .map(|b| String::from_utf8_lossy(&b).into_owned())
                        };
                        (
                            r.get::<Vec<u8>, _>(1).unwrap_or_default(),
                            text(2).zip(text(3)),
                        )
                    }
                    Some(r) => (r.get(1).unwrap_or_default(), None),
                    None => (Vec::new(), None),
                };
                let obj = SnapshotObject {
                    database: db.clone(),
                    name,
                    create_sql,
                    charset,
                };
                if is_view {
                    catalog.views.push(obj);
                } else {
                    catalog.estimated_rows += rows.unwrap_or(0);
                    catalog.estimated_bytes += bytes.unwrap_or(0);
                    catalog.sizes.push((rows.unwrap_or(0), bytes.unwrap_or(0)));
                    catalog.tables.push(obj);
                }
            }
            let found = objects::discover(&mut self.conn, &db, filter)
                .await
                .map_err(|e| SnapshotError::read(&db, e))?;
            catalog.objects.append(found);
        }
        Ok(catalog)
    }

    /// Reads every row of one table, handing chunks to `send`.
    pub async fn read_table<F, Fut>(
        &mut self,
        db: &str,
        table: &str,
        mut send: F,
    ) -> Result<u64, SnapshotError>
    where
        F: FnMut(TableSchema, Vec<Row>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let read = table_read(&mut self.conn, db, table).await?;
        let object = format!("{db}.{table}");
        let name = format!("{}{}", sql::table(db, table), read.history);
        let cols = read.select.join(", ");
        let pk: Vec<usize> = read
            .schema
            .primary_key
            .iter()
            .map(|&i| i as usize)
            .collect();
        if pk.is_empty() {
            let stmt = format!("SELECT {cols} FROM {name}");
            return stream_rows(&mut self.conn, &object, &stmt, &read.schema, |s, r| {
                send(s, r)
            })
            .await;
        }
        let mut total = 0u64;
        let key_cols: Vec<String> = pk
            .iter()
            .map(|&i| sql::ident(&read.schema.columns[i].name))
            .collect();
        let order = key_cols.join(", ");
        let first = format!("SELECT {cols} FROM {name} ORDER BY {order} LIMIT {CHUNK_ROWS}");
        let next = format!(
            "SELECT {cols} FROM {name} WHERE ({order}) > ({}) ORDER BY {order} LIMIT {CHUNK_ROWS}",
            vec!["?"; pk.len()].join(", ")
        );
        let mut last: Option<Vec<MyValue>> = None;
        loop {
            let rows: Vec<mysql_async::Row> = match &last {
                None => self.conn.exec(&first, ()).await,
                Some(key) => self.conn.exec(&next, Params::Positional(key.clone())).await,
            }
            .map_err(|e| SnapshotError::read(&object, e))?;
            let n = rows.len();
            if n == 0 {
                break;
            }
            let rows: Vec<Row> = rows.into_iter().map(convert).collect();
            last = Some(pk.iter().map(|&i| sql::param(&rows[n - 1][i])).collect());
            total += n as u64;
            if !send(read.schema.clone(), rows).await {
                break;
            }
            if n < CHUNK_ROWS {
                break;
            }
        }
        Ok(total)
    }

    /// The primary's binlog end now (read on the snapshot's connection).
    pub async fn source_end(&mut self, source: &Source) -> Result<SourcePosition, SnapshotError> {
        Ok(crate::source::current_position(source, &mut self.conn).await?)
    }

    pub async fn finish(mut self) {
        let _ = self.conn.query_drop("COMMIT").await;
    }
}

/// Streams the rows of `stmt` to `send` in chunks of at most
/// `CHUNK_ROWS` rows or about `CHUNK_BYTES`; returns how many.
pub(crate) async fn stream_rows<F, Fut>(
    conn: &mut Conn,
    object: &str,
    stmt: &str,
    schema: &TableSchema,
    mut send: F,
) -> Result<u64, SnapshotError>
where
    F: FnMut(TableSchema, Vec<Row>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut total = 0u64;
    let mut result = conn
        .exec_iter(stmt, ())
        .await
        .map_err(|e| SnapshotError::read(object, e))?;
    let mut stream = result
        .stream::<mysql_async::Row>()
        .await
        .map_err(|e| SnapshotError::read(object, e))?
        .ok_or_else(|| SnapshotError::Read {
            object: object.to_string(),
            reason: "no result set".into(),
        })?;
    let mut chunk = Vec::new();
    let mut bytes = 0;
    while let Some(row) = stream.next().await {
        let row = convert(row.map_err(|e| SnapshotError::read(object, e))?);
        bytes += crate::replica::statements::row_bytes(&row);
        chunk.push(row);
        if chunk.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES {
            total += chunk.len() as u64;
            if !send(schema.clone(), std::mem::take(&mut chunk)).await {
                return Ok(total);
            }
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        total += chunk.len() as u64;
        send(schema.clone(), chunk).await;
    }
    Ok(total)
}

/// What to select to copy a table: its columns (generated ones left out),
/// as read from the catalog now.
pub(crate) async fn table_read(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<TableRead, SnapshotError> {
    let object = format!("{db}.{table}");
    type Col = (Vec<u8>, Vec<u8>, Vec<u8>, Option<Vec<u8>>);
    let cols: Vec<Col> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY, GENERATION_EXPRESSION FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(|e| SnapshotError::read(&object, e))?;
    let pk_names: Vec<Vec<u8>> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(|e| SnapshotError::read(&object, e))?;
    let kind: Option<Vec<u8>> = conn
            .exec_first(
                "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
            .map_err(|e| SnapshotError::read(&object, e))?;
    let versioned = kind.as_deref() == Some(b"SYSTEM VERSIONED");
    let mut columns = Vec::new();
    let mut select = Vec::new();
    // The row end column, for a versioned table.
    let mut row_end = None;
    let mut column = |name: String, expr: String, kind: ColumnKind| {
        select.push(expr);
        columns.push(ColumnDef {
            name,
            kind,
            unsigned: false,
            collation: 0,
        });
    };
    for (name, data_type, _key, generation) in cols {
        let name = String::from_utf8_lossy(&name).into_owned();
        match generation.as_deref() {
            // Declared row start/end columns: history, written back.
            Some(b"ROW START") => {}
            Some(b"ROW END") => row_end = Some(name.clone()),
            Some(g) if !g.is_empty() => continue,
            _ => {}
        }
        let t = String::from_utf8_lossy(&data_type).to_ascii_lowercase();
        let quoted = sql::ident(&name);
        match t.as_str() {
            // BIT, ENUM and SET are read as numbers: what the applier
            // writes back is then the same bits, index or set.
            "enum" => column(name, format!("{quoted} + 0"), ColumnKind::Enum),
            "bit" | "set" => column(name, format!("{quoted} + 0"), ColumnKind::Other(0)),
            // MariaDB's UUID and INET6 are sent as text, which a
            // binary-charset parameter cannot write back; their 16
            // bytes can, as the binlog's values are.
            "uuid" | "inet6" => column(
                name,
                format!("CAST({quoted} AS BINARY(16))"),
                ColumnKind::Other(0),
            ),
            _ => column(name, quoted, ColumnKind::Other(0)),
        }
    }
    if versioned && row_end.is_none() {
        // Implicit period columns are not in information_schema.
        for name in ["row_start", "row_end"] {
            column(name.into(), sql::ident(name), ColumnKind::Other(0));
        }
        row_end = Some("row_end".into());
    }
    let mut pk_names: Vec<String> = pk_names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    // Versions of one row share its key; the row end tells them apart
    // (the server adds it to every unique key).
    if let (Some(end), false) = (&row_end, pk_names.is_empty()) {
        if !pk_names.contains(end) {
            pk_names.push(end.clone());
        }
    }
    let primary_key = pk_names
        .iter()
        .filter_map(|n| columns.iter().position(|c| &c.name == n).map(|i| i as u32))
        .collect::<Vec<_>>();
    // A key on a generated column cannot drive keyset reads.
    let primary_key = if primary_key.len() == pk_names.len() {
        primary_key
    } else {
        Vec::new()
    };
    Ok(TableRead {
        history: if versioned {
            " FOR SYSTEM_TIME ALL"
        } else {
            ""
        },
        schema: TableSchema {
            database: db.to_string(),
            name: table.to_string(),
            columns,
            primary_key,
        },
        select,
    })
}

/// The binlog position of the read view MariaDB's `START TRANSACTION WITH
/// CONSISTENT SNAPSHOT` just opened on `conn`.
pub(crate) async fn snapshot_position(
    conn: &mut Conn,
) -> Result<SourcePosition, mysql_async::Error> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
    let get = |name: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let file = get("binlog_snapshot_file").unwrap_or_default();
    let pos = get("binlog_snapshot_position")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Ok(SourcePosition::new(file, pos))
}

/// A binary-protocol value as the applier's [`Value`]: dates and times keep
/// every field, strings their raw bytes.
pub(crate) fn convert(row: mysql_async::Row) -> Row {
    row.unwrap()
        .into_iter()
        .map(|v| match v {
            MyValue::NULL => Value::Null,
            MyValue::Int(i) => Value::Int(i),
            MyValue::UInt(u) => Value::UInt(u),
            MyValue::Float(f) => Value::Float(f),
            MyValue::Double(d) => Value::Double(d),
            MyValue::Bytes(b) => Value::Bytes(b),
            v @ (MyValue::Date(..) | MyValue::Time(..)) => crate::source::decode::temporal(v),
        })
        .collect()
}
