//! When a certificate expires: its `notAfter`, read from the DER of an X.509 certificate, for
//! the `rodent_tls_certificate_expiration_timestamp_seconds` gauge.
//!
//! Read here rather than with a crate: rustls-webpki, which parses every certificate rodent
//! serves, keeps the validity period private, and x509-parser (with nom, asn1-rs, der-parser,
//! oid-registry and time) would bring a whole X.509 parser into an image that must stay under
//! 10 MB to read one date. The walk below follows RFC 5280 §4.1 to `validity` and no further;
//! rustls has parsed and checked the certificate by the time this runs.

/// `notAfter` of the certificate `der`, in seconds since the Unix epoch; `None` when it cannot
/// be read.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let certificate = Der(der).expect(SEQUENCE)?.0;
    let mut tbs = Der(certificate).expect(SEQUENCE)?.0;
    // version [0] EXPLICIT, absent for v1 certificates.
    if tbs.first() == Some(&0xA0) {
        tbs = Der(tbs).next()?.1;
    }
    let (_serial, rest) = Der(tbs).next()?;
    let (_signature, rest) = Der(rest).next()?;
    let (_issuer, rest) = Der(rest).next()?;
    let validity = Der(rest).expect(SEQUENCE)?.0;
    let (_not_before, rest) = Der(validity).next()?;
    let ((tag, time), _) = Der(rest).element()?;
    parse_time(tag, time)
}

/// A DER stream, read one element at a time.
struct Der<'a>(&'a [u8]);

/// An element's tag and contents, and what follows it.
type Element<'a> = ((u8, &'a [u8]), &'a [u8]);

impl<'a> Der<'a> {
    /// The next element's tag and contents, and what follows it.
    fn element(&self) -> Option<Element<'a>> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = match first {
            short @ 0..=0x7F => (usize::from(short), rest),
            0x81..=0x84 => {
                let octets = usize::from(first & 0x7F);
                let (bytes, rest) = rest.split_at_checked(octets)?;
                let length = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
                (length, rest)
            }
            _ => return None,
        };
        let (contents, rest) = rest.split_at_checked(length)?;
        Some(((tag, contents), rest))
    }

    /// The next element's contents, and what follows it.
    fn next(&self) -> Option<(&'a [u8], &'a [u8])> {
        self.element().map(|((_, contents), rest)| (contents, rest))
    }

    /// The next element's contents when its tag is `tag`, and what follows it.
    fn expect(&self, tag: u8) -> Option<(&'a [u8], &'a [u8])> {
        match self.element()? {
            ((found, contents), rest) if found == tag => Some((contents, rest)),
            _ => None,
        }
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), the two
/// forms RFC 5280 allows, in seconds since the Unix epoch.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 12) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (digits(0..4)?, 4),
        _ => return None,
    };
    let field = |i: usize| digits(rest + 2 * i..rest + 2 * i + 2);
    let (month, day, hour, minute, second) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["rodent.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_not_after_in_both_time_forms() {
        // 2049 is written as UTCTime, 2050 and later as GeneralizedTime (RFC 5280 §4.1.2.5).
        assert_eq!(not_after(&certificate((2049, 12, 31))), Some(2_524_521_600));
        assert_eq!(not_after(&certificate((2050, 1, 1))), Some(2_524_608_000));
        assert_eq!(not_after(&certificate((2027, 3, 1))), Some(1_803_859_200));
    }

    #[test]
    fn what_is_not_a_certificate_has_no_expiry() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xFF]), None);
        let mut cut = certificate((2030, 1, 1));
        cut.truncate(cut.len() / 3);
        assert_eq!(not_after(&cut), None);
        assert_eq!(parse_time(0x17, b"491301000000Z"), None);
    }

    #[test]
    fn days_are_counted_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
