//! Locked-memory accounting of MSG_ZEROCOPY (SEMANTICS.md R5.2, OBSERVED-6.18 C).
//!
//! Without CAP_IPC_LOCK, every zero-copy send (and every extension of a shared
//! notification, as each corked UDP append is) charges `(size >> PAGE_SHIFT) + 2` pages to
//! the user's `locked_vm`, the worst case of pages a buffer of that size can straddle. The
//! charge is refused, and the send fails with ENOBUFS, when the total would exceed
//! `RLIMIT_MEMLOCK >> PAGE_SHIFT`. A zero-size charge is free. `size` is what the protocol
//! hands to the accounting: the send's length for TCP; for UDP, the length the datagram
//! grows by, which for its first part includes the 8-byte UDP header.

use harness::sockets::Proto;

/// The UDP header, counted in the first append of a datagram.
pub const UDP_HEADER: usize = 8;

/// The bytes a send hands to the accounting.
pub fn accounted_size(proto: Proto, len: usize, first_part_of_datagram: bool) -> usize {
    match proto {
        Proto::Tcp => len,
        Proto::Udp if first_part_of_datagram => len + UDP_HEADER,
        Proto::Udp => len,
    }
}

/// Pages charged for `size` bytes.
pub fn pages_charged(size: usize, page_size: usize) -> u64 {
    if size == 0 {
        0
    } else {
        (size / page_size) as u64 + 2
    }
}

/// The pages a limit of `limit_bytes` allows.
pub fn limit_pages(limit_bytes: u64, page_size: usize) -> u64 {
    limit_bytes / page_size as u64
}

/// Whether a charge of `pages` on top of `used` fits under `limit`.
pub fn admits(used: u64, pages: u64, limit: u64) -> bool {
    used + pages <= limit
}

/// The largest send length (payload bytes) that one send alone may have under `limit`
/// pages, or `None` if not even one byte fits.
pub fn largest_single_send(proto: Proto, limit: u64, page_size: usize) -> Option<usize> {
    if limit < 2 {
        return None;
    }
    // The largest size with (size / page) + 2 <= limit, minus what the protocol adds.
    let size = ((limit - 2 + 1) as usize) * page_size - 1;
    size.checked_sub(accounted_size(proto, 0, true))
}

/// How many corked UDP appends of `len` bytes each fit under `limit` pages.
pub fn appends_within(len: usize, limit: u64, page_size: usize) -> u64 {
    let mut used = 0;
    let mut n = 0;
    loop {
        let pages = pages_charged(accounted_size(Proto::Udp, len, n == 0), page_size);
        if !admits(used, pages, limit) {
            return n;
        }
        used += pages;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    /// The figures OBSERVED-6.18 C reports for a 64 KiB limit.
    #[test]
    fn matches_the_observed_tcp_boundary() {
        let limit = limit_pages(64 * 1024, PAGE);
        assert_eq!(limit, 16);
        assert!(admits(0, pages_charged(57_344, PAGE), limit));
        assert!(!admits(0, pages_charged(61_440, PAGE), limit));
        assert_eq!(largest_single_send(Proto::Tcp, limit, PAGE), Some(61_439));
        assert!(admits(0, pages_charged(61_439, PAGE), limit));
    }

    #[test]
    fn udp_counts_its_header_once_per_datagram() {
        let limit = 16;
        let largest = largest_single_send(Proto::Udp, limit, PAGE).unwrap();
        assert_eq!(largest, 61_431);
        assert!(admits(
            0,
            pages_charged(accounted_size(Proto::Udp, largest, true), PAGE),
            limit
        ));
        assert!(!admits(
            0,
            pages_charged(accounted_size(Proto::Udp, largest + 1, true), PAGE),
            limit
        ));
        // Appends of 5000 bytes: 3 pages each (5008 and 5000 bytes both span one page
        // boundary's worth), so five fit in 16 pages and the sixth does not.
        assert_eq!(appends_within(5000, limit, PAGE), 5);
        assert_eq!(appends_within(1, limit, PAGE), 8);
    }

    #[test]
    fn nothing_fits_a_zero_limit_and_empty_sends_are_free() {
        assert_eq!(largest_single_send(Proto::Tcp, 0, PAGE), None);
        assert_eq!(largest_single_send(Proto::Tcp, 1, PAGE), None);
        assert!(!admits(0, pages_charged(1, PAGE), 0));
        assert_eq!(pages_charged(0, PAGE), 0);
    }
}
