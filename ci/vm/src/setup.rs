//! The host tools the runner needs, and how to install them on a fresh Debian machine.
//!
//! Only qemu is normally missing (dpkg-deb and apt come with Debian). On a host whose
//! `qemu-utils` came from backports, a plain `apt-get install qemu-system-x86` would pull the
//! older stable build and remove `qemu-utils`, so qemu is then taken from the same backports
//! suite (added as a sources file if the host lacks it). Nothing else on the host changes.

use std::process::Command;

use anyhow::{bail, Context, Result};

pub const QEMU: &str = "qemu-system-x86_64";

/// One step of the setup, shown before it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    WriteFile { path: String, text: String },
    Run(Vec<String>),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::WriteFile { path, text } => write!(f, "cat > {path} <<'EOF'\n{text}EOF"),
            Step::Run(argv) => write!(f, "{}", argv.join(" ")),
        }
    }
}

pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The steps that would install what is missing (none when all is there).
pub fn plan() -> Result<Vec<Step>> {
    for tool in ["apt-get", "dpkg-deb"] {
        if !have(tool) {
            bail!("{tool} is missing: the runner needs a Debian-based host");
        }
    }
    if have(QEMU) {
        return Ok(vec![]);
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .unwrap_or_default();
    let utils = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "qemu-utils"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let backports = format!("{codename}-backports");
    let use_backports = !codename.is_empty() && utils.contains("~bpo");
    let mut steps = Vec::new();
    if use_backports && !host_has_suite(&backports) {
        let mirror = crate::apt::host_mirrors().0;
        steps.push(Step::WriteFile {
            path: format!("/etc/apt/sources.list.d/zccheck-{backports}.sources"),
            text: format!(
                "Types: deb\nURIs: {mirror}\nSuites: {backports}\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        });
    }
    steps.push(Step::Run(argv("apt-get -q update")));
    let mut install = argv("apt-get install -y -q --no-install-recommends");
    if use_backports {
        install.extend(["-t".to_string(), backports]);
    }
    install.push("qemu-system-x86".into());
    steps.push(Step::Run(install));
    Ok(steps)
}

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn host_has_suite(suite: &str) -> bool {
    let mut texts = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| l.split_whitespace().any(|w| w == suite))
}

/// Runs the plan (root only).
pub fn run(steps: &[Step]) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        let shown: Vec<String> = steps.iter().map(|s| format!("  {s}")).collect();
        bail!("{QEMU} is missing; as root, run:\n{}", shown.join("\n"));
    }
    for s in steps {
        eprintln!("zccheck-vm setup: {s}");
        match s {
            Step::WriteFile { path, text } => {
                std::fs::write(path, text).with_context(|| format!("writing {path}"))?
            }
            Step::Run(a) => {
                let st = Command::new(&a[0])
                    .args(&a[1..])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .with_context(|| format!("running {}", a[0]))?;
                if !st.success() {
                    bail!("`{}` failed ({st})", a.join(" "));
                }
            }
        }
    }
    if !have(QEMU) {
        bail!("{QEMU} is still missing after the setup");
    }
    Ok(())
}
