//! Free-mail (consumer mailbox) providers: a domain that says nothing
//! about the company behind an address. One list for every side — the
//! validate capability's `email.free_provider` flag, the enrich
//! capability's `email_type`, and the host's accounts — so they agree.
//! The list is `data/free-mail.txt` beside this crate.

/// The list as written: one domain per line, `#` comments.
pub const FREE_MAIL: &str = include_str!("../data/free-mail.txt");

/// The free-mail domains, lowercase, sorted once per process (or
/// instance) for binary search.
pub fn free_mail_domains() -> &'static [&'static str] {
    static LIST: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        let mut v: Vec<&'static str> = FREE_MAIL
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        v.sort_unstable();
        v
    })
}

/// Whether `domain` (any case) is a free-mail provider's.
pub fn is_free_mail_domain(domain: &str) -> bool {
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        free_mail_domains()
            .binary_search(&domain.to_ascii_lowercase().as_str())
            .is_ok()
    } else {
        free_mail_domains().binary_search(&domain).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_providers_are_free_mail_and_companies_are_not() {
        assert!(is_free_mail_domain("gmail.com"));
        assert!(is_free_mail_domain("GMail.com"));
        assert!(!is_free_mail_domain("acme.com"));
        assert!(!is_free_mail_domain(""));
        assert!(free_mail_domains().windows(2).all(|w| w[0] < w[1]));
    }
}
