//! Which writes are journalled: only machine-wide ones, decided before writing. Runs in a
//! process of its own because it points the journal (ZCCHECK_STATE_DIR) at a directory that
//! cannot be created, as on a read-only /run. Needs root (namespaces, sysctl writes).

use harness::sysctl::{self, JournalUnavailable, Scope};
use harness::NetNs;

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root");
    false
}

/// The journal cannot exist here: any attempt to use it fails.
fn unusable_journal() {
    std::env::set_var("ZCCHECK_STATE_DIR", "/proc/zccheck-cannot-exist/state");
}

#[test]
fn per_namespace_writes_never_touch_the_journal_and_global_ones_are_refused_without_it() {
    if !root() {
        return;
    }
    unusable_journal();
    let ns = NetNs::new("scope-test").unwrap();
    // Per namespace: decided before writing, written without a journal, outer untouched.
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.default.accept_dad"] {
        let outer = sysctl::read_outer(key).unwrap();
        let flipped = if outer == "1" { "0" } else { "1" };
        assert_eq!(sysctl::scope_in(&ns, key).unwrap(), Scope::PerNamespace);
        let guard = sysctl::set_in(&ns, key, flipped)
            .unwrap_or_else(|e| panic!("{key}: a per-namespace write needed the journal: {e:#}"));
        assert_eq!(guard.scope, Scope::PerNamespace);
        assert_eq!(sysctl::read_in(&ns, key).unwrap(), flipped);
        assert_eq!(sysctl::read_outer(key).unwrap(), outer);
    }
    // The same file from everywhere, or a file only the initial namespace has: machine-wide.
    assert_eq!(
        sysctl::scope_in(&ns, "vm.swappiness").unwrap(),
        Scope::Global
    );
    assert_eq!(
        sysctl::scope_in(&ns, "net.core.netdev_max_backlog").unwrap(),
        Scope::Global
    );
    // A machine-wide write without a journal is refused before anything is written.
    let key = "net.core.netdev_max_backlog";
    let before = sysctl::read_outer(key).unwrap();
    let bumped = (before.parse::<u64>().unwrap() + 1).to_string();
    let err = sysctl::set_global(key, &bumped).unwrap_err();
    assert!(
        err.chain().any(|e| e.is::<JournalUnavailable>()),
        "not a JournalUnavailable: {err:#}"
    );
    assert!(format!("{err:#}").contains("/proc/zccheck-cannot-exist/state"));
    assert_eq!(sysctl::read_outer(key).unwrap(), before);
    // Recovery with no journal is nothing to do, not an error.
    assert!(sysctl::recover().unwrap().is_empty());
}
