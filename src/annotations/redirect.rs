//! `permanent-redirect(-code)`, `temporal-redirect(-code)`, `from-to-www-redirect`
//! (ingress-nginx `annotations/redirect`). An invalid redirect URL makes the Ingress invalid
//! (ingress-nginx's validation error); an out-of-range code falls back to the default.

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "permanent-redirect",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "answer every request with a redirect to this URL (query not appended)",
    },
    KeySpec {
        name: "permanent-redirect-code",
        scope: Scope::Ingress,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "status of permanent-redirect: 300-308, default 301",
    },
    KeySpec {
        name: "temporal-redirect",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "like permanent-redirect, http(s) URL, wins over it",
    },
    KeySpec {
        name: "temporal-redirect-code",
        scope: Scope::Ingress,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "status of temporal-redirect: 300-307, default 302",
    },
    KeySpec {
        name: "from-to-www-redirect",
        scope: Scope::Host,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "redirect www.<host> to <host> (or the reverse) with http-redirect-code",
    },
    KeySpec {
        name: "relative-redirects",
        scope: Scope::Ingress,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "keep a redirect target starting with / relative in Location (default: made absolute as scheme://host/path, nginx absolute_redirect)",
    },
];

/// A fixed redirect answered instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub code: u16,
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects {
    pub redirect: Option<Redirect>,
    pub from_to_www: bool,
    /// `relative-redirects`: a target starting with `/` stays relative (nginx
    /// `absolute_redirect off`); otherwise it is made absolute with the request's scheme and host.
    pub relative: bool,
}

/// ingress-nginx `URLIsValidRegex`: alphanumerics, `-._~/:` and `,?&=`.
fn is_url_chars(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/:,?&=".contains(&b))
}

fn is_http_url(v: &str) -> bool {
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

fn code(r: &mut Reader<'_>, name: &str, range: std::ops::RangeInclusive<i64>, default: u16) -> u16 {
    let Some(v) = r.get(name) else { return default };
    match super::parse_int(v) {
        Some(n) if range.contains(&n) => n as u16,
        _ => {
            r.fallback(
                name,
                v,
                &format!("a status code {}-{}", range.start(), range.end()),
                &default.to_string(),
            );
            default
        }
    }
}

pub fn parse(r: &mut Reader<'_>) -> Redirects {
    let mut out = Redirects {
        from_to_www: r.bool_or("from-to-www-redirect", false),
        relative: r.bool_or("relative-redirects", false),
        ..Default::default()
    };
    if let Some(url) = r.get("temporal-redirect") {
        if is_url_chars(url) && is_http_url(url) {
            let code = code(r, "temporal-redirect-code", 300..=307, 302);
            out.redirect = Some(Redirect {
                code,
                url: url.to_string(),
            });
        } else {
            r.reject(
                "temporal-redirect",
                url,
                "an http(s):// URL without nginx variables",
            );
        }
    }
    if let Some(url) = r.get("permanent-redirect") {
        if !is_url_chars(url) {
            r.reject("permanent-redirect", url, "a URL without nginx variables");
        } else if out.redirect.is_none() {
            let code = code(r, "permanent-redirect-code", 300..=308, 301);
            out.redirect = Some(Redirect {
                code,
                url: url.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn permanent_and_temporal() {
        let (r, d) = reader_with(
            &[("permanent-redirect", "https://new.example.com/x")],
            parse,
        );
        assert_eq!(
            r.redirect,
            Some(Redirect {
                code: 301,
                url: "https://new.example.com/x".into()
            })
        );
        assert!(d.is_empty());
        let (r, _) = reader_with(
            &[
                ("permanent-redirect", "https://a.example.com"),
                ("temporal-redirect", "https://b.example.com"),
                ("temporal-redirect-code", "307"),
            ],
            parse,
        );
        assert_eq!(
            r.redirect,
            Some(Redirect {
                code: 307,
                url: "https://b.example.com".into()
            })
        );
        let (r, d) = reader_with(
            &[
                ("permanent-redirect", "https://a.example.com"),
                ("permanent-redirect-code", "399"),
            ],
            parse,
        );
        assert_eq!(r.redirect.unwrap().code, 301);
        assert_eq!(d[0].reason, "InvalidAnnotationValue");
    }

    #[test]
    fn invalid_urls_reject() {
        use crate::annotations::test_support::rejects;
        assert!(rejects(
            &[("permanent-redirect", "https://x.example.com$request_uri")],
            parse
        ));
        assert!(rejects(&[("temporal-redirect", "/relative")], parse));
        assert!(!rejects(&[("permanent-redirect", "/relative")], parse));
    }
}
