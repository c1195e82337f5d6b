//! Rules that `cargo mutants` (bench/mutants.sh) found untested in this crate: each test here
//! pins one a mutant could change unnoticed (a comparison's edge, a label, a Display).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use ship_core::promotion::{self, PromotionOutcome, ShipPromotionStatus};
use ship_core::reason::StatusReason;
use ship_core::release::{self, Change, Event, Persisted, Record, Snapshot};
use ship_core::status::{
    InventoryEntry, Phase, Reason, ShipReleaseStatus, SpecProblem, TestResult, TestVerdict,
    Transition as PhaseEntered,
};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("a valid time")
}

fn entered(phase: Phase, seconds: i64) -> PhaseEntered {
    PhaseEntered {
        phase,
        at: Time(at(seconds)),
        message: String::new(),
    }
}

fn ready(reason: &str) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: "False".into(),
        reason: reason.into(),
        message: String::new(),
        last_transition_time: Time(at(0)),
        observed_generation: None,
    }
}

fn persisted(status: &ShipReleaseStatus) -> Persisted<'_> {
    Persisted {
        status: Some(status),
        generation: Some(3),
        short_commit: "abc1234",
        environment: "main",
    }
}

fn result(name: &str, verdict: TestVerdict) -> TestResult {
    TestResult {
        name: name.into(),
        verdict,
        duration_millis: None,
        message: String::new(),
        log: String::new(),
    }
}

#[test]
fn transition_time_is_the_newest_entry_into_the_phase() {
    let status = ShipReleaseStatus {
        transitions: vec![
            entered(Phase::Pending, 1),
            entered(Phase::Applying, 2),
            entered(Phase::Pending, 3),
        ],
        ..ShipReleaseStatus::default()
    };
    assert_eq!(
        release::transition_time(Some(&status), Phase::Pending),
        Some(at(3))
    );
    assert_eq!(
        release::transition_time(Some(&status), Phase::Applying),
        Some(at(2))
    );
    assert_eq!(release::transition_time(Some(&status), Phase::Failed), None);
    assert_eq!(release::transition_time(None, Phase::Pending), None);
}

#[test]
fn a_snapshot_reads_phase_reason_message_and_times_off_the_status() {
    let status = ShipReleaseStatus {
        phase: Some(Phase::Succeeded),
        message: Some("live".into()),
        conditions: vec![ready("Succeeded")],
        transitions: vec![entered(Phase::Testing, 5), entered(Phase::Succeeded, 9)],
        rolled_back_to: Some("main-old".into()),
        ..ShipReleaseStatus::default()
    };
    let snapshot = Snapshot::of(
        persisted(&status),
        Some("main-newer".into()),
        std::time::Duration::from_secs(300),
        Vec::new(),
    );
    assert_eq!(snapshot.phase, Some(Phase::Succeeded));
    assert_eq!(snapshot.reason, Some(StatusReason::Succeeded));
    assert_eq!(snapshot.message, "live");
    assert_eq!(snapshot.short_commit, "abc1234");
    assert_eq!(snapshot.environment, "main");
    assert_eq!(snapshot.superseded_by.as_deref(), Some("main-newer"));
    assert_eq!(snapshot.rolled_back_to.as_deref(), Some("main-old"));
    assert_eq!(
        snapshot.applied_at,
        Some(at(9)),
        "settled at its Succeeded transition"
    );
    assert_eq!(snapshot.deployed_since, Some(at(9)));
}

#[test]
fn a_drift_check_that_found_nothing_counts_no_correction() {
    let mut status = ShipReleaseStatus::default();
    Record::DriftChecked {
        at: at(1),
        drifted: 0,
    }
    .write(&mut status);
    assert_eq!(status.drift_corrections, None);
    assert_eq!(status.drift_checked_at, Some(Time(at(1))));
}

#[test]
fn failures_and_rollbacks_are_warnings_successes_are_not() {
    let change = |phase| Change {
        phase,
        reason: StatusReason::Succeeded,
        cause: None,
        message: String::new(),
    };
    for phase in [Phase::Failed, Phase::RolledBack, Phase::RollingBack] {
        assert!(change(phase).is_warning(), "{phase:?}");
    }
    for phase in [
        Phase::Pending,
        Phase::Applying,
        Phase::Progressing,
        Phase::Testing,
        Phase::Succeeded,
    ] {
        assert!(!change(phase).is_warning(), "{phase:?}");
    }
}

fn testing() -> Snapshot {
    Snapshot {
        phase: Some(Phase::Testing),
        reason: Some(StatusReason::Testing),
        short_commit: "abc1234".into(),
        environment: "main".into(),
        ..Snapshot::default()
    }
}

#[test]
fn tests_passed_are_counted_and_a_test_still_running_is_no_success() {
    let all = vec![result("a", TestVerdict::Passed), result("b", TestVerdict::Passed)];
    let done = release::step(&testing(), Event::TestsRan(all), at(0));
    let change = done.change.expect("a change");
    assert_eq!(change.phase, Phase::Succeeded);
    assert!(change.message.contains("passed 2/2 tests"), "{}", change.message);

    let unfinished = vec![
        result("a", TestVerdict::Passed),
        result("b", TestVerdict::Running),
    ];
    let done = release::step(&testing(), Event::TestsRan(unfinished), at(0));
    let change = done.change.expect("a change");
    assert_ne!(change.phase, Phase::Succeeded, "{}", change.message);
    assert!(
        change.message.starts_with("1/2 tests passed"),
        "{}",
        change.message
    );
}

#[test]
fn applied_without_refusals_says_nothing_of_kept_objects() {
    let applying = Snapshot {
        phase: Some(Phase::Applying),
        reason: Some(StatusReason::Applying),
        ..testing()
    };
    let object = InventoryEntry {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: "app".into(),
        name: "web".into(),
    };
    let done = release::step(
        &applying,
        Event::Applied {
            inventory: vec![object],
            prune_refused: Vec::new(),
            fields_left: Vec::new(),
        },
        at(0),
    );
    let change = done.change.expect("a change");
    assert_eq!(
        change.message,
        "1 objects applied; waiting for them to become healthy"
    );
}

/// `count` transitions, alternating Pending and Applying, the n-th at second n.
fn alternating(count: usize) -> Vec<PhaseEntered> {
    (0..count as i64)
        .map(|n| {
            entered(
                if n % 2 == 0 {
                    Phase::Pending
                } else {
                    Phase::Applying
                },
                n,
            )
        })
        .collect()
}

/// The change into Progressing.
fn to_progressing() -> Change {
    Change {
        phase: Phase::Progressing,
        reason: StatusReason::Progressing,
        cause: None,
        message: "waiting".into(),
    }
}

#[test]
fn next_status_keeps_the_newest_transitions_and_writes_the_message() {
    let full = alternating(release::MAX_TRANSITIONS);
    let status = ShipReleaseStatus {
        phase: Some(Phase::Applying),
        transitions: full,
        ..ShipReleaseStatus::default()
    };
    let change = to_progressing();
    let next = release::next_status(persisted(&status), &change, &Time(at(100)));
    assert_eq!(next.transitions.len(), release::MAX_TRANSITIONS);
    assert_eq!(next.transitions[0].at, Time(at(1)), "the oldest one dropped");
    assert_eq!(next.transitions.last().map(|t| t.phase), Some(Phase::Progressing));
    assert_eq!(next.message.as_deref(), Some("waiting"));
    assert_eq!(next.phase, Some(Phase::Progressing));

    // One below the limit keeps them all.
    let mut short = status.clone();
    short.transitions.pop();
    let next = release::next_status(persisted(&short), &change, &Time(at(100)));
    assert_eq!(next.transitions.len(), release::MAX_TRANSITIONS);
    assert_eq!(next.transitions[0].at, Time(at(0)));

    // status_after writes the change and the record over the status.
    let after = release::status_after(
        persisted(&status),
        Some(&change),
        Record::RollbackTo("main-old".into()),
        &Time(at(100)),
    );
    assert_eq!(after.phase, Some(Phase::Progressing));
    assert_eq!(after.rolled_back_to.as_deref(), Some("main-old"));
}

#[test]
fn names_and_sentences_people_read() {
    let names: Vec<&str> = [Reason::Push, Reason::Promotion, Reason::Rollback, Reason::Manual]
        .iter()
        .map(|r| r.as_str())
        .collect();
    assert_eq!(names, ["Push", "Promotion", "Rollback", "Manual"]);
    assert_eq!(
        StatusReason::HealthTimeout.to_string(),
        StatusReason::HealthTimeout.label()
    );
    assert!(!StatusReason::HealthTimeout.to_string().is_empty());
    let namespaced = InventoryEntry {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: "app".into(),
        name: "web".into(),
    };
    assert_eq!(namespaced.to_string(), "ConfigMap/app/web");
    let cluster = InventoryEntry {
        namespace: String::new(),
        kind: "Namespace".into(),
        ..namespaced
    };
    assert_eq!(cluster.to_string(), "Namespace/web");
    assert!(
        SpecProblem::RollbackWithoutTarget
            .to_string()
            .contains("spec.rollbackOf is empty")
    );
    let outcomes: Vec<&str> = [
        PromotionOutcome::Promoted,
        PromotionOutcome::UpToDate,
        PromotionOutcome::NothingTested,
        PromotionOutcome::Diverged,
        PromotionOutcome::BranchMissing,
        PromotionOutcome::Error,
        PromotionOutcome::Held,
        PromotionOutcome::UndeclaredDifferences,
    ]
    .iter()
    .map(|o| o.as_str())
    .collect();
    assert_eq!(
        outcomes,
        [
            "Promoted",
            "UpToDate",
            "NothingTested",
            "Diverged",
            "BranchMissing",
            "Error",
            "Held",
            "UndeclaredDifferences"
        ]
    );
}

#[test]
fn ready_reason_and_settled_read_the_ready_condition() {
    let other = Condition {
        type_: "Stalled".into(),
        reason: "Other".into(),
        ..ready("x")
    };
    let status = ShipReleaseStatus {
        phase: Some(Phase::Succeeded),
        conditions: vec![other, ready("Succeeded")],
        ..ShipReleaseStatus::default()
    };
    assert_eq!(status.ready_reason(), "Succeeded");
    assert!(status.is_settled());
    let testing = ShipReleaseStatus {
        phase: Some(Phase::Testing),
        conditions: vec![ready("Testing")],
        ..ShipReleaseStatus::default()
    };
    assert!(!testing.is_settled());
    assert_eq!(ShipReleaseStatus::default().ready_reason(), "");
    assert!(!ShipReleaseStatus::default().is_settled());
}

#[test]
fn verification_keeps_exactly_its_last_runs() {
    let mut status = ShipReleaseStatus::default();
    for n in 0..ship_core::status::VERIFICATION_RUNS_KEPT {
        ship_core::verification::record(
            &mut status,
            at(n as i64),
            vec![result("home", TestVerdict::Passed)],
        );
    }
    let verification = status.verification.clone().expect("recorded");
    assert_eq!(verification.runs.len(), ship_core::status::VERIFICATION_RUNS_KEPT);
    assert_eq!(verification.runs_dropped, None, "none dropped at the limit");
    ship_core::verification::record(&mut status, at(99), vec![result("home", TestVerdict::Passed)]);
    let verification = status.verification.expect("recorded");
    assert_eq!(verification.runs_dropped, Some(1));
}

#[test]
fn a_later_scheduled_run_moves_the_record_forward() {
    let look = |due: i64| promotion::Look {
        route: promotion::Route {
            from: "main".into(),
            to: "production".into(),
            from_branch: "main".into(),
            to_branch: "production".into(),
        },
        verdict: promotion::Verdict::UpToDate,
        candidate: None,
        target_tip: None,
        behind: Default::default(),
        diverging: (Vec::new(), false),
        due: Some(at(due)),
        request: None,
        refuse_undeclared: false,
    };
    let first = promotion::Promotion {
        record: ShipPromotionStatus {
            last_schedule_time: Some(Time(at(10))),
            ..ShipPromotionStatus::default()
        },
        stage: promotion::Stage::Idle,
    };
    let (after, _) = promotion::step(first, promotion::Event::Looked(Box::new(look(20))), at(21));
    assert_eq!(after.record.last_schedule_time, Some(Time(at(20))));
    let (after, _) = promotion::step(after, promotion::Event::Looked(Box::new(look(15))), at(22));
    assert_eq!(after.record.last_schedule_time, Some(Time(at(20))), "never back");
}

#[test]
fn next_status_trims_an_overlong_history_to_the_limit() {
    // A status written by another version may hold far more transitions than this one keeps.
    let many = alternating(3 * release::MAX_TRANSITIONS);
    let status = ShipReleaseStatus {
        phase: Some(Phase::Applying),
        transitions: many,
        ..ShipReleaseStatus::default()
    };
    let change = to_progressing();
    let next = release::next_status(persisted(&status), &change, &Time(at(1000)));
    assert_eq!(next.transitions.len(), release::MAX_TRANSITIONS);
    assert_eq!(next.transitions.last().map(|t| t.phase), Some(Phase::Progressing));
}
