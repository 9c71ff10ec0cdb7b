//! The HTTPS listener's runtime side: the SNI certificate resolver that reads the live route
//! table, the generated default ("fake") certificate, and the process crypto provider that
//! carries ConfigMap `ssl-protocols` / `ssl-ciphers`.
//!
//! Invariant: a handshake gets the certificate of its SNI host (exact, then wildcard) from the
//! table current at that moment, else the default certificate. Never another host's: unknown
//! names, no SNI, and hosts whose Secret is missing or invalid all get the default.

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::configmap::tls::TlsConfig;
use crate::publish::TableStore;

/// Subject of the generated default certificate (as ingress-nginx's fake certificate).
pub const FAKE_CN: &str = "Kubernetes Ingress Controller Fake Certificate";
pub const FAKE_O: &str = "Acme Co";
/// SAN of ingress-nginx's fake certificate.
pub const FAKE_SAN: &str = "ingress.local";

/// Chooses the certificate of each handshake from the current route table.
pub struct SniResolver {
    store: TableStore,
    /// The generated self-signed certificate, used when `--default-ssl-certificate` is not set
    /// or not valid.
    fallback: Arc<CertifiedKey>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl SniResolver {
    pub fn new(store: TableStore, fallback: Arc<CertifiedKey>) -> Self {
        SniResolver { store, fallback }
    }

    /// The certificate for an SNI name (`None`: no SNI).
    pub fn choose(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        self.choose_in(&self.store.load(), sni)
    }

    fn choose_in(&self, table: &crate::route::RouteTable, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(c) = sni.and_then(|n| table.tls.cert_for(n)) {
            return c.key.clone();
        }
        match &table.tls.default_cert {
            Some(c) => c.key.clone(),
            None => self.fallback.clone(),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.store.load();
        // rustls asks the verifier whether to send a CertificateRequest in the same call on
        // the same thread, right after choosing the certificate: only hosts with auth-tls-*
        let sni = hello.server_name();
        let asks = sni.is_some_and(|n| table.tls.client_auth_for(n).is_some_and(|c| c.asks()));
        OFFER_CLIENT_AUTH.set(Some(asks));
        Some(self.choose_in(&table, sni))
    }
}

thread_local! {
    /// Whether the handshake whose certificate was just resolved on this thread asks for a
    /// client certificate (set by [`SniResolver`], taken by [`HostClientVerifier`]).
    static OFFER_CLIENT_AUTH: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// The listener's client-certificate verifier: a CertificateRequest only for hosts with
/// `auth-tls-*` (decided per SNI by [`SniResolver`]), never mandatory at the TLS level, and the
/// chain accepted here and checked after the handshake against the SNI host's own CA
/// ([`Callbacks`]): nginx answers a missing or bad certificate with an HTTP 400, not a TLS
/// alert. The CertificateVerify signature (proof of the private key) is checked here.
#[derive(Debug)]
pub struct HostClientVerifier {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl HostClientVerifier {
    pub fn new() -> Self {
        HostClientVerifier {
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

impl Default for HostClientVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl rustls::server::danger::ClientCertVerifier for HostClientVerifier {
    fn offer_client_auth(&self) -> bool {
        // before the certificate is resolved (rustls sets up the transcript) the answer must be
        // "maybe": true keeps what a later CertificateRequest needs
        OFFER_CLIENT_AUTH.take().unwrap_or(true)
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client certificate presented in a handshake, checked against the CA of the SNI host
/// (the `SslDigest` extension every request on the connection sees).
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The SNI name of the handshake.
    pub sni: Option<String>,
    /// `Ok` when the chain verifies against the SNI host's CA (and CRLs), else why not.
    pub verified: Result<(), String>,
    /// RFC 2253 subject and issuer (`$ssl_client_s_dn`, `$ssl_client_i_dn`).
    pub subject_dn: String,
    pub issuer_dn: String,
    /// The leaf as PEM (`$ssl_client_escaped_cert` before escaping).
    pub pem: String,
}

/// RFC 2253 text of a name: RDNs last to first, `,` between them, special characters escaped.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let reg = x509_parser::objects::oid_registry();
    let mut parts = Vec::new();
    for rdn in name.iter_rdn() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(a.attr_type(), reg)
                    .map(str::to_string)
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                let value = a.as_str().unwrap_or("");
                let mut v = String::with_capacity(value.len());
                for (i, c) in value.chars().enumerate() {
                    let edge = (i == 0 && (c == ' ' || c == '#'))
                        || (i + 1 == value.chars().count() && c == ' ');
                    if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
                        v.push('\\');
                    }
                    v.push(c);
                }
                format!("{key}={v}")
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    parts.reverse();
    parts.join(",")
}

/// Describe and check a presented chain for the SNI host (`None`: no certificate).
pub fn client_cert(
    store: &TableStore,
    sni: Option<&str>,
    chain: &[rustls::pki_types::CertificateDer<'static>],
) -> Option<ClientCert> {
    let leaf = chain.first()?;
    let (subject_dn, issuer_dn) = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, x)) => (rfc2253(x.subject()), rfc2253(x.issuer())),
        Err(_) => (String::new(), String::new()),
    };
    let table = store.load();
    let verified = match sni.and_then(|n| table.tls.client_auth_for(n)) {
        Some(ca) => match &ca.verifier {
            // auth-tls-verify-depth: only the first depth - 1 intermediates may be used
            Some(v) => v
                .verify_client_cert(
                    leaf,
                    &chain[1..chain.len().min(ca.depth as usize).max(1)],
                    rustls::pki_types::UnixTime::now(),
                )
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Err("the host's CA cannot be used".into()),
        },
        None => Err("the host does not ask for client certificates".into()),
    };
    let pem = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(leaf.as_ref());
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or(""));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    };
    Some(ClientCert {
        sni: sni.map(str::to_string),
        verified,
        subject_dn,
        issuer_dn,
        pem,
    })
}

/// Generate the default certificate: self-signed, ECDSA P-256 (rcgen with ring cannot make RSA
/// keys), CN "Kubernetes Ingress Controller Fake Certificate", O "Acme Co", SAN ingress.local.
pub fn fake_certificate() -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("generate key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec![FAKE_SAN.to_string()])
        .map_err(|e| format!("certificate parameters: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FAKE_CN);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, FAKE_O);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("self-sign: {e}"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(vec![cert.der().clone()], der, &provider)
        .map_err(|e| format!("default certificate: {e}"))?;
    Ok(Arc::new(ck))
}

/// The ring provider restricted to the configured protocols and TLS 1.2 ciphers.
pub fn crypto_provider(cfg: &TlsConfig) -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| match s {
        rustls::SupportedCipherSuite::Tls13(_) => cfg.tls13,
        rustls::SupportedCipherSuite::Tls12(_) => {
            cfg.tls12
                && cfg
                    .tls12_suites
                    .as_ref()
                    .is_none_or(|list| list.contains(&s.suite()))
        }
    });
    p
}

/// Install [`crypto_provider`] as the process default before Pingora builds its rustls
/// configurations (Pingora's own install then keeps ours): the upstream connector uses it.
/// The listener gets the same provider explicitly ([`listener_settings`]). Read once: a later
/// ConfigMap change needs a restart.
pub fn install_crypto_provider(cfg: &TlsConfig) {
    if CryptoProvider::install_default(crypto_provider(cfg)).is_err() {
        tracing::info!("a rustls crypto provider was already installed (the API client's): ssl-protocols/ssl-ciphers apply to the HTTPS listener, not to upstream TLS");
    }
}

/// After each handshake: the client certificate, checked for the SNI host.
struct Callbacks {
    store: TableStore,
}

#[async_trait::async_trait]
impl TlsAccept for Callbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der()?;
        let c = client_cert(&self.store, tls.server_name(), chain)?;
        Some(Arc::new(c))
    }
}

/// Listener settings: SNI resolver over the live table, client certificates per host, ALPN
/// h2 + http/1.1 (http/1.1 alone with ConfigMap `use-http2: "false"`).
pub fn listener_settings(
    resolver: Arc<SniResolver>,
    cfg: &TlsConfig,
    http2: bool,
) -> pingora::Result<TlsSettings> {
    let mut s = TlsSettings::with_callbacks(Box::new(Callbacks {
        store: resolver.store.clone(),
    }))?;
    // the listener's own provider (carried patch 11): ssl-protocols/ssl-ciphers apply even
    // when a library installed the process default first (the kube client in cluster mode)
    s.set_crypto_provider(Arc::new(crypto_provider(cfg)));
    s.set_cert_resolver(resolver);
    s.set_client_cert_verifier(Arc::new(HostClientVerifier::new()));
    if http2 {
        s.enable_h2();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::new_store;

    #[test]
    fn fake_certificate_has_ingress_nginx_subject() {
        let ck = fake_certificate().unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&ck.cert[0]).unwrap();
        let cn = x.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), FAKE_CN);
        let o = x.subject().iter_organization().next().unwrap();
        assert_eq!(o.as_str().unwrap(), FAKE_O);
        assert!(ck.keys_match().is_ok());
    }

    #[test]
    fn empty_table_serves_the_fallback() {
        let fake = fake_certificate().unwrap();
        let r = SniResolver::new(new_store(), fake.clone());
        assert!(Arc::ptr_eq(&r.choose(None), &fake));
        assert!(Arc::ptr_eq(&r.choose(Some("a.example.com")), &fake));
    }

    #[test]
    fn provider_follows_protocols_and_ciphers() {
        let all = crypto_provider(&TlsConfig::default());
        assert_eq!(all.cipher_suites.len(), 9);
        let only13 = crypto_provider(&TlsConfig {
            tls12: false,
            ..TlsConfig::default()
        });
        assert!(only13
            .cipher_suites
            .iter()
            .all(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_))));
        let one12 = crypto_provider(&TlsConfig {
            tls13: false,
            tls12_suites: Some(vec![
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]),
            ..TlsConfig::default()
        });
        assert_eq!(one12.cipher_suites.len(), 1);
    }
}
