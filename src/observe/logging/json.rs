//! The JSON line format, written straight into the line buffer.
//!
//! One object per event: `timestamp` (RFC 3339, UTC, microseconds), `level`, the event's fields
//! in order (`message` first), then `target`. tracing-subscriber's own JSON format builds the
//! same object through serde_json, field by field; at one access-log line per request that cost
//! more than the request itself, so lines are written directly instead.
//!
//! Numbers are itoa's and ryu's. The timestamp's calendar is our own, not humantime's (which
//! rodent does not otherwise depend on): `humantime::format_rfc3339_micros` redoes the calendar
//! and goes through `core::fmt` on every line, 584 instructions per timestamp against 364 here
//! (callgrind, a line every millisecond), where the date and time of day are formatted once a
//! second and only the microseconds on every line.

use std::cell::Cell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_str(",\"")?;
                Escaped(&mut *self.writer).write_str(field.name())?;
                self.writer.write_str("\":")?;
                value(self.writer)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| write_string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value}")?;
            w.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write_u64(w, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |w| write_f64(w, value));
    }
}

pub(super) fn write_string(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'a, W: Write + ?Sized>(&'a mut W);

/// Which bytes must be escaped: control characters, `"` and `\`.
const ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl<W: Write + ?Sized> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let mut plain = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            if !ESCAPE[usize::from(byte)] {
                continue;
            }
            // Escaped bytes are ASCII, so the slices around them are on char boundaries.
            self.0.write_str(&s[plain..i])?;
            match byte {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                _ => write!(self.0, "\\u{byte:04x}")?,
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

/// Writes an integer (itoa: without going through `core::fmt`).
pub(super) fn write_u64(w: &mut impl Write, value: u64) -> fmt::Result {
    w.write_str(itoa::Buffer::new().format(value))
}

/// Writes a float in its shortest form that reads back the same (ryu: without `core::fmt`);
/// JSON has no NaN or infinity, which are written as `null`.
pub(super) fn write_f64(w: &mut impl Write, value: f64) -> fmt::Result {
    if !value.is_finite() {
        return w.write_str("null");
    }
    w.write_str(ryu::Buffer::new().format_finite(value))
}

thread_local! {
    /// The last second formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS`: lines come many
    /// per second, and the calendar arithmetic needs doing once per second only.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-26T04:25:08.480493Z`.
pub(super) fn write_timestamp(w: &mut impl Write, now: SystemTime) -> fmt::Result {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        text = format_second(secs);
        SECOND.set((secs, text));
    }
    // Only ASCII digits and separators were written into it.
    w.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)?;
    let mut fraction = *b".000000Z";
    let mut micros = itoa::Buffer::new();
    let micros = micros.format(since_epoch.subsec_micros()).as_bytes();
    fraction[7 - micros.len()..7].copy_from_slice(micros);
    w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

fn format_second(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = [0u8; 19];
    let mut put = |at: usize, value: u64, digits: usize| {
        let mut value = value;
        for i in (0..digits).rev() {
            text[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year as u64, 4);
    put(5, month as u64, 2);
    put(8, day as u64, 2);
    put(11, in_day / 3600, 2);
    put(14, in_day / 60 % 60, 2);
    put(17, in_day % 60, 2);
    text[4] = b'-';
    text[7] = b'-';
    text[10] = b'T';
    text[13] = b':';
    text[16] = b':';
    text
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        write_timestamp(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
        )
        .unwrap();
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(at(1_795_666_508, 480_493), "2026-11-26T04:15:08.480493Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn numbers_read_back_as_written() {
        for value in [
            0.0,
            0.352,
            1.5,
            2.0,
            12.345,
            0.001,
            1e-7,
            123456.789,
            1e20,
            -0.5,
            0.1 + 0.2,
        ] {
            let mut out = String::new();
            write_f64(&mut out, value).unwrap();
            assert_eq!(serde_json::from_str::<f64>(&out).unwrap(), value, "{out}");
        }
        let mut out = String::new();
        write_f64(&mut out, 0.352).unwrap();
        assert_eq!(out, "0.352", "the shortest form");
        let mut out = String::new();
        write_f64(&mut out, f64::NAN).unwrap();
        assert_eq!(out, "null");
        for value in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = String::new();
            write_u64(&mut out, value).unwrap();
            assert_eq!(out, value.to_string());
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}
