//! Child processes a run can always take down and reap.
//!
//! Each case child leads a process group of its own, so everything it may start is one
//! signal away. The death signal is set in the forked child *before* exec, and the parent is
//! checked right after: a run killed between fork and `prctl` is seen (the parent pid
//! changed) and the child stops, so no case outlives its run. The run itself is a child
//! subreaper: anything a case leaves orphaned becomes the run's child, still in the case's
//! group, and is reaped by group, which never touches the other cases running beside it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Makes `cmd` start its process as the leader of a new process group, killed (SIGKILL) when
/// the thread that spawns it dies, and refusing to start at all if this process is already
/// gone by then.
pub fn die_with_this_process(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (prctl, getppid) on plain integers; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody will ever send the
            // signal, and the child must not start.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), so a
/// grandchild whose case process died is still this process's to kill and reap.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes a flag and changes nothing else.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the child `pid` has ended, without reaping it: its pid (and so its process group
/// id) stays reserved until it is reaped, so signalling the group by that id is safe.
pub fn has_exited(pid: u32) -> io::Result<bool> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::StillAlive) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            // Already reaped by someone else: certainly ended.
            Err(Errno::ECHILD) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
}

/// SIGKILLs every process of the group `pgid`. A group with no process left is fine.
pub fn kill_group(pgid: u32) -> io::Result<()> {
    match killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reaps every child of this process in the group `pgid` (the ended group leader included),
/// waiting up to `bound` for killed ones to finish dying. Returns how many it reaped, and
/// whether none is left.
pub fn reap_group(pgid: u32, bound: std::time::Duration) -> (usize, bool) {
    let deadline = std::time::Instant::now() + bound;
    let mut n = 0;
    loop {
        match waitpid(Pid::from_raw(-(pgid as i32)), Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::ECHILD) => return (n, true),
            Ok(WaitStatus::StillAlive) => {
                if std::time::Instant::now() >= deadline {
                    return (n, false);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(_) => n += 1,
            Err(Errno::EINTR) => continue,
            Err(_) => return (n, false),
        }
    }
}
