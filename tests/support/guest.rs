//! Golden images in tests: inventories naming them, clockprov and guestfish run with the
//! libguestfs settings these machines need, and reading back what bake wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::clockprov::{Clockprov, Run};
use super::lab::lab_script;

/// The libguestfs settings these machines need (DESIGN.md: KVM hangs guests).
const LIBGUESTFS_ENV: [(&str, &str); 2] = [
    ("LIBGUESTFS_BACKEND", "direct"),
    ("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg"),
];

/// `program` (a libguestfs tool) with [`LIBGUESTFS_ENV`].
#[must_use]
pub fn with_libguestfs(program: &str) -> Command {
    let mut command = Command::new(program);
    command.envs(LIBGUESTFS_ENV);
    command
}

#[must_use]
pub fn guestfish() -> Command {
    with_libguestfs("guestfish")
}

/// clockprov on this machine (not in a lab namespace) with `-i inventory` and
/// [`LIBGUESTFS_ENV`].
#[must_use]
pub fn clockprov_here(args: &[&str], inventory: &Path) -> Run {
    LIBGUESTFS_ENV
        .iter()
        .fold(Clockprov::new(), |c, (k, v)| c.env(k, v))
        .args(args)
        .arg("-i")
        .arg(inventory)
        .run()
}

/// `dir/inventory.yaml`: the lab's server zcloud (192.168.6.200) and `images` (YAML lines
/// under `images:`).
#[must_use]
pub fn image_inventory(dir: &Path, images: &str) -> PathBuf {
    let path = dir.join("inventory.yaml");
    std::fs::write(
        &path,
        format!(
            "ntp_servers:\n  zcloud:\n    address: 192.168.6.200\n    upstream: [{{pool: ntp.ubuntu.com}}]\n    allow: [192.168.6.0/24]\n    local_stratum: 10\nimages:\n{images}"
        ),
    )
    .unwrap();
    path
}

/// What a disk image holds at the paths bake manages, read in one appliance launch; its root
/// file system is `device`. Parts, separated by `@@` lines: clockprov's timesyncd drop-in, the
/// sysinit.target wants link, /etc/machine-id, whether timesyncd's clock file exists, lstat of
/// the drop-in, and the image's own timesyncd.conf.
#[must_use]
pub fn read_baked_paths(image: &Path, device: &str) -> Vec<String> {
    let script = "cat /etc/systemd/timesyncd.conf.d/zz-clockprov.conf\necho @@\nreadlink /etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service\necho @@\ncat /etc/machine-id\necho @@\nexists /var/lib/systemd/timesync/clock\necho @@\nlstatns /etc/systemd/timesyncd.conf.d/zz-clockprov.conf\necho @@\ncat /etc/systemd/timesyncd.conf\n";
    let mut child = guestfish()
        .args(["--ro", "-a"])
        .arg(image)
        .arg("-m")
        .arg(device)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run guestfish");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "guestfish failed on {}",
        image.display()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let parts: Vec<String> = text.split("@@\n").map(str::to_owned).collect();
    assert_eq!(parts.len(), 6, "{text}");
    parts
}

/// Assert that the image was baked for the lab's server 192.168.6.200.
pub fn assert_baked(image: &Path, device: &str) {
    let parts = read_baked_paths(image, device);
    let seen = parts.join("@@\n");
    assert!(parts[0].contains("\nNTP=192.168.6.200\n"), "{seen}");
    assert_eq!(
        parts[1].trim(),
        "/lib/systemd/system/systemd-timesyncd.service"
    );
    assert_eq!(parts[2].trim(), "", "machine-id not emptied: {seen}");
    assert_eq!(parts[3].trim(), "false", "timesyncd clock left: {seen}");
    assert!(parts[4].contains("st_mode: 33188"), "not 0100644: {seen}"); // regular, 0644
    assert!(parts[4].contains("st_uid: 0\n"), "{seen}");
    assert!(
        !parts[5].contains("clockprov"),
        "timesyncd.conf written: {seen}"
    );
}

/// A copy of the lab's client image at `dest` in `format` (`raw` or `qcow2`), with timesyncd's
/// enablement link removed, as on a template where the daemon was disabled: bake must enable it.
pub fn client_image_with_timesyncd_disabled(dest: &Path, format: &str) {
    image_with_timesyncd_disabled("client", dest, format);
}

/// [`client_image_with_timesyncd_disabled`] from the lab's image `name` (`client`, or a
/// distribution's: `focal`, ...).
pub fn image_with_timesyncd_disabled(name: &str, dest: &Path, format: &str) {
    let status = Command::new("qemu-img")
        .args(["convert", "-O", format])
        .arg(lab_image(name))
        .arg(dest)
        .status()
        .expect("run qemu-img");
    assert!(status.success(), "qemu-img convert failed");
    let status = guestfish()
        .args(["--rw", "-a"])
        .arg(dest)
        .args([
            "-m",
            "/dev/sda",
            "rm",
            "/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service",
        ])
        .status()
        .expect("run guestfish");
    assert!(
        status.success(),
        "guestfish rm failed on {}",
        dest.display()
    );
}

/// The lab's cached client disk image (built by lab.sh when missing). Read-only: copy it.
#[must_use]
pub fn client_image() -> PathBuf {
    lab_image("client")
}

/// The lab's cached disk image `name` (`lab.sh image NAME`: client, server, focal, ...).
#[must_use]
pub fn lab_image(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(lab_script())
        .args(["image", name])
        .stdin(Stdio::null())
        .output()
        .expect("run lab.sh image");
    assert!(out.status.success(), "lab.sh image failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
