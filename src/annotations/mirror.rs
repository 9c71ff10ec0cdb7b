//! `mirror-target`, `mirror-host`, `mirror-request-body` (ingress-nginx `annotations/mirror`,
//! nginx's `mirror` module): every request of the Ingress is copied to another URL and the
//! copy's answer is thrown away. The target may carry nginx variables (`$request_uri` above
//! all), parsed into a typed [`Template`]; it is never templated into configuration.
//!
//! Invalid values do what ingress-nginx's do: no mirror (a warning says so), the Ingress
//! itself is served.

use super::template::{split_url, Template};
use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "mirror-target",
        scope: Scope::Ingress,
        risk: Risk::High,
        support: Support::Differs(
            "a copy never delays or fails the real request: it is sent from its own task once the request passed access checks, at most 1,024 copies in flight, a copy that would wait is dropped and counted in pingress_mirror_requests_total",
        ),
        doc: "copy every request to this URL (`http[s]://host[:port][/path]`, nginx variables such as `$request_uri` allowed), the copy's answer is discarded; a host naming a watched Service (`svc.ns[.svc[.cluster.local]]`) goes to its ready endpoints",
    },
    KeySpec {
        name: "mirror-host",
        scope: Scope::Ingress,
        risk: Risk::High,
        support: Support::Supported,
        doc: "the Host header of the copies (default: the host of mirror-target)",
    },
    KeySpec {
        name: "mirror-request-body",
        scope: Scope::Ingress,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "`on` (default) or `off`: whether the copies carry the request body",
    },
];

/// What the mirror annotations of one Ingress say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSpec {
    /// `mirror-target` as written, parsed.
    pub target: Template,
    /// The Host header of the copies.
    pub host: Box<str>,
    /// `mirror-request-body`.
    pub body: bool,
}

/// ingress-nginx's `IsValidRegex` set for `mirror-target`/`mirror-host`: letters, digits,
/// `-._~/:` and `^$[](){}*+?|&=\`.
fn valid_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~/:^$[](){}*+?|&=\\".contains(c))
}

pub fn parse(r: &mut Reader<'_>) -> Option<MirrorSpec> {
    let body = match r.get("mirror-request-body") {
        None | Some("on") => true,
        Some("off") => false,
        Some(v) => {
            r.fallback("mirror-request-body", v, "on or off", "on");
            true
        }
    };
    let raw = r.get("mirror-target")?;
    if !valid_chars(raw) {
        r.warn(
            "InvalidAnnotationValue",
            format!(
                "{}: {raw:?} has characters ingress-nginx refuses; requests are not mirrored",
                r.key("mirror-target")
            ),
        );
        return None;
    }
    let checked = Template::parse(raw).and_then(|t| {
        // the part before the first variable must be a URL with a host
        let fixed = raw.split('$').next().unwrap_or("");
        let host = split_url(fixed)?.host.to_string();
        Ok((t, host))
    });
    let (target, url_host) = match checked {
        Ok(v) => v,
        Err(m) => {
            r.warn(
                "InvalidAnnotationValue",
                format!("{}: {m}; requests are not mirrored", r.key("mirror-target")),
            );
            return None;
        }
    };
    let host = match r.get("mirror-host") {
        Some(h) if valid_chars(h) && http::HeaderValue::from_str(h).is_ok() => h.into(),
        Some(h) => {
            r.fallback("mirror-host", h, "a host name", &url_host);
            url_host.into()
        }
        None => url_host.into(),
    };
    Some(MirrorSpec { target, host, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn target_host_and_body() {
        let (m, d) = reader_with(
            &[("mirror-target", "https://test.env.com/$request_uri")],
            parse,
        );
        let m = m.unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(&*m.host, "test.env.com");
        assert!(m.body);
        assert!(m.target.literal().is_none());

        let (m, _) = reader_with(
            &[
                ("mirror-target", "http://mirror.ns.svc:8080/copy"),
                ("mirror-host", "copies.example.com"),
                ("mirror-request-body", "off"),
            ],
            parse,
        );
        let m = m.unwrap();
        assert_eq!(&*m.host, "copies.example.com");
        assert!(!m.body);
        assert_eq!(m.target.literal(), Some("http://mirror.ns.svc:8080/copy"));
    }

    #[test]
    fn invalid_values() {
        // nothing set: no mirror, no warning
        let (m, d) = reader_with(&[], parse);
        assert!(m.is_none() && d.is_empty());
        // characters ingress-nginx refuses (a quote: CVE-2025-1098's injection)
        for bad in [
            "http://a\";evil",
            "http://a/%2F",
            "ftp://a/",
            "/relative",
            "http://a/$nope",
        ] {
            let (m, d) = reader_with(&[("mirror-target", bad)], parse);
            assert!(m.is_none(), "{bad}");
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
        }
        // a bad mirror-request-body falls back to on, a bad mirror-host to the target's host
        let (m, d) = reader_with(
            &[
                ("mirror-target", "http://m.example.com"),
                ("mirror-request-body", "yes"),
                ("mirror-host", "a b"),
            ],
            parse,
        );
        let m = m.unwrap();
        assert!(m.body);
        assert_eq!(&*m.host, "m.example.com");
        assert_eq!(d.len(), 2, "{d:?}");
    }
}
