//! A handle on the real local control plane that `tests/cluster/up.sh` started.
//!
//! Integration tests are `#[ignore]`d so that a plain `cargo test` runs only unit tests;
//! `tests/run.sh` starts the control plane and runs them with `--run-ignored all`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("../.."))
}

/// Path of a binary built from this workspace (`shipd`, `kubelet-standin`, ...), next to the
/// test executable's `deps/` directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    dir.join(name)
}

/// The local control plane.
#[derive(Clone)]
pub struct TestCluster {
    client: Client,
    kubeconfig: PathBuf,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Connects to the cluster in `KUBECONFIG`, which must be the local control plane.
    pub async fn connect() -> anyhow::Result<Self> {
        let Some(kubeconfig) = std::env::var_os("KUBECONFIG").map(PathBuf::from) else {
            bail!("KUBECONFIG is not set: run the integration tests with tests/run.sh");
        };
        let client = Client::try_default()
            .await
            .context("cannot build a client from KUBECONFIG")?;
        Ok(Self { client, kubeconfig })
    }

    /// Connects to the cluster of `kubeconfig` (for example a [`crate::remote::RemoteCluster`]).
    pub async fn connect_to(kubeconfig: &Path) -> anyhow::Result<Self> {
        let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
        Ok(Self {
            client: Client::try_from(config)?,
            kubeconfig: kubeconfig.to_owned(),
        })
    }

    /// A client with the cluster's admin credentials.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Creates a fresh namespace named `{prefix}-{random}` for one test.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}-{:08x}", rand_u32());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("ship.dev/test".to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(name)
    }

    /// Applies Ship's committed CRDs (idempotent, server-side) and waits until they are served.
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        for file in [
            "shipreleases.yaml",
            "shippromotions.yaml",
            "shipenvironments.yaml",
        ] {
            self.install_crd(&repo_root().join("deploy/crds").join(file))
                .await?;
        }
        Ok(())
    }

    async fn install_crd(&self, path: &Path) -> anyhow::Result<()> {
        let yaml = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let crd: CustomResourceDefinition = serde_norway::from_str(&yaml)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        api.patch(
            &name,
            &PatchParams::apply("ship-tests").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        for _ in 0..100 {
            let established = api
                .get(&name)
                .await?
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("CRD {name} not established after 10 s")
    }

    /// Runs the machine's real `kubectl` against this cluster with `input` on its stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> anyhow::Result<Output> {
        use std::io::Write as _;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run kubectl (is it on PATH?)")?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(input.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Runs the machine's real `kubectl` against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .context("cannot run kubectl (is it on PATH?)")
    }
}

/// The pinned helm (`tests/tools/helm.sh` installs it on first use).
pub fn helm() -> anyhow::Result<PathBuf> {
    let out = Command::new(repo_root().join("tests/tools/helm.sh"))
        .output()
        .context("cannot run tests/tools/helm.sh")?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Polls `probe` every 100 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(err) => bail!("timed out after {timeout:?} waiting for {what}; last error: {err:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A random token of 32 hex digits (webhook secrets, delivery ids), for tests only.
pub fn random_hex() -> String {
    (0..4).map(|_| format!("{:08x}", rand_u32())).collect()
}

pub(crate) fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// The Kubernetes version of the test bed `tests/run.sh` started (`LOCAL_K8S_VERSION` from its
/// env file: 1.20.2 or 1.36.2), for what is rendered or checked for the cluster at hand.
pub fn testbed_version() -> String {
    std::env::var("LOCAL_K8S_VERSION").unwrap_or_else(|_| "1.20.2".to_owned())
}
