//! The client side that `client`, `ping` and `bench` share: the socket
//! over any kind and connecting with a deadline ([`socket`]), the verified
//! payload and the one mismatch description ([`payload`]), the one
//! duration rule ([`duration`]), Ctrl-C as a flag ([`interrupt`]), and
//! the failure classes behind the exit codes (re-exported from `error`).

pub mod duration;
pub mod http;
pub mod interrupt;
pub mod payload;
pub mod socket;
pub mod tls;

pub use crate::error::{Exit, Failure};

/// Largest datagram a client sends: the UDP payload limit over IPv4
/// (65,535 less the 8-byte UDP and 20-byte IP headers).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Receive buffer for one datagram: one byte more than any datagram can
/// carry, so an echo longer than what was sent shows up as a mismatch
/// instead of being cut to size.
pub const DATAGRAM_BUFFER: usize = 65_536;
