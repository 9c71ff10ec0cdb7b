//! A snippet's directives given types: the subset pingress executes (rewrite-module
//! statements, header operations, access rules, settings it maps onto typed policy fields,
//! and `location` blocks in a server snippet). Every directive outside the subset, every
//! variable outside the fixed set and every malformed argument rejects the line, and one
//! rejected line rejects the snippet: it is never applied in part.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;
use regex::Regex;

use super::syntax::{Directive, Word};
use crate::annotations::access::{parse_cidrs, IpSet};
use crate::annotations::auth::parse_nginx_time;
use crate::annotations::proxy::parse_size;
use crate::annotations::template::Template;

/// Which annotation a snippet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `configuration-snippet`: inside each location of the Ingress.
    Location,
    /// `server-snippet`: inside the host's server block.
    Server,
}

/// The largest compiled regex (bytes of the automaton), as a bound on work per request.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled snippet.
#[derive(Debug, Default)]
pub struct Program {
    /// Rewrite-module statements in order (the server rewrite phase for a server snippet).
    pub rewrite: Vec<Stmt>,
    /// Header operations and input headers of the top level.
    pub scope: Scope,
    /// `proxy_set_header`: upstream request headers (an empty value removes the header).
    pub upstream: Vec<(HeaderName, Template)>,
    /// `proxy_hide_header`.
    pub hide: Vec<HeaderName>,
    /// `proxy_pass_header` (e.g. `Server`, hidden by default).
    pub pass: Vec<HeaderName>,
    /// `allow` / `deny`, first match decides.
    pub access: Vec<AccessRule>,
    /// Directives mapped onto the route's typed settings.
    pub settings: Settings,
    /// `location` blocks in the order written: the host's (server snippet), or nested in each
    /// location of the Ingress (configuration snippet).
    pub locations: Vec<Location>,
    /// `real_ip_header` + `set_real_ip_from`: the client address of this location's requests
    /// (nginx's realip module in the preaccess phase; recursive, as ingress-nginx sets it).
    pub real_ip: Option<RealIp>,
    /// The text it was compiled from (top level only), to join it with the ConfigMap's.
    pub source: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIp {
    pub header: HeaderName,
    /// The peers whose header is believed.
    pub from: IpSet,
}

/// Settings a snippet maps onto the policy (`None`: not set by the snippet).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settings {
    pub body_limit: Option<u64>,
    pub connect_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub request_buffering: Option<bool>,
    pub upstream_http10: Option<bool>,
    pub access_log: Option<bool>,
    pub default_type: Option<Box<str>>,
    pub server_tokens: Option<bool>,
}

/// Response and input header operations of one scope (the top level or an `if` block).
#[derive(Debug, Default)]
pub struct Scope {
    /// `add_header`.
    pub add: Vec<AddHeader>,
    /// `more_set_headers` / `more_clear_headers`, in order.
    pub more: Vec<More>,
    /// `more_set_input_headers` / `more_clear_input_headers`, in order.
    pub input: Vec<Input>,
}

#[derive(Debug)]
pub struct AddHeader {
    pub name: HeaderName,
    pub value: Template,
    /// Without `always`: only on 200, 201, 204, 206, 301, 302, 303, 304, 307, 308.
    pub always: bool,
}

/// A header name, or a `prefix*` pattern (more_clear_*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePat {
    Exact(HeaderName),
    Prefix(Box<str>),
}

impl NamePat {
    pub fn matches(&self, h: &HeaderName) -> bool {
        match self {
            NamePat::Exact(n) => n == h,
            NamePat::Prefix(p) => h.as_str().starts_with(&**p),
        }
    }
}

/// One header of `more_set_headers` (value) or `more_clear_headers` (no value).
#[derive(Debug)]
pub enum HeaderOp {
    Set(HeaderName, Template),
    Clear(NamePat),
}

#[derive(Debug)]
pub struct More {
    /// `-s`: only responses with these statuses (empty: any).
    pub statuses: Vec<u16>,
    /// `-t`: only responses of these content types (empty: any).
    pub types: Vec<Box<str>>,
    pub op: HeaderOp,
}

#[derive(Debug)]
pub struct Input {
    /// `-r`: set only a header the request already has.
    pub replace_only: bool,
    /// `-t`: only requests of these content types.
    pub types: Vec<Box<str>>,
    pub op: HeaderOp,
}

#[derive(Debug)]
pub enum Stmt {
    Set(Box<str>, Template),
    If(Cond, Box<Block>),
    Return(Return),
    Rewrite(Rewrite),
    Break,
}

/// The body of an `if`: statements, and header operations that replace the enclosing
/// scope's operations of the same directive when the condition holds (nginx's inheritance).
#[derive(Debug, Default)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub scope: Scope,
}

#[derive(Debug)]
pub enum Cond {
    /// `($var)`: true unless empty or `0`.
    Var(Template),
    /// `=` / `!=`.
    Eq(Template, Template, bool),
    /// `~`, `~*`, `!~`, `!~*`.
    Match(Template, Regex, bool),
}

#[derive(Debug)]
pub struct Return {
    pub code: u16,
    /// The body text, or the `Location` of 301/302/303/307/308.
    pub text: Option<Template>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// No flag: the next statements run, then the location is searched again.
    None,
    Last,
    Break,
    Redirect,
    Permanent,
}

#[derive(Debug)]
pub struct Rewrite {
    pub re: Regex,
    pub replacement: Template,
    pub flag: Flag,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub allow: bool,
    /// `None`: `all`.
    pub from: Option<IpSet>,
}

impl AccessRule {
    pub fn matches(&self, ip: Option<IpAddr>) -> bool {
        match (&self.from, ip) {
            (None, _) => true,
            (Some(set), Some(ip)) => set.contains(ip),
            (Some(_), None) => false,
        }
    }
}

/// nginx's location modifiers.
#[derive(Debug)]
pub enum Match {
    /// `= /path`
    Exact(Box<str>),
    /// `/path`
    Prefix(Box<str>),
    /// `^~ /path`: a prefix that stops the regex search.
    PrefixNoRegex(Box<str>),
    /// `~` / `~*`.
    Regex(Regex),
}

#[derive(Debug)]
pub struct Location {
    pub matcher: Match,
    pub program: Program,
    /// The line of the `location` directive.
    pub line: usize,
}

/// What happened to one line of a snippet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineState {
    Accepted,
    /// Accepted by setting a typed value (what).
    Mapped(String),
    Rejected(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub line: usize,
    pub directive: String,
    pub state: LineState,
}

/// A snippet compiled: the program when every line was accepted, and the report per line.
#[derive(Debug)]
pub struct Compiled {
    pub program: Option<Program>,
    pub lines: Vec<Line>,
}

impl Compiled {
    /// Every rejected line with why, then how many lines were accepted and mapped: the
    /// message of the Event that refuses the snippet.
    pub fn rejection_summary(&self) -> Option<String> {
        let rejected: Vec<String> = self
            .lines
            .iter()
            .filter_map(|l| match &l.state {
                LineState::Rejected(why) => {
                    Some(format!("line {}: {}: {why}", l.line, l.directive))
                }
                _ => None,
            })
            .collect();
        if rejected.is_empty() {
            return None;
        }
        let count = |f: fn(&LineState) -> bool| self.lines.iter().filter(|l| f(&l.state)).count();
        Some(format!(
            "{} (other lines: {} accepted, {} mapped onto settings)",
            rejected.join("; "),
            count(|s| matches!(s, LineState::Accepted)),
            count(|s| matches!(s, LineState::Mapped(_)))
        ))
    }

    /// The first rejected line, as `line N: directive: why`.
    pub fn first_rejection(&self) -> Option<String> {
        self.lines.iter().find_map(|l| match &l.state {
            LineState::Rejected(why) => Some(format!("line {}: {}: {why}", l.line, l.directive)),
            _ => None,
        })
    }
}

/// Compile a snippet's text.
pub fn compile(src: &str, kind: Kind) -> Compiled {
    let dirs = match super::syntax::parse(src) {
        Ok(d) => d,
        Err(e) => {
            // a `*_by_lua_block` holds Lua, not nginx syntax: name it rather than the symptom
            let lua = src.lines().enumerate().find_map(|(i, l)| {
                let w = l.split_whitespace().next()?;
                w.contains("_by_lua").then(|| (i + 1, w.to_string()))
            });
            let line = match lua {
                Some((line, directive)) => Line {
                    line,
                    directive,
                    state: LineState::Rejected("Lua is never evaluated".into()),
                },
                None => Line {
                    line: e.line,
                    directive: "(syntax)".into(),
                    state: LineState::Rejected(e.message),
                },
            };
            return Compiled {
                program: None,
                lines: vec![line],
            };
        }
    };
    let mut user = Vec::new();
    collect_sets(&dirs, &mut user);
    let mut lw = Lower {
        user,
        lines: Vec::new(),
        in_location: false,
    };
    let mut program = lw.program(&dirs, kind == Kind::Server);
    program.source = src.into();
    let ok = !lw
        .lines
        .iter()
        .any(|l| matches!(l.state, LineState::Rejected(_)));
    lw.lines.sort_by_key(|l| l.line);
    Compiled {
        program: ok.then_some(program),
        lines: lw.lines,
    }
}

/// `first` then `then` in one scope (ingress-nginx writes the ConfigMap's `location-snippet`
/// after each location's `configuration-snippet`, and its `server-snippet` after the host's):
/// the two texts compiled as one, so variables and header lists are shared as in nginx. `None`
/// when the joined text does not compile.
pub fn join(first: &Program, then: &str, kind: Kind) -> Option<Program> {
    compile(&format!("{}\n{then}", first.source), kind).program
}

/// The names of every `set $name` (nginx variables are declared by the configuration, so a
/// use before the `set` reads an empty value, not an error).
fn collect_sets(dirs: &[Directive], out: &mut Vec<Box<str>>) {
    for d in dirs {
        if d.name == "set" {
            if let Some(n) = d.args.first().and_then(|w| w.text.strip_prefix('$')) {
                let n = n.trim_start_matches('{').trim_end_matches('}');
                if !out.iter().any(|u| &**u == n) {
                    out.push(n.into());
                }
            }
        }
        if let Some(b) = &d.block {
            collect_sets(b, out);
        }
    }
}

struct Lower {
    user: Vec<Box<str>>,
    lines: Vec<Line>,
    /// Lowering the body of a `location` block (no location may nest in it).
    in_location: bool,
}

type R<T> = Result<T, String>;

fn arity(d: &Directive, min: usize, max: usize) -> R<()> {
    let n = d.args.len();
    if n < min || n > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(format!("takes {want} arguments, got {n}"));
    }
    if d.block.is_some() && d.name != "if" && d.name != "location" {
        return Err("takes no block".into());
    }
    Ok(())
}

fn header_name(s: &str) -> R<HeaderName> {
    HeaderName::from_bytes(s.trim().as_bytes()).map_err(|_| format!("{s:?} is not a header name"))
}

fn compile_regex(pattern: &str, icase: bool) -> R<Regex> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(icase)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("regex {pattern:?}: {e}"))
}

/// Statuses nginx's `add_header` applies to without `always`.
pub const ADD_HEADER_STATUSES: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

impl Lower {
    fn template(&self, s: &str) -> R<Template> {
        Template::parse_snippet(s, &self.user)
    }

    /// A header value: a template without control characters (a CR/LF would split the head).
    fn header_value(&self, s: &str) -> R<Template> {
        if s.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "{s:?}: a header value cannot hold control characters"
            ));
        }
        self.template(s)
    }

    fn report(&mut self, d: &Directive, state: LineState) {
        self.lines.push(Line {
            line: d.line,
            directive: d.name.clone(),
            state,
        });
    }

    fn program(&mut self, dirs: &[Directive], server: bool) -> Program {
        let mut p = Program::default();
        for d in dirs {
            let r = self.top(d, &mut p, server);
            match r {
                Ok(None) => self.report(d, LineState::Accepted),
                Ok(Some(what)) => self.report(d, LineState::Mapped(what)),
                Err(why) => self.report(d, LineState::Rejected(why)),
            }
        }
        p
    }

    /// A directive at the top level of a snippet or a location. `Ok(Some(what))`: mapped.
    fn top(&mut self, d: &Directive, p: &mut Program, server: bool) -> R<Option<String>> {
        let a: Vec<&str> = d.args.iter().map(|w| w.text.as_str()).collect();
        if server
            && matches!(
                d.name.as_str(),
                "client_max_body_size"
                    | "proxy_connect_timeout"
                    | "proxy_send_timeout"
                    | "proxy_read_timeout"
                    | "proxy_request_buffering"
                    | "proxy_http_version"
                    | "proxy_buffering"
            )
        {
            // nginx inherits a server-level value only into locations that do not set it, and
            // every ingress-nginx location sets these
            arity(d, 1, 1)?;
            return Ok(Some(format!(
                "no effect at server level: every ingress-nginx location sets its own {} (use the annotation or configuration-snippet)",
                d.name
            )));
        }
        if let Some(stmt) = self.statement(d)? {
            p.rewrite.push(stmt);
            return Ok(None);
        }
        if self.scope_op(d, &mut p.scope)? {
            return Ok(None);
        }
        let s = &mut p.settings;
        match d.name.as_str() {
            "proxy_set_header" => {
                arity(d, 2, 2)?;
                p.upstream.push((header_name(a[0])?, self.template(a[1])?));
            }
            "proxy_hide_header" => {
                arity(d, 1, 1)?;
                p.hide.push(header_name(a[0])?);
            }
            "proxy_pass_header" => {
                arity(d, 1, 1)?;
                p.pass.push(header_name(a[0])?);
            }
            "allow" | "deny" => {
                arity(d, 1, 1)?;
                let from = if a[0] == "all" {
                    None
                } else if a[0].contains(',') {
                    return Err(format!("{:?} is not an address or CIDR", a[0]));
                } else {
                    Some(
                        parse_cidrs(a[0])
                            .map_err(|e| format!("{e:?} is not an address or CIDR"))?,
                    )
                };
                p.access.push(AccessRule {
                    allow: d.name == "allow",
                    from,
                });
            }
            "access_log" => {
                arity(d, 1, 1)?;
                if a[0] != "off" {
                    return Err("only `access_log off` is supported (the log format and destination are the controller's)".into());
                }
                s.access_log = Some(false);
                return Ok(Some("enable-access-log: false".into()));
            }
            "default_type" => {
                arity(d, 1, 1)?;
                http::HeaderValue::from_str(a[0])
                    .map_err(|_| format!("{:?} is not a content type", a[0]))?;
                s.default_type = Some(a[0].into());
                return Ok(Some("Content-Type of the snippet's own responses".into()));
            }
            "server_tokens" => {
                arity(d, 1, 1)?;
                s.server_tokens = Some(on_off(a[0])?);
                return Ok(Some("server-tokens for this route".into()));
            }
            "client_max_body_size" => {
                arity(d, 1, 1)?;
                s.body_limit =
                    Some(parse_size(a[0]).ok_or_else(|| format!("{:?} is not a size", a[0]))?);
                return Ok(Some(format!("proxy-body-size: {}", a[0])));
            }
            "proxy_connect_timeout" | "proxy_send_timeout" | "proxy_read_timeout" => {
                arity(d, 1, 1)?;
                let t = time(a[0])?;
                let (slot, key) = match d.name.as_str() {
                    "proxy_connect_timeout" => (&mut s.connect_timeout, "proxy-connect-timeout"),
                    "proxy_send_timeout" => (&mut s.send_timeout, "proxy-send-timeout"),
                    _ => (&mut s.read_timeout, "proxy-read-timeout"),
                };
                *slot = Some(t);
                return Ok(Some(format!("{key}: {}", a[0])));
            }
            "proxy_buffering" => {
                arity(d, 1, 1)?;
                on_off(a[0])?;
                return Ok(Some(
                    "proxy-buffering (responses always stream, as ingress-nginx's default off)"
                        .into(),
                ));
            }
            "log_not_found" | "etag" => {
                arity(d, 1, 1)?;
                on_off(a[0])?;
                let why = if d.name == "etag" {
                    "nginx adds ETags to static files only, never to proxied responses"
                } else {
                    "it only changes nginx's error log for static files"
                };
                return Ok(Some(format!("no effect: {why}")));
            }
            "proxy_request_buffering" => {
                arity(d, 1, 1)?;
                s.request_buffering = Some(on_off(a[0])?);
                return Ok(Some(format!("proxy-request-buffering: {}", a[0])));
            }
            "proxy_http_version" => {
                arity(d, 1, 1)?;
                let v = match a[0] {
                    "1.0" => true,
                    "1.1" => false,
                    v => return Err(format!("{v:?}: expected 1.0 or 1.1")),
                };
                s.upstream_http10 = Some(v);
                return Ok(Some(format!("proxy-http-version: {}", a[0])));
            }
            "real_ip_header" => {
                arity(d, 1, 1)?;
                if a[0] == "proxy_protocol" {
                    return Err("real_ip_header proxy_protocol: set use-proxy-protocol in the ConfigMap (the PROXY header is read per connection)".into());
                }
                let header = header_name(a[0])?;
                let from = p.real_ip.take().map(|r| r.from).unwrap_or_default();
                p.real_ip = Some(RealIp { header, from });
                return Ok(Some(format!(
                    "the client address of this location from {}",
                    a[0]
                )));
            }
            "set_real_ip_from" => {
                arity(d, 1, 1)?;
                if a[0].starts_with("unix:") || a[0].contains(',') {
                    return Err(format!("{:?} is not an address or CIDR", a[0]));
                }
                let one =
                    parse_cidrs(a[0]).map_err(|e| format!("{e:?} is not an address or CIDR"))?;
                let mut r = p.real_ip.take().unwrap_or(RealIp {
                    // nginx's default real_ip_header
                    header: HeaderName::from_static("x-real-ip"),
                    from: IpSet::default(),
                });
                r.from.extend(&one);
                p.real_ip = Some(r);
                return Ok(Some(format!(
                    "{} trusted for this location's client address",
                    a[0]
                )));
            }
            "real_ip_recursive" => {
                arity(d, 1, 1)?;
                on_off(a[0])?;
                return Ok(Some(
                    "recursive, as ingress-nginx's http block sets it".into(),
                ));
            }
            "location" if self.in_location => {
                return Err("locations nested deeper than one level are not supported".into())
            }
            "location" => {
                let loc = self.location(d)?;
                p.locations.push(loc);
                return Ok(Some(if server {
                    "a location of this host".into()
                } else {
                    "a location nested in each of the Ingress's locations".into()
                }));
            }
            other => return Err(unsupported(other)),
        }
        Ok(None)
    }

    /// A rewrite-module statement, or `None` when `d` is something else.
    fn statement(&mut self, d: &Directive) -> R<Option<Stmt>> {
        let a: Vec<&str> = d.args.iter().map(|w| w.text.as_str()).collect();
        Ok(Some(match d.name.as_str() {
            "set" => {
                arity(d, 2, 2)?;
                let name = a[0]
                    .strip_prefix('$')
                    .map(|n| n.trim_start_matches('{').trim_end_matches('}'))
                    .filter(|n| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })
                    .ok_or_else(|| format!("{:?} is not a variable", a[0]))?;
                if Template::parse(&format!("${name}")).is_ok()
                    || name.starts_with(|c: char| c.is_ascii_digit())
                {
                    return Err(format!("${name} is a built-in variable and cannot be set"));
                }
                Stmt::Set(name.into(), self.template(a[1])?)
            }
            "break" => {
                arity(d, 0, 0)?;
                Stmt::Break
            }
            "return" => {
                arity(d, 1, 2)?;
                Stmt::Return(self.ret(&a)?)
            }
            "rewrite" => {
                arity(d, 2, 3)?;
                let flag = match a.get(2).copied() {
                    None => Flag::None,
                    Some("last") => Flag::Last,
                    Some("break") => Flag::Break,
                    Some("redirect") => Flag::Redirect,
                    Some("permanent") => Flag::Permanent,
                    Some(f) => return Err(format!("{f:?} is not a rewrite flag")),
                };
                Stmt::Rewrite(Rewrite {
                    re: compile_regex(a[0], false)?,
                    replacement: self.template(a[1])?,
                    flag,
                })
            }
            "if" => {
                let Some(body) = &d.block else {
                    return Err("if needs a block".into());
                };
                let cond = self.cond(&d.args)?;
                let mut block = Block::default();
                for inner in body {
                    let r = self.in_if(inner, &mut block);
                    match r {
                        Ok(()) => self.report(inner, LineState::Accepted),
                        Err(why) => {
                            self.report(inner, LineState::Rejected(why));
                        }
                    }
                }
                Stmt::If(cond, Box::new(block))
            }
            _ => return Ok(None),
        }))
    }

    fn in_if(&mut self, d: &Directive, b: &mut Block) -> R<()> {
        if d.name == "if" {
            return Err("nginx does not allow an if inside an if".into());
        }
        if let Some(s) = self.statement(d)? {
            b.stmts.push(s);
            return Ok(());
        }
        if self.scope_op(d, &mut b.scope)? {
            return Ok(());
        }
        Err(match d.name.as_str() {
            "proxy_set_header" | "proxy_hide_header" | "allow" | "deny" | "location" => {
                format!(
                    "{} is not allowed inside if (nginx refuses it there)",
                    d.name
                )
            }
            other => unsupported(other),
        })
    }

    /// Header operations; `Ok(false)` when `d` is not one.
    fn scope_op(&mut self, d: &Directive, s: &mut Scope) -> R<bool> {
        match d.name.as_str() {
            "add_header" => {
                arity(d, 2, 3)?;
                let always = match d.args.get(2).map(|w| w.text.as_str()) {
                    None => false,
                    Some("always") => true,
                    Some(x) => return Err(format!("{x:?}: expected always")),
                };
                s.add.push(AddHeader {
                    name: header_name(&d.args[0].text)?,
                    value: self.header_value(&d.args[1].text)?,
                    always,
                });
            }
            "more_set_headers" | "more_clear_headers" => {
                let set = d.name == "more_set_headers";
                let (opts, heads) = options(&d.args, &["-s", "-t"])?;
                let statuses = opts
                    .iter()
                    .filter(|(o, _)| *o == "-s")
                    .flat_map(|(_, v)| v.split_whitespace())
                    .map(|c| {
                        c.parse::<u16>()
                            .ok()
                            .filter(|c| (100..=999).contains(c))
                            .ok_or_else(|| format!("{c:?} is not a status"))
                    })
                    .collect::<R<Vec<u16>>>()?;
                let types = types(&opts);
                for h in heads {
                    let op = self.header_op(h, set)?;
                    s.more.push(More {
                        statuses: statuses.clone(),
                        types: types.clone(),
                        op,
                    });
                }
            }
            "more_set_input_headers" | "more_clear_input_headers" => {
                let set = d.name == "more_set_input_headers";
                let (opts, heads) = options(&d.args, if set { &["-r", "-t"] } else { &["-t"] })?;
                let replace_only = opts.iter().any(|(o, _)| *o == "-r");
                let types = types(&opts);
                for h in heads {
                    let op = self.header_op(h, set)?;
                    s.input.push(Input {
                        replace_only,
                        types: types.clone(),
                        op,
                    });
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `Name: value` (set; an empty value clears) or `Name` / `Prefix*` (clear).
    fn header_op(&self, h: &str, set: bool) -> R<HeaderOp> {
        if set {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("{h:?}: expected \"Name: value\""))?;
            let value = value.trim();
            if value.is_empty() {
                return Ok(HeaderOp::Clear(NamePat::Exact(header_name(name)?)));
            }
            return Ok(HeaderOp::Set(header_name(name)?, self.header_value(value)?));
        }
        let name = h.split(':').next().unwrap_or(h).trim();
        Ok(HeaderOp::Clear(match name.strip_suffix('*') {
            Some(p) => {
                if !p.is_empty() {
                    header_name(p.trim_end_matches('-'))?;
                }
                NamePat::Prefix(p.to_ascii_lowercase().into())
            }
            None => NamePat::Exact(header_name(name)?),
        }))
    }

    fn ret(&self, a: &[&str]) -> R<Return> {
        if a.len() == 1 {
            if let Ok(code) = a[0].parse::<u16>() {
                return Ok(Return {
                    code: status(code)?,
                    text: None,
                });
            }
            let url = a[0];
            if url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("$scheme")
            {
                return Ok(Return {
                    code: 302,
                    text: Some(self.template(url)?),
                });
            }
            return Err(format!("{url:?} is neither a status nor an http(s) URL"));
        }
        let code = a[0]
            .parse::<u16>()
            .map_err(|_| format!("{:?} is not a status", a[0]))?;
        Ok(Return {
            code: status(code)?,
            text: Some(self.template(a[1])?),
        })
    }

    fn cond(&self, args: &[Word]) -> R<Cond> {
        let mut a: Vec<String> = args.iter().map(|w| w.text.clone()).collect();
        // nginx strips the parentheses from the first and last words
        match a.first_mut() {
            Some(f) if f == "(" => {
                a.remove(0);
            }
            Some(f) if f.starts_with('(') => {
                f.remove(0);
            }
            _ => return Err("the condition must be in parentheses".into()),
        }
        match a.last_mut() {
            Some(l) if l == ")" => {
                a.pop();
            }
            Some(l) if l.ends_with(')') => {
                l.pop();
            }
            _ => return Err("the condition must be in parentheses".into()),
        }
        match a.as_slice() {
            [v] if v.starts_with('$') => Ok(Cond::Var(self.template(v)?)),
            [l, op, r] if l.starts_with('$') => {
                let left = self.template(l)?;
                match op.as_str() {
                    "=" | "!=" => Ok(Cond::Eq(left, self.template(r)?, op == "!=")),
                    "~" | "~*" | "!~" | "!~*" => {
                        if r.contains("${")
                            || r.as_bytes()
                                .windows(2)
                                .any(|w| w[0] == b'$' && w[1].is_ascii_alphanumeric())
                        {
                            return Err(format!("regex {r:?} holds a variable (not supported)"));
                        }
                        Ok(Cond::Match(
                            left,
                            compile_regex(r, op.ends_with('*'))?,
                            op.starts_with('!'),
                        ))
                    }
                    other => Err(format!(
                        "{other:?} is not a supported operator (=, !=, ~, ~*, !~, !~*)"
                    )),
                }
            }
            [op, _] if op.starts_with('-') || op.starts_with("!-") => Err(format!(
                "file test {op} is not supported (no files are served)"
            )),
            _ => Err(format!("condition {:?} is not supported", a.join(" "))),
        }
    }

    fn location(&mut self, d: &Directive) -> R<Location> {
        let Some(body) = &d.block else {
            return Err("location needs a block".into());
        };
        let a: Vec<&str> = d.args.iter().map(|w| w.text.as_str()).collect();
        let matcher = match a.as_slice() {
            ["=", p] => Match::Exact((*p).into()),
            ["^~", p] => Match::PrefixNoRegex((*p).into()),
            ["~", r] => Match::Regex(compile_regex(r, false)?),
            ["~*", r] => Match::Regex(compile_regex(r, true)?),
            [p] if p.starts_with('/') => Match::Prefix((*p).into()),
            [p] if p.starts_with('@') => return Err("named locations are not supported".into()),
            _ => return Err(format!("location {:?} is not supported", a.join(" "))),
        };
        if let Match::Exact(p) | Match::Prefix(p) | Match::PrefixNoRegex(p) = &matcher {
            if !p.starts_with('/') {
                return Err(format!("location path {p:?} must start with /"));
            }
        }
        let mut p = Program::default();
        self.in_location = true;
        for inner in body {
            let r = self.top(inner, &mut p, false);
            match r {
                Ok(None) => self.report(inner, LineState::Accepted),
                Ok(Some(what)) => self.report(inner, LineState::Mapped(what)),
                Err(why) => self.report(inner, LineState::Rejected(why)),
            }
        }
        self.in_location = false;
        Ok(Location {
            matcher,
            program: p,
            line: d.line,
        })
    }
}

fn unsupported(name: &str) -> String {
    match name {
        "proxy_pass" | "grpc_pass" | "fastcgi_pass" | "uwsgi_pass" => {
            "sending to another upstream from a snippet is not supported (use a backend in the Ingress)".into()
        }
        n if n.contains("lua") => "Lua is never evaluated".into(),
        "auth_basic" | "auth_basic_user_file" | "auth_request" => {
            "use the auth-type/auth-secret or auth-url annotations".into()
        }
        "include" | "root" | "alias" | "try_files" | "load_module" => "no files are read or served".into(),
        n => format!("{n} is not in the supported snippet subset"),
    }
}

fn on_off(v: &str) -> R<bool> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        v => Err(format!("{v:?}: expected on or off")),
    }
}

/// nginx time: a bare number is seconds.
fn time(v: &str) -> R<Duration> {
    if let Ok(n) = v.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    parse_nginx_time(v).ok_or_else(|| format!("{v:?} is not a time"))
}

fn status(code: u16) -> R<u16> {
    if (100..=599).contains(&code) || code == 444 {
        Ok(code)
    } else {
        Err(format!("{code} is not a status pingress can answer"))
    }
}

/// headers-more options as (option, value) and the header arguments.
type Options<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);

/// headers-more options (`-s 'a b'`, `-t type`, `-r`) before the header arguments.
fn options<'a>(args: &'a [Word], allowed: &[&str]) -> R<Options<'a>> {
    let mut opts = Vec::new();
    let mut heads = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let w = args[i].text.as_str();
        if !args[i].quoted && w.starts_with('-') {
            if !allowed.contains(&w) {
                return Err(format!("option {w} is not supported"));
            }
            if w == "-r" {
                opts.push((w, ""));
                i += 1;
                continue;
            }
            let v = args
                .get(i + 1)
                .ok_or_else(|| format!("option {w} needs a value"))?;
            opts.push((w, v.text.as_str()));
            i += 2;
            continue;
        }
        heads.push(w);
        i += 1;
    }
    if heads.is_empty() {
        return Err("no header given".into());
    }
    Ok((opts, heads))
}

fn types(opts: &[(&str, &str)]) -> Vec<Box<str>> {
    opts.iter()
        .filter(|(o, _)| *o == "-t")
        .flat_map(|(_, v)| v.split_whitespace())
        .map(|t| t.to_ascii_lowercase().into())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str, kind: Kind) -> (Program, Vec<Line>) {
        let c = compile(src, kind);
        let why = c.first_rejection();
        (
            c.program.unwrap_or_else(|| panic!("{src}: {why:?}")),
            c.lines,
        )
    }

    fn rejected(src: &str, kind: Kind) -> String {
        let c = compile(src, kind);
        assert!(c.program.is_none(), "{src} should be rejected");
        c.first_rejection().unwrap()
    }

    #[test]
    fn header_directives() {
        let (p, lines) = ok(
            "more_set_headers -s '404 500' -t text/html \"X-A: $host\" 'X-B:';\nmore_clear_headers Server 'X-Hidden-*';\nadd_header X-Frame-Options DENY always;\nmore_set_input_headers -r 'X-In: 1';\nmore_clear_input_headers Cookie;",
            Kind::Location,
        );
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l.state == LineState::Accepted));
        assert_eq!(p.scope.more.len(), 4);
        assert_eq!(p.scope.more[0].statuses, [404, 500]);
        assert_eq!(&*p.scope.more[0].types[0], "text/html");
        assert!(matches!(&p.scope.more[1].op, HeaderOp::Clear(NamePat::Exact(n)) if n == "x-b"));
        assert!(
            matches!(&p.scope.more[3].op, HeaderOp::Clear(NamePat::Prefix(x)) if &**x == "x-hidden-")
        );
        assert!(p.scope.add[0].always);
        assert!(p.scope.input[0].replace_only);
        assert_eq!(p.scope.input.len(), 2);
    }

    #[test]
    fn statements_and_conditions() {
        let (p, _) = ok(
            "set $target $arg_t;\nif ($http_user_agent ~* \"(bot|crawler)\") { return 403; }\nif ($target = '') { set $target default; }\nif ($cookie_beta) { rewrite ^/(.*)$ /beta/$1 break; }\nrewrite ^/old/(.*)$ https://$host/new/$1 permanent;\nreturn 301 /moved;",
            Kind::Location,
        );
        assert_eq!(p.rewrite.len(), 6);
        assert!(
            matches!(&p.rewrite[1], Stmt::If(Cond::Match(_, re, false), _) if re.is_match("GoogleBot"))
        );
        assert!(
            matches!(&p.rewrite[2], Stmt::If(Cond::Eq(_, r, false), _) if r.literal() == Some(""))
        );
        assert!(matches!(
            &p.rewrite[4],
            Stmt::Rewrite(Rewrite {
                flag: Flag::Permanent,
                ..
            })
        ));
        assert!(matches!(
            &p.rewrite[5],
            Stmt::Return(Return {
                code: 301,
                text: Some(_)
            })
        ));
    }

    #[test]
    fn mapped_settings_are_reported() {
        let (p, lines) = ok(
            "client_max_body_size 20m;\nproxy_read_timeout 300;\nproxy_send_timeout 2m;\naccess_log off;\nserver_tokens off;\nproxy_buffering off;",
            Kind::Location,
        );
        assert_eq!(p.settings.body_limit, Some(20 << 20));
        assert_eq!(p.settings.read_timeout, Some(Duration::from_secs(300)));
        assert_eq!(p.settings.send_timeout, Some(Duration::from_secs(120)));
        assert_eq!(p.settings.access_log, Some(false));
        assert_eq!(p.settings.server_tokens, Some(false));
        assert!(lines
            .iter()
            .all(|l| matches!(l.state, LineState::Mapped(_))));
    }

    #[test]
    fn one_bad_line_rejects_the_whole_snippet_and_names_it() {
        let why = rejected(
            "add_header X 1;\nproxy_pass http://evil;\nadd_header Y 2;",
            Kind::Location,
        );
        assert!(why.starts_with("line 2: proxy_pass:"), "{why}");
        assert!(rejected("add_header X $upstream_addr;", Kind::Location).contains("$upstream_addr"));
        assert!(rejected("access_by_lua_block { ngx.exit(403) }", Kind::Location).contains("Lua"));
        assert!(rejected("if (-f $uri) { return 404; }", Kind::Location).contains("file test"));
        assert!(rejected("location /a { location /b { } }", Kind::Location).contains("nested"));
        assert!(
            rejected("if ($arg_a) { proxy_set_header X 1; }", Kind::Location).contains("inside if")
        );
        assert!(rejected("set $host x;", Kind::Location).contains("built-in"));
        assert!(rejected("return 1000;", Kind::Location).contains("status"));
        assert!(rejected("rewrite ( /x;", Kind::Location).contains("regex"));
        assert!(rejected("add_header \"X\r\nY\" 1;", Kind::Location).contains("header name"));
    }

    #[test]
    fn injection_is_a_value() {
        // `}` in quotes is text; a `$` outside the variable set is refused, not interpreted
        let (p, _) = ok(
            "more_set_headers \"X: a; } location / { return 200; \";",
            Kind::Location,
        );
        assert!(
            matches!(&p.scope.more[0].op, HeaderOp::Set(_, v) if v.literal() == Some("a; } location / { return 200;"))
        );
        assert!(
            rejected("more_set_headers \"X: ${document_root}\";", Kind::Location)
                .contains("document_root")
        );
    }

    #[test]
    fn join_shares_variables_and_lists() {
        let (own, _) = ok("set $v 1;\nadd_header X-A 1;", Kind::Location);
        let p = join(&own, "add_header X-B $v;", Kind::Location).unwrap();
        assert_eq!(p.scope.add.len(), 2);
        assert_eq!(p.rewrite.len(), 1);
        // alone, the ConfigMap's text does not know $v
        assert!(compile("add_header X-B $v;", Kind::Location)
            .program
            .is_none());
    }

    #[test]
    fn server_snippet_locations() {
        let (p, lines) = ok(
            "location = /robots.txt { return 200 \"User-agent: *\\nDisallow: /\"; }\nlocation ~* ^/admin { deny all; }\nlocation ^~ /static/ { add_header X 1; return 404; }\nlocation /metrics { allow 10.0.0.0/8; deny all; }",
            Kind::Server,
        );
        assert_eq!(p.locations.len(), 4);
        assert!(matches!(p.locations[0].matcher, Match::Exact(_)));
        assert!(matches!(&p.locations[1].matcher, Match::Regex(r) if r.is_match("/ADMIN/x")));
        assert!(matches!(p.locations[2].matcher, Match::PrefixNoRegex(_)));
        assert_eq!(p.locations[3].program.access.len(), 2);
        assert!(lines.len() >= 8);
        assert!(rejected("location /a { location /b { } }", Kind::Server).contains("nested"));
    }
}
