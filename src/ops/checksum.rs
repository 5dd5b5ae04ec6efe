//! `rowcast checksum`: proves a replica equals its primary while writes go
//! on.
//!
//! How both sides are compared at the same source position, whatever the
//! lag: the tool checksums each chunk of a table on the primary inside a
//! transaction that holds shared locks on the chunk (so no concurrent
//! write to it can commit in between), and records the result as a row in
//! `rowcast_checksum.chunks` in the same transaction. That row travels
//! through the binlog like any other. When a slave applies it, the
//! applier runs the same checksum query on the replica inside the same
//! local transaction ([`check_replicated_chunk`]): the replica is then at
//! exactly the position where the primary computed its value. The slave
//! stores its own value in `rowcast.checksum_results`; the tool waits until
//! the replica has applied the last chunk and compares.
//!
//! The checksum of a chunk is `COUNT(*)` and the sum of a 64-bit hash of
//! each row (a sum, unlike pt-table-checksum's XOR, does not cancel
//! duplicate rows of a table without a key). Values are hashed in their
//! binary form (`CAST AS BINARY`; FLOAT/DOUBLE through `DOUBLE`; TIMESTAMP
//! in UTC), joined with a separator and followed by a NULL bitmap, so the
//! result does not depend on charset or time zone.
//!
//! The row hash is `CRC32` of those bytes in the low 32 bits and `CRC32C`
//! in the high 32 bits ([`RowHash::Crc`]). MD5 sliced to 64 bits cost
//! about three times as much per row (measured: 2.3 s against 0.9 s for
//! 300k sysbench rows), and the hash is most of a chunk's time, on the
//! primary and again on every replica. The two CRCs use different
//! polynomials, so a changed row goes unnoticed only if both collide
//! (each alone detects every change within 32 adjacent bits); a random
//! change hides with odds near 2^-64, versus 2^-32 for pt-table-checksum's
//! single CRC32. Unlike MD5 a CRC is not collision-resistant against
//! someone crafting rows to collide, which a check for replication drift
//! does not need to withstand. `CRC32C()` exists from MariaDB 10.8; when
//! the primary or a replica lacks it the run uses the MD5 slice
//! ([`RowHash::Md5`]). The replica runs the primary's query text, so both
//! sides always hash alike.
//!
//! Chunks of a table whose key is one integer column are cut by key value:
//! the first key after the previous chunk and the largest key are index
//! dives, and the span aims at the adapted row count given the keys'
//! density in the previous chunk. Other tables find the upper bound by
//! reading the next `size` keys in order. The last chunk is open-ended,
//! so rows written past the end during the run are covered.
//!
//! A chunk that differs is narrowed down to the keys that differ by
//! comparing per-row hashes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as MyValue};
use serde::Serialize;

use crate::log::change::{Row, TableSchema, Value};
use crate::replica::db_rewrite::DbRewrite;
use crate::source::filter::{glob, Filter};
use crate::source::position::SourcePosition;
use crate::source::{self, Source, SourceError};
use crate::sql;

/// Where the chunk results go; the filter owns the name because it lets
/// the database through whatever else it excludes.
pub use crate::source::filter::CHECKSUM_DB;
pub const CHUNKS_TABLE: &str = "chunks";

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("checksum query on {endpoint} failed: {reason}")]
    Query { endpoint: String, reason: String },
    #[error("replica {endpoint} did not apply the checksum run within {waited:?}: it is at {at}, the run ended at {end}. Is its `rowcast slave` running? (--wait sets the limit)")]
    Lagging {
        endpoint: String,
        at: String,
        end: String,
        waited: Duration,
    },
    #[error("replica {endpoint} has no rowcast slave checkpoint: point --target at a database that a `rowcast slave` writes to")]
    NotAReplica { endpoint: String },
    #[error("replica {endpoint} is still being seeded (slave {slaves}, tables {tables} not fully copied yet): a checksum now would report rows the copy has not reached as differences. Wait until `rowcast status` shows the seed complete, then run the checksum again")]
    Seeding {
        endpoint: String,
        slaves: String,
        tables: String,
    },
    #[error(transparent)]
    Rewrite(#[from] crate::replica::db_rewrite::RewriteError),
}

/// A progress callback: `(table, chunks done, rows done)`.
pub type Progress = dyn Fn(&str, u32, u64) + Send + Sync;

pub struct ChecksumOptions {
    pub source: Source,
    pub targets: Vec<Source>,
    /// `db` or `db.table` globs; empty means every replicated table.
    pub tables: Vec<String>,
    /// Aim for each chunk's query to take about this long.
    pub chunk_time: Duration,
    /// How long to wait for a replica to apply the run.
    pub wait: Duration,
    /// Called after each chunk on the primary: `(table, chunks, rows)`.
    pub progress: Option<Box<Progress>>,
    /// `--rewrite-db FROM=TO` on the replicas; empty: the rules each
    /// replica's slave stored (`rowcast.rewrite_db`).
    pub rewrite_db: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// The primary's database.
    pub database: String,
    /// Its name on the replica (`--rewrite-db`; else the same).
    pub replica_database: String,
    pub table: String,
    pub rows: u64,
    pub chunks: u32,
    pub differing_chunks: Vec<u32>,
    pub unchecked_chunks: Vec<u32>,
    /// Keys (or whole rows, for a table without a key) that differ.
    pub differing_keys: Vec<String>,
}

impl TableReport {
    pub fn status(&self) -> &'static str {
        if !self.differing_chunks.is_empty() {
            "DIFFERS"
        } else if !self.unchecked_chunks.is_empty() {
            "NOT CHECKED"
        } else {
            "equal"
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub slave: String,
    /// Seconds the replica needed, after the run ended on the primary, to
    /// apply it: how far behind it was.
    pub lag_seconds: f64,
    pub tables: Vec<TableReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: u64,
    pub position: String,
    pub targets: Vec<TargetReport>,
}

impl Report {
    pub fn all_equal(&self) -> bool {
        self.targets
            .iter()
            .all(|t| t.tables.iter().all(|r| r.status() == "equal"))
    }
}

fn query_err(endpoint: &str) -> impl Fn(mysql_async::Error) -> VerifyError + '_ {
    move |e| VerifyError::Query {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    }
}

/// Session settings under which both sides run the same SQL text.
const SESSION: &str = "SET NAMES utf8mb4, SESSION time_zone = '+00:00'";

struct Column {
    name: String,
    data_type: String,
}

/// How a row is hashed to an unsigned 64-bit number; the same for a whole
/// run, on the primary and every replica (the replica runs the primary's
/// query text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowHash {
    /// `CRC32` in the low and `CRC32C` in the high 32 bits (MariaDB
    /// 10.8+): about a third of the MD5 form's cost.
    Crc,
    /// A 64-bit slice of the MD5: for servers without `CRC32C()`.
    Md5,
}

impl RowHash {
    /// `Crc` when every server of the run has `CRC32C()`, else `Md5`.
    async fn choose(conns: &mut [&mut Conn]) -> RowHash {
        for c in conns.iter_mut() {
            if c.query_drop("DO CRC32C('')").await.is_err() {
                return RowHash::Md5;
            }
        }
        RowHash::Crc
    }
}

/// The expression hashing one row to an unsigned 64-bit number.
fn row_hash(kind: RowHash, cols: &[Column]) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| {
            let id = sql::ident(&c.name);
            match c.data_type.as_str() {
                "float" | "double" => format!("CAST(CAST({id} AS DOUBLE) AS BINARY)"),
                _ => format!("CAST({id} AS BINARY)"),
            }
        })
        .collect();
    let nulls: Vec<String> = cols
        .iter()
        .map(|c| format!("ISNULL({})", sql::ident(&c.name)))
        .collect();
    let bytes = format!(
        "CONCAT_WS(0x1f, {}, CONCAT({}))",
        parts.join(", "),
        nulls.join(", ")
    );
    match kind {
        RowHash::Crc => format!("(CRC32({bytes}) | (CRC32C({bytes}) << 32))"),
        RowHash::Md5 => format!("CAST(CONV(LEFT(MD5({bytes}), 16), 16, 10) AS UNSIGNED)"),
    }
}

struct TableInfo {
    database: String,
    table: String,
    columns: Vec<Column>,
    key: Vec<String>,
}

async fn tables(
    conn: &mut Conn,
    endpoint: &str,
    patterns: &[String],
) -> Result<Vec<TableInfo>, VerifyError> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await
        .map_err(query_err(endpoint))?;
    let mut out = Vec::new();
    for (db, table) in rows {
        if Filter::is_system(&db) || db == CHECKSUM_DB {
            continue;
        }
        let wanted = patterns.is_empty()
            || patterns.iter().any(|p| match p.split_once('.') {
                Some((d, t)) => glob(d, &db) && glob(t, &table),
                None => glob(p, &db),
            });
        if !wanted {
            continue;
        }
        let cols: Vec<(String, String, Option<String>)> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, GENERATION_EXPRESSION FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&db, &table),
            )
            .await
            .map_err(query_err(endpoint))?;
        let key: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (&db, &table),
            )
            .await
            .map_err(query_err(endpoint))?;
        out.push(TableInfo {
            database: db,
            table,
            columns: cols
                .into_iter()
                .filter(|(_, _, g)| g.as_deref().is_none_or(str::is_empty))
                .map(|(name, data_type, _)| Column {
                    name,
                    data_type: data_type.to_ascii_lowercase(),
                })
                .collect(),
            key,
        });
    }
    Ok(out)
}

async fn ensure_chunks_table(conn: &mut Conn, endpoint: &str) -> Result<(), VerifyError> {
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {CHECKSUM_DB}"))
        .await
        .map_err(query_err(endpoint))?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {CHECKSUM_DB}.{CHUNKS_TABLE} (
           run_id BIGINT UNSIGNED NOT NULL, db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL,
           chunk INT UNSIGNED NOT NULL, lower_key TEXT NULL, upper_key TEXT NULL,
           check_sql LONGTEXT NOT NULL, cnt BIGINT UNSIGNED NOT NULL, crc DECIMAL(40,0) NOT NULL,
           created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
           PRIMARY KEY (run_id, db, tbl, chunk)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    ))
    .await
    .map_err(query_err(endpoint))
}

/// One chunk as checksummed on the primary.
struct Chunk {
    where_sql: String,
    lower: Option<String>,
    upper: Option<String>,
    cnt: u64,
    crc: String,
}

/// Whether the table's key is one integer column: its chunks are then
/// cut by key value (index dives) rather than by counting rows.
fn integer_key(t: &TableInfo) -> bool {
    const INTS: [&str; 5] = ["tinyint", "smallint", "mediumint", "int", "bigint"];
    match t.key.as_slice() {
        [k] => t
            .columns
            .iter()
            .any(|c| &c.name == k && INTS.contains(&c.data_type.as_str())),
        _ => false,
    }
}

/// Checksums `t` on the primary chunk by chunk, recording each chunk's row.
async fn checksum_table(
    conn: &mut Conn,
    endpoint: &str,
    run_id: u64,
    t: &TableInfo,
    hash_kind: RowHash,
    chunk_time: Duration,
    progress: Option<&Progress>,
) -> Result<Vec<Chunk>, VerifyError> {
    let label = format!("{}.{}", t.database, t.table);
    let mut rows_done = 0u64;
    let name = sql::table(&t.database, &t.table);
    let hash = row_hash(hash_kind, &t.columns);
    let key_list = t
        .key
        .iter()
        .map(|k| sql::ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let quoted_key = t
        .key
        .iter()
        .map(|k| format!("QUOTE({})", sql::ident(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let by_value = integer_key(t);
    let mut chunks = Vec::new();
    let mut lower: Option<String> = None;
    // Rows per chunk we aim for, and (integer keys) rows per key value
    // seen in the last chunk.
    let mut size: u64 = 1000;
    let mut density: f64 = 1.0;
    loop {
        let after = lower
            .as_ref()
            .map(|l| format!("({key_list}) > ({l})"))
            .unwrap_or_else(|| "1".into());
        // The upper bound, or none for the last chunk (open-ended, so rows
        // written past the end meanwhile are covered too).
        let upper: Option<String> = if t.key.is_empty() {
            None
        } else if by_value {
            // Two index dives instead of reading `size` rows: the first
            // key past the previous chunk, and the largest key.
            let (first, last): (Option<i128>, Option<i128>) = conn
                .query_first(format!(
                    "SELECT CAST(MIN({key_list}) AS CHAR), CAST(MAX({key_list}) AS CHAR) FROM {name} WHERE {after}"
                ))
                .await
                .map_err(query_err(endpoint))?
                .map(|(a, b): (Option<String>, Option<String>)| {
                    (a.and_then(|v| v.parse().ok()), b.and_then(|v| v.parse().ok()))
                })
                .unwrap_or((None, None));
            let span = ((size as f64 / density).ceil() as i128).max(1);
            match (first, last) {
                (Some(f), Some(l)) if f + span - 1 < l => Some((f + span - 1).to_string()),
                _ => None,
            }
        } else {
            let q = format!(
                "SELECT CONCAT_WS(', ', {quoted_key}) FROM {name} WHERE {after} ORDER BY {key_list} LIMIT 1 OFFSET {}",
                size - 1
            );
            conn.query_first(q).await.map_err(query_err(endpoint))?
        };
        let where_sql = match &upper {
            Some(u) => format!("{after} AND ({key_list}) <= ({u})"),
            None => after.clone(),
        };
        let check_sql =
            format!("SELECT COUNT(*), COALESCE(SUM({hash}), 0) FROM {name} WHERE {where_sql}");
        let started = Instant::now();
        let mut tx = conn
            .start_transaction(Default::default())
            .await
            .map_err(query_err(endpoint))?;
        // Shared locks: no write to this chunk commits between our read
        // and our chunk row, so both describe the same position.
        let (cnt, crc): (u64, String) = tx
            .query_first(format!("{check_sql} LOCK IN SHARE MODE"))
            .await
            .map_err(query_err(endpoint))?
            .unwrap_or((0, "0".into()));
        let n = chunks.len() as u32;
        tx.exec_drop(
            format!(
                "INSERT INTO {CHECKSUM_DB}.{CHUNKS_TABLE} (run_id, db, tbl, chunk, lower_key, upper_key, check_sql, cnt, crc) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (run_id, &t.database, &t.table, n, &lower, &upper, &check_sql, cnt, &crc),
        )
        .await
        .map_err(query_err(endpoint))?;
        tx.commit().await.map_err(query_err(endpoint))?;
        let took = started.elapsed().max(Duration::from_millis(1));
        rows_done += cnt;
        if let Some(p) = progress {
            p(&label, n + 1, rows_done);
        }
        chunks.push(Chunk {
            where_sql,
            lower: lower.clone(),
            upper: upper.clone(),
            cnt,
            crc,
        });
        let Some(u) = upper else { break };
        if by_value {
            // Rows per key value in this chunk (keys are sparse after
            // deletes or with big AUTO_INCREMENT steps).
            let lo: i128 = lower.as_deref().and_then(|l| l.parse().ok()).unwrap_or(0);
            let hi: i128 = u.parse().unwrap_or(lo);
            let span = (hi - lo).max(1) as f64;
            if lower.is_some() && cnt > 0 {
                density = (cnt as f64 / span).clamp(1e-12, 1.0);
            }
        }
        lower = Some(u);
        // Adapt so each chunk's query stays near `chunk_time`.
        let factor = chunk_time.as_secs_f64() / took.as_secs_f64();
        size = ((size as f64 * factor.clamp(0.5, 2.0)) as u64).clamp(100, 200_000);
    }
    Ok(chunks)
}

/// Checkpoints on a replica: `(slave name, position)`.
/// A replica whose seed is under way holds only part of its tables' rows:
/// its checksum would differ where nothing diverged. Waits up to `wait`
/// for the seed to end, then refuses.
async fn wait_seeded(conn: &mut Conn, endpoint: &str, wait: Duration) -> Result<(), VerifyError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        match seeding(conn, endpoint).await {
            Err(_) if started.elapsed() < wait => {
                if !told {
                    tracing::info!(replica = %endpoint, "waiting for the replica's seed to complete before the checksum");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// `rowcast.seed` holds a row per key range while a seed (or `--resync`)
/// is under way.
async fn seeding(conn: &mut Conn, endpoint: &str) -> Result<(), VerifyError> {
    // A replica whose slave predates seeding v2 has no such table: then
    // nothing is being seeded the way this can tell.
    let Ok(rows) = conn
        .query::<(String, String, String), _>(
            "SELECT DISTINCT slave_name, database_name, table_name FROM rowcast.seed \
             ORDER BY 1, 2, 3",
        )
        .await
    else {
        return Ok(());
    };
    if rows.is_empty() {
        return Ok(());
    }
    let mut slaves: Vec<&str> = rows.iter().map(|(s, _, _)| s.as_str()).collect();
    slaves.dedup();
    let tables: Vec<String> = rows
        .iter()
        .take(10)
        .map(|(_, d, t)| format!("{d}.{t}"))
        .collect();
    let more = rows.len().saturating_sub(10);
    Err(VerifyError::Seeding {
        endpoint: endpoint.to_string(),
        slaves: slaves.join(", "),
        tables: if more > 0 {
            format!("{} and {more} more", tables.join(", "))
        } else {
            tables.join(", ")
        },
    })
}

async fn checkpoints(
    conn: &mut Conn,
    endpoint: &str,
) -> Result<Vec<(String, SourcePosition)>, VerifyError> {
    let rows: Vec<(String, u32, String, u64)> = conn
        .query("SELECT slave_name, source_epoch, source_file, source_offset FROM rowcast.checkpoint WHERE source_file <> ''")
        .await
        .map_err(query_err(endpoint))?;
    Ok(rows
        .into_iter()
        .map(|(n, epoch, f, o)| {
            (
                n,
                SourcePosition {
                    epoch,
                    ..SourcePosition::new(f, o)
                },
            )
        })
        .collect())
}

/// Per-row hashes of one chunk, keyed by the row's key (or by the whole
/// row's hash for a table without a key, counting duplicates).
async fn row_hashes(
    conn: &mut Conn,
    endpoint: &str,
    t: &TableInfo,
    database: &str,
    where_sql: &str,
    hash_kind: RowHash,
) -> Result<BTreeMap<String, (String, u64)>, VerifyError> {
    let name = sql::table(database, &t.table);
    let hash = row_hash(hash_kind, &t.columns);
    let key = if t.key.is_empty() {
        hash.clone()
    } else {
        format!(
            "CONCAT_WS(',', {})",
            t.key
                .iter()
                .map(|k| format!("QUOTE({})", sql::ident(k)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SELECT {key}, {hash} FROM {name} WHERE {where_sql}"
        ))
        .await
        .map_err(query_err(endpoint))?;
    let mut out: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for (k, h) in rows {
        out.entry(k).or_insert((h, 0)).1 += 1;
    }
    Ok(out)
}

/// `(db, table, chunk)`.
type ChunkId = (String, String, u32);
/// `(count, crc)` as the replica computed them (NULL if it could not).
type ChunkSum = (Option<u64>, Option<String>);
type ResultRow = (String, String, u32, Option<u64>, Option<String>);

pub async fn run(opts: &ChecksumOptions) -> Result<Report, VerifyError> {
    let src_ep = opts.source.endpoint().to_string();
    let mut src = opts.source.connect().await?;
    src.query_drop(SESSION).await.map_err(query_err(&src_ep))?;
    ensure_chunks_table(&mut src, &src_ep).await?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    // Every replica runs the primary's query text: connect to them first
    // and pick a row hash that all of them have.
    let mut replicas = Vec::with_capacity(opts.targets.len());
    for target in &opts.targets {
        let ep = target.endpoint().to_string();
        let mut conn = target.connect().await?;
        conn.query_drop(SESSION).await.map_err(query_err(&ep))?;
        wait_seeded(&mut conn, &ep, opts.wait).await?;
        replicas.push((ep, conn));
    }
    let hash_kind = {
        let mut all: Vec<&mut Conn> = vec![&mut src];
        all.extend(replicas.iter_mut().map(|(_, c)| c));
        RowHash::choose(&mut all).await
    };
    let list = tables(&mut src, &src_ep, &opts.tables).await?;
    let mut primary: Vec<(TableInfo, Vec<Chunk>)> = Vec::new();
    for t in list {
        let chunks = checksum_table(
            &mut src,
            &src_ep,
            run_id,
            &t,
            hash_kind,
            opts.chunk_time,
            opts.progress.as_deref(),
        )
        .await?;
        tracing::info!(table = %format!("{}.{}", t.database, t.table), chunks = chunks.len(), "checksummed on the primary");
        primary.push((t, chunks));
    }
    let end = source::current_position(&opts.source, &mut src).await?;

    let mut targets = Vec::new();
    for (ep, mut conn) in replicas {
        // Wait for a slave on this replica to apply the whole run.
        let started = Instant::now();
        let slave = loop {
            let cps = checkpoints(&mut conn, &ep)
                .await
                .map_err(|_| VerifyError::NotAReplica {
                    endpoint: ep.clone(),
                })?;
            if cps.is_empty() {
                return Err(VerifyError::NotAReplica { endpoint: ep });
            }
            // The tool reads the primary's coordinates, which carry no
            // epoch: compare within the slave's.
            let reached = |p: &SourcePosition| {
                !SourcePosition {
                    epoch: p.epoch,
                    ..end.clone()
                }
                .is_after(p)
            };
            if let Some((name, _)) = cps.iter().find(|(_, p)| reached(p)) {
                break name.clone();
            }
            if started.elapsed() > opts.wait {
                let at = cps
                    .iter()
                    .map(|(n, p)| format!("{n} at {p}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(VerifyError::Lagging {
                    endpoint: ep,
                    at,
                    end: end.to_string(),
                    waited: opts.wait,
                });
            }
            // The replica checks chunk N while the primary computes N+1,
            // so it is usually done moments after the primary: look often.
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let lag_seconds = started.elapsed().as_secs_f64();
        // Which database on the replica holds each primary database: the
        // slave's stored rules unless --rewrite-db says otherwise. (The
        // slave checksums its chunks under its own rules; the names here
        // are for narrowing a difference down and for the report.)
        let rewrite = if opts.rewrite_db.is_empty() {
            let rules: Vec<(String, String)> =
                crate::replica::rewrite_rules::stored_rules(&mut conn)
                    .await
                    .map_err(query_err(&ep))?
                    .into_iter()
                    .filter(|(s, _, _)| s == &slave)
                    .map(|(_, f, t)| (f, t))
                    .collect();
            DbRewrite::new(&rules)?
        } else {
            DbRewrite::new(&opts.rewrite_db)?
        };
        let results: Vec<ResultRow> = conn
            .exec(
                "SELECT db, tbl, chunk, cnt, CAST(crc AS CHAR) FROM rowcast.checksum_results WHERE slave_name = ? AND run_id = ?",
                (&slave, run_id),
            )
            .await
            .map_err(query_err(&ep))?;
        let results: BTreeMap<ChunkId, ChunkSum> = results
            .into_iter()
            .map(|(d, t, c, n, h)| ((d, t, c), (n, h)))
            .collect();
        let mut reports = Vec::new();
        for (t, chunks) in &primary {
            let replica_db = rewrite.to_replica(&t.database).to_string();
            let mut r = TableReport {
                database: t.database.clone(),
                replica_database: replica_db.clone(),
                table: t.table.clone(),
                rows: chunks.iter().map(|c| c.cnt).sum(),
                chunks: chunks.len() as u32,
                differing_chunks: Vec::new(),
                unchecked_chunks: Vec::new(),
                differing_keys: Vec::new(),
            };
            for (i, c) in chunks.iter().enumerate() {
                match results.get(&(t.database.clone(), t.table.clone(), i as u32)) {
                    None => r.unchecked_chunks.push(i as u32),
                    Some((Some(n), Some(h))) if *n == c.cnt && *h == c.crc => {}
                    Some(_) => r.differing_chunks.push(i as u32),
                }
            }
            for &i in &r.differing_chunks {
                let c = &chunks[i as usize];
                let a =
                    row_hashes(&mut src, &src_ep, t, &t.database, &c.where_sql, hash_kind).await?;
                let b = row_hashes(&mut conn, &ep, t, &replica_db, &c.where_sql, hash_kind).await?;
                for k in a
                    .keys()
                    .chain(b.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let label = if t.key.is_empty() { "row hash " } else { "" };
                    match (a.get(k), b.get(k)) {
                        (Some(x), Some(y)) if x == y => {}
                        (Some(_), None) => r
                            .differing_keys
                            .push(format!("{label}{k} missing on the replica")),
                        (None, Some(_)) => r
                            .differing_keys
                            .push(format!("{label}{k} extra on the replica")),
                        _ => r.differing_keys.push(format!("{label}{k} differs")),
                    }
                }
                let _ = (&c.lower, &c.upper);
            }
            reports.push(r);
        }
        targets.push(TargetReport {
            target: ep,
            slave,
            lag_seconds,
            tables: reports,
        });
    }
    Ok(Report {
        run_id,
        position: end.to_string(),
        targets,
    })
}

/// True for the table whose replicated rows ask the slave to checksum.
pub fn is_chunk_table(schema: &TableSchema) -> bool {
    schema.database == CHECKSUM_DB && schema.name == CHUNKS_TABLE
}

/// Called by the applier, inside the local transaction that applies a
/// chunk row: computes the replica's checksum of that chunk at exactly
/// this source position and records it.
pub async fn check_replicated_chunk(
    conn: &mut Conn,
    slave: &str,
    rewrite: &DbRewrite,
    schema: &TableSchema,
    row: &Row,
) -> Result<(), mysql_async::Error> {
    let col = |name: &str| {
        schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| row.get(i))
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let num = |v: Option<&Value>| match v {
        Some(Value::UInt(u)) => *u,
        Some(Value::Int(i)) => *i as u64,
        _ => 0,
    };
    let (run_id, db, tbl, chunk) = (
        num(col("run_id")),
        text(col("db")),
        text(col("tbl")),
        num(col("chunk")),
    );
    // The primary's query names the primary's database; results are
    // stored under the primary's names, as the tool compares them.
    let check_sql = rewrite.sql_text(&text(col("check_sql"))).into_owned();
    // Same session settings as the primary's run, then back to the
    // applier's (binary strings).
    conn.query_drop(SESSION).await?;
    let result: Result<Option<(u64, String)>, _> = conn.query_first(&check_sql).await;
    conn.query_drop("SET NAMES binary").await?;
    let (cnt, crc, error) = match result {
        Ok(Some((n, h))) => (Some(n), Some(h), None),
        Ok(None) => (Some(0), Some("0".into()), None),
        // A missing table on the replica is a difference, not a failure.
        Err(mysql_async::Error::Server(e)) => (None, None, Some(e.message)),
        Err(e) => return Err(e),
    };
    conn.exec_drop(
        "REPLACE INTO rowcast.checksum_results (slave_name, run_id, db, tbl, chunk, cnt, crc, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (slave, run_id, db, tbl, chunk, cnt, crc.map(MyValue::from), error),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hash_is_binary_and_null_aware() {
        let cols = vec![
            Column {
                name: "id".into(),
                data_type: "int".into(),
            },
            Column {
                name: "f".into(),
                data_type: "float".into(),
            },
        ];
        let bytes = "CONCAT_WS(0x1f, CAST(`id` AS BINARY), CAST(CAST(`f` AS DOUBLE) AS BINARY), \
                     CONCAT(ISNULL(`id`), ISNULL(`f`)))";
        assert_eq!(
            row_hash(RowHash::Md5, &cols),
            format!("CAST(CONV(LEFT(MD5({bytes}), 16), 16, 10) AS UNSIGNED)")
        );
        assert_eq!(
            row_hash(RowHash::Crc, &cols),
            format!("(CRC32({bytes}) | (CRC32C({bytes}) << 32))")
        );
    }

    #[test]
    fn chunks_are_cut_by_value_only_for_one_integer_key() {
        let t = |key: &[&str], ty: &str| TableInfo {
            database: "d".into(),
            table: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    data_type: ty.into(),
                },
                Column {
                    name: "b".into(),
                    data_type: "int".into(),
                },
            ],
            key: key.iter().map(|k| k.to_string()).collect(),
        };
        assert!(integer_key(&t(&["id"], "bigint")));
        assert!(!integer_key(&t(&["id"], "varchar")));
        assert!(!integer_key(&t(&["id", "b"], "int")));
        assert!(!integer_key(&t(&[], "int")));
    }
}
