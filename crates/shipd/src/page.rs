//! The status page's sources: the release engine's reflector store of releases, and reflectors
//! of ShipEnvironments and ShipPromotions started here. A request reads these caches and
//! renders ([`ship_view::page`]); it never calls the API server.

use std::sync::{Arc, OnceLock};

use futures::StreamExt as _;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use ship_api::{ShipEnvironment, ShipPromotion, ShipRelease};

/// Seconds between the page's reloads.
pub const REFRESH_SECONDS: u32 = 5;

/// What the page reads.
#[derive(Clone)]
pub struct Sources {
    releases: Arc<OnceLock<Store<DeserializeGuard<ShipRelease>>>>,
    environments: Store<DeserializeGuard<ShipEnvironment>>,
    promotions: Store<DeserializeGuard<ShipPromotion>>,
    clock: ship_engine::clock::Clock,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// Keeps `store`'s writer fed from a watch of `api` (a malformed object is skipped, not fatal).
fn follow<K>(api: Api<DeserializeGuard<K>>) -> Store<DeserializeGuard<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    store
}

impl Sources {
    /// Starts the reflectors in `namespace`, beside the engine's store of releases.
    pub fn start(
        client: &Client,
        namespace: &str,
        releases: Arc<OnceLock<Store<DeserializeGuard<ShipRelease>>>>,
        clock: ship_engine::clock::Clock,
    ) -> Self {
        Self {
            releases,
            clock,
            environments: follow(Api::namespaced(client.clone(), namespace)),
            promotions: follow(Api::namespaced(client.clone(), namespace)),
        }
    }

    /// The store of ShipPromotions (the notifier reads it too, so shipd watches them once).
    pub fn promotions(&self) -> Store<DeserializeGuard<ShipPromotion>> {
        self.promotions.clone()
    }

    /// The page as the caches stand, or `None` before the releases' first list.
    pub fn render(&self) -> Option<String> {
        let releases: Vec<ShipRelease> = self
            .releases
            .get()?
            .state()
            .iter()
            .filter_map(|r| r.0.as_ref().ok().cloned())
            .collect();
        let environments: Vec<ShipEnvironment> = self
            .environments
            .state()
            .iter()
            .filter_map(|e| e.0.as_ref().ok().cloned())
            .collect();
        let promotion: Option<ShipPromotion> = self
            .promotions
            .state()
            .iter()
            .find_map(|p| p.0.as_ref().ok().cloned());
        Some(ship_view::page::render(&ship_view::page::PageInput {
            releases: &releases,
            environments: &environments,
            promotion: promotion.as_ref(),
            refresh_seconds: REFRESH_SECONDS,
            now: (self.clock)(),
        }))
    }
}
