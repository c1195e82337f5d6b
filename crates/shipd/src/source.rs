//! Wiring of the git source: credentials and the webhook secret from Kubernetes Secrets, the
//! fetch loop, the webhook server, and a release for every new tip.

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
use ship_git::{Credentials, TipChange, TipChangeKind};
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

/// Parses a duration flag like `30s` or `5m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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
    let creds_rx = credentials_following(&client, &args.secret_namespace, args.git_secret.as_ref());
    let push_credentials = credentials_following(
        &client,
        &args.secret_namespace,
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

/// Where tips become releases.
#[derive(Clone)]
pub struct TipTarget {
    /// Client of the cluster holding the ShipReleases.
    pub client: Client,
    /// Namespace the ShipReleases are created in.
    pub namespace: String,
    /// The repository.
    pub repo: ship_engine::source::Repo,
    /// Branches followed.
    pub branches: Vec<String>,
    /// Refused force-pushes make no release.
    pub force_push: ForcePushPolicy,
    /// Tips handled (a release made or found), by branch: the environments record them.
    pub handled: watch::Sender<std::collections::BTreeMap<String, String>>,
    /// Asks the environments to record what they see now (a moved tip: out of sync), before
    /// the release that follows the tip is made.
    pub look_now: mpsc::Sender<ship_engine::environment::LookNow>,
}

impl std::fmt::Debug for TipTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TipTarget")
            .field("namespace", &self.namespace)
            .field("branches", &self.branches)
            .finish_non_exhaustive()
    }
}

/// Makes (or finds) the release of `commit`, the tip of `branch`. `false` when it could not be
/// made now (the API server is away, for example) and must be tried again.
async fn release_tip(
    target: &TipTarget,
    branch: &str,
    commit: git2::Oid,
    seen: ship_engine::plan::TipSeen,
) -> bool {
    let repo = target.repo.clone();
    let (c, b) = (commit.to_string(), branch.to_owned());
    // The commit's own ship.yaml says which environment the branch deploys. When it cannot be
    // read, the environment named like the branch gets a release that fails with the reason.
    let environment = match tokio::task::spawn_blocking(move || repo.environment_for(&c, &b)).await {
        Ok(Ok(environment)) => environment,
        Ok(Err(ship_engine::source::LoadError::NoEnvironment(_))) => {
            info!(branch, commit = %commit, "no environment deploys this branch; no release");
            return true;
        }
        Ok(Err(err)) => {
            warn!(branch, commit = %commit, reason = err.label(), error = %err, "cannot read ship.yaml at the tip");
            branch.to_owned()
        }
        Err(err) => {
            warn!(error = %err, "ship.yaml task failed");
            return false;
        }
    };
    let commit_text = commit.to_string();
    let new = ship_engine::releases::NewRelease {
        environment: &environment,
        branch,
        commit: &commit_text,
        reason: ship_api::Reason::Push,
        promotion: None,
    };
    match ship_engine::releases::create_for_tip(&target.client, &target.namespace, &new, seen).await {
        Ok(Some(release)) => {
            info!(environment, commit = %commit, release, branch, "release created");
            true
        }
        Ok(None) => {
            tracing::debug!(environment, commit = %commit, "the environment already follows this tip");
            true
        }
        Err(err) => {
            warn!(environment, commit = %commit, branch, error = %err, "cannot create the release; retrying");
            false
        }
    }
}

/// Longest wait for the environments to record a moved tip; the release is made regardless.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Asks the environments to record the tips as they stand, and waits (briefly) until they have.
async fn record_environments(target: &TipTarget) {
    let (answer, written) = tokio::sync::oneshot::channel();
    if target.look_now.send(answer).await.is_ok() {
        let _ = tokio::time::timeout(RECORD_WAIT, written).await;
    }
}

/// How often tips whose release could not be made are tried again.
const RETRY_TIPS: Duration = Duration::from_secs(2);

/// Turns tips into releases: first the tips already in the mirror (a restart after a fetch
/// must not lose a release), then every tip change the source reports.
pub async fn handle_tips(target: TipTarget, mut tips: mpsc::Receiver<TipChange>) {
    let known: Vec<(String, git2::Oid)> = match target.repo.mirror.lock() {
        Ok(mirror) => target
            .branches
            .iter()
            .filter_map(|b| Some((b.clone(), mirror.tip(b)?)))
            .collect(),
        Err(_) => Vec::new(),
    };
    // Tips still owed a release, by branch (a newer tip replaces an older one): a tip is never
    // dropped because the API server was away when it arrived.
    // How each was seen decides whether a commit released before is released again
    // (`plan::tip_release`): only a fetch that saw the branch move says it moved.
    // The tips the environments last handled: a tip first seen without a fetch that saw it
    // move (in the mirror at start, or a fresh mirror's first fetch) is compared with them.
    use ship_engine::plan::{TipSeen, first_sight};
    let mut recorded = ship_engine::environment::handled_tips(&target.client, &target.namespace).await;
    let mut owed: std::collections::BTreeMap<String, (git2::Oid, TipSeen)> = known
        .into_iter()
        .map(|(b, c)| {
            let seen = first_sight(recorded.get(&b).map(String::as_str), &c.to_string());
            (b, (c, seen))
        })
        .collect();
    loop {
        let branches: Vec<(String, (git2::Oid, TipSeen))> =
            owed.iter().map(|(b, c)| (b.clone(), *c)).collect();
        for (branch, (commit, seen)) in branches {
            record_environments(&target).await;
            if release_tip(&target, &branch, commit, seen).await {
                recorded.insert(branch.clone(), commit.to_string());
                target.handled.send_modify(|h| {
                    h.insert(branch.clone(), commit.to_string());
                });
                if owed.get(&branch).map(|o| o.0) == Some(commit) {
                    owed.remove(&branch);
                }
            }
        }
        let change = if owed.is_empty() {
            tips.recv().await
        } else {
            match tokio::time::timeout(RETRY_TIPS, tips.recv()).await {
                Ok(change) => change,
                Err(_elapsed) => continue,
            }
        };
        let Some(change) = change else { return };
        if change.kind == TipChangeKind::ForcePushed && target.force_push == ForcePushPolicy::Refuse {
            continue;
        }
        let seen = match change.kind {
            TipChangeKind::FastForward | TipChangeKind::ForcePushed => TipSeen::Moved,
            TipChangeKind::Created => first_sight(
                recorded.get(&change.branch).map(String::as_str),
                &change.new.to_string(),
            ),
        };
        owed.insert(change.branch, (change.new, seen));
    }
}
