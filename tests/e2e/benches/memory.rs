//! shipd's memory: resident set idle, and after a release of 5,000 objects (`MEMORY_OBJECTS`),
//! through a running shipd built for release (`bench/release.sh` runs it). The reference,
//! measured in the same run, is kubectl's peak resident set applying the same objects
//! (`/usr/bin/time`), and shipd's own idle figure.
//!
//! Goals (#16, #32): under 30 MiB idle, under 80 MiB after 5,000 objects.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::time::Duration;

use ship_api::Phase;
use ship_testkit::bench::{configmap_files, proc_status_kib};
use ship_testkit::stack::{Stack, release_name};

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// kubectl's peak resident set (KiB) applying the files in `dir` server-side.
fn kubectl_peak_kib(stack: &Stack, dir: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("/usr/bin/time")
        .args([
            "-f",
            "%M",
            "kubectl",
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
        ])
        .arg(dir)
        .env("KUBECONFIG", stack.cluster.kubeconfig())
        .output()
        .ok()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut stack = Stack::new("bench-memory", "{enabled: false}")
            .await
            .expect("KUBECONFIG: run bench/release.sh");
        stack.deploy_first(&["--promotion-interval", "1h"]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let pid = stack.shipd.as_ref().unwrap().pid();
        let idle = proc_status_kib(pid, "VmRSS");
        let idle_anon = proc_status_kib(pid, "RssAnon");

        // Flux's mean-time-to-production scenario (flux-benchmark): a push of 100, 500 and
        // 1,000 objects, timed from the push to the release Succeeded, with shipd's peak
        // resident set after each (sizes ascending, so each peak is that size's).
        println!("mean time to production (push -> Succeeded), release build:");
        for (round, count) in [100usize, 500, 1_000].into_iter().enumerate() {
            let files = configmap_files(count - 1, None, round + 1);
            let paths: Vec<(String, &str)> = files
                .iter()
                .map(|(name, text)| (format!("deploy/main/{name}"), text.as_str()))
                .collect();
            let borrowed: Vec<(&str, &str)> = paths.iter().map(|(p, t)| (p.as_str(), *t)).collect();
            let pushed = std::time::Instant::now();
            let commit = stack.push_main(&borrowed, &format!("mttp {count}")).unwrap();
            stack
                .settled(&release_name("main", &commit), Phase::Succeeded, Duration::from_secs(600))
                .await
                .unwrap();
            let took = pushed.elapsed();
            println!(
                "  {count:>5} objects: {:>6.2} s, peak {:>5.1} MiB  (Flux v2.6 on its machine: 28 s / 2 min 2 s / 4 min 16 s; goal at 1,000: under 30 s)",
                took.as_secs_f64(),
                mib(proc_status_kib(pid, "VmHWM"))
            );
        }

        let objects: usize = std::env::var("MEMORY_OBJECTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5_000);
        // ConfigMaps beside the sample app's one.
        let files = configmap_files(objects - 1, None, 0);
        let paths: Vec<(String, &str)> = files
            .iter()
            .map(|(name, text)| (format!("deploy/main/{name}"), text.as_str()))
            .collect();
        let borrowed: Vec<(&str, &str)> = paths.iter().map(|(p, t)| (p.as_str(), *t)).collect();
        let commit = stack.push_main(&borrowed, "many objects").unwrap();
        let release = stack
            .settled(
                &release_name("main", &commit),
                Phase::Succeeded,
                Duration::from_secs(600),
            )
            .await
            .unwrap();
        assert_eq!(release.status.unwrap().inventory.len(), objects);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = proc_status_kib(pid, "VmRSS");
        let peak = proc_status_kib(pid, "VmHWM");
        // The resident set is code and libraries mapped from files (the same at any size)
        // plus anonymous memory (the heap, and what the allocator keeps of freed memory):
        // apart, and again once the allocator has had time to give freed pages back.
        let (anon, file) = (proc_status_kib(pid, "RssAnon"), proc_status_kib(pid, "RssFile"));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let settled = proc_status_kib(pid, "VmRSS");
        let settled_anon = proc_status_kib(pid, "RssAnon");

        let dir = tempfile::tempdir().unwrap();
        let reference_ns = stack.cluster.namespace("bench-memory-kubectl").await.unwrap();
        for (name, text) in configmap_files(objects, Some(&reference_ns), 0) {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let kubectl = kubectl_peak_kib(&stack, dir.path());

        println!("shipd resident memory (release build):");
        println!(
            "  idle:                          {:>7.1} MiB  (goal: under 30; anonymous {:.1} MiB)",
            mib(idle),
            mib(idle_anon)
        );
        println!(
            "  after a {objects}-object release: {:>7.1} MiB  (goal: under 80 at 5000)",
            mib(after)
        );
        println!(
            "    of which anonymous {:.1} MiB, mapped from files (code, libraries) {:.1} MiB",
            mib(anon),
            mib(file)
        );
        println!(
            "  35 s after it:                 {:>7.1} MiB  (anonymous {:.1} MiB)",
            mib(settled),
            mib(settled_anon)
        );
        println!("  peak during it (VmHWM):        {:>7.1} MiB", mib(peak));
        println!(
            "  ratio after/idle:              {:>7.2}",
            after as f64 / idle.max(1) as f64
        );
        match kubectl {
            Some(k) => {
                println!("  kubectl apply of the same, peak: {:>5.1} MiB", mib(k));
                println!(
                    "  ratio shipd peak/kubectl peak: {:>7.2}",
                    peak as f64 / k.max(1) as f64
                );
            }
            None => println!("  (no /usr/bin/time: kubectl's reference not measured)"),
        }
        let _ = stack
            .cluster
            .kubectl(&["delete", "namespace", &reference_ns, "--wait=false"]);
    });
}
