//! Prometheus analysis tests on the real node: a real Prometheus (Debian's) scrapes the app's
//! pods, found through the API server; a release whose app raises
//! its error counter fails its PromQL test and rolls back, and a good one passes it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use ship_api::{Phase, ShipRelease, TestVerdict};
use ship_testkit::cluster::eventually;
use ship_testkit::prometheus::Prometheus;
use ship_testkit::stack::{Stack, release_name};

const SETTLE: Duration = Duration::from_secs(90);
const WEEKLY: &str = "{schedule: '0 10 * * TUE', timeZone: UTC}";

/// The app: busybox's httpd serving `/health` and `/metrics`, where `demo_errors_total` grows
/// by `errors_per_second` every second, as an app failing its users' requests would count.
fn app(errors_per_second: u32) -> String {
    let script = "busybox mkdir -p /tmp/www; echo ok > /tmp/www/health; \
                  (n=0; while true; do echo \"demo_errors_total $n\" > /tmp/www/m && \
                  busybox mv /tmp/www/m /tmp/www/metrics; n=$((n + ERRORS)); sleep 1; done) & \
                  trap 'exit 0' TERM; httpd -f -p 8080 -h /tmp/www & wait";
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: counter}}\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: counter}}}}\n  template:\n    metadata:\n      labels: {{app: counter}}\n    \
         spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: app\n        \
         image: ship.dev/demo-app:1\n        imagePullPolicy: Never\n        command: [sh, -c, {script:?}]\n        \
         env: [{{name: ERRORS, value: '{errors_per_second}'}}]\n        ports: [{{name: http, containerPort: 8080}}]\n        \
         readinessProbe: {{httpGet: {{path: /health, port: 8080}}, periodSeconds: 1}}\n"
    )
}

/// ship.yaml: the stack's environments and `home` test, and an error-rate analysis on main.
fn ship_yaml(stack: &Stack, prometheus: &Prometheus, app_url: &str) -> String {
    format!(
        "environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {ns}-prod}}\n\
         health: {{timeout: 60s}}\npromotion: {WEEKLY}\ntesting: {{timeout: 60s}}\n\
         tests:\n- name: home\n  http: {{url: '{app_url}', expect: {{bodyContains: healthy}}}}\n\
         - name: error-rate\n  environments: [main]\n  prometheus:\n    \
         address: 'http://{addr}'\n    \
         query: 'sum(rate(demo_errors_total{{namespace=\"{{namespace}}\"}}[5s])) or vector(0)'\n    \
         max: 0.5\n    count: 15\n    interval: 1s\n",
        ns = stack.ns,
        addr = prometheus.addr,
    )
}

fn test_result<'a>(release: &'a ShipRelease, name: &str) -> &'a ship_api::TestResult {
    let status = release.status.as_ref().expect("status");
    status
        .tests
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no result for {name}: {:?}", status.tests))
}

#[tokio::test]
#[ignore = "needs the local control plane with its node, and prometheus: tests/run.sh"]
async fn a_release_that_raises_errors_fails_its_promql_test_and_rolls_back() {
    let mut stack = Stack::new("analysis", WEEKLY).await.unwrap();
    let prometheus = Prometheus::start_scraping_pods(stack.cluster.client(), &stack.ns, &[]).unwrap();
    let app_url = stack.app_health_url();
    stack
        .remote
        .commit_files(
            &[
                ("ship.yaml", &ship_yaml(&stack, &prometheus, &app_url)),
                ("deploy/main/counter.yaml", &app(0)),
            ],
            "count errors",
        )
        .unwrap();
    let good = stack.deploy_first(&[]).await.unwrap();
    let release = stack
        .settled(&release_name("main", &good), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let passed = test_result(&release, "error-rate");
    assert_eq!(passed.verdict, TestVerdict::Passed, "{passed:?}");
    assert!(
        passed.message.contains("15 of 15 measurements passed"),
        "{passed:?}"
    );
    assert_eq!(
        passed.log.matches(" pass: ").count(),
        15,
        "one log line per measurement: {}",
        passed.log
    );
    // Prometheus scrapes the real pod (so the passing zeros were measured, not defaulted).
    eventually("Prometheus scrapes the app's pod", SETTLE, || async {
        let found = prometheus
            .query(&format!("demo_errors_total{{namespace=\"{}\"}}", stack.ns))
            .await?;
        Ok((!found.is_empty()).then_some(()))
    })
    .await
    .unwrap();

    let pushed = Instant::now();
    let bad = stack
        .push_main(
            &[("deploy/main/counter.yaml", &app(5))],
            "count five errors a second",
        )
        .unwrap();
    let rolled_back = stack
        .settled(&release_name("main", &bad), Phase::RolledBack, SETTLE)
        .await
        .unwrap();
    let took = pushed.elapsed();
    let failed = test_result(&rolled_back, "error-rate");
    assert_eq!(failed.verdict, TestVerdict::Failed, "{failed:?}");
    assert!(failed.message.contains("is not <= 0.5"), "{failed:?}");
    assert!(
        failed.log.contains(" FAIL: "),
        "the failing measurement is in the log: {}",
        failed.log
    );
    // It failed at the first failing measurement, without taking the other ones.
    let taken = failed.log.matches(" pass: ").count() + failed.log.matches(" FAIL: ").count();
    assert!(taken < 15, "stopped at the failure: {}", failed.log);
    // The real Prometheus holds the bad pod's errors: one pod's counter rose between two of its
    // samples (what Ship's rate needed to fail). Read from the raw samples, not from the rate
    // evaluated again at whole seconds: on a loaded machine two scrapes can be 4 s or more apart,
    // and a 5 s window then holds both for less than a second, which whole-second steps can miss
    // (a CI run on 1.36.2 saw `max_over_time(sum(rate(..[5s]))[2m:1s])` return 0 after Ship had
    // measured the failing rate; sparse scrapes are the likely cause, not yet reproduced, so the
    // failure message carries the raw samples).
    let selector = format!("demo_errors_total{{namespace=\"{}\"}}", stack.ns);
    let risen = prometheus
        .query(&format!(
            "max_over_time({selector}[2m]) - min_over_time({selector}[2m]) > 0"
        ))
        .await
        .unwrap();
    let samples = prometheus.query(&format!("{selector}[2m]")).await.unwrap();
    assert!(
        !risen.is_empty(),
        "Prometheus recorded a rising error counter; its samples: {samples:?}"
    );
    // The rollback put the counting-zero app back.
    let deployments: Api<Deployment> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let counter = deployments.get("counter").await.unwrap();
    let env = serde_json::to_string(&counter.spec.unwrap().template.spec.unwrap().containers[0].env).unwrap();
    assert!(
        env.contains(r#""value":"0""#),
        "rolled back to the good app: {env}"
    );
    eprintln!(
        "push to RolledBack: {took:?}; {taken} measurements; {}",
        failed.message
    );

    // A query Prometheus cannot parse refuses the commit before anything is applied.
    let broken = ship_yaml(&stack, &prometheus, &app_url).replace("[5s])) or", "[5s]) or");
    let unparsable = stack
        .push_main(
            &[("ship.yaml", &broken), ("deploy/main/counter.yaml", &app(1))],
            "a query with a parenthesis missing",
        )
        .unwrap();
    let refused = stack
        .settled(&release_name("main", &unparsable), Phase::Failed, SETTLE)
        .await
        .unwrap();
    let status = refused.status.clone().unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "InvalidQuery", "{status:?}");
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("test error-rate: Prometheus refused the query")
            && message.contains("nothing was applied"),
        "{message}"
    );
    let counter = deployments.get("counter").await.unwrap();
    let env = serde_json::to_string(&counter.spec.unwrap().template.spec.unwrap().containers[0].env).unwrap();
    assert!(env.contains(r#""value":"0""#), "nothing was applied: {env}");
}
