//! Pure decisions about releases and the objects they apply: names, order, labels, inventory,
//! what to prune, which release is newest and which was the last good one.

use std::collections::BTreeSet;

use ship_api::{InventoryEntry, Phase, ShipRelease, keys};
use ship_render::Manifest;

pub use ship_api::names::release_name;

/// How a tip was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TipSeen {
    /// In the mirror at start, or a branch seen for the first time: possibly older than what
    /// this controller did since (a promotion it pushed that the mirror has not fetched yet).
    Known,
    /// A fetch saw the branch move to it (forwards, or rewritten).
    Moved,
}

/// How a tip seen without a fetch that saw it move (in the mirror at start, or the first fetch
/// of a fresh mirror) counts: [`TipSeen::Moved`] when it differs from the tip the environment
/// last handled (`recorded`: the branch moved while no controller watched, a force-push back
/// during a restart for example), else [`TipSeen::Known`]. Without a record it is Known: it
/// may be older than what this controller did (a promotion pushed but not fetched yet).
pub fn first_sight(recorded: Option<&str>, commit: &str) -> TipSeen {
    match recorded {
        Some(handled) if handled != commit => TipSeen::Moved,
        _ => TipSeen::Known,
    }
}

/// What a branch tip at `commit` asks of `environment`, given the environment's `releases`:
/// `None` when the environment already follows it, else the name of a new release.
/// - The first release of a commit is [`release_name`], whichever way the tip was seen.
/// - A tip the branch *moved* to gets a release unless the newest release that came from the
///   branch (by a push or a promotion) is of this commit (deployed, deploying, or quarantined
///   after failing here). So when the branch comes back to a commit released before (a
///   force-push backwards, a reset), the new release is `<name>-2`, `-3`, ..., its name and
///   history telling it from the first time.
/// - A tip only [`TipSeen::Known`] never gets a second release: it may be stale.
/// - Manual rollbacks are not from the branch: a tip that has not moved does not undo one.
pub fn tip_release(
    environment: &str,
    commit: &str,
    releases: &[ShipRelease],
    seen: TipSeen,
) -> Option<String> {
    let base = release_name(environment, commit);
    let taken = |name: &str| releases.iter().any(|r| r.metadata.name.as_deref() == Some(name));
    if seen == TipSeen::Known {
        return (!taken(&base)).then_some(base);
    }
    let from_branch = releases
        .iter()
        .filter(|r| r.spec.environment == environment)
        .filter(|r| {
            matches!(
                r.spec.reason,
                ship_api::Reason::Push | ship_api::Reason::Promotion
            )
        })
        .max_by_key(|r| sequence(r));
    if from_branch.is_some_and(|r| r.spec.commit == commit) {
        return None;
    }
    if !taken(&base) {
        return Some(base);
    }
    (2..).map(|n| format!("{base}-{n}")).find(|name| !taken(name))
}

/// A release's place in its environment's order (see [`ShipRelease::sequence`]).
pub fn sequence(release: &ShipRelease) -> (i64, String) {
    release.sequence()
}

/// The newest release of `release`'s environment among `others`, when it is newer than `release`.
pub fn newer_release<'a>(release: &ShipRelease, others: &'a [ShipRelease]) -> Option<&'a ShipRelease> {
    let own = sequence(release);
    others
        .iter()
        .filter(|o| o.spec.environment == release.spec.environment && sequence(o) > own)
        .max_by_key(|o| sequence(o))
}

fn phase_of(release: &ShipRelease) -> Option<Phase> {
    release.status.as_ref().and_then(|s| s.phase)
}

/// What `release` rolls back to if it fails: the environment's last good release before it,
/// of another commit ([`ship_api::environment::last_good`], the one meaning of "last good").
pub fn rollback_target<'a>(release: &ShipRelease, others: &'a [ShipRelease]) -> Option<&'a ShipRelease> {
    ship_api::environment::last_good(
        &release.spec.environment,
        others,
        Some(&sequence(release)),
        &release.spec.commit,
    )
}

/// Releases of one environment to delete so that at most `keep` remain: the oldest settled ones,
/// never one still in progress, and never the environment's newest Succeeded release.
pub fn to_collect(releases: &[ShipRelease], keep: usize) -> Vec<String> {
    let mut sorted: Vec<&ShipRelease> = releases.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(sequence(r)));
    let newest_good = sorted
        .iter()
        .find(|r| phase_of(r) == Some(Phase::Succeeded))
        .map(|r| sequence(r));
    // The newest release that came from the branch is what `tip_release` compares the tip
    // with: collecting it (after many manual rollbacks) would make the tip look new again.
    let newest_from_branch = sorted
        .iter()
        .find(|r| {
            matches!(
                r.spec.reason,
                ship_api::Reason::Push | ship_api::Reason::Promotion
            )
        })
        .map(|r| sequence(r));
    sorted
        .iter()
        .skip(keep)
        .filter(|r| {
            r.is_settled() && Some(sequence(r)) != newest_good && Some(sequence(r)) != newest_from_branch
        })
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

/// Apply order by kind: what others depend on first (Helm's order, shortened).
fn kind_rank(kind: &str) -> usize {
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

fn str_at<'a>(object: &'a serde_json::Value, pointer: &str) -> &'a str {
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

/// The objects of a release, stamped and in apply order (stable within a kind).
pub fn prepare(manifests: &[Manifest], stamp_with: Stamp<'_>) -> Vec<serde_json::Value> {
    let mut objects: Vec<serde_json::Value> = manifests
        .iter()
        .map(|m| {
            let mut object = m.object.clone();
            stamp(&mut object, stamp_with);
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
    use ship_api::{Reason, ShipReleaseSpec, ShipReleaseStatus};

    fn release(name: &str, commit_char: char, seq: i64, phase: Phase) -> ShipRelease {
        let mut r = ShipRelease::new(
            name,
            ShipReleaseSpec {
                environment: "main".into(),
                commit: std::iter::repeat_n(commit_char, 40).collect(),
                branch: "main".into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
        );
        r.metadata.annotations = Some([(keys::SEQUENCE.to_owned(), seq.to_string())].into());
        r.status = Some(ShipReleaseStatus {
            phase: Some(phase),
            ..Default::default()
        });
        r
    }

    fn entry(kind: &str, name: &str) -> InventoryEntry {
        InventoryEntry {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: if kind == "Namespace" {
                String::new()
            } else {
                "main".into()
            },
            name: name.into(),
        }
    }

    #[test]
    fn names_are_deterministic_and_valid() {
        assert_eq!(
            release_name("main", "0123456789abcdef0123456789abcdef01234567"),
            "main-0123456789"
        );
    }

    #[test]
    fn newest_wins_and_last_good_skips_failures_and_same_commit() {
        let all = vec![
            release("a", 'a', 1, Phase::Succeeded),
            release("b", 'b', 2, Phase::Succeeded),
            release("c", 'c', 3, Phase::RolledBack),
            release("d", 'd', 4, Phase::Testing),
            release("e", 'b', 5, Phase::Progressing),
        ];
        assert_eq!(
            newer_release(&all[3], &all).map(|r| r.metadata.name.as_deref()),
            Some(Some("e"))
        );
        assert!(newer_release(&all[4], &all).is_none());
        assert_eq!(
            rollback_target(&all[3], &all).map(|r| r.metadata.name.as_deref()),
            Some(Some("b"))
        );
        // e deploys b's commit again: its last good release must be another commit.
        assert_eq!(
            rollback_target(&all[4], &all).map(|r| r.metadata.name.as_deref()),
            Some(Some("a"))
        );
        assert!(rollback_target(&all[0], &all).is_none());
    }

    #[test]
    fn collection_keeps_in_progress_and_newest_good() {
        let all = vec![
            release("a", 'a', 1, Phase::Succeeded),
            release("b", 'b', 2, Phase::Pending),
            release("c", 'c', 3, Phase::Failed),
            release("d", 'd', 4, Phase::RolledBack),
            release("e", 'e', 5, Phase::Failed),
        ];
        let mut gone = to_collect(&all, 2);
        gone.sort();
        // Keep e, d (newest two), b (in progress), a (the newest good one): collect c.
        assert_eq!(gone, vec!["c".to_owned()]);
        assert!(to_collect(&all, 10).is_empty());
        // After manual releases only, the newest release from the branch stays too.
        let manual = |name: &str, c: char, seq: i64| {
            let mut r = release(name, c, seq, Phase::Succeeded);
            r.spec.reason = Reason::Manual;
            r
        };
        let all = vec![
            release("push", 'a', 1, Phase::RolledBack),
            manual("m1", 'b', 2),
            manual("m2", 'c', 3),
            manual("m3", 'd', 4),
        ];
        let mut gone = to_collect(&all, 1);
        gone.sort();
        // keep m3 (newest, and newest good), push (newest from the branch): collect m1, m2
        assert_eq!(gone, vec!["m1".to_owned(), "m2".to_owned()]);
    }

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
    fn a_tip_gets_a_release_unless_the_branch_already_led_there() {
        let with_reason = |mut r: ShipRelease, reason: Reason| {
            r.spec.reason = reason;
            r
        };
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        // nothing yet: the first release of the tip
        assert_eq!(
            tip_release("main", &a, &[], TipSeen::Moved).as_deref(),
            Some("main-aaaaaaaaaa")
        );
        let first = release("main-aaaaaaaaaa", 'a', 1, Phase::Succeeded);
        assert_eq!(
            tip_release("main", &a, std::slice::from_ref(&first), TipSeen::Moved),
            None,
            "already there"
        );
        // the branch moves on, then is force-pushed back: a second release of a, told apart
        let second = release("main-bbbbbbbbbb", 'b', 2, Phase::RolledBack);
        let both = [first.clone(), second.clone()];
        assert_eq!(
            tip_release("main", &b, &both, TipSeen::Moved),
            None,
            "b is quarantined, not re-released"
        );
        assert_eq!(
            tip_release("main", &a, &both, TipSeen::Moved).as_deref(),
            Some("main-aaaaaaaaaa-2")
        );
        let again = release("main-aaaaaaaaaa-2", 'a', 3, Phase::Succeeded);
        let three = [first.clone(), second.clone(), again];
        assert_eq!(tip_release("main", &a, &three, TipSeen::Moved), None);
        assert_eq!(
            tip_release("main", &b, &three, TipSeen::Moved).as_deref(),
            Some("main-bbbbbbbbbb-2")
        );
        // a manual rollback is not the branch: the tip it rolled away from does not come back
        let manual = with_reason(
            release("main-aaaaaaaaaa-m", 'a', 4, Phase::Succeeded),
            Reason::Manual,
        );
        let rolled = [first, second.clone(), manual];
        assert_eq!(tip_release("main", &b, &rolled, TipSeen::Moved), None);
        // other environments' releases do not count
        let prod = with_reason(
            release("production-aaaaaaaaaa", 'a', 5, Phase::Succeeded),
            Reason::Promotion,
        );
        let mut prod = prod;
        prod.spec.environment = "production".into();
        assert_eq!(
            tip_release("main", &b, &[second.clone(), prod], TipSeen::Moved).as_deref(),
            None
        );
        // first sight: moved only when the environment last handled another tip
        assert_eq!(first_sight(None, &a), TipSeen::Known);
        assert_eq!(first_sight(Some(&a), &a), TipSeen::Known);
        assert_eq!(first_sight(Some(&b), &a), TipSeen::Moved);
        // a tip seen only at start (maybe stale: a promotion this controller pushed and the
        // mirror has not fetched) gets a first release, never a second one
        assert_eq!(
            tip_release("main", &a, std::slice::from_ref(&second), TipSeen::Known).as_deref(),
            Some("main-aaaaaaaaaa")
        );
        let promoted = with_reason(
            release("main-cccccccccc", 'c', 9, Phase::Succeeded),
            Reason::Promotion,
        );
        assert_eq!(tip_release("main", &b, &[second, promoted], TipSeen::Known), None);
    }

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
