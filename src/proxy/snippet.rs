//! The snippet interpreter: runs a compiled [`Program`] in nginx's phases. Rewrite phase:
//! `set`, `if`, `return`, `rewrite`, `break` in order, then the input headers; header filter:
//! `more_set_headers`/`more_clear_headers` then `add_header`. Work per request is bounded: no
//! loops, regexes compiled once with a size limit (linear-time engine), at most
//! [`MAX_CYCLES`] location searches as nginx.

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::annotations::snippet::program::{
    AccessRule, Cond, Flag, HeaderOp, Input, Location, Match, More, NamePat, Program, Scope, Stmt,
    ADD_HEADER_STATUSES,
};
use crate::annotations::template::{Locals, RequestView, Template};
use crate::route::{PathKind, Route, Server};

/// nginx's limit on internal redirects / location searches ("rewrite or internal redirection
/// cycle"): the request answers 500 beyond it.
pub const MAX_CYCLES: usize = 10;

/// How the rewrite statements ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Fell through (or `break`).
    Next,
    /// `return CODE [text]`.
    Respond(u16, Option<String>),
    /// `return 30x URL`, `rewrite ... redirect|permanent`, or a rewrite to an absolute URL.
    Redirect(u16, String),
    /// `return 444`: close the connection without an answer.
    Close,
}

/// One run of a program's rewrite phase.
#[derive(Debug)]
pub struct Outcome<'p> {
    pub flow: Flow,
    /// `rewrite` changed the URI.
    pub uri_changed: bool,
    /// The location must be searched again (`last`, or a rewrite without a flag).
    pub research: bool,
    /// `break` (or a `rewrite ... break`): the rest of the rewrite-module directives of the
    /// location (its annotation redirects and rewrite-target) do not run.
    pub stopped: bool,
    /// The `if` blocks whose condition held, in order.
    pub matched: Vec<&'p Scope>,
}

fn expand(t: &Template, base: &RequestView<'_>, locals: &Locals) -> String {
    let v = RequestView {
        locals: Some(locals),
        ..*base
    };
    t.expand(&v)
}

/// Run the rewrite statements of `p` against the request; `locals` carries the URI, captures
/// and variables between runs (server snippet, then location snippets).
pub fn rewrite<'p>(p: &'p Program, base: &RequestView<'_>, locals: &mut Locals) -> Outcome<'p> {
    let mut out = Outcome {
        flow: Flow::Next,
        uri_changed: false,
        research: false,
        stopped: false,
        matched: Vec::new(),
    };
    run(&p.rewrite, base, locals, &mut out);
    out
}

/// `true`: stop the statements.
fn run<'p>(
    stmts: &'p [Stmt],
    base: &RequestView<'_>,
    locals: &mut Locals,
    out: &mut Outcome<'p>,
) -> bool {
    for s in stmts {
        match s {
            Stmt::Set(name, t) => {
                let v = expand(t, base, locals);
                match locals.user.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v,
                    None => locals.user.push((name.clone(), v)),
                }
            }
            Stmt::If(cond, block) => {
                if holds(cond, base, locals) {
                    out.matched.push(&block.scope);
                    if run(&block.stmts, base, locals, out) {
                        return true;
                    }
                }
            }
            Stmt::Return(r) => {
                let text = r.text.as_ref().map(|t| expand(t, base, locals));
                out.flow = match (r.code, text) {
                    (444, _) => Flow::Close,
                    (301 | 302 | 303 | 307 | 308, Some(url)) => Flow::Redirect(r.code, url),
                    (code, text) => Flow::Respond(code, text),
                };
                return true;
            }
            Stmt::Rewrite(rw) => {
                let Some(caps) = rw.re.captures(&locals.uri) else {
                    continue;
                };
                locals.captures = caps
                    .iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                    .collect();
                let new = expand(&rw.replacement, base, locals);
                let absolute = new.starts_with("http://") || new.starts_with("https://");
                if absolute || matches!(rw.flag, Flag::Redirect | Flag::Permanent) {
                    let code = if rw.flag == Flag::Permanent { 301 } else { 302 };
                    out.flow = Flow::Redirect(code, with_args(new, &locals.args));
                    return true;
                }
                // a new query replaces the old one, which follows it unless the replacement
                // ends with `?`
                match new.split_once('?') {
                    Some((path, q)) => {
                        let mut args = q.to_string();
                        if !locals.args.is_empty() && !new.ends_with('?') {
                            if !args.is_empty() {
                                args.push('&');
                            }
                            args.push_str(&locals.args);
                        }
                        locals.uri = path.to_string();
                        locals.args = args;
                    }
                    None => locals.uri = new,
                }
                out.uri_changed = true;
                match rw.flag {
                    Flag::Break => {
                        out.stopped = true;
                        return true;
                    }
                    Flag::Last => {
                        out.research = true;
                        return true;
                    }
                    _ => out.research = true,
                }
            }
            Stmt::Break => {
                out.stopped = true;
                return true;
            }
        }
    }
    false
}

/// A redirect target from `rewrite`: the request's arguments follow unless the replacement
/// has its own (or ends with `?`, which is dropped).
fn with_args(mut url: String, args: &str) -> String {
    if url.ends_with('?') {
        url.pop();
        return url;
    }
    if !url.contains('?') && !args.is_empty() {
        url.push('?');
        url.push_str(args);
    }
    url
}

fn holds(c: &Cond, base: &RequestView<'_>, locals: &mut Locals) -> bool {
    match c {
        Cond::Var(t) => {
            let v = expand(t, base, locals);
            !(v.is_empty() || v == "0")
        }
        Cond::Eq(l, r, neg) => (expand(l, base, locals) == expand(r, base, locals)) != *neg,
        Cond::Match(l, re, neg) => {
            let v = expand(l, base, locals);
            match re.captures(&v) {
                Some(caps) => {
                    if !neg {
                        locals.captures = caps
                            .iter()
                            .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                            .collect();
                    }
                    !neg
                }
                None => *neg,
            }
        }
    }
}

/// The operations in effect: the innermost matched scope that has operations of a kind
/// replaces the enclosing ones of that kind (nginx's inheritance of `add_header` and
/// headers-more's commands), across the server snippet, the location snippet and its `if`s.
pub struct Effective<'p> {
    pub add: &'p [crate::annotations::snippet::program::AddHeader],
    pub more: &'p [More],
    pub input: &'p [Input],
}

pub fn effective<'p>(scopes: impl IntoIterator<Item = &'p Scope>) -> Effective<'p> {
    let mut e = Effective {
        add: &[],
        more: &[],
        input: &[],
    };
    for s in scopes {
        if !s.add.is_empty() {
            e.add = &s.add;
        }
        if !s.more.is_empty() {
            e.more = &s.more;
        }
        if !s.input.is_empty() {
            e.input = &s.input;
        }
    }
    e
}

/// Apply `more_set_input_headers` / `more_clear_input_headers` to the request.
pub fn input_headers(
    ops: &[Input],
    base: &RequestView<'_>,
    locals: &Locals,
) -> Vec<(NamePat, Option<HeaderValue>, bool)> {
    let ctype = base
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut out = Vec::new();
    for op in ops {
        if !op.types.is_empty() && !type_matches(&op.types, ctype) {
            continue;
        }
        match &op.op {
            HeaderOp::Set(name, t) => {
                if let Ok(v) = HeaderValue::from_str(&expand(t, base, locals)) {
                    out.push((NamePat::Exact(name.clone()), Some(v), op.replace_only));
                }
            }
            HeaderOp::Clear(p) => out.push((p.clone(), None, false)),
        }
    }
    out
}

/// Apply computed input header changes (values expanded before the request is changed).
pub fn apply_input(req: &mut RequestHeader, changes: Vec<(NamePat, Option<HeaderValue>, bool)>) {
    for (pat, value, replace_only) in changes {
        match (pat, value) {
            (NamePat::Exact(name), Some(v)) => {
                if replace_only && !req.headers.contains_key(&name) {
                    continue;
                }
                let _ = req.insert_header(name, v);
            }
            (pat, _) => {
                for n in matching(&req.headers, &pat) {
                    req.remove_header(&n);
                }
            }
        }
    }
}

/// The header names `pat` matches (collected, so the caller can remove them).
fn matching(headers: &http::HeaderMap, pat: &NamePat) -> Vec<HeaderName> {
    headers.keys().filter(|h| pat.matches(h)).cloned().collect()
}

fn type_matches(types: &[Box<str>], ctype: &str) -> bool {
    let main = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    types.iter().any(|t| **t == main)
}

/// One `more_set_headers`/`more_clear_headers` header, expanded: the `-s` statuses, the `-t`
/// types, the name (pattern) and the value (`None` clears).
#[derive(Debug, Clone)]
pub struct PreparedMore {
    pub statuses: Vec<u16>,
    pub types: Vec<Box<str>>,
    pub name: NamePat,
    pub value: Option<HeaderValue>,
}

/// Response header operations with their values expanded at the end of the rewrite phase
/// (every variable pingress supports is a request variable, so the values are final).
#[derive(Debug, Default, Clone)]
pub struct Prepared {
    pub more: Vec<PreparedMore>,
    /// (name, value, always)
    pub add: Vec<(HeaderName, HeaderValue, bool)>,
    pub hide: Vec<HeaderName>,
    pub pass: Vec<HeaderName>,
    /// `default_type` for the snippet's own answers.
    pub default_type: Option<HeaderValue>,
}

impl Prepared {
    pub fn new(e: &Effective<'_>, base: &RequestView<'_>, locals: &Locals) -> Prepared {
        let mut p = Prepared::default();
        for m in e.more {
            let (pat, v) = match &m.op {
                HeaderOp::Set(n, t) => (
                    NamePat::Exact(n.clone()),
                    HeaderValue::from_str(&expand(t, base, locals)).ok(),
                ),
                HeaderOp::Clear(pat) => (pat.clone(), None),
            };
            p.more.push(PreparedMore {
                statuses: m.statuses.clone(),
                types: m.types.clone(),
                name: pat,
                value: v,
            });
        }
        for a in e.add {
            let v = expand(&a.value, base, locals);
            // nginx: an empty value adds nothing
            if v.is_empty() {
                continue;
            }
            if let Ok(v) = HeaderValue::from_str(&v) {
                p.add.push((a.name.clone(), v, a.always));
            }
        }
        p
    }

    pub fn is_empty(&self) -> bool {
        self.more.is_empty() && self.add.is_empty() && self.hide.is_empty()
    }

    /// The header filter: `more_*` in order, then `add_header`.
    pub fn apply(&self, resp: &mut ResponseHeader) {
        let status = resp.status.as_u16();
        // read only when a `-t` filter asks (the header map changes below)
        let ctype = if self.more.iter().any(|m| !m.types.is_empty()) {
            resp.headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        } else {
            String::new()
        };
        for m in &self.more {
            if !m.statuses.is_empty() && !m.statuses.contains(&status) {
                continue;
            }
            if !m.types.is_empty() && !type_matches(&m.types, &ctype) {
                continue;
            }
            match (&m.name, &m.value) {
                (NamePat::Exact(n), Some(v)) => {
                    let _ = resp.insert_header(n.clone(), v.clone());
                }
                (pat, _) => {
                    for n in matching(&resp.headers, pat) {
                        resp.remove_header(&n);
                    }
                }
            }
        }
        for (n, v, always) in &self.add {
            if *always || ADD_HEADER_STATUSES.contains(&status) {
                let _ = resp.append_header(n.clone(), v.clone());
            }
        }
    }
}

/// nginx's `allow`/`deny` list: the first rule matching the client decides; none: allowed.
pub fn access_allows(rules: &[AccessRule], ip: Option<std::net::IpAddr>) -> bool {
    rules.iter().find(|r| r.matches(ip)).is_none_or(|r| r.allow)
}

/// A configuration snippet's nested `location` that `uri` selects inside its Ingress location
/// (nginx's order: exact, the longest prefix when `^~`, regex in order, the longest prefix).
pub fn find_nested<'a>(p: &'a Program, uri: &str) -> Option<&'a Location> {
    if let Some(l) = p
        .locations
        .iter()
        .find(|l| matches!(&l.matcher, Match::Exact(x) if **x == *uri))
    {
        return Some(l);
    }
    let best = p
        .locations
        .iter()
        .filter(|l| match &l.matcher {
            Match::Prefix(x) | Match::PrefixNoRegex(x) => uri.starts_with(&**x),
            _ => false,
        })
        .max_by_key(|l| match &l.matcher {
            Match::Prefix(x) | Match::PrefixNoRegex(x) => x.len(),
            _ => 0,
        });
    if let Some(l) = best.filter(|l| matches!(l.matcher, Match::PrefixNoRegex(_))) {
        return Some(l);
    }
    p.locations
        .iter()
        .find(|l| matches!(&l.matcher, Match::Regex(re) if re.is_match(uri)))
        .or(best)
}

/// What a location search found: a server snippet's `location` or an Ingress route.
pub enum Found<'a> {
    Snippet(&'a Location),
    Route(&'a std::sync::Arc<Route>),
}

/// nginx's location selection over the server snippet's locations and the Ingress's:
/// exact matches first, then the longest prefix (a `^~` prefix ends the search), then regex
/// locations in order (the snippet's come first, as the server snippet precedes the Ingress's
/// locations in nginx.conf), then the longest prefix.
pub fn find<'a>(server: &'a Server, snippet: Option<&'a Program>, uri: &str) -> Found<'a> {
    let route = server.lookup(uri);
    let Some(p) = snippet.filter(|p| !p.locations.is_empty()) else {
        return Found::Route(route);
    };
    if let Some(l) = p
        .locations
        .iter()
        .find(|l| matches!(&l.matcher, Match::Exact(x) if **x == *uri))
    {
        return Found::Snippet(l);
    }
    if route.kind == PathKind::Exact && &*route.path == uri && !server.is_regex_mode() {
        return Found::Route(route);
    }
    // the Ingress's matching prefix: its path (ingress-nginx's `location /` for the default)
    let ingress_len = if server.is_regex_mode() {
        0
    } else if route.path.is_empty() {
        1
    } else {
        route.path.len()
    };
    let best = p
        .locations
        .iter()
        .filter_map(|l| match &l.matcher {
            Match::Prefix(x) | Match::PrefixNoRegex(x) if uri.starts_with(&**x) => {
                Some((x.len(), l))
            }
            _ => None,
        })
        .max_by_key(|(len, _)| *len)
        .filter(|(len, _)| *len > ingress_len);
    if let Some((_, l)) = best {
        if matches!(l.matcher, Match::PrefixNoRegex(_)) {
            return Found::Snippet(l);
        }
    }
    if let Some(l) = p
        .locations
        .iter()
        .find(|l| matches!(&l.matcher, Match::Regex(re) if re.is_match(uri)))
    {
        return Found::Snippet(l);
    }
    match best {
        Some((_, l)) if !server.is_regex_mode() || std::ptr::eq(route, server.default_route()) => {
            Found::Snippet(l)
        }
        _ => Found::Route(route),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::access::IpSet;
    use crate::annotations::snippet::program::{compile, Kind};

    fn one(ip: &str) -> IpSet {
        crate::annotations::access::parse_cidrs(ip).unwrap()
    }

    fn prog(src: &str) -> Program {
        let c = compile(src, Kind::Location);
        let why = c.first_rejection();
        c.program.unwrap_or_else(|| panic!("{why:?}"))
    }

    fn view<'a>(uri: &'a str, headers: &'a http::HeaderMap) -> RequestView<'a> {
        RequestView {
            scheme: "http",
            http_host: "app.test",
            request_uri: uri,
            method: "GET",
            remote_addr: "10.0.0.1",
            server_port: 80,
            headers,
            locals: None,
        }
    }

    fn locals(uri: &str) -> Locals {
        let (u, a) = uri.split_once('?').unwrap_or((uri, ""));
        Locals {
            uri: u.into(),
            args: a.into(),
            server_name: "app.test".into(),
            ..Locals::default()
        }
    }

    fn run_on(src: &str, uri: &str, headers: &http::HeaderMap) -> (Flow, Locals, bool, bool) {
        let p = prog(src);
        let mut l = locals(uri);
        let o = rewrite(&p, &view(uri, headers), &mut l);
        (o.flow, l, o.research, o.stopped)
    }

    #[test]
    fn return_and_if() {
        let mut h = http::HeaderMap::new();
        let src = "if ($http_x_block = yes) { return 403; }\nreturn 200 \"ok $host $arg_a\";";
        assert_eq!(
            run_on(src, "/p?a=1", &h).0,
            Flow::Respond(200, Some("ok app.test 1".into()))
        );
        h.insert("x-block", HeaderValue::from_static("yes"));
        assert_eq!(run_on(src, "/p", &h).0, Flow::Respond(403, None));
        assert_eq!(
            run_on("return 301 https://$host$request_uri;", "/a?b", &h).0,
            Flow::Redirect(301, "https://app.test/a?b".into())
        );
        assert_eq!(run_on("return 444;", "/", &h).0, Flow::Close);
    }

    #[test]
    fn rewrite_flags_and_args() {
        let h = http::HeaderMap::new();
        let (f, l, research, stopped) =
            run_on("rewrite ^/api/(.*)$ /v2/$1 break;", "/api/x?q=1", &h);
        assert_eq!(f, Flow::Next);
        assert_eq!((l.uri.as_str(), l.args.as_str()), ("/v2/x", "q=1"));
        assert!(stopped && !research);
        let (_, l, research, _) = run_on("rewrite ^/a$ /b?n=2 last;", "/a?q=1", &h);
        assert_eq!((l.uri.as_str(), l.args.as_str()), ("/b", "n=2&q=1"));
        assert!(research);
        let (_, l, _, _) = run_on("rewrite ^/a$ /b? break;", "/a?q=1", &h);
        assert_eq!(l.args, "");
        assert_eq!(
            run_on("rewrite ^/old/(.*) /new/$1 permanent;", "/old/x?q=1", &h).0,
            Flow::Redirect(301, "/new/x?q=1".into())
        );
        assert_eq!(
            run_on("rewrite ^ https://other.test$uri;", "/z", &h).0,
            Flow::Redirect(302, "https://other.test/z".into())
        );
        // no match: nothing changes
        let (f, l, research, _) = run_on("rewrite ^/nomatch /x;", "/a", &h);
        assert_eq!((f, l.uri.as_str(), research), (Flow::Next, "/a", false));
    }

    #[test]
    fn set_variables_and_captures() {
        let mut h = http::HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("v=beta; x=1"));
        let src = "set $dest stable;\nif ($cookie_v = beta) { set $dest beta; }\nif ($uri ~* ^/u/(\\d+)) { return 200 \"$dest $1\"; }";
        assert_eq!(
            run_on(src, "/U/42", &h).0,
            Flow::Respond(200, Some("beta 42".into()))
        );
        assert_eq!(
            run_on("if ($arg_x) { return 418; }", "/?x=0", &h).0,
            Flow::Next
        );
        assert_eq!(
            run_on("if ($arg_x !~ ^[a-z]+$) { return 400; }", "/?x=A1", &h).0,
            Flow::Respond(400, None)
        );
    }

    #[test]
    fn headers_filter_as_nginx() {
        let h = http::HeaderMap::new();
        let p = prog("more_set_headers 'X-A: $host' 'Server: edge';\nmore_set_headers -s 404 'X-Nf: 1';\nmore_clear_headers 'X-Powered-*';\nadd_header X-Add yes;\nadd_header X-Always 1 always;\nadd_header X-Empty $arg_none;");
        let l = locals("/");
        let prep = Prepared::new(&effective([&p.scope]), &view("/", &h), &l);
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("X-Powered-By", "php").unwrap();
        r.insert_header("Server", "backend").unwrap();
        prep.apply(&mut r);
        assert_eq!(r.headers["x-a"], "app.test");
        assert_eq!(r.headers["server"], "edge");
        assert!(r.headers.get("x-powered-by").is_none());
        assert!(r.headers.get("x-nf").is_none());
        assert_eq!(r.headers["x-add"], "yes");
        assert_eq!(r.headers["x-always"], "1");
        assert!(r.headers.get("x-empty").is_none());
        let mut r = ResponseHeader::build(404, None).unwrap();
        prep.apply(&mut r);
        assert_eq!(r.headers["x-nf"], "1");
        assert!(r.headers.get("x-add").is_none());
        assert_eq!(r.headers["x-always"], "1");
    }

    #[test]
    fn if_scope_replaces_add_headers() {
        let h = http::HeaderMap::new();
        let p = prog("add_header X-Outer 1;\nif ($arg_a) { add_header X-Inner 1; }");
        let mut l = locals("/?a=1");
        let o = rewrite(&p, &view("/?a=1", &h), &mut l);
        let e = effective(std::iter::once(&p.scope).chain(o.matched.iter().copied()));
        assert_eq!(e.add.len(), 1);
        assert_eq!(e.add[0].name, "x-inner");
    }

    #[test]
    fn input_headers_set_and_clear() {
        let mut h = http::HeaderMap::new();
        h.insert("x-old", HeaderValue::from_static("1"));
        let p = prog("more_set_input_headers 'X-New: $host';\nmore_set_input_headers -r 'X-Absent: 1';\nmore_clear_input_headers X-Old;");
        let changes = input_headers(&p.scope.input, &view("/", &h), &locals("/"));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Old", "1").unwrap();
        apply_input(&mut req, changes);
        assert_eq!(req.headers["x-new"], "app.test");
        assert!(req.headers.get("x-absent").is_none());
        assert!(req.headers.get("x-old").is_none());
    }

    #[test]
    fn access_first_match() {
        let rules = vec![
            AccessRule {
                allow: true,
                from: Some(one("10.0.0.0/8")),
            },
            AccessRule {
                allow: false,
                from: None,
            },
        ];
        assert!(access_allows(&rules, Some("10.1.2.3".parse().unwrap())));
        assert!(!access_allows(&rules, Some("192.0.2.1".parse().unwrap())));
        assert!(access_allows(&[], None));
    }
}
