//! The daemon's counters: ONE declared list (the `stats!` table below)
//! feeds the struct, the `status` text, the `status json` object, the
//! shutdown log line, per-reactor totals (`Stats::add`) and any other
//! exposition (`Stats::LIST`: name, help, counter or gauge, value).
//!
//! Adding a counter is one entry in the table; handlers bump it as a field
//! (`cx.stats.NAME += 1`), and every output shows it. Marked `per
//! endpoint`, it also gets a field in `EndpointStats`, each endpoint's
//! share that `/metrics` labels with the endpoint.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

use super::sample::Sampled;
use super::turns::EVENT_BUCKETS;

/// Whether a figure only grows (a counter) or goes up and down (a gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKind {
    /// Only grows, from 0 at start.
    Counter,
    /// A level now (open connections).
    Gauge,
}

/// One line of the table: what a figure is called and how it is shown.
#[derive(Debug)]
pub struct Stat {
    /// The field name, which is also its `status json` key (`bytes_in`).
    pub name: &'static str,
    /// One sentence for people (Prometheus `# HELP`).
    help: &'static str,
    /// Counter or gauge.
    pub kind: StatKind,
    /// Which line of the `status` text it is on (1 connections, 2 datagrams
    /// and bytes, 3 the loop, 4 the control connections).
    pub line: u8,
    /// Its piece of that line, `{}` standing for the value, with the
    /// separator before it (the text is these pieces, concatenated).
    pub text: &'static str,
    /// Reads it.
    pub get: fn(&Stats) -> u64,
}

impl Stat {
    /// The help sentence.
    pub fn help(&self) -> &'static str {
        self.help.trim()
    }
}

/// A field's value as the `u64` every exposition uses.
trait Figure {
    fn figure(&self) -> u64;
}

impl Figure for u64 {
    fn figure(&self) -> u64 {
        *self
    }
}

impl Figure for usize {
    fn figure(&self) -> u64 {
        u64::try_from(*self).unwrap_or(u64::MAX)
    }
}

/// The table's rows: `/// help`, then `field: type, kind, status line,
/// status text`, and `per endpoint: u64` on the figures each endpoint has
/// a share of (`EndpointStats`: a field of that type, `get` and `add`).
macro_rules! stats {
    ($(
        #[doc = $help:literal]
        $field:ident : $ty:ty, $kind:ident, $line:literal, $text:literal
        $(, per endpoint: $share:ty)?;
    )*) => {
        /// Counters kept by the loop and its handlers.
        #[derive(Clone, Debug)]
        pub struct Stats {
            /// When the loop started.
            pub started: Instant,
            $( #[doc = $help] pub $field: $ty, )*
            /// Each endpoint's share of the figures that belong to one
            /// (`/metrics` labels them), in the order they were added.
            pub endpoints: Vec<EndpointStats>,
            /// Turns by the events they handled, in the buckets of
            /// `turns::EVENT_BUCKETS` (`status --json`: `turn_events`).
            pub turn_events: [u64; EVENT_BUCKETS.len()],
            /// The last second's derived figures, set by the reactor's
            /// sampler (see `reactor::sample`).
            pub sampled: Arc<Sampled>,
        }

        impl Stats {
            /// Zeroed counters, starting at `started`.
            pub fn new(started: Instant) -> Self {
                Stats {
                    started,
                    $( $field: 0, )*
                    endpoints: Vec::new(),
                    turn_events: [0; EVENT_BUCKETS.len()],
                    sampled: Arc::default(),
                }
            }

            /// Every figure, in the order of the table.
            pub const LIST: &'static [Stat] = &[ $( Stat {
                name: stringify!($field),
                help: $help,
                kind: StatKind::$kind,
                line: $line,
                text: $text,
                get: |stats: &Stats| stats.$field.figure(),
            }, )* ];

            /// Adds `other`'s figures to these (totals over several
            /// reactors; gauges add up too: open connections in all).
            pub fn add(&mut self, other: &Stats) {
                self.started = self.started.min(other.started);
                $( self.$field += other.$field; )*
                for (ours, theirs) in self.turn_events.iter_mut().zip(other.turn_events) {
                    *ours += theirs;
                }
                self.sampled = Arc::new(self.sampled.plus(&other.sampled));
                for theirs in &other.endpoints {
                    match self.endpoints.iter_mut().find(|ours| ours.endpoint == theirs.endpoint) {
                        Some(ours) => ours.add(theirs),
                        None => self.endpoints.push(theirs.clone()),
                    }
                }
            }
        }

        /// One endpoint's share of the figures marked `per endpoint` in
        /// the table: the reactor adds to it what the endpoint's own
        /// handler and the connections it accepted move
        /// (`Reactor::add_endpoint`).
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct EndpointStats {
            /// The endpoint as its `listening` line prints it.
            pub endpoint: String,
            $( $( #[doc = $help] pub $field: $share, )? )*
        }

        impl EndpointStats {
            /// The figure of the declared list called `name`, if it is one
            /// an endpoint has a share of.
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $( $( stringify!($field) => {
                        let share: &$share = &self.$field;
                        Some(share.figure())
                    } )? )*
                    _ => None,
                }
            }

            fn add(&mut self, other: &EndpointStats) {
                $( $( {
                    let theirs: $share = other.$field;
                    self.$field += theirs;
                } )? )*
            }
        }
    };
}

stats! {
    /// Connections open now.
    connections: usize, Gauge, 1, "  connections {}", per endpoint: u64;
    /// Connections accepted since start.
    accepted: u64, Counter, 1, "  accepted {}", per endpoint: u64;
    /// Connections closed since start.
    closed: u64, Counter, 1, "  closed {}";
    /// Connections closed for idleness.
    timeouts: u64, Counter, 1, "  timeouts {}";
    /// Connections closed at once because `--max-connections` was reached.
    rejected_max_connections: u64, Counter, 1, "  rejected {} (max-connections)";
    /// Connections closed at once because the process was out of descriptors.
    rejected_no_fds: u64, Counter, 1, " {} (no fds)";
    /// Connections closed for a missing, malformed or late PROXY header.
    proxy_errors: u64, Counter, 1, "  proxy errors {}";
    /// TLS handshakes completed.
    tls_handshakes: u64, Counter, 1, "  tls handshakes {}";
    /// Time from accept to the end of each completed TLS handshake, summed (microseconds in status, seconds in /metrics).
    tls_handshake_us: u64, Counter, 1, " ({}us)";
    /// TLS connections closed for what the peer sent (garbage for a ClientHello, a bad record, an alert) or a handshake not done in time.
    tls_errors: u64, Counter, 1, "  tls errors {}";
    /// Datagrams received.
    datagrams_in: u64, Counter, 2, "datagrams in {}", per endpoint: u64;
    /// Datagrams sent.
    datagrams_out: u64, Counter, 2, " out {}", per endpoint: u64;
    /// Datagrams dropped: send queue full, or a sender we cannot answer.
    dropped_datagrams: u64, Counter, 2, "  dropped {}";
    /// Datagrams dropped because their source port would make a loop.
    filtered_datagrams: u64, Counter, 2, "  filtered {}";
    /// Datagrams dropped by the per-source rate limit.
    rate_limited: u64, Counter, 2, "  rate-limited {}";
    /// Bytes received on every socket.
    bytes_in: u64, Counter, 2, "  bytes in {}", per endpoint: u64;
    /// Bytes sent on every socket.
    bytes_out: u64, Counter, 2, " out {}", per endpoint: u64;
    /// Turns of the loop.
    loop_iterations: u64, Counter, 3, "loop iterations {}";
    /// Readiness events handled.
    events: u64, Counter, 3, "  events {}";
    /// Timers that fired (idle limits, lingering closes, PROXY deadlines, the daemon's own).
    timers_fired: u64, Counter, 3, "  timers fired {}";
    /// Timers pending in the loop's heap (cancelled ones included until swept), as of the last sample or publication.
    timers_pending: usize, Gauge, 3, " pending {}";
    /// Control connections (admin socket, metrics://) open now: a reserve of their own beyond `--max-connections`.
    control_connections: usize, Gauge, 4, "control (admin, metrics) connections {}";
    /// Control connections closed at once because their reserve was full.
    rejected_control: u64, Counter, 4, "  rejected {}";
    /// Quiet control connections closed to make room for a new one when their reserve was full.
    evicted_control: u64, Counter, 4, "  evicted {}";
    /// Bytes received by control connections (not in `bytes_in`).
    control_bytes_in: u64, Counter, 4, "  bytes in {}";
    /// Bytes sent by control connections (not in `bytes_out`).
    control_bytes_out: u64, Counter, 4, " out {}";
    /// Page viewers dropped because they stopped reading (answers owed reached `--max-buffer`).
    page_clients_dropped: u64, Counter, 4, "  page clients dropped {}";
    /// HTTP answers with a 1xx status (100 Continue, 101 Switching Protocols).
    http_1xx: u64, Counter, 5, "http answers 1xx {}";
    /// HTTP answers with a 2xx status.
    http_2xx: u64, Counter, 5, " 2xx {}";
    /// HTTP answers with a 3xx status.
    http_3xx: u64, Counter, 5, " 3xx {}";
    /// HTTP answers with a 4xx status (malformed requests among them).
    http_4xx: u64, Counter, 5, " 4xx {}";
    /// HTTP answers with a 5xx status.
    http_5xx: u64, Counter, 5, " 5xx {}";
    /// Connections upgraded to WebSocket.
    ws_upgrades: u64, Counter, 5, "  websocket upgrades {}";
    /// WebSocket messages received whole (and echoed).
    ws_messages: u64, Counter, 5, " messages {}";
    /// WebSocket connections closed for a protocol violation (1002, 1007, 1009).
    ws_errors: u64, Counter, 5, " errors {}";
}

impl EndpointStats {
    /// Zeroed figures for `endpoint`.
    pub fn new(endpoint: String) -> Self {
        EndpointStats {
            endpoint,
            ..EndpointStats::default()
        }
    }
}

impl Stats {
    /// Every figure with its value, in the order of the table.
    pub fn values(&self) -> impl Iterator<Item = (&'static Stat, u64)> + '_ {
        Stats::LIST.iter().map(move |stat| (stat, (stat.get)(self)))
    }

    /// Seconds since start, at `now`.
    pub fn uptime_s(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Events per turn of the loop (0 before the first turn).
    pub fn events_per_iteration(&self) -> f64 {
        if self.loop_iterations == 0 {
            0.0
        } else {
            self.events as f64 / self.loop_iterations as f64
        }
    }

    /// The figures as `status json` keys: every field, plus `uptime_s`,
    /// `events_per_iteration`, `turn_events` and the sampled figures
    /// (`Sampled::json_into`: rates, connections by state and kind).
    pub fn json(&self, now: Instant) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("uptime_s".into(), Value::from(self.uptime_s(now)));
        for (stat, value) in self.values() {
            map.insert(stat.name.into(), Value::from(value));
        }
        map.insert(
            "events_per_iteration".into(),
            Value::from(self.events_per_iteration()),
        );
        let buckets: Map<String, Value> = EVENT_BUCKETS
            .iter()
            .zip(self.turn_events)
            .map(|(name, count)| (name.to_string(), count.into()))
            .collect();
        map.insert("turn_events".into(), buckets.into());
        self.sampled.json_into(&mut map);
        map
    }

    /// `name value, ...` for every figure, for a log line (serve's last).
    pub fn line(&self) -> String {
        let parts: Vec<String> = self
            .values()
            .map(|(stat, value)| format!("{} {value}", stat.name))
            .collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_list_agree_and_totals_add_up() {
        let started = Instant::now();
        let mut a = Stats::new(started);
        a.accepted = 2;
        a.connections = 1;
        let mut b = Stats::new(started);
        b.accepted = 3;
        b.bytes_in = 7;
        a.add(&b);
        let json = a.json(started);
        assert_eq!(json["accepted"], 5);
        assert_eq!(json["bytes_in"], 7);
        assert_eq!(json["connections"], 1);
        // Besides the list: uptime_s, events_per_iteration, turn_events,
        // and the sampled figures (6 rates, 2 breakdowns).
        assert_eq!(json.len(), Stats::LIST.len() + 3 + 8);
        let gauges: Vec<&str> = Stats::LIST
            .iter()
            .filter(|s| s.kind == StatKind::Gauge)
            .map(|s| s.name)
            .collect();
        assert_eq!(
            gauges,
            ["connections", "timers_pending", "control_connections"]
        );
        assert!(Stats::LIST.iter().all(|s| !s.help().is_empty()));
        assert!(a
            .line()
            .starts_with("connections 1, accepted 5, closed 0, "));
    }

    #[test]
    fn endpoints_share_the_marked_figures_and_totals_add_them_by_endpoint() {
        let mut one = EndpointStats::new("tcp://127.0.0.1:1".into());
        one.bytes_in = 4;
        one.connections = 1;
        let shared: Vec<&str> = Stats::LIST
            .iter()
            .filter(|stat| one.get(stat.name).is_some())
            .map(|stat| stat.name)
            .collect();
        assert_eq!(
            shared,
            [
                "connections",
                "accepted",
                "datagrams_in",
                "datagrams_out",
                "bytes_in",
                "bytes_out"
            ]
        );
        assert_eq!(one.get("bytes_in"), Some(4));
        assert_eq!(one.get("closed"), None);
        let started = Instant::now();
        let (mut a, mut b) = (Stats::new(started), Stats::new(started));
        a.endpoints.push(one.clone());
        b.endpoints.push(one.clone());
        b.endpoints
            .push(EndpointStats::new("udp://127.0.0.1:2".into()));
        a.add(&b);
        assert_eq!(a.endpoints.len(), 2);
        assert_eq!(a.endpoints[0].get("bytes_in"), Some(8));
        assert_eq!(a.endpoints[0].get("connections"), Some(2));
        assert_eq!(
            a.endpoints[1],
            EndpointStats::new("udp://127.0.0.1:2".into())
        );
    }
}
