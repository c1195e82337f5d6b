//! A second, separate control plane (its own etcd and kube-apiserver on other ports), standing
//! for another cluster (the production cluster of a two-cluster setup), or one a test may
//! break: restart its apiserver, stop its etcd. Stopped on drop.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use kube::Client;

use crate::cluster::repo_root;

/// The other cluster.
#[derive(Debug)]
pub struct RemoteCluster {
    dir: PathBuf,
    /// Its kubeconfig file (certificates by path).
    pub kubeconfig: PathBuf,
}

impl RemoteCluster {
    /// Starts it with `tests/cluster/local-k8s.sh start` (the installed control plane, about
    /// ten seconds).
    pub fn start() -> anyhow::Result<Self> {
        let out = Command::new(repo_root().join("tests/cluster/local-k8s.sh"))
            .arg("start")
            .output()
            .context("cannot run tests/cluster/local-k8s.sh")?;
        if !out.status.success() {
            bail!(
                "second control plane failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        Ok(Self {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        })
    }

    /// Its kubeconfig with the certificates embedded, as a Secret would hold it.
    pub fn flat_kubeconfig(&self) -> anyhow::Result<String> {
        let out = Command::new("kubectl")
            .args(["config", "view", "--raw", "--flatten", "--minify"])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()?;
        anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Stops one of its processes (`etcd`, `kube-apiserver`), returning its command line so it
    /// can be started again.
    pub fn stop(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let pid = std::fs::read_to_string(self.dir.join(format!("{name}.pid")))?
            .trim()
            .to_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        for _ in 0..100 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Ok(args);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Command::new("kill").args(["-KILL", &pid]).status()?;
        Ok(args)
    }

    /// Starts `name` again with `args` (from [`RemoteCluster::stop`]), detached, as
    /// `local-k8s.sh` does.
    pub fn start_again(&self, name: &str, args: &[String]) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("logs").join(format!("{name}.log")))?;
        let pid_file = self.dir.join(format!("{name}.pid"));
        Command::new("setsid")
            .args(["bash", "-c", "echo $$ > \"$1\"; shift; exec \"$@\"", "_"])
            .arg(&pid_file)
            .args(args)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(std::process::Stdio::null())
            .spawn()?;
        Ok(())
    }

    /// A client of it.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(Client::try_from(config)?)
    }
}

impl Drop for RemoteCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("tests/cluster/down.sh"))
            .arg(&self.dir)
            .output();
    }
}
