//! Phone numbers to E.164 with `rlibphonenumber`, a port of Google's
//! libphonenumber (metadata compiled in, each pattern compiled once).
//!
//! The input is made digestible first: NFKC has already turned full-width
//! digits and no-break spaces into ASCII; other decimal digits (Arabic-Indic,
//! Devanagari, …) and Unicode dashes are mapped here. An extension ("ext. 42",
//! "x7", "#12") is split off by the parser and kept separately.

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, Region};
use std::str::FromStr;

/// A number in E.164 with its extension, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    pub e164: String,
    pub extension: Option<String>,
    /// ISO 3166 alpha-2 region the number belongs to, when known.
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneError {
    pub code: &'static str,
    pub message: String,
}

/// Maps any Unicode decimal digit to ASCII and punctuation look-alikes to
/// their ASCII forms.
fn ascii_digits(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '0'..='9' => c,
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' => '-',
            '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{3000}' => ' ',
            _ => unicode_digit(c).map_or(c, |d| char::from(b'0' + d)),
        })
        .collect()
}

/// The value of a decimal digit in the common non-ASCII scripts.
fn unicode_digit(c: char) -> Option<u8> {
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0xFF10,
    ];
    let cp = c as u32;
    ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&cp))
        .and_then(|&z| u8::try_from(cp - z).ok())
}

/// The region for an ISO alpha-2 code, if libphonenumber knows it.
pub fn region(alpha2: &str) -> Option<Region> {
    Region::from_str(alpha2)
        .or_else(|_| Region::from_str(&alpha2.to_ascii_lowercase()))
        .ok()
}

/// Parses `raw` (already cleaned) using `region` (ISO alpha-2) for national
/// numbers.
pub fn parse(raw: &str, default_region: Option<&str>) -> Result<Phone, PhoneError> {
    let text = ascii_digits(raw);
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if digits < 3 {
        return Err(PhoneError {
            code: "phone.syntax",
            message: format!("'{raw}' does not look like a phone number"),
        });
    }
    let international = {
        let t = text.trim_start_matches(['(', ' ']);
        t.starts_with('+') || t.starts_with("00")
    };
    let region_id = default_region.and_then(region);
    if region_id.is_none() && !international {
        return Err(PhoneError {
            code: "phone.no_region",
            message: format!(
                "'{raw}' is a national number and the lead has no country (set the tenant's default_region)"
            ),
        });
    }
    let number = PHONE_NUMBER_UTIL
        .parse(&text, region_id)
        .map_err(|e| PhoneError {
            code: "phone.syntax",
            message: format!("'{raw}' could not be parsed as a phone number: {e}"),
        })?;
    if !number.is_valid() {
        let place = match (international, default_region) {
            (false, Some(r)) => format!("region {r}"),
            _ => format!("country code +{}", number.country_code),
        };
        return Err(PhoneError {
            code: "phone.invalid_for_region",
            message: format!("'{raw}' is not a valid number for {place}"),
        });
    }
    let extension = Some(number.extension())
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    Ok(Phone {
        e164: number.format_as(PhoneNumberFormat::E164).into_owned(),
        extension,
        region: number.get_region_code().map(|r| format!("{r:?}")),
    })
}

/// Touches the metadata and the patterns of the most common regions, so a
/// snapshot taken afterwards (wizer) starts with them ready.
pub fn warm_up() {
    for (number, region) in [
        ("+1 415 555 2671", "US"),
        ("+1 416 555 0123", "CA"),
        ("+44 20 7946 0958", "GB"),
        ("+49 30 901820", "DE"),
        ("+33 1 42 68 53 00", "FR"),
        ("+34 91 123 45 67", "ES"),
        ("+39 06 1234 5678", "IT"),
        ("+31 20 123 4567", "NL"),
        ("+32 2 123 45 67", "BE"),
        ("+41 44 668 18 00", "CH"),
        ("+43 1 234567", "AT"),
        ("+46 8 123 456 78", "SE"),
        ("+45 32 12 34 56", "DK"),
        ("+47 21 23 45 67", "NO"),
        ("+358 9 1234567", "FI"),
        ("+353 1 234 5678", "IE"),
        ("+351 21 123 4567", "PT"),
        ("+48 22 123 45 67", "PL"),
        ("+420 212 345 678", "CZ"),
        ("+61 2 1234 5678", "AU"),
        ("+64 9 123 4567", "NZ"),
        ("+81 3 1234 5678", "JP"),
        ("+82 2 312 3456", "KR"),
        ("+86 10 1234 5678", "CN"),
        ("+91 22 1234 5678", "IN"),
        ("+65 6123 4567", "SG"),
        ("+852 2123 4567", "HK"),
        ("+55 11 2345 6789", "BR"),
        ("+52 55 1234 5678", "MX"),
        ("+27 21 123 4567", "ZA"),
        ("+971 4 123 4567", "AE"),
        ("+972 2 123 4567", "IL"),
    ] {
        let _ = parse(number, Some(region));
        let national = number.split_once(' ').map_or(number, |(_, rest)| rest);
        let _ = parse(national, Some(region));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_numbers_use_the_region() {
        let p = parse("(415) 555-2671", Some("US")).unwrap();
        assert_eq!(p.e164, "+14155552671");
        assert_eq!(p.region.as_deref(), Some("US"));
        assert_eq!(parse("030 901820", Some("DE")).unwrap().e164, "+4930901820");
        assert_eq!(
            parse("020 7946 0958", Some("GB")).unwrap().e164,
            "+442079460958"
        );
    }

    #[test]
    fn international_numbers_need_no_region() {
        assert_eq!(
            parse("+44 20 7946 0958", None).unwrap().e164,
            "+442079460958"
        );
        assert_eq!(
            parse("0044 20 7946 0958", Some("DE")).unwrap().e164,
            "+442079460958"
        );
    }

    #[test]
    fn extensions_are_kept_separately() {
        let p = parse("+1 415-555-2671 ext. 42", None).unwrap();
        assert_eq!(
            (p.e164.as_str(), p.extension.as_deref()),
            ("+14155552671", Some("42"))
        );
        let p = parse("415 555 2671 x7", Some("US")).unwrap();
        assert_eq!(p.extension.as_deref(), Some("7"));
    }

    #[test]
    fn non_ascii_digits_and_dashes_are_understood() {
        assert_eq!(
            parse("+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨", None).unwrap().e164,
            "+442079460958"
        );
        assert_eq!(
            parse("415\u{2013}555\u{2013}2671", Some("US"))
                .unwrap()
                .e164,
            "+14155552671"
        );
        let nfkc = crate::text::clean("＋１ ４１５\u{00A0}５５５ ２６７１").unwrap();
        assert_eq!(parse(&nfkc, None).unwrap().e164, "+14155552671");
    }

    #[test]
    fn invalid_numbers_are_refused_with_a_reason() {
        assert_eq!(
            parse("555-0000", Some("US")).unwrap_err().code,
            "phone.invalid_for_region"
        );
        assert_eq!(parse("12", Some("US")).unwrap_err().code, "phone.syntax");
        assert_eq!(
            parse("415 555 2671", None).unwrap_err().code,
            "phone.no_region"
        );
        assert_eq!(
            parse("call me", Some("US")).unwrap_err().code,
            "phone.syntax"
        );
    }
}
