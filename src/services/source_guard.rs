//! The anti-reflection guard of the UDP and multicast services: no reply
//! to a looping source port, and a bounded token bucket per source
//! address, so a spoofed victim cannot be flooded through us.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::sys::mmsg;

/// Well-known UDP services that answer any datagram: replying to one of
/// them starts an endless ping-pong (the Fraggle attack), so datagrams from
/// these source ports are dropped, as BSD inetd does: 0 (invalid), echo,
/// discard, daytime, qotd, chargen, time.
const LOOPING_PORTS: [u16; 7] = [0, 7, 9, 13, 17, 19, 37];

/// Keeps a UDP service from becoming a reflector: drops datagrams from
/// looping source ports, and limits replies per source address with a
/// token bucket (`rate` per second, bursts up to `rate`).
///
/// Loopback sources are not rate-limited unless asked: the kernel drops
/// 127/8 and ::1 sources arriving from the network, so they cannot be
/// spoofed from outside, and local load tests must not be throttled.
///
/// The buckets live in a fixed table of [`MAX_BUCKETS`] entries, hashed
/// into sets of [`WAYS`] (with a per-process random key, so nobody can aim
/// many sources at one set). A datagram looks at one set only: a new source
/// takes an empty way or evicts the way used least recently. So the work per
/// datagram is bounded by `WAYS` whatever arrives, and the memory by the
/// table, allocated on the first datagram that needs a bucket. A newcomer
/// inherits the evicted bucket's tokens (refilled for the time it sat
/// idle): sources that crowd one set share its budget, so no bucket ever
/// pays out more than `rate` per second and a spoofed victim's address can
/// draw on at most the `WAYS` buckets of its own set. A source idle for a
/// second finds a full bucket again, as it would in a table of its own.
#[derive(Debug)]
pub struct SourceGuard {
    rate: u32,
    limit_loopback: bool,
    /// `MAX_BUCKETS` entries once a bucket was needed; empty before.
    table: Vec<Bucket>,
    hasher: std::collections::hash_map::RandomState,
    /// Time zero of the `Bucket::used` stamps.
    epoch: Instant,
    /// Bucket entries compared so far: the work the table does (tests).
    probes: u64,
}

/// One source's bucket, 32 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The source as an IPv6 address (IPv4 mapped).
    source: [u8; 16],
    /// Nanoseconds since `epoch` when last refilled, plus one; 0 = empty.
    used: u64,
    tokens: f64,
}

/// Source addresses tracked at most; an attacker spraying spoofed sources
/// cannot grow the table past this (2 MiB).
pub const MAX_BUCKETS: usize = 65_536;

/// Entries per set: a source looks at this many buckets, never more.
pub const WAYS: usize = 4;

/// The guard's verdict on one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Reply,
    /// From a looping port: drop.
    LoopingPort,
    /// Over the per-source rate: drop.
    RateLimited,
}

impl SourceGuard {
    /// A guard allowing `rate` replies per second per source (0 =
    /// unlimited), loopback sources included only if `limit_loopback`.
    pub fn new(rate: u32, limit_loopback: bool) -> Self {
        SourceGuard {
            rate,
            limit_loopback,
            table: Vec::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
            probes: 0,
        }
    }

    /// True when a source needs no bucket: no rate, or a loopback source
    /// and those exempt.
    fn exempt(&self, loopback: bool) -> bool {
        self.rate == 0 || (!self.limit_loopback && loopback)
    }

    /// The verdict on a datagram from `source` when it needs no bucket (the
    /// common case: no rate, or loopback), without building its address;
    /// None when it needs [`admit`](Self::admit).
    #[inline]
    pub fn quick(&self, source: mmsg::Source) -> Option<Verdict> {
        if LOOPING_PORTS.contains(&source.port) {
            Some(Verdict::LoopingPort)
        } else if self.exempt(source.loopback) {
            Some(Verdict::Reply)
        } else {
            None
        }
    }

    /// Judges a datagram from `from` arriving at `now`.
    #[inline]
    pub fn admit(&mut self, from: SocketAddr, now: Instant) -> Verdict {
        if LOOPING_PORTS.contains(&from.port()) {
            return Verdict::LoopingPort;
        }
        if self.exempt(from.ip().is_loopback()) {
            return Verdict::Reply;
        }
        self.take_token(from.ip(), now)
    }

    fn take_token(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.table.is_empty() {
            self.table = vec![Bucket::default(); MAX_BUCKETS];
        }
        let source = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let stamp = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            + 1;
        let set = (self.hasher.hash_one(source) as usize % (MAX_BUCKETS / WAYS)) * WAYS;
        let ways = &mut self.table[set..set + WAYS];
        let capacity = f64::from(self.rate);
        // The source's own way if it has one, else an empty one, else the
        // one used least recently.
        let mut pick = 0;
        let mut found = false;
        for (i, way) in ways.iter().enumerate() {
            self.probes += 1;
            if way.used != 0 && way.source == source {
                pick = i;
                found = true;
                break;
            }
            if way.used < ways[pick].used {
                pick = i;
            }
        }
        let bucket = &mut ways[pick];
        if !found {
            // The newcomer takes over the evicted bucket's tokens (a full
            // bucket if it was empty or has refilled): sources that keep
            // evicting each other from a crowded set share one budget
            // instead of each getting a fresh burst per datagram.
            let tokens = if bucket.used == 0 {
                capacity
            } else {
                let idle = stamp.saturating_sub(bucket.used) as f64 * 1e-9;
                (bucket.tokens + idle * capacity).min(capacity)
            };
            *bucket = Bucket {
                source,
                used: stamp,
                tokens,
            };
        }
        let earned = stamp.saturating_sub(bucket.used) as f64 * 1e-9 * capacity;
        bucket.tokens = (bucket.tokens + earned).min(capacity);
        bucket.used = stamp.max(bucket.used);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Reply
        } else {
            Verdict::RateLimited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn from(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn drops_looping_source_ports() {
        let mut guard = SourceGuard::new(0, true);
        let now = Instant::now();
        for port in LOOPING_PORTS {
            assert_eq!(guard.admit(from(port), now), Verdict::LoopingPort);
        }
        assert_eq!(guard.admit(from(40000), now), Verdict::Reply);
    }

    #[test]
    fn token_bucket_limits_and_refills() {
        let mut guard = SourceGuard::new(10, true);
        let now = Instant::now();
        let replied = (0..25)
            .filter(|_| guard.admit(from(40000), now) == Verdict::Reply)
            .count();
        assert_eq!(replied, 10);
        let later = now + Duration::from_millis(500);
        let replied = (0..25)
            .filter(|_| guard.admit(from(40000), later) == Verdict::Reply)
            .count();
        assert_eq!(replied, 5);
        // Another source has its own bucket.
        let other = SocketAddr::from(([127, 0, 0, 2], 40000));
        assert_eq!(guard.admit(other, later), Verdict::Reply);
    }

    /// Issue 10 B4: once the table was full, every datagram from a new
    /// source scanned all 65,536 buckets. Now each datagram compares at
    /// most `WAYS` buckets, whatever the number of sources, the table never
    /// grows past `MAX_BUCKETS`, and a spray cannot buy replies: with no
    /// time to refill, no bucket pays out twice.
    #[test]
    fn a_spray_of_sources_costs_a_bounded_look_up_each() {
        let mut guard = SourceGuard::new(1, true);
        let now = Instant::now();
        let sources = 4 * MAX_BUCKETS as u32;
        let mut replied = 0;
        for n in 0..sources {
            let before = guard.probes;
            let source = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000));
            if guard.admit(source, now) == Verdict::Reply {
                replied += 1;
            }
            assert!(
                guard.probes - before <= WAYS as u64,
                "source {n} compared {} buckets",
                guard.probes - before
            );
        }
        assert_eq!(guard.table.len(), MAX_BUCKETS);
        assert!(
            replied <= MAX_BUCKETS,
            "{replied} replies from one token per bucket"
        );
        assert!(
            replied > MAX_BUCKETS / 2,
            "only {replied} sources were answered"
        );
    }

    /// Two sources hashed into the same full set evict each other on
    /// every datagram; they share the set's budget, not a fresh burst each.
    #[test]
    fn sources_that_evict_each_other_share_one_budget() {
        let mut guard = SourceGuard::new(1, true);
        let now = Instant::now();
        // Fill one set, then find more sources that land in it.
        let first = SocketAddr::from(([192, 0, 2, 1], 40000));
        assert_eq!(guard.admit(first, now), Verdict::Reply);
        let set_of = |guard: &SourceGuard, addr: SocketAddr| {
            let ip = match addr.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            guard.hasher.hash_one(ip) as usize % (MAX_BUCKETS / WAYS)
        };
        let target = set_of(&guard, first);
        let crowd: Vec<SocketAddr> = (0..u32::MAX)
            .map(|n| SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000)))
            .filter(|&addr| set_of(&guard, addr) == target)
            .take(2 * WAYS)
            .collect();
        let replied = (0..10)
            .flat_map(|_| crowd.iter())
            .filter(|&&addr| guard.admit(addr, now) == Verdict::Reply)
            .count();
        // WAYS buckets, one token each, the first already spent.
        assert!(
            replied < WAYS,
            "{replied} replies from a set of {WAYS} buckets"
        );
    }

    /// A source that keeps sending keeps its bucket through a spray of
    /// one-off sources hashed into its set (LRU within the set), so its
    /// limit still holds.
    #[test]
    fn a_busy_source_keeps_its_bucket_through_a_spray() {
        let mut guard = SourceGuard::new(2, true);
        let start = Instant::now();
        let busy = SocketAddr::from(([192, 0, 2, 1], 40000));
        assert_eq!(guard.admit(busy, start), Verdict::Reply);
        assert_eq!(guard.admit(busy, start), Verdict::Reply);
        assert_eq!(guard.admit(busy, start), Verdict::RateLimited);
        for n in 0..(2 * MAX_BUCKETS as u32) {
            // The busy source sends every few datagrams of the spray, and
            // its bucket refills by less than one token over the spray.
            let t = start + Duration::from_nanos(u64::from(n));
            let source = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000));
            let _ = guard.admit(source, t);
            if n % (WAYS as u32 - 1) == 0 {
                assert_eq!(guard.admit(busy, t), Verdict::RateLimited, "at {n}");
            }
        }
    }

    #[test]
    fn loopback_is_exempt_from_the_rate_unless_asked() {
        let now = Instant::now();
        let mut guard = SourceGuard::new(1, false);
        assert!((0..10).all(|_| guard.admit(from(40000), now) == Verdict::Reply));
        assert_eq!(guard.admit(from(7), now), Verdict::LoopingPort);
        let remote = SocketAddr::from(([192, 0, 2, 1], 40000));
        assert_eq!(guard.admit(remote, now), Verdict::Reply);
        assert_eq!(guard.admit(remote, now), Verdict::RateLimited);
    }
}
