//! How the slave runs a statement the primary logged as text: the session
//! context to set around it (from the query event's status variables, as a
//! native replica's SQL thread does) and how to judge its outcome against
//! the error the primary logged it with.
//!
//! Pure: it builds SQL text and decides; `ddl_apply` runs it.

use crate::log::change::Ddl;
use crate::source::statement_target::{self, Target};

/// `Q_FLAGS2` option bits (the servers' `OPTIONS_WRITTEN_TO_BIN_LOG`).
const OPTION_AUTO_IS_NULL: u32 = 1 << 14;
const OPTION_NO_FOREIGN_KEY_CHECKS: u32 = 1 << 26;
const OPTION_RELAXED_UNIQUE_CHECKS: u32 = 1 << 27;
/// MariaDB 10.5+: `sql_if_exists`.
const OPTION_IF_EXISTS: u32 = 1 << 28;

/// "Unknown table", "Unknown SEQUENCE", "Unknown VIEW": what a DROP of a
/// list answers for the names it did not find, after dropping the others.
const UNKNOWN_OBJECT: &[u16] = &[1051, 4091, 4092];

/// Errors that a statement run a second time gives when its first run had
/// taken effect (the catalog then tells whether it had).
pub const ALREADY_APPLIED: &[u16] = &[
    1007, // database exists
    1008, // database doesn't exist
    1050, // table exists
    1051, // unknown table
    1060, // duplicate column
    1061, // duplicate key name
    1091, // can't drop: doesn't exist
    1146, // table doesn't exist
    1304, // routine exists
    1305, // routine doesn't exist
    1359, // trigger exists
    1360, // trigger doesn't exist
    1537, // event exists
    1539, // unknown event
    1826, // duplicate foreign key constraint name
    4091, // unknown SEQUENCE
    4092, // unknown VIEW
];

/// What the replica server understands of a primary's session context: a
/// MySQL 8 primary logs collation ids and a variable MariaDB does not have.
#[derive(Debug, Clone, Default)]
pub struct ReplicaDialect {
    pub mariadb: bool,
    /// The replica's collations, by name.
    pub collations: std::collections::HashMap<String, u16>,
}

/// MySQL 8's generic utf8mb4 UCA 9.0.0 collations (`utf8mb4_0900_*`, the
/// MySQL 8 default is 255), which MariaDB lacks, and the MariaDB ones
/// closest to each, best first (UCA 14.0.0 since MariaDB 10.10).
const MYSQL_0900: &[(u16, &str, &[&str])] = &[
    (
        255,
        "utf8mb4_0900_ai_ci",
        &["utf8mb4_uca1400_ai_ci", "utf8mb4_unicode_520_ci"],
    ),
    (
        278,
        "utf8mb4_0900_as_cs",
        &["utf8mb4_uca1400_as_cs", "utf8mb4_bin"],
    ),
    (
        305,
        "utf8mb4_0900_as_ci",
        &["utf8mb4_uca1400_as_ci", "utf8mb4_unicode_520_ci"],
    ),
    (309, "utf8mb4_0900_bin", &["utf8mb4_bin"]),
];

impl ReplicaDialect {
    /// The replica's collation id for the primary's `id`: the same one
    /// when the replica has it, else for a MySQL 8 utf8mb4_0900 collation
    /// the nearest the replica has (a native MariaDB replica of MySQL 8
    /// stops there instead).
    pub fn collation(&self, id: u16) -> Result<u16, String> {
        if self.collations.is_empty() || self.collations.values().any(|&c| c == id) {
            return Ok(id);
        }
        if let Some((_, name, nearest)) = MYSQL_0900.iter().find(|(c, ..)| *c == id) {
            if let Some(&replica) = nearest.iter().find_map(|n| self.collations.get(*n)) {
                return Ok(replica);
            }
            return Err(format!(
                "the primary's collation {name} (id {id}) has no counterpart on the replica"
            ));
        }
        Err(format!(
            "the primary's collation id {id} does not exist on the replica{}",
            if (255..=323).contains(&id) {
                " (it is one of MySQL 8's utf8mb4_0900 language collations, which MariaDB does not have)"
            } else {
                ""
            }
        ))
    }
}

impl ReplicaDialect {
    /// The replica's name for a collation the primary names, when the
    /// replica lacks it and has a counterpart (MySQL 8's utf8mb4_0900_*
    /// on MariaDB); `None`: keep the name.
    pub fn collation_name(&self, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if self.collations.is_empty() || self.collations.contains_key(&lower) {
            return None;
        }
        let (_, _, nearest) = MYSQL_0900.iter().find(|(_, n, _)| *n == lower)?;
        nearest
            .iter()
            .find(|n| self.collations.contains_key(**n))
            .map(|n| n.to_string())
    }

    /// `sql` with MySQL 8's utf8mb4_0900 collation names (which MySQL 8's
    /// SHOW CREATE always writes, e.g. `COLLATE=utf8mb4_0900_ai_ci`)
    /// renamed to the replica's counterparts, outside strings and quoted
    /// names; unchanged on a replica that has them.
    pub fn translate<'a>(&self, sql: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !self.mariadb {
            return std::borrow::Cow::Borrowed(sql);
        }
        crate::source::objects::rename_words(sql, |w| {
            w.get(..12)
                .is_some_and(|p| p.eq_ignore_ascii_case("utf8mb4_0900"))
                .then(|| self.collation_name(w))
                .flatten()
        })
    }
}

/// The `SET SESSION` assignments that give the apply session the
/// primary's context for `ddl`. A variable the primary did not log takes
/// the value a native replica gives it: the replica's default for the time
/// zone, `en_US`, auto-increment 1/1. Collations the replica lacks are
/// translated ([`ReplicaDialect::collation`]); the error names one that
/// cannot be.
pub fn context(ddl: &Ddl, dialect: &ReplicaDialect) -> Result<Vec<String>, String> {
    let mut set = Vec::new();
    if let Some(mode) = ddl.sql_mode {
        set.push(format!("sql_mode={mode}"));
    }
    if let Some((client, conn, server)) = ddl.charset {
        let (conn, server) = (dialect.collation(conn)?, dialect.collation(server)?);
        set.push(format!(
            "character_set_client={}, collation_connection={conn}, collation_server={server}",
            dialect.collation(client)?
        ));
    }
    if let Some(db) = ddl.collation_database {
        set.push(format!("collation_database={}", dialect.collation(db)?));
    }
    match &ddl.time_zone {
        Some(tz) => set.push(format!("time_zone={}", literal(tz))),
        None => set.push("time_zone=DEFAULT".into()),
    }
    if let Some(secs) = ddl.timestamp {
        set.push(format!(
            "timestamp={secs}.{:06}",
            ddl.timestamp_micros.unwrap_or(0)
        ));
    }
    if let Some(flags) = ddl.flags2 {
        let on = |bit: u32| u8::from(flags & bit != 0);
        set.push(format!(
            "foreign_key_checks={}, unique_checks={}, sql_auto_is_null={}",
            1 - on(OPTION_NO_FOREIGN_KEY_CHECKS),
            1 - on(OPTION_RELAXED_UNIQUE_CHECKS),
            on(OPTION_AUTO_IS_NULL),
        ));
        if flags & OPTION_IF_EXISTS != 0 {
            set.push("sql_if_exists=1".into());
        }
    }
    let (increment, offset) = ddl.auto_increment.unwrap_or((1, 1));
    set.push(format!(
        "auto_increment_increment={increment}, auto_increment_offset={offset}"
    ));
    set.push(format!("lc_time_names={}", ddl.lc_time_names.unwrap_or(0)));
    if let Some(on) = ddl.explicit_defaults_for_timestamp {
        set.push(format!("explicit_defaults_for_timestamp={}", u8::from(on)));
    }
    // MySQL only (MariaDB has no such variable; its utf8mb4 default
    // stays its own).
    if let (Some(c), false) = (ddl.default_collation_for_utf8mb4, dialect.mariadb) {
        set.push(format!("default_collation_for_utf8mb4={c}"));
    }
    Ok(set)
}

/// What puts back the session variables [`context`] set that the apply
/// session's own setup does not set again.
pub fn restore(ddl: &Ddl, dialect: &ReplicaDialect) -> Vec<String> {
    let mut set: Vec<String> = [
        "timestamp",
        "collation_server",
        "collation_database",
        "unique_checks",
        "sql_auto_is_null",
        "auto_increment_increment",
        "auto_increment_offset",
        "lc_time_names",
    ]
    .iter()
    .map(|v| format!("{v}=DEFAULT"))
    .collect();
    if ddl.flags2.is_some_and(|f| f & OPTION_IF_EXISTS != 0) {
        set.push("sql_if_exists=DEFAULT".into());
    }
    if ddl.explicit_defaults_for_timestamp.is_some() {
        set.push("explicit_defaults_for_timestamp=DEFAULT".into());
    }
    if ddl.default_collation_for_utf8mb4.is_some() && !dialect.mariadb {
        set.push("default_collation_for_utf8mb4=DEFAULT".into());
    }
    set
}

/// How a statement's run on the replica compares with its run on the
/// primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It succeeded, as on the primary.
    Done,
    /// It failed with the error the primary logged it with (it partly
    /// failed there too): the replica did what the primary did.
    SameError,
    /// A DROP of a list found some names on one side only. Either way
    /// none of the listed objects exists afterwards, on both sides.
    DroppedListed,
    /// A retry after a restart failed because its first run, before the
    /// crash, had taken effect.
    AppliedBeforeRestart,
    /// A real failure: the replica differs from the primary.
    Differs,
}

/// Whether a retry's error could come from the statement's own first run,
/// so the catalog is worth a look.
pub fn may_have_been_applied(actual: u16) -> bool {
    ALREADY_APPLIED.contains(&actual)
}

/// Judges a run that ended with `actual` (0 for success). `catalog_moved`
/// is set on a retry after a restart when the affected catalog differs
/// from what it was before the statement's first attempt.
pub fn verdict(ddl: &Ddl, actual: u16, catalog_moved: bool) -> Verdict {
    let expected = ddl.error_code;
    if actual == expected {
        return if actual == 0 {
            Verdict::Done
        } else {
            Verdict::SameError
        };
    }
    if catalog_moved && may_have_been_applied(actual) {
        return Verdict::AppliedBeforeRestart;
    }
    let unknown_or_ok = |c: u16| c == 0 || UNKNOWN_OBJECT.contains(&c);
    if unknown_or_ok(expected) && unknown_or_ok(actual) && is_drop_list(ddl) {
        return Verdict::DroppedListed;
    }
    Verdict::Differs
}

/// `DROP TABLE|VIEW|SEQUENCE a, b...` without IF EXISTS (MariaDB logs the
/// ones it rewrites with every name and error 0, whatever it found).
fn is_drop_list(ddl: &Ddl) -> bool {
    let text = ddl.sql_text();
    let mut words = text.split_whitespace().map(str::to_ascii_uppercase);
    if words.next().as_deref() != Some("DROP") {
        return false;
    }
    let mut kind = words.next();
    if kind.as_deref() == Some("TEMPORARY") {
        kind = words.next();
    }
    matches!(
        kind.as_deref(),
        Some("TABLE" | "TABLES" | "VIEW" | "SEQUENCE")
    ) && matches!(statement_target::target(&text), Target::Tables(_))
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    crate::sql::literal(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(sql: &str, error_code: u16) -> Ddl {
        Ddl {
            sql: sql.as_bytes().to_vec(),
            error_code,
            ..Default::default()
        }
    }

    #[test]
    fn sets_the_primarys_context_and_what_native_replicas_default_to() {
        let d = Ddl {
            sql_mode: Some(7),
            charset: Some((33, 33, 8)),
            time_zone: Some("+05:00".into()),
            timestamp: Some(1_000_000_000),
            timestamp_micros: Some(42),
            flags2: Some(OPTION_NO_FOREIGN_KEY_CHECKS | OPTION_AUTO_IS_NULL),
            lc_time_names: Some(3),
            collation_database: Some(45),
            ..Default::default()
        };
        let set = context(&d, &ReplicaDialect::default()).unwrap().join(", ");
        for part in [
            "sql_mode=7",
            "character_set_client=33, collation_connection=33, collation_server=8",
            "collation_database=45",
            "time_zone='+05:00'",
            "timestamp=1000000000.000042",
            "foreign_key_checks=0, unique_checks=1, sql_auto_is_null=1",
            "auto_increment_increment=1, auto_increment_offset=1",
            "lc_time_names=3",
        ] {
            assert!(set.contains(part), "{part} missing from {set}");
        }
        assert!(!set.contains("sql_if_exists"));
        let bare = context(&Ddl::default(), &ReplicaDialect::default())
            .unwrap()
            .join(", ");
        assert!(bare.contains("time_zone=DEFAULT"), "{bare}");
        assert!(!bare.contains("timestamp="), "{bare}");
        assert_eq!(literal("a'b\\"), "X'6127625c'");
    }

    /// What MySQL 8.0.18+ logs for a DDL by default (utf8mb4_0900_ai_ci,
    /// `default_collation_for_utf8mb4`), on a MariaDB replica.
    #[test]
    fn a_mysql_8_context_is_translated_for_a_mariadb_replica() {
        let d = Ddl {
            charset: Some((255, 255, 255)),
            collation_database: Some(255),
            default_collation_for_utf8mb4: Some(255),
            ..Default::default()
        };
        let mariadb = |names: &[(&str, u16)]| ReplicaDialect {
            mariadb: true,
            collations: names.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
        };
        let uca = mariadb(&[
            ("utf8mb4_uca1400_ai_ci", 2304),
            ("utf8mb4_unicode_520_ci", 246),
            ("utf8mb4_bin", 46),
        ]);
        let set = context(&d, &uca).unwrap().join(", ");
        assert!(
            set.contains(
                "character_set_client=2304, collation_connection=2304, collation_server=2304"
            ) && set.contains("collation_database=2304"),
            "{set}"
        );
        assert!(!set.contains("default_collation_for_utf8mb4"), "{set}");
        assert!(!restore(&d, &uca)
            .join(",")
            .contains("default_collation_for_utf8mb4"));
        // Before MariaDB 10.10: the UCA 5.2.0 collation.
        let old = mariadb(&[("utf8mb4_unicode_520_ci", 246), ("utf8mb4_bin", 46)]);
        assert!(context(&d, &old)
            .unwrap()
            .join(",")
            .contains("collation_server=246"));
        // A MySQL 8 language collation MariaDB lacks is named.
        let de = Ddl {
            charset: Some((256, 256, 256)),
            ..Default::default()
        };
        let err = context(&de, &uca).unwrap_err();
        assert!(
            err.contains("id 256") && err.contains("language collations"),
            "{err}"
        );
        // A MySQL replica keeps all of it.
        let mysql = ReplicaDialect {
            mariadb: false,
            collations: [("utf8mb4_0900_ai_ci".to_string(), 255)].into(),
        };
        let set = context(&d, &mysql).unwrap().join(", ");
        assert!(
            set.contains("collation_server=255")
                && set.contains("default_collation_for_utf8mb4=255"),
            "{set}"
        );
    }

    #[test]
    fn mysql_8_collation_names_in_statement_text_are_renamed_for_mariadb() {
        let mariadb = ReplicaDialect {
            mariadb: true,
            collations: [
                ("utf8mb4_uca1400_ai_ci", 2304),
                ("utf8mb4_bin", 46),
                ("utf8mb4_general_ci", 45),
            ]
            .iter()
            .map(|(n, i)| (n.to_string(), *i))
            .collect(),
        };
        let show_create = b"CREATE TABLE `t` (`a` varchar(5) COLLATE utf8mb4_0900_bin DEFAULT 'utf8mb4_0900_ai_ci', \
            `utf8mb4_0900_ai_ci` int) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=UTF8MB4_0900_AI_CI /* utf8mb4_0900_ai_ci */";
        assert_eq!(
            String::from_utf8(mariadb.translate(show_create).into_owned()).unwrap(),
            "CREATE TABLE `t` (`a` varchar(5) COLLATE utf8mb4_bin DEFAULT 'utf8mb4_0900_ai_ci', \
            `utf8mb4_0900_ai_ci` int) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_uca1400_ai_ci /* utf8mb4_0900_ai_ci */"
        );
        // A language collation MariaDB lacks stays, for the server to name.
        assert_eq!(
            &mariadb.translate(b"COLLATE utf8mb4_de_pb_0900_ai_ci")[..],
            b"COLLATE utf8mb4_de_pb_0900_ai_ci"
        );
        assert_eq!(mariadb.collation_name("utf8mb4_general_ci"), None);
        let mysql = ReplicaDialect {
            mariadb: false,
            ..mariadb.clone()
        };
        assert_eq!(
            &mysql.translate(b"COLLATE=utf8mb4_0900_ai_ci")[..],
            b"COLLATE=utf8mb4_0900_ai_ci"
        );
    }

    #[test]
    fn a_statement_must_end_as_it_ended_on_the_primary() {
        assert_eq!(
            verdict(&ddl("CREATE TABLE t (a INT)", 0), 0, false),
            Verdict::Done
        );
        // MariaDB 10.11 logs a partial DROP VIEW verbatim with its error.
        let view = ddl("drop view v1, v_missing", 4092);
        assert_eq!(verdict(&view, 4092, false), Verdict::SameError);
        // ... and a partial DROP TABLE rewritten, with error 0.
        let table = ddl("DROP TABLE `missing_x`,`a` /* generated by server */", 0);
        assert_eq!(verdict(&table, 1051, false), Verdict::DroppedListed);
        assert_eq!(verdict(&view, 0, false), Verdict::DroppedListed);
        assert_eq!(
            verdict(
                &ddl("DROP SEQUENCE `s1`,`s2` /* generated by server */", 0),
                4091,
                false
            ),
            Verdict::DroppedListed
        );
        // A DROP refused for another reason is a real difference.
        assert_eq!(verdict(&table, 1451, false), Verdict::Differs);
        assert_eq!(
            verdict(&ddl("CREATE TABLE t (a INT)", 0), 1050, false),
            Verdict::Differs
        );
        // An error the primary logged but the replica did not get.
        assert_eq!(
            verdict(&ddl("ALTER TABLE t ADD c INT", 1060), 0, false),
            Verdict::Differs
        );
        assert_eq!(
            verdict(&ddl("DROP DATABASE d", 0), 1008, false),
            Verdict::Differs
        );
    }

    #[test]
    fn a_retry_is_taken_as_applied_only_when_the_catalog_moved() {
        let create = ddl("CREATE TABLE t (a INT)", 0);
        assert_eq!(verdict(&create, 1050, true), Verdict::AppliedBeforeRestart);
        assert_eq!(verdict(&create, 1050, false), Verdict::Differs);
        assert_eq!(verdict(&create, 1064, true), Verdict::Differs);
        assert!(may_have_been_applied(1146));
        assert!(!may_have_been_applied(1064));
    }
}
