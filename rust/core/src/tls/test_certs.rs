//! Certificates made at test time for the unit tests (no key is committed).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::pki_types::CertificateDer;

pub(crate) fn cert(cn: &str, sans: &[&str], ca: bool) -> (CertificateDer<'static>, KeyPair) {
    let (cert, key) = cert_pem(cn, sans, ca);
    (cert.der().clone(), key)
}

pub(crate) fn cert_pem(cn: &str, sans: &[&str], ca: bool) -> (rcgen::Certificate, KeyPair) {
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
