//! What one item's work came to (a host's plan, apply or clock reading; an image's bake): done,
//! unreachable, or failed with a machine-readable [`ErrorKind`] and a message for people.
//!
//! A failure, whatever its cause (a refused login, a drifted file, a panic in our own code),
//! stops its own item and never the run: the caller decides the exit code from every outcome.
//! The kind is what a program reads (`error_kind` in `--format json`); the message is what a
//! person reads.

use std::fmt;

use serde::Serialize;

use crate::host::apply::ApplyError;
use crate::host::facts::FactsError;
use crate::image::bake::BakeError;
use crate::plan::PlanError;
use crate::render::RenderError;
use crate::ssh::sudo::BecomeError;
use crate::ssh::transport::SshError;

/// Why an item failed, in one word a program can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// No connection: refused, no route, no answer within the connect timeout, or the same for
    /// a jump host on the way.
    Unreachable,
    /// The host (or a jump host) refused every key we offered.
    AuthRefused,
    /// No key is on record for the host and the policy is strict.
    HostKeyUnknown,
    /// The host offered a key other than the one on record.
    HostKeyChanged,
    /// The host's key is marked `@revoked`.
    HostKeyRevoked,
    /// `become: sudo` did not get us root: no password, a wrong one, no sudoers rule, no sudo.
    SudoRefused,
    /// A managed file changed between plan and apply (or bake's read and write).
    Drift,
    /// Another apply holds the host's lock (`/run/lock/clockprov.lock`) beyond `--lock-wait`.
    Locked,
    /// What we would install is not valid: the daemon's own check rejects the rendered file, or
    /// a template fails.
    InvalidConfig,
    /// A remote command ran longer than the command timeout (the host stopped answering, or
    /// the command hangs).
    Timeout,
    /// A remote command printed more than `--max-output`: it was stopped.
    OutputTooLarge,
    /// A remote step failed (a non-zero exit, a service that did not come back).
    RemoteCommandFailed,
    /// A host printed something we cannot read as the facts or states we asked for.
    UnexpectedOutput,
    /// Something clockprov will not manage: a managed path that is not a regular file, a daemon
    /// missing from an image, a masked unit.
    Unsupported,
    /// The host runs a system clockprov does not support (see `daemon::SUPPORTED_SYSTEMS`).
    UnsupportedOs,
    /// An image's path does not exist.
    NotFound,
    /// An image could not be opened, read or written (in use by a VM, a libguestfs failure).
    ImageAccess,
    /// A bug in clockprov (a task panicked): reported for its item only.
    Internal,
}

impl ErrorKind {
    /// Errors met while connecting: the item is reported unreachable rather than failed.
    #[must_use]
    pub fn is_connection(self) -> bool {
        matches!(
            self,
            ErrorKind::Unreachable
                | ErrorKind::AuthRefused
                | ErrorKind::HostKeyUnknown
                | ErrorKind::HostKeyChanged
                | ErrorKind::HostKeyRevoked
        )
    }
}

/// One item's failure: its kind, and the message that says what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostError {
    pub kind: ErrorKind,
    pub message: String,
}

impl HostError {
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> HostError {
        HostError {
            kind,
            message: message.into(),
        }
    }

    /// The same failure, its message prefixed with what we were doing.
    #[must_use]
    pub fn context(self, what: &str) -> HostError {
        HostError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }

    /// An error met while connecting to a host (or a jump host).
    #[must_use]
    pub fn connecting(error: &SshError) -> HostError {
        let kind = match error {
            SshError::Connect { .. }
            | SshError::Timeout { .. }
            | SshError::CommandTimeout { .. }
            | SshError::Protocol(_) => ErrorKind::Unreachable,
            SshError::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            SshError::KeptShellGone { .. } => ErrorKind::RemoteCommandFailed,
            SshError::Released { .. } => ErrorKind::Internal,
            SshError::HostKeyUnknown { .. }
            | SshError::HostCertificate { .. }
            | SshError::LearnKey { .. } => ErrorKind::HostKeyUnknown,
            SshError::HostKeyChanged { .. } => ErrorKind::HostKeyChanged,
            SshError::HostKeyRevoked { .. } => ErrorKind::HostKeyRevoked,
            SshError::AuthRefused { .. } => ErrorKind::AuthRefused,
        };
        HostError::new(kind, error.to_string())
    }

    /// A task that panicked: a bug, reported for its own item.
    #[must_use]
    pub fn panicked(payload: &(dyn std::any::Any + Send)) -> HostError {
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        HostError::new(
            ErrorKind::Internal,
            format!("internal error (a bug in clockprov; please report it): {what}"),
        )
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kind of a remote command's error (the connection is already up).
fn command_kind(error: &SshError) -> ErrorKind {
    match error {
        SshError::Timeout { .. } | SshError::CommandTimeout { .. } => ErrorKind::Timeout,
        SshError::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
        _ => ErrorKind::RemoteCommandFailed,
    }
}

fn become_kind(error: &BecomeError) -> ErrorKind {
    match error {
        BecomeError::Ssh(ssh) => command_kind(ssh),
        BecomeError::PasswordRequired { .. }
        | BecomeError::WrongPassword { .. }
        | BecomeError::Denied { .. }
        | BecomeError::NotInstalled { .. } => ErrorKind::SudoRefused,
        BecomeError::Timeout { .. } => ErrorKind::Timeout,
        BecomeError::Failed { .. } => ErrorKind::RemoteCommandFailed,
    }
}

fn plan_kind(error: &PlanError) -> ErrorKind {
    match error {
        PlanError::NotAFile { .. } | PlanError::Symlink { .. } | PlanError::NotText { .. } => {
            ErrorKind::Unsupported
        }
        PlanError::MissingFacts { .. } => ErrorKind::UnexpectedOutput,
    }
}

/// An error of a remote command (the connection is already up).
impl From<SshError> for HostError {
    fn from(error: SshError) -> HostError {
        HostError::new(command_kind(&error), error.to_string())
    }
}

impl From<BecomeError> for HostError {
    fn from(error: BecomeError) -> HostError {
        HostError::new(become_kind(&error), error.to_string())
    }
}

impl From<ApplyError> for HostError {
    fn from(error: ApplyError) -> HostError {
        let kind = match &error {
            ApplyError::Become(become_error) => become_kind(become_error),
            ApplyError::Drifted { .. } | ApplyError::DriftCheckFailed { .. } => ErrorKind::Drift,
            ApplyError::Invalid { .. } | ApplyError::Unsendable(_) => ErrorKind::InvalidConfig,
            ApplyError::Locked { .. } => ErrorKind::Locked,
            ApplyError::Step { .. } | ApplyError::RolledBack(_) | ApplyError::CutShort { .. } => {
                ErrorKind::RemoteCommandFailed
            }
            ApplyError::Output(_) => ErrorKind::UnexpectedOutput,
        };
        HostError::new(kind, error.to_string())
    }
}

impl From<crate::daemon::UnsupportedOs> for HostError {
    fn from(error: crate::daemon::UnsupportedOs) -> HostError {
        HostError::new(ErrorKind::UnsupportedOs, error.to_string())
    }
}

impl From<crate::daemon::UnavailableDaemon> for HostError {
    fn from(error: crate::daemon::UnavailableDaemon) -> HostError {
        HostError::new(ErrorKind::UnsupportedOs, error.to_string())
    }
}

impl From<FactsError> for HostError {
    fn from(error: FactsError) -> HostError {
        HostError::new(ErrorKind::UnexpectedOutput, error.to_string())
    }
}

impl From<PlanError> for HostError {
    fn from(error: PlanError) -> HostError {
        HostError::new(plan_kind(&error), error.to_string())
    }
}

impl From<RenderError> for HostError {
    fn from(error: RenderError) -> HostError {
        HostError::new(ErrorKind::InvalidConfig, error.to_string())
    }
}

impl From<BakeError> for HostError {
    fn from(error: BakeError) -> HostError {
        let kind = match &error {
            BakeError::DaemonAbsent { .. } | BakeError::Masked { .. } | BakeError::Path(_) => {
                ErrorKind::Unsupported
            }
            BakeError::Plan(plan) => plan_kind(plan),
            BakeError::Render(_) => ErrorKind::InvalidConfig,
            BakeError::Root(_) | BakeError::Libvirt(_) => ErrorKind::ImageAccess,
            BakeError::Facts(_) => ErrorKind::UnexpectedOutput,
            BakeError::Drift { .. } | BakeError::Changed { .. } => ErrorKind::Drift,
            BakeError::Missing { .. } => ErrorKind::NotFound,
        };
        HostError::new(kind, error.to_string())
    }
}

/// How one item's work ended, in the order the items were given.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    Done(T),
    /// It could not be connected to (see [`ErrorKind::is_connection`]).
    Unreachable(HostError),
    Failed(HostError),
}

impl<T> Outcome<T> {
    /// Done, or unreachable or failed by the error's kind.
    #[must_use]
    pub fn of(result: Result<T, HostError>) -> Outcome<T> {
        match result {
            Ok(value) => Outcome::Done(value),
            Err(error) if error.kind.is_connection() => Outcome::Unreachable(error),
            Err(error) => Outcome::Failed(error),
        }
    }

    /// The failure, if any.
    #[must_use]
    pub fn error(&self) -> Option<&HostError> {
        match self {
            Outcome::Done(_) => None,
            Outcome::Unreachable(error) | Outcome::Failed(error) => Some(error),
        }
    }

    /// The value, if the work was done.
    #[must_use]
    pub fn done(&self) -> Option<&T> {
        match self {
            Outcome::Done(value) => Some(value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_kinds_are_unreachable_the_rest_failed() {
        let refused = HostError::new(ErrorKind::AuthRefused, "refused");
        assert!(matches!(
            Outcome::<()>::of(Err(refused)),
            Outcome::Unreachable(_)
        ));
        let drift = HostError::new(ErrorKind::Drift, "changed");
        assert!(matches!(Outcome::<()>::of(Err(drift)), Outcome::Failed(_)));
        assert_eq!(Outcome::of(Ok(3)).done(), Some(&3));
    }

    #[test]
    fn kinds_are_kebab_case_in_json() {
        assert_eq!(
            serde_json::to_string(&ErrorKind::HostKeyChanged).unwrap(),
            "\"host-key-changed\""
        );
        assert_eq!(
            serde_json::to_string(&ErrorKind::RemoteCommandFailed).unwrap(),
            "\"remote-command-failed\""
        );
    }

    #[test]
    fn a_panic_message_is_kept() {
        let payload: Box<dyn std::any::Any + Send> = Box::new("index out of bounds");
        let error = HostError::panicked(payload.as_ref());
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(error.message.ends_with("index out of bounds"), "{error}");
    }
}
