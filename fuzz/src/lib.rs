//! What the fuzz targets share: a reference frame decoder to hold the real one to, the way
//! an input says where a byte stream is split into socket reads, and a protocol session
//! driven as the connection task drives it.

pub mod heap;
pub mod reference;
pub mod session;

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

/// Read sizes for a stream, chosen by the fuzzer: each byte of `sizes` is one read's
/// maximum (small ones often, so headers and UTF-8 sequences are cut everywhere), then the
/// reads are as large as the reader asks.
pub struct Splits<'a> {
    sizes: &'a [u8],
}

impl<'a> Splits<'a> {
    pub fn new(sizes: &'a [u8]) -> Self {
        Splits { sizes }
    }

    /// The most the next read may take.
    pub fn next_max(&mut self) -> usize {
        match self.sizes.split_first() {
            Some((&b, rest)) => {
                self.sizes = rest;
                read_size(b)
            }
            None => usize::MAX,
        }
    }
}

/// A read size from one byte: 1 to 64 bytes for most values, a few larger ones.
pub fn read_size(b: u8) -> usize {
    match b {
        0..=191 => usize::from(b % 64) + 1,
        192..=223 => usize::from(b - 190) * 16,
        224..=247 => 4096,
        _ => usize::MAX,
    }
}

/// `data` cut as `(head, rest)` at a length given by its first two bytes (little-endian),
/// capped by what is there.
pub fn take_prefix(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (&[], data);
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    data[2..].split_at(n)
}
