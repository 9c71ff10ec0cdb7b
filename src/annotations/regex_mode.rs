//! `use-regex`: switches every path of the Ingress's hosts to regex matching (see `route`).

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[KeySpec {
    name: "use-regex",
    scope: Scope::Host,
    risk: Risk::Low,
    support: Support::Supported,
    doc: "match every path of the host as a case-insensitive regex anchored at the start",
}];

/// An invalid value falls back to false with a warning, as ingress-nginx does.
pub fn parse(r: &mut Reader<'_>) -> bool {
    r.bool_or("use-regex", false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::ObjectRef;
    use std::collections::BTreeMap;

    #[test]
    fn values() {
        let o = ObjectRef::ingress("n", "i");
        for (v, want, warns) in [("true", true, 0), ("False", false, 0), ("yes", false, 1)] {
            let m: BTreeMap<String, String> = [("p/use-regex".to_string(), v.to_string())].into();
            let mut d = Vec::new();
            let mut r = Reader::new("p", Some(&m), &o, &mut d);
            assert_eq!(parse(&mut r), want, "{v}");
            drop(r);
            assert_eq!(d.len(), warns, "{v}");
        }
    }
}
