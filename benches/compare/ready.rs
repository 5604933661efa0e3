//! Shared by the compare and scaling benches: wait for a server that
//! prints echoplex's contract lines (`listening ENDPOINT`..., `ready`).

use echoplex::endpoint::Endpoint;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Reads `child`'s stdout until `ready` (10 s at most) and returns the
/// endpoints of its `listening` lines; kills it and panics, naming `what`,
/// if it never gets there. A thread keeps draining stdout afterwards, so
/// the server never blocks on a full pipe.
pub fn wait_ready(child: &mut Child, what: &str) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut endpoints = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line == "ready" => return endpoints,
            Ok(line) => endpoints.extend(line.strip_prefix("listening ").map(String::from)),
            Err(_) => {
                let _ = child.kill();
                panic!("{what} never became ready");
            }
        }
    }
}

/// The endpoint among `endpoints` (from [`wait_ready`]) whose scheme is
/// `scheme`; panics naming `what` if the server has none.
pub fn endpoint_of(endpoints: &[String], scheme: &str, what: &str) -> Endpoint {
    let prefix = format!("{scheme}:");
    let text = endpoints
        .iter()
        .find(|e| e.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{what} has no {scheme} endpoint"));
    text.parse().expect("endpoint")
}
