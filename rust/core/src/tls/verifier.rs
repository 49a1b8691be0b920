//! The client's certificate verifier, behaving like the built-in peer's mbedTLS (the rules are
//! listed in the `tls` module docs).
//!
//! webpki builds and checks the path; a callback holds each candidate path to the rules
//! mbedTLS adds and webpki leaves out: a trusted certificate signs only if it is a CA
//! (basicConstraints cA, or an X.509 v1/v2 root) whose keyUsage allows keyCertSign, its
//! pathLenConstraint counts, intermediates need keyCertSign too, and the server's own
//! certificate needs digitalSignature when it has a keyUsage.

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::verify_server_name;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{self, CertificateError, DigitallySignedStruct, SignatureScheme};

use super::x509::{self, CertInfo, KU_DIGITAL_SIGNATURE, KU_KEY_CERT_SIGN};

/// What the client checks the server's certificate against.
#[derive(Debug)]
pub(super) enum Trust {
    /// `client_unsafe()` without a chain.
    Nothing,
    Anchors(Arc<Anchors>),
}

/// Trusted certificates: the ones that may sign, and every one as an exact-match pin.
#[derive(Debug, Default)]
pub(super) struct Anchors {
    roots: Vec<TrustAnchor<'static>>,
    /// Per root: its fields when it came from the game (Mozilla's roots come without).
    root_info: Vec<Option<CertInfo>>,
    /// The game's trusted certificates, accepted as the server certificate as they are.
    pinned: Vec<CertificateDer<'static>>,
}

impl Anchors {
    /// Roots as given (Mozilla's list).
    pub(super) fn public(roots: Vec<TrustAnchor<'static>>) -> Anchors {
        Anchors {
            root_info: roots.iter().map(|_| None).collect(),
            roots,
            pinned: Vec::new(),
        }
    }

    /// The game's trusted certificates: each one is a pin; the CAs among them are roots too.
    /// A trusted end-entity certificate (CA:FALSE) signs nothing, as with mbedTLS.
    pub(super) fn trusted(certs: Vec<CertificateDer<'static>>) -> Anchors {
        let mut anchors = Anchors::default();
        for der in &certs {
            let Some(info) = CertInfo::parse(der) else {
                continue;
            };
            let may_sign = info.version < 3 || (info.ca && info.allows(KU_KEY_CERT_SIGN));
            if !may_sign {
                continue;
            }
            if let Ok(anchor) = webpki::anchor_from_trusted_cert(der) {
                anchors.roots.push(anchor.to_owned());
                anchors.root_info.push(Some(info));
            }
        }
        anchors.pinned = certs;
        anchors
    }

    /// The game's fields of the root `anchor`, if it is one of the game's certificates.
    fn info_of(&self, anchor: &TrustAnchor<'_>) -> Option<&CertInfo> {
        self.roots
            .iter()
            .position(|r| {
                r.subject.as_ref() == anchor.subject.as_ref()
                    && r.subject_public_key_info.as_ref() == anchor.subject_public_key_info.as_ref()
            })
            .and_then(|i| self.root_info[i].as_ref())
    }

    /// mbedTLS' rules on a path webpki has built (see the module docs).
    fn check_path(&self, path: &webpki::VerifiedPath<'_>) -> Result<(), webpki::Error> {
        let mut below_root = 0u32;
        for cert in path.intermediate_certificates() {
            let info = CertInfo::parse(&cert.der()).ok_or(webpki::Error::BadDer)?;
            if !info.allows(KU_KEY_CERT_SIGN) {
                return Err(webpki::Error::ExtensionValueInvalid);
            }
            if !info.self_issued {
                below_root += 1;
            }
        }
        match self.info_of(path.anchor()).and_then(|root| root.path_len) {
            Some(limit) if below_root > limit => Err(webpki::Error::PathLenConstraintViolated),
            _ => Ok(()),
        }
    }

    /// Verifies `end_entity` up to one of the roots.
    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &CryptoProvider,
    ) -> Result<(), rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let check = |path: &webpki::VerifiedPath<'_>| self.check_path(path);
        cert.verify_for_usage(
            provider.signature_verification_algorithms.all,
            &self.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&check),
        )
        .map(|_| ())
        .map_err(pki_error)
    }
}

/// webpki's verdict as rustls reports it.
fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let cert = match e {
        E::BadDer | E::BadDerTime => CertificateError::BadEncoding,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        E::PathLenConstraintViolated => CertificateError::Other(rustls::OtherError(Arc::new(
            Reason("a CA's pathLenConstraint does not allow this many CAs below it"),
        ))),
        E::ExtensionValueInvalid => CertificateError::Other(rustls::OtherError(Arc::new(Reason(
            "a CA in the chain may not sign certificates (keyUsage without keyCertSign)",
        )))),
        other => CertificateError::Other(rustls::OtherError(Arc::new(WebpkiError(other)))),
    };
    cert.into()
}

#[derive(Debug)]
struct Reason(&'static str);

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Reason {}

#[derive(Debug)]
struct WebpkiError(webpki::Error);

impl std::fmt::Display for WebpkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for WebpkiError {}

/// Which name the server certificate must carry.
#[derive(Clone, Debug)]
pub(super) enum NameCheck {
    /// The URL's host (the name rustls sends as SNI).
    UrlHost,
    /// `common_name_override`.
    Override(String),
    /// `client_unsafe(chain)`.
    Skip,
}

#[derive(Debug)]
pub(super) struct Verifier {
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) trust: Trust,
    pub(super) name: NameCheck,
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
        let Trust::Anchors(anchors) = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        let info = x509::CertInfo::parse(end_entity).ok_or(CertificateError::BadEncoding)?;
        if anchors
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            info.check_validity(now)?;
        } else if info.self_issued {
            // webpki would say "CA used as end entity" for Godot's certificates.
            return Err(CertificateError::UnknownIssuer.into());
        } else {
            anchors.verify_chain(end_entity, intermediates, now, &self.provider)?;
        }
        // The handshake's signature is made with this key: mbedTLS wants it allowed to sign.
        if !info.allows(KU_DIGITAL_SIGNATURE) {
            return Err(CertificateError::Other(rustls::OtherError(Arc::new(Reason(
                "the server's certificate may not be used to sign (keyUsage without \
                 digitalSignature)",
            ))))
            .into());
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

/// A subject common name against a host name, with the rules the subjectAltName path
/// (webpki) applies: equal ignoring ASCII case; or `*.rest` where `rest` is everything after
/// the host's first label and has two labels at least (`*.com` matches nothing), and never for
/// an IP address (`*.0.0.1` does not match `127.0.0.1`).
fn cn_matches(cn: &str, host: &str) -> bool {
    if cn.eq_ignore_ascii_case(host) {
        return true;
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    match (cn.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && suffix.contains('.') && rest.eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_certs::cert;

    #[test]
    fn common_name_matching() {
        assert!(cn_matches("localhost", "LOCALHOST"));
        assert!(cn_matches("*.example.com", "a.Example.com"));
        assert!(!cn_matches("*.example.com", "example.com"));
        assert!(!cn_matches("*.example.com", "a.b.example.com"));
        assert!(!cn_matches("*.example.com", ".example.com"));
        assert!(!cn_matches("localhost", "127.0.0.1"));
        assert!(cn_matches("127.0.0.1", "127.0.0.1"));
        // As the subjectAltName path and OpenSSL: no wildcard over a public suffix or an IP.
        assert!(!cn_matches("*.com", "example.com"));
        assert!(!cn_matches("*.0.0.1", "127.0.0.1"));
        assert!(!cn_matches("*.0.1", "127.0.0.1"));
        assert!(cn_matches("*.example.com", "game.example.com"));
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
}
