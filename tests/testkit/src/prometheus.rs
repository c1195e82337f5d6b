//! A real Prometheus server (Debian's `prometheus`) on loopback, scraping one target, or a
//! namespace's pods, every second and evaluating rules every second; killed on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Pod;

/// The running server.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    /// The pod discovery task of [`Prometheus::start_scraping_pods`].
    discovery: Option<tokio::task::JoinHandle<()>>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port, path `/metrics`) as job `job`, with the
    /// rule files `rules`.
    pub fn start(target: SocketAddr, job: &str, rules: &[&Path]) -> anyhow::Result<Self> {
        Self::start_with(
            &format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"),
            rules,
        )
    }

    /// Starts Prometheus scraping the running pods of `namespace`: each container port named
    /// `http`, path `/metrics`, every second; series carry `namespace` and `pod` labels.
    ///
    /// Debian builds Prometheus without its Kubernetes service discovery, so a task here does
    /// that part: it watches the namespace's pods and writes their addresses to a file that
    /// Prometheus' file discovery reads (Prometheus notices each change by inotify; its scrape
    /// manager applies discovered targets at most every 5 s, as it does for any discovery).
    pub fn start_scraping_pods(
        client: kube::Client,
        namespace: &str,
        rules: &[&Path],
    ) -> anyhow::Result<Self> {
        let targets = tempfile::tempdir()?;
        let file = targets.path().join("pods.json");
        std::fs::write(&file, "[]")?;
        let scrape = format!(
            "  - job_name: pods\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
            file.display()
        );
        let mut server = Self::start_with(&scrape, rules)?;
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
        server.discovery = Some(tokio::spawn(write_pod_targets(pods, file, targets)));
        Ok(server)
    }

    /// Starts Prometheus with the `scrape_configs` entries `scrape` (YAML, indented as list
    /// items under the key) and the rule files `rules`.
    fn start_with(scrape: &str, rules: &[&Path]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = crate::process::free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let rule_files: Vec<String> = rules.iter().map(|r| format!("  - {}", r.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:{}\n\
             scrape_configs:\n{scrape}",
            if rule_files.is_empty() {
                " []".to_owned()
            } else {
                format!("\n{}", rule_files.join("\n"))
            }
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
        let server = Self {
            child,
            addr,
            dir,
            discovery: None,
        };
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
        if let Some(discovery) = self.discovery.take() {
            discovery.abort();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps `file` (file discovery's JSON) listing the running pods of `pods` with a container
/// port named `http`, until aborted; `_dir` holds the file.
async fn write_pod_targets(pods: kube::Api<Pod>, file: std::path::PathBuf, _dir: tempfile::TempDir) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, reflector, watcher};
    let (store, writer) = reflector::store();
    let mut events = reflector(writer, watcher(pods, watcher::Config::default()))
        .default_backoff()
        .boxed();
    let mut written = String::new();
    while events.next().await.is_some() {
        let mut groups: Vec<serde_json::Value> = Vec::new();
        for pod in store.state() {
            let status = pod.status.as_ref();
            let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
            let Some(ip) = status.and_then(|s| s.pod_ip.as_deref()).filter(|_| running) else {
                continue;
            };
            let ports = pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .filter(|p| p.name.as_deref() == Some("http"));
            for port in ports {
                groups.push(serde_json::json!({
                    "targets": [format!("{ip}:{}", port.container_port)],
                    "labels": {
                        "namespace": pod.metadata.namespace.clone().unwrap_or_default(),
                        "pod": pod.metadata.name.clone().unwrap_or_default(),
                    },
                }));
            }
        }
        let text = serde_json::Value::Array(groups).to_string();
        if text != written {
            // Replaced whole, so Prometheus never reads half a file.
            let partial = file.with_extension("json.new");
            if std::fs::write(&partial, &text).is_ok() && std::fs::rename(&partial, &file).is_ok() {
                written = text;
            }
        }
    }
}
