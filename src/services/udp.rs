//! `udp://HOST:PORT`: UDP echo (RFC 862, datagram), guarded against
//! reflection loops and floods.

use std::io;

use super::datagram::{DatagramService, ReplyWith, SourceGuard};
use super::{Bound, ServeConfig};
use crate::endpoint::Endpoint;
use crate::sock;

/// Binds a UDP echo socket.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let socket = sock::udp_socket(endpoint.socket_addr()?, &config.binder)?;
    let local = socket.local_addr()?;
    let handler = DatagramService::new(
        socket,
        "udp",
        local.to_string(),
        ReplyWith::Echo,
        Some(SourceGuard::new(
            config.udp_rate,
            config.rate_limit_loopback,
        )),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail: String::new(),
    })
}
