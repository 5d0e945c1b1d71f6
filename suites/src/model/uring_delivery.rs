//! What the receiver of io_uring sends must get (SEMANTICS.md R8.2): exactly the bytes each
//! request said it sent, taken from its buffer as it was at submission.
//!
//! A request reports `res` bytes sent: on a stream socket those are the first `res` bytes of
//! its payload (a short send without `MSG_WAITALL` sends a prefix), and they reach the peer as
//! one contiguous run, since a send without `MSG_WAITALL` is one `sendmsg` call. A request
//! with `MSG_WAITALL` retries after a partial send, so other requests on the socket may send
//! in between: its run may arrive in pieces, still in order. Independent requests on one
//! socket are not ordered by the uAPI (only `IOSQE_IO_LINK` orders them), so the stream must
//! be an interleaving of the runs in which only `MSG_WAITALL` runs are split. On a datagram socket each
//! successful request is one datagram, delivered whole: every datagram received must be
//! exactly one request's payload, and every request's payload must arrive once.

use std::fmt;

use serde::Serialize;

/// One request's contribution: the bytes it reported as sent.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub user_data: u64,
    pub bytes: &'a [u8],
    /// Whether the run may arrive in pieces (a stream send with `MSG_WAITALL`).
    pub may_split: bool,
}

/// How a receiver's bytes disagree with what the requests reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mismatch", rename_all = "snake_case")]
pub enum Mismatch {
    /// The stream has a different length than the runs together.
    StreamLength { expected: usize, received: usize },
    /// No order of the runs gives the received stream; `at` is the first offset where the
    /// best attempt (runs in submission order) differs.
    StreamContent {
        at: usize,
        expected: u8,
        received: u8,
    },
    /// A datagram that is no request's payload (wrong bytes, a merged or a split datagram).
    UnknownDatagram { index: usize, len: usize },
    /// A request's datagram never arrived (or arrived merged into another).
    MissingDatagram { user_data: u64, len: usize },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::StreamLength { expected, received } => write!(
                f,
                "the completions reported {expected} bytes on the stream, the receiver got \
                 {received}"
            ),
            Mismatch::StreamContent {
                at,
                expected,
                received,
            } => write!(
                f,
                "the received stream is no ordering of the requests' bytes: at offset {at} \
                 (requests in submission order) {expected:#04x} was sent, {received:#04x} \
                 received"
            ),
            Mismatch::UnknownDatagram { index, len } => write!(
                f,
                "datagram #{index} ({len} bytes) is not the payload of any request"
            ),
            Mismatch::MissingDatagram { user_data, len } => write!(
                f,
                "the {len}-byte datagram of request {user_data} never arrived whole"
            ),
        }
    }
}

/// Work limit of the search for an interleaving of the runs: with payloads of distinct random
/// content only one run ever matches at an offset, so the budget is never near.
const SEARCH_BUDGET: usize = 200_000;

/// Checks a stream socket: `received` must be an interleaving of `runs` in which each run's
/// bytes keep their order and only runs that `may_split` are cut into pieces.
pub fn check_stream(runs: &[Run<'_>], received: &[u8]) -> Result<(), Mismatch> {
    let expected: usize = runs.iter().map(|r| r.bytes.len()).sum();
    if expected != received.len() {
        return Err(Mismatch::StreamLength {
            expected,
            received: received.len(),
        });
    }
    let live: Vec<&Run<'_>> = runs.iter().filter(|r| !r.bytes.is_empty()).collect();
    let mut done = vec![0usize; live.len()];
    let mut budget = SEARCH_BUDGET;
    if place(&live, &mut done, received, &mut budget) {
        return Ok(());
    }
    // Report the first difference against submission order.
    let flat: Vec<u8> = live.iter().flat_map(|r| r.bytes.iter().copied()).collect();
    let at = flat
        .iter()
        .zip(received)
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    Err(Mismatch::StreamContent {
        at,
        expected: flat.get(at).copied().unwrap_or(0),
        received: received.get(at).copied().unwrap_or(0),
    })
}

/// Depth-first search: `done[i]` bytes of run `i` are placed; `rest` is still to explain.
/// A whole run is placed at once; a splittable run by its longest matching piece, or a
/// slightly shorter one in case the next piece happens to start with the same bytes.
fn place(runs: &[&Run<'_>], done: &mut [usize], rest: &[u8], budget: &mut usize) -> bool {
    if rest.is_empty() {
        return runs
            .iter()
            .zip(done.iter())
            .all(|(r, d)| *d == r.bytes.len());
    }
    for i in 0..runs.len() {
        let left = &runs[i].bytes[done[i]..];
        if left.is_empty() || (!runs[i].may_split && done[i] > 0) {
            continue;
        }
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let matched = common_prefix(left, rest);
        let pieces: Vec<usize> = if runs[i].may_split {
            (matched.saturating_sub(2)..=matched)
                .rev()
                .filter(|&n| n > 0)
                .collect()
        } else if matched == left.len() {
            vec![matched]
        } else {
            vec![]
        };
        for n in pieces {
            done[i] += n;
            if place(runs, done, &rest[n..], budget) {
                return true;
            }
            done[i] -= n;
        }
    }
    false
}

/// The length of the common prefix of `a` and `b`, compared a block at a time (payloads are
/// megabytes; a byte loop is slow in debug builds).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Checks a datagram socket: every received datagram is exactly one request's payload, and
/// every request's payload arrived once. Order is free (requests are not ordered).
pub fn check_datagrams(sent: &[Run<'_>], received: &[Vec<u8>]) -> Result<(), Mismatch> {
    let mut used = vec![false; sent.len()];
    for (index, d) in received.iter().enumerate() {
        let hit = sent
            .iter()
            .enumerate()
            .position(|(i, r)| !used[i] && r.bytes == &d[..]);
        match hit {
            Some(i) => used[i] = true,
            None => {
                return Err(Mismatch::UnknownDatagram {
                    index,
                    len: d.len(),
                })
            }
        }
    }
    match sent.iter().zip(&used).find(|(_, u)| !**u) {
        Some((r, _)) => Err(Mismatch::MissingDatagram {
            user_data: r.user_data,
            len: r.bytes.len(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(user_data: u64, bytes: &[u8]) -> Run<'_> {
        Run {
            user_data,
            bytes,
            may_split: false,
        }
    }

    fn waitall(user_data: u64, bytes: &[u8]) -> Run<'_> {
        Run {
            user_data,
            bytes,
            may_split: true,
        }
    }

    #[test]
    fn runs_in_submission_order_are_accepted() {
        let runs = [run(1, b"abc"), run(2, b""), run(3, b"de")];
        assert_eq!(check_stream(&runs, b"abcde"), Ok(()));
    }

    #[test]
    fn runs_in_another_order_are_accepted() {
        let runs = [run(1, b"abc"), run(2, b"de")];
        assert_eq!(check_stream(&runs, b"deabc"), Ok(()));
    }

    #[test]
    fn wrong_bytes_at_the_receiver_are_caught() {
        let runs = [run(1, b"abc"), run(2, b"de")];
        assert_eq!(
            check_stream(&runs, b"abXde"),
            Err(Mismatch::StreamContent {
                at: 2,
                expected: b'c',
                received: b'X'
            })
        );
    }

    #[test]
    fn interleaved_runs_are_caught() {
        // Bytes of one request split around another's: no send without MSG_WAITALL does that.
        let runs = [run(1, b"abcd"), run(2, b"xy")];
        assert!(check_stream(&runs, b"abxycd").is_err());
    }

    #[test]
    fn a_waitall_run_may_arrive_in_pieces() {
        let runs = [waitall(1, b"abcdef"), run(2, b"xy")];
        assert_eq!(check_stream(&runs, b"abcxydef"), Ok(()));
        // But its pieces keep their order.
        assert!(check_stream(&runs, b"defxyabc").is_err());
        // And a run without MSG_WAITALL is never cut.
        let runs = [run(1, b"abcdef"), waitall(2, b"xy")];
        assert!(check_stream(&runs, b"abcxydef").is_err());
    }

    #[test]
    fn missing_or_extra_bytes_are_caught() {
        let runs = [run(1, b"abc")];
        assert_eq!(
            check_stream(&runs, b"ab"),
            Err(Mismatch::StreamLength {
                expected: 3,
                received: 2
            })
        );
        assert!(check_stream(&runs, b"abcc").is_err());
    }

    #[test]
    fn datagrams_must_keep_their_boundaries() {
        let sent = [run(1, b"ab"), run(2, b"cd")];
        assert_eq!(
            check_datagrams(&sent, &[b"cd".to_vec(), b"ab".to_vec()]),
            Ok(())
        );
        // Merged into one datagram.
        assert_eq!(
            check_datagrams(&sent, &[b"abcd".to_vec()]),
            Err(Mismatch::UnknownDatagram { index: 0, len: 4 })
        );
        // One lost.
        assert_eq!(
            check_datagrams(&sent, &[b"ab".to_vec()]),
            Err(Mismatch::MissingDatagram {
                user_data: 2,
                len: 2
            })
        );
        // Wrong bytes.
        assert!(check_datagrams(&sent, &[b"ab".to_vec(), b"cX".to_vec()]).is_err());
        // Duplicated.
        assert!(check_datagrams(&sent, &[b"ab".to_vec(), b"ab".to_vec(), b"cd".to_vec()]).is_err());
    }
}
