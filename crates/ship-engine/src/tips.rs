//! From branch tips to releases: the rule that turns each tip the source reports (and each tip
//! already in the mirror at start) into the ShipRelease it asks for ([`tip_release`],
//! [`first_sight`], pure), retrying while the API server is away, and telling the environments
//! first so that a moved tip is recorded out of sync before its release exists.

use std::time::Duration;

use ship_git::mirror::ForcePushPolicy;
use ship_git::{TipChange, TipChangeKind};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use kube::{Api, Client};

use ship_api::{ShipRelease, keys};

use crate::releases::sequence;
pub use ship_api::names::release_name;

/// How a tip was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TipSeen {
    /// In the mirror at start, or a branch seen for the first time: possibly older than what
    /// this controller did since (a promotion it pushed that the mirror has not fetched yet).
    Known,
    /// A fetch saw the branch move to it (forwards, or rewritten).
    Moved,
}

/// How a tip seen without a fetch that saw it move (in the mirror at start, or the first fetch
/// of a fresh mirror) counts: [`TipSeen::Moved`] when it differs from the tip the environment
/// last handled (`recorded`: the branch moved while no controller watched, a force-push back
/// during a restart for example), else [`TipSeen::Known`]. Without a record it is Known: it
/// may be older than what this controller did (a promotion pushed but not fetched yet).
pub fn first_sight(recorded: Option<&str>, commit: &str) -> TipSeen {
    match recorded {
        Some(handled) if handled != commit => TipSeen::Moved,
        _ => TipSeen::Known,
    }
}

/// What a branch tip at `commit` asks of `environment`, given the environment's `releases`:
/// `None` when the environment already follows it, else the name of a new release.
/// - The first release of a commit is [`release_name`], whichever way the tip was seen.
/// - A tip the branch *moved* to gets a release unless the newest release that came from the
///   branch (by a push or a promotion) is of this commit (deployed, deploying, or quarantined
///   after failing here). So when the branch comes back to a commit released before (a
///   force-push backwards, a reset), the new release is `<name>-2`, `-3`, ..., its name and
///   history telling it from the first time.
/// - A tip only [`TipSeen::Known`] never gets a second release: it may be stale.
/// - Manual rollbacks are not from the branch: a tip that has not moved does not undo one.
pub fn tip_release(
    environment: &str,
    commit: &str,
    releases: &[ShipRelease],
    seen: TipSeen,
) -> Option<String> {
    let base = release_name(environment, commit);
    let taken = |name: &str| releases.iter().any(|r| r.metadata.name.as_deref() == Some(name));
    if seen == TipSeen::Known {
        return (!taken(&base)).then_some(base);
    }
    let from_branch = releases
        .iter()
        .filter(|r| r.spec.environment == environment)
        .filter(|r| {
            matches!(
                r.spec.reason,
                ship_api::Reason::Push | ship_api::Reason::Promotion
            )
        })
        .max_by_key(|r| sequence(r));
    if from_branch.is_some_and(|r| r.spec.commit == commit) {
        return None;
    }
    if !taken(&base) {
        return Some(base);
    }
    (2..).map(|n| format!("{base}-{n}")).find(|name| !taken(name))
}

/// Where tips become releases.
#[derive(Clone)]
pub struct TipTarget {
    /// Client of the cluster holding the ShipReleases.
    pub client: Client,
    /// Namespace the ShipReleases are created in.
    pub namespace: String,
    /// The repository.
    pub repo: crate::repo::Repo,
    /// Branches followed.
    pub branches: Vec<String>,
    /// Refused force-pushes make no release.
    pub force_push: ForcePushPolicy,
    /// Tips handled (a release made or found), by branch: the environments record them.
    pub handled: watch::Sender<std::collections::BTreeMap<String, String>>,
    /// Asks the environments to record what they see now (a moved tip: out of sync), before
    /// the release that follows the tip is made.
    pub look_now: mpsc::Sender<crate::environment::LookNow>,
    /// The environments a person holds (from the environments' keeper): a change wakes the
    /// tips a hold kept back.
    pub holds: watch::Receiver<std::collections::BTreeSet<String>>,
    /// The engine's clock: a new release's place among its environment's (`ship.dev/sequence`).
    pub clock: crate::clock::Clock,
}

impl std::fmt::Debug for TipTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TipTarget")
            .field("namespace", &self.namespace)
            .field("branches", &self.branches)
            .finish_non_exhaustive()
    }
}

/// What became of a tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Its release was made, or it needs none.
    Done,
    /// The release could not be made now (the API server is away, for example): try again.
    Retry,
    /// The environment is held: try again when a hold changes.
    Held,
}

/// Makes (or finds) the release of `commit`, the tip of `branch`.
async fn release_tip(target: &TipTarget, branch: &str, commit: git2::Oid, seen: TipSeen) -> Handled {
    let repo = target.repo.clone();
    let (c, b) = (commit.to_string(), branch.to_owned());
    // The commit's own ship.yaml says which environment the branch deploys. When it cannot be
    // read, the environment named like the branch gets a release that fails with the reason.
    let environment = match tokio::task::spawn_blocking(move || repo.environment_for(&c, &b)).await {
        Ok(Ok(environment)) => environment,
        Ok(Err(crate::repo::LoadError::NoEnvironment(_))) => {
            info!(branch, commit = %commit, "no environment deploys this branch; no release");
            return Handled::Done;
        }
        Ok(Err(err)) => {
            warn!(branch, commit = %commit, reason = err.label(), error = %err, "cannot read ship.yaml at the tip");
            branch.to_owned()
        }
        Err(err) => {
            warn!(error = %err, "ship.yaml task failed");
            return Handled::Retry;
        }
    };
    let commit_text = commit.to_string();
    let new = crate::releases::NewRelease {
        environment: &environment,
        branch,
        commit: &commit_text,
        reason: ship_api::Reason::Push,
        promotion: None,
        sequence_millis: (target.clock)().as_millisecond(),
    };
    match create_for_tip(&target.client, &target.namespace, &new, seen).await {
        Ok(TipOutcome::Created(release)) => {
            info!(environment, commit = %commit, release, branch, "release created");
            Handled::Done
        }
        Ok(TipOutcome::Follows) => {
            tracing::debug!(environment, commit = %commit, "the environment already follows this tip");
            Handled::Done
        }
        Ok(TipOutcome::Held) => {
            info!(environment, commit = %commit, branch, "the environment is held: no release until it resumes");
            Handled::Held
        }
        Err(err) => {
            warn!(environment, commit = %commit, branch, error = %err, "cannot create the release; retrying");
            Handled::Retry
        }
    }
}

/// Longest wait for the environments to record a moved tip; the release is made regardless.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Asks the environments to record the tips as they stand, and waits (briefly) until they have.
async fn record_environments(target: &TipTarget) {
    let (answer, written) = tokio::sync::oneshot::channel();
    if target.look_now.send(answer).await.is_ok() {
        let _ = tokio::time::timeout(RECORD_WAIT, written).await;
    }
}

/// How often tips whose release could not be made are tried again.
const RETRY_TIPS: Duration = Duration::from_secs(2);

/// Turns tips into releases: first the tips already in the mirror (a restart after a fetch
/// must not lose a release), then every tip change the source reports.
pub async fn handle_tips(target: TipTarget, mut tips: mpsc::Receiver<TipChange>) {
    let known: Vec<(String, git2::Oid)> = match target.repo.mirror.lock() {
        Ok(mirror) => target
            .branches
            .iter()
            .filter_map(|b| Some((b.clone(), mirror.tip(b)?)))
            .collect(),
        Err(_) => Vec::new(),
    };
    // The tips the environments last handled: a tip first seen without a fetch that saw it
    // move (in the mirror at start, or a fresh mirror's first fetch) is compared with them.
    use {TipSeen, first_sight};
    let mut recorded = crate::environment::handled_tips(&target.client, &target.namespace).await;
    let mut owed: std::collections::BTreeMap<String, (git2::Oid, TipSeen)> = known
        .into_iter()
        .map(|(b, c)| {
            let seen = first_sight(recorded.get(&b).map(String::as_str), &c.to_string());
            (b, (c, seen))
        })
        .collect();
    // Tips still owed a release, by branch (a newer tip replaces an older one): a tip is never
    // dropped because the API server was away when it arrived, nor because its environment
    // was held. How each was seen decides whether a commit released before is released again
    // (`tip_release`): only a fetch that saw the branch move says it moved.
    let mut holds = target.holds.clone();
    let mut try_now = true;
    loop {
        let branches: Vec<(String, (git2::Oid, TipSeen))> =
            owed.iter().map(|(b, c)| (b.clone(), *c)).collect();
        // One look records every owed tip (the mirror holds them all), before any release.
        if !branches.is_empty() && try_now {
            record_environments(&target).await;
        }
        let mut retry = false;
        for (branch, (commit, seen)) in branches.into_iter().filter(|_| try_now) {
            match release_tip(&target, &branch, commit, seen).await {
                Handled::Done => {
                    recorded.insert(branch.clone(), commit.to_string());
                    target.handled.send_modify(|h| {
                        h.insert(branch.clone(), commit.to_string());
                    });
                    if owed.get(&branch).map(|o| o.0) == Some(commit) {
                        owed.remove(&branch);
                    }
                }
                Handled::Retry => retry = true,
                // Kept owed, not retried on a timer: a hold lifted wakes it.
                Handled::Held => {}
            }
        }
        try_now = true;
        let change = tokio::select! {
            change = tips.recv() => change,
            Ok(()) = holds.changed() => continue,
            () = tokio::time::sleep(RETRY_TIPS), if retry => continue,
        };
        let Some(change) = change else { return };
        if change.kind == TipChangeKind::ForcePushed && target.force_push == ForcePushPolicy::Refuse {
            // Nothing new to try; a held tip waits for its hold to change.
            try_now = retry;
            continue;
        }
        let seen = match change.kind {
            TipChangeKind::FastForward | TipChangeKind::ForcePushed => TipSeen::Moved,
            TipChangeKind::Created => first_sight(
                recorded.get(&change.branch).map(String::as_str),
                &change.new.to_string(),
            ),
        };
        owed.insert(change.branch, (change.new, seen));
    }
}

/// What [`create_for_tip`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TipOutcome {
    /// It made the release named.
    Created(String),
    /// The environment already follows the tip (or the release existed).
    Follows,
    /// The tip asks for a release, and a person holds the environment: none was made.
    Held,
}

/// Makes the release a branch tip asks for ([`tip_release`]), reading the environment's
/// releases in `namespace` first, and then, when one is due, its hold (read from the API
/// server, not a cache: a hold placed just before a push must stop it).
pub async fn create_for_tip(
    client: &Client,
    namespace: &str,
    new: &crate::releases::NewRelease<'_>,
    seen: TipSeen,
) -> Result<TipOutcome, kube::Error> {
    let selector = format!("{}={}", keys::ENVIRONMENT, new.environment);
    let params = kube::api::ListParams::default().labels(&selector);
    let releases = crate::releases::list_readable(client, namespace, &params).await?;
    let Some(name) = tip_release(new.environment, new.commit, &releases, seen) else {
        return Ok(TipOutcome::Follows);
    };
    if crate::environment::hold_of(client, namespace, new.environment)
        .await?
        .is_some()
    {
        return Ok(TipOutcome::Held);
    }
    let object = crate::releases::named_release_object(new, &name);
    let api: Api<ShipRelease> = Api::namespaced(client.clone(), namespace);
    let created = crate::releases::create_or_stand(&api, &object).await?;
    Ok(if created {
        TipOutcome::Created(name)
    } else {
        TipOutcome::Follows
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::release;
    use ship_api::{Phase, Reason};
    #[test]
    fn a_tip_gets_a_release_unless_the_branch_already_led_there() {
        let with_reason = |mut r: ShipRelease, reason: Reason| {
            r.spec.reason = reason;
            r
        };
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        // nothing yet: the first release of the tip
        assert_eq!(
            tip_release("main", &a, &[], TipSeen::Moved).as_deref(),
            Some("main-aaaaaaaaaa")
        );
        let first = release("main-aaaaaaaaaa", 'a', 1, Phase::Succeeded);
        assert_eq!(
            tip_release("main", &a, std::slice::from_ref(&first), TipSeen::Moved),
            None,
            "already there"
        );
        // the branch moves on, then is force-pushed back: a second release of a, told apart
        let second = release("main-bbbbbbbbbb", 'b', 2, Phase::RolledBack);
        let both = [first.clone(), second.clone()];
        assert_eq!(
            tip_release("main", &b, &both, TipSeen::Moved),
            None,
            "b is quarantined, not re-released"
        );
        assert_eq!(
            tip_release("main", &a, &both, TipSeen::Moved).as_deref(),
            Some("main-aaaaaaaaaa-2")
        );
        let again = release("main-aaaaaaaaaa-2", 'a', 3, Phase::Succeeded);
        let three = [first.clone(), second.clone(), again];
        assert_eq!(tip_release("main", &a, &three, TipSeen::Moved), None);
        assert_eq!(
            tip_release("main", &b, &three, TipSeen::Moved).as_deref(),
            Some("main-bbbbbbbbbb-2")
        );
        // a manual rollback is not the branch: the tip it rolled away from does not come back
        let manual = with_reason(
            release("main-aaaaaaaaaa-m", 'a', 4, Phase::Succeeded),
            Reason::Manual,
        );
        let rolled = [first, second.clone(), manual];
        assert_eq!(tip_release("main", &b, &rolled, TipSeen::Moved), None);
        // other environments' releases do not count
        let prod = with_reason(
            release("production-aaaaaaaaaa", 'a', 5, Phase::Succeeded),
            Reason::Promotion,
        );
        let mut prod = prod;
        prod.spec.environment = "production".into();
        assert_eq!(
            tip_release("main", &b, &[second.clone(), prod], TipSeen::Moved).as_deref(),
            None
        );
        // first sight: moved only when the environment last handled another tip
        assert_eq!(first_sight(None, &a), TipSeen::Known);
        assert_eq!(first_sight(Some(&a), &a), TipSeen::Known);
        assert_eq!(first_sight(Some(&b), &a), TipSeen::Moved);
        // a tip seen only at start (maybe stale: a promotion this controller pushed and the
        // mirror has not fetched) gets a first release, never a second one
        assert_eq!(
            tip_release("main", &a, std::slice::from_ref(&second), TipSeen::Known).as_deref(),
            Some("main-aaaaaaaaaa")
        );
        let promoted = with_reason(
            release("main-cccccccccc", 'c', 9, Phase::Succeeded),
            Reason::Promotion,
        );
        assert_eq!(tip_release("main", &b, &[second, promoted], TipSeen::Known), None);
    }
}
