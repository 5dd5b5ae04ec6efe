//! Where a master's events come from: a live primary it reads as a
//! replication client, or archived binlog files (`--binlog-dir`). Owns what
//! the rest of the master asks of either: a name for status and errors,
//! and whether new slaves can be seeded from it.

use crate::source::binlog_dir::BinlogDir;
use crate::source::Source;

#[derive(Clone)]
pub enum Origin {
    Primary(Source),
    /// Files hold no current state to copy: a slave starts at the change
    /// log's first record on a database that holds the files' starting
    /// state (empty, or restored from the backup they follow).
    BinlogDir(BinlogDir),
}

impl Origin {
    /// For status and errors: the primary's address, or the directory.
    pub fn endpoint(&self) -> String {
        match self {
            Origin::Primary(s) => s.endpoint().to_string(),
            Origin::BinlogDir(d) => format!("binlog files in {}", d.path().display()),
        }
    }

    /// The primary, when there is one (snapshots, position probes).
    pub fn primary(&self) -> Option<&Source> {
        match self {
            Origin::Primary(s) => Some(s),
            Origin::BinlogDir(_) => None,
        }
    }
}
