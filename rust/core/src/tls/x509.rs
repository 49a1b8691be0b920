//! The few certificate fields webpki does not expose. It also reads the server's certificate
//! before webpki has verified it, so it is network input: every step is bounds-checked and
//! any structure it does not expect makes `parse` return `None`, never a panic.
//!
//! A small DER reader rather than `x509-parser`: that crate would add about ten crates (nom,
//! asn1-rs, der-parser, time, proc-macros) for a handful of fields.

use tokio_rustls::rustls::pki_types::UnixTime;
use tokio_rustls::rustls::{self, CertificateError};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;

/// keyUsage bits (RFC 5280 §4.2.1.3), numbered from the first bit of the BIT STRING.
pub(super) const KU_DIGITAL_SIGNATURE: u16 = 1 << 0;
pub(super) const KU_KEY_CERT_SIGN: u16 = 1 << 5;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// Issuer and subject names are identical (self-signed, as Godot makes them).
    pub self_issued: bool,
    /// Seconds since the Unix epoch (0 for earlier dates).
    pub not_before: u64,
    pub not_after: u64,
    pub common_names: Vec<String>,
    pub has_san: bool,
    /// X.509 version: 1, 2 or 3.
    pub version: u8,
    /// basicConstraints cA.
    pub ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// keyUsage bits (`KU_*`), `None` without the extension (any use allowed).
    pub key_usage: Option<u16>,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Option<CertInfo> {
        let cert = Der(der).expect(SEQUENCE)?;
        let mut tbs = Der(Der(cert).expect(SEQUENCE)?);
        let mut version = 1;
        if tbs.peek() == Some(0xa0) {
            let (_, v) = Der(tbs.next()?.1).next()?;
            version = v.last()?.checked_add(1)?;
        }
        tbs.next()?; // serial
        tbs.expect(SEQUENCE)?; // signature algorithm
        let issuer = tbs.expect(SEQUENCE)?;
        let mut validity = Der(tbs.expect(SEQUENCE)?);
        let not_before = time(validity.next()?)?;
        let not_after = time(validity.next()?)?;
        let subject = tbs.expect(SEQUENCE)?;
        tbs.expect(SEQUENCE)?; // subject public key info
        let mut info = CertInfo {
            self_issued: issuer == subject,
            not_before,
            not_after,
            common_names: common_names(subject)?,
            has_san: false,
            version,
            ca: false,
            path_len: None,
            key_usage: None,
        };
        while let Some((tag, body)) = tbs.next() {
            if tag != 0xa3 {
                continue; // issuer/subject unique ids
            }
            let mut extensions = Der(Der(body).expect(SEQUENCE)?);
            while !extensions.0.is_empty() {
                let mut ext = Der(extensions.expect(SEQUENCE)?);
                let oid = ext.expect(OID)?;
                if ext.peek() == Some(BOOLEAN) {
                    ext.next()?; // critical
                }
                let value = ext.expect(OCTET_STRING)?;
                match oid {
                    OID_SUBJECT_ALT_NAME => info.has_san = true,
                    OID_KEY_USAGE => info.key_usage = Some(key_usage(value)?),
                    OID_BASIC_CONSTRAINTS => {
                        let mut bc = Der(Der(value).expect(SEQUENCE)?);
                        if bc.peek() == Some(BOOLEAN) {
                            info.ca = bc.next()?.1.first().is_some_and(|&b| b != 0);
                        }
                        if bc.peek() == Some(INTEGER) {
                            let n = bc.next()?.1;
                            if n.len() > 4 || n.first().is_some_and(|&b| b & 0x80 != 0) {
                                return None;
                            }
                            info.path_len = Some(n.iter().fold(0, |a, &b| (a << 8) | u32::from(b)));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(info)
    }

    /// Whether the key may be used for `bits` (`KU_*`); true without a keyUsage extension.
    pub fn allows(&self, bits: u16) -> bool {
        self.key_usage.is_none_or(|ku| ku & bits == bits)
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

/// A keyUsage BIT STRING as `KU_*` bits (bit 0 = the first bit of the first byte).
fn key_usage(value: &[u8]) -> Option<u16> {
    let bits = Der(value).expect(BIT_STRING)?;
    let (_unused, bytes) = bits.split_first()?;
    let mut out = 0u16;
    for (i, &byte) in bytes.iter().take(2).enumerate() {
        out |= u16::from(byte.reverse_bits()) << (8 * i);
    }
    Some(out)
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
    use crate::tls::test_certs::cert;

    #[test]
    fn reads_godot_like_certificate() {
        let (der, _) = cert("LocalHost", &[], true);
        let info = CertInfo::parse(&der).unwrap();
        assert_eq!(info.common_names, vec!["LocalHost".to_string()]);
        assert!(!info.has_san);
        assert!(info.self_issued);
        assert_eq!(info.not_before, 981_158_400);
        assert_eq!(info.not_after, 4_102_358_400);
        let (der, _) = cert("x", &["a.example", "b.example"], false);
        let info = CertInfo::parse(&der).unwrap();
        assert!(info.has_san);
        assert_eq!(info.common_names, vec!["x".to_string()]);
    }

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
    fn a_version_byte_of_255_is_refused_not_overflowed() {
        // SEQUENCE { SEQUENCE { [0] { INTEGER 255 } ... } }: stops at the version.
        let der = [0x30, 0x07, 0x30, 0x05, 0xa0, 0x03, 0x02, 0x01, 0xff];
        assert_eq!(CertInfo::parse(&der), None);
    }

    #[test]
    fn truncated_input_is_rejected() {
        assert_eq!(CertInfo::parse(&[]), None);
        assert_eq!(CertInfo::parse(&[0x30, 0x82, 0x01]), None);
        assert_eq!(CertInfo::parse(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01]), None);
    }
}
