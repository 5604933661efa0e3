//! `unix:PATH`: Unix-domain stream echo.

use std::io;

use super::listener::Listener;
use super::stream::{Echo, EchoConn};
use super::{Bound, ServeConfig};
use crate::endpoint::Endpoint;
use crate::sock;

/// Binds a Unix stream echo listener (file mode `--unix-mode`).
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let (listener, socket_file) = sock::unix_listener(&endpoint.target, config.unix_mode)?;
    let proxy = endpoint.options.proxy;
    let handler = Listener::new(
        listener,
        "unix-listener",
        endpoint.to_string(),
        Box::new(move |stream, peer| {
            let conn = EchoConn::new(stream, "unix-conn", peer, Echo);
            Box::new(if proxy { conn.with_proxy() } else { conn })
        }),
        socket_file,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.clone(),
        detail: String::new(),
    })
}
