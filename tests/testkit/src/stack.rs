//! Both environments of a sample app, for tests that play whole stories: a namespace per
//! environment, a real repository behind a real `git daemon`, the app stand-in, and `shipd`.
//!
//! `main` deploys into `<ns>`, `production` into `<ns>-prod`; both run the same `home` test
//! (the app must answer `healthy`). The promotion runs on the default schedule (Tuesday 10:00
//! UTC); tests move shipd's clock with `--test-clock`.

use std::time::Duration;

use anyhow::Context as _;
use kube::Api;
use ship_api::{Phase, ShipEnvironment, ShipPromotion, ShipRelease};

use crate::app::App;
use crate::cluster::{TestCluster, eventually};
use crate::git::{GitDaemon, Remote};
use crate::process::Shipd;

/// The app's ConfigMap with `body` (the app answers it; `healthy` passes the test).
pub fn configmap(body: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web}}\ndata: {{body: {body:?}}}\n")
}

/// One sample app in two environments, with its repository and controller.
#[derive(Debug)]
pub struct Stack {
    /// The control plane.
    pub cluster: TestCluster,
    /// The namespace of `main` (and of the ShipReleases); production's is `<ns>-prod`.
    pub ns: String,
    /// The repository.
    pub remote: Remote,
    /// The git daemon serving it.
    pub daemon: GitDaemon,
    data: tempfile::TempDir,
    /// The running controller, if started.
    pub shipd: Option<Shipd>,
    app: App,
}

impl Stack {
    /// Namespaces, repository (ship.yaml and a healthy app committed on main, not yet pushed),
    /// daemon and app. `promotion` is the `promotion:` block of ship.yaml (YAML flow style).
    /// Bisection is off (`bisect: {enabled: false}`): the tests of the release machine push
    /// bad commits after bad ones, and their oracles count pushed releases only; the bisection
    /// tests turn it on ([`Stack::enable_bisect`]).
    pub async fn new(prefix: &str, promotion: &str) -> anyhow::Result<Self> {
        let cluster = TestCluster::connect().await?;
        cluster.install_crds().await?;
        let ns = cluster.namespace(prefix).await?;
        let prod = format!("{ns}-prod");
        cluster
            .kubectl(&["create", "namespace", &prod])
            .context("create production namespace")?;
        let app = App::start(cluster.client()).await?;
        let remote = Remote::new()?;
        let daemon = GitDaemon::start(remote.dir.path())?;
        let ship_yaml = format!(
            "environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {prod}}}\n\
             health: {{timeout: 30s}}\npromotion: {promotion}\nbisect: {{enabled: false}}\n\
             tests:\n- name: home\n  http: {{url: '{}', expect: {{bodyContains: healthy}}}}\n",
            app.health_url()
        );
        remote.commit_files(
            &[
                ("ship.yaml", &ship_yaml),
                ("deploy/main/web.yaml", &configmap("healthy main")),
                ("deploy/production/web.yaml", &configmap("healthy production")),
            ],
            "sample app",
        )?;
        Ok(Self {
            cluster,
            ns,
            remote,
            daemon,
            data: tempfile::tempdir()?,
            shipd: None,
            app,
        })
    }

    /// The URL of the app stand-in's health answer, which the `home` test calls.
    pub fn app_health_url(&self) -> String {
        self.app.health_url()
    }

    /// Starts shipd on this stack (replacing a running one), with `extra` flags.
    pub fn start_shipd(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        self.kill_shipd()?;
        let data = self.data.path().to_owned();
        self.shipd = Some(self.spawn_shipd(&data, extra)?);
        Ok(())
    }

    /// Starts another shipd on this stack, with its own data directory (for example a second
    /// replica); the caller owns it.
    pub fn spawn_shipd(&self, data: &std::path::Path, extra: &[&str]) -> anyhow::Result<Shipd> {
        self.spawn_shipd_as(self.cluster.kubeconfig(), data, extra)
    }

    /// Like [`Stack::spawn_shipd`], connecting with `kubeconfig` (for example one that
    /// impersonates a ServiceAccount).
    pub fn spawn_shipd_as(
        &self,
        kubeconfig: &std::path::Path,
        data: &std::path::Path,
        extra: &[&str],
    ) -> anyhow::Result<Shipd> {
        let url = self.daemon.url("repo.git");
        let data = data.display().to_string();
        let base = [
            ("--namespace", self.ns.as_str()),
            ("--secret-namespace", self.ns.as_str()),
            ("--repo-url", url.as_str()),
            ("--data-dir", data.as_str()),
            ("--poll-interval", "1s"),
            ("--promotion-interval", "1s"),
        ];
        // A flag given in `extra` replaces the stack's default for it.
        let mut args: Vec<&str> = base
            .iter()
            .filter(|(flag, _)| !extra.contains(flag))
            .flat_map(|(flag, value)| [*flag, *value])
            .collect();
        args.extend(extra);
        Shipd::start(kubeconfig, &args)
    }

    /// Deletes shipd's git mirror, as a restart on an empty volume would find it (stop shipd
    /// first).
    pub fn wipe_mirror(&self) -> anyhow::Result<()> {
        let mirror = self.data.path().join("mirror.git");
        if mirror.exists() {
            std::fs::remove_dir_all(&mirror).with_context(|| format!("remove {}", mirror.display()))?;
        }
        Ok(())
    }

    /// Runs `kubectl ship ARGS -n <ns>` as a user would: kubectl finds the plugin on PATH.
    pub async fn kubectl_ship(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let plugin_dir = crate::cluster::workspace_bin("kubectl-ship")
            .parent()
            .map(std::path::Path::to_owned)
            .unwrap_or_default();
        anyhow::ensure!(
            plugin_dir.join("kubectl-ship").exists(),
            "build kubectl-ship first (cargo build --workspace --bins)"
        );
        let path = format!(
            "{}:{}",
            plugin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut full = vec!["ship"];
        full.extend_from_slice(args);
        full.extend(["-n", &self.ns]);
        let out = tokio::process::Command::new("kubectl")
            .args(&full)
            .env("PATH", path)
            .env("KUBECONFIG", self.cluster.kubeconfig())
            .output()
            .await
            .context("run kubectl ship")?;
        Ok(out)
    }

    /// SIGKILLs shipd, if running.
    pub fn kill_shipd(&mut self) -> anyhow::Result<()> {
        if let Some(mut shipd) = self.shipd.take() {
            shipd.signal("KILL")?;
            shipd.wait_exit(Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// Commits a ship.yaml whose `bisect:` block is `settings` (YAML flow style; not pushed).
    pub fn enable_bisect(&self, settings: &str) -> anyhow::Result<String> {
        let ship_yaml = std::fs::read_to_string(self.remote.work.join("ship.yaml"))?;
        let changed = ship_yaml.replace("bisect: {enabled: false}", &format!("bisect: {settings}"));
        anyhow::ensure!(
            changed != ship_yaml,
            "ship.yaml has no `bisect: {{enabled: false}}` to change"
        );
        self.remote.commit_files(&[("ship.yaml", &changed)], "bisect")
    }

    /// Writes `files` on main, commits, pushes; returns the commit.
    pub fn push_main(&self, files: &[(&str, &str)], message: &str) -> anyhow::Result<String> {
        let commit = self.remote.commit_files(files, message)?;
        self.remote.push("main", false)?;
        Ok(commit)
    }

    /// Pushes a commit on main that breaks the app (its `home` test fails), with `message` as
    /// its subject; returns the commit and the name of its release.
    pub fn push_broken_main(&self, message: &str) -> anyhow::Result<(String, String)> {
        let commit = self.push_main(&[("deploy/main/web.yaml", &configmap("broken"))], message)?;
        let release = release_name("main", &commit);
        Ok((commit, release))
    }

    /// Creates the Secret `name` in the stack's namespace with `data` (as `stringData`).
    pub async fn create_secret(&self, name: &str, data: serde_json::Value) -> anyhow::Result<()> {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "stringData": data}))?;
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.cluster.client(), &self.ns)
            .create(&kube::api::PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    /// The opening of most stories: pushes the sample app to main, starts shipd with `extra`
    /// flags, and waits for main's release to succeed. Returns the commit.
    pub async fn deploy_first(&mut self, extra: &[&str]) -> anyhow::Result<String> {
        self.remote.push("main", false)?;
        let commit = self.branch_tip("main")?;
        self.start_shipd(extra)?;
        self.settled(
            &release_name("main", &commit),
            Phase::Succeeded,
            Duration::from_secs(60),
        )
        .await?;
        Ok(commit)
    }

    /// The tip of `branch` in the served repository.
    pub fn branch_tip(&self, branch: &str) -> anyhow::Result<String> {
        crate::git::git(&self.remote.bare, &["rev-parse", &format!("refs/heads/{branch}")])
    }

    /// The ShipReleases of this stack.
    pub fn releases(&self) -> Api<ShipRelease> {
        Api::namespaced(self.cluster.client(), &self.ns)
    }

    /// The names of this stack's releases that `keep` keeps, sorted.
    pub async fn release_names(&self, keep: impl Fn(&ShipRelease) -> bool) -> anyhow::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .releases()
            .list(&kube::api::ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|r| keep(r))
            .map(|r| r.metadata.name.unwrap_or_default())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The ShipPromotions of this stack.
    pub fn promotions(&self) -> Api<ShipPromotion> {
        Api::namespaced(self.cluster.client(), &self.ns)
    }

    /// shipd's logs so far.
    pub fn logs(&self) -> String {
        self.shipd.as_ref().map(Shipd::logs).unwrap_or_default()
    }

    /// Waits until release `name` settles in `phase` (see [`at_rest_in`]); the failure shows
    /// shipd's logs, the release, and last what was awaited (the end of a cut log shows it).
    pub async fn settled(&self, name: &str, phase: Phase, timeout: Duration) -> anyhow::Result<ShipRelease> {
        let api = self.releases();
        let result = eventually(&format!("{name} {phase}"), timeout, || {
            let api = api.clone();
            async move {
                let release = api.get_opt(name).await?;
                Ok(release.filter(|r| at_rest_in(r, phase)))
            }
        })
        .await;
        match result {
            Ok(release) => Ok(release),
            Err(err) => {
                let now = api.get_opt(name).await.ok().flatten();
                anyhow::bail!("shipd logs:\n{}\nrelease now: {now:#?}\n{err:#}", self.logs())
            }
        }
    }

    /// Asks for a promotion into production now, as `kubectl ship promote` does: annotates
    /// the ShipPromotion with `requested-at` = `value` (a new value each time) and `by`.
    pub async fn request_promotion(&self, value: &str, by: &str) -> anyhow::Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {
            ship_api::keys::REQUESTED_AT: value,
            ship_api::keys::REQUESTED_BY: by,
        }}});
        self.promotions()
            .patch(
                "production",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// The ShipEnvironments of this stack.
    pub fn environments(&self) -> Api<ShipEnvironment> {
        Api::namespaced(self.cluster.client(), &self.ns)
    }

    /// Waits until the ShipPromotion `name` satisfies `done`.
    pub async fn promotion_where(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&ShipPromotion) -> bool,
    ) -> anyhow::Result<ShipPromotion> {
        self.object_where(self.promotions(), name, timeout, done).await
    }

    /// Waits until the last run of the ShipPromotion `name` ended with `outcome`; returns that
    /// run.
    pub async fn promotion_ran(
        &self,
        name: &str,
        timeout: Duration,
        outcome: ship_api::PromotionOutcome,
    ) -> anyhow::Result<ship_api::PromotionRun> {
        let promotion = self
            .promotion_where(name, timeout, |p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.last_run.as_ref())
                    .is_some_and(|r| r.outcome == outcome)
            })
            .await?;
        promotion
            .status
            .and_then(|s| s.last_run)
            .context("the last run was just seen")
    }

    /// Waits until the ShipEnvironment `name` satisfies `done`.
    pub async fn environment_where(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&ShipEnvironment) -> bool,
    ) -> anyhow::Result<ShipEnvironment> {
        self.object_where(self.environments(), name, timeout, done).await
    }

    /// Waits for a Kubernetes Event with `reason` in the stack's namespace whose note
    /// satisfies `note`; returns it.
    pub async fn event_where(
        &self,
        reason: &str,
        timeout: Duration,
        note: impl Fn(&str) -> bool,
    ) -> anyhow::Result<k8s_openapi::api::core::v1::Event> {
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.cluster.client(), &self.ns);
        let note = &note;
        eventually(&format!("a {reason} event"), timeout, || {
            let events = events.clone();
            async move {
                let list = events.list(&kube::api::ListParams::default()).await?;
                Ok(list.items.into_iter().find(|e| {
                    e.reason.as_deref() == Some(reason) && note(e.message.as_deref().unwrap_or_default())
                }))
            }
        })
        .await
    }

    /// Waits until the ShipRelease `name` satisfies `done`.
    pub async fn release_where(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&ShipRelease) -> bool,
    ) -> anyhow::Result<ShipRelease> {
        self.object_where(self.releases(), name, timeout, done).await
    }

    /// Waits until object `name` of `api` satisfies `done`; the failure shows shipd's logs and
    /// the object as it stands.
    async fn object_where<K>(
        &self,
        api: Api<K>,
        name: &str,
        timeout: Duration,
        done: impl Fn(&K) -> bool,
    ) -> anyhow::Result<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    {
        let what = format!("{} {name}", K::kind(&()));
        let result = eventually(&what, timeout, || {
            let api = api.clone();
            let done = &done;
            async move { Ok(api.get_opt(name).await?.filter(|o| done(o))) }
        })
        .await;
        match result {
            Ok(found) => Ok(found),
            Err(err) => {
                let now = api.get_opt(name).await.ok().flatten();
                anyhow::bail!("shipd logs:\n{}\n{what} now: {now:#?}\n{err:#}", self.logs())
            }
        }
    }
}

/// The status of condition `type_` on a ShipEnvironment, and its reason (`None`: not written).
pub fn environment_condition(environment: &ShipEnvironment, type_: &str) -> Option<(String, String)> {
    let status = environment.status.as_ref()?;
    let found = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((found.status.clone(), found.reason.clone()))
}

/// The reason of the release's `Ready` condition (empty before there is one).
pub fn ready_reason(release: &ShipRelease) -> String {
    release
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The phases a release went through, in order.
pub fn phases(release: &ShipRelease) -> Vec<Phase> {
    release
        .status
        .as_ref()
        .map(|s| s.transitions.iter().map(|t| t.phase).collect())
        .unwrap_or_default()
}

/// The names of the ConfigMaps Ship manages in `namespace` (not being deleted), sorted.
pub async fn managed_configmaps(client: kube::Client, namespace: &str) -> anyhow::Result<Vec<String>> {
    use kube::ResourceExt as _;
    let params = kube::api::ListParams::default().labels(&format!(
        "{}={}",
        ship_api::keys::MANAGED_BY,
        ship_api::keys::MANAGED_BY_SHIP
    ));
    let mut names: Vec<String> = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, namespace)
        .list(&params)
        .await?
        .items
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(|c| c.name_any())
        .collect();
    names.sort();
    Ok(names)
}

pub use ship_api::names::release_name;

/// `release` is in `phase` and, unless that phase is one of work in progress, the controller
/// is done with it: a release that failed after changing the cluster is `Failed` for a moment
/// before its rollback begins, and a test waiting for `Failed` must not stop there.
pub fn at_rest_in(release: &ShipRelease, phase: Phase) -> bool {
    release.phase() == Some(phase) && (phase.is_in_progress() || release.is_settled())
}
