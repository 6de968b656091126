//! A mixed fleet (issue 12): Debian 12's chrony server zcloud and clients on every distribution
//! clockprov supports, booted fresh from their own images (`lab.sh up --only`, each image
//! bootstrapped from that distribution's archive), each left to its OS's default daemon:
//! systemd-timesyncd, but chrony on Ubuntu 26.04, whose packaged NTS pools the lab cannot
//! reach (its packaged pools file switched off: renamed to `.clockprov-off`, a shown step);
//! and Ubuntu 22.04 ([`SWAPPED`]) asked for chrony in the inventory: the package swap,
//! by the VM's real apt from the offline repository in its image (`lab.sh`'s
//! `add_offline_repo`). `plan` shows each one's own file (on a chrony host that has one, only
//! the managed lines of its own chrony.conf; and the swap), `apply --wait-sync` converges them
//! all (the 26.04 and 22.04 clients to the LAN server alone), `check` is healthy, a second
//! `apply` changes nothing, dpkg finds every file of the daemons' packages as shipped but the
//! ones clockprov meant to write, and every line of the vendor's chrony.conf that is not a
//! managed line is still there. Then 26.04's chrony is purged and installed again by
//! clockprov (`daemon: chrony`): the pools file its postinst creates during that apply is
//! switched off in the same apply (one apply converges).

use std::collections::BTreeSet;

use crate::support::lab::{Lab, assert_synchronized_to_zcloud, host};

/// A client of the fleet: its VM, `ID:VERSION_ID` from os-release, systemd's major version,
/// its clock skew at boot (seconds), and whether its OS's default daemon is chrony.
struct Member {
    vm: &'static str,
    os: &'static str,
    systemd: u64,
    skew: i32,
    chrony: bool,
}

impl Member {
    /// The package of the daemon it runs.
    fn package(&self) -> &'static str {
        if self.chrony {
            "chrony"
        } else {
            "systemd-timesyncd"
        }
    }
}

const FLEET: [Member; 6] = [
    Member {
        vm: "z-b-data-1",
        os: "debian:12",
        systemd: 252,
        skew: 3,
        chrony: false,
    },
    Member {
        vm: "debian13",
        os: "debian:13",
        systemd: 257,
        skew: -2,
        chrony: false,
    },
    Member {
        vm: "ubuntu20",
        os: "ubuntu:20.04",
        systemd: 245,
        skew: 5,
        chrony: false,
    },
    Member {
        vm: "ubuntu22",
        os: "ubuntu:22.04",
        systemd: 249,
        skew: -3,
        chrony: false,
    },
    Member {
        vm: "ubuntu24",
        os: "ubuntu:24.04",
        systemd: 255,
        skew: 2,
        chrony: false,
    },
    Member {
        vm: "ubuntu26",
        os: "ubuntu:26.04",
        systemd: 259,
        skew: -6,
        chrony: true,
    },
];

/// The timesyncd client whose inventory entry asks for chrony (`daemon: chrony`): apt installs
/// chrony, which removes systemd-timesyncd (both provide time-daemon). Its image carries chrony
/// and tzdata in an offline apt repository, the only source its apt knows.
const SWAPPED: &str = "ubuntu22";

/// clockprov's timesyncd drop-in (the vendor's timesyncd.conf is left as shipped).
const TIMESYNCD_DROPIN: &str = "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf";
const CHRONY_CONF: &str = "/etc/chrony/chrony.conf";
/// Ubuntu 25.10+'s NTS pools (installed by chrony's postinst with ucf), and the name clockprov
/// switches it off to.
const POOLS: &str = "/etc/chrony/sources.d/ubuntu-ntp-pools.sources";
const POOLS_OFF: &str = "/etc/chrony/sources.d/ubuntu-ntp-pools.sources.clockprov-off";

/// The files of `packages` on `vm` that are not what the package shipped (`dpkg --verify`:
/// checksums against dpkg's database). Documentation is left out of the lab's images
/// (`path-exclude`: dpkg reports it missing, or as a dangling link), so /usr/share/doc and
/// /usr/share/man are not looked at.
fn modified_package_files(lab: &Lab, vm: &str, packages: &str) -> BTreeSet<String> {
    lab.ssh(vm, &format!("dpkg --verify {packages}; true"))
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        // The lab's images are bootstrapped without these (lab.sh's dpkg path-exclude).
        .filter(|path| {
            ![
                "/usr/share/doc/",
                "/usr/share/man/",
                "/usr/share/locale/",
                "/usr/share/info/",
            ]
            .iter()
            .any(|excluded| path.starts_with(excluded))
        })
        .map(str::to_owned)
        .collect()
}

/// The lines a unified diff removes and adds (headers left out).
fn changed_lines(diff: &str) -> (Vec<&str>, Vec<&str>) {
    let body = diff
        .lines()
        .filter(|l| !l.starts_with("--- ") && !l.starts_with("+++ ") && !l.starts_with("@@"));
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for line in body {
        if let Some(l) = line.strip_prefix('-') {
            removed.push(l);
        } else if let Some(l) = line.strip_prefix('+') {
            added.push(l);
        }
    }
    (removed, added)
}

/// Step 2 on a chrony client (Ubuntu 26.04's default): the plan changes only the managed lines
/// of its own chrony.conf. 26.04's file names no source at all (its pools are in `sources.d`),
/// so nothing of the vendor's is removed: clockprov's lines are added at its end, the vendor's
/// `sourcedir`, `makestep` and `leapseclist` stay. (Switching off the packaged pools file is a
/// step of its own, not this file's.)
fn plan_follows_only_zcloud(plan: &serde_json::Value, m: &Member) {
    let h = host(plan, m.vm);
    assert_eq!(h["status"], "change", "{h:#}");
    assert_eq!(h["plan"]["daemon"], "chrony", "{h:#}");
    assert_eq!(h["plan"]["version"]["major"], 4, "{h:#}");
    assert_eq!(h["plan"]["package"], serde_json::Value::Null, "{h:#}");
    let files = h["plan"]["files"].as_array().unwrap();
    let conf: Vec<&serde_json::Value> = files.iter().filter(|f| f["path"] == CHRONY_CONF).collect();
    assert_eq!(conf.len(), 1, "{h:#}");
    assert_eq!(conf[0]["action"], "update", "{h:#}");
    let diff = conf[0]["diff"].as_str().unwrap();
    eprintln!("{} ({}):\n{diff}", m.vm, m.os);
    let (removed, added) = changed_lines(diff);
    assert_eq!(removed, Vec::<&str>::new(), "{diff}");
    let added: Vec<&str> = added.into_iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        added,
        [
            format!(
                "# clockprov: the lines below are managed by clockprov (inventory: clients.{})",
                m.vm
            )
            .as_str(),
            "server 192.168.6.200 iburst",
        ],
        "{diff}"
    );
    // The packaged pools are switched off (renamed, a shown step), and chrony will use the LAN
    // server alone.
    let steps = h["plan"]["switch_off"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{h:#}");
    assert_eq!(steps[0]["path"], POOLS, "{h:#}");
    assert_eq!(steps[0]["to"], POOLS_OFF, "{h:#}");
    let servers: Vec<&str> = h["effective"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, vec!["192.168.6.200"], "{}: {h:#}", m.vm);
}

/// Every line of the vendor's chrony.conf (the package's own copy, /usr/share/chrony) that is
/// not a managed line is still in `vm`'s /etc/chrony/chrony.conf, byte for byte and in order,
/// and the file has no other line but the managed ones (and a blank line before them).
fn assert_vendor_lines_kept(lab: &Lab, vm: &str) {
    let vendor = lab.ssh(vm, "cat /usr/share/chrony/chrony.conf");
    let conf = lab.ssh(vm, &format!("cat {CHRONY_CONF}"));
    let unmanaged = |text: &str| -> Vec<String> {
        text.split('\n')
            .filter(|l| !l.is_empty() && !clockprov::layout::is_managed_chrony_line(l.as_bytes()))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(unmanaged(&vendor), unmanaged(&conf), "{vm}:\n{conf}");
    assert!(
        conf.contains("\nserver 192.168.6.200 iburst\n") || vm == "zcloud",
        "{vm}:\n{conf}"
    );
}

/// Step 2 on [`SWAPPED`] (timesyncd running, chrony asked for): the package swap, shown, and
/// chrony's file following the LAN server only, `makestep` in it; no timesyncd file.
fn plan_swaps_to_chrony(plan: &serde_json::Value, m: &Member) {
    let h = host(plan, m.vm);
    assert_eq!(h["status"], "change", "{h:#}");
    assert_eq!(h["plan"]["daemon"], "chrony", "{h:#}");
    assert_eq!(
        h["plan"]["package"],
        serde_json::json!({"package": "chrony", "removes": "systemd-timesyncd"}),
        "{h:#}"
    );
    let files = h["plan"]["files"].as_array().unwrap();
    assert!(files.iter().all(|f| f["path"] != TIMESYNCD_DROPIN), "{h:#}");
    let conf = files
        .iter()
        .find(|f| f["path"] == CHRONY_CONF)
        .unwrap_or_else(|| panic!("no {CHRONY_CONF} in {h:#}"));
    assert_eq!(conf["action"], "create", "{h:#}");
    let diff = conf["diff"].as_str().unwrap();
    eprintln!("{} ({}), the package swap:\n{diff}", m.vm, m.os);
    let (_, added) = changed_lines(diff);
    assert!(added.contains(&"server 192.168.6.200 iburst"), "{diff}");
    assert!(!added.iter().any(|l| l.starts_with("pool ")), "{diff}");
    assert!(added.iter().any(|l| l.starts_with("makestep ")), "{diff}");
    assert_eq!(h["plan"]["unit"]["unit"], "chrony.service", "{h:#}");
    assert_eq!(h["plan"]["unit"]["enable"], true, "{h:#}");
}

/// Step 2, the plan: on every timesyncd client clockprov's own drop-in, created, and nothing
/// else (and [`plan_follows_only_zcloud`] on a chrony client).
fn plan_changes_only_ntp(lab: &Lab, inventory: &str) {
    let plan = lab.clockprov(&["plan", "-i", inventory, "--format", "json"], &[]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    for m in &FLEET {
        if m.chrony {
            plan_follows_only_zcloud(&plan, m);
            continue;
        }
        if m.vm == SWAPPED {
            plan_swaps_to_chrony(&plan, m);
            continue;
        }
        let h = host(&plan, m.vm);
        assert_eq!(h["status"], "change", "{h:#}");
        assert_eq!(h["plan"]["daemon"], "timesyncd", "{h:#}");
        assert_eq!(h["plan"]["version"]["major"], m.systemd, "{h:#}");
        assert_eq!(h["plan"]["package"], serde_json::Value::Null, "{h:#}");
        // Only clockprov's own drop-in, created; the vendor's timesyncd.conf is not touched.
        let files = h["plan"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{h:#}");
        assert_eq!(files[0]["path"], TIMESYNCD_DROPIN, "{h:#}");
        assert_eq!(files[0]["action"], "create", "{h:#}");
        let diff = files[0]["diff"].as_str().unwrap();
        eprintln!("{} ({}):\n{diff}", m.vm, m.os);
        let (removed, added) = changed_lines(diff);
        assert_eq!(removed, Vec::<&str>::new(), "{}: {diff}", m.vm);
        let settings: Vec<&str> = added
            .iter()
            .copied()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            settings,
            vec!["[Time]", "NTP=", "NTP=192.168.6.200"],
            "{}: {diff}",
            m.vm
        );
        // What the daemon will use, the vendor's file and any drop-in read: the LAN server only.
        let servers: Vec<&str> = h["effective"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["server"].as_str().unwrap())
            .collect();
        assert_eq!(servers, vec!["192.168.6.200"], "{}: {h:#}", m.vm);
    }
    let server = host(&plan, "zcloud");
    assert_eq!(
        server["plan"]["files"][0]["path"], CHRONY_CONF,
        "{server:#}"
    );
}

/// After the apply, on [`SWAPPED`]: what real apt and dpkg did (chrony installed, timesyncd
/// removed with its configuration kept: dpkg's "rc"), chrony's unit enabled and running, its
/// package's files as shipped but the chrony.conf clockprov wrote, no timesyncd drop-in.
fn swapped_to_chrony(lab: &Lab) {
    let status = lab.ssh(
        SWAPPED,
        "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' chrony systemd-timesyncd",
    );
    assert_eq!(
        status.lines().map(str::trim_end).collect::<Vec<_>>(),
        vec!["chrony ii", "systemd-timesyncd rc"],
        "{status}"
    );
    let unit = lab.ssh(
        SWAPPED,
        "systemctl is-enabled chrony.service; systemctl is-active chrony.service; \
         systemctl is-active systemd-timesyncd.service; true",
    );
    assert_eq!(
        unit.lines().collect::<Vec<_>>(),
        vec!["enabled", "active", "inactive"],
        "{unit}"
    );
    let modified = modified_package_files(lab, SWAPPED, "chrony systemd");
    assert!(
        modified.is_empty() || modified == BTreeSet::from([CHRONY_CONF.to_owned()]),
        "{SWAPPED}: {modified:?}"
    );
    lab.ssh(SWAPPED, &format!("test ! -e {TIMESYNCD_DROPIN}"));
}

/// The lab's inventory, rewritten with [`SWAPPED`] asking for chrony (`daemon: chrony`): in
/// place, because the NTS step's inventories are made from it (without it they would swap the
/// VM back to timesyncd, whose package its offline repository does not hold).
fn swap_inventory(lab: &Lab) -> String {
    let path = lab.inventory();
    let plain = std::fs::read_to_string(&path).unwrap();
    let entry = format!("  {SWAPPED}: {{ address: 192.168.6.222 }}\n");
    assert!(plain.contains(&entry), "{plain}");
    let swapped = plain.replace(
        &entry,
        &format!("  {SWAPPED}: {{ address: 192.168.6.222, daemon: chrony }}\n"),
    );
    std::fs::write(&path, swapped).unwrap();
    path
}

/// zcloud and the [`FLEET`], each client's clock [`Member::skew`] off.
fn fleet_lab() -> Lab {
    let mut args = vec!["--only".to_owned()];
    let names: Vec<&str> = FLEET.iter().map(|m| m.vm).collect();
    args.push(format!("zcloud,{}", names.join(",")));
    args.push("--skews".to_owned());
    args.push(format!("{} 0 0", FLEET[0].skew));
    for m in &FLEET[1..] {
        args.push("--skew".to_owned());
        args.push(format!("{}={}", m.vm, m.skew));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Lab::up("clockprov-vmlab-mixed-", &args)
}

#[test]
fn a_mixed_fleet_converges_and_keeps_the_vendor_files() {
    let lab = fleet_lab();
    let inventory = swap_inventory(&lab);

    // 1. Each VM is the distribution it claims, its daemon's files as the package shipped them.
    for m in &FLEET {
        let os = lab.ssh(m.vm, ". /etc/os-release; echo $ID:$VERSION_ID");
        assert_eq!(os.trim(), m.os, "{}", m.vm);
        let modified = modified_package_files(&lab, m.vm, m.package());
        assert!(modified.is_empty(), "{}: {modified:?}", m.vm);
    }
    assert!(modified_package_files(&lab, "zcloud", "chrony").is_empty());

    plan_changes_only_ntp(&lab, &inventory);
    let shown = lab.clockprov(&["plan", "-i", &inventory], &[]);
    assert!(
        shown.stdout.contains(
            "   + install package chrony (removes systemd-timesyncd: both provide time-daemon)\n"
        ),
        "{shown:?}"
    );

    // 3. apply --wait-sync converges the whole fleet; check agrees.
    let apply = lab.clockprov(
        &["apply", "-i", &inventory, "--yes", "--wait-sync", "300s"],
        &[],
    );
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    assert!(apply.stdout.contains("Apply: 7 hosts changed"), "{apply:?}");
    // A client that has just synchronized can report "not synchronized" for a poll or two while
    // timesyncd settles: check again for up to a minute before calling it a failure.
    let (mut code, mut after) = lab.check_json(&inventory, &[]);
    for _ in 0..12 {
        if code == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
        (code, after) = lab.check_json(&inventory, &[]);
    }
    assert_eq!(code, 0, "{after:#}");
    for m in &FLEET {
        assert_synchronized_to_zcloud(&after, m.vm);
        if m.chrony || m.vm == SWAPPED {
            // chrony's own list: the LAN server, selected, and no other source (no pool).
            let sources = lab.ssh(m.vm, "chronyc -n sources");
            let listed: Vec<&str> = sources.lines().filter(|l| l.starts_with('^')).collect();
            assert_eq!(listed.len(), 1, "{}: {sources}", m.vm);
            assert!(
                listed[0].starts_with("^* 192.168.6.200 "),
                "{}: {sources}",
                m.vm
            );
            // The pools file switched off: under its new name, whole; not under its own (26.04's
            // package ships it; 22.04's chrony has none).
            if m.chrony {
                lab.ssh(m.vm, &format!("test -s {POOLS_OFF} && test ! -e {POOLS}"));
            }
        } else {
            lab.assert_timesyncd_follows_zcloud(m.vm);
        }
    }

    // 4. A second apply changes nothing.
    let again = lab.clockprov(&["apply", "-i", &inventory, "--yes"], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("Apply: 0 hosts changed, 7 unchanged"),
        "{again:?}"
    );

    // 5. Of the daemons' packages, only the files clockprov meant to write differ from what was
    //    shipped.
    for m in &FLEET {
        if m.vm == SWAPPED {
            swapped_to_chrony(&lab);
            continue;
        }
        if m.chrony {
            // The packaged pools and NTS settings are left as shipped; chrony.conf itself is
            // ucf's on Debian, a conffile where dpkg tracks it.
            let modified = modified_package_files(&lab, m.vm, "chrony systemd");
            assert!(
                modified.is_empty() || modified == BTreeSet::from([CHRONY_CONF.to_owned()]),
                "{}: {modified:?}",
                m.vm
            );
            // The pools file is ucf's, not dpkg's: renamed, dpkg finds nothing changed. Its
            // content is the package's (/usr/share/chrony), so renaming it back undoes it.
            lab.ssh(
                m.vm,
                &format!("cmp {POOLS_OFF} /usr/share/chrony/ubuntu-ntp-pools.sources"),
            );
            continue;
        }
        // timesyncd.conf is as the package shipped it: the servers are in clockprov's drop-in.
        let modified = modified_package_files(&lab, m.vm, "systemd-timesyncd systemd");
        assert_eq!(modified, BTreeSet::new(), "{}", m.vm);
        let dropin = lab.ssh(m.vm, &format!("cat {TIMESYNCD_DROPIN}"));
        assert!(
            dropin.contains("\nNTP=\nNTP=192.168.6.200\n"),
            "{}: {dropin}",
            m.vm
        );
    }
    // chrony.conf: the vendor's own lines all kept, on the 26.04 client and on the server.
    for vm in FLEET
        .iter()
        .filter(|m| m.chrony)
        .map(|m| m.vm)
        .chain(["zcloud"])
    {
        assert_vendor_lines_kept(&lab, vm);
    }
    // chrony.conf is not a dpkg conffile (Debian's chrony installs it through ucf), so dpkg
    // finds every file of the server's packages as shipped.
    assert_eq!(
        modified_package_files(&lab, "zcloud", "chrony systemd"),
        BTreeSet::new(),
        "zcloud"
    );

    crate::nts::nts_authenticates_and_a_wrong_ca_is_found(&lab);

    a_purged_chrony_comes_back_with_its_pools_off_in_one_apply(&lab);
}

/// The 26.04 client ([`FLEET`]'s chrony member) whose chrony is purged and installed again.
const REINSTALLED: &str = "ubuntu26";

/// Step 7, on [`REINSTALLED`]: `apt-get purge chrony` (ucf forgets the pools file, no time daemon
/// runs), then an inventory asking for chrony there. The plan installs chrony and shows the step
/// for the pools file the package will create; ONE `apply --wait-sync` installs it with the VM's
/// real apt from the offline repository in its image, whose real postinst creates the file, and
/// switches it off in the same apply: chrony follows the LAN server alone, a second apply
/// changes nothing.
fn a_purged_chrony_comes_back_with_its_pools_off_in_one_apply(lab: &Lab) {
    let purged = lab.ssh(
        REINSTALLED,
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q chrony 2>&1; \
         dpkg-query -W -f='${db:Status-Abbrev}' chrony 2>&1; echo; \
         ls /etc/chrony/sources.d; true",
    );
    eprintln!("{REINSTALLED}, chrony purged:\n{purged}");
    lab.ssh(
        REINSTALLED,
        &format!("test ! -e {POOLS} && test ! -e /usr/sbin/chronyd"),
    );
    let lab_inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    let entry = format!("  {REINSTALLED}: {{ address: 192.168.6.226 }}\n");
    assert!(lab_inventory.contains(&entry), "{lab_inventory}");
    let inventory = lab.file("inventory-reinstalled.yaml");
    std::fs::write(
        &inventory,
        lab_inventory.replace(
            &entry,
            &format!("  {REINSTALLED}: {{ address: 192.168.6.226, daemon: chrony }}\n"),
        ),
    )
    .unwrap();
    // clockprov on this host only, with that inventory.
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-i", inventory.as_str(), "--limit", REINSTALLED]);
        lab.clockprov(&all, &[])
    };

    let plan = run(&["plan", "--format", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    let h = host(&plan, REINSTALLED);
    assert_eq!(
        h["plan"]["package"],
        serde_json::json!({"package": "chrony", "removes": null}),
        "{h:#}"
    );
    let steps = h["plan"]["switch_off"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{h:#}");
    assert_eq!(steps[0]["path"], POOLS, "{h:#}");
    assert_eq!(steps[0]["after_install"], true, "{h:#}");
    let shown = run(&["plan"]);
    assert!(
        shown.stdout.contains(&format!(
            "   ~ switch off vendor source {POOLS} if installing chrony creates it"
        )),
        "{shown:?}"
    );

    let apply = run(&["apply", "--yes", "--wait-sync", "300s"]);
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    assert!(
        apply.stdout.contains(&format!(
            "switched off {POOLS}, created by the chrony install (renamed to {POOLS_OFF})"
        )),
        "{apply:?}"
    );
    // Created by the real postinst (the package's text), and switched off: only the new name.
    lab.ssh(
        REINSTALLED,
        &format!("test ! -e {POOLS} && cmp {POOLS_OFF} /usr/share/chrony/ubuntu-ntp-pools.sources"),
    );
    let status = lab.ssh(
        REINSTALLED,
        "dpkg-query -W -f='${db:Status-Abbrev}' chrony; echo; systemctl is-active chrony",
    );
    assert_eq!(
        status.lines().map(str::trim_end).collect::<Vec<_>>(),
        ["ii", "active"],
        "{status}"
    );
    let sources = lab.ssh(REINSTALLED, "chronyc -n sources");
    let listed: Vec<&str> = sources.lines().filter(|l| l.starts_with('^')).collect();
    assert_eq!(listed.len(), 1, "{sources}");
    assert!(listed[0].starts_with("^* 192.168.6.200 "), "{sources}");

    let again = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
    let again = run(&["apply", "--yes"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("Apply: 0 hosts changed"), "{again:?}");
}
