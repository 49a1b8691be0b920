//! What the fuzz targets in `fuzz/` drive, compiled only with the `fuzzing` feature: thin
//! handles on the parsers and the protocol state machine the runtime uses (no copies of
//! them), and [`Script`], a stream of given bytes that never blocks, to run the async
//! handshake steps without a socket or a runtime ([`block_on`]).
//!
//! Over 500 lines for one reason: every target's handle is here, next to the others, so the
//! one place the core opens up to the fuzzers can be read (and audited) at once.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::PeerConfig;
use crate::fence::HeadFence;
use crate::protocol::{self as proto, TIMEOUTS};
use crate::protocol::{decode, deflate, extension};
use crate::proxy::TrustedProxy;
use crate::Bytes;

pub use crate::config::Compression;
pub use crate::http::{UpgradeRequest, MAX_HEAD};
pub use crate::protocol::extension::Agreed;

/// Stands for the `Sec-WebSocket-Accept` value in a [`Script`] the client reads: replaced by
/// the one that matches the key in the request the client wrote (which is random).
pub const ACCEPT_MARKER: &[u8] = b"@ACCEPT@";

/// One thing received: a whole message or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Data {
        data: Bytes,
        text: bool,
    },
    Ping(Bytes),
    Pong(Bytes),
    /// The close frame's code and reason, if it had any.
    Close(Option<(u16, String)>),
}

impl From<decode::Incoming> for Incoming {
    fn from(i: decode::Incoming) -> Self {
        match i {
            decode::Incoming::Data { data, text } => Incoming::Data { data, text },
            decode::Incoming::Ping(p) => Incoming::Ping(p),
            decode::Incoming::Pong(p) => Incoming::Pong(p),
            decode::Incoming::Close(c) => Incoming::Close(c),
        }
    }
}

/// Why decoding stopped: the close code the other side gets (1002, 1007 or 1009) and the
/// message the game is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: u16,
    pub message: String,
}

impl From<decode::FrameError> for FrameError {
    fn from(e: decode::FrameError) -> Self {
        FrameError {
            code: e.close().0,
            message: e.to_string(),
        }
    }
}

/// The frame reader (`protocol::decode::Decoder`).
pub struct Decoder(decode::Decoder);

impl Decoder {
    /// `server`: requires masked frames (a server reads a client's).
    pub fn new(max_message: usize, server: bool) -> Self {
        Decoder(decode::Decoder::new(max_message, server))
    }

    /// One socket read as the connection task makes it (its read plan), from a socket that
    /// holds `available`. Returns how many bytes it took.
    pub fn read(&mut self, available: &[u8]) -> usize {
        read_into(&mut self.0, available)
    }

    pub fn parse(&mut self) -> Result<Option<Incoming>, FrameError> {
        self.0
            .parse()
            .map(|i| i.map(Incoming::from))
            .map_err(FrameError::from)
    }

    /// Bytes held: undecoded input and the fragments of a message being assembled.
    pub fn buffered(&self) -> usize {
        self.0.buffered()
    }

    /// permessage-deflate agreed as `agreed`: RSV1 messages are inflated, as the runtime sets
    /// up a reader for this decoder's role.
    pub fn inflate_with(&mut self, agreed: &Agreed, ours: &Compression) {
        let server = self.0.is_server();
        self.0
            .inflate_with(deflate::for_connection(agreed, ours, server).1);
    }
}

/// Largest compressed payload the decoder takes for one message within `max_message`.
pub fn compressed_limit(max_message: usize) -> usize {
    decode::compressed_limit(max_message)
}

/// The largest buffer an inflate on this thread held since the last call.
pub fn take_inflate_peak() -> usize {
    deflate::take_inflate_peak()
}

/// Server: the permessage-deflate offer it accepts among `values` (the request's
/// `Sec-WebSocket-Extensions` lines), with its answer (`extension::server_accept`).
pub fn server_accept(values: &[&str], ours: &Compression) -> Option<(Agreed, String)> {
    extension::server_accept(values, ours)
}

/// Client: the offer it makes (`extension::client_offer`).
pub fn client_offer(ours: &Compression) -> String {
    extension::client_offer(ours)
}

/// Client: what it makes of the server's answer to its offer (`ours`, `None`: none made).
pub fn client_accept(
    values: &[&str],
    ours: Option<&Compression>,
) -> Result<Option<Agreed>, String> {
    extension::client_accept(values, ours)
}

fn read_into(decoder: &mut decode::Decoder, available: &[u8]) -> usize {
    if available.is_empty() {
        return 0;
    }
    let mut socket = Script::new([available.to_vec()]);
    let n = block_on(crate::driver::fill(&mut socket, decoder)).expect("a script never fails");
    assert_eq!(n + socket.unread_len(), available.len());
    n
}

/// What the protocol hands the game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Message { data: Bytes, text: bool },
    CloseRequested { code: i32, reason: String },
    CloseStatus { code: i32, reason: String },
    Rtt(u64),
}

/// How the connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Closed,
    Failed(String),
}

/// One connection's protocol state machine (`protocol::Protocol`), with the runtime's
/// timeouts.
pub struct Protocol(proto::Protocol);

impl Protocol {
    pub fn new(
        server: bool,
        max_message: usize,
        heartbeat: Option<Duration>,
        now: Instant,
    ) -> Self {
        let decoder = decode::Decoder::new(max_message, server);
        Protocol(proto::Protocol::new(decoder, heartbeat, TIMEOUTS, now))
    }

    /// The closing handshake's timeouts: linger, flush limit, a client's grace for the
    /// server's TCP close.
    pub fn timeouts() -> [Duration; 3] {
        [
            TIMEOUTS.linger,
            TIMEOUTS.flush_limit,
            TIMEOUTS.peer_close_grace,
        ]
    }

    /// One socket read as the connection task makes it, from a socket holding `available`.
    pub fn read(&mut self, available: &[u8]) -> usize {
        read_into(self.0.decoder(), available)
    }

    pub fn buffered(&self) -> usize {
        self.0.decoder_ref().buffered()
    }

    /// permessage-deflate agreed as `agreed`, set up as the runtime does for this role: the
    /// game's messages from `ours.threshold` up are compressed, RSV1 messages inflated.
    pub fn deflate_with(&mut self, agreed: &Agreed, ours: &Compression) {
        let server = self.0.decoder_ref().is_server();
        let (deflater, inflater) = deflate::for_connection(agreed, ours, server);
        self.0.deflate_with(deflater);
        self.0.decoder().inflate_with(inflater);
    }

    pub fn wants_read(&self) -> bool {
        self.0.wants_read()
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.0.set_paused(paused)
    }

    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        self.0.poll_output(now).map(|o| match o {
            proto::Output::Message { data, text } => Output::Message { data, text },
            proto::Output::CloseRequested { code, reason } => {
                Output::CloseRequested { code, reason }
            }
            proto::Output::CloseStatus { code, reason } => Output::CloseStatus { code, reason },
            proto::Output::Rtt(us) => Output::Rtt(us),
        })
    }

    pub fn input_ended(&mut self, now: Instant) {
        self.0.input_ended(now)
    }

    pub fn send(&mut self, data: &[u8], text: bool) -> bool {
        self.0.send(data, text)
    }

    pub fn ask_close(&mut self, now: Instant, hurry: bool) {
        self.0.ask_close(now, hurry)
    }

    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        self.0.close(code, reason, now)
    }

    pub fn pending(&self) -> usize {
        self.0.pending()
    }

    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) {
        self.0.poll_transmit(buf)
    }

    pub fn on_written(&mut self, now: Instant) -> bool {
        self.0.on_written(now)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now)
    }

    pub fn closing(&self) -> bool {
        self.0.closing()
    }

    pub fn close_received(&self) -> bool {
        self.0.close_received()
    }

    pub fn failure(&self) -> Option<&str> {
        self.0.failure()
    }

    pub fn end(&self) -> Option<End> {
        self.0.end().map(|e| match e {
            proto::End::Closed => End::Closed,
            proto::End::Failed(r) => End::Failed(r.clone()),
        })
    }
}

/// A close frame's payload as we send it (`frame::close_payload`).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    crate::frame::close_payload(code, reason)
}

/// A received close frame's payload read as the decoder reads it.
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    decode::parse_close(payload).map_err(FrameError::from)
}

/// One whole frame as we send it (`frame::encode`), masked when `masked` (a client's).
pub fn encode_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut masker = masked.then(crate::frame::Masker::new);
    crate::frame::encode(&mut out, opcode, payload, masker.as_mut());
    out
}

/// What a server's handshake made of a request ([`server_handshake`]).
#[derive(Debug)]
pub struct ServerHandshake {
    /// What the server wrote back: our HTTP refusal, or the 101 (empty when tungstenite
    /// refused the upgrade: the stream went with its error).
    pub written: Vec<u8>,
    /// The request as parsed, when it passed the upgrade checks (`remote` after the proxy
    /// rules).
    pub request: Option<UpgradeRequest>,
    /// After tungstenite's upgrade: the sub-protocol chosen, the URL the client asked for,
    /// and every byte after the head that the frame reader gets (the fence's and the
    /// socket's).
    pub upgraded: Option<(String, String, Vec<u8>)>,
}

/// The server's handshake on a plain stream that delivers `reads` one after the other, as
/// `server::handshake` runs it after TLS and without a handshake handler: the bounded head
/// read, the parse, the upgrade checks, the proxy rules, tungstenite's 101 behind the fence.
pub fn server_handshake(
    reads: Vec<Vec<u8>>,
    remote: SocketAddr,
    trusted_proxies: Vec<TrustedProxy>,
    supported_protocols: Vec<String>,
) -> ServerHandshake {
    use crate::server::handshake::{read_request, upgrade};
    let config = PeerConfig {
        trusted_proxies,
        supported_protocols,
        ..PeerConfig::default()
    };
    let (events, _) = crossbeam_channel::unbounded();
    let shared = crate::server::Shared::new(config.clone(), events, None);
    let mut socket = Script::new(reads);
    let Some((head, request)) = block_on(read_request(&mut socket, remote, &shared)) else {
        return ServerHandshake {
            written: socket.written,
            request: None,
            upgraded: None,
        };
    };
    let upgraded = block_on(upgrade(HeadFence::new(head, socket), false, &config));
    let Some((fence, protocol, url, _deflate)) = upgraded else {
        // tungstenite refused; the stream went with it.
        return ServerHandshake {
            written: Vec::new(),
            request: Some(request),
            upgraded: None,
        };
    };
    let (socket, mut rest) = fence.into_parts().expect("the fence was opened");
    rest.extend(socket.unread());
    ServerHandshake {
        written: socket.written,
        request: Some(request),
        upgraded: Some((protocol, url, rest)),
    }
}

/// What a client's handshake made of a server's answer ([`client_handshake`]).
#[derive(Debug)]
pub struct ClientHandshake {
    /// The upgrade request the client wrote.
    pub written: Vec<u8>,
    /// The sub-protocol and our id, or why the connection failed.
    pub result: Result<(String, i32), String>,
}

/// The client's upgrade (`client::upgrade`, after TCP and TLS) against a server that sends
/// `reads` one after the other; [`ACCEPT_MARKER`] in them becomes the matching accept key.
pub fn client_handshake(
    url: &str,
    reads: Vec<Vec<u8>>,
    supported_protocols: Vec<String>,
    godot_protocol: bool,
    compression: Option<Compression>,
) -> Option<ClientHandshake> {
    let url = crate::url::WsUrl::parse(url).ok()?;
    let config = PeerConfig {
        supported_protocols,
        godot_protocol,
        compression,
        ..PeerConfig::default()
    };
    let mut socket = Script::new(reads);
    socket.accept_marker = true;
    let result = block_on(crate::client::upgrade(&mut socket, &url, &config))
        .map(|(_, _, protocol, _, id)| (protocol, id));
    Some(ClientHandshake {
        written: socket.written,
        result,
    })
}

/// The index after the end of an HTTP request head in `bytes` (httparse, 96 headers at
/// most, as the server reads it), if it is complete.
pub fn request_head_len(bytes: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    match httparse::Request::new(&mut headers).parse(bytes) {
        Ok(httparse::Status::Complete(n)) => Some(n),
        _ => None,
    }
}

/// The certificate fields the TLS verifier reads (`tls::x509`), parsed from a DER
/// certificate the peer sent, then every question the verifier asks of them; `None` when it
/// refuses the certificate's structure.
pub fn parse_certificate(der: &[u8]) -> Option<String> {
    use crate::tls::x509::CertInfo;
    let info = CertInfo::parse(der)?;
    let _ = info.allows(0xffff);
    let now = tokio_rustls::rustls::pki_types::UnixTime::now();
    let _ = info.check_validity(now);
    Some(format!("{info:?}"))
}

/// Polls `f` to completion with a waker that does nothing: every stream here is a
/// [`Script`], which never blocks, so the futures finish without a runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a future on a script that never blocks is still pending");
}

/// A socket that delivers given byte strings, one per read at most (a read may take less),
/// then the end of the stream; what is written to it is kept.
#[derive(Debug, Default)]
pub struct Script {
    reads: VecDeque<Vec<u8>>,
    pub written: Vec<u8>,
    /// Replace [`ACCEPT_MARKER`] at the first read (the request is written by then).
    accept_marker: bool,
}

impl Script {
    pub fn new(reads: impl IntoIterator<Item = Vec<u8>>) -> Self {
        Script {
            reads: reads.into_iter().filter(|r| !r.is_empty()).collect(),
            written: Vec::new(),
            accept_marker: false,
        }
    }

    /// What is left to read, in order.
    pub fn unread(&self) -> Vec<u8> {
        self.reads.iter().flatten().copied().collect()
    }

    /// How many bytes are left to read.
    pub fn unread_len(&self) -> usize {
        self.reads.iter().map(Vec::len).sum()
    }

    fn replace_marker(&mut self) {
        self.accept_marker = false;
        let head = String::from_utf8_lossy(&self.written);
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        // Across reads: a marker may be cut between two. Read boundaries inside one move to
        // before its replacement.
        let all: Vec<u8> = self.reads.iter().flatten().copied().collect();
        let mut new_at = vec![0; all.len() + 1];
        let mut out = Vec::with_capacity(all.len());
        let mut i = 0;
        while i < all.len() {
            if all[i..].starts_with(ACCEPT_MARKER) {
                new_at[i..i + ACCEPT_MARKER.len()].fill(out.len());
                out.extend_from_slice(accept.as_bytes());
                i += ACCEPT_MARKER.len();
            } else {
                new_at[i] = out.len();
                out.push(all[i]);
                i += 1;
            }
        }
        new_at[all.len()] = out.len();
        let mut from = 0;
        let mut old_end = 0;
        for read in &mut self.reads {
            old_end += read.len();
            let to = new_at[old_end];
            *read = out[from..to].to_vec();
            from = to;
        }
        self.reads.retain(|r| !r.is_empty());
    }
}

impl AsyncRead for Script {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.accept_marker {
            this.replace_marker();
        }
        if let Some(mut front) = this.reads.pop_front() {
            let n = front.len().min(out.remaining());
            out.put_slice(&front[..n]);
            if n < front.len() {
                front.drain(..n);
                this.reads.push_front(front);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().written.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
