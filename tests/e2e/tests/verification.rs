//! Continuous verification on the real control plane: a test with `every` runs again against
//! the deployed release. When the app breaks outside any release (its ConfigMap edited by
//! hand), the run fails, the release's `Verified` condition says so, and the
//! ShipVerificationFailing alert fires in a real Prometheus scraping shipd; with
//! `onFailure: rollback` the release rolls back, once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use ship_api::{Phase, ShipRelease, VERIFIED};
use ship_testkit::cluster::{eventually, repo_root};
use ship_testkit::prometheus::Prometheus;
use ship_testkit::stack::{Stack, configmap, environment_condition, release_name};

const SETTLE: Duration = Duration::from_secs(60);

/// ship.yaml: the stack's environments, and its `home` test verified every second.
fn ship_yaml(stack: &Stack, on_failure: &str) -> String {
    format!(
        "environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {ns}-prod}}\n\
         health: {{timeout: 30s}}\npromotion: {{enabled: false}}\n\
         tests:\n- name: home\n  http: {{url: '{url}', expect: {{bodyContains: healthy}}}}\n  \
         every: 1s\n{on_failure}",
        ns = stack.ns,
        url = stack.app_health_url(),
    )
}

/// The `Verified` condition's status and message.
fn verified(release: &ShipRelease) -> Option<(String, String)> {
    let c = release
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == VERIFIED)?;
    Some((c.status.clone(), c.message.clone()))
}

fn runs(release: &ShipRelease) -> usize {
    release
        .status
        .as_ref()
        .and_then(|s| s.verification.as_ref())
        .map_or(0, |v| v.runs.len())
}

async fn release_where(stack: &Stack, name: &str, done: impl Fn(&ShipRelease) -> bool) -> ShipRelease {
    stack.release_where(name, SETTLE, done).await.unwrap()
}

/// Edits the app's ConfigMap by hand, as a person would, outside any release.
async fn edit_app_by_hand(stack: &Stack, body: &str) {
    let configmaps: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let patch = serde_json::json!({"data": {"body": body}});
    configmaps
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn app_body(stack: &Stack) -> String {
    let configmaps: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let web = configmaps.get("web").await.unwrap();
    web.data
        .unwrap_or_default()
        .get("body")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the local control plane and prometheus: tests/run.sh"]
async fn a_verified_test_fails_when_the_app_breaks_outside_a_release_and_the_alert_fires() {
    let mut stack = Stack::new("verify", "{enabled: false}").await.unwrap();
    stack
        .remote
        .commit_files(&[("ship.yaml", &ship_yaml(&stack, ""))], "verify home")
        .unwrap();
    // No drift correction during the test (neither by interval nor by watch): it would put
    // the hand edit back.
    let good = stack
        .deploy_first(&["--drift-interval", "1h", "--drift-watch=false"])
        .await
        .unwrap();
    let name = release_name("main", &good);
    let passing = release_where(&stack, &name, |r| {
        runs(r) >= 2 && verified(r).is_some_and(|(status, _)| status == "True")
    })
    .await;
    assert_eq!(passing.status.as_ref().unwrap().phase, Some(Phase::Succeeded));

    let rules = repo_root().join("charts/ship/files/ship.rules.yaml");
    let shipd = stack.shipd.as_ref().unwrap().probe_addr;
    let prometheus = Prometheus::start(shipd, "ship", &[rules.as_path()]).unwrap();

    edit_app_by_hand(&stack, "broken by hand").await;
    let failing = release_where(&stack, &name, |r| {
        verified(r).is_some_and(|(status, _)| status == "False")
    })
    .await;
    let (_, message) = verified(&failing).unwrap();
    assert!(message.contains("test home failed"), "{message}");
    let status = failing.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "report only: no rollback");
    let last = status.verification.as_ref().unwrap().runs.last().unwrap();
    assert!(
        last.results[0].message.contains("broken by hand"),
        "the run kept what the app answered: {last:?}"
    );
    // The environment shows it, and so does kubectl ship status.
    stack
        .environment_where("main", SETTLE, |e| {
            environment_condition(e, VERIFIED).is_some_and(|(status, _)| status == "False")
        })
        .await
        .unwrap();
    let shown = stack.kubectl_ship(&["status"]).await.unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("main: verification failing: test home failed"),
        "{shown}"
    );
    assert_eq!(
        stack
            .release_names(|r| r.spec.environment == "main")
            .await
            .unwrap(),
        std::slice::from_ref(&name),
        "no release was made"
    );
    stack
        .event_where("VerificationFailed", SETTLE, |note| {
            note.contains("test home failed")
        })
        .await
        .unwrap();

    let firing = eventually("ShipVerificationFailing fires", SETTLE, || async {
        Ok(prometheus
            .alerts()
            .await?
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "ShipVerificationFailing" && a["state"] == "firing"))
    })
    .await;
    let firing = match firing {
        Ok(alert) => alert,
        Err(err) => panic!("{err:#}\nprometheus log:\n{}", prometheus.log()),
    };
    assert_eq!(firing["labels"]["environment"], "main");
    assert_eq!(firing["labels"]["test"], "home");
    assert_eq!(firing["labels"]["release"], name.as_str());

    // Put right by hand: the next run passes and the alert ends.
    edit_app_by_hand(&stack, "healthy again").await;
    release_where(&stack, &name, |r| {
        verified(r).is_some_and(|(status, _)| status == "True")
    })
    .await;
    eventually("ShipVerificationFailing ends", SETTLE, || async {
        let still = prometheus
            .alerts()
            .await?
            .into_iter()
            .any(|a| a["labels"]["alertname"] == "ShipVerificationFailing");
        Ok((!still).then_some(()))
    })
    .await
    .unwrap();
    // A SIGKILL, and the app breaks while shipd is down: the next shipd verifies the deployed
    // release again on its own (nothing but the persisted status tells it when).
    stack.kill_shipd().unwrap();
    edit_app_by_hand(&stack, "broken while shipd was down").await;
    stack
        .start_shipd(&["--drift-interval", "1h", "--drift-watch=false"])
        .unwrap();
    let after_restart = release_where(&stack, &name, |r| {
        verified(r).is_some_and(|(status, message)| {
            status == "False" && message.contains("broken while shipd was down")
        })
    })
    .await;
    assert_eq!(
        after_restart.status.as_ref().unwrap().phase,
        Some(Phase::Succeeded)
    );
    let kept = stack.releases().get(&name).await.unwrap();
    assert!(
        runs(&kept) <= ship_api::VERIFICATION_RUNS_KEPT,
        "runs are bounded: {}",
        runs(&kept)
    );
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn on_failure_rollback_rolls_back_once_and_the_release_rolled_back_to_holds() {
    let mut stack = Stack::new("verify-rollback", "{enabled: false}").await.unwrap();
    stack
        .remote
        .commit_files(
            &[("ship.yaml", &ship_yaml(&stack, "  onFailure: rollback\n"))],
            "verify home, roll back on failure",
        )
        .unwrap();
    let first = stack
        .deploy_first(&["--drift-interval", "1h", "--drift-watch=false"])
        .await
        .unwrap();
    let second = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("healthy main 2"))],
            "second",
        )
        .unwrap();
    let name = release_name("main", &second);
    release_where(&stack, &name, |r| {
        verified(r).is_some_and(|(status, _)| status == "True")
    })
    .await;

    edit_app_by_hand(&stack, "broken by hand").await;
    let rolled_back = stack.settled(&name, Phase::RolledBack, SETTLE).await.unwrap();
    let status = rolled_back.status.as_ref().unwrap();
    let failed = status
        .transitions
        .iter()
        .find(|t| t.phase == Phase::Failed)
        .expect("it failed before rolling back");
    assert!(
        failed
            .message
            .contains("failed continuous verification (home; onFailure: rollback)"),
        "{failed:?}"
    );
    assert_eq!(
        status.rolled_back_to.as_deref(),
        Some(release_name("main", &first).as_str())
    );
    let (verdict, _) = verified(&rolled_back).unwrap();
    assert_eq!(verdict, "False", "the failing run stays on record");
    // The rollback applied the first commit's ConfigMap again: the app is healthy.
    assert_eq!(app_body(&stack).await, "healthy main");

    // Broken again: nothing verifies the rolled-back state, so nothing rolls back further.
    // Observed as every ShipRelease event of a window of five 1 s verification cadences.
    edit_app_by_hand(&stack, "broken by hand again").await;
    let window = ship_testkit::quiet::watch_for(stack.releases(), Duration::from_secs(5))
        .await
        .unwrap();
    window.assert_none_created("no further release");
    for state in window.states_of(&name) {
        assert_eq!(
            state.phase(),
            Some(Phase::RolledBack),
            "within {:?}",
            window.watched
        );
    }
    let names = stack
        .release_names(|r| r.spec.environment == "main")
        .await
        .unwrap();
    let mut expected = vec![release_name("main", &first), name.clone()];
    expected.sort();
    assert_eq!(names, expected, "no further release");
    let after = stack.releases().get(&name).await.unwrap();
    assert_eq!(after.status.as_ref().unwrap().phase, Some(Phase::RolledBack));
    let good = stack.releases().get(&release_name("main", &first)).await.unwrap();
    assert_eq!(
        good.status.as_ref().unwrap().phase,
        Some(Phase::Succeeded),
        "the release rolled back to is not failed by a verification"
    );
    assert_eq!(
        runs(&after),
        runs(&rolled_back),
        "no verification after the rollback"
    );
}
