//! Ship's rendering and validation, as pure functions over a checked-out tree:
//! - [`config`]: the repository's own `ship.yaml`;
//! - later: manifests of one environment at one commit, rendered and validated before anything
//!   touches a cluster.

pub mod config;
