//! WebSocket frames (RFC 6455 section 5), read and written by the connection task itself.
//!
//! tungstenite does the HTTP upgrade; the frames after it are ours, for three reasons measured
//! in BENCHMARKS.md: tungstenite zero-fills its read window before every read, reads a large
//! message in 8 KiB steps, and keeps that window allocated on every idle connection. [`FrameReader`] reads into spare capacity, asks for a
//! large frame's whole remainder in one read, and holds no buffer while its peer is quiet.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Bytes;
use bytes::{Buf, BytesMut};

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Bytes asked for per socket read when no large frame is pending.
const READ_CHUNK: usize = 8 * 1024;
/// Bytes asked for per socket read while the peer streams (fewer reads per small message).
const STREAM_CHUNK: usize = 64 * 1024;
/// Largest read asked for at once: a bigger frame is read in steps of this size.
const MAX_READ: usize = 256 * 1024;
/// A read from a quiet peer goes into this much stack first, so idle peers hold no buffer.
const IDLE_READ: usize = 64;

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
    TooBig {
        size: u64,
        max: usize,
    },
    /// A text message (or close reason) that is not UTF-8; answered with 1007.
    Utf8,
    Io(io::Error),
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
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Decodes frames from a byte stream into messages.
pub(crate) struct FrameReader {
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
}

impl FrameReader {
    pub(crate) fn new(max_message: usize, server: bool) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            want: 0,
            max_message,
            server,
            partial: None,
            streaming: false,
            last_frame: 0,
        }
    }

    /// Bytes already read from the stream, to be decoded before anything read later.
    pub(crate) fn prime(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn is_server(&self) -> bool {
        self.server
    }

    /// The next message or control frame; `Ok(None)` when the stream ends.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
    ) -> Result<Option<Incoming>, FrameError> {
        loop {
            if let Some(item) = self.parse()? {
                return Ok(Some(item));
            }
            let n = if self.buf.is_empty() && !self.streaming {
                // Quiet peer: give the buffer back while waiting; a small read starts the
                // next burst and usually holds a whole small message.
                self.buf = BytesMut::new();
                let mut first = [0u8; IDLE_READ];
                let n = stream.read(&mut first).await?;
                self.buf.extend_from_slice(&first[..n]);
                self.streaming = n == IDLE_READ;
                n
            } else {
                // The rest of the current frame in one read (in 256 KiB steps: a header alone
                // must not make us allocate a whole large message), and while the peer
                // streams, room for at least one more frame like the last one.
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
                let n = stream.read_buf(&mut self.buf).await?;
                // A read that filled what was asked for leaves more in the socket.
                self.streaming = n >= ask;
                n
            };
            if n == 0 {
                return Ok(None); // With or without a close frame: the caller tells them apart.
            }
        }
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
                    return partial.finish().map(Some);
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
                    };
                    if header.fin {
                        return partial.finish().map(Some);
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
        if b[0] & 0x70 != 0 {
            return Err(FrameError::Protocol(
                "reserved bits set (no extension was agreed)",
            ));
        }
        let opcode = b[0] & 0x0F;
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
                // Saturating: `len` comes off the wire and may be near 2^64.
                let before = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
                if before.saturating_add(len) > self.max_message as u64 {
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
            mask,
            len: hlen,
        };
        // `len` fits: it is at most max_message (data) or 125 (control).
        Ok(Some((header, len as usize)))
    }
}

/// A message being assembled (or, for one frame, just checked).
struct Partial {
    text: bool,
    data: BytesMut,
    /// Length of the prefix of `data` known to be UTF-8 (text only).
    valid: usize,
}

impl Partial {
    /// Fails a text message at the first fragment that cannot be UTF-8, whatever follows
    /// (a sequence cut at the end of a fragment may still complete).
    fn check_utf8(&mut self) -> Result<(), FrameError> {
        if !self.text {
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
    mask: Option<[u8; 4]>,
    /// Header length in bytes.
    len: usize,
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
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

/// Masking keys for a client's frames. RFC 6455 5.3 wants them unpredictable ("derived from a
/// strong source of entropy"): SipHash keyed from the OS's entropy (std's `RandomState`) over
/// a counter, a keyed pseudo-random function, with no extra crate and no system call per frame.
pub(crate) struct Masker {
    keys: std::collections::hash_map::RandomState,
    count: u64,
}

impl Masker {
    pub(crate) fn new() -> Self {
        Masker {
            keys: std::collections::hash_map::RandomState::new(),
            count: 0,
        }
    }

    fn next_key(&mut self) -> [u8; 4] {
        use std::hash::BuildHasher;
        self.count += 1;
        (self.keys.hash_one(self.count) as u32).to_ne_bytes()
    }
}

/// Appends one whole frame to `out`. A client masks its frames (`mask`), a server does not.
pub(crate) fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<&mut Masker>) {
    let bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(masker) = mask {
        let key = masker.next_key();
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key);
    } else {
        out.extend_from_slice(payload);
    }
}

/// A close frame's payload: the code, then the reason cut to fit 125 bytes on a char boundary.
/// 1005 ("no status") means an empty payload.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    if code == 1005 {
        return Vec::new();
    }
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

/// XORs `buf` with the 4-byte masking key (RFC 6455 5.3), eight bytes at a time.
pub(crate) fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().unwrap()) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_with(bytes: &[u8], max: usize, server: bool) -> FrameReader {
        let mut r = FrameReader::new(max, server);
        r.buf.extend_from_slice(bytes);
        r
    }

    fn data(payload: &[u8], text: bool) -> Incoming {
        Incoming::Data {
            data: Bytes::copy_from_slice(payload),
            text,
        }
    }

    #[test]
    fn round_trips_every_length_class_masked_and_not() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for server_reads in [true, false] {
                let mut wire = Vec::new();
                let mut masker = Masker::new();
                encode(
                    &mut wire,
                    OP_BINARY,
                    &payload,
                    server_reads.then_some(&mut masker),
                );
                let mut r = reader_with(&wire, 1 << 20, server_reads);
                assert_eq!(r.parse().unwrap(), Some(data(&payload, false)), "len {len}");
                assert!(r.buf.is_empty());
            }
        }
    }

    #[test]
    fn waits_for_the_whole_frame_and_says_how_much() {
        let mut wire = Vec::new();
        encode(&mut wire, OP_TEXT, "héllo".repeat(100).as_bytes(), None);
        let mut r = reader_with(&wire[..3], 1 << 20, false);
        assert_eq!(r.parse().unwrap(), None);
        r.buf.extend_from_slice(&wire[3..10]);
        assert_eq!(r.parse().unwrap(), None);
        assert_eq!(r.want, wire.len());
        r.buf.extend_from_slice(&wire[10..]);
        assert_eq!(
            r.parse().unwrap(),
            Some(data("héllo".repeat(100).as_bytes(), true))
        );
    }

    #[test]
    fn reassembles_fragments_around_a_ping() {
        // "Hel" (text, not final), ping, "lo" (continuation, final): RFC 6455 5.4.
        let wire = [
            0x01, 0x03, b'H', b'e', b'l', 0x89, 0x01, b'p', 0x80, 0x02, b'l', b'o',
        ];
        let mut r = reader_with(&wire, 100, false);
        assert_eq!(
            r.parse().unwrap(),
            Some(Incoming::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(r.parse().unwrap(), Some(data(b"Hello", true)));
    }

    #[test]
    fn rejects_what_the_rfc_forbids() {
        let protocol = |wire: &[u8], server: bool| {
            matches!(
                reader_with(wire, 100, server).parse(),
                Err(FrameError::Protocol(_))
            )
        };
        assert!(protocol(&[0xC2, 0x00], false), "RSV1 without extension");
        assert!(protocol(&[0x83, 0x00], false), "reserved opcode");
        assert!(protocol(&[0x09, 0x00], false), "fragmented ping");
        assert!(protocol(&[0x89, 126, 0, 126], false), "126-byte ping");
        assert!(protocol(&[0x80, 0x00], false), "continuation first");
        assert!(
            protocol(&[0x01, 0x00, 0x81, 0x00], false),
            "text inside text"
        );
        assert!(protocol(&[0x82, 0x00], true), "unmasked to a server");
        assert!(
            protocol(&[0x82, 0x80, 1, 2, 3, 4], false),
            "masked to a client"
        );
        assert!(protocol(&[0x88, 0x01, 3], false), "1-byte close payload");
        assert!(
            protocol(&[0x88, 0x02, 0x03, 0xED], false),
            "close code 1005"
        );
        assert!(matches!(
            reader_with(&[0x81, 0x02, 0xC3, 0x28], 100, false).parse(),
            Err(FrameError::Utf8)
        ));
        // Over the limit as soon as the header says so, before the payload arrives.
        assert!(matches!(
            reader_with(&[0x82, 126, 0x01, 0x00], 100, false).parse(),
            Err(FrameError::TooBig {
                size: 256,
                max: 100
            })
        ));
        // Fragments count together.
        let mut wire = vec![0x02, 60];
        wire.extend_from_slice(&[0; 60]);
        wire.extend_from_slice(&[0x80, 60]);
        assert!(matches!(
            reader_with(&wire, 100, false).parse(),
            Err(FrameError::TooBig {
                size: 120,
                max: 100
            })
        ));
        // A continuation claiming 2^64 - 1 bytes after a fragment: too big, not an overflow.
        let mut wire = vec![0x02, 3, 1, 2, 3, 0x80, 127];
        wire.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            reader_with(&wire, 100, false).parse(),
            Err(FrameError::TooBig {
                size: u64::MAX,
                max: 100
            })
        ));
    }

    #[test]
    fn invalid_utf8_fails_at_its_fragment() {
        // "κ" split across fragments is fine; a byte that can never be UTF-8 fails before FIN.
        let split = [0x01, 0x01, 0xCE, 0x80, 0x01, 0xBA];
        assert_eq!(
            reader_with(&split, 100, false).parse().unwrap(),
            Some(data("κ".as_bytes(), true))
        );
        let bad = [0x01, 0x01, b'a', 0x00, 0x01, 0xFF];
        assert!(matches!(
            reader_with(&bad, 100, false).parse(),
            Err(FrameError::Utf8)
        ));
    }

    #[test]
    fn close_frames() {
        let mut wire = Vec::new();
        encode(&mut wire, OP_CLOSE, &close_payload(4000, "bye"), None);
        encode(&mut wire, OP_CLOSE, &[], None);
        let mut r = reader_with(&wire, 100, false);
        assert_eq!(
            r.parse().unwrap(),
            Some(Incoming::Close(Some((4000, "bye".into()))))
        );
        assert_eq!(r.parse().unwrap(), Some(Incoming::Close(None)));
        let long = "é".repeat(100);
        let p = close_payload(1000, &long);
        assert!(p.len() <= 125 && std::str::from_utf8(&p[2..]).is_ok());
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer_and_a_stream_is_read_a_frame_at_a_time() {
        use futures_util::FutureExt;
        use tokio::io::AsyncWriteExt;
        let (mut peer, mut ours) = tokio::io::duplex(1 << 20);
        let mut r = FrameReader::new(1 << 20, false);
        let mut wire = Vec::new();
        encode(&mut wire, OP_BINARY, &[7; 300], None);
        peer.write_all(&wire).await.unwrap();
        assert_eq!(
            r.next(&mut ours).await.unwrap(),
            Some(data(&[7; 300], false))
        );
        // Nothing more to read: waiting costs no buffer (the payload went out with its own).
        assert!(r.next(&mut ours).now_or_never().is_none());
        assert_eq!(r.buf.capacity(), 0);
        // A burst of 16 KiB frames: after the first, each read asks for a whole frame.
        wire.clear();
        for _ in 0..4 {
            encode(&mut wire, OP_BINARY, &[1; 16384], None);
        }
        peer.write_all(&wire).await.unwrap();
        for _ in 0..4 {
            assert_eq!(
                r.next(&mut ours).await.unwrap(),
                Some(data(&[1; 16384], false))
            );
        }
        assert_eq!(r.last_frame, 16384 + 4);
    }

    #[tokio::test]
    async fn a_large_frame_header_alone_does_not_allocate_the_whole_frame() {
        use futures_util::FutureExt;
        use tokio::io::AsyncWriteExt;
        let (mut peer, mut ours) = tokio::io::duplex(1 << 16);
        let mut r = FrameReader::new(8 << 20, false);
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(4u64 << 20).to_be_bytes());
        peer.write_all(&header).await.unwrap();
        assert!(r.next(&mut ours).now_or_never().is_none());
        assert_eq!(r.want, 10 + (4 << 20));
        assert!(r.buf.capacity() <= 2 * MAX_READ, "{}", r.buf.capacity());
    }

    #[test]
    fn masking_keys_differ_from_frame_to_frame() {
        let mut masker = Masker::new();
        let mut keys = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut wire = Vec::new();
            encode(&mut wire, OP_PING, &[], Some(&mut masker));
            assert_eq!(wire.len(), 6);
            keys.insert([wire[2], wire[3], wire[4], wire[5]]);
        }
        assert!(
            keys.len() >= 999,
            "{} distinct keys in 1000 frames",
            keys.len()
        );
    }

    #[test]
    fn mask_matches_the_bytewise_definition() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 3, 8, 13, 64, 1001] {
            let orig: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut fast = orig.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}
