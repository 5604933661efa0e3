//! `tcp://HOST:PORT`: TCP echo (RFC 862, stream).

use std::io;

use super::listener::Listener;
use super::stream::{Echo, EchoConn};
use super::{Bound, ServeConfig};
use crate::endpoint::Endpoint;
use crate::sock;

/// Binds a TCP echo listener.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let listener = sock::tcp_listener(endpoint.socket_addr()?, &config.binder)?;
    let local = listener.local_addr()?;
    let proxy = endpoint.options.proxy;
    let handler = Listener::new(
        listener,
        "tcp-listener",
        local.to_string(),
        Box::new(move |stream, peer| {
            let conn = EchoConn::new(stream, "tcp-conn", peer, Echo);
            Box::new(if proxy { conn.with_proxy() } else { conn })
        }),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail: String::new(),
    })
}
