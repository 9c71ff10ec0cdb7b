//! A bounded fuzz run (proptest) of the snippet parser, compiler and interpreter: any text
//! parses or fails without panicking, in bounded work; user values (with `;`, braces, quotes,
//! `$`, CR/LF) stay values and never become syntax; and whatever compiles runs on any request
//! without panicking. Case counts are fixed so the run stays a few seconds in CI.

use pingress::annotations::snippet::program::{compile, HeaderOp, Kind};
use pingress::annotations::snippet::syntax;
use pingress::annotations::template::{Locals, RequestView};
use pingress::proxy::snippet::{effective, rewrite, Prepared};
use proptest::prelude::*;

/// Characters that matter to nginx's syntax, plus some text.
fn nginxish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(';'),
            Just('{'),
            Just('}'),
            Just('"'),
            Just('\''),
            Just('\\'),
            Just('$'),
            Just('#'),
            Just('('),
            Just(')'),
            Just('\n'),
            Just('\r'),
            Just(' '),
            Just('~'),
            Just('*'),
            Just('='),
            Just('^'),
            Just('/'),
            proptest::char::range('a', 'z'),
            proptest::char::range('0', '9'),
        ],
        0..200,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Directives of the subset (and some outside it) with random words, as snippet text.
fn directive_soup() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("more_set_headers"),
        Just("more_clear_headers"),
        Just("add_header"),
        Just("proxy_set_header"),
        Just("more_set_input_headers"),
        Just("return"),
        Just("rewrite"),
        Just("set"),
        Just("if"),
        Just("break"),
        Just("allow"),
        Just("deny"),
        Just("location"),
        Just("client_max_body_size"),
        Just("proxy_read_timeout"),
        Just("expires"),
    ];
    let word = prop_oneof![
        Just("$host".to_string()),
        Just("$uri".to_string()),
        Just("$arg_a".to_string()),
        Just("$1".to_string()),
        Just("$v".to_string()),
        Just("'X-A: $http_x'".to_string()),
        Just("^/(.*)$".to_string()),
        Just("/new/$1".to_string()),
        Just("last".to_string()),
        Just("break".to_string()),
        Just("permanent".to_string()),
        Just("301".to_string()),
        Just("200".to_string()),
        Just("\"t x\"".to_string()),
        Just("($arg_a".to_string()),
        Just("=".to_string()),
        Just("~*".to_string()),
        Just("a)".to_string()),
        Just("all".to_string()),
        Just("10.0.0.0/8".to_string()),
        Just("5s".to_string()),
        "[a-z/]{0,8}",
    ];
    let directive = (name, proptest::collection::vec(word, 0..4), any::<bool>()).prop_map(
        |(n, args, block)| {
            if block {
                format!("{n} {} {{ return 403; }}\n", args.join(" "))
            } else {
                format!("{n} {};\n", args.join(" "))
            }
        },
    );
    proptest::collection::vec(directive, 0..8).prop_map(|v| v.concat())
}

fn run_everything(src: &str, uri: &str) {
    for kind in [Kind::Location, Kind::Server] {
        let c = compile(src, kind);
        let Some(p) = c.program else { continue };
        let headers = http::HeaderMap::new();
        let view = RequestView {
            scheme: "http",
            http_host: "a.test",
            request_uri: uri,
            method: "GET",
            remote_addr: "10.0.0.1",
            server_port: 80,
            headers: &headers,
            locals: None,
        };
        let mut locals = Locals {
            uri: uri.split('?').next().unwrap_or("/").to_string(),
            args: uri.split_once('?').map_or("", |(_, q)| q).to_string(),
            server_name: "a.test".into(),
            ..Locals::default()
        };
        let o = rewrite(&p, &view, &mut locals);
        let scopes = std::iter::once(&p.scope).chain(o.matched.iter().copied());
        let prep = Prepared::new(&effective(scopes), &view, &locals);
        let mut resp = pingora::http::ResponseHeader::build(200, None).unwrap();
        prep.apply(&mut resp);
        for l in &p.locations {
            let mut locals = locals.clone();
            rewrite(&l.program, &view, &mut locals);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_parses_or_fails_cleanly(src in nginxish()) {
        let _ = syntax::parse(&src);
        run_everything(&src, "/x/y?a=1");
    }

    #[test]
    fn directive_soup_compiles_and_runs(src in directive_soup(), uri in "/[a-z/]{0,12}(\\?a=[01])?") {
        run_everything(&src, &uri);
    }

    #[test]
    fn a_quoted_value_never_becomes_syntax(v in "[ -~\r\n]{0,60}") {
        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
        let src = format!("more_set_headers \"X-V: {escaped}\";");
        let dirs = syntax::parse(&src).unwrap();
        prop_assert_eq!(dirs.len(), 1);
        prop_assert_eq!(dirs[0].args.len(), 1);
        prop_assert_eq!(&dirs[0].args[0].text, &format!("X-V: {v}"));
        let c = compile(&src, Kind::Location);
        if let Some(p) = c.program {
            // one header operation, nothing else: no statement, location or rule came out of it
            prop_assert!(p.rewrite.is_empty() && p.locations.is_empty() && p.access.is_empty());
            prop_assert_eq!(p.scope.more.len(), 1);
            let HeaderOp::Set(name, _) = &p.scope.more[0].op else {
                // an empty value clears the header
                prop_assert!(v.trim().is_empty());
                return Ok(());
            };
            prop_assert_eq!(name.as_str(), "x-v");
            // surrounding whitespace is trimmed as headers-more does; inside, CR/LF is refused
            let t = v.trim();
            prop_assert!(!t.contains('\r') && !t.contains('\n'), "CR/LF accepted in a header value");
        }
    }
}
