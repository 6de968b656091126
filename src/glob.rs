//! Shell-style wildcards (`*`, `?`), as OpenSSH host patterns and `--limit` use them, and
//! `--limit`'s selection (`!pattern` excludes).

/// Does `text` match `pattern`, where `*` matches any run of characters and `?` any one?
/// (`wildmatch` does the matching: the same two wildcards, no classes or escapes, which is what
/// OpenSSH's `Host` patterns and `known_hosts` use.)
#[must_use]
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(text)
}

/// A `--limit` selection: comma-separated patterns, `!pattern` excludes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limit {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Limit {
    #[must_use]
    pub(crate) fn new(patterns: &[String]) -> Limit {
        let mut limit = Limit::default();
        for pattern in patterns
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match pattern.strip_prefix('!') {
                Some(excluded) => limit.exclude.push(excluded.to_owned()),
                None => limit.include.push(pattern.to_owned()),
            }
        }
        limit
    }

    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The patterns that select none of `names`: typos, most likely (an exclusion that matches
    /// nothing is harmless and not listed).
    #[must_use]
    pub(crate) fn unmatched(&self, names: &[&str]) -> Vec<&str> {
        self.include
            .iter()
            .filter(|pattern| !names.iter().any(|name| wildcard_match(pattern, name)))
            .map(String::as_str)
            .collect()
    }

    #[must_use]
    pub(crate) fn selects(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| wildcard_match(p, name)))
            && !self.exclude.iter().any(|p| wildcard_match(p, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("10.0.?.1", "10.0.5.1"));
        assert!(!wildcard_match("10.0.?.1", "10.0.55.1"));
        assert!(wildcard_match("z-*-1", "z-b-data-1"));
        assert!(!wildcard_match("z-*-1", "z-b-data-2"));
    }

    #[test]
    fn limits() {
        let limit = Limit::new(&["z-b-*,zcloud".into(), "!z-b-data-2".into()]);
        assert!(limit.selects("z-b-data-1"));
        assert!(limit.selects("zcloud"));
        assert!(!limit.selects("z-b-data-2"));
        assert!(!limit.selects("other"));
        assert!(Limit::new(&[]).selects("x"));
        let names = ["zcloud", "z-b-data-1"];
        assert_eq!(
            Limit::new(&["z-b-dat-1,z*,!nothing".into()]).unmatched(&names),
            ["z-b-dat-1"]
        );
    }
}
