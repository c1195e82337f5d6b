//! Ship's domain rules, each in one home, as pure functions shared by shipd, `kubectl ship` and
//! the validation of `ship.yaml` and manifests. Nothing here does I/O or reads the clock: what a
//! rule needs comes in as arguments, so every rule is unit-tested without a cluster.
//!
//! This crate grows into the pure core of issue 30: every decision as data.

pub mod backoff;
pub mod bisect;
pub mod conditions;
pub mod delivery;
pub mod environment;
pub mod keeper;
pub mod names;
pub mod outbox;
pub mod promotion;
pub mod reason;
pub mod release;
pub mod revert;
pub mod status;
pub mod text;
pub mod tips;
pub mod urls;
pub mod verification;
