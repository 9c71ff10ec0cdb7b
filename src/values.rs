//! ingress-nginx's value syntax shared by annotations, the ConfigMap and compile: Go booleans
//! and integers, host names. Plain functions on strings; nothing here knows where a value came
//! from.

/// Go `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.Atoi`: optional sign, decimal digits.
pub fn parse_int(v: &str) -> Option<i64> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// DNS-1123 subdomain, optionally with a leading `*.` (one wildcard label).
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(
                "must be a lower-case DNS name (RFC 1123), optionally starting with '*.'".into(),
            );
        }
    }
    Ok(())
}

/// A DNS-1123 label (namespace names): lower-case letters, digits and '-', at most 63, not
/// starting or ending with '-'.
pub fn is_dns_label(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-')
}

/// A DNS-1123 subdomain (object names, an ExternalName's host): dot-separated labels, at
/// most 253 in all.
pub fn is_dns_subdomain(v: &str) -> bool {
    !v.is_empty() && v.len() <= 253 && v.split('.').all(is_dns_label)
}
