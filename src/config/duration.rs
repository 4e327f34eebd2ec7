//! Go-style durations (`3h`, `1h30m`, `500ms`, `10m0s`, `-1s`), parsed as Go's
//! `time.ParseDuration` does, so an upstream `config.yaml` means the same thing here.
//! Pure functions; imports nothing outside `std`.

use std::fmt;
use std::time::Duration;

/// A signed Go duration in nanoseconds. Signed because a few keys give `0` or a negative value a
/// meaning ("disabled", "do not wait").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration {
    nanos: i64,
}

/// Why a string is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("missing unit in duration {0:?} (use ns, us, ms, s, m or h)")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {0:?} (for example 30s, 1h30m, 500ms)")]
    Invalid(String),
    #[error("duration {0:?} is out of range")]
    Overflow(String),
}

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{00b5}s", 1_000),
    ("\u{03bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl GoDuration {
    /// Zero.
    pub const ZERO: GoDuration = GoDuration { nanos: 0 };

    /// A duration of `nanos` nanoseconds (what a bare YAML integer means for a Go duration key).
    pub const fn from_nanos(nanos: i64) -> GoDuration {
        GoDuration { nanos }
    }

    /// Parses `input` with Go's `time.ParseDuration` grammar: an optional sign, then one or more
    /// decimal numbers each followed by a unit; `0` alone needs no unit.
    ///
    /// ```
    /// use act_runner::config::GoDuration;
    /// use std::time::Duration;
    /// assert_eq!(GoDuration::parse("1h30m").unwrap().to_std(), Some(Duration::from_secs(5400)));
    /// assert!(GoDuration::parse("-1s").unwrap().is_negative());
    /// ```
    pub fn parse(input: &str) -> Result<GoDuration, DurationError> {
        let invalid = || DurationError::Invalid(input.to_owned());
        let (negative, mut rest) = match input.as_bytes().first() {
            None => return Err(DurationError::Empty),
            Some(b'-') => (true, &input[1..]),
            Some(b'+') => (false, &input[1..]),
            Some(_) => (false, input),
        };
        if rest == "0" {
            return Ok(GoDuration::ZERO);
        }
        if rest.is_empty() {
            return Err(invalid());
        }
        // Accumulate in u128 nanoseconds with a fractional part scaled exactly, then range-check.
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let int_part = &rest[..int_len];
            rest = &rest[int_len..];
            let mut frac_part = "";
            if let Some(after_dot) = rest.strip_prefix('.') {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                frac_part = &after_dot[..frac_len];
                rest = &after_dot[frac_len..];
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(invalid());
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| *c == '.' || c.is_ascii_digit())
                .map_or(rest.len(), |(idx, _)| idx);
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            if unit.is_empty() {
                return Err(DurationError::MissingUnit(input.to_owned()));
            }
            let scale = NANOS_PER_UNIT
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                })?;
            let overflow = || DurationError::Overflow(input.to_owned());
            let whole: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse::<u128>().map_err(|_| overflow())?
            };
            let mut part = whole.checked_mul(scale).ok_or_else(overflow)?;
            // Go truncates fractional digits beyond nanosecond precision; so do we.
            let mut divisor: u128 = 1;
            let mut frac_value: u128 = 0;
            for digit in frac_part.bytes().take(30) {
                frac_value = frac_value * 10 + u128::from(digit - b'0');
                divisor *= 10;
            }
            part = part
                .checked_add(frac_value * scale / divisor)
                .ok_or_else(overflow)?;
            total = total.checked_add(part).ok_or_else(overflow)?;
            if total > i64::MAX as u128 + u128::from(negative) {
                return Err(overflow());
            }
        }
        let nanos = if negative {
            (-(total as i128)) as i64
        } else {
            total as i64
        };
        Ok(GoDuration { nanos })
    }

    /// Nanoseconds, signed.
    pub const fn as_nanos(self) -> i64 {
        self.nanos
    }

    /// True for values below zero.
    pub const fn is_negative(self) -> bool {
        self.nanos < 0
    }

    /// True for zero and negative values, which several keys treat as "use the default" or "off".
    pub const fn is_non_positive(self) -> bool {
        self.nanos <= 0
    }

    /// The duration as a `std` one, or `None` when negative.
    pub fn to_std(self) -> Option<Duration> {
        u64::try_from(self.nanos).ok().map(Duration::from_nanos)
    }
}

impl fmt::Display for GoDuration {
    /// Formats as Go's `Duration.String` does for whole units (`1h30m0s`, `500ms`, `0s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let nanos = self.nanos.unsigned_abs();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            let (value, unit) = if nanos.is_multiple_of(1_000_000) {
                (nanos / 1_000_000, "ms")
            } else if nanos.is_multiple_of(1_000) {
                (nanos / 1_000, "µs")
            } else {
                (nanos, "ns")
            };
            return write!(f, "{sign}{value}{unit}");
        }
        let hours = nanos / 3_600_000_000_000;
        let minutes = nanos / 60_000_000_000 % 60;
        let secs = nanos / 1_000_000_000 % 60;
        let sub = nanos % 1_000_000_000;
        write!(f, "{sign}")?;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if sub == 0 {
            write!(f, "{secs}s")
        } else {
            let frac = format!("{sub:09}");
            write!(f, "{secs}.{}s", frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, nanos: i64) {
        assert_eq!(
            GoDuration::parse(input),
            Ok(GoDuration::from_nanos(nanos)),
            "{input}"
        );
    }

    #[test]
    fn parses_go_duration_strings() {
        check("3h", 3 * 3_600_000_000_000);
        check("1h30m", 5_400_000_000_000);
        check("500ms", 500_000_000);
        check("10m0s", 600_000_000_000);
        check("0s", 0);
        check("0", 0);
        check("-0", 0);
        check("1.5h", 5_400_000_000_000);
        check(".5s", 500_000_000);
        check("1.s", 1_000_000_000);
        check("300us", 300_000);
        check("300µs", 300_000);
        check("300μs", 300_000);
        check("2ns", 2);
        check("-1s", -1_000_000_000);
        check("+5s", 5_000_000_000);
        check("1h1m1s1ms1us1ns", 3_661_001_001_001);
        check("9223372036854775807ns", i64::MAX);
        check("-9223372036854775808ns", i64::MIN);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for input in [
            "", "1", "10", "-", "s", "1x", "1h 30m", "h1", "..5s", "1.2.3s", " 1s",
        ] {
            assert!(
                GoDuration::parse(input).is_err(),
                "{input:?} should be invalid"
            );
        }
        assert!(matches!(
            GoDuration::parse("5"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            GoDuration::parse("5d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            GoDuration::parse("9223372036854775808ns"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            GoDuration::parse("999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn displays_like_go() {
        for (input, shown) in [
            ("90m", "1h30m0s"),
            ("500ms", "500ms"),
            ("0", "0s"),
            ("1.5s", "1.5s"),
            ("-2m", "-2m0s"),
            ("3h", "3h0m0s"),
            ("2us", "2µs"),
        ] {
            assert_eq!(GoDuration::parse(input).unwrap().to_string(), shown);
        }
    }
}
