//! apply as one transaction per host, under faults: SIGKILLs at random moments, dropped
//! connections, command timeouts, two applies at once, a host's lock held, drift and a drift
//! check that cannot run, a 200 KB file, rollback and backup pruning. Every check reads the
//! hosts' own state: their /etc upper layer, the systemctl stand-in's unit files, and their
//! private `/run` (seen from here as `/proc/SSHD_PID/root/run`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::support::hosts::{HostSpec, TestHosts, seed};
use crate::{Lab, LabBuilder};

const CHRONY: &str = "chrony/chrony.conf";
/// clockprov's timesyncd drop-in: the file it writes on a client.
const TIMESYNCD: &str = "systemd/timesyncd.conf.d/zz-clockprov.conf";

/// The managed file of a host of the lab (the server runs chrony).
fn managed(lab: &Lab, addr: &str) -> (&'static str, &'static str) {
    if addr == lab.server {
        (CHRONY, "chrony.service")
    } else {
        (TIMESYNCD, "systemd-timesyncd.service")
    }
}

/// The host's root as its processes see it (its private /run included).
fn host_root(hosts: &TestHosts, addr: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root", hosts.pid(addr).unwrap()))
}

fn marker(hosts: &TestHosts, addr: &str, unit: &str) -> PathBuf {
    host_root(hosts, addr).join(format!("run/clockprov/restart-pending.{unit}"))
}

fn mount_ns(pid: &str) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

/// PIDs living in the host's mount namespace, its listening sshd left out.
fn host_processes(hosts: &TestHosts, addr: &str) -> Vec<u32> {
    let listener = hosts.pid(addr).unwrap();
    let ns = mount_ns(&listener.to_string()).expect("the host's sshd runs");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != listener && mount_ns(&pid.to_string()).as_ref() == Some(&ns))
        .collect()
}

/// Wait until nothing but the listener runs on the host (a killed apply's script may go on).
fn wait_quiet(hosts: &TestHosts, addr: &str) {
    let start = Instant::now();
    while !host_processes(hosts, addr).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr} still busy: {:?}",
            host_processes(hosts, addr)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL every process of the host but its listener: the host "crashes" mid-apply (its sshd
/// sessions too, so the connection drops), keeping its files and /run. Repeated until nothing is
/// left, because a process may fork between the listing and the kill (a slow `systemctl`'s sleep).
fn crash_sessions(hosts: &TestHosts, addr: &str) {
    let start = Instant::now();
    loop {
        let pids = host_processes(hosts, addr);
        if pids.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr} keeps running processes after SIGKILL: {pids:?}"
        );
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kill the sshd session processes serving the host's connections (children of the listener)
/// by PID: the connection drops; the scripts they started run on or die of SIGPIPE.
fn drop_connections(hosts: &TestHosts, addr: &str) -> usize {
    let listener = hosts.pid(addr).unwrap().to_string();
    let mut killed = 0;
    for pid in host_processes(hosts, addr) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1));
        if ppid == Some(listener.as_str()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            killed += 1;
        }
    }
    killed
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// When the stand-in last started or stopped `unit` (it rewrites `UNIT.active` each time).
fn last_start(hosts: &TestHosts, addr: &str, unit: &str) -> SystemTime {
    mtime(
        &hosts
            .host_dir(addr)
            .join(format!("state/units/{unit}.active")),
    )
}

/// Names in the directory of a managed file that are not the file or a backup.
fn leftovers(hosts: &TestHosts, addr: &str, rel: &str) -> Vec<String> {
    let path = hosts.etc_file(addr, rel);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    // A drop-in directory that was never made holds nothing.
    fs::read_dir(path.parent().unwrap())
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| *n != name && !(n.starts_with(&name) && is_bak(n)))
        .collect()
}

fn is_bak(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e == "bak")
}

fn backups(hosts: &TestHosts, addr: &str, rel: &str) -> Vec<String> {
    let path = hosts.etc_file(addr, rel);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut list: Vec<String> = fs::read_dir(path.parent().unwrap())
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}.clockprov-")) && is_bak(n))
        .collect();
    list.sort();
    list
}

/// A small xorshift: the trial's moments are random, and the seed is printed to replay them.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("CLOCKPROV_TRIAL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                u64::from(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos(),
                ) << 20
                    | u64::from(std::process::id())
                    | 1
            });
        eprintln!("kill trials: CLOCKPROV_TRIAL_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Two inventories for the same 8 hosts whose files all differ, and each host's file under
/// each (rendered offline by the binary).
struct Variants {
    texts: [String; 2],
    files: Vec<[String; 2]>,
}

fn variants(lab: &Lab) -> Variants {
    let a = fs::read_to_string(&lab.inventory).unwrap();
    let mut b = a.replace("local_stratum: 10", "local_stratum: 11");
    for client in &lab.clients {
        b = b.replace(
            &format!("address: {client} }}"),
            &format!("address: {client}, fallback_ntp: [10.0.0.1] }}"),
        );
    }
    let texts = [a, b];
    let names: Vec<String> = std::iter::once("zcloud".to_owned())
        .chain((1..=lab.clients.len()).map(|i| format!("data-{i}")))
        .collect();
    let files = names
        .iter()
        .map(|name| {
            [0, 1].map(|v| {
                fs::write(&lab.inventory, &texts[v]).unwrap();
                if name == "zcloud" {
                    return lab.render_onto(name, "debian:12", "debian-12");
                }
                let run = lab.run("render", &[name.as_str(), "--os", "debian:12"]);
                assert_eq!(run.code, 0, "{run:?}");
                run.stdout
            })
        })
        .collect();
    fs::write(&lab.inventory, &texts[0]).unwrap();
    Variants { texts, files }
}

/// What must hold on every host whatever moment an apply was stopped at: each managed file
/// whole (the seed, or one of the two renderings), no temporary file, and a file written after
/// the unit's last start has its restart-pending marker. Returns how many markers it saw.
fn check_whole(lab: &Lab, variants: &Variants, when: &str) -> usize {
    let mut pending = 0;
    for (i, addr) in lab.all().iter().enumerate() {
        let (rel, unit) = managed(lab, addr);
        // Before: the seed's chrony.conf; no drop-in.
        let text = lab.hosts.read_etc(addr, rel);
        let seed_text = (rel == CHRONY).then(|| seed("debian-12", "chrony.conf"));
        assert!(
            text == seed_text || text.as_ref().is_some_and(|t| variants.files[i].contains(t)),
            "{when}: {addr}:{rel} is neither old nor new ({} bytes)",
            text.as_ref().map_or(0, String::len)
        );
        let left = leftovers(&lab.hosts, addr, rel);
        assert!(left.is_empty(), "{when}: {addr}: left behind: {left:?}");
        let has_marker = marker(&lab.hosts, addr, unit).exists();
        pending += usize::from(has_marker);
        if text != seed_text {
            let written = mtime(&lab.hosts.etc_file(addr, rel));
            assert!(
                has_marker || last_start(&lab.hosts, addr, unit) >= written,
                "{when}: {addr}: {rel} was written after {unit} last started, and no restart is pending"
            );
        }
    }
    pending
}

fn eight_hosts() -> Lab {
    LabBuilder::new()
        .clients(
            (0..7)
                .map(|_| HostSpec::new("debian-12", "systemd-timesyncd"))
                .collect(),
        )
        .start()
}

/// The kill trials. Figures (2-core machine shared with other builds): see README "Safety".
#[test]
#[allow(clippy::too_many_lines)] // one story: measure, kill, drop, time out, converge
fn kill_trials_leave_whole_files_and_the_next_apply_converges() {
    const KILLS: usize = 200;
    const DROPS: usize = 16;
    const TIMEOUTS: usize = 6;
    let started = Instant::now();
    let lab = eight_hosts();
    let variants = variants(&lab);
    let mut rng = Rng::new();
    // How long a whole apply takes here: the kills land anywhere in 0..1.2 of it.
    let t = Instant::now();
    let first = lab.run("apply", &["--yes"]);
    assert_eq!(first.code, 0, "{first:?}");
    let full = t.elapsed();
    check_whole(&lab, &variants, "after the first apply");
    let mut variant = 0;
    let switch = |lab: &Lab, variant: &mut usize| {
        *variant = 1 - *variant;
        fs::write(&lab.inventory, &variants.texts[*variant]).unwrap();
    };
    let (mut markers_seen, mut new_files) = (0, 0);
    let span = u64::try_from(full.as_millis() * 6 / 5).unwrap();
    for trial in 0..KILLS {
        if trial % 50 == 0 {
            eprintln!(
                "kill trials: {trial} kills after {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        switch(&lab, &mut variant);
        let apply = lab.clockprov("apply").arg("--yes").spawn();
        std::thread::sleep(Duration::from_millis(rng.below(span)));
        apply.kill();
        for addr in lab.all() {
            wait_quiet(&lab.hosts, &addr);
        }
        markers_seen += check_whole(&lab, &variants, &format!("kill {trial}"));
        new_files += lab
            .all()
            .iter()
            .enumerate()
            .filter(|(i, addr)| {
                lab.hosts.read_etc(addr, managed(&lab, addr).0).as_ref()
                    == Some(&variants.files[*i][variant])
            })
            .count();
    }
    let kills_done = started.elapsed();
    // Dropped connections: one host's sshd sessions killed mid-apply; the run goes on.
    let mut dropped = 0;
    for trial in 0..DROPS {
        switch(&lab, &mut variant);
        let victim = lab.all()[usize::try_from(rng.below(8)).unwrap()].clone();
        let mut apply = lab.clockprov("apply").arg("--yes").spawn();
        std::thread::sleep(Duration::from_millis(rng.below(span)));
        if !apply.finished() {
            dropped += drop_connections(&lab.hosts, &victim);
        }
        let run = apply.wait();
        assert!(run.code == 0 || run.code == 1, "{run:?}");
        for addr in lab.all() {
            wait_quiet(&lab.hosts, &addr);
        }
        markers_seen += check_whole(&lab, &variants, &format!("drop {trial} ({victim})"));
    }
    // Command timeouts: two hosts' restarts outlast the command timeout (6 s against 4 s: every
    // other step, facts included, must fit in 4 s even on a loaded machine, or no host times out
    // where the test means it to).
    for trial in 0..TIMEOUTS {
        switch(&lab, &mut variant);
        // Slow hosts among those with a change: a host an earlier trial left at this variant
        // (its apply dropped or timed out) restarts nothing, and two such picks would leave no
        // host to time out.
        let plan = lab.run("plan", &["--format", "json"]).json();
        let changing: Vec<String> = plan["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["status"] == "change")
            .map(|h| h["address"].as_str().unwrap().to_owned())
            .collect();
        assert!(!changing.is_empty(), "{plan}");
        let slow: Vec<String> = (0..2)
            .map(|_| {
                changing
                    [usize::try_from(rng.below(u64::try_from(changing.len()).unwrap())).unwrap()]
                .clone()
            })
            .collect();
        for addr in &slow {
            let unit = managed(&lab, addr).1;
            fs::write(
                lab.hosts
                    .host_dir(addr)
                    .join(format!("state/slow-start/{unit}")),
                "6\n",
            )
            .unwrap();
        }
        let run = lab.run(
            "apply",
            &["--yes", "--command-timeout", "4s", "--lock-wait", "0.2s"],
        );
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stdout.contains("timed out") || run.stdout.contains("within"),
            "{run:?}"
        );
        for addr in lab.all() {
            wait_quiet(&lab.hosts, &addr);
            let unit = managed(&lab, &addr).1;
            let _ = fs::remove_file(
                lab.hosts
                    .host_dir(&addr)
                    .join(format!("state/slow-start/{unit}")),
            );
        }
        markers_seen += check_whole(&lab, &variants, &format!("timeout {trial}"));
    }
    let faults_done = started.elapsed();
    // The next apply converges: every file is the inventory's, every unit restarted after its
    // file's last write, no marker left.
    let converge = lab.run("apply", &["--yes"]);
    assert_eq!(converge.code, 0, "{converge:?}");
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    // And one more change: every host's old backups are pruned to the newest 5.
    switch(&lab, &mut variant);
    let again = lab.run("apply", &["--yes"]);
    assert_eq!(again.code, 0, "{again:?}");
    for (i, addr) in lab.all().iter().enumerate() {
        let (rel, unit) = managed(&lab, addr);
        assert_eq!(
            lab.hosts.read_etc(addr, rel).unwrap(),
            variants.files[i][variant]
        );
        assert!(!marker(&lab.hosts, addr, unit).exists(), "{addr}");
        assert!(
            last_start(&lab.hosts, addr, unit) >= mtime(&lab.hosts.etc_file(addr, rel)),
            "{addr}: {unit} not restarted after its file's last write"
        );
        assert!(
            backups(&lab.hosts, addr, rel).len() <= 5,
            "{addr}: not pruned"
        );
    }
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    eprintln!(
        "kill trials: one apply of 8 hosts {:.2}s; {KILLS} kills in {:.1}s ({} of {} files new \
         when killed, {markers_seen} restarts left pending); {DROPS} drops ({dropped} sessions \
         killed) and {TIMEOUTS} timeouts, all in {:.1}s",
        full.as_secs_f64(),
        kills_done.as_secs_f64(),
        new_files,
        KILLS * 8,
        faults_done.as_secs_f64()
    );
}

/// A host that crashes between the rename and the restart keeps its marker: plan says why it
/// restarts, apply restarts it; if that restart fails, the file from before is restored.
/// Start `apply --yes` with `unit`'s restart on `addr` made slow, and crash the host (every
/// process of it killed) once the restart runs: the apply's files are in place, its marker
/// stays. Waits until the host is quiet again.
fn crash_mid_restart(lab: &Lab, addr: &str, unit: &str) {
    let slow = lab.hosts.host_dir(addr).join("state/slow-start").join(unit);
    fs::write(&slow, "30\n").unwrap();
    let apply = lab.clockprov("apply").arg("--yes").spawn();
    let start = Instant::now();
    let restart = format!("restart {unit}");
    while !marker(&lab.hosts, addr, unit).exists()
        || lab.hosts.systemctl_log(addr).last() != Some(&restart)
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no marker came");
        std::thread::sleep(Duration::from_millis(10));
    }
    crash_sessions(&lab.hosts, addr);
    let run = apply.wait();
    assert_eq!(run.code, 1, "{run:?}");
    wait_quiet(&lab.hosts, addr);
    fs::remove_file(&slow).unwrap();
}

/// A restart owed for `unit` on `client` (its marker left): plan shows it, apply does it, once,
/// and removes the marker.
fn owed_restart_is_done(lab: &Lab, client: &str, unit: &str) {
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains(&format!(
            "   ~ restart {unit} (restart pending from an interrupted apply)\n"
        )),
        "{plan:?}"
    );
    let restarts = lab.restarts(client);
    let apply = lab.run("apply", &["--yes"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(lab.restarts(client), restarts + 1);
    assert!(!marker(&lab.hosts, client, unit).exists());
}

#[test]
fn a_restart_owed_by_a_crashed_apply_is_done_or_rolled_back_by_the_next() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    let unit = "systemd-timesyncd.service";
    crash_mid_restart(&lab, &client, unit);
    let new = lab
        .run("render", &["data-1", "--os", "ubuntu:20.04"])
        .stdout;
    assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD).unwrap(), new);
    assert!(marker(&lab.hosts, &client, unit).exists());
    owed_restart_is_done(&lab, &client, unit);
    assert_eq!(lab.run("plan", &["--detailed-exitcode"]).code, 0);

    // Again, now with a restart that fails: the file that ran before the crashed apply is back.
    lab.rewrite_inventory(
        &format!("address: {client} }}"),
        &format!("address: {client}, fallback_ntp: [10.0.0.1] }}"),
    );
    crash_mid_restart(&lab, &client, unit);
    assert!(marker(&lab.hosts, &client, unit).exists());
    lab.hosts.fail_start(&client, unit);
    let apply = lab.run("apply", &["--yes"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(
        apply.stdout.contains(
            "FAILED data-1: systemd-timesyncd.service did not come up after the restart (failed)"
        ),
        "{apply:?}"
    );
    assert!(
        apply
            .stdout
            .contains("now: systemd-timesyncd.service is failed with the previous files too"),
        "{apply:?}"
    );
    assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD).unwrap(), new);
    assert!(!marker(&lab.hosts, &client, unit).exists());
}

/// A run killed between creating a new marker and writing its entry (the shell creates it in
/// one write, no temporary file) leaves it empty: that owes a restart and nothing else. A later
/// apply with a change adds its entry to the existing marker, so a failed restart still puts
/// the previous file back.
#[test]
fn an_empty_marker_owes_only_a_restart_and_takes_a_later_entry() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    let unit = "systemd-timesyncd.service";
    assert_eq!(lab.run("apply", &["--yes"]).code, 0);
    let applied = lab.hosts.read_etc(&client, TIMESYNCD).unwrap();
    fs::write(marker(&lab.hosts, &client, unit), "").unwrap();
    owed_restart_is_done(&lab, &client, unit);
    assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD).unwrap(), applied);

    // Empty again, and now a change whose restart fails: the entry went into that marker.
    fs::write(marker(&lab.hosts, &client, unit), "").unwrap();
    lab.rewrite_inventory(
        &format!("address: {client} }}"),
        &format!("address: {client}, fallback_ntp: [10.0.0.1] }}"),
    );
    lab.hosts.fail_start(&client, unit);
    let apply = lab.run("apply", &["--yes"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(
        apply
            .stdout
            .contains("rolled back: restored /etc/systemd/timesyncd.conf.d/zz-clockprov.conf"),
        "{apply:?}"
    );
    assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD).unwrap(), applied);
    assert!(!marker(&lab.hosts, &client, unit).exists());
}

/// The same with Ubuntu's pools file switched off by the crashed apply (it is part of the
/// transaction, like a file): the next plan owes only the restart (the file is off already);
/// that restart failing puts the pools file back under its name, as it was before the crashed
/// apply; done, nothing is left to do.
#[test]
fn a_pools_file_switched_off_by_a_crashed_apply_is_kept_or_put_back_by_the_next() {
    use crate::vendor_sources::{OFF, POOLS, POOLS_TEXT, get, ubuntu_26_04};
    let lab = LabBuilder::new()
        .server(HostSpec::new("debian-12", "chrony"))
        .clients(vec![HostSpec::new("debian-12", "chrony")])
        .start();
    let client = lab.clients[0].clone();
    let unit = "chrony.service";
    ubuntu_26_04(&lab, &client);
    crash_mid_restart(&lab, &client, unit);
    assert_eq!(get(&lab, &client, POOLS), None);
    assert_eq!(get(&lab, &client, OFF).as_deref(), Some(POOLS_TEXT));
    assert!(marker(&lab.hosts, &client, unit).exists());
    let plan = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout
            .contains("   ~ restart chrony.service (restart pending from an interrupted apply)\n"),
        "{plan:?}"
    );
    assert!(!plan.stdout.contains("switch off"), "{plan:?}");

    lab.hosts.fail_start(&client, unit);
    let apply = lab.run("apply", &["--yes"]);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(
        apply
            .stdout
            .contains(&format!("restored {POOLS} from {OFF}")),
        "{apply:?}"
    );
    assert_eq!(get(&lab, &client, POOLS).as_deref(), Some(POOLS_TEXT));
    assert_eq!(get(&lab, &client, OFF), None);
    assert!(!marker(&lab.hosts, &client, unit).exists());
    lab.hosts.clear_fail_start(&client, unit);

    // Crashed again, and this time the owed restart works: the file stays off.
    crash_mid_restart(&lab, &client, unit);
    let restarts = lab.restarts(&client);
    let apply = lab.run("apply", &["--yes"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(lab.restarts(&client), restarts + 1);
    assert_eq!(get(&lab, &client, POOLS), None);
    assert_eq!(get(&lab, &client, OFF).as_deref(), Some(POOLS_TEXT));
    assert!(!marker(&lab.hosts, &client, unit).exists());
    assert_eq!(lab.run("plan", &["--detailed-exitcode"]).code, 0);
}

#[test]
fn two_applies_at_once_change_each_host_once_and_a_held_lock_fails_its_host() {
    let lab = LabBuilder::new()
        .clients(
            (0..2)
                .map(|_| HostSpec::new("debian-12", "systemd-timesyncd"))
                .collect(),
        )
        .start();
    let first = lab.clockprov("apply").arg("--yes").spawn();
    let second = lab.clockprov("apply").arg("--yes").spawn();
    let (first, second) = (first.wait(), second.wait());
    for (i, addr) in lab.all().iter().enumerate() {
        let (rel, _) = managed(&lab, addr);
        let name = if i == 0 {
            "zcloud".to_owned()
        } else {
            format!("data-{i}")
        };
        let rendered = if rel == CHRONY {
            lab.render_onto(&name, "debian:12", "debian-12")
        } else {
            lab.run("render", &[name.as_str(), "--os", "debian:12"])
                .stdout
        };
        assert_eq!(lab.hosts.read_etc(addr, rel).unwrap(), rendered, "{addr}");
        assert_eq!(
            lab.restarts(addr),
            1,
            "{addr}: {:?}",
            lab.hosts.systemctl_log(addr)
        );
        // A backup of the server's chrony.conf; a client's drop-in was created (none to keep).
        let kept = usize::from(rel == CHRONY);
        assert_eq!(backups(&lab.hosts, addr, rel).len(), kept, "{addr}");
        let wrote = |run: &crate::Run| run.stdout.contains(&format!("ok {name}: wrote"));
        assert!(
            wrote(&first) != wrote(&second),
            "{name}: {first:?} {second:?}"
        );
    }
    for run in [&first, &second] {
        for line in run.stdout.lines().filter(|l| l.starts_with("FAILED")) {
            assert!(
                line.contains("changed on the host since it was read"),
                "{line}"
            );
        }
    }

    // A lock held on one host (as a running apply holds it): that host fails naming the lock
    // after --lock-wait, nothing changed there; the other hosts are applied.
    lab.rewrite_inventory("local_stratum: 10", "local_stratum: 12");
    for client in &lab.clients {
        lab.rewrite_inventory(
            &format!("address: {client} }}"),
            &format!("address: {client}, fallback_ntp: [10.0.0.1] }}"),
        );
    }
    let held = lab.clients[0].clone();
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(host_root(&lab.hosts, &held).join("run/lock/clockprov.lock"))
        .unwrap();
    lock.lock().unwrap();
    let before = lab.hosts.read_etc(&held, TIMESYNCD);
    let t = Instant::now();
    let run = lab.run("apply", &["--yes", "--lock-wait", "1s"]);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "FAILED data-1: another apply holds the lock /run/lock/clockprov.lock on this host (waited 1s); nothing was changed"
        ),
        "{run:?}"
    );
    assert!(run.stdout.contains("ok data-2: wrote"), "{run:?}");
    assert_eq!(lab.hosts.read_etc(&held, TIMESYNCD), before);
    drop(lock);
    assert_eq!(lab.run("apply", &["--yes"]).code, 0);
}

#[test]
fn drift_checks_fail_closed_and_big_files_travel_on_stdin() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    // The drop-in is there, and the plan changes it (a file created has no digest to check).
    assert_eq!(lab.run("apply", &["--yes", "--limit", "data-1"]).code, 0);
    let applied = lab.hosts.read_etc(&client, TIMESYNCD).unwrap();
    let restarts = lab.restarts(&client);
    lab.rewrite_inventory(
        &format!("address: {client} }}"),
        &format!("address: {client}, fallback_ntp: [10.0.0.1] }}"),
    );
    // A host whose sha256sum is broken (fails, or prints nothing): nothing is written there.
    lab.hosts
        .root(&client, "cp -p /usr/bin/sha256sum /usr/bin/sha256sum.real");
    for fake in ["exit 3", "exit 0"] {
        lab.hosts.root(
            &client,
            &format!("printf '#!/bin/sh\\n{fake}\\n' > /usr/bin/sha256sum"),
        );
        let run = lab.run("apply", &["--yes", "--limit", "data-1"]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stdout.contains(
                "FAILED data-1: could not verify that /etc/systemd/timesyncd.conf.d/zz-clockprov.conf is as planned (the drift check failed); nothing was changed"
            ),
            "{run:?}"
        );
        assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD).unwrap(), applied);
        assert_eq!(lab.restarts(&client), restarts);
    }
    lab.hosts
        .root(&client, "mv /usr/bin/sha256sum.real /usr/bin/sha256sum");
    // A 200 KB file on the host gets 200 KB of managed lines (clockprov's own comments: the
    // script travels on stdin, not in a command line, so no argv limit applies).
    let lines = |text: &str, width: usize| {
        (0..4000).fold(String::new(), |mut s, i| {
            let _ = writeln!(s, "# {text} {i:>width$}");
            s
        })
    };
    let big_old = lines("old comment line", 40);
    fs::write(lab.hosts.etc_file(&lab.server, CHRONY), &big_old).unwrap();
    let padding = lines("clockprov: padding line", 50);
    assert!(big_old.len() > 200_000 && padding.len() > 200_000);
    let templates = crate::support::templates::chrony_with(&padding);
    let dir = templates.path().display().to_string();
    let run = lab.run("apply", &["--yes", "--templates", &dir]);
    assert_eq!(run.code, 0, "{run:?}");
    let text = lab.hosts.read_etc(&lab.server, CHRONY).unwrap();
    // The host's lines, then the managed ones, then the two the file lacked (src/layout.rs).
    assert!(
        text.starts_with(&big_old)
            && text.ends_with(&format!(
                "{padding}ntsdumpdir /var/lib/chrony\nmakestep 1 3\n"
            )),
        "{} bytes",
        text.len()
    );
}

#[test]
fn rollback_says_what_failed_and_what_runs_and_backups_are_pruned() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    lab.hosts.fail_start(&client, "systemd-timesyncd.service");
    let run = lab.run("apply", &["--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    let failed: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("FAILED data-1"))
        .take_while(|l| !l.starts_with("ok ") && !l.starts_with("Apply:"))
        .collect();
    let failed = failed.join("\n");
    let backup = "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf.clockprov-";
    let at = failed.find(backup).map(|i| i + backup.len());
    let masked = at.map_or(failed.clone(), |at| {
        let end = failed[at..].find(".bak").unwrap() + at;
        format!("{}TIME{}", &failed[..at], &failed[end..])
    });
    insta::assert_snapshot!(masked.trim_end(), @r#"
    FAILED data-1: systemd-timesyncd.service did not come up after the restart (failed): Job for systemd-timesyncd.service failed because the control process exited with error code.
         See "systemctl status systemd-timesyncd.service" and "journalctl -xeu systemd-timesyncd.service" for details.
       rolled back: removed /etc/systemd/timesyncd.conf.d/zz-clockprov.conf (it was new)
       now: systemd-timesyncd.service is failed with the previous files too (it needs a look by hand)
       status after the failed restart:
         * systemd-timesyncd.service
              Loaded: loaded (/lib/systemd/system/systemd-timesyncd.service; enabled)
              Active: failed
    "#);
    // The drop-in it created is gone again.
    assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD), None);
    lab.hosts
        .clear_fail_start(&client, "systemd-timesyncd.service");

    // --keep-backups 2: after four applies, the two newest backups are left.
    let plain = fs::read_to_string(&lab.inventory).unwrap();
    let other = plain.replace(
        &format!("address: {client} }}"),
        &format!("address: {client}, fallback_ntp: [10.0.0.1] }}"),
    );
    for round in 0..4 {
        fs::write(&lab.inventory, if round % 2 == 0 { &other } else { &plain }).unwrap();
        let run = lab.run(
            "apply",
            &["--yes", "--keep-backups", "2", "--limit", "data-1"],
        );
        assert_eq!(run.code, 0, "{run:?}");
        // Round 0 creates the drop-in (nothing to back up): the third backup comes in round 3.
        if round >= 3 {
            assert!(
                run.stdout.contains(
                    "   pruned: /etc/systemd/timesyncd.conf.d/zz-clockprov.conf.clockprov-"
                ),
                "{run:?}"
            );
        }
    }
    let left = backups(&lab.hosts, &client, TIMESYNCD);
    assert_eq!(left.len(), 2, "{left:?}");
    // The newest backup is the file as it was before the last apply.
    let newest = lab
        .hosts
        .etc_file(&client, TIMESYNCD)
        .with_file_name(&left[1]);
    fs::write(&lab.inventory, &other).unwrap();
    let other_text = lab
        .run("render", &["data-1", "--os", "ubuntu:20.04"])
        .stdout;
    assert_eq!(fs::read_to_string(newest).unwrap(), other_text);

    // A unit the apply enabled is disabled again when it does not come up.
    let before = lab.hosts.read_etc(&client, TIMESYNCD).unwrap();
    lab.hosts
        .root(&client, "systemctl disable systemd-timesyncd.service");
    lab.hosts.fail_start(&client, "systemd-timesyncd.service");
    let run = lab.run("apply", &["--yes", "--limit", "data-1"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("; disabled systemd-timesyncd.service again\n"),
        "{run:?}"
    );
    assert_eq!(lab.hosts.read_etc(&client, TIMESYNCD).unwrap(), before);
    assert_eq!(
        lab.hosts
            .unit_state(&client, "systemd-timesyncd.service")
            .unwrap()
            .0,
        "disabled"
    );
}

/// A client whose apply is killed after writing a new NTS CA, before chrony's stop / cookie
/// removal / start (its `stop` made slow, the host crashed during it): the marker says the
/// trust changed, so the next apply's owed restart is that sequence again, not a plain restart
/// that would keep the cookies of the old trust.
#[test]
fn a_restart_owed_for_a_new_nts_ca_still_drops_the_cookies() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("debian-12", "chrony")])
        .start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    let unit = "chrony.service";
    for pki in ["pki", "pki2"] {
        crate::nts::make_pki(&lab.hosts.dir().join(pki), &server);
    }
    lab.rewrite_inventory(
        "    local_stratum: 10\n",
        "    local_stratum: 10\n    nts: { certificate: pki/server.crt, key: pki/server.key }\n",
    );
    lab.rewrite_inventory(
        &format!("{{ address: {client} }}"),
        &format!("{{ address: {client}, daemon: chrony, nts: {{ trusted_certs: pki/ca.crt }} }}"),
    );
    let first = lab.run("apply", &["--yes"]);
    assert_eq!(first.code, 0, "{first:?}");

    // A new CA; the host crashes while chrony is being stopped.
    lab.rewrite_inventory("trusted_certs: pki/ca.crt", "trusted_certs: pki2/ca.crt");
    let slow = lab
        .hosts
        .host_dir(&client)
        .join("state/slow-stop")
        .join(unit);
    fs::write(&slow, "30\n").unwrap();
    let apply = lab.clockprov("apply").arg("--yes").spawn();
    let start = Instant::now();
    let stop = format!("stop {unit}");
    while lab.hosts.systemctl_log(&client).last() != Some(&stop) {
        assert!(start.elapsed() < Duration::from_secs(30), "no stop came");
        std::thread::sleep(Duration::from_millis(10));
    }
    crash_sessions(&lab.hosts, &client);
    assert_eq!(apply.wait().code, 1);
    wait_quiet(&lab.hosts, &client);
    fs::remove_file(&slow).unwrap();
    let new_ca = fs::read_to_string(lab.hosts.dir().join("pki2/ca.crt")).unwrap();
    assert_eq!(
        lab.hosts.read_etc(&client, "chrony/nts/clockprov-ca.crt"),
        Some(new_ca)
    );
    let recorded = fs::read_to_string(marker(&lab.hosts, &client, unit)).unwrap();
    assert!(recorded.lines().any(|l| l == "!nts-trust"), "{recorded}");

    let before = lab.service_changes(&client).len();
    let owed = lab.run("apply", &["--yes"]);
    assert_eq!(owed.code, 0, "{owed:?}");
    assert_eq!(
        lab.service_changes(&client)[before..],
        [format!("stop {unit}"), format!("start {unit}")]
    );
    assert!(!marker(&lab.hosts, &client, unit).exists());
    assert_eq!(lab.run("plan", &["--detailed-exitcode"]).code, 0);
}

/// Waits until `addr` runs nothing but its listener while `run` is still going: the command
/// closed that host's connection (its sshd session ended) before it was done with the others.
fn let_go_while_running(lab: &Lab, addr: &str, run: &mut crate::support::clockprov::Spawned) {
    let start = Instant::now();
    while !host_processes(&lab.hosts, addr).is_empty() {
        assert!(
            !run.finished(),
            "{addr} kept its connection until the command ended"
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr} still has a session: {:?}",
            host_processes(&lab.hosts, addr)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !run.finished(),
        "{addr} kept its connection until the command ended (or the slow host was not slow)"
    );
}

/// Wait until the host's `systemctl` log has a line past its first `seen` lines containing
/// `call` (the command has reached the host), while `run` runs.
fn wait_called(
    lab: &Lab,
    addr: &str,
    seen: usize,
    call: &str,
    run: &mut crate::support::clockprov::Spawned,
) {
    let start = Instant::now();
    while !lab.hosts.systemctl_log(addr)[seen..]
        .iter()
        .any(|line| line.contains(call))
    {
        assert!(
            !run.finished(),
            "the command ended before {addr} ran `{call}`"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{addr} never ran `{call}`: {:?}",
            lab.hosts.systemctl_log(addr)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `perl` that sleeps 8 s before it runs, first on the host's sshd PATH: the facts' reader of
/// packages and files is slow there. `rm /usr/local/bin/perl` undoes it.
fn slow_perl(hosts: &TestHosts, addr: &str) {
    hosts.root(
        addr,
        "mkdir -p /usr/local/bin && printf '#!/bin/sh\\nsleep 8\\nexec /usr/bin/perl \"$@\"\\n' \
         >/usr/local/bin/perl && chmod 755 /usr/local/bin/perl",
    );
}

/// `apply --yes` holds no host for the others' plans: with `--forks 1` the server is planned,
/// applied and let go before the client's facts are even read (without `--yes`, every host is
/// planned before any is changed, to ask once). A fleet to change holds about `--forks`
/// connections, not one per host. The output is the same: the plan, then what was applied.
#[test]
fn apply_yes_applies_each_host_as_soon_as_it_is_planned() {
    let lab = LabBuilder::new().start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    // A slow `perl` on the client: its facts take 8 s more.
    slow_perl(&lab.hosts, &client);
    let server_seen = lab.hosts.systemctl_log(&server).len();
    let seen = lab.hosts.systemctl_log(&client).len();
    let mut apply = lab
        .clockprov("apply")
        .args(["--yes", "--forks", "1"])
        .spawn();
    wait_called(&lab, &client, seen, "show", &mut apply);
    // The client's facts are being read: the server is changed and restarted already ...
    let server_calls = lab.hosts.systemctl_log(&server)[server_seen..].to_vec();
    assert!(
        server_calls
            .iter()
            .any(|l| l.starts_with("restart chrony.service")),
        "the server waited for the client's plan: {server_calls:?}"
    );
    // ... and let go.
    let_go_while_running(&lab, &server, &mut apply);
    let run = apply.wait();
    lab.hosts.root(&client, "rm /usr/local/bin/perl");
    assert_eq!(run.code, 0, "{run:?}");
    let plan_at = run.stdout.find("\nPlan: 2 hosts to change");
    let applied_at = run.stdout.find("\nApply: 2 hosts changed");
    assert!(
        plan_at.is_some() && applied_at.is_some() && plan_at < applied_at,
        "{run:?}"
    );
    assert_eq!(lab.run("plan", &["--detailed-exitcode"]).code, 0);
}

/// plan, apply and check close a host's connection as soon as they are done with it (a large
/// fleet holds about --forks connections, not one per host): while the server is slow (its
/// `perl` during plan, its restart during apply, its `systemctl` during check), the client's
/// session has already ended.
#[test]
fn a_host_is_let_go_as_soon_as_plan_apply_or_check_is_done_with_it() {
    let lab = LabBuilder::new().start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    // A slow `perl` on the server, for plan's facts.
    slow_perl(&lab.hosts, &server);
    let seen = lab.hosts.systemctl_log(&client).len();
    let mut plan = lab.clockprov("plan").spawn();
    wait_called(&lab, &client, seen, "show", &mut plan);
    let_go_while_running(&lab, &client, &mut plan);
    assert_eq!(plan.wait().code, 0);
    lab.hosts.root(&server, "rm /usr/local/bin/perl");

    let slow = lab
        .hosts
        .host_dir(&server)
        .join("state/slow-start/chrony.service");
    fs::write(&slow, "8\n").unwrap();
    let seen = lab.hosts.systemctl_log(&client).len();
    let mut apply = lab.clockprov("apply").arg("--yes").spawn();
    wait_called(
        &lab,
        &client,
        seen,
        "restart systemd-timesyncd.service",
        &mut apply,
    );
    let_go_while_running(&lab, &client, &mut apply);
    let run = apply.wait();
    assert_eq!(run.code, 0, "{run:?}");
    fs::remove_file(&slow).unwrap();
    // Both applied, once: releasing the client did not cut its transaction short.
    assert!(run.stdout.contains("2 hosts changed"), "{run:?}");
    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");

    // check: a slow `systemctl` on the server, for its readings.
    lab.hosts.root(
        &server,
        "printf '#!/bin/sh\\nsleep 8\\nexec /usr/bin/systemctl \"$@\"\\n' \
         >/usr/local/bin/systemctl && chmod 755 /usr/local/bin/systemctl",
    );
    let seen = lab.hosts.systemctl_log(&client).len();
    let mut check = lab.clockprov("check").arg("--format=json").spawn();
    wait_called(&lab, &client, seen, "is-active", &mut check);
    let_go_while_running(&lab, &client, &mut check);
    let run = check.wait();
    lab.hosts.root(&server, "rm /usr/local/bin/systemctl");
    // Both measured all the same (the client was read before it was let go).
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("check's JSON");
    let hosts = report["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 2, "{run:?}");
    for host in hosts {
        assert!(
            !matches!(host["status"].as_str(), Some("unreachable" | "failed")),
            "{host}"
        );
    }
}
