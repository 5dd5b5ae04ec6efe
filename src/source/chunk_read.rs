//! Reading a seed: the plan ([`plan`]) and its chunks, each read in a
//! transaction of its own whose read view sits at an exact binlog
//! position ([`ChunkReader`]).
//!
//! The exact position is what lets the slave merge a chunk into the change
//! stream (see `replica/seed_gate.rs`): every transaction that ends at or
//! before it is in the rows, none after it. It is found without any global
//! lock:
//! - MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` reports the
//!   binlog position of its read view (`binlog_snapshot_file`,
//!   `binlog_snapshot_position`), atomically.
//! - MySQL has no such status. A second connection takes `LOCK TABLES ...
//!   READ` on the tables about to be read, which waits for every
//!   transaction writing them to end and holds new writers back; the read
//!   view is opened and the binlog end read while it is held, and it is
//!   released at once (a few milliseconds, those tables only). Every
//!   transaction that wrote these tables is then before the position and
//!   visible, none after it. (Transactions on other tables may fall on
//!   either side: the chunk holds none of their rows.) It needs the `LOCK
//!   TABLES` privilege, not `RELOAD`.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};

use crate::log::change::Row;
use crate::source::position::SourcePosition;
use crate::source::seed_plan::{self, Key, KeyColumn, SeedChunk, SeedTable};
use crate::source::snapshot::{self, SnapshotError, CHUNK_BYTES, CHUNK_ROWS};
use crate::source::Source;
use crate::sql;

/// How a chunk's read view is tied to a binlog position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointMethod {
    /// MariaDB's `binlog_snapshot_position`.
    SnapshotStatus,
    /// A brief `LOCK TABLES ... READ` from a second connection (MySQL).
    TableLock,
}

/// A table larger than this many chunks is cut into ranges read at once.
const SPLIT_ABOVE_CHUNKS: u64 = 4;

/// What the catalog says of a table to copy.
pub struct CatalogTable {
    pub database: String,
    pub name: String,
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
}

/// Decides how each table is copied (see `seed_plan`).
pub async fn plan(
    conn: &mut Conn,
    tables: &[CatalogTable],
    threads: u32,
) -> Result<Vec<SeedTable>, SnapshotError> {
    let mut plan = Vec::new();
    let mut next_group = 2;
    for t in tables {
        let object = format!("{}.{}", t.database, t.name);
        let read = |e| SnapshotError::read(&object, e);
        type KeyRow = (Vec<u8>, Vec<u8>, Vec<u8>, u64, Option<Vec<u8>>);
        let key: Vec<KeyRow> = conn
            .exec(
                "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.ORDINAL_POSITION, c.GENERATION_EXPRESSION \
                 FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.COLUMNS c \
                 ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME AND c.COLUMN_NAME = k.COLUMN_NAME \
                 WHERE k.TABLE_SCHEMA = ? AND k.TABLE_NAME = ? AND k.CONSTRAINT_NAME = 'PRIMARY'",
                (&t.database, &t.name),
            )
            .await
            .map_err(read)?;
        let foreign: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) \
                 OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?)",
                (&t.database, &t.name, &t.database, &t.name),
            )
            .await
            .map_err(read)?;
        let kind: Option<Vec<u8>> = conn
            .exec_first(
                "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&t.database, &t.name),
            )
            .await
            .map_err(read)?;
        let in_foreign_key = foreign.unwrap_or(0) > 0;
        let versioned = kind.as_deref() == Some(b"SYSTEM VERSIONED");
        let key = match key.as_slice() {
            [(name, data_type, column_type, ordinal, generation)]
                if !in_foreign_key
                    && !versioned
                    && generation.as_deref().unwrap_or_default().is_empty() =>
            {
                let data_type = String::from_utf8_lossy(data_type).to_ascii_lowercase();
                seed_plan::integer_bits(&data_type).map(|bits| KeyColumn {
                    name: String::from_utf8_lossy(name).into_owned(),
                    ordinal: (*ordinal as u32).saturating_sub(1),
                    unsigned: String::from_utf8_lossy(column_type)
                        .to_ascii_lowercase()
                        .contains("unsigned"),
                    bits,
                })
            }
            _ => None,
        };
        let (group, ranges) = match &key {
            Some(k) => {
                let chunks = t.estimated_rows / CHUNK_ROWS as u64;
                let ranges = if chunks > SPLIT_ABOVE_CHUNKS && threads > 1 {
                    let q = format!(
                        "SELECT MIN({c}), MAX({c}) FROM {}",
                        sql::table(&t.database, &t.name),
                        c = sql::ident(&k.name)
                    );
                    let bounds: Option<(Option<MyValue>, Option<MyValue>)> =
                        conn.query_first(q).await.map_err(read)?;
                    let as_key = |v: Option<MyValue>| match v {
                        Some(MyValue::Int(i)) => Some(i as Key),
                        Some(MyValue::UInt(u)) => Some(u as Key),
                        Some(MyValue::Bytes(b)) => String::from_utf8_lossy(&b).parse().ok(),
                        _ => None,
                    };
                    match bounds.map(|(a, b)| (as_key(a), as_key(b))) {
                        Some((Some(min), Some(max))) => seed_plan::split(min, max, threads),
                        _ => seed_plan::split(0, 0, 1),
                    }
                } else {
                    seed_plan::split(0, 0, 1)
                };
                (0, ranges)
            }
            None if in_foreign_key => (1, seed_plan::split(0, 0, 1)),
            None => {
                next_group += 1;
                (next_group, seed_plan::split(0, 0, 1))
            }
        };
        plan.push(SeedTable {
            database: t.database.clone(),
            name: t.name.clone(),
            key,
            group,
            ranges,
            estimated_rows: t.estimated_rows,
            estimated_bytes: t.estimated_bytes,
        });
    }
    Ok(plan)
}

/// One connection reading chunks (and, for MySQL, its lock connection).
pub struct ChunkReader {
    conn: Conn,
    locker: Option<Conn>,
    source: Source,
    method: PointMethod,
    epoch: u32,
}

impl ChunkReader {
    pub async fn open(
        source: &Source,
        method: PointMethod,
        epoch: u32,
    ) -> Result<ChunkReader, SnapshotError> {
        let mut conn = source.connect().await?;
        let q = |e| SnapshotError::read("seed connection", e);
        // UTC for TIMESTAMPs, raw bytes for strings (no charset conversion).
        conn.query_drop("SET SESSION time_zone = '+00:00', NAMES binary")
            .await
            .map_err(q)?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(q)?;
        let locker = match method {
            PointMethod::SnapshotStatus => None,
            PointMethod::TableLock => {
                let mut c = source.connect().await?;
                c.query_drop("SET SESSION lock_wait_timeout = 1")
                    .await
                    .map_err(q)?;
                Some(c)
            }
        };
        Ok(ChunkReader {
            conn,
            locker,
            source: source.clone(),
            method,
            epoch,
        })
    }

    /// Opens a read view and returns the binlog position it sits at, not
    /// before `floor` (the end of the last transaction the slave was sent).
    /// MariaDB's group commit lets a dump thread send a transaction a
    /// moment before a new read view sees it: such a view is dropped and
    /// opened again.
    async fn begin(
        &mut self,
        tables: &[&SeedTable],
        floor: Option<&SourcePosition>,
    ) -> Result<SourcePosition, SnapshotError> {
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let position = self.open_view(tables).await?;
            match floor {
                Some(f) if position.cmp_location(f) == std::cmp::Ordering::Less => {
                    self.end().await;
                    if attempt >= 2000 {
                        return Err(SnapshotError::Read {
                            object: "seed chunk start".into(),
                            reason: format!(
                                "the primary's read views stay at {position}, before {f}, which the change log already holds; \
                                 is --source the primary the master's binlog stream comes from?"
                            ),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                _ => return Ok(position),
            }
        }
    }

    async fn open_view(&mut self, tables: &[&SeedTable]) -> Result<SourcePosition, SnapshotError> {
        let q = |e| SnapshotError::read("seed chunk start", e);
        let mut position = match self.method {
            PointMethod::SnapshotStatus => {
                self.conn
                    .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await
                    .map_err(q)?;
                snapshot::snapshot_position(&mut self.conn)
                    .await
                    .map_err(q)?
            }
            PointMethod::TableLock => {
                let locker = self.locker.as_mut().expect("a lock connection");
                // Only tables that exist (one dropped meanwhile is gone
                // for its readers, who find no columns).
                let mut list = Vec::new();
                for t in tables {
                    let there: Option<u64> = locker
                        .exec_first(
                            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                            (&t.database, &t.name),
                        )
                        .await
                        .map_err(q)?;
                    if there.unwrap_or(0) > 0 {
                        list.push(format!("{} READ", sql::table(&t.database, &t.name)));
                    }
                }
                let mut waited = 0;
                loop {
                    if list.is_empty() {
                        break;
                    }
                    match locker.query_drop(format!("LOCK TABLES {}", list.join(", "))).await {
                        Ok(()) => break,
                        // A long transaction writing the table: the lock
                        // request holds its other writers back while it
                        // waits, so it waits a second at a time.
                        Err(mysql_async::Error::Server(e)) if e.code == 1205 && waited < 600 => {
                            waited += 1;
                            if waited % 10 == 1 {
                                tracing::warn!(tables = %list.join(", "), waited_s = waited, "a transaction on the primary holds a table the seed must lock for a moment; trying again");
                            }
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1044 | 1142 | 1227) => {
                            return Err(SnapshotError::Read {
                                object: "seed chunk start".into(),
                                reason: format!(
                                    "{}: without MariaDB's binlog_snapshot_position a seed chunk needs a brief \
                                     LOCK TABLES ... READ; GRANT LOCK TABLES ON the replicated databases to \
                                     rowcast's user on the primary",
                                    e.message
                                ),
                            })
                        }
                        Err(e) => return Err(q(e)),
                    }
                }
                let started = self
                    .conn
                    .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await;
                let position = match started {
                    Ok(()) => crate::source::current_position(&self.source, &mut self.conn).await,
                    Err(e) => Err(self.source.classify(e)),
                };
                let unlocked = locker.query_drop("UNLOCK TABLES").await;
                let position = position?;
                unlocked.map_err(q)?;
                position
            }
        };
        position.epoch = self.epoch;
        Ok(position)
    }

    async fn stream_whole<'a>(
        &'a mut self,
        object: &'a str,
        stmt: &str,
    ) -> Result<Frames<'a>, ChunkFailure> {
        let result = self
            .conn
            .exec_iter(stmt, ())
            .await
            .map_err(|e| ChunkFailure::of(object, e))?;
        let stream = result
            .stream_and_drop::<mysql_async::Row>()
            .await
            .map_err(|e| ChunkFailure::of(object, e))?
            .ok_or_else(|| {
                ChunkFailure::Other(SnapshotError::Read {
                    object: object.to_string(),
                    reason: "no result set".into(),
                })
            })?;
        Ok(Frames { stream, object })
    }

    async fn end(&mut self) {
        let _ = self.conn.query_drop("COMMIT").await;
    }

    /// The next chunk of range `range` of `table`, read at its own exact
    /// position. A table gone from the primary (dropped, the stream will
    /// say so) gives an empty last chunk.
    pub async fn read_range(
        &mut self,
        table: &SeedTable,
        range: u32,
        floor: Option<&SourcePosition>,
    ) -> Result<SeedChunk, SnapshotError> {
        let key = table.key.as_ref().expect("a ranged table has a key");
        let r = &table.ranges[range as usize];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let position = self.begin(&[table], floor).await?;
            let result = self.range_rows(table, key, r).await;
            self.end().await;
            match result {
                Ok((schema, rows)) => {
                    let done = rows.len() < chunk_rows(table);
                    let upto = rows
                        .last()
                        .and_then(|row| key_in(&schema, key, row))
                        .or(r.after);
                    return Ok(SeedChunk {
                        database: table.database.clone(),
                        name: table.name.clone(),
                        range,
                        schema,
                        rows,
                        position,
                        first: false,
                        done,
                        upto,
                    });
                }
                Err(ChunkFailure::Gone) => {
                    return Ok(gone(table, range, position));
                }
                // Altered after the read view opened: read it again.
                Err(ChunkFailure::Changed(_)) if attempt < 20 => continue,
                Err(ChunkFailure::Changed(e)) | Err(ChunkFailure::Other(e)) => return Err(e),
            }
        }
    }

    async fn range_rows(
        &mut self,
        table: &SeedTable,
        key: &KeyColumn,
        r: &seed_plan::SeedRange,
    ) -> Result<(crate::log::change::TableSchema, Vec<Row>), ChunkFailure> {
        let read = snapshot::table_read(&mut self.conn, &table.database, &table.name)
            .await
            .map_err(ChunkFailure::Other)?;
        if read.schema.columns.is_empty() {
            return Err(ChunkFailure::Gone);
        }
        if !read.schema.columns.iter().any(|c| c.name == key.name) {
            return Err(ChunkFailure::Other(SnapshotError::Read {
                object: format!("{}.{}", table.database, table.name),
                reason: format!(
                    "its key column `{}` is gone (renamed or dropped while the table was being copied); \
                     the slave stops at that change and names the fix: `--resync {}.{}`",
                    key.name, table.database, table.name
                ),
            }));
        }
        let k = sql::ident(&key.name);
        let mut conds = Vec::new();
        let mut params = Vec::new();
        match (r.after, r.lo) {
            (Some(after), _) => {
                conds.push(format!("{k} > ?"));
                params.push(key_param(after));
            }
            (None, Some(lo)) => {
                conds.push(format!("{k} >= ?"));
                params.push(key_param(lo));
            }
            (None, None) => {}
        }
        if let Some(hi) = r.hi {
            conds.push(format!("{k} < ?"));
            params.push(key_param(hi));
        }
        let filter = match conds.is_empty() {
            true => String::new(),
            false => format!(" WHERE {}", conds.join(" AND ")),
        };
        let stmt = format!(
            "SELECT {} FROM {}{filter} ORDER BY {k} LIMIT {}",
            read.select.join(", "),
            sql::table(&table.database, &table.name),
            chunk_rows(table),
        );
        let object = format!("{}.{}", table.database, table.name);
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(stmt, Params::Positional(params))
            .await
            .map_err(|e| ChunkFailure::of(&object, e))?;
        Ok((
            read.schema,
            rows.into_iter().map(snapshot::convert).collect(),
        ))
    }

    /// Reads whole tables (one group) in one read view: all their chunks
    /// carry the same position. `send` returns false to stop.
    pub async fn read_whole<F, Fut>(
        &mut self,
        tables: &[&SeedTable],
        floor: Option<&SourcePosition>,
        mut send: F,
    ) -> Result<(), SnapshotError>
    where
        F: FnMut(SeedChunk) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut attempt = 0;
        'again: loop {
            attempt += 1;
            let position = self.begin(tables, floor).await?;
            for t in tables {
                let read = match snapshot::table_read(&mut self.conn, &t.database, &t.name).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.end().await;
                        return Err(e);
                    }
                };
                if read.schema.columns.is_empty() {
                    if !send(gone(t, 0, position.clone())).await {
                        break 'again;
                    }
                    continue;
                }
                let object = format!("{}.{}", t.database, t.name);
                let stmt = format!(
                    "SELECT {} FROM {}{}",
                    read.select.join(", "),
                    sql::table(&t.database, &t.name),
                    read.history
                );
                // Frames go out as they are read; the last (maybe empty)
                // one says the table is complete.
                let mut first = true;
                let mut pending: Option<Vec<Row>> = None;
                let step = match self.stream_whole(&object, &stmt).await {
                    Err(fail) => Step::Failed(fail),
                    Ok(mut frames) => loop {
                        let rows = match frames.next_frame().await {
                            Ok(Some(rows)) => rows,
                            Ok(None) => break Step::Next,
                            Err(e) => break Step::Failed(ChunkFailure::Other(e)),
                        };
                        if let Some(rows) = pending.replace(rows) {
                            let chunk = SeedChunk {
                                database: t.database.clone(),
                                name: t.name.clone(),
                                range: 0,
                                schema: read.schema.clone(),
                                rows,
                                position: position.clone(),
                                first: std::mem::replace(&mut first, false),
                                done: false,
                                upto: None,
                            };
                            if !send(chunk).await {
                                break Step::Stop;
                            }
                        }
                    },
                };
                match step {
                    Step::Next => {}
                    Step::Stop => break 'again,
                    Step::Failed(ChunkFailure::Changed(_)) if attempt < 20 => {
                        self.end().await;
                        continue 'again;
                    }
                    Step::Failed(ChunkFailure::Gone) => {
                        if !send(gone(t, 0, position.clone())).await {
                            break 'again;
                        }
                        continue;
                    }
                    Step::Failed(ChunkFailure::Changed(e) | ChunkFailure::Other(e)) => {
                        self.end().await;
                        return Err(e);
                    }
                }
                let last = SeedChunk {
                    database: t.database.clone(),
                    name: t.name.clone(),
                    range: 0,
                    schema: read.schema.clone(),
                    rows: pending.take().unwrap_or_default(),
                    position: position.clone(),
                    first,
                    done: true,
                    upto: None,
                };
                if !send(last).await {
                    break 'again;
                }
            }
            break;
        }
        self.end().await;
        Ok(())
    }
}

/// Rows per chunk of a ranged table: `CHUNK_ROWS`, fewer for wide rows
/// (by the table statistics' average), so a chunk stays near
/// `CHUNK_BYTES` in memory and on the wire.
pub fn chunk_rows(table: &SeedTable) -> usize {
    let average = table.estimated_bytes / table.estimated_rows.max(1);
    (CHUNK_BYTES as u64 / average.max(1)).clamp(10, CHUNK_ROWS as u64) as usize
}

/// Bytes in a chunk's rows, for progress.
pub fn chunk_bytes(chunk: &SeedChunk) -> u64 {
    chunk
        .rows
        .iter()
        .map(crate::replica::statements::row_bytes)
        .sum::<usize>() as u64
}

/// How reading one table of a group ended.
enum Step {
    Next,
    Stop,
    Failed(ChunkFailure),
}

/// Why a chunk read failed.
enum ChunkFailure {
    /// The table does not exist (any more).
    Gone,
    /// Its definition changed after the read view opened (1412).
    Changed(SnapshotError),
    Other(SnapshotError),
}

impl ChunkFailure {
    fn of(object: &str, e: mysql_async::Error) -> ChunkFailure {
        let code = match &e {
            mysql_async::Error::Server(s) => s.code,
            _ => 0,
        };
        let e = SnapshotError::read(object, e);
        match code {
            1146 => ChunkFailure::Gone,
            1412 => ChunkFailure::Changed(e),
            _ => ChunkFailure::Other(e),
        }
    }
}

fn gone(table: &SeedTable, range: u32, position: SourcePosition) -> SeedChunk {
    tracing::info!(database = %table.database, table = %table.name, "table gone from the primary while it was being copied; the stream says what became of it");
    SeedChunk {
        database: table.database.clone(),
        name: table.name.clone(),
        range,
        schema: crate::log::change::TableSchema {
            database: table.database.clone(),
            name: table.name.clone(),
            columns: Vec::new(),
            primary_key: Vec::new(),
        },
        rows: Vec::new(),
        position,
        first: true,
        done: true,
        upto: None,
    }
}

fn key_param(k: Key) -> MyValue {
    match i64::try_from(k) {
        Ok(i) => MyValue::Int(i),
        Err(_) => MyValue::UInt(k as u64),
    }
}

fn key_in(schema: &crate::log::change::TableSchema, key: &KeyColumn, row: &Row) -> Option<Key> {
    let i = schema.columns.iter().position(|c| c.name == key.name)?;
    seed_plan::key_value(&row[i], key)
}

/// A whole table's rows, a frame at a time.
struct Frames<'a> {
    stream: mysql_async::ResultSetStream<
        'a,
        'a,
        'static,
        mysql_async::Row,
        mysql_async::BinaryProtocol,
    >,
    object: &'a str,
}

impl Frames<'_> {
    /// The next frame: up to `CHUNK_ROWS` rows or about `CHUNK_BYTES`.
    async fn next_frame(&mut self) -> Result<Option<Vec<Row>>, SnapshotError> {
        use futures_util::StreamExt;
        let mut rows = Vec::new();
        let mut bytes = 0;
        while let Some(row) = self.stream.next().await {
            let row = snapshot::convert(row.map_err(|e| SnapshotError::read(self.object, e))?);
            bytes += crate::replica::statements::row_bytes(&row);
            rows.push(row);
            if rows.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES {
                break;
            }
        }
        Ok((!rows.is_empty()).then_some(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: u64, bytes: u64) -> SeedTable {
        SeedTable {
            database: "d".into(),
            name: "t".into(),
            key: None,
            group: 0,
            ranges: Vec::new(),
            estimated_rows: rows,
            estimated_bytes: bytes,
        }
    }

    #[test]
    fn wide_rows_make_smaller_chunks() {
        assert_eq!(chunk_rows(&table(1_000_000, 240 << 20)), CHUNK_ROWS);
        // 1 MiB rows: about CHUNK_BYTES per chunk.
        assert_eq!(chunk_rows(&table(1_000, 1000 << 20)), 10);
        assert_eq!(chunk_rows(&table(100, 100 * (64 << 10))), 128);
        assert_eq!(chunk_rows(&table(0, 16 << 10)), 512);
    }
}
