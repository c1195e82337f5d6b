//! The release's status vocabulary: its phases, the status the controller writes, and the
//! records it keeps (tests, inventory, suspects, transitions). Plain data with its schema, no
//! client: the `ShipRelease` custom resource (in `ship-api`) wraps it, and the release machine
//! ([`crate::release`]) decides on it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a release exists.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Reason {
    /// A new tip of the environment's branch.
    Push,
    /// The scheduled (or requested) fast-forward of production to a tested main commit.
    Promotion,
    /// A return to an earlier commit, automatic or requested.
    Rollback,
    /// Created by a person, outside the push flow.
    Manual,
    /// A test release of a bisection: one commit of a failed range, deployed to find the first
    /// bad commit (see [`crate::bisect`]). Not the branch's release, and not a delivery.
    Bisect,
}

/// Where a release stands. Settled phases: Succeeded, Failed, RolledBack, Superseded.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum Phase {
    /// Accepted, waiting to start.
    #[default]
    Pending,
    /// Objects are being applied (dry run first, then server-side apply).
    Applying,
    /// Applied; waiting for every object to become healthy.
    Progressing,
    /// Healthy; post-deployment tests are running.
    Testing,
    /// Healthy and every test passed.
    Succeeded,
    /// Could not be applied, did not become healthy, or failed its tests.
    Failed,
    /// Failed; the last good release is being re-applied.
    RollingBack,
    /// Failed, and the environment is back on the last good release.
    RolledBack,
    /// A newer commit for the same environment replaced this release before it finished.
    Superseded,
}

impl Phase {
    /// Every phase, in state-machine order.
    pub const ALL: [Phase; 9] = [
        Phase::Pending,
        Phase::Applying,
        Phase::Progressing,
        Phase::Testing,
        Phase::Succeeded,
        Phase::Failed,
        Phase::RollingBack,
        Phase::RolledBack,
        Phase::Superseded,
    ];

    /// The phase's name as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Applying => "Applying",
            Phase::Progressing => "Progressing",
            Phase::Testing => "Testing",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::RollingBack => "RollingBack",
            Phase::RolledBack => "RolledBack",
            Phase::Superseded => "Superseded",
        }
    }

    /// The controller is still working on a release in this phase.
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            Phase::Pending | Phase::Applying | Phase::Progressing | Phase::Testing | Phase::RollingBack
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reason {
    /// The reason's name as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Push => "Push",
            Reason::Promotion => "Promotion",
            Reason::Rollback => "Rollback",
            Reason::Manual => "Manual",
            Reason::Bisect => "Bisect",
        }
    }

    /// A release for this reason delivers a change to its environment, and counts in the
    /// delivery (DORA) figures; a bisection's test release only asks a question.
    pub fn delivers(self) -> bool {
        self != Reason::Bisect
    }
}

/// Observed state of a release, written by the controller with server-side apply on `/status`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipReleaseStatus {
    /// Current phase of the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// kstatus conditions: `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// First 7 characters of `spec.commit`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_commit: Option<String>,

    /// First line of the commit's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_subject: Option<String>,

    /// Latest human-readable message: what is happening, or what went wrong and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Every phase change, oldest first, with the time it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,

    /// Post-deployment test results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestResult>,

    /// `passed/total` of the post-deployment tests, for display (for example `3/3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_summary: Option<String>,

    /// For a rolled-back release: the name of the release the environment went back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,

    /// Every object this release applies (and so owns), in apply order. Pruning compares the
    /// inventories of an environment's releases; it never touches objects outside them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,

    /// The commits between the environment's last good release and this one, newest first
    /// (at most 50): the suspects when this release fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspects: Vec<SuspectCommit>,

    /// More commits lie between the last good release and this one than `suspects` lists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspects_truncated: bool,

    /// Managed objects found changed or deleted by hand and put back, counted over the
    /// release's life while it is the one deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_corrections: Option<u64>,

    /// When the deployed objects were last re-applied to correct drift (unset until the first
    /// check after the release settled). The next check is due one drift interval later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_checked_at: Option<Time>,

    /// Drift correction is paused by a frozen hold (`kubectl ship hold --freeze`); once the
    /// hold goes, everything is checked at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift_paused: bool,

    /// Continuous verification: the runs of the tests that declare `every`, while this
    /// release is the one deployed (see also the `Verified` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,

    /// The last revert asked of this release (`kubectl ship revert`): a `git revert` of its
    /// commit pushed onto its branch's tip, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<RevertRecord>,

    /// The bisection this failed release started: the first bad commit of its range, searched
    /// by test releases (reason `Bisect`), or why none was named. Written by shipd under its
    /// own field manager (`ship-bisect`), with a compare-and-set on the resourceVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bisection: Option<crate::bisect::Bisection>,

    /// Objects an earlier release applied that this one no longer declares, and that Ship
    /// refused to delete (each is also announced by a `PruneRefused` Warning event). They stay
    /// in the cluster; delete them by hand, or mark them `ship.dev/prune: enabled` in git.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prune_refused: Vec<PruneRefusal>,

    /// Fields of the applied objects that Ship leaves to other writers, one line each
    /// (`Kind/namespace/name path: why`): `spec.replicas` of an object a
    /// HorizontalPodAutoscaler in the commit scales, fields an object's `ship.dev/ignore-fields`
    /// annotation names, and fields another manager took over by server-side apply (reported,
    /// not fought).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields_left: Vec<String>,

    /// The notifications sent about this release (commit statuses, chat and webhook
    /// messages): one record per delivery, once it was delivered or given up on. Written by
    /// shipd's notifier under its own field manager (`ship-notifier`); what
    /// is owed follows from `transitions`, so a delivery recorded here is never sent again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationRecord>,
}

/// One notification about a release, delivered or given up on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// The delivery's id: `<target>/<phase>/<transition time>`, also sent to generic
    /// webhooks (`X-Ship-Delivery`), so a receiver can drop a repeat.
    pub id: String,
    /// Delivered, or given up on.
    pub outcome: NotificationOutcome,
    /// Attempts made.
    pub attempts: u32,
    /// When it was delivered or given up on.
    pub at: Time,
    /// Why it was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How a notification ended.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NotificationOutcome {
    /// The receiver accepted it (HTTP 2xx).
    Delivered,
    /// The receiver refused it (4xx other than 408 and 429), or kept failing until the retry
    /// time ran out; a `NotificationFailed` Warning event says why.
    GaveUp,
}

/// Most verification runs a release keeps (the newest).
pub const VERIFICATION_RUNS_KEPT: usize = 10;

/// Most bytes of a test's log a verification run keeps (the end, where the cause usually is).
pub const VERIFICATION_LOG_KEPT: usize = 2048;

/// The `Verified` condition of a deployed release: whether the last run of its continuous
/// verification tests passed.
pub const VERIFIED: &str = "Verified";

/// The continuous verification of a deployed release.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// The runs, oldest first, the newest [`VERIFICATION_RUNS_KEPT`]; each runs the tests due
    /// then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<VerificationRun>,
    /// Runs dropped from `runs` to keep it bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_dropped: Option<u64>,
}

/// One run of continuous verification tests.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRun {
    /// When it ran.
    pub at: Time,
    /// The results of the tests that were due (logs cut to their last 2 KiB).
    pub results: Vec<TestResult>,
}

/// An object Ship kept instead of pruning it, and why.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneRefusal {
    /// The object, `Kind/namespace/name` or `Kind/name`.
    pub object: String,
    /// Why, in a sentence.
    pub reason: String,
}

/// One object a release owns.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    /// `group/version`, or `version` for the core group.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for InventoryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A commit that came with a release.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspectCommit {
    /// Short SHA.
    pub commit: String,
    /// Author name.
    pub author: String,
    /// First line of the message.
    pub subject: String,
    /// When it was committed (its committer time): the start of its lead time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<Time>,
}

/// A revert asked of a release, and what came of it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevertRecord {
    /// The request it answers (the `ship.dev/revert-requested-at` annotation's value).
    pub requested_at: String,
    /// Who asked (`ship.dev/revert-requested-by`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_by: String,
    /// `Pushed`, `AlreadyReverted` or `Refused`.
    pub outcome: String,
    /// The revert commit pushed (full SHA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What happened, for a person.
    pub message: String,
}

/// One recorded phase change.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The phase entered.
    pub phase: Phase,
    /// When it was entered.
    pub at: Time,
    /// Why, in a sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The outcome of one post-deployment test.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// Test name from `ship.yaml`.
    pub name: String,
    /// Verdict.
    pub verdict: TestVerdict,
    /// Wall-clock duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_millis: Option<u64>,
    /// What the test saw, or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The tail of the test's output (Job tests), at most 8 KiB.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log: String,
}

/// Verdict of one post-deployment test.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TestVerdict {
    /// Not finished yet.
    Running,
    /// Got the known result.
    Passed,
    /// Got something else.
    Failed,
}

/// Why a `ShipReleaseSpec` cannot be acted on. The schema catches malformed fields; these are
/// the cross-field rules a 1.20 apiserver cannot express without CEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecProblem {
    /// `reason: Rollback` without `rollbackOf`.
    RollbackWithoutTarget,
    /// `rollbackOf` set on a release whose reason is not Rollback.
    TargetWithoutRollback(Reason),
    /// `spec.commit` is not a full lower-case SHA-1.
    CommitNotFullSha,
    /// `promotion` set on a release whose reason is not Promotion.
    OriginWithoutPromotion(Reason),
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecProblem::RollbackWithoutTarget => f.write_str(
                "spec.reason is Rollback but spec.rollbackOf is empty: name the release to roll back",
            ),
            SpecProblem::TargetWithoutRollback(reason) => write!(
                f,
                "spec.rollbackOf is set but spec.reason is {}: use reason Rollback or remove rollbackOf",
                reason.as_str()
            ),
            SpecProblem::CommitNotFullSha => f.write_str(
                "spec.commit must be a full 40-character lower-case SHA-1, not a short SHA or a ref",
            ),
            SpecProblem::OriginWithoutPromotion(reason) => write!(
                f,
                "spec.promotion is set but spec.reason is {}: use reason Promotion or remove promotion",
                reason.as_str()
            ),
        }
    }
}

impl ShipReleaseStatus {
    /// The `Ready` condition's reason: the phase, or the fixed cause of a failure.
    pub fn ready_reason(&self) -> &str {
        self.conditions
            .iter()
            .find(|c| c.type_ == crate::conditions::READY)
            .map_or("", |c| c.reason.as_str())
    }

    /// The controller is done with the release: it is in a settled phase and, if it failed
    /// after changing the cluster, its rollback has been decided.
    pub fn is_settled(&self) -> bool {
        self.phase.is_some_and(|p| {
            crate::reason::settled(p, crate::reason::StatusReason::read(self.ready_reason()))
        })
    }
}
