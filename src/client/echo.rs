//! tcp://, unix:, udp:// and unix-dgram: clients: send the message, read
//! the echo back (a stream in `--chunk` pieces, a datagram whole), compare.

use std::time::Duration;

use super::{compare, preview, quote, Args, Out};
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
    let tls = args.tls.client(&args.endpoint, false)?;
    let conn = Conn::connect(&args.endpoint, timeout, tls.as_ref())?;
    if let Some(negotiated) = conn.sock().negotiated() {
        out.say(format_args!("TLS established: {negotiated}"));
    }
    out.say(format_args!("sending {}", preview(message)));
    let echo = if conn.is_stream() {
        conn.exchange(message, message.len(), args.chunk as usize, |piece| {
            out.say(format_args!("received {}", quote(piece)))
        })?
    } else {
        conn.send(message)?;
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        let n = conn.recv(&mut buf)?;
        buf.truncate(n);
        out.say(format_args!("received {}", preview(&buf)));
        buf
    };
    out.payload(&echo);
    out.say(format_args!("closing socket"));
    compare(message, &echo)
}
