//! The OTLP exporter for the configured protocol, http/protobuf or gRPC, with TLS for an
//! `https://` collector: built by the export thread, from the settings validated with the
//! configuration.

use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};

use crate::config::otel::{Export, Protocol, Tls};

/// The OTLP exporter for the configured protocol. Everything is set explicitly, so the values
/// validated from rodent's variables (env file included) are the ones used.
///
/// The exporter still adds `OTEL_EXPORTER_OTLP_*HEADERS` from the process environment on top:
/// only a header the env file removes (rather than changes) would survive that way.
pub(super) fn build_exporter(
    export: &Export,
) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    match export.protocol {
        Protocol::HttpProtobuf => {
            // hyper-rustls answers `http://` in plain text and `https://` over TLS.
            let tls = export
                .tls
                .client_config()
                .expect("the TLS files were checked with the configuration");
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build();
            let client =
                opentelemetry_http::hyper::HyperClient::new(connector, export.timeout, None);
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(export.endpoint.clone())
                .with_timeout(export.timeout)
                .with_headers(export.headers.iter().cloned().collect());
            if export.gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            builder.build()
        }
        Protocol::Grpc => {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in &export.headers {
                let name = axum::http::HeaderName::try_from(name.as_str())
                    .expect("header names were validated with the configuration");
                let value = axum::http::HeaderValue::try_from(value.as_str())
                    .expect("header values were validated with the configuration");
                headers.insert(name, value);
            }
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(export.endpoint.clone())
                .with_timeout(export.timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                );
            if export.is_https() {
                builder = builder.with_tls_config(tonic_tls(&export.tls));
            }
            if export.gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            builder.build()
        }
    }
}

/// The same TLS for gRPC, which tonic builds from the PEM files itself (on the same rustls and
/// ring). Without a CA file, the built-in public roots: tonic trusts none by default.
fn tonic_tls(tls: &Tls) -> ClientTlsConfig {
    let config = ClientTlsConfig::new();
    let config = match &tls.ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(&ca.contents)),
        None => config.with_webpki_roots(),
    };
    match &tls.client {
        Some((cert, key)) => config.identity(Identity::from_pem(&cert.contents, &key.contents)),
        None => config,
    }
}
