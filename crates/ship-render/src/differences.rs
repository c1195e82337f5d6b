//! The differences between two environments' rendered objects, field by field, and which of
//! them `ship.yaml` declares: one rule, used by `kubectl ship diff` and by the promotion that
//! refuses undeclared differences. Pure.

use serde_json::Value;

use crate::config::DeclaredDifference;

/// What a hidden namespace reads as.
pub const NAMESPACE: &str = "<namespace>";

/// One field that differs between two environments' objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDifference {
    /// `Kind/name`.
    pub object: String,
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The field, dotted (list items by their `name` when they all have one, else by index);
    /// empty when the whole object is in one environment only.
    pub path: String,
    /// Its value in the first environment (`None`: absent there).
    pub from: Option<String>,
    /// Its value in the second.
    pub to: Option<String>,
}

impl FieldDifference {
    /// `Deployment/web spec.replicas: 1 -> 3`.
    pub fn describe(&self) -> String {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        let field = if self.path.is_empty() {
            String::new()
        } else {
            format!(" {}", self.path)
        };
        format!(
            "{}{field}: {} -> {}",
            self.object,
            show(&self.from),
            show(&self.to)
        )
    }
}

/// Every field that differs between `a` (in namespace `ns_a`) and `b` (in `ns_b`), image tags
/// included, object by object (matched by kind and name). The environments' own namespaces
/// are not differences: each reads as `<namespace>`, as a whole value or as one dotted part of
/// a host name.
pub fn field_differences(a: &[Value], b: &[Value], ns_a: &str, ns_b: &str) -> Vec<FieldDifference> {
    let by_kind_and_name =
        |objects: &[Value], ns: &str| -> std::collections::BTreeMap<(String, String), Value> {
            objects
                .iter()
                .map(|o| {
                    let mut o = o.clone();
                    hide_namespace(&mut o, ns);
                    let kind = o["kind"].as_str().unwrap_or_default().to_owned();
                    let name = o["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                    ((kind, name), o)
                })
                .collect()
        };
    let (a, b) = (by_kind_and_name(a, ns_a), by_kind_and_name(b, ns_b));
    let mut keys: Vec<&(String, String)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let (kind, name) = key;
        let mut found = Vec::new();
        walk(&mut Vec::new(), a.get(key), b.get(key), &mut found);
        for (path, from, to) in found {
            out.push(FieldDifference {
                object: format!("{kind}/{name}"),
                kind: kind.clone(),
                name: name.clone(),
                path,
                from,
                to,
            });
        }
    }
    out
}

/// Each `path` where `a` and `b` differ, with both sides as one-line text.
fn walk(
    path: &mut Vec<String>,
    a: Option<&Value>,
    b: Option<&Value>,
    out: &mut Vec<(String, Option<String>, Option<String>)>,
) {
    let text = |v: Option<&Value>| v.map(|v| serde_json::to_string(v).unwrap_or_default());
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            walk_keyed(path, &keyed(x), &keyed(y), out);
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            // Items that all have a name are matched by it, so a reordered list is no
            // difference and a path says `containers.web`, not `containers.0`.
            match (named(x), named(y)) {
                (Some(x), Some(y)) if !x.is_empty() || !y.is_empty() => walk_keyed(path, &x, &y, out),
                _ => {
                    for i in 0..x.len().max(y.len()) {
                        path.push(i.to_string());
                        walk(path, x.get(i), y.get(i), out);
                        path.pop();
                    }
                }
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push((path.join("."), text(x), text(y))),
    }
}

/// Values by key (an object's fields, or named list items), in key order.
type Keyed<'a> = std::collections::BTreeMap<&'a str, &'a Value>;

/// An object's fields, by name.
fn keyed(map: &serde_json::Map<String, Value>) -> Keyed<'_> {
    map.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

/// A list's items by their `name`, when every item has one.
fn named(items: &[Value]) -> Option<Keyed<'_>> {
    items.iter().map(|i| i["name"].as_str().map(|n| (n, i))).collect()
}

/// [`walk`] into each key of `x` or `y`.
fn walk_keyed(
    path: &mut Vec<String>,
    x: &Keyed<'_>,
    y: &Keyed<'_>,
    out: &mut Vec<(String, Option<String>, Option<String>)>,
) {
    let mut keys: Vec<&str> = x.keys().chain(y.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    for k in keys {
        path.push(k.to_owned());
        walk(path, x.get(k).copied(), y.get(k).copied(), out);
        path.pop();
    }
}

/// One environment's side of a comparison: its rendered objects, its namespace, and the
/// differences its ship.yaml declares.
#[derive(Debug, Clone)]
pub struct Side {
    /// The objects.
    pub objects: Vec<Value>,
    /// The environment's namespace.
    pub namespace: String,
    /// `differences` of its ship.yaml.
    pub declared: Vec<DeclaredDifference>,
}

impl Side {
    /// The side of `environment`, from its render.
    pub fn of(rendered: crate::Rendered, environment: &str) -> Side {
        let namespace = rendered
            .config
            .environments
            .get(environment)
            .map_or(environment, |e| e.namespace(environment))
            .to_owned();
        Side {
            objects: rendered.manifests.into_iter().map(|m| m.object).collect(),
            namespace,
            declared: rendered.config.differences,
        }
    }

    /// Every field that differs between this side and `other` ([`field_differences`]).
    pub fn compare(&self, other: &Side) -> Vec<FieldDifference> {
        field_differences(&self.objects, &other.objects, &self.namespace, &other.namespace)
    }
}

/// The declared difference that covers `difference`, if one does.
pub fn declared_by<'a>(
    difference: &FieldDifference,
    declared: &'a [DeclaredDifference],
) -> Option<&'a DeclaredDifference> {
    declared
        .iter()
        .find(|c| c.covers(&difference.kind, &difference.name, &difference.path))
}

/// The differences no entry of `declared` covers.
pub fn undeclared<'a>(
    differences: &'a [FieldDifference],
    declared: &[DeclaredDifference],
) -> Vec<&'a FieldDifference> {
    differences
        .iter()
        .filter(|d| declared_by(d, declared).is_none())
        .collect()
}

/// The environment's namespace, as a whole string or a dotted part, as `<namespace>`.
pub fn hide_namespace(value: &mut Value, namespace: &str) {
    match value {
        Value::String(text) => {
            if text == namespace {
                *text = NAMESPACE.to_owned();
            } else if text.split('.').any(|part| part == namespace) {
                *text = text
                    .split('.')
                    .map(|part| if part == namespace { NAMESPACE } else { part })
                    .collect::<Vec<_>>()
                    .join(".");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| hide_namespace(v, namespace)),
        Value::Object(map) => map.values_mut().for_each(|v| hide_namespace(v, namespace)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(namespace: &str, image: &str, replicas: u32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": image, "env": [{"name": "API", "value": format!("http://api.{namespace}.svc")}]}
            ]}}}
        })
    }

    #[test]
    fn every_field_that_differs_is_found_and_declared_ones_are_covered() {
        let mut main = deployment("main", "registry:5000/web:abc", 1);
        main["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "DEBUG", "value": "1"}));
        let main = [
            main,
            json!({"kind": "ConfigMap", "metadata": {"name": "only-main", "namespace": "main"}}),
        ];
        let prod = [deployment("production", "registry:5000/web:def", 3)];
        let found = field_differences(&main, &prod, "main", "production");
        let described: Vec<String> = found.iter().map(FieldDifference::describe).collect();
        assert_eq!(
            described,
            [
                "ConfigMap/only-main: {\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"only-main\",\"namespace\":\"<namespace>\"}} -> (absent)",
                "Deployment/web spec.replicas: 1 -> 3",
                "Deployment/web spec.template.spec.containers.web.env.DEBUG: {\"name\":\"DEBUG\",\"value\":\"1\"} -> (absent)",
                "Deployment/web spec.template.spec.containers.web.image: \"registry:5000/web:abc\" -> \"registry:5000/web:def\"",
            ],
            "namespaces (whole and in host names) are not differences; image tags are"
        );
        let declared = [
            DeclaredDifference {
                path: "spec.replicas".into(),
                kind: Some("Deployment".into()),
                ..Default::default()
            },
            DeclaredDifference {
                path: "spec.template.spec.containers.*.image".into(),
                ..Default::default()
            },
        ];
        let undeclared: Vec<&str> = undeclared(&found, &declared)
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(
            declared_by(&found[1], &declared).map(|d| d.path.as_str()),
            Some("spec.replicas")
        );
        assert_eq!(undeclared, ["", "spec.template.spec.containers.web.env.DEBUG"]);
        // A kind or name that does not match covers nothing.
        let other = DeclaredDifference {
            path: "spec.replicas".into(),
            name: Some("api".into()),
            ..Default::default()
        };
        assert!(!other.covers("Deployment", "web", "spec.replicas"));
        assert!(declared[0].covers("Deployment", "web", "spec.replicas"));
        assert!(!declared[0].covers("StatefulSet", "web", "spec.replicas"));
        assert!(field_differences(&prod, &prod, "production", "production").is_empty());
    }
}
