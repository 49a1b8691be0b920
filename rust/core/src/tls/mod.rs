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
//!   for a handful of fields. It reads the server's certificate before webpki verifies it,
//!   so it treats its input as untrusted (bounds-checked, `None` on anything unexpected).
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

mod capture;
mod pem;
mod stream;
#[cfg(test)]
mod test_certs;
mod verifier;
pub(crate) mod x509;

use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use capture::ChainCapture;
pub use stream::MaybeTls;
pub use tokio_rustls::rustls::pki_types::CertificateDer;
use verifier::{Anchors, NameCheck, Trust, Verifier};

use crate::metrics::TlsFailure;

/// The one crypto provider every config here is built with.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(crypto::ring::default_provider()))
        .clone()
}

/// Mozilla's roots (webpki-roots), used when a `wss://` client is given no TLS options.
fn platform_roots() -> Arc<Anchors> {
    static ROOTS: OnceLock<Arc<Anchors>> = OnceLock::new();
    ROOTS
        .get_or_init(|| Arc::new(Anchors::public(webpki_roots::TLS_SERVER_ROOTS.to_vec())))
        .clone()
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem::tidy(pem).as_bytes())
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
        Self::with_chain(key_pem, parse_certs(cert_chain_pem, "the certificate")?)
    }

    /// From a PEM private key and the certificate chain as DER (what [`ChainCapture`] reads).
    pub fn with_chain(
        key_pem: &str,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<ServerTls, String> {
        let key = PrivateKeyDer::from_pem_slice(pem::tidy(key_pem).as_bytes()).map_err(|e| {
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

    /// The server's side of the TLS handshake; on failure, why (for the metrics).
    pub(crate) async fn accept(&self, stream: TcpStream) -> Result<MaybeTls, TlsFailure> {
        match self.acceptor.accept(stream).await {
            Ok(tls) => Ok(MaybeTls::Tls(Box::new(tls.into()))),
            Err(e) => Err(failure_cause(&e)),
        }
    }
}

/// Sorts a failed server handshake (tokio-rustls hands rustls's error inside an `io::Error`).
fn failure_cause(e: &io::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidMessage(_)) => TlsFailure::NotTls,
        Some(rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::BadCertificateStatusResponse,
        )) => TlsFailure::CertificateRejected,
        Some(_) => TlsFailure::Other,
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => TlsFailure::Closed,
            _ => TlsFailure::Other,
        },
    }
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
        Self::build(Trust::Anchors(platform_roots()), NameCheck::UrlHost)
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
            None => Trust::Anchors(platform_roots()),
            Some(pem) => {
                let certs = parse_certs(pem, "the trusted CA chain")?;
                Trust::Anchors(Arc::new(Anchors::trusted(certs)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_causes() {
        use rustls::AlertDescription as A;
        let tls = |e: rustls::Error| failure_cause(&io::Error::new(io::ErrorKind::InvalidData, e));
        let not_tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(tls(not_tls), TlsFailure::NotTls);
        for alert in [A::UnknownCA, A::BadCertificate, A::CertificateExpired] {
            assert_eq!(
                tls(rustls::Error::AlertReceived(alert)),
                TlsFailure::CertificateRejected
            );
        }
        assert_eq!(
            tls(rustls::Error::AlertReceived(A::ProtocolVersion)),
            TlsFailure::Other
        );
        let io = |kind| failure_cause(&io::Error::from(kind));
        assert_eq!(io(io::ErrorKind::UnexpectedEof), TlsFailure::Closed);
        assert_eq!(io(io::ErrorKind::ConnectionReset), TlsFailure::Closed);
        assert_eq!(io(io::ErrorKind::PermissionDenied), TlsFailure::Other);
    }
    use test_certs::cert_pem;

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
