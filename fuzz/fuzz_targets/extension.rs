//! permessage-deflate negotiation (RFC 7692 section 7.1) both ways: the server reading a
//! client's offers and answering (`extension::server_accept`), the client checking a
//! server's answer (`extension::client_accept`). Checked, beyond no panic:
//! - an agreement has window bits 8 to 15 on both sides;
//! - the server's answer is a header value (visible ASCII), names permessage-deflate once
//!   with each parameter at most once, and is what one of the offers allowed: it comes from
//!   a valid offer (known parameters, none repeated, window bits 8 to 15 without a leading
//!   zero), keeps its window within the one asked, takes no context when asked not to, and
//!   names `client_max_window_bits` only if offered; the client reads that answer as the
//!   same agreement;
//! - the client accepts only one permessage-deflate element with known parameters, none
//!   repeated, a value for each window (it offered `client_max_window_bits` bare), and what
//!   it agrees is what the answer says; with no offer made, it accepts no extension;
//! - our own offer, answered by our own server, is agreed the same on both sides.
//!
//! Input: one byte of settings (ours), then header values separated by newlines.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::{
    client_accept, client_offer, server_accept, Agreed, Compression,
};

const NAME: &str = "permessage-deflate";

/// One element of a header list, read the simple way: `None` for a value that is not one.
type Element = (String, Vec<(String, Option<String>)>);

/// Elements of the values (comma-separated lists), empty ones skipped; `None`: malformed.
fn elements(values: &[&str]) -> Option<Vec<Element>> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut out = Vec::new();
    for part in values.iter().flat_map(|v| v.split(',')) {
        if part.trim().is_empty() {
            continue;
        }
        let mut it = part.split(';').map(str::trim);
        let name = it.next()?.to_string();
        if !token(&name) {
            return None;
        }
        let mut params = Vec::new();
        for p in it {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => {
                    let v = v.trim();
                    let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                        &v[1..v.len() - 1]
                    } else {
                        v
                    };
                    (k.trim(), Some(v))
                }
                None => (p, None),
            };
            if !token(k) || v.is_some_and(|v| !token(v)) {
                return None;
            }
            params.push((k.to_string(), v.map(str::to_string)));
        }
        out.push((name, params));
    }
    Some(out)
}

/// A window size as RFC 7692 writes it: 8 to 15, digits only, no leading zero.
fn bits(v: &str) -> Option<u8> {
    match v.as_bytes() {
        [b'8'] => Some(8),
        [b'9'] => Some(9),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// What a valid offer asks, by name: `None` if the offer is invalid (a server declines it).
#[derive(Debug, Default)]
struct Offer {
    server_no_context: bool,
    server_bits: Option<u8>,
    /// Offered, with its value if it had one.
    client_bits: Option<Option<u8>>,
}

fn offer(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut o = Offer::default();
    let mut seen = Vec::new();
    for (k, v) in params {
        if seen.contains(k) {
            return None;
        }
        seen.push(k.clone());
        match (k.as_str(), v.as_deref()) {
            ("server_no_context_takeover", None) => o.server_no_context = true,
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => o.server_bits = Some(bits(v)?),
            ("client_max_window_bits", None) => o.client_bits = Some(None),
            ("client_max_window_bits", Some(v)) => o.client_bits = Some(Some(bits(v)?)),
            _ => return None,
        }
    }
    Some(o)
}

/// The agreement an answer states, read the simple way: `None` if it is not a valid one
/// (one permessage-deflate element, known parameters once each, windows with a value).
fn answer(values: &[&str]) -> Option<Agreed> {
    let list = elements(values)?;
    let [(name, params)] = list.as_slice() else {
        return None;
    };
    if !name.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut a = Agreed {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut seen = Vec::new();
    for (k, v) in params {
        if seen.contains(k) {
            return None;
        }
        seen.push(k.clone());
        match (k.as_str(), v.as_deref()) {
            ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => a.server_max_window_bits = bits(v)?,
            ("client_max_window_bits", Some(v)) => a.client_max_window_bits = bits(v)?,
            _ => return None,
        }
    }
    Some(a)
}

fn check_bits(a: &Agreed) {
    assert!((8..=15).contains(&a.server_max_window_bits), "{a:?}");
    assert!((8..=15).contains(&a.client_max_window_bits), "{a:?}");
}

/// The server's agreement and answer against the offers.
fn check_server(values: &[&str], ours: &Compression) {
    let Some((agreed, text)) = server_accept(values, ours) else {
        return;
    };
    check_bits(&agreed);
    assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?}");
    let stated = answer(&[&text]).expect("the server's answer is valid");
    assert_eq!(stated, agreed, "the answer says what was agreed: {text}");
    assert_eq!(
        client_accept(&[&text], Some(ours)),
        Ok(Some(agreed)),
        "{text}"
    );
    // Some valid offer allowed exactly this.
    let list = elements(values).expect("an accepted header is well-formed");
    let allowed = list
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(NAME))
        .filter_map(|(_, params)| offer(params))
        .any(|o| {
            let answer_has = |p: &str| text.split(';').any(|x| x.trim().starts_with(p));
            agreed.server_max_window_bits == o.server_bits.unwrap_or(15)
                && answer_has("server_max_window_bits") == o.server_bits.is_some()
                && (!o.server_no_context || agreed.server_no_context_takeover)
                && (!answer_has("client_max_window_bits") || o.client_bits.is_some())
                && (!ours.no_context_takeover
                    || agreed.server_no_context_takeover && agreed.client_no_context_takeover)
        });
    assert!(allowed, "no offer in {values:?} allows {text}");
}

/// The client's reading of an answer against the simple one.
fn check_client(values: &[&str], ours: &Compression) {
    assert!(
        !matches!(client_accept(values, None), Ok(Some(_))),
        "an extension agreed that was not offered: {values:?}"
    );
    match client_accept(values, Some(ours)) {
        Ok(Some(agreed)) => {
            check_bits(&agreed);
            assert_eq!(answer(values), Some(agreed), "{values:?}");
        }
        Ok(None) => {
            let list = elements(values).expect("no extension from a well-formed header");
            assert!(list.is_empty(), "{values:?}");
        }
        Err(_) => assert_eq!(answer(values), None, "a valid answer refused: {values:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let ours = Compression {
        threshold: 0,
        level: u32::from(settings % 10),
        no_context_takeover: settings & 0x80 != 0,
    };
    let text = String::from_utf8_lossy(rest);
    let values: Vec<&str> = text.split('\n').collect();
    check_server(&values, &ours);
    check_client(&values, &ours);
    // Our own pair (either setting each side) agrees.
    let theirs = Compression {
        no_context_takeover: settings & 0x40 != 0,
        ..ours
    };
    let offer = client_offer(&theirs);
    let (agreed, answer_text) = server_accept(&[&offer], &ours).expect("our offer is accepted");
    assert_eq!(
        client_accept(&[&answer_text], Some(&theirs)),
        Ok(Some(agreed))
    );
});
