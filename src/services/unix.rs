//! `unix:PATH`: Unix-domain stream echo.

use std::io;

use super::listener::Listener;
use super::stream::{Echo, EchoConn};
use super::{Bound, ServeConfig};
use crate::endpoint::{Endpoint, Target};
use crate::sock;

/// Binds a Unix stream echo listener (file mode `--unix-mode`).
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let (listener, socket_file) =
        sock::unix_listener(&endpoint.target, config.unix_mode, &config.binder)?;
    let proxy = endpoint.options.proxy;
    let mut handler = Listener::new(
        listener,
        "unix-listener",
        endpoint.to_string(),
        Box::new(move |stream, peer| {
            let conn = EchoConn::new(stream, "unix-conn", peer, Echo);
            Box::new(if proxy { conn.with_proxy() } else { conn })
        }),
        socket_file,
    );
    if let Some(uid) = endpoint.options.uid {
        handler =
            handler.with_peer_check(Box::new(move |stream| {
                match crate::sys::socket::peer_uid(stream) {
                    Ok(peer) if peer == uid => Ok(()),
                    Ok(peer) => Err(format!("peer uid {peer} is not {uid} (?uid)")),
                    Err(err) => Err(format!("cannot read the peer's credentials: {err}")),
                }
            }));
    } else if matches!(endpoint.target, Target::Abstract(_)) {
        // An abstract name has no file, so --unix-mode cannot protect it.
        log::info!(
            "{endpoint}: abstract socket, --unix-mode does not apply: anyone on this host \
             can connect (add ?uid=N to accept one user only)"
        );
    }
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.clone(),
        detail: String::new(),
    })
}
