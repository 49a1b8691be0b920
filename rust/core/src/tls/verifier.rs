//! The client's certificate verifier, behaving like the built-in peer's mbedTLS (the rules are
//! listed in the `tls` module docs).

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    self, CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::x509;

/// What the client checks the server's certificate against.
#[derive(Debug)]
pub(super) enum Trust {
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
