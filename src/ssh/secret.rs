//! Secrets the operator supplies: the sudo password for `become` and private-key passphrases.
//!
//! A secret never reaches a command line, a log line or a `Debug` print, and its memory is wiped
//! when dropped. Each is taken from an environment variable or a file, or asked at most once on
//! the terminal (without echo) and then shared by every host.

use std::fmt;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::termios::{
    LocalModes, OptionalActions, SpecialCodeIndex, Termios, tcgetattr, tcsetattr,
};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

/// The sudo password, for every host whose login uses `become: sudo`.
pub const BECOME_PASSWORD_ENV: &str = "CLOCKPROV_BECOME_PASSWORD";
/// The passphrase of encrypted private keys.
pub const KEY_PASSPHRASE_ENV: &str = "CLOCKPROV_KEY_PASSPHRASE";

/// A password or passphrase: redacted in `Debug`, wiped on drop.
pub struct Secret(Zeroizing<String>);

impl Secret {
    #[must_use]
    pub fn new(text: String) -> Secret {
        Secret(Zeroizing::new(text))
    }

    /// The secret itself: only to hand it to sudo or to the key decoder.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the become password file {}: {source}", .path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// sudo reads a password up to the first line end: whatever follows would reach the shell
    /// that sudo starts, as a command.
    #[error(
        "{}:{line}: the become password file has more than one line; a sudo password cannot contain a line break (sudo reads one line): keep the password alone on line 1",
        .path.display()
    )]
    FileLines { path: PathBuf, line: usize },
    #[error(
        "{}:1: the become password contains a carriage return; sudo would end the password there: remove it",
        .path.display()
    )]
    FileCarriageReturn { path: PathBuf },
    #[error(
        "${var} contains a line break; a sudo password cannot contain one (sudo reads one line, and the rest would be run as a command): remove it"
    )]
    EnvLineBreak { var: &'static str },
}

enum Origin {
    Given { secret: Arc<Secret>, from: String },
    Terminal,
    Absent,
}

/// Where the sudo password comes from; asked on the terminal only when a host's sudo first wants
/// it (a fleet with `NOPASSWD` rules is never asked), and then once for all hosts.
pub struct BecomePassword {
    origin: Origin,
    asked: OnceCell<Option<Arc<Secret>>>,
}

impl fmt::Debug for BecomePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BecomePassword")
            .field("from", &self.origin_name())
            .finish_non_exhaustive()
    }
}

impl BecomePassword {
    /// No password: a host whose sudo asks for one fails.
    #[must_use]
    pub fn absent() -> BecomePassword {
        BecomePassword::with(Origin::Absent)
    }

    /// A password given by the program; `from` names its origin in messages.
    #[must_use]
    pub fn given(secret: Secret, from: &str) -> BecomePassword {
        BecomePassword::with(Origin::Given {
            secret: Arc::new(secret),
            from: from.to_owned(),
        })
    }

    /// Asked on the terminal when first needed.
    #[must_use]
    pub fn terminal() -> BecomePassword {
        BecomePassword::with(Origin::Terminal)
    }

    fn with(origin: Origin) -> BecomePassword {
        BecomePassword {
            origin,
            asked: OnceCell::new(),
        }
    }

    /// The file if given (its first line), else `$CLOCKPROV_BECOME_PASSWORD`, else the terminal
    /// when there is one, else none.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn resolve(file: Option<&Path>, terminal: bool) -> Result<BecomePassword, SecretError> {
        if let Some(path) = file {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                SecretError::File {
                    path: path.to_owned(),
                    source,
                }
            })?);
            warn_if_readable_by_others(path);
            return Ok(BecomePassword::given(
                Secret::new(password_line(&text, path)?.to_owned()),
                &format!("--become-password-file {}", path.display()),
            ));
        }
        if let Some(secret) = secret_from_env(BECOME_PASSWORD_ENV) {
            if secret.expose().contains(['\n', '\r']) {
                return Err(SecretError::EnvLineBreak {
                    var: BECOME_PASSWORD_ENV,
                });
            }
            return Ok(BecomePassword::given(secret, BECOME_PASSWORD_ENV));
        }
        Ok(if terminal {
            BecomePassword::terminal()
        } else {
            BecomePassword::absent()
        })
    }

    /// Where the password comes from, for messages.
    #[must_use]
    pub fn origin_name(&self) -> &str {
        match &self.origin {
            Origin::Given { from, .. } => from,
            Origin::Terminal => "the terminal",
            Origin::Absent => "nowhere",
        }
    }

    /// The password, asking for it on the terminal the first time (every other host waits for
    /// that one answer). None when there is none to be had.
    pub async fn get(&self, user: &str) -> Option<Arc<Secret>> {
        match &self.origin {
            Origin::Given { secret, .. } => Some(secret.clone()),
            Origin::Absent => None,
            Origin::Terminal => self
                .asked
                .get_or_init(|| async {
                    let prompt =
                        format!("[clockprov] sudo password for {user} (used for every host): ");
                    tokio::task::spawn_blocking(move || ask(&prompt))
                        .await
                        .ok()
                        .flatten()
                        .map(Arc::new)
                })
                .await
                .clone(),
        }
    }
}

/// Passphrases for encrypted private keys: `$CLOCKPROV_KEY_PASSPHRASE` for every key, or asked
/// on the terminal once per key file (each key is decrypted once and shared by all hosts).
pub struct KeyPassphrase {
    given: Option<Secret>,
    terminal: bool,
}

impl KeyPassphrase {
    #[must_use]
    pub fn absent() -> KeyPassphrase {
        KeyPassphrase {
            given: None,
            terminal: false,
        }
    }

    /// `$CLOCKPROV_KEY_PASSPHRASE` if set, else the terminal when there is one.
    #[must_use]
    pub fn resolve(terminal: bool) -> KeyPassphrase {
        KeyPassphrase {
            given: secret_from_env(KEY_PASSPHRASE_ENV),
            terminal,
        }
    }

    /// The same passphrase, but never asked on the terminal.
    #[must_use]
    pub fn without_terminal(&self) -> KeyPassphrase {
        KeyPassphrase {
            given: self
                .given
                .as_ref()
                .map(|s| Secret::new(s.expose().to_owned())),
            terminal: false,
        }
    }

    /// Where passphrases come from, for messages.
    #[must_use]
    pub fn origin_name(&self) -> &'static str {
        if self.given.is_some() {
            KEY_PASSPHRASE_ENV
        } else if self.terminal {
            "the terminal"
        } else {
            "nowhere"
        }
    }

    /// The passphrase for the key in `path`, if there is one to be had.
    #[must_use]
    pub fn for_key(&self, path: &Path) -> Option<Secret> {
        if let Some(given) = &self.given {
            return Some(Secret::new(given.expose().to_owned()));
        }
        if self.terminal {
            return ask(&format!("Enter passphrase for key {}: ", path.display()));
        }
        None
    }
}

/// Every secret a run may need.
#[derive(Debug)]
pub struct Secrets {
    pub become_password: Arc<BecomePassword>,
    pub key_passphrase: KeyPassphrase,
}

impl fmt::Debug for KeyPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPassphrase")
            .field("from", &self.origin_name())
            .finish()
    }
}

impl Secrets {
    /// No secrets at all: encrypted keys and sudo passwords fail with a clear error.
    #[must_use]
    pub fn none() -> Secrets {
        Secrets {
            become_password: Arc::new(BecomePassword::absent()),
            key_passphrase: KeyPassphrase::absent(),
        }
    }

    /// From the environment, the password file, and the terminal when stdin is one (so that a
    /// run from cron or CI never waits for an answer that cannot come).
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn from_environment(become_password_file: Option<&Path>) -> Result<Secrets, SecretError> {
        let terminal = std::io::stdin().is_terminal();
        Ok(Secrets {
            become_password: Arc::new(BecomePassword::resolve(become_password_file, terminal)?),
            key_passphrase: KeyPassphrase::resolve(terminal),
        })
    }
}

/// A secret from the environment, its copies wiped: the `OsString` the environment hands us is
/// turned into the secret's bytes in place, and a lossy conversion's copy is wiped too.
fn secret_from_env(var: &str) -> Option<Secret> {
    let bytes = Zeroizing::new(std::env::var_os(var)?.into_encoded_bytes());
    Some(match std::str::from_utf8(&bytes) {
        Ok(text) => Secret::new(text.to_owned()),
        Err(_) => Secret::new(String::from_utf8_lossy(&bytes).into_owned()),
    })
}

/// The first line without its line ending: a file written by `echo` has a newline that is not
/// part of the password.
fn first_line(text: &str) -> &str {
    let line = text.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line)
}

/// The password in a password file: its first line, alone (empty lines after it are the
/// editor's). A second line, or a carriage return inside the first, is refused: that password
/// could not be what the operator means sudo to get.
fn password_line<'t>(text: &'t str, path: &Path) -> Result<&'t str, SecretError> {
    if let Some((index, _)) = text
        .split('\n')
        .enumerate()
        .skip(1)
        .find(|(_, line)| !line.trim_end_matches('\r').is_empty())
    {
        return Err(SecretError::FileLines {
            path: path.to_owned(),
            line: index + 1,
        });
    }
    let line = first_line(text);
    if line.contains('\r') {
        return Err(SecretError::FileCarriageReturn {
            path: path.to_owned(),
        });
    }
    Ok(line)
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} is readable by other users (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
}

/// Ask on the controlling terminal without echo; None when there is no terminal or no answer.
fn ask(prompt: &str) -> Option<Secret> {
    // The progress display is hidden while the user types, so it cannot draw over the prompt.
    match crate::progress::while_asking(|| read_from_terminal(prompt)) {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!("cannot read a secret from the terminal: {e}");
            None
        }
    }
}

/// Puts the terminal back as it was, also on an early return or a panic.
struct Restore<'a> {
    tty: &'a std::fs::File,
    original: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty, OptionalActions::Now, &self.original);
        // The Enter the user typed was not echoed.
        let _ = (&mut &*self.tty).write_all(b"\n");
    }
}

/// Read one line from `/dev/tty` with echo off, as getpass does, but reading keys one by one
/// (no ISIG) so that Ctrl-C restores the terminal before the run stops: a process killed by
/// SIGINT while echo is off leaves the user's shell blind (rpassword has that flaw).
fn read_from_terminal(prompt: &str) -> std::io::Result<Option<Secret>> {
    const CTRL_C: u8 = 0x03;
    const CTRL_D: u8 = 0x04;
    const CTRL_U: u8 = 0x15;
    const BACKSPACE: u8 = 0x08;
    const DELETE: u8 = 0x7f;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let original = tcgetattr(&tty)?;
    let mut quiet = original.clone();
    quiet.local_modes -=
        LocalModes::ECHO | LocalModes::ECHONL | LocalModes::ICANON | LocalModes::ISIG;
    quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
    quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
    // Flush: keys typed before the prompt appeared are not taken as the answer.
    tcsetattr(&tty, OptionalActions::Flush, &quiet)?;
    let restore = Restore {
        tty: &tty,
        original,
    };
    (&mut &tty).write_all(prompt.as_bytes())?;
    let mut line = Zeroizing::new(Vec::new());
    let mut key = [0u8; 1];
    loop {
        if (&mut &tty).read(&mut key)? == 0 {
            break;
        }
        match key[0] {
            b'\n' | b'\r' => break,
            CTRL_C => {
                drop(restore);
                eprintln!("interrupted");
                std::process::exit(130);
            }
            CTRL_D if line.is_empty() => return Ok(None),
            BACKSPACE | DELETE => {
                // Remove one character: its UTF-8 continuation bytes and its first byte.
                while line.pop().is_some_and(|b| b & 0xc0 == 0x80) {}
            }
            CTRL_U => line.clear(),
            byte => line.push(byte),
        }
    }
    drop(restore);
    Ok(Some(Secret::new(
        String::from_utf8_lossy(&line).into_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_without_its_ending_is_the_password() {
        assert_eq!(first_line("pw\n"), "pw");
        assert_eq!(first_line("pw\r\nsecond\n"), "pw");
        assert_eq!(first_line("pw"), "pw");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn a_password_with_a_line_break_is_refused_naming_the_line() {
        let path = Path::new("/etc/pw");
        assert_eq!(password_line("s3cret\n\n", path).unwrap(), "s3cret");
        assert_eq!(password_line("s3cret\r\n", path).unwrap(), "s3cret");
        let error = password_line("s3cret\n\nrm -rf /\n", path).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/pw:3: the become password file has more than one line; a sudo password cannot contain a line break (sudo reads one line): keep the password alone on line 1"
        );
        assert!(matches!(
            password_line("s3c\rret\n", path),
            Err(SecretError::FileCarriageReturn { .. })
        ));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        let password = BecomePassword::given(secret, "test");
        assert!(!format!("{password:?}").contains("hunter2"));
    }

    #[test]
    fn a_password_file_is_read_once_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let password = BecomePassword::resolve(Some(&path), false).unwrap();
        assert!(
            password
                .origin_name()
                .starts_with("--become-password-file ")
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(password.get("alice")).unwrap();
        assert_eq!(got.expose(), "s3cret");
        let missing = BecomePassword::resolve(Some(&dir.path().join("nope")), false);
        assert!(matches!(missing, Err(SecretError::File { .. })));
    }
}
