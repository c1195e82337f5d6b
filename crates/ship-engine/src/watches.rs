//! One watch per kind. shipd opens a single watch of each Ship kind and shares it: the
//! ShipRelease watch is the controller's trigger and reflector store, and the environments'
//! keeper and the status page read the same store; the ShipEnvironment and ShipPromotion
//! watches feed the keeper, the promotion loop, the status page and the notifier. A reader
//! gets the store, and a `changes` receiver that ticks on every event the watch delivers
//! (coalesced: a waiter wakes once for a burst). Every watch retries with backoff, and a
//! malformed object is skipped (`DeserializeGuard`), never a stalled watch.

use futures::{Stream, StreamExt as _};
use kube::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::watch;

/// A kind's one watch, as its readers see it.
pub struct Shared<K: kube::Resource<DynamicType = ()> + 'static> {
    store: Store<DeserializeGuard<K>>,
    changes: watch::Receiver<u64>,
    ready: watch::Receiver<bool>,
}

impl<K: kube::Resource<DynamicType = ()> + 'static> std::fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("kind", &K::kind(&()))
            .field("changes", &*self.changes.borrow())
            .finish_non_exhaustive()
    }
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            changes: self.changes.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Shared<K> {
    /// The reflector store: every object the watch has seen, as it stands.
    pub fn store(&self) -> Store<DeserializeGuard<K>> {
        self.store.clone()
    }

    /// Ticks on every event the watch delivers (a list, an object changed or deleted).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Resolves once the store holds the watch's first full list. Any number of readers may
    /// wait: kube-runtime's `Store::wait_until_ready` wakes only the last task that polled it
    /// (a oneshot receiver shared behind a mutex keeps one waker), and the controller waits on
    /// it too; a keeper waiting there never woke, and no ShipEnvironment was ever made.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Whether the store holds the watch's first full list (and answers for every object).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The readable objects in the store (a malformed one is left out).
    pub fn readable(&self) -> Vec<K>
    where
        K: Clone,
    {
        self.store
            .state()
            .iter()
            .filter_map(|o| o.0.as_ref().ok().cloned())
            .collect()
    }
}

/// What a kind must be for one shared watch of it.
pub trait Watchable:
    kube::Resource<DynamicType = ()>
    + Clone
    + for<'de> k8s_openapi::serde::Deserialize<'de>
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watchable for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + for<'de> k8s_openapi::serde::Deserialize<'de>
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The watch of `api` as a stream of the objects it applies, keeping the store and the change
/// ticks current as it is polled.
fn reflected<K>(
    api: Api<DeserializeGuard<K>>,
) -> (
    Shared<K>,
    impl Stream<Item = Result<DeserializeGuard<K>, watcher::Error>> + Send + 'static,
)
where
    K: Watchable,
{
    let (store, writer) = reflector::store();
    let (ticks, changes) = watch::channel(0u64);
    let (listed, ready) = watch::channel(false);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            // The reflector applied the event before handing it on: at InitDone the store holds
            // the whole list.
            if matches!(event, Ok(watcher::Event::InitDone)) {
                listed.send_replace(true);
            }
            ticks.send_modify(|n| *n = n.wrapping_add(1));
        })
        .applied_objects();
    (
        Shared {
            store,
            changes,
            ready,
        },
        stream,
    )
}

/// Watches `api` on a task of its own, until the process ends.
pub fn follow<K>(api: Api<DeserializeGuard<K>>) -> Shared<K>
where
    K: Watchable,
{
    let (shared, stream) = reflected(api);
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    shared
}

/// The ShipRelease watch. The controller drives it (its trigger): [`ReleaseWatch::trigger`]
/// hands the stream over once; readers keep [`ReleaseWatch::shared`].
pub struct ReleaseWatch {
    /// What readers share.
    pub shared: Shared<ship_api::ShipRelease>,
    trigger: std::sync::Mutex<Option<futures::stream::BoxStream<'static, ReleaseEvent>>>,
}

/// One item of the release watch's stream.
pub type ReleaseEvent = Result<DeserializeGuard<ship_api::ShipRelease>, watcher::Error>;

impl std::fmt::Debug for ReleaseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseWatch")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl ReleaseWatch {
    /// The watch of `api`, not started: it runs once the controller polls its trigger.
    pub fn new(api: Api<DeserializeGuard<ship_api::ShipRelease>>) -> Self {
        let (shared, stream) = reflected(api);
        Self {
            shared,
            trigger: std::sync::Mutex::new(Some(stream.boxed())),
        }
    }

    /// The stream, for the one controller that drives it (`None` after the first call).
    pub fn trigger(&self) -> Option<futures::stream::BoxStream<'static, ReleaseEvent>> {
        self.trigger.lock().ok().and_then(|mut t| t.take())
    }
}
