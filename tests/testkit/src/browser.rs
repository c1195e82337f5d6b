//! A real browser for page tests: Debian's headless Chromium, driven by its ChromeDriver over
//! the W3C WebDriver protocol (plain JSON requests). It reads a page's text as a person sees
//! it (`innerText`: what is rendered, not what is hidden) and takes screenshots.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;

/// A running ChromeDriver with one browser session; both end when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium session with an empty
    /// profile. The flags keep Chromium from reaching out to the network it cannot reach here.
    pub async fn start() -> anyhow::Result<Self> {
        let port = crate::ports::free_port()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver (tests/run.sh installs Debian's chromium-driver)")?;
        let profile = tempfile::tempdir()?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let ready = crate::cluster::eventually("chromedriver ready", Duration::from_secs(20), || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let answer = http.get(format!("{base}/status")).send().await;
                Ok(match answer {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                })
            }
        })
        .await;
        let mut browser = Self {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        ready?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1400",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!("--user-data-dir={}", browser._profile.path().display())])
        .collect::<Vec<_>>();
        let created = browser
            .call(
                reqwest::Method::POST,
                "/session",
                serde_json::json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
                }}}),
            )
            .await?;
        browser.session = created["sessionId"]
            .as_str()
            .context("no session id from chromedriver")?
            .to_owned();
        Ok(browser)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: serde_json::Value = request
            .send()
            .await
            .with_context(|| format!("chromedriver {path}"))?
            .json()
            .await?;
        if let Some(error) = answer["value"]["error"].as_str() {
            anyhow::bail!("chromedriver {path}: {error}: {}", answer["value"]["message"]);
        }
        Ok(answer["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Loads `url` and waits for it to finish loading.
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/url"),
            serde_json::json!({ "url": url }),
        )
        .await
        .map(drop)
    }

    /// The page's text as rendered (`document.body.innerText`).
    pub async fn visible_text(&self) -> anyhow::Result<String> {
        let value = self
            .call(
                reqwest::Method::POST,
                &self.session_path("/execute/sync"),
                serde_json::json!({"script": "return document.body.innerText", "args": []}),
            )
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The page's title.
    pub async fn title(&self) -> anyhow::Result<String> {
        let value = self
            .call(
                reqwest::Method::GET,
                &self.session_path("/title"),
                serde_json::Value::Null,
            )
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let value = self
            .call(
                reqwest::Method::GET,
                &self.session_path("/screenshot"),
                serde_json::Value::Null,
            )
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .context("screenshot is not base64")?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }
}
