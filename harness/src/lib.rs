//! System plumbing for zccheck. This crate knows nothing of zero-copy semantics: it builds
//! networks out of anonymous network namespaces and veth pairs, writes sysctls safely, probes
//! the kernel, and wraps the few system calls that `libc`, `nix` and `socket2` leave raw.
//!
//! Everything that changes system state is a value that undoes the change on drop, and the
//! only state that outlives the process (a global sysctl) is journalled so the next run can
//! restore it.

pub mod ethtool;
pub mod kernel;
pub mod netem;
pub mod netlink;
pub mod netns;
pub mod netstat;
pub mod privileges;
pub mod sockets;
pub mod sys;
pub mod sysctl;
pub mod topology;

pub use netns::NetNs;
