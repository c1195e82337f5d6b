//! Bounds on what rendering reads and produces (files, bytes, objects, time).

use std::time::Duration;

/// Bounds on what rendering reads and produces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest manifest file.
    pub max_file_bytes: u64,
    /// Largest total of manifest files (and of kustomize's output).
    pub max_total_bytes: u64,
    /// Most manifest files.
    pub max_files: usize,
    /// Most objects (10,000: twice the largest environment the benchmarks measure, 5,000).
    pub max_objects: usize,
    /// Longest a renderer (`kustomize build`, `helm template`) may run.
    pub renderer_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_total_bytes: 16 << 20,
            max_files: 2_000,
            max_objects: 10_000,
            renderer_timeout: Duration::from_secs(60),
        }
    }
}
