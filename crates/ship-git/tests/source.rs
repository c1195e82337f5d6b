//! The git source against real repositories: file:// and a real `git daemon` on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use git2::Oid;
use ship_git::mirror::ForcePushPolicy;
use ship_git::watch::{SourceConfig, spawn};
use ship_git::{Credentials, Mirror, TipChangeKind};
use ship_testkit::git::{GitDaemon, Remote};
use tokio::sync::watch;

fn branches() -> Vec<String> {
    vec!["main".into(), "production".into()]
}

fn oid(s: &str) -> Oid {
    Oid::from_str(s).unwrap()
}

#[test]
fn file_remote_tips_pushes_and_other_branches() {
    let remote = Remote::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.git"), &remote.file_url()).unwrap();
    let first = mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap()
        .changes;
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|c| c.kind == TipChangeKind::Created));

    let main = remote.commit_file("app.yaml", "a: 1\n", "change main").unwrap();
    remote.push("main", false).unwrap();
    let changes = mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap()
        .changes;
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].branch.as_str(), changes[0].new, changes[0].kind),
        ("main", oid(&main), TipChangeKind::FastForward)
    );

    remote.push("production", false).unwrap();
    let changes = mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap()
        .changes;
    assert_eq!(
        changes.iter().map(|c| c.branch.as_str()).collect::<Vec<_>>(),
        ["production"]
    );
    assert_eq!(mirror.tip("production"), Some(oid(&main)));

    remote.commit_file("feature.txt", "x\n", "feature work").unwrap();
    remote.push("feature", false).unwrap();
    assert!(
        mirror
            .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
            .unwrap()
            .changes
            .is_empty()
    );
    assert!(
        mirror.tip("feature").is_none(),
        "only the configured branches are fetched"
    );

    let file = mirror.read_file(oid(&main), "app.yaml", 1024).unwrap();
    assert_eq!(file.as_deref(), Some(&b"a: 1\n"[..]));
    assert!(mirror.read_file(oid(&main), "nope.yaml", 1024).unwrap().is_none());
}

#[test]
fn piled_up_packs_are_combined_and_no_commit_is_lost() {
    let remote = Remote::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut mirror = Mirror::open(&dir.path().join("mirror.git"), &remote.file_url()).unwrap();
    let fetch = |mirror: &Mirror| {
        mirror
            .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
            .unwrap()
            .changes
    };
    fetch(&mirror);
    let mut commits = Vec::new();
    for i in 0..12 {
        commits.push(
            remote
                .commit_file("n.txt", &format!("{i}\n"), &format!("n {i}"))
                .unwrap(),
        );
        remote.push("main", true).unwrap();
        assert_eq!(fetch(&mirror).len(), 1);
        if i == 5 {
            // A force push leaves commit 5 reachable from no ref; a rollback may still need it.
            remote.git(&["reset", "--hard", "HEAD~1"]).unwrap();
            remote.push("main", true).unwrap();
            fetch(&mirror);
        }
    }
    let piled = mirror.packs().unwrap().len();
    assert!(piled >= 12, "one pack per fetch that brought commits: {piled}");

    let done = mirror.maintain(4).unwrap();
    assert_eq!((done.packs_before, done.packs_after), (piled, 1));
    assert!(done.objects >= 3 * commits.len(), "{done:?}");
    for (i, commit) in commits.iter().enumerate() {
        let file = mirror.read_file(oid(commit), "n.txt", 64).unwrap();
        assert_eq!(file, Some(format!("{i}\n").into_bytes()), "commit {i}");
    }
    // Under the limit, nothing is combined; fetching goes on as before.
    assert_eq!(mirror.maintain(4).unwrap().objects, 0);
    let next = remote.commit_file("n.txt", "next\n", "next").unwrap();
    remote.push("main", false).unwrap();
    assert_eq!(fetch(&mirror)[0].new, oid(&next));
    assert_eq!(mirror.packs().unwrap().len(), 2);
    assert_eq!(mirror.tip("main"), Some(oid(&next)));
}

#[test]
fn git_daemon_force_push_is_reported_and_policy_applies() {
    let remote = Remote::new().unwrap();
    let daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let follow = Mirror::open(&dir.path().join("follow.git"), &daemon.url("repo.git")).unwrap();
    let refuse = Mirror::open(&dir.path().join("refuse.git"), &daemon.url("repo.git")).unwrap();
    let base = remote.commit_file("a.txt", "1\n", "one").unwrap();
    remote.push("main", false).unwrap();
    for m in [&follow, &refuse] {
        m.fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
            .unwrap();
    }

    // Rewrite main: drop the last commit and commit something else instead.
    remote.git(&["reset", "-q", "--hard", "HEAD~1"]).unwrap();
    let rewritten = remote.commit_file("b.txt", "2\n", "rewritten").unwrap();
    remote.push("main", true).unwrap();

    let seen = follow
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap()
        .changes;
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].kind, seen[0].old, seen[0].new),
        (TipChangeKind::ForcePushed, Some(oid(&base)), oid(&rewritten))
    );
    assert_eq!(follow.tip("main"), Some(oid(&rewritten)));

    let held = refuse
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Refuse)
        .unwrap()
        .changes;
    assert_eq!(held[0].kind, TipChangeKind::ForcePushed);
    assert_eq!(
        refuse.tip("main"),
        Some(oid(&base)),
        "refused: the old tip is kept"
    );
    let again = refuse
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Refuse)
        .unwrap()
        .changes;
    assert_eq!(again.len(), 1, "reported at every fetch while refused");
}

#[test]
fn a_missing_branch_is_reported_and_keeps_its_last_tip() {
    let remote = Remote::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("m.git"), &remote.file_url()).unwrap();
    let followed: Vec<String> = vec!["main".into(), "staging".into(), "production".into()];
    let first = mirror
        .fetch(&followed, &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    assert_eq!(
        first.missing,
        ["staging"],
        "never created: missing, and the others fetched"
    );
    assert_eq!(first.changes.len(), 2);

    // Deleted on the remote after it was fetched: reported at every fetch until it is back,
    // and the mirror keeps the last tip (the environment keeps running it).
    let last = mirror.tip("production").unwrap();
    ship_testkit::git::git(&remote.bare, &["branch", "-D", "production"]).unwrap();
    for _ in 0..2 {
        let fetched = mirror
            .fetch(&followed, &Credentials::None, ForcePushPolicy::Follow)
            .unwrap();
        assert_eq!(fetched.missing, ["staging", "production"]);
        assert!(fetched.changes.is_empty(), "{fetched:?}");
        assert_eq!(mirror.tip("production"), Some(last));
    }

    // Re-created at a new commit: it is back, and the move is a change like any other.
    let new = remote.commit_file("a.txt", "2\n", "after the deletion").unwrap();
    remote.push("production", false).unwrap();
    let fetched = mirror
        .fetch(&followed, &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    assert_eq!(fetched.missing, ["staging"]);
    assert_eq!(fetched.changes.len(), 1);
    assert_eq!(fetched.changes[0].new, oid(&new));
    assert_eq!(fetched.changes[0].kind, TipChangeKind::FastForward);
}

#[tokio::test]
async fn unreachable_remote_backs_off_then_recovers() {
    let remote = Remote::new().unwrap();
    let mut daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = SourceConfig::new(daemon.url("repo.git"), branches(), dir.path().join("m.git"));
    config.poll_interval = Duration::from_millis(200);
    config.min_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_millis(400);
    let (_creds_tx, creds) = watch::channel(Credentials::None);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (source, mut tips) = spawn(config, creds, async move { drop(stop_rx.await) }).unwrap();
    let mut status = source.status();
    for _ in 0..2 {
        assert_eq!(tips.recv().await.unwrap().kind, TipChangeKind::Created);
    }

    daemon.stop();
    let failing = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.consecutive_failures >= 3),
    )
    .await
    .expect("failures counted")
    .unwrap()
    .clone();
    assert!(!failing.ready);
    assert_eq!(failing.reason, "FetchFailed");
    assert!(failing.message.contains("retrying in"), "{}", failing.message);
    assert_eq!(
        failing.retry_in,
        Some(Duration::from_millis(400)),
        "backoff doubled up to its cap"
    );

    daemon.restart().unwrap();
    let pushed = remote.commit_file("c.txt", "3\n", "after the outage").unwrap();
    remote.push("main", false).unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), tips.recv())
        .await
        .expect("recovered")
        .unwrap();
    assert_eq!(change.new, oid(&pushed));
    let recovered = status.borrow_and_update().clone();
    assert!(recovered.ready, "{recovered:?}");
    assert_eq!(recovered.consecutive_failures, 0);
    drop(stop_tx);
}

#[test]
fn a_push_never_recreates_a_branch_deleted_on_the_remote() {
    let remote = Remote::new().unwrap();
    let _daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.git"), &_daemon.url("repo.git")).unwrap();
    let tested = remote.commit_file("a.txt", "1\n", "tested on main").unwrap();
    remote.push("main", false).unwrap();
    mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    // Someone deletes production; the mirror still remembers its last tip.
    ship_testkit::git::git(&remote.bare, &["branch", "-D", "production"]).unwrap();
    assert!(mirror.tip("production").is_some());
    match mirror.fast_forward("production", oid(&tested), &Credentials::None) {
        Err(err @ ship_git::GitError::MissingBranch { .. }) => {
            assert_eq!(err.label(), "MissingBranch");
            assert!(err.to_string().contains("\"production\""), "{err}");
        }
        other => panic!("expected MissingBranch, got {other:?}"),
    }
    let heads = ship_testkit::git::git(&remote.bare, &["branch", "--list", "production"]).unwrap();
    assert_eq!(heads.trim(), "", "the deleted branch was pushed back");
}

#[test]
fn a_commit_no_branch_reaches_is_kept_and_fetched_by_id() {
    let remote = Remote::new().unwrap();
    let daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.git"), &daemon.url("repo.git")).unwrap();
    let released = remote
        .commit_file("a.txt", "1\n", "released, then rewritten away")
        .unwrap();
    remote.push("main", false).unwrap();
    mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    mirror.keep(oid(&released)).unwrap();
    mirror.keep(oid(&released)).unwrap(); // idempotent
    // History rewritten: no branch reaches the released commit any more.
    remote.git(&["reset", "-q", "--hard", "HEAD~1"]).unwrap();
    let rewritten = remote.commit_file("b.txt", "2\n", "the new history").unwrap();
    remote.push("main", true).unwrap();
    mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    assert_eq!(mirror.tip("main"), Some(oid(&rewritten)));
    assert!(mirror.has_commit(oid(&released)), "kept across the force-push");

    // A new mirror (a restarted pod) has only what the branches reach; the remote, which
    // serves any commit by id (as GitHub does), sends the released one when asked.
    let fresh = Mirror::open(&dir.path().join("fresh.git"), &daemon.url("repo.git")).unwrap();
    fresh
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    assert!(!fresh.has_commit(oid(&released)));
    fresh.fetch_commit(oid(&released), &Credentials::None).unwrap();
    assert!(fresh.has_commit(oid(&released)));

    // A server that does not serve unreachable commits refuses, with an error that says which.
    ship_testkit::git::git(
        &remote.bare,
        &["config", "uploadpack.allowAnySHA1InWant", "false"],
    )
    .unwrap();
    let strict = Mirror::open(&dir.path().join("strict.git"), &daemon.url("repo.git")).unwrap();
    strict
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    let err = strict
        .fetch_commit(oid(&released), &Credentials::None)
        .unwrap_err();
    assert_eq!(err.label(), "FetchFailed");
    assert!(err.to_string().contains(&released), "{err}");
    assert!(!strict.has_commit(oid(&released)));
}

#[test]
fn fast_forward_pushes_only_when_the_branch_can_follow() {
    let remote = Remote::new().unwrap();
    let mut daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.git"), &daemon.url("repo.git")).unwrap();
    let fetch = || {
        mirror
            .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
            .unwrap()
            .changes
    };
    let remote_tip = |branch: &str| {
        remote
            .git(&["ls-remote", "origin", &format!("refs/heads/{branch}")])
            .unwrap()
    };

    let first = remote.commit_file("a.txt", "1\n", "tested on main").unwrap();
    let second = remote.commit_file("a.txt", "2\n", "also on main").unwrap();
    remote.push("main", false).unwrap();
    fetch();
    // production is behind main: a real push over git:// moves it to the older commit.
    let outcome = mirror
        .fast_forward("production", oid(&first), &Credentials::None)
        .unwrap();
    assert_eq!(outcome, ship_git::PushOutcome::Pushed);
    assert!(
        remote_tip("production").starts_with(&first),
        "{}",
        remote_tip("production")
    );
    // The mirror's tip moves only by a fetch, which reports the push like any other.
    assert_ne!(mirror.tip("production"), Some(oid(&first)));
    let changes = fetch();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, TipChangeKind::FastForward);
    // Promoting an ancestor of the tip pushes nothing.
    let initial = remote.git(&["rev-parse", "HEAD~2"]).unwrap();
    assert_eq!(
        mirror
            .fast_forward("production", oid(&initial), &Credentials::None)
            .unwrap(),
        ship_git::PushOutcome::AlreadyContained
    );

    // A hotfix committed straight to production: main's tip cannot be fast-forwarded to.
    remote.git(&["checkout", "-q", "-b", "hotfix", &first]).unwrap();
    let hotfix = remote
        .commit_file("b.txt", "fix\n", "hotfix on production")
        .unwrap();
    remote.push("production", false).unwrap();
    remote.git(&["checkout", "-q", "main"]).unwrap();
    fetch();
    match mirror.fast_forward("production", oid(&second), &Credentials::None) {
        Err(err @ ship_git::GitError::Diverged { .. }) => {
            assert_eq!(err.label(), "Diverged");
            let text = err.to_string();
            assert!(
                text.contains(&hotfix[..7]) && text.contains("hotfix on production"),
                "{text}"
            );
        }
        other => panic!("expected Diverged, got {other:?}"),
    }
    assert!(remote_tip("production").starts_with(&hotfix));

    // A mirror that has not fetched the hotfix yet pushes, and the server refuses: stale.
    let stale_dir = tempfile::tempdir().unwrap();
    let stale = Mirror::open(&stale_dir.path().join("m.git"), &daemon.url("repo.git")).unwrap();
    stale
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    let third = remote.commit_file("a.txt", "3\n", "third").unwrap();
    remote
        .git(&[
            "push",
            "-q",
            "origin",
            "main",
            &format!("{first}:refs/heads/production"),
            "--force",
        ])
        .unwrap();
    stale
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    remote
        .git(&[
            "push",
            "-q",
            "origin",
            &format!("{hotfix}:refs/heads/production"),
            "--force",
        ])
        .unwrap();
    match stale.fast_forward("production", oid(&third), &Credentials::None) {
        Err(ship_git::GitError::Push { stale: true, .. }) => {}
        other => panic!("expected a stale push refusal, got {other:?}"),
    }
    assert!(remote_tip("production").starts_with(&hotfix));

    // The remote is gone: a push error, not a panic or a silent success.
    remote.git(&["checkout", "-q", "hotfix"]).unwrap();
    let after = remote
        .commit_file("b.txt", "fix 2\n", "after the hotfix")
        .unwrap();
    remote
        .git(&["push", "-q", "origin", "HEAD:refs/heads/main", "--force"])
        .unwrap();
    fetch();
    daemon.stop();
    match mirror.fast_forward("production", oid(&after), &Credentials::None) {
        Err(err @ ship_git::GitError::Push { stale: false, .. }) => assert_eq!(err.label(), "PushFailed"),
        other => panic!("expected a push failure, got {other:?}"),
    }
}

/// A release tag is an annotated tag pushed over git://; pushing it again changes nothing, and
/// a tag of that name on another commit is never moved.
#[test]
fn a_release_tag_is_pushed_once_and_never_moved() {
    let remote = Remote::new().unwrap();
    let _daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.git"), &_daemon.url("repo.git")).unwrap();
    let first = remote.commit_file("a.txt", "1\n", "promoted").unwrap();
    let second = remote.commit_file("a.txt", "2\n", "next").unwrap();
    remote.push("main", false).unwrap();
    mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    let tag =
        |name: &str, commit: &str| mirror.push_tag(name, oid(commit), "Promoted by Ship", &Credentials::None);
    assert_eq!(tag("release-1", &first).unwrap(), ship_git::TagOutcome::Pushed);
    let listed = remote.git(&["ls-remote", "--tags", "origin"]).unwrap();
    // Annotated: the tag object, and the commit it peels to.
    assert!(listed.contains("refs/tags/release-1^{}"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&first) && l.ends_with("release-1^{}")),
        "{listed}"
    );
    assert_eq!(
        tag("release-1", &first).unwrap(),
        ship_git::TagOutcome::AlreadyThere
    );
    match tag("release-1", &second).unwrap() {
        ship_git::TagOutcome::Taken(on) => assert_eq!(on, first),
        other => panic!("{other:?}"),
    }
    let after = remote.git(&["ls-remote", "--tags", "origin"]).unwrap();
    assert_eq!(after, listed, "the tag was not moved");
}

/// A culprit is reverted on the branch's tip and pushed (a plain fast-forward), authored by
/// Ship and naming the failed release; a commit already undone pushes nothing; a revert that
/// conflicts with later changes, or of a commit not on the branch, is refused with nothing
/// pushed.
#[test]
fn a_culprit_is_reverted_on_the_tip_and_a_conflicting_revert_is_refused() {
    let remote = Remote::new().unwrap();
    let mut daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.git"), &daemon.url("repo.git")).unwrap();
    let fetch = || {
        mirror
            .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
            .unwrap();
    };
    let remote_main = || remote.git(&["ls-remote", "origin", "refs/heads/main"]).unwrap();

    remote.commit_file("a.txt", "1\n", "a is 1").unwrap();
    let culprit = remote.commit_file("a.txt", "2\n", "breaks a").unwrap();
    let later = remote.commit_file("b.txt", "b\n", "adds b").unwrap();
    remote.push("main", false).unwrap();
    fetch();

    let note = "Ship: release main-0123456789 failed (tests: home)";
    let pushed = match mirror
        .revert_onto_tip("main", oid(&culprit), note, &Credentials::None)
        .unwrap()
    {
        ship_git::RevertOutcome::Pushed(id) => id.to_string(),
        other => panic!("expected a push, got {other:?}"),
    };
    assert!(remote_main().starts_with(&pushed), "{}", remote_main());
    remote.git(&["fetch", "-q", "origin", "main"]).unwrap();
    assert_eq!(remote.git(&["show", "FETCH_HEAD:a.txt"]).unwrap().trim(), "1");
    assert_eq!(
        remote.git(&["show", "FETCH_HEAD:b.txt"]).unwrap().trim(),
        "b",
        "later work stays"
    );
    assert_eq!(
        remote.git(&["rev-parse", "FETCH_HEAD~1"]).unwrap().trim(),
        later,
        "on the tip"
    );
    let message = remote
        .git(&["log", "-1", "--format=%an%n%B", "FETCH_HEAD"])
        .unwrap();
    assert!(message.starts_with("Ship\nRevert \"breaks a\""), "{message}");
    assert!(
        message.contains(&format!("This reverts commit {culprit}.")) && message.contains(note),
        "{message}"
    );

    // Reverted already: nothing more to push.
    fetch();
    assert_eq!(
        mirror
            .revert_onto_tip("main", oid(&culprit), note, &Credentials::None)
            .unwrap(),
        ship_git::RevertOutcome::AlreadyReverted
    );

    // A later change to the same lines: the revert would conflict, so it is refused.
    remote.git(&["reset", "-q", "--hard", &pushed]).unwrap();
    let bad = remote.commit_file("a.txt", "3\n", "a is 3").unwrap();
    remote.commit_file("a.txt", "4\n", "a is 4").unwrap();
    remote.push("main", false).unwrap();
    fetch();
    let before = remote_main();
    match mirror.revert_onto_tip("main", oid(&bad), note, &Credentials::None) {
        Err(err @ ship_git::GitError::RevertRefused { .. }) => {
            assert_eq!(err.label(), "RevertRefused");
            let text = err.to_string();
            assert!(text.contains("conflicts") && text.contains("a.txt"), "{text}");
        }
        other => panic!("expected RevertRefused, got {other:?}"),
    }
    assert_eq!(remote_main(), before, "nothing pushed");

    // A commit that is not on the branch.
    remote
        .git(&["checkout", "-q", "-b", "elsewhere", &pushed])
        .unwrap();
    let elsewhere = remote.commit_file("c.txt", "c\n", "elsewhere").unwrap();
    remote
        .git(&["push", "-q", "origin", "elsewhere:production"])
        .unwrap();
    remote.git(&["checkout", "-q", "main"]).unwrap();
    fetch();
    match mirror.revert_onto_tip("main", oid(&elsewhere), note, &Credentials::None) {
        Err(err @ ship_git::GitError::RevertRefused { .. }) => {
            assert!(err.to_string().contains("not on main"), "{err}");
        }
        other => panic!("expected RevertRefused, got {other:?}"),
    }
    assert_eq!(remote_main(), before, "nothing pushed");
    daemon.stop();
}

/// The line a bisection searches: first parents only (a merged side branch is one commit of
/// the line), oldest first; none when the base is not on the line (rewritten history) or the
/// line is longer than asked.
#[test]
fn the_first_parent_line_from_a_good_commit_to_a_failed_one() {
    let remote = Remote::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.git"), &remote.file_url()).unwrap();
    let good = remote.commit_file("a.txt", "0\n", "good").unwrap();
    let one = remote.commit_file("a.txt", "1\n", "one").unwrap();
    remote.git(&["checkout", "-q", "-b", "side"]).unwrap();
    let side = remote.commit_file("s.txt", "s\n", "side work").unwrap();
    remote.git(&["checkout", "-q", "main"]).unwrap();
    let two = remote.commit_file("a.txt", "2\n", "two").unwrap();
    remote
        .git(&["merge", "-q", "--no-ff", "-m", "merge side", "side"])
        .unwrap();
    let merge = remote.git(&["rev-parse", "HEAD"]).unwrap().trim().to_owned();
    let three = remote.commit_file("a.txt", "3\n", "three").unwrap();
    remote.push("main", false).unwrap();
    mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();

    let line = mirror
        .first_parent_line(oid(&good), oid(&three), 100)
        .unwrap()
        .unwrap();
    let ids: Vec<String> = line.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(ids, [one.clone(), two, merge, three.clone()]);
    assert!(!ids.contains(&side), "the side branch is not walked");
    assert_eq!(line[0].subject, "one");

    assert!(
        mirror
            .first_parent_line(oid(&good), oid(&three), 3)
            .unwrap()
            .is_none(),
        "longer than asked"
    );
    assert!(
        mirror
            .first_parent_line(oid(&side), oid(&three), 100)
            .unwrap()
            .is_none(),
        "a base on a side branch is not on the line"
    );
    // A rewritten history: the old base is no ancestor of the new tip.
    remote.git(&["reset", "-q", "--hard", &good]).unwrap();
    remote.git(&["checkout", "-q", "--orphan", "fresh"]).unwrap();
    let rewritten = remote.commit_file("a.txt", "r\n", "rewritten").unwrap();
    remote.git(&["push", "-q", "-f", "origin", "fresh:main"]).unwrap();
    mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    assert!(
        mirror
            .first_parent_line(oid(&one), oid(&rewritten), 100)
            .unwrap()
            .is_none()
    );
}

/// A shipd killed while libgit2 was writing a ref leaves `<ref>.lock` behind in the mirror, which
/// outlives the process (a volume). The next owner removes such files, and fetches as before;
/// two owners at once are refused, so the removal never races a live writer.
#[test]
fn lock_files_left_by_a_killed_owner_are_removed_and_one_owner_at_a_time() {
    let remote = Remote::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.git");
    let first = Mirror::open(&path, &remote.file_url()).unwrap();
    first
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();

    let second = Mirror::open(&path, &remote.file_url()).unwrap_err().to_string();
    assert!(second.contains("another process has it open"), "{second}");
    drop(first);

    // What libgit2 leaves when its writer dies between writing `<file>.lock` and renaming it.
    let stale = [
        "refs/ship/incoming/production.lock",
        "refs/ship/fetched/main.lock",
        "packed-refs.lock",
        "FETCH_HEAD.lock",
        "config.lock",
    ];
    for lock in stale {
        std::fs::create_dir_all(path.join(lock).parent().unwrap()).unwrap();
        std::fs::write(path.join(lock), "0000000000000000000000000000000000000000\n").unwrap();
    }
    let main = remote
        .commit_file("app.yaml", "a: 2\n", "after the crash")
        .unwrap();
    remote.push("main", false).unwrap();
    remote.push("production", false).unwrap();

    let mirror = Mirror::open(&path, &remote.file_url()).unwrap();
    for lock in stale {
        assert!(!path.join(lock).exists(), "{lock} is still there");
    }
    let changes = mirror
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap()
        .changes;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(mirror.tip("main"), Some(oid(&main)));
    assert_eq!(mirror.tip("production"), Some(oid(&main)));
}
