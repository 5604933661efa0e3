//! Every bad input gets one answer style: one `echoplex: ...` line, clap's
//! `For more information` hint at most, exit 2; ranges said in words; no
//! `(os error N)`, no clap `error:` block, no tip to write `-- -1`. And the
//! exit table of `ping`: 3 when a stream cannot be connected, 1 when it
//! connected (or sent) and no reply came. And `serve --help` lists every
//! kind and endpoint option of the tables; schemes match in any case.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{run, temp_dir};

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Asserts the one style on a failed run: exit 2, one `echoplex:` line
/// (plus clap's hint), nothing of the other styles. Returns the line.
fn assert_usage_error(args: &[&str], mentions: &str) -> String {
    let (status, out, err) = run(args);
    assert_eq!(
        status.code(),
        Some(2),
        "{args:?}: exit {status:?}\nstdout: {out}\nstderr: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        !lines.is_empty() && lines.len() <= 2,
        "{args:?}: one line and a hint at most:\n{err}"
    );
    let line = lines[0];
    assert!(line.starts_with("echoplex: "), "{args:?}: {err}");
    if let Some(hint) = lines.get(1) {
        assert!(
            hint.starts_with("For more information, try "),
            "{args:?}: {err}"
        );
    }
    for leak in ["error:", "(os error", "tip:", "'-- ", "Usage:"] {
        assert!(!err.contains(leak), "{args:?}: {leak:?} in:\n{err}");
    }
    // Ranges in words: never `1..18446744073709551615` or `1..=1000000`.
    let bytes = line.as_bytes();
    let has_range = line.match_indices("..").any(|(at, _)| {
        at > 0
            && bytes[at - 1].is_ascii_digit()
            && bytes
                .get(at + 2)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'=')
    });
    assert!(!has_range, "{args:?}: a range in code, not words: {line}");
    assert!(
        line.to_lowercase().contains(&mentions.to_lowercase()),
        "{args:?}: {line:?} should mention {mentions:?}"
    );
    line.to_string()
}

#[test]
fn every_bad_input_is_one_line_and_exit_2() {
    let dir = temp_dir("bad-input");
    let closed = format!("tcp://127.0.0.1:{}", closed_port());
    let too_long = format!("unix:{}", "x".repeat(200));
    let cases: &[(&[&str], &str)] = &[
        // serve's options
        (
            &["serve", "--idle-timeout", "-1", "tcp://127.0.0.1:0"],
            "--idle-timeout",
        ),
        (
            &["serve", "--idle-timeout", "soon", "tcp://127.0.0.1:0"],
            "--idle-timeout",
        ),
        (
            &["serve", "--max-connections", "0", "tcp://127.0.0.1:0"],
            "at least 1",
        ),
        (
            &["serve", "--max-buffer", "0", "tcp://127.0.0.1:0"],
            "from 1 to",
        ),
        (
            &["serve", "--unix-mode", "999", "tcp://127.0.0.1:0"],
            "--unix-mode",
        ),
        (&["serve", "--grace", "-2", "tcp://127.0.0.1:0"], "--grace"),
        (
            &["serve", "--reactors", "0", "tcp://127.0.0.1:0"],
            "reactors",
        ),
        (
            &["serve", "--iface", "eth0", "tcp://127.0.0.1:0"],
            "--iface",
        ),
        (&["serve", "--bogus", "tcp://127.0.0.1:0"], "--bogus"),
        (
            &["serve", "--format", "Q Z", "binary://127.0.0.1:0"],
            "format",
        ),
        // endpoints
        (&["serve", "nope://127.0.0.1:0"], "unknown scheme"),
        (&["serve", "tcp://127.0.0.1:99999"], "65535"),
        (&["serve", "tcp://127.0.0.1"], "HOST:PORT"),
        (&["serve", "tcp://::1:0"], "bracketed"),
        (&["serve", "tcp://127.0.0.1:0?bogus"], "unknown option"),
        (&["serve", "udp://127.0.0.1:0?proxy"], "does not apply"),
        (&["serve", "unix:/tmp/x.sock?uid=me"], "uid"),
        (&["serve", "unix:"], "empty path"),
        (&["serve", &too_long], "too long"),
        (
            &["serve", "multicast://127.0.0.1:0"],
            "not a multicast group",
        ),
        // the tools
        (&["client"], "ENDPOINT"),
        (&["client", &closed], "MESSAGE"),
        (&["client", "metrics://127.0.0.1:1", "x"], "the path to GET"),
        (
            &["client", "--ttl", "300", "multicast://224.10.10.11:1", "x"],
            "from 0 to 255",
        ),
        (&["ping", "-c", "0", &closed], "at least 1"),
        (&["ping", "-i", "-1", &closed], "--interval"),
        (&["ping", "-s", "1", &closed], "from 12 to"),
        (&["ping", "binary://127.0.0.1:1"], "cannot ping"),
        (&["bench", &closed, "-c", "0"], "from 1 to"),
        (&["bench", &closed, "--rate", "-5"], "--rate"),
        (&["bench", "metrics://127.0.0.1:1"], "cannot bench"),
        (&["status", "--watch", "-1"], "--watch"),
        (&["net", "lookup"], "<NAME>"),
        (&["completions", "tcsh"], "tcsh"),
        (&["frob"], "frob"),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (args, mentions) in cases {
        let args: Vec<&str> = args.to_vec();
        // A failing case is reported with the others, not alone.
        if let Err(panic) = std::panic::catch_unwind(|| assert_usage_error(&args, mentions)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(why);
        }
    }
    drop(dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn schemes_match_in_any_case() {
    let (status, out, err) = run(&["client", "--help"]);
    assert!(status.success(), "{err}");
    assert!(!out.is_empty());
    // Parsed as tcp (so the failure is the connection, not the scheme).
    let endpoint = format!("TCP://127.0.0.1:{}", closed_port());
    let (status, _, err) = run(&["client", &endpoint, "x"]);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(!err.contains("unknown scheme"), "{err}");
    let daemon = support::Daemon::start(&["Udp://127.0.0.1:0", "UNIX-DGRAM:@echoplex-case"]);
    assert!(
        daemon.endpoints[0].starts_with("udp://127.0.0.1:"),
        "{:?}",
        daemon.endpoints
    );
    assert_eq!(daemon.endpoints[1], "unix-dgram:@echoplex-case");
    daemon.stop();
}

#[test]
fn serve_help_lists_every_kind_and_option() {
    let (status, out, err) = run(&["serve", "--help"]);
    assert!(status.success(), "{err}");
    // The truth here is the parser: every scheme it knows is listed, and
    // a scheme it does not know is refused.
    for scheme in [
        "tcp",
        "udp",
        "unix",
        "unix-dgram",
        "multicast",
        "binary",
        "metrics",
    ] {
        assert!(
            out.contains(&format!("\n  {scheme}:")),
            "serve --help lacks {scheme}:\n{out}"
        );
    }
    for option in ["?proxy", "?uid=N"] {
        assert!(out.contains(option), "serve --help lacks {option}:\n{out}");
    }
    let listed: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Endpoint kinds"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.trim().split(':').next())
        .collect();
    let (_, _, err) = run(&["serve", "nope://127.0.0.1:0"]);
    let known = err
        .split("(known: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no known schemes in: {err}"));
    let known: Vec<&str> = known.split(", ").collect();
    assert_eq!(listed, known, "serve --help and the parser disagree");
}

#[test]
fn ping_exits_3_when_a_stream_cannot_connect() {
    let dir = temp_dir("ping-exit");
    let missing = dir.join("nobody.sock");
    let missing = format!("unix:{}", missing.display());
    let refused = format!("tcp://127.0.0.1:{}", closed_port());
    for endpoint in [&refused, &missing] {
        let (status, out, err) = run(&["ping", "-c", "1", "-W", "1", endpoint]);
        assert_eq!(status.code(), Some(3), "{endpoint}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("echoplex: cannot connect"), "{err}");
        assert!(!err.contains("(os error"), "{err}");
    }
}

#[test]
fn ping_exits_1_when_connected_and_no_reply_came() {
    // Accepts (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", silent.local_addr().expect("addr"));
    let (status, out, err) = run(&["ping", "-c", "1", "-W", "0.3", &endpoint]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(out.contains("connected to"), "{out}");
    assert!(out.contains("100% packet loss"), "{out}");
    let _ = Duration::ZERO;
}

/// Failures past parsing keep the style: one `echoplex: ` line in words,
/// with strerror's text but never std's `(os error N)`.
#[test]
fn failures_at_run_time_say_why_in_words() {
    let dir = temp_dir("run-time");
    let missing = format!("unix-dgram:{}", dir.join("nobody.sock").display());
    let nowhere = dir.join("no/such/dir/file");
    let nowhere = nowhere.to_str().expect("utf-8");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &[
                "serve",
                "multicast://224.10.10.11:0",
                "--iface",
                "10.99.99.99",
            ],
            1,
            "No such device",
        ),
        (
            &[
                "bench",
                "multicast://224.10.10.11:1",
                "--iface",
                "10.99.99.99",
                "-n",
                "1",
            ],
            5,
            "Cannot assign requested address",
        ),
        (&["client", &missing, "x"], 3, "No such file or directory"),
        (&["report", nowhere], 5, "No such file or directory"),
        (
            &["serve", "--pid-file", nowhere, "tcp://127.0.0.1:0"],
            1,
            "pid file",
        ),
    ];
    for (args, code, mentions) in cases {
        let (status, out, err) = run(args);
        assert_eq!(status.code(), Some(*code), "{args:?}: {out}{err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains(mentions), "{args:?}: {err}");
        assert!(!err.contains("(os error"), "{args:?}: {err}");
    }
}
