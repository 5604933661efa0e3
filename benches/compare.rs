//! Side by side, in one run: echoplex's reactor (the real `echoplex serve`)
//! against reference servers written here, each a child process pinned to
//! core 0 while the load (echoplex's own closed-loop generator, one thread)
//! runs pinned to core 1. Stream scenarios: tokio current_thread, blocking
//! thread-per-connection, raw epoll on libc. UDP scenarios (issue 26):
//! tokio, a plain blocking `recvfrom`/`sendto` loop and a blocking
//! `recvmmsg(MSG_WAITFORONE)`/`sendmmsg` loop, unsaturated (depth 1) and
//! saturated (depth 32), with msgs/s and p50 beside CPU per datagram.
//! Servers alternate within each round; each figure is the median of the
//! rounds.
//!
//! The figure that judges a server on a 2-core box is its CPU time per
//! echoed message (from /proc/PID/task/*/schedstat, nanoseconds, read
//! exactly when the measured window opens and closes): throughput mostly
//! measures the load generator, which shares the machine.
//!
//! `cargo bench --bench compare` (about 5 minutes; 7 with a baseline), `-- --quick` or
//! `ECHOPLEX_COMPARE_QUICK=1` (under a minute). `-- --only A,B` runs the
//! scenarios whose name contains A or B. `-- --fifo` runs the servers and
//! the load at SCHED_FIFO priority 1 (root), so that a machine shared with
//! builds does not preempt them: the wall-clock figures then measure the
//! servers, not the neighbours.

#[path = "compare/ready.rs"]
mod ready;
#[path = "compare/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use echoplex::bench::{run_load, LoadConfig, Observer, Stop};
use echoplex::endpoint::Endpoint;
use ready::{endpoint_of, wait_ready};

const SERVER_CORE: usize = 0;
const LOAD_CORE: usize = 1;

/// The servers of the stream scenarios, in the order of the table's
/// columns. With `ECHOPLEX_BASELINE=/path/to/echoplex` another column,
/// `baseline`, runs another build of echoplex in every scenario: the A/B
/// test for a reactor change.
const STREAM_SERVERS: [&str; 4] = ["echoplex", "tokio", "threads", "epoll"];

/// The servers of the UDP scenarios (issue 26): plain and mmsg serve UDP only.
const UDP_SERVERS: [&str; 4] = ["echoplex", "tokio", "plain", "mmsg"];

/// The server all the UDP rows are compared with: the batched C-style loop.
const UDP_REFERENCE: &str = "mmsg";

fn with_baseline(set: &[&'static str]) -> Vec<&'static str> {
    let mut names = set.to_vec();
    if std::env::var_os("ECHOPLEX_BASELINE").is_some() {
        names.push("baseline");
    }
    names
}

/// Every server any scenario runs, each once.
fn all_servers() -> Vec<&'static str> {
    let mut names = with_baseline(&STREAM_SERVERS);
    for name in UDP_SERVERS {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

struct Scenario {
    name: &'static str,
    scheme: &'static str,
    connections: usize,
    size: usize,
    depth: usize,
}

impl Scenario {
    fn servers(&self) -> Vec<&'static str> {
        if self.scheme == "udp" {
            with_baseline(&UDP_SERVERS)
        } else {
            with_baseline(&STREAM_SERVERS)
        }
    }
}

const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "TCP 1 conn × 64 B",
        scheme: "tcp",
        connections: 1,
        size: 64,
        depth: 1,
    },
    Scenario {
        name: "TCP 100 conns × 64 B",
        scheme: "tcp",
        connections: 100,
        size: 64,
        depth: 1,
    },
    Scenario {
        name: "TCP 1,000 conns × 64 B",
        scheme: "tcp",
        connections: 1000,
        size: 64,
        depth: 1,
    },
    Scenario {
        name: "TCP 10 conns × 16 KiB",
        scheme: "tcp",
        connections: 10,
        size: 16384,
        depth: 1,
    },
    Scenario {
        name: "UDP 8 sockets × 64 B, depth 1",
        scheme: "udp",
        connections: 8,
        size: 64,
        depth: 1,
    },
    Scenario {
        name: "UDP 8 sockets × 64 B, depth 32",
        scheme: "udp",
        connections: 8,
        size: 64,
        depth: 32,
    },
    Scenario {
        name: "Unix 100 conns × 64 B",
        scheme: "unix",
        connections: 100,
        size: 64,
        depth: 1,
    },
];

struct Plan {
    rounds: usize,
    warmup: Duration,
    duration: Duration,
    idle_connections: usize,
    only: Option<String>,
    fifo: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        // Child mode: one reference server.
        let (Some(kind), Some(path)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: compare --serve KIND UNIX_PATH");
            std::process::exit(2);
        };
        if let Err(err) = servers::serve(kind, Path::new(path)) {
            eprintln!("reference server {kind}: {err}");
            std::process::exit(1);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("ECHOPLEX_COMPARE_QUICK").is_ok_and(|v| v != "0");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let fifo_too = args.iter().any(|a| a == "--fifo");
    let plan = if quick {
        Plan {
            rounds: 1,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
            idle_connections: 2_000,
            only,
            fifo: fifo_too,
        }
    } else {
        Plan {
            rounds: 5,
            warmup: Duration::from_millis(300),
            duration: Duration::from_secs(2),
            idle_connections: 10_000,
            only,
            fifo: fifo_too,
        }
    };
    raise_nofile();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_core, load_core) = if cores >= 2 {
        (SERVER_CORE, LOAD_CORE)
    } else {
        (0, 0)
    };
    pin_self(load_core);
    if plan.fifo {
        if let Err(err) = fifo(0) {
            eprintln!("--fifo: {err} (needs root)");
            std::process::exit(2);
        }
    }
    println!(
        "# echoplex compare: {} round(s) of {:.1} s (+{:.1} s warm-up) per server and scenario; server on core {server_core}, load on core {load_core}{}\n",
        plan.rounds,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        if plan.fifo { "; both SCHED_FIFO 1" } else { "" }
    );
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("echoplex-compare-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);

    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|scenario| {
            plan.only
                .as_ref()
                .is_none_or(|o| o.split(',').any(|part| scenario.name.contains(part)))
        })
        .collect();
    let names: Vec<&'static str> = all_servers()
        .into_iter()
        .filter(|name| selected.iter().any(|s| s.servers().contains(name)))
        .collect();
    let mut running: Vec<Server> = names
        .iter()
        .map(|name| Server::start(name, &dir, server_core, plan.fifo))
        .collect();

    // results[scenario][server] = runs
    let mut results: Vec<BTreeMap<&str, Vec<Run>>> = Vec::new();
    for scenario in &SCENARIOS {
        let mut by_server: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        if !selected.iter().any(|s| std::ptr::eq(*s, scenario)) {
            results.push(by_server);
            continue;
        }
        let takes_part = scenario.servers();
        let servers: Vec<&Server> = running
            .iter()
            .filter(|server| takes_part.contains(&server.name))
            .collect();
        for round in 0..plan.rounds {
            // Alternate: each round starts with the next server.
            for k in 0..servers.len() {
                let server = servers[(round + k) % servers.len()];
                let run = server.drive(scenario, &plan);
                eprintln!(
                    "  {:<30} {:<9} {:>9.0} msgs/s {:>8.1} MB/s p50 {:>6} µs {:>6.2} µs/msg{}",
                    scenario.name,
                    server.name,
                    run.msgs_per_sec,
                    run.mb_per_sec,
                    run.p50_us,
                    run.cpu_us_per_msg,
                    if run.errors > 0 {
                        format!("  ({} errors)", run.errors)
                    } else {
                        String::new()
                    }
                );
                by_server.entry(server.name).or_default().push(run);
            }
        }
        results.push(by_server);
    }
    for server in &mut running {
        server.stop();
    }

    print_tables(&with_baseline(&STREAM_SERVERS), &results);
    print_udp_table(&results);

    if plan.only.is_none() {
        let names = with_baseline(&STREAM_SERVERS);
        println!(
            "\n## Resident memory of {} idle TCP connections\n",
            plan.idle_connections
        );
        println!("| server | RSS before | RSS with connections | per connection |");
        println!("|---|---:|---:|---:|");
        for &name in &names {
            let mut server = Server::start(name, &dir, server_core, plan.fifo);
            match server.idle_memory(plan.idle_connections) {
                Ok((before, after)) => println!(
                    "| {name} | {} KiB | {} KiB | {:.0} B |",
                    before,
                    after,
                    (after.saturating_sub(before) * 1024) as f64 / plan.idle_connections as f64
                ),
                Err(err) => println!("| {name} | – | – | failed: {err} |"),
            }
            server.stop();
        }

        println!("\n## Start-up to `ready` (median of 5)\n");
        println!("| server | ms |");
        println!("|---|---:|");
        for &name in &names {
            let mut times: Vec<f64> = (0..5)
                .map(|_| {
                    let mut server = Server::start(name, &dir, server_core, plan.fifo);
                    server.stop();
                    server.startup.as_secs_f64() * 1e3
                })
                .collect();
            println!("| {name} | {:.2} |", median(&mut times));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
}

#[derive(Clone, Copy, Debug)]
struct Run {
    msgs_per_sec: f64,
    mb_per_sec: f64,
    cpu_us_per_msg: f64,
    /// Median and 99th percentile round trip, microseconds.
    p50_us: u64,
    p99_us: u64,
    /// Share of a core the server used over the window.
    server_cpu: f64,
    errors: u64,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn medians(runs: &[Run]) -> Run {
    let pick = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Run {
        msgs_per_sec: pick(|r| r.msgs_per_sec),
        mb_per_sec: pick(|r| r.mb_per_sec),
        cpu_us_per_msg: pick(|r| r.cpu_us_per_msg),
        p50_us: pick(|r| r.p50_us as f64) as u64,
        p99_us: pick(|r| r.p99_us as f64) as u64,
        server_cpu: pick(|r| r.server_cpu),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

fn print_tables(names: &[&str], results: &[BTreeMap<&str, Vec<Run>>]) {
    let rows: Vec<(&Scenario, BTreeMap<&str, Run>)> = SCENARIOS
        .iter()
        .zip(results)
        .filter(|(s, by)| !by.is_empty() && s.scheme != "udp")
        .map(|(s, by)| (s, by.iter().map(|(k, v)| (*k, medians(v))).collect()))
        .collect();
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}×", a / b)
        } else {
            "–".into()
        }
    };
    let others: Vec<&str> = names.iter().copied().filter(|n| *n != "echoplex").collect();
    let header = |what: &str| {
        let mut line = format!("| {what} |");
        for name in names {
            line.push_str(&format!(" {name} |"));
        }
        for other in &others {
            line.push_str(&format!(" echoplex/{other} |"));
        }
        println!("{line}");
        println!("|---|{}", "---:|".repeat(names.len() + others.len()));
    };

    if rows.is_empty() {
        return;
    }
    println!("## Server CPU per echoed message (µs, lower is better)\n");
    header("scenario");
    for (scenario, by) in &rows {
        let cpu = |name: &str| by.get(name).map_or(f64::NAN, |r| r.cpu_us_per_msg);
        let mut line = format!("| {} |", scenario.name);
        for name in names {
            line.push_str(&format!(" {:.2} |", cpu(name)));
        }
        for other in &others {
            line.push_str(&format!(" {} |", ratio(cpu("echoplex"), cpu(other))));
        }
        println!("{line}");
    }
    println!("\n## Throughput (msgs/s and MB/s, one direction; bounded by the load generator on its one core)\n");
    header("scenario");
    for (scenario, by) in &rows {
        let rate = |name: &str| by.get(name).map_or(f64::NAN, |r| r.msgs_per_sec);
        let mut line = format!("| {} |", scenario.name);
        for name in names {
            line.push_str(&by.get(name).map_or(" – |".to_string(), |r| {
                let errors = if r.errors > 0 {
                    format!(" ({} errors)", r.errors)
                } else {
                    String::new()
                };
                format!(
                    " {:.0}k/s, {:.1} MB/s{errors} |",
                    r.msgs_per_sec / 1e3,
                    r.mb_per_sec
                )
            }));
        }
        for other in &others {
            line.push_str(&format!(" {} |", ratio(rate("echoplex"), rate(other))));
        }
        println!("{line}");
    }
}

/// The UDP scenarios, one row per server: msgs/s and p50 beside CPU per
/// datagram, and each figure's ratio to the mmsg loop's.
fn print_udp_table(results: &[BTreeMap<&str, Vec<Run>>]) {
    let rows: Vec<(&Scenario, BTreeMap<&str, Run>)> = SCENARIOS
        .iter()
        .zip(results)
        .filter(|(s, by)| !by.is_empty() && s.scheme == "udp")
        .map(|(s, by)| (s, by.iter().map(|(k, v)| (*k, medians(v))).collect()))
        .collect();
    if rows.is_empty() {
        return;
    }
    println!("\n## UDP (issue 26): rate and round trip beside server CPU per datagram\n");
    println!(
        "| scenario | server | msgs/s | p50 µs | p99 µs | server CPU | CPU µs / datagram | CPU / {UDP_REFERENCE}'s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (scenario, by) in &rows {
        let reference = by.get(UDP_REFERENCE).map_or(f64::NAN, |r| r.cpu_us_per_msg);
        for name in scenario.servers() {
            let Some(run) = by.get(name) else { continue };
            let errors = if run.errors > 0 {
                format!(" ({} errors)", run.errors)
            } else {
                String::new()
            };
            println!(
                "| {} | {name} | {:.0}{errors} | {} | {} | {:.0} % | {:.2} | {:.2}× |",
                scenario.name,
                run.msgs_per_sec,
                run.p50_us,
                run.p99_us,
                run.server_cpu * 100.0,
                run.cpu_us_per_msg,
                run.cpu_us_per_msg / reference
            );
        }
    }
}

/// A server under test: a child process announcing its endpoints.
struct Server {
    name: &'static str,
    child: Child,
    endpoints: Vec<String>,
    startup: Duration,
}

impl Server {
    fn start(name: &'static str, dir: &Path, core: usize, fifo_too: bool) -> Server {
        let unix_path: PathBuf = dir.join(format!("{name}.sock"));
        let mut command = if name == "echoplex" || name == "baseline" {
            let bin = match std::env::var_os("ECHOPLEX_BASELINE") {
                Some(path) if name == "baseline" => PathBuf::from(path),
                _ => PathBuf::from(env!("CARGO_BIN_EXE_echoplex")),
            };
            let mut c = Command::new(bin);
            c.arg("serve")
                .arg("tcp://127.0.0.1:0")
                .arg("udp://127.0.0.1:0")
                .arg(format!("unix:{}", unix_path.display()))
                // The anti-flood limit would cap one source at 1,000 replies/s.
                .args(["--udp-rate", "0"])
                .env("RUST_LOG", "warn");
            c
        } else {
            let mut c = Command::new(std::env::current_exe().expect("own path"));
            c.arg("--serve").arg(name).arg(&unix_path);
            c
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs
        // between fork and exec.
        unsafe {
            command.pre_exec(move || {
                pin_self(core);
                if fifo_too {
                    fifo(0)?;
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let endpoints = wait_ready(&mut child, name);
        let startup = started.elapsed();
        Server {
            name,
            child,
            endpoints,
            startup,
        }
    }

    fn endpoint(&self, scheme: &str) -> Endpoint {
        endpoint_of(&self.endpoints, scheme, self.name)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn drive(&self, scenario: &Scenario, plan: &Plan) -> Run {
        let config = LoadConfig {
            endpoint: self.endpoint(scenario.scheme),
            connections: scenario.connections,
            size: scenario.size,
            depth: scenario.depth,
            threads: 1,
            stop: Stop::Duration(plan.duration),
            warmup: plan.warmup,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            modes: Default::default(),
        };
        let mut cpu = CpuWindow {
            pid: self.pid(),
            start: 0,
            end: 0,
            fifo: plan.fifo,
        };
        let report = run_load(&config, &mut cpu).expect("load run");
        if plan.fifo {
            // Back among its next workers' equals before it spawns them.
            let _ = fifo_at(0, 1);
        }
        let messages = report.counters.messages.max(1) as f64;
        let busy_ns = cpu.end.saturating_sub(cpu.start) as f64;
        Run {
            msgs_per_sec: report.msgs_per_sec(),
            mb_per_sec: report.bytes_per_sec() / 1e6,
            cpu_us_per_msg: busy_ns / 1e3 / messages,
            p50_us: report.latency.value_at_quantile(0.5),
            p99_us: report.latency.value_at_quantile(0.99),
            server_cpu: busy_ns / 1e9 / report.duration.as_secs_f64().max(1e-9),
            errors: report.counters.errors + report.counters.connect_failures,
        }
    }

    /// RSS (KiB) before and after `n` idle TCP connections are accepted.
    fn idle_memory(&self, n: usize) -> Result<(u64, u64), String> {
        let addr = self
            .endpoint("tcp")
            .socket_addr()
            .map_err(|e| e.to_string())?;
        let fds_before = count_fds(self.pid());
        let before = rss_kib(self.pid());
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?);
        }
        // Wait until the server holds every connection, then for its RSS
        // to settle.
        let deadline = Instant::now() + Duration::from_secs(20);
        while count_fds(self.pid()) < fds_before + n {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} accepted",
                    count_fds(self.pid()) - fds_before
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        let mut last = rss_kib(self.pid());
        for _ in 0..20 {
            thread::sleep(Duration::from_millis(100));
            let now = rss_kib(self.pid());
            if now == last {
                break;
            }
            last = now;
        }
        drop(conns);
        Ok((before, last))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the server's CPU time as the measured window opens and closes.
struct CpuWindow {
    pid: i32,
    start: u64,
    end: u64,
    /// `--fifo`: the coordinator goes above its workers (see `fifo`).
    fifo: bool,
}

impl Observer for CpuWindow {
    fn connected(&mut self, _connected: u64) {
        if self.fifo {
            let _ = fifo_at(0, 2);
        }
    }
    fn measuring(&mut self) {
        self.start = cpu_ns(self.pid);
    }
    fn finished(&mut self) {
        self.end = cpu_ns(self.pid);
    }
}

/// CPU time of every thread of `pid`, in nanoseconds: schedstat's run time,
/// summed over /proc/PID/task; clock ticks of /proc/PID/stat if schedstat
/// is missing.
fn cpu_ns(pid: i32) -> u64 {
    let mut total = 0u64;
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                if let Some(ns) = text
                    .split_whitespace()
                    .next()
                    .and_then(|f| f.parse::<u64>().ok())
                {
                    total += ns;
                    any = true;
                }
            }
        }
    }
    if any && total > 0 {
        return total;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf is a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000_000 / hz
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn count_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Puts thread `tid` (0 = the caller) in SCHED_FIFO at priority 1, above
/// every ordinary task (the neighbours' builds); threads it spawns later
/// inherit it. The kernel's RT throttling still leaves 5 % to the rest.
/// FIFO has no time slices among equals: the load's coordinator, which
/// reads the server's CPU time as the window opens and closes, goes one
/// level up once its workers run (`CpuWindow::connected`), or a worker
/// that never blocks (a saturated server) would hold it off to the end.
fn fifo(tid: libc::pid_t) -> std::io::Result<()> {
    fifo_at(tid, 1)
}

/// SCHED_FIFO at `priority`.
fn fifo_at(tid: libc::pid_t, priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sched_setscheduler reads the param we own.
    if unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread; threads it spawns later inherit the mask.
fn pin_self(core: usize) {
    let _ = echoplex::sys::cpu::pin_to(core);
}

/// 10,000 idle connections need more descriptors than the usual soft limit.
fn raise_nofile() {
    let _ = echoplex::sys::rlimit::raise_nofile();
}
