//! The external programs a render may run, behind one trait: `helm template` for a chart and
//! `kustomize build` for a kustomization. Everything else ship-render does is pure (reading a
//! tree, parsing, validating); shipd and `kubectl ship` render with [`Processes`], which runs
//! the real programs bounded in time and output, and a caller that must not start a process
//! (the fuzz targets, a validation of plain manifests) passes [`NoPrograms`].

use std::path::Path;

use crate::Limits;

/// Why a program gave no output to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolFailure {
    /// The program is not installed (or this renderer runs none).
    Unavailable,
    /// It could not start, failed (its message, from stderr), timed out, or wrote non-UTF-8.
    Failed(String),
    /// Its output is over `limits.max_total_bytes`.
    TooLarge,
}

/// One `helm template` run.
#[derive(Debug, Clone, Copy)]
pub struct HelmTemplate<'a> {
    /// The Helm release name.
    pub release: &'a str,
    /// The chart's directory (inside the checked-out tree).
    pub chart_dir: &'a Path,
    /// `--namespace`.
    pub namespace: &'a str,
    /// The merged values, as JSON.
    pub values_json: &'a str,
    /// `--kube-version`.
    pub kube_version: Option<&'a str>,
    /// `--api-versions`, each.
    pub api_versions: &'a [String],
}

/// Runs the programs a render needs.
pub trait Renderer: Send + Sync {
    /// `helm template` with `--include-crds`: the rendered YAML stream.
    fn helm_template(&self, run: &HelmTemplate<'_>, limits: &Limits) -> Result<String, ToolFailure>;
    /// `kustomize build dir`: the rendered YAML stream.
    fn kustomize_build(&self, dir: &Path, limits: &Limits) -> Result<String, ToolFailure>;
}

/// The real programs, as child processes: `helm` (`SHIP_HELM`, else on `PATH`) in a private,
/// empty Helm home, and `kustomize build` (else `kubectl kustomize`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Processes;

impl Renderer for Processes {
    fn helm_template(&self, run: &HelmTemplate<'_>, limits: &Limits) -> Result<String, ToolFailure> {
        let helm = crate::helm::helm_binary().ok_or(ToolFailure::Unavailable)?;
        let home = tempfile::tempdir().map_err(|e| ToolFailure::Failed(format!("a Helm home: {e}")))?;
        let values_path = home.path().join("values.json");
        std::fs::write(&values_path, run.values_json)
            .map_err(|e| ToolFailure::Failed(format!("writing the values: {e}")))?;
        let mut command = std::process::Command::new(helm);
        command
            .arg("template")
            .arg(run.release)
            .arg(run.chart_dir)
            .args(["--namespace", run.namespace, "--include-crds", "--values"])
            .arg(&values_path);
        if let Some(version) = run.kube_version {
            command.args(["--kube-version", version]);
        }
        for api in run.api_versions {
            command.args(["--api-versions", api]);
        }
        // A private, empty Helm home: no repositories, plugins, registries or kubeconfig to reach.
        command.env_clear();
        let home_dir = home.path();
        for (name, sub) in [
            ("HOME", ""),
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
            ("HELM_PLUGINS", "plugins"),
        ] {
            command.env(name, home_dir.join(sub));
        }
        command.env("KUBECONFIG", home_dir.join("no-kubeconfig"));
        crate::manifests::run_bounded(command, limits)
    }

    fn kustomize_build(&self, dir: &Path, limits: &Limits) -> Result<String, ToolFailure> {
        let mut command = crate::manifests::kustomize_command().ok_or(ToolFailure::Unavailable)?;
        command.arg(dir);
        crate::manifests::run_bounded(command, limits)
    }
}

/// Runs nothing: a chart or a kustomization is reported as needing a program this caller does
/// not run. Plain manifests render as usual.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrograms;

impl Renderer for NoPrograms {
    fn helm_template(&self, _: &HelmTemplate<'_>, _: &Limits) -> Result<String, ToolFailure> {
        Err(ToolFailure::Unavailable)
    }

    fn kustomize_build(&self, _: &Path, _: &Limits) -> Result<String, ToolFailure> {
        Err(ToolFailure::Unavailable)
    }
}
