//! Retrying system calls a stop and a continue interrupted.
//!
//! A socket call under a timeout (SO_RCVTIMEO/SO_SNDTIMEO), and `io_uring_enter` waiting for
//! completions, fail with EINTR when the process is stopped (SIGSTOP, a debugger, `^Z`) and
//! continued, even with no signal handler installed. Nothing happened in the kernel: such a
//! call is simply made again, for as long as its own bound allows.

use std::io;
use std::time::{Duration, Instant};

/// How long a call may keep being retried after interruptions, when the caller gives no
/// bound of its own: longer than any single bounded call the suite makes, shorter than a
/// case's time limit.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(30);

/// Makes `call` again while it fails with EINTR, until `bound` has passed since the first
/// try; then the EINTR is returned like any other error.
pub fn retry_interrupted<T>(
    bound: Duration,
    mut call: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let deadline = Instant::now() + bound;
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && Instant::now() < deadline => {}
            other => return other,
        }
    }
}

/// For a call that waits up to a time it is given (poll, epoll_wait): makes it again after
/// an interruption with only the time left of `timeout`, so that interruptions never
/// stretch the wait (a stop every few milliseconds must not keep a 30 ms wait from ending).
/// The last try gets zero: it still reports what is ready.
pub fn retry_waiting<T>(
    timeout: Duration,
    mut call: impl FnMut(Duration) -> io::Result<T>,
) -> io::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match call(left) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// [`retry_interrupted`] for calls that report errors as a negative errno in an `i32`-style
/// result (`Err(errno)`), such as the wrappers that hand the raw errno to a model.
pub fn retry_errno<T>(bound: Duration, mut call: impl FnMut() -> Result<T, i32>) -> Result<T, i32> {
    let deadline = Instant::now() + bound;
    loop {
        match call() {
            Err(libc::EINTR) if Instant::now() < deadline => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_calls_are_made_again() {
        let mut tries = 0;
        let r = retry_interrupted(Duration::from_secs(5), || {
            tries += 1;
            if tries < 3 {
                Err(io::Error::from_raw_os_error(libc::EINTR))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn a_waiting_call_is_made_again_with_the_time_left() {
        let mut given = Vec::new();
        let r = retry_waiting(Duration::from_millis(50), |left| {
            given.push(left);
            if given.len() < 3 {
                std::thread::sleep(Duration::from_millis(30));
                Err(io::Error::from_raw_os_error(libc::EINTR))
            } else {
                Ok(())
            }
        });
        r.unwrap();
        assert!(given[1] < Duration::from_millis(21), "{given:?}");
        assert_eq!(given[2], Duration::ZERO, "{given:?}");
    }

    #[test]
    fn other_errors_and_an_exhausted_bound_are_returned() {
        let r: io::Result<()> = retry_interrupted(Duration::from_secs(5), || {
            Err(io::Error::from_raw_os_error(libc::EAGAIN))
        });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EAGAIN));
        let r: io::Result<()> = retry_interrupted(Duration::ZERO, || {
            Err(io::Error::from_raw_os_error(libc::EINTR))
        });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINTR));
        assert_eq!(
            retry_errno::<()>(Duration::ZERO, || Err(libc::EINTR)),
            Err(libc::EINTR)
        );
    }
}
