//! The daemon as a choice per host (chrony clients, the package swap) and the RHEL family's
//! layout, on sshd test hosts that present it (`testhosts.sh --os rocky-9`: os-release,
//! `/etc/chrony.conf`, `chronyd.service`, rpm and dnf stand-ins, no dpkg or apt).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::hosts::{HostSpec, script, seed};
use crate::{Clockprov, LabBuilder};

/// Debian's real chronyd, extracted once into the test cache by `testhosts.sh chronyd`.
fn chronyd() -> PathBuf {
    let out = Command::new("bash")
        .arg(script())
        .arg("chronyd")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn dnf_log(lab: &crate::Lab, addr: &str) -> String {
    std::fs::read_to_string(lab.hosts.host_dir(addr).join("state/dnf.log")).unwrap_or_default()
}

#[test]
fn rhel_hosts_and_chrony_clients_get_their_layout_and_the_package_swap_is_planned() {
    let lab = LabBuilder::new()
        .server(HostSpec::new("rocky-9", "chrony"))
        .clients(vec![
            // The RHEL family's default is chrony; it is missing here: dnf installs it.
            HostSpec::new("rocky-9", "none").without_seed_files(),
            // timesyncd by default; the inventory asks for chrony: the package swap.
            HostSpec::new("debian-12", "systemd-timesyncd"),
            // Left to its default: timesyncd.
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
        ])
        .start();
    let (server, rhel, swapped, stays) = (
        lab.server.clone(),
        lab.clients[0].clone(),
        lab.clients[1].clone(),
        lab.clients[2].clone(),
    );
    lab.rewrite_inventory(
        &format!("{{ address: {swapped} }}"),
        &format!("{{ address: {swapped}, daemon: chrony }}"),
    );

    // A minimal RHEL install has no perl: the facts are read the other way (stat, head).
    for addr in [&server, &rhel] {
        let perl = lab.hosts.ssh(addr, "command -v perl");
        assert!(!perl.status.success(), "{addr}: {perl:?}");
    }
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    let out = &plan.stdout;
    for expected in [
        "--- zcloud:/etc/chrony.conf\n+++ zcloud:/etc/chrony.conf (clockprov)\n",
        "-pool 2.rocky.pool.ntp.org iburst\n",
        "+pool ntp.ubuntu.com iburst\n",
        "+allow 127.0.0.0/8\n",
        "   ~ restart chronyd.service\n",
        "--- data-1:/etc/chrony.conf (absent)\n",
        &format!("+server {server} iburst\n"),
        "   + install package chrony\n",
        "   + install package chrony (removes systemd-timesyncd: both provide time-daemon)\n",
        "--- data-2:/etc/chrony/chrony.conf\n",
        "-pool 2.debian.pool.ntp.org iburst\n",
        &format!("+NTP={server}\n"),
    ] {
        assert!(out.contains(expected), "{expected:?} not in {plan:?}");
    }
    // The vendor's `sourcedir` lines stay (DHCP's servers, Debian's sources.d): not managed.
    assert!(!out.contains("-sourcedir"), "{plan:?}");
    // Only the managed lines of the hosts' own files change: the vendor's comments stay.
    assert!(!out.contains("-# "), "{plan:?}");
    assert!(dnf_log(&lab, &rhel).lines().all(|l| l.starts_with("rpm ")));
    assert!(lab.hosts.apt_log(&swapped).is_empty());

    let apply = lab.run("apply", &["--yes"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let conf = lab.hosts.read_etc(&server, "chrony.conf").unwrap();
    assert!(
        conf.contains("\nallow 127.0.0.0/8\n") && conf.contains("\nkeyfile /etc/chrony.keys\n"),
        "{conf}"
    );
    assert!(lab.hosts.read_etc(&server, "chrony/chrony.conf").is_none());
    assert!(
        lab.hosts
            .systemctl_log(&server)
            .contains(&"restart chronyd.service".to_owned()),
        "{:?}",
        lab.hosts.systemctl_log(&server)
    );
    assert!(
        dnf_log(&lab, &rhel).contains("\ninstall -y -q chrony\n"),
        "{}",
        dnf_log(&lab, &rhel)
    );
    let conf = lab.hosts.read_etc(&rhel, "chrony.conf").unwrap();
    assert!(
        conf.contains(&format!("\nserver {server} iburst\n")),
        "{conf}"
    );
    assert!(conf.contains("\nmakestep 1.0 3\n"), "{conf}");
    assert!(
        !conf.contains("allow ") || conf.contains("#allow "),
        "{conf}"
    );
    assert_swapped_to_chrony(&lab, &swapped, &server);
    assert_eq!(
        lab.hosts.read_etc(&stays, "chrony/chrony.conf").unwrap(),
        seed("ubuntu-20.04", "chrony.conf"),
        "a timesyncd client's chrony.conf is not touched"
    );

    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");

    check_names_each_hosts_unit(&lab);
}

/// The swapped client: chrony installed (timesyncd removed by the conflict), following only
/// the server, its unit enabled and running.
fn assert_swapped_to_chrony(lab: &crate::Lab, swapped: &str, server: &str) {
    let status = lab.hosts.dpkg_status(swapped);
    assert!(
        status.contains("Package: chrony\nStatus: install ok installed"),
        "{status}"
    );
    assert!(
        !status.contains("Package: systemd-timesyncd\nStatus: install ok installed"),
        "{status}"
    );
    let conf = lab.hosts.read_etc(swapped, "chrony/chrony.conf").unwrap();
    assert!(
        conf.contains(&format!("\nserver {server} iburst\n")),
        "{conf}"
    );
    // Debian's own file with its pool replaced; its other lines as shipped.
    assert_eq!(
        conf,
        seed("debian-12", "chrony.conf").replace(
            "\npool 2.debian.pool.ntp.org iburst\n",
            &format!("\n# clockprov: the lines below are managed by clockprov (inventory: clients.data-2)\nserver {server} iburst\n")
        )
    );
    assert_eq!(
        lab.hosts.unit_state(swapped, "chrony.service"),
        Some(("enabled".to_owned(), "active".to_owned()))
    );
    assert_eq!(
        lab.hosts.unit_state(swapped, "systemd-timesyncd.service"),
        None
    );
}

/// check reads each host's own unit: chronyd.service on the RHEL family.
fn check_names_each_hosts_unit(lab: &crate::Lab) {
    let check = lab.run("check", &["--format", "json", "--samples", "3"]);
    let doc: serde_json::Value = serde_json::from_str(&check.stdout).expect(&check.stderr);
    let units: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["unit"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        units,
        [
            "chronyd.service",
            "chronyd.service",
            "chrony.service",
            "systemd-timesyncd.service"
        ],
        "{check:?}"
    );
}

#[test]
fn timesyncd_on_the_rhel_family_is_refused_at_plan() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("rocky-9", "chrony")])
        .start();
    let client = lab.clients[0].clone();
    lab.rewrite_inventory(
        &format!("{{ address: {client} }}"),
        &format!("{{ address: {client}, daemon: timesyncd }}"),
    );
    let plan = lab.run("plan", &[]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout.contains(
            "systemd-timesyncd is not available on Rocky Linux 9.4 (Blue Onyx): the RHEL family's repositories do not have it"
        ),
        "{plan:?}"
    );
    assert!(
        dnf_log(&lab, &client)
            .lines()
            .all(|l| l.starts_with("rpm "))
    );
}

/// Every chrony.conf clockprov renders, for every supported system, as a server (with an
/// upstream, and isolated) and as a chrony client, passes Debian's real `chronyd -p`.
#[test]
fn every_rendered_chrony_conf_passes_chronyd() {
    let chronyd = chronyd();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inv.yaml");
    // NTS: a server with the fixture certificate (for 192.168.6.200), clients with the system
    // store and with a private CA.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nts");
    std::fs::write(
        &inventory,
        format!("ntp_servers:\n  up:\n    address: 192.0.2.1\n    upstream:\n      - pool: ntp.ubuntu.com\n        maxsources: 2\n      - server: 192.0.2.9\n        iburst: false\n    allow: [192.0.2.0/24, 2001:db8::/32]\n  alone:\n    address: 192.0.2.2\n    local_stratum: 10\n    allow: [192.0.2.0/24]\n  nts:\n    address: 192.168.6.200\n    local_stratum: 10\n    allow: [192.0.2.0/24, 192.168.6.0/24]\n    nts: {{ certificate: {f}/server.crt, key: {f}/server.key }}\nclients:\n  c:\n    address: 192.0.2.3\n    daemon: chrony\n  nts-c:\n    address: 192.168.6.3\n    daemon: chrony\n    ntp: [nts]\n    nts: true\n  nts-ca:\n    address: 192.168.6.4\n    daemon: chrony\n    ntp: [nts]\n    nts: {{ trusted_certs: {f}/ca.crt }}\n", f = fixtures.display()),
    )
    .unwrap();
    let mut refused = Vec::new();
    let mut checked = 0;
    for system in clockprov::daemon::SUPPORTED_SYSTEMS {
        let versions: &[Option<&str>] = match system {
            // RHEL 8.0-8.3 shipped chrony 3.5.
            s if s.ends_with(":8") => &[None, Some("3.5")],
            _ => &[None],
        };
        for host in ["up", "alone", "c", "nts", "nts-c", "nts-ca"] {
            for version in versions {
                let mut render = Clockprov::new()
                    .args(["render", "-i"])
                    .arg(&inventory)
                    .args([host, "--os", system]);
                if let Some(v) = version {
                    render = render.args(["--daemon-version", v]);
                }
                let run = render.run();
                if host.starts_with("nts") && run.code != 0 {
                    // chrony 3.x has no NTS; 4.0 cannot check an IP address in a certificate.
                    assert!(
                        run.stderr.contains("NTS needs chrony 4.0 or later")
                            || run.stderr.contains("cannot check a server's IP address"),
                        "{system} {host}: {run:?}"
                    );
                    refused.push(format!("{system} {host} {version:?}"));
                    continue;
                }
                assert_eq!(run.code, 0, "{system} {host}: {run:?}");
                if host.starts_with("nts") {
                    assert!(run.stdout.contains("\nnts"), "{system} {host}: {run:?}");
                    assert!(!run.stdout.contains("PRIVATE KEY"), "{run:?}");
                }
                // chrony 4.6+ on Debian 13 / Ubuntu 25.10+ reads tzdata's leap-seconds.list, as
                // their own file does. Debian 12's chronyd 4.3 here predates `leapseclist`: the
                // line is left out for it (Ubuntu 26.04's real chronyd 4.8 checks it with `-p`
                // at every apply in the VM lab's mixed fleet).
                let leapseclist = "\nleapseclist /usr/share/zoneinfo/leap-seconds.list\n";
                let newer = ["debian:13", "ubuntu:25.10", "ubuntu:26.04"].contains(&system);
                assert_eq!(
                    run.stdout.contains(leapseclist),
                    newer,
                    "{system} {host}: {run:?}"
                );
                assert_eq!(
                    run.stdout.contains("\nleapsectz right/UTC\n"),
                    !newer && system != "ubuntu:20.04",
                    "{system} {host}: {run:?}"
                );
                let file = dir.path().join("chrony.conf");
                std::fs::write(&file, run.stdout.replace(leapseclist, "\n")).unwrap();
                let out = Command::new(&chronyd)
                    .arg("-p")
                    .arg("-f")
                    .arg(&file)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{system} {host} {version:?}: chronyd -p refuses:\n{}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    run.stdout
                );
                checked += 1;
                // And laid onto the distribution's own file, as plan does on a host that has
                // one.
                check_laid_onto_the_stock_file(&chronyd, &inventory, &file, system, host, *version);
            }
        }
    }
    assert!(checked >= 6 * clockprov::daemon::SUPPORTED_SYSTEMS.len() - refused.len());
    // Ubuntu 20.04's chrony 3.5, as server and both clients.
    assert!(
        refused
            .iter()
            .filter(|r| r.starts_with("ubuntu:20.04 "))
            .count()
            == 3,
        "{refused:?}"
    );
}

/// `host` rendered for `system` (chrony `version`) laid onto the test hosts' stock file of that
/// family (Ubuntu 20.04's, Debian 12's, Rocky 9's) with `render --onto`, as plan does on a host
/// that has one, passes `chronyd -p` (written to `file`).
fn check_laid_onto_the_stock_file(
    chronyd: &Path,
    inventory: &Path,
    file: &Path,
    system: &str,
    host: &str,
    version: Option<&str>,
) {
    let own = match system.split(':').next() {
        _ if system == "ubuntu:20.04" => "ubuntu-20.04",
        Some("debian" | "ubuntu") => "debian-12",
        _ => "rocky-9",
    };
    let own_file = crate::support::hosts::seed_file(own, "chrony.conf");
    let mut onto = Clockprov::new()
        .args(["render", "-i"])
        .arg(inventory)
        .args([host, "--os", system, "--onto"])
        .arg(&own_file);
    if let Some(v) = version {
        onto = onto.args(["--daemon-version", v]);
    }
    let laid = onto.run();
    assert_eq!(laid.code, 0, "{system} {host} onto {own}: {laid:?}");
    assert!(
        laid.stdout
            .contains("\n# clockprov: the lines below are managed by clockprov"),
        "{laid:?}"
    );
    std::fs::write(file, &laid.stdout).unwrap();
    let out = Command::new(chronyd)
        .arg("-p")
        .arg("-f")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{system} {host} {version:?} onto {own}: chronyd -p refuses:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        laid.stdout
    );
}
