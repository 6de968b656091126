//! What `plan` runs on a host to read its facts and `check` to read its clock: how many
//! processes, and what `plan` refuses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabBuilder;
use crate::support::hosts::HostSpec;

const TIMESYNCD: &str = "systemd/timesyncd.conf";
const PATH: &str = "/etc/systemd/timesyncd.conf";
/// clockprov's drop-in: the file it writes (the main one above is only read).
const DROPIN: &str = "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf";

/// `strace -f` attached to a test host's sshd, stopped (by its PID) when dropped.
struct Trace {
    child: Child,
}

impl Trace {
    fn attach(pid: u32, out: &Path) -> Trace {
        let child = Command::new("strace")
            // -ff: one file per process (OUT.PID), so no call is split by another's.
            .args(["-ff", "-qq", "-s", "256", "-e", "trace=process", "-o"])
            .arg(out)
            .args(["-p", &pid.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .expect("strace is installed (scripts/setup.sh)");
        // Attached once the kernel names a tracer for the sshd.
        let deadline = Instant::now() + Duration::from_secs(20);
        while tracer_of(pid).is_none_or(|t| t == 0) {
            assert!(Instant::now() < deadline, "strace did not attach to {pid}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Trace { child }
    }

    fn stop(mut self) {
        // SIGTERM: strace detaches from the sshd and exits, leaving it running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tracer_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()
}

/// From `strace -ff -e trace=process` logs (`PREFIX.PID`, one per process): the processes the
/// scripts' shells (`shell`: the text of its `execve` in the log, e.g. `/bin/sh -s`, which the
/// login shell or sudo's root shell `exec`s) started,
/// and all their descendants, each with the program it ran (`None`: a fork that never ran a
/// program, i.e. a subshell).
fn processes_of_the_script(prefix: &Path, shell: &str) -> (Vec<Option<String>>, String) {
    let name = prefix.file_name().unwrap().to_str().unwrap().to_owned();
    let mut logs: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(prefix.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = file.strip_prefix(&format!("{name}.")) {
            logs.insert(
                pid.to_owned(),
                std::fs::read_to_string(entry.path()).unwrap(),
            );
        }
    }
    let mut all = String::new();
    for (pid, log) in &logs {
        let _ = write!(all, "== {pid}\n{log}");
    }
    let program = |log: &str| {
        log.lines()
            .filter(|l| l.starts_with("execve(") && l.trim_end().ends_with("= 0"))
            .filter_map(|l| l.split('"').nth(1))
            .map(|path| path.rsplit('/').next().unwrap_or(path).to_owned())
            .next_back()
    };
    let children = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| {
                ["clone(", "clone3(", "fork(", "vfork("]
                    .iter()
                    .any(|f| l.starts_with(f))
            })
            .filter_map(|l| l.rsplit("= ").next())
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_owned)
            .collect()
    };
    // Every such shell: `apply` runs two scripts, the facts and then the transaction.
    let shells: Vec<&String> = logs
        .iter()
        .filter(|(_, log)| log.contains(shell))
        .map(|(pid, _)| pid)
        .collect();
    assert!(!shells.is_empty(), "no shell ran {shell}:\n{all}");
    let mut found = Vec::new();
    let mut todo: Vec<String> = shells
        .iter()
        .flat_map(|pid| children(&logs[*pid]))
        .collect();
    while let Some(pid) = todo.pop() {
        let log = logs.get(&pid).map_or("", String::as_str);
        found.push(program(log));
        todo.extend(children(log));
    }
    found.sort();
    (found, all)
}

/// Plan host `name` (at `addr`) with strace on its sshd; what the facts script started there.
fn processes_of_planning(
    lab: &crate::Lab,
    name: &str,
    addr: &str,
) -> (Vec<Option<String>>, String) {
    // A fresh log name each time: a host planned twice is not counted twice.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = lab.hosts.dir().join(format!("{name}-{run}.strace"));
    let trace = Trace::attach(lab.hosts.pid(addr).unwrap(), &log);
    // strace slows the host's sshd down: the lab's 5 s connect timeout is no margin for that.
    let run = lab.run("plan", &["--limit", name, "--connect-timeout", "120s"]);
    trace.stop();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("+NTP="), "{run:?}");
    processes_of_the_script(&log, r#"execve("/bin/sh", ["/bin/sh", "-s"]"#)
}

#[test]
fn facts_take_two_processes_and_big_files_and_links_are_refused() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd").with_user("alice"),
        ])
        .start();
    let client = lab.clients[0].clone();
    let sudo_client = lab.clients[1].clone();
    lab.hosts
        .set_sudoers(&sudo_client, "alice ALL=(ALL:ALL) NOPASSWD: ALL");
    lab.rewrite_inventory(
        &format!("  data-2: {{ address: {sudo_client} }}"),
        &format!("  data-2: {{ address: {sudo_client}, ssh: {{ user: alice, become: sudo }} }}"),
    );

    // How many processes reading the facts starts on a host, counted by the kernel: logged in
    // as root, and through sudo (whose root shell reads the script itself: no `$(cat)`).
    // perl (facts.pl) reads dpkg's status, stats and reads the files: dpkg-query, stat and
    // head are not run.
    for (name, addr) in [("data-1", &client), ("data-2", &sudo_client)] {
        let (processes, log) = processes_of_planning(&lab, name, addr);
        assert_eq!(
            processes,
            ["perl", "systemctl"].map(|p| Some(p.to_owned())),
            "{name}: one process per command, no subshell:\n{log}"
        );
    }

    // An interrupted dpkg's update journal: dpkg's status file is then not the whole truth,
    // so dpkg-query (which reads the journal too) is asked. Here the journal says
    // systemd-timesyncd was removed, which only dpkg-query knows: the plan installs it.
    let journal = lab.hosts.host_dir(&client).join("dpkg-updates/0000");
    std::fs::write(
        &journal,
        "Package: systemd-timesyncd\nStatus: deinstall ok config-files\nPriority: optional\n\
         Section: admin\nMaintainer: Debian systemd Maintainers\nArchitecture: amd64\n\
         Version: 245.4-4ubuntu3\nDescription: removed\n",
    )
    .unwrap();
    let (processes, log) = processes_of_planning(&lab, "data-1", &client);
    assert_eq!(
        processes,
        ["dpkg-query", "perl", "systemctl"].map(|p| Some(p.to_owned())),
        "{log}"
    );
    let run = lab.run("plan", &["--limit", "data-1"]);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("install") && l.ends_with("systemd-timesyncd")),
        "{run:?}"
    );
    std::fs::remove_file(&journal).unwrap();
    let run = lab.run("plan", &["--limit", "data-1"]);
    assert!(!run.stdout.contains("install"), "{run:?}");

    // A managed file far above --max-file-size fails its host at once, naming file and size;
    // the other host is planned. (Sparse: 120 MiB that take no disk.)
    let original = lab.hosts.read_etc(&client, TIMESYNCD).unwrap();
    lab.hosts.root(&client, &format!("truncate -s 120M {PATH}"));
    let started = Instant::now();
    let run = lab.run("plan", &[]);
    assert!(started.elapsed() < Duration::from_secs(30), "{run:?}");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "/etc/systemd/timesyncd.conf is 125829120 bytes on the host, more than --max-file-size (1048576 bytes)"
        ),
        "{run:?}"
    );
    assert!(run.stdout.contains("2 hosts to change"), "{run:?}");
    // The limit is the operator's: a smaller one refuses the ordinary file too.
    lab.hosts
        .root(&client, &format!("truncate -s {} {PATH}", original.len()));
    let run = lab.run("plan", &["--limit", "data-1", "--max-file-size", "64"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("more than --max-file-size (64 bytes)"),
        "{run:?}"
    );

    // A managed file that is a symbolic link is refused for that host, not written through.
    lab.hosts.root(
        &client,
        &format!(
            "mkdir -p {} && ln -sf /etc/hostname {DROPIN}",
            &DROPIN[..DROPIN.rfind('/').unwrap()]
        ),
    );
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf is a symbolic link on the host"
        ),
        "{run:?}"
    );
    let run = lab.run("apply", &["--yes", "--limit", "data-1"]);
    assert_ne!(run.code, 0, "{run:?}");
    let link = lab.hosts.ssh(&client, &format!("readlink {DROPIN}"));
    assert_eq!(link.stdout, b"/etc/hostname\n", "the link is left alone");
    assert!(lab.service_changes(&client).is_empty(), "{run:?}");
}

#[test]
fn apply_on_a_fresh_host_takes_these_processes() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("ubuntu-20.04", "systemd-timesyncd")])
        .start();
    let client = lab.clients[0].clone();
    let log = lab.hosts.dir().join("apply.strace");
    let trace = Trace::attach(lab.hosts.pid(&client).unwrap(), &log);
    // strace slows the host's sshd down: the lab's 5 s connect timeout is no margin for that.
    let run = lab.run(
        "apply",
        &["--yes", "--limit", "data-1", "--connect-timeout", "120s"],
    );
    trace.stop();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        lab.service_changes(&client),
        ["restart systemd-timesyncd.service"],
        "{run:?}"
    );
    // The facts' two (`perl`, `systemctl`), then the transaction: the
    // lock, the marker's directory, the drop-in's directory (a fresh host has none; its file
    // is created, so there is no drift digest and no backup link), the staged file's fsync,
    // the file's rename (the marker is created by the shell itself), the directory's fsync,
    // the restart and its check, the marker's removal. No subshell, and no chown or chmod for
    // a root:root 644 file written as root.
    let shell = r#"execve("/bin/sh", ["/bin/sh", "-s"]"#;
    let (processes, all) = processes_of_the_script(&log, shell);
    // One login shell and one channel: the shell that read the facts runs the transaction
    // (it execs `sh -s` a second time, in the same process).
    let pids_with_shell = all.split("\n== ").filter(|log| log.contains(shell)).count();
    assert_eq!(pids_with_shell, 1, "{all}");
    assert_eq!(all.matches(shell).count(), 2, "{all}");
    let mut expected = [
        "perl",
        "systemctl",
        "flock",
        "mkdir",
        "mkdir",
        "sync",
        "sync",
        "mv",
        "rm",
        "systemctl",
        "systemctl",
    ]
    .map(|p| Some(p.to_owned()));
    expected.sort();
    assert_eq!(processes, expected, "{all}");
}

/// timedatectl answering as an active, synchronized timesyncd does, with builtins only (so that
/// the stand-in adds no process of its own to the count).
const TIMEDATECTL: &str = r"#!/bin/sh
# clockprov facts test: timedatectl stand-in, builtins only.
case $1 in
show-timesync) printf '%s\n' ServerName=ntp ServerAddress=127.0.0.1 'NTPMessage={ Leap=0, Stratum=2 }' ;;
show) echo NTPSynchronized=yes ;;
timesync-status) echo '       Offset: +1.5ms' ;;
*) exit 1 ;;
esac
";

#[test]
fn check_reads_a_host_in_one_channel_and_four_processes() {
    let lab = LabBuilder::new()
        .clients(vec![HostSpec::new("ubuntu-20.04", "systemd-timesyncd")])
        .start();
    let client = lab.clients[0].clone();
    lab.hosts.root(
        &client,
        &format!(
            "mkdir -p /usr/local/bin && cat >/usr/local/bin/timedatectl <<'EOF'\n{TIMEDATECTL}EOF\n\
             chmod 755 /usr/local/bin/timedatectl"
        ),
    );
    lab.hosts.add_system_bus_socket(&client);
    std::fs::write(
        lab.hosts
            .host_dir(&client)
            .join("state/units/systemd-timesyncd.service.active"),
        "active\n",
    )
    .unwrap();

    let log = lab.hosts.dir().join("check.strace");
    let trace = Trace::attach(lab.hosts.pid(&client).unwrap(), &log);
    // strace slows the host's sshd down: the lab's 5 s connect timeout is no margin for that.
    let run = lab.run(
        "check",
        &[
            "--format",
            "json",
            "--limit",
            "data-1",
            "--connect-timeout",
            "120s",
        ],
    );
    trace.stop();
    let doc = run.json();
    let host = &doc["hosts"][0];
    assert_eq!(host["name"], "data-1", "{run:?}");
    assert_eq!(host["daemon"]["synchronized"], true, "{run:?}");
    assert!(host["offset_seconds"].is_f64(), "{run:?}");
    // One channel, one command, which became the script's bash: os-release (which daemon a
    // client left to its OS's default runs, and chrony's unit name there) is read by the shell.
    let (processes, all) = processes_of_the_script(&log, r#"["bash", "-s"]"#);
    assert_eq!(
        all.matches(r#"execve("/bin/bash", ["bash", "-c", "#)
            .count(),
        1,
        "one channel, one command:\n{all}"
    );
    // The daemon's state: one process per question, no subshell; the clock: none at all.
    assert_eq!(
        processes,
        ["systemctl", "timedatectl", "timedatectl", "timedatectl"].map(|p| Some(p.to_owned())),
        "{all}"
    );
}

/// The servers a host's daemon will use, from plan's JSON: `(servers, warnings)`.
fn effective(lab: &crate::Lab, name: &str) -> (Vec<String>, Vec<String>) {
    let run = lab.run("plan", &["--limit", name, "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let effective = &doc["hosts"][0]["effective"];
    let strings = |v: &serde_json::Value, field: Option<&str>| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{}", run.stdout))
            .iter()
            .map(|s| field.map_or(s, |f| &s[f]).as_str().unwrap().to_owned())
            .collect()
    };
    (
        strings(&effective["servers"], Some("server")),
        strings(&effective["warnings"], None),
    )
}

#[test]
fn drop_ins_shape_the_effective_servers_and_what_the_inventory_did_not_name_is_a_warning() {
    let lab = LabBuilder::new().start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());

    // Nothing besides clockprov's files: the inventory's servers, nothing to warn about, and
    // the text says nothing more than the diff.
    assert_eq!(effective(&lab, "data-1"), (vec![server.clone()], vec![]));
    assert_eq!(
        effective(&lab, "zcloud"),
        (vec!["ntp.ubuntu.com".to_owned()], vec![])
    );
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("will use"), "{run:?}");

    // A cloud image's drop-in sorts before clockprov's `zz-`: its server is dropped by the reset.
    // One that sorts after it adds its server; the same name in /usr/lib is hidden by /etc's. A
    // vendor sources file adds a pool to the chrony server.
    lab.hosts.root(
        &client,
        "mkdir -p /etc/systemd/timesyncd.conf.d /usr/lib/systemd/timesyncd.conf.d \
         && printf '[Time]\\nNTP=169.254.169.123\\n' >/etc/systemd/timesyncd.conf.d/cloud-init.conf \
         && printf '[Time]\\nNTP=169.254.169.124\\n' >/etc/systemd/timesyncd.conf.d/zzz-late.conf \
         && printf '[Time]\\nNTP=hidden.example\\n' >/usr/lib/systemd/timesyncd.conf.d/zzz-late.conf \
         && echo NTP=not-read >/etc/systemd/timesyncd.conf.d/README",
    );
    lab.hosts.root(
        &server,
        "mkdir -p /etc/chrony/sources.d \
         && echo 'pool 2.debian.pool.ntp.org iburst' >/etc/chrony/sources.d/vendor.sources",
    );
    let cloud = "/etc/systemd/timesyncd.conf.d/cloud-init.conf";
    let late = "/etc/systemd/timesyncd.conf.d/zzz-late.conf";
    assert_eq!(
        effective(&lab, "data-1"),
        (
            vec![server.clone(), "169.254.169.124".to_owned()],
            vec![format!(
                "server 169.254.169.124 (from {late}) is not in the inventory"
            )]
        )
    );
    assert_eq!(
        effective(&lab, "zcloud"),
        (
            vec!["ntp.ubuntu.com".to_owned(), "2.debian.pool.ntp.org".to_owned()],
            vec![
                "server 2.debian.pool.ntp.org (from /etc/chrony/sources.d/vendor.sources) is not in the inventory"
                    .to_owned()
            ]
        )
    );
    // Applied, the hosts are unchanged, and the text still says what they will really use.
    let run = lab.run("apply", &["--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("2 unchanged"), "{run:?}");
    for line in [
        format!("   = timesyncd will use servers: {server} 169.254.169.124 (also read: {cloud}, {late})\n"),
        format!("   ! warning: server 169.254.169.124 (from {late}) is not in the inventory\n"),
        "   = chrony will use servers: ntp.ubuntu.com 2.debian.pool.ntp.org (also read: /etc/chrony/sources.d/vendor.sources)\n".to_owned(),
    ] {
        assert!(run.stdout.contains(&line), "{line:?} in {run:?}");
    }

    // A drop-in that empties NTP= (in /run, sorted after clockprov's) discards its servers.
    lab.hosts.root(
        &client,
        "rm /etc/systemd/timesyncd.conf.d/zzz-late.conf /usr/lib/systemd/timesyncd.conf.d/zzz-late.conf \
         && mkdir -p /run/systemd/timesyncd.conf.d \
         && printf '[Time]\\nNTP=\\n' >/run/systemd/timesyncd.conf.d/zz-reset.conf",
    );
    let (servers, warnings) = effective(&lab, "data-1");
    assert!(servers.is_empty(), "{servers:?}");
    assert_eq!(
        warnings,
        [
            format!(
                "the inventory's servers {server} are not used: a drop-in empties the list (last read: /run/systemd/timesyncd.conf.d/zz-reset.conf)"
            ),
            "no NTP= server is left: timesyncd uses its compiled-in FallbackNTP list".to_owned()
        ]
    );
}
