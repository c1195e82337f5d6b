//! `shipd`: Ship's controller daemon. Wiring only: configuration, logging, the HTTP endpoints,
//! and the controllers from the library crates.

mod http;
mod logging;
mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::Parser;
use tokio::sync::watch;
use tracing::{error, info};

/// Ship's controller: deploys two branches of one git repository to their environments.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address of the probe server (`/healthz`, `/readyz`).
    #[arg(long, env = "SHIP_PROBE_ADDR", default_value = "0.0.0.0:8080")]
    probe_addr: SocketAddr,

    /// Watch ShipReleases in this namespace only (default: all namespaces).
    #[arg(long, env = "SHIP_NAMESPACE")]
    namespace: Option<String>,

    /// Log format: `json` (for clusters), `plain` (for people), or `auto` (plain on a TTY).
    #[arg(long, env = "SHIP_LOG_FORMAT", default_value = "auto")]
    log_format: logging::Format,

    /// Name of this instance in events (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,

    #[command(flatten)]
    source: source::SourceArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    logging::init(args.log_format);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            error!(error = format!("{err:#}"), "shipd stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested; finishing in-flight work");
        let _ = stop_tx.send(true);
    });

    let config = kube::Config::infer()
        .await
        .context("cannot find a kubeconfig or in-cluster configuration")?;
    info!(cluster = %config.cluster_url, "connecting");
    let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;

    let state = http::State::default();
    let listener = tokio::net::TcpListener::bind(args.probe_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.probe_addr))?;
    info!(addr = %listener.local_addr()?, "probe server listening");
    let server = tokio::spawn(http::serve(listener, state.clone(), stopped(stop_rx.clone())));

    // Ship never installs its CRD silently: wait for an operator to apply deploy/crds/.
    tokio::select! {
        found = http::wait_for_crd(client.clone()) => found?,
        () = stopped(stop_rx.clone()) => return Ok(()),
    }
    state
        .crd_installed
        .store(true, std::sync::atomic::Ordering::SeqCst);

    if let Some((handle, tips, _webhook_counters)) =
        source::start(&args.source, client.clone(), stop_rx.clone()).await?
    {
        tokio::spawn(source::handle_tips(
            handle,
            tips,
            args.source.data_dir.join("scratch"),
        ));
    }

    let ctx = ship_engine::Context::new(client, args.namespace, args.instance);
    let ready: Arc<AtomicBool> = state.releases_synced.clone();
    ship_engine::run(ctx, ready, stopped(stop_rx)).await;
    info!("controller stopped");
    server
        .await
        .context("probe server task failed")?
        .context("probe server failed")?;
    Ok(())
}

/// Resolves once a stop has been requested.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
