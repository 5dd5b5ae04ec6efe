//! `rowcast show`: what a replica holds, and how fresh it is (the slave's
//! checkpoint).

use mysql_async::prelude::Queryable;
use mysql_async::Value as MyValue;

use crate::source::filter::Filter;
use crate::source::{Source, SourceError};
use crate::sql;

#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("query failed: {0}")]
    Query(String),
    #[error("`{0}` is not `db` or `db.table`")]
    Name(String),
}

/// A result ready to print: a freshness line and a table.
pub struct Shown {
    pub freshness: Vec<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn q(e: mysql_async::Error) -> ShowError {
    ShowError::Query(e.to_string())
}

fn text(v: &MyValue) -> String {
    match v {
        MyValue::NULL => "NULL".into(),
        MyValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.as_sql(true).trim_matches('\'').to_string(),
    }
}

pub async fn show(
    target: &Source,
    what: Option<&str>,
    limit: u64,
    where_: Option<&str>,
) -> Result<Shown, ShowError> {
    let mut conn = target.connect().await?;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
        .await
        .map_err(q)?;
    let cps: Vec<(String, String, u64, Option<String>, u64, String)> = conn
        .query(
            "SELECT slave_name, source_file, source_offset, source_gtid, source_time, \
             CAST(applied_at AS CHAR) FROM rowcast.checkpoint ORDER BY slave_name",
        )
        .await
        .unwrap_or_default();
    let mut freshness: Vec<String> = cps
        .iter()
        .map(|(name, file, off, gtid, t, at)| {
            let gtid = gtid.as_ref().map(|g| format!(" gtid {g}")).unwrap_or_default();
            format!(
                "as of source position {file}:{off}{gtid} (primary commit time {} UTC, applied {at} UTC) by slave `{name}`",
                crate::sql::civil_string(*t as i64)
            )
        })
        .collect();
    if freshness.is_empty() {
        freshness.push("no rowcast slave has written to this database yet".into());
    }
    // `--rewrite-db`: replica database -> the primary's name.
    let renamed: Vec<(String, String, String)> =
        crate::replica::rewrite_rules::stored_rules(&mut conn)
            .await
            .unwrap_or_default();
    let source_of = |db: &str| -> Option<String> {
        renamed
            .iter()
            .find(|(_, _, to)| to == db)
            .map(|(_, from, _)| from.clone())
    };
    for (slave, from, to) in &renamed {
        freshness.push(format!(
            "database `{to}` holds the primary's `{from}` (slave `{slave}`, --rewrite-db {from}={to})"
        ));
    }
    let (header, rows) = match what.map(|w| {
        w.split_once('.')
            .map(|(d, t)| (d, Some(t)))
            .unwrap_or((w, None))
    }) {
        None => {
            let dbs: Vec<(String, u64)> = conn
                .query(
                    "SELECT s.SCHEMA_NAME, COUNT(t.TABLE_NAME) FROM information_schema.SCHEMATA s \
                     LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME \
                     GROUP BY s.SCHEMA_NAME ORDER BY s.SCHEMA_NAME",
                )
                .await
                .map_err(q)?;
            let rows: Vec<Vec<String>> = dbs
                .into_iter()
                .filter(|(d, _)| !Filter::is_system(d))
                .map(|(d, n)| {
                    let source = source_of(&d).unwrap_or_else(|| d.clone());
                    vec![d, n.to_string(), source]
                })
                .collect();
            (
                vec!["DATABASE".into(), "TABLES".into(), "ON THE PRIMARY".into()],
                rows,
            )
        }
        Some((db, None)) => {
            let tables: Vec<(String, String)> = conn
                .exec(
                    "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
                    (db,),
                )
                .await
                .map_err(q)?;
            let mut rows = Vec::new();
            for (t, kind) in tables {
                let count: Option<u64> = conn
                    .query_first(format!("SELECT COUNT(*) FROM {}", sql::table(db, &t)))
                    .await
                    .map_err(q)?;
                rows.push(vec![t, kind.to_lowercase(), count.unwrap_or(0).to_string()]);
            }
            (vec!["TABLE".into(), "TYPE".into(), "ROWS".into()], rows)
        }
        Some((db, Some(t))) => {
            if t.is_empty() || db.is_empty() {
                return Err(ShowError::Name(what.unwrap_or("").into()));
            }
            let filter = where_.map(|w| format!(" WHERE {w}")).unwrap_or_default();
            let stmt = format!("SELECT * FROM {}{filter} LIMIT {limit}", sql::table(db, t));
            let mut result = conn.query_iter(stmt).await.map_err(q)?;
            let header = result
                .columns()
                .map(|cols| cols.iter().map(|c| c.name_str().into_owned()).collect())
                .unwrap_or_default();
            let rows: Vec<mysql_async::Row> = result.collect().await.map_err(q)?;
            let rows = rows
                .into_iter()
                .map(|r| r.unwrap().iter().map(text).collect())
                .collect();
            (header, rows)
        }
    };
    Ok(Shown {
        freshness,
        header,
        rows,
    })
}
