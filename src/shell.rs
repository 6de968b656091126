//! `ShellWord`: a value that is safe as one word of a POSIX shell command line.
//!
//! Everything a remote script or command line gets from the inventory or from a host goes
//! through this type, so that "quoted" and "not yet quoted" are different types: a `&str` is
//! never spliced into shell text, a `ShellWord` always can be.

use std::fmt;
use std::fmt::Write as _;

/// `bytes` random bytes as lowercase hex: a marker a host cannot guess, so that nothing else it
/// prints can pass for it (sudo's prompt and ready markers, the facts' held marker).
///
/// # Panics
/// If the system's random number generator fails: that is not something to carry on from.
#[must_use]
pub fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random number generator works");
    buf.iter()
        .fold(String::with_capacity(2 * bytes), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// One single-quoted shell word: nothing inside it is interpreted by the shell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShellWord {
    /// The quoted form, ready to be spliced into shell text.
    quoted: String,
}

/// A value that cannot be passed to a shell as one word.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{what} contains a NUL byte, which no shell word can hold")]
pub struct ShellWordError {
    what: String,
}

impl ShellWord {
    /// `text` as one word. Every byte but NUL survives: quotes, `$`, backquotes, newlines.
    ///
    /// # Errors
    /// `text` contains a NUL byte (the shell would cut the word there).
    pub fn new(text: &str) -> Result<ShellWord, ShellWordError> {
        if text.contains('\0') {
            return Err(ShellWordError {
                what: format!("{:?}", text.replace('\0', "\\0")),
            });
        }
        let mut quoted = String::with_capacity(text.len() + 2);
        quoted.push('\'');
        for c in text.chars() {
            if c == '\'' {
                quoted.push_str("'\\''");
            } else {
                quoted.push(c);
            }
        }
        quoted.push('\'');
        Ok(ShellWord { quoted })
    }

    /// A number as one word (a number never needs checking).
    #[must_use]
    pub fn number(n: u64) -> ShellWord {
        ShellWord {
            quoted: format!("'{n}'"),
        }
    }

    /// The quoted form, as it goes into shell text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.quoted
    }
}

impl fmt::Display for ShellWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted)
    }
}

#[cfg(test)]
mod tests {
    use super::ShellWord;
    use proptest::prelude::*;

    fn word(text: &str) -> String {
        ShellWord::new(text).unwrap().to_string()
    }

    /// What `sh` makes of `printf %s WORD`.
    fn through_sh(words: &str) -> Vec<u8> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s|' {words}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    }

    #[test]
    fn quotes_everything() {
        assert_eq!(word("/etc/chrony/chrony.conf"), "'/etc/chrony/chrony.conf'");
        assert_eq!(word("it's $(x)"), r"'it'\''s $(x)'");
        assert_eq!(word(""), "''");
        assert_eq!(ShellWord::number(1_048_576).as_str(), "'1048576'");
        assert_eq!(
            through_sh(&word("a'b\n$(echo no)`x`\"")),
            b"a'b\n$(echo no)`x`\"|"
        );
    }

    #[test]
    fn a_nul_byte_is_refused() {
        let error = ShellWord::new("a\0b").unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any text without NUL comes out of the shell exactly as it went in, as one word.
        #[test]
        fn any_text_survives_the_shell(a in "[^\0]*", b in "[^\0]*") {
            let both = format!("{} {}", word(&a), word(&b));
            prop_assert_eq!(through_sh(&both), format!("{a}|{b}|").into_bytes());
        }
    }
}
