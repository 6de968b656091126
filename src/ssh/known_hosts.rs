//! OpenSSH `known_hosts` files: checking a host's key and recording a first-seen one.
//!
//! russh ships a checker, but it matches exact and hashed names only, splits on single spaces,
//! ignores `@revoked` and miscounts line numbers after comments; users' files have all of those,
//! so this module reads the format as OpenSSH's sshd(8) "`SSH_KNOWN_HOSTS` FILE FORMAT" defines it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use russh::keys::PublicKey;

use crate::glob::wildcard_match;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: String,
    key: PublicKey,
}

/// What a `known_hosts` file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// No key of this type is on record for the host.
    Unknown,
    /// A different key of the same type is on record, at this line.
    Changed {
        line: usize,
    },
    /// The key is marked `@revoked`, at this line.
    Revoked {
        line: usize,
    },
}

/// A parsed `known_hosts` file. Lines that cannot be parsed are skipped, as OpenSSH does.
#[derive(Debug)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Mutex<Vec<Entry>>,
}

impl KnownHosts {
    /// Read `path`; a missing file is an empty one.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(path: &Path) -> std::io::Result<KnownHosts> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(KnownHosts {
            path: path.to_owned(),
            entries: Mutex::new(parse(&text)),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Check `key` for `host` (an address or name as connected to) on `port`.
    ///
    /// # Panics
    /// Only if another thread panicked while holding the entries.
    #[must_use]
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = host_port(host, port);
        let entries = self.entries.lock().expect("known_hosts lock");
        let matching = entries.iter().filter(|e| host_matches(&e.hosts, &name));
        let mut changed = None;
        let mut trusted = false;
        for entry in matching {
            let same_key = entry.key.key_data() == key.key_data();
            match entry.marker {
                Marker::Revoked if same_key => return Verdict::Revoked { line: entry.line },
                Marker::None if same_key => trusted = true,
                Marker::None if entry.key.algorithm() == key.algorithm() => {
                    changed.get_or_insert(entry.line);
                }
                _ => {}
            }
        }
        match (trusted, changed) {
            (true, _) => Verdict::Trusted,
            (false, Some(line)) => Verdict::Changed { line },
            (false, None) => Verdict::Unknown,
        }
    }

    /// Append `host`'s key to the file (creating it and its directory if needed).
    ///
    /// # Errors
    /// The file cannot be written.
    ///
    /// # Panics
    /// Only if another thread panicked while holding the entries.
    pub fn learn(&self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
        let mut entries = self.entries.lock().expect("known_hosts lock");
        let name = host_port(host, port);
        let openssh = key.to_openssh().map_err(std::io::Error::other)?;
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let existing = std::fs::read(&self.path).unwrap_or_default();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = String::new();
        if !existing.is_empty() && !existing.ends_with(b"\n") {
            line.push('\n');
        }
        let _ = writeln!(line, "{name} {openssh}");
        file.write_all(line.as_bytes())?;
        file.sync_all()?;
        // The new entry's line: the lines already there (a missing final newline was just added) + 1.
        let line_no = String::from_utf8_lossy(&existing).lines().count() + 1;
        entries.push(Entry {
            line: line_no,
            marker: Marker::None,
            hosts: name,
            key: key.clone(),
        });
        Ok(())
    }
}

/// The name OpenSSH records: `host` on port 22, `[host]:port` otherwise.
fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let mut fields = raw.split_whitespace().peekable();
        let marker = match fields.peek().copied() {
            None => continue,
            Some(first) if first.starts_with('#') => continue,
            Some("@revoked") => Marker::Revoked,
            Some("@cert-authority") => Marker::CertAuthority,
            Some(_) => Marker::None,
        };
        if marker != Marker::None {
            fields.next();
        }
        let (Some(hosts), Some(_key_type), Some(key_base64)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(key) = russh::keys::parse_public_key_base64(key_base64) else {
            continue;
        };
        entries.push(Entry {
            line: index + 1,
            marker,
            hosts: hosts.to_owned(),
            key,
        });
    }
    entries
}

/// Does the comma-separated pattern list (or hashed name) cover `name`?
fn host_matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(&negated.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
                return false;
            }
        } else if wildcard_match(&pattern.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
            matched = true;
        }
    }
    matched
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt), BASE64.decode(hash)) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    fn file(text: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).unwrap();
        let known = KnownHosts::load(&path).unwrap();
        (dir, known)
    }

    #[test]
    fn exact_wildcard_negated_and_port_forms() {
        let text = format!(
            "# a comment\n\n10.0.0.1  ssh-ed25519\t{KEY_A} root@x\n*.lab,!bad.lab ssh-ed25519 {KEY_A}\n[10.0.0.2]:2222 ssh-ed25519 {KEY_A}\n"
        );
        let (_d, known) = file(&text);
        assert_eq!(known.check("10.0.0.1", 22, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(known.check("node.lab", 22, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(known.check("bad.lab", 22, &key(KEY_A)), Verdict::Unknown);
        assert_eq!(known.check("10.0.0.2", 2222, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(known.check("10.0.0.2", 22, &key(KEY_A)), Verdict::Unknown);
        // Line numbers count comments and blank lines, as an editor shows them.
        assert_eq!(
            known.check("10.0.0.1", 22, &key(KEY_B)),
            Verdict::Changed { line: 3 }
        );
    }

    #[test]
    fn hashed_names_and_revoked_keys() {
        // `ssh-keygen -H` form of "localhost".
        let text = format!(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= ssh-ed25519 {KEY_B}\n@revoked * ssh-ed25519 {KEY_A}\n"
        );
        let (_d, known) = file(&text);
        assert_eq!(
            known.check("example.com", 22, &key(KEY_B)),
            Verdict::Trusted
        );
        assert_eq!(known.check("other", 22, &key(KEY_B)), Verdict::Unknown);
        assert_eq!(
            known.check("other", 22, &key(KEY_A)),
            Verdict::Revoked { line: 2 }
        );
    }

    #[test]
    fn learning_appends_and_is_then_trusted() {
        let (dir, known) = file("10.0.0.9 ssh-ed25519 AAAA-not-base64");
        known.learn("10.0.0.1", 2222, &key(KEY_A)).unwrap();
        assert_eq!(known.check("10.0.0.1", 2222, &key(KEY_A)), Verdict::Trusted);
        let text = std::fs::read_to_string(dir.path().join("known_hosts")).unwrap();
        assert_eq!(
            text,
            format!("10.0.0.9 ssh-ed25519 AAAA-not-base64\n[10.0.0.1]:2222 ssh-ed25519 {KEY_A}\n")
        );
        let again = KnownHosts::load(&dir.path().join("known_hosts")).unwrap();
        assert_eq!(
            again.check("10.0.0.1", 2222, &key(KEY_B)),
            Verdict::Changed { line: 2 }
        );
    }
}
