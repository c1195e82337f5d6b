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
    /// As GitHub's Deployments API does, by its documented contract, under
    /// `.../repos/{owner}/{repo}/deployments`: `GET ?sha=&environment=` lists the matching
    /// deployments newest first (200); `POST` creates one from `ref`, `environment`, `task` and
    /// `payload` (201 with its `id`; 422 without `ref`); `POST /{id}/statuses` sets a status of a
    /// deployment that exists (201; 404 otherwise).
    GitHubDeployments,
    /// As GitHub answers a spent rate limit: 403, `x-ratelimit-remaining: 0` and
    /// `x-ratelimit-reset` one second from now.
    RateLimited,
}

#[derive(Debug, Default)]
struct Script {
    queue: Vec<Steady>,
    steady: Option<Steady>,
}

#[derive(Debug, Default)]
struct Shared {
    requests: Vec<Recorded>,
    scripts: BTreeMap<String, Script>,
    /// The deployments created, as GitHub would keep them.
    deployments: Vec<serde_json::Value>,
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
        let first: Vec<Steady> = first.iter().map(|code| Steady::Status(*code)).collect();
        self.script_answers(prefix, &first, then);
    }

    /// Answers requests under `prefix` with `first`, one each, then with `then`.
    pub fn script_answers(&self, prefix: &str, first: &[Steady], then: Steady) {
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
) -> (StatusCode, HeaderMap, String) {
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
                    script.queue.remove(0)
                }
            })
            .unwrap_or(Steady::Status(201));
        let mut answer_headers = HeaderMap::new();
        let (answered, reply) = match decided {
            Steady::Status(code) => (Some(code), "{}".to_owned()),
            Steady::Echo(code) => (Some(code), format!("{headers:?}")),
            Steady::Hang => (None, String::new()),
            Steady::GitHubDeployments => {
                let (code, reply) = github_deployments(&mut shared.deployments, &method, &path, &body);
                (Some(code), reply)
            }
            Steady::RateLimited => {
                let reset = jiff::Timestamp::now().as_second() + 1;
                answer_headers.insert("x-ratelimit-remaining", axum::http::HeaderValue::from_static("0"));
                answer_headers.insert("x-ratelimit-reset", axum::http::HeaderValue::from(reset));
                (Some(403), r#"{"message": "API rate limit exceeded"}"#.to_owned())
            }
        };
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
            answered,
        });
        (answered, answer_headers, reply)
    };
    match decided {
        (Some(code), answer_headers, reply) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            answer_headers,
            reply,
        ),
        (None, ..) => std::future::pending().await,
    }
}

/// GitHub's Deployments API over `deployments` (see [`Steady::GitHubDeployments`]).
fn github_deployments(
    deployments: &mut Vec<serde_json::Value>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let Some((_, tail)) = route.rsplit_once("/deployments") else {
        return (404, r#"{"message": "Not Found"}"#.to_owned());
    };
    let query: BTreeMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
    match (method.as_str(), tail) {
        ("GET", "" | "/") => {
            let listed: Vec<&serde_json::Value> = deployments
                .iter()
                .rev()
                .filter(|d| query.get("sha").is_none_or(|sha| d["sha"] == *sha))
                .filter(|d| query.get("environment").is_none_or(|e| d["environment"] == *e))
                .collect();
            (200, serde_json::to_string(&listed).unwrap_or_default())
        }
        ("POST", "" | "/") => {
            let asked: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let Some(reference) = asked["ref"].as_str() else {
                return (
                    422,
                    r#"{"message": "Invalid request: ref is missing"}"#.to_owned(),
                );
            };
            let deployment = serde_json::json!({
                "id": deployments.len() + 1,
                "sha": reference,
                "ref": reference,
                "task": asked.get("task").cloned().unwrap_or("deploy".into()),
                "environment": asked.get("environment").cloned().unwrap_or("production".into()),
                "payload": asked.get("payload").cloned().unwrap_or_default(),
                "description": asked.get("description").cloned().unwrap_or_default(),
            });
            deployments.push(deployment.clone());
            (201, deployment.to_string())
        }
        ("POST", tail) => {
            let id = tail
                .strip_prefix('/')
                .and_then(|t| t.strip_suffix("/statuses"))
                .and_then(|id| id.parse::<u64>().ok());
            match id {
                Some(id) if deployments.iter().any(|d| d["id"] == id) => (
                    201,
                    serde_json::json!({"id": id * 1000, "deployment_id": id}).to_string(),
                ),
                _ => (404, r#"{"message": "Not Found"}"#.to_owned()),
            }
        }
        _ => (404, r#"{"message": "Not Found"}"#.to_owned()),
    }
}
