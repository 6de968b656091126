//! Facts: what a host has now, read in one command (one round trip).
//!
//! The remote side is a POSIX shell script that prints one record per line, `@@kind ...`, with
//! file contents base64-encoded so that any byte survives. Parsing is pure and unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use crate::daemon::{Daemon, DaemonVersion};
use crate::shell::quote;

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
    /// Something that is not a regular file (a directory, a symlink to one, a device).
    NotAFile,
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
    /// Units whose restart an interrupted apply still owes (`/run/clockprov/restart-pending.UNIT`).
    pub pending: std::collections::BTreeSet<String>,
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

    #[must_use]
    pub fn unit(&self, daemon: Daemon) -> UnitFacts {
        self.units.get(daemon.unit()).cloned().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactsError {
    #[error("the facts command printed no end marker (was it cut short?)")]
    Truncated,
    #[error("unexpected facts line {line:?}")]
    BadLine { line: String },
}

/// The script that prints the facts for `paths`, the state of `units` and both daemon packages.
///
/// It starts as few processes as it can: on a 2-core controller with hundreds of hosts, every
/// process a host forks is time the whole fleet waits for.
#[must_use]
pub fn script(paths: &[&str], units: &[&str]) -> String {
    let packages: Vec<&str> = Daemon::ALL.iter().map(|d| d.package()).collect();
    let quoted_units: Vec<String> = units.iter().map(|u| quote(u)).collect();
    let quoted_paths: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    format!(
        r#"LC_ALL=C; export LC_ALL
f=/etc/os-release; [ -r $f ] || f=/usr/lib/os-release
while IFS= read -r l || [ -n "$l" ]; do printf '@@osl %s\n' "$l"; done < $f
dpkg-query -W -f='@@pkg ${{Package}} ${{db:Status-Abbrev}} ${{Version}}\n' {packages} 2>/dev/null
for u in {units}; do systemctl show -p UnitFileState -p ActiveState "$u" 2>/dev/null | while IFS== read -r k v; do printf '@@unit %s %s %s\n' "$u" "$k" "$v"; done; done
for f in {paths}; do
  if [ -f "$f" ]; then printf '@@file %s %s ' "$f" "$(stat -L -c '%a %U %G' "$f")"; base64 -w0 "$f"; echo
  elif [ -e "$f" ]; then printf '@@notfile %s\n' "$f"
  else printf '@@absent %s\n' "$f"; fi
done
for m in /run/clockprov/restart-pending.*; do [ -e "$m" ] && printf '@@pending %s\n' "${{m#/run/clockprov/restart-pending.}}"; done
echo '@@end'
"#,
        packages = packages.join(" "),
        units = quoted_units.join(" "),
        paths = quoted_paths.join(" "),
    )
}

/// Parse what [`script`] printed.
///
/// # Errors
/// The output is cut short or has a line that is not a facts record.
pub fn parse(output: &str) -> Result<HostFacts, FactsError> {
    let mut facts = HostFacts::default();
    let mut ended = false;
    let mut os_release = String::new();
    let bad = |line: &str| FactsError::BadLine {
        line: line.chars().take(200).collect(),
    };
    for line in output.lines() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "@@osl" => {
                let _ = writeln!(os_release, "{rest}");
            }
            "@@pkg" => {
                let mut fields = rest.split_whitespace();
                let (Some(name), Some(status)) = (fields.next(), fields.next()) else {
                    return Err(bad(line));
                };
                // `ii` installed, `hi` held; `rc` (removed, config left) and `un` are absent.
                if status.len() >= 2 && &status[1..2] == "i" {
                    facts
                        .packages
                        .insert(name.to_owned(), fields.next().unwrap_or("").to_owned());
                }
            }
            "@@unit" => {
                // `@@unit UNIT PROPERTY VALUE`, from `systemctl show` (one process per unit).
                let mut fields = rest.splitn(3, ' ');
                let (Some(unit), Some(property)) = (fields.next(), fields.next()) else {
                    return Err(bad(line));
                };
                let value = fields.next().unwrap_or("").trim().to_owned();
                let entry = facts.units.entry(unit.to_owned()).or_default();
                match property {
                    "UnitFileState" => entry.enabled = value,
                    "ActiveState" => entry.active = value,
                    _ => {}
                }
            }
            "@@file" => {
                let fields: Vec<&str> = rest.splitn(5, ' ').collect();
                let [path, mode, owner, group, content] = fields[..] else {
                    return Err(bad(line));
                };
                let mode = u32::from_str_radix(mode, 8).map_err(|_| bad(line))?;
                let content = BASE64.decode(content.trim()).map_err(|_| bad(line))?;
                facts.files.insert(
                    path.to_owned(),
                    PathFacts::File(FileFacts {
                        content,
                        mode,
                        owner: owner.to_owned(),
                        group: group.to_owned(),
                    }),
                );
            }
            "@@notfile" => {
                facts.files.insert(rest.to_owned(), PathFacts::NotAFile);
            }
            "@@absent" => {
                facts.files.insert(rest.to_owned(), PathFacts::Absent);
            }
            "@@pending" => {
                facts.pending.insert(rest.to_owned());
            }
            "@@end" => ended = true,
            _ => return Err(bad(line)),
        }
    }
    facts.os = parse_os_release(&os_release);
    if ended {
        Ok(facts)
    } else {
        Err(FactsError::Truncated)
    }
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

    fn b64(text: &str) -> String {
        BASE64.encode(text)
    }

    #[test]
    fn parses_a_full_record() {
        let output = format!(
            "@@osl NAME=\"Ubuntu\"\n@@osl ID=ubuntu\n@@osl VERSION_ID=\"20.04\"\n@@osl PRETTY_NAME=\"Ubuntu 20.04.6 LTS\"\n@@pkg chrony ii  1:3.5-6ubuntu6.2\n@@pkg systemd-timesyncd rc  245.4\n\
             @@unit chrony.service ActiveState active\n@@unit chrony.service UnitFileState enabled\n\
             @@unit systemd-timesyncd.service UnitFileState \n@@unit systemd-timesyncd.service ActiveState inactive\n\
             @@file /etc/chrony/chrony.conf 644 root root {}\n@@absent /etc/systemd/timesyncd.conf\n@@end\n",
            b64("pool x iburst\n")
        );
        let facts = parse(&output).unwrap();
        assert_eq!(facts.os.id, "ubuntu");
        assert_eq!(facts.os.version_id, "20.04");
        assert_eq!(
            facts.installed_version(Daemon::Chrony),
            Some(DaemonVersion { major: 3, minor: 5 })
        );
        assert!(!facts.is_installed(Daemon::Timesyncd));
        assert!(facts.unit(Daemon::Chrony).is_active());
        assert!(!facts.unit(Daemon::Timesyncd).is_enabled());
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
    }

    #[test]
    fn an_empty_file_and_a_cut_output() {
        let facts = parse("@@file /e/x 600 root adm \n@@end\n").unwrap();
        let PathFacts::File(file) = &facts.files["/e/x"] else {
            panic!()
        };
        assert!(file.content.is_empty());
        assert_eq!(file.mode, 0o600);
        assert_eq!(parse("@@osl ID=x\n"), Err(FactsError::Truncated));
        assert!(matches!(
            parse("hello\n@@end\n"),
            Err(FactsError::BadLine { .. })
        ));
    }

    #[test]
    fn script_quotes_paths() {
        let s = script(&["/etc/chrony/chrony.conf"], &["chrony.service"]);
        assert!(s.contains("for u in 'chrony.service'; do"));
        assert!(s.contains("for f in '/etc/chrony/chrony.conf'; do"));
        assert!(s.contains("dpkg-query -W -f='@@pkg ${Package} ${db:Status-Abbrev} ${Version}\\n' chrony systemd-timesyncd"));
    }
}
