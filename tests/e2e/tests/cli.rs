//! `kubectl ship` as people run it: the built `kubectl-ship` on PATH, invoked through the real
//! `kubectl` (plugin discovery), against the real apiserver, a real git daemon and shipd.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use ship_api::{Phase, Reason, keys};
use ship_testkit::stack::{Stack, configmap, environment_condition, release_name};

const SETTLE: Duration = Duration::from_secs(60);

/// Runs `kubectl ship ARGS -n NS` with the workspace's plugin first on PATH. Asynchronously:
/// the app stand-in answering the release's tests runs on this test's runtime.
async fn kubectl_ship(stack: &Stack, args: &[&str]) -> Output {
    stack.kubectl_ship(args).await.unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn deployed_in_production(stack: &Stack) -> String {
    let web: ConfigMap = Api::namespaced(stack.cluster.client(), &format!("{}-prod", stack.ns))
        .get("web")
        .await
        .unwrap();
    web.annotations().get(keys::COMMIT).cloned().unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn kubectl_ship_status_promote_rollback_history_logs_and_diff() {
    let mut stack = Stack::new("cli", "{schedule: '0 10 * * TUE'}").await.unwrap();
    // Monday: no scheduled promotion gets in the way.
    let v1 = stack
        .deploy_first(&["--test-clock", "2026-11-23T12:00:00Z"])
        .await
        .unwrap();
    stack
        .promotion_where("production", SETTLE, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.behind.as_ref())
                .is_some_and(|b| b.commits == 1)
        })
        .await
        .unwrap();

    // The environments' own objects have caught up: main runs its tip; production's tip
    // (the repository's first commit, with no ship.yaml) failed there.
    let reason_is = |reason: &'static str| {
        move |e: &ship_api::ShipEnvironment| {
            environment_condition(e, ship_api::environment::IN_SYNC).is_some_and(|(_, r)| r == reason)
        }
    };
    stack
        .environment_where("main", SETTLE, reason_is("Synced"))
        .await
        .unwrap();
    stack
        .environment_where("production", SETTLE, reason_is("TipFailed"))
        .await
        .unwrap();

    // status: main deployed at v1 and in sync, production one commit behind.
    let out = kubectl_ship(&stack, &["status"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let status = stdout(&out);
    println!("kubectl ship status:\n{status}");
    assert!(status.lines().all(|l| l.chars().count() <= 80), "{status}");
    let main_row = status
        .lines()
        .find(|l| l.starts_with("main "))
        .unwrap_or_default();
    assert!(
        main_row.contains(&v1[..7])
            && main_row.contains("Succeeded")
            && main_row.contains(" yes ")
            && main_row.contains("sample app"),
        "{status}"
    );
    assert!(
        status.contains("production: the tip of production (") && status.contains(") failed here"),
        "{status}"
    );
    assert!(status.contains("production is 1 commit behind main"), "{status}");
    assert!(
        status.contains("next promotion: Tue Nov 24 10:00 UTC"),
        "{status}"
    );
    assert!(
        !status.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );

    // kubectl's own completion asks kubectl_complete-ship (kubectl's plugin convention), which
    // names the environments and releases from the cluster, and the subcommands and flags.
    let complete = |words: &[&str]| {
        let plugin_dir = ship_testkit::cluster::workspace_bin("kubectl-ship")
            .parent()
            .unwrap()
            .to_owned();
        let out = std::process::Command::new("kubectl")
            .arg("__complete")
            .arg("ship")
            .args(words)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    plugin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("KUBECONFIG", stack.cluster.kubeconfig())
            .env("SHIP_NAMESPACE", &stack.ns)
            .output()
            .unwrap();
        stdout(&out)
    };
    let environments = complete(&["history", ""]);
    assert!(
        environments.lines().any(|l| l == "main") && environments.lines().any(|l| l == "production"),
        "{environments}"
    );
    assert!(environments.trim_end().ends_with(":4"), "{environments}");
    let releases = complete(&["logs", "main-"]);
    assert!(
        releases.lines().any(|l| l == release_name("main", &v1)),
        "{releases}"
    );
    let subcommands = complete(&["pro"]);
    assert!(subcommands.lines().any(|l| l == "promote"), "{subcommands}");
    assert!(!subcommands.contains("__complete"), "{subcommands}");

    // promote --wait: production is fast-forwarded and deployed; exit 0.
    let out = kubectl_ship(&stack, &["promote", "--wait"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("Succeeded"), "{}", text(&out));
    let promoted = stack
        .releases()
        .get(&release_name("production", &v1))
        .await
        .unwrap();
    assert_eq!(promoted.spec.reason, Reason::Promotion);
    let origin = promoted.spec.promotion.unwrap();
    assert_ne!(origin.requested_by, "schedule");
    assert_eq!(origin.scheduled_for, None);
    assert_eq!(stack.branch_tip("production").unwrap(), v1);
    assert_eq!(deployed_in_production(&stack).await, v1);

    // Promoting again has nothing to do, and says so with exit 0.
    let out = kubectl_ship(&stack, &["promote", "--wait"]).await;
    assert!(out.status.success(), "{}", text(&out));
    // ("already holds" once the mirror has fetched the push; "already promoted" before that.)
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already"),
        "{}",
        text(&out)
    );

    // v2 on main, promoted too; then production rolls back to v1.
    let v2 = stack
        .push_main(
            &[("deploy/production/web.yaml", &configmap("healthy production v2"))],
            "v2 of production's page",
        )
        .unwrap();
    stack
        .settled(&release_name("main", &v2), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let out = kubectl_ship(&stack, &["promote", "--wait"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(deployed_in_production(&stack).await, v2);

    let out = kubectl_ship(&stack, &["rollback", "production", "--wait"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let followed = stdout(&out);
    assert!(
        followed.contains("Applying") && followed.contains("Succeeded"),
        "{followed}"
    );
    assert_eq!(deployed_in_production(&stack).await, v1);

    // history -o json: newest first, the rollback on top.
    let out = kubectl_ship(&stack, &["history", "production", "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary: Vec<(String, String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_owned(),
                r["commit"].as_str().unwrap()[..7].to_owned(),
                r["phase"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |a: &str, c: &str, p: &str| (a.to_owned(), c[..7].to_owned(), p.to_owned());
    // (Last, the repository's first commit: production's tip before any ship.yaml, which fails.)
    let first = stack.remote.git(&["rev-parse", &format!("{v1}~1")]).unwrap();
    assert_eq!(
        summary,
        [
            s("Rollback", &v1, "Succeeded"),
            s("Promotion", &v2, "Succeeded"),
            s("Promotion", &v1, "Succeeded"),
            s("Push", &first, "Failed"),
        ]
    );
    // The table fits 80 columns.
    let out = kubectl_ship(&stack, &["history", "production"]).await;
    assert!(
        stdout(&out).lines().all(|l| l.chars().count() <= 80),
        "{}",
        text(&out)
    );

    // Rollbacks that cannot be made: exit 1 with the reason.
    let out = kubectl_ship(&stack, &["rollback", "production", "--to", "0000000"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no release of production has a commit starting with")
    );
    let out = kubectl_ship(&stack, &["rollback", "staging"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no releases"),
        "{}",
        text(&out)
    );
    // A usage error is exit 2, as with kubectl.
    let out = kubectl_ship(&stack, &["rollback"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // logs: the kept test log of a release.
    let out = kubectl_ship(&stack, &["logs", &release_name("main", &v2)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).starts_with("== home (Passed"), "{}", text(&out));

    // diff: rendered from a local clone at the deployed commits (main v2, production v1).
    let clone = stack.remote.work.display().to_string();
    let out = kubectl_ship(
        &stack,
        &["diff", "main", "production", "--repo", &clone, "--hide-expected"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let diff = stdout(&out);
    assert!(
        diff.starts_with(&format!("--- main@{}\n+++ production@{}\n", &v2[..7], &v1[..7])),
        "{diff}"
    );
    assert!(
        diff.contains("-  body: healthy main\n+  body: healthy production\n"),
        "{diff}"
    );
    assert!(!diff.contains("namespace:"), "namespaces hidden: {diff}");
    let out = kubectl_ship(&stack, &["diff", "main", "production", "--repo", &clone]).await;
    assert!(
        stdout(&out).contains(&format!("+  namespace: {}-prod", stack.ns)),
        "{}",
        text(&out)
    );

    let out = kubectl_ship(&stack, &["status"]).await;
    println!("kubectl ship status, at the end:\n{}", stdout(&out));
    let out = kubectl_ship(&stack, &["history", "production", "-o", "wide"]).await;
    println!("kubectl ship history production -o wide:\n{}", stdout(&out));

    // status -o json: structured, with the deployed commits.
    let out = kubectl_ship(&stack, &["status", "-o", "json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deployed: Vec<(&str, &str)> = status["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["environment"].as_str().unwrap(),
                e["deployed"]["commit"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(deployed, [("main", v2.as_str()), ("production", v1.as_str())]);
}

/// `kubectl ship revert`: shipd pushes a `git revert` of a failed release's commit onto main
/// (authored by Ship, naming the release), the revert is released like any commit and main
/// runs the good content again; asked again, nothing more is pushed.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn kubectl_ship_revert_pushes_a_revert_that_is_released() {
    let mut stack = Stack::new("cli-revert", "{enabled: false}").await.unwrap();
    stack.deploy_first(&[]).await.unwrap();
    let web = || async {
        Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
            .get("web")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
    };
    let good_data = web().await;
    let bad = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("broken"))],
            "bad: breaks the page",
        )
        .unwrap();
    let bad_release = release_name("main", &bad);
    stack
        .settled(&bad_release, Phase::RolledBack, SETTLE)
        .await
        .unwrap();

    let out = kubectl_ship(&stack, &["revert", &bad_release]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("a revert of commit"), "{}", text(&out));
    let tip = stack.branch_tip("main").unwrap().trim().to_owned();
    assert_ne!(tip, bad, "main moved to the revert");
    let log = ship_testkit::git::git(&stack.remote.bare, &["log", "-1", "--format=%an%n%B", &tip]).unwrap();
    assert!(log.starts_with("Ship\nRevert \"bad: breaks the page\""), "{log}");
    assert!(log.contains(&format!("release {bad_release}")), "{log}");
    let parent = ship_testkit::git::git(&stack.remote.bare, &["rev-parse", &format!("{tip}~1")]).unwrap();
    assert_eq!(parent.trim(), bad, "on main's tip, never forced");

    stack
        .settled(&release_name("main", &tip), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(web().await, good_data, "main runs the good content again");
    let recorded = stack
        .releases()
        .get(&bad_release)
        .await
        .unwrap()
        .status
        .unwrap()
        .revert
        .unwrap();
    assert_eq!(recorded.outcome, "Pushed");
    assert_eq!(recorded.commit.as_deref(), Some(tip.as_str()));

    let again = kubectl_ship(&stack, &["revert", &bad_release]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(stdout(&again).contains("already undoes"), "{}", text(&again));
    assert_eq!(
        stack.branch_tip("main").unwrap().trim(),
        tip,
        "nothing more pushed"
    );
}
