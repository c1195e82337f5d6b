//! The README's main command, end to end: `deploy/demo.sh` brings up its own control plane, git
//! repository and shipd, plays the four acts, and cleans up. Its output shows each act.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

use ship_testkit::cluster::repo_root;

#[test]
#[ignore = "needs the installed control plane: tests/run.sh"]
fn the_demo_plays_every_act_and_cleans_up() {
    let out = Command::new("bash")
        .arg(repo_root().join("deploy/demo.sh"))
        .env("CI", "true")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
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
    // Cleaned up: the demo's control plane is gone.
    let dir = text
        .lines()
        .find_map(|l| l.split("source ").nth(1).filter(|d| d.contains("local-k8s")))
        .map(|d| d.trim().trim_end_matches("/env").to_owned())
        .unwrap();
    assert!(
        !std::path::Path::new(&dir).join("etcd.pid").exists(),
        "{dir} still running"
    );
}
