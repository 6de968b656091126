//! The remote half of `check`: a host's clock offset from the controller's, measured over its
//! connection, and its time daemon's own view of its synchronization.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::{self, ClockSample, DaemonView, Offset, ReadingError};
use crate::daemon::{Daemon, Family};
use crate::host::facts::{OsRelease, parse_os_release};
use crate::host::records::{RecordError, Records};
use crate::host::script::RemoteScript;
use crate::shell::ShellWord;
use crate::ssh::transport::{Session, SshError};

/// Reads the clock with no process started per reading: bash's `$EPOCHREALTIME`, one line per
/// line of input.
const CLOCK_READER: &str = r#"LC_ALL=C exec bash -c 'while IFS= read -r n; do printf "%s %s\n" "$n" "$EPOCHREALTIME"; done'"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Why a host's clock could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Reading(#[from] ReadingError),
}

/// Measure the host's clock offset from the controller's.
///
/// # Errors
/// The reader cannot be started, or answers something that is not a finite time (`NaN`,
/// `inf`, text): an error for this host, never a reading.
pub async fn measure_offset(session: &Session, samples: usize) -> Result<Offset, MeasureError> {
    let mut conversation = session.open_conversation(CLOCK_READER).await?;
    let mut readings = Vec::with_capacity(samples);
    for request in 0..samples.max(1) {
        let before = now();
        // Each request is numbered and its reply must carry the number: a reply printed early
        // (or twice) by the host would otherwise be timed against the wrong request.
        conversation.send_line(&request.to_string()).await?;
        let Some(line) = conversation.read_line().await? else {
            break;
        };
        let after = now();
        let answer = clock::reply_to(request, &line);
        let remote = match answer.and_then(clock::parse_clock_line) {
            Ok(remote) => remote,
            Err(e) => {
                conversation.close().await;
                return Err(e.into());
            }
        };
        readings.push(ClockSample {
            before,
            remote,
            after,
        });
    }
    conversation.close().await;
    clock::best_offset(&readings).ok_or(MeasureError::Reading(ReadingError::NoReading))
}

/// The script that reads a daemon's own state (`readings.sh`): read-only, an inactive daemon
/// is never asked anything.
#[must_use]
pub fn daemon_state_script(daemon: Daemon, family: Family) -> RemoteScript {
    // Both words are our own constants: never refused.
    let word = |text: &str| ShellWord::new(text).unwrap_or_else(|_| ShellWord::number(0));
    RemoteScript::new(include_str!("readings.sh"))
        .arg(word(daemon.unit_on(family)))
        .arg(word(daemon.short_name()))
}

/// The script that prints the host's os-release (`os-release.sh`): read-only.
#[must_use]
pub fn os_release_script() -> RemoteScript {
    RemoteScript::new(include_str!("os-release.sh"))
}

/// Parse what [`os_release_script`] printed.
///
/// # Errors
/// The output is not the script's records (cut short, garbage, an unknown record).
pub fn parse_os_release_records(output: &[u8]) -> Result<OsRelease, RecordError> {
    let mut text = String::new();
    let mut records = Records::new(output);
    while let Some(record) = records.next_record()? {
        match record.kind {
            "osl" => {
                text.push_str(&record.text());
                text.push('\n');
            }
            _ => return Err(record.unknown()),
        }
    }
    Ok(parse_os_release(&text))
}

/// Parse what [`daemon_state_script`] printed: the unit state (`unknown` when systemctl said
/// nothing) and the daemon's view (the default, unsynchronized one when it was not asked).
///
/// # Errors
/// The output is not the script's records: cut short, garbage, an unknown record, no `@@unit`.
pub fn parse_daemon_state(
    daemon: Daemon,
    output: &[u8],
) -> Result<(String, DaemonView), RecordError> {
    let mut records = Records::new(output);
    let mut unit_state = None;
    let mut sections: Vec<(&str, String)> = Vec::new();
    while let Some(record) = records.next_record()? {
        match record.kind {
            "unit" => unit_state = Some(record.text().trim().to_owned()),
            "show-timesync" | "show" | "timesync-status" | "tracking" => {
                let mut text = String::new();
                for line in records.section() {
                    text.push_str(&String::from_utf8_lossy(line));
                    text.push('\n');
                }
                sections.push((record.kind, text));
            }
            _ => return Err(record.unknown()),
        }
    }
    let unit_state = match unit_state {
        None => {
            return Err(RecordError::Bad {
                kind: "unit".into(),
                why: "missing".into(),
                line: String::new(),
            });
        }
        Some(state) if state.is_empty() => "unknown".to_owned(),
        Some(state) => state,
    };
    let section = |name: &str| {
        sections
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, t)| t.as_str())
    };
    let view = match daemon {
        Daemon::Timesyncd => clock::timesyncd_view(
            section("show-timesync"),
            section("show"),
            section("timesync-status"),
        ),
        Daemon::Chrony => clock::chrony_view(section("tracking")),
    };
    Ok((unit_state, view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_state_sections() {
        let output = b"@@unit active\n@@tracking\nReference ID    : 7F7F0101 ()\nStratum         : 10\nLeap status     : Normal\n@@end\n";
        let (state, view) = parse_daemon_state(Daemon::Chrony, output).unwrap();
        assert_eq!(state, "active");
        assert!(view.synchronized);
        assert_eq!(view.stratum, Some(10));
        let output = b"@@unit active\n@@show-timesync\nServerName=\n@@show\nNTPSynchronized=no\n@@timesync-status\n@@end\n";
        let (state, view) = parse_daemon_state(Daemon::Timesyncd, output).unwrap();
        assert_eq!(state, "active");
        assert!(!view.synchronized);
        assert_eq!(view.server, None);
    }

    #[test]
    fn output_that_is_not_the_scripts_is_an_error() {
        for bad in [
            &b"@@unit active\n@@tracking\nStratum : 3\n"[..],
            b"@@tracking\n@@end\n",
            b"@@unit active\n@@surprise\n@@end\n",
            b"garbage\n@@end\n",
            b"@@unit active\n@@end\nmore\n",
        ] {
            assert!(
                parse_daemon_state(Daemon::Chrony, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The script as a host runs it, with stand-ins for systemctl, timedatectl and chronyc
    /// on PATH that record every call: an inactive daemon is never asked anything.
    #[test]
    fn an_inactive_daemon_is_never_asked() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        for (tool, output) in [
            ("systemctl", "echo \"$STATE\""),
            ("timedatectl", "echo NTPSynchronized=yes"),
            ("chronyc", "echo 'Leap status     : Normal'"),
        ] {
            let path = dir.path().join(tool);
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho \"{tool} $*\" >>\"$LOG\"\n{output}\n"),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let run = |daemon: Daemon, state: &str| {
            let _ = std::fs::remove_file(&log);
            let path = format!("{}:/usr/bin:/bin", dir.path().display());
            let env = [
                ("PATH", path.as_str()),
                ("LOG", log.to_str().unwrap()),
                ("STATE", state),
            ];
            let stdout = daemon_state_script(daemon, Family::Debian).run_here(&env, "");
            let calls = std::fs::read_to_string(&log).unwrap_or_default();
            (parse_daemon_state(daemon, &stdout).unwrap(), calls)
        };
        for daemon in Daemon::ALL {
            let ((state, view), calls) = run(daemon, "inactive");
            assert_eq!(state, "inactive");
            assert!(!view.synchronized);
            assert_eq!(calls, format!("systemctl is-active {}\n", daemon.unit()));
            let ((state, _), calls) = run(daemon, "active");
            assert_eq!(state, "active");
            assert!(calls.lines().count() > 1, "{calls}");
        }
        let ((state, _), _) = run(Daemon::Chrony, "");
        assert_eq!(state, "unknown");
    }
}
