//! Quoting for POSIX shell command lines sent to hosts.

/// `text` as one single-quoted shell word: nothing inside is interpreted by the shell.
#[must_use]
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_everything() {
        assert_eq!(
            quote("/etc/chrony/chrony.conf"),
            "'/etc/chrony/chrony.conf'"
        );
        assert_eq!(quote("it's $(x)"), r"'it'\''s $(x)'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote("a'b\n$(echo no)`x`\"")))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "a'b\n$(echo no)`x`\""
        );
    }
}
