use proptest::prelude::*;

use super::*;

const MAX: u64 = 1 << 20;

#[test]
fn the_accept_key_is_rfc_6455s_example() {
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert!(accept_matches(
        b"dGhlIHNhbXBsZSBub25jZQ==",
        b" s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    ));
    assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
    assert!(!valid_key(b"c2hvcnQ="));
    assert!(!valid_key(b"not base64!"));
}

#[test]
fn sha1_matches_the_fips_vectors() {
    let hex = |bytes: [u8; 20]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
}

#[test]
fn rfc_6455s_example_frames() {
    // 5.7: a single-frame unmasked text message, and the same masked.
    let (head, payload) = parse_frame(
        &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        Role::Client,
        MAX,
    )
    .expect("valid")
    .expect("whole");
    assert_eq!(
        (head.fin, head.opcode, payload),
        (true, opcode::TEXT, &b"Hello"[..])
    );
    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (head, payload) = parse_frame(&masked, Role::Server, MAX)
        .expect("valid")
        .expect("whole");
    let mut payload = payload.to_vec();
    unmask(&mut payload, head.mask.expect("masked"), 0);
    assert_eq!(payload, b"Hello");
    let mut encoded = Vec::new();
    encode_frame(
        &mut encoded,
        true,
        opcode::TEXT,
        b"Hello",
        Some([0x37, 0xfa, 0x21, 0x3d]),
    );
    assert_eq!(encoded, masked);
    // 256 bytes and 64 KiB: the 16- and 64-bit lengths.
    let (head, used) = encode_head(true, opcode::BINARY, 256, None);
    assert_eq!(&head[..used], &[0x82, 0x7E, 0x01, 0x00]);
    let (head, used) = encode_head(true, opcode::BINARY, 65536, None);
    assert_eq!(&head[..used], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
}

fn violation_of(bytes: &[u8], role: Role) -> u16 {
    match parse_frame(bytes, role, 1000) {
        Err(v) => v.code,
        other => panic!("{bytes:02x?}: {other:?}"),
    }
}

#[test]
fn frames_a_good_client_never_sends_are_violations() {
    let m = [0u8; 4];
    let masked = |b0: u8, len: u8| [&[b0, 0x80 | len][..], &m].concat();
    assert_eq!(violation_of(&[0x81, 0x00], Role::Server), 1002, "unmasked");
    assert_eq!(
        violation_of(&masked(0x80, 0)[..], Role::Client),
        1002,
        "masked from a server"
    );
    assert_eq!(violation_of(&masked(0xC1, 0), Role::Server), 1002, "RSV1");
    assert_eq!(violation_of(&masked(0xA1, 0), Role::Server), 1002, "RSV2");
    assert_eq!(
        violation_of(&masked(0x93, 0), Role::Server),
        1002,
        "RSV3, opcode 3"
    );
    assert_eq!(
        violation_of(&masked(0x83, 0), Role::Server),
        1002,
        "opcode 3"
    );
    assert_eq!(
        violation_of(&masked(0x8B, 0), Role::Server),
        1002,
        "opcode 0xB"
    );
    assert_eq!(
        violation_of(&masked(0x09, 0), Role::Server),
        1002,
        "fragmented ping"
    );
    assert_eq!(
        violation_of(&[0x89, 0xFE, 0, 126, 0, 0, 0, 0], Role::Server),
        1002,
        "ping of 126"
    );
    assert_eq!(
        violation_of(&[0x82, 0xFE, 0, 5], Role::Server),
        1002,
        "16-bit length under 126"
    );
    assert_eq!(
        violation_of(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF], Role::Server),
        1002,
        "64-bit length under 65536"
    );
    assert_eq!(
        violation_of(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], Role::Server),
        1002,
        "64-bit length with the top bit"
    );
    assert_eq!(
        violation_of(&[0x82, 0xFE, 0x03, 0xE9], Role::Server),
        1009,
        "1001 > max 1000"
    );
    // Incomplete is not a violation.
    assert_eq!(parse_frame(&[0x82], Role::Server, 1000), Ok(None));
    assert_eq!(
        parse_frame(&[0x82, 0xFE, 0x00], Role::Server, 1000),
        Ok(None)
    );
    assert_eq!(
        parse_frame(&[0x82, 0x85, 1, 2, 3, 4, 0], Role::Server, 1000),
        Ok(None)
    );
}

fn head(fin: bool, op: u8, len: usize) -> FrameHead {
    FrameHead {
        fin,
        opcode: op,
        mask: None,
        len: len as u64,
        header_len: 2,
    }
}

#[test]
fn messages_reassemble_and_their_rules_hold() {
    let mut a = Assembler::default();
    assert_eq!(
        a.frame(&head(false, opcode::TEXT, 3), b"hel", 10),
        Ok(Event::Fragment)
    );
    assert_eq!(
        a.frame(&head(true, opcode::PING, 1), b"p", 10),
        Ok(Event::Ping(b"p"))
    );
    assert_eq!(
        a.frame(&head(false, opcode::CONTINUATION, 1), b"l", 10),
        Ok(Event::Fragment)
    );
    assert_eq!(a.held(), 4);
    assert_eq!(
        a.frame(&head(true, opcode::CONTINUATION, 1), b"o", 10),
        Ok(Event::Message(opcode::TEXT, b"hello"))
    );
    assert_eq!(a.held(), 0);
    assert_eq!(
        a.frame(&head(true, opcode::BINARY, 2), b"\xff\x00", 10),
        Ok(Event::Message(opcode::BINARY, b"\xff\x00"))
    );
    let code = |r: Result<Event<'_>, Violation>| r.map(|_| ()).map_err(|v| v.code);
    assert_eq!(
        code(Assembler::default().frame(&head(true, opcode::CONTINUATION, 1), b"x", 10)),
        Err(1002)
    );
    assert_eq!(
        code(Assembler::default().frame(&head(true, opcode::TEXT, 2), b"\xc3\x28", 10)),
        Err(1007)
    );
    let mut a = Assembler::default();
    assert_eq!(
        a.frame(&head(false, opcode::TEXT, 1), b"\xc3", 10),
        Ok(Event::Fragment)
    );
    assert_eq!(
        a.frame(&head(true, opcode::CONTINUATION, 1), b"\xa9", 10),
        Ok(Event::Message(opcode::TEXT, "é".as_bytes())),
        "a character split over fragments is whole in the message"
    );
    let mut a = Assembler::default();
    let _ = a.frame(&head(false, opcode::BINARY, 6), b"123456", 10);
    assert_eq!(
        code(a.frame(&head(true, opcode::CONTINUATION, 5), b"12345", 10)),
        Err(1009)
    );
    let mut a = Assembler::default();
    let _ = a.frame(&head(false, opcode::BINARY, 1), b"1", 10);
    assert_eq!(
        code(a.frame(&head(true, opcode::TEXT, 1), b"1", 10)),
        Err(1002)
    );
}

#[test]
fn close_frames_carry_valid_codes() {
    assert_eq!(parse_close(b""), Ok((None, "")));
    assert_eq!(parse_close(&[0x03, 0xE8]), Ok((Some(1000), "")));
    assert_eq!(
        parse_close(&[0x0F, 0xA0, b'b', b'y', b'e']),
        Ok((Some(4000), "bye"))
    );
    for bad in [
        &[0x03][..],
        &[0x03, 0xED],
        &[0x03, 0xEE],
        &[0x00, 0x00],
        &[0x13, 0x88],
        &[0x03, 0xF7],
    ] {
        assert_eq!(
            parse_close(bad).map_err(|v| v.code),
            Err(1002),
            "{bad:02x?}"
        );
    }
    assert_eq!(
        parse_close(&[0x03, 0xE8, 0xff]).map_err(|v| v.code),
        Err(1007)
    );
    assert_eq!(
        close_payload(1001, &"é".repeat(100)).len(),
        124,
        "cut at a char boundary"
    );
}

/// A bounded corpus of frames a good peer never sends, and random bytes:
/// each is a violation or incomplete, nothing panics.
#[test]
fn a_corpus_of_hostile_frames_never_panics() {
    let corpus: &[&[u8]] = &[
        &[0xFF; 20],
        &[
            0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0,
        ],
        &[0x88, 0x81, 0, 0, 0, 0, 0x03],
        &[0x80, 0x80, 0, 0, 0, 0],
        &[0x08, 0x80, 0, 0, 0, 0],
    ];
    for input in corpus {
        for role in [Role::Server, Role::Client] {
            for end in 0..=input.len() {
                let _ = parse_frame(&input[..end], role, MAX);
            }
        }
    }
}

/// Buffers like a reactor does: frames come out whole whatever the reads.
fn decode(input: &[u8], cuts: &[usize]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut held: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    for cut in cuts {
        if cut < at {
            continue;
        }
        held.extend_from_slice(&input[at..cut]);
        at = cut;
        while let Some((head, payload)) = parse_frame(&held, Role::Server, MAX).expect("valid") {
            let mut payload = payload.to_vec();
            unmask(&mut payload, head.mask.expect("masked"), 0);
            frames.push((head.fin, head.opcode, payload));
            let used = head.header_len + head.len as usize;
            held.drain(..used);
        }
    }
    assert!(held.is_empty());
    frames
}

proptest! {
    #[test]
    fn frames_decode_the_same_over_any_split(
        frames in prop::collection::vec(
            (any::<bool>(), prop::sample::select(vec![0u8, 1, 2, 9, 10]), prop::collection::vec(any::<u8>(), 0..300), any::<[u8; 4]>()),
            1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (fin, op, payload, key) in &frames {
            let (fin, payload) = if *op >= 8 { (true, &payload[..payload.len().min(125)]) } else { (*fin, &payload[..]) };
            encode_frame(&mut input, fin, *op, payload, Some(*key));
            expected.push((fin, *op, payload.to_vec()));
        }
        prop_assert_eq!(decode(&input, &cuts), expected);
    }

    #[test]
    fn unmasking_at_any_offset_matches_bytewise(
        data in prop::collection::vec(any::<u8>(), 0..100),
        key in any::<[u8; 4]>(),
        offset in 0usize..8,
    ) {
        let mut fast = data.clone();
        unmask(&mut fast, key, offset);
        let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[(i + offset) % 4]).collect();
        prop_assert_eq!(fast, slow);
    }

    #[test]
    fn random_bytes_are_frames_violations_or_incomplete(input in prop::collection::vec(any::<u8>(), 0..64)) {
        for role in [Role::Server, Role::Client] {
            if let Ok(Some((head, payload))) = parse_frame(&input, role, MAX) {
                prop_assert_eq!(payload.len() as u64, head.len);
                prop_assert!(head.header_len + payload.len() <= input.len());
            }
        }
    }
}

#[test]
fn a_released_message_leaves_no_big_buffer_behind() {
    // A connection that once sent a big fragmented message and then only
    // single-frame ones (which never reach the assembler) must not keep
    // that message's buffer.
    let mut a = Assembler::default();
    let big = vec![7u8; 100_000];
    let _ = a.frame(&head(false, opcode::BINARY, big.len()), &big, 200_000);
    match a.frame(&head(true, opcode::CONTINUATION, 1), b"x", 200_000) {
        Ok(Event::Message(_, message)) => assert_eq!(message.len(), 100_001),
        other => panic!("{other:?}"),
    }
    a.release();
    assert_eq!((a.held(), a.buf.capacity()), (0, 0));
}
