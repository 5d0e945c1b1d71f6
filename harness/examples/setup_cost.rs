//! What a case pays before it tests anything: namespaces, topologies, the sysctl journal.
//! Run as root: `cargo run -p zccheck-harness --example setup_cost` (each figure is the mean
//! of several builds, including the drop).

use std::time::Instant;

use harness::topology::{DeadEnd, Exit, Forward, Loopback, Pair, PairConfig};
use harness::NetNs;

fn mean<T>(what: &str, n: u32, f: impl Fn() -> T) {
    let start = Instant::now();
    for _ in 0..n {
        drop(f());
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
    println!("{what:<28} {ms:>7.2} ms");
}

fn main() -> anyhow::Result<()> {
    let ns = NetNs::new("probe")?;
    mean("NetNs::run (no-op)", 100, || ns.run(|| ()).unwrap());
    mean("netlink link lookup", 100, || {
        harness::netlink::link_index(&ns, "lo").unwrap()
    });
    mean("sysctl::recover", 20, || {
        harness::sysctl::recover().unwrap()
    });
    mean("NetNs::new", 10, || NetNs::new("x").unwrap());
    mean("Loopback", 10, || Loopback::new(None).unwrap());
    mean("Pair", 10, || Pair::new(PairConfig::default()).unwrap());
    mean("DeadEnd", 10, || DeadEnd::new().unwrap());
    mean("Forward", 10, || Forward::new(Exit::Delivered).unwrap());
    Ok(())
}
