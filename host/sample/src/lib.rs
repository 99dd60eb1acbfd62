//! Sample data with known ground truth: messy leads (each row a person,
//! some people more than once, one kind of mess a row) with the truth a
//! correct validator and deduper must reach, firmographics for the bundled
//! enrichment provider, behavioural events, and a CRM history to fit a
//! conversion model on. `leadgate sample`, the demo, the tests and the
//! benchmarks read it; it touches nothing but the files it is asked to write.
//!
//! Modules: `names` and `people` (who the rows are about), `mess` (a row
//! with its mess and variation), `companies`, `events`, `history`.

mod companies;
mod events;
mod history;
mod mess;
mod names;
mod people;

pub use companies::write_companies;
pub use events::write_events;
pub use history::write_history;

use mess::row;
use people::{Person, person, relative};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a sample file could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a lead file leadgate reads: {source}", path.display())]
    Ingest {
        path: PathBuf,
        source: leadgate_ingest::IngestError,
    },
}

/// Runs `write` (which may fail on I/O or CSV), naming `path` in the error.
pub(crate) fn writing(
    path: &Path,
    write: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), SampleError> {
    write().map_err(|source| SampleError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// One generated row: the CSV fields (or, for a deliberately broken row,
/// the raw line), what a correct validator says of it, and who it is.
pub struct Row {
    pub fields: [String; 13],
    pub raw_line: Option<String>,
    pub status: &'static str,
    pub codes: Vec<&'static str>,
    pub person: usize,
    pub kind: &'static str,
    /// How this row of a person seen before differs from the original.
    pub variation: Vec<&'static str>,
}

/// The sample CSV's header.
pub const HEADER: [&str; 13] = [
    "E-mail",
    "First Name",
    "Last Name",
    "Phone",
    "Company",
    "Job Title",
    "Website",
    "Street",
    "City",
    "Zip",
    "Country",
    "Marketing Opt-In",
    "utm_campaign",
];

const KINDS: &[(&str, u32)] = &[
    ("clean", 30),
    ("messy", 22),
    ("free_mail", 8),
    ("role_account", 3),
    ("bad_email", 7),
    ("bad_email_no_phone", 4),
    ("disposable", 4),
    ("bad_phone", 5),
    ("no_country", 5),
    ("no_contact", 3),
    ("markup", 2),
    ("formula", 2),
    ("unknown_country", 2),
    ("too_long", 1),
    ("broken_row", 2),
];

/// Generates `count` rows from `seed` (same seed, same rows).
pub fn generate(count: usize, seed: u64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total: u32 = KINDS.iter().map(|(_, w)| w).sum();
    let mut people: Vec<Person> = Vec::new();
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        // One row in eight is someone already seen: a duplicate. A few new
        // people live with someone already seen: not duplicates.
        let seen_before = !people.is_empty() && rng.random_bool(0.125);
        let p = if seen_before {
            let i = rng.random_range(0..people.len());
            people[i].clone()
        } else {
            let id = people.len() + 1;
            let p = if !people.is_empty() && rng.random_bool(0.03) {
                let i = rng.random_range(0..people.len());
                let housemate = people[i].clone();
                relative(&mut rng, id, &housemate)
            } else {
                person(&mut rng, id)
            };
            people.push(p.clone());
            p
        };
        let mut pick = rng.random_range(0..total);
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or("clean", |(k, _)| k);
        rows.push(row(&mut rng, &p, kind, seen_before));
    }
    rows
}

/// Writes the sample CSV and, if asked, its truth and a labelled copy
/// (the same rows with a `person` column naming who each row is, for
/// `leadgate eval dedupe --truth-column person`).
pub fn write(
    count: usize,
    seed: u64,
    output: &Path,
    truth: Option<&Path>,
    labelled: Option<&Path>,
) -> Result<(), SampleError> {
    let rows = generate(count, seed);
    write_rows(&rows, output, false)?;
    if let Some(path) = labelled {
        write_rows(&rows, path, true)?;
    }
    if let Some(truth) = truth {
        write_truth(&rows, truth)?;
    }
    Ok(())
}

/// The truth file: per line, the status and issue codes a correct
/// validator gives, and who the row is.
fn write_truth(rows: &[Row], path: &Path) -> Result<(), SampleError> {
    writing(path, || {
        let mut w = csv::Writer::from_path(path)?;
        w.write_record(["line", "status", "codes", "person", "kind", "variation"])?;
        for (i, r) in rows.iter().enumerate() {
            w.write_record([
                (i + 1).to_string(),
                r.status.to_string(),
                r.codes.join(";"),
                r.person.to_string(),
                r.kind.to_string(),
                r.variation.join(";"),
            ])?;
        }
        w.flush()
    })
}

fn write_rows(rows: &[Row], output: &Path, labelled: bool) -> Result<(), SampleError> {
    writing(output, || {
        let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
        {
            let mut w = csv::Writer::from_writer(&mut out);
            if labelled {
                let mut header: Vec<&str> = HEADER.to_vec();
                header.push("person");
                w.write_record(header)?;
            } else {
                w.write_record(HEADER)?;
            }
            w.flush()?;
        }
        for r in rows {
            match &r.raw_line {
                Some(line) if labelled => writeln!(out, "{line},{}", r.person)?,
                Some(line) => writeln!(out, "{line}")?,
                None => {
                    let mut w = csv::WriterBuilder::new()
                        .has_headers(false)
                        .from_writer(&mut out);
                    if labelled {
                        let mut fields: Vec<&str> = r.fields.iter().map(String::as_str).collect();
                        let person = r.person.to_string();
                        fields.push(&person);
                        w.write_record(fields)?;
                    } else {
                        w.write_record(&r.fields)?;
                    }
                    w.flush()?;
                }
            }
        }
        out.flush()
    })
}

/// The readable records of a generated file as leads (benchmarks use
/// them; the unreadable rows the generator makes on purpose are skipped).
pub fn read_leads(path: &Path) -> Result<Vec<leadgate_lead::Lead>, SampleError> {
    use leadgate_ingest::{Format, Limits, Mapping, Reader};
    let file = std::fs::File::open(path).map_err(|source| SampleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = Reader::new(
        Box::new(file),
        Format::Csv,
        Mapping::default(),
        Limits::default(),
    )
    .map_err(|source| SampleError::Ingest {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(reader
        .filter_map(|r| r.ok().and_then(|r| r.outcome.ok()))
        .map(|p| p.lead)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::people::COUNTRIES;

    #[test]
    fn same_seed_same_rows() {
        let a: Vec<[String; 13]> = generate(50, 3).into_iter().map(|r| r.fields).collect();
        let b: Vec<[String; 13]> = generate(50, 3).into_iter().map(|r| r.fields).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn generated_phone_numbers_are_valid_for_their_country() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for c in COUNTRIES {
            for _ in 0..50 {
                let (national, intl) = (c.phone)(&mut rng);
                let p = leadgate_validate::phone::parse(&national, Some(c.code))
                    .unwrap_or_else(|e| panic!("{} {national}: {e:?}", c.code));
                let q = leadgate_validate::phone::parse(&intl, None).unwrap();
                assert_eq!(p.e164, q.e164);
            }
        }
    }

    #[test]
    fn every_kind_appears_in_a_thousand_rows() {
        let rows = generate(1000, 7);
        for (kind, _) in KINDS {
            assert!(rows.iter().any(|r| r.kind == *kind), "{kind}");
        }
        let people: std::collections::HashSet<usize> = rows.iter().map(|r| r.person).collect();
        assert!(people.len() < rows.len(), "some people appear twice");
    }
}
