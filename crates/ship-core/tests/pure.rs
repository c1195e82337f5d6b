//! ship-core stays pure: no crate that talks to a cluster, a network, a repository or an async
//! runtime is among its dependencies, direct or not (`cargo tree`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[test]
fn no_io_crate_reaches_ship_core() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "ship-core",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.starts_with("ship-core "), "{tree}");
    let forbidden = [
        "kube ",
        "kube-runtime ",
        "kube-client ",
        "tokio ",
        "git2 ",
        "reqwest ",
        "hyper ",
    ];
    for line in tree.lines() {
        assert!(
            !forbidden.iter().any(|f| line.starts_with(f)),
            "ship-core must do no I/O, but depends on {line}"
        );
    }
}
