//! A bootable kernel: its image, its configuration, and the modules the suite needs,
//! decompressed and in load order. Debian kernels are unpacked from their packages once and
//! cached; a user's own kernel is taken from an image and a module folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::apt::Resolved;
use crate::modules::ModuleTree;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kernel {
    pub label: String,
    /// `uname -r`.
    pub release: String,
    pub image: PathBuf,
    pub config: Option<PathBuf>,
    /// Decompressed module files, dependencies first.
    pub modules: Vec<PathBuf>,
    /// Wanted modules that are built in.
    pub builtin: Vec<String>,
    /// Wanted modules this kernel lacks.
    pub missing: Vec<String>,
    /// `debian` or `custom`.
    pub source: String,
    /// `name=version` of the packages it came from.
    pub packages: Vec<String>,
    /// The modules that were asked for (the cache is redone when they change).
    pub wanted: Vec<String>,
}

const META: &str = "kernel.json";

/// Unpacks a Debian kernel into `cache/kernels/<release>_<version>` unless already there.
pub fn from_debian(
    cache: &Path,
    label: &str,
    r: &Resolved,
    debs: &[PathBuf],
    wanted: &[String],
) -> Result<Kernel> {
    let dir =
        cache
            .join("kernels")
            .join(format!("{}_{}", r.release, r.version.replace(':', "%3a")));
    if let Some(mut k) = cached(&dir, wanted) {
        k.label = label.to_string();
        return Ok(k);
    }
    let tmp = dir.with_extension("unpacking");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for deb in debs {
        let st = std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&tmp)
            .status()
            .context("running dpkg-deb")?;
        if !st.success() {
            bail!("dpkg-deb -x {} failed ({st})", deb.display());
        }
    }
    let root = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|m| tmp.join(m).join(&r.release))
        .find(|p| p.is_dir())
        .with_context(|| format!("no lib/modules/{} in {:?}", r.release, r.packages))?;
    let image = [
        tmp.join(format!("boot/vmlinuz-{}", r.release)),
        root.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .with_context(|| format!("no kernel image in {:?}", r.packages))?;
    let config = [
        tmp.join(format!("boot/config-{}", r.release)),
        root.join("config"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let k = assemble(
        &dir,
        Assembly {
            label,
            release: &r.release,
            image: &image,
            config: config.as_deref(),
            module_root: Some(&root),
            wanted,
            source: "debian",
            packages: r.pinned(),
        },
    )?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(k)
}

/// A user's kernel: an image (bzImage) and optionally its module folder and configuration.
pub fn custom(
    cache: &Path,
    label: &str,
    image: &Path,
    modules: Option<&Path>,
    config: Option<&Path>,
    wanted: &[String],
) -> Result<Kernel> {
    let release = bzimage_release(image)
        .with_context(|| format!("reading the kernel release from {}", image.display()))?;
    let root = modules.map(|m| {
        [m.join("lib/modules").join(&release), m.join(&release)]
            .into_iter()
            .find(|p| p.is_dir())
            .unwrap_or_else(|| m.to_path_buf())
    });
    let config = config.map(Path::to_path_buf).or_else(|| {
        root.as_ref()
            .map(|r| r.join("config"))
            .filter(|p| p.is_file())
    });
    let dir = cache.join("custom").join(label);
    let _ = std::fs::remove_dir_all(&dir);
    assemble(
        &dir,
        Assembly {
            label,
            release: &release,
            image,
            config: config.as_deref(),
            module_root: root.as_deref(),
            wanted,
            source: "custom",
            packages: vec![],
        },
    )
}

struct Assembly<'a> {
    label: &'a str,
    release: &'a str,
    image: &'a Path,
    config: Option<&'a Path>,
    module_root: Option<&'a Path>,
    wanted: &'a [String],
    source: &'a str,
    packages: Vec<String>,
}

/// Copies the image, configuration and module closure into `dir` and records them.
fn assemble(dir: &Path, a: Assembly) -> Result<Kernel> {
    std::fs::create_dir_all(dir.join("modules"))?;
    let image = dir.join("vmlinuz");
    std::fs::copy(a.image, &image).with_context(|| format!("copying {}", a.image.display()))?;
    let config = match a.config {
        Some(c) => {
            let to = dir.join("config");
            std::fs::copy(c, &to).with_context(|| format!("copying {}", c.display()))?;
            Some(to)
        }
        None => None,
    };
    let closure = match a.module_root {
        Some(root) => ModuleTree::open(root)?.closure(a.wanted)?,
        None => crate::modules::Closure {
            missing: a.wanted.to_vec(),
            ..Default::default()
        },
    };
    let mut modules = Vec::new();
    for (i, (name, bytes)) in closure.load.iter().enumerate() {
        let p = dir.join("modules").join(format!("{i:02}-{name}.ko"));
        std::fs::write(&p, bytes)?;
        modules.push(p);
    }
    let k = Kernel {
        label: a.label.to_string(),
        release: a.release.to_string(),
        image,
        config,
        modules,
        builtin: closure.builtin,
        missing: closure.missing,
        source: a.source.to_string(),
        packages: a.packages,
        wanted: a.wanted.to_vec(),
    };
    std::fs::write(dir.join(META), serde_json::to_string_pretty(&k)?)?;
    Ok(k)
}

fn cached(dir: &Path, wanted: &[String]) -> Option<Kernel> {
    let k: Kernel = serde_json::from_str(&std::fs::read_to_string(dir.join(META)).ok()?).ok()?;
    let complete = k.wanted == wanted && k.image.is_file() && k.modules.iter().all(|m| m.is_file());
    complete.then_some(k)
}

/// The release string an x86 bzImage carries in its setup header (`kernel_version`, boot
/// protocol 2.00+): `5.10.0-46-cloud-amd64 (debian-kernel@...) #1 SMP ...` -> the first word.
pub fn bzimage_release(image: &Path) -> Result<String> {
    let data = std::fs::read(image)?;
    if data.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not an x86 bzImage (no HdrS setup header)");
    }
    let offset = u16::from_le_bytes([data[0x20e], data[0x20f]]) as usize;
    if offset == 0 {
        bail!("the setup header has no kernel_version string");
    }
    let s = data
        .get(offset + 0x200..)
        .context("kernel_version points past the end of the image")?;
    let end = s.iter().position(|&b| b == 0 || b == b' ').unwrap_or(0);
    let release = std::str::from_utf8(&s[..end]).context("kernel_version is not text")?;
    if release.is_empty() {
        bail!("empty kernel_version string");
    }
    Ok(release.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_release_from_a_setup_header() {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let s = b"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        img[0x500..0x500 + s.len()].copy_from_slice(s);
        let dir = std::env::temp_dir().join(format!("zccheck-vm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bzImage");
        std::fs::write(&p, &img).unwrap();
        assert_eq!(bzimage_release(&p).unwrap(), "6.1.0-56-cloud-amd64");
        std::fs::write(&p, b"not a kernel").unwrap();
        assert!(bzimage_release(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
