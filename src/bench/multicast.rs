//! `bench multicast://GROUP:PORT`: one sender, many receivers. Each round
//! sends one datagram to the group (TTL 1, out of `--iface`) and collects
//! the `ack`s that come back within `--timeout`; the report has a row per
//! responder with its acks, losses and latency.
//!
//! An `ack` carries nothing but its source address, so responders are told
//! apart by address. Several receivers on one host share an address (they
//! share the group's port): the most acks one address gave in one round
//! says how many answer there, and its row says so. The first round waits
//! the whole timeout, to hear everyone; later rounds end as soon as every
//! responder heard so far has answered, or at the timeout.

use crate::error::Exit;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use super::report::{group, quantiles};
use super::types::new_histogram;
use super::Args;
use crate::probe::interrupt::stopped;

/// One responder address.
struct Responder {
    acks: u64,
    /// Acks beyond its share in a round: late answers to an earlier round.
    late: u64,
    /// The most acks it gave in one round: receivers behind the address.
    share: u64,
    latency: Histogram<u64>,
}

/// Runs the multicast bench; returns the exit code.
pub fn run(args: &Args) -> Exit {
    match bench(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "echoplex bench: {}: {}",
                args.endpoint,
                crate::error::describe(&err)
            );
            Exit::Io
        }
    }
}

fn bench(args: &Args) -> io::Result<Exit> {
    // The group as client resolves it (one rule for what a group is).
    let group_addr = match crate::probe::socket::multicast_group(&args.endpoint) {
        Ok(SocketAddr::V4(v4)) => v4,
        Ok(other) => {
            eprintln!("echoplex bench: {other} is not an IPv4 multicast group (224.0.0.0/4)");
            return Ok(Exit::Usage);
        }
        Err(failure) => {
            eprintln!("echoplex bench: {failure}");
            return Ok(failure.exit);
        }
    };
    let socket = crate::sock::multicast_sender(args.iface, 1).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!(
                "cannot send on interface {}: {}",
                args.iface,
                crate::error::describe(&err)
            ),
        )
    })?;
    socket.set_nonblocking(false)?;
    let size = usize::try_from(args.size)
        .unwrap_or(usize::MAX)
        .min(crate::probe::MAX_UDP_PAYLOAD);
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let timeout = args.timeout;
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let start = Instant::now();
    let end = start + args.duration;
    let mut responders: BTreeMap<SocketAddr, Responder> = BTreeMap::new();
    let mut rounds = 0u64;
    let mut buf = [0u8; 64];
    // Said before the wait, not after: a first round that seems to hang
    // for the whole timeout is discovery, not a stall.
    eprintln!(
        "echoplex bench: round 1 listens the whole --timeout ({}) to discover responders; \
         later rounds end as soon as every responder has answered",
        super::units::duration(timeout)
    );
    let interrupted = loop {
        let round_start = Instant::now();
        let done = match args.messages {
            Some(n) => rounds >= n,
            None => round_start >= end,
        };
        // Ctrl-C: the report covers the rounds so far.
        if done || stopped() {
            break stopped();
        }
        socket.send_to(
            &payload,
            SocketAddrV4::new(*group_addr.ip(), group_addr.port()),
        )?;
        rounds += 1;
        let deadline = round_start + timeout;
        let mut this_round: BTreeMap<SocketAddr, u64> = BTreeMap::new();
        loop {
            let now = Instant::now();
            // After the first round: done once everyone known has answered.
            let all_in = rounds > 1
                && !responders.is_empty()
                && responders
                    .iter()
                    .all(|(addr, r)| this_round.get(addr).copied().unwrap_or(0) >= r.share);
            if now >= deadline || all_in || stopped() {
                break;
            }
            socket.set_read_timeout(Some(deadline - now))?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if &buf[..n] != b"ack" {
                continue;
            }
            let at = Instant::now();
            let count = this_round.entry(from).or_insert(0);
            *count += 1;
            let r = responders.entry(from).or_insert_with(|| Responder {
                acks: 0,
                late: 0,
                share: 0,
                latency: new_histogram(),
            });
            if rounds > 1 && *count > r.share.max(1) {
                // More than it ever gave in one round: a late ack.
                r.late += 1;
                continue;
            }
            r.share = r.share.max(*count);
            r.acks += 1;
            let us = u64::try_from(at.duration_since(round_start).as_micros()).unwrap_or(u64::MAX);
            r.latency.saturating_record(us.max(1));
        }
        if let Some(pace) = pace {
            let next = round_start + pace;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
    };
    let elapsed = start.elapsed();
    let rows: Vec<serde_json::Value> = responders
        .iter()
        .map(|(addr, r)| {
            json!({
                "addr": addr.to_string(),
                "acks": r.acks,
                "lost": (rounds * r.share).saturating_sub(r.acks),
                "late": r.late,
                "receivers": r.share,
                "latency_us": quantiles(&r.latency),
            })
        })
        .collect();
    let mut stdout = io::stdout().lock();
    if args.json {
        let v = json!({
            "endpoint": args.endpoint.to_string(),
            "mode": "multicast",
            "iface": args.iface.to_string(),
            "rounds": rounds,
            "duration_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "rounds_per_sec": (rounds as f64 / elapsed.as_secs_f64().max(1e-9) * 1000.0).round() / 1000.0,
            "responders": rows,
            "interrupted": interrupted,
        });
        let _ = writeln!(stdout, "{v}");
    } else {
        let _ = writeln!(
            stdout,
            "{}: {} rounds of {size} B out of {} in {:.2} s; {} responder address{}{}",
            args.endpoint,
            group(rounds),
            args.iface,
            elapsed.as_secs_f64(),
            responders.len(),
            if responders.len() == 1 { "" } else { "es" },
            if interrupted { " (interrupted)" } else { "" }
        );
        for (addr, r) in &responders {
            let lost = (rounds * r.share).saturating_sub(r.acks);
            let h = &r.latency;
            let _ = writeln!(
                stdout,
                "  {addr:<21} {}acks {}, lost {} ({:.2} %), late {}; p50 {} µs, p99 {} µs, max {} µs",
                if r.share > 1 {
                    format!("({} receivers share it) ", r.share)
                } else {
                    String::new()
                },
                group(r.acks),
                group(lost),
                100.0 * lost as f64 / (rounds * r.share).max(1) as f64,
                r.late,
                group(h.value_at_quantile(0.5)),
                group(h.value_at_quantile(0.99)),
                group(h.max()),
            );
        }
    }
    let _ = stdout.flush();
    if interrupted {
        eprintln!("echoplex bench: interrupted; the report covers what was measured");
        return Ok(Exit::Interrupted);
    }
    if responders.is_empty() {
        eprintln!(
            "echoplex bench: no ack from {} on {} within {timeout:?} in {rounds} rounds",
            args.endpoint, args.iface
        );
        return Ok(Exit::Unreachable);
    }
    Ok(Exit::Ok)
}
