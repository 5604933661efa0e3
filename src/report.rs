//! `echoplex report FILE...`: merges the HdrHistogram interval logs of one
//! or several `bench --hdr-log` runs (one machine or many) into one report,
//! in bench's words and bench's `--json` fields. Counts add up; percentiles
//! are those of the merged histogram, never averages of percentiles.

use std::io::Write;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::bench::hdrlog::{self, HdrLog, Interval, SERVICE_TAG};
use crate::bench::report::{bytes, group, percentile_line, quantiles};
use crate::error::{describe, Exit, Failure, Outcome};

/// Command-line arguments of `echoplex report`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Each FILE is an interval log written by `echoplex bench --hdr-log FILE` \
(or any HdrHistogram tool; values in microseconds). Generators that ran at \
the same time, on one machine or many, are summed: messages and errors \
add, rates add, and the percentiles are read from the merged histogram.

Exit status:
  0  merged; no generator counted an error
  1  a generator counted errors (as its bench run exited 1)
  2  bad usage: a FILE that is not an interval log
  5  a FILE could not be read

Examples:
  echoplex bench tcp://10.0.0.5:10000 --rate 50000 -d 60 --hdr-log gen1.hlog
  echoplex report gen1.hlog gen2.hlog gen3.hlog
  echoplex report --json logs/*.hlog")]
pub struct Args {
    /// Interval logs written by `bench --hdr-log`.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    pub json: bool,
}

/// Counters summed from the generators' summaries.
const SUMMED: [&str; 8] = [
    "errors",
    "connect_failures",
    "lost",
    "late",
    "connects",
    "connected",
    "owed_at_end",
    "never_answered",
];

/// One log's share of the merged report.
#[derive(Clone, Debug)]
pub struct Part {
    /// The file, as given.
    pub path: String,
    /// Echoes its latency histograms hold.
    pub messages: u64,
    /// Its measured window, seconds.
    pub duration: f64,
    /// Its p99, microseconds.
    pub p99: u64,
    /// Its summary, when echoplex wrote it.
    pub summary: Option<Value>,
    /// Its first interval's start and last interval's end, seconds since
    /// the epoch.
    pub span: (f64, f64),
}

impl Part {
    /// Messages per second over its own window.
    pub fn msgs_per_sec(&self) -> f64 {
        if self.duration > 0.0 {
            self.messages as f64 / self.duration
        } else {
            0.0
        }
    }
}

/// The merged report.
#[derive(Debug)]
pub struct Merged {
    /// Every log merged, in the order given.
    pub parts: Vec<Part>,
    /// Latency of every echo of every log.
    pub latency: Histogram<u64>,
    /// Service time, when the logs have it (open loop).
    pub service: Option<Histogram<u64>>,
    /// First interval start to last interval end over all logs, seconds
    /// since the epoch.
    pub window: (f64, f64),
}

/// A histogram that takes any log's values (they may come with other
/// bounds than bench's own).
fn empty() -> Histogram<u64> {
    let mut h = Histogram::new(3).expect("3 significant figures are valid");
    h.auto(true);
    h
}

/// The most values a file's histograms may add up to: far beyond any
/// real run, and short of where a counter could overflow.
const MAX_TOTAL: u64 = 1 << 60;

/// One log folded as it is read: one histogram per series, never one per
/// interval, so a log of any length takes the same memory.
#[derive(Debug)]
pub struct Folded {
    latency: Histogram<u64>,
    service: Option<Histogram<u64>>,
    first: f64,
    last: f64,
    /// The echoplex summary comment, when the log has one.
    pub summary: Option<Value>,
}

impl Default for Folded {
    fn default() -> Self {
        Folded {
            latency: empty(),
            service: None,
            first: f64::INFINITY,
            last: f64::NEG_INFINITY,
            summary: None,
        }
    }
}

impl Folded {
    /// Adds one interval.
    pub fn add(&mut self, interval: &Interval) -> Result<(), String> {
        let into = match interval.tag.as_deref() {
            None => &mut self.latency,
            Some(SERVICE_TAG) => self.service.get_or_insert_with(empty),
            // Another tool's tagged series: not ours to add.
            Some(_) => return Ok(()),
        };
        if into.len().saturating_add(interval.histogram.len()) > MAX_TOTAL {
            return Err("the histograms add up to more than 2^60 values".into());
        }
        into.add(&interval.histogram)
            .map_err(|err| format!("cannot merge an interval: {err}"))?;
        if interval.tag.is_none() && interval.start.is_finite() && interval.length.is_finite() {
            self.first = self.first.min(interval.start);
            self.last = self.last.max(interval.start + interval.length);
        }
        Ok(())
    }

    /// Reads a whole log, interval by interval.
    pub fn read(input: impl std::io::BufRead) -> Result<Folded, String> {
        let mut reader = hdrlog::Reader::new(input);
        let mut folded = Folded::default();
        while let Some(interval) = reader.next_interval()? {
            folded.add(&interval)?;
        }
        folded.summary = reader.summary.take();
        Ok(folded)
    }

    /// A log already parsed.
    pub fn of(log: &HdrLog) -> Result<Folded, String> {
        let mut folded = Folded::default();
        for interval in &log.intervals {
            folded.add(interval)?;
        }
        folded.summary = log.summary.clone();
        Ok(folded)
    }
}

/// Merges folded logs; `names` label them.
pub fn merge(logs: &[(String, Folded)]) -> Result<Merged, String> {
    let mut latency = empty();
    let mut service: Option<Histogram<u64>> = None;
    let mut parts = Vec::with_capacity(logs.len());
    let mut window = (f64::INFINITY, f64::NEG_INFINITY);
    for (name, log) in logs {
        let (first, last) = (log.first, log.last);
        if first > last {
            return Err(format!("{name}: the log holds no latency interval"));
        }
        window = (window.0.min(first), window.1.max(last));
        if latency.len().saturating_add(log.latency.len()) > MAX_TOTAL {
            return Err(format!("{name}: the logs add up to more than 2^60 values"));
        }
        latency
            .add(&log.latency)
            .map_err(|err| format!("{name}: cannot merge: {err}"))?;
        if let Some(own) = &log.service {
            let into = service.get_or_insert_with(empty);
            if into.len().saturating_add(own.len()) > MAX_TOTAL {
                return Err(format!("{name}: the logs add up to more than 2^60 values"));
            }
            into.add(own)
                .map_err(|err| format!("{name}: cannot merge: {err}"))?;
        }
        let duration = log
            .summary
            .as_ref()
            .and_then(|s| s["duration_s"].as_f64())
            .unwrap_or(last - first);
        parts.push(Part {
            path: name.clone(),
            messages: log.latency.len(),
            duration,
            p99: log.latency.value_at_quantile(0.99),
            summary: log.summary.clone(),
            span: (first, last),
        });
    }
    Ok(Merged {
        parts,
        latency,
        service,
        window,
    })
}

impl Merged {
    /// Pairs of logs whose time ranges do not overlap: generators that did
    /// not run at the same time, whose rates should not be added.
    pub fn apart(&self) -> Vec<(&Part, &Part)> {
        let mut out = Vec::new();
        for (i, a) in self.parts.iter().enumerate() {
            for b in &self.parts[i + 1..] {
                if a.span.1 <= b.span.0 || b.span.1 <= a.span.0 {
                    out.push((a, b));
                }
            }
        }
        out
    }

    /// The warnings for people (and `warnings` in JSON).
    pub fn warnings(&self) -> Vec<String> {
        self.apart()
            .into_iter()
            .map(|(a, b)| {
                let gap = (b.span.0 - a.span.1).max(a.span.0 - b.span.1);
                format!(
                    "{} and {} did not run at the same time ({:.1} s apart): their rates \
                     were added as if they had",
                    a.path, b.path, gap
                )
            })
            .collect()
    }

    /// Every log was written by echoplex bench (whose echoes are verified).
    fn all_echoplex(&self) -> bool {
        self.parts.iter().all(|p| p.summary.is_some())
    }

    /// Echoes of all generators.
    pub fn messages(&self) -> u64 {
        self.latency.len()
    }

    /// The generators ran side by side: their rates add.
    pub fn msgs_per_sec(&self) -> f64 {
        self.parts.iter().map(Part::msgs_per_sec).sum()
    }

    /// Echoed bytes per second, from each generator's message size.
    pub fn bytes_per_sec(&self) -> f64 {
        self.parts
            .iter()
            .map(|p| {
                let size = p
                    .summary
                    .as_ref()
                    .and_then(|s| s["size"].as_f64())
                    .unwrap_or(0.0);
                p.msgs_per_sec() * size
            })
            .sum()
    }

    /// A counter summed over the summaries.
    pub fn sum(&self, key: &str) -> u64 {
        self.parts
            .iter()
            .filter_map(|p| {
                let s = p.summary.as_ref()?;
                // bench puts churn's connects in its `churn` object.
                s[key].as_u64().or_else(|| s["churn"][key].as_u64())
            })
            .sum()
    }

    fn generator(&self) -> Option<Value> {
        let gens: Vec<&Value> = self
            .parts
            .iter()
            .filter_map(|p| p.summary.as_ref().map(|s| &s["generator"]))
            .filter(|g| g.is_object())
            .collect();
        if gens.is_empty() {
            return None;
        }
        let late: u64 = gens.iter().filter_map(|g| g["late_sends"].as_u64()).sum();
        let lag = gens
            .iter()
            .filter_map(|g| g["max_lag_us"].as_u64())
            .max()
            .unwrap_or(0);
        let cpu = gens
            .iter()
            .filter_map(|g| g["cpu_percent"].as_f64())
            .fold(0.0, f64::max);
        let saturated = gens.iter().any(|g| g["saturated"].as_bool() == Some(true));
        Some(json!({
            "late_sends": late,
            "max_lag_us": lag,
            "cpu_percent": cpu,
            "saturated": saturated,
        }))
    }

    /// The mode all logs agree on (`open`/`closed`), if any.
    fn mode(&self) -> Option<String> {
        let mut modes = self
            .parts
            .iter()
            .map(|p| p.summary.as_ref().and_then(|s| s["mode"].as_str()));
        let first = modes.next()??;
        modes.all(|m| m == Some(first)).then(|| first.to_string())
    }

    /// The report as one JSON object: bench's `--json` fields, plus
    /// `generators` and `files`.
    pub fn json(&self) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("generators".into(), json!(self.parts.len()));
        if let Some(mode) = self.mode() {
            out.insert("mode".into(), json!(mode));
        }
        if let Some(rate) = self.rate() {
            out.insert("rate".into(), json!(rate));
        }
        out.insert(
            "duration_s".into(),
            json!(round3((self.window.1 - self.window.0).max(0.0))),
        );
        out.insert("messages".into(), json!(self.messages()));
        out.insert("msgs_per_sec".into(), json!(round3(self.msgs_per_sec())));
        out.insert("bytes_per_sec".into(), json!(round3(self.bytes_per_sec())));
        out.insert("latency_us".into(), quantiles(&self.latency));
        if let Some(service) = &self.service {
            out.insert("service_latency_us".into(), quantiles(service));
        }
        for key in SUMMED {
            out.insert(key.into(), json!(self.sum(key)));
        }
        if let Some(generator) = self.generator() {
            out.insert("generator".into(), generator);
        }
        let warnings = self.warnings();
        if !warnings.is_empty() {
            out.insert("warnings".into(), json!(warnings));
        }
        out.insert(
            "files".into(),
            Value::Array(
                self.parts
                    .iter()
                    .map(|p| {
                        json!({
                            "path": p.path,
                            "messages": p.messages,
                            "duration_s": round3(p.duration),
                            "msgs_per_sec": round3(p.msgs_per_sec()),
                            "p99_us": p.p99,
                        })
                    })
                    .collect(),
            ),
        );
        Value::Object(out)
    }

    /// The requested rates added up, when every log had one.
    fn rate(&self) -> Option<f64> {
        self.parts
            .iter()
            .map(|p| p.summary.as_ref().and_then(|s| s["rate"].as_f64()))
            .sum()
    }

    /// The report for people.
    pub fn human(&self) -> String {
        let mut text = format!(
            "{} log{} merged{}; window {:.2} s\n",
            self.parts.len(),
            if self.parts.len() == 1 { "" } else { "s" },
            match (self.mode(), self.rate()) {
                (Some(mode), Some(rate)) =>
                    format!(", {mode} loop at {} msgs/s", group(rate as u64)),
                (Some(mode), None) => format!(", {mode} loop"),
                _ => String::new(),
            },
            (self.window.1 - self.window.0).max(0.0),
        );
        for p in &self.parts {
            text.push_str(&format!(
                "  {}: {} messages in {:.2} s, {} msgs/s, p99 {} µs\n",
                p.path,
                group(p.messages),
                p.duration,
                group(p.msgs_per_sec().round() as u64),
                group(p.p99),
            ));
        }
        text.push_str(&format!(
            "  messages  {} {}: {} msgs/s, {}/s\n",
            group(self.messages()),
            // Another tool's log says nothing of verification.
            if self.all_echoplex() {
                "echoed and verified"
            } else {
                "recorded"
            },
            group(self.msgs_per_sec().round() as u64),
            bytes(self.bytes_per_sec()),
        ));
        if self.messages() > 0 {
            text.push_str(&percentile_line("latency  ", &self.latency));
        }
        if let Some(service) = self.service.as_ref().filter(|s| !s.is_empty()) {
            text.push_str(&percentile_line("service  ", service));
        }
        if let Some(g) = self.generator() {
            text.push_str(&format!(
                "  generator late sends {}, max lag {} µs, cpu {:.0}% (highest){}\n",
                group(g["late_sends"].as_u64().unwrap_or(0)),
                group(g["max_lag_us"].as_u64().unwrap_or(0)),
                g["cpu_percent"].as_f64().unwrap_or(0.0),
                if g["saturated"].as_bool() == Some(true) {
                    ": SATURATED, the generator, not the server, set these numbers"
                } else {
                    ""
                },
            ));
        }
        text.push_str(&format!(
            "  errors    {} (connect failures {}, lost {}, owed at the end {})\n",
            self.sum("errors"),
            self.sum("connect_failures"),
            self.sum("lost"),
            self.sum("owed_at_end"),
        ));
        for warning in self.warnings() {
            text.push_str(&format!("  warning   {warning}\n"));
        }
        text
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `echoplex report`; returns the process exit code.
pub fn run(args: Args) -> Outcome {
    let mut logs = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|err| {
            Failure::new(Exit::Io, format!("cannot read {name}: {}", describe(&err)))
        })?;
        // Read as it comes, folded interval by interval: memory stays
        // bounded whatever the file's length or claims.
        let log = Folded::read(std::io::BufReader::new(file))
            .map_err(|why| Failure::usage(format!("{name}: {why}")))?;
        logs.push((name, log));
    }
    let merged = merge(&logs).map_err(|why| Failure::usage(why.to_string()))?;
    let out = if args.json {
        format!("{}\n", merged.json())
    } else {
        merged.human()
    };
    for warning in merged.warnings() {
        eprintln!("echoplex report: warning: {warning}");
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    if merged.sum("errors") > 0
        || merged.sum("connect_failures") > 0
        || merged.sum("owed_at_end") > 0
    {
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(start: f64, tag: Option<&str>, values: &[u64]) -> Interval {
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for &v in values {
            histogram.record(v).expect("in range");
        }
        Interval {
            start,
            length: 1.0,
            tag: tag.map(str::to_string),
            histogram,
        }
    }

    fn log(start: f64, values: &[&[u64]], summary: Option<Value>) -> HdrLog {
        HdrLog {
            intervals: values
                .iter()
                .enumerate()
                .flat_map(|(i, v)| {
                    [
                        interval(start + i as f64, None, v),
                        interval(start + i as f64, Some(SERVICE_TAG), v),
                    ]
                })
                .collect(),
            summary,
        }
    }

    #[test]
    fn counts_add_and_percentiles_come_from_the_merged_histogram() {
        // Generator a: 99 fast echoes; b: 1 slow one. The mean of their
        // p99s would be ~25 ms; the merged p99 is the fast value.
        let fast = vec![100u64; 99];
        let a = log(
            1000.0,
            &[&fast[..50], &fast[50..]],
            Some(json!({"duration_s": 2.0, "errors": 1, "size": 64, "mode": "open", "rate": 50.0})),
        );
        let b = log(
            1000.5,
            &[&[50_000]],
            Some(json!({"duration_s": 1.0, "errors": 2, "size": 64, "mode": "open", "rate": 1.0})),
        );
        let folded = |log: &HdrLog| Folded::of(log).expect("folds");
        let merged = merge(&[("a".into(), folded(&a)), ("b".into(), folded(&b))]).expect("merges");
        assert_eq!(merged.messages(), 100);
        assert_eq!(merged.parts[0].messages + merged.parts[1].messages, 100);
        assert_eq!(merged.sum("errors"), 3);
        assert!(merged.latency.value_at_quantile(0.99) < 200);
        assert!(merged.latency.max() >= 49_000);
        assert!((merged.msgs_per_sec() - (99.0 / 2.0 + 1.0)).abs() < 1e-9);
        assert_eq!(merged.service.as_ref().map(Histogram::len), Some(100));
        let j = merged.json();
        assert_eq!(j["messages"], 100);
        assert_eq!(j["generators"], 2);
        assert_eq!(j["mode"], "open");
        assert_eq!(j["rate"], 51.0);
        assert_eq!(j["duration_s"], 2.0);
        assert!(merged.human().contains("100 echoed and verified"));
        assert!(merged.warnings().is_empty(), "b ran inside a's window");
    }

    #[test]
    fn logs_that_did_not_run_together_are_warned_about() {
        let a = log(1000.0, &[&[100], &[100]], Some(json!({"duration_s": 2.0})));
        let b = log(1016.0, &[&[100]], None);
        let folded = |log: &HdrLog| Folded::of(log).expect("folds");
        let merged = merge(&[("a".into(), folded(&a)), ("b".into(), folded(&b))]).expect("merges");
        let warnings = merged.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("14.0 s apart"), "{warnings:?}");
        assert_eq!(merged.json()["warnings"][0], json!(warnings[0]));
        // b is no echoplex log: nothing says its echoes were verified.
        assert!(merged.human().contains("3 recorded"), "{}", merged.human());
    }

    #[test]
    fn a_log_without_latency_is_refused() {
        let empty = HdrLog::default();
        let folded = Folded::of(&empty).expect("folds");
        let err = merge(&[("e".into(), folded)]).expect_err("nothing to merge");
        assert!(err.contains("no latency interval"), "{err}");
    }
}
