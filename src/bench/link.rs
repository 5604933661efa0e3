//! What both stream-kind flows (`stream.rs`: bytes; `http.rs`: HTTP and
//! WebSocket) do at the socket alike: register it, start a connection,
//! write what it takes, and tell a server's close from other failures.

use std::io;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::types::Dest;
use crate::error::describe;
use crate::probe::socket::{ClientBind, Sock};

/// Registers (or, `again`, re-registers) a generator connection's socket.
pub(super) fn register(
    registry: &Registry,
    sock: &Sock,
    token: Token,
    interest: Interest,
    again: bool,
) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    if again {
        registry.reregister(&mut SourceFd(&fd), token, interest)
    } else {
        registry.register(&mut SourceFd(&fd), token, interest)
    }
}

/// A socket to `dest` (its PROXY header and TLS session ready) whose
/// connect has begun, registered as `token` for writable to see the
/// handshake end: the start of every stream-kind bench connection.
pub(super) fn start_connecting(dest: &Dest, registry: &Registry, token: Token) -> io::Result<Sock> {
    let sock = Sock::begin(dest.kind, &dest.addr, ClientBind::TempFile)?
        .with_proxy_header(dest.proxy)
        .with_tls(dest.tls.as_ref())?;
    register(
        registry,
        &sock,
        token,
        Interest::READABLE | Interest::WRITABLE,
        false,
    )?;
    Ok(sock)
}

/// A read or write error that means the server closed the connection
/// (both flows ask).
pub(super) fn is_server_close(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// How a write to a bench connection failed: the server closed it, or
/// something else (said in words, without the connection's name).
pub(super) enum WriteFailed {
    ByServer(String),
    Other(String),
}

/// Writes what `sock` takes of `out[*out_pos..]` (TLS records left from
/// the last write first), then keeps the registration for writable in
/// step with what is left.
pub(super) fn write_out(
    sock: &Sock,
    out: &[u8],
    out_pos: &mut usize,
    write_interest: &mut bool,
    registry: &Registry,
    token: Token,
) -> Result<(), WriteFailed> {
    if let Err(err) = sock.flush_tls() {
        return Err(WriteFailed::Other(format!(
            "write failed: {}",
            describe(&err)
        )));
    }
    while *out_pos < out.len() {
        match sock.send(&out[*out_pos..]) {
            Ok(0) => break,
            Ok(n) => *out_pos += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                let why = format!("write failed: {}", describe(&err));
                return Err(if is_server_close(&err) {
                    WriteFailed::ByServer(why)
                } else {
                    WriteFailed::Other(why)
                });
            }
        }
    }
    // TLS: records the socket did not take yet count as blocked too.
    let blocked = *out_pos < out.len() || sock.wants_write();
    if blocked != *write_interest {
        let interest = if blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        register(registry, sock, token, interest, true)
            .map_err(|err| WriteFailed::Other(format!("reregister: {}", describe(&err))))?;
        *write_interest = blocked;
    }
    Ok(())
}
