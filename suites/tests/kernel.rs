//! `cargo test` over the same registry `zccheck run` uses: one test per case, each run in its
//! own `zccheck __case` process exactly as the CLI does. `unsupported` and `skipped` cases
//! are reported as ignored with their reason; `fail` and `error` fail the test with the
//! evidence and the replay command. Cases run one at a time: some change per-user or global
//! kernel state (locked memory, global sysctls) that parallel cases would disturb.
//!
//! A case listed in `fixtures/known-kernel-bugs.toml` that fails for its listed reason is an
//! ignored test naming the kernel bug (an expected failure); any other failure fails.
//!
//! Environment: ZCCHECK_SEED fixes the seed (printed at the start), ZCCHECK_CASES the
//! property budget, ZCCHECK_TIMEOUT the per-case limit in seconds.

use std::path::PathBuf;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use zccheck::outcome::Outcome;
use zccheck::registry;
use zccheck::runner::{run_one, RunOptions};

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// A contract violation of a released kernel that CI's kernel may still have.
#[derive(serde::Deserialize, Clone)]
struct KnownBug {
    case: String,
    reason_contains: String,
    summary: String,
}

#[derive(serde::Deserialize)]
struct KnownBugs {
    bug: Vec<KnownBug>,
}

fn known_bugs() -> Vec<KnownBug> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/known-kernel-bugs.toml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    toml::from_str::<KnownBugs>(&text)
        .unwrap_or_else(|e| panic!("{path} is malformed: {e}"))
        .bug
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let privileges = harness::privileges::Privileges::detect().expect("reading privileges");
    if !privileges.cap_net_admin && harness::privileges::userns_allowed().is_ok() {
        // Same as `zccheck run`: without privileges, build namespaces in a user namespace of
        // our own. Must happen before any thread starts.
        harness::privileges::enter_rootless().expect("entering a user namespace");
    }
    let seed = env_num("ZCCHECK_SEED", {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        t.map(|d| d.as_secs()).unwrap_or(0)
    });
    let opts = RunOptions {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_zccheck")),
        seed,
        cases: env_num("ZCCHECK_CASES", 64),
        timeout: Duration::from_secs(env_num("ZCCHECK_TIMEOUT", 60)),
        replay_exe: env!("CARGO_BIN_EXE_zccheck").into(),
    };
    eprintln!("zccheck kernel cases: seed {seed} (set ZCCHECK_SEED to replay)");
    if let Ok(restored) = harness::sysctl::recover() {
        for (k, v) in restored {
            eprintln!("restored {k}={v} left by a killed run");
        }
    }
    // The default selection, plus the selftests that prove the send model can fail against
    // the real kernel (the runner's own selftests are exercised by tests/cleanup.rs).
    let mut cases = registry::select(registry::all(), &[]).expect("the default selection");
    cases.extend(
        registry::select(registry::all(), &["selftest.send_model".into()])
            .expect("the model selftests"),
    );
    let known = known_bugs();
    let trials = cases
        .into_iter()
        .map(|case| {
            let opts = opts.clone();
            let kind = case.area.name();
            let bug = known.iter().find(|b| b.case == case.id).cloned();
            Trial::ignorable_test(case.id.clone(), move || {
                let rec = run_one(&opts, &case);
                match rec.outcome {
                    Outcome::Pass => Ok(Completion::Completed),
                    Outcome::Unsupported | Outcome::Skipped => Ok(Completion::ignored_with(
                        format!("{}: {}", rec.outcome, rec.reason),
                    )),
                    Outcome::Fail
                        if bug
                            .as_ref()
                            .is_some_and(|b| rec.reason.contains(&b.reason_contains)) =>
                    {
                        let b = bug.as_ref().expect("checked above");
                        Ok(Completion::ignored_with(format!(
                            "known kernel bug (fixtures/known-kernel-bugs.toml): {}; `zccheck run` \
                             reports it as fail: {}",
                            b.summary, rec.reason
                        )))
                    }
                    Outcome::Fail | Outcome::Error => {
                        let mut msg = format!("{}: {}", rec.outcome, rec.reason);
                        if let Some(ev) = &rec.evidence {
                            msg.push_str(&format!("\n{ev}"));
                        }
                        msg.push_str(&format!("\nreplay: {}", rec.replay));
                        Err(Failed::from(msg))
                    }
                }
            })
            .with_kind(kind)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
