//! `rewrite-target`, `x-forwarded-prefix`, `app-root` (ingress-nginx `annotations/rewrite`).
//!
//! Values must match ingress-nginx's `RegexPathWithCapture` (`/`? then `A-Za-z0-9-._~/:$`);
//! an invalid value is ignored with a warning, as ingress-nginx treats it as empty.

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "rewrite-target",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "replace the whole URI with this target ($1..$9 from the path regex); http(s):// targets answer 302; turns on regex mode for the host",
    },
    KeySpec {
        name: "x-forwarded-prefix",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "X-Forwarded-Prefix sent upstream, only on rewritten locations",
    },
    KeySpec {
        name: "app-root",
        scope: Scope::Host,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "redirect the exact URI / to this path with 302 (whole host)",
    },
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub target: Option<String>,
    pub x_forwarded_prefix: Option<String>,
    pub app_root: Option<String>,
}

/// ingress-nginx `RegexPathWithCapture`.
pub fn is_path_with_capture(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/:$".contains(&b))
}

pub fn parse(r: &mut Reader<'_>) -> Rewrite {
    let mut out = Rewrite::default();
    for (name, slot) in [
        ("rewrite-target", &mut out.target),
        ("x-forwarded-prefix", &mut out.x_forwarded_prefix),
    ] {
        if let Some(v) = r.get(name) {
            if is_path_with_capture(v) {
                *slot = Some(v.to_string());
            } else {
                r.fallback(name, v, "a path with only A-Za-z0-9-._~/:$", "(none)");
            }
        }
    }
    if let Some(v) = r.get("app-root") {
        if is_path_with_capture(v) && v.starts_with('/') && !v.contains("://") {
            out.app_root = Some(v.to_string());
        } else {
            r.fallback("app-root", v, "a relative path starting with /", "(none)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn values() {
        let (rw, d) = reader_with(
            &[("rewrite-target", "/$2"), ("x-forwarded-prefix", "/api")],
            parse,
        );
        assert_eq!(rw.target.as_deref(), Some("/$2"));
        assert_eq!(rw.x_forwarded_prefix.as_deref(), Some("/api"));
        assert!(d.is_empty());
        let (rw, _) = reader_with(&[("rewrite-target", "https://example.com/$1")], parse);
        assert_eq!(rw.target.as_deref(), Some("https://example.com/$1"));
        let (rw, d) = reader_with(&[("rewrite-target", "/a?b=1")], parse);
        assert_eq!(rw.target, None);
        assert_eq!(d[0].reason, "InvalidAnnotationValue");
        let (rw, d) = reader_with(&[("app-root", "/app1")], parse);
        assert_eq!(rw.app_root.as_deref(), Some("/app1"));
        assert!(d.is_empty());
        let (rw, d) = reader_with(&[("app-root", "http://x/app")], parse);
        assert_eq!(rw.app_root, None);
        assert_eq!(d.len(), 1);
    }
}
