//! Scoring on the host: calling the score component (failures contained
//! to the lead that causes them), building each lead's subject from the
//! store (its enrichment, recent events, the account's other leads and
//! their activity; leads just recorded come from the recording step as
//! [`Recorded`], not read back), and surfacing leads to sales only when it
//! matters — a threshold crossed (with hysteresis, so a lead hovering around
//! it does not flap) or a jump within a window — into the
//! `qualified_lead_pipeline`.

use crate::config::{Config, ScoreConfig};
use anyhow::{Context, Result, bail};
use leadgate_lead::Lead;
use leadgate_lead::score::{Event, EventKind, Peer, Scored, Subject};
use leadgate_runtime::{CallError, ScorerComponent, ScorerInstance};
use leadgate_store::Store;
use leadgate_store::prelude::*;
use leadgate_store::score::{ScoreState, ScoreWrite, ScoringLead, Surfaced};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Calls the score component, replacing instances that fail or wear out
/// and isolating the lead that made a batch fail.
pub struct Scoring<'a> {
    component: &'a ScorerComponent,
    settings: String,
    instance: Option<ScorerInstance>,
    batch: usize,
}

impl<'a> Scoring<'a> {
    pub fn new(
        component: &'a ScorerComponent,
        settings: String,
        batch: usize,
    ) -> Result<Scoring<'a>> {
        let mut s = Scoring {
            component,
            settings,
            instance: None,
            batch: batch.max(1),
        };
        // Fail fast on settings the component refuses.
        match s.instance() {
            Err(e @ CallError::Settings(_)) => {
                bail!("score component {}: {e}", component.path().display())
            }
            _ => Ok(s),
        }
    }

    fn instance(&mut self) -> Result<&mut ScorerInstance, CallError> {
        if self.instance.as_ref().is_none_or(ScorerInstance::worn_out) {
            self.instance = None;
            self.instance = Some(self.component.instantiate(&self.settings)?);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| CallError::Instantiate("no instance".into()))
    }

    /// Scores `subjects` as of `now`, a batch per call; if a call fails,
    /// each subject of it again on its own.
    pub fn score(&mut self, subjects: &[&Subject], now: i64) -> Vec<Result<Scored, CallError>> {
        let mut out = Vec::with_capacity(subjects.len());
        for chunk in subjects.chunks(self.batch) {
            out.extend(crate::isolate::isolate(
                self,
                chunk,
                |s, all| s.instance().and_then(|i| i.score(all, now)),
                |s, one| {
                    s.instance()
                        .and_then(|i| i.score(&[*one], now))
                        .and_then(|mut v| v.pop().ok_or(CallError::Protocol { sent: 1, got: 0 }))
                },
                |s| s.instance = None,
            ));
        }
        out
    }
}

/// The category of a page view's URL: the category whose fragment is the
/// longest found in the URL's path.
pub fn categorize(pages: &BTreeMap<String, Vec<String>>, url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = if url.contains("://") {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else {
        rest
    };
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut best: Option<(&str, usize)> = None;
    for (category, fragments) in pages {
        for f in fragments {
            let f = f.trim().to_ascii_lowercase();
            if path.contains(&f) && best.is_none_or(|(_, n)| f.len() > n) {
                best = Some((category, f.len()));
            }
        }
    }
    best.map(|(c, _)| c.to_string())
}

/// When a lead is surfaced.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub threshold: f64,
    pub hysteresis: f64,
    /// 0: off.
    pub jump: f64,
    pub window_ms: i64,
}

impl Policy {
    pub fn of(c: &ScoreConfig) -> Policy {
        Policy {
            threshold: c.threshold,
            hysteresis: c.hysteresis,
            jump: c.jump,
            window_ms: (c.jump_window_hours * 3_600_000.0) as i64,
        }
    }

    /// The new surfacing state for a lead now scored `total`, given its
    /// state before (`None`: first score) and the lowest total of its
    /// history within the window; and why it is surfaced, if it is.
    pub fn decide(
        &self,
        before: Option<(ScoreState, Option<i64>)>,
        total: u8,
        now: i64,
    ) -> (bool, Option<&'static str>) {
        let t = f64::from(total);
        let (was_above, surfaced_at, base) = match before {
            None => (false, None, None),
            Some((s, min)) => (
                s.above,
                s.surfaced_at,
                Some(min.map_or(s.total, |m| m.min(s.total))),
            ),
        };
        if was_above {
            // Re-armed only once it has fallen clearly below.
            return (t >= self.threshold - self.hysteresis, None);
        }
        if t >= self.threshold {
            return (true, Some("threshold"));
        }
        let recently = surfaced_at.is_some_and(|s| now - s < self.window_ms);
        if self.jump > 0.0
            && let Some(base) = base
            && t - base as f64 >= self.jump
            && !recently
        {
            return (false, Some("jump"));
        }
        (false, None)
    }
}

/// What a re-score did.
#[derive(Debug, Default)]
pub struct Report {
    pub scored: u64,
    pub exceptions: u64,
    pub changed: u64,
    /// Surfaced, by trigger.
    pub surfaced: BTreeMap<&'static str, u64>,
    pub grades: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Time in the component.
    pub scoring: Duration,
}

impl Report {
    /// Adds another re-score's counts to this one's.
    pub fn absorb(&mut self, other: Report) {
        self.scored += other.scored;
        self.exceptions += other.exceptions;
        self.changed += other.changed;
        for (k, v) in other.surfaced {
            *self.surfaced.entry(k).or_default() += v;
        }
        for (k, v) in other.grades {
            *self.grades.entry(k).or_default() += v;
        }
        self.elapsed += other.elapsed;
        self.scoring += other.scoring;
    }
}

/// A lead loaded for scoring.
struct Loaded {
    lead: Lead,
    attributes: Vec<(String, String)>,
    account: Option<String>,
    qualification: Option<String>,
}

impl Loaded {
    /// From the normalized lead's JSON; `None` if it does not parse.
    fn of(
        normalized: &str,
        attributes: Vec<(String, String)>,
        qualification: Option<String>,
    ) -> Option<Loaded> {
        let lead: Lead = serde_json::from_str(normalized).ok()?;
        Some(Loaded::from_lead(lead, attributes, qualification))
    }

    /// From the normalized lead.
    fn from_lead(
        lead: Lead,
        attributes: Vec<(String, String)>,
        qualification: Option<String>,
    ) -> Loaded {
        Loaded {
            account: account_of(&lead),
            attributes,
            qualification,
            lead,
        }
    }
}

/// The account a lead belongs to: its registrable domain, unless that is
/// a free-mail provider's.
pub fn account_of(lead: &Lead) -> Option<String> {
    let d = lead.domain.as_deref()?.trim().to_ascii_lowercase();
    if d.is_empty() || leadgate_lead::mail::is_free_mail_domain(&d) {
        return None;
    }
    Some(d)
}

/// A lead as the pipeline has just recorded it: what scoring reads of a
/// stored lead, handed over by the recording step so the lead need not be
/// read back and its enrichment parsed again ([`Scope::Recorded`]).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: String,
    /// The normalized lead, as its stored JSON text encodes it.
    pub lead: Lead,
    /// Its enrichment fields, as [`attributes`] reads them from the stored
    /// JSON ([`attributes_of`]).
    pub attributes: Vec<(String, String)>,
    /// The qualification state stored.
    pub qualification: Option<String>,
}

/// Enrichment attributes from enriched fields, as [`attributes`] reads
/// them back from the JSON they are stored as — an object keyed by field
/// name: in name order, and a field named twice keeps its last value.
pub fn attributes_of(fields: &[leadgate_lead::enrich::EnrichedField]) -> Vec<(String, String)> {
    let by_name: BTreeMap<&str, &str> = fields
        .iter()
        .map(|f| (f.field.as_str(), f.value.as_str()))
        .collect();
    by_name
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Enrichment attributes from the stored enrichment JSON (as
/// [`attributes_of`] gives them from the fields).
pub fn stored_attributes(enrichment: Option<&str>) -> Vec<(String, String)> {
    attributes(enrichment)
}

/// Enrichment attributes from the stored enrichment JSON.
fn attributes(enrichment: Option<&str>) -> Vec<(String, String)> {
    let Some(json) = enrichment else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    v.get("fields")
        .and_then(|f| f.as_object())
        .map(|fields| {
            fields
                .iter()
                .filter_map(|(k, f)| Some((k.clone(), f.get("value")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn event_of(
    row: leadgate_store::score::EventRow,
    categories: &mut leadgate_lead::score::Categories,
) -> Option<Event> {
    Some(Event {
        kind: EventKind::parse(&row.kind)?,
        at: row.at,
        category: categories.index(row.category.as_deref()),
        value: row.value,
    })
}

/// Where surfaced leads go besides the store's outbox.
pub struct Pipeline {
    file: Option<(std::io::BufWriter<std::fs::File>, std::path::PathBuf)>,
}

impl Pipeline {
    /// Appends to `path` (created if needed), or only the outbox.
    pub fn open(path: Option<&Path>) -> Result<Pipeline> {
        let file = match path {
            None => None,
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open the pipeline file {}", p.display()))?;
                Some((std::io::BufWriter::new(f), p.to_path_buf()))
            }
        };
        Ok(Pipeline { file })
    }

    fn write(&mut self, lines: &[Surfaced]) -> Result<()> {
        if let Some((f, path)) = &mut self.file {
            for s in lines {
                writeln!(f, "{}", s.payload)
                    .and_then(|()| f.flush())
                    .with_context(|| {
                        format!("cannot write the pipeline file {}", path.display())
                    })?;
            }
        }
        Ok(())
    }
}

/// Leads scored and saved per transaction.
const SAVE_BATCH: usize = 4096;
/// Up to this many leads to re-score are looked up by id, with their
/// accounts' active members; more are re-scored in slices of this size,
/// or all at once from one read of the whole tenant (see [`Load::of`]).
const TARGETED_MAX: usize = 20_000;

/// How the leads of a re-score are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// The whole tenant in one read: every lead is scored, or so many
    /// that looking each up would cost more.
    Whole,
    /// Each target by id (and its accounts' active members), in one pass.
    Targeted,
    /// Each target by id, in this many passes of [`TARGETED_MAX`]: many
    /// new leads in a much larger store. Reading the whole tenant would
    /// read and parse every stored lead — and hold them all in memory —
    /// to score a few of them.
    Slices(usize),
}

impl Load {
    /// For `targets` leads to score (`None`: all) of a tenant with
    /// `stored` leads. A lead read by id costs about what one read in a
    /// scan does (both are mostly parsing it), so the whole tenant is read
    /// only when the targets are half of it or more.
    fn of(targets: Option<usize>, stored: u64) -> Load {
        match targets {
            None => Load::Whole,
            Some(n) if n <= TARGETED_MAX => Load::Targeted,
            Some(n) if (n as u64).saturating_mul(2) >= stored => Load::Whole,
            Some(n) => Load::Slices(n.div_ceil(TARGETED_MAX)),
        }
    }
}

/// Which leads a re-score scores.
#[derive(Debug, Clone)]
pub enum Scope<'a> {
    /// Every scoreable lead of the tenant.
    All,
    /// These leads and everyone of their accounts: they have new events,
    /// and a colleague's activity changes their intent too.
    WithAccounts(&'a BTreeSet<String>),
    /// Only these leads (new leads without events of their own change
    /// nobody else's score); their accounts' active members are read as
    /// peers.
    Only(&'a BTreeSet<String>),
    /// As [`Scope::Only`] for these leads, which the caller has just
    /// recorded (accepted or in review, not merged or linked) and hands
    /// over as the store now holds them: they are not read back.
    Recorded(Vec<Recorded>),
}

/// Re-scores leads: all of the tenant's scoreable leads, or those of
/// `scope` (and, for leads with new events, everyone of their accounts: a
/// colleague's activity changes their intent). Records each score, its
/// history and surfacing, and appends surfaced leads to `pipeline`.
pub fn rescore(
    config: &Config,
    store: &mut Store,
    scoring: &mut Scoring<'_>,
    scope: Scope<'_>,
    cause: &str,
    pipeline: &mut Pipeline,
    now: i64,
) -> Result<Report> {
    let started = Instant::now();
    let c = &config.score;
    let tenant = config.tenant.as_str();
    let mut report = Report::default();
    let since = now - (c.event_window_days * 86_400_000.0) as i64;
    let recorded_ids: BTreeSet<String>;
    let (only, expand, given): (_, _, Vec<Recorded>) = match scope {
        Scope::All => (None, false, Vec::new()),
        Scope::WithAccounts(ids) => (Some(ids), true, Vec::new()),
        Scope::Only(ids) => (Some(ids), false, Vec::new()),
        Scope::Recorded(leads) => {
            recorded_ids = leads.iter().map(|l| l.id.clone()).collect();
            (Some(&recorded_ids), false, leads)
        }
    };
    // Many new leads in a larger store: slice by slice. (A slice of leads
    // with events takes in their accounts, which another slice could
    // share, and so score a colleague twice: those are read whole.)
    if let Some(ids) = only.filter(|ids| !expand && ids.len() > TARGETED_MAX)
        && let Load::Slices(n) = Load::of(Some(ids.len()), store.lead_count(tenant)?)
    {
        tracing::debug!(leads = ids.len(), slices = n, "re-scoring in slices");
        let slices = Slices { config, cause, now };
        return slices.rescore(store, scoring, ids, given, pipeline);
    }
    let Some(Leads {
        loaded,
        load,
        targets,
    }) = load_leads(store, tenant, only, expand, given, since)?
    else {
        return Ok(report);
    };
    let activity = Activity::read(store, tenant, since, load.as_deref(), &loaded, c.max_events)?;
    // Points workflow rules gave, applied over the component's score.
    let adjustments = if config.rules.files.is_empty() {
        Default::default()
    } else {
        crate::rules::score_actions(store, tenant, load.as_deref())?
    };
    let states = store.score_states(tenant, now - Policy::of(c).window_ms, load.as_deref())?;
    let policy = Policy::of(c);
    let order = activity.order(&loaded, targets.as_ref(), expand);
    let digest = scoring.component.digest().to_string();
    // Writes a batch of scores, and what surfaced, to the store.
    let mut save =
        move |scored: Vec<(ScoreWrite, Scored)>, surfaced: Vec<Surfaced>| -> Result<()> {
            let mut writes = Vec::with_capacity(scored.len());
            for (mut w, s) in scored {
                w.detail = serde_json::to_string(&s).context("cannot encode a score")?;
                writes.push(w);
            }
            store.save_scores(tenant, &digest, &writes, &surfaced, now)?;
            pipeline.write(&surfaced)?;
            Ok(())
        };
    let batch = scoring.batch;
    let outcome = Outcome {
        tenant,
        cause,
        policy: &policy,
        now,
    };
    // Scores a batch of `order`: the writes and what surfaced.
    let mut produce = |chunk: &[usize]| -> (Vec<(ScoreWrite, Scored)>, Vec<Surfaced>) {
        let mut writes = Vec::with_capacity(chunk.len());
        let mut surfaced = Vec::new();
        // Subjects are built a call's worth at a time: they stay
        // in cache, and memory is reused.
        for part in chunk.chunks(batch) {
            let subjects: Vec<Subject> = part
                .iter()
                .map(|&i| activity.subject(&loaded, i, c))
                .collect();
            let refs: Vec<&Subject> = subjects.iter().collect();
            let t = Instant::now();
            let results = scoring.score(&refs, now);
            report.scoring += t.elapsed();
            for ((&i, result), subject) in part.iter().zip(results).zip(&subjects) {
                let (id, l) = &loaded[i];
                match result {
                    Ok(mut scored) => {
                        if let Some(a) = adjustments.get(id) {
                            crate::rules::adjust(&mut scored, a);
                        }
                        let before = states.get(id).copied();
                        let (write, up) = outcome.of(id, l, subject, scored, before, &mut report);
                        writes.push(write);
                        surfaced.extend(up);
                    }
                    Err(e) => {
                        report.exceptions += 1;
                        tracing::warn!(lead = %id, error = %e, "the score component failed on this lead");
                    }
                }
            }
        }
        (writes, surfaced)
    };
    if order.is_empty() {
        // Nothing to score, nothing to save.
    } else if order.len() <= SAVE_BATCH {
        // One batch: nothing for a writer thread to overlap (the service
        // scores each of its small batches so; a thread per batch was
        // spawned, and torn down, for nothing).
        let (scored, surfaced) = produce(&order);
        save(scored, surfaced)?;
    } else {
        // Recording runs beside scoring: this thread builds subjects and
        // calls the component, the writer saves the previous batch.
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<(Vec<(ScoreWrite, Scored)>, Vec<Surfaced>)>(2);
        std::thread::scope(|scope| -> Result<()> {
            let writer = scope.spawn(move || -> Result<()> {
                for (scored, surfaced) in rx {
                    save(scored, surfaced)?;
                }
                Ok(())
            });
            for chunk in order.chunks(SAVE_BATCH) {
                if tx.send(produce(chunk)).is_err() {
                    break;
                }
            }
            drop(tx);
            writer
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the score writer panicked")))
        })?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A re-score of many new leads, slice by slice.
struct Slices<'c> {
    config: &'c Config,
    cause: &'c str,
    now: i64,
}

impl Slices<'_> {
    /// Re-scores `ids` (or the leads `given` as recorded, when there are)
    /// [`TARGETED_MAX`] at a time.
    fn rescore(
        &self,
        store: &mut Store,
        scoring: &mut Scoring<'_>,
        ids: &BTreeSet<String>,
        given: Vec<Recorded>,
        pipeline: &mut Pipeline,
    ) -> Result<Report> {
        let mut report = Report::default();
        let (config, cause, now) = (self.config, self.cause, self.now);
        if !given.is_empty() {
            let mut slice = given;
            while !slice.is_empty() {
                let rest = slice.split_off(slice.len().min(TARGETED_MAX));
                report.absorb(rescore(
                    config,
                    store,
                    scoring,
                    Scope::Recorded(slice),
                    cause,
                    pipeline,
                    now,
                )?);
                slice = rest;
            }
            return Ok(report);
        }
        let ids: Vec<&String> = ids.iter().collect();
        for slice in ids.chunks(TARGETED_MAX) {
            let slice: BTreeSet<String> = slice.iter().map(|id| (*id).clone()).collect();
            report.absorb(rescore(
                config,
                store,
                scoring,
                Scope::Only(&slice),
                cause,
                pipeline,
                now,
            )?);
        }
        Ok(report)
    }
}

/// The leads a re-score reads: every one it scores or passes as a peer, in
/// id order; the ids read (`None`: the tenant's whole store); and which of
/// them to score (`None`: all).
struct Leads {
    loaded: Vec<(String, Loaded)>,
    load: Option<Vec<String>>,
    targets: Option<BTreeSet<String>>,
}

/// Which leads to score, and the leads loaded for it: the targets read and
/// parsed once, then only the colleagues not among them. `None` when there
/// is nothing to score.
fn load_leads(
    store: &Store,
    tenant: &str,
    only: Option<&BTreeSet<String>>,
    expand: bool,
    given: Vec<Recorded>,
    since: i64,
) -> Result<Option<Leads>> {
    let parse = |r: ScoringLead| -> Option<(String, Loaded)> {
        let loaded = Loaded::of(
            &r.normalized,
            attributes(r.enrichment.as_deref()),
            r.qualification,
        )?;
        Some((r.id, loaded))
    };
    // A lead handed over as recorded: as `parse` would read it back.
    let recorded = |r: Recorded| -> (String, Loaded) {
        (
            r.id,
            Loaded::from_lead(r.lead, r.attributes, r.qualification),
        )
    };
    // All of the tenant's leads are read at once for all of them, and for
    // so many targets that looking each up would cost more.
    let ids = match only.filter(|ids| ids.len() <= TARGETED_MAX) {
        Some(ids) if ids.is_empty() => return Ok(None),
        None => {
            return Ok(Some(Leads {
                loaded: store
                    .scoring_leads(tenant, None)?
                    .into_iter()
                    .filter_map(parse)
                    .collect(),
                load: None,
                targets: only.cloned(),
            }));
        }
        Some(ids) => ids,
    };
    let mut loaded: Vec<(String, Loaded)> = if given.is_empty() {
        let list: Vec<String> = ids.iter().cloned().collect();
        store
            .scoring_leads(tenant, Some(&list))?
            .into_iter()
            .filter_map(parse)
            .collect()
    } else {
        given.into_iter().map(recorded).collect()
    };
    let accounts: BTreeSet<&str> = loaded
        .iter()
        .filter_map(|(_, l)| l.account.as_deref())
        .collect();
    let accounts: Vec<String> = accounts.into_iter().map(str::to_string).collect();
    let colleagues = if expand {
        store.account_members(tenant, &accounts)?
    } else {
        // Colleagues without recent events add nothing as peers.
        store.active_account_members(tenant, &accounts, since)?
    };
    let mut all: BTreeSet<String> = ids.clone();
    let extra: Vec<String> = colleagues
        .into_iter()
        .filter(|id| all.insert(id.clone()))
        .collect();
    if !extra.is_empty() {
        loaded.extend(
            store
                .scoring_leads(tenant, Some(&extra))?
                .into_iter()
                .filter_map(parse),
        );
    }
    // In id order, as one read of them all would give.
    loaded.sort_by(|a, b| a.0.cmp(&b.0));
    let all: Vec<String> = all.into_iter().collect();
    let targets = if expand {
        all.iter().cloned().collect()
    } else {
        ids.clone()
    };
    Ok(Some(Leads {
        loaded,
        load: Some(all),
        targets: Some(targets),
    }))
}

/// The recent activity of the leads a re-score loaded: each one's events
/// (a merged lead's count for its master), one table of page categories
/// for every subject, and the leads of each account, most active first.
struct Activity {
    /// By place in the loaded leads.
    events: Vec<Vec<Event>>,
    categories: leadgate_lead::score::Categories,
    by_account: HashMap<String, Vec<usize>>,
}

impl Activity {
    fn read(
        store: &Store,
        tenant: &str,
        since: i64,
        load: Option<&[String]>,
        loaded: &[(String, Loaded)],
        max_events: usize,
    ) -> Result<Activity> {
        let mut by_id: HashMap<String, Vec<Event>> = HashMap::new();
        let mut categories = leadgate_lead::score::Categories::default();
        let masters = store.masters(tenant, load)?;
        for (lead, row) in store.recent_events(tenant, since, load)? {
            // A merged lead's events count for its master.
            let lead = match masters.get(&lead) {
                Some(m) => m.clone(),
                None => lead,
            };
            let list = by_id.entry(lead).or_default();
            if list.len() < max_events
                && let Some(e) = event_of(row, &mut categories)
            {
                list.push(e);
            }
        }
        let events: Vec<Vec<Event>> = loaded
            .iter()
            .map(|(id, _)| by_id.remove(id).unwrap_or_default())
            .collect();
        let mut by_account: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (_, l)) in loaded.iter().enumerate() {
            if let Some(a) = &l.account {
                by_account.entry(a.clone()).or_default().push(i);
            }
        }
        // Most active first, so the peers passed are the ones that matter.
        let last_active = |i: usize| events[i].first().map_or(i64::MIN, |e| e.at);
        for members in by_account.values_mut() {
            members.sort_by_key(|&i| std::cmp::Reverse(last_active(i)));
        }
        Ok(Activity {
            events,
            categories,
            by_account,
        })
    }

    /// The places of the leads to score, in order: the targets and, with
    /// `expand`, everyone of their accounts (a colleague's activity
    /// changes their intent too).
    fn order(
        &self,
        loaded: &[(String, Loaded)],
        targets: Option<&BTreeSet<String>>,
        expand: bool,
    ) -> Vec<usize> {
        let mut chosen: Vec<bool> = loaded
            .iter()
            .map(|(id, _)| targets.is_none_or(|t| t.contains(id)))
            .collect();
        if targets.is_some() && expand {
            for (i, (_, l)) in loaded.iter().enumerate() {
                if chosen[i]
                    && let Some(members) = l.account.as_deref().and_then(|a| self.by_account.get(a))
                {
                    for &j in members {
                        chosen[j] = true;
                    }
                }
            }
        }
        (0..loaded.len()).filter(|&i| chosen[i]).collect()
    }

    /// The subject of the lead at place `i`: its own events and its most
    /// active colleagues with theirs.
    fn subject(&self, loaded: &[(String, Loaded)], i: usize, c: &ScoreConfig) -> Subject {
        let (_, l) = &loaded[i];
        let peers: Vec<Peer> = l
            .account
            .as_deref()
            .and_then(|a| self.by_account.get(a))
            .map(|members| {
                // Members are sorted most active first: colleagues
                // without events add nothing.
                members
                    .iter()
                    .filter(|&&j| j != i)
                    .take_while(|&&j| !self.events[j].is_empty())
                    .take(c.max_peers)
                    .map(|&j| {
                        let (pid, p) = &loaded[j];
                        let ev = &self.events[j];
                        Peer {
                            id: pid.clone(),
                            job_title: p.lead.job_title.clone(),
                            seniority: p
                                .attributes
                                .iter()
                                .find(|(n, _)| n == "seniority")
                                .map(|(_, v)| v.clone()),
                            events: ev[..ev.len().min(c.max_peer_events)].to_vec(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let own = self.events[i].clone();
        let categorized = own
            .iter()
            .chain(peers.iter().flat_map(|p| &p.events))
            .any(|e| e.category != 0);
        Subject {
            // The table only when an event refers to it.
            categories: if categorized {
                self.categories.names.clone()
            } else {
                Vec::new()
            },
            lead: l.lead.clone(),
            attributes: l.attributes.clone(),
            events: own,
            peers,
        }
    }
}

/// What one new score means: the row to write, and whether the lead
/// surfaces.
struct Outcome<'a> {
    tenant: &'a str,
    cause: &'a str,
    policy: &'a Policy,
    now: i64,
}

impl Outcome<'_> {
    /// The write for lead `id` scored `scored` (its state `before`), and
    /// what surfaced, counted in `report`.
    fn of(
        &self,
        id: &str,
        l: &Loaded,
        subject: &Subject,
        scored: Scored,
        before: Option<(ScoreState, Option<i64>)>,
        report: &mut Report,
    ) -> ((ScoreWrite, Scored), Option<Surfaced>) {
        let now = self.now;
        let (above, trigger) = self.policy.decide(before, scored.total, now);
        let changed = before.is_none_or(|(s, _)| s.total != i64::from(scored.total));
        let surfaced_at = if trigger.is_some() {
            Some(now)
        } else {
            before.and_then(|(s, _)| s.surfaced_at)
        };
        let surfaced = trigger.map(|trigger| {
            *report.surfaced.entry(trigger).or_default() += 1;
            let line = serde_json::json!({
                "pipeline": "qualified_lead_pipeline",
                "lead_id": id,
                "tenant": self.tenant,
                "trigger": trigger,
                "at": now,
                "previous_total": before.map(|(s, _)| s.total),
                "qualification": l.qualification,
                "lead": {
                    "email": subject.lead.email,
                    "full_name": subject.lead.full_name,
                    "company": subject.lead.company,
                    "job_title": subject.lead.job_title,
                    "domain": subject.lead.domain,
                },
                "score": scored,
            });
            Surfaced {
                lead_id: id.to_string(),
                trigger: trigger.to_string(),
                payload: line.to_string(),
            }
        });
        report.scored += 1;
        report.changed += u64::from(changed);
        *report.grades.entry(scored.grade.clone()).or_default() += 1;
        let write = ScoreWrite {
            lead_id: id.to_string(),
            total: scored.total,
            grade: scored.grade.clone(),
            probability: scored.probability,
            fit: scored.fit,
            engagement: scored.engagement,
            intent: scored.intent,
            // Encoded by the writer, off the scoring thread.
            detail: String::new(),
            above,
            surfaced_at,
            changed,
            cause: self.cause.to_string(),
        };
        ((write, scored), surfaced)
    }
}

/// The scoring stage a command needs: the component loaded and configured.
pub struct Stage {
    pub component: ScorerComponent,
    pub settings: String,
}

impl Stage {
    pub fn load(
        config: &Config,
        runtime: &leadgate_runtime::Runtime,
        model: Option<&Path>,
    ) -> Result<Stage> {
        let path = config.score_component()?;
        let component = ScorerComponent::load(runtime, &path)?;
        Ok(Stage {
            component,
            settings: config.score_settings(model)?,
        })
    }

    pub fn scoring(&self, config: &Config) -> Result<Scoring<'_>> {
        Scoring::new(
            &self.component,
            self.settings.clone(),
            config.limits.batch_size,
        )
    }
}

/// One line of the re-score summary.
pub fn summary(r: &Report) -> String {
    let grades: Vec<String> = r.grades.iter().map(|(g, n)| format!("{g} {n}")).collect();
    let surfaced: u64 = r.surfaced.values().sum();
    let mut s = format!(
        "scored {} leads ({} changed) in {:.2}s · grades {} · surfaced {surfaced}",
        r.scored,
        r.changed,
        r.elapsed.as_secs_f64(),
        if grades.is_empty() {
            "-".to_string()
        } else {
            grades.join(" · ")
        },
    );
    if surfaced > 0 {
        let by: Vec<String> = r.surfaced.iter().map(|(t, n)| format!("{t} {n}")).collect();
        s.push_str(&format!(" ({})", by.join(", ")));
    }
    if r.exceptions > 0 {
        s.push_str(&format!(" · {} failed in the component", r.exceptions));
    }
    s
}

/// Re-scores stored leads: all, or `only` (new leads: just themselves) and
/// any whose waiting events just found them (with their accounts),
/// surfacing into the pipeline.
pub fn rescore_stored(
    config: &Config,
    db: &str,
    only: Option<std::collections::BTreeSet<String>>,
    cause: &str,
    pipeline: Option<std::path::PathBuf>,
) -> Result<Report> {
    let mut store = leadgate_store::Store::open(db)?;
    let late = store.attach_pending(&config.tenant)?;
    let runtime = leadgate_runtime::Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let stage = Stage::load(config, &runtime, None)?;
    let mut scoring = stage.scoring(config)?;
    let path = pipeline.or_else(|| config.score.pipeline.as_ref().map(|p| config.base.join(p)));
    let mut pipeline = Pipeline::open(path.as_deref())?;
    let now = crate::clock::now_ms();
    let Some(mut only) = only else {
        return rescore(
            config,
            &mut store,
            &mut scoring,
            Scope::All,
            cause,
            &mut pipeline,
            now,
        );
    };
    only.retain(|id| !late.contains(id));
    let mut report = rescore(
        config,
        &mut store,
        &mut scoring,
        Scope::Only(&only),
        cause,
        &mut pipeline,
        now,
    )?;
    if !late.is_empty() {
        report.absorb(rescore(
            config,
            &mut store,
            &mut scoring,
            Scope::WithAccounts(&late),
            "events",
            &mut pipeline,
            now,
        )?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const H: i64 = 3_600_000;

    fn policy() -> Policy {
        Policy {
            threshold: 70.0,
            hysteresis: 10.0,
            jump: 25.0,
            window_ms: 72 * H,
        }
    }

    /// Feeds totals one hour apart through the policy, as the store would
    /// keep them, and returns what was surfaced when.
    fn run(totals: &[u8]) -> Vec<(usize, &'static str)> {
        let p = policy();
        let mut state: Option<ScoreState> = None;
        let mut history: Vec<(i64, i64)> = Vec::new();
        let mut out = Vec::new();
        for (i, &t) in totals.iter().enumerate() {
            let now = i as i64 * H;
            let min = history
                .iter()
                .filter(|(at, _)| *at >= now - p.window_ms)
                .map(|(_, v)| *v)
                .min();
            let (above, trigger) = p.decide(state.map(|s| (s, min)), t, now);
            if let Some(tr) = trigger {
                out.push((i, tr));
            }
            let surfaced_at = if trigger.is_some() {
                Some(now)
            } else {
                state.and_then(|s| s.surfaced_at)
            };
            state = Some(ScoreState {
                total: i64::from(t),
                above,
                surfaced_at,
            });
            history.push((now, i64::from(t)));
        }
        out
    }

    #[test]
    fn many_new_leads_in_a_larger_store_are_re_scored_in_slices() {
        // Everything, or a few: as before.
        assert_eq!(Load::of(None, 1_000_000), Load::Whole);
        assert_eq!(Load::of(Some(TARGETED_MAX), 1_000_000), Load::Targeted);
        assert_eq!(Load::of(Some(5), 0), Load::Targeted);
        // An import of 60,000 into a million: three slices by id, not a
        // read of the million.
        assert_eq!(Load::of(Some(60_000), 1_060_000), Load::Slices(3));
        assert_eq!(Load::of(Some(TARGETED_MAX + 1), 1_000_000), Load::Slices(2));
        // Half of the tenant or more (a first import): one read of it all.
        assert_eq!(Load::of(Some(60_000), 120_000), Load::Whole);
        assert_eq!(Load::of(Some(1_000_000), 1_000_000), Load::Whole);
        assert_eq!(Load::of(Some(60_000), 120_001), Load::Slices(3));
    }

    #[test]
    fn crossing_surfaces_once_while_above() {
        assert_eq!(run(&[50, 72, 75, 80, 71, 90]), vec![(1, "threshold")]);
    }

    #[test]
    fn hovering_around_the_threshold_does_not_flap() {
        // Dips to 65 (within the hysteresis band) and back: no new alert.
        assert_eq!(run(&[72, 65, 71, 66, 73]), vec![(0, "threshold")]);
        // A real fall below 60 re-arms it.
        assert_eq!(run(&[72, 55, 71]), vec![(0, "threshold"), (2, "threshold")]);
    }

    #[test]
    fn a_jump_surfaces_once_per_window() {
        // 20 → 50 within the window: a jump; 50 → 60 is not another.
        assert_eq!(run(&[20, 50, 60]), vec![(1, "jump")]);
        // The first score is never a jump.
        assert_eq!(run(&[45]), vec![]);
        // Two jumps more than a window apart both count.
        let mut totals = vec![10, 40];
        totals.extend(std::iter::repeat_n(10, 80));
        totals.push(40);
        let got = run(&totals);
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn page_categories_take_the_longest_fragment() {
        let pages = ScoreConfig::default().pages;
        assert_eq!(
            categorize(&pages, "https://acme.com/pricing?plan=pro").as_deref(),
            Some("pricing")
        );
        assert_eq!(
            categorize(&pages, "https://acme.com/docs/api/auth").as_deref(),
            Some("docs")
        );
        assert_eq!(
            categorize(&pages, "https://acme.com/careers").as_deref(),
            Some("careers")
        );
        assert_eq!(
            categorize(&pages, "/compare/acme-vs-rival").as_deref(),
            Some("comparison")
        );
        assert_eq!(categorize(&pages, "https://acme.com/").as_deref(), None);
        // The host part never matches.
        assert_eq!(
            categorize(&pages, "https://docs.acme.com/").as_deref(),
            None
        );
    }

    #[test]
    fn free_mail_domains_are_no_account() {
        let mut l = Lead {
            domain: Some("gmail.com".into()),
            ..Lead::default()
        };
        assert_eq!(account_of(&l), None);
        l.domain = Some("Acme.com".into());
        assert_eq!(account_of(&l).as_deref(), Some("acme.com"));
    }

    #[test]
    fn enriched_fields_give_the_attributes_their_stored_json_gives() {
        let field = |name: &str, value: &str| leadgate_lead::enrich::EnrichedField {
            field: name.into(),
            value: value.into(),
            source: "local".into(),
            confidence: 0.9,
        };
        // Out of name order, and one field twice.
        let fields = vec![
            field("seniority", "director"),
            field("industry", "Healthcare"),
            field("employee_range", "11-50"),
            field("industry", "Software"),
        ];
        let e = leadgate_lead::enrich::Enrichment {
            status: leadgate_lead::enrich::EnrichStatus::Complete,
            fields,
            issues: Vec::new(),
        };
        let json = crate::enrich::enrichment_json(&e, None).unwrap();
        let read_back = attributes(Some(json.get()));
        assert_eq!(attributes_of(&e.fields), read_back);
        assert_eq!(read_back.len(), 3);
    }

    /// The service scores the leads it has just recorded as the recording
    /// step hands them over; a re-score reads them back from the store.
    /// Both must give every lead the same score.
    #[test]
    fn leads_handed_over_as_recorded_score_as_read_back() {
        use crate::clock::now_ms;
        use crate::engine::{Components, Engine};
        use leadgate_ingest::{Limits, Mapping, Record as InputRecord};
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let built = root.join("target/components");
        let toml = format!(
            "tenant = \"t\"\n\
             [validate]\ncomponent = {:?}\n[validate.settings]\ndefault_region = \"US\"\n\
             [dedupe]\ncomponent = {:?}\nauto_merge_enabled = true\n\
             [enrich]\ncomponent = {:?}\n\
             [[enrich.providers]]\nname = \"local\"\nkind = \"local\"\ncompanies = {:?}\n\
             [score]\ncomponent = {:?}\n\
             [score.settings.icp]\nindustries = [\"Healthcare\", \"Financial Services\"]\n\
             employee_ranges = [\"51-200\", \"201-500\"]\nseniorities = [\"c-level\", \"vp\"]\n\
             technologies = [\"Salesforce\"]\n",
            built.join("validate.wasm"),
            built.join("dedupe.wasm"),
            built.join("enrich.wasm"),
            root.join("samples/companies.csv"),
            built.join("score.wasm"),
        );
        let path = dir.path().join("leadgate.toml");
        std::fs::write(&path, toml).unwrap();
        let config = Config::load(Some(&path)).unwrap();
        let mut store = Store::open(&dir.path().join("s.db").display().to_string()).unwrap();
        let components = Components::load(&config, &store, true).unwrap();
        let mut engine = Engine::new(&config, &components, &store, "test").unwrap();
        let committer = engine.committer();
        let mapping = Mapping::parse::<&str>(&[]).unwrap();
        let lead = |first: &str, last: &str, email: &str, title: &str| {
            serde_json::json!({
                "email": email, "first_name": first, "last_name": last,
                "job_title": title, "company": "Acme", "country": "US",
                "phone": "+1 415 555 0100",
            })
        };
        let mut batch = |store: &mut Store, leads: Vec<serde_json::Value>, tag: &str| {
            let ids: Vec<String> = (0..leads.len()).map(|i| format!("{tag}{i}")).collect();
            let records = leads
                .iter()
                .enumerate()
                .map(|(i, v)| InputRecord {
                    line: i as u64 + 1,
                    outcome: leadgate_ingest::parse_value(v, &mapping, Limits::default()),
                })
                .collect();
            let p = engine
                .prepare(store, records, &ids, leadgate_lead::Source::Api)
                .unwrap();
            let n = p.len();
            let done = committer.commit(store, p).unwrap();
            engine.forget(n);
            done
        };
        // Leads of three accounts the firmographics list knows, and their
        // activity.
        let first = vec![
            lead("Ann", "Lee", "ann.lee@acmetrix.com", "VP Marketing"),
            lead("Bob", "Okafor", "bob.okafor@acmetrix.com", "Engineer"),
            lead("Carla", "Novak", "carla.novak@acmexa.com", "Head of Sales"),
            lead("Dev", "Silva", "dev.silva@acmerode.com", "CTO"),
        ];
        batch(&mut store, first, "a");
        let now = now_ms();
        let h = 3_600_000;
        let events: Vec<NewEventRow> = [
            ("e1", "page_view", "ann.lee@acmetrix.com", 2 * h, "/pricing"),
            ("e2", "form_submit", "ann.lee@acmetrix.com", 5 * h, "/demo"),
            ("e3", "page_view", "bob.okafor@acmetrix.com", 30 * h, "/blog"),
            ("e4", "page_view", "carla.novak@acmexa.com", 50 * h, "/pricing"),
            ("e5", "email_click", "dev.silva@acmerode.com", 3 * h, "/x"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (id, kind, email, ago, url))| {
            let raw = format!(
                "{{\"id\": \"{id}\", \"type\": \"{kind}\", \"at\": {}, \"email\": \"{email}\", \"url\": \"https://acme.io{url}\"}}",
                now - ago
            );
            crate::events::parse(i as u64 + 1, &raw, &config.score.pages, now).unwrap()
        })
        .collect();
        store.insert_events("t", &events, now).unwrap();
        // New colleagues, a duplicate of a stored lead, a lead validation
        // rejects, and one with free mail (no account).
        let second = vec![
            lead(
                "Elif",
                "Brandt",
                "elif.brandt@acmetrix.com",
                "Director of IT",
            ),
            lead("Farid", "Ito", "farid.ito@acmexa.com", "Analyst"),
            lead(
                "Greta",
                "Moreau",
                "greta.moreau@acmerode.com",
                "VP Engineering",
            ),
            lead("Ann", "Lee", "ann.lee@acmetrix.com", "VP Marketing"),
            serde_json::json!({"email": "not an email", "first_name": "X"}),
            lead("Hiro", "Quinn", "hiro.quinn@gmail.com", "Founder"),
        ];
        let done = batch(&mut store, second, "b");
        let recorded: Vec<Recorded> = done.iter().filter_map(|p| p.recorded.clone()).collect();
        let ids: BTreeSet<String> = done
            .iter()
            .filter(|p| {
                matches!(
                    p.status,
                    leadgate_store::Status::Accepted | leadgate_store::Status::Review
                )
            })
            .map(|p| p.lead_id.clone())
            .collect();
        let handed: BTreeSet<String> = recorded.iter().map(|r| r.id.clone()).collect();
        assert_eq!(handed, ids, "every lead that gets a score is handed over");
        let statuses: Vec<&str> = done.iter().map(|p| p.status.as_str()).collect();
        assert!(ids.len() >= 3 && ids.len() < done.len(), "{statuses:?}");
        assert!(recorded.iter().any(|r| !r.attributes.is_empty()));
        // Each lead handed over is the lead its stored JSON reads back as.
        let list: Vec<String> = ids.iter().cloned().collect();
        let stored = store.scoring_leads(&config.tenant, Some(&list)).unwrap();
        assert_eq!(stored.len(), recorded.len());
        for s in &stored {
            let r = recorded.iter().find(|r| r.id == s.id).unwrap();
            let read_back: Lead = serde_json::from_str(&s.normalized).unwrap();
            assert_eq!(r.lead, read_back, "{}", s.id);
        }

        let stage = Stage::load(&config, &components.runtime, None).unwrap();
        let mut scoring = stage.scoring(&config).unwrap();
        let mut pipeline = Pipeline::open(None).unwrap();
        let all: Vec<String> = done.iter().map(|p| p.lead_id.clone()).collect();
        let mut score = |store: &mut Store, scope: Scope<'_>| {
            let r = rescore(
                &config,
                store,
                &mut scoring,
                scope,
                "intake",
                &mut pipeline,
                now,
            )
            .unwrap();
            (r.scored, store.score_details(&all).unwrap())
        };
        let as_recorded = score(&mut store, Scope::Recorded(recorded.clone()));
        let read_back = score(&mut store, Scope::Only(&ids));
        assert_eq!(as_recorded.0 as usize, ids.len());
        assert_eq!(as_recorded, read_back);
        // What the scores rest on: the leads' enrichment, and their
        // colleagues' activity.
        let factor = |name: &str| {
            read_back.1.values().any(|d| {
                let v: serde_json::Value = serde_json::from_str(d).unwrap();
                v[name].as_f64().is_some_and(|x| x > 0.0)
            })
        };
        assert!(factor("fit") && factor("intent"), "{:?}", read_back.1);
        // Routing knows the same of a lead from what the batch holds as
        // from the store.
        for r in &recorded {
            let grade = read_back
                .1
                .get(&r.id)
                .and_then(|d| crate::assign::grade_in(d));
            assert!(grade.is_some(), "{}", r.id);
            let held = crate::assign::facts_of(&config, &r.id, &r.lead, &r.attributes, grade);
            let stored = crate::assign::facts(&config, &store, &r.id).unwrap();
            assert_eq!(
                serde_json::to_value(&held.subject).unwrap(),
                serde_json::to_value(&stored.subject).unwrap(),
                "{}",
                r.id
            );
            assert_eq!(
                (held.domain, held.company_key),
                (stored.domain, stored.company_key)
            );
        }
    }

    type NewEventRow = leadgate_store::score::NewEvent;
}
