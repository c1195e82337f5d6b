//! Why a release is in its phase: the one vocabulary of the `Ready` condition's reason, the
//! transition's event reason, the `ship_releases_total{reason}` label and what `kubectl ship`
//! reads back. Each reason has a fixed label, never built from object names or `Debug` output.

use crate::status::Phase;

/// The reason a release's status gives for its phase.
///
/// Two reasons name a family of fixed causes rather than one: [`StatusReason::CommitRefused`]
/// (the commit cannot be deployed: its label is the cause, such as `InvalidYaml` or
/// `DryRunFailed`) and [`StatusReason::AwaitingPush`] (a promotion waits to fast-forward its
/// branch: `MissingBranch`, `FetchFailed`, ...). Their cause travels beside them (see
/// `Transition::label` in the engine), so the status keeps saying exactly what went wrong.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter, strum::EnumString,
)]
pub enum StatusReason {
    /// Pending: the controller saw the release and will start it.
    Accepted,
    /// Pending: the environment's remote cluster cannot be reached with its kubeconfig Secret.
    RemoteCluster,
    /// Pending: a promotion waits to fast-forward its branch (the cause says why).
    AwaitingPush,
    /// Applying: the objects are being applied and pruned.
    Applying,
    /// Progressing: applied, waiting for health.
    Progressing,
    /// Testing: healthy, post-deployment tests running.
    Testing,
    /// Succeeded: healthy and every test passed.
    Succeeded,
    /// Failed: the spec breaks a rule the schema cannot express; nothing was done.
    InvalidSpec,
    /// Failed: the object could not be read at all; nothing was done.
    InvalidObject,
    /// Failed: the commit cannot be deployed (the cause says why); nothing was applied.
    CommitRefused,
    /// Failed: not healthy within the health timeout; a rollback follows.
    HealthTimeout,
    /// Failed: the rollout failed (a crash-looping Pod, a failed Job); a rollback follows.
    Unhealthy,
    /// Failed: a post-deployment test failed; a rollback follows.
    TestsFailed,
    /// Failed: the tests did not finish within the test deadline (`testing.timeout`); a
    /// rollback follows.
    TestTimeout,
    /// Failed: a continuous verification test (`every`, `onFailure: rollback`) failed while
    /// the release was deployed; a rollback follows.
    VerificationFailed,
    /// Failed, settled: nothing good to roll back to; the failed commit stays.
    NoGoodRelease,
    /// Failed, settled: the rollback could not be made or did not become healthy.
    RollbackFailed,
    /// RollingBack: the last good release is being re-applied.
    RollingBack,
    /// RolledBack: the environment runs the last good release again.
    RolledBack,
    /// Superseded (or Failed, when a rollback was next): a newer release of the environment
    /// took over.
    Superseded,
}

impl StatusReason {
    /// The reason's fixed label.
    pub fn label(self) -> &'static str {
        self.into()
    }

    /// A release failed for this reason after changing the cluster, so it rolls back to the
    /// last good release next (or settles with [`StatusReason::NoGoodRelease`]).
    pub fn leads_to_rollback(self) -> bool {
        matches!(
            self,
            StatusReason::HealthTimeout
                | StatusReason::Unhealthy
                | StatusReason::TestsFailed
                | StatusReason::TestTimeout
                | StatusReason::VerificationFailed
        )
    }

    /// Reads back the reason a status wrote as `label`; `None` for a label that names no
    /// reason: the fixed cause of a refusal (`InvalidYaml`) or of a wait to push
    /// (`MissingBranch`), which the condition carries in place of its family, or a label this
    /// version does not know. Nothing is guessed from the phase: the rules that read a reason
    /// back ([`settled`], [`awaits_rollback_for`]) turn only on the reasons that lead to a
    /// rollback, and each of those is a reason of its own.
    pub fn read(label: &str) -> Option<StatusReason> {
        label.parse().ok()
    }
}

impl std::fmt::Display for StatusReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A release in `phase` whose Ready reason is `label` has failed and is about to roll back:
/// not settled yet, though its phase is one a settled release can have.
pub fn awaits_rollback(phase: Phase, label: &str) -> bool {
    awaits_rollback_for(phase, StatusReason::read(label))
}

/// The rule behind [`awaits_rollback`], for a reason already read: Failed, for a reason that
/// leads to a rollback. Its one home (the release machine asks it too).
pub fn awaits_rollback_for(phase: Phase, reason: Option<StatusReason>) -> bool {
    phase == Phase::Failed && reason.is_some_and(StatusReason::leads_to_rollback)
}

/// The controller is done with a release in `phase` for `reason`: a settled phase, and no
/// rollback still to come. (Still unfinished otherwise: in progress, or about to roll back.)
pub fn settled(phase: Phase, reason: Option<StatusReason>) -> bool {
    !phase.is_in_progress() && !awaits_rollback_for(phase, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_label_reads_back_as_its_reason() {
        for reason in StatusReason::iter() {
            assert_eq!(StatusReason::read(reason.label()), Some(reason));
        }
    }

    #[test]
    fn labels_are_stable() {
        // Alerts, dashboards and scripts key on these strings: changing one is a breaking change.
        let labels: Vec<&str> = StatusReason::iter().map(StatusReason::label).collect();
        assert_eq!(
            labels,
            [
                "Accepted",
                "RemoteCluster",
                "AwaitingPush",
                "Applying",
                "Progressing",
                "Testing",
                "Succeeded",
                "InvalidSpec",
                "InvalidObject",
                "CommitRefused",
                "HealthTimeout",
                "Unhealthy",
                "TestsFailed",
                "TestTimeout",
                "VerificationFailed",
                "NoGoodRelease",
                "RollbackFailed",
                "RollingBack",
                "RolledBack",
                "Superseded",
            ]
        );
    }

    #[test]
    fn only_failures_after_changing_the_cluster_roll_back() {
        let rolling: Vec<StatusReason> = StatusReason::iter().filter(|r| r.leads_to_rollback()).collect();
        assert_eq!(
            rolling,
            [
                StatusReason::HealthTimeout,
                StatusReason::Unhealthy,
                StatusReason::TestsFailed,
                StatusReason::TestTimeout,
                StatusReason::VerificationFailed
            ]
        );
        assert!(awaits_rollback(Phase::Failed, "TestsFailed"));
        assert!(
            !awaits_rollback(Phase::Failed, "DryRunFailed"),
            "a refusal applied nothing"
        );
        assert!(!awaits_rollback(Phase::Failed, "NoGoodRelease"));
        assert!(!awaits_rollback(Phase::Testing, "TestsFailed"));
    }

    #[test]
    fn a_label_that_names_no_reason_reads_as_none_and_settles_no_differently() {
        // Causes, and labels a newer version may write, are not guessed into a family.
        for label in ["InvalidYaml", "MissingBranch", "SomethingNew", ""] {
            assert_eq!(StatusReason::read(label), None, "{label}");
        }
        // What the rules answer for them: a failure that never changed the cluster is settled,
        // and an in-progress phase is not, whatever its label.
        for phase in Phase::ALL {
            assert_eq!(
                settled(phase, StatusReason::read("InvalidYaml")),
                !phase.is_in_progress(),
                "{phase:?}"
            );
            assert!(!awaits_rollback(phase, "SomethingNew"), "{phase:?}");
        }
    }
}
