//! Request path normalisation for matching, as nginx does for `$uri`.
//!
//! nginx matches locations against the decoded, normalised URI: `%XX` decoded, `//` merged,
//! `.` and `..` segments resolved (a `..` above the root is a 400). The upstream still receives
//! the original request URI, exactly as ingress-nginx's `proxy_pass` without a URI part does.
//! The fast path (no `%`, no `//`, no dot segment) allocates nothing.

use std::borrow::Cow;

/// The path could not be normalised (a `..` climbing above the root, no leading `/`, or an
/// encoded NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath;

/// Normalise a request path (without the query string) for route matching.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        // `*` (OPTIONS) and absolute-form URIs are handled by the caller; anything else is bad.
        return Err(BadPath);
    }
    if !needs_work(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode(bytes);
    if decoded.contains(&0) {
        // nginx refuses a decoded NUL in the URI (400)
        return Err(BadPath);
    }
    let mut out: Vec<&[u8]> = Vec::new();
    let trailing = decoded.ends_with(b"/")
        || decoded.ends_with(b"/.")
        || decoded.ends_with(b"/..")
        || decoded.as_slice() == b"/";
    for seg in decoded.split(|b| *b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(BadPath);
                }
            }
            s => out.push(s),
        }
    }
    let mut s = Vec::with_capacity(decoded.len());
    for seg in &out {
        s.push(b'/');
        s.extend_from_slice(seg);
    }
    if s.is_empty() || trailing {
        s.push(b'/');
    }
    Ok(Cow::Owned(String::from_utf8_lossy(&s).into_owned()))
}

fn needs_work(b: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'%' => return true,
            b'/' if prev == b'/' => return true,
            b'.' if prev == b'/' => {
                // "/." followed by end, '/', or ".": a dot segment
                let next = b.get(i + 1).copied();
                if matches!(next, None | Some(b'/') | Some(b'.')) {
                    return true;
                }
            }
            _ => {}
        }
        prev = c;
    }
    false
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_nul_is_refused_as_nginx_does() {
        assert_eq!(normalize("/a%00b"), Err(BadPath));
        assert_eq!(normalize("/admin%00.png"), Err(BadPath));
        assert!(normalize("/a%01b").is_ok());
    }

    fn n(s: &str) -> Result<String, BadPath> {
        normalize(s).map(|c| c.into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(
            normalize("/foo/bar"),
            Ok(Cow::Borrowed("/foo/bar"))
        ));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed("/"))));
        assert!(matches!(normalize("/a.b/c.d"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/.well-known/x"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn merges_slashes_and_resolves_dots() {
        assert_eq!(n("//foo///bar").unwrap(), "/foo/bar");
        assert_eq!(n("/foo/./bar").unwrap(), "/foo/bar");
        assert_eq!(n("/public/../admin").unwrap(), "/admin");
        assert_eq!(n("/foo/bar/..").unwrap(), "/foo/");
        assert_eq!(n("/foo/").unwrap(), "/foo/");
        assert_eq!(n("/foo//").unwrap(), "/foo/");
        assert_eq!(n("/..").unwrap_err(), BadPath);
        assert_eq!(n("/a/../../b").unwrap_err(), BadPath);
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/a%2Fb").unwrap(), "/a/b");
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/bad%zz").unwrap(), "/bad%zz");
        assert_eq!(n("/end%4").unwrap(), "/end%4");
    }

    #[test]
    fn rejects_non_origin_form() {
        assert_eq!(n("foo").unwrap_err(), BadPath);
        assert_eq!(n("").unwrap_err(), BadPath);
    }
}
