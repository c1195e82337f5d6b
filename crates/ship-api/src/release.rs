//! The `ShipRelease` custom resource: one deployment of one commit to one environment.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use ship_core::reason::awaits_rollback;
pub use ship_core::status::*;

/// One deployment of one commit to one environment, and the state machine it walks:
/// Pending → Applying → Progressing → Testing → Succeeded, or Failed → RollingBack → RolledBack.
// kube-derive takes one `printcolumn(...)` per column; clippy reads their keys as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ship.dev",
    version = "v1alpha1",
    kind = "ShipRelease",
    plural = "shipreleases",
    singular = "shiprelease",
    shortname = "srel",
    category = "ship",
    namespaced,
    status = "ShipReleaseStatus",
    derive = "PartialEq",
    doc = "A deployment of one git commit to one Ship environment, and its progress.",
    printcolumn(
        name = "Env",
        type_ = "string",
        json_path = ".spec.environment",
        description = "Environment"
    ),
    printcolumn(
        name = "Commit",
        type_ = "string",
        json_path = ".status.shortCommit",
        description = "Commit (short SHA)"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Release phase"
    ),
    printcolumn(
        name = "Tests",
        type_ = "string",
        json_path = ".status.testSummary",
        description = "Post-deployment tests passed/total"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        description = "Latest status message"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".spec.reason",
        priority = 1,
        description = "Why this release exists"
    ),
    printcolumn(
        name = "Branch",
        type_ = "string",
        json_path = ".spec.branch",
        priority = 1,
        description = "Branch the commit came from"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ShipReleaseSpec {
    /// Environment this release deploys to, as named in the repository's `ship.yaml`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub environment: String,

    /// Full 40-character SHA-1 of the commit to deploy.
    #[schemars(regex(pattern = r"^[0-9a-f]{40}$"))]
    pub commit: String,

    /// Branch the commit was taken from (for example `main` or `production`).
    #[schemars(length(min = 1, max = 255))]
    pub branch: String,

    /// Why this release exists.
    pub reason: Reason,

    /// For `reason: Rollback`: the name of the ShipRelease being rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,

    /// For `reason: Promotion`: where the commit was tested and who promoted it. The
    /// controller fast-forwards `branch` to `commit` (a plain `git push`, never forced) before
    /// deploying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<crate::PromotionOrigin>,
}

impl ShipRelease {
    /// The release's place in its environment's order: the `ship.dev/sequence` annotation,
    /// else the creation time, both in milliseconds; ties broken by name.
    pub fn sequence(&self) -> (i64, String) {
        let annotated = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::keys::SEQUENCE))
            .and_then(|v| v.parse::<i64>().ok());
        let created = self
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_millisecond());
        (
            annotated.unwrap_or(created),
            self.metadata.name.clone().unwrap_or_default(),
        )
    }

    /// The current phase, if the controller has written one.
    pub fn phase(&self) -> Option<Phase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    /// The controller is done with the release: it is in a settled phase and, if it failed
    /// after changing the cluster, its rollback has been decided (`kubectl ship` and the
    /// tests wait for this, not for the phase alone).
    pub fn is_settled(&self) -> bool {
        self.status.as_ref().is_some_and(ShipReleaseStatus::is_settled)
    }
}

impl ShipReleaseSpec {
    /// Checks the rules the CRD schema cannot express. Pure; called before any action.
    pub fn validate(&self) -> Result<(), SpecProblem> {
        let full_sha = self.commit.len() == 40
            && self
                .commit
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !full_sha {
            return Err(SpecProblem::CommitNotFullSha);
        }
        if self.promotion.is_some() && self.reason != Reason::Promotion {
            return Err(SpecProblem::OriginWithoutPromotion(self.reason));
        }
        match (self.reason, &self.rollback_of) {
            (Reason::Rollback, None) => Err(SpecProblem::RollbackWithoutTarget),
            (Reason::Rollback, Some(_)) => Ok(()),
            (other, Some(_)) => Err(SpecProblem::TargetWithoutRollback(other)),
            (_, None) => Ok(()),
        }
    }

    /// The first seven characters of the commit, as git shows it.
    pub fn short_commit(&self) -> &str {
        crate::names::short_sha(&self.commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(reason: Reason, rollback_of: Option<&str>) -> ShipReleaseSpec {
        ShipReleaseSpec {
            environment: "production".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            branch: "production".into(),
            reason,
            rollback_of: rollback_of.map(str::to_owned),
            promotion: None,
        }
    }

    #[test]
    fn a_list_keeps_what_it_can_read_and_names_the_rest() {
        let object = |name: &str, attempts: u64| {
            serde_json::json!({
                "apiVersion": "ship.dev/v1alpha1", "kind": "ShipRelease",
                "metadata": {"name": name, "namespace": "ship"},
                "spec": {"environment": "main", "commit": "0123456789abcdef0123456789abcdef01234567", "branch": "main", "reason": "Push"},
                "status": {"notifications": [{"id": "x", "outcome": "Delivered", "attempts": attempts, "at": "2026-01-01T00:00:00Z"}]},
            })
        };
        #[allow(clippy::unwrap_used)]
        let listed: Vec<kube::core::DeserializeGuard<ShipRelease>> = [
            object("main-a", 1),
            object("main-b", 5_000_000_000),
            object("main-c", 2),
        ]
        .into_iter()
        .map(|o| serde_json::from_value(o).unwrap())
        .collect();
        let read = readable(listed);
        let names: Vec<String> = read
            .releases
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["main-a", "main-c"]);
        assert_eq!(read.unreadable.len(), 1);
        assert_eq!(read.unreadable[0].0, "main-b");
        assert!(
            read.unreadable[0].1.contains("5000000000"),
            "{:?}",
            read.unreadable
        );
    }

    #[test]
    fn cross_field_rules() {
        assert_eq!(spec(Reason::Push, None).validate(), Ok(()));
        assert_eq!(spec(Reason::Rollback, Some("prod-1")).validate(), Ok(()));
        assert_eq!(
            spec(Reason::Rollback, None).validate(),
            Err(SpecProblem::RollbackWithoutTarget)
        );
        assert_eq!(
            spec(Reason::Manual, Some("prod-1")).validate(),
            Err(SpecProblem::TargetWithoutRollback(Reason::Manual))
        );
        let mut short = spec(Reason::Push, None);
        short.commit = "0123456".into();
        assert_eq!(short.validate(), Err(SpecProblem::CommitNotFullSha));
        short.commit = "0123456789ABCDEF0123456789ABCDEF01234567".into();
        assert_eq!(short.validate(), Err(SpecProblem::CommitNotFullSha));
        let mut pushed = spec(Reason::Push, None);
        pushed.promotion = Some(crate::PromotionOrigin {
            from_environment: "main".into(),
            from_release: String::new(),
            previous_commit: String::new(),
            requested_by: "schedule".into(),
            scheduled_for: None,
        });
        assert_eq!(
            pushed.validate(),
            Err(SpecProblem::OriginWithoutPromotion(Reason::Push))
        );
        pushed.reason = Reason::Promotion;
        assert_eq!(pushed.validate(), Ok(()));
    }

    #[test]
    fn short_commit_is_seven_chars() {
        assert_eq!(spec(Reason::Push, None).short_commit(), "0123456");
    }

    #[test]
    fn phases_serialise_as_their_api_names() {
        for phase in Phase::ALL {
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::json!(phase.as_str())
            );
        }
        let settled: Vec<_> = Phase::ALL.into_iter().filter(|p| !p.is_in_progress()).collect();
        assert_eq!(
            settled,
            [
                Phase::Succeeded,
                Phase::Failed,
                Phase::RolledBack,
                Phase::Superseded
            ]
        );
    }

    #[test]
    fn a_failure_is_settled_once_its_rollback_is_decided() {
        let in_phase = |phase: Phase, reason: &str| {
            let mut release = ShipRelease::new("r", spec(Reason::Push, None));
            release.status = Some(ShipReleaseStatus {
                phase: Some(phase),
                conditions: vec![crate::conditions::condition(
                    crate::conditions::READY,
                    false,
                    &crate::conditions::Observation {
                        phase,
                        reason,
                        message: "",
                        generation: None,
                    },
                    &[],
                    &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
                )],
                ..ShipReleaseStatus::default()
            });
            release
        };
        assert!(!ShipRelease::new("r", spec(Reason::Push, None)).is_settled());
        assert!(!in_phase(Phase::Testing, "Testing").is_settled());
        for reason in ["HealthTimeout", "Unhealthy", "TestsFailed"] {
            assert!(!in_phase(Phase::Failed, reason).is_settled(), "{reason}");
        }
        assert_eq!(
            in_phase(Phase::Failed, "TestsFailed")
                .status
                .unwrap()
                .ready_reason(),
            "TestsFailed"
        );
        assert!(in_phase(Phase::Failed, "NoGoodRelease").is_settled());
        assert!(in_phase(Phase::Failed, "DryRunFailed").is_settled());
        assert!(in_phase(Phase::RolledBack, "RolledBack").is_settled());
        assert!(in_phase(Phase::Succeeded, "Succeeded").is_settled());
    }
}

/// A list of releases as this Ship reads it: those it can read, and the names of those it
/// cannot, with why.
#[derive(Debug, Default)]
pub struct Readable {
    /// The releases this Ship's types read.
    pub releases: Vec<ShipRelease>,
    /// `(name, why)` of each one they do not (a value another Ship version wrote, an object
    /// edited by hand past what the types allow).
    pub unreadable: Vec<(String, String)>,
}

/// `listed` (a list read as `DeserializeGuard`s) split into what this Ship can read and what
/// it cannot. One release that cannot be read must not fail the whole list: a typed list does,
/// and with it every decision that reads releases (new tips, the environment's status, the
/// promotion). The engine's reconcile of that release says what is wrong (Warning
/// `InvalidObject`) and touches nothing.
pub fn readable(listed: Vec<kube::core::DeserializeGuard<ShipRelease>>) -> Readable {
    let mut out = Readable::default();
    for guard in listed {
        match guard.0 {
            Ok(release) => out.releases.push(release),
            Err(invalid) => out
                .unreadable
                .push((invalid.metadata.name.unwrap_or_default(), invalid.error)),
        }
    }
    out
}
