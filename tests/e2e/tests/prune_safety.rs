//! Ship never destroys what it does not own (issue: a commit that stopped declaring its
//! Namespace made Ship delete the namespace and everything in it). A commit that drops the
//! Namespace object, a PersistentVolumeClaim and a `ship.dev/prune: disabled` ConfigMap keeps all
//! three, keeps the hand-made Secret and claim beside them, says what it refused and why in
//! status and in Warning events, and still prunes an ordinary object. And an environment whose
//! manifests declare no Namespace, with Services that omit `protocol`, deploys on its first push.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Secret, Service,
};
use kube::Api;
use kube::api::PostParams;
use ship_api::{Phase, ShipRelease};
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);

fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
    }))
    .unwrap()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn dropping_the_namespace_from_git_keeps_it_and_everything_in_it() {
    let mut stack = Stack::new("prune-safety", "{enabled: false}").await.unwrap();
    let ns = stack.ns.clone();
    // The test bed has no storage provisioner: a volume made for the claim in git, bound to it
    // ahead (claimRef), lets it become Bound. Nothing mounts it.
    let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{ns}-data")},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": format!("/tmp/ship-unused-{ns}")},
                 "claimRef": {"namespace": ns, "name": "data"}}
    }))
    .unwrap();
    let volumes = Api::<PersistentVolume>::all(stack.cluster.client());
    volumes.create(&PostParams::default(), &volume).await.unwrap();
    let with_everything = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n{}---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n  accessModes: [ReadWriteOnce]\n  \
         storageClassName: \"\"\n  resources: {{requests: {{storage: 1Mi}}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: keep-me, annotations: {{ship.dev/prune: disabled}}}}\ndata: {{a: b}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ordinary}}\ndata: {{a: b}}\n",
        configmap("healthy main")
    );
    let first = stack
        .push_main(
            &[("deploy/main/web.yaml", &with_everything)],
            "the app, its namespace, its data",
        )
        .unwrap();
    stack.start_shipd(&[]).unwrap();
    stack
        .settled(&release_name("main", &first), Phase::Succeeded, SETTLE)
        .await
        .unwrap();

    // What people make by hand beside it: the Secret SecretInGit tells them to create, and data.
    let client = stack.cluster.client();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db-password"}, "stringData": {"password": "made by hand"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &claim("hand-made"))
        .await
        .unwrap();

    // The team moves to manifests that no longer declare the Namespace, the claim or keep-me.
    let second = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("healthy main"))],
            "drop everything but the app",
        )
        .unwrap();
    let release = stack
        .settled(&release_name("main", &second), Phase::Succeeded, SETTLE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));

    let namespace = Api::<Namespace>::all(client.clone()).get(&ns).await.unwrap();
    assert!(
        namespace.metadata.deletion_timestamp.is_none(),
        "the namespace is being deleted"
    );
    for secret in ["db-password"] {
        assert!(
            Api::<Secret>::namespaced(client.clone(), &ns)
                .get_opt(secret)
                .await
                .unwrap()
                .is_some()
        );
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    for name in ["data", "hand-made"] {
        let claim = claims
            .get_opt(name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("claim {name} deleted"));
        assert!(
            claim.metadata.deletion_timestamp.is_none(),
            "claim {name} is being deleted"
        );
    }
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    assert!(
        configmaps.get_opt("keep-me").await.unwrap().is_some(),
        "ship.dev/prune: disabled was pruned"
    );
    let ordinary = configmaps.get_opt("ordinary").await.unwrap();
    assert!(
        ordinary.is_none_or(|cm| cm.metadata.deletion_timestamp.is_some()),
        "an ordinary object the commit dropped is still pruned"
    );

    let status = release.status.unwrap();
    let refused: Vec<(&str, &str)> = status
        .prune_refused
        .iter()
        .map(|r| (r.object.as_str(), r.reason.as_str()))
        .collect();
    let find = |object: &str| {
        refused
            .iter()
            .find(|(o, _)| *o == object)
            .map(|(_, reason)| *reason)
            .unwrap_or_else(|| panic!("{object} not in status.pruneRefused: {refused:?}"))
    };
    assert!(find(&format!("Namespace/{ns}")).contains("namespace of environment main"));
    assert!(find(&format!("PersistentVolumeClaim/{ns}/data")).contains("ship.dev/prune: enabled"));
    assert!(find(&format!("ConfigMap/{ns}/keep-me")).contains("disabled"));
    assert_eq!(refused.len(), 3, "{refused:?}");
    let progressing = status
        .transitions
        .iter()
        .find(|t| t.phase == Phase::Progressing)
        .unwrap();
    assert!(
        progressing.message.contains("3 no longer declared but kept"),
        "{}",
        progressing.message
    );

    let events = stack
        .cluster
        .kubectl(&["get", "events.events.k8s.io", "-n", &ns, "-o", "json"])
        .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("PruneRefused") && events.contains(&format!("PersistentVolumeClaim/{ns}/data")),
        "a Warning event names each object kept"
    );
    // The volume is cluster-scoped: it outlives the test's namespace.
    let _ = volumes.delete(&format!("{ns}-data"), &Default::default()).await;
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn an_environment_without_a_namespace_object_or_port_protocols_deploys_on_its_first_push() {
    let mut stack = Stack::new("prune-fresh", "{enabled: false}").await.unwrap();
    // main moves to a namespace nobody created; its manifests declare no Namespace, and its
    // Service, like most people's, leaves `protocol` out (refused by 1.20's server-side apply
    // unless Ship fills it in).
    let fresh = format!("{}-fresh", stack.ns);
    let ship_yaml = std::fs::read_to_string(stack.remote.work.join("ship.yaml"))
        .unwrap()
        .replace(
            &format!("main: {{namespace: {}}}", stack.ns),
            &format!("main: {{namespace: {fresh}}}"),
        );
    assert!(ship_yaml.contains(&fresh));
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  \
                   ports: [{name: http, port: 80, targetPort: 8080}]\n";
    let commit = stack
        .push_main(
            &[("ship.yaml", &ship_yaml), ("deploy/main/service.yaml", service)],
            "a namespace of its own",
        )
        .unwrap();
    // Drift checks every second: the defaults Ship filled in must not look like drift.
    stack.start_shipd(&["--drift-interval", "1s"]).unwrap();
    stack
        .settled(&release_name("main", &commit), Phase::Succeeded, SETTLE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
    let client = stack.cluster.client();
    let namespace = Api::<Namespace>::all(client.clone()).get(&fresh).await.unwrap();
    let labels = namespace.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("ship")
    );
    assert_eq!(
        labels.get("ship.dev/environment").map(String::as_str),
        Some("main")
    );
    let service = Api::<Service>::namespaced(client, &fresh)
        .get("web")
        .await
        .unwrap();
    let port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    // Three drift checks later (each writes status.driftCheckedAt), nothing was "put back".
    let checked = |r: &ShipRelease| r.status.as_ref().and_then(|s| s.drift_checked_at.clone());
    let mut release = stack
        .releases()
        .get(&release_name("main", &commit))
        .await
        .unwrap();
    for _ in 0..3 {
        let before = checked(&release);
        release = stack
            .release_where(&release_name("main", &commit), SETTLE, |r| {
                checked(r).is_some() && checked(r) != before
            })
            .await
            .unwrap();
    }
    let corrected = release.status.unwrap().drift_corrections.unwrap_or(0);
    assert_eq!(corrected, 0, "filled-in defaults were reported as drift");
    assert!(
        !stack.logs().contains("had drifted"),
        "drift logged:\n{}",
        stack.logs()
    );
}
