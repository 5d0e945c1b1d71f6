//! The compatibility matrix: many reports (one per kernel) side by side.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Report;

/// The key under which a report carries its [`Provenance`].
pub const PROVENANCE_KEY: &str = "provenance";

/// Where a report came from, written by the VM runner next to the report's own fields: the
/// column label, the packages the kernel came from, how it was booted, and, when the kernel
/// produced no report, why (with the console's last lines).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The column's name (`5.10`, `native`); it also names the report file.
    pub label: String,
    /// `debian` (a Debian cloud kernel in a VM), `custom` (a user's kernel in a VM) or
    /// `native` (the machine's own kernel).
    pub source: String,
    /// `name=version` of the packages the kernel came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// `kvm` or `tcg` for VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// `report`, or `no-report` when the kernel did not produce one.
    pub status: String,
    /// Why there is no report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The console's last lines, kept when there is no report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub console_tail: Vec<String>,
    /// From starting the VM (or the native run) to having the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_to_report_ms: Option<u64>,
    /// From starting the VM to the init's first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_to_init_ms: Option<u64>,
    /// Modules loaded into the VM, and modules the suite wanted that this kernel lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_modules: Vec<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

pub const STATUS_REPORT: &str = "report";
pub const STATUS_NO_REPORT: &str = "no-report";

impl Provenance {
    /// The provenance a report carries, if any.
    pub fn of(report: &Report) -> Result<Option<Provenance>> {
        report
            .extra
            .get(PROVENANCE_KEY)
            .map(|v| {
                serde_json::from_value(v.clone())
                    .with_context(|| format!("at field `{PROVENANCE_KEY}`"))
            })
            .transpose()
    }

    pub fn attach(&self, report: &mut Report) {
        report.extra.insert(
            PROVENANCE_KEY.into(),
            serde_json::to_value(self).expect("provenance serialises"),
        );
    }
}

pub struct Matrix {}
impl Matrix {
    pub fn load(_: &[std::path::PathBuf]) -> Result<Matrix> {
        todo!()
    }
    pub fn markdown(&self, _: &std::path::Path) -> String {
        todo!()
    }
}
