//! Vendor source files switched off (issue 12 item 3): Ubuntu 25.10+'s chrony reads
//! `/etc/chrony/sources.d/ubuntu-ntp-pools.sources` (`pool 1.ntp.ubuntu.com iburst maxsources 1
//! nts prefer` …) through the `sourcedir /etc/chrony/sources.d` of its own `chrony.conf`, so a
//! LAN host would keep preferring the public NTS pools beside the inventory's servers.
//!
//! The plan switches such a file off by renaming it to `NAME.sources.clockprov-off` in the same
//! directory: chrony's `sourcedir` reads only `*.sources`, the content is kept, and renaming it
//! back undoes it. It is a shown step of the plan (`~ switch off vendor source …`), part of the
//! host's transaction in `apply.sh` (drift-checked, recorded in the restart marker, rolled
//! back with the files), and it restarts chrony as a configuration change does.
//!
//! The file is not a dpkg conffile: Ubuntu's `chrony.postinst` installs it with `ucf` from
//! `/usr/share/chrony/ubuntu-ntp-pools.sources`, and ucf does not recreate a file the admin
//! deleted while the package's text is unchanged ("Not replacing deleted config file"). When a
//! later package ships another text, ucf may bring it back: the next plan then shows the step
//! again, and the earlier `.clockprov-off` is kept as a backup when the new one replaces it.
//!
//! A host whose plan installs chrony (the swap from timesyncd, or chrony purged) on a system
//! whose chrony package ships the file (Ubuntu 25.10+) has no file to read at plan time: the
//! package's postinst creates it during apply, after the facts were read. Its plan carries the
//! step all the same, marked `after_install`: apply renames the file right after the package
//! install, before chrony restarts with the new configuration, or reports that the package did
//! not create it (ucf keeps a file the admin deleted deleted). One apply converges.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::daemon::{Daemon, Family};
use crate::host::facts::{HostFacts, OsRelease, PathFacts};
use crate::plan::PlanError;
use crate::utc::sha256_hex;

/// The vendor files a chrony host's plan switches off when they are there (Debian layout).
pub const SWITCHED_OFF: [&str; 1] = ["/etc/chrony/sources.d/ubuntu-ntp-pools.sources"];

/// What a switched-off file's name gets: chrony's `sourcedir` reads only `*.sources`.
pub const OFF_SUFFIX: &str = ".clockprov-off";

/// The name `path` has once switched off.
#[must_use]
pub fn off_path(path: &str) -> String {
    format!("{path}{OFF_SUFFIX}")
}

/// The paths the facts read for this: the vendor files (read by their directory's glob too)
/// and their switched-off names.
#[must_use]
pub fn fact_paths() -> Vec<String> {
    SWITCHED_OFF
        .iter()
        .flat_map(|path| [(*path).to_owned(), off_path(path)])
        .collect()
}

/// One vendor file to switch off: `path` renamed to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchOff {
    pub path: String,
    /// `path` + [`OFF_SUFFIX`].
    pub to: String,
    /// sha256 of `path` as read: apply refuses if it is not that any more. `absent` for a step
    /// [`SwitchOff::after_install`]: the file was not there when the facts were read.
    pub sha256: String,
    /// `to` exists already (switched off by an earlier run, and the vendor file came back since):
    /// its sha256 as read. It is kept as a backup (`TO.clockprov-TIME.bak`) when replaced.
    pub replaces_sha256: Option<String>,
    /// The file is not there yet: the chrony package the same plan installs creates it (Ubuntu
    /// 25.10+'s postinst), and apply switches it off right after the install if it does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_install: bool,
}

/// The `sha256` of an [`SwitchOff::after_install`] step: the file was absent when read.
pub const ABSENT: &str = "absent";

/// The vendor files a host (or image) running `daemon` on a `family` system has, by the `files`
/// of its facts, and that its plan switches off (chrony on Debian and Ubuntu only).
///
/// # Errors
/// A switched-off name is in the way as something that is not a regular file (a link, a
/// directory): clockprov will not rename onto it.
pub fn plan(
    daemon: Daemon,
    family: Family,
    files: &BTreeMap<String, PathFacts>,
) -> Result<Vec<SwitchOff>, PlanError> {
    if daemon != Daemon::Chrony || family != Family::Debian {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    for path in SWITCHED_OFF {
        // A link or a directory where the vendor file should be is not the vendor's: left alone.
        let Some(PathFacts::File(file)) = files.get(path) else {
            continue;
        };
        let to = off_path(path);
        let replaces_sha256 = replaced(files, &to)?;
        steps.push(SwitchOff {
            path: path.to_owned(),
            to,
            sha256: sha256_hex(&file.content),
            replaces_sha256,
            after_install: false,
        });
    }
    Ok(steps)
}

/// Does the chrony package of this system create the vendor files (Ubuntu 25.10+'s postinst)?
#[must_use]
pub fn package_creates(os: &OsRelease) -> bool {
    crate::daemon::is_ubuntu_25_10_or_later(&os.id, &os.version_id)
}

/// The vendor files a plan that installs `daemon`'s package on a system `os` switches off
/// after that install: those the package creates and the facts found absent (a file already
/// there, left by a removed but not purged chrony, gets [`plan`]'s ordinary step).
///
/// # Errors
/// As [`plan`]: a switched-off name in the way that is not a regular file.
pub fn after_install(
    daemon: Daemon,
    os: &OsRelease,
    files: &BTreeMap<String, PathFacts>,
) -> Result<Vec<SwitchOff>, PlanError> {
    if daemon != Daemon::Chrony || !package_creates(os) {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    for path in SWITCHED_OFF {
        // Not read (facts of an older clockprov), or something there already: not this step's.
        if files.get(path) != Some(&PathFacts::Absent) {
            continue;
        }
        let to = off_path(path);
        steps.push(SwitchOff {
            path: path.to_owned(),
            replaces_sha256: replaced(files, &to)?,
            to,
            sha256: ABSENT.to_owned(),
            after_install: true,
        });
    }
    Ok(steps)
}

/// What the switched-off name `to` holds as read: its sha256 when a file (kept as a backup when
/// replaced), nothing when absent; a link or a directory is refused.
fn replaced(files: &BTreeMap<String, PathFacts>, to: &str) -> Result<Option<String>, PlanError> {
    match files.get(to) {
        None | Some(PathFacts::Absent) => Ok(None),
        Some(PathFacts::File(old)) => Ok(Some(sha256_hex(&old.content))),
        Some(PathFacts::Symlink) => Err(PlanError::Symlink {
            path: to.to_owned(),
        }),
        Some(PathFacts::NotAFile) => Err(PlanError::NotAFile {
            path: to.to_owned(),
        }),
    }
}

/// `facts` as they will be once `steps` are applied: each switched-off file absent, its
/// content under its new name (what the effective settings are computed from).
#[must_use]
pub fn applied(facts: &HostFacts, steps: &[SwitchOff]) -> HostFacts {
    let mut after = facts.clone();
    // A file the package creates during apply is not in the facts: it is gone again after.
    for step in steps.iter().filter(|step| !step.after_install) {
        if let Some(found) = after.files.insert(step.path.clone(), PathFacts::Absent) {
            after.files.insert(step.to.clone(), found);
        }
    }
    after
}

/// Is `step` one a plan file may name (checked when a saved plan is read: a plan file must not
/// be a way to rename any file as root)?
#[must_use]
pub fn is_known(step: &SwitchOff) -> bool {
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    SWITCHED_OFF.contains(&step.path.as_str())
        && step.to == off_path(&step.path)
        && if step.after_install {
            step.sha256 == ABSENT
        } else {
            hex(&step.sha256)
        }
        && step.replaces_sha256.as_deref().is_none_or(hex)
}

/// The plan's line for `step`.
#[must_use]
pub fn describe(step: &SwitchOff) -> String {
    let name = step.to.rsplit('/').next().unwrap_or(&step.to);
    if step.after_install {
        let kept = match step.replaces_sha256 {
            None => String::new(),
            Some(_) => format!(", the {name} of an earlier run kept as a backup"),
        };
        return format!(
            "switch off vendor source {} if installing chrony creates it (Ubuntu's package does; renamed to {name} right after the install{kept}: chrony reads only *.sources; rename it back to undo)",
            step.path
        );
    }
    match step.replaces_sha256 {
        None => format!(
            "switch off vendor source {} (renamed to {name}: chrony reads only *.sources; rename it back to undo)",
            step.path
        ),
        Some(_) => format!(
            "switch off vendor source {} again (it came back; renamed to {name}, the {name} of an earlier run kept as a backup)",
            step.path
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::facts::FileFacts;

    const POOLS: &str = "/etc/chrony/sources.d/ubuntu-ntp-pools.sources";

    fn file(text: &str) -> PathFacts {
        PathFacts::File(FileFacts {
            content: text.as_bytes().to_vec(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        })
    }

    fn facts(pools: Option<&str>, off: Option<PathFacts>) -> HostFacts {
        let mut facts = HostFacts::default();
        facts
            .files
            .insert(POOLS.into(), pools.map_or(PathFacts::Absent, file));
        facts
            .files
            .insert(off_path(POOLS), off.unwrap_or(PathFacts::Absent));
        facts
    }

    #[test]
    fn a_chrony_host_with_the_pools_file_switches_it_off() {
        let steps = plan(
            Daemon::Chrony,
            Family::Debian,
            &facts(Some("pool x\n"), None).files,
        )
        .unwrap();
        assert_eq!(
            steps,
            [SwitchOff {
                path: POOLS.into(),
                to: format!("{POOLS}.clockprov-off"),
                sha256: sha256_hex(b"pool x\n"),
                replaces_sha256: None,
                after_install: false,
            }]
        );
        assert!(is_known(&steps[0]));
        insta::assert_snapshot!(describe(&steps[0]), @"switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources (renamed to ubuntu-ntp-pools.sources.clockprov-off: chrony reads only *.sources; rename it back to undo)");
        let after = applied(&facts(Some("pool x\n"), None), &steps);
        assert_eq!(after.files[POOLS], PathFacts::Absent);
        assert_eq!(after.files[&off_path(POOLS)], file("pool x\n"));
    }

    #[test]
    fn nothing_to_do_without_the_file_or_for_timesyncd_or_rhel() {
        let none = plan(
            Daemon::Chrony,
            Family::Debian,
            &facts(None, Some(file("pool x\n"))).files,
        );
        assert_eq!(none, Ok(Vec::new()));
        for (daemon, family) in [
            (Daemon::Timesyncd, Family::Debian),
            (Daemon::Chrony, Family::RedHat),
        ] {
            assert_eq!(
                plan(daemon, family, &facts(Some("pool x\n"), None).files),
                Ok(Vec::new())
            );
        }
        let mut link = facts(None, None);
        link.files.insert(POOLS.into(), PathFacts::Symlink);
        assert_eq!(
            plan(Daemon::Chrony, Family::Debian, &link.files),
            Ok(Vec::new())
        );
    }

    #[test]
    fn a_file_that_came_back_is_switched_off_again_keeping_the_old_one() {
        let steps = plan(
            Daemon::Chrony,
            Family::Debian,
            &facts(Some("pool new\n"), Some(file("pool old\n"))).files,
        )
        .unwrap();
        assert_eq!(steps[0].replaces_sha256, Some(sha256_hex(b"pool old\n")));
        insta::assert_snapshot!(describe(&steps[0]), @"switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources again (it came back; renamed to ubuntu-ntp-pools.sources.clockprov-off, the ubuntu-ntp-pools.sources.clockprov-off of an earlier run kept as a backup)");
        assert_eq!(
            plan(
                Daemon::Chrony,
                Family::Debian,
                &facts(Some("pool new\n"), Some(PathFacts::Symlink)).files
            ),
            Err(PlanError::Symlink {
                path: off_path(POOLS)
            })
        );
    }

    #[test]
    fn a_plan_file_may_name_only_the_known_files() {
        let good = SwitchOff {
            path: POOLS.into(),
            to: off_path(POOLS),
            sha256: "a".repeat(64),
            replaces_sha256: None,
            after_install: false,
        };
        assert!(is_known(&good));
        for bad in [
            SwitchOff {
                path: "/etc/shadow".into(),
                to: off_path("/etc/shadow"),
                ..good.clone()
            },
            SwitchOff {
                to: "/etc/chrony/chrony.conf".into(),
                ..good.clone()
            },
            SwitchOff {
                sha256: "x'y".into(),
                ..good.clone()
            },
            SwitchOff {
                replaces_sha256: Some("absent".into()),
                ..good.clone()
            },
            // Only a step after the install may expect the file absent, and only it.
            SwitchOff {
                sha256: ABSENT.into(),
                ..good.clone()
            },
            SwitchOff {
                after_install: true,
                ..good.clone()
            },
        ] {
            assert!(!is_known(&bad), "{bad:?}");
        }
    }

    fn os(id: &str, version_id: &str) -> OsRelease {
        OsRelease {
            id: id.into(),
            version_id: version_id.into(),
            pretty_name: String::new(),
        }
    }

    #[test]
    fn installing_chrony_on_ubuntu_26_04_switches_off_the_file_its_package_creates() {
        let steps = after_install(
            Daemon::Chrony,
            &os("ubuntu", "26.04"),
            &facts(None, None).files,
        )
        .unwrap();
        assert_eq!(
            steps,
            [SwitchOff {
                path: POOLS.into(),
                to: off_path(POOLS),
                sha256: ABSENT.into(),
                replaces_sha256: None,
                after_install: true,
            }]
        );
        assert!(is_known(&steps[0]));
        insta::assert_snapshot!(describe(&steps[0]), @"switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources if installing chrony creates it (Ubuntu's package does; renamed to ubuntu-ntp-pools.sources.clockprov-off right after the install: chrony reads only *.sources; rename it back to undo)");
        // The effective settings are read without it, and an earlier switched-off file is kept.
        let mut with_old = facts(None, Some(file("pool old\n")));
        let after = applied(&with_old, &steps);
        assert_eq!(after, with_old);
        let steps = after_install(Daemon::Chrony, &os("ubuntu", "25.10"), &with_old.files).unwrap();
        assert_eq!(steps[0].replaces_sha256, Some(sha256_hex(b"pool old\n")));
        insta::assert_snapshot!(describe(&steps[0]), @"switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources if installing chrony creates it (Ubuntu's package does; renamed to ubuntu-ntp-pools.sources.clockprov-off right after the install, the ubuntu-ntp-pools.sources.clockprov-off of an earlier run kept as a backup: chrony reads only *.sources; rename it back to undo)");
        with_old.files.insert(off_path(POOLS), PathFacts::NotAFile);
        assert_eq!(
            after_install(Daemon::Chrony, &os("ubuntu", "26.04"), &with_old.files),
            Err(PlanError::NotAFile {
                path: off_path(POOLS)
            })
        );
    }

    #[test]
    fn no_step_after_the_install_where_the_package_creates_no_file_or_it_is_there() {
        let none = facts(None, None);
        for (daemon, id, version) in [
            (Daemon::Chrony, "ubuntu", "24.04"),
            (Daemon::Chrony, "debian", "13"),
            (Daemon::Chrony, "rocky", "9.4"),
            (Daemon::Timesyncd, "ubuntu", "26.04"),
        ] {
            assert_eq!(
                after_install(daemon, &os(id, version), &none.files),
                Ok(Vec::new()),
                "{daemon:?} {id} {version}"
            );
        }
        // Left by a removed chrony (dpkg's `rc`): plan's ordinary step switches it off.
        let left = facts(Some("pool x\n"), None);
        assert_eq!(
            after_install(Daemon::Chrony, &os("ubuntu", "26.04"), &left.files),
            Ok(Vec::new())
        );
        assert!(!plan(Daemon::Chrony, Family::Debian, &left.files).unwrap()[0].after_install);
        // Facts that did not read the path (an older clockprov's saved facts): no step.
        assert_eq!(
            after_install(Daemon::Chrony, &os("ubuntu", "26.04"), &BTreeMap::new()),
            Ok(Vec::new())
        );
    }
}
