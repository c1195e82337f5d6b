//! The release engine on the real apiserver and its real node, with a real git daemon and a
//! real HTTP "app" whose answers come from the deployed ConfigMap: good pushes succeed, bad ones
//! roll back (and stay quarantined), fixes roll forward, invalid objects change nothing, slow
//! rollouts time out, crash-looping or unpullable rollouts fail at once, newer pushes supersede
//! older ones, and a SIGKILL anywhere is survived. Deployments and test Jobs run as real
//! containers (the test bed's `ship.dev/demo-app:1` image, busybox).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use ship_api::{Phase, Reason, ShipRelease, ShipReleaseSpec, keys};
use ship_testkit::app::App;
use ship_testkit::cluster::{TestCluster, eventually};
use ship_testkit::git::{GitDaemon, Remote};
use ship_testkit::process::Shipd;
use ship_testkit::stack::{at_rest_in, phases, ready_reason};

/// One environment's stack: namespace, repository, daemon, app and shipd.
struct Stack {
    cluster: TestCluster,
    ns: String,
    remote: Remote,
    daemon: GitDaemon,
    data: tempfile::TempDir,
    shipd: Option<Shipd>,
    app: App,
    app_url: String,
}

/// The release engine's tests push bad commits after bad ones and count pushed releases only:
/// no bisection (bisect.rs tests it).
fn ship_yaml(ns: &str, app_url: &str, health_timeout: &str) -> String {
    format!(
        "environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {ns}-prod}}\n\
         health: {{timeout: {health_timeout}}}\npromotion: {{enabled: false}}\nbisect: {{enabled: false}}\n\
         tests:\n- name: home\n  http: {{url: '{app_url}', expect: {{bodyContains: healthy}}}}\n"
    )
}

fn configmap(body: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web}}\ndata: {{body: {body:?}}}\n")
}

/// How the Deployment's real container behaves.
#[derive(Debug, Clone, Copy)]
enum Pods {
    /// Serves, and its readiness probe passes.
    Ready,
    /// Runs, but its readiness probe asks for a page that does not exist.
    NeverReady,
    /// Exits 1 at once, over and over (CrashLoopBackOff).
    Crash,
    /// Names an image the node does not have, with `imagePullPolicy: Never` (ErrImageNeverPull).
    MissingImage,
}

fn deployment(pods: Pods) -> String {
    let (image, probe_path, command) = match pods {
        Pods::Ready => ("ship.dev/demo-app:1", "/health", ""),
        Pods::NeverReady => ("ship.dev/demo-app:1", "/not-there", ""),
        Pods::Crash => (
            "ship.dev/demo-app:1",
            "/health",
            ", command: [sh, -c, 'echo config missing; exit 1']",
        ),
        Pods::MissingImage => ("ship.dev/not-built:1", "/health", ""),
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    \
         spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - {{name: web, image: '{image}', \
         imagePullPolicy: Never{command},\n         readinessProbe: {{httpGet: {{path: '{probe_path}', port: 8080}}, \
         periodSeconds: 1}}}}\n"
    )
}

impl Stack {
    async fn new(prefix: &str, health_timeout: &str) -> Self {
        let cluster = TestCluster::connect().await.unwrap();
        cluster.install_crds().await.unwrap();
        let ns = cluster.namespace(prefix).await.unwrap();
        let app = App::start(cluster.client()).await.unwrap();
        let app_url = app.health_url();
        let remote = Remote::new().unwrap();
        let daemon = GitDaemon::start(remote.dir.path()).unwrap();
        let stack = Self {
            cluster,
            remote,
            daemon,
            data: tempfile::tempdir().unwrap(),
            shipd: None,
            app,
            app_url,
            ns,
        };
        stack
            .remote
            .commit_file(
                "ship.yaml",
                &ship_yaml(&stack.ns, &stack.app_url, health_timeout),
                "ship.yaml",
            )
            .unwrap();
        stack
    }

    fn start_shipd(&mut self, extra: &[&str]) {
        let mut args = vec![
            "--namespace",
            &self.ns,
            "--secret-namespace",
            &self.ns,
            "--repo-url",
        ];
        let url = self.daemon.url("repo.git");
        let data = self.data.path().to_str().unwrap().to_owned();
        args.extend([
            url.as_str(),
            "--data-dir",
            &data,
            "--poll-interval",
            "1s",
            "--drift-interval",
            "2s",
        ]);
        args.extend(extra);
        self.shipd = Some(Shipd::start(self.cluster.kubeconfig(), &args).unwrap());
    }

    fn kill_shipd(&mut self) {
        if let Some(shipd) = self.shipd.as_mut() {
            shipd.signal("KILL").unwrap();
            shipd.wait_exit(Duration::from_secs(5)).unwrap();
        }
    }

    /// Commits `files` to main and pushes; returns the commit.
    fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        let commit = self.remote.commit_files(files, message).unwrap();
        self.remote.push("main", false).unwrap();
        commit
    }

    fn releases(&self) -> Api<ShipRelease> {
        Api::namespaced(self.cluster.client(), &self.ns)
    }

    /// Waits until release `name` is in `phase` (settled or not).
    async fn in_phase(&self, name: &str, phase: Phase) {
        let api = self.releases();
        eventually(&format!("{name} {phase}"), SETTLE, || {
            let (api, name) = (api.clone(), name.to_owned());
            async move {
                let release = api.get_opt(&name).await?;
                Ok(release.filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(phase)))
            }
        })
        .await
        .unwrap();
    }

    /// Waits until the release of `commit` to main settles in `phase`.
    async fn settled(&self, commit: &str, phase: Phase, timeout: Duration) -> ShipRelease {
        let name = format!("main-{}", &commit[..10]);
        let api = self.releases();
        let logs = || self.shipd.as_ref().map(Shipd::logs).unwrap_or_default();
        let result = eventually(&format!("{name} {phase}"), timeout, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let release = api.get_opt(&name).await?;
                Ok(release.filter(|r| at_rest_in(r, phase)))
            }
        })
        .await;
        match result {
            Ok(release) => release,
            Err(err) => {
                let now = api.get_opt(&name).await.ok().flatten();
                panic!("shipd logs:\n{}\nrelease now: {now:#?}\n{err:#}", logs())
            }
        }
    }

    async fn web(&self) -> Option<ConfigMap> {
        Api::<ConfigMap>::namespaced(self.cluster.client(), &self.ns)
            .get_opt("web")
            .await
            .unwrap()
    }

    async fn web_commit(&self) -> String {
        self.web()
            .await
            .and_then(|cm| cm.annotations().get(keys::COMMIT).cloned())
            .unwrap_or_default()
    }
}

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn push_good_then_bad_then_fix() {
    let mut stack = Stack::new("release-flow", "30s").await;
    let good = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy")),
            ("deploy/main/app.yaml", &deployment(Pods::Ready)),
        ],
        "good: first version",
    );
    stack.start_shipd(&[]);
    let release = stack.settled(&good, Phase::Succeeded, SETTLE).await;
    assert_eq!(
        phases(&release),
        [
            Phase::Pending,
            Phase::Applying,
            Phase::Progressing,
            Phase::Testing,
            Phase::Succeeded
        ]
    );
    let status = release.status.as_ref().unwrap();
    assert_eq!(status.test_summary.as_deref(), Some("1/1"));
    assert_eq!(status.inventory.len(), 2, "{:?}", status.inventory);
    assert_eq!(stack.web_commit().await, good);
    let deploy = Api::<Deployment>::namespaced(stack.cluster.client(), &stack.ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(deploy.annotations().get(keys::RELEASE), Some(&release.name_any()));
    assert_eq!(
        deploy.labels().get(keys::ENVIRONMENT).map(String::as_str),
        Some("main")
    );
    let table = stack
        .cluster
        .kubectl(&["get", "shipreleases", "-n", &stack.ns])
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&release.name_any()) && l.contains("Succeeded") && l.contains("1/1")),
        "{table}"
    );

    // A bad commit: the app breaks and a new object appears. Tests fail, the release rolls back
    // to the good one, and the new object is pruned.
    let bad = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("down")),
            (
                "deploy/main/extra.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n",
            ),
        ],
        "bad: break the home page",
    );
    let rolled = stack.settled(&bad, Phase::RolledBack, SETTLE).await;
    assert_eq!(
        phases(&rolled),
        [
            Phase::Pending,
            Phase::Applying,
            Phase::Progressing,
            Phase::Testing,
            Phase::Failed,
            Phase::RollingBack,
            Phase::RolledBack
        ]
    );
    let status = rolled.status.as_ref().unwrap();
    assert_eq!(status.rolled_back_to, Some(release.name_any()));
    assert_eq!(status.test_summary.as_deref(), Some("0/1"));
    assert!(status.tests[0].message.contains("down"), "{:?}", status.tests);
    assert_eq!(status.suspects.len(), 1);
    assert_eq!(status.suspects[0].subject, "bad: break the home page");
    let web = stack.web().await.unwrap();
    assert_eq!(web.data.unwrap()["body"], "healthy");
    assert_eq!(stack.web_commit().await, good);
    let extra = Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
        .get_opt("extra")
        .await
        .unwrap();
    assert!(
        extra.is_none_or(|cm| cm.metadata.deletion_timestamp.is_some()),
        "extra was not pruned"
    );

    // Quarantine: over several reconciles (polls every second, drift checks every 2 s) the bad
    // commit is not applied again. Observed as every event of the app's ConfigMaps and the
    // releases in a 6 s window, in which the rolled-back release (the deployed one: it keeps
    // the good commit's objects in place) must have been drift-checked.
    let window = Duration::from_secs(6);
    let (maps, releases) = tokio::join!(
        ship_testkit::quiet::watch_for(
            Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns),
            window
        ),
        ship_testkit::quiet::watch_for(stack.releases(), window),
    );
    let (maps, releases) = (maps.unwrap(), releases.unwrap());
    let applied_commits: Vec<String> = maps
        .states_of("web")
        .iter()
        .filter_map(|cm| cm.annotations().get(keys::COMMIT).cloned())
        .collect();
    assert!(
        !applied_commits.contains(&bad),
        "the bad commit was applied again within {window:?}: {applied_commits:?}"
    );
    assert_eq!(stack.web_commit().await, good);
    for state in releases.states_of(&rolled.name_any()) {
        assert_eq!(state.phase(), Some(Phase::RolledBack), "within {window:?}");
    }
    let checks: std::collections::BTreeSet<_> = releases
        .states_of(&rolled.name_any())
        .iter()
        .filter_map(|r| r.status.as_ref().and_then(|s| s.drift_checked_at.clone()))
        .map(|t| t.0)
        .collect();
    assert!(
        checks.len() >= 2,
        "the rolled-back release was drift-checked {} times in {window:?}: the window saw no reconciles",
        checks.len()
    );

    // Roll forward with a fix.
    let fix = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy again")),
            ("deploy/main/extra.yaml", ""),
        ],
        "fix: home page",
    );
    let fixed = stack.settled(&fix, Phase::Succeeded, SETTLE).await;
    assert_eq!(stack.web_commit().await, fix);
    assert_eq!(
        fixed.status.as_ref().unwrap().suspects.len(),
        2,
        "bad and fix, since the last good release"
    );

    // Drift: a hand edit is put back and counted.
    let cms: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let mut web = cms.get("web").await.unwrap();
    web.data = Some([("body".to_owned(), "edited by hand".to_owned())].into());
    cms.replace("web", &PostParams::default(), &web).await.unwrap();
    eventually("drift corrected", Duration::from_secs(30), || {
        let cms = cms.clone();
        async move {
            let body = cms.get("web").await?.data.unwrap_or_default()["body"].clone();
            Ok((body == "healthy again").then_some(()))
        }
    })
    .await
    .unwrap();
    // The count is written right after the correction.
    eventually("drift counted", Duration::from_secs(10), || {
        let api = stack.releases();
        let name = fixed.name_any();
        async move {
            let counted = api.get(&name).await?.status.and_then(|s| s.drift_corrections);
            Ok(counted.filter(|n| *n >= 1))
        }
    })
    .await
    .unwrap();
    let logs = stack.shipd.as_ref().unwrap().logs();
    assert!(
        logs.lines().any(|l| l.contains("\"release\":\"main-")
            && l.contains("\"commit\":\"")
            && l.contains("\"environment\":\"main\"")),
        "release lines carry environment, commit and release"
    );
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn invalid_object_fails_before_anything_changes() {
    let mut stack = Stack::new("release-invalid", "30s").await;
    let good = stack.push(&[("deploy/main/web.yaml", &configmap("healthy"))], "good");
    stack.start_shipd(&[]);
    stack.settled(&good, Phase::Succeeded, SETTLE).await;
    let bad_deployment = deployment(Pods::Ready).replace("replicas: 1", "replicas: many");
    let bad = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy, changed")),
            ("deploy/main/app.yaml", &bad_deployment),
            (
                "deploy/main/new.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: should-not-exist}\n",
            ),
        ],
        "bad: invalid deployment",
    );
    let failed = stack.settled(&bad, Phase::Failed, SETTLE).await;
    assert_eq!(ready_reason(&failed), "DryRunFailed");
    let message = failed.status.unwrap().message.unwrap();
    assert!(
        message.contains("Deployment") && message.contains("nothing was applied"),
        "{message}"
    );
    assert_eq!(stack.web_commit().await, good, "nothing was applied");
    let created = Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
        .get_opt("should-not-exist")
        .await
        .unwrap();
    assert!(created.is_none());

    // A Secret in git: a render error, in the status, with the fix to make.
    let secret = stack.push(
        &[(
            "deploy/main/secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n",
        )],
        "bad: secret in git",
    );
    let failed = stack.settled(&secret, Phase::Failed, SETTLE).await;
    assert_eq!(ready_reason(&failed), "SecretInGit");
    assert!(!serde_json::to_string(&failed).unwrap().contains("hunter2"));

    // The good commit still runs, whatever newer commits were refused: a hand edit of its
    // objects is still put back (drift checks every 2 s), by the good release.
    let cms: Api<ConfigMap> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let mut web = cms.get("web").await.unwrap();
    let declared = web.data.clone().unwrap_or_default();
    web.data = Some([("body".to_owned(), "edited by hand".to_owned())].into());
    cms.replace("web", &PostParams::default(), &web).await.unwrap();
    eventually(
        "drift corrected after refused commits",
        Duration::from_secs(30),
        || {
            let (cms, declared) = (cms.clone(), declared.clone());
            async move { Ok((cms.get("web").await?.data.unwrap_or_default() == declared).then_some(())) }
        },
    )
    .await
    .unwrap();
    let good_release = stack
        .releases()
        .get(&format!("main-{}", &good[..10]))
        .await
        .unwrap();
    assert!(
        good_release.status.and_then(|s| s.drift_corrections).unwrap_or(0) >= 1,
        "the good release counted the correction"
    );
}

/// A workload whose Pods need a Secret nobody made fails in Pending, at once, with nothing
/// applied, naming what is missing; what a person made by hand, and what is `optional`, counts
/// as there; once the Secret exists, the same workload deploys. No Secret's data is printed.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_missing_secret_fails_in_pending_within_a_second_with_nothing_applied() {
    let mut stack = Stack::new("release-references", "30s").await;
    let good = stack.push(&[("deploy/main/web.yaml", &configmap("healthy"))], "good");
    stack.start_shipd(&[]);
    stack.settled(&good, Phase::Succeeded, SETTLE).await;
    let configmaps = Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns);
    let by_hand: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "made-by-hand"}, "data": {"MODE": "shop"}
    }))
    .unwrap();
    configmaps.create(&Default::default(), &by_hand).await.unwrap();
    let needs = deployment(Pods::Ready).replace(
        "imagePullPolicy: Never,",
        "imagePullPolicy: Never,\n         env: [{name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db-credentials, key: password}}}, \
         {name: MAYBE, valueFrom: {secretKeyRef: {name: not-needed, key: k, optional: true}}}],\n         \
         envFrom: [{configMapRef: {name: made-by-hand}}],",
    );
    assert!(needs.contains("db-credentials"), "{needs}");
    let bad = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy, v2")),
            ("deploy/main/app.yaml", &needs),
        ],
        "needs a Secret nobody made",
    );
    // From the moment the release is seen to Failed (status times have only second precision).
    let name = ship_testkit::stack::release_name("main", &bad);
    let api = stack.releases();
    eventually(&format!("{name} created"), SETTLE, || {
        let (api, name) = (api.clone(), name.clone());
        async move { Ok(api.get_opt(&name).await?) }
    })
    .await
    .unwrap();
    let seen = std::time::Instant::now();
    let failed = stack.settled(&bad, Phase::Failed, SETTLE).await;
    let took = seen.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(ready_reason(&failed), "MissingReference");
    let status = failed.status.clone().unwrap();
    let message = status.message.clone().unwrap();
    let expected = format!(
        "Deployment/{ns}/web needs Secret/{ns}/db-credentials (env DB_PASSWORD)",
        ns = stack.ns
    );
    assert!(
        message.contains(&expected) && message.contains("nothing was applied"),
        "{message}"
    );
    assert!(
        !message.contains("made-by-hand") && !message.contains("not-needed"),
        "{message}"
    );
    assert_eq!(stack.web_commit().await, good, "nothing was applied");
    let deployments = Api::<Deployment>::namespaced(stack.cluster.client(), &stack.ns);
    assert!(deployments.get_opt("web").await.unwrap().is_none());

    // Once someone makes the Secret, the next commit with the same workload deploys.
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db-credentials"}, "stringData": {"password": "s3cret-value"}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(stack.cluster.client(), &stack.ns)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let fixed = stack.push(
        &[("deploy/main/web.yaml", &configmap("healthy, v3"))],
        "the Secret exists now",
    );
    let done = stack.settled(&fixed, Phase::Succeeded, SETTLE).await;
    assert!(!serde_json::to_string(&done).unwrap().contains("s3cret-value"));
    let logs = stack.shipd.as_ref().map(Shipd::logs).unwrap_or_default();
    assert!(!logs.contains("s3cret-value"));
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn health_timeout_rolls_back_and_first_failure_has_nothing_to_roll_back_to() {
    let mut stack = Stack::new("release-health", "20s").await;
    // The very first release fails its tests: there is no good release, the bad commit stays.
    let first = stack.push(&[("deploy/main/web.yaml", &configmap("down"))], "first, broken");
    stack.start_shipd(&[]);
    let failed = stack.settled(&first, Phase::Failed, SETTLE).await;
    assert_eq!(ready_reason(&failed), "NoGoodRelease");
    assert_eq!(
        stack.web_commit().await,
        first,
        "the cluster keeps the bad commit"
    );
    let stalled = failed
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(stalled.status, "True");

    let good = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy")),
            ("deploy/main/app.yaml", &deployment(Pods::Ready)),
        ],
        "good",
    );
    stack.settled(&good, Phase::Succeeded, SETTLE).await;
    let slow = stack.push(
        &[("deploy/main/app.yaml", &deployment(Pods::NeverReady))],
        "pods never ready",
    );
    let rolled = stack.settled(&slow, Phase::RolledBack, SETTLE).await;
    let failed_at = rolled
        .status
        .as_ref()
        .unwrap()
        .transitions
        .iter()
        .find(|t| t.phase == Phase::Failed)
        .unwrap();
    assert!(
        failed_at.message.contains("health timeout"),
        "{}",
        failed_at.message
    );
    let deploy = Api::<Deployment>::namespaced(stack.cluster.client(), &stack.ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(deploy.annotations().get(keys::COMMIT), Some(&good));
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn newer_push_supersedes_and_manual_rollback_deploys_a_named_commit() {
    let mut stack = Stack::new("release-supersede", "60s").await;
    let v1 = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy v1")),
            ("deploy/main/app.yaml", &deployment(Pods::Ready)),
        ],
        "v1",
    );
    stack.start_shipd(&[]);
    let first = stack.settled(&v1, Phase::Succeeded, SETTLE).await;
    let stuck = stack.push(
        &[("deploy/main/app.yaml", &deployment(Pods::NeverReady))],
        "v2 never ready",
    );
    stack.settled(&stuck, Phase::Progressing, SETTLE).await;
    let v3 = stack.push(
        &[
            ("deploy/main/app.yaml", &deployment(Pods::Ready)),
            ("deploy/main/web.yaml", &configmap("healthy v3")),
        ],
        "v3",
    );
    let superseded = stack.settled(&stuck, Phase::Superseded, SETTLE).await;
    assert!(superseded.status.unwrap().message.unwrap().contains(&v3[..10]));
    stack.settled(&v3, Phase::Succeeded, SETTLE).await;
    assert_eq!(stack.web_commit().await, v3);

    // A person rolls back to v1 by name; it goes through the same machine.
    let manual = ShipRelease::new(
        "main-manual-rollback",
        ShipReleaseSpec {
            environment: "main".into(),
            commit: v1.clone(),
            branch: "main".into(),
            reason: Reason::Rollback,
            rollback_of: Some(format!("main-{}", &v3[..10])),
            promotion: None,
        },
    );
    stack
        .releases()
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let done = eventually("manual rollback Succeeded", SETTLE, || {
        let api = stack.releases();
        async move {
            let r = api.get("main-manual-rollback").await?;
            Ok(r.status
                .clone()
                .filter(|s| s.phase == Some(Phase::Succeeded))
                .map(|_| r))
        }
    })
    .await
    .unwrap();
    assert_eq!(stack.web_commit().await, v1);
    assert_eq!(done.status.unwrap().test_summary.as_deref(), Some("1/1"));
    let _ = first;
    let wait = stack
        .cluster
        .kubectl(&[
            "wait",
            "-n",
            &stack.ns,
            "--for=condition=Ready",
            "shiprelease/main-manual-rollback",
            "--timeout=5s",
        ])
        .unwrap();
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn sigkill_in_every_phase_reaches_the_same_end_state() {
    let mut stack = Stack::new("release-crash", "30s").await;
    let good = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy")),
            ("deploy/main/app.yaml", &deployment(Pods::Ready)),
        ],
        "good",
    );
    stack.start_shipd(&[]);
    let good_release = stack.settled(&good, Phase::Succeeded, SETTLE).await;
    for (i, phase) in [
        Phase::Applying,
        Phase::Progressing,
        Phase::Testing,
        Phase::RollingBack,
    ]
    .into_iter()
    .enumerate()
    {
        // Restart shipd so that it pauses right after persisting `phase`, then kill it there.
        stack.kill_shipd();
        stack.start_shipd(&["--test-pause-after", &format!("{phase}:30s")]);
        let bad = stack.push(
            &[
                ("deploy/main/web.yaml", &configmap(&format!("down {i}"))),
                (
                    &format!("deploy/main/extra-{i}.yaml"),
                    &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: extra-{i}}}\n"),
                ),
            ],
            &format!("bad {i}"),
        );
        stack.settled(&bad, phase, SETTLE).await;
        stack.kill_shipd();
        stack.start_shipd(&[]);
        let rolled = stack.settled(&bad, Phase::RolledBack, SETTLE).await;
        let status = rolled.status.unwrap();
        assert_eq!(
            status.rolled_back_to,
            Some(good_release.name_any()),
            "killed in {phase}"
        );
        assert_eq!(stack.web_commit().await, good, "killed in {phase}");
        assert_eq!(
            stack.web().await.unwrap().data.unwrap()["body"],
            "healthy",
            "killed in {phase}"
        );
        let extra = Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
            .get_opt(&format!("extra-{i}"))
            .await
            .unwrap();
        assert!(
            extra.is_none_or(|cm| cm.metadata.deletion_timestamp.is_some()),
            "killed in {phase}: extra-{i} left behind"
        );
        // Later commits of the loop must be based on the good tree again.
        stack.remote.git(&["revert", "--no-edit", "HEAD"]).unwrap();
    }
}

/// A test Job whose real container prints `log` and exits `exit_code`.
fn journey_job(exit_code: u8, log: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: journeys}}\nspec:\n  backoffLimit: 0\n  template:\n    \
         spec:\n      restartPolicy: Never\n      containers:\n      - name: journeys\n        \
         image: ship.dev/demo-app:1\n        imagePullPolicy: Never\n        \
         command: [sh, -c, 'echo \"$LOG\"; exit {exit_code}']\n        env: [{{name: LOG, value: {log:?}}}]\n"
    )
}

/// An app that needs a moment after its rollout: with `retries`, the HTTP test asks again,
/// `interval` apart, and the release succeeds on the first attempt that passes.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn an_http_test_with_retries_waits_for_an_app_warming_up() {
    let mut stack = Stack::new("release-warm-up", "30s").await;
    let good = stack.push(&[("deploy/main/web.yaml", &configmap("healthy"))], "good");
    stack.start_shipd(&[]);
    stack.settled(&good, Phase::Succeeded, SETTLE).await;
    let config = ship_yaml(&stack.ns, &stack.app_url, "30s").replace(
        "expect: {bodyContains: healthy}}",
        "retries: 40, interval: 250ms, expect: {bodyContains: healthy}}",
    );
    assert!(config.contains("retries: 40"), "{config}");
    // The new version answers 503 until it has warmed up.
    let warming = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {body: \"healthy, v2\", status: \"503\"}\n";
    let warm = stack.push(
        &[("ship.yaml", &config), ("deploy/main/web.yaml", warming)],
        "v2, slow to warm up",
    );
    stack
        .in_phase(&format!("main-{}", &warm[..10]), Phase::Testing)
        .await;
    // The test has found the app warming up (answered 503) at least once since ...
    let requests = stack.app.requests.clone();
    let testing_from = requests.lock().unwrap().len().saturating_sub(1);
    eventually("a 503 from the warming app", SETTLE, || {
        let requests = requests.clone();
        async move {
            let log = requests.lock().unwrap();
            Ok(log[testing_from.min(log.len())..]
                .iter()
                .any(|(_, status)| *status == 503)
                .then_some(()))
        }
    })
    .await
    .unwrap();
    // ... and now it has warmed up: the app answers 200 from now on.
    let patch = serde_json::json!({"data": {"status": "200"}});
    Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let done = stack.settled(&warm, Phase::Succeeded, SETTLE).await;
    let home = done
        .status
        .unwrap()
        .tests
        .into_iter()
        .find(|t| t.name == "home")
        .unwrap();
    let attempt: u32 = home
        .message
        .split("(attempt ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{home:?}"));
    assert!(attempt > 1, "passed only after a retry: {home:?}");
}

/// A journey that hangs fails the release when the test deadline (`testing.timeout`) passes,
/// with its own reason, and the release rolls back; shipd killed mid-test and started again
/// keeps the deadline (it runs from the persisted Testing transition), it does not start anew.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_test_past_its_deadline_fails_with_its_reason_and_a_restart_keeps_the_deadline() {
    let mut stack = Stack::new("release-deadline", "30s").await;
    let good = stack.push(&[("deploy/main/web.yaml", &configmap("healthy"))], "good");
    stack.start_shipd(&[]);
    stack.settled(&good, Phase::Succeeded, SETTLE).await;
    let config = ship_yaml(&stack.ns, &stack.app_url, "30s").replace(
        "promotion: {enabled: false}",
        "promotion: {enabled: false}\ntesting: {timeout: 8s}",
    ) + "- name: journeys\n  job: tests/journeys.yaml\n";
    let hanging = journey_job(0, "started").replace("exit 0", "sleep 3600");
    let bad = stack.push(
        &[
            ("ship.yaml", &config),
            ("deploy/main/web.yaml", &configmap("healthy, v2")),
            ("tests/journeys.yaml", &hanging),
        ],
        "a journey that hangs",
    );
    stack
        .in_phase(&format!("main-{}", &bad[..10]), Phase::Testing)
        .await;
    // Mid-test: the journey's pod runs (and hangs).
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(stack.cluster.client(), &stack.ns);
    eventually("the journey's pod running", SETTLE, || {
        let pods = pods.clone();
        async move {
            let listed = pods
                .list(&kube::api::ListParams::default().labels("job-name"))
                .await?;
            Ok(listed
                .items
                .iter()
                .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .then_some(()))
        }
    })
    .await
    .unwrap();
    stack.kill_shipd();
    stack.start_shipd(&[]);
    let rolled = stack.settled(&bad, Phase::RolledBack, SETTLE).await;
    let status = rolled.status.unwrap();
    let failed = status
        .transitions
        .iter()
        .find(|t| t.phase == Phase::Failed)
        .unwrap();
    assert!(
        failed.message.contains("did not finish within the test deadline")
            && failed.message.contains("journeys"),
        "{failed:?}"
    );
    let journeys = status.tests.iter().find(|t| t.name == "journeys").unwrap();
    assert!(journeys.message.contains("test deadline"), "{journeys:?}");
    assert!(
        journeys.log.contains("started"),
        "a test cut off at the deadline keeps its log: {journeys:?}"
    );
    let testing = status
        .transitions
        .iter()
        .rev()
        .find(|t| t.phase == Phase::Testing)
        .unwrap();
    // Whole seconds: 8 s, give or take the rounding; a deadline started anew after the restart
    // (3 s in) would end 11 s or more after Testing began.
    let took = failed.at.0.duration_since(testing.at.0).as_secs();
    assert!(
        (7..=10).contains(&took),
        "the deadline ended {took} s after Testing began"
    );
    assert_eq!(stack.web_commit().await, good, "rolled back to the good commit");
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn job_tests_keep_their_log_and_old_releases_are_collected() {
    let mut stack = Stack::new("release-job", "30s").await;
    let config =
        ship_yaml(&stack.ns, &stack.app_url, "30s") + "- name: journeys\n  job: tests/journeys.yaml\n";
    let good = stack.push(
        &[
            ("ship.yaml", &config),
            ("deploy/main/web.yaml", &configmap("healthy")),
            (
                "tests/journeys.yaml",
                &journey_job(0, "search: 3 results as known\ncheckout: paid"),
            ),
        ],
        "good with journeys",
    );
    stack.start_shipd(&["--history-limit", "2"]);
    let release = stack.settled(&good, Phase::Succeeded, SETTLE).await;
    let status = release.status.unwrap();
    assert_eq!(status.test_summary.as_deref(), Some("2/2"));
    let journeys = status.tests.iter().find(|t| t.name == "journeys").unwrap();
    assert!(journeys.log.contains("checkout: paid"), "{journeys:?}");
    let job_name = format!("{}-journeys", release.metadata.name.as_deref().unwrap());
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(stack.cluster.client(), &stack.ns);
    assert!(
        jobs.get_opt(&job_name).await.unwrap().is_some(),
        "the test Job is named after its release"
    );

    let bad = stack.push(
        &[(
            "tests/journeys.yaml",
            &journey_job(1, "checkout: expected paid, got declined"),
        )],
        "bad: checkout declines",
    );
    let rolled = stack.settled(&bad, Phase::RolledBack, SETTLE).await;
    let status = rolled.status.clone().unwrap();
    assert_eq!(status.test_summary.as_deref(), Some("1/2"));
    let journeys = status.tests.iter().find(|t| t.name == "journeys").unwrap();
    assert!(journeys.log.contains("got declined"), "{journeys:?}");
    let events = stack
        .cluster
        .kubectl(&["get", "events.events.k8s.io", "-n", &stack.ns, "-o", "json"])
        .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("TestFailed") && events.contains("got declined"),
        "no TestFailed event with the log"
    );

    // History: with a limit of 2, older settled releases go, the last good one stays.
    for i in 0..3 {
        let c = stack.push(
            &[("tests/journeys.yaml", &journey_job(0, &format!("run {i}")))],
            &format!("good {i}"),
        );
        stack.settled(&c, Phase::Succeeded, SETTLE).await;
    }
    // Collection follows the Succeeded status write: give it a moment.
    let left = eventually("history collected to 2", Duration::from_secs(10), || {
        let api = stack.releases();
        async move {
            let left: Vec<String> = api
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter(|r| r.spec.environment == "main")
                .map(|r| r.name_any())
                .collect();
            Ok((left.len() == 2).then_some(left))
        }
    })
    .await
    .unwrap();
    assert!(!left.contains(&rolled.name_any()), "{left:?}");
}

/// The time from entering `from` to entering `to`, from the release's transitions.
fn time_between(release: &ShipRelease, from: Phase, to: Phase) -> Duration {
    let at = |phase: Phase| {
        release
            .status
            .as_ref()
            .unwrap()
            .transitions
            .iter()
            .find(|t| t.phase == phase)
            .map(|t| t.at.0)
            .unwrap_or_else(|| panic!("no {phase} transition: {release:#?}"))
    };
    let span = at(to).duration_since(at(from));
    Duration::from_millis(u64::try_from(span.as_millis()).unwrap_or(0))
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn crash_looping_and_unpullable_rollouts_fail_long_before_the_health_timeout() {
    // A health timeout of 5 minutes: a failure well inside it can only come from reading the Pods.
    let mut stack = Stack::new("release-crash", "300s").await;
    let good = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy")),
            ("deploy/main/app.yaml", &deployment(Pods::Ready)),
        ],
        "good",
    );
    stack.start_shipd(&[]);
    stack.settled(&good, Phase::Succeeded, SETTLE).await;

    for (pods, reason_text) in [
        (Pods::Crash, "CrashLoopBackOff"),
        (Pods::MissingImage, "ErrImageNeverPull"),
    ] {
        let bad = stack.push(
            &[("deploy/main/app.yaml", &deployment(pods))],
            &format!("{pods:?}"),
        );
        let rolled = stack.settled(&bad, Phase::RolledBack, SETTLE).await;
        let status = rolled.status.as_ref().unwrap();
        let failed = status
            .transitions
            .iter()
            .find(|t| t.phase == Phase::Failed)
            .unwrap();
        assert!(
            failed.message.contains(reason_text) && !failed.message.contains("health timeout"),
            "{pods:?}: {}",
            failed.message
        );
        let took = time_between(&rolled, Phase::Progressing, Phase::Failed);
        eprintln!("{pods:?}: Progressing -> Failed in {took:?} ({})", failed.message);
        assert!(took < Duration::from_secs(60), "{pods:?} took {took:?}");
        // the good commit's real pod serves again
        let deploy = Api::<Deployment>::namespaced(stack.cluster.client(), &stack.ns)
            .get("web")
            .await
            .unwrap();
        assert_eq!(deploy.annotations().get(keys::COMMIT), Some(&good));
        assert_eq!(deploy.status.and_then(|s| s.ready_replicas), Some(1), "{pods:?}");
        // roll forward from the good tree
        stack.remote.git(&["revert", "--no-edit", "HEAD"]).unwrap();
    }
}

/// A release this Ship cannot read stalls nothing. Its status holds a value the CRD's schema
/// allows and Ship's types do not (a count past u32, as another Ship version might write):
/// the next push still deploys, and the environment still says what runs.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_release_ship_cannot_read_stalls_nothing() {
    let mut stack = Stack::new("release-unreadable", "30s").await;
    let good = stack.push(&[("deploy/main/web.yaml", &configmap("healthy"))], "good");
    stack.start_shipd(&[]);
    let first = stack.settled(&good, Phase::Succeeded, SETTLE).await;
    let unreadable = serde_json::json!({"status": {"notifications": [
        {"id": "x/Succeeded/1", "outcome": "Delivered", "attempts": 5_000_000_000u64, "at": "2026-01-01T00:00:00Z"}
    ]}});
    stack
        .releases()
        .patch_status(
            &first.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&unreadable),
        )
        .await
        .expect_err("Ship's own types cannot read it back");
    let raw: Api<kube::core::DynamicObject> = Api::namespaced_with(
        stack.cluster.client(),
        &stack.ns,
        &kube::discovery::ApiResource::erase::<ShipRelease>(&()),
    );
    let stored = raw.get(&first.name_any()).await.unwrap();
    assert_eq!(
        stored.data["status"]["notifications"][0]["attempts"],
        5_000_000_000u64
    );
    // Ship says why it cannot read it, in an event and the status's message, and loses
    // nothing: the phase another Ship wrote stays.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(stack.cluster.client(), &stack.ns);
    eventually("an InvalidObject event", SETTLE, || {
        let (events, name) = (events.clone(), first.name_any());
        async move {
            let list = events.list(&Default::default()).await?;
            Ok(list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("InvalidObject")
                    && e.involved_object.name.as_deref() == Some(&name)
            }))
        }
    })
    .await
    .unwrap();
    let said = eventually("the message in the status", SETTLE, || {
        let (raw, name) = (raw.clone(), first.name_any());
        async move {
            let status = raw.get(&name).await?.data["status"].clone();
            Ok(status["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the ShipRelease cannot be read"))
                .then_some(status))
        }
    })
    .await
    .unwrap();
    assert_eq!(said["phase"], "Succeeded", "{said}");
    assert_eq!(said["notifications"][0]["attempts"], 5_000_000_000u64);

    let next = stack.push(&[("deploy/main/web.yaml", &configmap("healthy, next"))], "next");
    let deployed = stack.settled(&next, Phase::Succeeded, SETTLE).await;
    assert_eq!(stack.web_commit().await, next);
    let environments: Api<ship_api::ShipEnvironment> = Api::namespaced(stack.cluster.client(), &stack.ns);
    eventually("the environment says what runs", SETTLE, || {
        let (environments, name) = (environments.clone(), deployed.name_any());
        async move {
            let main = environments.get("main").await?;
            Ok(main
                .status
                .and_then(|s| s.deployed)
                .filter(|d| d.name == name)
                .map(drop))
        }
    })
    .await
    .unwrap();
    // kubectl ship names it and shows the rest.
    let out = tokio::process::Command::new(ship_testkit::cluster::workspace_bin("kubectl-ship"))
        .args(["status", "-n", &stack.ns])
        .env("KUBECONFIG", stack.cluster.kubeconfig())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&next[..7]), "{stdout}");
    assert!(
        stderr.contains(&format!("ShipRelease {} cannot be read", first.name_any())),
        "{stderr}"
    );
}

/// A commit that drops a container's readiness probe deploys, on every supported Kubernetes:
/// an API server before 1.22 would keep the probe's defaulted fields and refuse the apply
/// (`readinessProbe.httpGet.port: Invalid value: 0`, as `kubectl apply --server-side` does), so
/// Ship removes what its own apply set first (ship_engine::orphans). A probe someone else added
/// by hand stays.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_commit_that_removes_a_readiness_probe_deploys_and_the_probe_is_gone() {
    let mut stack = Stack::new("release-probe", "60s").await;
    stack.start_shipd(&[]);
    let with_probe = stack.push(
        &[
            ("deploy/main/web.yaml", &configmap("healthy")),
            ("deploy/main/deployment.yaml", &deployment(Pods::Ready)),
        ],
        "web with a readiness probe",
    );
    stack.settled(&with_probe, Phase::Succeeded, SETTLE).await;
    let deployments = Api::<Deployment>::namespaced(stack.cluster.client(), &stack.ns);
    let probe_of = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.readiness_probe.clone())
    };
    assert!(probe_of(&deployments.get("web").await.unwrap()).is_some());

    let without = deployment(Pods::Ready).replace(
        ",\n         readinessProbe: {httpGet: {path: '/health', port: 8080}, periodSeconds: 1}}",
        "}",
    );
    assert!(!without.contains("readinessProbe"), "{without}");
    let removed = stack.push(
        &[("deploy/main/deployment.yaml", &without)],
        "drop the readiness probe",
    );
    let release = stack.settled(&removed, Phase::Succeeded, SETTLE).await;
    let live = deployments.get("web").await.unwrap();
    assert_eq!(probe_of(&live), None, "{release:#?}");
}

/// A Deployment that mounts the Secret a cert-manager `Certificate` in the same commit will
/// make is not refused as `MissingReference` (cert-manager would never see the Certificate):
/// the Certificate is applied, and once its Secret exists (made here as cert-manager would),
/// the release succeeds. The same Deployment with the Secret named by nothing in the commit but
/// a custom resource of an unknown project goes ahead too, saying what it awaits.
#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_secret_a_certificate_in_the_commit_will_make_is_awaited_not_refused() {
    let mut stack = Stack::new("release-producer", "60s").await;
    // cert-manager's CRD, as its install puts it (the controller itself is not needed: the
    // test makes the Secret as it would).
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: certificates.cert-manager.io}\n\
spec:\n  group: cert-manager.io\n  scope: Namespaced\n  names: {kind: Certificate, plural: certificates, singular: certificate}\n  \
versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crd.yaml"), crd).unwrap();
    let out = stack
        .cluster
        .kubectl(&["apply", "-f", dir.path().join("crd.yaml").to_str().unwrap()])
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = stack
        .cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/certificates.cert-manager.io",
            "--timeout=60s",
        ])
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let good = stack.push(&[("deploy/main/web.yaml", &configmap("healthy"))], "good");
    stack.start_shipd(&[]);
    stack.settled(&good, Phase::Succeeded, SETTLE).await;

    let certificate = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web}\n\
spec: {secretName: web-tls, dnsNames: [shop.example.com], issuerRef: {name: letsencrypt, kind: ClusterIssuer}}\n";
    let mounts = deployment(Pods::Ready).replace(
        "      containers:\n",
        "      volumes: [{name: tls, secret: {secretName: web-tls}}]\n      containers:\n",
    );
    assert!(mounts.contains("web-tls"), "{mounts}");
    let with_certificate = stack.push(
        &[
            ("deploy/main/certificate.yaml", certificate),
            ("deploy/main/app.yaml", &mounts),
        ],
        "TLS from cert-manager",
    );
    let name = format!("main-{}", &with_certificate[..10]);
    // Applied, not refused: the Certificate is in the cluster and the rollout waits.
    eventually("the Certificate is applied", SETTLE, || async {
        let out = stack.cluster.kubectl(&[
            "get",
            "certificates.cert-manager.io",
            "web",
            "-n",
            &stack.ns,
            "-o",
            "name",
        ])?;
        Ok(out.status.success().then_some(()))
    })
    .await
    .unwrap();
    let release = stack.releases().get(&name).await.unwrap();
    assert_ne!(ready_reason(&release), "MissingReference", "{:?}", release.status);
    // cert-manager would now write the keypair.
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-tls"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "not a real certificate", "tls.key": "not a real key"}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(stack.cluster.client(), &stack.ns)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    stack.settled(&with_certificate, Phase::Succeeded, SETTLE).await;

    // A custom resource of a project Ship does not know, and a Secret nothing known makes:
    // awaited, with a ReferencesAwaited event naming it; the health timeout bounds the wait.
    let unknown = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: other}\n\
spec: {secretName: other-tls, issuerRef: {name: letsencrypt, kind: ClusterIssuer}}\n";
    let needs_more = mounts.replace("secretName: web-tls", "secretName: made-by-an-operator");
    let awaited = stack.push(
        &[
            ("deploy/main/certificate.yaml", unknown),
            ("deploy/main/app.yaml", &needs_more),
        ],
        "needs what an unknown operator makes",
    );
    let name = format!("main-{}", &awaited[..10]);
    eventually("a ReferencesAwaited event", SETTLE, || async {
        let out = stack
            .cluster
            .kubectl(&["get", "events.events.k8s.io", "-n", &stack.ns, "-o", "json"])?;
        let events = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((events.contains("ReferencesAwaited") && events.contains("made-by-an-operator")).then_some(()))
    })
    .await
    .unwrap();
    let release = stack.releases().get(&name).await.unwrap();
    assert_ne!(ready_reason(&release), "MissingReference");
    let _ = stack
        .cluster
        .kubectl(&["delete", "crd", "certificates.cert-manager.io", "--wait=false"]);
}
