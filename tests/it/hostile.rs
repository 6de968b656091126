//! Hostile hosts (issue 9): whatever a host prints, and however it stops answering, only that
//! host fails, with a message that says what happened and an `error_kind` a program can match;
//! every other host is planned and applied. One fleet of real sshd test hosts serves every case,
//! each host hostile in its own way through stand-ins in its private `/usr` and `/etc`.

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::LabBuilder;
use crate::support::hosts::{HostSpec, TestHosts};

/// clockprov's timesyncd drop-in.
const TIMESYNCD: &str = "systemd/timesyncd.conf.d/zz-clockprov.conf";

/// Write `content` to `path` on the host as root, with `mode`.
fn put(hosts: &TestHosts, addr: &str, path: &str, content: &[u8], mode: &str) {
    let mut child = hosts
        .ssh_command(addr, &format!("cat > {path} && chmod {mode} {path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(content).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "writing {path} on {addr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `perl` stand-in running `body`: the facts script calls it once, to read dpkg's status
/// and the managed files (facts.pl), so what it prints is what the host says of those.
fn facts_perl(hosts: &TestHosts, addr: &str, body: &str) {
    put(
        hosts,
        addr,
        "/usr/bin/perl",
        format!("#!/bin/sh\n{body}\n").as_bytes(),
        "755",
    );
}

/// Processes on this machine whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(marker)
        {
            found.push(pid);
        }
    }
    found
}

/// The sshd sessions a frozen host stopped (their PIDs, one a line, in its `/root`) are
/// resumed when this is dropped, so that tearing the hosts down does not wait on them.
struct Thaw<'a> {
    hosts: &'a TestHosts,
    addr: String,
}

impl Thaw<'_> {
    /// The sessions stopped so far (each is thawed once, then forgotten).
    fn stopped(&self) -> Vec<u32> {
        let file = self.hosts.host_dir(&self.addr).join("root/stopped.pids");
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    fn now(&self) {
        for pid in self.stopped() {
            // SIGCONT to a PID this test's host recorded a moment ago.
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::write(
            self.hosts.host_dir(&self.addr).join("root/stopped.pids"),
            "",
        );
    }
}

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.now();
    }
}

fn host<'d>(doc: &'d serde_json::Value, name: &str) -> &'d serde_json::Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {doc}"))
}

/// `name` failed with `kind`, its message containing every one of `words`.
fn assert_failed(doc: &serde_json::Value, name: &str, kind: &str, words: &[&str]) {
    let row = host(doc, name);
    assert_eq!(row["status"], "failed", "{name}: {row}");
    assert_eq!(row["error_kind"], kind, "{name}: {row}");
    let message = row["error"].as_str().unwrap();
    for word in words {
        assert!(
            message.contains(word),
            "{name}: {word:?} not in {message:?}"
        );
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one fleet, every hostile case: cheaper than one per case
fn each_hostile_host_fails_alone_and_the_others_are_planned_and_applied() {
    let lab = LabBuilder::new()
        .clients(
            (0..9)
                .map(|i| {
                    let spec = HostSpec::new("debian-12", "systemd-timesyncd");
                    if i == 8 {
                        spec.with_user("hostile")
                    } else {
                        spec
                    }
                })
                .collect(),
        )
        .start();
    let hosts = &lab.hosts;
    let addr = |i: usize| lab.clients[i - 1].as_str();
    // data-1 is a well-behaved client.
    // data-2: a package's status that is not dpkg's (non-ASCII).
    facts_perl(
        hosts,
        addr(2),
        r"printf '@@pkg systemd-timesyncd \303\257i 252.38-1~deb12u1\n'",
    );
    // data-3: os-release whose name clears the screen and retitles the terminal.
    put(
        hosts,
        addr(3),
        "/etc/os-release",
        b"ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"\x1b[2J\x1b[HDebian GNU/Linux 12 (bookworm)\x1b]0;owned\x07\"\n",
        "644",
    );
    // data-4: the facts script dies half-way: no end marker.
    facts_perl(hosts, addr(4), "kill -9 $PPID");
    // data-5: os-release that is not UTF-8, naming a system we do not support, in colour.
    put(
        hosts,
        addr(5),
        "/etc/os-release",
        b"ID=deb\xffian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"\x1b[31mSUSE \xfe\"\n",
        "644",
    );
    // data-6: a flood of output, for as long as anyone reads it.
    let flood = format!("clockprov-flood-{}", addr(6));
    facts_perl(hosts, addr(6), &format!("exec yes {flood}"));
    // data-7: stops answering after authentication: its sshd session is frozen (SIGSTOP)
    // while the facts command runs.
    facts_perl(
        hosts,
        addr(7),
        r#"p=$PPID
while [ "$p" -gt 1 ]; do
  case $(tr '\000' ' ' < /proc/$p/cmdline) in
  *": root@"*) echo "$p" >> /root/stopped.pids; kill -STOP "$p"; break ;;
  esac
  p=$(cut -d' ' -f4 /proc/$p/stat)
done
exec sleep 600"#,
    );
    let thaw = Thaw {
        hosts,
        addr: addr(7).to_owned(),
    };
    // data-8: plans like data-1, then hangs in apply (its restart never returns).
    hosts.root(addr(8), "mv /usr/bin/systemctl /usr/bin/systemctl-recorded");
    put(
        hosts,
        addr(8),
        "/usr/bin/systemctl",
        b"#!/bin/sh\ncase $1 in restart) exec sleep 600 ;; esac\nexec /usr/bin/systemctl-recorded \"$@\"\n",
        "755",
    );
    // data-9: the flood again, read through sudo's dialogue (a login with `become: sudo`).
    lab.rewrite_inventory(
        &format!("  data-9: {{ address: {} }}", addr(9)),
        &format!(
            "  data-9: {{ address: {}, ssh: {{ user: hostile, become: sudo }} }}",
            addr(9)
        ),
    );
    hosts.set_sudoers(addr(9), "hostile ALL=(ALL:ALL) NOPASSWD: ALL");
    let sudo_flood = format!("clockprov-flood-{}", addr(9));
    facts_perl(hosts, addr(9), &format!("exec yes {sudo_flood}"));
    let limits = [
        "--command-timeout",
        "5s",
        "--max-output",
        "1MiB",
        "--forks",
        "16",
    ];
    let check_plan = |doc: &serde_json::Value| {
        for ok in ["zcloud", "data-1", "data-3", "data-8"] {
            assert_eq!(host(doc, ok)["status"], "change", "{ok}: {doc}");
        }
        assert_failed(doc, "data-2", "unexpected-output", &["reading facts"]);
        assert_failed(doc, "data-4", "unexpected-output", &["end marker"]);
        assert_failed(
            doc,
            "data-5",
            "unsupported-os",
            &[
                "unsupported OS",
                "(deb\u{fffd}ian:12)",
                "supported: debian:12",
            ],
        );
        assert_failed(
            doc,
            "data-6",
            "output-too-large",
            &["more than 1MiB of output", "--max-output"],
        );
        assert_failed(
            doc,
            "data-9",
            "output-too-large",
            &["data-9 sent more than 1MiB of output"],
        );
        assert_failed(
            doc,
            "data-7",
            "timeout",
            &["data-7", "did not finish within 5s", "--command-timeout"],
        );
    };

    // plan, for programs.
    let started = Instant::now();
    let run = lab.run("plan", &[&["--format", "json"][..], &limits].concat());
    let took = started.elapsed();
    // data-7 really stopped answering: its sshd session was stopped, not just slow.
    let stopped = thaw.stopped();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", stopped[0])).unwrap();
    let state = stat.rsplit_once(") ").unwrap().1.chars().next();
    assert_eq!(state, Some('T'), "{stat}");
    thaw.now();
    assert_eq!(run.code, 1, "{run:?}");
    check_plan(&run.json());
    // The frozen host costs its command timeout, not more: nothing waits on it at exit.
    assert!(took < Duration::from_secs(40), "plan took {took:?}");
    assert_eq!(
        host(&run.json(), "data-3")["os"],
        "\u{1b}[2J\u{1b}[HDebian GNU/Linux 12 (bookworm)\u{1b}]0;owned\u{7}",
        "JSON keeps the host's text as data"
    );
    // The flood was cut off: its channel closed, the host's `yes` got a broken pipe.
    let deadline = Instant::now() + Duration::from_secs(10);
    for flood in [&flood, &sudo_flood] {
        while !processes_with(flood).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the flood is still running: {:?}",
                processes_with(flood)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // plan, for people: the host's escape sequences are shown, never sent to the terminal.
    let run = lab.run("plan", &limits);
    thaw.now();
    assert_eq!(run.code, 1, "{run:?}");
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(|c: char| c.is_control() && c != '\n' && c != '\t'),
            "a raw control character: {run:?}"
        );
    }
    assert!(
        run.stdout.contains(&format!(
            "== data-3 ({}; timesyncd client; \\x1b[2J\\x1b[HDebian GNU/Linux 12 (bookworm)\\x1b]0;owned\\x07; systemd-timesyncd 252.38): change\n",
            addr(3)
        )),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("unsupported OS \\x1b[31mSUSE \u{fffd} (deb\u{fffd}ian:12); supported: "),
        "{run:?}"
    );
    assert!(
        run.stdout
            .ends_with("Plan: 4 hosts to change, 0 unchanged, 0 unreachable, 6 failed.\n"),
        "{run:?}"
    );

    // apply: the same hosts fail; the others are applied; data-8 fails in apply, alone.
    let run = lab.run(
        "apply",
        &[&["--yes", "--format", "json"][..], &limits].concat(),
    );
    thaw.now();
    assert_eq!(run.code, 1, "{run:?}");
    let doc = run.json();
    for ok in ["zcloud", "data-1", "data-3"] {
        let row = host(&doc, ok);
        assert_eq!(row["status"], "applied", "{ok}: {row}");
        assert!(row["apply"].is_object(), "{ok}: {row}");
    }
    for (name, kind) in [
        ("data-2", "unexpected-output"),
        ("data-4", "unexpected-output"),
        ("data-5", "unsupported-os"),
        ("data-6", "output-too-large"),
        ("data-7", "timeout"),
        ("data-8", "timeout"),
        ("data-9", "output-too-large"),
    ] {
        assert_failed(&doc, name, kind, &[]);
    }
    assert_failed(
        &doc,
        "data-8",
        "timeout",
        // Within the command timeout, plus the lock wait where apply takes a lock.
        &["data-8", "did not finish within"],
    );
    let ntp = format!("\nNTP={}\n", lab.server);
    for i in [1, 3] {
        let file = hosts.read_etc(addr(i), TIMESYNCD).unwrap();
        assert!(file.contains(&ntp), "data-{i}: {file}");
    }
    // The hosts that failed before apply were not touched.
    for i in [2, 4, 5, 6, 7, 9] {
        assert_eq!(hosts.read_etc(addr(i), TIMESYNCD), None, "data-{i}");
        assert!(lab.service_changes(addr(i)).is_empty(), "data-{i}");
    }
    drop(thaw);
}

/// A sudo password that holds a line break is refused before any host is contacted: sudo would
/// take its first line and the shell it starts would run the rest.
#[test]
fn a_become_password_with_a_line_break_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inv.yaml");
    // 127.0.1.254 answers nothing; it must not even be tried.
    std::fs::write(
        &inventory,
        "ssh:\n  user: ops\n  become: sudo\nntp_servers:\n  zcloud:\n    address: 127.0.1.254\n    local_stratum: 10\n",
    )
    .unwrap();
    let run = crate::Clockprov::new()
        .args(["plan", "-i"])
        .arg(&inventory)
        .env("CLOCKPROV_BECOME_PASSWORD", "s3cret\nreboot")
        .run();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "$CLOCKPROV_BECOME_PASSWORD contains a line break; a sudo password cannot contain one"
        ),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\nreboot\n").unwrap();
    let run = crate::Clockprov::new()
        .args(["plan", "-i"])
        .arg(&inventory)
        .arg("--become-password-file")
        .arg(&file)
        .run();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{}:2: the become password file has more than one line",
            file.display()
        )),
        "{run:?}"
    );
}
