//! From branch tips to releases: the rule that turns each tip the source reports (and each tip
//! already in the mirror at start) into the ShipRelease it asks for ([`plan::tip_release`],
//! [`plan::first_sight`]), retrying while the API server is away, and telling the environments
//! first so that a moved tip is recorded out of sync before its release exists.

use std::time::Duration;

use ship_git::mirror::ForcePushPolicy;
use ship_git::{TipChange, TipChangeKind};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use kube::Client;

use crate::plan;

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
}

impl std::fmt::Debug for TipTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TipTarget")
            .field("namespace", &self.namespace)
            .field("branches", &self.branches)
            .finish_non_exhaustive()
    }
}

/// Makes (or finds) the release of `commit`, the tip of `branch`. `false` when it could not be
/// made now (the API server is away, for example) and must be tried again.
async fn release_tip(
    target: &TipTarget,
    branch: &str,
    commit: git2::Oid,
    seen: crate::plan::TipSeen,
) -> bool {
    let repo = target.repo.clone();
    let (c, b) = (commit.to_string(), branch.to_owned());
    // The commit's own ship.yaml says which environment the branch deploys. When it cannot be
    // read, the environment named like the branch gets a release that fails with the reason.
    let environment = match tokio::task::spawn_blocking(move || repo.environment_for(&c, &b)).await {
        Ok(Ok(environment)) => environment,
        Ok(Err(crate::repo::LoadError::NoEnvironment(_))) => {
            info!(branch, commit = %commit, "no environment deploys this branch; no release");
            return true;
        }
        Ok(Err(err)) => {
            warn!(branch, commit = %commit, reason = err.label(), error = %err, "cannot read ship.yaml at the tip");
            branch.to_owned()
        }
        Err(err) => {
            warn!(error = %err, "ship.yaml task failed");
            return false;
        }
    };
    let commit_text = commit.to_string();
    let new = crate::releases::NewRelease {
        environment: &environment,
        branch,
        commit: &commit_text,
        reason: ship_api::Reason::Push,
        promotion: None,
    };
    match crate::releases::create_for_tip(&target.client, &target.namespace, &new, seen).await {
        Ok(Some(release)) => {
            info!(environment, commit = %commit, release, branch, "release created");
            true
        }
        Ok(None) => {
            tracing::debug!(environment, commit = %commit, "the environment already follows this tip");
            true
        }
        Err(err) => {
            warn!(environment, commit = %commit, branch, error = %err, "cannot create the release; retrying");
            false
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
    use plan::{TipSeen, first_sight};
    let mut recorded = crate::environment::handled_tips(&target.client, &target.namespace).await;
    let mut owed: std::collections::BTreeMap<String, (git2::Oid, TipSeen)> = known
        .into_iter()
        .map(|(b, c)| {
            let seen = first_sight(recorded.get(&b).map(String::as_str), &c.to_string());
            (b, (c, seen))
        })
        .collect();
    // Tips still owed a release, by branch (a newer tip replaces an older one): a tip is never
    // dropped because the API server was away when it arrived. How each was seen decides
    // whether a commit released before is released again (`plan::tip_release`): only a fetch
    // that saw the branch move says it moved.
    loop {
        let branches: Vec<(String, (git2::Oid, TipSeen))> =
            owed.iter().map(|(b, c)| (b.clone(), *c)).collect();
        // One look records every owed tip (the mirror holds them all), before any release.
        if !branches.is_empty() {
            record_environments(&target).await;
        }
        for (branch, (commit, seen)) in branches {
            if release_tip(&target, &branch, commit, seen).await {
                recorded.insert(branch.clone(), commit.to_string());
                target.handled.send_modify(|h| {
                    h.insert(branch.clone(), commit.to_string());
                });
                if owed.get(&branch).map(|o| o.0) == Some(commit) {
                    owed.remove(&branch);
                }
            }
        }
        let change = if owed.is_empty() {
            tips.recv().await
        } else {
            match tokio::time::timeout(RETRY_TIPS, tips.recv()).await {
                Ok(change) => change,
                Err(_elapsed) => continue,
            }
        };
        let Some(change) = change else { return };
        if change.kind == TipChangeKind::ForcePushed && target.force_push == ForcePushPolicy::Refuse {
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
