//! `leadgate run`: ingest → normalize → validate → enrich → dedupe →
//! classify over one input file, one result line per input record, in
//! input order, everything recorded in the store, through the
//! [`crate::pipeline`] engine; a progress bar and a summary.

use crate::clock::now_ms;
use crate::config::Config;
use crate::pipeline::{
    ChunkContext, Components, Outcome, RunReport, STORE_BATCH, Validated, Validator, finish_chunk,
    flush, validate_chunk,
};
use anyhow::{Context, Result};
use leadgate_ingest::{Format, Limits as IngestLimits, Mapping, Reader, Record as InputRecord};
use leadgate_lead::Source;
use leadgate_store::Store;
use leadgate_store::prelude::*;
use std::io::{BufWriter, Read, Write};
use std::time::Instant;

/// What to run on.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A file path, or `-` for standard input.
    pub input: String,
    pub format: Option<Format>,
    pub map: Vec<String>,
    /// A file path, `-` for standard output, or empty for none.
    pub output: String,
    /// Source for records that do not name one.
    pub source: Source,
    /// Store path (`:memory:` for none kept).
    pub db: String,
    pub progress: bool,
    pub quiet: bool,
    /// `leadgate import`: existing CRM records, the base to match against.
    /// Records that fail validation still take part in matching.
    pub import: bool,
}

fn open_input(input: &str) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    if input == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = std::fs::File::open(input).with_context(|| format!("cannot open input {input}"))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), len))
}

fn open_output(output: &str) -> Result<Box<dyn Write>> {
    if output.is_empty() {
        return Ok(Box::new(std::io::sink()));
    }
    if output == "-" {
        return Ok(Box::new(BufWriter::new(std::io::stdout().lock())));
    }
    let file =
        std::fs::File::create(output).with_context(|| format!("cannot create output {output}"))?;
    Ok(Box::new(BufWriter::with_capacity(256 * 1024, file)))
}

/// Runs the pipeline over one input.
pub fn run(config: &Config, opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let format = match opts.format {
        Some(f) => f,
        None if opts.input == "-" => Format::Csv,
        None => Format::from_path(&opts.input).with_context(|| {
            format!(
                "cannot tell the format of {} from its name: pass --format csv or --format ndjson",
                opts.input
            )
        })?,
    };
    let mapping = Mapping::parse(&opts.map)?;
    let (input, input_len) = open_input(&opts.input)?;
    let mut reader = Reader::new(input, format, mapping, IngestLimits::default())
        .with_context(|| format!("cannot read {}", opts.input))?;
    if !opts.quiet && format == Format::Csv {
        let cols: Vec<String> = reader
            .columns()
            .iter()
            .map(|(h, t)| format!("{h} → {t}"))
            .collect();
        eprintln!("columns: {}", cols.join(", "));
    }

    let mut store = Store::open(&opts.db)?;
    // New leads are enriched; an import loads the CRM's own base as it is.
    let loaded = Components::load(config, &store, !opts.import)?;
    let component = &loaded.validate;
    let mut validator = Validator::new(component, config.validate_settings()?)?;
    let mut stage = loaded.matching_stage(config)?;
    let mut enricher = loaded.enrich_stage(config)?;
    let chain = loaded.enrich.as_ref().map(|(_, _, c)| c.clone());
    let classifier = &loaded.classifier;
    let now = now_ms();
    let components = loaded.describe();
    let run_id = store.begin_run(&config.tenant, &opts.input, &components.to_string(), now)?;
    let mut out = open_output(&opts.output)?;

    let progress = progress_bar(opts.progress && !opts.quiet, input_len);
    let mut report = RunReport {
        run_id,
        ..RunReport::default()
    };
    let batch_size = config.limits.batch_size;
    let mut pending: Vec<Outcome> = Vec::with_capacity(STORE_BATCH + batch_size);
    let ctx = ChunkContext {
        tenant: &config.tenant,
        source: opts.source,
        now,
        component: component.digest(),
        run_id,
        import: opts.import,
        rules: &config.dedupe.survivorship,
        classifier,
        enrich_component: loaded.enrich.as_ref().map_or("", |(c, _, _)| c.digest()),
        chain: chain.as_deref(),
    };
    let bytes = reader.progress();
    // Two stages on two threads: reading and validation in one, matching,
    // results and the store in the other; chunks flow between them in order.
    // Room for two store batches, so reading and validation go on while the
    // other stage commits one.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Validated>>(
        (2 * STORE_BATCH).div_ceil(batch_size).max(4),
    );
    let (outcome, io_error) = std::thread::scope(|scope| {
        let ctx = &ctx;
        let worker = scope.spawn(move || {
            let mut chunk: Vec<InputRecord> = Vec::with_capacity(batch_size);
            loop {
                chunk.clear();
                let mut io_error = None;
                while chunk.len() < batch_size {
                    match reader.next_record() {
                        None => break,
                        Some(Ok(r)) => chunk.push(r),
                        Some(Err(e)) => {
                            io_error = Some(e);
                            break;
                        }
                    }
                }
                if chunk.is_empty() {
                    // Lookups still under way get one more budget to land in
                    // the cache, so re-enrichment need not ask again.
                    if let Some(e) = &enricher {
                        e.settle();
                    }
                    return io_error;
                }
                let validated =
                    validate_chunk(ctx, &mut chunk, &[], &mut validator, enricher.as_mut());
                let failed = validated.is_err();
                // A closed channel: the other stage stopped on an error.
                if tx.send(validated).is_err() || failed || io_error.is_some() {
                    return io_error;
                }
            }
        });
        let mut processed = || -> Result<()> {
            for validated in rx.iter() {
                finish_chunk(
                    ctx,
                    validated?,
                    stage.as_mut(),
                    &store,
                    &mut pending,
                    &mut out,
                    &mut report,
                )?;
                if pending.len() >= STORE_BATCH {
                    flush(ctx, &mut store, &mut pending, stage.as_mut())?;
                }
                progress.set_position(bytes.load(std::sync::atomic::Ordering::Relaxed));
            }
            Ok(())
        };
        let outcome = processed();
        // Stops the reading stage if this one stopped early.
        drop(rx);
        let io_error = match worker.join() {
            Ok(e) => e.map(anyhow::Error::from),
            Err(_) => Some(anyhow::anyhow!("the reading and validation stage panicked")),
        };
        (outcome, io_error)
    });
    progress.finish_and_clear();
    // Whatever was processed is recorded, even when the run stops on an error.
    let recorded = flush(&ctx, &mut store, &mut pending, stage.as_mut());
    if let Some(chain) = &chain {
        report.providers = chain.stats();
        crate::enrich::save_stats(&store, run_id, &report.providers)?;
    }
    let written = out.flush().context("cannot write the results");
    let failed = outcome.is_err() || recorded.is_err() || written.is_err() || io_error.is_some();
    store.finish_run(
        run_id,
        &report.totals,
        if failed { "failed" } else { "done" },
        now_ms(),
    )?;
    outcome.and(recorded).and(written)?;
    if let Some(e) = io_error {
        return Err(e).with_context(|| {
            format!(
                "reading {} stopped after {} records (those were processed and recorded in run {run_id})",
                opts.input, report.totals.total
            )
        });
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn progress_bar(enabled: bool, len: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled {
        return ProgressBar::hidden();
    }
    let target = ProgressDrawTarget::stderr_with_hz(10);
    match len {
        Some(len) => {
            let bar = ProgressBar::with_draw_target(Some(len), target);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta})",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => ProgressBar::with_draw_target(None, target),
    }
}

/// The summary printed at the end of a run.
pub fn print_summary(report: &RunReport, opts: &RunOptions) {
    let t = &report.totals;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "leadgate {} {}: {} records in {:.2} s ({:.0}/s)",
        if opts.import { "import" } else { "run" },
        report.run_id,
        t.total,
        secs,
        t.total as f64 / secs
    );
    for (name, n) in [
        ("accepted", t.accepted),
        ("review", t.review),
        ("rejected", t.rejected),
        ("duplicate", t.duplicates),
        ("exception", t.exceptions),
    ] {
        eprintln!("  {name:<10} {n:>9}");
    }
    if !report.states.is_empty() {
        let states: Vec<String> = report
            .states
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        eprintln!("qualification: {}", states.join(" · "));
    }
    if !report.enriched.is_empty() {
        let e: Vec<String> = report
            .enriched
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        eprintln!("enrichment: {}", e.join(" · "));
    }
    crate::enrich::print_stats(&report.providers);
    let top = report.top_issues(10);
    if !top.is_empty() {
        eprintln!("top issues:");
        for (code, n) in top {
            eprintln!("  {code:<28} {n:>9}");
        }
    }
    if opts.output.is_empty() {
        eprintln!("store: {}", opts.db);
    } else {
        eprintln!("results: {} · store: {}", opts.output, opts.db);
    }
    if t.exceptions > 0 {
        eprintln!(
            "{} lead(s) are in the exception queue: `leadgate exceptions` lists them",
            t.exceptions
        );
    }
}
