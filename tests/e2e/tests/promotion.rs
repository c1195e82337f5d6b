//! The forced weekly promotion on the real apiserver and a real git daemon, with shipd's clock
//! set by `--test-clock`: on Tuesday 10:00 it fast-forwards production (a real `git push`) to the
//! newest main commit whose release Succeeded, skipping a red one; it refuses a diverged
//! production branch with a condition and an event; a missed schedule runs once on restart.
// A test reads the wall clock: it stands outside the engine it observes.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use ship_api::{Phase, PromotionOutcome, Reason};
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);
const WEEKLY: &str = "{schedule: '0 10 * * TUE', timeZone: UTC}";

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn last_schedule(p: &ship_api::ShipPromotion) -> Option<jiff::Timestamp> {
    p.status.as_ref()?.last_schedule_time.as_ref().map(|t| t.0)
}

async fn promotion_releases(stack: &Stack) -> Vec<String> {
    stack
        .release_names(|r| r.spec.reason == Reason::Promotion)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn tuesday_promotes_the_newest_green_main_commit_and_skips_a_red_one() {
    let mut stack = Stack::new("promote-green", WEEKLY).await.unwrap();
    // Monday: the promotion starts counting; main gets a green commit, then a red one.
    let green = stack
        .deploy_first(&["--test-clock", "2026-11-23T12:00:00Z"])
        .await
        .unwrap();
    let red = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("broken"))],
            "red: breaks the app",
        )
        .unwrap();
    stack
        .settled(&release_name("main", &red), Phase::RolledBack, SETTLE)
        .await
        .unwrap();
    let created = stack
        .promotion_where("production", SETTLE, |p| last_schedule(p).is_some())
        .await
        .unwrap();
    // A new promotion counts from shipd's clock at its first look: Monday, not last Tuesday.
    let counted_from = last_schedule(&created).unwrap();
    let monday = ts("2026-11-23T12:00:00Z");
    assert!(counted_from >= monday && counted_from < monday + jiff::SignedDuration::from_secs(120));
    assert!(
        promotion_releases(&stack).await.is_empty(),
        "nothing promoted before Tuesday"
    );

    // Tuesday, two seconds before ten.
    stack
        .start_shipd(&["--test-clock", "2026-11-24T09:59:58Z"])
        .unwrap();
    let promotion = stack
        .promotion_where("production", SETTLE, |p| {
            last_schedule(p) == Some(ts("2026-11-24T10:00:00Z"))
        })
        .await
        .unwrap();
    let run = promotion.status.as_ref().unwrap().last_run.clone().unwrap();
    assert_eq!(run.outcome, PromotionOutcome::Promoted, "{run:?}");
    assert_eq!(
        run.commit.as_deref(),
        Some(green.as_str()),
        "the red tip is skipped"
    );
    assert_eq!(run.requested_by, "schedule");

    let name = release_name("production", &green);
    assert_eq!(run.release.as_deref(), Some(name.as_str()));
    let release = stack.settled(&name, Phase::Succeeded, SETTLE).await.unwrap();
    assert_eq!(release.spec.reason, Reason::Promotion);
    let origin = release.spec.promotion.clone().unwrap();
    assert_eq!(origin.from_environment, "main");
    assert_eq!(origin.from_release, release_name("main", &green));
    assert_eq!(origin.requested_by, "schedule");
    assert_eq!(
        origin.scheduled_for.map(|t| t.0),
        Some(ts("2026-11-24T10:00:00Z"))
    );
    // A real push moved the branch, and production now runs the promoted commit.
    assert_eq!(stack.branch_tip("production").unwrap(), green);
    let web: ConfigMap = Api::namespaced(stack.cluster.client(), &format!("{}-prod", stack.ns))
        .get("web")
        .await
        .unwrap();
    assert_eq!(web.annotations().get(ship_api::keys::COMMIT), Some(&green));
    assert_eq!(promotion_releases(&stack).await, vec![name]);
    assert!(
        stack
            .releases()
            .get_opt(&release_name("production", &red))
            .await
            .unwrap()
            .is_none(),
        "the red commit never reaches production"
    );
    // The status says production is now one (red) commit behind.
    let promotion = stack
        .promotion_where("production", SETTLE, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.behind.as_ref())
                .is_some_and(|b| b.commits == 1)
        })
        .await
        .unwrap();
    let behind = promotion.status.unwrap().behind.unwrap();
    assert_eq!(behind.oldest_commit.as_deref(), Some(&red[..7]));
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_missed_schedule_runs_once_after_a_restart() {
    let mut stack = Stack::new("promote-missed", WEEKLY).await.unwrap();
    let first = stack
        .deploy_first(&["--test-clock", "2026-11-23T12:00:00Z"])
        .await
        .unwrap();
    stack
        .promotion_where("production", SETTLE, |p| last_schedule(p).is_some())
        .await
        .unwrap();
    // Down over three Tuesdays (Nov 24, Dec 1, Dec 8); back on Wednesday Dec 9.
    stack.kill_shipd().unwrap();
    stack
        .start_shipd(&["--test-clock", "2026-12-09T12:00:00Z"])
        .unwrap();
    let promotion = stack
        .promotion_where("production", SETTLE, |p| {
            last_schedule(p) == Some(ts("2026-12-08T10:00:00Z"))
        })
        .await
        .unwrap();
    let run = promotion.status.unwrap().last_run.unwrap();
    assert_eq!(run.outcome, PromotionOutcome::Promoted);
    assert_eq!(run.commit.as_deref(), Some(first.as_str()));
    stack
        .settled(&release_name("production", &first), Phase::Succeeded, SETTLE)
        .await
        .unwrap();

    // A newer green commit after the run, then a restart the same week: no second run.
    let second = stack
        .push_main(&[("deploy/main/web.yaml", &configmap("healthy v2"))], "v2")
        .unwrap();
    stack
        .settled(&release_name("main", &second), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    stack
        .start_shipd(&["--test-clock", "2026-12-09T12:05:00Z"])
        .unwrap();
    // Wait for a look after the restart (it counts the new commit as unreleased) ...
    stack
        .promotion_where("production", SETTLE, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.behind.as_ref())
                .is_some_and(|b| b.source_commit == second)
        })
        .await
        .unwrap();
    // ... which ran nothing: no release made in three looks (1 s interval), one promotion
    // for the missed schedule, and production unchanged.
    let window = ship_testkit::quiet::watch_for(stack.releases(), Duration::from_secs(3))
        .await
        .unwrap();
    window.assert_none_created("no release after the look");
    assert_eq!(
        promotion_releases(&stack).await,
        [release_name("production", &first)]
    );
    assert_eq!(stack.branch_tip("production").unwrap(), first);
    let promotion = stack.promotions().get("production").await.unwrap();
    assert_eq!(last_schedule(&promotion), Some(ts("2026-12-08T10:00:00Z")));
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_diverged_production_branch_is_refused_with_a_condition_and_an_event() {
    let mut stack = Stack::new("promote-diverged", WEEKLY).await.unwrap();
    stack.remote.push("main", false).unwrap();
    let green = stack.branch_tip("main").unwrap();
    // Someone commits straight to production.
    stack
        .remote
        .git(&["checkout", "-q", "-b", "hot", "HEAD~1"])
        .unwrap();
    let hotfix = stack
        .remote
        .commit_file("HOTFIX.md", "fix\n", "hotfix straight to production")
        .unwrap();
    stack.remote.push("production", false).unwrap();
    stack.remote.git(&["checkout", "-q", "main"]).unwrap();

    stack
        .start_shipd(&["--test-clock", "2026-11-24T09:59:50Z"])
        .unwrap();
    stack
        .settled(&release_name("main", &green), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let promotion = stack
        .promotion_where("production", SETTLE, |p| {
            last_schedule(p) == Some(ts("2026-11-24T10:00:00Z"))
        })
        .await
        .unwrap();
    let status = promotion.status.clone().unwrap();
    assert_eq!(
        status.last_run.as_ref().unwrap().outcome,
        PromotionOutcome::Diverged
    );
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "Diverged")
    );
    assert!(stalled.message.contains(&hotfix[..7]), "{}", stalled.message);
    assert!(stalled.message.contains("hotfix straight to production"));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");

    // Nothing forced: production is untouched and no promotion release exists.
    assert_eq!(stack.branch_tip("production").unwrap(), hotfix);
    assert!(promotion_releases(&stack).await.is_empty());
    let refused = stack
        .event_where("PromotionRefused", SETTLE, |_| true)
        .await
        .unwrap();
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    assert!(refused.message.unwrap_or_default().contains(&hotfix[..7]));

    // `kubectl wait` sees the condition, as kstatus tools would.
    let out = stack
        .cluster
        .kubectl(&[
            "wait",
            "-n",
            &stack.ns,
            "shippromotion/production",
            "--for=condition=Stalled",
            "--timeout=10s",
        ])
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// With `promotion.tag`, a promotion leaves an annotated tag on the promoted commit in the git
/// server, announced by a `Tagged` event; a second promotion of the same commit changes nothing.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_promotion_pushes_its_release_tag() {
    let mut stack = Stack::new(
        "promote-tag",
        "{schedule: '0 10 * * TUE', timeZone: UTC, tag: 'release-{date}-{short}'}",
    )
    .await
    .unwrap();
    let green = stack.deploy_first(&[]).await.unwrap();
    stack
        .promotion_where("production", SETTLE, |_| true)
        .await
        .unwrap();
    stack.request_promotion("now", "tag-test").await.unwrap();
    let name = release_name("production", &green);
    let release = stack.settled(&name, Phase::Succeeded, SETTLE).await.unwrap();
    assert_eq!(release.spec.reason, Reason::Promotion);
    let day = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let tag = format!("release-{day}-{}", &green[..7]);
    let listed = stack.remote.git(&["ls-remote", "--tags", "origin"]).unwrap();
    // Annotated: the tag object, and `^{}` peeled to the promoted commit.
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&green) && l.ends_with(&format!("refs/tags/{tag}^{{}}"))),
        "{tag} on {green}:\n{listed}"
    );
    stack
        .event_where("Tagged", SETTLE, |note| note.contains(&tag))
        .await
        .expect("a Tagged event names the tag");
    // Asked again: production already holds the commit, the tag is there; nothing moves.
    stack.request_promotion("again", "tag-test").await.unwrap();
    stack
        .promotion_where("production", SETTLE, |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.last_handled_requested_at.as_deref() == Some("again"))
        })
        .await
        .unwrap();
    assert_eq!(
        stack.remote.git(&["ls-remote", "--tags", "origin"]).unwrap(),
        listed
    );
}

/// With `promotion.refuseUndeclaredDifferences`, a promotion whose environments would differ in
/// a way ship.yaml does not declare is refused, with a Stalled condition and an event, and
/// nothing is pushed; once main declares the difference, the next request promotes.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn undeclared_differences_refuse_a_promotion_until_they_are_declared() {
    let mut stack = Stack::new(
        "promote-undeclared",
        "{schedule: '0 10 * * TUE', timeZone: UTC, refuseUndeclaredDifferences: true}",
    )
    .await
    .unwrap();
    let green = stack.deploy_first(&[]).await.unwrap();
    let production_before = stack.branch_tip("production").unwrap();
    stack
        .promotion_where("production", SETTLE, |_| true)
        .await
        .unwrap();
    stack.request_promotion("first", "ci").await.unwrap();
    let run = stack
        .promotion_ran("production", SETTLE, PromotionOutcome::UndeclaredDifferences)
        .await
        .unwrap();
    assert_eq!(run.commit.as_deref(), Some(green.as_str()));
    assert!(
        run.message
            .contains("1 undeclared difference(s) between main and production")
            && run
                .message
                .contains("ConfigMap/web data.body: \"healthy main\" -> \"healthy production\""),
        "{}",
        run.message
    );
    let refused = stack
        .event_where("PromotionRefused", SETTLE, |note| note.contains("undeclared"))
        .await
        .unwrap();
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    let promotion = stack
        .promotion_where("production", SETTLE, |p| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Stalled" && c.status == "True" && c.reason == "UndeclaredDifferences"
                })
            })
        })
        .await
        .unwrap();
    let ready = promotion
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(
        stack.branch_tip("production").unwrap(),
        production_before,
        "nothing pushed"
    );
    assert!(promotion_releases(&stack).await.is_empty());

    // main declares the difference: the next request promotes it, and the stall clears.
    let ship_yaml = std::fs::read_to_string(stack.remote.work.join("ship.yaml")).unwrap();
    let declared = format!(
        "{ship_yaml}differences:\n- {{kind: ConfigMap, name: web, path: data.body, reason: each greets as itself}}\n"
    );
    let declaring = stack
        .push_main(&[("ship.yaml", &declared)], "declare the greeting")
        .unwrap();
    stack
        .settled(&release_name("main", &declaring), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    stack.request_promotion("second", "ci").await.unwrap();
    let run = stack
        .promotion_ran("production", SETTLE, PromotionOutcome::Promoted)
        .await
        .unwrap();
    assert_eq!(run.commit.as_deref(), Some(declaring.as_str()));
    stack
        .settled(&release_name("production", &declaring), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(stack.branch_tip("production").unwrap(), declaring);
    let promotion = stack
        .promotion_where("production", SETTLE, |p| {
            p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Stalled" && c.status == "False")
            })
        })
        .await
        .unwrap();
    assert!(promotion.status.is_some());
}
