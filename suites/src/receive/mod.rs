//! The `receive` area: TCP_ZEROCOPY_RECEIVE, the mmap of a TCP socket it maps pages into, and
//! the struct-size ladder of its option (SEMANTICS.md §7).
//!
//! Plumbing: `net` (networks where pages can be mapped), `sender` (the sending thread),
//! `fixture` (a known stream queued at the receiver), `rx_loop` (the reference receive loop),
//! `probes` (what of the option this kernel has). The model checked against lives in
//! `model::zc_receive` (one call) and `model::stream` (the bytes).

mod alignment;
mod copybuf;
mod end;
pub mod facts;
mod fields;
pub mod fixture;
mod integrity;
mod loop_property;
mod mmap;
pub mod net;
mod optlen;
pub mod probes;
pub mod rx_loop;
pub mod sender;
mod sendfile;
mod vma;

use crate::case::Case;

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(mmap::cases());
    cases.extend(vma::cases());
    cases.extend(optlen::cases());
    cases.extend(alignment::cases());
    cases.extend(fields::cases());
    cases.extend(copybuf::cases());
    cases.extend(end::cases());
    cases.extend(sendfile::cases());
    cases.extend(integrity::cases());
    cases.extend(loop_property::cases());
    cases
}
