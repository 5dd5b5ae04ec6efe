//! The change log: rowcast's own change format ([`change`]), its only
//! encoding ([`codec`]), and the durable logs that keep it between the
//! master's binlog reader and the slaves: segment files on the master's
//! disk ([`segments`]) or a NATS JetStream stream ([`jetstream`]).
//!
//! # One interface for every kind of log
//!
//! The master writes through [`LogWriter`] and serves through [`LogView`];
//! neither knows which log it has. Each kind of log is one module that
//! implements both; [`Writer`] and [`View`] forward to the kind chosen by
//! [`Location`], so adding a log touches only this folder.
//!
//! What a log promises:
//!
//! - **Durability on return.** When [`LogWriter::append`] returns `Ok`,
//!   every record of the batch is durable (fsynced segment files, or
//!   acknowledged by JetStream) and visible to readers; nothing is visible
//!   before it is durable.
//! - **Order.** Records keep the order of the batches and of each batch;
//!   sequence numbers grow with source positions (a record's sequence is
//!   its segment-file sequence, or the stream sequence of its last
//!   message). A reader yields `(seq, record)` in that order and never
//!   skips one: a hole is an error (`Gap`), not a jump.
//! - **Once.** A record the log already holds (read again from the binlog
//!   after a restart or a failed append) is not stored twice.
//! - **Whole transactions.** [`LogWriter::resume`] is the position after
//!   the last *whole* transaction (parts of a later one are read again and
//!   skipped by the log), where the binlog continues.
//! - **Retention** never drops what a connected slave may read again
//!   (`keep_from`, see [`LogWriter::retain`]); a log with its own
//!   retention (JetStream's max_age/max_bytes) ignores the floor.
//! - **Reports.** A log that slaves read themselves also keeps their
//!   progress ([`LogView::reports`]); the master then only seeds them
//!   ([`LogView::read_directly`]).

pub mod change;
pub mod codec;
pub mod jetstream;
pub mod segments;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::ops::metrics::Metrics;
use crate::source::gtid_set::GtidSet;
use crate::source::position::SourcePosition;

use jetstream::{NatsError, NatsUrl};
use segments::{EncodedTxn, LogError, RawRecord, Retention};

/// Any log's error; each message says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ChangeLogError {
    #[error(transparent)]
    Segments(#[from] LogError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("the change log in {location} is read through its master, not by slaves themselves: start the slave with --master and without --log")]
    NotDirect { location: String },
}

impl ChangeLogError {
    /// Worth another try (the log is unreachable for now).
    pub fn is_retryable(&self) -> bool {
        match self {
            ChangeLogError::Nats(e) => e.is_retryable(),
            ChangeLogError::Segments(_) | ChangeLogError::NotDirect { .. } => false,
        }
    }

    /// The position a reader asked for is gone (retention) or the log
    /// lost records under it: permanent for that reader.
    pub fn is_position_lost(&self) -> bool {
        matches!(
            self,
            ChangeLogError::Segments(LogError::Purged { .. } | LogError::Gap { .. })
                | ChangeLogError::Nats(NatsError::Purged { .. } | NatsError::Gap { .. })
        )
    }
}

/// Where the change log is kept.
#[derive(Debug, Clone)]
pub enum Location {
    /// Segment files in the master's data dir.
    Segments { dir: PathBuf, segment_bytes: u64 },
    /// A JetStream stream; `chunk_bytes` lowers the largest message body.
    JetStream {
        url: NatsUrl,
        chunk_bytes: Option<usize>,
    },
}

/// What a writer needs besides its location.
pub struct WriterOptions {
    pub retention: Retention,
    /// The part size the master asks for (`--part-kb`); a log may keep
    /// the one it began with ([`LogWriter::part_bytes`]).
    pub part_bytes: usize,
    /// Failed attempts a writer retries by itself count as errors here.
    pub metrics: Arc<Metrics>,
    /// A writer retrying an append gives up when this flips.
    pub shutdown: watch::Receiver<bool>,
}

/// What one append stored: for the master's metrics and lag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Appended {
    /// Whole transactions (last parts and unsplit ones).
    pub transactions: u64,
    pub rows: u64,
    /// Bytes the log grew by (as far as it tells).
    pub bytes: u64,
    /// The log's last sequence, when it numbers records itself.
    pub last_seq: Option<u64>,
    /// Position and primary commit time of the last whole transaction.
    pub tip: Option<(SourcePosition, u32)>,
}

impl Appended {
    /// The figures of `batch` stored whole; `bytes` as the log counts them.
    pub fn of(batch: &[EncodedTxn], bytes: u64, last_seq: Option<u64>) -> Appended {
        Appended {
            transactions: batch.iter().filter(|t| !t.more).count() as u64,
            rows: batch.iter().map(|t| t.rows as u64).sum(),
            bytes,
            last_seq,
            tip: batch
                .iter()
                .rev()
                .find(|t| !t.more)
                .map(|t| (t.position.clone(), t.timestamp)),
        }
    }
}

/// The master's side of a change log: the one writer.
pub trait LogWriter: Send {
    /// The position the log begins after; `None` for a new log, which the
    /// master then [`initialise`](Self::initialise)s.
    fn start(&self) -> Option<SourcePosition>;
    /// Records where a new log begins (and, for a MySQL primary, its
    /// executed GTID set there, if the log keeps it).
    fn initialise(
        &mut self,
        start: SourcePosition,
        gtids: Option<GtidSet>,
    ) -> impl Future<Output = Result<(), ChangeLogError>> + Send;
    /// Where the binlog resumes: after the last whole transaction, or at
    /// the start of an empty log.
    fn resume(&self) -> Option<SourcePosition>;
    /// Position and primary commit time of the newest record, for lag
    /// before the next append (0: unknown).
    fn tip(&self) -> (Option<SourcePosition>, u32);
    /// `(server_id, epoch)` of the primary the log follows.
    fn followed(&self) -> (Option<u32>, u32);
    fn set_followed(
        &mut self,
        server_id: u32,
        epoch: u32,
    ) -> impl Future<Output = Result<(), ChangeLogError>> + Send;
    /// For a MySQL primary: every GTID up to the end of the log, what a
    /// new primary is asked to skip; `None` when the log keeps no set.
    fn executed_gtids(&self) -> Result<Option<GtidSet>, ChangeLogError>;
    /// The part size transactions are cut to (the one the log began with,
    /// so a transaction read again is cut the same way).
    fn part_bytes(&self) -> usize;
    /// Appends `batch` durably (see the module doc); records the log holds
    /// already are skipped. A writer may retry by itself while its log is
    /// unreachable: `Ok(None)` means it gave up for shutdown, and the
    /// restart reads the batch again from the binlog.
    fn append(
        &mut self,
        batch: Vec<EncodedTxn>,
    ) -> impl Future<Output = Result<Option<Appended>, ChangeLogError>> + Send;
    /// Applies retention, keeping every record from `keep_from` on.
    fn retain(&mut self, keep_from: u64)
        -> impl Future<Output = Result<(), ChangeLogError>> + Send;
    /// A view for serving and status.
    fn view(&self) -> View;
    /// Where the log is, for messages (a directory, a stream URL).
    fn location(&self) -> String;
}

/// Opens the writer of the log at `location`.
pub async fn open_writer(
    location: &Location,
    options: WriterOptions,
) -> Result<Writer, ChangeLogError> {
    Ok(match location {
        Location::Segments { dir, segment_bytes } => {
            Writer::Segments(segments::SegmentWriter::open(dir, *segment_bytes, options)?)
        }
        Location::JetStream { url, chunk_bytes } => Writer::JetStream(Box::new(
            jetstream::StreamWriter::open(url, *chunk_bytes, options).await?,
        )),
    })
}

/// The writer of whichever log the master keeps.
pub enum Writer {
    Segments(segments::SegmentWriter),
    // Boxed: it holds the stream's tail and NATS handles.
    JetStream(Box<jetstream::StreamWriter>),
}

macro_rules! forward {
    ($self:ident, $w:ident => $e:expr) => {
        match $self {
            Writer::Segments($w) => $e,
            Writer::JetStream($w) => $e,
        }
    };
}

impl LogWriter for Writer {
    fn start(&self) -> Option<SourcePosition> {
        forward!(self, w => w.start())
    }
    async fn initialise(
        &mut self,
        start: SourcePosition,
        gtids: Option<GtidSet>,
    ) -> Result<(), ChangeLogError> {
        forward!(self, w => w.initialise(start, gtids).await)
    }
    fn resume(&self) -> Option<SourcePosition> {
        forward!(self, w => w.resume())
    }
    fn tip(&self) -> (Option<SourcePosition>, u32) {
        forward!(self, w => w.tip())
    }
    fn followed(&self) -> (Option<u32>, u32) {
        forward!(self, w => w.followed())
    }
    async fn set_followed(&mut self, server_id: u32, epoch: u32) -> Result<(), ChangeLogError> {
        forward!(self, w => w.set_followed(server_id, epoch).await)
    }
    fn executed_gtids(&self) -> Result<Option<GtidSet>, ChangeLogError> {
        forward!(self, w => w.executed_gtids())
    }
    fn part_bytes(&self) -> usize {
        forward!(self, w => w.part_bytes())
    }
    async fn append(&mut self, batch: Vec<EncodedTxn>) -> Result<Option<Appended>, ChangeLogError> {
        forward!(self, w => w.append(batch).await)
    }
    async fn retain(&mut self, keep_from: u64) -> Result<(), ChangeLogError> {
        forward!(self, w => w.retain(keep_from).await)
    }
    fn view(&self) -> View {
        forward!(self, w => w.view())
    }
    fn location(&self) -> String {
        forward!(self, w => w.location())
    }
}

/// The log's size and end, for status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogStats {
    /// First and last sequence kept (0, 0 when empty).
    pub first_seq: u64,
    pub last_seq: u64,
    /// Primary commit time of the last record, when the log reads it
    /// itself (`None`: the writer's tip says).
    pub last_time: Option<u32>,
    /// Segment files and bytes on the master's disk (0 for a remote log).
    pub segments: u64,
    pub bytes: u64,
}

/// Reading a change log, for serving slaves and for status. Cheap to
/// clone; reads that block (files) run off the async runtime.
pub trait LogView: Clone + Send + Sync {
    /// Size and end (zeros when it cannot be read right now).
    fn stats(&self) -> impl Future<Output = LogStats> + Send;
    /// The last sequence (0: empty or unreadable).
    fn last_seq(&self) -> impl Future<Output = u64> + Send;
    /// Primary commit time of the record at `seq`, or of the oldest one
    /// kept when retention dropped `seq`; `None` when nothing at or after
    /// `seq` is held (or it cannot be read).
    fn time_at(&self, seq: u64) -> impl Future<Output = Option<u32>> + Send;
    /// The sequence of the last record not after `position` (one before
    /// the oldest kept when none is); `None` for an empty log.
    fn seq_through(&self, position: &SourcePosition) -> impl Future<Output = Option<u64>> + Send;
    /// Whether the log holds a statement (DDL) after `from` and up to
    /// `to`, waiting a few seconds for records up to `to` (a log that
    /// stays idle before has nothing more in that range).
    fn ddl_between(
        &self,
        from: &SourcePosition,
        to: &SourcePosition,
    ) -> impl Future<Output = Result<bool, ChangeLogError>> + Send;
    /// Records after `after` (from the first when `None`), as stored, for
    /// the master to stream; `Purged` when the log starts later.
    fn reader_after(
        &self,
        after: Option<&SourcePosition>,
    ) -> impl Future<Output = Result<RecordReader, ChangeLogError>> + Send;
    /// `Some(where)` when slaves read this log themselves (the master only
    /// seeds them): what to pass as their `--log`.
    fn read_directly(&self) -> Option<String>;
    /// Progress reports slaves wrote to the log, by name (none for a log
    /// the master streams: it hears their acks itself).
    fn reports(&self) -> impl Future<Output = Vec<(String, SlaveProgress)>> + Send;
    /// Where the log is, for status (a directory, a stream URL).
    fn location(&self) -> String;

    // What a slave that reads the log itself (`read_directly`) uses; a
    // log served by its master refuses these with `NotDirect`.

    /// Where a slave whose checkpoint is `(seq, position)` reads on: the
    /// sequence after the checkpoint's, checked to be this log's; right
    /// after a snapshot (`seq` 0) the first record after `position`, and
    /// the checkpoint must then name the sequence before it
    /// ([`ReadFrom::note_seq`]). `Purged` when retention may have dropped
    /// records the slave needs.
    fn read_from(
        &self,
        seq: u64,
        position: Option<&SourcePosition>,
    ) -> impl Future<Output = Result<ReadFrom, ChangeLogError>> + Send;
    /// Decoded records from sequence `seq` on.
    fn reader_from(
        &self,
        seq: u64,
    ) -> impl Future<Output = Result<TxnReader, ChangeLogError>> + Send;
    /// Writes a slave's progress report where the master reads it.
    fn report(
        &self,
        name: &str,
        progress: &SlaveProgress,
    ) -> impl Future<Output = Result<(), ChangeLogError>> + Send;
}

/// What a slave reading the log itself reports about itself, for
/// `rowcast status` (kept by the log: [`LogView::report`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlaveProgress {
    /// Stream sequence of the last message applied.
    pub seq: u64,
    pub position: Option<SourcePosition>,
    /// Primary commit time of the last applied transaction.
    pub source_time: u32,
    /// When this was written, milliseconds since the epoch.
    pub updated_ms: u64,
    pub error: Option<String>,
    /// Its delay, database renames and skips.
    #[serde(default)]
    pub settings: crate::net::wire::SlaveSettings,
}

/// Where a slave reading the log itself begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFrom {
    /// The first sequence to read.
    pub seq: u64,
    /// The checkpoint names no sequence yet (a snapshot was just loaded):
    /// record `seq - 1` in it before applying.
    pub note_seq: bool,
}

/// Opens the log at `location` for a slave that reads it itself.
pub async fn open_view(location: &Location) -> Result<View, ChangeLogError> {
    match location {
        Location::Segments { dir, .. } => Err(ChangeLogError::NotDirect {
            location: dir.display().to_string(),
        }),
        Location::JetStream { url, .. } => Ok(View::JetStream(Arc::new(
            jetstream::NatsLog::open(url, None).await?,
        ))),
    }
}

/// The view of whichever log the master keeps.
#[derive(Clone)]
pub enum View {
    Segments(segments::LogHandle),
    JetStream(Arc<jetstream::NatsLog>),
}

macro_rules! forward_view {
    ($self:ident, $v:ident => $e:expr) => {
        match $self {
            View::Segments($v) => $e,
            View::JetStream($v) => $e,
        }
    };
}

impl LogView for View {
    async fn stats(&self) -> LogStats {
        forward_view!(self, v => LogView::stats(v).await)
    }
    async fn last_seq(&self) -> u64 {
        forward_view!(self, v => LogView::last_seq(v).await)
    }
    async fn time_at(&self, seq: u64) -> Option<u32> {
        forward_view!(self, v => LogView::time_at(v, seq).await)
    }
    async fn seq_through(&self, position: &SourcePosition) -> Option<u64> {
        forward_view!(self, v => LogView::seq_through(v, position).await)
    }
    async fn ddl_between(
        &self,
        from: &SourcePosition,
        to: &SourcePosition,
    ) -> Result<bool, ChangeLogError> {
        forward_view!(self, v => LogView::ddl_between(v, from, to).await)
    }
    async fn reader_after(
        &self,
        after: Option<&SourcePosition>,
    ) -> Result<RecordReader, ChangeLogError> {
        forward_view!(self, v => LogView::reader_after(v, after).await)
    }
    fn read_directly(&self) -> Option<String> {
        forward_view!(self, v => LogView::read_directly(v))
    }
    async fn reports(&self) -> Vec<(String, SlaveProgress)> {
        forward_view!(self, v => LogView::reports(v).await)
    }
    fn location(&self) -> String {
        forward_view!(self, v => LogView::location(v))
    }
    async fn read_from(
        &self,
        seq: u64,
        position: Option<&SourcePosition>,
    ) -> Result<ReadFrom, ChangeLogError> {
        forward_view!(self, v => LogView::read_from(v, seq, position).await)
    }
    async fn reader_from(&self, seq: u64) -> Result<TxnReader, ChangeLogError> {
        forward_view!(self, v => LogView::reader_from(v, seq).await)
    }
    async fn report(&self, name: &str, progress: &SlaveProgress) -> Result<(), ChangeLogError> {
        forward_view!(self, v => LogView::report(v, name, progress).await)
    }
}

/// Records as stored (the codec encoding of `(seq, Transaction)`), in
/// order, waiting at the end of the log.
pub enum RecordReader {
    Segments(segments::LogReader),
}

impl RecordReader {
    /// The next durable record; waits for one at the end. `None` when the
    /// log is closed.
    pub async fn next(&mut self) -> Result<Option<RawRecord>, ChangeLogError> {
        match self {
            RecordReader::Segments(r) => Ok(r.next().await?),
        }
    }
}

/// Decoded records in order, for a slave reading the log itself: every
/// record once, a hole is an error (`Gap`).
pub enum TxnReader {
    // Boxed: it holds a consumer and a chunk being assembled.
    JetStream(Box<jetstream::NatsReader>),
}

impl TxnReader {
    /// The next record `(seq, transaction, encoded bytes)`, or `None` when
    /// none came within `wait` (time to report progress).
    pub async fn next_within(
        &mut self,
        wait: std::time::Duration,
    ) -> Result<Option<(u64, change::Transaction, usize)>, ChangeLogError> {
        match self {
            TxnReader::JetStream(r) => Ok(r.next_within(wait).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::Transaction;

    fn txn(offset: u64, timestamp: u32) -> EncodedTxn {
        EncodedTxn::new(&Transaction::empty_at(offset, timestamp)).unwrap()
    }

    fn options() -> WriterOptions {
        WriterOptions {
            retention: Retention::default(),
            part_bytes: 1 << 20,
            metrics: Metrics::new(),
            shutdown: watch::channel(false).1,
        }
    }

    /// The segment files through the interface: what `append` returned
    /// is durable and readable at once, a record read again is stored
    /// once, and the view answers by sequence and position.
    #[tokio::test]
    async fn segment_files_keep_the_interfaces_promises() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Segments {
            dir: dir.path().to_path_buf(),
            segment_bytes: 1024,
        };
        let mut w = open_writer(&location, options()).await.unwrap();
        assert_eq!(w.start(), None);
        w.initialise(SourcePosition::new("b.000001", 4), None)
            .await
            .unwrap();
        assert_eq!(w.resume().unwrap().offset, 4);
        let batch: Vec<EncodedTxn> = (1..=3).map(|i| txn(100 * i, 1000 + i as u32)).collect();
        let appended = w.append(batch.clone()).await.unwrap().unwrap();
        assert_eq!(appended.transactions, 3);
        assert_eq!(appended.last_seq, Some(3));
        assert_eq!(
            appended.tip,
            Some((SourcePosition::new("b.000001", 300), 1003))
        );
        // Read again from the binlog after a reconnect: not stored twice.
        w.append(batch[1..].to_vec()).await.unwrap().unwrap();
        assert_eq!(w.resume().unwrap().offset, 300);
        w.set_followed(7, 2).await.unwrap();
        assert_eq!(w.followed(), (Some(7), 2));

        let view = w.view();
        assert_eq!(view.read_directly(), None);
        let stats = view.stats().await;
        assert_eq!((stats.first_seq, stats.last_seq), (1, 3));
        assert_eq!(view.last_seq().await, 3);
        assert_eq!(view.time_at(2).await, Some(1002));
        assert_eq!(view.time_at(4).await, None);
        let between = SourcePosition::new("b.000001", 250);
        assert_eq!(view.seq_through(&between).await, Some(2));
        let mut reader = view
            .reader_after(Some(&SourcePosition::new("b.000001", 100)))
            .await
            .unwrap();
        for seq in 2..=3 {
            let rec = reader.next().await.unwrap().unwrap();
            assert_eq!((rec.seq, rec.position.offset), (seq, 100 * seq));
        }
        // Segment files are served by the master, never read by slaves.
        let refused = view.read_from(0, None).await.unwrap_err();
        assert!(
            matches!(refused, ChangeLogError::NotDirect { .. }),
            "{refused}"
        );
        assert!(!refused.is_retryable());
    }

    #[test]
    fn a_lost_position_is_told_apart_from_other_log_errors() {
        let purged = ChangeLogError::from(LogError::Purged {
            requested: Box::new(SourcePosition::new("b.000001", 4)),
            start: Box::new(SourcePosition::new("b.000002", 4)),
        });
        assert!(purged.is_position_lost());
        assert!(!ChangeLogError::from(LogError::Uninitialised).is_position_lost());
    }
}
