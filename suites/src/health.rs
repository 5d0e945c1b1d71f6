//! The kernel's own health as part of every verdict.
//!
//! A case during which the kernel prints a WARNING, a BUG, an oops, a KASAN/UBSAN/lockdep
//! report or a panic, or during which a new taint flag is set, has found a kernel bug whatever
//! its checker said: its record becomes `fail` with the report's first lines and the taint
//! flags as evidence.
//!
//! The watch is per case window, in the parent: `/dev/kmsg` is opened and put at its end just
//! before the case starts, and read to its (new) end just after the case ended, so cases that
//! run at the same time each see every record printed while they ran (a record is attributed
//! to every case whose window contains it), and nothing printed before the run counts.
//!
//! What counts as a splat:
//! * a record of the kernel facility (0) whose text looks like the start of a report
//!   ([`looks_like_splat`]);
//! * a record of any other facility only if it looks like a splat *and* carries the token of
//!   this very case ([`case_token`]). Userspace writes to `/dev/kmsg` always get a non-kernel
//!   facility (LOG_USER unless they name another), so they cannot forge a kernel record; the
//!   token is how the hidden `selftest.health.*` case provokes a splat-looking line that fails
//!   itself and no other case (of this run, or of another run on the same machine).
//!
//! Taint: `/proc/sys/kernel/tainted` is read before and after the case; a bit that is set
//! after and was clear before fails the case. A run that starts on a tainted kernel says so
//! once (in the report's environment) and judges only new taint.
//!
//! Without read access to `/dev/kmsg` (rootless, `dmesg_restrict`) the splat check is not
//! made, and the report says so; taint is world-readable and still checked.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use serde::Serialize;

use crate::outcome::Outcome;
use crate::report::CaseRecord;

const KMSG: &str = "/dev/kmsg";
const TAINTED: &str = "/proc/sys/kernel/tainted";
/// Lines of a splat kept as evidence.
const EVIDENCE_LINES: usize = 16;
/// The largest record /dev/kmsg hands out is well under this.
const RECORD_BUF: usize = 16 * 1024;

/// Marks a line a selftest writes to `/dev/kmsg` on purpose; see [`case_token`].
pub const SELFTEST_MARK: &str = "zccheck-health-selftest";

/// The token that makes a non-kernel `/dev/kmsg` line count for one case of one run: the
/// run's process id (the parent of every case process) and the case id.
pub fn case_token(run_pid: u32, case_id: &str) -> String {
    format!("{SELFTEST_MARK} run={run_pid} case={case_id}")
}

/// Starts of kernel reports (the text after the record header).
const STARTS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "kernel BUG at",
    "Oops:",
    "Oops -",
    "Kernel panic",
    "UBSAN:",
    "general protection fault",
    "Unable to handle kernel",
    "unreferenced object",
    "INFO: possible",
    "INFO: task",
    "INFO: rcu",
    "refcount_t:",
    "list_add corruption",
    "list_del corruption",
    "stack segment:",
    "invalid opcode:",
];

/// Reports that may start after a prefix (`watchdog: BUG: soft lockup`, `rcu: INFO: ...`).
const CONTAINS: &[&str] = &[
    "BUG: soft lockup",
    "BUG: KASAN",
    "BUG: KFENCE",
    "UBSAN:",
    "general protection fault",
    "Kernel panic - not syncing",
    "detected stalls on CPUs",
    "self-detected stall",
    "blocked for more than",
    "circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
];

/// Whether a record's text looks like the first line of a kernel report.
pub fn looks_like_splat(text: &str) -> bool {
    let t = text.trim_start();
    STARTS.iter().any(|s| t.starts_with(s)) || CONTAINS.iter().any(|s| t.contains(s))
}

/// One `/dev/kmsg` record: `facility`, and its text (the first line of the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub facility: u32,
    pub level: u32,
    pub seq: u64,
    pub text: String,
}

/// Parses one record as `/dev/kmsg` hands it out: `pri,seq,ts,flags[,...];text\n[ KEY=v\n]*`.
pub fn parse_record(raw: &str) -> Option<Record> {
    let (head, rest) = raw.split_once(';')?;
    let mut fields = head.split(',');
    let pri: u32 = fields.next()?.trim().parse().ok()?;
    let seq: u64 = fields.next()?.trim().parse().ok()?;
    let text = rest.split('\n').next().unwrap_or("").to_string();
    Some(Record {
        facility: pri >> 3,
        level: pri & 7,
        seq,
        text,
    })
}

/// The taint flag letters, by bit (`Documentation/admin-guide/tainted-kernels.rst`).
const TAINT_FLAGS: &[(u32, char, &str)] = &[
    (0, 'P', "proprietary module"),
    (1, 'F', "module force-loaded"),
    (2, 'S', "unsafe SMP / out of spec"),
    (3, 'R', "module force-unloaded"),
    (4, 'M', "machine check"),
    (5, 'B', "bad page"),
    (6, 'U', "taint requested by userspace"),
    (7, 'D', "kernel died (oops/BUG)"),
    (8, 'A', "ACPI table overridden"),
    (9, 'W', "kernel warning"),
    (10, 'C', "staging driver"),
    (11, 'I', "firmware workaround"),
    (12, 'O', "out-of-tree module"),
    (13, 'E', "unsigned module"),
    (14, 'L', "soft lockup"),
    (15, 'K', "live patched"),
    (16, 'X', "auxiliary"),
    (17, 'T', "randstruct"),
    (18, 'N', "test taint"),
    (19, 'J', "fwctl"),
];

/// `mask` as letters with meanings, e.g. `W (kernel warning), D (kernel died (oops/BUG))`.
pub fn taint_names(mask: u64) -> String {
    let mut out = Vec::new();
    for bit in 0..64u32 {
        if mask & (1 << bit) == 0 {
            continue;
        }
        match TAINT_FLAGS.iter().find(|(b, _, _)| *b == bit) {
            Some((_, letter, meaning)) => out.push(format!("{letter} ({meaning})")),
            None => out.push(format!("bit {bit}")),
        }
    }
    out.join(", ")
}

pub fn read_taint() -> io::Result<u64> {
    let s = std::fs::read_to_string(TAINTED)?;
    s.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{TAINTED}: {e}")))
}

/// The kernel's health when a run starts, for the report's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStart {
    pub taint_at_start: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taint_flags_at_start: Option<String>,
    /// "watched", or why the splat check is not made.
    pub kmsg: String,
}

impl RunStart {
    pub fn detect() -> Self {
        let taint = read_taint().ok();
        let kmsg = match open_at_end() {
            Ok(_) => "watched".to_string(),
            Err(e) => format!("not checked: cannot read {KMSG}: {e}"),
        };
        RunStart {
            taint_at_start: taint,
            taint_flags_at_start: taint.filter(|t| *t != 0).map(taint_names),
            kmsg,
        }
    }

    /// The one line a run prints about the kernel's health, if there is anything to say.
    pub fn notice(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(flags) = &self.taint_flags_at_start {
            parts.push(format!(
                "the kernel is already tainted ({flags}); only new taint is judged"
            ));
        }
        if self.kmsg != "watched" {
            parts.push(format!("kernel messages {}", self.kmsg));
        }
        (!parts.is_empty()).then(|| format!("kernel health: {}", parts.join("; ")))
    }
}

fn open_at_end() -> io::Result<File> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(KMSG)?;
    f.seek(SeekFrom::End(0))?;
    Ok(f)
}

/// The watch over one case's window.
pub struct Watch {
    kmsg: Result<File, String>,
    taint_before: Option<u64>,
    token: String,
}

/// What the kernel did during a case's window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The first lines of each splat, in order.
    pub splats: Vec<Vec<String>>,
    /// Taint bits set during the window.
    pub new_taint: u64,
    /// Why the splat check was not made, if it was not.
    pub kmsg_unchecked: Option<String>,
    /// Splat-looking lines of another facility without this case's token (not judged).
    pub foreign_user_lines: usize,
}

impl Findings {
    pub fn unhealthy(&self) -> bool {
        !self.splats.is_empty() || self.new_taint != 0
    }
}

impl Watch {
    /// Starts watching just before case `case_id` starts.
    pub fn start(case_id: &str) -> Self {
        Watch {
            kmsg: open_at_end().map_err(|e| format!("cannot read {KMSG}: {e}")),
            taint_before: read_taint().ok(),
            token: case_token(std::process::id(), case_id),
        }
    }

    /// Reads what the kernel said since [`Watch::start`].
    pub fn finish(self) -> Findings {
        let mut findings = Findings::default();
        match self.kmsg {
            Ok(mut f) => {
                let records = read_records(&mut f);
                judge_records(&records, &self.token, &mut findings);
            }
            Err(e) => findings.kmsg_unchecked = Some(e),
        }
        if let (Some(before), Ok(after)) = (self.taint_before, read_taint()) {
            findings.new_taint = after & !before;
        }
        findings
    }
}

/// Every record from the file's position to its end (never blocks: the file is O_NONBLOCK).
fn read_records(f: &mut File) -> Vec<Record> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; RECORD_BUF];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(r) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                    out.push(r);
                }
            }
            // EPIPE: records were overwritten before we read them; the next read goes on
            // from the oldest one left.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    out
}

/// Finds the splats in `records`; see the module documentation for what counts.
pub fn judge_records(records: &[Record], token: &str, findings: &mut Findings) {
    let mut i = 0;
    while i < records.len() {
        let r = &records[i];
        let kernel = r.facility == 0;
        if !looks_like_splat(&r.text) {
            i += 1;
            continue;
        }
        if !kernel && !r.text.contains(token) {
            findings.foreign_user_lines += 1;
            i += 1;
            continue;
        }
        // The report's first lines: this record and the records of the same facility that
        // follow it, up to the next report.
        let mut lines = vec![r.text.clone()];
        let mut j = i + 1;
        while j < records.len() && lines.len() < EVIDENCE_LINES {
            let next = &records[j];
            if next.facility == r.facility {
                if looks_like_splat(&next.text) && kernel {
                    break;
                }
                lines.push(next.text.clone());
            }
            j += 1;
        }
        findings.splats.push(lines);
        i = if kernel { j } else { i + 1 };
    }
}

/// Turns `rec` into a `fail` if the kernel was unhealthy during the case, keeping what the
/// case's own checker said in the evidence.
pub fn apply(rec: &mut CaseRecord, findings: &Findings) {
    if let Some(why) = &findings.kmsg_unchecked {
        rec.observed.insert(
            "suite.kernel_messages".into(),
            format!("not checked: {why}").into(),
        );
    }
    if findings.foreign_user_lines > 0 {
        rec.observed.insert(
            "suite.kernel_messages_ignored_user_lines".into(),
            findings.foreign_user_lines.into(),
        );
    }
    if !findings.unhealthy() {
        return;
    }
    let mut what = Vec::new();
    let mut evidence = String::new();
    if let Some(first) = findings.splats.first() {
        what.push(format!(
            "the kernel reported `{}`",
            first.first().map(String::as_str).unwrap_or("")
        ));
        for (n, s) in findings.splats.iter().enumerate() {
            evidence.push_str(&format!(
                "kernel report {} of {}:\n",
                n + 1,
                findings.splats.len()
            ));
            for l in s {
                evidence.push_str(&format!("  {l}\n"));
            }
        }
    }
    if findings.new_taint != 0 {
        let names = taint_names(findings.new_taint);
        what.push(format!("the kernel became tainted: {names}"));
        evidence.push_str(&format!(
            "new taint during the case: {:#x} = {names}\n",
            findings.new_taint
        ));
    }
    evidence.push_str(&format!(
        "the case's own verdict: {}: {}",
        rec.outcome, rec.reason
    ));
    if let Some(e) = &rec.evidence {
        evidence.push_str(&format!("\nits evidence:\n{e}"));
    }
    rec.outcome = Outcome::Fail;
    rec.reason = format!("kernel health during the case: {}", what.join("; "));
    rec.evidence = Some(evidence);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Area;

    fn rec(facility: u32, text: &str) -> Record {
        Record {
            facility,
            level: 4,
            seq: 0,
            text: text.into(),
        }
    }

    fn record(outcome: Outcome) -> CaseRecord {
        CaseRecord {
            id: "x.y".into(),
            area: Area::Send,
            title: "t".into(),
            outcome,
            reason: "ok".into(),
            evidence: None,
            observed: Default::default(),
            timing_facts: vec![],
            property: None,
            replay: String::new(),
            duration_ms: 0,
            extra: Default::default(),
        }
    }

    #[test]
    fn parses_a_kmsg_record() {
        let r =
            parse_record("4,1234,5678,-;WARNING: CPU: 1 PID: 2 at net/x.c:3 f+0x1\n SUBSYSTEM=x\n")
                .unwrap();
        assert_eq!(r.facility, 0);
        assert_eq!(r.level, 4);
        assert_eq!(r.seq, 1234);
        assert!(r.text.starts_with("WARNING: CPU: 1"));
        let u = parse_record("12,7,1,-;hello").unwrap();
        assert_eq!(u.facility, 1);
        assert!(parse_record("garbage").is_none());
    }

    #[test]
    fn recognises_reports_and_not_ordinary_lines() {
        for s in [
            "WARNING: CPU: 0 PID: 1 at net/core/skbuff.c:1 x",
            "BUG: KASAN: use-after-free in tcp_zerocopy_receive+0x1",
            "UBSAN: shift-out-of-bounds in net/ipv4/tcp.c:12:3",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 22s!",
            "general protection fault, probably for non-canonical address 0xdead: 0000 [#1]",
            "Kernel panic - not syncing: Fatal exception",
            "WARNING: possible circular locking dependency detected",
            "kernel BUG at mm/memory.c:1!",
        ] {
            assert!(looks_like_splat(s), "{s}");
        }
        for s in [
            "veth0: entered promiscuous mode",
            "IPv6: ADDRCONF(NETDEV_CHANGE): veth1: link becomes ready",
            "device-mapper: uevent: version 1.0.3",
        ] {
            assert!(!looks_like_splat(s), "{s}");
        }
    }

    #[test]
    fn kernel_splat_fails_a_passing_case_with_its_lines() {
        let records = vec![
            rec(0, "veth0: entered promiscuous mode"),
            rec(0, "------------[ cut here ]------------"),
            rec(0, "WARNING: CPU: 1 PID: 9 at net/core/skbuff.c:7 skb_x+0x1"),
            rec(0, "Modules linked in: veth"),
            rec(0, "Call Trace:"),
        ];
        let mut f = Findings::default();
        judge_records(&records, "tok", &mut f);
        assert_eq!(f.splats.len(), 1);
        assert_eq!(f.splats[0].len(), 3);
        let mut r = record(Outcome::Pass);
        apply(&mut r, &f);
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(r.reason.contains("WARNING: CPU: 1"), "{}", r.reason);
        let ev = r.evidence.unwrap();
        assert!(
            ev.contains("Call Trace:") && ev.contains("own verdict: pass"),
            "{ev}"
        );
    }

    #[test]
    fn user_lines_count_only_with_the_case_token() {
        let token = case_token(42, "selftest.health.splat");
        let records = vec![
            rec(1, "WARNING: CPU: 0 PID: 1 at nothing (someone else's fake)"),
            rec(
                1,
                &format!("WARNING: CPU: 0 PID: 1 at x {}", case_token(43, "a.b")),
            ),
            rec(1, &format!("WARNING: CPU: 0 PID: 1 at x {token}")),
        ];
        let mut f = Findings::default();
        judge_records(&records, &token, &mut f);
        assert_eq!(f.splats.len(), 1);
        assert_eq!(f.foreign_user_lines, 2);
    }

    #[test]
    fn a_tainted_start_and_an_unread_kmsg_are_said_once() {
        let clean = RunStart {
            taint_at_start: Some(0),
            taint_flags_at_start: None,
            kmsg: "watched".into(),
        };
        assert_eq!(clean.notice(), None);
        let tainted = RunStart {
            taint_at_start: Some(1 << 12),
            taint_flags_at_start: Some(taint_names(1 << 12)),
            kmsg: "not checked: cannot read /dev/kmsg: Permission denied".into(),
        };
        let n = tainted.notice().unwrap();
        assert!(
            n.contains("already tainted (O (out-of-tree module))"),
            "{n}"
        );
        assert!(n.contains("not checked"), "{n}");
        let mut r = record(Outcome::Pass);
        apply(
            &mut r,
            &Findings {
                kmsg_unchecked: Some("cannot read /dev/kmsg".into()),
                ..Default::default()
            },
        );
        assert_eq!(r.outcome, Outcome::Pass);
        assert!(r.observed["suite.kernel_messages"]
            .as_str()
            .unwrap()
            .starts_with("not checked"));
    }

    #[test]
    fn new_taint_fails_and_old_taint_does_not() {
        let mut r = record(Outcome::Pass);
        apply(&mut r, &Findings::default());
        assert_eq!(r.outcome, Outcome::Pass);
        let f = Findings {
            new_taint: 1 << 9,
            ..Default::default()
        };
        let mut r = record(Outcome::Skipped);
        apply(&mut r, &f);
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(r.reason.contains("W (kernel warning)"), "{}", r.reason);
        assert_eq!(
            taint_names(0x201),
            "P (proprietary module), W (kernel warning)"
        );
    }
}
