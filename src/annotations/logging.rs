//! `enable-access-log` (ingress-nginx `annotations/log`): the Ingress's requests are logged
//! unless it is false. An invalid value keeps the default with a warning.

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[KeySpec {
    name: "enable-access-log",
    scope: Scope::Ingress,
    risk: Risk::Low,
    support: Support::Supported,
    doc: "log this Ingress's requests in the access log (default true)",
}];

pub fn parse(r: &mut Reader<'_>) -> bool {
    r.bool_or("enable-access-log", true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn values() {
        assert!(reader_with(&[], parse).0);
        assert!(!reader_with(&[("enable-access-log", "false")], parse).0);
        let (v, d) = reader_with(&[("enable-access-log", "nah")], parse);
        assert!(v);
        assert_eq!(d.len(), 1);
    }
}
