//! Release engine benchmarks on the real local control plane (`bench/release.sh` starts it and
//! builds shipd in release mode). Not a test: it prints figures and ratios measured in one run.
//!
//! 1. Apply 500 objects: Ship's renderer + applier against `kubectl apply --server-side` of the
//!    same files, against the same apiserver, alternating who goes first (ratio of medians).
//! 2. Rollout healthy → first post-deployment test request, for a Deployment rollout through a
//!    running shipd (goal: under 1 s; ratio to that goal).
//! 3. Failing test answered → the previous commit's objects applied again (rollback latency).
//!
//! `ROUNDS` (default 5) and `OBJECTS` (default 500) come from the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use ship_api::keys;
use ship_engine::apply::Applier;
use ship_engine::health::{Health, assess};
use ship_engine::plan::{Stamp, prepare};
use ship_testkit::app::App;
use ship_testkit::bench::{env_or, ms, percentile};
use ship_testkit::cluster::TestCluster;
use ship_testkit::git::{GitDaemon, Remote};
use ship_testkit::process::Shipd;

fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 0.5)
}

fn write_objects(dir: &std::path::Path, namespace: &str, objects: usize, round: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..objects {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {namespace}}}\ndata: {{round: \"{round}\", payload: \"{}\"}}\n",
            "x".repeat(200)
        );
        std::fs::write(dir.join(format!("cm-{i}.yaml")), text).unwrap();
    }
}

async fn bench_apply(cluster: &TestCluster, rounds: usize, objects: usize) {
    let client = cluster.client();
    let ship_ns = cluster.namespace("bench-ship").await.unwrap();
    let kubectl_ns = cluster.namespace("bench-kubectl").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let applier = Applier::default();
    let (mut ship, mut kubectl) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        write_objects(&dir.path().join("ship"), &ship_ns, objects, round);
        write_objects(&dir.path().join("kubectl"), &kubectl_ns, objects, round);
        let run_ship = async {
            let t = Instant::now();
            let manifests =
                ship_render::manifests::render(dir.path(), "ship", &ship_render::Limits::default()).unwrap();
            let stamped = prepare(
                &manifests,
                Stamp {
                    environment: "bench",
                    commit: "0000000000000000000000000000000000000000",
                    release: "bench",
                },
            );
            let applied = applier.apply(&client, &stamped, false).await.unwrap();
            assert_eq!(applied.objects, objects);
            t.elapsed()
        };
        let run_kubectl = || {
            let t = Instant::now();
            let out = cluster
                .kubectl(&[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-f",
                    dir.path().join("kubectl").to_str().unwrap(),
                ])
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            t.elapsed()
        };
        if round % 2 == 0 {
            ship.push(run_ship.await);
            kubectl.push(run_kubectl());
        } else {
            kubectl.push(run_kubectl());
            ship.push(run_ship.await);
        }
    }
    let (s, k) = (median(&mut ship), median(&mut kubectl));
    println!("apply {objects} ConfigMaps (server-side), {rounds} rounds, median:");
    println!("  ship (render + apply): {:>8.1} ms", ms(s));
    println!("  kubectl --server-side: {:>8.1} ms", ms(k));
    println!(
        "  ratio ship/kubectl:    {:>8.2}",
        s.as_secs_f64() / k.as_secs_f64()
    );
}

fn files(ns: &str, app: &App, version: usize, good: bool) -> Vec<(String, String)> {
    let ship = format!(
        "environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {ns}-prod}}\n\
         health: {{timeout: 60s}}\npromotion: {{enabled: false}}\n\
         tests:\n- name: home\n  http: {{url: '{}', expect: {{bodyContains: healthy}}}}\n",
        app.health_url()
    );
    let (body, status) = if good { ("healthy", "200") } else { ("down", "500") };
    let web = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web}}\ndata: {{body: {body}, status: \"{status}\"}}\n"
    );
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata:\n      labels: {{app: web}}\n      \
         annotations: {{version: \"{version}\"}}\n    spec:\n      containers: [{{name: web, image: \"web:{version}\"}}]\n"
    );
    vec![
        ("ship.yaml".into(), ship),
        ("deploy/main/web.yaml".into(), web),
        ("deploy/main/app.yaml".into(), deployment),
    ]
}

/// Polls `probe` every 2 ms until it is true; returns when.
async fn when(timeout: Duration, mut probe: impl AsyncFnMut() -> bool) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn bench_release_latency(cluster: &TestCluster, rounds: usize) {
    let ns = cluster.namespace("bench-release").await.unwrap();
    let app = App::start(cluster.client()).await.unwrap();
    let remote = Remote::new().unwrap();
    let daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), &ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let push = |version: usize, good: bool| {
        let owned = files(&ns, &app, version, good);
        let borrowed: Vec<(&str, &str)> = owned.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let commit = remote.commit_files(&borrowed, &format!("v{version}")).unwrap();
        remote.push("main", false).unwrap();
        commit
    };
    let first = push(0, true);
    let shipd = Shipd::start(
        cluster.kubeconfig(),
        &[
            "--namespace",
            &ns,
            "--secret-namespace",
            &ns,
            "--repo-url",
            &daemon.url("repo.git"),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--poll-interval",
            "200ms",
        ],
    )
    .unwrap();
    let commit_of_web = async |commit: &str| {
        configmaps
            .get_opt("web")
            .await
            .ok()
            .flatten()
            .is_some_and(|cm| cm.annotations().get(keys::COMMIT).map(String::as_str) == Some(commit))
    };
    when(Duration::from_secs(60), async || commit_of_web(&first).await).await;
    let (mut to_test, mut to_rollback) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // A good rollout: the Deployment's template changes, so it really rolls.
        let good = push(round * 2, true);
        let seen = app.requests.lock().unwrap().len();
        let healthy = when(Duration::from_secs(60), async || {
            deployments.get_opt("web").await.ok().flatten().is_some_and(|d| {
                d.annotations().get(keys::COMMIT) == Some(&good)
                    && assess(&serde_json::to_value(&d).unwrap()) == Health::Healthy
            })
        })
        .await;
        let tested = when(Duration::from_secs(60), async || {
            app.requests.lock().unwrap().len() > seen
        })
        .await;
        let first_request = app.requests.lock().unwrap()[seen].0;
        to_test.push(first_request.saturating_duration_since(healthy));
        let _ = tested;

        // A bad commit: the test fails; time until the good commit's objects are back.
        let seen = app.requests.lock().unwrap().len();
        let _bad = push(round * 2 + 1, false);
        when(Duration::from_secs(60), async || {
            app.requests.lock().unwrap()[seen..]
                .iter()
                .any(|(_, status)| *status == 500)
        })
        .await;
        let failed_at = app.requests.lock().unwrap()[seen..]
            .iter()
            .find(|(_, s)| *s == 500)
            .unwrap()
            .0;
        let restored = when(Duration::from_secs(60), async || commit_of_web(&good).await).await;
        to_rollback.push(restored.saturating_duration_since(failed_at));
    }
    drop(shipd);
    let (t, r) = (median(&mut to_test), median(&mut to_rollback));
    println!("release latency through shipd, {rounds} rounds, median (2 ms polling resolution):");
    println!(
        "  rollout healthy -> first test request: {:>7.1} ms  (ratio to the 1 s goal: {:.3})",
        ms(t),
        t.as_secs_f64()
    );
    println!("  test failed -> rollback applied:       {:>7.1} ms", ms(r));
    println!(
        "  all healthy->test samples (ms): {:?}",
        to_test.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
    );
}

fn main() {
    let rounds = env_or("ROUNDS", 5);
    let objects = env_or("OBJECTS", 500);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cluster = TestCluster::connect()
            .await
            .expect("KUBECONFIG: run bench/release.sh");
        cluster.install_crds().await.unwrap();
        bench_apply(&cluster, rounds, objects).await;
        bench_release_latency(&cluster, rounds).await;
    });
}
