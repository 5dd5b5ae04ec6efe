//! The change log on NATS JetStream (`--log nats://HOST:PORT[/STREAM]`)
//! instead of the master's segment files.
//!
//! Each change-log record (a whole source transaction, or one part of a
//! large one) is one message on subject `rowcast.<STREAM>`, its body the
//! codec encoding of the `Transaction`, as on the wire. A record larger
//! than the server's `max_payload` is cut into chunks (`Rowcast-Chunk:
//! i/n`) that a reader reassembles before decoding; a reader that meets
//! chunk 0 again drops what it was assembling, so a record republished
//! after a crash is read once.
//!
//! **Exactly once into the stream.** The publisher never sends a message
//! the stream already holds: at start, and after any failed publish, it
//! reads the stream's tail ([`Tail`]) and continues exactly after the last
//! stored message (a record, or a chunk of one). Every message carries
//! `Nats-Expected-Last-Sequence`, so when one fails none after it can be
//! stored out of order. The part and chunk sizes are pinned per stream (in
//! its metadata), so a transaction read again from the binlog is cut at
//! the same places. A `Nats-Msg-Id` from position, part and chunk guards
//! against a second master publishing the same records.
//!
//! **Exactly once into a replica.** The slave's checkpoint stores the
//! stream sequence of the last message of the last applied transaction, in
//! the same local transaction as the rows; it resumes at the next sequence.
//!
//! **Reading.** A [`NatsReader`] pulls through an ephemeral consumer of
//! its own, bounded by bytes per pull (see `pull_bytes`), because the
//! server drops a client that has more than its `max_pending` queued and
//! the client library's ordered consumer asks for 500 messages at once.
//! It keeps its position itself and recreates the consumer from there
//! when a pull fails, a message comes after a hole, or nothing comes for
//! [`STALL_TIMEOUT`] while the stream holds more.
//!
//! A second stream, `<STREAM>_META`, keeps the last message per subject
//! `rowcast.<STREAM>.meta.<key>`: where the log starts, the primary it
//! follows and the newest transaction published (`start`, `source`,
//! `tip`), and each slave's progress
//! (`slave.<name>`) for `rowcast status`. (A hand-made key-value store:
//! the client's KV bucket API does not work with nats-server 2.9.)

use std::time::Duration;

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use futures_util::StreamExt;
use serde::Serialize;

use crate::log::change::Transaction;
use crate::log::codec;
use crate::log::segments::{EncodedTxn, Retention};
use crate::source::gtid_set::GtidSet;
use crate::source::position::SourcePosition;

pub const DEFAULT_STREAM: &str = "ROWCAST";
/// How long the server remembers message ids to drop republished ones.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// A reader that has waited this long without a message while the stream
/// holds messages it has not delivered recreates its consumer: a consumer
/// can go quiet without an error (a pull lost in a reconnect).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The server's heartbeat on an open pull; two missed ones end the pull
/// with an error (a dead connection), which recreates the consumer.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// Messages asked for per pull; bytes bound it first for big records.
const PULL_MESSAGES: usize = 1000;
/// Consumers recreated in a row without a message delivered before the
/// reader gives up (the session then reconnects with backoff).
const MAX_RESUBSCRIBES: u32 = 5;
/// How long the server keeps a reader's consumer once no pull is open
/// for it (a slave that went away). A reader being read always has a pull
/// open (each is renewed as it expires), so only a reader not read for
/// this long loses its consumer, and then it does what it does for any
/// lost consumer: the next pull fails, or nothing comes for the stall
/// timeout, and it recreates the consumer from its own next sequence. Two
/// pull lifetimes, so a pull's expiry never races it.
const CONSUMER_INACTIVE: Duration = Duration::from_secs(2 * PULL_EXPIRES.as_secs());

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("`{url}` is not a NATS log address: {reason}; expected nats://HOST:PORT[/STREAM]")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach NATS at {server}: {reason}; is nats-server running with JetStream enabled (-js)?")]
    Unreachable { server: String, reason: String },
    #[error("the stream {stream} does not exist on {server}: start `rowcast master --log nats://{server}/{stream}` first")]
    NoStream { server: String, stream: String },
    #[error("NATS JetStream: {what} failed: {reason}")]
    JetStream { what: &'static str, reason: String },
    #[error(
        "reading stream {stream} stopped at message {seq}: {attempts} consumers in a row \
         delivered nothing, the last one because {cause}; the slave reconnects with backoff and \
         reads on from message {seq}. If this repeats, check that nats-server is up and \
         reachable from the slave, and its log for slow consumers (raise max_pending) or \
         JetStream errors on that stream"
    )]
    ReaderGaveUp {
        stream: String,
        seq: u64,
        attempts: u32,
        cause: String,
    },
    #[error("message {seq} of stream {stream} is not a rowcast record: {reason}")]
    Corrupt {
        stream: String,
        seq: u64,
        reason: String,
    },
    #[error(
        "the slave's checkpoint names message {seq} of stream {stream} at {expected}, but that \
         message is at {found}: the stream was recreated, or the checkpoint comes from another \
         log; seed the slave again with `rowcast slave --resnapshot`"
    )]
    NotThisStream {
        stream: String,
        seq: u64,
        expected: String,
        found: String,
    },
    #[error(
        "message {expected} of stream {stream} never arrived: the stream went on at message \
         {found} (its retention limits, or a purge, removed messages while this slave read \
         them); nothing was skipped, the slave stopped. Seed it again with `rowcast slave \
         --resnapshot`, and raise the master's --retain-mb/--retain-hours"
    )]
    Gap {
        stream: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "message {wanted} of stream {stream}, the next this slave needs, is gone (the stream \
         now starts at {first}, by its retention limits); the slave must be seeded again with \
         `rowcast slave --resnapshot`"
    )]
    Purged {
        stream: String,
        wanted: u64,
        first: u64,
    },
}

impl NatsError {
    /// Worth reconnecting for (a NATS restart, a lost connection).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NatsError::Unreachable { .. }
                | NatsError::JetStream { .. }
                | NatsError::ReaderGaveUp { .. }
        )
    }
}

fn js_err(what: &'static str) -> impl FnOnce(String) -> NatsError {
    move |reason| NatsError::JetStream { what, reason }
}

/// `nats://HOST:PORT[/STREAM]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUrl {
    pub server: String,
    pub stream: String,
}

impl NatsUrl {
    /// Whether `--log` names NATS rather than the local segment files.
    pub fn is_nats(s: &str) -> bool {
        s.starts_with("nats://")
    }

    pub fn parse(url: &str) -> Result<NatsUrl, NatsError> {
        let bad = |reason: &str| NatsError::BadUrl {
            url: url.into(),
            reason: reason.into(),
        };
        let rest = url
            .strip_prefix("nats://")
            .ok_or_else(|| bad("it does not start with nats://"))?;
        let (server, stream) = match rest.split_once('/') {
            Some((s, "")) => (s, DEFAULT_STREAM),
            Some((s, name)) => (s, name),
            None => (rest, DEFAULT_STREAM),
        };
        if server.is_empty() || server.contains('@') {
            return Err(bad(
                "give HOST:PORT (credentials in the URL are not supported)",
            ));
        }
        if !stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("a stream name may hold letters, digits, _ and - only"));
        }
        Ok(NatsUrl {
            server: server.into(),
            stream: stream.into(),
        })
    }

    fn subject(&self) -> String {
        format!("rowcast.{}", self.stream)
    }

    fn meta_stream(&self) -> String {
        format!("{}_META", self.stream)
    }

    fn meta_subject(&self, key: &str) -> String {
        format!("rowcast.{}.meta.{key}", self.stream)
    }
}

impl std::fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nats://{}/{}", self.server, self.stream)
    }
}

pub use crate::log::SlaveProgress;

/// The stream's end: where a publisher continues.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    /// After the last whole source transaction: where the binlog resumes.
    pub resume: Option<SourcePosition>,
    /// The last record whose chunks are all in the stream: nothing up to
    /// here is published again.
    pub published: Option<SourcePosition>,
    /// The record after `published` of which only the first chunks are
    /// stored: `(position, chunks stored, chunk count)`.
    pub partial: Option<(SourcePosition, u32, u32)>,
    /// Sequence of the stream's last message (0 when it never had one).
    pub last_seq: u64,
}

impl Tail {
    /// Which chunks of `rec` (cut in `chunks` pieces) still need
    /// publishing: none when the stream holds it whole.
    fn chunks_to_send(&self, rec: &EncodedTxn, chunks: u32) -> std::ops::Range<u32> {
        if let Some(p) = &self.published {
            if !rec.position.is_after(p) {
                return 0..0;
            }
        }
        match &self.partial {
            Some((pos, stored, n)) if *pos == rec.position && *n == chunks => *stored..chunks,
            _ => 0..chunks,
        }
    }
}

/// Decoded headers of one message.
#[derive(Debug, Clone, PartialEq)]
struct Meta {
    position: SourcePosition,
    more: bool,
    chunk: u32,
    chunks: u32,
    timestamp: u32,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode_position(p: &SourcePosition) -> String {
    hex(&codec::encode(p).unwrap_or_default())
}

fn decode_position(s: &str) -> Option<SourcePosition> {
    codec::decode(&unhex(s)?).ok()
}

fn headers(rec: &EncodedTxn, chunk: u32, chunks: u32, expected_last: u64) -> HeaderMap {
    let p = &rec.position;
    let mut h = HeaderMap::new();
    h.insert(
        "Nats-Msg-Id",
        format!(
            "{}:{}:{}:{}:{chunk}/{chunks}",
            p.epoch, p.file, p.offset, rec.part
        )
        .as_str(),
    );
    h.insert(
        "Nats-Expected-Last-Sequence",
        expected_last.to_string().as_str(),
    );
    h.insert("Rowcast-Pos", encode_position(p).as_str());
    h.insert("Rowcast-More", if rec.more { "1" } else { "0" });
    h.insert("Rowcast-Chunk", format!("{chunk}/{chunks}").as_str());
    h.insert("Rowcast-Time", rec.timestamp.to_string().as_str());
    h
}

fn meta(headers: Option<&HeaderMap>) -> Option<Meta> {
    let h = headers?;
    let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
    let (chunk, chunks) = get("Rowcast-Chunk")?
        .split_once('/')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))?;
    Some(Meta {
        position: decode_position(&get("Rowcast-Pos")?)?,
        more: get("Rowcast-More")? == "1",
        chunk,
        chunks,
        timestamp: get("Rowcast-Time")?.parse().ok()?,
    })
}

/// A connection to the stream and its bucket.
pub struct NatsLog {
    url: NatsUrl,
    js: jetstream::Context,
    meta: stream::Stream,
    chunk_bytes: usize,
    /// The server's largest message (headers included).
    max_payload: usize,
}

impl NatsLog {
    /// Connects. The master passes its retention, which creates the stream
    /// (or updates its limits); a slave passes `None` and needs the stream
    /// to exist.
    pub async fn open(url: &NatsUrl, retention: Option<&Retention>) -> Result<NatsLog, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url.server.as_str())
            .await
            .map_err(|e| NatsError::Unreachable {
                server: url.server.clone(),
                reason: e.to_string(),
            })?;
        let max_payload = client.server_info().max_payload;
        let js = jetstream::new(client);
        let subject = url.subject();
        match retention {
            Some(r) => {
                let config = stream::Config {
                    name: url.stream.clone(),
                    subjects: vec![subject],
                    max_age: r.max_age,
                    max_bytes: i64::try_from(r.max_bytes).unwrap_or(i64::MAX),
                    duplicate_window: DUPLICATE_WINDOW,
                    storage: stream::StorageType::File,
                    discard: stream::DiscardPolicy::Old,
                    ..Default::default()
                };
                js.get_or_create_stream(config.clone())
                    .await
                    .map_err(|e| js_err("creating the stream")(e.to_string()))?;
                js.update_stream(config)
                    .await
                    .map_err(|e| js_err("setting the stream's limits")(e.to_string()))?;
            }
            None => {
                js.get_stream(&url.stream)
                    .await
                    .map_err(|_| NatsError::NoStream {
                        server: url.server.clone(),
                        stream: url.stream.clone(),
                    })?;
            }
        }
        let meta = js
            .get_or_create_stream(stream::Config {
                name: url.meta_stream(),
                subjects: vec![url.meta_subject(">")],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("creating the metadata stream")(e.to_string()))?;
        Ok(NatsLog {
            url: url.clone(),
            js,
            meta,
            // Headers count against max_payload too.
            chunk_bytes: max_payload.saturating_sub(16 * 1024).max(1024),
            max_payload,
        })
    }

    pub fn url(&self) -> &NatsUrl {
        &self.url
    }

    /// The largest body of one message; larger records are chunked.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// Lowers the chunk size (tests use it to force chunking).
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.clamp(1, self.chunk_bytes);
        self
    }

    async fn stream(&self) -> Result<stream::Stream, NatsError> {
        self.js
            .get_stream(&self.url.stream)
            .await
            .map_err(|e| js_err("reading the stream")(e.to_string()))
    }

    /// `(first sequence, last sequence, primary time of the last message)`.
    pub async fn state(&self) -> Result<(u64, u64, u32), NatsError> {
        let mut s = self.stream().await?;
        let info = s
            .info()
            .await
            .map_err(|e| js_err("reading the stream's state")(e.to_string()))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let time = match last {
            0 => 0,
            n => self.meta_at(&s, n).await.map(|m| m.timestamp).unwrap_or(0),
        };
        Ok((first, last, time))
    }

    async fn meta_at(&self, s: &stream::Stream, seq: u64) -> Result<Meta, NatsError> {
        let msg = s
            .get_raw_message(seq)
            .await
            .map_err(|e| js_err("reading a message")(e.to_string()))?;
        meta(Some(&msg.headers)).ok_or_else(|| NatsError::Corrupt {
            stream: self.url.stream.clone(),
            seq,
            reason: "rowcast headers missing".into(),
        })
    }

    /// The stream's end: see [`Tail`].
    pub async fn tail(&self) -> Result<Tail, NatsError> {
        let (first, last, _) = self.state().await?;
        let s = self.stream().await?;
        let mut tail = Tail {
            resume: None,
            published: None,
            partial: None,
            last_seq: last,
        };
        let mut seq = last;
        while seq >= first && seq > 0 {
            let m = self.meta_at(&s, seq).await?;
            let whole_record = m.chunk + 1 == m.chunks;
            if seq == last && !whole_record {
                tail.partial = Some((m.position.clone(), m.chunk + 1, m.chunks));
            }
            if tail.published.is_none() && whole_record {
                tail.published = Some(m.position.clone());
            }
            if whole_record && !m.more {
                tail.resume = Some(m.position);
                break;
            }
            seq -= 1;
        }
        Ok(tail)
    }

    /// Publishes what of `records` the stream does not hold after `tail`,
    /// in order, all messages in flight at once, each expecting its
    /// predecessor's sequence; waits until every one is stored and moves
    /// `tail` to the new end. After an error, read the tail again before
    /// retrying (the stream may hold some of the messages).
    pub async fn publish(&self, records: &[EncodedTxn], tail: &mut Tail) -> Result<(), NatsError> {
        let subject = self.url.subject();
        let mut acks = Vec::new();
        let mut expected = tail.last_seq;
        for rec in records {
            let chunks: Vec<&[u8]> = if rec.bytes.is_empty() {
                vec![&[][..]]
            } else {
                rec.bytes.chunks(self.chunk_bytes).collect()
            };
            let n = chunks.len() as u32;
            for i in tail.chunks_to_send(rec, n) {
                let ack = self
                    .js
                    .publish_with_headers(
                        subject.clone(),
                        headers(rec, i, n, expected),
                        bytes::Bytes::copy_from_slice(chunks[i as usize]),
                    )
                    .await
                    .map_err(|e| js_err("publishing")(e.to_string()))?;
                acks.push(ack);
                expected += 1;
            }
        }
        for ack in acks {
            let ack = ack
                .await
                .map_err(|e| js_err("publishing (acknowledgement)")(e.to_string()))?;
            tail.last_seq = ack.sequence;
        }
        if let Some(last) = records.last() {
            tail.partial = None;
            if tail
                .published
                .as_ref()
                .is_none_or(|p| last.position.is_after(p))
            {
                tail.published = Some(last.position.clone());
            }
            if let Some(whole) = records.iter().rev().find(|r| !r.more) {
                if tail
                    .resume
                    .as_ref()
                    .is_none_or(|p| whole.position.is_after(p))
                {
                    tail.resume = Some(whole.position.clone());
                }
            }
        }
        Ok(())
    }

    /// The source position of the record message `seq` belongs to.
    pub async fn position_at(&self, seq: u64) -> Result<SourcePosition, NatsError> {
        let s = self.stream().await?;
        Ok(self.meta_at(&s, seq).await?.position)
    }

    /// The primary commit time of the record message `seq` belongs to, or
    /// of the oldest message kept when retention removed `seq`; `None`
    /// when the stream holds nothing at or after `seq` (from its headers,
    /// without reading the body).
    pub async fn time_at(&self, seq: u64) -> Result<Option<u32>, NatsError> {
        let (first, last, _) = self.state().await?;
        if seq > last || last == 0 {
            return Ok(None);
        }
        let s = self.stream().await?;
        Ok(Some(self.meta_at(&s, seq.max(first)).await?.timestamp))
    }

    /// The first sequence whose record comes after `after` (the sequence
    /// after the last when there is none yet), by binary search:
    /// positions grow with sequence numbers.
    pub async fn first_seq_after(&self, after: &SourcePosition) -> Result<u64, NatsError> {
        let (first, last, _) = self.state().await?;
        let s = self.stream().await?;
        let (mut lo, mut hi) = (first.max(1), last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.meta_at(&s, mid).await?.position.is_after(after) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// A reader from sequence `start`; `Purged` if retention removed it.
    pub async fn reader(&self, start: u64) -> Result<NatsReader, NatsError> {
        let (first, _, _) = self.state().await?;
        if start < first {
            return Err(NatsError::Purged {
                stream: self.url.stream.clone(),
                wanted: start,
                first,
            });
        }
        let mut reader = NatsReader {
            stream_name: self.url.stream.clone(),
            stream: self.stream().await?,
            subject: self.url.subject(),
            pull_bytes: pull_bytes(self.max_payload),
            messages: None,
            consumer: None,
            fresh: false,
            resubscribes: 0,
            last_cause: None,
            waiting_since: None,
            stall_timeout: STALL_TIMEOUT,
            recreated: 0,
            assembling: Vec::new(),
            next_chunk: 0,
            next_seq: start.max(1),
        };
        reader.subscribe().await?;
        Ok(reader)
    }

    /// Whether the stream holds DDL between `from` and `to`, waiting up to
    /// a few seconds for records up to `to` (see `serve.rs`).
    pub async fn ddl_between(
        &self,
        from: &SourcePosition,
        to: &SourcePosition,
    ) -> Result<bool, NatsError> {
        if !to.is_after(from) {
            return Ok(false);
        }
        let mut reader = self.reader(self.first_seq_after(from).await?).await?;
        loop {
            let Some((_, txn, _)) = reader.next_within(Duration::from_secs(3)).await? else {
                return Ok(false);
            };
            if txn.position.is_after(to) {
                return Ok(false);
            }
            if txn.is_ddl() {
                return Ok(true);
            }
        }
    }

    async fn get_value<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, NatsError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .meta
            .get_last_raw_message_by_subject(&self.url.meta_subject(key))
            .await
        {
            Ok(m) => Ok(serde_json::from_slice(&m.payload).ok()),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(js_err("reading metadata")(e.to_string())),
        }
    }

    async fn put_value<T: Serialize>(&self, key: &str, value: &T) -> Result<(), NatsError> {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.js
            .publish(self.url.meta_subject(key), bytes.into())
            .await
            .map_err(|e| js_err("writing metadata")(e.to_string()))?
            .await
            .map_err(|e| js_err("writing metadata")(e.to_string()))?;
        Ok(())
    }

    /// Where the log starts (the primary's position when it was created).
    pub async fn start(&self) -> Result<Option<SourcePosition>, NatsError> {
        self.get_value("start").await
    }

    pub async fn set_start(&self, start: &SourcePosition) -> Result<(), NatsError> {
        self.put_value("start", start).await
    }

    /// The newest whole transaction published, as last recorded (at most
    /// a second old): where a master resumes when retention has emptied
    /// the stream.
    pub async fn tip(&self) -> Result<Option<SourcePosition>, NatsError> {
        self.get_value("tip").await
    }

    pub async fn set_tip(&self, tip: &SourcePosition) -> Result<(), NatsError> {
        self.put_value("tip", tip).await
    }

    /// The part and chunk sizes the stream was started with, so that a
    /// restarted master cuts a transaction it reads again the same way.
    pub async fn sizes(&self) -> Result<Option<(usize, usize)>, NatsError> {
        self.get_value("sizes").await
    }

    pub async fn set_sizes(&self, part_bytes: usize, chunk_bytes: usize) -> Result<(), NatsError> {
        self.put_value("sizes", &(part_bytes, chunk_bytes)).await
    }

    /// `(server_id, epoch)` of the primary the log follows.
    pub async fn source(&self) -> Result<Option<(u32, u32)>, NatsError> {
        self.get_value("source").await
    }

    pub async fn set_source(&self, server_id: u32, epoch: u32) -> Result<(), NatsError> {
        self.put_value("source", &(server_id, epoch)).await
    }

    pub async fn put_progress(&self, name: &str, p: &SlaveProgress) -> Result<(), NatsError> {
        self.put_value(&progress_key(name), p).await
    }

    /// Every slave's last report, by name.
    pub async fn progress(&self) -> Result<Vec<(String, SlaveProgress)>, NatsError> {
        let prefix = self.url.meta_subject("");
        let mut subjects = self
            .meta
            .info_with_subjects(self.url.meta_subject("slave.>"))
            .await
            .map_err(|e| js_err("listing slaves")(e.to_string()))?;
        let mut names = Vec::new();
        while let Some(Ok((subject, _))) = subjects.next().await {
            if let Some(key) = subject.strip_prefix(&prefix) {
                if let Some(name) = key.strip_prefix("slave.") {
                    names.push((key.to_string(), unescape_name(name)));
                }
            }
        }
        let mut out = Vec::new();
        for (key, name) in names {
            if let Some(p) = self.get_value(&key).await? {
                out.push((name, p));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Key-value keys allow `[-/_=.a-zA-Z0-9]`; other bytes of a slave name
/// are written as `=XX`.
fn progress_key(name: &str) -> String {
    let mut k = String::from("slave.");
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => k.push(b as char),
            _ => k.push_str(&format!("={b:02X}")),
        }
    }
    k
}

fn unescape_name(k: &str) -> String {
    let mut out = Vec::new();
    let b = k.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() + 1 {
            if let Some(v) = k
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes asked for per pull. The server queues a pull's messages for the
/// connection at once, and drops a client whose queue passes its
/// `max_pending` (64 MiB by default; the ordered consumer asked for 500
/// messages of up to `max_payload` each). A pull is renewed when half of
/// it has arrived, so about two are open: this keeps what is in flight
/// near four messages' worth, at most 32 MiB, and a pull always has room
/// for the biggest message (a smaller one would never deliver it).
fn pull_bytes(max_payload: usize) -> usize {
    (2 * max_payload).min(16 << 20).max(max_payload + 64 * 1024)
}

type MessageStream = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    jetstream::Message,
                    async_nats::jetstream::consumer::pull::MessagesError,
                >,
            > + Send,
    >,
>;

/// Reads records in stream order, reassembling chunks.
///
/// It keeps its own position (`next_seq`) and pulls through an ephemeral
/// consumer it recreates from there whenever deliveries may have been
/// lost: the pull failed (a slow-consumer drop, a server restart, a cut
/// link), a message came after a hole, or nothing came for
/// [`STALL_TIMEOUT`] while the stream holds more. Every message is
/// checked against `next_seq`, so a recreated consumer neither skips nor
/// repeats one.
pub struct NatsReader {
    stream_name: String,
    stream: stream::Stream,
    subject: String,
    pull_bytes: usize,
    messages: Option<MessageStream>,
    /// The current consumer's name, deleted when it is replaced.
    consumer: Option<String>,
    /// No message delivered yet by the current consumer.
    fresh: bool,
    /// Consumers created without a message delivered in between.
    resubscribes: u32,
    /// Why the last consumer was dropped, for the error when the reader
    /// gives up.
    last_cause: Option<String>,
    /// Since when the reader waits for a message that the stream may hold.
    waiting_since: Option<Instant>,
    stall_timeout: Duration,
    recreated: u64,
    assembling: Vec<u8>,
    next_chunk: u32,
    /// The stream sequence the next message must have: the stream holds
    /// only this subject, so its messages are numbered without holes.
    next_seq: u64,
}

impl NatsReader {
    /// Lowers the stall timeout (tests).
    pub fn with_stall_timeout(mut self, t: Duration) -> Self {
        self.stall_timeout = t;
        self
    }

    /// How many times a consumer was recreated.
    pub fn recreated(&self) -> u64 {
        self.recreated
    }

    /// Replaces the consumer with one that starts at `next_seq`.
    async fn subscribe(&mut self) -> Result<(), NatsError> {
        self.messages = None;
        if self.resubscribes >= MAX_RESUBSCRIBES {
            self.resubscribes = 0;
            return Err(reader_gave_up(
                &self.stream_name,
                self.next_seq,
                self.last_cause.take().as_deref(),
            ));
        }
        if self.resubscribes > 0 {
            tokio::time::sleep(Duration::from_millis(200) * self.resubscribes).await;
        }
        if let Some(old) = self.consumer.take() {
            // Best effort: an ephemeral consumer also goes away by itself
            // once inactive.
            let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.delete_consumer(&old))
                .await;
        }
        self.resubscribes += 1;
        let consumer = self
            .stream
            .create_consumer(pull::Config {
                filter_subject: self.subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.next_seq,
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: CONSUMER_INACTIVE,
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("creating a consumer")(e.to_string()))?;
        self.consumer = Some(consumer.cached_info().name.clone());
        let messages = consumer
            .stream()
            .max_messages_per_batch(PULL_MESSAGES)
            .max_bytes_per_batch(self.pull_bytes)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| js_err("reading messages")(e.to_string()))?;
        self.messages = Some(Box::pin(messages));
        self.fresh = true;
        self.waiting_since = None;
        Ok(())
    }

    /// Drops the consumer after trouble; the next read recreates it.
    fn resubscribe(&mut self, cause: &str) {
        tracing::warn!(stream = %self.stream_name, from_seq = self.next_seq, cause, "NATS consumer lost its place; reading again from the next message");
        self.last_cause = Some(cause.to_string());
        self.messages = None;
        self.recreated += 1;
    }

    /// The next whole record: the stream sequence of its last message, the
    /// transaction (or part) and its encoded size.
    pub async fn next(&mut self) -> Result<(u64, Transaction, usize), NatsError> {
        loop {
            if let Some(r) = self.next_within(Duration::from_secs(3600)).await? {
                return Ok(r);
            }
        }
    }

    /// Like [`next`](Self::next), but `None` when no record arrived within
    /// `wait`. Nothing is lost when it returns `None`; cancelling it
    /// between messages loses nothing either.
    pub async fn next_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<(u64, Transaction, usize)>, NatsError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.messages.is_none() {
                self.subscribe().await?;
            }
            let since = *self.waiting_since.get_or_insert_with(Instant::now);
            let messages = self.messages.as_mut().expect("subscribed above");
            let msg = match tokio::time::timeout_at(deadline, messages.next()).await {
                Err(_) => {
                    if since.elapsed() >= self.stall_timeout {
                        if self.last_seq().await? >= self.next_seq {
                            self.resubscribe("no message for the stall timeout");
                        } else {
                            // Nothing to read: the wait was not a stall.
                            self.waiting_since = Some(Instant::now());
                        }
                    }
                    return Ok(None);
                }
                Ok(None) => {
                    self.resubscribe("the pull ended");
                    continue;
                }
                Ok(Some(Err(e))) => {
                    self.resubscribe(&e.to_string());
                    continue;
                }
                Ok(Some(Ok(m))) => m,
            };
            let seq = msg
                .info()
                .map(|i| i.stream_sequence)
                .map_err(|e| js_err("reading message metadata")(e.to_string()))?;
            if seq < self.next_seq {
                // Delivered before this consumer's start: already read.
                continue;
            }
            let fresh = std::mem::replace(&mut self.fresh, false);
            self.waiting_since = None;
            if seq > self.next_seq {
                if fresh {
                    // A consumer that starts at `next_seq` went on after it:
                    // the stream does not hold that message.
                    return Err(NatsError::Gap {
                        stream: self.stream_name.clone(),
                        expected: self.next_seq,
                        found: seq,
                    });
                }
                // Deliveries lost on the way (a dropped connection): the
                // consumer's position moved past them.
                self.resubscribe(&format!("message {seq} came after a hole"));
                continue;
            }
            self.resubscribes = 0;
            self.last_cause = None;
            self.next_seq = seq + 1;
            let corrupt = |reason: &str| NatsError::Corrupt {
                stream: self.stream_name.clone(),
                seq,
                reason: reason.into(),
            };
            let m = meta(msg.headers.as_ref()).ok_or_else(|| corrupt("rowcast headers missing"))?;
            if m.chunk == 0 {
                // A record starts (again, if it was republished).
                self.assembling.clear();
                self.next_chunk = 0;
            }
            if m.chunk != self.next_chunk {
                // The tail of a record whose start came before the
                // reader's first message, or a republished fragment.
                continue;
            }
            self.assembling.extend_from_slice(&msg.payload);
            self.next_chunk += 1;
            if self.next_chunk < m.chunks {
                continue;
            }
            self.next_chunk = 0;
            let txn: Transaction = codec::decode(&self.assembling)
                .map_err(|e| corrupt(&format!("body does not decode: {e}")))?;
            let bytes = std::mem::take(&mut self.assembling).len();
            return Ok(Some((seq, txn, bytes)));
        }
    }

    /// The stream's last sequence.
    async fn last_seq(&mut self) -> Result<u64, NatsError> {
        let info = self
            .stream
            .info()
            .await
            .map_err(|e| js_err("reading the stream's state")(e.to_string()))?;
        Ok(info.state.last_sequence)
    }
}

/// The error of a reader whose consumers kept failing: where it stopped,
/// what failed last and what to do.
fn reader_gave_up(stream: &str, seq: u64, cause: Option<&str>) -> NatsError {
    NatsError::ReaderGaveUp {
        stream: stream.to_string(),
        seq,
        attempts: MAX_RESUBSCRIBES,
        cause: cause
            .unwrap_or("no cause was seen (the consumer was replaced before it failed)")
            .to_string(),
    }
}

impl Drop for NatsReader {
    /// A reader that goes (the session ended, the slave stops) deletes its
    /// consumer instead of leaving it on the server for
    /// [`CONSUMER_INACTIVE`]. Best effort, in the background: without a
    /// runtime, or with NATS unreachable, the server drops it by itself.
    fn drop(&mut self) {
        let Some(name) = self.consumer.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let stream = self.stream.clone();
        runtime.spawn(async move {
            let deleted =
                tokio::time::timeout(Duration::from_secs(2), stream.delete_consumer(&name)).await;
            if !matches!(deleted, Ok(Ok(_))) {
                tracing::debug!(consumer = %name, "could not delete a NATS consumer; the server drops it once inactive");
            }
        });
    }
}

impl NatsLog {
    /// Where a slave whose checkpoint is `(seq, position)` reads on (see
    /// [`LogView::read_from`](crate::log::LogView::read_from)).
    pub async fn read_from(
        &self,
        seq: u64,
        position: Option<&SourcePosition>,
    ) -> Result<crate::log::ReadFrom, NatsError> {
        let url = &self.url;
        match (seq, position) {
            // Right after a snapshot the checkpoint has a position but no
            // stream sequence yet: find the first message after it.
            (0, Some(p)) => {
                let start = self.first_seq_after(p).await?;
                let (first, last, _) = self.state().await?;
                // The snapshot is older than every message the stream
                // still holds (or than the last one published, if
                // retention emptied it): some that came after it may have
                // been purged.
                let emptied_after =
                    first > last && self.tip().await?.is_some_and(|tip| tip.is_after(p));
                if (start == first && first > 1 && first <= last) || emptied_after {
                    return Err(NatsError::Purged {
                        stream: url.stream.clone(),
                        wanted: first - 1,
                        first,
                    });
                }
                Ok(crate::log::ReadFrom {
                    seq: start,
                    note_seq: true,
                })
            }
            (seq, position) => {
                // The sequence must be this stream's: the message there
                // holds the checkpoint's transaction.
                let (first, last, _) = self.state().await?;
                if let Some(p) = position.filter(|_| seq >= first && seq <= last) {
                    // After a snapshot the checkpoint is the snapshot's
                    // position, which lies between this message and the
                    // next (and carries no GTID): compare locations, not
                    // equality.
                    let found = self.position_at(seq).await?;
                    let next_not_after = if seq < last {
                        !self.position_at(seq + 1).await?.is_after(p)
                    } else {
                        false
                    };
                    if found.is_after(p) || next_not_after {
                        return Err(NatsError::NotThisStream {
                            stream: url.stream.clone(),
                            seq,
                            expected: p.to_string(),
                            found: found.to_string(),
                        });
                    }
                }
                Ok(crate::log::ReadFrom {
                    seq: seq + 1,
                    note_seq: false,
                })
            }
        }
    }
}

/// The stream as a [`LogWriter`](crate::log::LogWriter): publishes
/// batches after the stream's tail, retrying (from the tail as it then
/// is) while NATS is unreachable, and skips what the stream already holds.
pub struct StreamWriter {
    nats: Arc<NatsLog>,
    tail: Tail,
    start: Option<SourcePosition>,
    followed: (Option<u32>, u32),
    part_bytes: usize,
    tip_written: Option<Instant>,
    metrics: Arc<crate::ops::metrics::Metrics>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl StreamWriter {
    pub async fn open(
        url: &NatsUrl,
        chunk_bytes: Option<usize>,
        options: crate::log::WriterOptions,
    ) -> Result<StreamWriter, NatsError> {
        let mut nats = NatsLog::open(url, Some(&options.retention)).await?;
        if let Some(bytes) = chunk_bytes {
            nats = nats.with_chunk_bytes(bytes);
        }
        // A transaction read again after a restart must be cut into the
        // same parts and chunks as before: the stream keeps the sizes it
        // began with.
        let part_bytes = match nats.sizes().await? {
            Some((part_bytes, chunk_bytes)) => {
                if part_bytes != options.part_bytes {
                    tracing::warn!(stream = %url, part_bytes, "--part-kb differs from the stream's; keeping the stream's");
                }
                nats = nats.with_chunk_bytes(chunk_bytes);
                part_bytes
            }
            None => {
                nats.set_sizes(options.part_bytes, nats.chunk_bytes())
                    .await?;
                options.part_bytes
            }
        };
        let mut tail = nats.tail().await?;
        let start = nats.start().await?;
        // A stream emptied by retention has no tail: the recorded tip says
        // where publishing stopped.
        if tail.published.is_none() {
            let tip = nats.tip().await?;
            tail.published = tip.clone();
            tail.resume = tip;
        }
        let followed = match nats.source().await? {
            Some((id, epoch)) => (Some(id), epoch),
            None => (None, 0),
        };
        Ok(StreamWriter {
            nats: Arc::new(nats),
            tail,
            start,
            followed,
            part_bytes,
            tip_written: None,
            metrics: options.metrics,
            shutdown: options.shutdown,
        })
    }
}

impl crate::log::LogWriter for StreamWriter {
    fn start(&self) -> Option<SourcePosition> {
        self.start.clone()
    }

    async fn initialise(
        &mut self,
        start: SourcePosition,
        _gtids: Option<GtidSet>,
    ) -> Result<(), crate::log::ChangeLogError> {
        // The stream keeps no GTID set: a MySQL failover resumes by GTID.
        self.nats.set_start(&start).await?;
        self.start = Some(start);
        Ok(())
    }

    fn resume(&self) -> Option<SourcePosition> {
        self.tail.resume.clone().or_else(|| self.start.clone())
    }

    fn tip(&self) -> (Option<SourcePosition>, u32) {
        (self.tail.resume.clone(), 0)
    }

    fn followed(&self) -> (Option<u32>, u32) {
        self.followed
    }

    async fn set_followed(
        &mut self,
        server_id: u32,
        epoch: u32,
    ) -> Result<(), crate::log::ChangeLogError> {
        self.nats.set_source(server_id, epoch).await?;
        self.followed = (Some(server_id), epoch);
        Ok(())
    }

    fn executed_gtids(&self) -> Result<Option<GtidSet>, crate::log::ChangeLogError> {
        Ok(None)
    }

    fn part_bytes(&self) -> usize {
        self.part_bytes
    }

    async fn append(
        &mut self,
        mut batch: Vec<EncodedTxn>,
    ) -> Result<Option<crate::log::Appended>, crate::log::ChangeLogError> {
        batch.retain(|t| {
            self.tail
                .published
                .as_ref()
                .is_none_or(|p| t.position.is_after(p))
        });
        if batch.is_empty() {
            return Ok(Some(crate::log::Appended::default()));
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.nats.publish(&batch, &mut self.tail).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    self.metrics.errors.add(1);
                    tracing::warn!(cause = %e, retry_in = ?backoff, "publishing to NATS failed; retrying from the stream's tail");
                    tokio::select! {
                        _ = self.shutdown.changed() => return Ok(None),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Some of the batch may be stored: continue after it.
                    match self.nats.tail().await {
                        Ok(t) => self.tail = t,
                        Err(e) => tracing::warn!(cause = %e, "cannot read the stream's tail yet"),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let bytes = batch.iter().map(|t| t.bytes.len() as u64).sum();
        let appended = crate::log::Appended::of(&batch, bytes, None);
        if let Some((position, _)) = &appended.tip {
            if self
                .tip_written
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                // Best effort: the stream's own tail is the first source.
                if let Err(e) = self.nats.set_tip(position).await {
                    tracing::warn!(cause = %e, "could not record the published tip");
                }
                self.tip_written = Some(Instant::now());
            }
        }
        Ok(Some(appended))
    }

    async fn retain(&mut self, _keep_from: u64) -> Result<(), crate::log::ChangeLogError> {
        // The stream's own max_age/max_bytes apply (set at open).
        Ok(())
    }

    fn view(&self) -> crate::log::View {
        crate::log::View::JetStream(self.nats.clone())
    }

    fn location(&self) -> String {
        self.nats.url().to_string()
    }
}

impl crate::log::LogView for Arc<NatsLog> {
    async fn stats(&self) -> crate::log::LogStats {
        let (first_seq, last_seq, time) = self.state().await.unwrap_or((0, 0, 0));
        crate::log::LogStats {
            first_seq,
            last_seq,
            last_time: Some(time),
            segments: 0,
            bytes: 0,
        }
    }

    async fn last_seq(&self) -> u64 {
        self.state().await.map(|s| s.1).unwrap_or(0)
    }

    async fn time_at(&self, seq: u64) -> Option<u32> {
        NatsLog::time_at(self, seq).await.ok().flatten()
    }

    async fn seq_through(&self, position: &SourcePosition) -> Option<u64> {
        let (_, last, _) = self.state().await.ok()?;
        if last == 0 {
            return None;
        }
        let next = self.first_seq_after(position).await.ok()?;
        Some(next.saturating_sub(1))
    }

    async fn ddl_between(
        &self,
        from: &SourcePosition,
        to: &SourcePosition,
    ) -> Result<bool, crate::log::ChangeLogError> {
        Ok(NatsLog::ddl_between(self, from, to).await?)
    }

    async fn reader_after(
        &self,
        _after: Option<&SourcePosition>,
    ) -> Result<crate::log::RecordReader, crate::log::ChangeLogError> {
        // Slaves read the stream themselves (`read_directly`).
        Err(NatsError::JetStream {
            what: "serving the stream",
            reason: format!(
                "this master keeps its change log on NATS JetStream: start the slave with --log {}",
                self.url()
            ),
        }
        .into())
    }

    fn read_directly(&self) -> Option<String> {
        Some(self.url().to_string())
    }

    async fn read_from(
        &self,
        seq: u64,
        position: Option<&SourcePosition>,
    ) -> Result<crate::log::ReadFrom, crate::log::ChangeLogError> {
        Ok(NatsLog::read_from(self, seq, position).await?)
    }

    async fn reader_from(
        &self,
        seq: u64,
    ) -> Result<crate::log::TxnReader, crate::log::ChangeLogError> {
        let reader = self.reader(seq).await?;
        tracing::info!(stream = %self.url(), from_seq = seq, "reading the change log from NATS JetStream");
        Ok(crate::log::TxnReader::JetStream(Box::new(reader)))
    }

    async fn report(
        &self,
        name: &str,
        progress: &SlaveProgress,
    ) -> Result<(), crate::log::ChangeLogError> {
        Ok(self.put_progress(name, progress).await?)
    }

    async fn reports(&self) -> Vec<(String, SlaveProgress)> {
        self.progress().await.unwrap_or_default()
    }

    fn location(&self) -> String {
        self.url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's last error says where it stopped, what failed last
    /// (the pull's own error text) and what to do, and is retried.
    #[test]
    fn a_reader_that_gives_up_names_the_stream_the_message_and_the_last_cause() {
        let err = reader_gave_up("ROWCAST", 4711, Some("missing heartbeats from the server"));
        let msg = err.to_string();
        for part in [
            "stream ROWCAST",
            "message 4711",
            "5 consumers in a row",
            "missing heartbeats from the server",
            "reconnects",
            "nats-server is up and reachable",
        ] {
            assert!(msg.contains(part), "{part:?} not in: {msg}");
        }
        assert!(err.is_retryable(), "the session reconnects: {msg}");
        assert!(reader_gave_up("S", 1, None)
            .to_string()
            .contains("no cause was seen"));
    }

    #[test]
    fn urls_name_a_server_and_a_stream() {
        assert_eq!(
            NatsUrl::parse("nats://127.0.0.1:4222").unwrap(),
            NatsUrl {
                server: "127.0.0.1:4222".into(),
                stream: DEFAULT_STREAM.into()
            }
        );
        let u = NatsUrl::parse("nats://n1:4222/orders").unwrap();
        assert_eq!(
            (u.server.as_str(), u.stream.as_str()),
            ("n1:4222", "orders")
        );
        assert_eq!(u.to_string(), "nats://n1:4222/orders");
        for bad in ["http://x", "nats://", "nats://h:1/a.b", "nats://u:p@h:1"] {
            assert!(NatsUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn record_headers_round_trip() {
        let rec = EncodedTxn {
            position: SourcePosition::new("binlog.000002", 777),
            timestamp: 12,
            part: 3,
            more: true,
            rows: 1,
            bytes: vec![1, 2, 3],
        };
        let h = headers(&rec, 1, 4, 9);
        let m = meta(Some(&h)).unwrap();
        assert_eq!(m.position, rec.position);
        assert!(m.more);
        assert_eq!((m.chunk, m.chunks, m.timestamp), (1, 4, 12));
        assert_eq!(
            h.get("Nats-Msg-Id").unwrap().as_str(),
            "0:binlog.000002:777:3:1/4"
        );
        assert_eq!(h.get("Nats-Expected-Last-Sequence").unwrap().as_str(), "9");
    }

    #[test]
    fn slave_names_become_valid_keys_and_back() {
        for name in ["s1", "east/replica 2", "ü"] {
            let key = progress_key(name);
            assert!(key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.".contains(c)));
            assert_eq!(unescape_name(key.strip_prefix("slave.").unwrap()), name);
        }
    }
}
