//! Every socket echoplex creates is built here, with socket2, so the options
//! that matter (non-blocking, reuse, multicast scope) are set in one place.
//!
//! Each constructor calls `set_nonblocking(true)` explicitly: that is the
//! article's `setblocking(0)`, and it is what lets one loop serve them all.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// Sockets passed between processes, as the daemon around `sock` keeps
/// them: those it was given (systemd's socket activation, the process it
/// replaces), which a constructor adopts instead of binding anew, and the
/// record of every serving socket it makes, for an upgrade to hand over.
/// The daemon implements it and passes it in through a [`Binder`], so no
/// constructor here names daemon code.
pub trait Passing: Send + Sync {
    /// Takes the passed socket of type `ty` at `local`, if there is one;
    /// with it, whether its file (a Unix socket's) is ours to remove.
    fn claim(&self, ty: Type, local: &Local) -> Option<(Socket, bool)>;
    /// Records a serving socket; `removes_file`: a Unix socket whose file
    /// this process made (so a successor may remove it too).
    fn record(&self, socket: &Socket, removes_file: bool);
    /// True once the sockets belong to a successor: socket files and
    /// multicast memberships are then left alone.
    fn handed_over(&self) -> bool;
}

/// What every constructor of a serving socket is given: where passed
/// sockets come from and new ones are recorded ([`Passing`]), and whether
/// TCP and UDP sockets share their ports with SO_REUSEPORT (`serve
/// --reactors N`). One per daemon, cloned into each reactor's services;
/// `Binder::default()` (tests, benches) adopts and records nothing.
#[derive(Clone, Default)]
pub struct Binder {
    passing: Option<Arc<dyn Passing>>,
    share_ports: bool,
    /// The addresses this process holds with SO_REUSEPORT (bound or
    /// adopted), by socket type: the other reactors bind beside these.
    shared: Arc<Mutex<Vec<(Type, SocketAddr)>>>,
}

impl fmt::Debug for Binder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binder")
            .field("passing", &self.passing.is_some())
            .field("share_ports", &self.share_ports)
            .finish_non_exhaustive()
    }
}

impl Binder {
    /// A binder that adopts and records through `passing`.
    pub fn new(passing: Arc<dyn Passing>) -> Binder {
        Binder {
            passing: Some(passing),
            ..Binder::default()
        }
    }

    /// Makes every TCP listener and UDP socket bound through this binder
    /// take SO_REUSEPORT, so that each reactor of `serve --reactors N`
    /// binds its own socket to the same address and the kernel spreads
    /// connections and datagrams over them. Off by default: with one
    /// reactor a second server on the same port must fail with "address in
    /// use", not share it.
    pub fn share_ports(mut self, on: bool) -> Binder {
        self.share_ports = on;
        self
    }

    fn claim(&self, ty: Type, local: &Local) -> Option<(Socket, bool)> {
        self.passing.as_ref()?.claim(ty, local)
    }

    fn record(&self, socket: &Socket, removes_file: bool) {
        if let Some(passing) = &self.passing {
            passing.record(socket, removes_file);
        }
    }

    /// True once the sockets belong to a successor.
    pub fn handed_over(&self) -> bool {
        self.passing.as_ref().is_some_and(|p| p.handed_over())
    }

    fn is_shared(&self, ty: Type, addr: SocketAddr) -> bool {
        self.shared
            .lock()
            .is_ok_and(|shared| shared.contains(&(ty, addr)))
    }

    /// Notes that this process holds `socket`'s address with SO_REUSEPORT.
    fn note_shared(&self, ty: Type, socket: &Socket) {
        if !self.share_ports {
            return;
        }
        let Some(addr) = socket.local_addr().ok().and_then(|a| a.as_socket()) else {
            return;
        };
        if let Ok(mut shared) = self.shared.lock() {
            if !shared.contains(&(ty, addr)) {
                shared.push((ty, addr));
            }
        }
    }

    /// With SO_REUSEPORT, a bind silently joins whatever group of the same
    /// user already holds the address, another process's included (it would
    /// then take part of that process's connections, or hand us its own). So
    /// the first socket at an explicit address is tried without it first: an
    /// address held elsewhere is "address in use", as with one reactor. Port 0
    /// needs no check (the kernel picks a port nobody listens on) and an
    /// address this process holds already is the other reactors joining.
    fn check_unshared(&self, ty: Type, addr: SocketAddr) -> io::Result<()> {
        if !self.share_ports || addr.port() == 0 || self.is_shared(ty, addr) {
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

    /// A socket systemd passed was bound without SO_REUSEPORT; with several
    /// reactors it gets it now, so that the others can bind beside it (the
    /// kernel makes the group when the next socket joins; that needs the same
    /// user on both).
    fn share_adopted(&self, socket: Socket) -> io::Result<Socket> {
        if self.share_ports && !socket.reuse_port()? {
            socket.set_reuse_port(true)?;
        }
        Ok(socket)
    }
}

/// Where a socket is: what matching an endpoint to a passed socket compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    /// An IP address and port.
    Inet(SocketAddr),
    /// A Unix socket file.
    Path(PathBuf),
    /// A Linux abstract name, without the leading NUL.
    Abstract(Vec<u8>),
    /// Anything else (an unnamed Unix socket).
    Unnamed,
}

impl Local {
    /// The address a socket is bound to.
    pub fn of(addr: &SockAddr) -> Local {
        if let Some(inet) = addr.as_socket() {
            Local::Inet(inet)
        } else if let Some(path) = addr.as_pathname() {
            Local::Path(path.to_path_buf())
        } else if let Some(name) = addr.as_abstract_namespace() {
            Local::Abstract(name.to_vec())
        } else {
            Local::Unnamed
        }
    }

    /// The address of a Unix-domain endpoint target.
    pub fn of_target(target: &Target) -> Option<Local> {
        match target {
            Target::Path(path) => Some(Local::Path(path.clone())),
            Target::Abstract(name) => Some(Local::Abstract(name.as_bytes().to_vec())),
            Target::Inet { .. } => None,
        }
    }

    /// True if `self` (what an endpoint asks for) names the socket at
    /// `passed`. Paths match by file identity too (`./x.sock` is
    /// `/run/echoplex/x.sock` when run from there). With `any_port`, an
    /// endpoint with port 0 matches any port of the same IP: the upgrade
    /// hands sockets over in the order they were bound, so a restarted
    /// `tcp://127.0.0.1:0` gets back the port it had.
    pub fn matches(&self, passed: &Local, any_port: bool) -> bool {
        match (self, passed) {
            (Local::Inet(want), Local::Inet(have)) => {
                want == have || (any_port && want.port() == 0 && want.ip() == have.ip())
            }
            (Local::Path(want), Local::Path(have)) => want == have || same_file(want, have),
            (Local::Abstract(want), Local::Abstract(have)) => want == have,
            _ => false,
        }
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Local::Inet(addr) => write!(f, "{addr}"),
            Local::Path(path) => write!(f, "{}", path.display()),
            Local::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Local::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

/// A non-blocking TCP listener on `addr`, with SO_REUSEADDR so a restart
/// does not wait out TIME_WAIT.
/// A socket passed to us for `addr` (socket activation, upgrade) is
/// adopted instead of bound.
pub fn tcp_listener(addr: SocketAddr, binder: &Binder) -> io::Result<mio::net::TcpListener> {
    let socket = match binder.claim(Type::STREAM, &Local::Inet(addr)) {
        Some((socket, _)) => binder.share_adopted(adopt_listener(socket)?)?,
        None => {
            let socket = Socket::new(domain_of(&addr), Type::STREAM, Some(Protocol::TCP))?;
            if addr.is_ipv6() {
                // `[::]` should mean IPv6 only, as the user wrote it.
                socket.set_only_v6(true)?;
            }
            socket.set_reuse_address(true)?;
            binder.check_unshared(Type::STREAM, addr)?;
            if binder.share_ports {
                socket.set_reuse_port(true)?;
            }
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            socket
        }
    };
    binder.note_shared(Type::STREAM, &socket);
    socket.set_nonblocking(true)?;
    binder.record(&socket, false);
    Ok(mio::net::TcpListener::from_std(socket.into()))
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
pub fn udp_socket(addr: SocketAddr, binder: &Binder) -> io::Result<mio::net::UdpSocket> {
    let socket = match binder.claim(Type::DGRAM, &Local::Inet(addr)) {
        Some((socket, _)) => binder.share_adopted(socket)?,
        None => {
            let socket = Socket::new(domain_of(&addr), Type::DGRAM, Some(Protocol::UDP))?;
            if addr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            binder.check_unshared(Type::DGRAM, addr)?;
            if binder.share_ports {
                socket.set_reuse_port(true)?;
            }
            socket.bind(&addr.into())?;
            socket
        }
    };
    binder.note_shared(Type::DGRAM, &socket);
    socket.set_nonblocking(true)?;
    binder.record(&socket, false);
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
    binder: &Binder,
) -> io::Result<mio::net::UdpSocket> {
    if !group.is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{group} is not a multicast group (224.0.0.0/4)"),
        ));
    }
    let addr = SocketAddr::from((group, port));
    let (socket, joined) = match binder.claim(Type::DGRAM, &Local::Inet(addr)) {
        Some((socket, _)) => (socket, true),
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
    binder.record(&socket, false);
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
pub struct SocketFile {
    path: PathBuf,
    identity: (u64, u64),
    /// Asked at drop: a file handed over to a successor stays.
    binder: Binder,
}

impl fmt::Debug for SocketFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SocketFile {
    fn created(path: &Path, binder: &Binder) -> io::Result<SocketFile> {
        let meta = fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
            binder: binder.clone(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.binder.handed_over() {
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
fn bind_unix(
    target: &Target,
    ty: Type,
    mode: u32,
    binder: &Binder,
) -> io::Result<(Socket, Option<SocketFile>)> {
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
    // Socket files are bound before the loops start; the other threads
    // then (the log writer, reactors 1..N) create no files, so the process
    // mask may change for the moment of the bind.
    let address = SockAddr::unix(path)?;
    let bound = crate::sys::socket::with_umask(!mode & 0o777, || socket.bind(&address));
    bound.map_err(|err| explain_bind_error(path, err))?;
    let guard = SocketFile::created(path, binder)?;
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

/// A non-blocking Unix stream listener; see `bind_unix` for the file rules.
/// A passed socket at `target` is adopted instead (and its file, which we
/// did not create, is never removed).
pub fn unix_listener(
    target: &Target,
    mode: u32,
    binder: &Binder,
) -> io::Result<(mio::net::UnixListener, Option<SocketFile>)> {
    let (socket, guard) = match claim_unix(target, Type::STREAM, binder) {
        Some((socket, guard)) => (adopt_listener(socket)?, guard),
        None => {
            let (socket, guard) = bind_unix(target, Type::STREAM, mode, binder)?;
            socket.listen(BACKLOG)?;
            (socket, guard)
        }
    };
    socket.set_nonblocking(true)?;
    binder.record(&socket, guard.is_some());
    Ok((mio::net::UnixListener::from_std(socket.into()), guard))
}

/// A non-blocking Unix datagram socket; see `bind_unix` for the file rules.
/// A passed socket at `target` is adopted instead, as for `unix_listener`.
pub fn unix_datagram(
    target: &Target,
    mode: u32,
    binder: &Binder,
) -> io::Result<(std::os::unix::net::UnixDatagram, Option<SocketFile>)> {
    let (socket, guard) = match claim_unix(target, Type::DGRAM, binder) {
        Some(claimed) => claimed,
        None => bind_unix(target, Type::DGRAM, mode, binder)?,
    };
    socket.set_nonblocking(true)?;
    binder.record(&socket, guard.is_some());
    Ok((socket.into(), guard))
}

/// A passed Unix socket at `target`. Its file is removed on exit only when
/// the process we replaced handed it over (echoplex made it); a file
/// systemd made is never removed.
fn claim_unix(target: &Target, ty: Type, binder: &Binder) -> Option<(Socket, Option<SocketFile>)> {
    let (socket, ours) = binder.claim(ty, &Local::of_target(target)?)?;
    let guard = match target {
        Target::Path(path) if ours => SocketFile::created(path, binder).ok(),
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
    let (socket, guard) = bind_unix(
        &Target::Path(local.to_path_buf()),
        Type::DGRAM,
        0o600,
        &Binder::default(),
    )?;
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
