//! What can go wrong while applying ([`ApplyError`]), and how a server's
//! answer is classified.
//!
//! By `sql_error`: a lost connection, a deadlock or a lock wait timeout is
//! retried (the slave reconnects and the master sends the transaction
//! again); anything else stops the slave. **A full replica
//! disk stops the slave** ([`ApplyError::DiskFull`]: error 1114 "table is
//! full", 1021 "disk full", 1878 "temporary file write failure", or errno
//! 28 / "No space left on device" in any error's message), like the native
//! SQL thread, rather than waiting: retrying would rerun the same local
//! transaction against the same full disk, and InnoDB on a disk with no
//! room even to roll back aborts the whole server. The local transaction
//! is rolled back, so the checkpoint stays before everything unapplied;
//! after space is freed the restarted slave resumes from it. (Where
//! MariaDB itself waits for space, e.g. Aria or MyISAM writes with "Waiting
//! for someone to free space", the statement just takes longer and the
//! slave waits with it. A replica server that crashes on a full disk is a
//! lost connection: the slave retries until it is back.)

use crate::replica::statements::TablePlan;
use crate::source::position::SourcePosition;
use crate::source::SourceError;

pub(super) const ER_DUP_ENTRY: u16 = 1062;
const ER_KEY_NOT_FOUND: u16 = 1032;
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;
pub(super) const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
pub(super) const ER_LOCK_DEADLOCK: u16 = 1213;
/// Unknown database.
pub(super) const ER_BAD_DB_ERROR: u16 = 1049;
/// "The table is full": InnoDB could not extend a tablespace (or a MEMORY
/// table reached max_heap_table_size).
const ER_RECORD_FILE_FULL: u16 = 1114;
/// "Disk full; waiting for someone to free some space".
const ER_DISK_FULL: u16 = 1021;
const ER_TEMP_FILE_WRITE_FAILURE: u16 = 1878;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Target(#[from] SourceError),
    #[error("replica has diverged at source position {position}: {op} on {table} {key}: {reason}. The replica's checkpoint was not moved; fix the row on the replica (or re-seed it) and restart the slave")]
    Conflict {
        position: String,
        op: &'static str,
        table: String,
        key: String,
        reason: String,
    },
    #[error("statement from the primary failed on the replica at source position {position}: `{sql}`: {reason}")]
    Ddl {
        position: String,
        sql: String,
        reason: String,
    },
    #[error("applying the transaction at source position {position} failed: {reason}")]
    Sql { position: String, reason: String },
    #[error(
        "the replica refused the transaction at source position {position}: {reason}. This is \
         about the replica's user or settings, not its data: skipping would lose this \
         transaction and the next would fail the same way. Fix the cause (grant the slave's \
         user what it lacks, lift the read-only setting, or let the statement run) and restart \
         the slave"
    )]
    Refused { position: String, reason: String },
    #[error(
        "cannot map the rows of {table} at source position {position} onto the replica's \
         table by column position: {reason}. The primary logs no column names \
         (binlog_row_metadata is not FULL), so the replica's table must have the primary's \
         columns in the same order with the same types. Fix: make the replica's table match \
         the primary's (SHOW CREATE TABLE on both), or SET GLOBAL binlog_row_metadata=FULL on \
         the primary (MySQL 8.0.1+, MariaDB 10.5+) and restart the master; then restart the slave"
    )]
    Positional {
        table: String,
        position: String,
        reason: String,
    },
    #[error("lost the connection to the target database: {0}")]
    Lost(String),
    #[error(
        "{} has no space left at source position {position}: {reason}. The local transaction \
         was rolled back and the slave's checkpoint stays before it. Free space on the replica's \
         disk (its datadir, tmpdir or tablespaces; for a MEMORY table raise \
         max_heap_table_size), then start the slave again: it resumes after its checkpoint",
        .replica.as_deref().unwrap_or("the replica")
    )]
    DiskFull {
        /// The target and the slave's name, when known.
        replica: Option<String>,
        position: String,
        reason: String,
    },
    #[error("the transaction at source position {position} needs packets of {needed} bytes, but the replica accepts at most {limit} (max_allowed_packet); the primary accepted it. Fix: SET GLOBAL max_allowed_packet={setting} on the replica (and max_allowed_packet={setting} in its config), then restart the slave")]
    PacketTooLarge {
        position: String,
        needed: u64,
        limit: u64,
        setting: String,
    },
    #[error(
        "XA COMMIT {xid} at source position {position}: this slave never received that XA \
         transaction's prepared rows (it was prepared on the primary before the slave's \
         snapshot, or before the master began reading the binlog). The replica lacks its \
         rows: re-seed the slave (--resnapshot)"
    )]
    XaNotHeld { xid: String, position: String },
    #[error(
        "the slave holds a prepared XA transaction but has no checkpoint to resume from \
         at source position {position}; re-seed the slave (--resnapshot)"
    )]
    XaWithoutCheckpoint { position: String },
    #[error(
        "slave `{name}`: session {holder} on the replica {replica} holds this slave's lock \
         `{lock}` ({holder_info}) and still did after {waited_secs}s; this slave applied \
         nothing. Another `rowcast slave --name {name}` is running against this replica: run \
         one slave per --name (stop the other one, or give this one another --name). If that \
         session is a dead one's, KILL {holder} on the replica (or wait until the server drops \
         it: wait_timeout), then start this slave again"
    )]
    SessionLocked {
        name: String,
        replica: String,
        lock: String,
        holder: u64,
        holder_info: String,
        waited_secs: u64,
    },
    #[error(
        "--skip-at `{text}` is not a source position: write it as the slave's error names it, \
         FILE:OFFSET (or FILE:OFFSET@EPOCH), e.g. --skip-at mariadb-bin.000002:1234"
    )]
    SkipUnreadable { text: String },
    #[error(
        "--skip-at {skip} names no transaction this slave applies: the next one ends at {next}, \
         after it (a mistyped position, another primary's, or one inside a transaction). Nothing \
         was skipped and nothing after {skip} applied; the slave stopped before {next}. Pass the \
         position the slave's error named, or drop --skip-at"
    )]
    SkipMissed { skip: String, next: String },
    #[error(
        "--skip-at {skip} is inside a large transaction sent in parts, which begins at {first}: \
         nothing was skipped. A transaction is skipped whole: pass --skip-at {first}"
    )]
    SkipInside { skip: String, first: String },
    #[error(
        "--skip-at {skip} is the XA PREPARE of {xid}: nothing was skipped. Its rows are applied at \
         its XA COMMIT, and that is the transaction to skip: pass the XA COMMIT's position (the \
         one the slave's error names)"
    )]
    SkipPrepare { skip: String, xid: String },
    #[error(
        "--skip-at {skip}: the transaction there has GTID {have}, not {want}: nothing was \
         skipped. Check the position against the slave's error"
    )]
    SkipGtid {
        skip: String,
        want: String,
        have: String,
    },
    #[error(
        "slave `{name}` applied its checkpoint with --rewrite-db {stored}, but was started with \
         {given}: changing the rules would write the primary's databases under other names from \
         here on and split their history. Start it with the rules it applied with, or seed it \
         again under the new ones (`rowcast slave --resnapshot` with the new --rewrite-db; drop \
         the old TO databases on the replica yourself)"
    )]
    RewriteChanged {
        name: String,
        stored: String,
        given: String,
    },
    #[error(transparent)]
    RewriteRules(#[from] crate::replica::db_rewrite::RewriteError),
}

impl ApplyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Target(e) => e.is_retryable(),
            ApplyError::Lost(_) => true,
            _ => false,
        }
    }

    /// Whether `--skip-at` is a way on past this error: the replica cannot
    /// run one transaction (a diverged row, a missing table, a statement
    /// that fails). Not a full disk, a packet limit or a missing XA
    /// prepare, whose fixes are elsewhere, nor a seed that cannot go on.
    pub fn skippable(&self) -> bool {
        match self {
            ApplyError::Conflict { .. }
            | ApplyError::Ddl { .. }
            | ApplyError::Positional { .. } => true,
            ApplyError::Sql { position, .. } => position != "seed",
            _ => false,
        }
    }
}

/// Server errors that say the replica's user or settings stand in the way,
/// whatever the transaction: access denied (1044, 1045, 1142, 1143, 1227,
/// 1370), an option such as read_only (1290, 1836), a read-only transaction
/// (1792), routine creation refused without SUPER (1419), an interrupted
/// statement (1317). `--skip-at` is no way past them.
fn is_refusal(code: u16) -> bool {
    matches!(
        code,
        1044 | 1045 | 1142 | 1143 | 1227 | 1370 | 1290 | 1836 | 1792 | 1419 | 1317
    )
}

pub(super) fn sql_error(position: &SourcePosition, e: mysql_async::Error) -> ApplyError {
    match e {
        // Another session held a lock (a reader on the replica, say):
        // worth another try, not a reason to stop.
        mysql_async::Error::Server(s)
            if s.code == ER_LOCK_DEADLOCK || s.code == ER_LOCK_WAIT_TIMEOUT =>
        {
            ApplyError::Lost(format!("{} (error {}); retrying", s.message, s.code))
        }
        mysql_async::Error::Server(s) if is_disk_full(s.code, &s.message) => ApplyError::DiskFull {
            replica: None,
            position: position.to_string(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        mysql_async::Error::Server(s) if is_refusal(s.code) => ApplyError::Refused {
            position: position.to_string(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        mysql_async::Error::Server(s) => ApplyError::Sql {
            position: position.to_string(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        other => ApplyError::Lost(other.to_string()),
    }
}

/// What the replica's row-event applier's answer means.
pub(super) fn replay_error(
    position: &SourcePosition,
    plan: &TablePlan,
    e: mysql_async::Error,
) -> ApplyError {
    match server_code(&e) {
        Some(code @ (ER_KEY_NOT_FOUND | ER_DUP_ENTRY)) => ApplyError::Conflict {
            position: position.to_string(),
            op: "row event",
            table: plan.table_name(),
            key: "(see the reason)".into(),
            reason: if code == ER_KEY_NOT_FOUND {
                format!("the row does not exist on the replica: {e}")
            } else {
                e.to_string()
            },
        },
        Some(ER_SPECIFIC_ACCESS_DENIED) => ApplyError::Sql {
            position: position.to_string(),
            reason: format!(
                "{e}. Tables with triggers, foreign keys, system versioning or without a primary key are applied by the replica's own row-event applier (a BINLOG statement): grant rowcast's replica user BINLOG REPLAY (MariaDB; SUPER before 10.5) or SYSTEM_VARIABLES_ADMIN and REPLICATION_APPLIER (MySQL)"
            ),
        },
        _ => sql_error(position, e),
    }
}

/// Whether a server error means the replica ran out of space: by code, or
/// by the OS error 28 (ENOSPC) that errors such as 3 (error writing file)
/// and 1030 (got error from storage engine) carry in their message.
pub(super) fn is_disk_full(code: u16, message: &str) -> bool {
    if matches!(
        code,
        ER_RECORD_FILE_FULL | ER_DISK_FULL | ER_TEMP_FILE_WRITE_FAILURE
    ) {
        return true;
    }
    let m = message.to_ascii_lowercase();
    [
        "errno: 28 ",
        "errno: 28)",
        "errcode: 28 ",
        "no space left on device",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The server's error code, `None` for a failure of the connection itself.
pub(super) fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_recognised_by_code_or_by_errno_28() {
        assert!(is_disk_full(1114, "The table 'log' is full"));
        assert!(is_disk_full(
            1021,
            "Disk full (./t/x); waiting for someone to free some space..."
        ));
        assert!(is_disk_full(
            3,
            "Error writing file './t/x.MAD' (errno: 28 \"No space left on device\")"
        ));
        assert!(is_disk_full(
            1030,
            "Got error 28 \"No space left on device\" from storage engine InnoDB"
        ));
        assert!(!is_disk_full(
            3,
            "Error writing file './t/x.MAD' (errno: 5 \"Input/output error\")"
        ));
        assert!(!is_disk_full(1030, "Got error 280 from storage engine"));
        assert!(!is_disk_full(
            ER_DUP_ENTRY,
            "Duplicate entry '28' for key 'PRIMARY'"
        ));
    }

    #[test]
    fn a_full_replica_stops_the_slave() {
        let e = sql_error(
            &SourcePosition::new("b.000001", 4),
            mysql_async::Error::Server(mysql_async::ServerError {
                code: ER_RECORD_FILE_FULL,
                message: "The table 'log' is full".into(),
                state: "HY000".into(),
            }),
        );
        assert!(matches!(e, ApplyError::DiskFull { .. }));
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("no space left"), "{e}");
    }

    #[test]
    fn only_what_a_transaction_does_to_the_data_is_skippable() {
        let err = |code: u16, message: &str| {
            sql_error(
                &SourcePosition::new("b.000001", 4),
                mysql_async::Error::Server(mysql_async::ServerError {
                    code,
                    message: message.into(),
                    state: "HY000".into(),
                }),
            )
        };
        let dup = err(ER_DUP_ENTRY, "Duplicate entry '1' for key 'PRIMARY'");
        assert!(dup.skippable(), "{dup}");
        for (code, message) in [
            (
                1142,
                "INSERT command denied to user 'r'@'h' for table `d`.`t`",
            ),
            (
                1290,
                "The MariaDB server is running with the --read-only option",
            ),
            (1317, "Query execution was interrupted"),
        ] {
            let e = err(code, message);
            assert!(matches!(e, ApplyError::Refused { .. }), "{e}");
            assert!(!e.skippable(), "{e}");
            assert!(e.to_string().contains("restart the slave"), "{e}");
        }
    }
}
