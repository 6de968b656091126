//! Ubuntu 25.10+'s pools file switched off on chrony hosts (issue 12 item 3): sshd test hosts
//! that present Ubuntu 26.04's os-release and its `sources.d/ubuntu-ntp-pools.sources` (the
//! real file, from the lab's 26.04 root), a chrony server and a client left to its OS's
//! default (chrony on 26.04). Debian 12's real chronyd checks every rendered file.

use crate::support::hosts::HostSpec;
use crate::{Lab, LabBuilder};

pub(crate) const POOLS: &str = "/etc/chrony/sources.d/ubuntu-ntp-pools.sources";
pub(crate) const OFF: &str = "/etc/chrony/sources.d/ubuntu-ntp-pools.sources.clockprov-off";
pub(crate) const POOLS_TEXT: &str =
    include_str!("../fixtures/ubuntu-26.04/ubuntu-ntp-pools.sources");
const OS_RELEASE: &str = include_str!("../fixtures/ubuntu-26.04/os-release");
const STEP: &str = "   ~ switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources (renamed to ubuntu-ntp-pools.sources.clockprov-off: chrony reads only *.sources; rename it back to undo)\n";

/// Write `content` to `path` on the host (through the real ssh client, base64 on the command
/// line: the content has quotes).
fn put(lab: &Lab, addr: &str, path: &str, content: &str) {
    let encoded = base64_encode(content.as_bytes());
    lab.hosts.root(
        addr,
        &format!(
            "mkdir -p \"$(dirname {path})\" && echo {encoded} | base64 -d > {path}.new && mv {path}.new {path}"
        ),
    );
}

/// The apply record in `dir`, the only one written there.
fn only_record(dir: &std::path::Path) -> serde_json::Value {
    let record = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
    serde_json::from_str(&std::fs::read_to_string(record.path()).unwrap()).unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The host's file at `path`, or None when there is none.
pub(crate) fn get(lab: &Lab, addr: &str, path: &str) -> Option<String> {
    let out = lab.hosts.ssh(addr, &format!("cat {path}"));
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// A host made to look like Ubuntu 26.04 with its pools file as chrony's package installs it.
pub(crate) fn ubuntu_26_04(lab: &Lab, addr: &str) {
    put(lab, addr, "/etc/os-release", OS_RELEASE);
    put(lab, addr, POOLS, POOLS_TEXT);
}

/// Step 2: a saved plan, and the client's pools file edited since: refused there, nothing done;
/// the server is applied from it. The client's file is then given back its package's text.
fn an_edited_pools_file_refuses_the_saved_plan(lab: &Lab, server: &str, client: &str) {
    let saved = lab.hosts.dir().join("reviewed.plan");
    let planned = lab.run("plan", &["--out", saved.to_str().unwrap()]);
    assert_eq!(planned.code, 0, "{planned:?}");
    let shown = crate::Clockprov::new().arg("show").arg(&saved).run();
    assert_eq!(shown.stdout.matches(STEP).count(), 2, "{shown:?}");
    let edited = format!("{POOLS_TEXT}pool 0.ubuntu.pool.ntp.org iburst\n");
    put(lab, client, POOLS, &edited);
    let restarts = lab.restarts(client);
    let refused = crate::Clockprov::new().arg("apply").arg(&saved).run();
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stdout.contains(&format!(
            "refused: the host changed since the plan was reviewed: file {POOLS}: its sha256 differs"
        )),
        "{refused:?}"
    );
    assert_eq!(get(lab, client, POOLS).as_deref(), Some(edited.as_str()));
    assert_eq!(get(lab, client, OFF), None);
    assert_eq!(lab.restarts(client), restarts);
    // The server's was applied from the saved plan.
    assert_eq!(get(lab, server, POOLS), None);
    assert_eq!(get(lab, server, OFF).as_deref(), Some(POOLS_TEXT));
    put(lab, client, POOLS, POOLS_TEXT);
}

#[test]
fn the_pools_file_is_switched_off_in_the_transaction_and_stays_off() {
    let lab = LabBuilder::new()
        .server(HostSpec::new("debian-12", "chrony"))
        .clients(vec![HostSpec::new("debian-12", "chrony")])
        .start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    ubuntu_26_04(&lab, &server);
    ubuntu_26_04(&lab, &client);

    // 1. Shown for both (the server's chrony.conf reads sources.d; the client's too, once its
    //    file keeps the vendor's `sourcedir`), and the pools are not among the servers chrony
    //    will use after the plan.
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_eq!(plan.stdout.matches(STEP).count(), 2, "{plan:?}");
    assert!(
        plan.stdout.contains("(127.0.1.")
            && plan.stdout.contains("chrony client; Ubuntu 26.04.1 LTS"),
        "{plan:?}"
    );
    assert!(
        !plan
            .stdout
            .contains("ntp.ubuntu.com iburst maxsources 1 nts"),
        "{plan:?}"
    );
    assert!(!plan.stdout.contains("1.ntp.ubuntu.com"), "{plan:?}");
    let json = lab.run("plan", &["--format", "json"]).json();
    for host in json["hosts"].as_array().unwrap() {
        assert_eq!(host["plan"]["switch_off"][0]["path"], POOLS, "{host:#}");
        assert_eq!(host["plan"]["switch_off"][0]["to"], OFF, "{host:#}");
        assert_eq!(host["plan"]["unit"]["restart"], true, "{host:#}");
    }

    an_edited_pools_file_refuses_the_saved_plan(&lab, &server, &client);

    // 3. chrony does not come back up: the pools file is back under its name, with the files.
    lab.hosts.fail_start(&client, "chrony");
    let failed = lab.run("apply", &["--yes"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed
            .stdout
            .contains(&format!("restored {POOLS} from {OFF}")),
        "{failed:?}"
    );
    assert_eq!(get(&lab, &client, POOLS).as_deref(), Some(POOLS_TEXT));
    assert_eq!(get(&lab, &client, OFF), None);
    lab.hosts.clear_fail_start(&client, "chrony");

    // 4. Applied: renamed, chrony restarted once; then nothing more to do.
    let restarts = lab.restarts(&client);
    let records = lab.hosts.dir().join("records");
    let applied = lab.run("apply", &["--yes", "--record", records.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied:?}");
    // The record names the step and the content switched off.
    let record = only_record(&records);
    let host = &record["hosts"][1];
    assert_eq!(host["name"], "data-1", "{record:#}");
    assert_eq!(host["switched_off"][0]["path"], POOLS, "{record:#}");
    assert_eq!(
        host["switched_off"][0]["sha256"].as_str().unwrap().len(),
        64,
        "{record:#}"
    );
    assert!(
        applied
            .stdout
            .contains(&format!("switched off {POOLS} (renamed to {OFF})")),
        "{applied:?}"
    );
    assert_eq!(get(&lab, &client, POOLS), None);
    assert_eq!(get(&lab, &client, OFF).as_deref(), Some(POOLS_TEXT));
    assert_eq!(lab.restarts(&client), restarts + 1);
    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");

    // 5. A package upgrade brings a new pools file: switched off again, the earlier one kept.
    let upgraded = POOLS_TEXT.replace("maxsources 1 nts prefer", "maxsources 2 nts prefer");
    put(&lab, &client, POOLS, &upgraded);
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(&format!(
            "~ switch off vendor source {POOLS} again (it came back"
        )),
        "{plan:?}"
    );
    let applied = lab.run("apply", &["--yes"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(get(&lab, &client, POOLS), None);
    assert_eq!(get(&lab, &client, OFF).as_deref(), Some(upgraded.as_str()));
    let backups = lab
        .hosts
        .ssh(&client, &format!("cat {OFF}.clockprov-*.bak"));
    assert_eq!(String::from_utf8_lossy(&backups.stdout), POOLS_TEXT);
    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
}

/// The plan's step for the pools file the chrony install creates (Ubuntu 25.10+'s postinst).
const STEP_AFTER_INSTALL: &str = "   ~ switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources if installing chrony creates it (Ubuntu's package does; renamed to ubuntu-ntp-pools.sources.clockprov-off right after the install: chrony reads only *.sources; rename it back to undo)\n";

/// The host's chrony package creates the pools file when installed, as Ubuntu 25.10+'s postinst
/// does through ucf (the apt-get stand-in's `postinst-pools` knob: only when ucf does not know
/// the file yet).
fn chrony_package_creates_the_pools_file(lab: &Lab, addr: &str) {
    let knob = lab.hosts.host_dir(addr).join("state/postinst-pools");
    std::fs::write(&knob, POOLS_TEXT).unwrap();
}

#[test]
fn a_timesyncd_host_swapped_to_chrony_converges_in_one_apply() {
    let lab = LabBuilder::new()
        .server(HostSpec::new("debian-12", "chrony"))
        .clients(vec![HostSpec::new("debian-12", "systemd-timesyncd")])
        .start();
    let client = lab.clients[0].clone();
    put(&lab, &client, "/etc/os-release", OS_RELEASE);
    chrony_package_creates_the_pools_file(&lab, &client);
    lab.rewrite_inventory(
        &format!("{{ address: {client} }}"),
        &format!("{{ address: {client}, daemon: chrony }}"),
    );
    assert_eq!(get(&lab, &client, POOLS), None);

    // 1. No file yet: the step after the install is shown, with the package swap.
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(
            "   + install package chrony (removes systemd-timesyncd: both provide time-daemon)\n"
        ) && plan.stdout.contains(STEP_AFTER_INSTALL),
        "{plan:?}"
    );
    let json = lab.run("plan", &["--format", "json"]).json();
    let step = &json["hosts"][1]["plan"]["switch_off"][0];
    assert_eq!(
        (&step["path"], &step["after_install"], &step["sha256"]),
        (
            &serde_json::json!(POOLS),
            &serde_json::json!(true),
            &serde_json::json!("absent")
        ),
        "{json:#}"
    );

    // 2. One apply, of the saved plan (which carries the step): chrony installed, the file its
    //    package created switched off before chrony restarts with the new configuration; the
    //    record says so. Then nothing more to do.
    let saved = lab.hosts.dir().join("swap.plan");
    let planned = lab.run("plan", &["--out", saved.to_str().unwrap()]);
    assert_eq!(planned.code, 0, "{planned:?}");
    let shown = crate::Clockprov::new().arg("show").arg(&saved).run();
    assert!(shown.stdout.contains(STEP_AFTER_INSTALL), "{shown:?}");
    a_step_after_no_install_is_refused(&lab, &saved, &client);
    let records = lab.hosts.dir().join("records");
    let restarts = lab.restarts(&client);
    let applied = crate::Clockprov::new()
        .arg("apply")
        .arg(&saved)
        .args(["--record", records.to_str().unwrap()])
        .run();
    assert_eq!(applied.code, 0, "{applied:?}");
    // Each host reported as applied (`apply PLAN` left them as planned, shown as FAILED).
    assert!(
        applied
            .stdout
            .contains("Apply: 2 hosts changed, 0 unchanged"),
        "{applied:?}"
    );
    assert!(
        applied.stdout.contains(&format!(
            "switched off {POOLS}, created by the chrony install (renamed to {OFF})"
        )),
        "{applied:?}"
    );
    assert_eq!(get(&lab, &client, POOLS), None);
    assert_eq!(get(&lab, &client, OFF).as_deref(), Some(POOLS_TEXT));
    assert_eq!(lab.restarts(&client), restarts + 1);
    let record = only_record(&records);
    assert_eq!(
        record["hosts"][1]["switched_off"][0]["after_install"], true,
        "{record:#}"
    );
    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");

    reinstalled_over_its_leftover_files(&lab, &client);
}

/// Step 3: back to timesyncd (chrony removed, its files kept: dpkg's `rc`), and the pools file
/// put back by hand: chrony installed again over it gets the ordinary step (the facts read the
/// file whatever the daemon), and one apply converges again.
fn reinstalled_over_its_leftover_files(lab: &Lab, client: &str) {
    lab.hosts.root(
        client,
        &format!("apt-get install -y systemd-timesyncd >/dev/null && mv {OFF} {POOLS}"),
    );
    assert!(
        lab.hosts
            .dpkg_status(client)
            .contains("Package: chrony\nStatus: deinstall ok config-files"),
        "{}",
        lab.hosts.dpkg_status(client)
    );
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(STEP) && !plan.stdout.contains(STEP_AFTER_INSTALL),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains(
            "   + install package chrony (removes systemd-timesyncd: both provide time-daemon)\n"
        ),
        "{plan:?}"
    );
    let applied = lab.run("apply", &["--yes"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(get(lab, client, POOLS), None);
    assert_eq!(get(lab, client, OFF).as_deref(), Some(POOLS_TEXT));
    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
}

/// A saved plan edited to keep the step after the install but not the install: refused when
/// read (a plan file must not be a way to rename files the facts never read), nothing done.
fn a_step_after_no_install_is_refused(lab: &Lab, saved: &std::path::Path, client: &str) {
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    let hosts = plan["hosts"].as_array_mut().unwrap();
    let host = hosts
        .iter_mut()
        .find(|h| h["plan"]["switch_off"].is_array())
        .unwrap();
    host["plan"]["package"] = serde_json::Value::Null;
    let edited = lab.hosts.dir().join("edited.plan");
    std::fs::write(&edited, plan.to_string()).unwrap();
    let refused = crate::Clockprov::new().arg("apply").arg(&edited).run();
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "{POOLS} is not a vendor source clockprov switches off for chrony"
        )),
        "{refused:?}"
    );
    assert!(lab.hosts.apt_log(client).is_empty());
}
