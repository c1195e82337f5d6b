//! The one clock of the engine: releases, environments and the promotion read the time from it,
//! so tests can start shipd at a chosen moment (a Tuesday, say) and every decision agrees.

use std::sync::Arc;

use jiff::Timestamp;

/// The time, as the engine sees it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The real clock.
#[allow(clippy::disallowed_methods)] // the one reader of the wall clock in the engine
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// A clock that reads `start` now and runs at real speed from there (for tests).
pub fn clock_from(start: Timestamp) -> Clock {
    let origin = std::time::Instant::now();
    Arc::new(move || {
        let elapsed = jiff::SignedDuration::try_from(origin.elapsed()).unwrap_or_default();
        start.checked_add(elapsed).unwrap_or(start)
    })
}
