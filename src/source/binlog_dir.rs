//! Archived binlog files as a source: `rowcast master --binlog-dir DIR`.
//!
//! Owns finding the files in a directory and reading their events in order,
//! as the live stream would deliver them, so the same decoder and filters
//! turn them into the change log:
//! - the order is the `*.index` file's when the directory has one (what the
//!   server wrote), else the binlog files' names (one `base.NNNNNN` series
//!   by number, without gaps);
//! - reading from a position inside a file first reads that file's
//!   FORMAT_DESCRIPTION (checksums, and the bytes native replay needs), then
//!   goes on at the position, as a dump from a position does;
//! - a TRANSACTION_PAYLOAD (MySQL's `binlog_transaction_compression`) is
//!   followed by the events it holds, as mysql_async expands it on the live
//!   stream (mysql_common's file reader does not);
//! - at the end of the last file the reader waits for more: a file still
//!   being written or replaced by a longer copy, or a new file copied into
//!   the directory. Bytes that are not a whole event yet are not read;
//! - it moves on to the next file only once a file is finished: it ends
//!   with the ROTATE (or STOP) a server writes when it closes a file, or the
//!   server crashed in it (its FORMAT_DESCRIPTION still says in use) and it
//!   has stayed unchanged for a while. Then what follows its last whole
//!   event is skipped with a warning: it held no committed transaction, and
//!   the decoder drops the one it left open. Anything else that would skip
//!   bytes (an incomplete copy, a gap in the numbering, a vanished file) is
//!   an error that names the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion};
use mysql_common::binlog::events::{Event, TransactionPayloadEvent};
use mysql_common::binlog::EventStreamReader;

use crate::source::position::SourcePosition;

/// Every binlog file starts with these four bytes.
const MAGIC: &[u8; 4] = b"\xfebin";
/// Common event header: timestamp, type, server id, size, end position, flags.
const HEADER_LEN: usize = 19;
const TRANSACTION_PAYLOAD: u8 = 40;
const FORMAT_DESCRIPTION: u8 = 15;
const ROTATE: u8 = 4;
const STOP: u8 = 3;
/// LOG_EVENT_BINLOG_IN_USE_F, in a FORMAT_DESCRIPTION's header flags.
const IN_USE: u16 = 0x1;
/// How long a file the server crashed in must stay unchanged, with a
/// later file beside it, before its unfinished tail is given up.
const CRASH_GRACE: Duration = Duration::from_secs(10);
/// How often the end of the last file is looked at again.
const POLL: Duration = Duration::from_millis(200);
/// Bytes read from a file at once.
const CHUNK: usize = 1 << 20;
/// No real event is larger (MySQL's max_allowed_packet ceiling).
const MAX_EVENT: u32 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum BinlogDirError {
    #[error("cannot read binlog directory {dir}: {reason}; check --binlog-dir")]
    Dir { dir: String, reason: String },
    #[error(
        "no binlog files in {dir} (a binlog file starts with the bytes fe 62 69 6e); \
         copy the primary's binlog files there, or point --binlog-dir at them"
    )]
    Empty { dir: String },
    #[error(
        "binlog file {file} is not in {dir}{listed}; the files must be all there, in order, \
         from the starting position on"
    )]
    Missing {
        dir: String,
        file: String,
        listed: &'static str,
    },
    #[error("cannot read binlog file {file}: {reason}")]
    Io { file: String, reason: String },
    #[error(
        "{file} is not a binlog file (it does not start with fe 62 69 6e); remove it from {dir}"
    )]
    NotBinlog { file: String, dir: String },
    #[error(
        "cannot read the binlog event at {file}:{offset}: {reason}. The file is damaged there; \
         restore it from another copy, or start a new master with --start after this event \
         (what the event held is then not replicated)"
    )]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("invalid --start `{0}`; expected FILE:POSITION, e.g. mysql-bin.000042:4")]
    Start(String),
    #[error(
        "binlog file {file} ends at offset {offset} without the ROTATE event a server writes when \
         it moves on to {next}, and the server did not crash in it (it was closed cleanly): the \
         copy of {file} is incomplete. Copy it whole into the directory; the master goes on by itself"
    )]
    Incomplete {
        file: String,
        offset: u64,
        next: String,
    },
    #[error(
        "binlog file {missing} is missing from {dir}: {file} is followed by {next}. Copy {missing} \
         into the directory (or add an index file if the gap is intended); the master goes on by itself"
    )]
    Gap {
        dir: String,
        file: String,
        missing: String,
        next: String,
    },
    #[error(
        "binlog file {file}, being read, is no longer in {dir}{listed}; put it back (and keep \
         every file from the change log's position on until it is read)"
    )]
    Vanished {
        dir: String,
        file: String,
        listed: &'static str,
    },
    #[error("{dir} holds more than one index file ({names}); keep the one of the binlog files")]
    Indexes { dir: String, names: String },
    #[error(
        "{dir} holds binlog files of more than one name ({names}) and no index file: their order \
         cannot be told; add the server's index file, or keep one series"
    )]
    Series { dir: String, names: String },
    #[error("--start {file}:{offset} is past the end of {file} ({len} bytes); give the position of an event in it")]
    PastEnd { file: String, offset: u64, len: u64 },
}

/// Parses `--start FILE:POS`.
pub fn parse_start(s: &str) -> Result<SourcePosition, BinlogDirError> {
    let (file, pos) = s
        .rsplit_once(':')
        .ok_or_else(|| BinlogDirError::Start(s.into()))?;
    let pos: u64 = pos.parse().map_err(|_| BinlogDirError::Start(s.into()))?;
    if file.is_empty() || file.contains('/') || pos < MAGIC.len() as u64 {
        return Err(BinlogDirError::Start(s.into()));
    }
    Ok(SourcePosition::new(file, pos))
}

/// A directory of binlog files.
#[derive(Debug, Clone)]
pub struct BinlogDir {
    path: PathBuf,
}

impl BinlogDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        BinlogDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl ToString) -> BinlogDirError {
        BinlogDirError::Dir {
            dir: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// The binlog files in order, and whether an index file said so.
    pub fn files(&self) -> Result<(Vec<String>, bool), BinlogDirError> {
        let mut indexes = Vec::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(|e| self.err(e))? {
            let entry = entry.map_err(|e| self.err(e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Hidden files are copies in progress (rsync's `.name.XXXX`).
            if name.starts_with('.') {
                continue;
            }
            if name.ends_with(".index") {
                indexes.push(entry.path());
            } else if file_number(&name).is_some()
                && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
            {
                names.push(name);
            }
        }
        if indexes.len() > 1 {
            return Err(BinlogDirError::Indexes {
                dir: self.path.display().to_string(),
                names: indexes
                    .iter()
                    .map(|p| {
                        p.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(index) = indexes.pop() {
            let text = std::fs::read_to_string(&index).map_err(|e| self.err(e))?;
            // The server writes paths (`./mysql-bin.000001`, or absolute):
            // the files are looked for here by name.
            let listed = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
                .collect();
            return Ok((listed, true));
        }
        let mut bases: Vec<&str> = names
            .iter()
            .filter_map(|n| Some(file_number(n)?.0))
            .collect();
        bases.sort_unstable();
        bases.dedup();
        if bases.len() > 1 {
            return Err(BinlogDirError::Series {
                dir: self.path.display().to_string(),
                names: bases.join(".*, ") + ".*",
            });
        }
        names.sort_by_key(|n| file_number(n).map(|(_, n)| n));
        Ok((names, false))
    }

    /// Where reading starts when nothing says otherwise: the first file's
    /// first event.
    pub fn first_position(&self) -> Result<SourcePosition, BinlogDirError> {
        let (files, _) = self.files()?;
        match files.first() {
            Some(f) => Ok(SourcePosition::new(f.clone(), MAGIC.len() as u64)),
            None => Err(BinlogDirError::Empty {
                dir: self.path.display().to_string(),
            }),
        }
    }

    /// The end of what the directory holds: the last file and its size
    /// (for status, where a live primary's binlog end would be).
    pub fn end(&self) -> Option<SourcePosition> {
        let (files, _) = self.files().ok()?;
        let last = files.last()?;
        let len = std::fs::metadata(self.path.join(last)).ok()?.len();
        Some(SourcePosition::new(last.clone(), len))
    }

    /// A reader of events from `from` on (`from` is where an event starts:
    /// a position rowcast logged, or `--start`).
    pub fn events_from(&self, from: &SourcePosition) -> Result<FileEvents, BinlogDirError> {
        let mut events = FileEvents {
            dir: self.clone(),
            file: String::new(),
            handle: None,
            offset: 0,
            buf: Vec::new(),
            buf_at: 0,
            reader: EventStreamReader::new(BinlogVersion::Version4),
            queued: std::collections::VecDeque::new(),
            skip_to: None,
            last_type: None,
            in_use: false,
            unchanged: None,
            grace: CRASH_GRACE,
        };
        events.open(&from.file)?;
        if from.offset > MAGIC.len() as u64 {
            // The FDE comes first, then the events from the position.
            events.skip_to = Some(from.offset);
        }
        Ok(events)
    }
}

/// `base.NNNNNN`: the base and the number, for a binlog file's name.
fn file_number(name: &str) -> Option<(&str, u64)> {
    let (base, n) = name.rsplit_once('.')?;
    (!base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Some((base, n.parse().ok()?)))
        .flatten()
}

/// What [`FileEvents::next`] hands over.
#[derive(Debug)]
pub enum FileEvent {
    /// Reading goes on in this file (its first event follows).
    File(String),
    Event(Event),
    /// Everything the directory holds now was read: the position after
    /// the last whole event (the reader waited a moment before saying so).
    End(SourcePosition),
}

/// Events of the files in a [`BinlogDir`], in order, waiting at the end
/// for more.
pub struct FileEvents {
    dir: BinlogDir,
    file: String,
    handle: Option<File>,
    /// Where the next event of `file` starts.
    offset: u64,
    /// Bytes of `file` read ahead, starting at `buf_at`.
    buf: Vec<u8>,
    buf_at: u64,
    reader: EventStreamReader,
    /// A payload's events, handed over after the payload event itself.
    queued: std::collections::VecDeque<Event>,
    /// After the FDE, jump here (reading from inside a file).
    skip_to: Option<u64>,
    /// The type of the last event read in this file.
    last_type: Option<u8>,
    /// This file's FORMAT_DESCRIPTION says the server had it open
    /// (LOG_EVENT_BINLOG_IN_USE_F): it was being written, or the server
    /// crashed in it.
    in_use: bool,
    /// The file's length and since when it has not changed, while a later
    /// file exists but this one is not known to be finished.
    unchanged: Option<(u64, std::time::Instant)>,
    /// How long such a file must stay unchanged to count as crashed.
    grace: Duration,
}

impl FileEvents {
    /// The file being read and where its next event starts.
    pub fn position(&self) -> SourcePosition {
        SourcePosition::new(self.file.clone(), self.offset)
    }

    fn io(&self, e: impl ToString) -> BinlogDirError {
        BinlogDirError::Io {
            file: self.dir.path.join(&self.file).display().to_string(),
            reason: e.to_string(),
        }
    }

    fn open(&mut self, name: &str) -> Result<(), BinlogDirError> {
        let (files, indexed) = self.dir.files()?;
        if !files.iter().any(|f| f == name) {
            return Err(BinlogDirError::Missing {
                dir: self.dir.path.display().to_string(),
                file: name.into(),
                listed: if indexed {
                    " (or not in its index file)"
                } else {
                    ""
                },
            });
        }
        let path = self.dir.path.join(name);
        self.file = name.to_string();
        let file = File::open(&path).map_err(|e| self.io(e))?;
        let mut head = [0u8; 4];
        if file.read_exact_at(&mut head, 0).is_err() || &head != MAGIC {
            return Err(BinlogDirError::NotBinlog {
                file: path.display().to_string(),
                dir: self.dir.path.display().to_string(),
            });
        }
        self.handle = Some(file);
        self.offset = MAGIC.len() as u64;
        self.buf.clear();
        self.buf_at = self.offset;
        self.reader = EventStreamReader::new(BinlogVersion::Version4);
        self.skip_to = None;
        self.last_type = None;
        self.in_use = false;
        self.unchanged = None;
        Ok(())
    }

    /// The next event; at the end of the last file, `End` after a pause.
    /// Cancel-safe: nothing is consumed across the pause.
    pub async fn next(&mut self) -> Result<FileEvent, BinlogDirError> {
        if let Some(e) = self.queued.pop_front() {
            return Ok(FileEvent::Event(e));
        }
        if let Some(event) = self.read_event()? {
            return Ok(FileEvent::Event(event));
        }
        // A copy tool may have replaced the file by a longer one (rsync
        // and `cp` to a temporary name, then rename): read on in that.
        if self.reopen_if_replaced()? {
            if let Some(event) = self.read_event()? {
                return Ok(FileEvent::Event(event));
            }
        }
        if let Some(next) = self.next_file()? {
            self.open(&next)?;
            return Ok(FileEvent::File(next));
        }
        tokio::time::sleep(POLL).await;
        Ok(FileEvent::End(self.position()))
    }

    /// Whether the path now names another file than the one being read;
    /// if so, that one is read from the same offset.
    fn reopen_if_replaced(&mut self) -> Result<bool, BinlogDirError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.dir.path.join(&self.file);
        let Ok(now) = std::fs::metadata(&path) else {
            return Ok(false);
        };
        let handle = self.handle.as_ref().expect("a file is open");
        let was = handle.metadata().map_err(|e| self.io(e))?;
        if (now.dev(), now.ino()) == (was.dev(), was.ino()) {
            return Ok(false);
        }
        tracing::info!(file = %self.file, offset = self.offset, "binlog file was replaced; reading on in the new one");
        self.handle = Some(File::open(&path).map_err(|e| self.io(e))?);
        self.buf.clear();
        self.buf_at = self.offset;
        Ok(true)
    }

    /// The file to read after the current one, once it is known to be
    /// finished: it ends with the ROTATE (or STOP) a server writes when it
    /// closes a file, or the server crashed in it (its FORMAT_DESCRIPTION
    /// still says in use) and it has not changed for a while, so what is
    /// left is not a whole event and held no committed transaction. Until
    /// then the reader waits. A later file after a cleanly closed one that
    /// lacks its ROTATE means an incomplete copy: an error.
    fn next_file(&mut self) -> Result<Option<String>, BinlogDirError> {
        let (files, indexed) = self.dir.files()?;
        let Some(at) = files.iter().position(|f| *f == self.file) else {
            return Err(BinlogDirError::Vanished {
                dir: self.dir.path.display().to_string(),
                file: self.file.clone(),
                listed: if indexed { " (or its index file)" } else { "" },
            });
        };
        let Some(next) = files.get(at + 1) else {
            return Ok(None);
        };
        if !indexed {
            let this = file_number(&self.file).map(|(_, n)| n);
            let that = file_number(next).map(|(_, n)| n);
            if let (Some(this), Some(that)) = (this, that) {
                if that != this + 1 {
                    let (base, _) = file_number(&self.file).expect("numbered");
                    let width = self.file.len() - base.len() - 1;
                    return Err(BinlogDirError::Gap {
                        dir: self.dir.path.display().to_string(),
                        file: self.file.clone(),
                        missing: format!("{base}.{:0width$}", this + 1),
                        next: next.clone(),
                    });
                }
            }
        }
        if matches!(self.last_type, Some(ROTATE | STOP)) {
            return Ok(Some(next.clone()));
        }
        let len = self.file_len()?;
        let still = match self.unchanged {
            Some((l, since)) if l == len => since.elapsed() >= self.grace,
            _ => {
                self.unchanged = Some((len, std::time::Instant::now()));
                self.grace.is_zero()
            }
        };
        if !still {
            return Ok(None);
        }
        if !self.in_use {
            return Err(BinlogDirError::Incomplete {
                file: self.file.clone(),
                offset: self.offset,
                next: next.clone(),
            });
        }
        tracing::warn!(file = %self.file, offset = self.offset, bytes = len - self.offset, next = %next, "binlog file ends without its ROTATE: the server crashed in it; what follows its last whole event is skipped (it held no committed transaction) and reading goes on in the next file");
        Ok(Some(next.clone()))
    }

    fn file_len(&self) -> Result<u64, BinlogDirError> {
        let handle = self.handle.as_ref().expect("a file is open");
        handle.metadata().map(|m| m.len()).map_err(|e| self.io(e))
    }

    /// `len` bytes at the read offset, when the file has them yet.
    fn bytes_at(&mut self, len: usize) -> Result<Option<&[u8]>, BinlogDirError> {
        let start = (self.offset - self.buf_at) as usize;
        if self.buf.len() < start + len {
            // Refill from the offset: at least one chunk.
            let want = len.max(CHUNK);
            let mut fresh = vec![0u8; want];
            let handle = self.handle.as_ref().expect("a file is open");
            let mut got = 0;
            while got < want {
                match handle.read_at(&mut fresh[got..], self.offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.io(e)),
                }
            }
            fresh.truncate(got);
            self.buf = fresh;
            self.buf_at = self.offset;
            if got < len {
                return Ok(None);
            }
        }
        let start = (self.offset - self.buf_at) as usize;
        Ok(Some(&self.buf[start..start + len]))
    }

    fn corrupt(&self, reason: impl ToString) -> BinlogDirError {
        BinlogDirError::Corrupt {
            file: self.file.clone(),
            offset: self.offset,
            reason: reason.to_string(),
        }
    }

    /// The event at the offset, or `None` when the file does not hold a
    /// whole one there (yet).
    fn read_event(&mut self) -> Result<Option<Event>, BinlogDirError> {
        let Some(header) = self.bytes_at(HEADER_LEN)? else {
            return Ok(None);
        };
        let size = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
        if size < HEADER_LEN as u32 || size > MAX_EVENT {
            return Err(self.corrupt(format!("the header gives an event size of {size} bytes")));
        }
        let Some(bytes) = self.bytes_at(size as usize)? else {
            return Ok(None);
        };
        let bytes = bytes.to_vec();
        let event = match self.reader.read(&bytes[..]) {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.corrupt(e)),
        };
        if let (Some(stored), Ok(Some(alg))) = (event.checksum(), event.footer().get_checksum_alg())
        {
            if alg == BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32
                && event.calc_checksum(alg) != u32::from_le_bytes(stored)
            {
                return Err(self.corrupt("its CRC32 checksum does not match"));
            }
        }
        let event_type = event.header().event_type_raw();
        let flags = u16::from_le_bytes([bytes[17], bytes[18]]);
        self.offset += u64::from(size);
        self.last_type = Some(event_type);
        if event_type == FORMAT_DESCRIPTION {
            self.in_use = flags & IN_USE != 0;
            if let Some(to) = self.skip_to.take() {
                let len = self.file_len()?;
                if to > len {
                    return Err(BinlogDirError::PastEnd {
                        file: self.file.clone(),
                        offset: to,
                        len,
                    });
                }
                if to > self.offset {
                    self.offset = to;
                }
            }
        }
        if event_type == TRANSACTION_PAYLOAD {
            self.expand_payload(&event)?;
        }
        Ok(Some(event))
    }

    /// Queues the events a TRANSACTION_PAYLOAD holds.
    fn expand_payload(&mut self, event: &Event) -> Result<(), BinlogDirError> {
        let at = self.offset - u64::from(event.header().event_size());
        let fail = |reason: String| BinlogDirError::Corrupt {
            file: self.file.clone(),
            offset: at,
            reason,
        };
        let payload = event
            .read_event::<TransactionPayloadEvent<'_>>()
            .map_err(|e| fail(format!("transaction payload: {e}")))?;
        // The header's size is checked, not trusted for memory.
        let size = payload.uncompressed_size();
        let limit = match size {
            0 => u64::from(MAX_EVENT),
            n => n.min(u64::from(MAX_EVENT)),
        };
        let mut inner = Vec::with_capacity(limit.min(64 << 20) as usize);
        {
            use std::io::Read;
            let reader = payload
                .decompressed()
                .map_err(|e| fail(format!("transaction payload: {e}")))?;
            reader
                .take(limit.saturating_add(1))
                .read_to_end(&mut inner)
                .map_err(|e| fail(format!("transaction payload does not decompress: {e}")))?;
        }
        if (size != 0 && inner.len() as u64 != size) || inner.len() as u64 > limit {
            return Err(fail(format!(
                "transaction payload holds {} bytes, its header says {size}",
                inner.len()
            )));
        }
        let mut input = &inner[..];
        while !input.is_empty() {
            match self.reader.read_decompressed(&mut input) {
                Ok(Some(e)) => self.queued.push_back(e),
                Ok(None) => break,
                Err(e) => {
                    return Err(fail(format!(
                        "an event inside the transaction payload: {e}"
                    )))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::Transaction;
    use crate::source::decode::Decoder;

    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// A directory holding these files.
    fn dir_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, BinlogDir) {
        let tmp = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(tmp.path().join(name), bytes).unwrap();
        }
        let dir = BinlogDir::new(tmp.path());
        (tmp, dir)
    }

    /// Everything up to the first `End`, as the master feeds it on.
    async fn drain(events: &mut FileEvents, decoder: &mut Decoder) -> (Vec<u8>, Vec<Transaction>) {
        let (mut types, mut txns) = (Vec::new(), Vec::new());
        loop {
            match events.next().await.unwrap() {
                FileEvent::Event(e) => {
                    types.push(e.header().event_type_raw());
                    txns.extend(decoder.feed(&e).unwrap());
                }
                FileEvent::File(name) => decoder.set_file(name),
                FileEvent::End(_) => return (types, txns),
            }
        }
    }

    const ROWS: &str = "mariadb-10.11-rows.binlog";

    #[tokio::test]
    async fn reads_a_recorded_file_whole_then_waits_for_more() {
        let bytes = testdata(ROWS);
        let (_tmp, dir) = dir_with(&[("binlog.000001", &bytes)]);
        let start = dir.first_position().unwrap();
        assert_eq!(start, SourcePosition::new("binlog.000001", 4));
        let mut events = dir.events_from(&start).unwrap();
        let mut d = Decoder::new("binlog.000001");
        let (types, txns) = drain(&mut events, &mut d).await;
        let by_mysql_common =
            mysql_common::binlog::BinlogFile::new(BinlogVersion::Version4, &bytes[..])
                .unwrap()
                .count();
        assert_eq!(types.len(), by_mysql_common);
        // CREATE DATABASE, CREATE TABLE, two inserts, one update+delete.
        assert_eq!(txns.len(), 5);
        assert_eq!(
            events.position(),
            SourcePosition::new("binlog.000001", bytes.len() as u64)
        );
        assert_eq!(dir.end(), Some(events.position()));
    }

    #[tokio::test]
    async fn a_growing_file_is_read_by_whole_events_and_a_new_file_is_picked_up() {
        let bytes = testdata(ROWS);
        let half = bytes.len() / 2;
        let (tmp, dir) = dir_with(&[("binlog.000001", &bytes[..half])]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        let mut d = Decoder::new("binlog.000001");
        let (first, early) = drain(&mut events, &mut d).await;
        assert!(events.position().offset <= half as u64);
        std::fs::write(tmp.path().join("binlog.000001"), &bytes).unwrap();
        let (rest, late) = drain(&mut events, &mut d).await;
        assert_eq!(early.len() + late.len(), 5);
        assert!(!first.is_empty() && !rest.is_empty());
        std::fs::write(tmp.path().join("binlog.000002"), &bytes).unwrap();
        match events.next().await.unwrap() {
            FileEvent::File(name) => assert_eq!(name, "binlog.000002"),
            other => panic!("expected the next file, got {other:?}"),
        }
        d.set_file("binlog.000002");
        let (_, again) = drain(&mut events, &mut d).await;
        assert_eq!(again.len(), 5);
        assert_eq!(again[0].position.file, "binlog.000002");
    }

    /// The bytes of a file the server crashed in: its FORMAT_DESCRIPTION
    /// still says in use (a flag the CRC32 leaves out), cut at `at`.
    fn crashed(bytes: &[u8], at: usize) -> Vec<u8> {
        let mut b = bytes[..at].to_vec();
        b[4 + 17] |= IN_USE as u8;
        b
    }

    fn decode_all(bytes: &[u8], file: &str) -> Vec<Transaction> {
        let mut d = Decoder::new(file);
        mysql_common::binlog::BinlogFile::new(BinlogVersion::Version4, bytes)
            .unwrap()
            .filter_map(|e| d.feed(&e.unwrap()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_file_the_server_crashed_in_loses_only_its_unfinished_transaction() {
        let bytes = testdata(ROWS);
        let whole = decode_all(&bytes, "binlog.000001");
        // Cut a few bytes before the last commit: inside its last event.
        let cut = whole[4].position.offset as usize - 3;
        let (_tmp, dir) = dir_with(&[
            ("binlog.000001", &crashed(&bytes, cut)),
            ("binlog.000002", &bytes),
        ]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        events.grace = Duration::ZERO;
        let mut d = Decoder::new("binlog.000001");
        let (_, txns) = drain(&mut events, &mut d).await;
        let (_, txns2) = drain(&mut events, &mut d).await;
        let files: Vec<_> = txns
            .iter()
            .chain(&txns2)
            .map(|t| t.position.file.as_str())
            .collect();
        assert_eq!(
            files,
            ["binlog.000001"; 4]
                .into_iter()
                .chain(["binlog.000002"; 5])
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_mysql_transaction_cut_by_a_crash_never_joins_the_next_files_first() {
        // MySQL 5.7 without GTIDs: nothing but BEGIN starts a transaction.
        let bytes = testdata("mysql-binlogs/shyiko-binlog-connector-java/mysql-bin.checksum-crc32");
        let whole = decode_all(&bytes, "mysql-bin.000002");
        // Inside the XID of the third transaction: its rows were read.
        let cut = whole[2].position.offset as usize - 10;
        let (_tmp, dir) = dir_with(&[
            ("mysql-bin.000001", &crashed(&bytes, cut)),
            ("mysql-bin.000002", &bytes),
        ]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        events.grace = Duration::ZERO;
        let mut d = Decoder::new("mysql-bin.000001");
        let (_, txns) = drain(&mut events, &mut d).await;
        let (first, second): (Vec<_>, Vec<_>) = txns
            .iter()
            .partition(|t| t.position.file == "mysql-bin.000001");
        assert_eq!(first.len(), 2);
        assert_eq!(second.len(), whole.len());
        assert_eq!(second[0].changes, whole[0].changes);
    }

    #[tokio::test]
    async fn a_cleanly_closed_file_without_its_rotate_is_an_incomplete_copy() {
        let bytes = testdata(ROWS);
        let (_tmp, dir) = dir_with(&[
            ("binlog.000001", &bytes[..bytes.len() - 40]),
            ("binlog.000002", &bytes),
        ]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        events.grace = Duration::ZERO;
        let err = loop {
            match events.next().await {
                Ok(FileEvent::File(f)) => panic!("moved on to {f}"),
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        assert!(
            err.contains("the copy of binlog.000001 is incomplete"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_crashed_file_is_waited_for_while_it_still_changes() {
        let bytes = testdata(ROWS);
        let (_tmp, dir) = dir_with(&[
            ("binlog.000001", &crashed(&bytes, 700)),
            ("binlog.000002", &bytes),
        ]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        let mut d = Decoder::new("binlog.000001");
        drain(&mut events, &mut d).await;
        // Within the grace period the reader stays on the first file.
        assert_eq!(events.position().file, "binlog.000001");
    }

    #[tokio::test]
    async fn a_gap_in_the_numbering_and_a_vanished_file_are_named() {
        let bytes = testdata(ROWS);
        let (tmp, dir) = dir_with(&[("binlog.000001", &bytes), ("binlog.000003", &bytes)]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        let mut d = Decoder::new("binlog.000001");
        let err = loop {
            match events.next().await {
                Ok(FileEvent::Event(e)) => {
                    d.feed(&e).unwrap();
                }
                Ok(FileEvent::File(f)) => panic!("moved on to {f}"),
                Ok(FileEvent::End(_)) => panic!("waited instead"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("binlog.000002 is missing"), "{err}");
        std::fs::remove_file(tmp.path().join("binlog.000001")).unwrap();
        let err = events.next().await.unwrap_err().to_string();
        assert!(
            err.contains("binlog.000001, being read, is no longer in"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_file_replaced_by_a_longer_copy_is_read_on_from_the_same_offset() {
        let bytes = testdata(ROWS);
        let (tmp, dir) = dir_with(&[("binlog.000001", &bytes[..bytes.len() / 2])]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        let mut d = Decoder::new("binlog.000001");
        let (_, early) = drain(&mut events, &mut d).await;
        // rsync's way: a temporary file renamed over the old one.
        let tmp_copy = tmp.path().join(".binlog.000001.tmp");
        std::fs::write(&tmp_copy, &bytes).unwrap();
        std::fs::rename(&tmp_copy, tmp.path().join("binlog.000001")).unwrap();
        let (_, late) = drain(&mut events, &mut d).await;
        assert_eq!(early.len() + late.len(), 5);
    }

    #[test]
    fn a_start_past_the_end_of_its_file_is_refused() {
        let bytes = testdata(ROWS);
        let (_tmp, dir) = dir_with(&[("binlog.000001", &bytes)]);
        let mut events = dir
            .events_from(&SourcePosition::new("binlog.000001", u64::MAX))
            .unwrap();
        let err = events.read_event().unwrap_err().to_string();
        assert!(err.contains("past the end of binlog.000001"), "{err}");
    }

    #[tokio::test]
    async fn reading_from_inside_a_file_reads_its_format_description_first() {
        let bytes = testdata(ROWS);
        let (_tmp, dir) = dir_with(&[("binlog.000001", &bytes)]);
        let all = {
            let mut d = Decoder::new("binlog.000001");
            let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
            drain(&mut events, &mut d).await.1
        };
        let from = all[2].position.clone();
        let mut events = dir.events_from(&from).unwrap();
        let mut d = Decoder::new("binlog.000001");
        let (types, txns) = drain(&mut events, &mut d).await;
        assert_eq!(types[0], FORMAT_DESCRIPTION);
        assert_eq!(txns.len(), 2);
        assert_eq!(txns[0].position, all[3].position);
    }

    #[tokio::test]
    async fn a_damaged_event_stops_with_its_file_and_offset() {
        let mut bytes = testdata(ROWS);
        let at = bytes.len() - 30;
        bytes[at] ^= 0xff;
        let (_tmp, dir) = dir_with(&[("binlog.000001", &bytes)]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        let err = loop {
            match events.next().await {
                Ok(FileEvent::End(_)) => panic!("read a damaged file to its end"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        let text = err.to_string();
        assert!(matches!(err, BinlogDirError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("binlog.000001:") && text.contains("checksum"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_transaction_payload_is_followed_by_the_events_it_holds() {
        // MySQL 8.0.32, binlog_transaction_compression=ON (zstd): one
        // INSERT into test.tb1 inside the payload.
        let bytes = testdata("mysql-binlogs/rust_mysql_common/transaction_compression.000001");
        let (_tmp, dir) = dir_with(&[("binlog.000001", &bytes)]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        let mut types = Vec::new();
        loop {
            match events.next().await.unwrap() {
                FileEvent::Event(e) => types.push(e.header().event_type_raw()),
                FileEvent::End(_) => break,
                FileEvent::File(f) => panic!("one file only, got {f}"),
            }
        }
        let payload = types
            .iter()
            .position(|&t| t == TRANSACTION_PAYLOAD)
            .unwrap();
        // QUERY (BEGIN), TABLE_MAP, WRITE_ROWS v2, XID.
        assert_eq!(types[payload + 1..payload + 5], [2, 19, 30, 16]);
    }

    #[tokio::test]
    async fn an_ignorable_unknown_event_and_an_unfinished_transaction_apply_nothing() {
        // Aurora 5.7.12: an event of type 100 with LOG_EVENT_IGNORABLE_F,
        // then the file ends after a BEGIN.
        let bytes =
            testdata("mysql-binlogs/osheroff-binlog-connector-java/mysql-bin.aurora-padding");
        let (_tmp, dir) = dir_with(&[("mysql-bin.000001", &bytes)]);
        let mut events = dir.events_from(&dir.first_position().unwrap()).unwrap();
        let mut d = Decoder::new("mysql-bin.000001");
        let (types, txns) = drain(&mut events, &mut d).await;
        assert!(types.contains(&100), "{types:?}");
        assert!(txns.is_empty(), "{txns:?}");
        assert!(d.in_transaction());
        assert_eq!(events.position().offset, bytes.len() as u64);
    }

    #[test]
    fn the_index_file_gives_the_order_and_missing_files_are_named() {
        let bytes = testdata(ROWS);
        let (tmp, dir) = dir_with(&[
            ("b.000002", &bytes),
            ("b.000001", &bytes),
            ("notes.txt", b"hi"),
        ]);
        assert_eq!(dir.files().unwrap().0, ["b.000001", "b.000002"]);
        std::fs::write(
            tmp.path().join("b.index"),
            "./b.000002\n/var/lib/mysql/b.000003\n",
        )
        .unwrap();
        assert_eq!(
            dir.files().unwrap(),
            (vec!["b.000002".into(), "b.000003".into()], true)
        );
        let err = dir
            .events_from(&SourcePosition::new("b.000001", 4))
            .err()
            .unwrap();
        assert!(err.to_string().contains("b.000001 is not in"), "{err}");
    }

    #[test]
    fn parses_start_positions() {
        let p = parse_start("mysql-bin.000042:1234").unwrap();
        assert_eq!((p.file.as_str(), p.offset), ("mysql-bin.000042", 1234));
        for bad in ["mysql-bin.000042", ":4", "f:x", "f:2", "../f:4"] {
            assert!(parse_start(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_files_by_number_and_refuses_two_series_or_two_indexes() {
        let bytes = testdata(ROWS);
        let (tmp, dir) = dir_with(&[
            ("b.1000000", &bytes),
            ("b.999999", &bytes),
            ("b.000002", &bytes),
            (".b.000003.Xy12", &bytes),
        ]);
        assert_eq!(
            dir.files().unwrap().0,
            ["b.000002", "b.999999", "b.1000000"]
        );
        std::fs::write(tmp.path().join("c.000001"), &bytes).unwrap();
        let err = dir.files().unwrap_err().to_string();
        assert!(err.contains("more than one name (b.*, c.*)"), "{err}");
        std::fs::write(tmp.path().join("b.index"), "b.000002\n").unwrap();
        assert_eq!(dir.files().unwrap().0, ["b.000002"]);
        std::fs::write(tmp.path().join("relay.index"), "").unwrap();
        let err = dir.files().unwrap_err().to_string();
        assert!(err.contains("more than one index file"), "{err}");
    }
}
