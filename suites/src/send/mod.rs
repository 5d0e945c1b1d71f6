//! The `send` area: MSG_ZEROCOPY and its completion notifications (SEMANTICS.md §1–6).

mod basics;
pub mod flow;
mod ids_property;

use crate::case::Case;

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(basics::cases());
    cases.extend(ids_property::cases());
    cases
}
