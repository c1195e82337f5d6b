//! API requests per release, read from the API server's own `apiserver_request_total`: what
//! one good release and one rolled-back release cost the apiserver, by verb and resource,
//! through a running shipd (`bench/release.sh` runs it). The baseline for reading from the
//! reflector store instead of listing (#16).
//!
//! Only resources Ship's work touches are counted (Ship's three kinds, ConfigMaps, Events,
//! Namespaces); the node's own traffic is on other resources. The benchmark's own polling is
//! counted and subtracted, and a quiet spell of the same length is measured first, so what
//! shipd does on its own (intervals) shows apart from what the release costs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ship_api::Phase;
use ship_testkit::stack::{Stack, at_rest_in, configmap, release_name};

/// Resources whose requests are counted.
const COUNTED: [&str; 7] = [
    "shipreleases",
    "shipenvironments",
    "shippromotions",
    "configmaps",
    "events",
    "namespaces",
    "leases",
];

type Counts = BTreeMap<(String, String), f64>;

/// `apiserver_request_total`, summed by (verb, resource[/subresource]) for [`COUNTED`].
fn scrape(stack: &Stack) -> Counts {
    let out = stack.cluster.kubectl(&["get", "--raw", "/metrics"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = Counts::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let resource = label("resource");
        if !COUNTED.contains(&resource.as_str()) {
            continue;
        }
        let sub = label("subresource");
        let key = if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        };
        *counts.entry((label("verb"), key)).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    counts
}

fn diff(after: &Counts, before: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn reads(counts: &Counts) -> f64 {
    counts
        .iter()
        .filter(|((verb, _), _)| matches!(verb.as_str(), "GET" | "LIST" | "WATCH"))
        .map(|(_, v)| v)
        .sum()
}

fn total(counts: &Counts) -> f64 {
    counts.values().sum()
}

/// Waits until release `name` is at rest in `phase`, by GETs it counts (to subtract them).
async fn wait_counting(stack: &Stack, name: &str, phase: Phase, own_gets: &mut f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        *own_gets += 1.0;
        if let Some(release) = stack.releases().get_opt(name).await.unwrap()
            && at_rest_in(&release, phase)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach {phase:?}:\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests shipd makes during one release caused by `files` on main, settling in `phase`.
async fn one_release(
    stack: &Stack,
    files: &[(&str, &str)],
    message: &str,
    phase: Phase,
) -> (Counts, Duration) {
    let before = scrape(stack);
    let started = Instant::now();
    let commit = stack.push_main(files, message).unwrap();
    let mut own_gets = 0.0;
    wait_counting(stack, &release_name("main", &commit), phase, &mut own_gets).await;
    // Let the status writes that follow the last phase (environment, metrics) land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = started.elapsed();
    let mut counts = diff(&scrape(stack), &before);
    if let Some(gets) = counts.get_mut(&("GET".to_owned(), "shipreleases".to_owned())) {
        *gets = (*gets - own_gets).max(0.0);
    }
    (counts, took)
}

fn print(title: &str, counts: &Counts, quiet: &Counts, quiet_for: Duration, took: Duration) {
    // What shipd does on its own over the same time, scaled from the quiet spell.
    let scale = took.as_secs_f64() / quiet_for.as_secs_f64();
    println!(
        "\n{title} ({:.1} s, quiet-spell share scaled by {scale:.2}):",
        took.as_secs_f64()
    );
    println!("  {:<8} {:<28} {:>7} {:>7}", "verb", "resource", "count", "quiet");
    for ((verb, resource), n) in counts {
        let q = quiet
            .get(&(verb.clone(), resource.clone()))
            .copied()
            .unwrap_or(0.0)
            * scale;
        println!("  {verb:<8} {resource:<28} {n:>7.0} {q:>7.1}");
    }
    println!(
        "  total {:.0} requests ({:.0} reads); of them the quiet spell would account for {:.1}",
        total(counts),
        reads(counts),
        total(quiet) * scale
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut stack = Stack::new("bench-requests", "{enabled: false}")
            .await
            .expect("KUBECONFIG: run bench/release.sh");
        // Polling stays on (1 s: fetches cost the apiserver nothing); the promotion's look is
        // pushed out of the way.
        stack.deploy_first(&["--promotion-interval", "1h"]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let quiet_for = Duration::from_secs(10);
        let before = scrape(&stack);
        tokio::time::sleep(quiet_for).await;
        let quiet = diff(&scrape(&stack), &before);
        print(
            "shipd on its own, no release",
            &quiet,
            &quiet,
            quiet_for,
            quiet_for,
        );

        let (good, took) = one_release(
            &stack,
            &[("deploy/main/web.yaml", &configmap("healthy main, v2"))],
            "v2",
            Phase::Succeeded,
        )
        .await;
        print(
            "one good release (1 object, 1 test)",
            &good,
            &quiet,
            quiet_for,
            took,
        );

        let (bad, took) = one_release(
            &stack,
            &[("deploy/main/web.yaml", &configmap("broken main, v3"))],
            "v3",
            Phase::RolledBack,
        )
        .await;
        print(
            "one rolled-back release (1 object, 1 failing test)",
            &bad,
            &quiet,
            quiet_for,
            took,
        );
    });
}
