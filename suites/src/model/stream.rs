//! The bytes of a test stream, and the check that what a receiver got is exactly what was
//! sent: in order, nothing lost, nothing repeated, nothing invented (SEMANTICS.md §7).
//!
//! A zero-copy receiver gets its bytes three ways: pages mapped into a socket mapping, bytes
//! read with `recv()` because the kernel said to skip them (`recv_skip_hint`), and bytes the
//! kernel copied into `copybuf`. The checker takes the pieces in the order the receiver
//! consumed them and compares each with the stream at the receiver's position.
//!
//! Every pattern is position dependent (each 8-byte word carries its own offset or a keyed
//! hash of it), so a lost, repeated or reordered piece of any size shows up as a mismatch,
//! and for the stamped patterns the evidence says where the wrong bytes came from.

use std::fmt;

use serde::Serialize;

/// How a stream's bytes are made from their offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Pattern {
    /// Each aligned 8-byte word is its own stream offset XOR the seed (little endian).
    Stamped { seed: u64 },
    /// Each word is a keyed hash of its index: looks random, repeats nowhere.
    Noise { seed: u64 },
    /// Zeros, except the first word of every 512-byte block, which is stamped: pages of
    /// almost nothing, where a wrongly mapped zero page would hide if anything could.
    Sparse { seed: u64 },
}

const SPARSE_BLOCK: u64 = 512;
/// Set in every sparse stamp, so that no stamp is zero whatever the seed.
const SPARSE_MARK: u64 = 1 << 63;

fn mix(x: u64) -> u64 {
    // splitmix64's finaliser: a bijection, so distinct words never collide.
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pattern {
    /// The 8-byte word at word index `w` (stream offset `8 * w`).
    fn word(&self, w: u64) -> u64 {
        match *self {
            Pattern::Stamped { seed } => (w * 8) ^ seed,
            Pattern::Noise { seed } => mix(w ^ mix(seed)),
            Pattern::Sparse { seed } => {
                if (w * 8).is_multiple_of(SPARSE_BLOCK) {
                    ((w * 8) ^ seed) | SPARSE_MARK
                } else {
                    0
                }
            }
        }
    }

    /// Writes the stream bytes at offsets `start..start + out.len()` into `out`.
    pub fn fill(&self, start: u64, out: &mut [u8]) {
        let mut pos = start;
        let mut i = 0;
        while i < out.len() {
            let w = pos / 8;
            let within = (pos % 8) as usize;
            let bytes = self.word(w).to_le_bytes();
            let n = (8 - within).min(out.len() - i);
            out[i..i + n].copy_from_slice(&bytes[within..within + n]);
            i += n;
            pos += n as u64;
        }
    }

    /// The first `len` bytes of the stream.
    pub fn bytes(&self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(0, &mut v);
        v
    }

    /// For stamped words: the stream offset an 8-byte word found at an aligned position came
    /// from, if it is a stamp at all.
    fn origin_of_word(&self, word: u64) -> Option<u64> {
        match *self {
            Pattern::Stamped { seed } => Some(word ^ seed),
            Pattern::Sparse { seed } if word & SPARSE_MARK != 0 => {
                Some((word & !SPARSE_MARK) ^ (seed & !SPARSE_MARK))
            }
            _ => None,
        }
    }
}

/// How a piece of the stream reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Pages mapped by TCP_ZEROCOPY_RECEIVE.
    Mapped,
    /// Bytes read with recv(), as `recv_skip_hint` asked.
    Recv,
    /// Bytes the kernel copied into `copybuf`.
    Copybuf,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Mapped => "mapped",
            Source::Recv => "recv",
            Source::Copybuf => "copybuf",
        })
    }
}

/// A way the received bytes differ from the sent ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntegrityViolation {
    /// Bytes at stream offset `at` differ from what was sent there.
    Mismatch {
        source: Source,
        /// Stream offset of the first differing byte.
        at: u64,
        expected: Vec<u8>,
        got: Vec<u8>,
        /// Where the received bytes belong in the stream, when the pattern says so: before
        /// `at` means a repeat, after it a loss.
        came_from: Option<u64>,
    },
    /// The receiver got bytes past the end of what was sent.
    BeyondEnd {
        source: Source,
        at: u64,
        len: usize,
        sent: u64,
    },
    /// The stream ended before everything sent arrived.
    Short { received: u64, sent: u64 },
}

impl fmt::Display for IntegrityViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrityViolation::Mismatch {
                source,
                at,
                expected,
                got,
                came_from,
            } => {
                write!(
                    f,
                    "{source} bytes at stream offset {at} differ from those sent: expected {}, got {}",
                    hex(expected),
                    hex(got)
                )?;
                match came_from {
                    Some(o) if o < at => {
                        write!(f, " (bytes from offset {o}: {} bytes repeated)", at - o)
                    }
                    Some(o) if o > at => {
                        write!(f, " (bytes from offset {o}: {} bytes lost)", o - at)
                    }
                    _ => Ok(()),
                }
            }
            IntegrityViolation::BeyondEnd {
                source,
                at,
                len,
                sent,
            } => write!(
                f,
                "{len} {source} bytes at stream offset {at} lie beyond the {sent} bytes sent"
            ),
            IntegrityViolation::Short { received, sent } => write!(
                f,
                "the stream ended after {received} of {sent} bytes: {} bytes lost",
                sent - received
            ),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Follows one received stream against what was sent.
#[derive(Debug, Clone)]
pub struct StreamCheck {
    pattern: Pattern,
    sent: u64,
    pos: u64,
    by_source: [u64; 3],
    scratch: Vec<u8>,
}

impl StreamCheck {
    /// A stream of `sent` bytes of `pattern`.
    pub fn new(pattern: Pattern, sent: u64) -> Self {
        StreamCheck {
            pattern,
            sent,
            pos: 0,
            by_source: [0; 3],
            scratch: Vec::new(),
        }
    }

    /// The sender's total, when it becomes known only at the end (a reset stream).
    pub fn set_sent(&mut self, sent: u64) {
        self.sent = sent;
    }

    /// Bytes received so far: the receiver's position in the stream.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes received by `source`.
    pub fn received_by(&self, source: Source) -> u64 {
        self.by_source[source as usize]
    }

    /// The next `bytes` of the stream arrived by `source`.
    pub fn accept(&mut self, source: Source, bytes: &[u8]) -> Result<(), IntegrityViolation> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.pos + bytes.len() as u64 > self.sent {
            return Err(IntegrityViolation::BeyondEnd {
                source,
                at: self.pos,
                len: bytes.len(),
                sent: self.sent,
            });
        }
        self.scratch.resize(bytes.len(), 0);
        self.pattern.fill(self.pos, &mut self.scratch);
        if self.scratch != bytes {
            let i = self
                .scratch
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .expect("slices differ");
            let at = self.pos + i as u64;
            let end = (i + 16).min(bytes.len());
            return Err(IntegrityViolation::Mismatch {
                source,
                at,
                expected: self.scratch[i..end].to_vec(),
                got: bytes[i..end].to_vec(),
                came_from: self.origin(bytes, i),
            });
        }
        self.pos += bytes.len() as u64;
        self.by_source[source as usize] += bytes.len() as u64;
        Ok(())
    }

    /// Where the bytes of `got` at index `i` came from: the stamp of the aligned word that
    /// holds them (or of the next one, when that word starts before `got`) names its own
    /// offset; the distance from there to the differing byte is the same in both streams.
    fn origin(&self, got: &[u8], i: usize) -> Option<u64> {
        let diff = self.pos + i as u64;
        let mut word = diff - diff % 8;
        if word < self.pos {
            word += 8;
        }
        while word + 8 <= self.pos + got.len() as u64 && word < diff + 4096 {
            let j = (word - self.pos) as usize;
            let w = u64::from_le_bytes(got[j..j + 8].try_into().expect("8 bytes"));
            if let Some(o) = self.pattern.origin_of_word(w) {
                let from = o.wrapping_add(diff).wrapping_sub(word);
                // Only a displaced piece of the stream has an origin: the received bytes
                // must really be the stream's bytes there (a corrupted word is not).
                let n = (got.len() - i).min(64);
                if from.checked_add(n as u64).is_some_and(|e| e <= self.sent) {
                    let mut there = vec![0u8; n];
                    self.pattern.fill(from, &mut there);
                    if there == got[i..i + n] {
                        return Some(from);
                    }
                }
                return None;
            }
            word += 8;
        }
        None
    }

    /// Everything sent has arrived.
    pub fn finish(&self) -> Result<(), IntegrityViolation> {
        if self.pos < self.sent {
            return Err(IntegrityViolation::Short {
                received: self.pos,
                sent: self.sent,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const PATTERNS: [Pattern; 3] = [
        Pattern::Stamped { seed: 0x5eed },
        Pattern::Noise { seed: 7 },
        Pattern::Sparse { seed: 0 },
    ];

    #[test]
    fn fill_at_any_offset_agrees_with_the_whole_stream() {
        for p in PATTERNS {
            let whole = p.bytes(10_000);
            for start in [0usize, 1, 7, 8, 4095, 4096, 5000] {
                let mut part = vec![0u8; 1234];
                p.fill(start as u64, &mut part);
                assert_eq!(part, whole[start..start + 1234], "{p:?} at {start}");
            }
        }
    }

    #[test]
    fn no_two_pages_of_a_stream_are_alike() {
        for p in PATTERNS {
            let s = p.bytes(64 * 4096);
            let pages: std::collections::HashSet<&[u8]> = s.chunks(4096).collect();
            assert_eq!(pages.len(), 64, "{p:?} repeats a page");
        }
    }

    #[test]
    fn a_faithful_stream_passes_whatever_the_mix_of_sources() {
        let p = PATTERNS[0];
        let data = p.bytes(3 * 4096 + 100);
        let mut c = StreamCheck::new(p, data.len() as u64);
        c.accept(Source::Recv, &data[..100]).unwrap();
        c.accept(Source::Mapped, &data[100..100 + 8192]).unwrap();
        c.accept(Source::Copybuf, &data[8292..9000]).unwrap();
        c.accept(Source::Recv, &data[9000..]).unwrap();
        c.finish().unwrap();
        assert_eq!(c.received_by(Source::Mapped), 8192);
        assert_eq!(c.received_by(Source::Copybuf), 708);
        assert_eq!(c.received_by(Source::Recv), 100 + data.len() as u64 - 9000);
    }

    /// Feeds the checker a stream with one defect and expects it to be named.
    fn first_violation(p: Pattern, pieces: &[&[u8]], sent: usize) -> Option<IntegrityViolation> {
        let mut c = StreamCheck::new(p, sent as u64);
        for piece in pieces {
            if let Err(v) = c.accept(Source::Mapped, piece) {
                return Some(v);
            }
        }
        c.finish().err()
    }

    #[rstest]
    #[case::stamped(PATTERNS[0])]
    #[case::noise(PATTERNS[1])]
    #[case::sparse(PATTERNS[2])]
    fn a_repeated_page_is_caught(#[case] p: Pattern) {
        let d = p.bytes(4 * 4096);
        let v = first_violation(p, &[&d[..8192], &d[4096..8192], &d[8192..]], d.len()).unwrap();
        let IntegrityViolation::Mismatch { at, came_from, .. } = v else {
            panic!("{v:?}")
        };
        assert!((8192..8200).contains(&at), "{at}");
        if p != PATTERNS[1] {
            assert_eq!(
                came_from,
                Some(at - 4096),
                "the repeat is traced to its origin"
            );
            assert!(v.to_string().contains("4096 bytes repeated"), "{v}");
        }
    }

    #[rstest]
    #[case::stamped(PATTERNS[0])]
    #[case::noise(PATTERNS[1])]
    #[case::sparse(PATTERNS[2])]
    fn a_lost_page_is_caught(#[case] p: Pattern) {
        let d = p.bytes(4 * 4096);
        let v = first_violation(p, &[&d[..4096], &d[8192..]], d.len()).unwrap();
        let IntegrityViolation::Mismatch { at, came_from, .. } = v.clone() else {
            panic!("{v:?}")
        };
        assert!((4096..4104).contains(&at), "{at}");
        if p != PATTERNS[1] {
            assert_eq!(came_from, Some(at + 4096));
            assert!(v.to_string().contains("4096 bytes lost"), "{v}");
        }
    }

    #[test]
    fn swapped_pages_a_flipped_byte_and_a_tail_are_caught() {
        let p = PATTERNS[1];
        let d = p.bytes(3 * 4096);
        assert!(first_violation(p, &[&d[4096..8192], &d[..4096], &d[8192..]], d.len()).is_some());
        let mut flipped = d.clone();
        flipped[5000] ^= 0x01;
        let v = first_violation(p, &[&flipped], d.len()).unwrap();
        assert!(
            matches!(v, IntegrityViolation::Mismatch { at: 5000, .. }),
            "{v:?}"
        );
        let v = first_violation(p, &[&d, &[0u8; 1]], d.len()).unwrap();
        assert!(matches!(v, IntegrityViolation::BeyondEnd { .. }), "{v:?}");
        let v = first_violation(p, &[&d[..100]], d.len()).unwrap();
        assert_eq!(
            v,
            IntegrityViolation::Short {
                received: 100,
                sent: d.len() as u64
            }
        );
    }

    #[test]
    fn a_corrupted_word_is_not_explained_as_a_displacement() {
        let p = PATTERNS[0];
        let mut d = p.bytes(3 * 4096);
        let sent = d.len();
        d[8199] ^= 0x40;
        let v = first_violation(p, &[&d], sent).unwrap();
        assert!(
            matches!(
                v,
                IntegrityViolation::Mismatch {
                    at: 8199,
                    came_from: None,
                    ..
                }
            ),
            "{v:?}"
        );
    }

    #[test]
    fn a_page_of_zeros_in_place_of_data_is_caught() {
        let p = PATTERNS[2];
        let d = p.bytes(2 * 4096);
        let zeros = vec![0u8; 4096];
        assert!(first_violation(p, &[&d[..4096], &zeros], d.len()).is_some());
    }
}
