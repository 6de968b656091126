//! An isolated LAN (issue 13): a time server with no upstream it can reach, serving its own
//! clock under `local stratum`, 0.8 s from the controller's. Clients are judged against it, so
//! `apply --wait-sync` finishes as soon as they follow it, and check calls the server isolated
//! (a warning, exit 0). On the same lab, check is read-only on real systemd (issue 10): a
//! stopped timesyncd stays stopped, its `ActiveEnterTimestamp` and `InvocationID` unchanged.

use std::time::Instant;

use crate::support::lab::{Lab, assert_synchronized_to_zcloud, host};

/// zcloud's clock, seconds ahead of the controller's.
const SERVER_AHEAD: f64 = 0.8;

/// Step VM's clock so that it is `target` seconds from this machine's (within a few ms).
fn step_to(lab: &Lab, vm: &str, target: f64) {
    let measured = lab.lab("offset", &[vm]);
    let offset: f64 = measured
        .split_whitespace()
        .nth(1)
        .and_then(|o| o.parse().ok())
        .unwrap_or_else(|| panic!("lab.sh offset: {measured:?}"));
    #[allow(clippy::cast_possible_truncation)] // well under a second's microseconds
    let add_us = ((target - offset) * 1e6).round() as i64;
    // In one process, as lab.sh does (`date -s` drops the fraction of a second): x86_64
    // clock_gettime (228), then clock_settime (227) with the correction added.
    lab.ssh(
        vm,
        &format!(
            "perl -e 'use integer; my $d = shift; my $ts = pack(\"q2\", 0, 0); \
             syscall(228, 0, $ts) == 0 or die \"clock_gettime: $!\"; \
             my ($s, $n) = unpack(\"q2\", $ts); my $t = $s * 1000000000 + $n + $d * 1000; \
             syscall(227, 0, pack(\"q2\", $t / 1000000000, $t % 1000000000)) == 0 \
             or die \"clock_settime: $!\";' -- {add_us}"
        ),
    );
}

fn unit_marks(lab: &Lab, vm: &str) -> String {
    lab.ssh(
        vm,
        "systemctl show -p ActiveState -p ActiveEnterTimestamp -p InvocationID systemd-timesyncd.service",
    )
}

#[test]
fn an_isolated_server_is_a_warning_and_check_changes_nothing() {
    let lab = Lab::up(
        "clockprov-vmlab-isolated-",
        &["--only", "zcloud,z-b-data-1", "--skews", "2 0 0"],
    );
    let inventory = lab.inventory();
    step_to(&lab, "zcloud", SERVER_AHEAD);
    eprintln!("stepped: {}", lab.lab("offset", &["zcloud"]).trim());

    let started = Instant::now();
    let apply = lab.clockprov(
        &["apply", "-i", &inventory, "--yes", "--wait-sync", "180s"],
        &[],
    );
    let waited = started.elapsed().as_secs_f64();
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    assert!(
        apply.stderr.contains("warning: zcloud: isolated"),
        "{apply:?}"
    );
    assert!(waited < 150.0, "waited {waited:.0} s: {apply:?}");
    eprintln!("apply --wait-sync finished after {waited:.1} s");

    let (code, doc) = lab.check_json(&inventory, &[]);
    assert_eq!(code, 0, "{doc:#}");
    let server = host(&doc, "zcloud");
    assert_eq!(server["status"], "warning", "{server:#}");
    assert_eq!(server["findings"][0]["kind"], "isolated", "{server:#}");
    let ahead = server["offset_seconds"].as_f64().unwrap();
    assert!(
        (0.5..1.0).contains(&ahead),
        "zcloud at {ahead} s: {server:#}"
    );
    assert_synchronized_to_zcloud(&doc, "z-b-data-1");
    // The client follows its server, not the controller.
    let client = host(&doc, "z-b-data-1")["offset_seconds"].as_f64().unwrap();
    assert!(
        (client - ahead).abs() < 0.05,
        "z-b-data-1 at {client} s, zcloud at {ahead} s"
    );
    eprintln!("zcloud {ahead:+.3} s from the controller, z-b-data-1 {client:+.3} s");

    // Read-only, on real systemd: timesyncd stopped stays stopped, not restarted, and check
    // says what it found.
    lab.ssh("z-b-data-1", "systemctl stop systemd-timesyncd.service");
    let before = unit_marks(&lab, "z-b-data-1");
    assert!(before.contains("ActiveState=inactive"), "{before}");
    let (code, doc) = lab.check_json(&inventory, &[]);
    assert_eq!(code, 2, "{doc:#}");
    let stopped = host(&doc, "z-b-data-1");
    assert_eq!(
        stopped["findings"][0]["kind"], "daemon-not-running",
        "{stopped:#}"
    );
    assert_eq!(stopped["synchronized"], false, "{stopped:#}");
    assert_eq!(
        unit_marks(&lab, "z-b-data-1"),
        before,
        "check changed the unit"
    );
}
