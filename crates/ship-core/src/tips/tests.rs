//! One test per row of the transition table in the module docs, the naming rule's cases, and
//! seeded random walks that check no tip is ever lost.

use super::*;

fn a() -> String {
    "a".repeat(40)
}
fn b() -> String {
    "b".repeat(40)
}

fn view<'a>(name: &'a str, commit: &'a str, sequence: i64, from_branch: bool) -> ReleaseView<'a> {
    ReleaseView {
        name,
        environment: "main",
        commit,
        from_branch,
        sequence: (sequence, name),
    }
}

#[test]
fn a_tip_gets_a_release_unless_the_branch_already_led_there() {
    let (a, b, c) = (a(), b(), "c".repeat(40));
    // nothing yet: the first release of the tip
    assert_eq!(
        tip_release("main", &a, &[], TipSeen::Moved).as_deref(),
        Some("main-aaaaaaaaaa")
    );
    let first = view("main-aaaaaaaaaa", &a, 1, true);
    assert_eq!(
        tip_release("main", &a, &[first], TipSeen::Moved),
        None,
        "already there"
    );
    // the branch moves on, then is force-pushed back: a second release of a, told apart
    let second = view("main-bbbbbbbbbb", &b, 2, true);
    let both = [first, second];
    assert_eq!(
        tip_release("main", &b, &both, TipSeen::Moved),
        None,
        "b is quarantined, not re-released"
    );
    assert_eq!(
        tip_release("main", &a, &both, TipSeen::Moved).as_deref(),
        Some("main-aaaaaaaaaa-2")
    );
    let again = view("main-aaaaaaaaaa-2", &a, 3, true);
    let three = [first, second, again];
    assert_eq!(tip_release("main", &a, &three, TipSeen::Moved), None);
    assert_eq!(
        tip_release("main", &b, &three, TipSeen::Moved).as_deref(),
        Some("main-bbbbbbbbbb-2")
    );
    // a manual rollback is not the branch: the tip it rolled away from does not come back
    let manual = view("main-aaaaaaaaaa-m", &a, 4, false);
    assert_eq!(
        tip_release("main", &b, &[first, second, manual], TipSeen::Moved),
        None
    );
    // other environments' releases do not count
    let prod = ReleaseView {
        environment: "production",
        ..view("production-aaaaaaaaaa", &a, 5, true)
    };
    assert_eq!(tip_release("main", &b, &[second, prod], TipSeen::Moved), None);
    // first sight: moved only when the environment last handled another tip
    assert_eq!(first_sight(None, &a), TipSeen::Known);
    assert_eq!(first_sight(Some(&a), &a), TipSeen::Known);
    assert_eq!(first_sight(Some(&b), &a), TipSeen::Moved);
    // a tip seen only at start (maybe stale: a promotion this controller pushed and the
    // mirror has not fetched) gets a first release, never a second one
    assert_eq!(
        tip_release("main", &a, &[second], TipSeen::Known).as_deref(),
        Some("main-aaaaaaaaaa")
    );
    let promoted = view("main-cccccccccc", &c, 9, true);
    assert_eq!(tip_release("main", &b, &[second, promoted], TipSeen::Known), None);
}

fn release(branch: &str, commit: &str, seen: TipSeen) -> Effect {
    Effect::Release {
        branch: branch.into(),
        commit: commit.into(),
        seen,
    }
}

fn changed(branch: &str, commit: &str, kind: ChangeKind) -> Event {
    Event::Changed {
        branch: branch.into(),
        commit: commit.into(),
        kind,
    }
}

fn handled(branch: &str, commit: &str, outcome: Outcome) -> Event {
    Event::Handled {
        branch: branch.into(),
        commit: commit.into(),
        outcome,
    }
}

fn started() -> Tips {
    let (tips, _) = step(
        Tips::default(),
        Event::Started {
            known: Vec::new(),
            recorded: BTreeMap::from([("main".to_owned(), a())]),
        },
    );
    tips
}

#[test]
fn started_owes_each_tip_in_the_mirror_seen_against_the_record() {
    let (tips, effects) = step(
        Tips::default(),
        Event::Started {
            known: vec![("main".into(), b()), ("production".into(), a())],
            recorded: BTreeMap::from([("main".to_owned(), a()), ("production".to_owned(), a())]),
        },
    );
    assert_eq!(
        effects,
        vec![
            Effect::RecordEnvironments,
            release("main", &b(), TipSeen::Moved),
            release("production", &a(), TipSeen::Known),
        ]
    );
    assert_eq!(tips.owed.len(), 2);
    assert_eq!(tips.recorded.get("main"), Some(&a()));

    let (_, effects) = step(
        Tips::default(),
        Event::Started {
            known: Vec::new(),
            recorded: BTreeMap::new(),
        },
    );
    assert!(effects.is_empty(), "nothing owed: no round");
}

#[test]
fn changed_by_a_refused_force_push_without_a_retry_pending_does_nothing() {
    let tips = Tips {
        refuse_force_push: true,
        ..started()
    };
    let (after, effects) = step(tips.clone(), changed("main", &b(), ChangeKind::ForcePushed));
    assert!(effects.is_empty());
    assert_eq!(after, tips);
}

#[test]
fn changed_by_a_refused_force_push_with_a_retry_pending_tries_the_owed_tips() {
    let mut tips = Tips {
        refuse_force_push: true,
        ..started()
    };
    tips.owed.insert("main".into(), (a(), TipSeen::Moved));
    tips.retry = true;
    let (after, effects) = step(tips, changed("main", &b(), ChangeKind::ForcePushed));
    assert_eq!(
        effects,
        vec![Effect::RecordEnvironments, release("main", &a(), TipSeen::Moved)],
        "the refused tip is not owed; the pending one is tried"
    );
    assert!(!after.retry);
}

#[test]
fn changed_by_a_new_branch_is_seen_against_the_record() {
    let (_, effects) = step(started(), changed("main", &a(), ChangeKind::Created));
    assert_eq!(
        effects[1],
        release("main", &a(), TipSeen::Known),
        "the tip recorded"
    );
    let (_, effects) = step(started(), changed("main", &b(), ChangeKind::Created));
    assert_eq!(effects[1], release("main", &b(), TipSeen::Moved), "another tip");
}

#[test]
fn changed_by_a_fetch_that_saw_it_move_is_moved() {
    for kind in [ChangeKind::FastForward, ChangeKind::ForcePushed] {
        let (after, effects) = step(started(), changed("main", &a(), kind));
        assert_eq!(
            effects,
            vec![Effect::RecordEnvironments, release("main", &a(), TipSeen::Moved)]
        );
        assert_eq!(after.owed.get("main"), Some(&(a(), TipSeen::Moved)));
    }
}

#[test]
fn handled_done_for_the_owed_tip_records_it_and_owes_nothing() {
    let (tips, _) = step(started(), changed("main", &b(), ChangeKind::FastForward));
    let (after, effects) = step(tips, handled("main", &b(), Outcome::Done));
    assert_eq!(
        effects,
        vec![Effect::MarkHandled {
            branch: "main".into(),
            commit: b()
        }]
    );
    assert!(after.owed.is_empty());
    assert_eq!(after.recorded.get("main"), Some(&b()));
}

#[test]
fn handled_done_for_an_older_tip_keeps_the_newer_one_owed() {
    let (tips, _) = step(started(), changed("main", &a(), ChangeKind::FastForward));
    let (tips, _) = step(tips, changed("main", &b(), ChangeKind::FastForward));
    let (after, effects) = step(tips, handled("main", &a(), Outcome::Done));
    assert_eq!(effects.len(), 1);
    assert_eq!(after.owed.get("main"), Some(&(b(), TipSeen::Moved)));
    assert_eq!(after.recorded.get("main"), Some(&a()));
}

#[test]
fn handled_retry_keeps_it_owed_and_asks_for_a_retry() {
    let (tips, _) = step(started(), changed("main", &b(), ChangeKind::FastForward));
    let (after, effects) = step(tips, handled("main", &b(), Outcome::Retry));
    assert!(effects.is_empty());
    assert!(after.retry);
    assert!(after.owed.contains_key("main"));
}

#[test]
fn handled_held_keeps_it_owed_without_a_timer() {
    let (tips, _) = step(started(), changed("main", &b(), ChangeKind::FastForward));
    let (after, effects) = step(tips, handled("main", &b(), Outcome::Held));
    assert!(effects.is_empty());
    assert!(!after.retry, "a hold change wakes it, not a timer");
    assert!(after.owed.contains_key("main"));
}

#[test]
fn holds_changed_or_retry_due_tries_every_owed_tip() {
    for event in [Event::HoldsChanged, Event::RetryDue] {
        let (tips, _) = step(started(), changed("main", &b(), ChangeKind::FastForward));
        let (tips, _) = step(tips, handled("main", &b(), Outcome::Retry));
        let (after, effects) = step(tips, event.clone());
        assert_eq!(
            effects,
            vec![Effect::RecordEnvironments, release("main", &b(), TipSeen::Moved)],
            "{event:?}"
        );
        assert!(!after.retry);
    }
}

#[test]
fn holds_changed_or_retry_due_with_nothing_owed_does_nothing() {
    for event in [Event::HoldsChanged, Event::RetryDue] {
        let (after, effects) = step(started(), event);
        assert!(effects.is_empty());
        assert_eq!(after, started());
    }
}

/// Random sequences of tip changes, answers (done, retry, held), hold changes and retries,
/// many seeds, then a quiet end where every release succeeds. Whatever the order, every
/// branch's last tip is handled at the end (no tip lost), a branch owes at most its newest
/// tip, and a tip is marked handled only when its release was made.
#[test]
fn random_walks_lose_no_tip() {
    let branches = ["main", "production"];
    let kinds = [
        ChangeKind::Created,
        ChangeKind::FastForward,
        ChangeKind::ForcePushed,
    ];
    for seed in 0..500 {
        let mut rng = ship_testkit::seeded::Seeded::new(seed);
        let mut tips = Tips {
            refuse_force_push: rng.chance(30),
            ..Tips::default()
        };
        let mut latest: BTreeMap<String, String> = BTreeMap::new();
        let mut asked: Vec<(String, String)> = Vec::new();
        let feed = |tips: Tips, event: Event, asked: &mut Vec<(String, String)>| {
            let (after, effects) = step(tips, event.clone());
            for effect in &effects {
                match effect {
                    Effect::Release { branch, commit, .. } => asked.push((branch.clone(), commit.clone())),
                    Effect::MarkHandled { branch, commit } => assert!(
                        matches!(&event, Event::Handled { branch: b, commit: c, outcome: Outcome::Done } if b == branch && c == commit),
                        "seed {seed}: marked handled without a release made"
                    ),
                    Effect::RecordEnvironments => {}
                }
            }
            after
        };
        tips = feed(
            tips,
            Event::Started {
                known: Vec::new(),
                recorded: BTreeMap::new(),
            },
            &mut asked,
        );
        // The executor performs a round's releases in order, each answered before the next
        // event: so does the walk.
        for _ in 0..60 {
            let event = match rng.below(3) {
                0 => {
                    let branch = (*rng.pick(&branches)).to_owned();
                    let commit = format!("{:040x}", rng.next_u64());
                    let kind = *rng.pick(&kinds);
                    if !(kind == ChangeKind::ForcePushed && tips.refuse_force_push) {
                        latest.insert(branch.clone(), commit.clone());
                    }
                    changed(&branch, &commit, kind)
                }
                1 => Event::HoldsChanged,
                _ => Event::RetryDue,
            };
            tips = feed(tips, event, &mut asked);
            for (branch, commit) in std::mem::take(&mut asked) {
                let outcome = *rng.pick(&[Outcome::Done, Outcome::Retry, Outcome::Held]);
                tips = feed(tips, handled(&branch, &commit, outcome), &mut asked);
            }
            for (branch, (commit, _)) in &tips.owed {
                assert_eq!(
                    latest.get(branch),
                    Some(commit),
                    "seed {seed}: {branch} owes a tip older than its newest"
                );
            }
        }
        // The quiet end: the API server answers, holds are lifted; every ask succeeds.
        tips = feed(tips, Event::HoldsChanged, &mut asked);
        for (branch, commit) in std::mem::take(&mut asked) {
            tips = feed(tips, handled(&branch, &commit, Outcome::Done), &mut asked);
        }
        assert!(
            tips.owed.is_empty(),
            "seed {seed}: tips left owed: {:?}",
            tips.owed
        );
        for (branch, commit) in &latest {
            assert_eq!(
                tips.recorded.get(branch),
                Some(commit),
                "seed {seed}: the last tip of {branch} was lost"
            );
        }
    }
}
