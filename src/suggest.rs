//! "Did you mean ...?": the closest valid name to a mistyped one.

/// The candidate closest to `word` by edit distance (Damerau-Levenshtein: a swapped pair of
/// letters counts once), when it is close enough to be a typo: at most a third of the longer
/// word's letters differ (at least one). Ties go to the earlier candidate.
#[must_use]
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .filter(|candidate| *candidate != word)
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), candidate))
        .filter(|(distance, candidate)| {
            let longer = word.chars().count().max(candidate.chars().count());
            *distance <= (longer / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `"; did you mean `x`?"` for the closest candidate, or nothing.
#[must_use]
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates).map_or_else(String::new, |c| format!("; did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_word() {
        let fields = ["user", "host", "port", "identity_file", "known_hosts"];
        assert_eq!(closest("identiy_file", fields), Some("identity_file"));
        assert_eq!(closest("prot", fields), Some("port"), "a swap counts once");
        assert_eq!(closest("zclod", ["zcloud", "z-b-data-1"]), Some("zcloud"));
        assert_eq!(
            closest("z-b-dat-1", ["zcloud", "z-b-data-1", "z-b-data-2"]),
            Some("z-b-data-1")
        );
    }

    #[test]
    fn unrelated_words_find_nothing() {
        assert_eq!(closest("bastion", ["zcloud", "z-b-data-1"]), None);
        assert_eq!(closest("x", ["user", "host"]), None);
        assert_eq!(did_you_mean("nothing", ["zcloud"]), "");
    }
}
