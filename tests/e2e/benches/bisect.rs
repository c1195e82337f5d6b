//! Bisection benchmark on the real local control plane (`bench/bisect.sh` starts it): time
//! from the first failure (the failed release rolled back) to the culprit named, for a push of
//! 8 and of 50 commits whose commit at three quarters breaks the `home` test. The reference,
//! measured in the same run, is one release: the failed release's own time from push to rolled
//! back. The ratio says how many releases' worth a bisection costs (⌈log₂ k⌉ test releases,
//! plus a re-run and a rollback for each failing step). Not a test: it prints figures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::time::Duration;

use ship_testkit::stack::Stack;

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BISECT_COMMITS")
        .unwrap_or_else(|_| "8,50".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("| commits | culprit | test releases | failing | one release (s) | to culprit (s) | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for k in sizes {
        let culprit = (k * 3).div_ceil(4).max(1);
        let mut stack = Stack::new("bench-bisect", "{enabled: false}").await.unwrap();
        stack.enable_bisect("{enabled: true}").unwrap();
        stack.deploy_first(&[]).await.unwrap();
        let run = ship_testkit::bisect::push_range_and_bisect(&stack, k, culprit, Duration::from_secs(900))
            .await
            .unwrap();
        assert_eq!(
            run.bisection.culprit(),
            Some(run.commits[culprit - 1].as_str()),
            "{:?}",
            run.bisection
        );
        let failing = run.bisection.trials.iter().filter(|t| !t.passed).count();
        println!(
            "| {k} | {culprit} | {} | {failing} | {:.1} | {:.1} | {:.1}× |",
            run.bisection.steps(),
            run.failed_release.as_secs_f64(),
            run.to_culprit.as_secs_f64(),
            run.to_culprit.as_secs_f64() / run.failed_release.as_secs_f64()
        );
    }
}
