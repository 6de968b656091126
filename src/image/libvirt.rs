//! Golden images that are libvirt domains (`images.NAME.libvirt: {domain: z-ubuntu20}`), as the
//! seed's operator keeps VM templates.
//!
//! The domain's disks come from libvirt itself (`virsh dumpxml`: each disk's source and the
//! format libvirt declares for it, never a guess from the file's first bytes), and a domain that
//! is not shut off is refused, as `virt-sysprep -d` does: writing under a running guest corrupts
//! its file system. The state is checked before the disks are opened and again once the
//! appliance holds them (qemu's lock then keeps the domain from starting on them), so a domain
//! started in between is refused too.
//!
//! Only a libvirt on this machine will do: bake opens the disk files here, so a URI naming
//! another host (`qemu+ssh://host/system`) is refused when the inventory is read.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::image::guestfs::{Disk, ImageFormat};

/// A libvirt domain name clockprov accepts: what `virsh` takes as one argument and a message
/// can show as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainName(String);

impl DomainName {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |why: &str| Err(format!("invalid libvirt domain name {text:?}: {why}"));
        if text.is_empty() {
            return refuse("it is empty");
        }
        if text.len() > 255 {
            return refuse("it is longer than 255 characters");
        }
        if text.starts_with('-') {
            return refuse("it starts with `-`");
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._+@:-".contains(*c)))
        {
            return refuse(&format!(
                "{c:?} is not allowed (letters, digits and ._+@:- are)"
            ));
        }
        Ok(DomainName(text.to_owned()))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A libvirt connection URI that names a daemon on this machine (`qemu:///system`,
/// `qemu+unix:///system?socket=/run/x/libvirt-sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtUri(String);

impl LibvirtUri {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LibvirtUri {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |why: &str| Err(format!("invalid libvirt URI {text:?}: {why}"));
        if let Some(c) = text
            .chars()
            .find(|c| !c.is_ascii_graphic() || "\"'\\`<>{}|^".contains(*c))
        {
            return refuse(&format!("{c:?} is not allowed"));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return refuse("expected DRIVER[+unix]:///PATH, e.g. qemu:///system");
        };
        let (driver, transport) = scheme.split_once('+').unwrap_or((scheme, ""));
        if driver.is_empty()
            || !driver
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return refuse("the driver (before ://) must be a word such as qemu");
        }
        if !(transport.is_empty() || transport == "unix") {
            return refuse(&format!(
                "transport {transport:?} reaches another machine; bake opens the domain's disks on this one, so only a local libvirt (no transport, or +unix) will do"
            ));
        }
        if !rest.starts_with('/') {
            return refuse(
                "it names a host; bake opens the domain's disks on this machine, so only a local libvirt (qemu:///system) will do",
            );
        }
        Ok(LibvirtUri(text.to_owned()))
    }
}

impl fmt::Display for LibvirtUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_serde {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

string_serde!(DomainName);
string_serde!(LibvirtUri);

/// `images.NAME.libvirt`: the domain, and the libvirt to ask (virsh's default when absent).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename = "libvirt settings")]
pub struct LibvirtSpec {
    pub domain: DomainName,
    pub uri: Option<LibvirtUri>,
}

impl fmt::Display for LibvirtSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "libvirt domain {}", self.domain)?;
        if let Some(uri) = &self.uri {
            write!(f, " ({uri})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("{domain}: cannot run virsh: {detail} (install libvirt-clients)")]
    NoVirsh { domain: String, detail: String },
    #[error("{domain}: virsh {command}: {detail}")]
    Virsh {
        domain: String,
        command: String,
        detail: String,
    },
    #[error(
        "{domain} is {state}: a domain's disks are baked only while it is shut off (writing under a running guest corrupts it); stop it first (virsh shutdown {name})"
    )]
    NotShutOff {
        domain: String,
        name: String,
        state: String,
    },
    #[error("{domain}: {detail}")]
    Disks { domain: String, detail: String },
}

/// Where one disk of a domain is, as its XML says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// `type='file'` or `type='block'`: a path on this machine.
    Path(PathBuf),
    /// `type='volume'`: a volume of a storage pool, found with `virsh vol-path`.
    Volume { pool: String, volume: String },
}

/// One disk of a domain's XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDisk {
    /// `vda`, for messages.
    pub target: String,
    pub source: DiskSource,
    pub format: Option<ImageFormat>,
}

/// The writable disks of a domain's XML (`virsh dumpxml`). CD-ROMs, floppies and read-only
/// disks are not the template's file systems and are left out.
///
/// # Errors
/// The XML does not parse, a disk is of a kind bake cannot open (network, a directory, an
/// unknown format), or no disk is left.
pub fn parse_disks(xml: &str) -> Result<Vec<DomainDisk>, String> {
    let document =
        roxmltree::Document::parse(xml).map_err(|e| format!("unreadable domain XML: {e}"))?;
    let domain = document.root_element();
    if !domain.has_tag_name("domain") {
        return Err("the XML is not a libvirt domain".to_owned());
    }
    let mut disks = Vec::new();
    for disk in domain
        .children()
        .filter(|n| n.has_tag_name("devices"))
        .flat_map(|devices| devices.children())
        .filter(|n| n.has_tag_name("disk"))
    {
        let device = disk.attribute("device").unwrap_or("disk");
        let child = |name: &str| disk.children().find(|n| n.has_tag_name(name));
        if device != "disk" || child("readonly").is_some() {
            continue;
        }
        let target = child("target")
            .and_then(|t| t.attribute("dev"))
            .unwrap_or("?")
            .to_owned();
        let kind = disk.attribute("type").unwrap_or("file");
        let source = child("source");
        let attribute = |name: &str| {
            source
                .and_then(|s| s.attribute(name))
                .filter(|v| !v.is_empty())
        };
        let source = match kind {
            "file" => attribute("file").map(|p| DiskSource::Path(PathBuf::from(p))),
            "block" => attribute("dev").map(|p| DiskSource::Path(PathBuf::from(p))),
            "volume" => attribute("pool")
                .zip(attribute("volume"))
                .map(|(pool, volume)| DiskSource::Volume {
                    pool: pool.to_owned(),
                    volume: volume.to_owned(),
                }),
            other => {
                return Err(format!(
                    "disk {target} is of type {other:?}; bake opens file, block and volume disks"
                ));
            }
        }
        .ok_or_else(|| format!("disk {target} has no source"))?;
        let format = match child("driver").and_then(|d| d.attribute("type")) {
            None => None,
            Some(name) => Some(ImageFormat::from_name(name).ok_or_else(|| {
                format!("disk {target} is in format {name:?}; bake opens raw and qcow2 disks")
            })?),
        };
        disks.push(DomainDisk {
            target,
            source,
            format,
        });
    }
    if disks.is_empty() {
        return Err("the domain has no writable disk".to_owned());
    }
    Ok(disks)
}

impl LibvirtSpec {
    /// `virsh [-c URI] ARGS...`, its stdout.
    fn virsh(&self, args: &[&str]) -> Result<String, LibvirtError> {
        let mut command = Command::new("virsh");
        if let Some(uri) = &self.uri {
            command.arg("-c").arg(uri.as_str());
        }
        // Callers name every argument (`--domain NAME`), so a value is never read as an option.
        command
            .arg("-q")
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        let output = command.output().map_err(|e| LibvirtError::NoVirsh {
            domain: self.to_string(),
            detail: e.to_string(),
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let detail = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(LibvirtError::Virsh {
                domain: self.to_string(),
                command: args.join(" "),
                detail,
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The domain's state as `virsh domstate` words it (`shut off`, `running`, `paused`, ...).
    ///
    /// # Errors
    /// virsh fails (no such domain, no libvirt there).
    pub fn state(&self) -> Result<String, LibvirtError> {
        Ok(self
            .virsh(&["domstate", "--domain", self.domain.as_str()])?
            .trim()
            .to_owned())
    }

    /// Refuse unless the domain is shut off.
    ///
    /// # Errors
    /// It is in any other state, or virsh fails.
    pub fn ensure_shut_off(&self) -> Result<(), LibvirtError> {
        let state = self.state()?;
        if state == "shut off" {
            Ok(())
        } else {
            Err(LibvirtError::NotShutOff {
                domain: self.to_string(),
                name: self.domain.to_string(),
                state,
            })
        }
    }

    /// The domain's writable disks, with the formats libvirt declares.
    ///
    /// # Errors
    /// virsh fails, or a disk cannot be baked (see [`parse_disks`]).
    pub fn disks(&self) -> Result<Vec<Disk>, LibvirtError> {
        let xml = self.virsh(&["dumpxml", "--domain", self.domain.as_str()])?;
        let disks = parse_disks(&xml).map_err(|detail| LibvirtError::Disks {
            domain: self.to_string(),
            detail,
        })?;
        let mut found = Vec::new();
        for disk in disks {
            let path = match disk.source {
                DiskSource::Path(path) => path,
                DiskSource::Volume { pool, volume } => PathBuf::from(
                    self.virsh(&["vol-path", "--pool", &pool, "--vol", &volume])?
                        .trim(),
                ),
            };
            found.push(Disk {
                path,
                format: disk.format,
            });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_and_uris() {
        assert!("z-ubuntu20".parse::<DomainName>().is_ok());
        assert!("a.b_c+d@e:f".parse::<DomainName>().is_ok());
        for bad in ["", "-c", "a b", "a/b", "a;b", "a\nb", "ü"] {
            assert!(bad.parse::<DomainName>().is_err(), "{bad:?}");
        }
        for good in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system?socket=/tmp/x/libvirt-sock",
            "test:///default",
        ] {
            assert_eq!(good.parse::<LibvirtUri>().unwrap().as_str(), good);
        }
        for (bad, why) in [
            ("qemu+ssh://zcloud/system", "reaches another machine"),
            ("qemu://zcloud/system", "names a host"),
            ("qemu+tcp://10.0.0.1/system", "reaches another machine"),
            ("qemu", "expected DRIVER"),
            ("QEMU:///system", "driver"),
            ("qemu:///system x", "not allowed"),
            ("qemu:///system\n", "not allowed"),
        ] {
            let err = bad.parse::<LibvirtUri>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    const XML: &str = r"<domain type='qemu'>
  <name>z-ubuntu20</name>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/z-ubuntu20.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg/data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='default' volume='extra.img'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/srv/shared.raw'/>
      <target dev='vdd'/>
      <readonly/>
    </disk>
  </devices>
</domain>";

    #[test]
    fn disks_from_the_domain_xml() {
        let disks = parse_disks(XML).unwrap();
        assert_eq!(
            disks,
            vec![
                DomainDisk {
                    target: "vda".into(),
                    source: DiskSource::Path("/var/lib/libvirt/images/z-ubuntu20.qcow2".into()),
                    format: Some(ImageFormat::Qcow2),
                },
                DomainDisk {
                    target: "vdb".into(),
                    source: DiskSource::Path("/dev/vg/data".into()),
                    format: Some(ImageFormat::Raw),
                },
                DomainDisk {
                    target: "vdc".into(),
                    source: DiskSource::Volume {
                        pool: "default".into(),
                        volume: "extra.img".into()
                    },
                    format: None,
                },
            ]
        );
        let network = XML.replace(
            "<disk type='block' device='disk'>",
            "<disk type='network' device='disk'>",
        );
        assert!(
            parse_disks(&network)
                .unwrap_err()
                .contains("type \"network\"")
        );
        let vmdk = XML.replace("type='qcow2'", "type='vmdk'");
        assert!(parse_disks(&vmdk).unwrap_err().contains("\"vmdk\""));
        assert!(
            parse_disks("<domain><devices/></domain>")
                .unwrap_err()
                .contains("no writable disk")
        );
        assert!(parse_disks("<network/>").is_err());
        assert!(parse_disks("<domain").is_err());
    }

    proptest! {
        #[test]
        fn domain_xml_never_panics(text in "\\PC{0,200}", attr in "[a-z'\"<>/= ]{0,30}") {
            let _ = parse_disks(&text);
            let _ = parse_disks(&XML.replace("type='qcow2'", &attr));
            let _ = text.parse::<LibvirtUri>();
            let _ = text.parse::<DomainName>();
        }
    }
}
