//! "Nothing happens", observed: a test that says nothing changes watches the objects for a
//! bounded window and asserts on every event the watch delivered, instead of sleeping and
//! then reading one snapshot (which misses a change made and undone in between). The window
//! says how long it watched; a watch that fails or restarts inside it is an error, never a
//! quiet window.

use std::time::Duration;

use futures::StreamExt as _;
use kube::runtime::watcher;
use kube::{Api, ResourceExt as _};

/// One change a watch saw.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// Created or modified: the object as it became.
    Applied(K),
    /// Deleted: the object as it was last.
    Deleted(K),
}

impl<K: kube::Resource> Change<K> {
    /// The object's name.
    pub fn name(&self) -> String {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o.name_any(),
        }
    }
}

/// What a watch saw in a window.
#[derive(Debug, Clone)]
pub struct Window<K> {
    /// How long it watched (from its first list).
    pub watched: Duration,
    /// The objects when the window began.
    pub at_start: Vec<K>,
    /// Every change after, in order.
    pub changes: Vec<Change<K>>,
}

impl<K: kube::Resource + Clone> Window<K> {
    /// Names of the objects created in the window.
    pub fn created(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .changes
            .iter()
            .map(Change::name)
            .filter(|name| !self.at_start.iter().any(|o| o.name_any() == *name))
            .collect();
        names.dedup();
        names
    }

    /// Fails, naming the window, when an object was created in it.
    pub fn assert_none_created(&self, what: &str) {
        let created = self.created();
        assert!(
            created.is_empty(),
            "{what}: created within the {:?} watched: {created:?}",
            self.watched
        );
    }

    /// The states object `name` went through in the window (deleted: the last one seen).
    pub fn states_of(&self, name: &str) -> Vec<&K> {
        self.changes
            .iter()
            .filter(|c| c.name() == name)
            .map(|c| match c {
                Change::Applied(o) | Change::Deleted(o) => o,
            })
            .collect()
    }
}

/// Watches `api` for `window` and returns what was there and every change. Fails when the
/// watch errs or restarts (its events could have gaps).
pub async fn watch_for<K>(api: Api<K>, window: Duration) -> anyhow::Result<Window<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let mut at_start = Vec::new();
    let mut listed = false;
    let mut changes = Vec::new();
    let mut began = None;
    let deadline = tokio::time::Instant::now() + window + Duration::from_secs(30);
    loop {
        // The window runs from the first full list; the list itself may take a moment.
        let until = began.map_or(deadline, |b: tokio::time::Instant| b + window);
        let event = match tokio::time::timeout_at(until, events.next()).await {
            Err(_elapsed) if began.is_some() => break,
            Err(_elapsed) => anyhow::bail!("the watch never delivered its first list"),
            Ok(None) => anyhow::bail!("the watch ended inside the window"),
            Ok(Some(Err(err))) => anyhow::bail!("the watch failed inside the window: {err}"),
            Ok(Some(Ok(event))) => event,
        };
        match event {
            watcher::Event::Init if listed => {
                anyhow::bail!("the watch restarted inside the window: its events may have gaps")
            }
            watcher::Event::Init => {}
            watcher::Event::InitApply(o) => at_start.push(o),
            watcher::Event::InitDone => {
                listed = true;
                began = Some(tokio::time::Instant::now());
            }
            watcher::Event::Apply(o) => changes.push(Change::Applied(o)),
            watcher::Event::Delete(o) => changes.push(Change::Deleted(o)),
        }
    }
    Ok(Window {
        watched: window,
        at_start,
        changes,
    })
}
