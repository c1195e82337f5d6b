//! The kubelet stand-in drives the real kube-controller-manager: Deployments become available,
//! Jobs complete or fail by the rule a test sets, and scaled-down Pods go away.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use ship_testkit::cluster::{TestCluster, eventually};

fn deployment(name: &str, replicas: i32, annotations: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name }, "annotations": annotations },
                "spec": { "containers": [{ "name": "web", "image": "registry.invalid/web:1" }] }
            }
        }
    }))
    .unwrap()
}

fn job(name: &str, exit_code: i32, log: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": {
                    "standin.ship.dev/exit-code": exit_code.to_string(),
                    "standin.ship.dev/log": log,
                    "standin.ship.dev/run-millis": "50",
                }},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "check", "image": "registry.invalid/check:1" }]
                }
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn deployment_becomes_available_then_scales_to_zero() {
    let cluster = TestCluster::connect().await.unwrap();
    let ns = cluster.namespace("standin-deploy").await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &ns);
    deployments
        .create(&PostParams::default(), &deployment("web", 2, json!({})))
        .await
        .unwrap();
    eventually("web available", Duration::from_secs(60), || async {
        let d = deployments.get("web").await?;
        let status = d.status.unwrap_or_default();
        Ok(
            (status.available_replicas == Some(2) && status.observed_generation == d.metadata.generation)
                .then_some(()),
        )
    })
    .await
    .unwrap();

    let patch = json!({ "spec": { "replicas": 0 } });
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &ns);
    eventually("web pods deleted", Duration::from_secs(60), || async {
        Ok(pods
            .list(&ListParams::default().labels("app=web"))
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn never_ready_pods_keep_a_deployment_unavailable() {
    let cluster = TestCluster::connect().await.unwrap();
    let ns = cluster.namespace("standin-unready").await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &ns);
    let d = deployment("stuck", 1, json!({ "standin.ship.dev/ready": "false" }));
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &ns);
    eventually("stuck pod running", Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default().labels("app=stuck")).await?;
        Ok(list
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(()))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = deployments.get("stuck").await.unwrap().status.unwrap_or_default();
    assert_eq!(status.available_replicas.unwrap_or(0), 0, "{status:?}");
    assert_eq!(status.unavailable_replicas, Some(1), "{status:?}");
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn jobs_complete_or_fail_by_the_rule_the_test_sets() {
    let cluster = TestCluster::connect().await.unwrap();
    let ns = cluster.namespace("standin-jobs").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(cluster.client(), &ns);
    jobs.create(&PostParams::default(), &job("passes", 0, "3 journeys ok"))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("fails", 1, "checkout returned 500"))
        .await
        .unwrap();
    let condition_of = |name: &'static str| {
        let jobs = jobs.clone();
        async move {
            eventually(
                &format!("job {name} finished"),
                Duration::from_secs(60),
                || async {
                    let j = jobs.get(name).await?;
                    let conditions = j.status.and_then(|s| s.conditions).unwrap_or_default();
                    Ok(conditions
                        .into_iter()
                        .find(|c| c.status == "True")
                        .map(|c| c.type_))
                },
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(condition_of("passes").await, "Complete");
    assert_eq!(condition_of("fails").await, "Failed");

    let pods: Api<Pod> = Api::namespaced(cluster.client(), &ns);
    let failed = pods
        .list(&ListParams::default().labels("job-name=fails"))
        .await
        .unwrap();
    let terminated = failed.items[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(terminated.exit_code, 1);
    assert_eq!(terminated.message.as_deref(), Some("checkout returned 500"));
}
