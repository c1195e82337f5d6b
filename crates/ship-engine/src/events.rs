//! The controller's one event recorder, with bounded memory.
//!
//! kube's [`Recorder`] remembers every event it published in the last six minutes, so that a
//! repeat becomes a series (a count on one Event) instead of a new Event. Its map is bounded only
//! by time and never gives back its capacity: at a soak's pace (two releases a second, a few events
//! each) it held several thousand events, most of shipd's growth in resident memory. client-go
//! bounds the same cache by size (an LRU of 4,096 events). Here the inner recorder is replaced by a
//! fresh one after [`EVENTS_PER_RECORDER`] publishes, which bounds the cache by size as well; the
//! only cost is that a repeat straddling a replacement starts a new Event instead of counting on.

use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

/// Publishes one recorder serves before a fresh one (with an empty cache) replaces it.
pub const EVENTS_PER_RECORDER: u32 = 512;

/// Longest event note kept: the API server accepts 1 KiB; stay well under it.
pub const MAX_NOTE: usize = 1000;

/// The recorder in use and how many events it has published.
struct Current {
    recorder: Recorder,
    published: u32,
    generation: u64,
}

/// A cheaply cloned event recorder, shared by every part of the controller.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    current: Arc<Mutex<Current>>,
}

impl EventRecorder {
    /// A recorder reporting events as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            current: Arc::new(Mutex::new(Current {
                recorder,
                published: 0,
                generation: 0,
            })),
        }
    }

    /// Publishes `event` about `regarding` (a repeat within the recorder's memory is counted on
    /// the earlier Event).
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let recorder = {
            // A panic elsewhere while holding the lock leaves a usable counter behind.
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if current.published >= EVENTS_PER_RECORDER {
                current.recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                current.published = 0;
                current.generation += 1;
            }
            current.published += 1;
            current.recorder.clone()
        };
        recorder.publish(event, regarding).await
    }

    /// Announces `reason` about `regarding` with `note` (its end, within [`MAX_NOTE`]), as part
    /// of `action`. An event is a courtesy: failing to publish one is logged, never an error.
    pub async fn announce(
        &self,
        regarding: &ObjectReference,
        type_: kube::runtime::events::EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(crate::text::tail(note, MAX_NOTE)),
            action: action.into(),
            secondary: None,
        };
        if let Err(err) = self.publish(&event, regarding).await {
            tracing::warn!(error = %err, reason, "cannot publish event");
        }
    }

    /// How many times the inner recorder has been replaced.
    pub fn generation(&self) -> u64 {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("reporter", &self.reporter.controller)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kube::runtime::events::EventType;

    #[tokio::test]
    async fn a_fresh_recorder_takes_over_after_its_quota_of_events() {
        // Nothing listens on port 1: every publish fails fast, and each still counts, since the
        // bound is on what the recorder may remember, not on what succeeded.
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let recorder = EventRecorder::new(client, "ship-controller".into());
        let event = Event {
            type_: EventType::Normal,
            reason: "Test".into(),
            note: None,
            action: "Reconcile".into(),
            secondary: None,
        };
        let regarding = ObjectReference {
            name: Some("r".into()),
            namespace: Some("ns".into()),
            ..ObjectReference::default()
        };
        for _ in 0..EVENTS_PER_RECORDER {
            assert!(recorder.publish(&event, &regarding).await.is_err());
        }
        assert_eq!(recorder.generation(), 0);
        let _ = recorder.publish(&event, &regarding).await;
        assert_eq!(recorder.generation(), 1);
        // Clones share the count.
        let clone = recorder.clone();
        for _ in 0..EVENTS_PER_RECORDER {
            let _ = clone.publish(&event, &regarding).await;
        }
        assert_eq!(recorder.generation(), 2);
    }
}
