//! The VM lab (tests/lab/lab.sh) from a test: booted by `up`, torn down (by the PIDs it
//! recorded) when the [`Lab`] is dropped, one lab at a time per test binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::run::Run;

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
        let lab = Lab { dir, _turn: turn };
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

    /// `program` in the lab's controller namespace (`lab.sh exec`), with no ssh-agent and no
    /// sudo password but those in `env`.
    #[must_use]
    pub fn exec(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new("bash");
        command
            .arg(lab_script())
            .arg("exec")
            .arg(self.dir.path())
            .arg(program)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove(PASSWORD_VAR)
            .env_remove("SSH_AUTH_SOCK")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        Run::from(command.output().expect("run lab.sh exec"))
    }

    /// clockprov in the controller namespace, echoed with its result on stderr.
    #[must_use]
    pub fn clockprov(&self, args: &[&str]) -> Run {
        let run = self.exec(env!("CARGO_BIN_EXE_clockprov"), args, &[]);
        eprintln!("$ clockprov {}\n{run:?}", args.join(" "));
        run
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

    /// A command on VM as root, from the lab's side (the hypervisor's console).
    pub fn ssh(&self, vm: &str, command: &str) -> String {
        self.lab("ssh", &[vm, command])
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
