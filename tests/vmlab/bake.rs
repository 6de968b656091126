//! `bake` proven by booting, as the seed ends: a copy of the lab's Ubuntu 20.04 image (the seed's
//! template `z-ubuntu20`) is baked, then a VM cloned from it boots with a skewed clock next to the
//! lab's chrony server and synchronizes to it with no `apply` on the clone at all.

use std::time::{Duration, Instant};

use crate::check_json;
use crate::support::guest::{
    assert_baked, clockprov_here, image_inventory, image_with_timesyncd_disabled,
};
use crate::support::lab::{Lab, assert_synchronized_to_zcloud, host, lab_script};

/// The clone's clock skew at boot, seconds.
const CLONE_SKEW: f64 = 7.0;

#[test]
fn a_clone_of_a_baked_image_boots_synchronized() {
    assert!(lab_script().exists());
    let work = tempfile::Builder::new()
        .prefix("clockprov-vmlab-bake-")
        .tempdir()
        .unwrap();
    // A qcow2 golden image: the lab's stock Ubuntu 20.04 client (NTP= unset, so it would use
    // ntp.ubuntu.com, unreachable here), with timesyncd's enablement link gone, as on a template
    // where the daemon was disabled.
    let image = work.path().join("z-ubuntu20.qcow2");
    image_with_timesyncd_disabled("focal", &image, "qcow2");
    let inventory = image_inventory(work.path(), "  z-ubuntu20:\n    path: z-ubuntu20.qcow2\n");

    let started = Instant::now();
    let bake = clockprov_here(&["bake", "--yes", "--reset-machine-id"], &inventory);
    eprintln!("bake took {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(bake.code, 0, "{bake:?}");
    assert!(
        bake.stdout
            .contains("+ link /etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"),
        "{bake:?}"
    );
    assert_baked(&image, "/dev/sda");
    // Baking the same image again changes nothing.
    let again = clockprov_here(&["bake", "--yes"], &inventory);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("0 images to change, 1 unchanged"),
        "{again:?}"
    );

    // Boot a clone of it as z-b-data-3, clock +7 s, next to zcloud.
    let image_arg = format!("z-b-data-3={}", image.display());
    let skews = format!("0 0 {CLONE_SKEW}");
    let lab = Lab::up(
        "clockprov-vmlab-",
        &[
            "--only",
            "zcloud,z-b-data-3",
            "--skews",
            &skews,
            "--image",
            &image_arg,
        ],
    );
    let lab_inventory = lab.inventory();
    // zcloud is the stock chrony server (no `allow`): the clone is skewed and unsynchronized.
    let (code, before) = check_json(&lab);
    assert_eq!(code, 2, "{before:#}");
    let skew = host(&before, "z-b-data-3")["offset_to_server_seconds"]
        .as_f64()
        .unwrap();
    assert!((skew - CLONE_SKEW).abs() < 0.5, "clone at {skew} s");
    // The server is applied; the clone is not touched.
    let apply = lab.clockprov(
        &["apply", "-i", &lab_inventory, "--yes", "--limit", "zcloud"],
        &[],
    );
    assert_eq!(apply.code, 0, "{apply:?}");
    let deadline = Instant::now() + Duration::from_secs(240);
    let after = loop {
        let (code, doc) = check_json(&lab);
        if code == 0 {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "the clone did not synchronize within 240 s: {doc:#}"
        );
        std::thread::sleep(Duration::from_secs(5));
    };
    assert_synchronized_to_zcloud(&after, "z-b-data-3");
    lab.assert_timesyncd_follows_zcloud("z-b-data-3");
    // The configuration came from the image: nothing was written to the clone.
    let conf = lab.ssh(
        "z-b-data-3",
        "cat /etc/systemd/timesyncd.conf.d/zz-clockprov.conf",
    );
    assert!(conf.contains("inventory: images.z-ubuntu20"), "{conf}");
    let main = lab.ssh("z-b-data-3", "cat /etc/systemd/timesyncd.conf");
    assert!(
        !main.contains("clockprov"),
        "the vendor's file is left: {main}"
    );
    let os = lab.ssh("z-b-data-3", ". /etc/os-release; echo $ID:$VERSION_ID");
    assert_eq!(os.trim(), "ubuntu:20.04");
    eprintln!(
        "clone synchronized; {:.1} s after the bake started",
        started.elapsed().as_secs_f64()
    );
}
