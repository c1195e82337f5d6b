//! shipd follows a real repository served by a real git daemon: a signed push webhook makes it
//! fetch at once, render and validate the new tip; a bad commit is reported with its reason;
//! the webhook secret never reaches the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use sha2::Sha256;
use ship_testkit::cluster::{TestCluster, eventually};
use ship_testkit::git::{GitDaemon, Remote};
use ship_testkit::process::{Shipd, free_port};

const WEBHOOK_TOKEN: &str = "e2e-webhook-token-9f1c";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_TOKEN.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn webhook_push_is_fetched_rendered_and_validated() {
    let cluster = TestCluster::connect().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("git-source").await.unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "ship-webhook" }, "stringData": { "token": WEBHOOK_TOKEN }
    }))
    .unwrap();
    Api::<Secret>::namespaced(cluster.client(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let remote = Remote::new().unwrap();
    remote
        .commit_file(
            "ship.yaml",
            &format!("environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {ns}-prod}}\n"),
            "ship.yaml",
        )
        .unwrap();
    remote
        .commit_file(
            "deploy/main/app.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
            "app",
        )
        .unwrap();
    remote.push("main", false).unwrap();
    let daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let webhook_port = free_port().unwrap();
    let shipd = Shipd::start(
        cluster.kubeconfig(),
        &[
            "--namespace",
            &ns,
            "--repo-url",
            &daemon.url("repo.git"),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--poll-interval",
            "1h",
            "--secret-namespace",
            &ns,
            "--webhook-secret",
            "ship-webhook",
            "--webhook-addr",
            &format!("127.0.0.1:{webhook_port}"),
        ],
    )
    .unwrap();
    shipd
        .wait_for_log(Duration::from_secs(30), |l| {
            l.contains("applying 1 objects of commit") && l.contains("\"environment\":\"main\"")
        })
        .await
        .unwrap();

    // A good push, announced by a GitHub-style webhook: fetched and rendered within a second.
    let good = remote
        .commit_file(
            "deploy/main/more.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: more}\n",
            "more",
        )
        .unwrap();
    remote.push("main", false).unwrap();
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{webhook_port}/hooks/push");
    // Fetches start at least a second apart (a webhook storm does bounded work), and the
    // startup fetch was moments ago: measured from a quiet source, a webhook fetches at once.
    // (Without this wait the measure included up to a second of that spacing, and failed
    // under load.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let response = client
        .post(&url)
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sign(&body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let line = shipd
        .wait_for_log(Duration::from_secs(1), |l| {
            l.contains("release created") && l.contains(&good)
        })
        .await
        .unwrap();
    eprintln!("webhook to release created: {} ms", started.elapsed().as_millis());
    assert!(line.contains("\"environment\":\"main\""), "{line}");
    // Rendered and validated: both objects of the new tip are in the release's plan.
    shipd
        .wait_for_log(Duration::from_secs(5), |l| {
            l.contains(&format!("applying 2 objects of commit {}", &good[..7]))
        })
        .await
        .unwrap();

    // A forged webhook is refused and fetches nothing.
    let forged = client
        .post(&url)
        .header("x-hub-signature-256", format!("sha256={}", "ab".repeat(32)))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);

    // A bad commit (a Secret in git) is reported with its reason; nothing else happens.
    let bad = remote
        .commit_file(
            "deploy/main/creds.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n",
            "oops",
        )
        .unwrap();
    remote.push("main", false).unwrap();
    // Announced in GitHub's default content type for a new webhook: a form whose `payload` field
    // holds the JSON, signed over the body as sent. A tampered one is refused first.
    let form = format!(
        "payload={}",
        form_urlencoded::byte_serialize(br#"{"ref":"refs/heads/main","after":"x"}"#).collect::<String>()
    );
    let tampered = form.replace("main", "production");
    let refused = client
        .post(&url)
        .header("x-github-event", "push")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-hub-signature-256", sign(form.as_bytes()))
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let accepted = client
        .post(&url)
        .header("x-github-event", "push")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-hub-signature-256", sign(form.as_bytes()))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        accepted.status().as_u16(),
        202,
        "{}",
        accepted.text().await.unwrap_or_default()
    );
    let line = shipd
        .wait_for_log(Duration::from_secs(5), |l| {
            l.contains("cannot be deployed, nothing was applied") && l.contains(&bad)
        })
        .await
        .unwrap();
    assert!(line.contains("\"reason\":\"SecretInGit\""), "{line}");
    let release = Api::<ship_api::ShipRelease>::namespaced(cluster.client(), &ns)
        .get(&format!("main-{}", &bad[..10]))
        .await
        .unwrap();
    let status = serde_json::to_string(&release.status).unwrap();
    assert!(
        status.contains("SecretInGit") && status.contains("\"Failed\""),
        "{status}"
    );
    for (what, text) in [("logs", shipd.logs()), ("status", status)] {
        assert!(
            !text.contains("hunter2"),
            "a secret value from git reached the {what}"
        );
    }

    eventually("logs flushed", Duration::from_secs(2), || async { Ok(Some(())) })
        .await
        .unwrap();
    assert!(
        !shipd.logs().contains(WEBHOOK_TOKEN),
        "the webhook secret reached the logs"
    );
}
