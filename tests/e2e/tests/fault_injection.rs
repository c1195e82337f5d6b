//! SIGKILL at every point of a release's life, then restart: the release reaches the same end
//! state, through the same phases, as an undisturbed run, and the cluster holds exactly the
//! objects that end state declares (nothing half-applied, nothing left to prune).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use ship_api::Phase;
use ship_testkit::stack::{Stack, configmap, managed_configmaps, phases, release_name};

const SETTLE: Duration = Duration::from_secs(60);

/// Where to kill, and whether the commit killed there is good (it succeeds) or bad (its tests
/// fail and it is rolled back).
const POINTS: [(&str, bool); 12] = [
    ("Pending", true),     // after create: accepted, nothing done
    ("Applying", true),    // announced, nothing applied yet
    ("MidApply", true),    // half the objects applied
    ("Progressing", true), // applied, waiting for health
    ("Testing", true),     // healthy, tests about to run
    ("MidTest", true),     // tests ran, results not written
    ("Succeeded", true),   // the last status write, before history collection
    ("Testing", false),    // a bad commit at test start
    ("Failed", false),     // tests failed, rollback not chosen yet
    ("RollingBack", false),
    ("MidRollback", false), // the good commit re-applied, health not awaited
    ("RolledBack", false),
];

fn extra(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n")
}

async fn managed(stack: &Stack) -> Vec<String> {
    managed_configmaps(stack.cluster.client(), &stack.ns)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_kill_anywhere_ends_like_an_undisturbed_run() {
    let mut stack = Stack::new("fault-matrix", "{enabled: false}").await.unwrap();
    let mut good = stack.deploy_first(&[]).await.unwrap();
    let mut good_objects = vec!["web".to_owned()];
    let mut good_body = "healthy main".to_owned();
    let mut survived = Vec::new();
    for (i, (point, is_good)) in POINTS.into_iter().enumerate() {
        stack
            .start_shipd(&["--test-pause-after", &format!("{point}:60s")])
            .unwrap();
        // Each commit replaces the extra object of the last one (so pruning is exercised).
        let name = format!("extra-{i}");
        let body = if is_good {
            format!("healthy {i}")
        } else {
            format!("broken {i}")
        };
        let mut files: Vec<(String, String)> = vec![
            ("deploy/main/web.yaml".into(), configmap(&body)),
            (format!("deploy/main/{name}.yaml"), extra(&name)),
        ];
        for old in good_objects.iter().filter(|o| o.starts_with("extra-")) {
            files.push((format!("deploy/main/{old}.yaml"), String::new()));
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let commit = stack.push_main(&files, &format!("{point} {i}")).unwrap();
        let shipd = stack.shipd.as_ref().unwrap();
        shipd
            .wait_for_log(SETTLE, |l| {
                l.contains("fault injection: pausing") && l.contains(&format!("\"point\":\"{point}\""))
            })
            .await
            .unwrap();
        let release_name = release_name("main", &commit);
        if point == "Failed" {
            // Failed, with the rollback still to come: kstatus must say the controller is not
            // done, or `kubectl wait --for=condition=Stalled` would return before the rollback.
            let paused = stack.releases().get(&release_name).await.unwrap();
            let status = paused.status.as_ref().unwrap();
            let condition = |type_: &str| {
                let found = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
                (found.status.as_str(), found.reason.as_str())
            };
            let context = || format!("shipd logs:\n{}\nrelease: {status:#?}", stack.logs());
            assert_eq!(paused.phase(), Some(Phase::Failed), "{}", context());
            assert_eq!(condition("Reconciling"), ("True", "TestsFailed"), "{}", context());
            assert_eq!(condition("Stalled"), ("False", "TestsFailed"), "{}", context());
            assert!(!paused.is_settled(), "{}", context());
        }
        stack.kill_shipd().unwrap();
        stack.start_shipd(&[]).unwrap();

        let (end, expected_phases, expected_objects, expected_body) = if is_good {
            let mut objects = vec!["web".to_owned(), name.clone()];
            objects.sort();
            (
                Phase::Succeeded,
                vec![
                    Phase::Pending,
                    Phase::Applying,
                    Phase::Progressing,
                    Phase::Testing,
                    Phase::Succeeded,
                ],
                objects,
                body.clone(),
            )
        } else {
            (
                Phase::RolledBack,
                vec![
                    Phase::Pending,
                    Phase::Applying,
                    Phase::Progressing,
                    Phase::Testing,
                    Phase::Failed,
                    Phase::RollingBack,
                    Phase::RolledBack,
                ],
                good_objects.clone(),
                good_body.clone(),
            )
        };
        let release = stack.settled(&release_name, end, SETTLE).await.unwrap();
        assert_eq!(phases(&release), expected_phases, "killed at {point}");
        let objects = eventually_objects(&stack, &expected_objects).await;
        assert_eq!(objects, expected_objects, "killed at {point}");
        let web = Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
            .get("web")
            .await
            .unwrap();
        assert_eq!(web.data.unwrap()["body"], expected_body, "killed at {point}");
        if is_good {
            good = commit;
            good_objects = expected_objects;
            good_body = body;
        } else {
            assert_eq!(
                release.status.unwrap().rolled_back_to,
                Some(release_name_of(&good)),
                "killed at {point}"
            );
            // The next commits build on the good tree again.
            stack.remote.git(&["revert", "--no-edit", "HEAD"]).unwrap();
        }
        survived.push(point);
    }
    println!("survived a SIGKILL at: {}", survived.join(", "));
    assert_eq!(survived.len(), 12);
}

fn release_name_of(commit: &str) -> String {
    release_name("main", commit)
}

/// Pruning follows the status write that ends a release: give it a moment.
async fn eventually_objects(stack: &Stack, expected: &[String]) -> Vec<String> {
    for _ in 0..50 {
        let now = managed(stack).await;
        if now == expected {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    managed(stack).await
}
