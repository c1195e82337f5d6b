//! A TCP proxy in front of the API server, in its own process (`tcp-proxy`), and a kubeconfig
//! that goes through it: a test freezes one client's path to the API server (SIGSTOP) without
//! touching the API server or the other clients.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

use crate::cluster::workspace_bin;

/// The running proxy; killed when dropped.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    /// A kubeconfig whose server is the proxy.
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts a proxy to the server of `kubeconfig` and writes a copy of it that goes through
    /// the proxy (the API server's certificate names 127.0.0.1, so TLS still verifies).
    pub fn start(kubeconfig: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(kubeconfig)?;
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .map(|s| s.trim().trim_matches('"').to_owned())
            .context("no server in the kubeconfig")?;
        let target = server
            .strip_prefix("https://")
            .context("the server is not https://")?
            .trim_end_matches('/')
            .to_owned();
        let mut child = Command::new(workspace_bin("tcp-proxy"))
            .arg(&target)
            .stdout(Stdio::piped())
            .spawn()
            .context("start tcp-proxy (cargo build --workspace --bins)")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("proxy stdout")?).read_line(&mut line)?;
        let port: u16 = line.trim().parse().context("the proxy's port")?;
        let dir = tempfile::tempdir()?;
        let through = dir.path().join("kubeconfig");
        std::fs::write(
            &through,
            text.replace(&server, &format!("https://127.0.0.1:{port}")),
        )?;
        Ok(Self {
            child,
            kubeconfig: through,
            _dir: dir,
        })
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Freezes the proxy: every connection through it stays open and silent.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// Lets it run again. What it held is then delivered: a request a client sent into the
    /// frozen path reaches the API server now, however long ago it was sent.
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    /// Cuts the path for good: the proxy is killed where it stands (SIGKILL ends a stopped
    /// process too), and what it held is never delivered.
    pub fn cut(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Killed without a thaw first: a frozen proxy allowed to run for a moment would
        // deliver what it held.
        self.cut();
    }
}
