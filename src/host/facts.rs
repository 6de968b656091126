//! Facts: what a host has now, read in one command (one round trip).
//!
//! The remote side is `facts.sh` (two processes with perl, four without); it prints records (see
//! [`crate::host::records`]), the managed files' contents as one payload split by the sizes
//! `stat` printed, so any byte survives. Parsing is pure, unit- and property-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::daemon::{Daemon, DaemonVersion, Family};
use crate::effective::DropinDir;
use crate::host::records::{Record, RecordError, Records, excerpt};
use crate::host::script::RemoteScript;
use crate::shell::ShellWord;

/// A file as found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFacts {
    #[serde(skip)]
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

/// The state of a path on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PathFacts {
    Absent,
    File(FileFacts),
    /// Something that is not a regular file or a link (a directory, a device).
    NotAFile,
    /// A symbolic link: never written through (its target may be anywhere).
    Symlink,
}

/// A systemd unit's state as `systemctl is-enabled` / `is-active` print it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct UnitFacts {
    pub enabled: String,
    pub active: String,
}

impl UnitFacts {
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.enabled.as_str(),
            "enabled" | "enabled-runtime" | "alias" | "static" | "indirect"
        )
    }

    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active == "active"
    }
}

/// `/etc/os-release` fields that matter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
}

/// Everything clockprov knows about a host before planning.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HostFacts {
    pub os: OsRelease,
    /// Installed daemon packages and their Debian versions.
    pub packages: BTreeMap<String, String>,
    pub units: BTreeMap<String, UnitFacts>,
    pub files: BTreeMap<String, PathFacts>,
    /// Units whose restart an interrupted apply left pending (`/run/clockprov/restart-pending.UNIT`).
    pub pending: BTreeSet<String>,
    /// The daemon packages' conffiles and the md5 dpkg keeps of the text each package shipped
    /// (empty on the RHEL family): what tells the vendor's file (see [`crate::layout`]).
    pub conffiles: BTreeMap<String, String>,
}

impl HostFacts {
    #[must_use]
    pub fn installed_version(&self, daemon: Daemon) -> Option<DaemonVersion> {
        self.packages
            .get(daemon.package())
            .and_then(|v| DaemonVersion::from_debian(v))
    }

    #[must_use]
    pub fn is_installed(&self, daemon: Daemon) -> bool {
        self.packages.contains_key(daemon.package())
    }

    /// The version to render for: the installed one, else what the distribution would install.
    #[must_use]
    pub fn version_for(&self, daemon: Daemon) -> DaemonVersion {
        self.installed_version(daemon)
            .unwrap_or_else(|| daemon.distribution_default(&self.os.id, &self.os.version_id))
    }

    /// The state of `daemon`'s unit in this system's layout.
    #[must_use]
    pub fn unit(&self, daemon: Daemon) -> UnitFacts {
        self.units
            .get(daemon.unit_on(self.family()))
            .cloned()
            .unwrap_or_default()
    }

    /// The layout of this host's system.
    #[must_use]
    pub fn family(&self) -> Family {
        Family::of(&self.os.id)
    }
}

/// Files bigger than this are refused unless `--max-file-size` says otherwise.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactsError {
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error(
        "{path} is {size} bytes on the host, more than --max-file-size ({max} bytes); it was not read (raise --max-file-size to manage it)"
    )]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("the managed files changed while they were read; run again")]
    ChangedWhileRead,
    #[error("the managed files could not be read (head exited with {status})")]
    Unreadable { status: String },
    #[error("the facts of {what} cannot be asked for: {why}")]
    BadRequest { what: String, why: &'static str },
}

/// What to read from a host: the managed paths, the units, and the size limit on files.
#[derive(Debug, Clone, Copy)]
pub struct FactsRequest<'a> {
    pub paths: &'a [&'a str],
    /// Directories whose `*SUFFIX` files are read too (a daemon's drop-ins), whatever they hold.
    pub dropins: &'a [DropinDir],
    pub units: &'a [&'a str],
    pub max_file_size: u64,
    /// The script's last line is `@@held MARKER` (see [`held_marker`]).
    pub held_marker: &'a str,
}

/// A unit or package name as the script passes it to `systemctl`/`dpkg-query`: a word of the
/// characters systemd and dpkg allow, which no command mistakes for an option.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '@' | '-' | '+' | '\\')
        })
}

fn word(what: &str, why: &'static str, ok: bool) -> Result<ShellWord, FactsError> {
    let bad = || FactsError::BadRequest {
        what: what.to_owned(),
        why,
    };
    if !ok {
        return Err(bad());
    }
    ShellWord::new(what).map_err(|_| bad())
}

fn count(n: usize) -> ShellWord {
    ShellWord::number(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Did `request` ask for `path`: one of its paths, or a file of one of its drop-in directories?
fn asked(request: &FactsRequest<'_>, path: &str) -> bool {
    request.paths.contains(&path) || in_dropin_dir(request, path)
}

/// Is `path` a file of one of the requested drop-in directories? Such a path (clockprov's own
/// drop-in) is read by the directory's glob, not named again: absent when the glob misses it.
fn in_dropin_dir(request: &FactsRequest<'_>, path: &str) -> bool {
    request.dropins.iter().any(|d| d.name_of(path).is_some())
}

/// facts.pl as it is sent (it is an argument of facts.sh): without comments and indentation.
static FACTS_PL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::host::script::compact(include_str!("facts.pl")));

/// [`FACTS_PL`] as a word of the script, quoted once for the whole run: every host gets the
/// same text, and quoting it again for each host was a measurable share of plan's CPU.
static FACTS_PL_WORD: std::sync::LazyLock<ShellWord> = std::sync::LazyLock::new(|| {
    // The text is this crate's own file: a NUL byte in it would fail every facts test at once.
    ShellWord::new(&FACTS_PL).expect("facts.pl holds no NUL byte")
});

/// The script that prints the facts `request` asks for, the packages of both daemons and the
/// restarts an interrupted apply left pending (see `facts.sh`: two processes with perl, four without).
///
/// # Errors
/// A path is not absolute or holds a newline, or a unit name is not one systemd allows.
pub fn script(request: &FactsRequest<'_>) -> Result<RemoteScript, FactsError> {
    let packages: Vec<&str> = Daemon::ALL.iter().map(|d| d.package()).collect();
    let ok = !request.held_marker.is_empty()
        && request
            .held_marker
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let mut args = vec![
        ShellWord::number(request.max_file_size),
        word(request.held_marker, "not a marker", ok)?,
        FACTS_PL_WORD.clone(),
        count(packages.len()),
    ];
    for package in &packages {
        args.push(word(package, "not a package name", is_plain_name(package))?);
    }
    args.push(count(request.units.len()));
    for unit in request.units {
        args.push(word(unit, "not a unit name", is_plain_name(unit))?);
    }
    args.push(count(request.dropins.len()));
    for dropin in request.dropins {
        let ok = dropin.dir.starts_with('/') && !dropin.dir.contains('\n');
        args.push(word(dropin.dir, "not an absolute path on one line", ok)?);
        let ok = is_plain_name(dropin.suffix) && !dropin.suffix.contains('/');
        args.push(word(dropin.suffix, "not a file name suffix", ok)?);
    }
    for path in request
        .paths
        .iter()
        .filter(|path| !in_dropin_dir(request, path))
    {
        let ok = path.starts_with('/') && !path.contains('\n');
        args.push(word(path, "not an absolute path on one line", ok)?);
    }
    Ok(RemoteScript::new(include_str!("facts.sh")).args(args))
}

/// A fresh marker for a facts read (see [`FactsRequest::held_marker`]): unguessable, so that
/// no file a host holds can end its facts early.
///
/// # Panics
/// If the system's random number generator fails.
#[must_use]
pub fn held_marker() -> String {
    crate::shell::random_hex(12)
}

/// A path's `stat` line: raw mode (hex), size, permissions (octal), owner, group.
struct Stat {
    path: String,
    kind: u32,
    size: u64,
    mode: u32,
    owner: String,
    group: String,
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

fn parse_stat(record: &Record<'_>, request: &FactsRequest<'_>) -> Result<Stat, RecordError> {
    let text = record.text();
    let mut fields = text.splitn(6, ' ');
    let mut next = |why: &str| fields.next().ok_or_else(|| record.bad(why));
    let raw = next("no mode")?;
    let size = next("no size")?;
    let mode = next("no permissions")?;
    let owner = next("no owner")?.to_owned();
    let group = next("no group")?.to_owned();
    let path = next("no path")?.to_owned();
    if !asked(request, &path) {
        return Err(record.bad("a path that was not asked for"));
    }
    Ok(Stat {
        kind: u32::from_str_radix(raw, 16).map_err(|_| record.bad("bad raw mode"))? & S_IFMT,
        size: size.parse().map_err(|_| record.bad("bad size"))?,
        mode: u32::from_str_radix(mode, 8).map_err(|_| record.bad("bad permissions"))?,
        owner,
        group,
        path,
    })
}

/// `systemctl show`'s blocks, one per unit asked for, in that order.
fn parse_units(
    lines: &[&[u8]],
    request: &FactsRequest<'_>,
    facts: &mut HostFacts,
) -> Result<(), RecordError> {
    let mut blocks: Vec<UnitFacts> = Vec::new();
    let mut current: Option<UnitFacts> = None;
    for line in lines {
        let line = String::from_utf8_lossy(line);
        if line.trim().is_empty() {
            blocks.extend(current.take());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(RecordError::Garbage {
                line: excerpt(line.as_bytes()),
            });
        };
        let unit = current.get_or_insert_with(UnitFacts::default);
        match key {
            "UnitFileState" => value.trim().clone_into(&mut unit.enabled),
            "ActiveState" => value.trim().clone_into(&mut unit.active),
            _ => {}
        }
    }
    blocks.extend(current.take());
    // No block at all: no systemd answering (a container); the units are then unknown, as
    // before, and planning says so. Otherwise each unit has its block.
    if blocks.is_empty() {
        return Ok(());
    }
    if blocks.len() != request.units.len() {
        return Err(RecordError::Bad {
            kind: "units".into(),
            why: format!("{} blocks for {} units", blocks.len(), request.units.len()),
            line: String::new(),
        });
    }
    for (unit, block) in request.units.iter().zip(blocks) {
        facts.units.insert((*unit).to_owned(), block);
    }
    Ok(())
}

/// Parse what [`script`] printed for `request`.
///
/// # Errors
/// The output is cut short or malformed, a managed file is over the size limit, or the files
/// changed (or could not be read) while being read.
pub fn parse(output: &[u8], request: &FactsRequest<'_>) -> Result<HostFacts, FactsError> {
    // The line that says the shell waits to be given apply's transaction is not a fact.
    let held = format!("@@held {}\n", request.held_marker);
    let output = output.strip_suffix(held.as_bytes()).unwrap_or(output);
    let mut facts = HostFacts::default();
    let mut os_release = String::new();
    let mut listed: Vec<Stat> = Vec::new();
    let mut records = Records::new(output);
    while let Some(record) = records.next_record()? {
        match record.kind {
            "osl" => {
                let _ = writeln!(os_release, "{}", record.text());
            }
            "pkg" => {
                let text = record.text();
                let mut fields = text.split_whitespace();
                let (Some(name), Some(status)) = (fields.next(), fields.next()) else {
                    return Err(record.bad("no package or status").into());
                };
                // `ii` installed, `hi` held; `rc` (removed, config left) and `un` are absent.
                // dpkg's abbreviations are ASCII letters: anything else is not dpkg speaking.
                if !status.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(record.bad("a dpkg status is ASCII letters").into());
                }
                let installed = status.chars().nth(1) == Some('i');
                if installed {
                    facts
                        .packages
                        .insert(name.to_owned(), fields.next().unwrap_or("").to_owned());
                }
                // dpkg's `${Conffiles}`: ` PATH MD5[ FLAG]...` lines up to the next record.
                for line in records.section() {
                    let line = String::from_utf8_lossy(line);
                    if line.trim().is_empty() {
                        continue;
                    }
                    let Some((path, md5, current)) = conffile(&line) else {
                        return Err(RecordError::Garbage {
                            line: excerpt(line.as_bytes()),
                        }
                        .into());
                    };
                    if installed && current {
                        facts.conffiles.insert(path.to_owned(), md5.to_owned());
                    }
                }
            }
            "units" => parse_units(&records.section(), request, &mut facts)?,
            "pending" => {
                let unit = record.text();
                if !is_plain_name(&unit) {
                    return Err(record.bad("not a unit name").into());
                }
                facts.pending.insert(unit.into_owned());
            }
            "absent" => {
                let path = record.text();
                if !request.paths.contains(&path.as_ref()) {
                    return Err(record.bad("a path that was not asked for").into());
                }
                facts.files.insert(path.into_owned(), PathFacts::Absent);
            }
            "stat" => listed.push(parse_stat(&record, request)?),
            "files" => read_files(&mut records, &listed, request, &mut facts)?,
            "read" => {
                let status = record.text();
                if status != "0" {
                    return Err(FactsError::Unreadable {
                        status: excerpt(status.as_bytes()),
                    });
                }
            }
            _ => return Err(record.unknown().into()),
        }
    }
    facts.os = parse_os_release(&os_release);
    for path in request.paths {
        if in_dropin_dir(request, path) {
            facts
                .files
                .entry((*path).to_owned())
                .or_insert(PathFacts::Absent);
        }
    }
    Ok(facts)
}

/// One line of dpkg's `${Conffiles}`: ` PATH MD5`, then flags (`obsolete`,
/// `remove-on-upgrade`); the path may hold spaces. `current`: no flag says it is gone.
fn conffile(line: &str) -> Option<(&str, &str, bool)> {
    let mut body = line.trim_end();
    let mut current = true;
    loop {
        let (rest, last) = body.rsplit_once(' ')?;
        if last.len() == 32 && last.bytes().all(|b| b.is_ascii_hexdigit()) {
            let path = rest.trim_start();
            return path.starts_with('/').then_some((path, last, current));
        }
        if !last.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return None;
        }
        current = false;
        body = rest;
    }
}

/// The status in the `@@read STATUS` record that ends a complete output, found from the end.
fn read_status(output: &[u8]) -> Option<&[u8]> {
    let body = output.strip_suffix(b"\n@@end\n")?;
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1);
    body.get(start..)?.strip_prefix(b"@@read ")
}

/// The contents of the regular files `stats` lists, back to back, each cut at the size limit.
fn read_files(
    records: &mut Records<'_>,
    stats: &[Stat],
    request: &FactsRequest<'_>,
    facts: &mut HostFacts,
) -> Result<(), FactsError> {
    let max = request.max_file_size;
    let regular = || stats.iter().filter(|s| s.kind == S_IFREG);
    if let Some(big) = regular().find(|s| s.size > max) {
        return Err(FactsError::TooLarge {
            path: big.path.clone(),
            size: big.size,
            max,
        });
    }
    let total = regular().try_fold(0usize, |sum, s| {
        usize::try_from(s.size)
            .ok()
            .and_then(|n| sum.checked_add(n))
    });
    let payload = match total.map(|n| records.payload(n)) {
        Some(Ok(payload)) => payload,
        // A file head could not read is missing from the payload: say that, not "changed".
        _ if read_status(records.input()).is_some_and(|s| s != b"0") => {
            return Err(FactsError::Unreadable {
                status: excerpt(read_status(records.input()).unwrap_or_default()),
            });
        }
        Some(Err(RecordError::Truncated)) => return Err(RecordError::Truncated.into()),
        Some(Err(_)) | None => return Err(FactsError::ChangedWhileRead),
    };
    let mut rest = payload;
    for stat in stats {
        let facts_of = match stat.kind {
            S_IFREG => {
                let n = usize::try_from(stat.size).unwrap_or(usize::MAX);
                let (Some(content), Some(after)) = (rest.get(..n), rest.get(n..)) else {
                    return Err(FactsError::ChangedWhileRead);
                };
                rest = after;
                PathFacts::File(FileFacts {
                    content: content.to_vec(),
                    mode: stat.mode,
                    owner: stat.owner.clone(),
                    group: stat.group.clone(),
                })
            }
            S_IFLNK => PathFacts::Symlink,
            _ => PathFacts::NotAFile,
        };
        facts.files.insert(stat.path.clone(), facts_of);
    }
    Ok(())
}

/// The fields of an os-release file (shell-style assignments, values optionally quoted).
#[must_use]
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(['"', '\'']).to_owned();
        match key.trim() {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REQUEST: FactsRequest<'static> = FactsRequest {
        paths: &[
            "/etc/chrony/chrony.conf",
            "/etc/systemd/timesyncd.conf",
            "/etc/l",
        ],
        units: &["chrony.service", "systemd-timesyncd.service"],
        dropins: &[DropinDir {
            dir: "/etc/d",
            suffix: ".conf",
        }],
        max_file_size: 64,
        held_marker: "m4rker",
    };

    fn output(files: &str, read: &str) -> Vec<u8> {
        format!(
            "@@osl NAME=\"Ubuntu\"\n@@osl ID=ubuntu\n@@osl VERSION_ID=\"20.04\"\n@@osl PRETTY_NAME=\"Ubuntu 20.04.6 LTS\"\n\
             @@pkg chrony ii  1:3.5-6ubuntu6.2\n@@pkg systemd-timesyncd rc  245.4\n\
             @@units\nActiveState=active\nUnitFileState=enabled\n\nUnitFileState=\nActiveState=inactive\n\
             @@pending chrony.service\n@@absent /etc/systemd/timesyncd.conf\n\
             @@stat 81a4 14 644 root root /etc/chrony/chrony.conf\n@@stat a1ff 5 777 root root /etc/l\n\
             @@files\n{files}\n@@read {read}\n@@end\n"
        )
        .into_bytes()
    }

    #[test]
    fn parses_a_full_output() {
        let facts = parse(&output("pool x iburst\n", "0"), &REQUEST).unwrap();
        assert_eq!(facts.os.id, "ubuntu");
        assert_eq!(facts.os.version_id, "20.04");
        assert_eq!(
            facts.installed_version(Daemon::Chrony),
            Some(DaemonVersion { major: 3, minor: 5 })
        );
        assert!(!facts.is_installed(Daemon::Timesyncd));
        assert!(facts.unit(Daemon::Chrony).is_active());
        assert!(facts.unit(Daemon::Chrony).is_enabled());
        assert!(!facts.unit(Daemon::Timesyncd).is_enabled());
        assert!(!facts.unit(Daemon::Timesyncd).is_active());
        assert_eq!(facts.pending, BTreeSet::from(["chrony.service".to_owned()]));
        assert_eq!(
            facts.files["/etc/chrony/chrony.conf"],
            PathFacts::File(FileFacts {
                content: b"pool x iburst\n".to_vec(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into()
            })
        );
        assert_eq!(
            facts.files["/etc/systemd/timesyncd.conf"],
            PathFacts::Absent
        );
        assert_eq!(facts.files["/etc/l"], PathFacts::Symlink);
    }

    #[test]
    fn conffiles_and_a_drop_in_the_glob_missed() {
        let request = FactsRequest {
            paths: &["/etc/d/zz-own.conf"],
            ..REQUEST
        };
        // Not named to the script: the directory's glob reads it when it is there.
        let text = script(&request).unwrap().text();
        assert!(!text.contains("zz-own"), "{text}");
        let out = "@@pkg systemd-timesyncd ii  252.39-1\n \
             /etc/systemd/timesyncd.conf 9bca5bc8be90d2921301a24084ffcd55\n \
             /etc/gone 9bca5bc8be90d2921301a24084ffcd55 obsolete\n\
             @@pkg chrony un  \n\n@@files\n\n@@read 0\n@@end\n";
        let facts = parse(out.as_bytes(), &request).unwrap();
        assert_eq!(
            facts.conffiles,
            BTreeMap::from([(
                "/etc/systemd/timesyncd.conf".to_owned(),
                "9bca5bc8be90d2921301a24084ffcd55".to_owned()
            )])
        );
        assert_eq!(facts.files["/etc/d/zz-own.conf"], PathFacts::Absent);
        let bad = out.replace(
            "9bca5bc8be90d2921301a24084ffcd55\n \
/etc/gone",
            "x\n \
/etc/gone",
        );
        assert!(parse(bad.as_bytes(), &request).is_err());
        assert_eq!(
            conffile(" /etc/a b.conf 9bca5bc8be90d2921301a24084ffcd55 remove-on-upgrade"),
            Some(("/etc/a b.conf", "9bca5bc8be90d2921301a24084ffcd55", false))
        );
    }

    #[test]
    fn contents_are_split_by_size_whatever_bytes_they_hold() {
        let content = "@@end\n\0\u{1b}";
        let out = String::from_utf8(output("", "0")).unwrap().replace(
            "@@stat 81a4 14 644",
            &format!("@@stat 81a4 {} 600", content.len()),
        );
        let out = out.replace("@@files\n", &format!("@@files\n{content}"));
        let facts = parse(out.as_bytes(), &REQUEST).unwrap();
        let PathFacts::File(file) = &facts.files["/etc/chrony/chrony.conf"] else {
            panic!("{facts:?}")
        };
        assert_eq!(file.content, content.as_bytes());
        assert_eq!(file.mode, 0o600);
    }

    #[test]
    fn a_big_file_fails_the_host_naming_it_and_its_size() {
        let out = String::from_utf8(output("", "0"))
            .unwrap()
            .replace("@@stat 81a4 14", "@@stat 81a4 125829120")
            .replace("@@files\n", "@@files\nabcdefgh");
        let error = parse(out.as_bytes(), &REQUEST).unwrap_err();
        assert_eq!(
            error,
            FactsError::TooLarge {
                path: "/etc/chrony/chrony.conf".into(),
                size: 125_829_120,
                max: 64
            }
        );
        assert!(error.to_string().contains("125829120 bytes"), "{error}");
    }

    #[test]
    fn files_that_changed_or_could_not_be_read_are_errors() {
        // One byte fewer than stat said: the file shrank between stat and head.
        assert_eq!(
            parse(&output("pool x iburst", "0"), &REQUEST),
            Err(FactsError::ChangedWhileRead)
        );
        assert_eq!(
            parse(&output("pool x iburst\nand more", "0"), &REQUEST),
            Err(FactsError::ChangedWhileRead)
        );
        assert!(matches!(
            parse(&output("", "1"), &REQUEST),
            Err(FactsError::Unreadable { .. })
        ));
        let out = output("pool x iburst\n", "0");
        assert_eq!(
            parse(&out[..out.len() - 7], &REQUEST),
            Err(FactsError::Records(RecordError::Truncated))
        );
    }

    #[test]
    fn records_about_paths_not_asked_for_or_odd_units_are_refused() {
        let out = |from: &str, to: &str| {
            String::from_utf8(output("pool x iburst\n", "0"))
                .unwrap()
                .replace(from, to)
        };
        for (from, to) in [
            (
                "@@absent /etc/systemd/timesyncd.conf",
                "@@absent /etc/shadow",
            ),
            ("@@pending chrony.service", "@@pending a b"),
            ("@@pending chrony.service", "@@bogus"),
            (
                "ActiveState=inactive\n",
                "ActiveState=inactive\n\nActiveState=x\n",
            ),
            ("@@units\n", "@@units\nnot a property\n"),
        ] {
            assert!(parse(out(from, to).as_bytes(), &REQUEST).is_err(), "{to}");
        }
        // No systemd answering: units unknown, nothing else lost.
        let facts = parse(
            out("ActiveState=active\nUnitFileState=enabled\n\nUnitFileState=\nActiveState=inactive\n", "")
                .as_bytes(),
            &REQUEST,
        )
        .unwrap();
        assert!(facts.units.is_empty());
    }

    #[test]
    fn the_script_passes_everything_as_words() {
        let text = script(&REQUEST).unwrap().text();
        let perl = ShellWord::new(&FACTS_PL).unwrap();
        assert!(
            text.starts_with(&format!(
                "{{\nset -- '64' 'm4rker' {perl} '2' 'chrony' 'systemd-timesyncd' '2' 'chrony.service' 'systemd-timesyncd.service' '1' '/etc/d' '.conf' '/etc/chrony/chrony.conf' '/etc/systemd/timesyncd.conf' '/etc/l'\n"
            )),
            "{text}"
        );
        for bad in [
            FactsRequest {
                paths: &["etc/x"],
                ..REQUEST
            },
            FactsRequest {
                paths: &["/etc/x\ny"],
                ..REQUEST
            },
            FactsRequest {
                units: &["-h"],
                ..REQUEST
            },
            FactsRequest {
                units: &["a b"],
                ..REQUEST
            },
            FactsRequest {
                held_marker: "a'b",
                ..REQUEST
            },
            FactsRequest {
                held_marker: "",
                ..REQUEST
            },
        ] {
            assert!(matches!(script(&bad), Err(FactsError::BadRequest { .. })));
        }
    }

    /// Run the real `facts.sh` here with `sh`, as a host runs it (this machine's `stat`, `head`,
    /// `dpkg-query`; `systemctl` may have no systemd to ask, which leaves the units unknown).
    fn run_here(request: &FactsRequest<'_>) -> Result<HostFacts, FactsError> {
        parse(&script(request).unwrap().run_here(&[], ""), request)
    }

    /// As [`run_here`] on a host with no perl (the RHEL family's minimal installs): `PATH`
    /// holds only the commands the script's other way runs.
    fn run_here_without_perl(request: &FactsRequest<'_>) -> Result<HostFacts, FactsError> {
        static BIN: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let bin = BIN.get_or_init(|| {
            let bin = tempfile::tempdir().unwrap();
            for name in ["sh", "stat", "head", "dpkg-query", "systemctl"] {
                let found = ["/usr/bin", "/bin"]
                    .iter()
                    .map(|dir| std::path::Path::new(dir).join(name))
                    .find(|path| path.exists());
                if let Some(path) = found {
                    std::os::unix::fs::symlink(path, bin.path().join(name)).unwrap();
                }
            }
            bin
        });
        let path = bin.path().to_str().unwrap();
        let out = script(request).unwrap().run_here(&[("PATH", path)], "");
        assert!(!out.is_empty(), "nothing printed without perl");
        parse(&out, request)
    }

    /// The text `script` sends as facts.pl, reading dpkg's status from `status` instead.
    fn facts_pl_reading(status: &std::path::Path) -> String {
        assert!(FACTS_PL.contains("'/var/lib/dpkg/status'"));
        FACTS_PL.replace("'/var/lib/dpkg/status'", &format!("'{}'", status.display()))
    }

    /// dpkg-query's records for `names` from the database in `admindir`, blank lines (a
    /// package with no conffiles) dropped and the status's padding (`ii ` then a space) one
    /// space: what facts.pl prints, record for record.
    fn dpkg_query_records(admindir: &str, names: &[String]) -> Vec<String> {
        let out = std::process::Command::new("dpkg-query")
            .arg(format!("--admindir={admindir}"))
            .arg("-W")
            .arg("-f=@@pkg ${Package} ${db:Status-Abbrev} ${Version}\n${Conffiles}\n")
            .args(names)
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| match line.strip_prefix("@@pkg ") {
                Some(rest) => format!(
                    "@@pkg {}",
                    rest.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
                None => line.to_owned(),
            })
            .collect();
        lines.sort();
        lines
    }

    fn facts_pl_records(program: &str, names: &[String]) -> Vec<String> {
        let out = std::process::Command::new("perl")
            .arg("-e")
            .arg(program)
            .args(["--", "0", &names.len().to_string()])
            .args(names)
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|line| *line != "@@files")
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// facts.pl reads dpkg's status file as dpkg-query reads it: every package of this
    /// machine's real database, and a database with every status dpkg writes, conffile flags
    /// and a package with no version, judged by the real dpkg-query.
    #[test]
    fn facts_pl_reports_packages_as_dpkg_query_does() {
        let out = std::process::Command::new("dpkg-query")
            .args(["-W", "-f=${Package}\n"])
            .output()
            .unwrap();
        let mut names: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        assert!(names.len() > 50, "{names:?}");
        let here = dpkg_query_records("/var/lib/dpkg", &names);
        assert!(
            here.iter().any(|line| line.starts_with(" /etc/")),
            "no conffiles"
        );
        assert_eq!(
            facts_pl_records(&facts_pl_reading("/var/lib/dpkg/status".as_ref()), &names),
            here
        );

        let admin = tempfile::tempdir().unwrap();
        for dir in ["updates", "info", "triggers"] {
            std::fs::create_dir(admin.path().join(dir)).unwrap();
        }
        std::fs::write(admin.path().join("available"), "").unwrap();
        let mut status = String::new();
        let mut names = Vec::new();
        for (i, words) in [
            "install ok installed",
            "hold ok installed",
            "deinstall ok config-files",
            "purge ok not-installed",
            "install reinstreq half-installed",
            "install ok unpacked",
            "install ok half-configured",
            "install ok triggers-pending",
            "unknown ok not-installed",
            "deinstall reinstreq half-configured",
            "deinstall ok not-installed",
            "install ok not-installed",
        ]
        .iter()
        .enumerate()
        {
            let name = format!("pkg-{i}");
            let _ = write!(
                status,
                "Package: {name}\nStatus: {words}\nPriority: optional\nArchitecture: amd64\n"
            );
            if !words.starts_with("purge") {
                let _ = writeln!(status, "Version: 1:2.{i}-3+b1");
            }
            if words.ends_with("triggers-pending") {
                status.push_str("Triggers-Pending: ldconfig\n");
            }
            if i % 2 == 0 && !words.ends_with("not-installed") {
                let _ = write!(
                    status,
                    "Conffiles:\n /etc/{name}/a b.conf 0123456789abcdef0123456789abcdef\n /etc/{name}/old.conf fedcba9876543210fedcba9876543210 obsolete\n /etc/{name}/gone.conf 00000000000000000000000000000000 remove-on-upgrade\n"
                );
            }
            status.push_str("Description: test\n\n");
            names.push(name);
        }
        names.push("not-in-the-database".to_owned());
        std::fs::write(admin.path().join("status"), &status).unwrap();
        let admindir = admin.path().to_str().unwrap();
        let want = dpkg_query_records(admindir, &names);
        assert_eq!(
            want.iter().filter(|line| line.starts_with("@@pkg")).count(),
            12,
            "{want:?}"
        );
        assert_eq!(
            facts_pl_records(&facts_pl_reading(&admin.path().join("status")), &names),
            want
        );
    }

    /// Run the facts script here as a kept shell: its text, then (once it has printed its
    /// marker line, as the controller waits for it) `then` on its stdin; everything it prints.
    fn run_kept_here(then: &str) -> String {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let request = FactsRequest {
            paths: KEPT_PATHS,
            ..REQUEST
        };
        let mut child = RemoteScript::spawn_here(&[]);
        let mut stdin = child.stdin.take().unwrap();
        let text = script(&request).unwrap().text_keeping_stdin();
        stdin.write_all(text.as_bytes()).unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut out = String::new();
        while !out.ends_with("@@held m4rker\n") {
            assert_ne!(stdout.read_line(&mut out).unwrap(), 0, "no marker: {out}");
        }
        stdin.write_all(then.as_bytes()).unwrap();
        drop(stdin);
        stdout.read_to_string(&mut out).unwrap();
        child.wait().unwrap();
        out
    }

    /// Paths no machine has: the kept shell's facts are then the same everywhere.
    const KEPT_PATHS: &[&str] = &["/nonexistent/clockprov-test"];

    /// The facts shell, kept: after its facts and the marker it runs a script that follows
    /// `@@next` on its stdin, and nothing else (end of input, or any other line, ends it).
    #[test]
    fn the_kept_facts_shell_runs_only_the_script_after_next() {
        let kept = FactsRequest {
            paths: KEPT_PATHS,
            ..REQUEST
        };
        let next = crate::host::script::group("echo ran-next-$((6 * 7))");
        let out = run_kept_here(&format!("@@next\n{next}"));
        let (facts, rest) = out.split_once("@@held m4rker\n").unwrap();
        assert!(facts.ends_with("@@end\n"), "{out}");
        assert_eq!(rest, "ran-next-42\n");
        parse(facts.as_bytes(), &kept).unwrap();
        for then in [
            String::new(),
            format!("@@other\n{next}"),
            format!("@@next-\n{next}"),
        ] {
            let out = run_kept_here(&then);
            assert!(out.ends_with("@@end\n@@held m4rker\n"), "{then:?}: {out}");
            parse(out.as_bytes(), &kept).unwrap();
        }
        // The marker line is only the script's last: elsewhere it is garbage.
        let out = run_kept_here("");
        let moved = out
            .replace("@@held m4rker\n", "")
            .replace("@@files", "@@held m4rker\n@@files");
        assert!(parse(moved.as_bytes(), &kept).is_err());
    }

    #[test]
    fn the_script_reads_files_links_and_sizes_as_they_are() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let every_byte: Vec<u8> = (0..=255u8).chain(*b"\n@@end\n").collect();
        std::fs::write(at("bytes"), &every_byte).unwrap();
        std::fs::set_permissions(at("bytes"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(at("empty"), b"").unwrap();
        std::fs::write(at("a name with spaces"), b"x y\n").unwrap();
        std::os::unix::fs::symlink(at("bytes"), at("link")).unwrap();
        std::fs::create_dir(at("dir")).unwrap();
        std::fs::write(at("big"), vec![b'b'; 5000]).unwrap();
        let names = [
            "bytes",
            "empty",
            "a name with spaces",
            "link",
            "dir",
            "absent",
        ];
        let paths: Vec<String> = names.iter().map(|n| at(n)).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        // A drop-in directory: its `*.conf` files are read, hidden ones and others are not.
        std::fs::create_dir(at("d")).unwrap();
        for name in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            std::fs::write(at(&format!("d/{name}")), name).unwrap();
        }
        std::os::unix::fs::symlink("/dev/null", at("d/masked.conf")).unwrap();
        let dropins = [
            DropinDir {
                dir: String::leak(at("d")),
                suffix: ".conf",
            },
            DropinDir {
                dir: String::leak(at("no-such-dir")),
                suffix: ".conf",
            },
        ];
        let request = FactsRequest {
            paths: &paths,
            units: &["clockprov-test-no-such.service"],
            dropins: &dropins,
            max_file_size: 4096,
            held_marker: "m4rker",
        };
        let facts = run_here(&request).unwrap();
        assert_eq!(run_here_without_perl(&request), Ok(facts.clone()));
        let dropins_read: Vec<&String> = facts
            .files
            .keys()
            .filter(|p| p.starts_with(&at("d/")))
            .collect();
        assert_eq!(
            dropins_read,
            [&at("d/a.conf"), &at("d/b.conf"), &at("d/masked.conf")]
        );
        assert_eq!(facts.files[&at("d/masked.conf")], PathFacts::Symlink);
        assert!(
            matches!(&facts.files[&at("d/b.conf")], PathFacts::File(f) if f.content == b"b.conf")
        );
        let content = |name: &str| match &facts.files[&at(name)] {
            PathFacts::File(file) => (file.content.clone(), file.mode),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(content("bytes"), (every_byte, 0o640));
        assert_eq!(content("empty").0, b"");
        assert_eq!(content("a name with spaces").0, b"x y\n");
        assert_eq!(facts.files[&at("link")], PathFacts::Symlink);
        assert_eq!(facts.files[&at("dir")], PathFacts::NotAFile);
        assert_eq!(facts.files[&at("absent")], PathFacts::Absent);
        assert!(!facts.os.id.is_empty(), "{facts:?}");

        let mut with_big = paths.clone();
        let big = at("big");
        with_big.push(&big);
        let too_large = Err(FactsError::TooLarge {
            path: big.clone(),
            size: 5000,
            max: 4096,
        });
        let with_big = FactsRequest {
            paths: &with_big,
            ..request
        };
        assert_eq!(run_here(&with_big), too_large);
        assert_eq!(run_here_without_perl(&with_big), too_large);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Any two files' bytes come back exactly, through the real script.
        #[test]
        fn any_contents_round_trip(a in proptest::collection::vec(any::<u8>(), 0..600), b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let dir = tempfile::tempdir().unwrap();
            let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
            std::fs::write(&pa, &a).unwrap();
            std::fs::write(&pb, &b).unwrap();
            let (pa, pb) = (pa.to_str().unwrap(), pb.to_str().unwrap());
            let request = FactsRequest { paths: &[pa, pb], units: &[], dropins: &[], max_file_size: 600, held_marker: "m4rker" };
            let facts = run_here(&request).unwrap();
            prop_assert_eq!(run_here_without_perl(&request), Ok(facts.clone()));
            for (path, want) in [(pa, &a), (pb, &b)] {
                let PathFacts::File(file) = &facts.files[path] else { panic!("{path}") };
                prop_assert_eq!(&file.content, want);
            }
        }
    }

    proptest! {
        /// Any bytes, and any mutation of a good output: an answer or an error, never a panic.
        #[test]
        fn never_panics_on_any_output(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&input, &REQUEST);
        }

        #[test]
        fn never_panics_on_a_mangled_output(cut in 0usize..400, at in 0usize..400, byte in any::<u8>()) {
            let mut out = output("pool x iburst\n", "0");
            if let Some(b) = out.get_mut(at) {
                *b = byte;
            }
            out.truncate(cut.max(1) * out.len() / 400);
            let _ = parse(&out, &REQUEST);
        }
    }
}
