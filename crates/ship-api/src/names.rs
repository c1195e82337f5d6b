//! How Ship names things, in one place for shipd, the engine, `kubectl ship` and the tests
//! (the rules live in `ship-core`).

pub use ship_core::names::{release_name, short_sha};
