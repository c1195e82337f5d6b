//! Test support for Ship, never shipped in `shipd`:
//! - [`cluster`]: a handle on the real local control plane started by `tests/cluster/up.sh`;
//! - [`app`]: a real HTTP server standing for the deployed application;
//! - [`apis`]: which Kubernetes versions serve which API group-versions;
//! - [`ports`]: ports for child processes, reserved across test processes;
//! - [`seeded`]: a seeded generator for randomized tests that replay;
//! - [`quiet`]: "nothing happens", observed as every watch event of a bounded window;
//! - [`servers`]: git over HTTPS (lighttpd) and SSH (sshd), as users serve it;
//!
//! Pods run on the test bed's real node (`tests/cluster/node.sh`); no kubelet stand-in remains.
// Test support reads the wall clock: it stands outside the engine it observes.
#![allow(clippy::disallowed_methods)]

pub mod apis;
pub mod app;
pub mod bench;
pub mod bisect;
pub mod browser;
pub mod cluster;
pub mod git;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod quiet;
pub mod receiver;
pub mod remote;
pub mod seeded;
pub mod servers;
pub mod stack;
