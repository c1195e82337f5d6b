//! Pure: from ShipReleases and ShipPromotions to what `kubectl ship` prints, and the choices it
//! makes (what is deployed, what a rollback goes back to). Unit-tested with fixtures.

use jiff::Timestamp;
use serde::Serialize;
use ship_api::environment::IN_SYNC;
use ship_api::{Phase, ShipEnvironment, ShipPromotion, ShipRelease};

/// One release, as the plugin shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRow {
    /// Release name.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// Full commit SHA.
    pub commit: String,
    /// First line of the commit message, when the controller recorded it.
    pub subject: String,
    /// Why the release exists.
    pub reason: String,
    /// Phase (empty before the controller saw it).
    pub phase: String,
    /// `passed/total` tests.
    pub tests: String,
    /// Creation time.
    pub created: Option<Timestamp>,
    /// Latest status message.
    pub message: String,
    /// What its bisection found (a failed release of several commits): the sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bisection: Option<String>,
    /// The culprit its bisection named, with its failing test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit: Option<ship_api::bisect::Culprit>,
}

impl ReleaseRow {
    /// The row for `release`.
    pub fn of(release: &ShipRelease) -> Self {
        let status = release.status.as_ref();
        Self {
            name: release.metadata.name.clone().unwrap_or_default(),
            environment: release.spec.environment.clone(),
            commit: release.spec.commit.clone(),
            subject: status.and_then(|s| s.commit_subject.clone()).unwrap_or_default(),
            reason: release.spec.reason.as_str().to_owned(),
            phase: release.phase().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            tests: status.and_then(|s| s.test_summary.clone()).unwrap_or_default(),
            created: release.metadata.creation_timestamp.as_ref().map(|t| t.0),
            message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
            bisection: status
                .and_then(|s| s.bisection.as_ref())
                .map(|b| b.message.clone().unwrap_or_else(|| b.describe(None))),
            culprit: status
                .and_then(|s| s.bisection.as_ref())
                .and_then(|b| b.culprit.clone()),
        }
    }

    /// Lines to print under a table about this release's bisection: what it found, and the
    /// culprit's failing test (its name, message and the end of its log).
    pub fn bisection_lines(&self) -> Vec<String> {
        let Some(found) = &self.bisection else {
            return Vec::new();
        };
        let mut lines = vec![format!("{}: {found}", self.name)];
        if let Some(test) = self
            .culprit
            .as_ref()
            .and_then(|c| Some((c, c.failed_test.as_ref()?)))
        {
            lines.push(format!(
                "  failing on {} (release {}):",
                test.0.short_commit, test.0.release
            ));
            lines.extend(test.1.lines().map(|l| format!("    {l}")));
        }
        lines
    }

    /// The first seven characters of the commit.
    pub fn short(&self) -> &str {
        ship_api::names::short_sha(&self.commit)
    }
}

/// One environment at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// Environment.
    pub environment: String,
    /// The release whose commit runs there now (a rolled-back release's target, for example).
    pub deployed: Option<ReleaseRow>,
    /// The newest release (it may be in flight, or the one that was rolled back).
    pub latest: ReleaseRow,
    /// The newest release that Succeeded.
    pub last_good: Option<ReleaseRow>,
    /// What the environment's ShipEnvironment says (absent before shipd wrote one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncRow>,
}

/// Whether an environment runs its branch's tip, as its ShipEnvironment says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRow {
    /// The branch.
    pub branch: String,
    /// The branch's tip as last fetched (full SHA; empty before the first fetch).
    pub tip: String,
    /// `True` or `False`.
    pub in_sync: String,
    /// The `InSync` reason: `Synced`, `Progressing`, `TipFailed`, `BranchMissing`, ...
    pub reason: String,
    /// The sentence saying it.
    pub message: String,
    /// The hold on the environment, when a person holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<ship_api::Hold>,
    /// Tips the hold kept from releasing (short SHAs, oldest first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_commits: Vec<String>,
    /// The deployed release's continuous verification, when it has one: whether its last run
    /// passed, and what it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
}

/// The last continuous verification run of what an environment runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// Its last run passed.
    pub passed: bool,
    /// What it said (the failing tests and why).
    pub message: String,
}

impl SyncRow {
    /// The row for `environment`, once shipd wrote its InSync condition.
    pub fn of(environment: &ShipEnvironment) -> Option<Self> {
        let status = environment.status.as_ref()?;
        let in_sync = status.conditions.iter().find(|c| c.type_ == IN_SYNC)?;
        Some(Self {
            branch: environment.spec.branch.clone(),
            tip: status.tip.as_ref().map(|t| t.commit.clone()).unwrap_or_default(),
            in_sync: in_sync.status.clone(),
            reason: in_sync.reason.clone(),
            message: status.message.clone().unwrap_or_default(),
            hold: environment.spec.hold.clone(),
            held_commits: status
                .held_commits
                .iter()
                .map(|h| h.short_commit.clone())
                .collect(),
            verified: status
                .conditions
                .iter()
                .find(|c| c.type_ == ship_api::VERIFIED)
                .map(|c| Verified {
                    passed: c.status == "True",
                    message: c.message.clone(),
                }),
        })
    }
}

/// Releases newest first (by their sequence, as the controller orders them).
pub fn newest_first(releases: &[ShipRelease]) -> Vec<&ShipRelease> {
    ship_api::environment::newest_first(releases)
}

/// Every environment's status, by environment name, with what its ShipEnvironment says.
pub fn environments(releases: &[ShipRelease], kept: &[ShipEnvironment]) -> Vec<EnvironmentStatus> {
    let mut names: Vec<&str> = releases.iter().map(|r| r.spec.environment.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|env| {
            let found = ship_api::environment::releases_of(env, releases)?;
            Some(EnvironmentStatus {
                environment: env.to_owned(),
                deployed: found.deployed.map(ReleaseRow::of),
                latest: ReleaseRow::of(found.latest),
                last_good: found.last_good.map(ReleaseRow::of),
                sync: kept
                    .iter()
                    .find(|k| k.metadata.name.as_deref() == Some(env))
                    .and_then(SyncRow::of),
            })
        })
        .collect()
}

/// Why a rollback cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackProblem {
    /// The environment has no releases.
    #[error("environment {0:?} has no releases in this namespace")]
    NoReleases(String),
    /// No earlier good release to go back to.
    #[error(
        "{env} has no Succeeded release from before {deployed} came, of a commit that has not run since: pass --to COMMIT"
    )]
    NoEarlierGood {
        /// Environment.
        env: String,
        /// The short SHA deployed now.
        deployed: String,
    },
    /// `--to` matches no release of the environment.
    #[error("no release of {env} has a commit starting with {prefix:?}: see `kubectl ship history {env}`")]
    UnknownCommit {
        /// Environment.
        env: String,
        /// What was given.
        prefix: String,
    },
    /// `--to` is shorter than 4 characters or not hex.
    #[error("--to {0:?}: give at least 4 hex characters of a commit")]
    BadPrefix(String),
}

/// What a rollback of `env` goes back to: the release named by `to` (a commit prefix), or
/// [`ship_api::environment::manual_rollback_target`] of the deployed release. Returns the
/// release being rolled back (the newest) and the target.
pub fn rollback_target<'a>(
    releases: &'a [ShipRelease],
    env: &str,
    to: Option<&str>,
) -> Result<(&'a ShipRelease, &'a ShipRelease), RollbackProblem> {
    let of_env: Vec<&ShipRelease> = newest_first(releases)
        .into_iter()
        .filter(|r| r.spec.environment == env)
        .collect();
    let latest = *of_env
        .first()
        .ok_or_else(|| RollbackProblem::NoReleases(env.to_owned()))?;
    if let Some(prefix) = to {
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RollbackProblem::BadPrefix(prefix.to_owned()));
        }
        let prefix = prefix.to_ascii_lowercase();
        let matching = |r: &&&ShipRelease| r.spec.commit.starts_with(&prefix);
        // Prefer a release that Succeeded with that commit; any release of it will do.
        let target = of_env
            .iter()
            .filter(matching)
            .find(|r| r.phase() == Some(Phase::Succeeded))
            .or_else(|| of_env.iter().find(matching))
            .ok_or(RollbackProblem::UnknownCommit {
                env: env.to_owned(),
                prefix,
            })?;
        return Ok((latest, target));
    }
    let deployed = ship_api::environment::releases_of(env, releases)
        .and_then(|found| found.deployed)
        .unwrap_or(latest);
    let target = ship_api::environment::manual_rollback_target(env, releases, deployed).ok_or_else(|| {
        RollbackProblem::NoEarlierGood {
            env: env.to_owned(),
            deployed: deployed.spec.short_commit().to_owned(),
        }
    })?;
    Ok((latest, target))
}

/// How far the promotion's target lags, in a sentence, e.g. "production is 3 commits behind
/// main (oldest unreleased: abc1234, 2d old)".
pub fn behind_sentence(promotion: &ShipPromotion, now: Timestamp) -> Option<String> {
    let behind = promotion.status.as_ref()?.behind.as_ref()?;
    let (to, from) = (&promotion.spec.to, &promotion.spec.from);
    if behind.commits == 0 {
        return Some(format!("{to} is up to date with {from}"));
    }
    let plural = if behind.commits == 1 { "" } else { "s" };
    let more = if behind.truncated { "+" } else { "" };
    let mut text = format!("{to} is {}{more} commit{plural} behind {from}", behind.commits);
    if let (Some(commit), Some(time)) = (&behind.oldest_commit, &behind.oldest_commit_time) {
        text.push_str(&format!(
            " (oldest unreleased: {commit}, {} old)",
            age(now, time.0)
        ));
    }
    Some(text)
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Text cut to `width` characters, with `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A table in kubectl's style: upper-case headers, columns padded to their widest cell, three
/// spaces between. The last column is cut so each line fits `width` characters.
pub fn table(headers: &[&str], rows: &[Vec<String>], width: usize) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                let room = width.saturating_sub(line.chars().count()).max(8);
                line.push_str(&fit(cell, room));
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;
    use ship_api::{Reason, ShipReleaseSpec, ShipReleaseStatus};

    fn release(env: &str, n: u8, phase: Phase, sequence: i64) -> ShipRelease {
        let commit = format!("{:x}", n).repeat(40)[..40].to_owned();
        ShipRelease {
            metadata: ObjectMeta {
                name: Some(format!("{env}-{}", &commit[..10])),
                annotations: Some([(ship_api::keys::SEQUENCE.to_owned(), sequence.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: ShipReleaseSpec {
                environment: env.into(),
                commit,
                branch: env.into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
            status: Some(ShipReleaseStatus {
                phase: Some(phase),
                test_summary: Some("1/1".into()),
                ..ShipReleaseStatus::default()
            }),
        }
    }

    fn rolled_back(mut r: ShipRelease, to: &ShipRelease) -> ShipRelease {
        r.status.as_mut().unwrap().rolled_back_to = to.metadata.name.clone();
        r
    }

    #[test]
    fn deployed_follows_a_rollback_and_last_good_is_the_newest_success() {
        let good = release("main", 1, Phase::Succeeded, 1);
        let bad = rolled_back(release("main", 2, Phase::RolledBack, 2), &good);
        let prod = release("production", 1, Phase::Testing, 5);
        let kept: ShipEnvironment = serde_json::from_value(serde_json::json!({
            "apiVersion": "ship.dev/v1alpha1", "kind": "ShipEnvironment",
            "metadata": {"name": "main"},
            "spec": {"branch": "main"},
            "status": {
                "message": "the tip of main failed here",
                "tip": {"commit": bad.spec.commit, "shortCommit": "2222222"},
                "conditions": [{"type": "InSync", "status": "False", "reason": "TipFailed",
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }
        }))
        .unwrap();
        let envs = environments(&[bad.clone(), good.clone(), prod], std::slice::from_ref(&kept));
        assert_eq!(envs.len(), 2);
        let sync = envs[0].sync.as_ref().unwrap();
        assert_eq!(
            (sync.in_sync.as_str(), sync.reason.as_str()),
            ("False", "TipFailed")
        );
        assert_eq!(sync.tip, bad.spec.commit);
        assert_eq!(envs[1].sync, None, "no ShipEnvironment for production yet");
        let main = &envs[0];
        assert_eq!(main.environment, "main");
        assert_eq!(main.latest.name, bad.metadata.name.clone().unwrap());
        assert_eq!(main.deployed.as_ref().unwrap().commit, good.spec.commit);
        assert_eq!(main.last_good.as_ref().unwrap().commit, good.spec.commit);
        // In flight with no success yet: nothing known to be deployed.
        assert_eq!(envs[1].deployed, None);
        assert_eq!(envs[1].latest.phase, "Testing");
    }

    #[test]
    fn rollback_goes_to_the_last_good_other_commit_or_the_named_one() {
        let one = release("production", 1, Phase::Succeeded, 1);
        let two = release("production", 2, Phase::Succeeded, 2);
        let three = release("production", 3, Phase::Succeeded, 3);
        let all = [one.clone(), three.clone(), two.clone()];
        let (current, target) = rollback_target(&all, "production", None).unwrap();
        assert_eq!((current, target), (&all[1], &all[2]));
        let (_, target) = rollback_target(&all, "production", Some("1111")).unwrap();
        assert_eq!(target.spec.commit, one.spec.commit);
        assert_eq!(
            rollback_target(&all, "production", Some("9999")),
            Err(RollbackProblem::UnknownCommit {
                env: "production".into(),
                prefix: "9999".into()
            })
        );
        assert_eq!(
            rollback_target(&all, "production", Some("1z")),
            Err(RollbackProblem::BadPrefix("1z".into()))
        );
        assert_eq!(
            rollback_target(&all, "staging", None),
            Err(RollbackProblem::NoReleases("staging".into()))
        );
        // Only one good commit: nothing earlier to go back to.
        let only = [one.clone()];
        assert!(matches!(
            rollback_target(&only, "production", None),
            Err(RollbackProblem::NoEarlierGood { .. })
        ));
        // After an automatic rollback to `two`, a manual one goes further back, to `one`.
        let bad = rolled_back(release("production", 4, Phase::RolledBack, 4), &two);
        let all = [one.clone(), two.clone(), bad];
        let (_, target) = rollback_target(&all, "production", None).unwrap();
        assert_eq!(target.spec.commit, one.spec.commit);
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let ago = |s: i64| age(now, now - jiff::SignedDuration::from_secs(s));
        assert_eq!(
            [ago(5), ago(300), ago(3 * 3600), ago(3 * 86400)],
            ["5s", "5m", "3h", "3d"]
        );
        assert_eq!(ago(-10), "0s");
    }

    #[test]
    fn tables_fit_eighty_columns() {
        let rows = vec![vec![
            "production".to_owned(),
            "abc1234".to_owned(),
            "a very long commit subject that would never fit in a terminal line of eighty columns".to_owned(),
        ]];
        let text = table(&["ENV", "COMMIT", "SUBJECT"], &rows, 80);
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        assert!(text.starts_with("ENV          COMMIT    SUBJECT\n"), "{text}");
        assert!(text.contains('…'));
    }

    #[test]
    fn behind_in_a_sentence() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let mut p = ShipPromotion::new(
            "production",
            ship_api::ShipPromotionSpec {
                from: "main".into(),
                to: "production".into(),
            },
        );
        assert_eq!(behind_sentence(&p, now), None);
        p.status = Some(ship_api::ShipPromotionStatus {
            behind: Some(ship_api::Behind {
                commits: 3,
                oldest_commit: Some("abc1234".into()),
                oldest_commit_time: Some(Time(now - jiff::SignedDuration::from_hours(50))),
                ..ship_api::Behind::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            behind_sentence(&p, now).unwrap(),
            "production is 3 commits behind main (oldest unreleased: abc1234, 2d old)"
        );
    }
}
