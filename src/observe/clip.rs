//! Text a client chose, bounded before it is kept: a span waits for export and a log line for
//! its writer, and neither may grow with what a client sends. A request id, a path or a user
//! agent may be as long as the header limit allows (tens of kilobytes); a span or a line keeps
//! at most [`CLIENT_TEXT_LIMIT`] bytes of each.

/// The most bytes of one client-supplied string kept in a span or a log line (a request id, a
/// path, a user agent, a host, a method name), and the longest `tracestate` continued. 512 is
/// what W3C Trace Context asks a `tracestate` to be propagated at least.
pub(crate) const CLIENT_TEXT_LIMIT: usize = 512;

/// `text`, cut to at most [`CLIENT_TEXT_LIMIT`] bytes at a character boundary.
pub(crate) fn clip(text: &str) -> &str {
    if text.len() <= CLIENT_TEXT_LIMIT {
        return text;
    }
    let mut end = CLIENT_TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "x".repeat(CLIENT_TEXT_LIMIT + 10);
        assert_eq!(clip(&long).len(), CLIENT_TEXT_LIMIT);
        let wide = format!("{}é", "x".repeat(CLIENT_TEXT_LIMIT - 1));
        assert_eq!(clip(&wide).len(), CLIENT_TEXT_LIMIT - 1);
    }
}
