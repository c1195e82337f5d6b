//! Which Kubernetes versions serve which API group-versions, for the checks that the chart and
//! the plain manifests apply on every supported Kubernetes (1.20, the test bed, to today).
//!
//! From the Kubernetes deprecation guide: the version that first served a group-version for a
//! kind (where it is newer than 1.20) and the version that stopped serving it.

/// A Kubernetes minor version, `(1, 25)` for 1.25.
pub type Minor = (u32, u32);

/// `(apiVersion, kind, first served, last served)`; `None` for "still served" or "before 1.20".
/// `kind` `*` stands for every kind of that group-version.
pub type Served = (&'static str, &'static str, Option<Minor>, Option<Minor>);

/// Which versions serve which group-versions (see the module documentation).
pub const SERVED: &[Served] = &[
    ("extensions/v1beta1", "*", None, Some((1, 21))),
    ("apps/v1beta1", "*", None, Some((1, 15))),
    ("apps/v1beta2", "*", None, Some((1, 15))),
    ("networking.k8s.io/v1beta1", "*", None, Some((1, 21))),
    ("rbac.authorization.k8s.io/v1beta1", "*", None, Some((1, 21))),
    ("apiextensions.k8s.io/v1beta1", "*", None, Some((1, 21))),
    ("admissionregistration.k8s.io/v1beta1", "*", None, Some((1, 21))),
    ("scheduling.k8s.io/v1beta1", "*", None, Some((1, 21))),
    ("coordination.k8s.io/v1beta1", "*", None, Some((1, 21))),
    ("certificates.k8s.io/v1beta1", "*", None, Some((1, 21))),
    (
        "storage.k8s.io/v1beta1",
        "CSIStorageCapacity",
        Some((1, 21)),
        Some((1, 26)),
    ),
    ("storage.k8s.io/v1beta1", "*", None, Some((1, 21))),
    ("batch/v1beta1", "*", None, Some((1, 24))),
    ("batch/v1", "CronJob", Some((1, 21)), None),
    ("policy/v1beta1", "*", None, Some((1, 24))),
    ("policy/v1", "*", Some((1, 21)), None),
    ("discovery.k8s.io/v1beta1", "*", None, Some((1, 24))),
    ("discovery.k8s.io/v1", "*", Some((1, 21)), None),
    ("events.k8s.io/v1beta1", "*", None, Some((1, 24))),
    ("autoscaling/v2beta1", "*", None, Some((1, 24))),
    ("autoscaling/v2beta2", "*", None, Some((1, 25))),
    ("autoscaling/v2", "*", Some((1, 23)), None),
    ("node.k8s.io/v1beta1", "*", None, Some((1, 24))),
    ("node.k8s.io/v1", "*", Some((1, 20)), None),
    (
        "flowcontrol.apiserver.k8s.io/v1beta1",
        "*",
        Some((1, 20)),
        Some((1, 25)),
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta2",
        "*",
        Some((1, 23)),
        Some((1, 28)),
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta3",
        "*",
        Some((1, 26)),
        Some((1, 31)),
    ),
    ("flowcontrol.apiserver.k8s.io/v1", "*", Some((1, 29)), None),
];

/// The oldest Kubernetes Ship supports (the test bed's).
pub const OLDEST: Minor = (1, 20);
/// The newest Kubernetes checked against.
pub const NEWEST: Minor = (1, 35);

/// Why `api_version`/`kind` is not served by Kubernetes `version`, if it is not.
pub fn not_served(api_version: &str, kind: &str, version: Minor) -> Option<String> {
    let (_, _, first, last) = SERVED
        .iter()
        .find(|(api, k, _, _)| *api == api_version && (*k == kind || *k == "*"))?;
    if let Some(first) = first
        && version < *first
    {
        return Some(format!(
            "{api_version} {kind} is served from {}.{} on, not by {}.{}",
            first.0, first.1, version.0, version.1
        ));
    }
    if let Some(last) = last
        && version > *last
    {
        return Some(format!(
            "{api_version} {kind} was removed after {}.{}, so {}.{} does not serve it",
            last.0, last.1, version.0, version.1
        ));
    }
    None
}

/// Every object of a YAML stream that `version` does not serve, as messages naming it.
pub fn unserved_in(yaml: &str, version: Minor) -> Vec<String> {
    yaml.split("\n---")
        .filter_map(|doc| serde_norway::from_str::<serde_json::Value>(doc).ok())
        .filter_map(|object| {
            let api = object.get("apiVersion")?.as_str()?.to_owned();
            let kind = object.get("kind")?.as_str()?.to_owned();
            let name = object
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or("?");
            not_served(&api, &kind, version).map(|why| format!("{kind}/{name}: {why}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_and_introductions_are_found_by_version() {
        assert!(not_served("policy/v1beta1", "PodDisruptionBudget", (1, 25)).is_some());
        assert_eq!(not_served("policy/v1beta1", "PodDisruptionBudget", (1, 24)), None);
        assert!(not_served("policy/v1", "PodDisruptionBudget", (1, 20)).is_some());
        assert_eq!(not_served("policy/v1", "PodDisruptionBudget", (1, 21)), None);
        assert!(not_served("batch/v1beta1", "CronJob", (1, 25)).is_some());
        assert!(not_served("batch/v1", "CronJob", (1, 20)).is_some());
        assert_eq!(not_served("batch/v1", "Job", (1, 20)), None);
        assert!(not_served("autoscaling/v2beta2", "HorizontalPodAutoscaler", (1, 26)).is_some());
        assert_eq!(not_served("apps/v1", "Deployment", NEWEST), None);
        let stream = "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: ship}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ship}\n";
        assert_eq!(unserved_in(stream, OLDEST), Vec::<String>::new());
        let newest = unserved_in(stream, NEWEST);
        assert_eq!(newest.len(), 1);
        assert!(
            newest[0].starts_with("PodDisruptionBudget/ship: policy/v1beta1"),
            "{newest:?}"
        );
    }
}
