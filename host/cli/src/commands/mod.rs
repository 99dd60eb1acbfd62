//! The `leadgate` command line: the arguments of every verb, and
//! [`execute`], which loads the configuration and hands each verb to its
//! handler (`data`, `service`, `components`, `store`).

mod alerts;
mod components;
mod data;
mod routing;
mod rules;
mod service;
mod store;

use leadgate::{
    batch, calibrate, clock, compose, config, dedupe, eval, events, handoff, reenrich, rekey,
    report, review, run, score, serve, train,
};
use leadgate_store::prelude::*;

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
pub(crate) struct Cli {
    /// Tenant configuration (leadgate.toml); defaults apply without one.
    #[arg(long, global = true, env = "LEADGATE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Store: a SQLite file, :memory:, or a PostgreSQL URL
    /// (postgres://user@host/db). Overrides store.path and store.url.
    #[arg(long, global = true, env = "LEADGATE_DB")]
    pub(crate) db: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    Csv,
    Ndjson,
}

/// Where records come from, for every command that reads a file of them.
#[derive(clap::Args)]
pub(crate) struct InputArgs {
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
pub(crate) enum KeysAction {
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
pub(crate) enum OutboxAction {
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
pub(crate) enum Command {
    /// Normalize, validate, enrich, deduplicate and classify a file of
    /// leads; one JSON result per record.
    Run(RunArgs),
    /// Load existing CRM records (the base new leads are matched against),
    /// deduplicating them as they go; one JSON result per record.
    Import(ImportArgs),
    /// Batch clean-up of a dirty file: match pairs, clusters and a merge
    /// plan, applied to the store unless --dry-run.
    Dedupe(DedupeArgs),
    /// Estimate the dedupe model (m/u probabilities, calibration) from
    /// labelled records, reviewers' decisions, or unlabelled data (EM).
    DedupeTrain(DedupeTrainArgs),
    /// Work through the re-enrichment queue: leads whose lookups were
    /// pending, failed or stale, enriched again and reclassified.
    Enrich(EnrichArgs),
    /// Load behavioural events (NDJSON: page views, downloads, email opens
    /// and clicks, form submissions, trial sign-ups, product usage, support
    /// inquiries, replies), attach them to leads, and re-score the leads
    /// (and accounts) they touch.
    Events(EventsArgs),
    /// Recompute the blocking keys of every keyed stored lead with the
    /// configured dedupe component (after swapping it, changing a key
    /// setting such as `name_city_key`, or upgrading leadgate when its
    /// keys changed). Run it while no `leadgate serve` writes to the store.
    Rekey(RekeyArgs),
    /// Re-score every stored lead (after changing the ICP or the model, or
    /// as time decays engagement), surfacing as `events` does.
    Rescore(RescoreArgs),
    /// Score a file of records in batch, without the store: one JSON object
    /// per record, {"line": N, "score": {...}}. Records need no contact
    /// fields.
    Score(ScoreArgs),
    /// Fit the conversion model (regularized logistic regression) from
    /// historical outcomes; prints ROC AUC, PR AUC, Brier score and a
    /// reliability table on held-out rows.
    Calibrate(CalibrateArgs),
    /// Scores against eventual outcomes: scoring_calibration_signal (score
    /// vs outcome per lead) and icp_drift_signal (segments converting far
    /// from what the ICP predicts).
    Report(ReportArgs),
    /// Undo merges: a merge id, or a lead id (every merge it is part of).
    /// The source records come back exactly as they were.
    Unmerge(UnmergeArgs),
    /// Show a stored lead as stored: status, raw and normalized record, its
    /// master, golden record and merges.
    Show(ShowArgs),
    /// The review queue: failed validation, uncertain matches and
    /// ambiguous classifications, highest priority first.
    Review(ReviewArgs),
    /// Run the HTTP service: lead, event and form intake, signed CRM
    /// webhooks, the review API, CRM handoff, /metrics.
    Serve(ServeArgs),
    /// API keys of the service's tenants (stored hashed; a key is shown
    /// once, when created).
    Keys(KeysArgs),
    /// The CRM outbox: list handoffs, deliver the due ones, replay failed
    /// and dead-lettered ones.
    Outbox(OutboxArgs),
    /// Alerts raised for people (review items past their SLA, leads that
    /// missed their response SLA or wait with no rep, handoffs
    /// dead-lettered), newest first.
    Alerts(AlertsArgs),
    /// For batch setups without `serve`: escalate stale review items (and
    /// apply the SLA fallback), fire due response-SLA and routing timers,
    /// then deliver due CRM handoffs once.
    Tick(TickArgs),
    /// Who can receive leads: list reps with their load, add or change
    /// one, mark one away or back, and per-rep fairness and SLA stats.
    Reps(RepsArgs),
    /// Route stored leads now (again, or by hand with --to), or ask who
    /// would get a lead and why (--dry-run; nothing recorded).
    Route(RouteArgs),
    /// Record a rep's first touch of a lead (stops its response SLA).
    Touch(TouchArgs),
    /// Workflow rules: check documents (unknown fields, event types,
    /// windows without units, CEL mistakes), naming the rule and line.
    Rules(RulesArgs),
    /// List the leads waiting in the exception queue.
    Exceptions(ExceptionsArgs),
    /// Copy a whole store into an empty one on another backend (SQLite to
    /// PostgreSQL, or back), then verify every table by row count and
    /// checksum. Stop `leadgate serve` on the source first.
    MigrateStore(MigrateStoreArgs),
    /// Pre-initialize a component (wizer) so fresh instances start warm.
    Preinit(PreinitArgs),
    /// Plug capability components into a component that imports them
    /// (static composition): e.g. the validate component into the edge
    /// component, for `wasmtime serve` or SpinKube.
    Compose(ComposeArgs),
    /// Generate messy sample leads with known ground truth.
    Sample(SampleArgs),
    /// Compare run results with a ground-truth file (validation agreement),
    /// or `eval dedupe` for dedupe precision, recall and F1.
    #[command(args_conflicts_with_subcommands = true)]
    Eval(EvalArgs),
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) from: InputArgs,
    /// Where results go, or - for standard output.
    #[arg(long)]
    pub(crate) output: String,
    /// Source for records that do not carry one.
    #[arg(long, default_value = "import")]
    pub(crate) source: String,
    /// No column report, progress bar or summary.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    pub(crate) from: InputArgs,
    /// Where results go (the same contract as `run`), or - for stdout.
    #[arg(long)]
    pub(crate) output: Option<String>,
    /// Source for records that do not carry one.
    #[arg(long, default_value = "crm")]
    pub(crate) source: String,
    /// No column report, progress bar or summary.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct DedupeArgs {
    #[command(flatten)]
    pub(crate) from: InputArgs,
    /// Pairs at or above the review threshold: line_a,line_b,probability,decision.
    #[arg(long)]
    pub(crate) pairs: PathBuf,
    /// Clusters, one JSON object per line, with the golden record of each
    /// planned merge.
    #[arg(long)]
    pub(crate) clusters: Option<PathBuf>,
    /// Write the pairs and clusters only; change nothing in the store.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// No progress bars or report.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct DedupeTrainArgs {
    /// Records to learn from.
    #[arg(long)]
    pub(crate) input: Option<String>,
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatArg>,
    #[arg(long = "map", value_name = "COLUMN=FIELD")]
    pub(crate) map: Vec<String>,
    /// The column naming the true person of each record.
    #[arg(long)]
    pub(crate) truth_column: Option<String>,
    /// Also learn from reviewers' decisions in the store.
    #[arg(long)]
    pub(crate) reviews: bool,
    /// Estimate, without labels, on the tenant's leads in the store
    /// (`--db`): the model `run`, `import` and `serve` then use.
    #[arg(long, conflicts_with_all = ["input", "truth_column", "reviews"])]
    pub(crate) from_store: bool,
    /// Prior 0.5, slope-only calibration: for a model meant for other
    /// data than it was trained on (how the bundled model is made).
    #[arg(long)]
    pub(crate) neutral_prior: bool,
    /// The model file (JSON) for `[dedupe] model = ...`.
    #[arg(long)]
    pub(crate) output: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct EnrichArgs {
    /// Take leads from the re-enrichment queue (the only source for now).
    #[arg(long, required = true)]
    pub(crate) queued: bool,
    /// Leads taken from the queue at most (oldest first).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) limit: usize,
    /// How long each batch waits for its lookups (ms).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) budget_ms: u64,
    /// Each lead's new enrichment and qualification, as NDJSON (- for stdout).
    #[arg(long)]
    pub(crate) output: Option<String>,
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    /// The events file, or - for standard input.
    #[arg(long)]
    pub(crate) input: String,
    /// Append leads surfaced to sales to this qualified_lead_pipeline
    /// NDJSON file (default: score.pipeline; always kept in the store).
    #[arg(long)]
    pub(crate) pipeline: Option<PathBuf>,
    /// Store and attach the events only; do not re-score.
    #[arg(long)]
    pub(crate) no_score: bool,
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct RekeyArgs {
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct RescoreArgs {
    #[arg(long)]
    pub(crate) pipeline: Option<PathBuf>,
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct ScoreArgs {
    #[command(flatten)]
    pub(crate) from: InputArgs,
    /// A model from `leadgate calibrate` (default: score.model).
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Where the scores go, or - for standard output.
    #[arg(long)]
    pub(crate) output: String,
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct CalibrateArgs {
    #[command(flatten)]
    pub(crate) from: InputArgs,
    /// The column holding the outcome (1/0, yes/no, won/lost, …).
    #[arg(long)]
    pub(crate) outcome: String,
    /// A column not to use as a feature (repeatable).
    #[arg(long = "ignore", value_name = "COLUMN")]
    pub(crate) ignore: Vec<String>,
    /// Share of rows held out for the metrics.
    #[arg(long, default_value_t = 0.2)]
    pub(crate) holdout: f64,
    /// Seed of the train/held-out split.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// The L2 penalty (default: chosen on a validation split).
    #[arg(long)]
    pub(crate) l2: Option<f64>,
    /// Logistic regression, gradient-boosted trees, or whichever does
    /// better on a validation split (auto).
    #[arg(long, value_enum, default_value_t = calibrate::ModelType::Auto)]
    pub(crate) model_type: calibrate::ModelType,
    /// Gradient-boosted trees: grow exactly this many (default: as many
    /// as do best on the validation split, at most 500).
    #[arg(long)]
    pub(crate) trees: Option<usize>,
    /// Values that mean "not answered" (comma-separated; replaces the
    /// default list: Select, N/A, NA, none, -, --, Unknown, NaN, null).
    #[arg(long, value_delimiter = ',')]
    pub(crate) placeholders: Option<Vec<String>>,
    /// Write each held-out row's line number and predicted probability
    /// here (CSV).
    #[arg(long)]
    pub(crate) holdout_output: Option<PathBuf>,
    /// The model file (TOML) for `[score] model = ...`.
    #[arg(long)]
    pub(crate) output: PathBuf,
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub(crate) from: InputArgs,
    /// The column holding the outcome.
    #[arg(long)]
    pub(crate) outcome: String,
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Write every signal as NDJSON here.
    #[arg(long)]
    pub(crate) signals: Option<String>,
    /// Smallest segment icp_drift_signal reports.
    #[arg(long, default_value_t = 30)]
    pub(crate) min_segment: usize,
}

#[derive(clap::Args)]
pub(crate) struct UnmergeArgs {
    pub(crate) id: String,
    /// Who undid it, for the audit trail.
    #[arg(long, default_value = "cli")]
    pub(crate) by: String,
}

#[derive(clap::Args)]
pub(crate) struct MigrateStoreArgs {
    /// The store to copy (default: the configured store, or --db).
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// The empty store to copy into: a SQLite file, or a PostgreSQL URL
    /// (postgres://user@host/db; the password from PGPASSWORD).
    #[arg(long)]
    pub(crate) to: String,
}

#[derive(clap::Args)]
pub(crate) struct ShowArgs {
    pub(crate) id: String,
}

#[derive(clap::Args)]
pub(crate) struct ReviewArgs {
    #[command(subcommand)]
    pub(crate) action: review::Action,
}

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default: serve.listen, 127.0.0.1:8080).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Leave handoffs in the outbox (no CRM calls).
    #[arg(long)]
    pub(crate) no_handoff: bool,
    /// Human-readable logs instead of JSON lines.
    #[arg(long)]
    pub(crate) text_logs: bool,
}

#[derive(clap::Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    pub(crate) action: KeysAction,
}

#[derive(clap::Args)]
pub(crate) struct OutboxArgs {
    #[command(subcommand)]
    pub(crate) action: OutboxAction,
}

#[derive(clap::Args)]
pub(crate) struct AlertsArgs {
    #[command(subcommand)]
    pub(crate) action: Option<AlertsAction>,
    #[arg(long, default_value_t = 50, global = true)]
    pub(crate) limit: usize,
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum AlertsAction {
    /// The alerts, newest first, with what the notifier made of each (the
    /// default).
    List,
    /// Mute alerts matching labels for a time: `--match kind=routing.queued
    /// --match team=emea --for 2h --comment "migration" --by ana`.
    Silence {
        /// `label=value`; `!value` negates, `prefix*` and `*suffix` match
        /// a part. Repeat for several (all must hold).
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        /// How long: `2h`, `30m`, `1d` (or --until).
        #[arg(long = "for", conflicts_with = "until")]
        duration: Option<String>,
        /// Until (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// From (RFC 3339); now when not given.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        comment: String,
        #[arg(long)]
        by: String,
    },
    /// The silences not yet ended (`--all`: with the ended ones).
    Silences {
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Unsilence { id: i64 },
    /// The notification outbox: what was sent where, and what waits,
    /// failed or was dead-lettered.
    Notifications {
        /// pending, sent, dead or failed.
        #[arg(long)]
        state: Option<String>,
    },
    /// Send dead and failed notifications again (these ids, or all).
    Retry { ids: Vec<i64> },
    /// One notifier pass now: file new alerts, flush due groups, deliver
    /// due notifications.
    Send {
        /// As if at this time (RFC 3339).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(clap::Args)]
pub(crate) struct RulesArgs {
    #[command(subcommand)]
    pub(crate) action: RulesAction,
}

#[derive(Subcommand)]
pub(crate) enum RulesAction {
    /// Check rules documents: these files, else those `[rules] files`
    /// names. Every mistake is listed; the exit status is 1 when any.
    Check {
        files: Vec<PathBuf>,
        /// One JSON object: the rules found, and the refusals.
        #[arg(long)]
        json: bool,
    },
    /// Run the rules over files on an injected clock, with no store:
    /// lead snapshots and events in time order, inactivity timers fired as
    /// time passes; one JSON object per rule execution, in time order.
    Test {
        /// NDJSON, one lead snapshot a line: `{"id", "at", "lead": {…},
        /// "enrichment": {…}, "score": {"total", "grade"}, "stage",
        /// "qualification"}`; a lead seen again is a change.
        #[arg(long)]
        leads: PathBuf,
        /// NDJSON events, as `leadgate events` reads them; `received_at`
        /// (when it arrived) defaults to `at`.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Run the clock on to this time (RFC 3339) at the end, firing the
        /// timers due by then.
        #[arg(long)]
        until: Option<String>,
        /// Where the executions go (NDJSON); stdout when not given.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Rules documents; those `[rules] files` names when not given.
        #[arg(long = "rules")]
        files: Vec<PathBuf>,
    },
    /// Run the rules over the store's history, changing nothing: who
    /// would have entered which rule between two times, and what would
    /// have fired — one JSON object per execution, in time order, as
    /// `rules test` writes them.
    Backtest {
        /// From this time (RFC 3339).
        #[arg(long)]
        from: String,
        /// Up to this time (RFC 3339); now when not given.
        #[arg(long)]
        to: Option<String>,
        /// Where the executions go (NDJSON); stdout when not given.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Rules documents; those `[rules] files` names when not given.
        #[arg(long = "rules")]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
pub(crate) struct TickArgs {
    /// Only the SLAs; no CRM calls.
    #[arg(long)]
    pub(crate) no_handoff: bool,
    /// Fire what is due at this time (RFC 3339, e.g.
    /// 2026-12-07T10:30:00Z) instead of now: to see what a later tick does.
    #[arg(long)]
    pub(crate) at: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum RepsAction {
    /// The reps with their load: assigned today, awaiting a first touch,
    /// in all.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a rep or change one (the fields given; a new rep needs --team).
    Set(RepSet),
    /// Mark a rep away: they get no new leads (until a time, or `back`).
    Away {
        id: String,
        /// RFC 3339 time they are back on their own.
        #[arg(long)]
        until: Option<String>,
    },
    /// Mark a rep back.
    Back { id: String },
    /// Fairness and response: each rep's share of their team's leads
    /// against their weight's share, open load, SLA adherence.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct RepSet {
    pub(crate) id: String,
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[arg(long)]
    pub(crate) email: Option<String>,
    #[arg(long)]
    pub(crate) crm_owner_id: Option<String>,
    #[arg(long)]
    pub(crate) slack_id: Option<String>,
    /// A team of [routing.teams]; repeat for several (replaces the list).
    #[arg(long = "team")]
    pub(crate) teams: Vec<String>,
    /// IANA time zone, e.g. Europe/Paris.
    #[arg(long)]
    pub(crate) timezone: Option<String>,
    /// Working hours, e.g. "mon-fri 09:00-18:00" ("" for any time).
    #[arg(long)]
    pub(crate) hours: Option<String>,
    #[arg(long)]
    pub(crate) capacity_per_day: Option<u32>,
    #[arg(long)]
    pub(crate) max_open: Option<u32>,
    #[arg(long)]
    pub(crate) weight: Option<u32>,
}

#[derive(clap::Args)]
pub(crate) struct RepsArgs {
    #[command(subcommand)]
    pub(crate) action: RepsAction,
}

#[derive(clap::Args)]
pub(crate) struct RouteArgs {
    /// Stored leads to route.
    #[arg(long = "lead", required_unless_present_any = ["fields", "unassigned"])]
    pub(crate) leads: Vec<String>,
    /// Every qualified lead never assigned (leads `leadgate run` recorded).
    #[arg(long, conflicts_with_all = ["leads", "dry_run", "to"])]
    pub(crate) unassigned: bool,
    /// Only say who would get it and why; nothing is recorded.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// A lead's routing fields as JSON instead of a stored lead (with
    /// --dry-run), e.g. '{"country": "FR", "grade": "A"}'.
    #[arg(long, requires = "dry_run", conflicts_with = "leads")]
    pub(crate) fields: Option<String>,
    /// Give the leads to this rep by hand.
    #[arg(long, conflicts_with = "dry_run")]
    pub(crate) to: Option<String>,
    /// Who routes them, for the audit trail.
    #[arg(long, default_value = "cli")]
    pub(crate) by: String,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args)]
pub(crate) struct TouchArgs {
    pub(crate) lead: String,
    /// When the rep first responded (RFC 3339); default now.
    #[arg(long)]
    pub(crate) at: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct ExceptionsArgs {
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args)]
pub(crate) struct PreinitArgs {
    /// The component built by cargo.
    pub(crate) input: PathBuf,
    /// Where the pre-initialized component goes.
    pub(crate) output: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct ComposeArgs {
    /// The component whose imports are satisfied (e.g. the edge).
    pub(crate) component: PathBuf,
    /// A component exporting what it imports (e.g. validate.wasm);
    /// repeat for several.
    #[arg(long = "plug", required = true)]
    pub(crate) plugs: Vec<PathBuf>,
    /// Where the composed component goes.
    #[arg(long, short)]
    pub(crate) output: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct SampleArgs {
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// The CSV of leads.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// The ground truth CSV (line, expected status and issue codes, person).
    #[arg(long)]
    pub(crate) truth: Option<PathBuf>,
    /// The same rows with a `person` column: labelled data for
    /// `leadgate eval dedupe --truth-column person`.
    #[arg(long)]
    pub(crate) labelled: Option<PathBuf>,
    /// Also write a firmographics data set for the generated companies
    /// (the local enrichment provider's CSV format).
    #[arg(long)]
    pub(crate) companies: Option<PathBuf>,
    /// Also write behavioural events (NDJSON) for the generated leads.
    #[arg(long)]
    pub(crate) events: Option<PathBuf>,
    /// Also write a conversion history (CSV with a `Converted` column)
    /// drawn from a known model, for `leadgate calibrate`.
    #[arg(long)]
    pub(crate) history: Option<PathBuf>,
    /// Rows of the history.
    #[arg(long, default_value_t = 5000)]
    pub(crate) history_rows: usize,
}

#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// results.ndjson from `leadgate run`.
    #[arg(long, required = true)]
    pub(crate) results: Option<PathBuf>,
    /// Truth CSV from `leadgate sample --truth`.
    #[arg(long, required = true)]
    pub(crate) truth: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) what: Option<EvalWhat>,
}

#[derive(Subcommand)]
pub(crate) enum EvalWhat {
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
pub(crate) struct ModelArg {
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

pub(crate) fn execute(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    let db = cli
        .db
        .clone()
        .unwrap_or_else(|| config.store.location(&config.base, cli.config.is_some()));
    match cli.command {
        Command::Run(args) => data::run(config, db, args),
        Command::Import(args) => data::import(config, db, args),
        Command::Dedupe(args) => data::dedupe(config, db, args),
        Command::DedupeTrain(args) => data::dedupe_train(config, db, args),
        Command::Events(args) => data::events(config, db, args),
        Command::Rekey(args) => data::rekey(config, db, args),
        Command::Rescore(args) => data::rescore(config, db, args),
        Command::Score(args) => data::score(config, db, args),
        Command::Calibrate(args) => data::calibrate(config, db, args),
        Command::Report(args) => data::report(config, db, args),
        Command::Unmerge(args) => data::unmerge(config, db, args),
        Command::Show(args) => data::show(config, db, args),
        Command::Review(args) => service::review(config, db, args),
        Command::Serve(args) => service::serve(config, db, args),
        Command::Keys(args) => service::keys(config, db, args),
        Command::Outbox(args) => service::outbox(config, db, args),
        Command::Alerts(args) => alerts::alerts(config, db, args),
        Command::Tick(args) => service::tick(config, db, args),
        Command::Reps(args) => routing::reps(config, db, args),
        Command::Route(args) => routing::route(config, db, args),
        Command::Touch(args) => routing::touch(config, db, args),
        Command::Rules(args) => rules::rules(config, db, args),
        Command::Exceptions(args) => data::exceptions(config, db, args),
        Command::MigrateStore(args) => store::migrate(config, db, args),
        Command::Preinit(args) => components::preinit(config, db, args),
        Command::Compose(args) => components::compose(config, db, args),
        Command::Enrich(args) => data::enrich(config, db, args),
        Command::Sample(args) => data::sample(config, db, args),
        Command::Eval(args) => data::eval(config, db, args),
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
    // The workflow rules see the run's leads once the pipeline is done
    // with them (an import loads the CRM's base: nothing fires).
    if !config.rules.files.is_empty() && !opts.import && opts.db != ":memory:" {
        let mut store = leadgate_store::Store::open(&opts.db)?;
        let leads = store.run_leads(report.run_id)?;
        let rules = leadgate_pipeline::rules::run_queued(
            config,
            &mut store,
            &leads,
            leadgate_pipeline::rules::cause::LEAD,
            leadgate_pipeline::clock::now_ms(),
        )?;
        if let Some(r) = rules
            && !opts.quiet
        {
            eprintln!("{}", r.line());
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

fn preinit_component(
    config: &Config,
    input: &std::path::Path,
    output: &std::path::Path,
) -> Result<()> {
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
