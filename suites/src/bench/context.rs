//! The machine the numbers were taken on, so that no figure travels without it: CPU model,
//! cores, frequency governor, native or VM and the accelerator, the load when the run began.
//!
//! Timings under TCG (qemu's instruction translator) say nothing about a real kernel's costs:
//! such a run is marked `timing_meaningful: false` and kept out of every comparison.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineContext {
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `scaling_governor` of cpu0, when cpufreq is exposed.
    pub governor: Option<String>,
    /// "native", or "vm" when the VM runner started zccheck (`ZCCHECK_ENVIRONMENT`).
    pub environment: String,
    /// "kvm", "tcg", or `None` when not known; for a native run `None`.
    pub accelerator: Option<String>,
    /// Whether /proc/cpuinfo says a hypervisor is underneath (also for "native" runs on a
    /// cloud machine).
    pub hypervisor: bool,
    /// `/proc/loadavg` when the run began: other work on the machine skews the figures.
    pub load_at_start: Option<String>,
    /// The same when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_at_end: Option<String>,
    /// `CONFIG_IRQ_TIME_ACCOUNTING`: when set, softirq work is not charged to the thread it
    /// interrupted, so per-thread clocks miss the network stack's softirq share.
    pub irq_time_accounting: Option<bool>,
    /// False under TCG: the figures are recorded but not compared.
    pub timing_meaningful: bool,
    /// Human-readable remarks about the context.
    pub remarks: Vec<String>,
}

impl MachineContext {
    pub fn detect() -> MachineContext {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let environment = std::env::var("ZCCHECK_ENVIRONMENT").unwrap_or_else(|_| "native".into());
        let clocksources = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/available_clocksource",
        )
        .unwrap_or_default();
        let governor =
            std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
                .ok()
                .map(|s| s.trim().to_string());
        let irq_time_accounting =
            harness::kernel::config_value("CONFIG_IRQ_TIME_ACCOUNTING").map(|v| v == "y");
        let irq_time_accounting = match irq_time_accounting {
            Some(true) => Some(true),
            // Unset options are absent from the file; a readable config without it means off.
            _ if harness::kernel::config_value("CONFIG_HZ").is_some() => Some(false),
            _ => None,
        };
        Self::from_parts(
            &cpuinfo,
            &environment,
            std::env::var("ZCCHECK_ACCEL").ok(),
            &clocksources,
            governor,
            load_average(),
            irq_time_accounting,
            allowed_cpus(),
        )
    }

    /// The context from what the system files said (separate from reading them, for tests).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        cpuinfo: &str,
        environment: &str,
        accel_env: Option<String>,
        clocksources: &str,
        governor: Option<String>,
        load_at_start: Option<String>,
        irq_time_accounting: Option<bool>,
        cpus: usize,
    ) -> MachineContext {
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let cpu_model = field("model name")
            .or_else(|| field("Hardware"))
            .or_else(|| field("CPU part").map(|p| format!("CPU part {p}")))
            .unwrap_or_else(|| "unknown".into());
        let hypervisor = cpuinfo
            .lines()
            .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
        let kvm_clock = clocksources.split_whitespace().any(|c| c == "kvm-clock");
        let vm = environment == "vm";
        let mut remarks = Vec::new();
        let accelerator = match accel_env {
            Some(a) if !a.is_empty() => Some(a),
            _ if vm && kvm_clock => Some("kvm".to_string()),
            _ if vm => {
                remarks.push(
                    "accelerator inferred as TCG: the guest has no kvm-clock clocksource".into(),
                );
                Some("tcg".to_string())
            }
            _ => None,
        };
        let timing_meaningful = accelerator.as_deref() != Some("tcg");
        if !timing_meaningful {
            remarks.push(
                "timings under TCG emulate every instruction: recorded, not meaningful, kept \
                 out of comparisons"
                    .into(),
            );
        }
        if !vm && hypervisor {
            remarks.push(format!(
                "this \"native\" machine is itself a virtual machine (cpuinfo hypervisor flag{})",
                if kvm_clock { ", kvm-clock" } else { "" }
            ));
        }
        if governor.is_none() {
            remarks.push("no cpufreq governor exposed (frequency not controlled here)".into());
        }
        MachineContext {
            cpu_model,
            cpus,
            governor,
            environment: environment.to_string(),
            accelerator,
            hypervisor,
            load_at_start,
            load_at_end: None,
            irq_time_accounting,
            timing_meaningful,
            remarks,
        }
    }

    /// One line: `AMD EPYC, 2 CPUs, native (hypervisor underneath), governor n/a, load 4.0`.
    pub fn line(&self) -> String {
        let env = match (&self.accelerator, self.environment.as_str()) {
            (Some(a), e) => format!("{e} ({a})"),
            (None, "native") if self.hypervisor => "native (a VM itself)".to_string(),
            (None, e) => e.to_string(),
        };
        format!(
            "{}, {} CPUs, {env}, governor {}, load average {}{}",
            self.cpu_model,
            self.cpus,
            self.governor.as_deref().unwrap_or("n/a"),
            match (&self.load_at_start, &self.load_at_end) {
                (Some(a), Some(b)) => format!("{a} at start, {b} at end"),
                (Some(a), None) => format!("{a} at start"),
                _ => "n/a".into(),
            },
            if self.timing_meaningful {
                ""
            } else {
                " — TCG: timings not meaningful"
            }
        )
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// CPUs in this process's affinity mask, in order.
pub fn allowed_cpu_list() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => vec![],
    }
}

fn allowed_cpus() -> usize {
    let n = allowed_cpu_list().len();
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu hypervisor sse\n";

    #[test]
    fn a_vm_without_kvm_clock_is_tcg_and_not_meaningful() {
        let c = MachineContext::from_parts(CPUINFO, "vm", None, "tsc acpi_pm", None, None, None, 1);
        assert_eq!(c.accelerator.as_deref(), Some("tcg"));
        assert!(!c.timing_meaningful);
        assert!(c.line().contains("not meaningful"));
    }

    #[test]
    fn a_vm_with_kvm_clock_is_kvm() {
        let c =
            MachineContext::from_parts(CPUINFO, "vm", None, "kvm-clock tsc", None, None, None, 2);
        assert_eq!(c.accelerator.as_deref(), Some("kvm"));
        assert!(c.timing_meaningful);
    }

    #[test]
    fn the_runner_may_name_the_accelerator() {
        let c = MachineContext::from_parts(
            CPUINFO,
            "vm",
            Some("tcg".into()),
            "kvm-clock",
            None,
            None,
            None,
            2,
        );
        assert!(!c.timing_meaningful);
    }

    #[test]
    fn native_on_a_hypervisor_says_so_and_stays_meaningful() {
        let c = MachineContext::from_parts(
            CPUINFO,
            "native",
            None,
            "tsc kvm-clock",
            Some("performance".into()),
            Some("4.0 1.0 0.5".into()),
            Some(false),
            2,
        );
        assert_eq!(c.cpu_model, "AMD EPYC");
        assert!(c.hypervisor && c.timing_meaningful && c.accelerator.is_none());
        assert!(c.remarks.iter().any(|r| r.contains("virtual machine")));
        assert!(c.line().contains("governor performance"));
    }
}
