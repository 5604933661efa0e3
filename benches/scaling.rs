//! How `serve --reactors N` scales: messages per second and server CPU per
//! message at N = 1, 2, 4, 8, ... up to the CPUs the server may use, the
//! server and the load generator on disjoint CPU sets (the first half of
//! this process's CPUs for the server, the rest for the load), then how
//! 100 TCP connections spread over the reactors.
//!
//! `cargo bench --bench scaling` runs unchanged on a 2-core box (N = 1 on
//! CPU 0, load on CPU 1) and on a 16-core one (N = 1, 2, 4, 8 on CPUs 0-7,
//! load on 8-15). Options after `--`:
//! - `--quick` (or ECHOPLEX_SCALING_QUICK=1): one short round;
//! - `--server-cpus 0,1` / `--load-cpus 0,1`: the sets (they may overlap,
//!   e.g. to try N = 2 on 2 cores; the table says so);
//! - `--reactors 1,2`: the Ns to measure (default: powers of two up to the
//!   server set, and the set's size);
//! - `--rate R`: a fixed offered load (open loop, R messages/s in all)
//!   instead of the closed loop, so CPU per message compares like for like;
//! - `--udp`: UDP (8 sockets per reactor) instead of TCP (16 connections
//!   per reactor);
//! - `--no-pin`: do not pass `--pin` (by default each reactor is pinned
//!   to a CPU of the server's set when there are enough);
//! - `--connections C`: C connections (or sockets) whatever N is, so that
//!   runs at a fixed `--rate` differ only in N.
//!
//! The figure that judges a reactor count is server CPU per message
//! (schedstat of every server thread over the measured window); msgs/s
//! also measures the generator.

#[path = "compare/ready.rs"]
mod ready;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use echoplex::bench::{run_load, LoadConfig, Observer, Stop};
use echoplex::endpoint::Endpoint;
use ready::{endpoint_of, wait_ready};

struct Plan {
    server_cpus: Vec<usize>,
    load_cpus: Vec<usize>,
    reactors: Vec<usize>,
    rate: Option<f64>,
    udp: bool,
    connections: Option<usize>,
    pin: bool,
    rounds: usize,
    warmup: Duration,
    duration: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let list = |text: String| -> Vec<usize> {
        text.split(',')
            .filter_map(|part| part.trim().parse().ok())
            .collect()
    };
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("ECHOPLEX_SCALING_QUICK").is_ok_and(|v| v != "0");
    let cpus = allowed_cpus();
    let half = (cpus.len() / 2).max(1);
    let server_cpus = value("--server-cpus").map_or_else(|| cpus[..half].to_vec(), list);
    let load_cpus = value("--load-cpus").map_or_else(
        || {
            if cpus.len() > 1 {
                cpus[half..].to_vec()
            } else {
                cpus.clone()
            }
        },
        list,
    );
    let reactors = value("--reactors").map_or_else(
        || {
            let mut ns: BTreeSet<usize> = (0..)
                .map(|k| 1usize << k)
                .take_while(|&n| n <= server_cpus.len())
                .collect();
            ns.insert(server_cpus.len().max(1));
            ns.into_iter().collect()
        },
        list,
    );
    let plan = Plan {
        server_cpus,
        load_cpus,
        reactors,
        rate: value("--rate").and_then(|r| r.parse().ok()),
        udp: args.iter().any(|a| a == "--udp"),
        connections: value("--connections").and_then(|c| c.parse().ok()),
        pin: !args.iter().any(|a| a == "--no-pin"),
        rounds: if quick { 1 } else { 3 },
        warmup: Duration::from_millis(if quick { 200 } else { 500 }),
        duration: Duration::from_secs(if quick { 1 } else { 3 }),
    };
    let overlap = plan.server_cpus.iter().any(|c| plan.load_cpus.contains(c));
    println!(
        "# echoplex scaling: server on CPUs {:?}{}, load on CPUs {:?}{}; {} ({}); {} round(s) of {:.1} s per N\n",
        plan.server_cpus,
        if plan.pin { " (--pin)" } else { "" },
        plan.load_cpus,
        if overlap { " (OVERLAPPING: not a scaling figure)" } else { "" },
        match (plan.udp, plan.connections) {
            (true, None) => "UDP, 8 sockets per reactor".to_string(),
            (false, None) => "TCP, 16 connections per reactor".to_string(),
            (udp, Some(c)) => format!("{}, {c} in all", if udp { "UDP sockets" } else { "TCP connections" }),
        },
        match plan.rate {
            Some(rate) => format!("open loop, {rate:.0} msgs/s offered"),
            None => "closed loop, depth 4".to_string(),
        },
        plan.rounds,
        plan.duration.as_secs_f64()
    );
    pin_self(&plan.load_cpus);
    let dir = std::env::temp_dir().join(format!("echoplex-scaling-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);

    println!("| reactors | msgs/s | server CPU µs/msg | server CPUs busy | errors |");
    println!("|---:|---:|---:|---:|---:|");
    let mut spreads = Vec::new();
    for &n in &plan.reactors {
        let server = Server::start(n, &plan.server_cpus, plan.pin, &dir);
        let mut runs: Vec<Run> = (0..plan.rounds).map(|_| server.drive(n, &plan)).collect();
        runs.sort_by(|a, b| a.cpu_us_per_msg.total_cmp(&b.cpu_us_per_msg));
        let run = runs[runs.len() / 2];
        println!(
            "| {n} | {:.0} | {:.2} | {:.2} | {} |",
            run.msgs_per_sec, run.cpu_us_per_msg, run.busy, run.errors
        );
        if n > 1 {
            spreads.push((n, server.spread(100)));
        }
    }
    if !spreads.is_empty() {
        println!("\n## 100 idle TCP connections over the reactors\n");
        println!("| reactors | connections per reactor | most on one |");
        println!("|---:|---|---:|");
        for (n, spread) in spreads {
            match spread {
                Ok(per) => println!(
                    "| {n} | {per:?} | {} |",
                    per.iter().max().copied().unwrap_or(0)
                ),
                Err(err) => println!("| {n} | failed: {err} | |"),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Clone, Copy, Debug)]
struct Run {
    msgs_per_sec: f64,
    cpu_us_per_msg: f64,
    /// Server CPU time over wall time: how many CPUs it kept busy.
    busy: f64,
    errors: u64,
}

struct Server {
    child: Child,
    endpoints: Vec<String>,
    admin: PathBuf,
}

impl Server {
    fn start(reactors: usize, cpus: &[usize], pin_each: bool, dir: &std::path::Path) -> Server {
        let admin = dir.join(format!("admin-{reactors}.sock"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_echoplex"));
        command
            .arg("serve")
            .args(["--reactors", &reactors.to_string()])
            .arg("tcp://127.0.0.1:0")
            .arg("udp://127.0.0.1:0")
            .args(["--udp-rate", "0", "--admin"])
            .arg(&admin)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if pin_each && reactors <= cpus.len() {
            command.arg("--pin");
        }
        let cpus = cpus.to_vec();
        // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs
        // between fork and exec.
        unsafe {
            command.pre_exec(move || {
                pin(&cpus);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start echoplex serve");
        let endpoints = wait_ready(&mut child, &format!("echoplex serve --reactors {reactors}"));
        Server {
            child,
            endpoints,
            admin,
        }
    }

    fn endpoint(&self, scheme: &str) -> Endpoint {
        endpoint_of(&self.endpoints, scheme, "echoplex serve")
    }

    fn drive(&self, reactors: usize, plan: &Plan) -> Run {
        let (scheme, per_reactor) = if plan.udp { ("udp", 8) } else { ("tcp", 16) };
        let modes = echoplex::bench::types::Modes {
            rate: plan.rate,
            ..Default::default()
        };
        let config = LoadConfig {
            endpoint: self.endpoint(scheme),
            connections: plan.connections.unwrap_or(per_reactor * reactors),
            size: 64,
            depth: if plan.rate.is_some() { 16 } else { 4 },
            threads: plan.load_cpus.len().max(1),
            stop: Stop::Duration(plan.duration),
            warmup: plan.warmup,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            modes,
        };
        let mut window = CpuWindow {
            pid: self.child.id() as i32,
            start: (0, Instant::now()),
            end: (0, Instant::now()),
        };
        let report = run_load(&config, &mut window).expect("load run");
        let messages = report.counters.messages.max(1) as f64;
        let cpu_ns = window.end.0.saturating_sub(window.start.0) as f64;
        let wall = window.end.1.duration_since(window.start.1).as_secs_f64();
        Run {
            msgs_per_sec: report.msgs_per_sec(),
            cpu_us_per_msg: cpu_ns / 1e3 / messages,
            busy: cpu_ns / 1e9 / wall.max(1e-9),
            errors: report.counters.errors + report.counters.connect_failures,
        }
    }

    /// Opens `n` idle TCP connections and reads how many each reactor holds.
    fn spread(&self, n: usize) -> Result<Vec<u64>, String> {
        let addr = self
            .endpoint("tcp")
            .socket_addr()
            .map_err(|e| e.to_string())?;
        let conns: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(addr).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_echoplex"))
                .args(["status", "--json", "--admin"])
                .arg(&self.admin)
                .output()
                .map_err(|e| e.to_string())?;
            let json: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let per: Vec<u64> = json["reactors"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|r| r["connections"].as_u64().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default();
            if per.iter().sum::<u64>() as usize >= n {
                drop(conns);
                return Ok(per);
            }
            if Instant::now() > deadline {
                return Err(format!("status never showed {n} connections: {per:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's CPU time (and the clock) as the measured window opens and closes.
struct CpuWindow {
    pid: i32,
    start: (u64, Instant),
    end: (u64, Instant),
}

impl Observer for CpuWindow {
    fn measuring(&mut self) {
        self.start = (cpu_ns(self.pid), Instant::now());
    }
    fn finished(&mut self) {
        self.end = (cpu_ns(self.pid), Instant::now());
    }
}

/// CPU time of every thread of `pid`, in nanoseconds (schedstat).
fn cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn allowed_cpus() -> Vec<usize> {
    echoplex::sys::cpu::allowed_cpus()
}

/// Restricts the calling thread (and what it spawns or execs) to `cpus`.
fn pin(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and
    // sched_setaffinity only touch the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pin_self(cpus: &[usize]) {
    pin(cpus);
}
