//! The one way every subcommand reads a duration: a number of seconds,
//! fractions allowed, from 0 to a year.
//!
//! The upper bound keeps `Instant + duration` from overflowing; a year is
//! "never" for any practical purpose. Options for which 0 means nothing
//! (a timeout, an interval) use [`positive_secs`], which is the same rule
//! refused at parse time rather than by a later check.

use std::time::Duration;

/// Longest duration accepted, in seconds.
pub const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Parses seconds from 0 to a year (`0.2`, `5`, `1e-3`), for clap.
pub fn secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!("'{text}' is not between 0 and {MAX_SECS} seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' is not a duration"))
}

/// Like [`secs`], but 0 is refused: for timeouts and intervals.
pub fn positive_secs(text: &str) -> Result<Duration, String> {
    let duration = secs(text)?;
    if duration.is_zero() {
        return Err(format!("'{text}' must be more than 0 seconds"));
    }
    Ok(duration)
}

/// Seconds for people: `0.2 s`, `5 s`.
pub fn show(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_option() {
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert_eq!(secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(positive_secs("0").unwrap_err().contains("more than 0"));
        assert_eq!(positive_secs("2"), Ok(Duration::from_secs(2)));
        for bad in ["-1", "NaN", "inf", "1e12", "five", ""] {
            assert!(secs(bad).is_err(), "{bad}");
            assert!(positive_secs(bad).is_err(), "{bad}");
        }
        assert_eq!(show(Duration::from_millis(200)), "0.2 s");
    }
}
