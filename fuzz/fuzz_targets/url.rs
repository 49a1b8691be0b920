//! The URL a client is given (url::WsUrl::parse), as a game may take it from a player or a
//! server list. Checked: no panic; an accepted URL has a host, a port above 0 and a resource
//! starting with `/`, and what it prints (the request's URL) parses back to the same scheme,
//! host, port and resource.
//!
//! Input: the URL (UTF-8).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::url::WsUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = WsUrl::parse(text) else {
        return;
    };
    assert!(!url.host.is_empty());
    assert!(url.port > 0);
    assert!(url.resource.starts_with('/'));
    let printed = url.to_string();
    let again = WsUrl::parse(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e}"));
    assert_eq!(
        (again.secure, &again.host, again.port, &again.resource),
        (url.secure, &url.host, url.port, &url.resource),
        "{printed:?}"
    );
});
