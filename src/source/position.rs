//! Source positions: where in the primary's binlog a transaction ends.
//!
//! A position is the one fact that ties the master's change log, the wire
//! protocol and the slave's checkpoint together, so it is a type with a total
//! order, not a loose `(String, u64)`. It advances only at a commit: every
//! position stored anywhere in rowcast is the end of a whole transaction.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in the primary's binlog: the file name and the byte offset just
/// after a committed transaction, with the transaction's GTID when the
/// server assigned one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Which primary the file/offset belong to: the master bumps it when
    /// it follows a new primary after a failover, whose binlog coordinates
    /// start afresh.
    pub epoch: u32,
    pub file: String,
    pub offset: u64,
    pub gtid: Option<Gtid>,
}

impl SourcePosition {
    pub fn new(file: impl Into<String>, offset: u64) -> Self {
        SourcePosition {
            epoch: 0,
            file: file.into(),
            offset,
            gtid: None,
        }
    }

    /// Binlog files are named `base.NNNNNN`; the numeric suffix orders them.
    /// A rotation can widen the suffix (`.999999` → `.1000000`), so comparing
    /// the names as strings would be wrong.
    fn file_index(&self) -> (u64, &str) {
        match self.file.rsplit_once('.') {
            Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (n.parse().unwrap_or(u64::MAX), base)
            }
            _ => (0, self.file.as_str()),
        }
    }

    /// Orders two positions by epoch, then file, then offset. The GTID is
    /// deliberately ignored: it names a transaction, the rest says where.
    pub fn cmp_location(&self, other: &SourcePosition) -> Ordering {
        let (a, _) = self.file_index();
        let (b, _) = other.file_index();
        self.epoch
            .cmp(&other.epoch)
            .then(a.cmp(&b))
            .then(self.offset.cmp(&other.offset))
    }

    pub fn is_after(&self, other: &SourcePosition) -> bool {
        self.cmp_location(other) == Ordering::Greater
    }
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch > 0 {
            write!(f, "epoch {} ", self.epoch)?;
        }
        write!(f, "{}:{}", self.file, self.offset)?;
        if let Some(g) = &self.gtid {
            write!(f, " (gtid {g})")?;
        }
        Ok(())
    }
}

/// A global transaction id, in the form of the server that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gtid {
    /// MariaDB's `domain-server-seq`.
    MariaDb { domain: u32, server: u32, seq: u64 },
    /// MySQL's `uuid:gno`.
    MySql { uuid: [u8; 16], gno: u64 },
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb {
                domain,
                server,
                seq,
            } => write!(f, "{domain}-{server}-{seq}"),
            Gtid::MySql { uuid, gno } => {
                for (i, b) in uuid.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                write!(f, ":{gno}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a GTID: expected MariaDB `domain-server-seq` or MySQL `uuid:n`")]
pub struct GtidParseError(String);

impl std::str::FromStr for Gtid {
    type Err = GtidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || GtidParseError(s.to_string());
        if let Some((uuid, gno)) = s.split_once(':') {
            let hex: String = uuid.chars().filter(|c| *c != '-').collect();
            if hex.len() != 32 {
                return Err(err());
            }
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| err())?;
            }
            let gno = gno.parse().map_err(|_| err())?;
            return Ok(Gtid::MySql { uuid: bytes, gno });
        }
        let mut parts = s.split('-');
        let (Some(d), Some(sv), Some(sq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        Ok(Gtid::MariaDb {
            domain: d.parse().map_err(|_| err())?,
            server: sv.parse().map_err(|_| err())?,
            seq: sq.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_numeric_file_suffix_then_offset() {
        let a = SourcePosition::new("binlog.999999", 900);
        let b = SourcePosition::new("binlog.1000000", 4);
        assert!(b.is_after(&a));
        assert!(!a.is_after(&b));
        let c = SourcePosition::new("binlog.000002", 10);
        let d = SourcePosition::new("binlog.000002", 11);
        assert!(d.is_after(&c));
        assert_eq!(c.cmp_location(&c.clone()), Ordering::Equal);
        // After a failover the new primary's coordinates start low again.
        let after_failover = SourcePosition {
            epoch: 1,
            ..SourcePosition::new("binlog.000001", 4)
        };
        assert!(after_failover.is_after(&b));
    }

    #[test]
    fn gtids_round_trip_through_text() {
        for s in ["0-1-42", "3-4294967295-18446744073709551615"] {
            assert_eq!(s.parse::<Gtid>().unwrap().to_string(), s);
        }
        let mysql = "3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
        assert_eq!(mysql.parse::<Gtid>().unwrap().to_string(), mysql);
        assert!("1-2".parse::<Gtid>().is_err());
        assert!("zz:1".parse::<Gtid>().is_err());
    }
}
