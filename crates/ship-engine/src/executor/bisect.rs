//! The executor of the bisection machine ([`ship_core::bisect`]): after a release of several
//! commits rolled back, it deploys chosen commits of the failed range as test releases (reason
//! `Bisect`, labelled `ship.dev/bisection-of`), feeds their verdicts back, and reports the first
//! bad commit. The machine decides; this layer reads the environment's releases (the shared
//! store), persists the bisection on the failed release's status (server-side apply on
//! `/status` under its own field manager, a compare-and-set on the resourceVersion it was
//! decided on), then carries out the effects. The test releases themselves go through the
//! release machine like any other: applied, checked, tested, and rolled back when they fail.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use ship_api::{Phase, Reason, ShipRelease, keys};
use ship_core::bisect::{self, Bisection, Culprit, Effect, Failure};
use ship_core::environment::Release as _;
use tracing::{info, warn};

use super::drive::Driver;
use super::{Error, publish};
use crate::releases;

/// How often a testing bisection looks at its test release again, besides being woken when the
/// test release settles (the look catches a push waiting, a hold and the deadline). A look
/// reads the shared store and the mirror, plus one GET of the environment's hold.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// After a compare-and-set lost: look again from a fresher view.
const AFTER_STALE_VIEW: Duration = Duration::from_secs(1);

/// `release` was made by the bisection of `parent` (a test release, or its restore).
fn made_by(release: &ShipRelease, parent: &str) -> bool {
    release
        .labels()
        .get(keys::BISECTION_OF)
        .is_some_and(|of| of == parent)
}

/// The failing test of `release` and the end of its log, as a culprit shows it.
fn failed_test(release: &ShipRelease) -> Option<String> {
    let status = release.status.as_ref()?;
    let test = status
        .tests
        .iter()
        .find(|t| t.verdict != ship_api::TestVerdict::Passed)?;
    let log: Vec<&str> = test.log.lines().rev().take(5).collect();
    let tail: Vec<&str> = log.into_iter().rev().collect();
    Some(
        format!("{}: {}\n{}", test.name, test.message, tail.join("\n"))
            .trim_end()
            .to_owned(),
    )
}

impl Driver<'_> {
    /// Starts, advances or reports the bisection of this release, once it rolled back. Returns
    /// when to look again while a test release is out.
    pub(super) async fn bisect(&mut self, all: &[ShipRelease]) -> Result<Option<Duration>, Error> {
        if self.phase() != Some(Phase::RolledBack) || self.ctx.repo.is_none() {
            return Ok(None);
        }
        // Most rolled-back releases are history: say so before reading their commit.
        let bisection = self.status().and_then(|s| s.bisection.as_ref());
        let reported = bisection.is_some_and(|b| b.ended() && b.reported_at.is_some());
        let never = bisection.is_none()
            && (self.release.spec.reason != Reason::Push || self.superseded_outside_bisection(all));
        if reported || never {
            return Ok(None);
        }
        let commit = self.release.spec.commit.clone();
        let rendered = match self.ctx.render(&commit, self.environment()).await {
            Ok(rendered) => rendered,
            // A commit that cannot be rendered failed before applying: nothing to bisect.
            Err(_) => return Ok(None),
        };
        let config = rendered.config.bisect.clone();
        let promoted_into =
            rendered.config.promotion.enabled && rendered.config.promotion.to == self.environment();
        match self.status().and_then(|s| s.bisection.clone()) {
            None => self.start_bisection(all, &config, promoted_into).await,
            Some(bisection) if bisection.ended() => {
                if bisection.reported_at.is_none() {
                    self.report_bisection(bisection, all, &config).await?;
                }
                Ok(None)
            }
            Some(bisection) => self.advance_bisection(bisection, all, &config).await,
        }
    }

    async fn start_bisection(
        &mut self,
        all: &[ShipRelease],
        config: &ship_render::config::Bisect,
        promoted_into: bool,
    ) -> Result<Option<Duration>, Error> {
        let superseded = self.superseded_outside_bisection(all);
        let failure = Failure {
            enabled: config.enabled,
            promoted_into,
            pushed: self.release.spec.reason == Reason::Push,
            rolled_back: true,
            has_bisection: false,
            superseded,
            held: false,
        };
        if !bisect::starts(failure) {
            return Ok(None);
        }
        let held = self.held().await?;
        if !bisect::starts(Failure { held, ..failure }) {
            return Ok(None);
        }
        let Some(base) = self
            .status()
            .and_then(|s| s.rolled_back_to.as_deref())
            .and_then(|target| all.iter().find(|r| r.name() == target))
            .map(|r| r.spec.commit.clone())
        else {
            return Ok(None);
        };
        let Some(repo) = self.ctx.repo.clone() else {
            return Ok(None);
        };
        let (from, to) = (base.clone(), self.release.spec.commit.clone());
        let line = tokio::task::spawn_blocking(move || repo.bisect_line(&from, &to))
            .await
            .map_err(|e| crate::repo::LoadError::Scratch(format!("bisect task failed: {e}")))?;
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => {
                info!(
                    base,
                    "no first-parent line from the last good commit: nothing to bisect"
                );
                return Ok(None);
            }
            Err(err) => {
                warn!(error = %err, "cannot read the failed range; not bisecting");
                return Ok(None);
            }
        };
        let now = self.ctx.now();
        let Some((bisection, effects)) = bisect::start(&base, line, now, config.settings()) else {
            return Ok(None);
        };
        info!(commits = bisection.commits.len(), "bisecting the failed range");
        if !self.persist_bisection(&bisection).await? {
            return Ok(Some(AFTER_STALE_VIEW));
        }
        self.perform_bisect(&bisection, effects, all, config).await?;
        Ok(Some(LOOK_EVERY))
    }

    async fn advance_bisection(
        &mut self,
        bisection: Bisection,
        all: &[ShipRelease],
        config: &ship_render::config::Bisect,
    ) -> Result<Option<Duration>, Error> {
        let test_phase = bisect::current_test(&bisection).and_then(|(commit, attempt)| {
            let name = bisect::test_release_name(&self.name, commit, attempt);
            // Settled only: a failing release passes through Failed on its way to rolling back.
            all.iter()
                .find(|r| r.name() == name)
                .filter(|r| r.is_settled())
                .and_then(|r| r.phase())
        });
        let held = self.held().await?;
        let branch = match self.ctx.repo.clone() {
            Some(repo) => {
                let (name, failed) = (self.release.spec.branch.clone(), self.release.spec.commit.clone());
                // A walk of the graph: off the async workers.
                tokio::task::spawn_blocking(move || repo.branch_against(&name, &failed))
                    .await
                    .unwrap_or(bisect::Branch::AtFailed)
            }
            None => bisect::Branch::AtFailed,
        };
        let event = bisect::observe(&bisection, held, test_phase, branch);
        let (next, effects) = bisect::step(&bisection, event, self.ctx.now(), config.settings());
        if next != bisection && !self.persist_bisection(&next).await? {
            return Ok(Some(AFTER_STALE_VIEW));
        }
        self.perform_bisect(&next, effects, all, config).await?;
        Ok((!next.ended()).then_some(LOOK_EVERY))
    }

    /// A newer release of the environment exists that this release's bisection did not make.
    fn superseded_outside_bisection(&self, all: &[ShipRelease]) -> bool {
        let own = releases::sequence(&self.release);
        all.iter().any(|r| {
            r.spec.environment == self.release.spec.environment
                && releases::sequence(r) > own
                && !made_by(r, &self.name)
        })
    }

    /// A person holds the environment (read from the API server: a hold placed a moment ago
    /// must stop the next test release).
    async fn held(&self) -> Result<bool, Error> {
        let hold = crate::environment::hold_of(&self.ctx.client, &self.namespace, self.environment())
            .await
            .map_err(Error::Releases)?;
        Ok(hold.is_some())
    }

    /// Carries out `effects`, in order, for `bisection` (already persisted).
    async fn perform_bisect(
        &mut self,
        bisection: &Bisection,
        effects: Vec<Effect>,
        all: &[ShipRelease],
        config: &ship_render::config::Bisect,
    ) -> Result<(), Error> {
        for effect in effects {
            match effect {
                Effect::Deploy { commit, attempt } => {
                    let name = bisect::test_release_name(&self.name, &commit, attempt);
                    // One that exists stands (a restart, a second look).
                    if !all.iter().any(|r| r.name() == name) {
                        self.make_release(&name, &commit).await?;
                        info!(
                            test_release = name,
                            attempt, "bisect: testing a commit of the failed range"
                        );
                    }
                }
                Effect::Restore { commit } => {
                    let running = ship_core::environment::last_good(self.environment(), all, None, "")
                        .map(|r| r.spec.commit.as_str());
                    if bisect::restore_needed(&commit, running) {
                        let name = format!("{}-restore", self.name);
                        if !all.iter().any(|r| r.name() == name) {
                            self.make_release(&name, &commit).await?;
                            info!(restore = name, "bisect: back to the newest commit known good");
                        }
                    }
                }
                Effect::Report => self.report_bisection(bisection.clone(), all, config).await?,
            }
        }
        Ok(())
    }

    /// Creates (or finds) the release `name` of `commit`, made by this release's bisection
    /// (reason `Bisect`: a test release, or the restore of the newest commit known good).
    async fn make_release(&self, name: &str, commit: &str) -> Result<(), Error> {
        let new = releases::NewRelease {
            environment: self.environment(),
            branch: &self.release.spec.branch,
            commit,
            reason: Reason::Bisect,
            promotion: None,
            sequence_millis: self.ctx.now().as_millisecond(),
        };
        let mut object = releases::named_release_object(&new, name);
        object
            .labels_mut()
            .insert(keys::BISECTION_OF.to_owned(), self.name.clone());
        releases::create_or_stand(&self.ctx.releases(&self.namespace), &object)
            .await
            .map_err(Error::Releases)?;
        Ok(())
    }

    /// Says how the bisection ended: the culprit's commit, author and failing test; an event;
    /// the metrics; the revert `bisect.revert` asks for. Then records that it was reported.
    async fn report_bisection(
        &mut self,
        mut bisection: Bisection,
        all: &[ShipRelease],
        config: &ship_render::config::Bisect,
    ) -> Result<(), Error> {
        let culprit = bisection.culprit().map(|commit| {
            let (subject, author) = self
                .ctx
                .repo
                .as_ref()
                .and_then(|repo| repo.subject_and_author(commit))
                .unwrap_or_default();
            // The culprit's last failing test release; the newest commit of the range may have
            // failed only in the release that started the bisection.
            let release = bisection
                .trials
                .iter()
                .rev()
                .find(|t| t.commit == commit && !t.passed)
                .map_or_else(
                    || self.name.clone(),
                    |t| bisect::test_release_name(&self.name, commit, t.attempt),
                );
            let failed_test = all
                .iter()
                .find(|r| r.name() == release)
                .or(Some(&self.release))
                .and_then(failed_test);
            Culprit {
                commit: commit.to_owned(),
                short_commit: ship_api::names::short_sha(commit).to_owned(),
                subject,
                author,
                release,
                failed_test,
            }
        });
        let mut message = bisection.describe(culprit.as_ref());
        if let (Some(found), true) = (&culprit, config.revert) {
            message = format!("{message}; {}", self.revert_culprit(&found.commit).await);
        }
        let outcome = bisection.outcome();
        let took = bisection
            .ended_at
            .as_ref()
            .map(|end| end.0.duration_since(bisection.started_at.0))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        bisection.culprit = culprit;
        bisection.message = Some(message.clone());
        bisection.reported_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            self.ctx.now(),
        ));
        if !self.persist_bisection(&bisection).await? {
            // Reported by the next look, from a fresh view.
            return Ok(());
        }
        self.ctx
            .metrics
            .bisected(self.environment(), outcome, bisection.steps(), took);
        let (warning, reason) = bisection.announcement();
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        info!(outcome, steps = bisection.steps(), "bisect: {message}");
        publish(self.ctx, &self.release, type_, reason, &message).await;
        Ok(())
    }

    /// Pushes a revert of `culprit` onto the branch's tip (`bisect.revert`), and says what
    /// came of it.
    async fn revert_culprit(&self, culprit: &str) -> String {
        let note = ship_core::revert::note(
            &self.name,
            self.environment(),
            "bisect named it the first bad commit",
            "ship bisect",
        );
        match self.push_revert(culprit, note).await {
            Ok((_, _, message)) => message,
            Err(err) => format!(
                "revert of commit {} not pushed: {err}",
                ship_api::names::short_sha(culprit)
            ),
        }
    }

    /// Writes `bisection` on the release's status (its own field manager; a compare-and-set
    /// on the resourceVersion it was decided on). `false`: the release changed since; decide
    /// again from a fresh view.
    async fn persist_bisection(&mut self, bisection: &Bisection) -> Result<bool, Error> {
        let patch = serde_json::json!({
            "apiVersion": ShipRelease::api_version(&()),
            "kind": ShipRelease::kind(&()),
            "metadata": {"resourceVersion": self.release.metadata.resource_version},
            "status": {"bisection": bisection},
        });
        let params = PatchParams::apply(ship_api::BISECT_FIELD_MANAGER).force();
        match self
            .ctx
            .releases(&self.namespace)
            .patch_status(&self.name, &params, &Patch::Apply(&patch))
            .await
        {
            Ok(written) => {
                self.release = written;
                Ok(true)
            }
            Err(err) if crate::status::is_stale_view(&err) => Ok(false),
            Err(err) => Err(Error::StatusWrite(err)),
        }
    }
}
