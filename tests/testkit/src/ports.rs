//! Ports for the processes a test starts (etcd, apiservers, git daemons, shipd's probe server).
//!
//! Asking the kernel for port 0 and handing the number to a child races twice: the number comes
//! from the ephemeral range, so any outgoing connection may take it before the child binds, and
//! another test process may be handed the same number. Both happened in CI (etcd: `bind: address
//! already in use`). So ports come from below the ephemeral range, where the kernel never assigns
//! on its own, and each is reserved by an exclusive `flock` on `/tmp/ship-ports/<port>.lock`,
//! held until this test process exits. `tests/cluster/local-k8s.sh` takes the same locks, so the
//! shell scripts and the test processes never pick the same port.

use std::fs::File;
use std::net::TcpListener;
use std::ops::Range;
use std::sync::Mutex;

/// Where the port locks live (shared with `tests/cluster/local-k8s.sh`).
pub const LOCK_DIR: &str = "/tmp/ship-ports";

/// Reservations this process holds; dropping a `File` would release its lock.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// The ports tests may use: from 20000 up to the kernel's ephemeral range, at most 32768.
pub fn test_range(ephemeral_range: &str) -> Range<u16> {
    let low = ephemeral_range
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u16>().ok())
        .unwrap_or(32768)
        .min(32768);
    20000..low.max(20000 + 1000)
}

/// A loopback port that is free now, outside the ephemeral range, and reserved for this process.
pub fn free_port() -> anyhow::Result<u16> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let range = test_range(&ephemeral);
    std::fs::create_dir_all(LOCK_DIR)?;
    let span = u32::from(range.end - range.start);
    let start = crate::cluster::rand_u32() % span;
    for offset in 0..span {
        let port = range.start + ((start + offset) % span) as u16;
        let lock = File::create(format!("{LOCK_DIR}/{port}.lock"))?;
        if lock.try_lock().is_err() {
            continue; // another test process (or a script's daemon) holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // in use by something that takes no lock
        }
        HELD.lock()
            .map_err(|_| anyhow::anyhow!("port reservations poisoned"))?
            .push(lock);
        return Ok(port);
    }
    anyhow::bail!("no free port in {range:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_stays_below_the_kernels_ephemeral_ports() {
        assert_eq!(test_range("32768\t60999\n"), 20000..32768);
        assert_eq!(test_range("25000 60999"), 20000..25000);
        // a kernel handing out ports from 1024 still leaves tests a range of their own
        assert_eq!(test_range("1024 65535"), 20000..21000);
        assert_eq!(test_range(""), 20000..32768);
    }

    #[test]
    fn two_reservations_never_share_a_port() {
        let ports: std::collections::HashSet<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        assert_eq!(ports.len(), 50);
        for port in &ports {
            let lock = File::create(format!("{LOCK_DIR}/{port}.lock")).unwrap();
            // held by this process: a second open file description cannot take it
            assert!(lock.try_lock().is_err(), "port {port} is not reserved");
        }
    }
}
