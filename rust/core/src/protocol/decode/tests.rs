//! The decoder's rules, one test each, on byte slices.
use super::*;
use crate::frame::{close_payload, encode, Masker};

fn reader_with(bytes: &[u8], max: usize, server: bool) -> Decoder {
    let mut r = Decoder::new(max, server);
    r.buf.extend_from_slice(bytes);
    r
}

fn data(payload: &[u8], text: bool) -> Incoming {
    Incoming::Data {
        data: Bytes::copy_from_slice(payload),
        text,
    }
}

#[test]
fn round_trips_every_length_class_masked_and_not() {
    for len in [0, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        for server_reads in [true, false] {
            let mut wire = Vec::new();
            let mut masker = Masker::new();
            encode(
                &mut wire,
                OP_BINARY,
                &payload,
                server_reads.then_some(&mut masker),
            );
            let mut r = reader_with(&wire, 1 << 20, server_reads);
            assert_eq!(r.parse().unwrap(), Some(data(&payload, false)), "len {len}");
            assert!(r.buf.is_empty());
        }
    }
}

#[test]
fn waits_for_the_whole_frame_and_says_how_much() {
    let mut wire = Vec::new();
    encode(&mut wire, OP_TEXT, "héllo".repeat(100).as_bytes(), None);
    let mut r = reader_with(&wire[..3], 1 << 20, false);
    assert_eq!(r.parse().unwrap(), None);
    r.buf.extend_from_slice(&wire[3..10]);
    assert_eq!(r.parse().unwrap(), None);
    assert_eq!(r.want, wire.len());
    r.buf.extend_from_slice(&wire[10..]);
    assert_eq!(
        r.parse().unwrap(),
        Some(data("héllo".repeat(100).as_bytes(), true))
    );
}

#[test]
fn reassembles_fragments_around_a_ping() {
    // "Hel" (text, not final), ping, "lo" (continuation, final): RFC 6455 5.4.
    let wire = [
        0x01, 0x03, b'H', b'e', b'l', 0x89, 0x01, b'p', 0x80, 0x02, b'l', b'o',
    ];
    let mut r = reader_with(&wire, 100, false);
    assert_eq!(
        r.parse().unwrap(),
        Some(Incoming::Ping(Bytes::from_static(b"p")))
    );
    assert_eq!(r.parse().unwrap(), Some(data(b"Hello", true)));
}

#[test]
fn rejects_what_the_rfc_forbids() {
    let protocol = |wire: &[u8], server: bool| {
        matches!(
            reader_with(wire, 100, server).parse(),
            Err(FrameError::Protocol(_))
        )
    };
    assert!(protocol(&[0xC2, 0x00], false), "RSV1 without extension");
    assert!(protocol(&[0x83, 0x00], false), "reserved opcode");
    assert!(protocol(&[0x09, 0x00], false), "fragmented ping");
    assert!(protocol(&[0x89, 126, 0, 126], false), "126-byte ping");
    assert!(protocol(&[0x80, 0x00], false), "continuation first");
    assert!(
        protocol(&[0x01, 0x00, 0x81, 0x00], false),
        "text inside text"
    );
    assert!(protocol(&[0x82, 0x00], true), "unmasked to a server");
    assert!(
        protocol(&[0x82, 0x80, 1, 2, 3, 4], false),
        "masked to a client"
    );
    assert!(protocol(&[0x88, 0x01, 3], false), "1-byte close payload");
    assert!(
        protocol(&[0x88, 0x02, 0x03, 0xED], false),
        "close code 1005"
    );
    assert!(matches!(
        reader_with(&[0x81, 0x02, 0xC3, 0x28], 100, false).parse(),
        Err(FrameError::Utf8)
    ));
    // Over the limit as soon as the header says so, before the payload arrives.
    assert!(matches!(
        reader_with(&[0x82, 126, 0x01, 0x00], 100, false).parse(),
        Err(FrameError::TooBig {
            size: 256,
            max: 100
        })
    ));
    // Fragments count together.
    let mut wire = vec![0x02, 60];
    wire.extend_from_slice(&[0; 60]);
    wire.extend_from_slice(&[0x80, 60]);
    assert!(matches!(
        reader_with(&wire, 100, false).parse(),
        Err(FrameError::TooBig {
            size: 120,
            max: 100
        })
    ));
    // A continuation claiming 2^64 - 1 bytes after a fragment: too big, not an overflow.
    let mut wire = vec![0x02, 3, 1, 2, 3, 0x80, 127];
    wire.extend_from_slice(&u64::MAX.to_be_bytes());
    assert!(matches!(
        reader_with(&wire, 100, false).parse(),
        Err(FrameError::TooBig {
            size: u64::MAX,
            max: 100
        })
    ));
}

#[test]
fn invalid_utf8_fails_at_its_fragment() {
    // "κ" split across fragments is fine; a byte that can never be UTF-8 fails before FIN.
    let split = [0x01, 0x01, 0xCE, 0x80, 0x01, 0xBA];
    assert_eq!(
        reader_with(&split, 100, false).parse().unwrap(),
        Some(data("κ".as_bytes(), true))
    );
    let bad = [0x01, 0x01, b'a', 0x00, 0x01, 0xFF];
    assert!(matches!(
        reader_with(&bad, 100, false).parse(),
        Err(FrameError::Utf8)
    ));
}

#[test]
fn close_frames() {
    let mut wire = Vec::new();
    encode(&mut wire, OP_CLOSE, &close_payload(4000, "bye"), None);
    encode(&mut wire, OP_CLOSE, &[], None);
    let mut r = reader_with(&wire, 100, false);
    assert_eq!(
        r.parse().unwrap(),
        Some(Incoming::Close(Some((4000, "bye".into()))))
    );
    assert_eq!(r.parse().unwrap(), Some(Incoming::Close(None)));
    let long = "é".repeat(100);
    let p = close_payload(1000, &long);
    assert!(p.len() <= 125 && std::str::from_utf8(&p[2..]).is_ok());
}

/// Plays the connection task's part: follows the read plan over `wire`, up to `limit` bytes.
fn read_from(r: &mut Decoder, wire: &mut &[u8], limit: usize) {
    let take = |wire: &mut &[u8], n: usize| {
        let (now, rest) = wire.split_at(n.min(wire.len()).min(limit));
        *wire = rest;
        now.to_vec()
    };
    match r.read_plan() {
        ReadPlan::Idle => {
            let bytes = take(wire, IDLE_READ);
            r.receive(&bytes);
        }
        ReadPlan::Buffer(ask) => {
            let bytes = take(wire, ask);
            r.buffer().extend_from_slice(&bytes);
            r.filled(bytes.len(), ask);
        }
    }
}

#[test]
fn an_idle_reader_holds_no_buffer_and_a_stream_is_read_a_frame_at_a_time() {
    let mut r = Decoder::new(1 << 20, false);
    let mut wire = Vec::new();
    encode(&mut wire, OP_BINARY, &[7; 300], None);
    let mut rest = &wire[..];
    while r.parse().unwrap().is_none() {
        read_from(&mut r, &mut rest, usize::MAX);
    }
    // Nothing more to read: waiting costs no buffer (the payload went out with its own).
    assert_eq!(r.read_plan(), ReadPlan::Idle);
    assert_eq!(r.buf.capacity(), 0);
    // A burst of 16 KiB frames: after the first, each read asks for a whole frame.
    wire.clear();
    for _ in 0..4 {
        encode(&mut wire, OP_BINARY, &[1; 16384], None);
    }
    let mut rest = &wire[..];
    let mut got = 0;
    while got < 4 {
        match r.parse().unwrap() {
            Some(m) => {
                assert_eq!(m, data(&[1; 16384], false));
                got += 1;
            }
            None => read_from(&mut r, &mut rest, usize::MAX),
        }
    }
    assert_eq!(r.last_frame, 16384 + 4);
    assert!(rest.is_empty());
}

#[test]
fn a_large_frame_header_alone_does_not_allocate_the_whole_frame() {
    let mut r = Decoder::new(8 << 20, false);
    let mut header = vec![0x82, 127];
    header.extend_from_slice(&(4u64 << 20).to_be_bytes());
    r.receive(&header);
    assert_eq!(r.parse().unwrap(), None);
    assert_eq!(r.want, 10 + (4 << 20));
    assert_eq!(r.read_plan(), ReadPlan::Buffer(MAX_READ));
    assert!(r.buf.capacity() <= 2 * MAX_READ, "{}", r.buf.capacity());
}

/// A decoder with permessage-deflate agreed (context takeover both ways).
fn deflate_reader(bytes: &[u8], max: usize, server: bool) -> Decoder {
    let mut r = reader_with(bytes, max, server);
    let agreed = crate::protocol::extension::Agreed::default();
    let ours = crate::config::Compression::default();
    r.inflate_with(crate::protocol::deflate::for_connection(&agreed, &ours, server).1);
    r
}

#[test]
fn compressed_messages_inflate() {
    // RFC 7692 7.2.3.1: "Hello" compressed in one text frame, twice (7.2.3.2: the second
    // refers to the first), then fragmented (7.2.3.1's second example: RSV1 on the first
    // frame only), then an uncompressed "Hello" (RSV1 clear) in between.
    let wire = [
        0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, // "Hello"
        0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00, // "Hello" again, back-reference
        0x81, 0x05, b'H', b'e', b'l', b'l', b'o', // plain
    ];
    let mut r = deflate_reader(&wire, 100, false);
    for _ in 0..3 {
        assert_eq!(r.parse().unwrap(), Some(data(b"Hello", true)));
    }
    let fragmented = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, // first fragment, RSV1
        0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00, // continuation, RSV1 clear
    ];
    let mut r = deflate_reader(&fragmented, 100, false);
    assert_eq!(r.parse().unwrap(), Some(data(b"Hello", true)));
    // A binary one from a client, masked ("c2 07 ..." with the mask bit and a key).
    let key = [1, 2, 3, 4];
    let mut payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    apply_mask(&mut payload, key);
    let mut wire = vec![0xc2, 0x87];
    wire.extend_from_slice(&key);
    wire.extend_from_slice(&payload);
    let mut r = deflate_reader(&wire, 100, true);
    assert_eq!(r.parse().unwrap(), Some(data(b"Hello", false)));
}

#[test]
fn compression_keeps_the_rfc_rules() {
    let fails = |wire: &[u8]| deflate_reader(wire, 100, false).parse().err();
    // RSV1 on a control frame or a continuation frame; RSV2 and RSV3 still mean nothing.
    assert!(matches!(
        fails(&[0xc9, 0x00]),
        Some(FrameError::Protocol(_))
    ));
    assert!(matches!(
        fails(&[0x01, 0x01, b'a', 0xc0, 0x01, b'b']),
        Some(FrameError::Protocol(_))
    ));
    assert!(matches!(
        fails(&[0xa2, 0x00]),
        Some(FrameError::Protocol(_))
    ));
    assert!(matches!(
        fails(&[0x92, 0x00]),
        Some(FrameError::Protocol(_))
    ));
    // Not deflate data (block type 11 is reserved): 1007's cause.
    assert!(matches!(
        fails(&[0xc2, 0x03, 0xff, 0xff, 0xff]),
        Some(FrameError::Inflate(_))
    ));
    // Text that inflates to invalid UTF-8 (a stored block holding 0xff).
    assert!(matches!(
        fails(&[0xc1, 0x06, 0x00, 0x01, 0x00, 0xfe, 0xff, 0xff]),
        Some(FrameError::Utf8)
    ));
}

#[test]
fn a_decompression_bomb_is_refused_at_the_limit() {
    // 1 MiB of zeros compresses to about a KiB: a frame far under the limit on the wire.
    let (mut deflater, _) = crate::protocol::deflate::for_connection(
        &Default::default(),
        &crate::config::Compression::default(),
        false,
    );
    let mut packed = Vec::new();
    deflater.compress(&vec![0u8; 1 << 20], &mut packed);
    assert!(packed.len() < 2048, "{}", packed.len());
    let mut wire = Vec::new();
    encode(&mut wire, OP_BINARY | crate::frame::RSV1, &packed, None);
    let mut r = deflate_reader(&wire, 65535, false);
    assert!(matches!(
        r.parse(),
        Err(FrameError::InflatedTooBig { max: 65535 })
    ));
}
