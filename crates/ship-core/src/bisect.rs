//! Bisection: after a release of several commits fails on main and rolls back, find the first
//! bad commit by deploying chosen commits of the failed range, one test release each, halving
//! the range until one commit is left. Pure: [`step`] takes the persisted [`Bisection`], what
//! happened ([`Event`]) and the time, and returns the next state and the [`Effect`]s for the
//! executor, which persists the state before it performs them (so a restart resumes).
//!
//! The range is the failed release's commits along first parents, oldest first (a merge is one
//! commit of the range: its side branch is not searched). Before the range is the commit the
//! rollback went back to: known good. The newest commit of the range failed its tests once.
//!
//! A commit is **bad** when it failed `bisect.retries + 1` times (by default twice: its failing
//! test release is re-run once; the range's newest has failed once already, so naming it takes
//! one more run), and **good** when it passed once (a failure that does not repeat is evidence of a
//! flaky test, not of a bad commit, and is recorded as such). The search keeps two bounds, the
//! known-good prefix and the first known-bad commit, and tests the middle of what lies between.
//! A range of k commits takes at most ⌈log₂ k⌉ test releases, plus one re-run for each failing
//! step.
//!
//! | stage | event | next | effects |
//! |---|---|---|---|
//! | (start) | a range of k ≥ 2 commits | Testing the middle, attempt 1 | Deploy it |
//! | Testing c | Observed (a restart, a look) | unchanged | Deploy c again (idempotent by name) |
//! | Testing c | c passed | good prefix through c; Testing the new middle, or Named | Deploy, or the end's effects |
//! | Testing c | c failed, retries left | Testing c, next attempt | Deploy c again |
//! | Testing c | c failed, none left | first bad = c; Testing the new middle, or Named | Deploy, or the end's effects |
//! | Testing c | a settle about another commit or attempt | unchanged | none (a late answer) |
//! | any Testing | PushWaiting | unchanged, the push noted (once) | none |
//! | any Testing | the deadline (`bisect.maxDuration` from the start) passes | Superseded (by Push) if a push waits, else Inconclusive (TimedOut) | Restore, Report |
//! | any Testing | Held | Stopped | Report (the environment stays as the hold found it) |
//! | any Testing | Rewritten (the branch no longer holds the failed commit) | Superseded (by Rewrite) at once | Restore, Report |
//! | Named, Inconclusive, Superseded, Stopped | anything | unchanged | none |
//!
//! The end's effects: `Restore` the newest commit known good (the environment runs it), then
//! `Report` (statuses, events and notifications name the culprit or say why none). When the
//! newest commit ends up the only candidate but passes when run again, the failure did not
//! repeat: Inconclusive (`NotReproduced`), and no commit is named.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One test release of the bisection, and what it said.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    /// The commit deployed (full SHA).
    pub commit: String,
    /// Its attempt (1, then 2 for the re-run of a failure).
    pub attempt: u32,
    /// It passed its tests.
    pub passed: bool,
}

/// Where a bisection stands. Stored as a [`StageRecord`] (a flat object with a `name`: the
/// API server's structural schemas have no tagged unions).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(into = "StageRecord", try_from = "StageRecord")]
pub enum Stage {
    /// A test release of `commits[index]` is deployed (or about to be), attempt `attempt`.
    Testing {
        /// Index of the commit in `commits`.
        index: usize,
        /// Its attempt, from 1.
        attempt: u32,
    },
    /// The first bad commit is `commits[index]`.
    Named {
        /// Index of the commit in `commits`.
        index: usize,
    },
    /// No commit can be named; why, as a fixed label.
    Inconclusive {
        /// `NotReproduced` or `TimedOut`.
        why: Inconclusive,
    },
    /// The branch went on without it: a new push waited past the deadline, or the branch's
    /// history no longer holds the failed commit.
    Superseded {
        /// `Push` or `Rewrite`.
        by: SupersededBy,
    },
    /// A person held the environment.
    Stopped,
}

/// What superseded a bisection.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema, strum::IntoStaticStr,
)]
pub enum SupersededBy {
    /// A new push waited past `bisect.maxDuration`, and went ahead.
    #[default]
    Push,
    /// The branch was force-pushed (or deleted) so that the failed commit is no longer on it:
    /// what the bisection would name is no longer anyone's history.
    Rewrite,
}

/// The names of the stages, as the API shows them.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StageName {
    /// A test release is out.
    Testing,
    /// The first bad commit is named.
    Named,
    /// No commit can be named.
    Inconclusive,
    /// A new push went ahead.
    Superseded,
    /// A person held the environment.
    Stopped,
}

/// A [`Stage`] as stored.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    /// The stage.
    pub name: StageName,
    /// `Testing` and `Named`: index of the commit in `commits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// `Testing`: the attempt, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// `Inconclusive`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<Inconclusive>,
    /// `Superseded`: by what (a push when absent: what stores before it knew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<SupersededBy>,
}

impl From<Stage> for StageRecord {
    fn from(stage: Stage) -> Self {
        let record = |name| StageRecord {
            name,
            index: None,
            attempt: None,
            why: None,
            by: None,
        };
        match stage {
            Stage::Testing { index, attempt } => StageRecord {
                index: Some(index),
                attempt: Some(attempt),
                ..record(StageName::Testing)
            },
            Stage::Named { index } => StageRecord {
                index: Some(index),
                ..record(StageName::Named)
            },
            Stage::Inconclusive { why } => StageRecord {
                why: Some(why),
                ..record(StageName::Inconclusive)
            },
            Stage::Superseded { by } => StageRecord {
                by: Some(by),
                ..record(StageName::Superseded)
            },
            Stage::Stopped => record(StageName::Stopped),
        }
    }
}

impl TryFrom<StageRecord> for Stage {
    type Error = String;

    fn try_from(record: StageRecord) -> Result<Self, String> {
        let missing = |field: &str| format!("a {:?} stage needs `{field}`", record.name);
        Ok(match record.name {
            StageName::Testing => Stage::Testing {
                index: record.index.ok_or_else(|| missing("index"))?,
                attempt: record.attempt.ok_or_else(|| missing("attempt"))?,
            },
            StageName::Named => Stage::Named {
                index: record.index.ok_or_else(|| missing("index"))?,
            },
            StageName::Inconclusive => Stage::Inconclusive {
                why: record.why.ok_or_else(|| missing("why"))?,
            },
            StageName::Superseded => Stage::Superseded {
                by: record.by.unwrap_or_default(),
            },
            StageName::Stopped => Stage::Stopped,
        })
    }
}

/// Why a bisection named no commit.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, strum::IntoStaticStr)]
pub enum Inconclusive {
    /// The range's newest commit, which failed, passed every time it was run again: the
    /// failure did not repeat (a flaky test, or something outside the commits).
    NotReproduced,
    /// The deadline passed with no push waiting.
    TimedOut,
}

/// What the bisection is given and what it has learnt: persisted, so a restart resumes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bisection {
    /// The failed range along first parents, oldest first (full SHAs); the last one failed.
    pub commits: Vec<String>,
    /// The commit before the range, known good (the rollback's target).
    pub base: String,
    /// `commits[..good]` are known good.
    pub good: usize,
    /// `commits[bad]` is the oldest commit that failed: for certain once it failed
    /// `retries + 1` times; the range's newest starts with the one failure of the release
    /// that started the bisection.
    pub bad: usize,
    /// Failures of `commits[bad]` seen so far.
    pub bad_failures: u32,
    /// Where it stands.
    #[schemars(with = "StageRecord")]
    pub stage: Stage,
    /// Every test release's verdict, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<Trial>,
    /// When it started.
    pub started_at: Time,
    /// When a push first waited for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_waiting_since: Option<Time>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// The first bad commit, once named, as a person reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit: Option<Culprit>,
    /// What it ended with, in a sentence (the culprit, or why none was named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When its end was reported (statuses, events, notifications): the end's effects are
    /// carried out until this is set, so a restart between the two does not lose them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<Time>,
}

/// The first bad commit, as the status, `kubectl ship` and notifications show it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Culprit {
    /// Full SHA.
    pub commit: String,
    /// Short SHA.
    pub short_commit: String,
    /// First line of its message.
    pub subject: String,
    /// Its author.
    pub author: String,
    /// The test release that failed on it last.
    pub release: String,
    /// The failing test and the end of its log, from that release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_test: Option<String>,
}

/// The settings `ship.yaml` gives a bisection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Re-runs of a failing step (default 1).
    pub retries: u32,
    /// How long it may block new pushes (default 10 minutes).
    pub max_duration: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retries: 1,
            max_duration: Duration::from_secs(600),
        }
    }
}

/// What the phase of a test release answers: `Some(true)` it passed, `Some(false)` it failed
/// (its tests, its health, or its commit was refused) and the environment is back on the last
/// good release, `None` not yet (still rolling back: the next test release must not overtake
/// the rollback) or never (superseded: no answer about the commit).
pub fn answer(phase: Option<crate::status::Phase>) -> Option<bool> {
    use crate::status::Phase;
    match phase? {
        Phase::Succeeded => Some(true),
        Phase::Failed | Phase::RolledBack => Some(false),
        _ => None,
    }
}

/// Where the branch stands against the failed commit, as the mirror last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// Its tip is the failed commit (or the mirror cannot tell).
    AtFailed,
    /// Its tip descends from the failed commit: a new push.
    MovedOn,
    /// Its history no longer holds the failed commit (a force-push), or it is gone.
    Rewritten,
}

/// The event a look at the environment gives a testing bisection: a hold stops it; else a
/// rewritten branch supersedes it; else the current test release's answer (`test_phase`,
/// `None` when it does not exist yet); else a branch that moved past the failed commit is a
/// push waiting, said once; else it is only observed.
pub fn observe(
    bisection: &Bisection,
    held: bool,
    test_phase: Option<crate::status::Phase>,
    branch: Branch,
) -> Event {
    let Stage::Testing { index, attempt } = bisection.stage else {
        return Event::Observed;
    };
    if held {
        return Event::Held;
    }
    if branch == Branch::Rewritten {
        return Event::Rewritten;
    }
    if let (Some(passed), Some(commit)) = (answer(test_phase), bisection.commits.get(index)) {
        return Event::Settled {
            commit: commit.clone(),
            attempt,
            passed,
        };
    }
    if branch == Branch::MovedOn && bisection.push_waiting_since.is_none() {
        return Event::PushWaiting;
    }
    Event::Observed
}

/// The test release the bisection waits for now: its commit and attempt.
pub fn current_test(bisection: &Bisection) -> Option<(&str, u32)> {
    match bisection.stage {
        Stage::Testing { index, attempt } => bisection.commits.get(index).map(|c| (c.as_str(), attempt)),
        _ => None,
    }
}

/// The end's `Restore` is needed when what the environment runs (`running`: the commit of
/// its newest Succeeded release) is not the newest commit known good.
pub fn restore_needed(newest_good: &str, running: Option<&str>) -> bool {
    running != Some(newest_good)
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The bisection was read (a restart, a look): the current step is asked for again.
    Observed,
    /// The test release of `commit`, attempt `attempt`, settled.
    Settled {
        /// Its commit.
        commit: String,
        /// Its attempt.
        attempt: u32,
        /// It passed its tests.
        passed: bool,
    },
    /// The branch moved: a new push waits for the bisection.
    PushWaiting,
    /// The branch no longer holds the failed commit.
    Rewritten,
    /// A person held the environment.
    Held,
}

/// Work for the executor, in order, once the state is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Deploy `commit` as a test release (reason `Bisect`) named for it and `attempt`; one
    /// that exists already stands.
    Deploy {
        /// Full SHA.
        commit: String,
        /// Attempt, from 1.
        attempt: u32,
    },
    /// Make the environment run `commit` again: the newest known good.
    Restore {
        /// Full SHA.
        commit: String,
    },
    /// Say how it ended (statuses, events, notifications, metrics).
    Report,
}

/// The name of the test release of `commit`, attempt `attempt`, for the bisection the failed
/// release `parent` started: deterministic, so a restart finds the release it made.
pub fn test_release_name(parent: &str, commit: &str, attempt: u32) -> String {
    format!("{parent}-b{attempt}-{}", crate::names::short_sha(commit))
}

/// What [`starts`] reads of a failed release and its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// `bisect.enabled` in the commit's ship.yaml.
    pub enabled: bool,
    /// The environment is another's promotion target (production): it takes commits proven
    /// good and never bisects.
    pub promoted_into: bool,
    /// The release came from a push of its branch.
    pub pushed: bool,
    /// It rolled back.
    pub rolled_back: bool,
    /// It has a bisection already (running or ended).
    pub has_bisection: bool,
    /// A newer release of the environment exists (other than its own test releases).
    pub superseded: bool,
    /// A person holds the environment.
    pub held: bool,
}

/// A failed release starts a bisection when it was a push to a branch that bisects, rolled
/// back, is still the environment's newest, has none yet, and nobody holds the environment.
/// The range's size (at least two commits) is [`start`]'s to judge.
pub fn starts(failure: Failure) -> bool {
    failure.enabled
        && !failure.promoted_into
        && failure.pushed
        && failure.rolled_back
        && !failure.has_bisection
        && !failure.superseded
        && !failure.held
}

/// A bisection for `commits` (oldest first, the last one failed) after `base`, or `None` when
/// there is nothing to search: a range of one commit names itself.
pub fn start(
    base: &str,
    commits: Vec<String>,
    now: Timestamp,
    settings: Settings,
) -> Option<(Bisection, Vec<Effect>)> {
    if commits.len() < 2 {
        return None;
    }
    let bad = commits.len() - 1;
    let mut bisection = Bisection {
        commits,
        base: base.to_owned(),
        good: 0,
        bad,
        bad_failures: 1,
        stage: Stage::Stopped,
        trials: Vec::new(),
        started_at: Time(now),
        push_waiting_since: None,
        ended_at: None,
        culprit: None,
        message: None,
        reported_at: None,
    };
    let effects = bisection.next(settings);
    Some((bisection, effects))
}

impl Bisection {
    /// It has ended (named, inconclusive, superseded or stopped).
    pub fn ended(&self) -> bool {
        !matches!(self.stage, Stage::Testing { .. })
    }

    /// The culprit, once named.
    pub fn culprit(&self) -> Option<&str> {
        match self.stage {
            Stage::Named { index } => self.commits.get(index).map(String::as_str),
            _ => None,
        }
    }

    /// The commits known good (oldest first): before the culprit, or the good prefix.
    pub fn known_good(&self) -> &[String] {
        &self.commits[..self.good.min(self.commits.len())]
    }

    /// The newest commit known good: the last of the good prefix, else the base.
    pub fn newest_good(&self) -> &str {
        self.known_good()
            .last()
            .map_or(self.base.as_str(), String::as_str)
    }

    /// Test releases that answered so far.
    pub fn steps(&self) -> usize {
        self.trials.len()
    }

    /// Where it stands, as a fixed label (for events, metrics and `kubectl ship`):
    /// `Testing`, `Named`, `Inconclusive`, `Superseded` or `Stopped`.
    pub fn outcome(&self) -> &'static str {
        match self.stage {
            Stage::Testing { .. } => "Testing",
            Stage::Named { .. } => "Named",
            Stage::Inconclusive { .. } => "Inconclusive",
            Stage::Superseded { .. } => "Superseded",
            Stage::Stopped => "Stopped",
        }
    }

    /// How its end is announced: whether as a Warning, and the event's fixed reason.
    pub fn announcement(&self) -> (bool, &'static str) {
        match self.stage {
            Stage::Named { .. } => (true, "CulpritNamed"),
            Stage::Inconclusive { .. } => (true, "BisectInconclusive"),
            Stage::Superseded { .. } => (false, "BisectSuperseded"),
            Stage::Stopped => (false, "BisectStopped"),
            Stage::Testing { .. } => (false, "Bisecting"),
        }
    }

    /// A new tip of the branch waits for it: until its end is reported. The end's `Restore`
    /// release is made before the report, so the tip's release comes after it and supersedes
    /// it. Released between the end and the restore, the tip would be superseded by the
    /// restore and never released (a fresh-clone CI run saw it).
    pub fn holds_new_tips(&self) -> bool {
        self.reported_at.is_none()
    }

    /// It is testing and may still make a new push wait: its deadline has not passed.
    pub fn blocks_pushes(&self, now: Timestamp, settings: Settings) -> bool {
        !self.ended() && now < self.started_at.0 + settings.max_duration
    }

    /// What it found, in a sentence: the culprit and the evidence, or why no commit is named.
    /// `culprit` describes the named commit (see [`Culprit`]).
    pub fn describe(&self, culprit: Option<&Culprit>) -> String {
        let k = self.commits.len();
        let steps = self.steps();
        let short = |c: &str| crate::names::short_sha(c).to_owned();
        match &self.stage {
            Stage::Testing { index, attempt } => format!(
                "bisecting {k} commits: testing {} (attempt {attempt}) after {steps} test releases",
                short(&self.commits[(*index).min(k.saturating_sub(1))])
            ),
            Stage::Named { .. } => {
                let named = culprit.map_or_else(
                    || short(self.culprit().unwrap_or_default()),
                    |c| format!("{} \"{}\" by {}", c.short_commit, c.subject, c.author),
                );
                let good = self.known_good().len();
                let quarantined = k - good;
                format!(
                    "first bad commit: {named}, found in {steps} test releases over {k} commits; \
                     the {good} before it passed, it and the {} after it stay quarantined",
                    quarantined.saturating_sub(1)
                )
            }
            Stage::Inconclusive {
                why: Inconclusive::NotReproduced,
            } => format!(
                "no commit named: the failure of {} did not repeat when it was tested again \
                 ({steps} test releases); a flaky test, or a cause outside the commits",
                short(self.commits.last().map_or("", String::as_str))
            ),
            Stage::Inconclusive {
                why: Inconclusive::TimedOut,
            } => format!(
                "no commit named: the bisection of {k} commits reached its maxDuration after \
                 {steps} test releases"
            ),
            Stage::Superseded {
                by: SupersededBy::Push,
            } => format!(
                "no commit named: a new push waited past maxDuration, and went ahead after {steps} \
                 test releases"
            ),
            Stage::Superseded {
                by: SupersededBy::Rewrite,
            } => format!(
                "no commit named: the branch was rewritten and no longer holds {} (after {steps} \
                 test releases); its new tip goes ahead",
                short(self.commits.last().map_or("", String::as_str))
            ),
            Stage::Stopped => format!("stopped by a hold after {steps} test releases"),
        }
    }

    /// The next test, or the end, from the bounds: `Testing` the middle of what lies between
    /// them; the last candidate is named once it failed `retries + 1` times, else run again.
    fn next(&mut self, settings: Settings) -> Vec<Effect> {
        if self.good < self.bad {
            let index = self.good + (self.bad - self.good) / 2;
            return self.test(index, 1);
        }
        // One candidate left: commits[bad].
        if self.bad_failures > settings.retries {
            self.stage = Stage::Named { index: self.bad };
            return self.end();
        }
        // The range's newest, failed once only (by the release that started the bisection).
        self.test(self.bad, self.bad_failures + 1)
    }

    fn test(&mut self, index: usize, attempt: u32) -> Vec<Effect> {
        self.stage = Stage::Testing { index, attempt };
        vec![Effect::Deploy {
            commit: self.commits[index].clone(),
            attempt,
        }]
    }

    fn end(&self) -> Vec<Effect> {
        vec![
            Effect::Restore {
                commit: self.newest_good().to_owned(),
            },
            Effect::Report,
        ]
    }
}

/// The machine: the next state and its effects (see the module's table). The step that ends
/// it records when ([`Bisection::ended_at`]).
pub fn step(
    bisection: &Bisection,
    event: Event,
    now: Timestamp,
    settings: Settings,
) -> (Bisection, Vec<Effect>) {
    let (mut next, effects) = decide(bisection, event, now, settings);
    if next.ended() && !bisection.ended() {
        next.ended_at = Some(Time(now));
    }
    (next, effects)
}

fn decide(
    bisection: &Bisection,
    event: Event,
    now: Timestamp,
    settings: Settings,
) -> (Bisection, Vec<Effect>) {
    let mut next = bisection.clone();
    let Stage::Testing { index, attempt } = bisection.stage.clone() else {
        return (next, Vec::new());
    };
    let deadline = bisection.started_at.0 + settings.max_duration;
    if now >= deadline && event != Event::Held && event != Event::Rewritten {
        next.stage = if bisection.push_waiting_since.is_some() || event == Event::PushWaiting {
            Stage::Superseded {
                by: SupersededBy::Push,
            }
        } else {
            Stage::Inconclusive {
                why: Inconclusive::TimedOut,
            }
        };
        let effects = next.end();
        return (next, effects);
    }
    let effects = match event {
        Event::Observed => vec![Effect::Deploy {
            commit: bisection.commits[index].clone(),
            attempt,
        }],
        Event::PushWaiting => {
            next.push_waiting_since.get_or_insert(Time(now));
            Vec::new()
        }
        Event::Held => {
            next.stage = Stage::Stopped;
            vec![Effect::Report]
        }
        Event::Rewritten => {
            next.stage = Stage::Superseded {
                by: SupersededBy::Rewrite,
            };
            next.end()
        }
        Event::Settled {
            commit,
            attempt: settled_attempt,
            passed,
        } => {
            if commit != bisection.commits[index] || settled_attempt != attempt {
                return (next, Vec::new());
            }
            next.trials.push(Trial {
                commit,
                attempt,
                passed,
            });
            settle(&mut next, index, attempt, passed, settings)
        }
    };
    (next, effects)
}

/// Commit `index` answered `passed` on `attempt`.
fn settle(
    bisection: &mut Bisection,
    index: usize,
    attempt: u32,
    passed: bool,
    settings: Settings,
) -> Vec<Effect> {
    if passed {
        if index == bisection.bad {
            // The range's newest passed when run again: its failure did not repeat.
            bisection.stage = Stage::Inconclusive {
                why: Inconclusive::NotReproduced,
            };
            return bisection.end();
        }
        bisection.good = index + 1;
        return bisection.next(settings);
    }
    if index == bisection.bad {
        bisection.bad_failures += 1;
        return bisection.next(settings);
    }
    if attempt <= settings.retries {
        return bisection.test(index, attempt + 1);
    }
    bisection.bad = index;
    bisection.bad_failures = attempt;
    bisection.next(settings)
}

#[cfg(test)]
mod tests;
