//! The status page's sources: the release engine's reflector store of releases, and the stores
//! of shipd's shared ShipEnvironment and ShipPromotion watches. A request reads these caches and
//! renders ([`ship_view::page`]); it never calls the API server.

use std::sync::{Arc, OnceLock};

use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
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

impl Sources {
    /// The page's sources: the engine's store of releases (once it holds its first list) and
    /// the shared watches of environments and promotions (shipd watches each kind once).
    pub fn new(
        releases: Arc<OnceLock<Store<DeserializeGuard<ShipRelease>>>>,
        environments: &ship_engine::watches::Shared<ShipEnvironment>,
        promotions: &ship_engine::watches::Shared<ShipPromotion>,
        clock: ship_engine::clock::Clock,
    ) -> Self {
        Self {
            releases,
            clock,
            environments: environments.store(),
            promotions: promotions.store(),
        }
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
