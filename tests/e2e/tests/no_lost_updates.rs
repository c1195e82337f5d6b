//! No lost status updates: a status transition is a compare-and-set on the resourceVersion of
//! the view it was decided on, so a decision taken on a stale view (a cached copy that lags)
//! never overwrites a newer phase. Checked three ways on the real apiserver:
//! - directly: a write carrying an old resourceVersion is refused and changes nothing;
//! - as a team sees it: good then bad pushes, the bad one arriving at a random moment of the
//!   good one's release (each phase, and 0.1-2 s after it succeeded). Invariants, not examples:
//!   each bad push rolls back to the last release that really succeeded, a settled release
//!   never changes phase again, and the cluster runs the last good commit;
//! - with the cache made to lag on purpose (fault injection), the same invariants.
//!
//! CI runs seeds 1-3, 5 rounds each, and seed 7 with stale views. A longer run:
//! `SHIP_LOST_UPDATE_SEEDS=1-30 SHIP_LOST_UPDATE_ROUNDS=10 SHIP_TEST_FILTER='test(good_then_bad)' tests/run.sh`.
//! A failing seed prints the command that replays it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use ship_api::{Phase, Reason, ShipRelease, ShipReleaseSpec, ShipReleaseStatus, keys};
use ship_testkit::cluster::TestCluster;
use ship_testkit::seeded::{Seeded, parse_seeds};
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(90);
/// Seeds run at once (each has its own namespaces, repository and shipd).
const PARALLEL: usize = 3;

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_status_write_decided_on_a_stale_view_is_refused_and_changes_nothing() {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("cas").await.unwrap();
    let api: Api<ShipRelease> = Api::namespaced(cluster.client(), &ns);
    let spec = ShipReleaseSpec {
        environment: "main".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        branch: "main".into(),
        reason: Reason::Push,
        rollback_of: None,
        promotion: None,
    };
    let created = api
        .create(&PostParams::default(), &ShipRelease::new("main-0123456789", spec))
        .await
        .unwrap();
    let seen = created.resource_version();
    let status = |phase| ShipReleaseStatus {
        phase: Some(phase),
        message: Some(format!("now {phase}")),
        ..ShipReleaseStatus::default()
    };

    // Decided on the view `seen`: written, and the answer is the new resourceVersion.
    let written = ship_engine::status::apply_status(
        &api,
        "main-0123456789",
        &status(Phase::Succeeded),
        seen.as_deref(),
    )
    .await
    .unwrap();
    assert!(written.is_some() && written != seen, "{written:?} after {seen:?}");

    // A second decision taken on the same, now stale, view: refused as a stale view.
    let stale = ship_engine::status::apply_status(
        &api,
        "main-0123456789",
        &status(Phase::Superseded),
        seen.as_deref(),
    )
    .await
    .unwrap_err();
    assert!(ship_engine::status::is_stale_view(&stale), "{stale:?}");
    let now = api.get("main-0123456789").await.unwrap();
    assert_eq!(now.phase(), Some(Phase::Succeeded), "the settled phase stands");
    assert_eq!(now.resource_version(), written, "nothing was written");

    // Decided again on the fresh view: written.
    ship_engine::status::apply_status(
        &api,
        "main-0123456789",
        &status(Phase::Succeeded),
        written.as_deref(),
    )
    .await
    .unwrap();
}

/// A test Job that takes 2 s and passes.
const JOURNEY: &str = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: journey}\nspec:\n  backoffLimit: 0\n  \
template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      \
- name: journey\n        image: ship.dev/demo-app:1\n        imagePullPolicy: Never\n        \
command: [sh, -c, 'sleep 2; echo journey done']\n";

/// A Deployment of one real Pod whose template changes with `round`: each good release rolls
/// it out and waits for its readiness, so Progressing lasts long enough to push into.
fn paced_rollout(round: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: pace}}\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: pace}}}}\n  template:\n    metadata:\n      labels: {{app: pace}}\n      \
         annotations: {{ship.dev/round: '{round}'}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      \
         containers:\n      - {{name: app, image: 'ship.dev/demo-app:1', imagePullPolicy: Never,\n         \
         readinessProbe: {{httpGet: {{path: /health, port: 8080}}, periodSeconds: 1}}}}\n"
    )
}

/// The moments of the good release at which the bad push comes.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// As soon as the good release is in `phase` (or past it), plus a gap.
    InPhase(Phase),
    /// After the good release succeeded, plus a gap.
    Succeeded,
}

const MOMENTS: [Moment; 5] = [
    Moment::InPhase(Phase::Pending),
    Moment::InPhase(Phase::Applying),
    Moment::InPhase(Phase::Progressing),
    Moment::InPhase(Phase::Testing),
    Moment::Succeeded,
];

/// Order of the phases a good release walks through; a settled one is past them all.
fn rank(phase: Option<Phase>) -> usize {
    match phase {
        None => 0,
        Some(Phase::Pending) => 1,
        Some(Phase::Applying) => 2,
        Some(Phase::Progressing) => 3,
        Some(Phase::Testing) => 4,
        Some(_) => 5,
    }
}

/// Waits (polling every 10 ms, so the moment is caught closely) until release `name` reaches
/// `moment`, or settles.
async fn reach(api: &Api<ShipRelease>, name: &str, moment: Moment) -> anyhow::Result<Option<Phase>> {
    let wanted = match moment {
        Moment::InPhase(phase) => rank(Some(phase)),
        Moment::Succeeded => 5,
    };
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let phase = api.get_opt(name).await?.and_then(|r| r.phase());
        if rank(phase) >= wanted {
            return Ok(phase);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{name} did not reach {moment:?} (now {phase:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until release `name` is settled and no rollback is still to come.
async fn settled(api: &Api<ShipRelease>, name: &str) -> anyhow::Result<ShipRelease> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let Some(release) = api.get_opt(name).await?
            && release.is_settled()
        {
            return Ok(release);
        }
        ensure!(tokio::time::Instant::now() < deadline, "{name} did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No release left a settled phase (Succeeded, RolledBack, Superseded) once it had reached it.
fn settled_phases_stand(releases: &[ShipRelease]) -> anyhow::Result<()> {
    for release in releases {
        let phases: Vec<Phase> = release
            .status
            .iter()
            .flat_map(|s| &s.transitions)
            .map(|t| t.phase)
            .collect();
        if let Some(at) = phases
            .iter()
            .position(|p| matches!(p, Phase::Succeeded | Phase::RolledBack | Phase::Superseded))
        {
            ensure!(
                at + 1 == phases.len(),
                "{} left settled phase {} later: {phases:?}",
                release.name_any(),
                phases[at]
            );
        }
    }
    Ok(())
}

async fn one_seed(seed: u64, rounds: usize, stale_views: bool) -> anyhow::Result<String> {
    let mut rng = Seeded::new(seed);
    let prefix = if stale_views { "stale" } else { "lost" };
    let mut stack = Stack::new(&format!("{prefix}{seed}"), "{enabled: false}").await?;
    // Besides the app's `home` test, a user journey that takes 2 s: Testing lasts long enough
    // for a decision taken on a stale view of it to meet the next push. No bisection: a bad
    // push after a superseded good one brings two commits, and this test's oracle (the last
    // success is a pushed release's) does not count a bisection's test releases yet.
    let ship_yaml = format!(
        "environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {ns}-prod}}\n\
         health: {{timeout: 30s}}\npromotion: {{enabled: false}}\nbisect: {{enabled: false}}\n\
         tests:\n- name: home\n  http: {{url: '{url}', expect: {{bodyContains: healthy}}}}\n\
         - name: journey\n  job: tests/journey.yaml\n",
        ns = stack.ns,
        url = stack.app_health_url()
    );
    stack.remote.commit_files(
        &[("ship.yaml", &ship_yaml), ("tests/journey.yaml", JOURNEY)],
        "a 2 s journey",
    )?;
    // Tips are seen within 200 ms, so the bad push lands inside the phase it was aimed at.
    let mut flags = vec!["--poll-interval", "200ms"];
    if stale_views {
        flags.push("--test-stale-views");
    }
    let first = stack.deploy_first(&flags).await?;
    let api = stack.releases();
    let configmaps: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let mut last_good = (release_name("main", &first), first);
    let mut story = Vec::new();
    for round in 0..rounds {
        let good = stack.push_main(
            &[
                (
                    "deploy/main/web.yaml",
                    &configmap(&format!("healthy main {seed}.{round}")),
                ),
                (
                    "deploy/main/pace.yaml",
                    &paced_rollout(&format!("{seed}.{round}")),
                ),
            ],
            &format!("good {round}"),
        )?;
        let good_name = release_name("main", &good);
        let moment = *rng.pick(&MOMENTS);
        let gap = Duration::from_millis(100 + rng.below(1900) as u64);
        let seen = reach(&api, &good_name, moment).await?;
        tokio::time::sleep(gap).await;
        let (_, bad_name) = stack.push_broken_main(&format!("bad {round}"))?;
        let bad = settled(&api, &bad_name)
            .await
            .with_context(|| format!("round {round}: bad push after {moment:?} + {gap:?}"))?;
        let good_now = settled(&api, &good_name).await?;
        story.push(format!(
            "round {round}: bad push {gap:?} after {moment:?} (seen {seen:?}); good ended {:?}, bad {:?}",
            good_now.phase(),
            bad.phase()
        ));
        match good_now.phase() {
            Some(Phase::Succeeded) => last_good = (good_name.clone(), good.clone()),
            Some(Phase::Superseded) => {}
            other => bail!(
                "round {round}: the good release ended {other:?}\n{}",
                story.join("\n")
            ),
        }
        let rolled_back_to = bad.status.as_ref().and_then(|s| s.rolled_back_to.clone());
        ensure!(
            bad.phase() == Some(Phase::RolledBack) && rolled_back_to.as_deref() == Some(last_good.0.as_str()),
            "round {round}: the bad release must roll back to the last release that succeeded, {}; it is {:?}, \
             rolled back to {rolled_back_to:?}: {:?}\n{}",
            last_good.0,
            bad.phase(),
            bad.status.as_ref().and_then(|s| s.message.clone()),
            story.join("\n")
        );
        let running = configmaps
            .get("web")
            .await?
            .annotations()
            .get(keys::COMMIT)
            .cloned()
            .unwrap_or_default();
        ensure!(
            running == last_good.1,
            "round {round}: the cluster runs {running}, not the last good commit {}",
            last_good.1
        );
    }
    let all = api.list(&Default::default()).await?.items;
    settled_phases_stand(&all).with_context(|| story.join("\n"))?;
    stack.kill_shipd()?;
    Ok(story.join("\n"))
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn good_then_bad_pushes_at_every_moment_roll_back_to_the_last_success() {
    let seeds =
        parse_seeds(&std::env::var("SHIP_LOST_UPDATE_SEEDS").unwrap_or_else(|_| "1-3".into())).unwrap();
    let rounds: usize = std::env::var("SHIP_LOST_UPDATE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let results: Vec<(u64, anyhow::Result<String>)> = futures::stream::iter(seeds)
        .map(|seed| async move { (seed, one_seed(seed, rounds, false).await) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut failed = Vec::new();
    for (seed, result) in results {
        match result {
            Ok(story) => println!("seed {seed}:\n{story}"),
            Err(err) => failed.push(format!(
                "seed {seed} failed; replay: SHIP_LOST_UPDATE_SEEDS={seed} SHIP_LOST_UPDATE_ROUNDS={rounds} \
                 SHIP_TEST_FILTER='test(good_then_bad)' tests/run.sh\n{err:#}"
            )),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The same story with the cache made to lag on purpose (`--test-stale-views`, fault
/// injection): every reconcile is handed the release's previous version, so every decision is
/// first taken on a stale view. Compare-and-set refuses each such write and the decision is
/// taken again from the API server; the invariants must hold all the same. (Checked: with the
/// writes made unconditional again, this test fails.)
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn with_every_view_stale_a_bad_push_still_rolls_back_to_the_last_success() {
    let story = one_seed(7, 4, true).await.unwrap();
    println!("seed 7, stale views:\n{story}");
}
