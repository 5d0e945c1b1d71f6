//! Offload toggles (scatter-gather, TSO, GSO, GRO) through the legacy SIOCETHTOOL ioctl, the
//! same interface `ethtool -K` falls back to. No ethtool binary is needed.

use anyhow::{Context, Result};

use crate::NetNs;

/// One offload that `ethtool -K DEV <name> on|off` can switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    Sg,
    Tso,
    Gso,
    Gro,
}

impl Offload {
    /// (get, set) ethtool command numbers from `include/uapi/linux/ethtool.h`.
    fn cmds(self) -> (u32, u32) {
        match self {
            Offload::Sg => (0x18, 0x19),  // ETHTOOL_GSG / ETHTOOL_SSG
            Offload::Tso => (0x1e, 0x1f), // ETHTOOL_GTSO / ETHTOOL_STSO
            Offload::Gso => (0x23, 0x24), // ETHTOOL_GGSO / ETHTOOL_SGSO
            Offload::Gro => (0x2b, 0x2c), // ETHTOOL_GGRO / ETHTOOL_SGRO
        }
    }

    fn ethtool_name(self) -> &'static str {
        match self {
            Offload::Sg => "sg",
            Offload::Tso => "tso",
            Offload::Gso => "gso",
            Offload::Gro => "gro",
        }
    }
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

/// Issues one SIOCETHTOOL ioctl on `dev` from a socket in the calling thread's namespace.
fn ethtool_ioctl(dev: &str, value: &mut EthtoolValue) -> std::io::Result<()> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: value,
        _pad: [0; 16],
    };
    for (dst, src) in req
        .name
        .iter_mut()
        .zip(dev.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: `req` is a valid ifreq whose data pointer refers to `value`, which outlives the
    // call; the kernel reads and writes only `struct ethtool_value` through it.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads whether `offload` is on for `dev` in `ns`.
pub fn get(ns: &NetNs, dev: &str, offload: Offload) -> Result<bool> {
    let (get, _) = offload.cmds();
    ns.run(|| {
        let mut v = EthtoolValue { cmd: get, data: 0 };
        ethtool_ioctl(dev, &mut v).map(|_| v.data != 0)
    })?
    .with_context(|| format!("`ethtool -k {dev}` ({}) failed", offload.ethtool_name()))
}

/// Switches `offload` on or off for `dev` in `ns` (as `ethtool -K dev sg off`).
pub fn set(ns: &NetNs, dev: &str, offload: Offload, on: bool) -> Result<()> {
    let (_, set) = offload.cmds();
    ns.run(|| {
        let mut v = EthtoolValue {
            cmd: set,
            data: on as u32,
        };
        ethtool_ioctl(dev, &mut v)
    })?
    .with_context(|| {
        format!(
            "`ethtool -K {dev} {} {}` failed",
            offload.ethtool_name(),
            if on { "on" } else { "off" }
        )
    })
}
