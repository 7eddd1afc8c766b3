//! RFC 9457 problem details: the body of every error rodent itself answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

pub(super) const CONTENT_TYPE: &str = "application/problem+json";

/// An error response. `title` is the status's reason phrase unless set; `detail` says what
/// happened to this request; [`extension`](Problem::extension)s add members of the
/// application's own.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    title: Option<String>,
    detail: Option<String>,
    retry_after_secs: Option<u32>,
    close: bool,
    extensions: Map<String, Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(flatten)]
    extensions: &'a Map<String, Value>,
}

/// The members RFC 9457 defines, which an extension may not replace.
const STANDARD_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "instance"];

impl Problem {
    /// A problem answered with `status`; its title is the status's reason phrase.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            title: None,
            detail: None,
            retry_after_secs: None,
            close: false,
            extensions: Map::new(),
        }
    }

    /// A short summary of the problem type, instead of the reason phrase.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// What happened to this request, in a sentence.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member (RFC 9457, section 3.2): `name` with `value` as JSON, next to
    /// the standard members, for what a client can act on (`"balance": 30`, `"fault": …`).
    ///
    /// # Panics
    ///
    /// When `name` is one of the standard members (`type`, `title`, `status`, `detail`,
    /// `instance`), or `value` cannot be written as JSON (a map with keys that are not
    /// strings): mistakes in the program.
    pub fn extension(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        let name = name.into();
        assert!(
            !STANDARD_MEMBERS.contains(&name.as_str()),
            "{name:?} is a standard member of a problem, not an extension"
        );
        let value = serde_json::to_value(value)
            .unwrap_or_else(|e| panic!("the problem extension {name:?} is not JSON: {e}"));
        self.extensions.insert(name, value);
        self
    }

    /// Adds `Retry-After`: the request may succeed later (overload, shutting down).
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Adds `Connection: close`: the rest of the connection cannot be trusted (an unread body)
    /// or should go elsewhere (shutting down).
    pub fn close_connection(mut self) -> Self {
        self.close = true;
        self
    }

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let title = self
            .title
            .as_deref()
            .or(self.status.canonical_reason())
            .unwrap_or("Error");
        let body = Body {
            kind: "about:blank",
            title,
            status: self.status.as_u16(),
            detail: self.detail.as_deref(),
            extensions: &self.extensions,
        };
        let json = serde_json::to_vec(&body).expect("a problem body always serializes");
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Marks a response produced by the panic handler, so the access layer can count it.
#[derive(Clone, Copy)]
pub(crate) struct Panicked;

pub(crate) fn panic_response(_payload: Box<dyn std::any::Any + Send>) -> Response {
    // The panic hook has already logged the message and location.
    let mut response = Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
        .detail("the handler panicked; the process keeps serving")
        .into_response();
    response.extensions_mut().insert(Panicked);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn extensions_are_members_beside_the_standard_ones() {
        let response = Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .detail("on purpose")
            .extension("fault", serde_json::json!({ "injected": true }))
            .extension("balance", 30)
            .into_response();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["status"], 500);
        assert_eq!(body["detail"], "on purpose");
        assert_eq!(body["fault"]["injected"], true);
        assert_eq!(body["balance"], 30);
    }

    #[test]
    #[should_panic(expected = "standard member")]
    fn a_standard_member_is_not_an_extension() {
        let _ = Problem::new(StatusCode::BAD_REQUEST).extension("status", 200);
    }
}
