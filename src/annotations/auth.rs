//! The authentication family as far as this version goes: `enable-global-auth` (the opt-out
//! of the ConfigMap's `global-auth-url`), and the security keys that are not implemented yet.
//!
//! Invariant: an Ingress carrying any `auth-*` or `satisfy` key that pingress does not
//! implement is never served open: [`AuthAnnotations::fail_closed`] lists them and every path
//! of the Ingress answers 503 (`FailMode::FailClosed` in the catalog, checked by a test over
//! the whole catalog so that a future key cannot slip through).

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[KeySpec {
    name: "enable-global-auth",
    scope: Scope::Ingress,
    risk: Risk::Low,
    support: Support::Supported,
    doc: "`\"false\"` takes the Ingress out of the ConfigMap's global-auth-url (which fails closed in this version, see Differences)",
}];

/// The typed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAnnotations {
    /// `enable-global-auth` (default true).
    pub enable_global_auth: bool,
    /// Not-implemented security keys present on the Ingress (names without prefix).
    pub fail_closed: Vec<&'static str>,
}

impl Default for AuthAnnotations {
    fn default() -> Self {
        AuthAnnotations {
            enable_global_auth: true,
            fail_closed: Vec::new(),
        }
    }
}

pub fn parse(r: &mut Reader<'_>, fail_closed: Vec<&'static str>) -> AuthAnnotations {
    AuthAnnotations {
        enable_global_auth: r.bool_or("enable-global-auth", true),
        fail_closed,
    }
}

/// Whether a key belongs to the security family that must fail closed until implemented
/// (ingress-nginx's auth, client-certificate and satisfy annotations).
pub fn is_security_key(name: &str) -> bool {
    name.starts_with("auth-") || name == "satisfy"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn enable_global_auth_defaults_to_true_and_falls_back_on_junk() {
        let (a, d) = reader_with(&[], |r| parse(r, vec![]));
        assert!(a.enable_global_auth);
        assert!(d.is_empty());
        let (a, _) = reader_with(&[("enable-global-auth", "false")], |r| parse(r, vec![]));
        assert!(!a.enable_global_auth);
        let (a, d) = reader_with(&[("enable-global-auth", "nope")], |r| parse(r, vec![]));
        assert!(a.enable_global_auth);
        assert_eq!(d[0].reason, "InvalidAnnotationValue");
    }
}
