//! Per-namespace network counters, to check that traffic took the path a case assumes:
//! forwarded by a router (`Ip: ForwDatagrams`, `Ip6OutForwDatagrams`), dropped at a dead
//! link's transmit (the interface's TX drops), delivered to a receiver (`IpExt: InOctets`,
//! `Ip6InOctets`).
//!
//! The files under /proc/net follow the namespace of the *thread* that reads them only
//! through /proc/thread-self/net (/proc/self/net is the main thread's), so every read goes
//! there from a thread that joined the namespace.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::NetNs;

/// Counters by `Group.Name` (`Ip.ForwDatagrams`, `IpExt.InOctets`, `Ip6.Ip6OutForwDatagrams`)
/// and, for interfaces, `dev.IFNAME.tx_drop` and friends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.get(key).copied()
    }

    /// `after - self` for `key` (None if either side lacks it).
    pub fn delta(&self, after: &Counters, key: &str) -> Option<u64> {
        Some(after.get(key)?.saturating_sub(self.get(key)?))
    }
}

/// Parses `/proc/net/snmp` or `/proc/net/netstat`: pairs of lines, names then values.
pub fn parse_paired(text: &str, out: &mut BTreeMap<String, u64>) {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse() {
                out.insert(format!("{group}.{n}"), v);
            }
        }
    }
}

/// Parses `/proc/net/snmp6`: one `Name value` per line, stored as `Ip6.Name`.
pub fn parse_snmp6(text: &str, out: &mut BTreeMap<String, u64>) {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(n), Some(v)) = (it.next(), it.next()) {
            if let Ok(v) = v.parse() {
                out.insert(format!("Ip6.{n}"), v);
            }
        }
    }
}

/// Parses `/proc/net/dev`: `dev.IFNAME.{rx_bytes,rx_packets,rx_drop,tx_bytes,tx_packets,tx_drop}`.
pub fn parse_dev(text: &str, out: &mut BTreeMap<String, u64>) {
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 12 {
            continue;
        }
        let name = name.trim();
        for (field, i) in [
            ("rx_bytes", 0),
            ("rx_packets", 1),
            ("rx_drop", 3),
            ("tx_bytes", 8),
            ("tx_packets", 9),
            ("tx_drop", 11),
        ] {
            out.insert(format!("dev.{name}.{field}"), v[i]);
        }
    }
}

/// Every counter of `ns` now: snmp, netstat, snmp6 (when IPv6 is there) and dev.
pub fn read(ns: &NetNs) -> Result<Counters> {
    ns.run(|| -> Result<Counters> {
        let mut out = BTreeMap::new();
        let base = "/proc/thread-self/net";
        for (file, parse) in [
            ("snmp", parse_paired as fn(&str, &mut BTreeMap<String, u64>)),
            ("netstat", parse_paired),
            ("dev", parse_dev),
        ] {
            let p = format!("{base}/{file}");
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
            parse(&text, &mut out);
        }
        if let Ok(text) = std::fs::read_to_string(format!("{base}/snmp6")) {
            parse_snmp6(&text, &mut out);
        }
        Ok(Counters(out))
    })?
    .with_context(|| format!("network counters of namespace {}", ns.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_formats() {
        let mut m = BTreeMap::new();
        parse_paired(
            "Ip: Forwarding ForwDatagrams\nIp: 1 42\nUdp: InDatagrams\nUdp: 7\n",
            &mut m,
        );
        parse_snmp6("Ip6InReceives  \t3\nIp6OutForwDatagrams\t5\n", &mut m);
        parse_dev(
            "Inter-| Receive | Transmit\n face |bytes ...\n  zc-a: 1 2 0 3 0 0 0 0 4 5 0 6 0 0 0 0\n",
            &mut m,
        );
        let c = Counters(m);
        assert_eq!(c.get("Ip.ForwDatagrams"), Some(42));
        assert_eq!(c.get("Udp.InDatagrams"), Some(7));
        assert_eq!(c.get("Ip6.Ip6OutForwDatagrams"), Some(5));
        assert_eq!(c.get("dev.zc-a.tx_drop"), Some(6));
        assert_eq!(c.get("dev.zc-a.rx_drop"), Some(3));
        let mut after = c.clone();
        after.0.insert("Ip.ForwDatagrams".into(), 50);
        assert_eq!(c.delta(&after, "Ip.ForwDatagrams"), Some(8));
        assert_eq!(c.delta(&after, "nope"), None);
    }
}
