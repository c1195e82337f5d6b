//! A soak: many releases in a row across both environments, good and bad commits mixed. After
//! each, the deployed commit, the deployed release's inventory, the cluster's objects and the
//! metrics must agree, and shipd's resident memory must stay flat.
//!
//! CI runs 20 iterations (40 releases); `bench/soak.sh` runs 100 (200 releases):
//! `SHIP_SOAK_ITERATIONS=100 cargo nextest run -p ship-e2e --run-ignored all --test soak`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use ship_api::{Phase, ShipRelease, keys};
use ship_testkit::stack::{Stack, configmap, managed_configmaps, release_name};

const SETTLE: Duration = Duration::from_secs(60);

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// The resident set split into heap (anonymous) and mapped files (such as git packs).
fn rss_split(pid: u32) -> String {
    format!(
        "RSS {} KiB (anon {}, file {})",
        rss_kib(pid),
        status_kib(pid, "RssAnon"),
        status_kib(pid, "RssFile")
    )
}

async fn managed(stack: &Stack, ns: &str) -> Vec<String> {
    managed_configmaps(stack.cluster.client(), ns).await.unwrap()
}

/// Checks that environment `env` (in `ns`) runs `expected` everywhere Ship says so.
async fn agree(stack: &Stack, env: &str, ns: &str, expected: &str, deployed: &ShipRelease, scrape: &str) {
    let web = Api::<ConfigMap>::namespaced(stack.cluster.client(), ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.annotations().get(keys::COMMIT).map(String::as_str),
        Some(expected),
        "{env}: web"
    );
    let mut inventory: Vec<String> = deployed
        .status
        .as_ref()
        .unwrap()
        .inventory
        .iter()
        .filter(|e| e.kind == "ConfigMap")
        .map(|e| e.name.clone())
        .collect();
    inventory.sort();
    assert_eq!(managed(stack, ns).await, inventory, "{env}: objects vs inventory");
    let series: Vec<&str> = scrape
        .lines()
        .filter(|l| {
            l.starts_with("ship_deployed_commit_info{") && l.contains(&format!("environment=\"{env}\""))
        })
        .collect();
    assert_eq!(series.len(), 1, "{env}: {series:?}");
    assert!(
        series[0].contains(&format!("commit=\"{expected}\"")),
        "{env}: {series:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn releases_in_a_row_keep_commit_inventory_metrics_and_memory_in_agreement() {
    let iterations: usize = std::env::var("SHIP_SOAK_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut stack = Stack::new("soak", "{enabled: false}").await.unwrap();
    let first = stack.deploy_first(&[]).await.unwrap();
    stack.remote.push("production", false).unwrap();
    stack
        .settled(&release_name("production", &first), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let prod_ns = format!("{}-prod", stack.ns);
    let pid = stack.shipd.as_ref().unwrap().pid();
    let mut good = first;
    let mut rss_warm = 0;
    let started = Instant::now();
    for i in 0..iterations {
        let is_good = i % 4 != 3;
        let body = if is_good {
            format!("healthy {i}")
        } else {
            format!("broken {i}")
        };
        // An extra object comes and goes, so pruning is part of every good release.
        let extra =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: extra}}\ndata: {{i: \"{i}\"}}\n");
        let extra = if i % 2 == 0 { extra } else { String::new() };
        let commit = stack
            .push_main(
                &[
                    ("deploy/main/web.yaml", &configmap(&body)),
                    ("deploy/production/web.yaml", &configmap(&body)),
                    ("deploy/main/extra.yaml", &extra),
                    ("deploy/production/extra.yaml", &extra),
                ],
                &format!("soak {i}"),
            )
            .unwrap();
        stack.remote.push("production", false).unwrap();
        let end = if is_good {
            Phase::Succeeded
        } else {
            Phase::RolledBack
        };
        let scrape_after = async {
            // Metrics follow the status writes: wait until they name the expected commit.
            let expected = if is_good { commit.clone() } else { good.clone() };
            let shipd = stack.shipd.as_ref().unwrap();
            for _ in 0..50 {
                let text = shipd.probe("/metrics").await.unwrap().1;
                let both = ["main", "production"].iter().all(|env| {
                    text.contains(&format!(
                        "ship_deployed_commit_info{{environment=\"{env}\",commit=\"{expected}\"}}"
                    ))
                });
                if both {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            shipd.probe("/metrics").await.unwrap().1
        };
        let mut settled = Vec::new();
        for env in ["main", "production"] {
            settled.push(
                stack
                    .settled(&release_name(env, &commit), end, SETTLE)
                    .await
                    .unwrap(),
            );
        }
        let scrape = scrape_after.await;
        if is_good {
            good = commit.clone();
        }
        for (env, ns, release) in [
            ("main", stack.ns.clone(), &settled[0]),
            ("production", prod_ns.clone(), &settled[1]),
        ] {
            let deployed = if is_good {
                release.clone()
            } else {
                let target = release.status.as_ref().unwrap().rolled_back_to.clone().unwrap();
                stack.releases().get(&target).await.unwrap()
            };
            assert_eq!(deployed.spec.commit, good, "{env} at {i}");
            // Pruning follows the final status write by a moment.
            for _ in 0..30 {
                let inventory_names = deployed.status.as_ref().unwrap().inventory.len();
                if managed(&stack, &ns).await.len() == inventory_names {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            agree(&stack, env, &ns, &good, &deployed, &scrape).await;
        }
        if !is_good {
            // Fix forward from the good tree.
            stack.remote.git(&["revert", "--no-edit", "HEAD"]).unwrap();
        }
        if i == 9 {
            rss_warm = rss_kib(pid);
        }
        if i % 50 == 49 {
            println!(
                "soak: {} releases, {} s, {}",
                2 * i + 4,
                started.elapsed().as_secs(),
                rss_split(pid)
            );
        }
    }
    let rss_end = rss_kib(pid);
    println!(
        "soak: {} releases in {} s; shipd RSS {} KiB after 20 releases; at the end {}",
        2 * iterations + 2,
        started.elapsed().as_secs(),
        rss_warm,
        rss_split(pid)
    );
    // Flat: bounded caches, no growth with the number of releases.
    assert!(
        rss_end <= rss_warm + rss_warm / 2,
        "RSS grew from {rss_warm} to {rss_end} KiB"
    );
}
