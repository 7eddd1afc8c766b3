//! The `OTEL_*` variables as rodent reads them: defaults, precedence, and every bad value
//! reported by name.

use super::*;

fn read(pairs: &[(&str, &str)]) -> Result<Settings, Vec<ConfigError>> {
    let vars: Vars = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_vars(&vars, "rodent")
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
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector:4318"),
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

#[test]
fn propagators_default_to_w3c_and_take_a_list_or_none() {
    use Propagator::*;
    let propagators = |value: &str| read(&[("OTEL_PROPAGATORS", value)]).map(|s| s.propagators);
    assert_eq!(read(&[]).unwrap().propagators, vec![TraceContext, Baggage]);
    assert_eq!(
        propagators(" B3multi , tracecontext,b3multi").unwrap(),
        vec![B3Multi, TraceContext]
    );
    assert_eq!(propagators("b3").unwrap(), vec![B3]);
    assert_eq!(propagators("none").unwrap(), Vec::new());
    for bad in ["none,b3", "jaeger", "tracecontext,w3c"] {
        let errors = propagators(bad).unwrap_err();
        assert_eq!(variables(&errors), vec!["OTEL_PROPAGATORS"], "{bad}");
    }
}

/// PEM files made for the test: a CA, a client certificate it signed and its key.
struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("rodent-otel-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn tls_files_prefer_the_traces_variables_and_pair_a_certificate_with_its_key() {
    let files = Files::new("pairs");
    let settings = read(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &files.path("client.pem")),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            &files.path("ca.pem"),
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            &files.path("client.pem"),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &files.path("client.key")),
    ])
    .unwrap();
    let export = settings.export.unwrap();
    assert!(export.is_https());
    let ca = export.tls.ca.as_ref().expect("a CA");
    assert_eq!(ca.path.display().to_string(), files.path("ca.pem"));
    assert_eq!(export.tls.describe(), "private CA, client certificate");
    assert!(export.tls.client_config().is_ok());
    // A key's contents never reach a log through Debug.
    assert!(!format!("{:?}", export.tls).contains("PRIVATE KEY"));

    let mismatched = read(&[
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            &files.path("client.pem"),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &files.path("other.key")),
    ])
    .unwrap_err();
    assert_eq!(
        variables(&mismatched),
        vec!["OTEL_EXPORTER_OTLP_CLIENT_KEY"]
    );
    let half = read(&[(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        &files.path("client.pem"),
    )])
    .unwrap_err();
    assert_eq!(
        variables(&half),
        vec!["OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"]
    );
    let missing =
        read(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", &files.path("nothing.pem"))]).unwrap_err();
    assert_eq!(variables(&missing), vec!["OTEL_EXPORTER_OTLP_CERTIFICATE"]);
    let not_a_cert =
        read(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", &files.path("client.key"))]).unwrap_err();
    assert_eq!(
        variables(&not_a_cert),
        vec!["OTEL_EXPORTER_OTLP_CERTIFICATE"]
    );
}
