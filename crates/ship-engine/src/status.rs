//! Pure construction of the status the controller writes next, and the one writer of every
//! Ship object's status (server-side apply on `/status`, fixed field manager).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ship_api::conditions::{Observation, kstatus_conditions};
use ship_api::{ShipRelease, ShipReleaseStatus, Transition};

use crate::machine::Change;

/// Upper bound on recorded transitions, so a release that loops (for example through repeated
/// crash-and-resume) cannot grow its status without limit.
pub const MAX_TRANSITIONS: usize = 32;

/// The status `release` should have after `step` (a [`Change`] the machine decided), at time
/// `now`. A phase change appends a
/// transition; conditions keep their `lastTransitionTime` when their status is unchanged.
pub fn next_status(release: &ShipRelease, step: &Change, now: &Time) -> ShipReleaseStatus {
    let current = release.status.clone().unwrap_or_default();
    let generation = release.metadata.generation;
    let mut transitions = current.transitions.clone();
    if current.phase != Some(step.phase) {
        transitions.push(Transition {
            phase: step.phase,
            at: now.clone(),
            message: step.message.clone(),
        });
        if transitions.len() > MAX_TRANSITIONS {
            transitions.drain(..transitions.len() - MAX_TRANSITIONS);
        }
    }
    let observation = Observation {
        phase: step.phase,
        reason: step.label(),
        message: &step.message,
        generation,
    };
    // The kstatus conditions follow the phase; the others (`Verified`) are written by their
    // own records and carry over.
    let mut conditions = kstatus_conditions(&observation, &current.conditions, now);
    conditions.extend(
        current
            .conditions
            .iter()
            .filter(|c| !conditions.iter().any(|k| k.type_ == c.type_))
            .cloned()
            .collect::<Vec<_>>(),
    );
    ShipReleaseStatus {
        phase: Some(step.phase),
        observed_generation: generation,
        conditions,
        short_commit: Some(release.spec.short_commit().to_owned()),
        message: Some(step.message.clone()),
        transitions,
        // Tests, inventory, suspects and the rollback target carry over; a step changes them
        // explicitly.
        ..current
    }
}

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
    if let Some(fields) = status.as_object_mut() {
        fields.remove("notifications");
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

/// The whole status a transition persists: the `change` (when the phase or its reason moves)
/// and the `record` the machine keeps beside it, over `release`'s current status.
pub fn status_after(
    release: &ShipRelease,
    change: Option<&Change>,
    record: crate::machine::Record,
    now: &Time,
) -> ShipReleaseStatus {
    let mut status = match change {
        Some(change) => next_status(release, change, now),
        None => release.status.clone().unwrap_or_default(),
    };
    record.write(&mut status);
    status
}

/// A compare-and-set status write lost: the object changed after the view the decision was
/// taken on. Never retried as is; the decision is taken again from a fresh read.
pub fn is_stale_view(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ship_api::{Phase, Reason, ShipReleaseSpec, StatusReason};

    fn release() -> ShipRelease {
        let mut r = ShipRelease::new(
            "main-0123456",
            ShipReleaseSpec {
                environment: "main".into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                branch: "main".into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
        );
        r.metadata.generation = Some(3);
        r
    }

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn step(phase: Phase) -> Change {
        Change {
            phase,
            reason: StatusReason::Progressing,
            cause: None,
            message: format!("now {phase}"),
        }
    }

    #[test]
    fn first_step_records_transition_and_identity() {
        let s = next_status(&release(), &step(Phase::Pending), &at(10));
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.short_commit.as_deref(), Some("0123456"));
        assert_eq!(s.transitions.len(), 1);
        assert_eq!(s.transitions[0].at, at(10));
    }

    #[test]
    fn same_phase_does_not_add_transition() {
        let mut r = release();
        r.status = Some(next_status(&r, &step(Phase::Applying), &at(10)));
        let again = next_status(&r, &step(Phase::Applying), &at(20));
        assert_eq!(again.transitions.len(), 1);
        assert_eq!(again.transitions[0].at, at(10));
    }

    #[test]
    fn other_conditions_carry_over_a_phase_change() {
        let mut r = release();
        r.status = Some(next_status(&r, &step(Phase::Succeeded), &at(10)));
        crate::verification::record(r.status.as_mut().unwrap(), at(20).0, Vec::new());
        let next = next_status(&r, &step(Phase::Failed), &at(30));
        let types: Vec<&str> = next.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "Stalled", "Verified"]);
    }

    #[test]
    fn transitions_are_bounded() {
        let mut r = release();
        for i in 0..100 {
            let phase = if i % 2 == 0 {
                Phase::Applying
            } else {
                Phase::Progressing
            };
            r.status = Some(next_status(&r, &step(phase), &at(i)));
        }
        let s = r.status.unwrap();
        assert_eq!(s.transitions.len(), MAX_TRANSITIONS);
        assert_eq!(s.transitions.last().unwrap().at, at(99));
    }
}
