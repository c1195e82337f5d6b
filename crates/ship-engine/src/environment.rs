//! Keeps one `ShipEnvironment` per environment of `ship.yaml`: its branch, the tip, what runs,
//! and whether the two agree (`InSync`), or the branch is gone (`BranchMissing`).
//!
//! Deciding is pure: [`declared`] here (it reads `ship.yaml`), and [`sync`] and [`status`] in
//! the core (`ship_core::environment`); what a look announces and which environments go is
//! `ship_core::keeper`. [`run`] is the thin loop that reads the mirror and the stores and
//! writes the status by server-side apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::EventType;
use kube::runtime::reflector;
use kube::{Api, Client, Resource, ResourceExt};
use ship_api::environment::{BRANCH_MISSING, HELD, IN_SYNC};
pub use ship_api::environment::{Declared, Observed, status, sync};
use ship_api::{
    FIELD_MANAGER, Hold, ShipEnvironment, ShipEnvironmentSpec, ShipEnvironmentStatus, ShipRelease, keys,
};
use ship_render::ShipConfig;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::repo::{LoadError, Repo};

/// The environments deploying a followed branch, from the `ship.yaml` at each branch's tip
/// (`configs`: branch and the config at its tip). An environment's own branch's config wins
/// over what another branch's config says of it; an environment whose branch has no readable
/// config (deleted, never pushed) is still known from the others'.
pub fn declared(followed: &[String], configs: &[(String, ShipConfig)]) -> Vec<Declared> {
    let mut found: BTreeMap<String, (bool, Declared)> = BTreeMap::new();
    for (config_branch, config) in configs {
        for (name, environment) in &config.environments {
            let branch = environment.branch(name);
            if !followed.iter().any(|b| b == branch) {
                continue;
            }
            let own = branch == config_branch;
            let entry = Declared {
                name: name.clone(),
                branch: branch.to_owned(),
                namespace: environment.namespace(name).to_owned(),
            };
            match found.get(name) {
                Some((true, _)) if !own => {}
                _ => {
                    found.insert(name.clone(), (own, entry));
                }
            }
        }
    }
    found.into_values().map(|(_, d)| d).collect()
}

/// The reason of condition `type_` in `conditions`, when it is True.
fn true_reason<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.as_str())
}

/// The tips last handled, by branch, as the ShipEnvironments in `namespace` record them (for
/// the release maker after a restart). Empty when they cannot be read.
pub async fn handled_tips(client: &Client, namespace: &str) -> BTreeMap<String, String> {
    let api: Api<ShipEnvironment> = Api::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|e| {
                let tip = e.status?.last_handled_tip?;
                Some((e.spec.branch, tip))
            })
            .collect(),
        Err(err) => {
            warn!(error = %err, "cannot read ShipEnvironments; tips seen at start count as unmoved");
            BTreeMap::new()
        }
    }
}

/// The hold on `environment` (its ShipEnvironment's `spec.hold`), read from the API server,
/// not a cache: a hold placed just before a push or a Tuesday must stop it. `None` when it is
/// not held, or has no ShipEnvironment yet. The one check the release maker and the promotion
/// share.
pub async fn hold_of(
    client: &Client,
    namespace: &str,
    environment: &str,
) -> Result<Option<Hold>, kube::Error> {
    let api: Api<ShipEnvironment> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(environment).await?.and_then(|e| e.spec.hold))
}

/// Where and how the environments are kept.
#[derive(Clone)]
pub struct Keeper {
    /// Client of the cluster holding the ShipReleases and ShipEnvironments.
    pub client: Client,
    /// Their namespace.
    pub namespace: String,
    /// The repository.
    pub repo: Repo,
    /// Branches followed.
    pub branches: Vec<String>,
    /// The git source's health (which branches are missing).
    pub source: watch::Receiver<ship_git::watch::SourceStatus>,
    /// Tips handed to the release maker, by branch.
    pub handled: watch::Receiver<BTreeMap<String, String>>,
    /// The shared event recorder.
    pub recorder: crate::events::EventRecorder,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Longest time between two looks.
    pub interval: Duration,
    /// The time (the release engine's clock: condition times compare with the releases').
    pub clock: crate::clock::Clock,
    /// The environments a person holds, for the release maker (which waits on a change to
    /// try held tips again; it reads the hold itself before it decides).
    pub holds: watch::Sender<BTreeSet<String>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("namespace", &self.namespace)
            .field("branches", &self.branches)
            .finish_non_exhaustive()
    }
}

/// Why a look at the environments failed (retried at the next one).
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// Reading or writing ShipEnvironments or ShipReleases failed.
    #[error(
        "cannot read or write ShipEnvironments (check the CRD is installed and the controller's RBAC): {0}"
    )]
    Api(#[from] kube::Error),
    /// The repository could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A status write lost its compare-and-set: the ShipEnvironment changed after the view the
    /// status was decided on. The next look reads the API server and decides again.
    #[error("ShipEnvironment {0} changed since it was read; looking again")]
    StaleView(String),
}

impl EnvironmentError {
    /// Stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            EnvironmentError::Api(_) => "EnvironmentApi",
            EnvironmentError::Load(e) => e.label(),
            EnvironmentError::StaleView(_) => "StaleView",
        }
    }
}

/// Each followed branch's tip and the `ship.yaml` there (branches without a tip, or whose
/// config cannot be read, are left out; the flag says whether all could be read).
type Tips = (BTreeMap<String, String>, Vec<(String, ShipConfig)>, bool);

impl Keeper {
    fn environments(&self) -> Api<ShipEnvironment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn tips(&self) -> Result<Tips, LoadError> {
        let branches = self.branches.clone();
        self.repo
            .read(move |mirror| {
                let (mut tips, mut configs, mut complete) = (BTreeMap::new(), Vec::new(), true);
                for branch in branches {
                    let Some(tip) = mirror.tip(&branch) else {
                        continue;
                    };
                    tips.insert(branch.clone(), tip.to_string());
                    match crate::repo::load_config(mirror, tip) {
                        Ok(config) => configs.push((branch, config)),
                        Err(_) => complete = false,
                    }
                }
                Ok((tips, configs, complete))
            })
            .await
    }

    async fn publish(&self, object: &ShipEnvironment, type_: EventType, reason: &str, note: &str) {
        self.recorder
            .announce(&object.object_ref(&()), type_, reason, "Sync", note)
            .await;
    }

    /// The object for `declared`, applied when absent or changed in ship.yaml.
    /// The ShipEnvironments in the keeper's namespace that this Ship can read: one it cannot
    /// read is left out (and logged), never a failed list, as the guarded watch does.
    async fn readable_environments(&self) -> Result<Vec<ShipEnvironment>, EnvironmentError> {
        let api: Api<DeserializeGuard<ShipEnvironment>> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let mut readable = Vec::new();
        for guard in api.list(&ListParams::default()).await?.items {
            match guard.0 {
                Ok(environment) => readable.push(environment),
                Err(invalid) => warn!(
                    environment = invalid.metadata.name.unwrap_or_default(),
                    error = %invalid.error,
                    "left out a ShipEnvironment this Ship cannot read"
                ),
            }
        }
        Ok(readable)
    }

    async fn object(
        &self,
        declared: &Declared,
        existing: Option<&ShipEnvironment>,
    ) -> Result<ShipEnvironment, EnvironmentError> {
        // Never the hold: that field is a person's (shipd's apply leaves it alone).
        let spec = ShipEnvironmentSpec {
            branch: declared.branch.clone(),
            namespace: declared.namespace.clone(),
            hold: None,
        };
        if let Some(found) = existing.filter(|e| e.spec.declares_same(&spec)) {
            return Ok(found.clone());
        }
        let object = ShipEnvironment {
            metadata: ObjectMeta {
                name: Some(declared.name.clone()),
                labels: Some(
                    [
                        (keys::ENVIRONMENT.to_owned(), declared.name.clone()),
                        (keys::MANAGED_BY.to_owned(), keys::MANAGED_BY_SHIP.to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        };
        let applied = self
            .environments()
            .patch(
                &declared.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?;
        Ok(applied)
    }

    async fn write_status(
        &self,
        object: &ShipEnvironment,
        status: &ShipEnvironmentStatus,
    ) -> Result<(), EnvironmentError> {
        if object.status.as_ref() == Some(status) {
            return Ok(());
        }
        let decided_on = object.metadata.resource_version.as_deref();
        match crate::status::apply_status(&self.environments(), &object.name_any(), status, decided_on).await
        {
            Ok(_) => Ok(()),
            Err(err) if crate::status::is_stale_view(&err) => {
                Err(EnvironmentError::StaleView(object.name_any()))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// One look: every declared environment's object and status brought up to date, from
    /// releases and environments read as `read` says.
    async fn look(&self, stores: &Stores, read: Read) -> Result<(), EnvironmentError> {
        let (tips, configs, complete) = self.tips().await?;
        let declared = declared(&self.branches, &configs);
        let (releases, environments): (Vec<ShipRelease>, Vec<ShipEnvironment>) = match read {
            Read::Stores => (
                // The shared release watch may span every namespace (shipd without
                // --namespace): the keeper's are those of its own.
                stores
                    .releases
                    .state()
                    .iter()
                    .filter_map(|r| r.0.as_ref().ok())
                    .filter(|r| r.metadata.namespace.as_deref() == Some(self.namespace.as_str()))
                    .cloned()
                    .collect(),
                stores
                    .environments
                    .state()
                    .iter()
                    .filter_map(|e| e.0.as_ref().ok().cloned())
                    .collect(),
            ),
            Read::Server => (
                crate::releases::list_readable(&self.client, &self.namespace, &ListParams::default()).await?,
                self.readable_environments().await?,
            ),
        };
        let existing: BTreeMap<String, ShipEnvironment> =
            environments.into_iter().map(|e| (e.name_any(), e)).collect();
        let source = self.source.borrow().clone();
        let missing = source.missing_branches.clone();
        // Before the first fetch there is nothing to say about the source yet.
        let source_says =
            (source.fetches > 0).then_some((source.ready, source.reason, source.message.as_str()));
        let handled = self.handled.borrow().clone();
        let now = Time((self.clock)());
        // One environment that cannot be kept (its object unreadable, a write refused) does
        // not stop the others: each is tried, and the first error retries the look.
        let mut failed = None;
        for d in &declared {
            let keep = async {
                let object = self.object(d, existing.get(&d.name)).await?;
                let previous = object.status.clone().unwrap_or_default();
                let observed = Observed {
                    declared: d,
                    tip: tips.get(&d.branch).map(String::as_str),
                    branch_missing: missing.contains(&d.branch),
                    releases: &releases,
                    handled_tip: handled.get(&d.branch).map(String::as_str),
                    generation: object.metadata.generation,
                    source: source_says,
                    hold: object.spec.hold.as_ref(),
                };
                let status = status(&observed, &previous, &now);
                // Persisted before it is announced: a write that loses its compare-and-set
                // announces nothing, and the next look decides again.
                self.write_status(&object, &status).await?;
                let looked = ship_core::keeper::Looked {
                    environment: d.name.clone(),
                    branch: d.branch.clone(),
                    before: seen(
                        &previous,
                        true_reason(&previous.conditions, HELD).map(str::to_owned),
                    ),
                    after: seen(&status, object.spec.hold.as_ref().map(Hold::describe)),
                    message: status.message.clone().unwrap_or_default(),
                };
                for ship_core::keeper::Effect::Publish {
                    warning,
                    reason,
                    message,
                    commit,
                } in ship_core::keeper::step(&looked)
                {
                    let commit = commit.unwrap_or_default();
                    let type_ = if warning {
                        warn!(environment = d.name, branch = d.branch, commit, "{message}");
                        EventType::Warning
                    } else {
                        info!(environment = d.name, branch = d.branch, commit, "{message}");
                        EventType::Normal
                    };
                    self.publish(&object, type_, reason, &message).await;
                }
                self.metrics
                    .environment(&d.name, sync_reason_of(&status), observed.branch_missing);
                self.metrics.held(&d.name, held_since(&object, &status));
                Ok::<(), EnvironmentError>(())
            };
            if let Err(err) = keep.await {
                warn!(environment = d.name, error = %err, "cannot keep this environment now; the others go on");
                failed.get_or_insert(err);
            }
        }
        self.holds.send_if_modified(|known| {
            let now = held_names(existing.values());
            let changed = *known != now;
            *known = now;
            changed
        });
        // An environment no longer in any ship.yaml goes, once every config could be read.
        let names: BTreeSet<&str> = declared.iter().map(|d| d.name.as_str()).collect();
        let ours = existing.iter().map(|(name, object)| {
            let ours =
                object.labels().get(keys::MANAGED_BY).map(String::as_str) == Some(keys::MANAGED_BY_SHIP);
            (name.as_str(), ours)
        });
        for name in ship_core::keeper::to_remove(ours, &names, complete, configs.len()) {
            info!(
                environment = name,
                "no ship.yaml declares this environment any more"
            );
            self.environments()
                .delete(&name, &DeleteParams::default())
                .await?;
        }
        failed.map_or(Ok(()), Err)
    }
}

/// What the keeper's announcements read of a status: `hold` is the hold as described (before a
/// look: the `Held` condition's reason, when True; after: the spec's hold).
fn seen(status: &ShipEnvironmentStatus, hold: Option<String>) -> ship_core::keeper::Seen {
    ship_core::keeper::Seen {
        hold,
        branch_missing: true_reason(&status.conditions, BRANCH_MISSING).is_some(),
        held_tips: status
            .held_commits
            .iter()
            .map(|h| ship_core::keeper::HeldTip {
                commit: h.commit.clone(),
                short: h.short_commit.clone(),
            })
            .collect(),
    }
}

/// Since when `object` is held (seconds since the epoch): its hold's time, else when the
/// `Held` condition turned True; `None` when it is not held.
fn held_since(object: &ShipEnvironment, status: &ShipEnvironmentStatus) -> Option<f64> {
    let hold = object.spec.hold.as_ref()?;
    let since = hold.since.as_ref().map(|t| t.0).or_else(|| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == HELD && c.status == "True")
            .map(|c| c.last_transition_time.0)
    })?;
    Some(since.as_millisecond() as f64 / 1000.0)
}

/// The names of the environments a person holds.
fn held_names<'a>(environments: impl IntoIterator<Item = &'a ShipEnvironment>) -> BTreeSet<String> {
    environments
        .into_iter()
        .filter(|e| e.spec.hold.is_some())
        .map(ResourceExt::name_any)
        .collect()
}

/// The `InSync` condition's reason.
fn sync_reason_of(status: &ShipEnvironmentStatus) -> &str {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == IN_SYNC)
        .map_or("", |c| c.reason.as_str())
}

/// Shortest time between two looks: a burst of release changes makes one look.
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// A request for a look now, answered once its status is written (or the look failed).
pub type LookNow = tokio::sync::oneshot::Sender<()>;

/// Keeps the ShipEnvironments until `shutdown` resolves: a look whenever a release changes,
/// a fetch reports, a tip is handled, and at least every `interval`; and one on request from
/// `looks`, answered when written. The release maker asks before it makes the release of a new
/// tip, so that the environment is recorded out of sync before the release that brings it back
/// (however fast that release is).
///
/// It reads the shared watches (`releases`, `environments`: see [`crate::watches`]) and opens
/// none of its own.
pub async fn run(
    keeper: Keeper,
    releases: crate::watches::Shared<ShipRelease>,
    environments: crate::watches::Shared<ShipEnvironment>,
    mut looks: tokio::sync::mpsc::Receiver<LookNow>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (mut release_events, mut environment_events) = (releases.changes(), environments.changes());
    let stores = Stores {
        releases: releases.store(),
        environments: environments.store(),
    };
    tokio::pin!(shutdown);
    // A look from the stores waits for both to hold their first list: an empty one would read
    // as "no releases yet".
    {
        let ready = async {
            releases.wait_ready().await;
            environments.wait_ready().await;
        };
        tokio::pin!(ready);
        tokio::select! {
            () = &mut shutdown => return,
            () = &mut ready => {},
        }
    }
    let (mut source, mut handled) = (keeper.source.clone(), keeper.handled.clone());
    // What of the source's health a look writes; a fetch that changed none of it is no reason
    // to look (fetches come every poll interval).
    let worth_a_look =
        |s: &ship_git::watch::SourceStatus| (s.ready, s.reason, s.missing_branches.clone(), s.fetches > 0);
    let mut last_source = worth_a_look(&source.borrow_and_update());
    let mut failures = 0u32;
    let mut asked: Vec<LookNow> = Vec::new();
    // The holds the last look saw: a hold placed or lifted is worth a look at once.
    let holds_now = |store: &reflector::Store<DeserializeGuard<ShipEnvironment>>| {
        let readable: Vec<ShipEnvironment> = store
            .state()
            .iter()
            .filter_map(|e| e.0.as_ref().ok().cloned())
            .collect();
        held_names(&readable)
    };
    // The first look, after a restart, answers the release maker's first question.
    let mut read = Read::Server;
    loop {
        let last_holds = holds_now(&stores.environments);
        // What the watches delivered so far is in the stores this look reads; a change from
        // now on asks for the next look.
        release_events.mark_unchanged();
        environment_events.mark_unchanged();
        let mut next_read = Read::Stores;
        let wait = match keeper.look(&stores, read).await {
            Ok(()) => {
                failures = 0;
                keeper.interval
            }
            Err(err @ EnvironmentError::StaleView(_)) => {
                // Not a failure: decide again at once, from the API server.
                info!(error = %err, "environment status decided on a stale view");
                next_read = Read::Server;
                Duration::ZERO
            }
            Err(err) => {
                failures += 1;
                warn!(error = %err, kind = err.label(), "environment look failed; retrying");
                ship_core::backoff::delay(failures, Duration::from_secs(1), keeper.interval)
            }
        };
        for answer in asked.drain(..) {
            let _ = answer.send(());
        }
        // A look for a change the watches delivered reads their stores, which hold that change.
        read = next_read;
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        let mut urgent = false;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = &mut sleep => break,
                Ok(()) = release_events.changed() => break,
                // The keeper's own writes need no look, a person's hold does.
                Ok(()) = environment_events.changed() => {
                    if holds_now(&stores.environments) != last_holds {
                        read = Read::Server;
                        break;
                    }
                },
                Ok(()) = source.changed() => {
                    let now = worth_a_look(&source.borrow_and_update());
                    if now != last_source {
                        last_source = now;
                        break;
                    }
                }
                // A tip handled (made a release, or held): the status that records it answers
                // the release maker, so it must not be older than what the maker saw.
                Ok(()) = handled.changed() => {
                    read = Read::Server;
                    break;
                }
                Some(answer) = looks.recv() => {
                    // Asked: look at once, without the pause that coalesces bursts.
                    asked.push(answer);
                    read = Read::Server;
                    urgent = true;
                    break;
                }
            }
        }
        if urgent {
            continue;
        }
        // The pause that coalesces a burst of changes (the shared watches keep the stores
        // current meanwhile); a request cuts it short (a release waits on it).
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(MIN_INTERVAL) => {},
            Some(answer) = looks.recv() => {
                asked.push(answer);
                read = Read::Server;
            }
        }
    }
}

/// Where a look reads releases and environments.
///
/// The watches' stores are as new as the last event applied, and the loop applies every event
/// as it comes (during the pause too), so a look for a change the watches delivered reads them.
/// A look that answers a request (the release maker asking, a tip handled, a hold placed) reads
/// the API server: the stores may not yet hold events the server sent before the request. They
/// once did not, and a status recording a held tip named the release before a rollback as the
/// one running: the loop applied one event per look, and a drain without waiting read none of
/// the rest (an HTTP/1 watch body hands over what the connection read only once asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The watches' stores.
    Stores,
    /// A list from the API server.
    Server,
}

/// What a look reads, kept current by the shared watches.
struct Stores {
    releases: reflector::Store<DeserializeGuard<ShipRelease>>,
    environments: reflector::Store<DeserializeGuard<ShipEnvironment>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn environments_come_from_every_branch_config_and_their_own_wins() {
        let main = ship_render::config::parse(
            "environments:\n  main: {}\n  production: {namespace: shop}\n  staging: {branch: staging}\n",
        )
        .unwrap();
        let production =
            ship_render::config::parse("environments:\n  main: {}\n  production: {namespace: shop-prod}\n")
                .unwrap();
        let followed = vec!["main".to_owned(), "production".to_owned()];
        let both = declared(
            &followed,
            &[("main".into(), main.clone()), ("production".into(), production)],
        );
        let names: Vec<(&str, &str)> = both
            .iter()
            .map(|d| (d.name.as_str(), d.namespace.as_str()))
            .collect();
        assert_eq!(
            names,
            [("main", "main"), ("production", "shop-prod")],
            "staging is not followed"
        );
        // production's branch is gone: main's ship.yaml still declares it
        let one = declared(&followed, &[("main".into(), main)]);
        assert_eq!(one[1].namespace, "shop");
    }
}
