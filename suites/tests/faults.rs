//! The suite against a simulated faulty kernel: `tests/faults/shim.c`, built here and loaded
//! with LD_PRELOAD into every case process, breaks one error-queue notification or one
//! TCP_ZEROCOPY_RECEIVE answer per process in a way the contract forbids. Every case where
//! the fault fired must be `fail`, and where the fault is in a field, the reason must name it.
//!
//! Needs root (namespaces) and a C compiler; without either the test says so and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

const SEND_CASES: &str = "send.format.tcp4.lo,send.format.udp6.lo,send.counter.tcp4.lo,\
                          send.counter.udp6.pair,send.copied.udp4.deadend,send.ctrunc.tcp4.lo,\
                          send.ids.tcp4.lo";
const RECEIVE_CASES: &str = "receive.fields.inq,receive.fields.skip_hint,receive.end.eio,\
                             receive.copybuf.straggler,receive.integrity.lo,receive.alignment.lo,receive.loop.lo";

/// The receive cases whose queue is settled when they call (nothing arrives meanwhile), where
/// `inq` and the hint are known exactly. In a loop that receives while the peer still sends,
/// an inflated `inq` or hint is caught only when it exceeds what SIOCINQ shows right after
/// the call, which data arriving meanwhile can hide.
const SETTLED_RECEIVE_CASES: &str = "receive.fields.inq,receive.fields.skip_hint,\
                                     receive.end.eio,receive.copybuf.straggler,\
                                     receive.alignment.lo,receive.optlen.reserved";

/// The receive cases whose streams all end with a FIN or stay open. A stream that ends with
/// a reset closes the sender and its owed notifications with it, so a dropped notification
/// there breaks nothing anyone can see (`receive.loop.*` resets some of its streams).
const NO_RESET_RECEIVE_CASES: &str = "receive.fields.inq,receive.fields.skip_hint,\
                                      receive.end.eio,receive.copybuf.straggler,\
                                      receive.integrity.lo,receive.alignment.lo";

/// The cases that judge the optlen the kernel writes back.
const OPTLEN_CASES: &str = "receive.optlen.ladder,receive.optlen.nonzero_tail";

/// Each fault, the cases it is tried on, and a word the failure must contain (in the reason
/// or the evidence), if the fault is one field.
const FAULTS: &[(&str, &str, Option<&str>)] = &[
    ("eq_errno", SEND_CASES, Some("ee_errno")),
    ("eq_pad", SEND_CASES, Some("ee_pad")),
    ("eq_code", SEND_CASES, Some("ee_code")),
    ("eq_origin", SEND_CASES, Some("ee_origin")),
    ("eq_no_errqueue_flag", SEND_CASES, Some("MSG_ERRQUEUE")),
    ("eq_ctrunc", SEND_CASES, Some("MSG_CTRUNC")),
    ("eq_level", SEND_CASES, Some("RECVERR")),
    ("eq_dup", SEND_CASES, Some("repeats")),
    ("eq_shift", SEND_CASES, None),
    ("eq_drop", SEND_CASES, None),
    // The receive area's MSG_ZEROCOPY sender reads its notifications through the same reader.
    ("eq_drop", NO_RESET_RECEIVE_CASES, None),
    ("eq_dup", RECEIVE_CASES, Some("repeats")),
    ("zc_err", RECEIVE_CASES, Some("err")),
    ("zc_inq", SETTLED_RECEIVE_CASES, Some("inq")),
    ("zc_skip", SETTLED_RECEIVE_CASES, None),
    ("zc_length", RECEIVE_CASES, None),
    ("zc_optlen_grow", OPTLEN_CASES, Some("larger than")),
];

fn build_shim(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/shim.c");
    let out = dir.join("libzcfault.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .status();
    match built {
        Ok(s) if s.success() => Some(out),
        other => {
            eprintln!("skipped: cannot build the fault shim with cc: {other:?}");
            None
        }
    }
}

#[test]
fn every_forbidden_fault_fails_every_case_it_fires_in() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the fault tests need root");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults");
    std::fs::create_dir_all(&dir).unwrap();
    let Some(shim) = build_shim(&dir) else {
        return;
    };
    let mut problems = Vec::new();
    for (fault, cases, word) in FAULTS {
        let tag = if *cases == SEND_CASES {
            "send"
        } else {
            "receive"
        };
        let log = dir.join(format!("{fault}.{tag}.log"));
        let json = dir.join(format!("{fault}.{tag}.json"));
        let _ = std::fs::remove_file(&log);
        let out = Command::new(env!("CARGO_BIN_EXE_zccheck"))
            .args(["run", "--cases", "4", "--filter", cases, "--json"])
            .arg(&json)
            .env("LD_PRELOAD", &shim)
            .env("ZCFAULT", fault)
            .env("ZCFAULT_LOG", &log)
            .output()
            .expect("running zccheck");
        let report: serde_json::Value = match std::fs::read_to_string(&json) {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            Err(e) => {
                problems.push(format!(
                    "{fault}: no report ({e}): {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
        };
        let fired: std::collections::BTreeSet<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        let ran = report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["outcome"] == "pass" || c["outcome"] == "fail");
        if fired.is_empty() && ran {
            problems.push(format!("{fault}: fired in no case"));
        }
        for c in report["cases"].as_array().unwrap() {
            let id = c["id"].as_str().unwrap();
            if !fired.contains(id) {
                continue;
            }
            let text = format!(
                "{} {}",
                c["reason"].as_str().unwrap_or(""),
                c["evidence"].as_str().unwrap_or("")
            );
            if c["outcome"] != "fail" {
                problems.push(format!("{fault}: {id} is {}: {}", c["outcome"], text));
            } else if let Some(w) = word {
                if !text.contains(w) {
                    problems.push(format!("{fault}: {id} failed without naming {w}: {text}"));
                }
            }
        }
        eprintln!("{fault}: fired in {} case(s)", fired.len());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
