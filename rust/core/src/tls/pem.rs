//! PEM text as Godot's TLS objects give it, made readable for a strict PEM reader.
//!
//! `X509Certificate.save_to_string()` on a certificate that holds a chain returns every block
//! after the first as U+FFFD directly followed by `-----BEGIN CERTIFICATE-----` on the same
//! line: mbedTLS writes a NUL after each PEM block and Godot's String conversion replaces it.
//! rustls' reader wants each marker at the start of a line and skips the rest, so without this
//! a server would present only its leaf and a trusted bundle would keep only its first CA.

/// `text` with NULs and U+FFFD removed and every `-----BEGIN ` on a line of its own, so that
/// every block is read whatever was written between blocks.
pub(super) fn tidy(text: &str) -> String {
    let clean = text.replace(['\0', '\u{FFFD}'], "");
    let mut out = String::with_capacity(clean.len() + 16);
    for (i, piece) in clean.split("-----BEGIN ").enumerate() {
        if i > 0 {
            out.push_str("\n-----BEGIN ");
        }
        out.push_str(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;

    const A: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    const B: &str = "-----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";

    fn count(pem: &str) -> usize {
        CertificateDer::pem_slice_iter(tidy(pem).as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len()
    }

    #[test]
    fn every_block_of_a_godot_chain_is_read() {
        // What save_to_string() returns for a leaf + intermediate (+ root).
        let godot = format!("{A}\u{FFFD}{B}\u{FFFD}{A}");
        assert_eq!(count(&godot), 3);
        // The raw bytes, had the NUL not been replaced.
        assert_eq!(count(&format!("{A}\0{B}\0")), 2);
        // Blocks glued together with nothing between them, or with CRLF line ends.
        assert_eq!(count(&format!("{}{}", A.trim_end(), B)), 2);
        assert_eq!(count(&format!("{A}{B}").replace('\n', "\r\n")), 2);
    }

    #[test]
    fn ordinary_pem_is_unchanged_in_meaning() {
        assert_eq!(count(A), 1);
        assert_eq!(count(&format!("junk before\n{A}comment\n{B}")), 2);
        assert_eq!(count(""), 0);
        let decoded: Vec<_> =
            CertificateDer::pem_slice_iter(tidy(&format!("{A}\u{FFFD}{B}")).as_bytes())
                .map(|c| c.unwrap().as_ref().to_vec())
                .collect();
        assert_eq!(decoded, vec![vec![0, 1, 2], vec![3, 4, 5]]);
    }
}
