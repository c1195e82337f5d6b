//! The release state machine, as one pure function: [`step`] takes what is known of a release
//! ([`Snapshot`]), what just happened ([`Event`]) and the time, and returns the [`Transition`]:
//! the status to persist, what to record in it, and the [`Action`]s that follow. It does no
//! I/O (no kube, no tokio: this crate cannot reach them): shipd's executor observes the cluster
//! and the repository, turns what it saw into an `Event`, persists the transition
//! ([`status_after`], a compare-and-set on the view it decided from), and then carries out its
//! actions, so every transition is written before the work it announces.
//!
//! ```text
//! (new) ─Observed─▶ Pending ─Prepared─▶ Applying ─Applied─▶ Progressing ─Healthy─▶ Testing ─all passed─▶ Succeeded
//!                    │ Refused (nothing applied)              │ HealthTimedOut/Unhealthy  │ a test failed
//!                    ▼                                        ▼                           ▼
//!                  Failed (CommitRefused)                   Failed (HealthTimeout | Unhealthy | TestsFailed | TestTimeout)
//!                                                             │ RollbackTargetChosen       │ NoGoodRelease
//!                                                             ▼                            ▼
//!                                                        RollingBack ─RolledBack─▶ RolledBack   Failed (NoGoodRelease)
//!                                                             └ target or its commit gone, unhealthy: Failed (RollbackFailed)
//! Pending ─ClusterUnavailable─▶ Pending (RemoteCluster)     Pending ─PushBlocked─▶ Pending (AwaitingPush)
//! any in-progress phase, or Failed about to roll back ─a newer release─▶ Superseded (Failed, reason Superseded)
//! any phase ─SpecInvalid─▶ Failed (InvalidSpec)
//! ```
//!
//! A crash anywhere resumes: on restart the executor feeds [`Event::Observed`], and every
//! phase answers it with its own work again (each phase's work is idempotent).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{Observation, kstatus_conditions};
use crate::reason::StatusReason;
use crate::status::{
    InventoryEntry, Phase, PruneRefusal, ShipReleaseStatus, SuspectCommit, TestResult, TestVerdict,
    Transition as PhaseEntered,
};

use crate::environment::Standing;
use crate::verification::{self, Cadence};

pub mod measures;

/// What the machine knows about a release when it decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The persisted phase; `None` before the controller first wrote one.
    pub phase: Option<Phase>,
    /// The persisted reason (read back with [`StatusReason::read`]).
    pub reason: Option<StatusReason>,
    /// The persisted message (the failure, when a rollback is next).
    pub message: String,
    /// Short SHA of the release's commit.
    pub short_commit: String,
    /// The environment.
    pub environment: String,
    /// For RollingBack and RolledBack: the release rolled back to.
    pub rolled_back_to: Option<String>,
    /// The environment's newest release, when it is newer than this one.
    pub superseded_by: Option<String>,
    /// When the deployed objects were last applied: the settling, or the last drift check.
    pub applied_at: Option<Timestamp>,
    /// How often the deployed release is re-applied to correct drift.
    pub drift_interval: Duration,
    /// The continuous verification tests of the release's commit (empty when there are none,
    /// or they are not known yet).
    pub verification: Vec<Cadence>,
    /// When each of them last ran.
    pub verified_at: BTreeMap<String, Timestamp>,
    /// When the release became the deployed one (its Succeeded transition).
    pub deployed_since: Option<Timestamp>,
    /// For a settled release: whether its objects are what the environment runs, from its
    /// environment's releases ([`crate::environment::standing`]). `None`: by `superseded_by`
    /// alone (the newest release runs).
    pub standing: Option<Standing>,
    /// A person holds the environment with `--freeze`: drift correction pauses.
    pub frozen: bool,
    /// The status says drift correction is paused (a frozen hold was seen).
    pub drift_paused: bool,
    /// A watch of the environment's objects saw another writer change or delete one since
    /// the last drift check: check now, whatever the interval says.
    pub drift_seen: bool,
}

/// How often a release whose drift correction a frozen hold pauses looks for the hold's end:
/// lifting the hold re-checks everything within this.
pub const FROZEN_LOOK: Duration = Duration::from_secs(10);

/// What the machine reads of a release object: its persisted status and what names it. The
/// executor fills it from the `ShipRelease` (the custom resource lives in `ship-api`).
#[derive(Debug, Clone, Copy)]
pub struct Persisted<'a> {
    /// The status as read (`None` before the controller first wrote one).
    pub status: Option<&'a ShipReleaseStatus>,
    /// `metadata.generation`, recorded as `observedGeneration`.
    pub generation: Option<i64>,
    /// Short SHA of the release's commit.
    pub short_commit: &'a str,
    /// The environment.
    pub environment: &'a str,
}

/// When `status` last entered `phase` (its newest transition to it).
pub fn transition_time(status: Option<&ShipReleaseStatus>, phase: Phase) -> Option<Timestamp> {
    status?
        .transitions
        .iter()
        .rev()
        .find(|t| t.phase == phase)
        .map(|t| t.at.0)
}

impl Snapshot {
    /// What the machine is told of `release`, from its persisted status: `superseded_by` is
    /// the environment's newest release when it is newer than this one, `cadences` the
    /// commit's continuous verification tests (when known).
    pub fn of(
        release: Persisted<'_>,
        superseded_by: Option<String>,
        drift_interval: Duration,
        cadences: Vec<Cadence>,
    ) -> Snapshot {
        let status = release.status;
        let phase = status.and_then(|s| s.phase);
        let settled_at = phase.and_then(|p| transition_time(status, p));
        let checked_at = status.and_then(|s| s.drift_checked_at.as_ref()).map(|t| t.0);
        Snapshot {
            phase,
            reason: phase.and(StatusReason::read(
                status.map_or("", ShipReleaseStatus::ready_reason),
            )),
            message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
            short_commit: release.short_commit.to_owned(),
            environment: release.environment.to_owned(),
            rolled_back_to: status.and_then(|s| s.rolled_back_to.clone()),
            superseded_by,
            applied_at: settled_at.max(checked_at),
            drift_interval,
            verification: cadences,
            verified_at: verification::last_runs(status.and_then(|s| s.verification.as_ref())),
            deployed_since: transition_time(status, Phase::Succeeded),
            standing: None,
            frozen: false,
            drift_paused: status.is_some_and(|s| s.drift_paused),
            drift_seen: false,
        }
    }

    /// Its objects are what the environment runs: drift is corrected and verification runs
    /// for it.
    pub fn runs_now(&self) -> bool {
        match self.standing {
            Some(standing) => standing == Standing::RunsNow,
            None => self.superseded_by.is_none(),
        }
    }

    /// Failed after changing the cluster: the rollback is next.
    pub fn awaits_rollback(&self) -> bool {
        self.phase
            .is_some_and(|p| crate::reason::awaits_rollback_for(p, self.reason))
    }

    /// Still the controller's work: in progress, or failed with its rollback next.
    pub fn unfinished(&self) -> bool {
        self.phase
            .is_some_and(|p| !crate::reason::settled(p, self.reason))
    }

    /// A newer release appeared while this one is unfinished: the machine settles it (on any
    /// event) before any more work is done for it.
    pub fn settles_before_work(&self) -> bool {
        self.superseded_by.is_some() && self.unfinished()
    }

    /// Which release's objects run when this one is the environment's deployed release: its
    /// own, or, once rolled back, those of the release it rolled back to.
    pub fn deployed_objects(&self) -> DeployedObjects {
        match (self.phase, &self.rolled_back_to) {
            (Some(Phase::RolledBack), good) => {
                DeployedObjects::RolledBackTo(good.clone().unwrap_or_default())
            }
            _ => DeployedObjects::Own,
        }
    }
}

/// A release in `phase` needs its commit's continuous verification tests known: it is deployed
/// (Succeeded), or about to be (its tests are running).
pub fn reads_verification(phase: Option<Phase>) -> bool {
    matches!(phase, Some(Phase::Testing | Phase::Succeeded))
}

/// Whose objects a deployed release runs (see [`Snapshot::deployed_objects`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployedObjects {
    /// The release's own commit.
    Own,
    /// The commit of the named release it rolled back to (empty when the status lost the
    /// name: no release has it, and there is nothing to re-apply).
    RolledBackTo(String),
}

/// The event a run of post-deployment tests ends with: each result, with whether it failed
/// because the test deadline passed. Every test finished: [`Event::TestsRan`]; some were cut
/// off: [`Event::TestDeadlinePassed`], naming them.
pub fn tests_finished(finished: Vec<(TestResult, bool)>) -> Event {
    let unfinished: Vec<String> = finished
        .iter()
        .filter(|(_, late)| *late)
        .map(|(result, _)| result.name.clone())
        .collect();
    let results = finished.into_iter().map(|(result, _)| result).collect();
    if unfinished.is_empty() {
        Event::TestsRan(results)
    } else {
        Event::TestDeadlinePassed { results, unfinished }
    }
}

/// What to decide on again after a status write was refused as stale (the release changed
/// since the view `event` was decided on, in phase `decided_in`; it is now in `now_in`). An
/// outcome about the phase the release is still in stands; one about a phase it has left is
/// dropped, and the new phase is observed (it does its own work). An invalid spec is invalid
/// in any phase.
pub fn after_stale_view(event: Event, decided_in: Option<Phase>, now_in: Option<Phase>) -> Event {
    if now_in == decided_in || matches!(event, Event::SpecInvalid(_)) {
        event
    } else {
        Event::Observed
    }
}

/// What Pending's work found: the commit rendered, validated and passed the dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every object the release will apply.
    pub inventory: Vec<InventoryEntry>,
    /// The commits since the last good release, newest first.
    pub suspects: Vec<SuspectCommit>,
    /// More commits came than `suspects` lists.
    pub suspects_truncated: bool,
    /// First line of the commit's message.
    pub subject: Option<String>,
}

/// What happened, as the executor observed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The release was read: a reconcile started (first sight, a change, or a restart).
    Observed,
    /// The spec breaks a rule the schema cannot express.
    SpecInvalid(String),
    /// Pending: the commit rendered and passed the dry run.
    Prepared(Plan),
    /// Pending: the commit cannot be deployed (`cause` is the error's fixed label).
    Refused {
        /// Fixed label of the cause.
        cause: &'static str,
        /// What is wrong, for a person.
        problem: String,
    },
    /// Pending: the environment's remote cluster cannot be reached.
    ClusterUnavailable {
        /// Fixed label of the cause.
        cause: &'static str,
        /// What is wrong.
        problem: String,
        /// How long the cause asks to wait before trying again.
        retry_after: Duration,
    },
    /// Pending: a promotion cannot fast-forward its branch yet.
    PushBlocked {
        /// Fixed label of the cause.
        cause: &'static str,
        /// The branch.
        branch: String,
        /// What is wrong.
        problem: String,
        /// How long the cause asks to wait before trying again.
        retry_after: Duration,
    },
    /// Applying: every object applied, and what the commit no longer declares pruned.
    Applied {
        /// The objects applied.
        inventory: Vec<InventoryEntry>,
        /// Objects kept although no longer declared.
        prune_refused: Vec<PruneRefusal>,
        /// Fields left to other writers (see [`ShipReleaseStatus::fields_left`]).
        fields_left: Vec<String>,
    },
    /// Progressing: every object is healthy; these tests come next.
    Healthy {
        /// The names of the environment's tests.
        tests: Vec<String>,
    },
    /// Progressing: the health timeout passed (the last thing seen unhealthy).
    HealthTimedOut(String),
    /// Progressing: the rollout failed.
    Unhealthy(String),
    /// Testing: every test ran.
    TestsRan(Vec<TestResult>),
    /// Testing: the test deadline passed; `unfinished` were still running (and are failed in
    /// `results`).
    TestDeadlinePassed {
        /// Every test's result.
        results: Vec<TestResult>,
        /// The tests still running at the deadline.
        unfinished: Vec<String>,
    },
    /// Failed: the last good release to go back to.
    RollbackTargetChosen {
        /// Its name.
        release: String,
        /// Its commit, short.
        short_commit: String,
    },
    /// Failed: there is no earlier good release.
    NoGoodRelease,
    /// RollingBack: the release to roll back to no longer exists.
    RollbackTargetGone,
    /// RollingBack: the good release's commit is no longer in the repository.
    RollbackCommitGone {
        /// The good release's commit, short.
        good_commit: String,
    },
    /// RollingBack: the good commit is applied again and healthy.
    RolledBack {
        /// The good release's commit, short.
        good_commit: String,
        /// Objects of the failed commit kept although the good one does not declare them.
        prune_refused: Vec<PruneRefusal>,
    },
    /// RollingBack: the good commit did not become healthy.
    RollbackUnhealthy {
        /// What was wrong.
        problem: String,
        /// As for [`Event::RolledBack`].
        prune_refused: Vec<PruneRefusal>,
    },
    /// Settled and deployed: the objects were re-applied; `drifted` had changed.
    DriftCorrected {
        /// Objects found changed or deleted and put back.
        drifted: u64,
        /// The commit applied, short.
        commit: String,
    },
    /// Succeeded and deployed: the continuous verification tests that were due ran.
    Verified(Vec<TestResult>),
    /// A wait ended without an outcome (it will be taken up again).
    Interrupted,
}

/// The work a phase announces; the executor does it and reports an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum Work {
    /// Render, validate, dry-run (and, for a promotion, fast-forward the branch).
    Prepare,
    /// Apply every object and prune what earlier releases applied that this one does not.
    Apply,
    /// Wait for the objects to become healthy.
    AwaitHealth,
    /// Run the post-deployment tests.
    RunTests,
    /// Find the last good release.
    ChooseRollbackTarget,
    /// Re-apply the last good release and wait for its health.
    RollBack,
    /// Re-apply the deployed release, counting what had drifted.
    CorrectDrift,
    /// Run the continuous verification tests that are due.
    Verify,
}

/// A notice published as a Kubernetes Event beside the transition's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum Notice {
    /// An object no longer declared was kept.
    PruneRefused,
    /// A post-deployment test failed.
    TestFailed,
    /// Objects had drifted and were put back.
    DriftCorrected,
    /// A continuous verification test failed against the deployed release.
    VerificationFailed,
}

/// What follows a transition, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Publish a Warning event.
    Announce {
        /// Its reason.
        notice: Notice,
        /// Its note.
        note: String,
    },
    /// Delete the environment's oldest settled releases beyond the history limit.
    CollectGarbage,
    /// Do this work now.
    Work(Work),
    /// The status says what is awaited: count `cause` as a reconcile error and look again
    /// after `after`.
    Retry {
        /// Fixed label of what is awaited.
        cause: &'static str,
        /// When to look again.
        after: Duration,
    },
    /// Look again in a moment (a wait was cut short).
    RequeueSoon,
    /// Look again after this long (the next drift check).
    RequeueAfter(Duration),
}

/// What to write into the status besides phase, reason and message.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Record {
    /// Nothing more.
    #[default]
    Nothing,
    /// The plan: inventory and suspects.
    Plan(Plan),
    /// The objects applied and the prune refusals.
    Applied {
        /// As in [`Event::Applied`].
        inventory: Vec<InventoryEntry>,
        /// As in [`Event::Applied`].
        prune_refused: Vec<PruneRefusal>,
        /// As in [`Event::Applied`].
        fields_left: Vec<String>,
    },
    /// The tests about to run.
    TestsStarted(Vec<String>),
    /// The tests' results.
    TestsRan(Vec<TestResult>),
    /// The release being rolled back to.
    RollbackTo(String),
    /// What the rollback kept.
    PruneRefused(Vec<PruneRefusal>),
    /// Drift correction paused by a frozen hold.
    DriftPaused,
    /// A drift check at this time, and how many objects it put back (drift correction is
    /// no longer paused).
    DriftChecked {
        /// When.
        at: Timestamp,
        /// How many.
        drifted: u64,
    },
    /// A continuous verification run at this time.
    Verified {
        /// When.
        at: Timestamp,
        /// Its results.
        results: Vec<TestResult>,
    },
}

impl Record {
    /// Writes the record into `status`.
    pub fn write(self, status: &mut ShipReleaseStatus) {
        match self {
            Record::Nothing => {}
            Record::Plan(plan) => {
                status.inventory = plan.inventory;
                status.suspects = plan.suspects;
                status.suspects_truncated = plan.suspects_truncated;
                status.commit_subject = plan.subject;
            }
            Record::Applied {
                inventory,
                prune_refused,
                fields_left,
            } => {
                status.inventory = inventory;
                status.prune_refused = prune_refused;
                status.fields_left = fields_left;
            }
            Record::TestsStarted(names) => {
                status.test_summary = Some(format!("0/{}", names.len()));
                status.tests = names
                    .into_iter()
                    .map(|name| TestResult {
                        name,
                        verdict: TestVerdict::Running,
                        duration_millis: None,
                        message: String::new(),
                        log: String::new(),
                    })
                    .collect();
            }
            Record::TestsRan(results) => {
                status.test_summary = Some(format!("{}/{}", passed(&results), results.len()));
                status.tests = results;
            }
            Record::RollbackTo(release) => status.rolled_back_to = Some(release),
            Record::PruneRefused(refused) => status.prune_refused = refused,
            Record::DriftPaused => status.drift_paused = true,
            Record::DriftChecked { at, drifted } => {
                status.drift_paused = false;
                status.drift_checked_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
                if drifted > 0 {
                    status.drift_corrections = Some(status.drift_corrections.unwrap_or(0) + drifted);
                }
            }
            Record::Verified { at, results } => verification::record(status, at, results),
        }
    }
}

/// A change of phase, reason or message, to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The phase to be in.
    pub phase: Phase,
    /// Why.
    pub reason: StatusReason,
    /// For [`StatusReason::CommitRefused`] and [`StatusReason::AwaitingPush`]: the fixed label
    /// of the cause, written as the condition's reason in place of the family's.
    pub cause: Option<&'static str>,
    /// For a person.
    pub message: String,
}

impl Change {
    /// The label written as the Ready condition's and the event's reason.
    pub fn label(&self) -> &'static str {
        self.cause.unwrap_or_else(|| self.reason.label())
    }

    /// The change moves the release into another phase than `previous` (the status it
    /// replaces) was in: a transition to announce and measure, not a new message alone.
    pub fn enters_phase(&self, previous: Option<&ShipReleaseStatus>) -> bool {
        previous.and_then(|s| s.phase) != Some(self.phase)
    }

    /// A phase a person should hear about as a Warning.
    pub fn is_warning(&self) -> bool {
        matches!(self.phase, Phase::Failed | Phase::RolledBack | Phase::RollingBack)
    }
}

/// The machine's answer to one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The status change to persist; `None` keeps phase, reason and message.
    pub change: Option<Change>,
    /// What else to write into the status (with the change).
    pub record: Record,
    /// What follows, once the status is written.
    pub actions: Vec<Action>,
}

impl Transition {
    /// Nothing changes and nothing follows: the event does not apply in this state.
    pub fn ignore() -> Self {
        Self {
            change: None,
            record: Record::Nothing,
            actions: Vec::new(),
        }
    }

    fn stay(actions: Vec<Action>) -> Self {
        Self {
            actions,
            ..Self::ignore()
        }
    }

    fn to(phase: Phase, reason: StatusReason, message: String) -> Self {
        Self {
            change: Some(Change {
                phase,
                reason,
                cause: None,
                message,
            }),
            ..Self::ignore()
        }
    }

    fn because(mut self, cause: &'static str) -> Self {
        if let Some(change) = &mut self.change {
            change.cause = Some(cause);
        }
        self
    }

    fn recording(mut self, record: Record) -> Self {
        self.record = record;
        self
    }

    fn then(mut self, actions: impl IntoIterator<Item = Action>) -> Self {
        self.actions.extend(actions);
        self
    }

    /// The work that follows, if any.
    pub fn work(&self) -> Option<Work> {
        self.actions.iter().find_map(|a| match a {
            Action::Work(work) => Some(*work),
            _ => None,
        })
    }
}

fn passed(results: &[TestResult]) -> usize {
    results
        .iter()
        .filter(|r| r.verdict == TestVerdict::Passed)
        .count()
}

fn prune_notices<'a>(commit: &'a str, refused: &'a [PruneRefusal]) -> impl Iterator<Item = Action> + 'a {
    refused.iter().map(move |refusal| Action::Announce {
        notice: Notice::PruneRefused,
        note: format!(
            "{} is no longer declared by commit {commit} but was kept: {}",
            refusal.object, refusal.reason
        ),
    })
}

/// What a settled, deployed release does on being looked at: verify when a continuous
/// verification test is due (a Succeeded release only: a rolled-back one runs an older
/// commit, whose tests were not asked of it), correct drift when due, else look again when
/// the first of the two comes due.
fn deployed(snapshot: &Snapshot, now: Timestamp) -> Transition {
    let verify_at = match (snapshot.phase, snapshot.deployed_since) {
        (Some(Phase::Succeeded), Some(since)) => {
            verification::next_due(&snapshot.verification, &snapshot.verified_at, since)
        }
        _ => None,
    };
    if verify_at.is_some_and(|at| at <= now) {
        return Transition::stay(vec![Action::Work(Work::Verify)]);
    }
    // A frozen hold: what people change by hand stays; say so once, and look for its end.
    if snapshot.frozen {
        let wait = FROZEN_LOOK.min(snapshot.drift_interval);
        let look = Transition::stay(vec![Action::RequeueAfter(wait)]);
        return if snapshot.drift_paused {
            look
        } else {
            look.recording(Record::DriftPaused)
        };
    }
    // The hold that paused it is gone: check everything now, once. A watch saw another
    // writer touch the environment's objects: check now.
    if snapshot.drift_paused || snapshot.drift_seen {
        return Transition::stay(vec![Action::Work(Work::CorrectDrift)]);
    }
    let since = snapshot
        .applied_at
        .and_then(|at| Duration::try_from(now.duration_since(at)).ok());
    let drift_wait = match since {
        Some(since) if since < snapshot.drift_interval => snapshot.drift_interval - since,
        // Never applied (as far as the status says), or due, or the clock went back: check now.
        _ => return Transition::stay(vec![Action::Work(Work::CorrectDrift)]),
    };
    let verify_wait = verify_at.and_then(|at| Duration::try_from(at.duration_since(now)).ok());
    let wait = verify_wait.map_or(drift_wait, |v| v.min(drift_wait));
    Transition::stay(vec![Action::RequeueAfter(wait)])
}

/// A deployed Succeeded release after a verification run: the failures announced; a failure
/// of an `onFailure: rollback` test fails the release, and its rollback follows (once: the
/// release rolled back to is not verified, so it cannot roll back again); else it stays
/// deployed and looks again when the next check is due.
fn verified(snapshot: &Snapshot, results: Vec<TestResult>, now: Timestamp) -> Transition {
    use StatusReason as R;
    let failed: Vec<&TestResult> = results
        .iter()
        .filter(|r| r.verdict != TestVerdict::Passed)
        .collect();
    let notices: Vec<Action> = failed
        .iter()
        .map(|r| Action::Announce {
            notice: Notice::VerificationFailed,
            note: format!(
                "verification test {} failed against commit {}: {}\n{}",
                r.name, snapshot.short_commit, r.message, r.log
            ),
        })
        .collect();
    let rolls_back: Vec<&str> = failed
        .iter()
        .filter(|r| {
            snapshot
                .verification
                .iter()
                .any(|c| c.test == r.name && c.rolls_back)
        })
        .map(|r| r.name.as_str())
        .collect();
    let record = Record::Verified {
        at: now,
        results: results.clone(),
    };
    if !rolls_back.is_empty() {
        let message = format!(
            "commit {} failed continuous verification ({}; onFailure: rollback)",
            snapshot.short_commit,
            rolls_back.join(", ")
        );
        return Transition::to(Phase::Failed, R::VerificationFailed, message)
            .recording(record)
            .then(notices)
            .then([Action::Work(Work::ChooseRollbackTarget)]);
    }
    // Every test that was due counts as run now, so a test missing from the results cannot be
    // asked for again at once.
    let since = snapshot.deployed_since.unwrap_or(now);
    let mut verified_at = verification::ran(&snapshot.verified_at, &results, now);
    for due in verification::due_now(&snapshot.verification, &snapshot.verified_at, since, now) {
        verified_at.insert(due.test.clone(), now);
    }
    let after = Snapshot {
        verified_at,
        ..snapshot.clone()
    };
    Transition::stay(notices)
        .recording(record)
        .then(deployed(&after, now).actions)
}

/// The transition of the release described by `snapshot` on `event` at `now`.
pub fn step(snapshot: &Snapshot, event: Event, now: Timestamp) -> Transition {
    use Phase::*;
    use StatusReason as R;
    let commit = &snapshot.short_commit;
    let rerun = |work| Transition::stay(vec![Action::Work(work)]);
    let settle_after = vec![
        Action::CollectGarbage,
        Action::RequeueAfter(snapshot.drift_interval),
    ];
    if let Event::SpecInvalid(problem) = event {
        return Transition::to(Failed, R::InvalidSpec, problem);
    }
    let Some(phase) = snapshot.phase else {
        // Nothing was done for a release without a phase: only looking at it means anything.
        if event != Event::Observed {
            return Transition::ignore();
        }
        let message = format!("release of {commit} to {} accepted", snapshot.environment);
        return Transition::to(Pending, R::Accepted, message).then([Action::Work(Work::Prepare)]);
    };
    if let Some(newer) = &snapshot.superseded_by
        && snapshot.unfinished()
    {
        // A failed release about to roll back stays Failed: its commit did fail.
        let phase = if snapshot.awaits_rollback() {
            Failed
        } else {
            Superseded
        };
        return Transition::to(phase, R::Superseded, format!("superseded by {newer}"));
    }
    match (phase, event) {
        (Pending, Event::Observed) => rerun(Work::Prepare),
        (Pending, Event::Prepared(plan)) => {
            let message = format!(
                "applying {} objects of commit {commit} ({} new commits)",
                plan.inventory.len(),
                plan.suspects.len()
            );
            Transition::to(Applying, R::Applying, message)
                .recording(Record::Plan(plan))
                .then([Action::Work(Work::Apply)])
        }
        (Pending, Event::Refused { cause, problem }) => {
            let message = format!("commit {commit} cannot be deployed, nothing was applied: {problem}");
            Transition::to(Failed, R::CommitRefused, message)
                .because(cause)
                .then([Action::CollectGarbage])
        }
        (
            Pending,
            Event::ClusterUnavailable {
                cause,
                problem,
                retry_after,
            },
        ) => {
            let message = format!("waiting for the environment's cluster: {problem}");
            Transition::to(Pending, R::RemoteCluster, message).then([Action::Retry {
                cause,
                after: retry_after,
            }])
        }
        (
            Pending,
            Event::PushBlocked {
                cause,
                branch,
                problem,
                retry_after,
            },
        ) => {
            let message = format!("waiting to fast-forward {branch}: {problem}");
            Transition::to(Pending, R::AwaitingPush, message)
                .because(cause)
                .then([Action::Retry {
                    cause,
                    after: retry_after,
                }])
        }
        (Applying, Event::Observed) => rerun(Work::Apply),
        (
            Applying,
            Event::Applied {
                inventory,
                prune_refused,
                fields_left,
            },
        ) => {
            let mut message = format!(
                "{} objects applied; waiting for them to become healthy",
                inventory.len()
            );
            if !prune_refused.is_empty() {
                message.push_str(&format!(
                    " ({} no longer declared but kept: see status.pruneRefused)",
                    prune_refused.len()
                ));
            }
            if !fields_left.is_empty() {
                message.push_str(&format!(
                    " ({} fields left to other writers: see status.fieldsLeft)",
                    fields_left.len()
                ));
            }
            let notices: Vec<Action> = prune_notices(commit, &prune_refused).collect();
            Transition::to(Progressing, R::Progressing, message)
                .recording(Record::Applied {
                    inventory,
                    prune_refused,
                    fields_left,
                })
                .then(notices)
                .then([Action::Work(Work::AwaitHealth)])
        }
        (Progressing, Event::Observed) => rerun(Work::AwaitHealth),
        (Progressing, Event::Healthy { tests }) => {
            let message = format!("healthy; running {} post-deployment tests", tests.len());
            Transition::to(Testing, R::Testing, message)
                .recording(Record::TestsStarted(tests))
                .then([Action::Work(Work::RunTests)])
        }
        (Progressing, Event::HealthTimedOut(last)) => {
            let message = format!("not healthy within the health timeout: {last}");
            Transition::to(Failed, R::HealthTimeout, message).then([Action::Work(Work::ChooseRollbackTarget)])
        }
        (Progressing, Event::Unhealthy(problem)) => {
            Transition::to(Failed, R::Unhealthy, format!("rollout failed: {problem}"))
                .then([Action::Work(Work::ChooseRollbackTarget)])
        }
        (Testing, Event::Observed) => rerun(Work::RunTests),
        (Testing, Event::TestsRan(results)) => {
            let (passed, total) = (passed(&results), results.len());
            let failed: Vec<&TestResult> = results
                .iter()
                .filter(|r| r.verdict == TestVerdict::Failed)
                .collect();
            let transition = if failed.is_empty() && passed == total {
                let message = format!("commit {commit} is live and passed {passed}/{total} tests");
                Transition::to(Succeeded, R::Succeeded, message).then(settle_after)
            } else {
                let names: Vec<&str> = failed.iter().map(|r| r.name.as_str()).collect();
                let message = format!("{passed}/{total} tests passed; failed: {}", names.join(", "));
                let notices: Vec<Action> = failed
                    .iter()
                    .map(|r| Action::Announce {
                        notice: Notice::TestFailed,
                        note: format!("test {} failed: {}\n{}", r.name, r.message, r.log),
                    })
                    .collect();
                Transition::to(Failed, R::TestsFailed, message)
                    .then(notices)
                    .then([Action::Work(Work::ChooseRollbackTarget)])
            };
            transition.recording(Record::TestsRan(results))
        }
        (Testing, Event::TestDeadlinePassed { results, unfinished }) => {
            let message = format!(
                "the tests did not finish within the test deadline (testing.timeout); still running: {}",
                unfinished.join(", ")
            );
            let notices: Vec<Action> = unfinished
                .iter()
                .map(|name| Action::Announce {
                    notice: Notice::TestFailed,
                    note: format!("test {name} did not finish within the test deadline"),
                })
                .collect();
            Transition::to(Failed, R::TestTimeout, message)
                .recording(Record::TestsRan(results))
                .then(notices)
                .then([Action::Work(Work::ChooseRollbackTarget)])
        }
        (Failed, Event::Observed) if snapshot.awaits_rollback() => rerun(Work::ChooseRollbackTarget),
        (
            Failed,
            Event::RollbackTargetChosen {
                release,
                short_commit,
            },
        ) if snapshot.awaits_rollback() => {
            let message = format!(
                "{}; rolling back to {release} (commit {short_commit})",
                snapshot.message
            );
            Transition::to(RollingBack, R::RollingBack, message)
                .recording(Record::RollbackTo(release))
                .then([Action::Work(Work::RollBack)])
        }
        (Failed, Event::NoGoodRelease) if snapshot.awaits_rollback() => {
            let message = format!(
                "{}; no earlier good release to roll back to: the environment keeps commit {commit} until a new commit arrives",
                snapshot.message
            );
            Transition::to(Failed, R::NoGoodRelease, message).then([Action::CollectGarbage])
        }
        (RollingBack, Event::Observed) => rerun(Work::RollBack),
        (RollingBack, Event::RollbackTargetGone) => {
            let target = snapshot.rolled_back_to.clone().unwrap_or_default();
            let message = format!("the release to roll back to, {target:?}, no longer exists");
            Transition::to(Failed, R::RollbackFailed, message).then([Action::CollectGarbage])
        }
        (RollingBack, Event::RollbackCommitGone { good_commit }) => {
            let target = snapshot.rolled_back_to.as_deref().unwrap_or_default();
            // Gone for good: no branch reaches it, this mirror never had it, and the remote does
            // not serve it by id. Retrying cannot help; say so and settle.
            let message = format!(
                "cannot roll back to {target}: its commit {good_commit} is no longer in the repository (the \
                 branch's history was rewritten, and the remote does not serve the commit by id); \
                 commit {commit} stays applied: push a fix or a revert to roll forward"
            );
            Transition::to(Failed, R::RollbackFailed, message).then([Action::CollectGarbage])
        }
        (
            RollingBack,
            Event::RolledBack {
                good_commit,
                prune_refused,
            },
        ) => {
            let target = snapshot.rolled_back_to.as_deref().unwrap_or_default();
            let message = format!(
                "rolled back to {target} (commit {good_commit}); commit {commit} stays quarantined until the branch moves"
            );
            let notices: Vec<Action> = prune_notices(&good_commit, &prune_refused).collect();
            Transition::to(RolledBack, R::RolledBack, message)
                .recording(Record::PruneRefused(prune_refused))
                .then(notices)
                .then(settle_after)
        }
        (
            RollingBack,
            Event::RollbackUnhealthy {
                problem,
                prune_refused,
            },
        ) => {
            let target = snapshot.rolled_back_to.as_deref().unwrap_or_default();
            let message = format!("the rollback to {target} did not become healthy: {problem}");
            Transition::to(Failed, R::RollbackFailed, message)
                .recording(Record::PruneRefused(prune_refused))
                .then([Action::CollectGarbage])
        }
        (Progressing | Testing | RollingBack, Event::Interrupted) => {
            Transition::stay(vec![Action::RequeueSoon])
        }
        (Succeeded | RolledBack, Event::Observed) if snapshot.runs_now() => deployed(snapshot, now),
        // A newer release is being prepared: if it is refused, this one still runs, and its
        // drift checks go on; look again when the next would be due.
        (Succeeded | RolledBack, Event::Observed) if snapshot.standing == Some(Standing::MayRunAgain) => {
            Transition::stay(vec![Action::RequeueAfter(snapshot.drift_interval)])
        }
        (Succeeded | RolledBack, Event::DriftCorrected { drifted, commit }) if snapshot.runs_now() => {
            let notice = (drifted > 0).then(|| Action::Announce {
                notice: Notice::DriftCorrected,
                note: format!("{drifted} objects had drifted from commit {commit} and were put back"),
            });
            let after = Snapshot {
                applied_at: Some(now),
                ..snapshot.clone()
            };
            Transition::stay(notice.into_iter().collect())
                .recording(Record::DriftChecked { at: now, drifted })
                .then(deployed(&after, now).actions)
        }
        (Succeeded, Event::Verified(results)) if snapshot.runs_now() => verified(snapshot, results, now),
        _ => Transition::ignore(),
    }
}

/// Upper bound on recorded transitions, so a release that loops (for example through repeated
/// crash-and-resume) cannot grow its status without limit.
pub const MAX_TRANSITIONS: usize = 32;

/// The status `release` should have after `step` (a [`Change`] the machine decided), at time
/// `now`. A phase change appends a
/// transition; conditions keep their `lastTransitionTime` when their status is unchanged.
pub fn next_status(release: Persisted<'_>, step: &Change, now: &Time) -> ShipReleaseStatus {
    let current = release.status.cloned().unwrap_or_default();
    let generation = release.generation;
    let mut transitions = current.transitions.clone();
    if current.phase != Some(step.phase) {
        transitions.push(PhaseEntered {
            phase: step.phase,
            at: now.clone(),
            message: step.message.clone(),
        });
        if transitions.len() > MAX_TRANSITIONS {
            transitions.drain(..transitions.len() - MAX_TRANSITIONS);
        }
    }
    let observation = Observation {
        phase: step.phase,
        reason: step.label(),
        message: &step.message,
        generation,
    };
    // The kstatus conditions follow the phase; the others (`Verified`) are written by their
    // own records and carry over.
    let mut conditions = kstatus_conditions(&observation, &current.conditions, now);
    conditions.extend(
        current
            .conditions
            .iter()
            .filter(|c| !conditions.iter().any(|k| k.type_ == c.type_))
            .cloned()
            .collect::<Vec<_>>(),
    );
    ShipReleaseStatus {
        phase: Some(step.phase),
        observed_generation: generation,
        conditions,
        short_commit: Some(release.short_commit.to_owned()),
        message: Some(step.message.clone()),
        transitions,
        // Tests, inventory, suspects and the rollback target carry over; a step changes them
        // explicitly.
        ..current
    }
}

/// The whole status a transition persists: the `change` (when the phase or its reason moves)
/// and the `record` the machine keeps beside it, over `release`'s current status.
pub fn status_after(
    release: Persisted<'_>,
    change: Option<&Change>,
    record: Record,
    now: &Time,
) -> ShipReleaseStatus {
    let mut status = match change {
        Some(change) => next_status(release, change, now),
        None => release.status.cloned().unwrap_or_default(),
    };
    record.write(&mut status);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    const NOW: i64 = 1_000_000;

    fn snapshot(phase: Option<Phase>, reason: Option<StatusReason>) -> Snapshot {
        Snapshot {
            phase,
            reason,
            message: "the failure".into(),
            short_commit: "abc1234".into(),
            environment: "main".into(),
            rolled_back_to: Some("main-good".into()),
            superseded_by: None,
            applied_at: Some(Timestamp::from_second(NOW - 10).unwrap()),
            drift_interval: Duration::from_secs(300),
            verification: Vec::new(),
            verified_at: BTreeMap::new(),
            deployed_since: Some(Timestamp::from_second(NOW - 100).unwrap()),
            standing: None,
            frozen: false,
            drift_paused: false,
            drift_seen: false,
        }
    }

    /// A deployed release with continuous verification: `t1` every minute (report) and `t2`
    /// every 10 minutes (rollback), neither run yet, `t1` due.
    fn verifying() -> Snapshot {
        Snapshot {
            verification: vec![
                Cadence {
                    test: "t1".into(),
                    every: Duration::from_secs(60),
                    rolls_back: false,
                },
                Cadence {
                    test: "t2".into(),
                    every: Duration::from_secs(600),
                    rolls_back: true,
                },
            ],
            ..snapshot(Some(Phase::Succeeded), Some(StatusReason::Succeeded))
        }
    }

    fn refusal() -> Vec<PruneRefusal> {
        vec![PruneRefusal {
            object: "ConfigMap/app/kept".into(),
            reason: "made by hand".into(),
        }]
    }

    fn result(name: &str, verdict: TestVerdict) -> TestResult {
        TestResult {
            name: name.into(),
            verdict,
            duration_millis: Some(5),
            message: "saw 500".into(),
            log: String::new(),
        }
    }

    /// One event of every kind (two of TestsRan: all passed, one failed).
    fn events() -> Vec<(&'static str, Event)> {
        vec![
            ("Observed", Event::Observed),
            ("SpecInvalid", Event::SpecInvalid("bad spec".into())),
            (
                "Prepared",
                Event::Prepared(Plan {
                    inventory: vec![InventoryEntry {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        namespace: "app".into(),
                        name: "c".into(),
                    }],
                    ..Plan::default()
                }),
            ),
            (
                "Refused",
                Event::Refused {
                    cause: "InvalidYaml",
                    problem: "line 3".into(),
                },
            ),
            (
                "ClusterUnavailable",
                Event::ClusterUnavailable {
                    cause: "RemoteCluster",
                    problem: "no Secret".into(),
                    retry_after: Duration::from_secs(30),
                },
            ),
            (
                "PushBlocked",
                Event::PushBlocked {
                    cause: "MissingBranch",
                    branch: "production".into(),
                    problem: "gone".into(),
                    retry_after: Duration::from_secs(5),
                },
            ),
            (
                "Applied",
                Event::Applied {
                    inventory: Vec::new(),
                    prune_refused: refusal(),
                    fields_left: vec![
                        "Deployment/shop/web spec.replicas: HorizontalPodAutoscaler web scales it".into(),
                    ],
                },
            ),
            (
                "Healthy",
                Event::Healthy {
                    tests: vec!["t1".into()],
                },
            ),
            ("HealthTimedOut", Event::HealthTimedOut("Deployment/app".into())),
            ("Unhealthy", Event::Unhealthy("CrashLoopBackOff".into())),
            (
                "TestsPassed",
                Event::TestsRan(vec![result("t1", TestVerdict::Passed)]),
            ),
            (
                "TestsFailed",
                Event::TestsRan(vec![
                    result("t1", TestVerdict::Passed),
                    result("t2", TestVerdict::Failed),
                ]),
            ),
            (
                "TestDeadlinePassed",
                Event::TestDeadlinePassed {
                    results: vec![result("t1", TestVerdict::Failed)],
                    unfinished: vec!["t1".into()],
                },
            ),
            (
                "RollbackTargetChosen",
                Event::RollbackTargetChosen {
                    release: "main-good".into(),
                    short_commit: "9999999".into(),
                },
            ),
            ("NoGoodRelease", Event::NoGoodRelease),
            ("RollbackTargetGone", Event::RollbackTargetGone),
            (
                "RollbackCommitGone",
                Event::RollbackCommitGone {
                    good_commit: "9999999".into(),
                },
            ),
            (
                "RolledBack",
                Event::RolledBack {
                    good_commit: "9999999".into(),
                    prune_refused: Vec::new(),
                },
            ),
            (
                "RollbackUnhealthy",
                Event::RollbackUnhealthy {
                    problem: "CrashLoopBackOff".into(),
                    prune_refused: Vec::new(),
                },
            ),
            (
                "DriftCorrected",
                Event::DriftCorrected {
                    drifted: 2,
                    commit: "abc1234".into(),
                },
            ),
            (
                "VerifyPassed",
                Event::Verified(vec![result("t1", TestVerdict::Passed)]),
            ),
            (
                "VerifyFailed",
                Event::Verified(vec![result("t1", TestVerdict::Failed)]),
            ),
            (
                "VerifyFailedRollback",
                Event::Verified(vec![result("t2", TestVerdict::Failed)]),
            ),
            ("Interrupted", Event::Interrupted),
        ]
    }

    /// Every state the machine distinguishes (a Failed release about to roll back is one; a
    /// settled Failed is another).
    fn states() -> Vec<(&'static str, Snapshot)> {
        use StatusReason as R;
        let of = |phase, reason| snapshot(Some(phase), Some(reason));
        vec![
            ("new", snapshot(None, None)),
            ("Pending", of(Phase::Pending, R::Accepted)),
            ("Pending/AwaitingPush", of(Phase::Pending, R::AwaitingPush)),
            ("Applying", of(Phase::Applying, R::Applying)),
            ("Progressing", of(Phase::Progressing, R::Progressing)),
            ("Testing", of(Phase::Testing, R::Testing)),
            ("Succeeded", of(Phase::Succeeded, R::Succeeded)),
            ("Succeeded/verifying", verifying()),
            ("Failed/TestsFailed", of(Phase::Failed, R::TestsFailed)),
            (
                "Failed/VerificationFailed",
                of(Phase::Failed, R::VerificationFailed),
            ),
            ("Failed/CommitRefused", of(Phase::Failed, R::CommitRefused)),
            ("RollingBack", of(Phase::RollingBack, R::RollingBack)),
            ("RolledBack", of(Phase::RolledBack, R::RolledBack)),
            ("Superseded", of(Phase::Superseded, R::Superseded)),
        ]
    }

    fn describe(t: &Transition) -> String {
        let mut out = match &t.change {
            Some(change) => format!("{}/{}", change.phase, change.label()),
            None => "=".into(),
        };
        for action in &t.actions {
            let _ = match action {
                Action::Announce { notice, .. } => write!(out, " !{}", <&str>::from(notice)),
                Action::CollectGarbage => write!(out, " gc"),
                Action::Work(work) => write!(out, " {}", <&str>::from(work)),
                Action::Retry { .. } => write!(out, " retry"),
                Action::RequeueSoon => write!(out, " soon"),
                Action::RequeueAfter(d) => write!(out, " after:{}s", d.as_secs()),
            };
        }
        out
    }

    fn table(superseded: bool) -> String {
        let now = Timestamp::from_second(NOW).unwrap();
        let mut out = String::new();
        for (state, mut snapshot) in states() {
            if superseded {
                snapshot.superseded_by = Some("main-newer".into());
            }
            for (name, event) in events() {
                let t = step(&snapshot, event, now);
                let _ = writeln!(out, "{state} + {name} -> {}", describe(&t));
            }
        }
        out
    }

    /// Compares a table with its committed copy; `SHIP_BLESS=1` rewrites the copy instead
    /// (review the diff before committing it).
    fn check_table(file: &str, expected: &str, actual: &str) {
        if std::env::var_os("SHIP_BLESS").is_some() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src")
                .join(file);
            std::fs::write(path, actual).unwrap();
            return;
        }
        let changed: Vec<String> = actual
            .lines()
            .zip(expected.lines())
            .filter(|(a, e)| a != e)
            .map(|(a, e)| format!("expected: {e}\n  actual: {a}"))
            .collect();
        assert!(
            changed.is_empty() && actual.lines().count() == expected.lines().count(),
            "the transition table changed; if intended, rerun with SHIP_BLESS=1 and review src/{file}:\n{}",
            changed.join("\n")
        );
    }

    /// The transition table: every (state, event) pair.
    #[test]
    fn every_state_answers_every_event() {
        check_table(
            "machine_table.txt",
            include_str!("machine_table.txt"),
            &table(false),
        );
    }

    /// The outcomes of an in-progress phase's work, and the re-looks that start it: what a
    /// decision taken on a stale view (the release still seen in progress) can bring.
    const IN_PROGRESS_OUTCOMES: [&str; 17] = [
        "Observed",
        "Prepared",
        "Refused",
        "ClusterUnavailable",
        "PushBlocked",
        "Applied",
        "Healthy",
        "HealthTimedOut",
        "Unhealthy",
        "TestsPassed",
        "TestsFailed",
        "TestDeadlinePassed",
        "RollbackTargetGone",
        "RollbackCommitGone",
        "RolledBack",
        "RollbackUnhealthy",
        "Interrupted",
    ];

    /// A settled phase (Succeeded, RolledBack, Failed, Superseded) is never left for another on
    /// an outcome of in-progress work, with or without a newer release: each (settled state,
    /// outcome) pair, checked one by one. With compare-and-set writes, this is what a stale
    /// decision becomes once it is taken again from the fresh state.
    #[test]
    fn a_settled_phase_is_never_overwritten_by_an_in_progress_outcome() {
        let now = Timestamp::from_second(NOW).unwrap();
        let events = events();
        let mut pairs = 0;
        for (state, snapshot) in states() {
            let Some(settled) = snapshot.phase.filter(|p| !p.is_in_progress()) else {
                continue;
            };
            for superseded in [None, Some("main-newer".to_owned())] {
                let snapshot = Snapshot {
                    superseded_by: superseded.clone(),
                    ..snapshot.clone()
                };
                for outcome in IN_PROGRESS_OUTCOMES {
                    let event = events
                        .iter()
                        .find(|(name, _)| *name == outcome)
                        .map(|(_, e)| e.clone())
                        .unwrap_or_else(|| panic!("no event {outcome}"));
                    let t = step(&snapshot, event, now);
                    let after = t.change.as_ref().map_or(settled, |c| c.phase);
                    assert_eq!(
                        after, settled,
                        "{state} (newer release: {superseded:?}) + {outcome} moved to {after}"
                    );
                    // Nothing that changes the cluster follows either.
                    let works: Vec<Work> = t
                        .actions
                        .iter()
                        .filter_map(|a| match a {
                            Action::Work(w) => Some(*w),
                            _ => None,
                        })
                        .collect();
                    assert!(
                        works.iter().all(|w| matches!(
                            w,
                            Work::CorrectDrift | Work::Verify | Work::ChooseRollbackTarget
                        )),
                        "{state} + {outcome} starts {works:?}"
                    );
                    pairs += 1;
                }
            }
        }
        // 9 settled states (3 Failed, 2 Succeeded, RolledBack, Superseded…) × 2 × 17.
        assert!(pairs >= 7 * 2 * IN_PROGRESS_OUTCOMES.len(), "{pairs}");
    }

    /// Once a newer release exists, nothing unfinished goes on; the settled stay as they are.
    #[test]
    fn a_newer_release_supersedes_every_unfinished_state() {
        check_table(
            "machine_table_superseded.txt",
            include_str!("machine_table_superseded.txt"),
            &table(true),
        );
    }

    /// A crash anywhere: the restart feeds Observed, and each phase resumes its own work.
    #[test]
    fn a_restart_resumes_every_phase_with_its_own_work() {
        let now = Timestamp::from_second(NOW).unwrap();
        let resumed: Vec<(&str, Option<Work>)> = states()
            .into_iter()
            .map(|(state, s)| (state, step(&s, Event::Observed, now).work()))
            .collect();
        assert_eq!(
            resumed,
            [
                ("new", Some(Work::Prepare)),
                ("Pending", Some(Work::Prepare)),
                ("Pending/AwaitingPush", Some(Work::Prepare)),
                ("Applying", Some(Work::Apply)),
                ("Progressing", Some(Work::AwaitHealth)),
                ("Testing", Some(Work::RunTests)),
                ("Succeeded", None),
                ("Succeeded/verifying", Some(Work::Verify)),
                ("Failed/TestsFailed", Some(Work::ChooseRollbackTarget)),
                ("Failed/VerificationFailed", Some(Work::ChooseRollbackTarget)),
                ("Failed/CommitRefused", None),
                ("RollingBack", Some(Work::RollBack)),
                ("RolledBack", None),
                ("Superseded", None),
            ]
        );
    }

    /// The phase a piece of work belongs to (what the executor may be doing in it).
    fn phase_of_work(work: Work) -> &'static [Phase] {
        match work {
            Work::Prepare => &[Phase::Pending],
            Work::Apply => &[Phase::Applying],
            Work::AwaitHealth => &[Phase::Progressing],
            Work::RunTests => &[Phase::Testing],
            Work::ChooseRollbackTarget => &[Phase::Failed],
            Work::RollBack => &[Phase::RollingBack],
            Work::CorrectDrift => &[Phase::Succeeded, Phase::RolledBack],
            Work::Verify => &[Phase::Succeeded],
        }
    }

    /// Random walks: from a new release, events chosen from a seed (the outcome the executor
    /// would report for the work at hand, or any event at all, or a newer release appearing),
    /// applied as the executor applies them. Invariants, not examples:
    /// - work is only ever announced in the phase it belongs to;
    /// - a settled release stays settled (only an invalid spec still changes it, and a failed
    ///   `onFailure: rollback` verification of the deployed Succeeded release);
    /// - once a newer release exists, an unfinished one settles at the next step, with no work;
    /// - Succeeded comes only from Testing, RolledBack only from RollingBack, and a refusal
    ///   (nothing applied) only from Pending.
    #[test]
    fn random_walks_keep_the_invariants() {
        let now = Timestamp::from_second(NOW).unwrap();
        let all = events();
        for seed in 0..300 {
            let mut rng = ship_testkit::seeded::Seeded::new(seed);
            let mut s = snapshot(None, None);
            s.rolled_back_to = None;
            // Verified once deployed (t2 rolls back); it became the deployed one long ago.
            s.verification = verifying().verification;
            let mut work: Option<Work> = None;
            for step_no in 0..60 {
                if rng.chance(3) {
                    s.superseded_by = Some("main-newer".into());
                }
                let event = match (work, rng.below(3)) {
                    (Some(w), 0 | 1) => {
                        let fitting: Vec<&(&str, Event)> = all
                            .iter()
                            .filter(|(name, _)| match w {
                                Work::Prepare => matches!(
                                    *name,
                                    "Prepared" | "Refused" | "ClusterUnavailable" | "PushBlocked"
                                ),
                                Work::Apply => *name == "Applied",
                                Work::AwaitHealth => matches!(
                                    *name,
                                    "Healthy" | "HealthTimedOut" | "Unhealthy" | "Interrupted"
                                ),
                                Work::RunTests => {
                                    matches!(*name, "TestsPassed" | "TestsFailed" | "Interrupted")
                                }
                                Work::ChooseRollbackTarget => {
                                    matches!(*name, "RollbackTargetChosen" | "NoGoodRelease")
                                }
                                Work::RollBack => matches!(
                                    *name,
                                    "RolledBack"
                                        | "RollbackUnhealthy"
                                        | "RollbackTargetGone"
                                        | "RollbackCommitGone"
                                        | "Interrupted"
                                ),
                                Work::CorrectDrift => *name == "DriftCorrected",
                                Work::Verify => matches!(
                                    *name,
                                    "VerifyPassed" | "VerifyFailed" | "VerifyFailedRollback" | "Interrupted"
                                ),
                            })
                            .collect();
                        rng.pick(&fitting).1.clone()
                    }
                    (None, 0) => Event::Observed,
                    _ => rng.pick(&all).1.clone(),
                };
                let spec_invalid = matches!(event, Event::SpecInvalid(_));
                let before = s.clone();
                let t = step(&before, event.clone(), now);
                let context = format!("seed {seed}, step {step_no}: {before:?} + {event:?} -> {t:?}");
                let phase_after = t.change.as_ref().map(|c| c.phase).or(before.phase);
                if let Some(w) = t.work() {
                    assert!(phase_of_work(w).contains(&phase_after.unwrap()), "{context}");
                }
                let settled = before.phase.is_some() && !before.unfinished();
                let verification_failed = t
                    .change
                    .as_ref()
                    .is_some_and(|c| c.reason == StatusReason::VerificationFailed);
                if settled && !spec_invalid && !verification_failed {
                    assert_eq!(phase_after, before.phase, "a settled release moved: {context}");
                }
                if verification_failed {
                    // The one way out of a settled phase: a deployed Succeeded release whose
                    // `onFailure: rollback` verification failed; it rolls back next.
                    assert_eq!(before.phase, Some(Phase::Succeeded), "{context}");
                    assert!(before.superseded_by.is_none(), "{context}");
                    assert_eq!(t.work(), Some(Work::ChooseRollbackTarget), "{context}");
                }
                if before.superseded_by.is_some() && before.unfinished() && !spec_invalid {
                    let change = t.change.as_ref().expect(&context);
                    assert_eq!(change.reason, StatusReason::Superseded, "{context}");
                    assert!(t.work().is_none(), "{context}");
                }
                if let Some(change) = &t.change {
                    match change.phase {
                        Phase::Succeeded => assert_eq!(before.phase, Some(Phase::Testing), "{context}"),
                        Phase::RolledBack => assert_eq!(before.phase, Some(Phase::RollingBack), "{context}"),
                        _ => {}
                    }
                    if change.reason == StatusReason::CommitRefused {
                        assert_eq!(before.phase, Some(Phase::Pending), "{context}");
                    }
                    // What the executor persists.
                    s.phase = Some(change.phase);
                    // The condition carries the cause in place of its family, which reads
                    // back as no reason at all.
                    s.reason = StatusReason::read(change.label());
                    s.message = change.message.clone();
                }
                if let Record::RollbackTo(target) = &t.record {
                    s.rolled_back_to = Some(target.clone());
                }
                if let Record::Verified { at, results } = &t.record {
                    s.verified_at = verification::ran(&s.verified_at, results, *at);
                }
                work = t.work();
            }
        }
    }

    #[test]
    fn drift_is_corrected_once_the_interval_has_passed() {
        let s = snapshot(Some(Phase::Succeeded), Some(StatusReason::Succeeded));
        let at = |seconds| Timestamp::from_second(seconds).unwrap();
        assert_eq!(
            step(&s, Event::Observed, at(NOW)).actions,
            [Action::RequeueAfter(Duration::from_secs(290))]
        );
        assert_eq!(
            step(&s, Event::Observed, at(NOW + 290)).work(),
            Some(Work::CorrectDrift)
        );
        let never = Snapshot {
            applied_at: None,
            ..s.clone()
        };
        assert_eq!(
            step(&never, Event::Observed, at(NOW)).work(),
            Some(Work::CorrectDrift)
        );
        let checked = step(
            &s,
            Event::DriftCorrected {
                drifted: 0,
                commit: "abc1234".into(),
            },
            at(NOW),
        );
        assert_eq!(
            checked.record,
            Record::DriftChecked {
                at: at(NOW),
                drifted: 0
            }
        );
        assert_eq!(checked.actions, [Action::RequeueAfter(Duration::from_secs(300))]);
    }

    #[test]
    fn records_reach_the_status() {
        let mut status = ShipReleaseStatus::default();
        Record::TestsStarted(vec!["a".into(), "b".into()]).write(&mut status);
        assert_eq!(status.test_summary.as_deref(), Some("0/2"));
        assert!(status.tests.iter().all(|t| t.verdict == TestVerdict::Running));
        Record::TestsRan(vec![
            result("a", TestVerdict::Passed),
            result("b", TestVerdict::Failed),
        ])
        .write(&mut status);
        assert_eq!(status.test_summary.as_deref(), Some("1/2"));
        let at = Timestamp::from_second(NOW).unwrap();
        Record::DriftChecked { at, drifted: 2 }.write(&mut status);
        Record::DriftChecked { at, drifted: 0 }.write(&mut status);
        Record::DriftChecked { at, drifted: 3 }.write(&mut status);
        assert_eq!(status.drift_corrections, Some(5));
        assert_eq!(status.drift_checked_at.map(|t| t.0), Some(at));
    }

    #[test]
    fn messages_say_what_happened_and_what_follows() {
        let now = Timestamp::from_second(NOW).unwrap();
        let failed = snapshot(Some(Phase::Failed), Some(StatusReason::TestsFailed));
        let t = step(&failed, Event::NoGoodRelease, now);
        assert_eq!(
            t.change.unwrap().message,
            "the failure; no earlier good release to roll back to: the environment keeps commit abc1234 until a new commit arrives"
        );
        let pending = snapshot(Some(Phase::Pending), Some(StatusReason::Accepted));
        let refused = step(
            &pending,
            Event::Refused {
                cause: "SecretInGit",
                problem: "a Secret".into(),
            },
            now,
        )
        .change
        .unwrap();
        assert_eq!(refused.label(), "SecretInGit");
        assert_eq!(refused.reason, StatusReason::CommitRefused);
        assert_eq!(
            refused.message,
            "commit abc1234 cannot be deployed, nothing was applied: a Secret"
        );
    }
}

#[cfg(test)]
mod status_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn release(status: Option<&ShipReleaseStatus>) -> Persisted<'_> {
        Persisted {
            status,
            generation: Some(3),
            short_commit: "0123456",
            environment: "main",
        }
    }

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn step(phase: Phase) -> Change {
        Change {
            phase,
            reason: StatusReason::Progressing,
            cause: None,
            message: format!("now {phase}"),
        }
    }

    #[test]
    fn first_step_records_transition_and_identity() {
        let s = next_status(release(None), &step(Phase::Pending), &at(10));
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.short_commit.as_deref(), Some("0123456"));
        assert_eq!(s.transitions.len(), 1);
        assert_eq!(s.transitions[0].at, at(10));
    }

    #[test]
    fn same_phase_does_not_add_transition() {
        let first = next_status(release(None), &step(Phase::Applying), &at(10));
        let again = next_status(release(Some(&first)), &step(Phase::Applying), &at(20));
        assert_eq!(again.transitions.len(), 1);
        assert_eq!(again.transitions[0].at, at(10));
    }

    #[test]
    fn other_conditions_carry_over_a_phase_change() {
        let mut status = next_status(release(None), &step(Phase::Succeeded), &at(10));
        crate::verification::record(&mut status, at(20).0, Vec::new());
        let next = next_status(release(Some(&status)), &step(Phase::Failed), &at(30));
        let types: Vec<&str> = next.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "Stalled", "Verified"]);
    }

    #[test]
    fn transitions_are_bounded() {
        let mut s = ShipReleaseStatus::default();
        for i in 0..100 {
            let phase = if i % 2 == 0 {
                Phase::Applying
            } else {
                Phase::Progressing
            };
            s = next_status(release(Some(&s)), &step(phase), &at(i));
        }
        assert_eq!(s.transitions.len(), MAX_TRANSITIONS);
        assert_eq!(s.transitions.last().unwrap().at, at(99));
    }
}

#[cfg(test)]
mod executor_rule_tests {
    use super::*;

    fn result(name: &str, verdict: TestVerdict) -> TestResult {
        TestResult {
            name: name.into(),
            verdict,
            duration_millis: Some(1),
            message: String::new(),
            log: String::new(),
        }
    }

    #[test]
    fn tests_that_all_finished_ran_and_late_ones_are_named() {
        let passed = result("a", TestVerdict::Passed);
        let late = result("b", TestVerdict::Failed);
        assert_eq!(
            tests_finished(vec![(passed.clone(), false)]),
            Event::TestsRan(vec![passed.clone()])
        );
        assert_eq!(
            tests_finished(vec![(passed.clone(), false), (late.clone(), true)]),
            Event::TestDeadlinePassed {
                results: vec![passed, late],
                unfinished: vec!["b".into()],
            }
        );
        assert_eq!(tests_finished(Vec::new()), Event::TestsRan(Vec::new()));
    }

    #[test]
    fn after_a_stale_view_an_outcome_stands_only_in_its_own_phase() {
        let healthy = Event::Healthy { tests: vec![] };
        let progressing = Some(Phase::Progressing);
        assert_eq!(
            after_stale_view(healthy.clone(), progressing, progressing),
            healthy
        );
        assert_eq!(
            after_stale_view(healthy, progressing, Some(Phase::Superseded)),
            Event::Observed
        );
        let invalid = Event::SpecInvalid("no commit".into());
        assert_eq!(
            after_stale_view(invalid.clone(), None, Some(Phase::Testing)),
            invalid
        );
    }

    fn snapshot(phase: Phase, rolled_back_to: Option<&str>, superseded_by: Option<&str>) -> Snapshot {
        Snapshot {
            phase: Some(phase),
            reason: None,
            rolled_back_to: rolled_back_to.map(Into::into),
            superseded_by: superseded_by.map(Into::into),
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_rolled_back_release_runs_the_objects_of_the_release_it_went_back_to() {
        assert_eq!(
            snapshot(Phase::RolledBack, Some("main-good"), None).deployed_objects(),
            DeployedObjects::RolledBackTo("main-good".into())
        );
        assert_eq!(
            snapshot(Phase::RolledBack, None, None).deployed_objects(),
            DeployedObjects::RolledBackTo(String::new())
        );
        assert_eq!(
            snapshot(Phase::Succeeded, Some("stale"), None).deployed_objects(),
            DeployedObjects::Own
        );
    }

    /// A frozen hold pauses drift correction (said once in the status) and looks for the
    /// hold's end; once it is lifted, everything is checked at once, and the check clears the
    /// pause.
    #[test]
    fn a_frozen_hold_pauses_drift_correction_and_its_end_checks_at_once() {
        let now = Timestamp::from_second(10_000).expect("a valid time");
        let with = |frozen: bool, drift_paused: bool| Snapshot {
            standing: Some(Standing::RunsNow),
            drift_interval: Duration::from_secs(300),
            // Due: without the hold, a check would run now.
            applied_at: Some(Timestamp::from_second(1_000).expect("a valid time")),
            frozen,
            drift_paused,
            ..snapshot(Phase::Succeeded, None, None)
        };
        let pausing = step(&with(true, false), Event::Observed, now);
        assert_eq!(pausing.actions, [Action::RequeueAfter(FROZEN_LOOK)]);
        assert_eq!(pausing.record, Record::DriftPaused);
        let paused = step(&with(true, true), Event::Observed, now);
        assert_eq!(paused.actions, [Action::RequeueAfter(FROZEN_LOOK)]);
        assert_eq!(paused.record, Record::Nothing, "said once");
        let quick = Snapshot {
            applied_at: Some(now),
            ..with(false, true)
        };
        assert_eq!(
            step(&quick, Event::Observed, now).actions,
            [Action::Work(Work::CorrectDrift)],
            "lifted: checked at once, though not due"
        );
        let mut status = ShipReleaseStatus {
            drift_paused: true,
            ..ShipReleaseStatus::default()
        };
        Record::DriftPaused.write(&mut status);
        assert!(status.drift_paused);
        Record::DriftChecked { at: now, drifted: 0 }.write(&mut status);
        assert!(!status.drift_paused);
        // Frozen, a change seen by a watch waits for the hold's end like any other.
        let seen_frozen = Snapshot {
            drift_seen: true,
            ..with(true, true)
        };
        assert_eq!(
            step(&seen_frozen, Event::Observed, now).actions,
            [Action::RequeueAfter(FROZEN_LOOK)]
        );
    }

    /// A change another writer made, seen by a watch, is checked at once, long before the
    /// interval; only by the release that runs.
    #[test]
    fn a_change_seen_by_a_watch_is_checked_at_once_by_the_release_that_runs() {
        let now = Timestamp::from_second(10_000).expect("a valid time");
        let with = |standing: Standing, drift_seen: bool| Snapshot {
            standing: Some(standing),
            drift_interval: Duration::from_secs(300),
            applied_at: Some(now),
            drift_seen,
            ..snapshot(Phase::Succeeded, None, None)
        };
        assert_eq!(
            step(&with(Standing::RunsNow, false), Event::Observed, now).actions,
            [Action::RequeueAfter(Duration::from_secs(300))]
        );
        assert_eq!(
            step(&with(Standing::RunsNow, true), Event::Observed, now).actions,
            [Action::Work(Work::CorrectDrift)]
        );
        assert_eq!(
            step(&with(Standing::Retired, true), Event::Observed, now),
            Transition::ignore()
        );
    }

    /// A deployed release that a newer, refused commit superseded still runs: its drift is
    /// corrected; while a newer one is being prepared it looks again at the next drift check;
    /// once something newer applied, it rests.
    #[test]
    fn drift_correction_follows_what_runs_not_what_is_newest() {
        let now = Timestamp::from_second(10_000).expect("a valid time");
        let with = |phase: Phase, standing: Option<Standing>| Snapshot {
            standing,
            drift_interval: Duration::from_secs(300),
            applied_at: Some(Timestamp::from_second(1_000).expect("a valid time")),
            ..snapshot(phase, Some("main-good"), Some("main-refused"))
        };
        for phase in [Phase::Succeeded, Phase::RolledBack] {
            let runs = step(&with(phase, Some(Standing::RunsNow)), Event::Observed, now);
            assert_eq!(runs.actions, [Action::Work(Work::CorrectDrift)], "{phase}");
            let waits = step(&with(phase, Some(Standing::MayRunAgain)), Event::Observed, now);
            assert_eq!(
                waits.actions,
                [Action::RequeueAfter(Duration::from_secs(300))],
                "{phase}"
            );
            assert_eq!(waits.change, None);
            let retired = step(&with(phase, Some(Standing::Retired)), Event::Observed, now);
            assert_eq!(retired, Transition::ignore(), "{phase}");
            // Without a standing, the newest release alone runs (as before).
            assert_eq!(
                step(&with(phase, None), Event::Observed, now),
                Transition::ignore()
            );
            let corrected = Event::DriftCorrected {
                drifted: 1,
                commit: "abc1234".into(),
            };
            assert!(
                step(&with(phase, Some(Standing::RunsNow)), corrected.clone(), now)
                    .change
                    .is_none()
            );
            assert_ne!(
                step(&with(phase, Some(Standing::RunsNow)), corrected.clone(), now).record,
                Record::Nothing
            );
            assert_eq!(
                step(&with(phase, Some(Standing::Retired)), corrected, now),
                Transition::ignore()
            );
        }
    }

    #[test]
    fn verification_is_read_for_a_release_deployed_or_about_to_be() {
        assert!(reads_verification(Some(Phase::Testing)));
        assert!(reads_verification(Some(Phase::Succeeded)));
        for phase in [
            None,
            Some(Phase::Pending),
            Some(Phase::Progressing),
            Some(Phase::RolledBack),
        ] {
            assert!(!reads_verification(phase), "{phase:?}");
        }
    }

    #[test]
    fn only_an_unfinished_superseded_release_settles_before_work() {
        assert!(snapshot(Phase::Testing, None, Some("main-new")).settles_before_work());
        assert!(!snapshot(Phase::Testing, None, None).settles_before_work());
        assert!(!snapshot(Phase::Succeeded, None, Some("main-new")).settles_before_work());
    }

    #[test]
    fn waiting_for_a_cluster_or_a_push_retries_after_what_the_cause_asks() {
        let pending = Snapshot {
            phase: Some(Phase::Pending),
            ..Snapshot::default()
        };
        let now = Timestamp::from_second(1_000).expect("a valid time");
        let cluster = step(
            &pending,
            Event::ClusterUnavailable {
                cause: "RemoteCluster",
                problem: "no Secret".into(),
                retry_after: Duration::from_secs(30),
            },
            now,
        );
        assert_eq!(
            cluster.actions,
            [Action::Retry {
                cause: "RemoteCluster",
                after: Duration::from_secs(30)
            }]
        );
        let push = step(
            &pending,
            Event::PushBlocked {
                cause: "MissingBranch",
                branch: "production".into(),
                problem: "gone".into(),
                retry_after: Duration::from_secs(5),
            },
            now,
        );
        assert_eq!(
            push.actions,
            [Action::Retry {
                cause: "MissingBranch",
                after: Duration::from_secs(5)
            }]
        );
    }
}
