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

/// What one host's reading came to: its clock's offset from the controller's, the daemon the
/// controller chose for it, that daemon's unit state (`unknown` when systemctl said nothing) and
/// the daemon's own view.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReading {
    pub offset: Offset,
    pub daemon: Daemon,
    /// The daemon's unit on the host's system.
    pub unit: &'static str,
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

/// Read the host's os-release and daemons' state, then the clock (`samples` readings), in one
/// channel and one round trip for the state: [`reading_script`] answers the state, then each
/// numbered request with the time. `chosen` is the daemon the inventory fixes (`None`: the OS's
/// default); `choose` picks the daemon from the host's os-release.
///
/// # Errors
/// The channel fails, the state is not the script's records, or the clock reader answers
/// something that is not a finite time (`NaN`, `inf`, text): an error for this host, never a
/// reading.
pub async fn read_host(
    session: &Session,
    chosen: Option<Daemon>,
    choose: impl FnOnce(&OsRelease) -> Daemon,
    samples: usize,
) -> Result<HostReading, ReadError> {
    let mut conversation = session
        .open_conversation(READING_COMMAND)
        .await
        .map_err(ReadError::StateSsh)?;
    let result = converse(&mut conversation, chosen, choose, samples).await;
    conversation.close().await;
    result
}

async fn converse(
    conversation: &mut Conversation,
    chosen: Option<Daemon>,
    choose: impl FnOnce(&OsRelease) -> Daemon,
    samples: usize,
) -> Result<HostReading, ReadError> {
    conversation
        .send(reading_script(chosen).text_keeping_stdin().into_bytes())
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
    let state = parse_host_state(&state).map_err(ReadError::State)?;
    let daemon = choose(&state.os);
    if chosen.is_some_and(|c| c != daemon) {
        // The script was asked about `chosen` only.
        return Err(ReadError::State(RecordError::Bad {
            kind: "unit".into(),
            why: format!("{} was not asked about", daemon.short_name()),
            line: String::new(),
        }));
    }
    let family = Family::of(&state.os.id);
    let (unit_state, view) = state.daemon(daemon, family).map_err(ReadError::State)?;
    let offset = measure_offset(conversation, samples).await?;
    Ok(HostReading {
        offset,
        daemon,
        unit: daemon.unit_on(family),
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

/// The `(daemon, unit)` pairs the script asks about: `chosen`'s units on either family, or
/// every daemon's when the OS decides (`None`).
fn candidates(chosen: Option<Daemon>) -> Vec<(Daemon, &'static str)> {
    let daemons = chosen.map_or(Daemon::ALL.to_vec(), |d| vec![d]);
    let mut pairs: Vec<(Daemon, &'static str)> = Vec::new();
    for daemon in daemons {
        for family in [Family::Debian, Family::RedHat] {
            let unit = daemon.unit_on(family);
            if !pairs.iter().any(|(_, u)| *u == unit) {
                pairs.push((daemon, unit));
            }
        }
    }
    pairs
}

/// The script that reads the host's os-release, the state of the daemons it may run (`chosen`,
/// or all when the OS decides), then the clock (`readings.sh`): read-only, an inactive daemon is
/// never asked anything. Run by [`READING_COMMAND`], sent with
/// [`RemoteScript::text_keeping_stdin`].
#[must_use]
pub fn reading_script(chosen: Option<Daemon>) -> RemoteScript {
    // Every word is our own constant: never refused.
    let word = |text: &str| ShellWord::new(text).unwrap_or_else(|_| ShellWord::number(0));
    candidates(chosen).into_iter().fold(
        RemoteScript::new(include_str!("readings.sh")),
        |s, (d, u)| s.arg(word(d.short_name())).arg(word(u)),
    )
}

/// What [`reading_script`] printed up to `@@end`: the host's os-release, each unit's state, and
/// the daemons' own reports (only an active daemon's).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostState {
    pub os: OsRelease,
    /// `(unit, state)`, the state as `systemctl is-active` printed it (empty: nothing).
    units: Vec<(String, String)>,
    /// `(record, text)`: `show-timesync`, `show`, `timesync-status`, `tracking`, `authdata`.
    sections: Vec<(String, String)>,
}

impl HostState {
    /// `daemon`'s unit state on `family` (`unknown` when systemctl said nothing) and its own
    /// view (the default, unsynchronized one unless its unit is active).
    ///
    /// # Errors
    /// The script printed no state for that unit (it was not asked about).
    pub fn daemon(
        &self,
        daemon: Daemon,
        family: Family,
    ) -> Result<(String, DaemonView), RecordError> {
        let unit = daemon.unit_on(family);
        let state = self
            .units
            .iter()
            .find(|(u, _)| u == unit)
            .map(|(_, s)| s.as_str())
            .ok_or_else(|| RecordError::Bad {
                kind: "unit".into(),
                why: format!("no state for {unit}"),
                line: String::new(),
            })?;
        let active = state == "active";
        let section = |name: &str| {
            self.sections
                .iter()
                .find(|(n, _)| active && n == name)
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
        let state = if state.is_empty() { "unknown" } else { state };
        Ok((state.to_owned(), view))
    }
}

/// Parse what [`reading_script`] printed up to `@@end`.
///
/// # Errors
/// The output is not the script's records: cut short, garbage, an unknown record, no `@@unit`.
pub fn parse_host_state(output: &[u8]) -> Result<HostState, RecordError> {
    let mut records = Records::new(output);
    let mut os = String::new();
    let mut state = HostState::default();
    while let Some(record) = records.next_record()? {
        match record.kind {
            "osl" => {
                os.push_str(&record.text());
                os.push('\n');
            }
            "unit" => {
                let text = record.text();
                let (unit, unit_state) = text.split_once(' ').unwrap_or((&text, ""));
                if unit.is_empty() {
                    return Err(record.bad("no unit"));
                }
                state
                    .units
                    .push((unit.to_owned(), unit_state.trim().to_owned()));
            }
            "show-timesync" | "show" | "timesync-status" | "tracking" | "authdata" => {
                let mut text = String::new();
                for line in records.section() {
                    text.push_str(&String::from_utf8_lossy(line));
                    text.push('\n');
                }
                state.sections.push((record.kind.to_owned(), text));
            }
            _ => return Err(record.unknown()),
        }
    }
    if state.units.is_empty() {
        return Err(RecordError::Bad {
            kind: "unit".into(),
            why: "missing".into(),
            line: String::new(),
        });
    }
    state.os = parse_os_release(&os);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OS: &[u8] = b"@@osl ID=ubuntu\n@@osl VERSION_ID=\"20.04\"\n";

    fn state(body: &[u8]) -> HostState {
        parse_host_state(&[OS, body].concat()).unwrap()
    }

    #[test]
    fn daemon_state_sections() {
        let output = b"@@unit chrony.service active\n@@unit chronyd.service inactive\n@@tracking\nReference ID    : 7F7F0101 ()\nStratum         : 10\nLeap status     : Normal\n@@end\n";
        let host = state(output);
        assert_eq!(host.os.id, "ubuntu");
        assert_eq!(host.os.version_id, "20.04");
        let (unit_state, view) = host.daemon(Daemon::Chrony, Family::Debian).unwrap();
        assert_eq!(unit_state, "active");
        assert!(view.synchronized);
        assert_eq!(view.stratum, Some(10));
        // Another family's unit: inactive, so its daemon's report is not its view.
        let (unit_state, view) = host.daemon(Daemon::Chrony, Family::RedHat).unwrap();
        assert_eq!(unit_state, "inactive");
        assert!(!view.synchronized);
        assert!(host.daemon(Daemon::Timesyncd, Family::Debian).is_err());
        let output = b"@@unit systemd-timesyncd.service active\n@@show-timesync\nServerName=\n@@show\nNTPSynchronized=no\n@@timesync-status\n@@end\n";
        let (unit_state, view) = state(output)
            .daemon(Daemon::Timesyncd, Family::Debian)
            .unwrap();
        assert_eq!(unit_state, "active");
        assert!(!view.synchronized);
        assert_eq!(view.server, None);
        let (unit_state, _) = state(b"@@unit systemd-timesyncd.service \n@@end\n")
            .daemon(Daemon::Timesyncd, Family::Debian)
            .unwrap();
        assert_eq!(unit_state, "unknown");
    }

    #[test]
    fn output_that_is_not_the_scripts_is_an_error() {
        for bad in [
            &b"@@unit chrony.service active\n@@tracking\nStratum : 3\n"[..],
            b"@@tracking\n@@end\n",
            b"@@osl ID=debian\n@@end\n",
            b"@@unit  active\n@@end\n",
            b"@@unit chrony.service active\n@@surprise\n@@end\n",
            b"garbage\n@@end\n",
            b"@@unit chrony.service active\n@@end\nmore\n",
        ] {
            assert!(
                parse_host_state(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_script_asks_about_the_chosen_daemon_or_every_one() {
        let args = |chosen| {
            candidates(chosen)
                .into_iter()
                .map(|(d, u)| format!("{} {u}", d.short_name()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            args(Some(Daemon::Chrony)),
            ["chrony chrony.service", "chrony chronyd.service"]
        );
        assert_eq!(
            args(Some(Daemon::Timesyncd)),
            ["timesyncd systemd-timesyncd.service"]
        );
        assert_eq!(
            args(None),
            [
                "chrony chrony.service",
                "chrony chronyd.service",
                "timesyncd systemd-timesyncd.service"
            ]
        );
    }

    /// Stand-ins for systemctl, timedatectl and chronyc that record every call in `calls`.
    fn stand_ins() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        for (tool, output) in [
            // `$STATES`: `UNIT=STATE` words (a unit not named: no state); `none`: no output.
            (
                "systemctl",
                "[ \"$STATES\" = none ] && exit 3; shift; for u; do s=; for kv in $STATES; do [ \"${kv%%=*}\" = \"$u\" ] && s=${kv#*=}; done; echo \"$s\"; done",
            ),
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
        // The system bus the host's timedatectl would talk to: a socket (nothing answers it,
        // the stand-in does). The file stays a socket after the listener is dropped.
        drop(std::os::unix::net::UnixListener::bind(dir.path().join("bus")).unwrap());
        dir
    }

    /// The script as a host runs it ([`READING_COMMAND`], the text, then two clock requests)
    /// with the [`stand_ins`] in `dir` first on PATH: what it reported, and the calls.
    /// `timesyncd`: `up` or `down` (whether timedatectl's `show-timesync` answers), or `nobus`
    /// (the system bus's address names no socket).
    fn run_script(
        dir: &std::path::Path,
        chosen: Option<Daemon>,
        states: &str,
        timesyncd: &str,
    ) -> (HostState, String) {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let log = dir.join("calls");
        let _ = std::fs::remove_file(&log);
        let path = format!("{}:/usr/bin:/bin", dir.display());
        let bus = dir.join(if timesyncd == "nobus" {
            "no-bus"
        } else {
            "bus"
        });
        let bus = format!("unix:path={}", bus.display());
        let env = [
            ("PATH", path.as_str()),
            ("DBUS_SYSTEM_BUS_ADDRESS", bus.as_str()),
            ("LOG", log.to_str().unwrap()),
            ("STATES", states),
            ("TIMESYNCD", timesyncd),
        ];
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
            .write_all(reading_script(chosen).text_keeping_stdin().as_bytes())
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
        let state = parse_host_state(format!("{state}@@end\n").as_bytes()).unwrap();
        // os-release is read by the shell itself, whatever else happens.
        let local_os = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|f| std::fs::read_to_string(f).ok())
            .map(|t| parse_os_release(&t))
            .unwrap_or_default();
        assert_eq!(state.os, local_os, "{text}");
        (state, calls)
    }

    /// The script with stand-ins that record every call: an inactive daemon is never asked
    /// anything.
    #[test]
    fn an_inactive_daemon_is_never_asked() {
        let dir = stand_ins();
        let run = |chosen: Option<Daemon>, states: &str, timesyncd: &str| {
            run_script(dir.path(), chosen, states, timesyncd)
        };
        let all = "chrony.service chronyd.service systemd-timesyncd.service";
        for daemon in Daemon::ALL {
            let units = candidates(Some(daemon))
                .iter()
                .map(|(_, u)| *u)
                .collect::<Vec<_>>()
                .join(" ");
            let states = units.replace(".service", ".service=inactive");
            let (state, calls) = run(Some(daemon), &states, "up");
            let (unit_state, view) = state.daemon(daemon, Family::Debian).unwrap();
            assert_eq!(unit_state, "inactive");
            assert!(!view.synchronized);
            assert_eq!(calls, format!("systemctl is-active {units}\n"));
            let states = format!("{}=active", daemon.unit_on(Family::Debian));
            let (state, calls) = run(Some(daemon), &states, "up");
            let (unit_state, view) = state.daemon(daemon, Family::Debian).unwrap();
            assert_eq!(unit_state, "active");
            assert!(view.synchronized, "{calls}");
            assert!(calls.lines().count() > 1, "{calls}");
            // The OS decides: every daemon's units in one systemctl, only the active one asked.
            let (state, calls) = run(None, &states, "up");
            assert_eq!(state.daemon(daemon, Family::Debian).unwrap().0, "active");
            assert!(
                calls.starts_with(&format!("systemctl is-active {all}\n")),
                "{calls}"
            );
            assert_eq!(
                calls.contains("chronyc"),
                daemon == Daemon::Chrony,
                "{calls}"
            );
            assert_eq!(
                calls.contains("timedatectl"),
                daemon == Daemon::Timesyncd,
                "{calls}"
            );
        }
        // None active: one systemctl and nothing else.
        let (state, calls) = run(None, "", "up");
        assert_eq!(calls, format!("systemctl is-active {all}\n"));
        assert_eq!(
            state.daemon(Daemon::Chrony, Family::RedHat).unwrap().0,
            "unknown"
        );
        // No systemctl output at all: every state unknown.
        let (state, _) = run(None, "none", "up");
        for daemon in Daemon::ALL {
            assert_eq!(state.daemon(daemon, Family::Debian).unwrap().0, "unknown");
        }
        // chronyd (the RHEL family's name) active: chrony is asked once.
        let (state, calls) = run(None, "chronyd.service=active", "up");
        assert_eq!(calls.matches("chronyc -n tracking").count(), 1, "{calls}");
        let (unit_state, view) = state.daemon(Daemon::Chrony, Family::RedHat).unwrap();
        assert_eq!(unit_state, "active");
        assert!(view.synchronized);
        // timesyncd that did not answer is not asked the same properties again.
        let (_, calls) = run(
            Some(Daemon::Timesyncd),
            "systemd-timesyncd.service=active",
            "up",
        );
        assert_eq!(calls.matches("timedatectl").count(), 3, "{calls}");
        let (_, calls) = run(
            Some(Daemon::Timesyncd),
            "systemd-timesyncd.service=active",
            "down",
        );
        assert_eq!(
            calls,
            "systemctl is-active systemd-timesyncd.service\n\
             timedatectl show-timesync --all\ntimedatectl show\n"
        );
        // No system bus: timedatectl could only fail, so it is not run; the host reads as
        // unsynchronized, as when it fails, and the report says why.
        let (state, calls) = run(
            Some(Daemon::Timesyncd),
            "systemd-timesyncd.service=active",
            "nobus",
        );
        assert_eq!(calls, "systemctl is-active systemd-timesyncd.service\n");
        let (unit_state, view) = state.daemon(Daemon::Timesyncd, Family::Debian).unwrap();
        assert_eq!(unit_state, "active");
        assert!(!view.synchronized);
        assert!(
            state.sections[0].1.starts_with("no system bus: ")
                && state.sections[0]
                    .1
                    .ends_with("/no-bus is not a socket; timedatectl not run\n"),
            "{:?}",
            state.sections
        );
    }
}
