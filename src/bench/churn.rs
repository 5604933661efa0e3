//! `--churn M`: before a run that closes and reopens connections, check
//! what would cap it, and refuse (exit 2) a run that would exhaust it,
//! rather than measure the generator's own `EADDRNOTAVAIL`s.
//!
//! The generator closes first (it decides when M echoes are done), so its
//! side of every closed TCP connection waits in TIME_WAIT for 60 s
//! (Linux's fixed `TCP_TIMEWAIT_LEN`), holding an ephemeral port towards
//! that server, unless `net.ipv4.tcp_tw_reuse` lets a new connection take
//! it over (1: always; 2, the default: on loopback only).

use std::time::Duration;

/// How long Linux keeps a closed connection in TIME_WAIT.
pub const TIME_WAIT: Duration = Duration::from_secs(60);

/// Descriptors the generator needs beside its connections (poller, stdio,
/// log file, ...).
const SPARE_FDS: u64 = 32;

/// The machine's limits that cap connection churn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `net.ipv4.ip_local_port_range`.
    pub ports: (u32, u32),
    /// `net.ipv4.tcp_tw_reuse` (0, 1 or 2).
    pub tw_reuse: u8,
    /// `RLIMIT_NOFILE`: soft and hard.
    pub nofile: (u64, u64),
}

impl Limits {
    /// Reads this machine's limits (Linux defaults where /proc is silent).
    pub fn read() -> Limits {
        let proc = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let range: Vec<u32> = proc("/proc/sys/net/ipv4/ip_local_port_range")
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let ports = match range[..] {
            [lo, hi] if lo <= hi => (lo, hi),
            _ => (32768, 60999),
        };
        let tw_reuse = proc("/proc/sys/net/ipv4/tcp_tw_reuse")
            .trim()
            .parse()
            .unwrap_or(2);
        Limits {
            ports,
            tw_reuse,
            nofile: crate::sys::rlimit::nofile().unwrap_or((1024, 1024)),
        }
    }

    /// Ephemeral ports towards one server address.
    pub fn port_count(&self) -> u64 {
        u64::from(self.ports.1 - self.ports.0) + 1
    }
}

/// Raises the soft descriptor limit to the hard one, as servers and load
/// generators commonly do; returns the limits now in force.
pub fn raise_nofile() -> (u64, u64) {
    match crate::sys::rlimit::raise_nofile() {
        Ok((_, hard)) => (hard, hard),
        Err(_) => crate::sys::rlimit::nofile().unwrap_or((1024, 1024)),
    }
}

/// The churn run being planned.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Connections open at once.
    pub connections: u64,
    /// Connects per second, when the run has a rate (`--rate R --churn M`
    /// makes R/M); a closed loop's rate is not known beforehand.
    pub connects_per_sec: Option<f64>,
    /// Load time in all (warm-up and window), when it is a duration.
    pub duration: Option<Duration>,
    /// TCP (ports and TIME_WAIT matter) rather than Unix.
    pub tcp: bool,
    /// The server is on a loopback address.
    pub loopback: bool,
}

/// Every run, churn or not: one descriptor per connection (or datagram
/// socket) must fit under the soft `RLIMIT_NOFILE`, or the run would only
/// measure the generator's own `EMFILE`s (as connect failures, exit 3).
pub fn descriptors(connections: u64, nofile: (u64, u64)) -> Result<(), String> {
    let fds = connections + SPARE_FDS;
    if fds > nofile.0 {
        return Err(format!(
            "{connections} connections need about {fds} descriptors, but RLIMIT_NOFILE \
             is {} (hard {}): use fewer connections, or raise the limit (ulimit -n)",
            nofile.0, nofile.1
        ));
    }
    Ok(())
}

/// What the check found: `Ok` with notes to show, or why the run is
/// refused.
pub fn check(plan: &Plan, limits: &Limits) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    descriptors(plan.connections, limits.nofile)?;
    if !plan.tcp {
        return Ok(notes);
    }
    let ports = limits.port_count();
    let (lo, hi) = limits.ports;
    if plan.connections > ports {
        return Err(format!(
            "{} connections to one server need as many ephemeral ports, but \
             net.ipv4.ip_local_port_range ({lo}-{hi}) has {ports}",
            plan.connections
        ));
    }
    let reuse = limits.tw_reuse == 1 || (limits.tw_reuse == 2 && plan.loopback);
    let Some(rate) = plan.connects_per_sec else {
        notes.push(format!(
            "closed loop: the connect rate is not known beforehand; each closed \
             connection holds a port in TIME_WAIT for 60 s{}",
            if reuse {
                " (reused at once here: net.ipv4.tcp_tw_reuse)"
            } else {
                ", and connects that find no free port are counted as failures"
            }
        ));
        return Ok(notes);
    };
    let held = plan
        .duration
        .map_or(TIME_WAIT, |d| d.min(TIME_WAIT))
        .as_secs_f64()
        * rate;
    let needed = held.ceil() as u64 + plan.connections;
    if needed > ports {
        if reuse {
            notes.push(format!(
                "{rate:.0} connects/s keep about {} ports in TIME_WAIT, more than the \
                 {ports} ephemeral ports; net.ipv4.tcp_tw_reuse={} lets new connections \
                 reuse them",
                held.ceil() as u64,
                limits.tw_reuse
            ));
        } else {
            return Err(format!(
                "--churn at {rate:.0} connects/s would hold about {needed} ephemeral ports \
                 (TIME_WAIT lasts 60 s on the closing side, the generator), but \
                 net.ipv4.ip_local_port_range ({lo}-{hi}) has {ports}: lower --rate, \
                 raise --churn, widen the port range, or set net.ipv4.tcp_tw_reuse=1"
            ));
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(tw_reuse: u8) -> Limits {
        Limits {
            ports: (32768, 60999),
            tw_reuse,
            nofile: (1024, 4096),
        }
    }

    fn plan(rate: Option<f64>, loopback: bool) -> Plan {
        Plan {
            connections: 100,
            connects_per_sec: rate,
            duration: Some(Duration::from_secs(120)),
            tcp: true,
            loopback,
        }
    }

    #[test]
    fn time_wait_build_up_is_refused_without_reuse() {
        // 1000/s × 60 s = 60,000 ports > 28,232.
        let err = check(&plan(Some(1000.0), false), &limits(0)).expect_err("refused");
        assert!(
            err.contains("TIME_WAIT") && err.contains("32768-60999"),
            "{err}"
        );
        // tw_reuse=2 covers loopback only.
        assert!(check(&plan(Some(1000.0), false), &limits(2)).is_err());
        let notes = check(&plan(Some(1000.0), true), &limits(2)).expect("loopback reuses");
        assert!(notes[0].contains("tcp_tw_reuse"), "{notes:?}");
        // 400/s × 60 s = 24,000 + 100 fits.
        assert!(check(&plan(Some(400.0), false), &limits(0)).is_ok());
        // A short run holds only its own duration's worth.
        let mut short = plan(Some(1000.0), false);
        short.duration = Some(Duration::from_secs(10));
        assert!(check(&short, &limits(0)).is_ok());
    }

    #[test]
    fn every_run_needs_a_descriptor_per_connection() {
        assert!(descriptors(900, (1024, 1024)).is_ok());
        let err = descriptors(1000, (1024, 4096)).expect_err("1032 > 1024");
        assert!(err.contains("RLIMIT_NOFILE is 1024 (hard 4096)"), "{err}");
    }

    #[test]
    fn descriptors_and_ports_cap_the_connections() {
        let mut p = plan(None, true);
        p.connections = 2000;
        let err = check(&p, &limits(2)).expect_err("nofile");
        assert!(err.contains("RLIMIT_NOFILE is 1024"), "{err}");
        let mut big = limits(2);
        big.nofile = (1 << 20, 1 << 20);
        p.connections = 30_000;
        let err = check(&p, &big).expect_err("ports");
        assert!(err.contains("ephemeral ports"), "{err}");
        p.tcp = false;
        assert!(check(&p, &big).is_ok(), "Unix sockets use no ports");
    }

    #[test]
    fn this_machine_reads() {
        let l = Limits::read();
        assert!(l.port_count() > 0);
        assert!(l.nofile.0 > 0);
    }
}
