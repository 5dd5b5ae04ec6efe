//! Owns one TCP socket of the rowcast protocol and hands out whole frames.
//!
//! The socket is split so that one task can read while another writes (the
//! slave acknowledges while it receives; the master reads acks while it
//! streams). A clean EOF between frames is `Ok(None)`; a peer vanishing in
//! the middle of a frame is an error.

use std::io;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

/// Either half of a plain TCP or a TLS stream.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits a stream (TCP or TLS) into a frame reader and writer.
pub fn split<S>(stream: S, limit: usize) -> (FrameReader, FrameWriter)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = tokio::io::split(stream);
    (
        FrameReader::new(Box::new(r), limit),
        FrameWriter::new(Box::new(w)),
    )
}

use crate::log::codec::{self, CodecError};
use crate::net::frame::{self, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("peer closed the connection in the middle of a frame")]
    Truncated,
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad frame payload: {0}")]
    Codec(#[from] CodecError),
    #[error("peer sent nothing for {0:?}")]
    Timeout(Duration),
}

pub struct FrameReader {
    half: ReadHalf,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    start: usize,
    limit: usize,
}

impl FrameReader {
    pub fn new(half: ReadHalf, limit: usize) -> Self {
        FrameReader {
            half,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            limit,
        }
    }

    /// Lowers or raises the frame size limit (e.g. small until the peer
    /// has shaken hands).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Reads raw bytes that precede framing (the greeting).
    pub async fn read_exact_raw(&mut self, out: &mut [u8]) -> Result<(), ConnectionError> {
        let buffered = (self.buf.len() - self.start).min(out.len());
        out[..buffered].copy_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        if buffered < out.len() {
            self.half.read_exact(&mut out[buffered..]).await?;
        }
        Ok(())
    }

    /// The next whole frame's payload, `None` on a clean close.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, ConnectionError> {
        loop {
            if let Some(total) = frame::check(&self.buf[self.start..], self.limit)? {
                let payload = self.buf[self.start + frame::HEADER_LEN..self.start + total].to_vec();
                self.start += total;
                return Ok(Some(payload));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            // Grow for a large announced frame only after `check` vetted it.
            if self.buf.len() >= frame::HEADER_LEN {
                let need = u32::from_le_bytes(self.buf[..4].try_into().unwrap()) as usize
                    + frame::HEADER_LEN;
                self.buf.reserve(need.saturating_sub(self.buf.len()));
            }
            let n = self.half.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::Truncated)
                };
            }
        }
    }

    pub async fn read_message<T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ConnectionError> {
        match self.read_frame().await? {
            Some(payload) => Ok(Some(codec::decode(&payload)?)),
            None => Ok(None),
        }
    }

    pub async fn read_message_timeout<T: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<T>, ConnectionError> {
        tokio::time::timeout(timeout, self.read_message())
            .await
            .map_err(|_| ConnectionError::Timeout(timeout))?
    }
}

pub struct FrameWriter {
    half: BufWriter<WriteHalf>,
}

impl FrameWriter {
    pub fn new(half: WriteHalf) -> Self {
        FrameWriter {
            half: BufWriter::with_capacity(256 * 1024, half),
        }
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        self.half.write_all(bytes).await?;
        Ok(())
    }

    /// Queues one frame made of `parts` concatenated; call [`flush`] to send.
    pub async fn write_frame_parts(&mut self, parts: &[&[u8]]) -> Result<(), ConnectionError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.half.write_all(&frame::header(len)).await?;
        for p in parts {
            self.half.write_all(p).await?;
        }
        Ok(())
    }

    pub async fn write_message<T: Serialize>(&mut self, msg: &T) -> Result<(), ConnectionError> {
        let payload = codec::encode(msg)?;
        self.write_frame_parts(&[&payload]).await
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ConnectionError> {
        self.write_message(msg).await?;
        self.flush().await
    }

    pub async fn flush(&mut self) -> Result<(), ConnectionError> {
        self.half.flush().await?;
        Ok(())
    }

    pub fn buffered(&self) -> usize {
        self.half.buffer().len()
    }
}
