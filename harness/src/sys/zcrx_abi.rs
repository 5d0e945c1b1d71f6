//! The zcrx user ABI as the 7.x kernels define it (`include/uapi/linux/io_uring/zcrx.h`,
//! `io_uring/query.h`), and the raw `io_uring_register` calls that the `io-uring` crate 0.7
//! does not have: the device-less registration (`ZCRX_REG_NODEV`, 7.1), import of an exported
//! instance (`ZCRX_REG_IMPORT`), `IORING_REGISTER_ZCRX_CTRL` and `IORING_REGISTER_QUERY`.
//!
//! The crate's own `io_uring_zcrx_ifq_reg` predates `rx_buf_len` and `event_desc`, so the
//! structures are declared here with the layout of the newer header; older kernels read the
//! same bytes (the new fields sit where their reserved words were, and stay zero unless a
//! case sets them).

use std::io;
use std::os::fd::RawFd;

/// `IORING_REGISTER_ZCRX_IFQ`.
pub const REGISTER_ZCRX_IFQ: u32 = 32;
/// `IORING_REGISTER_QUERY` (6.18).
pub const REGISTER_QUERY: u32 = 35;
/// `IORING_REGISTER_ZCRX_CTRL` (6.19).
pub const REGISTER_ZCRX_CTRL: u32 = 36;

/// `ZCRX_REG_IMPORT`: `if_idx` is the descriptor of an exported instance.
pub const ZCRX_REG_IMPORT: u32 = 1;
/// `ZCRX_REG_NODEV`: an instance with no interface; received data is copied into the area.
pub const ZCRX_REG_NODEV: u32 = 2;

/// `ZCRX_CTRL_FLUSH_RQ`: the kernel consumes the refill ring now.
pub const ZCRX_CTRL_FLUSH_RQ: u32 = 0;
/// `ZCRX_CTRL_EXPORT`: a descriptor another ring can import.
pub const ZCRX_CTRL_EXPORT: u32 = 1;

/// `IO_URING_QUERY_ZCRX`.
pub const QUERY_ZCRX: u32 = 1;

/// `IORING_MEM_REGION_TYPE_USER`: the region lives in user memory at `user_addr`.
pub const MEM_REGION_TYPE_USER: u32 = 1;

/// Bits of an area offset that carry the area's id (`IORING_ZCRX_AREA_SHIFT`).
pub const AREA_SHIFT: u32 = 48;
/// The part of an offset that is the position inside the area.
pub const AREA_OFFSET_MASK: u64 = (1u64 << AREA_SHIFT) - 1;

/// `struct io_uring_zcrx_rqe`: one buffer handed back to the kernel.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rqe {
    pub off: u64,
    pub len: u32,
    pub pad: u32,
}

/// `struct io_uring_zcrx_offsets`: where head, tail and entries sit in the refill region.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    pub head: u32,
    pub tail: u32,
    pub rqes: u32,
    pub resv2: u32,
    pub resv: [u64; 2],
}

/// `struct io_uring_zcrx_area_reg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AreaReg {
    pub addr: u64,
    pub len: u64,
    pub rq_area_token: u64,
    pub flags: u32,
    pub dmabuf_fd: u32,
    pub resv2: [u64; 2],
}

/// `struct io_uring_region_desc`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionDesc {
    pub user_addr: u64,
    pub size: u64,
    pub flags: u32,
    pub id: u32,
    pub mmap_offset: u64,
    pub resv: [u64; 4],
}

/// `struct io_uring_zcrx_ifq_reg` (7.x layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfqReg {
    pub if_idx: u32,
    pub if_rxq: u32,
    pub rq_entries: u32,
    pub flags: u32,
    pub area_ptr: u64,
    pub region_ptr: u64,
    pub offsets: Offsets,
    pub zcrx_id: u32,
    pub rx_buf_len: u32,
    pub event_desc: u64,
    pub resv: [u64; 2],
}

/// `struct zcrx_ctrl` with its 48-byte operation union as raw words.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ctrl {
    pub zcrx_id: u32,
    pub op: u32,
    pub resv: [u64; 2],
    /// For `ZCRX_CTRL_EXPORT`, word 0 comes back as the exported descriptor.
    pub data: [u32; 12],
}

/// `struct io_uring_query_hdr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct QueryHdr {
    next_entry: u64,
    query_data: u64,
    query_op: u32,
    size: u32,
    result: i32,
    resv: [u32; 3],
}

/// `struct io_uring_query_zcrx`: what the kernel's zcrx supports.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryZcrx {
    pub register_flags: u64,
    pub area_flags: u64,
    pub nr_ctrl_opcodes: u32,
    pub features: u32,
    pub rq_hdr_size: u32,
    pub rq_hdr_alignment: u32,
    pub resv2: u64,
}

/// `io_uring_register(fd, op, arg, nr)`; the errno on failure, the return value otherwise.
///
/// # Safety
/// `arg` must point at memory laid out as `op` expects, valid for the kernel to read and
/// (for the operations that answer in place) write for the duration of the call; or be a
/// deliberately bad pointer, which the kernel answers with EFAULT.
pub unsafe fn register(fd: RawFd, op: u32, arg: *mut libc::c_void, nr: u32) -> io::Result<i32> {
    // SAFETY: forwarded to the caller's contract.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_register, fd, op, arg, nr) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// Asks `IORING_REGISTER_QUERY` (no ring needed) what zcrx supports. `Err` when the kernel
/// has no query interface or does not know the zcrx query.
pub fn query_zcrx() -> io::Result<QueryZcrx> {
    let mut out = QueryZcrx::default();
    let mut hdr = QueryHdr {
        query_data: &mut out as *mut QueryZcrx as u64,
        query_op: QUERY_ZCRX,
        size: std::mem::size_of::<QueryZcrx>() as u32,
        ..Default::default()
    };
    // SAFETY: `hdr` and `out` are live locals the kernel reads and writes during the call.
    unsafe { register(-1, REGISTER_QUERY, &mut hdr as *mut QueryHdr as *mut _, 0)? };
    if hdr.result < 0 {
        return Err(io::Error::from_raw_os_error(-hdr.result));
    }
    Ok(out)
}

/// `IORING_REGISTER_ZCRX_CTRL` with `ctrl`, which the kernel may answer into.
pub fn ctrl(ring_fd: RawFd, ctrl: &mut Ctrl) -> io::Result<i32> {
    // SAFETY: `ctrl` is a live, writable `struct zcrx_ctrl`.
    unsafe { register(ring_fd, REGISTER_ZCRX_CTRL, ctrl as *mut Ctrl as *mut _, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_uapi_sizes() {
        assert_eq!(std::mem::size_of::<Rqe>(), 16);
        assert_eq!(std::mem::size_of::<Offsets>(), 32);
        assert_eq!(std::mem::size_of::<AreaReg>(), 48);
        assert_eq!(std::mem::size_of::<RegionDesc>(), 64);
        assert_eq!(std::mem::size_of::<IfqReg>(), 96);
        assert_eq!(std::mem::size_of::<Ctrl>(), 72);
        assert_eq!(std::mem::size_of::<QueryHdr>(), 40);
        assert_eq!(std::mem::size_of::<QueryZcrx>(), 40);
    }
}
