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
