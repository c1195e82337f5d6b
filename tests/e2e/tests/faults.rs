//! Faults outside the controller: a storm of valid webhooks, and the git remote going away for
//! a while. Nothing is lost, the work stays bounded, and the last tip wins.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use sha2::Sha256;
use ship_api::{Phase, keys};
use ship_testkit::cluster::eventually;
use ship_testkit::process::free_port;
use ship_testkit::stack::{Stack, at_rest_in, configmap, managed_configmaps, phases, release_name};

const SETTLE: Duration = Duration::from_secs(90);
const TOKEN: &str = "storm-webhook-token";

fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(stack: &Stack) -> String {
    stack.shipd.as_ref().unwrap().probe("/metrics").await.unwrap().1
}

async fn web_commit(stack: &Stack) -> String {
    Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
        .get("web")
        .await
        .unwrap()
        .annotations()
        .get(keys::COMMIT)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_storm_of_1000_webhooks_does_bounded_work_and_the_last_tip_wins() {
    let mut stack = Stack::new("storm", "{enabled: false}").await.unwrap();
    let secret: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "hook"}, "stringData": {"token": TOKEN}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(stack.cluster.client(), &stack.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port().unwrap());
    // Only webhooks trigger fetches (the poll is an hour away).
    let first = stack
        .deploy_first(&[
            "--poll-interval",
            "1h",
            "--webhook-secret",
            "hook",
            "--webhook-addr",
            &addr,
        ])
        .await
        .unwrap();
    let fetches_before = metric(&scrape(&stack).await, "ship_git_fetch_duration_seconds_count");

    // 1,000 signed deliveries over 10 s, while 20 commits land on main.
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let mut mac = Hmac::<Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/hooks/push");
    let started = Instant::now();
    let mut last = first.clone();
    let mut accepted = 0;
    for i in 0..1000u32 {
        if i % 50 == 0 {
            last = stack
                .push_main(
                    &[("deploy/main/web.yaml", &configmap(&format!("healthy {i}")))],
                    &format!("c{i}"),
                )
                .unwrap();
        }
        let status = client
            .post(&url)
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", format!("storm-{i}"))
            .header("X-Hub-Signature-256", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        accepted += u32::from(status == 202);
        let due = Duration::from_millis(10 * u64::from(i + 1));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let storm = started.elapsed();
    assert_eq!(accepted, 1000);

    // The last tip wins: its release succeeds and the app runs it.
    stack
        .settled(&release_name("main", &last), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(web_commit(&stack).await, last);
    // Bounded work: at most one fetch starts per second; triggers in between coalesce.
    let fetches = metric(&scrape(&stack).await, "ship_git_fetch_duration_seconds_count") - fetches_before;
    let releases = stack
        .releases()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.environment == "main")
        .collect::<Vec<_>>();
    println!(
        "storm: 1000 webhooks in {} ms -> {fetches} fetches, {} main releases for 21 tips",
        storm.as_millis(),
        releases.len()
    );
    assert!(
        fetches <= 15.0,
        "{fetches} fetches for 1000 webhooks in {storm:?}"
    );
    assert!(releases.len() <= 21, "{} releases", releases.len());
    // Every release settled; none is left in flight.
    assert!(releases.iter().all(ship_api::ShipRelease::is_settled));
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn an_unreachable_git_remote_changes_nothing_and_recovery_catches_up() {
    // Promotion on (Monday: nothing due), for its SourceReady condition.
    let mut stack = Stack::new("git-down", "{schedule: '0 10 * * TUE'}")
        .await
        .unwrap();
    let first = stack
        .deploy_first(&["--test-clock", "2026-11-23T12:00:00Z"])
        .await
        .unwrap();
    source_ready(&stack, "True").await;
    // The remote goes away for a minute; a commit lands meanwhile (pushed to the repository
    // directly, as a forge would keep it).
    stack.daemon.stop();
    let during = stack
        .push_main(
            &[("deploy/main/web.yaml", &configmap("healthy v2"))],
            "v2 while Ship cannot fetch",
        )
        .unwrap();
    let down = eventually("the source reported down", SETTLE, || async {
        let text = scrape(&stack).await;
        Ok((metric(&text, "ship_git_source_up") == 0.0).then_some(text))
    })
    .await
    .unwrap();
    assert!(metric(&down, "ship_git_fetch_failures_total") >= 1.0);
    // A condition says so, with the reason.
    let promotion = source_ready(&stack, "False").await;
    let condition = promotion
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "SourceReady")
        .unwrap();
    assert_eq!(condition.reason, "FetchFailed", "{condition:?}");
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(60) {
        // Nothing changes in the cluster while the remote is away.
        assert_eq!(web_commit(&stack).await, first);
        assert!(
            stack
                .releases()
                .get_opt(&release_name("main", &during))
                .await
                .unwrap()
                .is_none()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!(stack.logs().contains("git fetch failed"));

    // Back: the next fetch (backoff is capped) sees the commit and deploys it.
    stack.daemon.restart().unwrap();
    stack
        .settled(&release_name("main", &during), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(web_commit(&stack).await, during);
    assert_eq!(metric(&scrape(&stack).await, "ship_git_source_up"), 1.0);
    source_ready(&stack, "True").await;
}

/// Waits until the ShipPromotion's SourceReady condition has status `want`.
async fn source_ready(stack: &Stack, want: &'static str) -> ship_api::ShipPromotion {
    stack
        .promotion_where("production", SETTLE, |p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "SourceReady"))
                .is_some_and(|c| c.status == want)
        })
        .await
        .unwrap()
}

fn configmaps(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            (
                format!("deploy/main/{n}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}}}\ndata: {{a: b}}\n"),
            )
        })
        .collect()
}

async fn settled_on(
    api: &Api<ship_api::ShipRelease>,
    name: &str,
    phase: Phase,
    logs: impl Fn() -> String,
) -> ship_api::ShipRelease {
    let found = eventually(&format!("{name} {phase}"), SETTLE, || async {
        // The API server may be away: an error is retried until the deadline.
        Ok(api.get_opt(name).await?.filter(|r| at_rest_in(r, phase)))
    })
    .await;
    found.unwrap_or_else(|e| panic!("{e:#}\n{}", logs()))
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn an_apiserver_restart_mid_apply_and_etcd_down_for_30s_lose_nothing() {
    use ship_testkit::cluster::TestCluster;
    use ship_testkit::git::{GitDaemon, Remote};
    use ship_testkit::process::Shipd;
    use ship_testkit::remote::RemoteCluster;

    // A control plane of its own, since this test breaks it.
    let own = RemoteCluster::start().unwrap();
    let cluster = TestCluster::connect_to(&own.kubeconfig).await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("break").await.unwrap();
    let remote = Remote::new().unwrap();
    let daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let ship_yaml = format!(
        "environments:\n  main: {{namespace: {ns}}}\n  production: {{namespace: {ns}-prod}}\npromotion: {{enabled: false}}\n"
    );
    let mut files = vec![("ship.yaml".to_owned(), ship_yaml)];
    files.extend(configmaps(&["a", "b", "c", "d", "e", "f"]));
    let files_ref: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let first = remote.commit_files(&files_ref, "six objects").unwrap();
    remote.push("main", false).unwrap();
    let data = tempfile::tempdir().unwrap();
    let url = daemon.url("repo.git");
    let data_dir = data.path().display().to_string();
    let base = [
        "--namespace",
        &ns,
        "--secret-namespace",
        &ns,
        "--repo-url",
        &url,
        "--data-dir",
        &data_dir,
        "--poll-interval",
        "1s",
    ];
    let mut args = base.to_vec();
    args.extend(["--test-pause-after", "MidApply:2s"]);
    let shipd = Shipd::start(&own.kubeconfig, &args).unwrap();
    shipd
        .wait_for_log(SETTLE, |l| l.contains("\"point\":\"MidApply\""))
        .await
        .unwrap();
    // The API server restarts while the apply is half done.
    let apiserver = own.stop("kube-apiserver").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    own.start_again("kube-apiserver", &apiserver).unwrap();
    let releases: Api<ship_api::ShipRelease> = Api::namespaced(cluster.client(), &ns);
    let release = settled_on(&releases, &release_name("main", &first), Phase::Succeeded, || {
        shipd.logs()
    })
    .await;
    let phases = phases(&release);
    assert_eq!(
        phases,
        [
            Phase::Pending,
            Phase::Applying,
            Phase::Progressing,
            Phase::Testing,
            Phase::Succeeded
        ]
    );
    assert_eq!(
        managed_configmaps(cluster.client(), &ns).await.unwrap(),
        ["a", "b", "c", "d", "e", "f"]
    );
    assert!(
        shipd.logs().contains("reconcile failed; retrying"),
        "the restart was felt and retried"
    );

    // etcd stops for 30 s just as the next commit lands: shipd keeps running, and catches up.
    let second = remote
        .commit_files(
            &[
                ("deploy/main/a.yaml", ""),
                ("deploy/main/g.yaml", &configmaps(&["g"])[0].1),
            ],
            "a out, g in",
        )
        .unwrap();
    remote.push("main", false).unwrap();
    let etcd = own.stop("etcd").unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (code, _) = shipd.probe("/healthz").await.unwrap();
    assert_eq!(code, 200, "shipd lives through etcd's absence");
    own.start_again("etcd", &etcd).unwrap();
    settled_on(
        &releases,
        &release_name("main", &second),
        Phase::Succeeded,
        || shipd.logs(),
    )
    .await;
    let left = eventually("a pruned", SETTLE, || async {
        let now = managed_configmaps(cluster.client(), &ns).await?;
        Ok((now == ["b", "c", "d", "e", "f", "g"]).then_some(now))
    })
    .await;
    assert!(left.is_ok(), "{left:?}\n{}", shipd.logs());
    drop(daemon);
}
