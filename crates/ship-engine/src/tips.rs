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

pub use ship_core::tips::{TipSeen, first_sight};

/// What a branch tip at `commit` asks of `environment`, given the environment's `releases`
/// ([`ship_core::tips::tip_release`], read off the ShipReleases).
pub fn tip_release(
    environment: &str,
    commit: &str,
    releases: &[ShipRelease],
    seen: TipSeen,
) -> Option<String> {
    let sequences: Vec<(i64, String)> = releases.iter().map(sequence).collect();
    let views: Vec<ship_core::tips::ReleaseView<'_>> = releases
        .iter()
        .zip(&sequences)
        .map(|(r, (at, name))| ship_core::tips::ReleaseView {
            name: r.metadata.name.as_deref().unwrap_or_default(),
            environment: &r.spec.environment,
            commit: &r.spec.commit,
            from_branch: matches!(
                r.spec.reason,
                ship_api::Reason::Push | ship_api::Reason::Promotion
            ),
            sequence: (*at, name.as_str()),
        })
        .collect();
    ship_core::tips::tip_release(environment, commit, &views, seen)
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

use ship_core::tips::Outcome as Handled;

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
        Ok(TipOutcome::Bisecting(failed)) => {
            info!(environment, commit = %commit, branch, failed, "a bisection runs: the tip waits for it");
            Handled::Retry
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
/// must not lose a release), then every tip change the source reports. What to try, and when,
/// is [`ship_core::tips::step`]'s decision; this loop performs its effects.
pub async fn handle_tips(target: TipTarget, mut tips: mpsc::Receiver<TipChange>) {
    use ship_core::tips::{ChangeKind, Effect, Event, Tips, step};
    let known: Vec<(String, String)> = match target.repo.mirror.lock() {
        Ok(mirror) => target
            .branches
            .iter()
            .filter_map(|b| Some((b.clone(), mirror.tip(b)?.to_string())))
            .collect(),
        Err(_) => Vec::new(),
    };
    // The tips the environments last handled: a tip first seen without a fetch that saw it
    // move (in the mirror at start, or a fresh mirror's first fetch) is compared with them.
    let recorded = crate::environment::handled_tips(&target.client, &target.namespace).await;
    let mut machine = Tips {
        refuse_force_push: target.force_push == ForcePushPolicy::Refuse,
        ..Tips::default()
    };
    let mut holds = target.holds.clone();
    let mut event = Event::Started { known, recorded };
    loop {
        let (next, effects) = step(machine, event);
        machine = next;
        let mut work: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::RecordEnvironments => record_environments(&target).await,
                Effect::Release { branch, commit, seen } => {
                    let outcome = match git2::Oid::from_str(&commit) {
                        Ok(id) => release_tip(&target, &branch, id, seen).await,
                        // The mirror gave it: it is an id. Were it not, no retry could help.
                        Err(_) => Handled::Done,
                    };
                    let (next, more) = step(
                        machine,
                        Event::Handled {
                            branch,
                            commit,
                            outcome,
                        },
                    );
                    machine = next;
                    work.extend(more);
                }
                Effect::MarkHandled { branch, commit } => target.handled.send_modify(|h| {
                    h.insert(branch, commit);
                }),
            }
        }
        event = tokio::select! {
            change = tips.recv() => match change {
                Some(change) => Event::Changed {
                    branch: change.branch,
                    commit: change.new.to_string(),
                    kind: match change.kind {
                        TipChangeKind::Created => ChangeKind::Created,
                        TipChangeKind::FastForward => ChangeKind::FastForward,
                        TipChangeKind::ForcePushed => ChangeKind::ForcePushed,
                    },
                },
                None => return,
            },
            Ok(()) = holds.changed() => Event::HoldsChanged,
            () = tokio::time::sleep(RETRY_TIPS), if machine.retry => Event::RetryDue,
        };
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
    /// The tip asks for a release, and the bisection of the named failed release runs: it
    /// waits (tried again after the retry interval).
    Bisecting(String),
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
    // A bisection of the environment's failed range is running, or its end (the restore) is
    // not done yet: the tip waits for it (it ends itself, at the latest `bisect.maxDuration`
    // after it started, as Superseded).
    if let Some(bisecting) = releases.iter().find(|r| {
        r.status
            .as_ref()
            .and_then(|s| s.bisection.as_ref())
            .is_some_and(ship_api::bisect::Bisection::holds_new_tips)
    }) {
        return Ok(TipOutcome::Bisecting(
            bisecting.metadata.name.clone().unwrap_or_default(),
        ));
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

    /// The rule's cases are ship-core's; this checks what the engine reads off a ShipRelease:
    /// its reason (a manual rollback is not the branch) and its order.
    #[test]
    fn the_rule_reads_reason_and_order_off_the_releases() {
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        let first = release("main-aaaaaaaaaa", 'a', 1, Phase::Succeeded);
        let second = release("main-bbbbbbbbbb", 'b', 2, Phase::RolledBack);
        assert_eq!(
            tip_release("main", &a, &[first.clone(), second.clone()], TipSeen::Moved).as_deref(),
            Some("main-aaaaaaaaaa-2"),
            "the newest from the branch is b's"
        );
        let mut manual = release("main-aaaaaaaaaa-m", 'a', 4, Phase::Succeeded);
        manual.spec.reason = Reason::Manual;
        assert_eq!(
            tip_release("main", &b, &[first, second, manual], TipSeen::Moved),
            None,
            "a manual rollback does not count as the branch"
        );
    }
}
