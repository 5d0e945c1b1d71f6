//! Sysctl writes that cannot outlive the suite.
//!
//! A write made inside one of the suite's namespaces to a per-namespace sysctl dies with the
//! namespace. Some sysctls are global on some kernels (`net.core.optmem_max` before 6.8), and
//! a write to one changes the whole machine. Whether a write is machine-wide is decided
//! *before* writing: a per-namespace sysctl is a different file in each namespace (another
//! inode under /proc/sys), a global one is the same file seen from everywhere. Only a
//! machine-wide write is journalled (the value to restore, first), so a killed run never
//! leaves an entry for a write that changed nothing outside its namespace. The returned
//! guard restores a machine-wide write on drop; if the process dies first, [`recover`] (run
//! at the start of every run and after every case process) restores it from the journal.
//! Each journal entry names the process that made the write, so a run restores only what
//! dead processes left, never a write that a concurrent, live run still holds.
//!
//! The journal is touched only when a machine-wide write is made or an entry must be
//! restored: a run on a read-only `/run` works, and only a case that needs a machine-wide
//! write is refused ([`JournalUnavailable`]). It is replaced whole (a new file renamed over
//! it) under a lock, so a kill at any moment leaves the old or the new journal, never an
//! empty one.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
            let _ = Journal::default().remove(&self.key);
        }
    }
}

/// Whether `key` as seen from inside `ns` is the same sysctl as the one seen from the
/// namespace the process started in (then a write changes the machine), decided without
/// writing anything: a per-namespace sysctl is another file (inode) in each namespace.
pub fn scope_in(ns: &NetNs, key: &str) -> Result<Scope> {
    let p = proc_path(key);
    let outer = std::fs::metadata(&p).with_context(|| format!("looking up {}", p.display()))?;
    let inner = ns.run(|| std::fs::metadata(&p))?;
    Ok(match inner {
        Ok(m) if (m.dev(), m.ino()) != (outer.dev(), outer.ino()) => Scope::PerNamespace,
        // The same file, or one the namespace does not have (a global sysctl only the initial
        // namespace shows): a write there is a write to the machine.
        _ => Scope::Global,
    })
}

/// Writes `key=value` inside `ns`, safely (see the module comment).
pub fn set_in(ns: &NetNs, key: &str, value: &str) -> Result<SysctlGuard> {
    let scope = scope_in(ns, key)?;
    let original = read_outer(key)?;
    if scope == Scope::Global {
        Journal::default().add(key, &original)?;
    }
    let guard = SysctlGuard {
        key: key.to_string(),
        original,
        scope,
    };
    ns.run(|| write_here(key, value))??;
    if scope == Scope::PerNamespace {
        // The inode said per namespace; make sure the machine agrees. A kernel whose
        // namespace copy still points at the global value would be caught here, undone at
        // once and reported, rather than left changed.
        let now = read_outer(key)?;
        if now != guard.original {
            let undo = write_here(key, &guard.original);
            anyhow::bail!(
                "writing {key} inside namespace {} changed the machine-wide value \
                 ({} -> {now}) although the namespace has its own copy; {}",
                ns.name(),
                guard.original,
                match undo {
                    Ok(()) => "restored at once".to_string(),
                    Err(e) => format!("restoring it failed: {e:#}"),
                }
            );
        }
    }
    Ok(guard)
}

/// Writes `key=value` in the namespace the process started in: a machine-wide change, for
/// sysctls that exist only there (for example `net.core.optmem_max` before 6.8). Journalled
/// first; the guard restores it.
pub fn set_global(key: &str, value: &str) -> Result<SysctlGuard> {
    let original = read_outer(key)?;
    Journal::default().add(key, &original)?;
    let guard = SysctlGuard {
        key: key.to_string(),
        original,
        scope: Scope::Global,
    };
    write_here(key, value)?;
    Ok(guard)
}

/// A machine-wide write was refused because the journal that makes it undoable cannot be
/// written (a read-only `/run`, for example): the environment's limit, not the kernel's.
#[derive(Debug)]
pub struct JournalUnavailable {
    pub path: PathBuf,
    pub why: String,
}

impl std::fmt::Display for JournalUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a machine-wide sysctl write must be journalled first, and the journal {} cannot \
             be written ({}); set ZCCHECK_STATE_DIR to a writable directory to allow it",
            self.path.display(),
            self.why
        )
    }
}

impl std::error::Error for JournalUnavailable {}

/// Restores every sysctl that a process which has since died left changed. Returns what it
/// restored.
pub fn recover() -> Result<Vec<(String, String)>> {
    let entries = Journal::default().take_orphans()?;
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

/// The journal of machine-wide writes: a small JSON map, key to [`Entry`], replaced whole
/// under a lock.
struct Journal {
    dir: PathBuf,
}

impl Default for Journal {
    fn default() -> Self {
        Journal::at(
            std::env::var_os("ZCCHECK_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/zccheck")),
        )
    }
}

impl Journal {
    fn at(dir: impl Into<PathBuf>) -> Self {
        Journal { dir: dir.into() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("sysctl-journal.json")
    }

    fn unavailable(&self, why: impl std::fmt::Display) -> anyhow::Error {
        JournalUnavailable {
            path: self.path(),
            why: why.to_string(),
        }
        .into()
    }

    /// Reads the journal; a missing file is an empty journal.
    fn read(path: &Path) -> Result<BTreeMap<String, Entry>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "the sysctl journal {p} is corrupt ({e}). It lists sysctls that killed zccheck \
                 runs left changed, with the values to restore: check those by hand, then move \
                 it aside (`mv {p} {p}.corrupt`) and run again",
                p = path.display()
            )
        })
    }

    /// Applies `f` to the journal under an exclusive lock, and replaces the file with the
    /// result (a new file renamed over the old one), unless `f` changed nothing.
    fn edit<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> Result<T> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| self.unavailable(format!("creating {}: {e}", self.dir.display())))?;
        let lock_path = self.dir.join("sysctl-journal.lock");
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| self.unavailable(format!("opening {}: {e}", lock_path.display())))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("locking {}", lock_path.display()))?;
        self.remove_stale_temps();
        let path = self.path();
        let mut map = Self::read(&path)?;
        let before = map.clone();
        let out = f(&mut map);
        // Nothing changed (the usual case after every case process): no rewrite, no fsync,
        // which would cost the run milliseconds per case.
        if map != before {
            self.replace(&path, &map)?;
        }
        Ok(out)
    }

    /// Removes the new journals of writers killed before their rename. Called under the
    /// lock: no new journal is being written, so every one found is stale.
    fn remove_stale_temps(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("sysctl-journal.json.") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Writes `map` to a new file beside the journal and renames it over the journal (or
    /// removes the journal when nothing is left in it).
    fn replace(&self, path: &Path, map: &BTreeMap<String, Entry>) -> Result<()> {
        if map.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing the empty journal {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let tmp = self
            .dir
            .join(format!("sysctl-journal.json.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(serde_json::to_string(map)?.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.unavailable(format!("writing {}: {e}", tmp.display())));
        }
        Ok(())
    }

    /// Records the original value, keeping an older record if one exists (that one is the
    /// true original). A process that may not write the sysctl in the outer namespace (a
    /// rootless run) cannot change the machine, so it has nothing to journal.
    fn add(&self, key: &str, original: &str) -> Result<()> {
        if nix::unistd::access(&proc_path(key), nix::unistd::AccessFlags::W_OK).is_err() {
            return Ok(());
        }
        let (pid, start_time) = me();
        self.edit(|m| {
            m.entry(key.to_string()).or_insert_with(|| Entry {
                value: original.to_string(),
                pid,
                start_time,
            });
        })
    }

    fn remove(&self, key: &str) -> Result<()> {
        let path = self.path();
        if !path.exists() {
            return Ok(());
        }
        self.edit(|m| {
            m.remove(key);
        })
    }

    /// Removes and returns the entries whose writer has died.
    fn take_orphans(&self) -> Result<BTreeMap<String, Entry>> {
        // No journal: nothing to restore, and nothing is created. A journal this process may
        // not write (a rootless run beside root's journal): then this process made no
        // journalled write and can restore nothing.
        let path = self.path();
        if !path.exists() || nix::unistd::access(&self.dir, nix::unistd::AccessFlags::W_OK).is_err()
        {
            return Ok(BTreeMap::new());
        }
        // Nothing to restore: leave the file (and its lock) alone.
        if Self::read(&path)?.values().all(alive) {
            return Ok(BTreeMap::new());
        }
        self.edit(|m| {
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

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "zccheck-journal-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn entry(value: &str, pid: i32, start_time: u64) -> Entry {
        Entry {
            value: value.into(),
            pid,
            start_time,
        }
    }

    #[test]
    fn only_entries_of_dead_writers_are_taken() {
        let dir = scratch("orphans");
        let journal = Journal::at(&dir);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id() as i32;
        child.wait().unwrap();
        let (pid, start_time) = me();
        journal
            .edit(|m| {
                m.insert("live.key".into(), entry("1", pid, start_time));
                m.insert("dead.key".into(), entry("2", dead, 0));
                // Our pid with another start time is a recycled pid: its writer is gone.
                m.insert("recycled.key".into(), entry("3", pid, start_time + 1));
            })
            .unwrap();
        let taken = journal.take_orphans().unwrap();
        assert_eq!(
            taken.keys().collect::<Vec<_>>(),
            ["dead.key", "recycled.key"]
        );
        let left = journal
            .edit(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap();
        assert_eq!(left, ["live.key"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A kill can land at any moment of an edit; what is on disk at every moment must be a
    /// complete journal holding every live entry. A reader that never takes the lock sees
    /// exactly what a kill would leave.
    #[test]
    fn the_journal_on_disk_is_always_complete() {
        let dir = scratch("atomic");
        let journal = Journal::at(&dir);
        let (pid, start_time) = me();
        journal
            .edit(|m| {
                m.insert("other.run".into(), entry("7", pid, start_time));
            })
            .unwrap();
        let path = journal.path();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let seen = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let map: BTreeMap<String, Entry> = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("journal seen incomplete ({e}): {text:?}"));
                    assert!(map.contains_key("other.run"), "an entry vanished: {text}");
                    reads += 1;
                }
                reads
            });
            for i in 0..150 {
                let key = format!("mine.{}", i % 3);
                journal
                    .edit(|m| {
                        m.insert(key.clone(), entry("1", pid, start_time));
                    })
                    .unwrap();
                journal.remove(&key).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            reader.join()
        });
        let reads = seen.unwrap_or_else(|p| std::panic::resume_unwind(p));
        assert!(reads > 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_killed_writer_s_new_journal_is_removed() {
        let dir = scratch("stale");
        std::fs::create_dir_all(&dir).unwrap();
        let stale = dir.join("sysctl-journal.json.4242.tmp");
        std::fs::write(&stale, "{").unwrap();
        Journal::at(&dir).edit(|_| ()).unwrap();
        assert!(!stale.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_journal_is_named_with_the_way_out() {
        let dir = scratch("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        let journal = Journal::at(&dir);
        std::fs::write(journal.path(), "{\"net.core.optmem_max\": {\"val").unwrap();
        let err = format!("{:#}", journal.take_orphans().unwrap_err());
        assert!(err.contains(&journal.path().display().to_string()), "{err}");
        assert!(err.contains("corrupt"), "{err}");
        assert!(err.contains("move it aside"), "{err}");
        assert!(err.contains(".corrupt"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_journal_is_created_when_nothing_is_restored() {
        let dir = scratch("lazy");
        let journal = Journal::at(&dir);
        assert!(journal.take_orphans().unwrap().is_empty());
        journal.remove("no.such.key").unwrap();
        assert!(!dir.exists(), "recovery alone created {}", dir.display());
    }
}
