//! Wiring of the git source: credentials and the webhook secret from Kubernetes Secrets, the
//! fetch loop, the webhook server, and what happens on a new tip (today: render and validate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use ship_git::mirror::ForcePushPolicy;
use ship_git::watch::{SourceConfig, SourceHandle};
use ship_git::webhook::{Counters, Receiver};
use ship_git::{Credentials, TipChange};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Flags of the git source.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Repository to deploy from (file://, git://, https://, ssh://). Without it shipd only
    /// reconciles ShipReleases created by others.
    #[arg(long, env = "SHIP_REPO_URL")]
    pub repo_url: Option<String>,

    /// Branches to follow (their environments are declared in the repository's ship.yaml).
    #[arg(
        long,
        env = "SHIP_BRANCHES",
        value_delimiter = ',',
        default_value = "main,production"
    )]
    pub branches: Vec<String>,

    /// Directory for the git mirror and scratch space.
    #[arg(long, env = "SHIP_DATA_DIR", default_value = "/var/lib/ship")]
    pub data_dir: PathBuf,

    /// Time between polls of the repository; webhooks trigger fetches sooner.
    #[arg(long, env = "SHIP_POLL_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// On a force-pushed branch: `follow` the new tip, or `refuse` it and keep the old one.
    /// Either way it is reported.
    #[arg(long, env = "SHIP_FORCE_PUSH", default_value = "follow")]
    pub force_push: ForcePush,

    /// Namespace of the Secrets named below (default: the pod's namespace).
    #[arg(long, env = "SHIP_SECRET_NAMESPACE", default_value = "default")]
    pub secret_namespace: String,

    /// Secret with git credentials: `username` + `password` (or `token`) for https,
    /// `identity` + `known_hosts` (+ `username`) for ssh.
    #[arg(long, env = "SHIP_GIT_SECRET")]
    pub git_secret: Option<String>,

    /// Address of the push webhook receiver (`POST /hooks/push`).
    #[arg(long, env = "SHIP_WEBHOOK_ADDR", default_value = "0.0.0.0:9292")]
    pub webhook_addr: SocketAddr,

    /// Secret whose key `token` holds the webhook's shared secret. Without it the receiver is off.
    #[arg(long, env = "SHIP_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
}

/// Force-push policy flag.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ForcePush {
    /// Follow the rewritten branch (and report it).
    Follow,
    /// Keep the old tip (and report the refused one).
    Refuse,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    ship_render::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 30s or 5m"))
}

fn key(secret: &Secret, name: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(name)?;
    Some(
        String::from_utf8_lossy(&value.0)
            .trim_end_matches('\n')
            .to_owned(),
    )
}

/// Credentials from a Secret's keys (Flux's conventions). Values are never logged.
fn credentials_from(secret: &Secret) -> Credentials {
    if let Some(identity) = key(secret, "identity") {
        return Credentials::Ssh {
            username: key(secret, "username").unwrap_or_else(|| "git".into()),
            private_key: identity,
            known_hosts: key(secret, "known_hosts").unwrap_or_default(),
        };
    }
    match key(secret, "password").or_else(|| key(secret, "token")) {
        Some(token) => Credentials::Token {
            username: key(secret, "username").unwrap_or_else(|| "git".into()),
            token,
        },
        None => Credentials::None,
    }
}

/// Keeps `tx` up to date with the named Secret, mapped by `map`.
fn follow_secret<T: Send + Sync + 'static>(
    client: Client,
    namespace: &str,
    name: String,
    tx: watch::Sender<T>,
    map: fn(&Secret) -> T,
) {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(secret) => {
                    info!(secret = name, "secret loaded");
                    let _ = tx.send(map(&secret));
                }
                Err(err) => warn!(secret = name, error = %err, "cannot read secret"),
            }
        }
    });
}

/// Starts the source (and the webhook receiver when configured). Returns `None` without a URL.
pub async fn start(
    args: &SourceArgs,
    client: Client,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<(SourceHandle, mpsc::Receiver<TipChange>, Arc<Counters>)>> {
    let Some(url) = args.repo_url.clone() else {
        info!("no --repo-url: not following a repository");
        return Ok(None);
    };
    let (creds_tx, creds_rx) = watch::channel(Credentials::None);
    if let Some(name) = &args.git_secret {
        follow_secret(
            client.clone(),
            &args.secret_namespace,
            name.clone(),
            creds_tx,
            credentials_from,
        );
    }
    let mut config = SourceConfig::new(url, args.branches.clone(), args.data_dir.join("mirror.git"));
    config.poll_interval = args.poll_interval;
    config.force_push = match args.force_push {
        ForcePush::Follow => ForcePushPolicy::Follow,
        ForcePush::Refuse => ForcePushPolicy::Refuse,
    };
    let (handle, tips) = ship_git::watch::spawn(config, creds_rx, crate::stopped(stop.clone()))?;
    info!(
        url = handle
            .mirror()
            .lock()
            .map(|m| m.display_url())
            .unwrap_or_default(),
        "following repository"
    );

    let counters = Arc::new(Counters::default());
    if let Some(name) = &args.webhook_secret {
        let (secret_tx, mut secret_rx) = watch::channel(Vec::<u8>::new());
        follow_secret(client, &args.secret_namespace, name.clone(), secret_tx, |s| {
            key(s, "token").map(String::into_bytes).unwrap_or_default()
        });
        // The receiver refuses everything until the secret is loaded (an empty secret verifies nothing).
        let _ = tokio::time::timeout(Duration::from_secs(10), secret_rx.changed()).await;
        let secret: Arc<[u8]> = Arc::from(secret_rx.borrow().clone());
        let trigger = handle.clone();
        let receiver = Receiver {
            secret,
            branches: Arc::from(args.branches.clone()),
            trigger: Arc::new(move |_branch: &str| trigger.trigger()),
            counters: counters.clone(),
        };
        let listener = tokio::net::TcpListener::bind(args.webhook_addr)
            .await
            .with_context(|| format!("cannot listen on {} for webhooks", args.webhook_addr))?;
        info!(addr = %listener.local_addr()?, path = ship_git::webhook::PATH, "webhook receiver listening");
        tokio::spawn(async move {
            let server = axum::serve(listener, ship_git::webhook::router(receiver))
                .with_graceful_shutdown(crate::stopped(stop));
            if let Err(err) = server.await {
                warn!(error = %err, "webhook server failed");
            }
        });
    }
    Ok(Some((handle, tips, counters)))
}

/// Consumes tip changes: renders and validates each new tip (the release engine takes over here).
pub async fn handle_tips(source: SourceHandle, mut tips: mpsc::Receiver<TipChange>, scratch: PathBuf) {
    while let Some(change) = tips.recv().await {
        let mirror = source.mirror();
        let scratch = scratch.clone();
        let branch = change.branch.clone();
        let commit = change.new;
        let loaded = tokio::task::spawn_blocking(move || {
            let mirror = mirror
                .lock()
                .map_err(|_| anyhow::anyhow!("mirror lock poisoned"))?;
            Ok::<_, anyhow::Error>(ship_engine::source::load_commit(
                &mirror, commit, &branch, &scratch,
            ))
        })
        .await;
        match loaded {
            Ok(Ok(Ok(loaded))) => info!(
                environment = loaded.environment,
                commit = %commit,
                branch = change.branch,
                objects = loaded.rendered.manifests.len(),
                "commit rendered and validated"
            ),
            Ok(Ok(Err(err))) => warn!(
                branch = change.branch,
                commit = %commit,
                reason = err.label(),
                error = %err,
                "commit cannot be deployed"
            ),
            Ok(Err(err)) => warn!(error = %err, "cannot read the mirror"),
            Err(err) => warn!(error = %err, "render task failed"),
        }
    }
}
