//! Ship as users run it: its own image (`deploy/image/build.sh`, imported into the test bed's
//! node with no registry) installed by real helm from `charts/ship`, two replicas electing a
//! leader, fetching from a git daemon on the node's address, deploying a kustomize environment
//! (rendered by the kubectl the image carries) as real containers, testing them through the API
//! server's service proxy and with a Job whose real output `kubectl ship logs` shows, and
//! hearing of pushes through its webhook Service.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use ship_api::{Phase, ShipRelease, TestVerdict};
use ship_testkit::cluster::{TestCluster, eventually, repo_root, workspace_bin};
use ship_testkit::git::{GitDaemon, Remote};
use ship_testkit::stack::{at_rest_in, release_name};

fn helm() -> PathBuf {
    ship_testkit::cluster::helm().unwrap()
}

fn node_ip() -> IpAddr {
    std::env::var("SHIP_TESTBED_NODE_IP")
        .expect("SHIP_TESTBED_NODE_IP: run on the test bed's node (tests/run.sh)")
        .parse()
        .unwrap()
}

/// The shop as a kustomize base and one overlay per environment: the overlay's
/// configMapGenerator holds the page, so a new page is a new ConfigMap name and rolls the pods.
fn shop_files(ns: &str, prod: &str, page: &str) -> Vec<(String, String)> {
    let ship_yaml = format!(
        "environments:\n  main: {{namespace: {ns}, path: deploy/overlays/main}}\n  \
         production: {{namespace: {prod}, path: deploy/overlays/production}}\n\
         health: {{timeout: 90s}}\npromotion: {{enabled: false}}\ntests:\n\
         - name: home\n  http: {{service: {{name: web, port: http, path: /health}}, expect: {{bodyContains: 'Welcome'}}}}\n\
         - name: journeys\n  job: tests/journeys.yaml\n"
    );
    let base = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  \
        selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      \
        terminationGracePeriodSeconds: 1\n      containers:\n      - name: web\n        image: ship.dev/demo-app:1\n        \
        imagePullPolicy: Never\n        ports: [{name: http, containerPort: 8080}]\n        \
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}\n        \
        volumeMounts: [{name: page, mountPath: /www}]\n      volumes: [{name: page, configMap: {name: web}}]\n\
        ---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  \
        ports: [{name: http, port: 80, targetPort: http}]\n";
    let overlay = |env: &str| {
        format!(
            "resources: [../../base]\nconfigMapGenerator:\n- name: web\n  literals: ['health={page} ({env})']\n"
        )
    };
    let journeys = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: journeys}\nspec:\n  backoffLimit: 0\n  \
        template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: journeys\n        \
        image: ship.dev/demo-app:1\n        imagePullPolicy: Never\n        \
        command: [sh, -c, 'echo journey search: 3 results as known; echo journey checkout: paid']\n";
    vec![
        ("ship.yaml".into(), ship_yaml),
        (
            "deploy/base/kustomization.yaml".into(),
            "resources: [web.yaml]\n".into(),
        ),
        ("deploy/base/web.yaml".into(), base.into()),
        ("deploy/overlays/main/kustomization.yaml".into(), overlay("main")),
        (
            "deploy/overlays/production/kustomization.yaml".into(),
            overlay("production"),
        ),
        ("tests/journeys.yaml".into(), journeys.into()),
    ]
}

fn commit(remote: &Remote, files: &[(String, String)], message: &str) -> String {
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    remote.commit_files(&files, message).unwrap()
}

/// Resident memory of every process whose command line contains `needle`, in KiB.
fn rss_kib(needle: &str) -> Vec<u64> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.starts_with("/shipd ") || !cmdline.contains(needle) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            found.push(kib);
        }
    }
    found
}

#[tokio::test]
#[ignore = "needs the local control plane and node: tests/run.sh"]
async fn the_chart_runs_ship_in_the_cluster_and_it_deploys_a_kustomization_as_real_pods() {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("incluster").await.unwrap();
    let (main_ns, prod_ns) = (format!("{ns}-main"), format!("{ns}-prod"));
    for namespace in [&main_ns, &prod_ns] {
        assert!(
            cluster
                .kubectl(&["create", "namespace", namespace])
                .unwrap()
                .status
                .success()
        );
    }
    let remote = Remote::new().unwrap();
    let daemon = GitDaemon::start_at(remote.dir.path(), node_ip()).unwrap();
    let first = commit(&remote, &shop_files(&main_ns, &prod_ns, "Welcome"), "the shop");
    remote.push("main", false).unwrap();
    remote.push("production", false).unwrap();

    let token = ship_testkit::cluster::random_hex();
    let secret = cluster.kubectl(&[
        "create",
        "secret",
        "generic",
        "ship-webhook",
        "-n",
        &ns,
        &format!("--from-literal=token={token}"),
    ]);
    assert!(secret.unwrap().status.success());
    // The release name makes the chart's cluster-scoped objects unique to this test.
    let release = format!("ship-{}", &ns[ns.len() - 8..]);
    let install = Command::new(helm())
        .args([
            "install",
            &release,
            &repo_root().join("charts/ship").display().to_string(),
        ])
        .args(["-n", &ns, "--wait", "--timeout", "180s"])
        .args(["--set", &format!("git.url={}", daemon.url("repo.git"))])
        .args([
            "--set",
            "webhook.secret=ship-webhook",
            "--set",
            "image.pullPolicy=Never",
        ])
        .args([
            "--set",
            &format!("environments.namespaces={{{main_ns},{prod_ns}}}"),
        ])
        // polling slower than the test: a push seen quickly came through the webhook
        .args(["--set", "git.pollInterval=10m"])
        .args([
            "--set",
            "controller.lease.duration=6s",
            "--set",
            "controller.lease.renewDeadline=4s",
        ])
        .args(["--set", "controller.lease.retryPeriod=1s"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .unwrap();
    let shipd_logs = || {
        let out = cluster
            .kubectl(&[
                "logs",
                "-n",
                &ns,
                "-l",
                "app.kubernetes.io/name=ship",
                "--tail=40",
                "--prefix",
            ])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        install.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&install.stderr)
    );

    let releases: Api<ShipRelease> = Api::namespaced(cluster.client(), &ns);
    let settled = |commit: String, phase: Phase| {
        let releases = releases.clone();
        async move {
            let name = release_name("main", &commit);
            eventually(&format!("{name} {phase}"), Duration::from_secs(180), || {
                let releases = releases.clone();
                let name = name.clone();
                async move { Ok(releases.get_opt(&name).await?.filter(|r| at_rest_in(r, phase))) }
            })
            .await
        }
    };
    let done = match settled(first.clone(), Phase::Succeeded).await {
        Ok(done) => done,
        Err(err) => panic!("{err:#}\nshipd:\n{}", shipd_logs()),
    };
    let status = done.status.clone().unwrap();
    let journeys = status.tests.iter().find(|t| t.name == "journeys").unwrap();
    assert_eq!(journeys.verdict, TestVerdict::Passed, "{journeys:?}");
    assert!(
        journeys.log.contains("journey checkout: paid"),
        "the Job's real stdout: {journeys:?}"
    );
    let home = status.tests.iter().find(|t| t.name == "home").unwrap();
    assert_eq!(home.verdict, TestVerdict::Passed, "{home:?}");

    // The kustomization was built in the pod: the generated ConfigMap's hashed name is mounted.
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &main_ns);
    let app_pods = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    let volume = app_pods.items[0].spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
        .config_map
        .as_ref()
        .unwrap()
        .name
        .clone();
    assert!(
        volume.starts_with("web-") && volume.len() > 4,
        "kustomize's hashed name: {volume}"
    );

    // `kubectl ship logs` shows the Job's real output, read through the kubelet.
    let plugin_dir = workspace_bin("kubectl-ship").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let logs = Command::new("kubectl")
        .args(["ship", "logs", &done.metadata.name.clone().unwrap(), "-n", &ns])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("PATH", path)
        .output()
        .unwrap();
    let logs_text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs_text.contains("journey search: 3 results as known"),
        "kubectl ship logs: {logs_text}"
    );

    // Two replicas, one leader: the Lease's holder is the Pod labelled for the webhook Service.
    let ship_pods: Api<Pod> = Api::namespaced(cluster.client(), &ns);
    let running = ship_pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=ship"))
        .await
        .unwrap();
    assert_eq!(running.items.len(), 2);
    let leaders: Vec<String> = running
        .items
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("ship.dev/leader"))
                .map(String::as_str)
                == Some("true")
        })
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    let lease = Api::<Lease>::namespaced(cluster.client(), &ns)
        .get(&release)
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(leaders[0].as_str())
    );

    // A push, announced by a signed webhook to the Service (as a git host would): deployed long
    // before the 10-minute poll.
    let second = commit(
        &remote,
        &shop_files(&main_ns, &prod_ns, "Welcome back"),
        "new page",
    );
    remote.push("main", false).unwrap();
    let service = Api::<Service>::namespaced(cluster.client(), &ns)
        .get(&format!("{release}-webhook"))
        .await
        .unwrap();
    let ip = service.spec.unwrap().cluster_ip.unwrap();
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{second}"}}"#);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pushed = Instant::now();
    // The webhook Service selects the leader once it has labelled itself; until the endpoint
    // controller and kube-proxy have caught up (a second or so) a connection is refused, and a
    // git host's delivery would be retried. So is this one, on connection errors only.
    let delivery = ship_testkit::cluster::random_hex();
    let answer = eventually(
        "the webhook Service accepts a connection",
        Duration::from_secs(20),
        || {
            let (body, signature, delivery) = (body.clone(), signature.clone(), delivery.clone());
            let url = format!("http://{ip}:9292/hooks/push");
            async move {
                let sent = reqwest::Client::new()
                    .post(url)
                    .header("X-GitHub-Event", "push")
                    .header("X-GitHub-Delivery", delivery)
                    .header("X-Hub-Signature-256", format!("sha256={signature}"))
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(answer) => Ok(Some(answer)),
                    Err(err) if err.is_connect() => Ok(None),
                    Err(err) => Err(err.into()),
                }
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        202,
        "{}",
        answer.text().await.unwrap_or_default()
    );
    let second_done = match settled(second.clone(), Phase::Succeeded).await {
        Ok(done) => done,
        Err(err) => panic!("{err:#}\nshipd:\n{}", shipd_logs()),
    };
    eprintln!(
        "webhook -> Succeeded with real pods in {:?} ({})",
        pushed.elapsed(),
        second_done.status.unwrap().message.unwrap_or_default()
    );
    // The status page, through the chart's Service (the leader's), as a person's browser would
    // reach it: what is deployed where, the new commit among it.
    let status_service = Api::<Service>::namespaced(cluster.client(), &ns)
        .get(&format!("{release}-status"))
        .await
        .unwrap();
    let status_ip = status_service.spec.unwrap().cluster_ip.unwrap();
    let page = eventually("the status page answers", Duration::from_secs(20), || {
        let url = format!("http://{status_ip}:80/status");
        async move {
            match reqwest::get(url).await {
                Ok(answer) if answer.status().is_success() => Ok(Some(answer.text().await?)),
                Ok(_) => Ok(None),
                Err(err) if err.is_connect() => Ok(None),
                Err(err) => Err(err.into()),
            }
        }
    })
    .await
    .unwrap();
    assert!(
        page.contains(&format!("Deployed: <code>{}</code>", &second[..7])),
        "{page}"
    );
    let rss = rss_kib(&format!("--namespace={ns}"));
    eprintln!("shipd pods' RSS: {rss:?} KiB");
    assert_eq!(rss.len(), 2, "two shipd processes on the node");

    let uninstall = Command::new(helm())
        .args(["uninstall", &release, "-n", &ns, "--wait"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .unwrap();
    assert!(
        uninstall.status.success(),
        "{}",
        String::from_utf8_lossy(&uninstall.stderr)
    );
}
