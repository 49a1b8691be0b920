//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a TCP load balancer
//! (HAProxy `send-proxy[-v2]`, AWS NLB, nginx stream `proxy_protocol on`) writes before the
//! client's bytes, saying who the client is. Parsed here as pure code on byte slices
//! ([`parse`]); [`read`] takes exactly the header off a TCP stream, before TLS and HTTP.
//!
//! Written here rather than taken from a crate (`ppp` was weighed): the format is two short,
//! fixed layouts; the server needs to consume exactly the header and nothing after it (what
//! follows is a TLS ClientHello or an HTTP head read by other code), with its own bounds and
//! error messages, and the rest of the crate (TLVs, builders) would go unused.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 header's first 12 bytes.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header starts with this.
const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 header is at most 107 bytes, `\r\n` included (the spec's bound).
pub const V1_MAX: usize = 107;
/// The largest v2 header accepted, the 16 fixed bytes included: addresses take at most 216
/// bytes, the rest leaves room for the TLVs balancers add (AWS NLB's endpoint id, SSL info).
pub const V2_MAX: usize = 16 + 2048;

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes the header takes on the wire.
    pub len: usize,
    /// 1 or 2.
    pub version: u8,
    /// The client as the balancer saw it; `None` for v2 `LOCAL` (the balancer's own
    /// connection, e.g. a health check), v1 `UNKNOWN` and address families without an IP
    /// (then the TCP peer's address stands).
    pub source: Option<SocketAddr>,
}

/// Why bytes are not a usable PROXY header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// More bytes are needed (every byte so far belongs to the header).
    Incomplete,
    /// The bytes do not start with a PROXY header at all.
    Missing,
    /// Longer than [`V1_MAX`] / [`V2_MAX`].
    TooLong,
    /// A header, but not a valid one: says what is wrong.
    Malformed(&'static str),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Incomplete => write!(f, "truncated PROXY protocol header"),
            ProxyError::Missing => write!(f, "no PROXY protocol header"),
            ProxyError::TooLong => write!(
                f,
                "PROXY protocol header too long (v1: {V1_MAX} bytes, v2: {V2_MAX} at most)"
            ),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
        }
    }
}

/// Whether `bytes` start like a PROXY header (v1 or v2), as far as they go: to tell a client
/// that sent one where none is expected.
pub fn looks_like_header(bytes: &[u8]) -> bool {
    let starts = |sig: &[u8]| {
        let n = bytes.len().min(sig.len());
        n > 0 && bytes[..n] == sig[..n]
    };
    starts(V1_PREFIX) || starts(V2_SIGNATURE)
}

/// Parses the header at the start of `bytes`. [`ProxyError::Incomplete`] only while every byte
/// given can still be the start of a valid header, so a caller may consume them all.
pub fn parse(bytes: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let prefix_of = |sig: &[u8]| bytes.len() < sig.len() && sig.starts_with(bytes);
    if bytes.starts_with(V2_SIGNATURE) {
        parse_v2(bytes)
    } else if bytes.starts_with(V1_PREFIX) {
        parse_v1(bytes)
    } else if prefix_of(V2_SIGNATURE) || prefix_of(V1_PREFIX) {
        Err(ProxyError::Incomplete)
    } else {
        Err(ProxyError::Missing)
    }
}

fn parse_v1(bytes: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return Err(if bytes.len() >= V1_MAX {
            ProxyError::TooLong
        } else {
            ProxyError::Incomplete
        });
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(ProxyError::Malformed("v1 line does not end with CRLF"));
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..lf - 1])
        .map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let len = lf + 1;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // The spec: the rest of the line is to be ignored.
        return Ok(ProxyHeader {
            len,
            version: 1,
            source: None,
        });
    }
    let (src, dst, sport, dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err(ProxyError::Malformed("v1 needs 5 fields after PROXY")),
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let parsed = match family {
            "TCP4" => s.parse::<Ipv4Addr>().map(IpAddr::V4),
            "TCP6" => s.parse::<Ipv6Addr>().map(IpAddr::V6),
            _ => {
                return Err(ProxyError::Malformed(
                    "v1 protocol is not TCP4, TCP6 or UNKNOWN",
                ))
            }
        };
        parsed.map_err(|_| ProxyError::Malformed("v1 address does not match its protocol"))
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        let canonical = s == "0" || !s.starts_with('0');
        match s.parse::<u16>() {
            Ok(p) if digits && canonical => Ok(p),
            _ => Err(ProxyError::Malformed("v1 port is not a number in 0-65535")),
        }
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    ip(dst)?;
    port(dport)?;
    Ok(ProxyHeader {
        len,
        version: 1,
        source: Some(source),
    })
}

fn parse_v2(bytes: &[u8]) -> Result<ProxyHeader, ProxyError> {
    if bytes.len() < 16 {
        return match bytes.get(12) {
            Some(b) if b >> 4 != 2 => Err(ProxyError::Malformed("v2 version is not 2")),
            _ => Err(ProxyError::Incomplete),
        };
    }
    let (ver_cmd, fam, body_len) = (
        bytes[12],
        bytes[13],
        usize::from(u16::from_be_bytes([bytes[14], bytes[15]])),
    );
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => {
            return Err(ProxyError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ))
        }
    };
    let (family, transport) = (fam >> 4, fam & 0x0F);
    if family > 3 || transport > 2 {
        return Err(ProxyError::Malformed(
            "v2 address family or protocol unknown",
        ));
    }
    let len = 16 + body_len;
    if len > V2_MAX {
        return Err(ProxyError::TooLong);
    }
    if bytes.len() < len {
        return Err(ProxyError::Incomplete);
    }
    let body = &bytes[16..len];
    // Addresses first; TLVs after them are skipped.
    let need = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if body.len() < need {
        return Err(ProxyError::Malformed(
            "v2 length too short for its addresses",
        ));
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let source = match family {
        _ if local || transport == 0 => None,
        1 => {
            let ip: [u8; 4] = body[0..4].try_into().unwrap_or_default();
            Some(SocketAddr::new(IpAddr::from(ip), port(8)))
        }
        2 => {
            let ip: [u8; 16] = body[0..16].try_into().unwrap_or_default();
            let ip = Ipv6Addr::from(ip);
            let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
            Some(SocketAddr::new(ip, port(32)))
        }
        _ => None, // UNSPEC or UNIX: no IP to report.
    };
    Ok(ProxyHeader {
        len,
        version: 2,
        source,
    })
}

/// Takes exactly one PROXY header off `stream` (peeking, so the first byte after it stays for
/// TLS or HTTP). [`ProxyError::Incomplete`] when the stream ends inside the header. Not
/// bounded in time: the caller's handshake timeout is.
pub async fn read(stream: &mut TcpStream) -> Result<ProxyHeader, ReadError> {
    let mut taken: Vec<u8> = Vec::with_capacity(256);
    let mut peeked = vec![0u8; 256];
    loop {
        let n = stream.peek(&mut peeked).await.map_err(ReadError::Io)?;
        if n == 0 && taken.is_empty() {
            return Err(ReadError::Closed);
        }
        if n == 0 {
            return Err(ReadError::Proxy(ProxyError::Incomplete));
        }
        let start = taken.len();
        taken.extend_from_slice(&peeked[..n]);
        match parse(&taken) {
            Ok(header) => {
                // Consume exactly the header's bytes that are still in the socket.
                let rest = header.len - start;
                let mut sink = vec![0u8; rest];
                stream.read_exact(&mut sink).await.map_err(ReadError::Io)?;
                return Ok(header);
            }
            Err(ProxyError::Incomplete) => {
                // Every byte peeked is header: consume them and wait for more.
                let mut sink = vec![0u8; n];
                stream.read_exact(&mut sink).await.map_err(ReadError::Io)?;
                if peeked.len() < V2_MAX {
                    peeked.resize((peeked.len() * 2).min(V2_MAX), 0);
                }
            }
            Err(e) => return Err(ReadError::Proxy(e)),
        }
    }
}

/// Why [`read`] found no header.
#[derive(Debug)]
pub enum ReadError {
    /// The stream ended before its first byte (a balancer's TCP health check does that).
    Closed,
    Proxy(ProxyError),
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => write!(f, "closed before a PROXY protocol header"),
            ReadError::Proxy(e) => e.fmt(f),
            ReadError::Io(e) => write!(f, "reading the PROXY protocol header: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
