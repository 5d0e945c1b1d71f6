//! Cases that test the runner, not the kernel: a panic, a hang holding a topology, a hang
//! holding a changed global sysctl. They run only when a filter names them (`selftest`),
//! and the cleanup tests use them to prove a run leaves nothing behind.

use std::time::Duration;

use harness::topology::{Pair, PairConfig};

use crate::case::{Area, Case};
use crate::outcome::{skipped, Verdict};
use crate::probes::{MACHINE_WIDE_PRIVILEGES, NET_ADMIN, VETH};

/// A global sysctl that is harmless to nudge for a moment.
pub const GLOBAL_KNOB: &str = "net.core.netdev_max_backlog";

/// The argument of the `sleep` that selftest.orphan leaves behind (an unusual one, so the
/// cleanup test can find it).
pub const ORPHAN_SLEEP: &str = "86399.25";

pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "selftest.panic",
            Area::Selftest,
            "a case that panics after building a topology becomes `error`, and leaves nothing",
            vec![NET_ADMIN, VETH],
            |_| {
                let _pair = Pair::new(PairConfig::default())?;
                panic!("deliberate panic from selftest.panic");
            },
        ),
        Case::new(
            "selftest.hang",
            Area::Selftest,
            "a case that never returns is killed at the time limit and becomes `error: timeout`",
            vec![NET_ADMIN, VETH],
            |_| {
                let _pair = Pair::new(PairConfig::default())?;
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            },
        ),
        Case::new(
            "selftest.orphan",
            Area::Selftest,
            "a case that leaves a process of its own running when it ends: the run kills and \
             reaps it with the case's process group",
            vec![],
            |_| {
                std::process::Command::new("sleep")
                    .arg(ORPHAN_SLEEP)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()?;
                Ok(crate::outcome::Verdict::pass("left `sleep` running"))
            },
        ),
        Case::new(
            "selftest.global_sysctl",
            Area::Selftest,
            "a case that changes a global sysctl for a moment: journalled first (skipped when \
             the journal cannot be written), restored after",
            vec![NET_ADMIN, MACHINE_WIDE_PRIVILEGES],
            |_| {
                let now: u64 = harness::sysctl::read_outer(GLOBAL_KNOB)?.parse()?;
                let guard = harness::sysctl::set_global(GLOBAL_KNOB, &(now + 1).to_string())?;
                std::thread::sleep(Duration::from_millis(20));
                drop(guard);
                Ok(crate::outcome::Verdict::pass(format!(
                    "{GLOBAL_KNOB} changed and restored"
                )))
            },
        ),
        Case::new(
            "selftest.hang_global_sysctl",
            Area::Selftest,
            "a case killed while a global sysctl is changed: the run restores the sysctl",
            vec![NET_ADMIN, MACHINE_WIDE_PRIVILEGES],
            |_| {
                let now: u64 = harness::sysctl::read_outer(GLOBAL_KNOB)?.parse()?;
                let _guard = harness::sysctl::set_global(GLOBAL_KNOB, &(now + 1).to_string())?;
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            },
        )
        .serial("changes a global sysctl (net.core.netdev_max_backlog)"),
        Case::new(
            HEALTH_SPLAT_CASE,
            Area::Selftest,
            "a passing case during which a splat-looking line reaches /dev/kmsg becomes `fail` with the splat",
            vec![],
            |_| {
                write_fake_splat()?;
                Ok(Verdict::pass("the case itself found nothing wrong"))
            },
        ),

    ]
}

/// The hidden case that proves the kernel health watch can fail a passing case.
pub const HEALTH_SPLAT_CASE: &str = "selftest.health.kmsg_splat";

/// Writes a line that looks like a kernel WARNING to /dev/kmsg, carrying this case's token so
/// that it fails this case only (see `crate::health`). Without write access the case is
/// `skipped`: the proof needs root.
fn write_fake_splat() -> anyhow::Result<()> {
    use std::io::Write;
    let run_pid = nix::unistd::getppid().as_raw() as u32;
    let line = format!(
        "<4>WARNING: CPU: 0 PID: {} at zccheck selftest: a splat-looking line written on purpose {}\n",
        std::process::id(),
        crate::health::case_token(run_pid, HEALTH_SPLAT_CASE)
    );
    let mut kmsg = match std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(f) => f,
        Err(e) => return Err(skipped(format!("cannot write /dev/kmsg: {e}"))),
    };
    kmsg.write_all(line.as_bytes())
        .map_err(|e| skipped(format!("cannot write /dev/kmsg: {e}")))?;
    Ok(())
}
