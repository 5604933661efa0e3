//! `echoplex client`: the article's clients, one per endpoint kind.
//!
//! `echo` covers tcp, unix, udp and unix-dgram (send, read the echo back,
//! compare); `multicast` sends once and collects acks; `binary` packs
//! values with the struct codec. Sockets, waits, the mismatch description
//! and the failure classes come from [`crate::probe`], shared with `ping`
//! and `bench`.

mod binary;
mod echo;
mod health;
mod http;
mod input;
mod multicast;

use std::fmt;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::endpoint::{Endpoint, ServerAnswer};
use crate::error::{Exit, Outcome};
use crate::probe::duration::positive_secs;
use crate::probe::payload::Mismatch;
use crate::probe::{interrupt, Failure, MAX_UDP_PAYLOAD};

/// Default `--timeout` for every kind but multicast.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default `--timeout` for multicast: how long to listen after the last ack.
const DEFAULT_MULTICAST_TIMEOUT: Duration = Duration::from_millis(200);

/// Command-line arguments of `echoplex client`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
The message comes from the words after ENDPOINT, or from -f FILE (- for \
stdin, any bytes, any size); --hex reads either as hexadecimal digits \
(spaces allowed), for bytes a command line cannot carry. A stream's message \
is read and sent as its echo comes back and is checked, so a file of any \
size (even endless input) goes through in bounded memory; without -q only \
the first 256 bytes of echo are shown. A datagram kind's message is one \
datagram: a longer input is refused before anything is sent. \
metrics://HOST:PORT takes a path to GET (/healthz) and succeeds on a 2xx.

Exit status:
  0    the echo matched byte for byte (multicast: at least one ack came; \
http://: a 2xx, and against echoplex the echo matched)
  1    the echo differed from what was sent (http://: not a 2xx)
  2    usage error (bad option, endpoint, value or format; unreadable -f \
FILE; bad --hex; a datagram too large for the kind)
  3    could not reach the endpoint (refused, no such socket, unreachable, unknown host)
  4    timed out (multicast: no ack at all)
  5    connection lost or another I/O error
  130  interrupted (Ctrl-C)")]
pub struct Args {
    /// Where to send: tcp://HOST:PORT, udp://HOST:PORT, unix:PATH, unix-dgram:PATH,
    /// multicast://GROUP:PORT, binary://HOST:PORT (unix PATH @name = abstract),
    /// metrics://HOST:PORT with a path to GET as the message (`/healthz`),
    /// http://HOST:PORT[/PATH] (POST the message, GET without one) or
    /// ws://HOST:PORT[/PATH] (each word a text message).
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: Endpoint,
    /// The message, words joined by one space (binary://: the values to
    /// pack; http://: the body of a POST, none for a GET; ws://: each word
    /// a text message).
    #[arg(value_name = "MESSAGE", num_args = 1..,
          allow_negative_numbers = true, conflicts_with = "file")]
    pub message: Vec<String>,
    /// Send the bytes of FILE instead (- reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The message (words or FILE) is hexadecimal digits, spaces allowed:
    /// `client --hex tcp://127.0.0.1:7 '00 ff 0d 0a'`.
    #[arg(long)]
    pub hex: bool,
    /// Read a stream's echo in pieces of at most this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    pub chunk: u32,
    /// Longest any single wait may take [default: 5; multicast: 0.2, the
    /// quiet time that ends the collection of acks].
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub timeout: Option<Duration>,
    /// Print only the echoed payload: after words, a newline; with -f or
    /// --hex, the bytes alone, so `-q -f in.bin > out.bin` copies a file
    /// (multicast: each responder's address; binary: the decoded values).
    #[arg(short, long)]
    pub quiet: bool,
    /// Multicast time-to-live: 1 keeps the datagram on the local network.
    #[arg(long, value_name = "HOPS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=255))]
    pub ttl: u32,
    /// IPv4 interface to send multicast on (keep it on loopback unless you mean it).
    #[arg(long, value_name = "IPV4", default_value = "127.0.0.1")]
    pub iface: Ipv4Addr,
    /// Record layout for binary://, in Python struct syntax.
    #[arg(long, value_name = "FMT", default_value = "I 2s f")]
    pub format: String,
    /// tls://: how the server is verified.
    #[command(flatten)]
    pub tls: crate::probe::tls::TlsArgs,
}

/// Runs `echoplex client`; returns the process exit code.
pub fn run(args: Args) -> Outcome {
    let out = Out {
        quiet: args.quiet,
        // Words are a line of text; -f and --hex are bytes, given back as they are.
        newline: args.file.is_none() && !args.hex,
    };
    let result = interrupt::stop_on(
        &[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM],
        false,
    )
    .and_then(|()| dispatch(&args, &out));
    result.map(|()| Exit::Ok)
}

fn dispatch(args: &Args, out: &Out) -> Result<(), Failure> {
    let answer = args.endpoint.kind.info().answer;
    if answer != ServerAnswer::HttpEcho && args.message.is_empty() && args.file.is_none() {
        return Err(Failure::usage(format!(
            "{}: a message is required (words, or -f FILE)",
            args.endpoint
        )));
    }
    match answer {
        ServerAnswer::Ack => {
            let timeout = args.timeout.unwrap_or(DEFAULT_MULTICAST_TIMEOUT);
            let message = input(args)?.read_datagram(MAX_UDP_PAYLOAD, "multicast")?;
            multicast::run(args, &message, timeout, out)
        }
        ServerAnswer::Records => {
            if args.file.is_some() || args.hex {
                return Err(Failure::usage(format!(
                    "{}: binary:// packs the values given as words; -f and --hex send raw bytes",
                    args.endpoint
                )));
            }
            binary::run(args, args.timeout.unwrap_or(DEFAULT_TIMEOUT), out)
        }
        ServerAnswer::Echo => {
            let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT);
            echo::run(args, input(args)?, timeout, out)
        }
        ServerAnswer::Http => {
            if args.file.is_some() || args.hex {
                return Err(Failure::usage(format!(
                    "{}: the message is the path to GET; -f and --hex send raw bytes",
                    args.endpoint
                )));
            }
            health::run(args, args.timeout.unwrap_or(DEFAULT_TIMEOUT), out)
        }
        ServerAnswer::HttpEcho if args.endpoint.resource.websocket => {
            let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT);
            let messages: Vec<(u8, Vec<u8>)> = if args.file.is_some() || args.hex {
                vec![(crate::wire::websocket::opcode::BINARY, whole(args)?)]
            } else {
                let text = crate::wire::websocket::opcode::TEXT;
                args.message
                    .iter()
                    .map(|word| (text, word.clone().into_bytes()))
                    .collect()
            };
            http::run_ws(args, &messages, timeout, out)
        }
        ServerAnswer::HttpEcho => {
            let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT);
            let body = if args.message.is_empty() && args.file.is_none() {
                None
            } else {
                Some(whole(args)?)
            };
            http::run_http(args, body.as_deref(), timeout, out)
        }
    }
}

/// The whole message, for a request body or one WebSocket message: held
/// in memory, so bounded (a stream kind's message is streamed instead).
fn whole(args: &Args) -> Result<Vec<u8>, Failure> {
    const MAX_WHOLE: usize = 16 << 20;
    let mut input = input(args)?;
    let mut message = Vec::new();
    while !input.at_end() {
        input.read_into(&mut message)?;
        if message.len() > MAX_WHOLE {
            return Err(Failure::usage(format!(
                "{}: a message over {MAX_WHOLE} bytes (an HTTP body or a WebSocket message is held whole)",
                args.endpoint
            )));
        }
    }
    Ok(message)
}

/// The message: the words, or FILE (`-`: stdin), hex-decoded with
/// `--hex`. Words given with `--hex` are decoded here, so bad digits are a
/// usage error before anything is connected.
fn input(args: &Args) -> Result<input::Input, Failure> {
    input::Input::open(&args.message, args.file.as_deref(), args.hex)
}

/// Where output goes: the article's lines for people, or with `--quiet`
/// only the payload, for scripts.
struct Out {
    quiet: bool,
    /// `--quiet` ends the payload with a newline (a message of words).
    newline: bool,
}

impl Out {
    /// A line for people; silent with `--quiet`.
    fn say(&self, line: fmt::Arguments) {
        if !self.quiet {
            say(line);
        }
    }

    /// A line of `--quiet` output (a responder's address), whatever the
    /// message was.
    fn quiet_line(&self, line: fmt::Arguments) {
        if self.quiet {
            say(line);
        }
    }

    /// The payload, raw, then a newline if it was words; only with
    /// `--quiet`.
    fn payload(&self, bytes: &[u8]) {
        self.payload_part(bytes);
        self.payload_end();
    }

    /// A piece of the payload, raw, as it arrives; only with `--quiet`.
    fn payload_part(&self, bytes: &[u8]) {
        if self.quiet {
            let _ = io::stdout().lock().write_all(bytes);
        }
    }

    /// Ends the payload: a newline if it was words; only with `--quiet`.
    fn payload_end(&self) {
        if self.quiet && self.newline {
            let _ = io::stdout().lock().write_all(b"\n");
        }
    }
}

/// One line to stdout; a closed stdout (`| head`) must not become a panic.
pub(crate) fn say(line: fmt::Arguments) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}

/// Bytes for people: double-quoted, in one escape style (C's, as Python
/// prints bytes): `\\`, `\"`, `\t`, `\n`, `\r`, and `\xNN` for every
/// other control byte and every byte that is not UTF-8; printable UTF-8 as
/// it is.
pub fn quote(bytes: &[u8]) -> String {
    let mut text = String::from("\"");
    let hex = |text: &mut String, bytes: &[u8]| {
        for byte in bytes {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\t' => text.push_str("\\t"),
                '\n' => text.push_str("\\n"),
                '\r' => text.push_str("\\r"),
                c if c.is_control() => hex(&mut text, c.encode_utf8(&mut [0; 4]).as_bytes()),
                c => text.push(c),
            }
        }
        hex(&mut text, chunk.invalid());
    }
    text.push('"');
    text
}

/// A message longer than this is shown by its start and its length: a
/// `-f` file of a megabyte must not become a megabyte-long line.
pub(crate) const SHOWN: usize = 256;

/// [`quote`] for a whole message: long ones cut to their first [`SHOWN`]
/// bytes, then `... (N bytes)`.
fn preview(bytes: &[u8]) -> String {
    if bytes.len() <= SHOWN {
        return quote(bytes);
    }
    format!("{}... ({} bytes)", quote(&bytes[..SHOWN]), bytes.len())
}

/// Compares an echo with what was sent; the mismatch names the first
/// differing byte, since the whole payload may be long.
fn compare(sent: &[u8], echo: &[u8]) -> Result<(), Failure> {
    match Mismatch::find(sent, 0, echo, false) {
        None => Ok(()),
        Some(mismatch) => Err(Failure::failed(mismatch.describe("echo"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_what_a_terminal_would_mangle() {
        assert_eq!(quote(b"It's \"x\""), r#""It's \"x\"""#);
        assert_eq!(quote(b"a\nb\x00\x1b\\"), r#""a\nb\x00\x1b\\""#);
        assert_eq!(quote(b"caf\xc3\xa9 \xff\xc2\x85"), r#""café \xff\xc2\x85""#);
    }

    #[test]
    fn a_long_message_is_shown_by_its_start_and_length() {
        assert_eq!(preview(b"short"), quote(b"short"));
        let long = vec![b'x'; 70_000];
        let shown = preview(&long);
        assert!(shown.ends_with("... (70000 bytes)"), "{shown}");
        assert!(shown.len() < SHOWN + 40, "{shown}");
    }

    #[test]
    fn compare_names_the_first_difference() {
        assert!(compare(b"abc", b"abc").is_ok());
        let err = compare(b"abc", b"abd").unwrap_err().to_string();
        assert!(err.contains("first difference at byte 2"), "{err}");
        let err = compare(b"abc", b"ab").unwrap_err().to_string();
        assert!(err.contains("3 bytes sent, 2 received"), "{err}");
    }
}
