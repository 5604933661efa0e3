//! Signal state: signals arrive as bytes in a socket pair (signal-hook's
//! self-pipe), read by a handler of the reactor like any other socket.

use std::io::{self, Read};

/// Empties a signal-hook pipe (edge-triggered: read to the end); true when
/// at least one signal byte was in it. The pipe carries no data but the
/// fact, so every byte read is the same news.
pub fn drain_pipe(reader: &mut impl Read) -> bool {
    let mut drained = [0u8; 64];
    let mut got_signal = false;
    loop {
        match reader.read(&mut drained) {
            Ok(0) => break,
            Ok(_) => got_signal = true,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got_signal
}
