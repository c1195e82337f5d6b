//! What pruning may delete: the objects earlier releases applied that the new one no longer
//! declares, and the rule that keeps what is not Ship's or would take other objects with it.
//! Pure; `apply.rs` reads the live objects and deletes.

use std::collections::BTreeSet;

use ship_api::{InventoryEntry, keys};

use crate::inventory::{kind_rank, managed_by_ship, str_at};

/// The `ship.dev/prune` mark an object carries, if any.
pub fn prune_mark(object: &serde_json::Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(keys::PRUNE))
        .and_then(serde_json::Value::as_str)
}

/// Does `object` (of `kind`), found in a namespace, come from Ship for `environment`, from its
/// owner, or from Kubernetes' own per-namespace defaults (the `default` ServiceAccount,
/// ServiceAccount token Secrets, `kube-root-ca.crt`)? What does not keeps a namespace from
/// being pruned.
pub fn made_by_kubernetes_or_ship(kind: &str, object: &serde_json::Value, environment: &str) -> bool {
    let name = str_at(object, "/metadata/name");
    let has_owner = object
        .pointer("/metadata/ownerReferences")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|o| !o.is_empty());
    managed_by_ship(object, environment)
        || has_owner
        || (kind == "ServiceAccount" && name == "default")
        || (kind == "Secret" && str_at(object, "/type") == "kubernetes.io/service-account-token")
        || (kind == "ConfigMap" && name == "kube-root-ca.crt")
}

/// Kinds whose deletion takes other objects with it: a Namespace everything in it, a CRD every
/// custom resource of its kind, a claim or volume its data. Ship prunes them only when git marks
/// them `ship.dev/prune: enabled`.
pub const CASCADING_KINDS: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "PersistentVolumeClaim",
    "PersistentVolume",
];

/// What to do with an object a newer commit no longer declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneVerdict {
    /// Delete it.
    Delete,
    /// Leave it, silently: it is not Ship's (someone took it over, or made it by hand).
    NotOwned,
    /// Leave it, and say so (status and a Warning event): the reason.
    Refuse(String),
}

/// Decides whether `live` (an object of `entry`, as the API server returned it) may be pruned
/// from `environment`, whose own namespace is `environment_namespace`. Pure; the rule, in order:
/// 1. an object without Ship's labels for this environment is not Ship's to delete;
/// 2. `ship.dev/prune: disabled` is never pruned, whatever its kind;
/// 3. the environment's own namespace is never pruned while the environment exists;
/// 4. a cascading kind ([`CASCADING_KINDS`]) is pruned only when marked `ship.dev/prune: enabled`;
/// 5. a Namespace so marked is still kept while it holds objects Ship does not own
///    (`holds_unowned`, which the caller looks up only for such a Namespace).
pub fn prune_verdict(
    entry: &InventoryEntry,
    live: &serde_json::Value,
    environment: &str,
    environment_namespace: &str,
    holds_unowned: Option<&str>,
) -> PruneVerdict {
    if !managed_by_ship(live, environment) {
        return PruneVerdict::NotOwned;
    }
    let marked = prune_mark(live);
    if marked == Some(keys::PRUNE_DISABLED) {
        return PruneVerdict::Refuse(format!("it is marked {}: {}", keys::PRUNE, keys::PRUNE_DISABLED));
    }
    if entry.kind == "Namespace" && entry.name == environment_namespace {
        return PruneVerdict::Refuse(format!(
            "it is the namespace of environment {environment}, kept while ship.yaml declares the environment"
        ));
    }
    if CASCADING_KINDS.contains(&entry.kind.as_str()) && marked != Some(keys::PRUNE_ENABLED) {
        return PruneVerdict::Refuse(format!(
            "deleting a {} deletes what it holds; mark it {}: {} in git to let Ship prune it",
            entry.kind,
            keys::PRUNE,
            keys::PRUNE_ENABLED
        ));
    }
    if entry.kind == "Namespace"
        && let Some(unowned) = holds_unowned
    {
        return PruneVerdict::Refuse(format!("it still holds {unowned}, which Ship does not own"));
    }
    PruneVerdict::Delete
}

/// What to delete when the environment moves to `keep`: every object in an earlier inventory
/// of the environment that `keep` no longer declares, in reverse apply order (workloads before
/// the Namespaces and CRDs they live in).
pub fn to_prune<'a>(
    previous: impl IntoIterator<Item = &'a InventoryEntry>,
    keep: &[InventoryEntry],
) -> Vec<InventoryEntry> {
    let keep: BTreeSet<&InventoryEntry> = keep.iter().collect();
    let mut gone: Vec<InventoryEntry> = previous
        .into_iter()
        .filter(|e| !keep.contains(e))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    gone.sort_by_key(|e| std::cmp::Reverse(kind_rank(&e.kind)));
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::entry;
    #[test]
    fn what_kubernetes_and_ship_made_does_not_keep_a_namespace_alive() {
        use serde_json::json;
        let ship = json!({"metadata": {"name": "web", "labels": {keys::MANAGED_BY: keys::MANAGED_BY_SHIP, keys::ENVIRONMENT: "main"}}});
        assert!(made_by_kubernetes_or_ship("ConfigMap", &ship, "main"));
        assert!(
            !made_by_kubernetes_or_ship("ConfigMap", &ship, "production"),
            "another environment's"
        );
        let owned = json!({"metadata": {"name": "web-1", "ownerReferences": [{"uid": "u"}]}});
        assert!(made_by_kubernetes_or_ship("Pod", &owned, "main"));
        let defaults = [
            ("ServiceAccount", json!({"metadata": {"name": "default"}})),
            (
                "Secret",
                json!({"metadata": {"name": "default-token-x"}, "type": "kubernetes.io/service-account-token"}),
            ),
            ("ConfigMap", json!({"metadata": {"name": "kube-root-ca.crt"}})),
        ];
        for (kind, object) in &defaults {
            assert!(made_by_kubernetes_or_ship(kind, object, "main"), "{kind}");
        }
        // what people make by hand keeps it
        let by_hand = [
            (
                "Secret",
                json!({"metadata": {"name": "db-password"}, "type": "Opaque"}),
            ),
            ("PersistentVolumeClaim", json!({"metadata": {"name": "data"}})),
            ("ServiceAccount", json!({"metadata": {"name": "app"}})),
            ("ConfigMap", json!({"metadata": {"name": "settings"}})),
        ];
        for (kind, object) in &by_hand {
            assert!(!made_by_kubernetes_or_ship(kind, object, "main"), "{kind}");
        }
    }

    #[test]
    fn prune_never_cascades_unless_git_says_so() {
        use serde_json::json;
        let entry = |kind: &str, name: &str| InventoryEntry {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: String::new(),
            name: name.into(),
        };
        let live = |annotations: serde_json::Value| {
            json!({"metadata": {"labels": {keys::MANAGED_BY: keys::MANAGED_BY_SHIP, keys::ENVIRONMENT: "main"},
                                "annotations": annotations}})
        };
        let plain = live(json!({}));
        let enabled = live(json!({keys::PRUNE: keys::PRUNE_ENABLED}));
        let disabled = live(json!({keys::PRUNE: keys::PRUNE_DISABLED}));
        let verdict = |e: &InventoryEntry, l: &serde_json::Value, unowned: Option<&str>| {
            prune_verdict(e, l, "main", "shop", unowned)
        };
        assert_eq!(
            verdict(&entry("ConfigMap", "a"), &plain, None),
            PruneVerdict::Delete
        );
        assert!(
            matches!(verdict(&entry("ConfigMap", "a"), &disabled, None), PruneVerdict::Refuse(m) if m.contains("disabled"))
        );
        for kind in CASCADING_KINDS {
            assert!(
                matches!(verdict(&entry(kind, "x"), &plain, None), PruneVerdict::Refuse(m) if m.contains("enabled")),
                "{kind}"
            );
        }
        assert_eq!(
            verdict(&entry("PersistentVolumeClaim", "data"), &enabled, None),
            PruneVerdict::Delete
        );
        assert_eq!(
            verdict(&entry("CustomResourceDefinition", "x"), &enabled, None),
            PruneVerdict::Delete
        );
        // Namespaces: the environment's own never; another only when empty of others' objects.
        assert!(
            matches!(verdict(&entry("Namespace", "shop"), &enabled, None), PruneVerdict::Refuse(m) if m.contains("environment main"))
        );
        assert_eq!(
            verdict(&entry("Namespace", "old-shop"), &enabled, None),
            PruneVerdict::Delete
        );
        assert!(matches!(
            verdict(&entry("Namespace", "old-shop"), &enabled, Some("Secret/old-shop/db")),
            PruneVerdict::Refuse(m) if m.contains("Secret/old-shop/db")
        ));
        // Not Ship's: left alone whatever it says.
        let foreign = json!({"metadata": {"labels": {keys::ENVIRONMENT: "main"}}});
        assert_eq!(
            verdict(&entry("ConfigMap", "a"), &foreign, None),
            PruneVerdict::NotOwned
        );
        let other_env = json!({"metadata": {"labels": {keys::MANAGED_BY: keys::MANAGED_BY_SHIP, keys::ENVIRONMENT: "production"}}});
        assert_eq!(
            verdict(&entry("Namespace", "x"), &other_env, None),
            PruneVerdict::NotOwned
        );
    }

    #[test]
    fn prune_lists_what_is_gone_workloads_first() {
        let old = [
            entry("Namespace", "extra"),
            entry("Deployment", "web"),
            entry("ConfigMap", "gone"),
        ];
        let older = [entry("ConfigMap", "gone")];
        let keep = [entry("Deployment", "web")];
        let gone = to_prune(old.iter().chain(older.iter()), &keep);
        assert_eq!(
            gone,
            vec![entry("ConfigMap", "gone"), entry("Namespace", "extra")]
        );
    }
}
