//! Frames in (RFC 6455 section 5): a byte buffer decoded into whole messages and control
//! frames, with the checks the RFC asks of a receiver and the message size limit, applied as
//! soon as a header announces a length. No I/O: [`Decoder::read_plan`] says how much the
//! connection task should read next, so an idle peer holds no buffer and a large frame's
//! remainder arrives in one read (tungstenite zero-fills its read window before every read and
//! reads a large message in 8 KiB steps; see BENCHMARKS.md).

use bytes::{Buf, BytesMut};

use super::deflate::{InflateError, Inflater};
use crate::frame::{
    apply_mask, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, RSV1,
};
use crate::Bytes;

/// Bytes asked for per socket read when no large frame is pending.
const READ_CHUNK: usize = 8 * 1024;
/// Bytes asked for per socket read while the peer streams (fewer reads per small message).
const STREAM_CHUNK: usize = 64 * 1024;
/// Largest read asked for at once: a bigger frame is read in steps of this size.
const MAX_READ: usize = 256 * 1024;
/// A read from a quiet peer goes into this much stack first, so idle peers hold no buffer.
pub(crate) const IDLE_READ: usize = 64;

/// One thing received: a whole message or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    Data {
        data: Bytes,
        text: bool,
    },
    Ping(Bytes),
    Pong(Bytes),
    /// The other side's close frame: its code and reason, if it gave one.
    Close(Option<(u16, String)>),
}

/// Why reading stopped. Protocol faults map to the close code the other side gets.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// Answered with 1002.
    Protocol(&'static str),
    /// A message over the size limit; answered with 1009.
    TooBig { size: u64, max: usize },
    /// A text message (or close reason) that is not UTF-8; answered with 1007.
    Utf8,
    /// A compressed message that inflates past the size limit; answered with 1009.
    InflatedTooBig { max: usize },
    /// A compressed message that is not valid deflate data; answered with 1007.
    Inflate(String),
}

impl FrameError {
    /// The close code and reason the other side gets for it.
    pub(crate) fn close(&self) -> (u16, &'static str) {
        match self {
            FrameError::TooBig { .. } => (1009, "Message too big"),
            FrameError::Utf8 => (1007, "Invalid UTF-8"),
            FrameError::Protocol(_) => (1002, "Protocol error"),
            FrameError::InflatedTooBig { .. } => (1009, "Message too big"),
            FrameError::Inflate(_) => (1007, "Invalid compressed data"),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Protocol(why) => write!(f, "protocol error: {why}"),
            FrameError::TooBig { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds inbound_buffer_size {max}"
                )
            }
            FrameError::Utf8 => f.write_str("invalid UTF-8 in a text message"),
            FrameError::InflatedTooBig { max } => write!(
                f,
                "compressed message inflates past inbound_buffer_size {max}"
            ),
            FrameError::Inflate(why) => write!(f, "invalid compressed message: {why}"),
        }
    }
}

/// What [`Decoder::read_plan`] asks the connection task to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadPlan {
    /// Read up to `IDLE_READ` bytes into a stack buffer, then [`Decoder::receive`] them.
    Idle,
    /// Read into [`Decoder::buffer`], asking for this many bytes, then [`Decoder::filled`].
    Buffer(usize),
}

/// Decodes frames from a byte stream into messages.
pub(crate) struct Decoder {
    buf: BytesMut,
    /// Bytes the frame at the front of `buf` needs in total (0: its header is incomplete).
    want: usize,
    max_message: usize,
    /// A server requires masked frames; a client requires unmasked ones.
    server: bool,
    /// A fragmented message being assembled.
    partial: Option<Partial>,
    /// The last read filled the space asked for: more is waiting, skip the small first read.
    streaming: bool,
    /// Size of the last data frame on the wire (capped), to size the next read.
    last_frame: usize,
    /// permessage-deflate was agreed: RSV1 marks a compressed message.
    inflater: Option<Inflater>,
    /// Data frames' payload bytes decoded since [`Self::take_wire_in`] (compressed, where
    /// they were), for the statistics.
    wire_in: u64,
}

impl Decoder {
    pub(crate) fn new(max_message: usize, server: bool) -> Self {
        Decoder {
            buf: BytesMut::new(),
            want: 0,
            max_message,
            server,
            partial: None,
            streaming: false,
            last_frame: 0,
            inflater: None,
            wire_in: 0,
        }
    }

    /// Data payload bytes decoded since the last call, as they were on the wire.
    pub(crate) fn take_wire_in(&mut self) -> u64 {
        std::mem::take(&mut self.wire_in)
    }

    /// permessage-deflate was agreed: messages with RSV1 set are inflated with `inflater`.
    pub(crate) fn inflate_with(&mut self, inflater: Inflater) {
        self.inflater = Some(inflater);
    }

    /// How the connection task should read next. A quiet peer's buffer is given back and a
    /// small stack read starts the next burst (it usually holds a whole small message);
    /// otherwise the buffer has room for the rest of the current frame (in `MAX_READ` steps: a
    /// header alone must not allocate a whole large message) and, while the peer streams, for
    /// at least one more frame like the last one.
    pub(crate) fn read_plan(&mut self) -> ReadPlan {
        if self.buf.is_empty() && !self.streaming {
            self.buf = BytesMut::new();
            return ReadPlan::Idle;
        }
        let missing = self.want.saturating_sub(self.buf.len()).min(MAX_READ);
        let next = if self.buf.is_empty() {
            self.last_frame
        } else {
            0
        };
        let chunk = if self.streaming {
            STREAM_CHUNK
        } else {
            READ_CHUNK
        };
        let ask = missing.max(next).max(chunk);
        self.buf.reserve(ask);
        ReadPlan::Buffer(ask)
    }

    /// Where a [`ReadPlan::Buffer`] read goes (its spare capacity).
    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// A [`ReadPlan::Buffer`] read of `n` bytes into [`Self::buffer`] is done. One that filled
    /// what was asked for leaves more in the socket.
    pub(crate) fn filled(&mut self, n: usize, asked: usize) {
        self.streaming = n >= asked;
    }

    /// Bytes read some other way ([`ReadPlan::Idle`], or before the connection task began).
    pub(crate) fn receive(&mut self, bytes: &[u8]) {
        self.receive_read(bytes, IDLE_READ);
    }

    /// Bytes of a [`ReadPlan::Idle`] read that offered `offered` bytes of room: one that
    /// filled it leaves more in the socket.
    pub(crate) fn receive_read(&mut self, bytes: &[u8], offered: usize) {
        self.buf.extend_from_slice(bytes);
        self.streaming = bytes.len() >= offered;
    }

    /// A server's decoder (it requires masked frames).
    pub(crate) fn is_server(&self) -> bool {
        self.server
    }

    /// Bytes held: read and not decoded yet, plus the fragments of a message being assembled
    /// (the fuzz targets hold this to the inbound limit).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// Drops whatever is buffered (input after a failure is read and ignored).
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
    }

    /// Decodes the next complete message or control frame from what was read already.
    pub(crate) fn parse(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some((header, len)) = self.header()? else {
                return Ok(None);
            };
            if self.buf.len() < header.len + len {
                self.want = header.len + len;
                return Ok(None);
            }
            self.want = 0;
            if header.opcode < OP_CLOSE {
                self.last_frame = (header.len + len).min(MAX_READ);
                self.wire_in += len as u64;
            }
            self.buf.advance(header.len);
            let mut payload = self.buf.split_to(len);
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key);
            }
            match header.opcode {
                OP_PING => return Ok(Some(Incoming::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(Incoming::Pong(payload.freeze()))),
                OP_CLOSE => return parse_close(&payload).map(|c| Some(Incoming::Close(c))),
                OP_CONTINUATION => {
                    let Some(mut partial) = self.partial.take() else {
                        return Err(FrameError::Protocol("continuation frame without a message"));
                    };
                    partial.data.extend_from_slice(&payload);
                    if !header.fin {
                        partial.check_utf8()?;
                        self.partial = Some(partial);
                        continue;
                    }
                    return self.finish(partial).map(Some);
                }
                _ => {
                    let text = header.opcode == OP_TEXT;
                    if self.partial.is_some() {
                        return Err(FrameError::Protocol("new message inside a fragmented one"));
                    }
                    let mut partial = Partial {
                        text,
                        data: payload,
                        valid: 0,
                        compressed: header.compressed,
                    };
                    if header.fin {
                        return self.finish(partial).map(Some);
                    }
                    partial.check_utf8()?;
                    self.partial = Some(partial);
                    continue;
                }
            }
        }
    }

    /// The header at the front of the buffer, checked, and its payload length.
    fn header(&self) -> Result<Option<(Header, usize)>, FrameError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0F;
        let compressed = b[0] & 0x70 == RSV1 && self.inflater.is_some();
        if b[0] & 0x70 != 0 && !compressed {
            return Err(FrameError::Protocol(if self.inflater.is_some() {
                "RSV2 or RSV3 set (only RSV1 has a meaning: permessage-deflate)"
            } else {
                "reserved bits set (no extension was agreed)"
            }));
        }
        // RSV1 marks a message's first frame only, never a control frame (RFC 7692 6.1).
        if compressed && !matches!(opcode, OP_TEXT | OP_BINARY) {
            return Err(FrameError::Protocol(
                "RSV1 set on a control or continuation frame",
            ));
        }
        let masked = b[1] & 0x80 != 0;
        let (len, mut hlen) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()), 10),
            126 | 127 => return Ok(None),
            n => (n as u64, 2),
        };
        if masked {
            hlen += 4;
        }
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(FrameError::Protocol("fragmented control frame"));
                }
                if len > 125 {
                    return Err(FrameError::Protocol("control frame over 125 bytes"));
                }
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                // Saturating: `len` comes off the wire and may be near 2^64. A compressed
                // message is checked again once inflated.
                let before = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
                let deflated = compressed || self.partial.as_ref().is_some_and(|p| p.compressed);
                let max = if deflated {
                    compressed_limit(self.max_message)
                } else {
                    self.max_message
                };
                if before.saturating_add(len) > max as u64 {
                    return Err(FrameError::TooBig {
                        size: before.saturating_add(len),
                        max: self.max_message,
                    });
                }
            }
            _ => return Err(FrameError::Protocol("unknown opcode")),
        }
        if masked != self.server {
            return Err(FrameError::Protocol(if self.server {
                "unmasked frame from a client"
            } else {
                "masked frame from a server"
            }));
        }
        if b.len() < hlen {
            return Ok(None);
        }
        let mask = masked.then(|| [b[hlen - 4], b[hlen - 3], b[hlen - 2], b[hlen - 1]]);
        let header = Header {
            fin,
            opcode,
            compressed,
            mask,
            len: hlen,
        };
        // `len` fits: it is at most a message's limit (data) or 125 (control).
        Ok(Some((header, len as usize)))
    }

    /// A whole message: inflated if it was compressed, then its text checked.
    fn finish(&mut self, partial: Partial) -> Result<Incoming, FrameError> {
        if !partial.compressed {
            return partial.finish();
        }
        let Some(inflater) = self.inflater.as_mut() else {
            return Err(FrameError::Protocol("RSV1 set with no extension agreed"));
        };
        let data = inflater
            .inflate(&partial.data, self.max_message)
            .map_err(|e| match e {
                InflateError::TooBig => FrameError::InflatedTooBig {
                    max: self.max_message,
                },
                InflateError::Corrupt(why) => FrameError::Inflate(why),
            })?;
        if partial.text && std::str::from_utf8(&data).is_err() {
            return Err(FrameError::Utf8);
        }
        Ok(Incoming::Data {
            data: Bytes::from(data),
            text: partial.text,
        })
    }
}

/// A message being assembled (or, for one frame, just checked).
struct Partial {
    text: bool,
    data: BytesMut,
    /// Length of the prefix of `data` known to be UTF-8 (text only).
    valid: usize,
    /// permessage-deflate data, inflated when whole (its text is checked after).
    compressed: bool,
}

impl Partial {
    /// Fails a text message at the first fragment that cannot be UTF-8, whatever follows
    /// (a sequence cut at the end of a fragment may still complete).
    fn check_utf8(&mut self) -> Result<(), FrameError> {
        if !self.text || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.valid..]) {
            Ok(_) => self.valid = self.data.len(),
            Err(e) if e.error_len().is_none() => self.valid += e.valid_up_to(),
            Err(_) => return Err(FrameError::Utf8),
        }
        Ok(())
    }

    /// The whole message. Only the part not checked by [`Self::check_utf8`] is validated
    /// (`valid` always ends on a character boundary).
    fn finish(self) -> Result<Incoming, FrameError> {
        if self.text && std::str::from_utf8(&self.data[self.valid..]).is_err() {
            return Err(FrameError::Utf8);
        }
        Ok(Incoming::Data {
            data: self.data.freeze(),
            text: self.text,
        })
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    /// RSV1 with permessage-deflate agreed: the message's first frame, compressed.
    compressed: bool,
    mask: Option<[u8; 4]>,
    /// Header length in bytes.
    len: usize,
}

/// Largest compressed payload accepted for one message of at most `max_message` bytes: a
/// little over the limit, as data that does not compress grows by a few bytes per block.
pub(crate) fn compressed_limit(max_message: usize) -> usize {
    max_message
        .saturating_add(max_message / 1024)
        .saturating_add(64)
}

pub(crate) fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::Utf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Codes a close frame may carry (RFC 6455 7.4; 1004-1006 and 1015 never go on the wire).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests;
