//! Continuous verification: which tests of a commit run again against the deployed release.
//! The rules (when a test is due, what a run leaves in the status) are pure and live in
//! [`ship_core::verification`]; this reads the cadences from `ship.yaml`.

use ship_render::ShipConfig;
use ship_render::config::OnFailure;

pub use ship_core::verification::*;

/// The continuous verification tests of `environment` in `config`.
pub fn cadences(config: &ShipConfig, environment: &str) -> Vec<Cadence> {
    config
        .tests_for(environment)
        .filter_map(|test| {
            Some(Cadence {
                test: test.name.clone(),
                every: test.every()?,
                rolls_back: test.on_failure == OnFailure::Rollback,
            })
        })
        .collect()
}
