//! The daemon's counters, shown by `echoplex status` and the shutdown log.

use std::time::Instant;

/// Counters kept by the loop and its handlers.
#[derive(Clone, Debug)]
pub struct Stats {
    /// When the loop started.
    pub started: Instant,
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Connections closed at once because `--max-connections` was reached.
    pub rejected_max_connections: u64,
    /// Connections closed at once because the process was out of descriptors.
    pub rejected_no_fds: u64,
    /// Connections closed for idleness.
    pub timeouts: u64,
    /// Connections closed for a missing, malformed or late PROXY header.
    pub proxy_errors: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams dropped: send queue full, or a sender we cannot answer.
    pub dropped_datagrams: u64,
    /// Datagrams dropped because their source port would make a loop.
    pub filtered_datagrams: u64,
    /// Datagrams dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Bytes received on every socket.
    pub bytes_in: u64,
    /// Bytes sent on every socket.
    pub bytes_out: u64,
    /// Turns of the loop.
    pub loop_iterations: u64,
    /// Readiness events handled.
    pub events: u64,
}

impl Stats {
    /// Zeroed counters, starting now.
    pub fn new(started: Instant) -> Self {
        Stats {
            started,
            connections: 0,
            accepted: 0,
            closed: 0,
            rejected_max_connections: 0,
            rejected_no_fds: 0,
            timeouts: 0,
            proxy_errors: 0,
            datagrams_in: 0,
            datagrams_out: 0,
            dropped_datagrams: 0,
            filtered_datagrams: 0,
            rate_limited: 0,
            bytes_in: 0,
            bytes_out: 0,
            loop_iterations: 0,
            events: 0,
        }
    }
}
