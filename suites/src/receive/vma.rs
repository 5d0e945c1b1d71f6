//! Which kinds of memory the call accepts as its target (SEMANTICS.md §7.4 step 6): with data
//! queued, an address outside every TCP socket mapping (heap, stack, program text, a guard
//! page, page 0, beyond user space) is refused with EINVAL, the socket's own mapping is used,
//! and what happens with other socket mappings (another connection's, an unconnected or a
//! listening socket's, the own socket's MAP_PRIVATE one) is recorded: the kernel checks only
//! the VMA's type, so on 6.18 they are all used.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use anyhow::Result;
use harness::sockets::{self, Family, Proto};
use harness::sys::socket_mmap::{self, Sharing, SocketMapping};
use harness::sys::tcp_zc_receive::ZcCall;

use super::fixture::{answer, show, Queued, Spec};
use super::net::ConnOpts;
use super::probes::struct_len;
use crate::case::{Area, Case, Ctx};
use crate::model::zc_receive::{check, Call, CopyBuf, Region, Seen};
use crate::outcome::{fail_with, Verdict};

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "receive.vma.kinds",
        Area::Receive,
        "with data queued, only TCP socket mappings are used as targets; others give EINVAL",
        super::net::Path::Loopback.requires(),
        kinds,
    )]
}

/// A page-aligned address inside this stack frame (never a socket mapping).
#[inline(never)]
fn stack_page() -> u64 {
    let probe = [0u8; 3 * 4096];
    let a = std::hint::black_box(probe.as_ptr()) as u64;
    a.next_multiple_of(4096)
}

fn kinds(ctx: &mut Ctx) -> Result<Verdict> {
    let page = socket_mmap::page_size();
    let mut q = Queued::new(Spec::mappable(16 * page))?;
    let own = q.map(4)?;
    let heap = vec![0u8; 3 * page];
    let heap_page = (heap.as_ptr() as u64).next_multiple_of(page as u64);
    let code_page = (kinds as fn(&mut Ctx) -> Result<Verdict> as usize as u64) & !(page as u64 - 1);

    let refused: Vec<(&str, u64)> = vec![
        ("heap", heap_page),
        ("stack", stack_page()),
        ("program_text", code_page),
        ("guard_page_below", own.guard_below()),
        ("guard_page_above", own.guard_above()),
        ("page_zero", 0),
        ("beyond_user_space", 1 << 47),
        ("top_bit", 1 << 63),
    ];
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut log = Vec::new();
    for (name, addr) in &refused {
        one(
            &mut q,
            name,
            *addr,
            Region::Elsewhere,
            None,
            &mut seen,
            &mut log,
        )?;
    }

    // Other socket mappings: each is a TCP VMA the kernel may use.
    let other = q.net.connect(Family::V4, ConnOpts::default())?;
    let other_map = map_of(&other.receiver, Sharing::Shared)?;
    let unconnected = sockets::socket_in(q.net.receiver_ns(), Family::V4, Proto::Tcp)?;
    let unconnected_map = map_of(&unconnected, Sharing::Shared)?;
    let listener = q.net.listener(Family::V4, None)?;
    let listener_map = map_of(&listener, Sharing::Shared)?;
    let private_map = map_of(&q.receiver, Sharing::Private)?;
    let foreign: Vec<(&str, &SocketMapping)> = vec![
        ("another_connection", &other_map),
        ("unconnected_socket", &unconnected_map),
        ("listening_socket", &listener_map),
        ("own_socket_map_private", &private_map),
    ];
    for (name, m) in &foreign {
        let room = m.len() as u64;
        one(
            &mut q,
            name,
            m.addr(),
            Region::Foreign { room },
            Some(m),
            &mut seen,
            &mut log,
        )?;
    }
    one(
        &mut q,
        "own_socket_map_shared",
        own.addr(),
        Region::Own {
            room: own.len() as u64,
        },
        Some(&own),
        &mut seen,
        &mut log,
    )?;
    drop(heap);
    ctx.observe("targets", &seen);
    let used: Vec<&str> = foreign
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| seen.get(*n).is_some_and(|v| v.starts_with("mapped")))
        .collect();
    Ok(Verdict::pass(format!(
        "{} non-socket targets refused with EINVAL, own mapping used; other socket mappings used: {}",
        refused.len(),
        if used.is_empty() {
            "none".to_string()
        } else {
            used.join(", ")
        }
    )))
}

fn map_of(s: &socket2::Socket, sharing: Sharing) -> Result<SocketMapping> {
    Ok(SocketMapping::readable(
        s.as_fd(),
        4 * socket_mmap::page_size(),
        sharing,
    )?)
}

/// One call of one page at `addr`; checks it, takes what it mapped, records what it saw.
fn one(
    q: &mut Queued,
    name: &str,
    addr: u64,
    region: Region,
    map: Option<&SocketMapping>,
    seen: &mut BTreeMap<String, String>,
    log: &mut Vec<String>,
) -> Result<()> {
    let page = socket_mmap::page_size() as u32;
    let inq = q.inq()?;
    let optlen = struct_len();
    let r = ZcCall::new(addr, page).call(q.receiver.as_fd(), optlen);
    log.push(format!("{name} ({addr:#x}), {inq} queued: {}", show(&r)));
    let call = Call {
        page,
        misalignment: addr % page as u64,
        region,
        requested: page,
        copybuf: CopyBuf::NONE,
        listening: false,
        inq,
        fin: false,
    };
    let verdict = check(&call, &answer(&r, optlen >= 20))
        .map_err(|v| fail_with(format!("target {name}: {v}"), log.join("\n")))?;
    let length = r.as_ref().map(|x| x.fields.length).unwrap_or(0);
    let skip = r.as_ref().map(|x| x.fields.recv_skip_hint).unwrap_or(0);
    if length > 0 {
        let m = map.expect("only socket mappings can be mapped into");
        q.take_mapped(m, 0, length)?;
    }
    if skip > 0 {
        q.take_recv(skip as usize)?;
    }
    seen.insert(
        name.to_string(),
        match verdict {
            Seen::Refused | Seen::ForeignRefused => show(&r),
            _ => format!("mapped {length}, skip {skip}"),
        },
    );
    Ok(())
}
