//! A real dma-buf from ordinary memory, through `/dev/udmabuf` (the `udmabuf` driver,
//! `CONFIG_UDMABUF`, a module on Debian kernels): a memfd sealed against shrinking, turned
//! into a dma-buf with `UDMABUF_CREATE`. Used to ask devmem TCP's bind-rx/bind-tx with a
//! descriptor that is a dma-buf, so the kernel's answer is about the device, not the fd.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The device node the driver creates.
pub const DEVICE: &str = "/dev/udmabuf";

/// `struct udmabuf_create`.
#[repr(C)]
struct Create {
    memfd: u32,
    flags: u32,
    offset: u64,
    size: u64,
}

/// `UDMABUF_FLAGS_CLOEXEC`.
const FLAGS_CLOEXEC: u32 = 0x01;

// `UDMABUF_CREATE` = _IOW('u', 0x42, struct udmabuf_create).
nix::ioctl_write_ptr!(udmabuf_create, b'u', 0x42, Create);

/// Where making a dma-buf stopped.
#[derive(Debug)]
pub enum UdmabufError {
    /// `/dev/udmabuf` cannot be opened (no driver, or no permission).
    Device(io::Error),
    /// The memfd could not be made, sized or sealed.
    Memfd(io::Error),
    /// `UDMABUF_CREATE` refused.
    Create(io::Error),
}

impl std::fmt::Display for UdmabufError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UdmabufError::Device(e) => write!(f, "open {DEVICE}: {e}"),
            UdmabufError::Memfd(e) => write!(f, "memfd for the dma-buf: {e}"),
            UdmabufError::Create(e) => write!(f, "UDMABUF_CREATE: {e}"),
        }
    }
}

impl std::error::Error for UdmabufError {}

/// A dma-buf of `size` bytes (a multiple of the page size) and the memfd behind it.
pub struct Dmabuf {
    pub fd: OwnedFd,
    _memfd: OwnedFd,
    pub size: usize,
}

/// Creates a dma-buf of `size` bytes.
pub fn create(size: usize) -> Result<Dmabuf, UdmabufError> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEVICE)
        .map_err(UdmabufError::Device)?;
    let name = CString::new("zccheck-dmabuf").expect("no NUL");
    // SAFETY: a valid C string; the returned descriptor is owned below.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(UdmabufError::Memfd(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    nix::unistd::ftruncate(&memfd, size as i64).map_err(|e| UdmabufError::Memfd(e.into()))?;
    // SAFETY: fcntl on our own descriptor.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } < 0 {
        return Err(UdmabufError::Memfd(io::Error::last_os_error()));
    }
    let req = Create {
        memfd: memfd.as_raw_fd() as u32,
        flags: FLAGS_CLOEXEC,
        offset: 0,
        size: size as u64,
    };
    // SAFETY: `req` is a valid `struct udmabuf_create`; the ioctl returns a new descriptor.
    let fd = unsafe { udmabuf_create(dev.as_raw_fd(), &req) }
        .map_err(|e| UdmabufError::Create(e.into()))?;
    Ok(Dmabuf {
        // SAFETY: the ioctl installed `fd` for us.
        fd: unsafe { OwnedFd::from_raw_fd(fd) },
        _memfd: memfd,
        size,
    })
}
