//! PID 1 of a zccheck test VM.
//!
//! Mounts the pseudo file systems, loads the kernel's own modules the suite needs, runs
//! `zccheck run` with `ZCCHECK_ENVIRONMENT=vm`, sends the report framed over the second serial
//! port and resets the VM (qemu's `-no-reboot` makes that its exit). Whatever goes wrong is sent as a failure frame instead, so the
//! host can tell "the suite could not run" from "the kernel never booted".

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::termios;
use vm_init::frame::{self, Kind};
use vm_init::{
    GuestConfig, CONFIG_PATH, MARK_PROBE, MARK_SENT, MARK_UP, PROBE_ARG, REPORT_PATH, REPORT_PORT,
    ZCCHECK_PATH,
};

fn main() {
    if let Err(e) = mount_pseudo_fs() {
        say(&format!("cannot mount the pseudo file systems: {e:#}"));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    say(&format!("{MARK_UP} at {:.2}s on Linux {release}", uptime()));
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|a| a == PROBE_ARG) {
        say(MARK_PROBE);
        end_guest();
    }
    let frame = match run_suite() {
        Ok(report) => frame::encode(Kind::Report, &report),
        Err(e) => {
            say(&format!("no report: {e:#}"));
            frame::encode(Kind::Failure, format!("{e:#}").as_bytes())
        }
    };
    let started = uptime();
    match send(&frame) {
        Ok(()) => say(&format!(
            "{MARK_SENT} ({} bytes in {:.2}s) at {:.2}s",
            frame.len(),
            uptime() - started,
            uptime()
        )),
        Err(e) => say(&format!("cannot send the report: {e:#}")),
    }
    end_guest();
}

fn mount_pseudo_fs() -> Result<()> {
    let none: Option<&str> = None;
    for (src, dir, fstype) in [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("tmpfs", "/tmp", "tmpfs"),
        ("tmpfs", "/run", "tmpfs"),
    ] {
        fs::create_dir_all(dir).with_context(|| format!("mkdir {dir}"))?;
        mount(Some(src), dir, Some(fstype), MsFlags::empty(), none)
            .with_context(|| format!("mount -t {fstype} {src} {dir}"))?;
    }
    Ok(())
}

/// Loads the modules, runs the suite, and returns the report's bytes.
fn run_suite() -> Result<Vec<u8>> {
    let text = fs::read_to_string(CONFIG_PATH).with_context(|| format!("reading {CONFIG_PATH}"))?;
    let config: GuestConfig =
        serde_json::from_str(&text).with_context(|| format!("parsing {CONFIG_PATH}"))?;
    for path in &config.modules {
        match load_module(path) {
            Ok(()) => say(&format!("loaded {path}")),
            // Not fatal: the cases that need the module report themselves as skipped.
            Err(e) => say(&format!("cannot load {path}: {e:#}")),
        }
    }
    say(&format!(
        "[{}] zccheck run {} at {:.2}s",
        config.label,
        config.args.join(" "),
        uptime()
    ));
    let status = Command::new(ZCCHECK_PATH)
        .arg("run")
        .arg("--json")
        .arg(REPORT_PATH)
        .args(&config.args)
        .env("ZCCHECK_ENVIRONMENT", "vm")
        .status()
        .with_context(|| format!("starting {ZCCHECK_PATH}"))?;
    let report = fs::read(REPORT_PATH).unwrap_or_default();
    if report.is_empty() {
        anyhow::bail!("zccheck ended ({status}) without writing a report");
    }
    Ok(report)
}

fn load_module(path: &str) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {path}"))?;
    let params = std::ffi::CString::default();
    match nix::kmod::finit_module(f.as_fd(), &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e).context("finit_module"),
    }
}

/// Writes the frame to the report port, made raw first so the tty changes no byte.
fn send(frame: &[u8]) -> Result<()> {
    let mut port = fs::OpenOptions::new()
        .write(true)
        .open(REPORT_PORT)
        .with_context(|| format!("opening {REPORT_PORT}"))?;
    let mut t = termios::tcgetattr(port.as_fd()).context("tcgetattr")?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(port.as_fd(), termios::SetArg::TCSANOW, &t).context("tcsetattr")?;
    port.write_all(frame).context("writing the frame")?;
    port.flush()?;
    termios::tcdrain(port.as_fd()).context("tcdrain")?;
    Ok(())
}

fn say(line: &str) {
    // The console is our stdout; a failed write has nowhere better to go.
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Ends the VM. A reset is what every x86 kernel can do (ACPI, the keyboard controller, a
/// triple fault), and qemu runs with `-no-reboot`, which turns the reset into its exit; a power
/// off needs ACPI, and a kernel without it would only halt. Should the kernel refuse both, the
/// host stops the VM a few seconds after the report (`AFTER_REPORT_GRACE`).
fn end_guest() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
