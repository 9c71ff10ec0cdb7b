//! `configuration-snippet` and `server-snippet`: nginx directives parsed into a typed program
//! ([`program::Program`]) that pingress's own interpreter (`proxy/snippet.rs`) runs. Nothing is
//! templated, no nginx runs, no Lua is evaluated. Considered only where ingress-nginx would
//! consider them: ConfigMap `allow-snippet-annotations: "true"` and `annotations-risk-level:
//! Critical`; otherwise the Ingress is refused as before. A snippet with one line outside the
//! subset is refused whole (the Ingress left out), never applied in part.

pub mod program;
pub mod syntax;

use std::sync::Arc;

use super::{Gate, KeySpec, Reader, Risk, Scope, Support};
pub use program::{Compiled, Kind, Line, LineState, Program};

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "configuration-snippet",
        scope: Scope::Ingress,
        risk: Risk::Critical,
        support: Support::Differs(
            "a typed subset of directives is executed (see \"Snippets\"); any other directive refuses the Ingress with the line named",
        ),
        doc: "nginx directives for every location of the Ingress (headers, return, rewrite, set, if, allow/deny, mapped proxy settings)",
    },
    KeySpec {
        name: "server-snippet",
        scope: Scope::Host,
        risk: Risk::Critical,
        support: Support::Differs(
            "a typed subset of directives and `location` blocks is executed (see \"Snippets\"); any other directive refuses the Ingress with the line named",
        ),
        doc: "nginx directives for the host's server block, including `location` blocks",
    },
];

/// The snippets of one Ingress, compiled.
#[derive(Debug, Clone, Default)]
pub struct Snippets {
    pub location: Option<Arc<Program>>,
    pub server: Option<Arc<Program>>,
}

impl PartialEq for Snippets {
    fn eq(&self, other: &Self) -> bool {
        fn same(a: &Option<Arc<Program>>, b: &Option<Arc<Program>>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
        }
        same(&self.location, &other.location) && same(&self.server, &other.server)
    }
}
impl Eq for Snippets {}

/// The two keys with their kinds.
pub const KINDS: [(&str, Kind); 2] = [
    ("configuration-snippet", Kind::Location),
    ("server-snippet", Kind::Server),
];

/// Compile the snippets of an Ingress; a refused snippet rejects the Ingress, naming the line.
pub fn parse(r: &mut Reader<'_>, gate: Gate) -> Snippets {
    let mut out = Snippets::default();
    for (key, kind) in KINDS {
        let Some(text) = r.get(key) else { continue };
        if !gate.allow_snippets {
            r.reject_because(
                key,
                "SnippetRefused",
                "snippets are disabled: the ConfigMap's allow-snippet-annotations is false (ingress-nginx's default)",
            );
            continue;
        }
        let c = program::compile(text, kind);
        match c.program {
            Some(p) => {
                let p = Some(Arc::new(p));
                match kind {
                    Kind::Location => out.location = p,
                    Kind::Server => out.server = p,
                }
            }
            None => {
                let why = c.rejection_summary().unwrap_or_default();
                r.reject_because(
                    key,
                    "SnippetRefused",
                    &format!(
                        "outside the supported snippet subset, the snippet is refused whole: {why}"
                    ),
                );
            }
        }
    }
    out
}

/// The line-by-line report of one snippet text (for `pingress check`).
pub fn report(text: &str, kind: Kind) -> Vec<Line> {
    program::compile(text, kind).lines
}
