//! Domain and local-part lists compiled into the component by `build.rs`
//! (sorted, deduplicated, lowercase), searched without any start-up work.

include!(concat!(env!("OUT_DIR"), "/lists.rs"));

/// Whether the sorted `list` holds `item` (already lowercase).
pub fn contains(list: &[&str], item: &str) -> bool {
    list.binary_search(&item).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_populated() {
        for list in [DISPOSABLE, FREE_MAIL, ROLE_ACCOUNTS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]));
        }
        assert!(
            DISPOSABLE.len() > 10_000,
            "mailchecker's list: {}",
            DISPOSABLE.len()
        );
        assert!(contains(FREE_MAIL, "gmail.com"));
        assert!(!contains(FREE_MAIL, "acme.com"));
    }
}
