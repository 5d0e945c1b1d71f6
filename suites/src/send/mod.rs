//! The `send` area: MSG_ZEROCOPY and its completion notifications (SEMANTICS.md §1–6).

mod basics;
mod coalescing;
pub mod flow;

use crate::case::Case;

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(basics::cases());
    cases.extend(coalescing::cases());
    cases
}
