//! The `uring` area: io_uring zero-copy send, `IORING_OP_SEND_ZC` (6.0) and
//! `IORING_OP_SENDMSG_ZC` (6.1) (SEMANTICS.md §8).
//!
//! The one rule every case checks on every stream (`model::uring_notif`): a notification
//! follows if and only if the request's first CQE carried `F_MORE`, exactly once, after that
//! CQE, with the request's own `user_data`, flags exactly `F_NOTIF`. The uAPI has no separate
//! notification `user_data` (no field in `io_uring.h` up to 7.3: the notification reuses the
//! request's), so there is nothing to probe; the model rejects a notification under any other
//! `user_data`. Which errors carry `F_MORE` is recorded (`*.f_more` facts), never assumed.
//!
//! # Where the assertions of the reference tests are made
//!
//! liburing `test/send-zerocopy.c`:
//! * opcode probe for SEND_ZC / SENDMSG_ZC / READV_FIXED: probes `io_uring.send_zc`,
//!   `io_uring.sendmsg_zc`, `io_uring.sendmsg_zc_fixed` (a real SENDMSG_ZC with
//!   `IORING_RECVSEND_FIXED_BUF`, rather than inferring it from READV_FIXED).
//! * `test_basic_send`: res == length, F_MORE, then a notification with the same user_data,
//!   F_NOTIF and no F_MORE, nothing after, the receiver gets the bytes: `uring.protocol.*`
//!   (the model, byte-exact delivery) and the linger of `uring.error.*`. Left out: liburing
//!   requires F_MORE on a successful send; the uAPI allows a first CQE without it (then no
//!   notification), so the suite counts those (`zc_without_more`) instead of failing them.
//! * `test_basic_send` vectored (`IORING_SEND_VECTORIZED`, EINVAL when unknown): probe
//!   `io_uring.send_vectorized`, form `vector_zc` of the property.
//! * `test_send_faults`: EFAULT for buffer address 1 (`uring.error.bad_buffer`), EFAULT for a
//!   destination pointer of 1 (`uring.error.bad_dest_addr`), EINVAL for zc flags ~0
//!   (`uring.error.unknown_flag`, `all_bits`); in each, the notification never first, res 0
//!   and flags exactly F_NOTIF, at most two CQEs, an empty CQ after (model + linger).
//! * `do_test_inet_send` / `test_inet_send` matrix, as property dimensions of
//!   `uring.protocol.*`: SEND_ZC / SENDMSG_ZC / plain SEND, registered buffers (forms `fixed`,
//!   `fixed_msg`) and mixed chains, IORING_RECVSEND_POLL_FIRST, IOSQE_ASYNC, IOSQE_IO_LINK,
//!   MSG_WAITALL (res must equal length), several iovecs with a 1-byte first one, a
//!   destination address on UDP, IPv4/IPv6, SO_ZEROCOPY set or not, TCP sent from the
//!   accepted socket (liburing's swapped sockets), buffers at random (odd) offsets, the
//!   DEFER_TASKRUN and SQPOLL rings (a per-sequence dimension), exact bytes at the receiver.
//!   Cork with MSG_MORE and mixed registration: `uring.udp.cork_linked`. Unconnected sockets
//!   with an address: `uring.udp.dest_copied_at_submit`. Buffer table: offsets +13, +41,
//!   page + 27, the end of the registration (`uring.fixed.offsets`), hugetlb
//!   (`uring.fixed.hugetlb`, skipped without reserved huge pages). ENOMEM tolerated by
//!   liburing: `uring.error.memlock` checks the protocol under it. Left out: the 32 MiB
//!   buffer (the property's TCP sends reach 4 MiB, which already completes short and
//!   exercises MSG_WAITALL retries; 32 MiB would cost the area's time budget) and the
//!   32-iovec `long_iovec` (the property uses up to four iovecs).
//! * `test_async_addr` (a timeout linked before a send whose address is zeroed after submit;
//!   the send must still reach its peer): `uring.udp.dest_copied_at_submit`, for SEND_ZC and
//!   SENDMSG_ZC, with a second receiver to see where the datagram would have gone.
//! * `test_sendzc_report` (res 1 or EINVAL, F_MORE, notification without F_MORE): probe
//!   `io_uring.report_usage`, `uring.usage.*`.
//! * `test_invalid_zc` (NULL msghdr under IOSQE_ASYNC completes, one more CQE iff F_MORE):
//!   `uring.error.null_msghdr_async`.
//! * `run_basic_tests` on a DEFER_TASKRUN ring: the DEFER_TASKRUN sequences of `uring.protocol.*`.
//!
//! liburing `test/sendzc-bug.c` (SENDMSG_ZC from a registered buffer on a SO_ZEROCOPY socket;
//! buffers unregistered and unmapped after the first CQE; the read must not crash):
//! `uring.lifetime.unmap_before_notification`, which also requires the notification to come
//! and the bytes to be the ones at submission, for an unregistered buffer too.
//!
//! liburing `test/vec-regbuf.c` (the SENDMSG_ZC half; the readv/writev half is not about
//! zero-copy send and is left out):
//! * `test_basic` layouts (a page, 3 bytes at +1, a range crossing a page by one byte at each
//!   end, 12 pages + 33, unaligned multi-page, the whole buffer, right-aligned, 2 to 6
//!   iovecs, res == total and exact bytes): form `fixed_msg` of the property (random odd
//!   offsets, up to four iovecs, the first of one byte) and `uring.fixed.offsets`.
//! * `test_fail` (eight empty iovecs give res <= 0; NULL, -1, one byte before and one past
//!   the registration give res < 0): `uring.error.fixed_range`.
//!
//! Kernel `tools/testing/selftests/net/io_uring_zerocopy_tx.c`:
//! * user_data is one the test used: model `UnknownRequest`.
//! * a notification never carries F_MORE: `MoreOnNotification`.
//! * a notification only while a F_MORE completion is outstanding: `UnannouncedNotification`,
//!   `DuplicateNotification`.
//! * F_MORE only on zero-copy requests: `MoreOnPlainSend`.
//! * every outstanding notification arrives at the end: `MissingNotification`.
//! * res >= 0 (it tolerates EAGAIN): the property requires success on a healthy connection;
//!   the EAGAIN it tolerates (POLL_FIRST issued by io-wq in blocking mode) is recorded by
//!   `uring.flags.poll_first`, where the man pages leave the result open.
//! * modes NONZC / ZC / ZC_FIXED / MIXED: the property's forms, mixed in every sequence.
//! * `UDP_CORK` around a batch: left out as a separate knob; `uring.udp.cork_linked` corks
//!   with MSG_MORE, which `udp_sendmsg` treats the same way (both set its cork request).
//! * the throughput report: not an assertion.
//!
//! Beyond the references: SQPOLL rings (a ring kind of `uring.protocol.*`), linked timeouts and
//! cancellation of a stuck send (`uring.link.timeout`, `uring.cancel.stuck_send`), a failed
//! chain head (`uring.link.failed_head`), overwriting before the notification
//! (`uring.lifetime.overwrite_before_notification`), REPORT_USAGE on every path of the COPIED
//! truth table (`uring.usage.paths`).

mod buffers;
mod chains;
mod collect;
mod errors;
pub mod facts;
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
