//! Two clusters, as in a StepZen-style setup: main deploys to the controller's own cluster,
//! production to another one (a second local apiserver) through a kubeconfig held in a Secret;
//! the ShipReleases stay in the controller's cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use kube::api::PostParams;
use ship_api::Phase;
use ship_testkit::remote::RemoteCluster;
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn production_deploys_to_its_own_cluster() {
    let mut stack = Stack::new("remote", "{enabled: false}").await.unwrap();
    let (ns, prod) = (stack.ns.clone(), format!("{}-prod", stack.ns));
    let remote = RemoteCluster::start().unwrap();
    let remote_client = remote.client().await.unwrap();
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": prod}})).unwrap();
    Api::<Namespace>::all(remote_client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "production-cluster"},
        "stringData": {"kubeconfig": remote.flat_kubeconfig().unwrap()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(stack.cluster.client(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    // ship.yaml: production lives in the other cluster; the app test runs in main only (the
    // app stand-in reads the controller's cluster).
    let ship_yaml = std::fs::read_to_string(stack.remote.work.join("ship.yaml"))
        .unwrap()
        .replace(
            &format!("production: {{namespace: {prod}}}"),
            &format!("production: {{namespace: {prod}, kubeconfigSecret: production-cluster}}"),
        )
        .replace(
            "expect: {bodyContains: healthy}}",
            "expect: {bodyContains: healthy}}\n  environments: [main]",
        );
    let commit = stack
        .push_main(&[("ship.yaml", &ship_yaml)], "production on its own cluster")
        .unwrap();
    stack.remote.push("production", false).unwrap();
    stack.start_shipd(&[]).unwrap();

    let main = stack
        .settled(&release_name("main", &commit), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let production = stack
        .settled(&release_name("production", &commit), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(main.status.unwrap().test_summary.as_deref(), Some("1/1"));
    assert_eq!(production.status.unwrap().inventory.len(), 1);
    // production's objects are in the other cluster, and only there.
    let remote_web = Api::<ConfigMap>::namespaced(remote_client.clone(), &prod)
        .get("web")
        .await
        .unwrap();
    assert_eq!(remote_web.data.unwrap()["body"], "healthy production");
    let local_namespace = Api::<Namespace>::all(stack.cluster.client())
        .get_opt(&prod)
        .await
        .unwrap();
    if local_namespace.is_some() {
        let local_web = Api::<ConfigMap>::namespaced(stack.cluster.client(), &prod)
            .get_opt("web")
            .await
            .unwrap();
        assert!(
            local_web.is_none(),
            "production's objects must not land in the controller's cluster"
        );
    }
    // main's are in the controller's cluster.
    let local_main = Api::<ConfigMap>::namespaced(stack.cluster.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(local_main.data.unwrap()["body"], "healthy main");

    // The next commit reaches the other cluster too.
    let next = stack
        .push_main(
            &[("deploy/production/web.yaml", &configmap("healthy production v2"))],
            "v2",
        )
        .unwrap();
    stack.remote.push("production", false).unwrap();
    stack
        .settled(&release_name("production", &next), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let remote_web = Api::<ConfigMap>::namespaced(remote_client, &prod)
        .get("web")
        .await
        .unwrap();
    assert_eq!(remote_web.data.unwrap()["body"], "healthy production v2");
    // The kubeconfig's credentials never reach the logs.
    let logs = stack.logs();
    assert!(!logs.contains("BEGIN RSA PRIVATE KEY") && !logs.contains("client-key-data"));
}
