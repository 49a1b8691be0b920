//! The WebSocket frame format (RFC 6455 section 5) for what we send: opcodes, encoding,
//! client masking. Reading is [`crate::protocol::decode`]. tungstenite does the HTTP
//! upgrade; the frames after it are ours (BENCHMARKS.md says why).

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;
/// First-byte flag of a compressed message's first frame (permessage-deflate, RFC 7692);
/// or it into the opcode given to [`encode`].
pub(crate) const RSV1: u8 = 0x40;

/// Masking keys for a client's frames. RFC 6455 5.3 wants them unpredictable ("derived from a
/// strong source of entropy"): SipHash keyed from the OS's entropy (std's `RandomState`) over
/// a counter, a keyed pseudo-random function, with no extra crate and no system call per frame.
pub(crate) struct Masker {
    keys: std::collections::hash_map::RandomState,
    count: u64,
}

impl Masker {
    pub(crate) fn new() -> Self {
        Masker {
            keys: std::collections::hash_map::RandomState::new(),
            count: 0,
        }
    }

    fn next_key(&mut self) -> [u8; 4] {
        use std::hash::BuildHasher;
        self.count += 1;
        (self.keys.hash_one(self.count) as u32).to_ne_bytes()
    }
}

/// Appends one whole frame to `out`. A client masks its frames (`mask`), a server does not.
/// `opcode` may carry [`RSV1`].
pub(crate) fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<&mut Masker>) {
    let bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(masker) = mask {
        let key = masker.next_key();
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key);
    } else {
        out.extend_from_slice(payload);
    }
}

/// A close frame's payload: the code, then the reason cut to fit 125 bytes on a char boundary.
/// 1005 ("no status") means an empty payload.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    if code == 1005 {
        return Vec::new();
    }
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

/// XORs `buf` with the 4-byte masking key (RFC 6455 5.3), eight bytes at a time.
pub(crate) fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().unwrap()) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keys_differ_from_frame_to_frame() {
        let mut masker = Masker::new();
        let mut keys = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut wire = Vec::new();
            encode(&mut wire, OP_PING, &[], Some(&mut masker));
            assert_eq!(wire.len(), 6);
            keys.insert([wire[2], wire[3], wire[4], wire[5]]);
        }
        assert!(
            keys.len() >= 999,
            "{} distinct keys in 1000 frames",
            keys.len()
        );
    }

    #[test]
    fn mask_matches_the_bytewise_definition() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 3, 8, 13, 64, 1001] {
            let orig: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut fast = orig.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}
