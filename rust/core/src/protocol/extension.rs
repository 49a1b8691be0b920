//! permessage-deflate negotiation (RFC 7692 section 7.1), as pure functions on header values:
//! the server chooses among a client's offers and builds its answer; the client makes its
//! offer and checks the server's answer. What was agreed ([`Agreed`]) sets up
//! [`super::deflate`] for the connection. A peer that offers nothing (Godot's built-in peer,
//! browsers with compression off) gets no answer header and plain frames.

use crate::config::Compression;

const NAME: &str = "permessage-deflate";
/// LZ77 window when none is named (RFC 7692 section 7.1.2).
pub(crate) const MAX_WINDOW_BITS: u8 = 15;

/// The parameters both sides use for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server compresses with, 8 to 15.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window the client compresses with, 8 to 15.
    pub client_max_window_bits: u8,
}

impl Default for Agreed {
    fn default() -> Self {
        Agreed {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// One element of a `Sec-WebSocket-Extensions` list: a name and its parameters.
struct Element<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<&'a str>)>,
}

/// Parses the header's values (a comma-separated list each, possibly repeated). Quoted
/// parameter values are unquoted; empty list elements are skipped. `None`: malformed.
fn parse<'a>(values: &[&'a str]) -> Option<Vec<Element<'a>>> {
    let mut out = Vec::new();
    for value in values {
        for element in value.split(',') {
            if element.trim().is_empty() {
                continue;
            }
            let mut parts = element.split(';');
            let name = parts.next()?.trim();
            if !is_token(name) {
                return None;
            }
            let mut params = Vec::new();
            for param in parts {
                let (key, value) = match param.split_once('=') {
                    Some((k, v)) => {
                        let v = v.trim();
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or(v);
                        (k.trim(), Some(v))
                    }
                    None => (param.trim(), None),
                };
                if !is_token(key) || value.is_some_and(|v| !is_token(v)) {
                    return None;
                }
                params.push((key, value));
            }
            out.push(Element { name, params });
        }
    }
    Some(out)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A window size parameter's value: 8 to 15, digits only, no leading zero (RFC 7692 section
/// 7.1.2.1: `1*DIGIT`). Checked before `parse`, which would take a sign (`+9`).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|n| (8..=15).contains(n))
}

/// Server: the first permessage-deflate offer in `values` (the request's
/// `Sec-WebSocket-Extensions`) that it can honour, as agreed parameters and the answer
/// header's value. Every valid offer can be honoured (any window the client asks the server
/// to keep within, either context takeover); an offer with unknown, repeated or invalid
/// parameters is declined and the next one tried (section 5). `None`: plain frames.
pub(crate) fn server_accept(values: &[&str], ours: &Compression) -> Option<(Agreed, String)> {
    parse(values)?
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(NAME))
        .find_map(|offer| accept_offer(offer, ours))
}

fn accept_offer(offer: &Element<'_>, ours: &Compression) -> Option<(Agreed, String)> {
    let mut agreed = Agreed::default();
    let mut server_bits_asked = false;
    let mut seen: Vec<&str> = Vec::new();
    for &(key, value) in &offer.params {
        if seen.contains(&key) {
            return None;
        }
        seen.push(key);
        match (key, value) {
            ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
            // A hint that the client resets its compressor anyway: nothing to answer.
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => {
                agreed.server_max_window_bits = window_bits(v)?;
                server_bits_asked = true;
            }
            // The client accepts a limit on its window: the server need not set one (its
            // decompressor always has room for 15 bits).
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    if ours.no_context_takeover {
        // The server may ask for both (sections 7.1.1.1 and 7.1.1.2): no state kept between
        // messages on this connection, either way.
        agreed.server_no_context_takeover = true;
        agreed.client_no_context_takeover = true;
    }
    let mut answer = String::from(NAME);
    if agreed.server_no_context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    if agreed.client_no_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    if server_bits_asked {
        answer.push_str(&format!(
            "; server_max_window_bits={}",
            agreed.server_max_window_bits
        ));
    }
    Some((agreed, answer))
}

/// Client: the offer (its `Sec-WebSocket-Extensions` value). It lets the server limit the
/// client's window and, with no context takeover, asks for it both ways.
pub(crate) fn client_offer(ours: &Compression) -> String {
    let mut offer = format!("{NAME}; client_max_window_bits");
    if ours.no_context_takeover {
        offer.push_str("; server_no_context_takeover; client_no_context_takeover");
    }
    offer
}

/// Client: checks the server's answer (`values`, the response's `Sec-WebSocket-Extensions`)
/// against what was offered (`ours`: `None` when nothing was). `Ok(None)`: no extension, plain
/// frames. `Err`: the answer names something not offered or is malformed, and the client
/// must fail the connection (RFC 6455 section 4.1, RFC 7692 section 5).
pub(crate) fn client_accept(
    values: &[&str],
    ours: Option<&Compression>,
) -> Result<Option<Agreed>, String> {
    let elements = parse(values).ok_or_else(|| {
        format!(
            "malformed Sec-WebSocket-Extensions in the server's answer: {}",
            values.join(", ")
        )
    })?;
    let element = match (elements.as_slice(), ours) {
        ([], _) => return Ok(None),
        ([one], Some(_)) if one.name.eq_ignore_ascii_case(NAME) => one,
        _ => {
            return Err(format!(
                "the server agreed to extensions that were not offered: {}",
                values.join(", ")
            ))
        }
    };
    let mut agreed = Agreed::default();
    let mut seen: Vec<&str> = Vec::new();
    for &(key, value) in &element.params {
        let bad = || format!("invalid permessage-deflate answer from the server: {key}");
        if seen.contains(&key) {
            return Err(bad());
        }
        seen.push(key);
        match (key, value) {
            ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => agreed.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                agreed.server_max_window_bits = window_bits(v).ok_or_else(bad)?;
            }
            // Offered without a value, so the answer must carry one (section 7.1.2.2).
            ("client_max_window_bits", Some(v)) => {
                agreed.client_max_window_bits = window_bits(v).ok_or_else(bad)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok(Some(agreed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Compression {
        Compression::default()
    }

    fn no_context() -> Compression {
        Compression {
            no_context_takeover: true,
            ..Compression::default()
        }
    }

    #[test]
    fn server_accepts_a_plain_offer() {
        let (agreed, answer) = server_accept(&["permessage-deflate"], &on()).unwrap();
        assert_eq!(agreed, Agreed::default());
        assert_eq!(answer, "permessage-deflate");
    }

    #[test]
    fn server_honours_what_the_client_asks() {
        let offer = "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; \
                     client_max_window_bits; client_no_context_takeover";
        let (agreed, answer) = server_accept(&[offer], &on()).unwrap();
        assert!(agreed.server_no_context_takeover);
        assert!(!agreed.client_no_context_takeover);
        assert_eq!(agreed.server_max_window_bits, 9);
        assert_eq!(agreed.client_max_window_bits, 15);
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"
        );
        // A window of 8 bits is honoured too (compressed with a 9-bit window, see deflate).
        let (agreed, answer) =
            server_accept(&["permessage-deflate; server_max_window_bits=8"], &on()).unwrap();
        assert_eq!(agreed.server_max_window_bits, 8);
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=8");
        // Quoted values (RFC 7692 section 7.1.2.1 allows them).
        let (agreed, _) = server_accept(
            &["permessage-deflate; server_max_window_bits=\"10\""],
            &on(),
        )
        .unwrap();
        assert_eq!(agreed.server_max_window_bits, 10);
    }

    #[test]
    fn server_with_no_context_takeover_asks_both_ways() {
        let (agreed, answer) = server_accept(
            &["permessage-deflate; client_max_window_bits"],
            &no_context(),
        )
        .unwrap();
        assert!(agreed.server_no_context_takeover && agreed.client_no_context_takeover);
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn server_declines_invalid_offers_and_takes_the_next() {
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=1x",
            // Found by the `extension` fuzz target: a sign is not a digit.
            "permessage-deflate; server_max_window_bits=+09",
            "permessage-deflate; client_max_window_bits=+10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(server_accept(&[bad], &on()), None, "{bad}");
        }
        // Declined first, accepted second (the client's order of preference).
        let (agreed, _) = server_accept(
            &[
                "permessage-deflate; server_max_window_bits=20, permessage-deflate; \
                 client_no_context_takeover",
                "permessage-deflate",
            ],
            &on(),
        )
        .unwrap();
        assert_eq!(agreed, Agreed::default());
        // Other extensions are skipped; two header lines are one list.
        assert!(server_accept(&["foo; bar=1", "PerMessage-Deflate"], &on()).is_some());
    }

    #[test]
    fn client_offer_and_answers() {
        assert_eq!(
            client_offer(&on()),
            "permessage-deflate; client_max_window_bits"
        );
        assert_eq!(
            client_offer(&no_context()),
            "permessage-deflate; client_max_window_bits; server_no_context_takeover; \
             client_no_context_takeover"
        );
        assert_eq!(client_accept(&[], Some(&on())), Ok(None));
        assert_eq!(client_accept(&[], None), Ok(None));
        assert_eq!(
            client_accept(&["permessage-deflate"], Some(&on())),
            Ok(Some(Agreed::default()))
        );
        let agreed = client_accept(
            &[
                "permessage-deflate; client_no_context_takeover; client_max_window_bits=9; \
               server_max_window_bits=10; server_no_context_takeover",
            ],
            Some(&on()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            agreed,
            Agreed {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: 9,
            }
        );
    }

    #[test]
    fn client_refuses_answers_it_did_not_ask_for() {
        for (answer, ours) in [
            ("permessage-deflate", None),
            ("x-custom", Some(on())),
            ("permessage-deflate, permessage-deflate", Some(on())),
            ("permessage-deflate; client_max_window_bits", Some(on())),
            ("permessage-deflate; server_max_window_bits=16", Some(on())),
            ("permessage-deflate; server_max_window_bits=+9", Some(on())),
            ("permessage-deflate; client_max_window_bits=+15", Some(on())),
            ("permessage-deflate; mystery", Some(on())),
            (
                "permessage-deflate; server_no_context_takeover=yes",
                Some(on()),
            ),
            ("permessage-deflate;;", Some(on())),
        ] {
            assert!(client_accept(&[answer], ours.as_ref()).is_err(), "{answer}");
        }
    }

    #[test]
    fn every_offer_the_client_makes_is_accepted_by_the_server() {
        for ours in [on(), no_context()] {
            let offer = client_offer(&ours);
            let (server_view, answer) = server_accept(&[&offer], &ours).unwrap();
            let client_view = client_accept(&[&answer], Some(&ours)).unwrap().unwrap();
            assert_eq!(server_view, client_view);
        }
    }
}
