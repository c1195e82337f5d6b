//! Holds on the real apiserver and a real git daemon, driven through `kubectl ship` as a person
//! would: a hold stops a push and a Tuesday (shipd's `--test-clock`) from deploying, records
//! what it held back, and a resume deploys the newest tip and runs the promotion that came due;
//! `rollback --hold` rolls back and keeps the next push from undoing it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use ship_api::{Phase, PromotionOutcome, Reason, ShipEnvironment};
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);
const WEEKLY: &str = "{schedule: '0 10 * * TUE', timeZone: UTC}";

async fn kubectl_ship_ok(stack: &Stack, args: &[&str]) -> String {
    let out = stack.kubectl_ship(args).await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl ship {args:?}: {text}");
    text
}

/// Waits until the ShipEnvironment `name` satisfies `done` (the failure shows shipd's logs).
async fn environment_where(
    stack: &Stack,
    name: &str,
    done: impl Fn(&ShipEnvironment) -> bool,
) -> ShipEnvironment {
    stack.environment_where(name, SETTLE, done).await.unwrap()
}

fn deployed_name(e: &ShipEnvironment) -> Option<&str> {
    Some(e.status.as_ref()?.deployed.as_ref()?.name.as_str())
}

fn held_commits(e: &ShipEnvironment) -> Vec<String> {
    e.status
        .as_ref()
        .map(|s| s.held_commits.iter().map(|h| h.commit.clone()).collect())
        .unwrap_or_default()
}

fn condition(e: &ShipEnvironment, type_: &str) -> Option<(String, String)> {
    let c = e.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.message.clone()))
}

async fn releases_of(stack: &Stack, environment: &str) -> Vec<String> {
    stack
        .release_names(|r| r.spec.environment == environment)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_hold_stops_a_push_and_a_tuesday_and_resume_deploys_the_newest_tip() {
    let mut stack = Stack::new("hold", WEEKLY).await.unwrap();
    // Monday: main runs its first commit; the promotion starts counting.
    let green = stack
        .deploy_first(&["--test-clock", "2026-11-23T12:00:00Z"])
        .await
        .unwrap();
    stack
        .promotion_where("production", SETTLE, |p| {
            p.status.as_ref().is_some_and(|s| s.last_schedule_time.is_some())
        })
        .await
        .unwrap();
    environment_where(&stack, "production", |_| true).await;
    let production_before = stack.branch_tip("production").unwrap();

    kubectl_ship_ok(
        &stack,
        &["hold", "main", "--reason", "incident 42: checkout errors"],
    )
    .await;
    kubectl_ship_ok(&stack, &["hold", "production", "--reason", "incident 42"]).await;

    // Two pushes while main is held: neither makes a release; both are recorded.
    let second = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("healthy main 2"))],
            "second",
        )
        .unwrap();
    let third = stack
        .push_main(&[("deploy/main/web.yaml", &configmap("healthy main 3"))], "third")
        .unwrap();
    let main = environment_where(&stack, "main", |e| held_commits(e).contains(&third)).await;
    let (held, message) = condition(&main, "Held").unwrap();
    assert_eq!(held, "True");
    assert!(message.contains("incident 42: checkout errors"), "{message}");
    assert_eq!(condition(&main, "InSync").unwrap().0, "False");
    assert_eq!(
        releases_of(&stack, "main").await,
        vec![release_name("main", &green)]
    );

    // Tuesday 10:00 passes while production is held: the run is recorded Held, nothing pushed.
    stack
        .start_shipd(&["--test-clock", "2026-11-24T09:59:58Z"])
        .unwrap();
    let run = stack
        .promotion_ran("production", SETTLE, PromotionOutcome::Held)
        .await
        .unwrap();
    assert_eq!(run.commit.as_deref(), Some(green.as_str()), "{run:?}");
    assert!(run.message.contains("incident 42"), "{}", run.message);
    assert_eq!(stack.branch_tip("production").unwrap(), production_before);
    assert!(
        releases_of(&stack, "production")
            .await
            .iter()
            .all(|n| !n.starts_with(&release_name("production", &green)))
    );
    // After the restart, the held tips are still held (the hold lives on the object).
    assert_eq!(
        releases_of(&stack, "main").await,
        vec![release_name("main", &green)]
    );

    let status = kubectl_ship_ok(&stack, &["status"]).await;
    assert!(status.contains("held"), "{status}");
    assert!(
        status.contains(&third[..7]),
        "the held tips are listed:\n{status}"
    );

    // Resume main: the newest tip deploys, the one in between never does.
    kubectl_ship_ok(&stack, &["resume", "main"]).await;
    stack
        .settled(&release_name("main", &third), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert!(
        stack
            .releases()
            .get_opt(&release_name("main", &second))
            .await
            .unwrap()
            .is_none(),
        "only the newest tip deploys on resume"
    );
    let main = environment_where(&stack, "main", |e| {
        condition(e, "InSync").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert!(held_commits(&main).is_empty());
    assert_eq!(condition(&main, "Held").unwrap().0, "False");

    // Resume production: the promotion that came due while held runs now.
    kubectl_ship_ok(&stack, &["resume", "production"]).await;
    let run = stack
        .promotion_ran("production", SETTLE, PromotionOutcome::Promoted)
        .await
        .unwrap();
    let promoted = stack
        .settled(run.release.as_deref().unwrap(), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(promoted.spec.reason, Reason::Promotion);
    assert_eq!(stack.branch_tip("production").unwrap(), promoted.spec.commit);
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn rollback_hold_rolls_back_and_the_next_push_waits() {
    let mut stack = Stack::new("rollback-hold", WEEKLY).await.unwrap();
    let first = stack.deploy_first(&[]).await.unwrap();
    let second = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("healthy main 2"))],
            "second",
        )
        .unwrap();
    stack
        .settled(&release_name("main", &second), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    environment_where(&stack, "main", |_| true).await;

    let said = kubectl_ship_ok(
        &stack,
        &["rollback", "main", "--hold", "--wait", "--timeout", "60s"],
    )
    .await;
    assert!(said.contains("held by"), "{said}");
    let rollbacks = stack
        .release_names(|r| r.spec.reason == Reason::Rollback)
        .await
        .unwrap();
    let [rollback] = rollbacks.as_slice() else {
        panic!("one rollback release: {rollbacks:?}")
    };
    // No wait for the environment to record the rollback: the push follows at once, the way
    // a person would push the fix.
    let main = environment_where(&stack, "main", |_| true).await;
    let hold = main.spec.hold.clone().expect("rollback --hold holds");
    assert!(
        hold.reason.contains(&second[..7]),
        "the default reason names the commit: {hold:?}"
    );

    // A push after the rollback does not undo it.
    let third = stack
        .push_main(&[("deploy/main/web.yaml", &configmap("healthy main 3"))], "third")
        .unwrap();
    // The status that first records the held tip already records the rollback as running:
    // the keeper reads releases no older than the tip it reports (it once wrote this status
    // from a watch store that had not yet read the rollback's events).
    let held = environment_where(&stack, "main", |e| held_commits(e).contains(&third)).await;
    assert_eq!(
        deployed_name(&held),
        Some(rollback.as_str()),
        "the held tip's status names what runs: {:?}",
        held.status
    );
    assert_eq!(
        held.status
            .as_ref()
            .and_then(|s| s.deployed.as_ref())
            .map(|d| d.commit.as_str()),
        Some(first.as_str()),
        "the rollback runs the first commit again"
    );
    assert!(
        stack
            .releases()
            .get_opt(&release_name("main", &third))
            .await
            .unwrap()
            .is_none()
    );

    kubectl_ship_ok(&stack, &["resume", "main"]).await;
    stack
        .settled(&release_name("main", &third), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
}

/// `hold --freeze` pauses drift correction (issue 32): a change made by hand during an incident
/// stays while the hold lasts, the running release and the environment say so, and `resume`
/// checks everything at once, putting the change back.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_frozen_hold_keeps_a_change_by_hand_until_resume_puts_it_back() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let mut stack = Stack::new("freeze", "{enabled: false}").await.unwrap();
    let good = stack.deploy_first(&["--drift-interval", "1s"]).await.unwrap();
    let running = release_name("main", &good);
    let configmaps: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let body = || async {
        configmaps
            .get("web")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .get("body")
            .cloned()
    };
    let edit_by_hand = || async {
        let patch = serde_json::json!({"data": {"body": "fixed by hand"}});
        configmaps
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    };
    let corrected = |what: &'static str| async move {
        ship_testkit::cluster::eventually(what, SETTLE, || async {
            Ok(body().await.filter(|b| b == "healthy main"))
        })
        .await
        .unwrap()
    };
    // Without a freeze, drift correction puts a change by hand back within seconds.
    edit_by_hand().await;
    corrected("drift corrected").await;

    let said = kubectl_ship_ok(&stack, &["hold", "main", "--reason", "incident 7", "--freeze"]).await;
    assert!(said.contains("frozen"), "{said}");
    stack
        .release_where(&running, SETTLE, |r| {
            r.status.as_ref().is_some_and(|s| s.drift_paused)
        })
        .await
        .unwrap();
    let environment = environment_where(&stack, "main", |e| {
        condition(e, "InSync").is_some() && e.spec.hold.as_ref().is_some_and(|h| h.freeze)
    })
    .await;
    let described = environment.spec.hold.as_ref().unwrap().describe();
    assert!(described.contains("drift correction paused"), "{described}");
    edit_by_hand().await;
    // Watched for 5 s (five drift intervals): the change by hand stays.
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            body().await.as_deref(),
            Some("fixed by hand"),
            "a frozen hold keeps it"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    kubectl_ship_ok(&stack, &["resume", "main"]).await;
    corrected("resume checks everything at once").await;
    stack
        .release_where(&running, SETTLE, |r| {
            r.status.as_ref().is_some_and(|s| !s.drift_paused)
        })
        .await
        .unwrap();
}
