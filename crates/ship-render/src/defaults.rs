//! Defaults that the API server would fill in, filled in before server-side apply where older
//! API servers need them. Pure: an object in, the same object with the defaults set.
//!
//! Server-side apply merges some lists as maps keyed by several fields. When a manifest omits a
//! key field that has a default, API servers before 1.22 refuse the apply:
//! `.spec.ports: element 0: associative list with keys has an element that omits key field
//! "protocol"`. Most manifests omit `protocol`. So, as Flux does, Ship sets the key fields'
//! defaults where they are absent, and only there: a value the manifest gives is never changed,
//! and the value set is the one the API server would store, so the applied object is unchanged
//! and drift detection sees nothing.
//!
//! The key fields with defaults (from Kubernetes' `x-kubernetes-list-map-keys`):
//! - Service `spec.ports[].protocol` (keys `port`, `protocol`): `TCP`;
//! - every Pod spec's `containers[]`, `initContainers[]` and `ephemeralContainers[]`
//!   `.ports[].protocol` (keys `containerPort`, `protocol`): `TCP`, in Pods and in the Pod
//!   templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers,
//!   Jobs, CronJobs and PodTemplates.

use serde_json::Value;

/// Where a kind keeps its Pod spec, as a JSON pointer.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "PodTemplate" => Some("/template/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            Some("/spec/template/spec")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Sets `field` to `value` in every object of the list at `pointer` that lacks it.
fn default_in_list(object: &mut Value, pointer: &str, field: &str, value: &str) {
    if let Some(items) = object.pointer_mut(pointer).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            item.entry(field)
                .or_insert_with(|| Value::String(value.to_owned()));
        }
    }
}

/// Fills in the list-map key defaults described in this module's documentation.
pub fn fill_list_map_key_defaults(object: &mut Value) {
    let Some(kind) = object.get("kind").and_then(Value::as_str).map(str::to_owned) else {
        return;
    };
    let core = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v == "v1");
    if kind == "Service" && core {
        default_in_list(object, "/spec/ports", "protocol", "TCP");
    }
    let Some(pod_spec) = pod_spec_pointer(&kind) else {
        return;
    };
    for containers in ["containers", "initContainers", "ephemeralContainers"] {
        let count = object
            .pointer(&format!("{pod_spec}/{containers}"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..count {
            default_in_list(
                object,
                &format!("{pod_spec}/{containers}/{i}/ports"),
                "protocol",
                "TCP",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn services_get_tcp_where_protocol_is_missing_and_keep_what_they_say() {
        let mut service = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [
            {"port": 80, "targetPort": "http"},
            {"port": 53, "protocol": "UDP"},
        ]}});
        fill_list_map_key_defaults(&mut service);
        assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(service["spec"]["ports"][1]["protocol"], "UDP");
        // filling twice changes nothing more
        let once = service.clone();
        fill_list_map_key_defaults(&mut service);
        assert_eq!(service, once);
    }

    #[test]
    fn every_pod_template_gets_container_port_protocols() {
        let spec = || {
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 8080}, {"containerPort": 9090, "protocol": "SCTP"}]}],
                             "initContainers": [{"name": "i", "ports": [{"containerPort": 1}]}]})
        };
        let cases = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": spec()}}}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": {"spec": spec()}}}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": spec()}}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": spec()}}}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "spec": spec()}),
        ];
        for mut object in cases {
            fill_list_map_key_defaults(&mut object);
            let text = object.to_string();
            assert_eq!(text.matches(r#""protocol":"TCP""#).count(), 2, "{text}");
            assert_eq!(text.matches(r#""protocol":"SCTP""#).count(), 1, "{text}");
        }
    }

    #[test]
    fn other_objects_and_odd_shapes_are_left_alone() {
        let mut custom =
            json!({"apiVersion": "example.com/v1", "kind": "Service", "spec": {"ports": [{"port": 1}]}});
        let before = custom.clone();
        fill_list_map_key_defaults(&mut custom);
        assert_eq!(
            custom, before,
            "a custom kind named Service is not a core Service"
        );
        let mut odd = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": "eighty"}});
        let before = odd.clone();
        fill_list_map_key_defaults(&mut odd);
        assert_eq!(odd, before);
        let mut config = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"ports": "[]"}});
        let before = config.clone();
        fill_list_map_key_defaults(&mut config);
        assert_eq!(config, before);
    }
}
