//! The forced promotion: on the schedule in `ship.yaml` (Tuesday 10:00 UTC by default), or when
//! asked, make a `reason: Promotion` ShipRelease that fast-forwards the target environment's
//! branch (`production`) to the newest commit of the source environment (`main`) whose release
//! Succeeded. The release engine then pushes and deploys it like any other release.
//!
//! State lives in the `ShipPromotion` object named after the target environment: the last
//! scheduled time handled (so a missed schedule runs once after a restart, however many weeks
//! were missed), the last run, how far the target lags behind, and a `Stalled` condition while
//! the target branch holds commits the source lacks (nothing is ever forced).
//!
//! Deciding is [`evaluate`] (reads the mirror) and [`Schedule`]; the loop in [`run`] is the
//! thin layer that talks to the API server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use git2::Oid;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use ship_api::conditions::{Observation, READY, STALLED, condition};
use ship_api::promotion::PUSH_READY;
use ship_api::{Behind, Phase, Reason, ShipPromotion, ShipPromotionSpec, ShipPromotionStatus, keys};
use ship_git::{CommitSummary, GitError, Mirror};
use ship_render::differences::Side;
use ship_render::schedule::Schedule;
use ship_render::{ShipConfig, config};
use tracing::{info, warn};

use crate::releases::{self, NewRelease};
use crate::repo::{LoadError, Repo};

/// Commits of the source branch searched for a tested one, newest first.
const SEARCH_DEPTH: usize = 1000;
/// Commits counted when measuring how far the target is behind.
const BEHIND_LIMIT: usize = 1000;
/// Diverging commits named in a condition or event.
const DIVERGING_SHOWN: usize = 10;

/// Condition on a ShipPromotion (as on each ShipEnvironment): the repository can be fetched
/// (reason `Fetched`, or the fetch failure's label such as `FetchFailed`).
pub use ship_api::environment::SOURCE_READY;

/// `requestedBy` of scheduled runs.
pub use ship_core::promotion::SCHEDULE;

pub use crate::clock::{Clock, clock_from, system_clock};

/// What the repository says about a promotion right now.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// What a run now would do.
    pub verdict: Verdict,
    /// The newest tested commit of the source environment, and the release that tested it.
    pub candidate: Option<(Oid, String)>,
    /// The target branch's tip.
    pub target_tip: Option<Oid>,
    /// How far the target branch is behind the source branch.
    pub behind: Behind,
    /// Commits on the target branch that the source branch's tip lacks (newest first, a few),
    /// and whether there are more. Non-empty: a promotion cannot fast-forward.
    pub diverging: (Vec<CommitSummary>, bool),
}

pub use ship_core::promotion::Verdict;

fn short(id: Oid) -> String {
    ship_api::names::short_sha(&id.to_string()).to_owned()
}

/// Decides a promotion from the mirror: `tested` maps each source commit whose release
/// Succeeded to that release's name. The candidate is the newest of them on the source
/// branch; a red commit newer than it is skipped, never promoted. `missing` names the branches
/// the remote lacks at the last fetch: a promotion from or into one of them does not run.
pub fn evaluate(
    mirror: &Mirror,
    source_branch: &str,
    target_branch: &str,
    tested: &HashMap<String, String>,
    missing: &[String],
) -> Result<Evaluation, GitError> {
    let source_tip = mirror.tip(source_branch);
    let target_tip = mirror.tip(target_branch);
    let mut candidate = None;
    if let Some(tip) = source_tip {
        let (history, _) = mirror.log_between(None, tip, SEARCH_DEPTH)?;
        candidate = history.iter().find_map(|c| {
            tested
                .get(&c.id.to_string())
                .map(|release| (c.id, release.clone()))
        });
    }
    let mut behind = Behind {
        source_commit: source_tip.map(|c| c.to_string()).unwrap_or_default(),
        target_commit: target_tip.map(|c| c.to_string()).unwrap_or_default(),
        ..Behind::default()
    };
    let mut diverging = (Vec::new(), false);
    if let Some(source) = source_tip {
        let (unreleased, truncated) = mirror.log_between(target_tip, source, BEHIND_LIMIT)?;
        behind.commits = u32::try_from(unreleased.len()).unwrap_or(u32::MAX);
        behind.truncated = truncated;
        if let Some(oldest) = unreleased.last() {
            behind.oldest_commit = Some(short(oldest.id));
            behind.oldest_commit_time = Timestamp::from_second(oldest.time).ok().map(Time);
        }
        if let Some(target) = target_tip {
            diverging = mirror.log_between(Some(source), target, DIVERGING_SHOWN)?;
        }
    }
    let gone = |branch: &str| missing.iter().any(|m| m == branch);
    let verdict = match (candidate.as_ref(), target_tip) {
        _ if gone(source_branch) || gone(target_branch) => Verdict::BranchMissing,
        (None, _) => Verdict::NothingTested,
        // Never fetched: a promotion would create the branch, and that is not its job.
        (Some(_), None) => Verdict::BranchMissing,
        (Some(&(commit, _)), Some(target)) => {
            if mirror.is_ancestor(commit, target)? {
                Verdict::UpToDate
            } else if mirror.is_ancestor(target, commit)? {
                Verdict::Promote
            } else {
                // Name what blocks this very candidate (the tip's divergence may differ).
                diverging = mirror.log_between(Some(commit), target, DIVERGING_SHOWN)?;
                Verdict::Diverged
            }
        }
    };
    Ok(Evaluation {
        verdict,
        candidate,
        target_tip,
        behind,
        diverging,
    })
}

/// Where and how the promotion loop works.
#[derive(Clone)]
pub struct Promoter {
    /// Client of the cluster holding the ShipReleases and the ShipPromotion.
    pub client: Client,
    /// Their namespace.
    pub namespace: String,
    /// The repository.
    pub repo: Repo,
    /// The branch whose tip's `ship.yaml` holds the promotion settings (the first followed).
    pub config_branch: String,
    /// The shared event recorder.
    pub recorder: crate::events::EventRecorder,
    /// Now, for the schedule (a test may start it on a chosen Tuesday).
    pub clock: Clock,
    /// The engine's real clock: the sequence of the releases a promotion makes, which must
    /// order with the releases the tips make, whatever the schedule's clock says.
    pub release_clock: Clock,
    /// Longest sleep between two looks (the next scheduled time wakes it sooner).
    pub interval: Duration,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The git source's health, reported as the `SourceReady` condition.
    pub source: Option<tokio::sync::watch::Receiver<ship_git::watch::SourceStatus>>,
    /// The last check that the target branch takes pushes (`PushReady`), and the push
    /// credentials it was made with.
    pub push_check: Arc<std::sync::Mutex<PushState>>,
}

/// What the promotion remembers of its push checks.
#[derive(Debug, Default)]
pub struct PushState {
    /// The last answer.
    pub last: Option<PushCheck>,
    /// The push credentials as the last check saw them: a new Secret value asks again at once,
    /// so a fixed (or revoked) credential shows within a look, not after the interval.
    pub credentials: Option<tokio::sync::watch::Receiver<ship_git::Credentials>>,
}

/// How often the promotion asks the remote again whether it takes pushes: a credential fixed
/// (or revoked) shows within this, and the remote is not asked at every look.
pub const PUSH_CHECK_INTERVAL: Duration = Duration::from_secs(600);

/// One answer to "could the promotion push its target branch now?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCheck {
    /// When it was asked.
    pub at: Timestamp,
    /// The target branch it was asked for.
    pub branch: String,
    /// `None` when the remote takes pushes; else the condition's reason and message.
    pub refused: Option<(&'static str, String)>,
}

/// The `PushReady` condition's reason and message for a check's outcome (pure).
pub fn push_ready(check: &PushCheck) -> (bool, &'static str, String) {
    match &check.refused {
        None => (
            true,
            "PushAccepted",
            format!("the remote takes pushes to {}", check.branch),
        ),
        Some((reason, message)) => (false, reason, message.clone()),
    }
}

/// Whether a check made at `last` (for `branch`) is still good at `now`.
pub fn push_check_fresh(last: Option<&PushCheck>, branch: &str, now: Timestamp) -> bool {
    last.is_some_and(|check| {
        check.branch == branch
            && now
                .duration_since(check.at)
                .unsigned_abs()
                .lt(&PUSH_CHECK_INTERVAL)
    })
}

impl std::fmt::Debug for Promoter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promoter")
            .field("namespace", &self.namespace)
            .field("config_branch", &self.config_branch)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Why a look at the promotion failed (it is retried at the next one).
#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    /// Reading or writing ShipPromotions or ShipReleases failed.
    #[error("cannot read or write promotion objects (check the controller's RBAC): {0}")]
    Api(#[from] kube::Error),
    /// The repository could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A status write lost its compare-and-set: the ShipPromotion changed (a person asked for
    /// a promotion, another writer) after the view the status was decided on. The look is
    /// taken again at once.
    #[error("ShipPromotion {0} changed since it was read; looking again")]
    StaleView(String),
}

impl PromotionError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            PromotionError::Api(_) => "PromotionApi",
            PromotionError::Load(e) => e.label(),
            PromotionError::StaleView(_) => "StaleView",
        }
    }
}

/// The settings a look works with, from `ship.yaml`.
struct Settings {
    /// The environments and their branches.
    route: ship_core::promotion::Route,
    schedule: Schedule,
    refuse_undeclared: bool,
}

fn settings_of(config: &ShipConfig) -> Option<Result<Settings, String>> {
    let p = &config.promotion;
    if !p.enabled {
        return None;
    }
    let branch = |env: &str| config.environments.get(env).map(|e| e.branch(env).to_owned());
    let (Some(from_branch), Some(to_branch)) = (branch(&p.from), branch(&p.to)) else {
        return Some(Err(
            "promotion.from or promotion.to names an unknown environment".into()
        ));
    };
    Some(
        config
            .promotion_schedule()
            .map(|schedule| Settings {
                route: ship_core::promotion::Route {
                    from: p.from.clone(),
                    to: p.to.clone(),
                    from_branch,
                    to_branch,
                },
                schedule,
                refuse_undeclared: p.refuse_undeclared_differences,
            })
            .map_err(|e| e.to_string()),
    )
}

fn annotation<'a>(object: &'a ShipPromotion, key: &str) -> Option<&'a str> {
    object.annotations().get(key).map(String::as_str)
}

/// Conditions for a promotion: `Ready` unless a person must act, `Stalled` when one must.
fn conditions(
    stalled: Option<(&str, &str)>,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let (reason, message) = stalled.unwrap_or(("Ready", "promotion can fast-forward"));
    let observation = Observation {
        phase: Phase::Succeeded,
        reason,
        message,
        generation,
    };
    vec![
        condition(READY, stalled.is_none(), &observation, previous, now),
        condition(STALLED, stalled.is_some(), &observation, previous, now),
    ]
}

impl Promoter {
    fn promotions(&self) -> Api<ShipPromotion> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn publish(&self, object: &ShipPromotion, type_: EventType, reason: &str, note: &str) {
        self.recorder
            .announce(&object.object_ref(&()), type_, reason, "Promote", note)
            .await;
    }

    /// The promotion's settings from `ship.yaml` at the config branch's tip; `None` when
    /// promotion is off or the branch is not fetched yet.
    async fn settings(&self) -> Result<Option<Result<Settings, String>>, LoadError> {
        let branch = self.config_branch.clone();
        self.repo
            .read(move |mirror| {
                let Some(tip) = mirror.tip(&branch) else {
                    return Ok(None);
                };
                match crate::repo::load_config(mirror, tip) {
                    Ok(config) => Ok(settings_of(&config)),
                    Err(err) => Ok(Some(Err(format!(
                        "{} at {branch}'s tip: {err}",
                        config::FILE_NAME
                    )))),
                }
            })
            .await
    }

    /// The ShipPromotion for `settings`, created on first sight. A new one counts the
    /// schedule from now: times before Ship was set up are not "missed".
    async fn object(&self, settings: &Settings, now: Timestamp) -> Result<ShipPromotion, PromotionError> {
        let api = self.promotions();
        if let Some(found) = api.get_opt(&settings.route.to).await? {
            return Ok(found);
        }
        let object = ShipPromotion {
            metadata: ObjectMeta {
                name: Some(settings.route.to.clone()),
                ..ObjectMeta::default()
            },
            spec: ShipPromotionSpec {
                from: settings.route.from.clone(),
                to: settings.route.to.clone(),
            },
            status: None,
        };
        let created = match api.create(&PostParams::default(), &object).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 409 => api.get(&settings.route.to).await?,
            Err(err) => return Err(err.into()),
        };
        let status = ShipPromotionStatus {
            last_schedule_time: Some(Time(now)),
            ..ShipPromotionStatus::default()
        };
        self.write_status(&created, &status).await?;
        info!(
            promotion = settings.route.to,
            "promotion created; its schedule counts from now"
        );
        Ok(api.get(&settings.route.to).await?)
    }

    async fn write_status(
        &self,
        object: &ShipPromotion,
        status: &ShipPromotionStatus,
    ) -> Result<(), PromotionError> {
        // Conditions keep their times when unchanged, so a look that finds nothing new
        // writes nothing.
        if object.status.as_ref() == Some(status) {
            return Ok(());
        }
        let decided_on = object.metadata.resource_version.as_deref();
        match crate::status::apply_status(&self.promotions(), &object.name_any(), status, decided_on).await {
            Ok(_) => Ok(()),
            Err(err) if crate::status::is_stale_view(&err) => {
                Err(PromotionError::StaleView(object.name_any()))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Source commits whose release Succeeded, with the release's name.
    async fn tested(&self, from: &str) -> Result<HashMap<String, String>, PromotionError> {
        let params = ListParams::default().labels(&format!("{}={from}", keys::ENVIRONMENT));
        let listed = crate::releases::list_readable(&self.client, &self.namespace, &params).await?;
        Ok(listed
            .into_iter()
            .filter(|r| {
                r.spec.environment == from
                    && r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)
            })
            .map(|r| (r.spec.commit.clone(), r.name_any()))
            .collect())
    }

    /// Why `commit` may not be promoted under `promotion.refuseUndeclaredDifferences`: the
    /// environments rendered at it differ in ways its ship.yaml does not declare (the rule of
    /// `kubectl ship diff --undeclared`), or one of them does not render. `None`: it may.
    async fn undeclared_differences(&self, settings: &Settings, commit: &str) -> Option<String> {
        let repo = self.repo.clone();
        let short = ship_api::names::short_sha(commit).to_owned();
        let (from, to, commit, at) = (
            settings.route.from.clone(),
            settings.route.to.clone(),
            commit.to_owned(),
            short.clone(),
        );
        let compared = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
            let side = |env: &str| {
                repo.render(&commit, env)
                    .map(|rendered| Side::of(rendered, env))
                    .map_err(|e| format!("{env} does not render at {at}: {e}"))
            };
            let (a, b) = (side(&from)?, side(&to)?);
            Ok(ship_render::differences::undeclared(&a.compare(&b), &a.declared)
                .iter()
                .map(|d| d.describe())
                .collect())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the comparison failed: {e}")));
        let (from, to) = (&settings.route.from, &settings.route.to);
        match compared {
            Ok(undeclared) if undeclared.is_empty() => None,
            Ok(undeclared) => {
                const SHOWN: usize = 5;
                let mut listed = undeclared
                    .iter()
                    .take(SHOWN)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ");
                if undeclared.len() > SHOWN {
                    listed.push_str(&format!("; and {} more", undeclared.len() - SHOWN));
                }
                Some(format!(
                    "not promoting {from} {short} into {to}: {} undeclared difference(s) between {from} and {to} \
                     ({listed}); nothing was pushed: eliminate them, or declare them in ship.yaml's `differences` \
                     (kubectl ship diff {from} {to} --undeclared)",
                    undeclared.len()
                ))
            }
            Err(problem) => Some(format!(
                "not promoting {from} {short} into {to}: the environments cannot be compared ({problem}); nothing was pushed"
            )),
        }
    }

    /// One look: gather what the repository, the schedule and the object say, let the pure
    /// machine ([`ship_core::promotion::step`]) decide the run, carry out its effects, and
    /// refresh the status. Returns when to look again.
    async fn look(&self) -> Result<Duration, PromotionError> {
        let now = (self.clock)();
        let Some(settings) = self.settings().await? else {
            return Ok(self.interval);
        };
        let settings = match settings {
            Ok(settings) => settings,
            Err(problem) => {
                warn!(problem, "promotion settings unusable");
                return Ok(self.interval);
            }
        };
        let object = self.object(&settings, now).await?;
        let previous = object.status.clone().unwrap_or_default();
        let tested = self.tested(&settings.route.from).await?;
        let (from_branch, to_branch) = (
            settings.route.from_branch.clone(),
            settings.route.to_branch.clone(),
        );
        let missing = self
            .source
            .as_ref()
            .map(|s| s.borrow().missing_branches.clone())
            .unwrap_or_default();
        let evaluation = self
            .repo
            .read(move |mirror| Ok(evaluate(mirror, &from_branch, &to_branch, &tested, &missing)?))
            .await?;
        let last_handled = previous.last_schedule_time.as_ref().map_or(now, |t| t.0);
        let look = ship_core::promotion::Look {
            route: settings.route.clone(),
            verdict: evaluation.verdict,
            candidate: evaluation
                .candidate
                .as_ref()
                .map(|(commit, release)| (commit.to_string(), release.clone())),
            target_tip: evaluation.target_tip.map(|c| c.to_string()),
            behind: evaluation.behind.clone(),
            diverging: (
                evaluation.diverging.0.iter().map(commit_of).collect(),
                evaluation.diverging.1,
            ),
            due: settings.schedule.latest_due(last_handled, now),
            request: annotation(&object, keys::REQUESTED_AT).map(|at| ship_core::promotion::Request {
                at: at.to_owned(),
                by: annotation(&object, keys::REQUESTED_BY).map(str::to_owned),
                force: annotation(&object, keys::OVERRIDE_HOLD) == Some("true"),
            }),
            refuse_undeclared: settings.refuse_undeclared,
        };
        let mut machine = ship_core::promotion::Promotion {
            record: previous.clone(),
            stage: ship_core::promotion::Stage::Idle,
        };
        let mut event = Some(ship_core::promotion::Event::Looked(Box::new(look.clone())));
        while let Some(happened) = event.take() {
            let (next, effects) = ship_core::promotion::step(machine, happened, now);
            machine = next;
            for effect in effects {
                if let Some(answer) = self.perform(&object, &settings, effect).await? {
                    event = Some(answer);
                }
            }
        }
        let mut status = machine.record;

        let stall = ship_core::promotion::stall(&look, &status);
        let time = Time(now);
        status.conditions = conditions(
            stall.as_ref().map(|(reason, m)| (*reason, m.as_str())),
            object.metadata.generation,
            &previous.conditions,
            &time,
        );
        if let Some(source) = &self.source {
            // Whether the repository can be fetched: a promotion (and every release) waits on it.
            let source = source.borrow().clone();
            // A fixed message while all is well, so that a look after each fetch writes nothing.
            let message = if source.ready {
                "the repository is fetched".to_owned()
            } else {
                source.message.clone()
            };
            let observation = Observation {
                phase: Phase::Succeeded,
                reason: source.reason,
                message: &message,
                generation: object.metadata.generation,
            };
            status.conditions.push(condition(
                SOURCE_READY,
                source.ready,
                &observation,
                &previous.conditions,
                &time,
            ));
        }
        // Whether the target branch takes Ship's pushes: known now, not when the run fails.
        let check = self.push_checked(&object, &settings, now).await;
        let (ready, reason, message) = push_ready(&check);
        status.conditions.push(condition(
            PUSH_READY,
            ready,
            &Observation {
                phase: Phase::Succeeded,
                reason,
                message: &message,
                generation: object.metadata.generation,
            },
            &previous.conditions,
            &time,
        ));
        status.schedule = Some(settings.schedule_text());
        status.time_zone = Some(settings.zone_text());
        let next = settings.schedule.next_after(now);
        status.next_schedule_time = next.map(Time);
        status.behind = Some(evaluation.behind.clone());
        let oldest = evaluation
            .behind
            .oldest_commit_time
            .as_ref()
            .map(|t| t.0.as_millisecond() as f64 / 1000.0);
        self.metrics.behind(
            &settings.route.from,
            &settings.route.to,
            evaluation.behind.commits,
            oldest,
        );
        self.write_status(&object, &status).await?;

        let until_next = next
            .and_then(|n| Duration::try_from(n.duration_since(now)).ok())
            .unwrap_or(self.interval);
        Ok(until_next.min(self.interval))
    }

    /// Carries out one of the machine's effects; the answer, for those that have one.
    async fn perform(
        &self,
        object: &ShipPromotion,
        settings: &Settings,
        effect: ship_core::promotion::Effect,
    ) -> Result<Option<ship_core::promotion::Event>, PromotionError> {
        use ship_core::promotion::{Effect, Event};
        Ok(match effect {
            Effect::ReadHold { environment } => Some(Event::HoldRead(
                crate::environment::hold_of(&self.client, &self.namespace, &environment)
                    .await?
                    .map(|hold| hold.describe()),
            )),
            Effect::CompareEnvironments { commit } => Some(Event::Compared(
                self.undeclared_differences(settings, &commit).await,
            )),
            Effect::MakeRelease(order) => {
                let new = NewRelease {
                    environment: &order.environment,
                    branch: &order.branch,
                    commit: &order.commit,
                    reason: Reason::Promotion,
                    promotion: Some(order.origin.clone()),
                    sequence_millis: (self.release_clock)().as_millisecond(),
                };
                let (name, created) = releases::create(&self.client, &self.namespace, &new).await?;
                // The line about the release names it, its environment and commit.
                info!(
                    promotion = settings.route.to,
                    environment = order.environment,
                    release = name,
                    commit = order.commit,
                    requested_by = order.origin.requested_by,
                    created,
                    "promotion release made"
                );
                Some(Event::ReleaseMade { name, created })
            }
            Effect::Publish {
                warning,
                reason,
                message,
            } => {
                let type_ = if warning {
                    warn!(promotion = settings.route.to, "{message}");
                    EventType::Warning
                } else {
                    info!(
                        promotion = settings.route.to,
                        environment = settings.route.to,
                        "{message}"
                    );
                    EventType::Normal
                };
                self.publish(object, type_, reason, &message).await;
                None
            }
            Effect::CountRun(outcome) => {
                self.metrics.promotion_run(outcome.as_str());
                None
            }
        })
    }
}

/// A commit as the machine names it in messages.
fn commit_of(commit: &CommitSummary) -> ship_core::promotion::Commit {
    ship_core::promotion::Commit {
        short: short(commit.id),
        subject: commit.subject.clone(),
    }
}

impl Promoter {
    /// The last push check while it is fresh, else a new one (a Warning event when the answer
    /// turns into a refusal).
    async fn push_checked(&self, object: &ShipPromotion, settings: &Settings, now: Timestamp) -> PushCheck {
        let branch = &settings.route.to_branch;
        let (last, credentials_changed) = match self.push_check.lock() {
            Ok(mut state) => {
                let changed = match (&mut state.credentials, self.repo.push.as_ref()) {
                    (Some(seen), _) => {
                        let changed = seen.has_changed().unwrap_or(false);
                        if changed {
                            seen.mark_unchanged();
                        }
                        changed
                    }
                    (slot @ None, Some(push)) => {
                        let mut seen = push.credentials.clone();
                        seen.mark_unchanged();
                        *slot = Some(seen);
                        false
                    }
                    (None, None) => false,
                };
                (state.last.clone(), changed)
            }
            Err(_) => (None, false),
        };
        if let Some(last) = last
            .as_ref()
            .filter(|last| !credentials_changed && push_check_fresh(Some(last), branch, now))
        {
            return last.clone();
        }
        let refused = match self.repo.push_access(branch).await {
            Ok(_) => None,
            Err(LoadError::NoPushAccess) => Some((
                "NoPushCredentials",
                format!(
                    "the promotion into {} cannot push {branch}: shipd has no push credentials; set --git-push-secret \
                     (chart: git.pushCredentialsSecret) to a Secret that may push, or remove the promotion from ship.yaml",
                    settings.route.to
                ),
            )),
            Err(err) => Some((
                "PushRefused",
                format!(
                    "the promotion into {} cannot push {branch}: {err}; give Ship credentials that may push \
                     (--git-push-secret, chart: git.pushCredentialsSecret), or remove the promotion from ship.yaml",
                    settings.route.to
                ),
            )),
        };
        let check = PushCheck {
            at: now,
            branch: branch.clone(),
            refused,
        };
        let was_refused = last.as_ref().is_some_and(|l| l.refused.is_some());
        if let Some((_, message)) = &check.refused
            && !was_refused
        {
            warn!(promotion = settings.route.to, "{message}");
            self.publish(object, EventType::Warning, "PromotionCannotPush", message)
                .await;
        }
        if let Ok(mut state) = self.push_check.lock() {
            state.last = Some(check.clone());
        }
        check
    }
}

impl Settings {
    fn schedule_text(&self) -> String {
        self.schedule.expression().to_owned()
    }
    fn zone_text(&self) -> String {
        self.schedule.zone_name()
    }
}

/// Runs the promotion loop until `shutdown` resolves: a look every `interval`, at each scheduled
/// time, whenever a ShipPromotion changes (a `kubectl ship promote` request), and when a hold
/// is placed or lifted (`holds`: a held scheduled run is still due, and runs on resume).
///
/// `promotions` is the shared ShipPromotion watch ([`crate::watches`]): a change wakes a look.
pub async fn run(
    promoter: Promoter,
    promotions: crate::watches::Shared<ShipPromotion>,
    mut holds: tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut changes = promotions.changes();
    tokio::pin!(shutdown);
    let mut failures = 0u32;
    loop {
        let wait = match promoter.look().await {
            Ok(wait) => {
                failures = 0;
                wait
            }
            Err(err @ PromotionError::StaleView(_)) => {
                // Not a failure: the look reads the object again and decides again.
                info!(error = %err, "promotion status decided on a stale view");
                Duration::ZERO
            }
            Err(err) => {
                failures += 1;
                warn!(error = %err, kind = err.label(), "promotion look failed; retrying");
                ship_core::backoff::delay(failures, Duration::from_secs(1), promoter.interval)
            }
        };
        // Wake a little after the scheduled time, never before it.
        let wait = wait + Duration::from_millis(50);
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {},
            Ok(()) = changes.changed() => {},
            Ok(()) = holds.changed() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("a valid time")
    }

    #[test]
    fn a_push_check_is_asked_again_after_its_interval_or_for_another_branch() {
        let check = PushCheck {
            at: at(0),
            branch: "production".into(),
            refused: None,
        };
        assert!(!push_check_fresh(None, "production", at(0)), "never asked: ask");
        assert!(push_check_fresh(Some(&check), "production", at(599)));
        assert!(!push_check_fresh(Some(&check), "production", at(600)));
        assert!(
            !push_check_fresh(Some(&check), "release", at(1)),
            "another target branch"
        );
        // A clock that went back (a test clock, a corrected host) does not keep it forever.
        assert!(!push_check_fresh(Some(&check), "production", at(-601)));
    }

    #[test]
    fn push_ready_is_true_only_when_the_remote_took_the_connection() {
        let accepted = PushCheck {
            at: at(0),
            branch: "production".into(),
            refused: None,
        };
        let (ready, reason, message) = push_ready(&accepted);
        assert!(ready);
        assert_eq!(reason, "PushAccepted");
        assert!(message.contains("production"), "{message}");
        let refused = PushCheck {
            refused: Some(("PushRefused", "read-only key".into())),
            ..accepted
        };
        assert_eq!(
            push_ready(&refused),
            (false, "PushRefused", "read-only key".to_owned())
        );
    }
}
