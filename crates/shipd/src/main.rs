//! `shipd`: Ship's controller daemon. Wiring only: configuration, logging, the HTTP endpoints,
//! and the controllers from the library crates.

mod http;
mod logging;
mod metrics;
mod page;
mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::Parser;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// jemalloc (see Cargo.toml): freed memory goes back to the system, so the resident set
/// follows what shipd holds rather than what it once held.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Ship's controller: deploys two branches of one git repository to their environments.
#[derive(Debug, Parser)]
// A flag given twice takes its last value: the chart's extraArgs come after its own flags and
// override them, as with kubectl and Flux's controllers.
#[command(version, about, args_override_self = true)]
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

    /// Settled ShipReleases kept per environment; older ones are deleted.
    #[arg(long, env = "SHIP_HISTORY_LIMIT", default_value_t = 10)]
    history_limit: usize,

    /// Dry runs and applies sent at once. A release writes only the objects whose manifest
    /// changed or which drifted; this bounds how many of those requests are in flight.
    #[arg(long, env = "SHIP_APPLY_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    apply_concurrency: u16,

    /// Watch the deployed objects (metadata only) and correct a change by another writer as
    /// soon as it happens; `false`: only every `--drift-interval`.
    #[arg(long, env = "SHIP_DRIFT_WATCH", default_value_t = true, action = clap::ArgAction::Set)]
    drift_watch: bool,

    /// How often the deployed release is re-applied to correct hand edits (drift).
    #[arg(long, env = "SHIP_DRIFT_INTERVAL", default_value = "5m", value_parser = source::parse_duration)]
    drift_interval: std::time::Duration,

    /// Testing only (fault injection): `POINT:DURATION`, e.g. `Applying:5s` (after persisting
    /// that phase) or `MidApply:5s`, pauses there so a test can kill shipd exactly there.
    #[arg(long, env = "SHIP_TEST_PAUSE_AFTER", hide = true, value_parser = parse_pause)]
    test_pause_after: Option<(String, std::time::Duration)>,

    /// Testing only (fault injection): hand each reconcile the release's previous version, as a
    /// cache lagging its own writes would, so every decision is first taken on a stale view.
    #[arg(long, env = "SHIP_TEST_STALE_VIEWS", hide = true)]
    test_stale_views: bool,

    /// Longest time between two looks at the promotion (scheduled times and
    /// `kubectl ship promote` requests wake it sooner).
    #[arg(long, env = "SHIP_PROMOTION_INTERVAL", default_value = "15s", value_parser = source::parse_duration)]
    promotion_interval: std::time::Duration,

    #[command(flatten)]
    leader: LeaderArgs,

    /// Testing only: the promotion schedule's clock starts at this RFC 3339 time and runs at
    /// real speed (the release engine keeps the real clock).
    #[arg(long, env = "SHIP_TEST_CLOCK", hide = true)]
    test_clock: Option<jiff::Timestamp>,

    #[command(flatten)]
    source: source::SourceArgs,

    #[command(flatten)]
    notify: NotifyArgs,
}

/// Notification flags.
#[derive(Debug, Clone, clap::Args)]
struct NotifyArgs {
    /// The notifications file (docs/notifications.md): commit statuses, chat and signed
    /// webhooks, each credential a Secret reference in --secret-namespace. Without it, Ship
    /// sends none. A file that cannot be used stops shipd with the reason.
    #[arg(long, env = "SHIP_NOTIFICATIONS")]
    notifications: Option<std::path::PathBuf>,

    /// How long a delivery is retried (with backoff, on 5xx, 408, 429 and no answer) before
    /// it is given up on with a NotificationFailed Warning event.
    #[arg(long, env = "SHIP_NOTIFY_GIVE_UP_AFTER", default_value = "10m", value_parser = source::parse_duration)]
    notify_give_up_after: std::time::Duration,

    /// How long one attempt may take.
    #[arg(long, env = "SHIP_NOTIFY_ATTEMPT_TIMEOUT", default_value = "10s", value_parser = source::parse_duration)]
    notify_attempt_timeout: std::time::Duration,

    /// Transitions older than this are not notified (a target added today does not replay
    /// last month's releases).
    #[arg(long, env = "SHIP_NOTIFY_MAX_AGE", default_value = "1h", value_parser = source::parse_duration)]
    notify_max_age: std::time::Duration,
}

/// The notification targets of the file `args` names (none without one).
fn notification_targets(
    args: &NotifyArgs,
    repo_url: Option<&str>,
) -> anyhow::Result<(Vec<ship_notify::config::Target>, Option<String>)> {
    let Some(path) = &args.notifications else {
        return Ok((Vec::new(), None));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the notifications file {}", path.display()))?;
    let config =
        ship_notify::config::NotifyConfig::parse(&text).with_context(|| format!("in {}", path.display()))?;
    let targets = config
        .targets(repo_url.unwrap_or_default())
        .with_context(|| format!("in {}", path.display()))?;
    Ok((targets, config.status_page_url))
}

/// Leader election flags.
#[derive(Debug, Clone, clap::Args)]
struct LeaderArgs {
    /// Run several replicas: only the holder of a coordination.k8s.io Lease fetches, applies and
    /// tests; the others stand by and take over when it stops renewing.
    #[arg(long, env = "SHIP_LEADER_ELECT")]
    leader_elect: bool,

    /// Name of the Lease (in --namespace, else --secret-namespace).
    #[arg(long, env = "SHIP_LEASE_NAME", default_value = "ship-controller")]
    lease_name: String,

    /// How long the Lease holds without renewal before a standby takes it.
    #[arg(long, env = "SHIP_LEASE_DURATION", default_value = "15s", value_parser = source::parse_duration)]
    lease_duration: std::time::Duration,

    /// How long the leader keeps trying to renew before it steps down (and exits).
    #[arg(long, env = "SHIP_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = source::parse_duration)]
    lease_renew_deadline: std::time::Duration,

    /// Time between renewals, and between a standby's looks at the Lease.
    #[arg(long, env = "SHIP_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = source::parse_duration)]
    lease_retry_period: std::time::Duration,
}

fn parse_pause(text: &str) -> Result<(String, std::time::Duration), String> {
    let (point, duration) = text.split_once(':').ok_or("expected POINT:DURATION")?;
    let known = ship_api::Phase::ALL.iter().any(|p| p.as_str() == point)
        || ship_engine::executor::FAULT_POINTS.contains(&point);
    if !known {
        return Err(format!(
            "{point:?} is neither a phase nor one of {:?}",
            ship_engine::executor::FAULT_POINTS
        ));
    }
    Ok((point.to_owned(), source::parse_duration(duration)?))
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

    // A notifications file that cannot be used stops shipd before it acts, with the reason.
    let (notify_targets, status_page_url) =
        notification_targets(&args.notify, args.source.repo_url.as_deref())?;

    let mut config = kube::Config::infer()
        .await
        .context("cannot find a kubeconfig or in-cluster configuration")?;
    info!(cluster = %config.cluster_url, "connecting");
    // The API server's audit log names each replica by its user agent, as it names kubectl's.
    let identity = args.instance.clone().unwrap_or_else(default_identity);
    let agent = format!("shipd/{} ({identity})", env!("CARGO_PKG_VERSION"));
    if let Ok(agent) = axum::http::HeaderValue::from_str(&agent) {
        config.headers.push((axum::http::header::USER_AGENT, agent));
    }
    let mut args = args;
    args.source
        .resolve_secret_namespace(std::env::var("POD_NAMESPACE").ok(), &config.default_namespace);
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

    let settings = ship_engine::Settings {
        history_limit: args.history_limit,
        drift_interval: args.drift_interval,
        pause_at: args.test_pause_after,
        stale_views: args.test_stale_views,
        apply_concurrency: usize::from(args.apply_concurrency),
        drift_watch: args.drift_watch,
    };
    let metrics = Arc::new(ship_engine::metrics::Metrics::default());
    if let Ok(mut registry) = state.registry.write() {
        *registry = metrics::registry(&metrics, None);
    }
    // Where the Lease, the ShipPromotion and the ShipEnvironments live: --namespace, else the
    // Secret namespace.
    let home_namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| args.source.secret_namespace().to_owned());
    // The test clock moves the promotion's schedule only (and so the times of its runs, which
    // the notifier compares with its own). The release engine keeps the real clock (its
    // default): its timestamps are compared with those other shipd instances, kubectl ship
    // and the API server wrote, and a deadline persisted by one shipd must mean the same to
    // the next, whatever test clock that one starts with.
    let promotion_clock = match args.test_clock {
        Some(start) => ship_engine::clock::clock_from(start),
        None => ship_engine::clock::system_clock(),
    };
    if args.leader.leader_elect {
        let namespace = home_namespace.clone();
        let identity = identity.clone();
        let timing = ship_lease::Timing {
            lease_duration: args.leader.lease_duration,
            renew_deadline: args.leader.lease_renew_deadline,
            retry_period: args.leader.lease_retry_period,
        };
        timing.validate().context("invalid --lease-* settings")?;
        let elector = ship_lease::Elector::new(
            client.clone(),
            &namespace,
            &args.leader.lease_name,
            &identity,
            timing,
        );
        state.standby.store(true, std::sync::atomic::Ordering::SeqCst);
        label_own_pod(&client, false).await;
        let renewed = tokio::select! {
            renewed = elector.acquire() => renewed,
            () = stopped(stop_rx.clone()) => return Ok(()),
        };
        state.standby.store(false, std::sync::atomic::Ordering::SeqCst);
        label_own_pod(&client, true).await;
        tokio::spawn(async move {
            let lost = elector.hold(renewed).await;
            // Fencing: the exit stops every controller and cuts every API write in flight, before
            // a standby can take the Lease (`hold` returns by the renew deadline, shorter than
            // the Lease duration). Whatever this process did is persisted; a fresh process
            // starts as a standby.
            error!(reason = ?lost, "lost the leader Lease; exiting so that one leader acts at a time");
            std::process::exit(1);
        });
    }
    metrics.leader.set(1);
    let mut ctx = ship_engine::Context::new(client.clone(), args.namespace.clone(), args.instance)
        .with_settings(settings)
        .with_metrics(metrics.clone())
        .with_secret_namespace(args.source.secret_namespace().to_owned());
    // One watch per kind, shared (ship_engine::watches): the ShipRelease watch is the
    // controller's trigger and store, read by the keeper and the page too; the environments and
    // promotions feed the keeper, the promotion loop, the page and the notifier.
    let release_api: kube::Api<kube::core::DeserializeGuard<ship_api::ShipRelease>> = match &args.namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    };
    let release_watch = ship_engine::watches::ReleaseWatch::new(release_api);
    let environment_watch = ship_engine::watches::follow::<ship_api::ShipEnvironment>(kube::Api::namespaced(
        client.clone(),
        &home_namespace,
    ));
    ctx = ctx.with_environments(environment_watch.clone(), &home_namespace);
    let promotion_watch = ship_engine::watches::follow::<ship_api::ShipPromotion>(kube::Api::namespaced(
        client.clone(),
        &home_namespace,
    ));
    let page_sources = page::Sources::new(
        ctx.release_store(),
        &environment_watch,
        &promotion_watch,
        ctx.clock.clone(),
    );
    let notifier = ship_engine::notifier::Notifier {
        client: client.clone(),
        promotions: promotion_watch.store(),
        secret_namespace: args.source.secret_namespace().to_owned(),
        targets: Arc::new(notify_targets),
        status_page_url,
        give_up_after: args.notify.notify_give_up_after,
        max_age: args.notify.notify_max_age,
        attempt_timeout: args.notify.notify_attempt_timeout,
        recorder: ctx.recorder.clone(),
        metrics: metrics.clone(),
        releases: ctx.release_store(),
        clock: ctx.clock.clone(),
        promotion_clock: promotion_clock.clone(),
        http: ctx.http_client(),
        record_lock: Arc::default(),
    };
    let _ = state.page.set(page_sources);
    // Its own task: a slow or dead receiver never holds up a release.
    tokio::spawn(ship_engine::notifier::run(notifier, stopped(stop_rx.clone())));
    let started = source::start(&args.source, client.clone(), stop_rx.clone(), metrics.clone()).await?;
    let webhook_counters = started.as_ref().map(|s| s.webhook_counters.clone());
    if let Ok(mut registry) = state.registry.write() {
        *registry = metrics::registry(&metrics, webhook_counters);
    }
    if let Some(started) = started {
        let handle = started.handle;
        let tips = started.tips;
        let scratch = args.source.data_dir.join("scratch");
        // The source owns the data directory now (the mirror's lock): clear what a killed
        // predecessor left mid-render.
        match ship_engine::repo::clear_scratch(&scratch) {
            Ok(0) => {}
            Ok(removed) => warn!(
                removed,
                "removed the export directories an earlier process left mid-render"
            ),
            Err(err) => {
                warn!(error = %err, "cannot clear the scratch directory; renders still get their own")
            }
        }
        let repo = ship_engine::repo::Repo {
            mirror: handle.mirror(),
            scratch,
            source: Some(handle.clone()),
            push: Some(ship_engine::repo::PushAccess {
                credentials: started.push_credentials,
            }),
        };
        ctx = ctx.with_repo(repo.clone());
        let namespace = home_namespace.clone();
        let promoter = ship_engine::promotion::Promoter {
            client: client.clone(),
            namespace: namespace.clone(),
            repo: repo.clone(),
            config_branch: args
                .source
                .branches
                .first()
                .cloned()
                .unwrap_or_else(|| "main".into()),
            recorder: ctx.recorder.clone(),
            clock: promotion_clock,
            release_clock: ctx.clock.clone(),
            interval: args.promotion_interval,
            metrics: metrics.clone(),
            source: Some(handle.status()),
            push_check: Arc::default(),
        };
        // Holds, as the environments' keeper sees them: the promotion and the release maker
        // wake on a change (each reads the hold itself before it decides).
        let (holds_tx, holds_rx) = watch::channel(std::collections::BTreeSet::new());
        tokio::spawn(ship_engine::promotion::run(
            promoter,
            promotion_watch.clone(),
            holds_rx.clone(),
            stopped(stop_rx.clone()),
        ));
        let (handled_tx, handled_rx) = watch::channel(std::collections::BTreeMap::new());
        let keeper = ship_engine::environment::Keeper {
            client: client.clone(),
            namespace: namespace.clone(),
            repo: repo.clone(),
            branches: args.source.branches.clone(),
            source: handle.status(),
            handled: handled_rx,
            recorder: ctx.recorder.clone(),
            metrics: metrics.clone(),
            interval: args.promotion_interval,
            clock: ctx.clock.clone(),
            holds: holds_tx,
        };
        let (look_now, looks) = tokio::sync::mpsc::channel(8);
        tokio::spawn(ship_engine::environment::run(
            keeper,
            release_watch.shared.clone(),
            environment_watch.clone(),
            looks,
            stopped(stop_rx.clone()),
        ));
        let target = ship_engine::tips::TipTarget {
            client,
            namespace,
            repo,
            branches: args.source.branches.clone(),
            force_push: args.source.force_push.policy(),
            handled: handled_tx,
            look_now,
            holds: holds_rx,
            clock: ctx.clock.clone(),
        };
        tokio::spawn(ship_engine::tips::handle_tips(target, tips));
    }

    let ready: Arc<AtomicBool> = state.releases_synced.clone();
    ship_engine::run(ctx, &release_watch, ready, stopped(stop_rx)).await;
    info!("controller stopped");
    server
        .await
        .context("probe server task failed")?
        .context("probe server failed")?;
    Ok(())
}

/// In a cluster (POD_NAME and POD_NAMESPACE set): labels this Pod `ship.dev/leader` true or
/// false, so that the webhook Service, which selects `true`, reaches the leader only.
async fn label_own_pod(client: &kube::Client, leader: bool) {
    let (Ok(name), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE")) else {
        return;
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({"metadata": {"labels": {"ship.dev/leader": leader.to_string()}}});
    if let Err(err) = pods
        .patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(pod = name, error = %err, "cannot label this Pod as leader or standby");
    }
}

/// This process's name in the Lease without --instance (POD_NAME): host name and process id.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "shipd".into());
    format!("{host}-{}", std::process::id())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_given_twice_takes_its_last_value_as_the_charts_extra_args_need() {
        let args = Args::try_parse_from([
            "shipd",
            "--history-limit=10",
            "--log-format=json",
            // the chart's extraArgs, after its own flags
            "--history-limit=3",
            "--log-format=plain",
        ])
        .expect("a repeated flag is accepted");
        assert_eq!(args.history_limit, 3);
        assert!(
            matches!(args.log_format, logging::Format::Plain),
            "{:?}",
            args.log_format
        );
    }
}
