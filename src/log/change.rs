//! rowcast's own change format: what flows from decode to the change log,
//! over the wire, and into the applier.
//!
//! Nothing here knows about `mysql_common`: decode translates binlog events
//! into these types, and every later stage sees only them. Values keep the
//! exact information the binlog carried (a DECIMAL stays its digits, a
//! TIMESTAMP stays seconds since the epoch), so applying them loses nothing.

use serde::{Deserialize, Serialize};

use crate::source::position::SourcePosition;

/// One committed source transaction, the unit of shipping and of applying,
/// or one numbered part of a large one.
///
/// A transaction bigger than the decoder's part size is cut into parts
/// `0, 1, ...`; every part but the last has `more` set. Parts are logged
/// and shipped one by one so memory stays bounded, but nothing treats a
/// part as committed: the change log shows readers only whole
/// transactions, and the slave applies all parts in one local transaction
/// that commits (with the checkpoint) at the last part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// Where the transaction ends in the primary's binlog. A slave that has
    /// applied this transaction stores exactly this as its checkpoint. A
    /// part with `more` set ends at its last row event instead, so the
    /// parts' positions increase too.
    pub position: SourcePosition,
    /// Commit time on the primary, seconds since the epoch (binlog header).
    pub timestamp: u32,
    /// Index of this part, 0 for the first (or only) one. Kept right after
    /// the position so the change log can read it without decoding rows.
    pub part: u32,
    /// More parts of the same source transaction follow.
    pub more: bool,
    /// The tables the row changes refer to, by index.
    pub tables: Vec<TableSchema>,
    pub changes: Vec<Change>,
    /// The primary's own binlog events behind `changes`, for replica
    /// tables that must be applied by the server's row-event applier
    /// (`replay.rs`). `None` for a snapshot chunk or a test's transaction.
    pub events: Option<RowEvents>,
    /// Set when this entry is a step of a two-phase XA transaction: its
    /// prepared rows (held by the slave, not applied) or its completion
    /// (no rows). `None` for every ordinary transaction, including
    /// `XA COMMIT ... ONE PHASE`, which the primary logs as one.
    #[serde(default)]
    pub xa: Option<XaStep>,
}

/// One step of a two-phase XA transaction as the primary logged it: the
/// prepared group and, later (maybe from another session or after a
/// restart of the primary), its own `XA COMMIT` or `XA ROLLBACK` group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum XaStep {
    /// The transaction's rows, prepared but not committed on the primary.
    Prepare(Xid),
    /// The prepared rows committed on the primary.
    Commit(Xid),
    /// The prepared rows rolled back on the primary.
    Rollback(Xid),
}

impl XaStep {
    pub fn xid(&self) -> &Xid {
        match self {
            XaStep::Prepare(x) | XaStep::Commit(x) | XaStep::Rollback(x) => x,
        }
    }
}

/// An XA transaction identifier: `gtrid`, `bqual` and `formatID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Xid {
    pub format_id: i64,
    pub gtrid: Vec<u8>,
    pub bqual: Vec<u8>,
}

impl std::fmt::Display for Xid {
    /// The form the binlog itself uses: `X'6731',X'',1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        write!(
            f,
            "X'{}',X'{}',{}",
            hex(&self.gtrid),
            hex(&self.bqual),
            self.format_id
        )
    }
}

impl Transaction {
    pub fn row_count(&self) -> usize {
        self.changes
            .iter()
            .map(|c| match c {
                Change::Insert { rows, .. } | Change::Delete { rows, .. } => rows.len(),
                Change::Update { rows, .. } => rows.len(),
                Change::PartialImage { rows, .. } => *rows as usize,
                Change::Ddl(_) => 0,
            })
            .sum()
    }

    /// The end of a source transaction: a whole one or its last part.
    pub fn is_commit(&self) -> bool {
        !self.more
    }

    /// One part of a transaction cut in several.
    pub fn is_part(&self) -> bool {
        self.more || self.part > 0
    }

    pub fn is_ddl(&self) -> bool {
        self.changes.iter().any(|c| matches!(c, Change::Ddl(_)))
    }
}

impl Change {
    /// Whether a row holds an ENUM's empty value (index 0), which a lax
    /// sql_mode on the primary stores for an invalid one and which no
    /// strict-mode statement can write back.
    pub fn holds_empty_enum(&self) -> bool {
        let empty = |row: &Row| row.iter().any(|v| matches!(v, Value::Enum(0)));
        match self {
            Change::Insert { rows, .. } | Change::Delete { rows, .. } => rows.iter().any(empty),
            Change::Update { rows, .. } => rows.iter().any(|(b, a)| empty(b) || empty(a)),
            Change::PartialImage { .. } | Change::Ddl(_) => false,
        }
    }

    /// The table slot a row change refers to (`None` for DDL).
    pub fn table(&self) -> Option<u32> {
        match self {
            Change::Insert { table, .. }
            | Change::Update { table, .. }
            | Change::Delete { table, .. }
            | Change::PartialImage { table, .. } => Some(*table),
            Change::Ddl(_) => None,
        }
    }

    /// Whether only the primary's own events can apply this change (see
    /// [`Change::PartialImage`]).
    pub fn native_only(&self) -> bool {
        matches!(self, Change::PartialImage { .. })
    }
}

/// The primary's binlog events behind a transaction's row changes, so the
/// replica can hand them to its own row-event applier (`BINLOG` statement)
/// exactly as a native replica's SQL thread would: its triggers do not
/// fire, its foreign keys cascade, rows are found by their exact bytes and
/// system-versioned history is kept.
///
/// Each event is its 19-byte header and body without the checksum (the
/// replayer adds it back when `crc32` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowEvents {
    /// The FORMAT_DESCRIPTION event the events were written under, whole.
    #[serde(serialize_with = "as_bytes::one")]
    pub format: Vec<u8>,
    /// The primary wrote CRC32 checksums (`binlog_checksum=CRC32`).
    pub crc32: bool,
    /// The TABLE_MAP event of each of the transaction's `tables`.
    #[serde(serialize_with = "as_bytes::list")]
    pub table_maps: Vec<Vec<u8>>,
    /// The ROWS events of each of the transaction's `changes`, in order
    /// (none for DDL).
    #[serde(serialize_with = "as_bytes::lists")]
    pub rows: Vec<Vec<Vec<u8>>>,
}

/// A table as the binlog's TABLE_MAP described it at the time of the change.
///
/// With `binlog_row_metadata=FULL` every column has its name, signedness
/// and collation, and the primary key is known. Otherwise (`MINIMAL`, or
/// no optional metadata at all: MySQL 5.7, MariaDB before 10.5) the schema
/// is *positional*: every column name is empty (a MySQL column name never
/// is), `primary_key` is empty, and `unsigned` and `collation` are what the
/// metadata gave (SIGNEDNESS and charsets with `MINIMAL`), else `false` and
/// `0`. The slave resolves a positional schema against its own table by
/// column position before applying it (`replica/positional.rs`), as a
/// native replica maps row images; the change log stores it as it came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    pub database: String,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the primary key, empty when there is none
    /// or it is not known (a positional schema).
    pub primary_key: Vec<u32>,
}

impl TableSchema {
    /// The TABLE_MAP carried no column names (see the type's doc).
    pub fn is_positional(&self) -> bool {
        self.columns.iter().any(|c| c.name.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub kind: ColumnKind,
    pub unsigned: bool,
    /// Collation id of a character column (0 when not a character column or
    /// unknown). `63` is `binary`.
    pub collation: u16,
}

/// The storage type of a column, as far as decoding and applying need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnKind {
    TinyInt,
    SmallInt,
    MediumInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal,
    Year,
    Date,
    Time,
    DateTime,
    Timestamp,
    Char,
    VarChar,
    Blob,
    Enum,
    Set,
    Bit,
    Json,
    Geometry,
    Other(u8),
}

/// One row change. Rows are aligned with the table's `columns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Insert {
        table: u32,
        rows: Vec<Row>,
    },
    /// Before and after images of each updated row.
    Update {
        table: u32,
        rows: Vec<(Row, Row)>,
    },
    Delete {
        table: u32,
        rows: Vec<Row>,
    },
    Ddl(Ddl),
    /// Row changes whose images lack columns: a session on the primary ran
    /// with `binlog_row_image=MINIMAL` or `NOBLOB` (the global setting must
    /// stay FULL, but a session may change it). An UPDATE's after image
    /// then holds only the changed columns and a DELETE's before image only
    /// the key, so no statement can be built from them, and rows
    /// are not kept. Only the primary's raw events (`Transaction::events`)
    /// apply it, through the replica's row-event applier, which finds each
    /// row as a native replica does.
    PartialImage {
        table: u32,
        /// How many rows the events change (for counts and batching).
        rows: u32,
    },
}

pub type Row = Vec<Value>;

/// A statement the primary logged as text (DDL), with the session context it
/// ran in: replaying it under another sql_mode, time zone or timestamp could
/// change what it does (an added `DEFAULT CURRENT_TIMESTAMP` column fills
/// the existing rows with the statement's time). These are the query event's
/// status variables, which a native replica sets the same way; `None` is
/// "not logged", and the replica's session is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    /// The session's default database, if any.
    pub database: Option<String>,
    /// The statement's bytes, in the session's `character_set_client`.
    pub sql: Vec<u8>,
    /// The session's `sql_mode` as the server's bit set.
    pub sql_mode: Option<u64>,
    /// `character_set_client`, `collation_connection`, `collation_server`.
    pub charset: Option<(u16, u16, u16)>,
    /// The error the statement ended with on the primary (0 for none). A
    /// statement that failed half way is logged with its error, and the
    /// replica must end with the same one.
    #[serde(default)]
    pub error_code: u16,
    /// The statement's start time, seconds since the epoch (`SET timestamp`
    /// on the primary shows here).
    #[serde(default)]
    pub timestamp: Option<u32>,
    /// Microseconds of `timestamp`, when the statement used them.
    #[serde(default)]
    pub timestamp_micros: Option<u32>,
    /// `time_zone` when the statement used it and it was not the server's.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `Q_FLAGS2`: auto_is_null, foreign_key_checks, unique_checks and
    /// (MariaDB) sql_if_exists as the server's option bits.
    #[serde(default)]
    pub flags2: Option<u32>,
    /// `auto_increment_increment`, `auto_increment_offset`.
    #[serde(default)]
    pub auto_increment: Option<(u16, u16)>,
    /// `lc_time_names` as the server's locale number.
    #[serde(default)]
    pub lc_time_names: Option<u16>,
    /// `collation_database`.
    #[serde(default)]
    pub collation_database: Option<u16>,
    /// `explicit_defaults_for_timestamp` (MySQL logs it).
    #[serde(default)]
    pub explicit_defaults_for_timestamp: Option<bool>,
    /// `default_collation_for_utf8mb4` (MySQL 8).
    #[serde(default)]
    pub default_collation_for_utf8mb4: Option<u16>,
}

impl Ddl {
    /// The statement for logs and messages (lossy where not UTF-8).
    pub fn sql_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.sql)
    }
}

/// Serializes byte strings as serde bytes instead of a sequence of `u8`:
/// the same encoding in bincode (a varint length, then the bytes) and in
/// JSON (an array of numbers), but bincode writes it in one copy rather
/// than byte by byte, which was a tenth of the master's decode time (the
/// raw events are about as many bytes as the binlog). Deserializing keeps
/// serde's derived `Vec<u8>` reader.
mod as_bytes {
    use serde::ser::{Serialize, SerializeSeq, Serializer};

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct List<'a>(&'a [Vec<u8>]);

    impl Serialize for List<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for b in self.0 {
                seq.serialize_element(&Bytes(b))?;
            }
            seq.end()
        }
    }

    pub fn one<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn list<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        List(v).serialize(s)
    }

    pub fn lists<S: Serializer>(v: &[Vec<Vec<u8>>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for l in v {
            seq.serialize_element(&List(l))?;
        }
        seq.end()
    }
}

/// A column value exactly as the binlog carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// DECIMAL in its canonical text form (e.g. `-12.3400`).
    Decimal(String),
    /// CHAR/VARCHAR/TEXT in the column's own charset, BINARY/BLOB/GEOMETRY.
    Bytes(#[serde(serialize_with = "as_bytes::one")] Vec<u8>),
    Date {
        year: u16,
        month: u8,
        day: u8,
    },
    DateTime {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micros: u32,
    },
    /// Seconds since the epoch in UTC; `0` is the zero timestamp.
    Timestamp {
        seconds: u32,
        micros: u32,
    },
    Time {
        negative: bool,
        hours: u32,
        minutes: u8,
        seconds: u8,
        micros: u32,
    },
    /// `0` is the year `0000`.
    Year(u16),
    /// 1-based index into the ENUM's members; 0 is the empty error value.
    Enum(u16),
    /// Bit set of the SET's members.
    Set(u64),
    Bit(u64),
    /// JSON as UTF-8 text.
    Json(#[serde(serialize_with = "as_bytes::one")] Vec<u8>),
    /// A MySQL partial JSON update (`binlog_row_value_options=PARTIAL_JSON`):
    /// edits to apply, in order, to the column's current value. Only ever
    /// in an UPDATE's after-image.
    JsonDiff(Vec<JsonEdit>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonEdit {
    pub op: JsonEditOp,
    /// A JSON path such as `$.a[2]`.
    pub path: String,
    /// The new value as JSON text (absent for `Remove`).
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JsonEditOp {
    Replace,
    Insert,
    Remove,
}

#[cfg(test)]
impl Transaction {
    /// An empty transaction ending at `b.000001:offset`, committed at
    /// `timestamp`: for tests that need only positions and times.
    pub(crate) fn empty_at(offset: u64, timestamp: u32) -> Transaction {
        Transaction {
            position: crate::source::position::SourcePosition::new("b.000001", offset),
            timestamp,
            part: 0,
            more: false,
            tables: vec![],
            changes: vec![],
            events: None,
            xa: None,
        }
    }
}

impl Transaction {
    /// A transaction of the replica's own at `position` (a snapshot's
    /// rows, a seed's checkpoint): no rows logged by a primary, no raw
    /// events, no XA.
    pub fn local(
        position: crate::source::position::SourcePosition,
        tables: Vec<TableSchema>,
    ) -> Transaction {
        Transaction {
            position,
            timestamp: 0,
            part: 0,
            more: false,
            tables,
            changes: Vec::new(),
            events: None,
            xa: None,
        }
    }
}

#[cfg(test)]
impl TableSchema {
    /// Table `d.<name>` of signed INT columns named `columns`, keyed by
    /// `primary_key`: for tests.
    pub(crate) fn of_ints(name: &str, columns: &[&str], primary_key: Vec<u32>) -> TableSchema {
        TableSchema {
            database: "d".into(),
            name: name.into(),
            columns: columns
                .iter()
                .map(|n| ColumnDef {
                    name: (*n).into(),
                    kind: ColumnKind::Int,
                    unsigned: false,
                    collation: 0,
                })
                .collect(),
            primary_key,
        }
    }
}
