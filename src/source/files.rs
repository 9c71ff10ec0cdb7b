//! Standalone mode: a folder of Kubernetes manifests is the cluster.
//!
//! Every `*.yaml` / `*.yml` file below the folder (recursively; names starting with `.` are
//! skipped, as are the `..data` links of mounted ConfigMaps) is read as a multi-document YAML
//! stream. Each document is parsed on its own, so one bad document is reported with its file
//! and line and the rest still loads (a document that is not UTF-8 too). The folder is watched
//! (inotify via `notify`): a file is re-read when it is closed after writing, created, renamed
//! or removed (not on each write, so an in-place rewrite is never published half-written);
//! a version that drops objects waits until the file has not changed for 0.5 s; bursts are
//! coalesced (20 ms holdoff, 500 ms max) into one rebuild, and the folder is also re-stat'ed
//! every 2 s. A file whose documents no longer all parse keeps the objects its
//! previous version defined that the broken version lacks (last good), with a warning.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
/// With inotify: re-stat the folder this often anyway (cheap: only changed stamps are read).
const SAFETY_POLL: Duration = Duration::from_secs(2);
/// A file that was being written during a refresh is read again this soon.
const PENDING_RETRY: Duration = Duration::from_millis(100);
/// A changed file with no completing event is read once it has not changed for this long.
const SETTLE: Duration = Duration::from_millis(500);

/// Files with a completing event (closed after writing, created, renamed) since the last
/// refresh, and when it arrived (Unix ns).
pub type Completed = HashMap<PathBuf, i128>;

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The inotify events after which a file is whole: written and closed, created (a link or an
/// atomic rename into place), renamed, removed. A plain write is not: an in-place rewrite is
/// read when it is closed, never half-written (a refresh for another file still skips a file
/// whose stamp moves while it is read).
fn completes_a_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    use notify::EventKind;
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

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
    /// A changed file was being written during the last refresh (it stays at its previous
    /// version until a later refresh reads it whole).
    pending: bool,
    /// When each Ingress without a creationTimestamp of its own was first read (the start
    /// of that refresh), stamped into it as the API server stamps a new object: ingress-nginx
    /// gives a contested path to the oldest Ingress, so one added to the folder later must
    /// not take a location from those read before it. Ingresses first read by the same
    /// refresh tie and are ordered by namespace/name.
    first_seen: HashMap<Key, Time>,
    /// The start of the refresh in progress.
    refresh_time: Option<Time>,
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
            pending: false,
            first_seen: HashMap::new(),
            refresh_time: None,
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// Whether the last refresh left a file that was being written.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Bring the snapshot up to date with the folder, reading every changed file. Returns
    /// whether anything changed.
    pub fn refresh(&mut self) -> bool {
        self.refresh_with(None)
    }

    /// Like [`DirState::refresh`]; with `Some(whole)` a changed file is read only when `whole`
    /// holds a completing event for it (closed after writing, created, renamed) no older than
    /// its last modification, or it has not changed for [`SETTLE`]; others wait (see
    /// [`DirState::pending`]), so a file being rewritten in place is never read half-written.
    pub fn refresh_with(&mut self, whole: Option<&Completed>) -> bool {
        self.pending = false;
        self.refresh_time = None;
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
            let st = st.unwrap_or((0, 0, 0));
            let settled = || now_ns() - st.2 >= SETTLE.as_nanos() as i128;
            // the completing event came after the last write (not before a new rewrite began)
            let complete = |w: &Completed| w.get(&path).is_some_and(|at| st.2 <= *at);
            if whole.is_some_and(|w| !complete(w)) && !settled() {
                self.pending = true;
                continue;
            }
            let Some(read) = Self::read_stable(&path, st) else {
                // being written: the previous version stays until the file is still
                self.pending = true;
                continue;
            };
            let parsed = Self::parse_file(&path.display().to_string(), read);
            // A version that drops objects is applied once it has settled: an in-place
            // rewrite caught half-way (truncated, partly written) looks exactly like that, and
            // a real removal can wait half a second.
            if whole.is_some() && !settled() && self.loses_objects(&path, &parsed) {
                self.pending = true;
                continue;
            }
            let previous = self.remove_file(&path);
            self.add_file(&path, st, parsed, previous);
            changed = true;
        }
        if changed {
            let ingresses = &self.snap.ingresses;
            self.first_seen.retain(|k, _| ingresses.contains_key(k));
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

    /// Take a file's objects out of the snapshot; they are returned (its previous version).
    fn remove_file(&mut self, path: &Path) -> Option<Snapshot> {
        let entry = self.files.remove(path)?;
        let mut prev = Snapshot::default();
        for k in entry.keys {
            self.owner.remove(&k);
            let s = &mut self.snap;
            macro_rules! take {
                ($field:ident, $k:expr) => {
                    if let Some(o) = Arc::make_mut(&mut s.$field).remove(&$k) {
                        Arc::make_mut(&mut prev.$field).insert($k, o);
                    }
                };
            }
            match k {
                ObjKey::Ingress(k) => take!(ingresses, k),
                ObjKey::IngressClass(k) => take!(ingress_classes, k),
                ObjKey::Service(k) => take!(services, k),
                ObjKey::EndpointSlice(k) => take!(endpoint_slices, k),
                ObjKey::Secret(k) => take!(secrets, k),
                ObjKey::ConfigMap(k) => take!(config_maps, k),
            }
        }
        Some(prev)
    }

    /// Read a file whose stamp changed. `None` while it is being written: its stamp changed
    /// again during the read (the previous version stays until the next event or poll).
    fn read_stable(path: &Path, before: Stamp) -> Option<std::io::Result<Vec<u8>>> {
        let bytes = std::fs::read(path);
        match stamp(path) {
            Some(after) if after == before => Some(bytes),
            None => Some(bytes),
            Some(_) => None,
        }
    }

    fn parse_file(name: &str, read: std::io::Result<Vec<u8>>) -> Snapshot {
        let mut parsed = Snapshot::default();
        match read {
            Ok(bytes) => load_bytes(name, &bytes, &mut parsed),
            Err(e) => parsed.diagnostics.push(Diagnostic::rejected(
                ObjectRef::file(name),
                "ManifestUnreadable",
                format!("{name}: {e}"),
            )),
        }
        parsed
    }

    /// Whether the new version of `path` lacks an object its current version defines.
    fn loses_objects(&self, path: &Path, parsed: &Snapshot) -> bool {
        let Some(entry) = self.files.get(path) else {
            return false;
        };
        entry.keys.iter().any(|k| match k {
            ObjKey::Ingress(k) => !parsed.ingresses.contains_key(k),
            ObjKey::IngressClass(k) => !parsed.ingress_classes.contains_key(k),
            ObjKey::Service(k) => !parsed.services.contains_key(k),
            ObjKey::EndpointSlice(k) => !parsed.endpoint_slices.contains_key(k),
            ObjKey::Secret(k) => !parsed.secrets.contains_key(k),
            ObjKey::ConfigMap(k) => !parsed.config_maps.contains_key(k),
        })
    }

    fn add_file(
        &mut self,
        path: &Path,
        stamp: Stamp,
        mut parsed: Snapshot,
        previous: Option<Snapshot>,
    ) {
        let name = path.display().to_string();
        // Last good per object: when a document of the file no longer parses, the objects the
        // previous version defined and this one does not are kept (the broken document is
        // most likely where they were), with a warning; a file that parses clean drops them.
        let broken = parsed
            .diagnostics
            .iter()
            .any(|d| d.reason == "ManifestParseError" || d.reason == "ManifestUnreadable");
        if let (true, Some(prev)) = (broken, previous) {
            keep_vanished(&name, prev, &mut parsed);
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
                for (k, mut o) in Arc::unwrap_or_clone(std::mem::take(&mut parsed.$field)) {
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
                    Arc::make_mut(&mut self.snap.$field).insert(k, o);
                }
            };
        }
        let now = self
            .refresh_time
            .get_or_insert_with(|| Time(k8s_openapi::jiff::Timestamp::now()))
            .clone();
        for (k, o) in Arc::make_mut(&mut parsed.ingresses).iter_mut() {
            if o.metadata.creation_timestamp.is_none() {
                let at = self.first_seen.entry(k.clone()).or_insert(now.clone());
                Arc::make_mut(o).metadata.creation_timestamp = Some(at.clone());
            }
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

/// Put back into `parsed` the objects of `prev` (the file's previous version) that `parsed`
/// lacks, each with a warning: the file has a document that does not parse now.
fn keep_vanished(file: &str, prev: Snapshot, parsed: &mut Snapshot) {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($field:ident, $kind:literal) => {
            for (k, o) in Arc::unwrap_or_clone(prev.$field) {
                if !parsed.$field.contains_key(&k) {
                    kept.push(format!("{} {:?}", $kind, k));
                    Arc::make_mut(&mut parsed.$field).insert(k, o);
                }
            }
        };
    }
    keep!(ingresses, "Ingress");
    keep!(ingress_classes, "IngressClass");
    keep!(services, "Service");
    keep!(endpoint_slices, "EndpointSlice");
    keep!(secrets, "Secret");
    keep!(config_maps, "ConfigMap");
    for what in kept {
        parsed.diagnostics.push(Diagnostic::warning(
            ObjectRef::file(file),
            "KeptLastGoodVersion",
            format!(
                "{file}: {what} is kept as last read: a document of the file does not parse now (fix it, or delete the object to remove it)"
            ),
        ));
    }
}

/// The resourceVersion the folder source stamps on every object of a parse (compile reuses a
/// unit only for the same version).
trait SetVersion {
    fn stamp(&mut self, version: &str);
}

/// Every kind is held in an `Arc`; just parsed, it is the only reference, so no copy.
impl<
        T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
            + Clone,
    > SetVersion for Arc<T>
{
    fn stamp(&mut self, version: &str) {
        Arc::make_mut(self).metadata_mut().resource_version = Some(version.to_string());
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
    split_document_bytes(text.as_bytes())
        .into_iter()
        // the cuts are at line starts, so each piece of valid UTF-8 is valid UTF-8
        .map(|(line, doc)| (line, std::str::from_utf8(doc).unwrap_or_default()))
        .collect()
}

/// [`split_documents`] on raw bytes (before decoding: a document that is not UTF-8 must not
/// take the others of its file with it).
fn split_document_bytes(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let l = line.strip_suffix(b"\n").unwrap_or(line);
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let is_start = l == b"---" || l.starts_with(b"--- ") || l.starts_with(b"---\t");
        let is_end = l == b"...";
        if is_start || is_end {
            if offset > start {
                docs.push((start_line, &bytes[start..offset]));
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
    if bytes.len() > start {
        docs.push((start_line, &bytes[start..]));
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

/// Parse one file's bytes into `snap`, document by document: a document that is not UTF-8 is
/// reported and skipped alone (the others of the file still load).
pub fn load_bytes(file: &str, bytes: &[u8], snap: &mut Snapshot) {
    for (line, doc) in split_document_bytes(bytes) {
        match std::str::from_utf8(doc) {
            Ok(doc) => load_document(file, line, doc, snap),
            Err(e) => snap.diagnostics.push(Diagnostic::rejected(
                ObjectRef::file(file),
                "ManifestParseError",
                format!("{file}:{line}: the document is not UTF-8 ({e}); this document is skipped"),
            )),
        }
    }
}

/// Parse one file's text into `snap`.
pub fn load_text(file: &str, text: &str, snap: &mut Snapshot) {
    load_bytes(file, text.as_bytes(), snap)
}

/// Parse one document (starting at `line` of `file`) into `snap`.
fn load_document(file: &str, line: usize, doc: &str, snap: &mut Snapshot) {
    if is_blank(doc) {
        return;
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
            return;
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
        "IngressClass" => {
            snap.add_ingress_class(serde_json::from_value::<IngressClass>(v).map_err(e)?)
        }
        "Service" => snap.add_service(serde_json::from_value::<Service>(v).map_err(e)?),
        "EndpointSlice" => {
            snap.add_endpoint_slice(serde_json::from_value::<EndpointSlice>(v).map_err(e)?)
        }
        "Secret" => snap.add_secret(serde_json::from_value::<Secret>(v).map_err(e)?),
        "ConfigMap" => snap.add_config_map(serde_json::from_value::<ConfigMap>(v).map_err(e)?),
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
    /// The snapshot of the last publish (what the admission webhook reviews against).
    pub latest: Arc<arc_swap::ArcSwapOption<Snapshot>>,
}

impl FileSource {
    pub fn new(dir: PathBuf, publisher: Arc<Publisher>) -> Self {
        FileSource {
            state: std::sync::Mutex::new(DirState::new(dir.clone())),
            dir,
            publisher,
            latest: Default::default(),
        }
    }

    fn poll_interval(&self, watching: bool) -> Duration {
        let pending = match self.state.lock() {
            Ok(g) => g.pending(),
            Err(p) => p.into_inner().pending(),
        };
        match (pending, watching) {
            (true, _) => PENDING_RETRY,
            (false, true) => SAFETY_POLL,
            (false, false) => POLL_FALLBACK,
        }
    }

    /// Re-read what changed and publish; `force` publishes even when nothing changed (start).
    /// `whole`: the files known complete (closed after writing, created, renamed) since the
    /// last reload; `None` reads every changed file (start).
    fn reload(&self, force: bool, whole: Option<&Completed>) {
        let mut state = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if state.refresh_with(whole) || force {
            self.publisher.rebuild(state.snapshot());
            self.latest.store(Some(Arc::new(state.snapshot().clone())));
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
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<PathBuf>, i128)>();
        // Set the watch up before the first read so no change slips between the two.
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if completes_a_change(&ev.kind) {
                    let _ = tx.send((ev.paths, now_ns()));
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
        self.reload(true, None);
        tracing::info!(dir = %self.dir.display(), "standalone mode: serving manifests");
        ready.notify_ready();

        let no_events = Completed::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                got = rx.recv(), if watcher.is_some() => {
                    let Some(first) = got else { break };
                    let mut whole = Completed::new();
                    let mut note = |(paths, at): (Vec<PathBuf>, i128)| {
                        for p in paths {
                            let t = whole.entry(p).or_insert(at);
                            *t = (*t).max(at);
                        }
                    };
                    note(first);
                    // coalesce: wait for quiet (HOLDOFF) but no longer than MAX_HOLD
                    let deadline = tokio::time::Instant::now() + MAX_HOLD;
                    loop {
                        let wait = HOLDOFF.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                        match tokio::time::timeout(wait, rx.recv()).await {
                            Ok(Some(more)) => {
                                note(more);
                                if tokio::time::Instant::now() >= deadline {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                    self.reload(false, Some(&whole));
                }
                // no watcher: poll; with one: a safety net for missed events, and a retry of a
                // file that was being written (files changed within SETTLE wait)
                _ = tokio::time::sleep(self.poll_interval(watcher.is_some())) => self.reload(false, Some(&no_events)),
            }
        }
        drop(watcher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC_A: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n}\nspec: {ports: [{port: 80}]}\n";
    const SVC_B: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: n}\nspec: {ports: [{port: 80}]}\n";

    #[test]
    fn a_document_that_is_not_utf8_is_skipped_alone() {
        let mut bytes = SVC_A.as_bytes().to_vec();
        bytes.extend_from_slice(b"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: n}\ndata: {k: \"\xff\"}\n---\n");
        bytes.extend_from_slice(SVC_B.as_bytes());
        let mut s = Snapshot::default();
        load_bytes("f.yaml", &bytes, &mut s);
        assert_eq!(s.services.len(), 2, "{:?}", s.diagnostics);
        assert!(s.config_maps.is_empty());
        assert_eq!(s.diagnostics.len(), 1);
        assert!(
            s.diagnostics[0]
                .message
                .contains("f.yaml:5: the document is not UTF-8"),
            "{}",
            s.diagnostics[0].message
        );
    }

    /// ingress-nginx gives a contested path to the oldest Ingress: an Ingress added to the
    /// folder later (here with a name that sorts first) does not take it, also when the older
    /// one's file is rewritten; Ingresses read by the same refresh are as old as each other.
    #[test]
    fn an_ingress_added_later_is_younger_than_those_read_before() {
        let ing = |name: &str| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: n}}\n\
                 spec: {{rules: [{{host: h.test, http: {{paths: [{{path: /, pathType: Prefix, \
                 backend: {{service: {{name: {name}, port: {{number: 80}}}}}}}}]}}}}]}}\n"
            )
        };
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(dir.path().join("old.yaml"), ing("z-old")).unwrap();
        let mut st = DirState::new(dir.path().to_path_buf());
        assert!(st.refresh());
        let created = |st: &DirState, name: &str| {
            st.snapshot().ingresses[&("n".to_string(), name.to_string())]
                .metadata
                .creation_timestamp
                .clone()
                .expect("stamped")
        };
        let old = created(&st, "z-old");
        std::fs::write(dir.path().join("new.yaml"), ing("a-new")).unwrap();
        // rewritten: keeps the time it was first read
        std::fs::write(
            dir.path().join("old.yaml"),
            format!("{}# edited\n", ing("z-old")),
        )
        .unwrap();
        assert!(st.refresh());
        assert_eq!(created(&st, "z-old"), old);
        assert!(created(&st, "a-new") > old);
        let mut both = DirState::new(dir.path().to_path_buf());
        both.refresh();
        assert_eq!(created(&both, "z-old"), created(&both, "a-new"));
    }

    #[test]
    fn a_file_with_a_broken_document_keeps_what_it_defined_until_it_parses_again() {
        let dir = tempfile::TempDir::new().unwrap();
        let f = dir.path().join("f.yaml");
        std::fs::write(&f, format!("{SVC_A}---\n{SVC_B}")).unwrap();
        let mut st = DirState::new(dir.path().to_path_buf());
        assert!(st.refresh());
        assert_eq!(st.snapshot().services.len(), 2);
        // a typo in b's document: b is kept as last read, with a warning
        std::fs::write(
            &f,
            format!("{SVC_A}---\napiVersion: v1\nkind: Service\nmetadata: {{name: b\n"),
        )
        .unwrap();
        assert!(st.refresh());
        assert_eq!(st.snapshot().services.len(), 2);
        let reasons: Vec<&str> = st.snapshot().diagnostics.iter().map(|d| d.reason).collect();
        assert!(
            reasons.contains(&"ManifestParseError") && reasons.contains(&"KeptLastGoodVersion"),
            "{reasons:?}"
        );
        // clean again without b: b is gone
        std::fs::write(&f, SVC_A).unwrap();
        assert!(st.refresh());
        assert_eq!(st.snapshot().services.len(), 1);
        assert!(st.snapshot().diagnostics.is_empty());
    }

    #[test]
    fn a_file_changed_without_a_completing_event_waits_until_it_settles() {
        let dir = tempfile::TempDir::new().unwrap();
        let f = dir.path().join("f.yaml");
        std::fs::write(&f, format!("{SVC_A}---\n{SVC_B}")).unwrap();
        let mut st = DirState::new(dir.path().to_path_buf());
        st.refresh();
        let svc_c = SVC_B.replace("name: b", "name: c");
        // rewritten in place and growing, with no completing event for it yet (another file's
        // event triggers this refresh), or only the previous rewrite's: waits
        std::fs::write(&f, format!("{SVC_A}---\n{SVC_B}---\n{svc_c}")).unwrap();
        assert!(!st.refresh_with(Some(&Completed::new())));
        assert!(st.pending());
        let early: Completed = [(f.clone(), now_ns() - 5_000_000_000)].into();
        assert!(!st.refresh_with(Some(&early)));
        assert_eq!(
            st.snapshot().services.len(),
            2,
            "the previous version stays"
        );
        // its own close-write event: read
        let whole: Completed = [(f.clone(), now_ns())].into();
        assert!(st.refresh_with(Some(&whole)));
        assert!(!st.pending());
        assert_eq!(st.snapshot().services.len(), 3);
        // a version that drops objects waits until it has settled, even when closed (a
        // rewrite caught half-way looks the same)
        std::fs::write(&f, SVC_A).unwrap();
        let whole: Completed = [(f.clone(), now_ns())].into();
        assert!(!st.refresh_with(Some(&whole)));
        assert!(st.pending());
        assert_eq!(st.snapshot().services.len(), 3);
        let past = std::time::SystemTime::now() - Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(past)
            .unwrap();
        assert!(st.refresh_with(Some(&Completed::new())));
        assert_eq!(st.snapshot().services.len(), 1);
    }

    #[test]
    fn only_events_that_finish_a_change_trigger_a_read() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RenameMode,
        };
        use notify::EventKind;
        assert!(completes_a_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(completes_a_change(&EventKind::Create(CreateKind::File)));
        assert!(completes_a_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(!completes_a_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Content
        ))));
        assert!(!completes_a_change(&EventKind::Access(AccessKind::Read)));
    }

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
