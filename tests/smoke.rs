mod common;
use common::Daemon;
use std::io::{Read, Write};

#[test]
fn tcp_echo_round_trip() {
    let daemon = Daemon::start(&["tcp://127.0.0.1:0"]);
    let mut stream = std::net::TcpStream::connect(daemon.addr("tcp://")).unwrap();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    stream.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    let (status, _) = daemon.stop();
    assert!(status.success());
}
