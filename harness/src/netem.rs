//! An impaired link: a `netem` root qdisc (loss, delay, reordering) on an interface, and a
//! host route with a short minimum retransmission timeout, so that a case exercising TCP
//! retransmission stays fast.
//!
//! Both live in one of the suite's namespaces and die with it: nothing needs undoing. As in
//! [`crate::netlink`], each error names the equivalent `tc` or `ip` command.
//!
//! netlink-packet-route has no typed netem options, and netem's `TCA_OPTIONS` is not a list
//! of attributes but a fixed `struct tc_netem_qopt` followed by attributes; it is built here
//! as raw bytes (the layout of `include/uapi/linux/pkt_sched.h`).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use futures_util::StreamExt;
use netlink_packet_core::{
    DefaultNla, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::route::{RouteAttribute, RouteMetric};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::netlink::{in_ns, link_index};
use crate::NetNs;

/// `TCA_OPTIONS`.
const TCA_OPTIONS: u16 = 2;
/// `TCA_NETEM_REORDER`: `struct tc_netem_reorder { u32 probability, correlation; }`.
const TCA_NETEM_REORDER: u16 = 3;
/// `TCA_NETEM_LATENCY64`: the delay in nanoseconds (s64), exact where the qopt's ticks round.
const TCA_NETEM_LATENCY64: u16 = 10;
/// The packet scheduler's clock: one tick is 64 ns (`PSCHED_SHIFT`).
const PSCHED_SHIFT: u32 = 6;

/// What netem does to every packet leaving the interface.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Netem {
    /// Added to every packet (reordering needs some).
    pub delay: Duration,
    /// Share of packets dropped, 0.0 to 1.0.
    pub loss: f64,
    /// Share of packets sent at once, ahead of the delayed ones, 0.0 to 1.0.
    pub reorder: f64,
    /// Packets the qdisc holds at most.
    pub limit: u32,
}

/// A probability as netem takes it: a fraction of `u32::MAX`.
fn probability(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * u32::MAX as f64) as u32
}

impl Netem {
    /// The equivalent `tc` command line, for error messages and reports.
    pub fn tc_command(&self, dev: &str) -> String {
        let mut cmd = format!(
            "tc qdisc add dev {dev} root netem limit {} delay {}us",
            self.limit,
            self.delay.as_micros()
        );
        if self.loss > 0.0 {
            cmd += &format!(" loss {}%", self.loss * 100.0);
        }
        if self.reorder > 0.0 {
            cmd += &format!(" reorder {}%", self.reorder * 100.0);
        }
        cmd
    }

    /// The `TCA_OPTIONS` payload: `struct tc_netem_qopt` then the attributes.
    pub fn options(&self) -> Vec<u8> {
        let ns = self.delay.as_nanos().min(i64::MAX as u128) as u64;
        let ticks = (ns >> PSCHED_SHIFT).min(u32::MAX as u64) as u32;
        // With reordering, `gap` must be non-zero for the probability to apply (tc sets 1).
        let gap = u32::from(self.reorder > 0.0);
        let mut out = Vec::with_capacity(64);
        for field in [ticks, self.limit, probability(self.loss), gap, 0, 0] {
            out.extend_from_slice(&field.to_ne_bytes());
        }
        let mut attr = |kind: u16, value: &[u8]| {
            let len = 4 + value.len();
            out.extend_from_slice(&(len as u16).to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(value);
            out.resize(out.len().next_multiple_of(4), 0);
        };
        attr(TCA_NETEM_LATENCY64, &(ns as i64).to_ne_bytes());
        if self.reorder > 0.0 {
            let mut reorder = probability(self.reorder).to_ne_bytes().to_vec();
            reorder.extend_from_slice(&0u32.to_ne_bytes());
            attr(TCA_NETEM_REORDER, &reorder);
        }
        out
    }
}

/// Turns an answer of the kernel into an error if it is one (an ACK is an error message
/// without a code).
fn check_answer(msg: NetlinkMessage<RouteNetlinkMessage>) -> Result<(), rtnetlink::Error> {
    match msg.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(rtnetlink::Error::NetlinkError(e)),
        _ => Ok(()),
    }
}

/// Adds `netem` as the root qdisc of `dev` in `ns`.
pub fn add_netem(ns: &NetNs, dev: &str, netem: &Netem) -> Result<()> {
    let idx = link_index(ns, dev)?;
    let options = netem.options();
    in_ns(ns, &netem.tc_command(dev), async move |mut h: Handle| {
        let mut msg = TcMessage::with_index(idx as i32);
        msg.header.parent = TcHandle::ROOT;
        msg.attributes.push(TcAttribute::Kind("netem".into()));
        msg.attributes
            .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options)));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let mut answers = h.request(req)?;
        while let Some(answer) = answers.next().await {
            check_answer(answer)?;
        }
        Ok(())
    })
}

/// A host route to `dest` out of `dev` whose retransmission timeout is at least `rto_min`
/// (instead of the default 200 ms). More specific than the link's prefix route, so it is
/// the one TCP uses.
pub fn add_host_route_rto_min(
    ns: &NetNs,
    dev: &str,
    dest: IpAddr,
    rto_min: Duration,
) -> Result<()> {
    let idx = link_index(ns, dev)?;
    let ms = rto_min.as_millis().max(1) as u32;
    let cmd = format!("ip route add {dest} dev {dev} rto_min {ms}ms");
    in_ns(ns, &cmd, async move |h: Handle| {
        let mut msg = match dest {
            IpAddr::V4(d) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(d, 32)
                .output_interface(idx)
                .build(),
            IpAddr::V6(d) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(d, 128)
                .output_interface(idx)
                .build(),
        };
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::RtoMin(ms)]));
        h.route().add(msg).execute().await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_hold_the_qopt_then_the_attributes() {
        let n = Netem {
            delay: Duration::from_millis(2),
            loss: 0.5,
            reorder: 0.25,
            limit: 1000,
        };
        let o = n.options();
        let word = |i: usize| u32::from_ne_bytes(o[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(word(0), 2_000_000 >> 6, "latency in ticks");
        assert_eq!(word(1), 1000, "limit");
        assert_eq!(word(2), u32::MAX / 2, "loss");
        assert_eq!(word(3), 1, "gap");
        // LATENCY64: 4-byte header, 8-byte value.
        assert_eq!(u16::from_ne_bytes([o[24], o[25]]), 12);
        assert_eq!(u16::from_ne_bytes([o[26], o[27]]), TCA_NETEM_LATENCY64);
        assert_eq!(i64::from_ne_bytes(o[28..36].try_into().unwrap()), 2_000_000);
        assert_eq!(u16::from_ne_bytes([o[38], o[39]]), TCA_NETEM_REORDER);
        assert_eq!(o.len(), 48);
        assert!(n.tc_command("zc-a").contains("loss 50% reorder 25%"));
    }
}
