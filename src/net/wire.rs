//! The rowcast protocol between master and slaves: greeting, handshake and
//! the messages each side sends.
//!
//! 1. On connect the master writes a 10-byte greeting: [`MAGIC`] and its
//!    protocol version (u16 LE). A slave that reads anything else knows at
//!    once it has not reached a rowcast master, and says what it found.
//! 2. The master sends [`MasterMessage::Challenge`] (a fresh nonce); the
//!    slave sends [`SlaveMessage::Hello`] with its protocol version, name,
//!    checkpoint and, with a token, its answer to the challenge. The master answers [`MasterMessage::Welcome`] or
//!    [`MasterMessage::Error`] and closes.
//! 3. The master streams [`MasterMessage::Transaction`] frames, and
//!    [`MasterMessage::Heartbeat`] when idle; the slave sends
//!    [`SlaveMessage::Ack`] after it commits (its progress, and apart from
//!    it the oldest record it may read again, which retention keeps).
//!
//! Master and slave must speak the same [`PROTOCOL_VERSION`]: the master
//! refuses a `Hello` of another version with [`ErrorKind::Incompatible`]
//! naming both versions, and the slave stops with that message (run the
//! same rowcast version on the master and every slave).
//!
//! Every frame payload is a codec-encoded message. A transaction frame is
//! built from the change-log record's bytes without decoding them: the
//! payload is the variant tag followed by the record, which is exactly the
//! encoding of `MasterMessage::Transaction(seq, txn)`.

use serde::{Deserialize, Serialize};

use crate::log::change::{Row, TableSchema, Transaction};
use crate::source::objects::StoredObjects;
use crate::source::position::SourcePosition;
use crate::source::seed_plan::{SeedChunk, SeedTable};

pub const MAGIC: &[u8; 8] = b"ROWCAST\0";
/// Bumped on any incompatible change to messages or the change format.
/// Version 4: [`SlaveMessage::Ack`] carries `keep_from` apart from `seq`
/// (version 3 acked the oldest held XA prepare as its progress).
/// Version 5: positions may carry a MySQL tagged GTID (an untagged one
/// encodes as before, so `Hello` keeps its layout).
/// Version 6: seeding table by table, merged into the stream: every slave
/// follows `Hello` with [`SlaveMessage::Seed`]; the master answers a new
/// slave with [`MasterMessage::SeedBegin`] and sends
/// [`MasterMessage::SeedChunk`] frames between transactions.
/// Version 7: a slave states its [`SlaveSettings`] (`--delay`,
/// `--rewrite-db`, the transactions it skipped) after `Welcome`, and
/// [`SlaveStatus`] shows them.
/// `Hello` must keep its layout in every version: a master can only name
/// a version mismatch if it can decode the `Hello` that states it.
pub const PROTOCOL_VERSION: u16 = 7;
pub const GREETING_LEN: usize = 10;
/// Frames before the handshake completes are small; nobody gets to make
/// the master allocate much before it knows who they are.
pub const HANDSHAKE_FRAME_LIMIT: usize = 64 * 1024;

pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[..8].copy_from_slice(MAGIC);
    g[8..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    g
}

/// Explains what a peer that is not a rowcast master answered with.
pub fn describe_foreign_greeting(bytes: &[u8]) -> String {
    // A MySQL/MariaDB server greets first with a packet whose 5th byte is
    // the protocol version 10, followed by a version string.
    if bytes.len() >= 5 && bytes[4] == 10 {
        return "it answered like a MySQL/MariaDB server; --master must be the address \
                `rowcast master --listen` uses, not the database's"
            .into();
    }
    if bytes.starts_with(b"HTTP") {
        return "it answered like an HTTP server".into();
    }
    format!("it answered with bytes {:02x?}", bytes)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SlaveMessage {
    Hello {
        protocol: u16,
        name: String,
        /// HMAC-SHA256(token, nonce ‖ name) when the slave has a token.
        auth: Option<Vec<u8>>,
        /// Where the slave reads the change log from: after its
        /// checkpoint, or after the checkpoint's `xa_resume` (before its
        /// oldest held XA prepare); `None` for a slave that has applied
        /// nothing yet.
        after: Option<SourcePosition>,
    },
    /// Two facts about the slave, which differ while it holds prepared XA
    /// transactions (see `apply.rs`).
    Ack {
        /// Progress: everything up to and including `seq` is applied or
        /// held on the slave, and its checkpoint names this entry. Lag,
        /// `stalled` and `applied_seq` in `rowcast status` are measured
        /// from it.
        seq: u64,
        /// The checkpoint's source position (the primary's, of `seq`).
        position: SourcePosition,
        /// The primary's commit time of that transaction; 0 in an ack sent
        /// while idle, which only repeats the last one.
        source_time: u32,
        /// Retention: the lowest sequence the slave may still read again,
        /// so the master keeps every record from it on. A restarted slave
        /// reads the change log from here: normally `seq + 1`; while
        /// prepared XA transactions are held, the entry after the
        /// checkpoint's `xa_resume`, i.e. the oldest held prepare (then
        /// `keep_from <= seq`). Never more than `seq + 1`.
        keep_from: u64,
    },
    /// The slave is loading a snapshot: rows done of the estimate.
    SnapshotProgress { rows: u64, estimated: u64 },
    /// The slave stops for good, for this reason.
    Failed { message: String },
    /// Sent instead of `Hello` by `rowcast status`; `auth` answers the
    /// challenge for the name `status`.
    StatusRequest { auth: Option<Vec<u8>> },
    /// Last, so the variants before keep their tags. Sent by every slave right after `Hello`: the tables it is still
    /// being seeded with (their progress, from `rowcast.seed`), and the
    /// tables it asks to be copied again (`--resync`).
    Seed {
        tables: Vec<SeedTable>,
        resync: Vec<(String, String)>,
    },
    /// Sent after `Welcome`, and again whenever they change (a skip): what
    /// the operator set on this slave that changes what it applies.
    Settings(SlaveSettings),
}

/// What an operator set on a slave that makes its replica differ from a
/// plain copy in time, names or content; `rowcast status` shows it so
/// nobody mistakes it for lag, a missing database or a lost transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaveSettings {
    /// `--delay`: each transaction is applied no earlier than its primary
    /// commit time plus this.
    pub delay_seconds: u64,
    /// `--rewrite-db FROM=TO`: the primary's database FROM is kept as TO.
    pub rewrite_db: Vec<(String, String)>,
    /// Transactions skipped by `--skip-at`, oldest first, as the replica
    /// recorded them.
    pub skipped: Vec<Skipped>,
}

/// One transaction a slave skipped on purpose (`--skip-at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Its source position, as the slave's error named it.
    pub position: String,
    /// When it was skipped, seconds since the epoch.
    pub at: u64,
    /// Why it could not be applied (the error that stopped the slave).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MasterMessage {
    /// Must stay variant 0: see [`transaction_frame_tag`].
    Transaction(u64, Transaction),
    /// Sent right after the greeting: the nonce to authenticate with.
    Challenge {
        nonce: Vec<u8>,
        token_required: bool,
    },
    Welcome {
        /// Sequence number of the newest record in the master's log.
        last_seq: u64,
    },
    /// Sent when idle so the slave can tell a quiet master from a dead one.
    Heartbeat {
        last_seq: u64,
        position: Option<SourcePosition>,
        /// Master's clock, ms since the epoch.
        now_ms: u64,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// Opens a snapshot: the position it was read at and every object to
    /// create. Row chunks follow, then [`MasterMessage::SnapshotEnd`].
    SnapshotBegin {
        position: SourcePosition,
        databases: Vec<SnapshotObject>,
        tables: Vec<SnapshotObject>,
        views: Vec<SnapshotObject>,
        estimated_rows: u64,
        estimated_bytes: u64,
        /// Sequences, routines, triggers and events.
        objects: StoredObjects,
    },
    /// A chunk of rows of one table (only its non-generated columns).
    SnapshotRows {
        table: TableSchema,
        rows: Vec<Row>,
    },
    /// All rows are sent; streaming continues after `position`.
    SnapshotEnd {
        position: SourcePosition,
        rows: u64,
    },
    /// The answer to [`SlaveMessage::StatusRequest`].
    Status(MasterStatus),
    /// Opens a seed: the slave creates every object empty, stores
    /// `position` as its checkpoint with the plan as its seed progress, and
    /// follows the stream from there while [`MasterMessage::SeedChunk`]s
    /// fill the tables (see `replica/seed_gate.rs`).
    SeedBegin {
        position: SourcePosition,
        databases: Vec<SnapshotObject>,
        tables: Vec<SnapshotObject>,
        views: Vec<SnapshotObject>,
        objects: StoredObjects,
        plan: Vec<SeedTable>,
    },
    /// Rows of a table being seeded, as read at `position`.
    SeedChunk(SeedChunk),
    /// `--resync`: the table is emptied (created, if the replica lacks
    /// it) here, in stream order, and seeded by the chunks that follow.
    SeedTableBegin {
        /// Its database, created first if the replica lacks it.
        database: SnapshotObject,
        table: SnapshotObject,
        plan: SeedTable,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterStatus {
    pub primary: String,
    /// The primary's binlog end right now, if it could be read.
    pub primary_position: Option<SourcePosition>,
    /// Position of the newest transaction in the change log.
    pub log_position: Option<SourcePosition>,
    /// Primary commit time of that transaction (epoch seconds).
    pub log_time: u32,
    pub log_first_seq: u64,
    pub log_last_seq: u64,
    pub log_segments: u64,
    pub log_bytes: u64,
    pub log_dir: String,
    pub slaves: Vec<SlaveStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaveStatus {
    pub name: String,
    pub addr: String,
    /// `snapshotting`, `streaming`, `stalled` (connected with work
    /// pending, no progress for the master's `--stall-after`),
    /// `disconnected` or `failed`.
    pub state: String,
    pub applied_seq: u64,
    pub applied_position: Option<SourcePosition>,
    pub lag_transactions: u64,
    /// Now minus the primary commit time of the oldest transaction not
    /// applied; 0 only when nothing is pending (see `serve.rs`).
    pub lag_seconds: u64,
    pub snapshot_rows: u64,
    pub snapshot_estimated_rows: u64,
    /// Bytes copied and the estimate, and the time to go at the rate so
    /// far (while seeding).
    pub snapshot_bytes: u64,
    pub snapshot_estimated_bytes: u64,
    pub snapshot_eta_seconds: Option<u64>,
    pub last_error: Option<String>,
    /// Its delay, database renames and skips (see [`SlaveSettings`]).
    #[serde(default)]
    pub settings: SlaveSettings,
}

/// A database, table or view with the statement that creates it, as
/// `SHOW CREATE ...` gave it on the primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotObject {
    pub database: String,
    pub name: String,
    pub create_sql: Vec<u8>,
    /// A view's `character_set_client` and `collation_connection`: the
    /// replica stores them with the view, as the primary did.
    pub charset: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The slave speaks another protocol version.
    Incompatible,
    /// The slave's position is no longer in the master's log.
    PositionPurged,
    /// The master cannot serve for a reason of its own.
    Internal,
    /// Wrong or missing token.
    Unauthorized,
}

/// The bytes that precede a change-log record to make it a
/// `MasterMessage::Transaction` frame payload.
pub fn transaction_frame_tag() -> [u8; 1] {
    [0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::codec;

    #[test]
    fn transaction_frame_is_tag_plus_log_record() {
        let txn = Transaction::empty_at(99, 5);
        let record = codec::encode(&(7u64, &txn)).unwrap();
        let mut payload = transaction_frame_tag().to_vec();
        payload.extend_from_slice(&record);
        assert_eq!(
            payload,
            codec::encode(&MasterMessage::Transaction(7, txn.clone())).unwrap()
        );
        assert_eq!(
            codec::decode::<MasterMessage>(&payload).unwrap(),
            MasterMessage::Transaction(7, txn)
        );
    }

    /// A master can only name a version mismatch if it can decode the
    /// `Hello` stating it: these bytes are what every version sends.
    #[test]
    fn hello_keeps_its_layout_across_versions() {
        let old = [0u8, 3, 1, b's', 0, 0];
        assert_eq!(
            codec::decode::<SlaveMessage>(&old).unwrap(),
            SlaveMessage::Hello {
                protocol: 3,
                name: "s".into(),
                auth: None,
                after: None,
            }
        );
    }

    #[test]
    fn foreign_greetings_are_named() {
        let mysql = [0x5b, 0, 0, 0, 10, b'1', b'0'];
        assert!(describe_foreign_greeting(&mysql).contains("MySQL/MariaDB server"));
        assert!(describe_foreign_greeting(b"HTTP/1.1 400").contains("HTTP"));
    }
}
