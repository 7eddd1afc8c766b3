//! [`AccessNote`]: what a handler or a layer of the application's says about its response on the
//! request's access-log line.

use std::borrow::Cow;

use axum::response::Response;

/// Words on a request's access-log line, in its `note` field: a handler or a layer of the
/// application's marks what it did to the response (a fault it injected, a cache it answered
/// from), so that the line says so next to the status and latency. Notes added to one response
/// are joined with `; `.
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use rodent::http::AccessNote;
///
/// async fn cached() -> Response {
///     let mut response = "from the cache".into_response();
///     AccessNote::add(&mut response, "cache hit");
///     response
/// }
/// ```
///
/// A response without a note costs the access line nothing: it is a response extension, looked
/// up in a map that a response without extensions does not even have.
#[derive(Debug, Clone, Default)]
pub struct AccessNote(Vec<Cow<'static, str>>);

impl AccessNote {
    /// Adds `note` to what the access line of `response` says.
    pub fn add(response: &mut Response, note: impl Into<Cow<'static, str>>) {
        response
            .extensions_mut()
            .get_or_insert_default::<AccessNote>()
            .0
            .push(note.into());
    }

    /// The notes, in the order they were added.
    pub fn notes(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|note| &**note)
    }

    /// The notes joined with `; `, as the line's `note` field has them.
    pub(crate) fn joined(&self) -> Cow<'_, str> {
        match self.0.as_slice() {
            [one] => Cow::Borrowed(one),
            many => Cow::Owned(many.join("; ")),
        }
    }
}
