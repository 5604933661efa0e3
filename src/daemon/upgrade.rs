//! Hitless upgrade on SIGUSR2, the way nginx and HAProxy do it.
//!
//! 1. `sock` records a close-on-exec duplicate of every listening and
//!    datagram socket it makes or adopts (the *inventory*); `serve` labels
//!    each with its kind (`tcp`, `binary`, `metrics`, `admin`, ...).
//! 2. On SIGUSR2 the daemon starts the executable on disk (the path behind
//!    `/proc/self/exe`, so a new build at that path takes over) with the
//!    same arguments, and hands it the inventory exactly as systemd hands
//!    sockets at activation: descriptors 3.., `LISTEN_FDS`,
//!    `LISTEN_FDNAMES`, and `LISTEN_PID` set to the child's own pid
//!    between `fork` and `exec` (only async-signal-safe calls there: the
//!    daemon may have other threads). The new process adopts them through
//!    `daemon::activation`, the path socket activation takes.
//! 3. The child binds nothing the parent had, prints its own `listening`
//!    and `ready` lines, and reports readiness on a notify socket of ours
//!    (`ECHOPLEX_UPGRADE_NOTIFY`, the `sd_notify` protocol).
//! 4. Then the parent tells systemd the new `MAINPID=`, marks the sockets
//!    handed over (socket files and multicast memberships now belong to the
//!    successor: nothing is removed or left), and *drains*: its listeners
//!    and datagram sockets close, and every established connection, quiet
//!    or busy, is served on until its peer closes it (or `--idle-timeout`
//!    ends it). After `--drain SECS`, or on SIGTERM, what is left ends as
//!    on SIGTERM (the lingering close, `--grace`). Meanwhile it logs how
//!    many connections remain every [`DRAIN_REPORT`] and when it ends, and
//!    says so in sd_notify `STATUS=` (the unit needs `NotifyAccess=all`).
//!
//! Both processes hold the listening sockets while the child starts, so
//! connection attempts keep landing in the same accept queue throughout:
//! none is refused. If the child exits or is not ready within
//! [`READY_TIMEOUT`], the parent logs why and keeps serving.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixStream as StdUnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::net::UnixStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::{Socket, Type};

use super::activation::{Local, ADMIN_NAME, FIRST_FD};
use super::notify;
use crate::endpoint::{Endpoint, Target};
use crate::reactor::{Context, Flow, Handler, HandlerInfo, Readiness, Reason};
use crate::sys::process::{self, Ended};
use crate::sys::socket::recv_with_sender;

/// Timer reasons: a poll of the child (no pidfd), the readiness deadline;
/// while draining, a look at the connections left and the `--drain` limit.
/// `timeout` checks the states whichever fired.
const POLL_TICK: Reason = Reason(0);
const READY_DEADLINE: Reason = Reason(1);
const DRAIN_TICK: Reason = Reason(2);
const DRAIN_DEADLINE: Reason = Reason(3);

/// How often a draining process logs (and tells systemd) what is left.
pub const DRAIN_REPORT: Duration = Duration::from_secs(10);

/// How often a draining process looks at the connections left (cheap: a
/// counter), so reactor 0 outlives the other reactors' connections.
const DRAIN_LOOK: Duration = Duration::from_millis(100);

/// The variable that tells a new process where to report readiness to the
/// process it replaces.
pub const UPGRADE_NOTIFY: &str = "ECHOPLEX_UPGRADE_NOTIFY";

/// How long the new process may take to become ready before it is killed
/// and the upgrade abandoned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the child is looked at when the kernel has no pidfd.
const POLL_CHILD: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// The inventory

/// A socket that will be handed over.
#[derive(Debug)]
struct Entry {
    fd: OwnedFd,
    ty: Type,
    local: Local,
    name: Option<String>,
    /// A socket file we did not make (systemd's): never to be removed.
    keep_file: bool,
}

/// Every serving socket this process made or adopted, kept (as a
/// close-on-exec duplicate) to be handed to a successor; and whether it
/// was. One per daemon: `serve` makes it and gives it to `sock` (through
/// `daemon::Passing`) and to the handlers that need it.
#[derive(Debug)]
pub struct Inventory {
    /// None once released (at shutdown, after a handover).
    entries: Mutex<Option<Vec<Entry>>>,
    /// Set once the sockets belong to a successor.
    handed_over: AtomicBool,
}

impl Default for Inventory {
    fn default() -> Self {
        Self::new()
    }
}

impl Inventory {
    /// An empty inventory, recording from now on.
    pub fn new() -> Inventory {
        Inventory {
            entries: Mutex::new(Some(Vec::new())),
            handed_over: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Entry>>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a serving socket (`sock` does, for every listening and
    /// datagram socket it makes or adopts). `removes_file`: a Unix socket
    /// whose file this process will remove on exit (it made it), so the
    /// successor may too; a file someone else made (systemd) is marked to
    /// be kept by every successor. A failure only means this socket will
    /// not be handed over, which the upgrade reports.
    pub fn record(&self, socket: &Socket, removes_file: bool) {
        let mut inventory = self.lock();
        let Some(entries) = inventory.as_mut() else {
            return;
        };
        let entry = (|| -> io::Result<Entry> {
            Ok(Entry {
                ty: socket.r#type()?,
                local: Local::of(&socket.local_addr()?),
                // F_DUPFD_CLOEXEC: never inherited by accident.
                fd: socket.try_clone()?.into(),
                name: None,
                keep_file: !removes_file,
            })
        })();
        match entry {
            Ok(entry) => entries.push(entry),
            Err(err) => warn!("cannot keep a socket for a later upgrade: {err}"),
        }
    }

    fn label_with(&self, local: &Local, name: &str) {
        let mut inventory = self.lock();
        for entry in inventory.iter_mut().flatten() {
            if entry.name.is_none() && entry.local == *local {
                entry.name = Some(name.to_string());
            }
        }
    }

    /// Names the recorded sockets of a bound endpoint (its real address) by
    /// its kind, which the new process reads from `LISTEN_FDNAMES`.
    pub fn label(&self, endpoint: &Endpoint) {
        if let Some(local) = local_of(endpoint) {
            self.label_with(&local, endpoint.kind.scheme());
        }
    }

    /// Names the admin socket's record.
    pub fn label_admin(&self, path: &std::path::Path) {
        self.label_with(&Local::Path(path.to_path_buf()), ADMIN_NAME);
    }

    /// Closes the recorded duplicates: at shutdown, so a listener that
    /// closes really stops listening, and after a handover.
    pub fn release(&self) {
        *self.lock() = None;
    }

    /// True once the sockets belong to a successor: socket files and
    /// multicast memberships are then left as they are.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Relaxed)
    }

    fn mark_handed_over(&self) {
        self.handed_over.store(true, Ordering::Relaxed);
        self.release();
    }
}

/// The address an endpoint was really bound at, if it can be told.
fn local_of(endpoint: &Endpoint) -> Option<Local> {
    match &endpoint.target {
        Target::Inet { host, port } => Some(Local::Inet(std::net::SocketAddr::new(
            host.parse().ok()?,
            *port,
        ))),
        target => Local::of_target(target),
    }
}

// ---------------------------------------------------------------------------
// Starting the successor

/// The executable on disk: `/proc/self/exe` resolved to its path. When
/// the file was replaced since we started (a new build, a package
/// upgrade), the link reads `PATH (deleted)`; the path is what we want.
pub fn executable() -> io::Result<PathBuf> {
    let link = std::fs::read_link("/proc/self/exe")?;
    let bytes = link.as_os_str().as_bytes();
    let path = match bytes.strip_suffix(b" (deleted)") {
        Some(path) => PathBuf::from(OsStr::from_bytes(path)),
        None => link,
    };
    std::fs::metadata(&path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    Ok(path)
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument or variable holds a NUL byte",
        )
    })
}

/// A started successor.
#[derive(Debug)]
pub struct Successor {
    /// Its process id.
    pub pid: libc::pid_t,
    /// A descriptor that turns readable when it exits (Linux 5.3+).
    pub pidfd: Option<OwnedFd>,
    /// The executable it runs.
    pub exe: PathBuf,
    /// Sockets handed over.
    pub sockets: usize,
}

/// Starts the executable on disk with our arguments and every recorded
/// socket, telling it to report readiness to `notify_addr` (`@name`).
pub fn spawn_successor(
    notify_addr: &str,
    inventory: &Inventory,
    extra_env: &[(String, String)],
) -> io::Result<Successor> {
    let exe = executable()?;
    let exe_c = cstring(exe.as_os_str().as_bytes())?;
    let args: Vec<CString> = std::env::args_os()
        .map(|arg| cstring(arg.as_bytes()))
        .collect::<io::Result<_>>()?;

    let inventory = inventory.lock();
    let entries = inventory.as_deref().unwrap_or_default();
    let count = entries.len();
    let first_free = FIRST_FD + count as RawFd;
    // Above every target number, so no dup2 in the child overwrites a
    // descriptor it has yet to move; close-on-exec in the parent's copy.
    let high: Vec<OwnedFd> = entries
        .iter()
        .map(|entry| process::dup_at_least(entry.fd.as_raw_fd(), first_free))
        .collect::<io::Result<_>>()?;
    let keep: Vec<String> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.keep_file && matches!(entry.local, Local::Path(_)))
        .map(|(index, _)| index.to_string())
        .collect();
    let names: Vec<&str> = entries
        .iter()
        .map(|entry| entry.name.as_deref().unwrap_or("unknown"))
        .collect();
    for entry in entries {
        let ty = if entry.ty == Type::STREAM {
            "stream"
        } else {
            "datagram"
        };
        log::debug!(
            "handing over {ty} {} as '{}'",
            entry.local,
            entry.name.as_deref().unwrap_or("unknown")
        );
    }

    let mut env: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        let key = key.as_bytes();
        if matches!(
            key,
            b"LISTEN_PID"
                | b"LISTEN_FDS"
                | b"LISTEN_FDNAMES"
                | b"ECHOPLEX_UPGRADE_NOTIFY"
                | b"ECHOPLEX_KEEP_FILES"
        ) || extra_env.iter().any(|(name, _)| name.as_bytes() == key)
        {
            continue;
        }
        let mut pair = key.to_vec();
        pair.push(b'=');
        pair.extend_from_slice(value.as_bytes());
        env.push(cstring(&pair)?);
    }
    for (name, value) in extra_env {
        env.push(cstring(format!("{name}={value}").as_bytes())?);
    }
    env.push(cstring(format!("LISTEN_FDS={count}").as_bytes())?);
    env.push(cstring(
        format!("LISTEN_FDNAMES={}", names.join(":")).as_bytes(),
    )?);
    env.push(cstring(
        format!("{UPGRADE_NOTIFY}={notify_addr}").as_bytes(),
    )?);
    env.push(cstring(
        format!("{}={}", super::activation::KEEP_FILES, keep.join(",")).as_bytes(),
    )?);
    // LISTEN_PID must be the child's pid, known only after fork: the child
    // writes it between fork and exec.
    let sources: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let pid = process::fork_exec_with_fds(&exe_c, &args, &env, &sources, FIRST_FD, "LISTEN_PID")?;
    drop(high);
    drop(inventory);
    let pidfd = process::pidfd_open(pid);
    Ok(Successor {
        pid,
        pidfd,
        exe,
        sockets: count,
    })
}

/// Tells whoever waits that this process serves: the process it replaces
/// (on the upgrade's notify socket), else the service manager.
pub fn announce_ready(status: &str) {
    let Ok(address) = std::env::var(UPGRADE_NOTIFY) else {
        notify::ready(status);
        return;
    };
    let message = format!("READY=1\nMAINPID={}", std::process::id());
    match notify::Notifier::new(&address).and_then(|to| to.send(&message)) {
        Ok(()) => info!("told the process we replace that we are ready"),
        Err(err) => warn!(
            "could not tell the process we replace that we are ready ({address}: {err}); it will give up on us"
        ),
    }
}

// ---------------------------------------------------------------------------
// The handler

/// What the upgrade is doing.
#[derive(Debug)]
enum State {
    Idle,
    Waiting {
        child: Successor,
        deadline: Instant,
        killed: bool,
    },
    /// Handed over to the successor; our connections are served on.
    Draining(Drain),
}

/// A drain under way.
#[derive(Debug)]
struct Drain {
    successor: libc::pid_t,
    since: Instant,
    next_report: Instant,
    /// Connections other reactors still serve (reactor 0 waits for them).
    others: usize,
    /// Why it ended early, if it did (`--drain` passed, a signal).
    cut: Option<&'static str>,
    /// Connections left when it was cut.
    left: usize,
}

/// SIGUSR2, turned into readiness like SIGINT/SIGTERM; the notify socket
/// the successor reports to; the successor's pidfd. One handler, one token.
pub struct Upgrader {
    inventory: Arc<Inventory>,
    signal: UnixStream,
    listener: Option<UnixDatagram>,
    name: String,
    state: State,
    /// Variables the successor gets beyond our environment (the
    /// self-signed TLS certificate it must go on presenting).
    extra_env: Vec<(String, String)>,
    /// `--drain`: the longest a drain may last (None: until the last peer closes).
    drain_limit: Option<Duration>,
    /// `--pid-file`, rewritten if an upgrade fails.
    pid_file: Option<PathBuf>,
}

impl Upgrader {
    /// Catches SIGUSR2 from now on (its default action would end the
    /// process: call this before anything else is set up). After a
    /// handover, connections are served on for at most `drain_limit`.
    pub fn new(inventory: Arc<Inventory>, drain_limit: Option<Duration>) -> io::Result<Upgrader> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register_raw(signal_hook::consts::SIGUSR2, writer.into())?;
        Ok(Upgrader {
            inventory,
            signal: UnixStream::from_std(reader),
            listener: None,
            // One daemon per process: the pid makes the name unique.
            name: format!("echoplex-upgrade-{}-0", std::process::id()),
            state: State::Idle,
            extra_env: Vec::new(),
            drain_limit,
            pid_file: None,
        })
    }

    /// Gives the successor `name=value` in its environment.
    pub fn pass_env(&mut self, name: &str, value: String) {
        self.extra_env.retain(|(have, _)| have != name);
        self.extra_env.push((name.to_string(), value));
    }

    /// The pid file to name us again if an upgrade fails.
    pub fn keep_pid_file(&mut self, path: &std::path::Path) {
        self.pid_file = Some(path.to_path_buf());
    }

    fn start(&mut self, cx: &mut Context) {
        if let Err(err) = self.try_start(cx) {
            warn!("upgrade failed: {err}; still serving");
            notify::status(&format!("upgrade failed: {err}; still serving"));
        }
    }

    fn try_start(&mut self, cx: &mut Context) -> io::Result<()> {
        if self.listener.is_none() {
            let addr = UnixAddr::from_abstract_name(self.name.as_bytes())?;
            let listener = UnixDatagram::bind_addr(&addr)?;
            listener.set_nonblocking(true)?;
            // The kernel then tells us who sent each message: only our
            // child's READY=1 counts, whoever else finds the name.
            socket2::SockRef::from(&listener).set_passcred(true)?;
            cx.registry().register(
                &mut SourceFd(&listener.as_raw_fd()),
                cx.token,
                Interest::READABLE,
            )?;
            self.listener = Some(listener);
        }
        let child = spawn_successor(&format!("@{}", self.name), &self.inventory, &self.extra_env)
            .map_err(|err| {
            io::Error::new(err.kind(), format!("cannot start a new process: {err}"))
        })?;
        info!(
            "upgrade: started {} as pid {} with {} sockets; waiting up to {:?} for it to be ready",
            child.exe.display(),
            child.pid,
            child.sockets,
            READY_TIMEOUT
        );
        notify::status(&format!("upgrading: new process {} starting", child.pid));
        match &child.pidfd {
            Some(pidfd) => cx.registry().register(
                &mut SourceFd(&pidfd.as_raw_fd()),
                cx.token,
                Interest::READABLE,
            )?,
            None => cx.set_timer(cx.now + POLL_CHILD, POLL_TICK),
        }
        let deadline = cx.now + READY_TIMEOUT;
        cx.set_timer(deadline, READY_DEADLINE);
        self.state = State::Waiting {
            child,
            deadline,
            killed: false,
        };
        Ok(())
    }

    /// Reads what the successor said; true once it said `READY=1`.
    fn heard_ready(&mut self, pid: libc::pid_t) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        let mut buf = [0u8; 512];
        let mut ready = false;
        loop {
            match recv_with_sender(listener, &mut buf) {
                Ok((n, sender)) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let said = |line: &str| text.lines().any(|l| l == line);
                    if sender == Some(pid) && said("READY=1") {
                        ready = true;
                    } else {
                        log::debug!("upgrade: ignored notification {text:?} from pid {sender:?}");
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ready,
            }
        }
    }

    /// The successor's exit status, once it has exited.
    fn exited(pid: libc::pid_t) -> Option<String> {
        Some(match process::reap(pid)? {
            Ended::Exited(127) => "could not be executed (status 127)".to_string(),
            Ended::Exited(code) => format!("exited with status {code}"),
            Ended::Killed(signal) => format!("was killed by signal {signal}"),
            Ended::Other => "ended".to_string(),
        })
    }

    fn forget_child(&mut self, cx: &mut Context) {
        if let State::Waiting { child, .. } = &self.state {
            if let Some(pidfd) = &child.pidfd {
                let _ = cx.registry().deregister(&mut SourceFd(&pidfd.as_raw_fd()));
            }
        }
    }

    fn check(&mut self, cx: &mut Context) {
        let State::Waiting { child, killed, .. } = &self.state else {
            return;
        };
        let (pid, killed) = (child.pid, *killed);
        if !killed && self.heard_ready(pid) {
            self.hand_over(pid, cx);
            return;
        }
        if let Some(how) = Self::exited(pid) {
            // The pid file names whoever holds the sockets: us, still.
            if let Some(path) = &self.pid_file {
                super::pidfile::reclaim(path);
            }
            if !killed {
                warn!("upgrade failed: new process {pid} {how} before it was ready; still serving (its log above says why)");
                notify::status(&format!("upgrade failed: new process {how}; still serving"));
            }
            self.forget_child(cx);
            self.state = State::Idle;
        }
    }

    fn hand_over(&mut self, pid: libc::pid_t, cx: &mut Context) {
        self.inventory.mark_handed_over();
        self.forget_child(cx);
        let left = cx.connections();
        let limit = match self.drain_limit {
            Some(limit) => format!("at most --drain {} s", limit.as_secs_f64()),
            None => "no time limit".to_string(),
        };
        info!(
            "upgrade: pid {pid} is ready and serves every socket; draining our {left} connections until their peers close them ({limit})"
        );
        notify::notify(&format!(
            "MAINPID={pid}\nSTATUS=upgraded: pid {pid} serves; pid {} draining {left} connections",
            std::process::id()
        ));
        self.state = State::Draining(Drain {
            successor: pid,
            since: cx.now,
            next_report: cx.now + DRAIN_REPORT,
            others: left.saturating_sub(cx.stats.connections),
            cut: None,
            left,
        });
        if self.drain_limit.is_some_and(|limit| limit.is_zero()) {
            self.cut("--drain 0", cx);
            cx.request_shutdown();
            return;
        }
        cx.request_drain();
        cx.set_timer(cx.now + DRAIN_LOOK, DRAIN_TICK);
        if let Some(limit) = self.drain_limit {
            cx.set_timer(cx.now + limit, DRAIN_DEADLINE);
        }
    }

    /// Records why the drain ends early (what is left then ends as on
    /// SIGTERM: the caller asks for that shutdown unless it is under way).
    fn cut(&mut self, why: &'static str, cx: &mut Context) {
        if let State::Draining(drain) = &mut self.state {
            if drain.cut.is_none() {
                drain.cut = Some(why);
                drain.left = cx.connections();
                info!(
                    "drain: {why} after {:.1} s; {} connections left end as on SIGTERM (grace {:?})",
                    cx.now.saturating_duration_since(drain.since).as_secs_f64(),
                    drain.left,
                    cx.limits.grace
                );
            }
        }
    }

    /// A look at the drain: the count for reactor 0's loop, a report every
    /// `DRAIN_REPORT`, the `--drain` limit.
    fn look(&mut self, reason: Reason, cx: &mut Context) {
        let State::Draining(drain) = &mut self.state else {
            return;
        };
        if drain.cut.is_some() {
            return;
        }
        let left = cx.connections();
        drain.others = left.saturating_sub(cx.stats.connections);
        if reason == DRAIN_DEADLINE {
            self.cut("--drain passed", cx);
            cx.request_shutdown();
            return;
        }
        if cx.now >= drain.next_report {
            drain.next_report = cx.now + DRAIN_REPORT;
            let since = cx.now.saturating_duration_since(drain.since).as_secs();
            info!("draining for {since} s: {left} connections remain");
            notify::status(&format!(
                "upgraded: pid {} serves; pid {} draining, {left} connections remain",
                drain.successor,
                std::process::id()
            ));
        }
        cx.set_timer(cx.now + DRAIN_LOOK, DRAIN_TICK);
    }
}

impl Drop for Upgrader {
    /// The drain's last word: the loop has ended (every connection closed
    /// by its peer or its idle limit, or what was left ended as on SIGTERM).
    fn drop(&mut self) {
        if let State::Draining(drain) = &self.state {
            let took = drain.since.elapsed().as_secs_f64();
            let how = match drain.cut {
                Some(why) => format!("cut by {why} with {} connections left", drain.left),
                None => "every connection closed".to_string(),
            };
            info!("drain over after {took:.1} s: {how}; exiting");
            notify::status(&format!(
                "drained: pid {} exits; pid {} serves",
                std::process::id(),
                drain.successor
            ));
        }
    }
}

impl Handler for Upgrader {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.signal, token, Interest::READABLE)
    }

    fn ready(&mut self, _readiness: Readiness, cx: &mut Context) -> Flow {
        if crate::sys::signal::drain_pipe(&mut self.signal) {
            match &self.state {
                _ if cx.is_shutting_down() => warn!("SIGUSR2 ignored: shutting down"),
                State::Waiting { child, .. } => {
                    warn!("SIGUSR2 ignored: upgrade to pid {} in progress", child.pid)
                }
                State::Draining(drain) => {
                    warn!(
                        "SIGUSR2 ignored: already handed over to pid {}",
                        drain.successor
                    )
                }
                State::Idle => {
                    info!("SIGUSR2: upgrading");
                    self.start(cx);
                }
            }
        }
        self.check(cx);
        Flow::Continue
    }

    fn timeout(&mut self, reason: Reason, cx: &mut Context) -> Flow {
        if matches!(self.state, State::Draining(_)) {
            self.look(reason, cx);
            return Flow::Continue;
        }
        self.check(cx);
        if let State::Waiting {
            child,
            deadline,
            killed,
        } = &mut self.state
        {
            if cx.now >= *deadline && !*killed {
                warn!(
                    "upgrade failed: new process {} not ready within {READY_TIMEOUT:?}; killed it; still serving",
                    child.pid
                );
                notify::status("upgrade failed: new process not ready in time; still serving");
                process::signal(child.pid, libc::SIGKILL);
                *killed = true;
                *deadline = cx.now + READY_TIMEOUT;
            }
            if child.pidfd.is_none() || *killed {
                cx.set_timer(cx.now + POLL_CHILD, POLL_TICK);
            }
        }
        Flow::Continue
    }

    fn drain(&mut self, _cx: &mut Context) -> Flow {
        Flow::Continue // it watches the drain
    }

    fn shutdown(&mut self, cx: &mut Context) -> Flow {
        if matches!(self.state, State::Draining(_)) {
            self.cut("a signal", cx);
            return Flow::Close;
        }
        if let State::Waiting { child, killed, .. } = &self.state {
            if !killed {
                warn!(
                    "shutting down during an upgrade: stopping new process {}",
                    child.pid
                );
                process::signal(child.pid, libc::SIGTERM);
            }
            self.forget_child(cx);
        }
        Flow::Close
    }

    /// While draining, reactor 0's loop waits for the other reactors'
    /// connections too (it reports them, and ends the drain at `--drain`).
    fn keeps_alive(&self) -> bool {
        matches!(&self.state, State::Draining(drain) if drain.others > 0 && drain.cut.is_none())
    }

    fn describe(&self, _now: Instant) -> HandlerInfo {
        HandlerInfo {
            kind: "upgrade",
            local: "SIGUSR2".into(),
            peer: match &self.state {
                State::Waiting { child, .. } => child.pid.to_string(),
                State::Draining(drain) => drain.successor.to_string(),
                State::Idle => "-".into(),
            },
            state: match self.state {
                State::Idle => "idle",
                State::Waiting { .. } => "starting-successor",
                State::Draining(_) => "draining",
            },
            ..HandlerInfo::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_a_real_file() {
        let exe = executable().expect("exe");
        assert!(exe.is_file(), "{}", exe.display());
        assert!(!exe.to_string_lossy().ends_with("(deleted)"));
    }

    #[test]
    fn labels_follow_real_addresses() {
        let inventory = Inventory::new();
        let socket = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        inventory.record(&socket, false);
        let port = socket
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet")
            .port();
        let endpoint: Endpoint = format!("binary://127.0.0.1:{port}")
            .parse()
            .expect("endpoint");
        inventory.label(&endpoint);
        let names: Vec<Option<String>> = inventory
            .lock()
            .iter()
            .flatten()
            .filter(|e| e.local == Local::Inet(([127, 0, 0, 1], port).into()))
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, vec![Some("binary".to_string())]);
        inventory.release();
        assert!(inventory.lock().is_none());
    }
}
