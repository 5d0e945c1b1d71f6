//! The oracle: pure code, no system calls. Given what the suite did and what the kernel
//! answered, each checker says whether the answer is one the kernel's contract allows.

pub mod coalescing;
pub mod completions;
pub mod copied;
pub mod limits;
pub mod stream;
pub mod uring_delivery;
pub mod uring_notif;
pub mod zc_receive;
pub mod zcrx_area;
