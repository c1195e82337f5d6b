//! The one writer of every Ship object's status (server-side apply on `/status`, fixed field
//! manager, compare-and-set on the view a decision was taken from). What the status of a
//! release becomes is decided in the pure core ([`ship_core::release::status_after`]).

pub use ship_core::release::{MAX_TRANSITIONS, next_status, status_after};

/// Server-side apply of `status` on `/status` of the object `name` of `api`, with Ship's fixed
/// field manager (forced: Ship owns its status fields). The one way any Ship object's status is
/// written (releases, environments, promotions).
///
/// With `decided_on` (the `resourceVersion` of the object the status was decided from), the
/// write is a compare-and-set: the API server refuses it with 409 Conflict when anything wrote
/// the object since, and the caller decides again from fresh state (see [`is_stale_view`]).
/// Returns the object's new `resourceVersion`.
pub async fn apply_status<K, S>(
    api: &kube::Api<K>,
    name: &str,
    status: &S,
    decided_on: Option<&str>,
) -> Result<Option<String>, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: k8s_openapi::serde::Serialize,
{
    let mut status = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    // `status.notifications` belongs to the notifier (its own field manager). Leaving it out
    // here means a status built from a cached copy never takes it over and never puts back
    // an older ledger, which would send a delivery twice.
    // Likewise `status.bisection` belongs to the bisection (`ship-bisect`).
    if let Some(fields) = status.as_object_mut() {
        fields.remove("notifications");
        fields.remove("bisection");
    }
    let mut patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(version) = decided_on {
        // A resourceVersion in an apply configuration is a precondition, not a field to own.
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    let params = kube::api::PatchParams::apply(ship_api::FIELD_MANAGER).force();
    // The answer is read as a guard: an object this Ship cannot read (the status of a release
    // it reports as unreadable) is still written, and the write is not taken for a failure.
    let guarded: kube::Api<kube::core::DeserializeGuard<K>> =
        kube::Api::namespaced(api.clone().into_client(), api.namespace().unwrap_or_default());
    let written = guarded
        .patch_status(name, &params, &kube::api::Patch::Apply(&patch))
        .await?;
    Ok(kube::Resource::meta(&written).resource_version.clone())
}

/// A compare-and-set status write lost: the object changed after the view the decision was
/// taken on. Never retried as is; the decision is taken again from a fresh read.
pub fn is_stale_view(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}
