//! The forced promotion's decisions, as one pure function: [`step`] takes what the promotion
//! has recorded and is doing ([`Promotion`]), what just happened ([`Event`]) and the time, and
//! returns the new state and the [`Effect`]s to carry out. shipd's executor gathers a look
//! (the repository's verdict, the schedule, a `kubectl ship promote` request) into
//! [`Event::Looked`], performs each effect, and feeds back what came of it ([`Event::HoldRead`],
//! [`Event::Compared`], [`Event::ReleaseMade`]) until the machine is [`Stage::Idle`] again;
//! then it writes the record with the conditions of [`stall`].
//!
//! A run is due when a scheduled time has passed since the last one handled, or when a request
//! names a value not handled before. A run that would push asks first whether the target is
//! held (unless the request forces it), then, under `refuseUndeclaredDifferences`, whether the
//! environments differ in ways `ship.yaml` does not declare, and only then makes the release.
//!
//! | stage | event | condition | next stage | effects | record |
//! |---|---|---|---|---|---|
//! | Idle | Looked | no scheduled time due, no new request | Idle | none | unchanged |
//! | Idle | Looked | due, verdict Promote, not forced | ReadingHold | ReadHold(to) | unchanged |
//! | Idle | Looked | due, verdict Promote, forced, refuseUndeclared | Comparing | CompareEnvironments(candidate) | unchanged |
//! | Idle | Looked | due, verdict Promote, forced | Releasing | MakeRelease | unchanged |
//! | Idle | Looked | due, verdict NothingTested or UpToDate | Idle | CountRun | run recorded, due and request handled |
//! | Idle | Looked | due, verdict Diverged or BranchMissing | Idle | Publish(Warning PromotionRefused), CountRun | run recorded, due and request handled |
//! | ReadingHold | HoldRead(held) | not announced for this commit, or a request | Idle | Publish(Warning PromotionHeld), CountRun(Held) | Held run recorded; the request handled, the scheduled time stays due |
//! | ReadingHold | HoldRead(held) | a scheduled run already announced as held | Idle | none | unchanged |
//! | ReadingHold | HoldRead(none) | refuseUndeclared | Comparing | CompareEnvironments(candidate) | unchanged |
//! | ReadingHold | HoldRead(none) | otherwise | Releasing | MakeRelease | unchanged |
//! | Comparing | Compared(refusal) | | Idle | Publish(Warning PromotionRefused), CountRun(UndeclaredDifferences) | run recorded, due and request handled |
//! | Comparing | Compared(none) | | Releasing | MakeRelease | unchanged |
//! | Releasing | ReleaseMade(created) | | Idle | Publish(Normal Promoted), CountRun(Promoted) | run and last promotion recorded, due and request handled |
//! | Releasing | ReleaseMade(existed) | | Idle | CountRun(Promoted) | as above, "already promoted" |
//! | any | an event the stage does not wait for | | unchanged | none | unchanged |
//!
//! A failed effect (the API refused the release, say) is not an event: the executor drops the
//! state and looks again later, and the record, unwritten, still says the run is due.

pub mod status;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use status::{Behind, PromotionOrigin, PromotionOutcome, PromotionRun, ShipPromotionStatus};

/// `requestedBy` of scheduled runs.
pub const SCHEDULE: &str = "schedule";

/// What a promotion run would do, as the repository stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fast-forward the target to the candidate.
    Promote,
    /// The target already holds the candidate.
    UpToDate,
    /// No source commit has passed its tests.
    NothingTested,
    /// The target holds commits the candidate lacks.
    Diverged,
    /// The source or target branch is missing on the remote (or was never fetched).
    BranchMissing,
}

impl Verdict {
    /// The outcome a run with this verdict records (when nothing stops it first).
    pub fn outcome(self) -> PromotionOutcome {
        match self {
            Verdict::Promote => PromotionOutcome::Promoted,
            Verdict::UpToDate => PromotionOutcome::UpToDate,
            Verdict::NothingTested => PromotionOutcome::NothingTested,
            Verdict::Diverged => PromotionOutcome::Diverged,
            Verdict::BranchMissing => PromotionOutcome::BranchMissing,
        }
    }
}

/// The environments and branches a promotion joins (from `ship.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// The environment whose tested commits are promoted.
    pub from: String,
    /// The environment that receives them.
    pub to: String,
    /// `from`'s branch.
    pub from_branch: String,
    /// `to`'s branch.
    pub to_branch: String,
}

/// A commit named in a message: its short SHA and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Short SHA.
    pub short: String,
    /// First line of its message.
    pub subject: String,
}

/// A `kubectl ship promote` request, from the ShipPromotion's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The `ship.dev/requested-at` value: a value not handled before asks for a run.
    pub at: String,
    /// Who asked (`ship.dev/requested-by`).
    pub by: Option<String>,
    /// The request overrides a hold (`ship.dev/override-hold: "true"`).
    pub force: bool,
}

/// What one look found: the repository's verdict and what asks for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    /// The environments and branches.
    pub route: Route,
    /// What a run would do.
    pub verdict: Verdict,
    /// The newest tested commit of the source (full SHA), and the release that tested it.
    pub candidate: Option<(String, String)>,
    /// The target branch's tip (full SHA).
    pub target_tip: Option<String>,
    /// How far the target is behind.
    pub behind: Behind,
    /// Commits on the target the candidate (or the source's tip) lacks, a few, newest first,
    /// and whether there are more.
    pub diverging: (Vec<Commit>, bool),
    /// The latest scheduled time that has passed since the last one handled.
    pub due: Option<Timestamp>,
    /// The request on the object, handled or not.
    pub request: Option<Request>,
    /// `promotion.refuseUndeclaredDifferences`.
    pub refuse_undeclared: bool,
}

impl Look {
    fn candidate_commit(&self) -> Option<String> {
        self.candidate.as_ref().map(|(commit, _)| commit.clone())
    }

    fn candidate_short(&self) -> &str {
        self.candidate
            .as_ref()
            .map(|(commit, _)| crate::names::short_sha(commit))
            .unwrap_or_default()
    }
}

/// What a run in flight is waiting for.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Stage {
    /// No run in flight.
    #[default]
    Idle,
    /// Asked whether the target environment is held.
    ReadingHold(Box<Run>),
    /// Asked whether the environments differ in undeclared ways.
    Comparing(Box<Run>),
    /// Asked for the promotion release.
    Releasing(Box<Run>),
}

/// A run in flight: the look it was decided on, and what it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The look.
    pub look: Look,
    /// The request it answers (a value not handled before), if any.
    pub request: Option<String>,
    /// Who asked: the requester, or [`SCHEDULE`].
    pub requested_by: String,
}

/// The promotion as the machine knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Promotion {
    /// The status as recorded; a run updates its run fields (`lastRun`, `lastPromotion`,
    /// `message`, `lastScheduleTime`, `lastHandledRequestedAt`).
    pub record: ShipPromotionStatus,
    /// What a run in flight waits for.
    pub stage: Stage,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A look at the repository, the schedule and the object.
    Looked(Box<Look>),
    /// The target's hold: its description when held.
    HoldRead(Option<String>),
    /// Why the environments may not be promoted (undeclared differences), or `None`.
    Compared(Option<String>),
    /// The promotion release, by name; `created` is false when it existed already.
    ReleaseMade {
        /// Its name.
        name: String,
        /// Whether this run created it.
        created: bool,
    },
}

/// The release a promotion makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseOrder {
    /// The target environment.
    pub environment: String,
    /// Its branch.
    pub branch: String,
    /// The commit (full SHA).
    pub commit: String,
    /// Recorded on the release.
    pub origin: PromotionOrigin,
}

/// Work for the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Read the hold of this environment; answer with [`Event::HoldRead`].
    ReadHold {
        /// The environment.
        environment: String,
    },
    /// Compare the two environments rendered at this commit; answer with [`Event::Compared`].
    CompareEnvironments {
        /// The candidate (full SHA).
        commit: String,
    },
    /// Create the promotion release (idempotently); answer with [`Event::ReleaseMade`].
    MakeRelease(Box<ReleaseOrder>),
    /// An event on the ShipPromotion, logged too.
    Publish {
        /// Warning rather than Normal.
        warning: bool,
        /// The event's reason.
        reason: &'static str,
        /// Its note.
        message: String,
    },
    /// Count a run by outcome (`ship_promotion_runs_total`).
    CountRun(PromotionOutcome),
}

/// One decision: the new state and the effects that follow, in order.
pub fn step(mut promotion: Promotion, event: Event, now: Timestamp) -> (Promotion, Vec<Effect>) {
    let stage = std::mem::take(&mut promotion.stage);
    let mut effects = Vec::new();
    promotion.stage = match (stage, event) {
        (Stage::Idle, Event::Looked(look)) => match start(&promotion.record, *look) {
            None => Stage::Idle,
            Some(run) => {
                let forced = run.request.is_some() && run.look.request.as_ref().is_some_and(|r| r.force);
                if run.look.verdict == Verdict::Promote && !forced {
                    effects.push(Effect::ReadHold {
                        environment: run.look.route.to.clone(),
                    });
                    Stage::ReadingHold(Box::new(run))
                } else {
                    unheld(&mut promotion.record, run, now, &mut effects)
                }
            }
        },
        (Stage::ReadingHold(run), Event::HoldRead(Some(hold))) => {
            held(&mut promotion.record, *run, &hold, now, &mut effects);
            Stage::Idle
        }
        (Stage::ReadingHold(run), Event::HoldRead(None)) => {
            unheld(&mut promotion.record, *run, now, &mut effects)
        }
        (Stage::Comparing(run), Event::Compared(Some(refusal))) => {
            effects.push(Effect::Publish {
                warning: true,
                reason: "PromotionRefused",
                message: refusal.clone(),
            });
            let outcome = PromotionOutcome::UndeclaredDifferences;
            finish(
                &mut promotion.record,
                &run,
                record_of(&run, outcome, refusal, now),
                &mut effects,
            );
            Stage::Idle
        }
        (Stage::Comparing(run), Event::Compared(None)) => release(*run, &mut effects),
        (Stage::Releasing(run), Event::ReleaseMade { name, created }) => {
            let look = &run.look;
            let (route, short) = (&look.route, look.candidate_short());
            let message = if created {
                let message = format!(
                    "promoting {} {short} to {} ({} commits) as release {name}",
                    route.from, route.to, look.behind.commits
                );
                effects.push(Effect::Publish {
                    warning: false,
                    reason: "Promoted",
                    message: message.clone(),
                });
                message
            } else {
                // The push is made, or about to be, and the mirror has not fetched it yet.
                format!("{} {short} was already promoted as release {name}", route.from)
            };
            let mut record = record_of(&run, PromotionOutcome::Promoted, message, now);
            record.release = Some(name);
            finish(&mut promotion.record, &run, record, &mut effects);
            Stage::Idle
        }
        // An answer the stage does not wait for (a stale one, or a look while a run is in
        // flight) changes nothing.
        (stage, _) => stage,
    };
    (promotion, effects)
}

/// The run a look asks for: a scheduled time due, or a request not handled before.
fn start(record: &ShipPromotionStatus, look: Look) -> Option<Run> {
    let request = look
        .request
        .as_ref()
        .filter(|r| record.last_handled_requested_at.as_deref() != Some(r.at.as_str()))
        .map(|r| r.at.clone());
    if look.due.is_none() && request.is_none() {
        return None;
    }
    // A request names its requester; a scheduled time alone is the schedule's run.
    let requested_by = match (&request, &look.request) {
        (Some(_), Some(r)) => r.by.clone().unwrap_or_else(|| "unknown".to_owned()),
        _ => SCHEDULE.to_owned(),
    };
    Some(Run {
        look,
        request,
        requested_by,
    })
}

/// A run the target's hold stops: recorded and announced once per held commit (every time
/// for a request, which it answers); a scheduled time stays due, to run on resume.
fn held(record: &mut ShipPromotionStatus, run: Run, hold: &str, now: Timestamp, effects: &mut Vec<Effect>) {
    let look = &run.look;
    let route = &look.route;
    let message = format!(
        "not promoting {} {} into {}: {} is {hold}; the promotion runs on resume \
         (or override: kubectl ship promote --force)",
        route.from,
        look.candidate_short(),
        route.to,
        route.to,
    );
    let run_record = record_of(&run, PromotionOutcome::Held, message, now);
    let announced = record
        .last_run
        .as_ref()
        .is_some_and(|r| r.outcome == PromotionOutcome::Held && r.commit == run_record.commit);
    if !announced || run.request.is_some() {
        effects.push(Effect::Publish {
            warning: true,
            reason: "PromotionHeld",
            message: run_record.message.clone(),
        });
        effects.push(Effect::CountRun(PromotionOutcome::Held));
        record.message = Some(run_record.message.clone());
        record.last_run = Some(run_record);
    }
    if run.request.is_some() {
        record.last_handled_requested_at = run.request;
    }
}

/// A run no hold stops: compare first when asked to, else act on the verdict.
fn unheld(record: &mut ShipPromotionStatus, run: Run, now: Timestamp, effects: &mut Vec<Effect>) -> Stage {
    let look = &run.look;
    let route = &look.route;
    let candidate = look.candidate_short().to_owned();
    let refused = |message: String, effects: &mut Vec<Effect>| {
        effects.push(Effect::Publish {
            warning: true,
            reason: "PromotionRefused",
            message: message.clone(),
        });
        message
    };
    let message = match look.verdict {
        Verdict::Promote => {
            return match look.candidate_commit() {
                Some(commit) if look.refuse_undeclared => {
                    effects.push(Effect::CompareEnvironments { commit });
                    Stage::Comparing(Box::new(run))
                }
                _ => release(run, effects),
            };
        }
        Verdict::NothingTested => format!(
            "no {} commit has passed its tests yet; nothing to promote",
            route.from
        ),
        Verdict::UpToDate => format!("{} already holds {} ({candidate})", route.to_branch, route.from),
        Verdict::BranchMissing => refused(
            format!(
                "not promoting {candidate}: branch {} or {} is missing on the remote; \
                 nothing was pushed, and the promotion waits until the branch is back",
                route.from_branch, route.to_branch
            ),
            effects,
        ),
        Verdict::Diverged => {
            let (commits, more) = &look.diverging;
            refused(
                format!(
                    "not promoting {candidate}: {} has {} commit(s) that {} lacks ({}); nothing was forced: merge {} into {}",
                    route.to_branch,
                    commits.len(),
                    route.from_branch,
                    describe(commits, *more),
                    route.to_branch,
                    route.from_branch
                ),
                effects,
            )
        }
    };
    let run_record = record_of(&run, look.verdict.outcome(), message, now);
    finish(record, &run, run_record, effects);
    Stage::Idle
}

/// Ask for the promotion release.
fn release(run: Run, effects: &mut Vec<Effect>) -> Stage {
    let look = &run.look;
    let (commit, from_release) = look.candidate.clone().unwrap_or_default();
    effects.push(Effect::MakeRelease(Box::new(ReleaseOrder {
        environment: look.route.to.clone(),
        branch: look.route.to_branch.clone(),
        commit,
        origin: PromotionOrigin {
            from_environment: look.route.from.clone(),
            from_release,
            previous_commit: look.target_tip.clone().unwrap_or_default(),
            requested_by: run.requested_by.clone(),
            scheduled_for: look.due.map(Time),
        },
    })));
    Stage::Releasing(Box::new(run))
}

fn record_of(run: &Run, outcome: PromotionOutcome, message: String, now: Timestamp) -> PromotionRun {
    PromotionRun {
        at: Time(now),
        requested_by: run.requested_by.clone(),
        outcome,
        commit: run.look.candidate_commit(),
        release: None,
        message,
    }
}

/// A run that ran: counted and recorded; its scheduled time and request are handled.
fn finish(record: &mut ShipPromotionStatus, run: &Run, done: PromotionRun, effects: &mut Vec<Effect>) {
    effects.push(Effect::CountRun(done.outcome));
    if done.outcome == PromotionOutcome::Promoted {
        record.last_promotion = Some(done.clone());
    }
    record.message = Some(done.message.clone());
    record.last_run = Some(done);
    // A scheduled time handled never moves the record back (a look from a stale view).
    if let Some(due) = run.look.due
        && record.last_schedule_time.as_ref().is_none_or(|t| t.0 < due)
    {
        record.last_schedule_time = Some(Time(due));
    }
    if run.request.is_some() {
        record.last_handled_requested_at = run.request.clone();
    }
}

/// Why a person must act, as the `Stalled` condition's reason and message: a branch missing,
/// the target diverged, or the candidate refused for undeclared differences (until a new
/// candidate, or a run that finds none). `None`: the promotion can fast-forward.
pub fn stall(look: &Look, record: &ShipPromotionStatus) -> Option<(&'static str, String)> {
    let route = &look.route;
    let (diverging, more) = &look.diverging;
    if look.verdict == Verdict::BranchMissing {
        return Some((
            "BranchMissing",
            format!(
                "branch {} or {} is missing on the remote: promotions wait until it is back \
                 (they never re-create a branch)",
                route.from_branch, route.to_branch
            ),
        ));
    }
    if !diverging.is_empty() {
        return Some((
            "Diverged",
            format!(
                "{} has {} commit(s) that {} lacks ({}): merge them into {} so promotions can fast-forward",
                route.to_branch,
                diverging.len(),
                route.from_branch,
                describe(diverging, *more),
                route.from_branch
            ),
        ));
    }
    let candidate = look.candidate_commit();
    record
        .last_run
        .as_ref()
        .filter(|r| r.outcome == PromotionOutcome::UndeclaredDifferences && r.commit == candidate)
        .map(|r| ("UndeclaredDifferences", r.message.clone()))
}

/// Commits as `short subject; short subject; and more`.
pub fn describe(commits: &[Commit], more: bool) -> String {
    let mut text = commits
        .iter()
        .map(|c| format!("{} {}", c.short, c.subject))
        .collect::<Vec<_>>()
        .join("; ");
    if more {
        text.push_str("; and more");
    }
    text
}

#[cfg(test)]
mod tests;
