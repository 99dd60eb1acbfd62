//! Folding values into comparable forms: any script transliterated to ASCII
//! (so "Иван Петров" meets "Ivan Petrov"), lowercase, punctuation gone; the
//! email matching key that folds provider aliases; phonetic codes.

use rphonetic::DoubleMetaphone;
use std::sync::OnceLock;

/// `s` transliterated to lowercase ASCII words separated by single spaces:
/// letters and digits only. `None` when nothing is left.
pub fn words(s: &str) -> Option<String> {
    let ascii = if s.is_ascii() {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(deunicode::deunicode(s))
    };
    let mut out = String::with_capacity(ascii.len());
    let mut gap = false;
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else if c != '\'' {
            // "O'Neil" stays one word; any other punctuation separates.
            gap = true;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `s` folded to one lowercase ASCII token: "van der Berg" → "vanderberg",
/// "Smith-Jones" → "smithjones".
pub fn token(s: &str) -> Option<String> {
    words(s).map(|w| w.replace(' ', ""))
}

/// Whether `s` is written in a script other than Latin (so matching it
/// needed transliteration).
pub fn non_latin(s: &str) -> bool {
    s.chars().any(|c| c.is_alphabetic() && (c as u32) >= 0x0370)
}

/// Domains whose mailboxes ignore dots in the local part.
const DOTLESS: &[&str] = &["gmail.com", "googlemail.com"];

/// The email matching key: lowercase, `+tag` removed (sub-addressing, which
/// Gmail, Outlook, iCloud, Fastmail, Proton and most corporate servers
/// deliver to the same mailbox), dots removed where the provider ignores
/// them, `googlemail.com` read as `gmail.com`.
pub fn email_key(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    let local = match local.split_once('+') {
        Some((base, _)) if !base.is_empty() => base,
        _ => local,
    };
    let (local, domain) = if DOTLESS.contains(&domain) {
        (local.replace('.', ""), "gmail.com")
    } else {
        (local.to_string(), domain)
    };
    Some(format!("{local}@{domain}"))
}

/// The local part of an email matching key.
pub fn local_part(key: &str) -> &str {
    key.rsplit_once('@').map_or(key, |(l, _)| l)
}

fn metaphone() -> &'static DoubleMetaphone {
    static DM: OnceLock<DoubleMetaphone> = OnceLock::new();
    DM.get_or_init(|| DoubleMetaphone::new(Some(6)))
}

/// The primary Double Metaphone code of a folded word ("" when it has no
/// letters to encode).
pub fn phonetic(word: &str) -> String {
    let letters: String = word.chars().filter(char::is_ascii_alphabetic).collect();
    if letters.is_empty() {
        return String::new();
    }
    metaphone().double_metaphone(&letters).primary()
}

/// Postcodes compared without spaces or dashes, uppercase.
pub fn postcode(s: &str) -> Option<String> {
    let p: String = s
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (!p.is_empty()).then_some(p)
}

/// Digits of a phone number (E.164 after validation, but a swapped-in
/// validator may leave formatting).
pub fn phone(s: &str) -> Option<String> {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    (d.len() >= 6).then_some(d)
}

/// A street line split into its house number (first run of digits) and its
/// words without the number and common abbreviations expanded.
pub fn street(s: &str) -> Option<(Option<String>, String)> {
    let w = words(s)?;
    let mut number = None;
    let mut rest: Vec<&str> = Vec::new();
    for t in w.split(' ') {
        if number.is_none() && t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            number = Some(t.to_string());
            continue;
        }
        rest.push(match t {
            "st" | "str" => "street",
            "rd" => "road",
            "ave" | "av" => "avenue",
            "dr" => "drive",
            "ln" => "lane",
            "blvd" => "boulevard",
            "ct" => "court",
            "pl" => "place",
            "sq" => "square",
            "hwy" => "highway",
            "cres" | "cr" => "crescent",
            "cct" => "circuit",
            "pde" => "parade",
            "tce" | "terr" => "terrace",
            "cl" => "close",
            "crt" => "court",
            "gr" | "gro" => "grove",
            "pkwy" => "parkway",
            "strasse" | "stra" => "strasse",
            other => other,
        });
    }
    Some((number, rest.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_transliterate_and_fold() {
        assert_eq!(words("  José  GARCÍA ").as_deref(), Some("jose garcia"));
        assert_eq!(words("Иван Петров").as_deref(), Some("ivan petrov"));
        assert_eq!(words("O'Neil").as_deref(), Some("oneil"));
        assert_eq!(token("van der Berg").as_deref(), Some("vanderberg"));
        assert_eq!(token("Smith-Jones").as_deref(), Some("smithjones"));
        assert_eq!(words("!!!"), None);
        assert!(non_latin("Γιώργος") && non_latin("王伟") && !non_latin("Zoë"));
    }

    #[test]
    fn email_key_folds_provider_aliases() {
        assert_eq!(
            email_key("John.Smith+newsletter@GoogleMail.com").as_deref(),
            Some("johnsmith@gmail.com")
        );
        assert_eq!(
            email_key("j.smith+crm@acme.com").as_deref(),
            Some("j.smith@acme.com")
        );
        assert_eq!(email_key("+x@acme.com").as_deref(), Some("+x@acme.com"));
        assert_eq!(email_key("nobody"), None);
    }

    #[test]
    fn phonetic_codes_meet_for_spelling_variants() {
        assert_eq!(phonetic("smith"), phonetic("smyth"));
        assert_eq!(phonetic("catherine"), phonetic("kathryn"));
        assert_ne!(phonetic("smith"), phonetic("jones"));
        assert_eq!(phonetic("123"), "");
    }

    #[test]
    fn streets_split_numbers_and_expand_abbreviations() {
        assert_eq!(
            street("12 Baker St.").unwrap(),
            (Some("12".into()), "baker street".into())
        );
        assert_eq!(street("Main Road").unwrap(), (None, "main road".into()));
    }
}
