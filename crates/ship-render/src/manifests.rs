//! Rendering one environment's manifests from a checked-out tree: a plain directory of YAML/JSON
//! files, or a kustomization. Multi-document YAML, `kind: List`, comments and CRLF all work.
//! Everything read is bounded (file size, total size, file count, object count) and every path
//! read must resolve inside the tree.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::RenderError;
pub use crate::limits::Limits;

/// One rendered object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The object, as JSON.
    pub object: Value,
    /// File (relative to the tree root) and document number, e.g. `deploy/main/app.yaml#2`.
    pub source: String,
}

const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Renders the manifests under `path` (relative to `root`).
pub fn render(
    tools: &dyn crate::tools::Renderer,
    root: &Path,
    path: &str,
    limits: &Limits,
) -> Result<Vec<Manifest>, RenderError> {
    render_with_vars(tools, root, path, limits, None)
}

/// Renders the manifests under `path` (relative to `root`), substituting `vars` into each
/// file's text (or kustomize's output) before it is read as YAML, when there are any.
pub fn render_with_vars(
    tools: &dyn crate::tools::Renderer,
    root: &Path,
    path: &str,
    limits: &Limits,
    vars: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Vec<Manifest>, RenderError> {
    let substituted = |text: String, source: &str| -> Result<String, RenderError> {
        Ok(match vars {
            Some(vars) => crate::vars::substitute(&text, vars, source)?,
            None => text,
        })
    };
    let (root, dir) = resolve(root, path)?;
    if !dir.is_dir() {
        return Err(RenderError::MissingPath {
            path: path.to_owned(),
        });
    }
    if KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file()) {
        let output = kustomize(tools, &dir, path, limits)?;
        let source = format!("{path} (kustomize)");
        return parse_documents(&substituted(output, &source)?, &source, limits);
    }
    let mut files = Vec::new();
    collect_files(&root, &dir, limits, &mut files)?;
    files.sort();
    let mut manifests = Vec::new();
    let mut total = 0u64;
    for file in files {
        let rel = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let size = std::fs::metadata(&file)
            .map_err(|e| RenderError::Io {
                path: rel.clone(),
                message: e.to_string(),
            })?
            .len();
        if size > limits.max_file_bytes {
            return Err(RenderError::FileTooLarge {
                path: rel,
                size,
                limit: limits.max_file_bytes,
            });
        }
        total += size;
        if total > limits.max_total_bytes {
            return Err(RenderError::TooLarge {
                limit: limits.max_total_bytes,
            });
        }
        let text = std::fs::read_to_string(&file).map_err(|e| RenderError::Io {
            path: rel.clone(),
            message: e.to_string(),
        })?;
        let text = substituted(text, &rel)?;
        manifests.extend(parse_documents(&text, &rel, limits)?);
        if manifests.len() > limits.max_objects {
            return Err(RenderError::TooManyObjects {
                limit: limits.max_objects,
            });
        }
    }
    Ok(manifests)
}

/// The regular file at `path` (relative to `root`), if it resolves inside the tree and is
/// within the per-file size limit.
pub fn file_inside(root: &Path, path: &str, limits: &Limits) -> Result<PathBuf, RenderError> {
    let (_, file) = resolve(root, path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if !file.is_file() {
        return Err(RenderError::MissingPath {
            path: path.to_owned(),
        });
    }
    if size > limits.max_file_bytes {
        return Err(RenderError::FileTooLarge {
            path: path.to_owned(),
            size,
            limit: limits.max_file_bytes,
        });
    }
    Ok(file)
}

/// The canonical `root`, and `path` under it with symlinks resolved, if it exists and stays
/// inside the tree.
pub(crate) fn resolve(root: &Path, path: &str) -> Result<(PathBuf, PathBuf), RenderError> {
    let root = root.canonicalize().map_err(|e| RenderError::Io {
        path: ".".into(),
        message: e.to_string(),
    })?;
    let candidate = root.join(path);
    if !candidate.exists() {
        return Err(RenderError::MissingPath {
            path: path.to_owned(),
        });
    }
    let resolved = inside(&root, &candidate, path)?;
    Ok((root, resolved))
}

/// `candidate` with symlinks resolved, if it stays inside `root`.
fn inside(root: &Path, candidate: &Path, shown: &str) -> Result<PathBuf, RenderError> {
    let resolved = candidate.canonicalize().map_err(|e| RenderError::Io {
        path: shown.to_owned(),
        message: e.to_string(),
    })?;
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(RenderError::PathEscape {
            path: shown.to_owned(),
        })
    }
}

fn collect_files(
    root: &Path,
    dir: &Path,
    limits: &Limits,
    out: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    let manifest = |name: &str| {
        !name.starts_with('.')
            && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
    };
    collect(root, dir, limits, &|name| name.starts_with('.'), &manifest, out)
}

/// Every file under `dir` (a chart, which a renderer reads whole): each path, symlinks
/// resolved, must stay inside `root`, and there may be at most `limits.max_files`.
pub(crate) fn walk_inside(
    root: &Path,
    dir: &Path,
    limits: &Limits,
    out: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    collect(root, dir, limits, &|_| false, &|_| true, out)
}

/// The files under `dir` that `keep` names, skipping entries `skip` names, each resolved
/// inside `root`.
fn collect(
    root: &Path,
    dir: &Path,
    limits: &Limits,
    skip: &dyn Fn(&str) -> bool,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    let shown = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| RenderError::Io {
        path: shown(dir),
        message: e.to_string(),
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| RenderError::Io {
            path: shown(dir),
            message: e.to_string(),
        })?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip(&name) {
            continue;
        }
        let resolved = inside(root, &path, &shown(&path))?;
        if resolved.is_dir() {
            collect(root, &resolved, limits, skip, keep, out)?;
        } else if keep(&name) {
            out.push(resolved);
            if out.len() > limits.max_files {
                return Err(RenderError::TooManyFiles {
                    limit: limits.max_files,
                });
            }
        }
    }
    Ok(())
}

/// Parses a stream of YAML (or JSON) documents into objects, expanding `kind: List`.
pub fn parse_documents(text: &str, source: &str, limits: &Limits) -> Result<Vec<Manifest>, RenderError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc_source = format!("{source}#{}", index + 1);
        let value: Value = serde::Deserialize::deserialize(document).map_err(|e| RenderError::Yaml {
            origin: doc_source.clone(),
            message: e.to_string(),
        })?;
        match value {
            Value::Null => continue, // an empty document, or comments only
            Value::Object(ref map) if is_list(map) => {
                let items = map
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (i, item) in items.into_iter().enumerate() {
                    out.push(Manifest {
                        object: item,
                        source: format!("{doc_source}/items/{i}"),
                    });
                }
            }
            Value::Object(_) => out.push(Manifest {
                object: value,
                source: doc_source,
            }),
            _ => return Err(RenderError::NotAnObject { origin: doc_source }),
        }
        if out.len() > limits.max_objects {
            return Err(RenderError::TooManyObjects {
                limit: limits.max_objects,
            });
        }
    }
    Ok(out)
}

fn is_list(map: &serde_json::Map<String, Value>) -> bool {
    map.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && map.get("items").is_some_and(Value::is_array)
}

fn kustomize(
    tools: &dyn crate::tools::Renderer,
    dir: &Path,
    shown: &str,
    limits: &Limits,
) -> Result<String, RenderError> {
    tools
        .kustomize_build(dir, limits)
        .map_err(|failure| match failure {
            ToolFailure::Unavailable => RenderError::KustomizeUnavailable {
                path: shown.to_owned(),
            },
            ToolFailure::TooLarge => RenderError::TooLarge {
                limit: limits.max_total_bytes,
            },
            ToolFailure::Failed(message) => RenderError::Kustomize {
                path: shown.to_owned(),
                message,
            },
        })
}

use crate::tools::ToolFailure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_lists_comments_crlf_and_json() {
        let text = "# leading comment\r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata: {name: a}\r\n---\r\n# only a comment\r\n---\r\napiVersion: v1\r\nkind: List\r\nitems:\r\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\r\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\r\n";
        let m = parse_documents(text, "x.yaml", &Limits::default()).unwrap();
        let names: Vec<_> = m
            .iter()
            .map(|m| m.object["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(m[1].source, "x.yaml#3/items/0");
        let json = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"}}"#;
        assert_eq!(
            parse_documents(json, "j.json", &Limits::default()).unwrap().len(),
            1
        );
        let bom = "\u{feff}apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bom}\n";
        assert_eq!(
            parse_documents(bom, "b.yaml", &Limits::default()).unwrap().len(),
            1
        );
    }

    #[test]
    fn scalars_are_not_objects() {
        let err = parse_documents("just a string\n", "s.yaml", &Limits::default()).unwrap_err();
        assert_eq!(err.label(), "NotAnObject");
    }

    #[test]
    fn alias_bombs_are_refused_with_bounded_memory() {
        let mut bomb =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (p, cur) = (pair[0], pair[1]);
            bomb.push_str(&format!(
                "{cur}: &{cur} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
            ));
        }
        let err = parse_documents(&bomb, "bomb.yaml", &Limits::default()).unwrap_err();
        assert_eq!(err.label(), "InvalidYaml", "{err}");
        assert!(err.to_string().contains("repetition limit"), "{err}");
    }
}
