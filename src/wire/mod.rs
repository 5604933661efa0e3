//! Wire formats, pure: bytes in, values out (and back), no sockets, no
//! clock, no reactor. The daemon's services and the tools (`probe`) share
//! them, so they sit below both.
//!
//! `http`: HTTP/1.1 heads (httparse, with the smuggling checks around it),
//! chunked bodies, the heads we write. `websocket`: RFC 6455 frames,
//! masking, messages, close codes and the handshake's accept key. `proxy`:
//! the PROXY protocol v1/v2 parser and builders, and `?proxy`'s Preamble.

pub mod http;
pub mod proxy;
pub mod websocket;
