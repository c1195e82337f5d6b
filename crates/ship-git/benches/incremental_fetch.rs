//! Incremental fetch of one new commit on a 10,000-commit repository: Ship's mirror (libgit2)
//! against `git fetch` of the same refspecs, in the same run, over a real `git daemon`.
//!
//! Then the packs both mirrors piled up are combined: `Mirror::maintain`, which shipd runs under
//! the mirror lock when more than 50 packs pile up, against `git repack -d --geometric=2`.
//!
//! `cargo bench -p ship-git --bench incremental_fetch` (ROUNDS and COMMITS from the environment).
//! Prints the median and p90 of each, and the ratios Ship / git (below 1: Ship is faster).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use ship_git::mirror::ForcePushPolicy;
use ship_git::{Credentials, Mirror};
use ship_testkit::bench::{env_or, percentile};
use ship_testkit::git::{GitDaemon, git};

/// A bare repository with `commits` commits on main (each changing one file) and production
/// 1,000 commits behind, written with `git fast-import` in one pass.
fn build_repository(bare: &std::path::Path, commits: usize) {
    git(
        bare.parent().unwrap(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    )
    .unwrap();
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
    for i in 1..=commits {
        let content = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{}}}\ndata: {{n: \"{i}\"}}\n",
            i % 50
        );
        writeln!(
            stdin,
            "commit refs/heads/main\nmark :{i}\ncommitter Bench <b@ship.invalid> {} +0000",
            1_600_000_000 + i
        )
        .unwrap();
        let message = format!("change {i}");
        writeln!(stdin, "data {}\n{message}", message.len()).unwrap();
        if i > 1 {
            writeln!(stdin, "from :{}", i - 1).unwrap();
        }
        writeln!(
            stdin,
            "M 644 inline deploy/main/c{}.yaml\ndata {}\n{content}",
            i % 50,
            content.len()
        )
        .unwrap();
        if i == commits.saturating_sub(1000).max(1) {
            writeln!(stdin, "reset refs/heads/production\nfrom :{i}\n").unwrap();
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "fast-import failed");
}

fn main() {
    let commits = env_or("COMMITS", 10_000);
    let rounds = env_or("ROUNDS", 30);
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("repo.git");
    let t = Instant::now();
    build_repository(&bare, commits);
    eprintln!(
        "built a {commits}-commit repository in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let daemon = GitDaemon::start(dir.path()).unwrap();
    let url = daemon.url("repo.git");
    let branches = vec!["main".to_owned(), "production".to_owned()];
    let refspecs: Vec<String> = branches
        .iter()
        .map(|b| format!("+refs/heads/{b}:refs/ship/incoming/{b}"))
        .collect();

    // Both mirrors start from a full first fetch.
    let mut ship = Mirror::open(&dir.path().join("ship-mirror.git"), &url).unwrap();
    ship.fetch(&branches, &Credentials::None, ForcePushPolicy::Follow)
        .unwrap();
    let git_mirror = dir.path().join("git-mirror.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", git_mirror.to_str().unwrap()],
    )
    .unwrap();
    let git_fetch = |mirror: &std::path::Path| {
        let mut args = vec!["fetch", "-q", "--no-tags", url.as_str()];
        args.extend(refspecs.iter().map(String::as_str));
        git(mirror, &args).unwrap();
    };
    git_fetch(&git_mirror);

    let work = dir.path().join("work");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--branch",
            "main",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    )
    .unwrap();
    let (mut ship_times, mut git_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        std::fs::write(work.join("deploy/main/new.yaml"), format!("round: {round}\n")).unwrap();
        git(&work, &["add", "-A"]).unwrap();
        git(&work, &["commit", "-q", "-m", &format!("round {round}")]).unwrap();
        git(&work, &["push", "-q", "origin", "main"]).unwrap();
        // Alternate who goes first, so neither always meets a warm daemon.
        let mut measure_ship = || {
            let t = Instant::now();
            let changes = ship
                .fetch(&branches, &Credentials::None, ForcePushPolicy::Follow)
                .unwrap()
                .changes;
            assert_eq!(changes.len(), 1, "exactly the new main commit");
            ship_times.push(t.elapsed());
        };
        let mut measure_git = || {
            let t = Instant::now();
            git_fetch(&git_mirror);
            git_times.push(t.elapsed());
        };
        if round % 2 == 0 {
            measure_ship();
            measure_git();
        } else {
            measure_git();
            measure_ship();
        }
    }
    let (ship_median, git_median) = (percentile(&mut ship_times, 0.5), percentile(&mut git_times, 0.5));
    let (ship_p90, git_p90) = (percentile(&mut ship_times, 0.9), percentile(&mut git_times, 0.9));
    println!(
        "incremental fetch of 1 new commit, {commits}-commit repository, {rounds} rounds, git:// on loopback"
    );
    println!(
        "  ship (libgit2): median {:>7.2} ms  p90 {:>7.2} ms",
        ship_median.as_secs_f64() * 1e3,
        ship_p90.as_secs_f64() * 1e3
    );
    println!(
        "  git fetch:      median {:>7.2} ms  p90 {:>7.2} ms",
        git_median.as_secs_f64() * 1e3,
        git_p90.as_secs_f64() * 1e3
    );
    println!(
        "  ratio ship/git (median): {:.2}",
        ship_median.as_secs_f64() / git_median.as_secs_f64()
    );

    // One pass each, git second: both read the same objects, just fetched, from the page cache.
    // Both repack geometrically: the first clone's big pack stays, the fetched ones are rolled up.
    let t = Instant::now();
    let combined = ship.maintain(0).unwrap();
    let ship_repack = t.elapsed();
    assert_eq!(
        (combined.packs_before, combined.packs_after),
        (rounds + 1, 2),
        "the clone's pack and one pack of what was fetched since"
    );
    assert!(
        combined.objects >= 3 * rounds,
        "each round's commit, trees and blob"
    );
    let t = Instant::now();
    git(&git_mirror, &["repack", "-d", "-q", "--geometric=2"]).unwrap();
    let git_repack = t.elapsed();
    println!(
        "rolling {} of {} packs ({} objects) into one, the clone's pack left alone",
        combined.packs_before - 1,
        combined.packs_before,
        combined.objects
    );
    println!(
        "  ship (libgit2 packbuilder):  {:>8.1} ms",
        ship_repack.as_secs_f64() * 1e3
    );
    println!(
        "  git repack -d --geometric=2: {:>8.1} ms",
        git_repack.as_secs_f64() * 1e3
    );
    println!(
        "  ratio ship/git: {:.2}",
        ship_repack.as_secs_f64() / git_repack.as_secs_f64()
    );
}
