//! The `ShipPromotion` status vocabulary: plain data with its schema (the custom resource itself
//! lives in `ship-api`), so the promotion's machine can decide in this pure crate.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the controller knows about the promotion.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipPromotionStatus {
    /// `Ready` (the last run did what it should, or had nothing to do) and `Stalled` (the
    /// target branch diverged, or the schedule cannot be read: a person must act).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Latest human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The schedule in effect (cron, from `ship.yaml` on the source branch's tip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,

    /// The schedule's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,

    /// The latest scheduled time that has been handled. A scheduled time later than this and
    /// already past (the controller was down) is run once, however many were missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,

    /// The next scheduled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,

    /// The value of the `ship.dev/requested-at` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,

    /// The outcome of the last run (scheduled or requested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<PromotionRun>,

    /// The last run that created a promotion release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promotion: Option<PromotionRun>,

    /// How far the target branch lags behind the source branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<Behind>,

    /// The notifications sent about the promotion's runs (as on a release: written by shipd's
    /// notifier under its own field manager).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::status::NotificationRecord>,
}

/// One run of the promotion: when, why, and what came of it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRun {
    /// When it ran.
    pub at: Time,
    /// Who asked: `schedule`, or the requester named by `kubectl ship promote`.
    pub requested_by: String,
    /// What came of it.
    pub outcome: PromotionOutcome,
    /// The commit promoted (or that would have been).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The ShipRelease created for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// What happened, in a sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Outcome of one promotion run.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PromotionOutcome {
    /// A promotion release was created; the controller fast-forwards the target branch.
    Promoted,
    /// The target already holds the newest tested commit.
    UpToDate,
    /// No commit of the source environment has passed its tests yet.
    NothingTested,
    /// The target branch has commits the source lacks; nothing was forced.
    Diverged,
    /// The source or target branch is missing on the remote; nothing was pushed (a promotion
    /// never re-creates a deleted branch).
    BranchMissing,
    /// The promotion could not be evaluated (the repository or `ship.yaml` is unreadable).
    Error,
    /// The target environment is held (`kubectl ship hold`); nothing was pushed. A scheduled
    /// run stays due and runs on resume; `kubectl ship promote --force` overrides the hold.
    Held,
    /// `promotion.refuseUndeclaredDifferences` is set and the environments would differ in a
    /// way `ship.yaml`'s `differences` does not declare (or could not be compared); nothing
    /// was pushed.
    UndeclaredDifferences,
}

impl PromotionOutcome {
    /// The outcome's name as it appears in the API (and in event reasons and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionOutcome::Promoted => "Promoted",
            PromotionOutcome::UpToDate => "UpToDate",
            PromotionOutcome::NothingTested => "NothingTested",
            PromotionOutcome::Diverged => "Diverged",
            PromotionOutcome::BranchMissing => "BranchMissing",
            PromotionOutcome::Error => "Error",
            PromotionOutcome::Held => "Held",
            PromotionOutcome::UndeclaredDifferences => "UndeclaredDifferences",
        }
    }
}

/// How far the target branch is behind the source branch.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Behind {
    /// Commits on the source branch's tip that the target branch's tip lacks.
    pub commits: u32,
    /// More than `commits` (the count stopped at its limit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Short SHA of the oldest of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_commit: Option<String>,
    /// Commit time of the oldest of them: how long unreleased code has waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_commit_time: Option<Time>,
    /// The source branch's tip.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_commit: String,
    /// The target branch's tip.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_commit: String,
}

/// Recorded on a `reason: Promotion` ShipRelease: who promoted what, from where.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionOrigin {
    /// The environment the commit was tested in.
    pub from_environment: String,
    /// The release that tested it there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from_release: String,
    /// The target branch's tip before the promotion (empty when it had none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_commit: String,
    /// `schedule`, or the requester named by `kubectl ship promote`.
    pub requested_by: String,
    /// The scheduled time this promotion ran for (scheduled promotions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Time>,
}
