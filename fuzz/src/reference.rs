//! A reference WebSocket frame decoder: RFC 6455 §5 read the simple way, the whole stream at
//! once, byte by byte, with no buffer management, read plan or incremental UTF-8 check. The
//! targets feed the real decoder the same stream split at random points and require the same
//! result. It applies the checks in the real decoder's order (the first fault found decides
//! the close code: reserved bits, then a header's length against the limits, then the opcode,
//! then the mask, then what the whole frame says).
//!
//! With permessage-deflate ([`Inflate`], RFC 7692): RSV1 on a message's first frame marks it
//! compressed; the whole payload plus `00 00 ff ff` goes through one flate2 raw inflate with
//! room for the limit and one byte; a final block ends the stream (the next message starts a
//! new one).

use flate2::{Decompress, FlushDecompress, Status};

/// One thing decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Data { data: Vec<u8>, text: bool },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// How the stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// No fault; what is left (possibly nothing) is an incomplete frame.
    Incomplete,
    /// A fault, with the close code it gets.
    Fault(u16),
}

/// Decodes `stream` as a server (`server`: frames must be masked) or a client would, with
/// `max_message` the largest message allowed.
pub fn decode(stream: &[u8], max_message: usize, server: bool) -> (Vec<Item>, Ending) {
    decode_with(stream, max_message, server, None)
}

/// The receiving side of permessage-deflate.
pub struct Inflate {
    stream: Decompress,
    /// The sender resets its compressor after every message (so the reader does too).
    no_context: bool,
    /// Largest compressed payload taken for one message (the decoder's, for the limit).
    compressed_limit: usize,
}

impl Inflate {
    pub fn new(no_context: bool, compressed_limit: usize) -> Self {
        Inflate {
            stream: Decompress::new(false),
            no_context,
            compressed_limit,
        }
    }

    /// One message's payload inflated, or the close code: 1009 past `max`, 1007 corrupt.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<Vec<u8>, u16> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(max + 1);
        let before = self.stream.total_in();
        let result = self
            .stream
            .decompress_vec(&input, &mut out, FlushDecompress::Sync);
        let consumed = (self.stream.total_in() - before) as usize;
        let result = match result {
            Err(_) => Err(1007),
            Ok(_) if out.len() > max => Err(1009),
            Ok(Status::StreamEnd) => {
                self.stream.reset(false);
                Ok(out)
            }
            // Input left with room to spare: the stream cannot go on.
            Ok(_) if consumed < input.len() => Err(1007),
            Ok(_) => Ok(out),
        };
        if self.no_context {
            self.stream.reset(false);
        }
        result
    }
}

/// [`decode`], with permessage-deflate agreed when `inflate` is given.
pub fn decode_with(
    stream: &[u8],
    max_message: usize,
    server: bool,
    mut inflate: Option<&mut Inflate>,
) -> (Vec<Item>, Ending) {
    let mut items = Vec::new();
    let mut partial: Option<Partial> = None;
    let compressed_limit = inflate.as_ref().map(|i| i.compressed_limit);
    let mut at = 0;
    loop {
        let limits = (max_message, compressed_limit);
        let frame = match frame(&stream[at..], limits, server, partial.as_ref()) {
            Ok(Some(f)) => f,
            Ok(None) => return (items, Ending::Incomplete),
            Err(code) => return (items, Ending::Fault(code)),
        };
        at += frame.size;
        let payload = frame.payload;
        let item = match frame.opcode {
            0x9 => Item::Ping(payload),
            0xA => Item::Pong(payload),
            0x8 => match close(&payload) {
                Ok(c) => Item::Close(c),
                Err(code) => return (items, Ending::Fault(code)),
            },
            op => {
                let mut p = match (op, partial.take()) {
                    (0x0, Some(p)) => p,
                    (0x0, None) => return (items, Ending::Fault(1002)),
                    (_, Some(_)) => return (items, Ending::Fault(1002)),
                    (op, None) => Partial {
                        text: op == 0x1,
                        compressed: frame.compressed,
                        data: Vec::new(),
                    },
                };
                p.data.extend_from_slice(&payload);
                if p.text && !p.compressed && !utf8_ok(&p.data, frame.fin) {
                    return (items, Ending::Fault(1007));
                }
                if !frame.fin {
                    partial = Some(p);
                    continue;
                }
                let Partial {
                    text,
                    compressed,
                    mut data,
                } = p;
                if compressed {
                    let inflate = inflate.as_deref_mut().expect("RSV1 only with deflate");
                    data = match inflate.inflate(&data, max_message) {
                        Ok(d) => d,
                        Err(code) => return (items, Ending::Fault(code)),
                    };
                    if text && std::str::from_utf8(&data).is_err() {
                        return (items, Ending::Fault(1007));
                    }
                }
                Item::Data { data, text }
            }
        };
        items.push(item);
    }
}

/// A fragmented message being assembled.
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
}

struct Frame {
    fin: bool,
    /// RSV1 with deflate agreed (a compressed message's first frame).
    compressed: bool,
    opcode: u8,
    payload: Vec<u8>,
    /// Bytes on the wire.
    size: usize,
}

/// The frame at the start of `b`, `None` if it is not all there, or the close code of its
/// fault. `limits`: the message limit, and the compressed one when deflate was agreed.
fn frame(
    b: &[u8],
    limits: (usize, Option<usize>),
    server: bool,
    partial: Option<&Partial>,
) -> Result<Option<Frame>, u16> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0F;
    let compressed = b[0] & 0x70 == 0x40 && limits.1.is_some();
    if b[0] & 0x70 != 0 && !compressed {
        return Err(1002);
    }
    if compressed && !matches!(opcode, 0x1 | 0x2) {
        return Err(1002);
    }
    let masked = b[1] & 0x80 != 0;
    let (len, mut header) = match b[1] & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (u64::from(b[2]) << 8 | u64::from(b[3]), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            (
                b[2..10].iter().fold(0u64, |a, &x| a << 8 | u64::from(x)),
                10,
            )
        }
        n => (u64::from(n), 2),
    };
    match opcode {
        0x8..=0xA => {
            if !fin || len > 125 {
                return Err(1002);
            }
        }
        0x0..=0x2 => {
            let before = partial.map_or(0, |p| p.data.len() as u128);
            let deflated = compressed || partial.is_some_and(|p| p.compressed);
            let max = match limits {
                (_, Some(compressed_max)) if deflated => compressed_max,
                (max, _) => max,
            };
            if before + u128::from(len) > max as u128 {
                return Err(1009);
            }
        }
        _ => return Err(1002),
    }
    if masked != server {
        return Err(1002);
    }
    if masked {
        header += 4;
    }
    let len = len as usize;
    if b.len() < header + len {
        return Ok(None);
    }
    let mut payload = b[header..header + len].to_vec();
    if masked {
        let key = &b[header - 4..header];
        for (i, x) in payload.iter_mut().enumerate() {
            *x ^= key[i % 4];
        }
    }
    Ok(Some(Frame {
        fin,
        compressed,
        opcode,
        payload,
        size: header + len,
    }))
}

/// A text message's bytes so far: all valid UTF-8 at the end (`fin`), else a valid prefix of
/// it (a character may be cut at the end).
fn utf8_ok(data: &[u8], fin: bool) -> bool {
    match std::str::from_utf8(data) {
        Ok(_) => true,
        Err(e) => !fin && e.error_len().is_none(),
    }
}

/// A close frame's payload: nothing, or a code that may be sent and a UTF-8 reason.
fn close(p: &[u8]) -> Result<Option<(u16, String)>, u16> {
    if p.is_empty() {
        return Ok(None);
    }
    if p.len() == 1 {
        return Err(1002);
    }
    let code = u16::from(p[0]) << 8 | u16::from(p[1]);
    if !sendable(code) {
        return Err(1002);
    }
    let reason = String::from_utf8(p[2..].to_vec()).map_err(|_| 1007u16)?;
    Ok(Some((code, reason)))
}

/// Close codes a frame may carry (RFC 6455 §7.4.1: never 1004-1006 or 1015; 1012-1014 are
/// registered with IANA since; 3000-4999 for libraries and applications).
pub fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
