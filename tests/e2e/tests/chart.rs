//! The Helm chart and the plain manifests, against real helm and the real apiserver: lint and
//! template pass, the values schema refuses bad values, the rendered manifests pass a
//! server-side dry run, `deploy/` is fresh, and with the chart's RBAC (shipd impersonating its
//! ServiceAccount) a release completes in Ship's namespaces and is refused elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use ship_api::Phase;
use ship_testkit::cluster::{TestCluster, repo_root};
use ship_testkit::stack::{Stack, release_name};

const SETTLE: Duration = Duration::from_secs(60);

fn helm() -> PathBuf {
    ship_testkit::cluster::helm().unwrap()
}

fn chart() -> PathBuf {
    repo_root().join("charts/ship")
}

/// `helm template` of the chart for Kubernetes 1.20 with `sets`; the YAML stream.
fn template(namespace: &str, sets: &[&str]) -> String {
    template_for("1.20.2", namespace, sets)
}

/// `helm template` of the chart for Kubernetes `version` with `sets`; the YAML stream.
fn template_for(version: &str, namespace: &str, sets: &[&str]) -> String {
    template_release("ship", version, namespace, sets)
}

/// `helm template` of release `release` of the chart (its cluster-scoped objects are named after
/// it, so tests that apply them use a release name of their own).
fn template_release(release: &str, version: &str, namespace: &str, sets: &[&str]) -> String {
    let mut args = vec![
        "template".to_owned(),
        release.into(),
        chart().display().to_string(),
        "--namespace".into(),
        namespace.into(),
        "--kube-version".into(),
        version.into(),
    ];
    for set in sets {
        args.extend(["--set".to_owned(), (*set).to_owned()]);
    }
    let out = Command::new(helm()).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kubectl_stdin(cluster: &TestCluster, args: &[&str], input: &str) -> std::process::Output {
    cluster.kubectl_stdin(args, input).unwrap()
}

#[test]
#[ignore = "needs helm (tests/tools/helm.sh installs it): tests/run.sh"]
fn chart_lints_renders_and_its_schema_refuses_bad_values() {
    let lint = |sets: &[&str]| {
        let mut args = vec!["lint".to_owned(), chart().display().to_string()];
        for set in sets {
            args.extend(["--set".to_owned(), (*set).to_owned()]);
        }
        Command::new(helm()).args(&args).output().unwrap()
    };
    let good = lint(&["git.url=https://git.example/app.git"]);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stdout));
    for bad in [
        "git.url=not-a-url",
        "git.url=github.com/org/app",
        "git.credentialsSecret=Not_A_Name",
        "logFormat=xml",
        "replicaCount=0",
    ] {
        let out = lint(&["git.url=https://git.example/app.git", bad]);
        assert!(!out.status.success(), "{bad} was accepted");
    }
    // Every form of repository URL git and Ship take.
    for url in [
        "https://github.com/org/app.git",
        "ssh://git@github.com/org/app.git",
        "git@github.com:org/app.git",
        "git://git.example/app.git",
        "file:///srv/git/app.git",
    ] {
        let out = lint(&[&format!("git.url={url}")]);
        assert!(
            out.status.success(),
            "{url} refused: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // An unknown key is refused, by name, at the top and inside a known section.
    for (unknown, name) in [
        ("bogusKey=1", "bogusKey"),
        ("git.urll=https://git.example/app.git", "urll"),
        ("monitoring.serviceMonitor.enable=true", "enable"),
    ] {
        let out = lint(&["git.url=https://git.example/app.git", unknown]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{unknown} was accepted");
        assert!(
            said.contains(name),
            "{unknown}: the refusal does not name it: {said}"
        );
    }
    let rendered = template(
        "ship",
        &[
            "git.url=https://git.example/app.git",
            "webhook.secret=ship-webhook",
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.dashboard.enabled=true",
        ],
    );
    for kind in [
        "kind: Deployment",
        "kind: ServiceAccount",
        "kind: ServiceMonitor",
        "kind: PrometheusRule",
        "kind: PodDisruptionBudget",
    ] {
        assert!(rendered.contains(kind), "{kind} missing");
    }
    // Hardened and led: non-root, read-only root filesystem, two replicas with leader election.
    for needle in [
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "replicas: 2",
        "- --leader-elect",
        "alert: ShipReleaseRolledBack",
    ] {
        assert!(rendered.contains(needle), "{needle} missing");
    }
    assert!(!rendered.contains("cluster-admin"));
    // The out-of-sync delay is a setting; every other rule is the plain file's, as written.
    let out_of_sync_for = |rendered: &str| -> Vec<String> {
        let doc = rendered
            .split("\n---")
            .find(|d| d.contains("kind: PrometheusRule"))
            .unwrap();
        let rule: serde_json::Value = serde_norway::from_str(doc).unwrap();
        rule["spec"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .filter(|r| r["alert"] == "ShipEnvironmentOutOfSync")
            .map(|r| r["for"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(out_of_sync_for(&rendered), ["15m"]);
    let slower = template(
        "ship",
        &[
            "git.url=https://git.example/app.git",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.prometheusRule.outOfSyncFor=42m",
        ],
    );
    assert_eq!(out_of_sync_for(&slower), ["42m"]);
    assert!(slower.contains("alert: ShipBranchMissing"));
    // No secret value can reach the chart: only names.
    assert!(rendered.contains("- --webhook-secret=ship-webhook"));

    // The ServiceMonitor selects exactly one of the chart's Services: the metrics one (the
    // status page's and the webhook's carry the same app labels).
    let docs: Vec<serde_json::Value> = rendered
        .split("\n---")
        .filter_map(|d| serde_norway::from_str(d).ok())
        .collect();
    let monitor = docs.iter().find(|d| d["kind"] == "ServiceMonitor").unwrap();
    let wanted = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let selected: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter(|d| {
            wanted
                .iter()
                .all(|(k, v)| d["metadata"]["labels"].get(k) == Some(v))
        })
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(selected, ["ship"], "the ServiceMonitor selects {selected:?}");
    assert_eq!(docs.iter().filter(|d| d["kind"] == "Service").count(), 3);

    // The values every controller chart has.
    let custom = template(
        "ship",
        &[
            "git.url=git@github.com:org/app.git",
            "extraArgs={--history-limit=3}",
            "extraEnv[0].name=HTTPS_PROXY",
            "extraEnv[0].value=http://proxy.example:3128",
            "podAnnotations.team=delivery",
            "podLabels.cost-centre=ops",
            "imagePullSecrets[0].name=my-registry",
            "priorityClassName=system-cluster-critical",
            "logLevel=info\\,ship_engine=debug",
            "logFormat=plain",
            "nodeSelector.disk=ssd",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "resources.limits.memory=128Mi",
            "podSecurityContext.runAsUser=1000",
        ],
    );
    let deployment: serde_json::Value = custom
        .split("\n---")
        .filter_map(|d| serde_norway::from_str::<serde_json::Value>(d).ok())
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args.last(),
        Some(&"--history-limit=3"),
        "extraArgs come last: {args:?}"
    );
    assert!(args.contains(&"--log-format=plain"), "{args:?}");
    assert!(
        args.contains(&"--repo-url=git@github.com:org/app.git"),
        "{args:?}"
    );
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(env("RUST_LOG"), Some(serde_json::json!("info,ship_engine=debug")));
    assert_eq!(
        env("HTTPS_PROXY"),
        Some(serde_json::json!("http://proxy.example:3128"))
    );
    assert_eq!(pod["metadata"]["annotations"]["team"], "delivery");
    assert_eq!(pod["metadata"]["labels"]["cost-centre"], "ops");
    assert_eq!(pod["spec"]["imagePullSecrets"][0]["name"], "my-registry");
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["spec"]["nodeSelector"]["disk"], "ssd");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 1000);
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(deployment["metadata"]["labels"]["ship.dev/component"], "shipd");
}

#[test]
#[ignore = "needs helm (tests/tools/helm.sh installs it): tests/run.sh"]
fn plain_manifests_in_deploy_are_fresh() {
    let fresh = tempfile::tempdir().unwrap();
    let out = Command::new(repo_root().join("deploy/render.sh"))
        .arg(fresh.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["ship/ship.yaml", "ship/pdb.yaml"] {
        let committed = std::fs::read_to_string(repo_root().join("deploy").join(file)).unwrap();
        let rendered = std::fs::read_to_string(fresh.path().join(file)).unwrap();
        assert!(
            committed == rendered,
            "deploy/{file} is stale: run deploy/render.sh"
        );
    }
}

#[test]
#[ignore = "needs helm (tests/tools/helm.sh installs it): tests/run.sh"]
fn the_chart_and_plain_manifests_use_only_apis_their_kubernetes_serves() {
    use ship_testkit::apis::{NEWEST, OLDEST, unserved_in};
    let everything = [
        "git.url=https://git.example/app.git",
        "webhook.secret=hook",
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.dashboard.enabled=true",
    ];
    // The chart renders for the cluster it is installed in: the oldest and the newest both get
    // only what they serve.
    for (version, minor) in [
        ("1.20.2", OLDEST),
        ("1.35.0", NEWEST),
        ("1.24.0", (1, 24)),
        ("1.25.0", (1, 25)),
    ] {
        let rendered = template_for(version, "ship", &everything);
        assert_eq!(
            unserved_in(&rendered, minor),
            Vec::<String>::new(),
            "chart for {version}"
        );
    }
    // The plain manifests are rendered once, so they must apply on every supported version.
    let plain = std::fs::read_to_string(repo_root().join("deploy/ship/ship.yaml")).unwrap();
    let crds = [
        "shipreleases.yaml",
        "shippromotions.yaml",
        "shipenvironments.yaml",
    ]
    .map(|f| std::fs::read_to_string(repo_root().join("deploy/crds").join(f)).unwrap())
    .join("\n---\n");
    for minor in [OLDEST, (1, 21), (1, 22), (1, 25), (1, 26), (1, 29), NEWEST] {
        assert_eq!(
            unserved_in(&plain, minor),
            Vec::<String>::new(),
            "deploy/ship/ship.yaml on {minor:?}"
        );
        assert_eq!(
            unserved_in(&crds, minor),
            Vec::<String>::new(),
            "deploy/crds on {minor:?}"
        );
    }
    let pdb = std::fs::read_to_string(repo_root().join("deploy/ship/pdb.yaml")).unwrap();
    assert!(pdb.contains("kind: PodDisruptionBudget"));
    for minor in [(1, 21), (1, 25), NEWEST] {
        assert_eq!(
            unserved_in(&pdb, minor),
            Vec::<String>::new(),
            "deploy/ship/pdb.yaml on {minor:?}"
        );
    }
    // The check itself can fail: the chart rendered for 1.20 holds a PDB that 1.25 does not serve.
    let old = template_for("1.20.2", "ship", &everything);
    assert!(
        !unserved_in(&old, (1, 25)).is_empty(),
        "the table must catch policy/v1beta1 on 1.25"
    );
}

/// A kubeconfig like `cluster`'s that acts as `user` (impersonation).
fn impersonating(cluster: &TestCluster, user: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(cluster.kubeconfig()).unwrap();
    let mut config: serde_json::Value = serde_norway::from_str(&text).unwrap();
    for entry in config["users"].as_array_mut().unwrap() {
        entry["user"]["as"] = serde_json::json!(user);
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_norway::to_string(&config).unwrap()).unwrap();
    path
}

#[tokio::test]
#[ignore = "needs the local control plane and helm: tests/run.sh"]
async fn with_the_charts_rbac_shipd_releases_in_its_namespaces_only() {
    let stack = Stack::new("chart-rbac", "{enabled: false}").await.unwrap();
    let (ns, prod) = (stack.ns.clone(), format!("{}-prod", stack.ns));
    let outside = stack.cluster.namespace("chart-outside").await.unwrap();
    // Not "ship": the demo installs that release into the same cluster.
    let release = format!("ship-{}", &ns[ns.len() - 8..]);
    // Rendered for the test bed's Kubernetes, as helm install renders for the cluster at hand.
    let rendered = template_release(
        &release,
        &ship_testkit::cluster::testbed_version(),
        &ns,
        &[
            "git.url=https://git.example/app.git",
            &format!("environments.namespaces={{{ns},{prod}}}"),
        ],
    );
    // Every rendered manifest passes a server-side dry run on the real apiserver.
    let dry = kubectl_stdin(
        &stack.cluster,
        &["apply", "--dry-run=server", "-f", "-"],
        &rendered,
    );
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    // The ServiceAccount and its RBAC, for real.
    let rbac: Vec<&str> = rendered
        .split("\n---")
        .filter(|doc| {
            [
                "kind: ServiceAccount",
                "kind: Role",
                "kind: RoleBinding",
                "kind: ClusterRole",
                "kind: ClusterRoleBinding",
            ]
            .iter()
            .any(|k| doc.contains(&format!("\n{k}\n")))
        })
        .collect();
    assert!(rbac.len() >= 8, "{} RBAC documents", rbac.len());
    let applied = kubectl_stdin(&stack.cluster, &["apply", "-f", "-"], &rbac.join("\n---\n"));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    // shipd as the chart's ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = impersonating(
        &stack.cluster,
        &format!("system:serviceaccount:{ns}:{release}"),
        dir.path(),
    );
    let denied = Command::new("kubectl")
        .args(["auth", "can-i", "create", "configmaps", "-n", &outside])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&denied.stdout).trim(), "no");
    stack.remote.push("main", false).unwrap();
    let good = stack.branch_tip("main").unwrap();
    let data = tempfile::tempdir().unwrap();
    let shipd = stack.spawn_shipd_as(&kubeconfig, data.path(), &[]).unwrap();
    stack
        .settled(&release_name("main", &good), Phase::Succeeded, SETTLE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", shipd.logs()));

    // A commit that reaches outside (ship.yaml allows the namespace, RBAC does not): refused
    // by the dry run, with the reason, and nothing is created there.
    let ship_yaml = std::fs::read_to_string(stack.remote.work.join("ship.yaml"))
        .unwrap()
        .replace(
            &format!("main: {{namespace: {ns}}}"),
            &format!("main: {{namespace: {ns}, allowedNamespaces: [{outside}]}}"),
        );
    let outside_cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: sneaky, namespace: {outside}}}\ndata: {{a: b}}\n"
    );
    let bad = stack
        .push_main(
            &[
                ("ship.yaml", &ship_yaml),
                ("deploy/main/outside.yaml", &outside_cm),
            ],
            "reach outside",
        )
        .unwrap();
    let refused = stack
        .settled(&release_name("main", &bad), Phase::Failed, SETTLE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", shipd.logs()));
    let message = refused.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("forbidden"), "{message}");
    let sneaky = Api::<ConfigMap>::namespaced(stack.cluster.client(), &outside)
        .get_opt("sneaky")
        .await
        .unwrap();
    assert!(sneaky.is_none());
    let web = Api::<ConfigMap>::namespaced(stack.cluster.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.metadata
            .annotations
            .unwrap_or_default()
            .get(ship_api::keys::COMMIT),
        Some(&good),
        "the environment keeps the good commit"
    );
    // The cluster-scoped RBAC outlives the namespaces: remove it.
    let cluster_scoped: Vec<&str> = rbac
        .iter()
        .copied()
        .filter(|doc| doc.contains("\nkind: ClusterRole"))
        .collect();
    let deleted = kubectl_stdin(
        &stack.cluster,
        &["delete", "-f", "-"],
        &cluster_scoped.join("\n---\n"),
    );
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
}

/// `kubectl apply -k deploy/` installs every CRD that `deploy/crds/` holds (one was missing
/// once, and shipd then never became ready).
#[test]
fn the_plain_install_lists_every_crd() {
    let kustomization = std::fs::read_to_string(repo_root().join("deploy/kustomization.yaml")).unwrap();
    let listed: serde_json::Value = serde_norway::from_str(&kustomization).unwrap();
    let resources: Vec<&str> = listed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let mut crds = 0;
    for file in std::fs::read_dir(repo_root().join("deploy/crds"))
        .unwrap()
        .flatten()
    {
        let name = format!("crds/{}", file.file_name().to_string_lossy());
        assert!(
            resources.contains(&name.as_str()),
            "deploy/kustomization.yaml does not list {name}"
        );
        crds += 1;
    }
    assert_eq!(crds, ship_api::crds().unwrap().len());
}
