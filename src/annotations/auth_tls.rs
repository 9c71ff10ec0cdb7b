//! Client certificates (`auth-tls-*`, ingress-nginx `annotations/authtls`): a host asks for a
//! client certificate signed by the CA of `auth-tls-secret` (`ca.crt`, optional `ca.crl`).
//! Host scope: the oldest Ingress of the host that sets `auth-tls-secret` decides, as
//! ingress-nginx's server-level `ssl_verify_client`.
//!
//! Invariant: a value that does not parse never turns client certificates off: the Ingress
//! fails closed (503) like every other auth key.

use super::{KeySpec, Reader, Risk, Scope, Support};

const fn key(name: &'static str, risk: Risk, support: Support, doc: &'static str) -> KeySpec {
    KeySpec {
        name,
        scope: Scope::Host,
        risk,
        support,
        doc,
    }
}

pub const KEYS: &[KeySpec] = &[
    key("auth-tls-secret", Risk::Medium, Support::Supported,
        "`namespace/name` of a Secret with `ca.crt` (and optional `ca.crl`): the host asks for client certificates signed by it; only hosts that set it send a CertificateRequest; missing or invalid: 403"),
    key("auth-tls-verify-client", Risk::Medium, Support::Supported,
        "`on` (default: no or a bad certificate answers 400), `optional` (no certificate passes), `optional_no_ca` (everything passes, the result goes upstream), `off`"),
    key("auth-tls-verify-depth", Risk::Low, Support::Supported,
        "how many certificates may stand between the client certificate and a CA of `ca.crt` plus one (default 1: signed by the CA itself); intermediates beyond it are not used"),
    key("auth-tls-error-page", Risk::High, Support::Supported,
        "a failed verification redirects (302) here instead of answering 400"),
    key("auth-tls-pass-certificate-to-upstream", Risk::Low, Support::Supported,
        "send the client certificate upstream as URL-escaped PEM in `ssl-client-cert`"),
    key("auth-tls-match-cn", Risk::High, Support::Supported,
        "`CN=<regex>`: a verified certificate whose subject does not match answers 403"),
];

/// `auth-tls-verify-client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    On,
    Off,
    Optional,
    OptionalNoCa,
}

impl VerifyClient {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyClient::On => "on",
            VerifyClient::Off => "off",
            VerifyClient::Optional => "optional",
            VerifyClient::OptionalNoCa => "optional_no_ca",
        }
    }
}

/// The client-certificate settings of one Ingress, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthTlsSpec {
    pub namespace: Option<String>,
    pub secret: String,
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth` (1).
    pub depth: u32,
    pub error_page: Option<String>,
    pub pass_certificate: bool,
    /// The regex of `CN=<regex>`.
    pub match_cn: Option<String>,
}

/// `Ok(None)`: no `auth-tls-secret`. `Err`: a value that does not parse (fail closed).
pub fn parse(r: &mut Reader<'_>) -> Result<Option<AuthTlsSpec>, String> {
    let Some(secret) = r.get("auth-tls-secret") else {
        if r.is_set("auth-tls-secret") {
            return Err(format!("{} is empty", r.key("auth-tls-secret")));
        }
        return Ok(None);
    };
    let (namespace, name) = super::auth::secret_ref(secret).ok_or_else(|| {
        format!(
            "{}: {secret:?} is not name or namespace/name",
            r.key("auth-tls-secret")
        )
    })?;
    let verify = match r.get("auth-tls-verify-client") {
        None | Some("on") => VerifyClient::On,
        Some("off") => VerifyClient::Off,
        Some("optional") => VerifyClient::Optional,
        Some("optional_no_ca") => VerifyClient::OptionalNoCa,
        Some(v) => {
            return Err(format!(
                "{}: {v:?} is not on, off, optional or optional_no_ca",
                r.key("auth-tls-verify-client")
            ))
        }
    };
    let depth = match r.get("auth-tls-verify-depth") {
        None => 1,
        Some(d) => d.parse::<u32>().ok().filter(|d| *d > 0).ok_or_else(|| {
            format!(
                "{}: {d:?} is not a positive integer",
                r.key("auth-tls-verify-depth")
            )
        })?,
    };
    let error_page = match r.get("auth-tls-error-page") {
        None => None,
        Some(u)
            if (u.starts_with("http://") || u.starts_with("https://") || u.starts_with('/'))
                && !u.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Some(u.to_string())
        }
        Some(u) => {
            return Err(format!(
                "{}: {u:?} is not a URL",
                r.key("auth-tls-error-page")
            ))
        }
    };
    let match_cn = match r.get("auth-tls-match-cn") {
        None => None,
        Some(v) => {
            let re = v.strip_prefix("CN=").ok_or_else(|| {
                format!(
                    "{}: {v:?} does not start with CN=",
                    r.key("auth-tls-match-cn")
                )
            })?;
            regex::RegexBuilder::new(re)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("{}: {e}", r.key("auth-tls-match-cn")))?;
            Some(re.to_string())
        }
    };
    Ok(Some(AuthTlsSpec {
        namespace,
        secret: name,
        verify,
        depth,
        error_page,
        pass_certificate: r.bool_or("auth-tls-pass-certificate-to-upstream", false),
        match_cn,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn parses_every_key_and_fails_closed_on_junk() {
        let (a, _) = reader_with(
            &[
                ("auth-tls-secret", "default/ca"),
                ("auth-tls-verify-client", "optional_no_ca"),
                ("auth-tls-verify-depth", "2"),
                ("auth-tls-error-page", "https://example.com/cert-error"),
                ("auth-tls-pass-certificate-to-upstream", "true"),
                ("auth-tls-match-cn", "CN=(alice|bob)"),
            ],
            parse,
        );
        let s = a.unwrap().unwrap();
        assert_eq!(s.namespace.as_deref(), Some("default"));
        assert_eq!(s.verify, VerifyClient::OptionalNoCa);
        assert!(s.pass_certificate);
        assert_eq!(s.match_cn.as_deref(), Some("(alice|bob)"));
        assert_eq!(reader_with(&[], parse).0, Ok(None));
        for kv in [
            &[("auth-tls-secret", "")][..],
            &[("auth-tls-secret", "a/b/c")],
            &[("auth-tls-secret", "ca"), ("auth-tls-verify-client", "yes")],
            &[("auth-tls-secret", "ca"), ("auth-tls-verify-depth", "0")],
            &[("auth-tls-secret", "ca"), ("auth-tls-match-cn", "alice")],
            &[("auth-tls-secret", "ca"), ("auth-tls-match-cn", "CN=(")],
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-error-page", "javascript:x"),
            ],
        ] {
            assert!(reader_with(kv, parse).0.is_err(), "{kv:?}");
        }
    }
}
