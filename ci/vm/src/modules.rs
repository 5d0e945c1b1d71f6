//! A kernel's module tree: finding a module, its dependencies, and decompressing it.
//!
//! Debian packages do not ship `modules.dep` (depmod writes it at install time, and we never
//! install), so dependencies are read from each module's own `.modinfo` section
//! (`depends=a,b`), which is what depmod reads too.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection};

/// The modules of one kernel release: `<root>` is `.../lib/modules/<release>`.
pub struct ModuleTree {
    root: PathBuf,
    /// Module name (with `_`) to its file.
    files: BTreeMap<String, PathBuf>,
    builtin: Vec<String>,
}

/// What the closure of the wanted modules came to.
#[derive(Debug, Default)]
pub struct Closure {
    /// Decompressed modules, dependencies first.
    pub load: Vec<(String, Vec<u8>)>,
    /// Wanted modules that are built into the kernel.
    pub builtin: Vec<String>,
    /// Wanted modules this kernel has neither built in nor as a file.
    pub missing: Vec<String>,
}

/// `veth-foo.ko.xz` -> `veth_foo`: the kernel treats `-` and `_` alike in module names.
pub fn module_name(file: &str) -> Option<String> {
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

impl ModuleTree {
    pub fn open(root: &Path) -> Result<Self> {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
            for e in entries {
                let e = e?;
                let p = e.path();
                if e.file_type()?.is_dir() {
                    stack.push(p);
                } else if let Some(name) =
                    p.file_name().and_then(|n| n.to_str()).and_then(module_name)
                {
                    files.entry(name).or_insert(p);
                }
            }
        }
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next().and_then(module_name))
            .collect();
        Ok(ModuleTree {
            root: root.to_path_buf(),
            files,
            builtin,
        })
    }

    /// The wanted modules and everything they depend on, in load order.
    pub fn closure(&self, wanted: &[String]) -> Result<Closure> {
        let mut c = Closure::default();
        for w in wanted {
            let name = w.replace('-', "_");
            if self.builtin.contains(&name) {
                c.builtin.push(name);
            } else if !self.files.contains_key(&name) {
                c.missing.push(name);
            } else {
                self.visit(&name, &mut c, &mut Vec::new())?;
            }
        }
        Ok(c)
    }

    fn visit(&self, name: &str, c: &mut Closure, path: &mut Vec<String>) -> Result<()> {
        if c.load.iter().any(|(n, _)| n == name) || self.builtin.iter().any(|b| b == name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            bail!("module dependency cycle: {} -> {name}", path.join(" -> "));
        }
        let file = self.files.get(name).with_context(|| {
            format!(
                "module {name} (needed by {}) is not in {}",
                path.last().map(String::as_str).unwrap_or("the suite"),
                self.root.display()
            )
        })?;
        let bytes = decompress(file)?;
        path.push(name.to_string());
        for dep in depends(&bytes).with_context(|| format!("reading {}", file.display()))? {
            self.visit(&dep.replace('-', "_"), c, path)?;
        }
        path.pop();
        c.load.push((name.to_string(), bytes));
        Ok(())
    }
}

/// A module file's contents, decompressed by its extension.
pub fn decompress(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("xz-decompressing {}", path.display()))?;
    } else if name.ends_with(".zst") {
        ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|mut d| d.read_to_end(&mut out).map_err(Into::into))
            .with_context(|| format!("zstd-decompressing {}", path.display()))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("gunzipping {}", path.display()))?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// The `depends=` entry of a module's `.modinfo` section.
pub fn depends(module: &[u8]) -> Result<Vec<String>> {
    let elf = object::File::parse(module).context("not an ELF module")?;
    let section = elf
        .section_by_name(".modinfo")
        .context("no .modinfo section")?;
    let data = section.data().context("reading .modinfo")?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_modules_like_the_kernel() {
        assert_eq!(module_name("veth.ko.xz").as_deref(), Some("veth"));
        assert_eq!(module_name("nf-nat.ko").as_deref(), Some("nf_nat"));
        assert_eq!(module_name("modules.dep"), None);
    }

    #[test]
    fn garbage_is_not_a_module() {
        assert!(depends(b"not an elf").is_err());
    }
}
