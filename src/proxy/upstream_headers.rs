//! Rewrites of an upstream response's headers (`proxy-redirect-from`/`-to`,
//! `proxy-cookie-domain`, `proxy-cookie-path`), as nginx's `proxy_redirect`,
//! `proxy_cookie_domain` and `proxy_cookie_path` with literal values: only responses from
//! the upstream are touched, never pingress's own redirects or error pages.

use http::header::{LOCATION, SET_COOKIE};
use http::HeaderValue;
use pingora::http::ResponseHeader;

use crate::annotations::proxy::Replace;
use crate::route::policy::UpstreamRewrite;

/// `Location` (or a `Refresh` URL): the value starting with `from` (case-sensitive, as nginx)
/// gets that prefix replaced.
pub fn redirect(value: &str, r: &Replace) -> Option<String> {
    value
        .strip_prefix(r.from.as_str())
        .map(|rest| format!("{}{rest}", r.to))
}

/// `Refresh: 5; url=...`: the URL after `url=` (case-insensitive) is rewritten as a Location.
pub fn refresh(value: &str, r: &Replace) -> Option<String> {
    let at = value.to_ascii_lowercase().find("url=")? + 4;
    let url = redirect(&value[at..], r)?;
    Some(format!("{}{url}", &value[..at]))
}

/// A `Set-Cookie` value with its `Domain` and `Path` attributes rewritten; `None` when
/// neither matched. The cookie's own `name=value` is never touched.
pub fn set_cookie(value: &str, domain: Option<&Replace>, path: Option<&Replace>) -> Option<String> {
    let mut parts: Vec<String> = value.split(';').map(str::to_string).collect();
    let mut changed = false;
    for part in parts.iter_mut().skip(1) {
        let Some(eq) = part.find('=') else { continue };
        let name = part[..eq].trim();
        let raw = &part[eq + 1..];
        let lead = raw.len() - raw.trim_start().len();
        let val = raw.trim();
        let new = if name.eq_ignore_ascii_case("domain") {
            domain.and_then(|r| cookie_domain(val, r))
        } else if name.eq_ignore_ascii_case("path") {
            path.and_then(|r| redirect(val, r))
        } else {
            None
        };
        if let Some(new) = new {
            *part = format!("{}{}{new}", &part[..eq + 1], &raw[..lead]);
            changed = true;
        }
    }
    changed.then(|| parts.join(";"))
}

/// nginx: the domain equals `from` ignoring case and a leading dot; the dot is kept.
fn cookie_domain(val: &str, r: &Replace) -> Option<String> {
    let (dot, bare) = match val.strip_prefix('.') {
        Some(b) => (".", b),
        None => ("", val),
    };
    bare.eq_ignore_ascii_case(&r.from)
        .then(|| format!("{dot}{}", r.to))
}

/// Applies `rw` to an upstream response head. A rewritten value that is not a valid header
/// value leaves the header as the upstream sent it.
pub fn apply(resp: &mut ResponseHeader, rw: &UpstreamRewrite) {
    if let Some(r) = &rw.redirect {
        let loc = resp
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| redirect(v, r))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(v) = loc {
            let _ = resp.insert_header(LOCATION, v);
        }
        let refresh = resp
            .headers
            .get("refresh")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| refresh(v, r))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(v) = refresh {
            let _ = resp.insert_header("refresh", v);
        }
    }
    if rw.cookie_domain.is_some() || rw.cookie_path.is_some() {
        let cookies: Vec<HeaderValue> = resp.headers.get_all(SET_COOKIE).iter().cloned().collect();
        if cookies.is_empty() {
            return;
        }
        let rewritten: Vec<HeaderValue> = cookies
            .iter()
            .map(|c| {
                c.to_str()
                    .ok()
                    .and_then(|s| set_cookie(s, rw.cookie_domain.as_ref(), rw.cookie_path.as_ref()))
                    .and_then(|s| HeaderValue::from_str(&s).ok())
                    .unwrap_or_else(|| c.clone())
            })
            .collect();
        if rewritten != cookies {
            let _ = resp.remove_header(&SET_COOKIE);
            for c in rewritten {
                let _ = resp.append_header(SET_COOKIE, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(from: &str, to: &str) -> Replace {
        Replace {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn location_prefix() {
        let r = rep("http://internal:8080/", "https://app.example.com/");
        assert_eq!(
            redirect("http://internal:8080/login?x=1", &r).as_deref(),
            Some("https://app.example.com/login?x=1")
        );
        // case-sensitive prefix, as nginx
        assert_eq!(redirect("HTTP://internal:8080/login", &r), None);
        assert_eq!(redirect("/relative", &r), None);
        let r = rep("/", "/app/");
        assert_eq!(redirect("/login", &r).as_deref(), Some("/app/login"));
    }

    #[test]
    fn refresh_url() {
        let r = rep("http://internal/", "/");
        assert_eq!(
            refresh("5; URL=http://internal/next", &r).as_deref(),
            Some("5; URL=/next")
        );
        assert_eq!(refresh("5", &r), None);
        assert_eq!(refresh("0;url=http://other/", &r), None);
    }

    #[test]
    fn cookies() {
        let d = rep("internal.svc", "example.com");
        let p = rep("/", "/app/");
        assert_eq!(
            set_cookie(
                "sid=1; Domain=.Internal.SVC; Path=/; HttpOnly",
                Some(&d),
                Some(&p)
            )
            .as_deref(),
            Some("sid=1; Domain=.example.com; Path=/app/; HttpOnly")
        );
        assert_eq!(
            set_cookie("sid=1; domain=internal.svc", Some(&d), None).as_deref(),
            Some("sid=1; domain=example.com")
        );
        // the cookie's own name=value is not an attribute, other domains are left alone
        assert_eq!(
            set_cookie("domain=internal.svc; Path=/x", Some(&d), None),
            None
        );
        assert_eq!(
            set_cookie("sid=1; Domain=a.internal.svc", Some(&d), None),
            None
        );
        assert_eq!(
            set_cookie("sid=1; Path=/x", None, Some(&rep("/y", "/z"))),
            None
        );
    }

    #[test]
    fn applied_to_a_response_head() {
        let rw = UpstreamRewrite {
            redirect: Some(rep("http://internal/", "https://public/")),
            cookie_domain: Some(rep("internal", "public")),
            cookie_path: None,
        };
        let mut h = ResponseHeader::build(302, None).unwrap();
        h.insert_header("Location", "http://internal/a").unwrap();
        h.append_header("Set-Cookie", "a=1; Domain=internal")
            .unwrap();
        h.append_header("Set-Cookie", "b=2; Domain=other").unwrap();
        apply(&mut h, &rw);
        assert_eq!(h.headers["location"], "https://public/a");
        let cookies: Vec<_> = h.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Domain=public", "b=2; Domain=other"]);
    }
}
