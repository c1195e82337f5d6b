//! The `ShipEnvironment` custom resource: one environment of `ship.yaml` (usually `main` and
//! `production`), its branch, what runs there, and whether that is what git says.
//!
//! shipd makes and keeps one per environment, in the manner of a Flux Kustomization or a Kargo
//! Stage; people read it (`kubectl get shipenvironments`, `kubectl ship status`). It is the
//! home of the environment's own conditions: `InSync` (the cluster runs the branch tip) and
//! `BranchMissing` (the branch is gone from the remote), beside kstatus' `Ready`,
//! `Reconciling` and `Stalled`.
//!
//! [`releases_of`] is the one rule for "what runs in an environment", shared by shipd (which
//! writes it here) and `kubectl ship`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Phase, ShipRelease};

/// Condition: the environment runs its branch's tip (reason `Synced`), or why not
/// ([`SyncReason`]).
pub const IN_SYNC: &str = "InSync";
/// Condition: the repository can be fetched (reason `Fetched`), or why not: `FetchFailed`,
/// `AuthenticationFailed`, `HostKeyChanged`, `HostKeyUnknown`, `CertificateUntrusted`, ...
pub const SOURCE_READY: &str = "SourceReady";
/// Condition: the environment's branch no longer exists on the remote (reason `BranchMissing`).
/// The environment keeps running what it has, and promotions into it wait.
pub const BRANCH_MISSING: &str = "BranchMissing";
/// Condition: a person holds the environment (`spec.hold`, reason `Held`): new tips make no
/// release and the promotion into it does not run, until `kubectl ship resume`.
pub const HELD: &str = "Held";
/// How many held commits `status.heldCommits` keeps (the newest).
pub const HELD_COMMITS_KEPT: usize = 10;

/// One environment declared in `ship.yaml`, as shipd sees it.
// kube-derive takes one `printcolumn(...)` per column; clippy reads their keys as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ship.dev",
    version = "v1alpha1",
    kind = "ShipEnvironment",
    plural = "shipenvironments",
    singular = "shipenvironment",
    shortname = "senv",
    category = "ship",
    namespaced,
    status = "ShipEnvironmentStatus",
    derive = "PartialEq",
    doc = "One Ship environment: its branch, what runs there, and whether that is the branch's tip.",
    printcolumn(name = "Branch", type_ = "string", json_path = ".spec.branch"),
    printcolumn(
        name = "Tip",
        type_ = "string",
        json_path = ".status.tip.shortCommit",
        description = "The branch's tip, as last fetched"
    ),
    printcolumn(
        name = "Running",
        type_ = "string",
        json_path = ".status.deployed.shortCommit",
        description = "The commit running in the environment"
    ),
    printcolumn(
        name = "In-Sync",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"InSync\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"InSync\")].reason"
    ),
    printcolumn(
        name = "Held",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Held\")].status",
        description = "A person holds the environment (kubectl ship hold)"
    ),
    printcolumn(
        name = "Release",
        type_ = "string",
        json_path = ".status.deployed.name",
        description = "The release running in the environment"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ShipEnvironmentSpec {
    /// The branch the environment deploys (from `ship.yaml`).
    pub branch: String,
    /// The namespace the environment's objects go to (from `ship.yaml`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Set by a person (`kubectl ship hold ENV --reason TEXT`) to stop the line: while it is
    /// set, new tips of the branch make no release and the promotion into the environment does
    /// not run (each is recorded in `status.heldCommits` and announced). Drift correction and
    /// manual rollbacks still work. Removing it (`kubectl ship resume ENV`) deploys the
    /// newest tip. shipd never writes this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
}

impl ShipEnvironmentSpec {
    /// Whether `other` declares the same environment (branch and namespace), whatever its hold.
    pub fn declares_same(&self, other: &ShipEnvironmentSpec) -> bool {
        self.branch == other.branch && self.namespace == other.namespace
    }
}

/// A person's hold on an environment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// Why, in the holder's words (shown by `kubectl get`, `kubectl ship status` and events).
    pub reason: String,
    /// Who holds it (the kubeconfig user of `kubectl ship hold`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    /// Since when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

impl Hold {
    /// One line: who, since when, why.
    pub fn describe(&self) -> String {
        let by = if self.by.is_empty() { "someone" } else { &self.by };
        match &self.since {
            Some(since) => format!("held by {by} since {}: {}", since.0, self.reason),
            None => format!("held by {by}: {}", self.reason),
        }
    }
}

/// A commit the branch moved to while the environment was held: it made no release.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldCommit {
    /// Full SHA.
    pub commit: String,
    /// First 7 characters, for display.
    pub short_commit: String,
    /// When shipd first saw it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// What shipd knows about the environment.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipEnvironmentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (in sync), `Reconciling`, `Stalled` (a person must act: the tip failed, the
    /// branch is gone, or a manual rollback holds), `InSync`, `BranchMissing`, `SourceReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The sentence `InSync` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The branch's tip as last fetched (the last one known while the branch is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tip: Option<CommitRef>,

    /// The tip shipd last made (or found) a release for. After a restart, a tip different from
    /// this one counts as the branch having moved, however the mirror first sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_tip: Option<String>,

    /// The release whose commit runs in the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<ReleaseRef>,

    /// The newest release (in flight, or the one that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<ReleaseRef>,

    /// The newest release that Succeeded: what a failure rolls back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<ReleaseRef>,

    /// While held: the tips of the branch that made no release because of the hold (newest
    /// last, at most 10). Cleared on resume, when the newest deploys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_commits: Vec<HeldCommit>,
}

/// A commit, as the status shows it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitRef {
    /// Full SHA.
    pub commit: String,
    /// First 7 characters, for display.
    pub short_commit: String,
}

impl CommitRef {
    /// The reference to `commit`.
    pub fn of(commit: &str) -> Self {
        Self {
            commit: commit.to_owned(),
            short_commit: crate::names::short_sha(commit).to_owned(),
        }
    }
}

/// A release, as the environment's status names it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRef {
    /// Release name.
    pub name: String,
    /// Full SHA of its commit.
    pub commit: String,
    /// First 7 characters, for display.
    pub short_commit: String,
    /// Its phase (absent before the controller saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
}

impl ReleaseRef {
    /// The reference to `release`.
    pub fn of(release: &ShipRelease) -> Self {
        Self {
            name: release.metadata.name.clone().unwrap_or_default(),
            commit: release.spec.commit.clone(),
            short_commit: release.spec.short_commit().to_owned(),
            phase: release.phase(),
        }
    }
}

/// Why an environment is, or is not, in sync with its branch: the `InSync` condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncReason {
    /// The tip's release Succeeded and runs.
    Synced,
    /// A release of the tip is under way.
    Progressing,
    /// The tip has no release yet (one is about to be made).
    Pending,
    /// The tip's release failed here: the environment runs its last good release until a new
    /// commit arrives (the tip is quarantined).
    TipFailed,
    /// A person rolled the environment back by hand; it holds until a new commit arrives.
    ManualRollback,
    /// The branch is gone from the remote; the environment keeps running what it has.
    BranchMissing,
    /// The branch has not been fetched yet.
    NotFetched,
    /// A person holds the environment: the tip waits for `kubectl ship resume`.
    Held,
}

impl SyncReason {
    /// Every reason.
    pub const ALL: [SyncReason; 8] = [
        SyncReason::Synced,
        SyncReason::Progressing,
        SyncReason::Pending,
        SyncReason::TipFailed,
        SyncReason::ManualRollback,
        SyncReason::BranchMissing,
        SyncReason::NotFetched,
        SyncReason::Held,
    ];

    /// The reason's name, as conditions, events and metric labels carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncReason::Synced => "Synced",
            SyncReason::Progressing => "Progressing",
            SyncReason::Pending => "Pending",
            SyncReason::TipFailed => "TipFailed",
            SyncReason::ManualRollback => "ManualRollback",
            SyncReason::BranchMissing => "BranchMissing",
            SyncReason::NotFetched => "NotFetched",
            SyncReason::Held => "Held",
        }
    }

    /// The controller is still working towards the tip (kstatus `Reconciling`).
    pub fn is_reconciling(self) -> bool {
        matches!(
            self,
            SyncReason::Progressing | SyncReason::Pending | SyncReason::NotFetched
        )
    }

    /// Nothing changes until a person acts: a new commit, the branch restored, or a resume
    /// (kstatus `Stalled`).
    pub fn is_stalled(self) -> bool {
        matches!(
            self,
            SyncReason::TipFailed | SyncReason::ManualRollback | SyncReason::BranchMissing | SyncReason::Held
        )
    }
}

/// An environment's releases, as they stand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnvironmentReleases<'a> {
    /// The newest release (in flight, settled, or rolled back).
    pub latest: &'a ShipRelease,
    /// The release whose commit runs there now (a rolled-back release's target, for example).
    pub deployed: Option<&'a ShipRelease>,
    /// The newest release that Succeeded.
    pub last_good: Option<&'a ShipRelease>,
}

/// Releases newest first (by their sequence, as the controller orders them).
pub fn newest_first(releases: &[ShipRelease]) -> Vec<&ShipRelease> {
    let mut sorted: Vec<&ShipRelease> = releases.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.sequence()));
    sorted
}

/// **The** last good release: the newest release of `environment` that Succeeded, older than
/// `before` (a release's [`ShipRelease::sequence`]; `None`: of all), and not of commit
/// `other_than` (going back to the commit that runs changes nothing). One meaning for every
/// use:
/// - what a failed release rolls back to: `last_good(env, all, Some(failed.sequence()), failed's commit)`;
/// - what `kubectl ship rollback` goes back to: `last_good(env, all, None, the commit that runs)`;
/// - the environment's last good release, as shown: `last_good(env, all, None, "")`.
pub fn last_good<'a>(
    environment: &str,
    releases: &'a [ShipRelease],
    before: Option<&(i64, String)>,
    other_than: &str,
) -> Option<&'a ShipRelease> {
    releases
        .iter()
        .filter(|r| {
            r.spec.environment == environment
                && r.phase() == Some(Phase::Succeeded)
                && r.spec.commit != other_than
                && before.is_none_or(|b| r.sequence() < *b)
        })
        .max_by_key(|r| r.sequence())
}

/// What runs in `environment`, from all the releases given (others' are ignored); `None`
/// when it has no release.
pub fn releases_of<'a>(environment: &str, releases: &'a [ShipRelease]) -> Option<EnvironmentReleases<'a>> {
    let of_env: Vec<&ShipRelease> = newest_first(releases)
        .into_iter()
        .filter(|r| r.spec.environment == environment)
        .collect();
    let latest = *of_env.first()?;
    let last_good = last_good(environment, releases, None, "");
    let deployed = match latest.phase() {
        Some(Phase::RolledBack) => latest
            .status
            .as_ref()
            .and_then(|s| s.rolled_back_to.as_deref())
            .and_then(|target| {
                of_env
                    .iter()
                    .copied()
                    .find(|r| r.metadata.name.as_deref() == Some(target))
            }),
        Some(Phase::Succeeded) => Some(latest),
        // In flight, or failed before applying: what runs is the newest one that settled well.
        _ => last_good,
    };
    Some(EnvironmentReleases {
        latest,
        deployed,
        last_good,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reason, ShipReleaseSpec, ShipReleaseStatus, keys};
    use kube::api::ObjectMeta;

    fn release(name: &str, commit: char, seq: i64, phase: Phase) -> ShipRelease {
        ShipRelease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some([(keys::SEQUENCE.to_owned(), seq.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: ShipReleaseSpec {
                environment: "production".into(),
                commit: commit.to_string().repeat(40),
                branch: "production".into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
            status: Some(ShipReleaseStatus {
                phase: Some(phase),
                ..ShipReleaseStatus::default()
            }),
        }
    }

    /// Pins the one meaning of "last good": the newest Succeeded release, before a point and
    /// other than a commit, whichever of its three uses asks.
    #[test]
    fn last_good_has_one_meaning() {
        let mut other_env = release("main-a", 'a', 9, Phase::Succeeded);
        other_env.spec.environment = "main".into();
        let all = [
            release("p-a", 'a', 1, Phase::Succeeded),
            release("p-b", 'b', 2, Phase::Succeeded),
            release("p-b-2", 'b', 3, Phase::Succeeded),
            release("p-c", 'c', 4, Phase::Failed),
            other_env,
        ];
        let name = |r: Option<&ShipRelease>| r.and_then(|r| r.metadata.name.clone());
        // shown as the environment's last good release
        assert_eq!(
            name(last_good("production", &all, None, "")),
            Some("p-b-2".into())
        );
        assert_eq!(
            name(releases_of("production", &all).and_then(|f| f.last_good)),
            Some("p-b-2".into())
        );
        // what the failed p-c rolls back to
        assert_eq!(
            name(last_good(
                "production",
                &all,
                Some(&all[3].sequence()),
                &all[3].spec.commit
            )),
            Some("p-b-2".into())
        );
        // what p-b-2 would have rolled back to: not its own commit
        assert_eq!(
            name(last_good(
                "production",
                &all,
                Some(&all[2].sequence()),
                &all[2].spec.commit
            )),
            Some("p-a".into())
        );
        // what `kubectl ship rollback` goes back to while b runs
        assert_eq!(
            name(last_good("production", &all, None, &all[2].spec.commit)),
            Some("p-a".into())
        );
        assert_eq!(last_good("staging", &all, None, ""), None);
    }
}
