//! rewrite-target expansion, as nginx `rewrite "(?i)<path>" <target> break`: the whole URI is
//! replaced by the target with `$1`..`$9` taken from the path regex matched against the
//! normalised path; the query string is appended. The result is escaped for the request line.

use regex::Regex;

/// Expand `template` with the captures of `re` on `path`. `None` when `re` does not match
/// (nginx then leaves the URI alone).
pub fn expand(re: &Regex, path: &str, template: &str) -> Option<String> {
    let caps = re.captures(path)?;
    let mut out = String::with_capacity(template.len() + path.len());
    let bytes = template.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit() {
            let n = (bytes[i + 1] - b'0') as usize;
            if let Some(m) = caps.get(n) {
                out.push_str(m.as_str());
            }
            i += 2;
            continue;
        }
        // template is ASCII (validated), so byte-wise copy is char-wise
        out.push(bytes[i] as char);
        i += 1;
    }
    Some(out)
}

/// Whether a rewrite result is an absolute URL (nginx answers 302 to it).
pub fn is_absolute(target: &str) -> bool {
    target.starts_with("http://") || target.starts_with("https://")
}

/// Percent-escape what may not appear in a request-target path (nginx escapes a rewritten URI).
pub fn escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The new request target: escaped path plus the original query, if any.
pub fn with_query(path: &str, query: Option<&str>) -> String {
    let mut s = escape_path(path);
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Regex {
        regex::RegexBuilder::new(p)
            .case_insensitive(true)
            .build()
            .unwrap()
    }

    #[test]
    fn the_documented_idiom() {
        let r = re("/something(/|$)(.*)");
        assert_eq!(expand(&r, "/something", "/$2").unwrap(), "/");
        assert_eq!(expand(&r, "/something/", "/$2").unwrap(), "/");
        assert_eq!(expand(&r, "/something/new", "/$2").unwrap(), "/new");
        assert_eq!(expand(&r, "/SOMETHING/New", "/$2").unwrap(), "/New");
        assert_eq!(expand(&r, "/other", "/$2"), None);
    }

    #[test]
    fn whole_uri_is_replaced_and_missing_groups_are_empty() {
        let r = re("/foo");
        assert_eq!(expand(&r, "/foo/bar", "/").unwrap(), "/");
        assert_eq!(expand(&r, "/foo/bar", "/x/$1/$9").unwrap(), "/x//");
        let r = re("/api/(v[0-9]+)/(.*)");
        assert_eq!(
            expand(&r, "/api/v2/users/7", "/$2?v=$1").unwrap(),
            "/users/7?v=v2"
        );
        assert_eq!(
            expand(&r, "/api/v2/x", "https://new.example.com/$2").unwrap(),
            "https://new.example.com/x"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(with_query("/a b/ü", Some("q=1")), "/a%20b/%C3%BC?q=1");
        assert_eq!(with_query("/plain", None), "/plain");
    }
}
