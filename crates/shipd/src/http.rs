//! The probe server: `/healthz` (the process is alive), `/readyz` (it can do its job) and
//! `/metrics` (Prometheus, OpenMetrics text).

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
