//! Ship's release engine.
//!
//! The engine turns branch tips into `ShipRelease` objects and walks each through its state
//! machine. Deciding is pure ([`plan`], [`health`], [`checks`], [`status`]); only [`apply`],
//! [`jobs`], [`releases`], [`tips`], [`environment`] and [`reconcile`] talk to the API server, and every transition is
//! persisted before the action it announces.

pub mod apply;
pub mod checks;
pub mod environment;
pub mod events;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod plan;
pub mod promotion;
pub mod reconcile;
pub mod releases;
pub mod source;
pub mod status;
pub mod text;
pub mod tips;

pub use reconcile::{Context, Error, Settings, run};
