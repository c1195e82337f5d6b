//! `ship.yaml`: the repository's own configuration, read at each commit.
//!
//! Every field has a default, so the smallest valid file is
//!
//! ```yaml
//! environments:
//!   main: {}
//!   production: {}
//! ```
//!
//! which deploys `deploy/main` from branch `main` into namespace `main`, and `deploy/production`
//! from branch `production` into namespace `production`, with a 5-minute health timeout and a
//! forced promotion every Tuesday at 10:00 UTC.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::duration::{ConfigDuration, duration_flag};

/// Name of the file at the repository root.
pub const FILE_NAME: &str = "ship.yaml";

/// The whole of `ship.yaml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShipConfig {
    /// The environments, by name (a DNS label). Usually `main` and `production`.
    pub environments: BTreeMap<String, Environment>,

    /// Post-deployment tests, run after every rollout in every environment.
    #[serde(default)]
    pub tests: Vec<TestSpec>,

    /// How long a rollout may take to become healthy.
    #[serde(default)]
    pub health: Health,

    /// How long the post-deployment tests may take, together.
    #[serde(default)]
    pub testing: Testing,

    /// The forced weekly release of `main` into `production`.
    #[serde(default)]
    pub promotion: Promotion,

    /// The ways the environments may differ: `kubectl ship diff` marks a difference that one of
    /// these covers as declared, and `--undeclared` shows (and fails on) the rest. Example:
    /// `[{path: spec.replicas, kind: Deployment}, {path: spec.rules.*.host, kind: Ingress}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<DeclaredDifference>,

    /// Finding the first bad commit after a release of several commits fails and rolls back
    /// (never in the promotion's target environment).
    #[serde(default)]
    pub bisect: Bisect,

    /// Fields Ship leaves to other writers (an operator, an admission webhook, a person during
    /// an incident): never applied, never corrected as drift. Besides these, Ship leaves
    /// `spec.replicas` of an object a HorizontalPodAutoscaler in the commit scales, the fields an
    /// object's `ship.dev/ignore-fields` annotation names, and fields another manager took by
    /// server-side apply. Example: `[{path: spec.template.metadata.annotations, kind: Deployment}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_fields: Vec<IgnoredField>,
}

/// Fields of some objects that Ship leaves to other writers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IgnoredField {
    /// The field, dotted through map keys (`spec.replicas`, `data.rotated-at`); everything
    /// under it is left too.
    pub path: String,
    /// Only objects of this kind (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only the objects of this name (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl IgnoredField {
    /// Whether it concerns the object `kind`/`name`.
    pub fn applies_to(&self, kind: &str, name: &str) -> bool {
        self.kind.as_deref().is_none_or(|k| k == kind) && self.name.as_deref().is_none_or(|n| n == name)
    }
}

/// The bisection of a failed range of commits: test releases of chosen commits (reason
/// `Bisect`), halving the range until the first bad commit is named.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bisect {
    /// Bisect at all. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How many times a failing test release is run again before its commit counts as bad: a
    /// failure that does not repeat is a flaky test, not a bad commit. Default `1`.
    #[serde(default = "default_bisect_retries")]
    pub retries: u32,
    /// How long a bisection may make a new push wait, e.g. `10m`. Past it the push goes ahead
    /// and the bisection ends `Superseded` (or, with no push waiting, `Inconclusive`). Default
    /// `10m`.
    #[serde(default = "default_bisect_max_duration")]
    pub max_duration: ConfigDuration,
    /// Push a `git revert` of the culprit onto the branch's tip once it is named (needs push
    /// credentials; never forced). Default `false`: `kubectl ship revert` does it on demand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert: bool,
}

fn default_bisect_retries() -> u32 {
    1
}

fn default_bisect_max_duration() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(600))
}

impl Default for Bisect {
    fn default() -> Self {
        Self {
            enabled: true,
            retries: default_bisect_retries(),
            max_duration: default_bisect_max_duration(),
            revert: false,
        }
    }
}

impl Bisect {
    /// The machine's settings.
    pub fn settings(&self) -> ship_core::bisect::Settings {
        ship_core::bisect::Settings {
            retries: self.retries,
            max_duration: self.max_duration.get(),
        }
    }
}

/// A way the environments may differ.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeclaredDifference {
    /// A field of the objects, dotted; `*` matches any one key or list item, and the items of
    /// a list whose items all have a `name` are named by it:
    /// `spec.template.spec.containers.web.image`, `spec.template.spec.containers.*.resources`.
    /// Everything under the field is covered.
    pub path: String,
    /// Only objects of this kind (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only the object of this name (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Why the environments differ here (shown by `kubectl ship diff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl DeclaredDifference {
    /// Whether this covers the field `path` (dotted, as [`DeclaredDifference::path`]) of the
    /// object `kind`/`name`.
    pub fn covers(&self, kind: &str, name: &str, path: &str) -> bool {
        if self.kind.as_deref().is_some_and(|k| k != kind) || self.name.as_deref().is_some_and(|n| n != name)
        {
            return false;
        }
        let want: Vec<&str> = self.path.split('.').collect();
        let have: Vec<&str> = path.split('.').collect();
        want.len() <= have.len() && want.iter().zip(&have).all(|(w, h)| *w == "*" || w == h)
    }
}

/// One environment: a branch deployed to a namespace.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environment {
    /// Branch deployed to this environment. Default: the environment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,

    /// Namespace the environment's objects land in. Default: the environment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Directory of manifests (or a kustomization), relative to the repository root.
    /// Default: `deploy/<environment>`. Not with `helm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// Render a Helm chart kept in the repository instead of `path`, with this environment's
    /// values. Example: `helm: {chart: charts/shop, valuesFiles: [charts/shop/values-main.yaml]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<crate::helm::HelmChart>,

    /// Extra namespaces this environment's manifests may target (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,

    /// Deploy to another cluster: the name of a Secret (in shipd's namespace) whose key
    /// `kubeconfig` holds that cluster's kubeconfig. Default: the cluster shipd runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret: Option<String>,

    /// Cluster-scoped kinds this environment may manage (for example `ClusterRole`). The
    /// environment's own Namespace is always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_scoped_kinds: Vec<String>,

    /// Hosts the built-in HTTP tests may call in this environment. Empty: any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_test_hosts: Vec<String>,

    /// Variables substituted into this environment's manifests as `${name}` (Flux's
    /// post-build substitution): environments that share one `path` differ only here, in a
    /// `git diff` of ship.yaml. `${name:=default}` has a default, `$${name}` is the text
    /// itself; a `${name}` not declared fails the release in Pending, naming the file and
    /// line. Without `vars`, manifests are not substituted at all. Example:
    /// `vars: {replicas: "3", tag: "1.4.2"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vars: Option<BTreeMap<String, String>>,
}

/// Health settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    /// How long a rollout may take to become healthy, e.g. `90s`, `5m`. Default `5m`.
    #[serde(default = "default_health_timeout")]
    pub timeout: ConfigDuration,
}

fn default_health_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(300))
}

/// Settings of the post-deployment test phase.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Testing {
    /// How long the tests of one release may take, together, from the moment it became healthy,
    /// e.g. `90s`, `2m`. A test still running then fails, and the release rolls back. Default
    /// `2m`: tests are meant to answer within seconds of the rollout.
    #[serde(default = "default_testing_timeout")]
    pub timeout: ConfigDuration,
}

fn default_testing_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(120))
}

impl Default for Testing {
    fn default() -> Self {
        Self {
            timeout: default_testing_timeout(),
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self {
            timeout: default_health_timeout(),
        }
    }
}

/// The forced promotion schedule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Promotion {
    /// Cron expression (minute hour day-of-month month day-of-week). Default `0 10 * * TUE`.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// IANA time zone of the schedule. Default `UTC`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Environment whose tested commits are promoted. Default `main`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Environment that receives them. Default `production`.
    #[serde(default = "default_to")]
    pub to: String,
    /// Turn the forced promotion off. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Tag each promoted commit: an annotated tag named by this template, pushed with the push
    /// credentials, for example `release-{date}-{short}` (`{date}`: the day, `YYYY-MM-DD`, UTC;
    /// `{short}`: the commit's short SHA). An existing tag is never moved. Default: no tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Refuse to promote while the two environments, rendered at the candidate commit, differ
    /// in a way `differences` does not declare (as `kubectl ship diff --undeclared` reports):
    /// the run is recorded as `UndeclaredDifferences` with a Warning event, and the promotion
    /// is Stalled until a new candidate. Default `false`. Example: `true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refuse_undeclared_differences: bool,
}

impl Promotion {
    /// The tag name for a promotion of `short` on `date`, when ship.yaml asks for tags.
    pub fn tag_name(&self, date: &str, short: &str) -> Option<String> {
        self.tag
            .as_ref()
            .map(|template| ship_core::text::fill(template, &[("date", date), ("short", short)]))
    }
}

/// Whether `name` is a tag name git accepts (`git check-ref-format`, the rules that matter for
/// a name built from a template).
fn valid_tag_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name
            .chars()
            .any(|c| c.is_ascii_control() || c.is_whitespace() || "~^:?*[\\{}".contains(c))
}

fn default_schedule() -> String {
    "0 10 * * TUE".into()
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_from() -> String {
    "main".into()
}
fn default_to() -> String {
    "production".into()
}
fn default_true() -> bool {
    true
}

impl Default for Promotion {
    fn default() -> Self {
        Self {
            schedule: default_schedule(),
            time_zone: default_time_zone(),
            from: default_from(),
            to: default_to(),
            enabled: true,
            tag: None,
            refuse_undeclared_differences: false,
        }
    }
}

/// Shortest `every` of a continuous verification test.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// One post-deployment test: exactly one of `http`, `job` or `prometheus`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestSpec {
    /// Test name, unique in the file.
    pub name: String,
    /// A known query with a known result, run by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTest>,
    /// A Kubernetes Job manifest in the repository, run once per release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// A PromQL query against a Prometheus, measured over time and judged against a range
    /// (an analysis, as Argo Rollouts and Flagger judge a release by its metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusTest>,
    /// Only in these environments (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Continuous verification: run the test again this often against the deployed release,
    /// e.g. `10m`, for as long as the release is the one deployed. Default: only once, after
    /// the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<ConfigDuration>,
    /// What a failure of a continuous verification run does: `report` (default: the
    /// `Verified` condition, the metric, the alert, an event) or `rollback` (also roll back to
    /// the last good release, once: the release rolled back to is not verified again until a
    /// new commit arrives). Only with `every`.
    #[serde(default, skip_serializing_if = "OnFailure::is_report")]
    pub on_failure: OnFailure,
}

/// What a failed continuous verification run does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnFailure {
    /// Say so: condition, metric, alert, event.
    #[default]
    Report,
    /// Say so, and roll back to the last good release.
    Rollback,
}

impl OnFailure {
    fn is_report(&self) -> bool {
        *self == OnFailure::Report
    }
}

impl TestSpec {
    /// How often the test runs again against the deployed release, parsed (checked when the
    /// file was parsed); `None` when it runs only after the rollout.
    pub fn every(&self) -> Option<Duration> {
        self.every.as_ref().map(ConfigDuration::get)
    }
}

/// A known query and its known result, sent to exactly one of `url` or `service`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTest {
    /// URL; `{namespace}` and `{environment}` are replaced by the environment's values.
    /// Subject to the environment's `allowedTestHosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Service in the environment's namespace, reached through the Kubernetes API server's
    /// service proxy of the environment's cluster: no cluster DNS, no route into the cluster,
    /// and the same credentials Ship deploys with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTarget>,
    /// HTTP method. Default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Per-attempt timeout, e.g. `10s`. Default `10s`.
    #[serde(default = "default_test_timeout")]
    pub timeout: ConfigDuration,
    /// Attempts after the first, for an app that needs a moment after its rollout (a cache to
    /// warm, a connection pool to fill). The test passes on the first attempt that passes and
    /// fails with the last attempt's answer; all attempts stay within `testing.timeout`.
    /// Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Time between two attempts, e.g. `2s`. Default `1s`.
    #[serde(default = "default_retry_interval")]
    pub interval: ConfigDuration,
    /// The known result.
    #[serde(default)]
    pub expect: Expect,
}

/// A PromQL instant query, run `count` times `interval` apart; each answer is one measurement,
/// passing when it lies within `min`..=`max`. The test fails as soon as more than
/// `failureLimit` measurements failed, and passes once all `count` are taken. So `count` ×
/// `interval` says for how long the release is watched, `interval` how often, and the range
/// what it must hold to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusTest {
    /// The Prometheus server's base URL, e.g. `http://prometheus.monitoring:9090` (the HTTP
    /// API is under `/api/v1`). `{namespace}` and `{environment}` are replaced. Subject to the
    /// environment's `allowedTestHosts`.
    pub address: String,
    /// A PromQL instant query; `{namespace}` and `{environment}` are replaced. It must answer
    /// one number: a scalar, or a vector of one sample (aggregate with `sum`, `max`, ...). No
    /// samples fail the measurement: append `or vector(0)` when no data means no errors.
    pub query: String,
    /// The lowest passing value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The highest passing value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// How many measurements to take. Default 1.
    #[serde(default = "default_measurements")]
    pub count: u32,
    /// The time between two measurements, e.g. `10s`. Default `10s`.
    #[serde(default = "default_measurement_interval")]
    pub interval: ConfigDuration,
    /// Failing measurements tolerated; one more fails the test. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failure_limit: u32,
    /// Per-query timeout, e.g. `5s`. Default `10s`.
    #[serde(default = "default_test_timeout")]
    pub timeout: ConfigDuration,
}

fn default_measurements() -> u32 {
    1
}

fn default_measurement_interval() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(10))
}

impl PrometheusTest {
    /// The time between two measurements.
    pub fn measurement_interval(&self) -> Duration {
        self.interval.get()
    }

    /// The per-query timeout.
    pub fn query_timeout(&self) -> Duration {
        self.timeout.get()
    }

    /// The passing range, as people read it: `<= 0.05`, `>= 1`, `0.9..=1`.
    pub fn range(&self) -> String {
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!("between {min} and {max}"),
            (Some(min), None) => format!(">= {min}"),
            (None, Some(max)) => format!("<= {max}"),
            (None, None) => "any value".into(),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_retry_interval() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(1))
}

impl HttpTest {
    /// The time between two attempts.
    pub fn retry_interval(&self) -> Duration {
        self.interval.get()
    }

    /// The per-attempt timeout.
    pub fn attempt_timeout(&self) -> Duration {
        self.timeout.get()
    }
}

/// Where a `service` test sends its request.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceTarget {
    /// The Service's name, in the environment's namespace.
    pub name: String,
    /// The Service port: its number or its name.
    pub port: ServicePort,
    /// The request path (with query), starting with `/`. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// `https` when the Service port serves TLS. Default `http`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

/// A Service port, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ServicePort {
    /// The port number.
    Number(u16),
    /// The port's name.
    Name(String),
}

impl std::fmt::Display for ServicePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServicePort::Number(n) => write!(f, "{n}"),
            ServicePort::Name(name) => f.write_str(name),
        }
    }
}

fn default_path() -> String {
    "/".into()
}
fn default_scheme() -> String {
    "http".into()
}

fn default_method() -> String {
    "GET".into()
}
fn default_test_timeout() -> ConfigDuration {
    ConfigDuration::from_duration(Duration::from_secs(10))
}

/// What a passing answer looks like.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// Expected HTTP status. Default 200.
    #[serde(default = "default_status")]
    pub status: u16,
    /// The body must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// JSON fields that must equal these values, by JSON pointer (e.g. `/items/0/name`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
}

fn default_status() -> u16 {
    200
}

impl Default for Expect {
    fn default() -> Self {
        Self {
            status: default_status(),
            body_contains: None,
            json: BTreeMap::new(),
        }
    }
}

/// Why `ship.yaml` cannot be used. Messages name the file, and the line and field when known.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file is missing from the commit.
    #[error("{FILE_NAME} not found at the repository root: add one that declares the environments")]
    Missing,
    /// YAML syntax, unknown field or wrong type.
    #[error("{FILE_NAME}: {0}")]
    Parse(String),
    /// Well-formed, but a value is not acceptable.
    #[error("{FILE_NAME}: {field}: {problem}")]
    Invalid {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl ConfigError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            ConfigError::Missing => "ConfigMissing",
            ConfigError::Parse(_) => "ConfigParse",
            ConfigError::Invalid { .. } => "ConfigInvalid",
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Largest `ship.yaml` accepted.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// Parses and checks `ship.yaml`.
pub fn parse(text: &str) -> Result<ShipConfig, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(invalid("(file)", format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    let config: ShipConfig = serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text))
        .map_err(|e| ConfigError::Parse(parse_error_message(&e)))?;
    config.check()?;
    Ok(config)
}

/// `tests[0].http.timeout: "soon" is not a duration like 90s, 5m or 1h30m at line 7 column 5`:
/// the full path of the field (serde_path_to_error's), then serde_norway's message without its
/// own path, which names only the outermost key.
fn parse_error_message(error: &serde_path_to_error::Error<serde_norway::Error>) -> String {
    let path = error.path().to_string();
    let inner = error.inner().to_string();
    let message = inner
        .split_once(": ")
        .filter(|(prefix, _)| path.starts_with(prefix) && !prefix.contains(' '))
        .map_or(inner.as_str(), |(_, rest)| rest);
    if path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// Whether `path` is relative and stays inside the repository.
fn stays_inside(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|part| part == "..")
}

fn check_helm(
    helm: &crate::helm::HelmChart,
    name: &str,
    env: &Environment,
    field: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if env.path.is_some() {
        return Err(invalid(
            field("helm"),
            "give either `path` (manifests or a kustomization) or `helm` (a chart), not both",
        ));
    }
    if env.vars.is_some() {
        return Err(invalid(
            field("helm"),
            "a chart takes its per-environment settings as `helm.values` or `helm.valuesFiles`, not `vars`",
        ));
    }
    if !stays_inside(&helm.chart) {
        return Err(invalid(
            field("helm.chart"),
            format!("{:?} must be a relative path inside the repository", helm.chart),
        ));
    }
    for (i, file) in helm.values_files.iter().enumerate() {
        if !stays_inside(file) {
            return Err(invalid(
                field(&format!("helm.valuesFiles[{i}]")),
                format!("{file:?} must be a relative path inside the repository"),
            ));
        }
    }
    // Helm's own rule for release names (a DNS label of at most 53 characters).
    let release = helm.release_name(name);
    if !ship_core::names::is_dns_label(release) || release.len() > 53 {
        return Err(invalid(
            field("helm.releaseName"),
            format!("{release:?} is not a Helm release name (a-z, 0-9, -; at most 53 characters)"),
        ));
    }
    if let Some(version) = &helm.kube_version {
        let numbers = version.trim_start_matches('v');
        let parts: Vec<&str> = numbers.split('.').collect();
        if !(2..=3).contains(&parts.len())
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(
                field("helm.kubeVersion"),
                format!("{version:?} is not a Kubernetes version like 1.20.2"),
            ));
        }
    }
    Ok(())
}

impl ShipConfig {
    fn check(&self) -> Result<(), ConfigError> {
        for (i, d) in self.differences.iter().enumerate() {
            if d.path.is_empty() || d.path.split('.').any(str::is_empty) {
                return Err(invalid(
                    format!("differences[{i}].path"),
                    format!(
                        "{:?} is not a dotted field path (for example spec.replicas)",
                        d.path
                    ),
                ));
            }
        }
        if self.environments.is_empty() {
            return Err(invalid(
                "environments",
                "declare at least one environment (usually main and production)",
            ));
        }
        for (name, env) in &self.environments {
            let field = |f: &str| format!("environments.{name}.{f}");
            if !ship_core::names::is_dns_label(name) {
                return Err(invalid(
                    format!("environments.{name}"),
                    "an environment name must be a DNS label (a-z, 0-9, -)",
                ));
            }
            let namespace = env.namespace(name);
            if !ship_core::names::is_dns_label(namespace) {
                return Err(invalid(
                    field("namespace"),
                    format!("{namespace:?} is not a valid namespace name"),
                ));
            }
            let path = env.path(name);
            if path.starts_with('/') || path.split('/').any(|part| part == "..") {
                return Err(invalid(
                    field("path"),
                    format!("{path:?} must be relative and stay inside the repository"),
                ));
            }
            if let Some(helm) = &env.helm {
                check_helm(helm, name, env, &field)?;
            }
            for var in env.vars.iter().flat_map(BTreeMap::keys) {
                if !crate::vars::is_name(var) {
                    return Err(invalid(
                        field("vars"),
                        format!(
                            "{var:?} is not a variable name: use letters, digits and _, not starting with a digit"
                        ),
                    ));
                }
            }
            let branch = env.branch(name);
            if branch.is_empty() || branch.contains("..") || branch.starts_with('-') || branch.contains(' ') {
                return Err(invalid(
                    field("branch"),
                    format!("{branch:?} is not a valid branch name"),
                ));
            }
        }
        let mut branches: Vec<&str> = self.environments.iter().map(|(n, e)| e.branch(n)).collect();
        branches.sort_unstable();
        if let Some(pair) = branches.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(
                "environments",
                format!("two environments deploy branch {:?}; give each its own", pair[0]),
            ));
        }
        for (field, value) in [
            ("health.timeout", &self.health.timeout),
            ("testing.timeout", &self.testing.timeout),
        ] {
            if value.get().is_zero() {
                return Err(invalid(
                    field,
                    format!("{:?} is zero: give a duration like 90s or 5m", value.as_str()),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, test) in self.tests.iter().enumerate() {
            let field = |f: &str| format!("tests[{i}].{f}");
            if !names.insert(test.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("duplicate test name {:?}", test.name),
                ));
            }
            let kinds = [test.http.is_some(), test.job.is_some(), test.prometheus.is_some()];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(invalid(
                    format!("tests[{i}]"),
                    "give exactly one of `http`, `job` or `prometheus`",
                ));
            }
            if let Some(prometheus) = &test.prometheus {
                self.validate_prometheus_test(prometheus, &field)?;
            }
            match (&test.http, &test.job) {
                (None, None) | (Some(_), Some(_)) => {}
                (Some(http), None) => {
                    match (&http.url, &http.service) {
                        (Some(_), Some(_)) | (None, None) => {
                            return Err(invalid(field("http"), "give exactly one of `url` or `service`"));
                        }
                        (Some(url), None) => {
                            if !ship_core::urls::is_http(url) {
                                return Err(invalid(
                                    field("http.url"),
                                    format!("{url:?} is not an http:// or https:// URL with a host"),
                                ));
                            }
                        }
                        (None, Some(service)) => {
                            if !ship_core::names::is_dns_label(&service.name) {
                                return Err(invalid(
                                    field("http.service.name"),
                                    format!("{:?} is not a valid Service name", service.name),
                                ));
                            }
                            if let ServicePort::Name(port) = &service.port
                                && !ship_core::names::is_dns_label(port)
                            {
                                return Err(invalid(
                                    field("http.service.port"),
                                    format!("{port:?} is neither a port number nor a port name"),
                                ));
                            }
                            if !service.path.starts_with('/') {
                                return Err(invalid(field("http.service.path"), "must start with /"));
                            }
                            if service.scheme != "http" && service.scheme != "https" {
                                return Err(invalid(field("http.service.scheme"), "must be http or https"));
                            }
                        }
                    }
                    if http.timeout.get().is_zero() {
                        return Err(invalid(
                            field("http.timeout"),
                            format!("{:?} is zero: give a duration like 5s", http.timeout.as_str()),
                        ));
                    }
                }
                (None, Some(job)) => {
                    if job.starts_with('/') || job.split('/').any(|part| part == "..") {
                        return Err(invalid(field("job"), "must be a path inside the repository"));
                    }
                }
            }
            match &test.every {
                Some(every) if every.get() < MIN_EVERY => {
                    return Err(invalid(
                        field("every"),
                        format!(
                            "{:?} is shorter than 1s: give a duration like 10m",
                            every.as_str()
                        ),
                    ));
                }
                Some(_) if test.job.is_some() => {
                    return Err(invalid(
                        field("every"),
                        "continuous verification runs http and prometheus tests; a Job test runs once per release",
                    ));
                }
                None if test.on_failure != OnFailure::Report => {
                    return Err(invalid(
                        field("onFailure"),
                        "applies to continuous verification only: give `every` too",
                    ));
                }
                _ => {}
            }
            for env in &test.environments {
                if !self.environments.contains_key(env) {
                    return Err(invalid(
                        field("environments"),
                        format!("unknown environment {env:?}"),
                    ));
                }
            }
        }
        let p = &self.promotion;
        if p.enabled {
            for (field, env) in [("promotion.from", &p.from), ("promotion.to", &p.to)] {
                if !self.environments.contains_key(env) {
                    return Err(invalid(
                        field,
                        format!(
                            "unknown environment {env:?} (set promotion.enabled: false to turn promotion off)"
                        ),
                    ));
                }
            }
            if let Some(template) = &p.tag
                && let Some(sample) = p.tag_name("2026-01-01", "0123456")
                && !valid_tag_name(&sample)
            {
                return Err(invalid(
                    "promotion.tag",
                    format!(
                        "{template:?} does not make a valid tag name (placeholders: {{date}}, {{short}}; no spaces, no ~^:?*[\\)"
                    ),
                ));
            }
            match crate::schedule::Schedule::parse(&p.schedule, &p.time_zone) {
                Ok(_) => {}
                Err(err @ crate::schedule::ScheduleError::TimeZone(_)) => {
                    return Err(invalid("promotion.timeZone", err.to_string()));
                }
                Err(err) => return Err(invalid("promotion.schedule", err.to_string())),
            }
        }
        Ok(())
    }

    /// Checks one `prometheus` test; `field` names its fields in messages.
    fn validate_prometheus_test(
        &self,
        test: &PrometheusTest,
        field: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        if !ship_core::urls::is_http(&test.address) {
            return Err(invalid(
                field("prometheus.address"),
                format!("{:?} is not an http:// or https:// URL with a host", test.address),
            ));
        }
        if test.query.trim().is_empty() {
            return Err(invalid(field("prometheus.query"), "must not be empty"));
        }
        for (name, bound) in [("min", test.min), ("max", test.max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                return Err(invalid(
                    field(&format!("prometheus.{name}")),
                    "must be a finite number",
                ));
            }
        }
        match (test.min, test.max) {
            (None, None) => {
                return Err(invalid(
                    field("prometheus"),
                    "give `min`, `max` or both: the range a measurement must lie in",
                ));
            }
            (Some(min), Some(max)) if min > max => {
                return Err(invalid(
                    field("prometheus.min"),
                    format!("{min} is above max ({max}): no value could pass"),
                ));
            }
            _ => {}
        }
        if test.count == 0 {
            return Err(invalid(field("prometheus.count"), "must be at least 1"));
        }
        if test.failure_limit >= test.count {
            return Err(invalid(
                field("prometheus.failureLimit"),
                format!(
                    "{} of {} measurements tolerated: the test could never fail (make it less than count)",
                    test.failure_limit, test.count
                ),
            ));
        }
        for (name, value) in [("interval", &test.interval), ("timeout", &test.timeout)] {
            if value.get().is_zero() {
                return Err(invalid(
                    field(&format!("prometheus.{name}")),
                    format!("{:?} is zero: give a duration like 5s or 1m", value.as_str()),
                ));
            }
        }
        // The last measurement is taken (count - 1) intervals after the first; it must come
        // before the test phase's deadline, or the test could only ever time out.
        let watched = test.measurement_interval() * (test.count - 1);
        if watched >= self.test_timeout() {
            return Err(invalid(
                field("prometheus.count"),
                format!(
                    "{} measurements {} apart take {}s, not within testing.timeout ({}): \
                     take fewer or raise testing.timeout",
                    test.count,
                    test.interval,
                    watched.as_secs(),
                    self.testing.timeout
                ),
            ));
        }
        Ok(())
    }

    /// The post-deployment tests that run in environment `env`, in file order.
    pub fn tests_for<'a>(&'a self, env: &'a str) -> impl Iterator<Item = &'a TestSpec> + 'a {
        self.tests
            .iter()
            .filter(move |t| t.environments.is_empty() || t.environments.iter().any(|e| e == env))
    }

    /// The health timeout.
    pub fn health_timeout(&self) -> Duration {
        self.health.timeout.get()
    }

    /// The test phase's deadline after the release became healthy.
    pub fn test_timeout(&self) -> Duration {
        self.testing.timeout.get()
    }

    /// The promotion schedule, parsed (checked when the file was parsed).
    pub fn promotion_schedule(&self) -> Result<crate::schedule::Schedule, crate::schedule::ScheduleError> {
        crate::schedule::Schedule::parse(&self.promotion.schedule, &self.promotion.time_zone)
    }

    /// The environment that deploys `branch`, if any.
    pub fn environment_for_branch(&self, branch: &str) -> Option<(&str, &Environment)> {
        self.environments
            .iter()
            .find(|(n, e)| e.branch(n) == branch)
            .map(|(n, e)| (n.as_str(), e))
    }
}

impl Environment {
    /// The branch, defaulted.
    pub fn branch<'a>(&'a self, name: &'a str) -> &'a str {
        self.branch.as_deref().unwrap_or(name)
    }
    /// The namespace, defaulted.
    pub fn namespace<'a>(&'a self, name: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(name)
    }
    /// The manifest path, defaulted.
    pub fn path(&self, name: &str) -> String {
        self.path.clone().unwrap_or_else(|| format!("deploy/{name}"))
    }
}

/// The JSON Schema of `ship.yaml`, as published in `docs/ship.schema.json`.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ShipConfig)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_file_gets_every_default() {
        let c = parse("environments:\n  main: {}\n  production: {}\n").unwrap();
        let main = &c.environments["main"];
        assert_eq!(
            (main.branch("main"), main.namespace("main"), main.path("main")),
            ("main", "main", "deploy/main".into())
        );
        assert_eq!(c.health_timeout(), Duration::from_secs(300));
        assert_eq!(c.test_timeout(), Duration::from_secs(120));
        assert_eq!(c.promotion.schedule, "0 10 * * TUE");
        assert_eq!(
            (c.promotion.from.as_str(), c.promotion.to.as_str()),
            ("main", "production")
        );
        assert!(c.tests.is_empty());
        assert_eq!(
            c.environment_for_branch("production").map(|(n, _)| n),
            Some("production")
        );
    }

    /// `bisect:` defaults (on, one retry, 10 minutes, no revert), its settings as typed
    /// values, and a bad duration or an unknown key refused with the field named.
    #[test]
    fn bisect_settings_default_parse_and_refuse_what_is_wrong() {
        let c = parse("environments: {main: {}, production: {}}\n").unwrap();
        assert_eq!(c.bisect, Bisect::default());
        assert!(c.bisect.enabled && !c.bisect.revert);
        assert_eq!(c.bisect.settings(), ship_core::bisect::Settings::default());
        let c = parse("environments: {main: {}, production: {}}\nbisect: {retries: 0, maxDuration: 90s, revert: true}\n").unwrap();
        assert_eq!(
            c.bisect.settings(),
            ship_core::bisect::Settings {
                retries: 0,
                max_duration: Duration::from_secs(90)
            }
        );
        assert!(c.bisect.revert && c.bisect.enabled);
        let bad =
            parse("environments: {main: {}, production: {}}\nbisect: {maxDuration: soon}\n").unwrap_err();
        assert!(bad.to_string().contains("bisect.maxDuration"), "{bad}");
        let unknown = parse("environments: {main: {}, production: {}}\nbisect: {retry: 2}\n").unwrap_err();
        assert!(unknown.to_string().contains("retry"), "{unknown}");
    }

    #[test]
    fn tests_and_their_defaults() {
        let c = parse(
            "environments: {main: {}, production: {}}\ntests:\n- name: home\n  http: {url: 'http://web.{namespace}.svc/'}\n- name: journeys\n  job: tests/job.yaml\n  environments: [production]\n",
        )
        .unwrap();
        let http = c.tests[0].http.as_ref().unwrap();
        assert_eq!(
            (http.method.as_str(), http.expect.status, http.timeout.as_str()),
            ("GET", 200, "10s")
        );
        assert_eq!(c.tests[1].job.as_deref(), Some("tests/job.yaml"));
        assert_eq!((http.retries, http.retry_interval()), (0, Duration::from_secs(1)));
        assert_eq!(c.testing.timeout.as_str(), "2m");
        assert_eq!(c.test_timeout(), Duration::from_secs(120));
    }

    #[test]
    fn a_promotion_tag_template_makes_a_valid_tag_name_or_is_refused() {
        let c =
            parse("environments: {main: {}, production: {}}\npromotion: {tag: 'release-{date}-{short}'}\n")
                .unwrap();
        assert_eq!(
            c.promotion.tag_name("2026-12-08", "abc1234").as_deref(),
            Some("release-2026-12-08-abc1234")
        );
        assert_eq!(
            parse("environments: {main: {}, production: {}}\n")
                .unwrap()
                .promotion
                .tag_name("d", "s"),
            None
        );
        for bad in [
            "release {date}",
            "release-{when}",
            "../x",
            "a..b",
            "x.lock",
            "-x",
            "a:b",
        ] {
            let text =
                format!("environments: {{main: {{}}, production: {{}}}}\npromotion: {{tag: '{bad}'}}\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("promotion.tag"), "{bad}: {err}");
        }
    }

    #[test]
    fn warm_up_retries_and_the_test_deadline_are_read_and_checked() {
        let c = parse(
            "environments: {main: {}, production: {}}\ntesting: {timeout: 45s}\ntests:\n- name: home\n  http: {url: 'http://web/', retries: 5, interval: 500ms}\n",
        )
        .unwrap();
        let http = c.tests[0].http.as_ref().unwrap();
        assert_eq!(
            (http.retries, http.retry_interval()),
            (5, Duration::from_millis(500))
        );
        assert_eq!(c.test_timeout(), Duration::from_secs(45));
        let bad_interval = parse(
            "environments: {main: {}, production: {}}\ntests:\n- name: home\n  http: {url: 'http://web/', interval: soon}\n",
        );
        assert!(
            bad_interval
                .unwrap_err()
                .to_string()
                .contains("tests[0].http.interval")
        );
        let bad_deadline = parse("environments: {main: {}, production: {}}\ntesting: {timeout: 0s}\n");
        assert!(bad_deadline.unwrap_err().to_string().contains("testing.timeout"));
    }

    #[test]
    fn prometheus_tests_are_read_and_checked() {
        let env = "environments: {main: {}, production: {}}\n";
        let c = parse(&format!(
            "{env}tests:\n- name: errors\n  prometheus: {{address: 'http://prom:9090', query: 'sum(up)', max: 0.5, count: 6, interval: 5s, failureLimit: 1}}\n"
        ))
        .unwrap();
        let p = c.tests[0].prometheus.as_ref().unwrap();
        assert_eq!(
            (
                p.count,
                p.measurement_interval(),
                p.failure_limit,
                p.query_timeout()
            ),
            (6, Duration::from_secs(5), 1, Duration::from_secs(10))
        );
        assert_eq!(p.range(), "<= 0.5");
        let one = parse(&format!(
            "{env}tests:\n- name: up\n  prometheus: {{address: 'http://prom:9090', query: up, min: 1}}\n"
        ))
        .unwrap();
        let p = one.tests[0].prometheus.as_ref().unwrap();
        assert_eq!((p.count, p.measurement_interval()), (1, Duration::from_secs(10)));
        let cases = [
            (
                "{address: 'prom:9090', query: up, max: 1}",
                "tests[0].prometheus.address",
            ),
            (
                "{address: 'http://p', query: ' ', max: 1}",
                "tests[0].prometheus.query",
            ),
            ("{address: 'http://p', query: up}", "tests[0].prometheus"),
            (
                "{address: 'http://p', query: up, min: 2, max: 1}",
                "tests[0].prometheus.min",
            ),
            (
                "{address: 'http://p', query: up, max: .nan}",
                "tests[0].prometheus.max",
            ),
            (
                "{address: 'http://p', query: up, max: 1, count: 0}",
                "tests[0].prometheus.count",
            ),
            (
                "{address: 'http://p', query: up, max: 1, count: 3, failureLimit: 3}",
                "tests[0].prometheus.failureLimit",
            ),
            (
                "{address: 'http://p', query: up, max: 1, interval: often}",
                "tests[0].prometheus.interval",
            ),
            (
                "{address: 'http://p', query: up, max: 1, timeout: 0s}",
                "tests[0].prometheus.timeout",
            ),
            // 13 measurements 10s apart end 120s in: past the default 2m test deadline.
            (
                "{address: 'http://p', query: up, max: 1, count: 13}",
                "testing.timeout",
            ),
            ("{address: 'http://p', query: up, max: 1, bogus: 1}", "bogus"),
        ];
        for (test, field) in cases {
            let err = parse(&format!("{env}tests:\n- name: t\n  prometheus: {test}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{test}: {err}");
        }
        let both = parse(&format!(
            "{env}tests:\n- name: t\n  job: x.yaml\n  prometheus: {{address: 'http://p', query: up, max: 1}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("exactly one of `http`, `job` or `prometheus`"),
            "{both}"
        );
    }

    #[test]
    fn continuous_verification_is_read_and_checked() {
        let env = "environments: {main: {}, production: {}}\n";
        let c = parse(&format!(
            "{env}tests:\n- name: a\n  http: {{url: 'http://web/'}}\n  every: 10m\n  onFailure: rollback\n- name: b\n  http: {{url: 'http://web/'}}\n"
        ))
        .unwrap();
        assert_eq!(
            (c.tests[0].every(), c.tests[0].on_failure),
            (Some(Duration::from_secs(600)), OnFailure::Rollback)
        );
        assert_eq!(
            (c.tests[1].every(), c.tests[1].on_failure),
            (None, OnFailure::Report)
        );
        let cases = [
            ("http: {url: 'http://web/'}\n  every: soon", "tests[0].every"),
            ("http: {url: 'http://web/'}\n  every: 500ms", "tests[0].every"),
            (
                "http: {url: 'http://web/'}\n  onFailure: rollback",
                "tests[0].onFailure",
            ),
            (
                "http: {url: 'http://web/'}\n  every: 1m\n  onFailure: retry",
                "onFailure",
            ),
            (
                "job: tests/job.yaml\n  every: 1m",
                "a Job test runs once per release",
            ),
        ];
        for (test, said) in cases {
            let err = parse(&format!("{env}tests:\n- name: t\n  {test}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(said), "{test}: {err}");
        }
    }

    #[test]
    fn service_tests_take_a_port_number_or_name() {
        let c = parse(
            "environments: {main: {}, production: {}}\ntests:\n- name: a\n  http: {service: {name: web, port: 8080}}\n- name: b\n  http: {service: {name: web, port: http, path: /health?deep=1, scheme: https}}\n",
        )
        .unwrap();
        let a = c.tests[0].http.as_ref().unwrap().service.as_ref().unwrap();
        assert_eq!(
            (&a.port, a.path.as_str(), a.scheme.as_str()),
            (&ServicePort::Number(8080), "/", "http")
        );
        let b = c.tests[1].http.as_ref().unwrap().service.as_ref().unwrap();
        assert_eq!(b.port, ServicePort::Name("http".into()));
        assert_eq!(b.port.to_string(), "http");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            ("environments: {}\n", "environments"),
            ("environments: {Main: {}}\n", "environments.Main"),
            (
                "environments: {a: {branch: x}, b: {branch: x}}\npromotion: {enabled: false}\n",
                "environments",
            ),
            ("environments: {main: {}}\n", "promotion.to"),
            (
                "environments: {main: {}, production: {}}\npromotion: {schedule: every tuesday}\n",
                "promotion.schedule",
            ),
            (
                "environments: {main: {}, production: {}}\npromotion: {schedule: '0 10 * * TUE', timeZone: Moon/Base}\n",
                "promotion.timeZone",
            ),
            (
                "environments: {main: {}, production: {}}\npromotion: {schedule: '61 10 * * TUE'}\n",
                "promotion.schedule",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a}]\n",
                "tests[0]",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, job: x.yaml}, {name: a, job: y.yaml}]\n",
                "tests[1].name",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, http: {url: 'ftp://x'}}]\n",
                "tests[0].http.url",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, job: x.yaml, environments: [qa]}]\n",
                "tests[0].environments",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, http: {}}]\n",
                "tests[0].http",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, http: {url: 'http://x/', service: {name: web, port: 80}}}]\n",
                "tests[0].http",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, http: {service: {name: Web, port: 80}}}]\n",
                "tests[0].http.service.name",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, http: {service: {name: web, port: 'my port'}}}]\n",
                "tests[0].http.service.port",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, http: {service: {name: web, port: 80, path: health}}}]\n",
                "tests[0].http.service.path",
            ),
            (
                "environments: {main: {}, production: {}}\ntests: [{name: a, http: {service: {name: web, port: 80, scheme: ftp}}}]\n",
                "tests[0].http.service.scheme",
            ),
        ];
        for (text, field) in cases {
            match parse(text) {
                Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_duration_is_a_parse_error_naming_its_field_never_a_silent_default() {
        let env = "environments:\n  main: {}\n  production: {}\n";
        for (text, field) in [
            (format!("{env}health:\n  timeout: soon\n"), "health.timeout"),
            (format!("{env}testing:\n  timeout: 10\n"), "testing.timeout"),
            (
                format!("{env}tests:\n- name: t\n  http: {{url: http://x/, timeout: 5x}}\n"),
                "tests[0].http.timeout",
            ),
            (
                format!("{env}tests:\n- name: t\n  http: {{url: http://x/, interval: -1s}}\n"),
                "tests[0].http.interval",
            ),
            (
                format!("{env}tests:\n- name: t\n  every: weekly\n  http: {{url: http://x/}}\n"),
                "tests[0].every",
            ),
            (
                format!(
                    "{env}tests:\n- name: t\n  prometheus: {{address: http://p/, query: up, interval: 1d}}\n"
                ),
                "tests[0].prometheus.interval",
            ),
        ] {
            match parse(&text) {
                Err(ConfigError::Parse(message)) => {
                    assert!(message.starts_with(&format!("{field}: \"")), "{text}: {message}");
                    assert!(message.contains("like 90s"), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let c = parse(&format!(
            "{env}tests:\n- name: t\n  every: 1h30m\n  http: {{url: http://x/, interval: 250ms}}\n"
        ))
        .unwrap();
        assert_eq!(c.tests[0].every(), Some(Duration::from_secs(5400)));
        assert_eq!(
            c.tests[0].http.as_ref().unwrap().retry_interval(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn published_schema_is_fresh() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ship.schema.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        assert!(
            committed == generated,
            "docs/ship.schema.json is stale: cargo run -p ship-render --bin ship-schema > docs/ship.schema.json"
        );
    }
}
