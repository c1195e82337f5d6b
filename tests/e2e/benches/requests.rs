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

/// The requests shipd itself sent, by (verb, resource[/subresource]) for [`COUNTED`], read from
/// its kube client's `requesting` debug lines in `log` (bench/release.sh starts shipd with
/// `kube_client=debug`): the apiserver's totals also count other clients (the controller
/// manager's, the benchmark's own), these only shipd's.
fn shipd_requests(log: &str) -> Counts {
    let mut counts = Counts::new();
    for line in log.lines().filter(|l| l.contains("\"message\":\"requesting\"")) {
        let field = |name: &str| {
            line.split(&format!("\"{name}\":\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
        };
        let (method, url) = (field("http.method"), field("http.url"));
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let segments: Vec<&str> = path.split('/').collect();
        let Some(mut at) = segments.iter().position(|s| COUNTED.contains(s)) else {
            continue;
        };
        // `namespaces/<ns>/<resource>...`: the resource is two further on.
        if segments[at] == "namespaces" && segments.len() > at + 2 {
            at += 2;
        }
        if !COUNTED.contains(&segments[at]) {
            continue;
        }
        let named = segments.len() > at + 1;
        let resource = match segments.get(at + 2) {
            Some(sub) => format!("{}/{sub}", segments[at]),
            None => segments[at].to_owned(),
        };
        let verb = match method {
            "GET" if query.contains("watch=true") => "WATCH",
            "GET" if !named => "LIST",
            // Ship's patches with a field manager are server-side applies.
            "PATCH" if query.contains("fieldManager=") => "APPLY",
            other => other,
        };
        *counts.entry((verb.to_owned(), resource)).or_default() += 1.0;
    }
    counts
}

/// The watches shipd opened, by resource (any resource), from its client's request log: each
/// `?watch=true` request is one watch (re)started.
fn watches_opened(log: &str) -> BTreeMap<String, usize> {
    let mut opened = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("\"message\":\"requesting\"")) {
        let url = line
            .split("\"http.url\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("");
        let Some((path, query)) = url.split_once('?') else {
            continue;
        };
        if !query.contains("watch=true") {
            continue;
        }
        let resource = path.rsplit('/').next().unwrap_or("").to_owned();
        *opened.entry(resource).or_default() += 1;
    }
    opened
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
) -> (Counts, Counts, Duration) {
    let before = scrape(stack);
    let log_before = stack.logs().len();
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
    let own = shipd_requests(stack.logs().get(log_before..).unwrap_or_default());
    (counts, own, took)
}

fn print(title: &str, counts: &Counts, quiet: &Counts, quiet_for: Duration, took: Duration) {
    print_with(title, counts, quiet, quiet_for, took, None);
}

fn print_with(
    title: &str,
    counts: &Counts,
    quiet: &Counts,
    quiet_for: Duration,
    took: Duration,
    own: Option<&Counts>,
) {
    // What shipd does on its own over the same time, scaled from the quiet spell.
    let scale = took.as_secs_f64() / quiet_for.as_secs_f64();
    println!(
        "\n{title} ({:.1} s, quiet-spell share scaled by {scale:.2}):",
        took.as_secs_f64()
    );
    println!(
        "  {:<8} {:<28} {:>7} {:>7} {:>7}",
        "verb", "resource", "count", "quiet", "shipd"
    );
    let mut keys: Vec<&(String, String)> = counts
        .keys()
        .chain(own.into_iter().flat_map(|o| o.keys()))
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let n = counts.get(key).copied().unwrap_or(0.0);
        let q = quiet.get(key).copied().unwrap_or(0.0) * scale;
        let mine = own.map_or("-".to_owned(), |o| {
            format!("{:.0}", o.get(key).copied().unwrap_or(0.0))
        });
        println!("  {:<8} {:<28} {n:>7.0} {q:>7.1} {mine:>7}", key.0, key.1);
    }
    if let Some(own) = own {
        println!(
            "  shipd itself sent {:.0} of them ({:.0} reads)",
            total(own),
            reads(own)
        );
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
        // A namespace being deleted (the other benchmarks' namespaces) has the namespace
        // controller list every kind in it, Ship's too, until it is gone: wait for quiet.
        let quiet_namespaces = Instant::now() + Duration::from_secs(180);
        while Instant::now() < quiet_namespaces {
            let out = stack
                .cluster
                .kubectl(&["get", "namespaces", "--no-headers"])
                .unwrap();
            if !String::from_utf8_lossy(&out.stdout).contains("Terminating") {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Polling stays on (1 s: fetches cost the apiserver nothing); the promotion's look is
        // pushed out of the way.
        stack.deploy_first(&["--promotion-interval", "1h"]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The watches shipd keeps open at idle: those it opened from its start through the first
        // release, less the release's health watch (one per kind of object it deployed).
        println!("watches shipd opened from its start through its first release, by resource:");
        for (resource, count) in watches_opened(&stack.logs()) {
            println!("  {resource:<28} {count}");
        }
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

        let (good, good_own, took) = one_release(
            &stack,
            &[("deploy/main/web.yaml", &configmap("healthy main, v2"))],
            "v2",
            Phase::Succeeded,
        )
        .await;
        print_with(
            "one good release (1 object, 1 test)",
            &good,
            &quiet,
            quiet_for,
            took,
            Some(&good_own),
        );

        let (bad, bad_own, took) = one_release(
            &stack,
            &[("deploy/main/web.yaml", &configmap("broken main, v3"))],
            "v3",
            Phase::RolledBack,
        )
        .await;
        print_with(
            "one rolled-back release (1 object, 1 failing test)",
            &bad,
            &quiet,
            quiet_for,
            took,
            Some(&bad_own),
        );

        // Idle environments of 100, 1,000 and 5,000 objects (SHIP_IDLE_OBJECTS). An idle hour at
        // the default 5-minute drift interval is 12 drift checks (one of them the full
        // re-check, FULL_RECHECK_EVERY) plus an hour of time-driven traffic (watches renewed,
        // the deployed release's looks). Both are measured in this run: the checks by running
        // shipd with a 30 s interval for 6 minutes (12 checks, one full, as in the hour), the
        // time-driven part by a spell at the default interval with no check due, scaled to an
        // hour.
        let sizes: Vec<usize> = std::env::var("SHIP_IDLE_OBJECTS")
            .unwrap_or_else(|_| "100,1000,5000".into())
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
        let checks_for = Duration::from_secs(
            std::env::var("SHIP_IDLE_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(360),
        );
        let mut time_driven_per_hour: Option<f64> = None;
        for (round, objects) in sizes.into_iter().enumerate() {
            stack.start_shipd(&["--promotion-interval", "1h"]).unwrap();
            let extra = extra_configmaps(objects - 1);
            let _ = one_release(
                &stack,
                &[
                    (
                        "deploy/main/web.yaml",
                        &configmap(&format!("healthy main, idle {round}")),
                    ),
                    ("deploy/main/extra.yaml", &extra),
                ],
                &format!("idle {objects}"),
                Phase::Succeeded,
            )
            .await;
            if time_driven_per_hour.is_none() {
                // Default interval, just settled: no drift check due for 5 minutes.
                let spell = Duration::from_secs(120);
                let before = scrape(&stack);
                let log_before = stack.logs().len();
                tokio::time::sleep(spell).await;
                let own = shipd_requests(stack.logs().get(log_before..).unwrap_or_default());
                let counts = diff(&scrape(&stack), &before);
                print_with(
                    "idle, no drift check due (time-driven)",
                    &counts,
                    &quiet,
                    quiet_for,
                    spell,
                    Some(&own),
                );
                time_driven_per_hour = Some(total(&own) * 3600.0 / spell.as_secs_f64());
            }
            // 12 checks: a 30 s interval for 6 minutes, from a fresh start (its first check is
            // the full one, as once an hour).
            stack
                .start_shipd(&["--promotion-interval", "1h", "--drift-interval", "30s"])
                .unwrap();
            let before = scrape(&stack);
            tokio::time::sleep(checks_for).await;
            let own = shipd_requests(&stack.logs());
            let counts = diff(&scrape(&stack), &before);
            print_with(
                &format!("{objects} objects: 12 drift checks (30 s interval, one full)"),
                &counts,
                &quiet,
                quiet_for,
                checks_for,
                Some(&own),
            );
            // The start's own requests (CRD check, the first lists of its watches) are not an
            // idle hour's: count the drift-check ones (lists, applies, status writes, events).
            let checks: f64 = own
                .iter()
                .filter(|((verb, resource), _)| {
                    matches!(verb.as_str(), "LIST" | "APPLY" | "PATCH")
                        && (resource == "configmaps"
                            || resource.starts_with("shipreleases")
                            || resource == "events")
                })
                .map(|(_, n)| n)
                .sum();
            let per_hour = checks + time_driven_per_hour.unwrap_or_default();
            println!(
                "  per idle hour with {objects} objects, at the default interval: {per_hour:.0} requests \
                 ({checks:.0} for 12 drift checks + {:.0} time-driven) (goal at 1,000: under 100)",
                time_driven_per_hour.unwrap_or_default()
            );
        }
    });
}

/// `count` more ConfigMaps, one YAML stream.
fn extra_configmaps(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-{i}\ndata:\n  n: \"{i}\"\n")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}
