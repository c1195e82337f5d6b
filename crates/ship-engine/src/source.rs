//! From a commit in the mirror to the validated objects of the environment its branch deploys.

use std::path::Path;

use git2::Oid;
use ship_git::Mirror;
use ship_git::mirror::ExportLimits;
use ship_render::{Limits, RenderError, Rendered};

/// Why a commit cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The commit cannot be read or exported from the mirror.
    #[error(transparent)]
    Git(#[from] ship_git::GitError),
    /// Its configuration or manifests are invalid.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// No environment in its `ship.yaml` deploys the branch.
    #[error("no environment in ship.yaml deploys branch {0:?}")]
    NoEnvironment(String),
    /// A scratch directory could not be made.
    #[error("cannot create a scratch directory: {0}")]
    Scratch(String),
}

impl LoadError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            LoadError::Git(e) => e.label(),
            LoadError::Render(e) => e.label(),
            LoadError::NoEnvironment(_) => "NoEnvironment",
            LoadError::Scratch(_) => "ScratchDir",
        }
    }
}

/// The environment a commit on `branch` deploys, and its validated objects.
#[derive(Debug)]
pub struct Loaded {
    /// Environment name.
    pub environment: String,
    /// Configuration and objects.
    pub rendered: Rendered,
}

/// Exports `commit` into a scratch directory under `scratch_root`, reads its `ship.yaml`, and
/// renders and validates the environment that deploys `branch`. Blocking: call from a blocking
/// task. The scratch directory is removed afterwards.
pub fn load_commit(
    mirror: &Mirror,
    commit: Oid,
    branch: &str,
    scratch_root: &Path,
) -> Result<Loaded, LoadError> {
    std::fs::create_dir_all(scratch_root).map_err(|e| LoadError::Scratch(e.to_string()))?;
    let scratch = tempfile::Builder::new()
        .prefix("render-")
        .tempdir_in(scratch_root)
        .map_err(|e| LoadError::Scratch(e.to_string()))?;
    mirror.export_tree(commit, scratch.path(), ExportLimits::default())?;
    let config = ship_render::read_config(scratch.path())?;
    let (environment, _) = config
        .environment_for_branch(branch)
        .ok_or_else(|| LoadError::NoEnvironment(branch.to_owned()))?;
    let environment = environment.to_owned();
    let rendered = ship_render::render_configured(scratch.path(), config, &environment, &Limits::default())?;
    Ok(Loaded {
        environment,
        rendered,
    })
}
