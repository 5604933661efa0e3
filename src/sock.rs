//! Every socket echoplex creates is built here, with socket2, so the options
//! that matter (non-blocking, reuse, multicast scope) are set in one place.
//!
//! Each constructor calls `set_nonblocking(true)` explicitly: that is the
//! article's `setblocking(0)`, and it is what lets one thread serve them all.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::daemon::activation::{self, Local};
use crate::daemon::upgrade;
use crate::endpoint::Target;

/// Listen backlog: the kernel caps it at `net.core.somaxconn` anyway.
const BACKLOG: i32 = 1024;

fn domain_of(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// Whether TCP and UDP sockets take SO_REUSEPORT (see [`share_ports`]).
static SHARE_PORTS: AtomicBool = AtomicBool::new(false);

/// Makes every TCP listener and UDP socket bound from now on take
/// SO_REUSEPORT, so that each reactor of `serve --reactors N` binds its own
/// socket to the same address and the kernel spreads connections and
/// datagrams over them. Off by default: with one reactor a second server on
/// the same port must fail with "address in use", not share it.
pub fn share_ports(on: bool) {
    SHARE_PORTS.store(on, Ordering::Relaxed);
}

/// The addresses this process holds with SO_REUSEPORT (bound or adopted),
/// by socket type: the other reactors bind beside these.
static SHARED: Mutex<Vec<(Type, SocketAddr)>> = Mutex::new(Vec::new());

/// With SO_REUSEPORT, a bind silently joins whatever group of the same
/// user already holds the address, another process's included (it would
/// then take part of that process's connections, or hand us its own). So
/// the first socket at an explicit address is tried without it first: an
/// address held elsewhere is "address in use", as with one reactor. Port 0
/// needs no check (the kernel picks a port nobody listens on) and an
/// address this process holds already is the other reactors joining.
fn check_unshared(ty: Type, addr: SocketAddr) -> io::Result<()> {
    if !SHARE_PORTS.load(Ordering::Relaxed) || addr.port() == 0 || is_shared(ty, addr) {
        return Ok(());
    }
    let probe = Socket::new(domain_of(&addr), ty, None)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        // As the listener itself: TIME_WAIT leftovers are no conflict.
        probe.set_reuse_address(true)?;
    }
    probe.bind(&addr.into())
}

fn is_shared(ty: Type, addr: SocketAddr) -> bool {
    SHARED
        .lock()
        .is_ok_and(|shared| shared.contains(&(ty, addr)))
}

/// Notes that this process holds `socket`'s address with SO_REUSEPORT.
fn note_shared(ty: Type, socket: &Socket) {
    if !SHARE_PORTS.load(Ordering::Relaxed) {
        return;
    }
    let Some(addr) = socket.local_addr().ok().and_then(|a| a.as_socket()) else {
        return;
    };
    if let Ok(mut shared) = SHARED.lock() {
        if !shared.contains(&(ty, addr)) {
            shared.push((ty, addr));
        }
    }
}

/// A non-blocking TCP listener on `addr`, with SO_REUSEADDR so a restart
/// does not wait out TIME_WAIT.
/// A socket passed to us for `addr` (socket activation, upgrade) is
/// adopted instead of bound.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let socket = match activation::claim(Type::STREAM, &Local::Inet(addr)) {
        Some(socket) => share_adopted(adopt_listener(socket)?)?,
        None => {
            let socket = Socket::new(domain_of(&addr), Type::STREAM, Some(Protocol::TCP))?;
            if addr.is_ipv6() {
                // `[::]` should mean IPv6 only, as the user wrote it.
                socket.set_only_v6(true)?;
            }
            socket.set_reuse_address(true)?;
            check_unshared(Type::STREAM, addr)?;
            if SHARE_PORTS.load(Ordering::Relaxed) {
                socket.set_reuse_port(true)?;
            }
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            socket
        }
    };
    note_shared(Type::STREAM, &socket);
    socket.set_nonblocking(true)?;
    upgrade::record(&socket);
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// A socket systemd passed was bound without SO_REUSEPORT; with several
/// reactors it gets it now, so that the others can bind beside it (the
/// kernel makes the group when the next socket joins; that needs the same
/// user on both).
fn share_adopted(socket: Socket) -> io::Result<Socket> {
    if SHARE_PORTS.load(Ordering::Relaxed) && !socket.reuse_port()? {
        socket.set_reuse_port(true)?;
    }
    Ok(socket)
}

/// A passed stream socket listens already (systemd's `Accept=no`); one
/// that does not is made to.
fn adopt_listener(socket: Socket) -> io::Result<Socket> {
    if !socket.is_listener()? {
        socket.listen(BACKLOG)?;
    }
    Ok(socket)
}

/// A non-blocking UDP socket bound to `addr`.
pub fn udp_socket(addr: SocketAddr) -> io::Result<mio::net::UdpSocket> {
    let socket = match activation::claim(Type::DGRAM, &Local::Inet(addr)) {
        Some(socket) => share_adopted(socket)?,
        None => {
            let socket = Socket::new(domain_of(&addr), Type::DGRAM, Some(Protocol::UDP))?;
            if addr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            check_unshared(Type::DGRAM, addr)?;
            if SHARE_PORTS.load(Ordering::Relaxed) {
                socket.set_reuse_port(true)?;
            }
            socket.bind(&addr.into())?;
            socket
        }
    };
    note_shared(Type::DGRAM, &socket);
    socket.set_nonblocking(true)?;
    upgrade::record(&socket);
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// A non-blocking socket that receives datagrams sent to an IPv4 multicast
/// `group:port`, joined on `iface`.
///
/// SO_REUSEADDR and SO_REUSEPORT let several receivers share the group; the
/// socket is bound to the group address, not the wildcard, so it cannot
/// swallow unicast traffic to the same port. Replies it sends are unicast,
/// but multicast TTL 1 and IP_MULTICAST_IF are still pinned to `iface` so
/// nothing it ever sends can leave that interface.
pub fn multicast_socket(
    group: Ipv4Addr,
    port: u16,
    iface: Ipv4Addr,
) -> io::Result<mio::net::UdpSocket> {
    if !group.is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{group} is not a multicast group (224.0.0.0/4)"),
        ));
    }
    let addr = SocketAddr::from((group, port));
    let (socket, joined) = match activation::claim(Type::DGRAM, &Local::Inet(addr)) {
        Some(socket) => (socket, true),
        None => {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into())?;
            (socket, false)
        }
    };
    match socket.join_multicast_v4(&group, &iface) {
        Ok(()) => {}
        // A passed socket (our upgrade) may be a member already.
        Err(err) if joined && err.raw_os_error() == Some(libc::EADDRINUSE) => {}
        Err(err) => {
            return Err(io::Error::new(
                err.kind(),
                format!(
                    "cannot join {group} on interface {iface}: {}",
                    crate::error::describe(&err)
                ),
            ))
        }
    }
    socket.set_multicast_if_v4(&iface)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_nonblocking(true)?;
    upgrade::record(&socket);
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// The socket2 address of a Unix-domain target (path or abstract name).
pub fn unix_sockaddr(target: &Target) -> io::Result<SockAddr> {
    match target {
        Target::Path(path) => SockAddr::unix(path),
        Target::Abstract(name) => {
            // A leading NUL byte is how Linux spells the abstract namespace.
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(name.as_bytes());
            SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
        }
        Target::Inet { .. } => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a Unix-domain address",
        )),
    }
}

/// Removes the socket file it names when dropped: only files this process
/// created get one, and only if the path still holds that very file (same
/// device and inode), so a socket someone else bound there since is kept.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl SocketFile {
    fn created(path: &Path) -> io::Result<SocketFile> {
        let meta = fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if upgrade::handed_over() {
            return; // the process that replaced us serves this file now
        }
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {}
            Ok(_) => {
                log::warn!(
                    "{} was replaced by another file; leaving it alone",
                    self.path.display()
                );
                return;
            }
            Err(_) => return, // already gone
        }
        if let Err(err) = fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!("could not remove {}: {err}", self.path.display());
            }
        }
    }
}

/// Makes way for a Unix socket at `path`: nothing there is fine; a stale
/// socket file (nobody listening) is removed; a live socket, a regular file,
/// a directory or anything else is an error and is left untouched.
fn clear_stale_socket(path: &Path, ty: Type) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        let what = if meta.is_dir() {
            "a directory"
        } else if meta.is_file() {
            "a regular file"
        } else {
            "not a socket"
        };
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is {what}; refusing to replace it",
                path.display()
            ),
        ));
    }
    // A non-blocking connect answers at once: refused means nobody listens.
    // EAGAIN means a live server whose backlog is full, so it stays.
    let probe = Socket::new(Domain::UNIX, ty, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing stale socket file {}", path.display());
            fs::remove_file(path)
        }
        Ok(()) => Err(in_use(path)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Err(in_use(path)),
        Err(err) if err.raw_os_error() == Some(libc::EPROTOTYPE) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} is a live socket of another type; refusing to replace it",
                path.display()
            ),
        )),
        Err(err) => Err(err),
    }
}

fn in_use(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("a server is already listening on {}", path.display()),
    )
}

/// Binds a Unix-domain socket of type `ty` at `target`, creating the file
/// with permissions `mode`. Returns the socket and, for a file-system path,
/// the guard that removes the file again.
fn bind_unix(target: &Target, ty: Type, mode: u32) -> io::Result<(Socket, Option<SocketFile>)> {
    let socket = Socket::new(Domain::UNIX, ty, None)?;
    let Target::Path(path) = target else {
        socket.bind(&unix_sockaddr(target)?)?;
        return Ok((socket, None));
    };
    clear_stale_socket(path, ty)?;
    // bind() creates the file with 0777 & !umask, so a umask of !mode gives
    // it exactly `mode`, from its first instant. Nothing touches the path
    // after bind: anyone who can write to the directory can rename a
    // symlink over the fresh socket, and a chmod by path would then follow
    // it and change the mode of any file the daemon can reach.
    // Sockets are bound before the loop starts; the only other thread then
    // (the log writer) creates no files, so the process mask may change.
    let address = SockAddr::unix(path)?;
    let bound = crate::sys::socket::with_umask(!mode & 0o777, || socket.bind(&address));
    bound.map_err(|err| explain_bind_error(path, err))?;
    let guard = SocketFile::created(path)?;
    Ok((socket, Some(guard)))
}

/// bind(2) says only "No such file or directory" when the socket's
/// directory is missing: name the directory.
fn explain_bind_error(path: &Path, err: io::Error) -> io::Error {
    if err.kind() != io::ErrorKind::NotFound {
        return err;
    }
    let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
        return err;
    };
    if fs::symlink_metadata(dir).is_ok() {
        return err;
    }
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "No such file or directory: the directory {} does not exist",
            dir.display()
        ),
    )
}

pub use crate::sys::socket::peer_uid;

/// A non-blocking Unix stream listener; see `bind_unix` for the file rules.
/// A passed socket at `target` is adopted instead (and its file, which we
/// did not create, is never removed).
pub fn unix_listener(
    target: &Target,
    mode: u32,
) -> io::Result<(mio::net::UnixListener, Option<SocketFile>)> {
    let (socket, guard) = match claim_unix(target, Type::STREAM) {
        Some((socket, guard)) => (adopt_listener(socket)?, guard),
        None => {
            let (socket, guard) = bind_unix(target, Type::STREAM, mode)?;
            socket.listen(BACKLOG)?;
            (socket, guard)
        }
    };
    socket.set_nonblocking(true)?;
    upgrade::record_unix(&socket, guard.is_some());
    Ok((mio::net::UnixListener::from_std(socket.into()), guard))
}

/// A non-blocking Unix datagram socket; see `bind_unix` for the file rules.
/// A passed socket at `target` is adopted instead, as for `unix_listener`.
pub fn unix_datagram(
    target: &Target,
    mode: u32,
) -> io::Result<(std::os::unix::net::UnixDatagram, Option<SocketFile>)> {
    let (socket, guard) = match claim_unix(target, Type::DGRAM) {
        Some(claimed) => claimed,
        None => bind_unix(target, Type::DGRAM, mode)?,
    };
    socket.set_nonblocking(true)?;
    upgrade::record_unix(&socket, guard.is_some());
    Ok((socket.into(), guard))
}

/// A passed Unix socket at `target`. Its file is removed on exit only when
/// the process we replaced handed it over (echoplex made it); a file
/// systemd made is never removed.
fn claim_unix(target: &Target, ty: Type) -> Option<(Socket, Option<SocketFile>)> {
    let (socket, ours) = activation::claim_unix(ty, &Local::of_target(target)?)?;
    let guard = match target {
        Target::Path(path) if ours => SocketFile::created(path).ok(),
        _ => None,
    };
    Some((socket, guard))
}

// --- clients ---

/// A non-blocking client socket, not yet connected: `client` and `ping`
/// connect it themselves so every wait stays bounded and interruptible.
/// TCP gets TCP_NODELAY, since a ping's round trip must not wait for Nagle.
pub fn client_socket(domain: Domain, ty: Type) -> io::Result<Socket> {
    let socket = Socket::new(domain, ty, None)?;
    if ty == Type::STREAM && domain != Domain::UNIX {
        socket.set_tcp_nodelay(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A non-blocking Unix datagram client bound at `local` (mode 600), so the
/// server has an address to answer; the guard removes the file again.
pub fn unix_datagram_client(local: &Path) -> io::Result<(Socket, SocketFile)> {
    let (socket, guard) = bind_unix(&Target::Path(local.to_path_buf()), Type::DGRAM, 0o600)?;
    socket.set_nonblocking(true)?;
    let guard = guard.ok_or_else(|| io::Error::other("no socket file was created"))?;
    Ok((socket, guard))
}

/// A non-blocking UDP socket that sends multicast on `iface` with `ttl`,
/// bound to `iface` so the answers (unicast, to our source) come back to it.
/// Loopback delivery stays on, so receivers on this host hear us.
pub fn multicast_sender(iface: Ipv4Addr, ttl: u32) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SocketAddr::from((iface, 0)).into())?;
    socket.set_multicast_if_v4(&iface)?;
    socket.set_multicast_ttl_v4(ttl)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
