//! The corpus of real snippets (`tests/fixtures/snippets/corpus.yaml`, gathered from public
//! charts, manifests, docs and issues, each with its source): every entry is accepted or
//! rejected as the corpus says, a rejection names the directive or variable the corpus names,
//! and the share of real snippets pingress runs is printed.

use pingress::annotations::snippet::program::{compile, Kind, LineState};
use serde::Deserialize;

#[derive(Deserialize)]
struct Entry {
    source: String,
    kind: String,
    expect: String,
    #[serde(default)]
    reject: Option<String>,
    snippet: String,
}

#[test]
fn real_snippets_are_accepted_or_rejected_as_expected() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/snippets/corpus.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let entries: Vec<Entry> = serde_saphyr::from_str(&text).unwrap();
    assert!(entries.len() >= 50, "the corpus holds at least 50 snippets");
    let mut wrong = Vec::new();
    let mut accepted = 0;
    for e in &entries {
        let kind = match e.kind.as_str() {
            "configuration-snippet" => Kind::Location,
            "server-snippet" => Kind::Server,
            k => panic!("{}: unknown kind {k}", e.source),
        };
        let c = compile(&e.snippet, kind);
        let first = c.lines.iter().find_map(|l| match &l.state {
            LineState::Rejected(why) => Some((l.directive.clone(), why.clone())),
            _ => None,
        });
        match (e.expect.as_str(), &first) {
            ("accept", None) => accepted += 1,
            ("reject", Some((directive, why))) => {
                let named = e.reject.as_deref().unwrap_or("");
                let ok = if named.starts_with('$') {
                    why.contains(named)
                } else {
                    directive == named
                };
                if !ok {
                    wrong.push(format!(
                        "{}: rejected at {directive} ({why}), the corpus says {named}",
                        e.source
                    ));
                }
            }
            ("accept", Some((directive, why))) => {
                wrong.push(format!("{}: rejected at {directive}: {why}", e.source))
            }
            (_, None) => wrong.push(format!("{}: accepted, the corpus says reject", e.source)),
            (x, _) => wrong.push(format!("{}: unknown expect {x}", e.source)),
        }
    }
    println!(
        "{accepted} of {} real snippets accepted ({:.0}%)",
        entries.len(),
        100.0 * accepted as f64 / entries.len() as f64
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
