//! Continuous verification: the tests that declare `every` run again, against the deployed
//! release, for as long as it is the one deployed. Which tests are due, when the next one is,
//! and what a run leaves in the status are pure functions here; the machine decides with them
//! ([`crate::release`]) and the executor runs the tests they name.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{Observation, condition};
use crate::status::{
    Phase, ShipReleaseStatus, TestResult, TestVerdict, VERIFICATION_LOG_KEPT, VERIFICATION_RUNS_KEPT,
    VERIFIED, Verification, VerificationRun,
};

/// One test of continuous verification: its name, how often it runs, and whether a failure
/// rolls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cadence {
    /// The test's name in `ship.yaml`.
    pub test: String,
    /// How often it runs.
    pub every: Duration,
    /// `onFailure: rollback`.
    pub rolls_back: bool,
}

/// When each test last ran, from the runs a status keeps.
pub fn last_runs(verification: Option<&Verification>) -> BTreeMap<String, Timestamp> {
    let mut last = BTreeMap::new();
    for run in verification.iter().flat_map(|v| &v.runs) {
        for result in &run.results {
            last.insert(result.name.clone(), run.at.0);
        }
    }
    last
}

/// When `cadence` is next due: `every` after it last ran, or after `since` (the release
/// became the deployed one) when it never has.
fn due_at(cadence: &Cadence, last: &BTreeMap<String, Timestamp>, since: Timestamp) -> Timestamp {
    let from = last.get(&cadence.test).copied().unwrap_or(since);
    let every = jiff::SignedDuration::try_from(cadence.every).unwrap_or(jiff::SignedDuration::MAX);
    from.checked_add(every).unwrap_or(Timestamp::MAX)
}

/// When the next test is due; `None` when there is no continuous verification.
pub fn next_due(
    cadences: &[Cadence],
    last: &BTreeMap<String, Timestamp>,
    since: Timestamp,
) -> Option<Timestamp> {
    cadences.iter().map(|c| due_at(c, last, since)).min()
}

/// The tests due at `now`, in file order.
pub fn due_now<'a>(
    cadences: &'a [Cadence],
    last: &BTreeMap<String, Timestamp>,
    since: Timestamp,
    now: Timestamp,
) -> Vec<&'a Cadence> {
    cadences
        .iter()
        .filter(|c| due_at(c, last, since) <= now)
        .collect()
}

/// `last` with the tests of `results` run at `now`.
pub fn ran(
    last: &BTreeMap<String, Timestamp>,
    results: &[TestResult],
    now: Timestamp,
) -> BTreeMap<String, Timestamp> {
    let mut last = last.clone();
    for result in results {
        last.insert(result.name.clone(), now);
    }
    last
}

/// Writes a run into `status`: appended to the runs (the newest [`VERIFICATION_RUNS_KEPT`],
/// logs cut to their last [`VERIFICATION_LOG_KEPT`] bytes), and the `Verified` condition set
/// from it (`lastTransitionTime` kept while its status holds).
pub fn record(status: &mut ShipReleaseStatus, at: Timestamp, results: Vec<TestResult>) {
    let results: Vec<TestResult> = results
        .into_iter()
        .map(|mut r| {
            r.log = crate::text::tail(&r.log, VERIFICATION_LOG_KEPT);
            r
        })
        .collect();
    let failed: Vec<&TestResult> = results
        .iter()
        .filter(|r| r.verdict != TestVerdict::Passed)
        .collect();
    let message = if failed.is_empty() {
        format!("{} verification tests passed", results.len())
    } else {
        let said: Vec<String> = failed
            .iter()
            .map(|r| format!("test {} failed: {}", r.name, r.message))
            .collect();
        said.join("; ")
    };
    let observation = Observation {
        phase: status.phase.unwrap_or(Phase::Succeeded),
        reason: if failed.is_empty() { "Passed" } else { "Failed" },
        message: &message,
        generation: status.observed_generation,
    };
    let verified = condition(
        VERIFIED,
        failed.is_empty(),
        &observation,
        &status.conditions,
        &Time(at),
    );
    status.conditions.retain(|c| c.type_ != VERIFIED);
    status.conditions.push(verified);
    let verification = status.verification.get_or_insert_with(Verification::default);
    verification.runs.push(VerificationRun {
        at: Time(at),
        results,
    });
    let extra = verification.runs.len().saturating_sub(VERIFICATION_RUNS_KEPT);
    if extra > 0 {
        verification.runs.drain(..extra);
        verification.runs_dropped = Some(verification.runs_dropped.unwrap_or(0) + extra as u64);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn cadence(test: &str, seconds: u64) -> Cadence {
        Cadence {
            test: test.into(),
            every: Duration::from_secs(seconds),
            rolls_back: false,
        }
    }

    fn result(name: &str, verdict: TestVerdict, log: &str) -> TestResult {
        TestResult {
            name: name.into(),
            verdict,
            duration_millis: Some(3),
            message: format!("{name} said so"),
            log: log.into(),
        }
    }

    #[test]
    fn each_test_is_due_every_after_its_last_run() {
        let cadences = [cadence("home", 60), cadence("search", 600)];
        let since = at(1000);
        let none = BTreeMap::new();
        assert_eq!(next_due(&cadences, &none, since), Some(at(1060)));
        assert!(due_now(&cadences, &none, since, at(1059)).is_empty());
        let due: Vec<&str> = due_now(&cadences, &none, since, at(1060))
            .iter()
            .map(|c| c.test.as_str())
            .collect();
        assert_eq!(due, ["home"]);
        let last = ran(&none, &[result("home", TestVerdict::Passed, "")], at(1061));
        assert_eq!(next_due(&cadences, &last, since), Some(at(1121)));
        let both: Vec<&str> = due_now(&cadences, &last, since, at(1600))
            .iter()
            .map(|c| c.test.as_str())
            .collect();
        assert_eq!(both, ["home", "search"]);
        assert_eq!(next_due(&[], &last, since), None);
    }

    #[test]
    fn a_run_is_recorded_bounded_and_sets_the_condition() {
        let mut status = ShipReleaseStatus {
            phase: Some(Phase::Succeeded),
            ..ShipReleaseStatus::default()
        };
        let long_log = "x".repeat(VERIFICATION_LOG_KEPT * 3);
        record(
            &mut status,
            at(10),
            vec![result("home", TestVerdict::Passed, &long_log)],
        );
        let verified = |s: &ShipReleaseStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == VERIFIED)
                .cloned()
                .unwrap()
        };
        let first = verified(&status);
        assert_eq!((first.status.as_str(), first.reason.as_str()), ("True", "Passed"));
        let kept = &status.verification.as_ref().unwrap().runs[0].results[0].log;
        assert_eq!(kept.len(), VERIFICATION_LOG_KEPT);
        record(&mut status, at(20), vec![result("home", TestVerdict::Passed, "")]);
        assert_eq!(
            verified(&status).last_transition_time,
            Time(at(10)),
            "kept while True"
        );
        record(&mut status, at(30), vec![result("home", TestVerdict::Failed, "")]);
        let failed = verified(&status);
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("False", "Failed")
        );
        assert_eq!(failed.message, "test home failed: home said so");
        assert_eq!(failed.last_transition_time, Time(at(30)));
        assert_eq!(status.conditions.len(), 1, "one Verified condition");
        for i in 0..(VERIFICATION_RUNS_KEPT as i64 + 5) {
            record(
                &mut status,
                at(100 + i),
                vec![result("home", TestVerdict::Passed, "")],
            );
        }
        let verification = status.verification.as_ref().unwrap();
        assert_eq!(verification.runs.len(), VERIFICATION_RUNS_KEPT);
        assert_eq!(verification.runs_dropped, Some(8));
        assert_eq!(
            last_runs(status.verification.as_ref()).get("home"),
            Some(&at(100 + VERIFICATION_RUNS_KEPT as i64 + 4))
        );
    }
}
