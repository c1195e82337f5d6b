//! Keeps the mirror up to date: a fetch every poll interval, at once on a webhook trigger, and
//! with exponential backoff while the remote fails. Tip changes go out on a channel; the source's
//! health is published as a [`SourceStatus`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

use crate::Credentials;
use crate::mirror::{ForcePushPolicy, GitError, MAX_PACKS, Mirror, TipChange, TipChangeKind};

/// Default poll interval. Webhooks are the fast path (a fetch within a second of a push);
/// polling is the fallback when a webhook is lost or not configured. One minute matches Flux's
/// default: a fetch with nothing new is one small round trip, and a missed webhook then costs
/// at most a minute, well inside Ship's two-minute promise, where Argo CD's three would not be.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Told of every fetch: how long it took, and its failure's fixed label (`None`: it worked).
#[derive(Clone)]
pub struct FetchObserver(pub Arc<dyn Fn(Duration, Option<&'static str>) + Send + Sync>);

impl std::fmt::Debug for FetchObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchObserver")
    }
}

/// How the source fetches.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Remote URL (file://, git://, https://, ssh://).
    pub url: String,
    /// Branches to follow.
    pub branches: Vec<String>,
    /// Where the bare mirror lives.
    pub mirror_dir: PathBuf,
    /// Time between fetches when all is well.
    pub poll_interval: Duration,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Shortest time between the starts of two fetches: triggers arriving sooner (a webhook
    /// storm) wait and coalesce into one fetch, so work stays bounded. The first trigger after
    /// a quiet spell fetches at once.
    pub min_interval: Duration,
    /// Force-push handling.
    pub force_push: ForcePushPolicy,
    /// Told of every fetch (metrics).
    pub observer: Option<FetchObserver>,
}

impl SourceConfig {
    /// Defaults for `url` and `branches`, mirrored in `mirror_dir`.
    pub fn new(url: impl Into<String>, branches: Vec<String>, mirror_dir: PathBuf) -> Self {
        Self {
            url: url.into(),
            branches,
            mirror_dir,
            poll_interval: DEFAULT_POLL_INTERVAL,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            min_interval: Duration::from_secs(1),
            force_push: ForcePushPolicy::default(),
            observer: None,
        }
    }
}

/// Health of the source, as a condition would state it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// The last fetch succeeded.
    pub ready: bool,
    /// Fixed reason code: `Fetched`, `Starting`, or the error's label.
    pub reason: &'static str,
    /// Human-readable message (no credentials).
    pub message: String,
    /// Fetches that failed in a row.
    pub consecutive_failures: u32,
    /// Delay before the next attempt, while failing.
    pub retry_in: Option<Duration>,
    /// Total fetches attempted.
    pub fetches: u64,
    /// Force-pushes seen, newest last (bounded).
    pub force_pushes: Vec<TipChange>,
    /// Followed branches the remote did not have at the last fetch that reached it. Their
    /// environments keep running what they have; promotions into them wait.
    pub missing_branches: Vec<String>,
}

/// Handle on a running source.
#[derive(Debug, Clone)]
pub struct SourceHandle {
    trigger: Arc<Notify>,
    status: watch::Receiver<SourceStatus>,
    mirror: Arc<Mutex<Mirror>>,
    credentials: watch::Receiver<Credentials>,
}

impl SourceHandle {
    /// Asks for a fetch now. Many requests while a fetch runs coalesce into one more fetch.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }
    /// The latest status.
    pub fn status(&self) -> watch::Receiver<SourceStatus> {
        self.status.clone()
    }
    /// The mirror, for reading commits (lock briefly; fetches take it too).
    pub fn mirror(&self) -> Arc<Mutex<Mirror>> {
        self.mirror.clone()
    }
    /// The credentials fetches use (never printed).
    pub fn credentials(&self) -> Credentials {
        self.credentials.borrow().clone()
    }
}

/// Fetches after which the mirror is reopened (see the fetch loop).
const REOPEN_AFTER_FETCHES: u32 = 50;

/// Opens the mirror and starts fetching. Tip changes are sent on the returned receiver; the task
/// ends when `shutdown` resolves or the receiver is dropped.
pub fn spawn(
    config: SourceConfig,
    credentials: watch::Receiver<Credentials>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SourceHandle, mpsc::Receiver<TipChange>), GitError> {
    let mirror = Arc::new(Mutex::new(Mirror::open(&config.mirror_dir, &config.url)?));
    let trigger = Arc::new(Notify::new());
    let (status_tx, status_rx) = watch::channel(SourceStatus {
        reason: "Starting",
        message: "first fetch not done yet".into(),
        ..SourceStatus::default()
    });
    let (tips_tx, tips_rx) = mpsc::channel(64);
    let handle = SourceHandle {
        trigger: trigger.clone(),
        status: status_rx,
        mirror: mirror.clone(),
        credentials: credentials.clone(),
    };
    tokio::spawn(async move {
        tokio::select! {
            () = fetch_loop(config, credentials, mirror, trigger, status_tx, tips_tx) => {},
            () = shutdown => {},
        }
    });
    Ok((handle, tips_rx))
}

async fn fetch_loop(
    config: SourceConfig,
    credentials: watch::Receiver<Credentials>,
    mirror: Arc<Mutex<Mirror>>,
    trigger: Arc<Notify>,
    status: watch::Sender<SourceStatus>,
    tips: mpsc::Sender<TipChange>,
) {
    let url = crate::mirror::redact_url(&config.url);
    let mut fetched_since_open = 0u32;
    loop {
        let started = Instant::now();
        let creds = credentials.borrow().clone();
        let (m, branches, policy) = (mirror.clone(), config.branches.clone(), config.force_push);
        fetched_since_open += 1;
        let reopen = fetched_since_open >= REOPEN_AFTER_FETCHES;
        if reopen {
            fetched_since_open = 0;
        }
        let result = tokio::task::spawn_blocking(move || {
            let mut mirror = m.lock().map_err(|_| GitError::Read {
                what: "mirror".into(),
                message: "lock poisoned".into(),
            })?;
            if reopen {
                // libgit2 keeps state for every pack an open repository has seen, and each
                // fetch adds a pack (measured: 11 KB of RSS per fetch): roll up the small packs
                // when they pile up, and reopen to let that state go.
                let started = Instant::now();
                match mirror.maintain(MAX_PACKS) {
                    Ok(done) if done.objects > 0 => info!(
                        packs_before = done.packs_before,
                        packs_after = done.packs_after,
                        objects = done.objects,
                        millis = started.elapsed().as_millis() as u64,
                        "rolled the git mirror's small packs up into one"
                    ),
                    Ok(_) => {}
                    Err(err) => warn!(error = %err, "cannot maintain the git mirror; keeping it as it is"),
                }
            }
            mirror.fetch(&branches, &creds, policy)
        })
        .await
        .unwrap_or_else(|e| {
            Err(GitError::Fetch {
                url: url.clone(),
                message: format!("fetch task failed: {e}"),
            })
        });
        let mut next = config.poll_interval;
        if let Some(observer) = &config.observer {
            (observer.0)(started.elapsed(), result.as_ref().err().map(GitError::label));
        }
        match result {
            Ok(fetched) => {
                let changes = fetched.changes;
                let forced: Vec<TipChange> = changes
                    .iter()
                    .filter(|c| c.kind == TipChangeKind::ForcePushed)
                    .cloned()
                    .collect();
                status.send_modify(|s| {
                    if !s.ready && s.consecutive_failures > 0 {
                        info!(url, "git source reachable again");
                    }
                    for branch in fetched.missing.iter().filter(|b| !s.missing_branches.contains(b)) {
                        warn!(
                            url,
                            branch, "branch is missing on the remote: its environment keeps what it runs"
                        );
                    }
                    for branch in s.missing_branches.iter().filter(|b| !fetched.missing.contains(b)) {
                        info!(url, branch, "branch is back on the remote");
                    }
                    s.missing_branches.clone_from(&fetched.missing);
                    s.ready = true;
                    s.reason = "Fetched";
                    s.message = format!(
                        "fetched {} in {} ms",
                        config.branches.join(", "),
                        started.elapsed().as_millis()
                    );
                    s.consecutive_failures = 0;
                    s.retry_in = None;
                    s.fetches += 1;
                    s.force_pushes.extend(forced.iter().cloned());
                    let excess = s.force_pushes.len().saturating_sub(16);
                    s.force_pushes.drain(..excess);
                });
                for change in changes {
                    match change.kind {
                        TipChangeKind::ForcePushed => warn!(
                            branch = change.branch,
                            old = %change.old.map(|o| o.to_string()).unwrap_or_default(),
                            new = %change.new,
                            policy = ?config.force_push,
                            "branch was force-pushed: its history was rewritten"
                        ),
                        _ => info!(branch = change.branch, commit = %change.new, "new branch tip"),
                    }
                    if tips.send(change).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                let mut delay = config.min_backoff;
                status.send_modify(|s| {
                    s.ready = false;
                    s.reason = err.label();
                    s.consecutive_failures += 1;
                    s.fetches += 1;
                    delay = ship_core::backoff::delay(
                        s.consecutive_failures,
                        config.min_backoff,
                        config.max_backoff,
                    );
                    s.retry_in = Some(delay);
                    s.message = format!("{err}; retrying in {}s", delay.as_secs_f32());
                });
                warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "git fetch failed");
                next = delay;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(next) => {},
            () = trigger.notified() => {},
        }
        // Triggers during this wait coalesce (Notify keeps one permit): one more fetch follows.
        if let Some(rest) = config.min_interval.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let delays: Vec<u64> = (1..=11)
            .map(|n| ship_core::backoff::delay(n, min, max).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(ship_core::backoff::delay(u32::MAX, min, max), max);
    }
}
