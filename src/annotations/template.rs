//! Strings with nginx variables (`auth-url`, `auth-signin`, `auth-request-redirect`, ...)
//! parsed into a [`Template`] over a fixed set of variables ([`Var`]) and expanded against a
//! request view. Nothing is ever evaluated as a language: an unknown variable is an error.

use http::HeaderName;

/// An nginx variable pingress can expand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$host`: the request host without port, lower-case.
    Host,
    /// `$http_host`, `$best_http_host`: the Host header as sent.
    HttpHost,
    /// `$scheme`, `$pass_access_scheme`.
    Scheme,
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$escaped_request_uri`: `$request_uri` escaped as a URL component.
    EscapedRequestUri,
    /// `$uri`: the path without the query.
    Uri,
    /// `$args`, `$query_string`.
    Args,
    /// `$request_method`.
    RequestMethod,
    /// `$remote_addr`.
    RemoteAddr,
    /// `$remote_user`: the user name of a `Basic` Authorization header.
    RemoteUser,
    /// `$server_port`.
    ServerPort,
    /// `$http_<name>`: a request header.
    Header(HeaderName),
    /// `$arg_<name>`: a query argument.
    Arg(Box<str>),
    /// `$cookie_<name>`: a cookie.
    Cookie(Box<str>),
    /// `$1`..`$9` (snippets): a capture of the last regex that matched.
    Capture(u8),
    /// A snippet's own variable (`set $name value`).
    User(Box<str>),
    /// `$server_name`: the host of the server block (the Ingress rule's host).
    ServerName,
    /// `$req_id` / `$request_id` (snippets): the request's X-Request-ID, or the generated id.
    RequestId,
    /// ingress-nginx's per-location `$namespace`, `$ingress_name`, `$location_path`,
    /// `$service_name`, `$service_port`.
    Namespace,
    IngressName,
    LocationPath,
    ServiceName,
    ServicePort,
    /// `$proxy_host` / `$proxy_upstream_name`: the location's upstream name (`ns-svc-port`).
    ProxyHost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(Box<str>),
    Var(Var),
}

/// A string with nginx variables, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template is expanded against.
pub struct RequestView<'a> {
    pub scheme: &'a str,
    /// Host header as sent (port included).
    pub http_host: &'a str,
    /// Path and query as sent.
    pub request_uri: &'a str,
    pub method: &'a str,
    pub remote_addr: &'a str,
    pub server_port: u16,
    pub headers: &'a http::HeaderMap,
    /// A snippet's state: the current URI, captures and user variables.
    pub locals: Option<&'a Locals>,
}

/// What a snippet's variables read while it runs.
#[derive(Debug, Clone, Default)]
pub struct Locals {
    /// `$uri`: the current (possibly rewritten) path.
    pub uri: String,
    /// `$args`: the current query.
    pub args: String,
    /// `$1`..`$9` of the last regex that matched (index 0 is `$0`).
    pub captures: Vec<String>,
    /// `set $name value` results.
    pub user: Vec<(Box<str>, String)>,
    /// `$server_name`.
    pub server_name: Box<str>,
    /// `$req_id`: X-Request-ID, else the generated id (empty with `generate-request-id: false`).
    pub request_id: String,
    /// The location's Ingress and path (`$namespace`, `$ingress_name`, `$location_path`).
    pub namespace: Box<str>,
    pub ingress_name: Box<str>,
    pub location_path: Box<str>,
    pub service_name: Box<str>,
    pub service_port: Box<str>,
    pub upstream_name: Box<str>,
}

impl Locals {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.user
            .iter()
            .rev()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Template {
    /// Parse `$name` and `${name}` references; `$` followed by anything else is an error, as
    /// is a variable outside the supported set.
    pub fn parse(s: &str) -> Result<Template, String> {
        Self::parse_with(s, None)
    }

    /// A snippet's value: also `$1`..`$9`, `$server_name`, and the user variables `user` names.
    pub fn parse_snippet(s: &str, user: &[Box<str>]) -> Result<Template, String> {
        Self::parse_with(s, Some(user))
    }

    fn parse_with(s: &str, snippet: Option<&[Box<str>]>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, tail) = if let Some(inner) = after.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
                (&inner[..end], &inner[end + 1..])
            } else if after.starts_with(|c: char| c.is_ascii_digit()) {
                // nginx: `$1` is one digit, whatever follows
                (&after[..1], &after[1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if name.is_empty() {
                return Err(format!("a lone $ in {s:?}"));
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit).into()));
            }
            parts.push(Part::Var(var(name, snippet)?));
            rest = tail;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into()));
        }
        Ok(Template { parts })
    }

    /// A template without variables.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    pub fn expand(&self, r: &RequestView<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => expand_var(v, r, &mut out),
            }
        }
        out
    }
}

fn var(name: &str, snippet: Option<&[Box<str>]>) -> Result<Var, String> {
    if let Some(user) = snippet {
        if let Some(d) = name.parse::<u8>().ok().filter(|d| (1..=9).contains(d)) {
            return Ok(Var::Capture(d));
        }
        match name {
            "server_name" => return Ok(Var::ServerName),
            "req_id" | "request_id" => return Ok(Var::RequestId),
            "namespace" => return Ok(Var::Namespace),
            "ingress_name" => return Ok(Var::IngressName),
            "location_path" => return Ok(Var::LocationPath),
            "service_name" => return Ok(Var::ServiceName),
            "service_port" => return Ok(Var::ServicePort),
            "proxy_host" | "proxy_upstream_name" => return Ok(Var::ProxyHost),
            _ => {}
        }
        if user.iter().any(|u| &**u == name) {
            return Ok(Var::User(name.into()));
        }
    }
    Ok(match name {
        "host" => Var::Host,
        "http_host" | "best_http_host" => Var::HttpHost,
        "scheme" | "pass_access_scheme" => Var::Scheme,
        "request_uri" => Var::RequestUri,
        "escaped_request_uri" => Var::EscapedRequestUri,
        "uri" | "document_uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "request_method" => Var::RequestMethod,
        // for a hash key the text form identifies the client as well as the binary one
        "remote_addr" | "binary_remote_addr" => Var::RemoteAddr,
        "remote_user" => Var::RemoteUser,
        "server_port" | "pass_server_port" => Var::ServerPort,
        _ => {
            if let Some(h) = name.strip_prefix("http_") {
                let h = h.replace('_', "-").to_ascii_lowercase();
                Var::Header(
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| format!("${name} is not a header variable"))?,
                )
            } else if let Some(a) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                Var::Arg(a.into())
            } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                Var::Cookie(c.into())
            } else {
                return Err(format!("${name} is not a variable pingress supports"));
            }
        }
    })
}

fn expand_var(v: &Var, r: &RequestView<'_>, out: &mut String) {
    let (path, query) = match (r.locals, r.request_uri.split_once('?')) {
        (Some(l), _) => (l.uri.as_str(), l.args.as_str()),
        (None, Some((p, q))) => (p, q),
        (None, None) => (r.request_uri, ""),
    };
    match v {
        Var::Host => {
            let h = strip_port(r.http_host);
            out.push_str(&h.to_ascii_lowercase());
        }
        Var::HttpHost => out.push_str(r.http_host),
        Var::Scheme => out.push_str(r.scheme),
        Var::RequestUri => out.push_str(r.request_uri),
        Var::EscapedRequestUri => escape_component(r.request_uri, out),
        Var::Uri => out.push_str(path),
        Var::Args => out.push_str(query),
        Var::RequestMethod => out.push_str(r.method),
        Var::RemoteAddr => out.push_str(r.remote_addr),
        Var::RemoteUser => {
            if let Some(u) = remote_user(r.headers) {
                out.push_str(&u);
            }
        }
        Var::ServerPort => out.push_str(&r.server_port.to_string()),
        Var::Header(h) => {
            let mut first = true;
            for v in r.headers.get_all(h) {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                out.push_str(v.to_str().unwrap_or(""));
            }
        }
        Var::Arg(name) => {
            if let Some(v) = query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&**name)?.strip_prefix('='))
            {
                out.push_str(v);
            }
        }
        Var::Cookie(name) => {
            if let Some(v) = cookie(r.headers, name) {
                out.push_str(v);
            }
        }
        Var::Capture(d) => {
            if let Some(c) = r.locals.and_then(|l| l.captures.get(usize::from(*d))) {
                out.push_str(c);
            }
        }
        Var::User(name) => {
            if let Some(v) = r.locals.and_then(|l| l.get(name)) {
                out.push_str(v);
            }
        }
        Var::RequestId => out.push_str(r.locals.map_or("", |l| l.request_id.as_str())),
        Var::Namespace => out.push_str(r.locals.map_or("", |l| &*l.namespace)),
        Var::IngressName => out.push_str(r.locals.map_or("", |l| &*l.ingress_name)),
        Var::LocationPath => out.push_str(r.locals.map_or("", |l| &*l.location_path)),
        Var::ServiceName => out.push_str(r.locals.map_or("", |l| &*l.service_name)),
        Var::ServicePort => out.push_str(r.locals.map_or("", |l| &*l.service_port)),
        Var::ProxyHost => out.push_str(r.locals.map_or("", |l| &*l.upstream_name)),
        Var::ServerName => match r.locals {
            Some(l) => out.push_str(&l.server_name),
            None => out.push_str(&strip_port(r.http_host).to_ascii_lowercase()),
        },
    }
}

/// nginx's `$cookie_<name>`: the first cookie of that name in the Cookie headers.
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get_all(http::header::COOKIE).iter().find_map(|v| {
        v.to_str()
            .ok()?
            .split(';')
            .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
    })
}

/// nginx's `$remote_user`: the user of `Authorization: Basic <base64(user:password)>`.
pub fn remote_user(headers: &http::HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let user = raw.split(|b| *b == b':').next()?;
    String::from_utf8(user.to_vec()).ok()
}

/// The host part of a `host[:port]` (IPv6 literals in brackets kept whole).
pub fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map_or(h, |i| &h[..=i]);
    }
    h.rsplit_once(':').map_or(h, |(host, _)| host)
}

/// An `http[s]://host[:port][/path][?query]` URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub tls: bool,
    /// Host without port (IPv6 literal in brackets).
    pub host: &'a str,
    pub port: u16,
    /// Path and query, `/` at least.
    pub path_and_query: &'a str,
}

/// Split an absolute http(s) URL; `Err` says what is wrong.
pub fn split_url(s: &str) -> Result<UrlParts<'_>, String> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("{s:?} is not an http:// or https:// URL"));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = strip_port(authority);
    if host.is_empty() || host.contains(['@', ' ']) {
        return Err(format!("{s:?} has no valid host"));
    }
    let port = match authority[host.len()..].strip_prefix(':') {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?} has an invalid port"))?,
        None if tls => 443,
        None => 80,
    };
    let path_and_query = if tail.is_empty() { "/" } else { tail };
    Ok(UrlParts {
        tls,
        host,
        port,
        path_and_query,
    })
}

/// `set_escape_uri` (ingress-nginx's `$escaped_request_uri`): every byte except ASCII
/// letters, digits and `-._~` as `%XX`.
pub fn escape_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// ingress-nginx's `buildAuthSignURL`: the sign-in URL with
/// `<param>=$pass_access_scheme://$http_host$escaped_request_uri` appended (`?` or `&`), unless
/// the URL already has that parameter.
pub fn signin_location(signin: &str, param: &str, r: &RequestView<'_>) -> String {
    let query = signin.split_once('?').map(|(_, q)| q).unwrap_or("");
    // Go's `url.Query()`: pairs with a key; `Get(param) != ""` means a non-empty value
    let mut pairs = query.split('&').filter(|kv| !kv.is_empty());
    let no_params = pairs.clone().next().is_none();
    let has = pairs.any(|kv| {
        kv.split_once('=')
            .is_some_and(|(k, v)| k == param && !v.is_empty())
    });
    if has {
        return signin.to_string();
    }
    let mut out = String::with_capacity(signin.len() + param.len() + 64);
    out.push_str(signin);
    out.push(if no_params { '?' } else { '&' });
    out.push_str(param);
    out.push('=');
    out.push_str(r.scheme);
    out.push_str("://");
    out.push_str(r.http_host);
    escape_component(r.request_uri, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(headers: &'a http::HeaderMap) -> RequestView<'a> {
        RequestView {
            scheme: "https",
            http_host: "App.example.com:8443",
            request_uri: "/a b/c?x=1&rd=2",
            method: "POST",
            remote_addr: "10.0.0.9",
            server_port: 443,
            headers,
            locals: None,
        }
    }

    #[test]
    fn templates_parse_known_variables_and_refuse_others() {
        let t = Template::parse("https://$host/oauth2/auth?u=${uri}&m=$request_method").unwrap();
        let h = http::HeaderMap::new();
        assert_eq!(
            t.expand(&view(&h)),
            "https://app.example.com/oauth2/auth?u=/a b/c&m=POST"
        );
        assert_eq!(
            Template::parse("http://auth.ns.svc/x").unwrap().literal(),
            Some("http://auth.ns.svc/x")
        );
        assert!(Template::parse("http://x/$foo").is_err());
        assert!(Template::parse("http://x/${host").is_err());
        assert!(Template::parse("http://x/$").is_err());
        assert!(Template::parse("http://x/$http_").is_err());
    }

    #[test]
    fn header_arg_and_cookie_variables() {
        let mut h = http::HeaderMap::new();
        h.insert("x-org", "acme".parse().unwrap());
        h.insert("cookie", "a=1; session=s3cr; b=2".parse().unwrap());
        let t = Template::parse("$http_x_org|$arg_x|$arg_rd|$cookie_session|$arg_none").unwrap();
        assert_eq!(t.expand(&view(&h)), "acme|1|2|s3cr|");
        // $remote_user: the Basic user (YWxpY2U6cHc= is alice:pw), empty otherwise
        let t = Template::parse("[$remote_user]").unwrap();
        assert_eq!(t.expand(&view(&h)), "[]");
        h.insert("authorization", "Basic YWxpY2U6cHc=".parse().unwrap());
        assert_eq!(t.expand(&view(&h)), "[alice]");
    }

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        let u = split_url("https://auth.example.com/oauth2/auth?x=1").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.path_and_query),
            (true, "auth.example.com", 443, "/oauth2/auth?x=1")
        );
        let u = split_url("http://oauth2-proxy.auth.svc.cluster.local:4180").unwrap();
        assert_eq!(
            (u.host, u.port, u.path_and_query),
            ("oauth2-proxy.auth.svc.cluster.local", 4180, "/")
        );
        let u = split_url("http://[::1]:8080/a").unwrap();
        assert_eq!((u.host, u.port), ("[::1]", 8080));
        for bad in [
            "ftp://x/",
            "//x/",
            "http:///x",
            "http://x:0/",
            "http://x:99999/",
            "x",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escaped_request_uri_is_a_url_component() {
        let mut s = String::new();
        escape_component("/a b/c?x=1&y=~._-", &mut s);
        assert_eq!(s, "%2Fa%20b%2Fc%3Fx%3D1%26y%3D~._-");
    }

    #[test]
    fn signin_location_appends_rd_as_ingress_nginx() {
        let h = http::HeaderMap::new();
        let r = view(&h);
        assert_eq!(
            signin_location("https://auth.example.com/oauth2/start", "rd", &r),
            "https://auth.example.com/oauth2/start?rd=https://App.example.com:8443%2Fa%20b%2Fc%3Fx%3D1%26rd%3D2"
        );
        assert_eq!(
            signin_location("https://a/start?x=1", "redirect", &r),
            "https://a/start?x=1&redirect=https://App.example.com:8443%2Fa%20b%2Fc%3Fx%3D1%26rd%3D2"
        );
        assert_eq!(
            signin_location("https://a/start?rd=/home", "rd", &r),
            "https://a/start?rd=/home"
        );
        // an empty value does not count (Go `Query().Get`), nor does a bare `?`
        assert!(signin_location("https://a/start?rd=", "rd", &r)
            .starts_with("https://a/start?rd=&rd=https://"));
        assert!(signin_location("https://a/start?", "rd", &r)
            .starts_with("https://a/start??rd=https://"));
    }
}
