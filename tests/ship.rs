//! What ships: the container image (Containerfile, run by podman with runc)
//! and the Debian package (scripts/build-deb), each built from the one
//! static, stripped binary of scripts/build-dist, then used as a user
//! would: echoes through the image, its /healthz and health check, a clean
//! stop; the package installed, run, its man page and units checked, purged
//! without a trace. Both need root (podman's storage, dpkg).
//!
//! CI time, measured here on the shared 2-core machine: build-dist 45 s to
//! 2 min after a source change (0.5 s when up to date; the two tests share
//! it, cargo's lock serialising them); beyond it the image test 8 s and the
//! package test 9 s at a light load, 93 s and 55 s at load average 20 (eight
//! sessions compiling).

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::WAIT;

/// The repository (tests run with it as their directory).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to its end, bounded by `limit`; kills it past that.
fn run_for(program: &str, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("needs {program} ({e}): scripts/test-all installs it"));
    let (mut out, mut err) = (
        child.stdout.take().expect("out"),
        child.stderr.take().expect("err"),
    );
    let reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
    });
    let err_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = err.read_to_end(&mut bytes);
        bytes
    });
    let status = support::wait_bounded(&mut child, limit, format_args!("{program} {args:?}"));
    Output {
        status,
        stdout: reader.join().expect("stdout"),
        stderr: err_reader.join().expect("stderr"),
    }
}

/// [`run_for`], which must succeed; returns its stdout.
fn ok(program: &str, args: &[&str], limit: Duration) -> String {
    let out = run_for(program, args, limit);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_root() {
    assert!(support::offline::is_root(), "needs root: scripts/test-all");
}

/// The shared build: static, stripped, at target/ship/echoplex.
fn build_dist() -> PathBuf {
    let out = ok("scripts/build-dist", &[], Duration::from_secs(1200));
    repo().join(out.lines().last().expect("the binary's path"))
}

/// A TCP echo, checked with plain sockets (no echoplex on this side).
fn tcp_echo(port: u16, message: &[u8]) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(message).expect("send");
    let mut echo = vec![0u8; message.len()];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(echo, message);
}

fn udp_echo(port: u16, message: &[u8]) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    // A datagram may be sent before the socket is bound: try a few times.
    for _ in 0..10 {
        socket.send_to(message, ("127.0.0.1", port)).expect("send");
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            assert_eq!(&buf[..n], message);
            return;
        }
    }
    panic!("no UDP echo from port {port}");
}

/// GET `path` over plain HTTP/1.1; returns the whole answer.
fn http_get(port: u16, path: &str) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("answer");
    answer
}

/// Removes the test's containers and image on every path out.
struct Podman {
    image: String,
    containers: Vec<String>,
}

impl Drop for Podman {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = run_for("podman", &["rm", "-f", "-t", "0", name], WAIT * 3);
        }
        let _ = run_for("podman", &["rmi", "-f", &self.image], WAIT * 3);
    }
}

/// Podman as this machine runs it: runc (the default runtime refuses the
/// cgroup setup here) and rlimits that root may not raise.
const RUN: &[&str] = &[
    "--runtime",
    "runc",
    "run",
    "-d",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=1024:1024",
];

/// Waits until the container's log says `ready`.
fn wait_ready(name: &str) -> String {
    let deadline = Instant::now() + support::STARTUP;
    loop {
        let out = run_for("podman", &["logs", name], WAIT);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if text.lines().any(|line| line == "ready") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never said ready:\n{text}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a container with SIGTERM and asserts it ended cleanly, in time.
fn stop_cleanly(name: &str) {
    let started = Instant::now();
    ok("podman", &["stop", "-t", "10", name], WAIT * 3);
    // --grace 2 s: far less than the 10 s after which podman would kill.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "stop took {:?}",
        started.elapsed()
    );
    let code = ok(
        "podman",
        &["inspect", "--format", "{{.State.ExitCode}}", name],
        WAIT,
    );
    assert_eq!(code.trim(), "0", "exit code after SIGTERM");
    let logs = run_for("podman", &["logs", name], WAIT);
    let logs = String::from_utf8_lossy(&logs.stderr);
    assert!(logs.contains("stopped: "), "no final counters:\n{logs}");
}

#[test]
#[ignore = "needs podman, runc, root: scripts/test-all"]
fn root_the_image_serves_echoes_answers_health_checks_and_stops_cleanly() {
    require_root();
    build_dist();
    let tag = format!("localhost/echoplex-test:{}", std::process::id());
    let mut podman = Podman {
        image: tag.clone(),
        containers: Vec::new(),
    };
    // --format docker: OCI images have no HEALTHCHECK.
    ok(
        "podman",
        &["build", "--format", "docker", "-t", &tag, "."],
        Duration::from_secs(300),
    );

    let inspect = |format: &str| {
        ok(
            "podman",
            &["image", "inspect", "--format", format, &tag],
            WAIT,
        )
    };
    let size: u64 = inspect("{{.Size}}").trim().parse().expect("size");
    assert!(size < 15_000_000, "image is {size} bytes");
    assert_eq!(inspect("{{.Config.User}}").trim(), "65534:65534");
    assert_eq!(
        inspect("{{json .Config.Entrypoint}}").trim(),
        r#"["/echoplex"]"#
    );
    let cmd = inspect("{{json .Config.Cmd}}");
    assert!(cmd.starts_with(r#"["serve","#), "{cmd}");
    assert!(cmd.contains("metrics://0.0.0.0:9100"), "{cmd}");
    assert!(cmd.contains("tcp://0.0.0.0:"), "{cmd}");
    assert!(
        !cmd.contains("unix"),
        "a socket file in the default command: {cmd}"
    );
    let health = inspect("{{json .Config.Healthcheck.Test}}");
    assert!(
        health.contains("/healthz") && health.contains(":9100"),
        "{health}"
    );

    // 1. The default command, in the container's own network: the image's
    //    own health check, and an echo from inside.
    let name = format!("echoplex-test-default-{}", std::process::id());
    podman.containers.push(name.clone());
    let mut args: Vec<&str> = RUN.to_vec();
    args.extend(["--name", &name, &tag]);
    ok("podman", &args, WAIT * 3);
    wait_ready(&name);
    ok("podman", &["healthcheck", "run", &name], WAIT * 3);
    let echo = ok(
        "podman",
        &[
            "exec",
            &name,
            "/echoplex",
            "client",
            "-q",
            "udp://127.0.0.1:10000",
            "from inside",
        ],
        WAIT * 3,
    );
    assert_eq!(echo, "from inside\n");
    stop_cleanly(&name);

    // 2. The host's network, endpoints on free loopback ports instead of
    //    the default command: echoes and /healthz from outside, and the
    //    image's health check pointed at the metrics port in use.
    let (port, metrics) = (support::free_tcp_udp_port(), support::free_tcp_udp_port());
    let name = format!("echoplex-test-host-{}", std::process::id());
    podman.containers.push(name.clone());
    let health: Vec<String> = serde_json::from_str(&health).expect("health check JSON");
    let health: Vec<String> = health
        .into_iter()
        .skip(1) // "CMD"
        .map(|word| word.replace(":9100", &format!(":{metrics}")))
        .collect();
    let health_cmd = serde_json::to_string(&health).expect("JSON");
    let (tcp, udp, http) = (
        format!("tcp://127.0.0.1:{port}"),
        format!("udp://127.0.0.1:{port}"),
        format!("metrics://127.0.0.1:{metrics}"),
    );
    let mut args: Vec<&str> = RUN.to_vec();
    // One CPU of quota: `--reactors auto` runs one loop, not one per CPU
    // of the host.
    args.extend([
        "--network=host",
        "--cpus",
        "1",
        "--name",
        &name,
        "--health-cmd",
        &health_cmd,
        &tag,
    ]);
    args.extend(["serve", &tcp, &udp, &http, "--reactors", "auto"]);
    ok("podman", &args, WAIT * 3);
    let logs = wait_ready(&name);
    assert!(logs.contains(&format!("listening {tcp}")), "{logs}");
    let serving = format!("serving {tcp}");
    let line = logs
        .lines()
        .find(|l| l.contains(&serving))
        .expect("serving line");
    assert!(
        line.ends_with(&serving),
        "more than one reactor under --cpus 1: {line}"
    );
    tcp_echo(port, b"through the container");
    udp_echo(port, b"a datagram through it");
    let answer = http_get(metrics, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    ok("podman", &["healthcheck", "run", &name], WAIT * 3);
    stop_cleanly(&name);
    drop(podman);
}

/// Runs `sh -c SCRIPT`; returns whether it succeeded and its output.
fn sh(script: &str) -> (bool, String) {
    let out = run_for("sh", &["-c", script], WAIT * 6);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Purges the package on every path out.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = sh("dpkg -P echoplex >/dev/null 2>&1");
    }
}

#[test]
#[ignore = "needs dpkg, man, systemd-analyze, root: scripts/test-all"]
fn root_the_package_installs_runs_and_purges_without_a_trace() {
    require_root();
    let (installed_before, _) = sh("dpkg -s echoplex >/dev/null 2>&1");
    assert!(
        !installed_before,
        "echoplex is installed already: this test would remove it"
    );
    let deb = repo().join(
        ok("scripts/build-deb", &[], Duration::from_secs(1200))
            .lines()
            .last()
            .expect("path"),
    );
    let deb = deb.to_str().expect("UTF-8 path");
    let listing = ok("dpkg-deb", &["-c", deb], WAIT);
    for path in [
        "./usr/bin/echoplex",
        "./usr/share/man/man1/echoplex.1.gz",
        "./usr/share/bash-completion/completions/echoplex",
        "./usr/share/zsh/vendor-completions/_echoplex",
        "./usr/share/fish/vendor_completions.d/echoplex.fish",
        "./lib/systemd/system/echoplex.service",
        "./lib/systemd/system/echoplex.socket",
        "./usr/share/doc/echoplex/copyright",
        "./usr/share/doc/echoplex/README.md",
    ] {
        assert!(
            listing.contains(path),
            "the package lacks {path}:\n{listing}"
        );
    }

    let guard = Installed;
    ok("dpkg", &["-i", deb], WAIT * 6);
    // What dpkg installed as files (not the directories, /lib among them,
    // that other packages share).
    let files: Vec<PathBuf> = ok("dpkg", &["-L", "echoplex"], WAIT)
        .lines()
        .map(PathBuf::from)
        .filter(|path| path.symlink_metadata().is_ok_and(|meta| meta.is_file()))
        .collect();
    assert!(files.len() >= 9, "{files:?}");

    // The installed binary: its version names the commit, and it serves.
    let version = ok("/usr/bin/echoplex", &["--version"], WAIT);
    let commit = ok("git", &["rev-parse", "--short=7", "HEAD"], WAIT);
    assert!(
        version.contains(commit.trim()),
        "{version} does not name {commit}"
    );
    let dir = support::temp_dir("deb-run");
    let sock = format!("unix:{}", dir.join("e.sock").display());
    let mut daemon = Command::new("/usr/bin/echoplex")
        .args(["serve", &sock])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the installed daemon");
    support::wait_ready(&mut daemon).expect("the installed daemon said ready");
    let echo = ok(
        "/usr/bin/echoplex",
        &["client", "-q", &sock, "installed"],
        WAIT,
    );
    assert_eq!(echo, "installed\n");
    let _ = support::kill(daemon.id() as i32, libc::SIGTERM);
    assert!(daemon.wait().expect("wait").success());

    // The man page where man finds it; the license matching Cargo.toml's.
    let page = ok("man", &["-w", "echoplex"], WAIT);
    assert_eq!(page.trim(), "/usr/share/man/man1/echoplex.1.gz");
    let copyright =
        std::fs::read_to_string("/usr/share/doc/echoplex/copyright").expect("copyright");
    let license = std::fs::read_to_string(repo().join("LICENSE")).expect("LICENSE");
    assert!(copyright.contains("License: MIT") && copyright.contains(&license));
    // The installed units, as installed: ExecStart names the binary there.
    let (verified, why) = sh(
        "systemd-analyze verify /lib/systemd/system/echoplex.socket /lib/systemd/system/echoplex.service",
    );
    assert!(
        verified && !why.contains("echoplex"),
        "systemd-analyze verify: {why}"
    );
    // bash loads the completion script from where the package put it.
    let (loaded, why) =
        sh("bash -c '. /usr/share/bash-completion/completions/echoplex && complete -p echoplex'");
    assert!(loaded && why.contains("_echoplex"), "{why}");

    ok("dpkg", &["-P", "echoplex"], WAIT * 6);
    std::mem::forget(guard);
    let (still, _) = sh("dpkg -s echoplex >/dev/null 2>&1");
    assert!(!still, "dpkg still knows echoplex after dpkg -P");
    for path in &files {
        assert!(!path.exists(), "{} is left after dpkg -P", path.display());
    }
    for path in [
        "/usr/bin/echoplex",
        "/usr/share/doc/echoplex",
        "/lib/systemd/system/echoplex.service",
    ] {
        assert!(!Path::new(path).exists(), "{path} is left after dpkg -P");
    }
}

#[test]
fn the_license_file_is_the_license_cargo_toml_names() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let license = std::fs::read_to_string(repo().join("LICENSE")).expect("a LICENSE file");
    assert!(
        manifest.contains("\nlicense = \"MIT\"\n"),
        "Cargo.toml's license changed: update LICENSE"
    );
    assert!(license.starts_with("MIT License\n"), "{license:.80}");
    assert!(license.contains("Permission is hereby granted, free of charge"));
}
