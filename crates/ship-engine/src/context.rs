//! Everything a reconcile needs, shared by all of them: the clients (shipd's own and each
//! remote environment's), the repository, the reflector store of ShipReleases, the caches of
//! rendered commits, the per-environment turn, the clock, the settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use ship_api::{Hold, ShipRelease, keys};
use ship_render::Rendered;
use ship_render::cache::{RenderCache, RenderKey};
use tokio::sync::watch;

use crate::apply::Applier;
use crate::clock::Clock;
use crate::error::Error;
use crate::repo::{LoadError, Repo};

/// Settings of the release engine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Settled releases kept per environment; older ones are deleted.
    pub history_limit: usize,
    /// How often the deployed release is re-applied to correct drift.
    pub drift_interval: Duration,
    /// Fault injection for tests: at this point (a phase's name: just after persisting it; or
    /// one of [`FAULT_POINTS`]), pause this long, so a test can kill the controller exactly
    /// there. Never set in production.
    pub pause_at: Option<(String, Duration)>,
    /// Fault injection for tests: each reconcile is handed the release as it was one version
    /// earlier (the controller's cache lagging its own writes), so every decision is first
    /// taken on a stale view. Never set in production.
    pub stale_views: bool,
    /// Dry runs and applies kept in flight at once (`--apply-concurrency`).
    pub apply_concurrency: usize,
    /// Watch the deployed objects and correct drift as soon as it happens (`--drift-watch`);
    /// off, drift is corrected every `drift_interval` only.
    pub drift_watch: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            history_limit: 10,
            drift_interval: Duration::from_secs(300),
            pause_at: None,
            stale_views: false,
            apply_concurrency: crate::apply::IN_FLIGHT,
            drift_watch: true,
        }
    }
}

/// Fault-injection points inside a phase's work (besides every phase's status write):
/// half the objects applied; tests run but their results not written; the good commit
/// re-applied but its health not awaited.
pub const FAULT_POINTS: [&str; 3] = ["MidApply", "MidTest", "MidRollback"];

/// Per environment: one release acts at a time, and the newest release's sequence, which an
/// older release in flight watches to know it has been superseded.
#[derive(Debug)]
pub(crate) struct EnvironmentSlot {
    pub(crate) lock: tokio::sync::Mutex<()>,
    pub(crate) newest: watch::Sender<(i64, String)>,
}

/// Clients of remote clusters by (namespace, Secret name), with the Secret's resourceVersion.
type TargetCache = HashMap<(String, String), (String, Client)>;

/// Everything a reconcile needs, shared by all of them.
#[derive(Clone)]
pub struct Context {
    /// Client of the cluster holding the ShipReleases (and, today, the environments).
    pub client: Client,
    /// The one event recorder of this controller.
    pub recorder: crate::events::EventRecorder,
    /// Only this namespace is watched when set; all namespaces otherwise.
    pub namespace: Option<String>,
    /// The repository, when shipd follows one.
    pub repo: Option<Repo>,
    /// Engine settings.
    pub settings: Settings,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub(crate) http: reqwest::Client,
    pub(crate) applier: Arc<Applier>,
    pub(crate) slots: Arc<Mutex<HashMap<String, Arc<EnvironmentSlot>>>>,
    /// With [`Settings::stale_views`]: the last version of each release a reconcile was
    /// handed (`namespace/name`).
    pub(crate) last_handed: Arc<Mutex<HashMap<String, ShipRelease>>>,
    pub(crate) rendered: Arc<Mutex<RenderCache<Rendered>>>,
    pub(crate) targets: Arc<Mutex<TargetCache>>,
    /// Namespace of the Secrets holding remote clusters' kubeconfigs (default: the release's).
    pub secret_namespace: Option<String>,
    /// The engine's one clock (shared with the promotion).
    pub clock: Clock,
    /// The controller's reflector store of ShipReleases, once its first list is complete:
    /// every read of an environment's releases comes from it, not from the API server.
    pub(crate) store: Arc<std::sync::OnceLock<Store<DeserializeGuard<ShipRelease>>>>,
    /// Asks the controller to reconcile a release now (a bisection's test release settled:
    /// the failed release it tests for takes its next step without waiting for its look).
    pub(crate) wake:
        Option<futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<ShipRelease>>>>,
    /// When each environment's drift correction last re-applied everything.
    pub(crate) full_rechecks: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
    /// The watches that see drift as it happens.
    pub(crate) drift_watches: Arc<crate::drift_watch::DriftWatches>,
    /// shipd's one ShipEnvironment watch, and the namespace it watches: holds are read from
    /// it there (a drift check of an idle environment then costs no GET of its hold).
    pub(crate) environments: Option<(crate::watches::Shared<ship_api::ShipEnvironment>, String)>,
}

/// Drift checks between two full re-checks of an environment (everything re-applied, for what
/// the objects' metadata cannot show). At the default `--drift-interval` of 5 minutes: hourly.
pub const FULL_RECHECK_EVERY: u32 = 12;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespace", &self.namespace)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Rendered commits kept in memory, so the phases of one release render once.
const RENDER_CACHE: usize = 8;

impl Context {
    /// A context whose events are reported as `ship-controller`, from `instance` (the pod name).
    pub fn new(client: Client, namespace: Option<String>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "ship-controller".into(),
            instance,
        };
        Self {
            recorder: crate::events::EventRecorder::new(client.clone(), reporter),
            client,
            namespace,
            repo: None,
            settings: Settings::default(),
            metrics: Arc::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            applier: Arc::new(Applier::default()),
            slots: Arc::default(),
            last_handed: Arc::default(),
            rendered: Arc::new(Mutex::new(RenderCache::new(RENDER_CACHE))),
            targets: Arc::default(),
            secret_namespace: None,
            clock: crate::clock::system_clock(),
            store: Arc::default(),
            wake: None,
            full_rechecks: Arc::default(),
            drift_watches: Arc::default(),
            environments: None,
        }
    }

    /// Whether `environment`'s drift check now re-checks everything: the first after a start,
    /// then one in [`FULL_RECHECK_EVERY`] drift intervals after the last that was done
    /// ([`Context::full_recheck_done`]; one that failed is due again at the next check).
    pub(crate) fn full_recheck_due(&self, environment: &str) -> bool {
        let Ok(last) = self.full_rechecks.lock() else {
            return true;
        };
        let every = self.settings.drift_interval.saturating_mul(FULL_RECHECK_EVERY);
        last.get(environment).is_none_or(|at| at.elapsed() >= every)
    }

    /// Notes that `environment`'s full re-check was done (its writes went through).
    pub(crate) fn full_recheck_done(&self, environment: &str) {
        if let Ok(mut last) = self.full_rechecks.lock() {
            last.insert(environment.to_owned(), tokio::time::Instant::now());
        }
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// The same context, reading commits from `repo`.
    pub fn with_repo(mut self, repo: Repo) -> Self {
        self.repo = Some(repo);
        self
    }

    /// The same context, reporting to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same context, reading remote clusters' kubeconfig Secrets in `namespace`.
    pub fn with_secret_namespace(mut self, namespace: String) -> Self {
        self.secret_namespace = Some(namespace);
        self
    }

    /// The client of the cluster an environment deploys to: shipd's own, or the one whose
    /// kubeconfig the Secret named in `ship.yaml` holds (built once per Secret version).
    pub(crate) async fn target(
        &self,
        rendered: &Rendered,
        environment: &str,
        release_namespace: &str,
    ) -> Result<Client, Error> {
        let Some(secret_name) = rendered
            .config
            .environments
            .get(environment)
            .and_then(|e| e.kubeconfig_secret.clone())
        else {
            return Ok(self.client.clone());
        };
        let namespace = self
            .secret_namespace
            .clone()
            .unwrap_or_else(|| release_namespace.to_owned());
        let unavailable = |problem: String| Error::RemoteCluster {
            secret: format!("{namespace}/{secret_name}"),
            problem,
        };
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), &namespace);
        let secret = secrets
            .get_opt(&secret_name)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| unavailable("the Secret does not exist".into()))?;
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        let key = (namespace.clone(), secret_name.clone());
        if let Some((cached_version, client)) = self.targets.lock().ok().and_then(|t| t.get(&key).cloned())
            && cached_version == version
        {
            return Ok(client);
        }
        let text = secret
            .data
            .as_ref()
            .and_then(|d| d.get("kubeconfig"))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .ok_or_else(|| unavailable("the Secret has no key `kubeconfig`".into()))?;
        // Errors name the problem, never the content (it holds credentials).
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .map_err(|_| unavailable("key `kubeconfig` is not a kubeconfig".into()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| unavailable(format!("cannot use the kubeconfig: {e}")))?;
        let client = Client::try_from(config).map_err(|e| unavailable(e.to_string()))?;
        if let Ok(mut targets) = self.targets.lock() {
            targets.insert(key, (version, client.clone()));
        }
        Ok(client)
    }

    /// The same context with these settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        // The applier keeps the settings' concurrency.
        self.applier = Arc::new(Applier::new(settings.apply_concurrency));
        self.settings = settings;
        self
    }

    /// The same context reading holds from `environments`, the watch of ShipEnvironments in
    /// `namespace`.
    pub fn with_environments(
        mut self,
        environments: crate::watches::Shared<ship_api::ShipEnvironment>,
        namespace: &str,
    ) -> Self {
        self.environments = Some((environments, namespace.to_owned()));
        self
    }

    /// The hold on `environment` in `namespace`: from the ShipEnvironment watch once it holds
    /// its first list, when it watches that namespace (a hold placed now is there within the
    /// watch's delivery, as it would be in a GET sent that moment); from the API server
    /// otherwise, or when the stored object cannot be read.
    pub(crate) async fn hold(&self, namespace: &str, environment: &str) -> Result<Option<Hold>, kube::Error> {
        if let Some((watch, watched)) = &self.environments
            && watched == namespace
            && watch.is_ready()
        {
            let key = ObjectRef::new(environment).within(namespace);
            match watch.store().get(&key) {
                None => return Ok(None),
                Some(stored) => {
                    if let Ok(found) = &stored.0 {
                        return Ok(found.spec.hold.clone());
                    }
                }
            }
        }
        crate::environment::hold_of(&self.client, namespace, environment).await
    }

    /// The engine's HTTP client (no redirects), shared with the notifier: one connection pool,
    /// and a redirect can never carry a token elsewhere.
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The reflector store of ShipReleases, set once its first list is complete (the notifier
    /// reads releases from it too).
    pub fn release_store(&self) -> Arc<std::sync::OnceLock<Store<DeserializeGuard<ShipRelease>>>> {
        self.store.clone()
    }

    pub(crate) fn releases(&self, namespace: &str) -> Api<ShipRelease> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Every release of `environment` in `namespace`: from the reflector store once it holds
    /// the first full list, from the API server before (a reconcile can start while the first
    /// list is still being read, and prune and rollback decisions need every release).
    pub(crate) async fn environment_releases(
        &self,
        namespace: &str,
        environment: &str,
    ) -> Result<Vec<ShipRelease>, Error> {
        let of_environment = |r: &ShipRelease| r.spec.environment == environment;
        if let Some(store) = self.store.get() {
            return Ok(store
                .state()
                .iter()
                .filter_map(|r| r.0.as_ref().ok())
                .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
                .filter(|r| of_environment(r))
                .cloned()
                .collect());
        }
        tracing::debug!(
            environment,
            "listing releases: the store has not read its first list yet"
        );
        self.list_environment_releases(namespace, environment).await
    }

    /// Every release of `environment` in `namespace`, listed from the API server (for the
    /// decisions that must not be taken on a cache that may lag).
    pub(crate) async fn list_environment_releases(
        &self,
        namespace: &str,
        environment: &str,
    ) -> Result<Vec<ShipRelease>, Error> {
        let of_environment = |r: &ShipRelease| r.spec.environment == environment;
        // `ensure_identity` labels every release on first sight, so the label finds them all;
        // the spec decides should a hand-edited label disagree.
        let params = ListParams::default().labels(&format!("{}={environment}", keys::ENVIRONMENT));
        let listed = crate::releases::list_readable(&self.client, namespace, &params)
            .await
            .map_err(Error::Releases)?;
        Ok(listed.into_iter().filter(of_environment).collect())
    }

    /// The release `name` in `namespace`: from the store, asking the API server only when the
    /// store does not have it (so a release is never taken for gone on a store's word alone).
    pub(crate) async fn release(&self, namespace: &str, name: &str) -> Result<Option<ShipRelease>, Error> {
        if let Some(store) = self.store.get()
            && let Some(found) = store.get(&ObjectRef::new(name).within(namespace))
            && let Ok(release) = &found.0
        {
            return Ok(Some(release.clone()));
        }
        self.releases(namespace)
            .get_opt(name)
            .await
            .map_err(Error::Releases)
    }

    pub(crate) fn slot(&self, namespace: &str, environment: &str) -> Arc<EnvironmentSlot> {
        let key = format!("{namespace}/{environment}");
        let mut slots = match self.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(EnvironmentSlot {
                    lock: tokio::sync::Mutex::new(()),
                    newest: watch::channel((i64::MIN, String::new())).0,
                })
            })
            .clone()
    }

    /// `environment` rendered at `commit`, from the cache when this process's renderers made it.
    pub(crate) async fn render(&self, commit: &str, environment: &str) -> Result<Arc<Rendered>, LoadError> {
        let repo = self
            .repo
            .clone()
            .ok_or_else(|| LoadError::NoRepository(commit.to_owned()))?;
        let cache = self.rendered.clone();
        let (commit, environment) = (commit.to_owned(), environment.to_owned());
        // Blocking: asking the renderers' versions (once) and rendering both run processes.
        tokio::task::spawn_blocking(move || {
            let key = RenderKey::new(&commit, &environment);
            if let Some(found) = cache.lock().ok().and_then(|mut c| c.get(&key)) {
                return Ok(found);
            }
            let rendered = Arc::new(repo.render(&commit, &environment)?);
            if let Ok(mut cache) = cache.lock() {
                cache.insert(key, rendered.clone());
            }
            Ok(rendered)
        })
        .await
        .map_err(|e| LoadError::Scratch(format!("render task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_recheck_is_due_first_then_an_interval_set_after_the_last_one_done() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let ctx = Context::new(client, None, None);
        let every = ctx.settings.drift_interval * FULL_RECHECK_EVERY;
        assert!(ctx.full_recheck_due("main"), "the first check after a start");
        // One that failed (never noted done) is due again at the next check.
        tokio::time::advance(ctx.settings.drift_interval).await;
        assert!(ctx.full_recheck_due("main"));
        ctx.full_recheck_done("main");
        assert!(!ctx.full_recheck_due("main"));
        assert!(
            ctx.full_recheck_due("production"),
            "environments are counted apart"
        );
        tokio::time::advance(every - Duration::from_secs(1)).await;
        assert!(!ctx.full_recheck_due("main"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(ctx.full_recheck_due("main"));
    }
}
