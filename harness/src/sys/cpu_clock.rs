//! The calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), for measurements that charge
//! work to the thread that did it rather than to wall time.
//!
//! The clock counts user and system time of this thread only, including softirq work the
//! kernel happened to run in its context when `CONFIG_IRQ_TIME_ACCOUNTING` is off; time the
//! thread spends blocked is not counted.

use std::io;
use std::time::Duration;

/// CPU time the calling thread has used since it started.
pub fn thread_cpu_time() -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_advances_the_clock_and_sleep_does_not() {
        let t0 = thread_cpu_time().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(20) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let t1 = thread_cpu_time().unwrap();
        assert!(t1 > t0, "busy work did not advance the thread clock");
        std::thread::sleep(Duration::from_millis(30));
        let t2 = thread_cpu_time().unwrap();
        assert!(
            t2 - t1 < Duration::from_millis(15),
            "a 30 ms sleep was charged {:?}",
            t2 - t1
        );
    }
}
