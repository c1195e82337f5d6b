//! The release state machine lives in the pure core ([`ship_core::release`]); this reads a
//! `ShipRelease` into what the machine is told.

use ship_api::ShipRelease;
pub use ship_core::release::*;

/// What the machine reads of `release`.
pub fn persisted(release: &ShipRelease) -> Persisted<'_> {
    Persisted {
        status: release.status.as_ref(),
        generation: release.metadata.generation,
        short_commit: release.spec.short_commit(),
        environment: &release.spec.environment,
    }
}
