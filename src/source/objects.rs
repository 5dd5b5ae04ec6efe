//! Stored objects beyond tables and views: triggers, stored procedures and
//! functions, events and sequences. How the snapshot finds them on the
//! primary, how the slave creates them, and how a replica's copy of an
//! event is kept from running.
//!
//! Each object is created with the session context it was defined under
//! (`sql_mode`, `character_set_client`, `collation_connection`, the
//! database collation and, for events, `time_zone`), as `mysqldump` and a
//! native replica's SQL thread do: its body is parsed on the replica as it
//! was on the primary, and `SHOW CREATE ...` shows the same context on
//! both. The definitions are read with `character_set_results=binary`
//! (the snapshot session's `NAMES binary`), which returns the original
//! bytes in the object's `character_set_client`.
//!
//! A replica never runs a replicated event: a native replica stores it as
//! `SLAVESIDE_DISABLED` (`DISABLE ON SLAVE`), and so does rowcast, both for
//! events in a snapshot and for `CREATE EVENT`/`ALTER EVENT` in the stream
//! ([`disabled_on_replica`]). The clause is written into the statement
//! itself rather than added by a later `ALTER EVENT`: the scheduler would
//! run a new event at once, before the ALTER, and an ALTER also rewrites
//! the event's stored context with the apply session's.
//!
//! Deliberately not here: tables and views (`snapshot.rs` reads them, the
//! applier creates them) and any ordering beyond what the applier needs
//! (routines before views, triggers after the rows: see
//! `Applier::snapshot_begin`).

use std::borrow::Cow;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::{Deserialize, Serialize};

use crate::source::filter::Filter;
use crate::sql;

/// What kind of stored object a [`StoredObject`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectKind {
    Procedure,
    Function,
    Trigger,
    Event,
}

impl ObjectKind {
    /// The word `SHOW CREATE` takes.
    pub fn keyword(self) -> &'static str {
        match self {
            ObjectKind::Procedure => "PROCEDURE",
            ObjectKind::Function => "FUNCTION",
            ObjectKind::Trigger => "TRIGGER",
            ObjectKind::Event => "EVENT",
        }
    }
}

/// The session settings an object was defined under, as `SHOW CREATE`
/// reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DefinitionContext {
    pub sql_mode: String,
    pub character_set_client: String,
    pub collation_connection: String,
    pub collation_database: String,
    /// Events only.
    pub time_zone: Option<String>,
}

/// A trigger, routine or event with its `CREATE` statement (definer
/// included) and the context to run it in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    pub database: String,
    pub name: String,
    pub kind: ObjectKind,
    pub create_sql: Vec<u8>,
    pub context: DefinitionContext,
}

/// A MariaDB sequence: its `CREATE SEQUENCE` and its state at the
/// snapshot position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceState {
    pub database: String,
    pub name: String,
    pub create_sql: Vec<u8>,
    pub next_not_cached_value: i64,
    pub cycle_count: i64,
}

/// Every stored object a snapshot copies besides tables and views.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredObjects {
    pub sequences: Vec<SequenceState>,
    pub routines: Vec<StoredObject>,
    /// In the order to create them: per table, per event and timing, by
    /// ACTION_ORDER, so several triggers of one kind keep their order.
    pub triggers: Vec<StoredObject>,
    pub events: Vec<StoredObject>,
}

impl StoredObjects {
    pub fn append(&mut self, other: StoredObjects) {
        self.sequences.extend(other.sequences);
        self.routines.extend(other.routines);
        self.triggers.extend(other.triggers);
        self.events.extend(other.events);
    }

    pub fn len(&self) -> usize {
        self.sequences.len() + self.routines.len() + self.triggers.len() + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn text(b: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&b.unwrap_or_default()).into_owned()
}

/// Reads the routines, triggers and events of database `db` that `filter`
/// admits, on a `NAMES binary` connection. Sequences come from
/// [`read_sequence`], called for each sequence the catalog lists.
pub async fn discover(
    conn: &mut Conn,
    db: &str,
    filter: &Filter,
) -> Result<StoredObjects, mysql_async::Error> {
    let mut found = StoredObjects::default();
    let routines: Vec<(Vec<u8>, Vec<u8>)> = conn
        .exec(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (db,),
        )
        .await?;
    for (name, kind) in routines {
        let name = String::from_utf8_lossy(&name).into_owned();
        let kind = match &kind[..] {
            b"PROCEDURE" => ObjectKind::Procedure,
            b"FUNCTION" => ObjectKind::Function,
            other => {
                tracing::warn!(database = %db, routine = %name, kind = %String::from_utf8_lossy(other),
                    "not copied by the snapshot (only procedures and functions are); create it on the replica by hand");
                continue;
            }
        };
        found
            .routines
            .push(show_create(conn, db, &name, kind).await?);
    }
    let triggers: Vec<(Vec<u8>, Vec<u8>)> = conn
        .exec(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = ? \
             ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER",
            (db,),
        )
        .await?;
    for (name, table) in triggers {
        let name = String::from_utf8_lossy(&name).into_owned();
        if !filter.table_included(db, &String::from_utf8_lossy(&table)) {
            continue;
        }
        found
            .triggers
            .push(show_create(conn, db, &name, ObjectKind::Trigger).await?);
    }
    let events: Vec<Vec<u8>> = conn
        .exec(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
            (db,),
        )
        .await?;
    for name in events {
        let name = String::from_utf8_lossy(&name).into_owned();
        found
            .events
            .push(show_create(conn, db, &name, ObjectKind::Event).await?);
    }
    Ok(found)
}

/// The triggers of one table, in the order to create them (as
/// [`discover`] lists them), on a `NAMES binary` connection.
pub async fn triggers_of(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<Vec<StoredObject>, mysql_async::Error> {
    let names: Vec<Vec<u8>> = conn
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? \
             ORDER BY EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER",
            (db, table),
        )
        .await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let name = String::from_utf8_lossy(&name).into_owned();
        out.push(show_create(conn, db, &name, ObjectKind::Trigger).await?);
    }
    Ok(out)
}

/// `SHOW CREATE <kind>`: name, sql_mode, [time_zone,] statement,
/// character_set_client, collation_connection, Database Collation.
async fn show_create(
    conn: &mut Conn,
    db: &str,
    name: &str,
    kind: ObjectKind,
) -> Result<StoredObject, mysql_async::Error> {
    let row: Option<mysql_async::Row> = conn
        .query_first(format!(
            "SHOW CREATE {} {}",
            kind.keyword(),
            sql::table(db, name)
        ))
        .await?;
    let mut row = row.ok_or_else(|| missing(db, name, kind))?;
    // Events have time_zone after sql_mode; the rest shift by one.
    let shift = usize::from(kind == ObjectKind::Event);
    let create_sql: Option<Vec<u8>> = row.take(2 + shift).flatten();
    // NULL when the snapshot user may not see the body.
    let create_sql = create_sql.ok_or_else(|| missing(db, name, kind))?;
    Ok(StoredObject {
        database: db.to_string(),
        name: name.to_string(),
        kind,
        create_sql,
        context: DefinitionContext {
            sql_mode: text(row.take(1).flatten()),
            time_zone: (kind == ObjectKind::Event).then(|| text(row.take(2).flatten())),
            character_set_client: text(row.take(3 + shift).flatten()),
            collation_connection: text(row.take(4 + shift).flatten()),
            collation_database: text(row.take(5 + shift).flatten()),
        },
    })
}

fn missing(db: &str, name: &str, kind: ObjectKind) -> mysql_async::Error {
    mysql_async::Error::Other(
        format!(
            "SHOW CREATE {} {db}.{name} returned no definition: the snapshot user needs \
             SELECT on mysql.proc (routines), TRIGGER (triggers) or EVENT (events) on `{db}`",
            kind.keyword()
        )
        .into(),
    )
}

/// A sequence's definition and its state as the snapshot transaction sees
/// it.
pub async fn read_sequence(
    conn: &mut Conn,
    db: &str,
    name: &str,
) -> Result<SequenceState, mysql_async::Error> {
    let table = sql::table(db, name);
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .query_first(format!("SHOW CREATE SEQUENCE {table}"))
        .await?;
    let create_sql = row.map(|r| r.1).unwrap_or_default();
    let state: Option<(i64, i64)> = conn
        .query_first(format!(
            "SELECT next_not_cached_value, cycle_count FROM {table}"
        ))
        .await?;
    let (next_not_cached_value, cycle_count) = state.unwrap_or((0, 0));
    Ok(SequenceState {
        database: db.to_string(),
        name: name.to_string(),
        create_sql,
        next_not_cached_value,
        cycle_count,
    })
}

/// Creates `object` on the replica in its definition context; events as
/// `DISABLE ON SLAVE`. Leaves the session's settings changed: the caller
/// restores its own.
pub async fn create(conn: &mut Conn, object: &StoredObject) -> Result<(), mysql_async::Error> {
    let c = &object.context;
    conn.query_drop(format!("USE {}", sql::ident(&object.database)))
        .await?;
    let mut set = vec![
        format!("sql_mode = {}", quote(&c.sql_mode)),
        format!("character_set_client = {}", quote(&c.character_set_client)),
        format!("collation_connection = {}", quote(&c.collation_connection)),
    ];
    if !c.collation_database.is_empty() {
        set.push(format!(
            "collation_database = {}",
            quote(&c.collation_database)
        ));
    }
    if let Some(tz) = &c.time_zone {
        set.push(format!("time_zone = {}", quote(tz)));
    }
    conn.query_drop(format!("SET SESSION {}", set.join(", ")))
        .await?;
    let statement = match object.kind {
        ObjectKind::Event => disabled_on_replica(&object.create_sql),
        _ => Cow::Borrowed(&object.create_sql[..]),
    };
    conn.query_drop(statement.as_ref()).await
}

/// Creates a sequence and sets it to the primary's state.
pub async fn create_sequence(
    conn: &mut Conn,
    sequence: &SequenceState,
) -> Result<(), mysql_async::Error> {
    conn.query_drop(format!("USE {}", sql::ident(&sequence.database)))
        .await?;
    conn.query_drop(&sequence.create_sql[..]).await?;
    // SETVAL with is_used = 0 makes exactly this the next value, which is
    // what next_not_cached_value then holds, as on the primary.
    conn.query_drop(format!(
        "SELECT SETVAL({}, {}, 0, {})",
        sql::table(&sequence.database, &sequence.name),
        sequence.next_not_cached_value,
        sequence.cycle_count
    ))
    .await
}

/// A session variable's value as a string literal (names and modes only,
/// never user data).
fn quote(v: &str) -> String {
    sql::literal(v)
}

/// `sql` with every bare word (not inside a string, quoted name or
/// comment) for which `rename` gives a replacement replaced by it.
pub fn rename_words(sql: &[u8], rename: impl Fn(&str) -> Option<String>) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for t in tokens(sql).into_iter().filter(|t| t.word) {
        let Ok(word) = std::str::from_utf8(&sql[t.start..t.end]) else {
            continue;
        };
        if let Some(new) = rename(word) {
            let o = out.get_or_insert_with(|| Vec::with_capacity(sql.len()));
            o.extend_from_slice(&sql[copied..t.start]);
            o.extend_from_slice(new.as_bytes());
            copied = t.end;
        }
    }
    match out {
        None => Cow::Borrowed(sql),
        Some(mut o) => {
            o.extend_from_slice(&sql[copied..]);
            Cow::Owned(o)
        }
    }
}

/// One token of a statement: its byte range and whether it is a bare word
/// (keyword or unquoted identifier).
#[derive(Debug, Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    word: bool,
}

/// Splits SQL into words, quoted names and strings, and single
/// punctuation bytes, skipping whitespace and comments.
fn tokens(sql: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    while i < sql.len() {
        let b = sql[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if sql[i..].starts_with(b"/*") {
            i = find(sql, i + 2, b"*/").map_or(sql.len(), |e| e + 2);
        } else if b == b'#'
            || (sql[i..].starts_with(b"--")
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()))
        {
            i = find(sql, i, b"\n").map_or(sql.len(), |e| e + 1);
        } else if matches!(b, b'\'' | b'"' | b'`') {
            let start = i;
            i += 1;
            while i < sql.len() {
                if sql[i] == b'\\' && b != b'`' {
                    i += 2;
                } else if sql[i] == b {
                    if sql.get(i + 1) == Some(&b) {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(Token {
                start,
                end: i.min(sql.len()),
                word: false,
            });
        } else if is_word(b) {
            let start = i;
            while i < sql.len() && is_word(sql[i]) {
                i += 1;
            }
            out.push(Token {
                start,
                end: i,
                word: true,
            });
        } else {
            out.push(Token {
                start: i,
                end: i + 1,
                word: false,
            });
            i += 1;
        }
    }
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// `CREATE EVENT` or `ALTER EVENT` rewritten so the event is
/// `DISABLE ON SLAVE` (status SLAVESIDE_DISABLED), as a native replica
/// stores every replicated event: any ENABLE/DISABLE clause is replaced.
/// Any other statement comes back unchanged.
pub fn disabled_on_replica(sql: &[u8]) -> Cow<'_, [u8]> {
    let toks = tokens(sql);
    let is =
        |t: &Token, word: &str| t.word && sql[t.start..t.end].eq_ignore_ascii_case(word.as_bytes());
    let Some(first) = toks.first() else {
        return Cow::Borrowed(sql);
    };
    if !(is(first, "CREATE") || is(first, "ALTER")) {
        return Cow::Borrowed(sql);
    }
    // CREATE [OR REPLACE] [DEFINER = user] EVENT [IF NOT EXISTS] name
    let mut i = 1;
    if toks.get(i).is_some_and(|t| is(t, "OR")) && toks.get(i + 1).is_some_and(|t| is(t, "REPLACE"))
    {
        i += 2;
    }
    if toks.get(i).is_some_and(|t| is(t, "DEFINER")) {
        i += 1;
        if toks.get(i).is_some_and(|t| &sql[t.start..t.end] == b"=") {
            i += 1;
        }
        // user, user@host, CURRENT_USER or CURRENT_USER()
        i += 1;
        let at_host = toks.get(i).is_some_and(|t| &sql[t.start..t.end] == b"@");
        let call = toks.get(i).is_some_and(|t| &sql[t.start..t.end] == b"(")
            && toks
                .get(i + 1)
                .is_some_and(|t| &sql[t.start..t.end] == b")");
        if at_host || call {
            i += 2;
        }
    }
    if !toks.get(i).is_some_and(|t| is(t, "EVENT")) {
        return Cow::Borrowed(sql);
    }
    i += 1;
    if toks.get(i).is_some_and(|t| is(t, "IF")) {
        i += 2 + usize::from(toks.get(i + 1).is_some_and(|t| is(t, "NOT")));
    }
    // The name: `db`.`name` or name.
    i += 1;
    if toks.get(i).is_some_and(|t| &sql[t.start..t.end] == b".") {
        i += 2;
    }
    let mut removed: Vec<(usize, usize)> = Vec::new();
    let mut insert_at = None;
    while let Some(t) = toks.get(i) {
        if is(t, "DO") || is(t, "COMMENT") {
            insert_at = Some(t.start);
            break;
        }
        if is(t, "TO") {
            // RENAME TO name: the new name is never a clause.
            i += 2;
            if toks.get(i).is_some_and(|t| &sql[t.start..t.end] == b".") {
                i += 2;
            }
            continue;
        }
        if is(t, "ENABLE") {
            removed.push((t.start, t.end));
        } else if is(t, "DISABLE") {
            let on = toks.get(i + 1).filter(|t| is(t, "ON"));
            let target = toks
                .get(i + 2)
                .filter(|t| is(t, "SLAVE") || is(t, "REPLICA"));
            match (on, target) {
                (Some(_), Some(end)) => {
                    removed.push((t.start, end.end));
                    i += 2;
                }
                _ => removed.push((t.start, t.end)),
            }
        }
        i += 1;
    }
    let before_token = insert_at.is_some();
    let insert_at = insert_at.unwrap_or_else(|| {
        let mut end = sql.len();
        while end > 0 && (sql[end - 1].is_ascii_whitespace() || sql[end - 1] == b';') {
            end -= 1;
        }
        end
    });
    let mut out = Vec::with_capacity(sql.len() + 20);
    let mut at = 0;
    for (start, end) in removed.iter().copied().filter(|&(s, _)| s < insert_at) {
        out.extend_from_slice(&sql[at..start]);
        at = end;
    }
    out.extend_from_slice(&sql[at..insert_at]);
    if before_token {
        if !out.last().is_some_and(|b| b.is_ascii_whitespace()) {
            out.push(b' ');
        }
        out.extend_from_slice(b"DISABLE ON SLAVE ");
    } else {
        out.extend_from_slice(b" DISABLE ON SLAVE");
    }
    out.extend_from_slice(&sql[insert_at..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> String {
        String::from_utf8(disabled_on_replica(sql.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn create_event_becomes_disabled_on_slave() {
        assert_eq!(
            rewrite("CREATE DEFINER=`root`@`localhost` EVENT `ev` ON SCHEDULE EVERY 1 SECOND DO INSERT INTO t VALUES (1)"),
            "CREATE DEFINER=`root`@`localhost` EVENT `ev` ON SCHEDULE EVERY 1 SECOND DISABLE ON SLAVE DO INSERT INTO t VALUES (1)"
        );
        assert_eq!(
            rewrite("CREATE DEFINER=`root`@`localhost` EVENT `ev` ON SCHEDULE EVERY 1 HOUR STARTS '2026-12-02 15:08:45' ON COMPLETION NOT PRESERVE ENABLE DO INSERT INTO x.en VALUES (9,'a','a')"),
            "CREATE DEFINER=`root`@`localhost` EVENT `ev` ON SCHEDULE EVERY 1 HOUR STARTS '2026-12-02 15:08:45' ON COMPLETION NOT PRESERVE  DISABLE ON SLAVE DO INSERT INTO x.en VALUES (9,'a','a')"
        );
        assert_eq!(
            rewrite("create or replace definer = current_user() event if not exists d.e on schedule at now() disable comment 'enable me' do begin select 1; end"),
            "create or replace definer = current_user() event if not exists d.e on schedule at now()  DISABLE ON SLAVE comment 'enable me' do begin select 1; end"
        );
        assert_eq!(
            rewrite("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DISABLE ON REPLICA /* x */ DO DELETE FROM t WHERE enable = 1"),
            "CREATE EVENT e ON SCHEDULE EVERY 1 DAY  /* x */ DISABLE ON SLAVE DO DELETE FROM t WHERE enable = 1"
        );
    }

    #[test]
    fn alter_event_keeps_its_replica_copy_disabled() {
        assert_eq!(
            rewrite("ALTER DEFINER=`u`@`%` EVENT e ENABLE;"),
            "ALTER DEFINER=`u`@`%` EVENT e  DISABLE ON SLAVE;"
        );
        assert_eq!(
            rewrite("ALTER EVENT e RENAME TO enable ON COMPLETION PRESERVE"),
            "ALTER EVENT e RENAME TO enable ON COMPLETION PRESERVE DISABLE ON SLAVE"
        );
        assert_eq!(
            rewrite("ALTER EVENT `enable` DO SELECT 'ENABLE'"),
            "ALTER EVENT `enable` DISABLE ON SLAVE DO SELECT 'ENABLE'"
        );
    }

    #[test]
    fn other_statements_are_untouched() {
        for sql in [
            "CREATE TABLE event (id INT)",
            "DROP EVENT e",
            "CREATE DEFINER=`root`@`localhost` TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.a = 1",
            "ALTER TABLE t DISABLE KEYS",
            "",
        ] {
            assert!(matches!(disabled_on_replica(sql.as_bytes()), Cow::Borrowed(_)), "{sql}");
        }
    }
}
