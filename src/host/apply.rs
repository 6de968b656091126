//! Apply: carry out one host's plan over its connection, safely.
//!
//! Order: refuse if a file changed since it was read; install a missing package; write each file
//! atomically (temporary file in the same directory, fsync, check, hard-link backup, rename,
//! fsync the directory); enable; restart once; verify; on failure restore the backups.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use crate::plan::{FileAction, FileChange, HostPlan};
use crate::shell::quote;
use crate::ssh::sudo::{BecomeError, Privileged};
use crate::ssh::transport::CommandOutput;

const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// What happened on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Human-readable steps that were carried out, in order.
    pub done: Vec<String>,
    /// Backups kept of replaced files.
    pub backups: Vec<String>,
    pub rolled_back: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path} changed on the host since it was read; nothing was done (run plan again)")]
    Drifted { path: String },
    #[error("the rendered {path} fails `{check}`, so it was not installed: {output}")]
    Invalid {
        path: String,
        check: String,
        output: String,
    },
    #[error("{step} failed (exit {status}): {stderr}")]
    Step {
        step: String,
        status: String,
        stderr: String,
    },
    #[error(
        "{unit} is not active after the restart ({state}); restored the previous files{restored}: {status}"
    )]
    RolledBack {
        unit: String,
        state: String,
        restored: String,
        status: String,
    },
    #[error(transparent)]
    Become(#[from] BecomeError),
}

/// The check command to run on a new file before it is used, if the daemon has one.
fn config_check(plan: &HostPlan) -> Option<&'static str> {
    plan.daemon.config_check(plan.version)
}

/// Script printing `@@drift PATH` for each planned file that is no longer as it was read.
#[must_use]
pub fn drift_script(files: &[FileChange]) -> String {
    let mut script = String::new();
    for file in files.iter().filter(|f| f.action != FileAction::Unchanged) {
        let path = quote(&file.path);
        match &file.before {
            Some(before) => {
                let _ = writeln!(
                    script,
                    "printf '%s' '{}' | base64 -d | cmp -s - {path} || echo @@drift {path}",
                    BASE64.encode(&before.content)
                );
            }
            None => {
                let _ = writeln!(script, "[ ! -e {path} ] || echo @@drift {path}");
            }
        }
    }
    script
}

/// Script that installs `file` atomically, keeping a hard-linked backup of the old one.
#[must_use]
pub fn write_script(file: &FileChange, check: Option<&str>) -> String {
    let path = &file.path;
    let dir = path
        .rsplit_once('/')
        .map_or("/", |(dir, _)| if dir.is_empty() { "/" } else { dir });
    let check_step = check.map_or(String::new(), |check| {
        format!(
            "if ! out=$({check} \"$t\" 2>&1 >/dev/null); then echo @@invalid; printf '%s\\n' \"$out\" >&2; exit 4; fi\n"
        )
    });
    format!(
        r#"set -e
umask 077
p={path}; d={dir}
[ -d "$d" ] || mkdir -p "$d"
t=$(mktemp "$d/.clockprov.XXXXXX")
trap 'rm -f "$t"' EXIT
printf '%s' '{content}' | base64 -d > "$t"
chown {owner}:{group} "$t"
chmod {mode:o} "$t"
sync "$t"
{check_step}if [ -e "$p" ]; then
  s=$(date -u +%Y%m%dT%H%M%SZ); b="$p.clockprov-$s.bak"; n=1
  while [ -e "$b" ]; do b="$p.clockprov-$s-$n.bak"; n=$((n+1)); done
  ln "$p" "$b"; echo "@@backup $b"
fi
mv -f "$t" "$p"
trap - EXIT
sync "$d"
echo @@written
"#,
        path = quote(path),
        dir = quote(dir),
        content = BASE64.encode(file.after.content.as_bytes()),
        owner = quote(&file.after.owner),
        group = quote(&file.after.group),
        mode = file.after.mode,
    )
}

/// Script that puts the backups back (or removes files that did not exist before).
#[must_use]
pub fn restore_script(restores: &[(String, Option<String>)]) -> String {
    let mut script = String::new();
    for (path, backup) in restores {
        match backup {
            Some(backup) => {
                let _ = writeln!(script, "mv -f {} {}", quote(backup), quote(path));
            }
            None => {
                let _ = writeln!(script, "rm -f {}", quote(path));
            }
        }
    }
    script
}

/// Carry out `plan` on `host`, every step as root (through sudo when the login is not root).
/// A plan with no changes runs nothing.
///
/// # Errors
/// Any step fails; the error says which, and what was restored.
pub async fn apply_host(
    session: &Privileged<'_>,
    plan: &HostPlan,
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport::default();
    if !plan.has_changes() {
        return Ok(report);
    }
    let drift = drift_script(&plan.files);
    if !drift.is_empty() {
        let out = session.run(&drift).await?;
        if let Some(path) = out
            .stdout_text()
            .lines()
            .find_map(|l| l.strip_prefix("@@drift "))
        {
            return Err(ApplyError::Drifted {
                path: path.trim_matches('\'').to_owned(),
            });
        }
    }
    if let Some(install) = &plan.package {
        let command = format!(
            "DEBIAN_FRONTEND=noninteractive; export DEBIAN_FRONTEND; \
             opts='-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold'; \
             apt-get install $opts {pkg} || {{ apt-get update -q && apt-get install $opts {pkg}; }}",
            pkg = quote(&install.package)
        );
        let out = session.run_with_timeout(&command, INSTALL_TIMEOUT).await?;
        check_step(&format!("apt-get install {}", install.package), &out)?;
        report.done.push(match &install.removes {
            Some(removed) => format!("installed {} (removed {removed})", install.package),
            None => format!("installed {}", install.package),
        });
    }
    let mut restores = Vec::new();
    for file in &plan.files {
        match file.action {
            FileAction::Unchanged => {}
            FileAction::FixMetadata => {
                let path = quote(&file.path);
                let command = format!(
                    "chown {}:{} {path} && chmod {:o} {path}",
                    quote(&file.after.owner),
                    quote(&file.after.group),
                    file.after.mode
                );
                check_step(
                    &format!("chmod {}", file.path),
                    &session.run(&command).await?,
                )?;
                report.done.push(format!(
                    "set mode {:o} owner root on {}",
                    file.after.mode, file.path
                ));
            }
            FileAction::Create | FileAction::Update => {
                let check = config_check(plan);
                let out = session.run(&write_script(file, check)).await?;
                let stdout = out.stdout_text();
                if stdout.lines().any(|l| l == "@@invalid") {
                    return Err(ApplyError::Invalid {
                        path: file.path.clone(),
                        check: format!("{} FILE", check.unwrap_or_default()),
                        output: out.stderr_text(),
                    });
                }
                check_step(&format!("writing {}", file.path), &out)?;
                let backup = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("@@backup "))
                    .map(str::to_owned);
                if let Some(backup) = &backup {
                    report.backups.push(backup.clone());
                }
                report.done.push(format!("wrote {}", file.path));
                restores.push((file.path.clone(), backup));
            }
        }
    }
    let unit = quote(&plan.unit.unit);
    if plan.unit.enable {
        check_step(
            &format!("systemctl enable {}", plan.unit.unit),
            &session.run(&format!("systemctl enable {unit}")).await?,
        )?;
        report.done.push(format!("enabled {}", plan.unit.unit));
    }
    if plan.unit.restart || plan.unit.start {
        let verb = if plan.unit.restart {
            "restart"
        } else {
            "start"
        };
        let out = session.run(&format!("systemctl {verb} {unit}")).await?;
        let state = active_state(session, &unit).await?;
        if !out.success() || state != "active" {
            return Err(roll_back(session, plan, &unit, &restores, state, &mut report).await);
        }
        report.done.push(format!("{verb}ed {}", plan.unit.unit));
    }
    Ok(report)
}

/// `systemctl is-active`, waiting out a unit that is still activating.
async fn active_state(session: &Privileged<'_>, unit: &str) -> Result<String, BecomeError> {
    let command = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do s=$(systemctl is-active {unit} 2>/dev/null); \
         case \"$s\" in activating|reloading|deactivating) sleep 0.5;; *) break;; esac; done; echo \"$s\""
    );
    Ok(session.run(&command).await?.stdout_text().trim().to_owned())
}

async fn roll_back(
    session: &Privileged<'_>,
    plan: &HostPlan,
    unit: &str,
    restores: &[(String, Option<String>)],
    state: String,
    report: &mut ApplyReport,
) -> ApplyError {
    let status = session
        .run(&format!(
            "systemctl status --no-pager -n 5 {unit} 2>&1 | tail -n 8"
        ))
        .await
        .map(|o| o.stdout_text().trim().replace('\n', "\n    "))
        .unwrap_or_default();
    let outcome = if restores.is_empty() {
        String::new()
    } else {
        let script = format!("{}systemctl restart {unit}", restore_script(restores));
        match session.run(&script).await {
            Ok(out) if out.success() => {
                report.rolled_back = true;
                " and restarted it".to_owned()
            }
            Ok(out) => format!(" but the restart failed too: {}", out.stderr_text()),
            Err(e) => format!(" but could not restart: {e}"),
        }
    };
    ApplyError::RolledBack {
        unit: plan.unit.unit.clone(),
        state,
        restored: outcome,
        status,
    }
}

fn check_step(step: &str, out: &CommandOutput) -> Result<(), ApplyError> {
    if out.success() {
        return Ok(());
    }
    Err(ApplyError::Step {
        step: step.to_owned(),
        status: out
            .status
            .map_or_else(|| "killed".to_owned(), |s| s.to_string()),
        stderr: out.stderr_text(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::facts::FileFacts;
    use crate::render::DesiredFile;

    fn change(before: Option<&str>, after: &str) -> FileChange {
        FileChange {
            path: "/etc/x y/it's.conf".into(),
            action: if before.is_some() {
                FileAction::Update
            } else {
                FileAction::Create
            },
            before: before.map(|b| FileFacts {
                content: b.as_bytes().to_vec(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
            }),
            after: DesiredFile {
                path: "/etc/x y/it's.conf".into(),
                content: after.into(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
            },
            diff: String::new(),
        }
    }

    fn sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    /// The write script run for real against a temporary directory (as the current user).
    #[test]
    fn write_script_replaces_atomically_and_keeps_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chrony.conf");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = change(Some("old\n"), "new $(x) 'q'\n");
        file.path = path.display().to_string();
        let whoami = String::from_utf8(sh("id -un").stdout)
            .unwrap()
            .trim()
            .to_owned();
        let group = String::from_utf8(sh("id -gn").stdout)
            .unwrap()
            .trim()
            .to_owned();
        file.after.owner = whoami;
        file.after.group = group;
        let out = sh(&write_script(&file, None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new $(x) 'q'\n");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let backup = stdout
            .lines()
            .find_map(|l| l.strip_prefix("@@backup "))
            .unwrap();
        assert_eq!(std::fs::read_to_string(backup).unwrap(), "old\n");
        // Nothing else is left behind: no temporary file.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_failing_check_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chrony.conf");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = change(Some("old\n"), "bad\n");
        file.path = path.display().to_string();
        file.after.owner = String::from_utf8(sh("id -un").stdout)
            .unwrap()
            .trim()
            .to_owned();
        file.after.group = String::from_utf8(sh("id -gn").stdout)
            .unwrap()
            .trim()
            .to_owned();
        let out = sh(&write_script(&file, Some("grep -q good")));
        assert_eq!(out.status.code(), Some(4));
        assert!(String::from_utf8_lossy(&out.stdout).contains("@@invalid"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn drift_script_detects_edits_and_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut same = change(Some("a\n"), "b\n");
        same.path = path.display().to_string();
        std::fs::write(&path, "a\n").unwrap();
        assert_eq!(sh(&drift_script(std::slice::from_ref(&same))).stdout, b"");
        std::fs::write(&path, "edited\n").unwrap();
        assert!(
            String::from_utf8(sh(&drift_script(std::slice::from_ref(&same))).stdout)
                .unwrap()
                .starts_with("@@drift ")
        );
        let mut created = change(None, "b\n");
        created.path = path.display().to_string();
        assert!(
            String::from_utf8(sh(&drift_script(&[created])).stdout)
                .unwrap()
                .starts_with("@@drift ")
        );
    }
}
