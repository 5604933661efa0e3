//! `serve tls://` checked by real TLS peers. The `openssl` CLI
//! makes a test CA, an intermediate and leaf certificates (ECDSA P-256);
//! `openssl s_client` (TLS 1.2 and 1.3) and Python's `ssl` verify the
//! server against that CA and get their bytes echoed. Garbage for a
//! ClientHello is closed and counted; SIGHUP makes new handshakes present
//! the new certificate (its fingerprint, seen by s_client) while an
//! established session goes on; a bad reload keeps the old one; the
//! self-signed certificate written by `--tls-cert-out` verifies, also after
//! a SIGUSR2 upgrade; `?proxy` takes the PROXY header before the ClientHello.

mod support;

/// The harness's one check for a tool (a missing one fails under scripts/test-all).
use support::have_tool as have;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::{status_json, Daemon, WAIT};

/// Runs `openssl ARGS` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test PKI made by openssl: root CA -> intermediate -> leaves.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.key("ca.key");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-sha256",
                "-days",
                "2",
                "-subj",
                "/CN=echoplex test root",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        pki.key("int.key");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                "int.key",
                "-subj",
                "/CN=echoplex test intermediate",
                "-out",
                "int.csr",
            ],
        );
        std::fs::write(
            dir.join("int.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .expect("write int.ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "int.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                "int.ext",
                "-out",
                "int.pem",
            ],
        );
        pki
    }

    fn key(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ],
        );
        set_mode(&self.dir.join(name), 0o600);
    }

    /// A leaf for localhost and 127.0.0.1 signed by the intermediate:
    /// `NAME.chain.pem` (leaf then intermediate) and `NAME.key`.
    fn leaf(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = format!("{name}.key");
        self.key(&key);
        let csr = format!("{name}.csr");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &csr,
            ],
        );
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        let pem = format!("{name}.pem");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "int.pem",
                "-CAkey",
                "int.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
        let chain = self.dir.join(format!("{name}.chain.pem"));
        let mut text = std::fs::read_to_string(self.dir.join(&pem)).expect("leaf");
        text.push_str(&std::fs::read_to_string(self.dir.join("int.pem")).expect("int"));
        std::fs::write(&chain, text).expect("write chain");
        (chain, self.dir.join(key))
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// SHA-256 fingerprint of a PEM certificate, as openssl prints it.
    fn fingerprint(&self, pem: &Path) -> String {
        let out = openssl(
            &self.dir,
            &[
                "x509",
                "-in",
                path(pem),
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        out.trim()
            .split_once('=')
            .expect("Fingerprint=")
            .1
            .to_string()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `openssl s_client` on `addr` with `version` (`-tls1_2`, `-tls1_3`),
/// verifying against `ca` for the name localhost: sends `message`, waits
/// for its echo, returns (echoed stdout, s_client's -brief summary).
fn s_client(addr: SocketAddr, version: &str, ca: &Path, message: &str) -> (String, String) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            version,
            "-CAfile",
            path(ca),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-servername",
            "localhost",
            "-brief",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(message.as_bytes())
        .expect("write to s_client");
    stdin.flush().expect("flush");
    let echoed = read_until(&mut child, message);
    drop(stdin);
    let _ = child.kill();
    let out = child.wait_with_output().expect("s_client output");
    (echoed, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Reads a child's stdout until `wanted` shows up (bounded by WAIT).
fn read_until(child: &mut Child, wanted: &str) -> String {
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let wanted_owned = wanted.to_string();
    thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&seen).contains(&wanted_owned) {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    rx.recv_timeout(WAIT).unwrap_or_default()
}

/// The fingerprint of the certificate `addr` presents, via s_client's
/// printout of it and `openssl x509`.
fn presented_fingerprint(dir: &Path, addr: SocketAddr) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("s_client printed the certificate");
    let end = text
        .find("-----END CERTIFICATE-----")
        .expect("end of certificate")
        + 25;
    let file = dir.join("presented.pem");
    std::fs::write(&file, &text[start..end]).expect("write presented.pem");
    let out = openssl(
        dir,
        &[
            "x509",
            "-in",
            path(&file),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    out.trim()
        .split_once('=')
        .expect("Fingerprint=")
        .1
        .to_string()
}

/// Python's ssl client: verifies against `ca` (server name localhost),
/// optionally sends `prefix` in clear first (a PROXY header), echoes one
/// message; returns its JSON line, or Err(stderr) when it failed.
fn python_ssl(addr: SocketAddr, ca: &Path, prefix: &str) -> Result<serde_json::Value, String> {
    const SCRIPT: &str = r#"
import json, socket, ssl, sys
host, port, ca, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection((host, port), timeout=10)
if prefix:
    raw.sendall(prefix.encode())
with ctx.wrap_socket(raw, server_hostname="localhost") as s:
    msg = b"hello from python ssl"
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    print(json.dumps({"version": s.version(), "cipher": s.cipher()[0], "echo": got.decode()}))
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            path(ca),
            prefix,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|err| format!("not JSON: {err}"))
}

fn admin(dir: &Path) -> PathBuf {
    dir.join("admin.sock")
}

fn start(dir: &Path, endpoint: &str, extra: &[&str]) -> Daemon {
    let admin = admin(dir);
    let mut args = vec![endpoint, "--admin", path(&admin)];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

#[test]
#[ignore = "needs openssl and python3: scripts/test-all"]
fn openssl_and_python_verify_a_chain_and_get_echoes_over_tls_1_2_and_1_3() {
    if !have("openssl") || !have("python3") {
        return;
    }
    let dir = support::temp_dir("tls-verify");
    let pki = Pki::new(&dir);
    let (chain, key) = pki.leaf("server");
    let daemon = start(
        &dir,
        "tls://127.0.0.1:0",
        &["--tls-cert", path(&chain), "--tls-key", path(&key)],
    );
    let addr = daemon.addr("tls://");

    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let message = format!("echo over {version}\n");
        let (echoed, summary) = s_client(addr, flag, &pki.ca(), &message);
        assert_eq!(echoed, message, "s_client {flag}: {summary}");
        assert!(
            summary.contains(&format!("Protocol version: {version}")),
            "{summary}"
        );
        assert!(summary.contains("Verification: OK"), "{summary}");
    }
    let python = python_ssl(addr, &pki.ca(), "").expect("python verifies and echoes");
    assert_eq!(python["echo"], "hello from python ssl");
    assert_eq!(python["version"], "TLSv1.3");

    // Verification is real: another root does not verify.
    let other = support::temp_dir("tls-other-ca");
    let stranger = Pki::new(&other);
    let err = python_ssl(addr, &stranger.ca(), "").expect_err("an unknown CA fails");
    assert!(err.contains("CERTIFICATE_VERIFY_FAILED"), "{err}");

    let status = status_json(&admin(&dir));
    assert!(
        status["tls_handshakes"].as_u64().unwrap_or(0) >= 3,
        "{status}"
    );
    assert!(
        status["tls_handshake_us"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
    assert!(
        !stderr.contains("PRIVATE KEY"),
        "the key was logged:\n{stderr}"
    );
}

#[test]
#[ignore = "needs openssl: scripts/test-all"]
fn garbage_instead_of_a_client_hello_is_closed_and_counted_and_others_are_served() {
    if !have("openssl") {
        return;
    }
    let dir = support::temp_dir("tls-garbage");
    let daemon = start(
        &dir,
        "tls://127.0.0.1:0",
        &[
            "--tls-cert-out",
            path(&dir.join("cert.pem")),
            "metrics://127.0.0.1:0",
        ],
    );
    let addr = daemon.addr("tls://");
    let mut plain = TcpStream::connect(addr).expect("connect");
    plain.set_read_timeout(Some(WAIT)).expect("timeout");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send garbage");
    let mut answer = Vec::new();
    let started = Instant::now();
    let _ = plain.read_to_end(&mut answer); // an alert at most, then the end
    assert!(
        started.elapsed() < WAIT,
        "garbage connection was not closed"
    );
    assert!(
        answer.len() < 64,
        "answered garbage with {} bytes",
        answer.len()
    );
    if let Some(&first) = answer.first() {
        assert_eq!(first, 21, "anything sent back is a TLS alert record");
    }
    // Everyone else is still served.
    let (echoed, summary) = s_client(addr, "-tls1_3", &dir.join("cert.pem"), "still here\n");
    assert_eq!(echoed, "still here\n", "{summary}");
    let status = status_json(&admin(&dir));
    assert_eq!(status["tls_errors"], 1, "{status}");
    assert_eq!(status["tls_handshakes"], 1, "{status}");
    // The same on /metrics.
    let mut scrape = TcpStream::connect(daemon.addr("metrics://")).expect("metrics");
    scrape.set_read_timeout(Some(WAIT)).expect("timeout");
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("scrape");
    let mut page = String::new();
    let _ = scrape.read_to_string(&mut page);
    assert!(page.contains("\nechoplex_tls_errors_total 1\n"), "{page}");
    assert!(
        page.contains("\nechoplex_tls_handshakes_total 1\n"),
        "{page}"
    );
    assert!(
        page.contains("echoplex_tls_handshake_seconds_total"),
        "{page}"
    );
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
    support::assert_no_panic(&stderr);
}

#[test]
#[ignore = "needs openssl: scripts/test-all"]
fn sighup_presents_the_new_certificate_and_a_failed_reload_keeps_it() {
    if !have("openssl") {
        return;
    }
    let dir = support::temp_dir("tls-reload");
    let pki = Pki::new(&dir);
    let (chain_a, key_a) = pki.leaf("a");
    let (chain_b, key_b) = pki.leaf("b");
    let cert = &*dir.join("served.pem");
    let key = &*dir.join("served.key");
    std::fs::copy(&chain_a, cert).expect("copy");
    std::fs::copy(&key_a, key).expect("copy");
    set_mode(key, 0o600);
    let daemon = start(
        &dir,
        "tls://127.0.0.1:0",
        &[
            "--reactors",
            "2",
            "--tls-cert",
            path(cert),
            "--tls-key",
            path(key),
        ],
    );
    let addr = daemon.addr("tls://");
    let fp_a = pki.fingerprint(&dir.join("a.pem"));
    let fp_b = pki.fingerprint(&dir.join("b.pem"));
    assert_ne!(fp_a, fp_b);
    assert_eq!(presented_fingerprint(&dir, addr), fp_a);

    // A session established before the reload goes on after it.
    let mut before = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-CAfile",
            path(&pki.ca()),
            "-quiet",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("s_client");
    let mut before_in = before.stdin.take().expect("stdin");
    before_in.write_all(b"first\n").expect("write");
    before_in.flush().expect("flush");
    let mut before_out = before.stdout.take().expect("stdout");
    let mut first = [0u8; 6];
    before_out
        .read_exact(&mut first)
        .expect("echo before the reload");
    assert_eq!(&first, b"first\n");

    std::fs::copy(&chain_b, cert).expect("copy");
    std::fs::copy(&key_b, key).expect("copy");
    daemon.signal(libc::SIGHUP);
    // Every reactor's new handshakes see it (several connections, so both
    // reactors of --reactors 2 are likely asked).
    support::wait_until("the new certificate is presented", || {
        presented_fingerprint(&dir, addr) == fp_b
    });
    for _ in 0..6 {
        assert_eq!(presented_fingerprint(&dir, addr), fp_b);
    }
    before_in.write_all(b"again\n").expect("write");
    before_in.flush().expect("flush");
    let mut again = [0u8; 6];
    before_out
        .read_exact(&mut again)
        .expect("echo after the reload");
    assert_eq!(&again, b"again\n");
    drop(before_in);
    let _ = before.kill();
    let _ = before.wait();

    // A key that does not match: the reload fails, B stays.
    std::fs::copy(&key_a, key).expect("copy");
    daemon.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(presented_fingerprint(&dir, addr), fp_b);
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
    assert!(stderr.contains("TLS reload failed"), "{stderr}");
    assert!(stderr.contains("does not match"), "{stderr}");
}

#[test]
#[ignore = "needs openssl: scripts/test-all"]
fn a_key_that_does_not_match_is_a_startup_error_and_a_readable_key_a_warning() {
    if !have("openssl") {
        return;
    }
    let dir = support::temp_dir("tls-mismatch");
    let pki = Pki::new(&dir);
    let (chain_a, _) = pki.leaf("a");
    let (_, key_b) = pki.leaf("b");
    let (status, _, stderr) = support::run(&[
        "serve",
        "tls://127.0.0.1:0",
        "--tls-cert",
        path(&chain_a),
        "--tls-key",
        path(&key_b),
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    support::assert_one_error_line(&stderr, &["does not match"]);
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");

    let (chain, key) = pki.leaf("c");
    set_mode(&key, 0o644);
    let daemon = start(
        &dir,
        "tls://127.0.0.1:0",
        &["--tls-cert", path(&chain), "--tls-key", path(&key)],
    );
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
    assert!(stderr.contains("can be read by others"), "{stderr}");
}

#[test]
#[ignore = "needs openssl and python3: scripts/test-all"]
fn the_self_signed_certificate_written_out_verifies_and_survives_an_upgrade() {
    if !have("openssl") || !have("python3") {
        return;
    }
    let dir = support::temp_dir("tls-self-signed");
    let out = &*dir.join("cert.pem");
    let pid_file = &*dir.join("serve.pid");
    let log = &*dir.join("serve.log");
    // Logs to a file: the successor inherits it (a pipe would outlive our reader).
    let mut old = Command::new(support::bin())
        .args([
            "serve",
            "tls://127.0.0.1:0",
            "--tls-cert-out",
            path(out),
            "--pid-file",
            path(pid_file),
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn serve");
    let endpoints = support::wait_ready(&mut old).expect("ready");
    let addr: SocketAddr = endpoints[0]
        .trim_start_matches("tls://")
        .parse()
        .expect("address");
    let python = python_ssl(addr, out, "").expect("the written certificate verifies");
    assert_eq!(python["echo"], "hello from python ssl");
    let fingerprint = Pki {
        dir: dir.to_path_buf(),
    }
    .fingerprint(out);
    assert_eq!(presented_fingerprint(&dir, addr), fingerprint);

    let old_pid = old.id() as i32;
    support::signal_pid(old_pid, libc::SIGUSR2);
    let mut new_pid = 0;
    support::wait_until("the pid file names the new process", || {
        new_pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(old_pid);
        new_pid != old_pid
    });
    let _successor = support::Successor(new_pid);
    support::wait_until("the old process exits", || {
        matches!(old.try_wait(), Ok(Some(_)))
    });
    // The new process serves the same certificate: clients that trusted
    // cert.pem keep working.
    let python = python_ssl(addr, out, "").expect("still verifies after the upgrade");
    assert_eq!(python["echo"], "hello from python ssl");
    assert_eq!(presented_fingerprint(&dir, addr), fingerprint);
    let text = std::fs::read_to_string(log).expect("log");
    assert!(
        text.contains("self-signed certificate of the process we replace"),
        "{text}"
    );
    assert_eq!(
        text.matches(&format!("SHA-256 {fingerprint}")).count(),
        2,
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "the key was logged:\n{text}");
}

#[test]
#[ignore = "needs python3: scripts/test-all"]
fn a_proxy_header_comes_before_the_client_hello() {
    if !have("python3") {
        return;
    }
    let dir = support::temp_dir("tls-proxy");
    let out = &*dir.join("cert.pem");
    let daemon = start(
        &dir,
        "tls://127.0.0.1:0?proxy",
        &["--tls-cert-out", path(out)],
    );
    let addr: SocketAddr = daemon
        .endpoint("tls://")
        .trim_start_matches("tls://")
        .trim_end_matches("?proxy")
        .parse()
        .expect("address");
    let header = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n";
    let python = python_ssl(addr, out, header).expect("TLS after the PROXY header");
    assert_eq!(python["echo"], "hello from python ssl");
    let status = status_json(&admin(&dir));
    assert_eq!(status["proxy_errors"], 0, "{status}");
    assert_eq!(status["tls_errors"], 0, "{status}");
    assert_eq!(status["tls_handshakes"], 1, "{status}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
fn a_handshake_not_done_in_time_is_closed_and_counted() {
    let dir = support::temp_dir("tls-slow");
    let daemon = start(&dir, "tls://127.0.0.1:0", &[]);
    let addr = daemon.addr("tls://");
    let mut silent = TcpStream::connect(addr).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // Half a ClientHello header, then nothing.
    silent.write_all(&[0x16, 0x03, 0x01]).expect("write");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(9), "closed after {waited:?}");
    assert!(waited < Duration::from_secs(30), "never closed");
    let status = status_json(&admin(&dir));
    assert_eq!(status["tls_errors"], 1, "{status}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
    assert!(stderr.contains("handshake"), "{stderr}");
}

/// A self-signed `serve tls://` and its certificate file, for the tools.
fn self_signed(dir: &Path) -> (Daemon, SocketAddr, PathBuf) {
    let cert = dir.join("cert.pem");
    let daemon = start(dir, "tls://127.0.0.1:0", &["--tls-cert-out", path(&cert)]);
    let addr = daemon.addr("tls://");
    (daemon, addr, cert)
}

#[test]
fn client_and_ping_verify_with_tls_ca_and_refuse_an_unknown_certificate() {
    let dir = support::temp_dir("tls-tools");
    let (daemon, addr, cert) = self_signed(&dir);
    let endpoint = format!("tls://{addr}");
    let (status, out, err) =
        support::run(&["client", &endpoint, "--tls-ca", path(&cert), "over", "tls"]);
    assert!(status.success(), "{err}");
    assert!(out.contains("TLS established: TLSv1.3"), "{out}");
    // Our tools and daemon agree on X25519 (rustls's ring list would pick
    // P-384, several times dearer).
    assert!(out.contains("X25519"), "{out}");
    assert!(out.contains("received \"over tls\""), "{out}");
    // By name too: the certificate is for localhost.
    let by_name = format!("tls://localhost:{}", addr.port());
    let (status, out, err) =
        support::run(&["client", &by_name, "--tls-ca", path(&cert), "-q", "hi"]);
    assert!(status.success(), "{err}");
    assert_eq!(out, "hi\n");
    // The system's roots do not know it: exit 3, and why.
    let (status, _, err) = support::run(&["client", &endpoint, "hello"]);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // -k skips verification, as curl's.
    let (status, out, err) = support::run(&["client", &endpoint, "-k", "-q", "insecure"]);
    assert!(status.success(), "{err}");
    assert_eq!(out, "insecure\n");
    // --tls-sni: a name the certificate is not for fails verification.
    let (status, _, err) = support::run(&[
        "client",
        &endpoint,
        "--tls-ca",
        path(&cert),
        "--tls-sni",
        "echo.example",
        "x",
    ]);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("not valid for name"), "{err}");

    // client -f: a file larger than every buffer comes back byte for byte.
    let file = dir.join("in.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).expect("write in.bin");
    let copied = Command::new(support::bin())
        .args([
            "client",
            &endpoint,
            "--tls-ca",
            path(&cert),
            "-q",
            "-f",
            path(&file),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("client -f");
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert!(
        copied.stdout == data,
        "{} of {} bytes came back as sent",
        copied.stdout.len(),
        data.len()
    );
    let (status, out, err) = support::run(&[
        "ping",
        &endpoint,
        "--tls-ca",
        path(&cert),
        "-c",
        "3",
        "-i",
        "0.2",
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("3 received"), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    let status = status_json(&admin(&dir));
    assert!(
        status["tls_handshakes"].as_u64().unwrap_or(0) >= 4,
        "{status}"
    );
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
fn bench_churn_over_tls_counts_full_handshakes_and_resumed_ones() {
    let dir = support::temp_dir("tls-bench");
    let (daemon, addr, cert) = self_signed(&dir);
    let endpoint = format!("tls://{addr}");
    let bench = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "bench",
            &endpoint,
            "--tls-ca",
            path(&cert),
            "-c",
            "2",
            "-n",
            "40",
            "--churn",
            "2",
            "--timeout",
            "30",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (status, out, err) = support::run(&args);
        assert!(status.success(), "{out}{err}");
        serde_json::from_str(&out).expect("bench --json")
    };
    let full = bench(&[]);
    let tls = &full["tls"];
    assert!(tls["handshakes"].as_u64().unwrap_or(0) >= 15, "{full}");
    assert_eq!(tls["resumed"], 0, "{full}");
    assert_eq!(tls["resumption"], false, "{full}");
    assert!(
        tls["handshake_time_us"]["p99"].as_u64().unwrap_or(0) > 0,
        "{full}"
    );
    let resumed = bench(&["--tls-resume"]);
    assert!(
        resumed["tls"]["resumed"].as_u64().unwrap_or(0) >= 10,
        "{resumed}"
    );
    let status = status_json(&admin(&dir));
    assert_eq!(status["tls_errors"], 0, "{status}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

/// A self-signed `serve https://`, its certificate file, its address.
fn self_signed_https(dir: &Path) -> (Daemon, SocketAddr, PathBuf) {
    let cert = dir.join("cert.pem");
    let daemon = start(dir, "https://127.0.0.1:0", &["--tls-cert-out", path(&cert)]);
    let addr = daemon.addr("https://");
    (daemon, addr, cert)
}

#[test]
fn client_and_ping_speak_https_and_wss_and_verify_the_server() {
    let dir = support::temp_dir("https-tools");
    let (daemon, addr, cert) = self_signed_https(&dir);
    let url = format!("https://{addr}/some/path");
    let (status, out, err) = support::run(&["client", &url, "--tls-ca", path(&cert), "msg"]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    // The daemon's own description: our body, our path, TLS with ALPN.
    assert!(out.contains(r#""body":"msg""#), "{out}");
    assert!(out.contains(r#""path":"/some/path""#), "{out}");
    assert!(out.contains(r#""alpn":"http/1.1""#), "{out}");
    // Self-signed: the system's roots refuse it, exit 3; -k takes it.
    let (status, _, err) = support::run(&["client", &url, "msg"]);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    let (status, out, err) = support::run(&["client", &url, "-k", "msg"]);
    assert!(status.success(), "{err}");
    assert!(out.contains(r#""body":"msg""#), "{out}");

    let wss = format!("wss://{addr}/chat");
    let (status, out, err) = support::run(&["client", &wss, "--tls-ca", path(&cert), "a", "b"]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("received \"a\""), "{out}");
    assert!(out.contains("received \"b\""), "{out}");
    let (status, _, err) = support::run(&["client", &wss, "a"]);
    assert_eq!(status.code(), Some(3), "{err}");

    for endpoint in [format!("https://{addr}/"), format!("wss://{addr}/")] {
        let (status, out, err) = support::run(&[
            "ping",
            &endpoint,
            "--tls-ca",
            path(&cert),
            "-c",
            "2",
            "-i",
            "0.2",
        ]);
        assert!(status.success(), "{endpoint}: {out}{err}");
        assert!(out.contains("2 received"), "{endpoint}: {out}");
    }
    // The two refusals above (their alerts) and nothing else.
    let status = status_json(&admin(&dir));
    assert_eq!(status["tls_errors"], 2, "{status}");
    assert_eq!(status["ws_upgrades"], 2, "{status}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
fn bench_over_https_and_wss_verifies_echoes_and_churn_counts_handshakes() {
    let dir = support::temp_dir("https-bench");
    let (daemon, addr, cert) = self_signed_https(&dir);
    let bench = |endpoint: &str, extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "bench",
            endpoint,
            "--tls-ca",
            path(&cert),
            "-c",
            "2",
            "-n",
            "40",
            "--timeout",
            "30",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (status, out, err) = support::run(&args);
        assert!(status.success(), "{endpoint}: {out}{err}");
        serde_json::from_str(&out).expect("bench --json")
    };
    for endpoint in [format!("https://{addr}/b"), format!("wss://{addr}/b")] {
        let report = bench(&endpoint, &[]);
        assert_eq!(report["messages"], 40, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["http"]["verified"], true, "{report}");
        // Keep-alive: one handshake per connection.
        assert_eq!(report["tls"]["handshakes"], 2, "{report}");
    }
    let https = format!("https://{addr}/b");
    let churned = bench(&https, &["--churn", "1"]);
    assert_eq!(churned["errors"], 0, "{churned}");
    assert_eq!(churned["http"]["verified"], true, "{churned}");
    let tls = &churned["tls"];
    assert!(tls["handshakes"].as_u64().unwrap_or(0) >= 30, "{churned}");
    assert!(
        tls["handshakes_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{churned}"
    );
    assert!(
        tls["handshake_time_us"]["p99"].as_u64().unwrap_or(0) > 0,
        "{churned}"
    );
    let status = status_json(&admin(&dir));
    assert_eq!(status["tls_errors"], 0, "{status}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
#[ignore = "needs python3: scripts/test-all"]
fn a_client_that_does_not_read_is_held_to_max_buffer_and_loses_nothing() {
    if !have("python3") {
        return;
    }
    const SCRIPT: &str = r#"
import select, socket, ssl, sys, time
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname="localhost")
s.setblocking(False)
pattern = bytes(i % 251 for i in range(251 * 64))
sent, last = 0, time.time()
while time.time() - last < 1.0 and sent < 64 << 20:
    try:
        off = sent % 251
        n = s.send(pattern[off:off + 16384])
        sent += n
        last = time.time()
    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
        select.select([], [s], [], 0.1)
print("stalled", sent, flush=True)
sys.stdin.readline()
got = 0
s.setblocking(True)
s.settimeout(10)
while got < sent:
    chunk = s.recv(65536)
    if not chunk:
        break
    for i, b in enumerate(chunk):
        if b != (got + i) % 251:
            print("mismatch at", got + i, flush=True)
            sys.exit(1)
    got += len(chunk)
print("echoed", got, flush=True)
"#;
    let dir = support::temp_dir("tls-backpressure");
    let cert = dir.join("cert.pem");
    let daemon = start(
        &dir,
        "tls://127.0.0.1:0",
        &["--tls-cert-out", path(&cert), "--max-buffer", "32768"],
    );
    let addr = daemon.addr("tls://");
    let mut python = Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            path(&cert),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        python.stdout.take().expect("stdout"),
    ));
    let stalled = lines.next().expect("a line").expect("read");
    let sent: u64 = stalled
        .strip_prefix("stalled ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stalled}"));
    let status = status_json(&admin(&dir));
    let conn = status["handlers"]
        .as_array()
        .and_then(|all| all.iter().find(|h| h["kind"] == "tls-conn"))
        .unwrap_or_else(|| panic!("no tls-conn in {status}"))
        .clone();
    assert_eq!(conn["state"], "paused-by-backpressure", "{conn}");
    assert!(
        conn["pending"].as_u64().unwrap_or(u64::MAX) <= 32768,
        "{conn}"
    );
    // What the daemon holds for it is bounded: the rest waits in the kernel.
    let bytes_in = conn["bytes_in"].as_u64().unwrap_or(0);
    let bytes_out = conn["bytes_out"].as_u64().unwrap_or(0);
    assert!(
        bytes_in - bytes_out <= 2 * 32768 + 16384,
        "holds {} bytes: {conn}",
        bytes_in - bytes_out
    );
    assert!(
        sent > bytes_in,
        "the client got ahead of the daemon: {sent} > {bytes_in}"
    );
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    let echoed = lines.next().expect("a line").expect("read");
    assert_eq!(echoed, format!("echoed {sent}"));
    assert!(python.wait().expect("wait").success());
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

/// The ```haproxy-tls block of docs/DEPLOY.md with this test's ports and files.
struct Shapes {
    passthrough: SocketAddr,
    tls_backend: SocketAddr,
    terminated: SocketAddr,
    plain_backend: SocketAddr,
    reencrypted: SocketAddr,
    https_backend: SocketAddr,
}

fn haproxy_tls_config(shapes: &Shapes, crt: &Path, ca: &Path) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/DEPLOY.md"))
        .expect("docs/DEPLOY.md");
    let block = page
        .split("```haproxy-tls\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```haproxy-tls block in docs/DEPLOY.md");
    let mut config = block.replacen("global\n", "global\n    noreuseport\n", 1);
    for (doc, here) in [
        ("127.0.0.1:8443", shapes.passthrough.to_string()),
        ("127.0.0.1:8444", shapes.tls_backend.to_string()),
        ("127.0.0.1:9443", shapes.terminated.to_string()),
        ("127.0.0.1:7001", shapes.plain_backend.to_string()),
        ("127.0.0.1:9080", shapes.reencrypted.to_string()),
        ("127.0.0.1:8445", shapes.https_backend.to_string()),
        ("/etc/haproxy/echo.pem", path(crt).to_string()),
        ("/etc/haproxy/ca.pem", path(ca).to_string()),
    ] {
        assert!(
            config.contains(doc),
            "DEPLOY.md's TLS configuration lost {doc}"
        );
        config = config.replace(doc, &here);
    }
    config
}

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::free_tcp_port()))
}

fn inet_of(endpoint: &str) -> SocketAddr {
    let hostport = endpoint.split_once("://").expect("scheme").1;
    hostport
        .split('?')
        .next()
        .unwrap_or(hostport)
        .parse()
        .expect("address")
}

#[test]
#[ignore = "needs haproxy, openssl, python3 and curl: scripts/test-all"]
fn haproxy_passes_tls_through_terminates_and_re_encrypts() {
    if !have("haproxy") || !have("openssl") || !have("python3") || !have("curl") {
        return;
    }
    let dir = support::temp_dir("tls-haproxy");
    let pki = Pki::new(&dir);
    let (chain, key) = pki.leaf("echo");
    let tls_admin = dir.join("tls.admin");
    let tls = Daemon::start(&[
        "tls://127.0.0.1:0?proxy",
        "--tls-cert",
        path(&chain),
        "--tls-key",
        path(&key),
        "--admin",
        path(&tls_admin),
    ]);
    let plain_admin = dir.join("plain.admin");
    let plain = Daemon::start(&["tcp://127.0.0.1:0?proxy", "--admin", path(&plain_admin)]);
    let https_admin = dir.join("https.admin");
    let https = Daemon::start(&[
        "https://127.0.0.1:0",
        "--tls-cert",
        path(&chain),
        "--tls-key",
        path(&key),
        "--admin",
        path(&https_admin),
    ]);
    // HAProxy's crt: the chain and the key in one file.
    let crt = dir.join("haproxy.pem");
    let mut both = std::fs::read_to_string(&chain).expect("chain");
    both.push_str(&std::fs::read_to_string(&key).expect("key"));
    std::fs::write(&crt, both).expect("write crt");
    set_mode(&crt, 0o600);
    let shapes = Shapes {
        passthrough: free_port(),
        tls_backend: inet_of(&tls.endpoints[0]),
        terminated: free_port(),
        plain_backend: inet_of(&plain.endpoints[0]),
        reencrypted: free_port(),
        https_backend: inet_of(&https.endpoints[0]),
    };
    let (passthrough, terminated) = (shapes.passthrough, shapes.terminated);
    let config = haproxy_tls_config(&shapes, &crt, &pki.ca());
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, config).expect("write haproxy.cfg");
    let log = dir.join("haproxy.log");
    let out = std::fs::File::create(&log).expect("log");
    let haproxy = Command::new("haproxy")
        .args(["-db", "-f", path(&cfg)])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn haproxy");
    let _haproxy = KillOnDrop(haproxy);
    // Both frontends answer once HAProxy is up.
    support::wait_until("HAProxy listens", || {
        TcpStream::connect(passthrough).is_ok()
            && TcpStream::connect(terminated).is_ok()
            && TcpStream::connect(shapes.reencrypted).is_ok()
    });
    // Health checks have run against both backends (v2 LOCAL, then close).
    thread::sleep(Duration::from_millis(700));

    for _ in 0..3 {
        let through = python_ssl(passthrough, &pki.ca(), "").unwrap_or_else(|err| {
            panic!(
                "passthrough: {err}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        assert_eq!(through["echo"], "hello from python ssl");
        let ended = python_ssl(terminated, &pki.ca(), "").unwrap_or_else(|err| {
            panic!(
                "termination: {err}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        assert_eq!(ended["echo"], "hello from python ssl");
    }
    let tls_status = status_json(&tls_admin);
    assert!(
        tls_status["tls_handshakes"].as_u64().unwrap_or(0) >= 3,
        "{tls_status}"
    );
    assert_eq!(
        tls_status["tls_errors"], 0,
        "health checks are not TLS errors: {tls_status}"
    );
    assert_eq!(tls_status["proxy_errors"], 0, "{tls_status}");
    let plain_status = status_json(&plain_admin);
    assert!(
        plain_status["accepted"].as_u64().unwrap_or(0) >= 3,
        "{plain_status}"
    );
    assert_eq!(plain_status["proxy_errors"], 0, "{plain_status}");
    // Re-encryption: plain HTTP in, HAProxy verifies echoplex https://.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{}/re/encrypted", shapes.reencrypted))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(json["path"], "/re/encrypted", "{json}");
    assert_eq!(json["tls"]["sni"], "localhost", "{json}");
    assert_eq!(json["tls"]["alpn"], "http/1.1", "{json}");
    let https_status = status_json(&https_admin);
    assert_eq!(https_status["tls_errors"], 0, "{https_status}");
    for daemon in [tls, plain, https] {
        let (exit, stderr) = daemon.stop();
        assert!(exit.success(), "{stderr}");
    }
}

/// SIGTERM (then a bounded wait) for a tool this test started.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = support::kill(self.0.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs curl and python3 websockets: scripts/test-all"]
fn https_answers_curl_with_the_tls_object_and_wss_echoes_for_python_websockets() {
    if !have("curl") || !have("python3") || !support::have_python_module("websockets") {
        return;
    }
    let dir = support::temp_dir("tls-https");
    let cert = dir.join("cert.pem");
    let daemon = start(
        &dir,
        "https://127.0.0.1:0",
        &["--tls-cert-out", path(&cert), "--reactors", "2"],
    );
    let addr = daemon.addr("https://");
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert", path(&cert)])
            .args(args)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = format!("https://localhost:{}/over/tls?x=1", addr.port());
    let body = curl(&["--data-binary", "sealed", &url]);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["method"], "POST", "{json}");
    assert_eq!(json["path"], "/over/tls", "{json}");
    assert_eq!(json["body"], "sealed", "{json}");
    let tls = &json["tls"];
    assert_eq!(tls["version"], "TLSv1.3", "{json}");
    assert_eq!(tls["sni"], "localhost", "{json}");
    assert_eq!(tls["alpn"], "http/1.1", "{json}");
    assert!(
        tls["cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{json}"
    );
    // TLS 1.2 too, and an IP address sends no SNI.
    let url12 = format!("https://127.0.0.1:{}/", addr.port());
    let json: serde_json::Value =
        serde_json::from_str(&curl(&["--tlsv1.2", "--tls-max", "1.2", &url12])).expect("JSON");
    assert_eq!(json["tls"]["version"], "TLSv1.2", "{json}");
    assert_eq!(json["tls"]["sni"], serde_json::Value::Null, "{json}");
    // The controls work as on http://.
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{url12}?echo_code=503"),
    ]);
    assert_eq!(code, "503");

    const SCRIPT: &str = r#"
import asyncio, ssl, sys, websockets
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async with websockets.connect(sys.argv[1], ssl=ctx) as ws:
        await ws.send("text over wss")
        assert await ws.recv() == "text over wss"
        await ws.send(bytes(range(256)) * 100)
        assert await ws.recv() == bytes(range(256)) * 100
    # A message over --max-buffer (64 KiB) is refused with close 1009, over
    # TLS as over plain TCP.
    async with websockets.connect(sys.argv[1], ssl=ctx) as ws:
        try:
            await ws.send(bytes(range(256)) * 300)
            await ws.recv()
            print("no close")
            return
        except websockets.exceptions.ConnectionClosedError as closed:
            assert closed.rcvd.code == 1009, closed
    print("ok")
asyncio.run(main())
"#;
    let wss = format!("wss://localhost:{}/chat", addr.port());
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &wss, path(&cert)])
        .output()
        .expect("python3");
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // With two reactors the other one's figures are published to the
    // status a little later: wait for them.
    let mut status = serde_json::Value::Null;
    support::wait_until("status counts the handshakes of both reactors", || {
        status = status_json(&admin(&dir));
        status["tls_handshakes"].as_u64().unwrap_or(0) >= 5
    });
    assert_eq!(status["tls_errors"], 0, "{status}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
#[ignore = "needs curl: scripts/test-all"]
fn https_takes_a_proxy_header_before_the_client_hello() {
    if !have("curl") {
        return;
    }
    let dir = support::temp_dir("tls-https-proxy");
    let cert = dir.join("cert.pem");
    let daemon = start(
        &dir,
        "https://127.0.0.1:0?proxy",
        &["--tls-cert-out", path(&cert)],
    );
    let addr = inet_of(daemon.endpoint("https://"));
    // curl --haproxy-protocol sends a PROXY v1 line, then its ClientHello.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--haproxy-protocol",
            "--cacert",
            path(&cert),
        ])
        .arg(format!("https://localhost:{}/", addr.port()))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["tls"]["alpn"], "http/1.1", "{json}");
    let status = status_json(&admin(&dir));
    assert_eq!(status["proxy_errors"], 0, "{status}");
    assert_eq!(status["tls_errors"], 0, "{status}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
#[ignore = "needs python3: scripts/test-all"]
fn a_clean_tls_close_is_answered_with_close_notify() {
    if !have("python3") {
        return;
    }
    const SCRIPT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
raw = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"bye")
assert s.recv(3) == b"bye"
# Our close_notify; unwrap() waits for the server's (an EOF without one
# raises SSLEOFError).
s.unwrap()
print("clean")
"#;
    let dir = support::temp_dir("tls-close-notify");
    let (daemon, addr, cert) = self_signed(&dir);
    let out = Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            path(&cert),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success() && out.stdout == b"clean\n",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
}

#[test]
fn trace_shows_each_handshake_with_version_cipher_group_and_time() {
    let dir = support::temp_dir("tls-trace");
    let cert = dir.join("cert.pem");
    let daemon = Daemon::start_with(
        &[
            "tls://127.0.0.1:0",
            "--trace",
            "--tls-cert-out",
            path(&cert),
        ],
        |cmd| {
            // --trace alone decides what is traced (no RUST_LOG from the harness).
            cmd.env_remove("RUST_LOG");
        },
    );
    let endpoint = daemon.endpoint("tls://").to_string();
    let (status, _, err) = support::run(&["client", &endpoint, "--tls-ca", path(&cert), "-q", "x"]);
    assert!(status.success(), "{err}");
    let (exit, stderr) = daemon.stop();
    assert!(exit.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.contains("TLS established"))
        .unwrap_or_else(|| panic!("no handshake line under --trace:\n{stderr}"));
    for part in ["TLSv1.3", "TLS13_", "X25519", "handshake", "ms"] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    // The handshake's steps are traced as the reactor drives them. Whether
    // a read finds the socket empty ("want read") depends on timing: a
    // loaded machine can deliver the client's whole flight, data and FIN
    // before the loop reads again, so only the record steps are certain.
    assert!(
        stderr.contains("tls: ") && stderr.contains("record bytes in"),
        "no handshake step traced:\n{stderr}"
    );
}
