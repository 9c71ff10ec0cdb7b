//! Generated sections of README.md (between `start` and `end` markers): a test compares them
//! with what the code generates, and `PINGRESS_BLESS=1` rewrites them.

use std::sync::Mutex;

/// Blessing one section must not lose another's write (tests of one binary run in parallel).
static README: Mutex<()> = Mutex::new(());

/// README.md as it is now (read under the lock, so never half-written by a blessing test).
pub fn read() -> String {
    let _guard = README.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .unwrap()
}

/// Check (or with `PINGRESS_BLESS` set, rewrite) the README section between `start` and `end`;
/// `how` names the command that regenerates it.
pub fn check_section(start: &str, end: &str, generated: &str, how: &str) {
    let _guard = README.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has the marker {start:?}"))
        + start.len();
    let to = readme[from..]
        .find(end)
        .unwrap_or_else(|| panic!("README has the marker {end:?}"))
        + from;
    if std::env::var_os("PINGRESS_BLESS").is_some() {
        let new = format!("{}{}{}", &readme[..from], generated, &readme[to..]);
        std::fs::write(&path, new).unwrap();
        return;
    }
    assert_eq!(
        &readme[from..to],
        generated,
        "README section {start:?} is stale: run {how}"
    );
}
