//! The kernel list (`ci/kernels.toml`): which kernels make up the matrix.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelList {
    /// Modules the suite needs, loaded with their dependencies when present as modules. A
    /// kernel that lacks one leaves the suite short (`--strict` says so).
    pub modules: Vec<String>,
    /// Modules some cases can use, loaded the same way; a kernel without one has those cases
    /// say what is missing (`skipped` naming the module), which is the kernel's business.
    #[serde(default)]
    pub optional_modules: Vec<String>,
    /// Debian suites searched for kernels.
    pub suites: Vec<String>,
    #[serde(rename = "kernel")]
    pub kernels: Vec<DebianKernel>,
    pub native: Option<Native>,
}

/// One Debian cloud kernel: the newest of `line`, unless pinned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianKernel {
    pub label: String,
    /// `5.10`, `6.1`, ...: major.minor.
    pub line: String,
    /// Pin the package name (`linux-image-5.10.0-46-cloud-amd64`).
    pub package: Option<String>,
    /// Pin the Debian version (`5.10.262-1`).
    pub version: Option<String>,
    /// Only builds this archive suite carries (`bookworm-backports`): the build a user of
    /// that suite runs, next to other builds of the same line.
    pub suite: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Native {
    pub label: String,
}

impl KernelList {
    /// Every module to load into a VM: the needed ones, then the optional ones.
    pub fn all_modules(&self) -> Vec<String> {
        self.modules
            .iter()
            .chain(&self.optional_modules)
            .cloned()
            .collect()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the kernel list {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the kernel list {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let list: KernelList = toml::from_str(text)?;
        let mut labels: Vec<&str> = list.kernels.iter().map(|k| k.label.as_str()).collect();
        labels.extend(list.native.as_ref().map(|n| n.label.as_str()));
        for (i, l) in labels.iter().enumerate() {
            if !is_label(l) {
                bail!("label {l:?} must be non-empty [A-Za-z0-9._-] (it names a file)");
            }
            if labels[..i].contains(l) {
                bail!("label {l:?} appears twice");
            }
        }
        for k in &list.kernels {
            let ok = k.line.split('.').count() == 2
                && k.line
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !ok {
                bail!("kernel {}: line {:?} is not MAJOR.MINOR", k.label, k.line);
            }
        }
        Ok(list)
    }
}

pub fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels.toml");
        let list = KernelList::load(&path).unwrap();
        assert!(list.kernels.iter().any(|k| k.label == "5.10"));
        assert_eq!(list.modules, ["veth"]);
        assert_eq!(
            list.optional_modules,
            ["udmabuf", "sch_netem", "tun", "af_packet"]
        );
        assert!(list.native.is_some());
    }

    #[test]
    fn duplicate_labels_are_rejected() {
        let text = r#"
            modules = []
            suites = ["sid"]
            [[kernel]]
            label = "a"
            line = "6.1"
            [[kernel]]
            label = "a"
            line = "6.2"
        "#;
        let e = KernelList::parse(text).unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
    }

    #[test]
    fn a_bad_line_is_rejected() {
        let text = "modules = []\nsuites = []\n[[kernel]]\nlabel = \"x\"\nline = \"6\"\n";
        assert!(KernelList::parse(text).is_err());
    }
}
