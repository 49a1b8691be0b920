//! `wss://`: the core's TLS server and client against each other and against raw rustls
//! clients. Every certificate and key is generated here at test time (rcgen); none is stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rust_websocket_core::client::Client;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::Connection;
use rust_websocket_core::events::Event;
use rust_websocket_core::server::Server;
use rust_websocket_core::tls::{ClientTls, ServerTls};
use rust_websocket_core::url::WsUrl;
use rust_websocket_core::Bytes;
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{next_packet, rt, start, wait_for};

/// A certificate with its key, both as PEM.
struct Pem {
    cert: String,
    key: String,
    issuer: (rcgen::Certificate, KeyPair),
}

fn params(cn: &str, sans: &[&str], ca: bool, expired: bool) -> CertificateParams {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    }
    if expired {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    } else {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2090, 1, 1);
    }
    p
}

/// Like `Crypto.generate_self_signed_certificate(key, "CN=...")`: self-signed, CA:TRUE with
/// pathlen 0, no subjectAltName.
fn godot_cert(cn: &str) -> Pem {
    self_signed(params(cn, &[], true, false))
}

fn self_signed(p: CertificateParams) -> Pem {
    let key = KeyPair::generate().expect("key");
    let cert = p.self_signed(&key).expect("self-signed");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        issuer: (cert, key),
    }
}

fn ca(cn: &str) -> Pem {
    let mut p = params(cn, &[], true, false);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    self_signed(p)
}

fn signed(p: CertificateParams, by: &Pem) -> Pem {
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &by.issuer.0, &by.issuer.1).expect("sign");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        issuer: (cert, key),
    }
}

fn start_wss(key: &str, chain: &str) -> (Server, Receiver<Event>, u16) {
    let tls = ServerTls::from_pem(key, chain).expect("server TLS config");
    start(Some(tls), PeerConfig::default())
}

enum Outcome {
    Connected(Client, Receiver<Event>, Arc<Connection>),
    Failed(String),
}

/// Connects and waits for the outcome; also returns how long it took.
fn connect(url: &str, tls: Option<ClientTls>) -> (Outcome, Duration) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let t0 = Instant::now();
    let client = Client::connect(
        &rt(),
        WsUrl::parse(url).unwrap(),
        PeerConfig::default(),
        tx,
        tls,
    );
    let outcome = wait_for(&rx, |e| match e {
        Event::Connected { conn, .. } => Some(Ok(conn)),
        Event::ConnectFailed { reason } => Some(Err(reason)),
        _ => None,
    });
    let took = t0.elapsed();
    match outcome {
        Ok(conn) => (Outcome::Connected(client, rx, conn), took),
        Err(reason) => (Outcome::Failed(reason), took),
    }
}

/// The URL of a test server's root on `port`, as `host` names it.
fn wss(host: &str, port: u16) -> String {
    format!("wss://{host}:{port}/")
}

fn trust(chain: &str) -> Option<ClientTls> {
    Some(ClientTls::new(Some(chain), "", false).expect("client TLS config"))
}

fn expect_ok(url: &str, tls: Option<ClientTls>) -> (Client, Receiver<Event>, Arc<Connection>) {
    match connect(url, tls) {
        (Outcome::Connected(client, rx, conn), took) => {
            eprintln!("{url}: connected in {took:?}");
            (client, rx, conn)
        }
        (Outcome::Failed(reason), _) => panic!("{url}: expected to connect, failed: {reason}"),
    }
}

/// Expects a failure whose reason contains `why`, well before the handshake timeout.
fn expect_fail(url: &str, tls: Option<ClientTls>, why: &str) -> Duration {
    match connect(url, tls) {
        (Outcome::Failed(reason), took) => {
            eprintln!("{url}: failed in {took:?}: {reason}");
            assert!(reason.contains(why), "expected '{why}' in: {reason}");
            assert!(took < Duration::from_millis(1000), "took {took:?}");
            took
        }
        (Outcome::Connected(..), _) => panic!("{url}: expected a failure ({why})"),
    }
}

fn server_connected(rx: &Receiver<Event>) -> Arc<Connection> {
    common::connected(rx).0
}

const NAME: &str = "does not match the expected name";
const UNTRUSTED: &str = "not trusted";
const EXPIRED: &str = "expired";

#[test]
fn pinned_godot_style_certificate_end_to_end() {
    let pem = godot_cert("localhost");
    let (server, srx, port) = start_wss(&pem.key, &pem.cert);
    let url = format!("wss://localhost:{port}/game?room=1");
    let (client, crx, cconn) = expect_ok(&url, trust(&pem.cert));
    let sconn = server_connected(&srx);
    assert_eq!(sconn.info().requested_url, url);
    assert_eq!(cconn.info().requested_url, url);

    cconn.send(Bytes::from_static(b"ping"), false).unwrap();
    assert_eq!(next_packet(&srx), b"ping");
    sconn.send(Bytes::from(vec![9u8; 10_000]), false).unwrap();
    assert_eq!(next_packet(&crx), vec![9u8; 10_000]);

    // A clean close over TLS keeps its code.
    sconn.close(4001, "bye");
    let gone = wait_for(&crx, |e| match e {
        Event::Disconnected { id } => Some(id),
        _ => None,
    });
    assert_eq!(gone, 1);
    assert_eq!(cconn.close_code(), 4001);
    assert_eq!(cconn.close_reason(), "bye");
    client.close();
    server.close();
}

#[test]
fn names_are_checked_against_cn_without_san() {
    let pem = godot_cert("LocalHost");
    let (server, _srx, port) = start_wss(&pem.key, &pem.cert);
    // Case-insensitive CN match.
    let _ok = expect_ok(&wss("localhost", port), trust(&pem.cert));
    // The URL host is 127.0.0.1, the CN localhost.
    expect_fail(&wss("127.0.0.1", port), trust(&pem.cert), NAME);
    // common_name_override replaces the URL host, both ways.
    let over = |name: &str| Some(ClientTls::new(Some(&pem.cert), name, false).unwrap());
    let _ok = expect_ok(&wss("127.0.0.1", port), over("localhost"));
    expect_fail(&wss("localhost", port), over("example.com"), NAME);
    server.close();
}

#[test]
fn unsafe_clients() {
    let pem = godot_cert("localhost");
    let other = godot_cert("localhost");
    let (server, _srx, port) = start_wss(&pem.key, &pem.cert);
    let url = format!("wss://127.0.0.1:{port}/");
    // client_unsafe(chain): the name is skipped, the chain is not.
    let unsafe_with = |chain: &str| Some(ClientTls::new(Some(chain), "", true).unwrap());
    let _ok = expect_ok(&url, unsafe_with(&pem.cert));
    expect_fail(&url, unsafe_with(&other.cert), UNTRUSTED);
    // client_unsafe(): nothing is verified.
    let _ok = expect_ok(&url, Some(ClientTls::new(None, "", true).unwrap()));
    server.close();
}

#[test]
fn null_options_trust_public_roots_only() {
    let pem = godot_cert("localhost");
    let (server, _srx, port) = start_wss(&pem.key, &pem.cert);
    expect_fail(&wss("localhost", port), None, UNTRUSTED);
    expect_fail(
        &wss("localhost", port),
        Some(ClientTls::platform().unwrap()),
        UNTRUSTED,
    );
    server.close();
}

#[test]
fn ca_signed_chains_are_verified() {
    let root = ca("Test Root");
    let mut ip = params("Test Intermediate", &[], true, false);
    ip.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let intermediate = signed(ip, &root);
    let leaf = signed(params("leaf", &["localhost"], false, false), &intermediate);

    // Leaf + intermediate in one PEM is sent as a chain; the client trusts only the root.
    let chain = format!("{}{}", leaf.cert, intermediate.cert);
    let (server, _srx, port) = start_wss(&leaf.key, &chain);
    let _ok = expect_ok(&wss("localhost", port), trust(&root.cert));
    // The SAN is checked (and the CN "leaf" is not used when a SAN exists).
    expect_fail(&wss("127.0.0.1", port), trust(&root.cert), NAME);
    let over = |name: &str| Some(ClientTls::new(Some(&root.cert), name, false).unwrap());
    expect_fail(&wss("localhost", port), over("leaf"), NAME);
    // A root the server's chain does not lead to.
    expect_fail(&wss("localhost", port), trust(&ca("Other").cert), UNTRUSTED);
    server.close();

    // Without the intermediate the chain is incomplete.
    let (server, _srx, port) = start_wss(&leaf.key, &leaf.cert);
    expect_fail(&wss("localhost", port), trust(&root.cert), UNTRUSTED);
    server.close();

    // A CA-signed leaf without SAN: its CN is used.
    let cn_leaf = signed(params("localhost", &[], false, false), &root);
    let (server, _srx, port) = start_wss(&cn_leaf.key, &cn_leaf.cert);
    let _ok = expect_ok(&wss("localhost", port), trust(&root.cert));
    expect_fail(&wss("127.0.0.1", port), trust(&root.cert), NAME);
    server.close();
}

#[test]
fn expired_certificates_are_rejected() {
    // Pinned: the trusted certificate itself has expired.
    let old = self_signed(params("localhost", &[], true, true));
    let (server, _srx, port) = start_wss(&old.key, &old.cert);
    expect_fail(&wss("localhost", port), trust(&old.cert), EXPIRED);
    // Even with client_unsafe(chain): only the name is skipped.
    let unsafe_old = ClientTls::new(Some(&old.cert), "", true).unwrap();
    expect_fail(&wss("localhost", port), Some(unsafe_old), EXPIRED);
    server.close();

    // Chained: an expired leaf under a valid root.
    let root = ca("Test Root");
    let leaf = signed(params("leaf", &["localhost"], false, true), &root);
    let (server, _srx, port) = start_wss(&leaf.key, &leaf.cert);
    expect_fail(&wss("localhost", port), trust(&root.cert), EXPIRED);
    server.close();
}

#[test]
fn mixed_plain_and_tls_fail_fast_and_servers_keep_serving() {
    let pem = godot_cert("localhost");
    let (server, srx, port) = start_wss(&pem.key, &pem.cert);
    // Plain client on a wss server.
    let took = expect_fail(&format!("ws://localhost:{port}/"), None, "");
    assert!(took < Duration::from_millis(300), "{took:?}");
    let (_c, _crx, _conn) = expect_ok(&wss("localhost", port), trust(&pem.cert));
    server_connected(&srx);
    server.close();

    // wss client on a plain server.
    let (server, srx, port) = start(None, PeerConfig::default());
    let took = expect_fail(&wss("localhost", port), trust(&pem.cert), "");
    eprintln!("wss client on a plain server: failed in {took:?}");
    let (_c, _crx, _conn) = expect_ok(&format!("ws://localhost:{port}/"), None);
    server_connected(&srx);
    server.close();
}

#[test]
fn stalled_tls_handshakes_time_out_without_delaying_others() {
    let pem = godot_cert("localhost");
    let tls = ServerTls::from_pem(&pem.key, &pem.cert).unwrap();
    let config = PeerConfig {
        handshake_timeout: Duration::from_millis(500),
        ..PeerConfig::default()
    };
    let (server, _srx, port) = start(Some(tls), config);
    let rt = rt();
    let t0 = Instant::now();
    let (mut silent, mut partial) = rt.block_on(async {
        let silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut partial = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        // The start of a TLS record header (a ClientHello that never comes).
        partial.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
        (silent, partial)
    });
    let (_c, _crx, _conn) = expect_ok(&wss("localhost", port), trust(&pem.cert));
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    for sock in [&mut silent, &mut partial] {
        rt.block_on(common::expect_dropped_at_handshake_timeout(sock, t0));
    }
    server.close();
}

/// A raw rustls client (webpki verification of a CA-signed leaf), speaking the versions given.
async fn raw_wss(
    port: u16,
    root_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (rustls::ProtocolVersion, usize) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let version = tls.get_ref().1.protocol_version().unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://localhost:{port}/"), tls)
        .await
        .expect("WebSocket handshake");
    let first = ws.next().await.unwrap().unwrap();
    assert!(matches!(first, Message::Binary(_)));
    (version, first.len())
}

#[test]
fn tls13_by_default_and_tls12_accepted() {
    let root = ca("Test Root");
    let leaf = signed(params("leaf", &["localhost"], false, false), &root);
    let (server, _srx, port) = start_wss(&leaf.key, &leaf.cert);
    let rt = rt();
    let (v, n) = rt.block_on(raw_wss(port, &root.cert, rustls::ALL_VERSIONS));
    assert_eq!((v, n), (rustls::ProtocolVersion::TLSv1_3, 4));
    let (v, n) = rt.block_on(raw_wss(port, &root.cert, &[&rustls::version::TLS12]));
    assert_eq!((v, n), (rustls::ProtocolVersion::TLSv1_2, 4));
    server.close();
}

#[test]
fn bad_server_credentials_are_refused() {
    let pem = godot_cert("localhost");
    let other = godot_cert("localhost");
    let err = ServerTls::from_pem(&other.key, &pem.cert).unwrap_err();
    assert!(err.contains("does not match the certificate"), "{err}");
    let err = ServerTls::from_pem(&pem.key, "not a certificate").unwrap_err();
    assert!(err.contains("no certificate"), "{err}");
    let err = ServerTls::from_pem(&pem.cert, &pem.cert).unwrap_err();
    assert!(err.contains("private key"), "{err}");
    let public_only = KeyPair::from_pem(&pem.key).unwrap().public_key_pem();
    let err = ServerTls::from_pem(&public_only, &pem.cert).unwrap_err();
    assert!(err.contains("private key"), "{err}");
    // A chain whose first certificate is the key's, then others: fine.
    let chain = format!("{}{}", pem.cert, other.cert);
    assert!(ServerTls::from_pem(&pem.key, &chain).is_ok());
    let err = ServerTls::from_pem(&pem.key, &format!("{}{}", other.cert, pem.cert)).unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    // Client side: a trusted chain with no certificate in it.
    let err = ClientTls::new(Some(""), "", false).unwrap_err();
    assert!(err.contains("no certificate"), "{err}");
}

#[test]
fn many_concurrent_tls_handshakes() {
    const N: usize = 200;
    let pem = godot_cert("localhost");
    let (server, srx, port) = start_wss(&pem.key, &pem.cert);
    let tls = trust(&pem.cert).unwrap();
    let url = WsUrl::parse(&wss("localhost", port)).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let t0 = Instant::now();
    let clients: Vec<Client> = (0..N)
        .map(|_| {
            Client::connect(
                &rt(),
                url.clone(),
                PeerConfig::default(),
                tx.clone(),
                Some(tls.clone()),
            )
        })
        .collect();
    let mut connected = 0;
    while connected < N {
        match rx.recv_timeout(Duration::from_secs(10)).expect("event") {
            Event::Connected { .. } => connected += 1,
            Event::ConnectFailed { reason } => panic!("{reason}"),
            _ => {}
        }
    }
    let took = t0.elapsed();
    eprintln!(
        "{N} concurrent wss clients (ECDSA P-256) connected in {took:?}: {:.0} handshakes/s",
        N as f64 / took.as_secs_f64()
    );
    for _ in 0..N {
        server_connected(&srx);
    }
    drop(clients);
    server.close();
}

/// Behind a TCP balancer, the PROXY header comes before the TLS ClientHello.
#[test]
fn proxy_protocol_header_before_tls() {
    use rust_websocket_core::proxy::TrustedProxy;
    let root = ca("Test Root");
    let leaf = signed(params("leaf", &["localhost"], false, false), &root);
    let tls = ServerTls::from_pem(&leaf.key, &leaf.cert).unwrap();
    let config = PeerConfig {
        trusted_proxies: vec![TrustedProxy::parse("127.0.0.1").unwrap()],
        proxy_protocol: true,
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(Some(tls), config);
    let rt = rt();
    let _ws = rt.block_on(async {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root.cert.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
        header.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        header.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        header.extend_from_slice(&[0x12, 0x67, 0x23, 0x78]);
        tcp.write_all(&header).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .expect("TLS after the header");
        tokio_tungstenite::client_async(format!("wss://localhost:{port}/"), tls)
            .await
            .expect("upgrade")
    });
    let conn = server_connected(&rx);
    assert_eq!(conn.info().remote.to_string(), "[2001:db8::7]:4711");
    server.close();
}
