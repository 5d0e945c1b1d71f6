//! The contract between the VM runner on the host and PID 1 inside the VM: where things are
//! in the initramfs, what the init is told, the console markers the host watches for, and the
//! framing that carries the report back (see [`frame`]).

pub mod frame;

use serde::{Deserialize, Serialize};

/// The init's instructions, written into the initramfs by the runner.
pub const CONFIG_PATH: &str = "/zccheck-vm/config.json";
/// The static zccheck binary inside the initramfs.
pub const ZCCHECK_PATH: &str = "/bin/zccheck";
/// Where the guest writes the JSON report before sending it.
pub const REPORT_PATH: &str = "/tmp/report.json";
/// The second serial port: only report frames go there, so no kernel message can interleave
/// (the console is the first port).
pub const REPORT_PORT: &str = "/dev/ttyS1";

/// On the kernel command line, asks the init to say hello and power off at once: the runner
/// boots this way to find out whether an accelerator works.
pub const PROBE_ARG: &str = "zccheck.probe=1";

/// Console markers (each starts a line). The host times the boot by them.
pub const MARK_UP: &str = "zccheck-vm: init up";
pub const MARK_PROBE: &str = "zccheck-vm: probe ok";
pub const MARK_SENT: &str = "zccheck-vm: report sent";

/// What the init does after boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// Shown in console lines, so interleaved logs can be told apart.
    pub label: String,
    /// Module files to load, dependencies first.
    pub modules: Vec<String>,
    /// Arguments given to `zccheck run` after `--json REPORT_PATH`.
    pub args: Vec<String>,
}
