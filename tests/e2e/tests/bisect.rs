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
    // Every commit before the culprit is good, tested or not; none after it reads `success`
    // (the ones tested read `failure`, the others nothing).
    eventually("each commit found good is marked success", SETTLE, || async {
        Ok(commits[..36]
            .iter()
            .all(|c| state_of(c).as_deref() == Some("success"))
            .then_some(()))
    })
    .await
    .unwrap();
    for commit in &commits[37..] {
        assert_ne!(
            state_of(commit).as_deref(),
            Some("success"),
            "{commit} is after the culprit"
        );
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

/// The test releases a bisection made (label `ship.dev/bisection-of`), its restore aside.
async fn test_releases_of(stack: &Stack, failed: &str) -> Vec<ShipRelease> {
    let selector = format!("{}={failed}", keys::BISECTION_OF);
    let made = stack
        .releases()
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    made.into_iter()
        .filter(|r| r.name_any() != format!("{failed}-restore"))
        .collect()
}

/// Asserts what any finished bisection of `line` with `culprit` first bad must show when
/// every test tells the truth: the culprit, the machine's number of steps, each verdict, and
/// exactly one test release per trial (no step ran twice, none was lost).
async fn assert_names(
    stack: &Stack,
    failed: &str,
    line: &[String],
    culprit: usize,
    bisection: &bisect::Bisection,
) {
    assert_eq!(bisection.commits, line, "the first-parent line, oldest first");
    assert_eq!(bisection.stage, Stage::Named { index: culprit }, "{bisection:?}");
    assert_eq!(
        bisection.steps(),
        model_steps(line, culprit, Settings::default()),
        "{:?}",
        bisection.trials
    );
    for trial in &bisection.trials {
        let index = line
            .iter()
            .position(|c| *c == trial.commit)
            .expect("trials test the line only");
        assert_eq!(trial.passed, index < culprit, "{trial:?}");
    }
    let mut made: Vec<String> = test_releases_of(stack, failed)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let mut asked: Vec<String> = bisection
        .trials
        .iter()
        .map(|t| bisect::test_release_name(failed, &t.commit, t.attempt))
        .collect();
    made.sort();
    asked.sort();
    assert_eq!(made, asked, "one test release per trial");
}

/// shipd SIGKILLed twice during a bisection (once while its first test release is out, once
/// after three verdicts): each new shipd reads the bisection from the failed release's status,
/// asks for the same test release, and the run ends as an undisturbed one does.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn shipd_killed_during_a_bisection_resumes_it_and_names_the_same_culprit() {
    let mut stack = Stack::new("bisectkill", "{enabled: false}").await.unwrap();
    stack.enable_bisect("{}").unwrap();
    stack.deploy_first(&[]).await.unwrap();
    let commits = ship_testkit::bisect::commit_range(&stack, 16, 11).unwrap();
    stack.remote.push("main", false).unwrap();
    let failed = ship_testkit::bisect::failed_release(&stack, &commits, SETTLE)
        .await
        .unwrap();

    for (out, made) in [
        (1, "its first test release is out"),
        (3, "three test releases are out"),
    ] {
        eventually(made, BISECTING, || async {
            Ok((test_releases_of(&stack, &failed).await.len() >= out).then_some(()))
        })
        .await
        .unwrap();
        stack.kill_shipd().unwrap();
        stack.start_shipd(&[]).unwrap();
    }

    let bisection = ship_testkit::bisect::reported(&stack, &failed, BISECTING)
        .await
        .unwrap();
    assert_names(&stack, &failed, &commits, 10, &bisection).await;
    // Main ends on the newest commit found good: the last test release that succeeded ran
    // it, or a restore did.
    let running = eventually("main runs the newest good commit", SETTLE, || async {
        let selector = format!("{}={failed}", keys::BISECTION_OF);
        let mut made = stack
            .releases()
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        made.retain(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded));
        made.sort_by_key(|r| {
            r.annotations()
                .get(keys::SEQUENCE)
                .and_then(|s| s.parse::<i64>().ok())
        });
        Ok(made
            .last()
            .map(|r| r.spec.commit.clone())
            .filter(|c| *c == commits[9]))
    })
    .await
    .unwrap();
    assert_eq!(running, commits[9]);
}

/// A force-push during a bisection that takes the failed commit out of main's history: the
/// bisection ends at once (Superseded by the rewrite, long before `maxDuration`) and the new
/// tip is released; no test release is made after it ended.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_force_push_during_a_bisection_supersedes_it_at_once() {
    let mut stack = Stack::new("bisectforce", "{enabled: false}").await.unwrap();
    stack.enable_bisect("{maxDuration: 10m}").unwrap();
    // Each release pauses 3 s once its tests start (fault injection): the sample app's test
    // releases otherwise end a 32-commit bisection within a second, before the 1 s poll can
    // see the force-push (a fresh-clone CI run saw the culprit named first).
    let good = stack
        .deploy_first(&["--test-pause-after", "Testing:3s"])
        .await
        .unwrap();
    let commits = ship_testkit::bisect::commit_range(&stack, 32, 30).unwrap();
    stack.remote.push("main", false).unwrap();
    let failed = ship_testkit::bisect::failed_release(&stack, &commits, SETTLE)
        .await
        .unwrap();
    ship_testkit::bisect::bisection_where(&stack, &failed, SETTLE, |b| !b.ended())
        .await
        .unwrap();

    // The team drops the range: main back to the good commit, one new commit, forced.
    stack.remote.git(&["reset", "-q", "--hard", &good]).unwrap();
    let rewritten = stack
        .remote
        .commit_files(&[("notes.txt", "rewritten\n")], "start over")
        .unwrap();
    let forced = std::time::Instant::now();
    stack.remote.push("main", true).unwrap();

    let bisection = ship_testkit::bisect::reported(&stack, &failed, SETTLE)
        .await
        .unwrap();
    assert_eq!(
        bisection.stage,
        Stage::Superseded {
            by: bisect::SupersededBy::Rewrite
        },
        "{bisection:?}"
    );
    assert!(
        forced.elapsed() < Duration::from_secs(60),
        "at once, not after maxDuration"
    );
    assert!(
        bisection
            .message
            .clone()
            .unwrap_or_default()
            .contains("rewritten")
    );
    stack
        .settled(&release_name("main", &rewritten), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let made = test_releases_of(&stack, &failed).await.len();
    assert!(
        made <= bisection.steps() + 1,
        "the last one may have been out: {made}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        test_releases_of(&stack, &failed).await.len(),
        made,
        "none after its end"
    );
}

/// Seeded histories with merges: each round commits a drawn history on main (2 to 10
/// first-parent commits, about a third of them merges of a side branch; the culprit breaks the
/// app directly or through its side branch), pushes it, and checks the bisection names the
/// first bad commit of the first-parent line (the merge, when the break came through one), in
/// the machine's number of steps, with one test release per trial; then a fix is pushed and
/// must succeed. `SHIP_BISECT_SEED` replays a seed (printed).
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn seeded_histories_with_merges_name_the_first_bad_first_parent_commit() {
    let seed: u64 = std::env::var("SHIP_BISECT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(31);
    let rounds: usize = std::env::var("SHIP_BISECT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    println!("seed {seed}, {rounds} rounds: replay with SHIP_BISECT_SEED={seed}");
    let mut rng = ship_testkit::seeded::Seeded::new(seed);
    let mut stack = Stack::new("bisectseed", "{enabled: false}").await.unwrap();
    stack.enable_bisect("{}").unwrap();
    // Every test release of every round stays, so the count of releases is exact.
    stack.deploy_first(&["--history-limit", "200"]).await.unwrap();
    let mut merges_seen = 0;
    for round in 0..rounds {
        let history = ship_testkit::bisect::History::draw(&mut rng, 10);
        merges_seen += history.merges.iter().filter(|m| **m > 0).count();
        let line = history.commit(&stack, round).unwrap();
        stack.remote.push("main", false).unwrap();
        let context = format!("seed {seed} round {round}: {history:?}");
        let failed = ship_testkit::bisect::failed_release(&stack, &line, SETTLE)
            .await
            .expect(&context);
        let bisection = ship_testkit::bisect::reported(&stack, &failed, BISECTING)
            .await
            .expect(&context);
        println!("{context}: {} test releases", bisection.steps());
        assert_names(&stack, &failed, &line, history.culprit, &bisection).await;
        let fix = stack
            .push_main(
                &[(
                    "deploy/main/web.yaml",
                    &ship_testkit::stack::configmap("healthy main"),
                )],
                "fix",
            )
            .unwrap();
        stack
            .settled(&release_name("main", &fix), Phase::Succeeded, SETTLE)
            .await
            .expect(&context);
    }
    println!("seed {seed}: {rounds} rounds, {merges_seen} merges");
}
