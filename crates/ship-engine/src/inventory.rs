//! The objects a release applies: stamped with Ship's labels and annotations, in apply order,
//! and the inventory entries that name them. Pure.

use ship_api::{InventoryEntry, keys};
use ship_render::Manifest;

/// Apply order by kind: what others depend on first (Helm's order, shortened).
pub(crate) fn kind_rank(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "Namespace",
        "CustomResourceDefinition",
        "PriorityClass",
        "ServiceAccount",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicaSet",
        "Deployment",
        "StatefulSet",
        "Job",
        "CronJob",
        "Ingress",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// The apply rank of an object: lower ranks go first.
pub fn apply_rank(object: &serde_json::Value) -> usize {
    kind_rank(str_at(object, "/kind"))
}

pub(crate) fn str_at<'a>(object: &'a serde_json::Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// The inventory entry naming `object`.
pub fn entry_of(object: &serde_json::Value) -> InventoryEntry {
    InventoryEntry {
        api_version: str_at(object, "/apiVersion").to_owned(),
        kind: str_at(object, "/kind").to_owned(),
        namespace: str_at(object, "/metadata/namespace").to_owned(),
        name: str_at(object, "/metadata/name").to_owned(),
    }
}

/// What an applied object is stamped with.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// Environment name.
    pub environment: &'a str,
    /// Full commit SHA the objects come from.
    pub commit: &'a str,
    /// Name of the release applying them.
    pub release: &'a str,
}

fn insert_into(object: &mut serde_json::Value, field: &str, pairs: &[(&str, &str)]) {
    let Some(metadata) = object
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let map = metadata
        .entry(field)
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if !map.is_object() {
        *map = serde_json::Value::Object(serde_json::Map::new());
    }
    if let Some(map) = map.as_object_mut() {
        for (k, v) in pairs {
            map.insert((*k).to_owned(), serde_json::Value::String((*v).to_owned()));
        }
    }
}

/// Stamps one object with Ship's labels (managed-by, environment) and annotations (commit,
/// release). Labels select; annotations describe.
pub fn stamp(object: &mut serde_json::Value, stamp: Stamp<'_>) {
    insert_into(object, "labels", &ship_labels(stamp.environment));
    insert_into(
        object,
        "annotations",
        &[(keys::COMMIT, stamp.commit), (keys::RELEASE, stamp.release)],
    );
}

/// The labels that mark an object as Ship's for `environment` (what [`managed_by_ship`] and
/// pruning look for).
pub fn ship_labels(environment: &str) -> [(&'static str, &str); 2] {
    [
        (keys::MANAGED_BY, keys::MANAGED_BY_SHIP),
        (keys::ENVIRONMENT, environment),
    ]
}

/// The label selector of [`ship_labels`]: what lists and watches of the environment's
/// objects select.
pub fn ship_selector(environment: &str) -> String {
    ship_labels(environment)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The (apiVersion, kind, namespace) groups of `objects`: one list or watch each.
pub fn groups_of(objects: &[serde_json::Value]) -> std::collections::BTreeSet<(String, String, String)> {
    objects
        .iter()
        .map(|object| {
            let entry = entry_of(object);
            (entry.api_version, entry.kind, entry.namespace)
        })
        .collect()
}

/// The objects of a release, stamped (with the digest last) and in apply order (stable
/// within a kind).
pub fn prepare(manifests: &[Manifest], stamp_with: Stamp<'_>) -> Vec<serde_json::Value> {
    prepare_leaving(manifests, stamp_with, &[])
}

/// As [`prepare`], with the fields `ship.yaml`'s `ignoreFields` names for each object added to
/// its `ship.dev/ignore-fields` annotation (before the digest: a change of them is a change).
pub fn prepare_leaving(
    manifests: &[Manifest],
    stamp_with: Stamp<'_>,
    ignore: &[ship_render::config::IgnoredField],
) -> Vec<serde_json::Value> {
    let mut objects: Vec<serde_json::Value> = manifests
        .iter()
        .map(|m| {
            let mut object = m.object.clone();
            stamp(&mut object, stamp_with);
            let (kind, name) = (
                str_at(&object, "/kind").to_owned(),
                str_at(&object, "/metadata/name").to_owned(),
            );
            let mut paths: Vec<String> = str_at(&object, "/metadata/annotations/ship.dev~1ignore-fields")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            for rule in ignore.iter().filter(|rule| rule.applies_to(&kind, &name)) {
                if !paths.contains(&rule.path) {
                    paths.push(rule.path.clone());
                }
            }
            if !paths.is_empty() {
                let joined = paths.join(", ");
                insert_into(
                    &mut object,
                    "annotations",
                    &[(crate::changes::IGNORE_FIELDS, joined.as_str())],
                );
            }
            crate::changes::stamp_digest(&mut object);
            object
        })
        .collect();
    objects.sort_by_key(|o| kind_rank(str_at(o, "/kind")));
    objects
}

/// Is this object one Ship manages for `environment`? Pruning deletes nothing else.
pub fn managed_by_ship(object: &serde_json::Value, environment: &str) -> bool {
    let label = |key: &str| {
        object
            .pointer("/metadata/labels")
            .and_then(|l| l.get(key))
            .and_then(serde_json::Value::as_str)
    };
    label(keys::MANAGED_BY) == Some(keys::MANAGED_BY_SHIP) && label(keys::ENVIRONMENT) == Some(environment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_orders_and_stamps() {
        let manifests: Vec<Manifest> = [
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"main","labels":{"app":"web"}}}"#,
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"main"}}"#,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","namespace":"main","labels":"junk"}}"#,
        ]
        .iter()
        .map(|t| Manifest {
            object: serde_json::from_str(t).unwrap(),
            source: "x".into(),
        })
        .collect();
        let out = prepare(
            &manifests,
            Stamp {
                environment: "main",
                commit: "c0ffee",
                release: "main-c0ffee",
            },
        );
        let kinds: Vec<&str> = out.iter().map(|o| str_at(o, "/kind")).collect();
        assert_eq!(kinds, ["Namespace", "ConfigMap", "Deployment"]);
        let web = &out[2];
        assert_eq!(str_at(web, "/metadata/labels/app"), "web");
        assert!(managed_by_ship(web, "main"));
        assert!(!managed_by_ship(web, "production"));
        assert_eq!(str_at(web, "/metadata/annotations/ship.dev~1commit"), "c0ffee");
        assert_eq!(
            str_at(web, "/metadata/annotations/ship.dev~1release"),
            "main-c0ffee"
        );
        assert!(
            managed_by_ship(&out[1], "main"),
            "a non-object labels field is replaced"
        );
        assert_eq!(entry_of(web).to_string(), "Deployment/main/web");
    }

    #[test]
    fn ship_yaml_ignore_rules_join_the_objects_own_annotation_before_the_digest() {
        let manifests: Vec<Manifest> = [
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"main","annotations":{"ship.dev/ignore-fields":"spec.paused"}},"spec":{"replicas":2}}"#,
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","namespace":"main"},"spec":{"replicas":2}}"#,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web","namespace":"main"}}"#,
        ]
        .iter()
        .map(|t| Manifest {
            object: serde_json::from_str(t).unwrap(),
            source: "x".into(),
        })
        .collect();
        let stamp_with = Stamp {
            environment: "main",
            commit: "c0ffee",
            release: "main-c0ffee",
        };
        let rules: Vec<ship_render::config::IgnoredField> = serde_json::from_str(
            r#"[{"path": "spec.replicas", "kind": "Deployment"}, {"path": "spec.paused", "name": "web"}]"#,
        )
        .unwrap();
        let out = prepare_leaving(&manifests, stamp_with, &rules);
        let ignored = |i: usize| str_at(&out[i], "/metadata/annotations/ship.dev~1ignore-fields").to_owned();
        // Any kind named web takes the rule; only fields an object has are left (changes).
        assert_eq!(ignored(0), "spec.paused");
        assert_eq!(ignored(1), "spec.paused, spec.replicas");
        assert_eq!(ignored(2), "spec.replicas");
        // The rules are part of what the digest covers: changing them changes it.
        let plain = prepare(&manifests, stamp_with);
        assert_ne!(
            str_at(&plain[2], "/metadata/annotations/ship.dev~1digest"),
            str_at(&out[2], "/metadata/annotations/ship.dev~1digest")
        );
    }
}
