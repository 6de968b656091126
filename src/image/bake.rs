//! `bake`: the client configuration written into golden images, so that every clone boots a
//! timesyncd client of the inventory's servers.
//!
//! The same flow as for hosts: facts read from the image ([`crate::image::facts`]), a pure plan
//! ([`plan_image`]), then the writes, through a [`RootFs`] (a directory or a disk image).
//! Offline, services are enabled by creating the links `systemctl enable` would create; nothing
//! is started and nothing is installed.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::daemon::{Daemon, DaemonVersion};
use crate::image::facts::{
    self as image, ImageFacts, MACHINE_ID, SYSTEM_CONFIG_DIR, TIMESYNCD_CLOCK,
};
use crate::image::guestfs::{Disk, GuestfsRoot};
use crate::image::libvirt::{LibvirtError, LibvirtSpec};
use crate::image::path::{GuestPath, GuestPathError};
use crate::image::rootfs::{DirectoryRoot, Entry, RootError, RootFs};
use crate::inventory::{ImageSpec, Inventory, servers_of};
use crate::outcome::{ErrorKind, HostError};
use crate::plan::{FileAction, FileChange, PlanError, file_changes};
use crate::render::{RenderError, RenderInputs, Renderer};
use crate::vendor_sources::SwitchOff;

/// A link `systemctl enable` would create (or fix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkChange {
    pub link: GuestPath,
    pub target: GuestPath,
    /// What the link points to now, when it exists but points elsewhere.
    pub replaces: Option<String>,
}

/// A file removed from the image, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    pub path: GuestPath,
    pub why: String,
}

/// What happens to `/etc/machine-id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum MachineId {
    /// Absent or empty: systemd makes a new one at each clone's first boot.
    Fresh,
    /// Populated: every clone would share it.
    Populated { id: String, reset: bool },
}

/// Everything bake would do to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagePlan {
    pub image: String,
    pub daemon: Daemon,
    pub version: DaemonVersion,
    pub files: Vec<FileChange>,
    /// Vendor sources switched off (Ubuntu's pools file), as on hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub switch_off: Vec<SwitchOff>,
    /// Links that enable the daemon.
    pub enable: Vec<LinkChange>,
    /// Links that enable the conflicting daemon, removed.
    pub disable: Vec<Removal>,
    /// Clock state of the machine the image was made on.
    pub clock_state: Vec<Removal>,
    pub machine_id: MachineId,
}

impl ImagePlan {
    #[must_use]
    pub fn has_changes(&self) -> bool {
        self.files.iter().any(|f| f.action != FileAction::Unchanged)
            || !self.switch_off.is_empty()
            || !self.enable.is_empty()
            || !self.disable.is_empty()
            || !self.clock_state.is_empty()
            || matches!(self.machine_id, MachineId::Populated { reset: true, .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error(
        "{package} is not installed in the image (no {unit} unit): bake installs nothing; install it into the image first (e.g. virt-customize -a IMAGE --install {package})"
    )]
    DaemonAbsent {
        package: &'static str,
        unit: &'static str,
    },
    #[error("{unit} is masked in the image ({path} -> /dev/null); unmask it first")]
    Masked { unit: &'static str, path: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Facts(#[from] image::ImageFactsError),
    #[error(transparent)]
    Libvirt(#[from] LibvirtError),
    #[error(transparent)]
    Path(#[from] GuestPathError),
    #[error("{path} changed in the image since it was read; nothing more was written")]
    Drift { path: String },
    #[error(
        "{image}: the image changed between the plan and the bake ({what}); nothing was written: run bake again"
    )]
    Changed { image: String, what: String },
    #[error("{path}: no such file or directory")]
    Missing { path: String },
}

/// Options that change what a bake does.
#[derive(Debug, Clone, Copy, Default)]
pub struct BakeOptions {
    /// Empty a populated `/etc/machine-id`.
    pub reset_machine_id: bool,
}

/// Compare what the image should carry with what it has.
///
/// # Errors
/// The daemon is not in the image, is masked, or a managed path is not a regular file.
pub fn plan_image(
    name: &str,
    desired: &crate::render::DesiredState,
    facts: &ImageFacts,
    options: BakeOptions,
) -> Result<ImagePlan, BakeError> {
    let daemon = desired.daemon;
    let absent = || BakeError::DaemonAbsent {
        package: daemon.package(),
        unit: daemon.unit(),
    };
    let unit = facts.unit(daemon).ok_or_else(absent)?;
    let unit_file = unit.file.clone().ok_or_else(absent)?;
    if unit.masked {
        return Err(BakeError::Masked {
            unit: daemon.unit(),
            path: format!("{SYSTEM_CONFIG_DIR}/{}", daemon.unit()),
        });
    }
    let files = file_changes(name, &desired.files, &facts.files)?;
    let switch_off = crate::vendor_sources::plan(
        daemon,
        crate::daemon::Family::of(&facts.os.id),
        &facts.files,
    )?;
    let mut wanted_links: Vec<GuestPath> = Vec::new();
    for (targets, suffix) in [
        (&unit.install.wanted_by, "wants"),
        (&unit.install.required_by, "requires"),
        (&unit.install.upheld_by, "upholds"),
    ] {
        for target in targets {
            wanted_links.push(
                SYSTEM_CONFIG_DIR
                    .join(&format!("{target}.{suffix}"))?
                    .join(daemon.unit())?,
            );
        }
    }
    for alias in &unit.install.alias {
        wanted_links.push(SYSTEM_CONFIG_DIR.join(alias)?);
    }
    let enable = wanted_links
        .into_iter()
        .filter_map(|link| match unit.links.get(&link) {
            Some(target) if *target == unit_file.as_str() => None,
            other => Some(LinkChange {
                link,
                target: unit_file.clone(),
                replaces: other.cloned(),
            }),
        })
        .collect();
    let conflicting = daemon.conflicting();
    let disable = facts
        .unit(conflicting)
        .map(|u| {
            u.links
                .keys()
                .map(|link| Removal {
                    path: link.clone(),
                    why: format!(
                        "enables {}, which would fight {} over the clock",
                        conflicting.unit(),
                        daemon.unit()
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    let clock_state = facts
        .clock_state
        .iter()
        .map(|path| Removal {
            path: path.clone(),
            why: if *path == TIMESYNCD_CLOCK {
                "timesyncd's saved clock: clones would start from the image's time".to_owned()
            } else if std::path::Path::new(path.as_str())
                .extension()
                .is_some_and(|e| e == "nts")
            {
                "chrony's NTS cookies of the machine the image was made on".to_owned()
            } else {
                "chrony's drift of the machine the image was made on".to_owned()
            },
        })
        .collect();
    let machine_id = match &facts.machine_id {
        Some(id) if !id.is_empty() && id != "uninitialized" => MachineId::Populated {
            id: id.clone(),
            reset: options.reset_machine_id,
        },
        _ => MachineId::Fresh,
    };
    Ok(ImagePlan {
        image: name.to_owned(),
        daemon,
        version: version_for(facts, daemon),
        files,
        switch_off,
        enable,
        disable,
        clock_state,
        machine_id,
    })
}

/// The daemon version to render for. Where timesyncd is not its own package (before systemd
/// 243 on Debian), it is systemd's.
fn version_for(facts: &ImageFacts, daemon: Daemon) -> DaemonVersion {
    facts
        .packages
        .get(daemon.package())
        .or_else(|| {
            (daemon == Daemon::Timesyncd)
                .then(|| facts.packages.get("systemd"))
                .flatten()
        })
        .and_then(|v| DaemonVersion::from_debian(v))
        .unwrap_or_else(|| daemon.distribution_default(&facts.os.id, &facts.os.version_id))
}

/// Where an image of the inventory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTarget {
    /// A disk image file, or a root directory (relative paths already joined to the
    /// inventory's directory).
    Path(PathBuf),
    /// The disks of a libvirt domain.
    Libvirt(LibvirtSpec),
}

impl fmt::Display for ImageTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageTarget::Path(path) => write!(f, "{}", path.display()),
            ImageTarget::Libvirt(spec) => write!(f, "{spec}"),
        }
    }
}

/// An image of the inventory, opened.
pub struct OpenImage {
    pub name: String,
    pub target: ImageTarget,
    /// How the report names where the image is: its path, or its domain and disks.
    pub location: String,
    pub root: Box<dyn RootFs>,
    pub facts: ImageFacts,
    pub plan: ImagePlan,
}

/// Where image `spec` is. Relative paths are relative to the inventory's directory.
#[must_use]
pub fn image_target(inventory: &Inventory, spec: &ImageSpec) -> ImageTarget {
    match (&spec.path, &spec.libvirt) {
        (_, Some(libvirt)) => ImageTarget::Libvirt(libvirt.clone()),
        (Some(path), None) => ImageTarget::Path(inventory.resolve_path(path)),
        // The inventory refuses an image with neither; an empty path then fails to open.
        (None, None) => ImageTarget::Path(PathBuf::new()),
    }
}

/// Open the root of `target`: a directory, or a disk image (read-only when `readonly`), or the
/// disks of a libvirt domain that is shut off. Returns the root and how to name where it is.
///
/// # Errors
/// It does not exist, is locked or running, or cannot be opened.
pub fn open_root(
    target: &ImageTarget,
    readonly: bool,
) -> Result<(Box<dyn RootFs>, String), BakeError> {
    match target {
        ImageTarget::Path(path) => {
            let location = path.display().to_string();
            if path.is_dir() {
                return Ok((Box::new(DirectoryRoot::open(path, readonly)?), location));
            }
            if !path.exists() {
                return Err(BakeError::Missing { path: location });
            }
            let disk = Disk {
                path: path.clone(),
                format: None,
            };
            let root = GuestfsRoot::open(&location, &[disk], readonly)?;
            Ok((Box::new(root), location))
        }
        ImageTarget::Libvirt(spec) => {
            spec.ensure_shut_off()?;
            let disks = spec.disks()?;
            let paths: Vec<String> = disks.iter().map(|d| d.path.display().to_string()).collect();
            let location = format!("libvirt domain {}: {}", spec.domain, paths.join(", "));
            let root = GuestfsRoot::open(&location, &disks, readonly)?;
            // Again, now that the appliance holds the disks: a domain started in between is
            // refused here (and the appliance closed without writing).
            if let Err(e) = spec.ensure_shut_off() {
                let _ = Box::new(root).finish();
                return Err(e.into());
            }
            Ok((Box::new(root), location))
        }
    }
}

/// The facts bake plans from: both daemons' configuration, units and state (which one the
/// image gets may depend on its system).
fn read_facts(root: &mut dyn RootFs) -> Result<ImageFacts, BakeError> {
    let vendor = crate::vendor_sources::fact_paths();
    let paths: Vec<&str> = [
        Daemon::Timesyncd.config_path(),
        crate::layout::TIMESYNCD_DROPIN,
        Daemon::Chrony.config_path(),
        // The vendor's text of chrony.conf, for a main file written whole (src/layout.rs).
        crate::layout::CHRONY_VENDOR_COPY,
    ]
    .into_iter()
    .chain(vendor.iter().map(String::as_str))
    .collect();
    Ok(image::gather(root, &paths, &Daemon::ALL)?)
}

/// Open image `name`, read its facts, render and plan.
///
/// # Errors
/// Anything on the way; the image is then closed unchanged.
pub fn open_and_plan(
    inventory: &Inventory,
    renderer: &Renderer,
    name: &str,
    spec: &ImageSpec,
    target: &ImageTarget,
    readonly: bool,
    options: BakeOptions,
) -> Result<OpenImage, BakeError> {
    let (mut root, location) = open_root(target, readonly)?;
    let facts = read_facts(root.as_mut())?;
    let daemon = crate::inventory::Host::image_daemon(
        &inventory.file,
        spec,
        &facts.os.id,
        &facts.os.version_id,
    );
    let servers = servers_of(&inventory.file, spec.ntp.as_deref());
    let version = version_for(&facts, daemon);
    let desired = renderer.render_image(
        name,
        &servers,
        spec.fallback_ntp.as_deref(),
        RenderInputs {
            os_id: &facts.os.id,
            daemon,
            version,
        },
    )?;
    // chrony: the image's own chrony.conf with only the managed lines changed, as on a host.
    let (desired, warning) = crate::layout::with_chrony_layout(desired, &facts.files)?;
    if let Some(warning) = warning {
        tracing::warn!("{name}: {}", crate::report::shown(&warning));
    }
    let plan = plan_image(name, &desired, &facts, options)?;
    preflight(root.as_mut(), &plan)?;
    Ok(OpenImage {
        name: name.to_owned(),
        target: target.clone(),
        location,
        root,
        facts,
        plan,
    })
}

/// Check that every directory the plan writes into can be written (a directory root may have
/// links that lead nowhere bake will go), so that a root bake cannot finish fails before its
/// first write, and a dry run says so too.
fn preflight(root: &mut dyn RootFs, plan: &ImagePlan) -> Result<(), BakeError> {
    for file in &plan.files {
        if file.action != FileAction::Unchanged {
            // A drop-in directory the image lacks (timesyncd.conf.d) is made by the write.
            root.check_dir(&GuestPath::new(&file.path)?.parent(), true)?;
        }
    }
    for link in &plan.enable {
        root.check_dir(&link.link.parent(), true)?;
    }
    Ok(())
}

/// What differs between two readings of an image's facts, in words.
fn first_difference(before: &ImageFacts, now: &ImageFacts) -> Option<String> {
    if before.os != now.os {
        return Some("its os-release".to_owned());
    }
    if before.packages != now.packages {
        return Some("its installed packages".to_owned());
    }
    for (path, facts) in &before.files {
        if now.files.get(path) != Some(facts) {
            return Some(path.clone());
        }
    }
    for (unit, facts) in &before.units {
        if now.units.get(unit) != Some(facts) {
            return Some(format!("the unit files or enablement links of {unit}"));
        }
    }
    if before.clock_state != now.clock_state {
        return Some("its saved clock state".to_owned());
    }
    if before.machine_id != now.machine_id {
        return Some(MACHINE_ID.to_string());
    }
    (before != now).then(|| "its facts".to_owned())
}

/// Close an image opened read-only (for the plan shown before the question) and open it again
/// for writing; refuse if what bake reads from it is not what the plan was made from.
///
/// # Errors
/// It cannot be opened again, or it changed.
pub fn reopen_for_writing(image: OpenImage) -> Result<OpenImage, BakeError> {
    let OpenImage {
        name,
        target,
        location,
        root,
        facts,
        plan,
    } = image;
    root.finish()?;
    let (mut root, location_now) = open_root(&target, false)?;
    let now = match read_facts(root.as_mut()) {
        Ok(now) => now,
        Err(e) => {
            let _ = root.finish();
            return Err(e);
        }
    };
    if let Some(what) = first_difference(&facts, &now) {
        let _ = root.finish();
        return Err(BakeError::Changed {
            image: location,
            what,
        });
    }
    Ok(OpenImage {
        name,
        target,
        location: location_now,
        root,
        facts,
        plan,
    })
}

/// What bake did to one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BakeReport {
    pub written: Vec<String>,
    pub backups: Vec<String>,
    pub linked: Vec<String>,
    pub removed: Vec<String>,
}

/// Carry out `plan` on the open image, then flush and close it. An image opened read-only (to
/// show the plan before asking) is first opened again for writing ([`reopen_for_writing`]).
///
/// # Errors
/// A step fails, the image changed since it was read, or a managed file changed since it was
/// read; later steps are not taken.
pub fn execute(image: OpenImage, stamp: &str) -> Result<BakeReport, BakeError> {
    let image = if image.root.readonly() {
        reopen_for_writing(image)?
    } else {
        image
    };
    let OpenImage { mut root, plan, .. } = image;
    let mut report = BakeReport::default();
    for file in &plan.files {
        if file.action == FileAction::Unchanged {
            continue;
        }
        let path = GuestPath::new(&file.path)?;
        // Refuse to overwrite a file that changed since it was read (a directory target may be
        // a live chroot).
        let now = match root.lstat(&path)? {
            Entry::Absent => None,
            Entry::File { mode, .. } => Some((root.read(&path)?, mode)),
            _ => {
                return Err(BakeError::Drift {
                    path: file.path.clone(),
                });
            }
        };
        let before = file.before.as_ref().map(|b| (b.content.clone(), b.mode));
        if now != before {
            return Err(BakeError::Drift {
                path: file.path.clone(),
            });
        }
        let backup = file
            .before
            .as_ref()
            .map(|_| format!("{}.clockprov-{stamp}.bak", path.file_name()));
        root.write(
            &path,
            file.after.content.as_bytes(),
            file.after.mode,
            backup.as_deref(),
        )?;
        report.written.push(file.path.clone());
        report.backups.extend(
            backup
                .map(|name| path.parent().join(&name))
                .transpose()?
                .map(|p| p.to_string()),
        );
    }
    for step in &plan.switch_off {
        switch_off(root.as_mut(), step, stamp, &mut report)?;
    }
    for link in &plan.enable {
        root.symlink(&link.target, &link.link)?;
        report.linked.push(link.link.to_string());
    }
    for removal in plan.disable.iter().chain(&plan.clock_state) {
        root.remove(&removal.path)?;
        report.removed.push(removal.path.to_string());
    }
    if let MachineId::Populated { reset: true, .. } = plan.machine_id {
        // Empty, not absent: systemd then makes a new id at first boot and treats the boot as
        // the first one (ConditionFirstBoot), which is what a clone's boot is.
        let mode = match root.lstat(&MACHINE_ID)? {
            Entry::File { mode, .. } => mode,
            _ => 0o444,
        };
        root.write(&MACHINE_ID, b"", mode, None)?;
        report.written.push(MACHINE_ID.to_string());
    }
    root.finish()?;
    Ok(report)
}

/// Switch a vendor source off in an image: its content written under its `.clockprov-off` name
/// (an earlier one kept as a backup), then the file removed; refused if either changed since
/// it was read. Cut short between the two, both names hold the same content: nothing is lost,
/// and the next bake does it again.
fn switch_off(
    root: &mut dyn RootFs,
    step: &SwitchOff,
    stamp: &str,
    report: &mut BakeReport,
) -> Result<(), BakeError> {
    let drift = || BakeError::Drift {
        path: step.path.clone(),
    };
    let (path, to) = (GuestPath::new(&step.path)?, GuestPath::new(&step.to)?);
    let Entry::File { mode, .. } = root.lstat(&path)? else {
        return Err(drift());
    };
    let content = root.read(&path)?;
    if crate::utc::sha256_hex(&content) != step.sha256 {
        return Err(drift());
    }
    let replaced = match root.lstat(&to)? {
        Entry::Absent => None,
        Entry::File { .. } => Some(crate::utc::sha256_hex(&root.read(&to)?)),
        _ => {
            return Err(BakeError::Drift {
                path: step.to.clone(),
            });
        }
    };
    if replaced != step.replaces_sha256 {
        return Err(BakeError::Drift {
            path: step.to.clone(),
        });
    }
    let backup = replaced.map(|_| format!("{}.clockprov-{stamp}.bak", to.file_name()));
    root.write(&to, &content, mode, backup.as_deref())?;
    root.remove(&path)?;
    report.written.push(step.to.clone());
    report.removed.push(step.path.clone());
    if let Some(name) = backup {
        report.backups.push(to.parent().join(&name)?.to_string());
    }
    Ok(())
}

/// How an image fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStatus {
    /// Changes planned (dry run, or not confirmed yet).
    Change,
    /// Changes written.
    Baked,
    Unchanged,
    Failed,
}

/// One image's outcome, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub name: String,
    pub path: String,
    pub status: ImageStatus,
    /// `PRETTY_NAME` of the image's os-release.
    pub os: Option<String>,
    pub plan: Option<ImagePlan>,
    pub report: Option<BakeReport>,
    pub error: Option<String>,
    /// What kind of failure `error` is, for programs.
    pub error_kind: Option<ErrorKind>,
    pub seconds: f64,
}

impl ImageResult {
    #[must_use]
    pub fn failed(
        name: &str,
        location: &dyn std::fmt::Display,
        error: &HostError,
        seconds: f64,
    ) -> Self {
        ImageResult {
            name: name.to_owned(),
            path: location.to_string(),
            status: ImageStatus::Failed,
            os: None,
            plan: None,
            report: None,
            error: Some(error.message.clone()),
            error_kind: Some(error.kind),
            seconds,
        }
    }

    #[must_use]
    pub fn planned(image: &OpenImage, seconds: f64) -> Self {
        ImageResult {
            name: image.name.clone(),
            path: image.location.clone(),
            status: if image.plan.has_changes() {
                ImageStatus::Change
            } else {
                ImageStatus::Unchanged
            },
            os: Some(image.facts.os.pretty_name.clone()).filter(|o| !o.is_empty()),
            plan: Some(image.plan.clone()),
            report: None,
            error: None,
            error_kind: None,
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::host::facts::{FileFacts, OsRelease, PathFacts};
    use crate::image::facts::{InstallSection, UnitFacts};
    use crate::render::DesiredFile;

    fn gp(path: &str) -> GuestPath {
        GuestPath::new(path).unwrap()
    }

    fn facts() -> ImageFacts {
        let mut units = BTreeMap::new();
        units.insert(
            "systemd-timesyncd.service".to_owned(),
            UnitFacts {
                unit: "systemd-timesyncd.service".into(),
                file: Some(gp("/lib/systemd/system/systemd-timesyncd.service")),
                install: InstallSection {
                    wanted_by: vec!["sysinit.target".into()],
                    alias: vec!["dbus-org.freedesktop.timesync1.service".into()],
                    ..InstallSection::default()
                },
                masked: false,
                links: BTreeMap::from([(
                    gp("/etc/systemd/system/dbus-org.freedesktop.timesync1.service"),
                    "/lib/systemd/system/systemd-timesyncd.service".to_owned(),
                )]),
            },
        );
        units.insert(
            "chrony.service".to_owned(),
            UnitFacts {
                unit: "chrony.service".into(),
                file: None,
                install: InstallSection::default(),
                masked: false,
                links: BTreeMap::from([(
                    gp("/etc/systemd/system/multi-user.target.wants/chrony.service"),
                    "/lib/systemd/system/chrony.service".to_owned(),
                )]),
            },
        );
        ImageFacts {
            os: OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            packages: BTreeMap::from([("systemd-timesyncd".into(), "252.30-1~deb12u2".into())]),
            files: BTreeMap::from([(
                "/etc/systemd/timesyncd.conf".to_owned(),
                PathFacts::File(FileFacts {
                    content: b"[Time]\n".to_vec(),
                    mode: 0o644,
                    owner: "root".into(),
                    group: "root".into(),
                }),
            )]),
            units,
            clock_state: vec![TIMESYNCD_CLOCK],
            machine_id: Some("6c61626d616368696e65000000000000".into()),
        }
    }

    fn desired(content: &str) -> crate::render::DesiredState {
        crate::render::DesiredState {
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

    #[test]
    fn plans_links_removals_and_machine_id() {
        let plan = plan_image(
            "golden",
            &desired("[Time]\nNTP=192.168.6.200\n"),
            &facts(),
            BakeOptions::default(),
        )
        .unwrap();
        assert_eq!(plan.files[0].action, FileAction::Update);
        // The alias exists already; only the wants link is missing.
        assert_eq!(
            plan.enable,
            vec![LinkChange {
                link: gp("/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"),
                target: gp("/lib/systemd/system/systemd-timesyncd.service"),
                replaces: None,
            }]
        );
        assert_eq!(
            plan.disable[0].path,
            "/etc/systemd/system/multi-user.target.wants/chrony.service"
        );
        assert_eq!(plan.clock_state[0].path, TIMESYNCD_CLOCK);
        assert!(matches!(
            plan.machine_id,
            MachineId::Populated { reset: false, .. }
        ));
        assert_eq!(plan.version.major, 252);
        assert!(plan.has_changes());
    }

    #[test]
    fn a_baked_image_plans_nothing() {
        let mut facts = facts();
        facts
            .units
            .get_mut("systemd-timesyncd.service")
            .unwrap()
            .links
            .insert(
                gp("/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"),
                "/lib/systemd/system/systemd-timesyncd.service".into(),
            );
        facts.units.get_mut("chrony.service").unwrap().links.clear();
        facts.clock_state.clear();
        facts.machine_id = Some(String::new());
        let plan = plan_image(
            "golden",
            &desired("[Time]\n"),
            &facts,
            BakeOptions {
                reset_machine_id: true,
            },
        )
        .unwrap();
        assert!(!plan.has_changes(), "{plan:#?}");
        assert_eq!(plan.machine_id, MachineId::Fresh);
    }

    #[test]
    fn absent_or_masked_daemons_are_errors() {
        let mut absent = facts();
        absent
            .units
            .get_mut("systemd-timesyncd.service")
            .unwrap()
            .file = None;
        let err = plan_image("g", &desired(""), &absent, BakeOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("systemd-timesyncd is not installed in the image"),
            "{err}"
        );
        let mut masked = facts();
        masked
            .units
            .get_mut("systemd-timesyncd.service")
            .unwrap()
            .masked = true;
        let err = plan_image("g", &desired(""), &masked, BakeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("masked"), "{err}");
    }

    #[test]
    fn targets_from_the_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yaml");
        std::fs::write(
            &path,
            "ntp_servers:\n  zcloud:\n    address: 192.168.6.200\n    local_stratum: 10\nimages:\n  by-path:\n    path: images/golden.qcow2\n  by-domain:\n    libvirt: {domain: z-ubuntu20, uri: \"qemu:///system\"}\n",
        )
        .unwrap();
        let inventory = Inventory::load(&path).unwrap();
        let target = |name: &str| {
            let spec = inventory
                .file
                .images
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .unwrap()
                .1;
            image_target(&inventory, spec)
        };
        assert_eq!(
            target("by-path"),
            ImageTarget::Path(dir.path().join("images/golden.qcow2"))
        );
        let ImageTarget::Libvirt(spec) = target("by-domain") else {
            panic!("not a libvirt target");
        };
        assert_eq!(spec.domain.as_str(), "z-ubuntu20");
        assert_eq!(
            target("by-domain").to_string(),
            "libvirt domain z-ubuntu20 (qemu:///system)"
        );
    }
}
