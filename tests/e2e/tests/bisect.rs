//! Bisection on the real node: a push of 50 commits whose 37th breaks the app's test fails and
//! rolls back; Ship then deploys test releases of the range (reason `Bisect`), names the 37th
//! commit, restores the newest good one, and pushes a revert of the culprit (`bisect.revert`),
//! which is released like any commit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use kube::ResourceExt;
use kube::api::ListParams;
use ship_api::{Phase, Reason, ShipRelease, keys};
use ship_core::bisect::{self, Settings, Stage};
use ship_testkit::cluster::eventually;
use ship_testkit::receiver::Receiver;
use ship_testkit::stack::{Stack, environment_condition, release_name};

const SETTLE: Duration = Duration::from_secs(60);
/// Ten test releases with their rollbacks, on two cores.
const BISECTING: Duration = Duration::from_secs(420);

/// The test releases the machine asks for when `commits[culprit]` is the first bad commit and
/// every test tells the truth: the figure the real run must match.
fn model_steps(commits: &[String], culprit: usize, settings: Settings) -> usize {
    let now = jiff::Timestamp::UNIX_EPOCH;
    let (mut bisection, mut effects) = bisect::start("base", commits.to_vec(), now, settings).unwrap();
    while let Some(bisect::Effect::Deploy { commit, attempt }) = effects.first().cloned() {
        let index = commits.iter().position(|c| *c == commit).unwrap();
        let event = bisect::Event::Settled {
            commit,
            attempt,
            passed: index < culprit,
        };
        (bisection, effects) = bisect::step(&bisection, event, now, settings);
    }
    assert_eq!(bisection.culprit(), Some(commits[culprit].as_str()));
    bisection.steps()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn fifty_commits_the_37th_breaks_the_bisection_names_it_and_its_revert_lands() {
    let mut stack = Stack::new("bisect", "{enabled: false}").await.unwrap();
    stack.enable_bisect("{revert: true}").unwrap();
    // A forge (Gitea's API) and a chat, both the test's own receiver.
    let receiver = Receiver::start().await.unwrap();
    let r = receiver.url();
    stack
        .create_secret(
            "notify",
            serde_json::json!({"token": "t0ken", "chat": format!("{r}/slack/T0/B0/x")}),
        )
        .await
        .unwrap();
    let notifications = tempfile::tempdir().unwrap();
    let file = notifications.path().join("notifications.yaml");
    std::fs::write(
        &file,
        format!(
            "commitStatuses:\n  - {{name: forge, forge: gitea, apiUrl: '{r}/gitea', repository: acme/shop, environments: [main], tokenSecret: {{name: notify, key: token}}}}\n\
             webhooks:\n  - {{name: chat, format: slack, urlSecret: {{name: notify, key: chat}}, environments: [main]}}\n"
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let good = stack.deploy_first(&["--notifications", &file]).await.unwrap();

    let run = ship_testkit::bisect::push_range_and_bisect(&stack, 50, 37, BISECTING)
        .await
        .unwrap();
    let (commits, failed, bisection) = (run.commits, run.failed, run.bisection);
    let releases = stack.releases();
    assert_eq!(bisection.base, good);
    assert_eq!(bisection.commits, commits, "the first-parent line, oldest first");
    assert_eq!(bisection.stage, Stage::Named { index: 36 }, "{bisection:?}");
    let culprit = bisection.culprit.clone().unwrap();
    assert_eq!(culprit.commit, commits[36]);
    assert_eq!(culprit.subject, "change 37");
    assert!(!culprit.author.is_empty());
    let failed_test = culprit.failed_test.clone().unwrap_or_default();
    assert!(failed_test.starts_with("home"), "{failed_test}");

    // As many test releases as the machine asks for with truthful tests: ⌈log₂ 50⌉ = 6, plus
    // one re-run of each failing step.
    let expected = model_steps(&commits, 36, Settings::default());
    let failing = bisection.trials.iter().filter(|t| !t.passed).count();
    assert_eq!(bisection.steps(), expected, "{:?}", bisection.trials);
    assert!(bisection.steps() <= 6 + failing);
    for trial in &bisection.trials {
        let index = commits.iter().position(|c| *c == trial.commit).unwrap();
        assert_eq!(trial.passed, index < 36, "{trial:?}");
    }
    println!(
        "bisect: 50 commits, culprit 37th named after {} test releases ({} failing) in {} s",
        bisection.steps(),
        failing,
        run.to_culprit.as_secs()
    );

    // The test releases are visible, each of one commit of the range, reason Bisect.
    let made: Vec<ShipRelease> = releases
        .list(&ListParams::default().labels(&format!("{}={failed}", keys::BISECTION_OF)))
        .await
        .unwrap()
        .items;
    assert!(made.len() >= bisection.steps(), "{}", made.len());
    assert!(made.iter().all(|r| r.spec.reason == Reason::Bisect));
    for trial in &bisection.trials {
        let name = bisect::test_release_name(&failed, &trial.commit, trial.attempt);
        let release = made.iter().find(|r| r.name_any() == name).unwrap();
        let phase = release.status.as_ref().and_then(|s| s.phase);
        assert_eq!(bisect::answer(phase), Some(trial.passed), "{name}");
    }

    // Commit statuses: the culprit `failure`, each commit of the range found good `success`;
    // the chat names the culprit and its author once, and hears nothing of the test releases.
    let state_of = |commit: &str| {
        receiver
            .requests_under("/gitea/")
            .into_iter()
            .filter(|q| q.path.ends_with(&format!("statuses/{commit}")))
            .filter_map(|q| q.json()["state"].as_str().map(str::to_owned))
            .next_back()
    };
    eventually("the culprit's commit status", SETTLE, || async {
        Ok(state_of(&culprit.commit).filter(|s| s == "failure"))
    })
    .await
    .unwrap();
    for trial in bisection.trials.iter().filter(|t| t.passed) {
        assert_eq!(state_of(&trial.commit).as_deref(), Some("success"), "{trial:?}");
    }
    let chat = eventually("the chat hears of the culprit", SETTLE, || async {
        let told: Vec<String> = receiver
            .requests_under("/slack/")
            .into_iter()
            .filter_map(|q| q.json()["text"].as_str().map(str::to_owned))
            .collect();
        Ok(told.iter().any(|t| t.contains("CulpritNamed")).then_some(told))
    })
    .await
    .unwrap();
    let culprit_messages: Vec<&String> = chat.iter().filter(|t| t.contains("CulpritNamed")).collect();
    assert_eq!(culprit_messages.len(), 1, "{chat:#?}");
    assert!(
        culprit_messages[0].contains(&culprit.short_commit) && culprit_messages[0].contains(&culprit.author),
        "{}",
        culprit_messages[0]
    );
    assert!(
        !chat.iter().any(|t| t.contains("-b1-") || t.contains("-b2-")),
        "no chat about test releases: {chat:#?}"
    );

    // kubectl ship history names it under the failed release (status does too while the
    // failed tip is the newest; here the revert may already have replaced it).
    for args in [&["history", "main"][..]] {
        let out = stack.kubectl_ship(args).await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            text.contains(&culprit.short_commit) && text.contains("home"),
            "{args:?} names the culprit and its failing test:\n{text}"
        );
    }

    // The revert of the culprit lands on main's tip and is released like any commit.
    let message = bisection.message.clone().unwrap_or_default();
    assert!(
        message.contains(&culprit.short_commit) && message.contains("pushed"),
        "{message}"
    );
    let tip = stack.branch_tip("main").unwrap().trim().to_owned();
    assert_ne!(tip, commits[49]);
    let parent = ship_testkit::git::git(&stack.remote.bare, &["rev-parse", &format!("{tip}~1")]).unwrap();
    assert_eq!(parent.trim(), commits[49], "on main's tip, never forced");
    stack
        .settled(&release_name("main", &tip), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let environment = eventually("main is in sync again", SETTLE, || async {
        let environment = stack.environments().get("main").await?;
        Ok(environment_condition(&environment, "InSync")
            .filter(|(status, _)| status == "True")
            .map(|_| environment))
    })
    .await
    .unwrap();
    assert!(environment.status.is_some());
}
