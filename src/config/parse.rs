//! Parsers for single configuration values. Each returns what was expected on failure, so the
//! caller can name the variable and the bad value next to it.

use std::net::IpAddr;
use std::time::Duration;

/// What a value should have looked like; the caller adds the variable name and the value.
pub(crate) type Expected = String;

/// Parses `500ms`, `5s`, `2m`, `1h` or a bare `0`.
///
/// Units are required (a bare `5` could mean seconds or milliseconds) except for zero, which is
/// the same in every unit.
pub fn duration(raw: &str) -> Result<Duration, Expected> {
    let expected = || "a duration such as 500ms, 5s or 2m (units: ms, s, m, h)".to_string();
    let raw = raw.trim();
    if raw == "0" {
        return Ok(Duration::ZERO);
    }
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(expected)?;
    let (digits, unit) = raw.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| expected())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected()),
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "a duration that fits in 64 bits of milliseconds".to_string())
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

pub fn ip_addr(raw: &str) -> Result<IpAddr, Expected> {
    let trimmed = raw.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse()
        .map_err(|_| "an IPv4 or IPv6 address such as 0.0.0.0 or ::".to_string())
}

pub fn port(raw: &str) -> Result<u16, Expected> {
    raw.trim()
        .parse()
        .map_err(|_| "a port number from 0 to 65535 (0 picks a free port)".to_string())
}

/// A plain non-negative integer (a count or a size in bytes), optionally with a lower bound.
pub fn count(raw: &str, at_least: usize) -> Result<usize, Expected> {
    let expected = || {
        if at_least == 0 {
            "a non-negative integer".to_string()
        } else {
            format!("an integer of at least {at_least}")
        }
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if n >= at_least => Ok(n),
        _ => Err(expected()),
    }
}

/// One of a fixed set of lower-case words.
pub fn choice<T: Copy>(raw: &str, options: &[(&str, T)]) -> Result<T, Expected> {
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
pub fn log_filter(raw: &str) -> Result<String, Expected> {
    tracing_subscriber::EnvFilter::builder()
        .parse(raw)
        .map(|_| raw.trim().to_string())
        .map_err(|e| {
            format!("tracing filter directives such as info or rodent=debug,hyper=warn ({e})")
        })
}

/// A bearer token must fit in an HTTP header without quoting.
pub fn token(raw: &str) -> Result<String, Expected> {
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
    fn counts_respect_their_bound() {
        assert_eq!(count("0", 0), Ok(0));
        assert!(count("0", 1).is_err());
        assert!(count("-3", 0).is_err());
        assert!(count("1kb", 0).is_err());
    }

    #[test]
    fn tokens_must_be_header_safe() {
        assert!(token("s3cr3t-token").is_ok());
        assert!(token("two words").is_err());
        assert!(token("").is_err());
    }
}
