//! mmap() of a TCP socket (SEMANTICS.md §7.3, `tcp_mmap`): read-only mappings, shared or
//! private, are accepted; writable or executable ones are refused with EPERM, and the mapping
//! can never be made so later (mprotect gives EACCES); sockets without mmap give ENODEV; a
//! listening socket refuses the zero-copy call itself with ENOTCONN, after the alignment
//! check.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use anyhow::Result;
use harness::sockets::{self, Family, Proto};
use harness::sys::socket_mmap::{Prot, Sharing, SocketMapping};
use harness::sys::tcp_zc_receive::ZcCall;
use socket2::Socket;

use super::net::RxNet;
use super::net::{ConnOpts, Path};
use super::probes::{struct_len, ZC_RECEIVE};
use crate::case::{Area, Case, Ctx};
use crate::model::zc_receive::{check, Call, CopyBuf, Region};
use crate::outcome::{expect, fail, fail_with, unsupported, Verdict};
use crate::probes::{io_errno, NET_ADMIN};

pub fn cases() -> Vec<Case> {
    let req = || vec![NET_ADMIN, ZC_RECEIVE];
    vec![
        Case::new(
            "receive.mmap.read_only",
            Area::Receive,
            "a connected TCP socket can be mapped PROT_READ, MAP_SHARED or MAP_PRIVATE",
            req(),
            read_only,
        ),
        Case::new(
            "receive.mmap.write_refused",
            Area::Receive,
            "mmap of a TCP socket with PROT_WRITE or PROT_EXEC is refused with EPERM",
            req(),
            write_refused,
        ),
        Case::new(
            "receive.mmap.mprotect_refused",
            Area::Receive,
            "a TCP socket mapping cannot later be made writable or executable (EACCES)",
            req(),
            mprotect_refused,
        ),
        Case::new(
            "receive.mmap.udp_refused",
            Area::Receive,
            "mmap of a UDP socket is refused with ENODEV",
            req(),
            udp_refused,
        ),
        Case::new(
            "receive.mmap.listener",
            Area::Receive,
            "on a listening socket the call fails with ENOTCONN, after EINVAL for a misaligned address",
            req(),
            listener,
        ),
    ]
}

const LEN: usize = 4 * 4096;

/// A connected pair on loopback; nothing is sent.
fn connected() -> Result<(RxNet, super::net::Conn)> {
    let net = RxNet::new(Path::Loopback)?;
    let conn = net.connect(Family::V4, ConnOpts::default())?;
    Ok((net, conn))
}

fn try_map(s: &Socket, prot: Prot, sharing: Sharing, offset: i64) -> String {
    match SocketMapping::new(s.as_fd(), LEN, prot, sharing, offset) {
        Ok(_) => "0".into(),
        Err(e) => io_errno(&e),
    }
}

fn read_only(ctx: &mut Ctx) -> Result<Verdict> {
    let (net, conn) = connected()?;
    for sharing in [Sharing::Shared, Sharing::Private] {
        SocketMapping::new(conn.receiver.as_fd(), LEN, Prot::PROT_READ, sharing, 0).map_err(
            |e| {
                fail(format!(
                    "mmap(PROT_READ, MAP_{sharing:?}) of a connected TCP socket: {}",
                    io_errno(&e)
                ))
            },
        )?;
    }
    // Where the contract is silent: record what this kernel does.
    let unconnected = sockets::socket_in(net.receiver_ns(), Family::V4, Proto::Tcp)?;
    let mut seen = BTreeMap::new();
    seen.insert(
        "prot_none",
        try_map(&conn.receiver, Prot::PROT_NONE, Sharing::Shared, 0),
    );
    seen.insert(
        "offset_4096",
        try_map(&conn.receiver, Prot::PROT_READ, Sharing::Shared, 4096),
    );
    seen.insert(
        "unconnected_socket",
        try_map(&unconnected, Prot::PROT_READ, Sharing::Shared, 0),
    );
    seen.insert(
        "sending_socket",
        try_map(&conn.sender, Prot::PROT_READ, Sharing::Shared, 0),
    );
    ctx.observe("mmap", &seen);
    Ok(Verdict::pass(
        "PROT_READ mappings, shared and private, accepted",
    ))
}

fn write_refused(ctx: &mut Ctx) -> Result<Verdict> {
    let (_net, conn) = connected()?;
    let r = Prot::PROT_READ;
    let w = Prot::PROT_WRITE;
    let x = Prot::PROT_EXEC;
    let tries = [
        ("PROT_WRITE", w, Sharing::Shared),
        ("PROT_WRITE", w, Sharing::Private),
        ("PROT_READ|PROT_WRITE", r | w, Sharing::Shared),
        ("PROT_READ|PROT_WRITE", r | w, Sharing::Private),
        ("PROT_EXEC", x, Sharing::Shared),
        ("PROT_READ|PROT_EXEC", r | x, Sharing::Private),
    ];
    let mut log = Vec::new();
    for (name, prot, sharing) in tries {
        map_control(&conn.receiver, sharing, &mut log)?;
        let got = try_map(&conn.receiver, prot, sharing, 0);
        log.push(format!("mmap({name}, MAP_{sharing:?}): {got}"));
        if !got.starts_with("EPERM") {
            return Err(fail_with(
                format!("mmap({name}, MAP_{sharing:?}) of a TCP socket gave {got}, not EPERM"),
                log.join("\n"),
            ));
        }
    }
    ctx.observe("calls", &log);
    Ok(Verdict::pass(format!(
        "{} writable or executable mappings refused with EPERM",
        log.len()
    )))
}

fn mprotect_refused(ctx: &mut Ctx) -> Result<Verdict> {
    let (_net, conn) = connected()?;
    let mut log = Vec::new();
    for sharing in [Sharing::Shared, Sharing::Private] {
        let m = SocketMapping::new(conn.receiver.as_fd(), LEN, Prot::PROT_READ, sharing, 0)?;
        // The control: the same mprotect call with PROT_READ, what the mapping already has.
        if let Err(e) = m.mprotect(Prot::PROT_READ) {
            return Err(unsupported(format!(
                "control mprotect(PROT_READ) of a MAP_{sharing:?} TCP socket mapping: {}",
                io_errno(&e)
            )));
        }
        for (name, prot) in [
            ("PROT_READ|PROT_WRITE", Prot::PROT_READ | Prot::PROT_WRITE),
            ("PROT_READ|PROT_EXEC", Prot::PROT_READ | Prot::PROT_EXEC),
        ] {
            let got = match m.mprotect(prot) {
                Ok(()) => "0".to_string(),
                Err(e) => io_errno(&e),
            };
            log.push(format!("MAP_{sharing:?}: mprotect({name}): {got}"));
            if !got.starts_with("EACCES") {
                return Err(fail_with(
                    format!(
                        "mprotect({name}) of a MAP_{sharing:?} TCP socket mapping gave {got}, not EACCES"
                    ),
                    log.join("\n"),
                ));
            }
        }
        let same = m.mprotect(Prot::PROT_READ);
        log.push(format!(
            "MAP_{sharing:?}: mprotect(PROT_READ): {}",
            same.as_ref()
                .map(|_| "0".to_string())
                .unwrap_or_else(io_errno)
        ));
    }
    ctx.observe("calls", &log);
    Ok(Verdict::pass(
        "mprotect to write or execute refused with EACCES, shared and private",
    ))
}

/// The control of a refused mmap: PROT_READ, same socket, same sharing, must be accepted.
fn map_control(s: &Socket, sharing: Sharing, log: &mut Vec<String>) -> Result<()> {
    let got = try_map(s, Prot::PROT_READ, sharing, 0);
    log.push(format!("control mmap(PROT_READ, MAP_{sharing:?}): {got}"));
    if got != "0" {
        return Err(unsupported(format!(
            "control mmap(PROT_READ, MAP_{sharing:?}) of a connected TCP socket gave {got}: \
             the kernel maps no TCP socket, so a refusal proves nothing"
        )));
    }
    Ok(())
}

fn udp_refused(ctx: &mut Ctx) -> Result<Verdict> {
    let ns = harness::NetNs::new("udp")?;
    let udp = sockets::socket_in(&ns, Family::V4, Proto::Udp)?;
    // The control: the same mmap of a connected TCP socket is accepted.
    let (_net, conn) = connected()?;
    let mut log = Vec::new();
    map_control(&conn.receiver, Sharing::Shared, &mut log)?;
    let got = try_map(&udp, Prot::PROT_READ, Sharing::Shared, 0);
    expect(got.starts_with("ENODEV"), || {
        format!("mmap(PROT_READ, MAP_SHARED) of a UDP socket gave {got}, not ENODEV")
    })?;
    let unix = ns.run(|| Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None))??;
    ctx.observe(
        "unix_stream_mmap",
        try_map(&unix, Prot::PROT_READ, Sharing::Shared, 0),
    );
    let zc_on_udp = ZcCall::new(0, 0).call(udp.as_fd(), struct_len());
    ctx.observe(
        "tcp_zerocopy_receive_on_udp",
        zc_on_udp
            .as_ref()
            .map(|_| "0".to_string())
            .unwrap_or_else(io_errno),
    );
    Ok(Verdict::pass("mmap of a UDP socket refused with ENODEV"))
}

fn listener(ctx: &mut Ctx) -> Result<Verdict> {
    let net = RxNet::new(Path::Loopback)?;
    let l = net.listener(Family::V4, None)?;
    let mapped = SocketMapping::new(l.as_fd(), LEN, Prot::PROT_READ, Sharing::Shared, 0);
    ctx.observe(
        "mmap_of_listener",
        mapped
            .as_ref()
            .map(|_| "0".to_string())
            .unwrap_or_else(io_errno),
    );
    // The address does not matter to a listener once it is aligned: use its own mapping when
    // the kernel gave one, else page 0.
    let base = mapped.as_ref().map(|m| m.addr()).unwrap_or(0);
    let page = harness::sys::socket_mmap::page_size() as u32;
    let mut log = Vec::new();
    for misalignment in [0u64, 1, 2048] {
        let r = ZcCall::new(base + misalignment, page).call(l.as_fd(), struct_len());
        let call = Call {
            page,
            misalignment,
            region: Region::Elsewhere,
            requested: page,
            copybuf: CopyBuf::NONE,
            listening: true,
            inq: 0,
            fin: false,
        };
        let shown = super::fixture::show(&r);
        log.push(format!("address base+{misalignment}: {shown}"));
        check(&call, &super::fixture::answer(&r, false))
            .map_err(|v| fail_with(v.to_string(), log.join("\n")))?;
    }
    // The control: the same aligned call on a connected socket, on its own mapping, is
    // accepted; only the listening state differs.
    let conn = net.connect(Family::V4, ConnOpts::default())?;
    let m = SocketMapping::new(
        conn.receiver.as_fd(),
        LEN,
        Prot::PROT_READ,
        Sharing::Shared,
        0,
    )
    .map_err(|e| {
        unsupported(format!(
            "control mmap of a connected socket: {}",
            io_errno(&e)
        ))
    })?;
    let r = ZcCall::new(m.addr(), page).call(conn.receiver.as_fd(), struct_len());
    log.push(format!(
        "control, connected socket, its mapping: {}",
        super::fixture::show(&r)
    ));
    if let Err(e) = &r {
        return Err(unsupported(format!(
            "control call on a connected socket with an aligned address gave {}: the \
             listener's refusals prove nothing",
            io_errno(e)
        )));
    }
    ctx.observe("calls", &log);
    Ok(Verdict::pass(
        "listener: EINVAL for misaligned addresses, ENOTCONN for an aligned one",
    ))
}
