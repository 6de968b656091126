//! The files clockprov writes beside the vendor's (issue 12 item 3): its own drop-in where the
//! daemon reads drop-ins, else only the managed lines of the host's own main file.
//!
//! timesyncd (every supported system has `timesyncd.conf.d`): clockprov writes only its
//! drop-in [`TIMESYNCD_DROPIN`] (rendered from `timesyncd.conf.j2`); the main
//! `/etc/systemd/timesyncd.conf` stays as the package shipped it. A host clockprov managed the
//! old way (the main file written whole) gets the vendor's text back ([`timesyncd_migration`]).
//!
//! chrony: not changed yet (the main file is rendered whole as before);
//! [`chrony_managed_lines`] is the piece for editing only the managed lines.
//!
//! Where the drop-in sorts: timesyncd reads its drop-ins sorted by file name across
//! `/etc`, `/run`, `/usr/local/lib` and `/usr/lib`, and `NTP=` lists add up. Digits sort before
//! letters, so a `99-` name is read *before* `cloud-init.conf` (whose servers would be added
//! after ours) or any letter name. clockprov's drop-in is `zz-clockprov.conf`, read after every
//! usual name, and it starts the list again (`NTP=` empty, then the inventory's): the servers
//! timesyncd uses are the inventory's whatever was read before. A name sorting after it is
//! possible (`zzz.conf`): the effective settings (src/effective.rs) show it, as a warning.

use crate::daemon::{Daemon, Family};
use crate::host::facts::{HostFacts, PathFacts};
use crate::render::{DesiredFile, DesiredState};

/// clockprov's timesyncd drop-in (read last; see the module's doc).
pub const TIMESYNCD_DROPIN: &str = "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf";

/// The marker of a main file clockprov wrote whole (before drop-ins): such a file is given back
/// to the vendor's text by the migration.
pub const MANAGED_HEADER: &str = "# Managed by clockprov";

/// Did clockprov write this main file whole (the layout before drop-ins)?
#[must_use]
pub fn is_written_whole(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n')
        .any(|line| line.starts_with(MANAGED_HEADER.as_bytes()))
}

/// The files clockprov may write for `daemon` on a `family` system: what a saved plan may
/// name. timesyncd: its drop-in, and the main file only to give it back its vendor's text.
#[must_use]
pub fn written_paths(daemon: Daemon, family: Family) -> Vec<&'static str> {
    match daemon {
        Daemon::Timesyncd => vec![TIMESYNCD_DROPIN, daemon.config_path_on(family)],
        Daemon::Chrony => vec![daemon.config_path_on(family)],
    }
}

/// Is writing `path` for `daemon` giving a main file back its vendor's text (the migration)?
#[must_use]
pub fn is_vendor_restore(daemon: Daemon, path: &str) -> bool {
    daemon == Daemon::Timesyncd && path == daemon.config_path()
}

/// What becomes of a timesyncd host's main file: nothing (the vendor's, or the host's own),
/// the vendor's text back (it carries clockprov's old header and dpkg names the text its
/// package shipped), or left as it is with a warning (clockprov does not carry that text; the
/// drop-in's reset makes its `NTP=` harmless all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    None,
    Restore(DesiredFile),
    Keep(String),
}

/// The migration of a timesyncd host from the old layout (see [`Migration`]).
#[must_use]
pub fn timesyncd_migration(facts: &HostFacts) -> Migration {
    let path = Daemon::Timesyncd.config_path();
    let Some(PathFacts::File(file)) = facts.files.get(path) else {
        return Migration::None;
    };
    if !is_written_whole(&file.content) {
        return Migration::None;
    }
    match facts.conffiles.get(path).map(String::as_str) {
        Some(md5) => match vendor_timesyncd(md5) {
            Some(text) => Migration::Restore(DesiredFile {
                path: path.to_owned(),
                content: text.to_owned(),
                mode: 0o644,
                owner: "root".to_owned(),
                group: "root".to_owned(),
                kind: crate::render::FileKind::Config,
            }),
            None => Migration::Keep(format!(
                "{path} was written whole by an older clockprov, and clockprov does not carry the text its package shipped (dpkg md5 {md5}): left as it is (its NTP= is reset by {TIMESYNCD_DROPIN}); reinstall it with `apt-get install --reinstall -o Dpkg::Options::=--force-confask systemd-timesyncd` if you want it back"
            )),
        },
        None => Migration::Keep(format!(
            "{path} was written whole by an older clockprov, and dpkg names no text of its package for it: left as it is (its NTP= is reset by {TIMESYNCD_DROPIN})"
        )),
    }
}

/// `desired` with the migration of a timesyncd host from the old layout: the vendor's main
/// file added to it when it is restored, or the warning when it is left (see [`Migration`]).
#[must_use]
pub fn with_migration(
    mut desired: DesiredState,
    facts: &HostFacts,
) -> (DesiredState, Option<String>) {
    if desired.daemon != Daemon::Timesyncd {
        return (desired, None);
    }
    match timesyncd_migration(facts) {
        Migration::None => (desired, None),
        Migration::Restore(file) => {
            desired.files.push(file);
            (desired, None)
        }
        Migration::Keep(warning) => (desired, Some(warning)),
    }
}

/// The `/etc/systemd/timesyncd.conf` each supported system's package ships, by the md5 dpkg
/// keeps for that conffile (`dpkg-query -W -f='${Conffiles}' systemd-timesyncd`; status
/// file). Taken from the lab's roots (bootstrapped from each archive, 2026-12-06) and
/// Debian 12's package: the migration gives a host back its vendor's file only when dpkg's md5
/// names one of these, so the file restored is byte for byte the one the package shipped.
/// (Ubuntu 26.04's is 24.04's; Ubuntu 25.10's was not looked at.)
pub const VENDOR_TIMESYNCD: [(&str, &str, &str); 5] = [
    (
        "dff71825daf78f541a22ea98d46df80e",
        "ubuntu 20.04, systemd-timesyncd 245.4-4ubuntu3.24",
        include_str!("vendor/timesyncd/ubuntu-20.04.conf"),
    ),
    (
        "01ca3edea53f3dcc591db0c2f330b538",
        "ubuntu 22.04, systemd-timesyncd 249.11-0ubuntu3.23",
        include_str!("vendor/timesyncd/ubuntu-22.04.conf"),
    ),
    (
        "e0877ff040d9c2541955eb1c1e856031",
        "ubuntu 24.04 and 26.04, systemd-timesyncd 255.4-1ubuntu8.19 and 259.9-0ubuntu0.1",
        include_str!("vendor/timesyncd/ubuntu-24.04.conf"),
    ),
    (
        "9bca5bc8be90d2921301a24084ffcd55",
        "debian 12, systemd-timesyncd 252.39-1~deb12u2",
        include_str!("vendor/timesyncd/debian-12.conf"),
    ),
    (
        "bd00db81a9f876df90e9d5c94b9ca2e7",
        "debian 13, systemd-timesyncd 257.13-1~deb13u1",
        include_str!("vendor/timesyncd/debian-13.conf"),
    ),
];

/// The vendor's timesyncd.conf whose md5 dpkg records as `md5`, if clockprov carries it.
#[must_use]
pub fn vendor_timesyncd(md5: &str) -> Option<&'static str> {
    VENDOR_TIMESYNCD
        .iter()
        .find(|(sum, _, _)| *sum == md5)
        .map(|(_, _, text)| *text)
}

/// chrony directives whose lines clockprov manages in a main file it must edit: the time
/// sources and whom it serves.
const CHRONY_MANAGED: [&str; 5] = ["server", "pool", "peer", "allow", "local"];

/// The comment lines clockprov puts in a block it writes into a host's file: managed too, so a
/// second run finds the same lines and writes the same file.
const OWN_COMMENT: &[u8] = b"# clockprov:";

/// Is `line` one clockprov manages in a chrony main file?
fn is_managed_chrony_line(line: &[u8]) -> bool {
    if line.starts_with(OWN_COMMENT) {
        return true;
    }
    let word: Vec<u8> = line
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect();
    CHRONY_MANAGED
        .iter()
        .any(|d| d.as_bytes() == word.as_slice())
}

/// The host's own chrony main file with only the managed lines changed: every managed line is
/// taken out and `block` (lines of managed directives, or `# clockprov:` comments) goes where the
/// first one was (at the end if there was none). Every other byte stays as the host has it (the
/// vendor's comments, typos and typographic apostrophes included). Running it again on its own
/// output gives the same file.
#[must_use]
pub fn chrony_managed_lines(host: &[u8], block: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len());
    let mut placed = false;
    let mut block_bytes = Vec::new();
    for line in block {
        debug_assert!(is_managed_chrony_line(line.as_bytes()), "{line}");
        block_bytes.extend_from_slice(line.as_bytes());
        block_bytes.push(b'\n');
    }
    let mut rest = host;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |n| n + 1);
        let (line, after) = rest.split_at(end);
        rest = after;
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if is_managed_chrony_line(text) {
            if !placed {
                out.extend_from_slice(&block_bytes);
                placed = true;
            }
        } else {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                // A last line without its newline: the block may follow it.
                out.push(b'\n');
            }
        }
    }
    if !placed {
        out.extend_from_slice(&block_bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ubuntu 20.04's chrony.conf as the test hosts' seed has it (with the vendor's "usuable"
    /// and its typographic apostrophe).
    const FOCAL: &str = include_str!("../tests/hosts/seed/ubuntu-20.04/chrony.conf");

    fn block() -> Vec<String> {
        vec![
            "# clockprov: the inventory's sources (ntp_servers.zcloud)".to_owned(),
            "pool ntp.ubuntu.com iburst".to_owned(),
            "allow 192.168.6.0/24".to_owned(),
            "local stratum 10".to_owned(),
        ]
    }

    #[test]
    fn only_the_managed_lines_of_the_hosts_file_change() {
        let host = FOCAL;
        assert!(host.contains("can\u{2019}t be used"));
        let edited = String::from_utf8(chrony_managed_lines(host.as_bytes(), &block())).unwrap();
        assert!(
            edited.contains("usuable directives"),
            "the vendor's typo stays"
        );
        assert!(
            edited.contains("can\u{2019}t be used"),
            "and its apostrophe"
        );
        let before: Vec<&str> = host.lines().filter(|l| !l.starts_with("pool ")).collect();
        let after: Vec<&str> = edited
            .lines()
            .filter(|l| !block().iter().any(|b| b == l))
            .collect();
        assert_eq!(before, after);
        // The block is where the vendor's pools were.
        assert!(edited.contains(
            "more information.\n# clockprov: the inventory's sources (ntp_servers.zcloud)\npool ntp.ubuntu.com iburst\nallow 192.168.6.0/24\nlocal stratum 10\n\n# This directive"
        ), "{edited}");
        assert_eq!(
            chrony_managed_lines(edited.as_bytes(), &block()),
            edited.as_bytes()
        );
    }

    #[test]
    fn a_file_without_sources_gets_the_block_at_its_end() {
        assert_eq!(
            chrony_managed_lines(b"keyfile /k", &block()[1..2]),
            b"keyfile /k\npool ntp.ubuntu.com iburst\n"
        );
    }

    #[test]
    fn the_old_layout_is_recognised_and_given_back_its_vendors_text() {
        assert!(is_written_whole(
            b"#\n# Managed by clockprov (inventory: clients.x). Local edits\n"
        ));
        assert!(!is_written_whole(FOCAL.as_bytes()));
        let main = Daemon::Timesyncd.config_path();
        let mut facts = HostFacts::default();
        assert_eq!(timesyncd_migration(&facts), Migration::None);
        let old = crate::host::facts::FileFacts {
            content: b"# Managed by clockprov (inventory: clients.a)\n[Time]\nNTP=10.0.0.1\n"
                .to_vec(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        };
        facts
            .files
            .insert(main.into(), PathFacts::File(old.clone()));
        assert!(
            matches!(timesyncd_migration(&facts), Migration::Keep(w) if w.contains("dpkg names no text"))
        );
        facts
            .conffiles
            .insert(main.into(), "0123456789abcdef0123456789abcdef".into());
        assert!(
            matches!(timesyncd_migration(&facts), Migration::Keep(w) if w.contains("does not carry"))
        );
        facts
            .conffiles
            .insert(main.into(), "9bca5bc8be90d2921301a24084ffcd55".into());
        let Migration::Restore(file) = timesyncd_migration(&facts) else {
            panic!("not restored");
        };
        assert_eq!(
            file.content,
            include_str!("../tests/hosts/seed/debian-12/timesyncd.conf")
        );
        assert!(is_vendor_restore(Daemon::Timesyncd, &file.path));
        // The vendor's own file (or the host's own) is left alone.
        facts.files.insert(
            main.into(),
            PathFacts::File(crate::host::facts::FileFacts {
                content: file.content.into_bytes(),
                ..old
            }),
        );
        assert_eq!(timesyncd_migration(&facts), Migration::None);
    }

    #[test]
    fn the_vendor_files_are_those_dpkg_names() {
        use std::io::Write as _;
        for (md5, system, text) in VENDOR_TIMESYNCD {
            let mut child = std::process::Command::new("md5sum")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let sum = String::from_utf8(out.stdout).unwrap();
            assert_eq!(sum.split_whitespace().next(), Some(md5), "{system}");
            assert!(!is_written_whole(text.as_bytes()), "{system}");
            assert_eq!(vendor_timesyncd(md5), Some(text));
        }
        // The test hosts' seeds are the vendor's files.
        assert_eq!(
            vendor_timesyncd("dff71825daf78f541a22ea98d46df80e"),
            Some(include_str!(
                "../tests/hosts/seed/ubuntu-20.04/timesyncd.conf"
            ))
        );
        assert_eq!(
            vendor_timesyncd("9bca5bc8be90d2921301a24084ffcd55"),
            Some(include_str!("../tests/hosts/seed/debian-12/timesyncd.conf"))
        );
    }

    proptest! {
        /// Any host file: nothing but managed lines changes, and a second run changes nothing.
        #[test]
        fn edits_are_exact_and_idempotent(host in proptest::collection::vec(any::<u8>(), 0..400)) {
            let once = chrony_managed_lines(&host, &block());
            prop_assert_eq!(chrony_managed_lines(&once, &block()), once.clone());
            let unmanaged = |text: &[u8]| -> Vec<Vec<u8>> {
                text.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty() && !is_managed_chrony_line(l))
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            prop_assert_eq!(unmanaged(&host), unmanaged(&once));
        }
    }
}
