//! Helpers of the benchmarks (`cargo bench`): settings from the environment, percentiles.

use std::time::Duration;

/// The environment variable `name` as a number, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`-th percentile (0.0 to 1.0) of `samples` (sorted in place); zero when empty.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize]
}

/// Milliseconds, for printing.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `count` ConfigMaps as repository files, 100 to a file (multi-document YAML, as real
/// repositories group them, and inside the renderer's file limit): `(file name, text)`. Each
/// carries `round` and a 200-byte payload; `namespace`, when given, is written into each.
pub fn configmap_files(count: usize, namespace: Option<&str>, round: usize) -> Vec<(String, String)> {
    let payload = "x".repeat(200);
    let namespace = namespace
        .map(|ns| format!(", namespace: {ns}"))
        .unwrap_or_default();
    (0..count)
        .step_by(100)
        .enumerate()
        .map(|(file, start)| {
            let text = (start..count.min(start + 100))
                .map(|i| {
                    format!(
                        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}{namespace}}}\n\
                         data: {{round: \"{round}\", payload: \"{payload}\"}}\n"
                    )
                })
                .collect();
            (format!("cms-{file}.yaml"), text)
        })
        .collect()
}

/// A figure of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...) in KiB; zero when unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) used so far by every process whose name (`/proc/<pid>/comm`) is
/// one of `names`, and by this process when `names` holds `"self"`; processes gone meanwhile
/// are not counted. Read before and after a run, the difference is what the run cost each
/// side: on 2 cores, a run whose processes burn 2 CPU-seconds per second is CPU-bound, and its
/// floor is their CPU time over the cores.
pub fn cpu_seconds(names: &[&str]) -> f64 {
    // USER_HZ: 100 on every Linux this runs on (sysconf needs unsafe code or a libc crate).
    const TICKS_PER_SECOND: f64 = 100.0;
    let ticks_of = |stat: &str| -> Option<u64> {
        // Fields after the command (which may hold spaces) start after its closing paren;
        // utime and stime are the 14th and 15th fields of the whole line.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let mut ticks = 0;
    if names.contains(&"self") {
        ticks += std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| ticks_of(&s))
            .unwrap_or(0);
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if names.contains(&comm.trim()) {
            ticks += std::fs::read_to_string(path.join("stat"))
                .ok()
                .and_then(|s| ticks_of(&s))
                .unwrap_or(0);
        }
    }
    ticks as f64 / TICKS_PER_SECOND
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_s_cpu_time_grows_with_work() {
        // Busy until the reading moves (a loaded machine may give this thread little CPU, so
        // no wall time is assumed); a reading that never moves fails after 20 s.
        let before = super::cpu_seconds(&["self"]);
        let (mut x, start) = (0u64, std::time::Instant::now());
        let mut spent = 0.0;
        while spent < 0.05 && start.elapsed() < std::time::Duration::from_secs(20) {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            spent = super::cpu_seconds(&["self"]) - before;
        }
        assert!(
            spent >= 0.05,
            "a busy loop of {:?} counted as {spent} s",
            start.elapsed()
        );
        assert_eq!(super::cpu_seconds(&["no-such-process-name"]), 0.0);
    }
}
