//! The two time daemons clockprov manages, and what differs between their versions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The systems whose layout clockprov knows, as `ID:VERSION_ID` from os-release: the one list
/// that `render --os` (and anything else that names a system) checks against.
pub const SUPPORTED_SYSTEMS: [&str; 7] = [
    "debian:12",
    "debian:13",
    "ubuntu:20.04",
    "ubuntu:22.04",
    "ubuntu:24.04",
    "ubuntu:25.10",
    "ubuntu:26.04",
];

/// Is `id_version` (`ID:VERSION_ID`) one of [`SUPPORTED_SYSTEMS`]?
#[must_use]
pub fn is_supported_system(id_version: &str) -> bool {
    SUPPORTED_SYSTEMS.contains(&id_version)
}

/// [`SUPPORTED_SYSTEMS`] for a message: `debian:12, debian:13, ...`.
#[must_use]
pub fn supported_systems() -> String {
    SUPPORTED_SYSTEMS.join(", ")
}

/// Systems people still run that clockprov refuses, and why it cannot manage them: refused
/// at plan rather than half-working.
const KNOWN_UNSUPPORTED: [(&str, &str); 2] = [
    (
        "ubuntu:18.04",
        "timesyncd is part of the systemd package there, bash 4.4 has no $EPOCHREALTIME for check, and systemd 237 has no `timedatectl show`",
    ),
    (
        "debian:10",
        "timesyncd is part of the systemd package there, and systemd 241 has no `timedatectl show-timesync`",
    ),
];

/// A host's system is not one of [`SUPPORTED_SYSTEMS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported OS {name} ({id_version}){}; supported: {}", .why.map(|w| format!(": {w}")).unwrap_or_default(), supported_systems())]
pub struct UnsupportedOs {
    /// The system's own name (os-release `PRETTY_NAME`), as the host gave it.
    pub name: String,
    /// `ID:VERSION_ID`.
    pub id_version: String,
    pub why: Option<&'static str>,
}

/// Refuse a system clockprov does not know: `id` and `version_id` from os-release, `name` its
/// `PRETTY_NAME` for the message.
///
/// # Errors
/// `ID:VERSION_ID` is not one of [`SUPPORTED_SYSTEMS`].
pub fn check_supported(id: &str, version_id: &str, name: &str) -> Result<(), UnsupportedOs> {
    let id_version = format!("{id}:{version_id}");
    if is_supported_system(&id_version) {
        return Ok(());
    }
    let name = if name.is_empty() {
        if id.is_empty() {
            "unknown (os-release has no ID)".to_owned()
        } else {
            id.to_owned()
        }
    } else {
        name.to_owned()
    };
    let why = KNOWN_UNSUPPORTED
        .iter()
        .find(|(system, _)| *system == id_version)
        .map(|(_, why)| *why);
    Err(UnsupportedOs {
        name,
        id_version,
        why,
    })
}

/// A time daemon: its Debian package, systemd unit and configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Daemon {
    Chrony,
    Timesyncd,
}

impl Daemon {
    pub const ALL: [Daemon; 2] = [Daemon::Chrony, Daemon::Timesyncd];

    #[must_use]
    pub fn package(self) -> &'static str {
        match self {
            Daemon::Chrony => "chrony",
            Daemon::Timesyncd => "systemd-timesyncd",
        }
    }

    /// The name people call it by: `chrony`, `timesyncd`.
    #[must_use]
    pub fn short_name(self) -> &'static str {
        match self {
            Daemon::Chrony => "chrony",
            Daemon::Timesyncd => "timesyncd",
        }
    }

    #[must_use]
    pub fn unit(self) -> &'static str {
        match self {
            Daemon::Chrony => "chrony.service",
            Daemon::Timesyncd => "systemd-timesyncd.service",
        }
    }

    #[must_use]
    pub fn config_path(self) -> &'static str {
        match self {
            Daemon::Chrony => "/etc/chrony/chrony.conf",
            Daemon::Timesyncd => "/etc/systemd/timesyncd.conf",
        }
    }

    /// Both packages provide `time-daemon` and conflict on Debian and Ubuntu: installing one
    /// removes the other.
    #[must_use]
    pub fn conflicting(self) -> Daemon {
        match self {
            Daemon::Chrony => Daemon::Timesyncd,
            Daemon::Timesyncd => Daemon::Chrony,
        }
    }

    /// The shell command that checks a candidate configuration file without using it, when this
    /// daemon version has one (`chronyd -p` appeared in chrony 4.0).
    #[must_use]
    pub fn config_check(self, version: DaemonVersion) -> Option<&'static str> {
        match self {
            Daemon::Chrony if version.major >= 4 => Some("chronyd -p -f"),
            _ => None,
        }
    }

    /// The version a distribution installs, for rendering before the package is there.
    #[must_use]
    pub fn distribution_default(self, os_id: &str, os_version: &str) -> DaemonVersion {
        // Only supported systems get here (see `check_supported`).
        let (major, minor) = match (self, os_id, os_version) {
            (Daemon::Chrony, "ubuntu", "20.04") => (3, 5),
            (Daemon::Chrony, _, _) => (4, 3),
            (Daemon::Timesyncd, "ubuntu", "20.04") => (245, 0),
            (Daemon::Timesyncd, _, _) => (252, 0),
        };
        DaemonVersion { major, minor }
    }
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.package())
    }
}

/// The upstream version of a daemon, from a Debian version string such as `4.3-2+deb12u1`,
/// `1:3.5-6ubuntu6.2` or `245.4-4ubuntu3.22`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DaemonVersion {
    pub major: u32,
    pub minor: u32,
}

impl DaemonVersion {
    #[must_use]
    pub fn from_debian(version: &str) -> Option<DaemonVersion> {
        let upstream = version.split_once(':').map_or(version, |(_, rest)| rest);
        let mut numbers = upstream
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u32>);
        let major = numbers.next()?.ok()?;
        let minor = numbers.next().and_then(Result::ok).unwrap_or(0);
        Some(DaemonVersion { major, minor })
    }
}

impl fmt::Display for DaemonVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_debian_strings() {
        assert_eq!(
            DaemonVersion::from_debian("4.3-2+deb12u1"),
            Some(DaemonVersion { major: 4, minor: 3 })
        );
        assert_eq!(
            DaemonVersion::from_debian("1:3.5-6ubuntu6.2"),
            Some(DaemonVersion { major: 3, minor: 5 })
        );
        assert_eq!(
            DaemonVersion::from_debian("245.4-4ubuntu3.22"),
            Some(DaemonVersion {
                major: 245,
                minor: 4
            })
        );
        assert_eq!(DaemonVersion::from_debian(""), None);
    }

    #[test]
    fn unsupported_systems_are_refused_with_the_list() {
        assert_eq!(
            check_supported("debian", "12", "Debian GNU/Linux 12 (bookworm)"),
            Ok(())
        );
        assert_eq!(check_supported("ubuntu", "26.04", ""), Ok(()));
        let old = check_supported("ubuntu", "18.04", "Ubuntu 18.04.6 LTS").unwrap_err();
        assert_eq!(
            old.to_string(),
            format!(
                "unsupported OS Ubuntu 18.04.6 LTS (ubuntu:18.04): timesyncd is part of the systemd package there, bash 4.4 has no $EPOCHREALTIME for check, and systemd 237 has no `timedatectl show`; supported: {}",
                supported_systems()
            )
        );
        assert!(check_supported("debian", "10", "Debian GNU/Linux 10 (buster)").is_err());
        let suse = check_supported("opensuse-leap", "15.5", "openSUSE Leap 15.5").unwrap_err();
        assert_eq!(
            suse.to_string(),
            format!(
                "unsupported OS openSUSE Leap 15.5 (opensuse-leap:15.5); supported: {}",
                supported_systems()
            )
        );
        let nothing = check_supported("", "", "").unwrap_err();
        assert!(
            nothing
                .to_string()
                .starts_with("unsupported OS unknown (os-release has no ID)")
        );
    }

    #[test]
    fn only_chrony_4_checks_configs() {
        let v35 = DaemonVersion { major: 3, minor: 5 };
        let v43 = DaemonVersion { major: 4, minor: 3 };
        assert_eq!(Daemon::Chrony.config_check(v35), None);
        assert!(Daemon::Chrony.config_check(v43).is_some());
        assert_eq!(Daemon::Timesyncd.config_check(v43), None);
    }
}
