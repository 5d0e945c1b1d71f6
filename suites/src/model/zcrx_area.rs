//! A model of a zcrx area's buffers and of one `IORING_OP_RECV_ZC` request's completions.
//!
//! The area is `area_len` bytes cut into buffers of `buf_len` bytes. Each data CQE lends the
//! user `len` bytes at an area offset; the user owns them until it puts them back on the
//! refill ring. The contract (io_uring/zcrx, Documentation/networking/iou-zcrx.rst):
//! - a data CQE has `F_MORE`, a positive length, and points inside the area, within one
//!   buffer;
//! - the kernel never lends bytes the user still holds (a buffer is handed out once until
//!   it is returned);
//! - the bytes lent are the stream's next bytes, in order;
//! - a request with a length limit never delivers past it;
//! - exactly one final CQE (no `F_MORE`) ends the request; nothing follows it; a final
//!   CQE carries no data: 0 for the end (stream end or limit reached) or a negative errno.
//!
//! Pure: the caller passes the bytes it read from the area and a pattern function.

use std::collections::BTreeMap;
use std::fmt;

/// A way the kernel's completions broke the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A completion came after the final one.
    AfterFinal { off: u64, res: i32 },
    /// A data completion with a length of zero or less.
    EmptyData { off: u64, res: i32 },
    /// The range does not fit in the area.
    OutOfArea { off: u64, len: u64, area_len: u64 },
    /// The range spans two buffers.
    CrossesBuffer { off: u64, len: u64, buf_len: u64 },
    /// The range overlaps bytes the user still holds.
    HandedOutTwice { off: u64, len: u64, held_at: u64 },
    /// The bytes differ from the stream at `stream_pos` (first difference).
    BytesWrong {
        off: u64,
        stream_pos: u64,
        want: u8,
        got: u8,
    },
    /// More bytes than the request's length limit.
    OverLimit { delivered: u64, limit: u64 },
    /// A final completion with data (`res > 0` without `F_MORE`).
    DataOnFinal { res: i32 },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::AfterFinal { off, res } => {
                write!(f, "a CQE (res {res}, off {off:#x}) after the final one")
            }
            Violation::EmptyData { off, res } => {
                write!(f, "a data CQE (F_MORE) with res {res} at off {off:#x}")
            }
            Violation::OutOfArea { off, len, area_len } => write!(
                f,
                "{len} bytes at area offset {off:#x} do not fit in the {area_len}-byte area"
            ),
            Violation::CrossesBuffer { off, len, buf_len } => write!(
                f,
                "{len} bytes at area offset {off:#x} span two {buf_len}-byte buffers"
            ),
            Violation::HandedOutTwice { off, len, held_at } => write!(
                f,
                "{len} bytes at area offset {off:#x} overlap the buffer at {held_at:#x}, which \
                 the user still holds (handed out twice)"
            ),
            Violation::BytesWrong {
                off,
                stream_pos,
                want,
                got,
            } => write!(
                f,
                "the buffer at area offset {off:#x} holds {got:#04x} where stream byte \
                 {stream_pos} is {want:#04x}"
            ),
            Violation::OverLimit { delivered, limit } => write!(
                f,
                "{delivered} bytes delivered for a request limited to {limit}"
            ),
            Violation::DataOnFinal { res } => {
                write!(f, "the final CQE (no F_MORE) carries res {res}")
            }
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Final CQE with 0: the stream ended or the length limit was reached.
    Clean,
    /// Final CQE with a negative errno.
    Error(i32),
}

/// The buffers of one area and the completions of one request on it.
#[derive(Debug, Clone)]
pub struct AreaModel {
    area_len: u64,
    buf_len: u64,
    /// Held ranges: start -> end (exclusive).
    held: BTreeMap<u64, u64>,
    /// Ranges put on the refill ring but not flushed yet: still unavailable to the kernel of
    /// a device-less instance (it consumes the ring only on a flush).
    pending: BTreeMap<u64, u64>,
    /// Buffers ever returned and flushed (by start of buffer), to count reuse.
    returned: BTreeMap<u64, u32>,
    /// Buffers the kernel could not use while it produced the current batch of CQEs: those
    /// held or pending when the batch began, and those it lent during the batch.
    busy_in_batch: std::collections::BTreeSet<u64>,
    /// Whether the area was exhausted (see [`AreaModel::exhausted`]) when the final CQE came.
    exhausted_at_end: bool,
    /// Data CQEs that landed in a buffer returned before.
    pub reused: u32,
    /// Stream bytes delivered so far.
    pub delivered: u64,
    limit: Option<u64>,
    end: Option<End>,
    /// Data CQEs seen.
    pub data_cqes: u32,
}

impl AreaModel {
    /// An area of `area_len` bytes in buffers of `buf_len`, for a request limited to `limit`
    /// bytes (`None`: until the stream ends).
    pub fn new(area_len: u64, buf_len: u64, limit: Option<u64>) -> Self {
        assert!(
            buf_len > 0 && area_len.is_multiple_of(buf_len),
            "whole buffers"
        );
        AreaModel {
            area_len,
            buf_len,
            held: BTreeMap::new(),
            pending: BTreeMap::new(),
            returned: BTreeMap::new(),
            busy_in_batch: Default::default(),
            exhausted_at_end: false,
            reused: 0,
            delivered: 0,
            limit,
            end: None,
            data_cqes: 0,
        }
    }

    pub fn buffers(&self) -> u64 {
        self.area_len / self.buf_len
    }

    /// Buffers the user holds (any of their bytes).
    pub fn held_buffers(&self) -> u64 {
        let mut bufs: Vec<u64> = self.held.keys().map(|s| s / self.buf_len).collect();
        bufs.dedup();
        bufs.len() as u64
    }

    /// A new batch of CQEs, reaped together: the kernel produced all of them before it could
    /// see any return the user makes while processing them.
    pub fn begin_batch(&mut self) {
        let buf = self.buf_len;
        self.busy_in_batch = self
            .held
            .keys()
            .chain(self.pending.keys())
            .map(|s| s / buf)
            .collect();
    }

    /// Whether every buffer was unavailable to the kernel while it produced the current
    /// batch: the only time an area may be reported exhausted.
    pub fn exhausted(&self) -> bool {
        self.busy_in_batch.len() as u64 == self.buffers()
    }

    /// Whether the area was exhausted in the batch that carried the final CQE.
    pub fn ended_exhausted(&self) -> bool {
        self.exhausted_at_end
    }

    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// A data CQE: `len` bytes at area offset `off`, whose content the caller read as
    /// `bytes`; `pattern(stream_pos)` is what the stream holds there.
    pub fn on_data(
        &mut self,
        off: u64,
        res: i32,
        bytes: &[u8],
        pattern: impl Fn(u64) -> u8,
    ) -> Result<(), Violation> {
        if self.end.is_some() {
            return Err(Violation::AfterFinal { off, res });
        }
        if res <= 0 {
            return Err(Violation::EmptyData { off, res });
        }
        let len = res as u64;
        if off.checked_add(len).is_none_or(|e| e > self.area_len) {
            return Err(Violation::OutOfArea {
                off,
                len,
                area_len: self.area_len,
            });
        }
        if off / self.buf_len != (off + len - 1) / self.buf_len {
            return Err(Violation::CrossesBuffer {
                off,
                len,
                buf_len: self.buf_len,
            });
        }
        // The held range starting last before the new range's end is the only candidate
        // for an overlap (held ranges never overlap each other).
        if let Some((&s, &e)) = self.held.range(..off + len).next_back() {
            if e > off {
                return Err(Violation::HandedOutTwice {
                    off,
                    len,
                    held_at: s,
                });
            }
        }
        if let Some(limit) = self.limit {
            if self.delivered + len > limit {
                return Err(Violation::OverLimit {
                    delivered: self.delivered + len,
                    limit,
                });
            }
        }
        assert_eq!(
            bytes.len() as u64,
            len,
            "the caller reads exactly the range"
        );
        if let Some(i) = (0..bytes.len()).find(|&i| bytes[i] != pattern(self.delivered + i as u64))
        {
            let pos = self.delivered + i as u64;
            return Err(Violation::BytesWrong {
                off,
                stream_pos: pos,
                want: pattern(pos),
                got: bytes[i],
            });
        }
        let buf = off / self.buf_len * self.buf_len;
        if self.returned.contains_key(&buf) {
            self.reused += 1;
        }
        self.busy_in_batch.insert(off / self.buf_len);
        self.held.insert(off, off + len);
        self.delivered += len;
        self.data_cqes += 1;
        Ok(())
    }

    /// The user puts the range it got at `off` on the refill ring. `false` if it held no
    /// such range (a bug of the caller, not of the kernel).
    pub fn on_return(&mut self, off: u64) -> bool {
        match self.held.remove(&off) {
            Some(end) => {
                self.pending.insert(off, end);
                true
            }
            None => false,
        }
    }

    /// The user flushed the refill ring: what was on it is the kernel's again.
    pub fn on_flush(&mut self) {
        let buf = self.buf_len;
        for (s, _) in std::mem::take(&mut self.pending) {
            *self.returned.entry(s / buf * buf).or_default() += 1;
        }
    }

    /// The final CQE (`res` without `F_MORE`).
    pub fn on_final(&mut self, res: i32) -> Result<End, Violation> {
        if self.end.is_some() {
            return Err(Violation::AfterFinal { off: 0, res });
        }
        if res > 0 {
            return Err(Violation::DataOnFinal { res });
        }
        let end = if res == 0 {
            End::Clean
        } else {
            End::Error(-res)
        };
        self.end = Some(end);
        self.exhausted_at_end = self.exhausted();
        Ok(end)
    }
}

/// The byte at `pos` of the test stream number `seed`: a splitmix64 of the 8-byte word
/// index, so no shift of whole pages (or of any length under 2^64 bytes) maps the stream
/// onto itself.
pub fn pattern_byte(seed: u64, pos: u64) -> u8 {
    let mut z = seed ^ (pos / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.to_le_bytes()[(pos % 8) as usize]
}

/// `len` stream bytes from `pos`.
pub fn pattern(seed: u64, pos: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| pattern_byte(seed, pos + i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;
    const SEED: u64 = 7;

    fn pat(pos: u64) -> u8 {
        pattern_byte(SEED, pos)
    }

    /// Feeds a data CQE whose bytes are the right stream bytes.
    fn good(m: &mut AreaModel, off: u64, len: u64) -> Result<(), Violation> {
        let bytes = pattern(SEED, m.delivered, len as usize);
        m.on_data(off, len as i32, &bytes, pat)
    }

    #[test]
    fn a_faithful_request_passes_and_counts_reuse() {
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        for i in 0..4 {
            good(&mut m, i * PAGE, PAGE).unwrap();
        }
        assert_eq!(m.held_buffers(), 4);
        assert!(m.on_return(0));
        m.on_flush();
        good(&mut m, 0, 100).unwrap();
        assert_eq!(m.reused, 1);
        assert_eq!(m.on_final(0), Ok(End::Clean));
        assert_eq!(m.delivered, 4 * PAGE + 100);
    }

    #[test]
    fn a_buffer_handed_out_twice_is_caught() {
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        good(&mut m, PAGE, 10).unwrap();
        let v = good(&mut m, PAGE, 10).unwrap_err();
        assert!(matches!(v, Violation::HandedOutTwice { held_at, .. } if held_at == PAGE));
        // Overlap from below, into a held range.
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        good(&mut m, PAGE + 100, 10).unwrap();
        assert!(matches!(
            good(&mut m, PAGE, 200),
            Err(Violation::HandedOutTwice { .. })
        ));
        // After the return, the same buffer may come again.
        assert!(m.on_return(PAGE + 100));
        good(&mut m, PAGE, 200).unwrap();
    }

    #[test]
    fn wrong_bytes_are_caught_with_their_position() {
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        good(&mut m, 0, 50).unwrap();
        let mut bytes = pattern(SEED, 50, 20);
        bytes[7] ^= 0x40;
        let v = m.on_data(PAGE, 20, &bytes, pat).unwrap_err();
        assert!(
            matches!(v, Violation::BytesWrong { stream_pos: 57, .. }),
            "{v}"
        );
        // Right bytes delivered out of order (the next page's bytes first) are wrong too.
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        let ahead = pattern(SEED, PAGE, PAGE as usize);
        assert!(matches!(
            m.on_data(0, PAGE as i32, &ahead, pat),
            Err(Violation::BytesWrong { stream_pos: 0, .. })
        ));
    }

    #[test]
    fn offsets_outside_the_area_or_across_buffers_are_caught() {
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        assert!(matches!(
            good(&mut m, 4 * PAGE, 1),
            Err(Violation::OutOfArea { .. })
        ));
        assert!(matches!(
            good(&mut m, 3 * PAGE + 4000, 200),
            Err(Violation::OutOfArea { .. }) | Err(Violation::CrossesBuffer { .. })
        ));
        assert!(matches!(
            good(&mut m, u64::MAX - 2, 10),
            Err(Violation::OutOfArea { .. })
        ));
        assert!(matches!(
            good(&mut m, PAGE - 10, 20),
            Err(Violation::CrossesBuffer { .. })
        ));
    }

    #[test]
    fn completions_after_the_final_one_are_caught() {
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        good(&mut m, 0, 10).unwrap();
        m.on_final(0).unwrap();
        assert!(matches!(
            good(&mut m, PAGE, 10),
            Err(Violation::AfterFinal { .. })
        ));
        assert!(matches!(m.on_final(0), Err(Violation::AfterFinal { .. })));
    }

    #[test]
    fn limits_empty_data_and_data_on_final_are_caught() {
        let mut m = AreaModel::new(4 * PAGE, PAGE, Some(100));
        good(&mut m, 0, 60).unwrap();
        assert!(matches!(
            good(&mut m, PAGE, 60),
            Err(Violation::OverLimit {
                delivered: 120,
                limit: 100
            })
        ));
        assert!(matches!(
            m.on_data(PAGE, 0, &[], pat),
            Err(Violation::EmptyData { .. })
        ));
        assert_eq!(m.on_final(5), Err(Violation::DataOnFinal { res: 5 }));
        assert_eq!(m.on_final(-libc::ENOMEM), Ok(End::Error(libc::ENOMEM)));
    }

    #[test]
    fn exhaustion_is_judged_at_the_time_the_kernel_produced_the_batch() {
        // Four buffers lent in one batch, all returned and flushed while processing it: the
        // kernel had none left when it produced the batch.
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        m.begin_batch();
        for i in 0..4 {
            good(&mut m, i * PAGE, 10).unwrap();
            assert!(m.on_return(i * PAGE));
            m.on_flush();
        }
        assert!(m.exhausted());
        // The next batch starts with all four free: an exhaustion there is false.
        m.begin_batch();
        good(&mut m, 0, 10).unwrap();
        assert!(!m.exhausted());
        // Returned but not flushed buffers stay unavailable.
        let mut m = AreaModel::new(4 * PAGE, PAGE, None);
        m.begin_batch();
        for i in 0..3 {
            good(&mut m, i * PAGE, 10).unwrap();
            assert!(m.on_return(i * PAGE));
        }
        m.begin_batch();
        assert!(!m.exhausted());
        good(&mut m, 3 * PAGE, 10).unwrap();
        assert!(m.exhausted());
        // The judgement sticks to the batch of the final CQE.
        m.on_final(-libc::ENOMEM).unwrap();
        m.begin_batch();
        assert!(m.ended_exhausted());
    }

    #[test]
    fn the_pattern_has_no_page_period() {
        let a = pattern(SEED, 0, 64);
        for shift in [1u64, 8, 256, 4096, 65536] {
            assert_ne!(a, pattern(SEED, shift, 64), "shift {shift}");
        }
    }
}
