//! Email addresses as real mailbox providers accept them.
//!
//! Strict by default: quoted local parts, IP-address literals, dotless
//! domains, comments and obsolete RFC 5322 syntax are refused unless the
//! tenant switches them on. RFC 5321 limits (64-octet local part, 254-octet
//! address, 63-octet labels) and dot rules are enforced; internationalized
//! addresses (SMTPUTF8 local parts, IDN domains) are accepted, the domain
//! lowercased and IDNA-encoded.

use crate::lists;
use serde::Deserialize;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Tenant switches for syntax that is legal in RFC 5322 but refused by the
/// big mailbox providers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailRules {
    pub allow_quoted_local_part: bool,
    pub allow_ip_literal: bool,
    pub allow_dotless_domain: bool,
    pub allow_comments: bool,
    pub allow_obsolete_syntax: bool,
    /// Special-use domains (`.test`, `.local`, `.onion`, … — see
    /// [`special_use`]): no public mail is delivered there.
    pub allow_special_use_domains: bool,
}

/// Why an address was refused: a stable code and a message naming the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> EmailError {
    EmailError {
        code,
        message: message.into(),
    }
}

/// A syntactically valid, normalized address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// `local@domain` with the local part as given and the domain in
    /// lowercase ASCII (IDNA A-labels).
    pub address: String,
    pub local: String,
    /// Lowercase ASCII domain, or the bracketed literal.
    pub domain: String,
    /// Registrable domain (public-suffix aware); `None` for IP literals and
    /// dotless domains.
    pub registrable: Option<String>,
}

/// What an address says about its owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmailFlags {
    pub disposable: bool,
    pub free_mail: bool,
    pub role_account: bool,
}

const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c) || (!c.is_ascii() && !c.is_control())
}

/// Parses and normalizes a cleaned address.
pub fn parse(raw: &str, rules: &EmailRules) -> Result<Email, EmailError> {
    let mut text = raw.trim();
    if let Some(rest) = text.strip_prefix("mailto:") {
        text = rest;
    }
    // "Jane Doe <jane@example.com>": keep the address.
    if let (Some(open), true) = (text.rfind('<'), text.ends_with('>')) {
        text = &text[open + 1..text.len() - 1];
    }
    let owned;
    if has_comment(text) {
        if !rules.allow_comments {
            return Err(err(
                "email.comment",
                format!(
                    "'{raw}' contains a comment in parentheses, which mailbox providers refuse"
                ),
            ));
        }
        owned = strip_comments(text);
        text = owned.trim();
    }
    let at =
        last_unquoted_at(text).ok_or_else(|| err("email.syntax", format!("'{raw}' has no '@'")))?;
    let (local, domain) = (&text[..at], &text[at + 1..]);
    if local.is_empty() {
        return Err(err(
            "email.syntax",
            format!("'{raw}' has nothing before the '@'"),
        ));
    }
    if domain.is_empty() {
        return Err(err(
            "email.syntax",
            format!("'{raw}' has nothing after the '@'"),
        ));
    }
    let local = parse_local(raw, local, rules)?;
    if local.len() > 64 {
        return Err(err(
            "email.local_part_too_long",
            format!(
                "the part before '@' is {} octets; the limit is 64",
                local.len()
            ),
        ));
    }
    let (domain, registrable) = parse_domain(raw, domain, rules)?;
    let address = format!("{local}@{domain}");
    if address.len() > 254 {
        return Err(err(
            "email.too_long",
            format!("the address is {} octets; the limit is 254", address.len()),
        ));
    }
    Ok(Email {
        address,
        local,
        domain,
        registrable,
    })
}

fn has_comment(text: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | ')' if !quoted => return true,
            _ => {}
        }
    }
    false
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                if depth == 0 {
                    out.push(c);
                }
            }
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn last_unquoted_at(text: &str) -> Option<usize> {
    let (mut quoted, mut escaped, mut found) = (false, false, None);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '@' if !quoted => found = Some(i),
            _ => {}
        }
    }
    found
}

fn parse_local(raw: &str, local: &str, rules: &EmailRules) -> Result<String, EmailError> {
    if is_quoted_string(local) {
        if !rules.allow_quoted_local_part {
            return Err(err(
                "email.quoted_local_part",
                format!("'{raw}' has a quoted local part, which mailbox providers refuse"),
            ));
        }
        return check_quoted(raw, local).map(|()| local.to_string());
    }
    let obsolete = local.contains('"') || local.contains(' ');
    if obsolete {
        if !rules.allow_obsolete_syntax {
            let code = if local.contains('"') {
                "email.obsolete_syntax"
            } else {
                "email.syntax"
            };
            return Err(err(
                code,
                format!("'{raw}' uses spaces or quoted words in the local part (obsolete syntax)"),
            ));
        }
        // obs-local-part: words separated by dots, optional spaces around them.
        let words: Vec<String> = local.split('.').map(|w| w.trim().to_string()).collect();
        for w in &words {
            if w.starts_with('"') && w.ends_with('"') && w.len() >= 2 {
                check_quoted(raw, w)?;
            } else {
                check_atom(raw, w)?;
            }
        }
        return Ok(words.join("."));
    }
    for atom in local.split('.') {
        check_atom(raw, atom)?;
    }
    Ok(local.to_string())
}

/// `"…"` as one quoted string: no unescaped quote inside.
fn is_quoted_string(s: &str) -> bool {
    if s.len() < 2 || !s.starts_with('"') || !s.ends_with('"') {
        return false;
    }
    let mut escaped = false;
    for c in s[1..s.len() - 1].chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return false,
            _ => {}
        }
    }
    !escaped
}

fn check_atom(raw: &str, atom: &str) -> Result<(), EmailError> {
    if atom.is_empty() {
        return Err(err(
            "email.dots",
            format!("'{raw}' starts or ends with a dot, or has two dots in a row, before the '@'"),
        ));
    }
    if let Some(bad) = atom.chars().find(|c| !is_atext(*c)) {
        return Err(err(
            "email.syntax",
            format!("'{raw}' contains '{bad}', which is not allowed before the '@'"),
        ));
    }
    Ok(())
}

fn check_quoted(raw: &str, quoted: &str) -> Result<(), EmailError> {
    let inner = &quoted[1..quoted.len() - 1];
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' || (c.is_ascii_control()) {
            return Err(err(
                "email.syntax",
                format!(
                    "'{raw}' has an unescaped '{}' in its quoted local part",
                    c.escape_default()
                ),
            ));
        }
    }
    Ok(())
}

fn parse_domain(
    raw: &str,
    domain: &str,
    rules: &EmailRules,
) -> Result<(String, Option<String>), EmailError> {
    if domain.starts_with('[') && domain.ends_with(']') {
        if !rules.allow_ip_literal {
            return Err(err(
                "email.ip_literal",
                format!("'{raw}' has an IP address instead of a domain"),
            ));
        }
        let inner = &domain[1..domain.len() - 1];
        let ok = match inner.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("ipv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
            _ => inner.parse::<Ipv4Addr>().is_ok(),
        };
        if !ok {
            return Err(err(
                "email.domain_syntax",
                format!("'{inner}' is not a valid IP address literal"),
            ));
        }
        return Ok((domain.to_ascii_lowercase(), None));
    }
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| {
        err(
            "email.domain_syntax",
            format!("'{domain}' is not a valid domain name"),
        )
    })?;
    let ascii =
        check_hostname(&ascii).map_err(|(code, why)| err(code, format!("'{domain}' {why}")))?;
    if !ascii.contains('.') {
        if rules.allow_dotless_domain {
            return Ok((ascii, None));
        }
        return Err(err(
            "email.dotless_domain",
            format!("'{raw}' has a domain without a dot ('{domain}')"),
        ));
    }
    if let Some(tld) = special_use(&ascii) {
        if rules.allow_special_use_domains {
            return Ok((ascii, None));
        }
        return Err(err(
            "email.special_use_domain",
            format!(
                "'{domain}' is under .{tld}, a special-use name (RFC 6761, RFC 7686) that no public mail is delivered to"
            ),
        ));
    }
    let registrable = registrable_domain(&ascii).map_err(|(code, why)| {
        let code = if code == "domain.unknown_suffix" {
            "email.unknown_tld"
        } else {
            "email.domain_is_suffix"
        };
        err(code, format!("'{domain}' {why}"))
    })?;
    Ok((ascii, Some(registrable)))
}

/// Checks an ASCII hostname: LDH labels of 1–63 octets, 253 octets in all, a
/// non-numeric top label. Returns it without a trailing dot.
pub fn check_hostname(ascii: &str) -> Result<String, (&'static str, String)> {
    let host = ascii
        .strip_suffix('.')
        .unwrap_or(ascii)
        .to_ascii_lowercase();
    if host.len() > 253 {
        return Err((
            "domain.too_long",
            format!("is {} octets long; the limit is 253", host.len()),
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err((
                "domain.syntax",
                "has an empty label (two dots in a row)".into(),
            ));
        }
        if label.len() > 63 {
            return Err((
                "domain.label_too_long",
                format!("has a label of {} octets; the limit is 63", label.len()),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err((
                "domain.syntax",
                format!("has a label '{label}' starting or ending with '-'"),
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(("domain.syntax", format!("contains '{bad}'")));
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(("domain.syntax", "ends in a numeric label".into()));
    }
    Ok(host)
}

/// The registrable domain of a checked ASCII host, by the public suffix list.
pub fn registrable_domain(host: &str) -> Result<String, (&'static str, String)> {
    let suffix = psl::suffix(host.as_bytes());
    match suffix {
        Some(s) if s.is_known() => {}
        _ => {
            let tld = host.rsplit('.').next().unwrap_or(host);
            return Err((
                "domain.unknown_suffix",
                format!("ends in '.{tld}', which is not a public suffix"),
            ));
        }
    }
    match psl::domain_str(host) {
        Some(d) => Ok(d.to_string()),
        None => Err((
            "domain.is_suffix",
            "is a public suffix, not a registrable domain".into(),
        )),
    }
}

/// What kind of character an address must not hold, if `c` is one: they
/// are spoofing vectors in a CRM (text that shows other than it is) or not
/// text at all.
fn unsafe_kind(c: char) -> Option<(&'static str, &'static str)> {
    let u = u32::from(c);
    Some(match u {
        0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069 => (
            "email.bidi_control",
            "a bidirectional control, which makes text show in another order than it is stored",
        ),
        0x00AD
        | 0x034F
        | 0x115F
        | 0x1160
        | 0x17B4
        | 0x17B5
        | 0x180B..=0x180F
        | 0x200B..=0x200D
        | 0x2060..=0x2064
        | 0x206A..=0x206F
        | 0x3164
        | 0xFE00..=0xFE0F
        | 0xFEFF
        | 0xFFA0
        | 0xFFF9..=0xFFFB
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF => (
            "email.invisible_character",
            "an invisible character, which makes two addresses that look the same differ",
        ),
        0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD => (
            "email.private_use",
            "a private-use code point, which has no meaning outside one system",
        ),
        0xFDD0..=0xFDEF => ("email.noncharacter", "a Unicode noncharacter"),
        _ if u & 0xFFFE == 0xFFFE => ("email.noncharacter", "a Unicode noncharacter"),
        _ if c.is_control() => (
            "email.control_character",
            "a control character, which is not text",
        ),
        _ => return None,
    })
}

/// `text` with every character an address must not hold written as its
/// code point, so a message shows it without acting on it.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| {
            if unsafe_kind(c).is_some() || unicode_normalization::char::is_combining_mark(c) {
                format!("\\u{{{:04X}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Address syntax that folding must not create.
const SYNTAX: &str = "@.\"(),:;<>[\\]";

/// Checks an address as received, before any clean-up (surrounding
/// whitespace aside, which is trimmed): no unsafe characters (see
/// [`unsafe_kind`]), no combining mark at the start of the address or of
/// a part of it (it would join the character before it on screen), and
/// no character that Unicode normalization (NFKC) or IDNA mapping turns
/// into address syntax — `＠`, `⒈` (`1.`), `。` — which would change
/// which mailbox or domain the address names instead of being refused.
pub fn check_characters(raw: &str) -> Result<(), EmailError> {
    use unicode_normalization::UnicodeNormalization;
    let text = raw.trim();
    let mut part_start = true;
    for c in text.chars() {
        if let Some((code, what)) = unsafe_kind(c) {
            return Err(err(
                code,
                format!(
                    "'{}' contains U+{:04X}, {what}",
                    escaped(text),
                    u32::from(c)
                ),
            ));
        }
        if part_start && unicode_normalization::char::is_combining_mark(c) {
            return Err(err(
                "email.combining_mark",
                format!(
                    "'{}' has the combining mark U+{:04X} at the start of a part, where it joins the character before it on screen",
                    escaped(text),
                    u32::from(c)
                ),
            ));
        }
        part_start = c.is_ascii_punctuation() || c.is_whitespace();
        if !c.is_ascii() {
            let folded: String = if matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}') {
                ".".into()
            } else {
                std::iter::once(c).nfkc().collect()
            };
            if folded.chars().any(|f| SYNTAX.contains(f)) {
                return Err(err(
                    "email.folds_to_syntax",
                    format!(
                        "'{}' contains '{c}' (U+{:04X}), which normalization turns into '{folded}': that would change the address's structure, not just its form",
                        escaped(text),
                        u32::from(c)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The special-use top-level domain (RFC 6761, RFC 7686, RFC 9476) a
/// checked ASCII host is under, if any: no public mail is delivered there.
pub fn special_use(host: &str) -> Option<&'static str> {
    let tld = host.rsplit('.').next()?;
    SPECIAL_USE.iter().copied().find(|s| *s == tld)
}

const SPECIAL_USE: &[&str] = &[
    "alt",
    "arpa",
    "example",
    "invalid",
    "local",
    "localhost",
    "onion",
    "test",
];

/// Flags an address: disposable domain (the domain or any parent listed),
/// free-mail provider, role account.
pub fn flags(email: &Email) -> EmailFlags {
    let domain = email.domain.as_str();
    let mut disposable = false;
    let mut rest = domain;
    loop {
        if lists::contains(lists::DISPOSABLE, rest) {
            disposable = true;
            break;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => break,
        }
    }
    let free_mail = lists::contains(lists::FREE_MAIL, domain)
        || email
            .registrable
            .as_deref()
            .is_some_and(|r| lists::contains(lists::FREE_MAIL, r));
    let base = email
        .local
        .split('+')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    EmailFlags {
        disposable,
        free_mail,
        role_account: lists::contains(lists::ROLE_ACCOUNTS, &base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(s: &str) -> Result<Email, EmailError> {
        parse(s, &EmailRules::default())
    }
    fn code(s: &str) -> &'static str {
        match strict(s) {
            Ok(e) => panic!("{s} was accepted as {e:?}"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn accepts_ordinary_and_international_addresses() {
        assert_eq!(
            strict("Jane.Doe+crm@Example.COM").unwrap().address,
            "Jane.Doe+crm@example.com"
        );
        assert_eq!(
            strict("user@münchen.de").unwrap().address,
            "user@xn--mnchen-3ya.de"
        );
        assert!(
            strict("用户@例子.中国")
                .unwrap()
                .domain
                .ends_with(".xn--fiqs8s")
        );
        assert_eq!(strict("josé@exämple.com").unwrap().local, "josé");
        assert_eq!(
            strict("Jane <jane@acme.co.uk>")
                .unwrap()
                .registrable
                .as_deref(),
            Some("acme.co.uk")
        );
        assert_eq!(
            strict("a@mail.sub.acme.co.uk")
                .unwrap()
                .registrable
                .as_deref(),
            Some("acme.co.uk")
        );
    }

    #[test]
    fn refuses_what_providers_refuse_by_default() {
        assert_eq!(code("\"john doe\"@example.com"), "email.quoted_local_part");
        assert_eq!(code("john@[192.168.0.1]"), "email.ip_literal");
        assert_eq!(code("john@localhost"), "email.dotless_domain");
        assert_eq!(code("john(comment)@example.com"), "email.comment");
        assert_eq!(code("\"john\".doe@example.com"), "email.obsolete_syntax");
        assert_eq!(code(".john@example.com"), "email.dots");
        assert_eq!(code("john.@example.com"), "email.dots");
        assert_eq!(code("jo..hn@example.com"), "email.dots");
        assert_eq!(code("john doe@example.com"), "email.syntax");
        assert_eq!(code("john@@example.com"), "email.syntax");
        assert_eq!(code("john.example.com"), "email.syntax");
        assert_eq!(code("john@example"), "email.dotless_domain");
        assert_eq!(code("john@example.invalidtld"), "email.unknown_tld");
        assert_eq!(code("john@co.uk"), "email.domain_is_suffix");
        assert_eq!(code("john@exa_mple.com"), "email.domain_syntax");
        assert_eq!(code("john@-example.com"), "email.domain_syntax");
    }

    #[test]
    fn enforces_rfc_5321_limits() {
        let local64 = "a".repeat(64);
        assert!(strict(&format!("{local64}@example.com")).is_ok());
        assert_eq!(
            code(&format!("{}@example.com", "a".repeat(65))),
            "email.local_part_too_long"
        );
        let label63 = "b".repeat(63);
        assert!(strict(&format!("x@{label63}.com")).is_ok());
        assert_eq!(
            code(&format!("x@{}.com", "b".repeat(64))),
            "email.domain_syntax"
        );
        // 64 + 1 + 4 labels of 63 + ".com" > 254
        let long_domain = format!("{label63}.{label63}.{label63}.com");
        assert_eq!(code(&format!("{local64}@{long_domain}")), "email.too_long");
    }

    #[test]
    fn tenant_switches_allow_rfc_5322_forms() {
        let all = EmailRules {
            allow_quoted_local_part: true,
            allow_ip_literal: true,
            allow_dotless_domain: true,
            allow_comments: true,
            allow_obsolete_syntax: true,
            allow_special_use_domains: true,
        };
        assert!(parse("\"john doe\"@example.com", &all).is_ok());
        assert!(parse("john@[192.168.0.1]", &all).is_ok());
        assert!(parse("john@[IPv6:2001:db8::1]", &all).is_ok());
        assert!(parse("john@[999.1.1.1]", &all).is_err());
        assert!(parse("john@localhost", &all).is_ok());
        assert_eq!(
            parse("john(work)@example.com", &all).unwrap().address,
            "john@example.com"
        );
        assert_eq!(
            parse("\"john\" . doe@example.com", &all).unwrap().local,
            "\"john\".doe"
        );
    }

    fn char_code(s: &str) -> &'static str {
        match check_characters(s) {
            Ok(()) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn unsafe_characters_are_refused_naming_the_code_point() {
        for (address, want) in [
            ("me\u{202E}moc.elgoog@example.com", "email.bidi_control"),
            ("me@exam\u{2066}ple.com", "email.bidi_control"),
            ("me\u{200F}@example.com", "email.bidi_control"),
            ("me\u{200B}@example.com", "email.invisible_character"),
            ("pay\u{00AD}pal@example.com", "email.invisible_character"),
            ("me@exa\u{2063}mple.com", "email.invisible_character"),
            ("me\u{FE0F}@example.com", "email.invisible_character"),
            ("me\u{E000}@example.com", "email.private_use"),
            ("me\u{10FDEF}@example.com", "email.private_use"),
            ("me\u{FDD0}@example.com", "email.noncharacter"),
            ("me\u{FFFF}@example.com", "email.noncharacter"),
            ("me\u{1FFFE}@example.com", "email.noncharacter"),
            ("me\u{009C}@example.com", "email.control_character"),
            ("me\r\n@example.com", "email.control_character"),
            ("\u{0301}me@example.com", "email.combining_mark"),
            ("me@\u{0301}example.com", "email.combining_mark"),
            ("me.\u{0300}x@example.com", "email.combining_mark"),
        ] {
            assert_eq!(char_code(address), want, "{address:?}");
        }
        let e = check_characters("me\u{202E}x@example.com").unwrap_err();
        assert!(e.message.contains("U+202E"), "{}", e.message);
        assert!(
            !e.message.contains('\u{202E}'),
            "the message shows the code point, not the character: {}",
            e.message
        );
    }

    #[test]
    fn ordinary_unicode_and_surrounding_whitespace_pass_the_character_check() {
        for address in [
            "josé@example.com",
            "me@bücher.de",
            "ｊｏｈｎ@example.com",
            "Zoë Ray <zoe@example.com>",
            "é@example.com",
            "me@exámple.com",
            "  me@example.com\t\n",
            "\u{05D0}\u{05B8}@example.com",
            "ab\u{0301}c@example.com",
        ] {
            assert_eq!(char_code(address), "ok", "{address:?}");
        }
    }

    #[test]
    fn folding_never_creates_address_syntax() {
        for address in [
            "me＠example.com",
            "me\u{FE6B}example.com",
            "me@example\u{FF0E}com",
            "me@example\u{3002}com",
            "me@example\u{FF61}com",
            "me@example\u{2488}com",
            "me\u{2024}you@example.com",
            "me\u{FF1C}x\u{FF1E}@example.com",
        ] {
            assert_eq!(char_code(address), "email.folds_to_syntax", "{address:?}");
        }
        let e = check_characters("me@example\u{2488}com").unwrap_err();
        assert!(e.message.contains("'1.'"), "{}", e.message);
    }

    #[test]
    fn special_use_domains_are_refused_unless_allowed() {
        for address in [
            "me@anything.arpa",
            "me@valid.invalid",
            "me@link.local",
            "me@host.localhost",
            "me@onion.onion.onion",
            "me@test.test.test",
            "me@example.example",
            "me@some.alt",
        ] {
            assert_eq!(code(address), "email.special_use_domain", "{address}");
        }
        let rules = EmailRules {
            allow_special_use_domains: true,
            ..EmailRules::default()
        };
        let e = parse("me@mycompany.test", &rules).unwrap();
        assert_eq!((e.domain.as_str(), e.registrable), ("mycompany.test", None));
        // Not special-use: a name that only contains one.
        assert!(strict("me@test.com").is_ok());
        assert!(strict("me@example.co.uk").is_ok());
    }

    #[test]
    fn limits_count_the_address_as_it_will_be_sent() {
        // 32 two-octet letters: 64 octets, the limit; 33: over it.
        assert!(strict(&format!("{}@example.com", "ü".repeat(32))).is_ok());
        assert_eq!(
            code(&format!("{}@example.com", "ü".repeat(33))),
            "email.local_part_too_long"
        );
        // A label of 60 letters is short, but not in its IDNA form.
        let label: String = "aü".repeat(30);
        assert!(label.chars().count() == 60);
        assert!(
            ["email.domain_syntax", "domain.label_too_long"]
                .contains(&code(&format!("me@{label}.com"))),
            "{}",
            code(&format!("me@{label}.com"))
        );
    }

    #[test]
    fn flags_disposable_free_and_role() {
        let f = flags(&strict("x@mailinator.com").unwrap());
        assert!(f.disposable && !f.free_mail);
        let f = flags(&strict("x@sub.mailinator.com").unwrap());
        assert!(f.disposable, "a parent domain on the list counts");
        let f = flags(&strict("jane@gmail.com").unwrap());
        assert!(f.free_mail && !f.disposable && !f.role_account);
        let f = flags(&strict("Sales+eu@acme.com").unwrap());
        assert!(f.role_account && !f.free_mail);
    }
}
