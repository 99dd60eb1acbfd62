//! `leadgate.toml`: the tenant's deployment — which component implements
//! each capability, each component's settings, the store, and the limits
//! every component runs under. Every key has a default; no file is needed to
//! run on the bundled components.

pub mod serve;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Tenant these leads belong to.
    pub tenant: String,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub validate: CapabilityConfig,
    pub dedupe: DedupeConfig,
    pub enrich: EnrichConfig,
    pub classify: crate::classify::ClassifyConfig,
    pub score: ScoreConfig,
    pub serve: serve::ServeConfig,
    pub crm: serve::CrmConfig,
    pub review: serve::ReviewConfig,
    pub routing: leadgate_routing::RoutingConfig,
    pub alerts: leadgate_notify::AlertsConfig,
    pub rules: RulesConfig,
    /// Directory the config file was read from; relative paths resolve here.
    #[serde(skip)]
    pub base: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tenant: "default".into(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            validate: CapabilityConfig::default(),
            dedupe: DedupeConfig::default(),
            enrich: EnrichConfig::default(),
            classify: crate::classify::ClassifyConfig::default(),
            score: ScoreConfig::default(),
            serve: Default::default(),
            crm: Default::default(),
            review: Default::default(),
            routing: Default::default(),
            alerts: Default::default(),
            rules: Default::default(),
            base: PathBuf::from("."),
        }
    }
}

/// `[rules]`: the tenant's workflow rules documents, and where their
/// outbound sequences are started.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rules documents (TOML), relative to the config file.
    pub files: Vec<PathBuf>,
    /// The signed webhook a sequence without a target of its own in
    /// `[rules.sequences]` is started and stopped through.
    pub sequence_url: Option<String>,
    /// Environment variable holding that webhook's signing secret.
    pub sequence_token_env: String,
    /// Sequences by the name rules give them.
    pub sequences: std::collections::BTreeMap<String, SequenceConfig>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            sequence_url: None,
            sequence_token_env: "LEADGATE_SEQUENCE_TOKEN".into(),
            sequences: Default::default(),
        }
    }
}

/// `[rules.sequences.NAME]`: a HubSpot sequence (its id, and the user and
/// mailbox it is sent from), or a signed webhook of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequenceConfig {
    pub hubspot_sequence_id: Option<String>,
    /// The HubSpot user enrolling (their user id).
    pub hubspot_user_id: Option<String>,
    /// The connected inbox the sequence sends from.
    pub sender_email: Option<String>,
    /// A webhook of its own instead.
    pub url: Option<String>,
}

impl Config {
    /// The rules documents `[rules] files` names, resolved against the
    /// config file's directory.
    pub fn rules_files(&self) -> Vec<PathBuf> {
        self.rules
            .files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    self.base.join(f)
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file, or `:memory:`.
    pub path: String,
    /// A PostgreSQL server and database (`postgres://user@host:5432/db`;
    /// the password from `PGPASSWORD` rather than the file). Takes the
    /// place of `path` when set.
    pub url: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "leadgate.db".into(),
            url: None,
        }
    }
}

impl StoreConfig {
    /// Where the store is: `url` when set, else `path` — a relative file
    /// path taken from `base` (the configuration file's folder) when
    /// `relative_to_base`.
    pub fn location(&self, base: &std::path::Path, relative_to_base: bool) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        if relative_to_base && self.path != ":memory:" && !is_postgres(&self.path) {
            base.join(&self.path).display().to_string()
        } else {
            self.path.clone()
        }
    }
}

/// Whether a store location names a PostgreSQL server (the store's own
/// rule).
pub use leadgate_store::pg::is_postgres;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall time per lead before a component call is stopped.
    pub deadline_ms: u64,
    /// Linear memory per component instance.
    pub memory_mib: u64,
    /// Leads per component call.
    pub batch_size: usize,
    /// Calls an instance serves before it is replaced by a fresh one.
    pub calls_per_instance: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            deadline_ms: 1000,
            memory_mib: 128,
            batch_size: 64,
            calls_per_instance: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Where compiled components are cached; `off` disables the cache.
    /// Default: `$LEADGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/leadgate`, else
    /// `~/.cache/leadgate`.
    pub dir: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapabilityConfig {
    /// The component file; default: the bundled one.
    pub component: Option<PathBuf>,
    /// Passed to the component as JSON; its meaning is the component's.
    pub settings: toml::Table,
}

/// `[dedupe]`: the matching component, the tenant's thresholds and merge
/// rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupeConfig {
    /// Match new leads against stored ones in `leadgate run` and `import`.
    pub enabled: bool,
    /// The component file; default: the bundled one.
    pub component: Option<PathBuf>,
    /// Passed to the component as JSON; its meaning is the component's.
    pub settings: toml::Table,
    /// A model file from `leadgate dedupe train`, passed to the component as
    /// the `model` setting.
    pub model: Option<PathBuf>,
    /// At or above this probability a pair goes to review.
    pub review: f64,
    /// At or above this probability a pair is the same person: merged when
    /// `auto_merge_enabled`, else linked (marked duplicate, nothing merged).
    pub auto_merge: f64,
    pub auto_merge_enabled: bool,
    /// Stored candidates fetched per blocking key (most recent first).
    pub candidates_per_key: usize,
    /// Candidates compared per lead at most.
    pub max_candidates: usize,
    /// Batch clean-up: leads sharing one key beyond this are compared only
    /// with their neighbours (a window), not all with all.
    pub max_block: usize,
    /// Batch clean-up: the candidate pairs a record may bring on average;
    /// beyond it whole blocking passes are left out, least selective first.
    pub max_pairs_per_record: usize,
    /// The blocking passes (key prefixes) `run`, `import` and `serve`
    /// match stored leads on: the narrow ones, each a handful of stored
    /// candidates, so one lead stays a few index lookups. `leadgate dedupe`
    /// uses every pass under its pair budget.
    pub store_passes: Vec<String>,
    /// Batch clean-up: the largest group that transitive clustering builds.
    pub max_cluster: usize,
    pub survivorship: leadgate_merge::survivorship::Rules,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            enabled: true,
            component: None,
            settings: toml::Table::new(),
            model: None,
            review: 0.5,
            auto_merge: 0.9,
            auto_merge_enabled: false,
            candidates_per_key: 32,
            max_candidates: 64,
            max_block: 64,
            max_pairs_per_record: 8,
            store_passes: ["e", "p", "x", "i", "np", "nc", "nd", "ns", "nt"]
                .map(String::from)
                .to_vec(),
            max_cluster: 50,
            survivorship: leadgate_merge::survivorship::Rules::default(),
        }
    }
}

/// `[enrich]`: the enrich component, its providers and the time a lead
/// may wait for them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// Enrich leads in `leadgate run` (and `import`).
    pub enabled: bool,
    /// The component file; default: the bundled one.
    pub component: Option<PathBuf>,
    /// Passed to the component as JSON; its meaning is the component's.
    pub settings: toml::Table,
    /// How long a batch's leads wait for their lookups. A lookup not
    /// answered by then is `pending`: the lead goes on with what is cached
    /// or derived, is flagged, and is queued for re-enrichment.
    pub budget_ms: u64,
    /// Lookups sent to remote providers at once (worker threads).
    pub concurrency: usize,
    /// The providers, in fallback order (`[[enrich.providers]]`).
    pub providers: Vec<leadgate_providers::ProviderConfig>,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            enabled: true,
            component: None,
            settings: toml::Table::new(),
            budget_ms: 2_000,
            concurrency: 16,
            providers: Vec::new(),
        }
    }
}

/// `[score]`: the score component, the calibrated model, when a lead is
/// surfaced to sales, and what the host passes the component.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    /// Score leads in `leadgate run` and after `leadgate events`.
    pub enabled: bool,
    /// The component file; default: the bundled one.
    pub component: Option<PathBuf>,
    /// Passed to the component as JSON (ICP, weights, half-life, …).
    pub settings: toml::Table,
    /// A model from `leadgate calibrate`, passed as the `model` setting.
    pub model: Option<PathBuf>,
    /// A lead is surfaced when its total reaches this…
    pub threshold: f64,
    /// …and surfaced again only after it fell below `threshold - hysteresis`.
    pub hysteresis: f64,
    /// A lead is also surfaced when its total rises this much within
    /// `jump_window_hours` (0: never); at most once per window.
    pub jump: f64,
    pub jump_window_hours: f64,
    /// Events older than this are not passed to the component.
    pub event_window_days: f64,
    /// The most recent events passed per lead.
    pub max_events: usize,
    /// Other leads of the account passed per lead (most active first).
    pub max_peers: usize,
    /// Events passed per peer.
    pub max_peer_events: usize,
    /// The `qualified_lead_pipeline` NDJSON file surfaced leads are
    /// appended to (they are always kept in the store's outbox).
    pub pipeline: Option<PathBuf>,
    /// Page categories by URL: category → path fragments (`/pricing`);
    /// the longest fragment found in a page view's URL path wins. Replaces
    /// the defaults when given.
    pub pages: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        let pages = [
            ("pricing", &["/pricing", "/plans", "/buy", "/quote"][..]),
            ("comparison", &["/compare", "/vs", "/alternative"][..]),
            ("demo", &["/demo", "/contact-sales"][..]),
            (
                "docs",
                &["/docs", "/documentation", "/api", "/integrations"][..],
            ),
            ("blog", &["/blog", "/news"][..]),
            ("careers", &["/careers", "/jobs"][..]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
        ScoreConfig {
            enabled: true,
            component: None,
            settings: toml::Table::new(),
            model: None,
            threshold: 70.0,
            hysteresis: 10.0,
            jump: 25.0,
            jump_window_hours: 72.0,
            event_window_days: 90.0,
            max_events: 200,
            max_peers: 10,
            max_peer_events: 50,
            pipeline: None,
            pages,
        }
    }
}

impl ScoreConfig {
    fn check(&self) -> Result<()> {
        if !(self.threshold > 0.0 && self.threshold <= 100.0) {
            bail!(
                "score.threshold must be above 0 and at most 100, not {}",
                self.threshold
            );
        }
        if !(self.hysteresis >= 0.0 && self.hysteresis < self.threshold) {
            bail!(
                "score.hysteresis must be 0 or more and below score.threshold ({}), not {}",
                self.threshold,
                self.hysteresis
            );
        }
        if !(0.0..=100.0).contains(&self.jump) {
            bail!(
                "score.jump must be between 0 (off) and 100, not {}",
                self.jump
            );
        }
        for (name, v) in [
            ("jump_window_hours", self.jump_window_hours),
            ("event_window_days", self.event_window_days),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("score.{name} must be a positive number, not {v}");
            }
        }
        if !(1..=10_000).contains(&self.max_events) {
            bail!(
                "score.max_events must be between 1 and 10000, not {}",
                self.max_events
            );
        }
        if self.max_peers > 100 || self.max_peer_events > 1000 {
            bail!("score.max_peers is at most 100 and score.max_peer_events at most 1000");
        }
        for (category, fragments) in &self.pages {
            if fragments.iter().any(|f| f.trim().is_empty()) {
                bail!("score.pages.{category}: a URL fragment is empty");
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads `path`, or the defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("config {} is not valid", path.display()))?;
        config.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config
            .check()
            .with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        let l = &self.limits;
        if l.deadline_ms == 0 {
            bail!("limits.deadline_ms must be at least 1");
        }
        if !(1..=4096).contains(&l.memory_mib) {
            bail!(
                "limits.memory_mib must be between 1 and 4096, not {}",
                l.memory_mib
            );
        }
        if !(1..=10_000).contains(&l.batch_size) {
            bail!(
                "limits.batch_size must be between 1 and 10000, not {}",
                l.batch_size
            );
        }
        if l.calls_per_instance == 0 {
            bail!("limits.calls_per_instance must be at least 1");
        }
        if self.tenant.trim().is_empty() {
            bail!("tenant must not be empty");
        }
        let d = &self.dedupe;
        if !(0.0..=1.0).contains(&d.review) || !(0.0..=1.0).contains(&d.auto_merge) {
            bail!("dedupe.review and dedupe.auto_merge are probabilities between 0 and 1");
        }
        if d.review > d.auto_merge {
            bail!(
                "dedupe.review ({}) must not be above dedupe.auto_merge ({})",
                d.review,
                d.auto_merge
            );
        }
        if d.candidates_per_key == 0
            || d.max_candidates == 0
            || d.max_block < 2
            || d.max_cluster < 2
        {
            bail!(
                "dedupe.candidates_per_key and dedupe.max_candidates must be at least 1, dedupe.max_block and dedupe.max_cluster at least 2"
            );
        }
        d.survivorship.check()?;
        let e = &self.enrich;
        if !(1..=256).contains(&e.concurrency) {
            bail!(
                "enrich.concurrency must be between 1 and 256, not {}",
                e.concurrency
            );
        }
        if e.budget_ms == 0 || e.budget_ms > 60_000 {
            bail!(
                "enrich.budget_ms must be between 1 and 60000 (the 60-second processing target), not {}",
                e.budget_ms
            );
        }
        for p in &e.providers {
            p.policy()?;
        }
        self.classify.check()?;
        self.score.check()?;
        serve::check(&self.serve, &self.crm, &self.review)?;
        if self.routing.enabled {
            self.routing.check()?;
        }
        self.alerts.check()?;
        Ok(())
    }

    pub fn runtime_limits(&self) -> leadgate_runtime::Limits {
        leadgate_runtime::Limits {
            deadline: Duration::from_millis(self.limits.deadline_ms),
            memory_bytes: (self.limits.memory_mib as usize) << 20,
            max_instances: 16,
            calls_per_instance: self.limits.calls_per_instance,
        }
    }

    /// The validate component's file.
    pub fn validate_component(&self) -> Result<PathBuf> {
        match &self.validate.component {
            Some(p) => Ok(self.base.join(p)),
            None => bundled_component("validate"),
        }
    }

    /// The validate settings as JSON for the component.
    pub fn validate_settings(&self) -> Result<String> {
        serde_json::to_string(&self.validate.settings)
            .context("validate.settings cannot be passed on as JSON")
    }

    /// The dedupe component's file.
    pub fn dedupe_component(&self) -> Result<PathBuf> {
        match &self.dedupe.component {
            Some(p) => Ok(self.base.join(p)),
            None => bundled_component("dedupe"),
        }
    }

    /// The dedupe settings as JSON, with the model file (if any) read in as
    /// the `model` setting.
    pub fn dedupe_settings(&self) -> Result<String> {
        let mut settings = serde_json::to_value(&self.dedupe.settings)
            .context("dedupe.settings cannot be passed on as JSON")?;
        if let Some(path) = &self.dedupe.model {
            let path = self.base.join(path);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("dedupe.model: cannot read {}", path.display()))?;
            let model: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("dedupe.model: {} is not JSON", path.display()))?;
            if let Some(map) = settings.as_object_mut() {
                map.insert("model".into(), model);
            }
        }
        Ok(settings.to_string())
    }

    /// The enrich component's file.
    pub fn enrich_component(&self) -> Result<PathBuf> {
        match &self.enrich.component {
            Some(p) => Ok(self.base.join(p)),
            None => bundled_component("enrich"),
        }
    }

    /// The enrich settings as JSON for the component.
    pub fn enrich_settings(&self) -> Result<String> {
        serde_json::to_string(&self.enrich.settings)
            .context("enrich.settings cannot be passed on as JSON")
    }

    /// The score component's file.
    pub fn score_component(&self) -> Result<PathBuf> {
        match &self.score.component {
            Some(p) => Ok(self.base.join(p)),
            None => bundled_component("score"),
        }
    }

    /// The score settings as JSON, with the model file (if any) read in as
    /// the `model` setting; `model` overrides `score.model`.
    pub fn score_settings(&self, model: Option<&Path>) -> Result<String> {
        let mut settings = serde_json::to_value(&self.score.settings)
            .context("score.settings cannot be passed on as JSON")?;
        let path = match model {
            Some(p) => Some(p.to_path_buf()),
            None => self.score.model.as_ref().map(|p| self.base.join(p)),
        };
        if let Some(path) = path {
            let model = read_model(&path)?;
            if let Some(map) = settings.as_object_mut() {
                map.insert(
                    "model".into(),
                    serde_json::to_value(model).context("the model cannot be passed on as JSON")?,
                );
            }
        }
        Ok(settings.to_string())
    }

    /// The compilation cache directory, if enabled.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.cache.dir {
            return (dir != "off").then(|| self.base.join(dir));
        }
        if let Some(dir) = std::env::var_os("LEADGATE_CACHE_DIR") {
            return (dir != "off").then(|| PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("leadgate"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("leadgate"))
    }
}

/// Where the bundled components are: `$LEADGATE_COMPONENTS`, else
/// `components/` beside the directory holding the executable (the build puts
/// them in `target/components/`).
pub fn components_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LEADGATE_COMPONENTS") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the leadgate executable")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("components"))
        .context("cannot find the components directory beside the executable")?;
    Ok(dir)
}

fn bundled_component(name: &str) -> Result<PathBuf> {
    let path = components_dir()?.join(format!("{name}.wasm"));
    if !path.exists() {
        bail!(
            "the bundled {name} component is not built ({} is missing): run `cargo xtask build`, or set `{name}.component` in leadgate.toml",
            path.display()
        );
    }
    Ok(path)
}

/// Reads and checks a conversion model file (TOML, from `leadgate
/// calibrate`).
fn read_model(path: &Path) -> Result<leadgate_models::score::Model> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model {}", path.display()))?;
    let m: leadgate_models::score::Model =
        toml::from_str(&text).with_context(|| format!("model {} is not valid", path.display()))?;
    m.check()
        .with_context(|| format!("model {}", path.display()))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.tenant, "default");
        assert_eq!(c.limits.deadline_ms, 1000);
        assert_eq!(c.validate_settings().unwrap(), "{}");
    }

    #[test]
    fn settings_pass_through_and_paths_resolve_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leadgate.toml");
        std::fs::write(
            &path,
            "tenant = \"acme\"\n[validate]\ncomponent = \"my/validate.wasm\"\n[validate.settings]\ndefault_region = \"GB\"\nrequired = [\"company\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(
            c.validate_component().unwrap(),
            dir.path().join("my/validate.wasm")
        );
        let json: serde_json::Value =
            serde_json::from_str(&c.validate_settings().unwrap()).unwrap();
        assert_eq!(json["default_region"], "GB");
        assert_eq!(json["required"][0], "company");
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leadgate.toml");
        std::fs::write(&path, "[validat]\ncomponent = \"x.wasm\"\n").unwrap();
        let e = format!("{:#}", Config::load(Some(&path)).unwrap_err());
        assert!(e.contains("validat"), "{e}");
        std::fs::write(&path, "[limits]\nmemory_mib = 0\n").unwrap();
        let e = format!("{:#}", Config::load(Some(&path)).unwrap_err());
        assert!(e.contains("memory_mib"), "{e}");
    }
}
