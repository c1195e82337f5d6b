//! Release engine benchmarks on the real local control plane (`bench/release.sh` starts it and
//! builds shipd in release mode). Not a test: it prints figures and ratios measured in one run.
//!
//! 1. A full release of 1,000 and 5,000 objects: Ship's render, dry run, apply and health
//!    against `kubectl apply --server-side` of the same files, against the same apiserver,
//!    alternating who goes first (ratio of medians); then 1,000 at 1, 4 and 8 requests in
//!    flight (`CONCURRENCY`), and a release that changes 1 object of 1,000 against kubectl's
//!    apply of all of them.
//! 2. Rollout healthy → first post-deployment test request, for a Deployment rollout through a
//!    running shipd (goal: under 1 s; ratio to that goal).
//! 3. Failing test answered → the previous commit's objects applied again (rollback latency).
//!
//! `ROUNDS` (default 5; at most 3 for the full releases) and `OBJECTS` (default `1000,5000`)
//! come from the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use ship_api::keys;
use ship_engine::apply::Applier;
use ship_engine::health::{Health, assess};
use ship_engine::inventory::{Stamp, prepare};
use ship_testkit::app::App;
use ship_testkit::bench::{configmap_files, cpu_seconds, env_or, ms, percentile};
use ship_testkit::cluster::TestCluster;
use ship_testkit::git::{GitDaemon, Remote};
use ship_testkit::process::Shipd;

fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 0.5)
}

/// `kubectl apply --server-side` of the files in `dir`: how long it took.
fn kubectl_apply_timed(cluster: &TestCluster, dir: &std::path::Path) -> Duration {
    let t = Instant::now();
    let out = cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            dir.to_str().unwrap(),
        ])
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

/// Writes `objects` ConfigMaps of `namespace` into `dir` (replacing what was there).
fn write_objects(dir: &std::path::Path, namespace: &str, objects: usize, round: usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in configmap_files(objects, Some(namespace), round) {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Ship's full release of `objects` ConfigMaps (render, dry run of the whole set, server-side
/// apply, health) against `kubectl apply --server-side` of the same files (no dry run, no
/// health), against the same apiserver, alternating who goes first; ratio of medians.
async fn bench_full_release(cluster: &TestCluster, rounds: usize, objects: usize, in_flight: usize) {
    let client = cluster.client();
    let ship_ns = cluster.namespace("bench-ship").await.unwrap();
    let kubectl_ns = cluster.namespace("bench-kubectl").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let applier = Applier::new(in_flight);
    let (mut ship, mut kubectl) = (Vec::new(), Vec::new());
    let mut phases = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    // CPU seconds per run: the API server's and etcd's, and Ship's own (this process).
    let (mut server_cpu, mut own_cpu, mut kubectl_server_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        write_objects(&dir.path().join("ship"), &ship_ns, objects, round);
        write_objects(&dir.path().join("kubectl"), &kubectl_ns, objects, round);
        let run_ship = async {
            let t = Instant::now();
            let manifests = ship_render::manifests::render(
                &ship_render::tools::NoPrograms,
                dir.path(),
                "ship",
                &ship_render::Limits::default(),
            )
            .unwrap();
            let stamped = prepare(
                &manifests,
                Stamp {
                    environment: "bench",
                    commit: "0000000000000000000000000000000000000000",
                    release: "bench",
                },
            );
            let rendered = t.elapsed();
            applier.dry_run(&client, &stamped).await.unwrap();
            let dry_run = t.elapsed();
            let applied = applier.apply(&client, &stamped, None).await.unwrap();
            assert_eq!(applied.objects, objects);
            let applied_at = t.elapsed();
            let inventory: Vec<_> = stamped.iter().map(ship_engine::inventory::entry_of).collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            applier
                .wait_healthy(&client, &inventory, "bench", deadline)
                .await
                .unwrap()
                .unwrap();
            let total = t.elapsed();
            (
                total,
                [
                    rendered,
                    dry_run - rendered,
                    applied_at - dry_run,
                    total - applied_at,
                ],
            )
        };
        let run_ship = async {
            let (server, own) = (cpu_seconds(SERVER), cpu_seconds(&["self"]));
            let run = run_ship.await;
            server_cpu.push(cpu_seconds(SERVER) - server);
            own_cpu.push(cpu_seconds(&["self"]) - own);
            run
        };
        let mut run_kubectl = || {
            let server = cpu_seconds(SERVER);
            kubectl.push(kubectl_apply_timed(cluster, &dir.path().join("kubectl")));
            kubectl_server_cpu.push(cpu_seconds(SERVER) - server);
        };
        let (took, parts) = if round % 2 == 0 {
            let ship_run = run_ship.await;
            run_kubectl();
            ship_run
        } else {
            run_kubectl();
            run_ship.await
        };
        ship.push(took);
        for (all, part) in phases.iter_mut().zip(parts) {
            all.push(part);
        }
    }
    let (s, k) = (median(&mut ship), median(&mut kubectl));
    let [render, dry_run, apply, health] = phases.map(|mut p| ms(median(&mut p)));
    println!("full release of {objects} ConfigMaps, {in_flight} in flight, {rounds} rounds, median:");
    println!("  ship (render + dry run + apply + health): {:>8.1} ms", ms(s));
    println!(
        "    render {render:.1} ms, dry run {dry_run:.1} ms, apply {apply:.1} ms, health {health:.1} ms"
    );
    println!("  kubectl apply --server-side:              {:>8.1} ms", ms(k));
    println!(
        "  ratio ship/kubectl:                       {:>8.2}  (goal: 0.3 or less)",
        s.as_secs_f64() / k.as_secs_f64()
    );
    // The profile behind the floor: on this machine's cores, the API server and etcd serving
    // Ship's requests need at least their CPU time over the cores, whatever the client does.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (server, own, kubectl_server) = (mean(&server_cpu), mean(&own_cpu), mean(&kubectl_server_cpu));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let requests = 2.0 * objects as f64;
    println!(
        "  CPU, mean per run: API server + etcd {server:.2} s for Ship's {requests:.0} requests ({:.2} ms each), \
         {kubectl_server:.2} s for kubectl's {objects}; Ship's own {own:.2} s",
        server * 1e3 / requests
    );
    println!(
        "  cores busy during Ship's run: {:.2} of {cores:.0}; floor (server CPU / cores / kubectl's time): {:.2}",
        (server + own) / s.as_secs_f64(),
        server / cores / k.as_secs_f64()
    );
    for ns in [&ship_ns, &kubectl_ns] {
        let _ = cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}

/// The processes that serve the API: their CPU time is the floor of any client's.
const SERVER: &[&str] = &["kube-apiserver", "etcd"];

/// Writes `objects` ConfigMaps of `namespace` into `dir`, all of round 0 but the first, which
/// says `round`: a commit that changes one object.
fn write_one_changed(dir: &std::path::Path, namespace: &str, objects: usize, round: usize) {
    write_objects(dir, namespace, objects, 0);
    let first = dir.join("cms-0.yaml");
    let text = std::fs::read_to_string(&first).unwrap();
    std::fs::write(
        &first,
        text.replacen("round: \"0\"", &format!("round: \"{round}\""), 1),
    )
    .unwrap();
}

/// A release that changes one object of `objects`: Ship's render, metadata-only lists, dry
/// run and apply of what changed, and health of all, against `kubectl apply --server-side` of
/// the whole set (what a tool that applies everything pays), alternating who goes first;
/// ratio of medians.
async fn bench_one_changed(cluster: &TestCluster, rounds: usize, objects: usize) {
    let client = cluster.client();
    let ship_ns = cluster.namespace("bench-one").await.unwrap();
    let kubectl_ns = cluster.namespace("bench-one-kubectl").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let applier = Applier::default();
    let stamp = Stamp {
        environment: "bench",
        commit: "0000000000000000000000000000000000000000",
        release: "bench",
    };
    // The repository is `dir`, the environment's manifests its `ship` directory.
    let render = |dir: &std::path::Path| {
        let manifests = ship_render::manifests::render(
            &ship_render::tools::NoPrograms,
            dir.parent().unwrap(),
            "ship",
            &ship_render::Limits::default(),
        )
        .unwrap();
        prepare(&manifests, stamp)
    };
    // Both start from the whole set applied once.
    write_objects(&dir.path().join("ship"), &ship_ns, objects, 0);
    write_objects(&dir.path().join("kubectl"), &kubectl_ns, objects, 0);
    applier
        .apply(&client, &render(&dir.path().join("ship")), None)
        .await
        .unwrap();
    let kubectl_apply = || kubectl_apply_timed(cluster, &dir.path().join("kubectl"));
    kubectl_apply();
    let (mut ship, mut kubectl) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        write_one_changed(&dir.path().join("ship"), &ship_ns, objects, round);
        write_one_changed(&dir.path().join("kubectl"), &kubectl_ns, objects, round);
        let run_ship = async {
            let t = Instant::now();
            let stamped = render(&dir.path().join("ship"));
            let live = applier.live_metadata(&client, &stamped, "bench").await.unwrap();
            let (changed, tally) = ship_engine::changes::select(&stamped, &live);
            assert_eq!(changed.len(), 1, "{tally:?}");
            applier.dry_run(&client, &changed).await.unwrap();
            let applied = applier.apply(&client, &changed, None).await.unwrap();
            assert_eq!(applied.objects, 1);
            let inventory: Vec<_> = stamped.iter().map(ship_engine::inventory::entry_of).collect();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            applier
                .wait_healthy(&client, &inventory, "bench", deadline)
                .await
                .unwrap()
                .unwrap();
            t.elapsed()
        };
        if round % 2 == 0 {
            ship.push(run_ship.await);
            kubectl.push(kubectl_apply());
        } else {
            kubectl.push(kubectl_apply());
            ship.push(run_ship.await);
        }
    }
    let (s, k) = (median(&mut ship), median(&mut kubectl));
    println!("a release changing 1 of {objects} ConfigMaps, {rounds} rounds, median:");
    println!(
        "  ship (render + list + dry run + apply of 1 + health of all): {:>8.1} ms",
        ms(s)
    );
    println!(
        "  kubectl apply --server-side of all {objects}:                  {:>8.1} ms",
        ms(k)
    );
    println!(
        "  ratio ship/kubectl:                                          {:>8.3}  (goal: 0.05 or less)",
        s.as_secs_f64() / k.as_secs_f64()
    );
    for ns in [&ship_ns, &kubectl_ns] {
        let _ = cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
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
         annotations: {{version: \"{version}\"}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      \
         containers: [{{name: web, image: ship.dev/demo-app:1, imagePullPolicy: Never}}]\n"
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

/// A comma-separated list of counts from the environment variable `name`, else `default`.
fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: a comma-separated list of counts"))
        })
        .collect()
}

fn main() {
    let rounds = env_or("ROUNDS", 5);
    let objects = env_list("OBJECTS", "1000,5000");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cluster = TestCluster::connect()
            .await
            .expect("KUBECONFIG: run bench/release.sh");
        cluster.install_crds().await.unwrap();
        for count in &objects {
            bench_full_release(&cluster, rounds.min(3), *count, ship_engine::apply::IN_FLIGHT).await;
        }
        // Concurrency of dry runs and applies (`--apply-concurrency`), on the first size.
        let first = objects.first().copied().unwrap_or(1000);
        for in_flight in env_list("CONCURRENCY", "1,4,8") {
            bench_full_release(&cluster, rounds.min(3), first, in_flight).await;
        }
        bench_one_changed(&cluster, rounds, first).await;
        bench_release_latency(&cluster, rounds).await;
    });
}
