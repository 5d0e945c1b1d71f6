//! The kernel health watch turns a passing case into `fail` when a splat-looking line reaches
//! /dev/kmsg during it, and attributes the line to that case only: a case run next to it
//! keeps its own verdict.
//!
//! Needs root (writing and reading /dev/kmsg); without it the test says so and returns.

use std::process::Command;

#[test]
fn a_splat_during_a_passing_case_fails_that_case_only() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: writing /dev/kmsg needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("zccheck-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let out = Command::new(env!("CARGO_BIN_EXE_zccheck"))
        .args([
            "run",
            "--filter",
            "selftest.health.kmsg_splat,send.format.tcp4.lo",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("running zccheck");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = |id: &str| {
        report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in the report"))
            .clone()
    };
    let splat = case("selftest.health.kmsg_splat");
    assert_eq!(splat["outcome"], "fail", "{splat:#}");
    let evidence = splat["evidence"].as_str().unwrap_or("");
    assert!(
        evidence.contains("WARNING: CPU: 0") && evidence.contains("own verdict: pass"),
        "{evidence}"
    );
    let other = case("send.format.tcp4.lo");
    assert!(
        !other["reason"]
            .as_str()
            .unwrap_or("")
            .contains("kernel health"),
        "the selftest's line failed another case: {other:#}"
    );
    assert_eq!(report["environment"]["kernel_health"]["kmsg"], "watched");
}
