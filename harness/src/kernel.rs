//! What kernel this is: release, version, configuration.
//!
//! Cases are gated on probes of behaviour, not on version numbers, because distributions
//! backport. The parsed version is kept only to flag "the probe says no, yet this version
//! should have it" in reports.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Configuration options worth recording in a report.
pub const CONFIG_KEYS: &[&str] = &[
    "CONFIG_VETH",
    "CONFIG_NET_NS",
    "CONFIG_USER_NS",
    "CONFIG_IO_URING",
    "CONFIG_IO_URING_ZCRX",
    "CONFIG_NET_DEVMEM",
    "CONFIG_MAX_SKB_FRAGS",
    "CONFIG_PAGE_POOL",
    "CONFIG_TCP_CONG_CUBIC",
    "CONFIG_DUMMY",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// `uname -v`.
    pub version: String,
    /// `uname -m`.
    pub arch: String,
    /// (major, minor, patch) parsed from the release, when it parses.
    pub numeric: Option<(u32, u32, u32)>,
    /// Where the configuration came from, if anywhere.
    pub config_source: Option<String>,
    /// The options of [`CONFIG_KEYS`] that the configuration sets (y, m or a value).
    pub config: BTreeMap<String, String>,
    /// Page size in bytes.
    pub page_size: usize,
}

impl KernelInfo {
    pub fn detect() -> Result<Self> {
        let u = nix::sys::utsname::uname().context("uname")?;
        let release = u.release().to_string_lossy().into_owned();
        let (config_source, config) = match read_config(&release) {
            Some((src, text)) => (Some(src), pick_config(&text)),
            None => (None, BTreeMap::new()),
        };
        Ok(KernelInfo {
            numeric: parse_release(&release),
            version: u.version().to_string_lossy().into_owned(),
            arch: u.machine().to_string_lossy().into_owned(),
            release,
            config_source,
            config,
            page_size: nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .unwrap_or(4096) as usize,
        })
    }

    /// True if the release is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.numeric
            .is_some_and(|(a, b, _)| (a, b) >= (major, minor))
    }
}

/// "6.18.44-fc-v595" -> (6, 18, 44); "7.3-cloud-amd64" -> (7, 3, 0).
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let head: String = release
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = head
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(|p| p.ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// The value of one option of the running kernel's configuration (`y`, `m`, a number), or
/// `None` when the option is unset or the configuration cannot be read.
pub fn config_value(key: &str) -> Option<String> {
    let u = nix::sys::utsname::uname().ok()?;
    let (_, text) = read_config(&u.release().to_string_lossy())?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// The kernel's configuration text and where it was read: `/proc/config.gz`, else
/// `/boot/config-RELEASE` (where the VM runner puts it), else the modules folder.
pub fn read_config(release: &str) -> Option<(String, String)> {
    if let Ok(f) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(("/proc/config.gz".into(), text));
        }
    }
    for p in [
        format!("/boot/config-{release}"),
        format!("/lib/modules/{release}/config"),
    ] {
        if let Ok(text) = std::fs::read_to_string(&p) {
            return Some((p, text));
        }
    }
    None
}

fn pick_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| CONFIG_KEYS.contains(k))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("6.18.44-fc-v595", Some((6, 18, 44)))]
    #[case("5.10.0-46-cloud-amd64", Some((5, 10, 0)))]
    #[case("7.3-cloud-amd64", Some((7, 3, 0)))]
    #[case("6.12.118+deb13-cloud-amd64", Some((6, 12, 118)))]
    #[case("garbage", None)]
    #[case("6", None)]
    fn parses_releases(#[case] release: &str, #[case] want: Option<(u32, u32, u32)>) {
        assert_eq!(parse_release(release), want);
    }

    #[test]
    fn picks_only_known_config_keys() {
        let text = "# comment\nCONFIG_VETH=m\nCONFIG_FOO=y\nCONFIG_MAX_SKB_FRAGS=17\n";
        let got = pick_config(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got["CONFIG_VETH"], "m");
        assert_eq!(got["CONFIG_MAX_SKB_FRAGS"], "17");
    }
}
