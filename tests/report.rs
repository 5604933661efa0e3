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
    let start = SystemTime::now();
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
