use super::*;

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

/// A v2 header: command (0 LOCAL, 1 PROXY), family/protocol byte, body.
fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn v2_inet(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut body = src.to_vec();
    body.extend_from_slice(&[127, 0, 0, 1]);
    body.extend_from_slice(&sport.to_be_bytes());
    body.extend_from_slice(&9080u16.to_be_bytes());
    body
}

#[test]
fn v1_tcp4_and_tcp6() {
    let line = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 9080\r\nGET / HTTP/1.1\r\n";
    let h = parse(line).unwrap();
    assert_eq!(h.version, 1);
    assert_eq!(h.source, addr("203.0.113.7:51234"));
    assert_eq!(&line[h.len..h.len + 3], b"GET");
    let line = b"PROXY TCP6 2001:db8::7 ::1 4711 9080\r\n";
    let h = parse(line).unwrap();
    assert_eq!(h.source, addr("[2001:db8::7]:4711"));
    assert_eq!(h.len, line.len());
}

#[test]
fn v1_unknown_ignores_the_rest_of_the_line() {
    assert_eq!(
        parse(b"PROXY UNKNOWN\r\n"),
        Ok(ProxyHeader {
            len: 15,
            version: 1,
            source: None
        })
    );
    let h = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap();
    assert_eq!(h.source, None);
}

#[test]
fn v1_malformed() {
    let bad = |s: &[u8]| match parse(s) {
        Err(ProxyError::Malformed(why)) => why,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(s)),
    };
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n").contains("CRLF"));
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").contains("5 fields"));
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n").contains("5 fields"));
    assert!(bad(b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n").contains("5 fields"));
    assert!(bad(b"PROXY TCP4 ::1 ::1 1 2\r\n").contains("address"));
    assert!(bad(b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n").contains("address"));
    assert!(bad(b"PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n").contains("address"));
    assert!(bad(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n").contains("TCP4"));
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n").contains("port"));
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n").contains("port"));
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n").contains("port"));
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n").contains("port"));
    assert!(bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n").contains("port"));
    assert!(bad(b"PROXY TCP4 1.2.\xff.4 5.6.7.8 1 2\r\n").contains("ASCII"));
}

#[test]
fn v1_length_bound() {
    // 107 bytes with its CRLF: accepted (UNKNOWN pads the line).
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(parse(&line).unwrap().len, V1_MAX);
    // One more byte and the CRLF is past the bound.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX - 1, b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(parse(&long), Err(ProxyError::TooLong));
    // Without a line end, 107 bytes are enough to tell.
    assert_eq!(parse(&[b'P'; 1][..]), Err(ProxyError::Incomplete));
    let mut open = b"PROXY TCP4 ".to_vec();
    open.resize(V1_MAX, b'1');
    assert_eq!(parse(&open[..V1_MAX - 1]), Err(ProxyError::Incomplete));
    assert_eq!(parse(&open), Err(ProxyError::TooLong));
}

#[test]
fn v1_truncated_at_every_byte() {
    let line = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 9080\r\n";
    for n in 0..line.len() {
        assert_eq!(parse(&line[..n]), Err(ProxyError::Incomplete), "{n} bytes");
    }
}

#[test]
fn v2_proxy_inet_and_inet6() {
    let mut h = v2(1, 0x11, &v2_inet([203, 0, 113, 7], 51234));
    h.extend_from_slice(b"GET /");
    let p = parse(&h).unwrap();
    assert_eq!((p.version, p.len), (2, 28));
    assert_eq!(p.source, addr("203.0.113.7:51234"));

    let mut body = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&4711u16.to_be_bytes());
    body.extend_from_slice(&9080u16.to_be_bytes());
    let p = parse(&v2(1, 0x21, &body)).unwrap();
    assert_eq!(p.source, addr("[2001:db8::7]:4711"));
    assert_eq!(p.len, 16 + 36);

    // An IPv4-mapped IPv6 source is reported as IPv4, as a dual-stack listener does.
    let mut mapped = "::ffff:198.51.100.3"
        .parse::<Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    mapped.extend_from_slice(&body[16..]);
    assert_eq!(
        parse(&v2(1, 0x21, &mapped)).unwrap().source,
        addr("198.51.100.3:4711")
    );
}

#[test]
fn v2_local_and_unspec_keep_the_tcp_peer() {
    // LOCAL: the balancer's own connection (health checks); addresses, if any, are ignored.
    let p = parse(&v2(0, 0x00, &[])).unwrap();
    assert_eq!((p.len, p.source), (16, None));
    let p = parse(&v2(0, 0x11, &v2_inet([1, 2, 3, 4], 5))).unwrap();
    assert_eq!(p.source, None);
    // PROXY with UNSPEC, or a UNIX socket: no IP.
    assert_eq!(parse(&v2(1, 0x00, &[])).unwrap().source, None);
    assert_eq!(parse(&v2(1, 0x31, &[0; 216])).unwrap().source, None);
}

#[test]
fn v2_tlvs_are_skipped() {
    let mut body = v2_inet([198, 51, 100, 9], 1000);
    // PP2_TYPE_AWS (0xEA) with a VPC endpoint id, then PP2_TYPE_NOOP padding.
    body.extend_from_slice(&[0xEA, 0x00, 0x17, 0x01]);
    body.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    body.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
    let mut h = v2(1, 0x11, &body);
    let len = h.len();
    h.extend_from_slice(b"\x16\x03\x01"); // a TLS ClientHello follows
    let p = parse(&h).unwrap();
    assert_eq!(p.len, len);
    assert_eq!(p.source, addr("198.51.100.9:1000"));
}

#[test]
fn v2_truncated_at_every_byte() {
    let h = v2(1, 0x11, &v2_inet([203, 0, 113, 7], 51234));
    for n in 0..h.len() {
        assert_eq!(parse(&h[..n]), Err(ProxyError::Incomplete), "{n} bytes");
    }
}

#[test]
fn v2_malformed_and_bounds() {
    let bad = |h: &[u8]| match parse(h) {
        Err(ProxyError::Malformed(why)) => why,
        other => panic!("{other:?}"),
    };
    let mut wrong_version = v2(1, 0x11, &v2_inet([1, 2, 3, 4], 5));
    wrong_version[12] = 0x11;
    assert!(bad(&wrong_version).contains("version"));
    assert!(bad(&wrong_version[..13]).contains("version"));
    let mut wrong_cmd = v2(1, 0x11, &v2_inet([1, 2, 3, 4], 5));
    wrong_cmd[12] = 0x22;
    assert!(bad(&wrong_cmd).contains("command"));
    assert!(bad(&v2(1, 0x41, &[0; 12])).contains("family"));
    assert!(bad(&v2(1, 0x13, &[0; 12])).contains("family"));
    assert!(bad(&v2(1, 0x11, &[0; 11])).contains("too short"));
    assert!(bad(&v2(1, 0x21, &[0; 35])).contains("too short"));
    assert!(bad(&v2(1, 0x31, &[0; 215])).contains("too short"));
    // The length field alone decides "too long", before the bytes arrive.
    let mut huge = v2(1, 0x11, &[]);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(parse(&huge), Err(ProxyError::TooLong));
    let at_bound = v2(1, 0x11, &vec![0; V2_MAX - 16]);
    assert_eq!(parse(&at_bound).unwrap().len, V2_MAX);
    assert_eq!(
        parse(&v2(1, 0x11, &vec![0; V2_MAX - 15])),
        Err(ProxyError::TooLong)
    );
}

#[test]
fn not_a_header() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
    assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(ProxyError::Missing));
    assert_eq!(parse(b"PROXX"), Err(ProxyError::Missing));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(ProxyError::Missing));
    assert!(looks_like_header(b"PROXY TCP4"));
    assert!(looks_like_header(b"PRO"));
    assert!(looks_like_header(&V2_SIGNATURE[..5]));
    assert!(!looks_like_header(b"GET /"));
    assert!(!looks_like_header(b""));
}

/// `read` over a real socket: exactly the header is consumed, however it is split, and the
/// next byte stays in the stream.
#[test]
fn read_takes_exactly_the_header() {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let cases: Vec<(Vec<u8>, Option<SocketAddr>)> = vec![
            (
                b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 9080\r\n".to_vec(),
                addr("203.0.113.7:51234"),
            ),
            (
                v2(1, 0x11, &v2_inet([198, 51, 100, 9], 1000)),
                addr("198.51.100.9:1000"),
            ),
        ];
        for (header, want) in cases {
            for split in [1, 7, header.len() - 1, header.len()] {
                let mut wire = header.clone();
                wire.extend_from_slice(b"NEXT");
                let writer = tokio::spawn(async move {
                    let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
                    c.write_all(&wire[..split]).await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    c.write_all(&wire[split..]).await.unwrap();
                    c
                });
                let (mut s, _) = listener.accept().await.unwrap();
                let h = read(&mut s).await.unwrap();
                assert_eq!((h.source, h.len), (want, header.len()));
                let mut next = [0u8; 4];
                s.read_exact(&mut next).await.unwrap();
                assert_eq!(&next, b"NEXT");
                drop(writer.await.unwrap());
            }
        }
        // The stream ends inside the header.
        let writer = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
            c.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        });
        let (mut s, _) = listener.accept().await.unwrap();
        writer.await.unwrap();
        assert!(matches!(
            read(&mut s).await,
            Err(ReadError::Proxy(ProxyError::Incomplete))
        ));
        // ... or before its first byte: a TCP probe, not a broken header.
        let writer = tokio::spawn(tokio::net::TcpStream::connect(at));
        let (mut s, _) = listener.accept().await.unwrap();
        drop(writer.await.unwrap().unwrap());
        assert!(matches!(read(&mut s).await, Err(ReadError::Closed)));
    });
}
