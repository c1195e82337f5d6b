//! What is owed: the deliveries a release's (or the promotion's) persisted history calls for,
//! less those its status records as delivered or given up on. Pure.
//!
//! Nothing is written before a send, because the owed record already exists: the controller
//! persists each transition before the action it announces, and a delivery's id names the
//! transition (`<target>/<trigger>/<time>`). After a SIGKILL, the next shipd finds the same
//! transitions and the same records, so what was owed is still owed and what was recorded is
//! not sent again. The one window left is between a receiver's answer and the record: a
//! delivery may then be sent twice, with the same id (at least once, as promised; generic
//! webhooks carry the id so a receiver can drop the repeat, and a forge keeps the last state).

use jiff::Timestamp;
use ship_api::{NotificationRecord, PromotionOutcome, ShipPromotion, ShipRelease};

use crate::config::{Target, TargetKind, Trigger};

/// One delivery owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    /// Its id: `<target>/<trigger>/<transition time, seconds since the epoch>`.
    pub id: String,
    /// The target's index in the resolved targets.
    pub target: usize,
    /// What happened.
    pub trigger: Trigger,
    /// When it happened.
    pub at: Timestamp,
}

/// The trigger a promotion run's outcome is, if any (an up-to-date target is no news).
pub fn promotion_trigger(outcome: PromotionOutcome) -> Option<Trigger> {
    match outcome {
        PromotionOutcome::Promoted => Some(Trigger::PromotionDone),
        PromotionOutcome::UpToDate => None,
        PromotionOutcome::NothingTested
        | PromotionOutcome::Diverged
        | PromotionOutcome::BranchMissing
        | PromotionOutcome::Error
        | PromotionOutcome::Held
        | PromotionOutcome::UndeclaredDifferences => Some(Trigger::PromotionRefused),
    }
}

fn id(target: &Target, trigger: Trigger, at: Timestamp) -> String {
    format!("{}/{}/{}", target.name, trigger.as_ref(), at.as_second())
}

/// The deliveries `release` is owed, oldest first: for each target reporting its environment,
/// each transition it fires on that happened at or after `since` (a target added today does
/// not replay last month) and is not in `recorded` (`status.notifications`, with whatever this
/// process wrote that the caller's copy does not show yet).
///
/// A commit status says only what the commit's state is now, so a commit-status target is
/// owed the newest of its transitions only: a `pending` never lands after the `success` that
/// followed it, and a restart after both sends `success` alone.
pub fn owed_for_release(
    release: &ShipRelease,
    recorded: &[NotificationRecord],
    targets: &[Target],
    since: Timestamp,
) -> Vec<Owed> {
    let Some(status) = release.status.as_ref() else {
        return Vec::new();
    };
    let recorded = |id: &str| recorded.iter().any(|n| n.id == id);
    let mut owed = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        if !target.reports(&release.spec.environment) {
            continue;
        }
        let fired = status.transitions.iter().filter_map(|t| {
            let trigger = Trigger::of_phase(t.phase).filter(|tr| target.fires_on(*tr))?;
            Some((trigger, t.at.0))
        });
        let test_release = release.spec.reason == ship_api::Reason::Bisect;
        let mut fired: Vec<(Trigger, Timestamp)> = match target.kind {
            TargetKind::CommitStatus { .. } => {
                // Every trigger a commit-status target fires on sets a state; the newest is
                // the commit's state now.
                let mut all = said_started(fired.collect());
                all.drain(..all.len().saturating_sub(1));
                all
            }
            // A bisection's test releases are questions: only their commits' statuses tell
            // (the commits of the range found good or bad), no chat and no deployment.
            _ if test_release => Vec::new(),
            // A deployment's statuses are its history on GitHub: each is owed, in order.
            TargetKind::Deployment { .. } => said_started(fired.collect()),
            TargetKind::Webhook { .. } => fired.collect(),
        };
        // The culprit a bisection named, once, when it was reported (about another commit
        // than the release's own, so beside its newest state, not instead of it).
        if let Some(reported) = culprit_reported(release).filter(|_| target.fires_on(Trigger::CulpritNamed)) {
            fired.push((Trigger::CulpritNamed, reported));
        }
        for (trigger, at) in fired {
            let id = id(target, trigger, at);
            if at >= since && !recorded(&id) {
                owed.push(Owed {
                    id,
                    target: index,
                    trigger,
                    at,
                });
            }
        }
    }
    owed.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    owed
}

/// When the release's bisection named a culprit and reported it.
fn culprit_reported(release: &ShipRelease) -> Option<Timestamp> {
    let bisection = release.status.as_ref()?.bisection.as_ref()?;
    bisection.culprit.as_ref()?;
    Some(bisection.reported_at.as_ref()?.0)
}

/// `fired` without its Superseded unless the release had said it started (Applying): a
/// release superseded before it applied never said anything about its commit, and has no
/// deployment; one superseded later said `pending` (`in_progress`), which must not stay so.
fn said_started(mut fired: Vec<(Trigger, Timestamp)>) -> Vec<(Trigger, Timestamp)> {
    if !fired.iter().any(|(t, _)| *t == Trigger::Applying) {
        fired.retain(|(t, _)| *t != Trigger::Superseded);
    }
    fired
}

/// The deliveries the promotion's last run is owed (the status keeps one run; each run is a
/// new `at`).
pub fn owed_for_promotion(
    promotion: &ShipPromotion,
    recorded: &[NotificationRecord],
    targets: &[Target],
    since: Timestamp,
) -> Vec<Owed> {
    let Some(status) = promotion.status.as_ref() else {
        return Vec::new();
    };
    let Some(run) = status.last_run.as_ref() else {
        return Vec::new();
    };
    let Some(trigger) = promotion_trigger(run.outcome) else {
        return Vec::new();
    };
    let at = run.at.0;
    targets
        .iter()
        .enumerate()
        .filter(|(_, t)| t.reports(&promotion.spec.to) && t.fires_on(trigger))
        .map(|(index, t)| Owed {
            id: id(t, trigger, at),
            target: index,
            trigger,
            at,
        })
        .filter(|o| at >= since && !recorded.iter().any(|n| n.id == o.id))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::NotifyConfig;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use ship_api::{NotificationOutcome, Phase, Reason, ShipReleaseSpec, ShipReleaseStatus, Transition};

    fn targets() -> Vec<Target> {
        NotifyConfig::parse(
            "commitStatuses: [{name: forge, forge: gitea, apiUrl: 'http://f', repository: a/b, tokenSecret: {name: t, key: k}}]
webhooks:
  - {name: chat, format: slack, urlSecret: {name: s, key: u}}
  - {name: audit, format: json, url: 'http://a', signingSecret: {name: s, key: k}, on: [Applying, Succeeded, Failed, RolledBack], environments: [production]}
",
        )
        .unwrap()
        .targets("/srv/app.git")
        .unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn release(environment: &str, phases: &[(Phase, i64)]) -> ShipRelease {
        let mut r = ShipRelease::new(
            "r",
            ShipReleaseSpec {
                environment: environment.into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                branch: environment.into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
        );
        r.status = Some(ShipReleaseStatus {
            transitions: phases
                .iter()
                .map(|(phase, s)| Transition {
                    phase: *phase,
                    at: Time(at(*s)),
                    message: String::new(),
                })
                .collect(),
            ..ShipReleaseStatus::default()
        });
        r
    }

    fn record(r: &mut ShipRelease, id: &str) {
        r.status.as_mut().unwrap().notifications.push(NotificationRecord {
            id: id.into(),
            outcome: NotificationOutcome::Delivered,
            attempts: 1,
            at: Time(at(0)),
            message: None,
        });
    }

    fn records_of(r: &ShipRelease) -> &[NotificationRecord] {
        r.status.as_ref().map_or(&[], |s| s.notifications.as_slice())
    }

    fn ids(owed: &[Owed]) -> Vec<&str> {
        owed.iter().map(|o| o.id.as_str()).collect()
    }

    /// A release that failed its tests and rolled back, a transition a second.
    const ROLLED_BACK: [(Phase, i64); 7] = [
        (Phase::Pending, 1),
        (Phase::Applying, 2),
        (Phase::Progressing, 3),
        (Phase::Testing, 4),
        (Phase::Failed, 5),
        (Phase::RollingBack, 6),
        (Phase::RolledBack, 7),
    ];

    #[test]
    fn a_rollback_owes_each_target_what_it_fires_on() {
        let history = ROLLED_BACK;
        let mut r = release("production", &history);
        assert_eq!(
            ids(&owed_for_release(&r, records_of(&r), &targets(), at(0))),
            [
                "audit/Applying/2",
                "audit/Failed/5",
                "chat/Failed/5",
                "audit/RolledBack/7",
                "chat/RolledBack/7",
                // The forge is owed the commit's state now, not the way there.
                "forge/RolledBack/7",
            ]
        );
        // Recorded deliveries are not owed again; the rest are.
        record(&mut r, "chat/Failed/5");
        record(&mut r, "forge/RolledBack/7");
        assert_eq!(
            ids(&owed_for_release(&r, records_of(&r), &targets(), at(0))),
            [
                "audit/Applying/2",
                "audit/Failed/5",
                "audit/RolledBack/7",
                "chat/RolledBack/7"
            ]
        );
        // Another environment: the audit hook reports production only.
        let main = release("main", &history);
        assert_eq!(
            ids(&owed_for_release(&main, records_of(&main), &targets(), at(0))),
            ["chat/Failed/5", "chat/RolledBack/7", "forge/RolledBack/7"]
        );
        // Transitions older than `since` are not replayed.
        assert_eq!(
            ids(&owed_for_release(&main, records_of(&main), &targets(), at(6))),
            ["chat/RolledBack/7", "forge/RolledBack/7"]
        );
    }

    #[test]
    fn a_forge_hears_pending_while_applying_and_then_success_only() {
        use Phase::*;
        let applying = release("main", &[(Pending, 1), (Applying, 2), (Progressing, 3)]);
        assert_eq!(
            ids(&owed_for_release(
                &applying,
                records_of(&applying),
                &targets(),
                at(0)
            )),
            ["forge/Applying/2"]
        );
        let mut done = release(
            "main",
            &[(Pending, 1), (Applying, 2), (Testing, 4), (Succeeded, 9)],
        );
        assert_eq!(
            ids(&owed_for_release(&done, records_of(&done), &targets(), at(0))),
            ["forge/Succeeded/9"]
        );
        record(&mut done, "forge/Succeeded/9");
        assert!(owed_for_release(&done, records_of(&done), &targets(), at(0)).is_empty());
        // A release superseded before it applied owes the forge nothing (it never said
        // pending); one superseded while applying owes it a cancelled status, so the commit's
        // pending does not stay forever. One without a status owes nothing at all.
        let superseded = release("main", &[(Pending, 1), (Superseded, 2)]);
        assert!(owed_for_release(&superseded, records_of(&superseded), &targets(), at(0)).is_empty());
        let cut_short = release("main", &[(Pending, 1), (Applying, 2), (Superseded, 3)]);
        assert_eq!(
            ids(&owed_for_release(
                &cut_short,
                records_of(&cut_short),
                &targets(),
                at(0)
            )),
            ["forge/Superseded/3"]
        );
        let mut bare = superseded.clone();
        bare.status = None;
        assert!(owed_for_release(&bare, records_of(&bare), &targets(), at(0)).is_empty());
    }

    #[test]
    fn a_deployment_hears_every_transition_that_sets_its_state() {
        use Phase::*;
        let deployments = NotifyConfig::parse(
            "deployments: [{name: deploy, apiUrl: 'http://gh', repository: a/b, tokenSecret: {name: t, key: k}}]",
        )
        .unwrap()
        .targets("/srv/app.git")
        .unwrap();
        let mut r = release("production", &ROLLED_BACK);
        assert_eq!(
            ids(&owed_for_release(&r, records_of(&r), &deployments, at(0))),
            ["deploy/Applying/2", "deploy/Failed/5", "deploy/RolledBack/7"]
        );
        record(&mut r, "deploy/Applying/2");
        assert_eq!(
            ids(&owed_for_release(&r, records_of(&r), &deployments, at(0))),
            ["deploy/Failed/5", "deploy/RolledBack/7"]
        );
        // Superseded before it applied: it has no deployment, and owes none.
        let early = release("main", &[(Pending, 1), (Superseded, 2)]);
        assert!(owed_for_release(&early, records_of(&early), &deployments, at(0)).is_empty());
        let late = release("main", &[(Pending, 1), (Applying, 2), (Superseded, 3)]);
        assert_eq!(
            ids(&owed_for_release(&late, records_of(&late), &deployments, at(0))),
            ["deploy/Applying/2", "deploy/Superseded/3"]
        );
    }

    /// Every history a release can have, every subset recorded: what is owed and what is
    /// recorded never overlap, and together they cover what the targets fire on.
    #[test]
    fn owed_and_recorded_partition_what_was_fired() {
        let mut seed: u64 = 0x5eed;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let n = (next() % 8) as usize;
            let phases: Vec<(Phase, i64)> = (0..n)
                .map(|i| (Phase::ALL[(next() % 9) as usize], i as i64 + 1))
                .collect();
            let mut r = release(if next() % 2 == 0 { "main" } else { "production" }, &phases);
            let all = owed_for_release(&r, records_of(&r), &targets(), at(0));
            let recorded: Vec<String> = all
                .iter()
                .filter(|_| next() % 2 == 0)
                .map(|o| o.id.clone())
                .collect();
            for id in &recorded {
                record(&mut r, id);
            }
            let left = owed_for_release(&r, records_of(&r), &targets(), at(0));
            for o in &left {
                assert!(!recorded.contains(&o.id), "{o:?} recorded and owed");
            }
            assert_eq!(left.len() + recorded.len(), all.len(), "{phases:?}");
            assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
            let forge = all.iter().filter(|o| o.id.starts_with("forge/")).count();
            assert!(forge <= 1, "{phases:?}");
        }
    }

    /// A bisection's test release tells only its commit's status; the culprit, once reported,
    /// is owed once to the chat (a default trigger) and as a `failure` status of its commit,
    /// beside the failed release's own newest state.
    #[test]
    fn test_releases_say_only_their_commit_status_and_the_culprit_is_told_once() {
        let mut test = release("main", &ROLLED_BACK);
        test.spec.reason = Reason::Bisect;
        assert_eq!(
            ids(&owed_for_release(&test, records_of(&test), &targets(), at(0))),
            ["forge/RolledBack/7"]
        );

        let mut failed = release("main", &ROLLED_BACK);
        let commits = vec!["a".repeat(40), "b".repeat(40)];
        let (mut bisection, _) =
            ship_core::bisect::start("base", commits, at(8), ship_core::bisect::Settings::default()).unwrap();
        failed.status.as_mut().unwrap().bisection = Some(bisection.clone());
        let before = owed_for_release(&failed, records_of(&failed), &targets(), at(0));
        assert!(
            !ids(&before).iter().any(|id| id.contains("CulpritNamed")),
            "not while testing"
        );
        bisection.stage = ship_core::bisect::Stage::Named { index: 0 };
        bisection.culprit = Some(ship_core::bisect::Culprit {
            commit: "a".repeat(40),
            short_commit: "aaaaaaa".into(),
            subject: "breaks it".into(),
            author: "Ada".into(),
            release: "r-b2-aaaaaaa".into(),
            failed_test: Some("home: expected healthy".into()),
        });
        bisection.reported_at = Some(Time(at(30)));
        failed.status.as_mut().unwrap().bisection = Some(bisection);
        let owed = owed_for_release(&failed, records_of(&failed), &targets(), at(0));
        assert_eq!(
            ids(&owed),
            [
                "chat/Failed/5",
                "chat/RolledBack/7",
                "forge/RolledBack/7",
                "chat/CulpritNamed/30",
                "forge/CulpritNamed/30"
            ]
        );
        let told = crate::message::Notification::of_culprit(&failed, None).unwrap();
        assert_eq!(
            (told.short_commit.as_str(), told.author.as_deref()),
            ("aaaaaaa", Some("Ada"))
        );
        assert_eq!(told.failed_tests[0].name, "home");
        assert!(
            told.cleared.is_empty(),
            "the first commit is the culprit: none found good"
        );
        // Found good: the commits before the culprit, the nearest MAX_CLEARED of them.
        let mut long = failed.clone();
        let line: Vec<String> = (0..60).map(|i| format!("{i:040}")).collect();
        let b = long.status.as_mut().unwrap().bisection.as_mut().unwrap();
        (b.commits, b.good, b.stage) = (line.clone(), 55, ship_core::bisect::Stage::Named { index: 55 });
        let told = crate::message::Notification::of_culprit(&long, None).unwrap();
        assert_eq!(told.cleared, line[55 - crate::message::MAX_CLEARED..55]);
        assert_eq!(
            Trigger::CulpritNamed.commit_state(),
            Some(crate::forge::CommitState::Failure)
        );
        record(&mut failed, "chat/CulpritNamed/30");
        record(&mut failed, "forge/CulpritNamed/30");
        let after = owed_for_release(&failed, records_of(&failed), &targets(), at(0));
        assert!(!ids(&after).iter().any(|id| id.contains("CulpritNamed")), "once");
    }
}
