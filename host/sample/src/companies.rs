//! Firmographics for the generated companies, the list the bundled
//! enrichment provider reads.

use crate::SampleError;
use crate::people::{COMPANY_HEADS, COMPANY_TAILS, COUNTRIES, SUFFIXES, slug};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Industries of the generated firmographics.
const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "Manufacturing",
    "Healthcare",
    "Retail",
    "Logistics",
    "Telecommunications",
    "Professional Services",
    "Education",
    "Energy",
];
const EMPLOYEE_RANGES: &[&str] = &[
    "1-10",
    "11-50",
    "51-200",
    "201-500",
    "501-1000",
    "1001-5000",
    "5001+",
];
const REVENUE_RANGES: &[&str] = &[
    "<1M",
    "1M-10M",
    "10M-50M",
    "50M-100M",
    "100M-500M",
    "500M-1B",
    "1B+",
];
const TECHNOLOGIES: &[&str] = &[
    "Salesforce",
    "HubSpot",
    "AWS",
    "Azure",
    "Google Cloud",
    "Snowflake",
    "Segment",
    "Marketo",
    "Zendesk",
    "Slack",
    "Shopify",
    "Stripe",
    "SAP",
    "Workday",
];

/// A firmographics data set for the companies the generator makes: every
/// two-syllable name under every country's TLD, with about one in eight
/// left out (a bought list never covers everyone). The columns are the
/// local provider's (`docs/src/capabilities/enrich.md`).
pub fn write_companies(path: &Path, seed: u64) -> Result<usize, SampleError> {
    companies(path, seed).map_err(|source| SampleError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn companies(path: &Path, seed: u64) -> std::io::Result<usize> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record([
        "domain",
        "name",
        "industry",
        "employee_range",
        "revenue_range",
        "country",
        "city",
        "technologies",
    ])?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = 0;
    for c in COUNTRIES {
        for head in COMPANY_HEADS {
            for tail in COMPANY_TAILS {
                if rng.random_bool(0.125) {
                    continue;
                }
                let base = format!("{head}{tail}");
                let size = rng.random_range(0..EMPLOYEE_RANGES.len());
                let revenue = (size + rng.random_range(0..2)).min(REVENUE_RANGES.len() - 1);
                let techs: Vec<&str> = TECHNOLOGIES
                    .iter()
                    .filter(|_| rng.random_bool(0.2))
                    .copied()
                    .collect();
                w.write_record([
                    format!("{}.{}", slug(&base), c.tld),
                    format!(
                        "{base} {}",
                        SUFFIXES.choose(&mut rng).copied().unwrap_or("")
                    )
                    .trim()
                    .to_string(),
                    INDUSTRIES
                        .choose(&mut rng)
                        .copied()
                        .unwrap_or("Software")
                        .to_string(),
                    EMPLOYEE_RANGES[size].to_string(),
                    REVENUE_RANGES[revenue].to_string(),
                    c.code.to_string(),
                    c.cities.choose(&mut rng).copied().unwrap_or("").to_string(),
                    techs.join(";"),
                ])?;
                n += 1;
            }
        }
    }
    w.flush()?;
    Ok(n)
}
