//! Drift seen as it happens, on the real apiserver: with `--drift-interval 10m` (so only the
//! watch can explain a quick correction), a `kubectl patch` of a field the manifest sets and a
//! `kubectl delete` are put back within seconds; a label someone adds that the manifest does
//! not set is left alone and counted as nothing; and a release that changes one object of
//! many writes that one (the others keep the release that last wrote them).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use ship_api::{Phase, keys};
use ship_testkit::cluster::eventually;
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);
/// Far longer than a watch needs, far shorter than the drift interval.
const SEEN: Duration = Duration::from_secs(20);

fn kubectl_ok(stack: &Stack, args: &[&str]) {
    let out = stack.cluster.kubectl(args).unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn body(configmaps: &Api<ConfigMap>, name: &str) -> Option<String> {
    configmaps
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data.unwrap_or_default().get("body").cloned())
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_hand_edit_and_a_deletion_are_put_back_within_seconds_and_other_fields_are_left() {
    let mut stack = Stack::new("drift", "{enabled: false}").await.unwrap();
    let notes: String = (0..20)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: note-{i}}}\ndata: {{body: \"note {i}\"}}\n"))
        .collect();
    stack
        .remote
        .commit_files(&[("deploy/main/notes.yaml", &notes)], "twenty notes")
        .unwrap();
    let first = stack.deploy_first(&["--drift-interval", "10m"]).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let ns = stack.ns.clone();

    // A field the manifest sets, changed by kubectl: put back by the watch, not the interval.
    let edited = Instant::now();
    kubectl_ok(
        &stack,
        &[
            "-n",
            &ns,
            "patch",
            "configmap",
            "web",
            "--type=merge",
            "-p",
            r#"{"data":{"body":"edited by hand"}}"#,
        ],
    );
    eventually("the edit is put back", SEEN, || async {
        Ok((body(&configmaps, "web").await.as_deref() == Some("healthy main")).then_some(()))
    })
    .await
    .unwrap();
    let to_correction = edited.elapsed();
    println!(
        "drift: kubectl patch -> corrected in {} ms",
        to_correction.as_millis()
    );

    // A deletion: made again.
    let deleted = Instant::now();
    kubectl_ok(&stack, &["-n", &ns, "delete", "configmap", "note-3"]);
    eventually("the deleted object is made again", SEEN, || async {
        Ok((body(&configmaps, "note-3").await.as_deref() == Some("note 3")).then_some(()))
    })
    .await
    .unwrap();
    println!(
        "drift: kubectl delete -> made again in {} ms",
        deleted.elapsed().as_millis()
    );

    let release = release_name("main", &first);
    let corrections = || async {
        stack
            .releases()
            .get(&release)
            .await
            .unwrap()
            .status
            .and_then(|s| s.drift_corrections)
            .unwrap_or(0)
    };
    let counted = eventually("both corrections counted", SEEN, || async {
        let n = corrections().await;
        Ok((n >= 2).then_some(n))
    })
    .await
    .unwrap();

    // A label the manifest does not set: another writer's field, left alone, no correction.
    kubectl_ok(
        &stack,
        &["-n", &ns, "label", "configmap", "note-5", "team=checkout"],
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let note = configmaps.get("note-5").await.unwrap();
    assert_eq!(note.labels().get("team").map(String::as_str), Some("checkout"));
    assert_eq!(corrections().await, counted, "nothing drifted");

    // One object of 21 changes: only it is written; the others keep the release that last
    // wrote them.
    let change = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("healthy main, v2"))],
            "web v2",
        )
        .unwrap();
    stack
        .settled(&release_name("main", &change), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let all = configmaps.list(&Default::default()).await.unwrap().items;
    let written_by = |name: &str| {
        all.iter()
            .find(|c| c.name_any() == name)
            .and_then(|c| c.annotations().get(keys::COMMIT).cloned())
    };
    assert_eq!(written_by("web"), Some(change.clone()));
    for i in [0, 7, 19] {
        assert_eq!(
            written_by(&format!("note-{i}")),
            Some(first.clone()),
            "note-{i} unchanged"
        );
    }
    assert!(
        stack.logs().contains("\"unchanged\":20"),
        "the release says what it left"
    );
}

/// The Deployment the sample app's tests do not look at: `replicas` real pods.
fn deployment(replicas: u32, version: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: api}}\nspec:\n  replicas: {replicas}\n  \
         selector: {{matchLabels: {{app: api}}}}\n  template:\n    metadata:\n      labels: {{app: api}}\n      \
         annotations: {{version: \"{version}\"}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      \
         - {{name: api, image: ship.dev/demo-app:1, imagePullPolicy: Never}}\n"
    )
}

async fn replicas(stack: &Stack) -> Option<i32> {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(stack.cluster.client(), &stack.ns);
    deployments.get("api").await.ok()?.spec?.replicas
}

/// An autoscaler added to a commit takes `spec.replicas` over: Ship hands the field over
/// (its value stays 3, not the API server's default of 1), stops applying it, says so in the
/// release's status, and does not put it back when the count changes. A second tool that
/// applies a field by server-side apply keeps it: reported in the status, not fought.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn an_autoscaler_and_a_second_applier_keep_their_fields() {
    let mut stack = Stack::new("fieldsleft", "{enabled: false}").await.unwrap();
    let flags = |note: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: flags}}\ndata: {{note: \"{note}\", flag: \"off\"}}\n"
        )
    };
    stack
        .remote
        .commit_files(
            &[
                ("deploy/main/api.yaml", &deployment(3, "1")),
                ("deploy/main/flags.yaml", &flags("one")),
            ],
            "an api of three pods, and flags",
        )
        .unwrap();
    stack.deploy_first(&["--drift-interval", "10m"]).await.unwrap();
    assert_eq!(replicas(&stack).await, Some(3));

    // The autoscaler comes with a commit (autoscaling/v1: served by both 1.20 and 1.36); with
    // no metrics and 3 between its bounds, it leaves the count as it is.
    let hpa = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: api}\nspec:\n  \
               scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n  minReplicas: 1\n  maxReplicas: 5\n  \
               targetCPUUtilizationPercentage: 80\n";
    let with_hpa = stack
        .push_main(
            &[
                ("deploy/main/hpa.yaml", hpa),
                ("deploy/main/api.yaml", &deployment(3, "2")),
            ],
            "autoscale the api",
        )
        .unwrap();
    let release = stack
        .settled(&release_name("main", &with_hpa), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let left = release.status.clone().unwrap().fields_left;
    assert!(
        left.iter().any(|l| l.contains("Deployment/")
            && l.contains("spec.replicas")
            && l.contains("HorizontalPodAutoscaler api")),
        "{left:?}"
    );
    assert_eq!(
        replicas(&stack).await,
        Some(3),
        "handed over, not dropped to the default of 1"
    );

    // The count changes (as the autoscaler would, through the scale subresource): left alone.
    kubectl_ok(
        &stack,
        &[
            "-n",
            &stack.ns.clone(),
            "scale",
            "deployment",
            "api",
            "--replicas=2",
        ],
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(replicas(&stack).await, Some(2), "not put back");

    // A second tool applies `data.flag` by server-side apply (forced): kept, and reported by
    // the next release, which changes the same ConfigMap's other key.
    let dir = tempfile::tempdir().unwrap();
    let patch = dir.path().join("flag.yaml");
    std::fs::write(
        &patch,
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: flags, namespace: {}}}\ndata: {{flag: \"on\"}}\n", stack.ns),
    )
    .unwrap();
    kubectl_ok(
        &stack,
        &[
            "apply",
            "--server-side",
            "--field-manager=feature-flags",
            "--force-conflicts",
            "-f",
            patch.to_str().unwrap(),
        ],
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let flag = || async {
        configmaps
            .get("flags")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .get("flag")
            .cloned()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        flag().await.as_deref(),
        Some("on"),
        "not fought after the watch saw it"
    );
    let next = stack
        .push_main(&[("deploy/main/flags.yaml", &flags("two"))], "flags: a new note")
        .unwrap();
    let release = stack
        .settled(&release_name("main", &next), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let left = release.status.clone().unwrap().fields_left;
    assert!(
        left.iter()
            .any(|l| l.contains("ConfigMap/") && l.contains("data.flag") && l.contains("feature-flags")),
        "{left:?}"
    );
    let data = configmaps.get("flags").await.unwrap().data.unwrap_or_default();
    assert_eq!(
        data.get("note").map(String::as_str),
        Some("two"),
        "the rest is Ship's and written"
    );
    assert_eq!(
        data.get("flag").map(String::as_str),
        Some("on"),
        "the other applier's field stays"
    );
    assert_eq!(replicas(&stack).await, Some(2));
}
