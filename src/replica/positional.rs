//! Positional schemas resolved against the replica's own table.
//!
//! Without `binlog_row_metadata=FULL` (MySQL 8's default `MINIMAL`, and
//! every MySQL 5.7 or MariaDB before 10.5, which log no optional metadata
//! at all) a TABLE_MAP names no columns and no primary key, and maybe not
//! even signedness and charsets: decode then gives a *positional*
//! [`TableSchema`] (empty column names). A native replica maps such row
//! images onto its own table by column position; so does this module,
//! before anything plans statements, computes a net effect or replays
//! events: a whole transaction before a batch's or a part's net effect
//! (`Applier::resolve_positional`), otherwise each change just before it
//! is applied (`Applier::resolve_change`, from `rows.rs`), so rows that
//! follow a DDL in their transaction meet the table it leaves.
//!
//! What it owns: reading the replica's table by ordinal position
//! ([`ReplicaTable`], cached per table until the next DDL or snapshot, like
//! the plans), checking that it can take the binlog's rows (the same number
//! of columns, each binlog column's type one the replica's column can hold;
//! else [`ApplyError::Positional`], naming the table, the column, both
//! types and the fix), filling in names, primary key, signedness and
//! collations, and fixing the values that depended on what the binlog did
//! not say: an integer read as signed for lack of SIGNEDNESS metadata whose
//! replica column is UNSIGNED becomes its unsigned value (the binlog holds
//! the column's bytes; a native replica reads them with its own column's
//! signedness too), and a BINARY(n) value the binlog stripped of its
//! trailing zero bytes is padded back when no charset told decode that the
//! column is binary.
//!
//! It also names what the replica's row-event applier refused: MariaDB
//! answers a row event for a column of another type (a BLOB where the
//! primary has a TINYBLOB, say) with a bare "Unknown error", so
//! [`row_event_mismatch`] reads the event's own TABLE_MAP (integer and BLOB
//! types with their sizes) against the replica's table, for any schema.
//!
//! What it does not do: convert between types (`slave_type_conversions`
//! has no counterpart: a mismatch stops the slave), or follow a DDL that
//! reorders columns while changes logged before it are still in flight:
//! those are mapped onto the replica's current definition, as a native
//! replica does. Full schemas pass through untouched.

use std::borrow::Cow;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::log::change::{Change, ColumnKind, Row, TableSchema, Transaction, Value};
use crate::replica::apply::Applier;
use crate::replica::apply_error::{sql_error, ApplyError};
use crate::source::position::SourcePosition;
use crate::sql;

/// The `binary` collation.
const BINARY_COLLATION: u16 = 63;

/// One column of the replica's table, as its `information_schema` gives it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ReplicaColumn {
    pub name: String,
    /// `DATA_TYPE`, lower case (`int`, `varchar`, `binary`, `uuid`, ...).
    pub data_type: String,
    /// `COLUMN_TYPE`, for messages (`int(10) unsigned`).
    pub column_type: String,
    pub unsigned: bool,
    /// The collation's id, 63 for a binary string type, 0 for none.
    pub collation: u16,
    /// `CHARACTER_OCTET_LENGTH`: a BINARY(n) column's n.
    pub octet_length: Option<u64>,
}

/// The replica's table by ordinal position, and its primary key.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ReplicaTable {
    pub columns: Vec<ReplicaColumn>,
    /// Positions in `columns` of the primary key, in key order.
    pub primary_key: Vec<u32>,
}

impl ReplicaTable {
    /// Reads `database`.`table` from the replica's catalog; `None` when it
    /// has no such table.
    pub async fn read(
        conn: &mut Conn,
        database: &str,
        table: &str,
    ) -> Result<Option<ReplicaTable>, mysql_async::Error> {
        type Col = (
            String,
            String,
            String,
            Option<u64>,
            Option<u64>,
            Option<String>,
        );
        let rows: Vec<Col> = conn
            .exec(
                "SELECT c.COLUMN_NAME, LOWER(c.DATA_TYPE), c.COLUMN_TYPE, c.CHARACTER_OCTET_LENGTH, \
                   co.ID, c.COLLATION_NAME \
                 FROM information_schema.COLUMNS c \
                 LEFT JOIN information_schema.COLLATIONS co ON co.COLLATION_NAME = c.COLLATION_NAME \
                 WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION",
                (database, table),
            )
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let columns: Vec<ReplicaColumn> = rows
            .into_iter()
            .map(
                |(name, data_type, column_type, octet_length, collation, collation_name)| {
                    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
                    let collation = match collation {
                        Some(id) => id as u16,
                        None if collation_name.is_none() && is_binary_string(&data_type) => {
                            BINARY_COLLATION
                        }
                        None => 0,
                    };
                    ReplicaColumn {
                        name,
                        data_type,
                        column_type,
                        unsigned,
                        collation,
                        octet_length,
                    }
                },
            )
            .collect();
        let key: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' \
                 ORDER BY SEQ_IN_INDEX",
                (database, table),
            )
            .await?;
        let primary_key = key
            .iter()
            .filter_map(|k| columns.iter().position(|c| c.name.eq_ignore_ascii_case(k)))
            .map(|i| i as u32)
            .collect();
        Ok(Some(ReplicaTable {
            columns,
            primary_key,
        }))
    }
}

fn is_binary_string(data_type: &str) -> bool {
    matches!(
        data_type,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
    )
}

/// Why the binlog's rows cannot be mapped onto the replica's table.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Mismatch {
    Missing,
    ColumnCount {
        binlog: usize,
        replica: usize,
    },
    Type {
        /// 1-based, as `@1` in `mysqlbinlog -v`.
        position: usize,
        name: String,
        binlog: ColumnKind,
        replica: String,
    },
    /// The binlog said UNSIGNED (SIGNEDNESS metadata), the replica's
    /// column is signed: its upper half would not fit.
    Signedness {
        position: usize,
        name: String,
        binlog: ColumnKind,
        replica: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Missing => write!(f, "the replica has no such table"),
            Mismatch::ColumnCount { binlog, replica } => write!(
                f,
                "the primary's table has {binlog} columns, the replica's has {replica}"
            ),
            Mismatch::Type {
                position,
                name,
                binlog,
                replica,
            } => write!(
                f,
                "column {position} (`{name}` on the replica) is {} on the primary but `{replica}` \
                 on the replica",
                kind_name(*binlog)
            ),
            Mismatch::Signedness {
                position,
                name,
                binlog,
                replica,
            } => write!(
                f,
                "column {position} (`{name}` on the replica) is {} UNSIGNED on the primary but \
                 `{replica}` on the replica",
                kind_name(*binlog)
            ),
        }
    }
}

/// The binlog's type as SQL, for messages.
fn kind_name(kind: ColumnKind) -> String {
    match kind {
        ColumnKind::Char => "CHAR or BINARY".into(),
        ColumnKind::VarChar => "VARCHAR or VARBINARY".into(),
        ColumnKind::Blob => "a TEXT or BLOB type".into(),
        ColumnKind::Other(t) => format!("binlog type {t}"),
        k => format!("{k:?}").to_ascii_uppercase(),
    }
}

/// Whether a replica column of `DATA_TYPE` `data_type` can take a binlog
/// column of `kind` as it is, byte for byte.
pub(super) fn fits(kind: ColumnKind, data_type: &str) -> bool {
    use ColumnKind::*;
    match kind {
        TinyInt => data_type == "tinyint",
        SmallInt => data_type == "smallint",
        MediumInt => data_type == "mediumint",
        Int => data_type == "int",
        BigInt => data_type == "bigint",
        Float => data_type == "float",
        Double => data_type == "double",
        Decimal => data_type == "decimal",
        Year => data_type == "year",
        Date => data_type == "date",
        Time => data_type == "time",
        DateTime => data_type == "datetime",
        Timestamp => data_type == "timestamp",
        // MariaDB logs UUID, INET6 and INET4 as binary STRING(n).
        Char => matches!(data_type, "char" | "binary" | "uuid" | "inet6" | "inet4"),
        VarChar => matches!(data_type, "varchar" | "varbinary"),
        // MariaDB's JSON is LONGTEXT: it is a MySQL replica's JSON too.
        Blob => matches!(
            data_type,
            "tinytext"
                | "text"
                | "mediumtext"
                | "longtext"
                | "tinyblob"
                | "blob"
                | "mediumblob"
                | "longblob"
                | "json"
        ),
        Enum => data_type == "enum",
        Set => data_type == "set",
        Bit => data_type == "bit",
        // A MySQL primary's JSON on a MariaDB replica is LONGTEXT.
        Json => matches!(data_type, "json" | "longtext"),
        Geometry => matches!(
            data_type,
            "geometry"
                | "point"
                | "linestring"
                | "polygon"
                | "multipoint"
                | "multilinestring"
                | "multipolygon"
                | "geometrycollection"
                | "geomcollection"
        ),
        // A type rowcast does not know cannot be checked; its values pass
        // as bytes.
        Other(_) => true,
    }
}

/// An integer kind's width in bits.
fn int_bits(kind: ColumnKind) -> Option<u32> {
    match kind {
        ColumnKind::TinyInt => Some(8),
        ColumnKind::SmallInt => Some(16),
        ColumnKind::MediumInt => Some(24),
        ColumnKind::Int => Some(32),
        ColumnKind::BigInt => Some(64),
        _ => None,
    }
}

/// What a value of one column needs once the replica's table is known.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fix {
    /// Read as signed for lack of SIGNEDNESS; the column is UNSIGNED of
    /// this many bits.
    Unsigned(u32),
    /// A BINARY(n) value: right-pad with 0x00 to n bytes.
    Pad(usize),
}

/// A positional schema mapped onto the replica's table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Resolution {
    /// The binlog's schema with the replica's names, primary key,
    /// signedness and (where the binlog had none) collations.
    pub schema: TableSchema,
    fixes: Vec<(usize, Fix)>,
}

/// Maps positional `schema` onto `replica`, or says why it cannot.
pub(super) fn resolve(
    schema: &TableSchema,
    replica: Option<&ReplicaTable>,
) -> Result<Resolution, Mismatch> {
    let replica = replica.ok_or(Mismatch::Missing)?;
    if schema.columns.len() != replica.columns.len() {
        return Err(Mismatch::ColumnCount {
            binlog: schema.columns.len(),
            replica: replica.columns.len(),
        });
    }
    let mut resolved = schema.clone();
    let mut fixes = Vec::new();
    for (i, (col, theirs)) in resolved
        .columns
        .iter_mut()
        .zip(&replica.columns)
        .enumerate()
    {
        if !fits(col.kind, &theirs.data_type) {
            return Err(Mismatch::Type {
                position: i + 1,
                name: theirs.name.clone(),
                binlog: col.kind,
                replica: theirs.column_type.clone(),
            });
        }
        if let Some(bits) = int_bits(col.kind) {
            if col.unsigned && !theirs.unsigned {
                return Err(Mismatch::Signedness {
                    position: i + 1,
                    name: theirs.name.clone(),
                    binlog: col.kind,
                    replica: theirs.column_type.clone(),
                });
            }
            if !col.unsigned && theirs.unsigned {
                fixes.push((i, Fix::Unsigned(bits)));
            }
        }
        if col.kind == ColumnKind::Char {
            let width = match theirs.data_type.as_str() {
                "binary" => theirs.octet_length.map(|n| n as usize),
                "uuid" | "inet6" => Some(16),
                "inet4" => Some(4),
                _ => None,
            };
            if let Some(width) = width {
                fixes.push((i, Fix::Pad(width)));
            }
        }
        col.name = theirs.name.clone();
        col.unsigned = col.unsigned || theirs.unsigned;
        if col.collation == 0 {
            col.collation = theirs.collation;
        }
    }
    if resolved.primary_key.is_empty() {
        resolved.primary_key = replica.primary_key.clone();
    }
    Ok(Resolution {
        schema: resolved,
        fixes,
    })
}

impl Resolution {
    /// Fixes one row image of the table in place.
    fn fix_row(&self, row: &mut Row) {
        for &(i, fix) in &self.fixes {
            let Some(v) = row.get_mut(i) else { continue };
            match (fix, &mut *v) {
                // The column's bytes, read as two's complement of its width.
                (Fix::Unsigned(bits), Value::Int(n)) => {
                    let mask = u64::MAX >> (64 - bits);
                    *v = Value::UInt(*n as u64 & mask);
                }
                (Fix::Pad(width), Value::Bytes(b)) if b.len() < width => b.resize(width, 0),
                _ => {}
            }
        }
    }

    fn fix_change(&self, change: &mut Change) {
        match change {
            Change::Insert { rows, .. } | Change::Delete { rows, .. } => {
                rows.iter_mut().for_each(|r| self.fix_row(r))
            }
            Change::Update { rows, .. } => rows.iter_mut().for_each(|(b, a)| {
                self.fix_row(b);
                self.fix_row(a);
            }),
            // A partial image has no rows here (only its events apply it),
            // and DDL none at all.
            Change::PartialImage { .. } | Change::Ddl(_) => {}
        }
    }
}

/// `txn` with each table slot's resolution applied (`None`: left as is).
fn resolved_transaction(txn: &Transaction, resolutions: &[Option<Resolution>]) -> Transaction {
    let mut out = txn.clone();
    for (slot, r) in resolutions.iter().enumerate() {
        if let Some(r) = r {
            out.tables[slot] = r.schema.clone();
        }
    }
    for change in &mut out.changes {
        if let Some(Some(r)) = change.table().and_then(|t| resolutions.get(t as usize)) {
            r.fix_change(change);
        }
    }
    out
}

/// The SQL type of each column of a raw TABLE_MAP event (19-byte header
/// and body, as `RowEvents` keeps it), as the server names it in its
/// conversion errors: `int`, `blob`, `longblob`, ... `None` for a column
/// whose type this does not name, and `None` overall for a malformed event.
pub(super) fn table_map_types(event: &[u8]) -> Option<Vec<Option<&'static str>>> {
    struct Cursor<'a>(&'a [u8]);
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (a, b) = self.0.split_at_checked(n)?;
            self.0 = b;
            Some(a)
        }
        fn le(&mut self, n: usize) -> Option<u64> {
            let b = self.take(n)?;
            Some(b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x)))
        }
        /// A length-encoded integer.
        fn packed(&mut self) -> Option<u64> {
            match self.le(1)? {
                n @ 0..=250 => Some(n),
                252 => self.le(2),
                253 => self.le(3),
                254 => self.le(8),
                _ => None,
            }
        }
    }
    // Header, then table id (6 bytes) and flags (2).
    let mut c = Cursor(event.get(19 + 8..)?);
    for _ in 0..2 {
        // Database, then table: a length, the name and a NUL.
        let len = c.le(1)? as usize;
        c.take(len + 1)?;
    }
    let count = c.packed()? as usize;
    let types = c.take(count)?;
    let meta_len = c.packed()? as usize;
    let mut meta = c.take(meta_len)?;
    let mut out = Vec::with_capacity(count);
    for t in types {
        // Metadata bytes per type (sql/log_event.h, save_field_metadata).
        let width = match t {
            4 | 5 | 17 | 18 | 19 | 245 | 252 | 255 => 1,
            15 | 16 | 246 | 247 | 248 | 253 | 254 => 2,
            _ => 0,
        };
        let (m, rest) = meta.split_at_checked(width)?;
        meta = rest;
        out.push(match (t, m) {
            (1, _) => Some("tinyint"),
            (2, _) => Some("smallint"),
            (9, _) => Some("mediumint"),
            (3, _) => Some("int"),
            (8, _) => Some("bigint"),
            (4, _) => Some("float"),
            (5, _) => Some("double"),
            (252, [1]) => Some("tinyblob"),
            (252, [2]) => Some("blob"),
            (252, [3]) => Some("mediumblob"),
            (252, [4]) => Some("longblob"),
            // MySQL's binary JSON, which MariaDB's applier cannot read.
            (245, _) => Some("json"),
            _ => None,
        });
    }
    Some(out)
}

/// The replica column's type in the server's naming of
/// [`table_map_types`], for the types that names (`text` is `blob`).
fn server_type(data_type: &str) -> &str {
    match data_type {
        "tinytext" => "tinyblob",
        "text" => "blob",
        "mediumtext" => "mediumblob",
        // MariaDB's JSON.
        "longtext" => "longblob",
        t => t,
    }
}

/// The first column the replica's row-event applier cannot take as the
/// binlog has it, as the server itself words it in its error log.
pub(super) fn row_event_mismatch(event: &[u8], replica: &ReplicaTable) -> Option<String> {
    let types = table_map_types(event)?;
    types
        .iter()
        .zip(&replica.columns)
        .enumerate()
        .find_map(|(i, (binlog, theirs))| {
            let binlog = (*binlog)?;
            (server_type(&theirs.data_type) != binlog).then(|| {
                format!(
                    "column {} (`{}`) cannot be converted from type '{binlog}' to type '{}'",
                    i + 1,
                    theirs.name,
                    theirs.data_type
                )
            })
        })
}

impl Applier {
    /// The replica's table by position, read once until the next DDL.
    pub(super) async fn replica_table(
        &mut self,
        schema: &TableSchema,
    ) -> Result<Option<Arc<ReplicaTable>>, mysql_async::Error> {
        let key = (schema.database.clone(), schema.name.clone());
        if let Some(t) = self.positional.get(&key) {
            return Ok(t.clone());
        }
        let t = ReplicaTable::read(&mut self.conn, &schema.database, &schema.name)
            .await?
            .map(Arc::new);
        self.positional.insert(key, t.clone());
        Ok(t)
    }

    /// How positional `schema` maps onto the replica's table, or the error
    /// that names what does not match.
    async fn resolution(
        &mut self,
        schema: &TableSchema,
        pos: &SourcePosition,
    ) -> Result<Resolution, ApplyError> {
        let replica = self
            .replica_table(schema)
            .await
            .map_err(|e| sql_error(pos, e))?;
        resolve(schema, replica.as_deref()).map_err(|m| ApplyError::Positional {
            table: sql::table(&schema.database, &schema.name),
            position: pos.to_string(),
            reason: m.to_string(),
        })
    }

    /// `txn` with every positional table resolved (borrowed as it is when
    /// it has none). Only for a transaction without DDL: rows after a
    /// statement that changes their table must be mapped onto the table
    /// it leaves, which [`Applier::resolve_change`] does change by change.
    pub(super) async fn resolve_positional<'t>(
        &mut self,
        txn: &'t Transaction,
    ) -> Result<Cow<'t, Transaction>, ApplyError> {
        if !txn.tables.iter().any(TableSchema::is_positional) {
            return Ok(Cow::Borrowed(txn));
        }
        let mut resolutions = Vec::with_capacity(txn.tables.len());
        for schema in &txn.tables {
            resolutions.push(match schema.is_positional() {
                true => Some(self.resolution(schema, &txn.position).await?),
                false => None,
            });
        }
        Ok(Cow::Owned(resolved_transaction(txn, &resolutions)))
    }

    /// One change on positional `schema`, resolved against the replica's
    /// table as it is now.
    pub(super) async fn resolve_change(
        &mut self,
        schema: &TableSchema,
        change: &Change,
        pos: &SourcePosition,
    ) -> Result<(TableSchema, Change), ApplyError> {
        let r = self.resolution(schema, pos).await?;
        let mut change = change.clone();
        r.fix_change(&mut change);
        Ok((r.schema, change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::ColumnDef;

    fn positional(kinds: &[(ColumnKind, bool, u16)]) -> TableSchema {
        TableSchema {
            database: "d".into(),
            name: "t".into(),
            columns: kinds
                .iter()
                .map(|&(kind, unsigned, collation)| ColumnDef {
                    name: String::new(),
                    kind,
                    unsigned,
                    collation,
                })
                .collect(),
            primary_key: vec![],
        }
    }

    fn column(name: &str, data_type: &str, column_type: &str) -> ReplicaColumn {
        ReplicaColumn {
            name: name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            unsigned: column_type.contains("unsigned"),
            collation: if data_type == "binary" { 63 } else { 0 },
            octet_length: (data_type == "binary").then_some(4),
        }
    }

    /// `d.t(id INT UNSIGNED PK, b BINARY(4), s VARCHAR(10), big BIGINT UNSIGNED)`.
    fn replica() -> ReplicaTable {
        ReplicaTable {
            columns: vec![
                column("id", "int", "int(10) unsigned"),
                column("b", "binary", "binary(4)"),
                column("s", "varchar", "varchar(10)"),
                column("big", "bigint", "bigint(20) unsigned"),
            ],
            primary_key: vec![0],
        }
    }

    /// As MySQL 5.7 logs `replica()`'s table: no signedness, no charsets.
    fn bare() -> TableSchema {
        positional(&[
            (ColumnKind::Int, false, 0),
            (ColumnKind::Char, false, 0),
            (ColumnKind::VarChar, false, 0),
            (ColumnKind::BigInt, false, 0),
        ])
    }

    #[test]
    fn fills_names_key_signedness_and_collations_from_the_replica() {
        let schema = bare();
        assert!(schema.is_positional());
        let r = resolve(&schema, Some(&replica())).unwrap();
        assert!(!r.schema.is_positional());
        let names: Vec<&str> = r.schema.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "b", "s", "big"]);
        assert_eq!(r.schema.primary_key, vec![0]);
        let unsigned: Vec<bool> = r.schema.columns.iter().map(|c| c.unsigned).collect();
        assert_eq!(unsigned, [true, false, false, true]);
        assert_eq!(r.schema.columns[1].collation, 63);
        // What the binlog knew stays: a utf8mb4 collation is not replaced.
        let mut known = bare();
        known.columns[2].collation = 45;
        let r = resolve(&known, Some(&replica())).unwrap();
        assert_eq!(r.schema.columns[2].collation, 45);
    }

    #[test]
    fn unsigned_values_read_as_signed_and_short_binaries_are_fixed() {
        let r = resolve(&bare(), Some(&replica())).unwrap();
        let mut row = vec![
            Value::Int(-1),
            Value::Bytes(vec![1]),
            Value::Bytes(b"x".to_vec()),
            Value::Int(-1),
        ];
        r.fix_row(&mut row);
        assert_eq!(
            row,
            vec![
                Value::UInt(u32::MAX as u64),
                Value::Bytes(vec![1, 0, 0, 0]),
                Value::Bytes(b"x".to_vec()),
                Value::UInt(u64::MAX),
            ]
        );
        let mut small = vec![Value::Int(7), Value::Null, Value::Null, Value::Int(5)];
        r.fix_row(&mut small);
        assert_eq!(small[0], Value::UInt(7));
        assert_eq!(small[1], Value::Null);
        // Every width: -1 read as signed is the width's maximum.
        for (kind, data_type, max) in [
            (ColumnKind::TinyInt, "tinyint", u8::MAX as u64),
            (ColumnKind::SmallInt, "smallint", u16::MAX as u64),
            (ColumnKind::MediumInt, "mediumint", 0xff_ffff),
            (ColumnKind::Int, "int", u32::MAX as u64),
            (ColumnKind::BigInt, "bigint", u64::MAX),
        ] {
            let table = ReplicaTable {
                columns: vec![column("u", data_type, "x unsigned")],
                primary_key: vec![],
            };
            let r = resolve(&positional(&[(kind, false, 0)]), Some(&table)).unwrap();
            let mut row = vec![Value::Int(-1)];
            r.fix_row(&mut row);
            assert_eq!(row, vec![Value::UInt(max)], "{kind:?}");
        }
    }

    #[test]
    fn a_known_unsigned_column_and_a_signed_replica_column_stay_as_they_are() {
        // MINIMAL logs SIGNEDNESS: decode already gave an unsigned value.
        let mut schema = bare();
        schema.columns[0].unsigned = true;
        let r = resolve(&schema, Some(&replica())).unwrap();
        let mut row = vec![Value::UInt(5), Value::Null, Value::Null, Value::Null];
        r.fix_row(&mut row);
        assert_eq!(row[0], Value::UInt(5));
        let signed = ReplicaTable {
            columns: vec![column("i", "int", "int(11)")],
            primary_key: vec![],
        };
        let r = resolve(&positional(&[(ColumnKind::Int, false, 0)]), Some(&signed)).unwrap();
        let mut row = vec![Value::Int(-1)];
        r.fix_row(&mut row);
        assert_eq!(row, vec![Value::Int(-1)]);
        assert!(r.schema.primary_key.is_empty(), "no key on either side");
    }

    #[test]
    fn mismatches_name_the_column_both_types_and_the_count() {
        let mut short = replica();
        short.columns.pop();
        let e = resolve(&bare(), Some(&short)).unwrap_err();
        assert_eq!(
            e,
            Mismatch::ColumnCount {
                binlog: 4,
                replica: 3
            }
        );
        assert!(e.to_string().contains("4 columns"), "{e}");
        let mut other = replica();
        other.columns[2] = column("s", "int", "int(11)");
        let e = resolve(&bare(), Some(&other)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("column 3") && msg.contains("`s`") && msg.contains("VARCHAR"),
            "{msg}"
        );
        assert!(msg.contains("`int(11)`"), "{msg}");
        let mut unsigned = bare();
        unsigned.columns[2] = ColumnDef {
            name: String::new(),
            kind: ColumnKind::Int,
            unsigned: true,
            collation: 0,
        };
        let e = resolve(&unsigned, Some(&other)).unwrap_err();
        assert!(matches!(e, Mismatch::Signedness { position: 3, .. }), "{e}");
        assert_eq!(resolve(&bare(), None).unwrap_err(), Mismatch::Missing);
    }

    #[test]
    fn binlog_kinds_fit_the_replica_types_that_hold_them() {
        assert!(fits(ColumnKind::Blob, "mediumtext"));
        assert!(fits(ColumnKind::Blob, "json"), "MariaDB JSON to MySQL");
        assert!(fits(ColumnKind::Json, "longtext"), "MySQL JSON to MariaDB");
        assert!(fits(ColumnKind::Char, "uuid"));
        assert!(fits(ColumnKind::Geometry, "point"));
        assert!(!fits(ColumnKind::Int, "bigint"));
        assert!(!fits(ColumnKind::VarChar, "char"));
        assert!(!fits(ColumnKind::Enum, "set"));
        assert!(!fits(ColumnKind::DateTime, "timestamp"));
    }

    /// `x.nokey(a INT, b BLOB, v VARCHAR(10))` as a TABLE_MAP event.
    fn table_map() -> Vec<u8> {
        let mut e = vec![0u8; 19];
        e.extend([7, 0, 0, 0, 0, 0, 1, 0]);
        e.extend(b"\x01x\0\x05nokey\0");
        e.extend([3, 3, 252, 15, 3, 2, 10, 0, 0b110]);
        e
    }

    #[test]
    fn mysql_json_is_named_unreadable_for_a_mariadb_replica() {
        let mut e = vec![0u8; 19];
        e.extend([7, 0, 0, 0, 0, 0, 1, 0]);
        e.extend(b"\x01x\0\x01j\0");
        e.extend([2, 3, 245, 1, 4, 0b10]);
        let replica = |json: &str| ReplicaTable {
            columns: vec![column("a", "int", "int(11)"), column("j", json, json)],
            primary_key: vec![],
        };
        assert_eq!(
            row_event_mismatch(&e, &replica("longtext")).as_deref(),
            Some("column 2 (`j`) cannot be converted from type 'json' to type 'longtext'")
        );
        assert_eq!(row_event_mismatch(&e, &replica("json")), None);
    }

    #[test]
    fn a_row_event_mismatch_is_named_as_the_server_names_it() {
        assert_eq!(
            table_map_types(&table_map()).unwrap(),
            [Some("int"), Some("blob"), None]
        );
        let replica = |blob: &str| ReplicaTable {
            columns: vec![
                column("a", "int", "int(11)"),
                column("b", blob, blob),
                column("v", "varchar", "varchar(10)"),
            ],
            primary_key: vec![],
        };
        assert_eq!(
            row_event_mismatch(&table_map(), &replica("longblob")).as_deref(),
            Some("column 2 (`b`) cannot be converted from type 'blob' to type 'longblob'")
        );
        assert_eq!(row_event_mismatch(&table_map(), &replica("blob")), None);
        assert_eq!(row_event_mismatch(&table_map(), &replica("text")), None);
        let mut cut = table_map();
        cut.truncate(cut.len() - 3);
        assert_eq!(table_map_types(&cut), None, "metadata cut short");
    }

    #[test]
    fn only_the_positional_tables_of_a_transaction_change() {
        let full = TableSchema::of_ints("f", &["a"], vec![0]);
        let mut txn = Transaction::empty_at(100, 0);
        txn.tables = vec![full.clone(), bare()];
        txn.changes = vec![
            Change::Insert {
                table: 0,
                rows: vec![vec![Value::Int(-1)]],
            },
            Change::Update {
                table: 1,
                rows: vec![(
                    vec![Value::Int(-2), Value::Null, Value::Null, Value::Null],
                    vec![Value::Int(-3), Value::Null, Value::Null, Value::Null],
                )],
            },
            Change::PartialImage { table: 1, rows: 2 },
        ];
        let r = resolve(&txn.tables[1], Some(&replica())).unwrap();
        let out = resolved_transaction(&txn, &[None, Some(r)]);
        assert_eq!(out.tables[0], full);
        assert_eq!(out.tables[1].columns[0].name, "id");
        assert_eq!(out.changes[0], txn.changes[0], "a full schema's rows stay");
        let Change::Update { rows, .. } = &out.changes[1] else {
            panic!()
        };
        assert_eq!(rows[0].0[0], Value::UInt(u32::MAX as u64 - 1));
        assert_eq!(rows[0].1[0], Value::UInt(u32::MAX as u64 - 2));
        assert_eq!(out.changes[2], txn.changes[2]);
    }
}
