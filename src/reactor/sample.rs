//! Once a second, a reactor's derived figures: rates over the last
//! second, its connections by state and by kind, a minute of history (a
//! ring of [`HISTORY`] samples, so a page opened now already has it), the
//! last turns of the loop, and its most recently active connections.
//!
//! The sample is taken by the reactor's publisher (`daemon::reactors`),
//! off the path of any message: one walk over the connections per second
//! per reactor, whatever the number of viewers. It rides on `Stats`
//! (`Stats::sampled`), so `status --json` and the page show the same
//! numbers under the same names, and several reactors publish it with
//! their counters.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::turns::TurnRecord;

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(1);

/// Samples of history kept: one minute.
pub const HISTORY: usize = 60;

/// Connections listed, most recently active first.
pub const CONNECTIONS_LISTED: usize = 100;

/// The states a connection is counted in, as `status --json` names them
/// (`connections_by_state.NAME`), in the page's order.
pub const STATES: [&str; 8] = [
    "reading",
    "writing",
    "backpressure",
    "draining",
    "tls_handshake",
    "proxy_header",
    "lingering",
    "half_closed",
];

/// The state a connection's `status` word (`HandlerInfo::state`) counts
/// in; every connection of a reactor that is draining after an upgrade
/// counts as `draining`, unless it is lingering or mid-handshake.
pub fn state_of(word: &str, reactor_draining: bool) -> usize {
    let index = |name: &str| STATES.iter().position(|s| *s == name).unwrap_or(0);
    match word {
        "closing" | "lingering" => index("lingering"),
        "proxy-header" => index("proxy_header"),
        w if w.contains("handshake") => index("tls_handshake"),
        _ if reactor_draining => index("draining"),
        "paused-by-backpressure" => index("backpressure"),
        // `status` says "draining" for a connection flushing what it owes.
        "draining" | "writing" => index("writing"),
        "half-closed" => index("half_closed"),
        _ => index("reading"),
    }
}

/// One point of the minute's chart.
#[derive(Clone, Copy, Debug, Default)]
pub struct Point {
    /// Seconds since the reactor started, at the sample.
    pub uptime_s: f64,
    /// Turns of the loop per second.
    pub turns_per_s: u64,
    /// Events per second.
    pub events_per_s: u64,
    /// Bytes received per second.
    pub bytes_in_per_s: u64,
    /// Bytes sent per second.
    pub bytes_out_per_s: u64,
    /// Datagrams received per second.
    pub datagrams_in_per_s: u64,
    /// Datagrams sent per second.
    pub datagrams_out_per_s: u64,
    /// Connections open at the sample.
    pub connections: u64,
}

/// A connection of the page's list.
#[derive(Clone, Debug)]
pub struct ConnRow {
    /// Its slab key (the token `status` shows).
    pub token: usize,
    /// `tcp-conn`, `unix-conn`, ...
    pub kind: &'static str,
    /// The peer as `status` shows it: attacker-controlled text.
    pub peer: String,
    /// One of [`STATES`].
    pub state: &'static str,
    /// Milliseconds since its last traffic.
    pub idle_ms: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// A reactor's last sample (see the module's comment).
#[derive(Debug, Default)]
pub struct Sampled {
    /// Samples taken so far (0: none yet, every figure 0).
    pub seq: u64,
    /// The rates of the last second and the connections at its end.
    pub now: Point,
    /// Connections by state, in the order of [`STATES`].
    pub by_state: [u64; STATES.len()],
    /// Connections by kind, in the order first seen.
    pub by_kind: Vec<(&'static str, u64)>,
    /// The last minute, oldest first.
    pub history: VecDeque<Point>,
    /// The last turns, oldest first.
    pub turns: Vec<TurnRecord>,
    /// The most recently active connections, at most [`CONNECTIONS_LISTED`].
    pub connections: Vec<ConnRow>,
    /// The JSON of `history`, `turns` and `connections`, built once per
    /// sample by the first viewer that asks (`Sampled::view_json`).
    pub(super) view: OnceLock<String>,
}

impl Sampled {
    /// The derived figures as `status --json` keys (added to `Stats::json`).
    pub fn json_into(&self, map: &mut Map<String, Value>) {
        let now = &self.now;
        map.insert("turns_per_s".into(), now.turns_per_s.into());
        let per_turn = if now.turns_per_s == 0 {
            0.0
        } else {
            now.events_per_s as f64 / now.turns_per_s as f64
        };
        map.insert(
            "events_per_turn".into(),
            ((per_turn * 100.0).round() / 100.0).into(),
        );
        map.insert("bytes_in_per_s".into(), now.bytes_in_per_s.into());
        map.insert("bytes_out_per_s".into(), now.bytes_out_per_s.into());
        map.insert("datagrams_in_per_s".into(), now.datagrams_in_per_s.into());
        map.insert("datagrams_out_per_s".into(), now.datagrams_out_per_s.into());
        let states: Map<String, Value> = STATES
            .iter()
            .zip(self.by_state)
            .map(|(name, count)| (name.to_string(), count.into()))
            .collect();
        map.insert("connections_by_state".into(), states.into());
        let kinds: Map<String, Value> = self
            .by_kind
            .iter()
            .map(|(kind, count)| (kind.to_string(), (*count).into()))
            .collect();
        map.insert("connections_by_kind".into(), kinds.into());
    }

    /// The sum of two reactors' samples (totals): rates and counts add up;
    /// the history adds point by point from the newest; lists are kept
    /// per reactor, not summed.
    pub fn plus(&self, other: &Sampled) -> Sampled {
        let mut by_kind = self.by_kind.clone();
        for (kind, count) in &other.by_kind {
            match by_kind.iter_mut().find(|(k, _)| k == kind) {
                Some((_, ours)) => *ours += count,
                None => by_kind.push((kind, *count)),
            }
        }
        let mut by_state = self.by_state;
        for (ours, theirs) in by_state.iter_mut().zip(other.by_state) {
            *ours += theirs;
        }
        let (long, short) = if self.history.len() >= other.history.len() {
            (&self.history, &other.history)
        } else {
            (&other.history, &self.history)
        };
        let mut history = long.clone();
        let skip = long.len() - short.len();
        for (ours, theirs) in history.iter_mut().skip(skip).zip(short) {
            *ours = ours.plus(theirs);
        }
        Sampled {
            seq: self.seq.max(other.seq),
            now: self.now.plus(&other.now),
            by_state,
            by_kind,
            history,
            ..Sampled::default()
        }
    }

    /// `{"seq", "history": {column: [..]}, "turns": [..], "connections": [..]}`,
    /// built once per sample however many viewers ask.
    pub fn view_json(&self) -> &str {
        self.view.get_or_init(|| {
            let column = |f: fn(&Point) -> Value| -> Value {
                self.history.iter().map(f).collect::<Vec<Value>>().into()
            };
            let turns: Vec<Value> = self
                .turns
                .iter()
                .map(|t| {
                    let kept = (t.events as usize).min(t.tokens.len());
                    json!({
                        "turn": t.turn,
                        "events": t.events,
                        "calls": t.calls,
                        "timers": t.timers,
                        "tokens": &t.tokens[..kept],
                    })
                })
                .collect();
            let connections: Vec<Value> = self
                .connections
                .iter()
                .map(|c| {
                    json!({
                        "token": c.token,
                        "kind": c.kind,
                        "peer": c.peer,
                        "state": c.state,
                        "idle_ms": c.idle_ms,
                        "bytes_in": c.bytes_in,
                        "bytes_out": c.bytes_out,
                    })
                })
                .collect();
            json!({
                "seq": self.seq,
                "history": {
                    "uptime_s": column(|p| ((p.uptime_s * 10.0).round() / 10.0).into()),
                    "turns_per_s": column(|p| p.turns_per_s.into()),
                    "events_per_s": column(|p| p.events_per_s.into()),
                    "bytes_in_per_s": column(|p| p.bytes_in_per_s.into()),
                    "bytes_out_per_s": column(|p| p.bytes_out_per_s.into()),
                    "datagrams_in_per_s": column(|p| p.datagrams_in_per_s.into()),
                    "datagrams_out_per_s": column(|p| p.datagrams_out_per_s.into()),
                    "connections": column(|p| p.connections.into()),
                },
                "turns": turns,
                "connections": connections,
            })
            .to_string()
        })
    }
}

impl Point {
    fn plus(&self, other: &Point) -> Point {
        Point {
            uptime_s: self.uptime_s.max(other.uptime_s),
            turns_per_s: self.turns_per_s + other.turns_per_s,
            events_per_s: self.events_per_s + other.events_per_s,
            bytes_in_per_s: self.bytes_in_per_s + other.bytes_in_per_s,
            bytes_out_per_s: self.bytes_out_per_s + other.bytes_out_per_s,
            datagrams_in_per_s: self.datagrams_in_per_s + other.datagrams_in_per_s,
            datagrams_out_per_s: self.datagrams_out_per_s + other.datagrams_out_per_s,
            connections: self.connections + other.connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_status_words() {
        let name = |word, draining| STATES[state_of(word, draining)];
        assert_eq!(name("open", false), "reading");
        assert_eq!(name("draining", false), "writing");
        assert_eq!(name("paused-by-backpressure", false), "backpressure");
        assert_eq!(name("closing", false), "lingering");
        assert_eq!(name("closing", true), "lingering");
        assert_eq!(name("proxy-header", false), "proxy_header");
        assert_eq!(name("tls-handshake", true), "tls_handshake");
        assert_eq!(name("open", true), "draining");
        assert_eq!(name("half-closed", false), "half_closed");
    }

    #[test]
    fn totals_add_rates_states_kinds_and_history() {
        let point = |n: u64| Point {
            turns_per_s: n,
            connections: n,
            ..Point::default()
        };
        let a = Sampled {
            now: point(3),
            by_state: [1, 0, 0, 0, 0, 0, 0, 0],
            by_kind: vec![("tcp-conn", 1)],
            history: [point(1), point(2), point(3)].into(),
            ..Sampled::default()
        };
        let b = Sampled {
            now: point(5),
            by_state: [2, 1, 0, 0, 0, 0, 0, 0],
            by_kind: vec![("unix-conn", 2), ("tcp-conn", 1)],
            history: [point(5)].into(),
            ..Sampled::default()
        };
        let sum = a.plus(&b);
        assert_eq!(sum.now.turns_per_s, 8);
        assert_eq!(sum.by_state[..2], [3, 1]);
        assert_eq!(sum.by_kind, [("tcp-conn", 2), ("unix-conn", 2)]);
        let turns: Vec<u64> = sum.history.iter().map(|p| p.turns_per_s).collect();
        assert_eq!(turns, [1, 2, 8], "the newest points line up");
        let mut map = Map::new();
        sum.json_into(&mut map);
        assert_eq!(map["turns_per_s"], 8);
        assert_eq!(map["connections_by_state"]["reading"], 3);
        assert_eq!(map["connections_by_kind"]["unix-conn"], 2);
    }
}
