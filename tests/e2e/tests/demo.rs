//! The README's main command, end to end: `deploy/demo.sh` installs Ship with its chart and image
//! into the test bed's cluster (on its own, it brings up that cluster first), serves the shop's
//! repository, plays the four acts with real pods, and cleans up. Its output shows each act.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

use ship_testkit::cluster::repo_root;

#[test]
#[ignore = "needs the local control plane and node: tests/run.sh"]
fn the_demo_plays_every_act_and_cleans_up() {
    // One node per machine: the demo plays on the suite's cluster instead of starting its own.
    let dir = std::env::var("LOCAL_K8S_DIR").expect("LOCAL_K8S_DIR: run with tests/run.sh");
    let mut demo = Command::new("bash");
    demo.arg(repo_root().join("deploy/demo.sh"))
        .env("CI", "true")
        .env("SHIP_CLUSTER_DIR", &dir)
        .env_remove("KUBECONFIG");
    // cargo's and nextest's variables for this test process would change what build scripts
    // see, should the demo call cargo
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_TARGET_DIR" && key != "CARGO_HOME")
            || key.starts_with("NEXTEST")
        {
            demo.env_remove(key);
        }
    }
    let scratch = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ship-demo."))
            })
            .collect()
    };
    let scratch_before = scratch();
    let out = demo.output().unwrap();
    let left: Vec<_> = scratch()
        .into_iter()
        .filter(|p| !scratch_before.contains(p))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let acts = [
        "== Act 1: push to main",
        "== Act 2: push a breaking commit",
        "== Act 3: push the fix",
        "== Act 4: promote to production",
    ];
    let mut at = 0;
    for act in acts {
        let found = text[at..]
            .find(act)
            .unwrap_or_else(|| panic!("{act} missing:\n{text}"));
        at += found;
        // Each act ends with `kubectl get shipreleases`.
        assert!(
            text[at..].contains("$ kubectl get shipreleases -n ship"),
            "{text}"
        );
    }
    // The story's outcomes, as kubectl printed them.
    assert!(text.contains("RolledBack   0/1"), "{text}");
    assert!(text.contains("== home-page (Failed"), "{text}");
    assert!(text.contains("production is up to date with main"), "{text}");
    let last_table = &text[text.rfind("$ kubectl get shipreleases").unwrap()..];
    let last_table = last_table.split("\n\n").next().unwrap();
    // Five releases succeeded (main 3, production 2), one rolled back.
    assert_eq!(last_table.matches("Succeeded").count(), 5, "{last_table}");
    assert_eq!(last_table.matches("RolledBack").count(), 1, "{last_table}");
    // Ship ran as two pods of its chart, and the shop as real pods on the node.
    assert!(text.contains("$ kubectl get pods -n ship -o wide"), "{text}");
    let ship_pods = text
        .lines()
        .filter(|l| l.starts_with("ship-") && l.contains("Running") && l.contains("ship-node"))
        .count();
    assert!(ship_pods >= 2, "two shipd pods Running on the node:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("web-") && l.contains("1/1") && l.contains("198.18.0.")),
        "the shop's pods with pod IPs:\n{text}"
    );
    assert!(
        text.contains("webhook for refs/heads/main: HTTP 202"),
        "pushes reach the webhook Service:\n{text}"
    );
    // Cleaned up: what the demo made is gone, the cluster it borrowed is not.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.trim_end().ends_with("cleaned up"), "{text}");
    // Asked to go: absent, or Terminating (Kubernetes finishes that in its own time).
    let left = Command::new("kubectl")
        .args([
            "get",
            "namespace",
            "ship",
            "shop-main",
            "shop-production",
            "--ignore-not-found",
        ])
        .args([
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
        ])
        .env("KUBECONFIG", format!("{dir}/kubeconfig"))
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        left.split_whitespace().all(|ns| ns.ends_with("=Terminating")),
        "namespaces left behind: {left}"
    );
}
