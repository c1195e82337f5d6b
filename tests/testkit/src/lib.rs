//! Test support for Ship, never shipped in `shipd`:
//! - [`cluster`]: a handle on the real local control plane started by `tests/cluster/up.sh`;
//! - [`app`]: a real HTTP server standing for the deployed application;
//! - [`kubelet`]: a kubelet stand-in that runs Pods "for real" as far as the API is concerned.

pub mod app;
pub mod bench;
pub mod cluster;
pub mod git;
pub mod kubelet;
pub mod process;
pub mod prometheus;
pub mod remote;
pub mod stack;
