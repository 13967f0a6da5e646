//! The frame codec: varint length prefix + one protobuf message, with incremental decoding.
//!
//! Order of calls on a [`FrameDecoder`]: [`FrameDecoder::push`] whatever bytes arrived, then
//! call [`FrameDecoder::next_frame`] until it returns `Ok(None)` (more input needed) or an
//! error. When the transport delivers whole frames per message (a WebSocket binary message),
//! call [`FrameDecoder::finish`] after the last frame to reject a truncated tail.

use std::marker::PhantomData;

use bytes::{Buf, BytesMut};
use prost::Message;

use crate::limits::MAX_LENGTH_PREFIX_BYTES;

/// Why input could not be decoded into frames.
///
/// [`DecodeError::is_fatal`] tells whether the byte stream can still be trusted: after a fatal
/// error the framing is lost and the connection must be closed (protocol violation or frame too
/// large); after a non-fatal one the bad frame was skipped and decoding may go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix announces a frame larger than the limit. Detected on the prefix, before
    /// the frame's bytes are buffered.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced frame length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The length prefix is not a valid varint (longer than 10 bytes or overflowing 64 bits).
    #[error("malformed frame length prefix")]
    MalformedLength,
    /// The frame was complete but is not a valid protobuf message of the expected type.
    #[error("frame of {len} bytes is not a valid message: {reason}")]
    InvalidMessage {
        /// The frame length.
        len: usize,
        /// What the protobuf decoder reported.
        reason: String,
    },
    /// Input ended in the middle of a frame where whole frames were required.
    #[error("input ended inside a frame ({buffered} bytes left over)")]
    Truncated {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },
}

impl DecodeError {
    /// True when the stream's framing is lost and the connection must be closed.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, DecodeError::InvalidMessage { .. })
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message is larger than the limit; nothing was written.
    #[error("encoded frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The encoded message length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
}

/// Incremental decoder of length-prefixed frames of message type `M`.
///
/// It buffers at most one frame (bounded by `max_frame_len` plus the prefix) beyond what the
/// caller pushed in one call. After a fatal error it keeps returning that error.
#[derive(Debug)]
pub struct FrameDecoder<M> {
    buf: BytesMut,
    max_frame_len: usize,
    /// Length of the frame whose prefix was already consumed from `buf`.
    pending_len: Option<usize>,
    failed: Option<DecodeError>,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message + Default> FrameDecoder<M> {
    /// A decoder that refuses frames longer than `max_frame_len` bytes (prefix excluded).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame_len,
            pending_len: None,
            failed: None,
            _message: PhantomData,
        }
    }

    /// Appends input. Call [`FrameDecoder::next_frame`] afterwards to take the frames out.
    pub fn push(&mut self, input: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(input);
        }
    }

    /// Bytes received but not yet returned as frames (a consumed length prefix excluded).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more input is needed, or the error that stopped
    /// decoding.
    pub fn next_frame(&mut self) -> Result<Option<M>, DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let len = match self.pending_len {
            Some(len) => len,
            None => match self.read_prefix() {
                Ok(Some(len)) => len,
                Ok(None) => return Ok(None),
                Err(err) => return Err(self.fail(err)),
            },
        };
        if self.buf.len() < len {
            self.pending_len = Some(len);
            return Ok(None);
        }
        self.pending_len = None;
        let frame = self.buf.split_to(len).freeze();
        M::decode(frame)
            .map(Some)
            .map_err(|err| DecodeError::InvalidMessage {
                len,
                reason: err.to_string(),
            })
    }

    /// Checks that no partial frame is left; use it when each transport message must hold
    /// whole frames (WebSocket). Resets the decoder for the next message when it succeeds.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.is_empty() && self.pending_len.is_none() {
            return Ok(());
        }
        let err = DecodeError::Truncated {
            buffered: self.buf.len(),
        };
        Err(self.fail(err))
    }

    fn fail(&mut self, err: DecodeError) -> DecodeError {
        self.buf = BytesMut::new();
        self.pending_len = None;
        self.failed = Some(err.clone());
        err
    }

    /// Reads and consumes the varint prefix, checking the limit before anything else.
    fn read_prefix(&mut self) -> Result<Option<usize>, DecodeError> {
        let Some((len, prefix_len)) = parse_varint(&self.buf)? else {
            return Ok(None);
        };
        let max = self.max_frame_len;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= max)
            .ok_or(DecodeError::FrameTooLarge { len, max })?;
        self.buf.advance(prefix_len);
        Ok(Some(len))
    }
}

/// Parses a varint at the start of `input`: `Ok(None)` when it is incomplete, else the value
/// and the number of bytes it took.
fn parse_varint(input: &[u8]) -> Result<Option<(u64, usize)>, DecodeError> {
    let mut value: u64 = 0;
    for (index, byte) in input.iter().take(MAX_LENGTH_PREFIX_BYTES).enumerate() {
        let low = u64::from(byte & 0x7f);
        // The tenth byte may only carry the top bit of a u64.
        if index == MAX_LENGTH_PREFIX_BYTES - 1 && low > 1 {
            return Err(DecodeError::MalformedLength);
        }
        value |= low << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    if input.len() >= MAX_LENGTH_PREFIX_BYTES {
        return Err(DecodeError::MalformedLength);
    }
    Ok(None)
}

/// Appends `message` as one frame (varint length, then the message) to `dst`, refusing
/// messages longer than `max_frame_len` bytes without writing anything.
pub fn encode_frame<M: Message>(
    message: &M,
    max_frame_len: usize,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = message.encoded_len();
    if len > max_frame_len {
        return Err(EncodeError::FrameTooLarge {
            len,
            max: max_frame_len,
        });
    }
    dst.reserve(prost::length_delimiter_len(len) + len);
    // Infallible: capacity was reserved above.
    let _ = message.encode_length_delimited(dst);
    Ok(())
}

/// The number of bytes [`encode_frame`] writes for `message`, prefix included.
pub fn encoded_frame_len<M: Message>(message: &M) -> usize {
    let len = message.encoded_len();
    prost::length_delimiter_len(len) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_prefix_is_incomplete_until_its_last_byte() {
        assert_eq!(parse_varint(&[]), Ok(None));
        assert_eq!(parse_varint(&[0x80]), Ok(None));
        assert_eq!(parse_varint(&[0x80, 0x01]), Ok(Some((128, 2))));
    }

    #[test]
    fn varint_prefix_longer_than_ten_bytes_is_malformed() {
        assert_eq!(parse_varint(&[0xff; 10]), Err(DecodeError::MalformedLength));
        let mut max = [0xff; 10];
        max[9] = 0x01;
        assert_eq!(parse_varint(&max), Ok(Some((u64::MAX, 10))));
        max[9] = 0x02;
        assert_eq!(parse_varint(&max), Err(DecodeError::MalformedLength));
    }
}
