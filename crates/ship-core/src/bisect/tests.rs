#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use super::*;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).expect("a valid time")
}

/// Commits `c00`, `c01`, ... (stand-ins for SHAs).
fn range(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("c{i:02}")).collect()
}

fn deploy(commit: &str, attempt: u32) -> Effect {
    Effect::Deploy {
        commit: commit.into(),
        attempt,
    }
}

fn settled(commit: &str, attempt: u32, passed: bool) -> Event {
    Event::Settled {
        commit: commit.into(),
        attempt,
        passed,
    }
}

fn started(k: usize) -> Bisection {
    start("base", range(k), at(0), Settings::default()).unwrap().0
}

fn testing(index: usize, attempt: u32) -> Stage {
    Stage::Testing { index, attempt }
}

// One test per row of the module's table.

#[test]
fn a_range_of_several_commits_starts_with_its_middle_and_one_commit_needs_no_search() {
    assert_eq!(start("base", range(1), at(0), Settings::default()), None);
    let (bisection, effects) = start("base", range(8), at(0), Settings::default()).unwrap();
    assert_eq!(bisection.stage, testing(3, 1));
    assert_eq!(effects, [deploy("c03", 1)]);
    assert_eq!((bisection.good, bisection.bad, bisection.bad_failures), (0, 7, 1));
}

#[test]
fn observed_asks_for_the_current_test_release_again() {
    let bisection = started(8);
    let (next, effects) = step(&bisection, Event::Observed, at(1), Settings::default());
    assert_eq!(next, bisection);
    assert_eq!(effects, [deploy("c03", 1)]);
}

#[test]
fn a_pass_moves_the_good_bound_past_the_commit_and_tests_the_new_middle() {
    let (next, effects) = step(&started(8), settled("c03", 1, true), at(1), Settings::default());
    assert_eq!(next.good, 4);
    assert_eq!(next.stage, testing(5, 1));
    assert_eq!(effects, [deploy("c05", 1)]);
    assert_eq!(
        next.trials,
        [Trial {
            commit: "c03".into(),
            attempt: 1,
            passed: true
        }]
    );
}

#[test]
fn a_failure_with_a_retry_left_runs_the_commit_again() {
    let (next, effects) = step(&started(8), settled("c03", 1, false), at(1), Settings::default());
    assert_eq!(next.stage, testing(3, 2));
    assert_eq!(effects, [deploy("c03", 2)]);
    assert_eq!(next.bad, 7, "one failure proves nothing yet");
}

#[test]
fn a_failure_with_no_retry_left_moves_the_bad_bound_to_the_commit() {
    let once = step(&started(8), settled("c03", 1, false), at(1), Settings::default()).0;
    let (next, effects) = step(&once, settled("c03", 2, false), at(2), Settings::default());
    assert_eq!((next.good, next.bad, next.bad_failures), (0, 3, 2));
    assert_eq!(next.stage, testing(1, 1));
    assert_eq!(effects, [deploy("c01", 1)]);
}

#[test]
fn the_last_candidate_failing_twice_is_named_and_the_newest_good_restored() {
    // c00 passes, c01 fails twice: c01 is the first bad commit, c00 the newest good.
    let settings = Settings::default();
    let mut b = started(2);
    assert_eq!(b.stage, testing(0, 1));
    b = step(&b, settled("c00", 1, true), at(1), settings).0;
    // c01 is the range's newest: failed once by the release, once more now.
    assert_eq!(b.stage, testing(1, 2));
    let (b, effects) = step(&b, settled("c01", 2, false), at(2), settings);
    assert_eq!(b.stage, Stage::Named { index: 1 });
    assert_eq!(b.culprit(), Some("c01"));
    assert_eq!(
        effects,
        [Effect::Restore { commit: "c00".into() }, Effect::Report]
    );
}

#[test]
fn a_late_answer_about_another_commit_or_attempt_changes_nothing() {
    let bisection = started(8);
    for late in [settled("c02", 1, false), settled("c03", 2, true)] {
        let (next, effects) = step(&bisection, late, at(1), Settings::default());
        assert_eq!(next, bisection);
        assert!(effects.is_empty());
    }
}

#[test]
fn a_waiting_push_is_noted_once_and_does_not_interrupt_before_the_deadline() {
    let (once, effects) = step(&started(8), Event::PushWaiting, at(5), Settings::default());
    assert!(effects.is_empty());
    assert_eq!(once.push_waiting_since, Some(Time(at(5))));
    assert_eq!(once.stage, testing(3, 1));
    let (twice, _) = step(&once, Event::PushWaiting, at(9), Settings::default());
    assert_eq!(twice.push_waiting_since, Some(Time(at(5))));
}

#[test]
fn past_the_deadline_a_waiting_push_supersedes_and_otherwise_it_times_out() {
    let settings = Settings::default();
    let good_half = step(&started(8), settled("c03", 1, true), at(1), settings).0;
    let waiting = step(&good_half, Event::PushWaiting, at(2), settings).0;
    let late = at(600);
    let (superseded, effects) = step(&waiting, Event::Observed, late, settings);
    assert_eq!(
        superseded.stage,
        Stage::Superseded {
            by: SupersededBy::Push
        }
    );
    assert_eq!(
        effects,
        [Effect::Restore { commit: "c03".into() }, Effect::Report]
    );
    let (timed_out, effects) = step(&good_half, Event::Observed, late, settings);
    assert_eq!(
        timed_out.stage,
        Stage::Inconclusive {
            why: Inconclusive::TimedOut
        }
    );
    assert_eq!(
        effects,
        [Effect::Restore { commit: "c03".into() }, Effect::Report]
    );
    // A push arriving at the deadline supersedes at once.
    let (now_superseded, _) = step(&good_half, Event::PushWaiting, late, settings);
    assert_eq!(
        now_superseded.stage,
        Stage::Superseded {
            by: SupersededBy::Push
        }
    );
}

#[test]
fn a_hold_stops_the_bisection_where_it_is() {
    let (next, effects) = step(&started(8), Event::Held, at(1), Settings::default());
    assert_eq!(next.stage, Stage::Stopped);
    assert_eq!(
        effects,
        [Effect::Report],
        "the hold decides what runs, not the bisection"
    );
}

#[test]
fn an_ended_bisection_answers_nothing() {
    let mut ended = started(8);
    for stage in [
        Stage::Named { index: 2 },
        Stage::Inconclusive {
            why: Inconclusive::NotReproduced,
        },
        Stage::Superseded {
            by: SupersededBy::Push,
        },
        Stage::Stopped,
    ] {
        ended.stage = stage;
        assert!(ended.ended());
        for event in [
            Event::Observed,
            Event::PushWaiting,
            Event::Held,
            settled("c02", 1, false),
        ] {
            let (next, effects) = step(&ended, event, at(10_000), Settings::default());
            assert_eq!(next, ended);
            assert!(effects.is_empty());
        }
    }
}

#[test]
fn the_newest_passing_when_run_again_names_no_commit() {
    // Every half passes, then the failed commit passes too: the failure did not repeat.
    let settings = Settings::default();
    let mut b = started(4);
    let mut effects = Vec::new();
    while let Stage::Testing { index, attempt } = b.stage.clone() {
        (b, effects) = step(
            &b,
            settled(&b.commits[index].clone(), attempt, true),
            at(1),
            settings,
        );
    }
    assert_eq!(
        b.stage,
        Stage::Inconclusive {
            why: Inconclusive::NotReproduced
        }
    );
    assert_eq!(b.culprit(), None);
    assert_eq!(
        effects,
        [Effect::Restore { commit: "c02".into() }, Effect::Report]
    );
}

// Exhaustive and seeded runs against an oracle.

/// Runs a bisection of `k` commits to its end, answering each test release with `verdict`
/// (commit index, attempt) and, before each answer, feeding `before` (a restart, a push):
/// the final state, and every effect in order.
fn run(
    k: usize,
    settings: Settings,
    mut verdict: impl FnMut(usize, u32) -> bool,
    mut before: impl FnMut(usize, &Bisection) -> Option<Event>,
) -> (Bisection, Vec<Effect>) {
    let (mut b, mut all) = start("base", range(k), at(0), settings).unwrap();
    let mut steps = 0;
    while let Stage::Testing { index, attempt } = b.stage.clone() {
        let now = at(steps as i64);
        if let Some(event) = before(steps, &b) {
            let (next, effects) = step(&b, event, now, settings);
            b = next;
            all.extend(effects);
            let Stage::Testing { .. } = b.stage else { break };
        }
        let Stage::Testing { index: i, attempt: a } = b.stage.clone() else {
            break;
        };
        assert_eq!((i, a), (index, attempt), "only a new answer moves the bisection");
        let commit = b.commits[index].clone();
        let (next, effects) = step(
            &b,
            settled(&commit, attempt, verdict(index, attempt)),
            now,
            settings,
        );
        b = next;
        all.extend(effects);
        steps += 1;
        assert!(steps <= 4 * 64, "the bisection of {k} commits does not end");
    }
    (b, all)
}

fn ceil_log2(k: usize) -> usize {
    (usize::BITS - (k - 1).leading_zeros()) as usize
}

/// Every position of the culprit in ranges of 2 to 64 commits: the first bad commit is
/// named, in at most ⌈log₂ k⌉ first runs plus one re-run per failing commit tried; the
/// commits before it are known good, and the newest of them is restored.
#[test]
fn every_culprit_position_in_ranges_of_2_to_64_is_named_within_the_bound() {
    let settings = Settings::default();
    for k in 2..=64 {
        for culprit in 0..k {
            let (b, effects) = run(k, settings, |index, _| index < culprit, |_, _| None);
            assert_eq!(
                b.stage,
                Stage::Named { index: culprit },
                "k={k} culprit={culprit}"
            );
            let first_runs = b.trials.iter().filter(|t| t.attempt == 1).count();
            assert!(
                first_runs <= ceil_log2(k),
                "k={k} culprit={culprit}: {first_runs} first runs, bound {}",
                ceil_log2(k)
            );
            let failing_commits: std::collections::BTreeSet<&str> = b
                .trials
                .iter()
                .filter(|t| !t.passed)
                .map(|t| t.commit.as_str())
                .collect();
            let reruns = b.trials.len() - first_runs;
            assert!(
                reruns <= failing_commits.len() + 1,
                "k={k} culprit={culprit}: {reruns} re-runs"
            );
            assert_eq!(b.known_good(), &range(k)[..culprit]);
            let newest_good = if culprit == 0 {
                "base".to_owned()
            } else {
                format!("c{:02}", culprit - 1)
            };
            assert_eq!(
                effects[effects.len() - 2..],
                [Effect::Restore { commit: newest_good }, Effect::Report]
            );
            // Nothing before the culprit was deployed after it was known good... and nothing
            // outside the range ever.
            for effect in &effects {
                if let Effect::Deploy { commit, .. } = effect {
                    assert!(range(k).contains(commit), "{commit}");
                }
            }
        }
    }
}

/// A test that fails once in a while on a good commit: the re-run passes, the commit counts as
/// good, and the culprit is still the one named.
#[test]
fn a_flaky_failure_on_a_good_commit_does_not_move_the_culprit() {
    let settings = Settings::default();
    for k in [5, 16, 50] {
        for culprit in 1..k {
            // Every good commit fails its first run: the worst flake.
            let (b, _) = run(
                k,
                settings,
                |index, attempt| index < culprit && attempt > 1,
                |_, _| None,
            );
            assert_eq!(
                b.culprit(),
                Some(range(k)[culprit].as_str()),
                "k={k} culprit={culprit}"
            );
            assert!(b.trials.iter().any(|t| !t.passed && t.commit < range(k)[culprit]));
        }
    }
}

/// With no re-runs (`retries: 0`) one failure is proof: fewer releases, and the same culprit.
#[test]
fn without_retries_one_failure_names_the_commit() {
    let settings = Settings {
        retries: 0,
        ..Settings::default()
    };
    for k in 2..=20 {
        for culprit in 0..k {
            let (b, _) = run(k, settings, |index, _| index < culprit, |_, _| None);
            assert_eq!(b.culprit(), Some(range(k)[culprit].as_str()));
            assert!(
                b.trials.len() <= ceil_log2(k),
                "k={k}: {} releases",
                b.trials.len()
            );
        }
    }
}

/// A new push at each step of a 50-commit bisection (the 37th commit bad): before the deadline
/// it waits and the culprit is still named; past it the bisection ends Superseded there,
/// restoring the newest commit known good by then. No push is lost: it is noted, and the end
/// is reported.
#[test]
fn a_push_at_each_step_waits_for_the_deadline_then_supersedes() {
    let settings = Settings::default();
    let culprit = 36;
    let full = run(50, settings, |i, _| i < culprit, |_, _| None).0;
    for push_at in 0..full.trials.len() {
        let (b, _) = run(
            50,
            settings,
            |i, _| i < culprit,
            |s, _| (s == push_at).then_some(Event::PushWaiting),
        );
        assert_eq!(
            b.culprit(),
            Some("c36"),
            "a push at step {push_at} before the deadline waits"
        );
        assert!(b.push_waiting_since.is_some());

        // The same push, and the deadline passing before the next answer.
        let mut at_step = started(50);
        for trial in full.trials.iter().take(push_at) {
            at_step = step(
                &at_step,
                settled(&trial.commit, trial.attempt, trial.passed),
                at(1),
                settings,
            )
            .0;
        }
        let waiting = step(&at_step, Event::PushWaiting, at(2), settings).0;
        let (ended, effects) = step(&waiting, Event::Observed, at(601), settings);
        assert_eq!(
            ended.stage,
            Stage::Superseded {
                by: SupersededBy::Push
            },
            "push at step {push_at}"
        );
        assert_eq!(
            effects,
            [
                Effect::Restore {
                    commit: at_step.newest_good().to_owned()
                },
                Effect::Report
            ]
        );
    }
}

/// The branch rewritten (force-pushed past the failed commit) at each step: the bisection ends
/// at once, Superseded by the rewrite, before its deadline, restoring the newest commit known
/// good by then; a late answer of the test release out then changes nothing. A stored stage
/// without `by` (written before it existed) reads as superseded by a push.
#[test]
fn a_rewrite_at_each_step_supersedes_at_once() {
    let settings = Settings::default();
    let full = run(50, settings, |i, _| i < 36, |_, _| None).0;
    for rewrite_at in 0..full.trials.len() {
        let mut at_step = started(50);
        for trial in full.trials.iter().take(rewrite_at) {
            at_step = step(
                &at_step,
                settled(&trial.commit, trial.attempt, trial.passed),
                at(1),
                settings,
            )
            .0;
        }
        let (ended, effects) = step(&at_step, Event::Rewritten, at(2), settings);
        assert_eq!(
            ended.stage,
            Stage::Superseded {
                by: SupersededBy::Rewrite
            },
            "at step {rewrite_at}"
        );
        assert_eq!(ended.ended_at, Some(Time(at(2))));
        assert_eq!(
            effects,
            [
                Effect::Restore {
                    commit: at_step.newest_good().to_owned()
                },
                Effect::Report
            ]
        );
        assert!(
            ended.describe(None).contains("rewritten"),
            "{}",
            ended.describe(None)
        );
        let (test_commit, attempt) = current_test(&at_step).unwrap();
        let late = step(&ended, settled(test_commit, attempt, false), at(3), settings);
        assert_eq!(late, (ended.clone(), Vec::new()));
        let stored = serde_json::to_value(&ended).unwrap();
        assert_eq!(stored["stage"]["by"], "Rewrite");
        let mut old = stored.clone();
        old["stage"].as_object_mut().unwrap().remove("by");
        let read: Bisection = serde_json::from_value(old).unwrap();
        assert_eq!(
            read.stage,
            Stage::Superseded {
                by: SupersededBy::Push
            }
        );
    }
}

/// shipd killed at each step: the persisted bisection read back (JSON, as the status holds it)
/// asks for the same test release again, and the run ends as an undisturbed one does.
#[test]
fn a_restart_at_each_step_resumes_the_same_bisection() {
    let settings = Settings::default();
    for (k, culprit) in [(8, 5), (50, 36), (64, 63), (3, 0)] {
        let undisturbed = run(k, settings, |i, _| i < culprit, |_, _| None).0;
        for kill_at in 0..undisturbed.trials.len() {
            let (b, _) = run(
                k,
                settings,
                |i, _| i < culprit,
                |s, b| {
                    if s != kill_at {
                        return None;
                    }
                    let persisted = serde_json::to_string(b).unwrap();
                    let read: Bisection = serde_json::from_str(&persisted).unwrap();
                    assert_eq!(&read, b, "the persisted bisection reads back whole");
                    let (again, effects) = step(&read, Event::Observed, at(s as i64), settings);
                    assert_eq!(again, read);
                    let Stage::Testing { index, attempt } = read.stage else {
                        unreachable!()
                    };
                    assert_eq!(effects, [deploy(&read.commits[index], attempt)]);
                    Some(Event::Observed)
                },
            );
            assert_eq!(b.stage, undisturbed.stage, "k={k} killed at step {kill_at}");
            assert_eq!(b.trials, undisturbed.trials);
        }
    }
}

/// Seeded walks: random ranges, culprits, flaky answers, pushes, holds and restarts. Whatever
/// happens: the bounds never cross, only commits of the range are deployed, a named culprit
/// failed `retries + 1` times (counting the release that started it for the newest) and every
/// commit before it passed or lies before one that passed, and every bisection ends.
#[test]
fn seeded_walks_keep_the_bisection_sound() {
    for seed in 1..=500u64 {
        let mut rng = ship_testkit::seeded::Seeded::new(seed);
        let k = 2 + rng.below(63);
        let culprit = rng.below(k);
        let flaky = rng.below(30);
        let settings = Settings {
            retries: rng.below(3) as u32,
            max_duration: Duration::from_secs(10 + rng.below(600) as u64),
        };
        let (mut b, _) = start("base", range(k), at(0), settings).unwrap();
        let mut now = 0i64;
        for _ in 0..1_000 {
            let Stage::Testing { index, attempt } = b.stage.clone() else {
                break;
            };
            assert!(b.good <= b.bad && b.bad < k, "seed {seed}: bounds crossed");
            now += 1 + rng.below(30) as i64;
            let event = match rng.below(100) {
                0..=2 => Event::PushWaiting,
                3 => Event::Held,
                4..=9 => Event::Observed,
                // A late answer about another commit.
                10..=12 => {
                    let other = (index + 1 + rng.below(k - 1)) % k;
                    settled(&b.commits[other].clone(), 1 + rng.below(3) as u32, rng.chance(50))
                }
                _ => {
                    let passed = index < culprit && !rng.chance(flaky);
                    settled(&b.commits[index].clone(), attempt, passed)
                }
            };
            let (next, effects) = step(&b, event, at(now), settings);
            for effect in &effects {
                if let Effect::Deploy { commit, .. } = effect {
                    assert!(b.commits.contains(commit), "seed {seed}: deployed {commit}");
                }
                if let Effect::Restore { commit } = effect {
                    assert!(commit == "base" || b.commits.contains(commit), "seed {seed}");
                }
            }
            b = next;
        }
        assert!(b.ended(), "seed {seed}: not ended after 1,000 events");
        if let Some(named) = b.culprit() {
            let failures = b.trials.iter().filter(|t| t.commit == named && !t.passed).count()
                + usize::from(named == b.commits[k - 1]);
            assert!(
                failures > settings.retries as usize,
                "seed {seed}: {named} named on {failures} failures"
            );
            let position = b.commits.iter().position(|c| c == named).unwrap();
            assert!(
                position == 0
                    || b.trials
                        .iter()
                        .any(|t| t.commit == b.commits[position - 1] && t.passed),
                "seed {seed}: {named} named without its parent passing"
            );
            // Without flakes the named commit is the first bad one (with them, a good commit
            // failing `retries + 1` times in a row is, by design, taken for bad).
            if flaky == 0 {
                assert_eq!(named, b.commits[culprit], "seed {seed}");
            }
        }
    }
}

/// Who starts a bisection: a pushed release that rolled back, in an environment that is no
/// promotion's target, still the newest, not held, with bisect enabled and none yet. Each
/// condition alone stops it.
#[test]
fn only_a_rolled_back_push_that_is_still_the_newest_starts_a_bisection() {
    let failure = Failure {
        enabled: true,
        promoted_into: false,
        pushed: true,
        rolled_back: true,
        has_bisection: false,
        superseded: false,
        held: false,
    };
    assert!(starts(failure));
    for blocked in [
        Failure {
            enabled: false,
            ..failure
        },
        Failure {
            promoted_into: true,
            ..failure
        },
        Failure {
            pushed: false,
            ..failure
        },
        Failure {
            rolled_back: false,
            ..failure
        },
        Failure {
            has_bisection: true,
            ..failure
        },
        Failure {
            superseded: true,
            ..failure
        },
        Failure {
            held: true,
            ..failure
        },
    ] {
        assert!(!starts(blocked), "{blocked:?}");
    }
}

/// A test release's phase answers once it settled; a superseded or running one says nothing.
#[test]
fn a_test_releases_phase_answers_pass_fail_or_nothing_yet() {
    use crate::status::Phase::*;
    assert_eq!(answer(Some(Succeeded)), Some(true));
    for failed in [Failed, RolledBack] {
        assert_eq!(answer(Some(failed)), Some(false), "{failed:?}");
    }
    for open in [Pending, Applying, Progressing, Testing, RollingBack, Superseded] {
        assert_eq!(answer(Some(open)), None, "{open:?}");
    }
    assert_eq!(answer(None), None);
}

/// What a look gives the machine: a hold first, then the test release's verdict, then a moved
/// tip (once), else only Observed; an ended bisection is only observed.
#[test]
fn a_look_turns_hold_verdict_and_moved_tip_into_one_event() {
    use crate::status::Phase::*;
    let bisection = started(8);
    let Stage::Testing { index, attempt } = bisection.stage else {
        panic!("testing")
    };
    let commit = bisection.commits[index].clone();
    use Branch::*;
    assert_eq!(observe(&bisection, true, Some(Succeeded), Rewritten), Event::Held);
    // A rewritten branch supersedes, whatever the test release said.
    assert_eq!(
        observe(&bisection, false, Some(RolledBack), Rewritten),
        Event::Rewritten
    );
    assert_eq!(
        observe(&bisection, false, Some(RolledBack), MovedOn),
        settled(&commit, attempt, false)
    );
    assert_eq!(
        observe(&bisection, false, Some(Testing), MovedOn),
        Event::PushWaiting
    );
    assert_eq!(observe(&bisection, false, None, AtFailed), Event::Observed);
    let noted = Bisection {
        push_waiting_since: Some(Time(at(5))),
        ..bisection.clone()
    };
    assert_eq!(
        observe(&noted, false, None, MovedOn),
        Event::Observed,
        "said once"
    );
    let ended = Bisection {
        stage: Stage::Stopped,
        ..bisection
    };
    assert_eq!(observe(&ended, true, Some(Succeeded), Rewritten), Event::Observed);
    assert_eq!(current_test(&ended), None);
}

#[test]
fn the_current_test_names_its_release_after_the_failed_release_commit_and_attempt() {
    let bisection = started(8);
    let (commit, attempt) = current_test(&bisection).unwrap();
    assert_eq!((commit, attempt), ("c03", 1), "the middle of 0..7");
    assert_eq!(
        test_release_name("main-0123456789", "0123456789abcdef", 2),
        "main-0123456789-b2-0123456"
    );
    assert!(restore_needed("a", Some("b")));
    assert!(restore_needed("a", None));
    assert!(!restore_needed("a", Some("a")));
}

/// The step that ends a bisection records when, once; it blocks pushes only while testing
/// and before its deadline.
#[test]
fn the_end_is_timed_once_and_pushes_wait_only_while_it_tests() {
    let settings = Settings::default();
    let bisection = started(2);
    assert!(bisection.blocks_pushes(at(1), settings));
    assert!(!bisection.blocks_pushes(at(600), settings), "past maxDuration");
    let (ended, _) = step(&bisection, Event::Held, at(7), settings);
    assert_eq!(ended.ended_at, Some(Time(at(7))));
    assert!(!ended.blocks_pushes(at(8), settings));
    // A new tip waits until the end is reported (its restore made), not only until it ended.
    assert!(bisection.holds_new_tips());
    assert!(ended.holds_new_tips(), "ended, its restore not made yet");
    let reported = Bisection {
        reported_at: Some(Time(at(9))),
        ..ended.clone()
    };
    assert!(!reported.holds_new_tips());
    let (again, effects) = step(&ended, Event::Held, at(9), settings);
    assert_eq!(again.ended_at, Some(Time(at(7))), "kept");
    assert!(effects.is_empty());
}

/// Each stage survives the API's flat record, and a record missing a field is refused with
/// its name.
#[test]
fn stages_round_trip_through_their_stored_record() {
    for stage in [
        testing(3, 2),
        Stage::Named { index: 4 },
        Stage::Inconclusive {
            why: Inconclusive::NotReproduced,
        },
        Stage::Inconclusive {
            why: Inconclusive::TimedOut,
        },
        Stage::Superseded {
            by: SupersededBy::Push,
        },
        Stage::Stopped,
    ] {
        let json = serde_json::to_value(&stage).unwrap();
        assert_eq!(serde_json::from_value::<Stage>(json).unwrap(), stage);
    }
    let err =
        serde_json::from_value::<Stage>(serde_json::json!({"name": "Testing", "index": 1})).unwrap_err();
    assert!(err.to_string().contains("attempt"), "{err}");
}

/// What people read: the culprit with its subject and author and the evidence, or why no
/// commit is named; how the end is announced.
#[test]
fn the_sentences_name_the_culprit_or_why_none() {
    let mut bisection = started(8);
    bisection.commits = (0..8).map(|i| format!("{i:040}")).collect();
    // Truthful tests: commits 4 and later fail.
    while let Stage::Testing { index, attempt } = bisection.stage {
        let commit = bisection.commits[index].clone();
        (bisection, _) = step(
            &bisection,
            settled(&commit, attempt, index < 4),
            at(1),
            Settings::default(),
        );
    }
    assert_eq!(bisection.stage, Stage::Named { index: 4 });
    assert_eq!(bisection.steps(), bisection.trials.len());
    assert!(bisection.steps() >= 3, "{:?}", bisection.trials);
    let culprit = Culprit {
        short_commit: "0000004".into(),
        subject: "breaks it".into(),
        author: "Ada".into(),
        ..Culprit::default()
    };
    let said = bisection.describe(Some(&culprit));
    assert!(said.contains("0000004 \"breaks it\" by Ada"), "{said}");
    let steps = format!("{} test releases over 8 commits", bisection.steps());
    assert!(said.contains(&steps), "{said}");
    assert!(
        said.contains("the 4 before it passed") && said.contains("the 3 after it"),
        "{said}"
    );
    assert_eq!(bisection.announcement(), (true, "CulpritNamed"));
    assert_eq!(bisection.outcome(), "Named");
    let inconclusive = Bisection {
        stage: Stage::Inconclusive {
            why: Inconclusive::NotReproduced,
        },
        ..bisection.clone()
    };
    assert!(inconclusive.describe(None).contains("did not repeat"));
    assert_eq!(inconclusive.announcement(), (true, "BisectInconclusive"));
    let superseded = Bisection {
        stage: Stage::Superseded {
            by: SupersededBy::Push,
        },
        ..bisection.clone()
    };
    assert!(superseded.describe(None).contains("went ahead"));
    assert_eq!(superseded.announcement(), (false, "BisectSuperseded"));
    let stopped = Bisection {
        stage: Stage::Stopped,
        ..bisection
    };
    assert!(stopped.describe(None).contains("hold"));
    assert_eq!(stopped.outcome(), "Stopped");
}
