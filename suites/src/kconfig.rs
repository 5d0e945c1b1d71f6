//! The kernel options the suite needs, and what a kernel without them means for each case.
//!
//! `ci/config` is a kselftest-style fragment a kernel developer merges into a tree; each
//! option in it carries a machine-read line saying which cases need it. At run start zccheck
//! reads the running kernel's configuration and names, in one line, the needed options it has
//! switched off; the cases that need one are `skipped` naming it (a configuration choice of
//! the environment), instead of failing in some unrelated way (a missing `flock` answering
//! ENOSYS, say).
//!
//! Only options the configuration explicitly switches off (`# CONFIG_X is not set`) count as
//! missing. An option the configuration does not mention at all is either unknown to that
//! kernel version (CONFIG_IO_URING_ZCRX on 6.1) or hidden behind a dependency that is itself
//! off: the first is the kernel lacking the feature, which the cases' probes report as
//! `unsupported`; the second is caught through the dependency, which the fragment lists too.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::case::Case;

/// The fragment, as shipped in the repository.
pub const FRAGMENT: &str = include_str!("../../ci/config");

/// What the suite does with an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Cases matching any selector cannot run without it.
    Needs(Vec<Selector>),
    /// The VM runner's guest needs it to boot and report.
    Boot,
    /// Optional: some cases do more with it, decided by probes at run time.
    Uses,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Area(String),
    /// A requirement (probe) name, as `zccheck list` shows them.
    Requires(String),
    /// A case id pattern with `*`.
    Id(String),
}

impl Selector {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s.split_once(':') {
            None if s == "all" => Selector::All,
            Some(("area", a)) => Selector::Area(a.into()),
            Some(("requires", r)) => Selector::Requires(r.into()),
            Some(("id", g)) => Selector::Id(g.into()),
            _ => bail!("unknown selector '{s}' (all, area:NAME, requires:PROBE, id:GLOB)"),
        })
    }

    pub fn selects(&self, case: &Case) -> bool {
        match self {
            Selector::All => true,
            Selector::Area(a) => case.area.name() == a,
            Selector::Requires(r) => case.requires.iter().any(|q| q.name == r),
            Selector::Id(g) => crate::registry::glob(g, &case.id),
        }
    }
}

/// One option of the fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub option: String,
    /// The value the fragment asks for (`y`, `m`).
    pub value: String,
    pub role: Role,
    /// The comment above it: why the suite wants it.
    pub why: String,
}

/// Parses a fragment: a paragraph of comment lines gives the reason of the options below it, a
/// `# zccheck:` line the role of the next `CONFIG_X=v` line.
pub fn parse_fragment(text: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let (mut why, mut role): (Vec<&str>, Option<Role>) = (Vec::new(), None);
    let mut after_entry = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let at = || format!("ci/config line {}", n + 1);
        if line.is_empty() || line.starts_with("# ---") {
            why.clear();
        } else if let Some(spec) = line.strip_prefix("# zccheck:") {
            let spec = spec.trim();
            role = Some(match spec {
                "boot" => Role::Boot,
                "uses" => Role::Uses,
                _ => {
                    let list = spec
                        .strip_prefix("needs=")
                        .with_context(|| format!("{}: unknown role '{spec}'", at()))?;
                    let sels = list
                        .split(',')
                        .map(Selector::parse)
                        .collect::<Result<Vec<_>>>()
                        .with_context(at)?;
                    Role::Needs(sels)
                }
            });
        } else if let Some(comment) = line.strip_prefix('#') {
            // A comment paragraph describes every option below it up to the next comment.
            if after_entry {
                why.clear();
                after_entry = false;
            }
            why.push(comment.trim());
        } else if let Some((option, value)) = line.split_once('=') {
            if !option.starts_with("CONFIG_") {
                bail!("{}: '{option}' is not a CONFIG_ option", at());
            }
            let role = role
                .take()
                .with_context(|| format!("{}: {option} has no `# zccheck:` line", at()))?;
            entries.push(Entry {
                option: option.to_string(),
                value: value.to_string(),
                role,
                why: why.join(" "),
            });
            after_entry = true;
        } else {
            bail!("{}: cannot read '{line}'", at());
        }
    }
    Ok(entries)
}

/// The shipped fragment, parsed once (a unit test keeps it parseable).
pub fn fragment() -> &'static [Entry] {
    static PARSED: OnceLock<Vec<Entry>> = OnceLock::new();
    PARSED.get_or_init(|| parse_fragment(FRAGMENT).expect("ci/config parses"))
}

/// How a configuration treats each option it mentions: `y`/`m`/a value, or `None` for an
/// explicit `# CONFIG_X is not set`.
pub fn read_settings(config: &str) -> BTreeMap<String, Option<String>> {
    config
        .lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("# ") {
                let opt = rest.strip_suffix(" is not set")?;
                opt.starts_with("CONFIG_").then(|| (opt.to_string(), None))
            } else {
                let (k, v) = l.split_once('=')?;
                k.starts_with("CONFIG_")
                    .then(|| (k.to_string(), Some(v.trim_matches('"').to_string())))
            }
        })
        .collect()
}

/// The running kernel's configuration held against the fragment.
#[derive(Debug, Clone)]
pub struct Check {
    /// Where the configuration was read.
    pub source: String,
    /// Options the fragment needs (or boots with) that the configuration switches off.
    pub off: Vec<&'static Entry>,
}

impl Check {
    pub fn against(source: &str, config: &str) -> Check {
        let settings = read_settings(config);
        let off = fragment()
            .iter()
            .filter(|e| !matches!(e.role, Role::Uses))
            .filter(|e| matches!(settings.get(&e.option), Some(None)))
            .collect();
        Check {
            source: source.to_string(),
            off,
        }
    }

    /// The running kernel's, when its configuration can be read.
    pub fn running() -> Option<&'static Check> {
        static CHECK: OnceLock<Option<Check>> = OnceLock::new();
        CHECK
            .get_or_init(|| {
                let release = nix::sys::utsname::uname()
                    .ok()?
                    .release()
                    .to_string_lossy()
                    .into_owned();
                let (source, text) = harness::kernel::read_config(&release)?;
                Some(Check::against(&source, &text))
            })
            .as_ref()
    }

    /// Names of the switched-off options.
    pub fn off_names(&self) -> Vec<&str> {
        self.off.iter().map(|e| e.option.as_str()).collect()
    }

    /// Why `case` cannot run on this configuration, if it cannot.
    pub fn gate(&self, case: &Case) -> Option<String> {
        let missing: Vec<&str> = self
            .off
            .iter()
            .filter(|e| match &e.role {
                Role::Needs(sels) => sels.iter().any(|s| s.selects(case)),
                Role::Boot | Role::Uses => false,
            })
            .map(|e| e.option.as_str())
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "the kernel's configuration ({}) has {} switched off (see ci/config)",
                self.source,
                missing.join(", ")
            )
        })
    }

    /// The one line printed at run start.
    pub fn summary(&self, cases: &[Case]) -> String {
        if self.off.is_empty() {
            return format!(
                "kernel configuration ({}) has every option ci/config needs",
                self.source
            );
        }
        let gated = cases.iter().filter(|c| self.gate(c).is_some()).count();
        format!(
            "kernel configuration ({}) lacks {}: {gated} of {} cases are skipped (merge ci/config \
             into the kernel's configuration to run them)",
            self.source,
            self.off_names().join(", "),
            cases.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Area;
    use crate::outcome::Verdict;

    fn case(id: &str, area: Area) -> Case {
        Case::new(id, area, "t", vec![], |_| Ok(Verdict::pass("")))
    }

    #[test]
    fn the_shipped_fragment_parses_and_every_option_has_a_reason() {
        let entries = fragment();
        assert!(entries.len() > 20);
        for e in entries {
            assert!(
                !e.why.is_empty() || e.role == Role::Boot,
                "{} has no reason",
                e.option
            );
        }
    }

    #[test]
    fn every_selector_selects_a_registered_case() {
        let cases = crate::registry::all();
        for e in fragment() {
            if let Role::Needs(sels) = &e.role {
                for s in sels {
                    if let Selector::Requires(r) = s {
                        // A requirement of a case that is not registered yet would never gate.
                        assert!(
                            cases.iter().any(|c| s.selects(c)),
                            "{}: no case requires {r}",
                            e.option
                        );
                    }
                    if let Selector::Area(a) = s {
                        assert!(
                            crate::case::Area::ALL.iter().any(|x| x.name() == a),
                            "{}: no area {a}",
                            e.option
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn parse_rejects_an_option_without_a_role_and_unknown_selectors() {
        assert!(parse_fragment("# why\nCONFIG_A=y\n").is_err());
        assert!(parse_fragment("# zccheck: needs=colour:red\nCONFIG_A=y\n").is_err());
        assert!(parse_fragment("# zccheck: nonsense\nCONFIG_A=y\n").is_err());
        assert!(parse_fragment("# zccheck: uses\nA=y\n").is_err());
    }

    #[test]
    fn only_an_explicitly_disabled_option_is_missing() {
        let config = "CONFIG_NET=y\n# CONFIG_FILE_LOCKING is not set\nCONFIG_VETH=m\n";
        let check = Check::against("/proc/config.gz", config);
        let off = check.off_names();
        assert_eq!(off, vec!["CONFIG_FILE_LOCKING"]);
        // CONFIG_IO_URING_ZCRX is not mentioned at all: unknown, left to the probes.
        assert!(!off.contains(&"CONFIG_IO_URING_ZCRX"));
    }

    #[test]
    fn gating_names_the_option_for_the_cases_that_need_it_only() {
        let config = "# CONFIG_FILE_LOCKING is not set\n# CONFIG_IO_URING is not set\n";
        let check = Check::against("/boot/config-x", config);
        let optmem = check.gate(&case("send.optmem.global", Area::Send)).unwrap();
        assert!(optmem.contains("CONFIG_FILE_LOCKING"), "{optmem}");
        assert!(optmem.contains("/boot/config-x"), "{optmem}");
        let ring = check.gate(&case("uring.protocol.lo", Area::Uring)).unwrap();
        assert!(
            ring.contains("CONFIG_IO_URING") && !ring.contains("LOCKING"),
            "{ring}"
        );
        assert_eq!(check.gate(&case("send.counter.tcp4.lo", Area::Send)), None);
        let line = check.summary(&[
            case("send.optmem.global", Area::Send),
            case("send.counter.tcp4.lo", Area::Send),
        ]);
        assert!(line.contains("1 of 2 cases are skipped"), "{line}");
    }

    #[test]
    fn a_full_configuration_misses_nothing() {
        let config: String = fragment()
            .iter()
            .map(|e| format!("{}={}\n", e.option, e.value))
            .collect();
        let check = Check::against("x", &config);
        assert!(check.off.is_empty());
        assert!(check.summary(&[]).contains("every option"));
    }
}
