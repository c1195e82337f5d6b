//! The environments' keeper: what a look announces, and which environments it removes, as pure
//! functions. The keeper computes each environment's new status
//! ([`crate::environment::status`], over the releases), persists it with a compare-and-set, and only
//! then carries out what [`step`] returns for it: so a write that loses its compare-and-set
//! announces nothing, and the next look decides again.
//!
//! | before → after (persisted) | effects |
//! |---|---|
//! | not held → held | Publish(Warning `Held`: who, why, how to resume) |
//! | held → not held | Publish(Normal `Resumed`, naming the tips held back meanwhile) |
//! | a held tip not recorded before | Publish(Normal `TipHeld`), once per tip |
//! | branch found → branch missing | Publish(Warning `BranchMissing`, the environment's message) |
//! | branch missing → branch found | Publish(Normal `BranchRestored`) |
//! | anything else | none |
//!
//! [`to_remove`]: an environment Ship made that no `ship.yaml` declares any more goes, but only
//! when every followed branch's config could be read (an unreadable config must not remove the
//! environments it declares).

use std::collections::BTreeSet;

/// A tip that made no release because the environment was held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTip {
    /// Full SHA.
    pub commit: String,
    /// Short SHA.
    pub short: String,
}

/// What the keeper reads of an environment's status, before or after a look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its hold, described (`held by alice since …: incident`), when a person holds it.
    pub hold: Option<String>,
    /// The remote lacks its branch.
    pub branch_missing: bool,
    /// The tips held back while held.
    pub held_tips: Vec<HeldTip>,
}

/// One environment's look, once its new status is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looked {
    /// The environment.
    pub environment: String,
    /// Its branch.
    pub branch: String,
    /// As persisted before the look.
    pub before: Seen,
    /// As the look persisted it.
    pub after: Seen,
    /// The status message the look wrote (a missing branch's event says it).
    pub message: String,
}

/// Work for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// An event on the ShipEnvironment, logged too.
    Publish {
        /// Warning rather than Normal.
        warning: bool,
        /// The event's reason.
        reason: &'static str,
        /// Its note.
        message: String,
        /// The commit it is about, when one.
        commit: Option<String>,
    },
}

fn publish(warning: bool, reason: &'static str, message: String) -> Effect {
    Effect::Publish {
        warning,
        reason,
        message,
        commit: None,
    }
}

/// What a persisted look announces, in order: the hold placed or lifted, each tip newly held
/// back, the branch gone or back.
pub fn step(looked: &Looked) -> Vec<Effect> {
    let (before, after, name) = (&looked.before, &looked.after, &looked.environment);
    let mut effects = Vec::new();
    match (&before.hold, &after.hold) {
        (None, Some(hold)) => effects.push(publish(
            true,
            "Held",
            format!("{hold}: new tips make no release and promotions wait (kubectl ship resume {name})"),
        )),
        (Some(_), None) => {
            let waited: Vec<&str> = before.held_tips.iter().map(|h| h.short.as_str()).collect();
            let message = if waited.is_empty() {
                "resumed: no tip was held back".to_owned()
            } else {
                format!(
                    "resumed: the newest tip deploys; held back meanwhile: {}",
                    waited.join(", ")
                )
            };
            effects.push(publish(false, "Resumed", message));
        }
        _ => {}
    }
    for held in after
        .held_tips
        .iter()
        .filter(|h| !before.held_tips.iter().any(|b| b.commit == h.commit))
    {
        effects.push(Effect::Publish {
            warning: false,
            reason: "TipHeld",
            message: format!(
                "the tip {} of {} makes no release while the environment is held",
                held.short, looked.branch
            ),
            commit: Some(held.commit.clone()),
        });
    }
    match (before.branch_missing, after.branch_missing) {
        (false, true) => effects.push(publish(true, "BranchMissing", looked.message.clone())),
        (true, false) => effects.push(publish(
            false,
            "BranchRestored",
            format!("branch {} is back on the remote", looked.branch),
        )),
        _ => {}
    }
    effects
}

/// The environments to remove: those Ship made (`ours`) that no config declares, when every
/// config could be read (`complete`) and there is at least one.
pub fn to_remove<'a>(
    existing: impl IntoIterator<Item = (&'a str, bool)>,
    declared: &BTreeSet<&str>,
    complete: bool,
    configs_read: usize,
) -> Vec<String> {
    if !complete || configs_read == 0 {
        return Vec::new();
    }
    existing
        .into_iter()
        .filter(|(name, ours)| *ours && !declared.contains(name))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(c: char) -> HeldTip {
        HeldTip {
            commit: c.to_string().repeat(40),
            short: c.to_string().repeat(7),
        }
    }

    fn looked(before: Seen, after: Seen) -> Looked {
        Looked {
            environment: "production".into(),
            branch: "production".into(),
            before,
            after,
            message: "branch production is missing on the remote: production keeps running …".into(),
        }
    }

    fn held(by: &str) -> Seen {
        Seen {
            hold: Some(format!("held by {by}: incident")),
            ..Seen::default()
        }
    }

    fn reasons(effects: &[Effect]) -> Vec<(bool, &'static str)> {
        effects
            .iter()
            .map(|Effect::Publish { warning, reason, .. }| (*warning, *reason))
            .collect()
    }

    fn message(effects: &[Effect], index: usize) -> &str {
        let Effect::Publish { message, .. } = &effects[index];
        message
    }

    #[test]
    fn not_held_to_held_warns_how_to_resume() {
        let effects = step(&looked(Seen::default(), held("alice")));
        assert_eq!(reasons(&effects), [(true, "Held")]);
        assert_eq!(
            message(&effects, 0),
            "held by alice: incident: new tips make no release and promotions wait (kubectl ship resume production)"
        );
    }

    #[test]
    fn held_to_not_held_names_the_tips_held_back() {
        let mut before = held("alice");
        before.held_tips = vec![tip('a'), tip('b')];
        let effects = step(&looked(before, Seen::default()));
        assert_eq!(reasons(&effects), [(false, "Resumed")]);
        assert_eq!(
            message(&effects, 0),
            "resumed: the newest tip deploys; held back meanwhile: aaaaaaa, bbbbbbb"
        );
        let effects = step(&looked(held("alice"), Seen::default()));
        assert_eq!(message(&effects, 0), "resumed: no tip was held back");
    }

    #[test]
    fn a_held_tip_not_recorded_before_is_announced_once() {
        let mut before = held("alice");
        before.held_tips = vec![tip('a')];
        let mut after = before.clone();
        after.held_tips.push(tip('b'));
        let effects = step(&looked(before, after.clone()));
        assert_eq!(reasons(&effects), [(false, "TipHeld")]);
        assert!(message(&effects, 0).contains("bbbbbbb of production"));
        let Effect::Publish { commit, .. } = &effects[0];
        assert_eq!(commit.as_deref(), Some("b".repeat(40).as_str()));
        assert!(step(&looked(after.clone(), after)).is_empty(), "not again");
    }

    #[test]
    fn branch_found_to_missing_warns_with_the_status_message() {
        let missing = Seen {
            branch_missing: true,
            ..Seen::default()
        };
        let effects = step(&looked(Seen::default(), missing));
        assert_eq!(reasons(&effects), [(true, "BranchMissing")]);
        assert!(message(&effects, 0).starts_with("branch production is missing"));
    }

    #[test]
    fn branch_missing_to_found_says_it_is_back() {
        let missing = Seen {
            branch_missing: true,
            ..Seen::default()
        };
        let effects = step(&looked(missing, Seen::default()));
        assert_eq!(reasons(&effects), [(false, "BranchRestored")]);
        assert_eq!(message(&effects, 0), "branch production is back on the remote");
    }

    #[test]
    fn anything_else_announces_nothing() {
        for seen in [Seen::default(), held("alice")] {
            assert!(step(&looked(seen.clone(), seen)).is_empty());
        }
        // Another person's hold replacing one is no new hold.
        assert!(step(&looked(held("alice"), held("bob"))).is_empty());
    }

    #[test]
    fn several_changes_at_once_come_in_order() {
        let mut after = held("alice");
        after.branch_missing = true;
        after.held_tips = vec![tip('c')];
        let effects = step(&looked(Seen::default(), after));
        assert_eq!(
            reasons(&effects),
            [(true, "Held"), (false, "TipHeld"), (true, "BranchMissing")]
        );
    }

    #[test]
    fn only_ships_undeclared_environments_go_and_only_when_every_config_was_read() {
        let existing = [("main", true), ("old", true), ("by-hand", false)];
        let declared: BTreeSet<&str> = ["main"].into();
        assert_eq!(to_remove(existing, &declared, true, 2), ["old"]);
        assert!(
            to_remove(existing, &declared, false, 2).is_empty(),
            "a config unread"
        );
        assert!(
            to_remove(existing, &declared, true, 0).is_empty(),
            "no config at all"
        );
    }
}
