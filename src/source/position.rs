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
///
/// Serialized through [`GtidRepr`], where an untagged MySQL GTID keeps the
/// layout it had before tags existed: a `Hello` must keep its layout in
/// every protocol version (see `net::wire`), and it carries a position;
/// JetStream metadata written before tags (JSON) reads unchanged too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "GtidRepr", into = "GtidRepr")]
pub enum Gtid {
    /// MariaDB's `domain-server-seq`.
    MariaDb { domain: u32, server: u32, seq: u64 },
    /// MySQL's `uuid:gno`, or `uuid:tag:gno` for a tagged GTID (MySQL 8.4+,
    /// `SET gtid_next='AUTOMATIC:tag'`), whose numbers count apart from
    /// the untagged ones of the same server.
    MySql {
        uuid: [u8; 16],
        tag: Option<GtidTag>,
        gno: u64,
    },
}

/// The encoded form of [`Gtid`]: variants are only ever appended.
#[derive(Serialize, Deserialize)]
enum GtidRepr {
    MariaDb {
        domain: u32,
        server: u32,
        seq: u64,
    },
    MySql {
        uuid: [u8; 16],
        gno: u64,
    },
    MySqlTagged {
        uuid: [u8; 16],
        tag: GtidTag,
        gno: u64,
    },
}

impl From<GtidRepr> for Gtid {
    fn from(r: GtidRepr) -> Gtid {
        match r {
            GtidRepr::MariaDb {
                domain,
                server,
                seq,
            } => Gtid::MariaDb {
                domain,
                server,
                seq,
            },
            GtidRepr::MySql { uuid, gno } => Gtid::MySql {
                uuid,
                tag: None,
                gno,
            },
            GtidRepr::MySqlTagged { uuid, tag, gno } => Gtid::MySql {
                uuid,
                tag: Some(tag),
                gno,
            },
        }
    }
}

impl From<Gtid> for GtidRepr {
    fn from(g: Gtid) -> GtidRepr {
        match g {
            Gtid::MariaDb {
                domain,
                server,
                seq,
            } => GtidRepr::MariaDb {
                domain,
                server,
                seq,
            },
            Gtid::MySql {
                uuid,
                tag: None,
                gno,
            } => GtidRepr::MySql { uuid, gno },
            Gtid::MySql {
                uuid,
                tag: Some(tag),
                gno,
            } => GtidRepr::MySqlTagged { uuid, tag, gno },
        }
    }
}

/// The tag of a MySQL tagged GTID: `[a-z_][a-z0-9_]{0,31}`. MySQL folds
/// tags to lower case (`Tag::from_cstring` in libs/mysql/gtid), so
/// `MyTag` and `mytag` are one tag and are kept as the latter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GtidTag(String);

/// The longest tag MySQL accepts (`tag_max_length`).
const TAG_MAX_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a GTID tag: expected 1 to 32 letters, digits or `_`, not starting with a digit"
)]
pub struct GtidTagError(String);

impl GtidTag {
    pub fn new(text: &str) -> Result<Self, GtidTagError> {
        let tag = text.to_ascii_lowercase();
        let mut chars = tag.bytes();
        let ok = tag.len() <= TAG_MAX_LEN
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if ok {
            Ok(GtidTag(tag))
        } else {
            Err(GtidTagError(text.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GtidTag {
    type Error = GtidTagError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        GtidTag::new(&s)
    }
}

impl From<GtidTag> for String {
    fn from(t: GtidTag) -> String {
        t.0
    }
}

impl fmt::Display for GtidTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `3e11fa47-71ca-11e1-9e33-c80aa9429562`, as MySQL prints server UUIDs.
pub(crate) fn write_uuid(f: &mut fmt::Formatter<'_>, uuid: &[u8; 16]) -> fmt::Result {
    for (i, b) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_str("-")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// The 16 bytes of a UUID written with or without dashes.
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
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

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb {
                domain,
                server,
                seq,
            } => write!(f, "{domain}-{server}-{seq}"),
            Gtid::MySql { uuid, tag, gno } => {
                write_uuid(f, uuid)?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                write!(f, ":{gno}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a GTID: expected MariaDB `domain-server-seq` or MySQL `uuid:n` or `uuid:tag:n`"
)]
pub struct GtidParseError(String);

impl std::str::FromStr for Gtid {
    type Err = GtidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || GtidParseError(s.to_string());
        if let Some((uuid, rest)) = s.split_once(':') {
            let uuid = parse_uuid(uuid).ok_or_else(err)?;
            let (tag, gno) = match rest.split_once(':') {
                Some((tag, gno)) => (Some(GtidTag::new(tag).map_err(|_| err())?), gno),
                None => (None, rest),
            };
            let gno = gno.parse().map_err(|_| err())?;
            return Ok(Gtid::MySql { uuid, tag, gno });
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

    #[test]
    fn tagged_mysql_gtids_round_trip_and_fold_the_tag_to_lower_case() {
        let text = "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3";
        let g: Gtid = text.parse().unwrap();
        let Gtid::MySql { tag, gno, .. } = &g else {
            panic!("{g:?}")
        };
        assert_eq!(
            (tag.as_ref().map(GtidTag::as_str), *gno),
            (Some("mytag"), 3)
        );
        assert_eq!(g.to_string(), text);
        let upper: Gtid = "55778904-0299-11f1-b1b8-4ef0c4956feb:MyTag:3"
            .parse()
            .unwrap();
        assert_eq!(upper, g);
        let longest = format!("55778904-0299-11f1-b1b8-4ef0c4956feb:_{}:1", "a".repeat(31));
        assert_eq!(longest.parse::<Gtid>().unwrap().to_string(), longest);
        for bad in [
            "55778904-0299-11f1-b1b8-4ef0c4956feb:9tag:3",
            "55778904-0299-11f1-b1b8-4ef0c4956feb:my-tag:3",
            "55778904-0299-11f1-b1b8-4ef0c4956feb::3",
            "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:",
            "55778904-0299-11f1-b1b8-4ef0c4956feb:a:b:3",
        ] {
            assert!(bad.parse::<Gtid>().is_err(), "{bad}");
        }
        let too_long = format!("55778904-0299-11f1-b1b8-4ef0c4956feb:{}:1", "a".repeat(33));
        assert!(too_long.parse::<Gtid>().is_err());
    }

    #[test]
    fn untagged_gtids_keep_the_encoding_they_had_before_tags() {
        // Gtid as rowcast encoded it before tags (protocol 4, format 4).
        #[derive(Serialize)]
        enum Before {
            #[allow(dead_code)]
            MariaDb {
                domain: u32,
                server: u32,
                seq: u64,
            },
            MySql {
                uuid: [u8; 16],
                gno: u64,
            },
        }
        let uuid = [7u8; 16];
        let now = Gtid::MySql {
            uuid,
            tag: None,
            gno: 300,
        };
        let before = Before::MySql { uuid, gno: 300 };
        assert_eq!(
            crate::log::codec::encode(&now).unwrap(),
            crate::log::codec::encode(&before).unwrap()
        );
        let maria = Gtid::MariaDb {
            domain: 1,
            server: 2,
            seq: 3,
        };
        let bytes = crate::log::codec::encode(&maria).unwrap();
        assert_eq!(crate::log::codec::decode::<Gtid>(&bytes).unwrap(), maria);
        let tagged: Gtid = "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"
            .parse()
            .unwrap();
        let bytes = crate::log::codec::encode(&tagged).unwrap();
        assert_eq!(crate::log::codec::decode::<Gtid>(&bytes).unwrap(), tagged);

        // JetStream metadata written by a rowcast that knew no tags.
        let old = r#"{"epoch":0,"file":"b.000001","offset":4,
            "gtid":{"MySql":{"uuid":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"gno":7}}}"#;
        let p: SourcePosition = serde_json::from_str(old).unwrap();
        assert!(matches!(
            p.gtid,
            Some(Gtid::MySql {
                tag: None,
                gno: 7,
                ..
            })
        ));
        let back = serde_json::to_string(&p).unwrap();
        assert!(back.contains(r#""gtid":{"MySql":{"uuid":[1,2,3"#), "{back}");
        let tagged = SourcePosition {
            gtid: Some(
                "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"
                    .parse()
                    .unwrap(),
            ),
            ..SourcePosition::new("b.000001", 4)
        };
        let json = serde_json::to_string(&tagged).unwrap();
        assert_eq!(
            serde_json::from_str::<SourcePosition>(&json).unwrap(),
            tagged
        );
        let bad = json.replace("mytag", "My-Tag");
        assert!(serde_json::from_str::<SourcePosition>(&bad).is_err());
    }
}
