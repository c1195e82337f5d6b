//! A kubelet stand-in: no containers run here, but the API server sees a Node whose Pods start,
//! become Ready, and (for Jobs) end, so the real kube-controller-manager drives Deployments,
//! ReplicaSets and Jobs exactly as it would on a real cluster.
//!
//! Tests control what a Pod does through annotations on its template:
//! - `standin.ship.dev/ready: "false"`: the Pod runs but never becomes Ready (health timeouts);
//! - `standin.ship.dev/exit-code: "N"`: a run-to-completion Pod (Job) ends with exit code N (default 0);
//! - `standin.ship.dev/log: "text"`: what the container "printed"; kept as its termination message;
//! - `standin.ship.dev/run-millis: "N"`: how long a run-to-completion Pod runs (default 200).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

/// Annotation: the Pod never becomes Ready when `"false"`.
pub const READY: &str = "standin.ship.dev/ready";
/// Annotation: exit code of a run-to-completion Pod.
pub const EXIT_CODE: &str = "standin.ship.dev/exit-code";
/// Annotation: the Pod's output.
pub const LOG: &str = "standin.ship.dev/log";
/// Annotation: run time of a run-to-completion Pod in milliseconds.
pub const RUN_MILLIS: &str = "standin.ship.dev/run-millis";

const MANAGER: &str = "kubelet-standin";

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Registers `node_name` and keeps it alive, then runs every Pod bound (or bindable) to it
/// until the returned future is dropped.
pub async fn run(client: Client, node_name: String) -> anyhow::Result<()> {
    register_node(&client, &node_name).await?;
    let heartbeat = tokio::spawn(heartbeat(client.clone(), node_name.clone()));
    let result = run_pods(client, node_name).await;
    heartbeat.abort();
    result
}

async fn register_node(client: &Client, node: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let object = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": node, "labels": { "kubernetes.io/hostname": node, "kubernetes.io/os": "linux" } },
    });
    nodes
        .patch(node, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
        .await?;
    patch_node_status(&nodes, node).await?;
    info!(node, "node registered");
    Ok(())
}

async fn patch_node_status(nodes: &Api<Node>, node: &str) -> anyhow::Result<()> {
    let t = now();
    let status = json!({
        "apiVersion": "v1", "kind": "Node",
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet stand-in is posting ready status",
                "lastHeartbeatTime": t, "lastTransitionTime": t,
            }],
            "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }, { "type": "Hostname", "address": node }],
            "capacity": { "cpu": "64", "memory": "256Gi", "pods": "1000" },
            "allocatable": { "cpu": "64", "memory": "256Gi", "pods": "1000" },
            "nodeInfo": {
                "machineID": "standin", "systemUUID": "standin", "bootID": "standin",
                "kernelVersion": "standin", "osImage": "standin", "containerRuntimeVersion": "standin://0",
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        }
    });
    nodes
        .patch_status(node, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&status))
        .await?;
    Ok(())
}

/// The node lifecycle controller evicts Pods from a node that stops renewing its Lease
/// (40 s grace in 1.20): renew it, and the Ready condition, every 10 s.
async fn heartbeat(client: Client, node: String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(node.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: Some(node.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..Default::default()
            }),
        };
        let mut value = serde_json::to_value(&lease).unwrap_or_default();
        value["apiVersion"] = json!("coordination.k8s.io/v1");
        value["kind"] = json!("Lease");
        if let Err(err) = leases
            .patch(&node, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value))
            .await
        {
            warn!(error = %err, "cannot renew node lease");
        }
        if let Err(err) = patch_node_status(&nodes, &node).await {
            warn!(error = %err, "cannot post node status");
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// What the stand-in does with one Pod, decided from the Pod alone (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAction {
    /// Nothing to do (already handled, or another node's Pod).
    None,
    /// Bind the unscheduled Pod to this node.
    Bind,
    /// Graceful deletion requested: finish it (no kubelet will).
    Remove,
    /// Start the Pod; `ready` says whether it becomes Ready.
    Start { ready: bool },
    /// Start a run-to-completion Pod, which ends after `run` with `exit_code` and `log`.
    RunToCompletion {
        exit_code: i32,
        log: String,
        run: Duration,
    },
}

/// Decides what to do with `pod` on `node`.
pub fn decide(pod: &Pod, node: &str) -> PodAction {
    let spec = pod.spec.as_ref();
    let bound_to = spec.and_then(|s| s.node_name.as_deref());
    if pod.metadata.deletion_timestamp.is_some() {
        return if bound_to == Some(node) {
            PodAction::Remove
        } else {
            PodAction::None
        };
    }
    match bound_to {
        None => return PodAction::Bind,
        Some(other) if other != node => return PodAction::None,
        Some(_) => {}
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    if phase != "Pending" {
        return PodAction::None;
    }
    let annotations = pod.annotations();
    let restart = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    if restart == "Always" {
        let ready = annotations.get(READY).map(String::as_str) != Some("false");
        return PodAction::Start { ready };
    }
    let exit_code = annotations
        .get(EXIT_CODE)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let millis = annotations
        .get(RUN_MILLIS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let log = annotations
        .get(LOG)
        .cloned()
        .unwrap_or_else(|| format!("standin: exited with code {exit_code}"));
    PodAction::RunToCompletion {
        exit_code,
        log,
        run: Duration::from_millis(millis),
    }
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn running_status(pod: &Pod, ready: bool) -> serde_json::Value {
    let t = now();
    let flag = if ready { "True" } else { "False" };
    let containers: Vec<_> = container_names(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": format!("standin://{image}"), "ready": ready,
                "restartCount": 0, "started": true, "state": { "running": { "startedAt": t } },
            })
        })
        .collect();
    json!({ "status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": t,
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": t },
            { "type": "Initialized", "status": "True", "lastTransitionTime": t },
            { "type": "ContainersReady", "status": flag, "lastTransitionTime": t },
            { "type": "Ready", "status": flag, "lastTransitionTime": t },
        ],
        "containerStatuses": containers,
    }})
}

fn finished_status(pod: &Pod, exit_code: i32, log: &str) -> serde_json::Value {
    let t = now();
    let containers: Vec<_> = container_names(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": format!("standin://{image}"), "ready": false,
                "restartCount": 0, "started": false,
                "state": { "terminated": {
                    "exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" },
                    "message": log, "startedAt": t, "finishedAt": t,
                }},
            })
        })
        .collect();
    json!({ "status": {
        "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [
            { "type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": t },
            { "type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": t },
        ],
        "containerStatuses": containers,
    }})
}

async fn act(pods: Api<Pod>, pod: Pod, node: String, action: PodAction) -> anyhow::Result<()> {
    let name = pod.name_any();
    match action {
        PodAction::None => {}
        PodAction::Bind => {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(node),
                    ..ObjectReference::default()
                },
            };
            // Another event for the same Pod may have bound it first: a conflict is fine.
            if let Err(err) = pods
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                tracing::debug!(pod = name, error = %err, "bind");
            }
        }
        PodAction::Remove => {
            pods.delete(
                &name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await?;
        }
        PodAction::Start { ready } => {
            pods.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(running_status(&pod, ready)),
            )
            .await?;
        }
        PodAction::RunToCompletion { exit_code, log, run } => {
            pods.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(running_status(&pod, true)),
            )
            .await?;
            tokio::time::sleep(run).await;
            let status = finished_status(&pod, exit_code, &log);
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await?;
            info!(pod = name, exit_code, "pod finished");
        }
    }
    Ok(())
}

async fn run_pods(client: Client, node: String) -> anyhow::Result<()> {
    let all: Api<Pod> = Api::all(client.clone());
    // Pods being started are remembered so that the flurry of events for one Pod acts once.
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut events = watcher(all, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(pod) = events.try_next().await? {
        let action = decide(&pod, &node);
        if action == PodAction::None {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let key = format!(
            "{namespace}/{}/{:?}",
            pod.name_any(),
            std::mem::discriminant(&action)
        );
        let Ok(mut guard) = in_flight.lock() else { continue };
        if !guard.insert(key.clone()) {
            continue;
        }
        drop(guard);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let in_flight = in_flight.clone();
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(err) = act(pods, pod, node, action).await {
                warn!(key, error = %err, "pod action failed");
            }
            if let Ok(mut guard) = in_flight.lock() {
                guard.remove(&key);
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(node: Option<&str>, restart: &str, annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_owned),
                restart_policy: Some(restart.into()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn decides_from_the_pod_alone() {
        assert_eq!(decide(&pod(None, "Always", &[]), "n"), PodAction::Bind);
        assert_eq!(decide(&pod(Some("other"), "Always", &[]), "n"), PodAction::None);
        assert_eq!(
            decide(&pod(Some("n"), "Always", &[]), "n"),
            PodAction::Start { ready: true }
        );
        assert_eq!(
            decide(&pod(Some("n"), "Always", &[(READY, "false")]), "n"),
            PodAction::Start { ready: false }
        );
        assert_eq!(
            decide(
                &pod(
                    Some("n"),
                    "Never",
                    &[(EXIT_CODE, "3"), (LOG, "boom"), (RUN_MILLIS, "5")]
                ),
                "n"
            ),
            PodAction::RunToCompletion {
                exit_code: 3,
                log: "boom".into(),
                run: Duration::from_millis(5)
            }
        );
        let mut deleting = pod(Some("n"), "Always", &[]);
        deleting.metadata.deletion_timestamp = Some(now());
        assert_eq!(decide(&deleting, "n"), PodAction::Remove);
    }
}
