//! Apply: one host's plan as one transaction, in one remote script (`apply.sh`) sent on stdin.
//!
//! The script takes the host's lock, refuses a file that changed since the plan read it (fail
//! closed), installs a missing package, stages every file beside its target, keeps a hard-linked
//! backup, leaves the marker `/run/clockprov/restart-pending.UNIT` before the first rename,
//! enables, restarts and verifies the unit, removes the marker and prunes old backups; a unit
//! that does not come back gets the files the marker names, its enable undone, and is brought
//! back as it was. Its `@@` records say what happened; this module turns them into a report or
//! an error that says what failed and what runs now.
//!
//! A run cut short anywhere (the controller killed, the connection dropped, a timeout) leaves
//! every file whole, old or new; if a new file was renamed into place without a verified
//! restart, the marker stays and the next plan restarts the unit ("restart pending from an
//! interrupted apply"), restoring the marker's files if that restart fails.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::host::records::{RecordError, Records};
use crate::host::script::RemoteScript;
use crate::plan::{FileAction, HostPlan};
use crate::shell::{ShellWord, ShellWordError};
use crate::ssh::sudo::{BecomeError, Privileged};
use crate::ssh::transport::CommandOutput;

const SCRIPT: &str = include_str!("apply.sh");
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);
/// The lock every apply takes on a host (`apply.sh`; on tmpfs: gone at reboot, as a lock should
/// be). The restart-pending markers live in `/run/clockprov` for the same reason.
pub const LOCK_PATH: &str = "/run/lock/clockprov.lock";

/// How apply treats every host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Backups kept per file (`--keep-backups`); older ones are pruned after a verified restart.
    pub keep_backups: u32,
    /// How long to wait for another apply's lock on the same host (`--lock-wait`).
    pub lock_wait: Duration,
    /// The time in the backups' names (`PATH.clockprov-TIME.bak`): the controller's, taken once
    /// per run, so that no host starts a `date` for it.
    pub backup_time: SystemTime,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            keep_backups: 5,
            lock_wait: Duration::from_secs(30),
            backup_time: SystemTime::now(),
        }
    }
}

/// What happened on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Human-readable steps that were carried out, in order.
    pub done: Vec<String>,
    /// Backups kept of replaced files.
    pub backups: Vec<String>,
    /// Older backups removed (beyond `--keep-backups`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
    /// Vendor sources the plan was to switch off after the package install, which that install
    /// did not create (nothing was renamed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_created: Vec<String>,
    pub rolled_back: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path} changed on the host since it was read; nothing was done (run plan again)")]
    Drifted { path: String },
    #[error(
        "could not verify that {path} is as planned (the drift check failed{detail}); nothing was changed"
    )]
    DriftCheckFailed { path: String, detail: String },
    #[error(
        "another apply holds the lock {LOCK_PATH} on this host (waited {}s); nothing was changed",
        .waited.as_secs_f64()
    )]
    Locked { waited: Duration },
    #[error("the rendered {path} fails `{check}`, so it was not installed: {output}")]
    Invalid {
        path: String,
        check: String,
        output: String,
    },
    #[error("{step} failed ({status}); nothing was changed: {stderr}")]
    Step {
        step: String,
        status: String,
        stderr: String,
    },
    /// The unit did not come back: what failed, what was put back, what runs now.
    #[error("{0}")]
    RolledBack(Box<Rollback>),
    #[error("the apply script stopped before its end ({reason}){after}")]
    CutShort { reason: String, after: String },
    #[error("the apply script's output cannot be read: {0}")]
    Output(#[from] RecordError),
    #[error("cannot send {0}")]
    Unsendable(#[from] ShellWordError),
    #[error(transparent)]
    Become(#[from] BecomeError),
}

/// What a rollback found and did, for its message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollback {
    pub unit: String,
    /// `restart`, `start`, `enable` or `install` (a rename).
    pub step: String,
    /// The unit's state after the failed step (`failed`, `inactive`, ...).
    pub state: String,
    /// What the failed command printed.
    pub said: Vec<String>,
    /// `systemctl status` right after the failed step (before anything was restored).
    pub status: Vec<String>,
    /// `(path, Some(backup))` restored from a backup, `(path, None)` removed (it was new).
    pub restored: Vec<(String, Option<String>)>,
    pub disabled: bool,
    /// The unit's state after the rollback: `active`, `failed`, `stopped`, ...
    pub now: String,
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = &self.unit;
        match self.step.as_str() {
            "enable" => write!(f, "systemctl enable {unit} failed")?,
            "install" => write!(f, "installing the new files failed")?,
            step => write!(
                f,
                "{unit} did not come up after the {step} ({})",
                self.state
            )?,
        }
        if let Some(said) = self.said.first() {
            write!(f, ": {said}")?;
            for line in &self.said[1..] {
                write!(f, "\n  {line}")?;
            }
        }
        let mut undone: Vec<String> = self
            .restored
            .iter()
            .map(|(path, backup)| match backup {
                Some(backup) => format!("restored {path} from {backup}"),
                None => format!("removed {path} (it was new)"),
            })
            .collect();
        if self.disabled {
            undone.push(format!("disabled {unit} again"));
        }
        if undone.is_empty() {
            write!(f, "\nrolled back: no file needed restoring")?;
        } else {
            write!(f, "\nrolled back: {}", undone.join("; "))?;
        }
        match self.now.as_str() {
            "active" if self.restored.is_empty() => {
                write!(f, "\nnow: {unit} is active")?;
            }
            "active" => write!(f, "\nnow: {unit} is active with the previous files")?,
            "stopped" => write!(f, "\nnow: {unit} is stopped, as it was before")?,
            now if self.restored.is_empty() => {
                write!(f, "\nnow: {unit} is {now}")?;
            }
            now => write!(
                f,
                "\nnow: {unit} is {now} with the previous files too (it needs a look by hand)"
            )?,
        }
        if !self.status.is_empty() {
            write!(f, "\nstatus after the failed {}:", self.step)?;
            for line in &self.status {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

/// `YYYYmmddTHHMMSS.NNNNNNNNNZ` in UTC, as `date -u +%Y%m%dT%H%M%S.%NZ` prints it: backup names
/// sort by time.
fn backup_stamp(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = crate::utc::Utc::from_unix(since.as_secs()).compact();
    format!(
        "{}.{:09}Z",
        seconds.trim_end_matches('Z'),
        since.subsec_nanos()
    )
}

/// The script for `plan`: `apply.sh` with its arguments (see the script's header).
///
/// # Errors
/// A value holds a NUL byte (no shell word can carry it).
pub fn script(plan: &HostPlan, options: &ApplyOptions) -> Result<RemoteScript, ShellWordError> {
    let unit = &plan.unit;
    // A restart owed only to a marker is left to the script, which restarts while the marker is
    // there: an apply running at the same moment (holding the lock) may have paid the debt since.
    let owed_only = unit.pending && plan.package.is_none() && !plan.changes_configuration();
    let action = if unit.restart && !owed_only {
        "restart"
    } else if unit.start && !owed_only {
        "start"
    } else {
        "none"
    };
    let check = match plan.daemon.config_check(plan.version) {
        Some(_) => "chronyd",
        None => "",
    };
    let mut args = vec![
        format!("{:.3}", options.lock_wait.as_secs_f64()),
        options.keep_backups.to_string(),
        unit.unit.clone(),
        u8::from(unit.enable).to_string(),
        action.to_owned(),
        u8::from(unit.active_before).to_string(),
        plan.package
            .as_ref()
            .map(|p| p.package.clone())
            .unwrap_or_default(),
        check.to_owned(),
        backup_stamp(options.backup_time),
    ];
    for file in &plan.files {
        let kind = match file.action {
            FileAction::Unchanged => "none",
            FileAction::FixMetadata => "meta",
            FileAction::Create | FileAction::Update => "write",
        };
        let expect = match (kind, &file.before) {
            ("none", _) => String::new(),
            (_, Some(before)) => crate::utc::sha256_hex(&before.content),
            (_, None) => "absent".to_owned(),
        };
        let content = if kind == "write" {
            file.after.content.clone()
        } else {
            String::new()
        };
        args.extend([
            file.path.clone(),
            kind.to_owned(),
            expect,
            format!("{:o}", file.after.mode),
            file.after.owner.clone(),
            file.after.group.clone(),
            content,
        ]);
    }
    // A vendor source switched off: renamed to its `.clockprov-off` name, under the same drift
    // check, marker and rollback as the files (CONTENT is what the new name holds as read).
    // One the package install is to create (`offnew`): renamed after the install if it did,
    // the file expected absent before it.
    for step in &plan.switch_off {
        args.extend([
            step.path.clone(),
            if step.after_install { "offnew" } else { "off" }.to_owned(),
            step.sha256.clone(),
            "644".to_owned(),
            "root".to_owned(),
            "root".to_owned(),
            step.replaces_sha256
                .clone()
                .unwrap_or_else(|| "absent".to_owned()),
        ]);
    }
    args.push("@@args".to_owned());
    let words = args
        .iter()
        .map(|a| ShellWord::new(a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RemoteScript::new(SCRIPT).args(words))
}

/// Carry out `plan` on `host` as one transaction, as root (through sudo when the login is not
/// root). A plan with no changes runs nothing.
///
/// # Errors
/// The host refused (lock, drift), a step failed (and what was rolled back), or the run was cut
/// short; the error says which.
pub async fn apply_host(
    session: &Privileged<'_>,
    plan: &HostPlan,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    if !plan.has_changes() {
        return Ok(ApplyReport::default());
    }
    let mut timeout = session.session.command_timeout() + options.lock_wait;
    if plan.package.is_some() {
        timeout += INSTALL_TIMEOUT;
    }
    let script = script(plan, options)?;
    let out = session.run_script_with_timeout(&script, timeout).await?;
    interpret(plan, options, &out)
}

/// Turn the script's records into a report or an error.
#[allow(clippy::too_many_lines)] // one match over the script's record kinds, then the verdict
fn interpret(
    plan: &HostPlan,
    options: &ApplyOptions,
    out: &CommandOutput,
) -> Result<ApplyReport, ApplyError> {
    let stderr = out.stderr_text();
    let mut report = ApplyReport::default();
    let mut rollback = Rollback {
        unit: plan.unit.unit.clone(),
        ..Rollback::default()
    };
    let mut failed: Option<(String, String)> = None;
    let mut nodrift = false;
    let mut ended = false;
    let mut records = Records::new(&out.stdout);
    loop {
        let record = match records.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => {
                ended = true;
                break;
            }
            // Cut short: what it did so far is still worth saying.
            Err(RecordError::Truncated) => break,
            Err(e) => return Err(e.into()),
        };
        let (kind, text) = (record.kind, record.text());
        let rest = text.as_ref();
        match kind {
            "locked" => {
                return Err(ApplyError::Locked {
                    waited: options.lock_wait,
                });
            }
            "drift" => {
                let path = rest.rsplit_once(' ').map_or(rest, |(p, _)| p);
                return Err(ApplyError::Drifted {
                    path: path.to_owned(),
                });
            }
            "checkfail" => {
                return Err(ApplyError::DriftCheckFailed {
                    path: rest.to_owned(),
                    detail: detail(&stderr),
                });
            }
            "nodrift" => nodrift = true,
            "installed" => report.done.push(match plan.package.as_ref() {
                Some(p) if p.removes.is_some() => format!(
                    "installed {rest} (removed {})",
                    p.removes.as_deref().unwrap_or_default()
                ),
                _ => format!("installed {rest}"),
            }),
            "invalid" => {
                let check = plan.daemon.config_check(plan.version).unwrap_or_default();
                return Err(ApplyError::Invalid {
                    path: rest.to_owned(),
                    check: format!("{check} FILE"),
                    output: stderr,
                });
            }
            "backup" => report.backups.push(rest.to_owned()),
            "written" => report.done.push(format!("wrote {rest}")),
            "switchedoff" => {
                let (path, to) = rest.split_once(' ').unwrap_or((rest, ""));
                let created = plan
                    .switch_off
                    .iter()
                    .any(|step| step.path == path && step.after_install);
                report.done.push(if created {
                    format!(
                        "switched off {path}, created by the {} install (renamed to {to})",
                        plan.daemon.package()
                    )
                } else {
                    format!("switched off {path} (renamed to {to})")
                });
            }
            "notcreated" => {
                report.done.push(format!(
                    "nothing to switch off: the {} install did not create {rest}",
                    plan.daemon.package()
                ));
                report.not_created.push(rest.to_owned());
            }
            "meta" => {
                if let Some(file) = plan.files.iter().find(|f| f.path == rest) {
                    report.done.push(format!(
                        "set mode {:o} owner {} on {rest}",
                        file.after.mode, file.after.owner
                    ));
                }
            }
            "enabled" => report.done.push(format!("enabled {rest}")),
            "restarted" | "started" => report.done.push(format!("{kind} {rest}")),
            "pruned" => report.pruned.push(rest.to_owned()),
            "said" => rollback.said.push(rest.to_owned()),
            "status" => rollback.status.push(rest.to_owned()),
            "fail" => {
                let mut words = rest.splitn(3, ' ');
                let step = words.next().unwrap_or_default().to_owned();
                let (a, b) = (words.next().unwrap_or_default(), words.next());
                if matches!(step.as_str(), "restart" | "start") {
                    a.clone_into(&mut rollback.state);
                }
                failed = Some((step, b.unwrap_or(a).to_owned()));
            }
            "restored" => {
                let (path, backup) = rest.split_once(' ').unwrap_or((rest, ""));
                rollback
                    .restored
                    .push((path.to_owned(), Some(backup.to_owned())));
            }
            "removed" => rollback.restored.push((rest.to_owned(), None)),
            "disabled" => rollback.disabled = true,
            "now" => {
                rest.rsplit_once(' ')
                    .map_or(rest, |(_, s)| s)
                    .clone_into(&mut rollback.now);
            }
            _ => {}
        }
    }
    if !nodrift {
        // Fail closed: without the script's own word that nothing drifted, nothing was written.
        return Err(ApplyError::DriftCheckFailed {
            path: plan
                .files
                .iter()
                .find(|f| f.action != FileAction::Unchanged)
                .map_or_else(|| plan.unit.unit.clone(), |f| f.path.clone()),
            detail: detail(&format!(
                "{}{}",
                exit_text(out.status),
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            )),
        });
    }
    if let Some((step, what)) = failed {
        let rolled = !rollback.now.is_empty();
        if rolled {
            rollback.step = step;
            report.rolled_back = true;
            return Err(ApplyError::RolledBack(Box::new(rollback)));
        }
        return Err(ApplyError::Step {
            step: match step.as_str() {
                // chronyd.service is the RHEL family's unit, whose installer is dnf.
                "install" if plan.unit.unit == "chronyd.service" => format!("dnf install {what}"),
                "install" => format!("apt-get install {what}"),
                step => format!("{step} {what}"),
            },
            status: exit_text(out.status),
            stderr,
        });
    }
    if !ended || out.status != Some(0) {
        let after = if report.done.is_empty() {
            String::new()
        } else {
            format!(
                " after: {}; the next apply finishes the job",
                report.done.join("; ")
            )
        };
        return Err(ApplyError::CutShort {
            reason: format!("{}{}", exit_text(out.status), detail(&stderr)),
            after,
        });
    }
    Ok(report)
}

fn exit_text(status: Option<u32>) -> String {
    status.map_or_else(|| "no exit status".to_owned(), |s| format!("exit {s}"))
}

fn detail(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{Daemon, DaemonVersion};
    use crate::host::facts::FileFacts;
    use crate::plan::{FileChange, UnitChange};
    use crate::render::DesiredFile;
    use std::path::Path;

    #[test]
    fn backup_names_carry_the_controllers_utc_time_to_the_nanosecond() {
        let at = |s, n| SystemTime::UNIX_EPOCH + Duration::new(s, n);
        assert_eq!(
            backup_stamp(at(1_796_528_565, 7)),
            "20261206T034245.000000007Z"
        );
        assert_eq!(
            backup_stamp(at(0, 999_999_999)),
            "19700101T000000.999999999Z"
        );
    }

    fn change(path: &Path, before: Option<&str>, after: &str) -> FileChange {
        let id = |flag: &str| {
            let out = std::process::Command::new("id").arg(flag).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        FileChange {
            path: path.display().to_string(),
            action: if before.is_some() {
                FileAction::Update
            } else {
                FileAction::Create
            },
            before: before.map(|b| FileFacts {
                content: b.as_bytes().to_vec(),
                mode: 0o644,
                owner: id("-un"),
                group: id("-gn"),
            }),
            after: DesiredFile {
                path: path.display().to_string(),
                content: after.into(),
                mode: 0o644,
                owner: id("-un"),
                group: id("-gn"),
                kind: crate::render::FileKind::Config,
            },
            diff: String::new(),
        }
    }

    fn plan(files: Vec<FileChange>) -> HostPlan {
        HostPlan {
            host: "h".into(),
            daemon: Daemon::Timesyncd,
            version: DaemonVersion {
                major: 252,
                minor: 0,
            },
            files,
            package: None,
            switch_off: Vec::new(),
            unit: UnitChange {
                unit: "clockprov-test-unit.service".into(),
                enable: false,
                restart: true,
                start: false,
                pending: false,
                active_before: true,
            },
        }
    }

    /// A `systemctl` stand-in in `dir/bin`: logs its arguments to `dir/systemctl.log`; the unit
    /// fails to restart while `dir/fail` exists; a `stop` kills the apply script (its parent)
    /// once if `dir/crash-at-stop` exists.
    fn fake_systemctl(dir: &Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let d = dir.display();
        let body = format!(
            "#!/bin/sh\necho \"$*\" >>'{d}/systemctl.log'\ncase $1 in\n\
             is-active) if [ -e '{d}/fail' ]; then echo failed; exit 3; fi; echo active ;;\n\
             restart|start) if [ -e '{d}/fail' ]; then echo 'Job failed.' >&2; exit 1; fi ;;\n\
             stop) if [ -e '{d}/crash-at-stop' ]; then rm -f '{d}/crash-at-stop'; kill -9 $PPID; fi ;;\n\
             status) echo '* unit'; echo '   Active: failed' ;;\nesac\n"
        );
        let path = bin.join("systemctl");
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // apt-get: Ubuntu 25.10+'s chrony postinst creates its pools file (`DIR/postinst` holds
        // its text; without it the package creates none).
        let body = format!(
            "#!/bin/sh\necho \"$*\" >>'{d}/apt-get.log'\n\
             if [ -e '{d}/postinst' ]; then cp '{d}/postinst' '{d}/ubuntu-ntp-pools.sources'; fi\n"
        );
        let path = bin.join("apt-get");
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    /// The whole script for real in a temporary directory, its lock and marker directory moved
    /// there and `systemctl` a stand-in.
    fn run(plan: &HostPlan, options: &ApplyOptions, dir: &Path) -> CommandOutput {
        let text = script(plan, options)
            .unwrap()
            .text()
            .replace(
                "/run/lock/clockprov.lock",
                &format!("{}/lock", dir.display()),
            )
            .replace(
                "mdir=/run/clockprov",
                &format!("mdir={}/run", dir.display()),
            )
            .replace(
                "/var/lib/chrony/*.nts",
                &format!("{}/lib/*.nts", dir.display()),
            );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&text)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", fake_systemctl(dir).display()),
            )
            .output()
            .unwrap();
        CommandOutput {
            status: out.status.code().map(|c| u32::try_from(c).unwrap()),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_atomically_keeps_backups_and_prunes_them() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc dir");
        std::fs::create_dir(&etc).unwrap();
        let path = etc.join("it's.conf");
        std::fs::write(&path, "v0\n").unwrap();
        let options = ApplyOptions {
            keep_backups: 2,
            ..ApplyOptions::default()
        };
        for round in 1..=4 {
            let before = format!("v{}\n", round - 1);
            let after = format!("v{round} $(x) 'q'\n");
            let p = plan(vec![change(&path, Some(&before), &after)]);
            let out = run(&p, &options, dir.path());
            let report = interpret(&p, &options, &out);
            assert!(report.is_ok(), "{report:?} {out:?}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
            std::fs::write(&path, format!("v{round}\n")).unwrap();
        }
        // Two backups kept (the newest), no temporary file, no marker left.
        let left = names(&etc);
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(
            left.iter().all(|n| !n.starts_with(".clockprov")),
            "{left:?}"
        );
        assert_eq!(names(&dir.path().join("run")), Vec::<String>::new());
    }

    #[test]
    fn a_failed_restart_restores_the_file_and_an_interrupted_one_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old\n").unwrap();
        let options = ApplyOptions::default();
        let p = plan(vec![change(&path, Some("old\n"), "new\n")]);
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let out = run(&p, &options, dir.path());
        let Err(ApplyError::RolledBack(rollback)) = interpret(&p, &options, &out) else {
            panic!("{out:?}");
        };
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(rollback.restored.len(), 1, "{rollback:?}");
        assert_eq!(rollback.now, "failed");
        assert_eq!(rollback.said, ["Job failed."]);
        assert_eq!(names(&dir.path().join("run")), Vec::<String>::new());
        // An apply cut short after its rename left the marker: the next one, with the file
        // already right, restarts the unit, and restores the marker's backup if that fails.
        std::fs::write(&path, "new\n").unwrap();
        std::fs::write(dir.path().join("bak"), "old\n").unwrap();
        std::fs::write(
            dir.path()
                .join("run/restart-pending.clockprov-test-unit.service"),
            format!("{}/bak {}\n", dir.path().display(), path.display()),
        )
        .unwrap();
        let mut pending = plan(Vec::new());
        pending.unit.pending = true;
        let out = run(&pending, &options, dir.path());
        assert!(matches!(
            interpret(&pending, &options, &out),
            Err(ApplyError::RolledBack(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        std::fs::remove_file(dir.path().join("fail")).unwrap();
        std::fs::write(
            dir.path()
                .join("run/restart-pending.clockprov-test-unit.service"),
            "- /nonexistent\n",
        )
        .unwrap();
        let out = run(&pending, &options, dir.path());
        assert_eq!(
            interpret(&pending, &options, &out).unwrap().done,
            ["restarted clockprov-test-unit.service"]
        );
        assert_eq!(names(&dir.path().join("run")), Vec::<String>::new());
        // A marker whose backup a cut-short rollback already moved back: a new write replaces
        // that entry with its own backup, so a failed restart restores the file that ran.
        std::fs::write(
            dir.path()
                .join("run/restart-pending.clockprov-test-unit.service"),
            format!("{}/gone {}\n", dir.path().display(), path.display()),
        )
        .unwrap();
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let p = plan(vec![change(&path, Some("old\n"), "newer\n")]);
        let out = run(&p, &options, dir.path());
        assert!(matches!(
            interpret(&p, &options, &out),
            Err(ApplyError::RolledBack(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
    }

    /// A plan that switches `pools` off (as read: `content`; its `.clockprov-off` name: `off`).
    fn switching_off(pools: &Path, content: &str, off: Option<&str>) -> HostPlan {
        let mut p = plan(Vec::new());
        p.unit.restart = true;
        p.switch_off.push(crate::vendor_sources::SwitchOff {
            path: pools.display().to_string(),
            to: crate::vendor_sources::off_path(&pools.display().to_string()),
            sha256: crate::utc::sha256_hex(content.as_bytes()),
            replaces_sha256: off.map(|o| crate::utc::sha256_hex(o.as_bytes())),
            after_install: false,
        });
        p
    }

    #[test]
    fn a_vendor_source_is_switched_off_in_the_transaction_and_rolled_back_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pools = dir.path().join("ubuntu-ntp-pools.sources");
        let off = dir.path().join("ubuntu-ntp-pools.sources.clockprov-off");
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let options = ApplyOptions::default();
        std::fs::write(&pools, "pool 1\n").unwrap();

        // A restart that fails: the vendor file is back under its name.
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let p = switching_off(&pools, "pool 1\n", None);
        let out = run(&p, &options, dir.path());
        let Err(ApplyError::RolledBack(rollback)) = interpret(&p, &options, &out) else {
            panic!("{out:?}");
        };
        assert_eq!(
            rollback.restored,
            [(pools.display().to_string(), Some(off.display().to_string()))]
        );
        assert_eq!(
            (read(&pools).as_deref(), read(&off)),
            (Some("pool 1\n"), None)
        );
        std::fs::remove_file(dir.path().join("fail")).unwrap();

        // Edited since the plan read it: refused, nothing renamed.
        let stale = switching_off(&pools, "pool 0\n", None);
        let out = run(&stale, &options, dir.path());
        assert!(matches!(
            interpret(&stale, &options, &out),
            Err(ApplyError::Drifted { path }) if path == pools.display().to_string()
        ));
        assert_eq!(read(&pools).as_deref(), Some("pool 1\n"));

        // Switched off, one restart.
        let out = run(&p, &options, dir.path());
        let report = interpret(&p, &options, &out).unwrap();
        assert_eq!(
            report.done,
            [
                format!(
                    "switched off {} (renamed to {})",
                    pools.display(),
                    off.display()
                ),
                "restarted clockprov-test-unit.service".to_owned()
            ]
        );
        assert_eq!(
            (read(&pools), read(&off).as_deref()),
            (None, Some("pool 1\n"))
        );

        // The package brought it back, with new text: switched off again, the old one kept as a
        // backup; a failed restart puts both back where they were.
        std::fs::write(&pools, "pool 2\n").unwrap();
        let again = switching_off(&pools, "pool 2\n", Some("pool 1\n"));
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let out = run(&again, &options, dir.path());
        assert!(matches!(
            interpret(&again, &options, &out),
            Err(ApplyError::RolledBack(_))
        ));
        assert_eq!(
            (read(&pools).as_deref(), read(&off).as_deref()),
            (Some("pool 2\n"), Some("pool 1\n"))
        );
        std::fs::remove_file(dir.path().join("fail")).unwrap();
        let out = run(&again, &options, dir.path());
        let report = interpret(&again, &options, &out).unwrap();
        assert_eq!(report.backups.len(), 1, "{report:?}");
        assert_eq!(
            read(Path::new(&report.backups[0])).as_deref(),
            Some("pool 1\n")
        );
        assert_eq!(
            (read(&pools), read(&off).as_deref()),
            (None, Some("pool 2\n"))
        );
        assert_eq!(names(&dir.path().join("run")), Vec::<String>::new());
    }

    #[test]
    fn a_vendor_source_the_package_install_creates_is_switched_off_in_the_same_apply() {
        let dir = tempfile::tempdir().unwrap();
        let pools = dir.path().join("ubuntu-ntp-pools.sources");
        let off = dir.path().join("ubuntu-ntp-pools.sources.clockprov-off");
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let options = ApplyOptions::default();
        let mut p = switching_off(&pools, "", None);
        p.daemon = Daemon::Chrony;
        p.package = Some(crate::plan::PackageInstall {
            package: "chrony".into(),
            removes: Some("systemd-timesyncd".into()),
        });
        p.switch_off[0].sha256 = crate::vendor_sources::ABSENT.into();
        p.switch_off[0].after_install = true;

        // The install creates it, the restart fails: back under its name, with the files.
        std::fs::write(dir.path().join("postinst"), "pool 1 nts prefer\n").unwrap();
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let out = run(&p, &options, dir.path());
        let Err(ApplyError::RolledBack(rollback)) = interpret(&p, &options, &out) else {
            panic!("{out:?}");
        };
        assert_eq!(
            rollback.restored,
            [(pools.display().to_string(), Some(off.display().to_string()))]
        );
        assert_eq!(
            (read(&pools).as_deref(), read(&off)),
            (Some("pool 1 nts prefer\n"), None)
        );
        std::fs::remove_file(dir.path().join("fail")).unwrap();

        // There since the plan read it absent: refused before the install, nothing renamed.
        let out = run(&p, &options, dir.path());
        assert!(matches!(
            interpret(&p, &options, &out),
            Err(ApplyError::Drifted { path }) if path == pools.display().to_string()
        ));
        assert_eq!(read(&pools).as_deref(), Some("pool 1 nts prefer\n"));
        std::fs::remove_file(&pools).unwrap();

        // Created by the install and switched off before the restart, in one apply.
        let out = run(&p, &options, dir.path());
        let report = interpret(&p, &options, &out).unwrap();
        assert_eq!(
            report.done,
            [
                "installed chrony (removed systemd-timesyncd)".to_owned(),
                format!(
                    "switched off {}, created by the chrony install (renamed to {})",
                    pools.display(),
                    off.display()
                ),
                "restarted clockprov-test-unit.service".to_owned()
            ]
        );
        assert!(report.not_created.is_empty());
        assert_eq!(
            (read(&pools), read(&off).as_deref()),
            (None, Some("pool 1 nts prefer\n"))
        );

        // Not created by the install (ucf remembers it was removed): nothing renamed, and said.
        std::fs::remove_file(dir.path().join("postinst")).unwrap();
        let mut again = p.clone();
        again.switch_off[0].replaces_sha256 = Some(crate::utc::sha256_hex(b"pool 1 nts prefer\n"));
        let out = run(&again, &options, dir.path());
        let report = interpret(&again, &options, &out).unwrap();
        assert_eq!(
            report.done[1],
            format!(
                "nothing to switch off: the chrony install did not create {}",
                pools.display()
            )
        );
        assert_eq!(report.not_created, [pools.display().to_string()]);
        assert!(report.backups.is_empty(), "{report:?}");
        assert_eq!(
            (read(&pools), read(&off).as_deref()),
            (None, Some("pool 1 nts prefer\n"))
        );
        assert_eq!(names(&dir.path().join("run")), Vec::<String>::new());
    }

    #[test]
    fn a_rollback_never_moves_a_switched_off_file_over_one_that_came_back() {
        // The marker of an apply killed after its rename; the package brought the file back
        // since, and the owed restart fails: both files stay (the rename is not undone onto the
        // new file), and the old switched-off file's backup is not moved over it either.
        let dir = tempfile::tempdir().unwrap();
        let pools = dir.path().join("p.sources");
        let off = dir.path().join("p.sources.clockprov-off");
        std::fs::write(&pools, "new\n").unwrap();
        std::fs::write(&off, "renamed\n").unwrap();
        std::fs::write(dir.path().join("bak"), "older\n").unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        std::fs::write(
            dir.path()
                .join("run/restart-pending.clockprov-test-unit.service"),
            format!(
                "+{off} {pools}\n{bak} {off}\n",
                off = off.display(),
                pools = pools.display(),
                bak = dir.path().join("bak").display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let mut pending = plan(Vec::new());
        pending.unit.pending = true;
        let out = run(&pending, &ApplyOptions::default(), dir.path());
        assert!(matches!(
            interpret(&pending, &ApplyOptions::default(), &out),
            Err(ApplyError::RolledBack(_))
        ));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            (read(&pools), read(&off), read(&dir.path().join("bak"))),
            ("new\n".into(), "renamed\n".into(), "older\n".into())
        );
    }

    #[test]
    fn a_restart_owed_for_a_new_nts_ca_drops_the_saved_cookies() {
        // Killed after writing a new CA, before chrony's stop / rm / start: the marker says the
        // trust changed, and the next run's owed restart is that sequence, not a plain restart.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("clockprov-ca.crt");
        let cookies = dir.path().join("lib/192.0.2.1.nts");
        std::fs::write(&ca, "old CA\n").unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(&cookies, "cookie\n").unwrap();
        std::fs::write(dir.path().join("crash-at-stop"), "").unwrap();
        let options = ApplyOptions::default();
        let p = plan(vec![change(&ca, Some("old CA\n"), "new CA\n")]);
        let out = run(&p, &options, dir.path());
        assert!(
            matches!(
                interpret(&p, &options, &out),
                Err(ApplyError::CutShort { .. })
            ),
            "{out:?}"
        );
        let marker = dir
            .path()
            .join("run/restart-pending.clockprov-test-unit.service");
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "new CA\n");
        assert!(
            std::fs::read_to_string(&marker)
                .unwrap()
                .lines()
                .any(|l| l == "!nts-trust"),
            "{out:?}"
        );
        assert!(cookies.exists());
        let log = || std::fs::read_to_string(dir.path().join("systemctl.log")).unwrap();
        let before = log().lines().count();

        let mut pending = plan(Vec::new());
        pending.unit.pending = true;
        let out = run(&pending, &options, dir.path());
        assert!(interpret(&pending, &options, &out).is_ok(), "{out:?}");
        let calls: Vec<String> = log().lines().skip(before).map(str::to_owned).collect();
        assert_eq!(
            calls
                .iter()
                .filter(|c| !c.starts_with("is-active"))
                .collect::<Vec<_>>(),
            [
                "stop clockprov-test-unit.service",
                "start clockprov-test-unit.service"
            ]
        );
        assert!(!cookies.exists());
        assert!(!marker.exists());

        // Without a trust change, an owed restart stays a restart (and the cookies stay).
        std::fs::write(&cookies, "cookie\n").unwrap();
        std::fs::write(&marker, "- /nonexistent\n").unwrap();
        let before = log().lines().count();
        let out = run(&pending, &options, dir.path());
        assert!(interpret(&pending, &options, &out).is_ok(), "{out:?}");
        assert_eq!(
            log().lines().nth(before),
            Some("restart clockprov-test-unit.service")
        );
        assert!(cookies.exists());
    }

    #[test]
    fn drift_and_a_failing_drift_check_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "edited\n").unwrap();
        let p = plan(vec![change(&path, Some("a\n"), "b\n")]);
        let out = run(&p, &ApplyOptions::default(), dir.path());
        assert!(matches!(
            interpret(&p, &ApplyOptions::default(), &out),
            Err(ApplyError::Drifted { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "edited\n");
        // No "no drift" record: refused, whatever the exit status says.
        let silent = CommandOutput {
            status: Some(0),
            stdout: b"@@written /x\n@@end\n".to_vec(),
            stderr: Vec::new(),
        };
        assert!(matches!(
            interpret(&p, &ApplyOptions::default(), &silent),
            Err(ApplyError::DriftCheckFailed { .. })
        ));
    }

    #[test]
    fn a_cut_script_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "a\n").unwrap();
        let p = plan(vec![change(&path, Some("a\n"), "b\n")]);
        let text = script(&p, &ApplyOptions::default()).unwrap().text();
        // Anywhere before the end of the group that holds the whole script (once that has
        // arrived, all of it has).
        let call = text.rfind("clockprov_apply \"$@\"").unwrap();
        let end = text.rfind('}').unwrap();
        for cut in [text.len() / 3, call, call + 9, call + 16, end] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&text[..cut])
                .env(
                    "PATH",
                    format!("{}:/usr/bin:/bin", fake_systemctl(dir.path()).display()),
                )
                .output()
                .unwrap();
            assert!(
                !String::from_utf8_lossy(&out.stdout).contains("@@"),
                "{out:?}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
        }
    }

    #[test]
    fn rollback_message() {
        let p = plan(Vec::new());
        let out = CommandOutput {
            status: Some(5),
            stdout: b"@@nodrift\n@@backup /etc/systemd/timesyncd.conf.clockprov-20261206T031942.1Z.bak\n\
@@written /etc/systemd/timesyncd.conf\n@@said Job for systemd-timesyncd.service failed because the control process exited with error code.\n\
@@status * systemd-timesyncd.service\n@@status      Active: failed\n@@fail restart failed systemd-timesyncd.service\n\
@@restored /etc/systemd/timesyncd.conf /etc/systemd/timesyncd.conf.clockprov-20261206T031942.1Z.bak\n\
@@now systemd-timesyncd.service active\n@@end\n"
                .to_vec(),
            stderr: Vec::new(),
        };
        let mut p = p;
        p.unit.unit = "systemd-timesyncd.service".into();
        let error = interpret(&p, &ApplyOptions::default(), &out).unwrap_err();
        insta::assert_snapshot!(error.to_string());
    }
}
