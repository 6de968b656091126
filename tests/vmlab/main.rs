//! The VM lab: real Debian and Ubuntu VMs with systemd, chrony and systemd-timesyncd under qemu,
//! on a bridge inside a network namespace this test creates (tests/lab/lab.sh). The seed's story,
//! measured: skewed clocks are detected, apply converges them, and real services are handled for
//! real; a mixed fleet of every supported distribution (mixed.rs), NTS on it (nts.rs), and real
//! Ceph monitors whose own clock-skew warning apply clears (ceph.rs).

// Test helpers panic on failure by design.
#![allow(clippy::missing_panics_doc)]

mod bake;
mod ceph;
mod isolated;
mod mixed;
mod nts;
#[path = "../support/mod.rs"]
#[allow(dead_code)] // each test binary uses its own part
mod support;
use support::lab::{Lab, assert_synchronized_to_zcloud, host};
use support::templates;

/// Requested clock skews of z-b-data-1..3, seconds.
const SKEWS: [f64; 3] = [2.0, -5.0, 11.0];
const CLIENTS: [&str; 3] = ["z-b-data-1", "z-b-data-2", "z-b-data-3"];

/// The seed's cluster, clients skewed by [`SKEWS`].
fn story_lab() -> Lab {
    let skews: Vec<String> = SKEWS.iter().map(|s| format!("{s}")).collect();
    Lab::up("clockprov-vmlab-", &["--skews", &skews.join(" ")])
}

/// `check --format json` on the lab's inventory: the exit code and the document.
fn check_json(lab: &Lab) -> (i32, serde_json::Value) {
    lab.check_json(&lab.inventory(), &[])
}

#[test]
fn the_seed_story_on_real_vms() {
    let lab = story_lab();
    skew_is_detected(&lab);
    apply_converges(&lab);
    a_second_apply_restarts_nothing(&lab);
    a_failed_restart_is_rolled_back(&lab);
}

fn skew_is_detected(lab: &Lab) {
    // 1. The seed's problem: clocks seconds apart, no client synchronized.
    let (code, before) = check_json(lab);
    assert_eq!(code, 2, "{before:#}");
    for (client, skew) in CLIENTS.iter().zip(SKEWS) {
        let h = host(&before, client);
        let measured = h["offset_to_server_seconds"].as_f64().unwrap();
        assert!(
            (measured - skew).abs() < 0.5,
            "{client}: measured {measured} s, injected {skew} s"
        );
        assert!(
            h["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["kind"] == "skew"),
            "{h:#}"
        );
    }
    let inventory = lab.inventory();
    assert_eq!(
        host(&before, "zcloud")["server"],
        serde_json::Value::Null,
        "chrony has no source yet"
    );

    // 2. The plan: allow + local stratum on zcloud, NTP= on the clients.
    let plan = lab.clockprov(&["plan", "-i", &inventory, "--detailed-exitcode"], &[]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains("+allow 192.168.6.0/24\n")
            && plan.stdout.contains("+NTP=192.168.6.200\n"),
        "{plan:?}"
    );
    assert!(
        !plan.stdout.contains("install package"),
        "every daemon is installed already: {plan:?}"
    );
}

fn apply_converges(lab: &Lab) {
    let inventory = lab.inventory();
    // 3. Apply and wait for the fleet to converge.
    let apply = lab.clockprov(
        &["apply", "-i", &inventory, "--yes", "--wait-sync", "240s"],
        &[],
    );
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    assert!(apply.stdout.contains("Apply: 4 hosts changed"), "{apply:?}");

    // 4. Healthy: every client synchronized to zcloud, within Ceph's 0.05 s.
    let (code, after) = check_json(lab);
    assert_eq!(code, 0, "{after:#}");
    for client in CLIENTS {
        assert_synchronized_to_zcloud(&after, client);
        lab.assert_timesyncd_follows_zcloud(client);
    }
}

fn a_second_apply_restarts_nothing(lab: &Lab) {
    let inventory = lab.inventory();
    // 5. A second apply changes nothing and restarts nothing.
    let restarts = |vm: &str, unit: &str| {
        lab.ssh(
            vm,
            &format!("systemctl show -p InvocationID --value {unit}"),
        )
    };
    let before_ids = (
        restarts("zcloud", "chrony.service"),
        restarts("z-b-data-1", "systemd-timesyncd.service"),
    );
    let again = lab.clockprov(&["apply", "-i", &inventory, "--yes"], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("Apply: 0 hosts changed, 4 unchanged"),
        "{again:?}"
    );
    assert_eq!(
        before_ids,
        (
            restarts("zcloud", "chrony.service"),
            restarts("z-b-data-1", "systemd-timesyncd.service")
        )
    );
}

fn a_failed_restart_is_rolled_back(lab: &Lab) {
    let inventory = lab.inventory();
    // 6. A configuration chronyd accepts on parsing (`chronyd -p`) but its service cannot
    //    start with: the restart fails, the previous file comes back, chrony runs again. The
    //    template adds one managed line (only those reach the host's own file), which a unit
    //    drop-in made for the test refuses at start.
    let refuse = "/etc/systemd/system/chrony.service.d/zz-refuse-test-line.conf";
    lab.ssh(
        "zcloud",
        &format!(
            "mkdir -p /etc/systemd/system/chrony.service.d && printf '%s\\n' '[Service]' \"ExecStartPre=/bin/sh -c '! grep -q \\\"^# clockprov: refused at start\\\" /etc/chrony/chrony.conf'\" >{refuse} && systemctl daemon-reload"
        ),
    );
    let templates = templates::chrony_with("# clockprov: refused at start");
    let good = lab.ssh("zcloud", "cat /etc/chrony/chrony.conf");
    let dir = templates.path().display().to_string();
    let broken = lab.clockprov(
        &[
            "apply",
            "-i",
            &inventory,
            "--yes",
            "--limit",
            "zcloud",
            "--templates",
            &dir,
        ],
        &[],
    );
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken
            .stdout
            .contains("chrony.service did not come up after the restart"),
        "{broken:?}"
    );
    assert!(
        broken
            .stdout
            .contains("now: chrony.service is active with the previous files"),
        "{broken:?}"
    );
    assert_eq!(
        lab.ssh("zcloud", "cat /etc/chrony/chrony.conf"),
        good,
        "the previous file is back"
    );
    assert_eq!(
        lab.ssh("zcloud", "systemctl is-active chrony.service")
            .trim(),
        "active"
    );
    lab.ssh("zcloud", &format!("rm {refuse} && systemctl daemon-reload"));
    let (code, healthy) = check_json(lab);
    assert_eq!(code, 0, "{healthy:#}");
}
