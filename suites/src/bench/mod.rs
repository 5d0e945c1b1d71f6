//! `zccheck bench`: what zero-copy costs and saves on this kernel, per mode and path.
//!
//! For every mode (see [`modes`]) and path (see [`paths`]) and each message size on a log
//! scale, the benchmark measures the CPU time per byte of the sending and the receiving
//! thread (their own CPU clocks) and the throughput, over several repetitions after a
//! warm-up, with the threads pinned to different CPUs where there are two. Repetitions of
//! all modes of a path are interleaved (repetition 1 of every mode, then 2, ...), so a change
//! in the machine's load hits every mode alike. From the repetitions it finds each zero-copy
//! mode's crossover with its copy baseline ([`crossover`]), and records the machine it ran on
//! ([`context`]). [`render`] and [`svg`] turn the result into tables and a plot.

pub mod cli;
pub mod context;
pub mod crossover;
pub mod measure;
pub mod modes;
pub mod paths;
pub mod render;
pub mod stats;
pub mod svg;

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use self::context::{allowed_cpu_list, MachineContext};
use self::crossover::{human_size, Crossover, Point};
use self::measure::{repetition, Pins, RepResult};
use self::modes::{Mode, Side};
use self::paths::{PathKind, PathNets};
use self::stats::Summary;

/// What to measure and how long it may take.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub sizes: Vec<u64>,
    pub repetitions: usize,
    /// Time for the whole run; the repetitions get what set-up and warm-ups leave.
    pub budget: Duration,
    pub paths: Vec<PathKind>,
    /// Print a line per size on stderr.
    pub progress: bool,
}

impl Options {
    /// The default: 256 B to 1 MiB in steps of 2, five repetitions, 45 s in all.
    pub fn standard() -> Options {
        Options {
            quick: false,
            sizes: (0..=12).map(|k| 256u64 << k).collect(),
            repetitions: 5,
            budget: Duration::from_secs(45),
            paths: PathKind::ALL.to_vec(),
            progress: true,
        }
    }

    /// `--quick`: 256 B to 1 MiB in steps of 4, three repetitions, 6.5 s in all.
    pub fn quick() -> Options {
        Options {
            quick: true,
            sizes: (0..=6).map(|k| 256u64 << (2 * k)).collect(),
            repetitions: 3,
            budget: Duration::from_millis(6500),
            ..Options::standard()
        }
    }
}

/// The `bench` section of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub context: MachineContext,
    pub settings: BenchSettings,
    /// Every mode, whether this kernel has it, and the probe that says so.
    pub modes: Vec<ModeStatus>,
    pub series: Vec<Series>,
    pub crossovers: Vec<CrossoverRecord>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchSettings {
    pub quick: bool,
    pub sizes: Vec<u64>,
    pub repetitions: usize,
    pub budget_s: f64,
    /// What a repetition is preceded by.
    pub warmup: String,
    /// CPUs of the sending and the receiving thread (`None`: not pinned).
    pub sender_cpu: Option<usize>,
    pub receiver_cpu: Option<usize>,
    /// What the cost figures are.
    pub metric: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeStatus {
    pub mode: Mode,
    pub side: Side,
    pub baseline: Option<Mode>,
    pub available: bool,
    pub detail: String,
}

/// One mode on one path, over the sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub path: PathKind,
    pub mode: Mode,
    pub setup: String,
    /// Why there are no points (mode absent, network not buildable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
    pub points: Vec<SeriesPoint>,
}

/// One size of a series: the repetitions and their summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub size: u64,
    /// Messages per repetition (calibrated by the warm-up).
    pub messages: u64,
    /// CPU ns per byte of the sending thread, one per repetition.
    pub sender_ns_per_byte: Vec<f64>,
    /// The same for the receiving thread (empty where nothing receives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receiver_ns_per_byte: Vec<f64>,
    /// Bytes per wall-clock second from the first send to the last byte received, in MB/s.
    pub throughput_mb_s: Vec<f64>,
    pub sender: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<Summary>,
    pub throughput: Option<Summary>,
    /// Of the zero-copy sends completed, the share the kernel reported as copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_fraction: Option<f64>,
    /// Zero-copy receive: the share of the bytes the kernel mapped rather than copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SeriesPoint {
    /// The repetitions of the thread `side` is about.
    pub fn cost(&self, side: Side) -> &[f64] {
        match side {
            Side::Send => &self.sender_ns_per_byte,
            Side::Receive => &self.receiver_ns_per_byte,
        }
    }

    pub fn cost_summary(&self, side: Side) -> Option<&Summary> {
        match side {
            Side::Send => self.sender.as_ref(),
            Side::Receive => self.receiver.as_ref(),
        }
    }
}

impl Series {
    pub fn point(&self, size: u64) -> Option<&SeriesPoint> {
        self.points.iter().find(|p| p.size == size)
    }
}

/// The crossover of one zero-copy mode with its baseline on one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossoverRecord {
    pub path: PathKind,
    pub mode: Mode,
    pub baseline: Mode,
    /// Whose CPU time is compared.
    pub side: Side,
    #[serde(flatten)]
    pub finding: Crossover,
    pub points: Vec<Point>,
}

impl BenchReport {
    pub fn series(&self, path: PathKind, mode: Mode) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.path == path && s.mode == mode)
    }
}

/// Runs the benchmark. Errors of one mode or path are recorded in the report, not returned.
pub fn run(opts: &Options) -> Result<BenchReport> {
    let started = Instant::now();
    let context = MachineContext::detect();
    let cpus = allowed_cpu_list();
    let pins = Pins {
        sender: cpus.first().copied(),
        receiver: cpus.get(1).or(cpus.first()).copied(),
    };
    let modes: Vec<ModeStatus> = Mode::ALL
        .iter()
        .map(|&m| {
            let (available, detail) = match m.available(false) {
                Ok(()) => (true, "present".to_string()),
                Err(why) => (false, why),
            };
            ModeStatus {
                mode: m,
                side: m.side(),
                baseline: m.baseline(),
                available,
                detail,
            }
        })
        .collect();

    // Plan every (path, size, mode) arm first, to share the time budget out evenly.
    let mut plan: Vec<(PathKind, Vec<Mode>, Vec<u64>)> = Vec::new();
    let mut series: Vec<Series> = Vec::new();
    for &path in &opts.paths {
        let mut runnable = Vec::new();
        for &mode in &Mode::ALL {
            if mode.side() == Side::Receive && !path.delivers() {
                continue;
            }
            let not_measured = match (mode, mode.available(path == PathKind::Deadend)) {
                (_, Err(why)) => Some(format!("not measured: {why}")),
                (Mode::ZcrxNodev, Ok(())) => Some(
                    "not measured: the kernel has device-less zcrx, but this zccheck has no \
                     zcrx receive loop yet"
                        .to_string(),
                ),
                _ => None,
            };
            if not_measured.is_none() {
                runnable.push(mode);
            }
            series.push(Series {
                path,
                mode,
                setup: path.setup(mode.side()),
                not_measured,
                points: Vec::new(),
            });
        }
        let sizes = sizes_on(path, &opts.sizes);
        plan.push((path, runnable, sizes));
    }
    // Arms (mode × size) still to measure, and what set-up and warm-up of one cost so far.
    let mut arms_left: usize = plan.iter().map(|(_, m, s)| m.len() * s.len()).sum();
    let mut overhead = Overhead::default();

    for (path, runnable, sizes) in &plan {
        if runnable.is_empty() {
            continue;
        }
        let nets = match PathNets::build(*path) {
            Ok(n) => n,
            Err(e) => {
                for s in series.iter_mut().filter(|s| s.path == *path) {
                    s.not_measured
                        .get_or_insert_with(|| format!("the network could not be built: {e:#}"));
                }
                arms_left -= runnable.len() * sizes.len();
                continue;
            }
        };
        for &size in sizes {
            let left = opts.budget.as_secs_f64() - started.elapsed().as_secs_f64();
            let for_reps = left - overhead.per_arm() * arms_left as f64;
            let reps_left = (arms_left * opts.repetitions).max(1) as f64;
            let target = Duration::from_secs_f64((for_reps / reps_left).clamp(0.001, 0.2));
            if opts.progress {
                eprintln!(
                    "zccheck bench: {} {} ({} modes, {:.0} ms per repetition)",
                    path.id(),
                    human_size(size),
                    runnable.len(),
                    target.as_secs_f64() * 1000.0
                );
            }
            let (points, spent) =
                measure_size(&nets, runnable, size, opts.repetitions, target, pins);
            overhead.arms += runnable.len();
            overhead.total += spent;
            for (mode, point) in runnable.iter().zip(points) {
                if let Some(s) = series
                    .iter_mut()
                    .find(|s| s.path == *path && s.mode == *mode)
                {
                    s.points.push(point);
                }
            }
            arms_left -= runnable.len();
        }
    }

    let mut context = context;
    context.load_at_end = context::load_average();
    let crossovers = crossovers(&series, &context);
    Ok(BenchReport {
        settings: BenchSettings {
            quick: opts.quick,
            sizes: opts.sizes.clone(),
            repetitions: opts.repetitions,
            budget_s: opts.budget.as_secs_f64(),
            warmup: "one calibration run per mode and size, discarded; it also sets the \
                     repetition's message count"
                .into(),
            sender_cpu: pins.sender,
            receiver_cpu: pins.receiver,
            metric: "CPU ns per byte of the thread's own CLOCK_THREAD_CPUTIME_ID; throughput \
                     in MB/s of wall time"
                .into(),
        },
        context,
        modes,
        series,
        crossovers,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The sizes measured on `path`: those of `sizes` it can carry as one message, and its
/// largest message when some of `sizes` are larger (65507 B on the UDP dead end, in place of
/// 64 KiB).
pub fn sizes_on(path: PathKind, sizes: &[u64]) -> Vec<u64> {
    let Some(max) = path.max_message() else {
        return sizes.to_vec();
    };
    let mut out: Vec<u64> = sizes.iter().copied().filter(|&s| s <= max).collect();
    if sizes.iter().any(|&s| s > max) {
        out.push(max);
    }
    out
}

/// Time spent outside repetitions (connections, rings, warm-ups), to plan the rest.
#[derive(Default)]
struct Overhead {
    arms: usize,
    total: Duration,
}

impl Overhead {
    /// Seconds per arm; a guess until something was measured.
    fn per_arm(&self) -> f64 {
        if self.arms == 0 {
            0.02
        } else {
            self.total.as_secs_f64() / self.arms as f64
        }
    }
}

/// Connected ends of one mode, and how many messages its repetitions send.
struct Arm {
    tx: measure::SendEnd,
    rx: Option<measure::RecvEnd>,
    messages: u64,
}

/// Measures every mode at one size: a warm-up each, then the repetitions round-robin.
/// Returns the points and the time spent on set-up and warm-ups.
fn measure_size(
    nets: &PathNets,
    modes: &[Mode],
    size: u64,
    reps: usize,
    target: Duration,
    pins: Pins,
) -> (Vec<SeriesPoint>, Duration) {
    let limit = Duration::from_secs(5) + target * 20;
    let setup_started = Instant::now();
    let mut arms: Vec<Result<Arm, String>> = modes
        .iter()
        .map(|&mode| {
            let (mut tx, mut rx) = nets
                .ends(mode, size as usize)
                .map_err(|e| format!("set-up: {e:#}"))?;
            let pilot = (512 * 1024 / size).clamp(4, 256);
            let r = repetition(
                mode,
                size as usize,
                pilot,
                &mut tx,
                rx.as_mut(),
                pins,
                limit,
            )
            .map_err(|e| format!("warm-up: {e:#}"))?;
            let per_message = r.wall.as_secs_f64() / pilot as f64;
            let messages = (target.as_secs_f64() / per_message.max(1e-9)).clamp(4.0, 1e7) as u64;
            Ok(Arm { tx, rx, messages })
        })
        .collect();
    let spent = setup_started.elapsed();
    let mut results: Vec<Vec<RepResult>> = vec![Vec::new(); modes.len()];
    for _ in 0..reps {
        for (i, &mode) in modes.iter().enumerate() {
            let Ok(arm) = &mut arms[i] else { continue };
            match repetition(
                mode,
                size as usize,
                arm.messages,
                &mut arm.tx,
                arm.rx.as_mut(),
                pins,
                limit,
            ) {
                Ok(r) => results[i].push(r),
                Err(e) => arms[i] = Err(format!("repetition: {e:#}")),
            }
        }
    }
    let points = arms
        .into_iter()
        .zip(results)
        .map(|(arm, reps)| summarise(size, arm.as_ref().map(|a| &a.messages), &reps))
        .collect();
    (points, spent)
}

fn summarise(size: u64, arm: Result<&u64, &String>, reps: &[RepResult]) -> SeriesPoint {
    let per_byte = |d: std::time::Duration, bytes: u64| d.as_nanos() as f64 / bytes.max(1) as f64;
    let sender: Vec<f64> = reps
        .iter()
        .map(|r| per_byte(r.sender_cpu, r.bytes))
        .collect();
    let receiver: Vec<f64> = reps
        .iter()
        .filter_map(|r| r.receiver_cpu.map(|c| per_byte(c, r.bytes)))
        .collect();
    let throughput: Vec<f64> = reps
        .iter()
        .map(|r| r.bytes as f64 / r.wall.as_secs_f64().max(1e-9) / 1e6)
        .collect();
    let (copied, completed) = reps
        .iter()
        .fold((0, 0), |(a, b), r| (a + r.zc_copied, b + r.zc_completed));
    SeriesPoint {
        size,
        messages: arm.copied().unwrap_or(0),
        sender: Summary::of(&sender),
        receiver: Summary::of(&receiver),
        throughput: Summary::of(&throughput),
        sender_ns_per_byte: sender,
        receiver_ns_per_byte: receiver,
        throughput_mb_s: throughput,
        copied_fraction: (completed > 0).then(|| copied as f64 / completed as f64),
        mapped_fraction: reps.iter().any(|r| r.rx_mapped.is_some()).then(|| {
            let mapped: u64 = reps.iter().filter_map(|r| r.rx_mapped).sum();
            mapped as f64 / reps.iter().map(|r| r.bytes).sum::<u64>().max(1) as f64
        }),
        error: arm.err().cloned(),
    }
}

/// The crossover of every zero-copy series with its baseline on the same path.
pub fn crossovers(series: &[Series], context: &MachineContext) -> Vec<CrossoverRecord> {
    let mut out = Vec::new();
    for s in series.iter().filter(|s| s.mode.is_zero_copy()) {
        let baseline = s.mode.baseline().expect("zero-copy modes have one");
        let side = s.mode.side();
        let base = series
            .iter()
            .find(|b| b.path == s.path && b.mode == baseline);
        let (finding, points) = if !context.timing_meaningful {
            (
                Crossover::NotCompared {
                    why: "timings under TCG are not meaningful".into(),
                },
                vec![],
            )
        } else if let Some(why) = &s.not_measured {
            (Crossover::NotCompared { why: why.clone() }, vec![])
        } else {
            match base {
                Some(b) if b.not_measured.is_none() => {
                    let data: Vec<(u64, Vec<f64>, Vec<f64>)> = s
                        .points
                        .iter()
                        .filter_map(|p| {
                            let bp = b.point(p.size)?;
                            Some((p.size, p.cost(side).to_vec(), bp.cost(side).to_vec()))
                        })
                        .collect();
                    crossover::find(&data)
                }
                Some(b) => (
                    Crossover::NotCompared {
                        why: format!(
                            "the baseline {} was {}",
                            baseline.id(),
                            b.not_measured.as_deref().unwrap_or("not measured")
                        ),
                    },
                    vec![],
                ),
                None => (
                    Crossover::NotCompared {
                        why: format!("the baseline {} did not run", baseline.id()),
                    },
                    vec![],
                ),
            }
        };
        out.push(CrossoverRecord {
            path: s.path,
            mode: s.mode,
            baseline,
            side,
            finding,
            points,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_end_stops_at_the_largest_datagram() {
        let sizes: Vec<u64> = (0..=6).map(|k| 256u64 << (2 * k)).collect();
        assert_eq!(
            sizes_on(PathKind::Deadend, &sizes),
            vec![256, 1024, 4096, 16384, paths::MAX_UDP_PAYLOAD]
        );
        assert_eq!(sizes_on(PathKind::Veth, &sizes), sizes);
        assert_eq!(sizes_on(PathKind::Deadend, &[256, 1024]), vec![256, 1024]);
    }

    #[test]
    fn a_report_section_round_trips_through_json() {
        let b = render::tests::sample(false);
        let text = serde_json::to_string(&b).unwrap();
        let back: BenchReport = serde_json::from_str(&text).unwrap();
        // serde_json's default float parsing may be off in the last bit.
        let (a, b) = (
            serde_json::to_value(&back).unwrap(),
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        );
        assert!(close(&a, &b), "{a}\n{b}");
        assert!(text.contains("\"finding\":\"at\""), "{text}");
        assert!(text.contains("\"mode\":\"send.msg_zerocopy\""));
    }

    fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
            }
            (V::Array(x), V::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
            }
            (V::Object(x), V::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
            }
            _ => a == b,
        }
    }
}
