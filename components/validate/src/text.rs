//! Text cleaning shared by every field: Unicode NFKC, control characters out,
//! whitespace folded; and the markup / formula injection check.

use unicode_normalization::UnicodeNormalization;

/// Characters that carry no text: zero-width spaces and joiners, BOM, soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// NFKC-normalizes `raw`, drops control and invisible characters, turns every
/// kind of whitespace into one ASCII space and trims. `None` when nothing is
/// left.
pub fn clean(raw: &str) -> Option<String> {
    clean_owned(raw.to_string())
}

/// [`clean`] for an owned value: text that is already clean (the common
/// case) is returned as it is, without a new allocation.
pub fn clean_owned(raw: String) -> Option<String> {
    if is_clean_ascii(&raw) {
        return if raw.is_empty() { None } else { Some(raw) };
    }
    if raw.is_ascii() {
        fold(raw.chars(), raw.len())
    } else {
        fold(raw.nfkc(), raw.len())
    }
}

/// Printable ASCII, single inner spaces, nothing to trim.
fn is_clean_ascii(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first() == Some(&b' ') || b.last() == Some(&b' ') {
        return false;
    }
    let mut prev_space = false;
    for &c in b {
        match c {
            b' ' if prev_space => return false,
            b' ' => prev_space = true,
            0x21..=0x7e => prev_space = false,
            _ => return false,
        }
    }
    true
}

fn fold(chars: impl Iterator<Item = char>, capacity: usize) -> Option<String> {
    let mut out = String::with_capacity(capacity);
    let mut pending_space = false;
    for c in chars {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if c.is_control() || is_invisible(c) {
            continue;
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// What kind of injection a text field looks like it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// HTML/script markup, `javascript:` URLs, template expressions.
    Markup,
    /// A spreadsheet formula (CSV injection): `=`, `@`, `+`/`-` then a non-digit.
    Formula,
}

/// Checks a cleaned text value. `allow_leading_plus` is for phone numbers.
pub fn injection(value: &str, allow_leading_plus: bool) -> Option<Injection> {
    let bytes = value.as_bytes();
    // Only values holding one of these bytes can carry markup; most hold none.
    if bytes
        .iter()
        .any(|b| matches!(b, b'<' | b':' | b'{' | b'$' | b'='))
    {
        let lower = value.to_ascii_lowercase();
        let b = lower.as_bytes();
        let tag = b
            .windows(2)
            .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'));
        let scheme = lower.contains(':')
            && (lower.contains("javascript:")
                || lower.contains("vbscript:")
                || lower.contains("data:text/html"));
        let template = lower.contains("{{") || lower.contains("${");
        if tag || scheme || template || (lower.contains('=') && has_event_handler(&lower)) {
            return Some(Injection::Markup);
        }
    }
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some('=' | '@'), _) => Some(Injection::Formula),
        (Some('+'), _) if allow_leading_plus => None,
        (Some('+' | '-'), Some(c)) if !c.is_ascii_digit() && c != ' ' => Some(Injection::Formula),
        _ => None,
    }
}

/// `onload=`, `onerror =` and the like.
fn has_event_handler(lower: &str) -> bool {
    let b = lower.as_bytes();
    let mut i = 0;
    while let Some(pos) = lower[i..].find("on") {
        let start = i + pos;
        let preceded_ok = start == 0 || !b[start - 1].is_ascii_alphanumeric();
        let mut j = start + 2;
        while j < b.len() && b[j].is_ascii_alphabetic() {
            j += 1;
        }
        let name_len = j - start - 2;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if preceded_ok && name_len >= 3 && j < b.len() && b[j] == b'=' {
            return true;
        }
        i = start + 2;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_returned_as_is() {
        assert_eq!(clean("Acme Corp"), Some("Acme Corp".into()));
        assert_eq!(clean("Acme  Corp"), Some("Acme Corp".into()));
        assert_eq!(clean(" x"), Some("x".into()));
        assert_eq!(clean(""), None);
    }

    #[test]
    fn clean_folds_whitespace_controls_and_width() {
        assert_eq!(
            clean("  Ａｃｍｅ\u{00A0}Corp\t\n"),
            Some("Acme Corp".into())
        );
        assert_eq!(clean("a\u{0007}b\u{200B}c"), Some("abc".into()));
        assert_eq!(clean(" \u{3000}\u{200B} "), None);
        assert_eq!(clean("ﬁne"), Some("fine".into()));
    }

    #[test]
    fn injection_flags_markup_and_formulas() {
        assert_eq!(
            injection("<script>alert(1)</script>", false),
            Some(Injection::Markup)
        );
        assert_eq!(
            injection("x\" onerror=alert(1)", false),
            Some(Injection::Markup)
        );
        assert_eq!(injection("{{7*7}}", false), Some(Injection::Markup));
        assert_eq!(
            injection("=HYPERLINK(\"x\")", false),
            Some(Injection::Formula)
        );
        assert_eq!(
            injection("-cmd|' /C calc'!A0", false),
            Some(Injection::Formula)
        );
        assert_eq!(injection("+1 415 555 0100", true), None);
        assert_eq!(injection("Ondine Onofrio", false), None);
        assert_eq!(injection("a < b and c > d", false), None);
        assert_eq!(injection("-3 degrees", false), None);
    }
}
