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

/// A Go `time.ParseDuration` value as ingress-nginx reads some keys and flags: a sequence of decimal
/// numbers with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`), e.g. `5s`, `1m30s`, `1.5s`.
pub fn go_duration(v: &str) -> Option<std::time::Duration> {
    if v.is_empty() {
        return None;
    }
    let mut rest = v;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod go_duration_tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn go_durations_as_time_parse_duration() {
        assert_eq!(go_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("5"), None, "Go requires a unit");
        assert_eq!(go_duration("5x"), None);
        assert_eq!(go_duration(""), None);
    }
}
