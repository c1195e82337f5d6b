//! Probes a commit removed, whose defaulted leftovers an old API server keeps (pure).
//!
//! A server-side apply that no longer sets a container's `readinessProbe` removes the fields
//! Ship's manager owned in it. Kubernetes before 1.22 (structured-merge-diff before v4.1) keeps
//! the fields the API server defaulted in it (`httpGet.scheme`, `timeoutSeconds`, ...), which
//! nobody owns: the probe is left with `httpGet` and no `port`, and the apply (and its dry run)
//! is refused with `readinessProbe.httpGet.port: Invalid value: 0`. `kubectl apply
//! --server-side` fails the same way there; newer servers remove the whole probe.
//!
//! So when the API server refuses an apply (or its dry run) as invalid, Ship looks for such
//! fields and, if there are any, removes them itself, as kubectl's client-side apply does: with a
//! strategic merge patch that sets each to null in the named container; then it applies again.
//! Only fields Ship's own apply owned are removed; one another manager set (a person, a
//! webhook) is theirs. On the usual path, and on API servers that remove the whole probe, this
//! costs nothing.

use serde_json::{Map, Value, json};

/// Container fields whose API-server defaults make them invalid once their required child is
/// gone (a handler with no port or command).
pub const DEFAULTED_CONTAINER_FIELDS: &[&str] = &["readinessProbe", "livenessProbe", "startupProbe"];

/// The container lists of a Pod spec.
const CONTAINER_LISTS: &[&str] = &["containers", "initContainers"];

/// Where the Pod spec sits in an object of `kind`, as path segments.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            Some(&["spec", "template", "spec"])
        }
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        "Pod" => Some(&["spec"]),
        _ => None,
    }
}

/// One field to remove: in list `list` (`containers`), the container named `container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// `containers` or `initContainers`.
    pub list: String,
    /// The container's name.
    pub container: String,
    /// The field, e.g. `readinessProbe`.
    pub field: String,
}

/// The fields `manager`'s server-side apply set in `live` that `desired` no longer has.
pub fn orphans(live: &Value, desired: &Value, manager: &str) -> Vec<Orphan> {
    let Some(kind) = desired.get("kind").and_then(Value::as_str) else {
        return Vec::new();
    };
    let Some(path) = pod_spec_path(kind) else {
        return Vec::new();
    };
    let at = |object: &Value| -> Option<Value> {
        let pointer: String = path.iter().map(|s| format!("/{s}")).collect();
        object.pointer(&pointer).cloned()
    };
    let (Some(live_spec), desired_spec) = (at(live), at(desired).unwrap_or(Value::Null)) else {
        return Vec::new();
    };
    let owned = owned_fields(live, manager);
    let mut found = Vec::new();
    for list in CONTAINER_LISTS {
        for container in live_spec
            .get(*list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = container.get("name").and_then(Value::as_str) else {
                continue;
            };
            let wanted = desired_spec.get(*list).and_then(Value::as_array).and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            });
            for field in DEFAULTED_CONTAINER_FIELDS {
                let in_live = container.get(*field).is_some_and(|v| !v.is_null());
                let in_desired = wanted.and_then(|c| c.get(*field)).is_some_and(|v| !v.is_null());
                // A container the commit removed goes with the apply; only fields of containers
                // that stay are left behind.
                if !in_live || in_desired || wanted.is_none() {
                    continue;
                }
                let mut segments: Vec<String> = path.iter().map(|s| format!("f:{s}")).collect();
                segments.push(format!("f:{list}"));
                segments.push(format!("k:{}", json!({"name": name})));
                segments.push(format!("f:{field}"));
                if owned.iter().any(|fields| has_path(fields, &segments)) {
                    found.push(Orphan {
                        list: (*list).to_owned(),
                        container: name.to_owned(),
                        field: (*field).to_owned(),
                    });
                }
            }
        }
    }
    found
}

/// The `fieldsV1` of every server-side apply by `manager` in `object`'s managedFields.
fn owned_fields<'a>(object: &'a Value, manager: &str) -> Vec<&'a Value> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| {
            entry.get("manager").and_then(Value::as_str) == Some(manager)
                && entry.get("operation").and_then(Value::as_str) == Some("Apply")
        })
        .filter_map(|entry| entry.get("fieldsV1"))
        .collect()
}

/// Whether `fields` (a fieldsV1 tree) holds `segments`. A `k:` key is compared as JSON, since the
/// API server writes it with its own spacing and key order.
fn has_path(fields: &Value, segments: &[String]) -> bool {
    let mut at = fields;
    for segment in segments {
        let next = at.as_object().and_then(|map| {
            map.get(segment).or_else(|| {
                let wanted: Value = serde_json::from_str(segment.strip_prefix("k:")?).ok()?;
                map.iter()
                    .find(|(key, _)| {
                        key.strip_prefix("k:")
                            .and_then(|k| serde_json::from_str::<Value>(k).ok())
                            .is_some_and(|k| k == wanted)
                    })
                    .map(|(_, v)| v)
            })
        });
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

/// The strategic merge patch that removes `orphans` from an object of `kind`: each field set to
/// null in its container, found by name (the containers list's merge key).
pub fn removal_patch(kind: &str, orphans: &[Orphan]) -> Option<Value> {
    let path = pod_spec_path(kind)?;
    if orphans.is_empty() {
        return None;
    }
    let mut spec = Map::new();
    for list in CONTAINER_LISTS {
        let mut containers: Vec<Value> = Vec::new();
        for orphan in orphans.iter().filter(|o| o.list == *list) {
            let index = match containers
                .iter()
                .position(|c| c.get("name").and_then(Value::as_str) == Some(&orphan.container))
            {
                Some(index) => index,
                None => {
                    containers.push(json!({"name": orphan.container}));
                    containers.len() - 1
                }
            };
            if let Some(container) = containers[index].as_object_mut() {
                container.insert(orphan.field.clone(), Value::Null);
            }
        }
        if !containers.is_empty() {
            spec.insert((*list).to_owned(), Value::Array(containers));
        }
    }
    let mut patch = Value::Object(spec);
    for segment in path.iter().rev() {
        patch = json!({ *segment: patch });
    }
    Some(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(probe: bool) -> Value {
        let mut container = json!({"name": "web", "image": "app:1"});
        if probe {
            container["readinessProbe"] = json!({"httpGet": {"path": "/health", "port": 8080}});
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [container]}}}})
    }

    /// The live Deployment after Ship applied it with a probe: the API server's defaults filled
    /// in, and managedFields as 1.20 writes them.
    fn live(manager: &str, operation: &str) -> Value {
        let mut live = deployment(true);
        live["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = json!({
            "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3});
        live["metadata"]["managedFields"] = json!([{
            "manager": manager, "operation": operation, "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {},
                    "f:readinessProbe": {"f:httpGet": {"f:path": {}, "f:port": {}}}}}}}}}
        }]);
        live
    }

    #[test]
    fn a_probe_ships_apply_set_and_the_commit_removed_is_an_orphan() {
        let found = orphans(&live("ship", "Apply"), &deployment(false), "ship");
        assert_eq!(
            found,
            [Orphan {
                list: "containers".into(),
                container: "web".into(),
                field: "readinessProbe".into()
            }]
        );
        assert_eq!(
            removal_patch("Deployment", &found),
            Some(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "readinessProbe": null}]}}}}))
        );
    }

    #[test]
    fn kept_probes_and_other_managers_probes_are_left_alone() {
        assert!(
            orphans(&live("ship", "Apply"), &deployment(true), "ship").is_empty(),
            "still wanted"
        );
        assert!(
            orphans(&live("kubectl-edit", "Update"), &deployment(false), "ship").is_empty(),
            "a person's probe is theirs"
        );
        assert!(
            orphans(&live("ship", "Update"), &deployment(false), "ship").is_empty(),
            "only what Ship's apply set"
        );
        // A container the commit removed goes away with the apply: nothing to patch.
        let mut renamed = deployment(false);
        renamed["spec"]["template"]["spec"]["containers"][0]["name"] = json!("api");
        assert!(orphans(&live("ship", "Apply"), &renamed, "ship").is_empty());
        // Kinds without a Pod template.
        let config = json!({"kind": "ConfigMap", "metadata": {"name": "web"}});
        assert!(orphans(&config, &config, "ship").is_empty());
        assert_eq!(removal_patch("ConfigMap", &[]), None);
    }

    #[test]
    fn a_key_is_matched_whatever_its_spacing_and_cronjobs_and_init_containers_count() {
        let mut cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "initContainers": [{"name": "migrate", "livenessProbe": {"exec": {"command": ["true"]}, "timeoutSeconds": 1}}],
            "containers": [{"name": "run"}]}}}}}});
        cron["metadata"] = json!({"managedFields": [{"manager": "ship", "operation": "Apply",
            "fieldsV1": {"f:spec": {"f:jobTemplate": {"f:spec": {"f:template": {"f:spec": {
                "f:initContainers": {"k:{\"name\": \"migrate\"}": {"f:livenessProbe": {"f:exec": {}}}}}}}}}}}]});
        let mut desired = cron.clone();
        desired["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0] =
            json!({"name": "migrate"});
        let found = orphans(&cron, &desired, "ship");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].list, "initContainers");
        assert_eq!(
            removal_patch("CronJob", &found),
            Some(json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "initContainers": [{"name": "migrate", "livenessProbe": null}]}}}}}}))
        );
    }
}
