//! One file per endpoint kind. Each binds its socket (through `sock`) and
//! returns the handler the reactor keeps in its slab; [`bind`] names each
//! kind's (the table of kinds in `endpoint.rs` names no service).
//!
//! Shared pieces: `listener` (accepting stream sockets, with the limits),
//! `stream` (the echo connection and its buffers), `datagram` (answering
//! datagrams), `source_guard` (the anti-reflection guard of udp and
//! multicast).

pub mod admin;
pub mod datagram;
pub mod listener;
pub mod stream;

pub mod binary;
pub mod http;
pub mod metrics;
pub mod multicast;
pub mod page;
pub mod source_guard;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod unix;
pub mod unix_dgram;

use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The PROXY codec moved to `wire` (the client layer uses it too); the
/// old path stays for code that names `services::proxy`.
pub use crate::wire::proxy;

use crate::endpoint::{Endpoint, Kind};
use crate::reactor::Handler;

/// Settings that services read when they bind.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Interface for multicast membership.
    pub iface: Ipv4Addr,
    /// Permissions of Unix socket files.
    pub unix_mode: u32,
    /// Record layout of `binary://`, in Python `struct` syntax.
    pub format: String,
    /// Replies per second per source for UDP and multicast; 0 = unlimited.
    pub udp_rate: u32,
    /// Apply `udp_rate` to loopback sources too.
    pub rate_limit_loopback: bool,
    /// The certificate and configs of `tls://` and `https://` (serve sets
    /// them up when it serves one).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// `--max-buffer`: what a TLS session may buffer too.
    pub max_buffer: usize,
    /// Passed sockets, the upgrade's record, SO_REUSEPORT: what `sock`'s
    /// constructors are given.
    pub binder: crate::sock::Binder,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            iface: Ipv4Addr::LOCALHOST,
            format: "I 2s f".into(),
            unix_mode: 0o600,
            udp_rate: 1000,
            rate_limit_loopback: false,
            tls: None,
            max_buffer: 64 * 1024,
            binder: crate::sock::Binder::default(),
        }
    }
}

/// A bound endpoint: its handler, and the endpoint as it really is (port 0
/// resolved) for the `listening` line.
pub struct Bound {
    /// The handler to insert into the reactor.
    pub handler: Box<dyn Handler>,
    /// The endpoint with its real address.
    pub endpoint: Endpoint,
    /// Anything worth a word in the start-up log (format, interface).
    pub detail: String,
}

/// Binds `endpoint` with its kind's service module.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    // Every kind, no fallback arm: a new kind in endpoint.rs's table does
    // not compile until its service is named here.
    let bind = match endpoint.kind {
        Kind::Tcp => tcp::bind,
        Kind::Udp => udp::bind,
        Kind::Unix => unix::bind,
        Kind::UnixDgram => unix_dgram::bind,
        Kind::Multicast => multicast::bind,
        Kind::Binary => binary::bind,
        Kind::Http => http::bind,
        Kind::Https => tls::bind_https,
        Kind::Tls => tls::bind,
        Kind::Metrics => metrics::bind,
    };
    bind(endpoint, config)
}
