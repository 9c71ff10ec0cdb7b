//! CORS (`enable-cors`, `cors-*`; ingress-nginx `annotations/cors` and the template's "CORS"
//! block): an allowed Origin gets the CORS headers on every response, and an OPTIONS request
//! with an allowed Origin is answered 204 in the rewrite phase (before limits and auth).
//!
//! Invalid values fall back as ingress-nginx does: a bad origin entry is skipped alone (none
//! left: `*`), bad methods/headers/expose lists and max-age keep their defaults, with a
//! Warning each.

use super::{KeySpec, Reader, Risk, Scope};

const fn key(name: &'static str, risk: Risk, doc: &'static str) -> KeySpec {
    KeySpec::supported(name, Scope::Ingress, risk, doc)
}

pub const KEYS: &[KeySpec] = &[
    key("enable-cors", Risk::Low, "CORS headers on every response of an allowed Origin; its OPTIONS requests answered 204 before limits and auth"),
    key("cors-allow-origin", Risk::Medium, "`*` (default: every request, `Access-Control-Allow-Origin: *`) or a comma list of `scheme://host[:port]` (single-label `*.` wildcards, `null`): a matching Origin is echoed, others get no CORS headers"),
    key("cors-allow-methods", Risk::Medium, "Access-Control-Allow-Methods (`GET, PUT, POST, DELETE, PATCH, OPTIONS`)"),
    key("cors-allow-headers", Risk::Medium, "Access-Control-Allow-Headers (`DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization`)"),
    key("cors-expose-headers", Risk::Medium, "Access-Control-Expose-Headers (none by default)"),
    key("cors-allow-credentials", Risk::Low, "Access-Control-Allow-Credentials: true (default true)"),
    key("cors-max-age", Risk::Low, "Access-Control-Max-Age in seconds (1728000)"),
];

pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: u64 = 1_728_000;

/// Which origins are allowed.
#[derive(Debug, Clone)]
pub enum Origins {
    /// `*`: every request, Origin or not, gets `Access-Control-Allow-Origin: *`.
    Any,
    /// `((<origin>)|...)$`, case-insensitive, not anchored at the start (as nginx's `~*`).
    Matching(regex::Regex),
}

/// The CORS settings of one Ingress.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Origins,
    pub methods: String,
    pub headers: String,
    pub expose: Option<String>,
    pub credentials: bool,
    pub max_age: u64,
    /// The headers after `Access-Control-Allow-Origin`, prepared once.
    prepared: Vec<(&'static str, http::HeaderValue)>,
}

impl PartialEq for Cors {
    fn eq(&self, o: &Self) -> bool {
        let origins = match (&self.origins, &o.origins) {
            (Origins::Any, Origins::Any) => true,
            (Origins::Matching(a), Origins::Matching(b)) => a.as_str() == b.as_str(),
            _ => false,
        };
        origins
            && self.methods == o.methods
            && self.headers == o.headers
            && self.expose == o.expose
            && self.credentials == o.credentials
            && self.max_age == o.max_age
    }
}

impl Eq for Cors {}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request's Origin, `None`: no CORS.
    pub fn allow_origin<'o>(&self, origin: Option<&'o str>) -> Option<&'o str> {
        match &self.origins {
            Origins::Any => Some("*"),
            Origins::Matching(re) => origin.filter(|o| re.is_match(o)),
        }
    }

    /// The headers of an allowed request (after `Access-Control-Allow-Origin`).
    pub fn headers(&self) -> &[(&'static str, http::HeaderValue)] {
        &self.prepared
    }

    fn prepare(mut self) -> Self {
        let mut h: Vec<(&'static str, String)> = Vec::with_capacity(5);
        if self.credentials {
            h.push(("Access-Control-Allow-Credentials", "true".to_string()));
        }
        h.push(("Access-Control-Allow-Methods", self.methods.clone()));
        h.push(("Access-Control-Allow-Headers", self.headers.clone()));
        if let Some(e) = &self.expose {
            h.push(("Access-Control-Expose-Headers", e.clone()));
        }
        h.push(("Access-Control-Max-Age", self.max_age.to_string()));
        // the values were checked to be names and commas: always valid header values
        self.prepared = h
            .into_iter()
            .filter_map(|(k, v)| Some((k, http::HeaderValue::from_str(&v).ok()?)))
            .collect();
        self
    }
}

/// ingress-nginx's origin syntax: `scheme://host[:port]` with an optional single `*.` label
/// first, or `null`.
fn valid_origin(o: &str) -> bool {
    if o == "null" {
        return true;
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let rest = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn list_ok(v: &str, extra: &[u8]) -> bool {
    !v.is_empty()
        && v.split(',').all(|item| {
            let item = item.trim();
            !item.is_empty()
                && item
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
        })
}

pub fn parse(r: &mut Reader<'_>) -> Option<Cors> {
    if !r.bool_or("enable-cors", false) {
        return None;
    }
    let mut origins = Vec::new();
    if let Some(v) = r.get("cors-allow-origin") {
        for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if o == "*" || valid_origin(o) {
                origins.push(o.to_string());
            } else {
                r.warn(
                    "InvalidAnnotationValue",
                    format!(
                        "{}: origin {o:?} is invalid and skipped",
                        r.key("cors-allow-origin")
                    ),
                );
            }
        }
    }
    let origins = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        Origins::Any
    } else {
        let alts: Vec<String> = origins
            .iter()
            .map(|o| {
                let (wild, rest) = match o.split_once("://*.") {
                    Some((scheme, rest)) => (Some(scheme), rest),
                    None => (None, o.as_str()),
                };
                match wild {
                    Some(scheme) => format!(
                        "({}://[A-Za-z0-9\\-]+\\.{})",
                        regex::escape(scheme),
                        regex::escape(rest)
                    ),
                    None => format!("({})", regex::escape(rest)),
                }
            })
            .collect();
        match regex::RegexBuilder::new(&format!("({})$", alts.join("|")))
            .case_insensitive(true)
            .build()
        {
            Ok(re) => Origins::Matching(re),
            Err(_) => Origins::Any,
        }
    };
    let mut text = |name: &str, default: &str, extra: &[u8]| -> Option<String> {
        match r.get(name) {
            None => (!default.is_empty()).then(|| default.to_string()),
            Some(v) if list_ok(v, extra) => Some(v.to_string()),
            Some(v) => {
                r.fallback(name, v, "a comma list of names", default);
                (!default.is_empty()).then(|| default.to_string())
            }
        }
    };
    let methods = text("cors-allow-methods", DEFAULT_METHODS, b"").unwrap_or_default();
    let headers = text("cors-allow-headers", DEFAULT_HEADERS, b"-_").unwrap_or_default();
    let expose = text("cors-expose-headers", "", b"-_*");
    let max_age = match r.get("cors-max-age") {
        None => DEFAULT_MAX_AGE,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                r.fallback("cors-max-age", v, "seconds", "1728000");
                DEFAULT_MAX_AGE
            }
        },
    };
    let cors = Cors {
        origins,
        methods,
        headers,
        expose,
        credentials: r.bool_or("cors-allow-credentials", true),
        max_age,
        prepared: Vec::new(),
    };
    Some(cors.prepare())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn defaults_and_star() {
        let (c, _) = reader_with(&[("enable-cors", "true")], parse);
        let c = c.unwrap();
        assert_eq!(c.allow_origin(None), Some("*"));
        assert_eq!(c.allow_origin(Some("https://x")), Some("*"));
        let got: Vec<(&str, &str)> = c
            .headers()
            .iter()
            .map(|(k, v)| (*k, v.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Allow-Methods", DEFAULT_METHODS),
                ("Access-Control-Allow-Headers", DEFAULT_HEADERS),
                ("Access-Control-Max-Age", "1728000"),
            ]
        );
        assert!(reader_with(&[("cors-allow-origin", "*")], parse)
            .0
            .is_none());
    }

    #[test]
    fn origins_echo_wildcards_null_and_skip_invalid_entries() {
        let (c, d) = reader_with(
            &[
                ("enable-cors", "true"),
                (
                    "cors-allow-origin",
                    "https://app.example.com, https://*.example.org:8443, null, not an origin",
                ),
            ],
            parse,
        );
        let c = c.unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        for ok in [
            "https://app.example.com",
            "HTTPS://APP.example.com",
            "https://a-b.example.org:8443",
            "null",
        ] {
            assert_eq!(c.allow_origin(Some(ok)), Some(ok), "{ok}");
        }
        for no in [
            "https://example.org:8443",
            "https://a.b.example.org:8443",
            "https://app.example.com.evil",
            "http://app.example.com",
        ] {
            assert_eq!(c.allow_origin(Some(no)), None, "{no}");
        }
        assert_eq!(c.allow_origin(None), None);
    }

    #[test]
    fn invalid_lists_fall_back() {
        let (c, d) = reader_with(
            &[
                ("enable-cors", "true"),
                ("cors-allow-methods", "GET; rm -rf"),
                ("cors-allow-headers", "X-One, X_Two"),
                ("cors-expose-headers", "*, X-Total"),
                ("cors-allow-credentials", "false"),
                ("cors-max-age", "soon"),
            ],
            parse,
        );
        let c = c.unwrap();
        assert_eq!(c.methods, DEFAULT_METHODS);
        assert_eq!(c.headers, "X-One, X_Two");
        assert_eq!(c.expose.as_deref(), Some("*, X-Total"));
        assert!(!c.credentials);
        assert_eq!(c.max_age, DEFAULT_MAX_AGE);
        assert_eq!(d.len(), 2, "{d:?}");
    }
}
