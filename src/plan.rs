//! Planning: a pure function of what a host should have and what it has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::daemon::{Daemon, DaemonVersion};
use crate::host::facts::{FileFacts, HostFacts, PathFacts};
use crate::render::{DesiredFile, DesiredState};
use crate::vendor_sources::SwitchOff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileAction {
    Create,
    Update,
    /// Content is right; mode or owner is not.
    FixMetadata,
    Unchanged,
}

impl FileAction {
    /// The action as JSON spells it, for logs.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            FileAction::Create => "create",
            FileAction::Update => "update",
            FileAction::FixMetadata => "fix-metadata",
            FileAction::Unchanged => "unchanged",
        }
    }
}

/// What will happen to one managed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub action: FileAction,
    /// The file as read (None: absent). Apply refuses to act if the host's file no longer is this.
    #[serde(skip)]
    pub before: Option<FileFacts>,
    #[serde(skip)]
    pub after: DesiredFile,
    /// Unified diff, empty when the content is unchanged.
    pub diff: String,
}

impl FileChange {
    #[must_use]
    pub fn writes_content(&self) -> bool {
        matches!(self.action, FileAction::Create | FileAction::Update)
    }
}

/// A daemon package to install; the conflicting daemon it removes, if installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInstall {
    pub package: String,
    pub removes: Option<String>,
}

/// What will happen to a systemd unit.
#[allow(clippy::struct_excessive_bools)] // independent flags, each a field of plan's JSON
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitChange {
    pub unit: String,
    pub enable: bool,
    /// Restart because its configuration changed (once, after all files are written).
    pub restart: bool,
    /// Start because it is not running and nothing else will restart it.
    pub start: bool,
    /// The restart is owed by an earlier apply that was cut short after writing (its marker
    /// `/run/clockprov/restart-pending.UNIT` is on the host).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// The unit was active when planned: a rollback brings it back up (else leaves it stopped).
    #[serde(skip)]
    pub active_before: bool,
}

impl UnitChange {
    #[must_use]
    pub fn is_noop(&self) -> bool {
        !(self.enable || self.restart || self.start)
    }
}

/// Everything apply would do on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub daemon: Daemon,
    /// The daemon version the files were rendered for.
    pub version: DaemonVersion,
    pub files: Vec<FileChange>,
    pub package: Option<PackageInstall>,
    /// Vendor source files renamed out of the daemon's way (Ubuntu's pools file): see
    /// [`crate::vendor_sources`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switch_off: Vec<SwitchOff>,
    pub unit: UnitChange,
}

impl HostPlan {
    #[must_use]
    pub fn has_changes(&self) -> bool {
        self.package.is_some()
            || self.files.iter().any(|f| f.action != FileAction::Unchanged)
            || !self.switch_off.is_empty()
            || !self.unit.is_noop()
    }

    /// Does the plan change what the daemon reads (a file's content, a vendor source switched
    /// off)? Such a plan restarts the unit.
    #[must_use]
    pub fn changes_configuration(&self) -> bool {
        self.files.iter().any(FileChange::writes_content) || !self.switch_off.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{path} exists but is not a regular file; clockprov will not replace it")]
    NotAFile { path: String },
    #[error(
        "{path} is a symbolic link on the host; clockprov will not write through a link (make it a regular file)"
    )]
    Symlink { path: String },
    #[error("the facts do not cover {path}")]
    MissingFacts { path: String },
    #[error(
        "{path} is not UTF-8 text; clockprov edits only the managed lines of a text chrony.conf (chrony's own are ASCII)"
    )]
    NotText { path: String },
}

/// Compare `desired` with `facts` and say what to do on host `host`.
///
/// # Errors
/// A managed path is something other than a regular file, or was not read.
pub fn plan(host: &str, desired: &DesiredState, facts: &HostFacts) -> Result<HostPlan, PlanError> {
    let daemon = desired.daemon;
    let files = file_changes(host, &desired.files, &facts.files)?;
    let mut switch_off = crate::vendor_sources::plan(daemon, facts.family(), &facts.files)?;
    let package = (!facts.is_installed(daemon)).then(|| PackageInstall {
        package: daemon.package().to_owned(),
        removes: facts
            .is_installed(daemon.conflicting())
            .then(|| daemon.conflicting().package().to_owned()),
    });
    if package.is_some() {
        // The package creates its vendor files during apply, after these facts were read.
        switch_off.extend(crate::vendor_sources::after_install(
            daemon,
            &facts.os,
            &facts.files,
        )?);
    }
    let unit_facts = facts.unit(daemon);
    let unit_name = daemon.unit_on(facts.family());
    let pending = facts.pending.contains(unit_name);
    let restart = pending || files.iter().any(FileChange::writes_content) || !switch_off.is_empty();
    let unit = UnitChange {
        unit: unit_name.to_owned(),
        enable: package.is_some() || !unit_facts.is_enabled(),
        restart,
        start: !restart && (package.is_some() || !unit_facts.is_active()),
        pending,
        active_before: package.is_none() && unit_facts.is_active(),
    };
    Ok(HostPlan {
        host: host.to_owned(),
        daemon,
        version: facts.version_for(daemon),
        files,
        package,
        switch_off,
        unit,
    })
}

/// What to do to each of the `wanted` files, given what `found` says about them.
///
/// # Errors
/// A managed path is something other than a regular file, or was not read.
pub fn file_changes(
    host: &str,
    wanted: &[DesiredFile],
    found: &BTreeMap<String, PathFacts>,
) -> Result<Vec<FileChange>, PlanError> {
    let mut files = Vec::new();
    for want in wanted {
        let before = match found.get(&want.path) {
            Some(PathFacts::File(file)) => Some(file.clone()),
            Some(PathFacts::Absent) => None,
            Some(PathFacts::NotAFile) => {
                return Err(PlanError::NotAFile {
                    path: want.path.clone(),
                });
            }
            Some(PathFacts::Symlink) => {
                return Err(PlanError::Symlink {
                    path: want.path.clone(),
                });
            }
            None => {
                return Err(PlanError::MissingFacts {
                    path: want.path.clone(),
                });
            }
        };
        let action = match &before {
            None => FileAction::Create,
            Some(have) if have.content != want.content.as_bytes() => FileAction::Update,
            Some(have)
                if have.mode != want.mode
                    || have.owner != want.owner
                    || have.group != want.group =>
            {
                FileAction::FixMetadata
            }
            Some(_) => FileAction::Unchanged,
        };
        let diff = if matches!(action, FileAction::Create | FileAction::Update) {
            if want.is_secret() {
                secret_diff(host, &want.path, before.as_ref(), &want.content)
            } else {
                unified_diff(host, &want.path, before.as_ref(), &want.content)
            }
        } else {
            String::new()
        };
        files.push(FileChange {
            path: want.path.clone(),
            action,
            before,
            after: want.clone(),
            diff,
        });
    }
    Ok(files)
}

/// A secret's "diff": the headers of a unified diff, then its size and sha256 prefix, before
/// and after; never a byte of it.
#[must_use]
pub fn secret_diff(host: &str, path: &str, before: Option<&FileFacts>, after: &str) -> String {
    let describe = crate::nts::describe_secret;
    match before {
        None => format!(
            "--- {host}:{path} (absent)\n+++ {host}:{path} (clockprov)\n {} created\n",
            describe(after.as_bytes())
        ),
        Some(old) => format!(
            "--- {host}:{path}\n+++ {host}:{path} (clockprov)\n {} changed to {}\n",
            describe(&old.content),
            describe(after.as_bytes())
        ),
    }
}

/// A unified diff with `HOST:PATH` headers, as `diff -u` would print it.
#[must_use]
pub fn unified_diff(host: &str, path: &str, before: Option<&FileFacts>, after: &str) -> String {
    let old = before
        .map(|f| String::from_utf8_lossy(&f.content).into_owned())
        .unwrap_or_default();
    let old_header = if before.is_some() {
        format!("{host}:{path}")
    } else {
        format!("{host}:{path} (absent)")
    };
    let new_header = format!("{host}:{path} (clockprov)");
    let diff = TextDiff::from_lines(old.as_str(), after);
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&old_header, &new_header)
        .to_string();
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::facts::UnitFacts;

    fn desired(content: &str) -> DesiredState {
        DesiredState {
            daemon: Daemon::Timesyncd,
            files: vec![DesiredFile {
                path: "/etc/systemd/timesyncd.conf".into(),
                content: content.into(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                kind: crate::render::FileKind::Config,
            }],
        }
    }

    fn facts(
        content: Option<&str>,
        mode: u32,
        installed: bool,
        enabled: &str,
        active: &str,
    ) -> HostFacts {
        let mut facts = HostFacts::default();
        facts.os.id = "ubuntu".into();
        facts.os.version_id = "20.04".into();
        if installed {
            facts
                .packages
                .insert("systemd-timesyncd".into(), "245.4-4ubuntu3.22".into());
        }
        facts.units.insert(
            "systemd-timesyncd.service".into(),
            UnitFacts {
                enabled: enabled.into(),
                active: active.into(),
            },
        );
        facts.files.insert(
            "/etc/systemd/timesyncd.conf".into(),
            match content {
                Some(c) => PathFacts::File(FileFacts {
                    content: c.as_bytes().to_vec(),
                    mode,
                    owner: "root".into(),
                    group: "root".into(),
                }),
                None => PathFacts::Absent,
            },
        );
        facts
    }

    #[test]
    fn unchanged_host_has_nothing_to_do() {
        let plan = plan(
            "h",
            &desired("[Time]\nNTP=1.2.3.4\n"),
            &facts(
                Some("[Time]\nNTP=1.2.3.4\n"),
                0o644,
                true,
                "enabled",
                "active",
            ),
        )
        .unwrap();
        assert!(!plan.has_changes());
        assert_eq!(plan.files[0].action, FileAction::Unchanged);
    }

    #[test]
    fn changed_file_restarts_once_and_diffs() {
        let plan = plan(
            "h",
            &desired("[Time]\nNTP=1.2.3.4\n"),
            &facts(Some("[Time]\n#NTP=\n"), 0o644, true, "enabled", "active"),
        )
        .unwrap();
        assert_eq!(plan.files[0].action, FileAction::Update);
        assert!(plan.unit.restart && !plan.unit.start && !plan.unit.enable);
        insta::assert_snapshot!(plan.files[0].diff, @r"
        --- h:/etc/systemd/timesyncd.conf
        +++ h:/etc/systemd/timesyncd.conf (clockprov)
        @@ -1,2 +1,2 @@
         [Time]
        -#NTP=
        +NTP=1.2.3.4
        ");
    }

    #[test]
    fn mode_only_change_does_not_restart() {
        let plan = plan(
            "h",
            &desired("x\n"),
            &facts(Some("x\n"), 0o600, true, "enabled", "active"),
        )
        .unwrap();
        assert_eq!(plan.files[0].action, FileAction::FixMetadata);
        assert!(plan.unit.is_noop());
        assert!(plan.has_changes());
    }

    #[test]
    fn missing_package_is_installed_and_conflict_named() {
        let mut f = facts(None, 0, false, "", "");
        f.packages.insert("chrony".into(), "4.3-2".into());
        let plan = plan("h", &desired("x\n"), &f).unwrap();
        assert_eq!(
            plan.package,
            Some(PackageInstall {
                package: "systemd-timesyncd".into(),
                removes: Some("chrony".into())
            })
        );
        assert_eq!(plan.files[0].action, FileAction::Create);
        assert!(plan.unit.enable && plan.unit.restart);
        assert!(
            plan.files[0]
                .diff
                .starts_with("--- h:/etc/systemd/timesyncd.conf (absent)\n")
        );
    }

    #[test]
    fn installing_chrony_on_ubuntu_26_04_switches_off_the_pools_file_it_creates() {
        const POOLS: &str = "/etc/chrony/sources.d/ubuntu-ntp-pools.sources";
        let mut f = facts(None, 0, true, "enabled", "active");
        f.os.version_id = "26.04".into();
        for path in crate::vendor_sources::fact_paths() {
            f.files.insert(path, PathFacts::Absent);
        }
        let mut want = desired("x\n");
        want.daemon = Daemon::Chrony;
        want.files[0].path = "/etc/chrony/chrony.conf".into();
        f.files
            .insert("/etc/chrony/chrony.conf".into(), PathFacts::Absent);
        let swap = plan("h", &want, &f).unwrap();
        assert!(swap.package.is_some());
        assert_eq!(swap.switch_off.len(), 1, "{swap:?}");
        assert!(swap.switch_off[0].after_install && swap.switch_off[0].path == POOLS);
        assert!(swap.unit.restart, "chrony restarts once the file is off");
        // chrony installed (the file, if any, was read): no step after an install.
        f.packages.insert("chrony".into(), "4.8-2ubuntu1".into());
        let installed = plan("h", &want, &f).unwrap();
        assert_eq!(installed.switch_off, Vec::new());
    }

    #[test]
    fn stopped_unit_is_started() {
        let plan = plan(
            "h",
            &desired("x\n"),
            &facts(Some("x\n"), 0o644, true, "disabled", "inactive"),
        )
        .unwrap();
        assert!(plan.unit.enable && plan.unit.start && !plan.unit.restart);
    }

    #[test]
    fn a_symlink_is_refused() {
        let mut f = facts(None, 0, true, "enabled", "active");
        f.files
            .insert("/etc/systemd/timesyncd.conf".into(), PathFacts::Symlink);
        let error = plan("h", &desired("x\n"), &f).unwrap_err();
        assert_eq!(
            error,
            PlanError::Symlink {
                path: "/etc/systemd/timesyncd.conf".into()
            }
        );
        assert!(error.to_string().contains("symbolic link"), "{error}");
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let mut f = facts(None, 0, true, "enabled", "active");
        f.files
            .insert("/etc/systemd/timesyncd.conf".into(), PathFacts::NotAFile);
        assert_eq!(
            plan("h", &desired("x\n"), &f),
            Err(PlanError::NotAFile {
                path: "/etc/systemd/timesyncd.conf".into()
            })
        );
    }
}
