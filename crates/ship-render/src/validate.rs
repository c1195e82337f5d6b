//! Validation of rendered objects for one environment, before anything touches a cluster.
//! Pure: objects in, objects (with namespaces and list-map keys defaulted) or the first problem
//! out.

use std::collections::HashMap;

use serde_json::Value;

use crate::RenderError;
use crate::config::Environment;
use crate::manifests::Manifest;

/// Kinds that are cluster-scoped in every Kubernetes version Ship supports. A CRD's own kinds
/// are added from its `spec.scope` when the CRD is part of the same set.
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CSIDriver",
    "CSINode",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PodSecurityPolicy",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

fn str_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// Checks `manifests` for environment `env_name` and defaults their namespaces.
pub fn validate(
    env_name: &str,
    env: &Environment,
    mut manifests: Vec<Manifest>,
) -> Result<Vec<Manifest>, RenderError> {
    let namespace = env.namespace(env_name);
    let mut cluster_kinds: Vec<String> = CLUSTER_SCOPED.iter().map(|k| (*k).to_owned()).collect();
    for m in &manifests {
        if str_at(&m.object, "/kind") == Some("CustomResourceDefinition")
            && str_at(&m.object, "/spec/scope") == Some("Cluster")
            && let Some(kind) = str_at(&m.object, "/spec/names/kind")
        {
            cluster_kinds.push(kind.to_owned());
        }
    }
    let mut seen: HashMap<(String, String, String, String), String> = HashMap::new();
    for m in &mut manifests {
        let origin = m.source.clone();
        let missing = |field: &str| RenderError::MissingField {
            origin: origin.clone(),
            field: field.to_owned(),
        };
        let api_version = str_at(&m.object, "/apiVersion")
            .ok_or_else(|| missing("apiVersion"))?
            .to_owned();
        let kind = str_at(&m.object, "/kind")
            .ok_or_else(|| missing("kind"))?
            .to_owned();
        let name = str_at(&m.object, "/metadata/name")
            .ok_or_else(|| missing("metadata.name"))?
            .to_owned();
        if !ship_core::names::is_dns_subdomain(&name) {
            return Err(RenderError::InvalidName { origin, name });
        }
        if kind == "Secret" && group_of(&api_version).is_empty() {
            return Err(RenderError::SecretInGit { origin, name });
        }
        let cluster_scoped = cluster_kinds.contains(&kind);
        let object_namespace = if cluster_scoped {
            if str_at(&m.object, "/metadata/namespace").is_some() {
                return Err(RenderError::NamespaceOnClusterObject { origin, kind, name });
            }
            let own_namespace = kind == "Namespace" && name == namespace;
            if !own_namespace && !env.cluster_scoped_kinds.contains(&kind) {
                return Err(RenderError::ClusterScopedNotAllowed { origin, kind, name });
            }
            String::new()
        } else {
            match str_at(&m.object, "/metadata/namespace") {
                None => {
                    if let Some(meta) = m.object.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.insert("namespace".into(), Value::String(namespace.to_owned()));
                    }
                    namespace.to_owned()
                }
                Some(ns) if ns == namespace || env.allowed_namespaces.iter().any(|a| a == ns) => {
                    ns.to_owned()
                }
                Some(ns) => {
                    return Err(RenderError::NamespaceNotAllowed {
                        origin,
                        namespace: ns.to_owned(),
                        allowed: namespace.to_owned(),
                    });
                }
            }
        };
        crate::defaults::fill_list_map_key_defaults(&mut m.object);
        let key = (
            group_of(&api_version).to_owned(),
            kind.clone(),
            object_namespace,
            name.clone(),
        );
        if let Some(first) = seen.insert(key, origin.clone()) {
            return Err(RenderError::Duplicate {
                kind,
                name,
                first,
                second: origin,
            });
        }
    }
    Ok(manifests)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::manifests::Manifest;

    fn manifest(object: Value, source: &str) -> Manifest {
        Manifest {
            object,
            source: source.into(),
        }
    }

    fn object(api_version: &str, kind: &str, name: &str) -> Value {
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})
    }

    /// The API group is part of an object's identity: a `Secret` of another group is not the
    /// core Secret git must not hold, and one name in two groups is two objects.
    #[test]
    fn the_api_group_tells_objects_of_one_kind_and_name_apart() {
        let env = Environment::default();
        let other_group_secret = vec![manifest(
            object("secrets.example.com/v1", "Secret", "db"),
            "a.yaml#1",
        )];
        assert!(validate("main", &env, other_group_secret).is_ok());
        let core_secret = vec![manifest(object("v1", "Secret", "db"), "a.yaml#1")];
        assert!(matches!(
            validate("main", &env, core_secret),
            Err(RenderError::SecretInGit { .. })
        ));
        let two_groups = vec![
            manifest(object("a.example.com/v1", "Widget", "w"), "a.yaml#1"),
            manifest(object("b.example.com/v1", "Widget", "w"), "b.yaml#1"),
        ];
        assert_eq!(validate("main", &env, two_groups).unwrap().len(), 2);
        let one_group_twice = vec![
            manifest(object("a.example.com/v1", "Widget", "w"), "a.yaml#1"),
            manifest(object("a.example.com/v2", "Widget", "w"), "b.yaml#1"),
        ];
        assert!(matches!(
            validate("main", &env, one_group_twice),
            Err(RenderError::Duplicate { .. })
        ));
    }

    fn in_namespace(api_version: &str, kind: &str, name: &str, namespace: &str) -> Value {
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}})
    }

    fn refused(result: Result<Vec<Manifest>, RenderError>) -> &'static str {
        result.map_or_else(|e| e.label(), |_| "accepted")
    }

    /// Cluster-scoped objects: the environment's own Namespace is allowed as it is; any other
    /// Namespace, or another cluster-scoped kind, only when ship.yaml names its kind.
    #[test]
    fn cluster_scoped_objects_need_their_kind_allowed_except_the_environments_namespace() {
        let env = Environment {
            namespace: Some("app".into()),
            ..Environment::default()
        };
        let one = |object: Value| vec![manifest(object, "a.yaml#1")];
        assert_eq!(
            refused(validate("main", &env, one(object("v1", "Namespace", "app")))),
            "accepted"
        );
        assert_eq!(
            refused(validate("main", &env, one(object("v1", "Namespace", "other")))),
            "ClusterScopedNotAllowed"
        );
        let role = || object("rbac.authorization.k8s.io/v1", "ClusterRole", "app");
        assert_eq!(
            refused(validate("main", &env, one(role()))),
            "ClusterScopedNotAllowed"
        );
        let allowing = Environment {
            cluster_scoped_kinds: vec!["ClusterRole".into(), "Namespace".into()],
            ..env.clone()
        };
        assert_eq!(refused(validate("main", &allowing, one(role()))), "accepted");
        assert_eq!(
            refused(validate(
                "main",
                &allowing,
                one(object("v1", "Namespace", "other"))
            )),
            "accepted"
        );
    }

    /// A CustomResourceDefinition in the same commit tells the scope of its kind: a kind the CRD
    /// declares `Cluster` is held to the cluster-scoped rules (no namespace defaulted, its kind
    /// must be allowed); a kind declared `Namespaced` goes to the environment's namespace.
    #[test]
    fn a_crd_in_the_commit_decides_whether_its_kind_is_cluster_scoped() {
        let env = Environment {
            namespace: Some("app".into()),
            cluster_scoped_kinds: vec!["CustomResourceDefinition".into()],
            ..Environment::default()
        };
        let crd = |scope: &str| {
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "gadgets.example.com"},
                "spec": {"group": "example.com", "scope": scope,
                         "names": {"kind": "Gadget", "plural": "gadgets"}},
            })
        };
        let with_gadget = |scope: &str| {
            vec![
                manifest(crd(scope), "crd.yaml#1"),
                manifest(object("example.com/v1", "Gadget", "g"), "g.yaml#1"),
            ]
        };
        assert_eq!(
            refused(validate("main", &env, with_gadget("Cluster"))),
            "ClusterScopedNotAllowed"
        );
        let namespaced = validate("main", &env, with_gadget("Namespaced")).unwrap();
        assert_eq!(namespaced[1].object["metadata"]["namespace"], "app");
        let allowing = Environment {
            cluster_scoped_kinds: vec!["CustomResourceDefinition".into(), "Gadget".into()],
            ..env.clone()
        };
        let cluster = validate("main", &allowing, with_gadget("Cluster")).unwrap();
        assert!(cluster[1].object["metadata"].get("namespace").is_none());
    }

    /// A namespaced object goes to the environment's namespace, or to one ship.yaml allows;
    /// any other is refused, whatever else is allowed.
    #[test]
    fn a_namespaced_object_may_name_only_its_environments_or_an_allowed_namespace() {
        let env = Environment {
            namespace: Some("app".into()),
            allowed_namespaces: vec!["shared".into()],
            ..Environment::default()
        };
        let one = |namespace: &str| {
            vec![manifest(
                in_namespace("v1", "ConfigMap", "c", namespace),
                "a.yaml#1",
            )]
        };
        assert_eq!(refused(validate("main", &env, one("app"))), "accepted");
        assert_eq!(refused(validate("main", &env, one("shared"))), "accepted");
        assert_eq!(
            refused(validate("main", &env, one("kube-system"))),
            "NamespaceNotAllowed"
        );
        let defaulted = validate(
            "main",
            &env,
            vec![manifest(object("v1", "ConfigMap", "c"), "a.yaml#1")],
        )
        .unwrap();
        assert_eq!(defaulted[0].object["metadata"]["namespace"], "app");
    }
}
