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
    let flat = remote.flat_kubeconfig().unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "production-cluster"},
        "stringData": {"kubeconfig": flat},
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
    // The kubeconfig's private key never reaches the logs, the events, the releases' status or
    // the metrics: neither its base64 form nor a line of its PEM.
    let key_b64 = flat
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-key-data:"))
        .map(|v| v.trim().to_owned())
        .unwrap();
    use base64::Engine as _;
    let pem = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&key_b64)
            .unwrap(),
    )
    .unwrap();
    let key_line = pem.lines().nth(1).unwrap().to_owned();
    assert!(key_line.len() > 40, "a line of key material: {key_line}");
    let events = kube::Api::<k8s_openapi::api::core::v1::Event>::namespaced(stack.cluster.client(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let statuses = stack.releases().list(&Default::default()).await.unwrap();
    let captures = [
        ("logs", stack.logs()),
        ("events", serde_json::to_string(&events.items).unwrap()),
        ("status", serde_json::to_string(&statuses.items).unwrap()),
        (
            "metrics",
            stack.shipd.as_ref().unwrap().probe("/metrics").await.unwrap().1,
        ),
    ];
    for (what, text) in captures {
        assert!(
            !text.contains(&key_b64) && !text.contains(&key_line),
            "{what} holds the private key"
        );
    }
}
