//! Facts about an offline root file system: what `bake` needs to know before planning.
//!
//! There is no running systemd or dpkg to ask, so the facts come from the files those tools
//! keep: `/etc/os-release`, `/var/lib/dpkg/status`, unit files and their `[Install]` sections,
//! and the enablement links under `/etc/systemd/system`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::daemon::Daemon;
use crate::host::facts::{FileFacts, OsRelease, PathFacts, parse_os_release};
use crate::image::path::GuestPath;
use crate::image::rootfs::{Entry, RootError, RootFs};

/// Where systemd looks for units installed by packages, in the order `systemctl enable` uses to
/// name a link's target. `/lib` first: on Debian and Ubuntu, `systemctl enable` links to
/// `/lib/systemd/system/...` even where `/lib` is a link to `/usr/lib`.
const UNIT_DIRS: [GuestPath; 3] = [
    SYSTEM_CONFIG_DIR,
    GuestPath::constant("/lib/systemd/system"),
    GuestPath::constant("/usr/lib/systemd/system"),
];

/// Where enablement links live.
pub const SYSTEM_CONFIG_DIR: GuestPath = GuestPath::constant("/etc/systemd/system");

/// Clock state that one machine leaves behind and no clone should inherit.
pub const TIMESYNCD_CLOCK: GuestPath = GuestPath::constant("/var/lib/systemd/timesync/clock");
pub const CHRONY_DRIFT: GuestPath = GuestPath::constant("/var/lib/chrony/chrony.drift");
pub const CHRONY_STATE_DIR: GuestPath = GuestPath::constant("/var/lib/chrony");
pub const MACHINE_ID: GuestPath = GuestPath::constant("/etc/machine-id");
const OS_RELEASE: GuestPath = GuestPath::constant("/etc/os-release");
const USR_OS_RELEASE: GuestPath = GuestPath::constant("/usr/lib/os-release");
const DPKG_STATUS: GuestPath = GuestPath::constant("/var/lib/dpkg/status");

/// A unit's `[Install]` section: what `systemctl enable` acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallSection {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub upheld_by: Vec<String>,
    pub alias: Vec<String>,
}

/// A unit as found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitFacts {
    pub unit: String,
    /// The unit file's path (the target enablement links point to); None: no such unit.
    pub file: Option<GuestPath>,
    pub install: InstallSection,
    /// `/etc/systemd/system/UNIT` is a link to `/dev/null`.
    pub masked: bool,
    /// Existing links under `/etc/systemd/system` that enable the unit: link path -> target.
    pub links: BTreeMap<GuestPath, String>,
}

/// Everything `bake` knows about an image before planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    pub os: OsRelease,
    /// Installed packages that matter (the daemons, systemd) and their Debian versions.
    pub packages: BTreeMap<String, String>,
    pub files: BTreeMap<String, PathFacts>,
    pub units: BTreeMap<String, UnitFacts>,
    /// Clock state files present in the image.
    pub clock_state: Vec<GuestPath>,
    /// `/etc/machine-id`'s content, trimmed, when it is a file.
    pub machine_id: Option<String>,
}

impl ImageFacts {
    #[must_use]
    pub fn unit(&self, daemon: Daemon) -> Option<&UnitFacts> {
        self.units.get(daemon.unit())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageFactsError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("{root}: {path}: {message}")]
    Path {
        root: String,
        path: String,
        message: String,
    },
    #[error("{root}: {path}: {message}")]
    Bad {
        root: String,
        path: String,
        message: String,
    },
}

/// Read the facts for `daemons` and the managed `paths` from `root`.
///
/// # Errors
/// The root cannot be read, a managed path is not a guest path, or a unit file names something
/// that is not a unit.
pub fn gather(
    root: &mut dyn RootFs,
    paths: &[&str],
    daemons: &[Daemon],
) -> Result<ImageFacts, ImageFactsError> {
    let os = match [OS_RELEASE, USR_OS_RELEASE]
        .iter()
        .find_map(|path| match root.resolve(path) {
            Ok(Some(_)) => Some(Ok(path)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
        .transpose()?
    {
        Some(path) => parse_os_release(&String::from_utf8_lossy(&root.read(path)?)),
        None => OsRelease::default(),
    };
    let status = match root.resolve(&DPKG_STATUS)? {
        Some(_) => String::from_utf8_lossy(&root.read(&DPKG_STATUS)?).into_owned(),
        None => String::new(),
    };
    let mut wanted: Vec<&str> = daemons.iter().map(|d| d.package()).collect();
    wanted.push("systemd");
    let packages = parse_dpkg_status(&status, &wanted);
    let mut files = BTreeMap::new();
    for path in paths {
        let guest = GuestPath::new(path).map_err(|e| ImageFactsError::Path {
            root: root.describe(),
            path: (*path).to_owned(),
            message: e.to_string(),
        })?;
        files.insert((*path).to_owned(), path_facts(root, &guest)?);
    }
    let top = root.list(&SYSTEM_CONFIG_DIR)?;
    let mut units = BTreeMap::new();
    for daemon in daemons {
        let facts = unit_facts(root, daemon.unit(), &top)?;
        units.insert(daemon.unit().to_owned(), facts);
    }
    let mut clock_state = Vec::new();
    for path in [TIMESYNCD_CLOCK, CHRONY_DRIFT] {
        if matches!(
            root.lstat(&path)?,
            Entry::File { .. } | Entry::Symlink { .. }
        ) {
            clock_state.push(path);
        }
    }
    for name in root.list(&CHRONY_STATE_DIR)? {
        // chrony's NTS dump: one `<server>.nts` file per NTS-KE server. A name that is not a
        // plain file name is not one of those.
        if std::path::Path::new(&name)
            .extension()
            .is_none_or(|e| e != "nts")
        {
            continue;
        }
        if let Ok(path) = CHRONY_STATE_DIR.join(&name)
            && matches!(root.lstat(&path)?, Entry::File { .. })
        {
            clock_state.push(path);
        }
    }
    let machine_id = match root.lstat(&MACHINE_ID)? {
        Entry::File { .. } => Some(
            String::from_utf8_lossy(&root.read(&MACHINE_ID)?)
                .trim()
                .to_owned(),
        ),
        _ => None,
    };
    Ok(ImageFacts {
        os,
        packages,
        files,
        units,
        clock_state,
        machine_id,
    })
}

fn owner_name(id: u32) -> String {
    if id == 0 {
        "root".to_owned()
    } else {
        id.to_string()
    }
}

fn path_facts(root: &mut dyn RootFs, path: &GuestPath) -> Result<PathFacts, ImageFactsError> {
    Ok(match root.lstat(path)? {
        Entry::Absent => PathFacts::Absent,
        Entry::File { mode, uid, gid } => PathFacts::File(FileFacts {
            content: root.read(path)?,
            mode,
            owner: owner_name(uid),
            group: owner_name(gid),
        }),
        // A link is not replaced: that would silently cut what it points to out of the config.
        Entry::Dir | Entry::Symlink { .. } | Entry::Other => PathFacts::NotAFile,
    })
}

fn unit_facts(
    root: &mut dyn RootFs,
    unit: &str,
    top: &[String],
) -> Result<UnitFacts, ImageFactsError> {
    let mut masked = false;
    let mut file = None;
    for dir in &UNIT_DIRS {
        let Ok(path) = dir.join(unit) else {
            continue;
        };
        match root.lstat(&path)? {
            Entry::Symlink { target } if *dir == SYSTEM_CONFIG_DIR && target == "/dev/null" => {
                masked = true;
            }
            Entry::File { .. } => {
                file = Some(path);
                break;
            }
            // A packaged unit reached through a link (an /etc link made by `systemctl link` is
            // not one: its target is the unit file, found in a later directory or not at all).
            Entry::Symlink { .. }
                if *dir != SYSTEM_CONFIG_DIR && root.resolve(&path)?.is_some() =>
            {
                file = Some(path);
                break;
            }
            _ => {}
        }
    }
    let install = match &file {
        Some(path) => {
            let text = String::from_utf8_lossy(&root.read(path)?).into_owned();
            parse_install(&text).map_err(|message| ImageFactsError::Bad {
                root: root.describe(),
                path: path.to_string(),
                message,
            })?
        }
        None => InstallSection::default(),
    };
    let mut links = BTreeMap::new();
    let mut names = vec![unit.to_owned()];
    names.extend(install.alias.iter().cloned());
    for entry in top {
        // Names in the image that are not plain file names are none of ours.
        let Ok(path) = SYSTEM_CONFIG_DIR.join(entry) else {
            continue;
        };
        if install.alias.contains(entry) {
            if let Entry::Symlink { target } = root.lstat(&path)? {
                links.insert(path, target);
            }
        } else if [".wants", ".requires", ".upholds"]
            .iter()
            .any(|suffix| entry.ends_with(suffix))
        {
            for inner in root.list(&path)? {
                if names.contains(&inner)
                    && let Ok(link) = path.join(&inner)
                    && let Entry::Symlink { target } = root.lstat(&link)?
                {
                    links.insert(link, target);
                }
            }
        }
    }
    Ok(UnitFacts {
        unit: unit.to_owned(),
        file,
        install,
        masked,
        links,
    })
}

/// Is `name` a unit name clockprov may put in a path (`multi-user.target`, `foo@bar.service`)?
#[must_use]
pub fn is_unit_name(name: &str) -> bool {
    let suffixes = [
        ".service", ".target", ".socket", ".timer", ".path", ".mount", ".slice",
    ];
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && suffixes
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.@-\\".contains(&b))
        && !name.contains('\\')
}

/// The `[Install]` section of a unit file.
///
/// # Errors
/// A value names something that is not a unit (it would become a path).
pub fn parse_install(text: &str) -> Result<InstallSection, String> {
    let mut install = InstallSection::default();
    let mut in_install = false;
    let mut logical = String::new();
    for raw in text.lines() {
        // A trailing backslash continues the line.
        if let Some(head) = raw.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let list = match key.trim() {
            "WantedBy" => &mut install.wanted_by,
            "RequiredBy" => &mut install.required_by,
            "UpheldBy" => &mut install.upheld_by,
            "Alias" => &mut install.alias,
            _ => continue,
        };
        let value = value.trim();
        if value.is_empty() {
            list.clear(); // an empty assignment resets the list, as in systemd
            continue;
        }
        for name in value.split_whitespace() {
            if !is_unit_name(name) {
                return Err(format!(
                    "[Install] {}={name:?} is not a unit name",
                    key.trim()
                ));
            }
            if !list.iter().any(|n| n == name) {
                list.push(name.to_owned());
            }
        }
    }
    Ok(install)
}

/// Versions of the `wanted` packages that dpkg's status file says are installed.
#[must_use]
pub fn parse_dpkg_status(text: &str, wanted: &[&str]) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let mut package = None;
        let mut installed = false;
        let mut version = None;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                package = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            }
        }
        if let (Some(package), true, Some(version)) = (package, installed, version)
            && wanted.contains(&package)
        {
            found.insert(package.to_owned(), version.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sections() {
        let timesyncd = "[Unit]\nDescription=Network Time Synchronization\n\n[Service]\nExecStart=!!/lib/systemd/systemd-timesyncd\n\n[Install]\nWantedBy=sysinit.target\nAlias=dbus-org.freedesktop.timesync1.service\n";
        let install = parse_install(timesyncd).unwrap();
        assert_eq!(install.wanted_by, vec!["sysinit.target"]);
        assert_eq!(
            install.alias,
            vec!["dbus-org.freedesktop.timesync1.service"]
        );
        let odd = "[Install]\n# comment\nWantedBy=multi-user.target \\\n  graphical.target\nWantedBy=multi-user.target\nRequiredBy=\nAlias=chronyd.service\n[Service]\nWantedBy=ignored.target\n";
        let install = parse_install(odd).unwrap();
        assert_eq!(
            install.wanted_by,
            vec!["multi-user.target", "graphical.target"]
        );
        assert!(install.required_by.is_empty());
        assert_eq!(install.alias, vec!["chronyd.service"]);
        assert!(parse_install("[Install]\nWantedBy=../../../etc/passwd\n").is_err());
        assert!(parse_install("[Install]\nAlias=x.service;rm\n").is_err());
    }

    #[test]
    fn dpkg_status_installed_only() {
        let status = "Package: chrony\nStatus: deinstall ok config-files\nVersion: 4.3-2\n\nPackage: systemd-timesyncd\nStatus: install ok installed\nPriority: optional\nVersion: 252.30-1~deb12u2\n\nPackage: systemd\nStatus: install ok installed\nVersion: 252.30-1~deb12u2\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2\n";
        let found = parse_dpkg_status(status, &["chrony", "systemd-timesyncd", "systemd"]);
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            vec!["systemd", "systemd-timesyncd"]
        );
        assert_eq!(found["systemd-timesyncd"], "252.30-1~deb12u2");
    }
}
