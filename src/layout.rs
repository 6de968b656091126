//! The files clockprov writes beside the vendor's (issue 12 item 3): its own drop-in where the
//! daemon reads drop-ins, else only the managed lines of the host's own main file.
//!
//! timesyncd (every supported system has `timesyncd.conf.d`): clockprov writes only its
//! drop-in [`TIMESYNCD_DROPIN`] (rendered from `timesyncd.conf.j2`); the main
//! `/etc/systemd/timesyncd.conf` stays as the package shipped it. A host clockprov managed the
//! old way (the main file written whole) gets the vendor's text back ([`timesyncd_migration`]).
//!
//! chrony: its main file is the host's own, and clockprov changes only its managed lines
//! ([`chrony_main`]): the time sources (`server`, `pool`, `peer`), whom it serves (`allow`,
//! `local`), NTS (`ntsservercert`, `ntsserverkey`, `ntstrustedcerts`) and its own `# clockprov:`
//! comments, taken from the template's rendering; `makestep` and `ntsdumpdir` are added when the
//! file has none. Every other byte stays the vendor's (or the host's). The main file, not a
//! `conf.d` drop-in: Debian 12/13 and Ubuntu 20.04 to 24.04 put their pools there, and chrony has
//! no directive that removes a source. A host with no main file yet (chrony not installed) gets
//! the rendering whole. A main file clockprov wrote whole before gets the vendor's text back
//! first (Debian's and Ubuntu's package keep it as [`CHRONY_VENDOR_COPY`], for ucf).
//!
//! Where the drop-in sorts: timesyncd reads its drop-ins sorted by file name across
//! `/etc`, `/run`, `/usr/local/lib` and `/usr/lib`, and `NTP=` lists add up. Digits sort before
//! letters, so a `99-` name is read *before* `cloud-init.conf` (whose servers would be added
//! after ours) or any letter name. clockprov's drop-in is `zz-clockprov.conf`, read after every
//! usual name, and it starts the list again (`NTP=` empty, then the inventory's): the servers
//! timesyncd uses are the inventory's whatever was read before. A name sorting after it is
//! possible (`zzz.conf`): the effective settings (src/effective.rs) show it, as a warning.

use std::collections::{BTreeMap, BTreeSet};

use crate::daemon::{Daemon, Family};
use crate::host::facts::{HostFacts, PathFacts};
use crate::plan::{FileChange, PlanError};
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

/// Is this change giving a main file back its vendor's text (the migration)? timesyncd: any
/// write of its main file; chrony: a main file written whole that will no longer be (where the
/// vendor's text is not on the host, the old file is kept with its header: not a restore).
#[must_use]
pub fn is_vendor_restore(daemon: Daemon, file: &FileChange) -> bool {
    match daemon {
        Daemon::Timesyncd => file.path == daemon.config_path(),
        Daemon::Chrony => {
            file.before
                .as_ref()
                .is_some_and(|before| is_written_whole(&before.content))
                && !is_written_whole(file.after.content.as_bytes())
        }
    }
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

/// `desired` laid out on this host: timesyncd's vendor main file added when the migration
/// restores it (or the warning when it is left, see [`Migration`]); chrony's main file as
/// [`chrony_main`] makes it from the host's own.
///
/// # Errors
/// chrony's main file (or the vendor's copy) is not UTF-8 text.
pub fn with_migration(
    mut desired: DesiredState,
    facts: &HostFacts,
) -> Result<(DesiredState, Option<String>), PlanError> {
    match desired.daemon {
        Daemon::Chrony => with_chrony_layout(desired, &facts.files),
        Daemon::Timesyncd => match timesyncd_migration(facts) {
            Migration::None => Ok((desired, None)),
            Migration::Restore(file) => {
                desired.files.push(file);
                Ok((desired, None))
            }
            Migration::Keep(warning) => Ok((desired, Some(warning))),
        },
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

/// chrony directives whose lines clockprov manages in a main file: the time sources, whom it
/// serves, and NTS's certificate, key and CA (clockprov's own files).
const CHRONY_MANAGED: [&str; 8] = [
    "server",
    "pool",
    "peer",
    "allow",
    "local",
    "ntsservercert",
    "ntsserverkey",
    "ntstrustedcerts",
];

/// Directives of the rendering that are not managed but that the inventory's settings need
/// (a skewed client steps: `makestep`; NTS keeps its keys and cookies: `ntsdumpdir`): added with
/// the managed lines when the host's file has no line of that directive, never changed when it
/// has one (the host's value is the host's).
const CHRONY_REQUIRED: [&str; 2] = ["makestep", "ntsdumpdir"];

/// Where Debian's and Ubuntu's chrony package keeps the `chrony.conf` it ships (ucf's pristine
/// copy, from which its postinst makes `/etc/chrony/chrony.conf`): the vendor's text a main file
/// written whole is given back. The RHEL family keeps none.
pub const CHRONY_VENDOR_COPY: &str = "/usr/share/chrony/chrony.conf";

/// The head of the managed lines when the template (an override) puts no `# clockprov:` line
/// before them.
const DEFAULT_HEAD: &str = "# clockprov: the lines below are managed by clockprov";

/// The comment lines clockprov puts in a block it writes into a host's file: managed too, so a
/// second run finds the same lines and writes the same file.
const OWN_COMMENT: &[u8] = b"# clockprov:";

/// The first word of a chrony line, lowercased (chrony's directives are case-insensitive).
fn first_word(line: &[u8]) -> Vec<u8> {
    line.iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect()
}

/// The directive of a chrony line, if it is one (not blank, not a comment: chrony's comments
/// start with `!`, `;`, `#` or `%`).
fn chrony_directive(line: &[u8]) -> Option<Vec<u8>> {
    let word = first_word(line);
    match word.first() {
        None | Some(b'!' | b';' | b'#' | b'%') => None,
        Some(_) => Some(word),
    }
}

/// Is `line` one clockprov manages in a chrony main file? (Public for the VM tests, which check
/// that every other line of the vendor's file is kept.)
#[must_use]
pub fn is_managed_chrony_line(line: &[u8]) -> bool {
    if line.starts_with(OWN_COMMENT) {
        return true;
    }
    let word = first_word(line);
    CHRONY_MANAGED
        .iter()
        .any(|d| d.as_bytes() == word.as_slice())
}

/// The lines clockprov puts into `base` (the file it edits) from `rendered` (the template's
/// whole rendering): the rendering's managed lines in order, under one `# clockprov:` head, then
/// each line of a [`CHRONY_REQUIRED`] directive that `base` has no line of. Those come last so
/// that a second run, which finds them in the file as ordinary lines after the managed ones,
/// writes the same file.
#[must_use]
pub fn chrony_block(rendered: &str, base: &[u8]) -> Vec<String> {
    let mut block: Vec<String> = rendered
        .lines()
        .filter(|line| is_managed_chrony_line(line.as_bytes()))
        .map(str::to_owned)
        .collect();
    if !block
        .first()
        .is_some_and(|line| line.as_bytes().starts_with(OWN_COMMENT))
    {
        block.insert(0, DEFAULT_HEAD.to_owned());
    }
    let present: BTreeSet<Vec<u8>> = base
        .split(|&b| b == b'\n')
        .filter_map(chrony_directive)
        .collect();
    let mut added = BTreeSet::new();
    for line in rendered.lines() {
        let Some(directive) = chrony_directive(line.as_bytes()) else {
            continue;
        };
        let required = CHRONY_REQUIRED.iter().any(|d| d.as_bytes() == directive);
        if required && !present.contains(&directive) && added.insert(directive) {
            block.push(line.to_owned());
        }
    }
    block
}

/// The chrony main file at `path` the host should have, from the template's whole rendering
/// and what the host has (`files`, as the facts read them), and a warning when an old
/// whole-file layout cannot be given its vendor's text back:
/// - no file there (chrony not installed yet): the rendering whole;
/// - a file clockprov wrote whole ([`is_written_whole`]): the vendor's text
///   ([`CHRONY_VENDOR_COPY`]) with the managed lines; where that copy is missing, the host's
///   file with the managed lines (its old header stays, and the warning says so);
/// - else the host's own file with only the managed lines changed.
///
/// A pure function of the rendering and the facts: a saved plan's content is reproducible,
/// and a second run gives the same file.
///
/// # Errors
/// The file it would edit is not UTF-8 text (chrony's own files are ASCII).
pub fn chrony_main(
    path: &str,
    rendered: &str,
    files: &BTreeMap<String, PathFacts>,
) -> Result<(String, Option<String>), PlanError> {
    let vendor_copy = (path == Daemon::Chrony.config_path_on(Family::Debian))
        .then(|| files.get(CHRONY_VENDOR_COPY))
        .flatten();
    let (base, base_path, warning): (&[u8], &str, Option<String>) = match files.get(path) {
        Some(PathFacts::File(file)) if is_written_whole(&file.content) => match vendor_copy {
            Some(PathFacts::File(vendor)) => (&vendor.content, CHRONY_VENDOR_COPY, None),
            _ => (
                &file.content,
                path,
                Some(format!(
                    "{path} was written whole by an older clockprov, and the text its package shipped is not on the host ({}): its lines are kept, and clockprov now changes only its managed ones (server, pool, peer, allow, local, nts*); its `{MANAGED_HEADER}` comment no longer holds: delete it by hand",
                    if path == Daemon::Chrony.config_path_on(Family::Debian) {
                        format!("no {CHRONY_VENDOR_COPY}")
                    } else {
                        "the RHEL family keeps no copy".to_owned()
                    }
                )),
            ),
        },
        Some(PathFacts::File(file)) => (&file.content, path, None),
        // Absent (or not a file, which the plan refuses): the rendering is the whole file.
        _ => (rendered.as_bytes(), path, None),
    };
    let block = chrony_block(rendered, base);
    let text =
        String::from_utf8(chrony_managed_lines(base, &block)).map_err(|_| PlanError::NotText {
            path: base_path.to_owned(),
        })?;
    Ok((text, warning))
}

/// `desired` with its chrony main file made by [`chrony_main`] from the host's (or image's)
/// files, and the warning it gives, if any.
///
/// # Errors
/// See [`chrony_main`].
pub fn with_chrony_layout(
    mut desired: DesiredState,
    files: &BTreeMap<String, PathFacts>,
) -> Result<(DesiredState, Option<String>), PlanError> {
    let mains = [
        Daemon::Chrony.config_path_on(Family::Debian),
        Daemon::Chrony.config_path_on(Family::RedHat),
    ];
    let mut warning = None;
    for file in &mut desired.files {
        if mains.contains(&file.path.as_str()) {
            let (content, said) = chrony_main(&file.path, &file.content, files)?;
            file.content = content;
            warning = warning.or(said);
        }
    }
    Ok((desired, warning))
}

/// The host's own chrony main file with only the managed lines changed: every managed line is
/// taken out and `block` (one line each: see [`chrony_block`]) goes where the first one was (at
/// the end, after a blank line, if there was none). Every other byte stays as the host has it (the
/// vendor's comments, typos and typographic apostrophes included). Running it again on its own
/// output gives the same file.
#[must_use]
pub fn chrony_managed_lines(host: &[u8], block: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len());
    let mut placed = false;
    let mut block_bytes = Vec::new();
    for line in block {
        debug_assert!(!line.contains('\n'), "one line: {line:?}");
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
        // A paragraph of its own at the end (Ubuntu 25.10+'s file has no source line at all).
        if !out.is_empty() && !out.ends_with(b"\n\n") {
            out.push(b'\n');
        }
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
            b"keyfile /k\n\npool ntp.ubuntu.com iburst\n"
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
        assert!(is_vendor_restore(
            Daemon::Timesyncd,
            &FileChange {
                path: file.path.clone(),
                action: crate::plan::FileAction::Update,
                before: None,
                after: file.clone(),
                diff: String::new(),
            }
        ));
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

    const DEBIAN_12: &str = include_str!("../tests/hosts/seed/debian-12/chrony.conf");
    const ROCKY_9: &str = include_str!("../tests/hosts/seed/rocky-9/chrony.conf");
    const DEBIAN_MAIN: &str = "/etc/chrony/chrony.conf";

    /// An inventory with a server with upstream, `allow` and `local`, and a plain client.
    const PLAIN: &str = "ntp_servers:\n  zcloud:\n    address: 192.168.6.200\n    upstream: [{pool: ntp.ubuntu.com, maxsources: 4}]\n    local_stratum: 10\n    allow: [192.168.6.0/24]\nclients:\n  data-1: { address: 192.168.6.204, daemon: chrony }\n";

    fn rendered(yaml: &str, host: &str, os_id: &str, major: u32, minor: u32) -> String {
        crate::render::tests::render_inventory(
            yaml,
            host,
            os_id,
            crate::daemon::DaemonVersion { major, minor },
        )
        .files[0]
            .content
            .clone()
    }

    fn text_file(content: &[u8]) -> PathFacts {
        PathFacts::File(crate::host::facts::FileFacts {
            content: content.to_vec(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        })
    }

    /// The host's files: `path` holding `content`, and the vendor's copy if given.
    fn files(path: &str, content: &str, vendor: Option<&str>) -> BTreeMap<String, PathFacts> {
        let mut files = BTreeMap::from([(path.to_owned(), text_file(content.as_bytes()))]);
        files.insert(
            CHRONY_VENDOR_COPY.to_owned(),
            vendor.map_or(PathFacts::Absent, |v| text_file(v.as_bytes())),
        );
        files
    }

    /// The main file made from `rendered` on a host whose file is `host`, checked to be
    /// a fixed point (the next plan changes nothing) and to keep every unmanaged line.
    fn edited(path: &str, rendered: &str, host: &str) -> String {
        let (once, warning) = chrony_main(path, rendered, &files(path, host, None)).unwrap();
        assert_eq!(warning, None);
        let (twice, _) = chrony_main(path, rendered, &files(path, &once, None)).unwrap();
        assert_eq!(once, twice, "a second plan changes nothing");
        // (Blank lines aside: a block added at the end gets one before it.)
        let unmanaged = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.is_empty() && !is_managed_chrony_line(l.as_bytes()))
                .map(str::to_owned)
                .collect()
        };
        let mut kept = unmanaged(&once);
        kept.retain(|l| {
            !CHRONY_REQUIRED
                .iter()
                .any(|d| chrony_directive(l.as_bytes()).as_deref() == Some(d.as_bytes()))
                || host.lines().any(|h| h == l)
        });
        assert_eq!(
            unmanaged(host),
            kept,
            "the host's other lines stay, in order"
        );
        once
    }

    /// The lines of `after` that differ from `before` (a line diff of the two).
    fn changed_lines(before: &str, after: &str) -> String {
        use std::fmt::Write as _;
        let diff = similar::TextDiff::from_lines(before, after);
        diff.iter_all_changes()
            .filter(|c| c.tag() != similar::ChangeTag::Equal)
            .fold(String::new(), |mut out, c| {
                let _ = write!(out, "{}{}", c.tag(), c);
                out
            })
    }

    #[test]
    fn ubuntu_20_04s_own_file_changes_only_in_its_sources() {
        let client = rendered(PLAIN, "data-1", "ubuntu", 3, 5);
        let edited = edited(DEBIAN_MAIN, &client, FOCAL);
        assert!(edited.contains("usuable directives") && edited.contains("can\u{2019}t be used"));
        insta::assert_snapshot!(changed_lines(FOCAL, &edited), @r"
        -pool ntp.ubuntu.com        iburst maxsources 4
        -pool 0.ubuntu.pool.ntp.org iburst maxsources 1
        -pool 1.ubuntu.pool.ntp.org iburst maxsources 1
        -pool 2.ubuntu.pool.ntp.org iburst maxsources 2
        +# clockprov: the lines below are managed by clockprov (inventory: clients.data-1)
        +server 192.168.6.200 iburst
        ");
        let server = rendered(PLAIN, "zcloud", "ubuntu", 3, 5);
        insta::assert_snapshot!(changed_lines(FOCAL, &edited_server(&server, FOCAL)), @r"
        -pool ntp.ubuntu.com        iburst maxsources 4
        -pool 0.ubuntu.pool.ntp.org iburst maxsources 1
        -pool 1.ubuntu.pool.ntp.org iburst maxsources 1
        -pool 2.ubuntu.pool.ntp.org iburst maxsources 2
        +# clockprov: the lines below are managed by clockprov (inventory: ntp_servers.zcloud)
        +pool ntp.ubuntu.com iburst maxsources 4
        +allow 192.168.6.0/24
        +local stratum 10
        ");
    }

    fn edited_server(rendered: &str, host: &str) -> String {
        edited(DEBIAN_MAIN, rendered, host)
    }

    #[test]
    fn debian_12s_own_file_keeps_its_sourcedirs_and_gets_the_servers_and_nts_lines() {
        let client = rendered(PLAIN, "data-1", "debian", 4, 3);
        insta::assert_snapshot!(changed_lines(DEBIAN_12, &edited(DEBIAN_MAIN, &client, DEBIAN_12)), @r"
        -pool 2.debian.pool.ntp.org iburst
        +# clockprov: the lines below are managed by clockprov (inventory: clients.data-1)
        +server 192.168.6.200 iburst
        ");
        let nts_server = rendered(crate::render::tests::NTS, "zcloud", "debian", 4, 3);
        insta::assert_snapshot!(changed_lines(DEBIAN_12, &edited(DEBIAN_MAIN, &nts_server, DEBIAN_12)), @r"
        -pool 2.debian.pool.ntp.org iburst
        +# clockprov: the lines below are managed by clockprov (inventory: ntp_servers.zcloud)
        +# clockprov: no upstream: this server keeps its own clock and serves it (local stratum)
        +allow 192.168.6.0/24
        +local stratum 10
        +ntsservercert /etc/chrony/nts/clockprov.crt
        +ntsserverkey /etc/chrony/nts/clockprov.key
        ");
        let nts_client = rendered(crate::render::tests::NTS, "c2", "debian", 4, 3);
        insta::assert_snapshot!(changed_lines(DEBIAN_12, &edited(DEBIAN_MAIN, &nts_client, DEBIAN_12)), @r"
        -pool 2.debian.pool.ntp.org iburst
        +# clockprov: the lines below are managed by clockprov (inventory: clients.c2)
        +server 192.168.6.200 iburst nts
        +ntstrustedcerts /etc/chrony/nts/clockprov-ca.crt
        ");
    }

    #[test]
    fn ntsdumpdir_and_makestep_are_added_only_where_the_file_has_none() {
        let nts_client = rendered(crate::render::tests::NTS, "c1", "debian", 4, 3);
        let bare = "# the host's own\npool 2.debian.pool.ntp.org iburst\nrtcsync\n";
        let edited = edited(DEBIAN_MAIN, &nts_client, bare);
        assert_eq!(
            edited,
            "# the host's own\n# clockprov: the lines below are managed by clockprov (inventory: clients.c1)\nserver 192.168.6.200 iburst nts\nntsdumpdir /var/lib/chrony\nmakestep 1 3\nrtcsync\n"
        );
        // The host's own values stay.
        let own = "makestep 0.1 -1\nntsdumpdir /srv/chrony\n";
        assert_eq!(
            self::edited(DEBIAN_MAIN, &nts_client, own),
            format!(
                "{own}\n# clockprov: the lines below are managed by clockprov (inventory: clients.c1)\nserver 192.168.6.200 iburst nts\n"
            )
        );
    }

    #[test]
    fn rockys_own_file_changes_only_in_its_sources() {
        let path = Daemon::Chrony.config_path_on(Family::RedHat);
        let server = rendered(crate::render::tests::NTS, "zcloud", "rocky", 4, 5);
        insta::assert_snapshot!(changed_lines(ROCKY_9, &edited(path, &server, ROCKY_9)), @r"
        -pool 2.rocky.pool.ntp.org iburst
        +# clockprov: the lines below are managed by clockprov (inventory: ntp_servers.zcloud)
        +# clockprov: no upstream: this server keeps its own clock and serves it (local stratum)
        +allow 192.168.6.0/24
        +local stratum 10
        +ntsservercert /etc/pki/chrony/clockprov.crt
        +ntsserverkey /etc/pki/chrony/clockprov.key
        ");
    }

    #[test]
    fn a_host_without_chrony_conf_gets_the_rendering_whole() {
        for (yaml, host) in [
            (PLAIN, "zcloud"),
            (PLAIN, "data-1"),
            (crate::render::tests::NTS, "zcloud"),
            (crate::render::tests::NTS, "c1"),
            (crate::render::tests::NTS, "c2"),
        ] {
            for (os_id, major, minor) in [
                ("ubuntu", 3, 5),
                ("debian", 4, 3),
                ("debian", 4, 6),
                ("rocky", 4, 5),
            ] {
                if major < 4 && yaml == crate::render::tests::NTS {
                    continue;
                }
                let text = rendered(yaml, host, os_id, major, minor);
                let path = Daemon::Chrony.config_path_on(Family::of(os_id));
                let mut none = BTreeMap::new();
                none.insert(path.to_owned(), PathFacts::Absent);
                let (whole, warning) = chrony_main(path, &text, &none).unwrap();
                assert_eq!(warning, None);
                assert_eq!(
                    whole, text,
                    "{host} {os_id} {major}.{minor}: the rendering as it is"
                );
                assert!(!is_written_whole(whole.as_bytes()), "not the old layout");
                // Once written, the next plan edits it and finds nothing to change.
                assert_eq!(edited(path, &text, &whole), text);
            }
        }
    }

    #[test]
    fn an_old_whole_file_gets_the_vendors_text_back_with_the_managed_lines() {
        let client = rendered(PLAIN, "data-1", "debian", 4, 3);
        let old = "# Welcome to the chrony configuration file. See chrony.conf(5) for more\n# information about usable directives.\n#\n# Managed by clockprov (inventory: clients.data-1). Local edits are\n# replaced by the next `clockprov apply`.\n\nconfdir /etc/chrony/conf.d\n\n# Upstream time sources.\nserver 192.168.6.200 iburst\n\nmakestep 1 3\n";
        let (restored, warning) = chrony_main(
            DEBIAN_MAIN,
            &client,
            &files(DEBIAN_MAIN, old, Some(DEBIAN_12)),
        )
        .unwrap();
        assert_eq!(warning, None);
        assert_eq!(restored, edited(DEBIAN_MAIN, &client, DEBIAN_12));
        let change = |before: &str, after: &str| FileChange {
            path: DEBIAN_MAIN.to_owned(),
            action: crate::plan::FileAction::Update,
            before: Some(crate::host::facts::FileFacts {
                content: before.as_bytes().to_vec(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
            }),
            after: DesiredFile {
                path: DEBIAN_MAIN.to_owned(),
                content: after.to_owned(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                kind: crate::render::FileKind::Config,
            },
            diff: String::new(),
        };
        assert!(is_vendor_restore(Daemon::Chrony, &change(old, &restored)));
        assert!(!is_vendor_restore(
            Daemon::Chrony,
            &change(&restored, &restored)
        ));
        // No vendor's copy (RHEL; a package without one): the old file's lines, with a warning.
        let (kept, warning) =
            chrony_main(DEBIAN_MAIN, &client, &files(DEBIAN_MAIN, old, None)).unwrap();
        assert!(
            warning
                .unwrap()
                .contains("no /usr/share/chrony/chrony.conf")
        );
        assert!(
            kept.contains(MANAGED_HEADER)
                && kept.contains("# Upstream time sources.\n# clockprov: ")
        );
        assert!(!is_vendor_restore(Daemon::Chrony, &change(old, &kept)));
        let rocky = Daemon::Chrony.config_path_on(Family::RedHat);
        let (_, warning) = chrony_main(
            rocky,
            &rendered(PLAIN, "data-1", "rocky", 4, 5),
            &files(rocky, old, Some(DEBIAN_12)),
        )
        .unwrap();
        assert!(warning.unwrap().contains("the RHEL family keeps no copy"));
    }

    #[test]
    fn the_effective_settings_show_the_vendors_source_directories_a_client_still_reads() {
        let client = crate::render::tests::render_inventory(
            PLAIN,
            "data-1",
            "ubuntu",
            crate::daemon::DaemonVersion { major: 4, minor: 8 },
        );
        let mut facts = HostFacts {
            files: files(DEBIAN_MAIN, DEBIAN_12, None),
            ..HostFacts::default()
        };
        for (path, text) in [
            (
                "/etc/chrony/sources.d/ubuntu-ntp-pools.sources",
                "pool 1.ntp.ubuntu.com iburst maxsources 1 nts prefer\n",
            ),
            ("/run/chrony-dhcp/eth0.sources", "server 10.9.9.9 iburst\n"),
        ] {
            facts
                .files
                .insert(path.to_owned(), text_file(text.as_bytes()));
        }
        let (desired, _) = with_migration(client, &facts).unwrap();
        assert!(
            desired.files[0]
                .content
                .contains("sourcedir /etc/chrony/sources.d\n")
        );
        let effective = crate::effective::of(&desired, &facts);
        let servers: Vec<&str> = effective
            .servers
            .iter()
            .map(|s| s.server.as_str())
            .collect();
        assert_eq!(servers, ["192.168.6.200", "10.9.9.9", "1.ntp.ubuntu.com"]);
        assert_eq!(
            effective.warnings,
            [
                "server 10.9.9.9 (from /run/chrony-dhcp/eth0.sources) is not in the inventory",
                "server 1.ntp.ubuntu.com (from /etc/chrony/sources.d/ubuntu-ntp-pools.sources) is not in the inventory",
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_text_is_refused_by_name() {
        let client = rendered(PLAIN, "data-1", "debian", 4, 3);
        let mut host = files(DEBIAN_MAIN, "", None);
        host.insert(DEBIAN_MAIN.into(), text_file(b"pool x\n# caf\xe9\n"));
        assert_eq!(
            chrony_main(DEBIAN_MAIN, &client, &host),
            Err(PlanError::NotText {
                path: DEBIAN_MAIN.to_owned()
            })
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

        /// Any host file made of chrony-like lines, for any rendering of the fixtures: the next
        /// plan changes nothing (the required lines added once are found the second time).
        #[test]
        fn a_second_plan_changes_nothing(
            lines in proptest::collection::vec(prop_oneof![
                Just("pool a iburst"), Just("server b"), Just("  Server c"), Just("allow 10/8"),
                Just("makestep 1 3"), Just("ntsdumpdir /x"), Just("# clockprov: old"),
                Just("# a comment"), Just(""), Just("sourcedir /etc/chrony/sources.d"),
                Just("ntsserverkey /k"), Just("rtcsync"), Just("% other"),
            ], 0..14),
            which in 0usize..4,
        ) {
            let (yaml, host) = [
                (PLAIN, "zcloud"), (PLAIN, "data-1"),
                (crate::render::tests::NTS, "zcloud"), (crate::render::tests::NTS, "c2"),
            ][which];
            let text = rendered(yaml, host, "debian", 4, 3);
            let host_file = lines.iter().fold(String::new(), |mut text, line| {
                text.push_str(line);
                text.push('\n');
                text
            });
            let (once, _) = chrony_main(DEBIAN_MAIN, &text, &files(DEBIAN_MAIN, &host_file, None)).unwrap();
            let (twice, _) = chrony_main(DEBIAN_MAIN, &text, &files(DEBIAN_MAIN, &once, None)).unwrap();
            prop_assert_eq!(once, twice);
        }
    }
}
