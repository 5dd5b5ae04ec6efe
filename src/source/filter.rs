//! Which databases and tables are replicated: `--include` / `--exclude`
//! globs of the form `db` or `db.table` (like MySQL's
//! `replicate-wild-do-table`), and the server's own schemas, which are never
//! replicated.
//!
//! An object is replicated when it matches an include pattern (or there
//! are none) and matches no exclude pattern. A `db` pattern covers every
//! table of the database.

use crate::log::change::{Change, Ddl, Transaction};
use crate::source::statement_target::{self, Target};

/// The database `rowcast checksum` writes its chunk results to on the
/// primary and reads them back from on the slaves: always replicated,
/// whatever the filter excludes.
pub const CHECKSUM_DB: &str = "rowcast_checksum";

/// Schemas that belong to the server or to rowcast itself.
pub const SYSTEM_SCHEMAS: &[&str] = &[
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "rowcast",
];

#[derive(Debug, thiserror::Error)]
#[error("bad filter pattern `{0}`: use `db` or `db.table`, with * and ? as wildcards")]
pub struct FilterError(String);

#[derive(Debug, Clone)]
struct Pattern {
    db: String,
    table: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

fn parse(p: &str) -> Result<Pattern, FilterError> {
    let (db, table) = match p.split_once('.') {
        Some((d, t)) => (d, Some(t)),
        None => (p, None),
    };
    if db.is_empty() || table.is_some_and(|t| t.is_empty() || t.contains('.')) {
        return Err(FilterError(p.to_string()));
    }
    Ok(Pattern {
        db: db.to_string(),
        table: table.map(str::to_string),
    })
}

/// `*` matches any run of characters, `?` one character (also `%` and `_`,
/// as in MySQL's wild patterns).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == '_' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
        pi += 1;
    }
    pi == p.len()
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, FilterError> {
        Ok(Filter {
            include: include.iter().map(|p| parse(p)).collect::<Result<_, _>>()?,
            exclude: exclude.iter().map(|p| parse(p)).collect::<Result<_, _>>()?,
        })
    }

    pub fn is_system(db: &str) -> bool {
        SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(db))
    }

    /// Whether anything of database `db` is replicated (for database DDL
    /// and for creating the database in a snapshot).
    pub fn database_included(&self, db: &str) -> bool {
        if Self::is_system(db) {
            return false;
        }
        if db == CHECKSUM_DB {
            return true;
        }
        let included = self.include.is_empty() || self.include.iter().any(|p| glob(&p.db, db));
        let excluded = self
            .exclude
            .iter()
            .any(|p| p.table.is_none() && glob(&p.db, db));
        included && !excluded
    }

    pub fn table_included(&self, db: &str, table: &str) -> bool {
        if Self::is_system(db) {
            return false;
        }
        // `rowcast checksum` talks to the slaves through this table.
        if db == CHECKSUM_DB {
            return true;
        }
        let matches =
            |p: &Pattern| glob(&p.db, db) && p.table.as_deref().is_none_or(|t| glob(t, table));
        (self.include.is_empty() || self.include.iter().any(matches))
            && !self.exclude.iter().any(matches)
    }
}

impl Filter {
    /// Drops the changes of `txn` that are not replicated. The transaction
    /// itself stays, even if empty, so checkpoints still move past it.
    pub fn retain(&self, txn: &mut Transaction) {
        let tables = &txn.tables;
        let position = &txn.position;
        let keep: Vec<bool> = txn
            .changes
            .iter()
            .map(|c| match c {
                Change::Insert { table, .. }
                | Change::Update { table, .. }
                | Change::Delete { table, .. }
                | Change::PartialImage { table, .. } => {
                    let t = &tables[*table as usize];
                    self.table_included(&t.database, &t.name)
                }
                Change::Ddl(ddl) => {
                    let keep = self.ddl_included(ddl);
                    if !keep {
                        tracing::info!(%position, sql = %ddl.sql_text(), "statement not replicated (filtered)");
                    }
                    keep
                }
            })
            .collect();
        let mut flags = keep.iter();
        txn.changes.retain(|_| *flags.next().unwrap_or(&true));
        // The raw events stay aligned with the changes they belong to.
        if let Some(events) = &mut txn.events {
            let mut flags = keep.iter();
            events.rows.retain(|_| *flags.next().unwrap_or(&true));
        }
    }

    pub fn ddl_included(&self, ddl: &Ddl) -> bool {
        match statement_target::target(&ddl.sql_text()) {
            Target::Database(d) => self.database_included(&d),
            Target::Tables(list) => {
                list.iter()
                    .any(|(db, t)| match db.as_deref().or(ddl.database.as_deref()) {
                        Some(d) => self.table_included(d, t),
                        None => true,
                    })
            }
            Target::NotReplicated(_) => false,
            Target::Unknown => ddl
                .database
                .as_deref()
                .is_none_or(|d| self.database_included(d)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(db: Option<&str>, sql: &str) -> Ddl {
        Ddl {
            database: db.map(str::to_string),
            sql: sql.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn ddl_follows_the_filter() {
        let f = Filter::new(&["shop".into()], &["shop.secret".into()]).unwrap();
        assert!(f.ddl_included(&ddl(None, "CREATE DATABASE shop")));
        assert!(!f.ddl_included(&ddl(None, "CREATE DATABASE other")));
        assert!(f.ddl_included(&ddl(Some("shop"), "CREATE TABLE t (a INT)")));
        assert!(!f.ddl_included(&ddl(Some("shop"), "CREATE TABLE secret (a INT)")));
        assert!(!f.ddl_included(&ddl(Some("other"), "ALTER TABLE t ADD b INT")));
        assert!(f.ddl_included(&ddl(Some("other"), "ALTER TABLE shop.t ADD b INT")));
        assert!(!f.ddl_included(&ddl(Some("shop"), "GRANT ALL ON shop.* TO u")));
        assert!(!f.ddl_included(&ddl(
            Some("mysql"),
            "CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET @a=1"
        )));
    }

    #[test]
    fn filtered_changes_take_their_raw_events_with_them() {
        use crate::log::change::{RowEvents, TableSchema};
        use crate::source::position::SourcePosition;
        let table = |db: &str| TableSchema {
            database: db.into(),
            name: "t".into(),
            columns: Vec::new(),
            primary_key: Vec::new(),
        };
        let insert = |table| Change::Insert {
            table,
            rows: Vec::new(),
        };
        let mut txn = Transaction {
            position: SourcePosition::new("binlog.000001", 4),
            timestamp: 0,
            part: 0,
            more: false,
            tables: vec![table("shop"), table("other")],
            changes: vec![
                insert(1),
                insert(0),
                Change::PartialImage { table: 1, rows: 1 },
                Change::PartialImage { table: 0, rows: 2 },
            ],
            events: Some(RowEvents {
                format: Vec::new(),
                crc32: true,
                table_maps: vec![b"map shop".to_vec(), b"map other".to_vec()],
                rows: vec![
                    vec![b"other 1".to_vec()],
                    vec![b"shop 1".to_vec()],
                    vec![b"other 2".to_vec()],
                    vec![b"shop 2".to_vec()],
                ],
            }),
            xa: None,
        };
        Filter::new(&["shop".into()], &[]).unwrap().retain(&mut txn);
        assert_eq!(
            txn.changes,
            vec![insert(0), Change::PartialImage { table: 0, rows: 2 }]
        );
        assert_eq!(
            txn.events.unwrap().rows,
            vec![vec![b"shop 1".to_vec()], vec![b"shop 2".to_vec()]]
        );
    }

    #[test]
    fn globs() {
        assert!(glob("shop", "shop"));
        assert!(glob("sh*", "shop"));
        assert!(glob("s?op", "shop"));
        assert!(glob("s%p", "shop"));
        assert!(glob("*", ""));
        assert!(!glob("shop", "shops"));
        assert!(glob("*_log", "a_log"));
        assert!(!glob("a*c", "abd"));
    }

    #[test]
    fn include_and_exclude() {
        let f = Filter::new(&["shop".into(), "crm.cust*".into()], &["shop.tmp_*".into()]).unwrap();
        assert!(f.table_included("shop", "items"));
        assert!(!f.table_included("shop", "tmp_x"));
        assert!(f.table_included("crm", "customers"));
        assert!(!f.table_included("crm", "leads"));
        assert!(f.database_included("crm"));
        assert!(!f.database_included("other"));
        let all = Filter::default();
        assert!(all.table_included("x", "y"));
        assert!(!all.table_included("mysql", "user"));
        assert!(!all.database_included("rowcast"));
        let no_db = Filter::new(&[], &["secret".into()]).unwrap();
        assert!(!no_db.database_included("secret"));
        assert!(!no_db.table_included("secret", "t"));
        assert!(Filter::new(&["a.b.c".into()], &[]).is_err());
        assert!(Filter::new(&[".t".into()], &[]).is_err());
    }
}
