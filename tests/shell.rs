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
        let heading = format!(".SH \"ECHOPLEX {}\"", sub.to_uppercase());
        assert!(page.contains(&heading), "no {heading} in the page");
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
        "ECHOPLEX SERVE",
        "--max-connections",
        "ECHOPLEX NET",
    ] {
        assert!(text.contains(want), "rendered page lacks {want}:\n{text}");
    }
    // Rendered, not raw roff.
    assert!(!text.contains(".SH"), "{text}");
}
