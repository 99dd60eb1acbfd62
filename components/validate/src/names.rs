//! Person names: sensible casing that leaves deliberate mixed case alone and
//! knows "McDonald", "O'Neil", "van der Berg"; splitting a full name.

/// Name particles that stay lower case inside a name.
const PARTICLES: &[&str] = &[
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la", "le",
    "ten", "ter", "zu", "y", "bin", "binti", "al",
];

/// Generational suffixes and post-nominals with a fixed spelling.
const FIXED: &[(&str, &str)] = &[
    ("ii", "II"),
    ("iii", "III"),
    ("iv", "IV"),
    ("jr", "Jr"),
    ("jr.", "Jr."),
    ("sr", "Sr"),
    ("sr.", "Sr."),
    ("phd", "PhD"),
    ("md", "MD"),
];

/// Surnames after "Mac" that take an inner capital (MacDonald). "Mac" alone is
/// too ambiguous (Mack, Macy, Machado) to apply everywhere.
const MAC_NAMES: &[&str] = &[
    "macdonald",
    "macleod",
    "mackenzie",
    "macgregor",
    "macmillan",
    "macarthur",
    "macintyre",
    "mackay",
    "maclean",
    "macneil",
    "macpherson",
    "macaulay",
    "macdougall",
    "macfarlane",
];

/// Cases a cleaned name. Input that already mixes upper and lower case is
/// taken as deliberate ("DeShawn", "McDonald") and returned unchanged; all
/// upper or all lower input is re-cased word by word.
pub fn case_name(name: &str) -> String {
    recase(name).unwrap_or_else(|| name.to_string())
}

/// The re-cased name, or `None` when the name is kept as it is.
pub fn recase(name: &str) -> Option<String> {
    let has_upper = name.chars().any(char::is_uppercase);
    let has_lower = name.chars().any(char::is_lowercase);
    if has_upper && has_lower {
        return None;
    }
    let words: Vec<&str> = name.split(' ').collect();
    let last = words.len().saturating_sub(1);
    let cased = words
        .iter()
        .enumerate()
        .map(|(i, w)| case_word(w, i, last))
        .collect::<Vec<_>>()
        .join(" ");
    (cased != name).then_some(cased)
}

fn case_word(word: &str, index: usize, last: usize) -> String {
    let lower = word.to_lowercase();
    if let Some((_, fixed)) = FIXED.iter().find(|(k, _)| *k == lower)
        && index > 0
    {
        return (*fixed).to_string();
    }
    // A particle stays lower case unless it is the whole name.
    if PARTICLES.contains(&lower.as_str()) && last > 0 && index < last {
        return lower;
    }
    // Hyphenated parts are cased on their own: Smith-Jones, al-Rashid.
    lower
        .split('-')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 && part == "al" && lower.contains('-') {
                "al".to_string()
            } else {
                case_part(part)
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Cases one hyphen-free part: O'Neil, D'Angelo, McDonald, MacLeod.
fn case_part(part: &str) -> String {
    if let Some((head, tail)) = part.split_once('\'')
        && head.chars().count() == 1
        && !tail.is_empty()
    {
        return format!("{}'{}", capitalize(head), case_part(tail));
    }
    if let Some(rest) = part.strip_prefix("mc")
        && rest.chars().count() >= 2
    {
        return format!("Mc{}", capitalize(rest));
    }
    if MAC_NAMES.contains(&part) {
        return format!("Mac{}", capitalize(&part[3..]));
    }
    capitalize(part)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Splits a cased full name into (first, last). Particles before the final
/// word belong to the last name: "Ludwig van Beethoven" → ("Ludwig", "van
/// Beethoven"). "Last, First" is understood too.
pub fn split_full_name(full: &str) -> (Option<String>, Option<String>) {
    if let Some((last, first)) = full.split_once(',') {
        let (first, last) = (first.trim(), last.trim());
        if !first.is_empty() && !last.is_empty() {
            return (Some(first.to_string()), Some(last.to_string()));
        }
    }
    let words: Vec<&str> = full.split(' ').filter(|w| !w.is_empty()).collect();
    match words.len() {
        0 => (None, None),
        1 => (Some(words[0].to_string()), None),
        n => {
            let mut start = n - 1;
            while start > 1 && PARTICLES.contains(&words[start - 1].to_lowercase().as_str()) {
                start -= 1;
            }
            // Generational suffix: "Martin Luther King Jr" keeps "King Jr".
            if start == n - 1 && n > 2 {
                let lower = words[n - 1].to_lowercase();
                if FIXED.iter().any(|(k, _)| *k == lower) {
                    start = n - 2;
                }
            }
            (
                Some(words[..start].join(" ")),
                Some(words[start..].join(" ")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casing_keeps_deliberate_mixed_case() {
        assert_eq!(case_name("McDonald"), "McDonald");
        assert_eq!(case_name("DeShawn"), "DeShawn");
        assert_eq!(case_name("van der Berg"), "van der Berg");
    }

    #[test]
    fn casing_fixes_shouting_and_lower_case() {
        assert_eq!(case_name("MCDONALD"), "McDonald");
        assert_eq!(case_name("o'neil"), "O'Neil");
        assert_eq!(case_name("VAN DER BERG"), "van der Berg");
        assert_eq!(case_name("smith-jones"), "Smith-Jones");
        assert_eq!(case_name("macleod"), "MacLeod");
        assert_eq!(case_name("mack"), "Mack");
        assert_eq!(case_name("JOHN SMITH III"), "John Smith III");
        assert_eq!(case_name("ÉMILE ZOLA"), "Émile Zola");
        assert_eq!(case_name("de"), "De");
    }

    #[test]
    fn full_names_split_with_particles_and_commas() {
        assert_eq!(
            split_full_name("Ludwig van Beethoven"),
            (Some("Ludwig".into()), Some("van Beethoven".into()))
        );
        assert_eq!(
            split_full_name("Anna Maria van der Berg"),
            (Some("Anna Maria".into()), Some("van der Berg".into()))
        );
        assert_eq!(
            split_full_name("Smith, Jane"),
            (Some("Jane".into()), Some("Smith".into()))
        );
        assert_eq!(split_full_name("Cher"), (Some("Cher".into()), None));
        assert_eq!(
            split_full_name("Martin Luther King Jr"),
            (Some("Martin Luther".into()), Some("King Jr".into()))
        );
    }
}
