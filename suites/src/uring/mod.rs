//! The `uring` area: io_uring zero-copy send, `IORING_OP_SEND_ZC` (6.0) and
//! `IORING_OP_SENDMSG_ZC` (6.1) (SEMANTICS.md §8).

mod buffers;
mod chains;
mod collect;
mod errors;
pub mod probes;
mod protocol;
pub mod support;
mod usage;

use crate::case::Case;

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(protocol::cases());
    cases.extend(usage::cases());
    cases.extend(errors::cases());
    cases.extend(chains::cases());
    cases.extend(buffers::cases());
    cases
}
