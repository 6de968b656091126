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
use support::clockprov::{Clockprov, Run};
use support::guest::{
    assert_baked, client_image, client_image_with_timesyncd_disabled, clockprov_here,
    image_inventory, with_libguestfs,
};
use support::lab::lab_script;

const UNIT: &str = "systemd-timesyncd.service";
/// clockprov's timesyncd drop-in, relative to a root.
const DROPIN: &str = "etc/systemd/timesyncd.conf.d/zz-clockprov.conf";
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

    // The file: clockprov's drop-in (its directory made), NTP= reset then the inventory's
    // server, mode 0644, root's; the stock timesyncd.conf as it was, and no backup (nothing
    // was replaced).
    let conf = target.path(DROPIN);
    let text = fs::read_to_string(&conf).unwrap();
    assert!(text.contains("\nNTP=\nNTP=192.168.6.200\n"), "{text}");
    assert!(text.contains("inventory: images.golden"), "{text}");
    let meta = fs::metadata(&conf).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o644, 0, 0)
    );
    let dir = fs::metadata(conf.parent().unwrap()).unwrap();
    assert_eq!((dir.mode() & 0o7777, dir.uid()), (0o755, 0));
    assert_eq!(
        fs::read(target.path("etc/systemd/timesyncd.conf")).unwrap(),
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
        "etc/systemd/timesyncd.conf.d".to_owned(),
        DROPIN.to_owned(),
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

/// Ubuntu 26.04's pools file (tests/fixtures/ubuntu-26.04), relative to the root.
const POOLS: &str = "etc/chrony/sources.d/ubuntu-ntp-pools.sources";
const POOLS_TEXT: &str = include_str!("../fixtures/ubuntu-26.04/ubuntu-ntp-pools.sources");

/// Debian's chrony.service, as its package installs it.
const CHRONY_UNIT: &str = "[Unit]\nDescription=chrony, an NTP client/server\nConflicts=openntpd.service ntp.service ntpsec.service systemd-timesyncd.service\n\n[Service]\nType=forking\nExecStart=/usr/sbin/chronyd $DAEMON_OPTS\n\n[Install]\nAlias=chronyd.service\nWantedBy=multi-user.target\n";

#[test]
fn bake_a_chrony_image_when_the_inventory_chooses_chrony() {
    // The lab's client root with chrony's unit and directory added (as its package would), and
    // the image's `daemon: chrony`.
    let prepare = |target: &Target| {
        fs::write(
            target.path("usr/lib/systemd/system/chrony.service"),
            CHRONY_UNIT,
        )
        .unwrap();
        fs::create_dir_all(target.path("etc/chrony/sources.d")).unwrap();
        // Debian 12's own chrony.conf, as its package installs it.
        fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/hosts/seed/debian-12/chrony.conf"
            ),
            target.path("etc/chrony/chrony.conf"),
        )
        .unwrap();
        // Ubuntu 25.10+'s pools, as its chrony package installs them.
        fs::write(target.path(POOLS), POOLS_TEXT).unwrap();
    };
    let target = Target::new();
    prepare(&target);
    let inventory = target.inventory("  golden:\n    path: root\n    daemon: chrony\n");
    let dry = clockprov_here(&["bake", "--dry-run"], &inventory);
    assert!(
        dry.stdout.contains(
            "   ~ switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources (renamed to ubuntu-ntp-pools.sources.clockprov-off"
        ),
        "{dry:?}"
    );
    assert_eq!(fs::read_to_string(target.path(POOLS)).unwrap(), POOLS_TEXT);
    let run = clockprov_here(&["bake", "--yes"], &inventory);
    assert_eq!(run.code, 0, "{run:?}");
    // The pools file switched off: under its new name, whole, with its mode.
    assert!(fs::symlink_metadata(target.path(POOLS)).is_err());
    let off = target.path(&format!("{POOLS}.clockprov-off"));
    assert_eq!(fs::read_to_string(&off).unwrap(), POOLS_TEXT);
    assert_eq!(fs::metadata(&off).unwrap().mode() & 0o7777, 0o644);
    // The image's own file with only its managed lines changed, as on a host.
    let conf = fs::read_to_string(target.path("etc/chrony/chrony.conf")).unwrap();
    let stock = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/hosts/seed/debian-12/chrony.conf"
    ))
    .unwrap();
    assert_eq!(
        conf,
        stock.replace(
            "\npool 2.debian.pool.ntp.org iburst\n",
            "\n# clockprov: the lines below are managed by clockprov (inventory: images.golden)\nserver 192.168.6.200 iburst\n"
        )
    );
    // timesyncd's file is left alone; its links go (it would fight chrony over the clock).
    assert_eq!(
        fs::read(target.path("etc/systemd/timesyncd.conf")).unwrap(),
        fs::read(pristine_tree().join("etc/systemd/timesyncd.conf")).unwrap()
    );
    assert!(fs::symlink_metadata(target.path(WANTS_LINK)).is_err());
    assert!(fs::symlink_metadata(target.path(ALIAS_LINK)).is_err());
    // chrony's links are exactly those the real systemctl creates.
    let oracle = Target::new();
    prepare(&oracle);
    let status = Command::new("systemctl")
        .arg(format!("--root={}", oracle.root().display()))
        .args(["enable", "chrony.service"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "systemctl --root enable failed");
    let links = links_to(&target.root(), "chrony.service");
    assert_eq!(links, links_to(&oracle.root(), "chrony.service"));
    assert_eq!(links.len(), 2, "{links:?}");
    let again = clockprov_here(&["bake", "--yes"], &inventory);
    assert!(again.stdout.contains("): unchanged"), "{again:?}");
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
    assert_eq!(
        image["plan"]["files"][0]["path"],
        "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf"
    );
    assert_eq!(image["plan"]["files"][0]["action"], "create");
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Also the machine as users find it: no `LIBGUESTFS_*` variable set. Where /dev/kvm exists but
/// does not work (these machines), the appliance dies at launch and bake retries with TCG.
#[test]
fn bake_a_raw_image_with_no_libguestfs_variables_set() {
    let dir = tempfile::Builder::new()
        .prefix("clockprov-bake-raw-")
        .tempdir()
        .unwrap();
    let image = dir.path().join("golden.raw");
    // The stock lab image has timesyncd enabled; disable it so that bake must enable it.
    client_image_with_timesyncd_disabled(&image, "raw");
    let inventory = image_inventory(dir.path(), "  golden:\n    path: golden.raw\n");
    let run = clockprov_bare(&["bake", "--yes", "--reset-machine-id"], &inventory);
    assert_eq!(run.code, 0, "{run:?}");
    assert_kvm_fallback_explained(&run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "+ link /{WANTS_LINK} -> /lib/systemd/system/{UNIT}"
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("Bake: 1 image baked"), "{run:?}");
    assert_baked(&image, "/dev/sda");
    // Again: nothing to change.
    let again = clockprov_bare(&["bake", "--dry-run", "--detailed-exitcode"], &inventory);
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
        fs::read_to_string(target.path(DROPIN))
            .unwrap()
            .contains("\nNTP=192.168.6.200\n")
    );
}

/// clockprov with no `LIBGUESTFS_*` variable (the builder clears the environment), as a user who
/// never heard of them runs it.
fn clockprov_bare(args: &[&str], inventory: &Path) -> Run {
    Clockprov::new().args(args).arg("-i").arg(inventory).run()
}

/// Where the appliance died under broken KVM, bake says so and how to skip the first try.
fn assert_kvm_fallback_explained(output: &str) {
    if output.contains("died as it started") {
        assert!(
            output.contains("LIBGUESTFS_BACKEND_SETTINGS=force_tcg"),
            "{output}"
        );
    }
}

/// One crafted root: a link at `link` (relative to the root) to `target`.
struct Crafted {
    what: &'static str,
    link: &'static str,
    target: String,
    /// Whether bake may bake it (inside the root) rather than refuse it.
    bakes: bool,
}

/// The links of issue 9 that try to lead bake out of its root: through a missing component,
/// `..` chains, absolute and relative links to a sentinel tree next to the roots (`sentinel`,
/// its absolute path `abs`), a loop, and a climb to this machine's own /etc/systemd/system.
fn crafted_roots(abs: &str, depth: usize) -> Vec<Crafted> {
    let system = "etc/systemd/system";
    let case = |what, link, target: String, bakes| Crafted {
        what,
        link,
        target,
        bakes,
    };
    vec![
        case("through a missing x", system, "x/../../..".into(), false),
        case(
            "far through a missing x",
            system,
            format!("x/{}", "../".repeat(depth + 8)),
            false,
        ),
        case("a `..` chain", system, "../".repeat(depth + 8), true),
        case("a link to /", system, "/".into(), true),
        case(
            "absolute, to the sentinel",
            system,
            format!("{abs}/{system}"),
            false,
        ),
        case(
            "relative, to the sentinel",
            system,
            format!("../../../sentinel/{system}"),
            false,
        ),
        case("a loop", system, "system".into(), false),
        case(
            "to this machine's own",
            system,
            format!("x/{}{system}", "../".repeat(depth + 8)),
            false,
        ),
        case(
            "the config directory",
            "etc/systemd",
            "../../sentinel/etc/systemd".into(),
            false,
        ),
        case(
            "the state directory",
            "var/lib/chrony",
            format!("{abs}/var/lib/chrony"),
            true,
        ),
        case(
            "machine-id",
            "etc/machine-id",
            format!("{abs}/etc/machine-id"),
            true,
        ),
    ]
}

/// Everything under `dir` except the crafted roots (`root*`).
fn outside_the_roots(dir: &Path) -> BTreeMap<PathBuf, String> {
    snapshot_tree(dir)
        .into_iter()
        .filter(|(path, _)| {
            !path
                .components()
                .next()
                .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("root"))
        })
        .collect()
}

/// Issue 9: a root directory whose links try to lead bake out of it. Each crafted root either
/// fails whole (before its first write) or is baked inside itself; nothing outside the roots
/// changes: neither a whole sentinel tree next to them (which the links name, by relative and
/// absolute paths) nor this machine's own /etc/systemd/system.
#[test]
fn bake_stays_inside_a_crafted_root() {
    let world = tempfile::Builder::new()
        .prefix("clockprov-bake-escape-")
        .tempdir()
        .unwrap();
    let sentinel = world.path().join("sentinel");
    fs::create_dir_all(sentinel.join("var/lib/chrony")).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(pristine_tree().join("etc"))
        .arg(&sentinel)
        .status()
        .unwrap();
    assert!(status.success());
    fs::write(sentinel.join("var/lib/chrony/chrony.drift"), "1.0 0.1\n").unwrap();
    let cases = crafted_roots(
        &sentinel.display().to_string(),
        world.path().components().count(),
    );
    let mut images = String::new();
    for (i, case) in cases.iter().enumerate() {
        let root = world.path().join(format!("root{i}"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(pristine_tree())
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success());
        let at = root.join(case.link);
        if fs::symlink_metadata(&at).unwrap().is_dir() {
            fs::remove_dir_all(&at).unwrap();
        } else {
            fs::remove_file(&at).unwrap();
        }
        std::os::unix::fs::symlink(&case.target, &at).unwrap();
        eprintln!("root{i}: {}: /{} -> {}", case.what, case.link, case.target);
        images.push_str("  root");
        images.push_str(&i.to_string());
        images.push_str(":\n    path: root");
        images.push_str(&i.to_string());
        images.push('\n');
    }
    let inventory = image_inventory(world.path(), &images);
    let controller = Path::new("/etc/systemd/system");
    let controller_before = snapshot_tree(controller);
    let outside_before = outside_the_roots(world.path());
    let run = clockprov_here(
        &["bake", "--yes", "--reset-machine-id", "--forks", "1"],
        &inventory,
    );
    assert_eq!(run.code, 1, "some crafted roots must fail: {run:?}");
    let stock_conf = fs::read(pristine_tree().join("etc/systemd/timesyncd.conf")).unwrap();
    for (i, case) in cases.iter().enumerate() {
        // Refused roots fail at the plan, before any write; the others are baked.
        let header = format!("== root{i} (");
        let header = run.stdout.lines().find(|l| l.starts_with(&header));
        let done = [format!("ok root{i}:"), format!("FAILED root{i}:")];
        let done = run
            .stdout
            .lines()
            .find(|l| done.iter().any(|d| l.starts_with(d)));
        let (Some(header), Some(done)) = (header, done) else {
            panic!("root{i}: no plan or outcome: {run:?}");
        };
        assert_eq!(
            (header.ends_with("FAILED"), done.starts_with("ok")),
            (!case.bakes, case.bakes),
            "root{i} ({}): {header}\n{done}\n{run:?}",
            case.what
        );
        if !case.bakes {
            let conf = world
                .path()
                .join(format!("root{i}/etc/systemd/timesyncd.conf"));
            assert_eq!(fs::read(&conf).ok().as_ref(), Some(&stock_conf), "root{i}");
        }
    }
    // The `..` chain and the link to / land inside their roots.
    for i in [2, 3] {
        let link = world
            .path()
            .join(format!("root{i}/sysinit.target.wants/{UNIT}"));
        assert_eq!(
            fs::read_link(link).unwrap(),
            Path::new(&format!("/lib/systemd/system/{UNIT}"))
        );
    }
    assert_eq!(
        outside_the_roots(world.path()),
        outside_before,
        "something outside the roots changed"
    );
    assert_eq!(snapshot_tree(controller), controller_before);
}

/// `path: /` is refused when the inventory is read, and a relative path that leads to / when
/// the root is opened; an image with both `path` and `libvirt`, or with a remote libvirt, is
/// refused with its line.
#[test]
fn bake_refuses_this_machines_root_and_bad_image_entries() {
    let dir = tempfile::Builder::new()
        .prefix("clockprov-bake-slash-")
        .tempdir()
        .unwrap();
    let controller_before = snapshot_tree(Path::new("/etc/systemd/system"));
    let run = clockprov_here(
        &["bake", "--yes"],
        &image_inventory(dir.path(), "  host:\n    path: /\n"),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("images.host.path: `/` is this machine's own root directory"),
        "{run:?}"
    );
    let up = "../".repeat(dir.path().components().count() + 2);
    let run = clockprov_here(
        &["bake", "--dry-run"],
        &image_inventory(dir.path(), &format!("  host:\n    path: {up}\n")),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("this is the root directory of this machine, not an image"),
        "{run:?}"
    );
    assert_eq!(
        snapshot_tree(Path::new("/etc/systemd/system")),
        controller_before
    );
    let run = clockprov_here(
        &["bake", "--dry-run"],
        &image_inventory(
            dir.path(),
            "  both:\n    path: x.qcow2\n    libvirt: {domain: z-ubuntu20}\n",
        ),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("images.both.libvirt: give either `path` or `libvirt`, not both"),
        "{run:?}"
    );
    let run = clockprov_here(
        &["bake", "--dry-run"],
        &image_inventory(
            dir.path(),
            "  remote:\n    libvirt: {domain: z-ubuntu20, uri: \"qemu+ssh://zcloud/system\"}\n",
        ),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("inventory.yaml:") && run.stderr.contains("reaches another machine"),
        "{run:?}"
    );
}

/// On a terminal, the plan is made from what was read, the question asked, and only then is
/// the image opened for writing: if it changed in between, nothing is written.
#[test]
fn bake_refuses_an_image_that_changed_while_asking() {
    let target = Target::new();
    target.make_stale();
    let inventory = target.golden_inventory();
    let conf = target.path("etc/systemd/timesyncd.conf");
    let mut terminal = Clockprov::new()
        .args(["bake", "-i"])
        .arg(&inventory)
        .terminal();
    terminal.wait_for("[y/N]");
    fs::write(&conf, "[Time]\nNTP=203.0.113.9\n").unwrap();
    terminal.type_line("yes");
    let out = terminal.finish().stdout;
    let edited = snapshot_tree(&target.root());
    assert!(
        out.contains(
            "the image changed between the plan and the bake (/etc/systemd/timesyncd.conf)"
        ),
        "{out}"
    );
    assert!(
        out.contains("Bake: 0 images baked, 0 unchanged, 1 failed."),
        "{out}"
    );
    // Nothing but the edit: no link, removal or backup.
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        "[Time]\nNTP=203.0.113.9\n"
    );
    assert!(fs::symlink_metadata(target.path(CHRONY_LINK)).is_ok());
    assert_eq!(snapshot_tree(&target.root()), edited);
}

/// Stops a private libvirtd (tests/bake/libvirtd.sh) when dropped.
struct Libvirtd {
    dir: PathBuf,
    uri: String,
}

impl Libvirtd {
    fn start(dir: &Path) -> Libvirtd {
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bake/libvirtd.sh"))
            .arg("up")
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run libvirtd.sh");
        assert!(
            out.status.success(),
            "libvirtd.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Libvirtd {
            dir: dir.to_owned(),
            uri: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        }
    }

    fn virsh(&self, args: &[&str]) -> String {
        let out = Command::new("virsh")
            .args(["-q", "-c", &self.uri])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run virsh");
        assert!(
            out.status.success(),
            "virsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bake/libvirtd.sh"))
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}

/// Issue 15: a VM template kept by libvirt, named by its domain. A real libvirtd (Debian's, its
/// own configuration, sockets and state under a temporary directory) with a TCG domain on a
/// qcow2 copy of the lab's client disk and no network. Shut off: baked on a terminal (read-only
/// for the plan, read-write after `yes`), with no libguestfs variable set. Running: refused
/// before any appliance starts, the disk byte for byte unchanged.
#[test]
fn bake_a_libvirt_domain_by_name_and_refuse_it_running() {
    let dir = tempfile::Builder::new()
        .prefix("clockprov-bake-libvirt-")
        .tempdir()
        .unwrap();
    let disk = dir.path().join("z-ubuntu20.qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(client_image())
        .arg(&disk)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img convert failed");
    let libvirtd = Libvirtd::start(dir.path());
    let xml = dir.path().join("z-ubuntu20.xml");
    fs::write(
        &xml,
        format!(
            "<domain type='qemu'>
  <name>z-ubuntu20</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
",
            disk.display()
        ),
    )
    .unwrap();
    libvirtd.virsh(&["define", &xml.display().to_string()]);
    assert_eq!(libvirtd.virsh(&["domstate", "z-ubuntu20"]), "shut off");
    let inventory = image_inventory(
        dir.path(),
        &format!(
            "  z-ubuntu20:\n    libvirt: {{domain: z-ubuntu20, uri: \"{}\"}}\n",
            libvirtd.uri
        ),
    );

    // The builder clears the environment: no LIBGUESTFS_* variable. Each disk image is read
    // (an appliance started) before the question: minutes on a busy machine.
    let mut terminal = Clockprov::new()
        .args(["bake", "--reset-machine-id", "-i"])
        .arg(&inventory)
        .terminal();
    terminal.wait_for_within("[y/N]", std::time::Duration::from_secs(1800));
    terminal.type_line("yes");
    let out = terminal.finish().stdout;
    assert!(
        out.contains(&format!(
            "== z-ubuntu20 (libvirt domain z-ubuntu20: {}; Debian GNU/Linux 12",
            disk.display()
        )),
        "{out}"
    );
    assert!(out.contains("+NTP=192.168.6.200"), "{out}");
    assert!(out.contains("Bake: 1 image baked"), "{out}");
    assert_kvm_fallback_explained(&out);
    assert_baked(&disk, "/dev/sda");

    // Running (at its firmware: the lab's disk has no boot loader, so the guest writes
    // nothing): refused, untouched.
    libvirtd.virsh(&["start", "z-ubuntu20"]);
    assert_eq!(libvirtd.virsh(&["domstate", "z-ubuntu20"]), "running");
    let before = sha256(&disk);
    let run = clockprov_bare(&["bake", "--yes", "--reset-machine-id"], &inventory);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("is running: a domain's disks are baked only while it is shut off"),
        "{run:?}"
    );
    assert_eq!(sha256(&disk), before, "the running domain's disk changed");
    libvirtd.virsh(&["destroy", "z-ubuntu20"]);
    assert_eq!(libvirtd.virsh(&["domstate", "z-ubuntu20"]), "shut off");
    libvirtd.virsh(&["undefine", "z-ubuntu20"]);
}
