//! What the fuzz targets do with an input, one function per target.
//!
//! This file is shared: the libFuzzer targets in `fuzz/fuzz_targets/` call
//! it, and `tests/fuzz_decoders.rs` includes it by path to replay every
//! file of `testdata/fuzz/` on stable Rust in a plain `cargo test`. So the
//! corpus and the regression cases are checked by exactly the code the
//! fuzzer ran. It uses only rowcast's public API (and `mysql_common`, to
//! read binlog events as `mysql_async` does).
//!
//! A check returns normally for any input that rowcast rejects cleanly; it
//! panics (a finding) when rowcast panics, or when an invariant below does
//! not hold. It returns how much of the input decoded (messages, values or
//! events), so a test can tell a seed that still exercises the decoders
//! from one a format change has made stale.

use std::cell::Cell;
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use mysql_common::binlog::consts::{BinlogVersion, EventType, TransactionPayloadCompressionType};
use mysql_common::binlog::events::{Event, TransactionPayloadEvent};
use mysql_common::binlog::EventStreamReader;
use rowcast::log::change::Transaction;
use rowcast::log::codec;
use rowcast::log::segments::RawRecord;
use rowcast::net::frame;
use rowcast::net::wire::{self, MasterMessage, SlaveMessage};
use rowcast::source::decode::Decoder;
use rowcast::source::position::SourcePosition;
use serde::{de::DeserializeOwned, Serialize};

/// The fuzz targets, by name (the names of `testdata/fuzz/<target>/`).
pub const TARGETS: &[&str] = &["frame", "change", "binlog"];

/// Runs the check of target `name` on `data`: `None` for an unknown name,
/// else how many things decoded.
pub fn check(name: &str, data: &[u8]) -> Option<usize> {
    match name {
        "frame" => Some(frames(data)),
        "change" => Some(change(data)),
        "binlog" => Some(binlog(data)),
        _ => None,
    }
}

/// `decode(encode(x)) == x`. Compared as encodings and, failing that, as
/// `Debug` text: a NaN float (a `Value::Float` may hold one) is never
/// `==` to itself.
pub fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let bytes = codec::encode(value).expect("a decoded value must encode");
    let again: T = codec::decode(&bytes).expect("an encoded value must decode");
    assert!(
        again == *value || format!("{again:?}") == format!("{value:?}"),
        "round trip changed the value:\n{value:?}\nbecame\n{again:?}"
    );
    assert_eq!(
        codec::encode(&again).expect("a decoded value must encode"),
        bytes,
        "re-encoding is not stable"
    );
}

/// Target `frame`: a byte stream as a rowcast peer receives it.
///
/// The first byte picks the reader: bit 0 clear is the master reading a
/// slave (`SlaveMessage` frames, all at `wire::HANDSHAKE_FRAME_LIMIT`, as
/// `serve.rs` does); bit 0 set is a slave (or `rowcast status`): a raw
/// 10-byte greeting, then `MasterMessage` frames up to
/// `codec::MAX_ENCODED_LEN + 16` (`slave.rs`; `status.rs` allows 64 MiB,
/// which changes nothing here). The other 7 bits set how
/// many bytes each simulated socket read returns (1..=128), so frames
/// arrive split at every possible place.
pub fn frames(data: &[u8]) -> usize {
    let Some((&mode, stream)) = data.split_first() else {
        return 0;
    };
    let read_size = 1 + usize::from(mode >> 1);
    let mut decoded = 0;
    if mode & 1 == 0 {
        read_frames(stream, wire::HANDSHAKE_FRAME_LIMIT, read_size, |payload| {
            if let Ok(msg) = codec::decode::<SlaveMessage>(payload) {
                round_trips(&msg);
                decoded += 1;
            }
        });
    } else {
        if stream.len() < wire::GREETING_LEN {
            return 0;
        }
        let (greeting, stream) = stream.split_at(wire::GREETING_LEN);
        if &greeting[..8] != wire::MAGIC {
            let _ = wire::describe_foreign_greeting(greeting);
            return 0;
        }
        read_frames(
            stream,
            codec::MAX_ENCODED_LEN + 16,
            read_size,
            |payload| match codec::decode::<MasterMessage>(payload) {
                Ok(MasterMessage::Transaction(seq, txn)) => {
                    // A transaction frame is the tag and a change-log record.
                    assert_eq!(payload[..1], wire::transaction_frame_tag());
                    let record: (u64, Transaction) = codec::decode(&payload[1..])
                        .expect("a transaction frame's record must decode alone");
                    assert!(
                        format!("{record:?}") == format!("{:?}", (seq, &txn)),
                        "record and frame disagree"
                    );
                    round_trips(&MasterMessage::Transaction(seq, txn));
                    decoded += 1;
                }
                Ok(msg) => {
                    round_trips(&msg);
                    decoded += 1;
                }
                Err(_) => {}
            },
        );
    }
    decoded
}

/// `connection::FrameReader::read_frame` over an in-memory socket that
/// returns `read_size` bytes per read; `on_payload` gets each whole frame.
fn read_frames(
    mut input: &[u8],
    limit: usize,
    read_size: usize,
    mut on_payload: impl FnMut(&[u8]),
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    loop {
        match frame::check(&buf[start..], limit) {
            // The reader fails and the connection ends.
            Err(_) => return,
            Ok(Some(total)) => {
                let avail = buf.len() - start;
                assert!(
                    (frame::HEADER_LEN..=avail).contains(&total),
                    "frame of {total} bytes in a buffer of {avail}"
                );
                assert!(total - frame::HEADER_LEN <= limit, "frame over the limit");
                let payload = &buf[start + frame::HEADER_LEN..start + total];
                assert_eq!(
                    frame::header(payload.len())[..],
                    buf[start..start + frame::HEADER_LEN]
                );
                on_payload(payload);
                start += total;
                continue;
            }
            Ok(None) => {
                // "Incomplete" must really mean incomplete.
                let avail = &buf[start..];
                if avail.len() >= frame::HEADER_LEN {
                    let len = u32::from_le_bytes(avail[..4].try_into().unwrap()) as usize;
                    assert!(
                        avail.len() < frame::HEADER_LEN + len,
                        "a whole frame was missed"
                    );
                }
            }
        }
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        // Here the reader reserves the announced length (after `check`
        // vetted it); the fuzzer only checks the bound, not to allocate a
        // GiB per input.
        if buf.len() >= frame::HEADER_LEN {
            let announced = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            assert!(announced <= limit, "an unvetted length would be reserved");
        }
        if input.is_empty() {
            // EOF: a clean close between frames, or a truncated frame.
            return;
        }
        let n = read_size.min(input.len());
        buf.extend_from_slice(&input[..n]);
        input = &input[n..];
    }
}

/// Target `change`: bytes as a `Transaction` and as a change-log record
/// payload (`(seq, Transaction)`, whose `(seq, position, timestamp, part,
/// more)` head the log reader decodes alone).
pub fn change(data: &[u8]) -> usize {
    let mut decoded = 0;
    if let Ok(txn) = codec::decode::<Transaction>(data) {
        round_trips(&txn);
        decoded += 1;
    }
    let head = codec::decode_prefix::<(u64, SourcePosition, u32, u32, bool)>(data);
    let full = codec::decode::<(u64, Transaction)>(data);
    if let Ok((seq, txn)) = &full {
        let (s, position, timestamp, part, more) = head
            .as_ref()
            .expect("a record that decodes must have a head that decodes");
        assert_eq!(
            (s, position, timestamp, part, more),
            (seq, &txn.position, &txn.timestamp, &txn.part, &txn.more)
        );
        round_trips(&(*seq, txn.clone()));
        decoded += 1;
        // The master ships the record's bytes behind the tag, undecoded;
        // the slave decodes them as a MasterMessage.
        let mut payload = wire::transaction_frame_tag().to_vec();
        payload.extend_from_slice(data);
        match codec::decode::<MasterMessage>(&payload) {
            Ok(MasterMessage::Transaction(s2, t2)) => assert!(
                format!("{:?}", (s2, &t2)) == format!("{:?}", (seq, txn)),
                "record and frame disagree"
            ),
            other => panic!("a record that decodes is not a transaction frame: {other:?}"),
        }
    }
    // What the log reader hands on once the head decoded (its CRC checked).
    if let Ok((seq, position, timestamp, part, more)) = head {
        let record = RawRecord {
            seq,
            position,
            timestamp,
            part,
            more,
            payload: data.to_vec(),
        };
        assert_eq!(record.decode().is_ok(), full.is_ok());
    }
    decoded
}

/// Target `binlog`: a binlog file (the 4-byte magic is optional) whose
/// events go through `mysql_common`'s event reader into rowcast's
/// `Decoder`, as `mysql_async`'s binlog stream hands them over (including
/// the inner events of an uncompressed MySQL TRANSACTION_PAYLOAD event;
/// compressed ones are not unpacked, a zstd bomb being the trusted
/// primary's business). Every transaction that comes out must round-trip
/// through the codec.
///
/// `mysql_common`'s own event parsers panic on some malformed events (see
/// [`dependency_guard`]); such a panic ends the stream like a decode
/// error would, and is not a finding of this target.
pub fn binlog(data: &[u8]) -> usize {
    let mut rest = data.strip_prefix(b"\xfebin").unwrap_or(data);
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut decoder = Decoder::new("binlog.000001");
    let mut decoded = 0;
    while let Some((bytes, tail)) = next_event(rest) {
        rest = tail;
        if bytes[4] == EventType::PREVIOUS_GTIDS_EVENT as u8 {
            // mysql_common sizes a vector by this event's count field,
            // unchecked: the failed allocation aborts, which no guard can
            // catch. The decoder ignores this event but still has it
            // parsed (`Event::read_data` in `Decoder::feed`): skipped here.
            continue;
        }
        let Some(Ok(Some(event))) = dependency_guard(|| reader.read(bytes)) else {
            break;
        };
        if !feed(&mut decoder, &event) {
            break;
        }
        decoded += 1;
        if event.header().event_type_raw() != EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            continue;
        }
        let inner = match dependency_guard(|| event.read_event::<TransactionPayloadEvent<'_>>()) {
            Some(Ok(tpe)) if tpe.algorithm() == TransactionPayloadCompressionType::NONE => {
                tpe.danger_decompress()
            }
            _ => continue,
        };
        let mut inner = &inner[..];
        while let Some((bytes, tail)) = next_event(inner) {
            inner = tail;
            let Some(Ok(Some(event))) = dependency_guard(|| reader.read_decompressed(bytes)) else {
                break;
            };
            if !feed(&mut decoder, &event) {
                return decoded;
            }
            decoded += 1;
        }
    }
    decoded
}

/// The next event's bytes and the rest. The server sends one event per
/// packet, so an event's size field always matches its bytes; rather than
/// trip over `mysql_common`, which panics on an event shorter than its
/// size field (or than its header and checksum), this ends the stream.
fn next_event(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    const HEADER: usize = 19;
    if bytes.len() < HEADER {
        return None;
    }
    let size = u32::from_le_bytes(bytes[9..13].try_into().unwrap()) as usize;
    if size < HEADER + 4 || size > bytes.len() {
        return None;
    }
    Some(bytes.split_at(size))
}

/// Feeds one event; `false` when the decoder refuses it (the source then
/// stops, nothing more is decoded).
fn feed(decoder: &mut Decoder, event: &Event) -> bool {
    match dependency_guard(|| decoder.feed(event)) {
        None => false,
        Some(Ok(Some(txn))) => {
            round_trips(&txn);
            true
        }
        Some(Ok(None)) => true,
        Some(Err(e)) => {
            let _ = e.to_string();
            false
        }
    }
}

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static DEPENDENCY_PANICKED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; `None` when it panicked inside `mysql_common`'s sources.
///
/// Known panics of mysql_common 0.37.3 on malformed events, found by this
/// target, are bugs of that crate (the primary is trusted to send
/// well-formed events); reproducers are in
/// `testdata/fuzz/regressions/binlog/mysql_common-*`. A TRANSACTION_PAYLOAD
/// event's field lengths and types (`io.rs` `ParseBuf::skip` and
/// `split_at`, `consts.rs` `unwrap`), and, with overflow checks on, row
/// values (`decimal/mod.rs` multiplication, `misc.rs` DATETIME negation).
/// A panic anywhere else (rowcast itself) is not caught: under libFuzzer
/// it aborts as a finding, in the stable replay it fails the test.
pub fn dependency_guard<R>(f: impl FnOnce() -> R) -> Option<R> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_dependency = info
                .location()
                .is_some_and(|l| l.file().replace('\\', "/").contains("/mysql_common-"));
            if GUARDED.get() && in_dependency {
                DEPENDENCY_PANICKED.set(true);
            } else {
                previous(info);
            }
        }));
    });
    GUARDED.set(true);
    DEPENDENCY_PANICKED.set(false);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(false);
    match result {
        Ok(r) => Some(r),
        Err(_) if DEPENDENCY_PANICKED.replace(false) => None,
        Err(payload) => panic::resume_unwind(payload),
    }
}
