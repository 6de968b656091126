//! plan / apply / render against real sshd hosts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::LabBuilder;
use crate::support::hosts::{HostSpec, seed};

const CHRONY: &str = "chrony/chrony.conf";
/// The vendor's main file: clockprov leaves it as the package shipped it.
const TIMESYNCD: &str = "systemd/timesyncd.conf";
/// clockprov's own timesyncd drop-in.
const DROPIN: &str = "systemd/timesyncd.conf.d/zz-clockprov.conf";

#[test]
fn plan_on_fresh_hosts_shows_diffs_and_changes_nothing() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("ubuntu-20.04", "systemd-timesyncd"); 1])
        .start();
    let run = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(
            "--- zcloud:/etc/chrony/chrony.conf\n+++ zcloud:/etc/chrony/chrony.conf (clockprov)\n"
        ),
        "{run:?}"
    );
    assert!(run.stdout.contains("+allow 127.0.0.0/8\n"), "{run:?}");
    assert!(run.stdout.contains("+local stratum 10\n"), "{run:?}");
    assert!(
        run.stdout
            .contains("\n-pool 2.debian.pool.ntp.org iburst\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("\n+pool ntp.ubuntu.com iburst\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(
            "   + create /etc/systemd/timesyncd.conf.d/zz-clockprov.conf (mode 644, root)\n"
        ),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains(&format!("+NTP=\n+NTP={}\n", lab.server)),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("   ~ restart chrony.service\n"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .ends_with("\nPlan: 2 hosts to change, 0 unchanged, 0 unreachable, 0 failed.\n"),
        "{run:?}"
    );
    // Nothing was written or restarted.
    assert_eq!(
        lab.hosts.read_etc(&lab.server, CHRONY).unwrap(),
        seed("debian-12", "chrony.conf")
    );
    assert_eq!(
        lab.hosts.read_etc(&lab.clients[0], TIMESYNCD).unwrap(),
        seed("ubuntu-20.04", "timesyncd.conf")
    );
    assert_eq!(lab.hosts.read_etc(&lab.clients[0], DROPIN), None);
    for addr in lab.all() {
        assert!(
            lab.service_changes(&addr).is_empty(),
            "{addr}: {:?}",
            lab.hosts.systemctl_log(&addr)
        );
    }
    // Without --detailed-exitcode a successful plan exits 0.
    assert_eq!(lab.run("plan", &[]).code, 0);
}

#[test]
fn apply_converges_and_a_second_run_is_a_no_op() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("debian-12", "systemd-timesyncd"),
        ])
        .start();
    let run = lab.run("apply", &["--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Apply: 3 hosts changed, 0 unchanged, 0 unreachable, 0 failed."),
        "{run:?}"
    );
    // The files are exactly what `render` prints for each host's distribution (chrony: laid
    // onto the host's own chrony.conf, the seed, as plan does).
    let expected_server = lab.render_onto("zcloud", "debian:12", "debian-12");
    assert_eq!(
        lab.hosts.read_etc(&lab.server, CHRONY).unwrap(),
        expected_server
    );
    let expected_client = lab
        .run("render", &["data-1", "--os", "ubuntu:20.04"])
        .stdout;
    assert_eq!(
        lab.hosts.read_etc(&lab.clients[0], DROPIN).unwrap(),
        expected_client
    );
    assert!(expected_client.contains(&format!("\nNTP=\nNTP={}\n", lab.server)));
    // The vendor's main files are as their packages shipped them.
    for (client, os) in [(0, "ubuntu-20.04"), (1, "debian-12")] {
        assert_eq!(
            lab.hosts.read_etc(&lab.clients[client], TIMESYNCD).unwrap(),
            seed(os, "timesyncd.conf")
        );
    }
    // Mode 0644, owner root, and a backup of the stock file beside it.
    let path = lab.hosts.etc_file(&lab.server, CHRONY);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o644
    );
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    let backups: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".clockprov-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        std::fs::read_to_string(&backups[0]).unwrap(),
        seed("debian-12", "chrony.conf")
    );
    for addr in lab.all() {
        assert_eq!(
            lab.restarts(&addr),
            1,
            "{addr}: {:?}",
            lab.hosts.systemctl_log(&addr)
        );
    }
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();

    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again
            .stdout
            .contains("Plan: 0 hosts to change, 3 unchanged"),
        "{again:?}"
    );
    let again = lab.run("apply", &["--yes"]);
    assert_eq!(again.code, 0, "{again:?}");
    for addr in lab.all() {
        assert_eq!(
            lab.restarts(&addr),
            1,
            "{addr} restarted again: {:?}",
            lab.hosts.systemctl_log(&addr)
        );
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        mtime,
        "the second apply rewrote the file"
    );
}

/// The lab's fleet planned in this process as `apply` plans it (each host's facts shell kept for
/// its transaction), to act on the hosts between plan and apply.
struct InProcess {
    rt: tokio::runtime::Runtime,
    connector: Arc<clockprov::ssh::connector::Connector>,
    options: clockprov::fleet::RunOptions,
    planned: Vec<clockprov::operations::HostResult>,
}

impl InProcess {
    fn plan(lab: &crate::Lab) -> InProcess {
        // In this process, not through the binary: name an empty OpenSSH config, or the
        // developer's own ~/.ssh/config (this process's HOME) would be read.
        let no_config = lab.hosts.dir().join("empty_ssh_config");
        std::fs::write(&no_config, "").unwrap();
        lab.rewrite_inventory(
            "  connect_timeout: 30s\n",
            &format!(
                "  connect_timeout: 30s\n  config_file: {}\n",
                no_config.display()
            ),
        );
        let inventory = clockprov::inventory::Inventory::load(&lab.inventory).unwrap();
        let options = clockprov::fleet::RunOptions {
            forks: 4,
            connect_timeout: None,
            command_timeout: None,
            max_output: clockprov::ssh::transport::DEFAULT_MAX_OUTPUT,
            progress: false,
            max_file_size: clockprov::host::facts::DEFAULT_MAX_FILE_SIZE,
            keep_shells: true,
            release_done: false,
            keep_open: None,
        };
        let connector =
            Arc::new(clockprov::ssh::connector::Connector::new(&inventory, &options).unwrap());
        let renderer = Arc::new(clockprov::render::Renderer::new(None).unwrap());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let planned = rt.block_on(clockprov::operations::plan_hosts(
            connector.clone(),
            renderer,
            inventory.hosts.clone(),
            &options,
        ));
        assert!(
            planned
                .iter()
                .all(|r| r.status == clockprov::operations::HostStatus::Change),
            "{planned:?}"
        );
        InProcess {
            rt,
            connector,
            options,
            planned,
        }
    }

    fn apply(self) -> Vec<clockprov::operations::HostResult> {
        self.rt.block_on(clockprov::operations::apply_hosts(
            self.connector,
            self.planned,
            &self.options,
            clockprov::host::apply::ApplyOptions::default(),
        ))
    }
}

/// The lab's server among `applied`: applied, its unit restarted once.
fn assert_server_applied_once(lab: &crate::Lab, applied: &[clockprov::operations::HostResult]) {
    let server_result = applied.iter().find(|r| r.address == lab.server).unwrap();
    assert_eq!(
        server_result.status,
        clockprov::operations::HostStatus::Applied,
        "{server_result:?}"
    );
    assert_eq!(lab.restarts(&lab.server), 1);
}

/// The `sh -s` processes under the sshd with PID `sshd` (its sessions' shells).
fn shells_under(sshd: u32) -> Vec<u32> {
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read(entry.path().join("cmdline")).ok().as_deref() != Some(b"/bin/sh\0-s\0") {
            continue;
        }
        let mut up = parent(pid);
        while let Some(p) = up.filter(|p| *p > 1) {
            if p == sshd {
                found.push(pid);
                break;
            }
            up = parent(p);
        }
    }
    found
}

#[test]
fn a_host_whose_facts_shell_dies_before_its_transaction_fails_alone_and_unchanged() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    let in_process = InProcess::plan(&lab);
    // Planned: each host's facts shell waits for its transaction. The client's dies.
    let shells = shells_under(lab.hosts.pid(&client).unwrap());
    assert_eq!(shells.len(), 1, "the client's kept shell: {shells:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &shells[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let applied = in_process.apply();
    let client_result = applied.iter().find(|r| r.address == client).unwrap();
    assert_eq!(
        client_result.status,
        clockprov::operations::HostStatus::Failed,
        "{client_result:?}"
    );
    let error = client_result.error.as_deref().unwrap();
    assert!(error.contains("nothing was done"), "{error}");
    assert_eq!(lab.hosts.read_etc(&client, DROPIN), None);
    assert!(lab.service_changes(&client).is_empty());
    // The other host was applied all the same, in its kept shell.
    assert_server_applied_once(&lab, &applied);
    assert!(shells_under(lab.hosts.pid(&lab.server).unwrap()).is_empty());
    // And the next apply converges the client.
    let run = lab.run("apply", &["--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(lab.hosts.read_etc(&client, DROPIN).is_some(), "{run:?}");
}

#[test]
fn a_file_edited_after_planning_is_refused() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    let in_process = InProcess::plan(&lab);
    // Someone edits the client's file between plan and apply.
    let edited = "[Time]\nNTP=10.9.9.9\n";
    // On the host: a directory made in the overlay's upper layer from outside is not seen.
    lab.hosts.root(
        &client,
        "mkdir -p /etc/systemd/timesyncd.conf.d && printf '[Time]\\nNTP=10.9.9.9\\n' >/etc/systemd/timesyncd.conf.d/zz-clockprov.conf",
    );
    let applied = in_process.apply();
    let client_result = applied.iter().find(|r| r.address == client).unwrap();
    assert_eq!(
        client_result.status,
        clockprov::operations::HostStatus::Failed
    );
    let error = client_result.error.as_deref().unwrap();
    assert!(
        error.contains(
            "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf changed on the host since it was read"
        ),
        "{error}"
    );
    assert_eq!(lab.hosts.read_etc(&client, DROPIN).unwrap(), edited);
    assert!(lab.service_changes(&client).is_empty());
    // The other host was applied all the same.
    assert_server_applied_once(&lab, &applied);
}

#[test]
fn a_missing_daemon_is_installed_and_the_conflict_named() {
    let lab = LabBuilder::new()
        .server(HostSpec::new("debian-12", "systemd-timesyncd").without_seed_files())
        .clients(vec![HostSpec::new("debian-12", "systemd-timesyncd")])
        .start();
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(
            "   + install package chrony (removes systemd-timesyncd: both provide time-daemon)\n"
        ),
        "{plan:?}"
    );
    assert!(
        plan.stdout
            .contains("   + create /etc/chrony/chrony.conf (mode 644, root)\n"),
        "{plan:?}"
    );
    assert!(
        plan.stdout
            .contains("--- zcloud:/etc/chrony/chrony.conf (absent)\n"),
        "{plan:?}"
    );
    assert!(lab.hosts.apt_log(&lab.server).is_empty());
    let apply = lab.run("apply", &["--yes"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    let apt = lab.hosts.apt_log(&lab.server);
    assert!(
        apt.iter()
            .any(|l| l.contains("install") && l.ends_with("chrony")),
        "{apt:?}"
    );
    let status = lab.hosts.dpkg_status(&lab.server);
    assert!(
        status.contains("Package: chrony\nStatus: install ok installed"),
        "{status}"
    );
    assert!(
        !status.contains("Package: systemd-timesyncd\nStatus: install ok installed"),
        "{status}"
    );
    assert!(
        lab.hosts
            .systemctl_log(&lab.server)
            .contains(&"enable chrony.service".to_owned())
    );
    assert_eq!(lab.run("plan", &["--detailed-exitcode"]).code, 0);
}

#[test]
fn a_unit_that_fails_to_restart_gets_its_old_file_back() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    lab.hosts.fail_start(&client, "systemd-timesyncd.service");
    let run = lab.run("apply", &["--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    // The stand-in keeps failing, so the restart after restoring fails too; the file is back.
    assert!(
        run.stdout.contains(
            "FAILED data-1: systemd-timesyncd.service did not come up after the restart (failed)"
        ),
        "{run:?}"
    );
    assert_eq!(
        lab.hosts.read_etc(&client, TIMESYNCD).unwrap(),
        seed("ubuntu-20.04", "timesyncd.conf")
    );
    assert_eq!(
        lab.hosts.read_etc(&client, DROPIN),
        None,
        "the drop-in is gone"
    );
    assert_eq!(
        lab.restarts(&client),
        2,
        "restart, then restart after restoring"
    );
    assert!(
        run.stdout
            .contains("now: systemd-timesyncd.service is failed with the previous files too"),
        "{run:?}"
    );
    // The server was not held back by the client's failure.
    assert!(
        run.stdout
            .contains("ok zcloud: wrote /etc/chrony/chrony.conf; restarted chrony.service"),
        "{run:?}"
    );
    // --wait-sync does not wait for a host whose apply failed: it is an error already.
    let started = std::time::Instant::now();
    let run = lab.run(
        "apply",
        &["--yes", "--limit", "data-1", "--wait-sync", "60s"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("wait-sync: not waiting for data-1"),
        "{run:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "waited for a failed host: {run:?}"
    );
}

/// A host clockprov managed the old way (timesyncd.conf written whole): the plan shows the
/// vendor's text given back beside the new drop-in; a failed restart undoes both; the next
/// apply does both, and the one after changes nothing.
#[test]
fn an_old_layout_host_gets_its_vendor_file_back_and_a_rollback_undoes_both() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("debian-12", "systemd-timesyncd")])
        .start();
    let client = lab.clients[0].clone();
    let old = format!(
        "#  This file is part of systemd.\n#\n# Managed by clockprov (inventory: clients.data-1). Local edits\n# are replaced by the next `clockprov apply`.\n\n[Time]\nNTP={}\n",
        lab.server
    );
    std::fs::write(lab.hosts.etc_file(&client, TIMESYNCD), &old).unwrap();
    let plan = lab.run("plan", &["--limit", "data-1"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    for shown in [
        "   + create /etc/systemd/timesyncd.conf.d/zz-clockprov.conf (mode 644, root)\n",
        "   ~ restore vendor file /etc/systemd/timesyncd.conf (as its package shipped it; clockprov's servers are in its drop-in)\n",
        "-# Managed by clockprov (inventory: clients.data-1). Local edits\n",
        "+#NTP=\n",
    ] {
        assert!(plan.stdout.contains(shown), "{shown}: {plan:?}");
    }

    lab.hosts.fail_start(&client, "systemd-timesyncd.service");
    let failed = lab.run("apply", &["--yes", "--limit", "data-1"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD).unwrap(), old);
    assert_eq!(lab.hosts.read_etc(&client, DROPIN), None, "{failed:?}");

    lab.hosts
        .clear_fail_start(&client, "systemd-timesyncd.service");
    let run = lab.run("apply", &["--yes", "--limit", "data-1"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        lab.hosts.read_etc(&client, TIMESYNCD).unwrap(),
        seed("debian-12", "timesyncd.conf")
    );
    assert!(
        lab.hosts
            .read_etc(&client, DROPIN)
            .unwrap()
            .contains(&format!("\nNTP=\nNTP={}\n", lab.server))
    );
    let again = lab.run("plan", &["--limit", "data-1", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
}

/// The lines a plan's text diffs remove and add (file headers left out).
fn diff_lines(plan: &str) -> Vec<&str> {
    plan.lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("--- ")
                && !l.starts_with("+++ ")
        })
        .collect()
}

#[test]
fn ubuntu_20_04s_own_chrony_conf_changes_only_in_its_sources() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("ubuntu-20.04", "chrony")])
        .start();
    let client = lab.clients[0].clone();
    lab.rewrite_inventory(
        &format!("{{ address: {client} }}"),
        &format!("{{ address: {client}, daemon: chrony }}"),
    );
    let plan = lab.run("plan", &["--limit", "data-1"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout
            .contains("   ~ update /etc/chrony/chrony.conf\n"),
        "{plan:?}"
    );
    // The vendor's pools out, the inventory's server in; not one comment of the vendor's
    // touched ("usuable", the typographic apostrophe).
    assert_eq!(
        diff_lines(&plan.stdout),
        [
            "-pool ntp.ubuntu.com        iburst maxsources 4",
            "-pool 0.ubuntu.pool.ntp.org iburst maxsources 1",
            "-pool 1.ubuntu.pool.ntp.org iburst maxsources 1",
            "-pool 2.ubuntu.pool.ntp.org iburst maxsources 2",
            "+# clockprov: the lines below are managed by clockprov (inventory: clients.data-1)",
            &format!("+server {} iburst", lab.server),
        ],
        "{plan:?}"
    );
    let run = lab.run("apply", &["--yes", "--limit", "data-1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let conf = lab.hosts.read_etc(&client, CHRONY).unwrap();
    assert!(
        conf.contains("usuable directives") && conf.contains("can\u{2019}t be used"),
        "{conf}"
    );
    assert_eq!(
        conf,
        lab.render_onto("data-1", "ubuntu:20.04", "ubuntu-20.04")
    );
    let again = lab.run("apply", &["--yes", "--limit", "data-1"]);
    assert!(
        again.stdout.contains("Apply: 0 hosts changed, 1 unchanged"),
        "{again:?}"
    );
}

#[test]
fn an_old_whole_chrony_conf_gets_its_vendor_text_back_with_the_managed_lines() {
    let lab = LabBuilder::new().start();
    // As an older clockprov wrote it: its template's text, whole, with its header.
    let old = "# Welcome to the chrony configuration file. See chrony.conf(5) for more\n# information about usable directives.\n#\n# Managed by clockprov (inventory: ntp_servers.zcloud). Local edits are\n# replaced by the next `clockprov apply`.\n\n# Include configuration files found in /etc/chrony/conf.d.\nconfdir /etc/chrony/conf.d\n\n# Upstream time sources.\npool ntp.ubuntu.com iburst\n\n# Use time sources from DHCP.\nsourcedir /run/chrony-dhcp\n\n# Serve time to these networks (chrony refuses every client without an allow line).\nallow 127.0.0.0/8\n\n# Keep serving the LAN, at this stratum, while no upstream is reachable.\nlocal stratum 10\n\nkeyfile /etc/chrony/chrony.keys\ndriftfile /var/lib/chrony/chrony.drift\nmakestep 1 3\n";
    std::fs::write(lab.hosts.etc_file(&lab.server, CHRONY), old).unwrap();
    let plan = lab.run("plan", &["--limit", "zcloud"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    for shown in [
        "   ~ restore vendor file /etc/chrony/chrony.conf (the text its package shipped, /usr/share/chrony/chrony.conf, with clockprov's managed lines)\n",
        "-# Managed by clockprov (inventory: ntp_servers.zcloud). Local edits are\n",
        "+# Use Debian vendor zone.\n",
    ] {
        assert!(plan.stdout.contains(shown), "{shown}: {plan:?}");
    }
    assert!(!plan.stdout.contains("warning"), "{plan:?}");
    let run = lab.run("apply", &["--yes", "--limit", "zcloud"]);
    assert_eq!(run.code, 0, "{run:?}");
    // Debian's own file (the test host's vendor copy is the seed), its pool replaced.
    let conf = lab.hosts.read_etc(&lab.server, CHRONY).unwrap();
    assert_eq!(conf, lab.render_onto("zcloud", "debian:12", "debian-12"));
    assert_eq!(
        conf,
        seed("debian-12", "chrony.conf").replace(
            "\npool 2.debian.pool.ntp.org iburst\n",
            "\n# clockprov: the lines below are managed by clockprov (inventory: ntp_servers.zcloud)\npool ntp.ubuntu.com iburst\nallow 127.0.0.0/8\nlocal stratum 10\n"
        )
    );
    let again = lab.run("apply", &["--yes", "--limit", "zcloud"]);
    assert!(
        again.stdout.contains("Apply: 0 hosts changed, 1 unchanged"),
        "{again:?}"
    );
    assert_eq!(lab.restarts(&lab.server), 1);
}

#[test]
fn an_old_whole_chrony_conf_without_a_vendor_copy_keeps_its_lines_with_a_warning() {
    let lab = LabBuilder::new()
        .server(HostSpec::new("rocky-9", "chrony"))
        .start();
    let old = "# Managed by clockprov (inventory: ntp_servers.zcloud). Local edits are\n# replaced by the next `clockprov apply`.\n\n# Time sources.\npool ntp.ubuntu.com iburst\n\ndriftfile /var/lib/chrony/drift\nmakestep 1.0 3\nallow 127.0.0.0/8\nlocal stratum 10\nkeyfile /etc/chrony.keys\nntsdumpdir /var/lib/chrony\n";
    std::fs::write(lab.hosts.etc_file(&lab.server, "chrony.conf"), old).unwrap();
    let plan = lab.run("plan", &["--limit", "zcloud"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains(
            "   ! warning: /etc/chrony.conf was written whole by an older clockprov, and the text its package shipped is not on the host (the RHEL family keeps no copy)"
        ),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains("   ~ update /etc/chrony.conf\n"),
        "{plan:?}"
    );
    assert_eq!(
        diff_lines(&plan.stdout),
        [
            "+# clockprov: the lines below are managed by clockprov (inventory: ntp_servers.zcloud)",
            "+allow 127.0.0.0/8",
            "+local stratum 10",
            "-allow 127.0.0.0/8",
            "-local stratum 10",
        ],
        "{plan:?}"
    );
    assert_eq!(lab.run("apply", &["--yes", "--limit", "zcloud"]).code, 0);
    let again = lab.run("plan", &["--limit", "zcloud", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
}

#[test]
fn chronyd_refuses_a_broken_template_before_it_is_used() {
    // A managed line (only those reach the host's own file) that chronyd cannot parse.
    let templates =
        crate::support::templates::chrony_with("server 192.0.2.1 iburst not_a_chrony_option");
    let lab = LabBuilder::new().start();
    let dir = templates.path().display().to_string();
    let run = lab.run("apply", &["--yes", "--templates", &dir]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("the rendered /etc/chrony/chrony.conf fails `chronyd -p -f FILE`"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("Could not parse server directive"),
        "chronyd's own message is shown: {run:?}"
    );
    assert_eq!(
        lab.hosts.read_etc(&lab.server, CHRONY).unwrap(),
        seed("debian-12", "chrony.conf")
    );
    assert!(lab.service_changes(&lab.server).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(lab.hosts.etc_file(&lab.server, "chrony"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary file left behind: {leftovers:?}"
    );
}

#[test]
fn readers_never_see_a_partial_file() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("debian-12", "systemd-timesyncd")])
        .start();
    let client = lab.clients[0].clone();
    let path = lab.hosts.etc_file(&client, DROPIN);
    // Two inventories whose rendered files differ in size: every read must be one or the other.
    let servers: Vec<String> = (0..60).map(|i| format!("10.1.{i}.1")).collect();
    let big = format!("fallback_ntp: [{}] }}", servers.join(", "));
    assert_eq!(lab.run("apply", &["--yes"]).code, 0);
    let small_text = std::fs::read_to_string(&path).unwrap();
    lab.rewrite_inventory(
        &format!("address: {client} }}"),
        &format!("address: {client}, {big}"),
    );
    let big_text = lab.run("render", &["data-1"]).stdout;
    assert!(big_text.len() > small_text.len() + 500);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path, small, big) = (
            stop.clone(),
            path.clone(),
            small_text.clone(),
            big_text.clone(),
        );
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text == small || text == big,
                    "a reader saw a partial file ({} bytes)",
                    text.len()
                );
                reads += 1;
            }
            reads
        })
    };
    let small_inventory = std::fs::read_to_string(&lab.inventory)
        .unwrap()
        .replace(&format!(", {big}"), " }");
    let big_inventory = std::fs::read_to_string(&lab.inventory).unwrap();
    for round in 0..6 {
        let text = if round % 2 == 0 {
            &big_inventory
        } else {
            &small_inventory
        };
        std::fs::write(&lab.inventory, text).unwrap();
        let run = lab.run("apply", &["--yes", "--limit", "data-1"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader saw only whole files");
    assert!(reads > 10, "the reader ran ({reads} reads)");
}

#[test]
fn limit_json_and_forks() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
        ])
        .start();
    let run = lab.run(
        "plan",
        &[
            "--limit",
            "data-*,!data-2",
            "--format",
            "json",
            "--forks",
            "1",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["command"], "plan");
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{run:?}");
    let host = &hosts[0];
    assert_eq!(host["name"], "data-1");
    assert_eq!(host["address"], lab.clients[0].as_str());
    assert_eq!(host["status"], "change");
    assert_eq!(host["plan"]["daemon"], "timesyncd");
    assert_eq!(
        host["plan"]["files"][0]["path"],
        "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf"
    );
    assert_eq!(host["plan"]["files"][0]["action"], "create");
    assert!(
        host["plan"]["files"][0]["diff"]
            .as_str()
            .unwrap()
            .contains(&format!("+NTP={}", lab.server))
    );
    assert_eq!(host["plan"]["unit"]["restart"], true);
    assert_eq!(doc["summary"]["change"], 1);
    // plan holds one socket per host to its end. Started with a soft open-file limit of 11
    // (without raising it, the standard streams and the runtime take 10 here: one host in
    // three would get "Too many open files"), it raises its limit to the hard one (-v says so)
    // and reads every host.
    let run = lab
        .clockprov("plan")
        .args(["-v", "--format", "json"])
        .open_files(11)
        .run();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("open-file limit raised from 11 to "),
        "{run:?}"
    );
    assert_eq!(run.json()["summary"]["change"], 3, "{run:?}");
    let none = lab.run("plan", &["--limit", "nope*"]);
    assert_eq!(none.code, 1);
    assert!(
        none.stderr.contains("--limit nope* matches no host"),
        "{none:?}"
    );
}

/// The README's merge of the shards' `--format json` documents (section "Past one controller"):
/// one document with every shard's hosts and the summaries added up.
const SHARD_MERGE_JQ: &str = "jq -s '.[0] + {hosts: [.[].hosts[]], summary: (reduce (.[].summary | to_entries[]) as $e ({}; .[$e.key] += $e.value))}'";

#[test]
fn shards_cover_the_fleet_once_and_merge_with_jq() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
        ])
        .start();
    // Sorted names: data-1, data-2, zcloud. Shard 1/2 takes positions 0 and 2, 2/2 position 1.
    let mut files = Vec::new();
    for (shard, expected) in [("1/2", vec!["zcloud", "data-1"]), ("2/2", vec!["data-2"])] {
        let run = lab.run("plan", &["--shard", shard, "--format", "json"]);
        assert_eq!(run.code, 0, "{run:?}");
        let names: Vec<String> = run.json()["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, expected, "--shard {shard}");
        let file = lab.hosts.dir().join(format!("shard-{}.json", &shard[..1]));
        std::fs::write(&file, &run.stdout).unwrap();
        files.push(file);
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(SHARD_MERGE_JQ),
        "README shows the merge step as tested here"
    );
    let merged = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{SHARD_MERGE_JQ} \"$@\""))
        .arg("sh")
        .args(&files)
        .output()
        .expect("jq runs (scripts/setup.sh installs it)");
    assert!(merged.status.success(), "{merged:?}");
    let doc: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert_eq!(doc["command"], "plan");
    let mut names: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["data-1", "data-2", "zcloud"],
        "every host exactly once"
    );
    assert_eq!(doc["summary"]["change"], 3, "{doc}");
    assert_eq!(doc["summary"]["failed"], 0, "{doc}");

    // --limit narrows a shard, it does not move hosts between shards.
    let run = lab.run(
        "plan",
        &["--shard", "1/2", "--limit", "data-*", "--format", "json"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["hosts"].as_array().unwrap().len(), 1, "{run:?}");
    assert_eq!(run.json()["hosts"][0]["name"], "data-1");
    let empty = lab.run("check", &["--shard", "2/2", "--limit", "zcloud"]);
    assert_eq!(empty.code, 1, "{empty:?}");
    assert!(
        empty
            .stderr
            .contains("--limit zcloud with --shard 2/2 leaves no host of"),
        "{empty:?}"
    );
    for (bad, says) in [("3/2", "between 1 and N = 2"), ("1/0", "at least 1")] {
        let run = lab.run("apply", &["--yes", "--shard", bad]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains(says), "--shard {bad}: {run:?}");
    }
    for addr in lab.all() {
        assert_eq!(
            lab.service_changes(&addr),
            Vec::<String>::new(),
            "{addr} untouched"
        );
    }
}

#[test]
fn a_hostile_inventory_touches_no_host() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    let known_before = std::fs::read_to_string(lab.hosts.known_hosts()).unwrap();
    for (from, to) in [
        (
            format!("address: {client}"),
            r#"address: "127.0.1.3\nallow all""#.to_owned(),
        ),
        (
            "pool: ntp.ubuntu.com".to_owned(),
            "pool: $(reboot)".to_owned(),
        ),
    ] {
        let original = std::fs::read_to_string(&lab.inventory).unwrap();
        lab.rewrite_inventory(&from, &to);
        for command in ["plan", "apply"] {
            let run = lab.run(
                command,
                &["--yes"].as_slice()[..usize::from(command == "apply")],
            );
            assert_eq!(run.code, 1, "{run:?}");
            assert!(
                run.stderr
                    .contains(&format!("{}:", lab.inventory.display())),
                "{run:?}"
            );
            assert!(run.stdout.is_empty(), "{run:?}");
        }
        std::fs::write(&lab.inventory, original).unwrap();
    }
    for addr in lab.all() {
        assert!(
            lab.hosts.systemctl_log(&addr).is_empty(),
            "{addr} was contacted"
        );
    }
    assert_eq!(
        std::fs::read_to_string(lab.hosts.known_hosts()).unwrap(),
        known_before
    );
}

#[test]
fn check_measures_offsets_and_reports_daemon_state() {
    // The test hosts share this machine's clock, so the truth is an offset of zero; they run no
    // systemd, so timedatectl cannot answer and every host is "not synchronized".
    let lab = LabBuilder::new().start();
    let run = lab.run("check", &["--format", "json", "--samples", "5"]);
    assert_eq!(run.code, 2, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["command"], "check");
    assert_eq!(doc["max_skew_seconds"], 0.05);
    for host in doc["hosts"].as_array().unwrap() {
        let offset = host["offset_seconds"].as_f64().unwrap();
        let uncertainty = host["uncertainty_seconds"].as_f64().unwrap();
        assert!(offset.abs() < 0.01, "{host}");
        assert!(uncertainty > 0.0 && uncertainty < 0.01, "{host}");
        assert_eq!(host["synchronized"], false, "{host}");
        assert_eq!(host["findings"][0]["kind"], "not-synchronized", "{host}");
    }
    let client = &doc["hosts"][1];
    assert_eq!(client["role"], "client");
    assert!(client["offset_to_server_seconds"].as_f64().unwrap().abs() < 0.01);
    let text = lab.run("check", &[]);
    assert_eq!(text.code, 2);
    assert!(
        text.stdout.starts_with("HOST    ROLE    OFFSET(s)"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains(
            "Check: 0 hosts ok, 0 warning, 2 with findings, 0 inconclusive, 0 unreachable, 0 failed (max skew 0.05 s, max server offset 0.1 s; controller clock"
        ),
        "{text:?}"
    );
}
