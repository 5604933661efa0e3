//! metrics:// client: one `GET PATH` (the message, e.g. `/healthz`) over
//! HTTP/1.1, its status line and body printed; a 2xx is success. This is
//! the container image's health check, which has no curl to run.

use std::time::Duration;

use super::{say, Args, Out};
use crate::probe::socket::BoundedConn;
use crate::probe::{Exit, Failure};

/// Most of an answer read: `/healthz` is a word, `/metrics` some kB.
const MAX_ANSWER: usize = 1 << 20;

/// Runs one request.
pub(super) fn run(args: &Args, timeout: Duration, out: &Out) -> Result<(), Failure> {
    let path = args.message.join(" ");
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Failure::usage(format!(
            "{}: the message is the path to GET, such as /healthz (got '{path}')",
            args.endpoint
        )));
    }
    out.say(format_args!("connecting to {}", args.endpoint));
    let conn = BoundedConn::connect(&args.endpoint, timeout, None)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: echoplex\r\nConnection: close\r\n\r\n");
    out.say(format_args!("sending GET {path}"));
    conn.send(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match conn.recv(&mut buf) {
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // Connection: close: the end of the answer is the peer's EOF.
            Err(failure) if failure.exit == Exit::Io && !answer.is_empty() => break,
            Err(failure) => return Err(failure),
        }
        if answer.len() > MAX_ANSWER {
            return Err(Failure::new(
                Exit::Io,
                format!("{}: answer longer than {MAX_ANSWER} bytes", args.endpoint),
            ));
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            Failure::new(
                Exit::Io,
                format!("{}: not an HTTP answer: {status_line:?}", args.endpoint),
            )
        })?;
    out.say(format_args!("received {status_line}"));
    if out.quiet {
        say(format_args!("{}", body.trim_end()));
    } else {
        for line in body.lines() {
            say(format_args!("  {line}"));
        }
    }
    out.say(format_args!("closing socket"));
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(Failure::failed(format!("{}: {status_line}", args.endpoint)))
    }
}
