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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::daemon::{Daemon, Family};
use crate::host::facts::{HostFacts, PathFacts};
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
    /// sha256 of `path` as read: apply refuses if it is not that any more.
    pub sha256: String,
    /// `to` exists already (switched off by an earlier run, and the vendor file came back since):
    /// its sha256 as read. It is kept as a backup (`TO.clockprov-TIME.bak`) when replaced.
    pub replaces_sha256: Option<String>,
}

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
        let replaces_sha256 = match files.get(&to) {
            None | Some(PathFacts::Absent) => None,
            Some(PathFacts::File(old)) => Some(sha256_hex(&old.content)),
            Some(PathFacts::Symlink) => return Err(PlanError::Symlink { path: to }),
            Some(PathFacts::NotAFile) => return Err(PlanError::NotAFile { path: to }),
        };
        steps.push(SwitchOff {
            path: path.to_owned(),
            to,
            sha256: sha256_hex(&file.content),
            replaces_sha256,
        });
    }
    Ok(steps)
}

/// `facts` as they will be once `steps` are applied: each switched-off file absent, its
/// content under its new name (what the effective settings are computed from).
#[must_use]
pub fn applied(facts: &HostFacts, steps: &[SwitchOff]) -> HostFacts {
    let mut after = facts.clone();
    for step in steps {
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
        && hex(&step.sha256)
        && step.replaces_sha256.as_deref().is_none_or(hex)
}

/// The plan's line for `step`.
#[must_use]
pub fn describe(step: &SwitchOff) -> String {
    let name = step.to.rsplit('/').next().unwrap_or(&step.to);
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
        if let Some(text) = pools {
            facts.files.insert(POOLS.into(), file(text));
        }
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
        ] {
            assert!(!is_known(&bad), "{bad:?}");
        }
    }
}
