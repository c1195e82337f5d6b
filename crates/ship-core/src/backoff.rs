//! The one retry policy of Ship: every loop that retries after a failure (the git fetch, the
//! environments' keeper, the promotion, notification delivery) waits this long. backon's
//! exponential schedule, without jitter, so a status can say when the next try is.

use std::time::Duration;

use backon::BackoffBuilder;

/// The delay before retry number `failures` (1-based): `min * 2^(failures-1)`, capped at `max`.
pub fn delay(failures: u32, min: Duration, max: Duration) -> Duration {
    // Past 32 doublings every schedule has long reached its cap.
    let nth = failures.saturating_sub(1).min(32) as usize;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(nth)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_to_max_and_stays_there() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (1..=9).map(|n| delay(n, min, max).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay(0, min, max), min, "no failure yet: the shortest wait");
        assert_eq!(delay(u32::MAX, min, max), max);
    }
}
