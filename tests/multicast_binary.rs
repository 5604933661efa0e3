//! Multicast and binary records in the same loop.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use support::{Daemon, WAIT};

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 10, 10, 10);

/// The tutorial's record: `struct.pack('I 2s f', 1, b'ab', 2.7)`.
const RECORD: [u8; 12] = [
    0x01, 0x00, 0x00, 0x00, 0x61, 0x62, 0x00, 0x00, 0xcd, 0xcc, 0x2c, 0x40,
];

/// The tutorial's multicast sender: TTL 1, loopback interface only. Sends
/// once and collects every `ack`: waits (up to `WAIT`, a loaded machine
/// may be slow to answer) for the `expected` ones, then until a quiet
/// period passes for any more.
fn multicast_send(port: u16, message: &[u8], expected: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    socket.set_multicast_ttl_v4(1).expect("ttl");
    socket
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .expect("iface");
    let socket = UdpSocket::from(socket);
    socket
        .send_to(message, SocketAddrV4::new(GROUP, port))
        .expect("send");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut replies = Vec::new();
    let mut buf = [0u8; 64];
    while replies.len() < expected {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            break;
        };
        replies.push((buf[..n].to_vec(), from));
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        replies.push((buf[..n].to_vec(), from));
    }
    replies
}

#[test]
fn one_daemon_acks_a_multicast_datagram() {
    let port = support::free_udp_port();
    let endpoint = format!("multicast://224.10.10.10:{port}");
    let daemon = Daemon::start(&[&endpoint]);
    assert_eq!(daemon.endpoints, vec![endpoint]);
    let replies = multicast_send(port, b"very important data", 1);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, b"ack");
    assert_eq!(
        replies[0].1.ip(),
        std::net::IpAddr::from(Ipv4Addr::LOCALHOST)
    );
    let (status, err) = daemon.stop();
    assert!(status.success());
    assert!(err.contains("received 19 bytes from 127.0.0.1:"), "{err}");
}

#[test]
fn two_daemons_share_the_group_and_both_answer() {
    let port = support::free_udp_port();
    let endpoint = format!("multicast://224.10.10.10:{port}");
    let first = Daemon::start(&[&endpoint]);
    let second = Daemon::start(&[&endpoint]);
    let replies = multicast_send(port, b"hello, group", 2);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(replies.iter().all(|(reply, _)| reply == b"ack"));
    assert!(first.stop().0.success());
    assert!(second.stop().0.success());
}

#[test]
fn bad_multicast_groups_and_interfaces_are_startup_errors() {
    for (args, why) in [
        (
            vec!["serve", "multicast://10.0.0.1:5000"],
            "not a multicast group",
        ),
        (
            vec![
                "serve",
                "multicast://224.10.10.10:0",
                "--iface",
                "10.99.99.99",
            ],
            "cannot join 224.10.10.10 on interface 10.99.99.99",
        ),
    ] {
        let (status, out, err) = support::run(&args);
        assert!(!status.success(), "{args:?} succeeded");
        if args[1].starts_with("multicast://10.") {
            // A group that is no group is a bad endpoint: usage, exit 2.
            assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        }
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(support::message_lines(&err).len(), 1, "{args:?}: {err}");
    }
}

fn binary_client(daemon: &Daemon) -> TcpStream {
    let stream = TcpStream::connect(daemon.addr("binary://")).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
}

fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).expect("echo");
    buf
}

#[test]
fn the_tutorial_record_comes_back_intact_and_is_logged() {
    let daemon = Daemon::start(&["binary://127.0.0.1:0"]);
    let mut client = binary_client(&daemon);
    client.write_all(&RECORD).expect("write");
    assert_eq!(read_exactly(&mut client, 12), RECORD);
    drop(client);
    let (status, err) = daemon.stop();
    assert!(status.success());
    assert!(
        err.contains("unpacked: (1, b'ab', 2.700000047683716)"),
        "{err}"
    );
}

#[test]
fn a_thousand_records_in_one_write_and_odd_splits() {
    let daemon = Daemon::start(&["binary://127.0.0.1:0"]);
    let mut client = binary_client(&daemon);
    let many: Vec<u8> = RECORD.repeat(1000);
    client.write_all(&many).expect("write");
    assert_eq!(read_exactly(&mut client, many.len()), many);
    // Split at odd places; the flush between pieces makes the server see
    // each piece separately, so it must hold partial records.
    let three = RECORD.repeat(3);
    for piece in [
        &three[..1],
        &three[1..7],
        &three[7..13],
        &three[13..35],
        &three[35..],
    ] {
        client.write_all(piece).expect("write");
        client.flush().expect("flush");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_exactly(&mut client, 36), three);
}

#[test]
fn never_echoes_half_a_record() {
    let daemon = Daemon::start(&["binary://127.0.0.1:0"]);
    let mut client = binary_client(&daemon);
    client.write_all(&RECORD[..7]).expect("write");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 12];
    assert!(
        client.read(&mut buf).is_err(),
        "a partial record was echoed"
    );
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    client.write_all(&RECORD[7..]).expect("write");
    assert_eq!(read_exactly(&mut client, 12), RECORD);
}

#[test]
fn network_order_format() {
    let daemon = Daemon::start(&["binary://127.0.0.1:0", "--format", "!I 2s f"]);
    // struct.pack('!I 2s f', 1, b'ab', 2.7): big-endian, no padding.
    let record = [0, 0, 0, 1, b'a', b'b', 0x40, 0x2c, 0xcc, 0xcd];
    let mut client = binary_client(&daemon);
    client.write_all(&record.repeat(2)).expect("write");
    assert_eq!(read_exactly(&mut client, 20), record.repeat(2));
    drop(client);
    let (_, err) = daemon.stop();
    assert!(
        err.contains("unpacked: (1, b'ab', 2.700000047683716)"),
        "{err}"
    );
}

#[test]
fn garbage_and_truncated_records_do_not_disturb_others() {
    let daemon = Daemon::start(&["binary://127.0.0.1:0"]);
    let mut good = binary_client(&daemon);
    // Garbage: any 12 bytes are some record; the daemon decodes and echoes it.
    let mut garbage = binary_client(&daemon);
    garbage.write_all(&[0xfe; 12]).expect("write");
    assert_eq!(read_exactly(&mut garbage, 12).len(), 12);
    // Truncated: 5 bytes and a close.
    let mut truncated = binary_client(&daemon);
    truncated.write_all(&RECORD[..5]).expect("write");
    drop(truncated);
    good.write_all(&RECORD).expect("write");
    assert_eq!(read_exactly(&mut good, 12), RECORD);
    drop((good, garbage));
    let (status, err) = daemon.stop();
    assert!(status.success());
    assert!(
        err.contains("connection ended with 5 bytes of a partial 12-byte record"),
        "{err}"
    );
}

#[test]
fn a_bad_format_points_at_the_offending_character() {
    let (status, out, err) = support::run(&["serve", "binary://127.0.0.1:0", "--format", "I 2y"]);
    assert!(!status.success());
    assert!(out.is_empty());
    assert!(err.contains("unknown code 'y' at position 3"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
