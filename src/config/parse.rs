//! Parsers for single values, for rodent's variables and an application's own
//! ([`Var`](super::Var)). Each returns what was expected on failure, so the caller can name the
//! variable and the bad value next to it. Every number has an upper bound: a value past it is
//! refused here, never wrapped or saturated later.

use std::fmt::Display;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use super::Secret;

/// What a value should have looked like; the caller adds the variable name and the value.
pub(crate) type Expected = String;

/// The longest duration any variable takes: a day. Anything longer is a mistake (a grace
/// period no orchestrator waits for, a timeout no client waits for), and a bound keeps every
/// deadline computed from one far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses `500ms`, `5s`, `2m`, `1h` or a bare `0`, up to [`MAX_DURATION`].
///
/// Units are required (a bare `5` could mean seconds or milliseconds) except for zero, which is
/// the same in every unit.
pub fn duration(raw: &str) -> Result<Duration, String> {
    let expected = || "a duration such as 500ms, 5s or 2m (units: ms, s, m, h)".to_string();
    let raw = raw.trim();
    if raw == "0" {
        return Ok(Duration::ZERO);
    }
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(expected)?;
    let (digits, unit) = raw.split_at(split);
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected()),
    };
    let too_long = || format!("a duration of at most {}", format_duration(MAX_DURATION));
    if digits.is_empty() {
        return Err(expected());
    }
    // Digits beyond what a u64 holds are too long, not malformed.
    let amount: u64 = digits.parse().map_err(|_| too_long())?;
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(too_long)
}

/// Any text, as given (surrounding blanks trimmed).
pub fn text(raw: &str) -> Result<String, String> {
    Ok(raw.trim().to_string())
}

/// A secret (a password, an API key): kept as given, and never shown.
pub fn secret(raw: &str) -> Result<Secret, String> {
    Ok(Secret::new(raw))
}

/// `true` or `false`.
pub fn flag(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false".to_string()),
    }
}

/// A whole number within `range`: both bounds are part of the declaration, so that no value
/// can overflow what the program computes from it.
pub fn number<T>(range: RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String> + Send + Sync
where
    T: FromStr + PartialOrd + Display + Send + Sync,
{
    move |raw| match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

/// Renders a duration in the largest unit that represents it exactly, so `rodent config` prints
/// what a user would have written.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

pub(crate) fn ip_addr(raw: &str) -> Result<IpAddr, Expected> {
    let trimmed = raw.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse()
        .map_err(|_| "an IPv4 or IPv6 address such as 0.0.0.0 or ::".to_string())
}

pub(crate) fn port(raw: &str) -> Result<u16, Expected> {
    raw.trim()
        .parse()
        .map_err(|_| "a port number from 0 to 65535 (0 picks a free port)".to_string())
}

/// A count or a size in bytes, from `at_least` to `at_most`.
pub(crate) fn count(raw: &str, at_least: usize, at_most: usize) -> Result<usize, Expected> {
    number(at_least..=at_most)(raw)
}

/// One of a fixed set of lower-case words.
pub(crate) fn choice<T: Copy>(raw: &str, options: &[(&str, T)]) -> Result<T, Expected> {
    let wanted = raw.trim().to_ascii_lowercase();
    options
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            format!("one of {}", names.join(", "))
        })
}

/// Checks tracing filter directives (`info`, `rodent=debug,hyper=warn`).
pub(crate) fn log_filter(raw: &str) -> Result<String, Expected> {
    tracing_subscriber::EnvFilter::builder()
        .parse(raw)
        .map(|_| raw.trim().to_string())
        .map_err(|e| {
            format!("tracing filter directives such as info or rodent=debug,hyper=warn ({e})")
        })
}

/// A bearer token must fit in an HTTP header without quoting.
pub(crate) fn token(raw: &str) -> Result<String, Expected> {
    let ok = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(raw.to_string())
    } else {
        Err("visible ASCII characters with no spaces (it is sent as a bearer token)".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_documented_units() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(duration("24h"), Ok(MAX_DURATION));
    }

    #[test]
    fn durations_refuse_what_is_ambiguous_or_wrong() {
        for bad in [
            "5",
            "",
            "s",
            "-1s",
            "1.5s",
            "5 s",
            "5sec",
            "abc",
            "99999999999999999999h",
            "25h",
            "86400001ms",
            "18446744073709551615s",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["0s", "500ms", "5s", "2m", "1h", "1500ms", "90s"] {
            assert_eq!(format_duration(duration(text).unwrap()), text);
        }
    }

    #[test]
    fn addresses_and_ports() {
        assert!(ip_addr("0.0.0.0").is_ok());
        assert!(ip_addr("::").is_ok());
        assert!(ip_addr("[::1]").is_ok());
        assert!(ip_addr("localhost").is_err());
        assert_eq!(port("0"), Ok(0));
        assert!(port("65536").is_err());
        assert!(port("abc").is_err());
    }

    #[test]
    fn counts_respect_their_bounds() {
        assert_eq!(count("0", 0, 10), Ok(0));
        assert_eq!(count("10", 0, 10), Ok(10));
        assert!(count("11", 0, 10).is_err());
        assert!(count("0", 1, 10).is_err());
        assert!(count("-3", 0, 10).is_err());
        assert!(count("1kb", 0, 10).is_err());
        assert!(count("18446744073709551615", 0, usize::MAX - 1).is_err());
        assert_eq!(
            number(1u16..=100)("101"),
            Err("a whole number from 1 to 100".to_string())
        );
    }

    #[test]
    fn tokens_must_be_header_safe() {
        assert!(token("s3cr3t-token").is_ok());
        assert!(token("two words").is_err());
        assert!(token("").is_err());
    }
}
