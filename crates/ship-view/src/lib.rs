//! What Ship deployed where, as people read it. One home for the view that `kubectl ship`
//! prints ([`report`]) and the read-only status page shipd serves ([`page`]), so the two never
//! disagree. Pure: from ShipReleases, ShipEnvironments and the ShipPromotion to rows and HTML.

pub mod page;
pub mod report;
