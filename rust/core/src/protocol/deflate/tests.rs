//! Unit tests of permessage-deflate on byte slices.
use super::*;

fn pair(no_context: bool, threshold: usize) -> (Deflater, Inflater) {
    let ours = Compression {
        threshold,
        level: 6,
        no_context_takeover: no_context,
    };
    let agreed = Agreed {
        server_no_context_takeover: no_context,
        client_no_context_takeover: no_context,
        ..Agreed::default()
    };
    for_connection(&agreed, &ours, true)
}

fn deflate(d: &mut Deflater, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    d.compress(data, &mut out);
    out
}

#[test]
fn rfc_7692_examples_inflate() {
    let (_, mut inflater) = pair(false, 0);
    // Section 7.2.3.1: "Hello" compressed, one message.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(inflater.inflate(&hello, 100).unwrap(), b"Hello");
    // Section 7.2.3.2: the same message again with context takeover, referring back.
    assert_eq!(
        inflater
            .inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100)
            .unwrap(),
        b"Hello"
    );
    // Section 7.2.3.3: a stored (uncompressed) block.
    let (_, mut fresh) = pair(true, 0);
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(fresh.inflate(&stored, 100).unwrap(), b"Hello");
    // Section 7.2.3.4: a final block (BFINAL set) then nothing more.
    let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(fresh.inflate(&last, 100).unwrap(), b"Hello");
    // Section 7.2.3.6: an empty message is a single 0x00.
    assert_eq!(fresh.inflate(&[0x00], 100).unwrap(), b"");
}

#[test]
fn hello_compresses_as_in_the_rfc() {
    let (mut deflater, _) = pair(false, 0);
    // Section 7.2.3.1 and 7.2.3.2: the second "Hello" refers to the first.
    assert_eq!(
        deflate(&mut deflater, b"Hello"),
        [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
    assert_eq!(
        deflate(&mut deflater, b"Hello"),
        [0xf2, 0x00, 0x11, 0x00, 0x00]
    );
    // Without context takeover each message stands alone.
    let (mut alone, _) = pair(true, 0);
    for _ in 0..3 {
        assert_eq!(
            deflate(&mut alone, b"Hello"),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }
    assert_eq!(deflate(&mut alone, b""), [0x00]);
}

#[test]
fn round_trips_with_and_without_context() {
    for no_context in [false, true] {
        let (mut deflater, _) = pair(no_context, 0);
        let (_, mut inflater) = pair(no_context, 0);
        for i in 0..50u32 {
            let msg: Vec<u8> = (0..(i * 997) % 70_000)
                .map(|j| ((j / 7) ^ i) as u8)
                .collect();
            let packed = deflate(&mut deflater, &msg);
            assert_eq!(inflater.inflate(&packed, 1 << 20).unwrap(), msg);
        }
    }
}

#[test]
fn small_windows_are_readable_by_their_size() {
    // What a peer with an 8-bit window would see: no match farther than 256 bytes back.
    let agreed = Agreed {
        server_max_window_bits: 8,
        ..Agreed::default()
    };
    let (mut deflater, _) = for_connection(&agreed, &Compression::default(), true);
    let msg: Vec<u8> = (0..20_000u32).map(|i| (i % 300) as u8).collect();
    let packed = deflate(&mut deflater, &msg);
    let mut tail = packed.clone();
    tail.extend_from_slice(&TAIL);
    let mut narrow = Decompress::new_with_window_bits(false, 9);
    let mut out = Vec::with_capacity(msg.len() + 1);
    narrow
        .decompress_vec(&tail, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(out, msg);
}

#[test]
fn threshold() {
    let (mut deflater, _) = pair(false, 100);
    assert!(!deflater.wants(&[b'a'; 99]));
    assert!(deflater.wants(&[b'a'; 100]));
}

/// Which of `messages` the deflater compresses, in order, each sent as it decides.
fn compressed(deflater: &mut Deflater, messages: &[Vec<u8>]) -> Vec<bool> {
    let mut out = Vec::new();
    messages
        .iter()
        .map(|m| {
            let yes = deflater.wants(m);
            if yes {
                deflater.compress(m, &mut out);
                out.clear();
            }
            yes
        })
        .collect()
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn incompressible_data_stops_being_compressed_and_text_resumes_it() {
    for no_context in [false, true] {
        let (mut deflater, _) = pair(no_context, 0);
        let random: Vec<Vec<u8>> = (0..600).map(|i| noise(4096, i)).collect();
        let got = compressed(&mut deflater, &random);
        let tried: Vec<usize> = (0..got.len()).filter(|&i| got[i]).collect();
        // 1 skipped after the first, then 2, 4, ... 256, 512 (and up to 1024).
        assert_eq!(
            tried,
            [0, 2, 5, 10, 19, 36, 69, 134, 263, 520],
            "{no_context}"
        );
        // Compressible data is compressed again at once: its sample says so.
        let text = b"{\"player\": 1, \"x\": 10}".repeat(100);
        let next = compressed(&mut deflater, &vec![text.clone(); 20]);
        assert!(next.iter().all(|&c| c), "{next:?}");
    }
}

#[test]
fn a_long_random_stream_is_compressed_once_in_a_thousand() {
    let (mut deflater, _) = pair(false, 0);
    let random: Vec<Vec<u8>> = (0..5000).map(|i| noise(16384, i)).collect();
    let tries = compressed(&mut deflater, &random)
        .iter()
        .filter(|&&c| c)
        .count();
    // 12 to reach the longest skip (after 2047 messages), then one per 1025.
    assert_eq!(tries, 14);
}

#[test]
fn data_that_repeats_only_in_long_runs_is_found_by_the_retry() {
    // The same random block again and again: deflate shrinks it (the block is in its
    // window) but every sample looks random, so only the periodic retry finds it.
    let (mut deflater, _) = pair(false, 0);
    let random: Vec<Vec<u8>> = (0..40).map(|i| noise(4096, i)).collect();
    compressed(&mut deflater, &random);
    let block = noise(4096, 99);
    let got = compressed(&mut deflater, &vec![block; 200]);
    // The first retry puts the block in the window (it does not shrink: skip on), the
    // next one shrinks it, and from then on every message is compressed.
    let kept = got.iter().rposition(|&c| !c).map_or(0, |i| i + 1);
    assert!(kept <= 128, "{kept} {got:?}");
    assert_eq!(
        got.iter().filter(|&&c| c).count(),
        200 - kept + 1,
        "{got:?}"
    );
}

#[test]
fn the_sample_tells_random_bytes_from_structured_data() {
    for seed in 0..2000 {
        for len in [128, 300, 512, 16384] {
            assert!(!looks_compressible(&noise(len, seed)), "{seed} {len}");
        }
    }
    let json = br#"{"name": "player 17", "score": 1234, "pos": [10.5, -3.25]}, "#.repeat(40);
    assert!(looks_compressible(&json));
    let text = b"Habe nun, ach! Philosophie, Juristerei und Medizin, ".repeat(20);
    assert!(looks_compressible(&text));
    // Game state: little-endian ints and floats, small values and zero bytes.
    let state: Vec<u8> = (0..100u32)
        .flat_map(|i| {
            let mut e = Vec::new();
            e.extend_from_slice(&2u32.to_le_bytes());
            e.extend_from_slice(&i.to_le_bytes());
            for v in [i as f32 * 1.5, 7.25, -(i as f32), 0.5] {
                e.extend_from_slice(&v.to_le_bytes());
            }
            e
        })
        .collect();
    assert!(looks_compressible(&state));
    // Too short to tell.
    assert!(!looks_compressible(&[0u8; 127]));
}

/// Skipped messages go out plain (RSV1 clear), so the other side's context has only the
/// compressed ones: a later compressed message still inflates.
#[test]
fn skipping_keeps_both_contexts_in_step() {
    let (mut deflater, mut inflater) = pair(false, 0);
    let text = b"the same words again and again, ".repeat(40);
    for (i, m) in [noise(2000, 1), noise(2000, 2), text.clone(), text.clone()]
        .iter()
        .enumerate()
    {
        if deflater.wants(m) {
            let mut out = Vec::new();
            deflater.compress(m, &mut out);
            assert_eq!(&inflater.inflate(&out, 1 << 20).unwrap(), m, "#{i}");
        }
    }
}

/// The direct send path (the game's thread) and the task share one skip count: the path sends
/// a skipped message as it is and takes one from the count, never one that looks
/// compressible, and what the task compresses meanwhile still inflates in order.
#[test]
fn the_direct_path_uses_up_the_same_skips() {
    for no_context in [false, true] {
        let (mut deflater, mut inflater) = pair(no_context, 0);
        let direct = deflater.skipping();
        let mut sent_compressed = Vec::new();
        let mut send = |deflater: &mut Deflater, m: &[u8]| {
            assert!(deflater.wants(m), "{no_context}");
            sent_compressed.push((m.to_vec(), deflate(deflater, m)));
        };
        // Nothing to skip yet: every message is the compressor's.
        assert!(!direct.take(&noise(4096, 1)), "{no_context}");
        send(&mut deflater, &noise(4096, 2));
        // It did not shrink: the next one is skipped, here by the direct path.
        assert!(direct.take(&noise(4096, 3)), "{no_context}");
        assert!(!direct.take(&noise(4096, 4)), "{no_context}");
        // None left: the task tries again, and now skips two.
        send(&mut deflater, &noise(4096, 5));
        let text = b"{\"player\": 1, \"x\": 10}".repeat(100);
        // Compressible data is left to the task, which compresses it and ends the skipping.
        assert!(!direct.take(&text), "{no_context}");
        send(&mut deflater, &text);
        assert!(!direct.take(&noise(4096, 6)), "{no_context}");
        send(&mut deflater, &text);
        for (i, (m, packed)) in sent_compressed.iter().enumerate() {
            assert_eq!(&inflater.inflate(packed, 1 << 20).unwrap(), m, "#{i}");
        }
    }
}

#[test]
fn a_bomb_stops_at_the_limit() {
    let (mut deflater, _) = pair(true, 0);
    let bomb = deflate(&mut deflater, &vec![0u8; 10 << 20]);
    assert!(bomb.len() < 20 * 1024, "{} bytes", bomb.len());
    let (_, mut inflater) = pair(false, 0);
    assert_eq!(inflater.inflate(&bomb, 65535), Err(InflateError::TooBig));
    // Exactly at the limit is fine.
    let exact = deflate(&mut deflater, &vec![7u8; 65535]);
    let (_, mut inflater) = pair(false, 0);
    assert_eq!(inflater.inflate(&exact, 65535).unwrap().len(), 65535);
    assert_eq!(inflater.inflate(&exact, 65534), Err(InflateError::TooBig));
}

#[test]
fn garbage_is_corrupt() {
    let (_, mut inflater) = pair(false, 0);
    // Block type 11 is reserved.
    assert!(matches!(
        inflater.inflate(&[0xff, 0xff, 0xff], 1000),
        Err(InflateError::Corrupt(_))
    ));
}
