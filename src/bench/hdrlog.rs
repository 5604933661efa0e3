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
use std::io::{self, BufRead, BufWriter, Read, Write};
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

/// An interval log read back whole (small logs and tests; `report` reads
/// with [`Reader`], one interval at a time).
#[derive(Clone, Debug, Default)]
pub struct HdrLog {
    /// The intervals, in file order.
    pub intervals: Vec<Interval>,
    /// The echoplex summary comment, when the log has one.
    pub summary: Option<serde_json::Value>,
}

/// The longest line read: a histogram of [`MAX_COUNTS`] counters
/// compresses to far less; a longer line is a damaged or crafted file.
pub const MAX_LINE: usize = 8 << 20;

/// The most counters one interval's histogram may claim (8 MiB of them):
/// 3 significant digits over any range need 54 Ki, 4 digits 800 Ki; a
/// header claiming more would make the reader allocate what it claims.
pub const MAX_COUNTS: u64 = 1 << 20;

/// The longest encoded payload of counts one histogram may claim.
pub const MAX_PAYLOAD: usize = 4 << 20;

/// The most values one interval may hold (2^53): beyond, counts added up
/// over a long log could overflow.
pub const MAX_VALUES: u64 = 1 << 53;

/// V2 histogram cookies, plain and zlib-compressed (base | 0x10, as
/// hdrhistogram and the Java implementation write them).
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;

/// The V2 header: cookie, payload length, normalizing offset, digits,
/// lowest, highest, integer-to-double ratio.
const V2_HEADER: usize = 40;

/// Reads an interval log (echoplex's or any HdrHistogram tool's) one
/// interval at a time, in bounded memory whatever the file says: each line,
/// header and histogram is checked against the limits above before
/// anything is allocated for it.
pub struct Reader<R> {
    input: R,
    line: Vec<u8>,
    lineno: usize,
    start_time: Option<f64>,
    base_time: Option<f64>,
    deserializer: Deserializer,
    raw: Vec<u8>,
    inflated: Vec<u8>,
    /// The echoplex summary comment, once read.
    pub summary: Option<serde_json::Value>,
}

impl<R: BufRead> Reader<R> {
    /// A reader of `input`.
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            line: Vec::new(),
            lineno: 0,
            start_time: None,
            base_time: None,
            deserializer: Deserializer::new(),
            raw: Vec::new(),
            inflated: Vec::new(),
            summary: None,
        }
    }

    /// The next interval, or `None` at the end of the log.
    pub fn next_interval(&mut self) -> Result<Option<Interval>, String> {
        loop {
            self.line.clear();
            let limit = MAX_LINE as u64 + 1;
            let n = (&mut self.input)
                .take(limit)
                .read_until(b'\n', &mut self.line)
                .map_err(|err| format!("cannot read: {}", crate::error::describe(&err)))?;
            if n == 0 {
                return Ok(None);
            }
            self.lineno += 1;
            if self.line.len() > MAX_LINE {
                return Err(format!(
                    "line {} is longer than {} MiB: not an interval log",
                    self.lineno,
                    MAX_LINE >> 20
                ));
            }
            if self.line.last() != Some(&b'\n') {
                self.line.push(b'\n');
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(rest) = self.line.strip_prefix(SUMMARY.as_bytes()) {
                let rest = rest.trim_ascii_end();
                let json = rest.strip_suffix(b"]").unwrap_or(rest);
                let value = serde_json::from_slice(json)
                    .map_err(|err| format!("the echoplex summary line does not parse: {err}"))?;
                self.summary = Some(value);
                continue;
            }
            if let Some(interval) = self.entry()? {
                return Ok(Some(interval));
            }
        }
    }

    /// The current line: a header, a comment, or an interval.
    fn entry(&mut self) -> Result<Option<Interval>, String> {
        let lineno = self.lineno;
        let mut entries = IntervalLogIterator::new(&self.line);
        let entry = match entries.next() {
            None => return Ok(None),
            Some(Ok(entry)) => entry,
            Some(Err(_)) => {
                return Err(format!("not an HdrHistogram interval log (line {lineno})"))
            }
        };
        let h = match entry {
            LogEntry::StartTime(t) => {
                self.start_time = Some(t.as_secs_f64());
                return Ok(None);
            }
            LogEntry::BaseTime(t) => {
                self.base_time = Some(t.as_secs_f64());
                return Ok(None);
            }
            LogEntry::Interval(h) => h,
        };
        self.raw.clear();
        base64::engine::general_purpose::STANDARD
            .decode_vec(h.encoded_histogram(), &mut self.raw)
            .map_err(|err| format!("line {lineno}: the histogram is not base64: {err}"))?;
        inflate(&self.raw, &mut self.inflated).map_err(|why| format!("line {lineno}: {why}"))?;
        let histogram: Histogram<u64> = self
            .deserializer
            .deserialize(&mut self.inflated.as_slice())
            .map_err(|err| {
                let why = match err {
                    hdrhistogram::serialization::DeserializeError::IoError(err) => err.to_string(),
                    other => other.to_string(),
                };
                format!("line {lineno}: the histogram does not decode: {why}")
            })?;
        if histogram.len() > MAX_VALUES {
            return Err(format!(
                "line {lineno}: the histogram claims {} values, more than 2^53",
                histogram.len()
            ));
        }
        let stamp = h.start_timestamp().as_secs_f64();
        // The Java reader's rule: without BaseTime, a timestamp more
        // than a year before StartTime is relative to StartTime.
        let base = match (self.base_time, self.start_time) {
            (Some(base), _) => base,
            (None, Some(start)) if stamp < start - 365.0 * 86_400.0 => start,
            _ => 0.0,
        };
        Ok(Some(Interval {
            start: base + stamp,
            length: h.duration().as_secs_f64(),
            tag: h.tag().map(|t| t.as_str().to_string()),
            histogram,
        }))
    }
}

/// Inflates a V2 histogram into `out` as a plain V2 one, checking its
/// header (counters, payload) before anything it claims is allocated, and
/// its counts for the one value the decoder cannot take.
fn inflate(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let not = |why: &str| format!("the histogram does not decode: {why}");
    let cookie = raw
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| not("too short"))?;
    out.clear();
    let mut header = [0u8; V2_HEADER];
    let mut body: Box<dyn Read + '_> = match cookie {
        V2_COMPRESSED_COOKIE => Box::new(flate2::read::ZlibDecoder::new(
            raw.get(8..).ok_or_else(|| not("too short"))?,
        )),
        V2_COOKIE => Box::new(raw),
        _ => return Err(not("not a V2 histogram")),
    };
    body.read_exact(&mut header)
        .map_err(|err| not(&format!("its header: {err}")))?;
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let be64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(b)
    };
    if be32(0) != V2_COOKIE {
        return Err(not("not a V2 histogram"));
    }
    let payload = be32(4) as usize;
    let (digits, low, high) = (be32(12), be64(16), be64(24));
    let counts = counts_len(low, high, digits).ok_or_else(|| {
        format!("the histogram's header is not valid: values {low}..{high}, {digits} significant digits")
    })?;
    if counts > MAX_COUNTS {
        return Err(format!(
            "the histogram claims {counts} counters (values {low}..{high}, {digits} significant \
             digits); report reads at most {MAX_COUNTS}"
        ));
    }
    if payload > MAX_PAYLOAD {
        return Err(format!(
            "the histogram claims a payload of {payload} bytes; report reads at most {MAX_PAYLOAD}"
        ));
    }
    out.extend_from_slice(&header);
    let read = body
        .take(payload as u64)
        .read_to_end(out)
        .map_err(|err| not(&err.to_string()))?;
    if read < payload {
        return Err(not("its payload is cut short"));
    }
    if !varints_decodable(&out[V2_HEADER..]) {
        return Err(not("a count is out of range"));
    }
    Ok(())
}

/// The counters a histogram of these bounds allocates, as hdrhistogram
/// sizes it; `None` when it would refuse them anyway.
pub fn counts_len(low: u64, high: u64, digits: u32) -> Option<u64> {
    if digits > 5 || low < 1 || high < low.checked_mul(2)? {
        return None;
    }
    let largest_single_unit = 2 * 10u64.pow(digits);
    let magnitude = 64 - (largest_single_unit - 1).leading_zeros();
    let unit_magnitude = 63 - low.leading_zeros();
    if unit_magnitude + magnitude > 62 {
        return None;
    }
    let sub_buckets = 1u64 << magnitude;
    let mut untrackable = sub_buckets << unit_magnitude;
    let mut buckets = 1u64;
    while untrackable <= high {
        if untrackable > u64::MAX / 2 {
            buckets += 1;
            break;
        }
        untrackable <<= 1;
        buckets += 1;
    }
    Some((buckets + 1) * (sub_buckets / 2))
}

/// Whether every LEB128 count in `payload` decodes to what hdrhistogram's
/// decoder takes: a zig-zag value of `u64::MAX` (a run of 2^63 zeros)
/// overflows its negation.
fn varints_decodable(payload: &[u8]) -> bool {
    let mut at = 0;
    while at < payload.len() {
        let mut value = 0u64;
        let mut i = 0;
        loop {
            let Some(&b) = payload.get(at + i) else {
                // Cut short: the decoder says so itself.
                return true;
            };
            if i == 8 {
                value |= u64::from(b) << 56;
                i += 1;
                break;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if value == u64::MAX {
            return false;
        }
        at += i;
    }
    true
}

/// Parses a whole interval log held in memory.
pub fn parse(text: &[u8]) -> Result<HdrLog, String> {
    let mut reader = Reader::new(text);
    let mut log = HdrLog::default();
    while let Some(interval) = reader.next_interval()? {
        log.intervals.push(interval);
    }
    log.summary = reader.summary.take();
    Ok(log)
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
    fn counts_len_is_what_hdrhistogram_allocates() {
        for (low, high, digits) in [
            (1, 60_000_000, 3),
            (1, 2, 0),
            (1, u64::MAX, 3),
            (1000, 1 << 40, 4),
            (1, 1 << 62, 5),
            (7, 3_600_000_000, 2),
        ] {
            let h = Histogram::<u64>::new_with_bounds(low, high, digits as u8).expect("bounds");
            assert_eq!(
                counts_len(low, high, digits),
                Some(h.distinct_values() as u64),
                "{low}..{high}, {digits}"
            );
        }
        assert_eq!(counts_len(0, 100, 3), None);
        assert_eq!(counts_len(1, 100, 6), None);
        assert_eq!(counts_len(100, 150, 3), None);
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
