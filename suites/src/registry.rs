//! Every case of the suite, in a stable order. Ids are unique and stable: they are the rows
//! of the compatibility matrix.

use crate::case::{Area, Case};

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(crate::send::cases());
    cases.extend(crate::receive::cases());
    cases.extend(crate::uring::cases());
    cases.extend(crate::devmem::cases());
    cases.extend(crate::zcrx::cases());
    cases.extend(crate::selftest::cases());
    cases
}

/// The cases a filter list selects. A pattern selects a case when it is the case's area, its
/// id, a dot-separated prefix of its id (`send.counter`), or a glob with `*`. Selftest cases
/// run only when a pattern names them. A pattern that selects nothing is an error.
pub fn select(all: Vec<Case>, filters: &[String]) -> anyhow::Result<Vec<Case>> {
    if filters.is_empty() {
        return Ok(all
            .into_iter()
            .filter(|c| c.area != Area::Selftest)
            .collect());
    }
    for f in filters {
        if !all.iter().any(|c| matches(f, c)) {
            let areas: Vec<&str> = Area::ALL.iter().map(|a| a.name()).collect();
            anyhow::bail!(
                "unknown filter '{f}': it matches no case id or area (areas: {}; \
                 `zccheck list` shows the ids)",
                areas.join(", ")
            );
        }
    }
    Ok(all
        .into_iter()
        .filter(|c| filters.iter().any(|f| matches(f, c)))
        .collect())
}

fn matches(pattern: &str, case: &Case) -> bool {
    if case.area == Area::Selftest && !pattern.starts_with("selftest") {
        return false;
    }
    if pattern.contains('*') {
        return glob(pattern, &case.id);
    }
    pattern == case.area.name()
        || pattern == case.id
        || case
            .id
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// `*` matches any run of characters, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rstest::rstest;

    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let all = all();
        let mut seen = HashSet::new();
        for c in &all {
            assert!(seen.insert(c.id.clone()), "duplicate case id {}", c.id);
            assert!(
                c.id.starts_with(&format!("{}.", c.area)),
                "{} not in its area",
                c.id
            );
            assert!(
                c.id.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)),
                "id {} has characters outside [a-z0-9._-]",
                c.id
            );
        }
    }

    #[rstest]
    #[case("send.*", "send.counter.tcp4.lo", true)]
    #[case("*.tcp4.*", "send.counter.tcp4.lo", true)]
    #[case("*.udp6.*", "send.counter.tcp4.lo", false)]
    #[case("send*lo", "send.counter.tcp4.lo", true)]
    #[case("send*pair", "send.counter.tcp4.lo", false)]
    #[case("a*a", "a", false)]
    fn globs(#[case] p: &str, #[case] t: &str, #[case] want: bool) {
        assert_eq!(glob(p, t), want);
    }

    #[test]
    fn unknown_filter_is_an_error() {
        let err = select(all(), &["nosuchthing".into()]).unwrap_err();
        assert!(
            err.to_string().contains("unknown filter 'nosuchthing'"),
            "{err}"
        );
    }

    #[test]
    fn prefixes_stop_at_dots() {
        let all = all();
        let by_area = select(all.clone(), &["send".into()]).unwrap();
        assert!(!by_area.is_empty());
        assert!(by_area.iter().all(|c| c.area == Area::Send));
        assert!(select(all, &["sen".into()]).is_err());
    }

    #[test]
    fn selftests_only_when_named() {
        let default = select(all(), &[]).unwrap();
        assert!(default.iter().all(|c| c.area != Area::Selftest));
        let star = select(all(), &["*".into()]).unwrap();
        assert!(star.iter().all(|c| c.area != Area::Selftest));
        let named = select(all(), &["selftest".into()]).unwrap();
        assert!(!named.is_empty());
    }
}
