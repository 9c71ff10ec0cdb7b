//! Compile fixtures: every `tests/fixtures/*.yaml` is read by the standalone loader, compiled,
//! and compared with `*.expected`: the diagnostics, a stable dump of the table, and the route
//! each probe resolves to. Fixture comments set the inputs:
//!   `# settings: watch-ingress-without-class, ingress-class=X, controller-class=Y,
//!                default-backend-service=ns/name, default-ssl-certificate=ns/name`
//!   `# now: UNIX_SECONDS` (the snapshot time for certificate validity; default 2030-01-01)
//!   `# probe: HOST PATH` (HOST `-` = no Host header)
//! Regenerate after an intended change with `PINGRESS_BLESS=1 cargo test --test compile_fixtures`
//! and review the diff.

use std::path::Path;

use pingress::compile::compile;
use pingress::route::path::normalize;
use pingress::settings::CompileSettings;
use pingress::snapshot::Snapshot;
use pingress::source::files::load_text;

fn settings_from(text: &str) -> CompileSettings {
    let mut s = CompileSettings::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# settings:") else {
            continue;
        };
        for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                None if item == "watch-ingress-without-class" => {
                    s.watch_ingress_without_class = true
                }
                Some(("ingress-class", v)) => s.ingress_class = v.into(),
                Some(("controller-class", v)) => s.controller_class = v.into(),
                Some(("default-backend-service", v)) => {
                    let (ns, n) = v.split_once('/').expect("ns/name");
                    s.default_backend_service = Some((ns.into(), n.into()));
                }
                Some(("default-ssl-certificate", v)) => {
                    let (ns, n) = v.split_once('/').expect("ns/name");
                    s.default_ssl_certificate = Some((ns.into(), n.into()));
                }
                _ => panic!("unknown fixture setting {item:?}"),
            }
        }
    }
    s
}

fn render(name: &str, text: &str) -> String {
    let mut snap = Snapshot::default();
    load_text(name, text, &mut snap);
    snap.now = Some(
        text.lines()
            .find_map(|l| l.strip_prefix("# now:"))
            .map(|v| v.trim().parse().expect("# now: UNIX_SECONDS"))
            .unwrap_or(1_893_456_000),
    );
    let settings = settings_from(text);
    let c = compile(&snap, &settings, None);
    let mut out = String::new();
    out.push_str("== diagnostics\n");
    for d in snap.diagnostics.iter().chain(c.diagnostics.iter()) {
        out.push_str(&format!("{d}\n"));
    }
    out.push_str(&format!("== table ({} ingresses served)\n", c.served));
    out.push_str(&c.table.dump());
    out.push_str("== probes\n");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# probe:") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let host = it.next().expect("probe host");
        let path = it.next().expect("probe path");
        let host = if host == "-" { "" } else { host };
        let result = match normalize(path) {
            Ok(p) => c.table.lookup(host, &p).describe(),
            Err(_) => "400 bad path".to_string(),
        };
        out.push_str(&format!("{host} {path} -> {result}\n"));
    }
    out
}

#[test]
fn fixtures_match_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bless = std::env::var_os("PINGRESS_BLESS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "fixtures missing");
    let mut failures = Vec::new();
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let got = render(&name, &text);
        let exp_path = path.with_extension("expected");
        if bless {
            std::fs::write(&exp_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&exp_path).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {name}: expected\n{want}\n--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn compile_is_deterministic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            assert_eq!(render("f", &text), render("f", &text), "{}", p.display());
        }
    }
}
