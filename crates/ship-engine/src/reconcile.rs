//! The release state machine and the thin layer that talks to the API server.
//!
//! Every phase is written to status (server-side apply on `/status`, fixed field manager)
//! before the work it announces, and every phase's work is idempotent, so a controller killed
//! anywhere resumes from the persisted phase and reaches the same end state:
//!
//! ```text
//! Pending ──render, dry run──▶ Applying ──apply, prune──▶ Progressing ──healthy──▶ Testing ──pass──▶ Succeeded
//!    │ invalid                                              │ timeout/failed          │ fail
//!    ▼                                                      ▼                         ▼
//! Failed (nothing applied)                               Failed ──last good?──▶ RollingBack ──healthy──▶ RolledBack
//!                                                           └─ no good release: Failed (NoGoodRelease), bad commit stays
//! any in-progress phase ──newer release of the environment──▶ Superseded
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use ship_api::{
    InventoryEntry, Phase, Reason, ShipRelease, ShipReleaseStatus, TestResult, TestVerdict, awaits_rollback,
    keys,
};
use ship_render::Rendered;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use crate::apply::{Applier, ApplyError, HealthFailure};
use crate::plan::{self, Stamp};
use crate::repo::{LoadError, Repo};
use crate::status::{Step, next_status};

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            history_limit: 10,
            drift_interval: Duration::from_secs(300),
            pause_at: None,
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
struct EnvironmentSlot {
    lock: tokio::sync::Mutex<()>,
    newest: watch::Sender<(i64, String)>,
}

/// A rendered (commit, environment), cached.
type RenderedCommit = ((String, String), Arc<Rendered>);

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
    http: reqwest::Client,
    applier: Arc<Applier>,
    slots: Arc<Mutex<HashMap<String, Arc<EnvironmentSlot>>>>,
    drift_checked: Arc<Mutex<HashMap<String, Instant>>>,
    rendered: Arc<Mutex<Vec<RenderedCommit>>>,
    targets: Arc<Mutex<TargetCache>>,
    /// Namespace of the Secrets holding remote clusters' kubeconfigs (default: the release's).
    pub secret_namespace: Option<String>,
}

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
            drift_checked: Arc::default(),
            rendered: Arc::default(),
            targets: Arc::default(),
            secret_namespace: None,
        }
    }

    /// The same context, reading commits from `repo`.
    pub fn with_repo(mut self, repo: Repo) -> Self {
        self.repo = Some(repo);
        self
    }

    /// The same context, with `settings`.
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
    async fn target(
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
        self.settings = settings;
        self
    }

    fn releases(&self, namespace: &str) -> Api<ShipRelease> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn slot(&self, namespace: &str, environment: &str) -> Arc<EnvironmentSlot> {
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

    async fn render(&self, commit: &str, environment: &str) -> Result<Arc<Rendered>, LoadError> {
        let key = (commit.to_owned(), environment.to_owned());
        if let Some(found) = self
            .rendered
            .lock()
            .ok()
            .and_then(|cache| cache.iter().find(|(k, _)| *k == key).map(|(_, r)| r.clone()))
        {
            return Ok(found);
        }
        let repo = self
            .repo
            .clone()
            .ok_or_else(|| LoadError::NoRepository(commit.to_owned()))?;
        let (c, e) = key.clone();
        let rendered = tokio::task::spawn_blocking(move || repo.render(&c, &e))
            .await
            .map_err(|e| LoadError::Scratch(format!("render task failed: {e}")))??;
        let rendered = Arc::new(rendered);
        if let Ok(mut cache) = self.rendered.lock() {
            cache.push((key, rendered.clone()));
            if cache.len() > RENDER_CACHE {
                cache.remove(0);
            }
        }
        Ok(rendered)
    }
}

/// Why a reconcile failed (to be retried). Each variant has a fixed label for metrics and events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The status write was refused or did not reach the API server.
    #[error("cannot write the ShipRelease status (check the controller's RBAC for shipreleases/status): {0}")]
    StatusWrite(#[source] kube::Error),
    /// The object has no namespace, which a namespaced ShipRelease always has.
    #[error("the ShipRelease has no namespace")]
    NoNamespace,
    /// Listing or deleting ShipReleases failed.
    #[error("cannot read the environment's ShipReleases: {0}")]
    Releases(#[source] kube::Error),
    /// The cluster could not be reached while applying, pruning or watching.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The commit could not be read yet (for example before the first fetch).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The environment's remote cluster cannot be reached with the Secret named in ship.yaml.
    #[error("cannot use the remote cluster of Secret {secret} (ship.yaml kubeconfigSecret): {problem}")]
    RemoteCluster {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong.
        problem: String,
    },
}

impl Error {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Error::StatusWrite(_) => "StatusWrite",
            Error::NoNamespace => "NoNamespace",
            Error::Releases(_) => "ReleaseList",
            Error::Apply(e) => e.label(),
            Error::Load(e) => e.label(),
            Error::RemoteCluster { .. } => "RemoteCluster",
        }
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Server-side apply of `status` with Ship's fixed field manager.
async fn apply_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &ShipReleaseStatus,
) -> Result<(), Error> {
    crate::status::apply_status(&ctx.releases(namespace), name, status)
        .await
        .map_err(Error::StatusWrite)
}

async fn publish(
    ctx: &Context,
    object: &impl Resource<DynamicType = ()>,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    ctx.recorder
        .announce(&object.object_ref(&()), type_, reason, "Reconcile", note)
        .await;
}

/// The namespace ship.yaml gives `environment` at this commit.
fn environment_namespace(rendered: &Rendered, environment: &str) -> String {
    rendered
        .config
        .environments
        .get(environment)
        .map(|e| e.namespace(environment).to_owned())
        .unwrap_or_default()
}

fn ready_reason(status: Option<&ShipReleaseStatus>) -> &str {
    status.map_or("", ShipReleaseStatus::ready_reason)
}

fn transition_time(status: Option<&ShipReleaseStatus>, phase: Phase) -> Option<jiff::Timestamp> {
    status?
        .transitions
        .iter()
        .rev()
        .find(|t| t.phase == phase)
        .map(|t| t.at.0)
}

/// The instant `timeout` after `phase` was entered (persisted, so a restart keeps the deadline).
fn deadline_after(status: Option<&ShipReleaseStatus>, phase: Phase, timeout: Duration) -> Instant {
    let entered = transition_time(status, phase).unwrap_or_else(jiff::Timestamp::now);
    let elapsed = jiff::Timestamp::now()
        .duration_since(entered)
        .try_into()
        .unwrap_or(Duration::ZERO);
    Instant::now() + timeout.saturating_sub(elapsed)
}

/// Walks one release through its phases.
struct Driver<'a> {
    ctx: &'a Context,
    release: ShipRelease,
    namespace: String,
    name: String,
    slot: Arc<EnvironmentSlot>,
    own: (i64, String),
}

/// How a wait ended.
enum Waited<T> {
    Done(T),
    Superseded,
}

impl Driver<'_> {
    fn status(&self) -> Option<&ShipReleaseStatus> {
        self.release.status.as_ref()
    }

    fn phase(&self) -> Option<Phase> {
        self.status().and_then(|s| s.phase)
    }

    fn environment(&self) -> &str {
        &self.release.spec.environment
    }

    fn superseded(&self) -> bool {
        *self.slot.newest.borrow() > self.own
    }

    /// Runs `work` until it ends or a newer release of the environment appears.
    async fn unless_superseded<T>(&self, work: impl Future<Output = T>) -> Waited<T> {
        let mut newest = self.slot.newest.subscribe();
        let own = self.own.clone();
        tokio::select! {
            done = work => Waited::Done(done),
            _ = newest.wait_for(|n| *n > own) => Waited::Superseded,
        }
    }

    /// Persists `step` (and `edit`s to the status), then announces it.
    async fn persist(&mut self, step: Step, edit: impl FnOnce(&mut ShipReleaseStatus)) -> Result<(), Error> {
        let mut status = next_status(&self.release, &step, &now());
        edit(&mut status);
        if self.release.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let changed_phase = self.phase() != Some(step.phase);
        let previous = self.release.status.clone();
        apply_status(self.ctx, &self.namespace, &self.name, &status).await?;
        self.release.status = Some(status);
        if changed_phase {
            self.measure(previous.as_ref(), &step);
            let warning = matches!(step.phase, Phase::Failed | Phase::RolledBack | Phase::RollingBack);
            if warning {
                warn!(phase = %step.phase, reason = step.reason, "{}", step.message);
            } else {
                info!(phase = %step.phase, reason = step.reason, "{}", step.message);
            }
            let type_ = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(self.ctx, &self.release, type_, step.reason, &step.message).await;
            self.fault_point(step.phase.as_str()).await;
        }
        Ok(())
    }

    /// Fault injection (tests only): pauses when `point` is the armed one.
    async fn fault_point(&self, point: &str) {
        if let Some((armed, pause)) = &self.ctx.settings.pause_at
            && armed == point
        {
            warn!(
                point,
                pause_ms = pause.as_millis() as u64,
                "fault injection: pausing"
            );
            tokio::time::sleep(*pause).await;
        }
    }

    fn armed(&self, point: &str) -> bool {
        self.ctx
            .settings
            .pause_at
            .as_ref()
            .is_some_and(|(armed, _)| armed == point)
    }

    /// Metrics of a phase change just persisted (from `previous` status to `step`).
    fn measure(&self, previous: Option<&ShipReleaseStatus>, step: &Step) {
        let metrics = &self.ctx.metrics;
        let environment = self.environment();
        let now = jiff::Timestamp::now();
        let since = |phase: Phase| {
            transition_time(previous, phase).and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        };
        let left = previous.and_then(|s| s.phase);
        let step_name = match left {
            Some(Phase::Applying) => Some("apply"),
            Some(Phase::Progressing) => Some("health"),
            Some(Phase::Testing) => Some("tests"),
            Some(Phase::RollingBack) => Some("rollback"),
            _ => None,
        };
        if let (Some(name), Some(phase)) = (step_name, left)
            && let Some(took) = since(phase)
        {
            metrics.step(environment, name, took);
        }
        if !step.phase.is_in_progress() {
            metrics.settled(environment, step.phase.as_str(), step.reason);
            if let Some(took) = since(Phase::Pending) {
                metrics.step(environment, "total", took);
            }
        }
        match step.phase {
            Phase::Succeeded => {
                metrics.deployed(environment, &self.release.spec.commit);
                metrics.succeeded_at(
                    environment,
                    now.as_millisecond() as f64 / 1000.0,
                    self.release.spec.reason == Reason::Promotion,
                );
            }
            Phase::RollingBack => {
                let cause = ready_reason(previous);
                metrics.rollback(environment, if cause.is_empty() { "Unknown" } else { cause });
            }
            Phase::Applying if self.release.spec.reason == Reason::Rollback => {
                metrics.rollback(environment, "Requested");
            }
            _ => {}
        }
        if !self.superseded() {
            metrics.latest(
                environment,
                &self.name,
                &self.release.spec.commit,
                step.phase.as_str(),
            );
        }
    }

    async fn environment_releases(&self) -> Result<Vec<ShipRelease>, Error> {
        let params = ListParams::default().labels(&format!("{}={}", keys::ENVIRONMENT, self.environment()));
        let listed = self
            .ctx
            .releases(&self.namespace)
            .list(&params)
            .await
            .map_err(Error::Releases)?;
        // `ensure_identity` labels every release on first sight, so the label finds them all;
        // the spec decides should a hand-edited label disagree.
        let all = listed.items;
        Ok(all
            .into_iter()
            .filter(|r| r.spec.environment == self.release.spec.environment)
            .collect())
    }

    /// The client of the cluster this release's environment deploys to.
    async fn target(&self, rendered: &Rendered) -> Result<Client, Error> {
        self.ctx
            .target(rendered, self.environment(), &self.namespace)
            .await
    }

    fn stamp<'s>(&'s self, commit: &'s str, release: &'s str) -> Stamp<'s> {
        Stamp {
            environment: &self.release.spec.environment,
            commit,
            release,
        }
    }

    /// Gives every release what Ship's own releases carry: the environment label matching its
    /// spec (so it lists with its environment) and, when it has none, a sequence taken now, when
    /// the controller first sees it (a creation timestamp has only second precision, too coarse
    /// to order it after a release made a moment earlier). A no-op once both are there.
    async fn ensure_identity(&mut self) -> Result<(), Error> {
        let metadata = &self.release.metadata;
        let sequenced = metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(keys::SEQUENCE));
        let labelled = metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(keys::ENVIRONMENT))
            .is_some_and(|env| *env == self.release.spec.environment);
        if sequenced && labelled {
            return Ok(());
        }
        // An existing sequence stands (it orders the release); only a missing one is taken now.
        let sequence = metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::SEQUENCE).cloned())
            .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond().to_string());
        let patch = serde_json::json!({"metadata": {
            "labels": {keys::ENVIRONMENT: self.release.spec.environment},
            "annotations": {keys::SEQUENCE: sequence},
        }});
        let patched = self
            .ctx
            .releases(&self.namespace)
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::Releases)?;
        self.release.metadata = patched.metadata;
        self.own = plan::sequence(&self.release);
        Ok(())
    }

    /// Fails the release before anything was applied: the commit itself is at fault.
    async fn refuse(
        &mut self,
        reason: &'static str,
        problem: &(dyn std::fmt::Display + Sync),
    ) -> Result<(), Error> {
        let message = format!(
            "commit {} cannot be deployed, nothing was applied: {problem}",
            self.release.spec.short_commit()
        );
        let step = Step {
            phase: Phase::Failed,
            reason,
            message,
        };
        self.persist(step, |_| {}).await
    }

    /// Pending: render and dry-run; record inventory and suspects; then Applying. A bad commit
    /// fails here with nothing applied.
    async fn start(&mut self) -> Result<(), Error> {
        let commit = self.release.spec.commit.clone();
        let rendered = match self.ctx.render(&commit, self.environment()).await {
            Ok(rendered) => rendered,
            Err(err @ (LoadError::Render(_) | LoadError::Git(ship_git::GitError::UnsafeTree { .. }))) => {
                return self.refuse(err.label(), &err).await;
            }
            Err(err) => return Err(err.into()),
        };
        let objects = plan::prepare(&rendered.manifests, self.stamp(&commit, &self.name));
        let target = match self.target(&rendered).await {
            Ok(target) => target,
            Err(err) => {
                // Not the commit's fault: say so in the status, and retry.
                let step = Step {
                    phase: Phase::Pending,
                    reason: err.label(),
                    message: format!("waiting for the environment's cluster: {err}"),
                };
                self.persist(step, |_| {}).await?;
                return Err(err);
            }
        };
        // The environment's namespace belongs to the environment: made when missing (only after
        // the commit rendered and validated, so bad input still touches nothing).
        let environment_namespace = environment_namespace(&rendered, self.environment());
        match self
            .ctx
            .applier
            .ensure_namespace(&target, &environment_namespace, self.environment())
            .await
        {
            Ok(true) => info!(
                namespace = environment_namespace,
                "created the environment's namespace"
            ),
            Ok(false) => {}
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => {
                warn!(error = %err, "cannot create the environment's namespace; the dry run says what is missing")
            }
        }
        match self.ctx.applier.dry_run(&target, &objects).await {
            Ok(()) => {}
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => return self.refuse(err.label(), &err).await,
        }
        if self.release.spec.reason == Reason::Promotion && !self.promoted().await? {
            return Ok(());
        }
        let inventory: Vec<InventoryEntry> = objects.iter().map(plan::entry_of).collect();
        let releases = self.environment_releases().await?;
        let good = plan::rollback_target(&self.release, &releases).map(|g| g.spec.commit.clone());
        let (suspects, truncated) = match &self.ctx.repo {
            Some(repo) => {
                let repo = repo.clone();
                let c = commit.clone();
                tokio::task::spawn_blocking(move || repo.suspects(good.as_deref(), &c))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            }
            None => Default::default(),
        };
        let subject = self.ctx.repo.as_ref().and_then(|repo| repo.subject(&commit));
        let message = format!(
            "applying {} objects of commit {} ({} new commits)",
            inventory.len(),
            self.release.spec.short_commit(),
            suspects.len()
        );
        self.persist(
            Step {
                phase: Phase::Applying,
                reason: "Applying",
                message,
            },
            |s| {
                s.inventory = inventory;
                s.suspects = suspects;
                s.suspects_truncated = truncated;
                s.commit_subject = subject;
            },
        )
        .await
    }

    /// A promotion deploys only what its branch holds: fast-forward the branch to the commit
    /// first (idempotent: a branch that already holds it is left alone). `false` when the
    /// release cannot go on now; its status then says why.
    async fn promoted(&mut self) -> Result<bool, Error> {
        let repo = self
            .ctx
            .repo
            .clone()
            .ok_or_else(|| Error::Load(LoadError::NoRepository(self.release.spec.commit.clone())))?;
        let (branch, commit) = (self.release.spec.branch.clone(), self.release.spec.commit.clone());
        let (b, c) = (branch.clone(), commit.clone());
        let pushed = tokio::task::spawn_blocking(move || repo.fast_forward(&b, &c))
            .await
            .map_err(|e| LoadError::Scratch(format!("push task failed: {e}")))?;
        match pushed {
            Ok(outcome) => {
                if outcome == ship_git::PushOutcome::Pushed {
                    let message = format!("fast-forwarded {branch} to {}", self.release.spec.short_commit());
                    info!(branch, "{message}");
                    publish(self.ctx, &self.release, EventType::Normal, "Pushed", &message).await;
                }
                Ok(true)
            }
            Err(LoadError::Git(err @ ship_git::GitError::Diverged { .. })) => {
                self.refuse(err.label(), &err).await?;
                Ok(false)
            }
            Err(err @ LoadError::NoPushAccess) => {
                self.refuse(err.label(), &err).await?;
                Ok(false)
            }
            Err(err) => {
                // Transient (the remote is away, moved since the last fetch, or the branch was
                // deleted there: `MissingBranch`, and a push never recreates it): say so in the
                // status, and let the error policy retry until it is back.
                let step = Step {
                    phase: Phase::Pending,
                    reason: err.label(),
                    message: format!("waiting to fast-forward {branch}: {err}"),
                };
                self.persist(step, |_| {}).await?;
                Err(err.into())
            }
        }
    }

    /// Applies `commit`'s objects stamped as `stamp_release`, and prunes what the environment's
    /// earlier releases applied that this set no longer declares.
    async fn apply_commit(
        &self,
        commit: &str,
        stamp_release: &str,
    ) -> Result<(Vec<InventoryEntry>, Vec<ship_api::PruneRefusal>), Error> {
        let rendered = self.ctx.render(commit, self.environment()).await?;
        let objects = plan::prepare(&rendered.manifests, self.stamp(commit, stamp_release));
        let target = self.target(&rendered).await?;
        if self.armed("MidApply") && stamp_release == self.name {
            // Tests only: stop with half the objects applied.
            let half = objects.len() / 2;
            self.ctx.applier.apply(&target, &objects[..half], false).await?;
            self.fault_point("MidApply").await;
        }
        let applied = self.ctx.applier.apply(&target, &objects, false).await?;
        let keep: Vec<InventoryEntry> = objects.iter().map(plan::entry_of).collect();
        let releases = self.environment_releases().await?;
        let previous = releases
            .iter()
            .filter_map(|r| r.status.as_ref())
            .flat_map(|s| s.inventory.iter());
        let gone = plan::to_prune(previous, &keep);
        let environment_namespace = environment_namespace(&rendered, self.environment());
        let (pruned, refused) = self
            .ctx
            .applier
            .prune(&target, &gone, self.environment(), &environment_namespace)
            .await?;
        info!(
            applied = applied.objects,
            pruned,
            refused = refused.len(),
            commit,
            "objects applied"
        );
        for refusal in &refused {
            let note = format!(
                "{} is no longer declared by commit {} but was kept: {}",
                refusal.object,
                &commit[..7.min(commit.len())],
                refusal.reason
            );
            publish(self.ctx, &self.release, EventType::Warning, "PruneRefused", &note).await;
        }
        Ok((keep, refused))
    }

    /// Applying: apply (idempotent), prune, then Progressing.
    async fn apply(&mut self) -> Result<(), Error> {
        let commit = self.release.spec.commit.clone();
        let name = self.name.clone();
        let (inventory, refused) = self.apply_commit(&commit, &name).await?;
        let mut message = format!(
            "{} objects applied; waiting for them to become healthy",
            inventory.len()
        );
        if !refused.is_empty() {
            message.push_str(&format!(
                " ({} no longer declared but kept: see status.pruneRefused)",
                refused.len()
            ));
        }
        self.persist(
            Step {
                phase: Phase::Progressing,
                reason: "Progressing",
                message,
            },
            |s| {
                s.inventory = inventory;
                s.prune_refused = refused;
            },
        )
        .await
    }

    /// Waits for `inventory` to be healthy until `timeout` after `phase` was entered.
    async fn wait_healthy(
        &self,
        phase: Phase,
        commit: &str,
        inventory: &[InventoryEntry],
    ) -> Result<Waited<Result<(), HealthFailure>>, Error> {
        let rendered = self.ctx.render(commit, self.environment()).await?;
        let deadline = deadline_after(self.status(), phase, rendered.config.health_timeout());
        let target = self.target(&rendered).await?;
        let wait = self
            .ctx
            .applier
            .wait_healthy(&target, inventory, self.environment(), deadline);
        match self.unless_superseded(wait).await {
            Waited::Done(result) => Ok(Waited::Done(result?)),
            Waited::Superseded => Ok(Waited::Superseded),
        }
    }

    /// Progressing: wait for health by watch; then Testing, or Failed.
    async fn await_health(&mut self) -> Result<(), Error> {
        let commit = self.release.spec.commit.clone();
        let inventory = self.status().map(|s| s.inventory.clone()).unwrap_or_default();
        let health = match self.wait_healthy(Phase::Progressing, &commit, &inventory).await? {
            Waited::Done(health) => health,
            Waited::Superseded => return Ok(()),
        };
        let step = match health {
            Ok(()) => {
                let rendered = self.ctx.render(&commit, self.environment()).await?;
                let names: Vec<String> = rendered
                    .config
                    .tests_for(self.environment())
                    .map(|t| t.name.clone())
                    .collect();
                let message = format!("healthy; running {} post-deployment tests", names.len());
                let step = Step {
                    phase: Phase::Testing,
                    reason: "Testing",
                    message,
                };
                let total = names.len();
                return self
                    .persist(step, |s| {
                        s.tests = names
                            .into_iter()
                            .map(|name| TestResult {
                                name,
                                verdict: TestVerdict::Running,
                                duration_millis: None,
                                message: String::new(),
                                log: String::new(),
                            })
                            .collect();
                        s.test_summary = Some(format!("0/{total}"));
                    })
                    .await;
            }
            Err(HealthFailure::Timeout(last)) => Step {
                phase: Phase::Failed,
                reason: "HealthTimeout",
                message: format!("not healthy within the health timeout: {last}"),
            },
            Err(HealthFailure::Failed(message)) => Step {
                phase: Phase::Failed,
                reason: "Unhealthy",
                message: format!("rollout failed: {message}"),
            },
        };
        self.persist(step, |_| {}).await
    }

    /// Testing: run every test (again, after a restart: they are queries, and a Job keeps its
    /// per-release name); then Succeeded or Failed.
    async fn test(&mut self) -> Result<(), Error> {
        let commit = self.release.spec.commit.clone();
        let rendered = self.ctx.render(&commit, self.environment()).await?;
        let environment = self.environment().to_owned();
        let env_config = rendered
            .config
            .environments
            .get(&environment)
            .cloned()
            .unwrap_or_default();
        let namespace = env_config.namespace(&environment).to_owned();
        let deadline = Instant::now() + rendered.config.health_timeout();
        let target = self.target(&rendered).await?;
        let runs = rendered.config.tests_for(&environment).map(|test| {
            let name = test.name.clone();
            let namespace = namespace.clone();
            let environment = environment.clone();
            let allowed = env_config.allowed_test_hosts.clone();
            let job = rendered
                .test_jobs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, template)| {
                    crate::jobs::job_object(
                        template,
                        &crate::jobs::job_name(&self.name, &name),
                        self.stamp(&commit, &self.name),
                    )
                });
            let http = test.http.clone();
            let ctx = self.ctx;
            let target = target.clone();
            async move {
                let (outcome, log) = match (http, job) {
                    (Some(http), _) => {
                        let check = crate::checks::CheckTarget {
                            http: &ctx.http,
                            cluster: &target,
                            namespace: &namespace,
                            environment: &environment,
                            allowed_hosts: &allowed,
                        };
                        (crate::checks::run_http(check, &http).await, String::new())
                    }
                    (None, Some(job)) => match crate::jobs::run(&target, &namespace, &job, deadline).await {
                        Ok(done) => done,
                        Err(err) => (
                            crate::checks::CheckOutcome {
                                passed: false,
                                message: format!("cannot run the test Job: {err}"),
                                duration: Duration::ZERO,
                            },
                            String::new(),
                        ),
                    },
                    (None, None) => (
                        crate::checks::CheckOutcome {
                            passed: false,
                            message: "the test declares neither http nor job".into(),
                            duration: Duration::ZERO,
                        },
                        String::new(),
                    ),
                };
                TestResult {
                    name,
                    verdict: if outcome.passed {
                        TestVerdict::Passed
                    } else {
                        TestVerdict::Failed
                    },
                    duration_millis: Some(u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX)),
                    message: outcome.message,
                    log,
                }
            }
        });
        let results = match self.unless_superseded(futures::future::join_all(runs)).await {
            Waited::Done(results) => results,
            Waited::Superseded => return Ok(()),
        };
        self.fault_point("MidTest").await;
        let passed = results
            .iter()
            .filter(|r| r.verdict == TestVerdict::Passed)
            .count();
        let total = results.len();
        for result in &results {
            self.ctx
                .metrics
                .test(&environment, &result.name, result.verdict == TestVerdict::Passed);
        }
        for failed in results.iter().filter(|r| r.verdict == TestVerdict::Failed) {
            warn!(
                test = failed.name,
                log = failed.log,
                "post-deployment test failed: {}",
                failed.message
            );
            let note = format!("test {} failed: {}\n{}", failed.name, failed.message, failed.log);
            publish(self.ctx, &self.release, EventType::Warning, "TestFailed", &note).await;
        }
        let step = if passed == total {
            Step {
                phase: Phase::Succeeded,
                reason: "Succeeded",
                message: format!(
                    "commit {} is live and passed {passed}/{total} tests",
                    self.release.spec.short_commit()
                ),
            }
        } else {
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| r.verdict == TestVerdict::Failed)
                .map(|r| r.name.as_str())
                .collect();
            Step {
                phase: Phase::Failed,
                reason: "TestsFailed",
                message: format!("{passed}/{total} tests passed; failed: {}", failed.join(", ")),
            }
        };
        self.persist(step, |s| {
            s.tests = results;
            s.test_summary = Some(format!("{passed}/{total}"));
        })
        .await
    }

    /// Failed after changing the cluster: choose the last good release, or say loudly that
    /// there is none.
    async fn begin_rollback(&mut self) -> Result<(), Error> {
        let releases = self.environment_releases().await?;
        let failure = self.status().and_then(|s| s.message.clone()).unwrap_or_default();
        match plan::rollback_target(&self.release, &releases) {
            Some(good) => {
                let target = good.name_any();
                let message = format!(
                    "{failure}; rolling back to {target} (commit {})",
                    good.spec.short_commit()
                );
                self.persist(
                    Step {
                        phase: Phase::RollingBack,
                        reason: "RollingBack",
                        message,
                    },
                    |s| {
                        s.rolled_back_to = Some(target);
                    },
                )
                .await
            }
            None => {
                let message = format!(
                    "{failure}; no earlier good release to roll back to: the environment keeps commit {} until a new commit arrives",
                    self.release.spec.short_commit()
                );
                self.persist(
                    Step {
                        phase: Phase::Failed,
                        reason: "NoGoodRelease",
                        message,
                    },
                    |_| {},
                )
                .await
            }
        }
    }

    /// Failed, for good: the rollback cannot be made (the message says why and what to do).
    async fn rollback_failed(&mut self, message: String) -> Result<(), Error> {
        let step = Step {
            phase: Phase::Failed,
            reason: "RollbackFailed",
            message,
        };
        self.persist(step, |_| {}).await
    }

    /// RollingBack: re-apply the last good release's commit, prune what this one added, wait
    /// for health; then RolledBack.
    async fn roll_back(&mut self) -> Result<(), Error> {
        let target = self
            .status()
            .and_then(|s| s.rolled_back_to.clone())
            .unwrap_or_default();
        let Some(good) = self
            .ctx
            .releases(&self.namespace)
            .get_opt(&target)
            .await
            .map_err(Error::Releases)?
        else {
            let message = format!("the release to roll back to, {target:?}, no longer exists");
            return self.rollback_failed(message).await;
        };
        let commit = good.spec.commit.clone();
        let (inventory, refused) = match self.apply_commit(&commit, &target).await {
            Ok(applied) => applied,
            // Gone for good: no branch reaches it, this mirror never had it, and the remote
            // does not serve it by id. Retrying cannot help; say so and settle.
            Err(Error::Load(LoadError::UnknownCommit(_))) => {
                let message = format!(
                    "cannot roll back to {target}: its commit {} is no longer in the repository (the \
                     branch's history was rewritten, and the remote does not serve the commit by id); \
                     commit {} stays applied: push a fix or a revert to roll forward",
                    good.spec.short_commit(),
                    self.release.spec.short_commit()
                );
                return self.rollback_failed(message).await;
            }
            Err(err) => return Err(err),
        };
        self.fault_point("MidRollback").await;
        let step = match self.wait_healthy(Phase::RollingBack, &commit, &inventory).await? {
            Waited::Superseded => return Ok(()),
            Waited::Done(Ok(())) => Step {
                phase: Phase::RolledBack,
                reason: "RolledBack",
                message: format!(
                    "rolled back to {target} (commit {}); commit {} stays quarantined until the branch moves",
                    good.spec.short_commit(),
                    self.release.spec.short_commit()
                ),
            },
            Waited::Done(Err(HealthFailure::Timeout(m) | HealthFailure::Failed(m))) => Step {
                phase: Phase::Failed,
                reason: "RollbackFailed",
                message: format!("the rollback to {target} did not become healthy: {m}"),
            },
        };
        self.persist(step, |s| s.prune_refused = refused).await
    }

    /// Drives the release through every phase it can reach now.
    async fn drive(&mut self) -> Result<(), Error> {
        loop {
            let Some(phase) = self.phase() else { return Ok(()) };
            let wants_rollback = awaits_rollback(phase, ready_reason(self.status()));
            if (phase.is_in_progress() || wants_rollback) && self.superseded() {
                let message = format!("superseded by {}", self.slot.newest.borrow().1);
                let phase = if wants_rollback {
                    Phase::Failed
                } else {
                    Phase::Superseded
                };
                return self
                    .persist(
                        Step {
                            phase,
                            reason: "Superseded",
                            message,
                        },
                        |_| {},
                    )
                    .await;
            }
            match phase {
                Phase::Pending => self.start().await?,
                Phase::Applying => self.apply().await?,
                Phase::Progressing => self.await_health().await?,
                Phase::Testing => self.test().await?,
                Phase::Failed if wants_rollback => self.begin_rollback().await?,
                Phase::RollingBack => self.roll_back().await?,
                _ => return Ok(()),
            }
            if self.phase() == Some(phase) && !self.superseded() {
                // No progress and no supersession: a wait was cut short; try again later.
                return Ok(());
            }
        }
    }

    /// For the environment's deployed release: re-apply it when due and count what had drifted.
    async fn correct_drift(&mut self) -> Result<Option<Duration>, Error> {
        let interval = self.ctx.settings.drift_interval;
        let due = self
            .ctx
            .drift_checked
            .lock()
            .ok()
            .and_then(|m| m.get(&self.name).copied())
            .is_none_or(|t| t.elapsed() >= interval);
        if !due {
            return Ok(Some(interval));
        }
        let (commit, stamp_release) = match self.phase() {
            Some(Phase::Succeeded) => (self.release.spec.commit.clone(), self.name.clone()),
            Some(Phase::RolledBack) => {
                let target = self
                    .status()
                    .and_then(|s| s.rolled_back_to.clone())
                    .unwrap_or_default();
                match self
                    .ctx
                    .releases(&self.namespace)
                    .get_opt(&target)
                    .await
                    .map_err(Error::Releases)?
                {
                    Some(good) => (good.spec.commit.clone(), target),
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        // This is the environment's deployed release: say so (also after a restart).
        self.ctx.metrics.deployed(self.environment(), &commit);
        let rendered = self.ctx.render(&commit, self.environment()).await?;
        let objects = plan::prepare(&rendered.manifests, self.stamp(&commit, &stamp_release));
        let target = self.target(&rendered).await?;
        let applied = self.ctx.applier.apply(&target, &objects, true).await?;
        if let Ok(mut checked) = self.ctx.drift_checked.lock() {
            checked.insert(self.name.clone(), Instant::now());
        }
        if applied.drifted > 0 {
            let total = self.status().and_then(|s| s.drift_corrections).unwrap_or(0) + applied.drifted as u64;
            let message = format!(
                "{} objects had drifted from commit {} and were put back",
                applied.drifted,
                &commit[..7.min(commit.len())]
            );
            warn!(drifted = applied.drifted, "{message}");
            publish(
                self.ctx,
                &self.release,
                EventType::Warning,
                "DriftCorrected",
                &message,
            )
            .await;
            let mut status = self.release.status.clone().unwrap_or_default();
            status.drift_corrections = Some(total);
            apply_status(self.ctx, &self.namespace, &self.name, &status).await?;
            self.release.status = Some(status);
        }
        Ok(Some(interval))
    }

    /// Deletes the environment's oldest settled releases beyond the history limit.
    async fn collect_garbage(&self) -> Result<(), Error> {
        let releases = self.environment_releases().await?;
        for name in plan::to_collect(&releases, self.ctx.settings.history_limit) {
            match self
                .ctx
                .releases(&self.namespace)
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => {
                    info!(collected = name, "old release deleted (history limit)");
                    // Its drift bookkeeping goes with it, so memory does not grow with history.
                    if let Ok(mut checked) = self.ctx.drift_checked.lock() {
                        checked.remove(&name);
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(err) => return Err(Error::Releases(err)),
            }
        }
        Ok(())
    }
}

/// Reconciles one ShipRelease: level-based and idempotent.
pub async fn reconcile(
    object: Arc<DeserializeGuard<ShipRelease>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = object.namespace().ok_or(Error::NoNamespace)?;
    let name = object.name_any();
    let release = match &object.0 {
        Ok(release) => release.clone(),
        Err(invalid) => {
            // One malformed object must not stall the watch: say what is wrong, touch nothing.
            let message = format!("the ShipRelease cannot be read: {}", invalid.error);
            warn!(release = %name, namespace, error = %invalid.error, "malformed ShipRelease");
            let status = ShipReleaseStatus {
                phase: Some(Phase::Failed),
                message: Some(message.clone()),
                ..Default::default()
            };
            apply_status(&ctx, &namespace, &name, &status).await?;
            publish(
                &ctx,
                object.as_ref(),
                EventType::Warning,
                "InvalidObject",
                &message,
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let span = tracing::info_span!(
        "release",
        release = %name,
        namespace,
        environment = %release.spec.environment,
        commit = %release.spec.commit,
    );
    reconcile_release(release, namespace, name, &ctx)
        .instrument(span)
        .await
}

async fn reconcile_release(
    release: ShipRelease,
    namespace: String,
    name: String,
    ctx: &Context,
) -> Result<Action, Error> {
    let slot = ctx.slot(&namespace, &release.spec.environment);
    let own = plan::sequence(&release);
    let mut driver = Driver {
        ctx,
        release,
        namespace,
        name,
        slot,
        own,
    };
    if let Err(problem) = driver.release.spec.validate() {
        let step = Step {
            phase: Phase::Failed,
            reason: "InvalidSpec",
            message: problem.to_string(),
        };
        driver.persist(step, |_| {}).await?;
        return Ok(Action::await_change());
    }
    driver.ensure_identity().await?;
    if driver.phase().is_none() {
        let message = format!(
            "release of {} to {} accepted",
            driver.release.spec.short_commit(),
            driver.environment()
        );
        driver
            .persist(
                Step {
                    phase: Phase::Pending,
                    reason: "Accepted",
                    message,
                },
                |_| {},
            )
            .await?;
    }
    let releases = driver.environment_releases().await?;
    if let Some(newest) = releases.iter().map(plan::sequence).max() {
        driver.slot.newest.send_if_modified(|current| {
            let newer = newest > *current;
            if newer {
                *current = newest;
            }
            newer
        });
    }
    let settled_before = driver.release.is_settled();
    if driver.phase() == Some(Phase::Succeeded)
        && let Some(at) = transition_time(driver.status(), Phase::Succeeded)
    {
        // Seen again (for example after a restart): the success time survives in the status.
        ctx.metrics.succeeded_at(
            driver.environment(),
            at.as_millisecond() as f64 / 1000.0,
            driver.release.spec.reason == Reason::Promotion,
        );
    }
    if let Some(phase) = driver.phase()
        && !driver.superseded()
    {
        // The environment's newest release, also after a restart (alerts key on it).
        ctx.metrics.latest(
            driver.environment(),
            &driver.name,
            &driver.release.spec.commit,
            phase.as_str(),
        );
    }
    {
        let slot = driver.slot.clone();
        let _turn = slot.lock.lock().await;
        driver.drive().await?;
        let settled = driver.release.is_settled();
        if settled && !driver.superseded() {
            if !settled_before {
                // Just settled: the apply was the drift check.
                if let Ok(mut checked) = ctx.drift_checked.lock() {
                    checked.insert(driver.name.clone(), Instant::now());
                }
                driver.collect_garbage().await?;
            }
            if let Some(next) = driver.correct_drift().await? {
                return Ok(Action::requeue(next));
            }
        }
    }
    if driver.phase().is_some_and(Phase::is_in_progress) {
        // A wait was cut short (for example by a newer release): look again soon.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}

fn error_policy(_object: Arc<DeserializeGuard<ShipRelease>>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(error = %error, kind = error.label(), "reconcile failed; retrying");
    ctx.metrics.reconcile_error(error.label());
    Action::requeue(Duration::from_secs(5))
}

/// Runs the ShipRelease controller until `shutdown` resolves. `ready` turns true once the
/// initial list of ShipReleases has been read (the controller can act on every object).
pub async fn run(
    ctx: Context,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<DeserializeGuard<ShipRelease>> = match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default()).graceful_shutdown_on(shutdown);
    let store = controller.store();
    tokio::spawn(async move {
        // The store's readiness signal wakes only its most recent waiter, and the controller
        // waits on it too: poll again every 200 ms rather than wait once.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => return ready.store(true, Ordering::SeqCst),
                Ok(Err(_)) => return,
                Err(_elapsed) => {}
            }
        }
    });
    controller
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "reconcile result");
            }
        })
        .await;
}
