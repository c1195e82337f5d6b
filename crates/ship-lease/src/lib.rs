//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go does it: only the holder
//! fetches, applies and tests. The holder renews every `retry_period`; a standby takes the
//! Lease once it has gone unrenewed for `lease_duration`; a holder that cannot renew within
//! `renew_deadline` steps down (shipd then exits, so a fresh process starts as a standby).
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

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_once().await {
                Ok(true) => {
                    info!(lease = self.name, identity = self.identity, "became the leader");
                    return;
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

    /// Renews the Lease until it cannot for `renew_deadline` (or someone else took it); then
    /// returns: leadership is lost.
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_once().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = self.name, "another replica took the leader Lease");
                    return;
                }
                Err(err) => warn!(lease = self.name, error = %err, "cannot renew the leader Lease"),
            }
            if last_renewed.elapsed() >= self.timing.renew_deadline {
                warn!(
                    lease = self.name,
                    "could not renew the leader Lease in time; stepping down"
                );
                return;
            }
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
}
