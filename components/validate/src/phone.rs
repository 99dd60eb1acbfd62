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

/// Regions whose every phone pattern is compiled before a snapshot is taken:
/// where most B2B leads come from. Compiling all regions' patterns would take
/// hundreds of MiB; other regions compile a pattern on its first use.
const WARM_REGIONS: &[&str] = &[
    "US", "CA", "GB", "IE", "DE", "AT", "CH", "FR", "NL", "ES", "IT", "AU",
];

/// Compiles the phone patterns of [`WARM_REGIONS`]: for every number type a
/// region has, its example number in national and international format is
/// parsed and validated, and so is a number of no type at all (which tries
/// every pattern). A snapshot taken afterwards (wizer) starts with all of it
/// ready, so a fresh instance's first lead pays no compilation.
pub fn warm_up() {
    for code in WARM_REGIONS {
        let Some(region) = region(code) else { continue };
        let types = PHONE_NUMBER_UTIL
            .get_supported_types_for_region(region)
            .unwrap_or_default();
        for kind in types {
            let Ok(example) =
                PHONE_NUMBER_UTIL.get_example_number_for_type_and_region(region, kind)
            else {
                continue;
            };
            for format in [
                PhoneNumberFormat::National,
                PhoneNumberFormat::International,
            ] {
                let text = example.format_as(format).into_owned();
                let _ = parse(&text, Some(code));
                let _ = parse(&format!("{text} ext. 12"), Some(code));
            }
        }
        let _ = parse("555-0100", Some(code));
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
