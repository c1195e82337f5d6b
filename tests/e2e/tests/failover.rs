//! Two shipd replicas with leader election on the real apiserver: only the Lease holder acts;
//! SIGKILL it in the middle of a release and the standby takes the Lease and finishes the
//! release. Prints the takeover time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use ship_api::Phase;
use ship_testkit::cluster::eventually;
use ship_testkit::stack::{Stack, phases, release_name};

const SETTLE: Duration = Duration::from_secs(60);

async fn holder(stack: &Stack) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(stack.cluster.client(), &stack.ns);
    leases
        .get_opt("ship-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn the_standby_takes_over_a_release_when_the_leader_dies() {
    let mut stack = Stack::new("failover", "{enabled: false}").await.unwrap();
    let election = [
        "--leader-elect",
        "--lease-duration",
        "3s",
        "--lease-renew-deadline",
        "2s",
        "--lease-retry-period",
        "500ms",
    ];
    // Replica a leads; it will stop for a minute right after persisting Progressing.
    let mut a_args = election.to_vec();
    a_args.extend(["--instance", "replica-a", "--test-pause-after", "Progressing:60s"]);
    stack.start_shipd(&a_args).unwrap();
    eventually("replica-a leads", SETTLE, || async {
        Ok(holder(&stack).await.filter(|h| h == "replica-a"))
    })
    .await
    .unwrap();
    let b_data = tempfile::tempdir().unwrap();
    let mut b_args = election.to_vec();
    b_args.extend(["--instance", "replica-b"]);
    let b = stack.spawn_shipd(b_data.path(), &b_args).unwrap();
    b.wait_for_log(SETTLE, |l| l.contains("standing by"))
        .await
        .unwrap();
    // The standby is ready (to take over) and says it does not lead.
    let (code, body) = b.probe("/readyz").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "standby: another replica leads\n"));
    assert!(b.probe("/metrics").await.unwrap().1.contains("ship_leader 0"));

    stack.remote.push("main", false).unwrap();
    let commit = stack.branch_tip("main").unwrap();
    let name = release_name("main", &commit);
    stack.settled(&name, Phase::Progressing, SETTLE).await.unwrap();
    assert!(!b.logs().contains("objects applied"), "the standby does nothing");

    // The leader dies mid-release.
    stack.kill_shipd().unwrap();
    let killed = Instant::now();
    eventually("replica-b takes the Lease", SETTLE, || async {
        Ok(holder(&stack).await.filter(|h| h == "replica-b"))
    })
    .await
    .unwrap();
    let takeover = killed.elapsed();
    println!(
        "takeover: the standby held the Lease {} ms after the leader was killed",
        takeover.as_millis()
    );
    // Bounded by the Lease duration (3 s) plus a retry period and some scheduling.
    assert!(takeover < Duration::from_secs(6), "{takeover:?}");

    let release = stack.settled(&name, Phase::Succeeded, SETTLE).await.unwrap();
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
    assert!(b.logs().contains("became the leader"));
    eventually("the new leader is ready", SETTLE, || async {
        Ok(Some(b.probe("/readyz").await?).filter(|(code, body)| *code == 200 && body == "ok\n"))
    })
    .await
    .unwrap();
    assert!(b.probe("/metrics").await.unwrap().1.contains("ship_leader 1"));
}
