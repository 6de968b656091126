//! `clockprov bake` against real Debian root file systems: directory targets made from the VM
//! lab's client image (tests/lab/lab.sh rootfs), and disk images (raw without a partition table,
//! qcow2 with one) opened through libguestfs.
//!
//! The oracle for enablement links is the real `systemctl --root=DIR enable`.

// Test helpers panic on failure by design.
#![allow(clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

#[path = "../support/mod.rs"]
#[allow(dead_code)] // each test binary uses its own part
mod support;
use support::clockprov::Clockprov;
use support::guest::{
    assert_baked, client_image, client_image_with_timesyncd_disabled, clockprov_here,
    image_inventory, with_libguestfs,
};
use support::lab::lab_script;

const UNIT: &str = "systemd-timesyncd.service";
const WANTS_LINK: &str = "etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service";
const ALIAS_LINK: &str = "etc/systemd/system/dbus-org.freedesktop.timesync1.service";
const CHRONY_LINK: &str = "etc/systemd/system/multi-user.target.wants/chrony.service";

/// The lab's client root tree, extracted once per test process into cargo's scratch directory
/// for integration tests (a static is never dropped, so a temporary directory would leak).
fn pristine_tree() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        let tree = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bake-pristine-root");
        if tree.exists() {
            fs::remove_dir_all(&tree).unwrap();
        }
        let status = Command::new("bash")
            .arg(lab_script())
            .args(["rootfs", "client"])
            .arg(&tree)
            .stdin(Stdio::null())
            .status()
            .expect("run lab.sh rootfs");
        assert!(status.success(), "lab.sh rootfs failed");
        tree
    })
}

/// A scratch copy of the pristine tree.
struct Target {
    dir: tempfile::TempDir,
}

impl Target {
    fn new() -> Target {
        let dir = tempfile::Builder::new()
            .prefix("clockprov-bake-")
            .tempdir()
            .unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(pristine_tree())
            .arg(dir.path().join("root"))
            .status()
            .unwrap();
        assert!(status.success());
        Target { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// The state a real golden image is often in: the daemon disabled, the conflicting one
    /// enabled (left over from a removed package), one machine's clock state saved.
    fn make_stale(&self) {
        fs::remove_file(self.path(WANTS_LINK)).unwrap();
        fs::remove_file(self.path(ALIAS_LINK)).unwrap();
        fs::create_dir_all(self.path("etc/systemd/system/multi-user.target.wants")).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/system/chrony.service", self.path(CHRONY_LINK))
            .unwrap();
        fs::create_dir_all(self.path("var/lib/systemd/timesync")).unwrap();
        fs::write(self.path("var/lib/systemd/timesync/clock"), "").unwrap();
        fs::write(self.path("var/lib/chrony/chrony.drift"), "1.234 0.5\n").unwrap();
        fs::write(self.path("var/lib/chrony/192.0.2.1.nts"), "cookie\n").unwrap();
    }

    fn inventory(&self, images: &str) -> PathBuf {
        image_inventory(self.dir.path(), images)
    }

    fn golden_inventory(&self) -> PathBuf {
        self.inventory("  golden:\n    path: root\n")
    }
}

/// Every path under `root` with what it is: file content, link target, or a directory.
fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(&path).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel, "dir".to_owned());
                walk(root, &path, out);
            } else {
                let content = fs::read(&path).unwrap();
                out.insert(
                    rel,
                    format!("{:o} {}", meta.mode(), String::from_utf8_lossy(&content)),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The links under etc/systemd/system that point at `unit`.
fn links_to(root: &Path, unit: &str) -> BTreeMap<PathBuf, String> {
    snapshot_tree(&root.join("etc/systemd/system"))
        .into_iter()
        .filter(|(_, what)| what.ends_with(&format!("/{unit}")))
        .collect()
}

#[test]
fn bake_a_root_directory_as_systemctl_enable_would() {
    let target = Target::new();
    target.make_stale();
    let inventory = target.golden_inventory();
    let before = snapshot_tree(&target.root());

    // The dry run shows everything and changes nothing.
    let dry = clockprov_here(&["bake", "--dry-run", "--detailed-exitcode"], &inventory);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert_eq!(snapshot_tree(&target.root()), before, "the dry run wrote");
    let shown = dry
        .stdout
        .replace(&target.root().display().to_string(), "[ROOT]");
    insta::assert_snapshot!("dry_run", shown);

    let run = clockprov_here(&["bake", "--yes", "--reset-machine-id"], &inventory);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Bake: 1 image baked"), "{run:?}");

    // The file: NTP= the inventory's server, mode 0644, root's, a backup of the stock one.
    let conf = target.path("etc/systemd/timesyncd.conf");
    let text = fs::read_to_string(&conf).unwrap();
    assert!(text.contains("\nNTP=192.168.6.200\n"), "{text}");
    assert!(text.contains("inventory: images.golden"), "{text}");
    let meta = fs::metadata(&conf).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o644, 0, 0)
    );
    let backups: Vec<_> = fs::read_dir(target.path("etc/systemd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("timesyncd.conf.clockprov-")
                && Path::new(n).extension().is_some_and(|e| e == "bak")
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        fs::read(target.path(&format!("etc/systemd/{}", backups[0]))).unwrap(),
        fs::read(pristine_tree().join("etc/systemd/timesyncd.conf")).unwrap()
    );

    // The links are exactly those the real systemctl creates in the same tree.
    let oracle = Target::new();
    oracle.make_stale();
    let status = Command::new("systemctl")
        .arg(format!("--root={}", oracle.root().display()))
        .args(["enable", UNIT])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "systemctl --root enable failed");
    assert_eq!(
        links_to(&target.root(), UNIT),
        links_to(&oracle.root(), UNIT)
    );
    assert_eq!(links_to(&target.root(), UNIT).len(), 2);

    // The conflicting daemon is not enabled; no clock state or machine id is left.
    assert!(fs::symlink_metadata(target.path(CHRONY_LINK)).is_err());
    for gone in [
        "var/lib/systemd/timesync/clock",
        "var/lib/chrony/chrony.drift",
        "var/lib/chrony/192.0.2.1.nts",
    ] {
        assert!(!target.path(gone).exists(), "{gone} is still there");
    }
    assert_eq!(fs::read(target.path("etc/machine-id")).unwrap(), b"");
    // Nothing else in the tree changed.
    let after = snapshot_tree(&target.root());
    let changed: Vec<_> = after
        .keys()
        .chain(before.keys())
        .filter(|k| after.get(*k) != before.get(*k))
        .map(|k| k.display().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut expected = vec![
        "etc/machine-id".to_owned(),
        format!("etc/systemd/{}", backups[0]),
        "etc/systemd/timesyncd.conf".to_owned(),
        ALIAS_LINK.to_owned(),
        CHRONY_LINK.to_owned(),
        WANTS_LINK.to_owned(),
        "var/lib/chrony/192.0.2.1.nts".to_owned(),
        "var/lib/chrony/chrony.drift".to_owned(),
        "var/lib/systemd/timesync/clock".to_owned(),
    ];
    expected.sort();
    assert_eq!(changed, expected);

    // Baking again changes nothing.
    let again = clockprov_here(&["bake", "--yes"], &inventory);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("golden (") && again.stdout.contains("): unchanged"),
        "{again:?}"
    );
    assert_eq!(snapshot_tree(&target.root()), after);
}

#[test]
fn bake_refuses_what_it_cannot_do_and_changes_nothing() {
    // No time daemon in the image: say so; install nothing.
    let absent = Target::new();
    fs::remove_file(absent.path(&format!("usr/lib/systemd/system/{UNIT}"))).unwrap();
    let before = snapshot_tree(&absent.root());
    let run = clockprov_here(&["bake", "--yes"], &absent.golden_inventory());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("systemd-timesyncd is not installed in the image"),
        "{run:?}"
    );
    assert_eq!(snapshot_tree(&absent.root()), before);

    // Masked: refuse.
    let masked = Target::new();
    std::os::unix::fs::symlink(
        "/dev/null",
        masked.path(&format!("etc/systemd/system/{UNIT}")),
    )
    .unwrap();
    let before = snapshot_tree(&masked.root());
    let run = clockprov_here(&["bake", "--yes"], &masked.golden_inventory());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("is masked in the image"), "{run:?}");
    assert_eq!(snapshot_tree(&masked.root()), before);

    // Not on a terminal and no --yes: refuse before opening anything.
    let target = Target::new();
    let before = snapshot_tree(&target.root());
    let run = clockprov_here(&["bake"], &target.golden_inventory());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("pass --yes"), "{run:?}");
    assert_eq!(snapshot_tree(&target.root()), before);

    // A missing image is a clear error; --limit picks images; the other one is baked.
    let inventory =
        target.inventory("  golden:\n    path: root\n  lost:\n    path: nowhere.qcow2\n");
    let run = clockprov_here(&["bake", "--yes"], &inventory);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("== lost (")
            && run
                .stdout
                .contains("nowhere.qcow2: no such file or directory"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("Bake: 1 image baked, 0 unchanged, 1 failed."),
        "{run:?}"
    );
    let run = clockprov_here(&["bake", "--yes", "--limit", "lost"], &inventory);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stdout.contains("golden"), "{run:?}");
    let run = clockprov_here(&["bake", "--yes", "--limit", "nothing*"], &inventory);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("matches no image"), "{run:?}");
}

#[test]
fn bake_json_describes_the_plan() {
    let target = Target::new();
    target.make_stale();
    let run = clockprov_here(
        &["bake", "--dry-run", "--format", "json"],
        &target.golden_inventory(),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["command"], "bake");
    assert_eq!(doc["dry_run"], true);
    let image = &doc["images"][0];
    assert_eq!(image["name"], "golden");
    assert_eq!(image["status"], "change");
    assert_eq!(image["plan"]["enable"].as_array().unwrap().len(), 2);
    assert_eq!(
        image["plan"]["disable"][0]["path"],
        format!("/{CHRONY_LINK}")
    );
    assert_eq!(image["plan"]["clock_state"].as_array().unwrap().len(), 3);
    assert_eq!(image["plan"]["machine_id"]["state"], "populated");
    assert_eq!(image["plan"]["files"][0]["action"], "update");
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bake_a_raw_image_without_a_partition_table() {
    let dir = tempfile::Builder::new()
        .prefix("clockprov-bake-raw-")
        .tempdir()
        .unwrap();
    let image = dir.path().join("golden.raw");
    // The stock lab image has timesyncd enabled; disable it so that bake must enable it.
    client_image_with_timesyncd_disabled(&image, "raw");
    let inventory = image_inventory(dir.path(), "  golden:\n    path: golden.raw\n");
    let run = clockprov_here(&["bake", "--yes", "--reset-machine-id"], &inventory);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "+ link /{WANTS_LINK} -> /lib/systemd/system/{UNIT}"
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("Bake: 1 image baked"), "{run:?}");
    assert_baked(&image, "/dev/sda");
    // Again: nothing to change.
    let again = clockprov_here(&["bake", "--dry-run", "--detailed-exitcode"], &inventory);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("0 images to change, 1 unchanged"),
        "{again:?}"
    );
}

#[test]
fn bake_a_partitioned_qcow2_image() {
    let dir = tempfile::Builder::new()
        .prefix("clockprov-bake-qcow2-")
        .tempdir()
        .unwrap();
    let image = dir.path().join("golden.qcow2");
    // A partitioned qcow2 disk holding the lab's Debian root tree.
    let status = with_libguestfs("virt-make-fs")
        .args([
            "--partition=mbr",
            "--format=qcow2",
            "--type=ext4",
            "--size=+64M",
        ])
        .arg(pristine_tree())
        .arg(&image)
        .status()
        .unwrap();
    assert!(status.success(), "virt-make-fs failed");
    let inventory = image_inventory(dir.path(), "  golden:\n    path: golden.qcow2\n");
    let run = clockprov_here(&["bake", "--yes", "--reset-machine-id"], &inventory);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("qcow2; Debian GNU/Linux 12"), "{run:?}");
    assert_baked(&image, "/dev/sda1");
}

/// Kills a process by PID when dropped.
struct Kill(String);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.0).status();
    }
}

#[test]
fn bake_refuses_an_image_in_use() {
    let dir = tempfile::Builder::new()
        .prefix("clockprov-bake-locked-")
        .tempdir()
        .unwrap();
    let image = dir.path().join("golden.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(client_image())
        .arg(&image)
        .status()
        .unwrap();
    assert!(status.success());
    // A VM using the image: qemu holds its locks (paused, no network, no display).
    let pidfile = dir.path().join("qemu.pid");
    let status = Command::new("qemu-system-x86_64")
        .args([
            "-S",
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "pc",
            "-accel",
            "tcg",
        ])
        .arg("-drive")
        .arg(format!("file={},format=qcow2,if=virtio", image.display()))
        .arg("-pidfile")
        .arg(&pidfile)
        .arg("-daemonize")
        .status()
        .unwrap();
    assert!(status.success(), "qemu did not start");
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let _qemu = Kill(pid);
    let before = sha256(&image);
    let inventory = image_inventory(dir.path(), "  golden:\n    path: golden.qcow2\n");
    let run = clockprov_here(&["bake", "--yes"], &inventory);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("the image is in use (locked by another process"),
        "{run:?}"
    );
    assert_eq!(sha256(&image), before, "the image changed");
}

/// `clockprov bake` on a terminal, answering its question; what the terminal showed.
fn bake_on_a_terminal(inventory: &Path, answer: &str) -> String {
    let terminal = Clockprov::new()
        .args(["bake", "-i"])
        .arg(inventory)
        .terminal();
    terminal.answer("[y/N]", answer).stdout
}

#[test]
fn bake_asks_on_a_terminal() {
    let target = Target::new();
    target.make_stale();
    let inventory = target.golden_inventory();
    let before = snapshot_tree(&target.root());
    let declined = bake_on_a_terminal(&inventory, "no");
    assert!(
        declined.contains("Bake these changes into 1 image?")
            && declined.contains("Bake cancelled; nothing was changed."),
        "{declined}"
    );
    assert_eq!(snapshot_tree(&target.root()), before);
    let accepted = bake_on_a_terminal(&inventory, "yes");
    assert!(accepted.contains("Bake: 1 image baked"), "{accepted}");
    assert!(
        fs::read_to_string(target.path("etc/systemd/timesyncd.conf"))
            .unwrap()
            .contains("\nNTP=192.168.6.200\n")
    );
}
