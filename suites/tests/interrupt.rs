//! A case stopped and continued (SIGSTOP/SIGCONT: `^Z` and `fg`, a debugger, a checkpoint)
//! gets the same verdict as one left alone. Blocking calls under a timeout answer EINTR
//! after a stop even without a signal handler; the suite makes them again instead of
//! turning them into `error` (or into a false `fail`).
//!
//! Needs root (the cases build namespaces); without it the test says so and returns.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn bin() -> String {
    std::env::var("ZCCHECK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zccheck").into())
}

/// Cases that block in socket calls under SO_RCVTIMEO/SO_SNDTIMEO and in epoll_wait.
const CASES: &str = "send.ids.tcp4.pair,send.ids.udp4.lo,send.copied.tcp4.pair,\
                     send.epoll_edge.tcp4.lo,send.epoll_oneshot.tcp4.lo";

fn children_of(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[test]
fn stopped_and_continued_cases_keep_their_verdicts() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let run = Command::new(bin())
        .args(["run", "--cases", "64", "--timeout", "30", "--filter", CASES])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = run.id();
    // Stop every case process for 5 ms out of every 25, until the run ends.
    let hammer = std::thread::spawn(move || {
        let mut stops = 0u32;
        while std::fs::metadata(format!("/proc/{pid}/task")).is_ok() && stops < 100_000 {
            let kids = children_of(pid);
            for &c in &kids {
                let _ = kill(Pid::from_raw(c), Signal::SIGSTOP);
            }
            std::thread::sleep(Duration::from_millis(5));
            for &c in &kids {
                let _ = kill(Pid::from_raw(c), Signal::SIGCONT);
            }
            stops += kids.len() as u32;
            std::thread::sleep(Duration::from_millis(20));
        }
        stops
    });
    let out = run.wait_with_output().unwrap();
    let stops = hammer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let bad: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" FAIL "))
        .collect();
    assert!(stops > 10, "the cases were hardly stopped ({stops} stops)");
    assert!(bad.is_empty(), "after {stops} stops: {bad:#?}");
    assert!(out.status.success(), "{err}");
}
