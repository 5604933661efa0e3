//! The sampler of `reactor::sample`: once a second it walks a reactor's
//! connections and counters (through its `Context`) and leaves a
//! [`Sampled`] on the reactor's `Stats`. Kept apart from the figures it
//! makes, so `stats` can carry them without naming the handler layer.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::handler::{Context, HandlerInfo};
use super::sample::*;
use super::stats::Stats;

/// Longest peer text kept for the list (a Unix path, a PROXY address).
const PEER_MAX: usize = 160;

/// The status word a connection is counted by: its state, or
/// `tls-handshake` while its TLS handshake runs (the transport says so in
/// the row's detail).
fn word(info: &HandlerInfo) -> &'static str {
    match info.detail.as_deref() {
        Some(detail) if detail.ends_with("handshaking") && info.state != "closing" => {
            "tls-handshake"
        }
        _ => info.state,
    }
}

/// The counters a rate is computed from.
#[derive(Clone, Copy, Debug)]
struct Counters {
    at: Instant,
    turns: u64,
    events: u64,
    bytes_in: u64,
    bytes_out: u64,
    datagrams_in: u64,
    datagrams_out: u64,
}

impl Counters {
    fn of(stats: &Stats, at: Instant) -> Counters {
        Counters {
            at,
            turns: stats.loop_iterations,
            events: stats.events,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            datagrams_in: stats.datagrams_in,
            datagrams_out: stats.datagrams_out,
        }
    }
}

/// Takes a reactor's samples (kept by its publisher).
#[derive(Debug, Default)]
pub struct Sampler {
    last: Option<Counters>,
    seq: u64,
}

impl Sampler {
    /// True when a sample is due at `now` (the publisher's timer is finer).
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|last| {
            now.saturating_duration_since(last.at) + Duration::from_millis(50) >= EVERY
        })
    }

    /// Takes a sample: rates since the last one, a walk over the
    /// connections, the last turns. Stored in `cx.stats.sampled`.
    pub fn sample(&mut self, cx: &mut Context) {
        let now = cx.now;
        let counters = Counters::of(cx.stats, now);
        let previous = self.last.replace(counters);
        let point = match previous {
            Some(before) => {
                let seconds = now.saturating_duration_since(before.at).as_secs_f64();
                let rate = |after: u64, before: u64| -> u64 {
                    if seconds <= 0.0 {
                        0
                    } else {
                        (after.saturating_sub(before) as f64 / seconds).round() as u64
                    }
                };
                Point {
                    uptime_s: cx.stats.uptime_s(now),
                    turns_per_s: rate(counters.turns, before.turns),
                    events_per_s: rate(counters.events, before.events),
                    bytes_in_per_s: rate(counters.bytes_in, before.bytes_in),
                    bytes_out_per_s: rate(counters.bytes_out, before.bytes_out),
                    datagrams_in_per_s: rate(counters.datagrams_in, before.datagrams_in),
                    datagrams_out_per_s: rate(counters.datagrams_out, before.datagrams_out),
                    connections: 0,
                }
            }
            None => Point {
                uptime_s: cx.stats.uptime_s(now),
                ..Point::default()
            },
        };
        let draining = cx.is_draining();
        let mut by_state = [0u64; STATES.len()];
        let mut by_kind: Vec<(&'static str, u64)> = Vec::new();
        let mut rows: Vec<(usize, HandlerInfo)> = cx.describe_connections();
        for (_, info) in &rows {
            by_state[state_of(word(info), draining)] += 1;
            match by_kind.iter_mut().find(|(kind, _)| *kind == info.kind) {
                Some((_, count)) => *count += 1,
                None => by_kind.push((info.kind, 1)),
            }
        }
        let connections_open = rows.len() as u64;
        // Most recently active first: the least idle.
        let listed = rows.len().min(CONNECTIONS_LISTED);
        if listed > 0 && listed < rows.len() {
            rows.select_nth_unstable_by_key(listed - 1, |(_, info)| info.idle.unwrap_or_default());
        }
        rows.truncate(listed);
        rows.sort_by_key(|(key, info)| (info.idle.unwrap_or_default(), *key));
        let connections = rows
            .into_iter()
            .map(|(token, info)| ConnRow {
                token,
                kind: info.kind,
                state: STATES[state_of(word(&info), draining)],
                peer: clip(info.peer),
                idle_ms: info.idle.map_or(0, |d| d.as_millis() as u64),
                bytes_in: info.bytes_in,
                bytes_out: info.bytes_out,
            })
            .collect();
        let point = Point {
            connections: connections_open,
            ..point
        };
        let mut history = cx.stats.sampled.history.clone();
        // Seconds the loop slept through (`Context::sleep_until_work`):
        // nothing happened in them.
        if let (Some(before), Some(last)) = (previous, history.back().copied()) {
            let slept = now.saturating_duration_since(before.at).as_secs_f64() - 1.0;
            let missing = (slept.floor().max(0.0) as usize).min(HISTORY);
            for second in 0..missing {
                history.push_back(Point {
                    uptime_s: last.uptime_s + second as f64 + 1.0,
                    connections: last.connections,
                    ..Point::default()
                });
            }
        }
        history.push_back(point);
        while history.len() > HISTORY {
            history.pop_front();
        }
        self.seq += 1;
        cx.stats.sampled = std::sync::Arc::new(Sampled {
            seq: self.seq,
            now: point,
            by_state,
            by_kind,
            history,
            turns: cx.recent_turns(),
            connections,
            view: OnceLock::new(),
        });
    }
}

/// A peer text cut to [`PEER_MAX`] bytes (at a character boundary).
fn clip(mut peer: String) -> String {
    if peer.len() > PEER_MAX {
        let mut end = PEER_MAX;
        while !peer.is_char_boundary(end) {
            end -= 1;
        }
        peer.truncate(end);
        peer.push('…');
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshaking_connection_is_counted_by_its_tls_word() {
        let mut info = HandlerInfo {
            state: "open",
            detail: Some("TLS handshaking".into()),
            ..HandlerInfo::default()
        };
        assert_eq!(word(&info), "tls-handshake");
        info.detail = Some("TLSv1_3 TLS13_AES_128_GCM_SHA256".into());
        assert_eq!(word(&info), "open");
    }

    #[test]
    fn long_peers_are_clipped() {
        let peer = clip("é".repeat(200));
        assert!(peer.len() <= PEER_MAX + '…'.len_utf8());
        assert!(peer.ends_with('…'));
        assert_eq!(clip("short".into()), "short");
    }
}
