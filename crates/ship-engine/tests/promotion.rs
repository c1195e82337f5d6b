//! Deciding a promotion from a real repository: the newest green commit is promoted, a red one
//! never is, an up-to-date or untested source does nothing, and a diverged target is named.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashMap;

use git2::Oid;
use ship_engine::promotion::{Verdict, evaluate};
use ship_git::{Credentials, ForcePushPolicy, Mirror};
use ship_testkit::git::Remote;

struct Repo {
    remote: Remote,
    _dir: tempfile::TempDir,
    mirror: Mirror,
}

impl Repo {
    fn new() -> Self {
        let remote = Remote::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mirror = Mirror::open(&dir.path().join("m.git"), &remote.file_url()).unwrap();
        Self {
            remote,
            _dir: dir,
            mirror,
        }
    }

    fn fetch(&self) {
        let branches = ["main".to_owned(), "production".to_owned()];
        self.mirror
            .fetch(&branches, &Credentials::None, ForcePushPolicy::Follow)
            .unwrap();
    }

    fn commit(&self, n: u32) -> String {
        self.remote
            .commit_file("app.txt", &format!("{n}\n"), &format!("change {n}"))
            .unwrap()
    }
}

fn tested(commits: &[&str]) -> HashMap<String, String> {
    commits
        .iter()
        .map(|c| ((*c).to_owned(), format!("main-{}", &c[..10])))
        .collect()
}

#[test]
fn newest_green_commit_is_promoted_and_red_ones_skipped() {
    let repo = Repo::new();
    let green1 = repo.commit(1);
    let green2 = repo.commit(2);
    let _red = repo.commit(3);
    repo.remote.push("main", false).unwrap();
    repo.fetch();

    let e = evaluate(
        &repo.mirror,
        "main",
        "production",
        &tested(&[&green1, &green2]),
        &[],
    )
    .unwrap();
    assert_eq!(e.verdict, Verdict::Promote);
    assert_eq!(
        e.candidate,
        Some((Oid::from_str(&green2).unwrap(), format!("main-{}", &green2[..10])))
    );
    // production (the first commit) lacks all three: the red one counts as unreleased too.
    assert_eq!(e.behind.commits, 3);
    assert_eq!(e.behind.oldest_commit.as_deref(), Some(&green1[..7]));
    assert!(e.behind.oldest_commit_time.is_some());
    assert!(e.diverging.0.is_empty());

    // Nothing green: nothing to promote.
    let e = evaluate(&repo.mirror, "main", "production", &HashMap::new(), &[]).unwrap();
    assert_eq!((e.verdict, e.candidate), (Verdict::NothingTested, None));

    // production already at the newest green commit: up to date, one commit (red) behind.
    repo.remote
        .git(&["push", "-q", "origin", &format!("{green2}:refs/heads/production")])
        .unwrap();
    repo.fetch();
    let e = evaluate(
        &repo.mirror,
        "main",
        "production",
        &tested(&[&green1, &green2]),
        &[],
    )
    .unwrap();
    assert_eq!(e.verdict, Verdict::UpToDate);
    assert_eq!(e.behind.commits, 1);
}

#[test]
fn a_missing_branch_stops_the_promotion() {
    let repo = Repo::new();
    let green = repo.commit(1);
    repo.remote.push("main", false).unwrap();
    repo.fetch();
    let ready = evaluate(&repo.mirror, "main", "production", &tested(&[&green]), &[]).unwrap();
    assert_eq!(ready.verdict, Verdict::Promote);
    // production deleted on the remote: the mirror still knows its last tip, and the
    // promotion neither runs nor would re-create the branch
    let gone = ["production".to_owned()];
    let e = evaluate(&repo.mirror, "main", "production", &tested(&[&green]), &gone).unwrap();
    assert_eq!(e.verdict, Verdict::BranchMissing);
    let source_gone = ["main".to_owned()];
    let e = evaluate(
        &repo.mirror,
        "main",
        "production",
        &tested(&[&green]),
        &source_gone,
    )
    .unwrap();
    assert_eq!(e.verdict, Verdict::BranchMissing);
    // a target never fetched is missing too
    let e = evaluate(&repo.mirror, "main", "staging", &tested(&[&green]), &[]).unwrap();
    assert_eq!(e.verdict, Verdict::BranchMissing);
}

#[test]
fn a_diverged_target_is_refused_and_its_commits_named() {
    let repo = Repo::new();
    let green = repo.commit(1);
    repo.remote.push("main", false).unwrap();
    repo.remote
        .git(&["checkout", "-q", "-b", "hot", "HEAD~1"])
        .unwrap();
    let hotfix = repo
        .remote
        .commit_file("fix.txt", "fix\n", "hotfix straight to production")
        .unwrap();
    repo.remote.push("production", false).unwrap();
    repo.fetch();

    let e = evaluate(&repo.mirror, "main", "production", &tested(&[&green]), &[]).unwrap();
    assert_eq!(e.verdict, Verdict::Diverged);
    let named: Vec<String> = e.diverging.0.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(named, [hotfix]);
    assert_eq!(e.diverging.0[0].subject, "hotfix straight to production");
}
