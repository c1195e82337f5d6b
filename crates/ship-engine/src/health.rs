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
//! - Anything else: healthy once it exists (ConfigMaps, Services, RBAC, ...).

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
