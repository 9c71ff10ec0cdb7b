//! Response compression (ConfigMap `use-gzip`, `enable-brotli`) as ingress-nginx configures
//! nginx's gzip filter and ngx_brotli: this picks the coding per request (brotli first when
//! both are on and accepted, as ingress-nginx serves) and decides per response what nginx would
//! compress; Pingora's compression module does the encoding.

use http::{HeaderValue, Method, StatusCode, Version};
use pingora::http::ResponseHeader;
use pingora::protocols::http::compression::Algorithm;

pub use crate::configmap::Coding;
use crate::configmap::Compression;

/// Pingora's algorithm for a coding.
pub fn algorithm(coding: Coding) -> Algorithm {
    match coding {
        Coding::Gzip => Algorithm::Gzip,
        Coding::Brotli => Algorithm::Brotli,
    }
}

/// Whether Accept-Encoding lists `token` with a non-zero q (nginx's gzip_ok and ngx_brotli
/// refuse `gzip;q=0`).
fn accepts(accept: &[u8], token: &str) -> bool {
    let Ok(accept) = std::str::from_utf8(accept) else {
        return false;
    };
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case(token) {
            return false;
        }
        !parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// The coding of a request's response: brotli when it is on and accepted, else gzip when it is
/// on and accepted.
pub fn negotiate(
    gzip: &Compression,
    brotli: &Compression,
    accept: Option<&HeaderValue>,
) -> Option<Coding> {
    let accept = accept?.as_bytes();
    if brotli.on && accepts(accept, "br") {
        Some(Coding::Brotli)
    } else if gzip.on && accepts(accept, "gzip") {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// Whether nginx's gzip filter (or ngx_brotli) would compress this response: status 200, 403
/// or 404, not HEAD, gzip only over HTTP/1.1 or later, no Content-Encoding yet, a
/// Content-Length of at least the min length (or none), a media type in the types.
pub fn eligible(
    g: &Compression,
    coding: Coding,
    method: &Method,
    version: Version,
    resp: &ResponseHeader,
) -> bool {
    if !matches!(
        resp.status,
        StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ) || method == Method::HEAD
        || (coding == Coding::Gzip && version < Version::HTTP_11)
        || resp.headers.contains_key(http::header::CONTENT_ENCODING)
    {
        return false;
    }
    let short = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n < g.min_length);
    if short {
        return false;
    }
    let Some(ct) = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    g.types.iter().any(|t| t == "*" || *t == media)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, ct: Option<&str>, len: Option<u64>, ce: Option<&str>) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        if let Some(ct) = ct {
            h.insert_header("Content-Type", ct).unwrap();
        }
        if let Some(n) = len {
            h.insert_header("Content-Length", n.to_string()).unwrap();
        }
        if let Some(ce) = ce {
            h.insert_header("Content-Encoding", ce).unwrap();
        }
        h
    }

    #[test]
    fn nginx_rules() {
        let g = Compression {
            on: true,
            ..Compression::gzip()
        };
        let get = Method::GET;
        let v11 = Version::HTTP_11;
        let json = Some("application/json; charset=utf-8");
        assert!(eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(200, json, Some(1000), None)
        ));
        assert!(eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(404, Some("text/html"), None, None)
        ));
        assert!(eligible(
            &g,
            Coding::Gzip,
            &get,
            Version::HTTP_2,
            &resp(200, json, None, None)
        ));
        // not: short, other type, already encoded, other status, HEAD, HTTP/1.0, no type
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(200, json, Some(100), None)
        ));
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(200, Some("image/png"), None, None)
        ));
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(200, json, None, Some("br"))
        ));
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(500, json, None, None)
        ));
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(206, json, None, None)
        ));
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &Method::HEAD,
            v11,
            &resp(200, json, None, None)
        ));
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &get,
            Version::HTTP_10,
            &resp(200, json, None, None)
        ));
        assert!(!eligible(
            &g,
            Coding::Gzip,
            &get,
            v11,
            &resp(200, None, None, None)
        ));
        let any = Compression {
            types: vec!["*".into()],
            ..g
        };
        assert!(eligible(
            &any,
            Coding::Gzip,
            &get,
            v11,
            &resp(200, Some("image/png"), None, None)
        ));
    }

    #[test]
    fn brotli_first_then_gzip_and_q_zero_refuses() {
        let on = |c: Compression| Compression { on: true, ..c };
        let (g, b) = (on(Compression::gzip()), on(Compression::brotli()));
        let off = Compression::brotli();
        let ae = |v: &'static str| HeaderValue::from_static(v);
        let n = |g: &Compression, b: &Compression, v: &'static str| negotiate(g, b, Some(&ae(v)));
        assert_eq!(n(&g, &b, "gzip, deflate, br, zstd"), Some(Coding::Brotli));
        assert_eq!(n(&g, &b, "deflate, gzip"), Some(Coding::Gzip));
        assert_eq!(n(&g, &off, "br, gzip"), Some(Coding::Gzip));
        assert_eq!(n(&g, &b, "br;q=0, gzip;q=0.5"), Some(Coding::Gzip));
        assert_eq!(n(&g, &b, "br;q=0, gzip; q=0"), None);
        assert_eq!(n(&g, &b, "x-gzip, identity"), None);
        assert_eq!(n(&g, &b, "BR"), Some(Coding::Brotli));
        assert_eq!(negotiate(&g, &b, None), None);
        // brotli has no HTTP/1.1 rule, and its own min length
        let json = Some("application/json");
        let get = Method::GET;
        assert!(eligible(
            &b,
            Coding::Brotli,
            &get,
            Version::HTTP_10,
            &resp(200, json, Some(30), None)
        ));
        assert!(!eligible(
            &b,
            Coding::Brotli,
            &get,
            Version::HTTP_11,
            &resp(200, json, Some(19), None)
        ));
    }
}
