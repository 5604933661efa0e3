//! Wire formats, pure: bytes in, values out (and back), no sockets, no
//! clock, no reactor. The daemon's services and the tools share them.
//!
//! `http`: HTTP/1.1 heads (httparse, with the smuggling checks around it),
//! chunked bodies, the heads we write. `websocket`: RFC 6455 frames,
//! masking, messages, close codes and the handshake's accept key.

pub mod http;
pub mod websocket;
