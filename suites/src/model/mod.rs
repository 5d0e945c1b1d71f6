//! The oracle: pure code, no system calls. Given what the suite did and what the kernel
//! answered, each checker says whether the answer is one the kernel's contract allows.

pub mod completions;
pub mod stream;
pub mod zc_receive;
