use proptest::prelude::*;

use super::*;

fn ok(text: &str) -> RequestHead<Vec<u8>> {
    parse_request(text.as_bytes(), &mut HeadScan::default())
        .unwrap_or_else(|bad| panic!("{text:?}: {bad:?}"))
        .unwrap_or_else(|| panic!("{text:?}: incomplete"))
        .into_owned()
}

fn refused(text: &[u8]) -> u16 {
    match parse_request(text, &mut HeadScan::default()) {
        Err(refusal) => refusal.status,
        Ok(head) => panic!("{:?} was accepted: {head:?}", String::from_utf8_lossy(text)),
    }
}

#[test]
fn a_request_head_keeps_its_headers_in_order_and_as_sent() {
    let head = ok(
        "POST /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nX-B: 2\r\nx-a:  1 \r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(head.method(), "POST");
    assert_eq!(head.target(), "/a/b?x=1&y");
    assert_eq!(head.path(), "/a/b");
    assert_eq!(head.query(), Some("x=1&y"));
    assert_eq!(head.version(), "HTTP/1.1");
    let headers: Vec<(&str, &[u8])> = head.headers().collect();
    assert_eq!(
        headers,
        [
            ("Host", &b"h"[..]),
            ("X-B", b"2"),
            ("x-a", b"1"),
            ("Content-Length", b"3")
        ]
    );
    assert_eq!(head.framing, Framing::Length(3));
    assert_eq!(head.len, 74, "through the blank line, not the body");
    assert!(head.keep_alive);
    assert_eq!(head.header("X-A"), Some(&b"1"[..]));
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    assert!(!ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\r\n").keep_alive);
    assert!(
        ok("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    assert!(
        !ok("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue
    );
    assert_eq!(ok("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").path(), "*");
    assert_eq!(
        ok("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").framing,
        Framing::Chunked
    );
    // The same length twice is one length.
    assert_eq!(
        ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n").framing,
        Framing::Length(2)
    );
}

#[test]
fn a_websocket_handshake_is_recognised() {
    let head = ok("GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert!(head.is_websocket_upgrade());
    assert!(!ok("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n").is_websocket_upgrade());
}

#[test]
fn smuggling_shapes_and_malformed_heads_are_refused() {
    let cases: &[(&[u8], u16)] = &[
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n\tX: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\rX: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET metrics HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: 1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: \x01\r\n\r\n", 400),
        (b"\r\n\r\n", 400),
    ];
    for (text, status) in cases {
        assert_eq!(
            refused(text),
            *status,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn heads_are_bounded() {
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD)
    );
    assert_eq!(refused(huge.as_bytes()), 431);
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
    assert_eq!(refused(endless.as_bytes()), 431);
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: 1\r\n")).collect();
    assert_eq!(
        refused(format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes()),
        431
    );
    // Just under the bound is fine.
    let pad = MAX_HEAD - "GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n".len();
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(pad)
    );
    assert_eq!(ok(&fits).len, MAX_HEAD);
}

#[test]
fn header_values_that_are_not_utf8_are_kept_exact_and_shown_lossy() {
    let head = parse_request(
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\xff\xfeb\r\n\r\n",
        &mut HeadScan::default(),
    )
    .expect("valid")
    .expect("complete");
    assert_eq!(head.header("x"), Some(&b"a\xff\xfeb"[..]));
    assert_eq!(lossy(b"a\xff\xfeb"), "a\u{FFFD}\u{FFFD}b");
    assert_eq!(lossy(b"\xe2\x82"), "\u{FFFD}\u{FFFD}");
    assert_eq!(lossy("é".as_bytes()), "é");
}

fn chunked(body: &[u8], pieces: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for &size in pieces {
        let size = size.min(body.len() - at);
        if size == 0 {
            continue;
        }
        out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        out.extend_from_slice(&body[at..at + size]);
        out.extend_from_slice(b"\r\n");
        at += size;
    }
    if at < body.len() {
        out.extend_from_slice(format!("{:X};ext=1\r\n", body.len() - at).as_bytes());
        out.extend_from_slice(&body[at..]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
    out
}

fn decode_split(input: &[u8], splits: &[usize], max: usize) -> Result<(Vec<u8>, usize), Refusal> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut consumed = 0;
    let mut at = 0;
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    for cut in cuts {
        if cut < at {
            continue;
        }
        consumed += decoder.decode(&input[at..cut], &mut body, max)?;
        at = cut;
        if decoder.is_done() {
            break;
        }
    }
    assert!(decoder.is_done(), "not done after all input");
    Ok((body, consumed))
}

#[test]
fn chunked_bodies_decode_and_stop_at_their_end() {
    let mut input = b"3\r\nabc\r\n10;a=b;c\r\n0123456789abcdef\r\n0\r\n\r\nGET / ".to_vec();
    let (body, consumed) = decode_split(&input, &[], 1000).expect("valid");
    assert_eq!(body, b"abc0123456789abcdef");
    assert_eq!(&input[consumed..], b"GET / ");
    input.truncate(consumed);
    assert_eq!(
        decode_split(&input, &[], 10),
        Err(refuse(413, "body over --max-buffer"))
    );
}

#[test]
fn bad_chunked_bodies_are_refused() {
    for bad in [
        &b"x\r\n"[..],
        b"\r\n",
        b"3\nabc\r\n",
        b"3\r\nabcd\r\n",
        b"3\r\nabc\n",
        b"3 \r\nabc\r\n",
        b"fffffffffffffffff\r\n",
        b"0\r\nX: 1\n\r\n",
        b"0\r\n folded\r\n\r\n",
        b"1;\x01\r\n",
    ] {
        let mut decoder = ChunkedDecoder::default();
        let result = decoder.decode(bad, &mut Vec::new(), 1 << 20);
        assert!(
            result.is_err(),
            "{:?}: {result:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn responses_of_any_server_are_framed() {
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n\r\nhello",
        false,
    )
    .expect("valid")
    .expect("complete");
    assert_eq!(
        (r.status, r.framing, r.keep_alive, r.class()),
        (200, Framing::Length(5), true, 2)
    );
    assert_eq!(r.header("server"), Some(&b"nginx"[..]));
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
    )
    .expect("valid")
    .expect("complete");
    assert_eq!(r.framing, Framing::Chunked);
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        false,
    )
    .expect("valid")
    .expect("complete");
    assert!(!r.keep_alive);
    let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\n", false)
        .expect("valid")
        .expect("complete");
    assert_eq!((r.framing, r.keep_alive), (Framing::UntilClose, false));
    let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
        .expect("valid")
        .expect("complete");
    assert_eq!(r.framing, Framing::Empty);
    let r = parse_response(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        false,
    )
    .expect("valid")
    .expect("complete");
    assert_eq!(r.framing, Framing::Empty);
    assert_eq!(
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false),
        Ok(None)
    );
    assert!(parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        false
    )
    .is_err());
    assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
}

#[test]
fn written_heads_parse_back() {
    let mut out = Vec::new();
    write_response_head(&mut out, 200, &[("Server", b"echoplex")], 12, false);
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nServer: echoplex\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
    );
    let r = parse_response(&out, false)
        .expect("valid")
        .expect("complete");
    assert_eq!((r.framing, r.keep_alive), (Framing::Length(12), false));
    let mut out = Vec::new();
    write_response_head(&mut out, 204, &[], 0, true);
    assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
    let mut out = Vec::new();
    write_request_head(
        &mut out,
        "POST",
        "/x?echo_body=raw",
        "127.0.0.1:80",
        &[],
        Some(3),
    );
    let head = parse_request(&out, &mut HeadScan::default())
        .expect("valid")
        .expect("complete");
    assert_eq!((head.method(), head.framing), ("POST", Framing::Length(3)));
    let mut number = Vec::new();
    push_number(&mut number, 18_446_744_073_709_551_615);
    assert_eq!(number, b"18446744073709551615");
}

/// A bounded corpus of hostile heads: each is refused or waits, none panics.
#[test]
fn a_corpus_of_hostile_heads_never_panics() {
    let mut corpus: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\x00\x00\x00\x00".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n".to_vec(),
        b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        b"G\x00T / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: h\r\n:\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\n\r\r\n\r\n".to_vec(),
        "GET /é HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes().to_vec(),
    ];
    corpus.push([b"GET / HTTP/1.1\r\n".as_slice(), &[b'\r'; 20000]].concat());
    corpus.push([b"GET / HTTP/1.1\r\n".as_slice(), &b"\r\n".repeat(9000)].concat());
    for input in &corpus {
        let mut scan = HeadScan::default();
        for end in 0..=input.len().min(64) {
            let _ = parse_request(&input[..end], &mut scan);
        }
        let _ = parse_request(input, &mut HeadScan::default());
        let _ = parse_response(input, false);
        let _ = ChunkedDecoder::default().decode(input, &mut Vec::new(), 1 << 16);
    }
}

proptest! {
    #[test]
    fn a_head_fed_in_pieces_parses_as_whole(
        headers in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,20}"), 0..8),
        cuts in prop::collection::vec(0usize..400, 0..6),
    ) {
        let mut text = String::from("GET /p?q HTTP/1.1\r\nHost: h\r\n");
        for (name, value) in &headers {
            if ["host", "content-length", "transfer-encoding"].contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let whole = parse_request(text.as_bytes(), &mut HeadScan::default()).map(|h| h.map(RequestHead::into_owned));
        let mut scan = HeadScan::default();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % text.len()).collect();
        cuts.sort_unstable();
        for cut in cuts {
            let partial = parse_request(&text.as_bytes()[..cut], &mut scan);
            prop_assert_eq!(partial, Ok(None));
        }
        let pieced = parse_request(text.as_bytes(), &mut scan).map(|h| h.map(RequestHead::into_owned));
        prop_assert_eq!(pieced, whole);
    }

    #[test]
    fn chunked_bodies_decode_over_any_split(
        body in prop::collection::vec(any::<u8>(), 0..600),
        pieces in prop::collection::vec(1usize..200, 0..8),
        splits in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let input = chunked(&body, &pieces);
        let (decoded, consumed) = decode_split(&input, &splits, 1 << 20).expect("valid");
        prop_assert_eq!(decoded, body);
        prop_assert_eq!(consumed, input.len());
    }

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_request(&input, &mut HeadScan::default());
        let _ = parse_response(&input, false);
        let _ = ChunkedDecoder::default().decode(&input, &mut Vec::new(), 100);
        let with_head = [b"POST / HTTP/1.1\r\nHost: h\r\n".as_slice(), &input].concat();
        let _ = parse_request(&with_head, &mut HeadScan::default());
    }
}

#[test]
fn an_absolute_form_target_is_accepted_as_its_path() {
    // RFC 9112 3.2.2: a server MUST accept the absolute form (what a
    // client sends to a proxy: `curl -x`).
    let head = ok("GET http://example.test:8080/a/b?echo_code=201 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n");
    assert_eq!((head.path(), head.query()), ("/a/b", Some("echo_code=201")));
    let head = ok("GET HTTPS://example.test HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!((head.path(), head.query()), ("/", None));
    let head = ok("GET http://example.test?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!((head.path(), head.query()), ("/", Some("x=1")));
    for bad in [
        &b"GET ftp://example.test/ HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET http:// HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET example.test/ HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        assert_eq!(refused(bad), 400, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn a_host_that_is_not_a_host_and_port_is_refused() {
    // RFC 9112 3.2: a server MUST answer 400 to a Host with an invalid value.
    for bad in ["a b", "a/b", "user@host", "a\tb", "h\u{ff}"] {
        let text = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(refused(text.as_bytes()), 400, "{bad:?}");
    }
    for good in [
        "",
        "example.test",
        "example.test:8080",
        "[::1]:80",
        "127.0.0.1",
        "xn--d1a.test",
    ] {
        ok(&format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n"));
    }
}
