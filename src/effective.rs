//! Effective settings: the servers a daemon will really use, from its main file and the
//! drop-ins it reads besides, as they will be once the plan is applied.
//!
//! Pure: fed by the facts (which read the drop-in directories of [`dropin_dirs`]) and the
//! rendered files. clockprov's own file is not the whole story: a cloud image's
//! `timesyncd.conf.d/cloud-init.conf` adds its provider's servers, a drop-in with an empty
//! `NTP=` discards clockprov's, and chrony reads `conf.d`/`sources.d` (Ubuntu 25.10's pools).
//! Every server the inventory did not name is a warning in the plan.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::daemon::Daemon;
use crate::host::facts::{HostFacts, PathFacts};
use crate::render::DesiredState;

/// A directory whose files named `*SUFFIX` a daemon reads besides its main file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropinDir {
    pub dir: &'static str,
    pub suffix: &'static str,
}

impl DropinDir {
    /// Is `path` a file of this directory the daemon reads (what `DIR/*SUFFIX` matches in sh:
    /// no hidden name, no subdirectory)? Its name if so.
    #[must_use]
    pub fn name_of<'p>(&self, path: &'p str) -> Option<&'p str> {
        let name = path.strip_prefix(self.dir)?.strip_prefix('/')?;
        let ok = !name.contains('/')
            && !name.starts_with('.')
            && name.len() > self.suffix.len()
            && name.ends_with(self.suffix);
        ok.then_some(name)
    }
}

/// timesyncd's drop-in directories, highest precedence first: a name in `/etc` hides the same
/// name in `/run` and the `lib` directories (timesyncd.conf(5)).
const TIMESYNCD_DIRS: [DropinDir; 4] = [
    DropinDir {
        dir: "/etc/systemd/timesyncd.conf.d",
        suffix: ".conf",
    },
    DropinDir {
        dir: "/run/systemd/timesyncd.conf.d",
        suffix: ".conf",
    },
    DropinDir {
        dir: "/usr/local/lib/systemd/timesyncd.conf.d",
        suffix: ".conf",
    },
    DropinDir {
        dir: "/usr/lib/systemd/timesyncd.conf.d",
        suffix: ".conf",
    },
];

/// The directories Debian's and Ubuntu's `chrony.conf` name (`confdir`, `sourcedir`). They are
/// read whatever the main file says (facts are one round trip, before the main file is known);
/// only those the main file names count. A directive naming any other directory is a warning.
const CHRONY_DIRS: [DropinDir; 3] = [
    DropinDir {
        dir: "/etc/chrony/conf.d",
        suffix: ".conf",
    },
    DropinDir {
        dir: "/run/chrony-dhcp",
        suffix: ".sources",
    },
    DropinDir {
        dir: "/etc/chrony/sources.d",
        suffix: ".sources",
    },
];

/// Every daemon's drop-in directories: what the facts read (which daemon a host runs may be
/// known only from its facts, and reading both is one round trip all the same).
pub const EVERY_DROPIN_DIR: [DropinDir; 7] = [
    TIMESYNCD_DIRS[0],
    TIMESYNCD_DIRS[1],
    TIMESYNCD_DIRS[2],
    TIMESYNCD_DIRS[3],
    CHRONY_DIRS[0],
    CHRONY_DIRS[1],
    CHRONY_DIRS[2],
];

/// The drop-in directories `daemon` reads.
#[must_use]
pub fn dropin_dirs(daemon: Daemon) -> &'static [DropinDir] {
    match daemon {
        Daemon::Chrony => &CHRONY_DIRS,
        Daemon::Timesyncd => &TIMESYNCD_DIRS,
    }
}

/// One server the daemon will use, and the file that names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub server: String,
    pub file: String,
}

/// What the daemon will use once the plan is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// The daemon these are the settings of.
    #[serde(skip)]
    pub daemon: Daemon,
    /// The servers, in the order the daemon reads them.
    pub servers: Vec<Source>,
    /// timesyncd only: no `NTP=` server is left, so these are its `FallbackNTP=` list (empty:
    /// its compiled-in list).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
    /// The files besides clockprov's that the daemon reads, in its order.
    pub dropins: Vec<String>,
    /// What the inventory did not ask for: servers it did not name, its servers discarded,
    /// files that could not be read.
    pub warnings: Vec<String>,
}

impl Effective {
    fn new(daemon: Daemon) -> Effective {
        Effective {
            daemon,
            servers: Vec::new(),
            fallback: false,
            dropins: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Does anything besides clockprov's own file shape the servers?
    #[must_use]
    pub fn is_shaped_by_others(&self) -> bool {
        !self.dropins.is_empty() || !self.warnings.is_empty()
    }
}

/// A file as the daemon will read it: its text, or why it cannot be known.
enum Text {
    Read(String),
    Unknown(&'static str),
}

/// The files the daemon reads, as they will be after apply: clockprov's rendered content where
/// it writes one, else what the facts found.
fn contents(desired: &DesiredState, facts: &HostFacts) -> BTreeMap<String, Text> {
    let mut files = BTreeMap::new();
    for (path, found) in &facts.files {
        let text = match found {
            PathFacts::File(file) => Text::Read(String::from_utf8_lossy(&file.content).into()),
            PathFacts::Absent => continue,
            PathFacts::Symlink => Text::Unknown("a symbolic link, not read"),
            PathFacts::NotAFile => Text::Unknown("not a regular file"),
        };
        files.insert(path.clone(), text);
    }
    for file in &desired.files {
        files.insert(file.path.clone(), Text::Read(file.content.clone()));
    }
    files
}

/// The drop-ins of `dirs` the daemon reads, in its order: sorted by name across directories,
/// a name taken from the first directory that has it.
fn dropins_in<'f>(
    dirs: &[DropinDir],
    files: &'f BTreeMap<String, Text>,
) -> Vec<(&'f str, &'f Text)> {
    let mut by_name: BTreeMap<&str, (&str, &Text)> = BTreeMap::new();
    for dir in dirs {
        for (path, text) in files {
            if let Some(name) = dir.name_of(path) {
                by_name.entry(name).or_insert((path.as_str(), text));
            }
        }
    }
    by_name.into_values().collect()
}

/// The effective servers of a host whose daemon is `desired.daemon`, once `desired` is written.
#[must_use]
pub fn of(desired: &DesiredState, facts: &HostFacts) -> Effective {
    let files = contents(desired, facts);
    // The main file is the one clockprov renders that is not a drop-in (its path differs
    // between distributions).
    let main = desired
        .files
        .iter()
        .map(|f| f.path.as_str())
        .find(|path| {
            dropin_dirs(desired.daemon)
                .iter()
                .all(|d| d.name_of(path).is_none())
        })
        .unwrap_or(desired.daemon.config_path());
    // The servers clockprov names, in whichever of its files (a main file or its own drop-in).
    let own: BTreeSet<String> = desired
        .files
        .iter()
        .flat_map(|f| match desired.daemon {
            Daemon::Timesyncd => {
                let list = timesyncd_lists(&[(&f.path, &f.content)]);
                list.ntp
                    .into_iter()
                    .chain(list.fallback.unwrap_or_default())
                    .collect::<Vec<_>>()
            }
            Daemon::Chrony => chrony_lines(&f.path, &f.content).sources,
        })
        .map(|s| s.server)
        .collect();
    let mut effective = match desired.daemon {
        Daemon::Timesyncd => timesyncd(main, &files),
        Daemon::Chrony => chrony(main, &files),
    };
    let used: BTreeSet<&str> = effective
        .servers
        .iter()
        .map(|s| s.server.as_str())
        .collect();
    let mut warnings = Vec::new();
    for source in &effective.servers {
        if !own.contains(&source.server) {
            warnings.push(format!(
                "server {} (from {}) is not in the inventory",
                source.server, source.file
            ));
        }
    }
    // Lost: the servers clockprov names as the list to use (`NTP=`, chrony's sources), not a
    // `FallbackNTP=` that is rightly unused while `NTP=` has servers.
    let named: BTreeSet<String> = desired
        .files
        .iter()
        .flat_map(|f| match desired.daemon {
            Daemon::Timesyncd => timesyncd_lists(&[(&f.path, &f.content)]).ntp,
            Daemon::Chrony => chrony_lines(&f.path, &f.content).sources,
        })
        .map(|s| s.server)
        .collect();
    let lost: Vec<&str> = named
        .iter()
        .map(String::as_str)
        .filter(|s| !used.contains(s))
        .collect();
    if !lost.is_empty() && desired.daemon == Daemon::Timesyncd {
        let by = effective
            .dropins
            .last()
            .map_or_else(|| main.to_owned(), Clone::clone);
        warnings.push(format!(
            "the inventory's servers {} are not used: a drop-in empties the list (last read: {by})",
            lost.join(" ")
        ));
    }
    warnings.append(&mut effective.warnings);
    effective.warnings = warnings;
    // "Also read" is about the files that are not clockprov's.
    effective
        .dropins
        .retain(|path| desired.files.iter().all(|f| f.path != *path));
    effective
}

/// timesyncd's two lists after reading `files` in order (`None`: `FallbackNTP=` never set).
#[derive(Debug, Default)]
struct TimesyncdLists {
    ntp: Vec<Source>,
    fallback: Option<Vec<Source>>,
}

/// systemd's unit-file syntax, as much of it as `NTP=`/`FallbackNTP=` need: `[Section]`
/// headers, `#`/`;` comment lines, a trailing `\` continues the line; in `[Time]`, a list
/// option appends its words, and an empty value resets it.
fn timesyncd_lists(files: &[(&str, &str)]) -> TimesyncdLists {
    let mut lists = TimesyncdLists::default();
    for (path, text) in files {
        let mut section = String::new();
        let mut logical = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if logical.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            logical.push_str(line);
            let line = std::mem::take(&mut logical);
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                name.trim().clone_into(&mut section);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if section != "Time" {
                continue;
            }
            let list = match key.trim() {
                "NTP" => &mut lists.ntp,
                "FallbackNTP" => lists.fallback.get_or_insert_with(Vec::new),
                _ => continue,
            };
            if value.trim().is_empty() {
                list.clear();
            }
            list.extend(value.split_whitespace().map(|server| Source {
                server: server.to_owned(),
                file: (*path).to_owned(),
            }));
        }
    }
    lists
}

fn timesyncd(main: &str, files: &BTreeMap<String, Text>) -> Effective {
    let dropins = dropins_in(dropin_dirs(Daemon::Timesyncd), files);
    let mut warnings = Vec::new();
    let mut read: Vec<(&str, &str)> = Vec::new();
    if let Some(Text::Read(text)) = files.get(main) {
        read.push((main, text));
    }
    for (path, text) in &dropins {
        match text {
            Text::Read(text) => read.push((path, text)),
            Text::Unknown(why) => warnings.push(format!(
                "{path} is {why}: what it sets is not known (a link to /dev/null masks it)"
            )),
        }
    }
    let lists = timesyncd_lists(&read);
    let fallback = lists.ntp.is_empty();
    let servers = if fallback {
        let list = lists.fallback.unwrap_or_default();
        if list.is_empty() {
            warnings.push(
                "no NTP= server is left: timesyncd uses its compiled-in FallbackNTP list"
                    .to_owned(),
            );
        }
        list
    } else {
        lists.ntp
    };
    Effective {
        daemon: Daemon::Timesyncd,
        servers,
        fallback,
        dropins: dropins.iter().map(|(p, _)| (*p).to_owned()).collect(),
        warnings,
    }
}

/// What one chrony file says about sources and the directories it includes.
#[derive(Debug, Default)]
struct ChronyLines {
    sources: Vec<Source>,
    confdirs: Vec<String>,
    sourcedirs: Vec<String>,
    includes: Vec<String>,
}

/// chrony's syntax: a directive and its words per line; `!`, `;`, `#`, `%` start a comment.
fn chrony_lines(path: &str, text: &str) -> ChronyLines {
    let mut lines = ChronyLines::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(directive) = words.next() else {
            continue;
        };
        if directive.starts_with(['!', ';', '#', '%']) {
            continue;
        }
        let directive = directive.to_ascii_lowercase();
        match directive.as_str() {
            "server" | "pool" | "peer" => lines.sources.extend(words.next().map(|s| Source {
                server: s.to_owned(),
                file: path.to_owned(),
            })),
            "confdir" => lines.confdirs.extend(words.map(str::to_owned)),
            "sourcedir" => lines.sourcedirs.extend(words.map(str::to_owned)),
            "include" => lines.includes.extend(words.next().map(str::to_owned)),
            _ => {}
        }
    }
    lines
}

/// The known directory `dir` names, with the suffix chrony reads there.
fn known_dir(dir: &str, suffix: &'static str) -> Option<DropinDir> {
    CHRONY_DIRS
        .iter()
        .copied()
        .find(|d| d.dir == dir.trim_end_matches('/') && d.suffix == suffix)
}

fn chrony(main: &str, files: &BTreeMap<String, Text>) -> Effective {
    let mut effective = Effective::new(Daemon::Chrony);
    let Some(Text::Read(text)) = files.get(main) else {
        return effective;
    };
    let mut main_lines = chrony_lines(main, text);
    effective.servers.append(&mut main_lines.sources);
    let mut unknown_dirs = Vec::new();
    let dirs = |names: &[String], suffix: &'static str, unknown: &mut Vec<String>| {
        names
            .iter()
            .filter_map(|d| {
                let known = known_dir(d, suffix);
                if known.is_none() {
                    unknown.push(d.clone());
                }
                known
            })
            .collect::<Vec<_>>()
    };
    let confdirs = dirs(&main_lines.confdirs, ".conf", &mut unknown_dirs);
    let mut sourcedirs = dirs(&main_lines.sourcedirs, ".sources", &mut unknown_dirs);
    let mut includes = main_lines.includes;
    // conf.d files may name source directories (and more includes) themselves.
    for (path, text) in dropins_in(&confdirs, files) {
        effective.dropins.push(path.to_owned());
        match text {
            Text::Read(text) => {
                let mut lines = chrony_lines(path, text);
                effective.servers.append(&mut lines.sources);
                sourcedirs.extend(dirs(&lines.sourcedirs, ".sources", &mut unknown_dirs));
                unknown_dirs.append(&mut lines.confdirs);
                includes.append(&mut lines.includes);
            }
            Text::Unknown(why) => effective
                .warnings
                .push(format!("{path} is {why}: what it sets is not known")),
        }
    }
    for dir in &sourcedirs {
        for (path, text) in dropins_in(std::slice::from_ref(dir), files) {
            if effective.dropins.iter().any(|p| p == path) {
                continue;
            }
            effective.dropins.push(path.to_owned());
            match text {
                Text::Read(text) => {
                    effective
                        .servers
                        .append(&mut chrony_lines(path, text).sources);
                }
                Text::Unknown(why) => effective
                    .warnings
                    .push(format!("{path} is {why}: its sources are not known")),
            }
        }
    }
    for dir in unknown_dirs.iter().chain(&includes) {
        effective.warnings.push(format!(
            "chrony also reads {dir}, which clockprov does not read: its sources are not shown"
        ));
    }
    effective
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::facts::FileFacts;
    use crate::render::DesiredFile;
    use proptest::prelude::*;
    use std::fmt::Write as _;

    fn file(content: &str) -> PathFacts {
        PathFacts::File(FileFacts {
            content: content.as_bytes().to_vec(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        })
    }

    fn desired(daemon: Daemon, content: &str) -> DesiredState {
        DesiredState {
            daemon,
            files: vec![DesiredFile {
                path: daemon.config_path().into(),
                content: content.into(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                kind: crate::render::FileKind::Config,
            }],
        }
    }

    fn facts(files: &[(&str, PathFacts)]) -> HostFacts {
        HostFacts {
            files: files
                .iter()
                .map(|(p, f)| ((*p).to_owned(), f.clone()))
                .collect(),
            ..HostFacts::default()
        }
    }

    fn servers(e: &Effective) -> Vec<&str> {
        e.servers.iter().map(|s| s.server.as_str()).collect()
    }

    const OWN: &str = "# NTP=commented\n[Time]\nNTP=10.0.0.1 10.0.0.2\n#FallbackNTP=x\n";

    #[test]
    fn timesyncd_alone_uses_the_inventory_servers_without_warnings() {
        let e = of(&desired(Daemon::Timesyncd, OWN), &facts(&[]));
        assert_eq!(servers(&e), ["10.0.0.1", "10.0.0.2"]);
        assert!(!e.is_shaped_by_others(), "{e:?}");
    }

    #[test]
    fn an_unused_fallback_of_the_inventory_is_no_warning() {
        let own = "[Time]\nNTP=\nNTP=10.0.0.1\nFallbackNTP=\nFallbackNTP=10.0.0.9\n";
        let e = of(&desired(Daemon::Timesyncd, own), &facts(&[]));
        assert_eq!(servers(&e), ["10.0.0.1"]);
        assert!(e.warnings.is_empty(), "{e:?}");
    }

    #[test]
    fn timesyncd_drop_ins_append_reset_and_sort_by_name_across_directories() {
        let f = facts(&[
            (
                "/etc/systemd/timesyncd.conf.d/cloud-init.conf",
                file("[Time]\nNTP=169.254.169.123\n"),
            ),
            // Hidden by /etc's file of the same name.
            (
                "/usr/lib/systemd/timesyncd.conf.d/cloud-init.conf",
                file("[Time]\nNTP=hidden\n"),
            ),
            (
                "/run/systemd/timesyncd.conf.d/50-dhcp.conf",
                file("[Network]\nNTP=not-time\n[Time]\nNTP=\\\n  a.example\n"),
            ),
            ("/etc/systemd/timesyncd.conf.d/README", file("NTP=x\n")),
        ]);
        let e = of(&desired(Daemon::Timesyncd, OWN), &f);
        assert_eq!(
            servers(&e),
            ["10.0.0.1", "10.0.0.2", "a.example", "169.254.169.123"]
        );
        assert_eq!(
            e.dropins,
            [
                "/run/systemd/timesyncd.conf.d/50-dhcp.conf",
                "/etc/systemd/timesyncd.conf.d/cloud-init.conf"
            ]
        );
        assert_eq!(
            e.warnings,
            [
                "server a.example (from /run/systemd/timesyncd.conf.d/50-dhcp.conf) is not in the inventory",
                "server 169.254.169.123 (from /etc/systemd/timesyncd.conf.d/cloud-init.conf) is not in the inventory"
            ]
        );

        // An empty NTP= discards clockprov's servers.
        let f = facts(&[(
            "/etc/systemd/timesyncd.conf.d/zz.conf",
            file("[Time]\nNTP=\nNTP=pool.example\n"),
        )]);
        let e = of(&desired(Daemon::Timesyncd, OWN), &f);
        assert_eq!(servers(&e), ["pool.example"]);
        assert_eq!(e.warnings.len(), 2, "{e:?}");
        assert!(
            e.warnings[1].contains("servers 10.0.0.1 10.0.0.2 are not used"),
            "{e:?}"
        );
    }

    #[test]
    fn timesyncd_falls_back_and_links_are_unknown() {
        let f = facts(&[
            (
                "/etc/systemd/timesyncd.conf.d/a.conf",
                file("[Time]\nNTP=\nFallbackNTP=f.example\n"),
            ),
            ("/etc/systemd/timesyncd.conf.d/b.conf", PathFacts::Symlink),
        ]);
        let e = of(&desired(Daemon::Timesyncd, OWN), &f);
        assert!(e.fallback);
        assert_eq!(servers(&e), ["f.example"]);
        assert!(
            e.warnings
                .iter()
                .any(|w| w.contains("b.conf is a symbolic link")),
            "{e:?}"
        );
    }

    const CHRONY: &str = "confdir /etc/chrony/conf.d\nserver 10.0.0.1 iburst\n! pool x\nsourcedir /run/chrony-dhcp\nsourcedir /etc/chrony/sources.d\n";

    #[test]
    fn chrony_reads_the_directories_its_main_file_names() {
        let f = facts(&[
            (
                "/etc/chrony/sources.d/ubuntu-ntp-pools.sources",
                file("pool 1.ntp.ubuntu.com iburst maxsources 1 nts prefer\n"),
            ),
            (
                "/etc/chrony/conf.d/ubuntu-nts.conf",
                file("ntstrustedcerts /x\n"),
            ),
            (
                "/etc/chrony/conf.d/x.conf",
                file("include /etc/other/*.conf\n"),
            ),
        ]);
        let e = of(&desired(Daemon::Chrony, CHRONY), &f);
        assert_eq!(servers(&e), ["10.0.0.1", "1.ntp.ubuntu.com"]);
        assert_eq!(e.dropins.len(), 3, "{e:?}");
        assert!(e.warnings[0].contains(
            "server 1.ntp.ubuntu.com (from /etc/chrony/sources.d/ubuntu-ntp-pools.sources)"
        ));
        assert!(e.warnings[1].contains("/etc/other/*.conf"), "{e:?}");

        // chrony 3.x: no confdir, no sourcedir: the directories do not count.
        let e = of(&desired(Daemon::Chrony, "server 10.0.0.1 iburst\n"), &f);
        assert_eq!(servers(&e), ["10.0.0.1"]);
        assert!(!e.is_shaped_by_others(), "{e:?}");
    }

    #[test]
    fn the_main_file_is_the_rendered_one_and_clockprovs_own_drop_in_counts_as_the_inventorys() {
        let mut want = desired(Daemon::Chrony, "sourcedir /etc/chrony/sources.d\n");
        want.files[0].path = "/etc/chrony.conf".into();
        want.files.push(DesiredFile {
            path: "/etc/chrony/sources.d/clockprov.sources".into(),
            ..want.files[0].clone()
        });
        want.files[1].content = "server 10.0.0.1 iburst\n".into();
        let f = facts(&[(
            "/etc/chrony/chrony.conf",
            file("server not-the-main-file.example\n"),
        )]);
        let e = of(&want, &f);
        assert_eq!(servers(&e), ["10.0.0.1"]);
        assert!(!e.is_shaped_by_others(), "{e:?}");
    }

    #[test]
    fn drop_in_names_are_what_the_shell_glob_matches() {
        let d = TIMESYNCD_DIRS[0];
        assert_eq!(
            d.name_of("/etc/systemd/timesyncd.conf.d/a.conf"),
            Some("a.conf")
        );
        for no in [
            "/etc/systemd/timesyncd.conf.d/.a.conf",
            "/etc/systemd/timesyncd.conf.d/.conf",
            "/etc/systemd/timesyncd.conf.d/a/b.conf",
            "/etc/systemd/timesyncd.conf.d/a.conf~",
            "/etc/systemd/timesyncd.conf.dx/a.conf",
            "/etc/systemd/timesyncd.conf",
        ] {
            assert_eq!(d.name_of(no), None, "{no}");
        }
    }

    proptest! {
        /// timesyncd's merge, against a model: each file a list of `NTP=` assignments (an
        /// empty one resets), read in order, some in other sections or commented out.
        #[test]
        fn timesyncd_lists_merge_as_a_model_says(
            files in proptest::collection::vec(
                proptest::collection::vec((0u8..4, proptest::collection::vec(0u8..5, 0..3)), 0..5),
                0..4,
            )
        ) {
            let mut model: Vec<String> = Vec::new();
            let mut texts = Vec::new();
            for (i, assignments) in files.iter().enumerate() {
                let mut text = String::from("[Time]\n");
                for (kind, servers) in assignments {
                    let names: Vec<String> = servers.iter().map(|s| format!("s{s}.example")).collect();
                    match kind {
                        // Counted: a plain line, or one continued on the next.
                        0 | 1 => {
                            if names.is_empty() {
                                model.clear();
                            }
                            model.extend(names.iter().cloned());
                            let sep = if *kind == 0 { " " } else { " \\\n  " };
                            let _ = writeln!(text, "NTP={}", names.join(sep));
                        }
                        // Not counted: commented out, or in another section.
                        2 => {
                            let _ = writeln!(text, "# NTP={}", names.join(" "));
                        }
                        _ => {
                            let _ = writeln!(text, "[Other]\nNTP={}\n[Time]", names.join(" "));
                        }
                    }
                }
                texts.push((format!("/f{i}"), text));
            }
            let read: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
            let got: Vec<String> = timesyncd_lists(&read).ntp.into_iter().map(|s| s.server).collect();
            prop_assert_eq!(got, model);
        }

        /// Any text in any file: an answer, never a panic.
        #[test]
        fn never_panics_on_any_files(main in ".{0,200}", a in ".{0,200}", b in "(\\[Time\\]\n|NTP=|FallbackNTP=|\\\\\n| |x|\n){0,40}") {
            for daemon in Daemon::ALL {
                let f = facts(&[
                    ("/etc/systemd/timesyncd.conf.d/a.conf", file(&a)),
                    ("/etc/systemd/timesyncd.conf.d/b.conf", file(&b)),
                    ("/etc/chrony/conf.d/a.conf", file(&a)),
                    ("/etc/chrony/sources.d/b.sources", file(&b)),
                ]);
                let _ = of(&desired(daemon, &main), &f);
                let _ = of(&desired(daemon, &format!("{CHRONY}{main}")), &f);
            }
        }
    }
}
