//! `TCP_ZEROCOPY_RECEIVE`: the full 64-byte `struct tcp_zerocopy_receive` of
//! `include/uapi/linux/tcp.h` (glibc's `netinet/tcp.h` declares only its first 16 bytes, and
//! `libc` has none of it), and the `getsockopt` that passes it with an exact `optlen`, so the
//! cases can walk the kernel's struct-size ladder byte by byte.
//!
//! Why the call is safe: the kernel writes user memory at three addresses named in the struct.
//! `address`: it inserts pages only into a VMA created by `mmap()` of a TCP socket and refuses
//! any other address with EINVAL; Rust code never references such a mapping (see
//! [`super::socket_mmap`]), so any value is harmless. `copybuf_address` and `msg_control`:
//! they can be set only from a mutable borrow of a buffer, with the buffer's own length, or
//! left null (a null copy buffer is how a case makes the copy fault). So no call can make the
//! kernel write into memory Rust does not own.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};

use serde::Serialize;

/// `TCP_ZEROCOPY_RECEIVE` (getsockopt at `IPPROTO_TCP`).
pub const TCP_ZEROCOPY_RECEIVE: i32 = 35;
/// `TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT`: the caller promises the range is unmapped.
pub const TLB_CLEAN_HINT: u32 = 0x1;
/// `TCP_CMSG_TS`: the only `msg_flags` bit the kernel accepts (asks for a timestamp cmsg).
pub const TCP_CMSG_TS: u32 = 0x2;
/// `sizeof(struct tcp_zerocopy_receive)` in current kernels.
pub const STRUCT_LEN: usize = 64;

/// `offsetofend` of each field: the `optlen` values the kernel's switch recognises.
pub mod field_end {
    pub const ADDRESS: usize = 8;
    pub const LENGTH: usize = 12;
    pub const RECV_SKIP_HINT: usize = 16;
    pub const INQ: usize = 20;
    pub const ERR: usize = 24;
    pub const COPYBUF_ADDRESS: usize = 32;
    pub const COPYBUF_LEN: usize = 36;
    pub const FLAGS: usize = 40;
    pub const MSG_CONTROL: usize = 48;
    pub const MSG_CONTROLLEN: usize = 56;
    pub const MSG_FLAGS: usize = 60;
    pub const RESERVED: usize = 64;

    /// Every boundary, in order.
    pub const ALL: [usize; 12] = [
        ADDRESS,
        LENGTH,
        RECV_SKIP_HINT,
        INQ,
        ERR,
        COPYBUF_ADDRESS,
        COPYBUF_LEN,
        FLAGS,
        MSG_CONTROL,
        MSG_CONTROLLEN,
        MSG_FLAGS,
        RESERVED,
    ];
}

/// `struct tcp_zerocopy_receive`, field for field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpZerocopyReceive {
    /// In: page-aligned start address inside a socket mapping.
    pub address: u64,
    /// In: bytes asked for. Out: bytes mapped.
    pub length: u32,
    /// Out: bytes to read with `recv()` before the next zero-copy attempt.
    pub recv_skip_hint: u32,
    /// Out: bytes still queued (a received FIN counts as one).
    pub inq: u32,
    /// Out: the pending socket error, negated, consumed like `SO_ERROR`.
    pub err: i32,
    /// In: buffer for data that cannot be mapped.
    pub copybuf_address: u64,
    /// In: its size. Out: bytes copied, or a negative errno.
    pub copybuf_len: i32,
    /// In: [`TLB_CLEAN_HINT`].
    pub flags: u32,
    /// In/out: cmsg buffer for receive timestamps.
    pub msg_control: u64,
    pub msg_controllen: u64,
    /// In: [`TCP_CMSG_TS`]. Out: the cmsg's `msg_flags`.
    pub msg_flags: u32,
    /// Must be zero.
    pub reserved: u32,
}

impl TcpZerocopyReceive {
    /// The struct as the kernel lays it out (native endian, no padding).
    pub fn to_bytes(&self) -> [u8; STRUCT_LEN] {
        let mut b = [0u8; STRUCT_LEN];
        b[0..8].copy_from_slice(&self.address.to_ne_bytes());
        b[8..12].copy_from_slice(&self.length.to_ne_bytes());
        b[12..16].copy_from_slice(&self.recv_skip_hint.to_ne_bytes());
        b[16..20].copy_from_slice(&self.inq.to_ne_bytes());
        b[20..24].copy_from_slice(&self.err.to_ne_bytes());
        b[24..32].copy_from_slice(&self.copybuf_address.to_ne_bytes());
        b[32..36].copy_from_slice(&self.copybuf_len.to_ne_bytes());
        b[36..40].copy_from_slice(&self.flags.to_ne_bytes());
        b[40..48].copy_from_slice(&self.msg_control.to_ne_bytes());
        b[48..56].copy_from_slice(&self.msg_controllen.to_ne_bytes());
        b[56..60].copy_from_slice(&self.msg_flags.to_ne_bytes());
        b[60..64].copy_from_slice(&self.reserved.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; STRUCT_LEN]) -> Self {
        let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        TcpZerocopyReceive {
            address: u64_at(0),
            length: u32_at(8),
            recv_skip_hint: u32_at(12),
            inq: u32_at(16),
            err: u32_at(20) as i32,
            copybuf_address: u64_at(24),
            copybuf_len: u32_at(32) as i32,
            flags: u32_at(36),
            msg_control: u64_at(40),
            msg_controllen: u64_at(48),
            msg_flags: u32_at(56),
            reserved: u32_at(60),
        }
    }
}

/// One `getsockopt(TCP_ZEROCOPY_RECEIVE)` request. The buffers it names are borrowed for
/// `'b`, so they outlive every call made with it.
#[derive(Debug)]
pub struct ZcCall<'b> {
    fields: TcpZerocopyReceive,
    tail: Vec<u8>,
    _buffers: PhantomData<&'b mut [u8]>,
}

/// What one call gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZcReply {
    /// The first 64 bytes of the option buffer after the call, as fields. Bytes beyond the
    /// `optlen` the kernel used are whatever the request held there.
    pub fields: TcpZerocopyReceive,
    /// The `optlen` the kernel wrote back.
    pub optlen: i32,
    /// The whole option buffer after the call (struct and tail).
    pub buffer: Vec<u8>,
}

impl<'b> ZcCall<'b> {
    /// A zeroed request for `length` bytes at `address`.
    pub fn new(address: u64, length: u32) -> Self {
        ZcCall {
            fields: TcpZerocopyReceive {
                address,
                length,
                ..Default::default()
            },
            tail: Vec::new(),
            _buffers: PhantomData,
        }
    }

    /// Pre-fills the output-only fields, so that a field the kernel does not write keeps a
    /// recognisable value (for the optlen ladder).
    pub fn prefill_outputs(mut self, recv_skip_hint: u32, inq: u32, err: i32) -> Self {
        self.fields.recv_skip_hint = recv_skip_hint;
        self.fields.inq = inq;
        self.fields.err = err;
        self
    }

    /// Data that cannot be mapped may be copied into `buf` (at most `i32::MAX` bytes of it).
    pub fn copybuf(mut self, buf: &'b mut [u8]) -> Self {
        self.fields.copybuf_address = buf.as_mut_ptr() as u64;
        self.fields.copybuf_len = buf.len().min(i32::MAX as usize) as i32;
        self
    }

    /// A copy buffer at address 0 claiming `len` bytes: any copy into it faults. A negative
    /// `len` is passed as is (the kernel reads the field as signed in one place and unsigned
    /// in another).
    pub fn null_copybuf(mut self, len: i32) -> Self {
        self.fields.copybuf_address = 0;
        self.fields.copybuf_len = len;
        self
    }

    pub fn flags(mut self, flags: u32) -> Self {
        self.fields.flags = flags;
        self
    }

    /// A cmsg buffer for receive timestamps, with `msg_flags` (normally [`TCP_CMSG_TS`]).
    pub fn msg_control(mut self, buf: &'b mut [u8], msg_flags: u32) -> Self {
        self.fields.msg_control = buf.as_mut_ptr() as u64;
        self.fields.msg_controllen = buf.len() as u64;
        self.fields.msg_flags = msg_flags;
        self
    }

    /// `msg_flags` with no cmsg buffer (the kernel then writes no cmsg).
    pub fn msg_flags(mut self, msg_flags: u32) -> Self {
        self.fields.msg_flags = msg_flags;
        self
    }

    pub fn reserved(mut self, reserved: u32) -> Self {
        self.fields.reserved = reserved;
        self
    }

    /// Bytes placed after the 64-byte struct (the kernel must refuse a non-zero tail).
    pub fn tail(mut self, tail: Vec<u8>) -> Self {
        self.tail = tail;
        self
    }

    pub fn fields(&self) -> &TcpZerocopyReceive {
        &self.fields
    }

    /// Points the request at a new address and length, keeping everything else.
    pub fn retarget(&mut self, address: u64, length: u32) {
        self.fields.address = address;
        self.fields.length = length;
    }

    /// The option buffer this request passes: the struct, then the tail, zero-padded to at
    /// least `optlen` bytes so the kernel never reads or writes past it.
    fn buffer(&self, optlen: i32) -> Vec<u8> {
        let mut buf = self.fields.to_bytes().to_vec();
        buf.extend_from_slice(&self.tail);
        if optlen > 0 && buf.len() < optlen as usize {
            buf.resize(optlen as usize, 0);
        }
        buf
    }

    /// `getsockopt(fd, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, buf, &optlen)` with exactly this
    /// `optlen` (negative values are passed through as the kernel's `int`).
    pub fn call(&mut self, fd: BorrowedFd<'_>, optlen: i32) -> io::Result<ZcReply> {
        let mut buf = self.buffer(optlen);
        let mut len = optlen as libc::socklen_t;
        // SAFETY: `buf` is at least 64 bytes and at least `optlen` bytes long, and the kernel
        // writes at most min(optlen, 64) bytes of it (it rewrites a larger optlen down to its
        // own struct size before copying back). The addresses inside the struct were set
        // only by the builder methods above (see the module comment).
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                TCP_ZEROCOPY_RECEIVE,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let head: [u8; STRUCT_LEN] = buf[..STRUCT_LEN].try_into().expect("64 bytes");
        Ok(ZcReply {
            fields: TcpZerocopyReceive::from_bytes(&head),
            optlen: len as i32,
            buffer: buf,
        })
    }
}

/// Bytes readable now on a TCP socket (`SIOCINQ`; a received FIN is not counted).
pub fn queued_in(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, libc::FIONREAD)
}

/// Bytes a TCP socket has sent but the peer has not acknowledged, plus unsent (`SIOCOUTQ`).
pub fn queued_out(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, libc::TIOCOUTQ)
}

fn ioctl_int(fd: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: both requests write one int through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut v) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_at_the_kernel_offsets() {
        let f = TcpZerocopyReceive {
            address: 0x1122_3344_5566_7788,
            length: 1,
            recv_skip_hint: 2,
            inq: 3,
            err: -4,
            copybuf_address: 5,
            copybuf_len: -6,
            flags: 7,
            msg_control: 8,
            msg_controllen: 9,
            msg_flags: 10,
            reserved: 11,
        };
        let b = f.to_bytes();
        assert_eq!(TcpZerocopyReceive::from_bytes(&b), f);
        assert_eq!(b[field_end::LENGTH - 4], 1);
        assert_eq!(b[field_end::RECV_SKIP_HINT - 4], 2);
        assert_eq!(b[field_end::INQ - 4], 3);
        assert_eq!(b[field_end::COPYBUF_ADDRESS - 8], 5);
        assert_eq!(b[field_end::FLAGS - 4], 7);
        assert_eq!(b[field_end::MSG_CONTROLLEN - 8], 9);
        assert_eq!(b[field_end::RESERVED - 4], 11);
    }

    #[test]
    fn the_buffer_always_covers_optlen() {
        let call = ZcCall::new(0, 0).tail(vec![1, 2]);
        assert_eq!(call.buffer(-1).len(), 66);
        assert_eq!(call.buffer(16).len(), 66);
        assert_eq!(call.buffer(4096).len(), 4096);
        assert_eq!(&call.buffer(4096)[64..66], &[1, 2]);
    }

    #[test]
    fn a_copy_buffer_is_named_with_its_own_length() {
        let mut buf = vec![0u8; 100];
        let addr = buf.as_ptr() as u64;
        let call = ZcCall::new(0, 0).copybuf(&mut buf);
        assert_eq!(call.fields().copybuf_address, addr);
        assert_eq!(call.fields().copybuf_len, 100);
    }
}
