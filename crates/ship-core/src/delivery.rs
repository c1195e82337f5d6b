//! Delivery (DORA) figures, from an environment's release history, as data: what a release
//! settling tells about deployment frequency, lead time for changes, change failure rate and
//! time to restore. The executor records each [`Delivery`] in the metrics when it persists the
//! settling change (so a restart counts nothing twice: a change is measured once, when written).
//!
//! | the change persisted | figures |
//! |---|---|
//! | into Succeeded | `Deployed`; `LeadTime` for each commit the release brought (its suspects), from its commit time; `Restored` when the releases before it that changed the cluster failed, from the first of those failures |
//! | into Failed, for a reason that follows applying (health, tests, verification) | `ChangeFailed` |
//! | anything else (refused, superseded, rolled back, ...) | none |
//!
//! A release that never applied anything (a refused commit, an invalid spec, one superseded
//! while Pending) changed nothing in the cluster: it is neither a failure nor a restore. A
//! superseded release that did apply is neither good nor bad, and is passed over.

use std::time::Duration;

use jiff::Timestamp;

use crate::environment::{Release, newest_first};
use crate::reason::StatusReason;
use crate::release::transition_time;
use crate::status::Phase;

/// One delivery figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A deployment of the environment.
    Deployed,
    /// One change (a commit) delivered, this long after it was committed.
    LeadTime(Duration),
    /// A change failed in the environment after it was applied.
    ChangeFailed,
    /// The environment was restored: the first success after failures, this long after the
    /// first of them.
    Restored(Duration),
}

/// A release applied something to the cluster (it entered Applying).
fn applied<R: Release>(release: &R) -> bool {
    transition_time(release.status(), Phase::Applying).is_some()
}

/// When `release` failed after applying (its Failed transition; a rolled-back release failed
/// before it rolled back), or `None` when it did not.
fn failed_at<R: Release>(release: &R) -> Option<Timestamp> {
    if !applied(release) || !matches!(release.phase(), Some(Phase::Failed | Phase::RolledBack)) {
        return None;
    }
    transition_time(release.status(), Phase::Failed)
}

/// The figures of the release at `sequence` in `environment` entering `phase` for `reason` at
/// `now`, given the environment's `releases` (others' are ignored; the release itself need not
/// be among them) and the commit times of the changes it brings (`committed`).
pub fn on_settled<R: Release>(
    environment: &str,
    releases: &[R],
    sequence: &(i64, String),
    phase: Phase,
    reason: StatusReason,
    committed: &[Timestamp],
    now: Timestamp,
) -> Vec<Delivery> {
    match phase {
        Phase::Failed if reason.leads_to_rollback() => vec![Delivery::ChangeFailed],
        Phase::Succeeded => {
            let mut figures = vec![Delivery::Deployed];
            figures.extend(
                committed
                    .iter()
                    .filter_map(|at| Duration::try_from(now.duration_since(*at)).ok())
                    .map(Delivery::LeadTime),
            );
            if let Some(first_failure) = failing_since(environment, releases, sequence) {
                let took = Duration::try_from(now.duration_since(first_failure)).unwrap_or_default();
                figures.push(Delivery::Restored(took));
            }
            figures
        }
        _ => Vec::new(),
    }
}

/// When the streak of failures just before the release at `sequence` began: walking back from
/// it over the releases that changed the cluster (passing over superseded ones), the earliest
/// failure after the last success. `None` when the release before it that counts succeeded.
fn failing_since<R: Release>(
    environment: &str,
    releases: &[R],
    sequence: &(i64, String),
) -> Option<Timestamp> {
    let older = newest_first(releases)
        .into_iter()
        .filter(|r| r.environment() == environment && r.sequence() < *sequence);
    let mut first_failure = None;
    for release in older {
        if !applied(release) || release.phase() == Some(Phase::Superseded) {
            continue;
        }
        match failed_at(release) {
            Some(at) => first_failure = Some(at),
            None => break,
        }
    }
    first_failure
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::status::{Reason, ShipReleaseStatus, Transition};

    struct Made {
        name: String,
        sequence: i64,
        status: ShipReleaseStatus,
    }

    impl Release for Made {
        fn name(&self) -> &str {
            &self.name
        }
        fn environment(&self) -> &str {
            "main"
        }
        fn commit(&self) -> &str {
            "0123456789012345678901234567890123456789"
        }
        fn reason(&self) -> Reason {
            Reason::Push
        }
        fn sequence(&self) -> (i64, String) {
            (self.sequence, self.name.clone())
        }
        fn status(&self) -> Option<&ShipReleaseStatus> {
            Some(&self.status)
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    /// Release `name` (ordered by `sequence`) through `phases`, each entered at its second.
    fn made(name: &str, sequence: i64, phases: &[(Phase, i64)]) -> Made {
        Made {
            name: name.into(),
            sequence,
            status: ShipReleaseStatus {
                phase: phases.last().map(|(p, _)| *p),
                transitions: phases
                    .iter()
                    .map(|(phase, second)| Transition {
                        phase: *phase,
                        at: Time(at(*second)),
                        message: String::new(),
                    })
                    .collect(),
                ..ShipReleaseStatus::default()
            },
        }
    }

    use Phase::*;

    fn good(name: &str, sequence: i64, second: i64) -> Made {
        made(
            name,
            sequence,
            &[(Pending, second), (Applying, second), (Succeeded, second + 5)],
        )
    }

    fn rolled_back(name: &str, sequence: i64, failed: i64) -> Made {
        made(
            name,
            sequence,
            &[
                (Pending, failed - 5),
                (Applying, failed - 5),
                (Testing, failed - 2),
                (Failed, failed),
                (RollingBack, failed),
                (RolledBack, failed + 3),
            ],
        )
    }

    fn refused(name: &str, sequence: i64, second: i64) -> Made {
        made(name, sequence, &[(Pending, second), (Failed, second)])
    }

    #[test]
    fn a_success_deploys_and_measures_each_change_from_its_commit_time() {
        let releases = [good("a", 1, 0), good("b", 2, 100)];
        let figures = on_settled(
            "main",
            &releases,
            &(2, "b".into()),
            Succeeded,
            StatusReason::Succeeded,
            &[at(40), at(90)],
            at(105),
        );
        assert_eq!(
            figures,
            [
                Delivery::Deployed,
                Delivery::LeadTime(Duration::from_secs(65)),
                Delivery::LeadTime(Duration::from_secs(15))
            ]
        );
    }

    /// A refused commit changed nothing: a run of failures that begins with one restores from
    /// the first failure that applied, and a run of refusals alone restores nothing.
    #[test]
    fn refusals_that_changed_nothing_do_not_start_the_time_to_restore() {
        let at_success = |releases: &[Made]| {
            let last = releases.len() as i64;
            on_settled(
                "main",
                releases,
                &(last, releases[releases.len() - 1].name.clone()),
                Succeeded,
                StatusReason::Succeeded,
                &[],
                at(405),
            )
        };
        let refused_first = [
            good("a", 1, 0),
            refused("b", 2, 100),
            rolled_back("c", 3, 200),
            good("d", 4, 400),
        ];
        assert_eq!(
            at_success(&refused_first),
            [Delivery::Deployed, Delivery::Restored(Duration::from_secs(205))]
        );
        let refusals_only = [good("a", 1, 0), refused("b", 2, 100), good("c", 3, 400)];
        assert_eq!(at_success(&refusals_only), [Delivery::Deployed]);
    }

    #[test]
    fn the_first_success_after_failures_restores_from_the_first_of_them() {
        let releases = [
            good("a", 1, 0),
            rolled_back("b", 2, 100),
            refused("c", 3, 150),
            rolled_back("d", 4, 200),
            made("e", 5, &[(Pending, 250), (Applying, 250), (Superseded, 252)]),
            good("f", 6, 300),
        ];
        let figures = on_settled(
            "main",
            &releases,
            &(6, "f".into()),
            Succeeded,
            StatusReason::Succeeded,
            &[],
            at(305),
        );
        assert_eq!(
            figures,
            [Delivery::Deployed, Delivery::Restored(Duration::from_secs(205))]
        );
        // After a success, the next one restores nothing.
        let figures = on_settled(
            "main",
            &releases[..2],
            &(1, "a".into()),
            Succeeded,
            StatusReason::Succeeded,
            &[],
            at(5),
        );
        assert_eq!(figures, [Delivery::Deployed]);
    }

    #[test]
    fn only_a_failure_after_applying_is_a_failed_change() {
        for reason in [
            StatusReason::HealthTimeout,
            StatusReason::Unhealthy,
            StatusReason::TestsFailed,
            StatusReason::TestTimeout,
        ] {
            assert_eq!(
                on_settled::<Made>("main", &[], &(1, "x".into()), Failed, reason, &[], at(0)),
                [Delivery::ChangeFailed],
                "{reason}"
            );
        }
        for (phase, reason) in [
            (Failed, StatusReason::CommitRefused),
            (Failed, StatusReason::NoGoodRelease),
            (Failed, StatusReason::InvalidSpec),
            (Superseded, StatusReason::Superseded),
            (RolledBack, StatusReason::RolledBack),
            (Testing, StatusReason::Testing),
        ] {
            assert!(
                on_settled::<Made>("main", &[], &(1, "x".into()), phase, reason, &[], at(0)).is_empty(),
                "{phase} {reason}"
            );
        }
    }

    #[test]
    fn a_commit_time_in_the_future_measures_no_lead_time() {
        let figures = on_settled(
            "main",
            &[good("a", 1, 0)],
            &(1, "a".into()),
            Succeeded,
            StatusReason::Succeeded,
            &[at(50)],
            at(5),
        );
        assert_eq!(figures, [Delivery::Deployed]);
    }
}
