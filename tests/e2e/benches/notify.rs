//! A dead receiver must not slow a rollback. On the real local control plane (run it on the
//! bed: tests/cluster/up.sh, then `cargo bench -p ship-e2e --bench notify`), shipd rolls back a
//! failing commit, alternately:
//! - without notifications (the reference), and
//! - with six targets (GitHub, GitLab and Gitea statuses, GitHub Deployments, a chat and a JSON
//!   webhook) on a receiver that accepts every connection and never answers.
//!
//! Each round pushes a good commit (Succeeded), then a failing one, and times its release from
//! first seen to RolledBack (read every 20 ms). Prints each variant's median and the ratio dead/none.
//! `ROUNDS` (default 5) comes from the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::time::{Duration, Instant};

use ship_api::Phase;
use ship_testkit::bench::{env_or, ms, percentile};
use ship_testkit::receiver::{Receiver, Steady};
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);

/// From the moment the release of `commit` is first seen to its being `phase`, read every
/// 20 ms (the git poll's wait before the release exists is left out: it is the same for both).
async fn time_to(stack: &Stack, commit: &str, phase: Phase) -> Duration {
    let name = release_name("main", commit);
    let releases = stack.releases();
    let started = Instant::now();
    let mut seen: Option<Instant> = None;
    loop {
        if let Ok(Some(r)) = releases.get_opt(&name).await {
            let first = *seen.get_or_insert_with(Instant::now);
            if r.phase() == Some(phase) {
                return first.elapsed();
            }
        }
        assert!(
            started.elapsed() < SETTLE,
            "{name} not {phase:?} within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let rounds = env_or("ROUNDS", 5);
    let mut stack = Stack::new("bench-notify", "{enabled: false}").await.unwrap();
    let dead = Receiver::start().await.unwrap();
    dead.script("/", &[], Steady::Hang);
    stack
        .create_secret(
            "dead",
            serde_json::json!({"token": "t", "url": format!("{}/chat", dead.url()), "key": "k"}),
        )
        .await
        .unwrap();
    let r = dead.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notifications.yaml");
    std::fs::write(
        &file,
        format!(
            "commitStatuses:
  - {{name: gh, forge: github, apiUrl: '{r}/gh', repository: a/b, tokenSecret: {{name: dead, key: token}}}}
  - {{name: gl, forge: gitlab, apiUrl: '{r}/gl', repository: a/b, tokenSecret: {{name: dead, key: token}}}}
  - {{name: gt, forge: gitea, apiUrl: '{r}/gt', repository: a/b, tokenSecret: {{name: dead, key: token}}}}
deployments:
  - {{name: ghd, apiUrl: '{r}/ghd', repository: a/b, tokenSecret: {{name: dead, key: token}}}}
webhooks:
  - {{name: chat, format: slack, urlSecret: {{name: dead, key: url}}}}
  - {{name: audit, format: json, url: '{r}/audit', signingSecret: {{name: dead, key: key}}, on: [Applying, Succeeded, Failed, RolledBack]}}
"
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    stack.remote.push("main", false).unwrap();

    let (mut none, mut with_dead) = (Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        // Alternate, so drift in the machine's load falls on both variants alike.
        let notify = round % 2 == 1;
        let flags: Vec<&str> = if notify {
            vec!["--notifications", &file]
        } else {
            vec![]
        };
        stack.start_shipd(&flags).unwrap();
        let good = stack
            .push_main(
                &[("deploy/main/web.yaml", &configmap(&format!("healthy {round}")))],
                "good",
            )
            .unwrap();
        time_to(&stack, &good, Phase::Succeeded).await;
        let bad = stack
            .push_main(
                &[("deploy/main/web.yaml", &configmap(&format!("broken {round}")))],
                "bad",
            )
            .unwrap();
        let took = time_to(&stack, &bad, Phase::RolledBack).await;
        if notify {
            with_dead.push(took);
        } else {
            none.push(took);
        }
    }
    let hung = dead.requests().iter().filter(|q| q.answered.is_none()).count();
    assert!(hung > 0, "the dead receiver was sent deliveries");
    let (n, d) = (percentile(&mut none, 0.5), percentile(&mut with_dead, 0.5));
    println!("release seen -> RolledBack, {rounds} rounds each, median (read every 20 ms):");
    println!("  without notifications:                  {:>8.1} ms", ms(n));
    println!(
        "  six targets on a receiver that hangs:   {:>8.1} ms  ({hung} deliveries left hanging)",
        ms(d)
    );
    println!(
        "  ratio dead/none:                        {:>8.2}  (goal: 1.0; the notifier is off the path)",
        d.as_secs_f64() / n.as_secs_f64()
    );
}
