//! Sysctl writes that cannot outlive the suite.
//!
//! A write made inside one of the suite's namespaces to a per-namespace sysctl dies with the
//! namespace. Some sysctls are global on some kernels (`net.core.optmem_max` before 6.8), and
//! a write "inside" a namespace then changes the whole machine. So every write first journals
//! the value the outer namespace had, then writes, then looks whether the outer value moved:
//! if it did not, the journal entry is dropped; if it did, the returned guard restores it on
//! drop, and if the process dies first, [`recover`] (run at the start of every run and after
//! every case process) restores it from the journal. Each journal entry names the process
//! that made the write, so a run restores only what dead processes left, never a write that
//! a concurrent, live run still holds.

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
    let journalled = Journal::add(key, &original)?;
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
    if scope == Scope::PerNamespace && journalled {
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

/// Restores every sysctl that a process which has since died left changed. Returns what it
/// restored.
pub fn recover() -> Result<Vec<(String, String)>> {
    let entries = Journal::take_orphans()?;
    let mut restored = Vec::new();
    for (key, Entry { value, .. }) in entries {
        write_here(&key, &value)
            .with_context(|| format!("restoring {key}={value} left by an earlier run"))?;
        restored.push((key, value));
    }
    Ok(restored)
}

/// One journalled write: the value to restore and the process that changed it (pid and
/// start time, so a recycled pid is not mistaken for the writer).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Entry {
    value: String,
    pid: i32,
    start_time: u64,
}

/// State letter and start time (clock ticks after boot) of a process, from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// A writer is alive while its process exists, is not a zombie (a killed case whose parent
/// died too may wait a while to be reaped) and is the same process that wrote.
fn alive(e: &Entry) -> bool {
    matches!(proc_stat(e.pid), Some((state, start)) if !matches!(state, 'Z' | 'X') && start == e.start_time)
}

fn me() -> (i32, u64) {
    let pid = std::process::id() as i32;
    (pid, proc_stat(pid).map(|(_, t)| t).unwrap_or(0))
}

/// The journal of global writes: a small JSON map, key to [`Entry`], under a lock.
struct Journal;

impl Journal {
    fn path() -> PathBuf {
        std::env::var_os("ZCCHECK_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/zccheck"))
            .join("sysctl-journal.json")
    }

    fn edit<T>(f: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> Result<T> {
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
        let mut map: BTreeMap<String, Entry> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("the sysctl journal {} is malformed", path.display()))?
        };
        let before = map.clone();
        let out = f(&mut map);
        if map == before {
            // Nothing changed (the usual case after every case process): no rewrite, no
            // fsync, which would cost the run milliseconds per case.
            return Ok(out);
        }
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(serde_json::to_string(&map)?.as_bytes())?;
        file.sync_all()?;
        Ok(out)
    }

    /// Records the original value, keeping an older record if one exists (that one is the
    /// true original). A process that may not write the sysctl in the outer namespace (a
    /// rootless run) cannot change the machine, so it has nothing to journal: returns
    /// whether it journalled.
    fn add(key: &str, original: &str) -> Result<bool> {
        if nix::unistd::access(&proc_path(key), nix::unistd::AccessFlags::W_OK).is_err() {
            return Ok(false);
        }
        let (pid, start_time) = me();
        Self::edit(|m| {
            m.entry(key.to_string()).or_insert_with(|| Entry {
                value: original.to_string(),
                pid,
                start_time,
            });
        })?;
        Ok(true)
    }

    fn remove(key: &str) -> Result<()> {
        Self::edit(|m| {
            m.remove(key);
        })
    }

    /// Removes and returns the entries whose writer has died.
    fn take_orphans() -> Result<BTreeMap<String, Entry>> {
        // No journal, or one this process may not write (a rootless run beside root's
        // journal): then this process made no journalled write and can restore nothing.
        let path = Self::path();
        if !path.exists() || nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_err() {
            return Ok(BTreeMap::new());
        }
        Self::edit(|m| {
            let (dead, live): (BTreeMap<_, _>, BTreeMap<_, _>) =
                std::mem::take(m).into_iter().partition(|(_, e)| !alive(e));
            *m = live;
            dead
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_of_dead_writers_are_taken() {
        let dir = std::env::temp_dir().join(format!("zccheck-journal-{}", std::process::id()));
        std::env::set_var("ZCCHECK_STATE_DIR", &dir);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id() as i32;
        child.wait().unwrap();
        let (pid, start_time) = me();
        Journal::edit(|m| {
            m.insert(
                "live.key".into(),
                Entry {
                    value: "1".into(),
                    pid,
                    start_time,
                },
            );
            m.insert(
                "dead.key".into(),
                Entry {
                    value: "2".into(),
                    pid: dead,
                    start_time: 0,
                },
            );
            // Our pid with another start time is a recycled pid: its writer is gone.
            m.insert(
                "recycled.key".into(),
                Entry {
                    value: "3".into(),
                    pid,
                    start_time: start_time + 1,
                },
            );
        })
        .unwrap();
        let taken = Journal::take_orphans().unwrap();
        assert_eq!(
            taken.keys().collect::<Vec<_>>(),
            ["dead.key", "recycled.key"]
        );
        let left = Journal::edit(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap();
        assert_eq!(left, ["live.key"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
