//! The one place that knows how rowcast values become bytes.
//!
//! Frames on the wire and records in the change log are bincode 2 (serde,
//! standard config: little-endian varints). Keeping bincode behind these
//! functions means a format change touches one file, and every caller gets
//! the same size limit, so a corrupt length can never drive a huge
//! allocation.

use serde::{de::DeserializeOwned, Serialize};

/// Version of the encoding of `Transaction` and friends. Stored in every
/// change-log segment header and exchanged in the wire handshake.
/// Version 5: MySQL tagged GTIDs (`uuid:tag:n`) in positions and in the
/// log's starting GTID set.
pub const FORMAT_VERSION: u16 = 5;

/// Upper bound on one decoded value; also the largest frame and log record.
pub const MAX_ENCODED_LEN: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("could not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("could not decode (corrupt or incompatible data): {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{extra} bytes left over after decoding: the data is corrupt or of another format")]
    Trailing { extra: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENCODED_LEN>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Appends the encoding of `value` to `buf`, avoiding a temporary vector.
pub fn encode_into<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, buf, config())?;
    Ok(())
}

/// The most a decoded value may claim in memory: a generous multiple of
/// its encoded size (varints and enum tags expand), so a corrupt length
/// prefix cannot make the decoder allocate far more than it was given.
fn claim_limit(encoded: usize) -> usize {
    encoded
        .saturating_mul(64)
        .saturating_add(4096)
        .min(MAX_ENCODED_LEN)
}

fn decode_with_limit<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    let limit = claim_limit(bytes.len());
    // bincode takes its limit as a type parameter; pick the closest bound.
    macro_rules! with {
        ($n:literal) => {
            Ok(bincode::serde::decode_from_slice(
                bytes,
                bincode::config::standard().with_limit::<$n>(),
            )?)
        };
    }
    match limit {
        0..=65_536 => with!(65_536),
        65_537..=1_048_576 => with!(1_048_576),
        1_048_577..=16_777_216 => with!(16_777_216),
        16_777_217..=268_435_456 => with!(268_435_456),
        _ => with!(1_073_741_824),
    }
}

/// Decodes a whole buffer; trailing bytes are an error, not ignored.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = decode_with_limit(bytes)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decodes a value from the start of `bytes`, ignoring what follows. Used
/// to read just the `(seq, position)` head of a change-log record.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(decode_with_limit(bytes)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::change::*;
    use crate::source::position::{Gtid, SourcePosition};

    #[test]
    fn transaction_round_trips() {
        let txn = Transaction {
            position: SourcePosition {
                epoch: 0,
                file: "binlog.000003".into(),
                offset: 1234,
                gtid: Some(Gtid::MariaDb {
                    domain: 0,
                    server: 1,
                    seq: 9,
                }),
            },
            timestamp: 1_700_000_000,
            part: 0,
            more: false,
            tables: vec![TableSchema {
                database: "d".into(),
                name: "t".into(),
                columns: vec![ColumnDef {
                    name: "id".into(),
                    kind: ColumnKind::BigInt,
                    unsigned: true,
                    collation: 0,
                }],
                primary_key: vec![0],
            }],
            changes: vec![
                Change::Insert {
                    table: 0,
                    rows: vec![vec![Value::UInt(u64::MAX)], vec![Value::Null]],
                },
                Change::Ddl(Ddl {
                    database: Some("d".into()),
                    sql: b"DROP TABLE t".to_vec(),
                    sql_mode: Some(0),
                    charset: Some((33, 33, 8)),
                    ..Default::default()
                }),
            ],
            events: None,
            xa: None,
        };
        let bytes = encode(&txn).unwrap();
        assert_eq!(decode::<Transaction>(&bytes).unwrap(), txn);
    }

    /// Byte strings are written as serde bytes (one copy), which must be
    /// the very encoding of the derived `Vec<u8>` (a sequence of `u8`) that
    /// earlier logs and peers hold.
    #[test]
    fn byte_strings_keep_the_sequence_encoding() {
        #[derive(serde::Serialize)]
        struct AsSeq {
            format: Vec<u8>,
            crc32: bool,
            table_maps: Vec<Vec<u8>>,
            rows: Vec<Vec<Vec<u8>>>,
        }
        let long: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let events = RowEvents {
            format: long.clone(),
            crc32: true,
            table_maps: vec![vec![], vec![1, 2, 3]],
            rows: vec![vec![], vec![long.clone(), vec![9]]],
        };
        let seq = AsSeq {
            format: events.format.clone(),
            crc32: true,
            table_maps: events.table_maps.clone(),
            rows: events.rows.clone(),
        };
        assert_eq!(encode(&events).unwrap(), encode(&seq).unwrap());
        assert_eq!(
            decode::<RowEvents>(&encode(&events).unwrap()).unwrap(),
            events
        );
        // Value::Bytes is variant 6 and Value::Json variant 15.
        for (value, tag) in [
            (Value::Bytes(long.clone()), 6u8),
            (Value::Json(b"{}".to_vec()), 15u8),
        ] {
            let inner = match &value {
                Value::Bytes(b) | Value::Json(b) => b.clone(),
                _ => unreachable!(),
            };
            let mut expected = vec![tag];
            expected.extend(encode(&inner).unwrap());
            let bytes = encode(&value).unwrap();
            assert_eq!(bytes, expected);
            assert_eq!(decode::<Value>(&bytes).unwrap(), value);
        }
    }

    #[test]
    fn trailing_and_truncated_bytes_are_errors() {
        let mut bytes = encode(&Value::Bytes(vec![1, 2, 3])).unwrap();
        assert!(decode::<Value>(&bytes[..bytes.len() - 1]).is_err());
        bytes.push(0);
        assert!(matches!(
            decode::<Value>(&bytes),
            Err(CodecError::Trailing { extra: 1 })
        ));
    }
}
