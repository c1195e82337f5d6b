//! Ship's API types.
//!
//! This crate holds the `ShipRelease`, `ShipEnvironment` and `ShipPromotion` custom resources and the pure helpers that describe its
//! status (phases and kstatus conditions). It has no runtime logic and never talks to a cluster.

pub use ship_core::conditions;
pub mod environment;
pub mod names;
pub mod promotion;
pub use ship_core::bisect;
pub use ship_core::reason;
pub use ship_core::revert;
pub mod release;

pub use environment::{
    CommitRef, EnvironmentReleases, HeldCommit, Hold, ReleaseRef, ShipEnvironment, ShipEnvironmentSpec,
    ShipEnvironmentStatus, SyncReason,
};
pub use promotion::{
    Behind, PromotionOrigin, PromotionOutcome, PromotionRun, ShipPromotion, ShipPromotionSpec,
    ShipPromotionStatus,
};
pub use reason::StatusReason;
pub use release::{
    InventoryEntry, NotificationOutcome, NotificationRecord, Phase, PruneRefusal, Readable, Reason,
    RevertRecord, ShipRelease, ShipReleaseSpec, ShipReleaseStatus, SuspectCommit, TestResult, TestVerdict,
    Transition, VERIFICATION_LOG_KEPT, VERIFICATION_RUNS_KEPT, VERIFIED, Verification, VerificationRun,
    awaits_rollback, readable,
};

/// The API group of every Ship resource.
pub const GROUP: &str = "ship.dev";

/// Field manager used for every server-side apply Ship makes (objects and `/status`).
pub const FIELD_MANAGER: &str = "ship-controller";

/// Field manager of `kubectl ship`'s writes (a hold, a resume, a promotion request).
pub const CLI_FIELD_MANAGER: &str = "kubectl-ship";

/// Field manager of shipd's notifier, which alone writes a release's `status.notifications`
/// (the controller's status writes leave that field out, so neither undoes the other).
pub const NOTIFIER_FIELD_MANAGER: &str = "ship-notifier";

/// Field manager of a bisection's record on the failed release (`status.bisection`).
pub const BISECT_FIELD_MANAGER: &str = "ship-bisect";

/// Field manager that holds, for a moment, a field Ship stops applying (one it leaves to an
/// autoscaler or another writer), so that the API server keeps its value instead of removing
/// it when Ship's own apply no longer sets it.
pub const HANDOVER_FIELD_MANAGER: &str = "ship-handover";

/// Label and annotation keys Ship puts on what it manages.
pub mod keys {
    /// Label: on a bisection's test release, the failed release whose range it searches.
    pub const BISECTION_OF: &str = "ship.dev/bisection-of";
    /// Label: the environment an object or ShipRelease belongs to (on releases too, so an
    /// environment's releases list with a label selector).
    pub const ENVIRONMENT: &str = "ship.dev/environment";
    /// Annotation: the full commit SHA of the release that last wrote an object (a release
    /// writes only what changed, so an object the commit left as it was keeps an older one).
    pub const COMMIT: &str = "ship.dev/commit";
    /// Annotation: the ShipRelease that last wrote an object.
    pub const RELEASE: &str = "ship.dev/release";
    /// Annotation: a digest of what Ship last wrote of an object (its manifest with Ship's
    /// labels; not the commit and release annotations). A release writes an object only when
    /// the digest of its new manifest differs, or when the object drifted.
    pub const DIGEST: &str = "ship.dev/digest";
    /// Label: marks objects created by Ship (pruning only ever touches these).
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`] for Ship.
    pub const MANAGED_BY_SHIP: &str = "ship";
    /// Annotation on a ShipRelease: its place in its environment's order (milliseconds since
    /// the epoch at creation). A newer release supersedes an older in-flight one. Releases
    /// created without it are ordered by `creationTimestamp`.
    pub const SEQUENCE: &str = "ship.dev/sequence";
    /// Annotation on a ShipPromotion: set (to any new value, usually the time) to ask for a
    /// promotion now, outside the schedule. The controller records the value it handled in
    /// `status.lastHandledRequestedAt`.
    pub const REQUESTED_AT: &str = "ship.dev/requested-at";
    /// Annotation on a ShipRelease: a revert of its commit is asked (`kubectl ship revert`);
    /// its value (a time) names the request, answered in `status.revert.requestedAt`.
    pub const REVERT_REQUESTED_AT: &str = "ship.dev/revert-requested-at";
    /// Annotation on a ShipRelease, next to [`REVERT_REQUESTED_AT`]: who asked.
    pub const REVERT_REQUESTED_BY: &str = "ship.dev/revert-requested-by";
    /// Annotation on a ShipPromotion, next to [`REQUESTED_AT`]: who asked.
    pub const REQUESTED_BY: &str = "ship.dev/requested-by";
    /// Annotation on a ShipPromotion, next to [`REQUESTED_AT`]: `"true"` when the request
    /// overrides a hold on the target environment (`kubectl ship promote --force`).
    pub const OVERRIDE_HOLD: &str = "ship.dev/override-hold";
    /// Annotation on a managed object, in git: [`PRUNE_DISABLED`] keeps it when a later commit
    /// no longer declares it (any kind); [`PRUNE_ENABLED`] lets Ship prune a kind whose deletion
    /// cascades (Namespace, CustomResourceDefinition, PersistentVolumeClaim, PersistentVolume),
    /// which it otherwise never prunes.
    pub const PRUNE: &str = "ship.dev/prune";
    /// Value of [`PRUNE`]: never prune this object.
    pub const PRUNE_DISABLED: &str = "disabled";
    /// Value of [`PRUNE`]: this object of a cascading kind may be pruned.
    pub const PRUNE_ENABLED: &str = "enabled";
}

/// Every Ship CRD: the file name it is committed as in `deploy/crds/`, and its YAML. The
/// `crdgen` binary writes these; a test compares them with the committed files.
pub fn crds() -> Result<Vec<(&'static str, String)>, serde_norway::Error> {
    use kube::CustomResourceExt;
    let header = "# Generated by `cargo run -p ship-api --bin crdgen -- deploy/crds`; do not edit by hand.\n";
    let yaml = |crd| serde_norway::to_string(&kubernetes_formats(crd));
    Ok(vec![
        (
            "shipreleases.yaml",
            format!("{header}{}", yaml(ShipRelease::crd())?),
        ),
        (
            "shipenvironments.yaml",
            format!("{header}{}", yaml(ShipEnvironment::crd())?),
        ),
        (
            "shippromotions.yaml",
            format!("{header}{}", yaml(ShipPromotion::crd())?),
        ),
    ])
}

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// The CRD with only the formats Kubernetes knows: schemars writes `uint32`/`uint64` for
/// unsigned fields, which the API server (1.30 and later) answers with an "unrecognized format"
/// warning on every install. Such a field keeps `minimum: 0`, which says the same.
fn kubernetes_formats(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            drop_unknown_formats(schema);
        }
    }
    crd
}

/// Formats of integer and number fields that Kubernetes validates or knows (`int32`, `int64`,
/// `float`, `double`); string formats are left as they are.
fn drop_unknown_formats(schema: &mut JSONSchemaProps) {
    let numeric = matches!(schema.type_.as_deref(), Some("integer" | "number"));
    if numeric
        && !matches!(
            schema.format.as_deref(),
            None | Some("int32" | "int64" | "float" | "double")
        )
    {
        schema.format = None;
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.not.as_deref_mut());
    for child in children {
        drop_unknown_formats(child);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => drop_unknown_formats(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(drop_unknown_formats),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        drop_unknown_formats(extra);
    }
}
