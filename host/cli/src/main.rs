//! `leadgate`: the host runner. Batch work from the command line; every
//! capability runs as a sandboxed WebAssembly component.
//!
//! Exit codes: 0 done; 1 error (nothing or only part processed — the
//! message says which); 2 bad usage; 3 done, but some leads went to the
//! exception queue.

/// The host allocates a string per field per lead on every component call;
/// mimalloc is markedly faster at that than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use leadgate::{
    batch, calibrate, clock, compose, config, dedupe, eval, events, handoff, logging, reenrich,
    rekey, report, review, run, sample, score, serve, train,
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use config::Config;
use leadgate_lead::Source;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "leadgate",
    version,
    about = "The control layer between lead intake and the CRM"
)]
struct Cli {
    /// Tenant configuration (leadgate.toml); defaults apply without one.
    #[arg(long, global = true, env = "LEADGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Store: a SQLite file, or :memory:. Overrides store.path.
    #[arg(long, global = true, env = "LEADGATE_DB")]
    db: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Ndjson,
}

/// Where records come from, for every command that reads a file of them.
#[derive(clap::Args)]
struct InputArgs {
    /// Input file (`run` and `import`: - for standard input).
    #[arg(long)]
    input: String,
    /// Input format (default: from the file name; csv for stdin).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Map a column to a field: COLUMN=FIELD (repeatable).
    #[arg(long = "map", value_name = "COLUMN=FIELD")]
    map: Vec<String>,
}

impl InputArgs {
    fn batch(
        self,
        truth_column: Option<String>,
        quiet: bool,
        model: dedupe::ModelChoice,
    ) -> dedupe::Input {
        dedupe::Input {
            path: self.input,
            format: format_of(self.format),
            map: self.map,
            truth_column,
            quiet,
            model,
            store_passes: false,
        }
    }
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a key for a tenant and print it (once).
    Create {
        /// The tenant (default: the config's).
        #[arg(long)]
        tenant: Option<String>,
        /// What the key is for, to recognise it later.
        #[arg(long, default_value = "default")]
        label: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a tenant's keys by label or prefix.
    Revoke {
        which: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Handoffs, newest first.
    List {
        /// pending, delivered, failed or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Put failed and dead handoffs back in the queue (all, or these ids).
    Retry { ids: Vec<i64> },
    /// Deliver the due handoffs now.
    Deliver,
}

#[derive(Subcommand)]
enum Command {
    /// Normalize, validate, enrich, deduplicate and classify a file of
    /// leads; one JSON result per record.
    Run {
        #[command(flatten)]
        from: InputArgs,
        /// Where results go, or - for standard output.
        #[arg(long)]
        output: String,
        /// Source for records that do not carry one.
        #[arg(long, default_value = "import")]
        source: String,
        /// No column report, progress bar or summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Load existing CRM records (the base new leads are matched against),
    /// deduplicating them as they go; one JSON result per record.
    Import {
        #[command(flatten)]
        from: InputArgs,
        /// Where results go (the same contract as `run`), or - for stdout.
        #[arg(long)]
        output: Option<String>,
        /// Source for records that do not carry one.
        #[arg(long, default_value = "crm")]
        source: String,
        /// No column report, progress bar or summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Batch clean-up of a dirty file: match pairs, clusters and a merge
    /// plan, applied to the store unless --dry-run.
    Dedupe {
        #[command(flatten)]
        from: InputArgs,
        /// Pairs at or above the review threshold: line_a,line_b,probability,decision.
        #[arg(long)]
        pairs: PathBuf,
        /// Clusters, one JSON object per line, with the golden record of each
        /// planned merge.
        #[arg(long)]
        clusters: Option<PathBuf>,
        /// Write the pairs and clusters only; change nothing in the store.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        model: ModelArg,
        /// No progress bars or report.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Estimate the dedupe model (m/u probabilities, calibration) from
    /// labelled records, reviewers' decisions, or unlabelled data (EM).
    DedupeTrain {
        /// Records to learn from.
        #[arg(long)]
        input: Option<String>,
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[arg(long = "map", value_name = "COLUMN=FIELD")]
        map: Vec<String>,
        /// The column naming the true person of each record.
        #[arg(long)]
        truth_column: Option<String>,
        /// Also learn from reviewers' decisions in the store.
        #[arg(long)]
        reviews: bool,
        /// Estimate, without labels, on the tenant's leads in the store
        /// (`--db`): the model `run`, `import` and `serve` then use.
        #[arg(long, conflicts_with_all = ["input", "truth_column", "reviews"])]
        from_store: bool,
        /// Prior 0.5, slope-only calibration: for a model meant for other
        /// data than it was trained on (how the bundled model is made).
        #[arg(long)]
        neutral_prior: bool,
        /// The model file (JSON) for `[dedupe] model = ...`.
        #[arg(long)]
        output: PathBuf,
    },
    /// Work through the re-enrichment queue: leads whose lookups were
    /// pending, failed or stale, enriched again and reclassified.
    Enrich {
        /// Take leads from the re-enrichment queue (the only source for now).
        #[arg(long, required = true)]
        queued: bool,
        /// Leads taken from the queue at most (oldest first).
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// How long each batch waits for its lookups (ms).
        #[arg(long, default_value_t = 10_000)]
        budget_ms: u64,
        /// Each lead's new enrichment and qualification, as NDJSON (- for stdout).
        #[arg(long)]
        output: Option<String>,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Load behavioural events (NDJSON: page views, downloads, email opens
    /// and clicks, form submissions, trial sign-ups, product usage, support
    /// inquiries, replies), attach them to leads, and re-score the leads
    /// (and accounts) they touch.
    Events {
        /// The events file, or - for standard input.
        #[arg(long)]
        input: String,
        /// Append leads surfaced to sales to this qualified_lead_pipeline
        /// NDJSON file (default: score.pipeline; always kept in the store).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Store and attach the events only; do not re-score.
        #[arg(long)]
        no_score: bool,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Recompute the blocking keys of every keyed stored lead with the
    /// configured dedupe component (after swapping it, changing a key
    /// setting such as `name_city_key`, or upgrading leadgate when its
    /// keys changed). Run it while no `leadgate serve` writes to the store.
    Rekey {
        #[arg(long, short)]
        quiet: bool,
    },
    /// Re-score every stored lead (after changing the ICP or the model, or
    /// as time decays engagement), surfacing as `events` does.
    Rescore {
        #[arg(long)]
        pipeline: Option<PathBuf>,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Score a file of records in batch, without the store: one JSON object
    /// per record, {"line": N, "score": {...}}. Records need no contact
    /// fields.
    Score {
        #[command(flatten)]
        from: InputArgs,
        /// A model from `leadgate calibrate` (default: score.model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Where the scores go, or - for standard output.
        #[arg(long)]
        output: String,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Fit the conversion model (regularized logistic regression) from
    /// historical outcomes; prints ROC AUC, PR AUC, Brier score and a
    /// reliability table on held-out rows.
    Calibrate {
        #[command(flatten)]
        from: InputArgs,
        /// The column holding the outcome (1/0, yes/no, won/lost, …).
        #[arg(long)]
        outcome: String,
        /// A column not to use as a feature (repeatable).
        #[arg(long = "ignore", value_name = "COLUMN")]
        ignore: Vec<String>,
        /// Share of rows held out for the metrics.
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        /// Seed of the train/held-out split.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The L2 penalty (default: chosen on a validation split).
        #[arg(long)]
        l2: Option<f64>,
        /// Logistic regression, gradient-boosted trees, or whichever does
        /// better on a validation split (auto).
        #[arg(long, value_enum, default_value_t = calibrate::ModelType::Auto)]
        model_type: calibrate::ModelType,
        /// Gradient-boosted trees: grow exactly this many (default: as many
        /// as do best on the validation split, at most 500).
        #[arg(long)]
        trees: Option<usize>,
        /// Values that mean "not answered" (comma-separated; replaces the
        /// default list: Select, N/A, NA, none, -, --, Unknown, NaN, null).
        #[arg(long, value_delimiter = ',')]
        placeholders: Option<Vec<String>>,
        /// Write each held-out row's line number and predicted probability
        /// here (CSV).
        #[arg(long)]
        holdout_output: Option<PathBuf>,
        /// The model file (TOML) for `[score] model = ...`.
        #[arg(long)]
        output: PathBuf,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Scores against eventual outcomes: scoring_calibration_signal (score
    /// vs outcome per lead) and icp_drift_signal (segments converting far
    /// from what the ICP predicts).
    Report {
        #[command(flatten)]
        from: InputArgs,
        /// The column holding the outcome.
        #[arg(long)]
        outcome: String,
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write every signal as NDJSON here.
        #[arg(long)]
        signals: Option<String>,
        /// Smallest segment icp_drift_signal reports.
        #[arg(long, default_value_t = 30)]
        min_segment: usize,
    },
    /// Undo merges: a merge id, or a lead id (every merge it is part of).
    /// The source records come back exactly as they were.
    Unmerge {
        id: String,
        /// Who undid it, for the audit trail.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Show a stored lead as stored: status, raw and normalized record, its
    /// master, golden record and merges.
    Show { id: String },
    /// The review queue: failed validation, uncertain matches and
    /// ambiguous classifications, highest priority first.
    Review {
        #[command(subcommand)]
        action: review::Action,
    },
    /// Run the HTTP service: lead, event and form intake, signed CRM
    /// webhooks, the review API, CRM handoff, /metrics.
    Serve {
        /// Address to listen on (default: serve.listen, 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Leave handoffs in the outbox (no CRM calls).
        #[arg(long)]
        no_handoff: bool,
        /// Human-readable logs instead of JSON lines.
        #[arg(long)]
        text_logs: bool,
    },
    /// API keys of the service's tenants (stored hashed; a key is shown
    /// once, when created).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The CRM outbox: list handoffs, deliver the due ones, replay failed
    /// and dead-lettered ones.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Alerts raised for people (review items past their SLA), newest first.
    Alerts {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// For batch setups without `serve`: escalate stale review items (and
    /// apply the SLA fallback), then deliver due CRM handoffs once.
    Tick {
        /// Only the review SLA; no CRM calls.
        #[arg(long)]
        no_handoff: bool,
    },
    /// List the leads waiting in the exception queue.
    Exceptions {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pre-initialize a component (wizer) so fresh instances start warm.
    Preinit {
        /// The component built by cargo.
        input: PathBuf,
        /// Where the pre-initialized component goes.
        output: PathBuf,
    },
    /// Plug capability components into a component that imports them
    /// (static composition): e.g. the validate component into the edge
    /// component, for `wasmtime serve` or SpinKube.
    Compose {
        /// The component whose imports are satisfied (e.g. the edge).
        component: PathBuf,
        /// A component exporting what it imports (e.g. validate.wasm);
        /// repeat for several.
        #[arg(long = "plug", required = true)]
        plugs: Vec<PathBuf>,
        /// Where the composed component goes.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Generate messy sample leads with known ground truth.
    Sample {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The CSV of leads.
        #[arg(long)]
        output: PathBuf,
        /// The ground truth CSV (line, expected status and issue codes, person).
        #[arg(long)]
        truth: Option<PathBuf>,
        /// The same rows with a `person` column: labelled data for
        /// `leadgate eval dedupe --truth-column person`.
        #[arg(long)]
        labelled: Option<PathBuf>,
        /// Also write a firmographics data set for the generated companies
        /// (the local enrichment provider's CSV format).
        #[arg(long)]
        companies: Option<PathBuf>,
        /// Also write behavioural events (NDJSON) for the generated leads.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Also write a conversion history (CSV with a `Converted` column)
        /// drawn from a known model, for `leadgate calibrate`.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Rows of the history.
        #[arg(long, default_value_t = 5000)]
        history_rows: usize,
    },
    /// Compare run results with a ground-truth file (validation agreement),
    /// or `eval dedupe` for dedupe precision, recall and F1.
    #[command(args_conflicts_with_subcommands = true)]
    Eval {
        /// results.ndjson from `leadgate run`.
        #[arg(long, required = true)]
        results: Option<PathBuf>,
        /// Truth CSV from `leadgate sample --truth`.
        #[arg(long, required = true)]
        truth: Option<PathBuf>,
        #[command(subcommand)]
        what: Option<EvalWhat>,
    },
}

#[derive(Subcommand)]
enum EvalWhat {
    /// Pair precision, recall and F1 of dedupe over labelled records.
    Dedupe {
        #[command(flatten)]
        from: InputArgs,
        /// The column naming the true person of each record.
        #[arg(long)]
        truth_column: String,
        #[command(flatten)]
        model: ModelArg,
    },
}

/// Which dedupe model a batch job compares with.
#[derive(clap::Args)]
struct ModelArg {
    /// Pin the model instead of estimating one on the file: a model file
    /// (`dedupe-train` writes them), or `configured` for `[dedupe] model`
    /// (else the bundled one). Default: estimated on the file itself (EM,
    /// no labels), starting from the configured model.
    #[arg(long, value_name = "FILE|configured")]
    model: Option<String>,
}

impl ModelArg {
    /// The choice, pinning a model file in `config`.
    fn apply(self, config: &mut Config) -> Result<dedupe::ModelChoice> {
        match self.model.as_deref() {
            None => Ok(dedupe::ModelChoice::Estimate),
            Some("configured") => Ok(dedupe::ModelChoice::Configured),
            Some(path) => {
                let path = std::path::absolute(path)
                    .with_context(|| format!("--model {path}: not a usable path"))?;
                if !path.is_file() {
                    anyhow::bail!("--model {}: no such file", path.display());
                }
                config.dedupe.model = Some(path);
                Ok(dedupe::ModelChoice::Configured)
            }
        }
    }
}

fn format_of(f: Option<FormatArg>) -> Option<leadgate_ingest::Format> {
    f.map(|f| match f {
        FormatArg::Csv => leadgate_ingest::Format::Csv,
        FormatArg::Ndjson => leadgate_ingest::Format::Ndjson,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up its own (JSON, at `info`) logging.
    if !matches!(cli.command, Command::Serve { .. }) {
        logging::init("warn", false);
    }
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn execute(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    let db = cli.db.clone().unwrap_or_else(|| {
        if cli.config.is_some() && config.store.path != ":memory:" {
            config.base.join(&config.store.path).display().to_string()
        } else {
            config.store.path.clone()
        }
    });
    match cli.command {
        Command::Run {
            from,
            output,
            source,
            quiet,
        } => {
            let opts = run_options(from, output, &source, db, quiet, false)?;
            run_and_report(&config, &opts)
        }
        Command::Import {
            from,
            output,
            source,
            quiet,
        } => {
            let output = output.unwrap_or_default();
            let opts = run_options(from, output, &source, db, quiet, true)?;
            run_and_report(&config, &opts)
        }
        Command::Dedupe {
            from,
            pairs,
            clusters,
            dry_run,
            model,
            quiet,
        } => {
            let mut config = config;
            let choice = model.apply(&mut config)?;
            let opts = dedupe::Options {
                input: from.batch(None, quiet, choice),
                pairs,
                clusters,
                dry_run,
                db,
            };
            let report = dedupe::run(&config, &opts)?;
            if !quiet {
                dedupe::print_report(&report, &opts);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DedupeTrain {
            input,
            format,
            map,
            truth_column,
            reviews,
            from_store,
            neutral_prior,
            output,
        } => {
            let input = input.map(|path| dedupe::Input {
                path,
                format: format_of(format),
                map,
                model: if truth_column.is_some() {
                    dedupe::ModelChoice::Configured
                } else {
                    dedupe::ModelChoice::Estimate
                },
                store_passes: truth_column.is_some(),
                truth_column,
                quiet: false,
            });
            train::command(
                &config,
                &db,
                train::Sources {
                    input,
                    reviews,
                    from_store,
                },
                neutral_prior,
                &output,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events {
            input,
            pipeline,
            no_score,
            quiet,
        } => {
            let report = events::run(
                &config,
                &events::Options {
                    input,
                    db,
                    pipeline,
                    score: !no_score,
                },
            )?;
            if !quiet {
                events::print_report(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rekey { quiet } => {
            let started = std::time::Instant::now();
            let r = rekey::rekey(&config, &db, quiet)?;
            if !quiet {
                eprintln!(
                    "rekeyed {} lead{} of tenant {} in {:.1} s: {} index entries before, {} after",
                    r.leads,
                    if r.leads == 1 { "" } else { "s" },
                    config.tenant,
                    started.elapsed().as_secs_f64(),
                    r.keys_before,
                    r.keys_after
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rescore { pipeline, quiet } => {
            let report = score::rescore_stored(&config, &db, None, "rescore", pipeline)?;
            if !quiet {
                eprintln!("{}", score::summary(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Score {
            from,
            model,
            output,
            quiet,
        } => {
            let r = batch::score_file(
                &config,
                &batch::Input {
                    path: &from.input,
                    format: format_of(from.format),
                    map: &from.map,
                },
                model.as_deref(),
                &output,
            )?;
            if !quiet {
                eprintln!(
                    "scored {} records{}{}",
                    r.scored,
                    if r.malformed > 0 {
                        format!(
                            " · {} could not be read (an `error` line each)",
                            r.malformed
                        )
                    } else {
                        String::new()
                    },
                    if r.failed > 0 {
                        format!(" · {} failed in the component", r.failed)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(if r.failed > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Calibrate {
            from,
            outcome,
            ignore,
            holdout,
            seed,
            l2,
            model_type,
            trees,
            placeholders,
            holdout_output,
            output,
            quiet,
        } => {
            let opts = calibrate::Options {
                input: from.input,
                format: format_of(from.format),
                map: from.map,
                outcome,
                ignore,
                holdout,
                seed,
                l2,
                model_type,
                trees,
                placeholders: placeholders.unwrap_or_else(|| {
                    calibrate::PLACEHOLDERS
                        .iter()
                        .map(|s| (*s).to_string())
                        .collect()
                }),
                holdout_output,
                output,
                quiet,
            };
            let c = calibrate::run(&config, &opts)?;
            if opts.quiet {
                print!("{}", c.metrics);
            } else {
                calibrate::print_report(&c, &opts);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            from,
            outcome,
            model,
            signals,
            min_segment,
        } => {
            let r = report::run(
                &config,
                &report::Options {
                    input: from.input,
                    format: format_of(from.format),
                    map: from.map,
                    outcome,
                    model,
                    signals,
                    min_segment: min_segment.max(1),
                },
            )?;
            print!("{}", r.text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Unmerge { id, by } => {
            review::unmerge(&config, &db, &id, &by)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id } => {
            review::show(&db, &id)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Review { action } => {
            review::execute(&config, &db, action)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            no_handoff,
            text_logs,
        } => {
            serve::serve(
                &config,
                &serve::Options {
                    listen,
                    db,
                    no_handoff,
                    json_logs: !text_logs,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { action } => {
            let store = leadgate_store::Store::open(&db)?;
            match action {
                KeysAction::Create { tenant, label } => {
                    let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
                    let key = serve::auth::new_key(&tenant);
                    store.add_api_key(
                        &tenant,
                        &label,
                        &serve::auth::hash(&key),
                        &serve::auth::prefix(&key),
                        clock::now_ms(),
                    )?;
                    eprintln!("API key for tenant {tenant} ({label}); it is not shown again:");
                    println!("{key}");
                }
                KeysAction::List => {
                    for k in store.api_keys(None)? {
                        println!(
                            "{:<16} {:<16} {:<28} {}",
                            k.tenant,
                            k.label,
                            k.prefix,
                            if k.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                        );
                    }
                }
                KeysAction::Revoke { which, tenant } => {
                    let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
                    let n = store.revoke_api_key(&tenant, &which, clock::now_ms())?;
                    if n == 0 {
                        anyhow::bail!(
                            "no active key of tenant {tenant} has the label or prefix '{which}'"
                        );
                    }
                    println!("revoked {n} key(s); a running service refuses them within a minute");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox { action } => {
            let mut store = leadgate_store::Store::open(&db)?;
            let tenant = config.tenant.as_str();
            match action {
                OutboxAction::List { state, limit, json } => {
                    let items = store.handoffs(tenant, state.as_deref(), limit)?;
                    if json {
                        for h in &items {
                            println!("{}", serde_json::to_string(h)?);
                        }
                    } else if items.is_empty() {
                        println!("the outbox is empty");
                    } else {
                        for h in &items {
                            println!(
                                "#{:<6} {:<9} {:<8} {:<6} lead {}  attempts {}  {}",
                                h.id,
                                h.state,
                                h.target,
                                h.op,
                                h.lead_id,
                                h.attempts,
                                h.last_error.as_deref().unwrap_or("")
                            );
                        }
                    }
                }
                OutboxAction::Retry { ids } => {
                    let n = store.retry_handoffs(tenant, &ids, clock::now_ms())?;
                    println!("{n} handoff(s) queued again");
                }
                OutboxAction::Deliver => deliver_once(&config, &mut store, clock::now_ms())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts { limit, json } => {
            let store = leadgate_store::Store::open(&db)?;
            let alerts = store.alerts(&config.tenant, limit)?;
            if alerts.is_empty() && !json {
                println!("no alerts");
            }
            for a in alerts {
                if json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    println!("#{:<5} {:<18} {}", a.id, a.kind, a.message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tick { no_handoff } => {
            let mut store = leadgate_store::Store::open(&db)?;
            let now = clock::now_ms();
            let t = review::tick(&config, &mut store, now)?;
            println!(
                "review SLA: {} escalated · {} past the fallback threshold",
                t.escalated, t.fallbacks
            );
            if !no_handoff {
                deliver_once(&config, &mut store, now)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Exceptions { limit, json } => {
            let store = leadgate_store::Store::open(&db)?;
            let items = store.open_exceptions(limit)?;
            if json {
                for item in &items {
                    println!("{}", serde_json::to_string(item)?);
                }
            } else if items.is_empty() {
                println!("the exception queue is empty");
            } else {
                for item in &items {
                    println!(
                        "#{:<5} lead {}  run {}  {}  {}",
                        item.id,
                        item.lead_id,
                        item.run_id.map_or("-".into(), |r| r.to_string()),
                        item.code,
                        item.error
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Preinit { input, output } => {
            preinit(&config, &input, &output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compose {
            component,
            plugs,
            output,
        } => {
            let report = compose::compose(&component, &plugs, &output)?;
            for (path, names) in &report.plugged {
                eprintln!("plugged {} → {}", path.display(), names.join(", "));
            }
            eprintln!(
                "wrote {} ({} bytes); it imports: {}",
                output.display(),
                report.bytes,
                report.imports.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Enrich {
            queued: _,
            limit,
            budget_ms,
            output,
            quiet,
        } => {
            let report = reenrich::run(
                &config,
                &reenrich::Options {
                    db: db.clone(),
                    limit,
                    budget: std::time::Duration::from_millis(budget_ms.clamp(1, 600_000)),
                    output,
                    quiet,
                },
            )?;
            if !quiet {
                let states: Vec<String> = report
                    .states
                    .iter()
                    .map(|(s, n)| format!("{} {n}", s.as_str()))
                    .collect();
                eprintln!(
                    "re-enrichment: {} taken from the queue · {} done · {} still queued{}{}",
                    report.taken,
                    report.done,
                    report.still_queued,
                    if report.unreadable > 0 {
                        format!(" · {} unreadable (left queued)", report.unreadable)
                    } else {
                        String::new()
                    },
                    if states.is_empty() {
                        String::new()
                    } else {
                        format!("\nqualification: {}", states.join(" · "))
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample {
            count,
            seed,
            output,
            truth,
            labelled,
            companies,
            events,
            history,
            history_rows,
        } => {
            sample::write(count, seed, &output, truth.as_deref(), labelled.as_deref())?;
            eprintln!("wrote {count} leads to {}", output.display());
            if let Some(path) = companies {
                let n = sample::write_companies(&path, seed)?;
                eprintln!("wrote {n} companies to {}", path.display());
            }
            if let Some(path) = events {
                let n = sample::write_events(&output, &path, seed, clock::now_ms())?;
                eprintln!("wrote {n} events to {}", path.display());
            }
            if let Some(path) = history {
                sample::write_history(&path, history_rows, seed)?;
                eprintln!("wrote {history_rows} history rows to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            results,
            truth,
            what,
        } => {
            match (what, results, truth) {
                (
                    Some(EvalWhat::Dedupe {
                        from,
                        truth_column,
                        model,
                    }),
                    _,
                    _,
                ) => {
                    let mut config = config;
                    let choice = model.apply(&mut config)?;
                    let input = from.batch(Some(truth_column), false, choice);
                    let prepared = dedupe::prepare(&config, &input, None)?;
                    let guard = leadgate_merge::cluster::Guard {
                        max_size: config.dedupe.max_cluster,
                        ..Default::default()
                    };
                    let report = eval::dedupe::evaluate(
                        &prepared,
                        config.dedupe.review,
                        config.dedupe.auto_merge,
                        guard,
                    );
                    print!("{report}");
                }
                (None, Some(results), Some(truth)) => {
                    let report = eval::evaluate(&results, &truth)?;
                    print!("{report}");
                }
                _ => anyhow::bail!("eval needs --results and --truth, or `eval dedupe`"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_options(
    from: InputArgs,
    output: String,
    source: &str,
    db: String,
    quiet: bool,
    import: bool,
) -> Result<run::RunOptions> {
    let source = Source::parse(source).with_context(|| {
        format!("--source '{source}': use form, ads, import, crm, api or other")
    })?;
    Ok(run::RunOptions {
        input: from.input,
        format: format_of(from.format),
        map: from.map,
        output,
        source,
        db,
        progress: true,
        quiet,
        import,
    })
}

/// `run` and `import`: the pipeline, its summary, and the exit code.
fn run_and_report(config: &Config, opts: &run::RunOptions) -> Result<ExitCode> {
    let report = run::run(config, opts)?;
    if !opts.quiet {
        run::print_summary(&report, opts);
    }
    // New leads are scored with whatever events already wait for them; an
    // import loads the CRM's base as it is.
    if config.score.enabled && !opts.import && opts.db != ":memory:" {
        let store = leadgate_store::Store::open(&opts.db)?;
        let leads = store.run_leads(report.run_id)?;
        drop(store);
        let scored = score::rescore_stored(config, &opts.db, Some(leads), "run", None)?;
        if !opts.quiet {
            eprintln!("{}", score::summary(&scored));
        }
    }
    Ok(if report.totals.exceptions > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Delivers the due CRM handoffs once (the token from the environment)
/// and says how it went.
fn deliver_once(config: &Config, store: &mut leadgate_store::Store, now: i64) -> Result<()> {
    let token = std::env::var(&config.crm.token_env).ok();
    let r = handoff::deliver_due(config, store, &handoff::agent(), token.as_deref(), now)?;
    println!(
        "CRM handoff: delivered {} · retry later {} · failed {} · dead {}",
        r.delivered, r.retried, r.failed, r.dead
    );
    Ok(())
}

fn preinit(config: &Config, input: &std::path::Path, output: &std::path::Path) -> Result<()> {
    use leadgate_runtime::preinit;
    let wasm = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let mut limits = config.runtime_limits();
    limits.deadline = std::time::Duration::from_secs(120);
    // Warm-up builds large tables (the bundled validate component needs
    // ~70 MiB). The snapshot's memory counts against `limits.memory_mib`
    // when it runs, so a limit below that makes every instantiation fail.
    limits.memory_bytes = 1 << 30;
    let runtime = leadgate_runtime::Runtime::new(limits, None)?;
    let snapshot = if preinit::has_init(&runtime, &wasm)? {
        preinit::preinit(&runtime, &wasm)
            .with_context(|| format!("pre-initializing {}", input.display()))?
    } else {
        eprintln!(
            "{} has no `{}` export; copied unchanged",
            input.display(),
            preinit::INIT_EXPORT
        );
        wasm
    };
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(output, snapshot)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}
