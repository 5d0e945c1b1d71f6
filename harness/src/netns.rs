//! Anonymous network namespaces held by a file descriptor.
//!
//! A namespace is created with `unshare(CLONE_NEWNET)` on a throw-away thread and kept alive
//! only by the `OwnedFd` of its `/proc/thread-self/ns/net`. Nothing is bind-mounted under
//! `/run/netns`, so a panic, a timeout or `kill -9` cannot leak one: the kernel frees the
//! namespace (and every veth inside it) when the last fd or socket referring to it closes.
//!
//! Work inside a namespace runs on a short-lived thread that `setns`-es into it; the calling
//! thread never changes namespace. Sockets keep the namespace they were created in, so a
//! closure may create sockets and hand them back.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use anyhow::{Context, Result};
use nix::sched::{setns, unshare, CloneFlags};

/// No thread could be started (RLIMIT_NPROC, a pids cgroup): the environment's limit.
#[derive(Debug)]
pub struct ThreadUnavailable(pub String);

impl std::fmt::Display for ThreadUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot start a thread ({}): the limit on processes and threads (RLIMIT_NPROC, \
             a pids cgroup) is too tight",
            self.0
        )
    }
}

impl std::error::Error for ThreadUnavailable {}

/// A network namespace, alive while this value (or a socket created inside it) lives.
#[derive(Debug, Clone)]
pub struct NetNs {
    fd: Arc<OwnedFd>,
    name: &'static str,
}

impl NetNs {
    /// Creates a fresh namespace with `lo` up. `name` only labels error messages.
    pub fn new(name: &'static str) -> Result<Self> {
        let fd = std::thread::scope(|s| {
            std::thread::Builder::new()
                .spawn_scoped(s, || -> Result<OwnedFd> {
                    unshare(CloneFlags::CLONE_NEWNET).context(
                        "unshare(CLONE_NEWNET) failed: creating a network namespace needs \
                     CAP_NET_ADMIN (run as root, or let zccheck use a user namespace)",
                    )?;
                    let f = std::fs::File::open("/proc/thread-self/ns/net")
                        .context("opening /proc/thread-self/ns/net")?;
                    Ok(OwnedFd::from(f))
                })
                .map_err(|e| ThreadUnavailable(format!("creating a network namespace: {e}")))?
                .join()
                .expect("namespace creation thread panicked")
        })?;
        let ns = NetNs {
            fd: Arc::new(fd),
            name,
        };
        crate::netlink::set_up(&ns, "lo")
            .with_context(|| format!("bringing lo up in namespace {name}"))?;
        Ok(ns)
    }

    /// The namespace of the calling thread (the one zccheck was started in).
    pub fn current() -> Result<Self> {
        let f = std::fs::File::open("/proc/thread-self/ns/net")
            .context("opening /proc/thread-self/ns/net")?;
        Ok(NetNs {
            fd: Arc::new(OwnedFd::from(f)),
            name: "current",
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Runs `f` on a fresh thread that has joined this namespace, and returns its result.
    /// A panic inside `f` is propagated to the caller; the caller's own namespace is never
    /// touched.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        let fd = self.fd.as_fd();
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .spawn_scoped(s, move || -> Result<T> {
                    setns(fd, CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("setns into namespace {}", self.name))?;
                    Ok(f())
                })
                .map_err(|e| ThreadUnavailable(format!("entering namespace {}: {e}", self.name)))?;
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}
