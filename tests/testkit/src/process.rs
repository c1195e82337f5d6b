//! Child processes of a test (`shipd`), killed when the handle drops, logs kept in a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use crate::ports::free_port;

/// A running `shipd`.
#[derive(Debug)]
pub struct Shipd {
    child: Child,
    /// Where the probe server listens.
    pub probe_addr: SocketAddr,
    /// File receiving stderr (the logs).
    pub log_path: PathBuf,
}

impl Shipd {
    /// Starts the workspace's `shipd` with `KUBECONFIG=kubeconfig`, JSON logs, and `extra` args.
    ///
    /// `SHIP_SHIPD_WRAPPER` (for example `heaptrack -o /tmp/shipd`) runs shipd under a profiler;
    /// signals and [`Shipd::pid`] still reach shipd itself.
    pub fn start(kubeconfig: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let bin = crate::cluster::workspace_bin("shipd");
        anyhow::ensure!(
            bin.exists(),
            "{} not built: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let probe_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let log_path = std::env::temp_dir().join(format!("shipd-{}.log", probe_addr.port()));
        let log = std::fs::File::create(&log_path)?;
        let wrapper = std::env::var("SHIP_SHIPD_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(bin);
                command
            }
            None => Command::new(bin),
        };
        let child = command
            .arg("--probe-addr")
            .arg(probe_addr.to_string())
            .arg("--log-format")
            .arg("json")
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,ship_engine=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start shipd")?;
        Ok(Self {
            child,
            probe_addr,
            log_path,
        })
    }

    /// GET a probe path; returns the status code and body.
    pub async fn probe(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = reqwest::get(format!("http://{}{path}", self.probe_addr)).await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// The logs written so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until a log line satisfies `matches`, and returns it.
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().lines().find(|l| matches(l)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("no matching log line within {timeout:?}; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The process id of shipd (a descendant of the child when a wrapper runs it).
    pub fn pid(&self) -> u32 {
        let mut pending = vec![self.child.id()];
        while let Some(pid) = pending.pop() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "shipd" {
                return pid;
            }
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            pending.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        self.child.id()
    }

    /// Sends `signal` (for example `TERM` or `KILL`) with the system's `kill`.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Shipd {
    fn drop(&mut self) {
        // shipd first: a wrapper such as heaptrack then finishes its report and exits.
        if self.pid() != self.child.id() {
            let _ = self.signal("KILL");
            let _ = self.wait_exit(Duration::from_secs(60));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
