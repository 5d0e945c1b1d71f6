//! What arrives at the receiver: distinct payloads to send, a reader that keeps datagrams
//! whole, and the checks that each datagram arrived whole with the exact bytes sent and that
//! a stream arrived intact (SEMANTICS.md §7 for the stream; R1 for datagrams).
//!
//! The checkers are pure, so the unit tests at the end feed them wrong answers.

use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use socket2::Socket;

use crate::model::stream::Pattern;

/// The bytes of message `index` of a run: noise keyed by the run's seed and the index, so
/// that no two messages (or parts of them) look alike.
pub fn payload(seed: u64, index: u32, len: usize) -> Vec<u8> {
    Pattern::Noise {
        seed: seed ^ ((index as u64 + 1) << 40),
    }
    .bytes(len)
}

/// Reads datagrams on a thread of its own, each kept as it arrived, until `want` arrived or
/// the socket stayed idle for `idle`.
pub struct DatagramReader(Option<std::thread::JoinHandle<io::Result<Vec<Vec<u8>>>>>);

impl DatagramReader {
    pub fn start(sock: Socket, want: usize, idle: Duration) -> Result<Self> {
        sock.set_read_timeout(Some(Duration::from_millis(10)))?;
        Ok(DatagramReader(Some(std::thread::spawn(move || {
            let mut got = Vec::new();
            // Larger than any UDP payload: a datagram can never be cut by this buffer.
            let mut buf = vec![0u8; 70_000];
            let mut last = Instant::now();
            while got.len() < want && last.elapsed() < idle {
                match io::Read::read(&mut &sock, &mut buf) {
                    Ok(n) => {
                        got.push(buf[..n].to_vec());
                        last = Instant::now();
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        }))))
    }

    /// The datagrams read, in arrival order.
    pub fn finish(mut self) -> Result<Vec<Vec<u8>>> {
        let h = self.0.take().expect("finish called once");
        match h.join() {
            Ok(r) => r.context("reading datagrams on the receiving side"),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// Reads a TCP stream to its end (the peer's FIN) on a thread of its own, keeping every
/// byte. Reads are bounded by the socket's timeout.
pub struct StreamCollector(Option<std::thread::JoinHandle<io::Result<Vec<u8>>>>);

impl StreamCollector {
    pub fn start(sock: Socket) -> Self {
        StreamCollector(Some(std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match io::Read::read(&mut &sock, &mut buf)? {
                    0 => return Ok(got),
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        })))
    }

    /// The whole stream; the sender must have shut its side down.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let h = self.0.take().expect("finish called once");
        match h.join() {
            Ok(r) => r.context("reading the stream on the receiving side"),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// What the datagram check found, for observed facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DatagramTally {
    pub sent: usize,
    pub received: usize,
    pub lost: usize,
    /// Datagrams that arrived before one sent earlier.
    pub reordered: usize,
}

/// Checks that every datagram received is one of `sent`, whole and byte for byte, and none
/// arrived twice. Without `allow_loss`, every datagram sent must have arrived.
pub fn check_datagrams(
    sent: &[Vec<u8>],
    got: &[Vec<u8>],
    allow_loss: bool,
) -> Result<DatagramTally, String> {
    let mut seen = vec![false; sent.len()];
    let mut tally = DatagramTally {
        sent: sent.len(),
        received: got.len(),
        ..Default::default()
    };
    let mut furthest: Option<usize> = None;
    for (i, g) in got.iter().enumerate() {
        let Some(idx) = sent.iter().position(|s| s == g) else {
            return Err(describe_stranger(sent, i, g));
        };
        if seen[idx] {
            return Err(format!(
                "received datagram #{i} is sent datagram #{idx} a second time"
            ));
        }
        seen[idx] = true;
        if furthest.is_some_and(|f| idx < f) {
            tally.reordered += 1;
        }
        furthest = Some(furthest.map_or(idx, |f| f.max(idx)));
    }
    let missing: Vec<usize> = (0..sent.len()).filter(|&i| !seen[i]).collect();
    tally.lost = missing.len();
    if !allow_loss && !missing.is_empty() {
        return Err(format!(
            "{} of {} datagrams never arrived (sent #{:?})",
            missing.len(),
            sent.len(),
            &missing[..missing.len().min(8)]
        ));
    }
    Ok(tally)
}

/// Why received datagram `i` matches nothing sent: cut or grown (same start), or changed.
fn describe_stranger(sent: &[Vec<u8>], i: usize, g: &[u8]) -> String {
    let head = g.len().min(16);
    let similar = sent
        .iter()
        .position(|s| s.len() >= head && s[..head] == g[..head]);
    match similar {
        Some(idx) if sent[idx].len() != g.len() => format!(
            "received datagram #{i} is sent datagram #{idx} with {} bytes instead of {}",
            g.len(),
            sent[idx].len()
        ),
        Some(idx) => {
            let off = first_difference(&sent[idx], g).unwrap_or(0);
            format!(
                "received datagram #{i} is sent datagram #{idx} with different bytes from \
                 offset {off} (sent {:#04x}, received {:#04x})",
                sent[idx][off], g[off]
            )
        }
        None => format!(
            "received datagram #{i} ({} bytes) matches no datagram sent",
            g.len()
        ),
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Checks that a stream arrived intact: the same length and the same bytes.
pub fn check_stream(sent: &[u8], got: &[u8]) -> Result<(), String> {
    match first_difference(sent, got) {
        None => Ok(()),
        Some(off) if off == sent.len().min(got.len()) => Err(format!(
            "the receiver got {} bytes of a {}-byte stream, identical up to there",
            got.len(),
            sent.len()
        )),
        Some(off) => Err(format!(
            "the stream differs from offset {off} of {} (sent {:#04x}, received {:#04x})",
            sent.len(),
            sent[off],
            got[off]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<Vec<u8>> {
        (0..3).map(|i| payload(7, i, 100 + i as usize)).collect()
    }

    #[test]
    fn payloads_differ() {
        assert_ne!(payload(1, 0, 64), payload(1, 1, 64));
        assert_ne!(payload(1, 0, 64), payload(2, 0, 64));
    }

    #[test]
    fn exact_datagrams_pass_and_reordering_is_counted() {
        let s = three();
        let got = vec![s[1].clone(), s[0].clone(), s[2].clone()];
        let t = check_datagrams(&s, &got, false).unwrap();
        assert_eq!((t.received, t.lost, t.reordered), (3, 0, 1));
    }

    #[test]
    fn a_cut_datagram_fails() {
        let s = three();
        let mut got = s.clone();
        got[1].truncate(50);
        let e = check_datagrams(&s, &got, true).unwrap_err();
        assert!(e.contains("50 bytes instead of 101"), "{e}");
    }

    #[test]
    fn a_changed_byte_fails() {
        let s = three();
        let mut got = s.clone();
        got[2][99] ^= 1;
        let e = check_datagrams(&s, &got, true).unwrap_err();
        assert!(e.contains("offset 99"), "{e}");
    }

    #[test]
    fn a_duplicate_fails() {
        let s = three();
        let got = vec![s[0].clone(), s[0].clone()];
        assert!(check_datagrams(&s, &got, true)
            .unwrap_err()
            .contains("second time"));
    }

    #[test]
    fn loss_fails_unless_allowed() {
        let s = three();
        let got = vec![s[0].clone()];
        assert!(check_datagrams(&s, &got, false).is_err());
        assert_eq!(check_datagrams(&s, &got, true).unwrap().lost, 2);
    }

    #[test]
    fn streams() {
        let s = payload(3, 0, 1000);
        assert!(check_stream(&s, &s).is_ok());
        assert!(check_stream(&s, &s[..999])
            .unwrap_err()
            .contains("999 bytes"));
        let mut bad = s.clone();
        bad[500] ^= 0xff;
        assert!(check_stream(&s, &bad).unwrap_err().contains("offset 500"));
    }
}
