//! Proves the test harness: the test hosts (tests/hosts/testhosts.sh + tests/support) work,
//! with the real OpenSSH client (needs root: it mounts overlays in private mount namespaces), and
//! the [`Clockprov`] builder keeps its promises (the caller's environment does not reach a run;
//! a registered secret in a run's output fails it).

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::hosts::{HostSpec, TestHosts, seed};
use crate::{Clockprov, LabBuilder, Run};

const DPKG_FMT: &str =
    r"dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\n' chrony systemd-timesyncd";

/// (exit code, stdout, stderr) of `cmd` run on `addr` over ssh.
fn run(hosts: &TestHosts, addr: &str, cmd: &str) -> (i32, String, String) {
    let out = hosts.ssh(addr, cmd);
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(
        code,
        255,
        "ssh to {addr} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run` that must exit 0; returns stdout.
fn ok(hosts: &TestHosts, addr: &str, cmd: &str) -> String {
    let (code, out, err) = run(hosts, addr, cmd);
    assert_eq!(
        code, 0,
        "`{cmd}` on {addr} exited {code}\nstdout: {out}\nstderr: {err}"
    );
    out
}

fn alive(pid: u32) -> bool {
    // a zombie has exited; it just waits for init to reap it
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
#[allow(clippy::too_many_lines)] // one story: start, probe every stand-in, stop
fn three_hosts_over_real_ssh() {
    let specs = [
        HostSpec::new("ubuntu-20.04", "chrony"),
        HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
        HostSpec::new("debian-12", "chrony"),
    ];
    let hosts = TestHosts::start(&specs);
    let [u_chrony, u_timesyncd, d_chrony] = [&specs[0].addr, &specs[1].addr, &specs[2].addr];

    // seeded files, read through ssh (both conffiles on every host)
    for spec in &specs {
        let a = &spec.addr;
        assert_eq!(
            ok(&hosts, a, "cat /etc/chrony/chrony.conf"),
            seed(spec.os, "chrony.conf"),
            "{a}"
        );
        assert_eq!(
            ok(&hosts, a, "cat /etc/systemd/timesyncd.conf"),
            seed(spec.os, "timesyncd.conf"),
            "{a}"
        );
        let want = if spec.os == "debian-12" {
            "debian 12\n"
        } else {
            "ubuntu 20.04\n"
        };
        assert_eq!(
            ok(&hosts, a, ". /etc/os-release; echo $ID $VERSION_ID"),
            want,
            "{a}"
        );
        assert_eq!(
            hosts.read_etc(a, "chrony/chrony.conf").unwrap(),
            seed(spec.os, "chrony.conf")
        );
    }

    // a write over ssh lands in the host's /etc overlay, not in this machine's /etc
    let marker = format!("clockprov-smoke-{}", std::process::id());
    ok(
        &hosts,
        u_chrony,
        &format!(
            "echo {marker} > /etc/{marker}.txt && echo '# {marker}' >> /etc/chrony/chrony.conf"
        ),
    );
    assert_eq!(
        hosts
            .read_etc(u_chrony, &format!("{marker}.txt"))
            .as_deref(),
        Some(format!("{marker}\n").as_str())
    );
    assert!(hosts.etc_file(u_chrony, &format!("{marker}.txt")).is_file());
    assert!(
        !Path::new(&format!("/etc/{marker}.txt")).exists(),
        "write leaked into the real /etc"
    );
    assert!(
        hosts
            .read_etc(u_chrony, "chrony/chrony.conf")
            .unwrap()
            .ends_with(&format!("# {marker}\n"))
    );
    assert!(
        !fs::read_to_string("/etc/chrony/chrony.conf")
            .unwrap_or_default()
            .contains(&marker)
    );
    // the other hosts do not see it
    assert_eq!(
        run(&hosts, d_chrony, &format!("test -e /etc/{marker}.txt")).0,
        1
    );
    // a deletion on the host is a whiteout: read_etc says None
    ok(&hosts, u_timesyncd, "rm /etc/chrony/chrony.conf");
    assert_eq!(hosts.read_etc(u_timesyncd, "chrony/chrony.conf"), None);

    // dpkg-query reports exactly the seeded package (exit 1: the other one is unknown)
    for (a, want) in [
        (u_chrony, "chrony ii  3.5-6ubuntu6.2\n"),
        (u_timesyncd, "systemd-timesyncd ii  245.4-4ubuntu3.22\n"),
        (d_chrony, "chrony ii  4.3-2+deb12u1\n"),
    ] {
        let (code, out, err) = run(&hosts, a, DPKG_FMT);
        assert_eq!((code, out.as_str()), (1, want), "{a}: {err}");
        assert!(err.contains("no packages found matching"), "{a}: {err}");
    }

    // the systemctl stand-in records calls and keeps state
    assert_eq!(
        ok(&hosts, u_timesyncd, "systemctl is-active systemd-timesyncd"),
        "active\n"
    );
    assert_eq!(
        ok(
            &hosts,
            u_timesyncd,
            "systemctl is-enabled systemd-timesyncd.service"
        ),
        "enabled\n"
    );
    assert_eq!(run(&hosts, u_timesyncd, "systemctl is-active chrony").0, 3);
    ok(
        &hosts,
        u_timesyncd,
        "systemctl --quiet restart systemd-timesyncd",
    );
    hosts.fail_start(u_timesyncd, "systemd-timesyncd");
    let (code, _, err) = run(&hosts, u_timesyncd, "systemctl restart systemd-timesyncd");
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        run(&hosts, u_timesyncd, "systemctl is-active systemd-timesyncd"),
        (3, "failed\n".into(), String::new())
    );
    hosts.clear_fail_start(u_timesyncd, "systemd-timesyncd.service");
    ok(&hosts, u_timesyncd, "systemctl restart systemd-timesyncd");
    assert_eq!(
        ok(&hosts, u_timesyncd, "systemctl is-active systemd-timesyncd"),
        "active\n"
    );
    assert_eq!(
        hosts.systemctl_log(u_timesyncd),
        [
            "is-active systemd-timesyncd",
            "is-enabled systemd-timesyncd.service",
            "is-active chrony",
            "--quiet restart systemd-timesyncd",
            "restart systemd-timesyncd",
            "is-active systemd-timesyncd",
            "restart systemd-timesyncd",
            "is-active systemd-timesyncd",
        ]
    );
    // chronyd.service is an alias of chrony.service
    ok(
        &hosts,
        u_chrony,
        "systemctl stop chronyd && systemctl disable chrony.service",
    );
    assert_eq!(
        hosts.unit_state(u_chrony, "chrony"),
        Some(("disabled".into(), "inactive".into()))
    );
    assert_eq!(run(&hosts, u_chrony, "systemctl is-enabled chronyd").0, 1);

    // a real chronyd 4.3 parses the host's config
    let out = ok(
        &hosts,
        d_chrony,
        "chronyd -v && chronyd -p -f /etc/chrony/chrony.conf",
    );
    assert!(out.starts_with("chronyd (chrony) version 4.3"), "{out}");
    assert!(
        out.contains("\npool 2.debian.pool.ntp.org iburst\n"),
        "{out}"
    );
    let (code, _, err) = run(
        &hosts,
        d_chrony,
        "printf 'nosuchdirective 1\\n' > /etc/chrony/bad.conf; chronyd -p -f /etc/chrony/bad.conf",
    );
    assert_ne!(code, 0);
    assert!(err.contains("Invalid directive"), "{err}");
    assert_eq!(
        run(&hosts, u_timesyncd, "command -v chronyd").0,
        1,
        "chronyd on a host without chrony"
    );

    // root's home holds only .ssh: no pyenv from this machine's ~/.bashrc
    let (code, out, err) = run(&hosts, u_chrony, "echo $HOME; ls -A ~; cat ~/.bashrc");
    assert_ne!(code, 0);
    assert_eq!(out, "/root\n.ssh\n");
    assert!(
        !out.contains("pyenv") && !err.contains("pyenv"),
        "{out}{err}"
    );

    // a host key that is not in known_hosts is refused
    let other = TestHosts::start(&[HostSpec::new("debian-12", "none")]);
    assert_eq!(ok(&other, &other.addrs()[0], "echo hi"), "hi\n");
    let foreign = std::process::Command::new("ssh")
        .args(hosts.ssh_args())
        .arg(format!("root@{}", other.addrs()[0]))
        .arg("true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        foreign.status.code(),
        Some(255),
        "host key checking is not strict"
    );
    drop(other);

    // Drop stops every sshd, including session children and escaped daemons
    ok(
        &hosts,
        d_chrony,
        "setsid sleep 300 </dev/null >/dev/null 2>&1 &",
    );
    let pids: Vec<u32> = specs.iter().map(|s| hosts.pid(&s.addr).unwrap()).collect();
    assert!(pids.iter().all(|&p| alive(p)));
    let dir = hosts.dir().to_path_buf();
    drop(hosts);
    for p in pids {
        assert!(!alive(p), "sshd {p} still running");
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
    for spec in &specs {
        assert!(
            std::net::TcpStream::connect((spec.addr.as_str(), 22)).is_err(),
            "{} still listening",
            spec.addr
        );
    }
}

#[test]
fn apt_get_stand_in_no_seed_files_and_stop_host() {
    let bare = HostSpec::new("debian-12", "none").without_seed_files();
    let both = HostSpec::new("ubuntu-20.04", "systemd-timesyncd");
    let hosts = TestHosts::start(&[bare.clone(), both.clone()]);
    let (a, b) = (&bare.addr, &both.addr);

    // no seeded files: neither conffile, even though this machine has its own timesyncd.conf
    assert_eq!(
        run(
            &hosts,
            a,
            "ls /etc/chrony/chrony.conf /etc/systemd/timesyncd.conf 2>/dev/null"
        )
        .0,
        2
    );
    assert_eq!(run(&hosts, a, DPKG_FMT).1, "");
    assert_eq!(hosts.read_etc(a, "systemd/timesyncd.conf"), None);

    // apt-get install chrony: conffile, real chronyd, unit state, dpkg status
    ok(
        &hosts,
        a,
        "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold chrony",
    );
    assert_eq!(
        hosts.apt_log(a),
        [
            "update -q",
            "install -y -o Dpkg::Options::=--force-confold chrony"
        ]
    );
    assert_eq!(run(&hosts, a, DPKG_FMT).1, "chrony ii  4.3-2+deb12u1\n");
    assert_eq!(
        hosts.read_etc(a, "chrony/chrony.conf").unwrap(),
        seed("debian-12", "chrony.conf")
    );
    assert!(ok(&hosts, a, "chronyd -p -f /etc/chrony/chrony.conf").contains("leapsectz right/UTC"));
    assert_eq!(
        ok(
            &hosts,
            a,
            "systemctl is-enabled chrony; systemctl is-active chronyd"
        ),
        "enabled\nactive\n"
    );

    // installing chrony removes systemd-timesyncd (both provide time-daemon); its conffile stays
    ok(&hosts, b, "apt-get install -y chrony");
    assert_eq!(
        run(&hosts, b, DPKG_FMT).1,
        "chrony ii  3.5-6ubuntu6.2\nsystemd-timesyncd rc  245.4-4ubuntu3.22\n"
    );
    assert_eq!(hosts.unit_state(b, "systemd-timesyncd"), None);
    assert_eq!(
        hosts.unit_state(b, "chronyd"),
        Some(("enabled".into(), "active".into()))
    );
    assert!(hosts.read_etc(b, "systemd/timesyncd.conf").is_some());
    assert!(
        hosts
            .dpkg_status(b)
            .contains("Status: deinstall ok config-files")
    );

    // fail-apt knob
    hosts.fail_apt(b);
    let (code, _, err) = run(&hosts, b, "apt-get install -y systemd-timesyncd");
    assert_eq!(code, 100, "{err}");
    assert!(err.starts_with("E: "), "{err}");
    assert_eq!(
        run(&hosts, b, DPKG_FMT).1,
        "chrony ii  3.5-6ubuntu6.2\nsystemd-timesyncd rc  245.4-4ubuntu3.22\n"
    );

    // stop_host: the address refuses connections, the other host still works
    let pid = hosts.pid(a).unwrap();
    hosts.stop_host(a);
    assert!(!alive(pid));
    assert!(std::net::TcpStream::connect((a.as_str(), 22)).is_err());
    assert_eq!(ok(&hosts, b, "echo up"), "up\n");
    hosts.stop_host(a); // idempotent
}

/// A plan through the builder, as every test runs clockprov: it works, quietly, whatever this
/// process's environment is. [`a_hostile_caller_environment_does_not_reach_a_run`] runs it again
/// in a hostile one.
#[test]
fn a_plan_through_the_builder() {
    let lab = LabBuilder::new().clients(vec![]).start();
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Plan: 1 host to change, 0 unchanged, 0 unreachable, 0 failed."),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("DEBUG") && !run.stderr.contains("TRACE"),
        "{run:?}"
    );
}

#[test]
fn a_hostile_caller_environment_does_not_reach_a_run() {
    let lab = LabBuilder::new().clients(vec![]).start();
    // A HOME whose OpenSSH config sends every connection to a closed port.
    let hostile = lab.hosts.dir().join("hostile-home");
    fs::create_dir_all(hostile.join(".ssh")).unwrap();
    fs::write(hostile.join(".ssh/config"), "Host *\n    Port 1\n").unwrap();
    // Given to a run, that HOME does change what clockprov does, and so does CLOCKPROV_LOG ...
    let control = lab.clockprov("plan").home(&hostile).run();
    assert_eq!(control.code, 1, "{control:?}");
    assert!(
        control
            .stdout
            .contains(&format!("cannot connect to {}:1", lab.server)),
        "{control:?}"
    );
    let control = lab.clockprov("plan").env("CLOCKPROV_LOG", "trace").run();
    assert_eq!(control.code, 0, "{control:?}");
    assert!(control.stderr.contains("DEBUG"), "{control:?}");
    // ... but as the caller's environment it does not: this test binary, run again with that
    // HOME, full logging, an ssh-agent that is not there and secret variables, passes
    // `a_plan_through_the_builder`.
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "harness::a_plan_through_the_builder"])
        .env("HOME", &hostile)
        .env("CLOCKPROV_LOG", "trace")
        .env("SSH_AUTH_SOCK", hostile.join("no-agent.sock"))
        .env("CLOCKPROV_BECOME_PASSWORD", "hostile password")
        .env("CLOCKPROV_KEY_PASSPHRASE", "hostile passphrase")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let child = Run::from(child);
    assert_eq!(child.code, 0, "{child:?}");
    assert!(
        child.stdout.contains("test result: ok. 1 passed"),
        "{child:?}"
    );
}

#[test]
fn a_registered_secret_in_a_runs_output_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-token";
    // clockprov names the inventory it cannot read: here a path holding the secret.
    let inventory = dir.path().join(format!("{secret}.yaml"));
    let plan = || Clockprov::new().args(["plan", "-i"]).arg(&inventory);
    let failure = |result: std::thread::Result<Run>| -> String {
        let payload = result.expect_err("a printed secret did not fail the run");
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    };
    let message = failure(catch_unwind(AssertUnwindSafe(|| {
        plan().secret(secret).run()
    })));
    assert!(
        message.contains("a secret is printed") && message.contains("[secret].yaml"),
        "{message}"
    );
    assert!(
        !message.contains(secret),
        "the secret is in the failure: {message}"
    );
    // A value given to a secret variable is a secret too; on a terminal as well.
    let message = failure(catch_unwind(AssertUnwindSafe(|| {
        plan().env("CLOCKPROV_KEY_PASSPHRASE", secret).run()
    })));
    assert!(message.contains("a secret is printed"), "{message}");
    let message = failure(catch_unwind(AssertUnwindSafe(|| {
        plan().secret(secret).terminal().finish()
    })));
    assert!(message.contains("a secret is printed"), "{message}");
    // The same run with a secret it does not print passes.
    let quiet = plan().secret("never printed").run();
    assert_eq!(quiet.code, 1, "{quiet:?}");
    assert!(quiet.stderr.contains(secret), "{quiet:?}");
}
