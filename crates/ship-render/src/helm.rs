//! Helm charts kept in the repository, rendered the way `helm template` renders them, from git
//! alone: the chart directory, its vendored dependencies (`charts/`), the values files and
//! inline values ship.yaml names for the environment, and nothing else. No repository is
//! fetched, no cluster is asked (`lookup` is refused), and Helm's release Secrets are not
//! used: the objects go through Ship's validation, apply, inventory and prune like any other
//! rendering.
//!
//! - Values: the files, in order, then the inline values, merged as Helm merges `-f` files
//!   (maps deeply, anything else replaced; `null` removes a chart default) by [`merge_values`].
//! - Hooks: `test` (and Helm 2's `test-success`) become Ship Job tests of the environment,
//!   named after the object (a Pod is wrapped in a Job); every other hook is refused, since
//!   Ship has no install, upgrade or delete phase to run it in.
//! - `helm.sh/resource-policy: keep` becomes `ship.dev/prune: disabled`.
//! - `.Capabilities.KubeVersion` and `.Capabilities.APIVersions` come from ship.yaml
//!   (`kubeVersion`, `apiVersions`), so one commit renders the same objects everywhere.
//!
//! The checks before `helm` runs are pure; [`render`] runs the pinned `helm` binary
//! (`SHIP_HELM`, else `helm` on `PATH`) with a private, empty Helm home.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifests::{self, Limits, Manifest};

/// `environments.<name>.helm` in ship.yaml: the chart an environment renders.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmChart {
    /// The chart's directory, relative to the repository root (it holds `Chart.yaml`).
    /// Example: `charts/shop`.
    pub chart: String,
    /// The Helm release name (`.Release.Name`). Default: the environment's name. Example: `shop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the repository root, merged in order over the chart's own
    /// `values.yaml`. Example: `[charts/shop/values-production.yaml]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values, merged last. Example: `{replicaCount: 3}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<BTreeMap<String, Value>>,
    /// `.Capabilities.KubeVersion` (`helm template --kube-version`), e.g. `"1.20.2"`: set it to
    /// the cluster's version when the chart chooses API versions by it. Default: Helm's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    /// Extra `.Capabilities.APIVersions` (`helm template --api-versions`), e.g.
    /// `[monitoring.coreos.com/v1]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
}

impl HelmChart {
    /// The release name, defaulted.
    pub fn release_name<'a>(&'a self, environment: &'a str) -> &'a str {
        self.release_name.as_deref().unwrap_or(environment)
    }
}

/// Why a chart cannot be rendered. Each message names the chart (or file) and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelmError {
    /// The chart directory has no Chart.yaml, or one that does not parse.
    #[error("{chart}: not a Helm chart: {problem}")]
    NotAChart {
        /// The chart's path.
        chart: String,
        /// What is wrong.
        problem: String,
    },
    /// A dependency Chart.yaml lists is not vendored in `charts/`.
    #[error(
        "{chart}: dependency {name:?} ({version}{repository}) is not in {chart}/charts/: Ship renders without network access. \
         Run `helm dependency build {chart}` and commit {chart}/charts/"
    )]
    MissingDependency {
        /// The chart (or subchart) path.
        chart: String,
        /// The dependency's name.
        name: String,
        /// Its version constraint.
        version: String,
        /// ` from <repository>`, or empty.
        repository: String,
    },
    /// A template calls `lookup`, which needs the cluster at render time.
    #[error(
        "{file}:{line}: calls `lookup`, which reads the cluster at render time: Ship renders from git alone (like \
         `helm template`, where lookup finds nothing). Take the value from values instead"
    )]
    Lookup {
        /// The template file.
        file: String,
        /// The line, from 1.
        line: usize,
    },
    /// A hook Ship has no phase for.
    #[error(
        "{origin}: {kind}/{name} is a Helm {hook:?} hook: Ship applies a chart as one set of objects and has no install, \
         upgrade, rollback or delete phase to run it in. Only `test` hooks are run (as Ship tests); drop the \
         helm.sh/hook annotation to deploy it as an ordinary object, or disable it in values"
    )]
    UnsupportedHook {
        /// File and document.
        origin: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// The hook annotation's value.
        hook: String,
    },
    /// A test hook Ship cannot run as a Job.
    #[error("{origin}: test hook {kind}/{name} must be a Pod or a batch/v1 Job to run as a Ship test")]
    UnsupportedTestHook {
        /// File and document.
        origin: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// A test hook named like a test of ship.yaml.
    #[error("{origin}: test hook {name:?} has the name of a test in ship.yaml; rename one of them")]
    TestNameTaken {
        /// File and document.
        origin: String,
        /// The name.
        name: String,
    },
    /// A values file that is not a mapping of YAML.
    #[error("{file}: not a values file: {problem}")]
    Values {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// No `helm` binary.
    #[error(
        "{chart}: is a Helm chart, but no `helm` is installed to render it (set SHIP_HELM or put helm on PATH)"
    )]
    Unavailable {
        /// The chart's path.
        chart: String,
    },
    /// `helm template` failed.
    #[error("{chart}: helm template failed: {message}")]
    Failed {
        /// The chart's path.
        chart: String,
        /// Helm's message.
        message: String,
    },
}

impl HelmError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            HelmError::NotAChart { .. } => "NotAChart",
            HelmError::MissingDependency { .. } => "ChartDependencyMissing",
            HelmError::Lookup { .. } => "ChartLookup",
            HelmError::UnsupportedHook { .. } => "ChartHookUnsupported",
            HelmError::UnsupportedTestHook { .. } => "ChartTestHookUnsupported",
            HelmError::TestNameTaken { .. } => "ChartTestNameTaken",
            HelmError::Values { .. } => "InvalidValues",
            HelmError::Unavailable { .. } => "HelmUnavailable",
            HelmError::Failed { .. } => "HelmFailed",
        }
    }
}

/// Merges `over` into `base` as Helm merges values files (`helm -f a.yaml -f b.yaml`): where
/// both hold a map the maps merge key by key, anything else in `over` replaces what `base`
/// holds (a `null` stays, and later removes the chart's default). Pure.
pub fn merge_values(base: &mut serde_json::Map<String, Value>, over: serde_json::Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(mine)), Value::Object(theirs)) => merge_values(mine, theirs),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Parses a values file's text: a YAML mapping (an empty file is no values).
pub fn parse_values(text: &str, file: &str) -> Result<serde_json::Map<String, Value>, HelmError> {
    let problem = |problem: String| HelmError::Values {
        file: file.to_owned(),
        problem,
    };
    match serde_norway::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(serde_json::Map::new()),
        Ok(_) => Err(problem("the top level must be a mapping of values".into())),
        Err(e) => Err(problem(e.to_string())),
    }
}

/// What `Chart.yaml` (and a v1 chart's `requirements.yaml`) says that Ship checks.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartMeta {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    chart_type: Option<String>,
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

#[derive(Debug, Default, Deserialize)]
struct Dependency {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    repository: String,
}

fn read_meta(dir: &Path, shown: &str) -> Result<ChartMeta, HelmError> {
    let not_a_chart = |problem: String| HelmError::NotAChart {
        chart: shown.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(dir.join("Chart.yaml"))
        .map_err(|_| not_a_chart("it has no Chart.yaml".into()))?;
    let mut meta: ChartMeta =
        serde_norway::from_str(&text).map_err(|e| not_a_chart(format!("Chart.yaml: {e}")))?;
    if meta.name.is_empty() {
        return Err(not_a_chart("Chart.yaml has no name".into()));
    }
    // A v1 chart keeps its dependencies in requirements.yaml.
    if let Ok(text) = std::fs::read_to_string(dir.join("requirements.yaml")) {
        #[derive(Deserialize)]
        struct Requirements {
            #[serde(default)]
            dependencies: Vec<Dependency>,
        }
        let requirements: Requirements =
            serde_norway::from_str(&text).map_err(|e| not_a_chart(format!("requirements.yaml: {e}")))?;
        meta.dependencies.extend(requirements.dependencies);
    }
    Ok(meta)
}

/// Checks the chart at `dir` (shown as `shown`) and its directory subcharts, before `helm`
/// runs: every dependency vendored, no template calling `lookup`. Pure but for reading files.
fn check_chart(dir: &Path, shown: &str) -> Result<ChartMeta, HelmError> {
    let meta = read_meta(dir, shown)?;
    let vendored = dir.join("charts");
    let mut subcharts: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut packaged: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&vendored).into_iter().flatten().flatten() {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let sub_shown = format!("{shown}/charts/{file_name}");
            let sub = check_chart(&path, &sub_shown)?;
            subcharts.insert(sub.name.clone(), path);
        } else if let Some(stem) = file_name.strip_suffix(".tgz") {
            packaged.push(stem.to_owned());
        }
    }
    for dependency in &meta.dependencies {
        // A packaged dependency is named <name>-<version>.tgz, as `helm dependency build` writes it.
        let in_package = packaged.iter().any(|stem| {
            stem.strip_prefix(&dependency.name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit() || c == 'v'))
        });
        if !subcharts.contains_key(&dependency.name) && !in_package {
            return Err(HelmError::MissingDependency {
                chart: shown.to_owned(),
                name: dependency.name.clone(),
                version: if dependency.version.is_empty() {
                    "any version".into()
                } else {
                    format!("version {}", dependency.version)
                },
                repository: if dependency.repository.is_empty() {
                    String::new()
                } else {
                    format!(" from {}", dependency.repository)
                },
            });
        }
    }
    // A library chart's defines run only where an application template includes them.
    if meta.chart_type.as_deref() != Some("library") {
        let templates = dir.join("templates");
        let mut files = Vec::new();
        template_files(&templates, &mut files);
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Some(line) = lookup_line(&text) {
                let rel = file.strip_prefix(dir).unwrap_or(&file).display().to_string();
                return Err(HelmError::Lookup {
                    file: format!("{shown}/{rel}"),
                    line,
                });
            }
        }
    }
    Ok(meta)
}

fn template_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            template_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The line (from 1) of the first call of `lookup` inside a template action (`{{ ... }}`), if
/// any: words in string literals and comments do not count. Pure.
pub fn lookup_line(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(open) = text[at..].find("{{").map(|i| at + i) {
        let mut i = open + 2;
        // Inside one action: skip literals and comments, find the closing braces.
        let mut word_start: Option<usize> = None;
        loop {
            let &b = bytes.get(i)?;
            let is_word = b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$';
            match (is_word, word_start) {
                (true, None) => word_start = Some(i),
                (false, Some(start)) => {
                    if &text[start..i] == "lookup" {
                        return Some(text[..start].matches('\n').count() + 1);
                    }
                    word_start = None;
                }
                _ => {}
            }
            if is_word {
                i += 1;
                continue;
            }
            match b {
                b'"' | b'\'' => i = skip_quoted(bytes, i, b),
                b'`' => {
                    i = bytes[i + 1..]
                        .iter()
                        .position(|&c| c == b'`')
                        .map_or(bytes.len(), |p| i + p + 2)
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    i = text[i + 2..].find("*/").map_or(bytes.len(), |p| i + p + 4);
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => break,
                _ => i += 1,
            }
        }
        at = i + 2;
    }
    None
}

/// The index after the literal quoted by `quote` that starts at `start`.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The objects and the Ship tests a chart renders to.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedChart {
    /// The objects to deploy (hooks removed).
    pub manifests: Vec<Manifest>,
    /// The chart's test hooks, as Job objects, each with where it came from.
    pub tests: Vec<Manifest>,
}

pub use crate::tools::{helm_binary, helm_version};

/// Renders `chart` for environment `environment` into `namespace`, from the tree at `root`.
pub fn render(
    tools: &dyn crate::tools::Renderer,
    root: &Path,
    chart: &HelmChart,
    environment: &str,
    namespace: &str,
    limits: &Limits,
) -> Result<RenderedChart, crate::RenderError> {
    let (root, dir) = manifests::resolve(root, &chart.chart)?;
    if !dir.is_dir() {
        return Err(crate::RenderError::MissingPath {
            path: chart.chart.clone(),
        });
    }
    // Helm follows symlinks; every one must stay inside the repository.
    let mut files = Vec::new();
    manifests::walk_inside(&root, &dir, limits, &mut files)?;
    let meta = check_chart(&dir, &chart.chart)?;
    let mut values = serde_json::Map::new();
    for file in &chart.values_files {
        let path = manifests::file_inside(&root, file, limits)?;
        let text = std::fs::read_to_string(&path).map_err(|e| crate::RenderError::Io {
            path: file.clone(),
            message: e.to_string(),
        })?;
        merge_values(&mut values, parse_values(&text, file)?);
    }
    if let Some(inline) = &chart.values {
        merge_values(&mut values, inline.clone().into_iter().collect());
    }
    let values = Value::Object(values).to_string();
    let run = crate::tools::HelmTemplate {
        release: chart.release_name(environment),
        chart_dir: &dir,
        namespace,
        values_json: &values,
        kube_version: chart.kube_version.as_deref(),
        api_versions: &chart.api_versions,
    };
    let output = tools
        .helm_template(&run, limits)
        .map_err(|failure| match failure {
            crate::tools::ToolFailure::Unavailable => HelmError::Unavailable {
                chart: chart.chart.clone(),
            }
            .into(),
            crate::tools::ToolFailure::TooLarge => crate::RenderError::TooLarge {
                limit: limits.max_total_bytes,
            },
            crate::tools::ToolFailure::Failed(message) => HelmError::Failed {
                chart: chart.chart.clone(),
                message,
            }
            .into(),
        })?;
    let mut rendered = RenderedChart {
        manifests: Vec::new(),
        tests: Vec::new(),
    };
    for (source, document) in split_sources(&output, &meta.name, &chart.chart) {
        for mut manifest in manifests::parse_documents(document, &source, limits)? {
            keep_resource_policy(&mut manifest.object);
            match hook_of(&manifest.object) {
                None => rendered.manifests.push(manifest),
                Some(hook) => rendered.tests.push(test_job(manifest, &hook)?),
            }
        }
        if rendered.manifests.len() + rendered.tests.len() > limits.max_objects {
            return Err(crate::RenderError::TooManyObjects {
                limit: limits.max_objects,
            });
        }
    }
    Ok(rendered)
}

/// `helm template`'s output cut at its `# Source: <chart name>/<file>` comments, each piece
/// named by its file in the repository (`<chart path>/<file>`).
fn split_sources<'a>(output: &'a str, chart_name: &str, chart_path: &str) -> Vec<(String, &'a str)> {
    let mut pieces = Vec::new();
    for document in output.split("\n---") {
        let source = document
            .lines()
            .find_map(|l| l.strip_prefix("# Source: "))
            .map(
                |s| match s.strip_prefix(chart_name).and_then(|r| r.strip_prefix('/')) {
                    Some(rest) => format!("{chart_path}/{rest}"),
                    None => format!("{chart_path} ({s})"),
                },
            )
            .unwrap_or_else(|| format!("{chart_path} (helm template)"));
        pieces.push((source, document));
    }
    pieces
}

const HOOK: &str = "helm.sh/hook";
const TEST_HOOKS: [&str; 2] = ["test", "test-success"];

fn hook_of(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .and_then(|a| a.get(HOOK))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Helm's "keep on uninstall" is Ship's "never prune".
fn keep_resource_policy(object: &mut Value) {
    let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if annotations.get("helm.sh/resource-policy").and_then(Value::as_str) == Some("keep")
        && !annotations.contains_key(SHIP_PRUNE)
    {
        annotations.insert(SHIP_PRUNE.into(), Value::String("disabled".into()));
    }
}

/// ship-api's `keys::PRUNE` (this crate of pure functions does not depend on the API types).
const SHIP_PRUNE: &str = "ship.dev/prune";

/// A test hook as the Job Ship runs; any other hook refused.
fn test_job(manifest: Manifest, hook: &str) -> Result<Manifest, HelmError> {
    let kind = manifest.object["kind"].as_str().unwrap_or_default().to_owned();
    let name = manifest.object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let hooks: Vec<&str> = hook.split(',').map(str::trim).collect();
    if !hooks.iter().all(|h| TEST_HOOKS.contains(h)) {
        return Err(HelmError::UnsupportedHook {
            origin: manifest.source,
            kind,
            name,
            hook: hook.to_owned(),
        });
    }
    let mut object = manifest.object;
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.retain(|key, _| !key.starts_with("helm.sh/hook"));
    }
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let job = match (api_version, kind.as_str()) {
        ("batch/v1", "Job") => object,
        ("v1", "Pod") => {
            let mut pod_spec = object
                .get("spec")
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            // A Job's Pods may not restart in place; a test runs once.
            if !matches!(pod_spec["restartPolicy"].as_str(), Some("Never" | "OnFailure")) {
                pod_spec["restartPolicy"] = Value::String("Never".into());
            }
            let mut template_meta = serde_json::Map::new();
            if let Some(labels) = object.pointer("/metadata/labels") {
                template_meta.insert("labels".into(), labels.clone());
            }
            serde_json::json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": object["metadata"].clone(),
                "spec": {
                    "backoffLimit": 0,
                    "template": {"metadata": template_meta, "spec": pod_spec},
                },
            })
        }
        _ => {
            return Err(HelmError::UnsupportedTestHook {
                origin: manifest.source,
                kind,
                name,
            });
        }
    };
    Ok(Manifest {
        object: job,
        source: manifest.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// A renderer that answers every `helm template` with `output` and keeps what it was asked:
    /// the chart pipeline (values, sources, hooks, limits) tested without starting a process.
    struct Canned {
        output: &'static str,
        asked: std::sync::Mutex<Vec<Asked>>,
    }

    /// Release, namespace, values (JSON) and kube version of one `helm template`.
    type Asked = (String, String, String, Option<String>);

    impl crate::tools::Renderer for Canned {
        fn helm_template(
            &self,
            run: &crate::tools::HelmTemplate<'_>,
            _: &Limits,
        ) -> Result<String, crate::tools::ToolFailure> {
            self.asked.lock().unwrap().push((
                run.release.to_owned(),
                run.namespace.to_owned(),
                run.values_json.to_owned(),
                run.kube_version.map(str::to_owned),
            ));
            Ok(self.output.to_owned())
        }

        fn kustomize_build(&self, _: &Path, _: &Limits) -> Result<String, crate::tools::ToolFailure> {
            Err(crate::tools::ToolFailure::Unavailable)
        }
    }

    #[test]
    fn a_chart_renders_through_the_renderer_split_by_source_with_its_test_hooks_apart() {
        let root = tempfile::tempdir().unwrap();
        let chart_dir = root.path().join("charts/shop");
        std::fs::create_dir_all(&chart_dir).unwrap();
        std::fs::write(
            chart_dir.join("Chart.yaml"),
            "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("prod.yaml"),
            "replicas: 2\nimage: {tag: '1.0'}\n",
        )
        .unwrap();
        let canned = Canned {
            output: "---\n# Source: shop/templates/web.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n\
                     ---\n# Source: shop/templates/tests/smoke.yaml\napiVersion: batch/v1\nkind: Job\n\
                     metadata: {name: smoke, annotations: {helm.sh/hook: test}}\n\
                     spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: busybox}]}}}\n",
            asked: std::sync::Mutex::default(),
        };
        let chart = HelmChart {
            chart: "charts/shop".into(),
            values_files: vec!["prod.yaml".into()],
            values: Some(BTreeMap::from([("replicas".to_owned(), json!(3))])),
            kube_version: Some("1.20.2".into()),
            ..HelmChart::default()
        };
        let rendered = render(
            &canned,
            root.path(),
            &chart,
            "production",
            "shop-prod",
            &Limits::default(),
        )
        .unwrap();
        let asked = canned.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1);
        let (release, namespace, values, kube_version) = &asked[0];
        assert_eq!(
            (release.as_str(), namespace.as_str()),
            ("production", "shop-prod")
        );
        assert_eq!(kube_version.as_deref(), Some("1.20.2"));
        let values: Value = serde_json::from_str(values).unwrap();
        assert_eq!(
            values,
            json!({"replicas": 3, "image": {"tag": "1.0"}}),
            "files, then inline values"
        );
        assert_eq!(rendered.manifests.len(), 1);
        assert_eq!(rendered.manifests[0].source, "charts/shop/templates/web.yaml#1");
        assert_eq!(
            rendered.tests.len(),
            1,
            "the test hook is a test, not an object to deploy"
        );
        assert!(
            rendered.tests[0]
                .source
                .starts_with("charts/shop/templates/tests/smoke.yaml"),
            "{}",
            rendered.tests[0].source
        );

        // A renderer that runs no program says which chart needed one.
        let err = render(
            &crate::tools::NoPrograms,
            root.path(),
            &chart,
            "production",
            "shop-prod",
            &Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("charts/shop"), "{err}");
    }

    #[test]
    fn values_merge_like_helm_f() {
        let mut base = map(json!({"image": {"repository": "shop", "tag": "1.0"}, "ports": [80], "keep": 1}));
        merge_values(
            &mut base,
            map(json!({"image": {"tag": "1.1"}, "ports": [81], "keep": null, "new": {"a": 1}})),
        );
        assert_eq!(
            Value::Object(base),
            json!({"image": {"repository": "shop", "tag": "1.1"}, "ports": [81], "keep": null, "new": {"a": 1}})
        );
        // A map over a scalar replaces it; a scalar over a map replaces it.
        let mut base = map(json!({"a": 1, "b": {"c": 1}}));
        merge_values(&mut base, map(json!({"a": {"x": 1}, "b": 2})));
        assert_eq!(Value::Object(base), json!({"a": {"x": 1}, "b": 2}));
    }

    #[test]
    fn values_files_must_be_mappings() {
        assert!(parse_values("", "v.yaml").unwrap().is_empty());
        assert!(parse_values("# only a comment\n", "v.yaml").unwrap().is_empty());
        let err = parse_values("- a\n- b\n", "v.yaml").unwrap_err();
        assert_eq!(err.label(), "InvalidValues");
        assert!(err.to_string().starts_with("v.yaml: not a values file"), "{err}");
        let err = parse_values("a: [\n", "v.yaml").unwrap_err();
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn lookup_is_found_in_actions_only() {
        assert_eq!(
            lookup_line("a: {{ lookup \"v1\" \"Secret\" .Release.Namespace \"x\" }}\n"),
            Some(1)
        );
        assert_eq!(
            lookup_line("a: 1\nb: {{- $s := (lookup \"v1\" \"Secret\" \"\" \"\") }}"),
            Some(2)
        );
        assert_eq!(
            lookup_line("{{\n  if\n  (lookup \"v1\" \"Namespace\" \"\" \"x\")\n}}"),
            Some(3)
        );
        // Text, literals, comments and other words that contain it are not calls.
        assert_eq!(lookup_line("lookup: {{ .Values.lookup }}\n"), None);
        assert_eq!(
            lookup_line("{{ \"lookup\" }} {{ `lookup` }} {{/* lookup */}}"),
            None
        );
        assert_eq!(
            lookup_line("{{ include \"x.lookupTable\" . }} {{ $lookup := 1 }}"),
            None
        );
        assert_eq!(lookup_line("{{ printf \"%s\\\" lookup\" .x }}"), None);
        assert_eq!(lookup_line("{{ unterminated lookup"), None);
    }

    #[test]
    fn sources_name_files_in_the_repository() {
        let output = "---\n# Source: shop/templates/a.yaml\nkind: A\n---\n# Source: shop/charts/db/templates/b.yaml\nkind: B\n";
        let pieces = split_sources(output, "shop", "charts/shop");
        let names: Vec<&str> = pieces.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "charts/shop/templates/a.yaml",
                "charts/shop/charts/db/templates/b.yaml"
            ]
        );
    }

    #[test]
    fn test_hooks_become_jobs_and_other_hooks_are_refused() {
        let pod = Manifest {
            object: json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "shop-test", "labels": {"app": "shop"},
                             "annotations": {"helm.sh/hook": "test", "helm.sh/hook-delete-policy": "hook-succeeded", "note": "kept"}},
                "spec": {"containers": [{"name": "t", "image": "busybox"}]},
            }),
            source: "charts/shop/templates/tests/t.yaml#1".into(),
        };
        let job = test_job(pod.clone(), "test").unwrap().object;
        assert_eq!(
            (job["apiVersion"].as_str(), job["kind"].as_str()),
            (Some("batch/v1"), Some("Job"))
        );
        assert_eq!(job["metadata"]["annotations"], json!({"note": "kept"}));
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "shop"})
        );
        assert_eq!(job["spec"]["backoffLimit"], 0);
        let err = test_job(pod.clone(), "pre-install,post-install").unwrap_err();
        assert_eq!(err.label(), "ChartHookUnsupported");
        assert!(err.to_string().contains("Pod/shop-test"), "{err}");
        let mut config_map = pod;
        config_map.object["kind"] = json!("ConfigMap");
        assert_eq!(
            test_job(config_map, "test").unwrap_err().label(),
            "ChartTestHookUnsupported"
        );
    }

    #[test]
    fn keep_policy_means_never_prune() {
        let mut object = json!({"metadata": {"annotations": {"helm.sh/resource-policy": "keep"}}});
        keep_resource_policy(&mut object);
        assert_eq!(object["metadata"]["annotations"][SHIP_PRUNE], "disabled");
        let mut explicit = json!({"metadata": {"annotations": {"helm.sh/resource-policy": "keep", "ship.dev/prune": "enabled"}}});
        keep_resource_policy(&mut explicit);
        assert_eq!(explicit["metadata"]["annotations"][SHIP_PRUNE], "enabled");
    }
}
