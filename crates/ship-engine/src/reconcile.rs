//! The executor of the release state machine: the thin layer that talks to the API server.
//!
//! [`crate::machine::step`] decides; this module observes (the cluster, the repository, the
//! environment's other releases: I/O → [`Event`]) and executes (each [`Action`] → I/O). Every
//! transition is written to status (server-side apply on `/status`, fixed field manager) before
//! the work it announces, and every phase's work is idempotent, so a controller killed anywhere
//! resumes from the persisted phase and reaches the same end state. The fault-injection pause
//! points (tests only) hang off the executor: after each persisted phase, and inside the work
//! (see [`FAULT_POINTS`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use ship_api::{Phase, Reason, ShipRelease, ShipReleaseStatus, StatusReason, TestResult, TestVerdict, keys};
use ship_render::Rendered;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use crate::apply::HealthFailure;
use crate::context::EnvironmentSlot;
pub use crate::context::{Context, FAULT_POINTS, Settings};
pub use crate::error::{Disposition, Error};
use crate::inventory::{self, Stamp};
use crate::machine::{self, Action, Change, Event, Plan, Snapshot, Work, transition_time};
use crate::releases;
use crate::repo::LoadError;
use crate::status::status_after;

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

/// Walks one release through its phases: observes, asks [`machine::step`], persists, executes.
struct Driver<'a> {
    ctx: &'a Context,
    release: ShipRelease,
    namespace: String,
    name: String,
    slot: Arc<EnvironmentSlot>,
    own: (i64, String),
    /// The error behind an [`Event`] whose transition says to retry (the status already tells
    /// what is awaited); returned to the controller so its disposition sets the delay.
    blocked: Option<Error>,
    /// The continuous verification tests of the release's commit, once read (for a release
    /// that is, or is about to be, deployed).
    cadences: Option<Vec<crate::verification::Cadence>>,
    /// `release` is known to be the API server's current object: this reconcile read it from
    /// the API server, or its own status write succeeded on it. Until then it is the
    /// controller's cached copy, which may lag; no work is done for it on that word alone.
    confirmed: bool,
}

/// How a status write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persisted {
    /// Written, or nothing to write.
    Done,
    /// Refused: the release changed after the view the decision was taken on.
    StaleView,
}

/// Most stale views one reconcile takes again before it gives up (and is requeued): another
/// writer that changes the release this often is a bug to see, not to race.
const MAX_STALE_VIEWS: u32 = 5;

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

    /// What the machine is told of this release.
    fn snapshot(&self) -> Snapshot {
        Snapshot::of(
            crate::machine::persisted(&self.release),
            self.superseded().then(|| self.slot.newest.borrow().1.clone()),
            self.ctx.settings.drift_interval,
            self.cadences.clone().unwrap_or_default(),
        )
    }

    /// Reads the continuous verification tests of the release's commit, once, when the
    /// release is deployed or about to be (its tests are running). A commit that cannot be
    /// rendered has none: it is not verified, and the log says why.
    async fn know_cadences(&mut self) {
        if self.cadences.is_some() || !matches!(self.phase(), Some(Phase::Testing | Phase::Succeeded)) {
            return;
        }
        let commit = self.release.spec.commit.clone();
        let cadences = match self.ctx.render(&commit, self.environment()).await {
            Ok(rendered) => crate::verification::cadences(&rendered.config, self.environment()),
            Err(err) => {
                warn!(error = %err, "cannot read the commit's tests; it is not verified continuously");
                Vec::new()
            }
        };
        self.cadences = Some(cadences);
    }

    /// The instant `timeout` after `phase` was entered, by the persisted transition time (so a
    /// restart keeps the deadline).
    fn deadline_after(&self, phase: Phase, timeout: Duration) -> Instant {
        let now = self.ctx.now();
        let entered = transition_time(self.status(), phase).unwrap_or(now);
        let elapsed = Duration::try_from(now.duration_since(entered)).unwrap_or(Duration::ZERO);
        Instant::now() + timeout.saturating_sub(elapsed)
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

    /// Persists `change` and `record` (nothing when the status would not change), then
    /// announces a phase change: log line, event, metrics, and the fault point of the phase.
    ///
    /// The write is a compare-and-set on the resourceVersion of the view the change was
    /// decided on: [`Persisted::StaleView`] when the release changed since (nothing written).
    async fn persist(&mut self, change: Option<Change>, record: machine::Record) -> Result<Persisted, Error> {
        let status = status_after(
            crate::machine::persisted(&self.release),
            change.as_ref(),
            record,
            &Time(self.ctx.now()),
        );
        if self.release.status.as_ref() == Some(&status) {
            return Ok(Persisted::Done);
        }
        let previous = self.release.status.clone();
        let decided_on = self.release.metadata.resource_version.clone();
        let api = self.ctx.releases(&self.namespace);
        match crate::status::apply_status(&api, &self.name, &status, decided_on.as_deref()).await {
            Ok(version) => self.release.metadata.resource_version = version,
            Err(err) if crate::status::is_stale_view(&err) => return Ok(Persisted::StaleView),
            Err(err) => return Err(Error::StatusWrite(err)),
        }
        self.release.status = Some(status);
        self.confirmed = true;
        if let Some(change) = change
            && previous.as_ref().and_then(|s| s.phase) != Some(change.phase)
        {
            self.measure(previous.as_ref(), &change);
            let reason = change.label();
            let type_ = if change.is_warning() {
                warn!(phase = %change.phase, reason, "{}", change.message);
                EventType::Warning
            } else {
                info!(phase = %change.phase, reason, "{}", change.message);
                EventType::Normal
            };
            publish(self.ctx, &self.release, type_, reason, &change.message).await;
            self.fault_point(change.phase.as_str()).await;
        }
        Ok(Persisted::Done)
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

    /// Metrics of a phase change just persisted (from `previous` status to `change`).
    fn measure(&self, previous: Option<&ShipReleaseStatus>, change: &Change) {
        let metrics = &self.ctx.metrics;
        let environment = self.environment();
        let now = self.ctx.now();
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
        if !change.phase.is_in_progress() {
            metrics.settled(environment, change.phase.as_str(), change.label());
            if let Some(took) = since(Phase::Pending) {
                metrics.step(environment, "total", took);
            }
        }
        match change.phase {
            Phase::Succeeded => {
                metrics.deployed(environment, &self.release.spec.commit);
                // A newly deployed release has not been verified yet: the last release's
                // verdicts do not speak for it.
                metrics.forget_verification(environment);
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
                change.phase.as_str(),
            );
        }
    }

    async fn environment_releases(&self) -> Result<Vec<ShipRelease>, Error> {
        self.ctx
            .environment_releases(&self.namespace, self.environment())
            .await
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
            .unwrap_or_else(|| self.ctx.now().as_millisecond().to_string());
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
        // The whole answer, not only its metadata: it is the current object, and its
        // resourceVersion must never be paired with an older status.
        self.release = patched;
        self.confirmed = true;
        self.own = releases::sequence(&self.release);
        Ok(())
    }

    /// Where the environment's tests go: its cluster `target`, its namespace and its
    /// `allowedTestHosts` (from `env_config`, its settings).
    fn check_target<'c>(
        &'c self,
        target: &'c Client,
        env_config: &'c ship_render::config::Environment,
        namespace: &'c str,
    ) -> crate::checks::CheckTarget<'c> {
        crate::checks::CheckTarget {
            http: &self.ctx.http,
            cluster: target,
            namespace,
            environment: self.environment(),
            allowed_hosts: &env_config.allowed_test_hosts,
        }
    }

    /// The environment's settings in `rendered`'s ship.yaml, and its namespace.
    fn environment_config(&self, rendered: &Rendered) -> (ship_render::config::Environment, String) {
        let environment = self.environment();
        let config = rendered
            .config
            .environments
            .get(environment)
            .cloned()
            .unwrap_or_default();
        let namespace = config.namespace(environment).to_owned();
        (config, namespace)
    }

    /// Pending: a refusal when Prometheus refuses the query of one of the environment's
    /// Prometheus tests (a syntax error, an unknown function): the test could never pass, so
    /// the commit is refused before anything is applied. Asked once per test; a Prometheus
    /// that cannot answer now is no reason to refuse (the measurements will tell).
    async fn refused_queries(&self, rendered: &Rendered, target: &Client) -> Option<Event> {
        let (env_config, namespace) = self.environment_config(rendered);
        let check = self.check_target(target, &env_config, &namespace);
        for test in rendered.config.tests_for(self.environment()) {
            let Some(prometheus) = &test.prometheus else {
                continue;
            };
            if let Some(why) = crate::analysis::refusal(check, prometheus).await {
                return Some(Event::Refused {
                    cause: "InvalidQuery",
                    problem: format!("test {}: {why}; fix the query in ship.yaml", test.name),
                });
            }
        }
        None
    }

    /// `err` as the event it is: a refusal of the commit when that is its disposition; the
    /// error itself (to be retried) otherwise.
    fn refusal(err: Error) -> Result<Event, Error> {
        match err.disposition() {
            Disposition::Refuse => Ok(Event::Refused {
                cause: err.label(),
                problem: err.to_string(),
            }),
            Disposition::Retry | Disposition::Stall => Err(err),
        }
    }

    /// Pending: render and dry-run; find inventory and suspects. A bad commit is refused here
    /// with nothing applied.
    async fn prepare(&mut self) -> Result<Event, Error> {
        let commit = self.release.spec.commit.clone();
        let rendered = match self.ctx.render(&commit, self.environment()).await {
            Ok(rendered) => rendered,
            Err(err) => return Self::refusal(err.into()),
        };
        let objects = inventory::prepare(&rendered.manifests, self.stamp(&commit, &self.name));
        let target = match self.target(&rendered).await {
            Ok(target) => target,
            Err(err) => {
                // Not the commit's fault: the status says so, and the controller retries.
                let problem = err.to_string();
                self.blocked = Some(err);
                return Ok(Event::ClusterUnavailable(problem));
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
            Err(err) if crate::error::apply_disposition(&err) == Disposition::Retry => return Err(err.into()),
            Err(err) => {
                warn!(error = %err, "cannot create the environment's namespace; the dry run says what is missing")
            }
        }
        if let Err(err) = self.ctx.applier.dry_run(&target, &objects).await {
            return Self::refusal(err.into());
        }
        if let Some(refused) = missing_references(&target, &objects).await? {
            return Ok(refused);
        }
        if let Some(refused) = self.refused_queries(&rendered, &target).await {
            return Ok(refused);
        }
        if self.release.spec.reason == Reason::Promotion
            && let Some(blocked) = self.promote(&rendered.config.promotion).await?
        {
            return Ok(blocked);
        }
        let others = self.environment_releases().await?;
        let good = releases::rollback_target(&self.release, &others).map(|g| g.spec.commit.clone());
        let (suspects, suspects_truncated) = match &self.ctx.repo {
            Some(repo) => {
                let (repo, c) = (repo.clone(), commit.clone());
                tokio::task::spawn_blocking(move || repo.suspects(good.as_deref(), &c))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            }
            None => Default::default(),
        };
        Ok(Event::Prepared(Plan {
            inventory: objects.iter().map(inventory::entry_of).collect(),
            suspects,
            suspects_truncated,
            subject: self.ctx.repo.as_ref().and_then(|repo| repo.subject(&commit)),
        }))
    }

    /// A promotion deploys only what its branch holds: fast-forward the branch to the commit
    /// first (idempotent: a branch that already holds it is left alone). `Some` when the
    /// release cannot go on now: the refusal, or what the push waits for.
    async fn promote(&mut self, settings: &ship_render::config::Promotion) -> Result<Option<Event>, Error> {
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
                self.tag(settings).await;
                Ok(None)
            }
            Err(err) => {
                let err = Error::Load(err);
                if err.disposition() == Disposition::Refuse {
                    return Self::refusal(err).map(Some);
                }
                // Passing (the remote is away, moved since the last fetch, or the branch was
                // deleted there: `MissingBranch`, and a push never recreates it): the status
                // says so, and the controller retries until it is back.
                let event = Event::PushBlocked {
                    cause: err.label(),
                    branch,
                    problem: err.to_string(),
                };
                self.blocked = Some(err);
                Ok(Some(event))
            }
        }
    }

    /// Tags the promoted commit when ship.yaml asks for it (`promotion.tag`). Never blocks the
    /// release: a tag that cannot be pushed, or whose name another commit already has, is
    /// announced as a Warning event, and the release goes on; an existing tag is never moved.
    async fn tag(&self, settings: &ship_render::config::Promotion) {
        let commit = self.release.spec.commit.clone();
        let short = self.release.spec.short_commit().to_owned();
        let date = self.ctx.now().strftime("%Y-%m-%d").to_string();
        let Some(name) = settings.tag_name(&date, &short) else {
            return;
        };
        let Some(repo) = self.ctx.repo.clone() else { return };
        let subject = repo.subject(&commit).unwrap_or_default();
        let message = format!(
            "Promoted to {} by Ship (release {}): {subject}",
            self.release.spec.branch, self.name
        );
        let (n, c) = (name.clone(), commit.clone());
        let tagged = tokio::task::spawn_blocking(move || repo.push_tag(&n, &c, &message)).await;
        let (type_, reason, note) = match tagged {
            Ok(Ok(ship_git::TagOutcome::Pushed)) => (
                EventType::Normal,
                "Tagged",
                format!("tagged commit {short} as {name}"),
            ),
            Ok(Ok(ship_git::TagOutcome::AlreadyThere)) => return,
            Ok(Ok(ship_git::TagOutcome::Taken(other))) => (
                EventType::Warning,
                "TagTaken",
                format!(
                    "tag {name} already names commit {}; Ship never moves a tag, so commit {short} is not tagged",
                    ship_api::names::short_sha(&other)
                ),
            ),
            Ok(Err(err)) => (
                EventType::Warning,
                "TagFailed",
                format!("cannot push tag {name}: {err}"),
            ),
            Err(err) => (
                EventType::Warning,
                "TagFailed",
                format!("cannot push tag {name}: {err}"),
            ),
        };
        info!(tag = name, reason, "{note}");
        publish(self.ctx, &self.release, type_, reason, &note).await;
    }

    /// Applies `commit`'s objects stamped as `stamp_release`, and prunes what the environment's
    /// earlier releases applied that this set no longer declares.
    async fn apply_commit(
        &self,
        commit: &str,
        stamp_release: &str,
    ) -> Result<(Vec<ship_api::InventoryEntry>, Vec<ship_api::PruneRefusal>), Error> {
        let rendered = self.ctx.render(commit, self.environment()).await?;
        let objects = inventory::prepare(&rendered.manifests, self.stamp(commit, stamp_release));
        let target = self.target(&rendered).await?;
        if self.armed("MidApply") && stamp_release == self.name {
            // Tests only: stop with half the objects applied.
            let half = objects.len() / 2;
            self.ctx.applier.apply(&target, &objects[..half], false).await?;
            self.fault_point("MidApply").await;
        }
        let applied = self.ctx.applier.apply(&target, &objects, false).await?;
        let keep: Vec<ship_api::InventoryEntry> = objects.iter().map(inventory::entry_of).collect();
        let all = self.environment_releases().await?;
        let previous = all
            .iter()
            .filter_map(|r| r.status.as_ref())
            .flat_map(|s| s.inventory.iter());
        let gone = crate::prune::to_prune(previous, &keep);
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
        Ok((keep, refused))
    }

    /// Waits for `inventory` to be healthy until the health timeout after `phase` was entered
    /// (persisted, so a restart keeps the deadline).
    async fn wait_healthy(
        &self,
        phase: Phase,
        commit: &str,
        inventory: &[ship_api::InventoryEntry],
    ) -> Result<Waited<Result<(), HealthFailure>>, Error> {
        let rendered = self.ctx.render(commit, self.environment()).await?;
        let deadline = self.deadline_after(phase, rendered.config.health_timeout());
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

    /// Progressing: wait for health by watch.
    async fn await_health(&self) -> Result<Event, Error> {
        let commit = self.release.spec.commit.clone();
        let inventory = self.status().map(|s| s.inventory.clone()).unwrap_or_default();
        Ok(
            match self.wait_healthy(Phase::Progressing, &commit, &inventory).await? {
                Waited::Superseded => Event::Interrupted,
                Waited::Done(Ok(())) => {
                    let rendered = self.ctx.render(&commit, self.environment()).await?;
                    let tests = rendered
                        .config
                        .tests_for(self.environment())
                        .map(|t| t.name.clone())
                        .collect();
                    Event::Healthy { tests }
                }
                Waited::Done(Err(HealthFailure::Timeout(last))) => Event::HealthTimedOut(last),
                Waited::Done(Err(HealthFailure::Failed(problem))) => Event::Unhealthy(problem),
            },
        )
    }

    /// Testing: run every test (again, after a restart: they are queries, and a Job keeps its
    /// per-release name).
    async fn run_tests(&self) -> Result<Event, Error> {
        let commit = self.release.spec.commit.clone();
        let rendered = self.ctx.render(&commit, self.environment()).await?;
        // The test deadline runs from the persisted Testing transition, so a restart keeps it.
        let deadline = self.deadline_after(Phase::Testing, rendered.config.test_timeout());
        let finished = match self.run_these(&rendered, |_| true, deadline).await? {
            Waited::Done(finished) => finished,
            Waited::Superseded => return Ok(Event::Interrupted),
        };
        let unfinished: Vec<String> = finished
            .iter()
            .filter(|(_, late)| *late)
            .map(|(r, _)| r.name.clone())
            .collect();
        let results: Vec<TestResult> = finished.into_iter().map(|(r, _)| r).collect();
        self.fault_point("MidTest").await;
        for result in &results {
            self.ctx.metrics.test(
                self.environment(),
                &result.name,
                result.verdict == TestVerdict::Passed,
            );
        }
        if unfinished.is_empty() {
            Ok(Event::TestsRan(results))
        } else {
            Ok(Event::TestDeadlinePassed { results, unfinished })
        }
    }

    /// Succeeded and deployed: run the continuous verification tests that are due, within
    /// `testing.timeout` from now (a run is not persisted before it starts: a restart runs the
    /// due tests again).
    async fn verify(&self) -> Result<Event, Error> {
        let commit = self.release.spec.commit.clone();
        let rendered = self.ctx.render(&commit, self.environment()).await?;
        let snapshot = self.snapshot();
        let now = self.ctx.now();
        let since = snapshot.deployed_since.unwrap_or(now);
        let due: Vec<String> =
            crate::verification::due_now(&snapshot.verification, &snapshot.verified_at, since, now)
                .into_iter()
                .map(|c| c.test.clone())
                .collect();
        let deadline = Instant::now() + rendered.config.test_timeout();
        let finished = match self
            .run_these(&rendered, |name| due.iter().any(|d| d == name), deadline)
            .await?
        {
            Waited::Done(finished) => finished,
            Waited::Superseded => return Ok(Event::Interrupted),
        };
        let results: Vec<TestResult> = finished.into_iter().map(|(r, _)| r).collect();
        for result in &results {
            self.ctx.metrics.verified(
                self.environment(),
                &result.name,
                result.verdict == TestVerdict::Passed,
                now,
            );
        }
        Ok(Event::Verified(results))
    }

    /// Runs the environment's tests that `wanted` names, at once, each bounded by `deadline`:
    /// each result, and whether it failed for the deadline.
    async fn run_these(
        &self,
        rendered: &Rendered,
        wanted: impl Fn(&str) -> bool,
        deadline: Instant,
    ) -> Result<Waited<Vec<(TestResult, bool)>>, Error> {
        let commit = self.release.spec.commit.clone();
        let environment = self.environment().to_owned();
        let (env_config, namespace) = self.environment_config(rendered);
        let target = self.target(rendered).await?;
        let runs = rendered
            .config
            .tests_for(&environment)
            .filter(|test| wanted(&test.name))
            .map(|test| {
                let name = test.name.clone();
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
                let check = self.check_target(&target, &env_config, &namespace);
                let kind = match (&test.http, &test.prometheus) {
                    (Some(http), _) => TestKind::Http(http.clone()),
                    (None, Some(prometheus)) => TestKind::Prometheus(prometheus.clone()),
                    (None, None) => TestKind::Job(job),
                };
                // A Job test watches the deadline itself and then reads its Pod's log; the
                // outer timer gives it that long more, or a test cut off at the deadline
                // would lose the log that says where it hung.
                let outer = match kind {
                    TestKind::Job(_) => deadline + crate::jobs::LOG_GRACE,
                    _ => deadline,
                };
                async move {
                    let run = run_test(check, name.clone(), kind, deadline);
                    match tokio::time::timeout_at(outer, run).await {
                        // A test that failed once the deadline had passed did not finish in
                        // time, whichever of the two timers fired first.
                        Ok(result) => {
                            let late = result.verdict == TestVerdict::Failed && Instant::now() >= deadline;
                            (result, late)
                        }
                        Err(_elapsed) => (
                            TestResult {
                                name,
                                verdict: TestVerdict::Failed,
                                duration_millis: None,
                                message: "did not finish within the test deadline (testing.timeout)".into(),
                                log: String::new(),
                            },
                            true,
                        ),
                    }
                }
            });
        Ok(self.unless_superseded(futures::future::join_all(runs)).await)
    }

    /// Failed after changing the cluster: find the last good release.
    async fn choose_rollback_target(&self) -> Result<Event, Error> {
        // From the API server, not the cache: the release that succeeded a moment ago must be
        // seen as Succeeded, or there would be nothing to roll back to.
        let others = self
            .ctx
            .list_environment_releases(&self.namespace, self.environment())
            .await?;
        Ok(match releases::rollback_target(&self.release, &others) {
            Some(good) => Event::RollbackTargetChosen {
                release: good.name_any(),
                short_commit: good.spec.short_commit().to_owned(),
            },
            None => Event::NoGoodRelease,
        })
    }

    /// RollingBack: re-apply the last good release's commit, prune what this one added, wait
    /// for health.
    async fn roll_back(&self) -> Result<Event, Error> {
        let target = self
            .status()
            .and_then(|s| s.rolled_back_to.clone())
            .unwrap_or_default();
        let Some(good) = self.ctx.release(&self.namespace, &target).await? else {
            return Ok(Event::RollbackTargetGone);
        };
        let good_commit = good.spec.short_commit().to_owned();
        let commit = good.spec.commit.clone();
        let (inventory, prune_refused) = match self.apply_commit(&commit, &target).await {
            Ok(applied) => applied,
            Err(Error::Load(LoadError::UnknownCommit(_))) => {
                return Ok(Event::RollbackCommitGone { good_commit });
            }
            Err(err) => return Err(err),
        };
        self.fault_point("MidRollback").await;
        Ok(
            match self.wait_healthy(Phase::RollingBack, &commit, &inventory).await? {
                Waited::Superseded => Event::Interrupted,
                Waited::Done(Ok(())) => Event::RolledBack {
                    good_commit,
                    prune_refused,
                },
                Waited::Done(Err(HealthFailure::Timeout(problem) | HealthFailure::Failed(problem))) => {
                    Event::RollbackUnhealthy {
                        problem,
                        prune_refused,
                    }
                }
            },
        )
    }

    /// Succeeded or RolledBack, the environment's deployed release: re-apply it and count what
    /// had drifted. `None` when there is nothing to re-apply (the good release is gone).
    async fn correct_drift(&self) -> Result<Option<Event>, Error> {
        let (commit, stamp_release) = match self.phase() {
            Some(Phase::RolledBack) => {
                let target = self
                    .status()
                    .and_then(|s| s.rolled_back_to.clone())
                    .unwrap_or_default();
                match self.ctx.release(&self.namespace, &target).await? {
                    Some(good) => (good.spec.commit.clone(), target),
                    None => return Ok(None),
                }
            }
            _ => (self.release.spec.commit.clone(), self.name.clone()),
        };
        // This is the environment's deployed release: say so (also after a restart).
        self.ctx.metrics.deployed(self.environment(), &commit);
        let rendered = self.ctx.render(&commit, self.environment()).await?;
        let objects = inventory::prepare(&rendered.manifests, self.stamp(&commit, &stamp_release));
        let target = self.target(&rendered).await?;
        let applied = self.ctx.applier.apply(&target, &objects, true).await?;
        Ok(Some(Event::DriftCorrected {
            drifted: applied.drifted as u64,
            commit: ship_api::names::short_sha(&commit).to_owned(),
        }))
    }

    /// Does `work`; `None` when there is nothing more to do now.
    async fn perform(&mut self, work: Work) -> Result<Option<Event>, Error> {
        match work {
            Work::Prepare => self.prepare().await.map(Some),
            Work::Apply => {
                let commit = self.release.spec.commit.clone();
                let name = self.name.clone();
                let (inventory, prune_refused) = self.apply_commit(&commit, &name).await?;
                Ok(Some(Event::Applied {
                    inventory,
                    prune_refused,
                }))
            }
            Work::AwaitHealth => self.await_health().await.map(Some),
            Work::RunTests => self.run_tests().await.map(Some),
            Work::ChooseRollbackTarget => self.choose_rollback_target().await.map(Some),
            Work::RollBack => self.roll_back().await.map(Some),
            Work::CorrectDrift => self.correct_drift().await,
            Work::Verify => self.verify().await.map(Some),
        }
    }

    /// Drives the release from `event` through every phase it can reach now; says when to look
    /// again.
    async fn drive(&mut self, mut event: Event) -> Result<Requeue, Error> {
        let mut stale_views = 0;
        loop {
            self.know_cadences().await;
            let decided_in = self.phase();
            let transition = machine::step(&self.snapshot(), event.clone(), self.ctx.now());
            let work = transition.work();
            if self.persist(transition.change, transition.record).await? == Persisted::StaleView {
                // Decided on a view that was not the latest (a cached copy that lagged, or
                // another writer): nothing was written; decide again from a fresh read. An
                // outcome about the phase the release is still in stands; one about a phase
                // it has left is dropped (the new phase does its own work).
                stale_views += 1;
                info!(
                    stale_views,
                    "the release changed since this decision was taken; deciding again"
                );
                if stale_views > MAX_STALE_VIEWS {
                    return Ok(Requeue::requeue(Duration::from_secs(1)));
                }
                if !self.refresh().await? {
                    return Ok(Requeue::await_change());
                }
                if self.phase() != decided_in && !matches!(event, Event::SpecInvalid(_)) {
                    event = Event::Observed;
                }
                continue;
            }
            for action in transition.actions {
                match action {
                    Action::Announce { notice, note } => {
                        let reason: &'static str = notice.into();
                        warn!(notice = reason, "{note}");
                        publish(self.ctx, &self.release, EventType::Warning, reason, &note).await;
                    }
                    Action::CollectGarbage if !self.superseded() => self.collect_garbage().await?,
                    Action::CollectGarbage | Action::Work(_) => {}
                    Action::Retry => {
                        return match self.blocked.take() {
                            Some(err) => Err(err),
                            None => Ok(Requeue::requeue(Disposition::Retry.retry_after())),
                        };
                    }
                    Action::RequeueSoon => return Ok(Requeue::requeue(Duration::from_secs(1))),
                    Action::RequeueAfter(after) => return Ok(Requeue::requeue(after)),
                }
            }
            let Some(work) = work else {
                return Ok(Requeue::await_change());
            };
            if !self.confirmed {
                // Work changes the cluster or runs tests: never on a cached copy's word. A
                // release that moved on is decided again from what it is now.
                let cached = self.release.metadata.resource_version.clone();
                if !self.refresh().await? {
                    return Ok(Requeue::await_change());
                }
                if self.release.metadata.resource_version != cached {
                    event = Event::Observed;
                    continue;
                }
            }
            let snapshot = self.snapshot();
            if snapshot.superseded_by.is_some() && snapshot.unfinished() {
                // A newer release appeared meanwhile: the machine settles this one (on any
                // event) before any more work is done for it.
                event = Event::Observed;
                continue;
            }
            match self.perform(work).await? {
                Some(next) => event = next,
                None => return Ok(Requeue::await_change()),
            }
        }
    }

    /// Reads the release from the API server (not the cache). `false` when it was deleted.
    async fn refresh(&mut self) -> Result<bool, Error> {
        let Some(fresh) = self
            .ctx
            .releases(&self.namespace)
            .get_opt(&self.name)
            .await
            .map_err(Error::Releases)?
        else {
            return Ok(false);
        };
        if fresh.metadata.resource_version != self.release.metadata.resource_version {
            self.own = releases::sequence(&fresh);
            self.release = fresh;
        }
        self.confirmed = true;
        Ok(true)
    }

    /// Deletes the environment's oldest settled releases beyond the history limit.
    async fn collect_garbage(&self) -> Result<(), Error> {
        let all = self.environment_releases().await?;
        for name in releases::to_collect(&all, self.ctx.settings.history_limit) {
            match self
                .ctx
                .releases(&self.namespace)
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => info!(collected = name, "old release deleted (history limit)"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(err) => return Err(Error::Releases(err)),
            }
        }
        Ok(())
    }
}

/// Most missing references named in one refusal.
const MISSING_SHOWN: usize = 10;

/// A refusal when the workloads among `objects` need Secrets, ConfigMaps or ServiceAccounts
/// that neither the commit declares nor the target cluster holds (a Pod would wait for them
/// until the health timeout). `None` when nothing is missing.
async fn missing_references(target: &Client, objects: &[serde_json::Value]) -> Result<Option<Event>, Error> {
    use crate::references;
    let needed = references::required(objects);
    if needed.is_empty() {
        return Ok(None);
    }
    let present = references::present(target, &needed)
        .await
        .map_err(|e| crate::apply::ApplyError::Read(format!("listing what the workloads need: {e}")))?;
    let gone = references::missing(&needed, &references::declared(objects), &present);
    if gone.is_empty() {
        return Ok(None);
    }
    let mut shown: Vec<String> = gone.iter().take(MISSING_SHOWN).map(ToString::to_string).collect();
    if gone.len() > MISSING_SHOWN {
        shown.push(format!("and {} more", gone.len() - MISSING_SHOWN));
    }
    Ok(Some(Event::Refused {
        cause: "MissingReference",
        problem: format!(
            "{} objects the workloads need exist neither in the commit nor in the cluster: {}; create them, \
             or mark the reference optional",
            gone.len(),
            shown.join("; ")
        ),
    }))
}

/// What one post-deployment test runs.
enum TestKind {
    /// A known query, a known result.
    Http(ship_render::config::HttpTest),
    /// A Prometheus analysis.
    Prometheus(ship_render::config::PrometheusTest),
    /// A Job (its object, when the rendering found its manifest).
    Job(Option<serde_json::Value>),
}

/// Runs one post-deployment test: an HTTP check, a Prometheus analysis, or a Job.
async fn run_test(
    check: crate::checks::CheckTarget<'_>,
    name: String,
    kind: TestKind,
    deadline: Instant,
) -> TestResult {
    let failed = |message: String| {
        (
            crate::checks::CheckOutcome {
                passed: false,
                message,
                duration: Duration::ZERO,
            },
            String::new(),
        )
    };
    let (outcome, log) = match kind {
        TestKind::Http(http) => (
            crate::checks::run_http_with_retries(check, &http).await,
            String::new(),
        ),
        TestKind::Prometheus(prometheus) => crate::analysis::run(check, &prometheus).await,
        TestKind::Job(Some(job)) => {
            match crate::jobs::run(check.cluster, check.namespace, &job, deadline).await {
                Ok(done) => done,
                Err(err) => failed(format!("cannot run the test Job: {err}")),
            }
        }
        TestKind::Job(None) => failed("the test's Job manifest was not rendered".into()),
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

/// Reconciles one ShipRelease: level-based and idempotent.
pub async fn reconcile(
    object: Arc<DeserializeGuard<ShipRelease>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let namespace = object.namespace().ok_or(Error::NoNamespace)?;
    let name = object.name_any();
    let release = match &object.0 {
        Ok(release) => release.clone(),
        Err(invalid) => {
            // One malformed object must not stall the watch: say what is wrong, touch nothing.
            let message = format!("the ShipRelease cannot be read: {}", invalid.error);
            warn!(release = %name, namespace, error = %invalid.error, "malformed ShipRelease");
            // The message alone, by a merge patch: whatever else the status holds (the phase
            // and history another Ship version wrote) stays as it is, so nothing is lost when
            // a Ship that can read it comes back. An apply of a status this Ship built would
            // drop every field it owned and did not restate.
            let api: Api<DeserializeGuard<ShipRelease>> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = serde_json::json!({"status": {"message": message}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::StatusWrite)?;
            let reason = StatusReason::InvalidObject.label();
            publish(&ctx, object.as_ref(), EventType::Warning, reason, &message).await;
            return Ok(Requeue::await_change());
        }
    };
    let span = tracing::info_span!(
        "release",
        release = %name,
        namespace,
        environment = %release.spec.environment,
        commit = %release.spec.commit,
    );
    let release = if ctx.settings.stale_views {
        one_version_behind(&ctx, &namespace, &name, release)
    } else {
        release
    };
    reconcile_release(release, namespace, name, &ctx)
        .instrument(span)
        .await
}

/// Fault injection ([`Settings::stale_views`](crate::context::Settings)): hand this reconcile
/// the version of the release the previous reconcile was handed, as a cache lagging the
/// controller's own writes would. The first reconcile of a release sees it as it is.
fn one_version_behind(ctx: &Context, namespace: &str, name: &str, current: ShipRelease) -> ShipRelease {
    let key = format!("{namespace}/{name}");
    let Ok(mut handed) = ctx.last_handed.lock() else {
        return current;
    };
    match handed.insert(key, current.clone()) {
        Some(previous) if previous.metadata.resource_version != current.metadata.resource_version => previous,
        _ => current,
    }
}

async fn reconcile_release(
    release: ShipRelease,
    namespace: String,
    name: String,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let slot = ctx.slot(&namespace, &release.spec.environment);
    let own = releases::sequence(&release);
    let mut driver = Driver {
        ctx,
        release,
        namespace,
        name,
        slot,
        own,
        blocked: None,
        cadences: None,
        confirmed: false,
    };
    if let Err(problem) = driver.release.spec.validate() {
        return driver.drive(Event::SpecInvalid(problem.to_string())).await;
    }
    driver.ensure_identity().await?;
    let all = driver.environment_releases().await?;
    if let Some(newest) = all.iter().map(releases::sequence).max() {
        driver.slot.newest.send_if_modified(|current| {
            let newer = newest > *current;
            if newer {
                *current = newest;
            }
            newer
        });
    }
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
    let slot = driver.slot.clone();
    let _turn = slot.lock.lock().await;
    driver.drive(Event::Observed).await
}

fn error_policy(_object: Arc<DeserializeGuard<ShipRelease>>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let disposition = error.disposition();
    let disposition_label: &'static str = disposition.into();
    warn!(error = %error, kind = error.label(), disposition = disposition_label, "reconcile failed; retrying");
    ctx.metrics.reconcile_error(error.label());
    Requeue::requeue(disposition.retry_after())
}

/// Runs the ShipRelease controller until `shutdown` resolves, driven by `releases`, the one
/// ShipRelease watch (its trigger and store; the keeper and the status page read them too).
/// `ready` turns true once the initial list of ShipReleases has been read (the controller can
/// act on every object).
pub async fn run(
    ctx: Context,
    releases: &crate::watches::ReleaseWatch,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let Some(trigger) = releases.trigger() else {
        warn!("the ShipRelease watch already drives a controller; not starting a second");
        return;
    };
    let controller = Controller::for_stream(trigger, releases.shared.store()).graceful_shutdown_on(shutdown);
    let (shared, ready_store) = (releases.shared.clone(), ctx.store.clone());
    tokio::spawn(async move {
        shared.wait_ready().await;
        // From now on the engine reads releases from the store.
        let _ = ready_store.set(shared.store());
        ready.store(true, Ordering::SeqCst);
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
