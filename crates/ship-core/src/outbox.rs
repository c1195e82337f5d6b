//! One notification's delivery, as one pure function: [`step`] takes the delivery so far
//! ([`Delivery`]), what just happened ([`Event`]) and the time since it began, and returns the
//! new state and the [`Effect`]s to carry out. shipd's notifier sends the request, sleeps, and
//! records the outcome on the release (or promotion) it is about; the machine decides when to
//! try again and when to give up.
//!
//! | state | event | condition | effects | state after |
//! |---|---|---|---|---|
//! | waiting | Due | the delivery was dropped (a newer status made it moot) | Abandon | finished |
//! | waiting | Due | | Attempt | attempting (attempts + 1) |
//! | attempting | Answered(Delivered) | | Finish(Delivered) | finished |
//! | attempting | Answered(Refused) | | Finish(GaveUp, what the receiver said) | finished |
//! | attempting | Answered(Retry) | the next wait ends past the give-up time | Finish(GaveUp, "gave up after N attempts") | finished |
//! | attempting | Answered(Retry) | | CountRetry, Wait(backoff or the receiver's asked wait) | waiting |
//! | any | an event the state does not wait for | | none | unchanged |
//!
//! The wait is Ship's one retry policy ([`crate::backoff::delay`], 1 s to 30 s), or the wait
//! the receiver asked for (`retry-after`, a spent rate limit), within 30 s.

use std::time::Duration;

use crate::status::NotificationOutcome;

/// What a receiver's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accepted (2xx).
    Delivered,
    /// Try again later: 5xx, 408 (timeout), 429 (slow down), a rate limit, or no answer at all.
    Retry,
    /// Refused for good (any other status): the request itself is wrong (a bad token, a
    /// commit the forge does not have), and repeating it changes nothing.
    Refused,
}

/// Shortest wait between two attempts: a receiver that asks for none (`retry-after: 0`, a
/// rate limit whose reset has passed) is not hammered.
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// How long to wait before attempt `attempt + 1` (attempt 1 is the first): Ship's one retry
/// policy from [`MIN_WAIT`] to [`MAX_WAIT`], or the wait the answer asked for, within them.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(wait) => wait.clamp(MIN_WAIT, MAX_WAIT),
        None => crate::backoff::delay(attempt, MIN_WAIT, MAX_WAIT),
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stage {
    /// Before an attempt (the first, or after a wait).
    #[default]
    Waiting,
    /// An attempt is out.
    Attempting,
    /// Finished or abandoned.
    Finished,
}

/// One delivery so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// How long after it began it is given up.
    pub give_up_after: Duration,
    /// Attempts made.
    pub attempts: u32,
    /// Where it stands.
    pub stage: Stage,
}

impl Delivery {
    /// A delivery not attempted yet.
    pub fn new(give_up_after: Duration) -> Self {
        Delivery {
            give_up_after,
            ..Delivery::default()
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time for an attempt (at the start, or a wait ended); `dropped` when a newer status made
    /// the notification moot meanwhile.
    Due {
        /// The notification is no longer owed.
        dropped: bool,
    },
    /// The answer to [`Effect::Attempt`].
    Answered {
        /// What it means.
        answer: Answer,
        /// A sentence about it (no URL, no credential).
        said: String,
        /// The wait the receiver asked for.
        retry_after: Option<Duration>,
    },
}

/// Work for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send the notification (its request, or its few); answer with [`Event::Answered`].
    Attempt,
    /// Count a retry (`ship_notifications_total{result="retried"}`).
    CountRetry,
    /// Sleep this long, then answer with [`Event::Due`].
    Wait(Duration),
    /// Record the outcome on the object, count it, and (given up) warn with an event.
    Finish {
        /// Delivered or given up.
        outcome: NotificationOutcome,
        /// Attempts made.
        attempts: u32,
        /// Why it was given up.
        message: Option<String>,
    },
    /// Stop without a record: the notification is owed no longer.
    Abandon,
}

/// One decision; `elapsed` is the time since the delivery began.
pub fn step(mut delivery: Delivery, event: Event, elapsed: Duration) -> (Delivery, Vec<Effect>) {
    let effects = match (delivery.stage, event) {
        (Stage::Waiting, Event::Due { dropped: true }) => {
            delivery.stage = Stage::Finished;
            vec![Effect::Abandon]
        }
        (Stage::Waiting, Event::Due { dropped: false }) => {
            delivery.attempts = delivery.attempts.saturating_add(1);
            delivery.stage = Stage::Attempting;
            vec![Effect::Attempt]
        }
        (
            Stage::Attempting,
            Event::Answered {
                answer,
                said,
                retry_after,
            },
        ) => {
            let attempts = delivery.attempts;
            let finish = |outcome, message| Effect::Finish {
                outcome,
                attempts,
                message,
            };
            match answer {
                Answer::Delivered => {
                    delivery.stage = Stage::Finished;
                    vec![finish(NotificationOutcome::Delivered, None)]
                }
                Answer::Refused => {
                    delivery.stage = Stage::Finished;
                    vec![finish(NotificationOutcome::GaveUp, Some(said))]
                }
                Answer::Retry => {
                    let wait = backoff(attempts, retry_after);
                    if elapsed.saturating_add(wait) > delivery.give_up_after {
                        delivery.stage = Stage::Finished;
                        vec![finish(
                            NotificationOutcome::GaveUp,
                            Some(format!(
                                "{said}; gave up after {attempts} attempts in {}s",
                                delivery.give_up_after.as_secs()
                            )),
                        )]
                    } else {
                        delivery.stage = Stage::Waiting;
                        vec![Effect::CountRetry, Effect::Wait(wait)]
                    }
                }
            }
        }
        // An answer or a wake-up the delivery does not wait for changes nothing.
        _ => Vec::new(),
    };
    (delivery, effects)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVE_UP: Duration = Duration::from_secs(60);

    fn due() -> Event {
        Event::Due { dropped: false }
    }

    fn answered(answer: Answer, retry_after: Option<Duration>) -> Event {
        Event::Answered {
            answer,
            said: "HTTP 503".into(),
            retry_after,
        }
    }

    fn attempting() -> Delivery {
        let (delivery, _) = step(Delivery::new(GIVE_UP), due(), Duration::ZERO);
        delivery
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_keeps_an_asked_wait_within_bounds() {
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a, None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(1, Some(Duration::from_secs(90))), MAX_WAIT);
        assert_eq!(backoff(1, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(
            backoff(5, Some(Duration::ZERO)),
            MIN_WAIT,
            "asked for no wait: not hammered"
        );
    }

    #[test]
    fn waiting_due_but_dropped_abandons_without_a_record() {
        let (after, effects) = step(
            Delivery::new(GIVE_UP),
            Event::Due { dropped: true },
            Duration::ZERO,
        );
        assert_eq!(effects, vec![Effect::Abandon]);
        assert_eq!(after.stage, Stage::Finished);
        assert_eq!(after.attempts, 0);
    }

    #[test]
    fn waiting_due_attempts() {
        let (after, effects) = step(Delivery::new(GIVE_UP), due(), Duration::ZERO);
        assert_eq!(effects, vec![Effect::Attempt]);
        assert_eq!((after.stage, after.attempts), (Stage::Attempting, 1));
    }

    #[test]
    fn attempting_delivered_finishes() {
        let (after, effects) = step(
            attempting(),
            answered(Answer::Delivered, None),
            Duration::from_secs(1),
        );
        assert_eq!(
            effects,
            vec![Effect::Finish {
                outcome: NotificationOutcome::Delivered,
                attempts: 1,
                message: None
            }]
        );
        assert_eq!(after.stage, Stage::Finished);
    }

    #[test]
    fn attempting_refused_gives_up_with_what_was_said() {
        let (_, effects) = step(
            attempting(),
            answered(Answer::Refused, None),
            Duration::from_secs(1),
        );
        assert_eq!(
            effects,
            vec![Effect::Finish {
                outcome: NotificationOutcome::GaveUp,
                attempts: 1,
                message: Some("HTTP 503".into())
            }]
        );
    }

    #[test]
    fn attempting_retry_past_the_give_up_time_gives_up() {
        // 59 s in, a wait of 1 s (the first backoff) ends at 60 s: still in time; 2 s is not.
        let (_, effects) = step(
            attempting(),
            answered(Answer::Retry, None),
            Duration::from_secs(59),
        );
        assert_eq!(
            effects,
            vec![Effect::CountRetry, Effect::Wait(Duration::from_secs(1))]
        );
        let (_, effects) = step(
            attempting(),
            answered(Answer::Retry, Some(Duration::from_secs(2))),
            Duration::from_secs(59),
        );
        assert_eq!(
            effects,
            vec![Effect::Finish {
                outcome: NotificationOutcome::GaveUp,
                attempts: 1,
                message: Some("HTTP 503; gave up after 1 attempts in 60s".into())
            }]
        );
    }

    #[test]
    fn attempting_retry_waits_by_the_policy_or_as_asked() {
        let (after, effects) = step(attempting(), answered(Answer::Retry, None), Duration::ZERO);
        assert_eq!(
            effects,
            vec![Effect::CountRetry, Effect::Wait(Duration::from_secs(1))]
        );
        assert_eq!(after.stage, Stage::Waiting);
        // The receiver's wait, within 30 s.
        let (_, effects) = step(
            attempting(),
            answered(Answer::Retry, Some(Duration::from_secs(300))),
            Duration::ZERO,
        );
        assert_eq!(effects[1], Effect::Wait(MAX_WAIT));
        // The policy doubles with the attempts.
        let mut delivery = attempting();
        let mut waits = Vec::new();
        for _ in 0..7 {
            let (waiting, effects) = step(delivery, answered(Answer::Retry, None), Duration::ZERO);
            if let Some(Effect::Wait(wait)) = effects.last() {
                waits.push(wait.as_secs());
            }
            (delivery, _) = step(waiting, due(), Duration::ZERO);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(delivery.attempts, 8);
    }

    #[test]
    fn any_state_ignores_an_event_it_does_not_wait_for() {
        let finished = Delivery {
            stage: Stage::Finished,
            ..attempting()
        };
        for (state, event) in [
            (Delivery::new(GIVE_UP), answered(Answer::Delivered, None)),
            (attempting(), due()),
            (attempting(), Event::Due { dropped: true }),
            (finished, due()),
            (finished, answered(Answer::Retry, None)),
        ] {
            let (after, effects) = step(state, event.clone(), Duration::ZERO);
            assert_eq!(after, state, "{event:?}");
            assert!(effects.is_empty(), "{event:?}");
        }
    }

    /// Seeded walks of answers and elapsed times: every delivery ends (delivered, given up or
    /// abandoned) by its give-up time, finishes once, and never waits past it.
    #[test]
    fn random_walks_end_once_and_in_time() {
        for seed in 0..500 {
            let mut rng = ship_testkit::seeded::Seeded::new(seed);
            let give_up = Duration::from_secs(1 + rng.below(120) as u64);
            let mut delivery = Delivery::new(give_up);
            let mut elapsed = Duration::ZERO;
            let mut event = Event::Due {
                dropped: rng.chance(3),
            };
            let mut finished = 0;
            for _ in 0..200 {
                let (after, effects) = step(delivery, event.clone(), elapsed);
                delivery = after;
                let mut next = None;
                for effect in effects {
                    match effect {
                        Effect::Attempt => {
                            elapsed += Duration::from_millis(100);
                            let answer = *rng.pick(&[
                                Answer::Retry,
                                Answer::Retry,
                                Answer::Retry,
                                Answer::Delivered,
                                Answer::Refused,
                            ]);
                            let retry_after =
                                rng.chance(20).then(|| Duration::from_secs(rng.below(100) as u64));
                            next = Some(Event::Answered {
                                answer,
                                said: "said".into(),
                                retry_after,
                            });
                        }
                        Effect::Wait(wait) => {
                            assert!(
                                elapsed + wait <= give_up,
                                "seed {seed}: waited past the give-up time"
                            );
                            elapsed += wait;
                            next = Some(Event::Due {
                                dropped: rng.chance(3),
                            });
                        }
                        Effect::Finish { attempts, .. } => {
                            finished += 1;
                            assert_eq!(attempts, delivery.attempts, "seed {seed}");
                        }
                        Effect::Abandon => finished += 1,
                        Effect::CountRetry => {}
                    }
                }
                match next {
                    Some(e) => event = e,
                    None => break,
                }
            }
            assert_eq!(finished, 1, "seed {seed}: a delivery ends exactly once");
            assert_eq!(delivery.stage, Stage::Finished, "seed {seed}");
        }
    }
}
