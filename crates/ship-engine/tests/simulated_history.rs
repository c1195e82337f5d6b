//! Simulated histories of one environment, thousands of operations a second: the release
//! machine's real decisions ([`machine::step`], [`Snapshot::of`], [`status_after`],
//! [`releases::rollback_target`]) driven against a model API server that keeps every version
//! of every release and does compare-and-set on the resourceVersion, as the real one does.
//!
//! A seeded generator interleaves pushes (good commits, commits refused before anything is
//! applied, commits that crash, commits whose tests fail) with reconciles handed a view that
//! is often stale (any earlier version of the release: a cache that lags its own writes, the
//! worst it could be), pushes that land in the middle of a wait, and reconciles cut short (a
//! crash). Invariants, checked after every write and at the end, not examples:
//! - a settled release (Succeeded, RolledBack, Failed with nothing left to do, Superseded) never
//!   changes phase again;
//! - a failed release rolls back to the last release that really succeeded before it (one that
//!   was ever written Succeeded), or says there is none only when there is none;
//! - at the end every release is settled, and the cluster runs what the newest release says.
//!
//! The drive loop below mirrors `executor::drive` (`Driver::drive`) (decide, compare-and-set, on a stale
//! view decide again from a fresh read, never work on an unconfirmed view); the I/O around it is
//! the model's. CI runs seeds 1-20, 500 operations each (10,000). A longer run:
//! `SHIP_SIM_SEEDS=1-2000 SHIP_SIM_OPERATIONS=500 cargo test -p ship-engine --test simulated_history`
//! (`bench/reliability.sh` runs 1,000,000). Without compare-and-set the same histories break the
//! invariants within a few seeds, and a test checks that too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ship_api::{Phase, Reason, ShipRelease, ShipReleaseSpec, TestResult, TestVerdict, keys};
use ship_engine::machine::{self, Action, Event, Plan, Snapshot, Work};
use ship_engine::releases;
use ship_engine::status::status_after;
use ship_testkit::seeded::{Seeded, parse_seeds};

/// What a commit does when deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quality {
    Good,
    /// Refused before anything is applied (a manifest that does not parse).
    Refused,
    /// Applied, then a crash-looping Pod.
    Unhealthy,
    /// Applied and healthy; a user journey fails.
    TestsFail,
}

const QUALITIES: [Quality; 7] = [
    Quality::Good,
    Quality::Good,
    Quality::Good,
    Quality::Good,
    Quality::Refused,
    Quality::Unhealthy,
    Quality::TestsFail,
];

/// Most decisions one reconcile takes (the real one is bounded by its work; this bounds a bug).
const MAX_STEPS: usize = 40;
/// As `executor::drive::MAX_STALE_VIEWS`.
const MAX_STALE_VIEWS: u32 = 5;

/// The model: an API server holding one environment's releases, and the cluster it deploys to.
struct World {
    /// Every version of every release, oldest first; the last is the current one.
    versions: BTreeMap<String, Vec<ShipRelease>>,
    quality: BTreeMap<String, Quality>,
    resource_version: u64,
    sequence: i64,
    now: i64,
    /// The commit the cluster runs.
    deployed: Option<String>,
    /// Releases that were ever written Succeeded.
    succeeded: BTreeSet<String>,
    compare_and_set: bool,
    violations: Vec<String>,
    writes: usize,
    stale_writes_refused: usize,
}

impl World {
    fn new(compare_and_set: bool) -> Self {
        Self {
            versions: BTreeMap::new(),
            quality: BTreeMap::new(),
            resource_version: 0,
            sequence: 0,
            now: 1_800_000_000,
            deployed: None,
            succeeded: BTreeSet::new(),
            compare_and_set,
            violations: Vec::new(),
            writes: 0,
            stale_writes_refused: 0,
        }
    }

    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn current(&self, name: &str) -> ShipRelease {
        self.versions[name].last().cloned().unwrap()
    }

    fn all_current(&self) -> Vec<ShipRelease> {
        self.versions.values().filter_map(|v| v.last().cloned()).collect()
    }

    fn newest(&self) -> Option<ShipRelease> {
        self.all_current().into_iter().max_by_key(ShipRelease::sequence)
    }

    /// A push: the next commit, and its release.
    fn push(&mut self, quality: Quality) -> String {
        self.sequence += 1;
        let name = format!("main-{:04}", self.sequence);
        let commit = format!("{:07x}{}", self.sequence, "0".repeat(33));
        let mut release = ShipRelease::new(
            &name,
            ShipReleaseSpec {
                environment: "main".into(),
                commit,
                branch: "main".into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
        );
        release.metadata.namespace = Some("sim".into());
        release.metadata.generation = Some(1);
        release.metadata.annotations = Some([(keys::SEQUENCE.to_owned(), self.sequence.to_string())].into());
        release.metadata.resource_version = Some(self.next_version());
        self.versions.insert(name.clone(), vec![release]);
        self.quality.insert(name.clone(), quality);
        name
    }

    /// A view of `name` as a lagging cache may hand it: any version up to the current one.
    fn view(&self, name: &str, rng: &mut Seeded, stale_percent: usize) -> ShipRelease {
        let versions = &self.versions[name];
        if rng.chance(stale_percent) {
            versions[rng.below(versions.len())].clone()
        } else {
            versions[versions.len() - 1].clone()
        }
    }

    /// A status write decided on `view`: compare-and-set on its resourceVersion. `None` when
    /// refused (the release changed since the view).
    fn write_status(
        &mut self,
        view: &ShipRelease,
        status: ship_api::ShipReleaseStatus,
    ) -> Option<ShipRelease> {
        let name = view.metadata.name.clone().unwrap();
        let current = self.current(&name);
        if self.compare_and_set && current.metadata.resource_version != view.metadata.resource_version {
            self.stale_writes_refused += 1;
            return None;
        }
        let before = current.status.as_ref().and_then(|s| s.phase);
        let was_settled = current
            .status
            .as_ref()
            .is_some_and(|s| s.phase.is_some() && s.is_settled());
        let mut written = current.clone();
        written.status = Some(status);
        written.metadata.resource_version = Some(self.next_version());
        let after = written.status.as_ref().and_then(|s| s.phase);
        if was_settled && before != after {
            self.violations.push(format!(
                "{name}: settled {before:?} ({}) overwritten with {after:?} ({})",
                current.status.as_ref().map_or("", |s| s.ready_reason()),
                written.status.as_ref().map_or("", |s| s.ready_reason()),
            ));
        }
        if after == Some(Phase::Succeeded) {
            self.succeeded.insert(name.clone());
        }
        self.writes += 1;
        self.versions.get_mut(&name).unwrap().push(written.clone());
        Some(written)
    }

    /// The release that really succeeded last before `release`, of another commit.
    fn really_last_good(&self, release: &ShipRelease) -> Option<String> {
        self.all_current()
            .into_iter()
            .filter(|r| r.sequence() < release.sequence() && r.spec.commit != release.spec.commit)
            .filter(|r| {
                self.succeeded
                    .contains(r.metadata.name.as_deref().unwrap_or_default())
            })
            .max_by_key(ShipRelease::sequence)
            .and_then(|r| r.metadata.name)
    }
}

/// How a reconcile's work may be disturbed.
struct Disturbance<'a> {
    rng: &'a mut Seeded,
    /// Percent chance that a push lands during a wait.
    push_during_wait: usize,
}

/// One reconcile of the release seen as `view`, as `executor::drive` (`Driver::drive`) does it.
fn reconcile(world: &mut World, mut release: ShipRelease, disturb: &mut Disturbance<'_>) {
    let name = release.metadata.name.clone().unwrap();
    let own = release.sequence();
    let mut confirmed = false;
    let mut stale_views = 0;
    let mut event = Event::Observed;
    for _ in 0..MAX_STEPS {
        let newest = world.newest().unwrap();
        let superseded_by = (newest.sequence() > own).then(|| newest.metadata.name.clone().unwrap());
        let snapshot = Snapshot::of(
            machine::persisted(&release),
            superseded_by,
            Duration::from_secs(86_400),
            Vec::new(),
        );
        let decided_in = snapshot.phase;
        let now = Timestamp::from_second(world.now).unwrap();
        let transition = machine::step(&snapshot, event.clone(), now);
        let work = transition.work();
        let status = status_after(
            machine::persisted(&release),
            transition.change.as_ref(),
            transition.record,
            &Time(now),
        );
        if release.status.as_ref() != Some(&status) {
            match world.write_status(&release, status) {
                Some(written) => {
                    release = written;
                    confirmed = true;
                }
                None => {
                    stale_views += 1;
                    if stale_views > MAX_STALE_VIEWS {
                        return;
                    }
                    release = world.current(&name);
                    confirmed = true;
                    event = machine::after_stale_view(
                        event,
                        decided_in,
                        release.status.as_ref().and_then(|s| s.phase),
                    );
                    continue;
                }
            }
        }
        if transition.actions.iter().any(|a| {
            matches!(
                a,
                Action::Retry { .. } | Action::RequeueSoon | Action::RequeueAfter(_)
            )
        }) {
            return;
        }
        let Some(work) = work else { return };
        if !confirmed {
            let cached = release.metadata.resource_version.clone();
            release = world.current(&name);
            confirmed = true;
            if release.metadata.resource_version != cached {
                event = Event::Observed;
                continue;
            }
        }
        let snapshot = Snapshot::of(
            machine::persisted(&release),
            (world.newest().unwrap().sequence() > own).then(String::new),
            Duration::from_secs(86_400),
            Vec::new(),
        );
        if snapshot.settles_before_work() {
            event = Event::Observed;
            continue;
        }
        match perform(world, &release, work, disturb) {
            Some(next) => event = next,
            None => return,
        }
    }
}

/// The model's I/O: the outcome of `work` for `release`.
fn perform(
    world: &mut World,
    release: &ShipRelease,
    work: Work,
    disturb: &mut Disturbance<'_>,
) -> Option<Event> {
    let name = release.metadata.name.clone().unwrap();
    let quality = world.quality[&name];
    let own = release.sequence();
    // A push during a wait ends it without an outcome (the executor's `unless_superseded`).
    let mut interrupted_by_push = |world: &mut World| {
        if disturb.rng.chance(disturb.push_during_wait) {
            let quality = *disturb.rng.pick(&QUALITIES);
            world.push(quality);
        }
        world.newest().is_some_and(|n| n.sequence() > own)
    };
    world.now += 1;
    Some(match work {
        Work::Prepare if quality == Quality::Refused => Event::Refused {
            cause: "InvalidYaml",
            problem: "a manifest does not parse".into(),
        },
        Work::Prepare => Event::Prepared(Plan::default()),
        Work::Apply => {
            world.deployed = Some(release.spec.commit.clone());
            Event::Applied {
                inventory: Vec::new(),
                prune_refused: Vec::new(),
                fields_left: Vec::new(),
            }
        }
        Work::AwaitHealth if interrupted_by_push(world) => Event::Interrupted,
        Work::AwaitHealth if quality == Quality::Unhealthy => Event::Unhealthy("CrashLoopBackOff".into()),
        Work::AwaitHealth => Event::Healthy {
            tests: vec!["journey".into()],
        },
        Work::RunTests if interrupted_by_push(world) => Event::Interrupted,
        Work::RunTests => Event::TestsRan(vec![TestResult {
            name: "journey".into(),
            verdict: if quality == Quality::TestsFail {
                TestVerdict::Failed
            } else {
                TestVerdict::Passed
            },
            duration_millis: Some(2000),
            message: String::new(),
            log: String::new(),
        }]),
        Work::ChooseRollbackTarget => {
            // From the API server, as the executor reads it.
            let all = world.all_current();
            let chosen = releases::rollback_target(release, &all).and_then(|r| r.metadata.name.clone());
            let expected = world.really_last_good(release);
            if chosen != expected {
                world.violations.push(format!(
                    "{name} rolls back to {chosen:?}; the last release that really succeeded is {expected:?}"
                ));
            }
            match chosen {
                Some(good) => Event::RollbackTargetChosen {
                    short_commit: world.current(&good).spec.short_commit().to_owned(),
                    release: good,
                },
                None => Event::NoGoodRelease,
            }
        }
        Work::RollBack => {
            let target = release.status.as_ref().and_then(|s| s.rolled_back_to.clone())?;
            let good = world.versions.get(&target)?.last()?.clone();
            world.deployed = Some(good.spec.commit.clone());
            if interrupted_by_push(world) {
                return Some(Event::Interrupted);
            }
            Event::RolledBack {
                good_commit: good.spec.short_commit().to_owned(),
                prune_refused: Vec::new(),
            }
        }
        Work::CorrectDrift | Work::Verify => return None,
    })
}

/// What one history did.
#[derive(Debug, Default)]
struct Story {
    operations: usize,
    releases: usize,
    writes: usize,
    stale_writes_refused: usize,
    rolled_back: usize,
}

/// Plays `operations` operations from `seed`; the violations found, and what happened.
fn history(seed: u64, operations: usize, compare_and_set: bool) -> (Vec<String>, Story) {
    let mut rng = Seeded::new(seed);
    let mut world = World::new(compare_and_set);
    world.push(Quality::Good);
    for _ in 0..operations {
        world.now += 1;
        if rng.chance(20) {
            let quality = *rng.pick(&QUALITIES);
            world.push(quality);
            continue;
        }
        // Mostly the newest releases (where the work is), sometimes any (a resync).
        let names: Vec<String> = world.versions.keys().cloned().collect();
        let name = if rng.chance(80) {
            names[names.len() - 1 - rng.below(names.len().min(3))].clone()
        } else {
            rng.pick(&names).clone()
        };
        let view = world.view(&name, &mut rng, 50);
        // A crash cuts a reconcile short: modelled by fewer pushes later, not here; a reconcile
        // always ends at a write or a wait, as the real one resumes from its persisted phase.
        let mut disturb = Disturbance {
            rng: &mut rng,
            push_during_wait: 15,
        };
        reconcile(&mut world, view, &mut disturb);
    }
    // Quiet: no more pushes, fresh views, until everything settles.
    let mut quiet = Disturbance {
        rng: &mut rng,
        push_during_wait: 0,
    };
    for _ in 0..20 {
        let unfinished: Vec<String> = world
            .all_current()
            .into_iter()
            .filter(|r| !r.is_settled())
            .filter_map(|r| r.metadata.name)
            .collect();
        if unfinished.is_empty() {
            break;
        }
        for name in unfinished {
            let view = world.current(&name);
            reconcile(&mut world, view, &mut quiet);
        }
    }
    let all = world.all_current();
    for r in all.iter().filter(|r| !r.is_settled()) {
        world.violations.push(format!(
            "{} never settled: {:?}",
            r.metadata.name.as_deref().unwrap_or_default(),
            r.status.as_ref().and_then(|s| s.phase)
        ));
    }
    if let Some(newest) = world.newest() {
        let status = newest.status.clone().unwrap_or_default();
        let expected = match (status.phase, status.ready_reason()) {
            (Some(Phase::Succeeded), _) => Some(newest.spec.commit.clone()),
            (Some(Phase::RolledBack), _) => status
                .rolled_back_to
                .as_deref()
                .map(|t| world.current(t).spec.commit.clone()),
            (Some(Phase::Failed), "NoGoodRelease") => Some(newest.spec.commit.clone()),
            _ => None,
        };
        if expected.is_some() && expected != world.deployed {
            world.violations.push(format!(
                "the newest release {} is {:?}; the cluster runs {:?}, not {:?}",
                newest.metadata.name.as_deref().unwrap_or_default(),
                status.phase,
                world.deployed,
                expected
            ));
        }
    }
    let story = Story {
        operations,
        releases: all.len(),
        writes: world.writes,
        stale_writes_refused: world.stale_writes_refused,
        rolled_back: all
            .iter()
            .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::RolledBack))
            .count(),
    };
    (world.violations, story)
}

fn seeds_and_operations() -> (Vec<u64>, usize) {
    let seeds = parse_seeds(&std::env::var("SHIP_SIM_SEEDS").unwrap_or_else(|_| "1-20".into())).unwrap();
    let operations = std::env::var("SHIP_SIM_OPERATIONS")
        .ok()
        .and_then(|o| o.parse().ok())
        .unwrap_or(500);
    (seeds, operations)
}

#[test]
fn simulated_histories_with_stale_views_keep_every_invariant() {
    let (seeds, operations) = seeds_and_operations();
    let mut total = Story::default();
    let mut failed = Vec::new();
    for seed in &seeds {
        let (violations, story) = history(*seed, operations, true);
        total.operations += story.operations;
        total.releases += story.releases;
        total.writes += story.writes;
        total.stale_writes_refused += story.stale_writes_refused;
        total.rolled_back += story.rolled_back;
        if !violations.is_empty() {
            failed.push(format!(
                "seed {seed}: {}\nreplay: SHIP_SIM_SEEDS={seed} SHIP_SIM_OPERATIONS={operations} \
                 cargo test -p ship-engine --test simulated_history",
                violations.join("\n  ")
            ));
        }
    }
    println!(
        "simulated: {} seeds, {} operations, {} releases, {} status writes, {} stale writes refused, {} rolled back, {} seeds with violations",
        seeds.len(),
        total.operations,
        total.releases,
        total.writes,
        total.stale_writes_refused,
        total.rolled_back,
        failed.len()
    );
    // The histories must reach the cases that matter, or the invariants say little.
    assert!(
        total.stale_writes_refused > 0,
        "no stale view ever reached a write"
    );
    assert!(total.rolled_back > 0, "no history rolled back");
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The simulation can fail: with the writes unconditional (no compare-and-set), the same
/// histories overwrite settled releases and roll back to the wrong one.
#[test]
fn without_compare_and_set_the_same_histories_break_the_invariants() {
    let broken: Vec<(u64, String)> = (1..=20)
        .filter_map(|seed| Some((seed, history(seed, 500, false).0.first()?.clone())))
        .collect();
    assert!(!broken.is_empty(), "no history broke without compare-and-set");
    println!(
        "without compare-and-set: {} of 20 seeds break an invariant; seed {}: {}",
        broken.len(),
        broken[0].0,
        broken[0].1
    );
}
