//! Frames: the length-prefixed units of the rowcast wire protocol.
//!
//! A frame is `[len u32 LE][payload]`. Parsing is pure, on a byte slice: a
//! cheap [`check`] says whether a whole frame is buffered, so a short read
//! is "incomplete", never an error, and a length beyond the limit is
//! rejected before anything is allocated for it.

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
}

/// Returns the total length (header + payload) of the first frame in `buf`
/// when it is complete, `Ok(None)` when more bytes are needed.
pub fn check(buf: &[u8], limit: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    Ok(Some(HEADER_LEN + len))
}

/// Writes the frame header for a payload of `len` bytes.
pub fn header(len: usize) -> [u8; HEADER_LEN] {
    (len as u32).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_is_not_an_error() {
        assert_eq!(check(&[], 100), Ok(None));
        assert_eq!(check(&[3, 0, 0], 100), Ok(None));
        assert_eq!(check(&[3, 0, 0, 0, 1, 2], 100), Ok(None));
        assert_eq!(check(&[3, 0, 0, 0, 1, 2, 3, 9], 100), Ok(Some(7)));
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_it() {
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0x7f], 1024),
            Err(FrameError::TooLarge {
                len: 0x7fff_ffff,
                limit: 1024
            })
        );
    }
}
