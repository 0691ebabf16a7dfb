//! The one parser of every "seconds" option (`--timeout`, `--duration`, ...).
//!
//! A float read straight from the command line can be NaN, infinite, negative or too
//! large for a `Duration` (or for an `Instant` plus it): `Duration::from_secs_f64`
//! panics on those. Rejecting them while clap parses makes each a usage error (exit
//! code 2) naming the option, instead of a crash (exit code 101) later.

/// The largest number of seconds any option accepts: 1,000,000 s (11.6 days). Far
/// beyond any experiment, far below what overflows a `Duration` or an `Instant`.
pub const MAX: f64 = 1e6;

/// Parses a number of seconds from 0 to [`MAX`] (fractions allowed), for clap's
/// `value_parser`. clap prefixes the error with the option and the value.
pub fn parse(text: &str) -> Result<f64, String> {
    let range = "expected a number of seconds from 0 to 1000000 (e.g. 0.5)";
    let secs: f64 = text.trim().parse().map_err(|_| range.to_string())?;
    // NaN fails both comparisons, so it lands here too.
    if (0.0..=MAX).contains(&secs) {
        // `-0` is in the range; hand back +0.0, the zero every caller means.
        Ok(secs.abs())
    } else {
        Err(range.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zero_fractions_and_the_maximum() {
        assert_eq!(parse("0"), Ok(0.0));
        assert_eq!(parse("0.3"), Ok(0.3));
        assert_eq!(parse("10"), Ok(10.0));
        assert_eq!(parse("1e6"), Ok(MAX));
    }

    #[test]
    fn rejects_what_would_panic_or_mean_nothing() {
        for bad in [
            "inf",
            "-inf",
            "Infinity",
            "nan",
            "NaN",
            "-1",
            "-0.001",
            "1e30",
            "1000000.5",
            "",
            "ten",
            "1s",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("seconds from 0 to 1000000"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_accepted_value_converts_to_a_duration_without_panicking() {
        for ok in ["0", "-0", "0.000000001", "1e6", "999999.999999999"] {
            let secs = parse(ok).unwrap();
            let _ = std::time::Duration::from_secs_f64(secs);
            let _ = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
        }
    }
}
