//! The `ShipPromotion` custom resource: the forced promotion of one environment into another
//! (usually `main` into `production`), its schedule, and how far the target lags behind.
//!
//! The controller creates and owns it; people read it (`kubectl get shippromotions`) and ask
//! for a promotion outside the schedule by annotating it with [`crate::keys::REQUESTED_AT`]
//! (what `kubectl ship promote` does), the way Flux's `reconcile.fluxcd.io/requestedAt` works.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition: the promotion could push its target branch now (reason `PushAccepted`): the remote
/// accepts a push connection with Ship's push credentials. `False` (reason `PushRefused`, or
/// `NoPushCredentials`) is known at startup, not when the scheduled run fails.
pub const PUSH_READY: &str = "PushReady";

/// The forced promotion of `from`'s tested commits into `to`, on the schedule in `ship.yaml`.
// kube-derive takes one `printcolumn(...)` per column; clippy reads their keys as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ship.dev",
    version = "v1alpha1",
    kind = "ShipPromotion",
    plural = "shippromotions",
    singular = "shippromotion",
    shortname = "sprom",
    category = "ship",
    namespaced,
    status = "ShipPromotionStatus",
    derive = "PartialEq",
    doc = "The scheduled promotion of one Ship environment's tested commits into another.",
    printcolumn(name = "From", type_ = "string", json_path = ".spec.from"),
    printcolumn(name = "To", type_ = "string", json_path = ".spec.to"),
    printcolumn(
        name = "Behind",
        type_ = "integer",
        json_path = ".status.behind.commits",
        description = "Commits on the source branch not yet in the target branch"
    ),
    printcolumn(
        name = "Last",
        type_ = "date",
        json_path = ".status.lastPromotion.at",
        description = "Last promotion"
    ),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        description = "Next scheduled promotion"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ShipPromotionSpec {
    /// Environment whose tested commits are promoted (from `ship.yaml`, usually `main`).
    pub from: String,
    /// Environment that receives them (usually `production`).
    pub to: String,
}

pub use ship_core::promotion::status::*;
