//! Ship's release engine.
//!
//! The engine turns branch tips into `ShipRelease` objects and walks each through its state
//! machine, and keeps each environment's `ShipEnvironment` and the `ShipPromotion`. A reader
//! following a push to a transition (docs/architecture.md tells it at length):
//! 1. [`tips`]: the tip -> release rule, and the loop that applies it to each tip the git source
//!    reports; [`releases`] creates the release (and holds release order, the rollback target
//!    and the history kept).
//! 2. [`executor`]: the executor. For each release it builds a [`machine::Snapshot`], asks
//!    [`machine::step`] (pure: the whole transition table, with its tests) what follows an
//!    [`machine::Event`], persists the transition ([`status`]), then carries out its actions:
//!    the phase's work, done by [`repo`] (reading and rendering a commit), [`apply`] with
//!    [`inventory`] and [`changes`] (what must be written), [`prune`] and [`references`], [`health`], [`checks`], [`analysis`]
//!    (Prometheus tests) and [`jobs`]; each reports the next event. A deployed release is
//!    verified again as [`verification`] schedules. [`context`] is what every reconcile shares; [`error`] decides whether a failure
//!    refuses the commit, is retried, or stalls.
//! 3. Around it: [`environment`] (in sync with git), [`promotion`] (the weekly promotion),
//!    [`events`], [`metrics`], [`clock`], [`text`].
//!
//! Deciding is pure ([`machine`], the tip rule in [`tips`], release order in [`releases`],
//! [`inventory`], [`changes`], [`prune`], [`health`], [`checks`], [`analysis`]' judging, [`verification`],
//! [`status`], the `environment` and
//! `promotion` evaluations, [`error`]'s dispositions); the rest
//! talks to the API server, and every transition is persisted before the action it announces.

pub mod analysis;
pub mod apply;
pub mod changes;
pub mod checks;
pub mod clock;
pub mod context;
pub mod drift_watch;
pub mod environment;
pub mod error;
pub mod events;
pub mod executor;
#[cfg(test)]
mod fixtures;
pub mod health;
pub mod inventory;
pub mod jobs;
pub mod machine;
pub mod metrics;
pub mod notifier;
pub mod orphans;
pub mod promotion;
pub mod prune;
pub mod references;
pub mod releases;
pub mod repo;
pub mod status;
pub use ship_core::text;
pub mod tips;
pub mod verification;
pub mod watches;

pub use executor::{Context, Error, Settings, run};
