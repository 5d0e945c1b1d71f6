//! Property tests against the kernel: proptest generates operation sequences, the case body
//! drives the kernel with each and checks the answers against the model. A failure is shrunk
//! to a minimal sequence, recorded with its seed, and becomes a `fail` with that sequence as
//! evidence. Errors of the suite itself (set-up failed) stop the property and become `error`.

use std::cell::{Cell, RefCell};
use std::fmt::Debug;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::case::{Ctx, PropertyRecord};
use crate::outcome::{fail_with, Stop};

/// Expands a u64 seed into the 32 bytes ChaCha wants (splitmix64).
pub fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = seed;
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Runs `ctx.cases` random values of `strategy` through `test`. `test` returns `Ok(())` when
/// the kernel's answers fit the model, an [`crate::outcome::fail`] when they do not, and any
/// other error when the suite itself could not go on.
pub fn check<S>(
    ctx: &mut Ctx,
    strategy: S,
    test: impl Fn(&S::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    S: Strategy,
    S::Value: Debug,
{
    let config = Config {
        cases: ctx.cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        max_shrink_time: 15_000,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(ctx.seed));
    let mut runner = TestRunner::new_with_rng(config, rng);
    let passed = Cell::new(0u32);
    let failed_once = Cell::new(false);
    let halt: RefCell<Option<anyhow::Error>> = RefCell::new(None);
    let result = runner.run(&strategy, |value| {
        if halt.borrow().is_some() {
            return Ok(());
        }
        match test(&value) {
            Ok(()) => {
                if !failed_once.get() {
                    passed.set(passed.get() + 1);
                }
                Ok(())
            }
            Err(e) => match e.downcast_ref::<Stop>() {
                Some(Stop::Fail { reason, evidence }) => {
                    failed_once.set(true);
                    let mut msg = reason.clone();
                    if let Some(ev) = evidence {
                        msg.push('\n');
                        msg.push_str(ev);
                    }
                    Err(TestCaseError::fail(msg))
                }
                _ => {
                    *halt.borrow_mut() = Some(e);
                    Ok(())
                }
            },
        }
    });
    ctx.property = Some(PropertyRecord {
        cases_run: passed.get() + failed_once.get() as u32,
        seed: ctx.seed,
        counterexample: None,
    });
    if let Some(e) = halt.into_inner() {
        return Err(e);
    }
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Abort(reason)) => Err(anyhow::anyhow!("property aborted: {reason}")),
        Err(TestError::Fail(reason, value)) => {
            let minimal = format!("{value:#?}");
            if let Some(p) = ctx.property.as_mut() {
                p.counterexample = Some(minimal.clone());
            }
            Err(fail_with(
                format!(
                    "after {} passing random cases: {}",
                    passed.get(),
                    first_line(&reason)
                ),
                format!("minimal counterexample:\n{minimal}\n{reason}"),
            ))
        }
    }
}

fn first_line(s: impl ToString) -> String {
    s.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_and_repeat() {
        assert_eq!(seed_bytes(1), seed_bytes(1));
        assert_ne!(seed_bytes(1), seed_bytes(2));
    }
}
