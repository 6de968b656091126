//! `become: sudo`: run a host's privileged scripts as root through sudo when the login is not
//! root, speaking sudo's password dialogue safely.
//!
//! The command sent is
//!
//! ```text
//! LC_ALL=C /usr/bin/sudo -S -p PROMPT -- /bin/sh -c 'echo READY; exec /bin/sh -s'
//! ```
//!
//! sudo is named by its absolute path (where Debian and Ubuntu install it): a `sudo` found
//! through the login's `PATH` could be anything the login can write, and it would be handed the
//! password.
//!
//! where PROMPT and READY are random markers made for each run. Then:
//! - PROMPT on stderr: sudo is reading a password from stdin, so (and only then) the password
//!   line is sent. If sudo does not ask (`NOPASSWD`, cached credentials) nothing is sent: a
//!   password fed blindly would be read by the shell as a command.
//! - PROMPT a second time: the password was wrong; the dialogue is cut off there, so sudo's
//!   lockout counter sees one failure, not three.
//! - READY on stdout: the shell runs as root; the script goes to stdin, then EOF. The script is
//!   one `{ ...; } </dev/null; exit` group ([`crate::host::script::group`]): the shell reads it
//!   whole before running it, with stdin from /dev/null, so no command in the script can swallow
//!   the script's own text. No `$(cat)`: the root shell starts no process of its own.
//! - The channel closes before READY: sudo refused; its message says why.
//!
//! The password is never on a command line (the command above holds only the markers) nor in a
//! log line. Everything sudo prints on stderr before READY (e.g. `sudo: unable to resolve host
//! X`) is kept out of the script's output, which the facts and apply parsers read.

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::host::script::{RemoteScript, group};
use crate::shell::ShellWord;
use crate::ssh::secret::{BECOME_PASSWORD_ENV, BecomePassword};
use crate::ssh::transport::{CommandOutput, Process, ProcessEvent, Session, SshError};

#[derive(Debug, thiserror::Error)]
pub enum BecomeError {
    #[error(
        "sudo on {host} requires a password: set {BECOME_PASSWORD_ENV} or --become-password-file"
    )]
    PasswordRequired { host: String },
    #[error("sudo: wrong password for {user} on {host} (the password from {from})")]
    WrongPassword {
        user: String,
        host: String,
        from: String,
    },
    #[error("sudo denied: {user} may not run commands as root on {host} ({message})")]
    Denied {
        user: String,
        host: String,
        message: String,
    },
    #[error("sudo is not installed on {host}, and become: sudo needs it")]
    NotInstalled { host: String },
    #[error("sudo on {host} failed (exit {status}): {message}")]
    Failed {
        host: String,
        status: String,
        message: String,
    },
    #[error("sudo on {host} did not start the command within {}s: {message}", .after.as_secs_f64())]
    Timeout {
        host: String,
        after: Duration,
        message: String,
    },
    #[error(transparent)]
    Ssh(#[from] SshError),
}

/// How a host's privileged scripts run.
#[derive(Debug, Clone)]
pub enum Privilege {
    /// The login is root (or no `become`): run scripts as they are.
    Direct,
    /// Through sudo, as this login user.
    Sudo {
        user: String,
        password: Arc<BecomePassword>,
    },
}

/// A host's connection together with the way to run scripts as root on it.
pub struct Privileged<'a> {
    pub session: &'a Session,
    pub privilege: &'a Privilege,
}

impl Privileged<'_> {
    /// Run the shell text `script` as root within the session's command timeout. It goes on
    /// stdin like a [`RemoteScript`] (in the same group), so its size is not limited either.
    ///
    /// # Errors
    /// The connection fails, the script times out, or sudo refuses.
    pub async fn run(&self, script: &str) -> Result<CommandOutput, BecomeError> {
        self.run_with_timeout(script, self.session.command_timeout())
            .await
    }

    /// As [`Privileged::run`], with an explicit timeout for the script itself (sudo's dialogue
    /// keeps the session's command timeout; the wait for a password typed on the terminal is not
    /// counted).
    ///
    /// # Errors
    /// As for [`Privileged::run`].
    pub async fn run_with_timeout(
        &self,
        script: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, BecomeError> {
        self.send(&group(script), timeout).await
    }

    /// Run `script` as root within the session's command timeout, its text on stdin (see
    /// [`RemoteScript`]).
    ///
    /// # Errors
    /// The connection fails, the script times out, or sudo refuses.
    pub async fn run_script(&self, script: &RemoteScript) -> Result<CommandOutput, BecomeError> {
        self.run_script_with_timeout(script, self.session.command_timeout())
            .await
    }

    /// As [`Privileged::run_script`], with an explicit timeout for the script itself.
    ///
    /// # Errors
    /// As for [`Privileged::run_script`].
    pub async fn run_script_with_timeout(
        &self,
        script: &RemoteScript,
        timeout: Duration,
    ) -> Result<CommandOutput, BecomeError> {
        self.send(&script.text(), timeout).await
    }

    /// Run `script`, one that ends by printing the line `@@held MARKER` and then, given the
    /// line [`NEXT_SCRIPT`] on the channel's stdin, runs what follows there as a script in its
    /// place (the facts script does). With `keep` and a root login its shell is then kept
    /// (see [`Session::keep`]) and runs the connection's next script: apply's transaction, sent
    /// without a second channel or login shell. Through sudo (a dialogue per script) and
    /// without `keep`, its stdin is closed at once and the script just ends.
    ///
    /// # Errors
    /// As for [`Privileged::run_script`].
    pub async fn run_script_keeping_shell(
        &self,
        script: &RemoteScript,
        marker: &str,
        keep: bool,
    ) -> Result<CommandOutput, BecomeError> {
        // A shell kept from an earlier read is not the one to give the next script to.
        if let Some(earlier) = self.session.take_kept() {
            earlier.close().await;
        }
        let text = script.text_keeping_stdin();
        let timeout = self.session.command_timeout();
        match self.privilege {
            Privilege::Direct if keep => {
                let held = format!("@@held {marker}\n");
                let (output, process) = self
                    .session
                    .run_until_marker(
                        RemoteScript::COMMAND,
                        text.as_bytes(),
                        held.as_bytes(),
                        timeout,
                    )
                    .await?;
                if let Some(process) = process {
                    self.session.keep(process).await;
                }
                Ok(output)
            }
            _ => self.send(&text, timeout).await,
        }
    }

    /// Run `text` (a whole [`group`]) on stdin of a root shell that reads it: the shell kept
    /// for this connection's next script if there is one, else a new one.
    async fn send(&self, text: &str, timeout: Duration) -> Result<CommandOutput, BecomeError> {
        match self.privilege {
            Privilege::Direct => {
                if let Some(shell) = self.session.take_kept() {
                    let mut input = Vec::with_capacity(NEXT_SCRIPT.len() + 1 + text.len());
                    input.extend_from_slice(NEXT_SCRIPT.as_bytes());
                    input.push(b'\n');
                    input.extend_from_slice(text.as_bytes());
                    let deadline = tokio::time::Instant::now() + timeout;
                    let output = self
                        .session
                        .finish_with_input(shell, &input, deadline, timeout)
                        .await?;
                    if output.stdout.is_empty() && output.status.is_none() {
                        return Err(SshError::KeptShellGone {
                            host: self.session.name().to_owned(),
                        }
                        .into());
                    }
                    return Ok(output);
                }
                Ok(self
                    .session
                    .run_with_input(RemoteScript::COMMAND, text.as_bytes(), timeout)
                    .await?)
            }
            // sudo's root shell is `sh -s` too, started once sudo has let us in.
            Privilege::Sudo { user, password } => {
                sudo(self.session, user, password, text, timeout).await
            }
        }
    }
}

/// The line that tells a kept shell (see [`Privileged::run_script_keeping_shell`]) that a
/// script follows for it to run.
pub const NEXT_SCRIPT: &str = "@@next";

/// sudo, where Debian and Ubuntu install it.
pub const SUDO: &str = "/usr/bin/sudo";

/// The random markers of one sudo dialogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub prompt: String,
    pub ready: String,
}

impl Markers {
    /// Fresh markers: unguessable, so that nothing else a host prints can pass for them.
    ///
    /// # Panics
    /// If the system's random number generator fails.
    #[must_use]
    pub fn random() -> Markers {
        Markers {
            prompt: format!("clockprov-sudo-prompt-{}", crate::shell::random_hex(12)),
            ready: format!("clockprov-sudo-ready-{}", crate::shell::random_hex(12)),
        }
    }

    /// The command line that starts the dialogue (markers only: no secret).
    #[must_use]
    pub fn command(&self) -> String {
        let shell = format!("echo {}; exec /bin/sh -s", self.ready);
        // C locale: sudo's and PAM's messages are then the English ones matched here (a
        // translated PAM prompt would also not be replaced by our marker).
        format!(
            "LC_ALL=C {SUDO} -S -p {} -- /bin/sh -c {}",
            word(&self.prompt),
            word(&shell)
        )
    }
}

/// Our own marker text as a shell word (hex and fixed text: never a NUL, so never refused).
fn word(text: &str) -> String {
    ShellWord::new(text)
        .map(|w| w.to_string())
        .unwrap_or_default()
}

/// What to do after sudo said something.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet: read on.
    Wait,
    /// sudo asks for the password.
    SendPassword,
    /// sudo asks again after the password was sent: it was wrong.
    WrongPassword,
    /// The root shell is running; these bytes of its stdout came after the marker.
    Ready(Vec<u8>),
}

/// sudo's side of the dialogue, fed with what the command prints (pure, so it is unit-tested).
#[derive(Debug)]
pub struct Dialogue {
    markers: Markers,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    scanned: usize,
    /// Where to look for the ready marker in `stdout` next (each byte is looked at about once,
    /// however the host splits its output).
    stdout_scanned: usize,
    password_sent: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Dialogue {
    #[must_use]
    pub fn new(markers: Markers) -> Dialogue {
        Dialogue {
            markers,
            stdout: Vec::new(),
            stderr: Vec::new(),
            scanned: 0,
            stdout_scanned: 0,
            password_sent: false,
        }
    }

    /// sudo wrote `data` on stderr (prompts, "Sorry, try again.", chatter).
    pub fn on_stderr(&mut self, data: &[u8]) -> Step {
        self.stderr.extend_from_slice(data);
        let prompt = self.markers.prompt.as_bytes();
        let Some(at) = find(&self.stderr[self.scanned..], prompt).map(|i| i + self.scanned) else {
            // A prompt may be split across two reads: rescan the part that could hold its start.
            self.scanned = self.stderr.len().saturating_sub(prompt.len() - 1);
            return Step::Wait;
        };
        // The marker is ours, not sudo's news: keep it out of messages.
        self.stderr.drain(at..at + prompt.len());
        self.scanned = at;
        if self.password_sent {
            Step::WrongPassword
        } else {
            Step::SendPassword
        }
    }

    /// The command wrote `data` on stdout.
    pub fn on_stdout(&mut self, data: &[u8]) -> Step {
        self.stdout.extend_from_slice(data);
        let ready = format!("{}\n", self.markers.ready);
        if let Some(at) = find(&self.stdout[self.stdout_scanned..], ready.as_bytes()) {
            let rest = self.stdout_scanned + at + ready.len();
            return Step::Ready(self.stdout.split_off(rest));
        }
        self.stdout_scanned = self.stdout.len().saturating_sub(ready.len() - 1);
        Step::Wait
    }

    /// The password has been sent: another prompt now means it was wrong.
    pub fn password_sent(&mut self) {
        self.password_sent = true;
    }

    /// What sudo said on stderr, without the prompt markers.
    #[must_use]
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

/// Why sudo ended before starting the shell, judged from what it said.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    PasswordRequired,
    WrongPassword,
    Denied(String),
    NotInstalled,
    Other,
}

/// Classify sudo's last words (its messages are not translated when `LC_ALL` is C, and are
/// stable across sudo 1.8 and 1.9).
#[must_use]
pub fn refusal(stderr: &str, status: Option<u32>) -> Refusal {
    let denied = [
        "is not in the sudoers file",
        "is not allowed to execute",
        "is not allowed to run sudo",
        "may not run sudo",
    ];
    if let Some(line) = stderr
        .lines()
        .find(|l| denied.iter().any(|d| l.contains(d)))
    {
        return Refusal::Denied(elide_command(line.trim()));
    }
    if stderr.contains("incorrect password attempt") {
        return Refusal::WrongPassword;
    }
    if stderr.contains("a password is required") || stderr.contains("no password was provided") {
        return Refusal::PasswordRequired;
    }
    if status == Some(127) && stderr.contains("sudo") && stderr.contains("not found") {
        return Refusal::NotInstalled;
    }
    Refusal::Other
}

/// sudo quotes the whole command it refused, markers and all: show just the program.
fn elide_command(line: &str) -> String {
    let Some(start) = line.find(" execute '") else {
        return line.to_owned();
    };
    let start = start + " execute '".len();
    match line[start..].rfind("' as ") {
        Some(end) => {
            let program = line[start..start + end]
                .split(' ')
                .next()
                .unwrap_or_default();
            format!("{}{program} …{}", &line[..start], &line[start + end..])
        }
        None => line.to_owned(),
    }
}

async fn next_event(
    process: &mut Process,
    host: &str,
    after: Duration,
    dialogue: &Dialogue,
) -> Result<ProcessEvent, BecomeError> {
    Ok(tokio::time::timeout(after, process.next())
        .await
        .map_err(|_| BecomeError::Timeout {
            host: host.to_owned(),
            after,
            message: dialogue.stderr_text(),
        })??)
}

async fn sudo(
    session: &Session,
    user: &str,
    password: &BecomePassword,
    script: &str,
    timeout: Duration,
) -> Result<CommandOutput, BecomeError> {
    let host = session.name().to_owned();
    let markers = Markers::random();
    let mut process = session.start(&markers.command()).await?;
    let mut dialogue = Dialogue::new(markers);
    let mut status = None;
    let after = session.command_timeout();
    let rest = loop {
        let event = match next_event(&mut process, &host, after, &dialogue).await {
            Ok(event) => event,
            Err(e) => {
                process.close().await;
                return Err(e);
            }
        };
        let step = match event {
            ProcessEvent::Stdout(data) => dialogue.on_stdout(&data),
            ProcessEvent::Stderr(data) => dialogue.on_stderr(&data),
            ProcessEvent::Exit(code) => {
                status = Some(code);
                Step::Wait
            }
            ProcessEvent::Closed => {
                return Err(refused(&host, user, password, &dialogue, status));
            }
        };
        match step {
            Step::Wait => {}
            Step::SendPassword => {
                let Some(secret) = password.get(user).await else {
                    process.close().await;
                    return Err(BecomeError::PasswordRequired { host });
                };
                let mut line = Zeroizing::new(Vec::with_capacity(secret.expose().len() + 1));
                line.extend_from_slice(secret.expose().as_bytes());
                line.push(b'\n');
                process.send(&line).await?;
                dialogue.password_sent();
            }
            Step::WrongPassword => {
                process.close().await;
                return Err(BecomeError::WrongPassword {
                    user: user.to_owned(),
                    host,
                    from: password.origin_name().to_owned(),
                });
            }
            Step::Ready(rest) => break rest,
        }
    };
    let chatter = dialogue.stderr_text();
    if !chatter.is_empty() {
        tracing::debug!(host = %host, "sudo said: {chatter}");
    }
    let mut output = CommandOutput {
        status: None,
        stdout: rest,
        stderr: Vec::new(),
    };
    // Sending counts too: a host that stops reading must not hold the run forever.
    let work = async {
        process.send(script.as_bytes()).await?;
        process.eof().await?;
        loop {
            match process.next().await? {
                ProcessEvent::Stdout(data) => output.stdout.extend_from_slice(&data),
                ProcessEvent::Stderr(data) => output.stderr.extend_from_slice(&data),
                ProcessEvent::Exit(code) => output.status = Some(code),
                ProcessEvent::Closed => return Ok::<(), SshError>(()),
            }
        }
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(SshError::CommandTimeout {
            what: format!("a command on {host} (through sudo)"),
            after: timeout,
        }),
    };
    if let Err(error) = result {
        // Too much output or no answer: nothing more is read from this command.
        process.close().await;
        return Err(error.into());
    }
    Ok(output)
}

fn refused(
    host: &str,
    user: &str,
    password: &BecomePassword,
    dialogue: &Dialogue,
    status: Option<u32>,
) -> BecomeError {
    let message = dialogue.stderr_text();
    match refusal(&message, status) {
        Refusal::PasswordRequired => BecomeError::PasswordRequired {
            host: host.to_owned(),
        },
        Refusal::WrongPassword => BecomeError::WrongPassword {
            user: user.to_owned(),
            host: host.to_owned(),
            from: password.origin_name().to_owned(),
        },
        Refusal::Denied(message) => BecomeError::Denied {
            user: user.to_owned(),
            host: host.to_owned(),
            message,
        },
        Refusal::NotInstalled => BecomeError::NotInstalled {
            host: host.to_owned(),
        },
        Refusal::Other => BecomeError::Failed {
            host: host.to_owned(),
            status: status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers() -> Markers {
        Markers {
            prompt: "PROMPT-1".into(),
            ready: "READY-1".into(),
        }
    }

    #[test]
    fn markers_are_fresh_and_the_command_holds_nothing_else() {
        let (a, b) = (Markers::random(), Markers::random());
        assert_ne!(a, b);
        assert!(a.prompt.len() > 30 && a.ready.len() > 30);
        assert_eq!(
            markers().command(),
            "LC_ALL=C /usr/bin/sudo -S -p 'PROMPT-1' -- /bin/sh -c 'echo READY-1; exec /bin/sh -s'"
        );
    }

    #[test]
    fn no_prompt_means_no_password_is_sent() {
        let mut d = Dialogue::new(markers());
        assert_eq!(
            d.on_stderr(b"sudo: unable to resolve host x: Name or service not known\n"),
            Step::Wait
        );
        assert_eq!(d.on_stdout(b"READY"), Step::Wait);
        assert_eq!(
            d.on_stdout(b"-1\n@@osl ID=debian\n"),
            Step::Ready(b"@@osl ID=debian\n".to_vec())
        );
        assert_eq!(
            d.stderr_text(),
            "sudo: unable to resolve host x: Name or service not known"
        );
    }

    #[test]
    fn a_prompt_split_across_reads_is_seen_once_and_a_second_one_means_wrong() {
        let mut d = Dialogue::new(markers());
        assert_eq!(
            d.on_stderr(b"sudo: unable to resolve host x\nPROM"),
            Step::Wait
        );
        assert_eq!(d.on_stderr(b"PT-1"), Step::SendPassword);
        d.password_sent();
        assert_eq!(d.on_stderr(b"Sorry, try again.\n"), Step::Wait);
        assert_eq!(d.on_stderr(b"PROMPT-1"), Step::WrongPassword);
        assert_eq!(
            d.stderr_text(),
            "sudo: unable to resolve host x\nSorry, try again."
        );
    }

    #[test]
    fn the_ready_marker_must_be_a_whole_line() {
        let mut d = Dialogue::new(markers());
        assert_eq!(d.on_stdout(b"READY-12\n"), Step::Wait);
        assert_eq!(d.on_stdout(b"READY-1\n"), Step::Ready(Vec::new()));
    }

    #[test]
    fn sudo_refusals_are_told_apart() {
        assert_eq!(
            refusal("sudo: a password is required", Some(1)),
            Refusal::PasswordRequired
        );
        assert_eq!(
            refusal(
                "Sorry, try again.\nsudo: no password was provided\nsudo: 1 incorrect password attempt",
                Some(1)
            ),
            Refusal::WrongPassword
        );
        assert_eq!(
            refusal(
                "sudo: unable to resolve host h: Name or service not known\nalice is not in the sudoers file.",
                Some(1)
            ),
            Refusal::Denied("alice is not in the sudoers file.".into())
        );
        assert_eq!(
            refusal(
                "Sorry, user alice is not allowed to execute '/bin/sh -c echo m; s=$(cat) || exit 125; eval \"$s\" </dev/null' as root on h.",
                Some(1)
            ),
            Refusal::Denied(
                "Sorry, user alice is not allowed to execute '/bin/sh …' as root on h.".into()
            )
        );
        assert_eq!(
            refusal("sh: 1: sudo: not found", Some(127)),
            Refusal::NotInstalled
        );
        assert_eq!(
            refusal("sudo: sorry, you must have a tty to run sudo", Some(1)),
            Refusal::Other
        );
    }

    proptest::proptest! {
        /// Whatever a host prints, split however, the dialogue never panics, and the ready
        /// marker is found exactly when it is there as a line.
        #[test]
        fn any_output_in_any_pieces_is_read_without_panic(
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..400,
            with_marker: bool,
        ) {
            let mut d = Dialogue::new(markers());
            let mut out = noise.clone();
            if with_marker {
                out.extend_from_slice(b"READY-1\nafter");
            }
            let cut = cut.min(out.len());
            let _ = d.on_stderr(&noise);
            let first = d.on_stdout(&out[..cut]);
            let second = d.on_stdout(&out[cut..]);
            let found = matches!(first, Step::Ready(_)) || matches!(second, Step::Ready(_));
            let in_noise = noise.windows(8).any(|w| w == b"READY-1\n");
            proptest::prop_assert_eq!(found, with_marker || in_noise);
            let _ = refusal(&String::from_utf8_lossy(&noise), Some(1));
            let _ = d.stderr_text();
        }

        #[test]
        fn sudo_refusals_of_any_text_do_not_panic(text in ".{0,200}") {
            let _ = refusal(&text, Some(1));
            let _ = elide_command(&format!("user is not allowed to execute '{text}' as root"));
            let _ = elide_command(&format!("not allowed to execute '{text}"));
        }
    }

    /// The root shell's half of the protocol, run for real with `sh` standing in for sudo's
    /// child: the script is read whole, and a command in it that reads stdin gets nothing.
    #[test]
    fn the_shell_reads_the_whole_script_before_running_it() {
        use std::io::Write as _;
        let m = markers();
        let shell = format!("echo {}; exec /bin/sh -s", m.ready);
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&shell)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                group("set -e\nread -r x || echo stdin-empty\necho after\nfalse\necho never\n")
                    .as_bytes(),
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        // `set -e` in the script holds: it stopped at `false`.
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "READY-1\nstdin-empty\nafter\n"
        );
    }
}
