//! A failed push of many commits and its bisection, as the bisection e2e test and the
//! bisection benchmark run it: `k` commits on main, the `culprit`-th (from 1) breaks the `home`
//! test, the others touch a note; pushed at once.

use std::time::{Duration, Instant};

use ship_api::Phase;
use ship_api::bisect::Bisection;

use crate::cluster::eventually;
use crate::stack::{Stack, configmap, release_name};

/// What one run measured.
#[derive(Debug)]
pub struct Run {
    /// The commits pushed, oldest first.
    pub commits: Vec<String>,
    /// The failed release of the tip.
    pub failed: String,
    /// The bisection as reported.
    pub bisection: Bisection,
    /// From the push to the failed release rolled back: one release's cost, the reference.
    pub failed_release: Duration,
    /// From the rollback to the culprit reported: the bisection's cost.
    pub to_culprit: Duration,
}

/// Pushes the range on the deployed `stack` and waits (at most `timeout`) for the bisection of
/// its failed release to be reported.
pub async fn push_range_and_bisect(
    stack: &Stack,
    k: usize,
    culprit: usize,
    timeout: Duration,
) -> anyhow::Result<Run> {
    let commits = commit_range(stack, k, culprit)?;
    let pushed = Instant::now();
    stack.remote.push("main", false)?;
    let failed = failed_release(stack, &commits, timeout).await?;
    let failed_release = pushed.elapsed();
    let rolled_back = Instant::now();
    let bisection = reported(stack, &failed, timeout).await?;
    Ok(Run {
        commits,
        failed,
        bisection,
        failed_release,
        to_culprit: rolled_back.elapsed(),
    })
}

/// Commits `k` commits on main (not pushed), the `culprit`-th (from 1) breaking the `home`
/// test, the others touching a note; returns them, oldest first.
pub fn commit_range(stack: &Stack, k: usize, culprit: usize) -> anyhow::Result<Vec<String>> {
    let mut commits = Vec::new();
    let broken = configmap("broken");
    for i in 1..=k {
        let note = format!("note {i}\n");
        let file: (&str, &str) = if i == culprit {
            ("deploy/main/web.yaml", &broken)
        } else {
            ("notes.txt", &note)
        };
        commits.push(stack.remote.commit_files(&[file], &format!("change {i}"))?);
    }
    Ok(commits)
}

/// Waits for the release of the range's tip (the last of `commits`) to roll back; returns its
/// name.
pub async fn failed_release(stack: &Stack, commits: &[String], timeout: Duration) -> anyhow::Result<String> {
    let tip = commits.last().cloned().unwrap_or_default();
    let failed = release_name("main", &tip);
    stack.settled(&failed, Phase::RolledBack, timeout).await?;
    Ok(failed)
}

/// The bisection of `failed`, once it ended and was reported (at most `timeout`).
pub async fn reported(stack: &Stack, failed: &str, timeout: Duration) -> anyhow::Result<Bisection> {
    bisection_where(stack, failed, timeout, |b| b.reported_at.is_some()).await
}

/// The bisection of `failed` once `accept` holds of it (at most `timeout`).
pub async fn bisection_where(
    stack: &Stack,
    failed: &str,
    timeout: Duration,
    accept: impl Fn(&Bisection) -> bool,
) -> anyhow::Result<Bisection> {
    let releases = stack.releases();
    let accept = &accept;
    eventually("the bisection", timeout, || {
        let releases = releases.clone();
        async move {
            let release = releases.get(failed).await?;
            Ok(release.status.and_then(|s| s.bisection).filter(|b| accept(b)))
        }
    })
    .await
}

/// A history a seed draws: `k` commits along main's first parents, some of them merges of a
/// short side branch; the first bad one, `culprit` (an index), breaks the app itself or, when
/// it is a merge, through a commit of its side branch.
#[derive(Debug, Clone)]
pub struct History {
    /// Commits on main's first-parent line.
    pub k: usize,
    /// Index of the first bad one.
    pub culprit: usize,
    /// For each, the side branch's length when it is a merge (0: an ordinary commit).
    pub merges: Vec<usize>,
}

impl History {
    /// Draws one: 2 to `max_k` commits, about one in three a merge of 1 to 3 side commits.
    pub fn draw(rng: &mut crate::seeded::Seeded, max_k: usize) -> Self {
        let k = 2 + rng.below(max_k.saturating_sub(1));
        let culprit = rng.below(k);
        let merges = (0..k)
            .map(|_| if rng.chance(33) { 1 + rng.below(3) } else { 0 })
            .collect();
        Self { k, culprit, merges }
    }

    /// Commits it on main (not pushed); returns main's first-parent line, oldest first. A
    /// merge's side branch starts at main's tip before it, touches its own notes, and (the
    /// culprit's) breaks the app in its last commit; `--no-ff` keeps the merge a commit.
    pub fn commit(&self, stack: &Stack, round: usize) -> anyhow::Result<Vec<String>> {
        let broken = configmap("broken");
        let mut line = Vec::new();
        for (i, side) in self.merges.iter().copied().enumerate() {
            let bad = i == self.culprit;
            if side == 0 {
                let note = format!("round {round} note {i}\n");
                let file: (&str, &str) = if bad {
                    ("deploy/main/web.yaml", &broken)
                } else {
                    ("notes.txt", &note)
                };
                line.push(
                    stack
                        .remote
                        .commit_files(&[file], &format!("round {round} change {i}"))?,
                );
                continue;
            }
            let branch = format!("side-{round}-{i}");
            stack.remote.git(&["checkout", "-q", "-b", &branch])?;
            for j in 0..side {
                let path = format!("side/{round}-{i}-{j}.txt");
                let note = format!("side {j}\n");
                let file: (&str, &str) = if bad && j + 1 == side {
                    ("deploy/main/web.yaml", &broken)
                } else {
                    (&path, &note)
                };
                stack
                    .remote
                    .commit_files(&[file], &format!("round {round} side {i}.{j}"))?;
            }
            stack.remote.git(&["checkout", "-q", "main"])?;
            stack.remote.git(&[
                "merge",
                "-q",
                "--no-ff",
                "-m",
                &format!("round {round} merge {i}"),
                &branch,
            ])?;
            line.push(stack.remote.git(&["rev-parse", "HEAD"])?);
        }
        Ok(line)
    }
}
