//! The probe server: `/healthz` (the process is alive), `/readyz` (it can do its job),
//! `/metrics` (Prometheus, OpenMetrics text) and `/status` (the read-only status page).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, CustomResourceExt};
use ship_api::ShipRelease;
use tracing::{info, warn};

/// What `/readyz` reports on.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The ShipRelease CRD exists in the cluster.
    pub crd_installed: Arc<AtomicBool>,
    /// The ShipRelease watch has listed every object once.
    pub releases_synced: Arc<AtomicBool>,
    /// Another replica holds the leader Lease; this one waits to take over.
    pub standby: Arc<AtomicBool>,
    /// What `/metrics` serves (filled in once the source is known).
    pub registry: Arc<std::sync::RwLock<prometheus_client::registry::Registry>>,
    /// What `/status` renders (set once this replica leads).
    pub page: Arc<std::sync::OnceLock<crate::page::Sources>>,
}

/// `/status`: the status page, from the controller's caches.
async fn status_page(
    Extract(state): Extract<State>,
) -> (StatusCode, [(axum::http::HeaderName, &'static str); 2], String) {
    let headers = |ct| {
        [
            (axum::http::header::CONTENT_TYPE, ct),
            // It changes every few seconds; a cache would show an old rollback as current.
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ]
    };
    if state.standby.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            headers("text/plain; charset=utf-8"),
            "standby: another replica leads and serves the status page\n".into(),
        );
    }
    match state.page.get().and_then(crate::page::Sources::render) {
        Some(html) => (StatusCode::OK, headers("text/html; charset=utf-8"), html),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            headers("text/plain; charset=utf-8"),
            "starting: the releases are not listed yet\n".into(),
        ),
    }
}

/// `/metrics`: every metric; OpenMetrics text when the client asks for it (Prometheus does),
/// the classic text format otherwise.
async fn metrics(
    Extract(state): Extract<State>,
    headers: axum::http::HeaderMap,
) -> (StatusCode, [(axum::http::HeaderName, &'static str); 1], String) {
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let encoded = match state.registry.read() {
        Ok(registry) => ship_engine::metrics::encode(&registry),
        Err(_) => Err(std::fmt::Error),
    };
    let content_type = axum::http::header::CONTENT_TYPE;
    match encoded {
        Ok(text) if openmetrics => (
            StatusCode::OK,
            [(
                content_type,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Ok(text) => (
            StatusCode::OK,
            [(content_type, "text/plain; version=0.0.4; charset=utf-8")],
            crate::metrics::to_prometheus_text(&text),
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(content_type, "text/plain")],
            "cannot encode the metrics\n".into(),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(Extract(state): Extract<State>) -> (StatusCode, &'static str) {
    if !state.crd_installed.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the ShipRelease CRD is not installed: kubectl apply -f deploy/crds/\n",
        )
    } else if state.standby.load(Ordering::SeqCst) {
        // Ready to take over: a standby passes readiness, so rollouts of several replicas
        // proceed; `ship_leader` says which one acts.
        (StatusCode::OK, "standby: another replica leads\n")
    } else if !state.releases_synced.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "ShipReleases not listed yet\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Serves the probe endpoints until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_page))
        .route("/", get(|| async { axum::response::Redirect::to("/status") }))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Waits until every Ship CRD is present, logging once a minute while one is not.
/// Errors other than "not found" (RBAC, connectivity) are retried too: they may be transient.
pub async fn wait_for_crd(client: Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let names = [
        ShipRelease::crd_name(),
        ship_api::ShipPromotion::crd_name(),
        ship_api::ShipEnvironment::crd_name(),
    ];
    let mut attempt: u32 = 0;
    'next: loop {
        for name in names {
            match crds.get_opt(name).await {
                Ok(Some(_)) => continue,
                Ok(None) if attempt.is_multiple_of(30) => {
                    warn!(
                        crd = name,
                        "CRD not installed; apply deploy/crds/ (shipd does not install it; helm upgrade does not either)"
                    );
                }
                Err(err) if attempt.is_multiple_of(30) => {
                    warn!(crd = name, error = %err, "cannot read the CRD; retrying")
                }
                _ => {}
            }
            attempt = attempt.wrapping_add(1);
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue 'next;
        }
        info!(crds = ?names, "CRDs found");
        return Ok(());
    }
}
