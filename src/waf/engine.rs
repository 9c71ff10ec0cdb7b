//! The libmodsecurity 3 engine through `modsecurity-sys` (its C API, `modsecurity/modsecurity.h`,
//! `rules_set.h`, `transaction.h`, `intervention.h`).
//!
//! One `ModSecurity` object per process; a [`RuleSet`] per distinct rules text (see
//! `waf::ruleset`); a [`Tx`] per request, kept in the request's context across Pingora's phases.
//!
//! Every call into the library that touches a transaction runs under one process-wide lock.
//! nginx runs libmodsecurity single-threaded (one event loop per worker); version 3.0.9, the one
//! Debian ships, predates the upstream work that made concurrent transactions safe (3.0.13), so a
//! request must not be able to crash pingress where the same version under nginx survives. The
//! work under the lock is bounded by the rules (`SecPcreMatchLimit`) and the body limits; audit
//! log writes leave through `waf::audit` (a pipe drained by its own thread), never a blocking
//! write to stdout from a proxy thread.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use modsecurity_sys as sys;

extern "C" {
    fn free(p: *mut c_void);
}

/// The lock every transaction call runs under (see the module doc).
fn engine_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Engine(*mut sys::ModSecurity);
// SAFETY: the ModSecurity object is created once and only used under `engine_lock`.
unsafe impl Send for Engine {}
unsafe impl Sync for Engine {}

/// libmodsecurity's server log: each matched rule that logs (nginx's error log under
/// ingress-nginx).
unsafe extern "C" fn server_log(_data: *mut c_void, msg: *const c_void) {
    if msg.is_null() || !tracing::enabled!(target: "modsecurity", tracing::Level::INFO) {
        return;
    }
    // SAFETY: libmodsecurity passes a NUL-terminated message.
    let text = unsafe { CStr::from_ptr(msg as *const c_char) }.to_string_lossy();
    tracing::info!(target: "modsecurity", "{text}");
}

fn engine() -> *mut sys::ModSecurity {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            // SAFETY: plain constructor calls; the pointer lives for the process.
            unsafe {
                let ms = sys::msc_init();
                let info = CString::new(format!("pingress/{}", env!("CARGO_PKG_VERSION")))
                    .unwrap_or_default();
                sys::msc_set_connector_info(ms, info.as_ptr());
                sys::msc_set_log_cb(ms, Some(server_log));
                Engine(ms)
            }
        })
        .0
}

/// Compiled rules (libmodsecurity's `RulesSet`), shared by every route with the same text.
pub struct RuleSet(*mut sys::RulesSet);
// SAFETY: a RulesSet is read-only once built and only used under `engine_lock`.
unsafe impl Send for RuleSet {}
unsafe impl Sync for RuleSet {}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleSet")
    }
}

impl Drop for RuleSet {
    fn drop(&mut self) {
        let _g = engine_lock();
        // SAFETY: the set was created by msc_create_rules_set; no transaction refers to it any
        // more (each holds an Arc to it).
        unsafe {
            sys::msc_rules_cleanup(self.0);
        }
    }
}

/// Take a C string libmodsecurity allocated (and free it).
unsafe fn take_c_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: by the caller: a NUL-terminated string from malloc.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { free(p as *mut c_void) };
    Some(s)
}

impl RuleSet {
    /// Parse `text` (ModSecurity's rule language). `Err` carries the engine's message.
    pub fn compile(text: &str) -> Result<RuleSet, String> {
        let c = CString::new(text).map_err(|_| "the rules contain a NUL byte".to_string())?;
        engine();
        // SAFETY: FFI with valid pointers; the error string is freed by take_c_string.
        unsafe {
            let rules = sys::msc_create_rules_set();
            let set = RuleSet(rules);
            let mut err: *const c_char = std::ptr::null();
            let n = {
                let _g = engine_lock();
                sys::msc_rules_add(rules, c.as_ptr(), &mut err)
            };
            let msg = take_c_string(err);
            if n < 0 {
                return Err(msg
                    .map(|m| m.trim().to_string())
                    .unwrap_or_else(|| "the rules do not parse".into()));
            }
            Ok(set)
        }
    }
}

/// What the engine decided: answer `status`, or redirect to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    pub status: u16,
    pub url: Option<String>,
    /// The engine's log line of the rule ("... [id \"107\"] [msg \"UA blocked\"] ...").
    pub log: Option<String>,
}

/// One request's transaction.
pub struct Tx {
    ptr: *mut sys::Transaction,
    _rules: Arc<RuleSet>,
}
// SAFETY: a transaction is used by one request task at a time, each call under `engine_lock`.
unsafe impl Send for Tx {}
unsafe impl Sync for Tx {}

impl Drop for Tx {
    fn drop(&mut self) {
        let _g = engine_lock();
        // SAFETY: created by msc_new_transaction*, cleaned up once.
        unsafe { sys::msc_transaction_cleanup(self.ptr) };
    }
}

/// A header name and value as bytes.
pub type HeaderRef<'a> = (&'a [u8], &'a [u8]);

/// The connection and request line of a transaction.
pub struct RequestHead<'a> {
    pub client_ip: &'a str,
    pub client_port: u16,
    pub server_ip: &'a str,
    pub server_port: u16,
    /// The request target as sent.
    pub uri: &'a str,
    pub method: &'a str,
    /// "1.0", "1.1" or "2.0" (as ModSecurity-nginx passes it).
    pub version: &'a str,
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl Tx {
    pub fn new(rules: &Arc<RuleSet>, id: Option<&str>) -> Option<Tx> {
        let ms = engine();
        let data = std::ptr::null_mut();
        let _g = engine_lock();
        // SAFETY: valid engine and rules; the id is copied by the library.
        let ptr = unsafe {
            match id {
                Some(id) => {
                    let id = cstr(id);
                    sys::msc_new_transaction_with_id(ms, rules.0, id.as_ptr() as *mut c_char, data)
                }
                None => sys::msc_new_transaction(ms, rules.0, data),
            }
        };
        if ptr.is_null() {
            return None;
        }
        Some(Tx {
            ptr,
            _rules: rules.clone(),
        })
    }

    /// The intervention pending after the last call, if any (caller holds the lock).
    fn intervention(&mut self) -> Option<Intervention> {
        let mut it = sys::ModSecurityIntervention {
            status: 200,
            pause: 0,
            url: std::ptr::null_mut(),
            log: std::ptr::null_mut(),
            disruptive: 0,
        };
        // SAFETY: `it` is a valid out-parameter; url/log are malloc'd by the library.
        let disruptive = unsafe { sys::msc_intervention(self.ptr, &mut it) };
        let url = unsafe { take_c_string(it.url) };
        let log = unsafe { take_c_string(it.log) };
        if disruptive == 0 {
            return None;
        }
        let status = u16::try_from(it.status).unwrap_or(403);
        if url.is_none() && status == 200 {
            return None;
        }
        Some(Intervention { status, url, log })
    }

    /// Phase 1: connection, request line and headers.
    pub fn request_head<'h>(
        &mut self,
        head: &RequestHead<'_>,
        headers: impl Iterator<Item = HeaderRef<'h>>,
    ) -> Option<Intervention> {
        let client = cstr(head.client_ip);
        let server = cstr(head.server_ip);
        let uri = cstr(head.uri);
        let method = cstr(head.method);
        let version = cstr(head.version);
        let _g = engine_lock();
        // SAFETY: valid transaction and NUL-terminated strings; header bytes are copied.
        unsafe {
            sys::msc_process_connection(
                self.ptr,
                client.as_ptr(),
                c_int::from(head.client_port),
                server.as_ptr(),
                c_int::from(head.server_port),
            );
            if let Some(i) = self.intervention() {
                return Some(i);
            }
            sys::msc_process_uri(self.ptr, uri.as_ptr(), method.as_ptr(), version.as_ptr());
            if let Some(i) = self.intervention() {
                return Some(i);
            }
            for (k, v) in headers {
                sys::msc_add_n_request_header(self.ptr, k.as_ptr(), k.len(), v.as_ptr(), v.len());
            }
            sys::msc_process_request_headers(self.ptr);
        }
        self.intervention()
    }

    /// Phase 2, a piece of the request body.
    pub fn request_body_piece(&mut self, piece: &[u8]) -> Option<Intervention> {
        let _g = engine_lock();
        // SAFETY: the bytes are copied by the library.
        unsafe { sys::msc_append_request_body(self.ptr, piece.as_ptr(), piece.len()) };
        self.intervention()
    }

    /// Phase 2: the request body is whole (also called without a body).
    pub fn request_body_done(&mut self) -> Option<Intervention> {
        let _g = engine_lock();
        // SAFETY: valid transaction.
        unsafe { sys::msc_process_request_body(self.ptr) };
        self.intervention()
    }

    /// Phase 3: the response status line and headers.
    pub fn response_head<'h>(
        &mut self,
        status: u16,
        protocol: &str,
        headers: impl Iterator<Item = HeaderRef<'h>>,
    ) -> Option<Intervention> {
        let proto = cstr(protocol);
        let _g = engine_lock();
        // SAFETY: valid transaction; header bytes are copied.
        unsafe {
            for (k, v) in headers {
                sys::msc_add_n_response_header(self.ptr, k.as_ptr(), k.len(), v.as_ptr(), v.len());
            }
            sys::msc_process_response_headers(self.ptr, c_int::from(status), proto.as_ptr());
        }
        self.intervention()
    }

    /// Phase 4, a piece of the response body (the engine keeps what its limits allow).
    pub fn response_body_piece(&mut self, piece: &[u8]) -> Option<Intervention> {
        let _g = engine_lock();
        // SAFETY: the bytes are copied by the library.
        unsafe { sys::msc_append_response_body(self.ptr, piece.as_ptr(), piece.len()) };
        self.intervention()
    }

    /// Phase 4: the response body is whole.
    pub fn response_body_done(&mut self) -> Option<Intervention> {
        let _g = engine_lock();
        // SAFETY: valid transaction.
        unsafe { sys::msc_process_response_body(self.ptr) };
        self.intervention()
    }

    /// Phase 5: logging (the audit log entry), with the status the client got.
    pub fn logging(&mut self, status: u16) {
        let _g = engine_lock();
        // SAFETY: valid transaction.
        unsafe {
            sys::msc_update_status_code(self.ptr, c_int::from(status));
            sys::msc_process_logging(self.ptr);
        }
    }
}
