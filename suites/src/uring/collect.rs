//! Receivers that keep exactly what arrived, for byte-exact delivery checks.
//!
//! A completion says the kernel took the bytes, not that the peer has them: a TCP reader
//! therefore reads until end of stream (the sender closes after its last completion), never
//! "until idle", which would race with bytes still crossing the link. A UDP reader keeps each
//! datagram whole and stops once the expected number arrived or the socket stayed idle.

use std::io::{self, ErrorKind, Read};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use socket2::Socket;

/// Longest a reader waits for the end of a stream or for missing datagrams.
const DEADLINE: Duration = Duration::from_secs(5);
/// A UDP receiver that got nothing for this long has everything it will get.
const UDP_IDLE: Duration = Duration::from_millis(200);

/// Reads a stream socket until end of stream.
pub struct Stream(Option<JoinHandle<io::Result<Vec<u8>>>>);

impl Stream {
    pub fn start(s: Socket) -> Result<Stream> {
        s.set_read_timeout(Some(DEADLINE))
            .context("SO_RCVTIMEO on the receiver")?;
        Ok(Stream(Some(std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match (&s).read(&mut buf) {
                    Ok(0) => return Ok(got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }))))
    }

    /// Everything the peer sent, once it closed; the sender must be closed first.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let h = self.0.take().expect("finish called once");
        let deadline = Instant::now() + DEADLINE + Duration::from_secs(1);
        while !h.is_finished() {
            if Instant::now() > deadline {
                bail!("the stream receiver saw no end of stream within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match h.join() {
            Ok(r) => r.context("reading the stream receiver (no end of stream in time?)"),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// Reads a datagram socket, one entry per datagram. Datagrams wait in the socket's receive
/// buffer (a sequence sends far less than it holds) and are read when the sequence is done.
pub struct Datagrams(Socket);

impl Datagrams {
    pub fn start(s: Socket) -> Result<Datagrams> {
        s.set_nonblocking(true)
            .context("O_NONBLOCK on the receiver")?;
        Ok(Datagrams(s))
    }

    /// The datagrams received, once `want` arrived or nothing more came for a while.
    pub fn finish(self, want: usize) -> Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        loop {
            match (&self.0).read(&mut buf) {
                Ok(n) => {
                    got.push(buf[..n].to_vec());
                    last = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if got.len() >= want || last.elapsed() > UDP_IDLE || Instant::now() > deadline {
                        return Ok(got);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e).context("reading the datagram receiver"),
            }
        }
    }
}
