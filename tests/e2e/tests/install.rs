//! Installing Ship the way a new user does, from `docs/quick-start.md` itself: every command
//! this test runs is a block of that page, run as written by bash (only `GIT_URL` and the
//! node's containerd socket come from the test bed). On the test bed's real node, on whichever
//! Kubernetes version `tests/run.sh` started (1.20.2 and 1.36.2):
//! - the image is built and loaded as the page says;
//! - `helm install` with only `git.url` onto a cluster where Ship's namespace, the
//!   environments' namespaces and the CRDs do not exist; the first push deploys;
//!   `kubectl ship status` finds Ship by itself;
//! - `helm uninstall` leaves the application running; the page's "remove everything" deletes
//!   the namespaces and CRDs with no finalizer in the way;
//! - the same with `kubectl apply -k` of an overlay on `deploy/`, and `kubectl delete -k`.
//!
//! It deletes and re-creates Ship's CRDs, which every other test uses, and installs into the
//! fixed namespaces the page names: `tests/run.sh` runs this binary on its own, after the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use ship_testkit::cluster::{TestCluster, eventually, repo_root, workspace_bin};
use ship_testkit::git::{GitDaemon, git};

/// The shell blocks of `docs/quick-start.md`, by the name in the `<!-- quick-start: NAME -->`
/// comment above each.
fn quick_start_blocks() -> BTreeMap<String, String> {
    let page = std::fs::read_to_string(repo_root().join("docs/quick-start.md")).unwrap();
    let mut blocks = BTreeMap::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- quick-start:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        assert_eq!(lines.next().map(str::trim), Some("```sh"), "block {name}");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.insert(name.trim().to_owned(), body.join("\n") + "\n");
    }
    blocks
}

/// Where the page's commands run: a directory with Ship's `deploy/` and `charts/` (as a clone of
/// Ship has them) and the application's clone in `app/`.
struct Workdir {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    blocks: BTreeMap<String, String>,
}

impl Workdir {
    /// Runs block `name` with bash (-euo pipefail); its output, or a panic with it.
    fn run(&self, name: &str) -> String {
        let block = self
            .blocks
            .get(name)
            .unwrap_or_else(|| panic!("docs/quick-start.md has no block {name}"));
        let mut bash = Command::new("bash");
        bash.args(["-euo", "pipefail", "-c", block])
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path());
        // cargo's and nextest's variables for this test would change what deploy/image/build.sh's
        // cargo sees
        for (key, _) in std::env::vars() {
            if (key.starts_with("CARGO_") && key != "CARGO_TARGET_DIR" && key != "CARGO_HOME")
                || key.starts_with("NEXTEST")
                || key.starts_with("RUSTUP_TOOLCHAIN")
            {
                bash.env_remove(key);
            }
        }
        bash.envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = bash.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "quick start block {name} failed:\n{block}\n--- output:\n{text}\n--- the cluster then:\n{}",
            self.diagnose()
        );
        text
    }

    /// What a failed block leaves to read: Ship's pods, events and logs, and its objects.
    fn diagnose(&self) -> String {
        let script = "kubectl get pods -A -o wide; \
                      kubectl get events -n ship --sort-by=.lastTimestamp | tail -30; \
                      kubectl logs -n ship -l app.kubernetes.io/name=ship --tail=80 --prefix --all-containers; \
                      kubectl get shipreleases,shipenvironments,shippromotions -A; \
                      kubectl get nodes -o custom-columns=NODE:.metadata.name,TAINTS:.spec.taints";
        let mut bash = Command::new("bash");
        bash.args(["-c", script])
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        match bash.output() {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => format!("(cannot run kubectl: {err})"),
        }
    }
}

fn shipd_logs(cluster: &TestCluster) -> String {
    let out = cluster
        .kubectl(&[
            "logs",
            "-n",
            "ship",
            "-l",
            "app.kubernetes.io/name=ship",
            "--tail=30",
            "--prefix",
        ])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `hello` Deployment in `main` has a ready replica.
async fn hello_runs(cluster: &TestCluster) -> bool {
    Api::<Deployment>::namespaced(cluster.client(), "main")
        .get_opt("hello")
        .await
        .ok()
        .flatten()
        .and_then(|d| d.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        >= 1
}

/// Nothing of Ship's is left: its namespace, the environments' and the CRDs are gone.
async fn nothing_left(cluster: &TestCluster) {
    for ns in ["ship", "main", "production"] {
        let get = cluster.kubectl(&["get", "namespace", ns]).unwrap();
        assert!(!get.status.success(), "namespace {ns} still exists");
    }
    let crds = cluster.kubectl(&["get", "crd", "-o", "name"]).unwrap();
    let crds = String::from_utf8_lossy(&crds.stdout).into_owned();
    assert!(!crds.contains("ship.dev"), "{crds}");
}

#[tokio::test]
#[ignore = "needs the local control plane and node, alone: tests/run.sh"]
async fn the_quick_start_installs_and_uninstalls_ship_both_ways_on_an_empty_cluster() {
    let cluster = TestCluster::connect().await.unwrap();
    let node_ip = std::env::var("SHIP_TESTBED_NODE_IP").expect("SHIP_TESTBED_NODE_IP: tests/run.sh");
    let containerd = std::env::var("LOCAL_K8S_CONTAINERD").expect("LOCAL_K8S_CONTAINERD: tests/run.sh");

    // The application's repository, served where pods reach it, and a clone of it in app/.
    let served = tempfile::tempdir().unwrap();
    git(served.path(), &["init", "-q", "--bare", "-b", "main", "app.git"]).unwrap();
    let daemon = GitDaemon::start_at(served.path(), node_ip.parse().unwrap()).unwrap();
    let git_url = daemon.url("app.git");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo_root().join("deploy"), dir.path().join("deploy")).unwrap();
    std::os::unix::fs::symlink(repo_root().join("charts"), dir.path().join("charts")).unwrap();
    git(dir.path(), &["clone", "-q", &git_url, "app"]).unwrap();
    let app = dir.path().join("app");
    git(&app, &["config", "user.name", "Quick Start"]).unwrap();
    git(&app, &["config", "user.email", "quick@start.invalid"]).unwrap();
    git(&app, &["config", "init.defaultBranch", "main"]).unwrap();
    git(&app, &["checkout", "-q", "-b", "main"]).unwrap();

    // kubectl-ship and helm on PATH, as the page assumes.
    let helm = ship_testkit::cluster::helm().unwrap();
    let path = format!(
        "{}:{}:{}",
        workspace_bin("kubectl-ship").parent().unwrap().display(),
        helm.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let work = Workdir {
        dir,
        env: vec![
            ("GIT_URL".into(), git_url.clone()),
            ("CONTAINERD_ADDRESS".into(), containerd),
            ("KUBECONFIG".into(), cluster.kubeconfig().display().to_string()),
            ("PATH".into(), path),
        ],
        blocks: quick_start_blocks(),
    };
    // The page's blocks, each run below at least once.
    let names: Vec<&str> = work.blocks.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "first-push",
            "helm-install",
            "helm-uninstall",
            "image",
            "kustomize-install",
            "kustomize-uninstall",
            "remove-everything",
            "watch"
        ]
    );

    // An empty cluster, as far as Ship goes (the other tests' CRDs and this page's namespaces
    // gone; and what an earlier run of this test that failed half-way left: the plain
    // install's cluster-scoped objects), then the page from the top.
    let earlier = cluster
        .kubectl(&[
            "delete",
            "-k",
            &repo_root().join("deploy").display().to_string(),
            "--ignore-not-found",
            "--wait",
        ])
        .unwrap();
    assert!(
        earlier.status.success(),
        "{}",
        String::from_utf8_lossy(&earlier.stderr)
    );
    work.run("remove-everything");
    nothing_left(&cluster).await;
    // Another test's installation left behind (one that failed before its uninstall) would be
    // a second Ship for kubectl ship to choose from: this page starts with none.
    let others = cluster
        .kubectl(&[
            "delete",
            "deployments",
            "--all-namespaces",
            "-l",
            "ship.dev/component=shipd",
            "--wait",
        ])
        .unwrap();
    assert!(
        others.status.success(),
        "{}",
        String::from_utf8_lossy(&others.stderr)
    );
    work.run("image");

    // 1. Helm, with only git.url: the namespaces are made, the first push deploys.
    work.run("helm-install");
    let pushed = work.run("first-push");
    let watched = work.run("watch");
    let commit = git(&app, &["rev-parse", "HEAD"]).unwrap();
    assert!(
        watched.contains(&format!("main-{}", &commit[..10])) && watched.contains("Succeeded"),
        "{pushed}{watched}\nshipd:\n{}",
        shipd_logs(&cluster)
    );
    // kubectl ship found Ship's namespace by itself (no -n in the block): it shows the commit.
    assert!(watched.contains(&commit[..7]), "{watched}");
    assert!(hello_runs(&cluster).await, "hello is not running:\n{watched}");
    // The promotion said at once whether it could push (the git daemon takes pushes).
    // (the promotion looks every 15 s: its ShipPromotion may come a little after the release)
    let push_ready = || {
        let out = cluster
            .kubectl(&[
                "get",
                "shippromotion",
                "-n",
                "ship",
                "-o",
                "jsonpath={.items[0].status.conditions[?(@.type==\"PushReady\")].status}",
            ])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ready = eventually(
        "PushReady on the ShipPromotion",
        Duration::from_secs(60),
        || async { Ok(Some(push_ready()).filter(|status| !status.is_empty())) },
    )
    .await
    .unwrap();
    assert_eq!(ready, "True");

    // helm uninstall: the application stays, as do the namespaces and the CRDs (documented).
    let left = work.run("helm-uninstall");
    assert!(left.contains("hello"), "{left}");
    assert!(hello_runs(&cluster).await);
    let crds = cluster.kubectl(&["get", "crd", "shipreleases.ship.dev"]).unwrap();
    assert!(
        crds.status.success(),
        "helm uninstall keeps the CRDs it installed"
    );
    // Removing everything returns (no finalizer holds a namespace or a CRD).
    work.run("remove-everything");
    nothing_left(&cluster).await;

    // 2. kubectl apply -k with the page's overlay: Ship makes the environment's namespace.
    // The repository moves on while Ship is away; the new install deploys its tip.
    let commit = {
        std::fs::write(
            app.join("deploy/main/hello.yaml"),
            std::fs::read_to_string(app.join("deploy/main/hello.yaml"))
                .unwrap()
                .replace("hello from main", "hello again from main"),
        )
        .unwrap();
        git(&app, &["commit", "-q", "-am", "Say hello again"]).unwrap();
        git(&app, &["push", "-q", "origin", "main"]).unwrap();
        git(&app, &["rev-parse", "HEAD"]).unwrap()
    };
    work.run("kustomize-install");
    let watched = work.run("watch");
    assert!(
        watched.contains(&format!("main-{}", &commit[..10])) && watched.contains("Succeeded"),
        "{watched}\nshipd:\n{}",
        shipd_logs(&cluster)
    );
    let made = cluster
        .kubectl(&["get", "namespace", "main", "-o", "jsonpath={.metadata.labels}"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&made.stdout).contains("ship.dev"),
        "Ship made the environment's namespace: {}",
        String::from_utf8_lossy(&made.stdout)
    );
    eventually("hello running", Duration::from_secs(60), || async {
        Ok(hello_runs(&cluster).await.then_some(()))
    })
    .await
    .unwrap();

    // kubectl delete -k: Ship is gone, the application and its namespaces stay.
    let left = work.run("kustomize-uninstall");
    assert!(left.contains("hello"), "{left}");
    assert!(hello_runs(&cluster).await);
    // (production has no branch yet, so Ship made no namespace for it)
    let main_ns = cluster.kubectl(&["get", "namespace", "main"]).unwrap();
    assert!(main_ns.status.success(), "namespace main was deleted with Ship");
    let ship = cluster.kubectl(&["get", "namespace", "ship"]).unwrap();
    assert!(!ship.status.success(), "delete -k removes Ship's namespace");
    work.run("remove-everything");
    nothing_left(&cluster).await;

    // The CRDs back, for whatever runs on this cluster next.
    cluster.install_crds().await.unwrap();
    drop(daemon);
}

#[test]
fn every_quick_start_block_is_valid_bash() {
    let blocks = quick_start_blocks();
    assert!(blocks.len() >= 8, "{blocks:?}");
    for (name, block) in &blocks {
        let check = Command::new("bash").args(["-n", "-c", block]).output().unwrap();
        assert!(
            check.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // The image block names the script that exists.
    assert!(Path::new(&repo_root().join("deploy/image/build.sh")).exists());
}
