//! `echoplex completions SHELL` and `echoplex manpage`: the scripts and the
//! page cover every subcommand, bash accepts the bash script, and man
//! renders the page.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn echoplex(args: &[&str]) -> Output {
    Command::new(support::bin())
        .args(args)
        .output()
        .expect("cannot run the echoplex binary")
}

/// The subcommands `echoplex --help` lists, read from the help itself so a
/// new one is covered without editing this test.
fn subcommands() -> Vec<String> {
    let help = String::from_utf8(echoplex(&["--help"]).stdout).expect("UTF-8 help");
    let list: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(list.len() >= 8, "too few subcommands in --help: {list:?}");
    list
}

/// Runs `tool ARGS` with `input` on stdin; panics (the test is ignored by
/// default, so it only runs where the tool should be) if it is missing.
fn tool(name: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(name)
        .args(args)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("needs {name} ({e}): scripts/test-all installs it"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to the tool");
    child.wait_with_output().expect("wait for the tool")
}

#[test]
fn completions_cover_every_subcommand() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let out = echoplex(&["completions", shell]);
        assert!(out.status.success(), "completions {shell}");
        let script = String::from_utf8(out.stdout).expect("UTF-8 script");
        for sub in &subs {
            assert!(script.contains(sub.as_str()), "{shell} script lacks {sub}");
        }
        // An option of a subcommand, not only the names.
        assert!(
            script.contains("max-connections"),
            "{shell}: no serve options"
        );
    }
    let out = echoplex(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn manpage_has_a_section_per_subcommand() {
    let out = echoplex(&["manpage"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).expect("UTF-8 roff");
    // One title: the subcommands' own title lines are dropped.
    assert_eq!(page.matches("\n.TH ").count(), 1, "{page:.300}");
    assert!(page.contains("\n.TH echoplex 1 "), "{page:.300}");
    for sub in subcommands() {
        let heading = format!(".SS \"echoplex {sub}\"");
        assert!(page.contains(&heading), "no {heading} in the page");
    }
}

#[test]
fn manpage_has_the_sections_a_reader_looks_for_in_order() {
    let page = String::from_utf8(echoplex(&["manpage"]).stdout).expect("UTF-8 roff");
    let headings: Vec<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix(".SH "))
        .map(|heading| heading.trim_matches('"'))
        .collect();
    assert_eq!(
        headings,
        [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "ENDPOINTS",
            "SUBCOMMANDS",
            "SIGNALS",
            "ENVIRONMENT",
            "FILES",
            "EXIT STATUS",
            "EXAMPLES",
            "SEE ALSO"
        ]
    );
    // Every scheme --help names, and the signals and variables a daemon
    // under systemd meets.
    let section = |name: &str| {
        let start = page.find(&format!(".SH {name}")).expect("section");
        let rest = &page[start + 4..];
        rest[..rest.find("\n.SH ").unwrap_or(rest.len())].to_string()
    };
    let endpoints = section("ENDPOINTS");
    for scheme in [
        "tcp://",
        "udp://",
        "unix:",
        "unix-dgram:",
        "multicast://",
        "binary://",
        "metrics://",
    ] {
        let roff = scheme.replace('-', "\\-");
        assert!(endpoints.contains(&roff), "ENDPOINTS lacks {scheme}");
    }
    for option in ["?proxy", "?uid"] {
        assert!(endpoints.contains(option), "ENDPOINTS lacks {option}");
    }
    let signals = section("SIGNALS");
    for signal in ["TERM", "INT", "USR2", "HUP"] {
        assert!(signals.contains(signal), "SIGNALS lacks {signal}");
    }
    let environment = section("ENVIRONMENT");
    for var in ["RUST_LOG", "LISTEN_FDS", "NOTIFY_SOCKET"] {
        assert!(environment.contains(var), "ENVIRONMENT lacks {var}");
    }
}

#[test]
#[ignore = "needs bash: scripts/test-all"]
fn bash_accepts_the_bash_script() {
    let script = echoplex(&["completions", "bash"]).stdout;
    assert!(!script.is_empty());
    let out = tool("bash", &["-n"], &script);
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sourced, it registers the completion function for echoplex.
    let mut check = script.clone();
    check.extend_from_slice(b"\ncomplete -p echoplex\n");
    let out = tool("bash", &["-s"], &check);
    let registered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && registered.contains("echoplex"),
        "complete -p echoplex: {registered} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs man: scripts/test-all"]
fn man_renders_the_page() {
    let page = echoplex(&["manpage"]).stdout;
    let dir = std::env::temp_dir().join(format!("echoplex-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("echoplex.1");
    std::fs::write(&file, &page).expect("write the page");
    let path = file.to_str().expect("UTF-8 path");
    let out = tool("man", &["--warnings", "-l", path], b"");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man -l: {warnings}");
    assert!(warnings.trim().is_empty(), "man/groff warnings: {warnings}");
    for want in [
        "NAME",
        "SYNOPSIS",
        "echoplex serve",
        "--max-connections",
        "echoplex net",
        "SEE ALSO",
    ] {
        assert!(text.contains(want), "rendered page lacks {want}:\n{text}");
    }
    // Rendered, not raw roff.
    assert!(!text.contains(".SH"), "{text}");
    // Every page SEE ALSO names exists here.
    // The list is the section's first paragraph (the footer names this page).
    let see_also = text.split("SEE ALSO").nth(1).expect("SEE ALSO");
    let see_also = see_also
        .trim_start()
        .split("\n\n")
        .next()
        .unwrap_or_default();
    let mut named = 0;
    for word in see_also.split(|c: char| c.is_whitespace() || c == ',') {
        let Some((name, section)) = word.strip_suffix(')').and_then(|w| w.split_once('(')) else {
            continue;
        };
        named += 1;
        let out = tool("man", &["-w", &format!("{name}.{section}")], b"");
        assert!(
            out.status.success(),
            "SEE ALSO names {word}, which man -w cannot find"
        );
    }
    assert!(named >= 3, "{see_also}");
}

#[test]
#[ignore = "needs bash: scripts/test-all"]
fn bash_completes_the_endpoint_schemes_each_tool_takes() {
    let script = String::from_utf8(echoplex(&["completions", "bash"]).stdout).expect("UTF-8");
    let complete = |words: &str| -> String {
        let check = format!(
            "{script}\nCOMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1))\n\
             _echoplex_endpoints echoplex \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
        );
        let out = tool("bash", &["-s"], check.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let serve = complete("echoplex serve ''");
    let serve: Vec<&str> = serve.lines().collect();
    assert_eq!(
        serve,
        [
            "tcp://",
            "udp://",
            "unix:",
            "unix-dgram:",
            "multicast://",
            "binary://",
            "http://",
            "https://",
            "tls://",
            "metrics://"
        ],
        "serve: every scheme where an endpoint goes"
    );
    // serve takes many endpoints; client one, then its message.
    assert!(complete("echoplex serve tcp://0.0.0.0:1 u")
        .lines()
        .any(|l| l == "udp://"));
    assert!(!complete("echoplex client tcp://127.0.0.1:1 u").contains("udp://"));
    let ping = complete("echoplex ping u");
    let ping: Vec<&str> = ping.lines().collect();
    for scheme in ["udp://", "unix:", "unix-dgram:"] {
        assert!(ping.contains(&scheme), "ping u: {ping:?}");
    }
    // ping takes no binary://, and an option's value is not an endpoint.
    assert!(!complete("echoplex ping b")
        .lines()
        .any(|l| l == "binary://"));
    assert!(!complete("echoplex client --format t").contains("tcp://"));
    // zsh and fish get the same lists, from the same table.
    for shell in ["zsh", "fish"] {
        let script = String::from_utf8(echoplex(&["completions", shell]).stdout).expect("UTF-8");
        assert!(script.contains("multicast://"), "{shell}");
        assert!(script.contains("unix-dgram:"), "{shell}");
    }
}

#[test]
#[ignore = "needs zsh, fish: scripts/test-all"]
fn zsh_and_fish_accept_their_scripts_and_fish_completes_schemes() {
    let dir = std::env::temp_dir().join(format!("echoplex-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let zsh = dir.join("_echoplex");
    let fish = dir.join("echoplex.fish");
    std::fs::write(&zsh, echoplex(&["completions", "zsh"]).stdout).expect("write");
    std::fs::write(&fish, echoplex(&["completions", "fish"]).stdout).expect("write");
    let out = tool("zsh", &["-n", zsh.to_str().expect("UTF-8")], b"");
    assert!(
        out.status.success(),
        "zsh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tool("fish", &["-n", fish.to_str().expect("UTF-8")], b"");
    assert!(
        out.status.success(),
        "fish -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = format!(
        "source {}; complete -C 'echoplex ping u'",
        fish.to_str().expect("UTF-8")
    );
    let out = tool("fish", &["-c", &script], b"");
    let _ = std::fs::remove_dir_all(&dir);
    let offered = String::from_utf8_lossy(&out.stdout);
    let schemes: Vec<&str> = offered
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(schemes, ["udp://", "unix:", "unix-dgram:"], "{offered}");
}

/// `git ARGS` in the repository; `None` without git or outside a checkout.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit_and_says_dirty_when_the_sources_differ() {
    let version = String::from_utf8(echoplex(&["--version"]).stdout).expect("UTF-8");
    let Some(commit) = git(&["rev-parse", "--short=7", "HEAD"]) else {
        eprintln!("skipped: not a git checkout");
        return;
    };
    assert!(
        version.starts_with(&format!("echoplex {} ({commit}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let changed = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
    ])
    .expect("git status");
    assert_eq!(
        version.contains("dirty"),
        !changed.is_empty(),
        "{version} vs {changed:?}"
    );
}
