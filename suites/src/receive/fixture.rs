//! A connection with a known stream already queued at the receiver, for the cases that make
//! one precise call after another. The sender stays open (no FIN) unless a case ends it, so
//! what is queued changes only when the receiver takes something.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::Family;
use harness::sys::socket_mmap::{self, Sharing, SocketMapping};
use harness::sys::tcp_zc_receive::{self, ZcReply};
use socket2::Socket;

use super::net::{aligned_loopback, ConnOpts, RxNet};
use super::sender::{self, Ending, SendPlan};
use crate::model::stream::{Pattern, Source, StreamCheck};
use crate::model::zc_receive::Answer;
use crate::outcome::fail_with;

/// How long a case waits for its stream to reach the receiver.
pub const ARRIVAL: Duration = Duration::from_secs(3);

pub struct Queued {
    pub net: RxNet,
    pub receiver: Socket,
    /// The sender, still open.
    pub sender: Option<Socket>,
    pub check: StreamCheck,
    pub len: usize,
}

/// What to queue.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub family: Family,
    pub len: usize,
    /// Bytes per send call.
    pub chunk: usize,
    pub zc_sender: bool,
}

impl Spec {
    /// `len` bytes from a MSG_ZEROCOPY sender over loopback with the page-aligned MTU: the
    /// set-up where pages map.
    pub fn mappable(len: usize) -> Self {
        Spec {
            family: Family::V4,
            len,
            chunk: 64 * 1024,
            zc_sender: true,
        }
    }
}

pub const PATTERN: Pattern = Pattern::Stamped {
    seed: 0x7a63_6368_6b00_0000,
};

impl Queued {
    pub fn new(spec: Spec) -> Result<Self> {
        let net = aligned_loopback(spec.family)?;
        Self::on(net, spec)
    }

    /// Queues the stream on an existing network.
    pub fn on(net: RxNet, spec: Spec) -> Result<Self> {
        let conn = net.connect(
            spec.family,
            ConnOpts {
                zc_sender: spec.zc_sender,
                maxseg: None,
            },
        )?;
        let data = Arc::new(PATTERN.bytes(spec.len));
        let plan = SendPlan::whole(spec.len, spec.chunk, spec.zc_sender, Ending::Open);
        let mut sent = sender::join(sender::spawn(conn.sender, data, plan))?;
        sender::wait_queued(&conn.receiver, spec.len as u32, ARRIVAL)?;
        // Every byte is queued at the receiver: delivered, so (copied on local delivery)
        // every id is owed now.
        sender::settle(&mut sent)?;
        Ok(Queued {
            net,
            receiver: conn.receiver,
            sender: sent.socket,
            check: StreamCheck::new(PATTERN, spec.len as u64),
            len: spec.len,
        })
    }

    /// A PROT_READ, MAP_SHARED mapping of the receiver of `pages` pages.
    pub fn map(&self, pages: usize) -> Result<SocketMapping> {
        SocketMapping::readable(
            self.receiver.as_fd(),
            pages * socket_mmap::page_size(),
            Sharing::Shared,
        )
        .context("mmap(PROT_READ, MAP_SHARED) of the receiving socket")
    }

    /// Bytes queued now (SIOCINQ).
    pub fn inq(&self) -> Result<u32> {
        tcp_zc_receive::queued_in(self.receiver.as_fd()).context("SIOCINQ")
    }

    /// Takes `len` mapped bytes at `offset` of `map` as the next bytes of the stream.
    pub fn take_mapped(&mut self, map: &SocketMapping, offset: usize, len: u32) -> Result<()> {
        let bytes = map.read(offset, len as usize)?;
        if bytes.len() < len as usize {
            return Err(fail_with(
                format!(
                    "the call reported {len} bytes mapped but only {} were readable",
                    bytes.len()
                ),
                format!("stream offset {}", self.check.position()),
            ));
        }
        self.take(Source::Mapped, &bytes)
    }

    /// Reads exactly `n` bytes with recv() as the next bytes of the stream.
    pub fn take_recv(&mut self, n: usize) -> Result<()> {
        let mut buf = vec![0u8; n];
        (&self.receiver)
            .read_exact(&mut buf)
            .with_context(|| format!("recv of {n} hinted bytes"))?;
        self.take(Source::Recv, &buf)
    }

    pub fn take(&mut self, source: Source, bytes: &[u8]) -> Result<()> {
        self.check
            .accept(source, bytes)
            .map_err(|v| fail_with(v.to_string(), "the received bytes are not the sent ones"))
    }

    /// Ends the stream with a FIN from the sender and waits for it to arrive.
    pub fn ends_with_fin(&mut self) -> Result<()> {
        let s = self.sender.take().context("the sender was already ended")?;
        s.shutdown(std::net::Shutdown::Write)
            .context("shutdown(SHUT_WR)")?;
        self.sender = Some(s);
        wait_for_hangup(&self.receiver)
    }

    /// Resets the connection from the sender (SO_LINGER 0, close) and waits for the RST.
    pub fn ends_with_reset(&mut self) -> Result<()> {
        let s = self.sender.take().context("the sender was already ended")?;
        s.set_linger(Some(Duration::ZERO)).context("SO_LINGER 0")?;
        drop(s);
        wait_for_hangup(&self.receiver)
    }
}

/// Waits until the receiver has seen the peer's FIN or RST (POLLRDHUP), or [`ARRIVAL`].
fn wait_for_hangup(s: &Socket) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut pfd = [PollFd::new(
        s.as_fd(),
        PollFlags::from_bits_retain(libc::POLLRDHUP as libc::c_short),
    )];
    let n = poll(
        &mut pfd,
        PollTimeout::try_from(ARRIVAL.as_millis() as u64).unwrap_or(PollTimeout::MAX),
    )
    .context("poll for POLLRDHUP")?;
    anyhow::ensure!(
        n > 0,
        "the peer's FIN or RST did not arrive within {ARRIVAL:?}"
    );
    Ok(())
}

/// The oracle's view of a call's result. `inq_after` is passed when the call asked for `inq`
/// (optlen at least 20) and nothing else was arriving.
pub fn answer(r: &io::Result<ZcReply>, inq_known: bool) -> Answer {
    match r {
        Ok(rep) => Answer::Ok {
            length: rep.fields.length,
            skip: rep.fields.recv_skip_hint,
            copied: rep.fields.copybuf_len,
            inq_after: inq_known.then_some(rep.fields.inq),
            err: (rep.optlen >= harness::sys::tcp_zc_receive::field_end::ERR as i32)
                .then_some(rep.fields.err),
        },
        Err(e) => Answer::Err {
            errno: e.raw_os_error().unwrap_or(0),
        },
    }
}

/// `"0"` or the errno name of a call's result, with its fields, for evidence and observations.
pub fn show(r: &io::Result<ZcReply>) -> String {
    match r {
        Ok(rep) => {
            let f = &rep.fields;
            format!(
                "0: length {} skip {} inq {} err {} copybuf_len {} msg_flags {:#x} (optlen {})",
                f.length, f.recv_skip_hint, f.inq, f.err, f.copybuf_len, f.msg_flags, rep.optlen
            )
        }
        Err(e) => crate::probes::io_errno(e),
    }
}

/// The oracle on one call at the start of `map` with nothing else arriving: `inq` queued
/// before it (SIOCINQ), `fin` whether the peer's FIN is in, no copy buffer. A wrong answer
/// is `fail` with `log` (which should already hold the call).
pub fn judge_own(
    map: &SocketMapping,
    requested: u32,
    inq: u32,
    fin: bool,
    r: &io::Result<ZcReply>,
    log: &[String],
) -> Result<crate::model::zc_receive::Seen> {
    use crate::model::zc_receive::{check, Call, CopyBuf, Region};
    let optlen = r.as_ref().map(|rep| rep.optlen).unwrap_or(0);
    let call = Call {
        page: socket_mmap::page_size() as u32,
        misalignment: 0,
        region: Region::Own {
            room: map.len() as u64,
        },
        requested,
        copybuf: CopyBuf::NONE,
        listening: false,
        inq,
        fin,
    };
    check(
        &call,
        &answer(r, optlen >= tcp_zc_receive::field_end::INQ as i32),
    )
    .map_err(|v| fail_with(v.to_string(), log.join("\n")))
}
