//! tcp://, unix:, udp:// and unix-dgram: clients: send the message, read
//! the echo back (a stream in `--chunk` pieces, a datagram whole), compare.

use std::time::Duration;

use super::{compare, quote, Args, Out};
use crate::probe::socket::Conn;
use crate::probe::{Failure, DATAGRAM_BUFFER};

/// Runs one echo exchange.
pub(super) fn run(
    args: &Args,
    message: &[u8],
    timeout: Duration,
    out: &Out,
) -> Result<(), Failure> {
    out.say(format_args!("connecting to {}", args.endpoint));
    let conn = Conn::connect(&args.endpoint, timeout)?;
    out.say(format_args!("sending {}", quote(message)));
    conn.send(message)?;
    let echo = if conn.is_stream() {
        read_stream(&conn, message.len(), args.chunk as usize, out, quote)?
    } else {
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let n = conn.recv(&mut buf)?;
        buf.truncate(n);
        out.say(format_args!("received {}", quote(&buf)));
        buf
    };
    out.payload(&echo);
    out.say(format_args!("closing socket"));
    compare(message, &echo)
}

/// Reads `expected` bytes in pieces of at most `chunk`, printing each (as
/// `show` renders it) as it arrives, as the article's `recv(16)` loop does.
pub(super) fn read_stream(
    conn: &Conn,
    expected: usize,
    chunk: usize,
    out: &Out,
    show: fn(&[u8]) -> String,
) -> Result<Vec<u8>, Failure> {
    let mut echo = Vec::with_capacity(expected);
    let mut buf = vec![0u8; chunk];
    while echo.len() < expected {
        let want = chunk.min(expected - echo.len());
        let got = echo.len();
        let n = conn
            .recv(&mut buf[..want])
            .map_err(|failure| match failure {
                Failure::Io(why) => Failure::Io(format!("{why} after {got} of {expected} bytes")),
                Failure::Timeout(why) if got > 0 => {
                    Failure::Timeout(format!("{why} (got {got} of {expected} bytes)"))
                }
                other => other,
            })?;
        out.say(format_args!("received {}", show(&buf[..n])));
        echo.extend_from_slice(&buf[..n]);
    }
    Ok(echo)
}
