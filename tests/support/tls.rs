//! TLS helpers for the integration tests: throwaway certificates (rcgen), a test CA issuing
//! server and client certificates, TLS Secret manifests, a rustls client that reports which
//! certificate the server presented (and presents a client certificate when asked), and an
//! in-process HTTPS/h2 backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::manifests::{q, NAMESPACE};

/// A certificate (chain) and its key, PEM.
#[derive(Clone)]
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA that issued the leaf, when made by [`chain_cert`].
    pub ca_pem: Option<String>,
}

fn params(names: &[&str], cn: &str) -> rcgen::CertificateParams {
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p
}

/// Self-signed ECDSA P-256 certificate for `names` with subject CN `cn`.
pub fn self_signed(names: &[&str], cn: &str) -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params(names, cn).self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: None,
    }
}

/// [`self_signed`] with an RSA 2048 key (ingress-nginx's e2e certificates are RSA, and the
/// `ECDHE-RSA-*` cipher suites need one). The key comes from the `openssl` command (ring, which
/// signs with it, cannot generate RSA keys).
pub fn self_signed_rsa(names: &[&str], cn: &str) -> TestCert {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("run openssl genpkey (apt install openssl)");
    assert!(out.status.success(), "openssl genpkey: {:?}", out);
    let key_pem = String::from_utf8(out.stdout).unwrap();
    let key = rcgen::KeyPair::from_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
        .expect("an RSA PKCS#8 key");
    let cert = params(names, cn).self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem,
        ca_pem: None,
    }
}

/// A leaf signed by an intermediate signed by a root; `cert_pem` is leaf + intermediate.
pub fn chain_cert(names: &[&str], cn: &str) -> TestCert {
    let mut root_p = params(&[], "pingress test root");
    root_p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root =
        rcgen::CertifiedIssuer::self_signed(root_p, rcgen::KeyPair::generate().unwrap()).unwrap();
    let mut mid_p = params(&[], "pingress test intermediate");
    mid_p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mid = rcgen::CertifiedIssuer::signed_by(mid_p, rcgen::KeyPair::generate().unwrap(), &root)
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params(names, cn).signed_by(&key, &mid).unwrap();
    TestCert {
        cert_pem: format!("{}{}", leaf.pem(), mid.pem()),
        key_pem: key.serialize_pem(),
        ca_pem: Some(root.pem()),
    }
}

/// A CA that signs server and client certificates and can revoke them.
pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM (a Secret's `ca.crt`).
    pub pem: String,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let mut p = params(&[], cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    /// A server certificate with subject CN `cn` and no SAN (ingress-nginx's e2e
    /// `CreateIngressMASecret` makes it so), usable for server and client auth; `ca_pem` is this
    /// CA.
    pub fn server(&self, cn: &str) -> TestCert {
        let mut p = params(&[], cn);
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: Some(self.pem.clone()),
        }
    }

    /// A client certificate (CN `cn`, O `Acme`) with serial `serial`.
    pub fn client(&self, cn: &str, serial: u64) -> Arc<CertifiedKey> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], der, &provider).unwrap())
    }

    /// A client certificate issued by an intermediate CA under this one: the chain presented
    /// is leaf + intermediate.
    pub fn client_via_intermediate(&self, cn: &str) -> Arc<CertifiedKey> {
        let mut p = params(&[], "intermediate");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let mid =
            rcgen::CertifiedIssuer::signed_by(p, rcgen::KeyPair::generate().unwrap(), &self.issuer)
                .unwrap();
        let mut p = params(&[], cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = p.signed_by(&key, &mid).unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        Arc::new(
            CertifiedKey::from_der(vec![leaf.der().clone(), mid.der().clone()], der, &provider)
                .unwrap(),
        )
    }

    /// A CRL revoking `serials`.
    pub fn crl(&self, serials: &[u64]) -> String {
        let now = rcgen::date_time_ymd(2026, 1, 1);
        let p = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2036, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: now,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        p.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

fn block(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// A `kubernetes.io/tls` Secret (stringData) in the test namespace.
pub fn tls_secret(name: &str, c: &TestCert) -> String {
    secret_of_type(name, "kubernetes.io/tls", &c.cert_pem, &c.key_pem)
}

/// A Secret of any type with `tls.crt` / `tls.key` as given.
pub fn secret_of_type(name: &str, ty: &str, crt: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {NAMESPACE}\ntype: {ty}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        q(name),
        block(crt),
        block(key)
    )
}

/// An Opaque Secret (stringData) in the test namespace holding `data` (e.g. `ca.crt`, `ca.crl`,
/// `tls.crt`, `tls.key`).
pub fn opaque_secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {NAMESPACE}\ntype: Opaque\nstringData:\n",
        q(name)
    );
    for (k, v) in data {
        s.push_str(&format!("  {}: {}\n", q(k), q(v)));
    }
    s
}

/// Accepts any server certificate: the tests inspect it themselves.
#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a TLS client saw.
#[derive(Debug)]
pub struct Seen {
    /// Subject CN of the leaf the server presented.
    pub cn: String,
    /// DNS SANs of the leaf.
    pub sans: Vec<String>,
    /// Issuer CN of the leaf.
    pub issuer_cn: String,
    /// Length of the presented chain.
    pub chain_len: usize,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    pub version: Option<rustls::ProtocolVersion>,
    /// Negotiated cipher suite.
    pub cipher: Option<rustls::CipherSuite>,
}

pub fn client_config(
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut c =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// Presents `cert` (if any) when the server asks for a client certificate, and remembers
/// whether it asked.
#[derive(Debug)]
pub struct Recorder {
    cert: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl Recorder {
    /// Whether a server asked for a client certificate.
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }
}

impl ResolvesClientCert for Recorder {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.cert.clone()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// `base` presenting `cert` (or none) when the server asks for a client certificate; the
/// recorder tells whether it asked.
pub fn with_client_cert(
    base: &ClientConfig,
    cert: Option<Arc<CertifiedKey>>,
) -> (Arc<ClientConfig>, Arc<Recorder>) {
    let rec = Arc::new(Recorder {
        cert,
        asked: AtomicBool::new(false),
    });
    let mut cfg = base.clone();
    cfg.client_auth_cert_resolver = rec.clone();
    (Arc::new(cfg), rec)
}

fn describe(conn: &rustls::ClientConnection) -> Seen {
    let chain = conn.peer_certificates().unwrap_or(&[]);
    let (mut cn, mut sans, mut issuer_cn) = (String::new(), Vec::new(), String::new());
    if let Some(leaf) = chain.first() {
        let (_, x) = x509_parser::parse_x509_certificate(leaf).unwrap();
        let first_cn = |name: &x509_parser::x509::X509Name| {
            name.iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok())
                .unwrap_or("")
                .to_string()
        };
        issuer_cn = first_cn(x.issuer());
        cn = first_cn(x.subject());
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    sans.push(d.to_string());
                }
            }
        }
    }
    Seen {
        cn,
        sans,
        issuer_cn,
        chain_len: chain.len(),
        alpn: conn.alpn_protocol().map(|p| p.to_vec()),
        version: conn.protocol_version(),
        cipher: conn.negotiated_cipher_suite().map(|s| s.suite()),
    }
}

/// Handshake with `127.0.0.1:port`, sending `sni` (no SNI when `None`).
pub async fn connect(
    port: u16,
    sni: Option<&str>,
    config: Arc<ClientConfig>,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Seen)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    connect_over(tcp, sni, config).await
}

/// Handshake over a connected stream (e.g. after a PROXY protocol header).
pub async fn connect_over(
    tcp: TcpStream,
    sni: Option<&str>,
    config: Arc<ClientConfig>,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Seen)> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        // an IP address as the name: rustls sends no SNI
        None => ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into()),
    };
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    let seen = describe(tls.get_ref().1);
    Ok((tls, seen))
}

/// Only the handshake: which certificate does `sni` get?
pub async fn handshake(port: u16, sni: Option<&str>) -> std::io::Result<Seen> {
    let cfg = client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    connect(port, sni, cfg).await.map(|(_, s)| s)
}

/// A response over HTTPS.
#[derive(Debug)]
pub struct TlsReply {
    pub status: u16,
    pub version: hyper::Version,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    pub seen: Seen,
}

impl TlsReply {
    async fn read(
        resp: hyper::Response<hyper::body::Incoming>,
        seen: Seen,
    ) -> Result<TlsReply, String> {
        let status = resp.status().as_u16();
        let version = resp.version();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(TlsReply {
            status,
            version,
            headers,
            body,
            seen,
        })
    }

    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// `GET https://host/path` on a new connection with SNI `sni`; `h2` offers only h2 by ALPN.
pub async fn https_get(
    port: u16,
    sni: Option<&str>,
    host: &str,
    path: &str,
    h2: bool,
) -> Result<TlsReply, String> {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let cfg = client_config(alpn, rustls::DEFAULT_VERSIONS);
    let (tls, seen) = connect(port, sni, cfg).await.map_err(|e| e.to_string())?;
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(format!("https://{host}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    TlsReply::read(resp, seen).await
}

/// `POST https://127.0.0.1:port/path` (HTTP/1.1, any server certificate) with a JSON body.
pub async fn https_post_json(
    port: u16,
    path: &str,
    body: &serde_json::Value,
) -> Result<TlsReply, String> {
    let body = Bytes::from(serde_json::to_vec(body).unwrap());
    https_post(port, path, "application/json", body).await
}

/// `POST https://127.0.0.1:port/path` (HTTP/1.1, any server certificate) with `body` as
/// `content_type`.
pub async fn https_post(
    port: u16,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> Result<TlsReply, String> {
    let cfg = client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let (tls, seen) = connect(port, Some("localhost"), cfg)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(Full::new(body))
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    TlsReply::read(resp, seen).await
}

/// A TLS acceptor serving `cert`, offering `alpn` in order.
pub fn acceptor(cert: &TestCert, alpn: &[&[u8]]) -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_slice_iter(cert.cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key: PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(sc))
}

/// An HTTPS backend (HTTP/1.1 and h2 by ALPN) answering JSON with what it saw:
/// `{"backend", "version", "sni", "path", "proto"}`.
pub struct TlsBackend {
    pub port: u16,
    pub cert: TestCert,
    task: JoinHandle<()>,
}

impl TlsBackend {
    pub async fn start(name: &str) -> TlsBackend {
        let cert = self_signed(&["backend.internal"], "backend.internal");
        let acceptor = acceptor(&cert, &[b"h2", b"http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let name = name.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let body = serde_json::json!({
                            "backend": name,
                            "version": format!("{:?}", req.version()),
                            "sni": sni,
                            "path": req.uri().path(),
                            "proto": req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()),
                        });
                        async move {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
                        }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        });
        TlsBackend { port, cert, task }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
