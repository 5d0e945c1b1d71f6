//! zccheck: a conformance suite for Linux zero-copy networking.
//!
//! The crate holds the cases (one module per feature area), the model they check the kernel
//! against, the runner, and the report formats. The `zccheck` binary is a thin CLI over it.

pub mod bench;
pub mod case;
pub mod devmem;
pub mod health;
pub mod kconfig;
pub mod model;
pub mod outcome;
pub mod probes;
pub mod property;
pub mod receive;
pub mod registry;
pub mod report;
pub mod run;
pub mod runner;
pub mod selftest;
pub mod send;
pub mod uring;
pub mod zcrx;
