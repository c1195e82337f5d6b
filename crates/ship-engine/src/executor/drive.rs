//! The drive loop: decide ([`machine::step`]), persist (a compare-and-set), act. What to
//! decide again after a refused write, what a change tells the metrics, and whether a newer
//! release settles this one first are rules of the pure core; the loop only carries them out.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use ship_api::{Phase, ShipRelease, ShipReleaseStatus, keys};
use ship_render::Rendered;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Context, Error, publish};
use crate::context::EnvironmentSlot;
use crate::inventory::Stamp;
use crate::machine::measures::Measure;
use crate::machine::{self, Action, Change, Event, Snapshot, transition_time};
use crate::releases;
use crate::status::status_after;
use ship_api::environment::Standing;

/// Walks one release through its phases: observes, asks [`machine::step`], persists, executes.
pub(super) struct Driver<'a> {
    pub(super) ctx: &'a Context,
    pub(super) release: ShipRelease,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) slot: Arc<EnvironmentSlot>,
    /// The release's place in its environment's order.
    own: (i64, String),
    /// The continuous verification tests of the release's commit, once read (for a release
    /// that is, or is about to be, deployed).
    cadences: Option<Vec<crate::verification::Cadence>>,
    /// Whether the release's objects are what its environment runs, from the environment's
    /// releases as this reconcile read them (`None` until read).
    pub(super) standing: Option<Standing>,
    /// A person holds the environment with `--freeze` (read for the release that runs).
    pub(super) frozen: bool,
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
pub(super) enum Waited<T> {
    Done(T),
    Superseded,
}

impl<'a> Driver<'a> {
    pub(super) fn new(
        ctx: &'a Context,
        release: ShipRelease,
        namespace: String,
        name: String,
        slot: Arc<EnvironmentSlot>,
        own: (i64, String),
    ) -> Self {
        Driver {
            ctx,
            release,
            namespace,
            name,
            slot,
            own,
            cadences: None,
            standing: None,
            frozen: false,
            confirmed: false,
        }
    }

    pub(super) fn status(&self) -> Option<&ShipReleaseStatus> {
        self.release.status.as_ref()
    }

    pub(super) fn phase(&self) -> Option<Phase> {
        self.status().and_then(|s| s.phase)
    }

    pub(super) fn environment(&self) -> &str {
        &self.release.spec.environment
    }

    pub(super) fn superseded(&self) -> bool {
        *self.slot.newest.borrow() > self.own
    }

    /// What the machine is told of this release.
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            standing: self.standing,
            frozen: self.frozen,
            drift_seen: self.ctx.drift_watches.seen(self.environment()),
            ..Snapshot::of(
                crate::machine::persisted(&self.release),
                self.superseded().then(|| self.slot.newest.borrow().1.clone()),
                self.ctx.settings.drift_interval,
                self.cadences.clone().unwrap_or_default(),
            )
        }
    }

    /// Reads the continuous verification tests of the release's commit, once, when the
    /// release is deployed or about to be (its tests are running). A commit that cannot be
    /// rendered has none: it is not verified, and the log says why.
    async fn know_cadences(&mut self) {
        if self.cadences.is_some() || !machine::reads_verification(self.phase()) {
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
    pub(super) fn deadline_after(&self, phase: Phase, timeout: Duration) -> Instant {
        let now = self.ctx.now();
        let entered = transition_time(self.status(), phase).unwrap_or(now);
        let elapsed = Duration::try_from(now.duration_since(entered)).unwrap_or(Duration::ZERO);
        Instant::now() + timeout.saturating_sub(elapsed)
    }

    /// Runs `work` until it ends or a newer release of the environment appears.
    pub(super) async fn unless_superseded<T>(&self, work: impl Future<Output = T>) -> Waited<T> {
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
            && change.enters_phase(previous.as_ref())
        {
            let measures = machine::measures::of_change(
                previous.as_ref(),
                &change,
                self.release.spec.reason,
                !self.superseded(),
                self.ctx.now(),
            );
            self.record(measures);
            self.record_delivery(&change).await;
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
    pub(super) async fn fault_point(&self, point: &str) {
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

    pub(super) fn armed(&self, point: &str) -> bool {
        self.ctx
            .settings
            .pause_at
            .as_ref()
            .is_some_and(|(armed, _)| armed == point)
    }

    /// Records the delivery (DORA) figures of `change`, just persisted: deployments, lead times,
    /// failed changes and restores ([`ship_core::delivery`]), from the environment's releases.
    async fn record_delivery(&self, change: &Change) {
        if !matches!(change.phase, Phase::Succeeded | Phase::Failed) {
            return;
        }
        let releases = match self.environment_releases().await {
            Ok(releases) => releases,
            Err(err) => {
                warn!(error = %err, "cannot read the environment's releases; delivery figures not recorded");
                return;
            }
        };
        let committed: Vec<jiff::Timestamp> = self
            .status()
            .map(|s| {
                s.suspects
                    .iter()
                    .filter_map(|c| c.committed_at.as_ref().map(|t| t.0))
                    .collect()
            })
            .unwrap_or_default();
        let figures = ship_core::delivery::on_settled(
            self.environment(),
            &releases,
            &self.own,
            change.phase,
            change.reason,
            &committed,
            self.ctx.now(),
        );
        for figure in &figures {
            self.ctx.metrics.delivery(self.environment(), figure);
        }
    }

    /// Records `measures` in the metrics, one call each.
    pub(super) fn record(&self, measures: Vec<Measure>) {
        let (metrics, environment) = (&self.ctx.metrics, self.environment());
        for measure in measures {
            match measure {
                Measure::Step { name, took } => metrics.step(environment, name, took),
                Measure::Settled { phase, label } => metrics.settled(environment, phase.as_str(), label),
                Measure::Deployed { at, promotion } => {
                    metrics.deployed(environment, &self.release.spec.commit);
                    // A newly deployed release has not been verified yet: the last release's
                    // verdicts do not speak for it.
                    metrics.forget_verification(environment);
                    metrics.succeeded_at(environment, seconds(at), promotion);
                }
                Measure::SucceededAt { at, promotion } => {
                    metrics.succeeded_at(environment, seconds(at), promotion)
                }
                Measure::Rollback { cause } => metrics.rollback(environment, &cause),
                Measure::Latest { phase } => {
                    metrics.latest(environment, &self.name, &self.release.spec.commit, phase.as_str())
                }
            }
        }
    }

    pub(super) async fn environment_releases(&self) -> Result<Vec<ShipRelease>, Error> {
        self.ctx
            .environment_releases(&self.namespace, self.environment())
            .await
    }

    /// The client of the cluster this release's environment deploys to.
    pub(super) async fn target(&self, rendered: &Rendered) -> Result<Client, Error> {
        self.ctx
            .target(rendered, self.environment(), &self.namespace)
            .await
    }

    pub(super) fn stamp<'s>(&'s self, commit: &'s str, release: &'s str) -> Stamp<'s> {
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
    pub(super) async fn ensure_identity(&mut self) -> Result<(), Error> {
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

    /// Drives the release from `event` through every phase it can reach now; says when to look
    /// again.
    pub(super) async fn drive(&mut self, mut event: Event) -> Result<Requeue, Error> {
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
                event = machine::after_stale_view(event, decided_in, self.phase());
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
                    Action::Retry { cause, after } => {
                        // Awaiting what the status names: said, and counted as the reconcile
                        // error it is.
                        let awaited = self
                            .status()
                            .and_then(|s| s.message.as_deref())
                            .unwrap_or_default();
                        warn!(kind = cause, retry_in_s = after.as_secs(), "{awaited}");
                        self.ctx.metrics.reconcile_error(cause);
                        return Ok(Requeue::requeue(after));
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
            if self.snapshot().settles_before_work() {
                // A newer release appeared meanwhile: the machine settles this one first.
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
    pub(super) async fn refresh(&mut self) -> Result<bool, Error> {
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
}

/// `at` in seconds since the epoch, as the metrics hold times.
fn seconds(at: jiff::Timestamp) -> f64 {
    at.as_millisecond() as f64 / 1000.0
}
