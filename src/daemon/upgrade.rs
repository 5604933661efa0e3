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

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixStream as StdUnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::net::UnixStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::notify;
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

mod inventory;
mod spawn;

pub use inventory::Inventory;
pub use spawn::{announce_ready, executable, spawn_successor, Successor};

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
