//! Which privileges this process has, and the rootless mode.
//!
//! Building namespaces and veth pairs needs CAP_NET_ADMIN. As root, zccheck runs natively.
//! Without it, where the kernel lets unprivileged users create user namespaces, zccheck
//! enters a user namespace of its own (uid 0 inside, mapped to the caller) and builds its
//! networks there: everything works except what needs a capability in the initial user
//! namespace (global sysctls, CAP_IPC_LOCK, loading modules), which cases then report as
//! skipped with that reason.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

const CAP_NET_ADMIN: u32 = 12;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Running with real privileges in the initial user namespace.
    Native,
    /// Running inside a user namespace zccheck created for itself.
    Rootless,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Privileges {
    pub mode: Mode,
    pub uid: u32,
    pub in_initial_user_ns: bool,
    pub cap_net_admin: bool,
    pub cap_ipc_lock: bool,
    pub cap_sys_admin: bool,
    pub cap_sys_resource: bool,
}

impl Privileges {
    /// Reads this process's privileges. Outside the initial user namespace the mode is
    /// `Rootless`: capabilities then count only inside namespaces we own.
    pub fn detect() -> Result<Self> {
        let caps = effective_caps()?;
        let has = |bit: u32| caps & (1u64 << bit) != 0;
        let in_initial = in_initial_user_ns();
        Ok(Privileges {
            mode: if in_initial {
                Mode::Native
            } else {
                Mode::Rootless
            },
            uid: nix::unistd::getuid().as_raw(),
            in_initial_user_ns: in_initial,
            cap_net_admin: has(CAP_NET_ADMIN),
            cap_ipc_lock: has(CAP_IPC_LOCK),
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_sys_resource: has(CAP_SYS_RESOURCE),
        })
    }

    /// Capabilities that count for the whole machine (not only inside our user namespace).
    pub fn machine_wide(&self) -> bool {
        self.in_initial_user_ns
    }
}

fn effective_caps() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff line in /proc/self/status")?
        .trim();
    u64::from_str_radix(hex, 16).with_context(|| format!("parsing CapEff {hex:?}"))
}

/// The initial user namespace maps every id to itself.
fn in_initial_user_ns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false)
}

/// Whether unprivileged user namespaces look allowed here (a best-effort reading of the
/// knobs that distributions use to forbid them).
pub fn userns_allowed() -> Result<(), String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("kernel.unprivileged_userns_clone is 0".into());
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user.max_user_namespaces is 0".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Err("kernel.apparmor_restrict_unprivileged_userns is 1".into());
    }
    Ok(())
}

/// Moves this process into a new user namespace with uid/gid 0 mapped to the caller. Must be
/// called while the process is still single-threaded (the kernel refuses otherwise).
pub fn enter_rootless() -> Result<()> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    if let Err(why) = userns_allowed() {
        bail!("unprivileged user namespaces are disabled here ({why})");
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
        .context("unshare(CLONE_NEWUSER) failed")?;
    std::fs::write("/proc/self/setgroups", "deny").context("writing /proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
        .context("writing /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
        .context("writing /proc/self/gid_map")?;
    Ok(())
}
