//! The reference service's own variables, declared through the library's settings API: read
//! and validated with rodent's (exit 78, each named), shown by `rodent config`, and re-read on
//! SIGHUP where they say so.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Uri;
use axum::http::uri::Scheme;
use rodent::config::{Reader, Var, format_duration, parse};

/// The most backends `RODENT_BACKENDS` may name: each is called for every `POST /echo`.
pub(crate) const MAX_BACKENDS: usize = 16;

/// What the reference service reads beyond rodent's own variables.
pub(crate) struct Settings {
    /// `RODENT_FAULT_ERROR_RATE` and `RODENT_FAULT_DELAY`, reloadable.
    pub(crate) faults: FaultSet,
    /// `RODENT_FAULT_UNREADY`: never ready.
    pub(crate) unready: bool,
    /// `RODENT_FAULT_UNHEALTHY`: `/healthz` fails.
    pub(crate) unhealthy: bool,
    /// `RODENT_BACKENDS`, reloadable: where `POST /echo` forwards.
    pub(crate) backends: Arc<[Uri]>,
}

impl Settings {
    pub(crate) fn read(vars: &mut Reader) -> Self {
        let error_rate =
            vars.get(Var::new("RODENT_FAULT_ERROR_RATE", "0", error_rate).reloadable());
        let delay = vars.get(Var::optional("RODENT_FAULT_DELAY", DelayRange::parse).reloadable());
        Self {
            faults: FaultSet { error_rate, delay },
            unready: vars.get(Var::new("RODENT_FAULT_UNREADY", "false", parse::flag)),
            unhealthy: vars.get(Var::new("RODENT_FAULT_UNHEALTHY", "false", parse::flag)),
            backends: vars.get(Var::new("RODENT_BACKENDS", "", backends).reloadable()),
        }
    }
}

/// The faults injected into application requests.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct FaultSet {
    /// The share of requests answered 500, from 0 to 1.
    pub(crate) error_rate: f64,
    /// The range each request's extra wait is drawn from.
    pub(crate) delay: Option<DelayRange>,
}

impl FaultSet {
    /// Whether any fault is injected at all.
    pub(crate) fn any(&self) -> bool {
        self.error_rate > 0.0 || self.delay.is_some_and(|d| !d.max.is_zero())
    }
}

/// A probability from 0 to 1, such as `0.25`.
pub(crate) fn error_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("a probability from 0 to 1, such as 0.25".to_string()),
    }
}

/// `MIN..MAX`, or `MAX` alone for `0..MAX`: each request waits a time drawn uniformly from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DelayRange {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl DelayRange {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let expected =
            |why: &str| format!("MIN..MAX or MAX, each a duration such as 100ms or 2s ({why})");
        let (min, max) = match raw.trim().split_once("..") {
            Some((min, max)) => (min, max),
            None => ("0", raw),
        };
        let min = parse::duration(min).map_err(|e| expected(&e))?;
        let max = parse::duration(max).map_err(|e| expected(&e))?;
        if min > max {
            return Err(expected("MIN is longer than MAX"));
        }
        Ok(Self { min, max })
    }

    /// A wait drawn uniformly from the range, to the microsecond.
    pub(crate) fn sample(&self) -> Duration {
        let (min, max) = (self.min.as_micros(), self.max.as_micros());
        // Both at most a day (the duration parser's bound): the microseconds fit in a u64.
        let micros = rand::random_range(min as u64..=max as u64);
        Duration::from_micros(micros)
    }
}

impl fmt::Display for DelayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}..{}",
            format_duration(self.min),
            format_duration(self.max)
        )
    }
}

/// Comma-separated `http://` or `https://` URLs; one without a path means the backend's
/// `/echo`, so that `http://backend:8080` chains to another rodent. Blank items are skipped.
fn backends(raw: &str) -> Result<Arc<[Uri]>, String> {
    let mut backends = Vec::new();
    for item in raw
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        backends.push(backend(item)?);
    }
    if backends.len() > MAX_BACKENDS {
        return Err(format!("at most {MAX_BACKENDS} comma-separated URLs"));
    }
    Ok(backends.into())
}

fn backend(raw: &str) -> Result<Uri, String> {
    let expected = |why: String| {
        format!(
            "comma-separated http:// or https:// URLs, such as http://backend:8080/echo ({why})"
        )
    };
    let uri: Uri = raw.parse().map_err(|e| expected(format!("{raw:?}: {e}")))?;
    let scheme = uri.scheme().cloned();
    if scheme != Some(Scheme::HTTP) && scheme != Some(Scheme::HTTPS) {
        return Err(expected(format!("{raw:?} is not http:// or https://")));
    }
    let Some(authority) = uri.authority() else {
        return Err(expected(format!("{raw:?} names no host")));
    };
    if authority.as_str().contains('@') {
        return Err(expected(format!("{raw:?} carries credentials")));
    }
    let path = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("" | "/") => "/echo",
        Some(path) => path,
    };
    Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("http"))
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| expected(format!("{raw:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_a_range_or_its_maximum() {
        let range = DelayRange::parse("100ms..2s").unwrap();
        assert_eq!(range.min, Duration::from_millis(100));
        assert_eq!(range.max, Duration::from_secs(2));
        assert_eq!(range.to_string(), "100ms..2s");
        let max = DelayRange::parse("300ms").unwrap();
        assert_eq!(
            (max.min, max.max),
            (Duration::ZERO, Duration::from_millis(300))
        );
        for bad in ["2s..1s", "fast", "1s..", "..1s", "25h"] {
            assert!(DelayRange::parse(bad).is_err(), "{bad}");
        }
        for _ in 0..100 {
            let wait = range.sample();
            assert!((range.min..=range.max).contains(&wait), "{wait:?}");
        }
    }

    #[test]
    fn an_error_rate_is_a_probability() {
        assert_eq!(error_rate("0.25"), Ok(0.25));
        assert_eq!(error_rate("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "half", "25%"] {
            assert!(error_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backends_are_http_urls_and_a_bare_host_means_its_echo() {
        let list = backends("http://b:8080, https://c/api/echo ,").unwrap();
        assert_eq!(list[0], "http://b:8080/echo");
        assert_eq!(list[1], "https://c/api/echo");
        assert!(backends("").unwrap().is_empty());
        for bad in ["ftp://b", "b:8080", "http://user:pw@b/", "http://"] {
            assert!(backends(bad).is_err(), "{bad}");
        }
        let many = vec!["http://b"; MAX_BACKENDS + 1].join(",");
        assert!(backends(&many).is_err());
    }
}
