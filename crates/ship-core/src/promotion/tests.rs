//! One test per row of the transition table in the module docs (named after it), and seeded
//! random walks that check the rules every sequence of events must keep.

use super::*;

const NOW: i64 = 1_700_000_000;
const CANDIDATE: &str = "c0ffee0123456789c0ffee0123456789c0ffee01";
const TARGET: &str = "0ld7a9e00000000000000000000000000000000a";

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(NOW + seconds).expect("a valid time")
}

fn look(verdict: Verdict) -> Look {
    Look {
        route: Route {
            from: "main".into(),
            to: "production".into(),
            from_branch: "main".into(),
            to_branch: "production".into(),
        },
        verdict,
        candidate: Some((CANDIDATE.into(), "main-c0ffee0123".into())),
        target_tip: Some(TARGET.into()),
        behind: Behind {
            commits: 3,
            ..Behind::default()
        },
        diverging: (Vec::new(), false),
        due: Some(at(-60)),
        request: None,
        refuse_undeclared: false,
    }
}

fn requested(mut look: Look, at: &str, force: bool) -> Look {
    look.due = None;
    look.request = Some(Request {
        at: at.into(),
        by: Some("alice".into()),
        force,
    });
    look
}

fn idle() -> Promotion {
    Promotion::default()
}

fn looked(promotion: Promotion, look: Look) -> (Promotion, Vec<Effect>) {
    step(promotion, Event::Looked(Box::new(look)), at(0))
}

fn counted(effects: &[Effect]) -> Vec<PromotionOutcome> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::CountRun(outcome) => Some(*outcome),
            _ => None,
        })
        .collect()
}

fn published(effects: &[Effect]) -> Vec<(bool, &'static str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish { warning, reason, .. } => Some((*warning, *reason)),
            _ => None,
        })
        .collect()
}

fn make_release(effects: &[Effect]) -> Option<&ReleaseOrder> {
    effects.iter().find_map(|e| match e {
        Effect::MakeRelease(order) => Some(order.as_ref()),
        _ => None,
    })
}

#[test]
fn idle_looked_with_nothing_due_stays_idle_and_does_nothing() {
    let mut nothing = look(Verdict::Promote);
    nothing.due = None;
    let (after, effects) = looked(idle(), nothing.clone());
    assert_eq!(after, idle());
    assert!(effects.is_empty());

    // A request already handled asks for nothing either.
    let mut record = ShipPromotionStatus {
        last_handled_requested_at: Some("t1".into()),
        ..ShipPromotionStatus::default()
    };
    record.message = Some("before".into());
    let handled = Promotion {
        record: record.clone(),
        stage: Stage::Idle,
    };
    let (after, effects) = looked(handled.clone(), requested(nothing, "t1", false));
    assert_eq!(after, handled);
    assert!(effects.is_empty());
}

#[test]
fn idle_looked_due_to_promote_reads_the_hold_first() {
    let (after, effects) = looked(idle(), look(Verdict::Promote));
    assert!(matches!(after.stage, Stage::ReadingHold(_)));
    assert_eq!(
        effects,
        vec![Effect::ReadHold {
            environment: "production".into()
        }]
    );
    assert_eq!(
        after.record,
        ShipPromotionStatus::default(),
        "nothing recorded yet"
    );
}

#[test]
fn idle_looked_forced_with_refuse_undeclared_compares_without_reading_the_hold() {
    let mut forced = requested(look(Verdict::Promote), "t1", true);
    forced.refuse_undeclared = true;
    let (after, effects) = looked(idle(), forced);
    assert!(matches!(after.stage, Stage::Comparing(_)));
    assert_eq!(
        effects,
        vec![Effect::CompareEnvironments {
            commit: CANDIDATE.into()
        }]
    );
}

#[test]
fn idle_looked_forced_makes_the_release() {
    let (after, effects) = looked(idle(), requested(look(Verdict::Promote), "t1", true));
    assert!(matches!(after.stage, Stage::Releasing(_)));
    let order = make_release(&effects).expect("a release asked for");
    assert_eq!(effects.len(), 1);
    assert_eq!(order.environment, "production");
    assert_eq!(order.commit, CANDIDATE);
    assert_eq!(order.origin.requested_by, "alice");
    assert_eq!(order.origin.previous_commit, TARGET);
    assert_eq!(order.origin.from_release, "main-c0ffee0123");
    assert_eq!(order.origin.scheduled_for, None, "a request, not a scheduled run");

    // A force without a new request forces nothing: the scheduled run reads the hold.
    let mut stale_force = requested(look(Verdict::Promote), "t1", true);
    stale_force.due = Some(at(-60));
    let handled = Promotion {
        record: ShipPromotionStatus {
            last_handled_requested_at: Some("t1".into()),
            ..ShipPromotionStatus::default()
        },
        stage: Stage::Idle,
    };
    let (after, _) = looked(handled, stale_force);
    assert!(matches!(after.stage, Stage::ReadingHold(_)));
}

#[test]
fn idle_looked_due_with_nothing_to_push_records_the_run() {
    for (verdict, outcome, text) in [
        (
            Verdict::NothingTested,
            PromotionOutcome::NothingTested,
            "no main commit has passed its tests yet",
        ),
        (
            Verdict::UpToDate,
            PromotionOutcome::UpToDate,
            "production already holds main (c0ffee0)",
        ),
    ] {
        let (after, effects) = looked(idle(), look(verdict));
        assert_eq!(after.stage, Stage::Idle);
        assert_eq!(effects, vec![Effect::CountRun(outcome)], "{verdict:?}");
        let run = after.record.last_run.as_ref().expect("recorded");
        assert_eq!(run.outcome, outcome);
        assert_eq!(run.requested_by, SCHEDULE);
        assert_eq!(run.at, Time(at(0)));
        assert!(run.message.contains(text), "{}", run.message);
        assert_eq!(after.record.message.as_deref(), Some(run.message.as_str()));
        assert_eq!(after.record.last_schedule_time, Some(Time(at(-60))), "handled");
        assert_eq!(after.record.last_promotion, None);
    }
}

#[test]
fn idle_looked_due_when_diverged_or_a_branch_is_missing_is_refused_with_a_warning() {
    let mut diverged = requested(look(Verdict::Diverged), "t2", false);
    diverged.diverging = (
        vec![Commit {
            short: "dead000".into(),
            subject: "hotfix".into(),
        }],
        true,
    );
    for (case, outcome, text) in [
        (
            diverged,
            PromotionOutcome::Diverged,
            "production has 1 commit(s) that main lacks (dead000 hotfix; and more)",
        ),
        (
            requested(look(Verdict::BranchMissing), "t2", false),
            PromotionOutcome::BranchMissing,
            "branch main or production is missing on the remote",
        ),
    ] {
        let (after, effects) = looked(idle(), case);
        assert_eq!(after.stage, Stage::Idle);
        assert_eq!(published(&effects), vec![(true, "PromotionRefused")]);
        assert_eq!(counted(&effects), vec![outcome]);
        let run = after.record.last_run.as_ref().expect("recorded");
        assert!(run.message.contains(text), "{}", run.message);
        assert_eq!(run.requested_by, "alice");
        assert_eq!(after.record.last_handled_requested_at.as_deref(), Some("t2"));
        assert_eq!(after.record.last_schedule_time, None, "no scheduled time was due");
    }
}

fn reading_hold(look: Look) -> Promotion {
    let (promotion, _) = looked(idle(), look);
    assert!(matches!(promotion.stage, Stage::ReadingHold(_)));
    promotion
}

#[test]
fn reading_hold_held_records_and_announces_a_held_run_and_keeps_the_schedule_due() {
    let (after, effects) = step(
        reading_hold(look(Verdict::Promote)),
        Event::HoldRead(Some("held by bob: incident".into())),
        at(1),
    );
    assert_eq!(after.stage, Stage::Idle);
    assert_eq!(published(&effects), vec![(true, "PromotionHeld")]);
    assert_eq!(counted(&effects), vec![PromotionOutcome::Held]);
    let run = after.record.last_run.as_ref().expect("recorded");
    assert_eq!(run.outcome, PromotionOutcome::Held);
    assert_eq!(run.commit.as_deref(), Some(CANDIDATE));
    assert!(
        run.message
            .contains("production is held by bob: incident; the promotion runs on resume"),
        "{}",
        run.message
    );
    assert_eq!(after.record.last_schedule_time, None, "still due: runs on resume");
    assert_eq!(after.record.last_promotion, None);

    // A request is answered, and handled, even when held.
    let (after, effects) = step(
        reading_hold(requested(look(Verdict::Promote), "t3", false)),
        Event::HoldRead(Some("held".into())),
        at(1),
    );
    assert_eq!(counted(&effects), vec![PromotionOutcome::Held]);
    assert_eq!(after.record.last_handled_requested_at.as_deref(), Some("t3"));
}

#[test]
fn reading_hold_held_again_for_the_same_commit_on_schedule_says_nothing() {
    let (first, _) = step(
        reading_hold(look(Verdict::Promote)),
        Event::HoldRead(Some("held".into())),
        at(1),
    );
    let (again, _) = looked(first.clone(), look(Verdict::Promote));
    let (after, effects) = step(again, Event::HoldRead(Some("held".into())), at(2));
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(after.record, first.record, "the first announcement stands");

    // A new candidate while held is announced.
    let mut newer = look(Verdict::Promote);
    newer.candidate = Some(("beef".repeat(10), "main-beefbeefbe".into()));
    let (again, _) = looked(first, newer);
    let (_, effects) = step(again, Event::HoldRead(Some("held".into())), at(2));
    assert_eq!(counted(&effects), vec![PromotionOutcome::Held]);
}

#[test]
fn reading_hold_not_held_compares_when_undeclared_differences_are_refused() {
    let mut strict = look(Verdict::Promote);
    strict.refuse_undeclared = true;
    let (after, effects) = step(reading_hold(strict), Event::HoldRead(None), at(1));
    assert!(matches!(after.stage, Stage::Comparing(_)));
    assert_eq!(
        effects,
        vec![Effect::CompareEnvironments {
            commit: CANDIDATE.into()
        }]
    );
}

#[test]
fn reading_hold_not_held_makes_the_release() {
    let (after, effects) = step(reading_hold(look(Verdict::Promote)), Event::HoldRead(None), at(1));
    assert!(matches!(after.stage, Stage::Releasing(_)));
    let order = make_release(&effects).expect("a release asked for");
    assert_eq!(effects.len(), 1);
    assert_eq!(order.origin.requested_by, SCHEDULE);
    assert_eq!(order.origin.scheduled_for, Some(Time(at(-60))));
    assert_eq!(after.record, ShipPromotionStatus::default(), "recorded once made");
}

fn comparing() -> Promotion {
    let mut strict = look(Verdict::Promote);
    strict.refuse_undeclared = true;
    let (promotion, _) = step(reading_hold(strict), Event::HoldRead(None), at(1));
    promotion
}

#[test]
fn comparing_refused_records_undeclared_differences_and_stalls_on_that_candidate() {
    let refusal = "not promoting main c0ffee0 into production: 1 undeclared difference(s)".to_owned();
    let (after, effects) = step(comparing(), Event::Compared(Some(refusal.clone())), at(2));
    assert_eq!(after.stage, Stage::Idle);
    assert_eq!(published(&effects), vec![(true, "PromotionRefused")]);
    assert_eq!(counted(&effects), vec![PromotionOutcome::UndeclaredDifferences]);
    assert!(make_release(&effects).is_none());
    assert_eq!(after.record.last_run.as_ref().map(|r| &r.message), Some(&refusal));
    assert_eq!(after.record.last_schedule_time, Some(Time(at(-60))), "handled");

    let same = look(Verdict::Promote);
    assert_eq!(
        stall(&same, &after.record),
        Some(("UndeclaredDifferences", refusal))
    );
    let mut newer = same;
    newer.candidate = Some(("beef".repeat(10), "main-beefbeefbe".into()));
    assert_eq!(stall(&newer, &after.record), None, "a new candidate clears it");
}

#[test]
fn comparing_without_differences_makes_the_release() {
    let (after, effects) = step(comparing(), Event::Compared(None), at(2));
    assert!(matches!(after.stage, Stage::Releasing(_)));
    assert!(make_release(&effects).is_some());
    assert_eq!(effects.len(), 1);
}

fn releasing() -> Promotion {
    let (promotion, _) = step(reading_hold(look(Verdict::Promote)), Event::HoldRead(None), at(1));
    promotion
}

#[test]
fn releasing_made_records_the_promotion_and_announces_it() {
    let (after, effects) = step(
        releasing(),
        Event::ReleaseMade {
            name: "production-c0ffee0123".into(),
            created: true,
        },
        at(3),
    );
    assert_eq!(after.stage, Stage::Idle);
    assert_eq!(published(&effects), vec![(false, "Promoted")]);
    assert_eq!(counted(&effects), vec![PromotionOutcome::Promoted]);
    let run = after.record.last_run.clone().expect("recorded");
    assert_eq!(run.release.as_deref(), Some("production-c0ffee0123"));
    assert_eq!(
        run.message,
        "promoting main c0ffee0 to production (3 commits) as release production-c0ffee0123"
    );
    assert_eq!(after.record.last_promotion, Some(run));
    assert_eq!(after.record.last_schedule_time, Some(Time(at(-60))));
}

#[test]
fn releasing_found_existing_records_without_announcing() {
    let (after, effects) = step(
        releasing(),
        Event::ReleaseMade {
            name: "production-c0ffee0123".into(),
            created: false,
        },
        at(3),
    );
    assert!(published(&effects).is_empty());
    assert_eq!(counted(&effects), vec![PromotionOutcome::Promoted]);
    let run = after.record.last_run.expect("recorded");
    assert!(run.message.contains("was already promoted"), "{}", run.message);
}

#[test]
fn any_stage_ignores_an_event_it_does_not_wait_for() {
    for state in [
        idle(),
        reading_hold(look(Verdict::Promote)),
        comparing(),
        releasing(),
    ] {
        for event in [
            Event::HoldRead(Some("held".into())),
            Event::HoldRead(None),
            Event::Compared(None),
            Event::Compared(Some("no".into())),
            Event::ReleaseMade {
                name: "x".into(),
                created: true,
            },
            Event::Looked(Box::new(look(Verdict::Promote))),
        ] {
            let waits_for = matches!(
                (&state.stage, &event),
                (Stage::Idle, Event::Looked(_))
                    | (Stage::ReadingHold(_), Event::HoldRead(_))
                    | (Stage::Comparing(_), Event::Compared(_))
                    | (Stage::Releasing(_), Event::ReleaseMade { .. })
            );
            if waits_for {
                continue;
            }
            let (after, effects) = step(state.clone(), event.clone(), at(5));
            assert_eq!(after, state, "{event:?}");
            assert!(effects.is_empty(), "{event:?}");
        }
    }
}

#[test]
fn stall_names_a_missing_branch_and_a_divergence() {
    let record = ShipPromotionStatus::default();
    assert_eq!(stall(&look(Verdict::Promote), &record), None);
    let (reason, _) = stall(&look(Verdict::BranchMissing), &record).expect("stalled");
    assert_eq!(reason, "BranchMissing");
    let mut diverged = look(Verdict::Diverged);
    diverged.diverging = (
        vec![Commit {
            short: "dead000".into(),
            subject: "hotfix".into(),
        }],
        false,
    );
    let (reason, message) = stall(&diverged, &record).expect("stalled");
    assert_eq!(reason, "Diverged");
    assert!(
        message.contains("(dead000 hotfix): merge them into main"),
        "{message}"
    );
}

/// Random sequences of looks and answers, many seeds. Whatever the order:
/// - a release is asked for only for a run whose hold was read as not held, or that a request
///   forced, and (under refuseUndeclared) whose comparison found nothing;
/// - each request value is counted at most once, and `lastScheduleTime` never goes back;
/// - a run counted is a run recorded: `lastRun` is the last outcome counted;
/// - a held scheduled run leaves its time due.
#[test]
fn random_walks_keep_the_invariants() {
    let verdicts = [
        Verdict::Promote,
        Verdict::Promote,
        Verdict::UpToDate,
        Verdict::NothingTested,
        Verdict::Diverged,
        Verdict::BranchMissing,
    ];
    for seed in 0..500 {
        let mut rng = ship_testkit::seeded::Seeded::new(seed);
        let mut promotion = idle();
        let mut clock = 0;
        let mut hold_cleared_or_forced = false;
        let mut compared_clean = false;
        let mut last_counted = None;
        for _ in 0..80 {
            clock += 1 + rng.below(600) as i64;
            let event = match rng.below(5) {
                0 | 1 => {
                    let mut l = look(*rng.pick(&verdicts));
                    l.refuse_undeclared = rng.chance(30);
                    l.due = rng.chance(50).then(|| at(clock - rng.below(100) as i64));
                    if rng.chance(40) {
                        l.request = Some(Request {
                            at: format!("r{}", rng.below(6)),
                            by: Some("alice".into()),
                            force: rng.chance(30),
                        });
                    }
                    Event::Looked(Box::new(l))
                }
                2 => Event::HoldRead(rng.chance(40).then(|| "held".to_owned())),
                3 => Event::Compared(rng.chance(40).then(|| "undeclared".to_owned())),
                _ => Event::ReleaseMade {
                    name: "production-c0ffee0123".into(),
                    created: rng.chance(70),
                },
            };
            let before = promotion.clone();
            let (after, effects) = step(promotion, event.clone(), at(clock));
            if let (Stage::Idle, Event::Looked(l)) = (&before.stage, &event) {
                let forced = l.request.as_ref().is_some_and(|r| {
                    r.force && before.record.last_handled_requested_at.as_deref() != Some(r.at.as_str())
                });
                hold_cleared_or_forced = forced || l.verdict != Verdict::Promote;
                compared_clean = !l.refuse_undeclared;
            }
            if matches!(
                (&before.stage, &event),
                (Stage::ReadingHold(_), Event::HoldRead(None))
            ) {
                hold_cleared_or_forced = true;
            }
            if matches!(
                (&before.stage, &event),
                (Stage::Comparing(_), Event::Compared(None))
            ) {
                compared_clean = true;
            }
            if make_release(&effects).is_some() {
                assert!(
                    hold_cleared_or_forced && compared_clean,
                    "seed {seed}: a release without a clear hold and comparison"
                );
            }
            let run_request = match (&before.stage, &event) {
                (Stage::ReadingHold(run) | Stage::Comparing(run) | Stage::Releasing(run), _) => {
                    run.request.clone()
                }
                // A request already handled is no part of the run (the schedule's, if any).
                (Stage::Idle, Event::Looked(l)) => l
                    .request
                    .as_ref()
                    .map(|r| r.at.clone())
                    .filter(|r| before.record.last_handled_requested_at.as_ref() != Some(r)),
                _ => None,
            };
            for outcome in counted(&effects) {
                last_counted = Some(outcome);
                if let Some(r) = &run_request {
                    assert_ne!(
                        before.record.last_handled_requested_at.as_ref(),
                        Some(r),
                        "seed {seed}: request {r} handled twice"
                    );
                }
            }
            assert!(
                after.record.last_schedule_time.as_ref().map(|t| t.0)
                    >= before.record.last_schedule_time.as_ref().map(|t| t.0),
                "seed {seed}: lastScheduleTime went back"
            );
            if !counted(&effects).is_empty() {
                assert_eq!(
                    after.record.last_run.as_ref().map(|r| r.outcome),
                    last_counted,
                    "seed {seed}: counted but not recorded"
                );
            }
            if counted(&effects) == vec![PromotionOutcome::Held] {
                assert_eq!(
                    after.record.last_schedule_time, before.record.last_schedule_time,
                    "seed {seed}: a held run handled its scheduled time"
                );
            }
            promotion = after;
        }
    }
}
