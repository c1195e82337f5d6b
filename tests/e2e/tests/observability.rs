//! Observability against real parts: promtool checks and unit-tests the alert rules; a real
//! Prometheus scrapes a running shipd through a failing release and the rollback alert fires;
//! a live scrape passes `promtool check metrics`; every dashboard query is valid PromQL; and
//! the logs name each release's environment and commit while never printing a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use sha2::Sha256;
use ship_api::Phase;
use ship_testkit::cluster::{eventually, repo_root};
use ship_testkit::process::free_port;
use ship_testkit::prometheus::Prometheus;
use ship_testkit::receiver::{Receiver, Steady};
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);
const GIT_TOKEN: &str = "ghp-e2e-git-token-5d7a1c";
const WEBHOOK_TOKEN: &str = "e2e-webhook-token-0b3e";
const FORGE_TOKEN: &str = "ghp_e2eForgeTokenEchoed91d";
const CHAT_URL_SECRET: &str = "T0/B0/e2e-chat-url-secret-c4f";

fn rules_dir() -> PathBuf {
    repo_root().join("charts/ship/files")
}

fn promtool(args: &[&str]) -> std::process::Output {
    std::process::Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool runs (tests/run.sh installs Debian's prometheus package)")
}

#[test]
#[ignore = "needs promtool: tests/run.sh installs it"]
fn alert_rules_check_and_pass_their_unit_tests() {
    for args in [
        &["check", "rules", "ship.rules.yaml"][..],
        &[
            "test",
            "rules",
            "ship.rules.test.yaml",
            "ship.rules.days.test.yaml",
        ],
    ] {
        let args: Vec<&str> = args.to_vec();
        let out = promtool(&args);
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each alert has a unit test and a runbook section.
    let rules = std::fs::read_to_string(rules_dir().join("ship.rules.yaml")).unwrap();
    let tests = ["ship.rules.test.yaml", "ship.rules.days.test.yaml"]
        .map(|f| std::fs::read_to_string(rules_dir().join(f)).unwrap())
        .join("\n");
    let runbook = std::fs::read_to_string(repo_root().join("docs/runbook.md")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no promtool test"
        );
        assert!(
            runbook.contains(&format!("## {alert}")),
            "{alert} has no runbook section"
        );
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_TOKEN.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
#[ignore = "needs the local control plane and prometheus: tests/run.sh"]
async fn prometheus_sees_a_rollback_and_nothing_leaks_a_secret() {
    let mut stack = Stack::new("observe", "{enabled: false}").await.unwrap();
    stack
        .create_secret(
            "ship-git",
            serde_json::json!({"username": "ship", "token": GIT_TOKEN}),
        )
        .await
        .unwrap();
    stack
        .create_secret("ship-webhook", serde_json::json!({"token": WEBHOOK_TOKEN}))
        .await
        .unwrap();
    // Notifications with credentials: a forge whose error page echoes the request's headers
    // (the token among them) and a chat webhook whose URL is the credential.
    let receiver = Receiver::start().await.unwrap();
    receiver.script("/forge/", &[], Steady::Echo(401));
    stack.create_secret("ship-notify",
        serde_json::json!({"token": FORGE_TOKEN, "url": format!("{}/chat/{CHAT_URL_SECRET}", receiver.url())}),
    ).await.unwrap();
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_file = notify_dir.path().join("notifications.yaml");
    std::fs::write(
        &notify_file,
        format!(
            "commitStatuses:\n  - {{name: forge, forge: github, apiUrl: '{}/forge', repository: a/b, tokenSecret: {{name: ship-notify, key: token}}}}\n\
             webhooks:\n  - {{name: chat, format: slack, urlSecret: {{name: ship-notify, key: url}}}}\n",
            receiver.url()
        ),
    )
    .unwrap();
    let notify_file = notify_file.display().to_string();
    let webhook_port = free_port().unwrap();
    let webhook_addr = format!("127.0.0.1:{webhook_port}");
    let good = stack
        .deploy_first(&[
            "--git-secret",
            "ship-git",
            "--webhook-secret",
            "ship-webhook",
            "--webhook-addr",
            &webhook_addr,
            "--notifications",
            &notify_file,
        ])
        .await
        .unwrap();

    let shipd_addr = stack.shipd.as_ref().unwrap().probe_addr;
    let rules = rules_dir().join("ship.rules.yaml");
    let prometheus = Prometheus::start(shipd_addr, "ship", &[rules.as_path()]).unwrap();
    let rolled_back_expr =
        "max by (environment, release, commit) (ship_release_latest_info{phase=\"RolledBack\"}) == 1";
    eventually("Prometheus scrapes shipd", SETTLE, || async {
        Ok(prometheus
            .query("ship_deployed_commit_info")
            .await?
            .into_iter()
            .next())
    })
    .await
    .unwrap();
    assert!(
        prometheus.query(rolled_back_expr).await.unwrap().is_empty(),
        "nothing rolled back yet"
    );

    // A breaking commit, announced by a signed webhook: tests fail, the release rolls back.
    let bad = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("broken"))],
            "bad: breaks the page",
        )
        .unwrap();
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{webhook_addr}/hooks/push"))
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(&body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    // And a forged one, refused and counted.
    let forged = client
        .post(format!("http://{webhook_addr}/hooks/push"))
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", "sha256=00")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    stack
        .settled(&release_name("main", &bad), Phase::RolledBack, SETTLE)
        .await
        .unwrap();

    // The rollback alert's expression becomes true, naming environment and commit, and the
    // alert fires.
    let result = eventually("rollback alert expression true", SETTLE, || async {
        Ok(prometheus.query(rolled_back_expr).await?.into_iter().next())
    })
    .await
    .unwrap();
    assert_eq!(result["metric"]["environment"], "main");
    assert_eq!(result["metric"]["commit"], bad.as_str());
    let alert = eventually("ShipReleaseRolledBack firing", SETTLE, || async {
        Ok(prometheus
            .alerts()
            .await?
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "ShipReleaseRolledBack" && a["state"] == "firing"))
    })
    .await
    .unwrap();
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains(&bad),
        "{alert}"
    );
    // The other metrics of the story, as Prometheus stored them.
    let value = |r: &serde_json::Value| r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
    let rollbacks = prometheus
        .query("sum(ship_rollbacks_total{environment=\"main\",cause=\"TestsFailed\"})")
        .await
        .unwrap();
    assert_eq!(rollbacks.iter().map(value).sum::<f64>(), 1.0);
    // Delivery (DORA) figures: one deployment with its changes' lead times, one failed change.
    for (expr, want) in [
        ("sum(ship_deployments_total{environment=\"main\"})", 1.0),
        ("sum(ship_change_failures_total{environment=\"main\"})", 1.0),
        (
            "sum(ship_time_to_restore_seconds_count{environment=\"main\"})",
            0.0,
        ),
    ] {
        let got = eventually(expr, SETTLE, || async {
            let got: f64 = prometheus.query(expr).await?.iter().map(value).sum();
            Ok((got == want).then_some(got))
        })
        .await;
        assert!(
            got.is_ok(),
            "{expr}: want {want}, have {:?}",
            prometheus.query(expr).await
        );
    }
    let lead_times: f64 = prometheus
        .query("sum(ship_lead_time_seconds_count{environment=\"main\"})")
        .await
        .unwrap()
        .iter()
        .map(value)
        .sum();
    assert!(
        lead_times >= 1.0,
        "the first release's commits have lead times: {lead_times}"
    );
    let failed = prometheus
        .query("ship_test_last_passed{environment=\"main\",test=\"home\"}")
        .await
        .unwrap();
    assert_eq!(failed.iter().map(value).collect::<Vec<_>>(), [0.0]);
    let deployed = prometheus
        .query("ship_deployed_commit_info{environment=\"main\"}")
        .await
        .unwrap();
    assert_eq!(deployed.len(), 1, "one series per environment: {deployed:?}");
    assert_eq!(
        deployed[0]["metric"]["commit"],
        good.as_str(),
        "back on the good commit"
    );
    let forged = prometheus
        .query("ship_webhook_requests_total{result=\"bad_signature\"}")
        .await
        .unwrap();
    assert_eq!(forged.iter().map(value).sum::<f64>(), 1.0);

    // Every dashboard query is valid PromQL for this Prometheus.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rules_dir().join("grafana-dashboard.json")).unwrap())
            .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m");
            prometheus
                .query(&expr)
                .await
                .unwrap_or_else(|e| panic!("{}: {e:#}", panel["title"]));
        }
    }

    // A live scrape in the classic text format passes promtool's lint.
    let scrape = stack.shipd.as_ref().unwrap().probe("/metrics").await.unwrap().1;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    check.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Logs: JSON, every line about a release names its environment, commit and release.
    let logs = stack.logs();
    let mut about_releases = 0;
    for line in logs.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        let field = |name: &str| entry.get(name).or_else(|| entry["span"].get(name)).cloned();
        if field("release").is_some() {
            about_releases += 1;
            assert!(
                field("environment").is_some() && field("commit").is_some(),
                "{line}"
            );
        }
    }
    assert!(about_releases > 10, "{about_releases} release lines");

    // The notifications were sent with their credentials, and the forge echoed the token back
    // in its 401 (given up on, with the answer in the event and the status).
    let echoed = receiver
        .wait_for("the forge's echo", "/forge/", SETTLE, |r| !r.is_empty())
        .await
        .unwrap();
    assert_eq!(
        echoed[0].header("authorization"),
        Some(format!("Bearer {FORGE_TOKEN}").as_str())
    );
    receiver
        .wait_for("the chat message", "/chat/", SETTLE, |r| !r.is_empty())
        .await
        .unwrap();
    stack
        .event_where("NotificationFailed", SETTLE, |note| note.contains("HTTP 401"))
        .await
        .unwrap();
    let scrape = stack.shipd.as_ref().unwrap().probe("/metrics").await.unwrap().1;

    // No secret in the logs, the metrics, the events or the releases' status.
    let events = Api::<Event>::namespaced(stack.cluster.client(), &stack.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let statuses = stack.releases().list(&ListParams::default()).await.unwrap();
    let captures = [
        ("logs", logs),
        ("metrics", scrape),
        ("events", serde_json::to_string(&events.items).unwrap()),
        ("status", serde_json::to_string(&statuses.items).unwrap()),
    ];
    for (what, text) in &captures {
        for secret in [GIT_TOKEN, WEBHOOK_TOKEN, FORGE_TOKEN, CHAT_URL_SECRET] {
            assert!(!text.contains(secret), "{what} contains a secret");
        }
    }
    assert!(
        captures[0].1.contains("secret loaded"),
        "the run did use the secrets"
    );
    drop(prometheus);
}
