//! Ship's release engine.
//!
//! The engine turns branch tips into `ShipRelease` objects and walks each through its state
//! machine, and keeps each environment's `ShipEnvironment` and the `ShipPromotion`.
//! - From a push to a release: [`tips`] (the tip -> release rule), [`releases`] (creating them),
//!   [`repo`] (reading and rendering a commit from the mirror).
//! - The release's state machine: [`reconcile`] (the executor), [`status`] (what it writes),
//!   [`apply`], [`health`], [`checks`] and [`jobs`] (applying, waiting, testing).
//! - Around it: [`environment`] (in sync with git), [`promotion`] (the weekly promotion),
//!   [`events`], [`metrics`], [`text`].
//!
//! Deciding is pure ([`plan`], [`health`], [`checks`], [`status`], the `environment` and
//! `promotion` evaluations); the rest talks to the API server, and every transition is
//! persisted before the action it announces.

pub mod apply;
pub mod checks;
pub mod clock;
pub mod environment;
pub mod error;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod health;
pub mod inventory;
pub mod jobs;
pub mod machine;
pub mod metrics;
pub mod promotion;
pub mod prune;
pub mod reconcile;
pub mod releases;
pub mod repo;
pub mod status;
pub mod text;
pub mod tips;

pub use reconcile::{Context, Error, Settings, run};
