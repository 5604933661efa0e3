//! docs/GUIDE.md works as printed: every `$ $E ...` command in its console
//! blocks is run against a daemon started as the guide starts it (all
//! defaults, so this file is the one test that uses the default ports), and
//! the output printed under it must match (digits may differ; `...` skips).
//!
//! This is also where `serve` with no argument is checked against the
//! contract's default endpoints.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{bin, Daemon};

/// One `$ command` of the guide and the lines printed under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
    /// The plain ``` block that follows this console block, if any (trace output).
    after: Vec<String>,
}

fn parse_guide(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut fence: Option<String> = None;
    let mut last_console_step: Option<usize> = None;
    let mut plain_target: Option<usize> = None;
    for line in text.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            if fence.is_some() {
                fence = None;
                plain_target = None;
            } else {
                fence = Some(lang.trim().to_string());
                if lang.trim().is_empty() {
                    plain_target = last_console_step;
                }
            }
            continue;
        }
        match fence.as_deref() {
            Some("console") => {
                if let Some(command) = line.strip_prefix("$ ") {
                    steps.push(Step {
                        command: command.to_string(),
                        expected: Vec::new(),
                        after: Vec::new(),
                    });
                    last_console_step = Some(steps.len() - 1);
                } else if let Some(step) = steps.last_mut() {
                    step.expected.push(line.to_string());
                }
            }
            Some("") => {
                if let Some(index) = plain_target {
                    steps[index].after.push(line.to_string());
                }
            }
            _ => {
                if fence.is_none() && !line.trim().is_empty() {
                    last_console_step = None;
                }
            }
        }
    }
    steps
}

/// Digits become `#`, so ports, times and counts may differ.
fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An expected line matches if its pieces between `...` appear in order.
fn line_matches(expected: &str, actual: &str) -> bool {
    let actual = normalize(actual);
    let mut rest = actual.as_str();
    for piece in expected.split("...") {
        let piece = normalize(piece);
        match rest.find(&piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Every expected line matches an actual line, in order.
fn assert_output(step: &str, expected: &[String], actual: &str) {
    let mut lines = actual.lines();
    for want in expected.iter().filter(|line| !line.trim().is_empty()) {
        assert!(
            lines.any(|line| line_matches(want, line)),
            "guide step `{step}`: no line like {want:?} in:\n{actual}"
        );
    }
}

/// The guide's `$E` words, split as a shell would for these simple lines.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, ' ') => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn run_in(dir: &Path, args: &[String]) -> (bool, String, String) {
    let output = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run echoplex");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a `serve` step of the guide: its `listening` lines must match, and
/// for `--trace`, so must the trace excerpt after a client round trip.
fn check_serve_step(dir: &Path, step: &Step, args: &[String]) {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut printed = String::new();
    let deadline = Instant::now() + support::WAIT;
    while !printed.ends_with("ready\n") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "guide step `{}` never became ready: {printed}",
                step.command
            );
        }
        printed.push_str(&line);
    }
    assert_output(&step.command, &step.expected, &printed);
    if args.iter().any(|a| a == "--trace") {
        let endpoint = printed
            .lines()
            .find_map(|l| l.strip_prefix("listening tcp://"))
            .expect("a tcp endpoint");
        let (ok, _, err) = run_in(
            dir,
            &["client".into(), format!("tcp://{endpoint}"), "abc".into()],
        );
        assert!(ok, "client against the traced daemon failed: {err}");
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(child.wait().expect("wait").success());
    let trace: Vec<String> = step.after.iter().map(|l| l.replace("TRACE ", "")).collect();
    assert_output(&step.command, &trace, &stderr);
}

#[test]
fn the_guide_works_as_printed() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GUIDE.md"))
        .expect("docs/GUIDE.md");
    let steps = parse_guide(&guide);
    assert!(steps.len() > 10, "the guide lost its commands: {steps:?}");
    let dir = support::temp_dir("guide");

    // The guide's first daemon: every default, plus the admin socket.
    let first = steps
        .iter()
        .position(|s| s.command.starts_with("$E serve"))
        .expect("the guide starts a daemon");
    let daemon_words = words(&steps[first].command["$E ".len()..]);
    let daemon_args: Vec<&str> = daemon_words[1..].iter().map(String::as_str).collect();
    let daemon = Daemon::start_with(&daemon_args, |cmd| {
        cmd.current_dir(&dir);
    });
    assert_eq!(
        daemon.endpoints,
        [
            "tcp://127.0.0.1:10000",
            "udp://127.0.0.1:10000",
            "unix:./echoplex.sock",
            "multicast://224.10.10.10:10000",
            "binary://127.0.0.1:10001",
        ],
        "serve with no endpoint serves the contract's defaults"
    );

    let mut ran = 0;
    for (index, step) in steps.iter().enumerate() {
        if index == first {
            continue;
        }
        if let Some(rest) = step.command.strip_prefix("$E ") {
            let args = words(rest);
            if args.first().map(String::as_str) == Some("serve") {
                check_serve_step(&dir, step, &args);
            } else {
                let (ok, out, err) = run_in(&dir, &args);
                assert!(ok, "guide step `{}` failed:\n{out}{err}", step.command);
                assert_output(&step.command, &step.expected, &out);
            }
            ran += 1;
        } else if step.command.starts_with("ls ") {
            let output = Command::new("sh")
                .arg("-c")
                .arg(&step.command)
                .current_dir(&dir)
                .output()
                .expect("sh");
            assert!(output.status.success(), "`{}` failed", step.command);
            assert_output(
                &step.command,
                &step.expected,
                &String::from_utf8_lossy(&output.stdout),
            );
            ran += 1;
        }
    }
    assert!(ran > 10, "only {ran} guide commands ran");

    let (status, _) = daemon.stop();
    assert!(status.success());
    assert!(
        !dir.join("echoplex.sock").exists() && !dir.join("echoplex-admin.sock").exists(),
        "socket files left behind"
    );
}

#[test]
fn normalization_lets_numbers_differ_and_nothing_else() {
    assert!(line_matches(
        "listening tcp://127.0.0.1:41623",
        "listening tcp://127.0.0.1:39999"
    ));
    assert!(!line_matches(
        "listening tcp://127.0.0.1:1",
        "listening udp://127.0.0.1:1"
    ));
    assert!(line_matches(
        "srw------- 1 ... echoplex.sock",
        "srw------- 1 root root 0 Nov 25 07:00 echoplex.sock"
    ));
    assert!(!line_matches(
        "srw------- 1 ... echoplex.sock",
        "srwxr-xr-x 1 root root 0 Nov 25 07:00 echoplex.sock"
    ));
    assert_eq!(words("$E client 'a b' c"), ["$E", "client", "a b", "c"]);
}
