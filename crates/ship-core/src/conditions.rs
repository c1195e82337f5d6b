//! kstatus conditions (`Ready`, `Reconciling`, `Stalled`) derived from a release's phase.
//!
//! Pure functions: the controller computes the conditions it will write, and a condition whose
//! status did not change keeps its `lastTransitionTime`, as kstatus and `kubectl wait` expect.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::reason::awaits_rollback;
use crate::status::Phase;

/// `Ready`: the release's commit runs in its environment, healthy and tested.
pub const READY: &str = "Ready";
/// `Reconciling`: the controller is working on the release.
pub const RECONCILING: &str = "Reconciling";
/// `Stalled`: the release cannot make progress without a change (a new commit or a fixed spec).
pub const STALLED: &str = "Stalled";

/// What the controller wants to say about a release right now.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Current phase.
    pub phase: Phase,
    /// CamelCase reason code; a fixed name per cause, never built from object names.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: &'a str,
    /// `metadata.generation` the observation is based on.
    pub generation: Option<i64>,
}

/// The three kstatus conditions for `observation`, keeping `lastTransitionTime` from `previous`
/// for every condition whose status did not change.
pub fn kstatus_conditions(
    observation: &Observation<'_>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let phase = observation.phase;
    let ready = phase == Phase::Succeeded;
    // A release that failed after changing the cluster is still the controller's work: it is
    // about to roll back, so `kubectl wait --for=condition=Stalled` must not return yet.
    let rolling_back_next = awaits_rollback(phase, observation.reason);
    let reconciling = phase.is_in_progress() || rolling_back_next;
    let stalled = matches!(phase, Phase::Failed | Phase::RolledBack) && !rolling_back_next;
    [(READY, ready), (RECONCILING, reconciling), (STALLED, stalled)]
        .into_iter()
        .map(|(type_, value)| condition(type_, value, observation, previous, now))
        .collect()
}

/// One condition of `type_` set to `value`, saying `observation`'s reason and message; it keeps
/// `lastTransitionTime` from `previous` when its status did not change.
pub fn condition(
    type_: &str,
    value: bool,
    observation: &Observation<'_>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if value { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: observation.reason.to_owned(),
        message: observation.message.to_owned(),
        observed_generation: observation.generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn observe(phase: Phase) -> Observation<'static> {
        Observation {
            phase,
            reason: phase.as_str(),
            message: "m",
            generation: Some(1),
        }
    }

    fn status_of<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn each_phase_maps_to_kstatus() {
        let now = at(100);
        for phase in Phase::ALL {
            let c = kstatus_conditions(&observe(phase), &[], &now);
            assert_eq!(c.len(), 3);
            let expect = |t: &str, v: bool| {
                assert_eq!(
                    status_of(&c, t).status,
                    if v { "True" } else { "False" },
                    "{phase} {t}"
                )
            };
            expect(READY, phase == Phase::Succeeded);
            expect(RECONCILING, phase.is_in_progress());
            expect(STALLED, matches!(phase, Phase::Failed | Phase::RolledBack));
        }
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let first = kstatus_conditions(&observe(Phase::Applying), &[], &at(100));
        let second = kstatus_conditions(&observe(Phase::Progressing), &first, &at(200));
        // Reconciling stayed True, Ready stayed False: both keep t=100.
        assert_eq!(status_of(&second, RECONCILING).last_transition_time, at(100));
        assert_eq!(status_of(&second, READY).last_transition_time, at(100));
        assert_eq!(status_of(&second, RECONCILING).reason, "Progressing");
        let third = kstatus_conditions(&observe(Phase::Succeeded), &second, &at(300));
        assert_eq!(status_of(&third, READY).last_transition_time, at(300));
        assert_eq!(status_of(&third, RECONCILING).last_transition_time, at(300));
        assert_eq!(status_of(&third, STALLED).last_transition_time, at(100));
    }

    #[test]
    fn a_failure_about_to_roll_back_is_still_reconciling() {
        let with = |phase, reason| Observation {
            phase,
            reason,
            message: "m",
            generation: Some(1),
        };
        let testing = kstatus_conditions(&with(Phase::Testing, "Testing"), &[], &at(100));
        let failed = kstatus_conditions(&with(Phase::Failed, "TestsFailed"), &testing, &at(200));
        assert_eq!(status_of(&failed, RECONCILING).status, "True");
        assert_eq!(status_of(&failed, RECONCILING).last_transition_time, at(100));
        assert_eq!(status_of(&failed, STALLED).status, "False");
        let rolling = kstatus_conditions(&with(Phase::RollingBack, "RollingBack"), &failed, &at(300));
        let rolled = kstatus_conditions(&with(Phase::RolledBack, "RolledBack"), &rolling, &at(400));
        assert_eq!(status_of(&rolled, RECONCILING).status, "False");
        assert_eq!(status_of(&rolled, STALLED).status, "True");
        assert_eq!(status_of(&rolled, STALLED).last_transition_time, at(400));
        // With nothing to roll back to, the failure is final.
        let alone = kstatus_conditions(&with(Phase::Failed, "NoGoodRelease"), &failed, &at(300));
        assert_eq!(status_of(&alone, RECONCILING).status, "False");
        assert_eq!(status_of(&alone, STALLED).status, "True");
        // A failure that changed nothing is final at once.
        let refused = kstatus_conditions(&with(Phase::Failed, "DryRunFailed"), &[], &at(100));
        assert_eq!(status_of(&refused, STALLED).status, "True");
    }
}
