//! Foundation: the CRD on a real apiserver, `shipd` connecting, probing, admitting releases,
//! reporting bad ones, and stopping on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use ship_api::{Phase, Reason, ShipRelease, ShipReleaseSpec};
use ship_testkit::cluster::{TestCluster, eventually};
use ship_testkit::process::Shipd;
use ship_testkit::stack::at_rest_in;

const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

async fn setup(prefix: &str) -> (TestCluster, String, Shipd) {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace(prefix).await.unwrap();
    let shipd = Shipd::start(cluster.kubeconfig(), &["--namespace", &ns]).unwrap();
    eventually("shipd /readyz", Duration::from_secs(30), || async {
        Ok(shipd.probe("/readyz").await.ok().filter(|(code, _)| *code == 200))
    })
    .await
    .unwrap_or_else(|e| panic!("shipd logs:\n{}\n{e}", shipd.logs()));
    (cluster, ns, shipd)
}

fn release(name: &str, reason: Reason, rollback_of: Option<&str>) -> ShipRelease {
    ShipRelease::new(
        name,
        ShipReleaseSpec {
            environment: "main".into(),
            commit: COMMIT.into(),
            branch: "main".into(),
            reason,
            rollback_of: rollback_of.map(str::to_owned),
            promotion: None,
        },
    )
}

async fn wait_phase(api: &Api<ShipRelease>, name: &str, phase: Phase) -> ShipRelease {
    eventually(
        &format!("{name} in phase {phase}"),
        Duration::from_secs(20),
        || async {
            let r = api.get(name).await?;
            Ok(at_rest_in(&r, phase).then_some(r))
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn kubectl_get_shows_columns_of_an_admitted_release() {
    let (cluster, ns, shipd) = setup("found-cols").await;
    let (code, body) = shipd.probe("/healthz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));

    let api: Api<ShipRelease> = Api::namespaced(cluster.client(), &ns);
    api.create(
        &PostParams::default(),
        &release("main-4b825dc", Reason::Push, None),
    )
    .await
    .unwrap();
    let admitted = wait_phase(&api, "main-4b825dc", Phase::Pending).await;
    let status = admitted.status.unwrap();
    assert_eq!(status.observed_generation, admitted.metadata.generation);
    assert_eq!(status.transitions.len(), 1);
    let reconciling = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling")
        .unwrap();
    assert_eq!(reconciling.status, "True");

    let out = cluster.kubectl(&["get", "shipreleases", "-n", &ns]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ENV", "COMMIT", "PHASE", "TESTS", "AGE", "MESSAGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["main-4b825dc", "main", "4b825dc", "Pending"]);
    assert!(text.contains("accepted"), "{text}");

    // The short name and the wide columns work too.
    let wide = cluster
        .kubectl(&["get", "srel", "-n", &ns, "-o", "wide"])
        .unwrap();
    let wide = String::from_utf8(wide.stdout).unwrap();
    assert!(wide.lines().next().unwrap().contains("REASON"), "{wide}");
    assert!(wide.contains("Push"), "{wide}");
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn invalid_release_gets_a_clear_error_in_status_and_events() {
    let (cluster, ns, _shipd) = setup("found-bad").await;
    let api: Api<ShipRelease> = Api::namespaced(cluster.client(), &ns);
    // Passes the schema, breaks a cross-field rule only the controller can check on 1.20.
    api.create(
        &PostParams::default(),
        &release("bad", Reason::Manual, Some("main-1")),
    )
    .await
    .unwrap();
    let failed = wait_phase(&api, "bad", Phase::Failed).await;
    let status = failed.status.unwrap();
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("rollbackOf"),
        "{status:?}"
    );
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "InvalidSpec")
    );
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");

    let events: Api<Event> = Api::namespaced(cluster.client(), &ns);
    let event = eventually("InvalidSpec event", Duration::from_secs(10), || async {
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InvalidSpec")))
    })
    .await
    .unwrap();
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.regarding.unwrap().name.as_deref(), Some("bad"));
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn schema_rejects_a_short_commit() {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("found-schema").await.unwrap();
    let mut bad = release("short", Reason::Push, None);
    bad.spec.commit = "4b825dc".into();
    let api: Api<ShipRelease> = Api::namespaced(cluster.client(), &ns);
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("spec.commit"), "{text}");
    assert!(api.get_opt("short").await.unwrap().is_none());
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn sigterm_stops_shipd_cleanly() {
    let (_cluster, _ns, mut shipd) = setup("found-term").await;
    shipd.signal("TERM").unwrap();
    let status = shipd
        .wait_exit(Duration::from_secs(15))
        .unwrap()
        .expect("shipd exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        shipd.logs()
    );
    assert!(shipd.logs().contains("shutdown requested"));
}
