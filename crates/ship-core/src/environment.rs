//! An environment's state as the pure core sees it: the `ShipEnvironment` status vocabulary,
//! what runs in an environment ([`releases_of`], [`last_good`]), whether that is its branch's
//! tip ([`sync`]), and the status the environment keeper writes ([`status`]).
//!
//! These rules read releases through the [`Release`] trait: the `ShipRelease` custom resource
//! lives in `ship-api` (kube-derive makes it), which implements the trait, so the rules stay
//! here, without a Kubernetes client, shared by shipd's keeper, `kubectl ship` and the page.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::{Observation, READY, RECONCILING, STALLED, condition};
use crate::status::{Phase, Reason, ShipReleaseStatus, VERIFIED};

/// What the environment rules read of a release.
pub trait Release {
    /// Its name.
    fn name(&self) -> &str;
    /// Its environment.
    fn environment(&self) -> &str;
    /// Its commit (full SHA).
    fn commit(&self) -> &str;
    /// Why it was made.
    fn reason(&self) -> Reason;
    /// Its place in its environment's order (`ship.dev/sequence`, then its name).
    fn sequence(&self) -> (i64, String);
    /// Its status, once the controller wrote one.
    fn status(&self) -> Option<&ShipReleaseStatus>;

    /// The first seven characters of the commit, as git shows it.
    fn short_commit(&self) -> &str {
        crate::names::short_sha(self.commit())
    }

    /// The current phase, if the controller has written one.
    fn phase(&self) -> Option<Phase> {
        self.status().and_then(|s| s.phase)
    }

    /// The controller is done with the release (see [`ShipReleaseStatus::is_settled`]).
    fn is_settled(&self) -> bool {
        self.status().is_some_and(ShipReleaseStatus::is_settled)
    }
}

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
    /// Also pause drift correction (`kubectl ship hold --freeze`): people fix things by hand
    /// during an incident, and Ship leaves their changes alone until the hold is lifted; then
    /// everything is checked once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze: bool,
}

impl Hold {
    /// One line: who, since when, why.
    pub fn describe(&self) -> String {
        let by = if self.by.is_empty() { "someone" } else { &self.by };
        let frozen = if self.freeze {
            " (frozen: drift correction paused)"
        } else {
            ""
        };
        match &self.since {
            Some(since) => format!("held by {by} since {}{frozen}: {}", since.0, self.reason),
            None => format!("held by {by}{frozen}: {}", self.reason),
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
    pub fn of(release: &impl Release) -> Self {
        Self {
            name: release.name().to_owned(),
            commit: release.commit().to_owned(),
            short_commit: release.short_commit().to_owned(),
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
    /// The tip's release failed here, and test releases of its commits look for the first bad
    /// one; a new tip waits for it (at most `bisect.maxDuration`).
    Bisecting,
}

impl SyncReason {
    /// Every reason.
    pub const ALL: [SyncReason; 9] = [
        SyncReason::Synced,
        SyncReason::Progressing,
        SyncReason::Pending,
        SyncReason::TipFailed,
        SyncReason::ManualRollback,
        SyncReason::BranchMissing,
        SyncReason::NotFetched,
        SyncReason::Held,
        SyncReason::Bisecting,
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
            SyncReason::Bisecting => "Bisecting",
        }
    }

    /// The controller is still working towards the tip (kstatus `Reconciling`).
    pub fn is_reconciling(self) -> bool {
        matches!(
            self,
            SyncReason::Progressing | SyncReason::Pending | SyncReason::NotFetched | SyncReason::Bisecting
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
#[derive(Debug, PartialEq)]
pub struct EnvironmentReleases<'a, R> {
    /// The newest release (in flight, settled, or rolled back).
    pub latest: &'a R,
    /// The release whose commit runs there now (a rolled-back release's target, for example).
    pub deployed: Option<&'a R>,
    /// The newest release that Succeeded.
    pub last_good: Option<&'a R>,
}

// By hand: a derive would ask `R: Copy`, and only the references are copied.
impl<R> Clone for EnvironmentReleases<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for EnvironmentReleases<'_, R> {}

/// Releases newest first (by their sequence, as the controller orders them).
pub fn newest_first<R: Release>(releases: &[R]) -> Vec<&R> {
    let mut sorted: Vec<&R> = releases.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.sequence()));
    sorted
}

/// **The** last good release: the newest release of `environment` that Succeeded, older than
/// `before` (a release's [`Release::sequence`]; `None`: of all), and not of commit
/// `other_than` (going back to the commit that runs changes nothing). One meaning for every
/// use:
/// - what a failed release rolls back to: `last_good(env, all, Some(failed.sequence()), failed's commit)`;
/// - what `kubectl ship rollback` goes back to: [`manual_rollback_target`], which goes further
///   back than this when what runs is itself a rollback;
/// - the environment's last good release, as shown: `last_good(env, all, None, "")`.
pub fn last_good<'a, R: Release>(
    environment: &str,
    releases: &'a [R],
    before: Option<&(i64, String)>,
    other_than: &str,
) -> Option<&'a R> {
    newest_success(environment, releases, before, |commit| commit == other_than)
}

/// The newest release of `environment` that Succeeded, older than `before` (`None`: of all),
/// of a commit not `excluded`: what [`last_good`] and [`manual_rollback_target`] both search.
fn newest_success<'a, R: Release>(
    environment: &str,
    releases: &'a [R],
    before: Option<&(i64, String)>,
    excluded: impl Fn(&str) -> bool,
) -> Option<&'a R> {
    releases
        .iter()
        .filter(|r| {
            r.environment() == environment
                && r.phase() == Some(Phase::Succeeded)
                && !excluded(r.commit())
                && before.is_none_or(|b| r.sequence() < *b)
        })
        .max_by_key(|r| r.sequence())
}

/// What `kubectl ship rollback` goes back to from `deployed` (the release that runs): the newest
/// Succeeded release from before the deployed commit came, of a commit that has not run since.
///
/// "Before the deployed commit came" is before its newest deployment by a push or promotion,
/// when `deployed` is itself a rollback. Why: rolling back twice must go further back, not
/// forward again. Asking "the newest success of another commit" once more answers with the very
/// commit the first rollback left (it Succeeded, and it is newer), so a second rollback undid
/// the first and ran the tip its hold was holding back (found by the random-history test,
/// seed 16). For the same reason no commit that ran after that point is a target, even one that
/// also ran before it (a branch moved back to an older commit).
pub fn manual_rollback_target<'a, R: Release>(
    environment: &str,
    releases: &'a [R],
    deployed: &R,
) -> Option<&'a R> {
    let of_environment = || releases.iter().filter(|r| r.environment() == environment);
    let deployed_at = deployed.sequence();
    let came_at = if deployed.reason() == Reason::Rollback {
        of_environment()
            .filter(|r| {
                r.commit() == deployed.commit()
                    && r.reason() != Reason::Rollback
                    && r.phase() == Some(Phase::Succeeded)
                    && r.sequence() < deployed_at
            })
            .map(|r| r.sequence())
            .max()
            .unwrap_or(deployed_at)
    } else {
        deployed_at
    };
    let ran_since: std::collections::HashSet<&str> = of_environment()
        .filter(|r| r.sequence() >= came_at)
        .map(|r| r.commit())
        .chain([deployed.commit()])
        .collect();
    newest_success(environment, releases, Some(&came_at), |commit| {
        ran_since.contains(commit)
    })
}

/// What `release` rolls back to if it fails: the environment's last good release before it,
/// of another commit ([`last_good`], the one meaning of "last good").
pub fn rollback_target<'a, R: Release>(release: &R, others: &'a [R]) -> Option<&'a R> {
    last_good(
        release.environment(),
        others,
        Some(&release.sequence()),
        release.commit(),
    )
}

/// Releases of one environment to delete so that at most `keep` remain: the oldest settled ones,
/// never one still in progress, and never the environment's newest Succeeded release.
pub fn to_collect<R: Release>(releases: &[R], keep: usize) -> Vec<String> {
    let sorted = newest_first(releases);
    let newest_good = sorted
        .iter()
        .find(|r| r.phase() == Some(Phase::Succeeded))
        .map(|r| r.sequence());
    // The newest release that came from the branch is what `tip_release` compares the tip
    // with: collecting it (after many manual rollbacks) would make the tip look new again.
    let newest_from_branch = sorted
        .iter()
        .find(|r| matches!(r.reason(), Reason::Push | Reason::Promotion))
        .map(|r| r.sequence());
    sorted
        .iter()
        .skip(keep)
        .filter(|r| {
            r.is_settled() && Some(r.sequence()) != newest_good && Some(r.sequence()) != newest_from_branch
        })
        .map(|r| r.name().to_owned())
        .collect()
}

/// Whether a settled release's objects are what its environment runs, for drift correction
/// and continuous verification (see [`standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It runs: it settled well (Succeeded, or RolledBack to a good release) and no newer
    /// release has touched the cluster since.
    RunsNow,
    /// It runs for now, but a newer release is being prepared: if that one is refused before it
    /// applies anything, this one still runs; if it applies, this one is retired.
    MayRunAgain,
    /// Something newer runs, or it never settled well.
    Retired,
}

/// A release that never changed the cluster: it never entered Applying (refused, invalid, or
/// superseded while Pending).
fn never_applied<R: Release>(release: &R) -> bool {
    crate::release::transition_time(release.status(), Phase::Applying).is_none()
        && release.phase() != Some(Phase::Applying)
}

/// The standing of release `name` among its environment's `releases` (others' are ignored).
/// Newer releases that settled without applying anything (a refused commit, an invalid spec)
/// do not retire it: its objects still run, and drift correction goes on for them.
pub fn standing<R: Release>(environment: &str, releases: &[R], name: &str) -> Standing {
    let mut newer_preparing = false;
    for release in newest_first(releases)
        .into_iter()
        .filter(|r| r.environment() == environment)
    {
        if release.name() == name {
            let settled_well = matches!(release.phase(), Some(Phase::Succeeded | Phase::RolledBack));
            return match (settled_well, newer_preparing) {
                (false, _) => Standing::Retired,
                (true, false) => Standing::RunsNow,
                (true, true) => Standing::MayRunAgain,
            };
        }
        if !never_applied(release) {
            return Standing::Retired;
        }
        if !release.is_settled() {
            newer_preparing = true;
        }
    }
    Standing::Retired
}

/// What runs in `environment`, from all the releases given (others' are ignored); `None`
/// when it has no release.
pub fn releases_of<'a, R: Release>(
    environment: &str,
    releases: &'a [R],
) -> Option<EnvironmentReleases<'a, R>> {
    let of_env: Vec<&R> = newest_first(releases)
        .into_iter()
        .filter(|r| r.environment() == environment)
        .collect();
    let latest = *of_env.first()?;
    let last_good = last_good(environment, releases, None, "");
    let deployed = match latest.phase() {
        Some(Phase::RolledBack) => latest
            .status()
            .and_then(|s| s.rolled_back_to.as_deref())
            .and_then(|target| of_env.iter().copied().find(|r| r.name() == target)),
        // Succeeded (then it is the newest success itself), in flight, or failed before
        // applying: what runs is the newest one that settled well.
        _ => last_good,
    };
    Some(EnvironmentReleases {
        latest,
        deployed,
        last_good,
    })
}

/// An environment as `ship.yaml` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// Its name.
    pub name: String,
    /// The branch it deploys.
    pub branch: String,
    /// The namespace its objects go to.
    pub namespace: String,
}

/// Whether an environment runs its branch's tip: the reason, and a sentence saying it.
/// `tip` is the branch's tip as last fetched; `releases` may hold other environments' too;
/// `hold` is the environment's hold, when a person holds it.
pub fn sync<R: Release>(
    environment: &str,
    branch: &str,
    tip: Option<&str>,
    branch_missing: bool,
    releases: &[R],
    hold: Option<&Hold>,
) -> (SyncReason, String) {
    let found = releases_of(environment, releases);
    let running = found
        .and_then(|f| f.deployed)
        .map_or_else(|| "nothing".to_owned(), describe);
    if branch_missing {
        return (
            SyncReason::BranchMissing,
            format!(
                "branch {branch} is missing on the remote: {environment} keeps running {running}; \
                 promotions into it wait until the branch is back"
            ),
        );
    }
    let Some(tip) = tip else {
        return (
            SyncReason::NotFetched,
            format!("branch {branch} has not been fetched yet"),
        );
    };
    let short = crate::names::short_sha(tip);
    let Some(found) = found else {
        return (
            SyncReason::Pending,
            format!("the tip of {branch} ({short}) has no release yet"),
        );
    };
    // The branch's view: a bisection's test releases are questions, not the branch's releases.
    let latest = newest_first(releases)
        .into_iter()
        .find(|r| r.environment() == environment && r.reason() != Reason::Bisect)
        .unwrap_or(found.latest);
    let settled = latest.is_settled();
    if latest.commit() == tip {
        let bisection = latest.status().and_then(|s| s.bisection.as_ref());
        return match latest.phase() {
            Some(Phase::Succeeded) => (
                SyncReason::Synced,
                format!("running {}, the tip of {branch}", describe(latest)),
            ),
            Some(Phase::RolledBack) if bisection.is_some_and(|b| !b.ended()) => (
                SyncReason::Bisecting,
                format!(
                    "the tip of {branch} ({short}) failed here (release {}): {}; running {running}",
                    latest.name(),
                    bisection.map(|b| b.describe(None)).unwrap_or_default()
                ),
            ),
            Some(Phase::Failed | Phase::RolledBack) if settled => (
                SyncReason::TipFailed,
                format!(
                    "the tip of {branch} ({short}) failed here (release {}): running {running} \
                     until a new commit arrives{}",
                    latest.name(),
                    bisection
                        .and_then(|b| b.message.as_deref())
                        .map(|m| format!("; {m}"))
                        .unwrap_or_default()
                ),
            ),
            _ => (
                SyncReason::Progressing,
                format!(
                    "releasing the tip of {branch} ({short}) as {}; running {running}",
                    latest.name()
                ),
            ),
        };
    }
    if settled && found.deployed.is_some_and(|d| d.commit() == tip) {
        return (
            SyncReason::Synced,
            format!("running {running}, the tip of {branch}"),
        );
    }
    // The tip has no release, and a person holds the environment: it waits for a resume
    // (whether the last release was a manual rollback or not).
    if let Some(hold) = hold {
        return (
            SyncReason::Held,
            format!(
                "{}; the tip of {branch} ({short}) waits for `kubectl ship resume {environment}`; \
                 running {running}",
                hold.describe()
            ),
        );
    }
    if settled && matches!(latest.reason(), Reason::Manual | Reason::Rollback) {
        return (
            SyncReason::ManualRollback,
            format!(
                "rolled back by hand to {running} (release {}); the tip of {branch} ({short}) \
                 comes back with the next commit",
                latest.name()
            ),
        );
    }
    (
        SyncReason::Pending,
        format!("the tip of {branch} ({short}) has no release yet; running {running}"),
    )
}

fn describe(release: &impl Release) -> String {
    format!("{} ({})", release.name(), release.short_commit())
}

/// What [`status`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a, R> {
    /// The environment.
    pub declared: &'a Declared,
    /// The branch's tip as last fetched.
    pub tip: Option<&'a str>,
    /// The remote lacks the branch.
    pub branch_missing: bool,
    /// Releases (all environments').
    pub releases: &'a [R],
    /// The tip last handed to the release maker, when this process knows one.
    pub handled_tip: Option<&'a str>,
    /// The object's `metadata.generation`.
    pub generation: Option<i64>,
    /// Whether the repository can be fetched, and if not why (a fixed reason, and a message
    /// without credentials); `None` before the first fetch.
    pub source: Option<(bool, &'a str, &'a str)>,
    /// The environment's hold (`spec.hold`), when a person holds it.
    pub hold: Option<&'a Hold>,
}

/// The status to write, from what is observed and the previous status (condition times are
/// kept when unchanged, and the last handled tip when this process has not handled one).
pub fn status<R: Release>(
    observed: &Observed<'_, R>,
    previous: &ShipEnvironmentStatus,
    now: &Time,
) -> ShipEnvironmentStatus {
    let d = observed.declared;
    let (reason, message) = sync(
        &d.name,
        &d.branch,
        observed.tip,
        observed.branch_missing,
        observed.releases,
        observed.hold,
    );
    let found = releases_of(&d.name, observed.releases);
    let generation = observed.generation;
    let sync_says = says(reason.as_str(), &message, generation);
    let prev = &previous.conditions;
    let missing_message = format!("branch {} is missing on the remote", d.branch);
    let missing_says = if observed.branch_missing {
        says(BRANCH_MISSING, &missing_message, generation)
    } else {
        says("BranchFound", "the branch exists on the remote", generation)
    };
    let hold_message = observed.hold.map(Hold::describe);
    let held_says = match &hold_message {
        Some(message) => says(HELD, message, generation),
        None => says("NotHeld", "no one holds the environment", generation),
    };
    let conditions = vec![
        condition(READY, reason == SyncReason::Synced, &sync_says, prev, now),
        condition(RECONCILING, reason.is_reconciling(), &sync_says, prev, now),
        condition(STALLED, reason.is_stalled(), &sync_says, prev, now),
        condition(IN_SYNC, reason == SyncReason::Synced, &sync_says, prev, now),
        condition(BRANCH_MISSING, observed.branch_missing, &missing_says, prev, now),
        condition(HELD, observed.hold.is_some(), &held_says, prev, now),
    ];
    let mut conditions = conditions;
    // The deployed release's continuous verification, while it is the newest release and
    // Succeeded (a rolled-back environment runs a release nothing verifies).
    let verification = found
        .filter(|f| f.deployed.is_some_and(|d| d.name() == f.latest.name()))
        .map(|f| f.latest)
        .filter(|r| r.phase() == Some(Phase::Succeeded))
        .and_then(|r| r.status())
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == VERIFIED));
    if let Some(verified) = verification {
        conditions.push(condition(
            VERIFIED,
            verified.status == "True",
            &says(&verified.reason, &verified.message, generation),
            prev,
            now,
        ));
    }
    if let Some((ready, reason, message)) = observed.source {
        // A fixed message while all is well, so a look after each fetch writes nothing.
        let message = if ready {
            "the repository is fetched"
        } else {
            message
        };
        conditions.push(condition(
            SOURCE_READY,
            ready,
            &says(reason, message, generation),
            prev,
            now,
        ));
    }
    ShipEnvironmentStatus {
        observed_generation: observed.generation,
        conditions,
        message: Some(message),
        tip: observed.tip.map(CommitRef::of),
        last_handled_tip: observed
            .handled_tip
            .map(str::to_owned)
            .or_else(|| previous.last_handled_tip.clone()),
        deployed: found.and_then(|f| f.deployed).map(ReleaseRef::of),
        latest: found.map(|f| ReleaseRef::of(f.latest)),
        last_good: found.and_then(|f| f.last_good).map(ReleaseRef::of),
        held_commits: held_commits(observed, reason, &previous.held_commits, now),
    }
}

/// The tips held so far: while held, the previous ones and the tip when it waits (once, the
/// newest [`HELD_COMMITS_KEPT`]); none once the hold is gone.
fn held_commits<R>(
    observed: &Observed<'_, R>,
    reason: SyncReason,
    previous: &[HeldCommit],
    now: &Time,
) -> Vec<HeldCommit> {
    if observed.hold.is_none() {
        return Vec::new();
    }
    let mut held = previous.to_vec();
    if let Some(tip) = observed.tip.filter(|_| reason == SyncReason::Held)
        && !held.iter().any(|h| h.commit == tip)
    {
        held.push(HeldCommit {
            commit: tip.to_owned(),
            short_commit: crate::names::short_sha(tip).to_owned(),
            seen_at: Some(now.clone()),
        });
    }
    let extra = held.len().saturating_sub(HELD_COMMITS_KEPT);
    held.drain(..extra);
    held
}

fn says<'a>(reason: &'a str, message: &'a str, generation: Option<i64>) -> Observation<'a> {
    Observation {
        phase: Phase::Succeeded,
        reason,
        message,
        generation,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sha(c: char) -> String {
        c.to_string().repeat(40)
    }

    /// A release as the rules read it (the `ShipRelease` custom resource lives in ship-api).
    #[derive(Debug, Clone, PartialEq)]
    struct TestRelease {
        name: String,
        environment: String,
        commit: String,
        reason: Reason,
        sequence: i64,
        status: Option<ShipReleaseStatus>,
    }

    impl Release for TestRelease {
        fn name(&self) -> &str {
            &self.name
        }
        fn environment(&self) -> &str {
            &self.environment
        }
        fn commit(&self) -> &str {
            &self.commit
        }
        fn reason(&self) -> Reason {
            self.reason
        }
        fn sequence(&self) -> (i64, String) {
            (self.sequence, self.name.clone())
        }
        fn status(&self) -> Option<&ShipReleaseStatus> {
            self.status.as_ref()
        }
    }

    /// `release` having entered each of `phases` (its transition history).
    fn through(mut release: TestRelease, phases: &[Phase]) -> TestRelease {
        let status = release.status.get_or_insert_with(ShipReleaseStatus::default);
        status.transitions = phases
            .iter()
            .map(|phase| crate::status::Transition {
                phase: *phase,
                at: Time(jiff::Timestamp::UNIX_EPOCH),
                message: String::new(),
            })
            .collect();
        release
    }

    #[test]
    fn a_refused_newer_release_leaves_the_deployed_one_running() {
        use Phase::*;
        let good = through(
            release("p-a", 'a', 1, Succeeded, Reason::Push),
            &[Pending, Applying, Succeeded],
        );
        let refused = through(release("p-b", 'b', 2, Failed, Reason::Push), &[Pending, Failed]);
        let preparing = through(release("p-c", 'c', 3, Pending, Reason::Push), &[Pending]);
        let applying = through(
            release("p-c", 'c', 3, Applying, Reason::Push),
            &[Pending, Applying],
        );
        assert_eq!(
            standing("production", std::slice::from_ref(&good), "p-a"),
            Standing::RunsNow
        );
        assert_eq!(
            standing("production", &[good.clone(), refused.clone()], "p-a"),
            Standing::RunsNow,
            "a refused commit applied nothing"
        );
        assert_eq!(
            standing("production", &[good.clone(), refused.clone(), preparing], "p-a"),
            Standing::MayRunAgain
        );
        assert_eq!(
            standing("production", &[good.clone(), refused.clone(), applying], "p-a"),
            Standing::Retired
        );
        assert_eq!(
            standing("production", &[good.clone(), refused], "p-b"),
            Standing::Retired
        );
        let mut elsewhere = good.clone();
        elsewhere.environment = "main".into();
        elsewhere.name = "m-a".into();
        assert_eq!(
            standing("production", &[good, elsewhere], "m-a"),
            Standing::Retired,
            "a release of another environment is not this one's"
        );
    }

    fn release(name: &str, commit: char, seq: i64, phase: Phase, reason: Reason) -> TestRelease {
        TestRelease {
            name: name.into(),
            environment: "production".into(),
            commit: sha(commit),
            reason,
            sequence: seq,
            status: Some(ShipReleaseStatus {
                phase: Some(phase),
                ..ShipReleaseStatus::default()
            }),
        }
    }

    fn reason(tip: Option<char>, missing: bool, releases: &[TestRelease]) -> SyncReason {
        let tip = tip.map(sha);
        sync(
            "production",
            "production",
            tip.as_deref(),
            missing,
            releases,
            None,
        )
        .0
    }

    #[test]
    fn in_sync_only_when_the_tip_runs() {
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        assert_eq!(
            reason(Some('a'), false, std::slice::from_ref(&a)),
            SyncReason::Synced
        );
        assert_eq!(reason(None, false, &[]), SyncReason::NotFetched);
        assert_eq!(reason(Some('a'), false, &[]), SyncReason::Pending);
        // the tip moved on; its release is not made yet, then under way
        assert_eq!(
            reason(Some('b'), false, std::slice::from_ref(&a)),
            SyncReason::Pending
        );
        let b = release("production-b", 'b', 2, Phase::Testing, Reason::Push);
        assert_eq!(reason(Some('b'), false, &[a.clone(), b]), SyncReason::Progressing);
        // it failed and rolled back: quarantined, shown as such
        let mut failed = release("production-b", 'b', 2, Phase::RolledBack, Reason::Push);
        failed.status.as_mut().unwrap().rolled_back_to = Some("production-a".into());
        let history = [a.clone(), failed];
        assert_eq!(reason(Some('b'), false, &history), SyncReason::TipFailed);
        let (_, message) = sync("production", "production", Some(&sha('b')), false, &history, None);
        assert!(message.contains("production-a (aaaaaaa)"), "{message}");
        // force-pushed back to what runs: in sync at once
        assert_eq!(reason(Some('a'), false, &history), SyncReason::Synced);
        // a branch deleted on the remote says so, whatever runs
        assert_eq!(reason(Some('a'), true, &history), SyncReason::BranchMissing);
    }

    /// A manual rollback goes back in time: twice in a row goes further back, never forward to
    /// the commit the first one left, nor to a commit that ran since (a branch moved back).
    #[test]
    fn a_manual_rollback_goes_further_back_each_time_and_never_to_a_commit_that_ran_since() {
        use Phase::*;
        let target = |all: &[TestRelease], deployed: &TestRelease| {
            manual_rollback_target("production", all, deployed).map(|r| r.name.clone())
        };
        let a = release("p-a", 'a', 1, Succeeded, Reason::Push);
        let b = release("p-b", 'b', 2, Succeeded, Reason::Push);
        let c = release("p-c", 'c', 3, Succeeded, Reason::Push);
        let mut elsewhere = release("m-z", 'z', 4, Succeeded, Reason::Push);
        elsewhere.environment = "main".into();
        let mut all = vec![a.clone(), b.clone(), c.clone(), elsewhere];
        assert_eq!(
            target(&all, &c),
            Some("p-b".into()),
            "the first goes to the last good"
        );
        let back_to_b = release("p-rollback-1", 'b', 5, Succeeded, Reason::Rollback);
        all.push(back_to_b.clone());
        assert_eq!(
            target(&all, &back_to_b),
            Some("p-a".into()),
            "the second goes further back"
        );
        let back_to_a = release("p-rollback-2", 'a', 6, Succeeded, Reason::Rollback);
        all.push(back_to_a.clone());
        assert_eq!(target(&all, &back_to_a), None, "nothing is older than a");

        // A failed release rolled back on its own, then by hand: the second rollback by hand
        // does not return to what ran when the failure came.
        let all = [
            release("p-a", 'a', 1, Succeeded, Reason::Push),
            release("p-b", 'b', 2, Succeeded, Reason::Push),
            release("p-c", 'c', 3, Succeeded, Reason::Push),
            release("p-d", 'd', 4, RolledBack, Reason::Push),
            release("p-rollback-1", 'b', 5, Succeeded, Reason::Rollback),
        ];
        assert_eq!(target(&all[..4], &all[2]), Some("p-b".into()));
        assert_eq!(target(&all, &all[4]), Some("p-a".into()));

        // The branch moved back to a: a, b, a. Back from a is b; back from b would be a, the
        // commit just rolled back from, so there is nothing further.
        let all = [
            release("p-a", 'a', 1, Succeeded, Reason::Push),
            release("p-b", 'b', 2, Succeeded, Reason::Push),
            release("p-a2", 'a', 3, Succeeded, Reason::Push),
            release("p-rollback-1", 'b', 4, Succeeded, Reason::Rollback),
        ];
        assert_eq!(target(&all[..3], &all[2]), Some("p-b".into()));
        assert_eq!(target(&all, &all[3]), None);

        // Whatever the history, a target Succeeded, is older than what runs, and is of another
        // commit; checked over every prefix of a generated history.
        let mut seed = 16u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut history: Vec<TestRelease> = Vec::new();
        for seq in 1..400 {
            let commit = (b'a' + next(6) as u8) as char;
            let phase = if next(4) == 0 { RolledBack } else { Succeeded };
            let reason = if next(3) == 0 {
                Reason::Rollback
            } else {
                Reason::Push
            };
            history.push(release(&format!("p-{seq}"), commit, seq, phase, reason));
            let deployed = history.iter().rev().find(|r| r.phase() == Some(Succeeded));
            let Some(deployed) = deployed else { continue };
            if let Some(t) = manual_rollback_target("production", &history, deployed) {
                assert_eq!(t.phase(), Some(Succeeded));
                assert!(t.sequence() < deployed.sequence());
                assert_ne!(t.commit, deployed.commit);
            }
        }
    }

    /// "Last good" has one meaning: the newest Succeeded release of the environment, of
    /// another commit than the one asked about, and before a given place when one is given; a
    /// failed release rolls back to it.
    #[test]
    fn last_good_is_the_newest_success_of_the_environment_before_and_of_another_commit() {
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let b = release("production-b", 'b', 2, Phase::Succeeded, Reason::Push);
        let c = release("production-c", 'c', 3, Phase::RolledBack, Reason::Push);
        let mut elsewhere = release("main-d", 'd', 4, Phase::Succeeded, Reason::Push);
        elsewhere.environment = "main".into();
        let all = [a.clone(), b.clone(), c.clone(), elsewhere];
        let name = |r: Option<&TestRelease>| r.map(|r| r.name.clone());
        assert_eq!(
            name(last_good("production", &all, None, "")),
            Some(b.name.clone())
        );
        assert_eq!(
            name(last_good("production", &all, None, &sha('b'))),
            Some(a.name.clone())
        );
        assert_eq!(
            name(last_good(
                "production",
                &all,
                Some(&(2, "production-b".into())),
                ""
            )),
            Some(a.name.clone())
        );
        assert_eq!(
            name(last_good(
                "production",
                &all,
                Some(&(1, "production-a".into())),
                ""
            )),
            None
        );
        assert_eq!(name(last_good("main", &all, None, "")), Some("main-d".into()));
        assert_eq!(name(rollback_target(&c, &all)), Some(b.name.clone()));
        // A release of b's commit rolls back past b.
        let b_again = release("production-b-2", 'b', 5, Phase::Testing, Reason::Push);
        assert_eq!(name(rollback_target(&b_again, &all)), Some(a.name.clone()));
        assert_eq!(name(rollback_target(&a, &all)), None, "nothing before the first");
    }

    /// History is collected oldest first down to `keep`, but never a release in progress, the
    /// newest success, or the newest release that came from the branch.
    #[test]
    fn collection_keeps_the_newest_what_runs_and_what_the_tip_compares_with() {
        let old = release("production-1", 'a', 1, Phase::Succeeded, Reason::Push);
        let good = release("production-2", 'b', 2, Phase::Succeeded, Reason::Push);
        let failed = release("production-3", 'c', 3, Phase::RolledBack, Reason::Push);
        let manual = release("production-4", 'b', 4, Phase::RolledBack, Reason::Manual);
        let running = release("production-5", 'd', 5, Phase::Testing, Reason::Manual);
        let all = [old, good, failed, manual, running];
        assert!(to_collect(&all, 10).is_empty());
        let collected = to_collect(&all, 1);
        assert!(collected.contains(&"production-1".to_owned()), "{collected:?}");
        assert!(
            !collected.contains(&"production-2".to_owned()),
            "the newest success stays"
        );
        assert!(
            !collected.contains(&"production-3".to_owned()),
            "the newest from the branch stays"
        );
        assert!(
            !collected.contains(&"production-5".to_owned()),
            "in progress stays"
        );
        assert_eq!(to_collect(&all, 3), ["production-1"]);
    }

    /// What runs: the newest release when it Succeeded, the release a rolled-back one went back
    /// to, and the newest success while the newest is in flight or failed before applying.
    #[test]
    fn what_runs_follows_the_newest_releases_phase() {
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let b = release("production-b", 'b', 2, Phase::Succeeded, Reason::Push);
        let deployed = |all: &[TestRelease]| {
            releases_of("production", all)
                .and_then(|f| f.deployed)
                .map(|d| d.name.clone())
        };
        assert_eq!(deployed(&[a.clone(), b.clone()]), Some("production-b".into()));
        let mut back = release("production-c", 'c', 3, Phase::RolledBack, Reason::Push);
        if let Some(status) = back.status.as_mut() {
            status.rolled_back_to = Some("production-a".into());
        }
        assert_eq!(
            deployed(&[a.clone(), b.clone(), back]),
            Some("production-a".into()),
            "where the rollback went, not the newest success"
        );
        let flying = release("production-d", 'd', 3, Phase::Applying, Reason::Push);
        assert_eq!(
            deployed(&[a.clone(), b.clone(), flying.clone()]),
            Some("production-b".into())
        );
        // A release in Applying has changed the cluster: the one before may not run again.
        assert_eq!(
            standing("production", &[a.clone(), b.clone(), flying], "production-b"),
            Standing::Retired
        );
        let pending = release("production-e", 'e', 3, Phase::Pending, Reason::Push);
        assert_eq!(
            standing("production", &[a, b, pending], "production-b"),
            Standing::MayRunAgain
        );
        assert_eq!(
            releases_of::<TestRelease>("production", &[]).map(|f| f.latest.name.clone()),
            None
        );
    }

    /// A failed tip whose rollback is still to come (Failed, its tests failed) or under way is
    /// progressing, not yet a failed tip; once it rolled back, it is.
    #[test]
    fn a_tip_still_rolling_back_is_not_yet_a_failed_tip() {
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let mut failed = release("production-b", 'b', 2, Phase::Failed, Reason::Push);
        if let Some(status) = failed.status.as_mut() {
            status
                .conditions
                .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                    type_: crate::conditions::READY.into(),
                    status: "False".into(),
                    reason: crate::reason::StatusReason::TestsFailed.label().into(),
                    message: String::new(),
                    last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                    observed_generation: None,
                });
        }
        assert_eq!(
            reason(Some('b'), false, &[a.clone(), failed]),
            SyncReason::Progressing
        );
        let rolling = release("production-b", 'b', 2, Phase::RollingBack, Reason::Push);
        assert_eq!(
            reason(Some('b'), false, &[a.clone(), rolling]),
            SyncReason::Progressing
        );
        let back = release("production-b", 'b', 2, Phase::RolledBack, Reason::Push);
        assert_eq!(reason(Some('b'), false, &[a, back]), SyncReason::TipFailed);
    }

    #[test]
    fn stalled_and_reconciling_are_told_apart_for_each_reason() {
        for reason in SyncReason::ALL {
            let stalled = matches!(
                reason,
                SyncReason::TipFailed
                    | SyncReason::ManualRollback
                    | SyncReason::BranchMissing
                    | SyncReason::Held
            );
            assert_eq!(reason.is_stalled(), stalled, "{reason:?}");
            assert!(!(reason.is_stalled() && reason.is_reconciling()), "{reason:?}");
        }
    }

    /// While test releases of a bisection run, the branch's view is the failed tip's release:
    /// Bisecting (reconciling); once ended, TipFailed with what the bisection found.
    #[test]
    fn a_bisection_shows_as_bisecting_then_its_finding_with_the_failed_tip() {
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let mut c = release("production-c", 'c', 2, Phase::RolledBack, Reason::Push);
        let (bisection, _) = crate::bisect::start(
            &sha('a'),
            vec![sha('b'), sha('c')],
            jiff::Timestamp::UNIX_EPOCH,
            crate::bisect::Settings::default(),
        )
        .unwrap();
        if let Some(status) = c.status.as_mut() {
            status.bisection = Some(bisection.clone());
        }
        let test = release("production-c-b1-bbbbbbb", 'b', 3, Phase::Testing, Reason::Bisect);
        let all = [a.clone(), c.clone(), test.clone()];
        assert_eq!(reason(Some('c'), false, &all), SyncReason::Bisecting);
        assert!(SyncReason::Bisecting.is_reconciling());
        let mut ended = bisection;
        ended.stage = crate::bisect::Stage::Named { index: 0 };
        ended.message = Some("first bad commit: bbbbbbb".into());
        if let Some(status) = c.status.as_mut() {
            status.bisection = Some(ended);
        }
        let (why, said) = sync(
            "production",
            "production",
            Some(&sha('c')),
            false,
            &[a, c, test],
            None,
        );
        assert_eq!(why, SyncReason::TipFailed);
        assert!(said.contains("first bad commit: bbbbbbb"), "{said}");
    }

    #[test]
    fn a_manual_rollback_holds_and_says_so() {
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let b = release("production-b", 'b', 2, Phase::Succeeded, Reason::Push);
        let back = release("production-a-r", 'a', 3, Phase::Succeeded, Reason::Rollback);
        assert_eq!(
            reason(Some('b'), false, &[a, b, back]),
            SyncReason::ManualRollback
        );
    }

    #[test]
    fn the_deployed_releases_verification_shows_while_it_is_the_newest() {
        let d = Declared {
            name: "production".into(),
            branch: "production".into(),
            namespace: "shop".into(),
        };
        let mut a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let at = |s| jiff::Timestamp::from_second(s).unwrap();
        let failing = crate::status::TestResult {
            name: "home".into(),
            verdict: crate::status::TestVerdict::Failed,
            duration_millis: None,
            message: "HTTP 503".into(),
            log: String::new(),
        };
        crate::verification::record(a.status.as_mut().unwrap(), at(50), vec![failing]);
        let tip = sha('a');
        let releases = [a.clone()];
        let observed = Observed {
            declared: &d,
            tip: Some(&tip),
            branch_missing: false,
            releases: &releases,
            handled_tip: None,
            generation: Some(1),
            source: None,
            hold: None,
        };
        let now = Time(at(100));
        let shown = status(&observed, &ShipEnvironmentStatus::default(), &now);
        let verified = shown.conditions.iter().find(|c| c.type_ == VERIFIED).unwrap();
        assert_eq!(
            (
                verified.status.as_str(),
                verified.reason.as_str(),
                verified.message.as_str()
            ),
            ("False", "Failed", "test home failed: HTTP 503")
        );
        // Rolled back from a newer release: what runs is not verified, so nothing is shown.
        let mut b = release("production-b", 'b', 2, Phase::RolledBack, Reason::Push);
        b.status.as_mut().unwrap().rolled_back_to = Some("production-a".into());
        let releases = [a, b];
        let rolled_back = Observed {
            releases: &releases,
            ..observed
        };
        let shown = status(&rolled_back, &shown, &now);
        assert!(
            shown.conditions.iter().all(|c| c.type_ != VERIFIED),
            "{:?}",
            shown.conditions
        );
    }

    #[test]
    fn status_keeps_times_and_the_handled_tip() {
        let d = Declared {
            name: "production".into(),
            branch: "production".into(),
            namespace: "shop".into(),
        };
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let releases = [a];
        let tip = sha('a');
        let observed = Observed {
            declared: &d,
            tip: Some(&tip),
            branch_missing: false,
            releases: &releases,
            handled_tip: Some(&tip),
            generation: Some(1),
            source: Some((true, "Fetched", "fetched in 3 ms")),
            hold: None,
        };
        let t1 = Time(jiff::Timestamp::from_second(100).unwrap());
        let first = status(&observed, &ShipEnvironmentStatus::default(), &t1);
        let get =
            |s: &ShipEnvironmentStatus, t: &str| s.conditions.iter().find(|c| c.type_ == t).cloned().unwrap();
        assert_eq!(get(&first, IN_SYNC).status, "True");
        assert_eq!(get(&first, READY).status, "True");
        assert_eq!(get(&first, BRANCH_MISSING).status, "False");
        assert_eq!(get(&first, SOURCE_READY).message, "the repository is fetched");
        let refused = Observed {
            source: Some((
                false,
                "AuthenticationFailed",
                "the remote refused the credentials",
            )),
            ..observed
        };
        let refused = status(&refused, &first, &t1);
        assert_eq!(get(&refused, SOURCE_READY).status, "False");
        assert_eq!(get(&refused, SOURCE_READY).reason, "AuthenticationFailed");
        assert_eq!(first.deployed.as_ref().unwrap().name, "production-a");
        assert_eq!(first.tip.as_ref().unwrap().short_commit, "aaaaaaa");

        // later, the branch is deleted; this process has handled nothing since a restart
        let t2 = Time(jiff::Timestamp::from_second(200).unwrap());
        let gone = Observed {
            branch_missing: true,
            handled_tip: None,
            ..observed
        };
        let second = status(&gone, &first, &t2);
        assert_eq!(second.last_handled_tip.as_deref(), Some(tip.as_str()));
        assert_eq!(get(&second, BRANCH_MISSING).status, "True");
        assert_eq!(get(&second, BRANCH_MISSING).last_transition_time, t2);
        assert_eq!(get(&second, STALLED).status, "True");
        assert_eq!(get(&second, IN_SYNC).reason, "BranchMissing");
        // a look that finds nothing new keeps every time, so it writes nothing
        let t3 = Time(jiff::Timestamp::from_second(300).unwrap());
        assert_eq!(status(&gone, &second, &t3), second);
    }

    /// A hold stops the tip, not what runs or is under way: a tip without a release waits
    /// (Held, Stalled, recorded once each, newest kept), a release already under way goes on,
    /// and a resume forgets what was held.
    #[test]
    fn a_hold_keeps_tips_waiting_and_records_each() {
        let d = Declared {
            name: "production".into(),
            branch: "production".into(),
            namespace: "shop".into(),
        };
        let hold = Hold {
            reason: "incident 42".into(),
            by: "alice".into(),
            since: Some(Time(jiff::Timestamp::from_second(50).unwrap())),
            freeze: false,
        };
        let a = release("production-a", 'a', 1, Phase::Succeeded, Reason::Push);
        let releases = [a.clone()];
        let (tip_a, tip_b, tip_c) = (sha('a'), sha('b'), sha('c'));
        let held = |tip: &str, releases: &[TestRelease]| {
            sync(
                "production",
                "production",
                Some(tip),
                false,
                releases,
                Some(&hold),
            )
        };
        // what runs is the tip: held, and in sync all the same
        assert_eq!(held(&tip_a, &releases).0, SyncReason::Synced);
        // a new tip waits, and the sentence says who holds it and how to resume
        let (reason, message) = held(&tip_b, &releases);
        assert_eq!(reason, SyncReason::Held);
        assert!(reason.is_stalled() && !reason.is_reconciling());
        assert!(message.contains("held by alice"), "{message}");
        assert!(message.contains("incident 42"), "{message}");
        assert!(message.contains("kubectl ship resume production"), "{message}");
        // a release already under way (a forced promotion) is not held
        let b = release("production-b", 'b', 2, Phase::Testing, Reason::Promotion);
        assert_eq!(held(&tip_b, &[a.clone(), b]).0, SyncReason::Progressing);
        // a manual rollback then a hold: the hold says why the tip waits
        let back = release("production-a-r", 'a', 3, Phase::Succeeded, Reason::Rollback);
        assert_eq!(held(&tip_b, &[a.clone(), back]).0, SyncReason::Held);

        fn looked<'a>(
            declared: &'a Declared,
            releases: &'a [TestRelease],
            tip: &'a str,
            hold: Option<&'a Hold>,
        ) -> Observed<'a, TestRelease> {
            Observed {
                declared,
                tip: Some(tip),
                branch_missing: false,
                releases,
                handled_tip: None,
                generation: Some(1),
                source: None,
                hold,
            }
        }
        let observed = |tip, hold| looked(&d, &releases, tip, hold);
        let hold = Some(&hold);
        let t = |s| Time(jiff::Timestamp::from_second(s).unwrap());
        let get =
            |s: &ShipEnvironmentStatus, t: &str| s.conditions.iter().find(|c| c.type_ == t).cloned().unwrap();
        let first = status(
            &observed(&tip_b, hold),
            &ShipEnvironmentStatus::default(),
            &t(100),
        );
        assert_eq!(get(&first, HELD).status, "True");
        assert_eq!(get(&first, STALLED).status, "True");
        assert_eq!(get(&first, IN_SYNC).reason, "Held");
        assert_eq!(first.held_commits.len(), 1);
        assert_eq!(first.held_commits[0].short_commit, "bbbbbbb");
        // the same tip at the next look is not recorded twice; a newer one is added
        let again = status(&observed(&tip_b, hold), &first, &t(200));
        assert_eq!(again, first, "nothing new: nothing to write");
        let second = status(&observed(&tip_c, hold), &again, &t(300));
        let shorts: Vec<&str> = second
            .held_commits
            .iter()
            .map(|h| h.short_commit.as_str())
            .collect();
        assert_eq!(shorts, ["bbbbbbb", "ccccccc"]);
        // bounded: the newest are kept
        let mut many = second.clone();
        many.held_commits = (0..HELD_COMMITS_KEPT + 3)
            .map(|n| HeldCommit {
                commit: format!("{n:040}"),
                short_commit: format!("{n:07}"),
                seen_at: None,
            })
            .collect();
        let bounded = status(&observed(&tip_c, hold), &many, &t(400));
        assert_eq!(bounded.held_commits.len(), HELD_COMMITS_KEPT);
        assert_eq!(bounded.held_commits.last().unwrap().short_commit, "ccccccc");
        // resumed: nothing held, the tip is owed a release
        let resumed = status(&observed(&tip_c, None), &second, &t(500));
        assert_eq!(get(&resumed, HELD).status, "False");
        assert_eq!(get(&resumed, HELD).last_transition_time, t(500));
        assert_eq!(get(&resumed, IN_SYNC).reason, "Pending");
        assert!(resumed.held_commits.is_empty());
    }
}
