//! `--rewrite-db FROM=TO`: the replica keeps the primary's database FROM
//! under the name TO, like MySQL's `replicate-rewrite-db`, but for
//! everything that names a database, not only the default one.
//!
//! The slave rewrites what it receives before anything else sees it
//! ([`DbRewrite::master_message`], [`DbRewrite::transaction`]): the tables
//! of row changes, the primary's own TABLE_MAP events that the replica's
//! row-event applier replays (the database name inside them, and the event
//! size; `replay.rs` recomputes the CRC32), DDL statements (their default
//! database and the qualified names inside them), and a seed's databases,
//! tables, views, stored objects, plan and chunks. So every later stage
//! (net effects, ordered statements, replay, positional mapping, table
//! facts, the seed gate, checkpoints) sees only the replica's names.
//! What goes back to the master (seed progress) is mapped back with
//! [`DbRewrite::to_source`]: the master and its filters only know the
//! primary's names.
//!
//! Statement text is rewritten by a tokenizer that knows MySQL's quoting:
//! string literals and comments are copied as they are (executable
//! comments `/*! ... */` and `/*M! ... */` are code and are rewritten);
//! backquoted names (and double-quoted ones under `ANSI_QUOTES`) are names.
//! A name equal to FROM is the database when it qualifies another name
//! (`shop.t`, `` `shop`.`t`.`c` ``, `shop . t`) and is not itself
//! qualified (`x.shop` is a table or column named shop), or when it follows
//! `DATABASE`/`SCHEMA` (`CREATE DATABASE [IF NOT EXISTS] shop`, `DROP`,
//! `ALTER`). Unqualified names are left alone: they resolve against the
//! default database, which is rewritten. **Limit:** a table or alias named
//! exactly like a rewritten database, used as `name.column`, is taken for
//! the database (SQL cannot tell them apart without the catalog).

use std::borrow::Cow;

use crate::log::change::{Change, RowEvents, TableSchema, Transaction};
use crate::net::wire::{MasterMessage, SnapshotObject};
use crate::source::objects::{DefinitionContext, StoredObject, StoredObjects};
use crate::source::seed_plan::SeedTable;

/// Schemas that are never renamed: the server's own, and rowcast's.
const RESERVED: &[&str] = &[
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "rowcast",
    crate::source::filter::CHECKSUM_DB,
];

/// The longest database name MySQL and MariaDB accept, in characters.
const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("--rewrite-db {from}={to}: `{name}` is a system or rowcast schema, which is never renamed; rename only your own databases")]
    Reserved {
        from: String,
        to: String,
        name: String,
    },
    #[error(
        "--rewrite-db names database `{0}` as FROM twice; give each primary database one rule"
    )]
    FromTwice(String),
    #[error("--rewrite-db maps two databases to `{0}`: their tables would land in one database on the replica; give each its own TO")]
    ToTwice(String),
    #[error("--rewrite-db {from}={to}: `{name}` is not a database name (1 to 64 characters, no NUL, no trailing space)")]
    BadName {
        from: String,
        to: String,
        name: String,
    },
}

/// The rules of one slave: each primary database FROM is kept as TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbRewrite {
    rules: Vec<(String, String)>,
}

impl DbRewrite {
    /// Checks the rules: real names, no system schema, each FROM and each
    /// TO once.
    pub fn new(rules: &[(String, String)]) -> Result<DbRewrite, RewriteError> {
        for (i, (from, to)) in rules.iter().enumerate() {
            for name in [from, to] {
                if name.is_empty()
                    || name.chars().count() > MAX_NAME_CHARS
                    || name.contains('\0')
                    || name.ends_with(' ')
                {
                    return Err(RewriteError::BadName {
                        from: from.clone(),
                        to: to.clone(),
                        name: name.clone(),
                    });
                }
                if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                    return Err(RewriteError::Reserved {
                        from: from.clone(),
                        to: to.clone(),
                        name: name.clone(),
                    });
                }
            }
            if rules[..i].iter().any(|(f, _)| f == from) {
                return Err(RewriteError::FromTwice(from.clone()));
            }
            if rules[..i].iter().any(|(_, t)| t == to) {
                return Err(RewriteError::ToTwice(to.clone()));
            }
        }
        Ok(DbRewrite {
            rules: rules.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[(String, String)] {
        &self.rules
    }

    /// The same rules, whatever their order.
    pub fn same_as(&self, other: &DbRewrite) -> bool {
        let mut a = self.rules.clone();
        let mut b = other.rules.clone();
        a.sort();
        b.sort();
        a == b
    }

    /// The replica's name of the primary's database `db`.
    pub fn to_replica<'a>(&'a self, db: &'a str) -> &'a str {
        self.rules
            .iter()
            .find(|(f, _)| f == db)
            .map_or(db, |(_, t)| t.as_str())
    }

    /// The primary's name of the replica's database `db`.
    pub fn to_source<'a>(&'a self, db: &'a str) -> &'a str {
        self.rules
            .iter()
            .find(|(_, t)| t == db)
            .map_or(db, |(f, _)| f.as_str())
    }

    fn map_in_place(&self, db: &mut String) -> bool {
        match self.rules.iter().find(|(f, _)| f == db) {
            Some((_, to)) => {
                *db = to.clone();
                true
            }
            None => false,
        }
    }

    /// A seed table's plan with the primary's database name (for the
    /// progress a slave reports to its master).
    pub fn seed_table_to_source(&self, mut t: SeedTable) -> SeedTable {
        t.database = self.to_source(&t.database).to_string();
        t
    }

    /// Everything in a message from the master that names a database.
    pub fn master_message(&self, m: &mut MasterMessage) {
        if self.is_empty() {
            return;
        }
        match m {
            MasterMessage::Transaction(_, txn) => self.transaction(txn),
            MasterMessage::SnapshotBegin {
                databases,
                tables,
                views,
                objects,
                ..
            } => {
                self.databases(databases);
                self.objects(tables);
                self.objects(views);
                self.stored(objects);
            }
            MasterMessage::SnapshotRows { table, .. } => {
                self.map_in_place(&mut table.database);
            }
            MasterMessage::SeedBegin {
                databases,
                tables,
                views,
                objects,
                plan,
                ..
            } => {
                self.databases(databases);
                self.objects(tables);
                self.objects(views);
                self.stored(objects);
                for t in plan {
                    self.map_in_place(&mut t.database);
                }
            }
            MasterMessage::SeedChunk(chunk) => {
                self.map_in_place(&mut chunk.database);
                self.map_in_place(&mut chunk.schema.database);
            }
            MasterMessage::SeedTableBegin {
                database,
                table,
                plan,
            } => {
                self.databases(std::slice::from_mut(database));
                self.objects(std::slice::from_mut(table));
                self.map_in_place(&mut plan.database);
            }
            MasterMessage::Challenge { .. }
            | MasterMessage::Welcome { .. }
            | MasterMessage::Heartbeat { .. }
            | MasterMessage::Error { .. }
            | MasterMessage::SnapshotEnd { .. }
            | MasterMessage::Status(_) => {}
        }
    }

    /// A database's own entry: its name is the database too.
    fn databases(&self, dbs: &mut [SnapshotObject]) {
        for d in dbs.iter_mut() {
            if self.map_in_place(&mut d.database) {
                d.name = d.database.clone();
            }
            if let Some(sql) = self.sql(&d.create_sql, SqlFlavor::default()) {
                d.create_sql = sql;
            }
        }
    }

    /// Tables and views, as `SHOW CREATE` wrote them (backquoted names).
    fn objects(&self, objects: &mut [SnapshotObject]) {
        for o in objects.iter_mut() {
            self.map_in_place(&mut o.database);
            if let Some(sql) = self.sql(&o.create_sql, SqlFlavor::default()) {
                o.create_sql = sql;
            }
        }
    }

    fn stored(&self, objects: &mut StoredObjects) {
        for s in objects.sequences.iter_mut() {
            self.map_in_place(&mut s.database);
            if let Some(sql) = self.sql(&s.create_sql, SqlFlavor::default()) {
                s.create_sql = sql;
            }
        }
        let each = |list: &mut Vec<StoredObject>| {
            for o in list.iter_mut() {
                self.map_in_place(&mut o.database);
                // A routine's or trigger's body is its author's text, read
                // in the sql_mode it was defined under.
                if let Some(sql) = self.sql(&o.create_sql, SqlFlavor::of_context(&o.context)) {
                    o.create_sql = sql;
                }
            }
        };
        each(&mut objects.routines);
        each(&mut objects.triggers);
        each(&mut objects.events);
    }

    /// Every name of a transaction: its tables (and their TABLE_MAP
    /// events) and its DDL.
    pub fn transaction(&self, txn: &mut Transaction) {
        if self.is_empty() {
            return;
        }
        let post_header = txn
            .events
            .as_ref()
            .map(|e| table_map_post_header(&e.format));
        for (i, t) in txn.tables.iter_mut().enumerate() {
            if !self.map_in_place(&mut t.database) {
                continue;
            }
            if let (Some(events), Some(ph)) = (txn.events.as_mut(), post_header) {
                rewrite_map_at(events, i, t, ph);
            }
        }
        for c in txn.changes.iter_mut() {
            if let Change::Ddl(ddl) = c {
                if let Some(db) = ddl.database.as_mut() {
                    self.map_in_place(db);
                }
                let flavor = SqlFlavor::of_mode(ddl.sql_mode.unwrap_or(0));
                if let Some(sql) = self.sql(&ddl.sql, flavor) {
                    ddl.sql = sql;
                }
            }
        }
    }

    /// Statement text with every FROM that names a database as TO; `None`
    /// when nothing changed.
    pub fn sql(&self, sql: &[u8], flavor: SqlFlavor) -> Option<Vec<u8>> {
        if self.is_empty() {
            return None;
        }
        // Cheap test first: most statements name no rewritten database.
        if !self
            .rules
            .iter()
            .any(|(f, _)| contains(sql, longest_unquoted(f).as_bytes()))
        {
            return None;
        }
        let tokens = tokenize(sql, flavor);
        let mut out = Vec::with_capacity(sql.len() + 16);
        let mut changed = false;
        let mut copied = 0;
        for (i, tok) in tokens.iter().enumerate() {
            let Some(name) = tok.name(sql) else { continue };
            let Some((_, to)) = self.rules.iter().find(|(f, _)| f.as_bytes() == &name[..]) else {
                continue;
            };
            if !names_database(sql, &tokens, i) {
                continue;
            }
            out.extend_from_slice(&sql[copied..tok.start]);
            out.extend_from_slice(&quote_like(tok.kind, to, flavor));
            copied = tok.end;
            changed = true;
        }
        if !changed {
            return None;
        }
        out.extend_from_slice(&sql[copied..]);
        Some(out)
    }

    /// `sql` rewritten, or as it was.
    pub fn sql_text<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        match self.sql(sql.as_bytes(), SqlFlavor::default()) {
            Some(s) => Cow::Owned(String::from_utf8_lossy(&s).into_owned()),
            None => Cow::Borrowed(sql),
        }
    }
}

/// The longest piece of a name without quote characters (which appear
/// doubled when the name is quoted).
fn longest_unquoted(name: &str) -> &str {
    name.split(['`', '"'])
        .max_by_key(|p| p.len())
        .unwrap_or(name)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// How a statement's text is read: what `"` means and whether `\` escapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqlFlavor {
    /// `ANSI_QUOTES`: `"..."` is a name, not a string.
    pub ansi_quotes: bool,
    /// `NO_BACKSLASH_ESCAPES`: `\` is an ordinary character in strings.
    pub no_backslash_escapes: bool,
}

/// The sql_mode bits (the server's `MODE_*`).
const MODE_ANSI_QUOTES: u64 = 4;
const MODE_NO_BACKSLASH_ESCAPES: u64 = 1 << 21;

impl SqlFlavor {
    /// From a query event's sql_mode bits.
    pub fn of_mode(mode: u64) -> SqlFlavor {
        SqlFlavor {
            ansi_quotes: mode & MODE_ANSI_QUOTES != 0,
            no_backslash_escapes: mode & MODE_NO_BACKSLASH_ESCAPES != 0,
        }
    }

    /// From a stored object's sql_mode, as `SHOW CREATE` names it
    /// (`ANSI` implies `ANSI_QUOTES`).
    fn of_context(ctx: &DefinitionContext) -> SqlFlavor {
        let has = |w: &str| {
            ctx.sql_mode
                .split(',')
                .any(|m| m.trim().eq_ignore_ascii_case(w))
        };
        SqlFlavor {
            ansi_quotes: has("ANSI_QUOTES") || has("ANSI"),
            no_backslash_escapes: has("NO_BACKSLASH_ESCAPES"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unquoted word: a keyword, a name or a number.
    Word,
    /// `` `name` ``.
    Backquoted,
    /// `"name"` under ANSI_QUOTES.
    DoubleQuoted,
    /// A string literal.
    Str,
    /// A comment (never rewritten).
    Comment,
    /// `/*!` or `/*M!` with its version, or the `*/` that ends it: the
    /// text in between is code.
    ExecMark,
    Space,
    /// One byte of punctuation.
    Punct(u8),
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Token {
    /// The name this token stands for, if it is one (quotes undone).
    fn name(&self, sql: &[u8]) -> Option<Vec<u8>> {
        let text = &sql[self.start..self.end];
        match self.kind {
            Kind::Word => Some(text.to_vec()),
            Kind::Backquoted | Kind::DoubleQuoted => {
                let q = text[0];
                let inner = &text[1..text.len().saturating_sub(1).max(1)];
                let mut out = Vec::with_capacity(inner.len());
                let mut i = 0;
                while i < inner.len() {
                    out.push(inner[i]);
                    // A doubled quote is one quote character.
                    if inner[i] == q && inner.get(i + 1) == Some(&q) {
                        i += 1;
                    }
                    i += 1;
                }
                Some(out)
            }
            _ => None,
        }
    }

    fn significant(&self) -> bool {
        !matches!(self.kind, Kind::Space | Kind::Comment | Kind::ExecMark)
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Splits statement text into tokens that cover it whole.
fn tokenize(sql: &[u8], flavor: SqlFlavor) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut in_exec = false;
    let n = sql.len();
    while i < n {
        let start = i;
        let b = sql[i];
        let kind = if b.is_ascii_whitespace() {
            while i < n && sql[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if b == b'#'
            || (b == b'-'
                && sql.get(i + 1) == Some(&b'-')
                && sql
                    .get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()))
        {
            while i < n && sql[i] != b'\n' {
                i += 1;
            }
            Kind::Comment
        } else if b == b'/' && sql.get(i + 1) == Some(&b'*') {
            let exec = sql.get(i + 2) == Some(&b'!')
                || (sql.get(i + 2) == Some(&b'M') && sql.get(i + 3) == Some(&b'!'));
            if exec && !in_exec {
                i += if sql[i + 2] == b'M' { 4 } else { 3 };
                while i < n && sql[i].is_ascii_digit() {
                    i += 1;
                }
                in_exec = true;
                Kind::ExecMark
            } else {
                i += 2;
                while i < n && !(sql[i] == b'*' && sql.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(n);
                Kind::Comment
            }
        } else if b == b'*' && in_exec && sql.get(i + 1) == Some(&b'/') {
            i += 2;
            in_exec = false;
            Kind::ExecMark
        } else if b == b'`' || (b == b'"' && flavor.ansi_quotes) {
            i = quoted_end(sql, i, false);
            if b == b'`' {
                Kind::Backquoted
            } else {
                Kind::DoubleQuoted
            }
        } else if b == b'\'' || b == b'"' {
            i = quoted_end(sql, i, !flavor.no_backslash_escapes);
            Kind::Str
        } else if is_word_byte(b) {
            while i < n && is_word_byte(sql[i]) {
                i += 1;
            }
            Kind::Word
        } else {
            i += 1;
            Kind::Punct(b)
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens
}

/// The end (exclusive) of the quoted token starting at `at`: a doubled
/// quote is part of it, and with `backslash` a `\` escapes what follows.
fn quoted_end(sql: &[u8], at: usize, backslash: bool) -> usize {
    let q = sql[at];
    let mut i = at + 1;
    while i < sql.len() {
        let c = sql[i];
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == q {
            if sql.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    sql.len()
}

/// Whether the name at token `i` is a database: it qualifies a name after
/// it and is not qualified itself, or it follows DATABASE/SCHEMA.
fn names_database(sql: &[u8], tokens: &[Token], i: usize) -> bool {
    // `@shop.x` is a variable, `@@session.x` a system variable.
    if i > 0 && tokens[i - 1].kind == Kind::Punct(b'@') {
        return false;
    }
    let prev = prev_significant(tokens, i);
    if prev.is_some_and(|p| tokens[p].kind == Kind::Punct(b'.')) {
        return false;
    }
    // A number (`1.5`) is no name.
    if tokens[i].kind == Kind::Word && sql[tokens[i].start].is_ascii_digit() && {
        let t = &sql[tokens[i].start..tokens[i].end];
        t.iter().all(|c| c.is_ascii_digit())
    } {
        return false;
    }
    if let Some(dot) = next_significant(tokens, i) {
        if tokens[dot].kind == Kind::Punct(b'.') {
            if let Some(after) = next_significant(tokens, dot) {
                if matches!(
                    tokens[after].kind,
                    Kind::Word | Kind::Backquoted | Kind::DoubleQuoted
                ) {
                    return true;
                }
            }
        }
    }
    // `DATABASE [IF [NOT] EXISTS] shop`, `SCHEMA ...`.
    let word = |t: usize| -> Option<String> {
        (tokens[t].kind == Kind::Word).then(|| {
            String::from_utf8_lossy(&sql[tokens[t].start..tokens[t].end]).to_ascii_uppercase()
        })
    };
    let mut p = prev;
    if p.and_then(word).as_deref() == Some("EXISTS") {
        p = p.and_then(|x| prev_significant(tokens, x));
        if p.and_then(word).as_deref() == Some("NOT") {
            p = p.and_then(|x| prev_significant(tokens, x));
        }
        if p.and_then(word).as_deref() != Some("IF") {
            return false;
        }
        p = p.and_then(|x| prev_significant(tokens, x));
    }
    matches!(p.and_then(word).as_deref(), Some("DATABASE" | "SCHEMA"))
        && p.and_then(|x| prev_significant(tokens, x))
            .and_then(word)
            .is_some_and(|w| matches!(w.as_str(), "CREATE" | "DROP" | "ALTER" | "REPLACE"))
}

fn prev_significant(tokens: &[Token], i: usize) -> Option<usize> {
    (0..i).rev().find(|&j| tokens[j].significant())
}

fn next_significant(tokens: &[Token], i: usize) -> Option<usize> {
    (i + 1..tokens.len()).find(|&j| tokens[j].significant())
}

/// `to` written the way the name it replaces was: backquoted, double
/// quoted, or bare when it can be.
fn quote_like(kind: Kind, to: &str, flavor: SqlFlavor) -> Vec<u8> {
    match kind {
        Kind::DoubleQuoted if flavor.ansi_quotes => {
            format!("\"{}\"", to.replace('"', "\"\"")).into_bytes()
        }
        Kind::Word
            if to.bytes().all(is_word_byte)
                && !to.bytes().all(|b| b.is_ascii_digit())
                && !to.bytes().any(|b| b >= 0x80) =>
        {
            to.as_bytes().to_vec()
        }
        _ => format!("`{}`", to.replace('`', "``")).into_bytes(),
    }
}

/// The length of a TABLE_MAP event's post-header under this
/// FORMAT_DESCRIPTION: 8 (6-byte table id and flags), or 6 for servers
/// before MySQL 5.1.4 (4-byte table id).
fn table_map_post_header(format: &[u8]) -> usize {
    // FDE body: binlog version (2), server version (50), create time (4),
    // common header length (1), then one post-header length per type.
    const LENGTHS_AT: usize = 19 + 2 + 50 + 4 + 1;
    const TABLE_MAP: usize = 19;
    match format.get(LENGTHS_AT + TABLE_MAP - 1) {
        Some(6) => 6,
        _ => 8,
    }
}

/// Rewrites the database name inside TABLE_MAP event `i` to `t.database`
/// (already the replica's name) and fixes the event's size field.
fn rewrite_map_at(events: &mut RowEvents, i: usize, t: &TableSchema, post_header: usize) {
    let Some(map) = events.table_maps.get_mut(i) else {
        return;
    };
    if let Some(new) = rewrite_table_map(map, &t.database, post_header) {
        *map = new;
    } else {
        tracing::warn!(table = %t.name, "a TABLE_MAP event could not be read to rename its database; rows replayed from it would go to the primary's database");
    }
}

/// A TABLE_MAP event (19-byte header, no checksum) with its database
/// name replaced by `db` and its size field set; `None` if the event is
/// too short to hold what its lengths say.
pub fn rewrite_table_map(event: &[u8], db: &str, post_header: usize) -> Option<Vec<u8>> {
    const HEADER: usize = 19;
    let at = HEADER + post_header;
    let len = usize::from(*event.get(at)?);
    let rest = at + 1 + len;
    if event.len() < rest + 1 || event[rest] != 0 || db.len() > 255 {
        return None;
    }
    let mut out = Vec::with_capacity(event.len() + db.len());
    out.extend_from_slice(&event[..at]);
    out.push(db.len() as u8);
    out.extend_from_slice(db.as_bytes());
    out.extend_from_slice(&event[rest..]);
    let size = out.len() as u32;
    out[9..13].copy_from_slice(&size.to_le_bytes());
    Some(out)
}

/// The database name a TABLE_MAP event names (tests and diagnostics).
pub fn table_map_database(event: &[u8], post_header: usize) -> Option<&[u8]> {
    let at = 19 + post_header;
    let len = usize::from(*event.get(at)?);
    event.get(at + 1..at + 1 + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw() -> DbRewrite {
        DbRewrite::new(&[("shop".into(), "shop_copy".into())]).unwrap()
    }

    fn r(sql: &str) -> String {
        rw().sql_text(sql).into_owned()
    }

    fn ansi(sql: &str) -> String {
        let f = SqlFlavor::of_mode(MODE_ANSI_QUOTES);
        String::from_utf8(
            rw().sql(sql.as_bytes(), f)
                .unwrap_or(sql.as_bytes().to_vec()),
        )
        .unwrap()
    }

    #[test]
    fn qualified_names_are_rewritten_in_every_quoting() {
        assert_eq!(
            r("CREATE TABLE shop.t2 (id INT)"),
            "CREATE TABLE shop_copy.t2 (id INT)"
        );
        assert_eq!(
            r("CREATE TABLE `shop`.`t2` (id INT)"),
            "CREATE TABLE `shop_copy`.`t2` (id INT)"
        );
        assert_eq!(r("DROP TABLE shop . t"), "DROP TABLE shop_copy . t");
        assert_eq!(
            r("DROP TABLE shop/* x */.t"),
            "DROP TABLE shop_copy/* x */.t"
        );
        assert_eq!(
            r("select `shop`.`t`.`id` AS `id` from `shop`.`t`"),
            "select `shop_copy`.`t`.`id` AS `id` from `shop_copy`.`t`"
        );
        assert_eq!(
            ansi("CREATE TABLE \"shop\".\"t\" (a INT)"),
            "CREATE TABLE \"shop_copy\".\"t\" (a INT)"
        );
    }

    #[test]
    fn ddl_forms_from_the_brief() {
        assert_eq!(
            r("ALTER TABLE shop.c ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES shop.p (id)"),
            "ALTER TABLE shop_copy.c ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES shop_copy.p (id)"
        );
        assert_eq!(
            r("RENAME TABLE shop.a TO shop.b, other.x TO shop.y"),
            "RENAME TABLE shop_copy.a TO shop_copy.b, other.x TO shop_copy.y"
        );
        assert_eq!(
            r("CREATE TRIGGER shop.tr BEFORE INSERT ON shop.t FOR EACH ROW SET NEW.a = (SELECT MAX(a) FROM shop.t)"),
            "CREATE TRIGGER shop_copy.tr BEFORE INSERT ON shop_copy.t FOR EACH ROW SET NEW.a = (SELECT MAX(a) FROM shop_copy.t)"
        );
        assert_eq!(
            r("CREATE PROCEDURE p() BEGIN INSERT INTO shop.log VALUES ('shop.t'); CALL shop.q(); END"),
            "CREATE PROCEDURE p() BEGIN INSERT INTO shop_copy.log VALUES ('shop.t'); CALL shop_copy.q(); END"
        );
        assert_eq!(
            r("CREATE VIEW v AS SELECT * FROM shop.t JOIN other.u USING (id)"),
            "CREATE VIEW v AS SELECT * FROM shop_copy.t JOIN other.u USING (id)"
        );
    }

    #[test]
    fn database_statements_name_the_database_bare() {
        assert_eq!(r("CREATE DATABASE shop"), "CREATE DATABASE shop_copy");
        assert_eq!(
            r("CREATE DATABASE IF NOT EXISTS `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */"),
            "CREATE DATABASE IF NOT EXISTS `shop_copy` /*!40100 DEFAULT CHARACTER SET utf8mb4 */"
        );
        assert_eq!(
            r("drop schema if exists shop"),
            "drop schema if exists shop_copy"
        );
        assert_eq!(
            r("ALTER DATABASE shop CHARACTER SET latin1"),
            "ALTER DATABASE shop_copy CHARACTER SET latin1"
        );
        assert_eq!(
            r("CREATE OR REPLACE DATABASE shop"),
            "CREATE OR REPLACE DATABASE shop_copy"
        );
        assert_eq!(r("DROP DATABASE shopx"), "DROP DATABASE shopx");
    }

    #[test]
    fn strings_comments_and_other_names_stay() {
        for same in [
            "INSERT INTO t VALUES ('shop.t', \"shop.t\")",
            "INSERT INTO t VALUES ('it''s shop.t')",
            "INSERT INTO t VALUES ('a\\'shop.t')",
            "CREATE TABLE t (a INT) -- shop.t\n",
            "CREATE TABLE t (a INT) # shop.t",
            "CREATE TABLE t (a INT) /* shop.t */",
            "SELECT x.shop FROM x",
            "SELECT db.x.shop FROM db.x",
            "CREATE TABLE shopx.t (shop INT)",
            "CREATE TABLE t (shop INT, KEY (shop))",
            "SELECT @shop.x, @@session.sql_mode",
            "CREATE TABLE `shop x`.t (a INT)",
            "SELECT 1.5, shop.*",
        ] {
            assert_eq!(r(same), same, "{same}");
        }
        // Without NO_BACKSLASH_ESCAPES `\'` does not end a string; with it, it does.
        let nbe = SqlFlavor::of_mode(MODE_NO_BACKSLASH_ESCAPES);
        assert_eq!(
            rw().sql(b"SELECT 'a\\' , shop.t.x FROM shop.t", nbe)
                .unwrap(),
            b"SELECT 'a\\' , shop_copy.t.x FROM shop_copy.t".to_vec()
        );
        // Without ANSI_QUOTES a double-quoted text is a string.
        assert_eq!(r("SELECT \"shop\".t"), "SELECT \"shop\".t");
    }

    #[test]
    fn executable_comments_are_code() {
        assert_eq!(
            r("CREATE TABLE t (a INT) /*!50100 PARTITION BY HASH (a) */ /*M!100100 COMMENT 'shop.t' */ /*!80000 , shop.x */"),
            "CREATE TABLE t (a INT) /*!50100 PARTITION BY HASH (a) */ /*M!100100 COMMENT 'shop.t' */ /*!80000 , shop_copy.x */"
        );
    }

    #[test]
    fn escaped_quotes_in_names_and_unusual_targets() {
        let rw = DbRewrite::new(&[("a`b".into(), "c d".into())]).unwrap();
        assert_eq!(
            rw.sql_text("CREATE TABLE `a``b`.t (x INT)"),
            "CREATE TABLE `c d`.t (x INT)"
        );
        let rw = DbRewrite::new(&[("shop".into(), "x`y".into())]).unwrap();
        assert_eq!(rw.sql_text("DROP TABLE shop.t"), "DROP TABLE `x``y`.t");
    }

    /// Whatever the bytes (unclosed quotes and comments, stray dots), the
    /// tokenizer covers them whole: the output is the input with some
    /// `shop` names replaced, nothing else changed, and it never panics.
    #[test]
    fn any_text_comes_back_whole() {
        const PIECES: &[&str] = &[
            "shop", ".", " ", "`", "'", "\"", "\\", "/*", "*/", "/*!", "/*M!5", "--", "-- ", "#",
            "\n", "t", "DATABASE", "IF", "EXISTS", "CREATE", "@", "1", "x", "é", ";",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            for flavor in [
                SqlFlavor::default(),
                SqlFlavor {
                    ansi_quotes: true,
                    no_backslash_escapes: true,
                },
            ] {
                let out = rw().sql(text.as_bytes(), flavor);
                if let Some(out) = out {
                    let out = String::from_utf8(out).unwrap();
                    assert_eq!(out.replace("shop_copy", "shop"), text, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn rules_are_checked() {
        let one = |f: &str, t: &str| DbRewrite::new(&[(f.into(), t.into())]);
        assert!(matches!(
            one("mysql", "x"),
            Err(RewriteError::Reserved { .. })
        ));
        assert!(matches!(
            one("x", "rowcast"),
            Err(RewriteError::Reserved { .. })
        ));
        assert!(matches!(
            one("x", &"y".repeat(65)),
            Err(RewriteError::BadName { .. })
        ));
        assert!(matches!(
            DbRewrite::new(&[("a".into(), "b".into()), ("a".into(), "c".into())]),
            Err(RewriteError::FromTwice(_))
        ));
        assert!(matches!(
            DbRewrite::new(&[("a".into(), "c".into()), ("b".into(), "c".into())]),
            Err(RewriteError::ToTwice(_))
        ));
        let a = DbRewrite::new(&[("a".into(), "b".into()), ("c".into(), "d".into())]).unwrap();
        let b = DbRewrite::new(&[("c".into(), "d".into()), ("a".into(), "b".into())]).unwrap();
        assert!(a.same_as(&b));
        assert_eq!(a.to_replica("a"), "b");
        assert_eq!(a.to_replica("x"), "x");
        assert_eq!(a.to_source("d"), "c");
    }

    fn table_map(db: &str, table: &str) -> Vec<u8> {
        let mut e = vec![0u8; 19];
        e[4] = 19;
        e.extend_from_slice(&[7, 0, 0, 0, 0, 0, 1, 0]);
        e.push(db.len() as u8);
        e.extend_from_slice(db.as_bytes());
        e.push(0);
        e.push(table.len() as u8);
        e.extend_from_slice(table.as_bytes());
        e.push(0);
        e.extend_from_slice(&[1, 3, 0]); // one LONG column, no metadata
        let size = e.len() as u32;
        e[9..13].copy_from_slice(&size.to_le_bytes());
        e
    }

    #[test]
    fn a_table_map_gets_the_new_database_and_size() {
        let old = table_map("shop", "t");
        let new = rewrite_table_map(&old, "shop_copy", 8).unwrap();
        assert_eq!(new, table_map("shop_copy", "t"));
        assert_eq!(table_map_database(&new, 8), Some(&b"shop_copy"[..]));
        let size = u32::from_le_bytes(new[9..13].try_into().unwrap()) as usize;
        assert_eq!(size, new.len());
        assert!(rewrite_table_map(&old[..25], "x", 8).is_none());
    }

    #[test]
    fn the_table_map_post_header_comes_from_the_format_description() {
        let mut fde = vec![0u8; 76 + 40];
        assert_eq!(table_map_post_header(&fde), 8);
        fde[76 + 18] = 6;
        assert_eq!(table_map_post_header(&fde), 6);
        assert_eq!(table_map_post_header(&[]), 8);
        let mut old = table_map("shop", "t");
        old.drain(19 + 4..19 + 6); // a 4-byte table id
        let new = rewrite_table_map(&old, "s2", 6).unwrap();
        assert_eq!(table_map_database(&new, 6), Some(&b"s2"[..]));
    }

    #[test]
    fn seed_messages_are_renamed_and_progress_goes_back() {
        use crate::source::position::SourcePosition;
        use crate::source::seed_plan::SeedChunk;
        let schema = TableSchema {
            database: "shop".into(),
            name: "t".into(),
            columns: Vec::new(),
            primary_key: Vec::new(),
        };
        let mut m = MasterMessage::SeedChunk(SeedChunk {
            database: "shop".into(),
            name: "t".into(),
            range: 0,
            schema,
            rows: Vec::new(),
            position: SourcePosition::new("b.000001", 4),
            first: true,
            done: true,
            upto: None,
        });
        rw().master_message(&mut m);
        let MasterMessage::SeedChunk(c) = &m else {
            panic!()
        };
        assert_eq!(
            (c.database.as_str(), c.schema.database.as_str()),
            ("shop_copy", "shop_copy")
        );
        let db = |name: &str| SnapshotObject {
            database: name.into(),
            name: name.into(),
            create_sql: format!("CREATE DATABASE `{name}`").into_bytes(),
            charset: None,
        };
        let mut dbs = vec![db("shop"), db("other")];
        rw().databases(&mut dbs);
        assert_eq!(dbs[0], db("shop_copy"));
        assert_eq!(dbs[1], db("other"));
        let plan = SeedTable {
            database: "shop_copy".into(),
            name: "t".into(),
            key: None,
            group: 0,
            ranges: Vec::new(),
            estimated_rows: 0,
            estimated_bytes: 0,
        };
        assert_eq!(rw().seed_table_to_source(plan).database, "shop");
    }

    #[test]
    fn a_transaction_is_rewritten_whole() {
        use crate::log::change::{ColumnDef, ColumnKind, Ddl, Value};
        use crate::source::position::SourcePosition;
        let schema = |db: &str| TableSchema {
            database: db.into(),
            name: "t".into(),
            columns: vec![ColumnDef {
                name: "id".into(),
                kind: ColumnKind::Int,
                unsigned: false,
                collation: 0,
            }],
            primary_key: vec![0],
        };
        let mut txn = Transaction {
            position: SourcePosition::new("b.000001", 4),
            timestamp: 0,
            part: 0,
            more: false,
            tables: vec![schema("shop"), schema("other")],
            changes: vec![
                Change::Insert {
                    table: 0,
                    rows: vec![vec![Value::Int(1)]],
                },
                Change::Ddl(Ddl {
                    database: Some("shop".into()),
                    sql: b"CREATE TABLE other.x LIKE shop.t".to_vec(),
                    ..Ddl::default()
                }),
            ],
            events: Some(RowEvents {
                format: vec![0; 19],
                crc32: true,
                table_maps: vec![table_map("shop", "t"), table_map("other", "t")],
                rows: vec![vec![], vec![]],
            }),
            xa: None,
        };
        rw().transaction(&mut txn);
        assert_eq!(txn.tables[0].database, "shop_copy");
        assert_eq!(txn.tables[1].database, "other");
        let ev = txn.events.as_ref().unwrap();
        assert_eq!(ev.table_maps[0], table_map("shop_copy", "t"));
        assert_eq!(ev.table_maps[1], table_map("other", "t"));
        let Change::Ddl(d) = &txn.changes[1] else {
            panic!()
        };
        assert_eq!(d.database.as_deref(), Some("shop_copy"));
        assert_eq!(d.sql, b"CREATE TABLE other.x LIKE shop_copy.t".to_vec());
    }
}
