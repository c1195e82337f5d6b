//! From branch tips to releases, as one pure function: [`step`] takes the tips still owed a
//! release ([`Tips`]) and what just happened ([`Event`]), and returns the new state and the
//! [`Effect`]s to carry out. A tip is never dropped: not because the API server was away when
//! it arrived, nor because its environment was held; a newer tip of the same branch replaces an
//! older one. How each tip was seen ([`TipSeen`]) decides whether a commit released before is
//! released again ([`tip_release`]): only a fetch that saw the branch move says it moved.
//!
//! | event | condition | effects | state |
//! |---|---|---|---|
//! | Started(tips in the mirror, tips the environments recorded) | | a round | each tip owed, seen by [`first_sight`] |
//! | Changed(branch, commit, kind) | force-pushed under a refusing policy, no retry pending | none | unchanged |
//! | Changed(branch, commit, kind) | force-pushed under a refusing policy, a retry pending | a round | retry cleared |
//! | Changed(branch, commit, Created) | | a round | owed, seen by [`first_sight`] against the recorded tip |
//! | Changed(branch, commit, FastForward or ForcePushed) | | a round | owed, Moved |
//! | Handled(branch, commit, Done) | the owed tip of branch is this commit | MarkHandled | recorded; no longer owed |
//! | Handled(branch, commit, Done) | a newer tip is owed | MarkHandled | recorded; the newer tip still owed |
//! | Handled(branch, commit, Retry) | | none | a retry pending |
//! | Handled(branch, commit, Held) | | none | still owed (a hold change wakes it, not a timer) |
//! | HoldsChanged or RetryDue | tips owed | a round | retry cleared |
//! | HoldsChanged or RetryDue | nothing owed | none | retry cleared |
//!
//! A round is `RecordEnvironments` (one look records every owed tip out of sync, before any
//! release exists), then one `Release` per owed tip, each answered by `Handled`.

use std::collections::BTreeMap;

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

/// What [`tip_release`] reads of an existing release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its environment.
    pub environment: &'a str,
    /// Its commit (full SHA).
    pub commit: &'a str,
    /// It came from the branch (a push or a promotion), not a manual rollback.
    pub from_branch: bool,
    /// Its place in its environment's order (`ship.dev/sequence`, then its name).
    pub sequence: (i64, &'a str),
}

/// What a branch tip at `commit` asks of `environment`, given the environment's `releases`:
/// `None` when the environment already follows it, else the name of a new release.
/// - The first release of a commit is [`crate::names::release_name`], whichever way the tip
///   was seen.
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
    releases: &[ReleaseView<'_>],
    seen: TipSeen,
) -> Option<String> {
    let base = crate::names::release_name(environment, commit);
    let taken = |name: &str| releases.iter().any(|r| r.name == name);
    if seen == TipSeen::Known {
        return (!taken(&base)).then_some(base);
    }
    let from_branch = releases
        .iter()
        .filter(|r| r.environment == environment && r.from_branch)
        .max_by_key(|r| r.sequence);
    if from_branch.is_some_and(|r| r.commit == commit) {
        return None;
    }
    if !taken(&base) {
        return Some(base);
    }
    (2..).map(|n| format!("{base}-{n}")).find(|name| !taken(name))
}

/// How a fetch saw a branch change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A branch seen for the first time (or a fresh mirror's first fetch).
    Created,
    /// Moved forwards.
    FastForward,
    /// Rewritten: the new tip does not descend from the old one.
    ForcePushed,
}

/// What became of a tip's release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its release was made, or it needs none.
    Done,
    /// The release could not be made now (the API server is away, for example): try again.
    Retry,
    /// The environment is held: try again when a hold changes.
    Held,
}

/// The tips still owed a release, and what the environments recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tips {
    /// Force-pushes make no release (`forcePush: refuse`).
    pub refuse_force_push: bool,
    /// By branch: the newest tip not yet handled, and how it was seen.
    pub owed: BTreeMap<String, (String, TipSeen)>,
    /// By branch: the tip last handled.
    pub recorded: BTreeMap<String, String>,
    /// A release could not be made: a round is due after the retry interval.
    pub retry: bool,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The loop started: the tips in the mirror, and the tips the environments last handled.
    Started {
        /// `(branch, commit)` of each followed branch the mirror has.
        known: Vec<(String, String)>,
        /// The environments' record, by branch.
        recorded: BTreeMap<String, String>,
    },
    /// A fetch saw a branch change.
    Changed {
        /// The branch.
        branch: String,
        /// Its new tip.
        commit: String,
        /// How.
        kind: ChangeKind,
    },
    /// The answer to [`Effect::Release`].
    Handled {
        /// The branch.
        branch: String,
        /// The tip.
        commit: String,
        /// What became of it.
        outcome: Outcome,
    },
    /// A person placed or lifted a hold.
    HoldsChanged,
    /// The retry interval passed with a retry pending.
    RetryDue,
}

/// Work for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ask the environments to record the tips as they stand (a moved tip: out of sync), and
    /// wait briefly until they have.
    RecordEnvironments,
    /// Make (or find) the release of this tip; answer with [`Event::Handled`].
    Release {
        /// The branch.
        branch: String,
        /// The tip.
        commit: String,
        /// How it was seen.
        seen: TipSeen,
    },
    /// Tell the environments this tip is handled.
    MarkHandled {
        /// The branch.
        branch: String,
        /// The tip.
        commit: String,
    },
}

/// One decision: the new state and the effects that follow, in order.
pub fn step(mut tips: Tips, event: Event) -> (Tips, Vec<Effect>) {
    let effects = match event {
        Event::Started { known, recorded } => {
            for (branch, commit) in known {
                let seen = first_sight(recorded.get(&branch).map(String::as_str), &commit);
                tips.owed.insert(branch, (commit, seen));
            }
            tips.recorded = recorded;
            round(&mut tips)
        }
        Event::Changed { kind, .. } if kind == ChangeKind::ForcePushed && tips.refuse_force_push => {
            // Nothing new to try; a pending retry is tried now.
            if tips.retry { round(&mut tips) } else { Vec::new() }
        }
        Event::Changed { branch, commit, kind } => {
            let seen = match kind {
                ChangeKind::FastForward | ChangeKind::ForcePushed => TipSeen::Moved,
                ChangeKind::Created => first_sight(tips.recorded.get(&branch).map(String::as_str), &commit),
            };
            tips.owed.insert(branch, (commit, seen));
            round(&mut tips)
        }
        Event::Handled {
            branch,
            commit,
            outcome,
        } => match outcome {
            Outcome::Done => {
                tips.recorded.insert(branch.clone(), commit.clone());
                if tips.owed.get(&branch).is_some_and(|(owed, _)| *owed == commit) {
                    tips.owed.remove(&branch);
                }
                vec![Effect::MarkHandled { branch, commit }]
            }
            Outcome::Retry => {
                tips.retry = true;
                Vec::new()
            }
            // Kept owed, not retried on a timer: a hold lifted wakes it.
            Outcome::Held => Vec::new(),
        },
        Event::HoldsChanged | Event::RetryDue => round(&mut tips),
    };
    (tips, effects)
}

/// Try every owed tip now.
fn round(tips: &mut Tips) -> Vec<Effect> {
    tips.retry = false;
    if tips.owed.is_empty() {
        return Vec::new();
    }
    std::iter::once(Effect::RecordEnvironments)
        .chain(tips.owed.iter().map(|(branch, (commit, seen))| Effect::Release {
            branch: branch.clone(),
            commit: commit.clone(),
            seen: *seen,
        }))
        .collect()
}

#[cfg(test)]
mod tests;
