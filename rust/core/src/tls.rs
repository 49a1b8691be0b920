//! `wss://`: rustls configurations built from PEM (what Godot's `TLSOptions` hold), the
//! certificate verifier that behaves like the built-in peer's mbedTLS, and the stream type
//! both sides run on.
//!
//! # Choices
//!
//! - **Crypto provider: `ring`**, installed explicitly into every config (never the process
//!   default, which another library in the game could have set). `aws-lc-rs` (rustls' default)
//!   compiles the whole AWS-LC C library (a clean build here: 39 s against 12 s for `ring` on
//!   2 cores) and, depending on the target, wants CMake, NASM (Windows) or bindgen/libclang;
//!   `ring` needs only a C compiler, ships its assembly pre-generated, and cross-compiles
//!   without extra setup to every platform Godot exports to (Windows, macOS, Linux, Android,
//!   iOS). Both are fast enough for the handshakes a game server does.
//! - **Roots for `null` options: `webpki-roots`** (Mozilla's CA list compiled in) rather than
//!   `rustls-native-certs`: it works the same on every export target (the native store needs
//!   per-OS code and has no Android/iOS support), and it is the same list Godot bundles for its
//!   own `null`-options clients. Games that need other roots pass `TLSOptions.client(chain)`.
//! - **Certificate fields (subject CN, subjectAltName presence, validity) are read by a small
//!   DER reader here** ([`x509`]), not by `x509-parser`: webpki exposes none of these, and
//!   `x509-parser` would add about ten crates (nom, asn1-rs, der-parser, time, proc-macros)
//!   for four fields. It only ever reads certificates that are already trusted: either
//!   byte-identical to one the game passed in, or verified up to a trust anchor by webpki.
//!
//! # Verification (as Godot 4.x with mbedTLS does it)
//!
//! - A server certificate byte-identical to one of the trusted certificates is accepted
//!   (pinning). This is how Godot's own `generate_self_signed_certificate` certificates work:
//!   they are CA:TRUE and have no subjectAltName, which webpki on its own rejects.
//! - Otherwise the chain must lead to a trusted certificate; webpki verifies it (signatures,
//!   validity, key usage). A self-issued certificate that is not itself trusted is reported
//!   as "unknown issuer".
//! - Name: the subjectAltNames when the certificate has any (webpki's matcher: DNS names with
//!   wildcards, IP addresses), otherwise the subject's common names, case-insensitively, with
//!   mbedTLS' single-label `*.` wildcard. `common_name_override` replaces the URL's host.
//! - `client_unsafe(chain)` verifies the chain and skips the name; `client_unsafe()` verifies
//!   nothing. The TLS handshake signature (proof that the server holds the certificate's key)
//!   is always verified.
//! - Expiry is always checked (the pinned certificate's own validity period included).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The one crypto provider every config here is built with.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(crypto::ring::default_provider()))
        .clone()
}

/// Mozilla's roots (webpki-roots), used when a `wss://` client is given no TLS options.
fn platform_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} contains no certificate"));
    }
    Ok(certs)
}

/// The server side of `TLSOptions.server(key, certificate)`.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// From a PEM private key (PKCS#1 RSA, SEC1 EC or PKCS#8, as Godot's `CryptoKey` saves
    /// them) and a PEM certificate chain, the server's certificate first. Fails, with a reason
    /// meant for the developer, when either does not parse or the key does not match.
    pub fn from_pem(key_pem: &str, cert_chain_pem: &str) -> Result<ServerTls, String> {
        let chain = parse_certs(cert_chain_pem, "the certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            format!("the private key is not a PEM private key (RSA, ECDSA or Ed25519): {e}")
        })?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not match the certificate".to_string()
                }
                e => format!("the private key or certificate cannot be used: {e}"),
            })?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<MaybeTls> {
        let tls = self.acceptor.accept(stream).await?;
        Ok(MaybeTls::Tls(Box::new(tls.into())))
    }
}

/// What the client checks the server's certificate against.
#[derive(Debug)]
enum Trust {
    /// `client_unsafe()` without a chain.
    Nothing,
    Anchors {
        roots: Arc<RootCertStore>,
        /// The game's trusted certificates, accepted as the server certificate as they are.
        pinned: Vec<CertificateDer<'static>>,
    },
}

/// Which name the server certificate must carry.
#[derive(Clone, Debug)]
enum NameCheck {
    /// The URL's host (the name rustls sends as SNI).
    UrlHost,
    /// `common_name_override`.
    Override(String),
    /// `client_unsafe(chain)`.
    Skip,
}

/// The client side: `null` options ([`ClientTls::platform`]) or `TLSOptions.client(...)` /
/// `client_unsafe(...)` ([`ClientTls::new`]).
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// `null` options: Mozilla's roots and the URL's host.
    pub fn platform() -> Result<ClientTls, String> {
        Self::build(
            Trust::Anchors {
                roots: platform_roots(),
                pinned: Vec::new(),
            },
            NameCheck::UrlHost,
        )
    }

    /// `TLSOptions.client(trusted_ca_pem, common_name_override)` when `unsafe_client` is
    /// false, `TLSOptions.client_unsafe(trusted_ca_pem)` when true. An empty
    /// `common_name_override` means the URL's host.
    pub fn new(
        trusted_ca_pem: Option<&str>,
        common_name_override: &str,
        unsafe_client: bool,
    ) -> Result<ClientTls, String> {
        let trust = match trusted_ca_pem {
            None if unsafe_client => Trust::Nothing,
            None => Trust::Anchors {
                roots: platform_roots(),
                pinned: Vec::new(),
            },
            Some(pem) => {
                let pinned = parse_certs(pem, "the trusted CA chain")?;
                let mut roots = RootCertStore::empty();
                // A certificate that cannot be a trust anchor can still be pinned.
                roots.add_parsable_certificates(pinned.iter().cloned());
                Trust::Anchors {
                    roots: Arc::new(roots),
                    pinned,
                }
            }
        };
        let name = if unsafe_client {
            NameCheck::Skip
        } else if common_name_override.is_empty() {
            NameCheck::UrlHost
        } else {
            NameCheck::Override(common_name_override.to_string())
        };
        Self::build(trust, name)
    }

    fn build(trust: Trust, name: NameCheck) -> Result<ClientTls, String> {
        let provider = provider();
        let verifier = Arc::new(Verifier {
            provider: provider.clone(),
            trust,
            name,
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// TLS handshake on `stream`, with `host` (the URL's host) as SNI.
    pub(crate) async fn connect(&self, host: &str, stream: TcpStream) -> Result<MaybeTls, String> {
        let sni = ServerName::try_from(host.to_string())
            .map_err(|_| format!("'{host}' cannot be used as a TLS server name"))?;
        let tls = self
            .connector
            .connect(sni, stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {}", describe(&e)))?;
        Ok(MaybeTls::Tls(Box::new(tls.into())))
    }
}

/// A readable reason for a failed TLS handshake.
fn describe(e: &io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return "the server closed the connection during the TLS handshake (is it a \
                wss:// server?)"
                .into();
        }
        return e.to_string();
    };
    let rustls::Error::InvalidCertificate(cert) = tls else {
        return tls.to_string();
    };
    match cert {
        CertificateError::UnknownIssuer => "the server's certificate is not trusted (unknown \
            issuer: neither one of the trusted certificates nor signed by one)"
            .into(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("the server's certificate does not match the expected name: {cert}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the server's certificate has expired: {cert}")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("the server's certificate is not valid yet: {cert}")
        }
        other => format!("the server's certificate was rejected: {other}"),
    }
}

#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    trust: Trust,
    name: NameCheck,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Trust::Anchors { roots, pinned } = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        let info = x509::CertInfo::parse(end_entity).ok_or(CertificateError::BadEncoding)?;
        if pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            info.check_validity(now)?;
        } else if info.self_issued {
            // webpki would say "CA used as end entity" for Godot's certificates.
            return Err(CertificateError::UnknownIssuer.into());
        } else {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &parsed,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        let expected = match &self.name {
            NameCheck::Skip => return Ok(ServerCertVerified::assertion()),
            NameCheck::UrlHost => server_name_str(server_name),
            NameCheck::Override(name) => name.clone(),
        };
        check_name(end_entity, &info, &expected)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn server_name_str(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// SANs when present (webpki's matcher), else the subject's common names (mbedTLS' rules).
fn check_name(
    end_entity: &CertificateDer<'_>,
    info: &x509::CertInfo,
    expected: &str,
) -> Result<(), rustls::Error> {
    let expected_name = ServerName::try_from(expected.to_string()).ok();
    if info.has_san {
        let Some(name) = expected_name else {
            return Err(CertificateError::NotValidForName.into());
        };
        let parsed = ParsedCertificate::try_from(end_entity)?;
        return verify_server_name(&parsed, &name);
    }
    if info.common_names.iter().any(|cn| cn_matches(cn, expected)) {
        return Ok(());
    }
    Err(match expected_name {
        Some(expected) => CertificateError::NotValidForNameContext {
            expected,
            presented: info
                .common_names
                .iter()
                .map(|cn| format!("CN={cn}"))
                .collect(),
        },
        None => CertificateError::NotValidForName,
    }
    .into())
}

/// A subject common name against a host name: equal ignoring ASCII case, or `*.rest` with
/// `rest` equal to everything after the host's first label (as mbedTLS matches).
fn cn_matches(cn: &str, host: &str) -> bool {
    if cn.eq_ignore_ascii_case(host) {
        return true;
    }
    match (cn.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && rest.eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

/// A server or client socket, with or without TLS. The TLS state is boxed so that plain
/// connections stay small.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The few certificate fields webpki does not expose. Reads only DER that is already trusted
/// (see the module docs); any structure it does not expect makes `parse` return `None`.
mod x509 {
    use tokio_rustls::rustls::pki_types::UnixTime;
    use tokio_rustls::rustls::{self, CertificateError};

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct CertInfo {
        /// Issuer and subject names are identical (self-signed, as Godot makes them).
        pub self_issued: bool,
        /// Seconds since the Unix epoch (0 for earlier dates).
        pub not_before: u64,
        pub not_after: u64,
        pub common_names: Vec<String>,
        pub has_san: bool,
    }

    impl CertInfo {
        pub fn parse(der: &[u8]) -> Option<CertInfo> {
            let cert = Der(der).expect(SEQUENCE)?;
            let mut tbs = Der(Der(cert).expect(SEQUENCE)?);
            if tbs.peek() == Some(0xa0) {
                tbs.next()?; // version
            }
            tbs.next()?; // serial
            tbs.expect(SEQUENCE)?; // signature algorithm
            let issuer = tbs.expect(SEQUENCE)?;
            let mut validity = Der(tbs.expect(SEQUENCE)?);
            let not_before = time(validity.next()?)?;
            let not_after = time(validity.next()?)?;
            let subject = tbs.expect(SEQUENCE)?;
            tbs.expect(SEQUENCE)?; // subject public key info
            let mut has_san = false;
            while let Some((tag, body)) = tbs.next() {
                if tag != 0xa3 {
                    continue; // issuer/subject unique ids
                }
                let mut extensions = Der(Der(body).expect(SEQUENCE)?);
                while !extensions.0.is_empty() {
                    let mut ext = Der(extensions.expect(SEQUENCE)?);
                    if ext.expect(OID)? == OID_SUBJECT_ALT_NAME {
                        has_san = true;
                    }
                }
            }
            Some(CertInfo {
                self_issued: issuer == subject,
                not_before,
                not_after,
                common_names: common_names(subject)?,
                has_san,
            })
        }

        pub fn check_validity(&self, now: UnixTime) -> Result<(), rustls::Error> {
            let secs = now.as_secs();
            let at = |s: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
            if secs < self.not_before {
                return Err(CertificateError::NotValidYetContext {
                    time: now,
                    not_before: at(self.not_before),
                }
                .into());
            }
            if secs > self.not_after {
                return Err(CertificateError::ExpiredContext {
                    time: now,
                    not_after: at(self.not_after),
                }
                .into());
            }
            Ok(())
        }
    }

    /// Every CN attribute of a Name (SEQUENCE OF SET OF {type, value}).
    fn common_names(name: &[u8]) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut rdns = Der(name);
        while !rdns.0.is_empty() {
            let mut set = Der(rdns.expect(SET)?);
            while !set.0.is_empty() {
                let mut attr = Der(set.expect(SEQUENCE)?);
                if attr.expect(OID)? == OID_COMMON_NAME {
                    let (tag, value) = attr.next()?;
                    out.push(string(tag, value)?);
                }
            }
        }
        Some(out)
    }

    fn string(tag: u8, v: &[u8]) -> Option<String> {
        match tag {
            // UTF8String, PrintableString, IA5String
            0x0c | 0x13 | 0x16 => String::from_utf8(v.to_vec()).ok(),
            // TeletexString: read as Latin-1, as most software does
            0x14 => Some(v.iter().map(|&b| char::from(b)).collect()),
            // BMPString: UTF-16BE
            0x1e if v.len().is_multiple_of(2) => String::from_utf16(
                &v.chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            )
            .ok(),
            _ => None,
        }
    }

    /// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
    fn time((tag, v): (u8, &[u8])) -> Option<u64> {
        let (year, rest) = match (tag, v.len()) {
            (0x17, 13) => {
                let yy = digits(&v[..2])? as i64;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
            }
            (0x18, 15) => (digits(&v[..4])? as i64, &v[4..]),
            _ => return None,
        };
        if rest[10] != b'Z' {
            return None;
        }
        let field = |i: usize| digits(&rest[i..i + 2]).map(i64::from);
        let (month, day) = (field(0)?, field(2)?);
        let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return None;
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        Some(u64::try_from(secs).unwrap_or(0))
    }

    fn digits(s: &[u8]) -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// A DER cursor: single-byte tags, definite lengths up to 4 length bytes.
    struct Der<'a>(&'a [u8]);

    impl<'a> Der<'a> {
        fn peek(&self) -> Option<u8> {
            self.0.first().copied()
        }

        fn next(&mut self) -> Option<(u8, &'a [u8])> {
            let (&tag, rest) = self.0.split_first()?;
            if tag & 0x1f == 0x1f {
                return None;
            }
            let (&first, rest) = rest.split_first()?;
            let (len, rest) = match first {
                0..=0x7f => (usize::from(first), rest),
                0x81..=0x84 => {
                    let n = usize::from(first & 0x7f);
                    if rest.len() < n {
                        return None;
                    }
                    let len = rest[..n]
                        .iter()
                        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                    (len, &rest[n..])
                }
                _ => return None,
            };
            if rest.len() < len {
                return None;
            }
            let (body, rest) = rest.split_at(len);
            self.0 = rest;
            Some((tag, body))
        }

        fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
            match self.next()? {
                (t, body) if t == tag => Some(body),
                _ => None,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn times() {
            assert_eq!(time((0x17, b"700101000000Z")), Some(0));
            assert_eq!(time((0x17, b"000229123456Z")), Some(951_827_696));
            assert_eq!(time((0x18, b"20380119031408Z")), Some(2_147_483_648));
            assert_eq!(time((0x18, b"99991231235959Z")), Some(253_402_300_799));
            assert_eq!(time((0x17, b"491231235959Z")), Some(2_524_607_999));
            assert_eq!(time((0x17, b"500101000000Z")), Some(0)); // 1950: before the epoch
            assert_eq!(time((0x17, b"7001010000+0Z")), None);
            assert_eq!(time((0x17, b"700101000000")), None);
        }

        #[test]
        fn truncated_input_is_rejected() {
            assert_eq!(CertInfo::parse(&[]), None);
            assert_eq!(CertInfo::parse(&[0x30, 0x82, 0x01]), None);
            assert_eq!(CertInfo::parse(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01]), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    fn cert(cn: &str, sans: &[&str], ca: bool) -> (CertificateDer<'static>, KeyPair) {
        let (cert, key) = cert_pem(cn, sans, ca);
        (cert.der().clone(), key)
    }

    fn cert_pem(cn: &str, sans: &[&str], ca: bool) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test");
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        }
        params.not_before = rcgen::date_time_ymd(2001, 2, 3);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        (params.self_signed(&key).unwrap(), key)
    }

    #[test]
    fn reads_godot_like_certificate() {
        let (der, _) = cert("LocalHost", &[], true);
        let info = x509::CertInfo::parse(&der).unwrap();
        assert_eq!(info.common_names, vec!["LocalHost".to_string()]);
        assert!(!info.has_san);
        assert!(info.self_issued);
        assert_eq!(info.not_before, 981_158_400);
        assert_eq!(info.not_after, 4_102_358_400);
        let (der, _) = cert("x", &["a.example", "b.example"], false);
        let info = x509::CertInfo::parse(&der).unwrap();
        assert!(info.has_san);
        assert_eq!(info.common_names, vec!["x".to_string()]);
    }

    #[test]
    fn common_name_matching() {
        assert!(cn_matches("localhost", "LOCALHOST"));
        assert!(cn_matches("*.example.com", "a.Example.com"));
        assert!(!cn_matches("*.example.com", "example.com"));
        assert!(!cn_matches("*.example.com", "a.b.example.com"));
        assert!(!cn_matches("*.example.com", ".example.com"));
        assert!(!cn_matches("localhost", "127.0.0.1"));
        assert!(cn_matches("127.0.0.1", "127.0.0.1"));
    }

    #[test]
    fn name_check_uses_sans_when_present() {
        let (der, _) = cert("other", &["localhost"], false);
        let info = x509::CertInfo::parse(&der).unwrap();
        assert!(check_name(&der, &info, "localhost").is_ok());
        assert!(check_name(&der, &info, "other").is_err());
        let (der, _) = cert("localhost", &[], true);
        let info = x509::CertInfo::parse(&der).unwrap();
        assert!(check_name(&der, &info, "localhost").is_ok());
        assert!(check_name(&der, &info, "My Server").is_err());
        let (der, _) = cert("My Server", &[], true);
        let info = x509::CertInfo::parse(&der).unwrap();
        assert!(check_name(&der, &info, "my server").is_ok());
    }

    #[test]
    fn server_config_errors() {
        let (cert, key) = cert_pem("localhost", &[], true);
        let chain = cert.pem();
        assert!(ServerTls::from_pem(&key.serialize_pem(), &chain).is_ok());
        let (_, other_key) = cert_pem("localhost", &[], true);
        let err = ServerTls::from_pem(&other_key.serialize_pem(), &chain).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let err = ServerTls::from_pem("", &chain).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        let err = ServerTls::from_pem(&key.serialize_pem(), "garbage").unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
    }
}
