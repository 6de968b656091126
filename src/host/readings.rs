//! The remote half of `check`: a host's clock offset from the controller's, measured over its
//! connection, and its time daemon's own view of its synchronization.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::{self, ClockSample, DaemonView, Offset};
use crate::daemon::Daemon;
use crate::shell::quote;
use crate::ssh::transport::{Session, SshError};

/// Reads the clock with no process started per reading: bash's `$EPOCHREALTIME`, one line per
/// line of input.
const CLOCK_READER: &str =
    r#"LC_ALL=C exec bash -c 'while IFS= read -r _; do printf "%s\n" "$EPOCHREALTIME"; done'"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Measure the host's clock offset from the controller's.
///
/// # Errors
/// The reader cannot be started or answers nonsense.
pub async fn measure_offset(session: &Session, samples: usize) -> Result<Offset, SshError> {
    let mut conversation = session.open_conversation(CLOCK_READER).await?;
    let mut readings = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        let before = now();
        conversation.send_line("").await?;
        let Some(line) = conversation.read_line().await? else {
            break;
        };
        let after = now();
        if let Ok(remote) = line.trim().parse::<f64>() {
            readings.push(ClockSample {
                before,
                remote,
                after,
            });
        }
    }
    conversation.close().await;
    clock::best_offset(&readings).ok_or_else(|| SshError::Protocol(russh::Error::Disconnect))
}

/// The one command that reads a daemon's own state.
#[must_use]
pub fn daemon_state_script(daemon: Daemon) -> String {
    let unit = quote(daemon.unit());
    let view = match daemon {
        Daemon::Timesyncd => {
            "echo @@show-timesync; timedatectl show-timesync --all 2>&1; echo @@show; timedatectl show 2>&1; \
             echo @@timesync-status; timedatectl timesync-status 2>&1"
        }
        Daemon::Chrony => "echo @@tracking; chronyc -n tracking 2>&1",
    };
    format!(
        "printf '@@unit %s\\n' \"$(systemctl is-active {unit} 2>/dev/null)\"\n{view}\necho @@end\n"
    )
}

/// Parse what [`daemon_state_script`] printed: the unit state and the daemon's view.
#[must_use]
pub fn parse_daemon_state(daemon: Daemon, output: &str) -> (String, DaemonView) {
    let mut unit_state = String::new();
    let mut sections: Vec<(&str, String)> = Vec::new();
    for line in output.lines() {
        if let Some(state) = line.strip_prefix("@@unit ") {
            state.trim().clone_into(&mut unit_state);
        } else if let Some(name) = line.strip_prefix("@@") {
            sections.push((name, String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
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
    (unit_state, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_state_sections() {
        let output = "@@unit active\n@@tracking\nReference ID    : 7F7F0101 ()\nStratum         : 10\nLeap status     : Normal\n@@end\n";
        let (state, view) = parse_daemon_state(Daemon::Chrony, output);
        assert_eq!(state, "active");
        assert!(view.synchronized);
        assert_eq!(view.stratum, Some(10));
        let output =
            "@@unit inactive\n@@show-timesync\nServerName=\n@@show\nNTPSynchronized=no\n@@end\n";
        let (state, view) = parse_daemon_state(Daemon::Timesyncd, output);
        assert_eq!(state, "inactive");
        assert!(!view.synchronized);
        assert_eq!(view.server, None);
    }
}
