//! Where things live: the cache outside the repository, the workspace, the build outputs.

use std::path::{Path, PathBuf};

/// Kernels, packages and apt state are cached here between runs (never in the repository):
/// `$ZCCHECK_VM_CACHE`, else `$XDG_CACHE_HOME/zccheck-vm`, else `~/.cache/zccheck-vm`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("ZCCHECK_VM_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("zccheck-vm");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cache").join("zccheck-vm")
}

/// The workspace this runner was built from.
pub fn workspace() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..")
        .canonicalize()
        .unwrap_or_else(|_| here.join("../.."))
}

pub fn default_kernel_list() -> PathBuf {
    workspace().join("ci/kernels.toml")
}
