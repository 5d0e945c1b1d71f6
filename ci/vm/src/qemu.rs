//! Booting one kernel in qemu and watching it: the console (first serial port) is read line
//! by line, for the boot markers and for the last lines a failed boot is reported with; the
//! report frames arrive on the second serial port, written to a file.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ValueEnum;

/// How many console lines a failed boot keeps.
pub const TAIL_LINES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// Try KVM with a short probe boot, fall back to TCG.
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            // `max` gives the guest every feature TCG emulates; multi-threaded TCG uses one
            // host thread per vCPU.
            Accel::Auto | Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }
}

/// One VM to boot.
pub struct Vm<'a> {
    pub label: &'a str,
    pub image: &'a Path,
    pub initrd: &'a Path,
    pub accel: Accel,
    pub smp: u32,
    pub memory_mb: u32,
    pub timeout: Duration,
    /// Extra kernel command-line words.
    pub append: &'a [&'a str],
    /// Where the console log and the report port's file go.
    pub work: &'a Path,
    /// Echo the console to stderr, prefixed with the label.
    pub echo: bool,
}

/// What happened.
#[derive(Debug)]
pub struct Boot {
    pub elapsed: Duration,
    /// The VM was stopped because its time was up.
    pub timed_out: bool,
    pub status: Option<ExitStatus>,
    pub console_tail: Vec<String>,
    /// When the init said it was up, and when it said the report was sent (host time since
    /// qemu started).
    pub init_up: Option<Duration>,
    pub sent: Option<Duration>,
    pub probe_ok: bool,
    /// How the VM ended.
    pub ended: Ending,
    /// The bytes of the report port.
    pub report_port: Vec<u8>,
    pub qemu_stderr: String,
}

/// How a VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// qemu exited by itself: the guest reset (turned into an exit by `-no-reboot`), powered
    /// off, or qemu failed.
    Exited,
    /// The report had been sent, but the guest did not end within [`AFTER_REPORT_GRACE`]
    /// (a kernel that halts where it should reset): the runner stopped it.
    StoppedAfterReport,
    /// The time limit ran out before any report.
    TimedOut,
}

impl Ending {
    pub fn describe(self) -> &'static str {
        match self {
            Ending::Exited => "the guest ended itself",
            Ending::StoppedAfterReport => "the guest did not end after its report; stopped",
            Ending::TimedOut => "stopped at the time limit",
        }
    }
}

/// How long a guest may take to end after it said its report was sent. The init resets the
/// VM right after the report; a kernel that ignores that (it halts instead) must not cost the
/// whole time limit.
pub const AFTER_REPORT_GRACE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Watch {
    tail: VecDeque<String>,
    init_up: Option<Duration>,
    sent: Option<Duration>,
    probe_ok: bool,
}

pub fn boot(vm: &Vm) -> Result<Boot> {
    std::fs::create_dir_all(vm.work)?;
    let port = vm.work.join("report-port.bin");
    let console_log = vm.work.join("console.log");
    let _ = std::fs::remove_file(&port);
    // earlycon: a kernel that dies before its serial driver registers still says why.
    let mut append = vec![
        "earlycon=uart8250,io,0x3f8,115200",
        "console=ttyS0",
        "panic=-1",
        "quiet",
        "loglevel=3",
        // Huge pages for the cases that register hugetlb-backed buffers: the guest is the
        // suite's own, so it reserves them at boot (16 MiB of its memory).
        "hugepages=8",
    ];
    append.extend_from_slice(vm.append);
    let mut cmd = Command::new(crate::setup::QEMU);
    cmd.args(vm.accel.args())
        .args(["-machine", "q35", "-smp", &vm.smp.to_string()])
        .args(["-m", &format!("{}M", vm.memory_mb)])
        .arg("-kernel")
        .arg(vm.image)
        .arg("-initrd")
        .arg(vm.initrd)
        .args(["-append", &append.join(" ")])
        .args([
            "-nic",
            "none",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .args(["-serial", "stdio"])
        .arg("-serial")
        .arg(format!("file:{}", port.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting qemu")?;
    let watch = Arc::new(Mutex::new(Watch::default()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let console = {
        let watch = watch.clone();
        let mut log = std::fs::File::create(&console_log)?;
        let (label, echo) = (vm.label.to_string(), vm.echo);
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                buf.clear();
                let _ = writeln!(log, "{line}");
                if echo {
                    eprintln!("[{label}] {line}");
                }
                let mut w = watch.lock().expect("console watch");
                let at = started.elapsed();
                if line.starts_with(vm_init::MARK_UP) {
                    w.init_up.get_or_insert(at);
                } else if line.starts_with(vm_init::MARK_SENT) {
                    w.sent.get_or_insert(at);
                } else if line.starts_with(vm_init::MARK_PROBE) {
                    w.probe_ok = true;
                }
                w.tail.push_back(line);
                if w.tail.len() > TAIL_LINES {
                    w.tail.pop_front();
                }
            }
        })
    };
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (status, ended) = loop {
        if let Some(st) = child.try_wait().context("waiting for qemu")? {
            break (Some(st), Ending::Exited);
        }
        let sent = watch.lock().expect("console watch").sent;
        if let Some(ending) = must_stop(sent, started.elapsed(), vm.timeout) {
            let _ = child.kill();
            let _ = child.wait();
            break (None, ending);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let _ = console.join();
    let qemu_stderr = errors.join().unwrap_or_default();
    let w = std::mem::take(&mut *watch.lock().expect("console watch"));
    Ok(Boot {
        elapsed,
        timed_out: ended == Ending::TimedOut,
        ended,
        status,
        console_tail: w.tail.into(),
        init_up: w.init_up,
        sent: w.sent,
        probe_ok: w.probe_ok,
        report_port: std::fs::read(&port).unwrap_or_default(),
        qemu_stderr,
    })
}

/// Whether a VM still running `elapsed` after its start must be stopped, and why: a few
/// seconds after its report was sent (the guest should have ended itself), or at the time
/// limit when no report came.
fn must_stop(sent: Option<Duration>, elapsed: Duration, limit: Duration) -> Option<Ending> {
    match sent {
        Some(at) if elapsed >= at + AFTER_REPORT_GRACE => Some(Ending::StoppedAfterReport),
        None if elapsed >= limit => Some(Ending::TimedOut),
        _ => None,
    }
}

/// Decides the accelerator by trying: KVM is used only if a probe boot under it reaches the
/// init (a `/dev/kvm` that exists can still fail, e.g. under nested software paging).
/// Returns the choice and why.
pub fn choose_accel(
    requested: Accel,
    probe: impl FnOnce(Accel) -> Result<Boot>,
) -> (Accel, String) {
    match requested {
        Accel::Kvm | Accel::Tcg => (requested, "as asked".into()),
        Accel::Auto => {
            let kvm_opens = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok();
            if !kvm_opens {
                return (Accel::Tcg, "/dev/kvm cannot be opened".into());
            }
            match probe(Accel::Kvm) {
                Ok(b) if b.probe_ok => (
                    Accel::Kvm,
                    format!(
                        "a KVM probe boot reached the init in {:.1} s",
                        b.elapsed.as_secs_f64()
                    ),
                ),
                Ok(b) => {
                    let why = b
                        .qemu_stderr
                        .lines()
                        .chain(b.console_tail.iter().map(String::as_str))
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("no output")
                        .to_string();
                    (
                        Accel::Tcg,
                        format!("a KVM probe boot did not reach the init ({why})"),
                    )
                }
                Err(e) => (
                    Accel::Tcg,
                    format!("a KVM probe boot could not start: {e:#}"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_that_does_not_end_after_its_report_is_stopped_within_seconds() {
        let s = Duration::from_secs;
        let limit = s(300);
        // Report at 20 s: still running at 21 s is fine, at 23 s it is stopped, long before
        // the 300 s limit.
        assert_eq!(must_stop(Some(s(20)), s(21), limit), None);
        assert_eq!(
            must_stop(Some(s(20)), s(20) + AFTER_REPORT_GRACE, limit),
            Some(Ending::StoppedAfterReport)
        );
        // No report: only the limit stops it.
        assert_eq!(must_stop(None, s(299), limit), None);
        assert_eq!(must_stop(None, s(300), limit), Some(Ending::TimedOut));
    }
}
