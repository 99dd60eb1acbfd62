//! A CRM export of past leads and whether each converted, to fit a
//! conversion model on.

use crate::SampleError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// A conversion history export: attributes and activity counts, no
/// contact fields, and a `Converted` outcome drawn from a known logistic
/// model (its true probability is not written). Education converts far
/// above what a software-and-finance ICP predicts: `leadgate report`
/// finds it as ICP drift.
pub fn write_history(path: &Path, rows: usize, seed: u64) -> Result<(), SampleError> {
    history(path, rows, seed).map_err(|source| SampleError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn history(path: &Path, rows: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4157);
    let mut w = csv::Writer::from_path(path)?;
    w.write_record([
        "Lead Number",
        "Lead Source",
        "Industry",
        "Employees",
        "Country",
        "Job Title",
        "Total Visits",
        "Time On Site",
        "Pricing Views",
        "Email Opens",
        "Trial",
        "Converted",
    ])?;
    let sources = [
        ("Google", 0.0),
        ("Referral", 1.2),
        ("Direct", 0.3),
        ("Event", 0.6),
        ("Paid Social", -0.6),
    ];
    let industries = [
        ("Software", 0.5),
        ("Financial Services", 0.4),
        ("Manufacturing", -0.3),
        ("Healthcare", 0.0),
        ("Retail", -0.4),
        ("Education", 1.3),
    ];
    let sizes = [
        ("1-10", -0.8),
        ("11-50", -0.2),
        ("51-200", 0.4),
        ("201-500", 0.5),
        ("501-1000", 0.2),
        ("1001-5000", 0.0),
    ];
    let countries = [
        ("US", 0.2),
        ("GB", 0.1),
        ("DE", 0.0),
        ("IN", -0.3),
        ("FR", -0.1),
    ];
    let titles = [
        ("CEO", 0.4),
        ("VP Sales", 0.6),
        ("Revenue Operations Manager", 0.8),
        ("Marketing Manager", 0.1),
        ("Engineer", -0.2),
        ("Student", -1.5),
    ];
    for i in 0..rows {
        let pick =
            |rng: &mut ChaCha8Rng, xs: &[(&'static str, f64)]| xs[rng.random_range(0..xs.len())];
        let (source, a) = pick(&mut rng, &sources);
        let (industry, b) = pick(&mut rng, &industries);
        let (size, c) = pick(&mut rng, &sizes);
        let (country, d) = pick(&mut rng, &countries);
        let (title, e) = pick(&mut rng, &titles);
        let engaged: f64 = rng.random::<f64>();
        let visits = (engaged * 12.0 + rng.random_range(0.0..4.0)).floor();
        let time = (visits * rng.random_range(30.0..240.0)).floor();
        let pricing = if rng.random_bool(0.3 + 0.4 * engaged) {
            rng.random_range(0..5)
        } else {
            0
        };
        let opens = rng.random_range(0..8);
        let trial = rng.random_bool(0.1 + 0.2 * engaged);
        let z = -3.6
            + a
            + b
            + c
            + d
            + e
            + 0.9 * (1.0 + visits).ln()
            + 0.35 * f64::from(pricing)
            + if trial { 1.1 } else { 0.0 };
        let p = 1.0 / (1.0 + (-z).exp());
        let converted = rng.random_bool(p.clamp(0.0, 1.0));
        let missing = rng.random_bool(0.04);
        w.write_record([
            (600_000 + i).to_string(),
            source.to_string(),
            industry.to_string(),
            size.to_string(),
            country.to_string(),
            title.to_string(),
            if missing {
                String::new()
            } else {
                visits.to_string()
            },
            time.to_string(),
            pricing.to_string(),
            opens.to_string(),
            if trial { "Yes" } else { "No" }.to_string(),
            if converted { "1" } else { "0" }.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}
