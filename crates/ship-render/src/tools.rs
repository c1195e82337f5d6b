//! The external programs a render may run, behind one trait: `helm template` for a chart and
//! `kustomize build` for a kustomization. Everything else ship-render does is pure (reading a
//! tree, parsing, validating); shipd and `kubectl ship` render with [`Processes`], which runs
//! the real programs bounded in time and output, and a caller that must not start a process
//! (the fuzz targets, a validation of plain manifests) passes [`NoPrograms`].

use std::path::Path;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::limits::Limits;

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
        let helm = helm_binary().ok_or(ToolFailure::Unavailable)?;
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
        run_bounded(command, limits)
    }

    fn kustomize_build(&self, dir: &Path, limits: &Limits) -> Result<String, ToolFailure> {
        let mut command = kustomize_command().ok_or(ToolFailure::Unavailable)?;
        command.arg(dir);
        run_bounded(command, limits)
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

/// The `helm` to run: `SHIP_HELM`, else `helm` on `PATH`.
pub fn helm_binary() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("SHIP_HELM").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(explicit));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("helm"))
            .find(|p| p.is_file())
    })
}

/// The version of the `helm` Ship runs (`helm version --short`), for the render cache's key.
pub fn helm_version() -> Option<String> {
    let output = std::process::Command::new(helm_binary()?)
        .args(["version", "--short"])
        .env_clear()
        .env("HOME", std::env::temp_dir())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The kustomize command to use: `kustomize build` if present, else `kubectl kustomize`.
fn kustomize_command() -> Option<std::process::Command> {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
    };
    if on_path("kustomize") {
        let mut c = std::process::Command::new("kustomize");
        c.arg("build");
        Some(c)
    } else if on_path("kubectl") {
        let mut c = std::process::Command::new("kubectl");
        c.arg("kustomize");
        Some(c)
    } else {
        None
    }
}

/// The version of the kustomize Ship runs, for the render cache's key: `kustomize version`, or
/// the one built into `kubectl` (`kubectl version --client`'s `kustomizeVersion`).
pub fn kustomize_version() -> Option<String> {
    let program = kustomize_command()?.get_program().to_owned();
    let standalone = program == "kustomize";
    let mut command = std::process::Command::new(program);
    if standalone {
        command.arg("version");
    } else {
        command.args(["version", "--client", "-o", "json"]);
    }
    let output = command.output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if standalone {
        return output.status.success().then(|| text.trim().to_owned());
    }
    let json: Value = serde_json::from_str(&text).ok()?;
    json.get("kustomizeVersion").and_then(Value::as_str).map(|v| {
        format!(
            "{v} (kubectl {})",
            json["clientVersion"]["gitVersion"].as_str().unwrap_or("?")
        )
    })
}

/// Runs a renderer with no input, at most `limits.renderer_timeout`, and returns what it wrote
/// to stdout: both streams are read on threads with a bound, so a huge output cannot exhaust
/// memory and a full pipe cannot stall it.
pub(crate) fn run_bounded(
    mut command: std::process::Command,
    limits: &Limits,
) -> Result<String, ToolFailure> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ToolFailure::Failed(e.to_string()))?;
    let read_bounded = |stream: Option<Box<dyn std::io::Read + Send>>, cap: u64| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = stream {
                let _ = std::io::Read::read_to_end(&mut std::io::Read::take(s, cap + 1), &mut buf);
            }
            buf
        })
    };
    let stdout = read_bounded(
        child.stdout.take().map(|s| Box::new(s) as _),
        limits.max_total_bytes,
    );
    let stderr = read_bounded(child.stderr.take().map(|s| Box::new(s) as _), 16 << 10);
    let deadline = std::time::Instant::now() + limits.renderer_timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| ToolFailure::Failed(e.to_string()))? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ToolFailure::Failed(format!(
                "timed out after {:?}",
                limits.renderer_timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(ToolFailure::Failed(
            String::from_utf8_lossy(&err).trim().to_owned(),
        ));
    }
    if out.len() as u64 > limits.max_total_bytes {
        return Err(ToolFailure::TooLarge);
    }
    String::from_utf8(out).map_err(|_| ToolFailure::Failed("output is not UTF-8".into()))
}
