//! The master's durable change log: append-only segment files of encoded
//! transactions.
//!
//! Layout of `--data-dir`:
//! - `meta.bin`: format version and the source position the log starts at
//!   (the position before its first record).
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segments named by the sequence number of
//!   their first record. A segment is a 12-byte header (`RCLOGSEG`, format
//!   version u16, reserved u16) followed by records
//!   `[len u32 LE][crc32 u32 LE][payload]`, where the payload is the codec's
//!   encoding of `(seq, Transaction)`.
//!
//! **Invariant:** a record is visible to readers (and so to slaves) only
//! after it has been fsynced and the source transaction it belongs to is
//! whole in the log; [`LogEnd`] published through a watch channel is that
//! end. The parts of a large transaction (see [`Transaction`]) are written
//! as they come, so the master never holds the whole, but stay invisible
//! until the last part is durable. A torn tail left by a crash, and the
//! parts of a transaction whose last part never came, are cut off at open.
//! A transaction's parts never straddle two segments.
//! Sequence numbers increase by one per record and source positions
//! strictly increase, so the master resumes the binlog after the last
//! record and a slave is served from the first record after its checkpoint.
//!
//! **A failed write or fsync** (a full disk above all: [`LogError::DiskFull`])
//! ends the writer for good: the log refuses every later append, because
//! after a failed fsync the kernel may have dropped the unwritten pages and
//! a later fsync would report success for data that is gone. Nothing of
//! the failed batch was published, so no slave has seen it; the master
//! stops, and its next start cuts the torn tail (or rewrites the header of
//! a segment whose creation failed) and resumes the binlog after the last
//! whole record. A failed *fsync* is cut at once: the kernel may already
//! have dropped the pages while still serving them from its cache, so the
//! whole records they hold would read back at the next start as if they
//! were durable, and could vanish from under records appended after them;
//! the segment goes back to its last fsynced length instead. (A failed
//! write leaves its pages dirty, never reported lost: the next start cuts
//! the torn record and fsyncs what is before it.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::log::change::Transaction;
use crate::log::codec::{self, CodecError, FORMAT_VERSION};
use crate::source::gtid_set::GtidSet;
use crate::source::position::SourcePosition;

const SEGMENT_MAGIC: &[u8; 8] = b"RCLOGSEG";
const SEGMENT_HEADER_LEN: u64 = 12;
const RECORD_HEADER_LEN: usize = 8;
/// Segments roll over past this size so retention can drop whole files.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    // `cause`, not `source`: the message already says it, and main prints
    // an error's source chain after it.
    #[error("change log I/O error in {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error(
        "no space left for the change log in data dir {dir} (writing {path}: {cause}); \
         the master stopped, and its log stays consistent up to the last record it fsynced. \
         Free space on that file system, or move the data dir to a bigger one and pass it \
         with --data-dir, then start the master again: it cuts any torn tail and resumes \
         the binlog where the log ends"
    )]
    DiskFull {
        dir: PathBuf,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("the change log in {dir} refuses writes after an earlier write or fsync failed (what it wrote since its last fsync may be lost); restart the master: it reopens the log from what is durable")]
    Failed { dir: PathBuf },
    #[error("change log file {path} is corrupt: {reason}; move the data dir aside to start a new log (slaves then need --resnapshot)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("change log in {path} has format version {found}, this rowcast reads version {FORMAT_VERSION}; run the rowcast version that wrote it, or move the data dir aside and start the master on a new one (slaves then need --resnapshot)")]
    Version { path: PathBuf, found: u16 },
    #[error("change log record could not be encoded: {0}")]
    Codec(#[from] CodecError),
    #[error(
        "position {requested} is older than the change log, which starts after {start}; \
         the slave must be seeded again with `rowcast slave --resnapshot`"
    )]
    Purged {
        requested: Box<SourcePosition>,
        start: Box<SourcePosition>,
    },
    #[error(
        "change log record {expected} is missing: the reader found record {found} next in {path} \
         (retention removed records while a slave read them, or the log was changed under the \
         master); nothing was skipped, the stream stopped. Restart the slave: if its position \
         is purged it must be seeded again with `rowcast slave --resnapshot`; raise \
         --retain-mb/--retain-hours, and run one slave per --name"
    )]
    Gap {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("the change log is not initialised with a start position")]
    Uninitialised,
    #[error("part {part} of the transaction at {position} arrived out of order (internal error); restart the master: it re-reads the transaction from the binlog")]
    PartOutOfOrder {
        part: u32,
        position: Box<SourcePosition>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |cause| {
        if is_disk_full(&cause) {
            // Paths are the data dir itself or files directly in it.
            let dir = match path.is_dir() {
                true => path,
                false => path.parent().unwrap_or(path),
            };
            return LogError::DiskFull {
                dir: dir.to_path_buf(),
                path: path.to_path_buf(),
                cause,
            };
        }
        LogError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// Out of space, or out of the user's quota: the same fix.
fn is_disk_full(e: &io::Error) -> bool {
    // std maps ENOSPC and EDQUOT to these.
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format_version: u16,
    start: SourcePosition,
    /// `@@server_id` of the primary the log follows, to notice a failover.
    source_server_id: Option<u32>,
    /// The epoch of positions read from that primary.
    epoch: u32,
    /// For a MySQL primary: `@@gtid_executed` as of `start`, so the master
    /// can resume by GTID set on another server after a failover.
    start_gtids: Option<GtidSet>,
}

/// How much change log to keep.
#[derive(Debug, Clone)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_bytes: 10 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The durable end of the log: everything up to here is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogEnd {
    /// Sequence number of the last record, 0 when the log is empty.
    pub last_seq: u64,
    /// First sequence number of the segment being written.
    pub segment: u64,
    /// Length in bytes of that segment that is durable.
    pub offset: u64,
}

/// A record as it sits on disk, handed to the server without re-encoding.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub seq: u64,
    pub position: SourcePosition,
    /// The transaction's commit time on the primary.
    pub timestamp: u32,
    /// Part index and "more parts follow" (see [`Transaction`]).
    pub part: u32,
    pub more: bool,
    /// The codec encoding of `(seq, Transaction)`.
    pub payload: Vec<u8>,
}

/// A transaction encoded for the log, ready to be appended. Encoding
/// happens before the writer, so what waits for the log is bytes
/// whose size is known.
#[derive(Debug, Clone)]
pub struct EncodedTxn {
    pub position: SourcePosition,
    pub timestamp: u32,
    pub part: u32,
    pub more: bool,
    pub rows: usize,
    /// The codec encoding of the `Transaction`.
    pub bytes: Vec<u8>,
}

impl EncodedTxn {
    pub fn new(txn: &Transaction) -> Result<EncodedTxn, CodecError> {
        Ok(EncodedTxn {
            position: txn.position.clone(),
            timestamp: txn.timestamp,
            part: txn.part,
            more: txn.more,
            rows: txn.row_count(),
            bytes: {
                // Sized up front: growing the buffer as bincode writes was
                // a good part of encoding. The rows decoded are about as
                // many bytes as their raw events.
                let raw = txn.events.as_ref().map_or(0, |e| {
                    e.format.len()
                        + e.table_maps.iter().map(Vec::len).sum::<usize>()
                        + e.rows.iter().flatten().map(Vec::len).sum::<usize>()
                });
                let mut bytes = Vec::with_capacity(2 * raw + 512);
                codec::encode_into(txn, &mut bytes)?;
                bytes
            },
        })
    }
}

/// The parts of a transaction being written whose last part has not come.
#[derive(Debug, Clone)]
struct OpenTxn {
    /// The log's end before the first part: the published end meanwhile,
    /// and where the file is cut if the transaction is abandoned.
    start: LogEnd,
    start_position: Option<SourcePosition>,
    next_part: u32,
}

impl RawRecord {
    pub fn decode(&self) -> Result<(u64, Transaction), CodecError> {
        codec::decode(&self.payload)
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// Sorted first-sequence numbers of the segments in `dir`.
fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg") {
            if let Ok(seq) = n.parse() {
                out.push(seq);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads the record at the reader's position. `Ok(None)` means a clean end
/// or an incomplete record (a torn tail, or one not yet durable).
fn read_record(r: &mut impl Read, path: &Path) -> Result<Option<RawRecord>, LogError> {
    let mut header = [0u8; RECORD_HEADER_LEN];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    }
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    // No record is empty (a payload begins with its sequence number), and
    // an empty payload's CRC is 0: a length of 0 is a tail of zeros (a file
    // whose size was extended by a crash before its data was written), not
    // a record.
    if len == 0 || len > codec::MAX_ENCODED_LEN {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    match r.read_exact(&mut payload) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    // The payload begins with (seq, position, timestamp, part, more):
    // decode just that.
    let (seq, position, timestamp, part, more): (u64, SourcePosition, u32, u32, bool) =
        codec::decode_prefix(&payload).map_err(|e| LogError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("record header does not decode: {e}"),
        })?;
    Ok(Some(RawRecord {
        seq,
        position,
        timestamp,
        part,
        more,
        payload,
    }))
}

fn segment_header() -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
    header.extend_from_slice(SEGMENT_MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header
}

/// Whether the newest segment is shorter than a header, or a header's
/// length of zeros (allocated but never written): its creation never
/// completed. Leaves the cursor at the start.
fn segment_creation_torn(file: &mut File, path: &Path) -> Result<bool, LogError> {
    let len = file.metadata().map_err(io_err(path))?.len();
    let torn = match len {
        0..SEGMENT_HEADER_LEN => true,
        SEGMENT_HEADER_LEN => {
            let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
            file.read_exact(&mut header).map_err(io_err(path))?;
            header.iter().all(|&b| b == 0)
        }
        _ => false,
    };
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    Ok(torn)
}

fn check_segment_header(file: &mut File, path: &Path) -> Result<(), LogError> {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact(&mut header)
        .map_err(|_| LogError::Corrupt {
            path: path.to_path_buf(),
            reason: "segment header is truncated".into(),
        })?;
    if &header[0..8] != SEGMENT_MAGIC {
        return Err(LogError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a rowcast log segment".into(),
        });
    }
    let found = u16::from_le_bytes([header[8], header[9]]);
    if found != FORMAT_VERSION {
        return Err(LogError::Version {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(())
}

/// The writer side. Exactly one exists per data dir, owned by the master.
pub struct ChangeLog {
    dir: PathBuf,
    meta: Option<Meta>,
    /// The start position as readers see it; moves forward on purge.
    shared_start: Arc<Mutex<Option<SourcePosition>>>,
    file: Option<File>,
    end: LogEnd,
    last_position: Option<SourcePosition>,
    open_txn: Option<OpenTxn>,
    segment_bytes: u64,
    published: watch::Sender<LogEnd>,
    buf: Vec<u8>,
    /// A write or fsync failed: the file's state past the published end is
    /// unknown, so nothing more is written (see the module doc).
    failed: bool,
    /// The end as of the last fsync that succeeded (of the current segment
    /// and, at a roll, of the one before): what a failed fsync cuts back to.
    durable: LogEnd,
    #[cfg(test)]
    fault: Option<Fault>,
}

/// A disk failure a test makes the next write or fsync of a segment have.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The next write stores this many bytes, then fails with ENOSPC.
    ShortWrite(usize),
    /// The next fsync of a segment fails with ENOSPC (as on NFS, or with
    /// thin provisioning, where space is found at writeback).
    Sync,
}

impl ChangeLog {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> Result<ChangeLog, LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let meta_path = dir.join("meta.bin");
        let meta = match fs::read(&meta_path) {
            Ok(bytes) => {
                // The version comes first and is checked before the rest,
                // whose layout it governs.
                let found: u16 = codec::decode_prefix(&bytes).map_err(|e| LogError::Corrupt {
                    path: meta_path.clone(),
                    reason: e.to_string(),
                })?;
                if found != FORMAT_VERSION {
                    return Err(LogError::Version {
                        path: meta_path,
                        found,
                    });
                }
                let meta: Meta = codec::decode(&bytes).map_err(|e| LogError::Corrupt {
                    path: meta_path.clone(),
                    reason: e.to_string(),
                })?;
                Some(meta)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&meta_path)(e)),
        };
        let shared_start = Arc::new(Mutex::new(meta.as_ref().map(|m| m.start.clone())));
        let mut log = ChangeLog {
            dir: dir.to_path_buf(),
            meta,
            shared_start,
            file: None,
            end: LogEnd::default(),
            last_position: None,
            open_txn: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            published: watch::channel(LogEnd::default()).0,
            buf: Vec::new(),
            failed: false,
            durable: LogEnd::default(),
            #[cfg(test)]
            fault: None,
        };
        log.recover()?;
        log.published.send_replace(log.end);
        Ok(log)
    }

    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1024);
        self
    }

    fn recover(&mut self) -> Result<(), LogError> {
        let segments = list_segments(&self.dir)?;
        let Some(&last) = segments.last() else {
            return Ok(());
        };
        let path = segment_path(&self.dir, last);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if segment_creation_torn(&mut file, &path)? {
            // Creating the segment failed (a full disk, a crash) before its
            // header was durable: it holds no record, so it gets the header
            // it should have had.
            tracing::warn!(path = %path.display(), "rewriting the header of a change log segment whose creation was cut short");
            file.set_len(0).map_err(io_err(&path))?;
            file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
            file.write_all(&segment_header()).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        }
        check_segment_header(&mut file, &path)?;
        let mut reader = BufReader::new(&mut file);
        // `good` ends at the last record that completes a transaction.
        let mut good = SEGMENT_HEADER_LEN;
        let mut read = SEGMENT_HEADER_LEN;
        let mut last_seq = last.saturating_sub(1);
        let mut seq_read = last_seq;
        let mut last_position = None;
        while let Some(RawRecord {
            seq,
            position,
            more,
            payload,
            ..
        }) = read_record(&mut reader, &path)?
        {
            if seq != seq_read + 1 {
                return Err(LogError::Corrupt {
                    path,
                    reason: format!("sequence jumps from {seq_read} to {seq}"),
                });
            }
            seq_read = seq;
            read += (RECORD_HEADER_LEN + payload.len()) as u64;
            if !more {
                last_seq = seq;
                last_position = Some(position);
                good = read;
            }
        }
        drop(reader);
        let len = file.metadata().map_err(io_err(&path))?.len();
        if len > good {
            tracing::warn!(path = %path.display(), kept = good, dropped = len - good, "cutting off a torn tail or an unfinished transaction of the change log (the master reads it again from the binlog)");
            file.set_len(good).map_err(io_err(&path))?;
        }
        // Always: a write that failed at a record boundary left whole
        // records nobody fsynced; the binlog resumes after them, so they
        // must be on disk first.
        file.sync_all().map_err(io_err(&path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        if last_position.is_none() && segments.len() > 1 {
            // An empty newest segment: the last record is in the one before.
            let prev = segments[segments.len() - 2];
            let mut reader = LogReader::open_segment(&self.dir, prev)?;
            while let Some(rec) = reader.next_in_segment()? {
                if !rec.more {
                    last_seq = rec.seq;
                    last_position = Some(rec.position);
                }
            }
        }
        self.end = LogEnd {
            last_seq,
            segment: last,
            offset: good,
        };
        self.durable = self.end;
        self.last_position = last_position;
        self.file = Some(file);
        Ok(())
    }

    /// The position the log begins after, if it was ever initialised.
    pub fn start_position(&self) -> Option<&SourcePosition> {
        self.meta.as_ref().map(|m| &m.start)
    }

    /// Records where a new log starts. Called once, on the master's first run.
    pub fn initialise(&mut self, start: SourcePosition) -> Result<(), LogError> {
        self.initialise_with_gtids(start, None)
    }

    /// [`initialise`](Self::initialise) for a MySQL primary, with its
    /// executed GTID set at `start`.
    pub fn initialise_with_gtids(
        &mut self,
        start: SourcePosition,
        gtids: Option<GtidSet>,
    ) -> Result<(), LogError> {
        self.write_meta_full(start, None, 0, gtids)
    }

    /// For a MySQL primary: every GTID up to the end of the log (the set
    /// at its start plus each record's), what a new primary is asked to
    /// skip. `None` when the log did not start with a GTID set.
    pub fn executed_gtids(&self) -> Result<Option<GtidSet>, LogError> {
        let Some(mut set) = self.meta.as_ref().and_then(|m| m.start_gtids.clone()) else {
            return Ok(None);
        };
        for seg in list_segments(&self.dir)? {
            let mut reader = LogReader::open_segment(&self.dir, seg)?;
            while let Some(rec) = reader.next_in_segment()? {
                if let (false, Some(gtid)) = (rec.more, &rec.position.gtid) {
                    set.add_gtid(gtid);
                }
            }
        }
        Ok(Some(set))
    }

    /// The primary the log follows and the current epoch.
    pub fn source(&self) -> (Option<u32>, u32) {
        self.meta
            .as_ref()
            .map(|m| (m.source_server_id, m.epoch))
            .unwrap_or((None, 0))
    }

    /// Records that the log now follows `server_id` in `epoch`.
    pub fn set_source(&mut self, server_id: u32, epoch: u32) -> Result<(), LogError> {
        let start = self
            .start_position()
            .cloned()
            .ok_or(LogError::Uninitialised)?;
        let gtids = self.meta.as_ref().and_then(|m| m.start_gtids.clone());
        self.write_meta_full(start, Some(server_id), epoch, gtids)
    }

    fn write_meta_full(
        &mut self,
        start: SourcePosition,
        source_server_id: Option<u32>,
        epoch: u32,
        start_gtids: Option<GtidSet>,
    ) -> Result<(), LogError> {
        let meta = Meta {
            format_version: FORMAT_VERSION,
            start,
            source_server_id,
            epoch,
            start_gtids,
        };
        let path = self.dir.join("meta.bin");
        let tmp = self.dir.join("meta.bin.tmp");
        let bytes = codec::encode(&meta)?;
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .map_err(io_err(&tmp));
        if let Err(e) = written {
            // Best effort: a half-written file only takes space.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        fsync_dir(&self.dir)?;
        // Readers learn of a new start only once it is durable (and before
        // retention removes the segment it replaces).
        *self.shared_start.lock().unwrap() = Some(meta.start.clone());
        self.meta = Some(meta);
        Ok(())
    }

    /// Where the master resumes reading the binlog: after the last record,
    /// or at the start position of an empty log.
    pub fn resume_position(&self) -> Option<SourcePosition> {
        self.last_position
            .clone()
            .or_else(|| self.start_position().cloned())
    }

    pub fn end(&self) -> LogEnd {
        self.end
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A handle that opens readers; readers see only durable records.
    pub fn subscribe(&self) -> LogHandle {
        LogHandle {
            dir: self.dir.clone(),
            start: self.shared_start.clone(),
            end: self.published.subscribe(),
        }
    }

    fn roll_segment(&mut self, first_seq: u64) -> Result<(), LogError> {
        if self.file.is_some() {
            self.sync_segment()?;
            self.file = None;
        }
        let path = segment_path(&self.dir, first_seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let written = file
            .write_all(&segment_header())
            .and_then(|()| file.sync_all())
            .map_err(io_err(&path));
        if let Err(e) = written {
            // An empty segment would be named after a record it does not
            // hold; the next open also repairs one left by a crash.
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        fsync_dir(&self.dir)?;
        self.file = Some(file);
        self.end.segment = first_seq;
        self.end.offset = SEGMENT_HEADER_LEN;
        self.durable = self.end;
        Ok(())
    }

    /// fsyncs the segment being written; on success everything up to
    /// `end` is durable, on failure the segment is cut back to what was
    /// (see the module doc).
    fn sync_segment(&mut self) -> Result<(), LogError> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        #[cfg(test)]
        let injected = match self.fault {
            Some(Fault::Sync) => {
                self.fault = None;
                Err(io::ErrorKind::StorageFull.into())
            }
            _ => Ok(()),
        };
        #[cfg(not(test))]
        let injected = Ok(());
        let path = segment_path(&self.dir, self.end.segment);
        match injected.and_then(|()| file.sync_data()) {
            Ok(()) => {
                self.durable = self.end;
                Ok(())
            }
            Err(cause) => {
                self.cut_to_durable();
                Err(io_err(&path)(cause))
            }
        }
    }

    /// After a failed fsync: cuts the segment back to its last fsynced
    /// length, so no record whose pages the kernel may have dropped is
    /// read back as durable at the next start. Best effort: if this fails
    /// too, the next start still cuts whatever tail is torn by then.
    fn cut_to_durable(&mut self) {
        self.buf.clear();
        let durable = self.durable;
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let path = segment_path(&self.dir, durable.segment);
        if durable.segment != self.end.segment {
            // Not reached: `durable` moves to a new segment when it is
            // created, before anything is written into it.
            tracing::error!(path = %path.display(), "change log segment changed without an fsync; not cutting it");
            return;
        }
        let cut = file
            .set_len(durable.offset)
            .and_then(|()| file.seek(SeekFrom::End(0)))
            .and_then(|_| file.sync_all());
        match cut {
            Ok(()) => {
                tracing::warn!(path = %path.display(), kept = durable.offset, last_seq = durable.last_seq, "an fsync of the change log failed: cut the segment back to its last fsynced record")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), kept = durable.offset, cause = %e, "an fsync of the change log failed, and cutting the segment back to its last fsynced record failed too; the next start cuts a torn tail")
            }
        }
    }

    /// Appends transactions, fsyncs once for the whole batch (group
    /// commit), and only then makes them visible to readers.
    pub fn append(&mut self, txns: &[Transaction]) -> Result<(), LogError> {
        let encoded = txns
            .iter()
            .map(EncodedTxn::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.append_encoded(&encoded)
    }

    /// [`append`](Self::append) for transactions encoded beforehand.
    /// After an error the log accepts no more appends
    /// ([`LogError::Failed`]): the master must restart.
    pub fn append_encoded(&mut self, txns: &[EncodedTxn]) -> Result<(), LogError> {
        if txns.is_empty() {
            return Ok(());
        }
        if self.meta.is_none() {
            return Err(LogError::Uninitialised);
        }
        if self.failed {
            return Err(LogError::Failed {
                dir: self.dir.clone(),
            });
        }
        let result = self.append_batch(txns);
        // The in-memory end already counts the batch, the file holds some
        // of it, and a failed fsync may have lost pages the kernel still
        // reported written: none of it may become visible later.
        self.failed = result.is_err();
        result
    }

    fn append_batch(&mut self, txns: &[EncodedTxn]) -> Result<(), LogError> {
        for txn in txns {
            if let Some(last) = &self.last_position {
                if !txn.position.is_after(last) {
                    // Re-reading the binlog after a reconnect can repeat a
                    // transaction (or parts of one) the log already has;
                    // skipping it keeps positions strictly increasing.
                    tracing::debug!(position = %txn.position, "transaction already in the change log");
                    continue;
                }
            }
            match (&mut self.open_txn, txn.part) {
                // The open transaction never got its last part (the binlog
                // rolled it back or the primary changed): nobody has seen
                // it, so it goes.
                (Some(_), 0) => self.abandon_open_txn()?,
                (Some(open), n) if n == open.next_part => open.next_part += 1,
                (None, 0) => {}
                _ => {
                    return Err(LogError::PartOutOfOrder {
                        part: txn.part,
                        position: Box::new(txn.position.clone()),
                    })
                }
            }
            if self.open_txn.is_none()
                && (self.file.is_none() || self.end.offset >= self.segment_bytes)
            {
                self.flush_to_file()?;
                self.roll_segment(self.end.last_seq + 1)?;
            }
            if txn.more && txn.part == 0 {
                self.open_txn = Some(OpenTxn {
                    start: self.end,
                    start_position: self.last_position.clone(),
                    next_part: 1,
                });
            }
            let seq = self.end.last_seq + 1;
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
            // The record is the encoding of `(seq, Transaction)`: a tuple
            // encodes as its fields one after the other.
            codec::encode_into(&seq, &mut self.buf)?;
            self.buf.extend_from_slice(&txn.bytes);
            let payload_len = self.buf.len() - start - RECORD_HEADER_LEN;
            let crc = crc32fast::hash(&self.buf[start + RECORD_HEADER_LEN..]);
            self.buf[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
            self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            self.end.last_seq = seq;
            self.end.offset += (RECORD_HEADER_LEN + payload_len) as u64;
            self.last_position = Some(txn.position.clone());
            if !txn.more {
                self.open_txn = None;
            }
        }
        self.flush_to_file()?;
        self.sync_segment()?;
        self.published.send_replace(self.visible_end());
        Ok(())
    }

    /// The end readers may see: before any unfinished transaction.
    fn visible_end(&self) -> LogEnd {
        match &self.open_txn {
            Some(open) => open.start,
            None => self.end,
        }
    }

    /// Cuts the parts of the open transaction off the current segment.
    fn abandon_open_txn(&mut self) -> Result<(), LogError> {
        let Some(open) = self.open_txn.take() else {
            return Ok(());
        };
        tracing::warn!(after = ?open.start_position.as_ref().map(|p| p.to_string()), parts = open.next_part, "dropping the parts of a transaction that never committed");
        self.flush_to_file()?;
        let path = segment_path(&self.dir, open.start.segment);
        let file = self.file.as_mut().ok_or(LogError::Uninitialised)?;
        file.set_len(open.start.offset).map_err(io_err(&path))?;
        // Writes go to the cursor: move it back to the new end.
        file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        self.end = open.start;
        if self.durable.segment == open.start.segment && self.durable.offset > open.start.offset {
            // What was fsynced past the new end is gone: a failed fsync
            // must not cut (that is, extend) back to it.
            self.durable = open.start;
        }
        self.last_position = open.start_position;
        Ok(())
    }

    /// Deletes whole old segments while the log is over `retention`'s
    /// size or its oldest segment over its age, never a segment holding a
    /// record at or after `keep_from_seq` (what a connected slave has not
    /// confirmed yet), and never the segment being written. The start
    /// position moves to the last deleted record, so a slave asking for
    /// anything older is told to re-seed. Returns the segments deleted.
    pub fn purge(&mut self, retention: &Retention, keep_from_seq: u64) -> Result<usize, LogError> {
        let segments = list_segments(&self.dir)?;
        let mut sizes: Vec<(u64, u64, SystemTime)> = Vec::new();
        for &seg in &segments {
            let path = segment_path(&self.dir, seg);
            let m = fs::metadata(&path).map_err(io_err(&path))?;
            sizes.push((seg, m.len(), m.modified().unwrap_or(SystemTime::now())));
        }
        let mut total: u64 = sizes.iter().map(|s| s.1).sum();
        let mut deleted = 0;
        for i in 0..sizes.len().saturating_sub(1) {
            let (seg, len, modified) = sizes[i];
            let next_first = sizes[i + 1].0;
            let too_big = total > retention.max_bytes;
            let too_old = modified.elapsed().unwrap_or_default() > retention.max_age;
            if !(too_big || too_old) || next_first > keep_from_seq {
                break;
            }
            let mut reader = LogReader::open_segment(&self.dir, seg)?;
            let mut last = None;
            let mut gtids = self.meta.as_ref().and_then(|m| m.start_gtids.clone());
            while let Some(rec) = reader.next_in_segment()? {
                // What is dropped moves into the start's GTID set.
                if let (Some(set), Some(gtid)) = (&mut gtids, &rec.position.gtid) {
                    set.add_gtid(gtid);
                }
                last = Some(rec.position);
            }
            if let Some(last) = last {
                let (server, epoch) = self.source();
                self.write_meta_full(last, server, epoch, gtids)?;
            }
            let path = segment_path(&self.dir, seg);
            fs::remove_file(&path).map_err(io_err(&path))?;
            tracing::info!(segment = %path.display(), bytes = len, "change log segment removed by retention");
            total -= len;
            deleted += 1;
        }
        Ok(deleted)
    }

    fn flush_to_file(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.file.as_mut().ok_or(LogError::Uninitialised)?;
        #[cfg(test)]
        if let Some(Fault::ShortWrite(n)) = self.fault {
            self.fault = None;
            file.write_all(&self.buf[..n.min(self.buf.len())])
                .map_err(io_err(&self.dir))?;
            return Err(io_err(&self.dir)(io::ErrorKind::StorageFull.into()));
        }
        file.write_all(&self.buf).map_err(io_err(&self.dir))?;
        self.buf.clear();
        Ok(())
    }
}

/// Cloneable access for readers: the directory and the durable end.
#[derive(Clone)]
pub struct LogHandle {
    dir: PathBuf,
    start: Arc<Mutex<Option<SourcePosition>>>,
    end: watch::Receiver<LogEnd>,
}

impl LogHandle {
    pub fn end(&self) -> LogEnd {
        *self.end.borrow()
    }

    /// The position before the oldest record still kept.
    pub fn start(&self) -> Option<SourcePosition> {
        self.start.lock().unwrap().clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `(first sequence number kept, segment count, bytes on disk)`.
    pub fn stats(&self) -> (u64, u64, u64) {
        let segments = list_segments(&self.dir).unwrap_or_default();
        let bytes = segments
            .iter()
            .filter_map(|s| fs::metadata(segment_path(&self.dir, *s)).ok())
            .map(|m| m.len())
            .sum();
        (
            segments.first().copied().unwrap_or(0),
            segments.len() as u64,
            bytes,
        )
    }

    /// A reader positioned at the first record after `after` (or at the
    /// very first record when `after` is `None`).
    pub fn reader_after(&self, after: Option<&SourcePosition>) -> Result<LogReader, LogError> {
        if let (Some(p), Some(start)) = (after, &self.start()) {
            if start.is_after(p) {
                return Err(LogError::Purged {
                    requested: Box::new(p.clone()),
                    start: Box::new(start.clone()),
                });
            }
        }
        let segments = list_segments(&self.dir)?;
        // Find the last segment whose first record is not after `after`.
        let mut chosen = segments.first().copied();
        if let Some(p) = after {
            for &s in &segments {
                let mut r = LogReader::open_segment(&self.dir, s)?;
                match r.next_in_segment()? {
                    Some(rec) if !rec.position.is_after(p) => chosen = Some(s),
                    _ => break,
                }
            }
        }
        let mut reader = match chosen {
            Some(s) => LogReader::open_segment(&self.dir, s)?,
            None => LogReader::empty(&self.dir),
        };
        // Retention may have removed the segment holding `after` while the
        // segments were searched: the start has moved past it then, and
        // reading on from a later segment would skip what lay between.
        // (An open segment stays readable even when it is removed.)
        if let (Some(p), Some(start)) = (after, &self.start()) {
            if start.is_after(p) {
                return Err(LogError::Purged {
                    requested: Box::new(p.clone()),
                    start: Box::new(start.clone()),
                });
            }
        }
        reader.end = Some(self.end.clone());
        reader.skip_to_after = after.cloned();
        Ok(reader)
    }
}

/// Reads records in order, waiting at the durable end for more.
pub struct LogReader {
    dir: PathBuf,
    segment: Option<u64>,
    file: Option<BufReader<File>>,
    offset: u64,
    end: Option<watch::Receiver<LogEnd>>,
    skip_to_after: Option<SourcePosition>,
    /// Sequence number of the last record read: the next must follow it.
    last_seq: Option<u64>,
}

impl LogReader {
    fn empty(dir: &Path) -> LogReader {
        LogReader {
            dir: dir.to_path_buf(),
            segment: None,
            file: None,
            offset: 0,
            end: None,
            skip_to_after: None,
            last_seq: None,
        }
    }

    fn open_segment(dir: &Path, seq: u64) -> Result<LogReader, LogError> {
        let path = segment_path(dir, seq);
        let mut file = File::open(&path).map_err(io_err(&path))?;
        check_segment_header(&mut file, &path)?;
        Ok(LogReader {
            dir: dir.to_path_buf(),
            segment: Some(seq),
            file: Some(BufReader::with_capacity(1 << 20, file)),
            offset: SEGMENT_HEADER_LEN,
            end: None,
            skip_to_after: None,
            last_seq: None,
        })
    }

    /// Next record of the current segment file, without waiting.
    fn next_in_segment(&mut self) -> Result<Option<RawRecord>, LogError> {
        let Some(seg) = self.segment else {
            return Ok(None);
        };
        let path = segment_path(&self.dir, seg);
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        match read_record(file, &path)? {
            Some(rec) => {
                if let Some(last) = self.last_seq {
                    if rec.seq != last + 1 {
                        return Err(LogError::Gap {
                            path,
                            expected: last + 1,
                            found: rec.seq,
                        });
                    }
                }
                self.offset += (RECORD_HEADER_LEN + rec.payload.len()) as u64;
                self.last_seq = Some(rec.seq);
                Ok(Some(rec))
            }
            None => Ok(None),
        }
    }

    /// The next durable record, waiting for the writer when at the end.
    /// Returns `Ok(None)` only when the master is shutting down.
    pub async fn next(&mut self) -> Result<Option<RawRecord>, LogError> {
        loop {
            let Some(end_rx) = self.end.as_mut() else {
                return Ok(None);
            };
            let end = *end_rx.borrow_and_update();
            let available = match self.segment {
                Some(seg) if seg == end.segment => self.offset < end.offset,
                Some(seg) => seg < end.segment,
                None => end.last_seq > 0,
            };
            if !available {
                // What the buffer read past the published end may be
                // parts the writer cuts off again (an abandoned
                // transaction): drop it, re-read from the file later.
                if let Some(f) = self.file.as_mut() {
                    let path = segment_path(&self.dir, self.segment.unwrap_or(0));
                    f.seek(SeekFrom::Start(self.offset))
                        .map_err(io_err(&path))?;
                }
                if end_rx.changed().await.is_err() {
                    return Ok(None);
                }
                continue;
            }
            if self.segment.is_none() {
                let first = list_segments(&self.dir)?.first().copied();
                if let Some(first) = first {
                    let end_rx = self.end.take();
                    let skip = self.skip_to_after.take();
                    *self = LogReader::open_segment(&self.dir, first)?;
                    self.end = end_rx;
                    self.skip_to_after = skip;
                }
                continue;
            }
            match self.next_in_segment()? {
                Some(rec) => {
                    if let Some(p) = &self.skip_to_after {
                        if !rec.position.is_after(p) {
                            continue;
                        }
                        self.skip_to_after = None;
                    }
                    return Ok(Some(rec));
                }
                None => {
                    let seg = self.segment.unwrap_or(0);
                    if seg == end.segment {
                        // Durable bytes announced but not readable: the
                        // file is corrupt underneath us.
                        return Err(LogError::Corrupt {
                            path: segment_path(&self.dir, seg),
                            reason: format!("record at byte {} is unreadable", self.offset),
                        });
                    }
                    let next = list_segments(&self.dir)?
                        .into_iter()
                        .find(|s| *s > seg)
                        .ok_or_else(|| LogError::Corrupt {
                            path: self.dir.clone(),
                            reason: format!("segment after {seg} is missing"),
                        })?;
                    let end_rx = self.end.take();
                    let skip = self.skip_to_after.take();
                    let last_seq = self.last_seq;
                    *self = LogReader::open_segment(&self.dir, next)?;
                    self.end = end_rx;
                    self.skip_to_after = skip;
                    self.last_seq = last_seq;
                }
            }
        }
    }
}

/// Cheap reads at a sequence number, for lag: only the record's header
/// and the first bytes of its payload are read (a transaction begins with
/// its position and commit time), never its rows.
impl LogHandle {
    /// The first durable record whose sequence number is `seq` or later:
    /// `(seq, position, primary commit time)`. `None` when the log holds no
    /// such record (yet). A `seq` that retention dropped gives the oldest
    /// record kept, which is newer than what was asked for.
    pub fn record_at(&self, seq: u64) -> Result<Option<(u64, SourcePosition, u32)>, LogError> {
        // Enough for the prefix almost always (a position is a file name,
        // an offset and an optional GTID); a longer one is read whole.
        const PREFIX: usize = 512;
        if seq > self.end().last_seq {
            return Ok(None);
        }
        let segments = list_segments(&self.dir)?;
        let Some(&first) = segments
            .iter()
            .rev()
            .find(|&&s| s <= seq)
            .or(segments.first())
        else {
            return Ok(None);
        };
        let path = segment_path(&self.dir, first);
        let mut file = match File::open(&path) {
            Ok(f) => BufReader::with_capacity(64 << 10, f),
            // Dropped by retention since the listing: the next one holds
            // what is kept.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return match segments.iter().find(|&&s| s > first) {
                    Some(&next) => self.record_at(next),
                    None => Ok(None),
                }
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        check_segment_header(file.get_mut(), &path)?;
        let mut prefix = Vec::with_capacity(PREFIX);
        loop {
            let mut header = [0u8; RECORD_HEADER_LEN];
            match file.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(io_err(&path)(e)),
            }
            let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
            let mut n = len.min(PREFIX);
            prefix.resize(n, 0);
            file.read_exact(&mut prefix).map_err(io_err(&path))?;
            let decoded = match codec::decode_prefix(&prefix) {
                Err(_) if n < len => {
                    prefix.resize(len, 0);
                    file.read_exact(&mut prefix[n..]).map_err(io_err(&path))?;
                    n = len;
                    codec::decode_prefix(&prefix)
                }
                other => other,
            };
            let (rec_seq, position, timestamp): (u64, SourcePosition, u32) =
                decoded.map_err(|e| LogError::Corrupt {
                    path: path.clone(),
                    reason: format!("record header does not decode: {e}"),
                })?;
            if rec_seq >= seq {
                return Ok(Some((rec_seq, position, timestamp)));
            }
            if rec_seq >= self.end().last_seq {
                return Ok(None);
            }
            file.seek_relative((len - n) as i64)
                .map_err(io_err(&path))?;
        }
    }

    /// The sequence number a reader that has everything up to `position`
    /// has read: that of the last durable record not after it (one before
    /// the oldest record kept when none is). `None` for an empty log.
    pub fn seq_through(&self, position: &SourcePosition) -> Result<Option<u64>, LogError> {
        let last = self.end().last_seq;
        if last == 0 {
            return Ok(None);
        }
        // Records are few per status request and their positions grow
        // with their sequence numbers: a binary search over sequences.
        let Some((first, first_pos, _)) = self.record_at(0)? else {
            return Ok(None);
        };
        if first_pos.is_after(position) {
            return Ok(Some(first - 1));
        }
        let (mut lo, mut hi) = (first, last);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match self.record_at(mid)? {
                Some((seq, p, _)) if !p.is_after(position) => lo = seq.max(mid),
                _ => hi = mid - 1,
            }
        }
        Ok(Some(lo))
    }
}

/// The segment files as a [`LogWriter`](crate::log::LogWriter): the
/// writes and fsyncs (which block) run off the async runtime, one batch at
/// a time, so the binlog reader keeps reading into the queue meanwhile.
pub struct SegmentWriter {
    log: Arc<Mutex<ChangeLog>>,
    handle: LogHandle,
    retention: Retention,
    part_bytes: usize,
}

impl SegmentWriter {
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        options: crate::log::WriterOptions,
    ) -> Result<SegmentWriter, LogError> {
        let log = ChangeLog::open(dir)?.with_segment_bytes(segment_bytes);
        Ok(SegmentWriter {
            handle: log.subscribe(),
            log: Arc::new(Mutex::new(log)),
            retention: options.retention,
            part_bytes: options.part_bytes,
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, ChangeLog> {
        // Only this writer's own calls take it, one at a time.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the log on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChangeLog) -> T + Send + 'static,
    ) -> T {
        let log = self.log.clone();
        let run = tokio::task::spawn_blocking(move || {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut log)
        });
        match run.await {
            Ok(t) => t,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: only a runtime shutting down does that, and it
            // drops this task too; there is nothing to return to.
            Err(_) => std::future::pending().await,
        }
    }
}

impl crate::log::LogWriter for SegmentWriter {
    fn start(&self) -> Option<SourcePosition> {
        self.log().start_position().cloned()
    }

    async fn initialise(
        &mut self,
        start: SourcePosition,
        gtids: Option<GtidSet>,
    ) -> Result<(), crate::log::ChangeLogError> {
        Ok(self.log().initialise_with_gtids(start, gtids)?)
    }

    fn resume(&self) -> Option<SourcePosition> {
        self.log().resume_position()
    }

    fn tip(&self) -> (Option<SourcePosition>, u32) {
        let last = self.handle.end().last_seq;
        match self.handle.record_at(last) {
            Ok(Some((_, position, time))) => (Some(position), time),
            _ => (None, 0),
        }
    }

    fn followed(&self) -> (Option<u32>, u32) {
        self.log().source()
    }

    async fn set_followed(
        &mut self,
        server_id: u32,
        epoch: u32,
    ) -> Result<(), crate::log::ChangeLogError> {
        Ok(self.log().set_source(server_id, epoch)?)
    }

    fn executed_gtids(&self) -> Result<Option<GtidSet>, crate::log::ChangeLogError> {
        Ok(self.log().executed_gtids()?)
    }

    fn part_bytes(&self) -> usize {
        self.part_bytes
    }

    async fn append(
        &mut self,
        batch: Vec<EncodedTxn>,
    ) -> Result<Option<crate::log::Appended>, crate::log::ChangeLogError> {
        let appended = self
            .blocking(move |log| {
                let before = log.end();
                log.append_encoded(&batch)?;
                let end = log.end();
                // Bytes are counted within a segment (a new one starts
                // with its header).
                let bytes = match end.segment == before.segment {
                    true => end.offset.saturating_sub(before.offset),
                    false => 0,
                };
                Ok::<_, LogError>(crate::log::Appended::of(&batch, bytes, Some(end.last_seq)))
            })
            .await?;
        Ok(Some(appended))
    }

    async fn retain(&mut self, keep_from: u64) -> Result<(), crate::log::ChangeLogError> {
        let retention = self.retention.clone();
        self.blocking(move |log| log.purge(&retention, keep_from))
            .await?;
        Ok(())
    }

    fn view(&self) -> crate::log::View {
        crate::log::View::Segments(self.handle.clone())
    }

    fn location(&self) -> String {
        self.handle.dir().display().to_string()
    }
}

/// Runs `f` on the log off the async runtime: the log is read with
/// blocking file I/O (a record search can take a second on a full
/// segment), which must not hold a runtime thread that serves slaves.
async fn on_log<T: Send + 'static>(
    log: &LogHandle,
    f: impl FnOnce(&LogHandle) -> T + Send + 'static,
) -> Option<T> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || f(&log)).await.ok()
}

impl LogHandle {
    /// Slaves read segment files through their master, never themselves.
    fn not_direct(&self) -> crate::log::ChangeLogError {
        crate::log::ChangeLogError::NotDirect {
            location: self.dir.display().to_string(),
        }
    }
}

impl crate::log::LogView for LogHandle {
    async fn stats(&self) -> crate::log::LogStats {
        let last_seq = self.end().last_seq;
        let (first_seq, segments, bytes) = on_log(self, |l| l.stats()).await.unwrap_or((0, 0, 0));
        crate::log::LogStats {
            first_seq,
            last_seq,
            last_time: None,
            segments,
            bytes,
        }
    }

    async fn last_seq(&self) -> u64 {
        self.end().last_seq
    }

    async fn time_at(&self, seq: u64) -> Option<u32> {
        match on_log(self, move |l| l.record_at(seq)).await {
            Some(Ok(Some((_, _, t)))) => Some(t),
            _ => None,
        }
    }

    async fn seq_through(&self, position: &SourcePosition) -> Option<u64> {
        let p = position.clone();
        on_log(self, move |l| l.seq_through(&p).ok().flatten())
            .await
            .flatten()
    }

    async fn ddl_between(
        &self,
        from: &SourcePosition,
        to: &SourcePosition,
    ) -> Result<bool, crate::log::ChangeLogError> {
        if !to.is_after(from) {
            return Ok(false);
        }
        let mut reader = self.reader_after(Some(from))?;
        loop {
            let rec = match tokio::time::timeout(Duration::from_secs(3), reader.next()).await {
                Err(_) | Ok(Ok(None)) => return Ok(false),
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(Some(rec))) => rec,
            };
            if rec.position.is_after(to) {
                return Ok(false);
            }
            let (_, txn) = rec.decode().map_err(LogError::from)?;
            if txn.is_ddl() {
                return Ok(true);
            }
        }
    }

    async fn reader_after(
        &self,
        after: Option<&SourcePosition>,
    ) -> Result<crate::log::RecordReader, crate::log::ChangeLogError> {
        Ok(crate::log::RecordReader::Segments(LogHandle::reader_after(
            self, after,
        )?))
    }

    fn read_directly(&self) -> Option<String> {
        None
    }

    async fn read_from(
        &self,
        _seq: u64,
        _position: Option<&SourcePosition>,
    ) -> Result<crate::log::ReadFrom, crate::log::ChangeLogError> {
        Err(self.not_direct())
    }

    async fn reader_from(
        &self,
        _seq: u64,
    ) -> Result<crate::log::TxnReader, crate::log::ChangeLogError> {
        Err(self.not_direct())
    }

    async fn report(
        &self,
        _name: &str,
        _progress: &crate::log::SlaveProgress,
    ) -> Result<(), crate::log::ChangeLogError> {
        Err(self.not_direct())
    }

    async fn reports(&self) -> Vec<(String, crate::log::SlaveProgress)> {
        Vec::new()
    }

    fn location(&self) -> String {
        self.dir().display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::{Change, Ddl};
    use crate::source::position::{Gtid, GtidTag};

    fn txn(file: &str, offset: u64) -> Transaction {
        Transaction {
            position: SourcePosition::new(file, offset),
            timestamp: 1,
            part: 0,
            more: false,
            tables: vec![],
            changes: vec![Change::Ddl(Ddl {
                database: None,
                sql: format!("CREATE DATABASE d{offset}").into_bytes(),
                ..Default::default()
            })],
            events: None,
            xa: None,
        }
    }

    /// A log of 1 KiB segments holding `n` transactions 100 bytes apart,
    /// and those transactions.
    fn small_segments_with(dir: &Path, n: u64) -> (ChangeLog, Vec<Transaction>) {
        let mut log = ChangeLog::open(dir).unwrap().with_segment_bytes(1024);
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        let batch: Vec<_> = (1..=n).map(|i| txn("b.000001", 100 * i)).collect();
        log.append(&batch).unwrap();
        (log, batch)
    }

    /// A full disk (or a crash) while rolling to a new segment leaves it
    /// empty, cut inside its header, or allocated as zeros: the log opens,
    /// resumes after the last record and appends into that segment, whose
    /// name is still the next record's sequence number.
    #[tokio::test]
    async fn reopens_after_a_segment_creation_was_cut_short() {
        for torn in [&[][..], &SEGMENT_MAGIC[..5], &[0u8; 12][..]] {
            let dir = tempfile::tempdir().unwrap();
            let (log, _) = small_segments_with(dir.path(), 50);
            assert_eq!(log.end().last_seq, 50);
            drop(log);
            fs::write(segment_path(dir.path(), 51), torn).unwrap();

            let mut log = ChangeLog::open(dir.path()).unwrap();
            assert_eq!(
                log.resume_position().unwrap(),
                SourcePosition::new("b.000001", 5000),
                "torn header {torn:?}"
            );
            log.append(&[txn("b.000001", 5100)]).unwrap();
            assert_eq!(log.end().last_seq, 51);
            assert_eq!(log.end().segment, 51);
            let handle = log.subscribe();
            let mut all = handle.reader_after(None).unwrap();
            for expect in 1..=51 {
                let rec = all.next().await.unwrap().unwrap();
                assert_eq!((rec.seq, rec.position.offset), (expect, 100 * expect));
            }
        }
    }

    /// A segment that is not empty and not a header of zeros is not
    /// taken for a torn creation: it is reported, never rewritten.
    #[test]
    fn a_foreign_newest_segment_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = small_segments_with(dir.path(), 50);
        drop(log);
        fs::write(segment_path(dir.path(), 51), b"NOTALOGSEGMT").unwrap();
        assert!(matches!(
            ChangeLog::open(dir.path()),
            Err(LogError::Corrupt { .. })
        ));
        assert_eq!(
            fs::read(segment_path(dir.path(), 51)).unwrap(),
            b"NOTALOGSEGMT"
        );
    }

    #[tokio::test]
    async fn appends_reads_and_resumes_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, batch) = small_segments_with(dir.path(), 50);
        assert!(
            list_segments(dir.path()).unwrap().len() > 1,
            "segments roll over"
        );
        // A repeat of an already logged position is not appended twice.
        log.append(&batch[49..]).unwrap();
        assert_eq!(log.end().last_seq, 50);
        drop(log);

        let log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(
            log.resume_position().unwrap(),
            SourcePosition::new("b.000001", 5000)
        );
        let handle = log.subscribe();
        let mut r = handle
            .reader_after(Some(&SourcePosition::new("b.000001", 2500)))
            .unwrap();
        let rec = r.next().await.unwrap().unwrap();
        assert_eq!((rec.seq, rec.position.offset), (26, 2600));
        let (seq, t) = rec.decode().unwrap();
        assert_eq!(seq, 26);
        assert_eq!(t, txn("b.000001", 2600));
        let mut all = handle.reader_after(None).unwrap();
        for expect in 1..=50 {
            assert_eq!(all.next().await.unwrap().unwrap().seq, expect);
        }
        let older = handle.reader_after(Some(&SourcePosition::new("b.000000", 9)));
        assert!(matches!(older, Err(LogError::Purged { .. })));
    }

    #[tokio::test]
    async fn a_reader_stops_at_records_retention_removed_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = small_segments_with(dir.path(), 100);
        let handle = log.subscribe();
        let mut r = handle.reader_after(None).unwrap();
        assert_eq!(r.next().await.unwrap().unwrap().seq, 1);
        // Retention runs as if no slave needed anything before 60 (a
        // second connection under this slave's name acked further): the
        // segments after the reader's open one go.
        let tiny = Retention {
            max_bytes: 0,
            max_age: Duration::from_secs(3600),
        };
        assert!(log.purge(&tiny, 60).unwrap() > 1);
        let mut seqs = Vec::new();
        let err = loop {
            let next = tokio::time::timeout(Duration::from_secs(60), r.next()).await;
            match next.expect("the reader waits at the end instead of stopping at the gap") {
                Ok(Some(rec)) => seqs.push(rec.seq),
                Ok(None) => panic!("the reader ended"),
                Err(e) => break e,
            }
        };
        assert!(
            seqs.iter().zip(2..).all(|(s, want)| *s == want),
            "every record read follows the one before: {seqs:?}"
        );
        let LogError::Gap {
            expected, found, ..
        } = &err
        else {
            panic!("expected a gap, got {err}");
        };
        assert_eq!(*expected, seqs.last().copied().unwrap_or(1) + 1);
        assert!(*found > *expected);
        let msg = err.to_string();
        assert!(
            msg.contains("--resnapshot") && msg.contains("--retain-mb"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn retention_drops_old_segments_but_not_unconfirmed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = small_segments_with(dir.path(), 100);
        let before = list_segments(dir.path()).unwrap();
        assert!(before.len() > 4);
        let tiny = Retention {
            max_bytes: 0,
            max_age: Duration::from_secs(3600),
        };
        // A slave still needs seq 30: the segment holding it stays.
        log.purge(&tiny, 30).unwrap();
        let after = list_segments(dir.path()).unwrap();
        assert!(after.len() < before.len());
        assert!(after[0] <= 30, "segment with seq 30 kept: {after:?}");
        let handle = log.subscribe();
        let start = handle.start().unwrap();
        assert!(start.offset >= 100, "start moved: {start}");
        let old = handle.reader_after(Some(&SourcePosition::new("b.000001", 150)));
        assert!(
            matches!(old, Err(LogError::Purged { .. })),
            "older positions need a resnapshot"
        );
        let mut r = handle
            .reader_after(Some(&SourcePosition::new("b.000001", 2900)))
            .unwrap();
        assert_eq!(r.next().await.unwrap().unwrap().seq, 30);
        // Nobody connected: everything but the segment being written goes.
        log.purge(&tiny, u64::MAX).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        drop(log);
        let log = ChangeLog::open(dir.path()).unwrap();
        assert!(
            log.start_position().unwrap().offset > 2900,
            "the start survives a restart"
        );
    }

    #[tokio::test]
    async fn torn_tail_is_cut_and_reader_waits_for_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path()).unwrap();
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        log.append(&[txn("b.000001", 10), txn("b.000001", 20)])
            .unwrap();
        drop(log);
        let seg = segment_path(dir.path(), 1);
        let full = fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(full - 3).unwrap();

        let mut log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(log.end().last_seq, 1);
        assert_eq!(log.resume_position().unwrap().offset, 10);
        let handle = log.subscribe();
        let mut r = handle
            .reader_after(Some(&SourcePosition::new("b.000001", 10)))
            .unwrap();
        let waiter = tokio::spawn(async move { r.next().await.unwrap().unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "nothing after 10 yet");
        log.append(&[txn("b.000001", 30)]).unwrap();
        let rec = waiter.await.unwrap();
        assert_eq!((rec.seq, rec.position.offset), (2, 30));
    }

    fn part(offset: u64, part: u32, more: bool) -> Transaction {
        Transaction {
            part,
            more,
            ..txn("b.000001", offset)
        }
    }

    #[tokio::test]
    async fn parts_stay_invisible_until_the_last_one_and_are_cut_at_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path())
            .unwrap()
            .with_segment_bytes(1024);
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        log.append(&[txn("b.000001", 10)]).unwrap();
        let handle = log.subscribe();
        let mut r = handle.reader_after(None).unwrap();
        assert_eq!(r.next().await.unwrap().unwrap().seq, 1);
        // Enough parts to pass the segment size: they must not roll.
        let parts: Vec<_> = (0..40).map(|i| part(20 + i, i as u32, true)).collect();
        log.append(&parts).unwrap();
        assert_eq!(handle.end().last_seq, 1, "no part is visible");
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        let waiter = tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..41 {
                let rec = r.next().await.unwrap().unwrap();
                seqs.push((rec.seq, rec.part, rec.more));
            }
            seqs
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "readers wait for the last part");
        log.append(&[part(100, 40, false)]).unwrap();
        let seen = waiter.await.unwrap();
        assert_eq!(seen.first(), Some(&(2, 0, true)));
        assert_eq!(seen.last(), Some(&(42, 40, false)));

        // A crash after some parts of the next transaction: they go at open.
        log.append(&[part(200, 0, true), part(210, 1, true)])
            .unwrap();
        drop(log);
        let mut log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(log.end().last_seq, 42);
        assert_eq!(log.resume_position().unwrap().offset, 100);
        // Read again from the binlog, the transaction is logged whole.
        log.append(&[part(200, 0, true), part(210, 1, true), part(220, 2, false)])
            .unwrap();
        assert_eq!(log.end().last_seq, 45);
    }

    #[tokio::test]
    async fn a_reread_skips_logged_parts_and_an_abandoned_transaction_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path()).unwrap();
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        log.append(&[part(10, 0, true), part(20, 1, true)]).unwrap();
        // After a reconnect the binlog is read again from position 4.
        log.append(&[part(10, 0, true), part(20, 1, true), part(30, 2, true)])
            .unwrap();
        assert_eq!(log.end().last_seq, 3);
        // The transaction never commits (e.g. rolled back); the next one
        // starts and replaces its parts.
        log.append(&[txn("b.000001", 50)]).unwrap();
        assert_eq!(log.end().last_seq, 1);
        let err = log.append(&[part(60, 3, false)]).unwrap_err();
        assert!(matches!(err, LogError::PartOutOfOrder { part: 3, .. }));
        drop(log);
        let log = ChangeLog::open(dir.path()).unwrap();
        let mut r = log.subscribe().reader_after(None).unwrap();
        let rec = r.next().await.unwrap().unwrap();
        assert_eq!((rec.seq, rec.position.offset, rec.more), (1, 50, false));
    }

    #[test]
    fn the_executed_gtid_set_covers_the_start_and_every_logged_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path())
            .unwrap()
            .with_segment_bytes(1024);
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let start: GtidSet = format!("{uuid}:1-10:mytag:1").parse().unwrap();
        log.initialise_with_gtids(SourcePosition::new("b.000001", 4), Some(start.clone()))
            .unwrap();
        let raw = *start.iter().next().unwrap().0;
        let tag = GtidTag::new("mytag").ok();
        let gtid = |tag: &Option<GtidTag>, gno| Gtid::MySql {
            uuid: raw,
            tag: tag.clone(),
            gno,
        };
        // Then two tagged ones (MySQL 8.4+), `uuid:mytag:2` and `:3`.
        let batch: Vec<_> = (11..=40)
            .map(|gno| (None, gno))
            .chain([(tag.clone(), 2), (tag.clone(), 3)])
            .enumerate()
            .map(|(i, (tag, gno))| Transaction {
                position: SourcePosition {
                    gtid: Some(gtid(&tag, gno)),
                    ..SourcePosition::new("b.000001", 100 * (i as u64 + 1))
                },
                ..txn("b.000001", 0)
            })
            .collect();
        log.append(&batch).unwrap();
        assert_eq!(
            log.executed_gtids().unwrap().unwrap().to_string(),
            format!("{uuid}:1-40:mytag:1-3")
        );
        // Retention drops old segments; their GTIDs move into the start set.
        let tiny = Retention {
            max_bytes: 0,
            max_age: Duration::from_secs(3600),
        };
        assert!(log.purge(&tiny, u64::MAX).unwrap() > 0);
        drop(log);
        let log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(
            log.executed_gtids().unwrap().unwrap().to_string(),
            format!("{uuid}:1-40:mytag:1-3")
        );
    }

    /// The sequence numbers of the records in a segment file, read from
    /// its header to its last byte: panics unless the file is nothing but
    /// whole, checksummed records (no torn record anywhere in it).
    fn whole_records(path: &Path) -> Vec<u64> {
        let mut file = File::open(path).unwrap();
        check_segment_header(&mut file, path).unwrap();
        let len = file.metadata().unwrap().len();
        let mut r = BufReader::new(file);
        let (mut seqs, mut read) = (Vec::new(), SEGMENT_HEADER_LEN);
        while let Some(rec) = read_record(&mut r, path).unwrap() {
            read += (RECORD_HEADER_LEN + rec.payload.len()) as u64;
            seqs.push(rec.seq);
        }
        assert_eq!(
            read,
            len,
            "{} ends in {} bytes that are no record: {seqs:?}",
            path.display(),
            len - read
        );
        seqs
    }

    /// An fsync that fails (ENOSPC found at writeback, EIO) may have lost
    /// pages the kernel still serves: the segment is cut back at once to
    /// the last fsynced record, both for the batch's own fsync and for the
    /// one of a full segment before rolling to the next, so a reopened log
    /// resumes after the last published record and what it appends follows
    /// it without a hole or a torn record.
    #[tokio::test]
    async fn a_failed_fsync_cuts_the_segment_back_to_its_last_fsynced_record() {
        // The batch's own fsync: all of it was written, none is kept.
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path()).unwrap();
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        log.append(&[txn("b.000001", 10), txn("b.000001", 20)])
            .unwrap();
        let handle = log.subscribe();
        let published = handle.end();
        let seg = segment_path(dir.path(), 1);
        assert_eq!(fs::metadata(&seg).unwrap().len(), published.offset);
        log.fault = Some(Fault::Sync);
        let batch: Vec<_> = (3..=5).map(|i| txn("b.000001", 10 * i)).collect();
        let err = log.append(&batch).unwrap_err();
        assert!(matches!(err, LogError::DiskFull { .. }), "{err}");
        assert_eq!(handle.end(), published, "nothing of the batch is visible");
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            published.offset,
            "the records whose fsync failed are cut at once"
        );
        assert!(matches!(
            log.append(&[txn("b.000001", 60)]),
            Err(LogError::Failed { .. })
        ));
        drop(log);
        let mut log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(log.end(), published);
        assert_eq!(log.resume_position().unwrap().offset, 20);
        log.append(&batch).unwrap();
        assert_eq!(whole_records(&seg), vec![1, 2, 3, 4, 5]);

        // The fsync of a full segment before the roll: the records the
        // batch wrote into it go, and no next segment is made.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = small_segments_with(dir.path(), 5);
        let published = log.end();
        assert_eq!((published.segment, published.last_seq), (1, 5));
        log.fault = Some(Fault::Sync);
        let batch: Vec<_> = (6..=60).map(|i| txn("b.000001", 100 * i)).collect();
        let err = log.append(&batch).unwrap_err();
        assert!(matches!(err, LogError::DiskFull { .. }), "{err}");
        let seg = segment_path(dir.path(), 1);
        assert_eq!(fs::metadata(&seg).unwrap().len(), published.offset);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1]);
        drop(log);
        let mut log = ChangeLog::open(dir.path())
            .unwrap()
            .with_segment_bytes(1024);
        assert_eq!(log.end(), published);
        log.append(&batch).unwrap();
        let segments = list_segments(dir.path()).unwrap();
        assert!(segments.len() > 1);
        let mut seqs = Vec::new();
        for s in segments {
            seqs.extend(whole_records(&segment_path(dir.path(), s)));
        }
        assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
        let mut r = log.subscribe().reader_after(None).unwrap();
        for expect in 1..=60 {
            assert_eq!(r.next().await.unwrap().unwrap().seq, expect);
        }
    }

    /// A write that fails mid-record (ENOSPC) leaves its bytes: the log
    /// refuses later appends, so nothing lands after the torn record, and
    /// reopening cuts it, keeps the whole record the write got out before
    /// it (fsynced at open), and appends after that.
    #[tokio::test]
    async fn a_write_that_fails_mid_record_leaves_a_tail_that_reopening_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path()).unwrap();
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        log.append(&[txn("b.000001", 10)]).unwrap();
        let handle = log.subscribe();
        let published = handle.end();
        let record = (published.offset - SEGMENT_HEADER_LEN) as usize;
        log.fault = Some(Fault::ShortWrite(record + record / 2));
        let batch = [txn("b.000001", 20), txn("b.000001", 30)];
        let err = log.append(&batch).unwrap_err();
        assert!(matches!(err, LogError::DiskFull { .. }), "{err}");
        assert_eq!(handle.end(), published);
        let seg = segment_path(dir.path(), 1);
        let torn = fs::metadata(&seg).unwrap().len();
        assert!(torn > published.offset + record as u64, "{torn}");
        assert!(matches!(
            log.append(&[txn("b.000001", 40)]),
            Err(LogError::Failed { .. })
        ));
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            torn,
            "nothing more written"
        );
        drop(log);

        let mut log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(log.end().last_seq, 2);
        assert_eq!(log.resume_position().unwrap().offset, 20);
        log.append(&batch).unwrap();
        assert_eq!(whole_records(&seg), vec![1, 2, 3]);
    }

    /// A crash can leave a segment longer than what was written, the rest
    /// zeros (the size reached the disk, the data did not). Eight zero
    /// bytes read as an empty record with a matching CRC: the tail is cut
    /// at open, not reported as a corrupt record.
    #[tokio::test]
    async fn a_tail_of_zeros_is_cut_at_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ChangeLog::open(dir.path()).unwrap();
        log.initialise(SourcePosition::new("b.000001", 4)).unwrap();
        log.append(&[txn("b.000001", 10), txn("b.000001", 20)])
            .unwrap();
        let end = log.end();
        drop(log);
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        drop(f);

        let mut log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(log.end(), end);
        assert_eq!(fs::metadata(&seg).unwrap().len(), end.offset);
        log.append(&[txn("b.000001", 30)]).unwrap();
        assert_eq!(whole_records(&seg), vec![1, 2, 3]);
    }

    #[test]
    fn a_log_of_another_format_version_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = codec::encode(&1u16).unwrap();
        old.extend_from_slice(b"older layout");
        fs::write(dir.path().join("meta.bin"), old).unwrap();
        let Err(err) = ChangeLog::open(dir.path()) else {
            panic!("a version 1 log must be refused")
        };
        assert!(matches!(err, LogError::Version { found: 1, .. }), "{err}");
        assert!(err.to_string().contains("--resnapshot"));
    }
}
