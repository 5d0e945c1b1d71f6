//! The `send` area: MSG_ZEROCOPY and its completion notifications (SEMANTICS.md §1–6, §12).
//!
//! One module per group of promises: opting in and detection (`opt_in`), the notification
//! format (`format`), the id counter (`counter`), the COPIED code over paths (`copied`),
//! memory limits (`limits`), wake-ups, truncation, resets and Fast Open (`events`), and the
//! stateful property of ids and their coalescing (`coalescing`). `flow` builds the sockets.
//!
//! What the reference tests assert, and where each is covered here:
//!
//! | reference | assertion | cases |
//! |---|---|---|
//! | packetdrill `basic.pkt` | ids 0 then 1, one notification each | `send.format.*`, `send.opt_in.*` |
//! | packetdrill `batch.pkt` | two unread sends may be reported as `[0,1]` | `send.ids.*` (coalescing recorded), `send.epoll_edge.*` |
//! | packetdrill `client.pkt` | the connecting side sends with zero-copy | every `*.tcp*` case (the client sends) |
//! | packetdrill `closed.pkt` | a send on an unconnected socket fails, takes no id | `send.counter.tcp*` |
//! | packetdrill `epoll_edge.pkt`, `epoll_exclusive.pkt` | one EPOLLERR per completion | `send.epoll_edge.*` |
//! | packetdrill `epoll_oneshot.pkt` | one EPOLLERR until re-armed; `[0,2]` at the end | `send.epoll_oneshot.*` |
//! | packetdrill `fastopen-client.pkt`, `fastopen-server.pkt` | EINPROGRESS without a cookie and no id; data in the SYN takes id 0; the child sends | `send.tfo.*` |
//! | packetdrill `maxfrags.pkt` | many one-byte iovecs: one call, one id (the wire layout needs a capture: not checked) | `send.counter.tcp*` |
//! | packetdrill `small.pkt` | one-byte sends take ids and complete | `send.ids.*`, `send.copied.*` |
//! | msg_zerocopy.c | origin, errno, cmsg level/type | `send.format.*` |
//! | msg_zerocopy.c | MSG_CTRUNC is fatal (the notification is lost) | `send.ctrunc.*` |
//! | msg_zerocopy.c | no gap between notifications; none missing at the end | `send.ids.*` |
//! | msg_zerocopy.c `-Z` / msg_zerocopy.sh | COPIED when received locally; not copied when forwarded out (6.17+) | `send.copied.*` (forwarded: recorded) |
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
