//! Expands MariaDB's compressed binlog events (`log_bin_compress=ON`)
//! into the uncompressed events they stand for.
//!
//! With `log_bin_compress=ON` MariaDB writes a statement longer than
//! `log_bin_compress_min_len` as QUERY_COMPRESSED (165) and a row event as
//! WRITE/UPDATE/DELETE_ROWS_COMPRESSED v1 (166-168) or v2 (169-171). Such an
//! event is its uncompressed twin (QUERY 2, ROWS 23-25 / 30-32) with the
//! tail zlib-compressed: the query text of a QUERY event, the row images of
//! a ROWS event. Everything before that tail (post-header, status
//! variables, schema; table id, flags, width and column bitmaps) is left as
//! it was. The tail starts with one header byte: bit 7 set, bits 4-6 the
//! algorithm (0, zlib, the only one MariaDB has), bits 0-2 how many bytes
//! the uncompressed length takes (1 to 4); then that length big-endian,
//! then the zlib stream (MariaDB's `binlog_buf_compress`).
//!
//! [`expand`] rebuilds the twin as the server's own replica does before
//! applying one (`query_event_uncompress`, `row_log_event_uncompress` in
//! MariaDB's `sql/log_event.cc`): the tail inflated, the event type and
//! size in the header rewritten, and a new CRC32 when the stream carries
//! checksums (once the primary's CRC32 of the compressed event has been
//! checked: the new one must not vouch for damaged bytes). Timestamp, server id, `log_pos` and flags stay, so the
//! event keeps its place in the primary's binlog, and its bytes are an
//! event any MariaDB accepts in a `BINLOG '...'` statement (which is how the
//! replica's row-event applier gets the rows, see `replica::replay`).
//!
//! This module owns only the byte format. It keeps no state and decides
//! nothing about transactions: the decoder feeds the expanded event to
//! itself as if the primary had written it so.

use flate2::{Decompress, FlushDecompress, Status};
use mysql_common::binlog::consts::BinlogChecksumAlg;
use mysql_common::binlog::events::Event;

/// MariaDB's compressed event types (sql/log_event.h).
pub const QUERY_COMPRESSED: u8 = 165;
const ROWS_COMPRESSED_V1: std::ops::RangeInclusive<u8> = 166..=168;
const ROWS_COMPRESSED_V2: std::ops::RangeInclusive<u8> = 169..=171;

const QUERY: u8 = 2;
const WRITE_ROWS_V1: u8 = 23;
const WRITE_ROWS_V2: u8 = 30;
const UPDATE_ROWS_V1: u8 = 24;
const UPDATE_ROWS_V2: u8 = 31;

const HEADER_LEN: usize = 19;
const CHECKSUM_LEN: usize = 4;
/// Query post-header: thread id, exec time, schema length, error code,
/// status-variables length (what MariaDB's FDE announces for type 165).
const QUERY_POST_HEADER_LEN: usize = 13;
/// Rows post-header: 6-byte table id and flags; v2 adds a variable part
/// that starts with its own length.
const ROWS_POST_HEADER_LEN: usize = 8;
/// Set in the compressed tail's header byte (see the module doc).
const COMPRESSED_FLAG: u8 = 0x80;
const ZLIB: u8 = 0;

/// True for the event types [`expand`] takes.
pub fn is_compressed(event_type: u8) -> bool {
    event_type == QUERY_COMPRESSED
        || ROWS_COMPRESSED_V1.contains(&event_type)
        || ROWS_COMPRESSED_V2.contains(&event_type)
}

/// What is wrong with a compressed event; the decoder adds the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressedError {
    #[error("event type {0} is not a compressed event")]
    NotCompressed(u8),
    #[error("the event ends inside its {0}")]
    Truncated(&'static str),
    #[error("the compressed part's header byte {0:#04x} lacks the compressed flag (0x80) or a length of 1 to 4 bytes")]
    BadHeader(u8),
    #[error("compression algorithm {0} is unknown (MariaDB only writes zlib, 0)")]
    UnknownAlgorithm(u8),
    #[error("the uncompressed length is 0")]
    EmptyBody,
    #[error("the zlib data is corrupt: {0}")]
    Zlib(String),
    #[error("the zlib data ends before its end marker")]
    ZlibTruncated,
    #[error("the zlib data inflates to {actual} bytes, the event says {declared}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("the zlib data inflates to more than the {declared} bytes the event says")]
    Overlong { declared: usize },
    #[error("the uncompressed event would be {0} bytes, more than an event can hold")]
    TooBig(u64),
    #[error("its CRC32 is {sent:#010x} but its bytes sum to {computed:#010x}: damaged on the way or on disk")]
    Checksum { sent: u32, computed: u32 },
    #[error("the expanded event does not read back: {0}")]
    Rebuild(String),
}

/// The uncompressed event that `event` (of a type [`is_compressed`]
/// accepts) stands for.
pub fn expand(event: &Event) -> Result<Event, CompressedError> {
    let header = event.header();
    let event_type = header.event_type_raw();
    let body = event.data();
    let (plain_type, head_len) = if event_type == QUERY_COMPRESSED {
        (QUERY, query_head_len(event, body)?)
    } else if ROWS_COMPRESSED_V1.contains(&event_type) {
        let plain = event_type - ROWS_COMPRESSED_V1.start() + WRITE_ROWS_V1;
        (plain, rows_head_len(body, plain, false)?)
    } else if ROWS_COMPRESSED_V2.contains(&event_type) {
        let plain = event_type - ROWS_COMPRESSED_V2.start() + WRITE_ROWS_V2;
        (plain, rows_head_len(body, plain, true)?)
    } else {
        return Err(CompressedError::NotCompressed(event_type));
    };
    // mysql_common cuts the checksum off whenever its FDE says the stream
    // has one; the rebuilt event must then end in one too, or it would
    // lose four bytes of rows when read back.
    let footer = event.footer();
    let checksum = footer.get_checksum_enabled()
        && !matches!(
            footer.get_checksum_alg(),
            Ok(None) | Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF))
        );
    // The expanded event gets a checksum of its own, which would vouch
    // for bytes damaged on the way: the primary's is checked first, as
    // its own replicas check it.
    if let (true, Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)), Some(sent)) =
        (checksum, footer.get_checksum_alg(), event.checksum())
    {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header_bytes(event, event_type, header.event_size()));
        crc.update(body);
        let (computed, sent) = (crc.finalize(), u32::from_le_bytes(sent));
        if computed != sent {
            return Err(CompressedError::Checksum { sent, computed });
        }
    }

    let (head, tail) = body.split_at(head_len);
    let inflated = uncompress(tail)?;
    let size = (HEADER_LEN + head.len() + inflated.len()) as u64
        + if checksum { CHECKSUM_LEN as u64 } else { 0 };
    let size_field = u32::try_from(size).map_err(|_| CompressedError::TooBig(size))?;
    let mut bytes = Vec::with_capacity(size as usize);
    bytes.extend_from_slice(&header_bytes(event, plain_type, size_field));
    bytes.extend_from_slice(head);
    bytes.extend_from_slice(&inflated);
    if checksum {
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    Event::read(event.fde(), &bytes[..]).map_err(|e| CompressedError::Rebuild(e.to_string()))
}

/// `event`'s 19-byte header with `event_type` and `size` in it.
fn header_bytes(event: &Event, event_type: u8, size: u32) -> [u8; HEADER_LEN] {
    let h = event.header();
    let mut bytes = [0u8; HEADER_LEN];
    bytes[0..4].copy_from_slice(&h.timestamp().to_le_bytes());
    bytes[4] = event_type;
    bytes[5..9].copy_from_slice(&h.server_id().to_le_bytes());
    bytes[9..13].copy_from_slice(&size.to_le_bytes());
    bytes[13..17].copy_from_slice(&h.log_pos().to_le_bytes());
    bytes[17..19].copy_from_slice(&h.flags_raw().to_le_bytes());
    bytes
}

/// The post-header length the stream's FDE gives `event_type`, or
/// `default` when it names none (an FDE built without MariaDB's types).
fn post_header_len(event: &Event, event_type: u8, default: usize) -> usize {
    event
        .fde()
        .event_type_header_lengths()
        .get(usize::from(event_type) - 1)
        .map_or(default, |l| usize::from(*l))
}

/// Bytes of a QUERY_COMPRESSED body before the compressed query text:
/// post-header, status variables, schema name and its NUL.
fn query_head_len(event: &Event, body: &[u8]) -> Result<usize, CompressedError> {
    let post = post_header_len(event, QUERY_COMPRESSED, QUERY_POST_HEADER_LEN);
    if post < QUERY_POST_HEADER_LEN || body.len() < post {
        return Err(CompressedError::Truncated("query post-header"));
    }
    let schema_len = usize::from(body[8]);
    let status_vars_len = usize::from(u16::from_le_bytes([body[11], body[12]]));
    let head = post + status_vars_len + schema_len + 1;
    if body.len() <= head {
        return Err(CompressedError::Truncated(
            "status variables and schema name",
        ));
    }
    Ok(head)
}

/// Bytes of a compressed ROWS body before the compressed row images:
/// post-header (with v2's variable part), column count and the column
/// bitmap, two for an update.
fn rows_head_len(body: &[u8], plain_type: u8, v2: bool) -> Result<usize, CompressedError> {
    let mut at = ROWS_POST_HEADER_LEN;
    if v2 {
        let extra = body
            .get(at..at + 2)
            .ok_or(CompressedError::Truncated("rows post-header"))?;
        // The length counts its own two bytes.
        let extra = usize::from(u16::from_le_bytes([extra[0], extra[1]]));
        if extra < 2 {
            return Err(CompressedError::Truncated("rows extra data"));
        }
        at += extra;
    }
    let (columns, len) = length_encoded(body.get(at..).unwrap_or_default())
        .ok_or(CompressedError::Truncated("column count"))?;
    at += len;
    let bitmap = usize::try_from(columns.div_ceil(8))
        .map_err(|_| CompressedError::Truncated("column bitmap"))?;
    let bitmaps = if matches!(plain_type, UPDATE_ROWS_V1 | UPDATE_ROWS_V2) {
        2
    } else {
        1
    };
    at = bitmap
        .checked_mul(bitmaps)
        .and_then(|b| b.checked_add(at))
        .filter(|end| *end < body.len())
        .ok_or(CompressedError::Truncated("column bitmap"))?;
    Ok(at)
}

/// A length-encoded integer and how many bytes it took.
fn length_encoded(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let width = match first {
        0..=250 => return Some((u64::from(first), 1)),
        252 => 2,
        253 => 3,
        254 => 8,
        // 251 is SQL NULL and 255 no integer at all: neither is a count.
        _ => return None,
    };
    let digits = bytes.get(1..1 + width)?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(digits);
    Some((u64::from_le_bytes(le), 1 + width))
}

/// Inflates a compressed tail (header byte, length, zlib stream) to exactly
/// the length it declares.
fn uncompress(tail: &[u8]) -> Result<Vec<u8>, CompressedError> {
    let header = *tail
        .first()
        .ok_or(CompressedError::Truncated("compressed data"))?;
    let len_len = usize::from(header & 0x07);
    if header & COMPRESSED_FLAG == 0 || !(1..=4).contains(&len_len) {
        return Err(CompressedError::BadHeader(header));
    }
    let algorithm = (header >> 4) & 0x07;
    if algorithm != ZLIB {
        return Err(CompressedError::UnknownAlgorithm(algorithm));
    }
    let len_bytes = tail
        .get(1..1 + len_len)
        .ok_or(CompressedError::Truncated("uncompressed length"))?;
    let declared = len_bytes
        .iter()
        .fold(0usize, |n, b| n << 8 | usize::from(*b));
    if declared == 0 {
        return Err(CompressedError::EmptyBody);
    }
    inflate(&tail[1 + len_len..], declared)
}

/// Output grows as the stream yields it, never past one byte more than
/// `declared`: a corrupt length cannot make it allocate gigabytes, nor a
/// zlib bomb fill memory.
fn inflate(input: &[u8], declared: usize) -> Result<Vec<u8>, CompressedError> {
    const STEP: usize = 1 << 20;
    let limit = declared + 1;
    let mut z = Decompress::new(true);
    let mut out = Vec::with_capacity(declared.min(STEP) + 1);
    loop {
        let consumed = z.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve_exact((limit - out.len().min(limit)).clamp(1, STEP));
        }
        let before = (consumed, out.len());
        let status = z
            // Not `Finish`: that promises the output has room for it all,
            // and here it grows step by step.
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::None)
            .map_err(|e| CompressedError::Zlib(e.to_string()))?;
        if out.len() > declared {
            return Err(CompressedError::Overlong { declared });
        }
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                let progressed = before != (z.total_in() as usize, out.len());
                if !progressed && out.len() < out.capacity() {
                    return Err(CompressedError::ZlibTruncated);
                }
            }
        }
    }
    if out.len() != declared {
        return Err(CompressedError::LengthMismatch {
            declared,
            actual: out.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use mysql_common::binlog::consts::BinlogVersion;
    use mysql_common::binlog::events::{BinlogEventFooter, FormatDescriptionEvent};

    fn fde(crc32: bool) -> FormatDescriptionEvent<'static> {
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
        if crc32 {
            fde.with_footer(BinlogEventFooter::new(
                BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32,
            ))
        } else {
            fde
        }
    }

    /// A whole event as a server writes it: header, body, and the CRC32
    /// when `crc32`.
    fn event_bytes(event_type: u8, body: &[u8], crc32: bool) -> Vec<u8> {
        let size = HEADER_LEN + body.len() + if crc32 { CHECKSUM_LEN } else { 0 };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        bytes.push(event_type);
        bytes.extend_from_slice(&7u32.to_le_bytes());
        bytes.extend_from_slice(&(size as u32).to_le_bytes());
        bytes.extend_from_slice(&4242u32.to_le_bytes());
        bytes.extend_from_slice(&0x0008u16.to_le_bytes());
        bytes.extend_from_slice(body);
        if crc32 {
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
        }
        bytes
    }

    fn read(bytes: &[u8], crc32: bool) -> Event {
        Event::read(&fde(crc32), bytes).unwrap()
    }

    /// What MariaDB's `binlog_buf_compress` writes for `plain`: the header
    /// byte, the length in as few big-endian bytes as it fits, zlib.
    fn compress(plain: &[u8]) -> Vec<u8> {
        let len = plain.len() as u32;
        let len_len = match len {
            0..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xff_ffff => 3,
            _ => 4,
        };
        let mut out = vec![COMPRESSED_FLAG | len_len as u8];
        out.extend_from_slice(&len.to_be_bytes()[4 - len_len..]);
        let mut z = Compress::new(Compression::best(), true);
        let mut zlib = Vec::with_capacity(plain.len() + 64);
        let status = z
            .compress_vec(plain, &mut zlib, FlushCompress::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd);
        out.extend_from_slice(&zlib);
        out
    }

    fn query_head() -> Vec<u8> {
        let mut head = Vec::new();
        head.extend_from_slice(&5u32.to_le_bytes()); // thread id
        head.extend_from_slice(&0u32.to_le_bytes()); // exec time
        head.push(3); // schema length
        head.extend_from_slice(&0u16.to_le_bytes()); // error code
        let status_vars = [0u8, 0, 0, 0, 0]; // Q_FLAGS2_CODE, flags2 0
        head.extend_from_slice(&(status_vars.len() as u16).to_le_bytes());
        head.extend_from_slice(&status_vars);
        head.extend_from_slice(b"app\0");
        head
    }

    /// Table id 18, flags, (v2: the extra data's own length, 2), width,
    /// one bitmap or two.
    fn rows_head(columns: u8, v2: bool, update: bool) -> Vec<u8> {
        let mut head = vec![18, 0, 0, 0, 0, 0, 1, 0];
        if v2 {
            head.extend_from_slice(&2u16.to_le_bytes());
        }
        head.push(columns);
        let bitmap = vec![0xff; usize::from(columns).div_ceil(8)];
        head.extend_from_slice(&bitmap);
        if update {
            head.extend_from_slice(&bitmap);
        }
        head
    }

    /// The compressed event of type `compressed_type` and its plain twin
    /// of type `plain_type`, both read back as mysql_common reads events.
    fn pair(
        compressed_type: u8,
        plain_type: u8,
        head: &[u8],
        tail: &[u8],
        crc32: bool,
    ) -> (Event, Event) {
        let plain_body = [head, tail].concat();
        let compressed_body = [head, &compress(tail)[..]].concat();
        (
            read(
                &event_bytes(compressed_type, &compressed_body, crc32),
                crc32,
            ),
            read(&event_bytes(plain_type, &plain_body, crc32), crc32),
        )
    }

    fn written(event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        event.write(BinlogVersion::Version4, &mut out).unwrap();
        out
    }

    #[test]
    fn a_compressed_query_expands_to_the_query_event_it_stands_for() {
        let sql = b"CREATE TABLE t (id INT PRIMARY KEY, note TEXT) -- padding padding";
        for crc32 in [true, false] {
            let (compressed, plain) = pair(QUERY_COMPRESSED, QUERY, &query_head(), sql, crc32);
            let expanded = expand(&compressed).unwrap();
            assert_eq!(expanded.header().event_type_raw(), QUERY);
            assert_eq!(expanded.data(), plain.data());
            assert_eq!(expanded.header(), plain.header(), "size and type rewritten");
            assert_eq!(
                expanded.header().log_pos(),
                4242,
                "the place in the binlog stays"
            );
            assert_eq!(expanded.checksum(), plain.checksum());
            assert_eq!(written(&expanded), written(&plain));
            let mysql_common::binlog::events::EventData::QueryEvent(q) =
                expanded.read_data().unwrap().unwrap()
            else {
                panic!("a query event expected")
            };
            assert_eq!(q.query_raw(), sql);
            assert_eq!(q.schema_raw(), b"app");
        }
    }

    #[test]
    fn compressed_rows_events_v1_and_v2_expand_with_a_correct_checksum() {
        // Lengths whose size takes 1, 2 and 3 bytes; the last inflates in
        // several steps.
        for rows_len in [200usize, 3_000, 70_000, 3 << 20] {
            let rows: Vec<u8> = (0..rows_len).map(|i| (i % 7) as u8).collect();
            for (compressed_type, plain_type) in [
                (166, 23),
                (167, 24),
                (168, 25),
                (169, 30),
                (170, 31),
                (171, 32),
            ] {
                let v2 = compressed_type >= 169;
                let update = matches!(plain_type, 24 | 31);
                let head = rows_head(10, v2, update);
                let (compressed, plain) = pair(compressed_type, plain_type, &head, &rows, true);
                let expanded = expand(&compressed).unwrap();
                assert_eq!(expanded.header(), plain.header(), "type {compressed_type}");
                assert_eq!(expanded.data(), plain.data(), "type {compressed_type}");
                let bytes = written(&expanded);
                assert_eq!(bytes, written(&plain));
                let (event, crc) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
                assert_eq!(crc32fast::hash(event).to_le_bytes(), crc);
                assert_eq!(expanded.checksum(), Some(crc.try_into().unwrap()));
            }
        }
    }

    #[test]
    fn a_wide_table_length_encodes_its_column_count() {
        // 300 columns: the width is 0xfc and two bytes, the bitmaps 38.
        let mut head = vec![18, 0, 0, 0, 0, 0, 1, 0, 0xfc];
        head.extend_from_slice(&300u16.to_le_bytes());
        head.extend_from_slice(&[0xff; 38 * 2]);
        let (compressed, plain) = pair(167, 24, &head, &[9u8; 500], true);
        assert_eq!(expand(&compressed).unwrap().data(), plain.data());
    }

    #[test]
    fn corrupt_compressed_events_are_errors_not_panics() {
        let head = rows_head(3, false, false);
        let rows = b"row images, row images, row images".repeat(10);
        let tail = compress(&rows);
        let expand_body = |body: &[u8]| expand(&read(&event_bytes(166, body, true), true));
        let with_tail = |tail: &[u8]| expand_body(&[&head[..], tail].concat());

        // A flipped byte in the middle of the deflate data.
        let mut flipped = tail.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        assert!(
            matches!(
                with_tail(&flipped),
                Err(CompressedError::Zlib(_) | CompressedError::LengthMismatch { .. })
            ),
            "{:?}",
            with_tail(&flipped)
        );
        // The adler32 at the end no longer matches.
        let mut bad_sum = tail.clone();
        *bad_sum.last_mut().unwrap() ^= 1;
        assert!(matches!(with_tail(&bad_sum), Err(CompressedError::Zlib(_))));
        // Cut short.
        assert_eq!(
            with_tail(&tail[..tail.len() - 6]),
            Err(CompressedError::ZlibTruncated)
        );
        // The declared length disagrees with the data, either way.
        let len_len = usize::from(tail[0] & 0x07);
        let low = len_len; // the length's last (low) byte
        let mut short = tail.clone();
        short[low] -= 1;
        assert!(matches!(
            with_tail(&short),
            Err(CompressedError::Overlong { .. })
        ));
        let mut long = tail.clone();
        long[low] += 1;
        assert_eq!(
            with_tail(&long),
            Err(CompressedError::LengthMismatch {
                declared: rows.len() + 1,
                actual: rows.len()
            })
        );
        // A 4 GiB claim: an error, not a 4 GiB allocation.
        let mut huge = vec![COMPRESSED_FLAG | 4, 0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&tail[1 + len_len..]);
        assert!(matches!(
            with_tail(&huge),
            Err(CompressedError::LengthMismatch { .. })
        ));
        // Header byte: no flag, no length, another algorithm.
        let mut no_flag = tail.clone();
        no_flag[0] &= !COMPRESSED_FLAG;
        assert_eq!(
            with_tail(&no_flag),
            Err(CompressedError::BadHeader(len_len as u8))
        );
        assert_eq!(with_tail(&[0x80, 1]), Err(CompressedError::BadHeader(0x80)));
        let mut lz4 = tail.clone();
        lz4[0] |= 0x10;
        assert_eq!(with_tail(&lz4), Err(CompressedError::UnknownAlgorithm(1)));
        assert_eq!(with_tail(&[0x81, 0]), Err(CompressedError::EmptyBody));
        // The event ends before the compressed part, or inside its head.
        assert!(matches!(with_tail(&[]), Err(CompressedError::Truncated(_))));
        assert!(matches!(
            with_tail(&[0x82, 1]),
            Err(CompressedError::Truncated(_))
        ));
        assert!(matches!(
            expand_body(&head[..5]),
            Err(CompressedError::Truncated(_))
        ));
        assert!(matches!(
            expand(&read(&event_bytes(165, &[0; 12], true), true)),
            Err(CompressedError::Truncated(_))
        ));
        // A status-variables length past the end.
        let mut q = query_head();
        q[11] = 0xff;
        assert!(matches!(
            expand(&read(&event_bytes(165, &q, true), true)),
            Err(CompressedError::Truncated(_))
        ));
        assert_eq!(
            expand(&read(&event_bytes(23, &head, true), true)),
            Err(CompressedError::NotCompressed(23))
        );
        // Sound data under a checksum that does not match it.
        let mut bytes = event_bytes(166, &[&head[..], &tail[..]].concat(), true);
        assert!(expand(&read(&bytes, true)).is_ok());
        *bytes.last_mut().unwrap() ^= 0x80;
        assert!(matches!(
            expand(&read(&bytes, true)),
            Err(CompressedError::Checksum { .. })
        ));
        // Without checksums there is nothing to check.
        let mut bytes = event_bytes(166, &[&head[..], &tail[..]].concat(), false);
        bytes[0] ^= 1;
        assert!(expand(&read(&bytes, false)).is_ok());
    }

    /// Every compressed event of the recorded binlog, with each byte of its
    /// body changed in turn (one bit, then all) and cut at every length:
    /// an error or an event, never a panic.
    #[test]
    fn mutated_recorded_events_never_panic() {
        use mysql_common::binlog::BinlogFile;
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/mariadb-10.11-compressed.binlog"
        ))
        .unwrap();
        let events: Vec<Event> = BinlogFile::new(BinlogVersion::Version4, &bytes[..])
            .unwrap()
            .map(Result::unwrap)
            .filter(|e| is_compressed(e.header().event_type_raw()))
            .collect();
        assert_eq!(events.len(), 5);
        let mut expanded = 0;
        for event in &events {
            let t = event.header().event_type_raw();
            let body = event.data();
            let crc32 = event.checksum().is_some();
            assert!(crc32);
            assert!(expand(event).is_ok());
            for cut in 0..body.len() {
                let _ = expand(&read(&event_bytes(t, &body[..cut], crc32), crc32));
            }
            for i in 0..body.len() {
                for flip in [1u8 << (i % 8), 0xff] {
                    let mut b = body.to_vec();
                    b[i] ^= flip;
                    if expand(&read(&event_bytes(t, &b, crc32), crc32)).is_ok() {
                        expanded += 1;
                    }
                }
            }
        }
        // Flips in the uncompressed head still expand; most others do not.
        assert!(expanded > 0);
    }
}
