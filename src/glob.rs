//! Shell-style wildcards (`*`, `?`), as OpenSSH host patterns and `--limit` use them.

/// Does `text` match `pattern`, where `*` matches any run of characters and `?` any one?
#[must_use]
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `--limit` selection: comma-separated patterns, `!pattern` excludes.
#[derive(Debug, Clone, Default)]
pub struct Limit {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Limit {
    #[must_use]
    pub fn new(patterns: &[String]) -> Limit {
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
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The patterns that select none of `names`: typos, most likely (an exclusion that matches
    /// nothing is harmless and not listed).
    #[must_use]
    pub fn unmatched(&self, names: &[&str]) -> Vec<&str> {
        self.include
            .iter()
            .filter(|pattern| !names.iter().any(|name| wildcard_match(pattern, name)))
            .map(String::as_str)
            .collect()
    }

    #[must_use]
    pub fn selects(&self, name: &str) -> bool {
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
