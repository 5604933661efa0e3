//! The coordinator, independent of the command line: [`run_load`] takes a
//! [`LoadConfig`], resolves the target, starts the workers
//! ([`super::worker`], one thread each, over [`Streams`] or [`Datagrams`]),
//! opens and closes the measured window, and sums their results into a
//! [`Report`]. `benches/compare.rs` calls it directly, with an
//! [`Observer`] that reads the server's CPU time exactly when the measured
//! window opens and closes.

use std::io;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::dgram::Datagrams;
use super::intervals::Collector;
use super::judge::{CpuClock, Verdict};
use super::schedule::Lag;
use super::stream::Streams;
use super::types::{
    new_histogram, Coordination, Counters, Dest, LoadConfig, Observer, Progress, Report, Stop,
    Timeline, WorkerJob,
};
use super::worker;
use crate::endpoint::{Endpoint, ServerAnswer, Tool};
use crate::probe::payload::{nonce, Pattern};
use crate::probe::socket::{self, ClientBind};
use crate::probe::tls::TlsClient;
use crate::probe::Failure;

/// Resolves the endpoint. A name with several addresses (`localhost` is
/// often `::1` and `127.0.0.1`) is probed in order, IPv4 first, and the
/// first that accepts a connection is used, as `curl` does.
///
/// tls://: one connection with a full handshake first, so a server that
/// fails verification is one clear error before the run, not a count.
pub fn resolve(
    endpoint: &Endpoint,
    size: usize,
    connect_timeout: Duration,
    tls: Option<&TlsClient>,
) -> io::Result<Dest> {
    let failed = |failure: Failure| io::Error::other(failure.to_string());
    endpoint
        .check_tool(Tool::Bench)
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    let addrs = socket::addresses(endpoint).map_err(failed)?;
    let addr = if (addrs.len() > 1 && endpoint.kind.is_stream()) || tls.is_some() {
        let (_probe, addr) = socket::connect(endpoint, connect_timeout, ClientBind::TempFile, tls)
            .map_err(failed)?;
        addr
    } else {
        addrs
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?
    };
    let web = match endpoint.kind.info().answer {
        ServerAnswer::HttpEcho => Some(Arc::new(super::http::learn(
            endpoint,
            size,
            connect_timeout,
            tls,
        )?)),
        _ => None,
    };
    Ok(Dest {
        kind: endpoint.kind,
        addr,
        proxy: endpoint.options.proxy,
        tls: tls.cloned(),
        web,
    })
}

/// Runs the closed loop and returns its report. Fails only when the target
/// cannot be resolved or a worker cannot start; connection failures and
/// bad echoes are counted in the report.
pub fn run_load(config: &LoadConfig, observer: &mut dyn Observer) -> io::Result<Report> {
    let dest = resolve(
        &config.endpoint,
        config.size,
        config.connect_timeout,
        config.modes.tls.as_ref(),
    )?;
    let threads = config.threads.clamp(1, config.connections.max(1));
    let pattern = Arc::new(Pattern::new(config.size, nonce()));
    let shared = Coordination::new(threads);
    let (tx, mut collector) = match config.modes.interval {
        Some(length) => {
            let (tx, rx) = mpsc::channel();
            let window = match config.stop {
                Stop::Duration(d) => Some(d),
                Stop::Messages(_) => None,
            };
            (Some(tx), Some(Collector::new(threads, length, window, rx)))
        }
        None => (None, None),
    };
    let mut intervals = Vec::new();

    let mut handles = Vec::with_capacity(threads);
    let mut first_conn = 0;
    for index in 0..threads {
        let share = |total: u64| {
            total / threads as u64 + u64::from((index as u64) < total % threads as u64)
        };
        let conns = share(config.connections as u64) as usize;
        let job = WorkerJob {
            index,
            first_conn,
            conns,
            quota: match config.stop {
                Stop::Messages(n) => Some(share(n)),
                Stop::Duration(_) => None,
            },
            dest: dest.clone(),
            config: config.clone(),
            pattern: Arc::clone(&pattern),
            shared: Arc::clone(&shared),
            intervals: tx.clone(),
        };
        first_conn += conns;
        let run = if dest.web.is_some() {
            worker::run::<super::http::Requests>
        } else if dest.kind.is_stream() {
            worker::run::<Streams>
        } else {
            worker::run::<Datagrams>
        };
        let handle = thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || run(job))?;
        handles.push(handle);
    }

    // Connected: set the timeline and let the load begin.
    let timeline = shared.begin(|| {
        let load_start = Instant::now();
        let measure_start = load_start + config.warmup;
        Timeline {
            load_start,
            measure_start,
            measure_end: match config.stop {
                Stop::Duration(d) => Some(measure_start + d),
                Stop::Messages(_) => None,
            },
        }
    });
    let Timeline {
        load_start,
        measure_start,
        ..
    } = timeline;
    drop(tx);
    let cpu = CpuClock::start(false);
    observer.connected(shared.connected.load(std::sync::atomic::Ordering::Relaxed));

    let mut measuring = false;
    let mut interrupted = false;
    let mut next_tick = load_start + Duration::from_secs(1);
    let ended = loop {
        let now = Instant::now();
        if !measuring && now >= measure_start {
            measuring = true;
            observer.measuring();
        }
        // Ctrl-C first: a run interrupted as its workers ended is still
        // reported as interrupted.
        if observer.interrupted() {
            interrupted = true;
            shared.stop();
            break now;
        }
        if shared.finished() == threads {
            break now;
        }
        if let Some(end) = timeline.measure_end {
            if now >= end {
                break end;
            }
        }
        if let Some(collector) = &mut collector {
            for interval in collector.poll() {
                observer.interval(&interval);
                intervals.push(interval);
            }
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let sum = |i: usize| -> u64 {
                shared
                    .progress
                    .iter()
                    .map(|p| p[i].load(std::sync::atomic::Ordering::Relaxed))
                    .sum()
            };
            observer.progress(&Progress {
                elapsed: now - load_start,
                warming_up: !measuring,
                completed: sum(0),
                errors: sum(1),
                lost: sum(2),
            });
        }
        // Short naps keep the window's edges within a millisecond.
        let mut wake = next_tick.min(now + Duration::from_millis(1));
        if !measuring {
            wake = wake.min(measure_start);
        }
        thread::sleep(wake.saturating_duration_since(now));
    };
    if !measuring {
        observer.measuring();
    }
    observer.finished();
    shared.release();

    let mut counters = Counters::default();
    let mut latency = new_histogram();
    let mut first_error = None;
    let mut last_completion: Option<Instant> = None;
    let mut service = new_histogram();
    let mut connect_time = new_histogram();
    let mut handshake_time = new_histogram();
    let mut connect_causes = std::collections::BTreeMap::new();
    let mut lag = Lag::default();
    let mut busiest: f64 = 0.0;
    let mut jitter = (0.0, 0);
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| io::Error::other("a bench worker panicked"))?;
        counters.add(&result.counters);
        latency
            .add(&result.latency)
            .map_err(|err| io::Error::other(format!("merging histograms: {err}")))?;
        if first_error.is_none() {
            first_error = result.first_error;
        }
        last_completion = last_completion.max(result.last_completion);
        let _ = service.add(&result.service);
        let _ = connect_time.add(&result.connect_time);
        let _ = handshake_time.add(&result.handshake_time);
        for (cause, n) in result.connect_causes {
            *connect_causes.entry(cause).or_insert(0) += n;
        }
        lag.add(&result.lag);
        busiest = busiest.max(result.cpu_share);
        jitter.0 += result.jitter.0;
        jitter.1 += result.jitter.1;
    }
    let (cpu_used, cpu_wall) = cpu.read();
    // The window as it really was: a run whose every worker ended early (a
    // closed port, a dead server) or that was interrupted is shorter than
    // asked; `-n` lasts until its last echo.
    let end = match (config.stop, interrupted) {
        (Stop::Messages(_), false) => last_completion.unwrap_or(measure_start),
        _ => ended,
    };
    let duration = end.saturating_duration_since(measure_start);
    if let Some(collector) = &mut collector {
        // The workers are joined: their last pieces are in the channel.
        // An interval cut short (Ctrl-C) is as long as it really was.
        for interval in collector.finish(Duration::from_millis(100), duration) {
            observer.interval(&interval);
            intervals.push(interval);
        }
    }
    let open = config.modes.rate.is_some();
    let verdict = Verdict {
        lag: open.then_some(lag),
        cpu_percent: 100.0 * cpu_used.as_secs_f64() / cpu_wall.as_secs_f64().max(1e-9),
        busiest_thread: busiest,
        cpu_ns_per_msg: cpu_used.as_nanos() as f64 / counters.messages.max(1) as f64,
    };
    // Closed loop: each connection's next message waited for the last
    // echo, so a stall delayed sends instead of showing in latency. wrk's
    // correction: for every value above the expected interval between one
    // connection's messages (window × in-flight slots / messages), add
    // the values the messages that would have been sent meanwhile saw.
    let corrected = (!open && counters.messages > 0).then(|| {
        let slots = (config.connections * config.depth) as f64;
        let expected_us = (duration.as_micros() as f64 * slots / counters.messages as f64) as u64;
        latency.clone_correct(expected_us.max(1))
    });
    Ok(Report {
        config: config.clone(),
        counters,
        latency,
        duration,
        first_error,
        interrupted,
        service: open.then_some(service),
        verdict,
        intervals,
        connect_time,
        connect_causes,
        handshake_time,
        corrected,
        jitter_us: (jitter.1 > 0).then(|| jitter.0 / jitter.1 as f64),
        speech: dest.web.as_ref().map(|web| web.speech),
    })
}
