//! What the release machine's transitions tell the metrics, as data. The executor records each
//! [`Measure`] as it comes (one metric call per variant) and decides nothing: which steps a
//! phase change ends, which settled outcome it counts, and whether it starts a rollback are
//! rules, and they live here, beside the machine whose phases they read.
//!
//! | the change persisted | measures |
//! |---|---|
//! | leaving Applying / Progressing / Testing / RollingBack | `Step` "apply" / "health" / "tests" / "rollback", the time spent there |
//! | into a settled phase | `Settled` (phase, label), and `Step` "total" since Pending |
//! | into Succeeded | `Deployed` (the commit runs now; its verification verdicts start afresh; the success time) |
//! | into RollingBack | `Rollback`, caused by the failure's reason (`Unknown` when none was written) |
//! | into Applying, for a release made by `kubectl ship rollback` | `Rollback` "Requested" |
//! | any change, by the environment's newest release | `Latest` (its phase) |
//!
//! A release first seen (a restart) tells what its status already holds: its success time when
//! it is Succeeded, and `Latest` when it is the newest ([`on_sight`]).

use std::time::Duration;

use jiff::Timestamp;

use super::{Change, transition_time};
use crate::status::{Phase, Reason, ShipReleaseStatus};

/// One thing to record in the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// The release spent `took` in the step `name` ("apply", "health", "tests", "rollback",
    /// or "total" from Pending to settled).
    Step {
        /// The step's fixed name.
        name: &'static str,
        /// How long it took.
        took: Duration,
    },
    /// The release settled in `phase`, labelled `label` (the Ready condition's reason).
    Settled {
        /// The settled phase.
        phase: Phase,
        /// Its fixed label.
        label: &'static str,
    },
    /// The release's commit is the environment's deployed one, since `at`: its verification
    /// verdicts start afresh; `promotion` when a promotion made it.
    Deployed {
        /// When it succeeded.
        at: Timestamp,
        /// It was a promotion.
        promotion: bool,
    },
    /// A Succeeded release seen again: its success time (the deployed commit is said by the
    /// drift check, which re-applies it).
    SucceededAt {
        /// When it succeeded.
        at: Timestamp,
        /// It was a promotion.
        promotion: bool,
    },
    /// A rollback started, for `cause` (a status reason's label, or "Requested").
    Rollback {
        /// Why.
        cause: String,
    },
    /// The release is the environment's newest, in `phase`.
    Latest {
        /// Its phase.
        phase: Phase,
    },
}

/// The step a release ends by leaving `phase`.
fn step_left(phase: Phase) -> Option<&'static str> {
    match phase {
        Phase::Applying => Some("apply"),
        Phase::Progressing => Some("health"),
        Phase::Testing => Some("tests"),
        Phase::RollingBack => Some("rollback"),
        _ => None,
    }
}

/// What persisting `change` over `previous` (the status it replaced) tells the metrics, at
/// `now`, for a release made for `reason`; `newest` when it is its environment's newest release.
/// Empty when the phase did not change (a message or record alone is no step).
pub fn of_change(
    previous: Option<&ShipReleaseStatus>,
    change: &Change,
    reason: Reason,
    newest: bool,
    now: Timestamp,
) -> Vec<Measure> {
    if !change.enters_phase(previous) {
        return Vec::new();
    }
    let left = previous.and_then(|s| s.phase);
    let since = |phase: Phase| {
        transition_time(previous, phase).and_then(|t| Duration::try_from(now.duration_since(t)).ok())
    };
    let mut measures = Vec::new();
    if let Some(phase) = left
        && let Some(name) = step_left(phase)
        && let Some(took) = since(phase)
    {
        measures.push(Measure::Step { name, took });
    }
    if !change.phase.is_in_progress() {
        measures.push(Measure::Settled {
            phase: change.phase,
            label: change.label(),
        });
        if let Some(took) = since(Phase::Pending) {
            measures.push(Measure::Step { name: "total", took });
        }
    }
    match change.phase {
        Phase::Succeeded => measures.push(Measure::Deployed {
            at: now,
            promotion: reason == Reason::Promotion,
        }),
        Phase::RollingBack => {
            let cause = previous.map_or("", ShipReleaseStatus::ready_reason);
            measures.push(Measure::Rollback {
                cause: if cause.is_empty() { "Unknown" } else { cause }.to_owned(),
            });
        }
        Phase::Applying if reason == Reason::Rollback => measures.push(Measure::Rollback {
            cause: "Requested".to_owned(),
        }),
        _ => {}
    }
    if newest {
        measures.push(Measure::Latest { phase: change.phase });
    }
    measures
}

/// What a release seen by a reconcile (first sight, or again after a restart) tells the
/// metrics from its persisted `status`: its success time, and its phase when it is `newest`.
pub fn on_sight(status: Option<&ShipReleaseStatus>, reason: Reason, newest: bool) -> Vec<Measure> {
    let mut measures = Vec::new();
    let phase = status.and_then(|s| s.phase);
    if phase == Some(Phase::Succeeded)
        && let Some(at) = transition_time(status, Phase::Succeeded)
    {
        measures.push(Measure::SucceededAt {
            at,
            promotion: reason == Reason::Promotion,
        });
    }
    if let Some(phase) = phase
        && newest
    {
        measures.push(Measure::Latest { phase });
    }
    measures
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::conditions::READY;
    use crate::reason::StatusReason;
    use crate::status::Transition as PhaseEntered;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid time")
    }

    /// A status now in `phases`' last, having entered each at its second, Ready's reason `ready`.
    fn status(phases: &[(Phase, i64)], ready: &str) -> ShipReleaseStatus {
        ShipReleaseStatus {
            phase: phases.last().map(|(p, _)| *p),
            transitions: phases
                .iter()
                .map(|(phase, second)| PhaseEntered {
                    phase: *phase,
                    at: Time(at(*second)),
                    message: String::new(),
                })
                .collect(),
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: READY.into(),
                status: "False".into(),
                reason: ready.into(),
                message: String::new(),
                last_transition_time: Time(at(0)),
                observed_generation: None,
            }],
            ..ShipReleaseStatus::default()
        }
    }

    fn change(phase: Phase, reason: StatusReason) -> Change {
        Change {
            phase,
            reason,
            cause: None,
            message: String::new(),
        }
    }

    fn step(name: &'static str, seconds: u64) -> Measure {
        Measure::Step {
            name,
            took: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn leaving_each_working_phase_measures_its_step() {
        for (phase, name, next) in [
            (Phase::Applying, "apply", Phase::Progressing),
            (Phase::Progressing, "health", Phase::Testing),
        ] {
            let previous = status(&[(Phase::Pending, 0), (phase, 10)], "Progressing");
            let measures = of_change(
                Some(&previous),
                &change(next, StatusReason::Progressing),
                Reason::Push,
                false,
                at(13),
            );
            assert_eq!(measures, [step(name, 3)], "leaving {phase}");
        }
    }

    /// Leaving RollingBack measures the rollback step (with the total and the settled phase).
    #[test]
    fn a_finished_rollback_measures_its_step() {
        let previous = status(
            &[(Phase::Pending, 0), (Phase::Failed, 10), (Phase::RollingBack, 10)],
            "RollingBack",
        );
        let measures = of_change(
            Some(&previous),
            &change(Phase::RolledBack, StatusReason::RolledBack),
            Reason::Push,
            false,
            at(14),
        );
        assert!(measures.contains(&step("rollback", 4)), "{measures:?}");
    }

    #[test]
    fn succeeding_measures_tests_total_settled_and_deployed_and_latest_only_when_newest() {
        let previous = status(&[(Phase::Pending, 100), (Phase::Testing, 110)], "Testing");
        let succeeded = change(Phase::Succeeded, StatusReason::Succeeded);
        let newest = of_change(Some(&previous), &succeeded, Reason::Promotion, true, at(115));
        assert_eq!(
            newest,
            [
                step("tests", 5),
                Measure::Settled {
                    phase: Phase::Succeeded,
                    label: "Succeeded"
                },
                step("total", 15),
                Measure::Deployed {
                    at: at(115),
                    promotion: true
                },
                Measure::Latest {
                    phase: Phase::Succeeded
                },
            ]
        );
        let superseded = of_change(Some(&previous), &succeeded, Reason::Push, false, at(115));
        assert_eq!(superseded.len(), 4, "{superseded:?}");
        assert!(superseded.contains(&Measure::Deployed {
            at: at(115),
            promotion: false
        }));
    }

    #[test]
    fn a_rollback_is_caused_by_the_failure_it_follows() {
        let rolling_back = |previous: &ShipReleaseStatus| {
            of_change(
                Some(previous),
                &change(Phase::RollingBack, StatusReason::RollingBack),
                Reason::Push,
                false,
                at(21),
            )
        };
        let rollback = |cause: &str| vec![Measure::Rollback { cause: cause.into() }];
        let failed = status(&[(Phase::Pending, 0), (Phase::Failed, 20)], "TestsFailed");
        assert_eq!(rolling_back(&failed), rollback("TestsFailed"));
        let unlabelled = status(&[(Phase::Failed, 20)], "");
        assert_eq!(rolling_back(&unlabelled), rollback("Unknown"));
    }

    #[test]
    fn applying_a_requested_rollback_counts_as_a_rollback_and_a_push_does_not() {
        let previous = status(&[(Phase::Pending, 0)], "Pending");
        let applying = change(Phase::Applying, StatusReason::Progressing);
        assert_eq!(
            of_change(Some(&previous), &applying, Reason::Rollback, false, at(1)),
            [Measure::Rollback {
                cause: "Requested".into()
            }]
        );
        assert!(of_change(Some(&previous), &applying, Reason::Push, false, at(1)).is_empty());
    }

    #[test]
    fn a_settled_failure_without_history_measures_no_total() {
        let measures = of_change(
            None,
            &change(Phase::Failed, StatusReason::CommitRefused),
            Reason::Push,
            false,
            at(1),
        );
        assert_eq!(
            measures,
            [Measure::Settled {
                phase: Phase::Failed,
                label: "CommitRefused"
            }]
        );
    }

    #[test]
    fn no_phase_change_measures_nothing() {
        let previous = status(&[(Phase::Pending, 0)], "Pending");
        let same = change(Phase::Pending, StatusReason::RemoteCluster);
        assert!(of_change(Some(&previous), &same, Reason::Push, true, at(5)).is_empty());
    }

    #[test]
    fn a_release_seen_again_tells_its_success_time_and_phase_when_newest() {
        let succeeded = status(&[(Phase::Pending, 1), (Phase::Succeeded, 7)], "Succeeded");
        assert_eq!(
            on_sight(Some(&succeeded), Reason::Push, true),
            [
                Measure::SucceededAt {
                    at: at(7),
                    promotion: false
                },
                Measure::Latest {
                    phase: Phase::Succeeded
                }
            ]
        );
        assert_eq!(on_sight(Some(&succeeded), Reason::Promotion, false).len(), 1);
        let testing = status(&[(Phase::Testing, 1)], "Testing");
        assert_eq!(
            on_sight(Some(&testing), Reason::Push, true),
            [Measure::Latest {
                phase: Phase::Testing
            }]
        );
        assert!(on_sight(Some(&testing), Reason::Push, false).is_empty());
        assert!(on_sight(None, Reason::Push, true).is_empty());
    }
}
