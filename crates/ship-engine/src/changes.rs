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

use std::borrow::Cow;
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

/// What `object` (prepared: stamped, digest included) needs, given the live object's metadata
/// and the fields Ship leaves to others (`left`, [`fields_left`]): another writer's change to
/// one of those is not drift, and neither is a field another manager took by server-side
/// apply (it is left to it, and reported).
pub fn need(object: &Value, live: Option<&ObjectMeta>, left: &[FieldLeft]) -> Need {
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
    for entry in others.filter(|e| e.operation.as_deref() != Some("Apply")) {
        let Some(fields) = entry.fields_v1.as_ref() else {
            continue;
        };
        let mut paths = Vec::new();
        owned_paths(&fields.0, object, &mut Vec::new(), &mut paths);
        if paths.iter().any(|path| !is_left(path, left)) {
            return Need::Drifted {
                manager: entry.manager.clone().unwrap_or_default(),
            };
        }
    }
    Need::Unchanged
}

/// `path` is, or lies under, a field left to others.
fn is_left(path: &[String], left: &[FieldLeft]) -> bool {
    left.iter().any(|l| path.starts_with(&l.path))
}

/// A managedFields entry of a writer other than Ship's applies, on the object itself (a
/// status writer changes nothing Ship sets).
fn is_other_writer(entry: &ManagedFieldsEntry) -> bool {
    let subresource = entry.subresource.as_deref().unwrap_or_default();
    entry.manager.as_deref() != Some(FIELD_MANAGER) && subresource != "status"
}

/// The paths (map keys from the root) of the fields `object` sets that the fieldset `fields`
/// (managedFields' `fieldsV1`: `f:<name>` for a map's key, `k:`/`v:`/`i:` for list items, `.`
/// for the container itself) owns, collected into `out`. A list the manifest sets counts as
/// set whole: any item of it another writer owns is the list's path.
fn owned_paths(fields: &Value, object: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let (Some(fields), Some(map)) = (fields.as_object(), object.as_object()) else {
        return;
    };
    for (key, below) in fields {
        let Some(name) = key.strip_prefix("f:") else {
            continue;
        };
        let Some(set) = map.get(name) else {
            continue;
        };
        at.push(name.to_owned());
        match (set, below.as_object()) {
            // Its keys, one by one (`.` alone: the writer made the map, owns none of its keys).
            (Value::Object(_), Some(children)) if !children.is_empty() => owned_paths(below, set, at, out),
            // Owned as a whole (an atomic map), a list, or a value.
            _ => out.push(at.clone()),
        }
        at.pop();
    }
}

/// A field Ship does not write for an object, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldLeft {
    /// Its path: map keys from the object's root.
    pub path: Vec<String>,
    /// Why, for the release's status.
    pub why: String,
}

/// The annotation in git naming fields to leave to others: comma-separated dotted paths
/// (`spec.replicas, spec.template.metadata.annotations`).
pub const IGNORE_FIELDS: &str = "ship.dev/ignore-fields";

/// The objects the commit's HorizontalPodAutoscalers scale: (namespace, kind, name) to the
/// autoscaler's name.
pub fn scaled_by_autoscalers(objects: &[Value]) -> HashMap<(String, String, String), String> {
    objects
        .iter()
        .filter(|o| str_at(o, "/kind") == "HorizontalPodAutoscaler")
        .map(|hpa| {
            (
                (
                    str_at(hpa, "/metadata/namespace").to_owned(),
                    str_at(hpa, "/spec/scaleTargetRef/kind").to_owned(),
                    str_at(hpa, "/spec/scaleTargetRef/name").to_owned(),
                ),
                str_at(hpa, "/metadata/name").to_owned(),
            )
        })
        .collect()
}

/// Sets the value at `path` (map keys) in `object`, making the maps on the way.
pub fn set_at(object: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *object = value;
        return;
    };
    if !object.is_object() {
        *object = Value::Object(serde_json::Map::new());
    }
    if let Some(map) = object.as_object_mut() {
        let next = map.entry(first.clone()).or_insert(Value::Null);
        set_at(next, rest, value);
    }
}

/// The value at `path` (map keys) in `object`.
pub fn value_at<'v>(object: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(object, |value, key| value.get(key))
}

/// The fields of `object` Ship leaves to others: those its [`IGNORE_FIELDS`] annotation names;
/// `spec.replicas` of an object a HorizontalPodAutoscaler in the commit scales (`scaled`); and
/// those another manager took by server-side apply (from `live`'s managedFields: reported, not
/// fought). Only fields the manifest sets are listed.
pub fn fields_left(
    object: &Value,
    scaled: &HashMap<(String, String, String), String>,
    live: Option<&ObjectMeta>,
) -> Vec<FieldLeft> {
    let mut left: Vec<FieldLeft> = Vec::new();
    let mut leave = |path: Vec<String>, why: String| {
        if value_at(object, &path).is_some() && !left.iter().any(|l| path.starts_with(&l.path)) {
            left.retain(|l| !l.path.starts_with(&path));
            left.push(FieldLeft { path, why });
        }
    };
    let named = str_at(object, "/metadata/annotations/ship.dev~1ignore-fields");
    for dotted in named.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        leave(
            dotted.split('.').map(str::to_owned).collect(),
            format!("{IGNORE_FIELDS} names it"),
        );
    }
    let target = (
        str_at(object, "/metadata/namespace").to_owned(),
        str_at(object, "/kind").to_owned(),
        str_at(object, "/metadata/name").to_owned(),
    );
    if let Some(hpa) = scaled.get(&target) {
        leave(
            vec!["spec".into(), "replicas".into()],
            format!("HorizontalPodAutoscaler {hpa} scales it"),
        );
    }
    let appliers = live
        .into_iter()
        .flat_map(|meta| meta.managed_fields.iter().flatten())
        .filter(|e| {
            is_other_writer(e)
                && e.operation.as_deref() == Some("Apply")
                && e.manager.as_deref() != Some(ship_api::HANDOVER_FIELD_MANAGER)
        });
    for entry in appliers {
        let Some(fields) = entry.fields_v1.as_ref() else {
            continue;
        };
        let mut paths = Vec::new();
        owned_paths(&fields.0, object, &mut Vec::new(), &mut paths);
        for path in paths {
            leave(
                path,
                format!(
                    "{} owns it (server-side apply)",
                    entry.manager.as_deref().unwrap_or("another manager")
                ),
            );
        }
    }
    left
}

/// `object` without the fields `left`.
pub fn without(object: &Value, left: &[FieldLeft]) -> Value {
    let mut kept = object.clone();
    for field in left {
        let Some((last, parents)) = field.path.split_last() else {
            continue;
        };
        let parent = parents
            .iter()
            .try_fold(&mut kept, |value, key| value.get_mut(key));
        if let Some(map) = parent.and_then(Value::as_object_mut) {
            map.remove(last);
        }
    }
    kept
}

/// The fields among `left` that Ship's own apply owns and no other writer does (from `live`):
/// applying without them would make the API server remove them (a Deployment's replicas
/// falling back to 1 under its autoscaler). Ship hands them over first.
pub fn to_hand_over(object: &Value, left: &[FieldLeft], live: Option<&ObjectMeta>) -> Vec<Vec<String>> {
    let Some(live) = live else {
        return Vec::new();
    };
    let owned_by = |mine: bool| {
        let mut paths = Vec::new();
        for entry in live.managed_fields.iter().flatten().filter(|e| {
            e.subresource.as_deref().unwrap_or_default() != "status"
                && (e.manager.as_deref() == Some(FIELD_MANAGER)) == mine
        }) {
            if let Some(fields) = entry.fields_v1.as_ref() {
                owned_paths(&fields.0, object, &mut Vec::new(), &mut paths);
            }
        }
        paths
    };
    let (ships, others) = (owned_by(true), owned_by(false));
    left.iter()
        .filter(|l| {
            ships
                .iter()
                .any(|p| p.starts_with(&l.path) || l.path.starts_with(p))
        })
        .filter(|l| {
            !others
                .iter()
                .any(|p| p.starts_with(&l.path) || l.path.starts_with(p))
        })
        .map(|l| l.path.clone())
        .collect()
}

/// Whether the live object (`live`, its full body) holds every field `object` (prepared)
/// sets, with the same value: what the periodic full re-check asks, for what metadata cannot
/// show (another writer removing a field Ship set). `apiVersion` and `kind` are not compared
/// (the list that read the body names them once). Maps and list items may hold more (the API
/// server defaults fields); a list must have as many items. The annotations that name the
/// release that last wrote an object are not compared. A value the API server normalizes
/// (`0.5` CPU read back as `500m`) reads as different, and the object is written again: a
/// wasted request, never a missed change.
pub fn holds(object: &Value, live: &Value) -> bool {
    let mut wanted = object.clone();
    if let Some(map) = wanted.as_object_mut() {
        // A Secret's `stringData` is never read back: the API server writes each entry into
        // `data`, base64-encoded (over an entry of the same key). Compared as it is, every
        // Secret that uses it would be written again at every full re-check.
        if map.get("kind").and_then(Value::as_str) == Some("Secret")
            && let Some(Value::Object(plain)) = map.remove("stringData")
        {
            use base64::Engine as _;
            let data = map
                .entry("data")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(data) = data.as_object_mut() {
                for (key, value) in plain {
                    let text = value.as_str().unwrap_or_default();
                    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                    data.insert(key, Value::String(encoded));
                }
            }
        }
        // A list's items come without `apiVersion` and `kind` (the list names them once).
        map.remove("apiVersion");
        map.remove("kind");
    }
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

/// Of a listed object's metadata, what the decisions here read: its resourceVersion, Ship's
/// digest annotation and the managedFields (name and namespace are the key). Labels, other
/// annotations, owners and the rest are dropped as the list is read: a release holds the
/// whole environment's live metadata while it decides.
pub fn decided_on(meta: ObjectMeta) -> ObjectMeta {
    let digest = meta
        .annotations
        .and_then(|mut annotations| annotations.remove(keys::DIGEST));
    ObjectMeta {
        resource_version: meta.resource_version,
        annotations: digest.map(|digest| BTreeMap::from([(keys::DIGEST.to_owned(), digest)])),
        managed_fields: meta.managed_fields,
        ..ObjectMeta::default()
    }
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

/// Which objects to consider writing.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'b> {
    /// Those missing, changed or drifted by their metadata.
    Changed,
    /// Those, and those whose body (listed with it) no longer holds what the manifest sets:
    /// the periodic full re-check.
    Recheck(&'b HashMap<ObjectKey, Value>),
    /// Every one (a rollback restores everything).
    All,
}

/// What a release or a drift check writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes<'a> {
    /// The objects to write, in their order, without the fields left to others: borrowed from
    /// the prepared set, copied only when fields are taken out (a 5,000-object release held a
    /// second copy of every object here).
    pub objects: Vec<Cow<'a, Value>>,
    /// Fields Ship owns alone that it stops applying: handed over first, per object (its
    /// key, the paths).
    pub hand_over: Vec<(ObjectKey, Vec<Vec<String>>)>,
    /// Every field left to others, as the status says it (`Kind/namespace/name path: why`).
    pub fields_left: Vec<String>,
    /// Why each was written or not.
    pub tally: Tally,
}

/// What to write of `objects` (prepared, in apply order), given the live metadata, in `mode`.
pub fn plan<'a>(objects: &'a [Value], live: &Live, mode: Mode<'_>) -> Writes<'a> {
    let scaled = scaled_by_autoscalers(objects);
    let mut writes = Writes::default();
    for object in objects {
        let key = key_of(object);
        let meta = live.get(&key);
        let left = fields_left(object, &scaled, meta);
        let name = crate::inventory::entry_of(object).to_string();
        writes.fields_left.extend(
            left.iter()
                .map(|l| format!("{name} {}: {}", l.path.join("."), l.why)),
        );
        // The object without the fields left: built only for what is compared or written (an
        // idle drift check leaves every object alone and copies none).
        let kept = || {
            if left.is_empty() {
                Cow::Borrowed(object)
            } else {
                Cow::Owned(without(object, &left))
            }
        };
        let need = need(object, meta, &left);
        let stale_body = || match mode {
            Mode::Recheck(bodies) => bodies.get(&key).is_some_and(|held| !holds(&kept(), held)),
            Mode::Changed | Mode::All => false,
        };
        match need {
            Need::Missing => writes.tally.missing += 1,
            Need::Changed => writes.tally.changed += 1,
            Need::Drifted { .. } => writes.tally.drifted += 1,
            Need::Unchanged if stale_body() => writes.tally.drifted += 1,
            Need::Unchanged => {
                writes.tally.unchanged += 1;
                if !matches!(mode, Mode::All) {
                    continue;
                }
            }
        }
        // An object made now gets every field (as Argo CD does): the other writer takes over
        // from there, and the next write leaves the field to it, handing it over.
        if need == Need::Missing {
            writes.objects.push(Cow::Borrowed(object));
            continue;
        }
        let hand_over = to_hand_over(object, &left, meta);
        if !hand_over.is_empty() {
            writes.hand_over.push((key, hand_over));
        }
        writes.objects.push(kept());
    }
    writes
}

/// The objects to write when only what changed is (see [`plan`]), and the tally of why.
pub fn select(objects: &[Value], live: &Live) -> (Vec<Value>, Tally) {
    let writes = plan(objects, live, Mode::Changed);
    (
        writes.objects.into_iter().map(Cow::into_owned).collect(),
        writes.tally,
    )
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
    fn a_secret_s_string_data_holds_as_the_data_the_api_server_made_of_it() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": "db", "namespace": "main"},
                            "data": {"user": "YWRtaW4=", "token": "b2xk"},
                            "stringData": {"token": "s3cr3t", "host": "db.internal"}});
        // What the API server keeps: stringData merged into data, over `token`.
        let live = json!({"metadata": {"name": "db", "namespace": "main"}, "type": "Opaque",
                          "data": {"user": "YWRtaW4=", "token": "czNjcjN0", "host": "ZGIuaW50ZXJuYWw="}});
        assert!(holds(&secret, &live));
        let mut changed = live.clone();
        changed["data"]["token"] = json!("b2xk");
        assert!(!holds(&secret, &changed), "a token changed by hand");
        let mut removed = live.clone();
        removed["data"].as_object_mut().unwrap().remove("host");
        assert!(!holds(&secret, &removed), "an entry removed by hand");
        // Only a Secret's: another kind's `stringData` is compared as it is.
        let other = json!({"kind": "Config", "metadata": {"name": "x"}, "stringData": {"a": "b"}});
        assert!(!holds(
            &other,
            &json!({"metadata": {"name": "x"}, "data": {"a": "Yg=="}})
        ));
    }

    #[test]
    fn the_live_metadata_kept_is_what_decides_and_decides_the_same() {
        let object = configmap("a");
        let mut edited = live_of(
            &object,
            vec![entry(
                "kubectl-edit",
                "Update",
                None,
                json!({"f:data": {"f:body": {}}}),
            )],
        );
        edited.uid = Some("4d6e".into());
        edited.resource_version = Some("812".into());
        edited.labels = Some(BTreeMap::from([("app".to_owned(), "web".to_owned())]));
        edited
            .annotations
            .get_or_insert_default()
            .insert("note".into(), "by hand".into());
        let kept = decided_on(edited.clone());
        assert_eq!(kept.resource_version.as_deref(), Some("812"));
        assert_eq!(kept.managed_fields, edited.managed_fields);
        assert!(kept.uid.is_none() && kept.labels.is_none() && kept.name.is_none());
        assert_eq!(kept.annotations.as_ref().map(BTreeMap::len), Some(1));
        assert_eq!(need(&object, Some(&kept), &[]), need(&object, Some(&edited), &[]));
        assert!(matches!(need(&object, Some(&kept), &[]), Need::Drifted { .. }));
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
        assert_eq!(need(&object, None, &[]), Need::Missing);
        let live = live_of(&object, vec![ship_owns_all()]);
        assert_eq!(need(&object, Some(&live), &[]), Need::Unchanged);
        assert_eq!(need(&configmap("new"), Some(&live), &[]), Need::Changed);
        // Written by a Ship from before digests: no annotation, so written again once.
        let mut old = live.clone();
        old.annotations.as_mut().unwrap().remove(keys::DIGEST);
        assert_eq!(need(&object, Some(&old), &[]), Need::Changed);

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
            need(&object, Some(&edited), &[]),
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
        assert_eq!(need(&object, Some(&others), &[]), Need::Unchanged);
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
            need(&deployment, Some(&image_by_hand), &[]),
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
        assert!(matches!(
            need(&deployment, Some(&scaled), &[]),
            Need::Drifted { .. }
        ));
        let elsewhere = live_of(
            &deployment,
            vec![entry(
                "someone",
                "Update",
                None,
                json!({"f:spec": {"f:paused": {}}}),
            )],
        );
        assert_eq!(need(&deployment, Some(&elsewhere), &[]), Need::Unchanged);
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
        // As a list returns it: without apiVersion and kind.
        let mut listed = live.clone();
        listed.as_object_mut().unwrap().remove("apiVersion");
        listed.as_object_mut().unwrap().remove("kind");
        assert!(holds(&deployment, &listed), "a listed item holds its manifest");
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
    fn an_autoscaled_replicas_count_is_left_handed_over_once_and_reported() {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "main"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
        });
        stamp_digest(&mut deployment);
        let mut hpa = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web-hpa", "namespace": "main"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}
        });
        stamp_digest(&mut hpa);
        let objects = [deployment.clone(), hpa];
        // Made now: every field, replicas included (the autoscaler takes over from there).
        let made = plan(&objects, &Live::new(), Mode::Changed);
        assert_eq!(*made.objects[0], deployment);
        assert!(
            matches!(made.objects[0], Cow::Borrowed(_)),
            "a new object is written as prepared, not copied"
        );
        assert!(made.hand_over.is_empty());
        // Ship applied replicas before the autoscaler came: it owns it alone, so it hands it over.
        let ship_owned = live_of(
            &deployment,
            vec![entry(
                FIELD_MANAGER,
                "Apply",
                None,
                json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}}),
            )],
        );
        let live: Live = [(key_of(&deployment), ship_owned)].into_iter().collect();
        let writes = plan(&objects, &live, Mode::All);
        assert!(value_at(&writes.objects[0], &["spec".into(), "replicas".into()]).is_none());
        assert!(value_at(&writes.objects[0], &["spec".into(), "template".into()]).is_some());
        assert!(
            matches!(writes.objects[0], Cow::Owned(_)),
            "a field taken out: a copy"
        );
        assert!(
            matches!(writes.objects[1], Cow::Borrowed(_)),
            "nothing taken out: no copy"
        );
        assert_eq!(
            writes.hand_over,
            [(
                key_of(&deployment),
                vec![vec!["spec".to_owned(), "replicas".to_owned()]]
            )]
        );
        assert_eq!(
            writes.fields_left,
            ["Deployment/main/web spec.replicas: HorizontalPodAutoscaler web-hpa scales it"]
        );
        // Once the autoscaler scaled it (by the scale subresource), it owns the field: its
        // writes are neither drift nor a reason to hand anything over.
        let scaled = live_of(
            &deployment,
            vec![
                entry(
                    FIELD_MANAGER,
                    "Apply",
                    None,
                    json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}),
                ),
                entry(
                    "kube-controller-manager",
                    "Update",
                    Some("scale"),
                    json!({"f:spec": {"f:replicas": {}}}),
                ),
            ],
        );
        let hpa_live: ObjectMeta = serde_json::from_value(objects[1]["metadata"].clone()).unwrap();
        let live: Live = [(key_of(&deployment), scaled), (key_of(&objects[1]), hpa_live)]
            .into_iter()
            .collect();
        let writes = plan(&objects, &live, Mode::Changed);
        assert_eq!(writes.tally.unchanged, 2, "{:?}", writes.tally);
        assert!(writes.objects.is_empty() && writes.hand_over.is_empty());
        assert_eq!(writes.fields_left.len(), 1);
    }

    #[test]
    fn fields_named_to_ignore_or_taken_by_another_applier_are_left_not_fought() {
        let mut object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "main",
                         "annotations": {"ship.dev/ignore-fields": "data.rotated, data.absent"}},
            "data": {"body": "hello", "rotated": "v1", "flag": "on"}
        });
        stamp_digest(&mut object);
        // Another tool applies `data.flag` by SSA (and forced it): reported, not fought.
        let live = live_of(
            &object,
            vec![
                entry(
                    FIELD_MANAGER,
                    "Apply",
                    None,
                    json!({"f:data": {"f:body": {}, "f:rotated": {}}}),
                ),
                entry("feature-flags", "Apply", None, json!({"f:data": {"f:flag": {}}})),
                entry("rotator", "Update", None, json!({"f:data": {"f:rotated": {}}})),
            ],
        );
        let left = fields_left(&object, &HashMap::new(), Some(&live));
        let paths: Vec<String> = left.iter().map(|l| l.path.join(".")).collect();
        assert_eq!(paths, ["data.rotated", "data.flag"]);
        assert!(left[1].why.contains("feature-flags"), "{left:?}");
        // The rotator's and the other applier's writes are theirs: nothing drifted.
        assert_eq!(need(&object, Some(&live), &left), Need::Unchanged);
        let kept = without(&object, &left);
        assert_eq!(kept["data"], json!({"body": "hello"}));
        // The rotator holds `data.rotated` too: the API server keeps it without a handover.
        assert!(to_hand_over(&object, &left, Some(&live)).is_empty());
        // Held by Ship alone, it is handed over before Ship stops applying it.
        let ship_only = live_of(
            &object,
            vec![entry(
                FIELD_MANAGER,
                "Apply",
                None,
                json!({"f:data": {"f:body": {}, "f:rotated": {}}}),
            )],
        );
        let left = fields_left(&object, &HashMap::new(), Some(&ship_only));
        assert_eq!(
            to_hand_over(&object, &left, Some(&ship_only)),
            [vec!["data".to_owned(), "rotated".to_owned()]]
        );
        // A field Ship's handover manager holds is Ship's, not another applier's.
        let handed = live_of(
            &object,
            vec![entry(
                ship_api::HANDOVER_FIELD_MANAGER,
                "Apply",
                None,
                json!({"f:data": {"f:body": {}}}),
            )],
        );
        assert!(
            fields_left(&object, &HashMap::new(), Some(&handed))
                .iter()
                .all(|l| l.path != ["data", "body"])
        );
        let mut patch = json!({});
        set_at(&mut patch, &["spec".into(), "replicas".into()], json!(3));
        assert_eq!(patch, json!({"spec": {"replicas": 3}}));
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
        let needs: Vec<Need> = [&a, &b]
            .iter()
            .map(|o| need(o, live.get(&key_of(o)), &[]))
            .collect();
        assert_eq!(needs, [Need::Unchanged, Need::Missing]);
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
