//! Which Ingresses this controller serves (ingress-nginx's class rules plus the IngressClass
//! default-class marker, as the core issue asks).

use k8s_openapi::api::networking::v1::Ingress;

use crate::settings::CompileSettings;
use crate::snapshot::Snapshot;

/// Legacy class annotation.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Marks an IngressClass as the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether `ing` belongs to this controller:
/// 1. `spec.ingressClassName` set: the named IngressClass exists and its `spec.controller` is
///    `--controller-class`;
/// 2. else the legacy annotation, compared with `--ingress-class`;
/// 3. else (no class at all): `--watch-ingress-without-class`, or (standalone mode only) one of
///    our IngressClasses is marked `is-default-class: "true"`.
pub fn is_served(ing: &Ingress, snap: &Snapshot, s: &CompileSettings) -> bool {
    let spec_class = ing
        .spec
        .as_ref()
        .and_then(|sp| sp.ingress_class_name.as_deref())
        .filter(|c| !c.is_empty());
    if let Some(name) = spec_class {
        return snap
            .ingress_classes
            .get(name)
            .is_some_and(|c| is_ours(c, s));
    }
    let legacy = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
    if let Some(class) = legacy {
        return class.trim() == s.ingress_class;
    }
    s.watch_ingress_without_class
        || (s.default_class_adopts_classless && has_default_class(snap, s))
}

/// [`is_served`] for every Ingress of one compile: the answer for an `ingressClassName` is
/// worked out once per class name (10k Ingresses usually name one or two classes).
#[derive(Default)]
pub struct Memo<'s> {
    by_class: Vec<(&'s str, bool)>,
}

impl<'s> Memo<'s> {
    pub fn is_served(&mut self, ing: &'s Ingress, snap: &Snapshot, s: &CompileSettings) -> bool {
        let spec_class = ing
            .spec
            .as_ref()
            .and_then(|sp| sp.ingress_class_name.as_deref())
            .filter(|c| !c.is_empty());
        let Some(name) = spec_class else {
            return is_served(ing, snap, s);
        };
        if let Some((_, served)) = self.by_class.iter().find(|(n, _)| *n == name) {
            return *served;
        }
        let served = is_served(ing, snap, s);
        // a bounded list: beyond a few names, asking the map again is as cheap
        if self.by_class.len() < 8 {
            self.by_class.push((name, served));
        }
        served
    }
}

fn is_ours(c: &k8s_openapi::api::networking::v1::IngressClass, s: &CompileSettings) -> bool {
    let by_name = s.ingress_class_by_name && c.metadata.name.as_deref() == Some(&s.ingress_class);
    by_name
        || c.spec
            .as_ref()
            .and_then(|sp| sp.controller.as_deref())
            .is_some_and(|ctl| ctl == s.controller_class)
}

fn has_default_class(snap: &Snapshot, s: &CompileSettings) -> bool {
    snap.ingress_classes.values().any(|c| {
        is_ours(c, s)
            && c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_class_by_name_takes_the_named_class_whatever_its_controller() {
        let mut snap = Snapshot::default();
        snap.add_ingress_class(
            serde_json::from_value::<k8s_openapi::api::networking::v1::IngressClass>(
                serde_json::json!({
                    "metadata": {"name": "mine"}, "spec": {"controller": "k8s.io/someone-else"}
                }),
            )
            .unwrap(),
        );
        let ing: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "n"}, "spec": {"ingressClassName": "mine"}
        }))
        .unwrap();
        let plain = CompileSettings {
            ingress_class: "mine".into(),
            ..CompileSettings::default()
        };
        assert!(!is_served(&ing, &snap, &plain));
        let by_name = CompileSettings {
            ingress_class_by_name: true,
            ..plain.clone()
        };
        assert!(is_served(&ing, &snap, &by_name));
        let other_name = CompileSettings {
            ingress_class: "other".into(),
            ..by_name
        };
        assert!(!is_served(&ing, &snap, &other_name));
    }

    #[test]
    fn the_default_class_marker_adopts_classless_ingresses_in_standalone_mode_only() {
        let mut snap = Snapshot::default();
        snap.add_ingress_class(
            serde_json::from_value::<k8s_openapi::api::networking::v1::IngressClass>(
                serde_json::json!({
                    "metadata": {"name": "pingress",
                                 "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
                    "spec": {"controller": "k8s.io/pingress"}
                }),
            )
            .unwrap(),
        );
        let classless: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "old", "namespace": "n"}, "spec": {}
        }))
        .unwrap();
        let standalone = CompileSettings::default();
        assert!(is_served(&classless, &snap, &standalone));
        let cluster = CompileSettings {
            default_class_adopts_classless: false,
            ..CompileSettings::default()
        };
        assert!(!is_served(&classless, &snap, &cluster));
        let watch_all = CompileSettings {
            watch_ingress_without_class: true,
            ..cluster
        };
        assert!(is_served(&classless, &snap, &watch_all));
    }
}
