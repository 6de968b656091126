//! The two time daemons clockprov manages, and what differs between their versions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The systems whose layout clockprov knows, as `ID:VERSION_ID` from os-release: the one list
/// that `render --os` (and anything else that names a system) checks against. The RHEL family
/// is listed by major version: their os-release says `VERSION_ID="9.4"` (see [`system_key`]).
pub const SUPPORTED_SYSTEMS: [&str; 18] = [
    "debian:12",
    "debian:13",
    "ubuntu:20.04",
    "ubuntu:22.04",
    "ubuntu:24.04",
    "ubuntu:25.10",
    "ubuntu:26.04",
    "rhel:8",
    "rhel:9",
    "rhel:10",
    "rocky:8",
    "rocky:9",
    "rocky:10",
    "almalinux:8",
    "almalinux:9",
    "almalinux:10",
    "fedora:42",
    "fedora:43",
];

/// The entry of [`SUPPORTED_SYSTEMS`] a system's os-release answers to: `ID:VERSION_ID`, with
/// a RHEL rebuild's minor release dropped (`rocky` `9.4` is `rocky:9`: minor releases share
/// the layout).
#[must_use]
pub fn system_key(id: &str, version_id: &str) -> String {
    let version = match Family::of(id) {
        Family::RedHat if id != "fedora" => version_id.split('.').next().unwrap_or(version_id),
        _ => version_id,
    };
    format!("{id}:{version}")
}

/// Is `id_version` (`ID:VERSION_ID`) one of [`SUPPORTED_SYSTEMS`]?
#[must_use]
pub fn is_supported_system(id_version: &str) -> bool {
    let (id, version) = id_version.split_once(':').unwrap_or((id_version, ""));
    SUPPORTED_SYSTEMS.contains(&system_key(id, version).as_str())
}

/// The two layouts clockprov knows: where a distribution family keeps chrony, what its unit
/// is called, and how it installs packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Debian and Ubuntu: `/etc/chrony/chrony.conf`, `chrony.service`, dpkg and apt.
    Debian,
    /// RHEL, Rocky, Alma, Fedora: `/etc/chrony.conf`, `chronyd.service`, rpm and dnf.
    RedHat,
}

impl Family {
    /// The family of an os-release `ID`; anything not of the RHEL family is laid out as
    /// Debian (unsupported systems are refused before this matters, see [`check_supported`]).
    #[must_use]
    pub fn of(os_id: &str) -> Family {
        match os_id {
            "rhel" | "rocky" | "almalinux" | "fedora" => Family::RedHat,
            _ => Family::Debian,
        }
    }
}

/// Ubuntu 25.10 or later: chrony by default, and chrony's package ships the NTS pools in
/// `sources.d` (see [`crate::vendor_sources`]).
#[must_use]
pub fn is_ubuntu_25_10_or_later(os_id: &str, version_id: &str) -> bool {
    os_id == "ubuntu"
        && version_id
            .split_once('.')
            .and_then(|(y, m)| Some((y.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
            .is_some_and(|v| v >= (25, 10))
}

/// The daemon a client runs when the inventory does not choose: the one its distribution
/// installs by default (chrony on Ubuntu 25.10 and later and on the RHEL family).
#[must_use]
pub fn os_default_client_daemon(os_id: &str, version_id: &str) -> Daemon {
    if is_ubuntu_25_10_or_later(os_id, version_id) || Family::of(os_id) == Family::RedHat {
        Daemon::Chrony
    } else {
        Daemon::Timesyncd
    }
}

/// `daemon` cannot run on this system: timesyncd is not in the RHEL family's repositories.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{daemon} is not available on {name}: the RHEL family's repositories do not have it; use `daemon: chrony` (the default there)"
)]
pub struct UnavailableDaemon {
    pub daemon: Daemon,
    pub name: String,
}

/// Refuse a daemon the system cannot install.
///
/// # Errors
/// timesyncd on the RHEL family.
pub fn check_available(daemon: Daemon, os_id: &str, name: &str) -> Result<(), UnavailableDaemon> {
    if daemon == Daemon::Timesyncd && Family::of(os_id) == Family::RedHat {
        return Err(UnavailableDaemon {
            daemon,
            name: if name.is_empty() { os_id } else { name }.to_owned(),
        });
    }
    Ok(())
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
    if SUPPORTED_SYSTEMS.contains(&system_key(id, version_id).as_str()) {
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

    /// The unit on Debian and Ubuntu (images are of those only); [`Daemon::unit_on`] for a host.
    #[must_use]
    pub fn unit(self) -> &'static str {
        self.unit_on(Family::Debian)
    }

    /// The unit on a family's systems: chrony's is `chronyd.service` on the RHEL family.
    #[must_use]
    pub fn unit_on(self, family: Family) -> &'static str {
        match (self, family) {
            (Daemon::Chrony, Family::Debian) => "chrony.service",
            (Daemon::Chrony, Family::RedHat) => "chronyd.service",
            (Daemon::Timesyncd, _) => "systemd-timesyncd.service",
        }
    }

    /// The configuration file on Debian and Ubuntu; [`Daemon::config_path_on`] for a host.
    #[must_use]
    pub fn config_path(self) -> &'static str {
        self.config_path_on(Family::Debian)
    }

    /// The configuration file on a family's systems: `/etc/chrony.conf` on the RHEL family.
    #[must_use]
    pub fn config_path_on(self, family: Family) -> &'static str {
        match (self, family) {
            (Daemon::Chrony, Family::Debian) => "/etc/chrony/chrony.conf",
            (Daemon::Chrony, Family::RedHat) => "/etc/chrony.conf",
            (Daemon::Timesyncd, _) => "/etc/systemd/timesyncd.conf",
        }
    }

    /// Every path and unit either daemon has on any family: what facts read before the host's
    /// system (and so its layout, and a client's default daemon) is known, in one round trip.
    /// With clockprov's own timesyncd drop-in (see [`crate::layout`]).
    #[must_use]
    pub fn every_config_path() -> [&'static str; 4] {
        [
            Daemon::Chrony.config_path_on(Family::Debian),
            Daemon::Chrony.config_path_on(Family::RedHat),
            Daemon::Timesyncd.config_path(),
            crate::layout::TIMESYNCD_DROPIN,
        ]
    }

    /// See [`Daemon::every_config_path`].
    #[must_use]
    pub fn every_unit() -> [&'static str; 3] {
        [
            Daemon::Chrony.unit_on(Family::Debian),
            Daemon::Chrony.unit_on(Family::RedHat),
            Daemon::Timesyncd.unit(),
        ]
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
        let rhel_major = os_version.split('.').next().unwrap_or_default();
        let (major, minor) = match (self, os_id, os_version) {
            (Daemon::Chrony, "ubuntu", "20.04") => (3, 5),
            // RHEL 8.0-8.3 shipped 3.5, 8.4 on 4.1; 9.0 4.1, up to 4.6 in 9.6; 10 and Fedora 4.6.
            (Daemon::Chrony, "rhel" | "rocky" | "almalinux", _) if rhel_major == "8" => (4, 1),
            (Daemon::Chrony, "rhel" | "rocky" | "almalinux", _) if rhel_major == "9" => (4, 5),
            // The archives' own: 22.04 4.2, 24.04 4.5, 25.10 4.7, 26.04 4.8, Debian 13 4.6.1.
            (Daemon::Chrony, "rhel" | "rocky" | "almalinux" | "fedora", _)
            | (Daemon::Chrony, "debian", "13") => (4, 6),
            (Daemon::Chrony, "ubuntu", "22.04") => (4, 2),
            (Daemon::Chrony, "ubuntu", "24.04") => (4, 5),
            (Daemon::Chrony, "ubuntu", "25.10") => (4, 7),
            (Daemon::Chrony, "ubuntu", "26.04") => (4, 8),
            (Daemon::Chrony, _, _) => (4, 3),
            // systemd's: 20.04 245, 22.04 249, 24.04 255, 25.10 257, 26.04 259; Debian 12 252,
            // 13 257.
            (Daemon::Timesyncd, "ubuntu", "20.04") => (245, 0),
            (Daemon::Timesyncd, "ubuntu", "22.04") => (249, 0),
            (Daemon::Timesyncd, "ubuntu", "24.04") => (255, 0),
            (Daemon::Timesyncd, "ubuntu", "25.10") | (Daemon::Timesyncd, "debian", "13") => {
                (257, 0)
            }
            (Daemon::Timesyncd, "ubuntu", "26.04") => (259, 0),
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
    fn the_rhel_family_is_known_by_major_release() {
        assert_eq!(
            check_supported("rocky", "9.4", "Rocky Linux 9.4 (Blue Onyx)"),
            Ok(())
        );
        assert_eq!(check_supported("rhel", "10.0", ""), Ok(()));
        assert_eq!(check_supported("almalinux", "8.10", ""), Ok(()));
        assert_eq!(check_supported("fedora", "43", ""), Ok(()));
        assert!(check_supported("rhel", "7.9", "").is_err());
        assert!(check_supported("centos", "9", "").is_err());
        assert!(is_supported_system("rocky:9"));
        assert_eq!(Family::of("almalinux"), Family::RedHat);
        assert_eq!(Daemon::Chrony.unit_on(Family::RedHat), "chronyd.service");
        assert_eq!(
            Daemon::Chrony.config_path_on(Family::RedHat),
            "/etc/chrony.conf"
        );
        assert_eq!(
            Daemon::Chrony.distribution_default("rocky", "8.10"),
            DaemonVersion { major: 4, minor: 1 }
        );
        // A removed timesyncd is shown at its distribution's systemd version (jammy's 249, as
        // the swap test's 22.04 VM showed 252, Debian 12's, before).
        for (os, version, major) in [
            ("ubuntu", "20.04", 245),
            ("ubuntu", "22.04", 249),
            ("ubuntu", "24.04", 255),
            ("ubuntu", "26.04", 259),
            ("debian", "12", 252),
            ("debian", "13", 257),
        ] {
            assert_eq!(
                Daemon::Timesyncd.distribution_default(os, version).major,
                major,
                "{os} {version}"
            );
        }
        assert!(
            check_available(Daemon::Timesyncd, "rhel", "Red Hat Enterprise Linux 9.4").is_err()
        );
        assert!(check_available(Daemon::Timesyncd, "ubuntu", "").is_ok());
    }

    #[test]
    fn a_client_left_alone_runs_its_distribution_default() {
        for (id, version, daemon) in [
            ("ubuntu", "20.04", Daemon::Timesyncd),
            ("ubuntu", "24.04", Daemon::Timesyncd),
            ("ubuntu", "25.10", Daemon::Chrony),
            ("ubuntu", "26.04", Daemon::Chrony),
            ("debian", "13", Daemon::Timesyncd),
            ("rhel", "9.4", Daemon::Chrony),
            ("fedora", "42", Daemon::Chrony),
        ] {
            assert_eq!(
                os_default_client_daemon(id, version),
                daemon,
                "{id} {version}"
            );
        }
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
