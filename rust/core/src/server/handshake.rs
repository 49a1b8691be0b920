//! The server's side of one connection's handshake, step by step: the PROXY protocol header
//! (`server::proxy_header`), TLS, the request
//! (`http`), the game's answer (`admission`), tungstenite's upgrade with the sub-protocol
//! choice, and Godot's id greeting. `serve` runs it within `handshake_timeout`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Sender;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, StatusCode};

use super::{health, lock, metrics_path, new_id, proxy_header, Shared};
use crate::admission::{Admission, AdmissionTicket};
use crate::config::{Compression, PeerConfig};
use crate::connection::ConnectionInfo;
use crate::events::Event;
use crate::fence::HeadFence;
use crate::frame;
use crate::http::{self, UpgradeRequest};
use crate::metrics::Metrics;
use crate::protocol::extension::{self, Agreed};
use crate::proxy::client_address;
use crate::tls::MaybeTls;

/// A connection whose handshake is done: the stream (frames from here on), its id, what
/// `get_peer()` reports.
pub(super) struct Handshaken {
    pub(super) stream: HeadFence<MaybeTls>,
    pub(super) id: i32,
    pub(super) info: ConnectionInfo,
}

/// The PROXY header (behind a TCP balancer), TLS (for `wss://`), the request, the game's
/// answer (with a handshake handler), the upgrade and Godot's id greeting, all by `deadline`.
/// `None`: the connection is dropped (an HTTP answer already sent where there is one).
/// `tls_done` is set once TLS is up: a timeout before that is a TLS handshake's.
pub(super) async fn handshake(
    mut stream: TcpStream,
    remote: SocketAddr,
    shared: &Arc<Shared>,
    deadline: Instant,
    tls_done: &mut bool,
) -> Option<Handshaken> {
    let remote = proxy_header::client_of(&mut stream, remote, shared, deadline).await?;
    let mut stream = match &shared.tls {
        Some(tls) => match tls.accept(stream).await {
            Ok(stream) => {
                *tls_done = true;
                stream
            }
            Err(cause) => {
                shared.metrics.count_tls_failure(cause);
                return None;
            }
        },
        None => MaybeTls::Plain(stream),
    };
    let (head, request) = read_request(&mut stream, remote, shared).await?;
    let client = request.remote;
    // With a handshake handler, the game sees the request before the upgrade.
    if shared.ask.load(Ordering::Acquire)
        && ask_the_game(&mut stream, request, &shared.events)
            .await
            .is_none()
    {
        Metrics::count(&shared.metrics.rejected);
        return None;
    }
    // tungstenite reads the head again from here, and nothing past it.
    let (stream, protocol, requested_url, deflate) = upgrade(
        HeadFence::new(head, stream),
        shared.tls.is_some(),
        &shared.config,
    )
    .await
    .or_else(|| {
        Metrics::count(&shared.metrics.handshake_failures);
        None
    })?;
    if shared.refusing.load(Ordering::Acquire) {
        Metrics::count(&shared.metrics.refused);
        return None;
    }
    let Some((stream, id)) = greet(stream, shared).await else {
        Metrics::count(&shared.metrics.handshake_failures);
        return None;
    };
    let info = ConnectionInfo {
        remote: client,
        protocol,
        requested_url,
        extensions: deflate.as_ref().map(|d| d.1.clone()).unwrap_or_default(),
        deflate: deflate.map(|(agreed, _, ours)| (agreed, ours)),
    };
    Some(Handshaken { stream, id, info })
}

/// Reads the request head (bounded: tungstenite's own reader has no size cap) and parses it
/// once; the health path (answered here), the upgrade checks, the client's address (`remote`, the TCP peer or the client its
/// PROXY header names, or what a trusted proxy's `X-Forwarded-For` says it is, with
/// `X-Forwarded-Port` when `forwarded_port` is on) and the handshake handler all read that parse. Returns every byte read (for
/// tungstenite) and the request, or answers 400 / 426 / 431 and returns `None`.
pub(crate) async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    remote: SocketAddr,
    shared: &Shared,
) -> Option<(Vec<u8>, UpgradeRequest)> {
    let head = match http::read_head(stream).await {
        Ok(head) => head,
        Err(http::HeadError::TooLarge) => {
            Metrics::count(&shared.metrics.handshake_failures);
            http::write_rejection(stream, 431, "Request Header Fields Too Large").await;
            return None;
        }
        Err(http::HeadError::Malformed) => {
            Metrics::count(&shared.metrics.handshake_failures);
            http::write_rejection(stream, 400, "Bad Request").await;
            return None;
        }
        Err(http::HeadError::Closed) => return None,
    };
    let Ok(mut request) = http::parse_head(&head, remote) else {
        Metrics::count(&shared.metrics.handshake_failures);
        http::write_rejection(stream, 400, "Bad Request").await;
        return None;
    };
    let head_only = request.method == "HEAD";
    if let Some((status, reason, body)) = health::answer(&request, remote.ip(), shared) {
        http::write_text(stream, (status, reason, None), body, head_only).await;
        return None;
    }
    if let Some((status, reason, body)) = metrics_path::answer(&request, remote.ip(), shared) {
        let version = (status == 200).then_some("0.0.4");
        http::write_text(stream, (status, reason, version), &body, head_only).await;
        return None;
    }
    // Refusing, yet accepted because a health path is served: the client fails fast.
    if shared.refusing.load(Ordering::Acquire) {
        Metrics::count(&shared.metrics.refused);
        http::write_rejection(stream, 503, "Service Unavailable").await;
        return None;
    }
    if let Err((status, reason, extra)) = http::check_upgrade(&request) {
        Metrics::count(&shared.metrics.handshake_failures);
        http::write_response(stream, status, reason, extra).await;
        return None;
    }
    let forwarded: Vec<&str> = request.header_values("x-forwarded-for").collect();
    // Opt-in: most balancers send the port the client reached them on, not the client's.
    let ports: Vec<&str> = if shared.config.forwarded_port {
        request.header_values("x-forwarded-port").collect()
    } else {
        Vec::new()
    };
    let (client, warning) =
        client_address(remote, &forwarded, &ports, &shared.config.trusted_proxies);
    if let Some(message) = warning {
        let _ = shared.events.send(Event::Warning { message });
    }
    request.remote = client;
    Some((head, request))
}

/// Sends the request to the main thread's handshake handler and waits for its answer;
/// `None` once a refusal was answered (its status, or 503 for a ticket dropped unanswered).
async fn ask_the_game(
    stream: &mut MaybeTls,
    request: UpgradeRequest,
    events: &Sender<Event>,
) -> Option<()> {
    let (ticket, answer) = AdmissionTicket::new();
    let request = Box::new(request);
    events.send(Event::Admission { request, ticket }).ok()?;
    match answer.await {
        Ok(Admission::Accept) => Some(()),
        Ok(Admission::Reject { status, reason }) => {
            http::write_rejection(stream, status, &reason).await;
            None
        }
        Err(_) => {
            http::write_rejection(stream, 503, "Service Unavailable").await;
            None
        }
    }
}

/// What permessage-deflate negotiation settled: the parameters, the answer header, and this
/// side's settings.
type Deflate = (Agreed, String, Compression);

/// tungstenite's upgrade: the sub-protocol choice (400 when none matches), permessage-deflate
/// (when compression is on and the client offers it) and the extra response headers. Returns
/// the stream to read frames from, the protocol chosen, the URL the client asked for
/// (`ws[s]://` + Host + path) and the compression agreed. Generic over the stream so the fuzz
/// targets drive it with scripted bytes.
pub(crate) async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: HeadFence<S>,
    secure: bool,
    config: &PeerConfig,
) -> Option<(HeadFence<S>, String, String, Option<Deflate>)> {
    let scheme = if secure { "wss" } else { "ws" };
    let mut selected = None;
    let mut deflate = None;
    let mut requested_url = String::new();
    // tungstenite fixes the callback's signature, large error type included.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| {
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        requested_url = format!("{scheme}://{host}{}", req.uri());
        let offered: Vec<String> = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let chosen = choose_protocol(&offered, &config.supported_protocols).map_err(|()| {
            reject(
                StatusCode::BAD_REQUEST,
                "no matching WebSocket sub-protocol",
            )
        })?;
        // A line that is not visible ASCII makes the offers malformed, as a bad token does:
        // compression is declined (plain frames), not taken from the other lines.
        let offers: Option<Vec<&str>> = req
            .headers()
            .get_all("sec-websocket-extensions")
            .iter()
            .map(|v| v.to_str().ok())
            .collect();
        let accepted = config.compression.zip(offers).and_then(|(ours, offers)| {
            extension::server_accept(&offers, &ours).map(|(a, s)| (a, s, ours))
        });
        let headers = resp.headers_mut();
        if let Some(p) = &chosen {
            if let Ok(v) = HeaderValue::from_str(p) {
                headers.insert("sec-websocket-protocol", v);
            }
        }
        if let Some((_, answer, _)) = &accepted {
            if let Ok(v) = HeaderValue::from_str(answer) {
                headers.insert("sec-websocket-extensions", v);
            }
        }
        deflate = accepted;
        for (name, value) in &config.handshake_headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
        selected = chosen;
        Ok(resp)
    };
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config.ws_config()))
            .await
            .ok()?;
    // From here on the frames are ours (see `frame`).
    let stream = ws.get_mut().open();
    drop(ws);
    Some((stream, selected.unwrap_or_default(), requested_url, deflate))
}

/// A new id for the connection and, in Godot's protocol, the 4-byte greeting that tells the
/// client its id.
async fn greet(
    mut stream: HeadFence<MaybeTls>,
    shared: &Shared,
) -> Option<(HeadFence<MaybeTls>, i32)> {
    let id = new_id(&shared.ids);
    if shared.config.godot_protocol {
        let mut greeting = Vec::with_capacity(6);
        frame::encode(&mut greeting, frame::OP_BINARY, &id.to_le_bytes(), None);
        let sent = async {
            stream.write_all(&greeting).await?;
            stream.flush().await
        };
        if sent.await.is_err() {
            lock(&shared.ids).remove(&id);
            return None;
        }
    }
    Some((stream, id))
}

/// Chooses the sub-protocol: the first one the client offers that the server supports.
/// `Err` when either side has protocols and there is no match.
fn choose_protocol(offered: &[String], supported: &[String]) -> Result<Option<String>, ()> {
    if offered.is_empty() && supported.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find(|p| supported.contains(p))
        .cloned()
        .map(Some)
        .ok_or(())
}

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(why.to_string()));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_choice() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(choose_protocol(&[], &[]), Ok(None));
        assert_eq!(choose_protocol(&s(&["a"]), &[]), Err(()));
        assert_eq!(choose_protocol(&[], &s(&["a"])), Err(()));
        assert_eq!(
            choose_protocol(&s(&["b", "a"]), &s(&["a", "b"])),
            Ok(Some("b".into()))
        );
        assert_eq!(choose_protocol(&s(&["x"]), &s(&["a"])), Err(()));
    }
}
