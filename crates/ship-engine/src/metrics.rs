//! Ship's Prometheus metrics (prometheus-client, OpenMetrics text on `/metrics`).
//!
//! Every name starts with `ship_`, and every label value is a fixed name (a phase, a reason
//! label, a test name from `ship.yaml`, an environment) or, for the two `_info` gauges, one
//! commit per environment whose stale series are deleted when it changes. Each metric is
//! documented in `docs/metrics.md`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// Buckets for phase durations: 50 ms to 30 min (tests take seconds, rollouts minutes).
const PHASE_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// Buckets for git fetches: 10 ms to 2 min.
const FETCH_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 120.0];

/// `environment`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvLabels {
    /// Environment.
    pub environment: String,
}

/// `environment`, `reason` (the `InSync` condition's reason).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// Environment.
    pub environment: String,
    /// Why it is, or is not, in sync: `Synced`, `Progressing`, `TipFailed`, ...
    pub reason: String,
}

/// `environment`, `phase`, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Environment.
    pub environment: String,
    /// Settled phase entered.
    pub phase: String,
    /// Fixed reason code.
    pub reason: String,
}

/// `environment`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BisectLabels {
    /// Environment.
    pub environment: String,
    /// How it ended: `Named`, `Inconclusive`, `Superseded` or `Stopped`.
    pub outcome: String,
}

/// Test releases one bisection took: ⌈log₂ k⌉ plus re-runs.
const BISECT_STEP_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0];

fn bisect_steps_histogram() -> Histogram {
    Histogram::new(BISECT_STEP_BUCKETS)
}

/// `environment`, `cause`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabels {
    /// Environment.
    pub environment: String,
    /// Why: `HealthTimeout`, `Unhealthy`, `TestsFailed`, or `Requested` (by a person).
    pub cause: String,
}

/// `environment`, `phase` (a step: apply, health, tests, rollback, total).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// Environment.
    pub environment: String,
    /// The step.
    pub phase: String,
}

/// `environment`, `test`, `verdict`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TestLabels {
    /// Environment.
    pub environment: String,
    /// Test name from ship.yaml.
    pub test: String,
    /// `Passed` or `Failed`.
    pub verdict: String,
}

/// `environment`, `test`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TestNameLabels {
    /// Environment.
    pub environment: String,
    /// Test name from ship.yaml.
    pub test: String,
}

/// `environment`, `commit`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    /// Environment.
    pub environment: String,
    /// Full commit SHA.
    pub commit: String,
}

/// `environment`, `release`, `commit`, `phase`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatestLabels {
    /// Environment.
    pub environment: String,
    /// Release name.
    pub release: String,
    /// Full commit SHA.
    pub commit: String,
    /// Current phase.
    pub phase: String,
}

/// `kind` or `reason`: one fixed error label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The error's fixed label.
    pub kind: String,
}

/// `provider`, `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// `github`, `gitlab`, `gitea`, `slack` or `webhook`.
    pub provider: String,
    /// `delivered`, `retried` (an attempt failed and another follows) or `gave_up`.
    pub result: String,
}

/// `from`, `to`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PromotionLabels {
    /// Source environment.
    pub from: String,
    /// Target environment.
    pub to: String,
}

fn phase_histogram() -> Histogram {
    Histogram::new(PHASE_BUCKETS)
}

fn fetch_histogram() -> Histogram {
    Histogram::new(FETCH_BUCKETS)
}

/// Lead times and times to restore: from a minute to four weeks.
const DELIVERY_BUCKETS: [f64; 10] = [
    60.0,
    300.0,
    900.0,
    3_600.0,
    4.0 * 3_600.0,
    86_400.0,
    3.0 * 86_400.0,
    7.0 * 86_400.0,
    14.0 * 86_400.0,
    28.0 * 86_400.0,
];

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

/// Every metric the engine, the promotion and the git source report.
#[derive(Debug)]
pub struct Metrics {
    /// Settled phases entered, by environment, phase and reason.
    pub release_outcomes: Family<OutcomeLabels, Counter>,
    /// Rollbacks started, by environment and cause.
    pub rollbacks: Family<RollbackLabels, Counter>,
    /// Time spent in each step of a release.
    pub phase_duration: Family<StepLabels, Histogram, fn() -> Histogram>,
    /// Post-deployment test results.
    pub test_results: Family<TestLabels, Counter>,
    /// 1 if a test passed the last time it ran in an environment, 0 if it failed.
    pub test_last_passed: Family<TestNameLabels, Gauge>,
    /// Reconcile errors (retried), by error label.
    pub reconcile_errors: Family<KindLabels, Counter>,
    /// 1 for the commit deployed in each environment.
    pub deployed_commit: Family<CommitLabels, Gauge>,
    /// 1 for the newest release of each environment, with its phase.
    pub latest_release: Family<LatestLabels, Gauge>,
    /// When each environment last had a release succeed (seconds since the epoch).
    pub last_success: Family<EnvLabels, Gauge<f64, AtomicU64>>,
    /// When a promotion release into each environment last succeeded.
    pub last_promotion_success: Family<EnvLabels, Gauge<f64, AtomicU64>>,
    /// Commits on the source branch that the target lacks.
    pub behind_commits: Family<PromotionLabels, Gauge>,
    /// Commit time of the oldest of them (absent when none).
    pub oldest_unreleased: Family<PromotionLabels, Gauge<f64, AtomicU64>>,
    /// Promotion runs by outcome.
    pub promotion_runs: Family<KindLabels, Counter>,
    /// Git fetch durations.
    pub fetch_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Failed git fetches, by reason.
    pub fetch_failures: Family<KindLabels, Counter>,
    /// 1 while the last fetch succeeded.
    pub source_up: Gauge,
    /// When a fetch last succeeded.
    pub last_fetch_success: Gauge<f64, AtomicU64>,
    /// 1 while this instance leads (acts on releases).
    pub leader: Gauge,
    /// 1 while an environment runs its branch's tip, else 0; labelled with the reason.
    pub environment_in_sync: Family<SyncLabels, Gauge>,
    /// 1 while an environment's branch is missing on the remote.
    pub environment_branch_missing: Family<EnvLabels, Gauge>,
    /// 1 while a person holds an environment (`kubectl ship hold`), else 0.
    pub environment_held: Family<EnvLabels, Gauge>,
    /// Since when an environment is held (seconds since the epoch; 0 while not held).
    pub environment_held_since: Family<EnvLabels, Gauge<f64, AtomicU64>>,
    /// 1 if a continuous verification test passed the last time it ran against the deployed
    /// release, 0 if it failed.
    pub verification_last_passed: Family<TestNameLabels, Gauge>,
    /// When it last ran (seconds since the epoch).
    pub verification_last_run: Family<TestNameLabels, Gauge<f64, AtomicU64>>,
    /// Continuous verification results, by environment, test and verdict.
    pub verification_results: Family<TestLabels, Counter>,
    /// Notification attempts' results, by provider.
    pub notifications: Family<NotifyLabels, Counter>,
    /// Deployments (releases that succeeded), by environment (DORA: deployment frequency).
    pub deployments: Family<EnvLabels, Counter>,
    /// Time from each delivered commit's commit time to its release's success (DORA: lead
    /// time for changes).
    pub lead_time: Family<EnvLabels, Histogram, fn() -> Histogram>,
    /// Releases that failed after applying (DORA: change failure rate, over `deployments`).
    pub change_failures: Family<EnvLabels, Counter>,
    /// Time from the first of a run of failures to the next success (DORA: time to restore).
    pub time_to_restore: Family<EnvLabels, Histogram, fn() -> Histogram>,
    /// Bisections ended, by environment and outcome.
    pub bisections: Family<BisectLabels, Counter>,
    /// Test releases each bisection took, by environment and outcome.
    pub bisection_steps: Family<BisectLabels, Histogram, fn() -> Histogram>,
    /// Time from a bisection's start (the failed release rolled back) to its end (the
    /// culprit named, for outcome `Named`), by environment and outcome.
    pub bisection_duration: Family<BisectLabels, Histogram, fn() -> Histogram>,
    /// The verification tests with series, by environment, to delete them on a new release.
    verified: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    /// Which commit each environment's info series names, to delete it when it changes.
    deployed: Mutex<HashMap<String, CommitLabels>>,
    latest: Mutex<HashMap<String, LatestLabels>>,
    sync: Mutex<HashMap<String, SyncLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            release_outcomes: Family::default(),
            rollbacks: Family::default(),
            phase_duration: Family::new_with_constructor(phase_histogram),
            test_results: Family::default(),
            test_last_passed: Family::default(),
            reconcile_errors: Family::default(),
            deployed_commit: Family::default(),
            latest_release: Family::default(),
            last_success: Family::default(),
            last_promotion_success: Family::default(),
            behind_commits: Family::default(),
            oldest_unreleased: Family::default(),
            promotion_runs: Family::default(),
            fetch_duration: Family::new_with_constructor(fetch_histogram),
            fetch_failures: Family::default(),
            source_up: Gauge::default(),
            last_fetch_success: Gauge::default(),
            leader: Gauge::default(),
            environment_in_sync: Family::default(),
            environment_branch_missing: Family::default(),
            environment_held: Family::default(),
            environment_held_since: Family::default(),
            verification_last_passed: Family::default(),
            verification_last_run: Family::default(),
            verification_results: Family::default(),
            notifications: Family::default(),
            deployments: Family::default(),
            lead_time: Family::new_with_constructor(delivery_histogram),
            change_failures: Family::default(),
            time_to_restore: Family::new_with_constructor(delivery_histogram),
            bisections: Family::default(),
            bisection_steps: Family::new_with_constructor(bisect_steps_histogram),
            bisection_duration: Family::new_with_constructor(phase_histogram),
            verified: Mutex::default(),
            deployed: Mutex::default(),
            latest: Mutex::default(),
            sync: Mutex::default(),
        }
    }
}

/// The guard of `mutex`, also after a panic elsewhere poisoned it (the maps it guards only
/// name series; a half-done update costs at most a stale series).
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn test_labels(environment: &str, test: &str) -> TestNameLabels {
    TestNameLabels {
        environment: environment.to_owned(),
        test: test.to_owned(),
    }
}

fn verdict_labels(environment: &str, test: &str, passed: bool) -> TestLabels {
    TestLabels {
        environment: environment.to_owned(),
        test: test.to_owned(),
        verdict: if passed { "Passed" } else { "Failed" }.to_owned(),
    }
}

fn env(environment: &str) -> EnvLabels {
    EnvLabels {
        environment: environment.to_owned(),
    }
}

fn kind(kind: &str) -> KindLabels {
    KindLabels {
        kind: kind.to_owned(),
    }
}

/// Replaces `environment`'s series in `family` by `labels` (one series per environment).
fn replace_series<
    L: Clone + std::hash::Hash + Eq + prometheus_client::encoding::EncodeLabelSet + std::fmt::Debug,
>(
    family: &Family<L, Gauge>,
    current: &Mutex<HashMap<String, L>>,
    environment: &str,
    labels: L,
) {
    let mut current = locked(current);
    if let Some(old) = current.insert(environment.to_owned(), labels.clone())
        && old != labels
    {
        family.remove(&old);
    }
    family.get_or_create(&labels).set(1);
}

impl Metrics {
    /// Counts a notification's `result` for `provider`.
    pub fn notified(&self, provider: &str, result: &str) {
        self.notifications
            .get_or_create(&NotifyLabels {
                provider: provider.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Records one delivery figure of `environment`.
    pub fn delivery(&self, environment: &str, figure: &ship_core::delivery::Delivery) {
        use ship_core::delivery::Delivery;
        let labels = env(environment);
        match figure {
            Delivery::Deployed => {
                self.deployments.get_or_create(&labels).inc();
            }
            Delivery::LeadTime(took) => self.lead_time.get_or_create(&labels).observe(took.as_secs_f64()),
            Delivery::ChangeFailed => {
                self.change_failures.get_or_create(&labels).inc();
            }
            Delivery::Restored(took) => self
                .time_to_restore
                .get_or_create(&labels)
                .observe(took.as_secs_f64()),
        }
    }

    /// Records a bisection of `environment` that ended with `outcome` after `steps` test
    /// releases and `took`.
    pub fn bisected(&self, environment: &str, outcome: &str, steps: usize, took: std::time::Duration) {
        let labels = BisectLabels {
            environment: environment.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.bisections.get_or_create(&labels).inc();
        self.bisection_steps.get_or_create(&labels).observe(steps as f64);
        self.bisection_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Registers every metric in `registry` under the prefix `ship`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ship");
        r.register(
            "bisections",
            "Bisections of a failed range of commits that ended, by environment and outcome (Named: the first bad commit found)",
            self.bisections.clone(),
        );
        r.register(
            "bisection_steps",
            "Test releases a bisection took, by environment and outcome",
            self.bisection_steps.clone(),
        );
        r.register_with_unit(
            "bisection_duration",
            "Time from a bisection's start to its end (to the culprit named, for outcome Named), by environment and outcome",
            Unit::Seconds,
            self.bisection_duration.clone(),
        );
        r.register(
            "deployments",
            "Releases that succeeded, by environment (DORA deployment frequency)",
            self.deployments.clone(),
        );
        r.register_with_unit(
            "lead_time",
            "Time from each delivered commit's commit time to its release's success, by environment (DORA lead time for changes)",
            Unit::Seconds,
            self.lead_time.clone(),
        );
        r.register(
            "change_failures",
            "Releases that failed after applying, by environment (DORA change failure rate, over ship_deployments_total)",
            self.change_failures.clone(),
        );
        r.register_with_unit(
            "time_to_restore",
            "Time from the first of a run of failed releases to the next success, by environment (DORA time to restore)",
            Unit::Seconds,
            self.time_to_restore.clone(),
        );
        r.register(
            "release_outcomes",
            "Releases that entered a settled phase, by environment, phase and reason",
            self.release_outcomes.clone(),
        );
        r.register(
            "rollbacks",
            "Rollbacks started, by environment and cause",
            self.rollbacks.clone(),
        );
        r.register_with_unit(
            "release_phase_duration",
            "Time a release spent in each step (apply, health, tests, rollback) and in all (total)",
            Unit::Seconds,
            self.phase_duration.clone(),
        );
        r.register(
            "test_results",
            "Post-deployment test results, by environment, test and verdict",
            self.test_results.clone(),
        );
        r.register(
            "test_last_passed",
            "1 if the test passed the last time it ran in the environment, 0 if it failed",
            self.test_last_passed.clone(),
        );
        r.register(
            "notifications",
            "Notifications (commit statuses, chat and webhook messages) by provider and result: delivered, retried (an attempt failed; another follows), gave_up",
            self.notifications.clone(),
        );
        r.register(
            "verification_last_passed",
            "1 if the continuous verification test passed the last time it ran against the deployed release, 0 if it failed",
            self.verification_last_passed.clone(),
        );
        r.register_with_unit(
            "verification_last_run_timestamp",
            "When the continuous verification test last ran against the deployed release (seconds since the epoch)",
            Unit::Seconds,
            self.verification_last_run.clone(),
        );
        r.register(
            "verification_results",
            "Continuous verification results, by environment, test and verdict",
            self.verification_results.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile errors (retried), by kind",
            self.reconcile_errors.clone(),
        );
        r.register(
            "deployed_commit_info",
            "1 for the commit deployed in each environment",
            self.deployed_commit.clone(),
        );
        r.register(
            "release_latest_info",
            "1 for the newest release of each environment, labelled with its commit and phase",
            self.latest_release.clone(),
        );
        r.register_with_unit(
            "release_last_success_timestamp",
            "When a release last succeeded in each environment (seconds since the epoch)",
            Unit::Seconds,
            self.last_success.clone(),
        );
        r.register_with_unit(
            "promotion_last_success_timestamp",
            "When a promotion release last succeeded in each target environment",
            Unit::Seconds,
            self.last_promotion_success.clone(),
        );
        r.register(
            "promotion_behind_commits",
            "Commits on the promotion's source branch that its target branch lacks",
            self.behind_commits.clone(),
        );
        r.register_with_unit(
            "promotion_oldest_unreleased_commit_timestamp",
            "Commit time of the oldest commit on the source branch that the target lacks",
            Unit::Seconds,
            self.oldest_unreleased.clone(),
        );
        r.register(
            "promotion_runs",
            "Promotion runs (scheduled or requested), by outcome",
            self.promotion_runs.clone(),
        );
        r.register_with_unit(
            "git_fetch_duration",
            "Duration of git fetches, by result (ok or the failure reason)",
            Unit::Seconds,
            self.fetch_duration.clone(),
        );
        r.register(
            "git_fetch_failures",
            "Failed git fetches, by reason",
            self.fetch_failures.clone(),
        );
        r.register(
            "git_source_up",
            "1 while the last git fetch succeeded",
            self.source_up.clone(),
        );
        r.register_with_unit(
            "git_last_fetch_success_timestamp",
            "When a git fetch last succeeded",
            Unit::Seconds,
            self.last_fetch_success.clone(),
        );
        r.register(
            "leader",
            "1 while this instance is the leader (it fetches, applies and tests)",
            self.leader.clone(),
        );
        r.register(
            "environment_in_sync",
            "1 while the environment runs its branch's tip, else 0, with the reason",
            self.environment_in_sync.clone(),
        );
        r.register(
            "environment_branch_missing",
            "1 while the environment's branch is missing on the remote",
            self.environment_branch_missing.clone(),
        );
        r.register(
            "environment_held",
            "1 while a person holds the environment (kubectl ship hold): new tips and promotions wait",
            self.environment_held.clone(),
        );
        r.register_with_unit(
            "environment_held_since_timestamp",
            "Since when the environment is held (seconds since the epoch; 0 while not held)",
            Unit::Seconds,
            self.environment_held_since.clone(),
        );
    }

    /// A release entered settled `phase` for `reason`.
    pub fn settled(&self, environment: &str, phase: &str, reason: &str) {
        self.release_outcomes
            .get_or_create(&OutcomeLabels {
                environment: environment.to_owned(),
                phase: phase.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A rollback started.
    pub fn rollback(&self, environment: &str, cause: &str) {
        self.rollbacks
            .get_or_create(&RollbackLabels {
                environment: environment.to_owned(),
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// A release spent `took` in `step`.
    pub fn step(&self, environment: &str, step: &str, took: Duration) {
        self.phase_duration
            .get_or_create(&StepLabels {
                environment: environment.to_owned(),
                phase: step.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A post-deployment test ended.
    pub fn test(&self, environment: &str, test: &str, passed: bool) {
        self.test_results
            .get_or_create(&verdict_labels(environment, test, passed))
            .inc();
        self.test_last_passed
            .get_or_create(&test_labels(environment, test))
            .set(i64::from(passed));
    }

    /// Whether `environment` runs its branch's tip, and why (one series per environment), and
    /// whether its branch is missing.
    pub fn environment(&self, environment: &str, reason: &str, branch_missing: bool) {
        let labels = SyncLabels {
            environment: environment.to_owned(),
            reason: reason.to_owned(),
        };
        let synced = reason == ship_api::SyncReason::Synced.as_str();
        replace_series(&self.environment_in_sync, &self.sync, environment, labels.clone());
        self.environment_in_sync
            .get_or_create(&labels)
            .set(i64::from(synced));
        self.environment_branch_missing
            .get_or_create(&env(environment))
            .set(i64::from(branch_missing));
    }

    /// Whether `environment` is held, and since when (seconds since the epoch).
    pub fn held(&self, environment: &str, since: Option<f64>) {
        self.environment_held
            .get_or_create(&env(environment))
            .set(i64::from(since.is_some()));
        self.environment_held_since
            .get_or_create(&env(environment))
            .set(since.unwrap_or(0.0));
    }

    /// A continuous verification run of `test` against `environment`'s deployed release, at
    /// `at`.
    pub fn verified(&self, environment: &str, test: &str, passed: bool, at: jiff::Timestamp) {
        let labels = test_labels(environment, test);
        self.verification_last_passed
            .get_or_create(&labels)
            .set(i64::from(passed));
        self.verification_last_run
            .get_or_create(&labels)
            .set(at.as_millisecond() as f64 / 1000.0);
        self.verification_results
            .get_or_create(&verdict_labels(environment, test, passed))
            .inc();
        locked(&self.verified)
            .entry(environment.to_owned())
            .or_default()
            .insert(test.to_owned());
    }

    /// Deletes `environment`'s verification verdicts (a new release is deployed).
    pub fn forget_verification(&self, environment: &str) {
        let tests = locked(&self.verified).remove(environment).unwrap_or_default();
        for test in tests {
            let labels = test_labels(environment, &test);
            self.verification_last_passed.remove(&labels);
            self.verification_last_run.remove(&labels);
        }
    }

    /// A reconcile failed with the error labelled `label`.
    pub fn reconcile_error(&self, label: &str) {
        self.reconcile_errors.get_or_create(&kind(label)).inc();
    }

    /// `commit` now runs in `environment`.
    pub fn deployed(&self, environment: &str, commit: &str) {
        let labels = CommitLabels {
            environment: environment.to_owned(),
            commit: commit.to_owned(),
        };
        replace_series(&self.deployed_commit, &self.deployed, environment, labels);
    }

    /// `release` (of `commit`) is the newest of `environment`, in `phase`.
    pub fn latest(&self, environment: &str, release: &str, commit: &str, phase: &str) {
        let labels = LatestLabels {
            environment: environment.to_owned(),
            release: release.to_owned(),
            commit: commit.to_owned(),
            phase: phase.to_owned(),
        };
        replace_series(&self.latest_release, &self.latest, environment, labels);
    }

    /// A release of `environment` succeeded at `at` (seconds since the epoch); a promotion
    /// too when `promotion`. Keeps the latest time (releases are seen in any order on start).
    pub fn succeeded_at(&self, environment: &str, at: f64, promotion: bool) {
        let raise = |gauge: &Gauge<f64, AtomicU64>| {
            if gauge.get() < at {
                gauge.set(at);
            }
        };
        raise(&self.last_success.get_or_create(&env(environment)));
        if promotion {
            raise(&self.last_promotion_success.get_or_create(&env(environment)));
        }
    }

    /// How far `to` is behind `from`: `commits`, the oldest of them committed at `oldest`.
    pub fn behind(&self, from: &str, to: &str, commits: u32, oldest: Option<f64>) {
        let labels = PromotionLabels {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.behind_commits.get_or_create(&labels).set(i64::from(commits));
        match oldest {
            Some(at) => {
                self.oldest_unreleased.get_or_create(&labels).set(at);
            }
            None => {
                self.oldest_unreleased.remove(&labels);
            }
        }
    }

    /// A promotion run ended with `outcome`.
    pub fn promotion_run(&self, outcome: &str) {
        self.promotion_runs.get_or_create(&kind(outcome)).inc();
    }

    /// A git fetch took `took` and failed with `failure` (a fixed label) or succeeded.
    pub fn fetch(&self, took: Duration, failure: Option<&str>, now: f64) {
        self.fetch_duration
            .get_or_create(&kind(failure.unwrap_or("ok")))
            .observe(took.as_secs_f64());
        match failure {
            Some(reason) => {
                self.fetch_failures.get_or_create(&kind(reason)).inc();
                self.source_up.set(0);
            }
            None => {
                self.source_up.set(1);
                self.last_fetch_success.set(now);
            }
        }
    }
}

/// The registry's metrics in OpenMetrics text.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        encode(&registry).unwrap()
    }

    #[test]
    fn delivery_figures_are_exported_as_dora_series() {
        use ship_core::delivery::Delivery;
        let m = Metrics::default();
        for figure in [
            Delivery::Deployed,
            Delivery::Deployed,
            Delivery::LeadTime(Duration::from_secs(120)),
            Delivery::ChangeFailed,
            Delivery::Restored(Duration::from_secs(600)),
        ] {
            m.delivery("main", &figure);
        }
        let text = scrape(&m);
        for expected in [
            "ship_deployments_total{environment=\"main\"} 2",
            "ship_change_failures_total{environment=\"main\"} 1",
            "ship_lead_time_seconds_bucket{le=\"300.0\",environment=\"main\"} 1",
            "ship_lead_time_seconds_bucket{le=\"60.0\",environment=\"main\"} 0",
            "ship_time_to_restore_seconds_sum{environment=\"main\"} 600.0",
        ] {
            assert!(text.contains(expected), "missing {expected}:\n{text}");
        }
    }

    #[test]
    fn info_series_are_replaced_not_accumulated() {
        let m = Metrics::default();
        m.deployed("main", "aaaa");
        m.deployed("production", "bbbb");
        m.deployed("main", "cccc");
        let text = scrape(&m);
        assert!(
            text.contains("ship_deployed_commit_info{environment=\"main\",commit=\"cccc\"} 1"),
            "{text}"
        );
        assert!(!text.contains("aaaa"), "{text}");
        assert!(text.contains("commit=\"bbbb\""));
        m.latest("main", "main-1", "cccc", "Testing");
        m.latest("main", "main-1", "cccc", "Succeeded");
        let text = scrape(&m);
        assert!(!text.contains("Testing"), "{text}");
        assert!(text.contains("phase=\"Succeeded\""));
    }

    #[test]
    fn names_units_and_the_latest_success() {
        let m = Metrics::default();
        m.settled("main", "RolledBack", "RolledBack");
        m.rollback("main", "TestsFailed");
        m.step("main", "tests", Duration::from_millis(300));
        m.succeeded_at("production", 200.0, true);
        m.succeeded_at("production", 100.0, false);
        m.fetch(Duration::from_millis(20), Some("FetchFailed"), 0.0);
        m.behind("main", "production", 3, Some(50.0));
        let text = scrape(&m);
        for expected in [
            "ship_release_outcomes_total{environment=\"main\",phase=\"RolledBack\",reason=\"RolledBack\"} 1",
            "ship_rollbacks_total{environment=\"main\",cause=\"TestsFailed\"} 1",
            "ship_release_phase_duration_seconds_bucket{le=\"0.5\",environment=\"main\",phase=\"tests\"} 1",
            "ship_release_last_success_timestamp_seconds{environment=\"production\"} 200.0",
            "ship_promotion_last_success_timestamp_seconds{environment=\"production\"} 200.0",
            "ship_git_fetch_failures_total{kind=\"FetchFailed\"} 1",
            "ship_git_source_up 0",
            "ship_promotion_behind_commits{from=\"main\",to=\"production\"} 3",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected}\n{text}");
        }
        m.behind("main", "production", 0, None);
        assert!(!scrape(&m).contains("ship_promotion_oldest_unreleased_commit_timestamp_seconds{"));
    }
}
