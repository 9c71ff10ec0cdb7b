//! Standalone mode: a folder of Kubernetes manifests is the cluster.
//!
//! Every `*.yaml` / `*.yml` file below the folder (recursively; names starting with `.` are
//! skipped, as are the `..data` links of mounted ConfigMaps) is read as a multi-document YAML
//! stream. Each document is parsed on its own, so one bad document is reported with its file
//! and line and the rest still loads. The folder is watched (inotify via `notify`); bursts of
//! changes are coalesced (20 ms holdoff, 500 ms max) into one rebuild.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use serde::Deserialize;

use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::publish::Publisher;
use crate::snapshot::Snapshot;

/// Quiet time before a rebuild: short, because a rebuild reads only the changed files;
/// bursts are still coalesced up to `MAX_HOLD`.
const HOLDOFF: Duration = Duration::from_millis(20);
const MAX_HOLD: Duration = Duration::from_millis(500);
const POLL_FALLBACK: Duration = Duration::from_secs(1);

/// Read the whole folder into a snapshot. Problems become diagnostics in the snapshot.
pub fn load_dir(dir: &Path) -> Snapshot {
    let mut state = DirState::new(dir.to_path_buf());
    state.refresh();
    state.snap
}

/// (inode, length, modification time in ns): a file whose stamp is unchanged is not re-read.
type Stamp = (u64, u64, i128);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.ino(),
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    ))
}

/// One object's identity across kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ObjKey {
    Ingress(Key),
    IngressClass(String),
    Service(Key),
    EndpointSlice(Key),
    Secret(Key),
    ConfigMap(Key),
}

use crate::snapshot::Key;

struct FileEntry {
    stamp: Stamp,
    /// Objects this file owns in the merged snapshot.
    keys: Vec<ObjKey>,
    diagnostics: Vec<Diagnostic>,
}

/// The folder, kept incrementally: only files whose stamp changed are read and parsed again,
/// and the merged snapshot is patched in place (a change to one Ingress among 10,000 costs one
/// file parse, not a re-read of the folder). An object defined in two files is taken from the
/// first one (in path order when both are read together) and the other gets a
/// `DuplicateObject` diagnostic.
pub struct DirState {
    dir: PathBuf,
    snap: Snapshot,
    files: BTreeMap<PathBuf, FileEntry>,
    owner: HashMap<ObjKey, PathBuf>,
    dir_error: Option<Diagnostic>,
    /// Files parsed so far: stamped into each object's resourceVersion, so compile can tell
    /// an object it has already compiled from a new one (manifests carry none of their own).
    parses: u64,
}

impl DirState {
    pub fn new(dir: PathBuf) -> Self {
        DirState {
            dir,
            snap: Snapshot::default(),
            files: BTreeMap::new(),
            owner: HashMap::new(),
            dir_error: None,
            parses: 0,
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// Bring the snapshot up to date with the folder. Returns whether anything changed.
    pub fn refresh(&mut self) -> bool {
        let mut paths = Vec::new();
        let dir_error = collect(&self.dir, &mut paths).err().map(|e| {
            Diagnostic::rejected(
                ObjectRef::file(&self.dir.display().to_string()),
                "ManifestDirUnreadable",
                format!("cannot read the manifest folder: {e}"),
            )
        });
        let mut changed = dir_error != self.dir_error;
        self.dir_error = dir_error;
        paths.sort();
        let current: BTreeMap<PathBuf, Option<Stamp>> = paths
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !current.contains_key(*p))
            .cloned()
            .collect();
        for p in gone {
            self.remove_file(&p);
            changed = true;
        }
        for (path, st) in current {
            let unchanged =
                matches!((self.files.get(&path), st), (Some(e), Some(s)) if e.stamp == s);
            if unchanged {
                continue;
            }
            self.remove_file(&path);
            self.add_file(&path, st.unwrap_or((0, 0, 0)));
            changed = true;
        }
        if changed {
            let mut diags: Vec<Diagnostic> = self.dir_error.iter().cloned().collect();
            for e in self.files.values() {
                diags.extend(e.diagnostics.iter().cloned());
            }
            self.snap.diagnostics = diags;
        }
        self.snap.now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        changed
    }

    fn remove_file(&mut self, path: &Path) {
        let Some(entry) = self.files.remove(path) else {
            return;
        };
        for k in entry.keys {
            self.owner.remove(&k);
            let s = &mut self.snap;
            match k {
                ObjKey::Ingress(k) => drop(s.ingresses.remove(&k)),
                ObjKey::IngressClass(k) => drop(s.ingress_classes.remove(&k)),
                ObjKey::Service(k) => drop(s.services.remove(&k)),
                ObjKey::EndpointSlice(k) => drop(s.endpoint_slices.remove(&k)),
                ObjKey::Secret(k) => drop(s.secrets.remove(&k)),
                ObjKey::ConfigMap(k) => drop(s.config_maps.remove(&k)),
            }
        }
    }

    fn add_file(&mut self, path: &Path, stamp: Stamp) {
        let name = path.display().to_string();
        let mut parsed = Snapshot::default();
        match std::fs::read_to_string(path) {
            Ok(text) => load_text(&name, &text, &mut parsed),
            Err(e) => parsed.diagnostics.push(Diagnostic::rejected(
                ObjectRef::file(&name),
                "ManifestUnreadable",
                format!("{name}: {e}"),
            )),
        }
        let mut entry = FileEntry {
            stamp,
            keys: Vec::new(),
            diagnostics: std::mem::take(&mut parsed.diagnostics),
        };
        self.parses += 1;
        let version = format!("pingress-file-{}", self.parses);
        macro_rules! merge {
            ($field:ident, $variant:ident, $kind:literal) => {
                for (k, mut o) in std::mem::take(&mut parsed.$field) {
                    o.stamp(&version);
                    let key = ObjKey::$variant(k.clone());
                    if let Some(other) = self.owner.get(&key) {
                        entry.diagnostics.push(Diagnostic::warning(
                            ObjectRef::file(&name),
                            "DuplicateObject",
                            format!(
                                "{} {:?} is also defined in {}; that definition is used",
                                $kind,
                                k,
                                other.display()
                            ),
                        ));
                        continue;
                    }
                    self.owner.insert(key.clone(), path.to_path_buf());
                    entry.keys.push(key);
                    self.snap.$field.insert(k, o);
                }
            };
        }
        merge!(ingresses, Ingress, "Ingress");
        merge!(ingress_classes, IngressClass, "IngressClass");
        merge!(services, Service, "Service");
        merge!(endpoint_slices, EndpointSlice, "EndpointSlice");
        merge!(secrets, Secret, "Secret");
        merge!(config_maps, ConfigMap, "ConfigMap");
        self.files.insert(path.to_path_buf(), entry);
    }
}

/// The resourceVersion the folder source stamps on every object of a parse (compile reuses a
/// unit only for the same version).
trait SetVersion {
    fn stamp(&mut self, version: &str);
}

macro_rules! stamp_via_metadata {
    ($($t:ty),*) => {$(
        impl SetVersion for $t {
            fn stamp(&mut self, version: &str) {
                self.metadata.resource_version = Some(version.to_string());
            }
        }
    )*};
}
stamp_via_metadata!(IngressClass, Service, EndpointSlice, Secret, ConfigMap);

impl SetVersion for Arc<Ingress> {
    fn stamp(&mut self, version: &str) {
        // just parsed: the only reference, so no copy
        Arc::make_mut(self).metadata.resource_version = Some(version.to_string());
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // follow links, as mounted ConfigMaps are links
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect(&path, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Split a YAML stream into documents: (1-based line of the document start, text).
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let l = line.trim_end_matches(['\n', '\r']);
        let is_start = l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
        let is_end = l == "...";
        if is_start || is_end {
            if offset > start {
                docs.push((start_line, &text[start..offset]));
            }
            if is_start {
                start = offset;
                start_line = i + 1;
            } else {
                start = offset + line.len();
                start_line = i + 2;
            }
        }
        offset += line.len();
    }
    if text.len() > start {
        docs.push((start_line, &text[start..]));
    }
    docs
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
struct List {
    items: Vec<serde_json::Value>,
}

/// Parse one file's text into `snap`.
pub fn load_text(file: &str, text: &str, snap: &mut Snapshot) {
    for (line, doc) in split_documents(text) {
        if is_blank(doc) {
            continue;
        }
        let at = |e: &serde_saphyr::Error| -> String {
            match e.location() {
                Some(loc) => format!(
                    "{file}:{}:{}",
                    line + (loc.line() as usize).saturating_sub(1),
                    loc.column()
                ),
                None => format!("{file}:{line}"),
            }
        };
        let head: Head = match serde_saphyr::from_str(doc) {
            Ok(h) => h,
            Err(e) => {
                snap.diagnostics
                    .push(parse_error(file, &at(&e), &e.to_string()));
                continue;
            }
        };
        let kind = head.kind.unwrap_or_default();
        let api = head.api_version.unwrap_or_default();
        let res = match kind.as_str() {
            "List" => serde_saphyr::from_str::<List>(doc).map(|l| {
                for (i, item) in l.items.into_iter().enumerate() {
                    if let Err(m) = add_value(item, snap) {
                        snap.diagnostics.push(parse_error(
                            file,
                            &format!("{file}:{line} (items[{i}])"),
                            &m,
                        ));
                    }
                }
            }),
            _ => add_typed(&kind, &api, doc, file, line, snap),
        };
        if let Err(e) = res {
            snap.diagnostics
                .push(parse_error(file, &at(&e), &e.to_string()));
        }
    }
}

fn parse_error(file: &str, at: &str, msg: &str) -> Diagnostic {
    let msg = msg.lines().next().unwrap_or(msg);
    // serde-saphyr prefixes "error: line N column M: " (document-relative); `at` says it better
    let msg = match msg
        .find(" column ")
        .and_then(|i| msg[i..].find(": ").map(|j| i + j + 2))
    {
        Some(i) if msg.starts_with("error: line ") => &msg[i..],
        _ => msg,
    };
    Diagnostic::rejected(
        ObjectRef::file(file),
        "ManifestParseError",
        format!("{at}: {msg}; this document is skipped"),
    )
}

fn add_typed(
    kind: &str,
    api: &str,
    doc: &str,
    file: &str,
    line: usize,
    snap: &mut Snapshot,
) -> Result<(), serde_saphyr::Error> {
    match (kind, api) {
        ("Ingress", "networking.k8s.io/v1") => snap.add_ingress(serde_saphyr::from_str::<Ingress>(doc)?),
        ("IngressClass", "networking.k8s.io/v1") => {
            snap.add_ingress_class(serde_saphyr::from_str::<IngressClass>(doc)?)
        }
        ("Service", "v1") => snap.add_service(serde_saphyr::from_str::<Service>(doc)?),
        ("EndpointSlice", "discovery.k8s.io/v1") => {
            snap.add_endpoint_slice(serde_saphyr::from_str::<EndpointSlice>(doc)?)
        }
        ("Secret", "v1") => snap.add_secret(serde_saphyr::from_str::<Secret>(doc)?),
        ("ConfigMap", "v1") => snap.add_config_map(serde_saphyr::from_str::<ConfigMap>(doc)?),
        _ => snap.diagnostics.push(Diagnostic::warning(
            ObjectRef::file(file),
            "UnknownKind",
            format!(
                "{file}:{line}: kind {kind:?} apiVersion {api:?} is not read by pingress; this document is ignored"
            ),
        )),
    }
    Ok(())
}

/// Items of a `kind: List` (no line numbers inside lists).
fn add_value(v: serde_json::Value, snap: &mut Snapshot) -> Result<(), String> {
    let kind = v
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let e = |e: serde_json::Error| format!("{kind}: {e}");
    match kind.as_str() {
        "Ingress" => snap.add_ingress(serde_json::from_value::<Ingress>(v).map_err(e)?),
        "IngressClass" => snap.add_ingress_class(serde_json::from_value(v).map_err(e)?),
        "Service" => snap.add_service(serde_json::from_value(v).map_err(e)?),
        "EndpointSlice" => snap.add_endpoint_slice(serde_json::from_value(v).map_err(e)?),
        "Secret" => snap.add_secret(serde_json::from_value(v).map_err(e)?),
        "ConfigMap" => snap.add_config_map(serde_json::from_value(v).map_err(e)?),
        other => return Err(format!("kind {other:?} is not read by pingress")),
    }
    Ok(())
}

/// The standalone source as a Pingora background service: publishes the first table, then
/// tells Pingora it is ready (the proxy starts after it), then follows the folder.
pub struct FileSource {
    state: std::sync::Mutex<DirState>,
    dir: PathBuf,
    publisher: Arc<Publisher>,
}

impl FileSource {
    pub fn new(dir: PathBuf, publisher: Arc<Publisher>) -> Self {
        FileSource {
            state: std::sync::Mutex::new(DirState::new(dir.clone())),
            dir,
            publisher,
        }
    }

    /// Re-read what changed and publish; `force` publishes even when nothing changed (start).
    fn reload(&self, force: bool) {
        let mut state = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if state.refresh() || force {
            self.publisher.rebuild(state.snapshot());
        }
    }
}

#[async_trait]
impl BackgroundService for FileSource {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        // Set the watch up before the first read so no change slips between the two.
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        })
        .and_then(|mut w| w.watch(&self.dir, RecursiveMode::Recursive).map(|_| w));
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the manifest folder; polling every second instead");
                None
            }
        };
        self.reload(true);
        tracing::info!(dir = %self.dir.display(), "standalone mode: serving manifests");
        ready.notify_ready();

        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                got = rx.recv(), if watcher.is_some() => {
                    if got.is_none() { break; }
                    // coalesce: wait for quiet (HOLDOFF) but no longer than MAX_HOLD
                    let deadline = tokio::time::Instant::now() + MAX_HOLD;
                    loop {
                        let wait = HOLDOFF.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                        match tokio::time::timeout(wait, rx.recv()).await {
                            Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
                            _ => break,
                        }
                    }
                    self.reload(false);
                }
                _ = tokio::time::sleep(POLL_FALLBACK), if watcher.is_none() => self.reload(false),
            }
        }
        drop(watcher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_line_numbers() {
        let t = "a: 1\n---\nb: 2\nc: 3\n--- \nd: 4\n...\n---\ne: 5\n";
        let docs = split_documents(t);
        let lines: Vec<usize> = docs.iter().map(|d| d.0).collect();
        assert_eq!(lines, vec![1, 2, 5, 8]);
        assert!(docs[1].1.contains("b: 2"));
        assert!(docs[3].1.contains("e: 5"));
    }

    #[test]
    fn bad_document_is_reported_with_file_and_line_and_others_load() {
        let t = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n";
        let mut s = Snapshot::default();
        load_text("dir/x.yaml", t, &mut s);
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.config_maps.len(), 1);
        assert_eq!(s.diagnostics.len(), 1, "{:?}", s.diagnostics);
        let m = &s.diagnostics[0].message;
        assert!(m.starts_with("dir/x.yaml:"), "{m}");
        let line: usize = m["dir/x.yaml:".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((6..=10).contains(&line), "{m}");
    }

    #[test]
    fn unknown_kinds_are_warned_and_lists_are_read() {
        let t = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n";
        let mut s = Snapshot::default();
        load_text("f.yaml", t, &mut s);
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.diagnostics.len(), 1);
        assert_eq!(s.diagnostics[0].reason, "UnknownKind");
    }

    #[test]
    fn type_errors_name_the_line() {
        // annotation values must be strings, as the API server requires
        let t = "# comment\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n  annotations:\n    x: {a: b}\n";
        let mut s = Snapshot::default();
        load_text("f.yaml", t, &mut s);
        assert!(s.ingresses.is_empty());
        assert_eq!(s.diagnostics[0].reason, "ManifestParseError");
        assert!(
            s.diagnostics[0].message.starts_with("f.yaml:7"),
            "{}",
            s.diagnostics[0].message
        );
    }

    #[test]
    fn dir_state_reparses_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let svc = |name: &str, port: u16| {
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: n}}\nspec: {{ports: [{{port: {port}}}]}}\n")
        };
        let write = |f: &str, text: &str| {
            let tmp = dir.path().join(format!(".{f}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, dir.path().join(f)).unwrap();
        };
        write("a.yaml", &svc("a", 80));
        write("b.yaml", &svc("b", 80));
        let mut st = DirState::new(dir.path().to_path_buf());
        assert!(st.refresh());
        assert_eq!(st.snapshot().services.len(), 2);
        assert!(!st.refresh(), "nothing changed");
        let port = |st: &DirState, n: &str| {
            st.snapshot().services[&("n".to_string(), n.to_string())]
                .spec
                .as_ref()
                .unwrap()
                .ports
                .as_ref()
                .unwrap()[0]
                .port
        };
        let version = |st: &DirState, n: &str| {
            st.snapshot().services[&("n".to_string(), n.to_string())]
                .metadata
                .resource_version
                .clone()
                .expect("every object read from the folder gets a resourceVersion")
        };
        let (a1, b1) = (version(&st, "a"), version(&st, "b"));
        assert_ne!(a1, b1);
        write("b.yaml", &svc("b", 81));
        assert!(st.refresh());
        assert_eq!(port(&st, "b"), 81);
        assert_eq!(port(&st, "a"), 80);
        // compile reuses what it compiled from an object with the same resourceVersion
        assert_eq!(
            version(&st, "a"),
            a1,
            "an unchanged file keeps its versions"
        );
        assert!(version(&st, "b") != b1 && version(&st, "b") != a1);
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert!(st.refresh());
        assert_eq!(st.snapshot().services.len(), 1);
        // a duplicate is reported and the first definition kept
        write("c.yaml", &svc("b", 99));
        assert!(st.refresh());
        assert_eq!(port(&st, "b"), 81);
        assert_eq!(st.snapshot().diagnostics[0].reason, "DuplicateObject");
        // a parse error in one file keeps the others
        write("d.yaml", "kind: [");
        assert!(st.refresh());
        assert_eq!(st.snapshot().services.len(), 1);
        assert!(st
            .snapshot()
            .diagnostics
            .iter()
            .any(|d| d.reason == "ManifestParseError"));
    }
}
