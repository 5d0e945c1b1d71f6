//! Connected socket pairs across the suite's namespaces, every blocking call bounded.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::NetNs;

/// Default bound on any single blocking socket call made by the harness or a case.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn domain(self) -> Domain {
        match self {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        }
    }

    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// Sets send and receive timeouts so that no blocking call on `s` can hang.
pub fn bound_io(s: &Socket, timeout: Duration) -> io::Result<()> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))
}

fn raw_socket(family: Family, proto: Proto) -> io::Result<Socket> {
    let (ty, p) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let s = Socket::new(family.domain(), ty, Some(p))?;
    bound_io(&s, IO_TIMEOUT)?;
    Ok(s)
}

/// A socket of `proto`/`family` created inside `ns`, with bounded I/O.
pub fn socket_in(ns: &NetNs, family: Family, proto: Proto) -> Result<Socket> {
    ns.run(|| raw_socket(family, proto))?
        .with_context(|| format!("socket({family:?}, {proto:?}) in namespace {}", ns.name()))
}

/// A socket in the caller's own namespace (for probes that need no network), bounded I/O.
pub fn socket_here(family: Family, proto: Proto) -> Result<Socket> {
    raw_socket(family, proto).with_context(|| format!("socket({family:?}, {proto:?})"))
}

/// A TCP listener on `ip`, port chosen by the kernel.
pub fn tcp_listener(ns: &NetNs, ip: IpAddr) -> Result<Socket> {
    let s = socket_in(ns, Family::of(ip), Proto::Tcp)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::new(ip, 0).into())
        .with_context(|| format!("bind {ip}:0"))?;
    s.listen(16).context("listen")?;
    Ok(s)
}

pub fn local_addr(s: &Socket) -> Result<SocketAddr> {
    s.local_addr()?
        .as_socket()
        .context("socket has no inet address")
}

/// Connects a new TCP socket in `ns` to `to`, after `prepare` has set options on it.
pub fn tcp_connect(
    ns: &NetNs,
    to: SocketAddr,
    prepare: impl FnOnce(&Socket) -> io::Result<()>,
) -> Result<Socket> {
    let s = socket_in(ns, Family::of(to.ip()), Proto::Tcp)?;
    prepare(&s).context("preparing the client socket")?;
    s.connect_timeout(&SockAddr::from(to), IO_TIMEOUT)
        .with_context(|| format!("connect to {to} from namespace {}", ns.name()))?;
    Ok(s)
}

/// Accepts one connection, waiting at most `timeout`.
pub fn accept(listener: &Socket, timeout: Duration) -> Result<Socket> {
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&listener.as_fd()),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    if rc <= 0 {
        bail!("no connection to accept within {timeout:?}");
    }
    let (s, _) = listener.accept().context("accept")?;
    bound_io(&s, IO_TIMEOUT)?;
    Ok(s)
}

/// A connected TCP pair: `client` in one namespace, `server` (the accepted socket) in another.
pub struct TcpPair {
    pub client: Socket,
    pub server: Socket,
}

/// Connects a client in `client_ns` to a listener on `server_ip` in `server_ns`.
pub fn tcp_pair(client_ns: &NetNs, server_ns: &NetNs, server_ip: IpAddr) -> Result<TcpPair> {
    let listener = tcp_listener(server_ns, server_ip)?;
    let to = local_addr(&listener)?;
    let client = tcp_connect(client_ns, to, |_| Ok(()))?;
    let server = accept(&listener, IO_TIMEOUT)?;
    Ok(TcpPair { client, server })
}

/// A UDP sender connected to a bound receiver.
pub struct UdpPair {
    pub client: Socket,
    pub server: Socket,
}

pub fn udp_pair(client_ns: &NetNs, server_ns: &NetNs, server_ip: IpAddr) -> Result<UdpPair> {
    let server = socket_in(server_ns, Family::of(server_ip), Proto::Udp)?;
    server
        .bind(&SocketAddr::new(server_ip, 0).into())
        .context("bind UDP receiver")?;
    let to = local_addr(&server)?;
    let client = socket_in(client_ns, Family::of(server_ip), Proto::Udp)?;
    client
        .connect(&to.into())
        .with_context(|| format!("UDP connect to {to}"))?;
    Ok(UdpPair { client, server })
}

/// A UDP sender connected to an address nobody listens on (for paths where the packet never
/// reaches a socket, such as a veth whose peer is down).
pub fn udp_to(client_ns: &NetNs, to: SocketAddr) -> Result<Socket> {
    let client = socket_in(client_ns, Family::of(to.ip()), Proto::Udp)?;
    client
        .connect(&to.into())
        .with_context(|| format!("UDP connect to {to}"))?;
    Ok(client)
}

/// A thread that reads everything arriving on a socket until told to stop or the peer closes,
/// so that senders are never blocked by a full receive buffer.
pub struct Sink {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<io::Result<Vec<u8>>>>,
}

impl Sink {
    /// Starts reading `s`. With `keep`, the bytes are kept and returned by [`Sink::finish`];
    /// otherwise only counted (the returned vector is empty).
    pub fn start(s: Socket, keep: bool) -> Result<Self> {
        s.set_read_timeout(Some(Duration::from_millis(5)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match io::Read::read(&mut &s, &mut buf) {
                    Ok(0) if s.r#type()? == Type::STREAM => return Ok(kept),
                    Ok(n) => {
                        if keep {
                            kept.extend_from_slice(&buf[..n]);
                        }
                    }
                    // Interrupted: a stop and continue; the read is simply made again.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) =>
                    {
                        if flag.load(Ordering::Relaxed) {
                            return Ok(kept);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        });
        Ok(Sink {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops reading once the socket is idle, and returns what was kept.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        let h = self.handle.take().expect("finish called once");
        let deadline = Instant::now() + IO_TIMEOUT;
        while !h.is_finished() {
            if Instant::now() > deadline {
                bail!("the receiving thread did not stop within {IO_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match h.join() {
            Ok(r) => Ok(r.context("reading on the receiving side")?),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
