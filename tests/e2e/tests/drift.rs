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
