//! The certificate chain a TLS server sends, read by a rustls client that runs without a
//! socket: bytes in, bytes out.
//!
//! Godot 4.6's `X509Certificate.save_to_string()` (and `save()`) writes the first certificate
//! of a chain once per certificate in it (the loop reads `cert.raw` instead of `crt->raw`), so
//! a server certificate loaded from a `fullchain.pem` cannot be read back as PEM. Godot's own
//! TLS server still sends the whole chain; the Godot layer runs one in-memory handshake against
//! it (`StreamPeerTLS.accept_stream` with the game's `TLSOptions`) and this client takes the
//! chain out of the server's Certificate message, then ends the handshake.

use std::sync::{Arc, Mutex};

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme,
};

use super::provider;

type Chain = Vec<CertificateDer<'static>>;

/// Where the verifier puts the chain; it then fails the handshake on purpose.
#[derive(Debug, Default)]
struct Grab(Mutex<Option<Chain>>);

impl ServerCertVerifier for Grab {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(chain);
        Err(rustls::Error::General("chain captured".into()))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("chain captured".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One capture: feed it the server's bytes and send what it writes, until [`ChainCapture::chain`].
pub struct ChainCapture {
    conn: ClientConnection,
    grab: Arc<Grab>,
}

impl ChainCapture {
    pub fn new() -> Result<ChainCapture, String> {
        let grab = Arc::new(Grab::default());
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(grab.clone())
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("a valid name");
        let conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        Ok(ChainCapture { conn, grab })
    }

    /// Appends to `out` what the client has to send (its ClientHello first).
    pub fn write_to(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Takes the server's bytes. `Err` when the handshake failed before a chain arrived.
    pub fn read_from(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return match self.chain_ready() {
                    true => Ok(()),
                    false => Err(e.to_string()),
                };
            }
        }
        Ok(())
    }

    fn chain_ready(&self) -> bool {
        self.grab.0.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    /// The server's certificates, leaf first, once its Certificate message has arrived.
    pub fn chain(&self) -> Option<Chain> {
        self.grab.0.lock().ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_certs::cert_pem;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use tokio_rustls::rustls::{ServerConfig, ServerConnection};

    /// A rustls server stands in for Godot's here; the Godot suite runs it against Godot's.
    #[test]
    fn reads_the_whole_chain_a_server_sends() {
        let (a, key) = cert_pem("localhost", &["localhost"], false);
        let (b, _) = cert_pem("intermediate", &[], true);
        let chain = vec![a.der().clone(), b.der().clone()];
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key)
            .unwrap();
        let mut server = ServerConnection::new(Arc::new(config)).unwrap();
        let mut capture = ChainCapture::new().unwrap();
        for _ in 0..10 {
            let mut to_server = Vec::new();
            capture.write_to(&mut to_server);
            let mut slice = to_server.as_slice();
            while !slice.is_empty() {
                server.read_tls(&mut slice).unwrap();
            }
            let _ = server.process_new_packets();
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            capture.read_from(&to_client).unwrap();
            if capture.chain().is_some() {
                break;
            }
        }
        assert_eq!(capture.chain(), Some(chain));
    }
}
