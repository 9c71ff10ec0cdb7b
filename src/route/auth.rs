//! The compiled authentication of a route: basic auth (users and hashes from a Secret), the
//! external auth subrequest (ingress-nginx's `auth-url` family or the ConfigMap's
//! `global-auth-url`), and how they combine with the IP lists (`satisfy`). Typed values only.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};

use super::UrlTarget;
pub use crate::annotations::template::{signin_location, RequestView, Template};

/// Authentication of one Ingress's routes.
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    pub basic: Option<Arc<BasicAuth>>,
    pub external: Option<Arc<ExternalAuth>>,
    /// `satisfy: any`: passing the IP lists or the authentication is enough.
    pub satisfy_any: bool,
}

impl AuthPolicy {
    pub fn is_active(&self) -> bool {
        self.basic.is_some() || self.external.is_some()
    }
}

/// `auth-type: basic`: users and their password hashes.
pub struct BasicAuth {
    /// `WWW-Authenticate: Basic realm="<realm>"`.
    pub challenge: HeaderValue,
    /// User -> hash as written in the Secret (htpasswd formats).
    pub users: HashMap<String, Box<str>>,
    /// `namespace/name@resourceVersion` of the Secret: verification results are cached per
    /// version, so a changed Secret is checked afresh.
    pub version: Box<str>,
}

impl fmt::Debug for BasicAuth {
    // never print hashes
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .field("version", &self.version)
            .finish()
    }
}

/// The external auth subrequest (nginx `auth_request` location of ingress-nginx).
#[derive(Debug, Clone)]
pub struct ExternalAuth {
    /// `auth-url`: `http[s]://host[:port]/path?query`, possibly with variables.
    pub url: Template,
    pub target: UrlTarget,
    /// `auth-method`: the subrequest's method (GET when unset, as nginx subrequests).
    pub method: Option<Method>,
    /// `auth-signin`: a 401 becomes a 302 to this URL plus the redirect parameter.
    pub signin: Option<Template>,
    /// `auth-signin-redirect-param` (default `rd`).
    pub redirect_param: Box<str>,
    /// `auth-response-headers`: copied from the auth response to the upstream request.
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` value (default `$request_uri`).
    pub request_redirect: Option<Template>,
    /// `auth-always-set-cookie`: the auth response's Set-Cookie on every status, not only on
    /// 2xx/3xx.
    pub always_set_cookie: bool,
    /// `auth-proxy-set-headers`: extra headers on the subrequest.
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Where it came from (`auth-url` or `global-auth-url`), for logs.
    pub source: &'static str,
    /// `auth-cache-key` / `auth-cache-duration`.
    pub cache: Option<crate::annotations::auth::CacheSpec>,
}
