//! The connecting side: DNS, TCP, WebSocket upgrade and the server's 4-byte id message,
//! all bounded by `handshake_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::Sender;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use crate::config::PeerConfig;
use crate::connection::{Connection, ConnectionInfo};
use crate::driver;
use crate::events::Event;
use crate::fence::HeadFence;
use crate::protocol::decode::{Decoder, Incoming};
use crate::protocol::deflate;
use crate::protocol::extension::{self, Agreed};
use crate::runtime::spawn_guarded;
use crate::tls::{ClientTls, MaybeTls};
use crate::url::WsUrl;

/// A connection attempt, then the connection. [`Client::close`] drops it at once.
pub struct Client {
    cancel: CancellationToken,
}

impl Client {
    /// Starts connecting on `rt`. Progress arrives as [`Event::Connected`] (with our id) or
    /// [`Event::ConnectFailed`], then packets and [`Event::Disconnected`] for peer 1.
    /// `tls` is used for a `wss://` URL (`None`: Mozilla's roots and the URL's host) and
    /// ignored for `ws://`.
    pub fn connect(
        rt: &Handle,
        url: WsUrl,
        config: PeerConfig,
        events: Sender<Event>,
        tls: Option<ClientTls>,
    ) -> Client {
        let cancel = CancellationToken::new();
        let task_cancel = cancel.clone();
        let _guard = rt.enter();
        spawn_guarded(events.clone(), Some(1), async move {
            tokio::select! {
                _ = task_cancel.cancelled() => {}
                _ = run(url, config, events, tls, task_cancel.clone()) => {}
            }
        });
        Client { cancel }
    }

    /// Drops the connection (or attempt) without a close frame or further events.
    pub fn close(self) {
        self.cancel.cancel();
    }
}

async fn run(
    url: WsUrl,
    config: PeerConfig,
    events: Sender<Event>,
    tls: Option<ClientTls>,
    cancel: CancellationToken,
) {
    let attempt = tokio::time::timeout(config.handshake_timeout, handshake(&url, &config, tls));
    let (stream, reader, remote, protocol, deflate, id) = match attempt.await {
        Ok(Ok(done)) => done,
        Ok(Err(reason)) => {
            let _ = events.send(Event::ConnectFailed {
                reason: format!("{url}: {reason}"),
            });
            return;
        }
        Err(_) => {
            let _ = events.send(Event::ConnectFailed {
                reason: format!(
                    "{url}: handshake timed out after {:.1} s",
                    config.handshake_timeout.as_secs_f64()
                ),
            });
            return;
        }
    };
    let info = ConnectionInfo {
        remote,
        protocol,
        requested_url: url.original.clone(),
        extensions: deflate.as_ref().map(|d| d.1.clone()).unwrap_or_default(),
        deflate: deflate.map(|(agreed, _)| (agreed, config.compression.unwrap_or_default())),
    };
    let (conn, outbound) = Connection::new(1, info, &config, cancel);
    let connected = Event::Connected {
        conn: Arc::clone(&conn),
        id,
    };
    if events.send(connected).is_ok() {
        driver::run(conn, stream, reader, outbound, events).await;
    }
}

/// A finished client handshake: the stream, its decoder (which read the id), the server's
/// address, the sub-protocol, permessage-deflate's agreed parameters and the answer header
/// when agreed, and our id.
type Handshaken = (
    HeadFence<MaybeTls>,
    Decoder,
    SocketAddr,
    String,
    Option<(Agreed, String)>,
    i32,
);

async fn handshake(
    url: &WsUrl,
    config: &PeerConfig,
    tls: Option<ClientTls>,
) -> Result<Handshaken, String> {
    let stream = connect_tcp(url).await?;
    let remote = stream.peer_addr().map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let stream = match (url.secure, tls) {
        (false, _) => MaybeTls::Plain(stream),
        (true, Some(tls)) => tls.connect(&url.host, stream).await?,
        (true, None) => ClientTls::platform()?.connect(&url.host, stream).await?,
    };
    let (stream, reader, protocol, deflate, id) = upgrade(stream, url, config).await?;
    Ok((stream, reader, remote, protocol, deflate, id))
}

/// The upgrade on a connected stream: the request, tungstenite's check of the server's 101,
/// the sub-protocol, and in Godot's protocol the server's id message. Generic over the stream
/// so the fuzz targets drive it with scripted bytes.
pub(crate) async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &WsUrl,
    config: &PeerConfig,
) -> Result<(HeadFence<S>, Decoder, String, Option<(Agreed, String)>, i32), String> {
    let mut request = url
        .to_string()
        .into_client_request()
        .map_err(|e| format!("invalid request: {e}"))?;
    let headers = request.headers_mut();
    if !config.supported_protocols.is_empty() {
        let list = config.supported_protocols.join(", ");
        let value = HeaderValue::from_str(&list)
            .map_err(|_| format!("invalid sub-protocol list '{list}'"))?;
        headers.insert("sec-websocket-protocol", value);
    }
    if let Some(ours) = &config.compression {
        let offer = HeaderValue::from_str(&extension::client_offer(ours))
            .map_err(|_| "invalid extension offer".to_string())?;
        headers.insert("sec-websocket-extensions", offer);
    }
    for (name, value) in &config.handshake_headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name '{name}'"))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header '{name}'"))?;
        headers.append(n, v);
    }
    let stream = HeadFence::new(Vec::new(), stream);
    let (mut ws, response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config.ws_config()))
            .await
            .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    // From here on the frames are ours (see `frame`); the fence kept what followed the head.
    let mut stream = ws.get_mut().open();
    drop(ws);
    let mut reader = Decoder::new(config.max_message(), false);
    // A line that is not visible ASCII is malformed like any other bad answer: dropping it
    // would leave the server compressing and the connection failing at its first RSV1 frame.
    let mut answers: Vec<&str> = Vec::new();
    for value in response.headers().get_all("sec-websocket-extensions") {
        answers.push(value.to_str().map_err(|_| {
            format!(
                "malformed Sec-WebSocket-Extensions in the server's answer (not visible ASCII): {}",
                value.as_bytes().escape_ascii()
            )
        })?);
    }
    let agreed = extension::client_accept(&answers, config.compression.as_ref())?;
    let deflate = agreed.map(|a| (a, answers.join(", ")));
    if let (Some(agreed), Some(ours)) = (&agreed, &config.compression) {
        reader.inflate_with(deflate::for_connection(agreed, ours, false).1);
    }
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !config.supported_protocols.is_empty() && protocol.is_empty() {
        return Err("the server accepted none of the supported_protocols".into());
    }
    if !config.godot_protocol {
        // A plain WebSocket server assigns no id: pick our own, as Godot ids are (2..2^31).
        let id = fastrand::i32(2..=i32::MAX);
        return Ok((stream, reader, protocol, deflate, id));
    }
    // Godot's protocol: the first message is our id, 4 bytes little-endian, >= 2.
    let id = loop {
        match driver::next_frame(&mut stream, &mut reader).await {
            Ok(Some(Incoming::Data { data: b, .. })) if b.len() == 4 => {
                let id = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if id < 2 {
                    return Err(format!("the server sent an invalid peer id {id}"));
                }
                break id;
            }
            Ok(Some(Incoming::Ping(_) | Incoming::Pong(_))) => continue,
            Ok(Some(Incoming::Close(frame))) => {
                return Err(format!("the server closed the connection ({frame:?})"))
            }
            Ok(Some(Incoming::Data { .. })) => {
                return Err("the server's first message is not a 4-byte peer id".into())
            }
            Err(e) => return Err(format!("connection error: {e}")),
            Ok(None) => return Err("the server closed the connection".into()),
        }
    };
    Ok((stream, reader, protocol, deflate, id))
}

async fn connect_tcp(url: &WsUrl) -> Result<TcpStream, String> {
    let addrs = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("could not resolve host '{}': {e}", url.host))?;
    let mut last = format!("no address found for host '{}'", url.host);
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("could not connect to {addr}: {e}"),
        }
    }
    Err(last)
}
