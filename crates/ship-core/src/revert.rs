//! A revert asked of a release (`kubectl ship revert RELEASE`): the request is an annotation
//! on the release, answered once in its status. The executor pushes a `git revert` of the
//! release's commit onto its branch's tip (never forced) and records the outcome; the revert
//! commit is then released like any other.
//!
//! | annotation | `status.revert` | effect |
//! |---|---|---|
//! | absent | any | none |
//! | `T` | none, or answering another request | revert, record the outcome for `T` |
//! | `T` | answering `T` | none (answered: a restart, or another look, does not push twice) |

use crate::status::RevertRecord;

/// How a revert ended, as its record says (a fixed label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum Outcome {
    /// A revert commit was pushed.
    Pushed,
    /// The branch's tip already undoes the commit; nothing was pushed.
    AlreadyReverted,
    /// It could not be made or pushed (a conflict, a commit not on the branch, a moved branch,
    /// no push access); nothing was pushed.
    Refused,
}

impl Outcome {
    /// Its fixed label (written in the record, and as the event's reason: `Reverted`,
    /// `AlreadyReverted`, `RevertRefused`).
    pub fn label(self) -> &'static str {
        self.into()
    }

    /// The event reason announcing it.
    pub fn event_reason(self) -> &'static str {
        match self {
            Outcome::Pushed => "Reverted",
            Outcome::AlreadyReverted => "AlreadyReverted",
            Outcome::Refused => "RevertRefused",
        }
    }
}

/// The request to answer now: the annotation's value, unless the record answers it already.
pub fn unanswered<'a>(requested_at: Option<&'a str>, answered: Option<&RevertRecord>) -> Option<&'a str> {
    let requested = requested_at.filter(|r| !r.is_empty())?;
    match answered {
        Some(record) if record.requested_at == requested => None,
        _ => Some(requested),
    }
}

/// The last paragraph of the revert commit's message: which release failed, and who asked.
pub fn note(release: &str, environment: &str, failure: &str, requested_by: &str) -> String {
    let by = if requested_by.is_empty() {
        "someone"
    } else {
        requested_by
    };
    let failure = if failure.is_empty() {
        "no failure recorded"
    } else {
        failure
    };
    format!("Ship: release {release} of {environment} ({failure}); reverted at the request of {by}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(requested_at: &str) -> RevertRecord {
        RevertRecord {
            requested_at: requested_at.into(),
            outcome: Outcome::Pushed.label().into(),
            ..RevertRecord::default()
        }
    }

    #[test]
    fn a_request_is_answered_once() {
        assert_eq!(unanswered(None, None), None);
        assert_eq!(unanswered(Some(""), None), None);
        assert_eq!(unanswered(Some("t1"), None), Some("t1"));
        assert_eq!(unanswered(Some("t1"), Some(&record("t1"))), None);
        assert_eq!(unanswered(Some("t2"), Some(&record("t1"))), Some("t2"));
    }

    #[test]
    fn outcomes_have_fixed_labels_and_reasons() {
        assert_eq!(Outcome::Pushed.label(), "Pushed");
        assert_eq!(Outcome::Refused.event_reason(), "RevertRefused");
        assert_eq!(Outcome::AlreadyReverted.event_reason(), "AlreadyReverted");
        assert_eq!(Outcome::Pushed.event_reason(), "Reverted");
    }

    #[test]
    fn the_note_names_the_release_its_failure_and_who_asked() {
        assert_eq!(
            note("main-0123456789", "main", "TestsFailed", "alice"),
            "Ship: release main-0123456789 of main (TestsFailed); reverted at the request of alice."
        );
        assert!(
            note("r", "main", "", "").contains("(no failure recorded); reverted at the request of someone")
        );
    }
}
