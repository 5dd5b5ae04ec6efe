//! MySQL GTID sets (`uuid:1-5:7,uuid2:1-3`): what a MySQL primary has
//! executed. A MySQL server resumes a binlog dump by GTID from a *set*
//! (COM_BINLOG_DUMP_GTID), not from one GTID as MariaDB does, so after a
//! failover the master needs everything its change log covers: the set at
//! the log's start plus the GTID of every logged transaction.
//!
//! MariaDB positions never need this: one GTID per replication domain
//! (`Gtid::MariaDb`) is its whole state.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Sorted, disjoint, non-adjacent `[start, end)` intervals of transaction
/// numbers per server UUID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtidSet {
    sets: BTreeMap<[u8; 16], Vec<(u64, u64)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a MySQL GTID set ({reason}); expected `uuid:1-5:7,uuid:1-3`")]
pub struct GtidSetParseError {
    text: String,
    reason: String,
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

impl GtidSet {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Adds `[start, end)` for `uuid`, merging with touching intervals.
    pub fn add_interval(&mut self, uuid: [u8; 16], start: u64, end: u64) {
        if start >= end {
            return;
        }
        let list = self.sets.entry(uuid).or_default();
        list.push((start, end));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    /// Adds one transaction `uuid:gno`.
    pub fn add(&mut self, uuid: [u8; 16], gno: u64) {
        self.add_interval(uuid, gno, gno.saturating_add(1));
    }

    pub fn contains(&self, uuid: &[u8; 16], gno: u64) -> bool {
        self.sets
            .get(uuid)
            .is_some_and(|l| l.iter().any(|&(s, e)| s <= gno && gno < e))
    }

    /// `(uuid, [start, end) intervals)` in UUID order, as the binlog dump
    /// request wants them.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 16], &[(u64, u64)])> {
        self.sets.iter().map(|(u, l)| (u, l.as_slice()))
    }
}

impl std::str::FromStr for GtidSet {
    type Err = GtidSetParseError;

    /// Parses `@@gtid_executed` text (whitespace and newlines allowed).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| GtidSetParseError {
            text: text.chars().take(200).collect(),
            reason: reason.into(),
        };
        let mut set = GtidSet::default();
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for entry in compact.split(',').filter(|e| !e.is_empty()) {
            let mut fields = entry.split(':');
            let uuid = fields
                .next()
                .and_then(parse_uuid)
                .ok_or_else(|| err("bad server UUID"))?;
            let mut any = false;
            for range in fields {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                    // MySQL 8.4 tagged GTIDs (`uuid:tag:1-5`) land here.
                    return Err(err(
                        "interval is not `n` or `n-m` (tagged GTIDs are not supported)",
                    ));
                };
                if a == 0 || b < a {
                    return Err(err("interval must be 1 or more and increasing"));
                }
                set.add_interval(uuid, a, b.saturating_add(1));
                any = true;
            }
            if !any {
                return Err(err("a UUID without intervals"));
            }
        }
        Ok(set)
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (uuid, list)) in self.sets.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            for (i, b) in uuid.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    f.write_str("-")?;
                }
                write!(f, "{b:02x}")?;
            }
            for &(s, e) in list {
                if e - s == 1 {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{}", e - 1)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "0a0b0c0d-0000-0000-0000-000000000001";

    #[test]
    fn parses_gtid_executed_and_prints_it_canonically() {
        let text = format!("{A}:1-5:7,\n{B}:1-3");
        let set: GtidSet = text.parse().unwrap();
        // UUIDs come out in byte order; text survives a round trip.
        assert_eq!(set.to_string(), format!("{B}:1-3,{A}:1-5:7"));
        assert_eq!(set.to_string().parse::<GtidSet>().unwrap(), set);
        let a = parse_uuid(A).unwrap();
        assert!(set.contains(&a, 5) && set.contains(&a, 7));
        assert!(!set.contains(&a, 6) && !set.contains(&a, 8));
        assert!("".parse::<GtidSet>().unwrap().is_empty());
        assert!(format!("{A}:tag:1-5").parse::<GtidSet>().is_err());
        assert!(format!("{A}:5-3").parse::<GtidSet>().is_err());
        assert!("nonsense:1".parse::<GtidSet>().is_err());
    }

    #[test]
    fn adding_transactions_merges_intervals() {
        let a = parse_uuid(A).unwrap();
        let mut set: GtidSet = format!("{A}:1-5:7").parse().unwrap();
        set.add(a, 6);
        assert_eq!(set.to_string(), format!("{A}:1-7"));
        set.add(a, 9);
        set.add(a, 3);
        assert_eq!(set.to_string(), format!("{A}:1-7:9"));
        assert_eq!(set.iter().next().unwrap().1, &[(1, 8), (9, 10)]);
    }
}
