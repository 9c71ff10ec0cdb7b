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
        let table = self.store.load();
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
        Some(self.choose(hello.server_name()))
    }
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
/// configurations (Pingora's own install then keeps ours). Process-wide and read once: the
/// listener and the upstream connector both use it, and a later ConfigMap change needs a
/// restart.
pub fn install_crypto_provider(cfg: &TlsConfig) {
    if CryptoProvider::install_default(crypto_provider(cfg)).is_err() {
        tracing::warn!("a rustls crypto provider was already installed; ssl-protocols/ssl-ciphers are not applied");
    }
}

struct NoCallbacks;

#[async_trait::async_trait]
impl TlsAccept for NoCallbacks {}

/// Listener settings: SNI resolver over the live table, ALPN h2 + http/1.1.
pub fn listener_settings(resolver: Arc<SniResolver>) -> pingora::Result<TlsSettings> {
    let mut s = TlsSettings::with_callbacks(Box::new(NoCallbacks))?;
    s.set_cert_resolver(resolver);
    s.enable_h2();
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
