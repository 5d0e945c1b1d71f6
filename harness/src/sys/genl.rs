//! The `netdev` generic-netlink family, for devmem TCP detection: look the family up, list
//! its operations, and attempt `NETDEV_CMD_BIND_RX` to read the kernel's answer.
//!
//! Messages are built with `netlink-packet-generic` and sent over a plain `netlink-sys`
//! socket with a receive timeout, so no call can hang. The socket belongs to the network
//! namespace of the calling thread: call these from inside `NetNs::run` to speak about the
//! interfaces of one of the suite's namespaces.

use std::io;
use std::os::fd::{AsFd, RawFd};
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NetlinkMessage, NetlinkPayload, NlaBuffer, NlasIterator,
    Parseable, ParseableParametrized, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::{GenlCtrlAttrs, OpAttrs};
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::{Socket, SocketAddr};

/// `NETDEV_CMD_BIND_RX` (6.12): bind a dma-buf to receive queues.
pub const NETDEV_CMD_BIND_RX: u32 = 13;
/// `NETDEV_CMD_BIND_TX` (6.15): bind a dma-buf for transmit.
pub const NETDEV_CMD_BIND_TX: u32 = 15;
/// `NLM_F_CAPPED`: an error message carries only the request's header.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ack attributes follow the (possibly capped) request.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's human-readable reason, a NUL-terminated string.
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETDEV_A_DMABUF_IFINDEX: u16 = 1;
const NETDEV_A_DMABUF_QUEUES: u16 = 2;
const NETDEV_A_DMABUF_FD: u16 = 3;
const NETDEV_A_QUEUE_ID: u16 = 1;
const NETDEV_A_QUEUE_TYPE: u16 = 3;
const NETDEV_QUEUE_TYPE_RX: u32 = 0;
const NLA_F_NESTED: u16 = 1 << 15;

/// Bound on waiting for the kernel's answer to one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The `netdev` family as the controller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetdevFamily {
    pub id: u16,
    pub version: Option<u32>,
    /// The command ids the family registers (`CTRL_ATTR_OPS`).
    pub ops: Vec<u32>,
}

impl NetdevFamily {
    pub fn has_op(&self, cmd: u32) -> bool {
        self.ops.contains(&cmd)
    }
}

/// Looks up the `netdev` family. `Ok(None)`: the controller does not know it (ENOENT), as on
/// kernels before the family existed.
pub fn netdev_family() -> io::Result<Option<NetdevFamily>> {
    let mut msg = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName("netdev".into())],
    });
    msg.finalize();
    let replies = match exchange::<GenlCtrl>(msg) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    for reply in replies {
        if reply.payload.cmd != GenlCtrlCmd::NewFamily {
            continue;
        }
        let mut family = NetdevFamily {
            id: 0,
            version: None,
            ops: Vec::new(),
        };
        for nla in reply.payload.nlas {
            match nla {
                GenlCtrlAttrs::FamilyId(id) => family.id = id,
                GenlCtrlAttrs::Version(v) => family.version = Some(v),
                GenlCtrlAttrs::Ops(ops) => {
                    family.ops = ops
                        .iter()
                        .flat_map(|op| op.iter())
                        .filter_map(|a| match a {
                            OpAttrs::Id(id) => Some(*id),
                            _ => None,
                        })
                        .collect()
                }
                _ => {}
            }
        }
        if family.id != 0 {
            return Ok(Some(family));
        }
    }
    Err(io::Error::other(
        "CTRL_CMD_GETFAMILY netdev: acknowledged without a family id",
    ))
}

/// A refusal: the errno and the extended ack's message, if the kernel gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub errno: i32,
    pub message: Option<String>,
}

impl From<Nack> for io::Error {
    fn from(n: Nack) -> io::Error {
        io::Error::from_raw_os_error(n.errno)
    }
}

/// Sends `NETDEV_CMD_BIND_RX` for receive queue `rxq` of `ifindex` with `dmabuf_fd` and
/// returns the kernel's answer: `Ok(())` if it bound, the errno of its NACK otherwise.
pub fn bind_rx(family: u16, ifindex: u32, rxq: u32, dmabuf_fd: RawFd) -> io::Result<()> {
    bind_rx_ext(family, ifindex, rxq, dmabuf_fd)?.map_err(io::Error::from)
}

/// [`bind_rx`] with the refusal's extended-ack message. The outer error is the transport's.
/// A binding that succeeds lives as long as the netlink socket, which is closed on return.
pub fn bind_rx_ext(
    family: u16,
    ifindex: u32,
    rxq: u32,
    dmabuf_fd: RawFd,
) -> io::Result<Result<(), Nack>> {
    let queue = [
        DefaultNla::new(NETDEV_A_QUEUE_ID, rxq.to_ne_bytes().to_vec()),
        DefaultNla::new(
            NETDEV_A_QUEUE_TYPE,
            NETDEV_QUEUE_TYPE_RX.to_ne_bytes().to_vec(),
        ),
    ];
    let mut nested = vec![0u8; queue.as_slice().buffer_len()];
    queue.as_slice().emit(&mut nested);
    let payload = NetdevMessage {
        cmd: NETDEV_CMD_BIND_RX as u8,
        attrs: vec![
            DefaultNla::new(NETDEV_A_DMABUF_IFINDEX, ifindex.to_ne_bytes().to_vec()),
            DefaultNla::new(
                NETDEV_A_DMABUF_FD,
                (dmabuf_fd as u32).to_ne_bytes().to_vec(),
            ),
            DefaultNla::new(NETDEV_A_DMABUF_QUEUES | NLA_F_NESTED, nested),
        ],
    };
    let mut msg = GenlMessage::new(
        GenlHeader {
            cmd: payload.cmd,
            version: 1,
        },
        payload,
        family,
    );
    msg.finalize();
    Ok(exchange_nack::<NetdevMessage>(msg)?.map(drop))
}

/// Sends `NETDEV_CMD_BIND_TX` for `ifindex` with `dmabuf_fd`: `Ok(Ok(()))` if it bound, the
/// NACK with its extended-ack message otherwise.
pub fn bind_tx(family: u16, ifindex: u32, dmabuf_fd: RawFd) -> io::Result<Result<(), Nack>> {
    let payload = NetdevMessage {
        cmd: NETDEV_CMD_BIND_TX as u8,
        attrs: vec![
            DefaultNla::new(NETDEV_A_DMABUF_IFINDEX, ifindex.to_ne_bytes().to_vec()),
            DefaultNla::new(
                NETDEV_A_DMABUF_FD,
                (dmabuf_fd as u32).to_ne_bytes().to_vec(),
            ),
        ],
    };
    let mut msg = GenlMessage::new(
        GenlHeader {
            cmd: payload.cmd,
            version: 1,
        },
        payload,
        family,
    );
    msg.finalize();
    Ok(exchange_nack::<NetdevMessage>(msg)?.map(drop))
}

/// The `NLMSGERR_ATTR_MSG` of an error message's payload (after the errno), given the
/// error message's own header flags.
pub fn extack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 16 {
        return None;
    }
    let skip = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let orig = u32::from_ne_bytes(payload[0..4].try_into().ok()?) as usize;
        (orig + 3) & !3
    };
    let tlvs = payload.get(skip..)?;
    for nla in NlasIterator::new(tlvs) {
        let nla = nla.ok()?;
        if nla.kind() & !NLA_F_NESTED == NLMSGERR_ATTR_MSG {
            let v = nla.value();
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            return Some(String::from_utf8_lossy(&v[..end]).into_owned());
        }
    }
    None
}

/// A `netdev` family message with raw attributes.
#[derive(Debug, Clone)]
struct NetdevMessage {
    cmd: u8,
    attrs: Vec<DefaultNla>,
}

impl GenlFamily for NetdevMessage {
    fn family_name() -> &'static str {
        "netdev"
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for NetdevMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for NetdevMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(buf) {
            let nla: NlaBuffer<&[u8]> = nla?;
            attrs.push(DefaultNla::parse(&nla)?);
        }
        Ok(NetdevMessage {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// Sends one request with an ACK asked for, and returns the replies that came before the
/// ACK. A NACK becomes its errno.
fn exchange<F>(msg: GenlMessage<F>) -> io::Result<Vec<GenlMessage<F>>>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    exchange_nack(msg)?.map_err(io::Error::from)
}

/// [`exchange`], keeping a NACK (with its extended-ack message) apart from transport errors.
fn exchange_nack<F>(msg: GenlMessage<F>) -> io::Result<Result<Vec<GenlMessage<F>>, Nack>>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    // Without it the kernel keeps its reason to itself; older kernels ignore a failure here.
    let _ = socket.set_ext_ack(true);
    socket.connect(&SocketAddr::new(0, 0))?;
    nix::sys::socket::setsockopt(
        &socket.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0),
    )
    .map_err(io::Error::from)?;
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    nl.header.sequence_number = 1;
    nl.finalize();
    let mut tx = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut tx);
    socket.send(&tx, 0)?;

    let mut replies = Vec::new();
    let mut rx: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let n = super::retry::retry_interrupted(ANSWER_TIMEOUT, || {
            rx.clear();
            socket.recv(&mut rx, 0)
        })
        .map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no netlink answer within {ANSWER_TIMEOUT:?}"),
                )
            } else {
                e
            }
        })?;
        let mut off = 0;
        while off < n.min(rx.len()) {
            let m = NetlinkMessage::<GenlMessage<F>>::deserialize(&rx[off..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = m.header.length as usize;
            let flags = m.header.flags;
            match m.payload {
                NetlinkPayload::Error(err) => {
                    return Ok(match err.code {
                        None => Ok(replies),
                        Some(code) => Err(Nack {
                            errno: code.get().abs(),
                            message: extack_message(flags, &err.header),
                        }),
                    })
                }
                NetlinkPayload::Done(_) => return Ok(Ok(replies)),
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error payload: the request's 16-byte header, then one `NLMSGERR_ATTR_MSG`.
    fn payload(orig_len: u32, extra: usize, msg: &str) -> Vec<u8> {
        let mut p = orig_len.to_ne_bytes().to_vec();
        p.resize(16 + extra, 0);
        let value = format!("{msg}\0");
        let nla_len = 4 + value.len();
        p.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(value.as_bytes());
        p.resize(p.len().div_ceil(4) * 4, 0);
        p
    }

    #[test]
    fn the_extack_message_is_found_after_a_capped_or_full_request() {
        let capped = payload(40, 0, "Driver does not support netmem TX");
        assert_eq!(
            extack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &capped).as_deref(),
            Some("Driver does not support netmem TX")
        );
        let full = payload(40, 24, "Device doesn't support DMA");
        assert_eq!(
            extack_message(NLM_F_ACK_TLVS, &full).as_deref(),
            Some("Device doesn't support DMA")
        );
        // Without the TLV flag there is no message, whatever the bytes.
        assert_eq!(extack_message(0, &full), None);
        // Reading a full request as capped lands in the request's body, not on the message.
        assert_ne!(
            extack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &full).as_deref(),
            Some("Device doesn't support DMA")
        );
    }
}
