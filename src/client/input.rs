//! Where a client's message comes from: the words, or `-f FILE` (`-`:
//! standard input), decoded from hex with `--hex`, read a block at a time
//! so a file of any size (even `/dev/zero`) costs a bounded amount of
//! memory. Waiting for input notices Ctrl-C: a terminal's `-f -` ends at
//! the first one, before anything was sent.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::quote;
use crate::error::describe;
use crate::probe::socket::wait;
use crate::probe::{Exit, Failure};

/// How much of the input one read takes.
pub const BLOCK: usize = 64 * 1024;

/// The message's bytes, as they are read.
pub struct Input {
    source: Source,
    /// `--hex`: the raw bytes are digits to decode.
    hex: Option<Hex>,
    /// What the message is called in errors: `FILE`, `standard input`.
    name: String,
    /// The source said end of file.
    eof: bool,
}

enum Source {
    /// The words, joined; taken whole by the first read.
    Words(Option<Vec<u8>>),
    File(File),
    Stdin(io::Stdin),
}

impl Input {
    /// Opens the message: the words, FILE or stdin. An unreadable FILE is
    /// a usage error here, before anything is connected.
    pub fn open(words: &[String], file: Option<&Path>, hex: bool) -> Result<Input, Failure> {
        let (source, name) = match file {
            None => (
                Source::Words(Some(words.join(" ").into_bytes())),
                "the message".to_string(),
            ),
            Some(path) if path.as_os_str() == "-" => {
                (Source::Stdin(io::stdin()), "standard input".to_string())
            }
            Some(path) => {
                // Non-blocking: opening a FIFO with no writer yet would
                // otherwise block in open(2), where Ctrl-C and SIGTERM
                // (caught, to end a run cleanly) cannot reach it; the
                // reads wait in poll, which notices them.
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path)
                    .map_err(|err| {
                        Failure::usage(format!(
                            "cannot read {}: {}",
                            path.display(),
                            describe(&err)
                        ))
                    })?;
                (Source::File(file), path.display().to_string())
            }
        };
        Ok(Input {
            source,
            hex: hex.then(Hex::default),
            name,
            eof: false,
        })
    }

    /// True once everything was read.
    pub fn at_end(&self) -> bool {
        self.eof
    }

    /// The descriptor to poll while waiting for input (`None`: the words,
    /// always ready).
    pub fn fd(&self) -> Option<RawFd> {
        match &self.source {
            Source::Words(_) => None,
            Source::File(file) => Some(file.as_raw_fd()),
            Source::Stdin(stdin) => Some(stdin.as_raw_fd()),
        }
    }

    /// Appends the next block of the message to `out` (decoded, with
    /// `--hex`); sets the end once the source has no more. Waits for input
    /// (a terminal, a pipe) as long as it takes, but not past a Ctrl-C.
    pub fn read_into(&mut self, out: &mut Vec<u8>) -> Result<(), Failure> {
        self.read_at_most(out, BLOCK)
    }

    /// [`Input::read_into`], reading at most `max` bytes of the source.
    fn read_at_most(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), Failure> {
        if self.eof {
            return Ok(());
        }
        let mut block = vec![0u8; max.clamp(1, BLOCK)];
        let n = loop {
            if let Some(fd) = self.fd() {
                while wait(fd, libc::POLLIN, Instant::now() + Duration::from_secs(3600))? == 0 {}
            }
            let read = match &mut self.source {
                Source::Words(words) => {
                    block = words.take().unwrap_or_default();
                    Ok(block.len())
                }
                Source::File(file) => retry(|| file.read(&mut block)),
                Source::Stdin(stdin) => retry(|| stdin.lock().read(&mut block)),
            };
            // A FILE is opened non-blocking (see `open`): wait again.
            match read {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                other => break other,
            }
        }
        .map_err(|err| {
            Failure::new(
                Exit::Io,
                format!("reading {}: {}", self.name, describe(&err)),
            )
        })?;
        block.truncate(n);
        if n == 0 || matches!(self.source, Source::Words(_)) {
            self.eof = true;
        }
        match &mut self.hex {
            None => out.extend_from_slice(&block),
            Some(hex) => {
                hex.decode(&block, out).map_err(Failure::usage)?;
                if self.eof {
                    hex.finish().map_err(Failure::usage)?;
                }
            }
        }
        Ok(())
    }

    /// Reads the whole message for a datagram kind, refusing (before
    /// anything is sent) a message longer than `limit`: at most `limit`
    /// plus one bytes are read (hex digits: a block more).
    pub fn read_datagram(&mut self, limit: usize, kind: &str) -> Result<Vec<u8>, Failure> {
        let mut message = Vec::new();
        while !self.eof {
            let max = match self.hex {
                Some(_) => BLOCK,
                None => limit + 1 - message.len(),
            };
            self.read_at_most(&mut message, max)?;
            if message.len() > limit {
                return Err(Failure::usage(format!(
                    "Message too long: {} holds more than {limit} bytes, the most one {kind} datagram carries",
                    self.name
                )));
            }
        }
        Ok(message)
    }
}

/// Repeats a read that a signal interrupted (Ctrl-C is seen by the wait).
fn retry(mut read: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match read() {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Hexadecimal digits to bytes, fed in pieces; ASCII whitespace between
/// digits is ignored.
#[derive(Default)]
struct Hex {
    /// The first digit of a pair whose second has not come yet.
    high: Option<u8>,
    /// Digits seen, for the odd-count error.
    digits: usize,
    /// Bytes decoded, for the position in errors.
    bytes: usize,
}

impl Hex {
    fn decode(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        for &digit in text.iter().filter(|b| !b.is_ascii_whitespace()) {
            self.digits += 1;
            let Some(high) = self.high.take() else {
                self.high = Some(digit);
                continue;
            };
            let pair = [high, digit];
            let byte = std::str::from_utf8(&pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "--hex: {} at byte {} is not two hexadecimal digits",
                        quote(&pair),
                        self.bytes
                    )
                })?;
            out.push(byte);
            self.bytes += 1;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        match self.high {
            Some(_) => Err(format!(
                "--hex: {} digits is an odd count; every byte takes two",
                self.digits
            )),
            None => Ok(()),
        }
    }
}

/// Decodes a whole hex text at once.
#[cfg(test)]
pub fn from_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut hex = Hex::default();
    let mut out = Vec::new();
    hex.decode(text, &mut out)?;
    hex.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_takes_pairs_of_digits_and_ignores_spaces() {
        assert_eq!(from_hex(b"00 ff\n0D0a"), Ok(vec![0, 0xff, 0x0d, 0x0a]));
        assert_eq!(from_hex(b""), Ok(vec![]));
        assert!(from_hex(b"abc").unwrap_err().contains("odd"));
        assert!(from_hex(b"zz").unwrap_err().contains("not two hexadecimal"));
    }

    #[test]
    fn hex_split_anywhere_decodes_the_same() {
        let text = b"00 ff 0d 0a 7f";
        for cut in 0..=text.len() {
            let mut hex = Hex::default();
            let mut out = Vec::new();
            hex.decode(&text[..cut], &mut out).expect("first part");
            hex.decode(&text[cut..], &mut out).expect("second part");
            hex.finish().expect("even");
            assert_eq!(out, [0, 0xff, 0x0d, 0x0a, 0x7f], "cut at {cut}");
        }
    }
}
