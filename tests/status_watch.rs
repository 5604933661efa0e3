//! `echoplex status --watch`: redraws until Ctrl-C, with rates per second
//! beside the counters, plain blocks when stdout is not a terminal.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Instant;

use support::{bin, temp_dir, Daemon, WAIT};

/// One view: the lines of a block up to its blank line.
fn next_block(lines: &Receiver<String>, child: &mut Child) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut block: Vec<String> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line)
                if line.is_empty()
                    && block.len() > 1
                    && block.iter().any(|l| l.starts_with("TOKEN")) =>
            {
                return block;
            }
            Ok(line) => block.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no complete view within {WAIT:?}; got {block:?}");
            }
        }
    }
}

/// Starts `status --watch 0.2` on `admin`, its stdout lines on a channel.
fn watch_lines(admin: &str) -> (Child, Receiver<String>) {
    let mut watch = Command::new(bin())
        .args(["status", "--admin", admin, "--watch", "0.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn status --watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (watch, lines)
}

/// Sends SIGINT (a Ctrl-C) and waits, bounded, for the exit.
fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    let _ = support::kill(child.id() as i32, libc::SIGINT);
    support::wait_bounded(child, WAIT, "status --watch, after SIGINT,")
}

/// The total and the rate column of counter `name` in a view.
fn counter(block: &[String], name: &str) -> (u64, String) {
    for line in block {
        let words: Vec<&str> = line.split_whitespace().collect();
        for cell in words.chunks(3) {
            if let [n, total, rate] = cell {
                if *n == name {
                    return (total.parse().expect("a total"), (*rate).to_owned());
                }
            }
        }
    }
    panic!("no counter {name} in {block:#?}");
}

#[test]
fn watch_redraws_with_rates_and_stops_on_sigint() {
    let dir = temp_dir("watch");
    let admin = dir.join("admin.sock");
    let admin = admin.to_str().expect("UTF-8 path");
    let daemon = Daemon::start(&["--admin", admin, "tcp://127.0.0.1:0"]);
    let addr = daemon.addr("tcp://");

    let (mut watch, lines) = watch_lines(admin);

    let first = next_block(&lines, &mut watch);
    assert!(
        first[0].starts_with("echoplex status --watch 0.2s: "),
        "{first:#?}"
    );
    assert!(
        first.iter().any(|l| l.contains("tcp-listener")),
        "{first:#?}"
    );
    let (accepted_before, rate) = counter(&first, "accepted");
    assert_eq!(rate, "-", "no rate before a second answer");

    // Three echoed connections; a later view must count them, and the view
    // where the total first grows shows a rate above zero.
    for _ in 0..3 {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(WAIT)).expect("timeout");
        conn.write_all(b"abc").expect("send");
        let mut echo = [0u8; 3];
        conn.read_exact(&mut echo).expect("echo");
        assert_eq!(&echo, b"abc");
    }
    let mut views = 1;
    let grown = loop {
        let block = next_block(&lines, &mut watch);
        views += 1;
        let (total, rate) = counter(&block, "accepted");
        if total >= accepted_before + 3 {
            break rate;
        }
        assert!(views < 100, "the connections never showed up");
    };
    let per_sec: f64 = grown.trim_end_matches("/s").parse().expect("a rate");
    assert!(per_sec > 0.0, "accepted grew but the rate is {grown}");
    assert!(views >= 2);

    let status = interrupt(&mut watch);
    let mut stderr = String::new();
    let _ = watch
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(
        status.code(),
        Some(130),
        "exit code of an interrupted watch; stderr: {stderr}"
    );
    assert!(stderr.is_empty(), "{stderr}");
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[test]
fn watch_rejects_a_zero_interval() {
    let out = Command::new(bin())
        .args(["status", "--watch", "0"])
        .output()
        .expect("run status");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 0"));
}

#[test]
fn on_a_terminal_each_view_is_redrawn_in_place() {
    use std::os::fd::{FromRawFd, OwnedFd};

    let dir = temp_dir("watch-tty");
    let admin = dir.join("admin.sock");
    let admin = admin.to_str().expect("UTF-8 path");
    let daemon = Daemon::start(&["--admin", admin, "tcp://127.0.0.1:0"]);

    // A pseudo-terminal of 24 rows as stdout.
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers; no name buffer; a valid winsize.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two open descriptors that we now own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut watch = Command::new(bin())
        .args(["status", "--admin", admin, "--watch", "0.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn status --watch");
    let (tx, chunks) = mpsc::channel();
    let mut reader = std::fs::File::from(master);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once the child closed its side: the end.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let clear = "\x1b[H\x1b[2J";
    let deadline = Instant::now() + WAIT;
    let mut screen = String::new();
    while screen.matches(clear).count() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match chunks.recv_timeout(left) {
            Ok(bytes) => screen.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => {
                let _ = watch.kill();
                panic!("fewer than three redraws within {WAIT:?}: {screen:?}");
            }
        }
    }
    // Every view starts by clearing the screen and fits on it.
    assert!(screen.starts_with(clear), "{screen:?}");
    for view in screen.split(clear).skip(1).take(2) {
        assert!(
            view.starts_with("echoplex status --watch 0.2s: "),
            "{view:?}"
        );
        assert!(view.lines().count() <= 24, "{view:?}");
        assert!(view.contains("accepted"), "{view:?}");
    }
    let status = interrupt(&mut watch);
    assert_eq!(status.code(), Some(130));
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[test]
fn several_reactors_get_a_column_each() {
    let dir = temp_dir("watch-reactors");
    let admin = dir.join("admin.sock");
    let admin = admin.to_str().expect("UTF-8 path");
    let daemon = Daemon::start(&["--reactors", "2", "--admin", admin, "tcp://127.0.0.1:0"]);
    let (mut watch, lines) = watch_lines(admin);
    let view = next_block(&lines, &mut watch);
    let header = view
        .iter()
        .find(|l| l.contains("PER SEC"))
        .unwrap_or_else(|| panic!("no per-reactor header in {view:#?}"));
    assert!(
        header.trim_end().ends_with("REACTOR 0   REACTOR 1"),
        "{header}"
    );
    assert!(view.iter().any(|l| l.starts_with("accepted")), "{view:#?}");
    assert_eq!(interrupt(&mut watch).code(), Some(130));
    let (status, _) = daemon.stop();
    assert!(status.success());
}
