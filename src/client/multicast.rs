//! multicast:// client: send once to the group, then print every answer and
//! its sender until `--timeout` passes with nothing more (the article's
//! `settimeout(0.2)` loop).

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{preview, Args, Out};
use crate::error::describe;
use crate::probe::duration::show as secs;
use crate::probe::socket::{multicast_group, wait};
use crate::probe::{Exit, Failure, DATAGRAM_BUFFER};
use crate::sock;

/// What a receiver answers.
const ACK: &[u8] = b"ack";

/// Sends `message` to the group and collects the acks.
pub(super) fn run(
    args: &Args,
    message: &[u8],
    timeout: Duration,
    out: &Out,
) -> Result<(), Failure> {
    let group = multicast_group(&args.endpoint)?;
    let socket = sock::multicast_sender(args.iface, args.ttl).map_err(|err| {
        Failure::new(
            Exit::Unreachable,
            format!(
                "cannot send multicast on interface {}: {}",
                args.iface,
                describe(&err)
            ),
        )
    })?;
    let fd = socket.as_raw_fd();
    out.say(format_args!("sending {}", preview(message)));
    loop {
        match socket.send_to(message, group) {
            Ok(_) => break,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if wait(fd, libc::POLLOUT, Instant::now() + timeout)? == 0 {
                    return Err(Failure::new(
                        Exit::Timeout,
                        format!("{}: could not send within {}", args.endpoint, secs(timeout)),
                    ));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // One table for every kind: "Message too long" is a usage
            // error here as on udp://.
            Err(err) => {
                return Err(Failure::io(
                    &format!("cannot send to {}", args.endpoint),
                    &err,
                ))
            }
        }
    }
    let mut acks = 0usize;
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                out.say(format_args!("received {} from {from}", preview(&buf[..n])));
                if &buf[..n] == ACK {
                    acks += 1;
                    out.quiet_line(format_args!("{from}"));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                // Quiet for `timeout` since the last answer: everyone spoke.
                if wait(fd, libc::POLLIN, Instant::now() + timeout)? == 0 {
                    out.say(format_args!("timed out, no more responses"));
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(Failure::new(
                    Exit::Io,
                    format!("receiving from {}: {}", args.endpoint, describe(&err)),
                ))
            }
        }
    }
    out.say(format_args!("closing socket"));
    if acks == 0 {
        return Err(Failure::new(
            Exit::Timeout,
            format!("no ack from {} within {}", args.endpoint, secs(timeout)),
        ));
    }
    Ok(())
}
