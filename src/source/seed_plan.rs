//! How a slave is seeded table by table, and how far it has got: the plan
//! the master makes when a slave asks to be seeded, which the slave keeps
//! (in `rowcast.seed`) and gives back when it reconnects.
//!
//! A table is copied in one of two ways:
//! - **by ranges**: a table whose primary key is one integer column and
//!   that is in no foreign key. Its key space is cut into ranges (one per
//!   snapshot thread for a large table), and each range is read in key
//!   order, one chunk of rows per short transaction, each chunk at an
//!   exact binlog position of its own ([`LoadedChunk`]);
//! - **whole**: every other table (no primary key, a key of several or
//!   non-integer columns, whose order only the server's collations know,
//!   or in a foreign key). It is read in one consistent read at one
//!   position; the tables in foreign keys all in the same one, so that the
//!   replica sees parents and children at the same moment (cascades are
//!   not in the binlog: the replica must perform them on rows that are
//!   there).
//!
//! [`crate::replica::seed_gate`] explains why the replica ends equal to
//! the primary.

use serde::{Deserialize, Serialize};

use crate::log::change::{Row, TableSchema, Value};
use crate::source::position::SourcePosition;

/// An integer primary key value, signed or not.
pub type Key = i128;

/// One table of a seed and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedTable {
    pub database: String,
    pub name: String,
    /// The key column (ranged tables): its name, 0-based position among
    /// all the table's columns (for row images without names), whether
    /// it is unsigned and its width in bits.
    pub key: Option<KeyColumn>,
    /// Copied together with the other tables of the same group, in one
    /// consistent read (0: ranged, or alone).
    pub group: u32,
    pub ranges: Vec<SeedRange>,
    /// Row and byte estimates from the table statistics.
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyColumn {
    pub name: String,
    pub ordinal: u32,
    pub unsigned: bool,
    pub bits: u32,
}

/// Keys `lo <= k < hi` (`None`: unbounded), and what of them is loaded.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SeedRange {
    pub lo: Option<Key>,
    pub hi: Option<Key>,
    /// The last key loaded (`None`: nothing yet).
    pub after: Option<Key>,
    /// Every key of the range is loaded.
    pub done: bool,
    /// The chunks loaded, in key order, each with the position it was
    /// read at (only those the stream may not have passed yet are kept).
    pub chunks: Vec<LoadedChunk>,
    /// Rows and bytes loaded so far.
    pub rows: u64,
    pub bytes: u64,
    /// Keys up to here take every change: the stream has passed the
    /// position of the chunks that held them (kept by the slave only).
    pub strict_upto: Option<Key>,
    /// Every key of the range does.
    pub strict_all: bool,
}

/// Keys up to and including `upto` (`None`: to the range's end) were read
/// at `position`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedChunk {
    pub upto: Option<Key>,
    pub position: SourcePosition,
}

/// One chunk of rows as the master read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedChunk {
    pub database: String,
    pub name: String,
    pub range: u32,
    /// The columns as read (generated ones left out).
    pub schema: TableSchema,
    pub rows: Vec<Row>,
    /// Where the rows were read (every chunk of a whole table: the same).
    pub position: SourcePosition,
    /// A whole table's first chunk: the slave empties the table first.
    pub first: bool,
    /// The range (a whole table: the table) is complete with this chunk.
    pub done: bool,
    /// The last key in `rows` (ranged tables).
    pub upto: Option<Key>,
}

impl SeedTable {
    pub fn is_done(&self) -> bool {
        self.ranges.iter().all(|r| r.done)
    }

    pub fn rows_done(&self) -> u64 {
        self.ranges.iter().map(|r| r.rows).sum()
    }

    pub fn bytes_done(&self) -> u64 {
        self.ranges.iter().map(|r| r.bytes).sum()
    }
}

/// A key value as a [`Key`]. An unsigned column whose image came without
/// signedness (a positional schema) shows as a negative number: its bits
/// say what it is.
pub fn key_value(value: &Value, column: &KeyColumn) -> Option<Key> {
    match *value {
        Value::Int(i) if column.unsigned && i < 0 => Some(i as Key + (1 << column.bits.min(64))),
        Value::Int(i) => Some(i as Key),
        Value::UInt(u) => Some(u as Key),
        _ => None,
    }
}

/// The width of an integer type by its `DATA_TYPE`, if it is one.
pub fn integer_bits(data_type: &str) -> Option<u32> {
    Some(match data_type {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" | "integer" => 32,
        "bigint" => 64,
        _ => return None,
    })
}

/// Cuts `min..=max` into `parts` ranges, the first and last unbounded (a
/// key below `min` or above `max` inserted later still has a range).
pub fn split(min: Key, max: Key, parts: u32) -> Vec<SeedRange> {
    let parts = parts.max(1) as Key;
    let span = (max - min + 1).max(1);
    let step = (span / parts).max(1);
    let mut bounds = Vec::new();
    let mut at = min + step;
    while at <= max && (bounds.len() as Key) < parts - 1 {
        bounds.push(at);
        at += step;
    }
    let mut ranges = Vec::new();
    let mut lo = None;
    for b in bounds {
        ranges.push(SeedRange {
            lo,
            hi: Some(b),
            ..SeedRange::default()
        });
        lo = Some(b);
    }
    ranges.push(SeedRange {
        lo,
        hi: None,
        ..SeedRange::default()
    });
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_key_once() {
        let r = split(1, 1000, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].lo, None);
        assert_eq!(r[3].hi, None);
        for w in r.windows(2) {
            assert_eq!(w[0].hi, w[1].lo);
        }
        assert_eq!(split(5, 5, 4).len(), 1);
        assert_eq!(split(1, 3, 8).len(), 3);
    }

    #[test]
    fn unsigned_keys_without_signedness_are_read_back() {
        let col = KeyColumn {
            name: "id".into(),
            ordinal: 0,
            unsigned: true,
            bits: 32,
        };
        assert_eq!(key_value(&Value::Int(-1), &col), Some(4_294_967_295));
        assert_eq!(key_value(&Value::UInt(7), &col), Some(7));
        assert_eq!(key_value(&Value::Null, &col), None);
    }
}
