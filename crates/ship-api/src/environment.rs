//! The `ShipEnvironment` custom resource: one environment of `ship.yaml` (usually `main` and
//! `production`), its branch, what runs there, and whether that is what git says.
//!
//! shipd makes and keeps one per environment, in the manner of a Flux Kustomization or a Kargo
//! Stage; people read it (`kubectl get shipenvironments`, `kubectl ship status`). It is the
//! home of the environment's own conditions: `InSync` (the cluster runs the branch tip) and
//! `BranchMissing` (the branch is gone from the remote), beside kstatus' `Ready`,
//! `Reconciling` and `Stalled`.
//!
//! [`releases_of`] (in `ship_core::environment`, re-exported here) is the one rule for "what runs in an environment", shared by shipd (which
//! writes it here) and `kubectl ship`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use ship_core::environment::{
    BRANCH_MISSING, CommitRef, Declared, EnvironmentReleases, HELD, HELD_COMMITS_KEPT, HeldCommit, Hold,
    IN_SYNC, Observed, Release, ReleaseRef, SOURCE_READY, ShipEnvironmentStatus, Standing, SyncReason,
    last_good, manual_rollback_target, newest_first, releases_of, rollback_target, standing, status, sync,
    to_collect,
};

use crate::{Reason, ShipRelease, ShipReleaseStatus};

/// The environment rules read a `ShipRelease` through its spec, metadata and status.
impl Release for ShipRelease {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn environment(&self) -> &str {
        &self.spec.environment
    }

    fn commit(&self) -> &str {
        &self.spec.commit
    }

    fn reason(&self) -> Reason {
        self.spec.reason
    }

    fn sequence(&self) -> (i64, String) {
        ShipRelease::sequence(self)
    }

    fn status(&self) -> Option<&ShipReleaseStatus> {
        self.status.as_ref()
    }
}

/// One environment declared in `ship.yaml`, as shipd sees it.
// kube-derive takes one `printcolumn(...)` per column; clippy reads their keys as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ship.dev",
    version = "v1alpha1",
    kind = "ShipEnvironment",
    plural = "shipenvironments",
    singular = "shipenvironment",
    shortname = "senv",
    category = "ship",
    namespaced,
    status = "ShipEnvironmentStatus",
    derive = "PartialEq",
    doc = "One Ship environment: its branch, what runs there, and whether that is the branch's tip.",
    printcolumn(name = "Branch", type_ = "string", json_path = ".spec.branch"),
    printcolumn(
        name = "Tip",
        type_ = "string",
        json_path = ".status.tip.shortCommit",
        description = "The branch's tip, as last fetched"
    ),
    printcolumn(
        name = "Running",
        type_ = "string",
        json_path = ".status.deployed.shortCommit",
        description = "The commit running in the environment"
    ),
    printcolumn(
        name = "In-Sync",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"InSync\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"InSync\")].reason"
    ),
    printcolumn(
        name = "Held",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Held\")].status",
        description = "A person holds the environment (kubectl ship hold)"
    ),
    printcolumn(
        name = "Release",
        type_ = "string",
        json_path = ".status.deployed.name",
        description = "The release running in the environment"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ShipEnvironmentSpec {
    /// The branch the environment deploys (from `ship.yaml`).
    pub branch: String,
    /// The namespace the environment's objects go to (from `ship.yaml`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Set by a person (`kubectl ship hold ENV --reason TEXT`) to stop the line: while it is
    /// set, new tips of the branch make no release and the promotion into the environment does
    /// not run (each is recorded in `status.heldCommits` and announced). Drift correction and
    /// manual rollbacks still work. Removing it (`kubectl ship resume ENV`) deploys the
    /// newest tip. shipd never writes this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
}

impl ShipEnvironmentSpec {
    /// Whether `other` declares the same environment (branch and namespace), whatever its hold.
    pub fn declares_same(&self, other: &ShipEnvironmentSpec) -> bool {
        self.branch == other.branch && self.namespace == other.namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Phase, Reason, ShipReleaseSpec, ShipReleaseStatus, keys};
    use kube::api::ObjectMeta;

    fn release(name: &str, commit: char, seq: i64, phase: Phase) -> ShipRelease {
        ShipRelease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some([(keys::SEQUENCE.to_owned(), seq.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: ShipReleaseSpec {
                environment: "production".into(),
                commit: commit.to_string().repeat(40),
                branch: "production".into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
            status: Some(ShipReleaseStatus {
                phase: Some(phase),
                ..ShipReleaseStatus::default()
            }),
        }
    }

    #[test]
    fn the_rules_read_a_ship_release_by_its_spec_metadata_and_status() {
        let mut r = release("p-a", 'a', 7, Phase::RolledBack);
        r.spec.reason = Reason::Manual;
        assert_eq!(Release::name(&r), "p-a");
        assert_eq!(Release::environment(&r), "production");
        assert_eq!(Release::commit(&r), "a".repeat(40));
        assert_eq!(Release::short_commit(&r), "aaaaaaa");
        assert_eq!(Release::reason(&r), Reason::Manual);
        assert_eq!(Release::sequence(&r), (7, "p-a".to_owned()));
        assert_eq!(Release::phase(&r), Some(Phase::RolledBack));
        assert_eq!(ReleaseRef::of(&r).name, "p-a");
    }

    /// Pins the one meaning of "last good": the newest Succeeded release, before a point and
    /// other than a commit, whichever of its three uses asks.
    #[test]
    fn last_good_has_one_meaning() {
        let mut other_env = release("main-a", 'a', 9, Phase::Succeeded);
        other_env.spec.environment = "main".into();
        let all = [
            release("p-a", 'a', 1, Phase::Succeeded),
            release("p-b", 'b', 2, Phase::Succeeded),
            release("p-b-2", 'b', 3, Phase::Succeeded),
            release("p-c", 'c', 4, Phase::Failed),
            other_env,
        ];
        let name = |r: Option<&ShipRelease>| r.and_then(|r| r.metadata.name.clone());
        // shown as the environment's last good release
        assert_eq!(
            name(last_good("production", &all, None, "")),
            Some("p-b-2".into())
        );
        assert_eq!(
            name(releases_of("production", &all).and_then(|f| f.last_good)),
            Some("p-b-2".into())
        );
        // what the failed p-c rolls back to
        assert_eq!(
            name(last_good(
                "production",
                &all,
                Some(&all[3].sequence()),
                &all[3].spec.commit
            )),
            Some("p-b-2".into())
        );
        // what p-b-2 would have rolled back to: not its own commit
        assert_eq!(
            name(last_good(
                "production",
                &all,
                Some(&all[2].sequence()),
                &all[2].spec.commit
            )),
            Some("p-a".into())
        );
        // what `kubectl ship rollback` goes back to while b runs
        assert_eq!(
            name(last_good("production", &all, None, &all[2].spec.commit)),
            Some("p-a".into())
        );
        assert_eq!(last_good("staging", &all, None, ""), None);
    }
}
