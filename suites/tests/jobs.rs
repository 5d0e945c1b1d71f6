//! Concurrency does not change verdicts: a sample of the suite (serial cases, property
//! tests, every area) runs with `--jobs 1` and with `--jobs 4`, and both runs must give each
//! case the same outcome and the same observed facts, apart from those recorded as
//! depending on timing (`CaseRecord::timing_facts`). The report lists cases in registry
//! order either way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use zccheck::report::{CaseRecord, Report};

/// Cases of every area, the serial ones among them, and property tests with facts.
const SAMPLE: &str = "send.opt_in,send.optmem,send.memlock,send.counter,send.ids.tcp4.lo,\
                      receive.fields,uring.error,uring.protocol.lo,devmem,zcrx";

fn run(jobs: &str, out: &Path) -> Option<Report> {
    let status = Command::new(env!("CARGO_BIN_EXE_zccheck"))
        .args(["run", "--filter", SAMPLE, "--seed", "7", "--cases", "8"])
        .args(["--jobs", jobs, "--json"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running zccheck");
    if status.code() == Some(2) {
        // Neither privileged nor able to go rootless: there is nothing to compare.
        return None;
    }
    Some(Report::load(out).expect("the run wrote its report"))
}

/// Outcome, reason's first word and non-timing facts, per case id, in report order.
fn verdicts(r: &Report) -> Vec<(String, String, BTreeMap<String, serde_json::Value>)> {
    r.cases
        .iter()
        .map(|c: &CaseRecord| {
            let facts = c
                .observed
                .iter()
                .filter(|(k, _)| !c.timing_facts.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (c.id.clone(), c.outcome.to_string(), facts)
        })
        .collect()
}

fn differences(a: &Report, b: &Report) -> Vec<String> {
    let (va, vb) = (verdicts(a), verdicts(b));
    let mut out = Vec::new();
    if va.len() != vb.len() {
        out.push(format!("{} cases against {}", va.len(), vb.len()));
    }
    for ((id, oa, fa), (idb, ob, fb)) in va.iter().zip(&vb) {
        if id != idb {
            out.push(format!("order: {id} where {idb} was"));
        } else if oa != ob {
            out.push(format!("{id}: {oa} with one job, {ob} with four"));
        } else if fa != fb {
            for k in fa.keys().chain(fb.keys()) {
                if fa.get(k) != fb.get(k) {
                    out.push(format!(
                        "{id}: fact {k} is {:?} with one job, {:?} with four",
                        fa.get(k),
                        fb.get(k)
                    ));
                }
            }
        }
    }
    out
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("zccheck-jobs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn one_job_and_four_give_the_same_verdicts() {
    let dir = tempdir();
    let Some(serial) = run("1", &dir.join("j1.json")) else {
        eprintln!("skipped: zccheck cannot build namespaces here");
        return;
    };
    let parallel = run("4", &dir.join("j4.json")).expect("the second run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        serial.cases.iter().any(|c| c.outcome.name() == "pass"),
        "the sample passed nothing: {serial:?}"
    );
    let diff = differences(&serial, &parallel);
    assert!(
        diff.is_empty(),
        "--jobs 1 and --jobs 4 differ:\n{}",
        diff.join("\n")
    );
}

/// The comparison can fail: a changed outcome, a changed fact and a changed order are seen,
/// a changed timing fact is not.
#[test]
fn the_comparison_sees_a_difference() {
    let text = include_str!("../../fixtures/samples/report-minimal.json");
    let a = Report::parse(text).unwrap();
    let mut b = a.clone();
    b.cases[0].outcome = zccheck::outcome::Outcome::Error;
    assert_eq!(differences(&a, &b).len(), 1);
    let mut b = a.clone();
    b.cases[0].observed.insert("x".into(), 1.into());
    assert_eq!(differences(&a, &b).len(), 1);
    b.cases[0].timing_facts.push("x".into());
    assert!(differences(&a, &b).is_empty());
    let mut b = a.clone();
    b.cases.swap(0, 1);
    assert_eq!(differences(&a, &b).len(), 2);
    assert!(differences(&a, &a).is_empty());
}
