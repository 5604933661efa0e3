//! `--sweep FROM:TO:STEP`: one open-loop run per rate, a table of what each
//! rate achieved and its latency, and the knee: the highest rate whose p99
//! stays under `--slo` with at least 99 % of its messages answered on time.
//! Passing the knee is what a sweep is for, not a failure.

use std::time::Duration;

use serde_json::json;

use super::load::run_load;
use super::plot::{sweep_svg, SweepPoint};
use super::report::{group, verdict};
use super::types::{LoadConfig, Observer, Report};
use super::units::duration;

/// A step's share answered on time that a knee needs.
pub const KNEE_ACHIEVED: f64 = 0.99;

/// Each step waits at most this long for owed messages, so a sweep keeps
/// its time budget (the steps' `-d`, plus this).
pub const STEP_WAIT: Duration = Duration::from_secs(1);

/// The rates of `FROM:TO:STEP`, or why not.
pub fn parse(text: &str) -> Result<Vec<f64>, String> {
    let bad = || {
        format!(
            "--sweep '{text}': give FROM:TO:STEP in messages per second, \
             such as 1000:10000:1000"
        )
    };
    let parts: Vec<f64> = text
        .split(':')
        .map(|p| p.trim().parse::<f64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [from, to, step] = parts[..] else {
        return Err(bad());
    };
    if !(from.is_finite() && to.is_finite() && step.is_finite())
        || from <= 0.0
        || to < from
        || step <= 0.0
        || to > 100_000_000.0
    {
        return Err(bad());
    }
    let count = ((to - from) / step + 1e-9).floor() as u64 + 1;
    if count > 1000 {
        return Err(format!("--sweep '{text}': {count} steps; at most 1000"));
    }
    Ok((0..count).map(|k| from + step * k as f64).collect())
}

/// One step's result.
pub struct Step {
    /// The offered rate.
    pub rate: f64,
    /// Its run.
    pub report: Report,
}

impl Step {
    fn within_slo(&self) -> bool {
        let slo = self.report.config.modes.slo().as_micros() as u64;
        !self.report.latency.is_empty()
            && self.report.quantile_us(0.99) < slo
            && self.report.achieved() >= KNEE_ACHIEVED
    }
}

/// Runs every rate in turn; stops early on Ctrl-C (the steps so far are
/// kept). `Err` only when the first step cannot reach the server.
pub fn run(
    config: &LoadConfig,
    rates: &[f64],
    observer: &mut dyn Observer,
) -> std::io::Result<Vec<Step>> {
    let mut steps = Vec::with_capacity(rates.len());
    for &rate in rates {
        let mut step = config.clone();
        step.modes.rate = Some(rate);
        step.modes.end_wait = Some(STEP_WAIT);
        let report = match run_load(&step, observer) {
            Ok(report) => report,
            Err(err) if steps.is_empty() => return Err(err),
            Err(_) => break,
        };
        let interrupted = report.interrupted;
        steps.push(Step { rate, report });
        if interrupted {
            break;
        }
    }
    Ok(steps)
}

/// The knee's index: the highest rate within the SLO.
pub fn knee(steps: &[Step]) -> Option<usize> {
    steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.within_slo())
        .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
        .map(|(i, _)| i)
}

fn slo_text(config: &LoadConfig) -> String {
    duration(config.modes.slo())
}

/// The table for people; the knee named on the last line.
pub fn human(config: &LoadConfig, steps: &[Step]) -> String {
    let d = match config.stop {
        super::types::Stop::Duration(d) => duration(d),
        super::types::Stop::Messages(n) => format!("{} messages", group(n)),
    };
    let mut text = format!(
        "{}: sweep of {} rates, {d} each, {} connections; on time = within {} of the due time\n",
        config.endpoint,
        steps.len(),
        config.connections,
        slo_text(config),
    );
    text.push_str(&format!(
        "  {:>12}  {:>8}  {:>10}  {:>10}  {:>10}  verdict\n",
        "rate", "achieved", "p50 µs", "p99 µs", "p99.9 µs"
    ));
    let knee = knee(steps);
    for (i, step) in steps.iter().enumerate() {
        let r = &step.report;
        let q = |q: f64| {
            if r.latency.is_empty() {
                "-".to_string()
            } else {
                group(r.quantile_us(q))
            }
        };
        text.push_str(&format!(
            "{} {:>12}  {:>7.1}%  {:>10}  {:>10}  {:>10}  {}\n",
            if knee == Some(i) { '>' } else { ' ' },
            group(step.rate.round() as u64),
            100.0 * r.achieved(),
            q(0.5),
            q(0.99),
            q(0.999),
            verdict(r),
        ));
    }
    match knee {
        Some(i) => text.push_str(&format!(
            "knee: {} msgs/s, the highest rate with p99 under {} and at least {:.0} % answered on time\n",
            group(steps[i].rate.round() as u64),
            slo_text(config),
            KNEE_ACHIEVED * 100.0
        )),
        None => text.push_str(&format!(
            "knee: none; no rate kept p99 under {} with at least {:.0} % answered on time\n",
            slo_text(config),
            KNEE_ACHIEVED * 100.0
        )),
    }
    text
}

/// One JSON array, an object per rate; the knee's has `"knee": true`.
pub fn json(steps: &[Step]) -> serde_json::Value {
    let knee = knee(steps);
    serde_json::Value::Array(
        steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let r = &step.report;
                let c = &r.counters;
                let latency = (!r.latency.is_empty()).then(|| {
                    json!({
                        "p50": r.quantile_us(0.5),
                        "p99": r.quantile_us(0.99),
                        "p999": r.quantile_us(0.999),
                    })
                });
                let mut v = json!({
                    "rate": step.rate,
                    "achieved": (r.achieved() * 10_000.0).round() / 10_000.0,
                    "latency_us": latency,
                    "messages": c.messages,
                    "owed_at_end": c.owed_at_end,
                    "errors": c.errors,
                    "lost": c.lost,
                    "verdict": verdict(r),
                });
                if knee == Some(i) {
                    v["knee"] = json!(true);
                }
                v
            })
            .collect(),
    )
}

/// Latency against offered load.
pub fn svg(config: &LoadConfig, steps: &[Step]) -> String {
    let knee = knee(steps);
    let points: Vec<SweepPoint> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.report.latency.is_empty())
        .map(|(i, s)| SweepPoint {
            rate: s.rate,
            latency: [
                s.report.quantile_us(0.5),
                s.report.quantile_us(0.99),
                s.report.quantile_us(0.999),
            ],
            knee: knee == Some(i),
        })
        .collect();
    let title = format!(
        "{}: latency against offered load, {} connections",
        config.endpoint, config.connections
    );
    sweep_svg(&title, &points, config.modes.slo().as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_to_step() {
        assert_eq!(
            parse("1000:3000:1000").expect("ok"),
            [1000.0, 2000.0, 3000.0]
        );
        assert_eq!(parse("0.5:1:0.25").expect("ok"), [0.5, 0.75, 1.0]);
        assert_eq!(parse("5:5:1").expect("ok"), [5.0]);
        for bad in [
            "", "1:2", "0:10:1", "10:1:1", "1:10:0", "a:b:c", "1:2:3:4", "1:1e9:1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
