//! The `send` area: MSG_ZEROCOPY and its completion notifications (SEMANTICS.md §1–6, §12).
//!
//! One module per group of promises: opting in and detection (`opt_in`), the notification
//! format (`format`) and its cmsg level per socket family, IPv4-mapped sockets included
//! (`mapped`), the id counter (`counter`), EPIPE and Fast Open answers (`closed`), the
//! COPIED code over paths (`copied`) and with taps on the path (`tap`), memory limits
//! (`limits`), wake-ups, truncation, resets and Fast Open (`events`), the stateful property
//! of ids and their coalescing (`coalescing`) and what unread completions merge into
//! (`merge`), the bytes the receiver gets (`integrity`), reusing a buffer once notified
//! (`reuse`), sendmmsg and recvmmsg (`mmsg`), UDP GSO (`gso`), UDP corking (`cork`), and a
//! lossy, reordering link (`netem`). `flow` builds the sockets; `wire` makes payloads and
//! checks what arrives.
//!
//! What the reference tests assert, and where each is covered here ("recorded": observed
//! and reported, not judged):
//!
//! | reference | assertion | cases |
//! |---|---|---|
//! | packetdrill, every script | runs three ways: IPv4, IPv6, IPv4-mapped IPv6; cmsg SOL_IP/IP_RECVERR on the first, SOL_IPV6/IPV6_RECVERR on both AF_INET6 runs | `send.cmsg_level.*` (judged per family), `send.mapped.pair`; IPv4 and IPv6 in every other case |
//! | packetdrill, every script | the peer is a tun device, so every notification is COPIED | `send.tap.tun.udp4` (recorded) |
//! | packetdrill `basic.pkt` | ids 0 then 1, one notification each | `send.format.*`, `send.opt_in.*`, `send.reuse.pair` |
//! | packetdrill `batch.pkt` | two acknowledged, unread sends are reported as one `[0,1]` | `send.outstanding` (judged, eight sends); `send.ids.*` (random reads: recorded), `send.epoll_edge.*` |
//! | packetdrill `client.pkt` | the connecting side sends with zero-copy | every `*.tcp*` case (the client sends) |
//! | packetdrill `closed.pkt` | a send on a never-connected socket fails with EPIPE, takes no id, queues nothing; after connecting, id 0 | `send.closed.tcp.lo` (judged, also after shutdown), `send.counter.tcp*` |
//! | packetdrill `epoll_edge.pkt`, `epoll_exclusive.pkt` | one EPOLLERR per completion | `send.epoll_edge.*` |
//! | packetdrill `epoll_oneshot.pkt` | one EPOLLERR until re-armed; `[0,2]` at the end | `send.epoll_oneshot.*` |
//! | packetdrill `fastopen-client.pkt` | EINPROGRESS without a cookie and no id; with one, the data is in the SYN and reported as `[0,0]` | `send.tfo.*` (judged by `closed::judge_fastopen`) |
//! | packetdrill `fastopen-server.pkt` | the accepted child inherits SO_ZEROCOPY; its first id is 0 | `send.tfo.*`, `send.sockopt.inherit.*` |
//! | packetdrill `maxfrags.pkt` | many one-byte iovecs: one call, one id | `send.counter.tcp*`; the split into 17 + 1 frags and the PSH bits need a capture: left out |
//! | packetdrill `small.pkt` | one-byte sends take ids and are COPIED | `send.ids.*`, `send.copied.*`, `send.integrity.*` (1-byte sends) |
//! | msg_zerocopy.c | origin ZEROCOPY, errno 0, cmsg level/type | `send.format.*` (either level on IPv6, as the test), `send.cmsg_level.*` (exact level) |
//! | msg_zerocopy.c | MSG_CTRUNC is fatal (the notification is lost) | `send.ctrunc.*` |
//! | msg_zerocopy.c | "gap" between notifications (a warning there) | recorded: `send.netem.pair` (`out_of_order`), `send.ids.*` |
//! | msg_zerocopy.c | no notification missing at the end | `send.ids.*` and every case that sends with the flag (exactly once) |
//! | msg_zerocopy.c | COPIED consistent across notifications ("inconsistent", a warning there) | recorded: `send.copied_merge.*`; judged per cell in `send.copied.*` |
//! | msg_zerocopy.c | a zero-length send expects no completion | `send.counter.*` (TCP judged; UDP recorded) |
//! | msg_zerocopy.c `-c N` (UDP_CORK) | a datagram from N appends, one id per zero-copy append | `send.cork.udp.*` |
//! | msg_zerocopy.c `-m` (cork mixed) | copied and zero-copy appends alternate, starting copied | `send.cork.udp.*` (both orders) |
//! | msg_zerocopy.c `-r` (receiver) | each datagram has the full length and its first 64 bytes match; TCP bytes counted | `send.integrity.*` (every byte, every path), `send.mapped.pair`, `send.gso.*`, `send.cork.*`, `send.sendmmsg.*` |
//! | msg_zerocopy.c `-Z` / msg_zerocopy.sh | COPIED when received locally; not copied when forwarded out (6.17+) | `send.copied.*` (forwarded: recorded), `send.gso.*` (judged COPIED) |
//! | msg_zerocopy.c `raw`, `raw_hdrincl`, `packet`, `packet_dgram` | zero-copy over raw and packet sockets | SO_ZEROCOPY is refused on them since 5.x: `send.sockopt.types` (errno recorded); nothing more to send |
//! | msg_zerocopy.c, RDS | zero-copy over RDS (SOL_RDS notifications) | left out: needs the rds and rds_tcp modules and a different notification format |
//! | msg_zerocopy.rst | sendmmsg works with the flag; recvmmsg reads several notifications | `send.sendmmsg.udp.pair` (one id per message, partial batches; batch sizes recorded) |
//! | msg_zerocopy.rst | the buffer may be reused once notified | `send.reuse.pair` (delayed receiver) |
//! | msg_zerocopy.rst | TCP: at most one notification outstanding (in-order acks) | `send.outstanding` (TCP judged; UDP merges recorded) |
//! | msg_zerocopy.rst | out of order on retransmission | `send.netem.pair` (ids once each and data judged; order recorded) |
//! | msg_zerocopy.rst | looping onto packet sockets and tun devices copies | `send.tap.*` (recorded) |
//!
//! Beyond them: random sequences mixing sizes from 0 B to 4 MiB, drains, pauses, corking and
//! shutdown (`send.ids.*`), the limits (`send.optmem.*`, `send.memlock.*`), resets and aborts,
//! and the truth table of the COPIED code over five kinds of path.

mod closed;
mod coalescing;
mod copied;
mod cork;
mod counter;
mod events;
pub mod facts;
pub mod flow;
mod format;
mod gso;
mod integrity;
mod limits;
mod mapped;
mod merge;
mod mmsg;
mod netem;
mod opt_in;
mod reuse;
mod tap;
mod wire;

use crate::case::Case;

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(opt_in::cases());
    cases.extend(format::cases());
    cases.extend(counter::cases());
    cases.extend(copied::cases());
    cases.extend(limits::cases());
    cases.extend(events::cases());
    cases.extend(coalescing::cases());
    cases.extend(mapped::cases());
    cases.extend(integrity::cases());
    cases.extend(reuse::cases());
    cases.extend(mmsg::cases());
    cases.extend(gso::cases());
    cases.extend(cork::cases());
    cases.extend(closed::cases());
    cases.extend(merge::cases());
    cases.extend(netem::cases());
    cases.extend(tap::cases());
    cases
}
