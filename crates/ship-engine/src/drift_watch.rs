//! Drift seen as it happens. For each environment, Ship watches the objects its deployed
//! release wrote: one metadata-only watch per kind and namespace, selected by Ship's labels
//! (no object bodies cross the wire). A change that another manager made, or a deletion,
//! marks the environment and wakes its deployed release, whose next look runs a drift check
//! at once ([`crate::changes`] decides what to write back) instead of at the next
//! `--drift-interval`. Ship's own writes and status writes are told apart by
//! `metadata.managedFields` ([`crate::changes::foreign_write`]).
//!
//! A watch that had to list again (its resourceVersion expired while it was disconnected)
//! may have missed a change: that marks the environment too. Watches live as long as the
//! process; a kind the environment no longer declares keeps its (idle) watch until the next
//! start. The periodic drift check stays, as the safety net.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject};
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use ship_api::ShipRelease;
use tracing::{debug, info};

/// What wakes a release: the controller's channel.
pub type Wake = futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<ShipRelease>>>;

/// One watched group: environment, apiVersion, kind, namespace (empty: cluster-scoped).
type Group = (String, String, String, String);

#[derive(Debug, Default)]
struct Environment {
    /// The deployed release to wake.
    release: Option<ObjectRef<DeserializeGuard<ShipRelease>>>,
    /// Another writer's change seen since the last drift check: what, for the log.
    seen: Option<String>,
}

/// The drift watches of every environment, shared by all reconciles.
#[derive(Debug, Default)]
pub struct DriftWatches {
    watched: Mutex<HashSet<Group>>,
    environments: Mutex<HashMap<String, Environment>>,
}

impl DriftWatches {
    /// Whether another writer's change to `environment`'s objects was seen since its last
    /// drift check.
    pub fn seen(&self, environment: &str) -> bool {
        self.environments
            .lock()
            .is_ok_and(|e| e.get(environment).is_some_and(|e| e.seen.is_some()))
    }

    /// Clears the mark (a drift check starts), returning what was seen.
    pub fn take(&self, environment: &str) -> Option<String> {
        self.environments
            .lock()
            .ok()
            .and_then(|mut e| e.get_mut(environment).and_then(|e| e.seen.take()))
    }

    /// Marks `environment` (keeping the first sighting) and wakes its deployed release.
    fn mark(&self, environment: &str, what: String, wake: Option<&Wake>) {
        let release = {
            let Ok(mut environments) = self.environments.lock() else {
                return;
            };
            let state = environments.entry(environment.to_owned()).or_default();
            state.seen.get_or_insert(what);
            state.release.clone()
        };
        if let (Some(release), Some(wake)) = (release, wake) {
            let _ = wake.unbounded_send(release);
        }
    }

    /// Watches the groups of `resources` (resolved kinds, with the namespace of each group)
    /// not watched yet, on `target`, for `environment`, whose deployed release is `release`
    /// (`name` in `namespace`).
    pub fn ensure(
        self: &Arc<Self>,
        target: &Client,
        environment: &str,
        release: (&str, &str),
        resources: Vec<(ApiResource, bool, String)>,
        wake: Option<Wake>,
    ) {
        if let Ok(mut environments) = self.environments.lock() {
            environments.entry(environment.to_owned()).or_default().release =
                Some(ObjectRef::new(release.0).within(release.1));
        }
        let selector = crate::inventory::ship_selector(environment);
        for (resource, namespaced, namespace) in resources {
            let namespace = if namespaced { namespace } else { String::new() };
            let group = (
                environment.to_owned(),
                resource.api_version.clone(),
                resource.kind.clone(),
                namespace.clone(),
            );
            let new = self.watched.lock().is_ok_and(|mut w| w.insert(group));
            if !new {
                continue;
            }
            // `PartialObjectMeta`: metadata-only lists and watches.
            let api: Api<PartialObjectMeta<DynamicObject>> = if namespaced {
                Api::namespaced_with(target.clone(), &namespace, &resource)
            } else {
                Api::all_with(target.clone(), &resource)
            };
            info!(
                environment,
                kind = resource.kind,
                namespace,
                "watching the environment's objects for drift"
            );
            let (watches, environment, selector, wake) = (
                self.clone(),
                environment.to_owned(),
                selector.clone(),
                wake.clone(),
            );
            tokio::spawn(async move {
                watches.watch(api, &environment, &selector, wake.as_ref()).await;
            });
        }
    }

    async fn watch(
        &self,
        api: Api<PartialObjectMeta<DynamicObject>>,
        environment: &str,
        selector: &str,
        wake: Option<&Wake>,
    ) {
        let config = watcher::Config::default().labels(selector);
        let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        let mut listed = false;
        while let Some(event) = events.next().await {
            let what = match event {
                Ok(watcher::Event::Apply(object)) => {
                    crate::changes::foreign_write(&object.metadata).map(|manager| {
                        format!(
                            "{manager} changed {}",
                            object.metadata.name.as_deref().unwrap_or_default()
                        )
                    })
                }
                Ok(watcher::Event::Delete(object)) => Some(format!(
                    "{} was deleted",
                    object.metadata.name.as_deref().unwrap_or_default()
                )),
                // Listed again after the first time: a change may have gone unseen.
                Ok(watcher::Event::Init) if listed => Some("the watch listed again".to_owned()),
                Ok(watcher::Event::InitDone) => {
                    listed = true;
                    None
                }
                Ok(_) => None,
                Err(err) => {
                    debug!(environment, error = %err, "drift watch interrupted; it retries");
                    None
                }
            };
            if let Some(what) = what {
                debug!(environment, what, "drift seen");
                self.mark(environment, what, wake);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighting_marks_the_environment_once_until_a_drift_check_takes_it() {
        let watches = DriftWatches::default();
        assert!(!watches.seen("main"));
        let (wake, mut woken) = futures::channel::mpsc::unbounded();
        if let Ok(mut e) = watches.environments.lock() {
            e.entry("main".into()).or_default().release = Some(ObjectRef::new("main-abc").within("ship"));
        }
        watches.mark("main", "kubectl-edit changed web".into(), Some(&wake));
        watches.mark("main", "web was deleted".into(), Some(&wake));
        assert!(watches.seen("main"));
        assert!(!watches.seen("production"));
        assert_eq!(watches.take("main").as_deref(), Some("kubectl-edit changed web"));
        assert!(!watches.seen("main"));
        assert_eq!(watches.take("main"), None);
        // Each sighting wakes the deployed release (the controller coalesces them).
        let first = woken.try_recv().unwrap();
        assert_eq!(first.name, "main-abc");
        assert!(woken.try_recv().is_ok());
    }
}
