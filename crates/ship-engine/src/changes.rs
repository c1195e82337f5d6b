//! What a release must write: the objects whose manifest changed since Ship last wrote them,
//! the ones missing, and the ones another writer changed (drift). Pure: it compares the
//! prepared objects with the live objects' metadata (one metadata-only list per kind and
//! namespace, [`crate::apply::Applier::live_metadata`]).
//!
//! What Ship last wrote is recorded on the object itself, as a digest
//! ([`ship_api::keys::DIGEST`]), not in an earlier release's inventory: after a crash in the
//! middle of an apply, or a rollback, only the live object knows which manifest it holds.
//!
//! Drift is read from `metadata.managedFields`: a field the manifest sets that another manager
//! now owns was changed by someone else (`kubectl edit`, a script, another controller). A
//! change by another manager to a field Ship does not set (a controller's annotation, a label
//! added by hand) is not drift, and neither is a write to the `status` subresource. What this
//! cannot see (another writer deleting a field Ship set: the field leaves every fieldset) is
//! caught by the full re-check that drift correction runs now and then.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use ship_api::{FIELD_MANAGER, keys};

use crate::inventory::str_at;

/// The key of an object in a release and in the cluster: apiVersion's group, kind,
/// namespace, name. (The version is left out: one object served at two versions is one
/// object.)
pub type ObjectKey = (String, String, String, String);

/// The key of `object`.
pub fn key_of(object: &Value) -> ObjectKey {
    let api_version = str_at(object, "/apiVersion");
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    (
        group.to_owned(),
        str_at(object, "/kind").to_owned(),
        str_at(object, "/metadata/namespace").to_owned(),
        str_at(object, "/metadata/name").to_owned(),
    )
}

/// The digest of what Ship writes of `object`: SHA-256 of its canonical JSON (keys sorted),
/// without the annotations that change with every release (commit, release) and without the
/// digest itself; the first 32 hex digits.
pub fn digest(object: &Value) -> String {
    let mut content = object.clone();
    if let Some(annotations) = content
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for key in [keys::COMMIT, keys::RELEASE, keys::DIGEST] {
            annotations.remove(key);
        }
        if annotations.is_empty()
            && let Some(metadata) = content.get_mut("metadata").and_then(Value::as_object_mut)
        {
            metadata.remove("annotations");
        }
    }
    let mut hasher = Sha256::new();
    write_canonical(&content, &mut hasher);
    let sum = hasher.finalize();
    sum.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Feeds `value` to the hasher as JSON with object keys in sorted order, whatever order the
/// map keeps them in.
fn write_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            hasher.update(b"{");
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hasher.update(Value::String(key.clone()).to_string().as_bytes());
                hasher.update(b":");
                write_canonical(item, hasher);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                write_canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

/// Writes the digest annotation of `object` (call it last: after every other stamp).
pub fn stamp_digest(object: &mut Value) {
    let digest = digest(object);
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(keys::DIGEST.to_owned(), Value::String(digest));
        }
    }
}

/// Why an object is written, or that it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// It does not exist (or Ship cannot see it: not labelled as the environment's).
    Missing,
    /// Its manifest changed since Ship last wrote it (or Ship never wrote this digest).
    Changed,
    /// Another manager changed a field the manifest sets.
    Drifted {
        /// The manager.
        manager: String,
    },
    /// As Ship last wrote it.
    Unchanged,
}

impl Need {
    /// It must be written.
    pub fn writes(&self) -> bool {
        *self != Need::Unchanged
    }
}

/// What `object` (prepared: stamped, digest included) needs, given the live object's metadata.
pub fn need(object: &Value, live: Option<&ObjectMeta>) -> Need {
    let Some(live) = live else {
        return Need::Missing;
    };
    let wanted = str_at(object, "/metadata/annotations/ship.dev~1digest");
    let written = live
        .annotations
        .as_ref()
        .and_then(|a| a.get(keys::DIGEST))
        .map(String::as_str);
    if wanted.is_empty() || written != Some(wanted) {
        return Need::Changed;
    }
    let others = live
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| is_other_writer(entry));
    for entry in others {
        let Some(fields) = entry.fields_v1.as_ref() else {
            continue;
        };
        if overlaps(&fields.0, object) {
            return Need::Drifted {
                manager: entry.manager.clone().unwrap_or_default(),
            };
        }
    }
    Need::Unchanged
}

/// A managedFields entry of a writer other than Ship's applies, on the object itself (a
/// status writer changes nothing Ship sets).
fn is_other_writer(entry: &ManagedFieldsEntry) -> bool {
    let subresource = entry.subresource.as_deref().unwrap_or_default();
    entry.manager.as_deref() != Some(FIELD_MANAGER) && subresource != "status"
}

/// Whether the fieldset `fields` (managedFields' `fieldsV1`: `f:<name>` for a map's key,
/// `k:`/`v:`/`i:` for list items, `.` for the container itself) owns a field that `object`
/// sets. A list the manifest sets counts as set whole: any item of it owned by another writer
/// overlaps.
fn overlaps(fields: &Value, object: &Value) -> bool {
    let (Some(fields), Some(map)) = (fields.as_object(), object.as_object()) else {
        return false;
    };
    fields.iter().any(|(key, below)| {
        let Some(name) = key.strip_prefix("f:") else {
            return false;
        };
        let Some(set) = map.get(name) else {
            return false;
        };
        match (set, below.as_object()) {
            // Owned as a whole (an atomic map): it overlaps what the manifest sets in it.
            (Value::Object(_), None) => true,
            (Value::Object(_), Some(children)) if children.is_empty() => true,
            // Its keys, one by one (`.` alone: the writer made the map, owns none of its keys).
            (Value::Object(_), Some(_)) => overlaps(below, set),
            _ => true,
        }
    })
}

/// Whether the live object (`live`, its full body) holds every field `object` (prepared)
/// sets, with the same value: what the periodic full re-check asks, for what metadata cannot
/// show (another writer removing a field Ship set). Maps and list items may hold more (the API
/// server defaults fields); a list must have as many items. The annotations that name the
/// release that last wrote an object are not compared. A value the API server normalizes
/// (`0.5` CPU read back as `500m`) reads as different, and the object is written again: a
/// wasted request, never a missed change.
pub fn holds(object: &Value, live: &Value) -> bool {
    let mut wanted = object.clone();
    if let Some(annotations) = wanted
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(keys::COMMIT);
        annotations.remove(keys::RELEASE);
    }
    contains(&wanted, live)
}

fn contains(wanted: &Value, live: &Value) -> bool {
    match (wanted, live) {
        (Value::Object(wanted), Value::Object(live)) => wanted
            .iter()
            .all(|(key, value)| live.get(key).is_some_and(|held| contains(value, held))),
        (Value::Array(wanted), Value::Array(live)) => {
            wanted.len() == live.len() && wanted.iter().zip(live).all(|(w, l)| contains(w, l))
        }
        (Value::Number(wanted), Value::Number(live)) => wanted.as_f64() == live.as_f64(),
        (wanted, live) => wanted == live,
    }
}

/// Whether the object as a watch saw it was last written by someone other than Ship, in
/// something other than its status: the newest managedFields entry (by time) that touches more
/// than `status` belongs to another manager. Returns that manager. A write in the same second
/// as Ship's counts as another's (a drift check is cheap; a missed edit is not).
pub fn foreign_write(meta: &ObjectMeta) -> Option<String> {
    let touches_more_than_status = |entry: &&ManagedFieldsEntry| {
        entry.subresource.as_deref().unwrap_or_default() != "status"
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.as_object())
                .is_none_or(|fields| fields.keys().any(|k| k != "f:status"))
    };
    let entries: Vec<&ManagedFieldsEntry> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(touches_more_than_status)
        .collect();
    let newest = entries
        .iter()
        .filter_map(|e| e.time.as_ref())
        .map(|t| t.0)
        .max()?;
    let at_newest: Vec<&&ManagedFieldsEntry> = entries
        .iter()
        .filter(|e| e.time.as_ref().map(|t| t.0) == Some(newest))
        .collect();
    at_newest
        .iter()
        .find(|e| e.manager.as_deref() != Some(FIELD_MANAGER))
        .map(|e| e.manager.clone().unwrap_or_default())
}

/// The live metadata of the environment's objects, by key.
pub type Live = HashMap<ObjectKey, ObjectMeta>;

/// What each of `objects` needs, in their order.
pub fn needs(objects: &[Value], live: &Live) -> Vec<Need> {
    objects.iter().map(|o| need(o, live.get(&key_of(o)))).collect()
}

/// How many objects of a release needed what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Not in the cluster.
    pub missing: usize,
    /// Their manifest changed.
    pub changed: usize,
    /// Changed by another writer.
    pub drifted: usize,
    /// Left as they are.
    pub unchanged: usize,
}

/// The objects to write, in their order, and the tally of why.
pub fn select(objects: &[Value], live: &Live) -> (Vec<Value>, Tally) {
    let mut tally = Tally::default();
    let mut write = Vec::new();
    for (object, need) in objects.iter().zip(needs(objects, live)) {
        match need {
            Need::Missing => tally.missing += 1,
            Need::Changed => tally.changed += 1,
            Need::Drifted { .. } => tally.drifted += 1,
            Need::Unchanged => {
                tally.unchanged += 1;
                continue;
            }
        }
        write.push(object.clone());
    }
    (write, tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    fn configmap(body: &str) -> Value {
        let mut object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "main", "labels": {"app": "web"},
                         "annotations": {"ship.dev/commit": "c1", "ship.dev/release": "main-c1"}},
            "data": {"body": body}
        });
        stamp_digest(&mut object);
        object
    }

    fn live_of(object: &Value, managed: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        let mut meta: ObjectMeta = serde_json::from_value(object["metadata"].clone()).unwrap();
        meta.managed_fields = Some(managed);
        meta
    }

    fn entry(manager: &str, operation: &str, subresource: Option<&str>, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            subresource: subresource.map(str::to_owned),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn ship_owns_all() -> ManagedFieldsEntry {
        entry(
            FIELD_MANAGER,
            "Apply",
            None,
            json!({"f:data": {"f:body": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}),
        )
    }

    #[test]
    fn the_digest_ignores_key_order_and_the_per_release_annotations_and_sees_any_content() {
        let a = configmap("hello");
        let mut other_release = a.clone();
        other_release["metadata"]["annotations"]["ship.dev/commit"] = json!("c2");
        other_release["metadata"]["annotations"]["ship.dev/release"] = json!("main-c2");
        assert_eq!(digest(&a), digest(&other_release));
        let reordered: Value = serde_json::from_str(
            r#"{"data":{"body":"hello"},"metadata":{"annotations":{"ship.dev/release":"x","ship.dev/commit":"y"},"namespace":"main","labels":{"app":"web"},"name":"web"},"kind":"ConfigMap","apiVersion":"v1"}"#,
        )
        .unwrap();
        assert_eq!(digest(&a), digest(&reordered));
        for changed in [
            configmap("hello!"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "main"}, "data": {"body": "hello"}}),
        ] {
            assert_ne!(digest(&a), digest(&changed));
        }
        // A string that looks like JSON is not confused with structure.
        let tricky = json!({"a": "{\"b\":1}"});
        assert_ne!(digest(&tricky), digest(&json!({"a": {"b": 1}})));
        assert_eq!(str_at(&a, "/metadata/annotations/ship.dev~1digest").len(), 32);
    }

    #[test]
    fn an_object_is_written_when_missing_changed_or_drifted_and_left_alone_otherwise() {
        let object = configmap("hello");
        assert_eq!(need(&object, None), Need::Missing);
        let live = live_of(&object, vec![ship_owns_all()]);
        assert_eq!(need(&object, Some(&live)), Need::Unchanged);
        assert!(!Need::Unchanged.writes());
        assert_eq!(need(&configmap("new"), Some(&live)), Need::Changed);
        // Written by a Ship from before digests: no annotation, so written again once.
        let mut old = live.clone();
        old.annotations.as_mut().unwrap().remove(keys::DIGEST);
        assert_eq!(need(&object, Some(&old)), Need::Changed);

        // kubectl edit of data.body: the field moved to kubectl-edit.
        let edited = live_of(
            &object,
            vec![
                entry(
                    FIELD_MANAGER,
                    "Apply",
                    None,
                    json!({"f:metadata": {"f:labels": {"f:app": {}}}}),
                ),
                entry("kubectl-edit", "Update", None, json!({"f:data": {"f:body": {}}})),
            ],
        );
        assert_eq!(
            need(&object, Some(&edited)),
            Need::Drifted {
                manager: "kubectl-edit".into()
            }
        );
        // Another writer's annotation, a status write, or a label Ship does not set: no drift.
        let others = live_of(
            &object,
            vec![
                ship_owns_all(),
                entry(
                    "kube-controller-manager",
                    "Update",
                    None,
                    json!({"f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}}}),
                ),
                entry(
                    "kube-controller-manager",
                    "Update",
                    Some("status"),
                    json!({"f:data": {"f:body": {}}}),
                ),
                entry(
                    "kubectl-label",
                    "Update",
                    None,
                    json!({"f:metadata": {"f:labels": {"f:team": {}}}}),
                ),
            ],
        );
        assert_eq!(need(&object, Some(&others)), Need::Unchanged);
    }

    #[test]
    fn another_writer_of_a_list_item_or_a_whole_map_the_manifest_sets_is_drift() {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "main"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
        });
        stamp_digest(&mut deployment);
        let image_by_hand = live_of(
            &deployment,
            vec![entry(
                "kubectl-set",
                "Update",
                None,
                json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {"f:image": {}}}}}}}),
            )],
        );
        assert!(matches!(
            need(&deployment, Some(&image_by_hand)),
            Need::Drifted { .. }
        ));
        let scaled = live_of(
            &deployment,
            vec![entry(
                "kubectl-scale",
                "Update",
                Some("scale"),
                json!({"f:spec": {"f:replicas": {}}}),
            )],
        );
        assert!(matches!(need(&deployment, Some(&scaled)), Need::Drifted { .. }));
        let elsewhere = live_of(
            &deployment,
            vec![entry(
                "someone",
                "Update",
                None,
                json!({"f:spec": {"f:paused": {}}}),
            )],
        );
        assert_eq!(need(&deployment, Some(&elsewhere)), Need::Unchanged);
    }

    #[test]
    fn a_watch_tells_anothers_write_from_ships_own_and_from_status_writes() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let at = |s: i64| Some(Time(jiff::Timestamp::from_second(s).unwrap()));
        let timed = |mut e: ManagedFieldsEntry, s: i64| {
            e.time = at(s);
            e
        };
        let object = configmap("hello");
        let ship_last = live_of(
            &object,
            vec![
                timed(
                    entry("kubectl-edit", "Update", None, json!({"f:data": {"f:body": {}}})),
                    10,
                ),
                timed(ship_owns_all(), 20),
            ],
        );
        assert_eq!(foreign_write(&ship_last), None, "Ship's own write");
        let edited = live_of(
            &object,
            vec![
                timed(ship_owns_all(), 10),
                timed(
                    entry("kubectl-edit", "Update", None, json!({"f:data": {"f:body": {}}})),
                    20,
                ),
            ],
        );
        assert_eq!(foreign_write(&edited).as_deref(), Some("kubectl-edit"));
        let same_second = live_of(
            &object,
            vec![
                timed(ship_owns_all(), 20),
                timed(
                    entry("script", "Update", None, json!({"f:data": {"f:body": {}}})),
                    20,
                ),
            ],
        );
        assert_eq!(foreign_write(&same_second).as_deref(), Some("script"));
        // A status write after Ship's, by subresource (1.22+) or by its fields (before): not drift.
        let status_writes = live_of(
            &object,
            vec![
                timed(ship_owns_all(), 10),
                timed(
                    entry(
                        "kube-controller-manager",
                        "Update",
                        Some("status"),
                        json!({"f:status": {}}),
                    ),
                    30,
                ),
                timed(
                    entry(
                        "kube-controller-manager",
                        "Update",
                        None,
                        json!({"f:status": {"f:replicas": {}}}),
                    ),
                    40,
                ),
            ],
        );
        assert_eq!(foreign_write(&status_writes), None);
        assert_eq!(
            foreign_write(&ObjectMeta::default()),
            None,
            "no managedFields: nothing to tell"
        );
    }

    #[test]
    fn a_full_recheck_sees_a_removed_field_and_accepts_what_the_server_adds() {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "main", "labels": {"app": "web"},
                         "annotations": {"ship.dev/commit": "c2", "ship.dev/release": "main-c2"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}]}]}}}
        });
        stamp_digest(&mut deployment);
        let mut live = deployment.clone();
        // Written by an older release; the server's defaults and another writer's label.
        live["metadata"]["annotations"]["ship.dev/commit"] = json!("c1");
        live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("3");
        live["metadata"]["labels"]["team"] = json!("checkout");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["status"] = json!({"replicas": 2});
        assert!(holds(&deployment, &live));
        // Removed by hand: an env var, a label, the replicas; or a list item added.
        let mut no_env = live.clone();
        no_env["spec"]["template"]["spec"]["containers"][0]["env"] = json!([]);
        let mut no_label = live.clone();
        no_label["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        let mut no_replicas = live.clone();
        no_replicas["spec"].as_object_mut().unwrap().remove("replicas");
        let mut more_env = live.clone();
        more_env["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
        let mut other_digest = live.clone();
        other_digest["metadata"]["annotations"]["ship.dev/digest"] = json!("0");
        for changed in [no_env, no_label, no_replicas, more_env, other_digest] {
            assert!(!holds(&deployment, &changed), "{changed}");
        }
        // 2 and 2.0 are one number.
        assert!(holds(&json!({"n": 2}), &json!({"n": 2.0})));
    }

    #[test]
    fn needs_match_objects_by_group_kind_namespace_and_name() {
        let a = configmap("a");
        let mut b = configmap("b");
        b["metadata"]["name"] = json!("other");
        stamp_digest(&mut b);
        let live: Live = [(key_of(&a), live_of(&a, vec![ship_owns_all()]))]
            .into_iter()
            .collect();
        assert_eq!(
            needs(&[a.clone(), b.clone()], &live),
            [Need::Unchanged, Need::Missing]
        );
        let (write, tally) = select(&[a.clone(), b.clone()], &live);
        assert_eq!(write, [b]);
        assert_eq!(
            tally,
            Tally {
                missing: 1,
                unchanged: 1,
                ..Tally::default()
            }
        );
        assert_eq!(
            key_of(&a),
            ("".into(), "ConfigMap".into(), "main".into(), "web".into())
        );
    }
}
