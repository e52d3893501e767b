pub struct RuleSpec;
pub struct Extractor;
pub struct EnvelopeOptions;
pub fn events_from_ndjson() {}
