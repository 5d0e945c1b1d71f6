//! The `send` area: MSG_ZEROCOPY and its completion notifications (SEMANTICS.md §1–6, §12).
//!
//! One module per group of promises: opting in and detection (`opt_in`), the notification
//! format (`format`), the id counter (`counter`), the COPIED code over paths (`copied`),
//! memory limits (`limits`), wake-ups, truncation, resets and Fast Open (`events`), and the
//! stateful property of ids and their coalescing (`coalescing`). `flow` builds the sockets.

mod coalescing;
mod copied;
mod counter;
mod events;
pub mod flow;
mod format;
mod limits;
mod opt_in;

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
    cases
}
