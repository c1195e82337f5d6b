//! A real Prometheus server (Debian's `prometheus`) on loopback, scraping one target every
//! second and evaluating Ship's rules every second; killed on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The running server.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port, path `/metrics`) as job `job`, with the
    /// rule files `rules`.
    pub fn start(target: SocketAddr, job: &str, rules: &[&Path]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = crate::process::free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let rule_files: Vec<String> = rules.iter().map(|r| format!("  - {}", r.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n",
            rule_files.join("\n")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start prometheus (tests/run.sh installs Debian's prometheus package)")?;
        let server = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("prometheus did not listen on {addr}; log:\n{}", server.log())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query; returns `data.result` (an error for a query Prometheus refuses).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let body: serde_json::Value = reqwest::Client::new()
            .get(url)
            .query(&[("query", promql)])
            .send()
            .await?
            .json()
            .await?;
        if body["status"] != "success" {
            bail!("query {promql:?} refused: {body}");
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts Prometheus holds (pending or firing).
    pub async fn alerts(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let url = format!("http://{}/api/v1/alerts", self.addr);
        let body: serde_json::Value = reqwest::get(url).await?.json().await?;
        Ok(body["data"]["alerts"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
