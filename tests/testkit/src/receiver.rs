//! A recording HTTP receiver: stands in for GitHub, GitLab, Gitea, Slack and webhook
//! receivers in notification tests. It keeps every request (method, path, headers, body) and
//! answers as scripted per path prefix: a queue of status codes first, then a steady answer,
//! which may be to never answer at all (a dead receiver).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request as it arrived, with the status it was answered (`None`: never answered).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, ...
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// The status answered.
    pub answered: Option<u16>,
}

impl Recorded {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How a path prefix is answered once its queue is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steady {
    /// With this status.
    Status(u16),
    /// Never (the connection stays open, unanswered).
    Hang,
    /// With this status, and the request's headers as the body (a receiver whose error page
    /// echoes what it was sent, credentials included).
    Echo(u16),
}

#[derive(Debug, Default)]
struct Script {
    queue: Vec<u16>,
    steady: Option<Steady>,
}

#[derive(Debug, Default)]
struct Shared {
    requests: Vec<Recorded>,
    scripts: BTreeMap<String, Script>,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Receiver {
    /// Starts a receiver on a free loopback port, answering 201 to everything.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { answer(&state, method, uri, headers, body).await }
            });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers requests under `prefix` with `first`, one code each, then with `then`.
    pub fn script(&self, prefix: &str, first: &[u16], then: Steady) {
        lock(&self.shared).scripts.insert(
            prefix.to_owned(),
            Script {
                queue: first.to_vec(),
                steady: Some(then),
            },
        );
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    /// The requests under `prefix`.
    pub fn requests_under(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits until `done` holds for the requests under `prefix`, and returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        prefix: &str,
        timeout: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> anyhow::Result<Vec<Recorded>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.requests_under(prefix);
            if done(&seen) {
                return Ok(seen);
            }
            if tokio::time::Instant::now() > deadline {
                let summary: Vec<String> = seen
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} -> {:?}: {}",
                            r.method,
                            r.path,
                            r.answered,
                            String::from_utf8_lossy(&r.body)
                        )
                    })
                    .collect();
                anyhow::bail!(
                    "timed out waiting for {what}; under {prefix}:\n{}",
                    summary.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn answer(
    shared: &Mutex<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let decided = {
        let mut shared = lock(shared);
        let decided = shared
            .scripts
            .iter_mut()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, script)| {
                if script.queue.is_empty() {
                    script.steady.unwrap_or(Steady::Status(201))
                } else {
                    Steady::Status(script.queue.remove(0))
                }
            })
            .unwrap_or(Steady::Status(201));
        shared.requests.push(Recorded {
            method: method.to_string(),
            path,
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            answered: match decided {
                Steady::Status(code) | Steady::Echo(code) => Some(code),
                Steady::Hang => None,
            },
        });
        decided
    };
    let status = |code| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match decided {
        Steady::Status(code) => (status(code), "{}".to_owned()),
        Steady::Echo(code) => (status(code), format!("{headers:?}")),
        Steady::Hang => std::future::pending().await,
    }
}
