//! Response compression (ConfigMap `use-gzip`) as ingress-nginx configures nginx's gzip
//! filter: Pingora's compression module does the encoding and the Accept-Encoding
//! negotiation; this decides, per response, what nginx would compress.

use http::{Method, StatusCode, Version};
use pingora::http::ResponseHeader;

use crate::configmap::Gzip;

/// Whether nginx's gzip filter would compress this response: status 200, 403 or 404, a
/// request with a body-carrying method over HTTP/1.1 or later, no Content-Encoding yet, a
/// Content-Length of at least `gzip-min-length` (or none), a media type in `gzip-types`.
pub fn eligible(g: &Gzip, method: &Method, version: Version, resp: &ResponseHeader) -> bool {
    if !matches!(
        resp.status,
        StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ) || method == Method::HEAD
        || version < Version::HTTP_11
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
        let g = Gzip {
            on: true,
            ..Gzip::default()
        };
        let get = Method::GET;
        let v11 = Version::HTTP_11;
        let json = Some("application/json; charset=utf-8");
        assert!(eligible(&g, &get, v11, &resp(200, json, Some(1000), None)));
        assert!(eligible(
            &g,
            &get,
            v11,
            &resp(404, Some("text/html"), None, None)
        ));
        assert!(eligible(
            &g,
            &get,
            Version::HTTP_2,
            &resp(200, json, None, None)
        ));
        // not: short, other type, already encoded, other status, HEAD, HTTP/1.0, no type
        assert!(!eligible(&g, &get, v11, &resp(200, json, Some(100), None)));
        assert!(!eligible(
            &g,
            &get,
            v11,
            &resp(200, Some("image/png"), None, None)
        ));
        assert!(!eligible(&g, &get, v11, &resp(200, json, None, Some("br"))));
        assert!(!eligible(&g, &get, v11, &resp(500, json, None, None)));
        assert!(!eligible(&g, &get, v11, &resp(206, json, None, None)));
        assert!(!eligible(
            &g,
            &Method::HEAD,
            v11,
            &resp(200, json, None, None)
        ));
        assert!(!eligible(
            &g,
            &get,
            Version::HTTP_10,
            &resp(200, json, None, None)
        ));
        assert!(!eligible(&g, &get, v11, &resp(200, None, None, None)));
        let any = Gzip {
            types: vec!["*".into()],
            ..g
        };
        assert!(eligible(
            &any,
            &get,
            v11,
            &resp(200, Some("image/png"), None, None)
        ));
    }
}
