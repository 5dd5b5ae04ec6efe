//! What the replica's catalog says about its copy of a replicated table,
//! read in one place: the columns it generates itself, its type, its
//! triggers, the foreign keys it is in, its columns and its primary key,
//! and which of its columns are MySQL JSON.
//!
//! The applier reads a table's facts when it builds the table's plan
//! (`rows.rs`: at the table's first change, when the binlog's description
//! of it changes, and after any DDL, which drops every plan), and the plan
//! keeps what they decide: which columns its statements write, whether its
//! rows go through the replica's row-event applier ([`TableFacts::native`])
//! and whether a batch may write them as a net effect
//! ([`TableFacts::net_ok`]).

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::log::change::{ColumnKind, TableSchema};

/// The replica's description of one table, as its `information_schema`
/// gave it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct TableFacts {
    /// Columns the replica computes itself (virtual or stored generated),
    /// which statements never write nor use to find a row. A versioned
    /// table's declared row start and end are not among them: a snapshot
    /// writes them when it loads the table's history.
    pub generated: HashSet<String>,
    /// Columns of MySQL's JSON type (MariaDB's JSON is LONGTEXT and never
    /// shows here), whose values statements bind as utf8mb4 text: MySQL
    /// refuses a JSON value in the session's `binary` charset (error
    /// 3144).
    pub json: HashSet<String>,
    /// `TABLE_TYPE` (`BASE TABLE`, `VIEW`, `SYSTEM VERSIONED`, `SEQUENCE`);
    /// `None` when the replica has no such table.
    pub kind: Option<String>,
    /// Triggers on the table.
    pub triggers: u64,
    /// Foreign keys of the table, or naming it as their parent.
    pub foreign_keys: u64,
    /// The column names in order, each followed by `\n` but the last (as
    /// GROUP_CONCAT gives them, so cut at `group_concat_max_len`: a cut
    /// list differs from the source's and only costs the net effect).
    pub columns: Option<Vec<u8>>,
    /// The primary key's column names in key order, joined as `columns`.
    pub primary_key: Option<Vec<u8>>,
}

impl TableFacts {
    /// Reads the facts of `database`.`table` from the replica's catalog.
    pub async fn read(
        conn: &mut Conn,
        database: &str,
        table: &str,
    ) -> Result<TableFacts, mysql_async::Error> {
        let (db, t) = (database, table);
        // MariaDB leaves GENERATION_EXPRESSION NULL for ordinary columns,
        // MySQL leaves it empty. A versioned table's declared row start and
        // end are written when a snapshot loads its history.
        let columns: Vec<(Vec<u8>, bool, bool)> = conn
            .exec(
                "SELECT COLUMN_NAME, \
                   COALESCE(GENERATION_EXPRESSION <> '' \
                     AND GENERATION_EXPRESSION NOT IN ('ROW START', 'ROW END'), 0), \
                   DATA_TYPE = 'json' \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, t),
            )
            .await?;
        let (mut generated, mut json) = (HashSet::new(), HashSet::new());
        for (name, is_generated, is_json) in columns {
            let name = String::from_utf8_lossy(&name).into_owned();
            if is_json {
                json.insert(name.clone());
            }
            if is_generated {
                generated.insert(name);
            }
        }
        type Row = (u64, u64, Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);
        let row: Option<Row> = conn
            .exec_first(
                "SELECT \
                   (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?), \
                   (SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS \
                      WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?)), \
                   (SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?), \
                   (SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR '\\n') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?), \
                   (SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR '\\n') FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY')",
                (db, t, db, t, db, t, db, t, db, t, db, t),
            )
            .await?;
        // Scalar subqueries always give one row; without one, nothing is
        // known, which reads as "no such table".
        let (triggers, foreign_keys, kind, columns, primary_key) =
            row.unwrap_or((0, 0, None, None, None));
        Ok(TableFacts {
            generated,
            json,
            kind,
            triggers,
            foreign_keys,
            columns,
            primary_key,
        })
    }

    pub fn exists(&self) -> bool {
        self.kind.is_some()
    }

    /// The table's rows need the replica's own row-event applier
    /// (`replay.rs`), because statements cannot reproduce them: it has
    /// triggers, is in a foreign key, is not a base table (a view, or
    /// system-versioned), or `source` (the primary's table) has no primary
    /// key. A table the replica lacks is not native: its statements fail
    /// and name it.
    ///
    /// One exception: a MariaDB row-event applier cannot read MySQL's
    /// binary JSON (column type 245; MariaDB's JSON is LONGTEXT and a
    /// native MariaDB replica of MySQL stops there). A table that needs
    /// the row-event applier only for want of a primary key then takes
    /// statements, which find a keyless row by all its values as well
    /// (`LIMIT 1`); with triggers or foreign keys it stays native and the
    /// server's refusal is reported.
    pub fn native(&self, source: &TableSchema) -> bool {
        let keeps_semantics = self.triggers > 0
            || self.foreign_keys > 0
            || self.kind.as_deref() != Some("BASE TABLE");
        self.exists()
            && (keeps_semantics || (source.primary_key.is_empty() && !self.unreadable_json(source)))
    }

    /// `source` has a MySQL binary JSON column that the replica does not
    /// hold as MySQL JSON.
    fn unreadable_json(&self, source: &TableSchema) -> bool {
        source
            .columns
            .iter()
            .any(|c| c.kind == ColumnKind::Json && !self.json.contains(&c.name))
    }

    /// A batch may write the table's rows as their net effect (delete and
    /// re-insert, `net_effect.rs`): only for a plain copy of `source`, the
    /// primary's table. No triggers (they would see DELETE+INSERT instead
    /// of UPDATE), a base table (a system-versioned one's history would
    /// differ), no foreign keys (a re-inserted parent is not an updated
    /// one), the same columns (replica-only defaults would be reset) and
    /// the same primary key.
    pub fn net_ok(&self, source: &TableSchema) -> bool {
        let names = |idx: &mut dyn Iterator<Item = usize>| -> Vec<u8> {
            idx.map(|i| source.columns[i].name.as_bytes().to_vec())
                .collect::<Vec<_>>()
                .join(&b'\n')
        };
        let source_columns = names(&mut (0..source.columns.len()));
        let source_key = names(&mut source.primary_key.iter().map(|&i| i as usize));
        // (A keyless row has no identity to net out by.)
        !self.native(source)
            && !source.primary_key.is_empty()
            && self.columns.as_deref() == Some(&source_columns[..])
            && self.primary_key.as_deref() == Some(&source_key[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(primary_key: Vec<u32>) -> TableSchema {
        TableSchema::of_ints("t", &["id", "v"], primary_key)
    }

    /// The replica's plain copy of `source(vec![0])`.
    fn copy() -> TableFacts {
        TableFacts {
            kind: Some("BASE TABLE".into()),
            columns: Some(b"id\nv".to_vec()),
            primary_key: Some(b"id".to_vec()),
            ..TableFacts::default()
        }
    }

    #[test]
    fn a_plain_copy_takes_statements_and_the_net_effect() {
        let t = source(vec![0]);
        assert!(!copy().native(&t));
        assert!(copy().net_ok(&t));
    }

    #[test]
    fn a_keyless_table_with_mysql_json_takes_statements_on_mariadb() {
        let mut t = source(vec![]);
        t.columns[1].kind = ColumnKind::Json;
        // MariaDB: its JSON is LONGTEXT, so not in `json`.
        let keyless = TableFacts {
            primary_key: Some(Vec::new()),
            ..copy()
        };
        assert!(!keyless.native(&t));
        assert!(!keyless.net_ok(&t));
        let with_trigger = TableFacts {
            triggers: 1,
            ..copy()
        };
        assert!(with_trigger.native(&t));
        // A MySQL replica reads its own JSON natively.
        let mysql = TableFacts {
            json: ["v".to_string()].into(),
            ..copy()
        };
        assert!(mysql.native(&t));
    }

    #[test]
    fn triggers_foreign_keys_other_types_and_no_key_go_native() {
        let t = source(vec![0]);
        let cases = [
            TableFacts {
                triggers: 1,
                ..copy()
            },
            TableFacts {
                foreign_keys: 2,
                ..copy()
            },
            TableFacts {
                kind: Some("SYSTEM VERSIONED".into()),
                ..copy()
            },
            TableFacts {
                kind: Some("VIEW".into()),
                ..copy()
            },
        ];
        for facts in cases {
            assert!(facts.native(&t), "{facts:?}");
            assert!(!facts.net_ok(&t), "{facts:?}");
        }
        let keyless = source(vec![]);
        let facts = TableFacts {
            primary_key: None,
            ..copy()
        };
        assert!(facts.native(&keyless));
        assert!(!facts.net_ok(&keyless));
    }

    #[test]
    fn other_columns_or_key_on_the_replica_keep_statements_only() {
        let t = source(vec![0]);
        let cases = [
            TableFacts {
                columns: Some(b"id\nv\nextra".to_vec()),
                ..copy()
            },
            TableFacts {
                columns: Some(b"v\nid".to_vec()),
                ..copy()
            },
            TableFacts {
                primary_key: Some(b"id\nv".to_vec()),
                ..copy()
            },
            TableFacts {
                primary_key: None,
                ..copy()
            },
        ];
        for facts in cases {
            assert!(!facts.native(&t), "{facts:?}");
            assert!(!facts.net_ok(&t), "{facts:?}");
        }
    }

    #[test]
    fn a_missing_table_is_neither_native_nor_net() {
        let t = source(vec![]);
        let none = TableFacts::default();
        assert!(!none.exists());
        assert!(!none.native(&t), "its statements fail and name it");
        assert!(!none.net_ok(&t));
    }
}
