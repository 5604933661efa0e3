//! `echoplex report`: interval logs merged into one report, and the logs
//! read by an independent HdrHistogram implementation (Python's `hdrh`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use echoplex::bench::hdrlog::HdrLogWriter;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use support::{run, temp_dir};

fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for v in values {
        h.record(v).expect("in range");
    }
    h
}

/// Writes a log of `intervals` one-second intervals with the given values
/// each; returns the number of values written.
fn write_log(path: &Path, intervals: &[Vec<u64>], errors: u64) -> u64 {
    write_log_at(path, SystemTime::now(), intervals, errors)
}

/// `write_log` with a given start.
fn write_log_at(path: &Path, start: SystemTime, intervals: &[Vec<u64>], errors: u64) -> u64 {
    let mut log = HdrLogWriter::create(path, "echoplex bench test", start).expect("create log");
    let mut total = 0;
    for (i, values) in intervals.iter().enumerate() {
        let h = histogram(values.iter().copied());
        let service = histogram(values.iter().map(|v| (v / 2).max(1)));
        total += h.len();
        log.interval(
            Duration::from_secs(i as u64),
            Duration::from_secs(1),
            &h,
            Some(&service),
        )
        .expect("write interval");
    }
    log.summary(&json!({
        "mode": "open", "rate": 1000.0, "size": 64, "messages": total,
        "duration_s": intervals.len() as f64, "errors": errors,
    }))
    .expect("summary");
    total
}

#[test]
fn two_logs_merge_with_counts_that_add_exactly() {
    let dir = temp_dir("report-merge");
    let a = dir.join("a.hlog");
    let b = dir.join("b.hlog");
    let na = write_log(&a, &[(1..=997).collect(), (1..=1003).collect()], 0);
    let nb = write_log(&b, &[vec![40_000; 13], (500..1500).collect()], 0);
    let (status, out, err) = run(&[
        "report",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(status.success(), "{status:?} {out} {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["messages"].as_u64(), Some(na + nb), "{v}");
    assert_eq!(v["generators"], 2);
    assert_eq!(v["mode"], "open");
    assert_eq!(v["rate"], 2000.0);
    let files = v["files"].as_array().expect("files");
    assert_eq!(files[0]["messages"].as_u64(), Some(na));
    assert_eq!(files[1]["messages"].as_u64(), Some(nb));
    // The 13 slow values are 0.4 % of all: the merged p99 is not among
    // them, the merged max is.
    assert!(
        v["latency_us"]["p99"].as_u64().expect("p99") < 40_000,
        "{v}"
    );
    assert!(
        v["latency_us"]["max"].as_u64().expect("max") >= 39_000,
        "{v}"
    );
    assert!(v["service_latency_us"]["max"].as_u64().expect("service") < 39_000);

    let (status, out, _) = run(&["report", a.to_str().expect("utf-8")]);
    assert!(status.success());
    assert!(
        out.contains(&format!(
            "{},{:03} echoed and verified",
            na / 1000,
            na % 1000
        )),
        "{out}"
    );
    assert!(out.contains("service"), "{out}");
}

#[test]
fn errors_in_a_log_exit_1_and_bad_files_exit_2_or_5() {
    let dir = temp_dir("report-bad");
    let a = dir.join("a.hlog");
    write_log(&a, &[vec![100; 10]], 3);
    let (status, out, _) = run(&["report", a.to_str().expect("utf-8"), "--json"]);
    assert_eq!(status.code(), Some(1), "{out}");
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["errors"], 3);

    let junk = dir.join("junk.txt");
    std::fs::write(&junk, "this is not\na histogram log\n").expect("write");
    let (status, out, err) = run(&["report", junk.to_str().expect("utf-8")]);
    assert_eq!(status.code(), Some(2), "{out} {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("junk.txt") && err.contains("interval log"),
        "{err}"
    );

    let missing = dir.join("missing.hlog");
    let (status, _, err) = run(&["report", missing.to_str().expect("utf-8")]);
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

/// Python's `hdrh` reads the log: the same count and the same p99 as ours.
#[test]
#[ignore = "needs python3 hdrh: scripts/test-all"]
fn python_hdrh_decodes_the_log() {
    let dir = temp_dir("report-python");
    let path = dir.join("run.hlog");
    let values: Vec<u64> = (1..=5000).map(|i| i * 7).collect();
    let total = write_log(
        &path,
        &[values[..2500].to_vec(), values[2500..].to_vec()],
        0,
    );
    let ours = histogram(values.iter().copied());
    let script = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 60000000, 3))
total = HdrHistogram(1, 60000000, 3)
service = 0
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    if h.get_tag() == "service":
        service += h.get_total_count()
        continue
    total.add(h)
print(total.get_total_count(), total.get_value_at_percentile(99.0), total.get_max_value(), service)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) => panic!("python3 not found ({err}): run scripts/test-all"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'hdrh'") {
        panic!("python3 lacks hdrh: run scripts/test-all");
    }
    assert!(output.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(|f| f.parse().expect("number"))
        .collect();
    assert_eq!(fields[0], total, "python count: {text}");
    assert_eq!(fields[3], total, "python service count: {text}");
    assert!(
        ours.equivalent(fields[1], ours.value_at_quantile(0.99)),
        "python p99 {} vs ours {}",
        fields[1],
        ours.value_at_quantile(0.99)
    );
    assert!(ours.equivalent(fields[2], ours.max()), "{text}");
}

/// The address space a `report` run may use in these tests: a build that
/// keeps every interval (or allocates what a header claims) dies fast at
/// this cap instead of taking the shared machine's memory.
const ADDRESS_SPACE: u64 = 1 << 30;

/// The resident set `report` must stay under, whatever the input.
const MAX_RSS_KIB: u64 = 64 * 1024;

/// One interval's histogram, base64 as in a log line.
fn encoded(h: &Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    let mut raw = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut raw)
        .expect("serialize");
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// A V2 compressed histogram written by hand: a header claiming `digits`,
/// `low..high` and `payload_len`, followed by `payload`.
fn crafted(digits: u32, low: u64, high: u64, payload_len: u32, payload: &[u8]) -> String {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut inner = Vec::new();
    inner.extend(0x1c84_9313u32.to_be_bytes());
    inner.extend(payload_len.to_be_bytes());
    inner.extend(0u32.to_be_bytes());
    inner.extend(digits.to_be_bytes());
    inner.extend(low.to_be_bytes());
    inner.extend(high.to_be_bytes());
    inner.extend(1.0f64.to_be_bytes());
    inner.extend(payload);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&inner).expect("deflate");
    let zipped = z.finish().expect("deflate");
    let mut outer = 0x1c84_9314u32.to_be_bytes().to_vec();
    outer.extend((zipped.len() as u32).to_be_bytes());
    outer.extend(zipped);
    base64::engine::general_purpose::STANDARD.encode(outer)
}

/// A 14-hour run at one interval a second (50,400 intervals, latency and
/// service each) is read interval by interval: the merged counts are
/// exact and the peak RSS stays under 64 MiB. (Keeping every interval's
/// histogram, as a4b59e2 did, needs ~14 GB for it.)
#[test]
fn a_fourteen_hour_log_merges_in_bounded_memory() {
    use std::io::Write as _;
    let dir = temp_dir("report-long");
    let path = dir.join("long.hlog");
    let seconds = 14 * 3600u64;
    // 1,000 values per interval over a few buckets: a short line, so the
    // file stays ~25 MB.
    let per = histogram((0..1000u64).map(|i| 100 + (i % 10) * 50));
    let service = histogram((0..1000u64).map(|i| 50 + (i % 10) * 25));
    let (latency_text, service_text) = (encoded(&per), encoded(&service));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(
        out,
        "#[echoplex bench test]\n#[Histogram log format version 1.3]"
    )
    .expect("write");
    writeln!(out, "#[StartTime: 1795000000.000 (seconds since epoch)]").expect("write");
    writeln!(out, "#[BaseTime: 1795000000.000 (seconds since epoch)]").expect("write");
    for s in 0..seconds {
        writeln!(out, "{s}.000,1.000,{}.000,{latency_text}", per.max()).expect("write");
        writeln!(
            out,
            "Tag=service,{s}.000,1.000,{}.000,{service_text}",
            service.max()
        )
        .expect("write");
    }
    let total = seconds * per.len();
    writeln!(
        out,
        "#[echoplex summary {}]",
        json!({"mode": "open", "rate": 1000.0, "size": 64, "messages": total,
               "duration_s": seconds as f64, "errors": 0})
    )
    .expect("write");
    out.flush().expect("flush");
    drop(out);
    let m = support::run_measured(
        &["report", path.to_str().expect("utf-8"), "--json"],
        ADDRESS_SPACE,
        Duration::from_secs(300),
    );
    assert!(m.status.success(), "{:?} {}", m.status, m.stderr);
    let v: Value = serde_json::from_str(m.stdout.trim()).expect("json");
    assert_eq!(v["messages"].as_u64(), Some(total), "{v}");
    assert_eq!(
        v["service_latency_us"]["max"].as_u64().map(|x| x >= 250),
        Some(true)
    );
    assert_eq!(v["duration_s"].as_f64(), Some(seconds as f64), "{v}");
    eprintln!(
        "14-hour log: peak RSS {} KiB, {:.1} s",
        m.max_rss_kib,
        m.elapsed.as_secs_f64()
    );
    assert!(
        m.max_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        m.max_rss_kib
    );
}

/// Crafted files under 1 KB whose histogram headers claim absurd sizes (a
/// 4 GiB payload; 6 M counters, repeated; a run of 2^63 zeros) are each
/// one clear error line naming the file (exit 2), at once and in bounded
/// memory, never an allocation of what they claim or a panic.
#[test]
fn a_histogram_that_claims_absurd_sizes_is_refused_at_once() {
    let dir = temp_dir("report-crafted");
    let cases: [(&str, String, &str); 3] = [
        (
            "payload.hlog",
            format!(
                "0.000,1.000,1.000,{}\n",
                crafted(3, 1, 60_000_000, 0xFFFF_FFF0, &[])
            ),
            "payload",
        ),
        (
            "counters.hlog",
            format!("0.000,1.000,1.000,{}\n", crafted(5, 1, 1 << 62, 1, &[2])).repeat(8),
            "counters",
        ),
        (
            "zeros.hlog",
            format!(
                "0.000,1.000,1.000,{}\n",
                crafted(3, 1, 60_000_000, 10, &[0xFF; 10])
            ),
            "out of range",
        ),
    ];
    for (name, text, says) in cases {
        assert!(text.len() < 1024, "{name}: {} bytes", text.len());
        let path = dir.join(name);
        std::fs::write(&path, &text).expect("write");
        let m = support::run_measured(
            &["report", path.to_str().expect("utf-8")],
            ADDRESS_SPACE,
            Duration::from_secs(60),
        );
        support::assert_no_panic(&m.stderr);
        assert_eq!(
            m.status.code(),
            Some(2),
            "{name}: {:?} {}",
            m.status,
            m.stderr
        );
        let line = support::assert_one_error_line(&m.stderr, &[name, says]);
        eprintln!(
            "{name}: {line:?}: peak RSS {} KiB, {} ms",
            m.max_rss_kib,
            m.elapsed.as_millis()
        );
        assert!(
            m.max_rss_kib < MAX_RSS_KIB,
            "{name}: peak RSS {} KiB",
            m.max_rss_kib
        );
    }
}

/// Two runs 16 s apart (2 s each) did not run at the same time: their
/// rates must not be added silently. report warns on stderr and in JSON.
#[test]
fn logs_that_did_not_overlap_in_time_are_warned_about() {
    let dir = temp_dir("report-apart");
    let (a, b) = (dir.join("a.hlog"), dir.join("b.hlog"));
    let start = SystemTime::now();
    write_log_at(&a, start, &[vec![100; 1000], vec![100; 1000]], 0);
    write_log_at(
        &b,
        start + Duration::from_secs(16),
        &[vec![100; 1000], vec![100; 1000]],
        0,
    );
    let (status, out, err) = run(&[
        "report",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(status.success(), "{out} {err}");
    assert!(err.contains("did not run at the same time"), "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");
}
