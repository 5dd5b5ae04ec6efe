//! Does the primary's binlog still continue the one the change log was
//! read from?
//!
//! A binlog reset (`RESET MASTER`) or a primary replaced under the same
//! address starts the file names and GTIDs afresh. Asking such a server
//! for the old `file:offset` either fails with a misleading error or, when
//! the new file is long enough, resumes in the middle of unrelated events
//! and skips everything before them. So before a dump by position, and for
//! every transaction while streaming, the facts are checked here: the
//! file still exists and is at least as long as the offset, the GTID
//! rowcast last logged is still in the primary's GTID state, and GTIDs and
//! file names never go backwards. Pure functions over what the primary
//! reported; the queries are in `source.rs`.

use std::collections::HashMap;

use crate::source::gtid_set::GtidSet;
use crate::source::position::{Gtid, SourcePosition};

/// What the primary says about its binlog, read at (re)connection.
#[derive(Debug, Default, Clone)]
pub struct BinlogState {
    /// `SHOW BINARY LOGS`: every file kept, with its size.
    pub files: Vec<(String, u64)>,
    /// MariaDB `@@gtid_binlog_state`, as `domain-server-seq` entries.
    pub mariadb_state: Option<String>,
    /// MySQL `@@GLOBAL.gtid_executed`.
    pub mysql_executed: Option<String>,
    /// MariaDB `BINLOG_GTID_POS(file, offset)` of the resume point: the
    /// GTID position the server computes by reading the file up to there
    /// (`Some(None)`: NULL, the offset is no event boundary of that file).
    pub gtid_at_resume: Option<Option<String>>,
}

/// Why the primary's binlog does not continue from a position; `None`
/// when it does (or when nothing can tell, e.g. no GTIDs and a file that
/// is long enough).
pub fn discontinuity(from: &SourcePosition, state: &BinlogState) -> Option<String> {
    match state.files.iter().find(|(f, _)| *f == from.file) {
        Some((_, size)) if *size < from.offset => {
            return Some(format!(
                "binlog file {} is {size} bytes long, shorter than the offset {} already read \
                 from it",
                from.file, from.offset
            ));
        }
        Some(_) => {}
        None => {
            // Files all older than ours: the numbering restarted. (Files
            // all newer is the ordinary "purged" case, named by the dump.)
            if !state.files.is_empty()
                && state
                    .files
                    .iter()
                    .all(|(f, _)| file_order(f, &from.file) == std::cmp::Ordering::Less)
            {
                return Some(format!(
                    "binlog file {} is gone and the primary's files ({}) are all older",
                    from.file,
                    state
                        .files
                        .iter()
                        .map(|(f, _)| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    let file_kept = state.files.iter().any(|(f, _)| *f == from.file);
    if let (
        Some(Gtid::MariaDb {
            domain,
            server,
            seq,
        }),
        Some(at),
        true,
    ) = (&from.gtid, &state.gtid_at_resume, file_kept)
    {
        // The file the offset points into must be the one that was read:
        // its events up to the offset end with the GTID logged last.
        let Some(at) = at else {
            return Some(format!(
                "offset {} is not where an event of {} ends any more",
                from.offset, from.file
            ));
        };
        let here = mariadb_state(at).into_iter().find(|(d, _, _)| d == domain);
        if here != Some((*domain, *server, *seq)) {
            return Some(format!(
                "{}:{} now follows GTID position `{}`, not {domain}-{server}-{seq} as when it \
                 was read",
                from.file,
                from.offset,
                at.trim()
            ));
        }
    }
    match &from.gtid {
        Some(Gtid::MariaDb {
            domain,
            server,
            seq,
        }) => {
            let text = state.mariadb_state.as_deref()?;
            let have = mariadb_state(text)
                .into_iter()
                .find(|(d, s, _)| d == domain && s == server)
                .map(|(_, _, q)| q);
            match have {
                Some(q) if q >= *seq => None,
                Some(q) => Some(format!(
                    "the primary's GTID state has {domain}-{server}-{q}, older than \
                     {domain}-{server}-{seq} already read"
                )),
                None => Some(format!(
                    "the primary's GTID state (`{}`) no longer holds {domain}-{server}-{seq}, \
                     already read",
                    text.trim()
                )),
            }
        }
        Some(gtid @ Gtid::MySql { .. }) => {
            let text = state.mysql_executed.as_deref()?;
            let set: GtidSet = text.replace(['\n', ' '], "").parse().ok()?;
            (!set.contains_gtid(gtid)).then(|| {
                format!(
                    "the primary's gtid_executed (`{}`) no longer holds {gtid}, already read",
                    text.trim(),
                )
            })
        }
        None => None,
    }
}

/// `domain-server-seq` entries of a MariaDB GTID state or position.
fn mariadb_state(text: &str) -> Vec<(u32, u32, u64)> {
    text.split(',')
        .filter_map(|g| {
            let mut p = g.trim().split('-');
            Some((
                p.next()?.parse().ok()?,
                p.next()?.parse().ok()?,
                p.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Binlog file names compared by their numeric extension when both have
/// one (`binlog.000010` after `binlog.000009`), else as text.
fn file_order(a: &str, b: &str) -> std::cmp::Ordering {
    let num = |f: &str| f.rsplit_once('.').and_then(|(_, n)| n.parse::<u64>().ok());
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Follows a stream's transactions and says when one goes back: a GTID
/// of the same domain and server at or below one already seen, or a file
/// older than the last one.
#[derive(Debug, Default)]
pub struct StreamOrder {
    last_seq: HashMap<(u32, u32), u64>,
    last_file: Option<String>,
}

impl StreamOrder {
    /// Starts after `from`, the position the stream resumes at.
    pub fn after(from: &SourcePosition) -> StreamOrder {
        let mut order = StreamOrder {
            last_file: (!from.file.is_empty()).then(|| from.file.clone()),
            ..Default::default()
        };
        if let Some(Gtid::MariaDb {
            domain,
            server,
            seq,
        }) = from.gtid
        {
            order.last_seq.insert((domain, server), seq);
        }
        order
    }

    /// Records the next transaction's position; `Err` names what went back.
    pub fn next(&mut self, p: &SourcePosition) -> Result<(), String> {
        if let (Some(last), false) = (&self.last_file, p.file.is_empty()) {
            if file_order(&p.file, last) == std::cmp::Ordering::Less {
                return Err(format!(
                    "the stream went from binlog file {last} back to {}",
                    p.file
                ));
            }
        }
        if !p.file.is_empty() {
            self.last_file = Some(p.file.clone());
        }
        if let Some(Gtid::MariaDb {
            domain,
            server,
            seq,
        }) = p.gtid
        {
            if let Some(last) = self.last_seq.get(&(domain, server)) {
                if seq <= *last {
                    return Err(format!(
                        "GTID {domain}-{server}-{seq} came after {domain}-{server}-{last}"
                    ));
                }
            }
            self.last_seq.insert((domain, server), seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, offset: u64, gtid: Option<&str>) -> SourcePosition {
        let mut p = SourcePosition::new(file, offset);
        p.gtid = gtid.map(|g| g.parse().unwrap());
        p
    }

    fn state(files: &[(&str, u64)], gtids: &str) -> BinlogState {
        BinlogState {
            files: files.iter().map(|(f, s)| (f.to_string(), *s)).collect(),
            mariadb_state: Some(gtids.into()),
            mysql_executed: None,
            gtid_at_resume: None,
        }
    }

    #[test]
    fn a_reset_binlog_is_told_from_a_continuing_one() {
        let from = at("binlog.000003", 900, Some("0-1-40"));
        // Continues: the file is long enough and the state is newer.
        let ok = state(&[("binlog.000003", 900), ("binlog.000004", 400)], "0-1-52");
        assert_eq!(discontinuity(&from, &ok), None);
        // Reset: new numbering, all files older.
        let reset = state(&[("binlog.000001", 5000)], "0-1-3");
        assert!(discontinuity(&from, &reset).unwrap().contains("all older"));
        // Same file name, shorter than what was read.
        let short = state(&[("binlog.000003", 300)], "");
        assert!(discontinuity(&from, &short).unwrap().contains("shorter"));
        // Same name and long enough, but the GTIDs restarted.
        let regrown = state(&[("binlog.000003", 5000)], "0-1-7");
        assert!(discontinuity(&from, &regrown)
            .unwrap()
            .contains("older than"));
        let emptied = state(&[("binlog.000003", 5000)], "");
        assert!(discontinuity(&from, &emptied)
            .unwrap()
            .contains("no longer holds"));
        // Same name, long enough, GTIDs grown past ours again: the
        // position in the new file follows other GTIDs (or none).
        let mut replaced = state(&[("binlog.000003", 5000)], "0-1-90");
        replaced.gtid_at_resume = Some(Some("0-1-12".into()));
        assert!(discontinuity(&from, &replaced)
            .unwrap()
            .contains("not 0-1-40"));
        replaced.gtid_at_resume = Some(None);
        assert!(discontinuity(&from, &replaced)
            .unwrap()
            .contains("not where an event"));
        replaced.gtid_at_resume = Some(Some("0-1-40".into()));
        assert_eq!(discontinuity(&from, &replaced), None);
        // Purged (all files newer) is left to the dump's own error.
        let purged = state(&[("binlog.000007", 10)], "0-1-90");
        assert_eq!(discontinuity(&from, &purged), None);
    }

    #[test]
    fn gtids_and_files_must_not_go_back_while_streaming() {
        let mut order = StreamOrder::after(&at("binlog.000002", 4, Some("0-1-10")));
        order
            .next(&at("binlog.000002", 500, Some("0-1-11")))
            .unwrap();
        order
            .next(&at("binlog.000003", 300, Some("0-1-12")))
            .unwrap();
        // Another server in the domain may have its own numbers.
        order
            .next(&at("binlog.000003", 600, Some("0-2-5")))
            .unwrap();
        assert!(order
            .next(&at("binlog.000003", 900, Some("0-1-2")))
            .unwrap_err()
            .contains("0-1-2"));
        let mut order = StreamOrder::after(&at("binlog.000009", 4, None));
        assert!(order
            .next(&at("binlog.000001", 400, None))
            .unwrap_err()
            .contains("back to binlog.000001"));
        assert!(file_order("binlog.000010", "binlog.000009").is_gt());
    }
}
