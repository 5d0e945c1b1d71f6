//! Opting in and detecting support (SEMANTICS.md R1.1–R1.6).
//!
//! * `send.opt_in.*`: without SO_ZEROCOPY the flag is silently ignored (no notification, no
//!   id), also after the option was turned off again; the counter is never reset (OBSERVED B).
//! * `send.sockopt.values`: the option is accepted on TCP and UDP, v4 and v6, with 0 and 1
//!   only; anything else, or a short option, is EINVAL and changes nothing.
//! * `send.sockopt.types`: the socket types that must refuse it, with the errno recorded
//!   (ENOTSUPP, 524, before ~5.18; EOPNOTSUPP since, 869420a8be19).
//! * `send.sockopt.inherit.*`: accept() inherits it from the listener, and the accepted
//!   socket's ids start at 0 (packetdrill `fastopen-server` relies on it).

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::sockets::{self, Family, Proto};
use harness::sys::errqueue;
use harness::sys::sockopt;
use harness::sys::zerocopy::{self, SO_ZEROCOPY};
use harness::NetNs;
use socket2::{Domain, Protocol, Socket, Type};

use super::flow::{
    await_ids, completions, show, show_each, zc_send, Path, Variant, SO_ZEROCOPY_TCP,
};
use crate::case::{Area, Case, Ctx};
use crate::model::completions::{check, IdWindow};
use crate::outcome::{expect, fail, fail_with, Verdict};
use crate::probes::{errno_name, io_errno, NET_ADMIN};

pub fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Variant::all()
        .into_iter()
        .map(|v| {
            Case::new(
                format!("send.opt_in.{}", v.tag()),
                Area::Send,
                "MSG_ZEROCOPY without SO_ZEROCOPY (never set, or set back to 0) is ignored: \
                 data sent, no notification, no id; the counter is never reset",
                v.requires(),
                move |ctx| opt_in(ctx, v),
            )
        })
        .collect();
    cases.push(Case::new(
        "send.sockopt.values",
        Area::Send,
        "SO_ZEROCOPY accepts 0 and 1 on TCP and UDP, v4 and v6; other values and short options \
         are EINVAL and change nothing",
        vec![NET_ADMIN, SO_ZEROCOPY_TCP],
        values,
    ));
    cases.push(Case::new(
        "send.sockopt.types",
        Area::Send,
        "SO_ZEROCOPY is refused by unix, packet, raw, UDP-Lite sockets (errno recorded: \
         EOPNOTSUPP, or 524 before ~5.18); MPTCP's answer recorded",
        vec![NET_ADMIN, SO_ZEROCOPY_TCP],
        types,
    ));
    for family in [Family::V4, Family::V6] {
        let v = Variant::new(Proto::Tcp, family, Path::Loopback);
        cases.push(Case::new(
            format!("send.sockopt.inherit.{}", v.tag()),
            Area::Send,
            "accept() inherits SO_ZEROCOPY from the listener; the accepted socket's ids start \
             at 0 (packetdrill fastopen-server)",
            v.requires(),
            move |ctx| inherit(ctx, v),
        ));
    }
    cases
}

fn payload(v: Variant) -> Vec<u8> {
    vec![0x5a; if v.proto == Proto::Udp { 1000 } else { 4096 }]
}

/// How long a notification that should not exist is given to show up. Completions on these
/// paths take microseconds; a kernel that honours the flag would be seen.
const QUIET: Duration = Duration::from_millis(100);

/// R1.1: ignored sends are interleaved with real ones; the real ones must get ids 0 and 1
/// and nothing else may ever be reported.
fn opt_in(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let f = net.flow(false)?;
    let _sink = sockets::Sink::start(f.receiver.try_clone()?, false)?;
    let fd = f.sender.as_fd();
    let opt = zerocopy::get_so_zerocopy(fd).context("getsockopt(SO_ZEROCOPY)")?;
    expect(opt == 0, || {
        format!("a new socket reports SO_ZEROCOPY={opt}, not 0")
    })?;
    let data = payload(v);
    let mut calls = Vec::new();
    let mut ignored = |what: &str| -> Result<()> {
        let n = zc_send(&f.sender, &data, false).map_err(|e| {
            fail(format!(
                "send(MSG_ZEROCOPY) {what} failed: {}",
                io_errno(&e)
            ))
        })?;
        expect(n == data.len(), || {
            format!("send {what} sent {n} of {} bytes", data.len())
        })?;
        calls.push(format!("ignored {what}: {n}"));
        Ok(())
    };
    ignored("without SO_ZEROCOPY")?;
    zerocopy::set_so_zerocopy(fd, true).context("setsockopt(SO_ZEROCOPY, 1)")?;
    zc_send(&f.sender, &data, false).context("the first zero-copy send")?;
    zerocopy::set_so_zerocopy(fd, false).context("setsockopt(SO_ZEROCOPY, 0)")?;
    ignored("after SO_ZEROCOPY was set back to 0")?;
    zerocopy::set_so_zerocopy(fd, true).context("setsockopt(SO_ZEROCOPY, 1) again")?;
    zc_send(&f.sender, &data, false).context("the second zero-copy send")?;
    let mut entries = await_ids(&f.sender, 2)?;
    errqueue::wait_err(fd, QUIET)?;
    entries.extend(errqueue::drain(fd)?);
    let got = completions(&entries);
    check(IdWindow::new(0, 2), &got, true).map_err(|viol| {
        fail_with(
            format!("two real zero-copy sends among ignored ones: {viol}"),
            format!("calls: {}\nnotifications: {}", calls.join("; "), show(&got)),
        )
    })?;
    ctx.observe_timing("notifications", show_each(&got));
    Ok(Verdict::pass(
        "the flag was ignored without the option; the real sends took ids 0 and 1",
    ))
}

/// R1.3: values and lengths, on every socket kind that accepts the option.
fn values(ctx: &mut Ctx) -> Result<Verdict> {
    let ns = NetNs::new("sockopt")?;
    let mut observed = BTreeMap::new();
    for family in [Family::V4, Family::V6] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let kind = Variant::new(proto, family, Path::Loopback).flavour();
            let s = sockets::socket_in(&ns, family, proto)?;
            let fd = s.as_fd();
            let get = || zerocopy::get_so_zerocopy(fd).context("getsockopt(SO_ZEROCOPY)");
            for on in [true, false, true] {
                zerocopy::set_so_zerocopy(fd, on).map_err(|e| {
                    fail(format!(
                        "{kind}: setsockopt(SO_ZEROCOPY, {}) failed: {}",
                        on as i32,
                        io_errno(&e)
                    ))
                })?;
                let now = get()?;
                expect(now == on as i32, || {
                    format!("{kind}: set to {} but reads back {now}", on as i32)
                })?;
            }
            for bad in [2, -1, i32::MAX, i32::MIN] {
                let r = sockopt::set_int(fd, libc::SOL_SOCKET, SO_ZEROCOPY, bad);
                expect(
                    matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINVAL)),
                    || {
                        format!(
                            "{kind}: SO_ZEROCOPY={bad} gave {}, not EINVAL",
                            show_set(&r)
                        )
                    },
                )?;
                expect(get()? == 1, || {
                    format!("{kind}: the refused value {bad} changed the option")
                })?;
            }
            // A value shorter than an int (R1.3; sk_setsockopt refuses optlen < 4).
            for len in 1..4 {
                let r = sockopt::set_raw(fd, libc::SOL_SOCKET, SO_ZEROCOPY, &[0u8; 4][..len]);
                expect(
                    matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINVAL)),
                    || format!("{kind}: a {len}-byte SO_ZEROCOPY gave {}", show_set(&r)),
                )?;
            }
            // A longer buffer holding 0: whether the tail is ignored is not specified.
            let mut long = [0u8; 8];
            long[..4].copy_from_slice(&0i32.to_ne_bytes());
            let r = sockopt::set_raw(fd, libc::SOL_SOCKET, SO_ZEROCOPY, &long);
            observed.insert(format!("{kind}.optlen_8"), show_set(&r));
        }
    }
    // R1.5: 4.14 refused the option on a socket past TCP_CLOSE (EBUSY); later kernels take it.
    let lo = harness::topology::Loopback::new(None)?;
    let pair = sockets::tcp_pair(&lo.host.ns, &lo.host.ns, lo.host.v4.into())?;
    let r = zerocopy::set_so_zerocopy(pair.client.as_fd(), true);
    observed.insert("tcp4.on_established".into(), show_set(&r));
    ctx.observe("answers", observed);
    Ok(Verdict::pass(
        "0 and 1 accepted and read back on tcp4/6, udp4/6; 2, -1, INT_MAX, INT_MIN and \
         optlen 1..3 refused with EINVAL",
    ))
}

fn show_set(r: &std::io::Result<()>) -> String {
    match r {
        Ok(()) => "0".into(),
        Err(e) => io_errno(e),
    }
}

/// A socket type that must refuse SO_ZEROCOPY, or whose answer is only recorded.
struct Kind {
    name: &'static str,
    domain: Domain,
    ty: Type,
    protocol: Option<Protocol>,
    /// The documentation names TCP, UDP, VSOCK and RDS; these have no zero-copy path.
    must_refuse: bool,
}

fn kinds() -> Vec<Kind> {
    let k = |name, domain, ty, protocol: Option<i32>, must_refuse| Kind {
        name,
        domain,
        ty,
        protocol: protocol.map(Protocol::from),
        must_refuse,
    };
    vec![
        k("unix.stream", Domain::UNIX, Type::STREAM, None, true),
        k("unix.dgram", Domain::UNIX, Type::DGRAM, None, true),
        k("unix.seqpacket", Domain::UNIX, Type::SEQPACKET, None, true),
        k("packet.raw", Domain::PACKET, Type::RAW, Some(0), true),
        k("packet.dgram", Domain::PACKET, Type::DGRAM, Some(0), true),
        k(
            "raw4.udp",
            Domain::IPV4,
            Type::RAW,
            Some(libc::IPPROTO_UDP),
            true,
        ),
        k(
            "raw6.udp",
            Domain::IPV6,
            Type::RAW,
            Some(libc::IPPROTO_UDP),
            true,
        ),
        k(
            "udplite4",
            Domain::IPV4,
            Type::DGRAM,
            Some(libc::IPPROTO_UDPLITE),
            true,
        ),
        k(
            "udplite6",
            Domain::IPV6,
            Type::DGRAM,
            Some(libc::IPPROTO_UDPLITE),
            true,
        ),
        // MPTCP could gain zero-copy one day; its answer is a fact, not a promise.
        k(
            "mptcp4",
            Domain::IPV4,
            Type::STREAM,
            Some(libc::IPPROTO_MPTCP),
            false,
        ),
        k(
            "mptcp6",
            Domain::IPV6,
            Type::STREAM,
            Some(libc::IPPROTO_MPTCP),
            false,
        ),
    ]
}

/// R1.4: every socket type without a zero-copy path refuses the option with ENOTSUPP (524,
/// kernel-internal, before ~5.18) or EOPNOTSUPP. Socket types this kernel cannot create
/// (MPTCP off, say) are recorded as such. Only types built into the networking core are
/// tried, so no module is loaded by the case.
fn types(ctx: &mut Ctx) -> Result<Verdict> {
    let ns = NetNs::new("sockopt-types")?;
    let mut answers = BTreeMap::new();
    let mut refused = Vec::new();
    for k in kinds() {
        let made = ns.run(|| Socket::new(k.domain, k.ty, k.protocol))?;
        let s = match made {
            Ok(s) => s,
            Err(e) => {
                answers.insert(k.name, format!("socket(): {}", io_errno(&e)));
                continue;
            }
        };
        let r = zerocopy::set_so_zerocopy(s.as_fd(), true);
        let answer = show_set(&r);
        answers.insert(k.name, answer.clone());
        let errno = r.as_ref().err().and_then(|e| e.raw_os_error());
        match errno {
            Some(libc::EOPNOTSUPP) | Some(524) => refused.push(k.name),
            _ if !k.must_refuse => {}
            None => {
                return Err(fail(format!(
                    "{} sockets accept SO_ZEROCOPY, but have no zero-copy send path",
                    k.name
                )))
            }
            Some(e) => {
                return Err(fail(format!(
                    "{} sockets refuse SO_ZEROCOPY with {}, not EOPNOTSUPP (or ENOTSUPP \
                     before ~5.18)",
                    k.name,
                    errno_name(e)
                )))
            }
        }
    }
    let errnos: std::collections::BTreeSet<&String> = answers
        .iter()
        .filter(|(name, _)| refused.contains(name))
        .map(|(_, a)| a)
        .collect();
    ctx.observe("answers", &answers);
    ctx.observe("refusal_errno", errnos);
    Ok(Verdict::pass(format!("refused by {}", refused.join(", "))))
}

/// R1.6: a listener with SO_ZEROCOPY gives accepted sockets with SO_ZEROCOPY, whose own
/// counter starts at 0; a listener without it gives sockets without it.
fn inherit(ctx: &mut Ctx, v: Variant) -> Result<Verdict> {
    let net = v.build()?;
    let host = net.topo.receiver();
    let ip = host.ip(v.family);
    let accepted = |zc: bool| -> Result<(Socket, Socket)> {
        let listener = sockets::socket_in(&host.ns, v.family, Proto::Tcp)?;
        if zc {
            zerocopy::set_so_zerocopy(listener.as_fd(), true)
                .context("SO_ZEROCOPY on the unbound listener")?;
        }
        listener.bind(&std::net::SocketAddr::new(ip, 0).into())?;
        listener.listen(4)?;
        let to = sockets::local_addr(&listener)?;
        let client = sockets::tcp_connect(&host.ns, to, |_| Ok(()))?;
        let server = sockets::accept(&listener, sockets::IO_TIMEOUT)?;
        Ok((client, server))
    };
    let (client, server) = accepted(false)?;
    let plain = zerocopy::get_so_zerocopy(server.as_fd())?;
    expect(plain == 0, || {
        format!("a socket accepted from a listener without SO_ZEROCOPY reports {plain}")
    })?;
    drop((client, server));
    let (client, server) = accepted(true)?;
    let got = zerocopy::get_so_zerocopy(server.as_fd())?;
    expect(got == 1, || {
        format!("the accepted socket reports SO_ZEROCOPY={got}, the listener had 1")
    })?;
    let _sink = sockets::Sink::start(client, false)?;
    zc_send(&server, &[7u8; 1000], false).context("zero-copy send from the accepted socket")?;
    let got = completions(&await_ids(&server, 1)?);
    check(IdWindow::new(0, 1), &got, true).map_err(|viol| {
        fail_with(
            format!("the accepted socket's first send: {viol}"),
            show(&got),
        )
    })?;
    ctx.observe("notification", show(&got));
    Ok(Verdict::pass(
        "inherited by accept(); the accepted socket's first id was 0",
    ))
}
