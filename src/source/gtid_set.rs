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

use crate::source::position::{parse_uuid, write_uuid, Gtid, GtidTag};

/// A server UUID and maybe a tag: what MySQL calls a TSID.
type Tsid = ([u8; 16], Option<GtidTag>);

/// Sorted, disjoint, non-adjacent `[start, end)` intervals of transaction
/// numbers per server UUID and tag (MySQL's TSID: a tagged GTID
/// `uuid:tag:n` counts apart from the untagged `uuid:n`). Ordered as MySQL
/// orders TSIDs: by UUID, the untagged numbers before the tags, tags by
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtidSet {
    sets: BTreeMap<Tsid, Vec<(u64, u64)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a MySQL GTID set ({reason}); expected `uuid:1-5:7,uuid:1-3`, with tagged GTIDs `uuid:1-5:tag:1-3`")]
pub struct GtidSetParseError {
    text: String,
    reason: String,
}

impl GtidSet {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Adds `[start, end)` for `uuid` (and `tag`), merging with touching
    /// intervals.
    pub fn add_interval(&mut self, uuid: [u8; 16], tag: Option<GtidTag>, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let list = self.sets.entry((uuid, tag)).or_default();
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

    /// Adds one transaction `uuid[:tag]:gno`.
    pub fn add(&mut self, uuid: [u8; 16], tag: Option<GtidTag>, gno: u64) {
        self.add_interval(uuid, tag, gno, gno.saturating_add(1));
    }

    /// Adds a MySQL GTID; a MariaDB one has no place in a MySQL set and is
    /// left out.
    pub fn add_gtid(&mut self, gtid: &Gtid) {
        if let Gtid::MySql { uuid, tag, gno } = gtid {
            self.add(*uuid, tag.clone(), *gno);
        }
    }

    pub fn contains(&self, uuid: &[u8; 16], tag: Option<&GtidTag>, gno: u64) -> bool {
        self.sets
            .get(&(*uuid, tag.cloned()))
            .is_some_and(|l| l.iter().any(|&(s, e)| s <= gno && gno < e))
    }

    /// False for a MariaDB GTID.
    pub fn contains_gtid(&self, gtid: &Gtid) -> bool {
        match gtid {
            Gtid::MySql { uuid, tag, gno } => self.contains(uuid, tag.as_ref(), *gno),
            Gtid::MariaDb { .. } => false,
        }
    }

    /// `(uuid, tag, [start, end) intervals)` in MySQL's TSID order, as the
    /// binlog dump request wants them.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 16], Option<&GtidTag>, &[(u64, u64)])> {
        self.sets
            .iter()
            .map(|((u, t), l)| (u, t.as_ref(), l.as_slice()))
    }
}

impl std::str::FromStr for GtidSet {
    type Err = GtidSetParseError;

    /// Parses `@@gtid_executed` text (whitespace and newlines allowed), as
    /// `Gtid_set::add_gtid_text` does: after a UUID, each `:`-separated
    /// item is either a tag, which the intervals after it belong to, or an
    /// interval.
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
            let mut tag = None;
            let mut any = false;
            for item in fields {
                if item.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    tag = Some(GtidTag::new(item).map_err(|e| err(&e.to_string()))?);
                    continue;
                }
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                    return Err(err("interval is not `n` or `n-m`, nor a tag"));
                };
                if a == 0 || b < a {
                    return Err(err("interval must be 1 or more and increasing"));
                }
                set.add_interval(uuid, tag.clone(), a, b.saturating_add(1));
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
    /// As `Gtid_set::to_string` prints it, with `,` between UUIDs:
    /// `uuid:1-5:mytag:3,uuid2:1-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous: Option<&[u8; 16]> = None;
        for ((uuid, tag), list) in &self.sets {
            if previous != Some(uuid) {
                if previous.is_some() {
                    f.write_str(",")?;
                }
                write_uuid(f, uuid)?;
                previous = Some(uuid);
            }
            if let Some(tag) = tag {
                write!(f, ":{tag}")?;
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
        assert!(set.contains(&a, None, 5) && set.contains(&a, None, 7));
        assert!(!set.contains(&a, None, 6) && !set.contains(&a, None, 8));
        assert!("".parse::<GtidSet>().unwrap().is_empty());
        assert!(format!("{A}:5-3").parse::<GtidSet>().is_err());
        assert!("nonsense:1".parse::<GtidSet>().is_err());
    }

    #[test]
    fn adding_transactions_merges_intervals() {
        let a = parse_uuid(A).unwrap();
        let mut set: GtidSet = format!("{A}:1-5:7").parse().unwrap();
        set.add(a, None, 6);
        assert_eq!(set.to_string(), format!("{A}:1-7"));
        set.add(a, None, 9);
        set.add(a, None, 3);
        assert_eq!(set.to_string(), format!("{A}:1-7:9"));
        assert_eq!(set.iter().next().unwrap().2, &[(1, 8), (9, 10)]);
    }

    #[test]
    fn tagged_gtids_print_after_the_untagged_numbers_of_their_uuid() {
        // As MySQL 9.6 prints @@gtid_executed: per UUID the untagged
        // intervals, then each tag (by name) with its own.
        let text = format!("{A}:zeta:4,{B}:1-3,{A}:1-5:MyTag:1-2:5,{A}:mytag:3");
        let set: GtidSet = text.parse().unwrap();
        assert_eq!(
            set.to_string(),
            format!("{B}:1-3,{A}:1-5:mytag:1-3:5:zeta:4")
        );
        assert_eq!(set.to_string().parse::<GtidSet>().unwrap(), set);
        let a = parse_uuid(A).unwrap();
        let mytag = GtidTag::new("mytag").unwrap();
        // The tag's numbers are its own: mytag:4 is not in, untagged 4 is.
        assert!(set.contains(&a, Some(&mytag), 3) && !set.contains(&a, Some(&mytag), 4));
        assert!(set.contains(&a, None, 4));
        let tagged: Gtid = format!("{A}:mytag:4").parse().unwrap();
        assert!(!set.contains_gtid(&tagged));
        let mut grown = set.clone();
        grown.add_gtid(&tagged);
        assert!(grown.contains_gtid(&tagged));
        assert_eq!(
            grown.to_string(),
            format!("{B}:1-3,{A}:1-5:mytag:1-5:zeta:4")
        );
        // A MariaDB GTID has no place in a MySQL set.
        grown.add_gtid(&"0-1-5".parse().unwrap());
        assert!(!grown.contains_gtid(&"0-1-5".parse().unwrap()));
        for bad in [
            format!("{A}:9tag:1"),
            format!("{A}:my-tag:1"),
            format!("{A}:mytag"),
            format!("{A}:{}:1", "t".repeat(33)),
        ] {
            assert!(bad.parse::<GtidSet>().is_err(), "{bad}");
        }
    }

    /// The body of the PREVIOUS_GTIDS event MySQL 9.6 wrote: its
    /// `Gtid_set::encode` of `55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-2`.
    fn recorded_tagged_set_encoding() -> Vec<u8> {
        use mysql_common::binlog::consts::BinlogVersion;
        use mysql_common::binlog::BinlogFile;
        let path = format!(
            "{}/testdata/mysql-binlogs/rust_mysql_common/binlog_transaction_with_GTID_TAG.000001",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).unwrap();
        let file = BinlogFile::new(BinlogVersion::Version4, &bytes[..]).unwrap();
        let event = file
            .map(Result::unwrap)
            .find(|e| e.header().event_type_raw() == 35)
            .unwrap();
        event.data().to_vec()
    }

    #[test]
    fn a_tagged_set_is_asked_for_in_mysqls_tagged_encoding() {
        use crate::source::sid_blocks;
        use mysql_common::packets::ComBinlogDumpGtid;
        use mysql_common::proto::MySerialize;
        let set: GtidSet = "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-2"
            .parse()
            .unwrap();
        let mysql = recorded_tagged_set_encoding();
        // Tagged format: 0x01 in the top byte of the TSID count, the count
        // in bits 8..56; per TSID the UUID, the tag's length (MySQL's
        // varlen, 5 -> 0x0a; 0 for untagged) and bytes, then intervals.
        assert_eq!(&mysql[..8], &[1, 2, 0, 0, 0, 0, 0, 1]);
        assert!(mysql.windows(6).any(|w| w == b"\x0amytag"));

        let mut request = Vec::new();
        ComBinlogDumpGtid::new(7)
            .with_sids(sid_blocks(&set))
            .serialize(&mut request);
        let (head, block) = request.split_at(request.len() - mysql.len());
        assert_eq!(head[head.len() - 4..], (mysql.len() as u32).to_le_bytes());
        // MySQL also writes the format in the count's low byte, which its
        // decoder masks off (`decode_nsids_format`); mysql_common leaves
        // it 0. Every other byte is MySQL's own.
        assert_eq!((block[0], mysql[0]), (0, 1));
        assert_eq!(block[1..], mysql[1..]);

        // An untagged set keeps the untagged format.
        let plain: GtidSet = "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13".parse().unwrap();
        let mut request = Vec::new();
        ComBinlogDumpGtid::new(7)
            .with_sids(sid_blocks(&plain))
            .serialize(&mut request);
        let block = &request[request.len() - (8 + 16 + 8 + 16)..];
        assert_eq!(block[..8], 1u64.to_le_bytes());
    }
}
