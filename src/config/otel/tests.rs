//! The `OTEL_*` variables as rodent reads them: defaults, precedence, and every bad value
//! reported by name.

use super::*;

fn read(pairs: &[(&str, &str)]) -> Result<Settings, Vec<ConfigError>> {
    let vars: Vars = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_vars(&vars)
}

fn variables(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().filter_map(ConfigError::variable).collect()
}

#[test]
fn nothing_is_exported_without_an_endpoint() {
    let settings = read(&[]).unwrap();
    assert_eq!(settings.export, Err(Off::NoEndpoint));
    assert_eq!(settings.sampler, Sampler::ParentBasedAlwaysOn);
    assert_eq!(
        settings.resource,
        vec![("service.name".to_string(), "rodent".to_string())]
    );
}

#[test]
fn a_general_endpoint_gets_the_traces_path_and_a_traces_endpoint_is_used_as_is() {
    let export = |pairs: &[(&str, &str)]| read(pairs).unwrap().export.unwrap();
    let general = export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
    assert_eq!(general.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(general.protocol, Protocol::HttpProtobuf);
    let traces = export(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/custom",
        ),
    ]);
    assert_eq!(traces.endpoint, "http://collector:4318/custom");
    let grpc = export(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]);
    assert_eq!(grpc.endpoint, "http://collector:4317");
    assert_eq!(grpc.protocol, Protocol::Grpc);
}

#[test]
fn the_sdk_can_be_disabled_whatever_the_endpoint() {
    let settings = read(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_SDK_DISABLED", "TRUE"),
    ])
    .unwrap();
    assert_eq!(settings.export, Err(Off::SdkDisabled));
    let settings = read(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ])
    .unwrap();
    assert_eq!(settings.export, Err(Off::ExporterNone));
}

#[test]
fn headers_timeouts_and_compression_prefer_the_traces_variables() {
    let export = read(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "Api-Key=s%3Dcret, tenant=acme",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
    ])
    .unwrap()
    .export
    .unwrap();
    let headers: Vec<(&str, &str)> = export
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(headers, vec![("api-key", "s=cret"), ("tenant", "acme")]);
    assert_eq!(export.timeout, Duration::from_millis(2500));
    assert!(export.gzip);
}

#[test]
fn the_service_name_comes_from_the_name_then_the_attributes_then_the_default() {
    let resource = |pairs: &[(&str, &str)]| read(pairs).unwrap().resource;
    assert_eq!(
        resource(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=ignored,deployment.environment.name=prod%20eu"
            ),
        ]),
        vec![
            ("service.name".into(), "checkout".into()),
            ("deployment.environment.name".into(), "prod eu".into()),
        ]
    );
    assert_eq!(
        resource(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=cart")])[0].1,
        "cart"
    );
}

#[test]
fn samplers_take_their_argument() {
    let sampler = |pairs: &[(&str, &str)]| read(pairs).unwrap().sampler;
    assert_eq!(
        sampler(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]),
        Sampler::ParentBasedTraceIdRatio(0.25)
    );
    assert_eq!(
        sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio")]),
        Sampler::TraceIdRatio(1.0)
    );
    // The argument means nothing to the other samplers, as the specification says.
    assert_eq!(
        sampler(&[
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OTEL_TRACES_SAMPLER_ARG", "nonsense")
        ]),
        Sampler::AlwaysOff
    );
}

#[test]
fn every_bad_value_is_reported_by_name_and_secrets_stay_masked() {
    let errors = read(&[
        ("OTEL_SDK_DISABLED", "yes"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_TRACES_SAMPLER", "xray"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=%zz"),
    ])
    .unwrap_err();
    assert_eq!(
        variables(&errors),
        vec![
            "OTEL_SDK_DISABLED",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_TRACES_SAMPLER",
            "OTEL_BSP_MAX_QUEUE_SIZE",
        ]
    );
    let headers = &errors[3];
    assert!(matches!(headers, ConfigError::Invalid { value, .. } if value == "***"));
    let ratio = read(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
    ])
    .unwrap_err();
    assert_eq!(variables(&ratio), vec!["OTEL_TRACES_SAMPLER_ARG"]);
}
