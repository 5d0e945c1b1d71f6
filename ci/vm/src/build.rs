//! The static binaries that go into every initramfs: `zccheck` and the VM's init.
//!
//! They are built with `-C target-feature=+crt-static` for the explicit gnu target, in a
//! target folder of their own (`target/vm`), so the flags neither leak into build scripts and
//! proc macros nor invalidate the normal build's cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use object::Object;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

pub struct StaticBinaries {
    pub zccheck: PathBuf,
    pub init: PathBuf,
}

/// Builds both with cargo's `profile` (`release` for the matrix; CI's smoke test uses the
/// workspace's quicker `vm` profile).
pub fn build(workspace: &Path, profile: &str) -> Result<StaticBinaries> {
    let target_dir = workspace.join("target/vm");
    eprintln!("zccheck-vm: building static zccheck and init ({profile}, {TARGET}, target/vm)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["build", "--profile", profile, "--locked"])
        .args(["--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .args([
            "-p",
            "zccheck",
            "--bin",
            "zccheck",
            "-p",
            "zccheck-vm-init",
            "--bin",
            "zccheck-vm-init",
        ])
        .status()
        .context("running cargo build for the static binaries")?;
    if !status.success() {
        bail!("building the static binaries failed ({status})");
    }
    // Cargo names the folder of the `dev` profile `debug`.
    let folder = if profile == "dev" { "debug" } else { profile };
    let out = target_dir.join(TARGET).join(folder);
    let bins = StaticBinaries {
        zccheck: out.join("zccheck"),
        init: out.join("zccheck-vm-init"),
    };
    for b in [&bins.zccheck, &bins.init] {
        ensure_static(b)?;
    }
    Ok(bins)
}

/// A dynamically linked binary would die in the initramfs with a bare ENOENT: refuse it here.
pub fn ensure_static(path: &Path) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let elf =
        object::File::parse(&*data).with_context(|| format!("{} is not ELF", path.display()))?;
    if elf.section_by_name(".interp").is_some() {
        bail!(
            "{} is dynamically linked (it has a program interpreter)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_is_refused() {
        // The test binary itself is dynamically linked in a normal `cargo test`.
        let me = std::env::current_exe().unwrap();
        if std::fs::read(&me)
            .map(|d| d.windows(7).any(|w| w == b".interp"))
            .unwrap_or(false)
        {
            assert!(ensure_static(&me).is_err());
        }
    }
}
