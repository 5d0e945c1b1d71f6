//! Requirements of cases, answered by probes of this kernel and this environment.
//!
//! A probe asks the kernel to do the thing (set the option, create the ring) and reads the
//! answer; it never looks at a version number, because distributions backport. Each answer
//! carries its detail ("setsockopt(SO_ZEROCOPY) on a UDP socket: EOPNOTSUPP"), which becomes
//! the reason of an `unsupported` or `skipped` outcome.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", content = "detail", rename_all = "lowercase")]
pub enum Answer {
    /// The feature is there.
    Present(String),
    /// The kernel lacks it: cases needing it are `unsupported`.
    Absent(String),
    /// The environment prevents it (privileges, a sysctl, seccomp, no hardware): cases
    /// needing it are `skipped`.
    Blocked(String),
}

impl Answer {
    pub fn detail(&self) -> &str {
        match self {
            Answer::Present(d) | Answer::Absent(d) | Answer::Blocked(d) => d,
        }
    }
}

/// A named probe. Cases list the requirements they need; the runner checks them first.
#[derive(Clone, Copy)]
pub struct Requirement {
    /// Stable name, shown in reports (`so_zerocopy.udp`).
    pub name: &'static str,
    pub probe: fn() -> Answer,
}

impl std::fmt::Debug for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Requirement {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Requirement {
    /// The answer, computed once per process.
    pub fn answer(&self) -> Answer {
        static CACHE: OnceLock<Mutex<HashMap<&'static str, Answer>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(a) = cache.lock().expect("probe cache").get(self.name) {
            return a.clone();
        }
        let a = (self.probe)();
        cache
            .lock()
            .expect("probe cache")
            .insert(self.name, a.clone());
        a
    }
}

/// The record of one probe in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub name: String,
    #[serde(flatten)]
    pub answer: Answer,
}

/// Describes an errno the way reports show it: `EOPNOTSUPP (95)`, and the kernel-internal
/// 524 as `ENOTSUPP (524)`.
pub fn errno_name(code: i32) -> String {
    let name = match code {
        0 => "0",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNRESET => "ECONNRESET",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EMFILE => "EMFILE",
        libc::ENODATA => "ENODATA",
        libc::ENOMSG => "ENOMSG",
        524 => "ENOTSUPP",
        _ => return format!("errno {code}"),
    };
    if code == 0 {
        return "0".into();
    }
    format!("{name} ({code})")
}

/// `errno_name` of an I/O error.
pub fn io_errno(e: &std::io::Error) -> String {
    e.raw_os_error()
        .map(errno_name)
        .unwrap_or_else(|| e.to_string())
}

/// Environment: building namespaces and veth pairs needs CAP_NET_ADMIN over them.
pub const NET_ADMIN: Requirement = Requirement {
    name: "env.net_admin",
    probe: || match harness::NetNs::new("probe") {
        Ok(_) => Answer::Present("a network namespace could be created".into()),
        Err(e) if e.is::<harness::netns::ThreadUnavailable>() => Answer::Blocked(e.to_string()),
        Err(e) => Answer::Blocked(format!(
            "cannot create a network namespace ({e:#}); run as root or with CAP_NET_ADMIN"
        )),
    },
};

/// Environment: capabilities in the initial user namespace (global sysctls, CAP_IPC_LOCK
/// semantics). Absent in rootless mode.
pub const MACHINE_WIDE_PRIVILEGES: Requirement = Requirement {
    name: "env.machine_wide_privileges",
    probe: || match harness::privileges::Privileges::detect() {
        Ok(p) if p.in_initial_user_ns && p.cap_net_admin => {
            Answer::Present("running with capabilities in the initial user namespace".into())
        }
        Ok(_) => Answer::Blocked(
            "needs root in the initial user namespace (not available in rootless mode)".into(),
        ),
        Err(e) => Answer::Blocked(format!("cannot read privileges: {e:#}")),
    },
};

/// Environment: veth pairs can be created (the module is built in or loadable).
pub const VETH: Requirement = Requirement {
    name: "env.veth",
    probe: || {
        let made = harness::NetNs::new("probe-a").and_then(|a| {
            let b = harness::NetNs::new("probe-b")?;
            harness::netlink::add_veth(&a, "probe-a", &b, "probe-b")
        });
        match made {
            Ok(()) => Answer::Present("a veth pair could be created".into()),
            Err(e) => Answer::Blocked(format!("cannot create a veth pair: {e:#}")),
        }
    },
};
