//! Conditions in CEL (the `cel` crate): compiled once, checked against a
//! typical lead when a document is loaded, evaluated against a lead's
//! facts. CEL has no loops or recursion, so a condition always ends.
//!
//! The variables a condition sees:
//!
//! | name | what |
//! |---|---|
//! | `lead` | the normalized lead: every text field (`email`, `company`, `job_title`, …), `country` and `source` as strings (`""` when absent), `custom` as a map |
//! | `enrichment` | the enrichment attributes (`industry`, `employee_range`, …) as a map; a provider may leave one out, so guard with `has(enrichment.x)` |
//! | `score` | `total` (0–100), `grade`, `fit`, `engagement`, `intent` (0–1); all 0 and grade `""` before the first score |
//! | `stage` | the lifecycle or opportunity stage (`""` when none) |
//! | `qualification` | `qualified`, `incomplete`, `needs_review` or `rejected` (`""` before classification) |
//! | `event` | the triggering event: `type`, `category`, `url`, `at` (ms); empty strings and 0 for other triggers |
//! | `window` | `count`: the events in the trigger's window |

use cel::{Context, Program, Value};
use leadgate_lead::Lead;
use leadgate_lead::score::Scored;
use std::collections::HashMap;
use std::sync::Arc;

/// The variables a condition may use.
pub const VARIABLES: &[&str] = &[
    "lead",
    "enrichment",
    "score",
    "stage",
    "qualification",
    "event",
    "window",
];

/// Attributes the bundled enrichment gives, present when a document is
/// checked.
const CHECKED_ATTRIBUTES: &[&str] = &[
    "industry",
    "employee_range",
    "company_from_domain",
    "category",
];

/// The triggering event, as a condition sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFacts<'a> {
    pub kind: &'a str,
    pub category: Option<&'a str>,
    pub url: Option<&'a str>,
    pub at: i64,
}

/// What a condition is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub lead: &'a Lead,
    pub enrichment: &'a [(String, String)],
    pub score: Option<&'a Scored>,
    pub stage: Option<&'a str>,
    pub qualification: Option<&'a str>,
    pub event: Option<EventFacts<'a>>,
    pub window: u32,
}

fn text(v: Option<&str>) -> Value {
    Value::String(Arc::new(v.unwrap_or_default().to_string()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let m: HashMap<String, Value> = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Value::from(m)
}

thread_local! {
    /// CEL's standard library, built once per thread: each evaluation adds
    /// its variables in a scope of its own.
    static ROOT: Context<'static, 'static> = Context::default();
}

impl Facts<'_> {
    /// Binds the variables in `used` (indexes into [`VARIABLES`]).
    fn bind(&self, ctx: &mut Context<'_, '_>, used: &[bool; 7]) {
        if used[0] {
            self.bind_lead(ctx);
        }
        if used[1] {
            let enrichment: HashMap<String, Value> = self
                .enrichment
                .iter()
                .map(|(k, v)| (k.clone(), text(Some(v))))
                .collect();
            ctx.add_variable_from_value("enrichment", Value::from(enrichment));
        }
        if used[2] {
            let s = self.score;
            ctx.add_variable_from_value(
                "score",
                map(vec![
                    ("total", Value::Int(s.map_or(0, |s| i64::from(s.total)))),
                    ("grade", text(s.map(|s| s.grade.as_str()))),
                    ("fit", Value::Float(s.map_or(0.0, |s| s.fit))),
                    ("engagement", Value::Float(s.map_or(0.0, |s| s.engagement))),
                    ("intent", Value::Float(s.map_or(0.0, |s| s.intent))),
                ]),
            );
        }
        if used[3] {
            ctx.add_variable_from_value("stage", text(self.stage));
        }
        if used[4] {
            ctx.add_variable_from_value("qualification", text(self.qualification));
        }
        if used[5] {
            let e = self.event.unwrap_or_default();
            ctx.add_variable_from_value(
                "event",
                map(vec![
                    ("type", text(Some(e.kind))),
                    ("category", text(e.category)),
                    ("url", text(e.url)),
                    ("at", Value::Int(e.at)),
                ]),
            );
        }
        if used[6] {
            ctx.add_variable_from_value(
                "window",
                map(vec![("count", Value::Int(i64::from(self.window)))]),
            );
        }
    }

    fn bind_lead(&self, ctx: &mut Context<'_, '_>) {
        let l = self.lead;
        let mut lead: Vec<(&str, Value)> = leadgate_lead::TEXT_FIELDS
            .iter()
            .map(|f| (*f, text(l.field(f))))
            .collect();
        lead.push(("country", text(l.country.as_deref())));
        lead.push(("source", text(Some(l.source.as_str()))));
        let custom: HashMap<String, Value> = l
            .custom
            .iter()
            .map(|c| (c.key.clone(), text(Some(&c.value))))
            .collect();
        lead.push(("custom", Value::from(custom)));
        ctx.add_variable_from_value("lead", map(lead));
    }
}

/// The names CEL's macros bind (`list.exists(x, …)`, `all`, `exists_one`,
/// `map`, `filter`): variables of the condition's own.
fn bound_names(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in ["all(", "exists(", "exists_one(", "map(", "filter("] {
        for (i, _) in source.match_indices(m) {
            if !source[..i].ends_with('.') {
                continue;
            }
            let rest = &source[i + m.len()..];
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = rest.trim_start()[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with(',') {
                out.push(name);
            }
        }
    }
    out
}

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    /// Which of [`VARIABLES`] it reads: only those are bound.
    used: [bool; 7],
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Compiles `source`; a syntax error is refused with CEL's message.
    pub fn compile(source: &str) -> Result<Condition, String> {
        let trimmed = source.trim();
        if trimmed.is_empty() {
            return Err("is empty: write a CEL expression, e.g. score.total >= 80".into());
        }
        let program = Program::compile(trimmed).map_err(|e| {
            format!(
                "not CEL: {}",
                e.to_string().lines().next().unwrap_or_default().trim()
            )
        })?;
        let refs = program.references();
        let used = std::array::from_fn(|i| refs.has_variable(VARIABLES[i]));
        Ok(Condition {
            source: trimmed.to_string(),
            program: Arc::new(program),
            used,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Checks the condition names only known variables, and gives true or
    /// false on a typical lead (a type error, an unknown function or a
    /// missing field shows there).
    pub fn check(&self) -> Result<(), String> {
        let refs = self.program.references();
        let bound = bound_names(&self.source);
        let mut unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v) && !bound.iter().any(|b| b == v))
            .collect();
        unknown.sort_unstable();
        if let Some(v) = unknown.first() {
            return Err(format!(
                "unknown variable {v:?} (known: {})",
                VARIABLES.join(", ")
            ));
        }
        let lead = Lead::default();
        let enrichment: Vec<(String, String)> = CHECKED_ATTRIBUTES
            .iter()
            .map(|a| (a.to_string(), String::new()))
            .collect();
        let score = Scored {
            total: 0,
            grade: String::new(),
            fit: 0.0,
            engagement: 0.0,
            intent: 0.0,
            probability: None,
            reasons: Vec::new(),
        };
        let facts = Facts {
            lead: &lead,
            enrichment: &enrichment,
            score: Some(&score),
            stage: None,
            qualification: None,
            event: None,
            window: 0,
        };
        self.eval(&facts).map(|_| ()).map_err(|e| {
            if e.contains("No such key") {
                format!("{e} (a lead field that does not exist, or an enrichment attribute a provider may leave out: guard it with has(enrichment.x))")
            } else {
                e
            }
        })
    }

    /// Whether the condition holds for `facts`; an error says why it could
    /// not be evaluated.
    pub fn eval(&self, facts: &Facts<'_>) -> Result<bool, String> {
        let result = ROOT.with(|root| {
            let mut ctx = root.new_inner_scope();
            facts.bind(&mut ctx, &self.used);
            self.program.execute(&ctx)
        });
        match result {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("gives {}, not true or false", other.type_of())),
            Err(e) => Err(e.to_string()),
        }
    }
}
