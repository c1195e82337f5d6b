//! A stand-in for the application a release deploys. No container runs here, so the "app" is a
//! real HTTP server in the test process whose answers come from what is deployed: for
//! `GET /{namespace}/health` it reads ConfigMap `web` in that namespace and answers with its
//! `data.body` and the HTTP status in `data.status` (default 200); 503 when it is missing.
//! A commit that breaks the ConfigMap breaks the app, as a bad config would break a real one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

/// When each request arrived and what it was answered.
pub type RequestLog = Arc<Mutex<Vec<(Instant, u16)>>>;

/// The running app server; stops when dropped.
#[derive(Debug)]
pub struct App {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every request answered, in order.
    pub requests: RequestLog,
    task: tokio::task::JoinHandle<()>,
}

async fn health(
    State((client, requests)): State<(Client, RequestLog)>,
    Path(namespace): Path<String>,
) -> (StatusCode, String) {
    let arrived = Instant::now();
    let answer = answer(client, &namespace).await;
    if let Ok(mut log) = requests.lock() {
        log.push((arrived, answer.0.as_u16()));
    }
    answer
}

async fn answer(client: Client, namespace: &str) -> (StatusCode, String) {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    match api.get_opt("web").await {
        Ok(Some(cm)) => {
            let data = cm.data.unwrap_or_default();
            let status = data
                .get("status")
                .and_then(|s| s.parse::<u16>().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            (status, data.get("body").cloned().unwrap_or_default())
        }
        Ok(None) => (StatusCode::SERVICE_UNAVAILABLE, "not deployed".into()),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()),
    }
}

impl App {
    /// Starts the app on a free loopback port.
    pub async fn start(client: Client) -> anyhow::Result<Self> {
        Self::start_on(client, "127.0.0.1:0".parse()?).await
    }

    /// Starts the app on `addr`.
    pub async fn start_on(client: Client, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = RequestLog::default();
        let router = Router::new()
            .route("/{namespace}/health", get(health))
            .with_state((client, requests.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { addr, requests, task })
    }

    /// The health URL template for ship.yaml (`{namespace}` is filled in by Ship).
    pub fn health_url(&self) -> String {
        format!("http://{}/{{namespace}}/health", self.addr)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}
