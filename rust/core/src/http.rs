//! The HTTP side of a server's WebSocket upgrade (RFC 6455 §4.2): the request head read with a
//! bound, parsed once into the `UpgradeRequest` that the upgrade checks, the proxy rules and the
//! game's handshake handler all read, and the bodiless HTTP answers of a refused upgrade.
//! tungstenite still answers the accepted upgrade with its 101 (it reads the same head again,
//! through `fence::HeadFence`).

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest HTTP head accepted (request line or status line, and headers): a client's upgrade
/// request here, a server's 101 response in `fence`.
pub const MAX_HEAD: usize = 16 * 1024;

/// A pending connection's HTTP request, parsed once: the upgrade checks, the proxy rules and
/// the game's handshake handler (`admission`) all read this value.
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    /// `GET` for a WebSocket upgrade.
    pub method: String,
    /// HTTP minor version (1 for HTTP/1.1).
    pub version: u8,
    /// Path without the query, e.g. `/game`.
    pub path: String,
    /// Query string without `?`, e.g. `token=abc`.
    pub query: String,
    /// Header names lowercased, in request order; values decoded lossily (bytes that are not
    /// UTF-8 become U+FFFD), the same for every reader.
    pub headers: Vec<(String, String)>,
    /// The client: the TCP peer, or what a trusted proxy says (see `proxy`).
    pub remote: SocketAddr,
}

impl UpgradeRequest {
    /// Every value of header `name` (lowercase), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The standard reason phrase for an HTTP status (`401` → `Unauthorized`).
pub fn reason_phrase(status: u16) -> &'static str {
    tokio_tungstenite::tungstenite::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Rejected")
}

/// Why the request head could not be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    TooLarge,
    Malformed,
    Closed,
}

/// Reads until the end of the HTTP request head (`\r\n\r\n`). Returns every byte read (the
/// head, and anything after it) for replay.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        // Straight into the buffer's spare room: no stack chunk held across the await.
        let before = buf.len();
        buf.reserve(2048);
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        if buf.len() <= MAX_HEAD && before > 16 && !buf[before..].contains(&b'\n') {
            continue; // Nothing new to judge: parse at line ends only (bounded work).
        }
        // Parse what is there so far: bytes that are not HTTP (garbage, a TLS ClientHello on
        // a plain server) fail at once instead of waiting out the handshake timeout. At most
        // ~96 line ends are parsed before the header limit ends it, whatever the sender does.
        let mut headers = [httparse::EMPTY_HEADER; 96];
        match httparse::Request::new(&mut headers).parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => return Ok(buf),
            Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::TooLarge)
            }
            Err(_) => return Err(HeadError::Malformed),
        }
    }
}

/// Parses the request line and headers of `head`.
pub(crate) fn parse_head(head: &[u8], remote: SocketAddr) -> Result<UpgradeRequest, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge)
        }
        Err(_) => return Err(HeadError::Malformed),
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(UpgradeRequest {
        method: req.method.unwrap_or_default().to_string(),
        version: req.version.unwrap_or(0),
        path: path.to_string(),
        query: query.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        remote,
    })
}

/// An upgrade request that is not a WebSocket handshake: the HTTP answer RFC 6455 §4.2.2 asks
/// for (400, or 426 with the version we speak), instead of a silently closed socket.
pub(crate) fn check_upgrade(req: &UpgradeRequest) -> Result<(), (u16, &'static str, &'static str)> {
    let value = |name: &str| {
        req.header_values(name)
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(",")
    };
    let has_token = |name: &str, token: &str| value(name).split(',').any(|t| t.trim() == token);
    if req.method != "GET"
        || req.version != 1
        || !has_token("upgrade", "websocket")
        || !has_token("connection", "upgrade")
        || value("sec-websocket-key").trim().is_empty()
    {
        return Err((400, "Bad Request", ""));
    }
    if value("sec-websocket-version").trim() != "13" {
        return Err((426, "Upgrade Required", "Sec-WebSocket-Version: 13\r\n"));
    }
    Ok(())
}

/// Answers a refused upgrade with a bodiless HTTP response.
pub(crate) async fn write_rejection<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    reason: &str,
) {
    write_response(stream, status, reason, "").await;
}

/// [`write_rejection`] with extra header lines (each ending in `\r\n`).
pub(crate) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    reason: &str,
    extra_headers: &str,
) {
    // Keep the reason on one line: it goes into the status line.
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A small plain-text answer (the health and metrics paths'), then the connection is closed.
/// `head_only`: the answer to a `HEAD` request, without the body. `version`: the text format's
/// version in the content type (Prometheus reads it), if any.
pub(crate) async fn write_text<S: AsyncWrite + Unpin>(
    stream: &mut S,
    (status, reason, version): (u16, &str, Option<&str>),
    body: &str,
    head_only: bool,
) {
    let version = version.map_or(String::new(), |v| format!("version={v}; "));
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; {version}charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_query_and_headers() {
        let head =
            b"GET /game?token=abc&x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\r\n";
        let req = parse_head(head, "127.0.0.1:5".parse().unwrap()).unwrap();
        assert_eq!(req.path, "/game");
        assert_eq!(req.query, "token=abc&x=1");
        assert_eq!(req.headers[1], ("authorization".into(), "Bearer t".into()));
        assert_eq!(
            parse_head(b"\x00\x01garbage\r\n\r\n", req.remote).unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn upgrade_checks() {
        let ok = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let check =
            |head: &[u8]| check_upgrade(&parse_head(head, "127.0.0.1:5".parse().unwrap()).unwrap());
        assert_eq!(check(ok), Ok(()));
        let text = String::from_utf8_lossy(ok);
        let status = |t: String| check(t.as_bytes()).unwrap_err().0;
        assert_eq!(status(text.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(status(text.replace("GET", "POST")), 400);
        assert_eq!(status(text.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(
            status(text.replace("Upgrade: websocket", "Upgrade: h2c")),
            400
        );
        assert_eq!(
            status(text.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            400
        );
    }
}
