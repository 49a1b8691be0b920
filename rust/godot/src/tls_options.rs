//! Godot's `TLSOptions` (and the `null` default) as the core's rustls configurations.
//!
//! Keys and certificates cross as PEM (`save_to_string()`), except a server's certificate
//! chain: Godot 4.6's `X509Certificate.save_to_string()` repeats the first certificate in place
//! of the others, so the chain is read from what Godot's own TLS server sends instead, in one
//! handshake held in memory (`StreamPeerTLS` over [`TlsPipe`], `rust_websocket_core::tls::ChainCapture`
//! on the other end). A trusted CA bundle has no such way out: see [`client_tls`].

use std::collections::VecDeque;

use godot::classes::stream_peer_tls::Status;
use godot::classes::{
    FileAccess, IStreamPeerExtension, ProjectSettings, StreamPeer, StreamPeerTls, TlsOptions,
    X509Certificate,
};
use godot::global::Error;
use godot::meta::conv::RawPtr;
use godot::prelude::*;
use rust_websocket_core::tls::{ChainCapture, ClientTls, ServerTls};

/// The project setting whose certificates replace the default roots, as in the built-in.
const BUNDLE_OVERRIDE: &str = "network/tls/certificate_bundle_override";

/// `TLSOptions` argument that may be omitted (`null`): `#[opt]` needs an immutable default.
#[derive(GodotConvert, Clone, Debug)]
#[godot(transparent)]
pub struct OptTls(pub Option<Gd<TlsOptions>>);

// SAFETY: the only default value is `OptTls(None)`, which holds no object.
unsafe impl godot::meta::GodotImmutable for OptTls {}

/// `TLSOptions.server(key, certificate)`: the key and the whole certificate chain.
pub fn server_tls(options: &Gd<TlsOptions>) -> Result<ServerTls, String> {
    let mut key = options
        .get_private_key()
        .ok_or("TLSOptions.server() has no private key")?;
    let mut cert = options
        .get_own_certificate()
        .ok_or("TLSOptions.server() has no certificate")?;
    let key_pem = key.save_to_string().to_string();
    match served_chain(options) {
        Ok(chain) => ServerTls::with_chain(&key_pem, chain),
        // Godot's server refused the options (e.g. a key it cannot use): the PEM, whose
        // first certificate is right, gives the reason.
        Err(_) => ServerTls::from_pem(&key_pem, &cert.save_to_string().to_string()),
    }
}

/// The chain Godot's TLS server sends with `options`, leaf first.
fn served_chain(
    options: &Gd<TlsOptions>,
) -> Result<Vec<rust_websocket_core::tls::CertificateDer<'static>>, String> {
    let mut capture = ChainCapture::new()?;
    let mut pipe = TlsPipe::new_gd();
    let mut tls = StreamPeerTls::new_gd();
    let mut hello = Vec::new();
    capture.write_to(&mut hello);
    pipe.bind_mut().to_godot.extend(hello);
    if tls.accept_stream(&pipe.clone().upcast::<StreamPeer>(), options) != Error::OK {
        return Err("Godot's TLS server did not start".into());
    }
    // A handful of flights at most; the bound only guards against a loop that never ends.
    for _ in 0..16 {
        let from_godot = std::mem::take(&mut pipe.bind_mut().from_godot);
        capture.read_from(&from_godot)?;
        if let Some(chain) = capture.chain() {
            tls.disconnect_from_stream();
            return Ok(chain);
        }
        let mut out = Vec::new();
        capture.write_to(&mut out);
        pipe.bind_mut().to_godot.extend(out);
        if tls.get_status() != Status::HANDSHAKING {
            break;
        }
        tls.poll();
    }
    tls.disconnect_from_stream();
    Err("Godot's TLS server sent no certificate".into())
}

/// An in-memory `StreamPeer` for [`served_chain`]: what Godot writes, and what it may read.
#[derive(GodotClass)]
#[class(tool, internal, init, base = StreamPeerExtension)]
pub struct TlsPipe {
    to_godot: VecDeque<u8>,
    from_godot: Vec<u8>,
}

#[godot_api]
impl IStreamPeerExtension for TlsPipe {
    unsafe fn get_data_rawptr(
        &mut self,
        r_buffer: RawPtr<*mut u8>,
        r_bytes: i32,
        r_received: RawPtr<*mut i32>,
    ) -> Error {
        self.get_partial_data_rawptr(r_buffer, r_bytes, r_received)
    }

    unsafe fn get_partial_data_rawptr(
        &mut self,
        r_buffer: RawPtr<*mut u8>,
        r_bytes: i32,
        r_received: RawPtr<*mut i32>,
    ) -> Error {
        let n = usize::try_from(r_bytes)
            .unwrap_or(0)
            .min(self.to_godot.len());
        let buffer = r_buffer.ptr();
        for (i, byte) in self.to_godot.drain(..n).enumerate() {
            buffer.add(i).write(byte);
        }
        r_received.ptr().write(n as i32);
        Error::OK
    }

    unsafe fn put_data_rawptr(
        &mut self,
        p_data: RawPtr<*const u8>,
        p_bytes: i32,
        r_sent: RawPtr<*mut i32>,
    ) -> Error {
        self.put_partial_data_rawptr(p_data, p_bytes, r_sent)
    }

    unsafe fn put_partial_data_rawptr(
        &mut self,
        p_data: RawPtr<*const u8>,
        p_bytes: i32,
        r_sent: RawPtr<*mut i32>,
    ) -> Error {
        let n = usize::try_from(p_bytes).unwrap_or(0);
        self.from_godot
            .extend_from_slice(std::slice::from_raw_parts(p_data.ptr(), n));
        r_sent.ptr().write(p_bytes);
        Error::OK
    }

    fn get_available_bytes(&self) -> i32 {
        i32::try_from(self.to_godot.len()).unwrap_or(i32::MAX)
    }
}

/// `TLSOptions.client(...)` / `client_unsafe(...)`: the trusted chain, as PEM.
pub fn client_tls(options: &Gd<TlsOptions>) -> Result<ClientTls, String> {
    let chain = options
        .get_trusted_ca_chain()
        .map(|chain| trusted_pem(&chain));
    ClientTls::new(
        chain.as_deref(),
        &options.get_common_name_override().to_string(),
        options.is_unsafe_client(),
    )
}

/// Every certificate of a trusted chain when Godot lets us have them: the file it was loaded
/// from as a resource (`load("res://ca.crt")`), or `save_to_string()`, which keeps only the
/// first of several (see the module docs). No in-memory handshake helps here: Godot's server
/// will not present a CA certificate (keyUsage without digitalSignature) as its own.
fn trusted_pem(chain: &Gd<X509Certificate>) -> String {
    let path = chain.get_path();
    if !path.is_empty() {
        let text = FileAccess::get_file_as_string(&path).to_string();
        if !text.is_empty() {
            return text;
        }
    }
    let pem = chain.clone().save_to_string().to_string();
    let blocks: Vec<&str> = pem.split("-----BEGIN ").skip(1).collect();
    if blocks.len() > 1
        && blocks
            .iter()
            .all(|b| b.trim_start_matches('\u{FFFD}') == blocks[0])
    {
        godot_warn!(
            "RustWebSocketMultiplayerPeer: the trusted CA chain holds {} certificates, but \
             Godot's X509Certificate.save_to_string() returns the first one {} times, so only \
             the first is trusted. Load the bundle as a resource instead \
             (load(\"res://certs/ca_bundle.crt\")): its file is then read and every \
             certificate in it is trusted.",
            blocks.len(),
            blocks.len()
        );
    }
    pem
}

/// `null` client options: the certificates of the project setting
/// `network/tls/certificate_bundle_override` when it names a file, as the built-in does;
/// `None` (the public roots) otherwise.
pub fn default_client_tls() -> Result<Option<ClientTls>, String> {
    let path = ProjectSettings::singleton()
        .get_setting(BUNDLE_OVERRIDE)
        .try_to::<GString>()
        .unwrap_or_default();
    if path.is_empty() {
        return Ok(None);
    }
    // Read as text: an X509Certificate would keep only the first certificate (module docs).
    let pem = FileAccess::get_file_as_string(&path).to_string();
    ClientTls::new(Some(&pem), "", false)
        .map(Some)
        .map_err(|e| format!("{BUNDLE_OVERRIDE} is '{path}': {e}"))
}
