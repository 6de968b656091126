//! Saved plans (`plan --out PLAN`, `apply PLAN`, `show PLAN`): the plan a person reviewed is the
//! plan that runs, as Terraform's saved plans are.
//!
//! A plan file holds, per host, a summary of the facts the plan was made from (with a digest),
//! and the plan itself with every file's content before and after. `apply PLAN` reads each host
//! again and applies the saved plan only where the facts are still the same; a host whose facts
//! changed is refused, naming what changed. Nothing is rendered again: the saved contents are
//! what gets written. The format is in README.md, "Saved plans".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::daemon::{Daemon, DaemonVersion};
use crate::host::facts::{FileFacts, HostFacts, PathFacts};
use crate::operations::{HostResult, HostStatus};
use crate::plan::{FileAction, FileChange, HostPlan, PackageInstall, UnitChange};
use crate::render::{DesiredFile, FileKind};
use crate::utc::sha256_hex;
use crate::vendor_sources::SwitchOff;

/// Raised when a field's meaning changes or one is removed; fields are only added within one.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlanFile {
    pub(crate) format_version: u32,
    /// The clockprov that wrote it (`--version`).
    pub(crate) clockprov_version: String,
    /// When it was written, seconds since the Unix epoch (UTC).
    pub(crate) created_unix: u64,
    pub(crate) inventory: InventoryRef,
    pub(crate) hosts: Vec<SavedHost>,
}

/// The inventory the plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InventoryRef {
    /// Absolute path: `apply PLAN` reads it from there unless `-i` says otherwise.
    pub(crate) path: PathBuf,
    /// sha256 of the file's text.
    pub(crate) sha256: String,
}

/// One host of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedHost {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) role: String,
    pub(crate) os: String,
    /// sha256 of `facts` as serialized here (compact JSON, keys sorted).
    pub(crate) facts_sha256: String,
    pub(crate) facts: SavedFacts,
    pub(crate) plan: SavedPlan,
}

/// What the plan depends on: the facts that, if different, would make a different plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedFacts {
    /// `ID VERSION_ID` from os-release.
    pub(crate) os: String,
    /// Installed time daemon packages and their versions.
    pub(crate) packages: BTreeMap<String, String>,
    pub(crate) units: BTreeMap<String, SavedUnit>,
    pub(crate) files: BTreeMap<String, SavedPath>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedUnit {
    pub(crate) enabled: String,
    pub(crate) active: String,
}

/// A managed path as it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub(crate) enum SavedPath {
    Absent,
    NotAFile,
    Symlink,
    File {
        sha256: String,
        /// Octal, as `chmod` takes it.
        mode: String,
        owner: String,
        group: String,
    },
}

/// The plan of one host, as reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedPlan {
    pub(crate) daemon: Daemon,
    pub(crate) version: DaemonVersion,
    /// False: nothing to do; `apply PLAN` leaves the host alone.
    pub(crate) changes: bool,
    pub(crate) files: Vec<SavedFile>,
    pub(crate) package: Option<PackageInstall>,
    /// Vendor sources switched off (renamed to `PATH.clockprov-off`); their sha256s are those of
    /// the facts, which `apply PLAN` compares first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) switch_off: Vec<SwitchOff>,
    pub(crate) unit: UnitChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedFile {
    pub(crate) path: String,
    pub(crate) action: FileAction,
    /// None: the file was absent.
    pub(crate) before: Option<SavedContent>,
    pub(crate) after: SavedContent,
    pub(crate) diff: String,
    /// A private key (NTS): its `content`s are left empty (only the sha256 is kept); `apply PLAN`
    /// takes the key from the inventory again, and only if its sha256 is the reviewed one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedContent {
    /// sha256 of the exact bytes.
    pub(crate) sha256: String,
    /// The text (for `before`, invalid UTF-8 shown as U+FFFD: the sha256 is what is compared).
    pub(crate) content: String,
    pub(crate) mode: String,
    pub(crate) owner: String,
    pub(crate) group: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanFileError {
    #[error("reading the plan {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("writing the plan {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a clockprov plan: {error}")]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(
        "{path} has format_version {found}; this clockprov reads {FORMAT_VERSION} (make the plan again with this version)"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: host {host}: {what} (was the plan edited? make it again)")]
    Invalid {
        path: PathBuf,
        host: String,
        what: String,
    },
    #[error(
        "the inventory {inventory} changed since the plan {path} was made (sha256 {was}, now {now}); make the plan again"
    )]
    InventoryChanged {
        path: PathBuf,
        inventory: PathBuf,
        was: String,
        now: String,
    },
}

fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}

impl SavedFacts {
    /// The summary of `facts` a plan depends on.
    pub(crate) fn of(facts: &HostFacts) -> SavedFacts {
        SavedFacts {
            os: format!("{} {}", facts.os.id, facts.os.version_id),
            packages: facts.packages.clone(),
            units: facts
                .units
                .iter()
                .map(|(name, unit)| {
                    (
                        name.clone(),
                        SavedUnit {
                            enabled: unit.enabled.clone(),
                            active: unit.active.clone(),
                        },
                    )
                })
                .collect(),
            files: facts
                .files
                .iter()
                .map(|(path, found)| {
                    let saved = match found {
                        PathFacts::Absent => SavedPath::Absent,
                        PathFacts::NotAFile => SavedPath::NotAFile,
                        PathFacts::Symlink => SavedPath::Symlink,
                        PathFacts::File(file) => SavedPath::File {
                            sha256: sha256_hex(&file.content),
                            mode: octal(file.mode),
                            owner: file.owner.clone(),
                            group: file.group.clone(),
                        },
                    };
                    (path.clone(), saved)
                })
                .collect(),
        }
    }

    pub(crate) fn digest(&self) -> String {
        // Struct fields serialize in declaration order and maps are BTreeMaps: one text per value.
        sha256_hex(
            serde_json::to_string(self)
                .expect("facts serialize")
                .as_bytes(),
        )
    }

    /// What differs from `self` (as reviewed) in `now`, one phrase each.
    pub(crate) fn changes(&self, now: &SavedFacts) -> Vec<String> {
        let mut changes = Vec::new();
        if self.os != now.os {
            changes.push(format!("the system was {}, now {}", self.os, now.os));
        }
        for name in keys(&self.packages, &now.packages) {
            let (was, is) = (self.packages.get(name), now.packages.get(name));
            if was != is {
                changes.push(format!(
                    "package {name} was {}, now {}",
                    was.map_or("not installed", String::as_str),
                    is.map_or("not installed", String::as_str)
                ));
            }
        }
        for name in keys(&self.units, &now.units) {
            let (was, is) = (self.units.get(name), now.units.get(name));
            if was != is {
                let state = |u: Option<&SavedUnit>| {
                    u.map_or("unknown".to_owned(), |u| {
                        format!("{}/{}", u.enabled, u.active)
                    })
                };
                changes.push(format!(
                    "unit {name} was {}, now {} (enabled/active)",
                    state(was),
                    state(is)
                ));
            }
        }
        for path in keys(&self.files, &now.files) {
            if let Some(change) = path_change(path, self.files.get(path), now.files.get(path)) {
                changes.push(change);
            }
        }
        changes
    }
}

fn keys<'a, V>(a: &'a BTreeMap<String, V>, b: &'a BTreeMap<String, V>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}

fn path_change(path: &str, was: Option<&SavedPath>, is: Option<&SavedPath>) -> Option<String> {
    fn word(p: Option<&SavedPath>) -> &'static str {
        match p {
            None => "not read",
            Some(SavedPath::Absent) => "absent",
            Some(SavedPath::NotAFile) => "not a regular file",
            Some(SavedPath::Symlink) => "a symbolic link",
            Some(SavedPath::File { .. }) => "a file",
        }
    }
    match (was, is) {
        (
            Some(SavedPath::File {
                sha256: s1,
                mode: m1,
                owner: o1,
                group: g1,
            }),
            Some(SavedPath::File {
                sha256: s2,
                mode: m2,
                owner: o2,
                group: g2,
            }),
        ) => {
            let mut parts = Vec::new();
            if s1 != s2 {
                parts.push(format!(
                    "its sha256 differs (reviewed {}, now {})",
                    short(s1),
                    short(s2)
                ));
            }
            if m1 != m2 {
                parts.push(format!("mode was {m1}, now {m2}"));
            }
            if (o1, g1) != (o2, g2) {
                parts.push(format!("owner was {o1}:{g1}, now {o2}:{g2}"));
            }
            (!parts.is_empty()).then(|| format!("file {path}: {}", parts.join(", ")))
        }
        (was, is) if was == is => None,
        (was, is) => Some(format!("file {path} was {}, now {}", word(was), word(is))),
    }
}

/// The first 12 hex digits: enough to tell two contents apart in a message.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn content(bytes: &[u8], text: String, mode: u32, owner: &str, group: &str) -> SavedContent {
    SavedContent {
        sha256: sha256_hex(bytes),
        content: text,
        mode: octal(mode),
        owner: owner.to_owned(),
        group: group.to_owned(),
    }
}

impl SavedPlan {
    fn of(plan: &HostPlan) -> SavedPlan {
        SavedPlan {
            daemon: plan.daemon,
            version: plan.version,
            changes: plan.has_changes(),
            files: plan
                .files
                .iter()
                .map(|f| {
                    let secret = f.after.is_secret();
                    let text = |bytes: &[u8]| {
                        if secret {
                            String::new()
                        } else {
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                    };
                    SavedFile {
                        path: f.path.clone(),
                        action: f.action,
                        before: f.before.as_ref().map(|b| {
                            content(&b.content, text(&b.content), b.mode, &b.owner, &b.group)
                        }),
                        after: content(
                            f.after.content.as_bytes(),
                            text(f.after.content.as_bytes()),
                            f.after.mode,
                            &f.after.owner,
                            &f.after.group,
                        ),
                        diff: f.diff.clone(),
                        secret,
                    }
                })
                .collect(),
            package: plan.package.clone(),
            switch_off: plan.switch_off.clone(),
            unit: plan.unit.clone(),
        }
    }

    /// The plan to carry out, each file's `before` being what the host has now (whose digest
    /// matched the reviewed one), so that apply's own drift check compares exact bytes.
    ///
    /// A secret's content comes from `secret` (the inventory's key now), or stays empty.
    fn to_host_plan(
        &self,
        host: &str,
        family: crate::daemon::Family,
        before: impl Fn(&str) -> Option<FileFacts>,
        secret: impl Fn(&str) -> Option<String>,
    ) -> HostPlan {
        HostPlan {
            host: host.to_owned(),
            daemon: self.daemon,
            version: self.version,
            files: self
                .files
                .iter()
                .map(|f| FileChange {
                    path: f.path.clone(),
                    action: f.action,
                    before: before(&f.path),
                    after: DesiredFile {
                        path: f.path.clone(),
                        content: if f.secret {
                            secret(&f.path).unwrap_or_default()
                        } else {
                            f.after.content.clone()
                        },
                        // Checked when the file was loaded.
                        mode: u32::from_str_radix(&f.after.mode, 8).unwrap_or(0o644),
                        owner: f.after.owner.clone(),
                        group: f.after.group.clone(),
                        kind: if f.secret {
                            FileKind::Secret
                        } else if f.path == self.daemon.config_path_on(family) {
                            FileKind::Config
                        } else {
                            FileKind::Material
                        },
                    },
                    diff: f.diff.clone(),
                })
                .collect(),
            package: self.package.clone(),
            switch_off: self.switch_off.clone(),
            unit: self.unit.clone(),
        }
    }
}

impl SavedHost {
    /// The saved plan, if `facts` (read now) are the facts it was made from; else what changed.
    ///
    /// `nts` is the host's NTS as the inventory has it now: a saved plan carries no key, so the
    /// key is taken from there, and only if it is the one reviewed (same sha256).
    pub(crate) fn verify(
        &self,
        facts: &HostFacts,
        nts: &crate::nts::HostNts,
    ) -> Result<HostPlan, Vec<String>> {
        let now = SavedFacts::of(facts);
        let mut changes = self.facts.changes(&now);
        let key = match nts {
            crate::nts::HostNts::Server { key, .. } => Some(key),
            _ => None,
        };
        for file in self.plan.files.iter().filter(|f| f.secret) {
            let now = key.map(|k| sha256_hex(k.expose().as_bytes()));
            if now.as_deref() != Some(file.after.sha256.as_str()) {
                changes.push(format!(
                    "the inventory's key for {} is not the one reviewed (sha256 {}, now {})",
                    file.path,
                    short(&file.after.sha256),
                    now.as_deref().map_or("none", short)
                ));
            }
        }
        if !changes.is_empty() {
            return Err(changes);
        }
        let mut plan = self.plan.to_host_plan(
            &self.name,
            self.family(),
            |path| match facts.files.get(path) {
                Some(PathFacts::File(file)) => Some(file.clone()),
                _ => None,
            },
            |_| key.map(|k| k.expose().to_owned()),
        );
        // Not part of the saved plan: read now, so a rollback brings a running unit back up.
        plan.unit.active_before = plan.package.is_none() && facts.unit(plan.daemon).is_active();
        Ok(plan)
    }

    /// The row the reports print for this host, as planned.
    pub(crate) fn row(&self) -> HostResult {
        let plan = self.plan.to_host_plan(
            &self.name,
            self.family(),
            |path| {
                let file = self.plan.files.iter().find(|f| f.path == path)?;
                let before = file.before.as_ref()?;
                Some(FileFacts {
                    content: before.content.clone().into_bytes(),
                    mode: u32::from_str_radix(&before.mode, 8).unwrap_or(0),
                    owner: before.owner.clone(),
                    group: before.group.clone(),
                })
            },
            |_| None,
        );
        HostResult {
            name: self.name.clone(),
            address: self.address.clone(),
            role: if self.role == "server" {
                "server"
            } else {
                "client"
            },
            daemon: Some(self.plan.daemon),
            os: Some(self.os.clone()),
            status: if self.plan.changes {
                HostStatus::Change
            } else {
                HostStatus::Unchanged
            },
            error: None,
            error_kind: None,
            plan: Some(plan),
            effective: None,
            apply: None,
            facts: None,
        }
    }
}

impl PlanFile {
    /// The plan of `results` (every one planned: a plan with errors is not saved).
    pub(crate) fn of(inventory: &Path, inventory_source: &str, results: &[HostResult]) -> PlanFile {
        let hosts = results
            .iter()
            .filter_map(|r| {
                let (plan, facts) = (r.plan.as_ref()?, r.facts.as_ref()?);
                let facts = SavedFacts::of(facts);
                Some(SavedHost {
                    name: r.name.clone(),
                    address: r.address.clone(),
                    role: r.role.to_owned(),
                    os: r.os.clone().unwrap_or_default(),
                    facts_sha256: facts.digest(),
                    facts,
                    plan: SavedPlan::of(plan),
                })
            })
            .collect();
        PlanFile {
            format_version: FORMAT_VERSION,
            clockprov_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            inventory: InventoryRef {
                path: std::path::absolute(inventory).unwrap_or_else(|_| inventory.to_owned()),
                sha256: sha256_hex(inventory_source.as_bytes()),
            },
            hosts,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a plan serializes");
        text.push('\n');
        text
    }

    /// Write the plan to `path` (a temporary file renamed over it: never half a plan).
    pub(crate) fn write(&self, path: &Path) -> Result<(), PlanFileError> {
        let error = |error| PlanFileError::Write {
            path: path.to_owned(),
            error,
        };
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, self.to_json()).map_err(error)?;
        std::fs::rename(&temporary, path).map_err(error)
    }

    /// Read and check a plan: its version, its digests, and that it only names what clockprov
    /// itself would write (a plan file is input like any other: it must not be a way to write
    /// any file as root).
    pub(crate) fn load(path: &Path) -> Result<PlanFile, PlanFileError> {
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let text = std::fs::read_to_string(path).map_err(|error| PlanFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        let parse = |error| PlanFileError::Parse {
            path: path.to_owned(),
            error,
        };
        let version: Version = serde_json::from_str(&text).map_err(parse)?;
        if version.format_version != FORMAT_VERSION {
            return Err(PlanFileError::Version {
                path: path.to_owned(),
                found: version.format_version,
            });
        }
        let plan: PlanFile = serde_json::from_str(&text).map_err(parse)?;
        for host in &plan.hosts {
            host.check().map_err(|what| PlanFileError::Invalid {
                path: path.to_owned(),
                host: host.name.clone(),
                what,
            })?;
        }
        Ok(plan)
    }

    /// The inventory the plan names (or `given`), if it is still the one the plan was made from.
    pub(crate) fn check_inventory(
        &self,
        plan_path: &Path,
        given: Option<&Path>,
    ) -> Result<PathBuf, PlanFileError> {
        let inventory = given.map_or_else(|| self.inventory.path.clone(), Path::to_owned);
        let text = std::fs::read(&inventory).map_err(|error| PlanFileError::Read {
            path: inventory.clone(),
            error,
        })?;
        let now = sha256_hex(&text);
        if now != self.inventory.sha256 {
            return Err(PlanFileError::InventoryChanged {
                path: plan_path.to_owned(),
                inventory,
                was: short(&self.inventory.sha256).to_owned(),
                now: short(&now).to_owned(),
            });
        }
        Ok(inventory)
    }

    /// `show PLAN` as text: where the plan came from, then the plan as `plan` prints it.
    pub(crate) fn text(&self, path: &Path, style: crate::report::Style) -> String {
        let rows: Vec<HostResult> = self.hosts.iter().map(SavedHost::row).collect();
        format!(
            "Plan {} (format {}, clockprov {}, made at {} UTC)\nInventory {} (sha256 {})\n\n{}",
            crate::report::shown(&path.display().to_string()),
            self.format_version,
            crate::report::shown(&self.clockprov_version),
            crate::utc::Utc::from_unix(self.created_unix).readable(),
            crate::report::shown(&self.inventory.path.display().to_string()),
            short(&self.inventory.sha256),
            crate::report::plan_text(&rows, style)
        )
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 32
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl SavedHost {
    /// The layout of the system the plan was made for.
    fn family(&self) -> crate::daemon::Family {
        crate::daemon::Family::of(self.facts.os.split(' ').next().unwrap_or_default())
    }

    fn check(&self) -> Result<(), String> {
        if self.facts.digest() != self.facts_sha256 {
            return Err("its facts do not match facts_sha256".to_owned());
        }
        if self.role != "server" && self.role != "client" {
            return Err(format!("role {:?} is neither server nor client", self.role));
        }
        let daemon = self.plan.daemon;
        let family = self.family();
        let key = format!("{}/clockprov.key", crate::render::nts_dir(family));
        let nts = [
            format!("{}/clockprov.crt", crate::render::nts_dir(family)),
            format!("{}/clockprov-ca.crt", crate::render::nts_dir(family)),
        ];
        for file in &self.plan.files {
            let ours = crate::layout::written_paths(daemon, family).contains(&file.path.as_str())
                || (daemon == crate::daemon::Daemon::Chrony
                    && (nts.contains(&file.path) || (file.secret && file.path == key)));
            if !ours {
                return Err(format!(
                    "{} is not a file clockprov writes for {}",
                    file.path,
                    daemon.package()
                ));
            }
            if file.secret {
                // Kept out of the plan: the content comes from the inventory, by its sha256.
                if !file.after.content.is_empty() {
                    return Err(format!("{}: a secret's content is in the plan", file.path));
                }
            } else if sha256_hex(file.after.content.as_bytes()) != file.after.sha256 {
                return Err(format!("{}: content does not match its sha256", file.path));
            }
            if u32::from_str_radix(&file.after.mode, 8).map_or(true, |m| m > 0o7777) {
                return Err(format!(
                    "{}: mode {:?} is not octal",
                    file.path, file.after.mode
                ));
            }
            if !is_name(&file.after.owner) || !is_name(&file.after.group) {
                return Err(format!("{}: owner or group is not a user name", file.path));
            }
        }
        for step in &self.plan.switch_off {
            // One to switch off after the package install needs that install in the plan.
            if daemon != crate::daemon::Daemon::Chrony
                || family != crate::daemon::Family::Debian
                || !crate::vendor_sources::is_known(step)
                || (step.after_install && self.plan.package.is_none())
            {
                return Err(format!(
                    "{} is not a vendor source clockprov switches off for {}",
                    step.path,
                    daemon.package()
                ));
            }
        }
        if let Some(install) = &self.plan.package {
            let conflicting = daemon.conflicting().package();
            if install.package != daemon.package()
                || install.removes.as_deref().is_some_and(|r| r != conflicting)
            {
                return Err(format!(
                    "package {} is not {}",
                    install.package,
                    daemon.package()
                ));
            }
        }
        if self.plan.unit.unit != daemon.unit_on(family) {
            return Err(format!(
                "unit {} is not {}",
                self.plan.unit.unit,
                daemon.unit_on(family)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str, mode: u32) -> SavedPath {
        SavedPath::File {
            sha256: sha256_hex(content.as_bytes()),
            mode: octal(mode),
            owner: "root".into(),
            group: "root".into(),
        }
    }

    fn facts() -> SavedFacts {
        SavedFacts {
            os: "debian 12".into(),
            packages: [("chrony".to_owned(), "4.3-2".to_owned())].into(),
            units: [(
                "chrony.service".to_owned(),
                SavedUnit {
                    enabled: "enabled".into(),
                    active: "active".into(),
                },
            )]
            .into(),
            files: [("/etc/chrony/chrony.conf".to_owned(), file("a\n", 0o644))].into(),
        }
    }

    #[test]
    fn unchanged_facts_have_no_changes_and_one_digest() {
        assert!(facts().changes(&facts()).is_empty());
        assert_eq!(facts().digest(), facts().digest());
        assert_eq!(facts().digest().len(), 64);
    }

    #[test]
    fn every_change_is_named() {
        let mut now = facts();
        now.files
            .insert("/etc/chrony/chrony.conf".into(), file("b\n", 0o600));
        now.units.get_mut("chrony.service").unwrap().active = "inactive".into();
        now.packages
            .insert("systemd-timesyncd".into(), "252".into());
        let changes = facts().changes(&now);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(
            changes[0],
            "package systemd-timesyncd was not installed, now 252"
        );
        assert_eq!(
            changes[1],
            "unit chrony.service was enabled/active, now enabled/inactive (enabled/active)"
        );
        assert!(
            changes[2].starts_with(
                "file /etc/chrony/chrony.conf: its sha256 differs (reviewed 87428fc52280, now "
            ) && changes[2].ends_with("), mode was 0644, now 0600"),
            "{}",
            changes[2]
        );
        now.files
            .insert("/etc/chrony/chrony.conf".into(), SavedPath::Absent);
        assert_eq!(
            facts().changes(&now)[2],
            "file /etc/chrony/chrony.conf was a file, now absent"
        );
    }
}
