//! Running a piece of work as another, unprivileged user, on one thread only.
//!
//! Locked-memory accounting for MSG_ZEROCOPY (`mm_account_pinned_pages`) is skipped for a
//! task with CAP_IPC_LOCK and is charged to a counter shared by every process of a uid. Root
//! has the capability, and root's counter is shared with everything else root runs on the
//! machine. Switching one short-lived thread to an otherwise unused uid solves both: a change
//! of uid away from 0 clears the thread's capabilities, and the new uid's counter starts at
//! zero and is touched by nobody else.
//!
//! The switch is made with the raw `setresuid` system call, which changes only the calling
//! thread's credentials; the C library's wrapper would change every thread of the process.

use std::io;

use anyhow::{Context, Result};

/// Switches the calling thread, and only it, to `uid` (real, effective and saved). Going from
/// uid 0 to another uid clears the thread's capabilities, so the thread cannot come back.
fn set_thread_uid(uid: u32) -> io::Result<()> {
    // SAFETY: setresuid takes three integers and changes only this thread's credentials.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setresuid,
            uid as libc::c_long,
            uid as libc::c_long,
            uid as libc::c_long,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The effective capability mask of the calling thread.
pub fn thread_effective_caps() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .context("reading /proc/thread-self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff line in /proc/thread-self/status")?
        .trim();
    u64::from_str_radix(hex, 16).with_context(|| format!("parsing CapEff {hex:?}"))
}

/// Runs `f` on a fresh thread that has switched to `uid` first (and so holds no
/// capabilities). The caller's thread keeps its credentials. Fails if the switch is refused
/// (in a user namespace, `uid` must be mapped) or if the thread kept any capability.
pub fn run_as_uid<T: Send>(uid: u32, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || -> Result<T> {
            set_thread_uid(uid).with_context(|| format!("setresuid({uid}) on one thread"))?;
            let caps = thread_effective_caps()?;
            anyhow::ensure!(
                caps == 0,
                "the thread running as uid {uid} still has capabilities {caps:#x}"
            );
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
