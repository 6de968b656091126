//! `--shard I/N`: one of N disjoint slices of the fleet, so that a fleet larger than one
//! controller can handle is run as N jobs by an existing scheduler (README, "Past one
//! controller").
//!
//! The slice depends only on the host names: shard I takes the hosts at positions I-1, I-1+N,
//! I-1+2N, ... of the inventory's host names sorted (byte order). Every job that reads the same
//! inventory agrees on it without talking to the others, and the N shards cover every host exactly
//! once. `--limit` then narrows the slice further, it does not move hosts between shards.

use std::fmt;
use std::str::FromStr;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    index: usize,
    count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("expected I/N (shard I of N, e.g. 2/4), not {s:?}"))?;
        let number = |text: &str, what: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| format!("{what} in {s:?} is not a whole number"))
        };
        let (index, count) = (number(i, "I")?, number(n, "N")?);
        if count == 0 {
            return Err(format!(
                "N in {s:?} must be at least 1 (the number of shards)"
            ));
        }
        if index == 0 || index > count {
            return Err(format!(
                "I in {s:?} must be between 1 and N = {count} (shards are numbered from 1)"
            ));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Of `names` (in any order), the ones in this shard, in the order given.
    #[must_use]
    pub(crate) fn select<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mine: Vec<&str> = sorted
            .into_iter()
            .skip(self.index - 1)
            .step_by(self.count)
            .collect();
        names
            .iter()
            .copied()
            .filter(|name| mine.binary_search(name).is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    fn shard(s: &str) -> Shard {
        s.parse().unwrap()
    }

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!(shard("2/4"), Shard { index: 2, count: 4 });
        assert_eq!(shard("1/1").to_string(), "1/1");
        for (bad, says) in [
            ("5/4", "between 1 and N = 4"),
            ("0/4", "between 1 and N = 4"),
            ("1/0", "must be at least 1"),
            ("0/0", "must be at least 1"),
            ("2", "expected I/N"),
            ("a/4", "I in \"a/4\" is not a whole number"),
            ("1/-3", "N in \"1/-3\" is not a whole number"),
        ] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn shards_cover_every_host_once_by_sorted_position() {
        // As written (servers first), not sorted: positions are taken in the sorted order.
        let names = ["ntp-b", "ntp-a", "web-3", "db-1", "web-1", "web-2", "db-2"];
        // sorted: db-1 db-2 ntp-a ntp-b web-1 web-2 web-3
        assert_eq!(shard("1/3").select(&names), ["ntp-b", "web-3", "db-1"]);
        assert_eq!(shard("2/3").select(&names), ["web-1", "db-2"]);
        assert_eq!(shard("3/3").select(&names), ["ntp-a", "web-2"]);
        for n in 1..=9 {
            let mut all: Vec<&str> = (1..=n)
                .flat_map(|i| shard(&format!("{i}/{n}")).select(&names))
                .collect();
            all.sort_unstable();
            let mut expected = names.to_vec();
            expected.sort_unstable();
            assert_eq!(all, expected, "{n} shards");
        }
        assert!(shard("9/9").select(&names).is_empty());
    }
}
