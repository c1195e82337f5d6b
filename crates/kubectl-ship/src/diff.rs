//! Pure: two environments' rendered objects as comparable text, and their unified diff (the
//! field-by-field differences and which are declared live in `ship_render::differences`). The
//! expected differences between two stacks (their namespaces, their image tags) can be hidden,
//! so what remains are the differences to eliminate.

use serde_json::Value;

/// The objects as one YAML stream, sorted by kind and name, each headed by a comment naming
/// it, so that the two environments line up object by object.
pub fn documents(objects: &[Value], namespace: &str, hide_expected: bool) -> String {
    let mut docs: Vec<(String, String)> = objects
        .iter()
        .map(|object| {
            let mut object = object.clone();
            if hide_expected {
                hide(&mut object, namespace, None);
            }
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let yaml = serde_norway::to_string(&object).unwrap_or_default();
            (format!("{kind}/{name}"), yaml)
        })
        .collect();
    docs.sort();
    docs.into_iter()
        .map(|(id, yaml)| format!("# {id}\n{yaml}"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Replaces the environment's namespace (as a whole value, or as one dotted part of a host
/// name such as `web.<namespace>.svc`) and the tag or digest of every `image`.
fn hide(value: &mut Value, namespace: &str, key: Option<&str>) {
    match value {
        Value::String(text) if key == Some("image") => *text = hide_tag(text),
        Value::String(_) => ship_render::differences::hide_namespace(value, namespace),
        Value::Array(items) => items.iter_mut().for_each(|v| hide(v, namespace, key)),
        Value::Object(map) => map.iter_mut().for_each(|(k, v)| hide(v, namespace, Some(k))),
        _ => {}
    }
}

/// `registry:5000/app:1.2` → `registry:5000/app:<tag>`; `app@sha256:…` → `app@<digest>`.
fn hide_tag(image: &str) -> String {
    if let Some((name, _)) = image.split_once('@') {
        return format!("{name}@<digest>");
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => format!("{}:<tag>", &image[..last_slash + colon]),
        None => image.to_owned(),
    }
}

/// The unified diff of `a` and `b` (3 lines of context), or `None` when they are equal.
pub fn unified(a: &str, b: &str, label_a: &str, label_b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let diff = similar::TextDiff::from_lines(a, b);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(label_a, label_b)
            .to_string(),
    )
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
    fn expected_differences_hide_and_real_ones_stay() {
        let main = [deployment("main", "registry:5000/web:abc", 1)];
        let prod = [deployment("production", "registry:5000/web:def", 3)];
        let full = unified(
            &documents(&main, "main", false),
            &documents(&prod, "production", false),
            "main",
            "production",
        )
        .unwrap();
        assert!(
            full.contains("-  namespace: main") && full.contains("+  namespace: production"),
            "{full}"
        );
        assert!(full.contains("web:abc"));

        let hidden = unified(
            &documents(&main, "main", true),
            &documents(&prod, "production", true),
            "main",
            "production",
        )
        .unwrap();
        // Only the replica count differs once namespace and tags are hidden.
        let changed: Vec<&str> = hidden
            .lines()
            .filter(|l| {
                (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++")
            })
            .collect();
        assert_eq!(changed, ["-  replicas: 1", "+  replicas: 3"], "{hidden}");
        let doc = documents(&prod, "production", true);
        assert!(doc.contains("registry:5000/web:<tag>"), "{doc}");
        assert!(doc.contains("http://api.<namespace>.svc"), "{doc}");
    }

    #[test]
    fn equal_stacks_have_no_diff_and_objects_line_up_by_name() {
        let a = [
            json!({"kind": "ConfigMap", "metadata": {"name": "b"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
        ];
        let b = [a[1].clone(), a[0].clone()];
        assert_eq!(
            unified(&documents(&a, "x", true), &documents(&b, "x", true), "a", "b"),
            None
        );
        assert!(documents(&a, "x", false).starts_with("# ConfigMap/a\n"));
    }

    #[test]
    fn image_tags_and_digests() {
        assert_eq!(hide_tag("registry:5000/app:1.2"), "registry:5000/app:<tag>");
        assert_eq!(hide_tag("registry:5000/app"), "registry:5000/app");
        assert_eq!(hide_tag("app@sha256:0123"), "app@<digest>");
        assert_eq!(hide_tag("nginx"), "nginx");
    }
}
