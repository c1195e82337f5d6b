//! Ship's release engine.
//!
//! The engine reconciles `ShipRelease` objects. Deciding what to do is pure ([`status`]); only
//! [`reconcile`] talks to the API server, and it persists every transition before acting on it.

pub mod reconcile;
pub mod source;
pub mod status;

pub use reconcile::{Context, Error, run};
