//! `echoplex serve`: where services and the daemon meet. Make the values
//! the reactors share, bind every endpoint, print the contract's lines,
//! run the reactors until SIGINT or SIGTERM.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::daemon::pidfile::PidFile;
use crate::daemon::signals::SignalPipe;
use crate::daemon::{self, reactors, reload, upgrade};
use crate::endpoint::Endpoint;
use crate::error::{describe, Exit, Failure, Outcome};
use crate::probe::duration::secs;
use crate::reactor::{Board, Limits, Reactor, CONTROL_RESERVE};
use crate::services::{self, Bound, ServeConfig};
use crate::sock;

/// The endpoints served when none is named.
pub const DEFAULT_ENDPOINTS: [&str; 5] = [
    "tcp://127.0.0.1:10000",
    "udp://127.0.0.1:10000",
    "unix:./echoplex.sock",
    "multicast://224.10.10.10:10000",
    "binary://127.0.0.1:10001",
];

/// Descriptors kept back from `--max-connections`' default for listeners,
/// the poller, logs, the EMFILE reserve and the control connections'
/// reserves (`reactor::CONTROL_RESERVE` for each control endpoint: the
/// admin socket and, usually, one `metrics://`).
const FD_HEADROOM: u64 = 64 + 2 * CONTROL_RESERVE as u64;

/// Options of `echoplex serve`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Exit status:
  0  stopped cleanly after SIGINT or SIGTERM (or handed over to a new process on SIGUSR2)
  1  could not start (an endpoint could not be bound, ...); the reason is \
the one line on stderr
  2  usage error (bad option, endpoint, endpoint option or --format)")]
pub struct Args {
    /// Endpoints to serve (default: tcp://127.0.0.1:10000 udp://127.0.0.1:10000
    /// unix:./echoplex.sock multicast://224.10.10.10:10000 binary://127.0.0.1:10001).
    #[arg(value_name = "ENDPOINT")]
    pub endpoints: Vec<Endpoint>,
    /// IPv4 interface for multicast membership (keep it on loopback unless you mean it).
    #[arg(long, value_name = "IPV4", default_value = "127.0.0.1")]
    pub iface: Ipv4Addr,
    /// Record layout of binary:// in Python struct syntax.
    #[arg(long, value_name = "FMT", default_value = "I 2s f")]
    pub format: String,
    /// Close a connection after this many seconds without traffic (0 = never).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = secs)]
    pub idle_timeout: Duration,
    /// Most connections open at once (default: the descriptor limit less
    /// headroom); the admin socket and each metrics:// have 16 more of their own.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Bytes a connection may owe its peer before the server stops reading
    /// from it (and answering its requests, on metrics:// and the admin socket).
    #[arg(long, value_name = "BYTES", default_value_t = 65536,
          value_parser = clap::value_parser!(u64).range(1..=64 * 1024 * 1024))]
    pub max_buffer: u64,
    /// Permissions of unix: and unix-dgram: socket files, in octal. An
    /// abstract name (unix:@name) has no file and no mode: anyone on the
    /// host can connect; add ?uid=N to accept one user only.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    pub unix_mode: u32,
    /// Datagram replies per second per source address (udp, multicast); 0 = unlimited.
    #[arg(long, value_name = "PER_SEC", default_value_t = 1000)]
    pub udp_rate: u32,
    /// Apply --udp-rate to loopback sources too (by default they are exempt:
    /// they cannot be spoofed from the network, and local load tests need them).
    #[arg(long)]
    pub rate_limit_loopback: bool,
    /// Seconds a shutdown may take: a busy connection is served until its peer's EOF, and
    /// one still owed bytes when the time is up is reset (RST).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = secs)]
    pub grace: Duration,
    /// After an upgrade (SIGUSR2) hands over, the old process serves its
    /// established connections until their peers close them, for at most
    /// SECS (default: no limit; 0 ends them at once, as on SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub drain: Option<Duration>,
    /// Serve a status socket at PATH (mode 600) for `echoplex status`
    /// (which looks at ./echoplex-admin.sock unless told otherwise).
    #[arg(long, value_name = "PATH")]
    pub admin: Option<PathBuf>,
    /// Write the pid of the process that serves to PATH (an upgrade's new
    /// process rewrites it; removed on exit while it is still ours).
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Log every turn of the loop and every event, each HTTP request and
    /// WebSocket message, and each TLS connection's reads, writes and
    /// handshake (same as RUST_LOG=echoplex::reactor=trace,
    /// echoplex::services::http=trace,echoplex::services::tls=trace).
    #[arg(long)]
    pub trace: bool,
    /// Event loops to run, one thread each (`auto`: one per CPU this process
    /// may use, fewer under a cgroup CPU quota such as a container's). TCP,
    /// UDP, binary://, http://, https:// and tls:// get one SO_REUSEPORT
    /// socket per loop; Unix, multicast, metrics and the admin socket are
    /// served by loop 0.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = reactors::parse_count)]
    pub reactors: reactors::Count,
    /// Pin each event loop to its own CPU (of those this process may use).
    #[arg(long)]
    pub pin: bool,
    /// Certificate chain (PEM, end entity first) for tls:// and https://;
    /// without it a self-signed one for localhost, 127.0.0.1 and ::1 is made.
    /// SIGHUP reads it and the key again.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert; should be readable by its owner only.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Write the certificate served (the self-signed one) to FILE for
    /// clients to trust (--tls-ca), by the --pid-file rules.
    #[arg(long, value_name = "FILE")]
    pub tls_cert_out: Option<PathBuf>,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("'{text}' is not an octal mode such as 600 or 660")),
    }
}

/// Runs the daemon: 0 after a clean shutdown, 2 for a bad option (such
/// as a `--format` it cannot serve, checked whether or not a binary://
/// endpoint is served), 1 if it could not start.
pub fn run(args: Args) -> Outcome {
    services::binary::check_format(&args.format, args.max_buffer).map_err(Failure::usage)?;
    serve(args).map_err(Failure::failed)?;
    Ok(Exit::Ok)
}

fn serve(args: Args) -> Result<(), String> {
    let started = Instant::now();
    // Sockets passed by systemd or by the process we replace, taken before
    // this process opens a descriptor of its own: `LISTEN_FDS` larger than
    // what was passed must name a closed descriptor, never one of ours.
    let from_upgrade = std::env::var_os(upgrade::UPGRADE_NOTIFY).is_some();
    // They wait in `passing`, with the record of our own sockets for a
    // successor: `sock` adopts and records through it (a `sock::Binder`).
    let passing = Arc::new(daemon::PassedSockets::default());
    let passed = passing.activation.adopt_from_env(from_upgrade)?;
    let inventory = Arc::clone(&passing.inventory);
    // Catch SIGINT/SIGTERM before creating socket files, so no signal can
    // end the process between a bind and the cleanup that undoes it.
    let pipes = Arc::new(reactors::Pipes::default());
    let signals = SignalPipe::new(pipes.clone(), inventory.clone())
        .map_err(|err| format!("signals: {}", describe(&err)))?;
    // `--reactors N`: the other reactors hear of a shutdown from reactor 0.
    let count = args.reactors.resolve();
    let board = Board::new(count);
    let followers = (1..count)
        .map(|_| SignalPipe::follower(&pipes))
        .collect::<io::Result<Vec<SignalPipe>>>()
        .map_err(|err| format!("signals: {}", describe(&err)))?;
    let binder = sock::Binder::new(passing.clone()).share_ports(count > 1);
    reactors::schedule(count, from_upgrade);
    let cpus = args.pin.then(crate::sys::cpu::allowed_cpus);
    let cpu_of = |index: usize| cpus.as_ref().map(|cpus| cpus[index % cpus.len()]);
    if let Some(cpu) = cpu_of(0) {
        crate::sys::cpu::pin_to(cpu)
            .map_err(|err| format!("pin to CPU {cpu}: {}", describe(&err)))?;
    }
    // SIGUSR2 too: its default action would end the daemon.
    let mut upgrader = upgrade::Upgrader::new(inventory.clone(), args.drain)
        .map_err(|err| format!("signals: {}", describe(&err)))?;
    let endpoints = if args.endpoints.is_empty() && passed > 0 {
        // Socket activation with no endpoint named: only what was passed.
        Vec::new()
    } else if args.endpoints.is_empty() {
        DEFAULT_ENDPOINTS
            .iter()
            .map(|text| text.parse())
            .collect::<Result<Vec<Endpoint>, _>>()
            .map_err(|err| err.to_string())?
    } else {
        args.endpoints.clone()
    };
    let tls = tls_setup(&args, &endpoints)?;
    let config = ServeConfig {
        iface: args.iface,
        format: args.format.clone(),
        unix_mode: args.unix_mode,
        udp_rate: args.udp_rate,
        rate_limit_loopback: args.rate_limit_loopback,
        tls: tls.clone(),
        max_buffer: args.max_buffer as usize,
        binder,
    };
    // Bind everything before serving anything: on a failure the handlers
    // bound so far are dropped, which removes the socket files they made,
    // and the error is the only line on stderr.
    let mut bound: Vec<Bound> = Vec::with_capacity(endpoints.len());
    for endpoint in &endpoints {
        // A path is what a tool asks for; a server answers every path.
        if !endpoint.resource.is_empty() {
            return Err(format!(
                "cannot serve {endpoint}: serve answers every path; name none"
            ));
        }
        let one = services::bind(endpoint, &config)
            .map_err(|err| format!("cannot serve {endpoint}: {}", describe(&err)))?;
        bound.push(one);
    }
    // The other reactors bind their own sockets for the kinds that spread,
    // at the addresses reactor 0 resolved (port 0), before the passed
    // sockets left unclaimed are served: with an upgrade, the same address
    // comes once per reactor of the old process.
    let limits = limits(&args);
    let connections = Arc::new(AtomicUsize::new(0));
    let spread: Vec<Endpoint> = bound
        .iter()
        .map(|one| one.endpoint.clone())
        .filter(|endpoint| reactors::spreads(endpoint.kind))
        .collect();
    let mut others = Vec::with_capacity(followers.len());
    for (index, signals) in (1..).zip(followers) {
        let config = config.clone();
        let start = reactors::Start {
            endpoints: spread.clone(),
            bind: Arc::new(move |endpoint: &Endpoint| {
                let one = services::bind(endpoint, &config)
                    .map_err(|err| format!("cannot serve {endpoint}: {}", describe(&err)))?;
                Ok((one.handler, (one.endpoint, one.detail)))
            }),
            board: board.clone(),
            pipes: pipes.clone(),
            limits: limits.clone(),
            cpu: cpu_of(index),
            connections: connections.clone(),
            signals: Box::new(signals),
        };
        let failed = match reactors::spawn(index, start) {
            Ok((thread, result)) => {
                others.push(thread);
                result.err()
            }
            Err(err) => Some(format!("reactor {index}: {}", describe(&err))),
        };
        if let Some(message) = failed {
            reactors::stop_others(others, &pipes);
            return Err(message);
        }
    }
    let mut others = reactors::StopOnDrop(others, pipes.clone());
    let admin = match &args.admin {
        Some(path) => {
            let admin = services::admin::bind(path, &config.binder).map_err(|err| {
                format!(
                    "cannot serve the admin socket {}: {}",
                    path.display(),
                    describe(&err)
                )
            })?;
            inventory.label_admin(path);
            Some(admin)
        }
        None => None,
    };
    // Passed sockets no endpoint named are served by their own kind.
    for endpoint in passing.activation.unclaimed_endpoints()? {
        let one = services::bind(&endpoint, &config)
            .map_err(|err| format!("cannot serve passed socket {endpoint}: {}", describe(&err)))?;
        bound.push(one);
    }
    if bound.is_empty() && admin.is_none() {
        return Err("nothing to serve".to_string());
    }
    for one in &bound {
        inventory.label(&one.endpoint);
    }
    let pid_file = match &args.pid_file {
        Some(path) => Some(PidFile::write(path).map_err(|err| {
            format!(
                "cannot write the pid file {}: {}",
                path.display(),
                describe(&err)
            )
        })?),
        None => None,
    };
    if let Some(pid_file) = &pid_file {
        upgrader.keep_pid_file(pid_file.path());
    }

    let max_connections = limits.max_connections;
    let mut reactor =
        Reactor::new(limits.clone()).map_err(|err| format!("poll: {}", describe(&err)))?;
    if count > 1 {
        reactor.count_connections_in(connections);
    }
    reactor.join_board(board, 0);
    // With one reactor too: it takes the page's once-a-second sample.
    reactor
        .add(reactors::publisher(0))
        .map_err(|err| format!("stats: {}", describe(&err)))?;
    let mut lines = String::new();
    for one in bound {
        lines.push_str(&format!("listening {}\n", one.endpoint));
        let on = match count {
            1 => String::new(),
            _ if reactors::spreads(one.endpoint.kind) => format!("on {count} reactors"),
            _ => "on reactor 0".to_string(),
        };
        match (one.detail.is_empty(), on.is_empty()) {
            (true, true) => info!("serving {}", one.endpoint),
            (false, true) => info!("serving {} ({})", one.endpoint, one.detail),
            (true, false) => info!("serving {} ({on})", one.endpoint),
            (false, false) => info!("serving {} ({}; {on})", one.endpoint, one.detail),
        }
        reactor
            .add_endpoint(one.handler, one.endpoint.to_string())
            .map_err(|err| format!("cannot register {}: {}", one.endpoint, describe(&err)))?;
    }
    if let (Some(admin), Some(path)) = (admin, &args.admin) {
        lines.push_str(&format!("listening admin:{}\n", path.display()));
        reactor
            .add_endpoint(admin, format!("admin:{}", path.display()))
            .map_err(|err| format!("admin socket: {}", describe(&err)))?;
    }
    reactor
        .add(Box::new(signals))
        .map_err(|err| format!("signals: {}", describe(&err)))?;
    if let Some(tls) = &tls {
        // The successor presents the same self-signed certificate, so the
        // clients that trusted --tls-cert-out keep working.
        if let Some(pair) = tls.certs.source().to_inherit() {
            upgrader.pass_env(crate::tls::INHERITED_SELF_SIGNED, pair);
        }
        let reloader = reload::Reloader::new(tls.certs.clone())
            .map_err(|err| format!("signals: {}", describe(&err)))?;
        reactor
            .add(Box::new(reloader))
            .map_err(|err| format!("signals: {}", describe(&err)))?;
    }
    reactor
        .add(Box::new(upgrader))
        .map_err(|err| format!("signals: {}", describe(&err)))?;
    let endpoint_count = lines.lines().count();

    if count > 1 {
        info!(
            "{count} reactors{}",
            match &cpus {
                Some(_) => format!(
                    ", pinned to CPUs {:?}",
                    (0..count).filter_map(cpu_of).collect::<Vec<_>>()
                ),
                None => String::new(),
            }
        );
    }
    lines.push_str("ready\n");
    let mut stdout = io::stdout().lock();
    // A closed stdout must not stop the daemon: the lines are a courtesy.
    let _ = stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    info!(
        "ready in {:.1} ms (max {max_connections} connections, --max-buffer {}, idle timeout {:?})",
        started.elapsed().as_secs_f64() * 1e3,
        args.max_buffer,
        args.idle_timeout
    );
    upgrade::announce_ready(&format!("serving {endpoint_count} endpoints"));

    let result = if count == 1 {
        reactor.run()
    } else {
        reactors::run_leader(&mut reactor, &pipes)
    };
    let finals = others.join();
    result.map_err(|err| format!("event loop failed: {}", describe(&err)))?;
    let mut all = vec![reactor.stats().clone()];
    all.extend(finals?);
    info!("stopped: {}", crate::reactor::totals(&all).line());
    drop(pid_file);
    Ok(())
}

/// The certificate of the TLS endpoints, loaded (or made) once for every
/// reactor; None when no endpoint speaks TLS and no certificate is named.
fn tls_setup(
    args: &Args,
    endpoints: &[Endpoint],
) -> Result<Option<Arc<crate::tls::ServerTls>>, String> {
    use crate::tls::{Certs, ServerTls, Source, INHERITED_SELF_SIGNED};
    let wanted = endpoints.iter().any(|e| e.kind.is_tls());
    if !wanted && args.tls_cert.is_none() {
        if args.tls_cert_out.is_some() {
            warn!("--tls-cert-out: no tls:// or https:// endpoint is served; nothing written");
        }
        return Ok(None);
    }
    let inherited = std::env::var(INHERITED_SELF_SIGNED)
        .ok()
        .and_then(|pair| Source::inherited(&pair));
    let source = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Source::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => match inherited {
            Some(source) => {
                info!("TLS: presenting the self-signed certificate of the process we replace");
                source
            }
            None => Source::self_signed()?,
        },
    };
    let (certs, loaded) = Certs::new(source).map_err(|err| format!("TLS certificate: {err}"))?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    info!(
        "TLS certificate: {}: SHA-256 {}",
        certs.source(),
        loaded.fingerprint
    );
    if let Some(path) = &args.tls_cert_out {
        let pem = match certs.source() {
            Source::SelfSigned { cert_pem, .. } => cert_pem.clone().into_bytes(),
            Source::Files { cert, .. } => crate::tls::read_pem(cert)?,
        };
        crate::safe_file::replace(path, &pem, 0o644).map_err(|err| {
            format!(
                "cannot write --tls-cert-out {}: {}",
                path.display(),
                describe(&err)
            )
        })?;
        info!("TLS certificate written to {}", path.display());
    }
    let tls = ServerTls::new(Arc::new(certs))?;
    Ok(Some(Arc::new(tls)))
}

/// The limits every reactor honours, from the options.
fn limits(args: &Args) -> Limits {
    let nofile = raise_nofile_limit();
    let max_connections = args
        .max_connections
        .unwrap_or_else(|| nofile.saturating_sub(FD_HEADROOM).max(1));
    Limits {
        idle_timeout: args.idle_timeout,
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        max_buffer: args.max_buffer as usize,
        grace: args.grace,
        control_reserve: CONTROL_RESERVE,
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as servers do; returns
/// the soft limit in force.
fn raise_nofile_limit() -> u64 {
    match crate::sys::rlimit::nofile() {
        Err(err) => {
            warn!("getrlimit(RLIMIT_NOFILE): {}", describe(&err));
            1024
        }
        Ok((soft, hard)) if soft >= hard => {
            info!("RLIMIT_NOFILE is {soft}");
            soft
        }
        Ok((soft, hard)) => match crate::sys::rlimit::raise_nofile() {
            Ok(_) => {
                info!("raised RLIMIT_NOFILE from {soft} to {hard}");
                hard
            }
            Err(err) => {
                warn!("could not raise RLIMIT_NOFILE: {}", describe(&err));
                soft
            }
        },
    }
}
