//! A whole run: probes, every selected case, and the report.
//!
//! Cases run `jobs` at a time, each still in a process of its own ([`runner::run_one`]).
//! A case that declares itself serial ([`Case::serial`]: it touches machine-wide state) runs
//! alone: with more than one job, the cases that may share the machine go first, then the
//! serial ones one by one. With one job every case runs in registry order, as it always did.
//! Whatever the order of execution, the report lists the cases in registry order.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use harness::kernel::KernelInfo;
use harness::privileges::Privileges;

use crate::case::Case;
use crate::probes::{ProbeRecord, Requirement};
use crate::report::{terminal, CaseRecord, Environment, Report, Settings, Tool};
use crate::runner::{self, RunOptions};

/// Every distinct requirement of `cases`, in first-seen order.
pub fn requirements_of(cases: &[Case]) -> Vec<Requirement> {
    let mut seen: Vec<Requirement> = Vec::new();
    for r in cases.iter().flat_map(|c| &c.requires) {
        if !seen.contains(r) {
            seen.push(*r);
        }
    }
    seen
}

pub fn probe_all(reqs: &[Requirement]) -> Vec<ProbeRecord> {
    reqs.iter()
        .map(|r| ProbeRecord {
            name: r.name.to_string(),
            answer: r.answer(),
        })
        .collect()
}

/// Cases at a time when `--jobs` is not given: one per CPU this process may use.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// How often a run with nothing finishing says what is still running.
const STILL_RUNNING_EVERY: Duration = Duration::from_secs(10);

/// Runs `cases` (`jobs` at a time, see the module comment), printing progress on stderr, and
/// returns the report.
pub fn execute(
    cases: &[Case],
    opts: &RunOptions,
    filters: &[String],
    restored_sysctls: Vec<(String, String)>,
    progress: bool,
    jobs: usize,
) -> Result<Report> {
    let started = Instant::now();
    let kernel = KernelInfo::detect()?;
    let privileges = Privileges::detect()?;
    let probes = probe_all(&requirements_of(cases));
    let health = crate::health::RunStart::detect();
    if let Some(notice) = health.notice() {
        eprintln!("{notice}");
    }
    let records = run_cases(
        cases,
        jobs,
        |case| runner::run_one(opts, case),
        |event| {
            if progress {
                show(&event)
            }
        },
    );
    let mut report = Report {
        schema_version: crate::report::SCHEMA_VERSION,
        tool: Tool {
            name: "zccheck".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        kernel,
        environment: Environment {
            kind: std::env::var("ZCCHECK_ENVIRONMENT").unwrap_or_else(|_| "native".into()),
            privileges,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            restored_sysctls,
            extra: [(
                "kernel_health".to_string(),
                serde_json::to_value(&health).unwrap_or_default(),
            )]
            .into_iter()
            .collect(),
        },
        settings: Settings {
            filter: filters.to_vec(),
            seed: opts.seed,
            cases: opts.cases,
            timeout_s: opts.timeout.as_secs(),
            // Cases at a time: verdicts do not depend on it, durations do.
            extra: [("jobs".to_string(), serde_json::Value::from(jobs))]
                .into_iter()
                .collect(),
        },
        probes,
        cases: records,
        totals: BTreeMap::new(),
        duration_ms: started.elapsed().as_millis() as u64,
        extra: Default::default(),
        bench: None,
    };
    report.tally();
    Ok(report)
}

/// What the scheduler tells its caller while cases run.
#[derive(Debug)]
pub enum Event<'a> {
    /// A case finished; `running` are the ids still running, in start order.
    Finished {
        done: usize,
        total: usize,
        record: &'a CaseRecord,
        running: Vec<&'a str>,
    },
    /// Nothing finished for a while: what is running and for how long.
    StillRunning(Vec<(&'a str, Duration)>),
}

fn show(event: &Event) {
    match event {
        Event::Finished {
            done,
            total,
            record,
            running,
        } => terminal::progress_running(*done, *total, record, running),
        Event::StillRunning(running) => terminal::still_running(running),
    }
}

/// The order cases start in: registry order with one job; with more, the cases that may run
/// alongside others first, then the serial ones (so the run waits for an idle machine once,
/// not before every serial case).
pub fn start_order(cases: &[Case], jobs: usize) -> Vec<usize> {
    let all = 0..cases.len();
    if jobs <= 1 {
        return all.collect();
    }
    let (serial, shared): (Vec<usize>, Vec<usize>) = all.partition(|&i| cases[i].serial.is_some());
    shared.into_iter().chain(serial).collect()
}

/// Runs every case through `run`, at most `jobs` at a time and serial cases alone, and
/// returns the records in the order of `cases`. `run` is called on worker threads; `event`
/// on the calling thread.
pub fn run_cases<'c, R, E>(cases: &'c [Case], jobs: usize, run: R, mut event: E) -> Vec<CaseRecord>
where
    R: Fn(&'c Case) -> CaseRecord + Sync,
    E: FnMut(Event<'_>),
{
    let jobs = jobs.max(1);
    let order = start_order(cases, jobs);
    let mut records: Vec<Option<CaseRecord>> = vec![None; cases.len()];
    let (tx, rx) = mpsc::channel::<(usize, std::thread::Result<CaseRecord>)>();
    let run = &run;
    std::thread::scope(|scope| {
        let mut next = 0;
        // Index and start time of every running case, in start order.
        let mut running: Vec<(usize, Instant)> = Vec::new();
        let mut done = 0;
        loop {
            while let Some(&i) = order.get(next) {
                let alone = cases[i].serial.is_some();
                let serial_running = running.iter().any(|&(r, _)| cases[r].serial.is_some());
                let may_start = if alone {
                    running.is_empty()
                } else {
                    running.len() < jobs && !serial_running
                };
                if !may_start {
                    break;
                }
                let tx = tx.clone();
                let work = move || {
                    // A panic is handed over too, or the scheduler would wait for it forever.
                    let rec = std::panic::catch_unwind(AssertUnwindSafe(|| run(&cases[i])));
                    // The receiver lives until every case has reported.
                    let _ = tx.send((i, rec));
                };
                // Where no thread can be started (a tight RLIMIT_NPROC, a pids cgroup), the
                // case runs on this thread: slower, but the run goes on and the case itself
                // says what it could not start.
                let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(work)));
                let for_thread = shared.clone();
                let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                    if let Some(w) = for_thread.lock().expect("case work").take() {
                        w()
                    }
                });
                if spawned.is_err() {
                    if let Some(w) = shared.lock().expect("case work").take() {
                        w()
                    }
                }
                running.push((i, Instant::now()));
                next += 1;
            }
            if running.is_empty() {
                break;
            }
            match rx.recv_timeout(STILL_RUNNING_EVERY) {
                Ok((i, rec)) => {
                    let rec = rec.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    running.retain(|&(r, _)| r != i);
                    done += 1;
                    event(Event::Finished {
                        done,
                        total: cases.len(),
                        record: &rec,
                        running: running.iter().map(|&(r, _)| cases[r].id.as_str()).collect(),
                    });
                    records[i] = Some(rec);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => event(Event::StillRunning(
                    running
                        .iter()
                        .map(|&(r, t)| (cases[r].id.as_str(), t.elapsed()))
                        .collect(),
                )),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("the scheduler holds a sender until the end")
                }
            }
        }
    });
    records
        .into_iter()
        .map(|r| r.expect("every case ran and reported"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::case::Area;
    use crate::outcome::{Outcome, Verdict};

    fn case(id: &str, serial: bool) -> Case {
        let c = Case::new(id, Area::Send, "t", vec![], |_| Ok(Verdict::pass("")));
        if serial {
            c.serial("test")
        } else {
            c
        }
    }

    fn record(c: &Case) -> CaseRecord {
        CaseRecord {
            id: c.id.clone(),
            area: c.area,
            title: c.title.clone(),
            outcome: Outcome::Pass,
            reason: String::new(),
            evidence: None,
            observed: Default::default(),
            timing_facts: vec![],
            property: None,
            replay: String::new(),
            duration_ms: 0,
            extra: Default::default(),
        }
    }

    fn sample() -> Vec<Case> {
        (0..12)
            .map(|i| case(&format!("send.c{i}"), i % 5 == 1))
            .collect()
    }

    /// Runs `cases` with a fake case body that records how many ran at once, and whether a
    /// serial case ever had company.
    /// `watch` names one more case to check for company (to prove the check can fail).
    fn run_fake(
        cases: &[Case],
        jobs: usize,
        watch: &str,
    ) -> (Vec<CaseRecord>, usize, bool, Vec<String>) {
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let serial_shared = Mutex::new(false);
        let started = Mutex::new(Vec::new());
        let records = run_cases(
            cases,
            jobs,
            |c| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                started.lock().unwrap().push(c.id.clone());
                // Looked at mid-way, when cases started with this one are surely running.
                std::thread::sleep(Duration::from_millis(25));
                if (c.serial.is_some() || c.id == watch) && now.load(Ordering::SeqCst) != 1 {
                    *serial_shared.lock().unwrap() = true;
                }
                std::thread::sleep(Duration::from_millis(25));
                now.fetch_sub(1, Ordering::SeqCst);
                record(c)
            },
            |_| {},
        );
        let shared = *serial_shared.lock().unwrap();
        let order = started.into_inner().unwrap();
        (records, most.into_inner(), shared, order)
    }

    #[test]
    fn one_job_runs_in_registry_order() {
        let cases = sample();
        let (records, most, _, order) = run_fake(&cases, 1, "");
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(most, 1);
        assert_eq!(order, ids);
        assert_eq!(
            records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ids
        );
    }

    #[test]
    fn jobs_run_together_serial_cases_alone_report_in_registry_order() {
        let cases = sample();
        let (records, most, serial_shared, order) = run_fake(&cases, 3, "");
        assert_eq!(most, 3, "three jobs never ran three cases at once");
        assert!(!serial_shared, "a serial case ran alongside another");
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ids
        );
        // The serial cases start last, after every shared one.
        let first_serial = order.iter().position(|id| id == "send.c1").unwrap();
        assert_eq!(
            first_serial,
            cases.iter().filter(|c| c.serial.is_none()).count()
        );
    }

    /// The check above can fail: the same case unmarked has company.
    #[test]
    fn the_serial_check_sees_company() {
        let mut cases = sample();
        cases[1] = case("send.c1", false);
        let (_, _, shared, _) = run_fake(&cases, 3, "send.c1");
        assert!(
            shared,
            "an unmarked case ran alone: the check proves nothing"
        );
    }
}
