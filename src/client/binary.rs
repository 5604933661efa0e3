//! binary:// client: pack the values with `--format` (the daemon's struct
//! codec), send the record, read exactly one record back, decode it.

use std::time::Duration;

use super::{compare, Args, Out};
use crate::codec::structfmt::{repr, to_hex, Format, Value};
use crate::probe::socket::BoundedConn;
use crate::probe::{Exit, Failure};

/// Runs one record exchange.
pub(super) fn run(args: &Args, timeout: Duration, out: &Out) -> Result<(), Failure> {
    let format = Format::parse(&args.format).map_err(|err| Failure::usage(err.to_string()))?;
    let values = format
        .parse_values(&args.message)
        .and_then(|values| Ok((format.encode(&values)?, values)));
    let (packed, values) = values
        .map_err(|err| Failure::usage(format!("values for format '{}': {err}", args.format)))?;
    out.say(format_args!("connecting to {}", args.endpoint));
    let conn = BoundedConn::connect(&args.endpoint, timeout, None)?;
    out.say(format_args!("values = {}", repr(&values)));
    // Python's struct cuts or pads bytes and squeezes ints into bools
    // silently; say so, since the echo then differs from what was typed.
    // (A float rounded to f's 32 bits shows in the unpacked line.)
    if let Ok(packed_values) = format.decode(&packed) {
        for (i, (given, sent)) in values.iter().zip(&packed_values).enumerate() {
            let float = matches!(given, Value::Float(_));
            if !float && given.to_string() != sent.to_string() {
                out.say(format_args!(
                    "note: value {} is {given}, which '{}' packs as {sent}",
                    i + 1,
                    args.format
                ));
            }
        }
    }
    out.say(format_args!("sending {}", to_hex(&packed)));
    let echo = conn
        .exchange(&packed, packed.len(), args.chunk as usize, |piece| {
            out.say(format_args!("received {}", to_hex(piece)))
        })
        .map_err(|failure| match failure {
            // The server echoes only whole records of its own --format.
            failure if failure.exit == Exit::Timeout => Failure::new(
                Exit::Timeout,
                format!(
                    "{}; does the server use the same --format '{}'?",
                    failure.message, args.format
                ),
            ),
            other => other,
        })?;
    // The daemon re-encodes what it decoded; a record that does not decode
    // is a mismatch, not a crash.
    let unpacked = format.decode(&echo).map(|values| repr(&values));
    match &unpacked {
        Ok(text) => {
            out.say(format_args!("unpacked: {text}"));
            out.payload(text.as_bytes());
        }
        Err(err) => out.say(format_args!("cannot unpack the echo: {err}")),
    }
    out.say(format_args!("closing socket"));
    compare(&packed, &echo)
}
