//! Thin, documented wrappers over the system calls zero-copy needs and that `libc`, `nix` and
//! `socket2` leave raw. All `unsafe` of the project lives in this module and in `ethtool`.

pub mod cpu_clock;
pub mod creds;
pub mod errqueue;
pub mod genl;
pub mod mmsg;
pub mod process;
pub mod retry;
pub mod sendfile;
pub mod socket_mmap;
pub mod sockopt;
pub mod tcp_zc_receive;
pub mod tun;
pub mod udmabuf;
pub mod uring;
pub mod zcrx;
pub mod zcrx_abi;
pub mod zcrx_ring;
pub mod zerocopy;
