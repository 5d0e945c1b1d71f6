//! Debian kernels through a private apt configuration.
//!
//! The configuration has its own sources, lists and archive folders in the cache, and only
//! ever runs `apt-get update`, `apt-cache` and `apt-get download`: it lists suites from
//! bullseye to experimental, so an install with it would drag the host towards sid. Nothing
//! here installs anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::config::DebianKernel;
use crate::debver;

/// The lists are refreshed when older than this (or when the suites change).
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

pub struct Apt {
    root: PathBuf,
    conf: PathBuf,
    pub debs: PathBuf,
}

/// A kernel chosen from the archive: the packages that hold it, all of one version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `uname -r` of the kernel (the package's ABI name): `5.10.0-46-cloud-amd64`.
    pub release: String,
    /// The Debian version: `5.10.262-1`.
    pub version: String,
    /// Packages to download: the image, or (from 6.19) binary + modules + base.
    pub packages: Vec<String>,
}

impl Resolved {
    /// `name=version` of each package, as reports record them.
    pub fn pinned(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| format!("{p}={}", self.version))
            .collect()
    }

    /// Where `apt-get download` puts each package.
    pub fn deb_files(&self, debs: &Path) -> Vec<PathBuf> {
        let v = self.version.replace(':', "%3a");
        self.packages
            .iter()
            .map(|p| debs.join(format!("{p}_{v}_amd64.deb")))
            .collect()
    }
}

impl Apt {
    /// Writes the private configuration under `cache/apt`.
    pub fn new(cache: &Path, suites: &[String]) -> Result<Apt> {
        let root = cache.join("apt");
        let debs = cache.join("debs");
        for d in [
            root.join("lists/partial"),
            root.join("archives/partial"),
            root.join("etc/parts.d"),
            root.join("etc/sources.list.d"),
            root.join("etc/preferences.d"),
            debs.clone(),
        ] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let (mirror, security) = host_mirrors();
        let sources: String = suites
            .iter()
            .map(|s| {
                let uri = if s.ends_with("-security") {
                    &security
                } else {
                    &mirror
                };
                format!("deb [signed-by={KEYRING}] {uri} {s} main\n")
            })
            .collect();
        write_if_changed(&root.join("etc/sources.list"), &sources)?;
        let r = root.display();
        let conf = root.join("apt.conf");
        write_if_changed(
            &conf,
            &format!(
                "// Private to zccheck-vm: for apt-get update, apt-cache and apt-get download only.\n\
                 // How the host reaches the archive (proxies, validity checks of a frozen mirror):\n\
                 {}\
                 // Everything else is our own.\n\
                 Dir::Etc \"{r}/etc\";\n\
                 Dir::Etc::Parts \"{r}/etc/parts.d\";\n\
                 Dir::Etc::SourceList \"{r}/etc/sources.list\";\n\
                 Dir::Etc::SourceParts \"{r}/etc/sources.list.d\";\n\
                 Dir::Etc::Preferences \"{r}/etc/preferences\";\n\
                 Dir::Etc::PreferencesParts \"{r}/etc/preferences.d\";\n\
                 Dir::State::Lists \"{r}/lists\";\n\
                 Dir::Cache \"{r}\";\n\
                 Dir::Cache::Archives \"{r}/archives\";\n\
                 Dir::Cache::pkgcache \"\";\n\
                 Dir::Cache::srcpkgcache \"\";\n\
                 APT::Architecture \"amd64\";\n\
                 APT::Architectures {{ \"amd64\"; }};\n\
                 APT::Sandbox::User \"root\";\n\
                 Acquire::Languages \"none\";\n\
                 Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
                 Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n\
                 Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled \"false\";\n\
                 Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled \"false\";\n\
                 Acquire::Retries \"3\";\n",
                host_acquire_settings()
            ),
        )?;
        Ok(Apt { root, conf, debs })
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", &self.conf);
        c
    }

    /// `apt-get update`, unless the lists are fresh for these sources (or `force`).
    pub fn update(&self, force: bool) -> Result<bool> {
        let stamp = self.root.join("updated.stamp");
        let sources = std::fs::read_to_string(self.root.join("etc/sources.list"))?;
        let fresh = std::fs::read_to_string(&stamp).ok().as_deref() == Some(sources.as_str())
            && std::fs::metadata(&stamp)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh && !force {
            return Ok(false);
        }
        eprintln!(
            "zccheck-vm: apt-get update (private configuration in {})",
            self.root.display()
        );
        let out = self
            .command("apt-get")
            .args(["-q", "update"])
            .output()
            .context("running apt-get update")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.lines().any(|l| l.starts_with("E:")) {
            bail!("apt-get update failed ({}):\n{stderr}", out.status);
        }
        std::fs::write(&stamp, sources)?;
        Ok(true)
    }

    /// The newest cloud kernel of `k.line` (or the pinned package/version).
    pub fn resolve(&self, k: &DebianKernel) -> Result<Resolved> {
        let line = regex_escape(&k.line);
        let names = self.output(
            "apt-cache",
            &[
                "search",
                "--names-only",
                // `linux-image-7.3-cloud-amd64` is also how experimental names a candidate.
                &format!("^linux-image-{line}([-.+~].*)?-cloud-amd64$"),
            ],
        )?;
        let mut names: Vec<String> = names
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| !n.ends_with("-dbg") && !n.contains("-unsigned"))
            .filter(|n| k.package.as_deref().is_none_or(|p| p == *n))
            .map(str::to_string)
            .collect();
        names.sort();
        if names.is_empty() {
            bail!(
                "no Debian cloud kernel package of line {} ({}) in the configured suites",
                k.line,
                k.package.as_deref().unwrap_or("any package")
            );
        }
        let mut args = vec!["show"];
        args.extend(names.iter().map(String::as_str));
        let text = self.output("apt-cache", &args)?;
        // With a suite: the (package, version) pairs that suite carries.
        let in_suite = match &k.suite {
            Some(suite) => {
                let mut args = vec!["madison"];
                args.extend(names.iter().map(String::as_str));
                Some(in_suite(&self.output("apt-cache", &args)?, suite))
            }
            None => None,
        };
        let mut best: Option<Resolved> = None;
        for stanza in parse_stanzas(&text) {
            let Some(r) = kernel_of(&stanza) else {
                continue;
            };
            let package = stanza.get("Package").cloned().unwrap_or_default();
            if in_suite
                .as_ref()
                .is_some_and(|set| !set.contains(&(package, r.version.clone())))
            {
                continue;
            }
            if k.version.as_deref().is_some_and(|v| v != r.version) {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|b| debver::compare(&r.version, &b.version).is_gt())
            {
                best = Some(r);
            }
        }
        best.with_context(|| {
            format!(
                "no kernel of line {} matches{}{}{}",
                k.line,
                k.suite
                    .as_deref()
                    .map(|s| format!(" in suite {s}"))
                    .unwrap_or_default(),
                k.package
                    .as_deref()
                    .map(|p| format!(" package {p}"))
                    .unwrap_or_default(),
                k.version
                    .as_deref()
                    .map(|v| format!(" version {v}"))
                    .unwrap_or_default()
            )
        })
    }

    /// Downloads what is not in the cache yet.
    pub fn download(&self, kernels: &[&Resolved]) -> Result<()> {
        let mut missing = Vec::new();
        for r in kernels {
            for (pin, file) in r.pinned().into_iter().zip(r.deb_files(&self.debs)) {
                if !file.exists() && !missing.contains(&pin) {
                    missing.push(pin);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        eprintln!("zccheck-vm: apt-get download {}", missing.join(" "));
        let out = self
            .command("apt-get")
            .current_dir(&self.debs)
            .args(["-q", "download"])
            .args(&missing)
            .output()
            .context("running apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for r in kernels {
            for f in r.deb_files(&self.debs) {
                if !f.exists() {
                    bail!("apt-get download did not produce {}", f.display());
                }
            }
        }
        Ok(())
    }

    fn output(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {} failed ({}):\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The host's settings for reaching the archive: proxies, TLS, and the validity checks a
/// machine behind a frozen mirror turns off. Only these are carried over; the host's other
/// configuration (hooks, index targets) stays out of the private one.
fn host_acquire_settings() -> String {
    let dump = std::process::Command::new("apt-config")
        .arg("dump")
        .env_remove("APT_CONFIG")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    acquire_lines(&dump)
}

fn acquire_lines(dump: &str) -> String {
    const KEPT: &[&str] = &[
        "Acquire::Check-Valid-Until ",
        "Acquire::Check-Date ",
        "Acquire::Max-ValidTime ",
        "Acquire::http::",
        "Acquire::https::",
        "Acquire::http ",
        "Acquire::https ",
    ];
    dump.lines()
        .filter(|l| KEPT.iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect()
}

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The Debian mirror and security mirror the host uses (so a machine behind a local mirror
/// keeps using it); `$ZCCHECK_VM_MIRROR` and `$ZCCHECK_VM_SECURITY_MIRROR` override them.
pub fn host_mirrors() -> (String, String) {
    let text = host_sources();
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|m| !m.is_empty())
            .map(|m| m.trim_end_matches('/').to_string())
    };
    let mirror = env("ZCCHECK_VM_MIRROR")
        .or_else(|| uri_in(&text, "/debian"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let security = env("ZCCHECK_VM_SECURITY_MIRROR")
        .or_else(|| uri_in(&text, "/debian-security"))
        .unwrap_or_else(|| format!("{mirror}-security"));
    (mirror, security)
}

fn host_sources() -> String {
    let mut texts = Vec::new();
    texts.extend(std::fs::read_to_string("/etc/apt/sources.list").ok());
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.extend(std::fs::read_to_string(p).ok());
            }
        }
    }
    texts.join("\n")
}

/// The first URI ending in `suffix` in apt sources text (one-line or deb822 format).
fn uri_in(text: &str, suffix: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .map(|w| w.trim_end_matches('/'))
        .find(|w| (w.starts_with("http://") || w.starts_with("https://")) && w.ends_with(suffix))
        .map(str::to_string)
}

/// The (package, version) pairs `apt-cache madison` lists from `suite`
/// (` pkg | version | http://deb.debian.org/debian bookworm-backports/main amd64 Packages`).
fn in_suite(madison: &str, suite: &str) -> std::collections::BTreeSet<(String, String)> {
    madison
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|').map(str::trim);
            let (package, version, source) = (f.next()?, f.next()?, f.next()?);
            let from = source.split_whitespace().nth(1)?.split('/').next()?;
            (from == suite).then(|| (package.to_string(), version.to_string()))
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

fn parse_stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    text.split("\n\n")
        .map(|block| {
            let mut fields = BTreeMap::new();
            let mut last: Option<String> = None;
            for line in block.lines() {
                if line.starts_with(' ') {
                    if let Some(k) = &last {
                        fields
                            .entry(k.clone())
                            .or_insert_with(String::new)
                            .push_str(line);
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    fields.insert(k.to_string(), v.trim().to_string());
                    last = Some(k.to_string());
                }
            }
            fields
        })
        .filter(|f| f.contains_key("Package"))
        .collect()
}

/// The kernel a package stanza stands for, if it holds one: a classic image, or a split
/// image (6.19 on) whose kernel is in `linux-binary-*`. Metapackages (`linux-image-6.1-cloud-
/// amd64` pointing at an ABI package) are skipped: their target is a candidate of its own.
fn kernel_of(stanza: &BTreeMap<String, String>) -> Option<Resolved> {
    let name = stanza.get("Package")?;
    let version = stanza.get("Version")?.clone();
    let abi = name.strip_prefix("linux-image-")?.to_string();
    let depends = stanza.get("Depends").map(String::as_str).unwrap_or("");
    if depends.contains(&format!("linux-binary-{abi} ")) {
        return Some(Resolved {
            release: abi.clone(),
            version,
            packages: vec![
                format!("linux-binary-{abi}"),
                format!("linux-modules-{abi}"),
                format!("linux-base-{abi}"),
            ],
        });
    }
    let size: u64 = stanza.get("Installed-Size")?.parse().ok()?;
    if size < 1000 {
        return None;
    }
    Some(Resolved {
        release: abi,
        version,
        packages: vec![name.clone()],
    })
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
Package: linux-image-6.1-cloud-amd64
Version: 6.1.180-1~deb11u1
Installed-Size: 13
Depends: linux-image-6.1.0-0.deb11.52-cloud-amd64 (= 6.1.180-1~deb11u1)

Package: linux-image-7.3.4+deb13-cloud-amd64
Version: 7.3.4-1~bpo13+1
Installed-Size: 15
Depends: dracut | initramfs-tools (>= 0.120+deb8u2), linux-base-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1),
 linux-binary-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1)

Package: linux-image-6.12.118+deb13-cloud-amd64
Version: 6.12.118-1
Installed-Size: 34960
Depends: kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
";

    #[test]
    fn tells_images_split_images_and_metapackages_apart() {
        let kernels: Vec<Resolved> = parse_stanzas(SHOW).iter().filter_map(kernel_of).collect();
        assert_eq!(kernels.len(), 2, "{kernels:?}");
        assert_eq!(kernels[0].release, "7.3.4+deb13-cloud-amd64");
        assert_eq!(
            kernels[0].packages,
            [
                "linux-binary-7.3.4+deb13-cloud-amd64",
                "linux-modules-7.3.4+deb13-cloud-amd64",
                "linux-base-7.3.4+deb13-cloud-amd64"
            ]
        );
        assert_eq!(
            kernels[1].packages,
            ["linux-image-6.12.118+deb13-cloud-amd64"]
        );
    }

    #[test]
    fn finds_the_mirror_in_both_source_formats() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/x\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            uri_in(deb822, "/debian").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one_line = "deb https://mirror.example/debian/ bookworm main\n\
                        deb https://mirror.example/debian-security bookworm-security main\n";
        assert_eq!(
            uri_in(one_line, "/debian").as_deref(),
            Some("https://mirror.example/debian")
        );
        assert_eq!(
            uri_in(one_line, "/debian-security").as_deref(),
            Some("https://mirror.example/debian-security")
        );
        assert_eq!(
            uri_in(
                "deb https://packages.cloud.google.com/apt x main",
                "/debian"
            ),
            None
        );
    }

    #[test]
    fn carries_over_only_how_the_host_reaches_the_archive() {
        let dump = "APT::Update::Post-Invoke-Success:: \"appstreamcli refresh\";\n\
                    Acquire::Check-Valid-Until \"false\";\n\
                    Acquire::http::Proxy \"http://proxy:3128\";\n\
                    Acquire::IndexTargets::deb::DEP-11::MetaKey \"x\";\n";
        assert_eq!(
            acquire_lines(dump),
            "Acquire::Check-Valid-Until \"false\";\nAcquire::http::Proxy \"http://proxy:3128\";\n"
        );
    }

    #[test]
    fn a_suite_keeps_only_the_builds_it_carries() {
        let madison = "\
linux-image-6.12.95+deb12-cloud-amd64 | 6.12.95-1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
linux-image-6.12.117+deb12-cloud-amd64 | 6.12.117-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.12.117+deb13-cloud-amd64 | 6.12.117-1 | http://deb.debian.org/debian trixie/main amd64 Packages
";
        let set = in_suite(madison, "bookworm-backports");
        assert_eq!(set.len(), 1);
        assert!(set.contains(&(
            "linux-image-6.12.95+deb12-cloud-amd64".to_string(),
            "6.12.95-1~bpo12+1".to_string()
        )));
        assert!(in_suite(madison, "bookworm").is_empty());
        assert_eq!(in_suite(madison, "trixie").len(), 1);
    }

    #[test]
    fn deb_file_names_escape_epochs() {
        let r = Resolved {
            release: "x".into(),
            version: "1:2.0-1".into(),
            packages: vec!["p".into()],
        };
        assert_eq!(
            r.deb_files(Path::new("/d")),
            [PathBuf::from("/d/p_1%3a2.0-1_amd64.deb")]
        );
    }
}
