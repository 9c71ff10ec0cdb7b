//! Pure TLS compile: Ingress `spec.tls` + Secrets -> the per-host certificate map
//! ([`TlsTable`]), and annotations + ConfigMap -> each route's [`TlsPolicy`].
//!
//! Host -> Secret follows ingress-nginx (`extractTLSSecretName`, `createServers`): for each
//! rule host of a served Ingress (oldest first), the first `spec.tls` entry whose `hosts`
//! contains it (case-insensitive); failing that, any `spec.tls` Secret of the same Ingress whose
//! certificate covers the host. The first Ingress providing a valid certificate for a host wins.
//! A host listed in `spec.tls` whose Secret is missing or invalid keeps the default certificate
//! and still counts as TLS-enabled (ssl-redirect applies). Certificates are checked here:
//! parse, key/certificate match, validity period against `Snapshot::now`, host coverage.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use pingora::utils::tls::{CertKey, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::annotations::IngressAnnotations;
use crate::configmap::tls::TlsConfig;
use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::route::tls::{RedirectPolicy, ServedCert, TlsPolicy, TlsTable, UpstreamTls};
use crate::snapshot::Snapshot;

/// A served Ingress as the TLS pass needs it.
pub struct ServedTls<'a> {
    pub namespace: &'a str,
    pub ingress: &'a Ingress,
    pub object: &'a ObjectRef,
    /// Rule hosts (lower-case, `*.x` wildcards; `""` for rules without host, skipped).
    pub hosts: &'a [String],
    /// `auth-tls-*` of the Ingress.
    pub auth_tls: Option<&'a crate::annotations::auth_tls::AuthTlsSpec>,
}

/// `auth-tls-*` per host: the oldest Ingress of a host that sets `auth-tls-secret` decides
/// (`served` is in age order). A CA Secret that cannot be used makes the host fail closed.
pub fn compile_client_auth(
    snap: &Snapshot,
    served: &[ServedTls<'_>],
    allow_cross_namespace: bool,
    diags: &mut Vec<Diagnostic>,
) -> HashMap<Box<str>, Arc<crate::route::tls::ClientAuth>> {
    let mut out: HashMap<Box<str>, Arc<crate::route::tls::ClientAuth>> = HashMap::new();
    for ing in served {
        let Some(spec) = ing.auth_tls else { continue };
        let ns = spec.namespace.as_deref().unwrap_or(ing.namespace);
        let built = if ns != ing.namespace && !allow_cross_namespace {
            Err(format!(
                "auth-tls-secret {ns}/{} is in another namespace and allow-cross-namespace-resources is false",
                spec.secret
            ))
        } else {
            client_verifier(snap, ns, &spec.secret)
        };
        if let Err(m) = &built {
            diags.push(Diagnostic::warning(
                ing.object.clone(),
                "AuthTLSSecretInvalid",
                format!("{m}: the Ingress's hosts answer 503 on HTTPS (fail closed, never open)"),
            ));
        }
        let (verifier, denied) = match built {
            Ok(v) => (Some(v), None),
            Err(m) => (None, Some(m.into())),
        };
        let ca = Arc::new(crate::route::tls::ClientAuth {
            verifier,
            mode: spec.verify,
            depth: spec.depth,
            match_cn: spec.match_cn.as_deref().and_then(|re| {
                regex::RegexBuilder::new(re)
                    .size_limit(1 << 20)
                    .build()
                    .ok()
            }),
            pass_certificate: spec.pass_certificate,
            error_page: spec.error_page.as_deref().map(Into::into),
            denied,
            secret: format!("{ns}/{}", spec.secret).into(),
        });
        for host in ing.hosts.iter().filter(|h| !h.is_empty()) {
            out.entry(host.as_str().into())
                .or_insert_with(|| ca.clone());
        }
    }
    out
}

/// A verifier of client certificate chains against a Secret's `ca.crt` (and `ca.crl`).
fn client_verifier(
    snap: &Snapshot,
    ns: &str,
    name: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let secret = snap
        .secrets
        .get(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| format!("auth-tls-secret {ns}/{name} not found"))?;
    let ca = secret_value(secret, "ca.crt")
        .ok_or_else(|| format!("auth-tls-secret {ns}/{name} has no ca.crt"))?;
    let certs = parse_pem_certs(ca, "ca.crt")
        .map_err(|e| format!("auth-tls-secret {ns}/{name}: {}", e.message))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("auth-tls-secret {ns}/{name}: ca.crt: {e}"))?;
    }
    let mut crls = Vec::new();
    if let Some(pem) = secret_value(secret, "ca.crl") {
        for crl in rustls::pki_types::CertificateRevocationListDer::pem_slice_iter(pem) {
            crls.push(crl.map_err(|e| format!("auth-tls-secret {ns}/{name}: ca.crl: {e}"))?);
        }
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .with_crls(crls)
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("auth-tls-secret {ns}/{name}: {e}"))
}

/// Why a Secret cannot be served.
#[derive(Clone, Debug)]
pub struct CertError {
    pub reason: &'static str,
    pub message: String,
}

fn err(reason: &'static str, message: impl Into<String>) -> CertError {
    CertError {
        reason,
        message: message.into(),
    }
}

/// `data` (base64-decoded by the API types), else `stringData` (handy in standalone manifests).
pub(crate) fn secret_value<'s>(s: &'s Secret, key: &str) -> Option<&'s [u8]> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return Some(&v.0);
    }
    s.string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.as_bytes())
}

/// Certificates of a PEM bundle (leaf first). Errors when there is none or one is garbage.
pub fn parse_pem_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        match c {
            Ok(c) => {
                if x509_parser::parse_x509_certificate(&c).is_err() {
                    return Err(err(
                        "InvalidTLSSecret",
                        format!("{what}: a certificate is not valid X.509"),
                    ));
                }
                certs.push(c);
            }
            Err(e) => {
                return Err(err(
                    "InvalidTLSSecret",
                    format!("{what}: not a PEM certificate ({e:?})"),
                ))
            }
        }
    }
    if certs.is_empty() {
        return Err(err(
            "InvalidTLSSecret",
            format!("{what} holds no PEM certificate"),
        ));
    }
    Ok(certs)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse and check a TLS Secret: type, PEM chain, key (PKCS#1, PKCS#8 or SEC1; RSA, ECDSA or
/// Ed25519), key/certificate match, validity at `now` (Unix seconds; `None` skips the check).
pub fn parse_tls_secret(
    namespace: &str,
    name: &str,
    s: &Secret,
    now: Option<i64>,
) -> Result<ServedCert, CertError> {
    let ty = s.type_.as_deref().unwrap_or("Opaque");
    if ty != "kubernetes.io/tls" && ty != "Opaque" {
        return Err(err(
            "WrongSecretType",
            format!("Secret {namespace}/{name} has type {ty:?}; a TLS Secret must be of type kubernetes.io/tls"),
        ));
    }
    let (Some(crt), Some(key)) = (secret_value(s, "tls.crt"), secret_value(s, "tls.key")) else {
        return Err(err(
            "InvalidTLSSecret",
            format!("Secret {namespace}/{name} needs both tls.crt and tls.key"),
        ));
    };
    let chain = parse_pem_certs(crt, &format!("Secret {namespace}/{name} tls.crt"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
        err(
            "InvalidTLSSecret",
            format!("Secret {namespace}/{name} tls.key holds no PEM private key (PKCS#1, PKCS#8 or SEC1)"),
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => err(
            "TLSKeyMismatch",
            format!("Secret {namespace}/{name}: tls.key does not match the certificate in tls.crt"),
        ),
        e => err(
            "InvalidTLSSecret",
            format!("Secret {namespace}/{name}: unusable private key ({e})"),
        ),
    })?;
    let leaf = certified.cert[0].clone();
    let (_, x) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|_| err("InvalidTLSSecret", "leaf certificate is not valid X.509"))?;
    let not_before = x.validity().not_before.timestamp();
    let not_after = x.validity().not_after.timestamp();
    if let Some(now) = now {
        if now > not_after {
            return Err(err(
                "TLSCertificateExpired",
                format!(
                    "Secret {namespace}/{name}: the certificate expired at {} (Unix {not_after})",
                    x.validity().not_after
                ),
            ));
        }
        if now < not_before {
            return Err(err(
                "TLSCertificateNotYetValid",
                format!(
                    "Secret {namespace}/{name}: the certificate is not valid before {} (Unix {not_before})",
                    x.validity().not_before
                ),
            ));
        }
    }
    let common_name = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                dns_names.push(d.to_ascii_lowercase().into_boxed_str());
            }
        }
    }
    let serial = hex(x.tbs_certificate.raw_serial());
    Ok(ServedCert {
        key: Arc::new(certified),
        namespace: namespace.into(),
        secret: name.into(),
        common_name: common_name.into(),
        dns_names,
        not_after,
        serial: serial.into(),
    })
}

/// Whether a certificate name (SAN or CN) matches a host (`*.x` hosts need the same wildcard).
fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if pattern == host {
        return true;
    }
    if host.starts_with("*.") {
        return false;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(parent), Some((label, rest))) => !label.is_empty() && rest == parent,
        _ => false,
    }
}

/// RFC 6125: the DNS SANs when there are any, else the subject CN (legacy).
pub fn covers(c: &ServedCert, host: &str) -> bool {
    if c.dns_names.is_empty() {
        return !c.common_name.is_empty() && name_matches(&c.common_name, host);
    }
    c.dns_names.iter().any(|n| name_matches(n, host))
}

/// Parses each Secret once per compile.
pub struct SecretCache<'s> {
    snap: &'s Snapshot,
    parsed: BTreeMap<(String, String), Result<Arc<ServedCert>, CertError>>,
}

impl<'s> SecretCache<'s> {
    pub fn new(snap: &'s Snapshot) -> Self {
        SecretCache {
            snap,
            parsed: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, ns: &str, name: &str) -> Result<Arc<ServedCert>, CertError> {
        let key = (ns.to_string(), name.to_string());
        let snap = self.snap;
        self.parsed
            .entry(key)
            .or_insert_with_key(|k| match snap.secrets.get(k) {
                None => Err(err(
                    "TLSSecretNotFound",
                    format!("Secret {ns}/{name} does not exist"),
                )),
                Some(s) => parse_tls_secret(ns, name, s, snap.now).map(Arc::new),
            })
            .clone()
    }
}

/// Build the per-host certificate map. `default_cert` is `--default-ssl-certificate`.
pub fn compile_tls(
    snap: &Snapshot,
    served: &[ServedTls<'_>],
    default_cert: Option<&(String, String)>,
    diags: &mut Vec<Diagnostic>,
) -> TlsTable {
    let mut table = TlsTable::default();
    let mut cache = SecretCache::new(snap);
    if let Some((ns, name)) = default_cert {
        match cache.get(ns, name) {
            Ok(c) => table.default_cert = Some(c),
            Err(e) => diags.push(Diagnostic::warning(
                ObjectRef::new("Secret", ns, name),
                e.reason,
                format!(
                    "--default-ssl-certificate: {}; the generated self-signed certificate is used instead",
                    e.message
                ),
            )),
        }
    }
    for ing in served {
        let entries = ing
            .ingress
            .spec
            .as_ref()
            .and_then(|s| s.tls.as_deref())
            .unwrap_or(&[]);
        if entries.is_empty() {
            continue;
        }
        // TLS hosts that no rule of this Ingress serves
        for (i, e) in entries.iter().enumerate() {
            for h in e.hosts.as_deref().unwrap_or(&[]) {
                let h = h.to_ascii_lowercase();
                if !ing.hosts.contains(&h) {
                    diags.push(Diagnostic::warning(
                        ing.object.clone(),
                        "TLSHostWithoutRule",
                        format!("spec.tls[{i}] lists host {h:?} but no rule of this Ingress has it; ignored"),
                    ));
                }
            }
        }
        for host in ing.hosts.iter().filter(|h| !h.is_empty()) {
            if table.get(host).is_some_and(|h| h.cert.is_some()) {
                continue; // an older Ingress already provides a certificate
            }
            let listed = entries.iter().find(|e| {
                e.hosts
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(host))
            });
            match listed {
                Some(e) => {
                    let secret = e.secret_name.as_deref().unwrap_or("");
                    if secret.is_empty() {
                        table.insert(host, None); // no secretName: the default certificate
                        continue;
                    }
                    let cert = match cache.get(ing.namespace, secret) {
                        Ok(c) if covers(&c, host) => Some(c),
                        Ok(c) => {
                            diags.push(Diagnostic::warning(
                                ing.object.clone(),
                                "TLSHostNotCovered",
                                format!(
                                    "host {host:?}: the certificate of Secret {}/{} is for {} and does not cover it; the default certificate is used",
                                    ing.namespace,
                                    secret,
                                    cert_names(&c)
                                ),
                            ));
                            None
                        }
                        Err(e) => {
                            diags.push(Diagnostic::warning(
                                ing.object.clone(),
                                e.reason,
                                format!(
                                    "host {host:?}: {}; the default certificate is used",
                                    e.message
                                ),
                            ));
                            None
                        }
                    };
                    table.insert(host, cert);
                }
                None => {
                    // ingress-nginx: any TLS Secret of the Ingress whose certificate covers
                    // the host
                    for e in entries {
                        let secret = e.secret_name.as_deref().unwrap_or("");
                        if secret.is_empty() {
                            continue;
                        }
                        if let Ok(c) = cache.get(ing.namespace, secret) {
                            if covers(&c, host) {
                                table.insert(host, Some(c));
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    table
}

fn cert_names(c: &ServedCert) -> String {
    if c.dns_names.is_empty() {
        format!("CN {:?}", c.common_name)
    } else {
        c.dns_names.join(", ")
    }
}

/// The redirect policy of one route: annotations over ConfigMap defaults, and whether the
/// Ingress path is one of `no-tls-redirect-locations`.
pub fn redirect_policy(ann: &IngressAnnotations, cfg: &TlsConfig, path: &str) -> RedirectPolicy {
    RedirectPolicy {
        ssl_redirect: ann.ssl.ssl_redirect.unwrap_or(cfg.ssl_redirect),
        force_ssl_redirect: ann.ssl.force_ssl_redirect.unwrap_or(cfg.force_ssl_redirect),
        preserve_trailing_slash: ann
            .ssl
            .preserve_trailing_slash
            .unwrap_or(cfg.preserve_trailing_slash),
        exempt: !path.is_empty()
            && cfg
                .no_tls_redirect_locations
                .iter()
                .any(|l| path.starts_with(l.as_str())),
    }
}

/// The upstream TLS settings of an Ingress; `proxy-ssl-secret` is resolved here. A Secret that
/// is missing, in another namespace, or invalid is a warning and the routes answer 503 (fail
/// closed: the user asked for a verified or client-authenticated upstream).
pub fn upstream_tls(
    ann: &IngressAnnotations,
    namespace: &str,
    snap: &Snapshot,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> Arc<UpstreamTls> {
    let a = &ann.upstream_tls;
    let mut u = UpstreamTls {
        protocol: a.protocol,
        verify: a.verify,
        name: a.name.as_deref().map(Into::into),
        server_name: a.server_name,
        ..UpstreamTls::default()
    };
    if let Some(raw) = &a.secret {
        match proxy_ssl_secret(raw, namespace, snap) {
            Ok((ca, client)) => {
                u.ca = ca;
                u.client_cert = client;
            }
            Err(m) => {
                diags.push(Diagnostic::warning(
                    object.clone(),
                    "InvalidProxySSLSecret",
                    format!("proxy-ssl-secret {raw:?}: {m}; the Ingress's paths answer 503"),
                ));
                u.denied = true;
            }
        }
        u.secret = Some(raw.as_str().into());
    }
    Arc::new(u)
}

type SecretParts = (Option<Arc<[WrappedX509]>>, Option<Arc<CertKey>>);

fn proxy_ssl_secret(raw: &str, namespace: &str, snap: &Snapshot) -> Result<SecretParts, String> {
    let (ns, name) = match raw.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => (ns, name),
        _ => return Err("must be namespace/name".into()),
    };
    if ns != namespace {
        return Err(format!(
            "refers to namespace {ns:?}; cross-namespace Secrets are not allowed (allow-cross-namespace-resources is false)"
        ));
    }
    let s = snap
        .secrets
        .get(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| format!("Secret {ns}/{name} does not exist"))?;
    let ca = match secret_value(s, "ca.crt") {
        Some(pem) => {
            let certs = parse_pem_certs(pem, "ca.crt").map_err(|e| e.message)?;
            let wrapped: Vec<WrappedX509> = certs
                .into_iter()
                .map(|c| WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509))
                .collect();
            Some(Arc::from(wrapped))
        }
        None => None,
    };
    let client = match (secret_value(s, "tls.crt"), secret_value(s, "tls.key")) {
        (Some(crt), Some(key)) => {
            let certs = parse_pem_certs(crt, "tls.crt").map_err(|e| e.message)?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|_| "tls.key holds no PEM private key".to_string())?;
            // check the pair before handing it to Pingora
            CertifiedKey::from_der(
                certs.clone(),
                key.clone_key(),
                &rustls::crypto::ring::default_provider(),
            )
            .map_err(|e| format!("tls.crt/tls.key unusable: {e}"))?;
            Some(Arc::new(CertKey::new(
                certs.into_iter().map(|c| c.to_vec()).collect(),
                key.secret_der().to_vec(),
            )))
        }
        _ => None,
    };
    if ca.is_none() && client.is_none() {
        return Err(format!(
            "Secret {ns}/{name} has neither ca.crt nor tls.crt/tls.key"
        ));
    }
    Ok((ca, client))
}

/// The TLS policy of a route.
pub fn route_policy(
    ann: &IngressAnnotations,
    cfg: &TlsConfig,
    path: &str,
    upstream: &Arc<UpstreamTls>,
) -> TlsPolicy {
    TlsPolicy {
        redirect: redirect_policy(ann, cfg, path),
        upstream: upstream.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_matching() {
        assert!(name_matches("a.example.com", "a.example.com"));
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("*.example.com", "*.example.com"));
        assert!(!name_matches("a.example.com", "*.example.com"));
        assert!(name_matches("A.Example.com", "a.example.com"));
    }

    #[test]
    fn garbage_pem_is_a_diagnostic() {
        let e = parse_pem_certs(b"not a pem", "x").unwrap_err();
        assert_eq!(e.reason, "InvalidTLSSecret");
        let e = parse_pem_certs(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "x",
        )
        .unwrap_err();
        assert_eq!(e.reason, "InvalidTLSSecret");
    }

    #[test]
    fn exempt_locations() {
        let cfg = TlsConfig::default();
        let ann = IngressAnnotations::default();
        assert!(redirect_policy(&ann, &cfg, "/.well-known/acme-challenge").exempt);
        assert!(redirect_policy(&ann, &cfg, "/.well-known/acme-challenge/x").exempt);
        assert!(!redirect_policy(&ann, &cfg, "/").exempt);
        assert!(!redirect_policy(&ann, &cfg, "").exempt);
    }
}
