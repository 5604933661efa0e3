//! `bench` against ground truth: a reference server written here
//! (`support::refserver`) whose behaviour is known exactly, and bench's
//! figures asserted against what that behaviour implies, each derivation
//! stated beside its test. Bench's own daemon is not used: the truth must
//! be one bench did not make.
//!
//! Timing-sensitive runs go under `chrt -f 1` when the tests run as root,
//! as the project's measurements do (docs/PERFORMANCE.md), and the server's
//! thread asks for SCHED_FIFO too: on a busy 2-core machine an unscheduled
//! thread would add stalls nobody asked for.

mod support;

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::refserver::{command, realtime, Behaviour, RefServer};

/// Runs `echoplex bench ARGS...`, under `chrt -f 1` when permitted.
fn bench(args: &[&str]) -> (ExitStatus, String, String) {
    let output = command(support::bin(), realtime())
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bench");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn us(v: &Value, key: &str) -> f64 {
    v["latency_us"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("latency_us.{key}: {v}"))
}

/// Fixed delay D per message, open loop well under capacity: no echo can
/// come back before D (a hard bound), and the median is D plus loopback
/// and scheduling (allowed 10 %).
#[test]
fn a_fixed_delay_is_the_latency() {
    let delay = Duration::from_millis(20);
    let server = RefServer::start(
        Behaviour {
            delay,
            ..Default::default()
        },
        realtime(),
    );
    let ep = format!("tcp://{}", server.tcp);
    let (status, out, err) = bench(&[&ep, "--rate", "200", "-c", "4", "-d", "2", "--json"]);
    let v = support::json_of(&out);
    assert!(status.success(), "{v}\n{err}");
    let d = delay.as_micros() as f64;
    assert!(v["latency_us"]["min"].as_f64().unwrap() >= d, "{v}");
    assert!(
        us(&v, "p50") <= d * 1.1,
        "p50 {} for D {d}: {v}",
        us(&v, "p50")
    );
    // The server's own count: every byte it echoed was verified.
    let echoed = server
        .counters
        .stream_bytes_out
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(v["messages"].as_u64(), Some(echoed / 64), "{v}");
}

/// A whole-server stall of S every T, open loop at a uniform rate: a
/// message due t into a stall waits S - t, and a share S/T of all messages
/// falls in stalls, so for q > 1 - S/T the q-quantile is S - (1-q)·T.
/// S = 200 ms, T = 1 s over 5 whole periods: p90 100 ms, p99 190 ms,
/// p99.9 199 ms, each within 2 %.
#[test]
fn periodic_stalls_show_in_the_open_loop_as_derived() {
    let (s, t) = (0.200, 1.0);
    let server = RefServer::start(
        Behaviour {
            periodic_stall: Some((Duration::from_secs_f64(t), Duration::from_secs_f64(s))),
            ..Default::default()
        },
        realtime(),
    );
    let ep = format!("tcp://{}", server.tcp);
    let (status, out, err) = bench(&[&ep, "--rate", "1000", "-c", "10", "-d", "5", "--json"]);
    let v = support::json_of(&out);
    assert!(status.success(), "{v}\n{err}");
    for (key, q) in [("p90", 0.90), ("p99", 0.99), ("p999", 0.999)] {
        let want = (s - (1.0 - q) * t) * 1e6;
        let got = us(&v, key);
        assert!(
            (got - want).abs() <= 0.02 * want,
            "{key}: {got} µs, derived {want} µs: {v}"
        );
    }
}

/// The server stops answering A = 3.5 s into a W = 5 s run at R = 1,000/s
/// and stays stopped past the end; bench waits --timeout (2 s) after the
/// window. The messages due in [A, W) are owed at the end: (W - A)·R =
/// 1,500. Each is recorded as the wait it had, (W + 2 s) - due, so the
/// slowest 10 % of the 5,000 messages are those due in [3.5 s, 4.0 s):
/// p90 = (W + 2) - 4.0 = 3.0 s. The run fails (exit 1). a4b59e2 printed
/// a p90 under a millisecond and exit 0.
#[test]
fn a_server_that_stops_at_the_end_of_the_window_is_owed_and_fails() {
    let server = RefServer::start(
        Behaviour {
            stall_at: Some((Duration::from_millis(3500), Duration::from_secs(30))),
            clock_from_first_message: true,
            ..Default::default()
        },
        realtime(),
    );
    let ep = format!("tcp://{}", server.tcp);
    let (status, out, err) = bench(&[
        &ep,
        "--rate",
        "1000",
        "-c",
        "4",
        "-d",
        "5",
        "--timeout",
        "2",
        "--json",
    ]);
    let v = support::json_of(&out);
    assert_eq!(status.code(), Some(1), "{v}\n{err}");
    let owed = v["owed_at_end"].as_u64().unwrap_or(0);
    assert!((1450..=1550).contains(&owed), "owed_at_end {owed}: {v}");
    let p90 = us(&v, "p90");
    assert!(
        (2.9e6..=3.3e6).contains(&p90),
        "p90 {p90} µs, derived 3.0 s: {v}"
    );
    assert!(err.contains("owed at the end"), "{err}");
    assert!(
        v["verdict"].as_str().unwrap_or("").contains("server"),
        "{v}"
    );
    // Every echo the server wrote was read and counted, none twice.
    let echoed = server
        .counters
        .stream_bytes_out
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(v["messages"].as_u64(), Some(echoed / 64), "{v}");
}

/// The server drops every 10th datagram: bench's `lost` is exactly the
/// server's count of drops (the last ones too, owed at the window's end),
/// and its messages exactly the server's echoes.
#[test]
fn every_kth_datagram_dropped_is_counted_lost_exactly() {
    let server = RefServer::start(
        Behaviour {
            drop_every: Some(10),
            ..Default::default()
        },
        false,
    );
    let ep = format!("udp://{}", server.udp);
    let (_, out, err) = bench(&[
        &ep,
        "--rate",
        "1000",
        "-c",
        "2",
        "-d",
        "2",
        "--timeout",
        "0.5",
        "--json",
    ]);
    let v = support::json_of(&out);
    let c = &server.counters;
    let dropped = c.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let echoed = c.datagrams_out.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 150, "{dropped} dropped: {v}\n{err}");
    assert_eq!(v["lost"].as_u64(), Some(dropped), "{v}");
    assert_eq!(v["messages"].as_u64(), Some(echoed), "{v}");
    assert_eq!(v["reordered"], 0, "{v}");
}

/// The server answers every 5th datagram after the next one: each such
/// pair is one echo that arrives after a later message's, so `reordered`
/// is exactly the server's count of swaps.
#[test]
fn datagrams_answered_out_of_order_are_counted_reordered_exactly() {
    let server = RefServer::start(
        Behaviour {
            swap_every: Some(5),
            ..Default::default()
        },
        false,
    );
    let ep = format!("udp://{}", server.udp);
    let (status, out, err) = bench(&[
        &ep,
        "--rate",
        "500",
        "-c",
        "1",
        "-d",
        "1",
        "--timeout",
        "0.5",
        "--json",
    ]);
    let v = support::json_of(&out);
    assert!(status.success(), "{v}\n{err}");
    let swapped = server
        .counters
        .swapped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(swapped >= 90, "{swapped}: {v}");
    assert_eq!(v["reordered"].as_u64(), Some(swapped), "{v}");
}

/// Every other datagram gets 4 ms more delay: successive round trips
/// differ by 4 ms each time, so RFC 3550's estimator (J += (|D| - J)/16)
/// converges to 4,000 µs (after 100 echoes it is within 0.2 % of it);
/// allowed 15 % for scheduling.
#[test]
fn alternating_delays_give_the_rfc3550_jitter() {
    let server = RefServer::start(
        Behaviour {
            alternate_delay: Duration::from_millis(4),
            ..Default::default()
        },
        realtime(),
    );
    let ep = format!("udp://{}", server.udp);
    let (status, out, err) = bench(&[&ep, "--rate", "200", "-c", "1", "-d", "2", "--json"]);
    let v = support::json_of(&out);
    assert!(status.success(), "{v}\n{err}");
    let jitter = v["jitter_us"].as_f64().expect("jitter_us");
    assert!((jitter - 4000.0).abs() <= 600.0, "jitter {jitter} µs: {v}");
}

/// `--arrivals poisson` at R = 2,000/s on one socket: the server's own
/// arrival times (read under SCHED_FIFO) must look like a Poisson process:
/// gaps with mean 1/R = 500 µs and a coefficient of variation of 1 (the
/// exponential's), each within 10 % (scheduling blurs a gap by tens of µs).
#[test]
fn poisson_arrivals_reach_the_server_with_exponential_gaps() {
    let server = RefServer::start(Behaviour::default(), realtime());
    let ep = format!("udp://{}", server.udp);
    let (status, out, err) = bench(&[
        &ep,
        "--rate",
        "2000",
        "--arrivals",
        "poisson",
        "-c",
        "1",
        "-d",
        "3",
        "--json",
    ]);
    assert!(status.success(), "{out}\n{err}");
    let arrivals = server.counters.arrivals.lock().expect("arrivals").clone();
    assert!(arrivals.len() > 5000, "{} datagrams", arrivals.len());
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e6)
        .collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n).sqrt();
    let cv = sd / mean;
    assert!((mean - 500.0).abs() <= 50.0, "mean gap {mean:.1} µs");
    assert!((cv - 1.0).abs() <= 0.1, "coefficient of variation {cv:.3}");
}

/// A server stopped for the whole run (it reads nothing, answers
/// nothing): every message sent is counted sent and never answered, the
/// verdict names the server, and the generator does not spin on sends it
/// cannot make (a4b59e2 called itself SATURATED here in 3 runs of 6, and
/// counted 100,000 sent and never answered as nothing).
#[test]
fn a_stopped_server_is_named_and_its_unanswered_messages_counted() {
    let server = RefServer::start(
        Behaviour {
            stall_at: Some((Duration::ZERO, Duration::from_secs(60))),
            ..Default::default()
        },
        false,
    );
    let ep = format!("tcp://{}", server.tcp);
    let (status, out, err) = bench(&[
        &ep,
        "--rate",
        "2000",
        "-c",
        "2",
        "-d",
        "2",
        "--timeout",
        "5",
        "--json",
    ]);
    let v = support::json_of(&out);
    assert_eq!(status.code(), Some(3), "no echo ever: {v}\n{err}");
    let sent = v["generator"]["sends"].as_u64().unwrap_or(4000);
    let never = v["never_answered"].as_u64().unwrap_or(0);
    assert!(never >= 3800, "never answered {never} of {sent}: {v}");
    let verdict = v["verdict"].as_str().unwrap_or_default();
    // Names the server as behind: alone, or beside a generator a loaded
    // machine made late ("Both fell behind: the server (...) and ...").
    assert!(
        verdict.starts_with("The server fell behind (") || verdict.contains("the server ("),
        "{verdict}"
    );
    let busiest = v["generator"]["busiest_thread_percent"]
        .as_f64()
        .unwrap_or(100.0);
    assert!(busiest < 50.0, "the generator spun: {v}");
}
