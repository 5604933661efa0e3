//! docs/GUIDE.md works as printed: every `$ $E ...` command in its console
//! blocks is run against a daemon started as the guide starts it, and the
//! output printed under it must match (digits may differ; `...` skips).
//! The user may be running a daemon on the defaults right now (README's
//! first command), so the guide never meets it: as root it runs as
//! printed in a private network namespace (`root_*`), and everywhere on
//! free ports written over 10000 and 10001; always in a private working
//! directory (a namespace does not isolate `./echoplex.sock`).
//! The `net` outputs and the `--trace` excerpt are compared whole instead:
//! every line character for character, with `<placeholders>` only for what
//! varies (host names, times, ports). The `net` steps ask the resolver, so
//! they run in `root_guide_net_outputs_are_whole`, offline (see
//! `support::offline`) with Debian's default /etc/hosts.
//!
//! The namespace run is also where `serve` with no argument is checked
//! against the contract's default endpoints.

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

/// What a `<placeholder>` of the guide may stand for.
fn placeholder_matches(name: &str, value: &str) -> bool {
    let all = |ok: fn(char) -> bool| !value.is_empty() && value.chars().all(ok);
    match name {
        "hostname" => value == own_hostname(),
        // The host name, or it with a domain.
        "fqdn" => value
            .strip_prefix(&own_hostname())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.')),
        "timestamp" => all(|c| c.is_ascii_digit() || matches!(c, '-' | 'T' | ':' | 'Z')),
        "secs" => all(|c| c.is_ascii_digit() || c == '.'),
        "port" => all(|c| c.is_ascii_digit()),
        _ => panic!("unknown placeholder <{name}> in docs/GUIDE.md"),
    }
}

/// This machine's host name, as `net hostname` prints it.
fn own_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf` minus a final NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    assert_eq!(rc, 0, "gethostname failed");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `actual` is `expected` character for character, where each
/// `<placeholder>` stands for text it allows (see [`placeholder_matches`]).
fn whole_line_matches(expected: &str, actual: &str) -> bool {
    let Some(open) = expected.find('<') else {
        return expected == actual;
    };
    let Some(close) = expected[open..].find('>').map(|at| open + at) else {
        return expected == actual;
    };
    let (literal, name, rest) = (
        &expected[..open],
        &expected[open + 1..close],
        &expected[close + 1..],
    );
    let Some(tail) = actual.strip_prefix(literal) else {
        return false;
    };
    // Try every length for the placeholder; lines are short.
    (1..=tail.len())
        .filter(|&end| tail.is_char_boundary(end))
        .any(|end| {
            placeholder_matches(name, &tail[..end]) && whole_line_matches(rest, &tail[end..])
        })
}

/// The output is exactly the expected lines, each matched whole.
fn assert_whole_output(step: &str, expected: &[String], actual: &str) {
    let actual: Vec<&str> = actual.lines().collect();
    assert!(
        expected.len() == actual.len()
            && expected
                .iter()
                .zip(&actual)
                .all(|(want, got)| whole_line_matches(want, got)),
        "guide step `{step}` prints, whole:\n{}\nbut docs/GUIDE.md shows:\n{}",
        actual.join("\n"),
        expected.join("\n")
    );
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
    let _ = support::kill(child.id() as i32, libc::SIGTERM);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(child.wait().expect("wait").success());
    // The excerpt's lines appear whole, in order, among everything logged.
    let mut logged = stderr.lines();
    for want in &step.after {
        assert!(
            logged.any(|line| whole_line_matches(want, line)),
            "guide step `{}`: no line {want:?} (whole) in:\n{stderr}",
            step.command
        );
    }
}

/// The ports the guide's commands use: as printed (10000, 10001) inside a
/// private network namespace, or free ones written over them.
#[derive(Clone, Copy)]
struct Ports {
    main: u16,
    binary: u16,
}

impl Ports {
    const PRINTED: Ports = Ports {
        main: 10000,
        binary: 10001,
    };

    fn free() -> Ports {
        Ports {
            main: support::free_tcp_udp_port(),
            binary: support::free_tcp_udp_port(),
        }
    }

    fn rewrite(&self, text: &str) -> String {
        text.replace(":10000", &format!(":{}", self.main))
            .replace(":10001", &format!(":{}", self.binary))
    }

    fn step(&self, step: &Step) -> Step {
        Step {
            command: self.rewrite(&step.command),
            expected: step.expected.iter().map(|l| self.rewrite(l)).collect(),
            after: step.after.iter().map(|l| self.rewrite(l)).collect(),
        }
    }
}

/// The contract's default endpoints, then the admin socket.
const DEFAULTS: [&str; 6] = [
    "tcp://127.0.0.1:10000",
    "udp://127.0.0.1:10000",
    "unix:./echoplex.sock",
    "multicast://224.10.10.10:10000",
    "binary://127.0.0.1:10001",
    "admin:./echoplex-admin.sock",
];

/// Runs every command of the guide on `ports`; with the printed ports the
/// first daemon gets no endpoint (the defaults, as the guide starts it),
/// else the defaults written out on the free ports.
fn run_guide(ports: Ports) {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GUIDE.md"))
        .expect("docs/GUIDE.md");
    let steps: Vec<Step> = parse_guide(&guide).iter().map(|s| ports.step(s)).collect();
    assert!(steps.len() > 10, "the guide lost its commands: {steps:?}");
    let dir = support::temp_dir("guide");

    // The guide's first daemon: every default, plus the admin socket.
    let first = steps
        .iter()
        .position(|s| s.command.starts_with("$E serve"))
        .expect("the guide starts a daemon");
    let mut daemon_words = words(&steps[first].command["$E ".len()..]);
    let defaults: Vec<String> = DEFAULTS.iter().map(|e| ports.rewrite(e)).collect();
    if ports.main != Ports::PRINTED.main {
        daemon_words.extend(defaults[..5].iter().cloned());
    }
    let daemon_args: Vec<&str> = daemon_words[1..].iter().map(String::as_str).collect();
    let daemon = Daemon::start_with(&daemon_args, |cmd| {
        cmd.current_dir(&dir);
    });
    assert_eq!(
        daemon.endpoints, defaults,
        "serve with no endpoint serves the contract's defaults, then the admin socket"
    );

    let mut ran = 0;
    for (index, step) in steps.iter().enumerate() {
        if index == first {
            continue;
        }
        if let Some(rest) = step.command.strip_prefix("$E ") {
            let args = words(rest);
            if args.first().map(String::as_str) == Some("net") {
                // Asks the resolver: root_guide_net_outputs_are_whole.
                continue;
            }
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
    // Plus the four `net` steps of root_guide_net_outputs_are_whole.
    assert!(ran >= 10, "only {ran} guide commands ran");

    let (status, _) = daemon.stop();
    assert!(status.success());
    assert!(
        !dir.join("echoplex.sock").exists() && !dir.join("echoplex-admin.sock").exists(),
        "socket files left behind"
    );
}

#[test]
fn the_guide_works_on_free_ports() {
    run_guide(Ports::free());
}

#[test]
#[ignore = "needs root: scripts/test-all"]
fn root_the_guide_works_as_printed_in_a_private_network() {
    assert!(
        support::offline::is_root(),
        "{}",
        support::offline::NEEDS_ROOT
    );
    support::in_private_network(|| run_guide(Ports::PRINTED));
}

/// Debian's default /etc/hosts, for the guide's `net` outputs.
fn debian_hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n\
         # The following lines are desirable for IPv6 capable hosts\n\
         ::1     localhost ip6-localhost ip6-loopback\n\
         ff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
    )
}

#[test]
#[ignore = "needs root: scripts/test-all"]
fn root_guide_net_outputs_are_whole() {
    support::offline::require();
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GUIDE.md"))
        .expect("docs/GUIDE.md");
    let dir = support::temp_dir("guide-net");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, debian_hosts(&own_hostname())).expect("write hosts");
    let mut ran = Vec::new();
    for step in parse_guide(&guide) {
        let Some(rest) = step.command.strip_prefix("$E net ") else {
            continue;
        };
        let output = support::offline::command(bin(), Some(&hosts))
            .arg("net")
            .args(words(rest))
            .output()
            .expect("run echoplex net");
        assert!(
            output.status.success(),
            "guide step `{}` failed: {}",
            step.command,
            String::from_utf8_lossy(&output.stderr)
        );
        assert_whole_output(
            &step.command,
            &step.expected,
            &String::from_utf8_lossy(&output.stdout),
        );
        ran.push(rest.to_owned());
    }
    assert_eq!(
        ran,
        ["hostname", "lookup localhost", "reverse 127.0.0.1", "fqdn"],
        "the guide's net look-ups"
    );
}

#[test]
fn whole_lines_allow_placeholders_only() {
    let host = own_hostname();
    assert!(whole_line_matches("name: localhost", "name: localhost"));
    assert!(!whole_line_matches("name: localhost", "name: localhost2"));
    assert!(!whole_line_matches(
        "addresses: 127.0.0.1",
        "addresses: 127.0.0.2"
    ));
    assert!(whole_line_matches("<hostname>", &host));
    assert!(!whole_line_matches("<hostname>", &format!("{host}x")));
    assert!(whole_line_matches("<fqdn>", &format!("{host}.example.org")));
    assert!(whole_line_matches(
        "[<timestamp> TRACE echoplex::reactor] poll timeout <secs>s: nearest of 1 timers (token 2)",
        "[2026-11-26T11:50:23Z TRACE echoplex::reactor] poll timeout 299.999691289s: nearest of 1 timers (token 2)"
    ));
    assert!(!whole_line_matches(
        "[<timestamp> TRACE echoplex::reactor] turn 1: 1 events",
        "[2026-11-26T11:50:23Z TRACE echoplex::reactor] turn 1: 2 events"
    ));
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
