//! One function per [`Work`]: each observes or changes the cluster, the repository or the
//! environment's other releases, and reports what happened as an [`Event`]. None of them
//! reads the release's phase: what a phase asks for comes in with the work.

use std::time::Duration;

use kube::api::DeleteParams;
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use ship_api::{Phase, Reason, TestResult, TestVerdict};
use ship_render::Rendered;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::drive::{Driver, Waited};
use super::{Error, environment_namespace, publish};
use crate::apply::HealthFailure;
use crate::error::Disposition;
use crate::inventory;
use crate::machine::{DeployedObjects, Event, Plan, Work};
use crate::releases;
use crate::repo::LoadError;

impl Driver<'_> {
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
        let objects = inventory::prepare_leaving(
            &rendered.manifests,
            self.stamp(&commit, &self.name),
            &rendered.config.ignore_fields,
        );
        let target = match self.target(&rendered).await {
            Ok(target) => target,
            Err(err) => {
                // Not the commit's fault: the status says so, and the controller retries.
                return Ok(Event::ClusterUnavailable {
                    cause: err.label(),
                    problem: err.to_string(),
                    retry_after: err.disposition().retry_after(),
                });
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
        // Only what will be written is dry-run: what the cluster holds as Ship wrote it passed
        // its dry run and apply before.
        let (writes, _) = self.to_write(&target, &objects, Scope::Changed).await;
        debug!(
            to_write = writes.objects.len(),
            unchanged = writes.tally.unchanged,
            "dry run of what changed"
        );
        if let Err(err) = self.ctx.applier.dry_run(&target, &writes.objects).await {
            return Self::refusal(err.into());
        }
        match missing_references(&target, &objects).await? {
            Some(Missing {
                problem,
                awaited: true,
            }) => {
                warn!(notice = "ReferencesAwaited", "{problem}");
                publish(
                    self.ctx,
                    &self.release,
                    EventType::Warning,
                    "ReferencesAwaited",
                    &problem,
                )
                .await;
            }
            Some(Missing {
                problem,
                awaited: false,
            }) => {
                return Ok(Event::Refused {
                    cause: "MissingReference",
                    problem,
                });
            }
            None => {}
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
                Ok(Some(Event::PushBlocked {
                    cause: err.label(),
                    branch,
                    problem: err.to_string(),
                    retry_after: err.disposition().retry_after(),
                }))
            }
        }
    }

    /// Answers a revert request (`kubectl ship revert`): pushes a `git revert` of the release's
    /// commit onto its branch's tip, records the outcome in `status.revert` for `requested_at`
    /// (a merge patch of that field alone: the rest of the status is the machine's), and
    /// announces it. Nothing is pushed twice for one request.
    pub(super) async fn revert(&mut self, requested_at: &str) -> Result<(), Error> {
        use ship_core::revert::{Outcome, note};
        let annotations = self.release.metadata.annotations.clone().unwrap_or_default();
        let requested_by = annotations
            .get(ship_api::keys::REVERT_REQUESTED_BY)
            .cloned()
            .unwrap_or_default();
        let commit = self.release.spec.commit.clone();
        let failure = self
            .status()
            .map(|s| s.ready_reason().to_owned())
            .unwrap_or_default();
        let note = note(&self.name, self.environment(), &failure, &requested_by);
        let (outcome, revert_commit, message) = self.push_revert(&commit, note).await?;
        let record = ship_api::RevertRecord {
            requested_at: requested_at.to_owned(),
            requested_by,
            outcome: outcome.label().to_owned(),
            commit: revert_commit,
            message: message.clone(),
        };
        // The record alone, without a precondition: no other writer touches `status.revert`,
        // and the push it reports has happened, so it must not be lost to a conflict.
        let patch = serde_json::json!({"status": {"revert": record}});
        let written = self
            .ctx
            .releases(&self.namespace)
            .patch_status(
                &self.name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(Error::StatusWrite)?;
        self.release = written;
        let type_ = if outcome == Outcome::Refused {
            warn!(outcome = outcome.label(), "{message}");
            EventType::Warning
        } else {
            info!(outcome = outcome.label(), "{message}");
            EventType::Normal
        };
        publish(self.ctx, &self.release, type_, outcome.event_reason(), &message).await;
        Ok(())
    }

    /// Pushes a `git revert` of `commit` onto the release's branch's tip with `note` (never
    /// forced), and says what came of it: the outcome, the revert commit pushed, a sentence.
    /// The one push of a revert, for `kubectl ship revert` and for a bisection's culprit.
    pub(super) async fn push_revert(
        &self,
        commit: &str,
        note: String,
    ) -> Result<(ship_core::revert::Outcome, Option<String>, String), Error> {
        use ship_core::revert::Outcome;
        let branch = self.release.spec.branch.clone();
        let short = ship_api::names::short_sha(commit).to_owned();
        let pushed = match self.ctx.repo.clone() {
            None => Err(LoadError::NoRepository(commit.to_owned())),
            Some(repo) => {
                let (b, c) = (branch.clone(), commit.to_owned());
                tokio::task::spawn_blocking(move || repo.revert(&b, &c, &note))
                    .await
                    .map_err(|e| LoadError::Scratch(format!("revert task failed: {e}")))?
            }
        };
        Ok(match pushed {
            Ok(ship_git::RevertOutcome::Pushed(id)) => (
                Outcome::Pushed,
                Some(id.to_string()),
                format!(
                    "pushed {} onto {branch}: a revert of commit {short}; it is released like any commit",
                    ship_api::names::short_sha(&id.to_string())
                ),
            ),
            Ok(ship_git::RevertOutcome::AlreadyReverted) => (
                Outcome::AlreadyReverted,
                None,
                format!("the tip of {branch} already undoes commit {short}; nothing was pushed"),
            ),
            Err(err) => (
                Outcome::Refused,
                None,
                format!("revert of commit {short} refused: {err}"),
            ),
        })
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
    ) -> Result<
        (
            Vec<ship_api::InventoryEntry>,
            Vec<ship_api::PruneRefusal>,
            Vec<String>,
        ),
        Error,
    > {
        let rendered = self.ctx.render(commit, self.environment()).await?;
        let objects = inventory::prepare_leaving(
            &rendered.manifests,
            self.stamp(commit, stamp_release),
            &rendered.config.ignore_fields,
        );
        let target = self.target(&rendered).await?;
        if self.armed("MidApply") && stamp_release == self.name {
            // Tests only: stop with half the objects applied.
            let half = objects.len() / 2;
            self.ctx.applier.apply(&target, &objects[..half], None).await?;
            self.fault_point("MidApply").await;
        }
        // A release writes what changed; a rollback writes everything (it must restore the
        // good release whatever the failed one left).
        let rolling_back = stamp_release != self.name;
        let scope = if rolling_back { Scope::All } else { Scope::Changed };
        let (writes, _) = self.to_write(&target, &objects, scope).await;
        let tally = writes.tally;
        let applied = self.write(&target, &objects, &writes, None).await?;
        self.watch_for_drift(&target, &objects).await;
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
            unchanged = tally.unchanged,
            drifted = tally.drifted,
            pruned,
            refused = refused.len(),
            commit,
            "objects applied"
        );
        Ok((keep, refused, writes.fields_left))
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
        self.fault_point("MidTest").await;
        for (result, _) in &finished {
            self.ctx.metrics.test(
                self.environment(),
                &result.name,
                result.verdict == TestVerdict::Passed,
            );
        }
        Ok(crate::machine::tests_finished(finished))
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
        let (inventory, prune_refused, _) = match self.apply_commit(&commit, &target).await {
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
        let (commit, stamp_release) = match self.snapshot().deployed_objects() {
            DeployedObjects::Own => (self.release.spec.commit.clone(), self.name.clone()),
            DeployedObjects::RolledBackTo(target) => {
                match self.ctx.release(&self.namespace, &target).await? {
                    Some(good) => (good.spec.commit.clone(), target),
                    None => return Ok(None),
                }
            }
        };
        // This is the environment's deployed release: say so (also after a restart).
        self.ctx.metrics.deployed(self.environment(), &commit);
        let rendered = self.ctx.render(&commit, self.environment()).await?;
        let objects = inventory::prepare_leaving(
            &rendered.manifests,
            self.stamp(&commit, &stamp_release),
            &rendered.config.ignore_fields,
        );
        let target = self.target(&rendered).await?;
        // What drifted, from the objects' metadata; now and then (and first after a start)
        // everything, for what metadata cannot show (a field another writer removed).
        let everything = self.ctx.full_recheck_due(self.environment());
        if let Some(seen) = self.ctx.drift_watches.take(self.environment()) {
            info!(seen, "a watch saw another writer: checking drift now");
        }
        let scope = if everything {
            Scope::Recheck
        } else {
            Scope::Changed
        };
        let (writes, live) = self.to_write(&target, &objects, scope).await;
        let tally = writes.tally;
        self.watch_for_drift(&target, &objects).await;
        let applied = self.write(&target, &objects, &writes, Some(&live)).await?;
        if everything {
            self.ctx.full_recheck_done(self.environment());
        }
        debug!(
            written = applied.objects,
            drifted = applied.drifted,
            unchanged = tally.unchanged,
            everything,
            "drift checked"
        );
        Ok(Some(Event::DriftCorrected {
            drifted: applied.drifted as u64,
            commit: ship_api::names::short_sha(&commit).to_owned(),
        }))
    }

    /// From now on, a change another writer makes to `objects` wakes this release (it
    /// applied them: as the new release, or rolling back to what runs).
    async fn watch_for_drift(&self, target: &kube::Client, objects: &[serde_json::Value]) {
        if !self.ctx.settings.drift_watch {
            return;
        }
        let resources = self.ctx.applier.resources_of(target, objects).await;
        self.ctx.drift_watches.ensure(
            target,
            self.environment(),
            (&self.name, &self.namespace),
            resources,
            self.ctx.wake.clone(),
        );
    }

    /// Of `objects`, what to write now ([`crate::changes::plan`]) and the live metadata it was
    /// decided on: what is missing, changed or drifted by its metadata (`Scope::Changed`); also
    /// what no longer holds what the manifest sets, read with the bodies (`Scope::Recheck`); or
    /// everything (`Scope::All`). Fields left to other writers are taken out. When the
    /// objects cannot be listed, all of them.
    async fn to_write<'o>(
        &self,
        target: &kube::Client,
        objects: &'o [serde_json::Value],
        scope: Scope,
    ) -> (crate::changes::Writes<'o>, crate::changes::Live) {
        use crate::changes::{Live, Mode, plan};
        let applier = &self.ctx.applier;
        let listed = if scope == Scope::Recheck {
            applier.live_objects(target, objects, self.environment()).await
        } else {
            applier
                .live_metadata(target, objects, self.environment())
                .await
                .map(|live| (live, std::collections::HashMap::new()))
        };
        let (live, bodies) = match listed {
            Ok(listed) => listed,
            Err(err) => {
                warn!(error = %err, "cannot list the environment's objects: writing them all");
                return (plan(objects, &Live::new(), Mode::All), Live::new());
            }
        };
        let mode = match scope {
            Scope::Changed => Mode::Changed,
            Scope::Recheck => Mode::Recheck(&bodies),
            Scope::All => Mode::All,
        };
        (plan(objects, &live, mode), live)
    }

    /// Writes `writes` (after handing over the fields Ship stops applying); with `live`, counts
    /// what the writes changed as drifted.
    async fn write(
        &self,
        target: &kube::Client,
        objects: &[serde_json::Value],
        writes: &crate::changes::Writes<'_>,
        live: Option<&crate::changes::Live>,
    ) -> Result<crate::apply::Applied, Error> {
        for (key, paths) in &writes.hand_over {
            if let Some(object) = objects.iter().find(|o| crate::changes::key_of(o) == *key) {
                self.ctx.applier.hand_over(target, object, paths).await?;
            }
        }
        Ok(self.ctx.applier.apply(target, &writes.objects, live).await?)
    }

    /// Does `work`; `None` when there is nothing more to do now.
    pub(super) async fn perform(&mut self, work: Work) -> Result<Option<Event>, Error> {
        match work {
            Work::Prepare => self.prepare().await.map(Some),
            Work::Apply => {
                let commit = self.release.spec.commit.clone();
                let name = self.name.clone();
                let (inventory, prune_refused, fields_left) = self.apply_commit(&commit, &name).await?;
                Ok(Some(Event::Applied {
                    inventory,
                    prune_refused,
                    fields_left,
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

    /// Deletes the environment's oldest settled releases beyond the history limit.
    pub(super) async fn collect_garbage(&self) -> Result<(), Error> {
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

/// What the workloads reference that exists neither in the commit nor in the cluster, said
/// in a sentence; `awaited` when the commit holds custom resources, whose controllers (ones
/// Ship does not know) may make it once applied.
struct Missing {
    problem: String,
    awaited: bool,
}

/// The references of the workloads among `objects` to Secrets, ConfigMaps or
/// ServiceAccounts that neither the commit declares nor the target cluster holds (a Pod would
/// wait for them until the health timeout), if any.
async fn missing_references(
    target: &Client,
    objects: &[serde_json::Value],
) -> Result<Option<Missing>, Error> {
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
    let listed = format!(
        "{} objects the workloads need exist neither in the commit nor in the cluster: {}",
        gone.len(),
        shown.join("; ")
    );
    // Custom resources in the commit: a controller Ship does not know may make what is
    // missing once they are applied. Go ahead; the health timeout bounds the wait (a workload
    // that never gets its Secret never becomes healthy, and the release fails and rolls back).
    let awaited = references::holds_custom_resources(objects);
    let problem = if awaited {
        format!(
            "{listed}; the commit holds custom resources whose controllers may make them, so the release \
             goes ahead and waits for them until its health timeout"
        )
    } else {
        format!("{listed}; create them, or mark the reference optional")
    };
    Ok(Some(Missing { problem, awaited }))
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

/// Which objects a write considers ([`crate::changes::Mode`], before the listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Missing, changed or drifted, by metadata.
    Changed,
    /// Those, and what no longer holds its manifest, by the bodies.
    Recheck,
    /// Everything.
    All,
}
