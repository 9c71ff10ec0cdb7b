//! The ModSecurity rules of an Ingress's locations, as ingress-nginx's template composes them
//! (`nginx.tmpl`'s http block and `buildModSecurityForLocation`): the ConfigMap's part when it
//! enables ModSecurity (its snippet, or the default configuration, then the CRS), then the
//! Ingress's (its snippet; the default configuration when neither the ConfigMap nor a snippet
//! gave one; the CRS when the ConfigMap did not load it already). One compiled rule set per
//! distinct text (`waf::ruleset`).

use std::sync::Arc;

use crate::annotations::modsecurity::ModSecurity;
use crate::configmap::WafConfig;
use crate::route::WafPolicy;
use crate::waf::Part;

/// The rule parts of a location, in order; `None`: ModSecurity is off there.
pub fn parts<'a>(own: &'a ModSecurity, cm: &'a WafConfig) -> Result<Option<Vec<Part<'a>>>, String> {
    let on_here = own.enable == Some(true);
    if !cm.enable && !on_here || own.enable == Some(false) {
        return Ok(None);
    }
    let mut parts = Vec::new();
    if cm.enable {
        match &cm.snippet {
            Some(Ok(s)) => parts.push(Part::Snippet(s)),
            Some(Err(why)) => {
                return Err(format!(
                    "the ConfigMap's modsecurity-snippet is refused ({why})"
                ))
            }
            None => parts.push(Part::DefaultConf),
        }
        if cm.crs {
            parts.push(Part::Crs);
        }
    }
    if let Some(s) = &own.snippet {
        parts.push(Part::Snippet(s));
    }
    if !cm.enable && own.snippet.is_none() {
        parts.push(Part::DefaultConf);
    }
    if !cm.crs && own.owasp {
        parts.push(Part::Crs);
    }
    Ok(Some(parts))
}

/// The WAF of an Ingress's locations. `Err` says why it cannot run: the locations then answer
/// 503 rather than go uninspected.
pub fn for_ingress(own: &ModSecurity, cm: &WafConfig) -> Result<Option<Arc<WafPolicy>>, String> {
    let Some(parts) = parts(own, cm)? else {
        return Ok(None);
    };
    if !crate::waf::AVAILABLE {
        return Err(
            "ModSecurity is configured but pingress was built without the waf feature".into(),
        );
    }
    let text = crate::waf::rules_text(&parts)?;
    let rules = crate::waf::ruleset(&text)
        .map_err(|e| format!("libmodsecurity refuses the location's rules: {e}"))?;
    Ok(Some(Arc::new(WafPolicy {
        rules,
        transaction_id: own.transaction_id.clone(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(enable: Option<bool>, owasp: bool, snippet: Option<&str>) -> ModSecurity {
        ModSecurity {
            enable,
            owasp,
            transaction_id: None,
            snippet: snippet.map(Into::into),
        }
    }

    fn cm(enable: bool, crs: bool, snippet: Option<&str>) -> WafConfig {
        WafConfig {
            enable,
            crs,
            snippet: snippet.map(|s| Ok(s.into())),
        }
    }

    #[test]
    fn parts_follow_ingress_nginx_template() {
        use Part::*;
        fn p<'a>(o: &'a ModSecurity, c: &'a WafConfig) -> Option<Vec<Part<'a>>> {
            parts(o, c).unwrap()
        }
        // off unless one of them enables it; the annotation's false wins
        assert_eq!(
            p(&own(None, true, Some("x")), &cm(false, false, None)),
            None
        );
        assert_eq!(
            p(&own(Some(false), false, None), &cm(true, true, None)),
            None
        );
        // annotation only: default configuration (or the snippet in its place), CRS if asked
        assert_eq!(
            p(&own(Some(true), false, None), &cm(false, false, None)),
            Some(vec![DefaultConf])
        );
        assert_eq!(
            p(&own(Some(true), true, Some("S")), &cm(false, false, None)),
            Some(vec![Snippet("S"), Crs])
        );
        // ConfigMap: its snippet replaces the default configuration; the location's follows
        assert_eq!(
            p(&own(None, false, Some("S")), &cm(true, true, Some("C"))),
            Some(vec![Snippet("C"), Crs, Snippet("S")])
        );
        assert_eq!(
            p(&own(Some(true), true, None), &cm(true, false, None)),
            Some(vec![DefaultConf, Crs])
        );
        // the CRS is loaded once
        assert_eq!(
            p(&own(None, true, None), &cm(true, true, None)),
            Some(vec![DefaultConf, Crs])
        );
        // a refused ConfigMap snippet fails the locations it covers
        let bad = WafConfig {
            enable: true,
            crs: false,
            snippet: Some(Err("no".into())),
        };
        assert!(parts(&own(None, false, None), &bad).is_err());
        assert_eq!(parts(&own(Some(false), false, None), &bad), Ok(None));
    }

    #[test]
    fn duplicate_rule_ids_fail_closed() {
        let rule = "SecRule ARGS \"@rx x\" \"id:5,phase:1,deny\"";
        let r = for_ingress(
            &own(Some(true), false, Some(rule)),
            &cm(true, false, Some(rule)),
        );
        if crate::waf::AVAILABLE {
            assert!(r.is_err());
            let ok = for_ingress(&own(Some(true), false, Some(rule)), &cm(false, false, None));
            assert!(ok.unwrap().is_some());
        } else {
            assert!(r.unwrap_err().contains("without the waf feature"));
        }
    }
}
