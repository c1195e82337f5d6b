//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go does it: only the holder
//! fetches, applies and tests. The holder renews every `retry_period`; a standby takes the
//! Lease once it has gone unrenewed for `lease_duration`; a holder that cannot renew within
//! `renew_deadline` steps down (shipd then exits, so a fresh process starts as a standby).
//!
//! The holder is bounded in time, so two leaders never act at once even when the API server
//! hangs rather than fails: every Lease call is cut off after [`Timing::call_timeout`], and the
//! holder gives up at `renew_deadline` after the start of its last successful renewal, which is
//! no later than the renew time a standby reads. A standby cannot take the Lease before
//! `lease_duration` after that renew time, so `lease_duration − renew_deadline` is the margin
//! left for the process to exit and for clock skew between replicas.
//!
//! [`decide`] is pure; [`Elector`] is the thin layer that reads and writes the Lease, with
//! optimistic concurrency (a write with a stale resourceVersion loses, so two candidates
//! never both win).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;
use tracing::{info, warn};

/// Timing of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease holds without renewal before a standby may take it.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// Time between attempts (renewals, and a standby's looks).
    pub retry_period: Duration,
}

/// Timings that cannot bound a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingError(String);

impl std::fmt::Display for TimingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimingError {}

impl Timing {
    /// The longest any one attempt (a read and a write of the Lease) may take: half of
    /// `renew_deadline − retry_period`, so that at least two attempts fit before the deadline.
    pub fn call_timeout(&self) -> Duration {
        self.renew_deadline.saturating_sub(self.retry_period) / 2
    }

    /// Checks that these timings bound a leader, as client-go does:
    /// `lease_duration > renew_deadline > retry_period > 0`.
    pub fn validate(&self) -> Result<(), TimingError> {
        if self.retry_period.is_zero() {
            return Err(TimingError(
                "the Lease retry period must be longer than zero".into(),
            ));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(TimingError(format!(
                "the Lease renew deadline ({:?}) must be longer than the retry period ({:?})",
                self.renew_deadline, self.retry_period
            )));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(TimingError(format!(
                "the Lease duration ({:?}) must be longer than the renew deadline ({:?}): a leader \
                 that cannot renew must stop before a standby may take over",
                self.lease_duration, self.renew_deadline
            )));
        }
        Ok(())
    }
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate should do with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it: wait (their identity, and how long until it expires).
    Standby {
        /// The holder.
        holder: String,
        /// Time left before the Lease expires unless renewed.
        expires_in: Duration,
    },
}

/// Decides from the Lease's spec (as read), our identity, and now.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let Some(renewed) = renewed else {
        return Decision::Acquire;
    };
    let age = Duration::try_from(now.duration_since(renewed)).unwrap_or(Duration::ZERO);
    if age >= duration {
        Decision::Acquire
    } else {
        Decision::Standby {
            holder,
            expires_in: duration - age,
        }
    }
}

/// A candidate for leadership.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// A candidate `identity` for Lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
        }
    }

    /// One attempt: reads the Lease and acquires or renews it when [`decide`] says so.
    /// `Ok(true)` while we hold it.
    pub async fn try_once(&self) -> Result<bool, kube::Error> {
        // The Lease's times are compared across replicas: the wall clock, never a test clock.
        #[allow(clippy::disallowed_methods)]
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
            self.timing.lease_duration,
        );
        let seconds = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let stamp = MicroTime(now);
        let result = match (decision, current) {
            (Decision::Standby { .. }, _) => return Ok(false),
            (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(stamp.clone()),
                        renew_time: Some(stamp),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (decision, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if decision == Decision::Acquire {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(stamp.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(stamp);
                // A replace carries the resourceVersion we read: if someone wrote in between,
                // the API server refuses it (409) and we did not win.
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// One attempt, cut off after [`Timing::call_timeout`] (a hung API server is a failed
    /// attempt, never a wait without end).
    async fn attempt(&self) -> Result<bool, AttemptError> {
        match tokio::time::timeout(self.timing.call_timeout(), self.try_once()).await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(err)) => Err(AttemptError::Api(err)),
            Err(_elapsed) => Err(AttemptError::TimedOut(self.timing.call_timeout())),
        }
    }

    /// Waits until this candidate holds the Lease. Returns when the winning attempt started:
    /// the renew time it wrote is no earlier, so [`Elector::hold`] counts its deadline from it.
    pub async fn acquire(&self) -> Instant {
        let mut announced = false;
        loop {
            let started = Instant::now();
            match self.attempt().await {
                Ok(true) => {
                    info!(lease = self.name, identity = self.identity, "became the leader");
                    return started;
                }
                Ok(false) if !announced => {
                    info!(
                        lease = self.name,
                        identity = self.identity,
                        "standing by: another replica leads"
                    );
                    announced = true;
                }
                Ok(false) => {}
                Err(err) => warn!(lease = self.name, error = %err, "cannot read or write the leader Lease"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the Lease, held since `renewed` (see [`Elector::acquire`]), until leadership is
    /// lost; then returns why. The caller must stop acting at once.
    pub async fn hold(&self, renewed: Instant) -> Lost {
        let lost = hold(self.timing, renewed, || self.attempt()).await;
        match &lost {
            Lost::TakenOver => warn!(lease = self.name, "another replica took the leader Lease"),
            Lost::DeadlinePassed => warn!(
                lease = self.name,
                "could not renew the leader Lease in time; stepping down"
            ),
        }
        lost
    }
}

/// Why a renewal attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// The API server answered with an error.
    Api(kube::Error),
    /// The API server did not answer in time.
    TimedOut(Duration),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Api(err) => write!(f, "{err}"),
            AttemptError::TimedOut(after) => write!(f, "no answer within {after:?}"),
        }
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Another replica holds the Lease.
    TakenOver,
    /// No renewal succeeded within `renew_deadline` of the last one.
    DeadlinePassed,
}

/// The holder's loop, over any renewal `attempt` (the Lease, or a test's stand-in): one attempt
/// every `retry_period`, each cut off at the deadline, which is `renew_deadline` after the start
/// of the last attempt that renewed. Returns no later than that deadline, whatever `attempt`
/// does (hangs, fails, or answers late).
pub async fn hold<F, Fut, E>(timing: Timing, mut renewed: Instant, mut attempt: F) -> Lost
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    loop {
        let deadline = renewed + timing.renew_deadline;
        if tokio::time::timeout_at(deadline, tokio::time::sleep(timing.retry_period))
            .await
            .is_err()
        {
            return Lost::DeadlinePassed;
        }
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(true)) => renewed = started,
            Ok(Ok(false)) => return Lost::TakenOver,
            Ok(Err(err)) => warn!(error = %err, "cannot renew the leader Lease"),
            Err(_deadline) => return Lost::DeadlinePassed,
        }
        if Instant::now() >= renewed + timing.renew_deadline {
            return Lost::DeadlinePassed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn who_acts_when() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", now, d), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", now, d),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease("a", ago(5), 15)), "a", now, d),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease("b", ago(5), 15)), "a", now, d),
            Decision::Standby {
                holder: "b".into(),
                expires_in: Duration::from_secs(10)
            }
        );
        // Expired: b stopped renewing 15 s ago.
        assert_eq!(
            decide(Some(&lease("b", ago(15), 15)), "a", now, d),
            Decision::Acquire
        );
        // A clock behind the holder's never takes a fresh Lease.
        assert!(matches!(
            decide(
                Some(&lease("b", now + jiff::SignedDuration::from_secs(3), 15)),
                "a",
                now,
                d
            ),
            Decision::Standby { .. }
        ));
    }

    fn timing() -> Timing {
        Timing::default()
    }

    #[test]
    fn every_call_ends_before_the_renew_deadline_minus_a_retry() {
        let t = timing();
        assert!(t.call_timeout() < t.renew_deadline - t.retry_period);
        assert!(t.validate().is_ok());
        let swapped = Timing {
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(15),
            ..t
        };
        assert!(
            swapped
                .validate()
                .unwrap_err()
                .to_string()
                .contains("renew deadline")
        );
        let no_room = Timing {
            renew_deadline: Duration::from_secs(2),
            ..t
        };
        assert!(no_room.validate().is_err());
        let zero = Timing {
            retry_period: Duration::ZERO,
            ..t
        };
        assert!(zero.validate().is_err());
    }

    /// How long `hold` led, in virtual time, with renewals that behave as `attempt` says.
    async fn led_for<F, Fut>(attempt: F) -> (Lost, Duration)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, String>>,
    {
        let start = Instant::now();
        // Bounded, so that a `hold` that never returns fails the test instead of hanging it.
        let lost = tokio::time::timeout(Duration::from_secs(3600), hold(timing(), start, attempt))
            .await
            .expect("hold never returned");
        (lost, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_api_server_ends_leadership_at_the_renew_deadline() {
        let (lost, led) = led_for(std::future::pending).await;
        assert_eq!(lost, Lost::DeadlinePassed);
        assert_eq!(led, timing().renew_deadline);
        assert!(led < timing().lease_duration);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_end_leadership_at_the_renew_deadline() {
        let (lost, led) = led_for(|| async { Err("503".to_owned()) }).await;
        assert_eq!(lost, Lost::DeadlinePassed);
        assert!(led <= timing().renew_deadline, "{led:?}");
        assert!(led >= timing().renew_deadline - timing().retry_period, "{led:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_answers_late_counts_from_when_it_was_sent() {
        // Each answer takes 7 s: the Lease says renewed at the send, so the deadline counts
        // from there, and the leader must step down rather than believe it renewed late.
        let (lost, led) = led_for(|| async {
            tokio::time::sleep(Duration::from_secs(7)).await;
            Ok(true)
        })
        .await;
        // Sent at 2 s, answered at 9 s: renewed as of 2 s, so the deadline is 12 s; the next
        // attempt (sent at 11 s) is cut off there.
        assert_eq!(lost, Lost::DeadlinePassed);
        assert_eq!(led, Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn another_holder_ends_leadership_at_once() {
        let (lost, led) = led_for(|| async { Ok(false) }).await;
        assert_eq!(lost, Lost::TakenOver);
        assert_eq!(led, timing().retry_period);
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_that_succeed_keep_leading() {
        let start = Instant::now();
        let held = tokio::time::timeout(
            Duration::from_secs(3600),
            hold(timing(), start, || async { Ok::<_, String>(true) }),
        )
        .await;
        assert!(held.is_err(), "gave up leading although every renewal succeeded");
    }

    #[tokio::test(start_paused = true)]
    async fn one_failed_renewal_between_good_ones_is_survived() {
        let mut calls = 0;
        let held = tokio::time::timeout(
            Duration::from_secs(600),
            hold(timing(), Instant::now(), move || {
                calls += 1;
                let answer = if calls % 3 == 0 {
                    Err("timeout".to_owned())
                } else {
                    Ok(true)
                };
                async move { answer }
            }),
        )
        .await;
        assert!(held.is_err());
    }
}
