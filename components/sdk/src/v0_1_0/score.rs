//! The `scorer` world: a [`Score`](crate::Score) exported as
//! `leadgate:plugin/score@0.1.0`.

super::capability!("leadgate:sdk/scorer@0.1.0", score, Score, Scorer);

use leadgate_lead::score as s;

/// Events from their columns; an unknown kind code is skipped, a category
/// index out of range is no category.
fn events(x: wit::Events, categories: usize) -> Vec<s::Event> {
    let n = x
        .kinds
        .len()
        .min(x.at.len())
        .min(x.categories.len())
        .min(x.values.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Some(kind) = s::EventKind::ALL.get(usize::from(x.kinds[i])).copied() else {
            continue;
        };
        let c = x.categories[i];
        out.push(s::Event {
            kind,
            at: x.at[i],
            category: if usize::from(c) <= categories { c } else { 0 },
            value: x.values[i],
        });
    }
    out
}

fn subject(x: wit::Subject) -> s::Subject {
    let n = x.categories.len();
    s::Subject {
        lead: lead_from_wit(x.lead),
        attributes: x
            .attributes
            .into_iter()
            .map(|a| (a.name, a.value))
            .collect(),
        categories: x.categories,
        events: events(x.events, n),
        peers: x
            .peers
            .into_iter()
            .map(|p| s::Peer {
                id: p.id,
                job_title: p.job_title,
                seniority: p.seniority,
                events: events(p.events, n),
            })
            .collect(),
    }
}

impl<T: Score> wit::GuestScorer for Resource<T> {
    fn open(settings: String) -> Result<wit::Scorer, String> {
        Ok(wit::Scorer::new(Resource(T::open(&settings)?)))
    }

    fn score(&self, subjects: Vec<wit::Subject>, cx: t::CallContext) -> Vec<wit::Scored> {
        let cx = cx_from_wit(cx);
        subjects
            .into_iter()
            .map(|x| {
                let r = self.0.score(&subject(x), &cx);
                wit::Scored {
                    total: r.total,
                    grade: r.grade,
                    fit: r.fit,
                    engagement: r.engagement,
                    intent: r.intent,
                    probability: r.probability,
                    reasons: r
                        .reasons
                        .into_iter()
                        .map(|r| wit::Reason {
                            code: r.code,
                            factor: r.factor,
                            contribution: r.contribution,
                            detail: r.detail,
                        })
                        .collect(),
                }
            })
            .collect()
    }
}
