//! Socket activation: adopt the sockets another process opened for us,
//! passed as descriptors 3, 4, ... with systemd's convention (`LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`). systemd's `.socket` units and
//! `systemd-socket-activate` pass them this way, and so does our own
//! hitless upgrade (`daemon::upgrade`): one path, used twice.
//!
//! The passed sockets wait in a pool ([`Activation`]). `sock`'s
//! constructors ask it first ([`Activation::claim`]): a passed socket with the very address an endpoint names is
//! adopted instead of bound, so the service modules never know the
//! difference. Whatever no endpoint claimed is served by the kind its name
//! says (`tcp`, `udp`, `unix`, `unix-dgram`, `binary`, `metrics`,
//! `multicast`), else by the kind the socket itself shows (SO_DOMAIN,
//! SO_TYPE). A passed socket file is never removed: `sock` gives an
//! adopted socket no `SocketFile` guard.

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use socket2::{Domain, Socket, Type};

use crate::endpoint::{Endpoint, Kind, Target};

/// The first passed descriptor (after stdin, stdout, stderr).
pub const FIRST_FD: RawFd = 3;

/// The name a passed admin socket carries (`serve --admin PATH`): never
/// served as an echo endpoint, only claimed back by `--admin`.
pub const ADMIN_NAME: &str = "admin";

use crate::sock::Local;

/// What the `LISTEN_*` variables say, before the descriptors are examined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// How many descriptors, from [`FIRST_FD`] on.
    pub count: usize,
    /// One name per descriptor; None where there is none (or `unknown`,
    /// systemd's placeholder).
    pub names: Vec<Option<String>>,
}

/// Reads the `LISTEN_*` values as `sd_listen_fds` does: nothing to adopt
/// unless `LISTEN_PID` is this process (the variables may have been
/// inherited from a parent that was activated itself). A malformed value
/// is an error; the caller refuses to start rather than guess.
pub fn parse(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    my_pid: u32,
) -> Result<Option<Listen>, String> {
    let Some(fds) = listen_fds else {
        return Ok(None);
    };
    let Some(pid) = listen_pid else {
        log::warn!("LISTEN_FDS is set but LISTEN_PID is not: ignoring the passed sockets");
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID='{pid}' is not a process id"))?;
    if pid != my_pid {
        log::info!("LISTEN_PID={pid} names another process (we are {my_pid}): not adopting");
        return Ok(None);
    }
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS='{fds}' is not a number of descriptors"))?;
    // Far more than any unit passes; a typo must not make us claim every fd.
    if count > 4096 {
        return Err(format!("LISTEN_FDS={count} is implausibly many"));
    }
    let mut names: Vec<Option<String>> = match listen_fdnames {
        Some(text) if !text.is_empty() => text
            .split(':')
            .map(|name| (!name.is_empty() && name != "unknown").then(|| name.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    if names.len() != count {
        if !names.is_empty() {
            log::warn!(
                "LISTEN_FDNAMES has {} names for {count} sockets: ignoring the names",
                names.len()
            );
        }
        names = vec![None; count];
    }
    Ok((count > 0).then_some(Listen { count, names }))
}

/// One passed socket.
#[derive(Debug)]
pub struct Passed {
    /// The socket (close-on-exec, as `sd_listen_fds` leaves it).
    pub socket: Socket,
    /// Its name from `LISTEN_FDNAMES`.
    pub name: Option<String>,
    /// Stream or datagram.
    pub ty: Type,
    /// Where it is bound.
    pub local: Local,
    /// Its file must never be removed by us: systemd (or whoever started
    /// the process we replaced) made it. See [`KEEP_FILES`].
    pub keep_file: bool,
    domain: Domain,
}

/// The variable an upgrade sets to the indices (from 0, comma-separated)
/// of the passed sockets whose files echoplex did not make: the process
/// we replaced had them passed itself, so they stay when we exit.
pub const KEEP_FILES: &str = "ECHOPLEX_KEEP_FILES";

impl Passed {
    /// Examines descriptor `fd`, one of `count` that `LISTEN_FDS` says
    /// were passed; the caller promises it is ours to own if it is a
    /// socket that crossed our `exec`.
    fn from_fd(fd: RawFd, count: usize, name: Option<String>) -> Result<Passed, String> {
        let what = |err: io::Error| format!("passed descriptor {fd}: {err}");
        let last = FIRST_FD + count as RawFd - 1;
        // Look before taking ownership: a descriptor that is not a socket
        // (or not open) must not be closed by us later.
        let Ok(info) = crate::sys::socket::inspect_fd(fd) else {
            return Err(format!(
                "LISTEN_FDS={count} names descriptors {FIRST_FD}..={last}, but descriptor {fd} is not open: fewer sockets were passed"
            ));
        };
        if !info.is_socket {
            return Err(format!(
                "LISTEN_FDS={count}: passed descriptor {fd} is not a socket"
            ));
        }
        // A descriptor that crossed exec has close-on-exec clear (systemd
        // and our upgrade pass them so); every descriptor this process
        // opens itself (std, mio, socket2) has it set. So a set flag means
        // LISTEN_FDS counts past what was passed, into our own sockets.
        if info.cloexec {
            return Err(format!(
                "LISTEN_FDS={count} names descriptors {FIRST_FD}..={last}, but descriptor {fd} was opened by this process, not passed to it: fewer sockets were passed"
            ));
        }
        // LISTEN_FDS/LISTEN_PID hand descriptors FIRST_FD.. to this process
        // (parse checked the pid); each is taken exactly once.
        let socket = crate::sys::socket::take_passed_socket(fd);
        // sd_listen_fds sets FD_CLOEXEC: nothing we start inherits them by accident.
        socket.set_cloexec(true).map_err(what)?;
        let domain = socket.domain().map_err(what)?;
        let ty = socket.r#type().map_err(what)?;
        let local = Local::of(&socket.local_addr().map_err(what)?);
        Ok(Passed {
            socket,
            name,
            ty,
            local,
            keep_file: false,
            domain,
        })
    }

    /// The kind it is served as: its name when that is a scheme, else what
    /// the socket is (stream inet -> tcp, datagram inet -> udp, or
    /// multicast when bound to a group; stream unix -> unix, datagram unix
    /// -> unix-dgram).
    pub fn kind(&self) -> Result<Kind, String> {
        if let Some(name) = &self.name {
            if let Some(kind) = Kind::ALL.iter().copied().find(|k| k.scheme() == name) {
                return if kind.is_stream() == (self.ty == Type::STREAM) {
                    Ok(kind)
                } else {
                    Err(format!(
                        "passed socket '{name}' at {} is a {} socket",
                        self.local,
                        if self.ty == Type::STREAM {
                            "stream"
                        } else {
                            "datagram"
                        }
                    ))
                };
            }
        }
        let inet = self.domain == Domain::IPV4 || self.domain == Domain::IPV6;
        match (inet, self.domain == Domain::UNIX, self.ty) {
            (true, _, Type::STREAM) => Ok(Kind::Tcp),
            (true, _, Type::DGRAM) => match &self.local {
                Local::Inet(addr) if addr.ip().is_multicast() => Ok(Kind::Multicast),
                _ => Ok(Kind::Udp),
            },
            (_, true, Type::STREAM) => Ok(Kind::Unix),
            (_, true, Type::DGRAM) => Ok(Kind::UnixDgram),
            _ => Err(format!(
                "passed socket at {} is neither a stream nor a datagram socket of inet or unix",
                self.local
            )),
        }
    }

    /// The endpoint that serves it, as its `listening` line will print it.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let kind = self.kind()?;
        let target = match &self.local {
            Local::Inet(addr) => Target::Inet {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            Local::Path(path) => Target::Path(path.clone()),
            Local::Abstract(name) => Target::Abstract(String::from_utf8_lossy(name).into_owned()),
            Local::Unnamed => {
                return Err("a passed Unix socket has no address to serve".to_string())
            }
        };
        if kind.is_path() != matches!(target, Target::Path(_) | Target::Abstract(_)) {
            return Err(format!(
                "passed socket named '{}' at {} cannot be served as {}",
                self.name.as_deref().unwrap_or("?"),
                self.local,
                kind.scheme()
            ));
        }
        Ok(Endpoint {
            kind,
            target,
            options: Default::default(),
            resource: Default::default(),
        })
    }

    /// True for the admin socket an upgrade hands over.
    pub fn is_admin(&self) -> bool {
        self.name.as_deref() == Some(ADMIN_NAME)
    }
}

/// The sockets passed to this process and not claimed yet.
#[derive(Default)]
struct Pool {
    passed: Vec<Passed>,
    /// Port 0 matches any port: only for sockets from our own upgrade,
    /// whose order is the order our endpoints are bound in.
    any_port: bool,
}

/// The sockets passed to this process (one per daemon: `serve` makes it
/// and `sock` claims from it through `daemon::PassedSockets`).
#[derive(Default)]
pub struct Activation {
    pool: Mutex<Pool>,
}

impl Activation {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A panic elsewhere cannot leave the list half-changed: take it anyway.
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the passed sockets from the environment into the pool; returns
    /// how many. `from_upgrade` says they come from our own previous process.
    pub fn adopt_from_env(&self, from_upgrade: bool) -> Result<usize, String> {
        let var = |name: &str| std::env::var(name).ok();
        let Some(listen) = parse(
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
            std::process::id(),
        )?
        else {
            return Ok(0);
        };
        let keep: Vec<usize> = var(KEEP_FILES)
            .unwrap_or_default()
            .split(',')
            .filter_map(|index| index.trim().parse().ok())
            .collect();
        let mut passed = Vec::with_capacity(listen.count);
        for (index, name) in listen.names.into_iter().enumerate() {
            let fd = FIRST_FD + index as RawFd;
            let mut one = Passed::from_fd(fd, listen.count, name)?;
            // Only our own upgrade says which files we made; anyone else's
            // sockets (systemd's) keep their files.
            one.keep_file = !from_upgrade || keep.contains(&index);
            passed.push(one);
        }
        for one in &passed {
            log::info!(
                "adopting passed socket {} ({}{})",
                one.local,
                match one.ty {
                    Type::STREAM => "stream",
                    Type::DGRAM => "datagram",
                    _ => "other",
                },
                one.name
                    .as_ref()
                    .map(|name| format!(", named '{name}'"))
                    .unwrap_or_default()
            );
        }
        let count = passed.len();
        let mut pool = self.pool();
        pool.passed = passed;
        pool.any_port = from_upgrade;
        Ok(count)
    }

    /// True when the passed sockets came from our own upgrade: their socket
    /// files were made by echoplex, and the last process to serve them removes
    /// them on exit (systemd's are never removed).
    pub fn from_upgrade(&self) -> bool {
        self.pool().any_port
    }

    /// The passed socket of type `ty` at `local`, if one was passed (`sock`
    /// adopts it instead of binding a new one), and whether its file (a Unix
    /// socket's) is ours to remove on exit: echoplex made it, and an upgrade
    /// handed it over.
    pub fn claim(&self, ty: Type, local: &Local) -> Option<(Socket, bool)> {
        let mut pool = self.pool();
        let any_port = pool.any_port;
        let index = pool
            .passed
            .iter()
            .position(|one| one.ty == ty && local.matches(&one.local, any_port))?;
        let one = pool.passed.remove(index);
        log::debug!("{local}: using the passed socket at {}", one.local);
        Some((one.socket, !one.keep_file))
    }

    /// The sockets no endpoint claimed, as endpoints to serve (which then claim
    /// them through `sock`). Passed admin sockets that `--admin` did not claim
    /// are closed: they are never served as echo endpoints. Sockets that
    /// cannot be served are an error.
    pub fn unclaimed_endpoints(&self) -> Result<Vec<Endpoint>, String> {
        let mut pool = self.pool();
        let mut endpoints = Vec::new();
        let mut keep = Vec::new();
        for one in std::mem::take(&mut pool.passed) {
            if one.is_admin() {
                log::warn!(
                    "a passed admin socket at {} was not claimed by --admin: closing it",
                    one.local
                );
                continue;
            }
            endpoints.push(one.endpoint()?);
            keep.push(one);
        }
        pool.passed = keep;
        Ok(endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockAddr;
    use std::fs;
    use std::net::SocketAddr;

    #[test]
    fn nothing_to_adopt_without_listen_fds_or_for_another_pid() {
        assert_eq!(parse(None, None, None, 7), Ok(None));
        assert_eq!(parse(Some("7"), None, None, 7), Ok(None));
        assert_eq!(parse(None, Some("2"), None, 7), Ok(None));
        assert_eq!(parse(Some("8"), Some("2"), None, 7), Ok(None));
        assert_eq!(parse(Some("7"), Some("0"), None, 7), Ok(None));
    }

    #[test]
    fn counts_and_names_are_read() {
        let listen = parse(Some("7"), Some("3"), Some("tcp:unknown:metrics"), 7)
            .expect("valid")
            .expect("some");
        assert_eq!(listen.count, 3);
        assert_eq!(
            listen.names,
            vec![Some("tcp".to_string()), None, Some("metrics".to_string())]
        );
        // A name list of the wrong length is ignored, not misapplied.
        let listen = parse(Some("7"), Some("2"), Some("tcp"), 7)
            .expect("valid")
            .expect("some");
        assert_eq!(listen.names, vec![None, None]);
    }

    #[test]
    fn malformed_values_are_errors() {
        assert!(parse(Some("x"), Some("1"), None, 7)
            .unwrap_err()
            .contains("LISTEN_PID"));
        assert!(parse(Some("7"), Some("one"), None, 7)
            .unwrap_err()
            .contains("LISTEN_FDS"));
        assert!(parse(Some("7"), Some("99999"), None, 7).is_err());
    }

    fn passed(socket: Socket, name: Option<&str>) -> Passed {
        Passed {
            keep_file: true,
            domain: socket.domain().expect("domain"),
            ty: socket.r#type().expect("type"),
            local: Local::of(&socket.local_addr().expect("addr")),
            socket,
            name: name.map(str::to_string),
        }
    }

    fn tcp() -> Socket {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        socket.listen(8).expect("listen");
        socket
    }

    fn udp(ip: [u8; 4]) -> Socket {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
        socket.set_reuse_address(true).expect("reuse");
        socket
            .bind(&SocketAddr::from((ip, 0)).into())
            .expect("bind");
        socket
    }

    #[test]
    fn kinds_come_from_names_else_from_the_socket() {
        assert_eq!(passed(tcp(), None).kind(), Ok(Kind::Tcp));
        assert_eq!(passed(tcp(), Some("binary")).kind(), Ok(Kind::Binary));
        assert_eq!(passed(tcp(), Some("web")).kind(), Ok(Kind::Tcp));
        assert_eq!(passed(udp([127, 0, 0, 1]), None).kind(), Ok(Kind::Udp));
        assert_eq!(
            passed(udp([224, 10, 10, 77]), None).kind(),
            Ok(Kind::Multicast)
        );
        // A name that contradicts the socket is refused, not obeyed.
        assert!(passed(tcp(), Some("udp")).kind().is_err());
        let dir = std::env::temp_dir().join(format!("echoplex-act-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = fs::remove_file(&path);
        let unix = Socket::new(Domain::UNIX, Type::DGRAM, None).expect("socket");
        unix.bind(&SockAddr::unix(&path).expect("addr"))
            .expect("bind");
        let one = passed(unix, None);
        assert_eq!(one.kind(), Ok(Kind::UnixDgram));
        assert_eq!(
            one.endpoint().expect("endpoint").to_string(),
            format!("unix-dgram:{}", path.display())
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_socket_this_process_opened_is_never_taken_for_a_passed_one() {
        use std::os::fd::AsRawFd;
        // std, mio and socket2 open every descriptor close-on-exec; one
        // that crossed exec has the flag clear.
        let ours = tcp();
        let err = Passed::from_fd(ours.as_raw_fd(), 1, None).expect_err("ours");
        assert!(err.contains("LISTEN_FDS=1"), "{err}");
        assert!(err.contains("opened by this process"), "{err}");
        ours.set_cloexec(false).expect("clear");
        let passed = Passed::from_fd(ours.as_raw_fd(), 1, None).expect("as if passed");
        std::mem::forget(ours); // `passed` owns the descriptor now
        assert_eq!(passed.kind(), Ok(Kind::Tcp));
    }

    #[test]
    fn matching_by_address_and_port_zero_only_for_upgrades() {
        let have = Local::Inet(SocketAddr::from(([127, 0, 0, 1], 4000)));
        let exact = Local::Inet(SocketAddr::from(([127, 0, 0, 1], 4000)));
        let zero = Local::Inet(SocketAddr::from(([127, 0, 0, 1], 0)));
        let other = Local::Inet(SocketAddr::from(([127, 0, 0, 2], 0)));
        assert!(exact.matches(&have, false));
        assert!(!zero.matches(&have, false));
        assert!(zero.matches(&have, true));
        assert!(!other.matches(&have, true));
        assert!(Local::Abstract(b"x".to_vec()).matches(&Local::Abstract(b"x".to_vec()), false));
        assert!(!Local::Path("a".into()).matches(&Local::Abstract(b"a".to_vec()), true));
    }
}
