//! `zccheck-vm list --json` is what a CI engine fans out over: one entry per kernel of the
//! list, then the machine's own kernel, read without touching apt.

use std::process::Command;

#[test]
fn list_json_names_every_kernel_of_the_list() {
    let out = Command::new(env!("CARGO_BIN_EXE_zccheck-vm"))
        .args(["list", "--json"])
        .output()
        .expect("running zccheck-vm");
    assert!(out.status.success(), "{:?}", out);
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("list --json prints a JSON array");
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../kernels.toml"))
        .expect("the default kernel list");
    let listed = toml.lines().filter(|l| l.trim() == "[[kernel]]").count();
    assert_eq!(entries.len(), listed + 1, "{entries:?}");
    assert!(entries[..listed]
        .iter()
        .all(|e| e["native"] == false && e["line"].is_string()));
    assert_eq!(entries[listed]["native"], true);
}

#[test]
fn list_json_and_refresh_exclude_each_other() {
    let out = Command::new(env!("CARGO_BIN_EXE_zccheck-vm"))
        .args(["list", "--json", "--refresh"])
        .output()
        .expect("running zccheck-vm");
    assert!(!out.status.success());
}
