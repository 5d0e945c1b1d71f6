//! Turning what a boot produced into a report file: the guest's own report with its
//! provenance added, or, when the kernel panicked, hung, never booted or sent a broken frame,
//! a report without cases that says so, with the console's last lines.

use std::collections::BTreeMap;
use std::time::Duration;

use harness::kernel::{parse_release, KernelInfo, CONFIG_KEYS};
use harness::privileges::{Mode, Privileges};
use vm_init::frame::{self, Kind};
use zccheck::report::matrix::{Provenance, STATUS_NO_REPORT, STATUS_REPORT};
use zccheck::report::{Environment, Report, Settings, Tool, SCHEMA_VERSION};

use crate::kernel::Kernel;
use crate::qemu::Boot;

/// The run settings every report of a matrix shares.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub filter: Vec<String>,
    pub seed: u64,
    pub cases: u32,
    pub case_timeout_s: u64,
    pub vm_timeout: Duration,
}

impl RunSettings {
    /// The arguments of `zccheck run` (after `--json FILE`).
    pub fn zccheck_args(&self) -> Vec<String> {
        let mut a = vec![
            "--seed".into(),
            self.seed.to_string(),
            "--cases".into(),
            self.cases.to_string(),
            "--timeout".into(),
            self.case_timeout_s.to_string(),
        ];
        if !self.filter.is_empty() {
            a.push("--filter".into());
            a.push(self.filter.join(","));
        }
        a
    }
}

/// The report of one VM boot. `Ok` means the guest's report arrived intact.
pub fn from_boot(k: &Kernel, boot: &Boot, accel: &str, s: &RunSettings) -> (Report, bool) {
    let mut prov = Provenance {
        label: k.label.clone(),
        source: k.source.clone(),
        packages: k.packages.clone(),
        accel: Some(accel.to_string()),
        status: STATUS_REPORT.into(),
        boot_to_report_ms: Some(boot.sent.unwrap_or(boot.elapsed).as_millis() as u64),
        boot_to_init_ms: boot.init_up.map(|d| d.as_millis() as u64),
        modules: k
            .modules
            .iter()
            .filter_map(|m| m.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect(),
        missing_modules: k.missing.clone(),
        ..Default::default()
    };
    for (key, value) in phase_timings(boot) {
        prov.extra.insert(key.into(), value);
    }
    let cause = match frame::decode_last(&boot.report_port) {
        Ok(f) if f.kind == Kind::Report => {
            match Report::parse(&String::from_utf8_lossy(&f.payload)) {
                Ok(mut report) => {
                    prov.attach(&mut report);
                    return (report, true);
                }
                Err(e) => format!("the guest's report does not parse: {e:#}"),
            }
        }
        Ok(f) => format!(
            "the suite could not run in the VM: {}",
            String::from_utf8_lossy(&f.payload)
        ),
        Err(e) => why_no_frame(boot, s, &e.to_string()),
    };
    prov.status = STATUS_NO_REPORT.into();
    prov.cause = Some(cause);
    prov.console_tail = boot.console_tail.clone();
    let mut report = empty_report(k, "vm", s, boot.elapsed);
    prov.attach(&mut report);
    (report, false)
}

/// Where a VM's time went: booting (qemu start to the init's first line), running the suite
/// (to the report sent), shutting down (to qemu's end), and how it ended.
pub fn phase_timings(boot: &Boot) -> Vec<(&'static str, serde_json::Value)> {
    let ms = |d: Duration| serde_json::json!(d.as_millis() as u64);
    let mut out = vec![("ended", serde_json::json!(boot.ended.describe()))];
    if let Some(up) = boot.init_up {
        out.push(("boot_ms", ms(up)));
        if let Some(sent) = boot.sent {
            out.push(("run_ms", ms(sent.saturating_sub(up))));
            out.push(("shutdown_ms", ms(boot.elapsed.saturating_sub(sent))));
        }
    }
    out
}

/// The most telling reason there is no frame: a panic line beats a timeout, a timeout beats
/// the frame's own complaint.
fn why_no_frame(boot: &Boot, s: &RunSettings, frame_error: &str) -> String {
    let panic = boot
        .console_tail
        .iter()
        .find(|l| l.contains("Kernel panic") || l.contains("BUG:") || l.contains("Oops"));
    let qemu_err = boot
        .qemu_stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty());
    if let Some(p) = panic {
        format!("the kernel crashed: {}", p.trim())
    } else if boot.timed_out && boot.init_up.is_none() {
        format!(
            "the kernel did not reach the init within {} s (the VM was stopped)",
            s.vm_timeout.as_secs()
        )
    } else if boot.timed_out {
        format!(
            "no report within {} s (the VM was stopped; {frame_error})",
            s.vm_timeout.as_secs()
        )
    } else if boot.init_up.is_none() {
        format!(
            "the kernel did not reach the init (qemu ended: {}{}{})",
            boot.status.map(|s| s.to_string()).unwrap_or_default(),
            qemu_err.map(|e| format!("; {e}")).unwrap_or_default(),
            if boot.console_tail.is_empty() {
                "; the console stayed silent"
            } else {
                ""
            }
        )
    } else {
        frame_error.to_string()
    }
}

/// A report without cases, for a kernel that did not produce its own. The kernel fields are
/// what the package says (release, configuration); nothing in it was observed in the guest.
pub fn empty_report(k: &Kernel, kind: &str, s: &RunSettings, took: Duration) -> Report {
    let config: BTreeMap<String, String> = k
        .config
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .filter(|(key, _)| CONFIG_KEYS.contains(key))
                .map(|(key, v)| (key.to_string(), v.trim_matches('"').to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "zccheck".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        kernel: KernelInfo {
            release: k.release.clone(),
            version: String::new(),
            arch: "x86_64".into(),
            numeric: parse_release(&k.release),
            config_source: k.config.as_ref().map(|_| "the kernel package".to_string()),
            config,
            page_size: 4096,
        },
        environment: Environment {
            kind: kind.into(),
            privileges: Privileges {
                mode: Mode::Native,
                uid: 0,
                in_initial_user_ns: true,
                cap_net_admin: false,
                cap_ipc_lock: false,
                cap_sys_admin: false,
                cap_sys_resource: false,
            },
            cpus: 0,
            restored_sysctls: vec![],
            extra: Default::default(),
        },
        settings: Settings {
            filter: s.filter.clone(),
            seed: s.seed,
            cases: s.cases,
            timeout_s: s.case_timeout_s,
            extra: Default::default(),
        },
        probes: vec![],
        cases: vec![],
        totals: BTreeMap::new(),
        duration_ms: took.as_millis() as u64,
        extra: Default::default(),
        bench: None,
    };
    report.tally();
    report
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn kernel() -> Kernel {
        Kernel {
            label: "5.10".into(),
            release: "5.10.0-46-cloud-amd64".into(),
            image: PathBuf::from("/nonexistent"),
            config: None,
            modules: vec![],
            builtin: vec![],
            missing: vec![],
            source: "debian".into(),
            packages: vec!["linux-image-5.10.0-46-cloud-amd64=5.10.262-1".into()],
            wanted: vec!["veth".into()],
        }
    }

    fn settings() -> RunSettings {
        RunSettings {
            filter: vec![],
            seed: 1,
            cases: 8,
            case_timeout_s: 60,
            vm_timeout: Duration::from_secs(300),
        }
    }

    fn boot(console: &[&str], port: Vec<u8>, timed_out: bool) -> Boot {
        Boot {
            elapsed: Duration::from_secs(3),
            timed_out,
            ended: if timed_out {
                crate::qemu::Ending::TimedOut
            } else {
                crate::qemu::Ending::Exited
            },
            status: None,
            console_tail: console.iter().map(|s| s.to_string()).collect(),
            init_up: console
                .iter()
                .any(|l| l.starts_with(vm_init::MARK_UP))
                .then_some(Duration::from_secs(2)),
            sent: None,
            probe_ok: false,
            report_port: port,
            qemu_stderr: String::new(),
        }
    }

    fn cause(r: &Report) -> String {
        Provenance::of(r).unwrap().unwrap().cause.unwrap()
    }

    #[test]
    fn an_intact_report_keeps_its_cases_and_gains_provenance() {
        let inner = empty_report(&kernel(), "vm", &settings(), Duration::ZERO);
        let port = frame::encode(Kind::Report, inner.to_json().as_bytes());
        let (r, ok) = from_boot(&kernel(), &boot(&[], port, false), "tcg", &settings());
        assert!(ok);
        let p = Provenance::of(&r).unwrap().unwrap();
        assert_eq!(
            (p.status.as_str(), p.accel.as_deref()),
            ("report", Some("tcg"))
        );
        assert!(p.console_tail.is_empty());
    }

    #[test]
    fn a_panic_is_named_with_its_line() {
        let console = ["[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs"];
        let (r, ok) = from_boot(
            &kernel(),
            &boot(&console, vec![], false),
            "tcg",
            &settings(),
        );
        assert!(!ok);
        assert!(
            cause(&r).contains("Kernel panic - not syncing"),
            "{}",
            cause(&r)
        );
        assert_eq!(Provenance::of(&r).unwrap().unwrap().console_tail.len(), 1);
        // It is still a valid report, so `matrix` can show the column.
        Report::parse(&r.to_json()).unwrap();
    }

    #[test]
    fn a_hang_before_init_and_a_truncated_frame_are_told_apart() {
        let (r, _) = from_boot(&kernel(), &boot(&[], vec![], true), "tcg", &settings());
        assert!(
            cause(&r).contains("did not reach the init within 300 s"),
            "{}",
            cause(&r)
        );
        let full = frame::encode(Kind::Report, b"{\"x\": 1}");
        let up = format!("{} at 2.00s", vm_init::MARK_UP);
        let (r, _) = from_boot(
            &kernel(),
            &boot(&[&up], full[..full.len() - 25].to_vec(), false),
            "tcg",
            &settings(),
        );
        assert!(cause(&r).contains("truncated"), "{}", cause(&r));
    }

    #[test]
    fn a_guest_side_failure_is_passed_on() {
        let port = frame::encode(
            Kind::Failure,
            b"zccheck ended (exit status: 2) without writing a report",
        );
        let (r, ok) = from_boot(&kernel(), &boot(&[], port, false), "tcg", &settings());
        assert!(!ok);
        assert!(
            cause(&r).contains("could not run in the VM"),
            "{}",
            cause(&r)
        );
    }

    #[test]
    fn a_report_that_does_not_parse_is_not_taken() {
        let port = frame::encode(Kind::Report, b"{\"schema_version\": 1}");
        let (r, ok) = from_boot(&kernel(), &boot(&[], port, false), "tcg", &settings());
        assert!(!ok);
        assert!(cause(&r).contains("does not parse"), "{}", cause(&r));
    }
}
