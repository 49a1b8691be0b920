//! The DER reader for certificate fields (tls/x509.rs), which reads the server's certificate
//! before webpki has verified it. Checked: no panic, overflow or out-of-bounds read on any
//! input; every question the verifier asks of a parsed certificate answers.
//!
//! Input: a DER certificate.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::parse_certificate;

fuzz_target!(|data: &[u8]| {
    let _ = parse_certificate(data);
});
