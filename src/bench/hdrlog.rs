//! `--hdr-log FILE`: the latency histogram of every interval in the
//! HdrHistogram interval-log format (V2 compressed histograms, base64), so
//! HdrHistogram's own tools (Java's `HistogramLogProcessor`, Python's
//! `hdrh`, ...) read what bench wrote, and `echoplex report` merges the
//! logs of several generators.
//!
//! The file, values in microseconds:
//! ```text
//! #[echoplex bench tcp://127.0.0.1:10000 -c 10 --rate 1000]
//! #[Histogram log format version 1.3]
//! #[StartTime: 1795000000.000 (seconds since epoch)]
//! #[BaseTime: 1795000000.000 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! 0.000,1.000,412.000,HISTFAAA...          latency (from the schedule in open loop)
//! Tag=service,0.000,1.000,398.000,HIST...   open loop: from the actual send
//! ...
//! #[echoplex summary {"messages":...,"errors":...}]
//! ```
//! The untagged histogram is the latency every tool shows by default; the
//! summary is a comment, which other readers skip, carrying the counters a
//! histogram cannot (errors, lost, the measured window) for `report`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// The tag of the service-time histograms (open loop).
pub const SERVICE_TAG: &str = "service";

/// The prefix of the summary comment.
const SUMMARY: &str = "#[echoplex summary ";

const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// Writes one interval log.
pub struct HdrLogWriter {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl HdrLogWriter {
    /// Creates `path` and writes the header: `command` (the run, for
    /// people), and `start` as both StartTime and BaseTime, so interval
    /// timestamps are seconds since the measured window opened.
    pub fn create(path: &Path, command: &str, start: SystemTime) -> io::Result<HdrLogWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!("[{}]", command.replace('\n', " ")))
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[values in microseconds]")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut out, &mut serializer)?;
        out.write_all(LEGEND.as_bytes())?;
        Ok(HdrLogWriter { out, serializer })
    }

    /// Appends one interval: `offset` since the start, its `length`, the
    /// latency histogram and, in open loop, the service-time one.
    pub fn interval(
        &mut self,
        offset: Duration,
        length: Duration,
        latency: &Histogram<u64>,
        service: Option<&Histogram<u64>>,
    ) -> io::Result<()> {
        // A builder with no headers writes nothing: it only lends its
        // line formatter, which borrows the writer for the call.
        let mut log =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        log.write_histogram(latency, offset, length, None)
            .map_err(|err| io::Error::other(err.to_string()))?;
        if let Some(service) = service {
            log.write_histogram(service, offset, length, Tag::new(SERVICE_TAG))
                .map_err(|err| io::Error::other(err.to_string()))?;
        }
        // Flushed per interval, so a run cut short still leaves its log.
        self.out.flush()
    }

    /// Appends the summary comment (one JSON object on one line) and
    /// flushes.
    pub fn summary(&mut self, summary: &serde_json::Value) -> io::Result<()> {
        writeln!(self.out, "{SUMMARY}{summary}]")?;
        self.out.flush()
    }
}

/// One interval read back.
#[derive(Clone, Debug)]
pub struct Interval {
    /// Seconds since the epoch when the interval began.
    pub start: f64,
    /// Its length in seconds.
    pub length: f64,
    /// The histogram's tag (`None` for latency, [`SERVICE_TAG`], or any
    /// other tool's tag).
    pub tag: Option<String>,
    /// The values.
    pub histogram: Histogram<u64>,
}

/// An interval log read back.
#[derive(Clone, Debug, Default)]
pub struct HdrLog {
    /// The intervals, in file order.
    pub intervals: Vec<Interval>,
    /// The echoplex summary comment, when the log has one.
    pub summary: Option<serde_json::Value>,
}

/// Parses an interval log (echoplex's or any HdrHistogram tool's).
pub fn parse(text: &[u8]) -> Result<HdrLog, String> {
    let mut log = HdrLog::default();
    let mut start_time: Option<f64> = None;
    let mut base_time: Option<f64> = None;
    let mut deserializer = Deserializer::new();
    let mut raw = Vec::new();
    for entry in IntervalLogIterator::new(text) {
        let entry = entry.map_err(|err| match err {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                format!(
                    "not an HdrHistogram interval log (line {})",
                    line_of(text, offset)
                )
            }
        })?;
        match entry {
            LogEntry::StartTime(t) => start_time = Some(t.as_secs_f64()),
            LogEntry::BaseTime(t) => base_time = Some(t.as_secs_f64()),
            LogEntry::Interval(h) => {
                raw.clear();
                base64::engine::general_purpose::STANDARD
                    .decode_vec(h.encoded_histogram(), &mut raw)
                    .map_err(|err| format!("an interval's histogram is not base64: {err}"))?;
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut raw.as_slice())
                    .map_err(|err| {
                        let why = match err {
                            hdrhistogram::serialization::DeserializeError::IoError(err) => {
                                err.to_string()
                            }
                            other => other.to_string(),
                        };
                        format!("an interval's histogram does not decode: {why}")
                    })?;
                let stamp = h.start_timestamp().as_secs_f64();
                // The Java reader's rule: without BaseTime, a timestamp more
                // than a year before StartTime is relative to StartTime.
                let base = match (base_time, start_time) {
                    (Some(base), _) => base,
                    (None, Some(start)) if stamp < start - 365.0 * 86_400.0 => start,
                    _ => 0.0,
                };
                log.intervals.push(Interval {
                    start: base + stamp,
                    length: h.duration().as_secs_f64(),
                    tag: h.tag().map(|t| t.as_str().to_string()),
                    histogram,
                });
            }
        }
    }
    // The iterator skips comments: find the summary by hand.
    for line in text.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(SUMMARY.as_bytes()) {
            let json = rest.strip_suffix(b"]").unwrap_or(rest);
            let value = serde_json::from_slice(json)
                .map_err(|err| format!("the echoplex summary line does not parse: {err}"))?;
            log.summary = Some(value);
        }
    }
    Ok(log)
}

fn line_of(text: &[u8], offset: usize) -> usize {
    1 + text[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for &v in values {
            h.record(v).expect("in range");
        }
        h
    }

    #[test]
    fn writes_what_it_reads_back() {
        let dir = std::env::temp_dir().join(format!("echoplex-hdrlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("run.hlog");
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let mut w = HdrLogWriter::create(&path, "echoplex bench tcp://x", start).expect("create");
        w.interval(
            Duration::ZERO,
            Duration::from_secs(1),
            &histogram(&[100, 200, 300]),
            Some(&histogram(&[90, 190, 290])),
        )
        .expect("interval");
        w.interval(
            Duration::from_secs(1),
            Duration::from_secs(1),
            &histogram(&[5_000]),
            None,
        )
        .expect("interval");
        w.summary(&serde_json::json!({"messages": 4, "errors": 0}))
            .expect("summary");
        drop(w);
        let text = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        let log = parse(&text).expect("parses");
        assert_eq!(log.intervals.len(), 3);
        assert_eq!(log.intervals[0].tag, None);
        assert_eq!(log.intervals[1].tag.as_deref(), Some(SERVICE_TAG));
        assert_eq!(log.intervals[0].histogram.len(), 3);
        assert_eq!(log.intervals[2].histogram.len(), 1);
        assert!((log.intervals[2].start - 1_795_000_001.0).abs() < 1e-6);
        assert!(log.intervals[2].histogram.max() >= 4_995);
        assert_eq!(log.summary.expect("summary")["messages"], 4);
    }

    #[test]
    fn refuses_what_is_not_a_log() {
        let err = parse(b"hello\nworld\n").expect_err("not a log");
        assert!(err.contains("line 1"), "{err}");
        // Valid base64 of bytes that are no compressed histogram: one
        // readable reason, not a Debug dump of the decoder's error.
        let err =
            parse(b"0.000,1.000,1.000,HISTFAAAAAh4nP///////w==\n").expect_err("corrupt histogram");
        assert!(err.contains("does not decode"), "{err}");
        assert!(!err.contains("IoError") && !err.contains('{'), "{err}");
    }

    #[test]
    fn reads_a_log_without_base_time() {
        // As other writers do: absolute timestamps, no BaseTime.
        let mut h = histogram(&[42]);
        let mut buf = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .begin_log_with(&mut buf, &mut ser)
            .expect("begin")
            .write_histogram(
                &h,
                Duration::from_secs(1_700_000_000),
                Duration::from_secs(1),
                None,
            )
            .expect("write");
        h.reset();
        let log = parse(&buf).expect("parses");
        assert!((log.intervals[0].start - 1_700_000_000.0).abs() < 1e-6);
        assert!(log.summary.is_none());
    }
}
