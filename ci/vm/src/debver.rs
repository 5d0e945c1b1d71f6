//! Debian version ordering (deb-version(7)), to pick the newest kernel of a line across
//! suites: `7.3.4-1~bpo13+1` is newer than `7.3~rc7-1~exp1`, and `6.1.192-2` than `6.1.90-1`.

use std::cmp::Ordering;

/// Compares two Debian versions `[epoch:]upstream[-revision]`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

/// dpkg's verrevcmp: alternate non-digit and digit runs; in non-digit runs `~` sorts before
/// everything (even the end), letters before other characters.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        let (na, ra) = take_while(a, |c| !c.is_ascii_digit());
        let (nb, rb) = take_while(b, |c| !c.is_ascii_digit());
        let ord = compare_lexical(na, nb);
        if ord != Ordering::Equal {
            return ord;
        }
        let (da, ra) = take_while(ra, |c| c.is_ascii_digit());
        let (db, rb) = take_while(rb, |c| c.is_ascii_digit());
        let ord = compare_digits(da, db);
        if ord != Ordering::Equal {
            return ord;
        }
        a = ra;
        b = rb;
    }
    Ordering::Equal
}

fn take_while(s: &[u8], f: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|&&c| f(c)).count();
    s.split_at(n)
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_lexical(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let ord = order(a.get(i).copied()).cmp(&order(b.get(i).copied()));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let trim = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|&c| c == b'0').collect() };
    let (a, b) = (trim(a), trim(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering::*;

    use rstest::rstest;

    use super::compare;

    #[rstest]
    #[case("7.3.4-1~bpo13+1", "7.3~rc7-1~exp1", Greater)]
    #[case("6.1.192-2", "6.1.90-1", Greater)]
    #[case("5.10.262-1", "5.10.262-1", Equal)]
    #[case("1.0~rc1", "1.0", Less)]
    #[case("1.0", "1.0+b1", Less)]
    #[case("1:0.9", "2.0", Greater)]
    #[case("7.2.13-1", "7.2.12-1~bpo13+1", Greater)]
    #[case("6.12.118-1", "6.12.118-1~deb12u1", Greater)]
    #[case("1.0a", "1.0", Greater)]
    #[case("1.0-1", "1.0-01", Equal)]
    fn orders_like_dpkg(#[case] a: &str, #[case] b: &str, #[case] want: std::cmp::Ordering) {
        assert_eq!(compare(a, b), want, "{a} vs {b}");
        assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
    }
}
