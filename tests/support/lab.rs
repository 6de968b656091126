//! The VM lab (tests/lab/lab.sh) from a test: booted by `up`, torn down (by the PIDs it
//! recorded) when the [`Lab`] is dropped, one lab at a time per test binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::clockprov::{Clockprov, Run};

/// The sudo password variable: never inherited by what runs in the lab unless a test sets it.
pub const PASSWORD_VAR: &str = "CLOCKPROV_BECOME_PASSWORD";

#[must_use]
pub fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
}

/// One lab at a time: the machine has 2 cores, and every VM runs under TCG.
static ONE_LAB: Mutex<()> = Mutex::new(());

pub struct Lab {
    dir: tempfile::TempDir,
    /// What no clockprov run in this lab may print: the VMs' sudo password, when it has one.
    secrets: Vec<String>,
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    /// `lab.sh up DIR ARGS...` in a fresh directory named `prefix...`, once no other lab of this
    /// process is up.
    #[must_use]
    pub fn up(prefix: &str, args: &[&str]) -> Lab {
        let turn = ONE_LAB.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let status = Command::new("bash")
            .arg(lab_script())
            .arg("up")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .status()
            .expect("run lab.sh up");
        let secrets = std::fs::read_to_string(dir.path().join("become_password"))
            .map(|p| vec![p.trim_end().to_owned()])
            .unwrap_or_default();
        let lab = Lab {
            dir,
            secrets,
            _turn: turn,
        };
        assert!(
            status.success(),
            "lab.sh up {} failed (console logs above)",
            args.join(" ")
        );
        lab
    }

    /// A file in the lab's directory.
    #[must_use]
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The inventory `up` wrote for the lab's default topology.
    #[must_use]
    pub fn inventory(&self) -> String {
        self.file("inventory.yaml")
    }

    /// `program` (a tool, not clockprov) in the lab's controller namespace (`lab.sh exec`), with
    /// no ssh-agent and no sudo password.
    #[must_use]
    pub fn exec(&self, program: &str, args: &[&str]) -> Run {
        let mut command = Command::new("bash");
        command
            .arg(lab_script())
            .arg("exec")
            .arg(self.dir.path())
            .arg(program)
            .args(args)
            .env_remove(PASSWORD_VAR)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        Run::from(command.output().expect("run lab.sh exec"))
    }

    /// clockprov in the controller namespace with `env`; the lab's sudo password is a secret.
    #[must_use]
    pub fn clockprov(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let command = Clockprov::new().netns(self.dir.path()).args(args);
        let command = self.secrets.iter().fold(command, Clockprov::secret);
        env.iter().fold(command, |c, (k, v)| c.env(k, v)).run()
    }

    /// `clockprov check -i INVENTORY --format json` with `env`: its exit code and document.
    #[must_use]
    pub fn check_json(&self, inventory: &str, env: &[(&str, &str)]) -> (i32, serde_json::Value) {
        let run = self.clockprov(&["check", "-i", inventory, "--format", "json"], env);
        (run.code, run.json())
    }

    /// `lab.sh SUBCOMMAND DIR ARGS...`, which must succeed; its stdout.
    pub fn lab(&self, subcommand: &str, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(lab_script())
            .arg(subcommand)
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run lab.sh");
        assert!(
            out.status.success(),
            "lab.sh {subcommand} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Assert that timesyncd on `vm` follows zcloud (`timedatectl show-timesync`).
    pub fn assert_timesyncd_follows_zcloud(&self, vm: &str) {
        let timesync = self.ssh(vm, "timedatectl show-timesync --all");
        assert!(
            timesync.lines().any(|l| l == "ServerName=192.168.6.200"),
            "{vm}: {timesync}"
        );
    }

    /// A command on VM as root, from the lab's side (the hypervisor's console).
    pub fn ssh(&self, vm: &str, command: &str) -> String {
        self.lab("ssh", &[vm, command])
    }

    /// `ceph health detail` on a Ceph lab's first monitor (`lab.sh up --ceph`), as Ceph prints it.
    #[must_use]
    pub fn ceph_health_detail(&self) -> String {
        self.lab("ceph", &["health", "detail"])
    }

    /// What each VM's time daemon says of itself, for a failure message: the kernel's view
    /// (`timedatectl show`), the daemon's own (timesync-status or chronyc tracking) and the tail
    /// of its journal. A `--wait-sync` that runs out leaves only clockprov's verdict; this is
    /// what tells a daemon that stepped, lost its server or never asked apart.
    #[must_use]
    pub fn time_daemon_diagnostics(&self) -> String {
        const SCRIPT: &str = "date -u +%T.%N; timedatectl show 2>&1 | grep -E 'NTP|TimeUSec'; \
            if systemctl -q is-active chrony; then chronyc -n tracking; chronyc -n sources; \
            journalctl -q --no-pager -n 40 -u chrony; else timedatectl timesync-status 2>&1; \
            journalctl -q --no-pager -u systemd-timesyncd | grep -v -e 'Got message' -e 'Sent message' | tail -n 80; fi";
        // The VMs `up` booted: one VM.pid each.
        let mut vms: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".pid").map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        vms.sort();
        let mut out = String::new();
        for vm in &vms {
            let run = Command::new("bash")
                .arg(lab_script())
                .arg("ssh")
                .arg(self.dir.path())
                .args([vm, SCRIPT])
                .stdin(Stdio::null())
                .output();
            let text = match run {
                Ok(o) => format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => format!("lab.sh ssh: {e}"),
            };
            let _ = write!(out, "\n--- {vm} ---\n{text}");
        }
        out
    }

    /// Step `vm`'s clock to `seconds` off this machine's (to about 2 ms, `lab.sh skew`).
    pub fn step_clock(&self, vm: &str, seconds: i32) {
        self.lab("skew", &[vm, &seconds.to_string()]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(lab_script())
            .arg("down")
            .arg(self.dir.path())
            .status();
    }
}

/// Host `name`'s entry in a `--format json` document.
#[must_use]
pub fn host<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {doc:#}"))
}

/// Assert that host `name` of a `check --format json` document is synchronized to zcloud
/// (192.168.6.200), within Ceph's 0.05 s of it.
pub fn assert_synchronized_to_zcloud(doc: &serde_json::Value, name: &str) {
    let h = host(doc, name);
    assert_eq!(h["synchronized"], true, "{h:#}");
    assert_eq!(h["server"], "192.168.6.200", "{h:#}");
    assert!(
        h["offset_to_server_seconds"].as_f64().unwrap().abs() < 0.05,
        "{h:#}"
    );
}

/// Call `probe` every `every` until it returns `Ok`, for at most `within`: its value and how long
/// that took. Panics with the last `Err` (what was seen instead) when it never does.
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return (value, started.elapsed()),
            Err(last) => assert!(
                started.elapsed() < within,
                "{what}: not within {within:?}; last seen: {last}"
            ),
        }
        std::thread::sleep(every);
    }
}
