//! Health rules for applied objects. Pure: an object's JSON in, a verdict out.
//!
//! - Every object whose `status.observedGeneration` lags `metadata.generation` is in progress.
//! - Deployment: updated, ready and available replicas reach `spec.replicas` (default 1) and no
//!   old replicas remain; a `Progressing` condition with reason `ProgressDeadlineExceeded` fails.
//! - StatefulSet: updated and ready replicas reach `spec.replicas`, and (for RollingUpdate) the
//!   current revision is the update revision.
//! - DaemonSet: updated and available pods reach the desired number scheduled.
//! - Job: condition `Complete` is healthy; condition `Failed` fails.
//! - PersistentVolumeClaim: phase `Bound`.
//! - Anything else with a `Ready` condition: healthy when it is `True`.
//! - Service: healthy once it exists, except ([`service_endpoints`]) one that selects the Pods
//!   of a workload of the same release: then also once its Endpoints list a ready address and
//!   none of a Pod of an older revision, so tests that go through the Service reach the new
//!   Pods, not nothing and not the old ones.
//! - Anything else: healthy once it exists (ConfigMaps, RBAC, ...).
//!
//! A workload still rolling out also fails, at once rather than at the health deadline, when a
//! Pod of its *current* revision is stuck in a state no wait will fix ([`stuck_pod`]): a
//! container in `CrashLoopBackOff`, an image that cannot be had (`ErrImageNeverPull`,
//! `ImagePullBackOff`, `InvalidImageName`) or a container that cannot be created
//! (`CreateContainerConfigError`, `CreateContainerError`, `RunContainerError`). Pods of older
//! revisions, and Pods being deleted, are not judged. A first `ErrImagePull` is not stuck yet
//! (registries fail transiently); the kubelet's `ImagePullBackOff` after it is.

use serde_json::Value;

/// Verdict on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Done rolling out.
    Healthy,
    /// Not yet; the message says what is awaited.
    Progressing(String),
    /// Will not become healthy without a change.
    Failed(String),
}

fn int_at(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_is(object: &Value, type_: &str, status: &str) -> bool {
    condition(object, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some(status)
}

fn condition_text(object: &Value, type_: &str, field: &str) -> String {
    condition(object, type_)
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `have` of `want` replicas, as a message when short.
fn short_of(what: &str, have: i64, want: i64) -> Option<Health> {
    (have < want).then(|| Health::Progressing(format!("{have}/{want} {what}")))
}

/// `object` without what no rule here reads: its `metadata.managedFields` and a ConfigMap's or
/// Secret's payload. The health watch holds every object of the release's kinds until the
/// rollout is healthy; these are most of a ConfigMap's bytes, and a Secret's values need not
/// sit in shipd's memory at all.
pub fn slim(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    for payload in ["data", "binaryData", "stringData"] {
        map.remove(payload);
    }
    if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

/// The health of `object` by the rules in this module's documentation.
pub fn assess(object: &Value) -> Health {
    let generation = int_at(object, "/metadata/generation");
    let observed = int_at(object, "/status/observedGeneration");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let has_workload_status = matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet");
    if let (Some(generation), Some(observed)) = (generation, observed)
        && observed < generation
    {
        return Health::Progressing(format!("generation {generation} not observed yet"));
    }
    if has_workload_status && observed.is_none() {
        return Health::Progressing("not observed by its controller yet".into());
    }
    match kind {
        "Deployment" => {
            if condition_text(object, "Progressing", "reason") == "ProgressDeadlineExceeded" {
                return Health::Failed(condition_text(object, "Progressing", "message"));
            }
            let want = int_at(object, "/spec/replicas").unwrap_or(1);
            let status = |f: &str| int_at(object, &format!("/status/{f}")).unwrap_or(0);
            short_of("replicas updated", status("updatedReplicas"), want)
                .or_else(|| short_of("replicas ready", status("readyReplicas"), want))
                .or_else(|| short_of("replicas available", status("availableReplicas"), want))
                .or_else(|| {
                    let old = status("replicas") - status("updatedReplicas");
                    (old > 0).then(|| Health::Progressing(format!("{old} old replicas pending termination")))
                })
                .unwrap_or(Health::Healthy)
        }
        "StatefulSet" => {
            let want = int_at(object, "/spec/replicas").unwrap_or(1);
            let status = |f: &str| int_at(object, &format!("/status/{f}")).unwrap_or(0);
            let rolling = object
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "RollingUpdate");
            let revision = |f: &str| {
                object
                    .pointer(&format!("/status/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            short_of("replicas updated", status("updatedReplicas"), want)
                .or_else(|| short_of("replicas ready", status("readyReplicas"), want))
                .or_else(|| {
                    (rolling && revision("currentRevision") != revision("updateRevision"))
                        .then(|| Health::Progressing("update revision not rolled out yet".into()))
                })
                .unwrap_or(Health::Healthy)
        }
        "DaemonSet" => {
            let status = |f: &str| int_at(object, &format!("/status/{f}")).unwrap_or(0);
            let want = status("desiredNumberScheduled");
            short_of("pods updated", status("updatedNumberScheduled"), want)
                .or_else(|| short_of("pods available", status("numberAvailable"), want))
                .unwrap_or(Health::Healthy)
        }
        "Job" => {
            if condition_is(object, "Failed", "True") {
                Health::Failed(format!(
                    "Job failed: {}",
                    condition_text(object, "Failed", "message")
                ))
            } else if condition_is(object, "Complete", "True") {
                Health::Healthy
            } else {
                Health::Progressing("Job not complete yet".into())
            }
        }
        "PersistentVolumeClaim" => match object.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => Health::Healthy,
            Some("Lost") => Health::Failed("claim lost its volume".into()),
            _ => Health::Progressing("claim not bound yet".into()),
        },
        _ if condition(object, "Ready").is_some() => {
            if condition_is(object, "Ready", "True") {
                Health::Healthy
            } else {
                Health::Progressing(format!(
                    "not Ready: {}",
                    condition_text(object, "Ready", "message")
                ))
            }
        }
        _ => Health::Healthy,
    }
}

/// Container waiting reasons that no wait will fix.
pub const STUCK_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImageNeverPull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Kinds whose Pods [`stuck_pod`] judges.
pub fn judges_pods(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet")
}

fn uid(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid").and_then(Value::as_str)
}

fn owned_by(object: &Value, owner_uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
        })
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/labels")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Is `pod` one of `workload`'s Pods at its current revision? A Deployment's current revision is
/// its ReplicaSet whose `deployment.kubernetes.io/revision` matches the Deployment's; a
/// StatefulSet's, the Pods labelled with its `status.updateRevision`; a DaemonSet's Pods are all
/// judged (its status names no revision).
fn current_pod_of(workload: &Value, pod: &Value, replicasets: &[&Value]) -> bool {
    let Some(workload_uid) = uid(workload) else {
        return false;
    };
    match workload.get("kind").and_then(Value::as_str) {
        Some("Deployment") => {
            const REVISION: &str = "deployment.kubernetes.io/revision";
            let Some(revision) = annotation(workload, REVISION) else {
                return false;
            };
            replicasets.iter().any(|rs| {
                owned_by(rs, workload_uid)
                    && annotation(rs, REVISION) == Some(revision)
                    && uid(rs).is_some_and(|rs_uid| owned_by(pod, rs_uid))
            })
        }
        Some("StatefulSet") => {
            owned_by(pod, workload_uid)
                && workload
                    .pointer("/status/updateRevision")
                    .and_then(Value::as_str)
                    .is_some_and(|r| label(pod, "controller-revision-hash") == Some(r))
        }
        Some("DaemonSet") => owned_by(pod, workload_uid),
        _ => false,
    }
}

/// The first Pod of `workload`'s current revision that is stuck (see the module's
/// documentation), as a message naming the Pod, the container and the reason. Nothing is judged
/// until the workload's controller has observed its latest spec: before that, the revision it
/// names is the previous one (right after a rollback re-applies a good template, the broken
/// revision's Pods still look current, and judging them failed the rollback).
pub fn stuck_pod(workload: &Value, pods: &[&Value], replicasets: &[&Value]) -> Option<String> {
    let generation = int_at(workload, "/metadata/generation")?;
    let observed = int_at(workload, "/status/observedGeneration")?;
    if observed < generation {
        return None;
    }
    pods.iter()
        .filter(|pod| pod.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|pod| current_pod_of(workload, pod, replicasets))
        .find_map(|pod| {
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            ["/status/initContainerStatuses", "/status/containerStatuses"]
                .iter()
                .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
                .flatten()
                .find_map(|container| {
                    let waiting = container.pointer("/state/waiting")?;
                    let reason = waiting.get("reason").and_then(Value::as_str)?;
                    STUCK_REASONS.contains(&reason).then(|| {
                        let message = waiting.get("message").and_then(Value::as_str).unwrap_or_default();
                        let restarts = container.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
                        let cname = container.get("name").and_then(Value::as_str).unwrap_or("?");
                        let mut text = format!("pod {name}: container {cname}: {reason}");
                        if restarts > 0 {
                            text.push_str(&format!(" after {restarts} restarts"));
                        }
                        if !message.is_empty() {
                            text.push_str(&format!(": {}", crate::text::tail(message, 300)));
                        }
                        text
                    })
                })
        })
}

/// Does `selector` (a Service's `spec.selector`) select the Pods of `workload`'s template?
fn selects(selector: &serde_json::Map<String, Value>, workload: &Value) -> bool {
    let labels = workload.pointer("/spec/template/metadata/labels");
    selector
        .iter()
        .all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
}

/// Does `workload` want any Pods now?
fn wants_pods(workload: &Value) -> bool {
    match workload.get("kind").and_then(Value::as_str) {
        Some("DaemonSet") => int_at(workload, "/status/desiredNumberScheduled").unwrap_or(0) > 0,
        _ => int_at(workload, "/spec/replicas").unwrap_or(1) > 0,
    }
}

/// The ready addresses of Service `service` from its EndpointSlices (`discovery.k8s.io/v1`,
/// served from 1.21; v1 Endpoints is deprecated since 1.33), shaped as the v1 Endpoints object
/// [`service_endpoints`] reads: one subset whose addresses are the slices' endpoints that are
/// not marked unready. `None` when no slice of the Service is among `slices`.
pub fn endpoints_from_slices(slices: &[&Value], service: &str) -> Option<Value> {
    let of_service: Vec<&Value> = slices
        .iter()
        .copied()
        .filter(|slice| {
            slice
                .pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(service)
        })
        .collect();
    if of_service.is_empty() {
        return None;
    }
    let addresses: Vec<Value> = of_service
        .iter()
        .filter_map(|slice| slice.get("endpoints").and_then(Value::as_array))
        .flatten()
        // `ready` absent means ready (the API's documented default for an unknown state).
        .filter(|endpoint| endpoint.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false))
        .map(|endpoint| {
            serde_json::json!({
                "ip": endpoint.pointer("/addresses/0").cloned().unwrap_or(Value::Null),
                "targetRef": endpoint.get("targetRef").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    Some(serde_json::json!({"kind": "Endpoints", "subsets": [{"addresses": addresses}]}))
}

/// The health of a Service in front of workloads of the same release, from its Endpoints (by
/// the Service's name) and the namespace's Pods and ReplicaSets. `None` when the rule does not
/// apply: no selector, `ExternalName`, or no workload of the release it selects wants Pods.
/// Kube-proxy programs a node's rules after the Endpoints change; that last step (about a
/// second) is not visible through the API.
pub fn service_endpoints(
    service: &Value,
    endpoints: Option<&Value>,
    workloads: &[&Value],
    pods: &[&Value],
    replicasets: &[&Value],
) -> Option<Health> {
    if service.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return None;
    }
    let selector = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())?;
    let selected: Vec<&Value> = workloads
        .iter()
        .copied()
        .filter(|w| selects(selector, w) && wants_pods(w))
        .collect();
    if selected.is_empty() {
        return None;
    }
    let addresses: Vec<&Value> = endpoints
        .and_then(|e| e.get("subsets"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|subset| subset.get("addresses").and_then(Value::as_array))
        .flatten()
        .collect();
    if addresses.is_empty() {
        return Some(Health::Progressing("no ready endpoints yet".into()));
    }
    for address in addresses {
        let Some(pod_name) = address
            .pointer("/targetRef/name")
            .and_then(Value::as_str)
            .filter(|_| address.pointer("/targetRef/kind").and_then(Value::as_str) == Some("Pod"))
        else {
            continue;
        };
        let Some(pod) = pods
            .iter()
            .find(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(pod_name))
        else {
            return Some(Health::Progressing(format!(
                "endpoints still list deleted pod {pod_name}"
            )));
        };
        // A Pod of a selected workload must be of its current revision; Pods made by hand or
        // by another controller that match the selector are the user's business.
        let of_workload = selected.iter().find(|w| belongs_to(w, pod, replicasets));
        if let Some(workload) = of_workload
            && !current_pod_of(workload, pod, replicasets)
        {
            return Some(Health::Progressing(format!(
                "endpoints still list pod {pod_name} of an older revision"
            )));
        }
    }
    Some(Health::Healthy)
}

/// Is `pod` made by `workload` (directly, or through one of its ReplicaSets), at any revision?
fn belongs_to(workload: &Value, pod: &Value, replicasets: &[&Value]) -> bool {
    let Some(workload_uid) = uid(workload) else {
        return false;
    };
    owned_by(pod, workload_uid)
        || replicasets
            .iter()
            .any(|rs| owned_by(rs, workload_uid) && uid(rs).is_some_and(|rs_uid| owned_by(pod, rs_uid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, owner: &str, labels: Value, waiting: Option<(&str, &str)>) -> Value {
        let state = match waiting {
            Some((reason, message)) => json!({"waiting": {"reason": reason, "message": message}}),
            None => json!({"running": {}}),
        };
        json!({"kind": "Pod", "metadata": {"name": name, "uid": format!("{name}-uid"), "labels": labels,
                "ownerReferences": [{"uid": owner}]},
               "status": {"containerStatuses": [{"name": "app", "restartCount": 2, "state": state}]}})
    }

    #[test]
    fn slimming_drops_payloads_and_managed_fields_and_keeps_every_verdict() {
        let managed = json!([{"manager": "ship-controller", "operation": "Apply",
                              "fieldsV1": {"f:data": {"f:key": {}}}}]);
        let objects = [
            json!({"kind": "ConfigMap", "metadata": {"name": "c", "managedFields": managed},
                   "data": {"key": "value"}, "binaryData": {"b": "AAAA"}}),
            json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "c2VjcmV0"},
                   "stringData": {"token": "plain"}}),
            json!({"kind": "Deployment", "metadata": {"name": "d", "generation": 2, "managedFields": managed},
                   "spec": {"replicas": 2},
                   "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                              "readyReplicas": 1, "availableReplicas": 1}}),
            json!({"kind": "Job", "metadata": {"name": "j"},
                   "status": {"conditions": [{"type": "Failed", "status": "True", "message": "backoff"}]}}),
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "p"}, "status": {"phase": "Bound"}}),
        ];
        for object in objects {
            let mut slimmed = object.clone();
            slim(&mut slimmed);
            assert_eq!(assess(&slimmed), assess(&object), "{object}");
            for gone in ["/data", "/binaryData", "/stringData", "/metadata/managedFields"] {
                assert!(slimmed.pointer(gone).is_none(), "{gone} kept in {slimmed}");
            }
            assert_eq!(
                slimmed.pointer("/metadata/name"),
                object.pointer("/metadata/name")
            );
        }
    }

    #[test]
    fn a_current_pod_stuck_fails_its_deployment_and_older_revisions_do_not_count() {
        let deploy = json!({"kind": "Deployment", "metadata": {"uid": "d", "generation": 2,
            "annotations": {"deployment.kubernetes.io/revision": "2"}}, "status": {"observedGeneration": 2}});
        let rs = |uid: &str, revision: &str| {
            json!({"kind": "ReplicaSet", "metadata": {"uid": uid, "ownerReferences": [{"uid": "d"}],
                   "annotations": {"deployment.kubernetes.io/revision": revision}}})
        };
        let (old_rs, new_rs, foreign_rs) =
            (rs("rs1", "1"), rs("rs2", "2"), json!({"metadata": {"uid": "x"}}));
        let replicasets = [&old_rs, &new_rs, &foreign_rs];
        let crashing_old = pod(
            "web-old",
            "rs1",
            json!({}),
            Some(("CrashLoopBackOff", "back-off 10s")),
        );
        let healthy_new = pod("web-new", "rs2", json!({}), None);
        assert_eq!(
            stuck_pod(&deploy, &[&crashing_old, &healthy_new], &replicasets),
            None
        );
        let crashing_new = pod(
            "web-new",
            "rs2",
            json!({}),
            Some(("CrashLoopBackOff", "back-off 10s restarting")),
        );
        assert_eq!(
            stuck_pod(&deploy, &[&crashing_new], &replicasets).as_deref(),
            Some("pod web-new: container app: CrashLoopBackOff after 2 restarts: back-off 10s restarting")
        );
        let unpullable = pod(
            "web-new",
            "rs2",
            json!({}),
            Some(("ErrImageNeverPull", "image not present")),
        );
        assert!(
            stuck_pod(&deploy, &[&unpullable], &replicasets).is_some_and(|m| m.contains("ErrImageNeverPull"))
        );
        // a first pull error may pass; the back-off after it does not
        let first_pull = pod("web-new", "rs2", json!({}), Some(("ErrImagePull", "timeout")));
        assert_eq!(stuck_pod(&deploy, &[&first_pull], &replicasets), None);
        // a pod being deleted is not judged
        let mut leaving = crashing_new.clone();
        leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(stuck_pod(&deploy, &[&leaving], &replicasets), None);
        // a pod in another workload's ReplicaSet is not this one's
        let stranger = pod("other", "x", json!({}), Some(("CrashLoopBackOff", "")));
        assert_eq!(stuck_pod(&deploy, &[&stranger], &replicasets), None);
        // a rollback re-applied a good template (generation 3) that the controller has not
        // observed yet: the revision it names is still the broken one, so nothing is judged
        let mut rolled_back = deploy.clone();
        rolled_back["metadata"]["generation"] = json!(3);
        assert_eq!(stuck_pod(&rolled_back, &[&crashing_new], &replicasets), None);
        rolled_back["status"]["observedGeneration"] = json!(3);
        assert!(stuck_pod(&rolled_back, &[&crashing_new], &replicasets).is_some());
        let unobserved = json!({"kind": "Deployment", "metadata": {"uid": "d", "generation": 1}});
        assert_eq!(stuck_pod(&unobserved, &[&crashing_new], &replicasets), None);
    }

    #[test]
    fn statefulsets_judge_their_update_revision_and_init_containers_count() {
        let sts = json!({"kind": "StatefulSet", "metadata": {"uid": "s", "generation": 1},
            "status": {"updateRevision": "r2", "observedGeneration": 1}});
        let old = pod(
            "db-0",
            "s",
            json!({"controller-revision-hash": "r1"}),
            Some(("CrashLoopBackOff", "")),
        );
        assert_eq!(stuck_pod(&sts, &[&old], &[]), None);
        let mut new = pod("db-0", "s", json!({"controller-revision-hash": "r2"}), None);
        new["status"]["initContainerStatuses"] = json!([{"name": "migrate", "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"db\" not found"}}}]);
        assert_eq!(
            stuck_pod(&sts, &[&new], &[]).as_deref(),
            Some("pod db-0: container migrate: CreateContainerConfigError: secret \"db\" not found")
        );
        let ds = json!({"kind": "DaemonSet", "metadata": {"uid": "ds", "generation": 1}, "status": {"observedGeneration": 1}});
        let agent = pod("agent-x", "ds", json!({}), Some(("ImagePullBackOff", "")));
        assert!(stuck_pod(&ds, &[&agent], &[]).is_some());
        assert!(judges_pods("Deployment") && !judges_pods("Job") && !judges_pods("ConfigMap"));
    }

    fn deployment(generation: i64, status: Value) -> Value {
        json!({"kind": "Deployment", "metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn deployment_rules() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2});
        assert_eq!(assess(&deployment(2, done.clone())), Health::Healthy);
        assert!(matches!(assess(&deployment(3, done)), Health::Progressing(m) if m.contains("generation 3")));
        let surge = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3});
        assert!(matches!(assess(&deployment(2, surge)), Health::Progressing(m) if m.contains("1 old")));
        let unready =
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1});
        assert_eq!(
            assess(&deployment(2, unready)),
            Health::Progressing("1/2 replicas ready".into())
        );
        let stuck = json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]});
        assert_eq!(assess(&deployment(2, stuck)), Health::Failed("too slow".into()));
        let fresh = json!({"kind": "Deployment", "metadata": {"generation": 1}});
        assert!(matches!(assess(&fresh), Health::Progressing(_)));
    }

    #[test]
    fn statefulset_and_daemonset_rules() {
        let sts = |current: &str| {
            json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 1},
                   "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1,
                              "currentRevision": current, "updateRevision": "r2"}})
        };
        assert_eq!(assess(&sts("r2")), Health::Healthy);
        assert!(matches!(assess(&sts("r1")), Health::Progressing(_)));
        let ds = |available: i64| {
            json!({"kind": "DaemonSet", "metadata": {"generation": 1},
                   "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": available}})
        };
        assert_eq!(assess(&ds(3)), Health::Healthy);
        assert_eq!(assess(&ds(2)), Health::Progressing("2/3 pods available".into()));
    }

    #[test]
    fn job_pvc_ready_condition_and_plain_objects() {
        let job = |t: &str| json!({"kind": "Job", "status": {"conditions": [{"type": t, "status": "True", "message": "m"}]}});
        assert_eq!(assess(&job("Complete")), Health::Healthy);
        assert!(matches!(assess(&job("Failed")), Health::Failed(_)));
        assert!(matches!(assess(&json!({"kind": "Job"})), Health::Progressing(_)));
        assert_eq!(
            assess(&json!({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}})),
            Health::Healthy
        );
        let custom = |s: &str| json!({"kind": "Certificate", "status": {"conditions": [{"type": "Ready", "status": s}]}});
        assert_eq!(assess(&custom("True")), Health::Healthy);
        assert!(matches!(assess(&custom("False")), Health::Progressing(_)));
        assert_eq!(assess(&json!({"kind": "ConfigMap", "data": {}})), Health::Healthy);
    }
    #[test]
    fn a_service_in_front_of_a_new_rollout_waits_for_its_new_pods_endpoints() {
        let deploy = json!({"kind": "Deployment", "metadata": {"uid": "d", "generation": 2,
            "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}}});
        let rs = |uid: &str, revision: &str| {
            json!({"kind": "ReplicaSet", "metadata": {"uid": uid, "ownerReferences": [{"uid": "d"}],
                   "annotations": {"deployment.kubernetes.io/revision": revision}}})
        };
        let (old_rs, new_rs) = (rs("rs1", "1"), rs("rs2", "2"));
        let replicasets = [&old_rs, &new_rs];
        let (old, new) = (
            pod("web-old", "rs1", json!({}), None),
            pod("web-new", "rs2", json!({}), None),
        );
        let by_hand = pod("debug", "nobody", json!({}), None);
        let pods = [&old, &new, &by_hand];
        let service = json!({"kind": "Service", "spec": {"selector": {"app": "web"}}});
        let endpoints = |names: &[&str]| {
            let addresses: Vec<Value> = names
                .iter()
                .map(|n| json!({"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": n}}))
                .collect();
            json!({"kind": "Endpoints", "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]})
        };
        let judge = |e: Option<&Value>| service_endpoints(&service, e, &[&deploy], &pods, &replicasets);
        assert_eq!(
            judge(None),
            Some(Health::Progressing("no ready endpoints yet".into()))
        );
        let not_ready = json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(
            judge(Some(&not_ready)),
            Some(Health::Progressing("no ready endpoints yet".into()))
        );
        assert_eq!(
            judge(Some(&endpoints(&["web-new", "web-old"]))),
            Some(Health::Progressing(
                "endpoints still list pod web-old of an older revision".into()
            ))
        );
        assert_eq!(
            judge(Some(&endpoints(&["web-new", "gone"]))),
            Some(Health::Progressing(
                "endpoints still list deleted pod gone".into()
            ))
        );
        assert_eq!(
            judge(Some(&endpoints(&["web-new", "debug"]))),
            Some(Health::Healthy)
        );

        // Where the rule does not apply, the Service is judged as before: healthy once it exists.
        let external =
            json!({"kind": "Service", "spec": {"type": "ExternalName", "selector": {"app": "web"}}});
        assert_eq!(
            service_endpoints(&external, None, &[&deploy], &pods, &replicasets),
            None
        );
        let headless_no_selector = json!({"kind": "Service", "spec": {"clusterIP": "None"}});
        assert_eq!(
            service_endpoints(&headless_no_selector, None, &[&deploy], &pods, &replicasets),
            None
        );
        let other = json!({"kind": "Service", "spec": {"selector": {"app": "db"}}});
        assert_eq!(
            service_endpoints(&other, None, &[&deploy], &pods, &replicasets),
            None
        );
        let mut scaled_to_zero = deploy.clone();
        scaled_to_zero["spec"]["replicas"] = json!(0);
        assert_eq!(
            service_endpoints(&service, None, &[&scaled_to_zero], &pods, &replicasets),
            None
        );
    }
}
