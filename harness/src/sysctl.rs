//! Sysctl writes that cannot outlive the suite.
//!
//! A write made inside one of the suite's namespaces to a per-namespace sysctl dies with the
//! namespace. Some sysctls are global on some kernels (`net.core.optmem_max` before 6.8), and
//! a write "inside" a namespace then changes the whole machine. So every write first journals
//! the value the outer namespace had, then writes, then looks whether the outer value moved:
//! if it did not, the journal entry is dropped; if it did, the returned guard restores it on
//! drop, and if the process dies first, [`recover`] (run at the start of every run and after
//! every case process) restores it from the journal.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::NetNs;

fn proc_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

fn read_here(key: &str) -> Result<String> {
    let p = proc_path(key);
    let v = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(v.trim().to_string())
}

fn write_here(key: &str, value: &str) -> Result<()> {
    let p = proc_path(key);
    std::fs::write(&p, format!("{value}\n"))
        .with_context(|| format!("`sysctl -w {key}={value}` ({}) failed", p.display()))
}

/// Reads `key` as seen from inside `ns`.
pub fn read_in(ns: &NetNs, key: &str) -> Result<String> {
    ns.run(|| read_here(key))?
}

/// Reads `key` as seen from the namespace the process started in.
pub fn read_outer(key: &str) -> Result<String> {
    read_here(key)
}

/// Where a write took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The sysctl is per namespace: only the suite's namespace changed.
    PerNamespace,
    /// The sysctl is global on this kernel: the machine changed, and the guard restores it.
    Global,
}

/// Undoes a global write on drop. Inert for a per-namespace write.
#[derive(Debug)]
pub struct SysctlGuard {
    key: String,
    original: String,
    pub scope: Scope,
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if self.scope == Scope::Global {
            if let Err(e) = write_here(&self.key, &self.original) {
                eprintln!(
                    "zccheck: could not restore {}={}: {e:#}",
                    self.key, self.original
                );
                return;
            }
            let _ = Journal::remove(&self.key);
        }
    }
}

/// Writes `key=value` inside `ns`, safely (see the module comment).
pub fn set_in(ns: &NetNs, key: &str, value: &str) -> Result<SysctlGuard> {
    let original = read_outer(key)?;
    Journal::add(key, &original)?;
    let written = ns.run(|| write_here(key, value))?;
    let now = read_outer(key);
    let scope = match &now {
        Ok(v) if *v == original => Scope::PerNamespace,
        _ => Scope::Global,
    };
    let guard = SysctlGuard {
        key: key.to_string(),
        original,
        scope,
    };
    if scope == Scope::PerNamespace {
        Journal::remove(key)?;
    }
    written?;
    Ok(guard)
}

/// Writes `key=value` in the namespace the process started in: a machine-wide change, for
/// sysctls that exist only there (for example `net.core.optmem_max` before 6.8). Journalled
/// first; the guard restores it.
pub fn set_global(key: &str, value: &str) -> Result<SysctlGuard> {
    let original = read_outer(key)?;
    Journal::add(key, &original)?;
    let guard = SysctlGuard {
        key: key.to_string(),
        original,
        scope: Scope::Global,
    };
    write_here(key, value)?;
    Ok(guard)
}

/// Restores every sysctl a killed run left changed. Returns what it restored.
pub fn recover() -> Result<Vec<(String, String)>> {
    let entries = Journal::take_all()?;
    let mut restored = Vec::new();
    for (key, value) in entries {
        write_here(&key, &value)
            .with_context(|| format!("restoring {key}={value} left by an earlier run"))?;
        restored.push((key, value));
    }
    Ok(restored)
}

/// The journal of global writes: a small JSON map, key to original value, under a lock.
struct Journal;

impl Journal {
    fn path() -> PathBuf {
        std::env::var_os("ZCCHECK_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/zccheck"))
            .join("sysctl-journal.json")
    }

    fn edit<T>(f: impl FnOnce(&mut BTreeMap<String, String>) -> T) -> Result<T> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the sysctl journal {}", path.display()))?;
        let mut file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("locking {}", path.display()))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let mut map: BTreeMap<String, String> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("the sysctl journal {} is malformed", path.display()))?
        };
        let out = f(&mut map);
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(serde_json::to_string(&map)?.as_bytes())?;
        file.sync_all()?;
        Ok(out)
    }

    /// Records the original value, keeping an older record if one exists (that one is the
    /// true original).
    fn add(key: &str, original: &str) -> Result<()> {
        Self::edit(|m| {
            m.entry(key.to_string())
                .or_insert_with(|| original.to_string());
        })
    }

    fn remove(key: &str) -> Result<()> {
        Self::edit(|m| {
            m.remove(key);
        })
    }

    fn take_all() -> Result<BTreeMap<String, String>> {
        if !Self::path().exists() {
            return Ok(BTreeMap::new());
        }
        Self::edit(std::mem::take)
    }
}
