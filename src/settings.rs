//! Controller settings: command-line flags with ingress-nginx's names and meanings, and the
//! pure [`CompileSettings`] subset that `compile` reads.

use std::path::PathBuf;

use clap::Parser;

/// pingress: a Kubernetes Ingress controller on Pingora, compatible with ingress-nginx.
#[derive(Parser, Debug, Clone)]
#[command(name = "pingress", version, about)]
pub struct Cli {
    /// Standalone mode: serve the Kubernetes manifests (*.yaml, *.yml) found under this folder
    /// instead of watching a cluster. Changes in the folder are picked up within a second.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Port of the plain HTTP listener (HTTP/1.1 and h2c with prior knowledge).
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,

    /// Address the listeners bind to.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,

    /// Name of the ingress class this controller satisfies (legacy annotation
    /// `kubernetes.io/ingress.class` is compared with it).
    #[arg(long, default_value = "pingress")]
    pub ingress_class: String,

    /// IngressClass `spec.controller` value this controller satisfies. Set it to
    /// `k8s.io/ingress-nginx` to take over ingress-nginx's IngressClass.
    #[arg(long, default_value = "k8s.io/pingress")]
    pub controller_class: String,

    /// Also serve Ingresses that name no class at all.
    #[arg(long, default_value_t = false)]
    pub watch_ingress_without_class: bool,

    /// Service (namespace/name) that serves requests no rule matches; its first port is used.
    /// Without it, pingress answers 404 itself.
    #[arg(long, value_name = "NS/NAME")]
    pub default_backend_service: Option<String>,

    /// The controller ConfigMap (namespace/name) with ingress-nginx's keys. In standalone mode
    /// it is read from the manifest folder.
    #[arg(long, value_name = "NS/NAME")]
    pub configmap: Option<String>,

    /// Prefix of the annotations pingress reads.
    #[arg(long, default_value = "nginx.ingress.kubernetes.io")]
    pub annotations_prefix: String,

    /// Worker threads of the proxy (default: number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Port of the HTTPS listener (TLS 1.2/1.3, ALPN h2 and http/1.1; certificates from the
    /// Ingresses' spec.tls Secrets, chosen by SNI).
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,

    /// Secret (namespace/name) with the certificate served for unknown or missing SNI and for
    /// hosts whose Secret is missing or invalid. Without it, a self-signed certificate is
    /// generated at start (CN "Kubernetes Ingress Controller Fake Certificate").
    #[arg(long, value_name = "NS/NAME")]
    pub default_ssl_certificate: Option<String>,

    /// ingress-nginx's SSL passthrough switch. Not supported by pingress (see README): setting
    /// it logs why and pingress keeps terminating TLS.
    #[arg(long, default_value_t = false)]
    pub enable_ssl_passthrough: bool,

    /// Seconds to keep serving in-flight requests after SIGTERM before exiting.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_period: u64,
}

/// What `compile` needs from the settings. Plain values; no I/O.
#[derive(Debug, Clone)]
pub struct CompileSettings {
    pub ingress_class: String,
    pub controller_class: String,
    pub watch_ingress_without_class: bool,
    /// (namespace, name) of `--default-backend-service`.
    pub default_backend_service: Option<(String, String)>,
    pub annotations_prefix: String,
    /// (namespace, name) of `--configmap`.
    pub configmap: Option<(String, String)>,
    /// (namespace, name) of `--default-ssl-certificate`.
    pub default_ssl_certificate: Option<(String, String)>,
}

impl Default for CompileSettings {
    fn default() -> Self {
        CompileSettings {
            ingress_class: "pingress".into(),
            controller_class: "k8s.io/pingress".into(),
            watch_ingress_without_class: false,
            default_backend_service: None,
            annotations_prefix: "nginx.ingress.kubernetes.io".into(),
            configmap: None,
            default_ssl_certificate: None,
        }
    }
}

/// Parse `namespace/name`.
pub fn parse_ns_name(flag: &str, v: &str) -> Result<(String, String), String> {
    match v.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("--{flag} must be namespace/name, got {v:?}")),
    }
}

impl Cli {
    /// Validate flags that clap cannot, and derive the compile settings.
    pub fn compile_settings(&self) -> Result<CompileSettings, String> {
        let default_backend_service = self
            .default_backend_service
            .as_deref()
            .map(|v| parse_ns_name("default-backend-service", v))
            .transpose()?;
        let configmap = self
            .configmap
            .as_deref()
            .map(|v| parse_ns_name("configmap", v))
            .transpose()?;
        let default_ssl_certificate = self
            .default_ssl_certificate
            .as_deref()
            .map(|v| parse_ns_name("default-ssl-certificate", v))
            .transpose()?;
        if self.annotations_prefix.is_empty() || self.annotations_prefix.ends_with('/') {
            return Err(
                "--annotations-prefix must be a non-empty prefix without a trailing '/'".into(),
            );
        }
        Ok(CompileSettings {
            ingress_class: self.ingress_class.clone(),
            controller_class: self.controller_class.clone(),
            watch_ingress_without_class: self.watch_ingress_without_class,
            default_backend_service,
            annotations_prefix: self.annotations_prefix.clone(),
            configmap,
            default_ssl_certificate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let cli = Cli::parse_from(["pingress", "--manifests", "x"]);
        assert_eq!(cli.http_port, 80);
        let s = cli.compile_settings().unwrap();
        assert_eq!(s.ingress_class, "pingress");
        assert_eq!(s.controller_class, "k8s.io/pingress");
        assert!(!s.watch_ingress_without_class);
        assert_eq!(s.annotations_prefix, "nginx.ingress.kubernetes.io");
    }

    #[test]
    fn ns_name_flags_are_checked() {
        let cli = Cli::parse_from(["pingress", "--default-backend-service", "nope"]);
        assert!(cli
            .compile_settings()
            .unwrap_err()
            .contains("namespace/name"));
        let cli = Cli::parse_from(["pingress", "--default-backend-service", "ns/svc"]);
        assert_eq!(
            cli.compile_settings().unwrap().default_backend_service,
            Some(("ns".into(), "svc".into()))
        );
    }

    #[test]
    fn unknown_flags_fail() {
        assert!(Cli::try_parse_from(["pingress", "--no-such-flag"]).is_err());
    }
}
