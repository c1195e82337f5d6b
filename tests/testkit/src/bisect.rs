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
    let pushed = Instant::now();
    stack.remote.push("main", false)?;
    let tip = commits.last().cloned().unwrap_or_default();
    let failed = release_name("main", &tip);
    stack.settled(&failed, Phase::RolledBack, timeout).await?;
    let failed_release = pushed.elapsed();
    let rolled_back = Instant::now();
    let releases = stack.releases();
    let bisection = eventually("the bisection is reported", timeout, || {
        let (releases, failed) = (releases.clone(), failed.clone());
        async move {
            let release = releases.get(&failed).await?;
            Ok(release
                .status
                .and_then(|s| s.bisection)
                .filter(|b| b.reported_at.is_some()))
        }
    })
    .await?;
    Ok(Run {
        commits,
        failed,
        bisection,
        failed_release,
        to_culprit: rolled_back.elapsed(),
    })
}
