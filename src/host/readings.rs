//! The remote half of `check`: a host's clock offset from the controller's, measured over its
//! connection, and its time daemon's own view of its synchronization.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::{self, ClockSample, DaemonView, Offset, ReadingError};
use crate::daemon::{Daemon, Family};
use crate::host::facts::{OsRelease, parse_os_release};
use crate::host::records::{RecordError, Records};
use crate::host::script::RemoteScript;
use crate::shell::ShellWord;
use crate::ssh::transport::{Conversation, Session, SshError};

/// The command that runs [`reading_script`]: bash, whose `$EPOCHREALTIME` reads the clock with
/// no process started per reading (run by name, so a host's own `bash` on its PATH is the one).
pub const READING_COMMAND: &str = "LC_ALL=C exec bash -s";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What one host's reading came to: its clock's offset from the controller's, its daemon's
/// unit state (`unknown` when systemctl said nothing) and the daemon's own view.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReading {
    pub offset: Offset,
    pub unit_state: String,
    pub view: DaemonView,
}

/// Why a host could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The channel failed before the daemon's state was read.
    #[error(transparent)]
    StateSsh(SshError),
    /// The daemon's state is not the script's records.
    #[error(transparent)]
    State(RecordError),
    /// The channel failed while the clock was read.
    #[error(transparent)]
    ClockSsh(SshError),
    /// The clock reader answered something that is not a time.
    #[error(transparent)]
    Clock(ReadingError),
}

/// Read the daemon's state, then the clock (`samples` readings), in one channel and one round
/// trip for the state: [`reading_script`] answers the state, then each numbered request with
/// the time.
///
/// # Errors
/// The channel fails, the state is not the script's records, or the clock reader answers
/// something that is not a finite time (`NaN`, `inf`, text): an error for this host, never a
/// reading.
pub async fn read_host(
    session: &Session,
    daemon: Daemon,
    family: Family,
    samples: usize,
) -> Result<HostReading, ReadError> {
    let mut conversation = session
        .open_conversation(READING_COMMAND)
        .await
        .map_err(ReadError::StateSsh)?;
    let result = converse(&mut conversation, daemon, family, samples).await;
    conversation.close().await;
    result
}

async fn converse(
    conversation: &mut Conversation,
    daemon: Daemon,
    family: Family,
    samples: usize,
) -> Result<HostReading, ReadError> {
    conversation
        .send(
            reading_script(daemon, family)
                .text_keeping_stdin()
                .into_bytes(),
        )
        .await
        .map_err(ReadError::StateSsh)?;
    let state = conversation
        .read_until("@@end")
        .await
        .map_err(ReadError::StateSsh)?;
    if state.is_empty() {
        // Nothing at all: the script never ran (no bash, say).
        return Err(ReadError::Clock(ReadingError::NoReading));
    }
    let (unit_state, view) = parse_daemon_state(daemon, &state).map_err(ReadError::State)?;
    let offset = measure_offset(conversation, samples).await?;
    Ok(HostReading {
        offset,
        unit_state,
        view,
    })
}

/// The clock's offset from the controller's: `samples` numbered requests, the reply with the
/// smallest round trip kept.
async fn measure_offset(
    conversation: &mut Conversation,
    samples: usize,
) -> Result<Offset, ReadError> {
    let mut readings = Vec::with_capacity(samples);
    for request in 0..samples.max(1) {
        let before = now();
        // Each request is numbered and its reply must carry the number: a reply printed early
        // (or twice) by the host would otherwise be timed against the wrong request.
        conversation
            .send_line(&request.to_string())
            .await
            .map_err(ReadError::ClockSsh)?;
        let Some(line) = conversation
            .read_line()
            .await
            .map_err(ReadError::ClockSsh)?
        else {
            break;
        };
        let after = now();
        let remote = clock::reply_to(request, &line)
            .and_then(clock::parse_clock_line)
            .map_err(ReadError::Clock)?;
        readings.push(ClockSample {
            before,
            remote,
            after,
        });
    }
    clock::best_offset(&readings).ok_or(ReadError::Clock(ReadingError::NoReading))
}

/// The script that reads a daemon's own state, then the clock (`readings.sh`): read-only, an
/// inactive daemon is never asked anything. Run by [`READING_COMMAND`], sent with
/// [`RemoteScript::text_keeping_stdin`].
#[must_use]
pub fn reading_script(daemon: Daemon, family: Family) -> RemoteScript {
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

/// Parse the daemon's part of what [`reading_script`] printed (up to `@@end`): the unit state (`unknown` when systemctl said
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
            "show-timesync" | "show" | "timesync-status" | "tracking" | "authdata" => {
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
        Daemon::Chrony => clock::DaemonView {
            authentication: clock::parse_authdata(section("authdata")),
            ..clock::chrony_view(section("tracking"))
        },
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
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        for (tool, output) in [
            ("systemctl", "echo \"$STATE\""),
            (
                "timedatectl",
                "echo NTPSynchronized=yes; [ \"$1 $TIMESYNCD\" != 'show-timesync down' ]",
            ),
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
        let run = |daemon: Daemon, state: &str, timesyncd: &str| {
            let _ = std::fs::remove_file(&log);
            let path = format!("{}:/usr/bin:/bin", dir.path().display());
            let env = [
                ("PATH", path.as_str()),
                ("LOG", log.to_str().unwrap()),
                ("STATE", state),
                ("TIMESYNCD", timesyncd),
            ];
            // As a host runs it: READING_COMMAND, the text, then two clock requests.
            let mut child = Command::new("sh")
                .args(["-c", READING_COMMAND])
                .envs(env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(
                    reading_script(daemon, Family::Debian)
                        .text_keeping_stdin()
                        .as_bytes(),
                )
                .unwrap();
            stdin.write_all(b"0\n1\n").unwrap();
            drop(stdin);
            let stdout = child.wait_with_output().unwrap().stdout;
            let text = String::from_utf8(stdout).unwrap();
            let (state, clock) = text.split_once("@@end\n").unwrap();
            let replies: Vec<&str> = clock.lines().collect();
            assert_eq!(replies.len(), 2, "{text}");
            for (request, reply) in replies.iter().enumerate() {
                let time = crate::clock::reply_to(request, reply).unwrap();
                assert!(
                    crate::clock::parse_clock_line(time).unwrap() > 1e9,
                    "{text}"
                );
            }
            let calls = std::fs::read_to_string(&log).unwrap_or_default();
            let state = format!("{state}@@end\n");
            (parse_daemon_state(daemon, state.as_bytes()).unwrap(), calls)
        };
        for daemon in Daemon::ALL {
            let ((state, view), calls) = run(daemon, "inactive", "up");
            assert_eq!(state, "inactive");
            assert!(!view.synchronized);
            assert_eq!(calls, format!("systemctl is-active {}\n", daemon.unit()));
            let ((state, _), calls) = run(daemon, "active", "up");
            assert_eq!(state, "active");
            assert!(calls.lines().count() > 1, "{calls}");
        }
        let ((state, _), _) = run(Daemon::Chrony, "", "up");
        assert_eq!(state, "unknown");
        // timesyncd that did not answer is not asked the same properties again.
        let ((state, _), calls) = run(Daemon::Timesyncd, "active", "up");
        assert_eq!(state, "active");
        assert_eq!(calls.matches("timedatectl").count(), 3, "{calls}");
        let ((_, _), calls) = run(Daemon::Timesyncd, "active", "down");
        assert_eq!(
            calls,
            "systemctl is-active systemd-timesyncd.service\n\
             timedatectl show-timesync --all\ntimedatectl show\n"
        );
    }
}
