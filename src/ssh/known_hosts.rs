//! OpenSSH `known_hosts` files: checking a host's key and recording a first-seen one.
//!
//! russh ships a checker, but it matches exact and hashed names only, splits on single spaces,
//! ignores `@revoked` and miscounts line numbers after comments; users' files have all of those,
//! so this module reads the format as OpenSSH's sshd(8) "`SSH_KNOWN_HOSTS` FILE FORMAT" defines it.
//!
//! A host is judged against every file that applies to it ([`KnownHosts`]: the user files, then
//! the global ones), as OpenSSH does: a host with any key on record, of any type, in any of them
//! is known, and a key it offers that is not on record is a changed key, never a new one
//! (otherwise an attacker offering another key type would be "new" to `accept-new`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use russh::keys::{Algorithm, HashAlg, PublicKey};

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
    hosts: HostField,
    /// The key type as the line writes it (`ssh-ed25519`).
    key_type: String,
    /// `None` for a well-formed key of a type this build cannot parse: still a key on record.
    key: Option<PublicKey>,
}

/// An entry's host field, compiled once when the file is read. A check runs per connection and
/// a fleet's file has a line per host, so what can be done once per line is not done per check:
/// lower-casing and compiling patterns, decoding a hashed name and keying its HMAC. (Done per
/// check, 1,000 checks against 1,000 lines cost 0.15 ms each with plain names and 0.95 ms with
/// hashed ones, OpenSSH's default on Debian and Ubuntu.)
#[derive(Debug, Clone)]
enum HostField {
    /// `|1|SALT|HASH`: HMAC-SHA1 of the name, keyed by the salt.
    Hashed { key: ring::hmac::Key, hash: Vec<u8> },
    /// Comma-separated patterns (`*` and `?`), lower-cased; a negated one excludes.
    Patterns(Vec<HostPattern>),
    /// A hashed field that does not decode: matches no name.
    Nothing,
}

#[derive(Debug, Clone)]
struct HostPattern {
    negated: bool,
    text: String,
    /// `Some` for a pattern with a wildcard; `None` for a literal name, compared as it is.
    wildcard: Option<wildmatch::WildMatch>,
}

impl HostField {
    fn new(field: &str) -> HostField {
        if let Some(hashed) = field.strip_prefix("|1|") {
            let decoded = hashed.split_once('|').and_then(|(salt, hash)| {
                Some((BASE64.decode(salt).ok()?, BASE64.decode(hash).ok()?))
            });
            return match decoded {
                Some((salt, hash)) => HostField::Hashed {
                    key: ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt),
                    hash,
                },
                None => HostField::Nothing,
            };
        }
        HostField::Patterns(
            field
                .split(',')
                .map(|pattern| {
                    let (negated, pattern) = match pattern.strip_prefix('!') {
                        Some(negated) => (true, negated),
                        None => (false, pattern),
                    };
                    let text = pattern.to_ascii_lowercase();
                    let wildcard = text
                        .contains(['*', '?'])
                        .then(|| wildmatch::WildMatch::new(&text));
                    HostPattern {
                        negated,
                        text,
                        wildcard,
                    }
                })
                .collect(),
        )
    }

    /// Does it cover `name` (lower-cased already)? A negated pattern that matches excludes it.
    fn matches(&self, name: &str) -> bool {
        match self {
            HostField::Hashed { key, hash } => {
                ring::hmac::verify(key, name.as_bytes(), hash).is_ok()
            }
            HostField::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    let hit = match &pattern.wildcard {
                        Some(wildcard) => wildcard.matches(name),
                        None => pattern.text == name,
                    };
                    if hit && pattern.negated {
                        return false;
                    }
                    matched |= hit;
                }
                matched
            }
            HostField::Nothing => false,
        }
    }

    /// The names it can only ever cover, if that is a list: its literal, not negated patterns
    /// when it has no other kind that could match (no hashed name, no wildcard).
    fn literal_names(&self) -> Option<Vec<&str>> {
        match self {
            HostField::Patterns(patterns)
                if patterns.iter().all(|p| p.negated || p.wildcard.is_none()) =>
            {
                Some(
                    patterns
                        .iter()
                        .filter(|p| !p.negated)
                        .map(|p| p.text.as_str())
                        .collect(),
                )
            }
            HostField::Nothing => Some(Vec::new()),
            HostField::Patterns(_) | HostField::Hashed { .. } => None,
        }
    }
}

/// A file's entries, with two indexes: by key (a host offering a key on record is judged by the
/// lines holding that key alone: one line in a fleet's file, hashed or not), and by name: the
/// entries that can only cover the names they list, by those names; the others (hashed names,
/// wildcards) are tried against every name.
#[derive(Debug, Default)]
struct Entries {
    list: Vec<Entry>,
    by_key: HashMap<russh::keys::ssh_key::public::KeyData, Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
    tried_always: Vec<usize>,
}

impl Entries {
    fn push(&mut self, entry: Entry) {
        let index = self.list.len();
        if let Some(key) = &entry.key {
            self.by_key
                .entry(key.key_data().clone())
                .or_default()
                .push(index);
        }
        match entry.hosts.literal_names() {
            Some(names) => {
                for name in names {
                    self.by_name.entry(name.to_owned()).or_default().push(index);
                }
            }
            None => self.tried_always.push(index),
        }
        self.list.push(entry);
    }

    /// The entries holding `key` that cover `name` (lower-cased already), in the file's order.
    fn holding<'a>(&'a self, key: &PublicKey, name: &'a str) -> impl Iterator<Item = &'a Entry> {
        self.by_key
            .get(key.key_data())
            .into_iter()
            .flatten()
            .map(|&i| &self.list[i])
            .filter(move |e| e.hosts.matches(name))
    }

    /// The entries that cover `name` (lower-cased already), in the file's order.
    fn covering<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> {
        let mut candidates: Vec<usize> = self
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .chain(&self.tried_always)
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|i| &self.list[i])
            .filter(move |e| e.hosts.matches(name))
    }
}

/// What the files that apply to a host say about the key it offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// No key of any type is on record for the host, in any file.
    Unknown,
    /// The host has another key on record (of this type, e.g. `ssh-ecdsa-nistp256`), at this
    /// file and line: the first one found.
    Changed {
        file: PathBuf,
        line: usize,
        recorded_type: String,
    },
    /// The key is marked `@revoked`, at this file and line.
    Revoked {
        file: PathBuf,
        line: usize,
    },
}

/// One parsed `known_hosts` file. Lines that cannot be parsed are skipped, as OpenSSH does.
#[derive(Debug)]
pub struct KnownHostsFile {
    path: PathBuf,
    entries: Mutex<Entries>,
}

impl KnownHostsFile {
    /// Read `path`; a missing file is an empty one.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(path: &Path) -> std::io::Result<KnownHostsFile> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(KnownHostsFile::parse(path, &bytes))
    }

    /// `bytes` as if read from `path` (not UTF-8 is no error: such lines just match nothing).
    #[must_use]
    pub fn parse(path: &Path, bytes: &[u8]) -> KnownHostsFile {
        KnownHostsFile {
            path: path.to_owned(),
            entries: Mutex::new(parse(&String::from_utf8_lossy(bytes))),
        }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `name`'s key (`name` as [`record_name`] makes it) to the file, creating it and
    /// its directory if needed.
    fn append(&self, name: &str, key: &PublicKey) -> std::io::Result<()> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
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
            hosts: HostField::new(name),
            key_type: key.algorithm().as_str().to_owned(),
            key: Some(key.clone()),
        });
        Ok(())
    }
}

/// Every `known_hosts` file that applies to one host: the user files (`UserKnownHostsFile` or
/// the inventory's `known_hosts`; the first is where new keys are recorded), then the global
/// ones (`GlobalKnownHostsFile`, `/etc/ssh/ssh_known_hosts` by default). Files are shared
/// between hosts, so a key learned for one is seen by all.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    user: Vec<Arc<KnownHostsFile>>,
    global: Vec<Arc<KnownHostsFile>>,
}

impl KnownHosts {
    /// # Panics
    /// `user` is empty: there must be a file to record keys in.
    #[must_use]
    pub fn new(user: Vec<Arc<KnownHostsFile>>, global: Vec<Arc<KnownHostsFile>>) -> KnownHosts {
        assert!(!user.is_empty(), "a user known_hosts file");
        KnownHosts { user, global }
    }

    /// Read `path` alone (tests and single-file uses).
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(path: &Path) -> std::io::Result<KnownHosts> {
        Ok(KnownHosts::new(
            vec![Arc::new(KnownHostsFile::load(path)?)],
            Vec::new(),
        ))
    }

    /// `bytes` alone, as if read from `path` (the fuzz targets).
    #[must_use]
    pub fn parse(path: &Path, bytes: &[u8]) -> KnownHosts {
        KnownHosts::new(
            vec![Arc::new(KnownHostsFile::parse(path, bytes))],
            Vec::new(),
        )
    }

    /// The file new keys are recorded in.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.user[0].path()
    }

    /// Every file consulted, in order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.user.iter().chain(&self.global).map(|f| f.path())
    }

    /// Are these the very same files (loaded once), not copies?
    #[cfg(test)]
    pub(crate) fn shares_files_with(&self, other: &KnownHosts) -> bool {
        let same = |a: &[Arc<KnownHostsFile>], b: &[Arc<KnownHostsFile>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
        };
        same(&self.user, &other.user) && same(&self.global, &other.global)
    }

    /// The files consulted, for messages: `a, b or c`.
    #[must_use]
    pub fn describe(&self) -> String {
        let files: Vec<String> = self.files().map(|p| p.display().to_string()).collect();
        match files.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => files.concat(),
        }
    }

    /// Check `key` for `host` (an address or name as connected to) on `port`, across every file.
    #[must_use]
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = record_name(host, port);
        // The lines holding this very key decide: revoked wherever one covering the host says
        // so, whatever else says; else trusted where one does.
        let mut trusted = false;
        for file in self.files_in_order() {
            let entries = file.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in entries.holding(key, &name) {
                match entry.marker {
                    Marker::Revoked => {
                        return Verdict::Revoked {
                            file: file.path.clone(),
                            line: entry.line,
                        };
                    }
                    Marker::None => trusted = true,
                    Marker::CertAuthority => {}
                }
            }
        }
        if trusted {
            return Verdict::Trusted;
        }
        // Not on record: a host with another key on record has changed its key (the first such
        // line is named), one with none is unknown.
        for file in self.files_in_order() {
            let entries = file.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let other = entries.covering(&name).find(|entry| {
                entry.marker == Marker::None
                    && entry
                        .key
                        .as_ref()
                        .is_none_or(|k| k.key_data() != key.key_data())
            });
            if let Some(entry) = other {
                return Verdict::Changed {
                    file: file.path.clone(),
                    line: entry.line,
                    recorded_type: entry.key_type.clone(),
                };
            }
        }
        Verdict::Unknown
    }

    /// The user files, then the global ones.
    fn files_in_order(&self) -> impl Iterator<Item = &Arc<KnownHostsFile>> {
        self.user.iter().chain(&self.global)
    }

    /// Record `host`'s key in the first user file; returns that file.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn learn(&self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<&Path> {
        self.user[0].append(&record_name(host, port), key)?;
        Ok(self.path())
    }
}

/// The name OpenSSH records and matches: lowercased, `host` on port 22, `[host]:port` otherwise.
pub(crate) fn record_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `ED25519`, `ECDSA`, `RSA`: the key type as OpenSSH names it in fingerprint lines.
#[must_use]
pub fn key_type_name(key: &PublicKey) -> String {
    match key.algorithm() {
        Algorithm::Ed25519 => "ED25519".to_owned(),
        Algorithm::Ecdsa { .. } => "ECDSA".to_owned(),
        Algorithm::Rsa { .. } => "RSA".to_owned(),
        Algorithm::Dsa => "DSA".to_owned(),
        Algorithm::SkEd25519 => "ED25519-SK".to_owned(),
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK".to_owned(),
        other => other.as_str().to_ascii_uppercase(),
    }
}

/// `ED25519 key fingerprint is SHA256:...`, as OpenSSH prints it (and `ssh-keygen -lf` shows).
#[must_use]
pub fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} key fingerprint is {}",
        key_type_name(key),
        key.fingerprint(HashAlg::Sha256)
    )
}

fn parse(text: &str) -> Entries {
    let mut entries = Entries::default();
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
        let (Some(hosts), Some(key_type), Some(key_base64)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let key = match russh::keys::parse_public_key_base64(key_base64) {
            Ok(key) => Some(key),
            // A well-formed key of a type we cannot parse (a newer algorithm) is still a key
            // on record for the host: the host is not "new". Garbage is skipped, as OpenSSH does.
            Err(_) if blob_type(key_base64).as_deref() == Some(key_type) => None,
            Err(_) => continue,
        };
        entries.push(Entry {
            line: index + 1,
            marker,
            hosts: HostField::new(hosts),
            key_type: key_type.to_owned(),
            key,
        });
    }
    entries
}

/// The key type a public key blob names (its first SSH string), if it is one.
fn blob_type(key_base64: &str) -> Option<String> {
    let blob = BASE64.decode(key_base64).ok()?;
    let len = usize::try_from(u32::from_be_bytes(blob.get(..4)?.try_into().ok()?)).ok()?;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    String::from_utf8(name.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAgXAHZ+9NCrviZ/89usPr7KSbB5/Jaz1Tl6wZVPzoIhObd/s/XvRm3j9pZvxQHcl63dYZsFe+pc3KBdVToSRno=";

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

    fn changed(known: &KnownHosts, line: usize, recorded_type: &str) -> Verdict {
        Verdict::Changed {
            file: known.path().to_owned(),
            line,
            recorded_type: recorded_type.to_owned(),
        }
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
            changed(&known, 3, "ssh-ed25519")
        );
    }

    #[test]
    fn hashed_names_and_revoked_keys() {
        // `ssh-keygen -H` form of "example.com", and of "[web.example.com]:2222".
        let text = format!(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= ssh-ed25519 {KEY_B}\n@revoked * ssh-ed25519 {KEY_A}\n|1|AAECAwQFBgcICQoLDA0ODxAREhM=|pLGwP/dYcRUId+vJAZDBuklVl3o= ssh-ed25519 {KEY_B}\n"
        );
        let (_d, known) = file(&text);
        assert_eq!(
            known.check("example.com", 22, &key(KEY_B)),
            Verdict::Trusted
        );
        // Names are lowercased before hashing, as OpenSSH does.
        assert_eq!(
            known.check("Example.COM", 22, &key(KEY_B)),
            Verdict::Trusted
        );
        assert_eq!(
            known.check("WEB.example.com", 2222, &key(KEY_B)),
            Verdict::Trusted
        );
        assert_eq!(known.check("other", 22, &key(KEY_B)), Verdict::Unknown);
        assert_eq!(
            known.check("other", 22, &key(KEY_A)),
            Verdict::Revoked {
                file: known.path().to_owned(),
                line: 2
            }
        );
    }

    #[test]
    fn a_key_of_another_type_is_a_changed_key() {
        let text = format!(
            "web.lab ecdsa-sha2-nistp256 {ECDSA}\nfut.lab ssh-future AAAACnNzaC1mdXR1cmUAAAADYWJj\nfut.lab ssh-future garbage\n"
        );
        let (_d, known) = file(&text);
        assert_eq!(
            known.check("WEB.lab", 22, &key(KEY_A)),
            changed(&known, 1, "ecdsa-sha2-nistp256")
        );
        assert_eq!(known.check("web.lab", 22, &key(ECDSA)), Verdict::Trusted);
        // A well-formed key of a type this build cannot read is still a key on record; a line
        // that is not a key at all is skipped.
        assert_eq!(
            known.check("fut.lab", 22, &key(KEY_A)),
            changed(&known, 2, "ssh-future")
        );
    }

    #[test]
    fn every_file_that_applies_is_consulted_and_only_the_first_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            Arc::new(KnownHostsFile::load(&path).unwrap())
        };
        let first = write("first", String::new());
        let second = write("second", format!("a.lab ssh-ed25519 {KEY_A}\n"));
        let global = write(
            "global",
            format!(
                "# global\nb.lab ecdsa-sha2-nistp256 {ECDSA}\n@revoked * ssh-ed25519 {KEY_B}\n"
            ),
        );
        let known = KnownHosts::new(vec![first, second], vec![global]);
        assert_eq!(known.check("a.lab", 22, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(
            known.check("b.lab", 22, &key(KEY_A)),
            Verdict::Changed {
                file: dir.path().join("global"),
                line: 2,
                recorded_type: "ecdsa-sha2-nistp256".into()
            }
        );
        assert_eq!(
            known.check("c.lab", 22, &key(KEY_B)),
            Verdict::Revoked {
                file: dir.path().join("global"),
                line: 3
            }
        );
        assert_eq!(known.check("c.lab", 22, &key(KEY_A)), Verdict::Unknown);
        assert_eq!(
            known.learn("C.lab", 22, &key(KEY_A)).unwrap(),
            dir.path().join("first")
        );
        assert_eq!(known.check("c.lab", 22, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("first")).unwrap(),
            format!("c.lab ssh-ed25519 {KEY_A}\n"),
            "recorded lowercased"
        );
        assert_eq!(
            known.describe(),
            format!(
                "{}, {} or {}",
                dir.path().join("first").display(),
                dir.path().join("second").display(),
                dir.path().join("global").display()
            )
        );
    }

    #[test]
    fn fingerprints_are_openssh_s() {
        // `ssh-keygen -lf` of these keys.
        assert_eq!(
            fingerprint(&key(KEY_A)),
            "ED25519 key fingerprint is SHA256:T7SvZ2cslqpPj6nKzitCBHHlpVF3r3MvLwmFL0fk0IE"
        );
        assert_eq!(
            fingerprint(&key(ECDSA)),
            "ECDSA key fingerprint is SHA256:eVQ9uX2PFGxKwAHsPEiNn98hQ91ax4F34lNc0fFVa84"
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
            changed(&again, 2, "ssh-ed25519")
        );
    }
}

/// The index ([`Entries::covering`]) against a scan of every line, on files made of names that
/// collide, wildcards, negations, ports, hashed names and garbage.
#[cfg(test)]
mod index_properties {
    use proptest::prelude::*;

    use super::*;

    const NAMES: &[&str] = &["a", "b", "ab", "[a]:2222", "10.0.0.1", "10.0.0.12", "A"];

    fn hashed(name: &str, salt: u8) -> String {
        let salt = [salt; 20];
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
        let tag = ring::hmac::sign(&key, name.as_bytes());
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(tag.as_ref()))
    }

    fn field() -> impl Strategy<Value = String> {
        let pattern = prop_oneof![
            4 => proptest::sample::select(NAMES).prop_map(str::to_owned),
            2 => proptest::sample::select(&["*", "a*", "?", "10.0.0.?", "[a]:*", "*b"][..])
                .prop_map(str::to_owned),
            1 => "[a-b!*?.]{1,3}",
        ];
        let negatable = (any::<bool>(), pattern)
            .prop_map(|(negated, p)| if negated { format!("!{p}") } else { p });
        prop_oneof![
            5 => proptest::collection::vec(negatable, 1..4).prop_map(|p| p.join(",")),
            2 => (proptest::sample::select(NAMES), any::<u8>())
                .prop_map(|(name, salt)| hashed(&name.to_ascii_lowercase(), salt)),
            1 => Just("|1|not-base64|".to_owned()),
        ]
    }

    const KEYS: &[&str] = &[
        "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ",
        "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF",
    ];

    /// [`KnownHosts::check`] as a scan of every line of every file, in order (the rules of
    /// OpenSSH's sshd(8) as this module had them before its indexes).
    fn check_by_scan(known: &KnownHosts, name: &str, key: &PublicKey) -> Verdict {
        let mut changed = None;
        let mut trusted = false;
        for file in known.files_in_order() {
            let entries = file.entries.lock().unwrap();
            for entry in entries.list.iter().filter(|e| e.hosts.matches(name)) {
                let same_key = entry
                    .key
                    .as_ref()
                    .is_some_and(|k| k.key_data() == key.key_data());
                match entry.marker {
                    Marker::Revoked if same_key => {
                        return Verdict::Revoked {
                            file: file.path.clone(),
                            line: entry.line,
                        };
                    }
                    Marker::None if same_key => trusted = true,
                    Marker::None => {
                        changed.get_or_insert_with(|| Verdict::Changed {
                            file: file.path.clone(),
                            line: entry.line,
                            recorded_type: entry.key_type.clone(),
                        });
                    }
                    Marker::Revoked | Marker::CertAuthority => {}
                }
            }
        }
        if trusted {
            Verdict::Trusted
        } else {
            changed.unwrap_or(Verdict::Unknown)
        }
    }

    /// A line: a marker (mostly none), a host field, one of two keys (or a key type this build
    /// cannot parse).
    fn line() -> impl Strategy<Value = String> {
        let marker =
            prop_oneof![6 => Just(""), 1 => Just("@revoked "), 1 => Just("@cert-authority ")];
        let key = prop_oneof![
            3 => proptest::sample::select(KEYS).prop_map(|k| format!("ssh-ed25519 {k}")),
            1 => Just("ssh-future AAAAC3NzaC1mdXR1cmUAAAAEAAAAAA==".to_owned()),
        ];
        (marker, field(), key).prop_map(|(m, f, k)| format!("{m}{f} {k}"))
    }

    proptest! {
        #[test]
        fn the_indexes_judge_every_host_as_a_scan_of_every_line_does(
            user in proptest::collection::vec(line(), 0..10),
            global in proptest::collection::vec(line(), 0..4),
            name in proptest::sample::select(NAMES),
            offered in proptest::sample::select(KEYS),
        ) {
            let user = Arc::new(KnownHostsFile::parse(Path::new("/u"), user.join("\n").as_bytes()));
            let global = Arc::new(KnownHostsFile::parse(Path::new("/g"), global.join("\n").as_bytes()));
            let known = KnownHosts::new(vec![user], vec![global]);
            let offered = russh::keys::parse_public_key_base64(offered).unwrap();
            let name = name.to_ascii_lowercase();
            prop_assert_eq!(known.check(&name, 22, &offered), check_by_scan(&known, &name, &offered));
        }

        #[test]
        fn the_index_finds_exactly_the_lines_a_scan_finds(
            fields in proptest::collection::vec(field(), 0..12),
            name in proptest::sample::select(NAMES),
        ) {
            let key = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
            let text = fields
                .iter()
                .map(|f| format!("{f} ssh-ed25519 {key}\n"))
                .collect::<Vec<_>>()
                .concat();
            let entries = parse(&text);
            prop_assert_eq!(entries.list.len(), fields.len());
            let name = name.to_ascii_lowercase();
            let indexed: Vec<usize> = entries.covering(&name).map(|e| e.line).collect();
            let scanned: Vec<usize> = entries
                .list
                .iter()
                .filter(|e| e.hosts.matches(&name))
                .map(|e| e.line)
                .collect();
            prop_assert_eq!(indexed, scanned);
            // And the compiled field matches as OpenSSH's rules say, pattern by pattern.
            for (entry, field) in entries.list.iter().zip(&fields) {
                let expected = if let Some(rest) = field.strip_prefix("|1|") {
                    rest.split_once('|').is_some_and(|(salt, hash)| {
                        match (BASE64.decode(salt), BASE64.decode(hash)) {
                            (Ok(salt), Ok(hash)) => {
                                let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
                                ring::hmac::verify(&k, name.as_bytes(), &hash).is_ok()
                            }
                            _ => false,
                        }
                    })
                } else {
                    let mut matched = false;
                    let mut excluded = false;
                    for p in field.split(',') {
                        let (negated, p) = p.strip_prefix('!').map_or((false, p), |n| (true, n));
                        if crate::glob::wildcard_match(&p.to_ascii_lowercase(), &name) {
                            if negated { excluded = true } else { matched = true }
                        }
                    }
                    matched && !excluded
                };
                prop_assert_eq!(entry.hosts.matches(&name), expected, "{}", field);
            }
        }
    }

    /// An Ed25519 public key of its own for host `i` (any 32 bytes make one, as a blob).
    fn own_key(i: usize) -> String {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        let mut point = [0x5a_u8; 32];
        point[..8].copy_from_slice(&(i as u64).to_be_bytes());
        blob.extend_from_slice(&point);
        BASE64.encode(blob)
    }

    /// What the indexes are for: a fleet's file, a line per host with its own key, plain or
    /// hashed; each check finds its own line among 1,000. The time is printed, not asserted
    /// (tests are no benchmark): about 1 µs per check either way here, where a scan of every
    /// line took 150 µs (plain) and 950 µs (hashed).
    #[test]
    fn a_fleet_sized_file_is_checked_by_its_indexes() {
        let names: Vec<String> = (0..1000)
            .map(|i| format!("127.3.{}.{}", i / 250, i % 250 + 1))
            .collect();
        let plain = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n} ssh-ed25519 {}\n", own_key(i)))
            .collect::<Vec<_>>()
            .concat();
        let hashed = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{} ssh-ed25519 {}\n", hashed(n, 7), own_key(i)))
            .collect::<Vec<_>>()
            .concat();
        for (label, text) in [("plain", plain), ("hashed", hashed)] {
            let known = KnownHosts::parse(Path::new("/k"), text.as_bytes());
            let keys: Vec<PublicKey> = (0..names.len())
                .map(|i| russh::keys::parse_public_key_base64(&own_key(i)).unwrap())
                .collect();
            let started = std::time::Instant::now();
            for (name, key) in names.iter().zip(&keys) {
                assert_eq!(known.check(name, 22, key), Verdict::Trusted, "{name}");
            }
            eprintln!("{label}: {:?} per check", started.elapsed() / 1000);
            // Another host's key: changed, naming that host's own line.
            assert!(matches!(
                known.check(&names[10], 22, &keys[11]),
                Verdict::Changed { line: 11, .. }
            ));
            assert_eq!(known.check("127.3.9.9", 22, &keys[0]), Verdict::Unknown);
        }
    }
}
