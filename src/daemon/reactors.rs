//! `serve --reactors N`: N reactors, each a thread with its own `mio::Poll`,
//! `Slab`, timers, buffers and counters, sharing nothing on the path of a
//! message (ARCHITECTURE.md, "Several reactors").
//!
//! The kinds whose `spread` is true in `endpoint.rs` (TCP, UDP,
//! `binary://`, `http://`, `https://`, `tls://`) get one `SO_REUSEPORT`
//! socket per reactor, so the kernel spreads connections and datagrams
//! over the reactors. Unix stream and datagram sockets, multicast,
//! `metrics://` and the admin socket are served by reactor 0 alone: a Unix
//! socket file can be bound once, a multicast group delivers every
//! datagram to every socket that joined it, and the control plane is not
//! worth spreading.
//!
//! What the reactors do share is off the message path: the count of open
//! connections (`--max-connections` is one limit for the daemon; an atomic
//! add per accept and per close), one pipe each that a signal (or
//! [`Pipes::request_shutdown_all`]) writes to, and the counters each
//! publishes every [`PUBLISH_EVERY`] on their `reactor::Board` for
//! `status`, `/metrics` and the page. Both are values `serve` makes.

use std::io::{self, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use log::warn;
use mio::{Registry, Token};

use crate::endpoint::{Endpoint, Kind};
use crate::error::describe;
use crate::reactor::sample;
use crate::reactor::sampler::Sampler;
use crate::reactor::{
    Board, Context, Flow, Handler, HandlerInfo, Limits, Reactor, Readiness, Reason, Stats, Turn,
};

/// How often a reactor publishes its counters for the others to read.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Most reactors accepted (`auto` is capped here too).
pub const MAX_REACTORS: usize = 1024;

/// `--reactors N|auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Exactly this many.
    Exactly(usize),
    /// One per CPU this process may run on, or fewer under a cgroup CPU
    /// quota (a container's `--cpus`, a pod's CPU limit).
    Auto,
}

impl Count {
    /// The number of reactors to run.
    pub fn resolve(self) -> usize {
        match self {
            Count::Exactly(n) => n,
            Count::Auto => {
                let cpus = allowed_cpus().len();
                let quota = cgroup_cpu_quota().unwrap_or(usize::MAX);
                cpus.min(quota).clamp(1, MAX_REACTORS)
            }
        }
    }
}

/// The CPUs a cgroup CPU quota grants this process, rounded up: the
/// smallest quota on the path from its cgroup to the root (a limit may sit
/// on any ancestor), cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`). `None` without a quota. A loop per CPU of the node
/// in a container limited to two would only contend for those two.
fn cgroup_cpu_quota() -> Option<usize> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut smallest: Option<usize> = None;
    let mut take = |cpus: Option<usize>| {
        if let Some(cpus) = cpus {
            smallest = Some(smallest.map_or(cpus, |s: usize| s.min(cpus)));
        }
    };
    for line in membership.lines() {
        // "ID:CONTROLLERS:PATH"; v2 is the line with no controllers.
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            take(walk_up("/sys/fs/cgroup", path, |dir| {
                quota_cpus(&std::fs::read_to_string(dir.join("cpu.max")).ok()?)
            }));
        } else if controllers.split(',').any(|c| c == "cpu") {
            take(walk_up("/sys/fs/cgroup/cpu", path, |dir| {
                let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
                let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
                quota_cpus(&format!("{} {}", quota.trim(), period.trim()))
            }));
        }
    }
    smallest
}

/// The smallest `quota(dir)` from `mount/path` up to `mount`. Inside a
/// container the mount's root is often the container's own cgroup, so the
/// full path does not exist there and the walk ends at the mount.
fn walk_up(
    mount: &str,
    path: &str,
    quota: impl Fn(&std::path::Path) -> Option<usize>,
) -> Option<usize> {
    let root = std::path::Path::new(mount);
    let mut dir = root.join(path.trim().trim_start_matches('/'));
    let mut smallest: Option<usize> = None;
    loop {
        if let Some(cpus) = quota(&dir) {
            smallest = Some(smallest.map_or(cpus, |s| s.min(cpus)));
        }
        if dir == root || !dir.pop() {
            return smallest;
        }
    }
}

/// `cpu.max` ("QUOTA PERIOD", or "max PERIOD" for none; v1's quota of -1
/// is none too) as whole CPUs, rounded up: 150000 over 100000 is 2.
fn quota_cpus(cpu_max: &str) -> Option<usize> {
    let mut words = cpu_max.split_whitespace();
    let quota: u64 = words.next()?.parse().ok()?;
    let period: u64 = words.next()?.parse().ok()?;
    if period == 0 {
        return None;
    }
    usize::try_from(quota.div_ceil(period))
        .ok()
        .map(|n| n.max(1))
}

/// Parses `--reactors`: a number from 1 to [`MAX_REACTORS`], or `auto`.
pub fn parse_count(text: &str) -> Result<Count, String> {
    if text == "auto" {
        return Ok(Count::Auto);
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_REACTORS).contains(&n) => Ok(Count::Exactly(n)),
        _ => Err(format!(
            "'{text}' is not a number of reactors from 1 to {MAX_REACTORS}, or auto"
        )),
    }
}

/// True for the kinds every reactor binds (one SO_REUSEPORT socket each);
/// the others are served by reactor 0 alone (see the module's comment).
pub fn spreads(kind: Kind) -> bool {
    kind.info().spread
}

use crate::sys::cpu::{allowed_cpus, pin_to};

/// How reactor 0 tells the others to drain or shut down: one pipe each
/// (the write ends here; each reactor polls its read end), and reactor 0's
/// own, which signals write to. A value `serve` makes and shares.
#[derive(Default)]
pub struct Pipes {
    /// The write end of reactor 0's signal pipe.
    leader: Mutex<Option<StdUnixStream>>,
    /// The write ends of the other reactors' pipes.
    followers: Mutex<Vec<StdUnixStream>>,
    /// A shutdown was passed on to the followers.
    shutdown_forwarded: AtomicBool,
    /// A drain was passed on to the followers.
    drain_forwarded: AtomicBool,
}

/// What reactor 0 writes into a follower's pipe: begin (or, the second
/// time, end) a shutdown; begin a drain.
const ORDER_SHUTDOWN: u8 = 1;
const ORDER_DRAIN: u8 = 2;

/// What [`Pipes::request_shutdown_all`] writes into reactor 0's pipe: any
/// byte there reads as a signal, as signal-hook's own do.
const AS_A_SIGNAL: u8 = 1;

impl Pipes {
    /// Remembers the write end of reactor 0's signal pipe, for
    /// [`Pipes::request_shutdown_all`].
    pub fn set_leader(&self, writer: StdUnixStream) {
        *lock(&self.leader) = Some(writer);
    }

    /// Remembers the write end of another reactor's pipe:
    /// [`Pipes::forward_shutdown`] writes to it.
    pub fn add_follower(&self, writer: StdUnixStream) {
        lock(&self.followers).push(writer);
    }

    /// Asks every reactor to begin its graceful shutdown, as SIGTERM does;
    /// callable from any thread. A second call ends the grace period, as a
    /// second signal does. (It writes to reactor 0's signal pipe, which
    /// passes it on.)
    pub fn request_shutdown_all(&self) {
        if let Some(mut pipe) = lock(&self.leader).as_ref() {
            // A full pipe already holds a request; non-blocking, never waits.
            let _ = pipe.write(&[AS_A_SIGNAL]);
        }
    }

    /// Passes one shutdown request (a signal reactor 0 received) on to every
    /// other reactor: the first begins their graceful shutdown, the second
    /// ends it.
    pub fn forward_shutdown(&self) {
        self.shutdown_forwarded.store(true, Ordering::Relaxed);
        self.order(ORDER_SHUTDOWN);
    }

    /// Passes a drain (an upgrade handed over) on to every other reactor.
    fn forward_drain(&self) {
        self.drain_forwarded.store(true, Ordering::Relaxed);
        self.order(ORDER_DRAIN);
    }

    fn order(&self, byte: u8) {
        for mut pipe in lock(&self.followers).iter() {
            let _ = pipe.write(&[byte]);
        }
    }
}

/// A lock a panicking holder cannot poison for the others.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets the scheduling policy of the calling thread, reactor 0's, before
/// it spawns the other reactors (they inherit it): SCHED_BATCH when the
/// `count` reactors outnumber the CPUs the process may use (see
/// `batch_when_crowded`). A process started by an upgrade inherited the
/// old process's policy, ours or not: a SCHED_BATCH it finds is undone
/// first, so that only this process's own count decides. Otherwise a
/// policy someone chose (chrt, systemd's CPUSchedulingPolicy) is kept.
pub fn schedule(count: usize, from_upgrade: bool) {
    let policy = crate::sys::cpu::sched_policy().ok();
    if from_upgrade && policy == Some(libc::SCHED_BATCH) {
        set_policy(libc::SCHED_OTHER);
    }
    batch_when_crowded(count, allowed_cpus().len());
}

/// Sets the calling thread's policy (a non-real-time one, priority 0).
fn set_policy(policy: libc::c_int) -> bool {
    let done = crate::sys::cpu::set_sched_policy(policy);
    if let Err(err) = &done {
        log::debug!("scheduling policy {policy}: {err}");
    }
    done.is_ok()
}

/// Loops that must share a CPU wait for each other instead of preempting
/// each other (issue 26).
///
/// Two reactors on one CPU paid 1.13–1.5× one reactor's CPU per message
/// at the same offered load: not in user space (callgrind: +2 % of
/// instructions), but in sleeps. A loop woken while its sibling runs
/// preempted it, handled the one or two events that woke it and slept
/// again, so each loop slept and woke for a share of the load (perf: 2–3×
/// the `epoll_wait`s and context switches per message of one loop). A
/// SCHED_BATCH thread does not preempt on wake-up: it runs when the
/// sibling's turn ends, with the events that came meanwhile, and the two
/// loops cost what one does. The price, only when the loops outnumber
/// the CPUs: a woken loop also waits for a busy neighbour's time slice
/// (a few ms at most) instead of preempting it.
fn batch_when_crowded(count: usize, cpus: usize) {
    // A policy someone chose (chrt: FIFO, RR, IDLE) is kept.
    if count <= cpus.max(1) || crate::sys::cpu::sched_policy().ok() != Some(libc::SCHED_OTHER) {
        return;
    }
    if set_policy(libc::SCHED_BATCH) {
        log::debug!("{count} reactors on {cpus} CPUs: SCHED_BATCH (they wait for each other)");
    }
}

/// Empties a follower's pipe (edge-triggered: to the end); whether it
/// held a drain order, and a shutdown order.
pub fn read_orders(reader: &mut impl io::Read) -> (bool, bool) {
    let mut bytes = [0u8; 64];
    let (mut drain, mut shutdown) = (false, false);
    loop {
        match reader.read(&mut bytes) {
            Ok(0) => break,
            Ok(n) => {
                drain |= bytes[..n].contains(&ORDER_DRAIN);
                shutdown |= bytes[..n].contains(&ORDER_SHUTDOWN);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (drain, shutdown)
}

/// Runs reactor 0 of several: its loop, and when it begins a drain (the
/// upgrade's handover) or a shutdown that no signal started (the end of a
/// drain), the others begin theirs too.
pub fn run_leader(reactor: &mut Reactor, pipes: &Pipes) -> io::Result<()> {
    loop {
        let turn = reactor.turn(None);
        if reactor.is_draining() && !pipes.drain_forwarded.load(Ordering::Relaxed) {
            pipes.forward_drain();
        }
        if reactor.is_shutting_down() && !pipes.shutdown_forwarded.load(Ordering::Relaxed) {
            pipes.forward_shutdown();
        }
        match turn {
            Ok(Turn::Running) => {}
            Ok(Turn::Finished) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

/// The handler that publishes reactor `index`'s counters every
/// [`PUBLISH_EVERY`] (for `status` and `/metrics` on reactor 0).
pub fn publisher(index: usize) -> Box<dyn Handler> {
    Box::new(Publisher::new(index))
}

/// The publisher's only timer.
const PUBLISH: Reason = Reason(0);

/// A handler with no socket: publishes its reactor's counters on a timer,
/// and once a second takes the sample the page and `status --json` show
/// (`reactor::sample`): published with the counters.
struct Publisher {
    index: usize,
    sampler: Sampler,
    /// `events` at the last tick: none since means the loop is idle.
    events: u64,
}

impl Publisher {
    fn new(index: usize) -> Publisher {
        Publisher {
            index,
            sampler: Sampler::default(),
            events: 0,
        }
    }

    /// Samples when due, publishes, and sets the next tick: every
    /// [`PUBLISH_EVERY`] with several reactors, else once per sample, and
    /// not at all while a reactor of its own is idle (it sleeps until the
    /// loop has events: an idle daemon does not wake up for its page).
    fn tick(&mut self, cx: &mut Context) {
        // Read here, not counted each turn: off the path of a message.
        cx.stats.timers_pending = cx.timers_pending();
        let watched = cx.is_watched();
        cx.record_turns(watched);
        if self.sampler.due(cx.now) {
            self.sampler.sample(cx);
        }
        let idle = cx.stats.events == self.events;
        self.events = cx.stats.events;
        if cx.reactor_count() > 1 {
            cx.publish();
            cx.set_timer(cx.now + PUBLISH_EVERY, PUBLISH);
        } else if idle && !watched {
            // Nothing happened for a second: sleep until something does
            // (the sampler then fills the minute's gap with zeros).
            cx.sleep_until_work(PUBLISH);
        } else {
            cx.set_timer(cx.now + sample::EVERY, PUBLISH);
        }
    }
}

impl Handler for Publisher {
    fn register(&mut self, _registry: &Registry, _token: Token) -> io::Result<()> {
        Ok(())
    }

    fn started(&mut self, cx: &mut Context) -> Flow {
        self.tick(cx);
        Flow::Continue
    }

    fn ready(&mut self, _readiness: Readiness, _cx: &mut Context) -> Flow {
        Flow::Continue
    }

    fn timeout(&mut self, _reason: Reason, cx: &mut Context) -> Flow {
        self.tick(cx);
        Flow::Continue
    }

    fn shutdown(&mut self, cx: &mut Context) -> Flow {
        cx.publish();
        Flow::Continue
    }

    fn keeps_alive(&self) -> bool {
        false
    }

    fn describe(&self, _now: Instant) -> HandlerInfo {
        HandlerInfo::internal("stats", format!("reactor {}", self.index))
    }
}

/// Binds one endpoint for a reactor: the handler that serves it, and its
/// `listening` line; or the error, said in full. `serve` makes it from
/// the services, which this module never names.
pub type Bind = dyn Fn(&Endpoint) -> Result<(Box<dyn Handler>, Listening), String> + Send + Sync;

/// Everything a reactor thread needs to start.
pub struct Start {
    /// The endpoints this reactor binds.
    pub endpoints: Vec<Endpoint>,
    /// How it binds them.
    pub bind: Arc<Bind>,
    /// The counters and rows every reactor shares.
    pub board: Board,
    /// How reactor 0 reaches this one, and this one the whole daemon.
    pub pipes: Arc<Pipes>,
    /// The limits of every reactor.
    pub limits: Limits,
    /// The CPU to pin this reactor to (`--pin`).
    pub cpu: Option<usize>,
    /// The daemon-wide count of open connections.
    pub connections: Arc<AtomicUsize>,
    /// This reactor's signal pipe, made before anything was bound.
    pub signals: Box<dyn Handler + Send>,
}

/// A `listening` line's endpoint and the detail for the start-up log.
pub type Listening = (Endpoint, String);

/// A running reactor thread.
pub struct Running {
    /// The thread; it returns the reactor's final counters.
    pub thread: thread::JoinHandle<Result<Stats, String>>,
}

/// The other reactors' threads, stopped and joined if serve returns early.
pub struct StopOnDrop(pub Vec<Running>, pub Arc<Pipes>);

impl StopOnDrop {
    /// Waits for every reactor to finish; their final counters.
    pub fn join(&mut self) -> Result<Vec<Stats>, String> {
        let mut finals = Vec::new();
        let mut failed = None;
        for one in self.0.drain(..) {
            match one.thread.join() {
                Ok(Ok(stats)) => finals.push(stats),
                Ok(Err(message)) => failed = Some(message),
                Err(_) => failed = Some("a reactor thread panicked".to_string()),
            }
        }
        failed.map_or(Ok(finals), Err)
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            stop_others(std::mem::take(&mut self.0), &self.1);
        }
    }
}

/// Ends the other reactors at once (start-up failed) and waits for them.
pub fn stop_others(others: Vec<Running>, pipes: &Pipes) {
    pipes.forward_shutdown();
    pipes.forward_shutdown();
    for one in others {
        let _ = one.thread.join();
    }
}

/// Starts reactor `index` on its own thread: binds its endpoints there (a
/// handler never crosses threads), then reports what it bound, or the
/// first error, before it runs.
pub fn spawn(index: usize, start: Start) -> io::Result<(Running, Result<Vec<Listening>, String>)> {
    let (report, reported) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("reactor-{index}"))
        .spawn(move || run_one(index, start, report))?;
    let bound = reported
        .recv()
        .unwrap_or_else(|_| Err(format!("reactor {index} ended before it was ready")));
    Ok((Running { thread }, bound))
}

fn run_one(
    index: usize,
    start: Start,
    report: mpsc::Sender<Result<Vec<Listening>, String>>,
) -> Result<Stats, String> {
    let pipes = start.pipes.clone();
    let reactor = bind_all(index, start);
    let mut reactor = match reactor {
        Ok((reactor, listening)) => {
            let _ = report.send(Ok(listening));
            reactor
        }
        Err(message) => {
            let _ = report.send(Err(message.clone()));
            return Err(message);
        }
    };
    let result = reactor.run();
    reactor.publish();
    let stats = reactor.stats().clone();
    match result {
        Ok(()) => Ok(stats),
        Err(err) => {
            // One reactor down means the daemon is not serving what it
            // promised: stop the others too.
            warn!("reactor {index}: event loop failed: {}", describe(&err));
            pipes.request_shutdown_all();
            Err(format!(
                "reactor {index}: event loop failed: {}",
                describe(&err)
            ))
        }
    }
}

fn bind_all(index: usize, start: Start) -> Result<(Reactor, Vec<Listening>), String> {
    if let Some(cpu) = start.cpu {
        pin_to(cpu)
            .map_err(|err| format!("reactor {index}: pin to CPU {cpu}: {}", describe(&err)))?;
    }
    let mut reactor =
        Reactor::new(start.limits.clone()).map_err(|err| format!("poll: {}", describe(&err)))?;
    reactor.count_connections_in(start.connections.clone());
    reactor.join_board(start.board, index);
    let mut listening = Vec::new();
    for endpoint in &start.endpoints {
        let (handler, (bound, detail)) = (start.bind)(endpoint)?;
        reactor
            .add_endpoint(handler, bound.to_string())
            .map_err(|err| format!("cannot register {bound}: {}", describe(&err)))?;
        listening.push((bound, detail));
    }
    reactor
        .add(Box::new(Publisher::new(index)))
        .map_err(|err| format!("stats: {}", describe(&err)))?;
    let signals: Box<dyn Handler> = start.signals;
    reactor
        .add(signals)
        .map_err(|err| format!("signals: {}", describe(&err)))?;
    Ok((reactor, listening))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_quota_counts_whole_cpus_rounded_up() {
        assert_eq!(quota_cpus("200000 100000\n"), Some(2));
        assert_eq!(quota_cpus("150000 100000"), Some(2));
        assert_eq!(quota_cpus("50000 100000"), Some(1));
        assert_eq!(quota_cpus("max 100000\n"), None);
        assert_eq!(quota_cpus("-1 100000"), None);
        assert_eq!(quota_cpus("100000 0"), None);
        assert_eq!(quota_cpus(""), None);
    }
}
