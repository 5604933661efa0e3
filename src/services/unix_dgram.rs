//! `unix-dgram:PATH`: Unix-domain datagram echo.
//!
//! mio's `UnixDatagram` cannot send to an abstract-namespace sender, so the
//! socket is std's, polled through its raw descriptor.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{self, UnixDatagram};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::datagram::{DatagramService, DatagramSocket, ReplyWith};
use super::{Bound, ServeConfig};
use crate::endpoint::{Endpoint, Target};
use crate::sock;

/// A non-blocking std `UnixDatagram` that mio can poll.
pub struct UnixDgram {
    socket: UnixDatagram,
    /// An unnamed address, for senders that did not bind (std cannot make
    /// one from nothing): the local address of an unbound socket.
    unnamed: net::SocketAddr,
}

impl UnixDgram {
    fn new(socket: UnixDatagram) -> io::Result<UnixDgram> {
        let unnamed = UnixDatagram::unbound()?.local_addr()?;
        Ok(UnixDgram { socket, unnamed })
    }

    /// The sender a `recvfrom` wrote in `addr` (`len` bytes of it).
    fn sender(&self, addr: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<UnixSender> {
        let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let path_len = (len as usize)
            .saturating_sub(offset)
            .min(addr.sun_path.len());
        // c_char is i8 on x86_64: the bytes as the kernel wrote them.
        let path: Vec<u8> = addr.sun_path[..path_len].iter().map(|&c| c as u8).collect();
        let address = match path.split_first() {
            None => self.unnamed.clone(),
            Some((0, name)) => net::SocketAddr::from_abstract_name(name)?,
            Some(_) => {
                // A path ends at its NUL, if the length counted one.
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                let path = std::ffi::OsStr::from_bytes(&path[..end]);
                net::SocketAddr::from_pathname(path)?
            }
        };
        Ok(UnixSender(address))
    }
}

impl mio::event::Source for UnixDgram {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).register(registry, token, interests)
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).reregister(registry, token, interests)
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).deregister(registry)
    }
}

/// A Unix datagram sender: a path, an abstract name, or unnamed.
#[derive(Clone, Debug)]
pub struct UnixSender(net::SocketAddr);

impl fmt::Display for UnixSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = self.0.as_pathname() {
            write!(f, "{}", path.display())
        } else if let Some(name) = self.0.as_abstract_name() {
            write!(f, "@{}", String::from_utf8_lossy(name))
        } else {
            f.write_str("-")
        }
    }
}

impl PartialEq for UnixSender {
    fn eq(&self, other: &Self) -> bool {
        if self.0.is_unnamed() || other.0.is_unnamed() {
            return false; // unnamed senders cannot be told apart, nor answered
        }
        self.0.as_pathname() == other.0.as_pathname()
            && self.0.as_abstract_name() == other.0.as_abstract_name()
    }
}

impl DatagramSocket for UnixDgram {
    type Addr = UnixSender;
    fn recv_one(&self, buf: &mut [u8]) -> io::Result<(usize, UnixSender)> {
        // Unix datagrams can exceed the 64 KiB buffer, and a plain
        // recvfrom would silently truncate them: with MSG_TRUNC it returns
        // the datagram's real size (Linux 3.4+), so a big one is dropped
        // whole, in the same syscall (it used to take a peek first).
        let (size, addr, len) = crate::sys::socket::recv_from_unix(self.socket.as_raw_fd(), buf)?;
        // A name std refuses cannot come from the kernel; if one did, drop
        // that datagram (InvalidData), not the socket.
        let from = self
            .sender(&addr, len)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        if size > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "dropped a {size}-byte datagram from {from}: larger than {} bytes",
                    buf.len()
                ),
            ));
        }
        Ok((size, from))
    }
    fn send_one(&self, buf: &[u8], to: &UnixSender) -> io::Result<bool> {
        if to.0.is_unnamed() {
            // A newcomer's first datagram often comes from an unbound
            // socket: say why nothing came back (rate-limited: a client can
            // send many).
            crate::log_limited!(
                log::Level::Info,
                "unix-dgram: cannot answer a sender that did not bind its socket \
                 to a path (bind it, e.g. socat's UNIX-SENDTO with bind=PATH)"
            );
            return Ok(false);
        }
        self.socket.send_to_addr(buf, &to.0).map(|_| true)
    }
    fn inet(_addr: &UnixSender) -> Option<SocketAddr> {
        None
    }
    const FULL_MEANS_PEER_FULL: bool = true;
}

/// Binds a Unix datagram echo socket (file mode `--unix-mode`). A relative
/// path is bound (and shown) absolute: replies come from the bound address,
/// and a client that sent to the absolute path drops replies from
/// `./name` as from a stranger.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let mut endpoint = endpoint.clone();
    if let Target::Path(path) = &endpoint.target {
        if path.is_relative() {
            // `./x` and `x` alike: components() drops the leading `.`.
            let relative = path
                .components()
                .filter(|part| *part != std::path::Component::CurDir);
            endpoint.target = Target::Path(
                std::env::current_dir()?.join(relative.collect::<std::path::PathBuf>()),
            );
        }
    }
    let (socket, socket_file) =
        sock::unix_datagram(&endpoint.target, config.unix_mode, &config.binder)?;
    let handler = DatagramService::new(
        UnixDgram::new(socket)?,
        "unix-dgram",
        endpoint.to_string(),
        ReplyWith::Echo,
        None,
        socket_file,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint,
        detail: String::new(),
    })
}
