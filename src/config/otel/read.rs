//! Reading the `OTEL_*` variables: each value parsed and checked as the OpenTelemetry
//! specification defines it, every problem kept.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Uri};

use super::{Batch, Export, MAX_QUEUE_SIZE, Off, Propagator, Protocol, Sampler, Settings};
use crate::config::error::ConfigError;
use crate::config::parse::{MAX_DURATION, format_duration, number};
use crate::config::source::Vars;

/// `OTEL_PROPAGATORS` alone.
pub(super) fn propagators(vars: &Vars) -> Vec<Propagator> {
    Reader::new(vars, "").propagators()
}

/// The problems with `OTEL_PROPAGATORS` alone.
pub(super) fn propagator_errors(vars: &Vars) -> Vec<ConfigError> {
    let mut read = Reader::new(vars, "");
    read.propagators();
    read.errors
}

pub(super) fn settings(vars: &Vars, service_name: &str) -> Result<Settings, Vec<ConfigError>> {
    let mut read = Reader::new(vars, service_name);
    let settings = read.settings();
    if read.errors.is_empty() {
        Ok(settings)
    } else {
        Err(read.errors)
    }
}

pub(super) struct Reader<'a> {
    vars: &'a Vars,
    /// The service's name unless the variables say otherwise.
    service_name: &'a str,
    pub(super) errors: Vec<ConfigError>,
}

pub(super) type Parsed<T> = Result<T, String>;

impl<'a> Reader<'a> {
    fn new(vars: &'a Vars, service_name: &'a str) -> Self {
        Self {
            vars,
            service_name,
            errors: Vec::new(),
        }
    }

    fn settings(&mut self) -> Settings {
        let disabled = self.parse("OTEL_SDK_DISABLED", false, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err("true or false".into()),
            }
        });
        let exporter_on = self.parse("OTEL_TRACES_EXPORTER", true, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "otlp" => Ok(true),
                "none" => Ok(false),
                _ => Err("otlp or none (the only exporters this build has)".into()),
            }
        });
        let protocol = self.signal("PROTOCOL", Protocol::HttpProtobuf, protocol);
        let endpoint = self.endpoint(protocol);
        let headers = self.signal("HEADERS", Vec::new(), headers);
        let timeout = self.signal("TIMEOUT", Duration::from_secs(10), |raw| millis(raw, 1));
        let gzip = self.signal("COMPRESSION", false, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "gzip" => Ok(true),
                "none" => Ok(false),
                _ => Err("gzip or none".into()),
            }
        });
        let tls = self.tls();
        let resource = self.resource();
        let sampler = self.sampler();
        let batch = self.batch();
        let propagators = self.propagators();

        let export = match endpoint {
            _ if disabled => Err(Off::SdkDisabled),
            _ if !exporter_on => Err(Off::ExporterNone),
            None => Err(Off::NoEndpoint),
            Some(endpoint) => Ok(Export {
                endpoint,
                protocol,
                headers,
                timeout,
                gzip,
                tls,
            }),
        };
        Settings {
            export,
            resource,
            sampler,
            batch,
            propagators,
        }
    }

    fn propagators(&mut self) -> Vec<Propagator> {
        let default = vec![Propagator::TraceContext, Propagator::Baggage];
        self.parse("OTEL_PROPAGATORS", default, propagator_list)
    }

    /// The value of a variable, `None` when unset or blank (the spec treats empty as unset).
    fn raw(&self, variable: &str) -> Option<&str> {
        self.vars
            .get(variable)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn parse<T>(
        &mut self,
        variable: &str,
        default: T,
        parse: impl FnOnce(&str) -> Parsed<T>,
    ) -> T {
        let Some(raw) = self.raw(variable) else {
            return default;
        };
        match parse(raw) {
            Ok(value) => value,
            Err(expected) => {
                self.errors
                    .push(ConfigError::invalid(variable, raw, expected));
                default
            }
        }
    }

    /// An exporter setting: `OTEL_EXPORTER_OTLP_TRACES_<NAME>` wins over
    /// `OTEL_EXPORTER_OTLP_<NAME>`. Both are validated.
    fn signal<T>(&mut self, name: &str, default: T, parse: impl Fn(&str) -> Parsed<T>) -> T {
        let general = self.parse(&format!("OTEL_EXPORTER_OTLP_{name}"), None, |r| {
            parse(r).map(Some)
        });
        let traces = self.parse(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"), None, |r| {
            parse(r).map(Some)
        });
        traces.or(general).unwrap_or(default)
    }

    /// The traces URL. For http/protobuf, a general endpoint gets `/v1/traces` appended and a
    /// traces endpoint is used as it is, as the OTLP exporter specification says; gRPC uses the
    /// address alone.
    fn endpoint(&mut self, protocol: Protocol) -> Option<String> {
        let general = self.parse("OTEL_EXPORTER_OTLP_ENDPOINT", None, |r| {
            endpoint(r).map(Some)
        });
        let traces = self.parse("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None, |r| {
            endpoint(r).map(Some)
        });
        match (traces, general) {
            (Some(url), _) => Some(url),
            (None, Some(base)) if protocol == Protocol::HttpProtobuf => {
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            (None, base) => base,
        }
    }

    fn resource(&mut self) -> Vec<(String, String)> {
        let mut attributes = self.parse("OTEL_RESOURCE_ATTRIBUTES", Vec::new(), |raw| {
            key_values(
                raw,
                "key=value pairs separated by commas, values percent-encoded",
            )
        });
        let service_name = self.parse("OTEL_SERVICE_NAME", None, |raw| Ok(Some(raw.to_string())));
        let from_attributes = attributes
            .iter()
            .position(|(k, _)| k == "service.name")
            .map(|i| attributes.remove(i).1);
        let name = service_name
            .or(from_attributes)
            .unwrap_or_else(|| self.service_name.to_string());
        attributes.insert(0, ("service.name".to_string(), name));
        attributes
    }

    fn sampler(&mut self) -> Sampler {
        let ratio = |reader: &mut Self| {
            reader.parse("OTEL_TRACES_SAMPLER_ARG", 1.0, |raw| {
                match raw.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err("a probability from 0 to 1, such as 0.25".into()),
                }
            })
        };
        let name = self.parse("OTEL_TRACES_SAMPLER", None, |raw| {
            let name = raw.to_ascii_lowercase();
            match name.as_str() {
                "always_on"
                | "always_off"
                | "traceidratio"
                | "parentbased_always_on"
                | "parentbased_always_off"
                | "parentbased_traceidratio" => Ok(Some(name)),
                _ => Err(
                    "one of always_on, always_off, traceidratio, parentbased_always_on, \
                          parentbased_always_off, parentbased_traceidratio"
                        .into(),
                ),
            }
        });
        match name.as_deref() {
            Some("always_on") => Sampler::AlwaysOn,
            Some("always_off") => Sampler::AlwaysOff,
            Some("traceidratio") => Sampler::TraceIdRatio(ratio(self)),
            Some("parentbased_always_off") => Sampler::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => Sampler::ParentBasedTraceIdRatio(ratio(self)),
            _ => Sampler::ParentBasedAlwaysOn,
        }
    }

    fn batch(&mut self) -> Batch {
        let schedule_delay = self.parse("OTEL_BSP_SCHEDULE_DELAY", Duration::from_secs(5), |r| {
            millis(r, 1)
        });
        let export_timeout = self.parse("OTEL_BSP_EXPORT_TIMEOUT", Duration::from_secs(30), |r| {
            millis(r, 1)
        });
        let count = number(1..=MAX_QUEUE_SIZE);
        let max_queue_size = self.parse("OTEL_BSP_MAX_QUEUE_SIZE", 2048, &count);
        let max_export_batch_size = self.parse("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, &count);
        Batch {
            schedule_delay,
            export_timeout,
            max_queue_size,
            // The specification: a batch larger than the queue is the queue.
            max_export_batch_size: max_export_batch_size.min(max_queue_size),
        }
    }
}

fn protocol(raw: &str) -> Parsed<Protocol> {
    match raw.to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "grpc" => Ok(Protocol::Grpc),
        _ => Err("http/protobuf or grpc (http/json is not supported)".into()),
    }
}

/// An `http://` or `https://` URL with a host; `https` is exported over TLS.
fn endpoint(raw: &str) -> Parsed<String> {
    let expected = "an http:// or https:// URL such as http://otel-collector:4318";
    let uri: Uri = raw.parse().map_err(|_| expected.to_string())?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(authority)) if !authority.host().is_empty() => {
            Ok(raw.to_string())
        }
        _ => Err(expected.to_string()),
    }
}

/// `OTEL_PROPAGATORS`: a comma-separated list, or `none`.
fn propagator_list(raw: &str) -> Parsed<Vec<Propagator>> {
    let expected = "a comma-separated list of tracecontext, baggage, b3, b3multi, or none";
    let names: Vec<String> = raw
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    if names == ["none"] {
        return Ok(Vec::new());
    }
    let mut list = Vec::new();
    for name in names {
        let propagator = match name.as_str() {
            "tracecontext" => Propagator::TraceContext,
            "baggage" => Propagator::Baggage,
            "b3" => Propagator::B3,
            "b3multi" => Propagator::B3Multi,
            "none" => return Err(format!("{expected} (none stands alone)")),
            "jaeger" | "xray" | "ottrace" => {
                return Err(format!("{expected} ({name} is not supported)"));
            }
            _ => return Err(expected.to_string()),
        };
        if !list.contains(&propagator) {
            list.push(propagator);
        }
    }
    Ok(list)
}

/// `name=value,name2=value2`, values percent-encoded: the format of `OTEL_EXPORTER_OTLP_HEADERS`.
fn headers(raw: &str) -> Parsed<Vec<(String, String)>> {
    let expected = "name=value pairs separated by commas, values percent-encoded, \
                    such as api-key=secret";
    key_values(raw, expected)?
        .into_iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| expected.to_string())?;
            // Visible ASCII only, so the value reads back as a string for the HTTP exporter.
            HeaderValue::from_str(&v).map_err(|_| expected.to_string())?;
            Ok((name.as_str().to_string(), v))
        })
        .collect()
}

/// Comma-separated `key=value` pairs with percent-encoded values, as the W3C Baggage format the
/// OpenTelemetry specification uses for lists in variables.
fn key_values(raw: &str, expected: &str) -> Parsed<Vec<(String, String)>> {
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(|| expected.to_string())?;
            let key = key.trim();
            let value = percent_decode(value.trim()).ok_or_else(|| expected.to_string())?;
            if key.is_empty() {
                return Err(expected.to_string());
            }
            Ok((key.to_string(), value))
        })
        .collect()
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A whole number of milliseconds, the unit of every OpenTelemetry duration variable, up to
/// the longest duration any variable takes.
fn millis(raw: &str, at_least: u64) -> Parsed<Duration> {
    let at_most = MAX_DURATION.as_millis() as u64;
    match raw.parse::<u64>() {
        Ok(ms) if (at_least..=at_most).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "a whole number of milliseconds from {at_least} to {at_most} ({}), such as 10000",
            format_duration(MAX_DURATION)
        )),
    }
}
