//! `custom-headers`: response headers from a ConfigMap (`ns/name` or `name`), each name
//! allowed by the ConfigMap's `global-allowed-response-headers` (ingress-nginx
//! `customheaders`). The reference is resolved in compile; a missing ConfigMap or a header
//! that is not allowed makes the Ingress's paths answer 503 (ingress-nginx denies the
//! location), never a silent pass.

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[KeySpec {
    name: "custom-headers",
    scope: Scope::Ingress,
    risk: Risk::Medium,
    support: Support::Supported,
    doc: "ConfigMap (ns/name) whose entries are added as response headers; names must be in global-allowed-response-headers",
}];

pub fn parse(r: &mut Reader<'_>) -> Option<String> {
    let v = r.get("custom-headers")?;
    let ok = v.split('/').count() <= 2
        && !v.starts_with('/')
        && !v.ends_with('/')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-./".contains(&b));
    if ok {
        Some(v.to_string())
    } else {
        r.fallback(
            "custom-headers",
            v,
            "a ConfigMap reference namespace/name",
            "(none)",
        );
        None
    }
}
