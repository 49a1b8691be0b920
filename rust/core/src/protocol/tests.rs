//! One test per rule of the protocol, fed byte slices and instants: no socket, no runtime.

use std::time::{Duration, Instant};

use super::decode::{Decoder, Incoming};
use super::*;
use crate::frame::{close_payload, encode, Masker, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

const MAX: usize = 1000;
const BEAT: Duration = Duration::from_secs(1);

/// A connection as the server (`server`) or the client, with a heartbeat or not.
struct Side {
    proto: Protocol,
    t0: Instant,
    /// Decodes what we send, as the other side would.
    peer: Decoder,
    /// The other side masks its frames when we are the server.
    peer_masker: Option<Masker>,
}

impl Side {
    fn new(server: bool, heartbeat: Option<Duration>) -> Side {
        let t0 = Instant::now();
        Side {
            proto: Protocol::new(Decoder::new(MAX, server), heartbeat, TIMEOUTS, t0),
            t0,
            peer: Decoder::new(1 << 20, !server),
            peer_masker: server.then(Masker::new),
        }
    }

    fn server() -> Side {
        Side::new(true, None)
    }

    fn client() -> Side {
        Side::new(false, None)
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// The other side sends a frame.
    fn peer_sends(&mut self, opcode: u8, payload: &[u8]) {
        let mut wire = Vec::new();
        encode(&mut wire, opcode, payload, self.peer_masker.as_mut());
        self.proto.decoder().receive(&wire);
    }

    /// Everything for the game, at `ms`.
    fn outputs(&mut self, ms: u64) -> Vec<Output> {
        let now = self.at(ms);
        std::iter::from_fn(|| self.proto.poll_output(now)).collect()
    }

    /// What we hand to the socket, as the other side decodes it (the bytes count as written).
    fn wire(&mut self, ms: u64) -> Vec<Incoming> {
        let mut buf = Vec::new();
        self.proto.poll_transmit(&mut buf);
        self.proto.on_written(self.at(ms));
        self.peer.receive(&buf);
        std::iter::from_fn(|| self.peer.parse().expect("we send valid frames")).collect()
    }
}

fn message(data: &[u8], text: bool) -> Output {
    Output::Message {
        data: Bytes::copy_from_slice(data),
        text,
    }
}

fn close(code: u16, reason: &str) -> Incoming {
    Incoming::Close(Some((code, reason.into())))
}

fn status(code: i32, reason: &str) -> Output {
    Output::CloseStatus {
        code,
        reason: reason.into(),
    }
}

#[test]
fn messages_are_delivered_whole_and_in_order() {
    let mut s = Side::server();
    s.peer_sends(OP_TEXT, b"hello");
    s.peer_sends(OP_BINARY, &[1, 2, 3]);
    assert_eq!(
        s.outputs(0),
        [message(b"hello", true), message(&[1, 2, 3], false)]
    );
    assert!(s.proto.end().is_none());
}

#[test]
fn what_the_game_sends_goes_out_in_order_masked_by_a_client_only() {
    for server in [true, false] {
        let mut s = Side::new(server, None);
        assert!(s.proto.send(b"a", true));
        assert!(s.proto.send(&[9; 300], false));
        let mut raw = Vec::new();
        s.proto.poll_transmit(&mut raw);
        assert_eq!(raw[1] & 0x80 != 0, !server, "mask bit, server = {server}");
        s.peer.receive(&raw);
        assert_eq!(
            s.peer.parse().unwrap(),
            Some(Incoming::Data {
                data: Bytes::from_static(b"a"),
                text: true
            })
        );
        assert_eq!(
            s.peer.parse().unwrap(),
            Some(Incoming::Data {
                data: Bytes::from(vec![9; 300]),
                text: false
            })
        );
    }
}

#[test]
fn a_ping_is_answered_with_its_payload() {
    let mut s = Side::server();
    s.peer_sends(OP_PING, b"are you there");
    assert_eq!(s.outputs(0), []);
    assert_eq!(
        s.wire(0),
        [Incoming::Pong(Bytes::from_static(b"are you there"))]
    );
}

#[test]
fn a_ping_flood_gets_bounded_pongs_and_the_latest_is_answered() {
    let mut s = Side::server();
    for i in 0..1000u32 {
        s.peer_sends(OP_PING, &i.to_be_bytes());
    }
    s.outputs(0);
    let pongs = s.wire(0);
    assert_eq!(pongs.len(), MAX_PENDING_PONGS + 1);
    assert_eq!(
        pongs.last(),
        Some(&Incoming::Pong(Bytes::copy_from_slice(
            &999u32.to_be_bytes()
        )))
    );
}

#[test]
fn the_heartbeat_pings_measures_and_declares_a_silent_peer_dead() {
    let mut s = Side::new(true, Some(BEAT));
    assert_eq!(s.proto.poll_timeout(), Some(s.at(1000)));
    s.proto.handle_timeout(s.at(1000));
    let Some(Incoming::Ping(token)) = s.wire(1000).pop() else {
        panic!("no ping");
    };
    // An unsolicited pong does not count; the answer does.
    s.peer_sends(OP_PONG, b"alive");
    s.peer_sends(OP_PONG, &token);
    assert_eq!(s.outputs(1030), [Output::Rtt(30_000)]);
    // Next interval: a ping nobody answers, then the verdict.
    s.proto.handle_timeout(s.at(2000));
    assert!(matches!(s.wire(2000)[..], [Incoming::Ping(_)]));
    s.proto.handle_timeout(s.at(3000));
    assert_eq!(s.proto.end(), Some(&End::Closed));
    assert!(s.wire(3000).is_empty(), "no close frame to a dead peer");
}

#[test]
fn no_heartbeat_verdict_while_reading_was_paused() {
    let mut s = Side::new(true, Some(BEAT));
    s.proto.handle_timeout(s.at(1000));
    s.wire(1000);
    s.proto.set_paused(true);
    s.proto.set_paused(false);
    s.proto.handle_timeout(s.at(2000));
    assert_eq!(s.proto.end(), None);
    s.proto.handle_timeout(s.at(3000));
    assert_eq!(s.proto.end(), Some(&End::Closed));
}

#[test]
fn a_server_answers_the_peers_close_and_ends_once_the_answer_is_out() {
    let mut s = Side::server();
    s.peer_sends(OP_CLOSE, &close_payload(4000, "bye"));
    assert_eq!(
        s.outputs(0),
        [
            status(4000, "bye"),
            Output::CloseRequested {
                code: 4000,
                reason: "bye".into()
            }
        ]
    );
    assert!(s.proto.closing() && !s.proto.wants_read());
    assert_eq!(s.proto.end(), None, "not before the answer is written");
    assert_eq!(s.wire(1), [close(4000, "bye")]);
    assert_eq!(s.proto.end(), Some(&End::Closed));
    assert!(s.proto.close_received());
}

#[test]
fn a_close_without_a_code_is_answered_without_one() {
    let mut s = Side::server();
    s.peer_sends(OP_CLOSE, &[]);
    assert_eq!(s.outputs(0)[0], status(1005, ""));
    assert_eq!(s.wire(0), [Incoming::Close(None)]);
}

#[test]
fn a_client_drops_what_follows_the_servers_close_and_waits_briefly_for_its_tcp_close() {
    let mut s = Side::client();
    s.peer_sends(OP_CLOSE, &close_payload(1001, "going away"));
    s.peer_sends(OP_TEXT, b"too late");
    let out = s.outputs(0);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(s.wire(0), [close(1001, "going away")]);
    assert!(s.proto.wants_read());
    assert_eq!(s.proto.poll_timeout(), Some(s.at(100)));
    s.proto.handle_timeout(s.at(100));
    assert_eq!(s.proto.end(), Some(&End::Closed));
}

#[test]
fn our_close_follows_what_was_sent_before_and_nothing_after() {
    let mut s = Side::client();
    s.proto.ask_close(s.at(0), false);
    assert!(s.proto.send(b"last words", true));
    s.proto.close(4001, "done", s.at(0));
    assert!(!s.proto.send(b"after", true));
    s.peer_sends(OP_PING, b"x"); // Not answered after our close.
    s.outputs(0);
    assert_eq!(
        s.wire(0),
        [
            Incoming::Data {
                data: Bytes::from_static(b"last words"),
                text: true
            },
            close(4001, "done")
        ]
    );
    assert_eq!(s.outputs(0), [status(4001, "done")]);
    // The server answers and closes TCP.
    s.peer_sends(OP_CLOSE, &close_payload(4001, "done"));
    assert_eq!(s.outputs(10), [], "an answer is no new close request");
    s.proto.input_ended(s.at(20));
    assert_eq!(s.proto.end(), Some(&End::Closed));
    assert!(s.proto.close_received());
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped_after_the_linger() {
    let mut s = Side::server();
    s.proto.close(1000, "", s.at(0));
    s.wire(50);
    assert_eq!(s.proto.poll_timeout(), Some(s.at(2050)));
    s.proto.handle_timeout(s.at(2049));
    assert_eq!(s.proto.end(), None);
    s.proto.handle_timeout(s.at(2050));
    assert_eq!(s.proto.end(), Some(&End::Closed));
    assert!(!s.proto.close_received());
}

#[test]
fn a_close_stuck_behind_unread_data_ends_within_the_flush_limit_or_the_linger_when_hurried() {
    for (hurry, limit) in [(false, TIMEOUTS.flush_limit), (true, TIMEOUTS.linger)] {
        let mut s = Side::server();
        s.proto.ask_close(s.at(0), hurry);
        assert_eq!(s.proto.poll_timeout(), Some(s.t0 + limit));
        s.proto.handle_timeout(s.t0 + limit);
        assert_eq!(s.proto.end(), Some(&End::Closed));
    }
}

#[test]
fn both_sides_closing_at_once_send_one_close_each_and_report_no_request() {
    let mut s = Side::server();
    s.proto.close(1000, "mine", s.at(0));
    s.peer_sends(OP_CLOSE, &close_payload(1001, "theirs"));
    // Theirs arrived first: it is the connection's close status.
    assert_eq!(s.outputs(0), [status(1001, "theirs")]);
    assert_eq!(s.wire(0), [close(1000, "mine")]);
    assert_eq!(s.proto.end(), Some(&End::Closed));
}

#[test]
fn the_end_of_input_without_a_close_ends_at_once_not_clean() {
    let mut s = Side::client();
    s.proto.input_ended(s.at(0));
    assert_eq!(s.proto.end(), Some(&End::Closed));
    assert!(!s.proto.close_received());
}

#[test]
fn protocol_faults_close_with_the_code_for_their_cause_then_shut_the_write_side() {
    let big = vec![0; MAX + 1];
    let cases: [(u8, &[u8], u16); 3] = [
        (OP_BINARY, &big, 1009),
        (OP_TEXT, &[0xC3, 0x28], 1007),
        (0x3, b"", 1002), // a reserved opcode
    ];
    for (opcode, payload, code) in cases {
        let mut s = Side::server();
        assert!(s.proto.send(b"queued before", false));
        s.peer_sends(opcode, payload);
        s.peer_sends(OP_TEXT, b"never delivered");
        assert_eq!(s.outputs(0), [], "code {code}");
        assert!(s.proto.failure().is_some());
        let mut buf = Vec::new();
        s.proto.poll_transmit(&mut buf);
        assert!(s.proto.on_written(s.at(0)), "shut the write side down");
        s.peer.receive(&buf);
        s.peer.parse().unwrap();
        let Some(Incoming::Close(Some((got, _)))) = s.peer.parse().unwrap() else {
            panic!("no close frame for {code}");
        };
        assert_eq!(got, code);
        // Input is still read, and dropped, until the other side closes.
        assert!(s.proto.wants_read());
        s.peer_sends(OP_TEXT, b"ignored");
        assert!(
            matches!(&s.outputs(1)[..], [Output::CloseStatus { code: c, .. }] if *c == code as i32)
        );
        s.proto.input_ended(s.at(2));
        assert!(matches!(s.proto.end(), Some(End::Failed(_))));
    }
}

#[test]
fn a_message_over_the_limit_fails_before_its_payload_arrives() {
    let mut s = Side::client();
    // The header alone announces 1 MiB.
    s.proto
        .decoder()
        .receive(&[0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(s.outputs(0), []);
    assert!(s
        .proto
        .failure()
        .is_some_and(|f| f.contains("exceeds inbound_buffer_size")));
}

#[test]
fn a_failure_that_gets_no_answer_ends_after_the_linger() {
    let mut s = Side::server();
    s.peer_sends(0x3, b"");
    s.outputs(0);
    assert_eq!(s.proto.poll_timeout(), Some(s.at(2000)));
    s.proto.handle_timeout(s.at(2000));
    assert!(matches!(s.proto.end(), Some(End::Failed(_))));
}

/// Both sides with permessage-deflate agreed: messages of `threshold` bytes and up are
/// compressed.
fn compressing(server: bool, threshold: usize, no_context: bool) -> Side {
    let mut s = Side::new(server, None);
    let ours = crate::config::Compression {
        threshold,
        no_context_takeover: no_context,
        ..Default::default()
    };
    let agreed = extension::Agreed {
        server_no_context_takeover: no_context,
        client_no_context_takeover: no_context,
        ..Default::default()
    };
    let (deflater, inflater) = deflate::for_connection(&agreed, &ours, server);
    s.proto.deflate_with(deflater);
    s.proto.decoder().inflate_with(inflater);
    let (_, inflater) = deflate::for_connection(&agreed, &ours, !server);
    s.peer.inflate_with(inflater);
    s
}

#[test]
fn messages_from_the_threshold_up_go_out_compressed() {
    for (server, no_context) in [(true, false), (false, false), (true, true)] {
        let mut s = compressing(server, 10, no_context);
        let long = "compress me, compress me, compress me".repeat(20);
        assert!(s.proto.send(b"short", true));
        assert!(s.proto.send(long.as_bytes(), true));
        assert!(s.proto.send(long.as_bytes(), false));
        let mut raw = Vec::new();
        s.proto.poll_transmit(&mut raw);
        // The short one is plain (RSV1 clear), the long ones compressed (RSV1 set).
        let first_len = raw[1] as usize & 0x7f;
        let second = 2 + first_len + if server { 0 } else { 4 };
        assert_eq!(raw[0], 0x81);
        assert_eq!(raw[second], 0xc1, "server {server}");
        assert!(
            raw.len() < 2 * long.len() / 4,
            "{} bytes on the wire",
            raw.len()
        );
        s.peer.receive(&raw);
        let got: Vec<Incoming> = std::iter::from_fn(|| s.peer.parse().unwrap()).collect();
        let text = |d: &[u8], text| Incoming::Data {
            data: Bytes::copy_from_slice(d),
            text,
        };
        assert_eq!(
            got,
            [
                text(b"short", true),
                text(long.as_bytes(), true),
                text(long.as_bytes(), false)
            ]
        );
    }
}

#[test]
fn control_frames_are_never_compressed_and_rsv1_without_agreement_is_1002() {
    let mut s = compressing(true, 0, false);
    s.peer_sends(OP_PING, b"0123456789abcdef");
    assert_eq!(s.outputs(0), []);
    let mut raw = Vec::new();
    s.proto.poll_transmit(&mut raw);
    assert_eq!(raw[0], 0x8A, "a pong with RSV1 clear");
    // Without the extension, RSV1 is a protocol error as before.
    let mut plain = Side::server();
    plain.peer_sends(OP_BINARY | crate::frame::RSV1, b"x");
    assert_eq!(plain.outputs(0), []);
    assert!(plain.proto.failure().is_some());
    assert_eq!(plain.wire(0), [close(1002, "Protocol error")]);
}

#[test]
fn a_bomb_closes_with_1009_and_bad_data_with_1007() {
    let mut s = compressing(true, 0, false);
    let (mut deflater, _) =
        deflate::for_connection(&Default::default(), &Default::default(), false);
    let mut bomb = Vec::new();
    deflater.compress(&vec![b'a'; 100 * MAX], &mut bomb);
    assert!(bomb.len() < MAX);
    s.peer_sends(OP_BINARY | crate::frame::RSV1, &bomb);
    assert_eq!(s.outputs(0), []);
    let why = s.proto.failure().unwrap_or_default().to_owned();
    assert!(why.contains("inbound_buffer_size"), "{why}");
    assert_eq!(s.wire(0), [close(1009, "Message too big")]);

    let mut s = compressing(true, 0, false);
    s.peer_sends(OP_BINARY | crate::frame::RSV1, &[0xff, 0xff]);
    assert_eq!(s.outputs(0), []);
    assert_eq!(s.wire(0), [close(1007, "Invalid compressed data")]);
}
