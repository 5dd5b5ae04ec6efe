//! The slave's own `rowcast` schema, created and upgraded from the SQL files
//! in `migrations/`, each applied once and recorded in
//! `rowcast.schema_version`.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Every migration in order; the number is its version.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../migrations/0001_checkpoint.sql")),
    (
        2,
        include_str!("../../migrations/0002_checksum_results.sql"),
    ),
    (3, include_str!("../../migrations/0003_source_epoch.sql")),
    (
        4,
        include_str!("../../migrations/0004_ddl_pending_fingerprint.sql"),
    ),
    (5, include_str!("../../migrations/0005_xa_resume.sql")),
    (6, include_str!("../../migrations/0006_seed.sql")),
    (7, include_str!("../../migrations/0007_skipped.sql")),
    (8, include_str!("../../migrations/0008_rewrite_db.sql")),
];

pub async fn run(conn: &mut Conn) -> Result<(), mysql_async::Error> {
    conn.query_drop("CREATE DATABASE IF NOT EXISTS rowcast")
        .await?;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS rowcast.schema_version (
           version INT UNSIGNED NOT NULL PRIMARY KEY,
           applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
         ) ENGINE=InnoDB",
    )
    .await?;
    let current: Option<u32> = conn
        .query_first("SELECT MAX(version) FROM rowcast.schema_version")
        .await?
        .flatten();
    for (version, sql) in MIGRATIONS {
        if current.is_some_and(|c| c >= *version) {
            continue;
        }
        for statement in statements(sql) {
            conn.query_drop(statement).await?;
        }
        conn.exec_drop(
            "INSERT INTO rowcast.schema_version (version) VALUES (?)",
            (version,),
        )
        .await?;
        tracing::info!(version, "applied rowcast schema migration");
    }
    Ok(())
}

/// Splits a migration file into statements: `;` at a line end separates
/// them, `--` lines are comments.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if t.starts_with("--") || t.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_splits_into_statements() {
        for (_, sql) in super::MIGRATIONS {
            let s = super::statements(sql);
            assert!(!s.is_empty());
            assert!(s.iter().all(|st| !st.ends_with(';')));
        }
    }
}
