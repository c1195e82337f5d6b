//! Real repositories, committed with git, fetched and exported by ship-git, rendered and
//! validated: good layouts render, and every bad one fails with its own clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use ship_git::mirror::{ExportLimits, ForcePushPolicy};
use ship_git::{Credentials, Mirror};
use ship_render::tools::Processes;
use ship_render::{Limits, Rendered, render_environment};
use ship_testkit::git::Remote;

const SHIP_YAML: &str = "environments:\n  main: {namespace: app-main}\n  production: {namespace: app-prod}\n";

enum File<'a> {
    Text(&'a str, String),
    Link(&'a str, &'a str),
}

fn text(path: &str, content: impl Into<String>) -> File<'_> {
    File::Text(path, content.into())
}

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{k: v}}\n")
}

/// Commits `files` on main in a fresh repository, fetches it into a mirror, exports the commit
/// and renders environment `main`. Errors come back as (label, message).
fn load(files: &[File<'_>]) -> Result<Rendered, (String, String)> {
    load_made(files, |_| {})
}

/// [`load`], with `make` adding to the work tree first (a tool that writes files).
fn load_made(files: &[File<'_>], make: impl FnOnce(&std::path::Path)) -> Result<Rendered, (String, String)> {
    let remote = Remote::new().unwrap();
    make(&remote.work);
    for file in files {
        match file {
            File::Text(path, content) => {
                let full = remote.work.join(path);
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(full, content).unwrap();
            }
            File::Link(path, target) => {
                let full = remote.work.join(path);
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, full).unwrap();
            }
        }
    }
    remote.git(&["add", "-A"]).unwrap();
    remote.git(&["commit", "-q", "-m", "manifests"]).unwrap();
    remote.push("main", false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("m.git"), &remote.file_url()).unwrap();
    mirror
        .fetch(&["main".into()], &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    let tip = mirror.tip("main").unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    mirror
        .export_tree(tip, &tree, ExportLimits::default())
        .map_err(|e| (e.label().to_owned(), e.to_string()))?;
    render_environment(&Processes, &tree, "main", &Limits::default())
        .map_err(|e| (e.label().to_owned(), e.to_string()))
}

#[test]
fn plain_directory_renders_with_namespaces_defaulted() {
    let multi = format!("{}---\n# a comment-only document\n---\n{}", cm("a"), cm("b"));
    let rendered = load(&[
        text("ship.yaml", SHIP_YAML),
        text("deploy/main/config.yaml", multi),
        text(
            "deploy/main/nested/more.json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
        ),
        text("deploy/main/README.md", "not a manifest"),
        text("deploy/production/config.yaml", cm("prod-only")),
    ])
    .unwrap();
    let names: Vec<_> = rendered
        .manifests
        .iter()
        .map(|m| m.object["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(
        rendered
            .manifests
            .iter()
            .all(|m| m.object["metadata"]["namespace"] == "app-main")
    );
    assert_eq!(rendered.manifests[1].source, "deploy/main/config.yaml#3");
}

#[test]
fn kustomize_overlay_renders() {
    let rendered = load(&[
        text("ship.yaml", SHIP_YAML),
        text("deploy/base/kustomization.yaml", "resources: [config.yaml]\n"),
        text("deploy/base/config.yaml", cm("settings")),
        text(
            "deploy/main/kustomization.yaml",
            "resources: [../base]\nnamePrefix: main-\nnamespace: app-main\n",
        ),
    ])
    .unwrap();
    assert_eq!(rendered.manifests.len(), 1);
    assert_eq!(rendered.manifests[0].object["metadata"]["name"], "main-settings");
    assert_eq!(rendered.manifests[0].object["metadata"]["namespace"], "app-main");
}

#[test]
fn symlinks_inside_the_repository_are_followed() {
    let rendered = load(&[
        text("ship.yaml", SHIP_YAML),
        text("shared/config.yaml", cm("shared")),
        File::Link("deploy/main/shared.yaml", "../../shared/config.yaml"),
    ])
    .unwrap();
    assert_eq!(rendered.manifests[0].object["metadata"]["name"], "shared");
}

#[test]
fn each_bad_repository_gets_its_own_clear_error() {
    let big = format!("{}# {}\n", cm("big"), "x".repeat(1 << 20));
    let many = {
        let items: String = (0..10_001)
            .map(|i| format!("- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: c{i}}}}}\n"))
            .collect();
        format!("apiVersion: v1\nkind: List\nitems:\n{items}")
    };
    let bomb = {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for pair in ["a", "b", "c", "d", "e", "f", "g", "h", "i"].windows(2) {
            let (p, c) = (pair[0], pair[1]);
            s.push_str(&format!(
                "{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            ));
        }
        s
    };
    let cases: Vec<(&str, Vec<File<'_>>, &str, &str)> = vec![
        (
            "invalid YAML",
            vec![
                text("ship.yaml", SHIP_YAML),
                text("deploy/main/a.yaml", "metadata: {name: [\n"),
            ],
            "InvalidYaml",
            "deploy/main/a.yaml#1",
        ),
        (
            "missing kind",
            vec![
                text("ship.yaml", SHIP_YAML),
                text("deploy/main/a.yaml", "apiVersion: v1\nmetadata: {name: a}\n"),
            ],
            "MissingField",
            "missing kind",
        ),
        (
            "missing name",
            vec![
                text("ship.yaml", SHIP_YAML),
                text(
                    "deploy/main/a.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
                ),
            ],
            "MissingField",
            "missing metadata.name",
        ),
        (
            "duplicate object",
            vec![
                text("ship.yaml", SHIP_YAML),
                text("deploy/main/a.yaml", cm("same")),
                text("deploy/main/b.yaml", cm("same")),
            ],
            "DuplicateObject",
            "ConfigMap/same is declared twice",
        ),
        (
            "Secret in git",
            vec![
                text("ship.yaml", SHIP_YAML),
                text(
                    "deploy/main/s.yaml",
                    "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n",
                ),
            ],
            "SecretInGit",
            "reference it by name",
        ),
        (
            "symlink escape",
            vec![
                text("ship.yaml", SHIP_YAML),
                text("deploy/main/a.yaml", cm("a")),
                File::Link("deploy/main/passwd.yaml", "../../../../etc/passwd"),
            ],
            "UnsafeTree",
            "points outside the repository",
        ),
        (
            "absolute symlink",
            vec![text("ship.yaml", SHIP_YAML), File::Link("deploy/main", "/etc")],
            "UnsafeTree",
            "points outside the repository",
        ),
        (
            "alias bomb",
            vec![text("ship.yaml", SHIP_YAML), text("deploy/main/bomb.yaml", bomb)],
            "InvalidYaml",
            "repetition limit",
        ),
        (
            "unknown ship.yaml field",
            vec![text(
                "ship.yaml",
                "environments:\n  main: {namespace: app-main, colour: blue}\n",
            )],
            "ConfigParse",
            "unknown field `colour`",
        ),
        (
            "wrong type in ship.yaml",
            vec![text(
                "ship.yaml",
                "environments:\n  main: {}\nhealth:\n  timeout: [5m]\n",
            )],
            "ConfigParse",
            "health.timeout",
        ),
        (
            "invalid ship.yaml value",
            vec![text(
                "ship.yaml",
                "environments:\n  main: {}\nhealth: {timeout: soon}\n",
            )],
            "ConfigParse",
            "health.timeout",
        ),
        (
            "ship.yaml path escape",
            vec![text("ship.yaml", "environments:\n  main: {path: ../outside}\n")],
            "ConfigInvalid",
            "environments.main.path",
        ),
        (
            "no ship.yaml",
            vec![text("deploy/main/a.yaml", cm("a"))],
            "ConfigMissing",
            "ship.yaml not found",
        ),
        (
            "missing path",
            vec![text("ship.yaml", SHIP_YAML)],
            "MissingPath",
            "deploy/main",
        ),
        (
            "other namespace",
            vec![
                text("ship.yaml", SHIP_YAML),
                text(
                    "deploy/main/a.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: kube-system}\n",
                ),
            ],
            "NamespaceNotAllowed",
            "\"kube-system\"",
        ),
        (
            "cluster-scoped kind",
            vec![
                text("ship.yaml", SHIP_YAML),
                text(
                    "deploy/main/r.yaml",
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: admin-ish}\n",
                ),
            ],
            "ClusterScopedNotAllowed",
            "clusterScopedKinds",
        ),
        (
            "file too large",
            vec![text("ship.yaml", SHIP_YAML), text("deploy/main/big.yaml", big)],
            "FileTooLarge",
            "deploy/main/big.yaml",
        ),
        (
            "too many objects",
            vec![text("ship.yaml", SHIP_YAML), text("deploy/main/many.yaml", many)],
            "TooManyObjects",
            "10000",
        ),
        (
            "scalar document",
            vec![
                text("ship.yaml", SHIP_YAML),
                text("deploy/main/a.yaml", "hello\n"),
            ],
            "NotAnObject",
            "deploy/main/a.yaml#1",
        ),
        (
            "invalid name",
            vec![
                text("ship.yaml", SHIP_YAML),
                text("deploy/main/a.yaml", cm("Web_Server")),
            ],
            "InvalidName",
            "Web_Server",
        ),
        (
            "broken kustomization",
            vec![
                text("ship.yaml", SHIP_YAML),
                text("deploy/main/kustomization.yaml", "resources: [missing.yaml]\n"),
            ],
            "KustomizeFailed",
            "missing.yaml",
        ),
    ];
    let mut labels = std::collections::BTreeSet::new();
    for (name, files, label, fragment) in &cases {
        let (got_label, message) = match load(files) {
            Ok(r) => panic!("{name}: rendered {} objects, expected {label}", r.manifests.len()),
            Err(e) => e,
        };
        assert_eq!(&got_label, label, "{name}: {message}");
        assert!(
            message.contains(fragment),
            "{name}: {message:?} lacks {fragment:?}"
        );
        labels.insert(got_label);
    }
    assert!(labels.len() >= 15, "{} distinct faults: {labels:?}", labels.len());
}

#[test]
fn config_errors_name_the_line() {
    let (_, message) = load(&[text(
        "ship.yaml",
        "environments:\n  main:\n    namespace: app-main\n    colour: blue\n",
    )])
    .unwrap_err();
    assert!(message.starts_with("ship.yaml: "), "{message}");
    assert!(message.contains("line 4"), "{message}");
}

/// Two environments share one base and differ only in `vars`.
const SHARED_BASE: &str = "environments:\n  main: {namespace: app-main, path: deploy/base, vars: {replicas: \"1\", tag: \"1.5.0-rc1\"}}\n  production: {namespace: app-prod, path: deploy/base, vars: {replicas: \"3\", tag: \"1.4.2\"}}\n";

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: ${replicas}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: \"registry.example.com/web:${tag}\"\n        env:\n        - {name: GREETING, value: \"${greeting:=hello}\"}\n        - {name: SCRIPT, value: \"echo $${HOME} $PATH\"}\n";

#[test]
fn a_shared_base_takes_each_environments_vars() {
    let rendered = load(&[text("ship.yaml", SHARED_BASE), text("deploy/base/web.yaml", WEB)]).unwrap();
    let web = &rendered.manifests[0].object;
    assert_eq!(web["spec"]["replicas"], 1, "an integer, as YAML reads `1`");
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/web:1.5.0-rc1");
    assert_eq!(container["env"][0]["value"], "hello");
    assert_eq!(container["env"][1]["value"], "echo ${HOME} $PATH");
    // Production renders the same files with its own values.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("deploy/base")).unwrap();
    std::fs::write(root.path().join("ship.yaml"), SHARED_BASE).unwrap();
    std::fs::write(root.path().join("deploy/base/web.yaml"), WEB).unwrap();
    let production = render_environment(&Processes, root.path(), "production", &Limits::default()).unwrap();
    let web = &production.manifests[0].object;
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(web["metadata"]["namespace"], "app-prod");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/web:1.4.2"
    );
}

#[test]
fn an_undeclared_variable_fails_naming_the_file_and_line() {
    let web = WEB.replace("${tag}", "${version}");
    let (label, message) =
        load(&[text("ship.yaml", SHARED_BASE), text("deploy/base/web.yaml", web)]).unwrap_err();
    assert_eq!(label, "UndeclaredVariable");
    assert!(
        message.starts_with("deploy/base/web.yaml:12: ${version} is not declared"),
        "{message}"
    );
    // Through kustomize: the overlay's output is substituted, and named as such.
    let (label, message) = load(&[
        text("ship.yaml", SHARED_BASE.replace("deploy/base", "deploy/overlay")),
        text("deploy/base/kustomization.yaml", "resources: [config.yaml]\n"),
        text(
            "deploy/base/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {tag: \"${tag}\", host: \"${host}\"}\n",
        ),
        text("deploy/overlay/kustomization.yaml", "resources: [../base]\n"),
    ])
    .unwrap_err();
    assert_eq!(label, "UndeclaredVariable");
    assert!(message.starts_with("deploy/overlay (kustomize):"), "{message}");
    assert!(message.contains("${host} is not declared"), "{message}");
    // A bad name in ship.yaml is refused when ship.yaml is read.
    let (label, message) = load(&[
        text(
            "ship.yaml",
            SHARED_BASE.replace("replicas: \"1\"", "1replicas: \"1\""),
        ),
        text("deploy/base/web.yaml", WEB),
    ])
    .unwrap_err();
    assert_eq!(label, "ConfigInvalid");
    assert!(message.contains("environments.main.vars"), "{message}");
}

/// A small chart as teams write one: values with defaults, a helper, a test hook.
fn shop_chart() -> Vec<File<'static>> {
    vec![
        text(
            "charts/shop/Chart.yaml",
            "apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: \"1.4.2\"\n",
        ),
        text(
            "charts/shop/values.yaml",
            "replicaCount: 1\nimage: {repository: registry.example.com/shop, tag: \"\"}\ngreeting: hello\nextra: {keep: default}\n",
        ),
        text(
            "charts/shop/templates/_helpers.tpl",
            "{{- define \"shop.fullname\" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}\n",
        ),
        text(
            "charts/shop/templates/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ include \"shop.fullname\" . }}\n  labels: {app.kubernetes.io/managed-by: {{ .Release.Service }}}\nspec:\n  replicas: {{ .Values.replicaCount }}\n  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    spec:\n      containers:\n      - name: shop\n        image: \"{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}\"\n        env:\n        - {name: GREETING, value: {{ .Values.greeting | quote }}}\n        - {name: NAMESPACE, value: {{ .Release.Namespace | quote }}}\n",
        ),
        text(
            "charts/shop/templates/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ include \"shop.fullname\" . }}-settings\n  annotations: {helm.sh/resource-policy: keep}\ndata:\n{{ toYaml .Values.extra | indent 2 }}\n",
        ),
        text(
            "charts/shop/templates/tests/test-connection.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ include \"shop.fullname\" . }}-test-connection\n  annotations: {\"helm.sh/hook\": test, \"helm.sh/hook-delete-policy\": before-hook-creation}\nspec:\n  containers:\n  - {name: wget, image: busybox, command: [wget, \"{{ include \"shop.fullname\" . }}:80\"]}\n  restartPolicy: Never\n",
        ),
        text(
            "charts/shop/values-production.yaml",
            "replicaCount: 3\nimage: {tag: \"1.4.1\"}\n",
        ),
    ]
}

const CHART_SHIP_YAML: &str = "environments:\n  main:\n    namespace: app-main\n    helm: {chart: charts/shop, values: {greeting: hi, extra: {keep: null, added: yes}}}\n  production:\n    namespace: app-prod\n    helm:\n      chart: charts/shop\n      releaseName: shop\n      valuesFiles: [charts/shop/values-production.yaml]\n      kubeVersion: \"1.20.2\"\n";

fn with(mut files: Vec<File<'static>>, more: Vec<File<'static>>) -> Vec<File<'static>> {
    files.extend(more);
    files
}

fn helm_installed() -> bool {
    // tests/run.sh always sets SHIP_HELM; only a developer's bare `cargo test` may lack helm.
    match ship_render::helm::helm_binary() {
        Some(helm) => {
            assert!(helm.is_file(), "SHIP_HELM={} is not a file", helm.display());
            true
        }
        None => {
            eprintln!("skipped: no helm (tests/run.sh sets SHIP_HELM from tests/tools/helm.sh)");
            false
        }
    }
}

#[test]
fn a_chart_renders_each_environment_with_its_values() {
    if !helm_installed() {
        return;
    }
    let files = with(shop_chart(), vec![text("ship.yaml", CHART_SHIP_YAML)]);
    let main = load(&files).unwrap();
    let kinds: Vec<_> = main
        .manifests
        .iter()
        .map(|m| {
            (
                m.object["kind"].as_str().unwrap(),
                m.object["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("ConfigMap", "main-shop-settings"), ("Deployment", "main-shop")]
    );
    let settings = &main.manifests[0];
    assert_eq!(settings.source, "charts/shop/templates/settings.yaml#1");
    // Inline values merge over the chart's; null removes a default, as with `helm --set`.
    assert_eq!(
        settings.object["data"],
        serde_json::json!({"added": "yes"}),
        "YAML 1.2: `yes` is a string"
    );
    assert_eq!(
        settings.object["metadata"]["annotations"]["ship.dev/prune"],
        "disabled"
    );
    let deployment = &main.manifests[1].object;
    assert_eq!(deployment["metadata"]["namespace"], "app-main");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["value"], "hi");
    assert_eq!(
        env[1]["value"], "app-main",
        ".Release.Namespace is the environment's"
    );
    // The test hook is not deployed: it is the environment's Job test.
    assert_eq!(main.test_jobs.len(), 1);
    let (name, job) = &main.test_jobs[0];
    assert_eq!(name, "main-shop-test-connection");
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["metadata"]["namespace"], "app-main");
    assert!(job["metadata"]["annotations"].get("helm.sh/hook").is_none());
    let test = main.config.tests.iter().find(|t| &t.name == name).unwrap();
    assert_eq!(test.environments, ["main"]);
    assert_eq!(
        test.job.as_deref(),
        Some("charts/shop/templates/tests/test-connection.yaml#1")
    );

    // Production: its values file, its release name, its namespace.
    let root = tempfile::tempdir().unwrap();
    for file in &files {
        if let File::Text(path, content) = file {
            let full = root.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
    }
    let production = render_environment(&Processes, root.path(), "production", &Limits::default()).unwrap();
    let deployment = &production.manifests[1].object;
    assert_eq!(deployment["metadata"]["name"], "shop-shop");
    assert_eq!(deployment["metadata"]["namespace"], "app-prod");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/shop:1.4.1");
    assert_eq!(container["env"][0]["value"], "hello");
    assert_eq!(
        production.manifests[0].object["data"],
        serde_json::json!({"keep": "default"})
    );
}

#[test]
fn a_chart_renders_its_vendored_dependencies() {
    if !helm_installed() {
        return;
    }
    let chart_yaml = "apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: \"1.4.2\"\ndependencies:\n- {name: cache, version: 0.2.x, repository: \"https://charts.example.com\", condition: cache.enabled}\n";
    let files = with(
        shop_chart(),
        vec![
            text("ship.yaml", CHART_SHIP_YAML),
            text("charts/shop/Chart.yaml", chart_yaml),
            text(
                "charts/shop/charts/cache/Chart.yaml",
                "apiVersion: v2\nname: cache\nversion: 0.2.3\n",
            ),
            text(
                "charts/shop/charts/cache/values.yaml",
                "enabled: true\nsize: 64\n",
            ),
            text(
                "charts/shop/charts/cache/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-cache}\ndata: {size: {{ .Values.size | quote }}}\n",
            ),
        ],
    );
    // `with` keeps the first Chart.yaml too: the later write wins on disk.
    let rendered = load(&files).unwrap();
    let cache = rendered
        .manifests
        .iter()
        .find(|m| m.object["metadata"]["name"] == "main-cache")
        .expect("the subchart's objects");
    assert_eq!(cache.object["data"]["size"], "64");
    assert_eq!(cache.source, "charts/shop/charts/cache/templates/cm.yaml#1");
}

#[test]
fn each_bad_chart_gets_its_own_clear_error() {
    if !helm_installed() {
        return;
    }
    let cases: Vec<(&str, Vec<File<'static>>, &str, &str)> = vec![
        (
            "a dependency that is not vendored",
            vec![text(
                "charts/shop/Chart.yaml",
                "apiVersion: v2\nname: shop\nversion: 0.1.0\ndependencies:\n- {name: redis, version: 17.x, repository: \"https://charts.bitnami.com/bitnami\"}\n",
            )],
            "ChartDependencyMissing",
            "charts/shop: dependency \"redis\" (version 17.x from https://charts.bitnami.com/bitnami) is not in charts/shop/charts/: Ship renders without network access",
        ),
        (
            "a template that reads the cluster",
            vec![text(
                "charts/shop/templates/secret.yaml",
                "{{/* the lookup below reads the cluster */}}\n{{- $s := lookup \"v1\" \"Secret\" .Release.Namespace \"db\" -}}\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            )],
            "ChartLookup",
            "charts/shop/templates/secret.yaml:2: calls `lookup`",
        ),
        (
            "an install hook",
            vec![text(
                "charts/shop/templates/migrate.yaml",
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {\"helm.sh/hook\": \"pre-install,pre-upgrade\"}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n",
            )],
            "ChartHookUnsupported",
            "charts/shop/templates/migrate.yaml#1: Job/migrate is a Helm \"pre-install,pre-upgrade\" hook",
        ),
        (
            "a template that does not parse",
            vec![text(
                "charts/shop/templates/broken.yaml",
                "metadata: {name: {{ .Values.nope }\n",
            )],
            "HelmFailed",
            "charts/shop: helm template failed: ",
        ),
        (
            "a required value left out",
            vec![text(
                "charts/shop/templates/host.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: host}\ndata: {host: {{ required \"set host in values\" .Values.host | quote }}}\n",
            )],
            "HelmFailed",
            "set host in values",
        ),
        (
            "a values file that is a list",
            vec![text("charts/shop/values-production.yaml", "- replicaCount: 3\n")],
            "InvalidValues",
            "charts/shop/values-production.yaml: not a values file",
        ),
        (
            "a chart with no Chart.yaml",
            vec![text("charts/shop/Chart.yaml", "")],
            "NotAChart",
            "charts/shop: not a Helm chart",
        ),
        (
            "a template linked from outside the repository",
            vec![File::Link("charts/shop/templates/passwd.yaml", "/etc/passwd")],
            "UnsafeTree",
            "points outside the repository",
        ),
        (
            "an object the chart renders twice",
            vec![text(
                "charts/shop/templates/again.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: {{ include \"shop.fullname\" . }}}\nspec: {}\n",
            )],
            "DuplicateObject",
            "",
        ),
    ];
    // Production's values file is the one a case may break: render production where it matters.
    let production_yaml = "environments:\n  main:\n    namespace: app-main\n    helm: {chart: charts/shop, valuesFiles: [charts/shop/values-production.yaml]}\npromotion: {enabled: false}\n";
    for (what, overrides, label, message_start) in cases {
        let files = with(
            with(shop_chart(), vec![text("ship.yaml", production_yaml)]),
            overrides,
        );
        let (got_label, message) = match load(&files) {
            Ok(_) => panic!("{what}: rendered"),
            Err(e) => e,
        };
        assert_eq!(got_label, label, "{what}: {message}");
        assert!(message.contains(message_start), "{what}: {message}");
        assert!(
            !message.contains("/tmp/"),
            "{what}: the message names repository paths only: {message}"
        );
    }
}

#[test]
fn a_chart_on_disk_may_not_link_outside_the_repository() {
    if !helm_installed() {
        return;
    }
    // The git export refuses such links first; the renderer checks again for trees that did not
    // come from an export (kubectl ship's local render).
    let root = tempfile::tempdir().unwrap();
    for file in with(shop_chart(), vec![text("ship.yaml", CHART_SHIP_YAML)]) {
        if let File::Text(path, content) = file {
            let full = root.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
    }
    std::os::unix::fs::symlink(
        "/etc/hostname",
        root.path().join("charts/shop/templates/host.yaml"),
    )
    .unwrap();
    let error = render_environment(&Processes, root.path(), "main", &Limits::default()).unwrap_err();
    assert_eq!(error.label(), "PathEscape", "{error}");
    assert!(
        error.to_string().contains("charts/shop/templates/host.yaml"),
        "{error}"
    );
}

#[test]
fn renders_are_keyed_by_the_renderers_versions() {
    let versions = ship_render::cache::renderer_versions();
    if helm_installed() {
        assert!(versions.starts_with("helm v"), "{versions}");
    }
    // tests/run.sh requires kubectl, whose kustomize renders overlays.
    let kustomize = versions.split("; kustomize ").nth(1).unwrap();
    assert!(kustomize.starts_with('v'), "{versions}");
    eprintln!("{versions}");
}

/// The chart `helm create` writes, as teams start from it: its objects render, its
/// test-connection Pod becomes a Ship Job test, and the optional objects its values switch on
/// (Ingress, HorizontalPodAutoscaler, Gateway API HTTPRoute) render too.
#[test]
fn the_chart_helm_create_writes_renders_as_it_is() {
    if !helm_installed() {
        return;
    }
    let helm = ship_render::helm::helm_binary().unwrap();
    let scaffold = |work: &std::path::Path| {
        std::fs::create_dir_all(work.join("charts")).unwrap();
        let made = std::process::Command::new(&helm)
            .args(["create", "charts/web"])
            .current_dir(work)
            .env("HELM_CONFIG_HOME", work.join(".helm"))
            .env("HELM_CACHE_HOME", work.join(".helm"))
            .env("HELM_DATA_HOME", work.join(".helm"))
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        std::fs::remove_dir_all(work.join(".helm")).ok();
    };
    let kinds = |r: &Rendered| -> Vec<String> {
        r.manifests
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m.object["kind"].as_str().unwrap(),
                    m.object["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let plain = load_made(
        &[text(
            "ship.yaml",
            "environments:\n  main: {namespace: app-main, helm: {chart: charts/web}}\npromotion: {enabled: false}\n",
        )],
        scaffold,
    )
    .unwrap();
    assert_eq!(
        kinds(&plain),
        [
            "ServiceAccount/main-web",
            "Service/main-web",
            "Deployment/main-web"
        ]
    );
    assert_eq!(
        plain
            .test_jobs
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        ["main-web-test-connection"]
    );
    for manifest in &plain.manifests {
        assert_eq!(
            manifest.object["metadata"]["namespace"], "app-main",
            "{:?}",
            manifest.object
        );
    }
    let everything = load_made(
        &[text(
            "ship.yaml",
            "environments:\n  main:\n    namespace: app-main\n    helm: {chart: charts/web, values: {ingress: {enabled: true}, autoscaling: {enabled: true}, httpRoute: {enabled: true}}}\npromotion: {enabled: false}\n",
        )],
        scaffold,
    )
    .unwrap();
    let mut all = kinds(&everything);
    all.sort();
    assert_eq!(
        all,
        [
            "Deployment/main-web",
            "HTTPRoute/main-web",
            "HorizontalPodAutoscaler/main-web",
            "Ingress/main-web",
            "Service/main-web",
            "ServiceAccount/main-web"
        ]
    );
}
