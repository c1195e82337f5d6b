//! Wiring of the git source: credentials and the webhook secret from Kubernetes Secrets, the
//! fetch loop and the webhook server. Tips become releases in `ship_engine::tips`.

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

    /// Namespace of the Secrets named below (default: the pod's namespace, from POD_NAMESPACE
    /// or the in-cluster service account; outside a cluster, the kubeconfig context's).
    #[arg(long, env = "SHIP_SECRET_NAMESPACE")]
    pub secret_namespace: Option<String>,

    /// Secret with git credentials: `username` + `password` (or `token`) for https, and
    /// `ca.crt` for a server whose certificate a private CA signed; `identity` +
    /// `known_hosts` (+ `username`) for ssh.
    #[arg(long, env = "SHIP_GIT_SECRET")]
    pub git_secret: Option<String>,

    /// Secret with credentials that may push (same keys as --git-secret), used only to
    /// fast-forward the promotion's target branch. Default: --git-secret.
    #[arg(long, env = "SHIP_GIT_PUSH_SECRET")]
    pub git_push_secret: Option<String>,

    /// Address of the push webhook receiver (`POST /hooks/push`).
    #[arg(long, env = "SHIP_WEBHOOK_ADDR", default_value = "0.0.0.0:9292")]
    pub webhook_addr: SocketAddr,

    /// Secret whose key `token` holds the webhook's shared secret. Without it the receiver is off.
    #[arg(long, env = "SHIP_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
}

impl SourceArgs {
    /// Where the Secrets named by the flags live, once [`SourceArgs::resolve_secret_namespace`]
    /// has filled it in (`default` before, as the API server's own default namespace).
    pub fn secret_namespace(&self) -> &str {
        self.secret_namespace.as_deref().unwrap_or("default")
    }

    /// Fills in the Secret namespace when no flag set it: the pod's namespace (`POD_NAMESPACE`,
    /// which the chart sets), else the client's default namespace (the in-cluster service
    /// account's namespace, or the kubeconfig context's).
    pub fn resolve_secret_namespace(&mut self, pod_namespace: Option<String>, client_default: &str) {
        if self.secret_namespace.is_none() {
            self.secret_namespace = Some(
                pod_namespace
                    .filter(|namespace| !namespace.is_empty())
                    .unwrap_or_else(|| client_default.to_owned()),
            );
        }
    }
}

/// Force-push policy flag.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ForcePush {
    /// Follow the rewritten branch (and report it).
    Follow,
    /// Keep the old tip (and report the refused one).
    Refuse,
}

impl ForcePush {
    /// The mirror's policy for this flag.
    pub fn policy(self) -> ForcePushPolicy {
        match self {
            ForcePush::Follow => ForcePushPolicy::Follow,
            ForcePush::Refuse => ForcePushPolicy::Refuse,
        }
    }
}

pub use ship_render::config::duration_flag as parse_duration;

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
    // Flux's key for a private CA: the HTTPS server's certificate is checked against it.
    let ca_bundle = key(secret, "ca.crt");
    match (
        key(secret, "password").or_else(|| key(secret, "token")),
        ca_bundle,
    ) {
        (Some(token), ca_bundle) => Credentials::Token {
            username: key(secret, "username").unwrap_or_else(|| "git".into()),
            token,
            ca_bundle,
        },
        (None, Some(ca_bundle)) => Credentials::Anonymous { ca_bundle },
        (None, None) => Credentials::None,
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

/// A running source.
#[derive(Debug)]
pub struct Started {
    /// The fetch loop.
    pub handle: SourceHandle,
    /// Tip changes, as fetches find them.
    pub tips: mpsc::Receiver<TipChange>,
    /// Webhook request counters.
    pub webhook_counters: Arc<Counters>,
    /// Credentials that may push (promotions).
    pub push_credentials: watch::Receiver<Credentials>,
}

/// Credentials kept up to date from the Secret `name` (none without a name).
fn credentials_following(
    client: &Client,
    namespace: &str,
    name: Option<&String>,
) -> watch::Receiver<Credentials> {
    let (tx, rx) = watch::channel(Credentials::None);
    if let Some(name) = name {
        follow_secret(client.clone(), namespace, name.clone(), tx, credentials_from);
    }
    rx
}

/// Starts the source (and the webhook receiver when configured). Returns `None` without a URL.
pub async fn start(
    args: &SourceArgs,
    client: Client,
    stop: watch::Receiver<bool>,
    metrics: Arc<ship_engine::metrics::Metrics>,
) -> anyhow::Result<Option<Started>> {
    let Some(url) = args.repo_url.clone() else {
        info!("no --repo-url: not following a repository");
        return Ok(None);
    };
    let secret_namespace = args.secret_namespace();
    let creds_rx = credentials_following(&client, secret_namespace, args.git_secret.as_ref());
    let push_credentials = credentials_following(
        &client,
        secret_namespace,
        args.git_push_secret.as_ref().or(args.git_secret.as_ref()),
    );
    let mut config = SourceConfig::new(url, args.branches.clone(), args.data_dir.join("mirror.git"));
    config.poll_interval = args.poll_interval;
    config.force_push = args.force_push.policy();
    config.observer = Some(ship_git::watch::FetchObserver(Arc::new(move |took, failure| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics.fetch(took, failure, now);
    })));
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
        follow_secret(client, secret_namespace, name.clone(), secret_tx, |s| {
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
            deliveries: Arc::default(),
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
    Ok(Some(Started {
        handle,
        tips,
        webhook_counters: counters,
        push_credentials,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        source: SourceArgs,
    }

    fn parsed(flags: &[&str]) -> SourceArgs {
        let mut argv = vec!["shipd"];
        argv.extend_from_slice(flags);
        Wrapper::try_parse_from(argv)
            .map(|w| w.source)
            .expect("flags parse")
    }

    #[test]
    fn the_secret_namespace_is_the_flag_then_the_pods_then_the_clients() {
        let mut flag = parsed(&["--secret-namespace", "vault"]);
        flag.resolve_secret_namespace(Some("ship".into()), "default");
        assert_eq!(flag.secret_namespace(), "vault");

        let mut in_pod = parsed(&[]);
        in_pod.resolve_secret_namespace(Some("ship".into()), "default");
        assert_eq!(
            in_pod.secret_namespace(),
            "ship",
            "the pod's namespace, not `default`"
        );

        let mut empty_pod = parsed(&[]);
        empty_pod.resolve_secret_namespace(Some(String::new()), "team-a");
        assert_eq!(empty_pod.secret_namespace(), "team-a");

        let mut outside = parsed(&[]);
        outside.resolve_secret_namespace(None, "team-a");
        assert_eq!(
            outside.secret_namespace(),
            "team-a",
            "the kubeconfig context's namespace"
        );
    }
}
