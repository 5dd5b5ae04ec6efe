//! A fingerprint of the part of the replica's catalog a statement can
//! change: the schemas it names (or its default database), with their
//! tables, columns, indexes, constraints, partitions, views, routines,
//! triggers and events.
//!
//! The applier stores it with the pending-DDL marker before running a
//! statement. After a crash the statement runs again; if it then fails
//! with an "already exists"/"does not exist" error, the catalog tells why:
//! changed since the marker, the first run had taken effect (the slave is
//! the replica's only writer); unchanged, the statement fails for real.
//!
//! Row counts, AUTO_INCREMENT and update times are left out: rows applied
//! around the statement must not move the fingerprint.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::log::change::Ddl;
use crate::source::statement_target::{self, Target};

/// Schemas the replica's server and rowcast own.
const SYSTEM_SCHEMAS: &str = "'mysql','information_schema','performance_schema','sys','rowcast'";

/// The schemas `ddl` can change; `None` when it cannot be told (a trigger
/// or routine statement without a default database), meaning all of them.
pub fn schemas(ddl: &Ddl) -> Option<Vec<String>> {
    let mut out: Vec<String> = match statement_target::target(&ddl.sql_text()) {
        Target::Database(d) => vec![d],
        Target::Tables(names) => names
            .into_iter()
            .filter_map(|(db, _)| db.or_else(|| ddl.database.clone()))
            .collect(),
        Target::NotReplicated(_) | Target::Unknown => ddl.database.iter().cloned().collect(),
    };
    if let Some(db) = &ddl.database {
        out.push(db.clone());
    }
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// The SQL that computes the fingerprint of `schemas` (all user schemas
/// for `None`) as one hex string.
pub fn query(schemas: Option<&[String]>) -> String {
    let filter = |col: &str| match schemas {
        Some(list) => format!(
            "{col} IN ({})",
            list.iter()
                .map(|s| crate::sql::literal(s))
                .collect::<Vec<_>>()
                .join(",")
        ),
        None => format!("{col} NOT IN ({SYSTEM_SCHEMAS})"),
    };
    let parts = [
        format!("SELECT CONCAT_WS('|','S',SCHEMA_NAME,DEFAULT_CHARACTER_SET_NAME,DEFAULT_COLLATION_NAME) x FROM information_schema.SCHEMATA WHERE {}", filter("SCHEMA_NAME")),
        format!("SELECT CONCAT_WS('|','T',TABLE_SCHEMA,TABLE_NAME,TABLE_TYPE,IFNULL(ENGINE,'-'),IFNULL(TABLE_COLLATION,'-'),IFNULL(CREATE_OPTIONS,'-'),TABLE_COMMENT) FROM information_schema.TABLES WHERE {}", filter("TABLE_SCHEMA")),
        format!("SELECT CONCAT_WS('|','C',TABLE_SCHEMA,TABLE_NAME,COLUMN_NAME,ORDINAL_POSITION,COLUMN_TYPE,IS_NULLABLE,IFNULL(COLUMN_DEFAULT,'-'),EXTRA,IFNULL(COLLATION_NAME,'-'),COLUMN_COMMENT) FROM information_schema.COLUMNS WHERE {}", filter("TABLE_SCHEMA")),
        format!("SELECT CONCAT_WS('|','I',TABLE_SCHEMA,TABLE_NAME,INDEX_NAME,SEQ_IN_INDEX,IFNULL(COLUMN_NAME,'-'),NON_UNIQUE,INDEX_TYPE) FROM information_schema.STATISTICS WHERE {}", filter("TABLE_SCHEMA")),
        format!("SELECT CONCAT_WS('|','K',CONSTRAINT_SCHEMA,TABLE_NAME,CONSTRAINT_NAME,CONSTRAINT_TYPE) FROM information_schema.TABLE_CONSTRAINTS WHERE {}", filter("CONSTRAINT_SCHEMA")),
        format!("SELECT CONCAT_WS('|','P',TABLE_SCHEMA,TABLE_NAME,PARTITION_NAME,IFNULL(SUBPARTITION_NAME,'-'),IFNULL(PARTITION_DESCRIPTION,'-')) FROM information_schema.PARTITIONS WHERE PARTITION_NAME IS NOT NULL AND {}", filter("TABLE_SCHEMA")),
        format!("SELECT CONCAT_WS('|','V',TABLE_SCHEMA,TABLE_NAME,VIEW_DEFINITION) FROM information_schema.VIEWS WHERE {}", filter("TABLE_SCHEMA")),
        format!("SELECT CONCAT_WS('|','R',ROUTINE_SCHEMA,ROUTINE_NAME,ROUTINE_TYPE,LAST_ALTERED) FROM information_schema.ROUTINES WHERE {}", filter("ROUTINE_SCHEMA")),
        format!("SELECT CONCAT_WS('|','G',TRIGGER_SCHEMA,TRIGGER_NAME,EVENT_OBJECT_TABLE,ACTION_TIMING,EVENT_MANIPULATION,IFNULL(CREATED,'-')) FROM information_schema.TRIGGERS WHERE {}", filter("TRIGGER_SCHEMA")),
        format!("SELECT CONCAT_WS('|','E',EVENT_SCHEMA,EVENT_NAME,LAST_ALTERED,STATUS) FROM information_schema.EVENTS WHERE {}", filter("EVENT_SCHEMA")),
    ];
    format!(
        "SELECT IFNULL(SHA2(GROUP_CONCAT(x ORDER BY x SEPARATOR '\\n'), 256), 'empty') FROM ({}) f",
        parts.join(" UNION ALL ")
    )
}

/// Computes the fingerprint of what `ddl` can change on `conn`.
pub async fn compute(conn: &mut Conn, ddl: &Ddl) -> Result<String, mysql_async::Error> {
    let schemas = schemas(ddl);
    // GROUP_CONCAT cuts at this length, and a cut list would hide changes.
    conn.query_drop("SET SESSION group_concat_max_len = 1073741824")
        .await?;
    let fp: Option<String> = conn.query_first(query(schemas.as_deref())).await?;
    Ok(fp.unwrap_or_default())
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
    fn covers_the_schemas_a_statement_names_and_its_default() {
        assert_eq!(
            schemas(&ddl(Some("a"), "RENAME TABLE t TO b.u")),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            schemas(&ddl(None, "DROP DATABASE IF EXISTS never_there")),
            Some(vec!["never_there".into()])
        );
        assert_eq!(
            schemas(&ddl(
                Some("a"),
                "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @x=1"
            )),
            Some(vec!["a".into()])
        );
        assert_eq!(schemas(&ddl(None, "CREATE PROCEDURE p() SELECT 1")), None);
        assert!(query(None).contains("NOT IN ('mysql'"));
        assert!(query(Some(&["it's".into()])).contains("IN ('it''s')"));
    }
}
