//! `pingress check`: what of a cluster (or a folder of manifests, or `kubectl get -o yaml` on
//! stdin) pingress would serve as ingress-nginx serves it, before anyone switches. It runs the
//! real compile (not a second implementation) and reads the key states from the same tables
//! that generate the README, so the check and the docs never disagree.
//!
//! Per Ingress of the controller's class: **left out** (a Rejected diagnostic: pingress would
//! not serve it), **differs** (an annotation whose state is `differs`, `not implemented` or
//! unknown), or **identical**. The ConfigMap's keys get their inventory state. Exit code 0
//! when every Ingress is identical, 1 when some differ, 2 when some would be left out.
//! Reading a cluster only lists objects: nothing is ever written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::annotations::{self, snippet, FailMode, Support};
use crate::compile::{self, class};
use crate::configmap::inventory::{self, Unread};
use crate::diagnostics::{Diagnostic, Severity};
use crate::settings::CompileSettings;
use crate::snapshot::Snapshot;

/// The README section that explains each state.
const README: &str = "README.md#";

/// What pingress would do with one Ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Identical,
    Differs,
    LeftOut,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Identical => "identical",
            State::Differs => "differs",
            State::LeftOut => "left out",
        }
    }
}

/// One key in use (an annotation or a ConfigMap key) and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub key: String,
    /// `supported`, `differs`, `not implemented`, `refused`, `unknown`, `not applicable`,
    /// `not yet`.
    pub state: &'static str,
    pub note: String,
    /// The README anchor that explains it.
    pub anchor: &'static str,
}

impl KeyState {
    /// Whether this key makes the Ingress serve differently from ingress-nginx.
    fn differs(&self) -> bool {
        !matches!(self.state, "supported" | "not applicable")
    }
}

#[derive(Debug, Clone)]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    pub state: State,
    pub annotations: Vec<KeyState>,
    pub diagnostics: Vec<Diagnostic>,
    /// `configuration-snippet` / `server-snippet` line by line: accepted, mapped or rejected.
    pub snippets: Vec<(&'static str, Vec<snippet::Line>)>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub ingresses: Vec<IngressReport>,
    /// `--controller-deployment`: the Deployment (`ns/name`) and its flags' states.
    pub flags: Option<(String, Vec<KeyState>)>,
    /// The controller ConfigMap (`ns/name`) and its keys, when one is configured and found.
    pub configmap: Option<(String, Vec<KeyState>)>,
    /// Diagnostics about other objects (Services, Secrets, files, ...).
    pub other: Vec<Diagnostic>,
    /// Ingresses of other classes (not looked at).
    pub other_class: usize,
}

fn annotation_state(name: &str) -> KeyState {
    let key = name.to_string();
    let Some(spec) = annotations::key_spec(name) else {
        return KeyState {
            key,
            state: "unknown",
            note: "not an ingress-nginx annotation: ignored (a typo?)".into(),
            anchor: "annotations",
        };
    };
    let (state, note, anchor) = match spec.support {
        Support::Supported => ("supported", String::new(), "annotations"),
        Support::Differs(d) => ("differs", d.to_string(), "annotations"),
        Support::NotImplemented(mode) => (
            "not implemented",
            match mode {
                FailMode::Ignore(why) => format!("ignored with a warning: {why}"),
                other => other.describe().replace("**", ""),
            },
            "fail-safe-keys-not-implemented-yet",
        ),
        Support::Refused(why) => (
            "refused",
            why.to_string(),
            "fail-safe-keys-not-implemented-yet",
        ),
    };
    // the snippet keys' difference is the subset, explained in its own section
    let anchor = if snippet::KINDS.iter().any(|(k, _)| *k == name) {
        "snippets"
    } else {
        anchor
    };
    KeyState {
        key,
        state,
        note,
        anchor,
    }
}

/// A snippet line's state word and note.
fn snippet_line(l: &snippet::Line) -> (&'static str, &str) {
    match &l.state {
        snippet::LineState::Accepted => ("accepted", ""),
        snippet::LineState::Mapped(what) => ("mapped", what),
        snippet::LineState::Rejected(why) => ("rejected", why),
    }
}

fn configmap_state(key: &str) -> KeyState {
    let (state, note) = match inventory::unread(key) {
        Some(Unread::NotApplicable(why)) => ("not applicable", why.to_string()),
        Some(Unread::NotYet(why)) => ("not yet", why.to_string()),
        None if inventory::all().iter().any(|(k, _, _)| *k == key) => ("supported", String::new()),
        None => (
            "unknown",
            "not an ingress-nginx ConfigMap key: ignored (a typo?)".to_string(),
        ),
    };
    KeyState {
        key: key.to_string(),
        state,
        note,
        anchor: "configmap-inventory",
    }
}

/// Check a snapshot as pingress with `settings` would serve it.
pub fn report(snap: &Snapshot, settings: &CompileSettings) -> Report {
    let compiled = compile::compile(snap, settings, None);
    let prefix = format!("{}/", settings.annotations_prefix);
    let mut by_ingress: BTreeMap<(String, String), Vec<Diagnostic>> = BTreeMap::new();
    let mut other = Vec::new();
    for d in compiled.diagnostics {
        if d.object.kind == "Ingress" {
            by_ingress
                .entry((d.object.namespace.clone(), d.object.name.clone()))
                .or_default()
                .push(d);
        } else {
            other.push(d);
        }
    }
    let mut ingresses = Vec::new();
    let mut other_class = 0;
    for ((ns, name), ing) in snap.ingresses.iter() {
        if !class::is_served(ing, snap, settings) {
            other_class += 1;
            continue;
        }
        let annotations: Vec<KeyState> = ing
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix(&prefix))
            .map(annotation_state)
            .collect();
        let diagnostics = by_ingress
            .remove(&(ns.clone(), name.clone()))
            .unwrap_or_default();
        let snippets = snippet::KINDS
            .iter()
            .filter_map(|(key, kind)| {
                let text = ing
                    .metadata
                    .annotations
                    .as_ref()?
                    .get(&format!("{prefix}{key}"))?;
                Some((*key, snippet::report(text, *kind)))
            })
            .collect();
        let state = if diagnostics.iter().any(|d| d.severity == Severity::Rejected) {
            State::LeftOut
        } else if annotations.iter().any(KeyState::differs) {
            State::Differs
        } else {
            State::Identical
        };
        ingresses.push(IngressReport {
            namespace: ns.clone(),
            name: name.clone(),
            state,
            annotations,
            diagnostics,
            snippets,
        });
    }
    // diagnostics of Ingresses that are not in the snapshot's Ingress list (none expected)
    other.extend(by_ingress.into_values().flatten());
    // the ConfigMap's key diagnostics are its section's lines
    other.retain(|d| !(d.object.kind == "ConfigMap" && d.reason.starts_with("ConfigMapKey")));
    let configmap = settings.configmap.as_ref().and_then(|(ns, name)| {
        let cm = snap.config_maps.get(&(ns.clone(), name.clone()))?;
        let keys = cm
            .data
            .iter()
            .flatten()
            .map(|(k, _)| configmap_state(k))
            .collect();
        Some((format!("{ns}/{name}"), keys))
    });
    Report {
        ingresses,
        flags: None,
        configmap,
        other,
        other_class,
    }
}

impl Report {
    fn count(&self, s: State) -> usize {
        self.ingresses.iter().filter(|i| i.state == s).count()
    }

    /// 0: every Ingress identical; 1: some differ; 2: some would be left out.
    pub fn exit_code(&self) -> i32 {
        match self.ingresses.iter().map(|i| i.state).max() {
            Some(State::LeftOut) => 2,
            Some(State::Differs) => 1,
            _ => 0,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} Ingresses: {} serve identically, {} differ, {} would be left out",
            self.ingresses.len(),
            self.count(State::Identical),
            self.count(State::Differs),
            self.count(State::LeftOut)
        )
    }

    /// The human report: the summary, then the Ingresses that need a look (left out first),
    /// the ConfigMap keys that are not supported, and the other objects' diagnostics.
    pub fn human(&self) -> String {
        let mut out = format!("{}\n", self.summary());
        if self.other_class > 0 {
            let _ = writeln!(
                out,
                "({} Ingresses of other classes not checked)",
                self.other_class
            );
        }
        for state in [State::LeftOut, State::Differs] {
            for i in self.ingresses.iter().filter(|i| i.state == state) {
                let _ = writeln!(out, "\n{}/{}: {}", i.namespace, i.name, state.as_str());
                for d in &i.diagnostics {
                    let _ = writeln!(out, "  {} {}: {}", d.severity.as_str(), d.reason, d.message);
                }
                for k in i.annotations.iter().filter(|k| k.differs()) {
                    let _ = writeln!(out, "  {}", line(k));
                }
                for (key, lines) in &i.snippets {
                    for l in lines {
                        let (state, note) = snippet_line(l);
                        let _ = writeln!(
                            out,
                            "    {key} line {} `{}`: {state}{}",
                            l.line,
                            l.directive,
                            if note.is_empty() {
                                String::new()
                            } else {
                                format!(" ({note})")
                            }
                        );
                    }
                }
            }
        }
        if let Some((name, flags)) = &self.flags {
            let notable: Vec<&KeyState> = flags.iter().filter(|k| k.differs()).collect();
            let _ = writeln!(
                out,
                "\nDeployment {name}: {} flags, {} read by pingress",
                flags.len(),
                flags.len() - notable.len()
            );
            for k in notable {
                let _ = writeln!(out, "  {}", line(k));
            }
        }
        if let Some((name, keys)) = &self.configmap {
            let notable: Vec<&KeyState> = keys.iter().filter(|k| k.state != "supported").collect();
            let _ = writeln!(
                out,
                "\nConfigMap {name}: {} keys, {} supported",
                keys.len(),
                keys.len() - notable.len()
            );
            for k in notable {
                let _ = writeln!(out, "  {}", line(k));
            }
        }
        if !self.other.is_empty() {
            let _ = writeln!(out, "\nOther objects:");
            for d in &self.other {
                let _ = writeln!(
                    out,
                    "  {} {} {}: {}",
                    d.severity.as_str(),
                    d.reason,
                    d.object,
                    d.message
                );
            }
        }
        out
    }

    /// The same as JSON (`-o json`), every Ingress included.
    pub fn json(&self) -> serde_json::Value {
        let keys = |ks: &[KeyState]| -> Vec<serde_json::Value> {
            ks.iter()
                .map(|k| json!({"key": k.key, "state": k.state, "note": k.note, "readme": format!("{README}{}", k.anchor)}))
                .collect()
        };
        let diags = |ds: &[Diagnostic]| -> Vec<serde_json::Value> {
            ds.iter()
                .map(|d| json!({"severity": d.severity.as_str(), "reason": d.reason, "object": d.object.to_string(), "message": d.message}))
                .collect()
        };
        json!({
            "summary": {
                "ingresses": self.ingresses.len(),
                "identical": self.count(State::Identical),
                "differ": self.count(State::Differs),
                "left_out": self.count(State::LeftOut),
                "other_class": self.other_class,
                "exit_code": self.exit_code(),
            },
            "ingresses": self.ingresses.iter().map(|i| json!({
                "namespace": i.namespace,
                "name": i.name,
                "state": i.state.as_str(),
                "annotations": keys(&i.annotations),
                "diagnostics": diags(&i.diagnostics),
                "snippets": i.snippets.iter().map(|(key, lines)| json!({
                    "key": key,
                    "lines": lines.iter().map(|l| {
                        let (state, note) = snippet_line(l);
                        json!({"line": l.line, "directive": l.directive, "state": state, "note": note})
                    }).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "configmap": self.configmap.as_ref().map(|(name, ks)| json!({"name": name, "keys": keys(ks)})),
            "controller_flags": self.flags.as_ref().map(|(name, ks)| json!({"deployment": name, "flags": keys(ks)})),
            "other_diagnostics": diags(&self.other),
        })
    }
}

fn line(k: &KeyState) -> String {
    let mut s = format!("{}: {}", k.key, k.state);
    if !k.note.is_empty() {
        let _ = write!(s, ": {}", k.note);
    }
    let _ = write!(s, " ({README}{})", k.anchor);
    s
}

/// The objects `pingress check` / `pingress routes` read: `-f FILE`, `--manifests DIR`, or
/// the cluster (listed, never written); plus the kinds that could not be listed. `Err`: nothing
/// could be read.
pub fn load(
    c: &crate::settings::CheckCli,
) -> Result<(CompileSettings, Snapshot, Vec<Diagnostic>), String> {
    let settings = c.cli.compile_settings()?;
    if let Some(f) = &c.file {
        let snap = load_file(f).map_err(|e| format!("{}: {e}", f.display()))?;
        return Ok((settings, snap, Vec::new()));
    }
    if let Some(dir) = &c.cli.manifests {
        if !dir.is_dir() {
            return Err(format!("--manifests {}: not a folder", dir.display()));
        }
        return Ok((settings, crate::source::files::load_dir(dir), Vec::new()));
    }
    let ks = c.cli.kube_settings()?;
    let listed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async {
            let config = crate::source::kube::client_config(&ks).await?;
            anyhow::Ok(crate::source::kube::list_snapshot(&config, &ks).await)
        })
        .map_err(|e| format!("{e:#}"))?;
    Ok((settings, listed.0, listed.1))
}

/// The flags of an ingress-nginx Deployment: those pingress reads (normalised to
/// `--name=value`, `$(POD_NAMESPACE)` replaced by the Deployment's namespace) and each flag's
/// state.
pub fn controller_flags(args: &[String], namespace: &str) -> (Vec<String>, Vec<KeyState>) {
    let known = |name: &str| crate::settings::flag_state(name).map(|(state, _)| state);
    let (mut kept, mut states) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        let a = args[i].replace("$(POD_NAMESPACE)", namespace);
        i += 1;
        let Some(flag) = a.strip_prefix("--") else {
            continue; // the binary path, or a value already consumed
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => {
                // `--flag value` unless the next token is a flag itself
                let v = args
                    .get(i)
                    .filter(|n| !n.starts_with("--"))
                    .map(|n| n.replace("$(POD_NAMESPACE)", namespace));
                if v.is_some() {
                    i += 1;
                }
                (flag.to_string(), v)
            }
        };
        let state = known(&name);
        // every flag pingress accepts is kept, so the Deployment's arguments carry over
        if state.is_some() {
            kept.push(match &value {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            });
        }
        states.push(KeyState {
            key: format!("--{name}"),
            state: state.unwrap_or("not read"),
            note: match state {
                Some("supported") => String::new(),
                Some(_) => "accepted for compatibility; see the README's flag table".into(),
                None => "an ingress-nginx flag pingress does not read: ignored".into(),
            },
            anchor: "configuration-flags",
        });
    }
    (kept, states)
}

/// The container args of Deployment `ns/name` (the container running the ingress-nginx
/// controller, else the first), read with get (never written).
fn deployment_args(
    ks: &crate::settings::KubeSettings,
    ns: &str,
    name: &str,
) -> Result<Vec<String>, String> {
    use k8s_openapi::api::apps::v1::Deployment;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async {
            let config = crate::source::kube::client_config(ks).await?;
            let client = kube::Client::try_from(config)?;
            let d = kube::Api::<Deployment>::namespaced(client, ns)
                .get(name)
                .await?;
            let containers = d
                .spec
                .and_then(|s| s.template.spec)
                .map(|p| p.containers)
                .unwrap_or_default();
            let c = containers
                .iter()
                .find(|c| {
                    c.args
                        .iter()
                        .flatten()
                        .any(|a| a.contains("nginx-ingress-controller"))
                        || c.name == "controller"
                })
                .or(containers.first());
            anyhow::Ok(
                c.map(|c| c.args.clone().unwrap_or_default())
                    .unwrap_or_default(),
            )
        })
        .map_err(|e| format!("--controller-deployment {ns}/{name}: {e:#}"))
}

/// `pingress check`: exit code 0/1/2 as [`Report::exit_code`], 3 when nothing could be read.
/// `raw`: the command line after `check` (to merge the Deployment's flags under the user's).
pub fn run(c: &crate::settings::CheckCli, raw: &[std::ffi::OsString]) -> i32 {
    let mut flags = None;
    let merged;
    let c = match &c.controller_deployment {
        None => c,
        Some(dep) => {
            if c.file.is_some() || c.cli.manifests.is_some() {
                eprintln!("pingress check: --controller-deployment reads a cluster (not with -f or --manifests)");
                return 3;
            }
            let Some((ns, name)) = dep.split_once('/') else {
                eprintln!(
                    "pingress check: --controller-deployment {dep:?}: expected namespace/name"
                );
                return 3;
            };
            let ks = match c.cli.kube_settings() {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("pingress check: {e}");
                    return 3;
                }
            };
            let args = match deployment_args(&ks, ns, name) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("pingress check: {e}");
                    return 3;
                }
            };
            let (kept, states) = controller_flags(&args, ns);
            flags = Some((dep.clone(), states));
            // the user's own flags win: a Deployment flag they give is dropped
            let given = |f: &str| {
                let name = f.split('=').next().unwrap_or(f);
                raw.iter().any(|r| {
                    r.to_str()
                        .is_some_and(|r| r == name || r.starts_with(&format!("{name}=")))
                })
            };
            let mut argv: Vec<std::ffi::OsString> = vec!["pingress check".into()];
            argv.extend(kept.iter().filter(|k| !given(k)).map(Into::into));
            argv.extend(raw.iter().skip(1).cloned());
            merged = match <crate::settings::CheckCli as clap::Parser>::try_parse_from(argv) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("pingress check: the Deployment's flags: {e}");
                    return 3;
                }
            };
            &merged
        }
    };
    let (settings, snap, read_errors) = match load(c) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pingress check: {e}");
            return 3;
        }
    };
    let mut r = report(&snap, &settings);
    r.flags = flags;
    r.other.splice(0..0, read_errors);
    if c.output == "json" {
        emit(&format!("{:#}\n", r.json()));
    } else {
        emit(&r.human());
    }
    r.exit_code()
}

/// `pingress routes`: the table compiled from the same input as `check`, as `/debug/routes`
/// shows the live one. Exit code 3 when nothing could be read.
pub fn routes(c: &crate::settings::CheckCli) -> i32 {
    match load(c) {
        Ok((settings, snap, _)) => {
            let compiled = compile::compile(&snap, &settings, None);
            emit(&format!("{:#}\n", crate::debug::routes(&compiled.table)));
            0
        }
        Err(e) => {
            eprintln!("pingress routes: {e}");
            3
        }
    }
}

/// Write the report to stdout; a closed pipe (`| head`) is not an error.
fn emit(s: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

/// Read manifests from a file (`-` for stdin): YAML documents, `kind: List` included (what
/// `kubectl get ... -o yaml` prints).
pub fn load_file(path: &Path) -> std::io::Result<Snapshot> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path)?;
    }
    let mut snap = Snapshot::default();
    crate::source::files::load_bytes(&path.display().to_string(), &bytes, &mut snap);
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_flags_pingress_reads_are_kept() {
        let args: Vec<String> = [
            "/nginx-ingress-controller",
            "--publish-service=$(POD_NAMESPACE)/ingress-nginx-controller",
            "--ingress-class",
            "nginx",
            "--enable-metrics=false",
            "--watch-ingress-without-class",
            "--configmap=$(POD_NAMESPACE)/ingress-nginx-controller",
            "--sync-period=10m",
            "--no-such-flag",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (kept, states) = controller_flags(&args, "ingress-nginx");
        assert_eq!(
            kept,
            [
                "--publish-service=ingress-nginx/ingress-nginx-controller",
                "--ingress-class=nginx",
                "--enable-metrics=false",
                "--watch-ingress-without-class",
                "--configmap=ingress-nginx/ingress-nginx-controller",
                "--sync-period=10m",
            ]
        );
        let st: Vec<(&str, &str)> = states.iter().map(|k| (k.key.as_str(), k.state)).collect();
        assert_eq!(
            st,
            [
                ("--publish-service", "supported"),
                ("--ingress-class", "supported"),
                ("--enable-metrics", "supported"),
                ("--watch-ingress-without-class", "supported"),
                ("--configmap", "supported"),
                ("--sync-period", "not applicable"),
                ("--no-such-flag", "not read"),
            ]
        );
    }

    #[test]
    fn key_states_come_from_the_readme_tables() {
        assert_eq!(annotation_state("rewrite-target").state, "supported");
        assert_eq!(annotation_state("mirror-target").state, "differs");
        let d = annotation_state("auth-type");
        assert_eq!(d.state, "differs", "digest fails closed");
        assert_eq!(
            annotation_state("enable-opentelemetry").state,
            "not implemented"
        );
        assert_eq!(annotation_state("configuration-snippet").state, "differs");
        assert_eq!(annotation_state("stream-snippet").state, "refused");
        assert_eq!(annotation_state("rewrite-targte").state, "unknown");
        assert_eq!(configmap_state("use-gzip").state, "supported");
        assert_eq!(configmap_state("worker-processes").state, "not applicable");
        assert_eq!(configmap_state("enable-opentelemetry").state, "not yet");
        assert_eq!(configmap_state("use-gzipp").state, "unknown");
    }
}
