//! The `deduper` world: a [`Dedupe`](crate::Dedupe) exported as
//! `leadgate:plugin/dedupe@0.1.0`.

super::capability!("leadgate:sdk/deduper@0.1.0", dedupe, Dedupe, Deduper);

impl<T: Dedupe> wit::GuestDeduper for Resource<T> {
    fn open(settings: String) -> Result<wit::Deduper, String> {
        Ok(wit::Deduper::new(Resource(T::open(&settings)?)))
    }

    fn keys(&self, leads: Vec<t::Lead>, cx: t::CallContext) -> Vec<Vec<String>> {
        let cx = cx_from_wit(cx);
        leads
            .into_iter()
            .map(|l| self.0.keys(&lead_from_wit(l), &cx))
            .collect()
    }

    fn compare(
        &self,
        leads: Vec<t::Lead>,
        pairs: Vec<(u32, u32)>,
        explain: bool,
        cx: t::CallContext,
    ) -> Vec<wit::MatchResult> {
        let leads: Vec<m::Lead> = leads.into_iter().map(lead_from_wit).collect();
        self.0
            .compare(&leads, &pairs, explain, &cx_from_wit(cx))
            .into_iter()
            .map(|r| wit::MatchResult {
                probability: r.probability,
                evidence: r
                    .evidence
                    .into_iter()
                    .map(|e| wit::Evidence {
                        field: e.field,
                        level: e.level,
                        similarity: e.similarity,
                        weight: e.weight,
                        detail: e.detail,
                    })
                    .collect(),
            })
            .collect()
    }
}
