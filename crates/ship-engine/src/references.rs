//! What a release's workloads need from their namespace, found before anything is applied: the
//! Secrets and ConfigMaps named in `env`, `envFrom`, volumes (also projected) and
//! `imagePullSecrets`, and the ServiceAccount. A reference that the commit does not declare, that
//! the cluster does not hold, and that is not marked `optional` fails the release in Pending
//! (`MissingReference`), instead of a Pod waiting out the health timeout for it.
//!
//! Deciding is pure ([`required`], [`missing`]); [`present`] reads names only (metadata lists),
//! never a Secret's data.

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::Value;

/// A kind a workload refers to by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1/Secret`.
    Secret,
    /// `v1/ConfigMap`.
    ConfigMap,
    /// `v1/ServiceAccount`.
    ServiceAccount,
}

impl Kind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::ServiceAccount => "ServiceAccount",
        }
    }
}

/// One object a workload needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace (the workload's).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The workload that needs it, `Kind/namespace/name`.
    pub needed_by: String,
    /// Where, for a person (`env DB_PASSWORD`, `volume certs`, `imagePullSecrets`, ...).
    pub by_way_of: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} needs {}/{}/{} ({})",
            self.needed_by,
            self.kind.as_str(),
            self.namespace,
            self.name,
            self.by_way_of
        )
    }
}

/// The pod spec of a workload object, by kind.
fn pod_spec(object: &Value) -> Option<&Value> {
    let pointer = match object.get("kind")?.as_str()? {
        "Pod" => "/spec",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            "/spec/template/spec"
        }
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    };
    object.pointer(pointer)
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn optional(value: &Value) -> bool {
    value.get("optional").and_then(Value::as_bool).unwrap_or(false)
}

fn items<'a>(value: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Every required (not `optional`) reference of the workloads among `objects`.
pub fn required(objects: &[Value]) -> Vec<Reference> {
    let mut found = Vec::new();
    for object in objects {
        let Some(spec) = pod_spec(object) else { continue };
        let namespace = text(object, "/metadata/namespace").unwrap_or("default");
        let needed_by = format!(
            "{}/{namespace}/{}",
            text(object, "/kind").unwrap_or_default(),
            text(object, "/metadata/name").unwrap_or_default()
        );
        let mut need = |kind: Kind, name: &str, by_way_of: String| {
            found.push(Reference {
                kind,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                needed_by: needed_by.clone(),
                by_way_of,
            });
        };
        let containers = items(spec, "/containers").chain(items(spec, "/initContainers"));
        for container in containers {
            for env in items(container, "/env") {
                let variable = text(env, "/name").unwrap_or_default();
                for (key, kind) in [
                    ("secretKeyRef", Kind::Secret),
                    ("configMapKeyRef", Kind::ConfigMap),
                ] {
                    if let Some(source) = env.pointer(&format!("/valueFrom/{key}"))
                        && !optional(source)
                        && let Some(name) = text(source, "/name")
                    {
                        need(kind, name, format!("env {variable}"));
                    }
                }
            }
            for from in items(container, "/envFrom") {
                for (key, kind) in [("secretRef", Kind::Secret), ("configMapRef", Kind::ConfigMap)] {
                    if let Some(source) = from.get(key)
                        && !optional(source)
                        && let Some(name) = text(source, "/name")
                    {
                        need(kind, name, "envFrom".to_owned());
                    }
                }
            }
        }
        for volume in items(spec, "/volumes") {
            let volume_name = text(volume, "/name").unwrap_or_default();
            if let Some(secret) = volume.get("secret")
                && !optional(secret)
                && let Some(name) = text(secret, "/secretName")
            {
                need(Kind::Secret, name, format!("volume {volume_name}"));
            }
            if let Some(map) = volume.get("configMap")
                && !optional(map)
                && let Some(name) = text(map, "/name")
            {
                need(Kind::ConfigMap, name, format!("volume {volume_name}"));
            }
            for source in items(volume, "/projected/sources") {
                for (key, kind) in [("secret", Kind::Secret), ("configMap", Kind::ConfigMap)] {
                    if let Some(projected) = source.get(key)
                        && !optional(projected)
                        && let Some(name) = text(projected, "/name")
                    {
                        need(kind, name, format!("volume {volume_name}"));
                    }
                }
            }
        }
        for pull in items(spec, "/imagePullSecrets") {
            if let Some(name) = text(pull, "/name") {
                need(Kind::Secret, name, "imagePullSecrets".to_owned());
            }
        }
        // Kubernetes makes `default` in every namespace; any other account must exist.
        let account = text(spec, "/serviceAccountName").or_else(|| text(spec, "/serviceAccount"));
        if let Some(account) = account
            && account != "default"
        {
            need(Kind::ServiceAccount, account, "serviceAccountName".to_owned());
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Controllers that write a Secret for an object in the commit, after the apply: the object's
/// kind, its API group, and where it names the Secret (`None`: the object's own name). Each is
/// the documented field of its project.
const SECRET_PRODUCERS: &[(&str, &str, Option<&str>)] = &[
    // Bitnami Sealed Secrets: the template's name, else the SealedSecret's.
    (
        "SealedSecret",
        "bitnami.com",
        Some("/spec/template/metadata/name"),
    ),
    // External Secrets Operator: the target's name, else the ExternalSecret's.
    ("ExternalSecret", "external-secrets.io", Some("/spec/target/name")),
    // cert-manager: the Certificate's keypair Secret.
    ("Certificate", "cert-manager.io", Some("/spec/secretName")),
    // Vault Secrets Operator: the destination Secret.
    (
        "VaultStaticSecret",
        "secrets.hashicorp.com",
        Some("/spec/destination/name"),
    ),
    (
        "VaultDynamicSecret",
        "secrets.hashicorp.com",
        Some("/spec/destination/name"),
    ),
    (
        "VaultPKISecret",
        "secrets.hashicorp.com",
        Some("/spec/destination/name"),
    ),
    (
        "HCPVaultSecretsApp",
        "secrets.hashicorp.com",
        Some("/spec/destination/name"),
    ),
];

/// The Secret a known controller writes for `object`, by [`SECRET_PRODUCERS`], or by the
/// Crossplane convention any managed resource or claim may use
/// (`spec.writeConnectionSecretToRef`): its namespace (when it names one) and name.
fn produced_secret(object: &Value) -> Option<(Option<&str>, String)> {
    if let Some(name) = text(object, "/spec/writeConnectionSecretToRef/name") {
        return Some((
            text(object, "/spec/writeConnectionSecretToRef/namespace"),
            name.to_owned(),
        ));
    }
    let kind = text(object, "/kind")?;
    let group = text(object, "/apiVersion")
        .and_then(|v| v.split_once('/'))
        .map_or("", |(group, _)| group);
    let (_, _, at) = SECRET_PRODUCERS
        .iter()
        .find(|(k, g, _)| *k == kind && (group.is_empty() || *g == group))?;
    let own = text(object, "/metadata/name");
    let named = at.and_then(|at| text(object, at)).or(own)?;
    Some((None, named.to_owned()))
}

/// What the commit itself makes: (kind, namespace, name) of its Secrets, ConfigMaps and
/// ServiceAccounts, and of the Secrets that controllers of objects in it will write once they
/// are applied ([`SECRET_PRODUCERS`]; the check must count them, or the commit could never
/// deploy: the controller sees its object only after the apply).
pub fn declared(objects: &[Value]) -> BTreeSet<(Kind, String, String)> {
    let mut made = BTreeSet::new();
    for object in objects {
        let namespace = text(object, "/metadata/namespace")
            .unwrap_or("default")
            .to_owned();
        let name = text(object, "/metadata/name").unwrap_or_default().to_owned();
        let kind = match text(object, "/kind").unwrap_or_default() {
            "Secret" => Kind::Secret,
            "ConfigMap" => Kind::ConfigMap,
            "ServiceAccount" => Kind::ServiceAccount,
            _ => {
                if let Some((elsewhere, secret)) = produced_secret(object) {
                    let namespace = elsewhere.map_or(namespace, str::to_owned);
                    made.insert((Kind::Secret, namespace, secret));
                }
                continue;
            }
        };
        made.insert((kind, namespace, name));
    }
    made
}

/// Whether the commit holds custom resources (objects of an API group that is not one of
/// Kubernetes' own): an unknown controller may make what the workloads reference from them.
pub fn holds_custom_resources(objects: &[Value]) -> bool {
    const BUILT_IN: &[&str] = &["", "apps", "batch", "autoscaling", "policy"];
    objects.iter().any(|object| {
        let group = text(object, "/apiVersion")
            .and_then(|v| v.split_once('/'))
            .map_or("", |(group, _)| group);
        !BUILT_IN.contains(&group) && !group.ends_with(".k8s.io")
    })
}

/// What the cluster holds: names by (kind, namespace); a (kind, namespace) that could not be
/// read is absent, and nothing is judged for it.
pub type Present = BTreeMap<(Kind, String), BTreeSet<String>>;

/// The references among `required` that neither `declared` nor `present` satisfies.
pub fn missing(
    required: &[Reference],
    declared: &BTreeSet<(Kind, String, String)>,
    present: &Present,
) -> Vec<Reference> {
    required
        .iter()
        .filter(|r| !declared.contains(&(r.kind, r.namespace.clone(), r.name.clone())))
        .filter(|r| {
            present
                .get(&(r.kind, r.namespace.clone()))
                .is_some_and(|names| !names.contains(&r.name))
        })
        .cloned()
        .collect()
}

/// The names of the `K`s in `namespace`, read as metadata only.
async fn names_of<K>(client: &Client, namespace: &str) -> Result<BTreeSet<String>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let listed = Api::<K>::namespaced(client.clone(), namespace)
        .list_metadata(&ListParams::default())
        .await?;
    Ok(listed.items.into_iter().filter_map(|o| o.metadata.name).collect())
}

/// Names of the Secrets, ConfigMaps and ServiceAccounts in the namespaces `required` names, read
/// as metadata only (a Secret's data never leaves the API server). A list the controller may not
/// read (RBAC) is left out, and its references are not judged.
pub async fn present(client: &Client, required: &[Reference]) -> Result<Present, kube::Error> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
    let wanted: BTreeSet<(Kind, String)> = required.iter().map(|r| (r.kind, r.namespace.clone())).collect();
    let mut present = Present::new();
    for (kind, namespace) in wanted {
        let listed = match kind {
            Kind::Secret => names_of::<Secret>(client, &namespace).await,
            Kind::ConfigMap => names_of::<ConfigMap>(client, &namespace).await,
            Kind::ServiceAccount => names_of::<ServiceAccount>(client, &namespace).await,
        };
        match listed {
            Ok(names) => {
                present.insert((kind, namespace), names);
            }
            Err(kube::Error::Api(status)) if matches!(status.code, 401 | 403) => {
                tracing::debug!(
                    kind = kind.as_str(),
                    namespace,
                    "cannot list; its references are not checked"
                );
            }
            Err(err) => return Err(err),
        }
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(spec: Value) -> Value {
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": spec}}
        })
    }

    fn names(found: &[Reference]) -> Vec<String> {
        found
            .iter()
            .map(|r| format!("{}/{} ({})", r.kind.as_str(), r.name, r.by_way_of))
            .collect()
    }

    #[test]
    fn every_way_a_pod_names_an_object_is_found() {
        let spec = serde_json::json!({
            "serviceAccountName": "shop",
            "imagePullSecrets": [{"name": "registry"}],
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
            "containers": [{
                "name": "web",
                "env": [
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "PLAIN", "value": "x"},
                    {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "maybe", "key": "k", "optional": true}}}
                ],
                "envFrom": [{"secretRef": {"name": "api-keys"}}]
            }],
            "volumes": [
                {"name": "certs", "secret": {"secretName": "tls"}},
                {"name": "conf", "configMap": {"name": "nginx"}},
                {"name": "bundle", "projected": {"sources": [{"secret": {"name": "ca"}}, {"configMap": {"name": "extra", "optional": true}}]}},
                {"name": "scratch", "emptyDir": {}}
            ]
        });
        let found = required(&[deployment(spec)]);
        assert_eq!(
            names(&found),
            [
                "Secret/api-keys (envFrom)",
                "Secret/ca (volume bundle)",
                "Secret/db (env DB_PASSWORD)",
                "Secret/registry (imagePullSecrets)",
                "Secret/tls (volume certs)",
                "ConfigMap/init-env (envFrom)",
                "ConfigMap/nginx (volume conf)",
                "ConfigMap/settings (env MODE)",
                "ServiceAccount/shop (serviceAccountName)",
            ]
        );
        assert!(
            found
                .iter()
                .all(|r| r.needed_by == "Deployment/shop/web" && r.namespace == "shop")
        );
    }

    #[test]
    fn every_workload_kind_is_read_and_the_default_account_is_never_required() {
        let pod_spec = serde_json::json!({"serviceAccountName": "default", "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]});
        let cron = serde_json::json!({"kind": "CronJob", "metadata": {"name": "c", "namespace": "n"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec.clone()}}}}});
        let pod = serde_json::json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "n"}, "spec": pod_spec.clone()});
        let service = serde_json::json!({"kind": "Service", "metadata": {"name": "s", "namespace": "n"}, "spec": pod_spec});
        let found = required(&[cron, pod, service]);
        let by: Vec<&str> = found.iter().map(|r| r.needed_by.as_str()).collect();
        assert_eq!(by, ["CronJob/n/c", "Pod/n/p"]);
        assert!(found.iter().all(|r| r.kind == Kind::Secret));
    }

    #[test]
    fn secrets_that_known_controllers_make_from_the_commit_are_declared() {
        let objects = vec![
            serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": "shop-tls", "namespace": "shop"}, "spec": {"secretName": "shop-tls-keypair"}}),
            serde_json::json!({"apiVersion": "secrets.hashicorp.com/v1beta1", "kind": "VaultStaticSecret",
                "metadata": {"name": "db", "namespace": "shop"}, "spec": {"destination": {"name": "db-creds", "create": true}}}),
            serde_json::json!({"apiVersion": "database.example.org/v1alpha1", "kind": "PostgreSQLInstance",
                "metadata": {"name": "orders", "namespace": "shop"},
                "spec": {"writeConnectionSecretToRef": {"name": "orders-conn"}}}),
            serde_json::json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
                "metadata": {"name": "api-key", "namespace": "shop"}}),
            // Same kind name, another project's group: not a known producer.
            serde_json::json!({"apiVersion": "example.com/v1", "kind": "Certificate",
                "metadata": {"name": "other", "namespace": "shop"}, "spec": {"secretName": "not-made"}}),
        ];
        let made = declared(&objects);
        for secret in ["shop-tls-keypair", "db-creds", "orders-conn", "api-key"] {
            assert!(
                made.contains(&(Kind::Secret, "shop".into(), secret.into())),
                "{secret}: {made:?}"
            );
        }
        assert!(!made.contains(&(Kind::Secret, "shop".into(), "not-made".into())));
        assert!(holds_custom_resources(&objects));
        let built_in = vec![
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
            serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress"}),
            serde_json::json!({"apiVersion": "v1", "kind": "Service"}),
        ];
        assert!(!holds_custom_resources(&built_in));
    }

    #[test]
    fn what_the_commit_or_the_cluster_holds_is_not_missing() {
        let spec = serde_json::json!({"containers": [{"name": "web", "envFrom": [
            {"secretRef": {"name": "in-git-sealed"}}, {"secretRef": {"name": "external"}},
            {"secretRef": {"name": "by-hand"}}, {"secretRef": {"name": "nowhere"}},
            {"configMapRef": {"name": "rendered"}}, {"configMapRef": {"name": "unreadable"}}
        ]}]});
        let objects = vec![
            deployment(spec),
            serde_json::json!({"kind": "SealedSecret", "metadata": {"name": "in-git-sealed", "namespace": "shop"}}),
            serde_json::json!({"kind": "ExternalSecret", "metadata": {"name": "es", "namespace": "shop"},
                "spec": {"target": {"name": "external"}}}),
            serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "rendered", "namespace": "shop"}}),
        ];
        let need = required(&objects);
        let made = declared(&objects);
        let mut present = Present::new();
        present.insert((Kind::Secret, "shop".into()), ["by-hand".to_owned()].into());
        // ConfigMaps of shop could not be listed: nothing is judged for them.
        let gone = missing(&need, &made, &present);
        assert_eq!(names(&gone), ["Secret/nowhere (envFrom)"]);
        assert_eq!(
            gone[0].to_string(),
            "Deployment/shop/web needs Secret/shop/nowhere (envFrom)"
        );
    }
}
