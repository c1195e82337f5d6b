//! Ship's rendering and validation, as pure functions over a checked-out tree:
//! - [`config`]: the repository's own `ship.yaml`;
//! - [`manifests`]: one environment's objects, from plain YAML/JSON or a kustomization;
//! - [`validate`]: the checks every object passes before anything touches a cluster.
//!
//! [`render_environment`] runs all three for one environment at one commit; [`helm`] renders
//! charts, and [`cache`] keeps renders by (commit, environment, renderer versions).

pub mod cache;
pub mod config;
pub mod defaults;
pub mod differences;
pub mod duration;
pub mod helm;
pub mod limits;
pub mod manifests;
pub mod schedule;
pub mod tools;
pub mod validate;
pub mod vars;

use std::path::Path;

pub use config::{ConfigError, ShipConfig};
pub use limits::Limits;
pub use manifests::Manifest;

/// Why an environment's manifests cannot be deployed. Messages name the file (and document) and
/// say what to change; nothing is applied when any of these occurs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// `ship.yaml` is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The environment is not declared in `ship.yaml`.
    #[error("environment {0:?} is not declared in ship.yaml")]
    UnknownEnvironment(String),
    /// The environment's manifest path does not exist at this commit.
    #[error("{path}: no such directory at this commit: fix `path` in ship.yaml or add the manifests")]
    MissingPath {
        /// The path.
        path: String,
    },
    /// A path or symlink resolves outside the repository.
    #[error("{path}: resolves outside the repository; symlinks must stay inside it")]
    PathEscape {
        /// The path.
        path: String,
    },
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// A manifest file over the size limit.
    #[error("{path}: {size} bytes, over the {limit}-byte limit per manifest file")]
    FileTooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// All manifests together are over the size limit.
    #[error("the manifests are over the {limit}-byte limit in total")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Too many manifest files.
    #[error("more than {limit} manifest files")]
    TooManyFiles {
        /// The limit.
        limit: usize,
    },
    /// Too many objects.
    #[error("more than {limit} objects")]
    TooManyObjects {
        /// The limit.
        limit: usize,
    },
    /// YAML that does not parse (syntax, or an alias bomb over the expansion limit).
    #[error("{origin}: invalid YAML: {message}")]
    Yaml {
        /// File and document.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A document that is not a mapping.
    #[error("{origin}: not a Kubernetes object (expected a mapping with apiVersion, kind and metadata)")]
    NotAnObject {
        /// File and document.
        origin: String,
    },
    /// A required field is missing.
    #[error("{origin}: missing {field}")]
    MissingField {
        /// File and document.
        origin: String,
        /// The field.
        field: String,
    },
    /// A name Kubernetes would refuse.
    #[error("{origin}: {name:?} is not a valid name (lower-case letters, digits, '-' and '.')")]
    InvalidName {
        /// File and document.
        origin: String,
        /// The name.
        name: String,
    },
    /// The same object twice.
    #[error("{kind}/{name} is declared twice: in {first} and in {second}")]
    Duplicate {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// First place.
        first: String,
        /// Second place.
        second: String,
    },
    /// A plain Secret manifest.
    #[error(
        "{origin}: Secret {name:?} is in git: secret values must not be committed. Create the Secret in the \
         cluster (kubectl create secret ...) and reference it by name from your manifests"
    )]
    SecretInGit {
        /// File and document.
        origin: String,
        /// Secret name.
        name: String,
    },
    /// A namespaced object aimed at another namespace.
    #[error(
        "{origin}: targets namespace {namespace:?}; this environment deploys to {allowed:?} \
         (list extra namespaces in ship.yaml under allowedNamespaces)"
    )]
    NamespaceNotAllowed {
        /// File and document.
        origin: String,
        /// Requested namespace.
        namespace: String,
        /// The environment's namespace.
        allowed: String,
    },
    /// A cluster-scoped object the environment does not allow.
    #[error(
        "{origin}: {kind}/{name} is cluster-scoped; allow the kind in ship.yaml under clusterScopedKinds if the \
         environment should manage it"
    )]
    ClusterScopedNotAllowed {
        /// File and document.
        origin: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// A cluster-scoped object with a namespace.
    #[error("{origin}: {kind}/{name} is cluster-scoped and cannot have metadata.namespace")]
    NamespaceOnClusterObject {
        /// File and document.
        origin: String,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// A kustomization but no kustomize.
    #[error("{path}: is a kustomization, but neither `kustomize` nor `kubectl` is installed to build it")]
    KustomizeUnavailable {
        /// The path.
        path: String,
    },
    /// A post-deployment test's Job manifest is not one Job.
    #[error("{path}: a test's `job` must hold exactly one batch/v1 Job: {problem}")]
    TestJob {
        /// The path.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// kustomize failed.
    #[error("{path}: kustomize failed: {message}")]
    Kustomize {
        /// The path.
        path: String,
        /// kustomize's message.
        message: String,
    },
    /// A `${name}` the environment does not declare, or one that is malformed.
    #[error(transparent)]
    Vars(#[from] vars::VarsError),
    /// A Helm chart that cannot be rendered.
    #[error(transparent)]
    Helm(#[from] helm::HelmError),
}

impl RenderError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            RenderError::Config(e) => e.label(),
            RenderError::UnknownEnvironment(_) => "UnknownEnvironment",
            RenderError::MissingPath { .. } => "MissingPath",
            RenderError::PathEscape { .. } => "PathEscape",
            RenderError::Io { .. } => "ReadFailed",
            RenderError::FileTooLarge { .. } => "FileTooLarge",
            RenderError::TooLarge { .. } => "TooLarge",
            RenderError::TooManyFiles { .. } => "TooManyFiles",
            RenderError::TooManyObjects { .. } => "TooManyObjects",
            RenderError::Yaml { .. } => "InvalidYaml",
            RenderError::NotAnObject { .. } => "NotAnObject",
            RenderError::MissingField { .. } => "MissingField",
            RenderError::InvalidName { .. } => "InvalidName",
            RenderError::Duplicate { .. } => "DuplicateObject",
            RenderError::SecretInGit { .. } => "SecretInGit",
            RenderError::NamespaceNotAllowed { .. } => "NamespaceNotAllowed",
            RenderError::ClusterScopedNotAllowed { .. } => "ClusterScopedNotAllowed",
            RenderError::NamespaceOnClusterObject { .. } => "NamespaceOnClusterObject",
            RenderError::KustomizeUnavailable { .. } => "KustomizeUnavailable",
            RenderError::Kustomize { .. } => "KustomizeFailed",
            RenderError::TestJob { .. } => "InvalidTestJob",
            RenderError::Vars(e) => e.label(),
            RenderError::Helm(e) => e.label(),
        }
    }
}

/// Everything one environment deploys at one commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The repository's configuration at this commit.
    pub config: ShipConfig,
    /// Validated objects, namespaces defaulted.
    pub manifests: Vec<Manifest>,
    /// The Job templates of this environment's Job tests, by test name, namespaces defaulted.
    pub test_jobs: Vec<(String, serde_json::Value)>,
}

/// Reads and checks `ship.yaml` at the root of an exported tree.
pub fn read_config(root: &Path) -> Result<ShipConfig, RenderError> {
    let config_path = root.join(config::FILE_NAME);
    let text = match std::fs::symlink_metadata(&config_path) {
        Ok(meta) if meta.is_file() => std::fs::read_to_string(&config_path).map_err(|e| RenderError::Io {
            path: config::FILE_NAME.into(),
            message: e.to_string(),
        })?,
        Ok(_) => {
            return Err(RenderError::PathEscape {
                path: config::FILE_NAME.into(),
            });
        }
        Err(_) => return Err(ConfigError::Missing.into()),
    };
    Ok(config::parse(&text)?)
}

/// Renders and validates environment `env_name` of `config` from the tree at `root`.
pub fn render_configured(
    tools: &dyn tools::Renderer,
    root: &Path,
    config: ShipConfig,
    env_name: &str,
    limits: &Limits,
) -> Result<Rendered, RenderError> {
    let env = config
        .environments
        .get(env_name)
        .ok_or_else(|| RenderError::UnknownEnvironment(env_name.to_owned()))?;
    let (manifests, hook_tests) = match &env.helm {
        Some(chart) => {
            let rendered = helm::render(tools, root, chart, env_name, env.namespace(env_name), limits)?;
            (rendered.manifests, rendered.tests)
        }
        None => {
            let vars = env.vars.as_ref();
            let manifests = manifests::render_with_vars(tools, root, &env.path(env_name), limits, vars)?;
            (manifests, Vec::new())
        }
    };
    let manifests = validate::validate(env_name, env, manifests)?;
    let hook_tests = validate::validate(env_name, env, hook_tests)?;
    let mut test_jobs = Vec::new();
    for test in config.tests_for(env_name) {
        if let Some(path) = &test.job {
            test_jobs.push((test.name.clone(), test_job(root, path, env_name, env, limits)?));
        }
    }
    let mut config = config;
    for hook in hook_tests {
        let name = hook.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if config.tests.iter().any(|t| t.name == name) {
            return Err(helm::HelmError::TestNameTaken {
                origin: hook.source,
                name,
            }
            .into());
        }
        // The chart's test hook is one more Job test of this environment, named after it.
        config.tests.push(config::TestSpec {
            name: name.clone(),
            http: None,
            job: Some(hook.source),
            prometheus: None,
            environments: vec![env_name.to_owned()],
            every: None,
            on_failure: config::OnFailure::Report,
        });
        test_jobs.push((name, hook.object));
    }
    Ok(Rendered {
        config,
        manifests,
        test_jobs,
    })
}

/// Reads the Job manifest of a Job test: exactly one `batch/v1` Job, validated like the
/// environment's own objects (so it cannot aim at another namespace).
fn test_job(
    root: &Path,
    path: &str,
    env_name: &str,
    env: &config::Environment,
    limits: &Limits,
) -> Result<serde_json::Value, RenderError> {
    let problem = |problem: &str| RenderError::TestJob {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    let file = manifests::file_inside(root, path, limits)?;
    let text = std::fs::read_to_string(&file).map_err(|e| RenderError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let text = match &env.vars {
        Some(vars) => vars::substitute(&text, vars, path)?,
        None => text,
    };
    let documents = manifests::parse_documents(&text, path, limits)?;
    let mut documents = validate::validate(env_name, env, documents)?;
    if documents.len() != 1 {
        return Err(problem(&format!("found {} objects", documents.len())));
    }
    let job = documents.remove(0).object;
    if job.get("apiVersion").and_then(serde_json::Value::as_str) != Some("batch/v1")
        || job.get("kind").and_then(serde_json::Value::as_str) != Some("Job")
    {
        return Err(problem("the object is not a batch/v1 Job"));
    }
    Ok(job)
}

/// Reads `ship.yaml` at `root`, renders environment `env_name` and validates it.
pub fn render_environment(
    tools: &dyn tools::Renderer,
    root: &Path,
    env_name: &str,
    limits: &Limits,
) -> Result<Rendered, RenderError> {
    render_configured(tools, root, read_config(root)?, env_name, limits)
}
