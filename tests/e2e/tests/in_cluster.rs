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

/// Installs Ship's chart as `ship-<suffix of ns>` into `ns`, following `git_url` and deploying
/// into `namespaces`, with `sets` (`key=value`) over the test bed's settings. Returns the
/// release name, unique to the test, as are the chart's cluster-scoped objects.
fn install_ship(
    cluster: &TestCluster,
    ns: &str,
    git_url: &str,
    namespaces: &[&str],
    sets: &[&str],
) -> String {
    let release = format!("ship-{}", &ns[ns.len() - 8..]);
    let mut command = Command::new(helm());
    command
        .args([
            "install",
            &release,
            &repo_root().join("charts/ship").display().to_string(),
        ])
        .args(["-n", ns, "--wait", "--timeout", "180s"])
        .args([
            "--set",
            &format!("git.url={git_url}"),
            "--set",
            "image.pullPolicy=Never",
        ])
        .args([
            "--set",
            &format!("environments.namespaces={{{}}}", namespaces.join(",")),
        ]);
    for set in sets {
        command.args(["--set", set]);
    }
    let install = command.env("KUBECONFIG", cluster.kubeconfig()).output().unwrap();
    assert!(
        install.status.success(),
        "helm install: {}\nshipd:\n{}",
        String::from_utf8_lossy(&install.stderr),
        shipd_logs(cluster, ns)
    );
    release
}

fn uninstall_ship(cluster: &TestCluster, ns: &str, release: &str) {
    let uninstall = Command::new(helm())
        .args(["uninstall", release, "-n", ns, "--wait"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .unwrap();
    assert!(
        uninstall.status.success(),
        "{}",
        String::from_utf8_lossy(&uninstall.stderr)
    );
}

/// The last lines of every shipd Pod's log, for a failure's report.
fn shipd_logs(cluster: &TestCluster, ns: &str) -> String {
    let out = cluster
        .kubectl(&[
            "logs",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/name=ship",
            "--tail=40",
            "--prefix",
        ])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The release of `environment` at `commit`, once at rest in `phase` (panics with shipd's logs).
async fn settled(
    cluster: &TestCluster,
    ns: &str,
    environment: &str,
    commit: &str,
    phase: Phase,
) -> ShipRelease {
    let releases: Api<ShipRelease> = Api::namespaced(cluster.client(), ns);
    let name = release_name(environment, commit);
    let found = eventually(&format!("{name} {phase}"), Duration::from_secs(180), || {
        let releases = releases.clone();
        let name = name.clone();
        async move { Ok(releases.get_opt(&name).await?.filter(|r| at_rest_in(r, phase))) }
    })
    .await;
    match found {
        Ok(release) => release,
        Err(err) => panic!("{err:#}\nshipd:\n{}", shipd_logs(cluster, ns)),
    }
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
    let release = install_ship(
        &cluster,
        &ns,
        &daemon.url("repo.git"),
        &[&main_ns, &prod_ns],
        &[
            "webhook.secret=ship-webhook",
            // polling slower than the test: a push seen quickly came through the webhook
            "git.pollInterval=10m",
            "controller.lease.duration=6s",
            "controller.lease.renewDeadline=4s",
            "controller.lease.retryPeriod=1s",
        ],
    );

    let done = settled(&cluster, &ns, "main", &first, Phase::Succeeded).await;
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
    let second_done = settled(&cluster, &ns, "main", &second, Phase::Succeeded).await;
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

    uninstall_ship(&cluster, &ns, &release);
}

/// A Helm chart kept in the repository, one values file per environment: the page (a
/// ConfigMap whose checksum rolls the pods), the replica count, and a `helm test` hook that
/// fetches the page through the Service as a user would.
fn web_chart_files(ns: &str, prod: &str, main_page: &str, dependency: bool) -> Vec<(String, String)> {
    let ship_yaml = format!(
        "environments:\n  main:\n    namespace: {ns}\n    helm: {{chart: charts/web, valuesFiles: [deploy/main.yaml], kubeVersion: \"1.20.2\"}}\n  \
         production:\n    namespace: {prod}\n    helm: {{chart: charts/web, releaseName: web, valuesFiles: [deploy/production.yaml], kubeVersion: \"1.20.2\"}}\n\
         health: {{timeout: 90s}}\npromotion: {{enabled: false}}\n"
    );
    let mut chart_yaml = "apiVersion: v2\nname: web\nversion: 0.3.0\nappVersion: \"1\"\n".to_owned();
    if dependency {
        chart_yaml.push_str("dependencies:\n- {name: redis, version: 17.x, repository: \"https://charts.bitnami.com/bitnami\"}\n");
    }
    let web = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-page}\ndata: {health: {{ .Values.page | quote }}}\n\
        ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: {{ .Values.replicaCount }}\n  \
        selector: {matchLabels: {app: web}}\n  template:\n    metadata:\n      labels: {app: web}\n      \
        annotations: {checksum/page: {{ .Values.page | sha256sum | quote }}}\n    spec:\n      \
        terminationGracePeriodSeconds: 1\n      containers:\n      - name: web\n        image: ship.dev/demo-app:1\n        \
        imagePullPolicy: Never\n        ports: [{name: http, containerPort: 8080}]\n        \
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}\n        \
        volumeMounts: [{name: page, mountPath: /www}]\n      volumes: [{name: page, configMap: {name: web-page}}]\n\
        ---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  \
        ports: [{name: http, port: 80, targetPort: http}]\n";
    // No cluster DNS on the test bed: the Service's address comes from the environment
    // variables the kubelet sets for Services that exist when the Pod starts. Ship starts the
    // test once the Service's Endpoints list the new Pods; the node's kube-proxy programs them
    // a moment later (Kubernetes' network programming latency, seconds under load, invisible
    // through the API): until then a connection is refused, or sent to a Pod already gone and
    // never answered (so each try is bounded). A journey through a ClusterIP retries for a few
    // seconds, as a real one should; a wrong page fails at once.
    let hook = r#"apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-page
  annotations: {"helm.sh/hook": test}
spec:
  containers:
  - name: page
    image: ship.dev/demo-app:1
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      for try in 1 2 3 4 5 6 7 8 9 10; do
        page="$(busybox timeout 3 wget -qO- "http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/health")" && break
        echo "try $try: the Service does not answer yet" >&2; sleep 1
      done
      echo "page: $page" >&2
      echo "$page" | grep -q Welcome && echo page ok
"#;
    vec![
        ("ship.yaml".into(), ship_yaml),
        ("charts/web/Chart.yaml".into(), chart_yaml),
        (
            "charts/web/values.yaml".into(),
            "replicaCount: 1\npage: Welcome\n".into(),
        ),
        ("charts/web/templates/web.yaml".into(), web.into()),
        ("charts/web/templates/tests/page.yaml".into(), hook.into()),
        ("deploy/main.yaml".into(), format!("page: {main_page:?}\n")),
        ("deploy/production.yaml".into(), "replicaCount: 2\n".into()),
    ]
}

#[tokio::test]
#[ignore = "needs the local control plane and node: tests/run.sh"]
async fn a_chart_in_the_repository_is_rendered_by_the_helm_in_ships_image() {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("helmchart").await.unwrap();
    let (main_ns, prod_ns) = (format!("{ns}-main"), format!("{ns}-prod"));
    for namespace in [&main_ns, &prod_ns] {
        let created = cluster.kubectl(&["create", "namespace", namespace]).unwrap();
        assert!(created.status.success());
    }
    let remote = Remote::new().unwrap();
    let daemon = GitDaemon::start_at(remote.dir.path(), node_ip()).unwrap();
    let first = commit(
        &remote,
        &web_chart_files(&main_ns, &prod_ns, "Welcome", false),
        "the web chart",
    );
    remote.push("main", false).unwrap();
    remote.push("production", false).unwrap();
    let release = install_ship(
        &cluster,
        &ns,
        &daemon.url("repo.git"),
        &[&main_ns, &prod_ns],
        &["replicaCount=1", "git.pollInterval=2s"],
    );

    // Both environments, each with its values; the chart's test hook ran as a Job test.
    let main = settled(&cluster, &ns, "main", &first, Phase::Succeeded).await;
    let production = settled(&cluster, &ns, "production", &first, Phase::Succeeded).await;
    let hook_test = |release: &ShipRelease, name: &str| {
        let status = release.status.clone().unwrap();
        status
            .tests
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no test {name}: {:?}", status.tests))
    };
    let page = hook_test(&main, "main-page");
    assert_eq!(page.verdict, TestVerdict::Passed, "{page:?}");
    assert!(page.log.contains("page ok"), "the hook's real output: {page:?}");
    assert_eq!(hook_test(&production, "web-page").verdict, TestVerdict::Passed);
    let replicas = |namespace: String| {
        let client = cluster.client();
        async move {
            let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(client, &namespace);
            let web = deployments.get("web").await.unwrap();
            (
                web.spec.unwrap().replicas.unwrap(),
                web.status.unwrap().ready_replicas.unwrap_or(0),
            )
        }
    };
    assert_eq!(replicas(main_ns.clone()).await, (1, 1));
    assert_eq!(
        replicas(prod_ns.clone()).await,
        (2, 2),
        "production's values file"
    );
    let page_of = |namespace: String| {
        let client = cluster.client();
        async move {
            let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, &namespace);
            maps.get("web-page").await.unwrap().data.unwrap()["health"].clone()
        }
    };

    // A values change whose page the test hook rejects: rolled back to the first release.
    let broken = commit(
        &remote,
        &web_chart_files(&main_ns, &prod_ns, "Oops", false),
        "a new page",
    );
    remote.push("main", false).unwrap();
    let rolled_back = settled(&cluster, &ns, "main", &broken, Phase::RolledBack).await;
    let page = hook_test(&rolled_back, "main-page");
    assert_eq!(page.verdict, TestVerdict::Failed, "{page:?}");
    assert!(page.log.contains("Oops"), "{page:?}");
    assert_eq!(page_of(main_ns.clone()).await, "Welcome", "the good page is back");

    // A dependency that is not vendored: Failed in Pending, nothing applied, nothing fetched.
    // What Ship would change if it wrote: the spec (generation), its commit annotation, and the
    // time of its field manager's entry. Not the resourceVersion: the Deployment controller
    // still writes its status after a rollback, and on 1.36 that comes later than on 1.20.
    let deployment_version = || {
        let client = cluster.client();
        let namespace = main_ns.clone();
        async move {
            let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(client, &namespace);
            let meta = deployments.get("web").await.unwrap().metadata;
            let ships = meta
                .managed_fields
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.manager.as_deref() == Some(ship_api::FIELD_MANAGER))
                .map(|m| format!("{:?} {:?}", m.operation, m.time))
                .collect::<Vec<_>>();
            (
                meta.generation,
                meta.annotations
                    .unwrap_or_default()
                    .get(ship_api::keys::COMMIT)
                    .cloned(),
                ships,
            )
        }
    };
    let before = deployment_version().await;
    let missing = commit(
        &remote,
        &web_chart_files(&main_ns, &prod_ns, "Welcome", true),
        "add redis",
    );
    remote.push("main", false).unwrap();
    let failed = settled(&cluster, &ns, "main", &missing, Phase::Failed).await;
    assert_eq!(
        ship_testkit::stack::ready_reason(&failed),
        "ChartDependencyMissing"
    );
    let status = failed.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("dependency \"redis\"") && message.contains("helm dependency build charts/web"),
        "{message}"
    );
    assert!(
        status.inventory.is_empty(),
        "nothing applied: {:?}",
        status.inventory
    );
    assert_eq!(
        deployment_version().await,
        before,
        "the running Deployment is untouched"
    );
    assert_eq!(page_of(main_ns.clone()).await, "Welcome");

    uninstall_ship(&cluster, &ns, &release);
}
