//! The SSH transport (russh): one connection per host, reused for every command on it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use crate::inventory::HostKeyPolicy;
use crate::ssh::known_hosts::{KnownHosts, Verdict};
use crate::ssh::secret::KeyPassphrase;

/// Everything needed to open one host's connection.
#[derive(Clone)]
pub struct ConnectSpec {
    /// The inventory name, for messages.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identities: Vec<Arc<PrivateKey>>,
    /// Also offer the keys of the ssh-agent at `$SSH_AUTH_SOCK`.
    pub use_agent: bool,
    pub known_hosts: Arc<KnownHosts>,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSpec")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{what} timed out after {}s", .after.as_secs_f64())]
    Timeout { what: String, after: Duration },
    #[error(
        "host key of {addr} is not in {} (host_key_policy is strict); check the key and add it, e.g. with ssh-keyscan, or use host_key_policy: accept-new",
        .file.display()
    )]
    HostKeyUnknown { addr: String, file: PathBuf },
    #[error(
        "HOST KEY CHANGED for {addr}: the key it offered differs from the one in {}, line {line}; if the host was reinstalled, remove that line (ssh-keygen -R), otherwise someone may be intercepting the connection",
        .file.display()
    )]
    HostKeyChanged {
        addr: String,
        file: PathBuf,
        line: usize,
    },
    #[error("host key of {addr} is marked @revoked in {}, line {line}", .file.display())]
    HostKeyRevoked {
        addr: String,
        file: PathBuf,
        line: usize,
    },
    #[error(
        "{addr} offered an OpenSSH certificate as host key; only plain host keys are supported"
    )]
    HostCertificate { addr: String },
    #[error("cannot record the host key of {addr} in {}: {source}", .file.display())]
    LearnKey {
        addr: String,
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("authentication as {user} on {addr} was refused (tried: {tried})")]
    AuthRefused {
        user: String,
        addr: String,
        tried: String,
    },
    #[error("ssh: {0}")]
    Protocol(#[from] russh::Error),
}

/// The exit status and output of one remote command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// None when the command was killed by a signal or the channel closed without a status.
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    #[must_use]
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    #[must_use]
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    #[must_use]
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim_end().to_owned()
    }
}

struct HostKeyCheck {
    addr: String,
    host: String,
    port: u16,
    known_hosts: Arc<KnownHosts>,
    policy: HostKeyPolicy,
}

impl client::Handler for HostKeyCheck {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, SshError> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            return Err(SshError::HostCertificate {
                addr: self.addr.clone(),
            });
        };
        let file = self.known_hosts.path().to_owned();
        match self.known_hosts.check(&self.host, self.port, key) {
            Verdict::Trusted => Ok(true),
            Verdict::Changed { line } => Err(SshError::HostKeyChanged {
                addr: self.addr.clone(),
                file,
                line,
            }),
            Verdict::Revoked { line } => Err(SshError::HostKeyRevoked {
                addr: self.addr.clone(),
                file,
                line,
            }),
            Verdict::Unknown => match self.policy {
                HostKeyPolicy::Strict => Err(SshError::HostKeyUnknown {
                    addr: self.addr.clone(),
                    file,
                }),
                HostKeyPolicy::AcceptNew => {
                    self.known_hosts
                        .learn(&self.host, self.port, key)
                        .map_err(|source| SshError::LearnKey {
                            addr: self.addr.clone(),
                            file: file.clone(),
                            source,
                        })?;
                    tracing::info!(host = %self.addr, file = %file.display(), "recorded new host key");
                    Ok(true)
                }
            },
        }
    }
}

/// An authenticated connection to one host.
pub struct Session {
    handle: Handle<HostKeyCheck>,
    name: String,
    command_timeout: Duration,
}

impl Session {
    /// Connect, check the host key and authenticate, all within `spec.connect_timeout`;
    /// through `jump`'s connection (an SSH `direct-tcpip` channel) when given.
    ///
    /// # Errors
    /// The host is unreachable, its key is not trusted, or no key is accepted; or the jump host
    /// refuses to forward.
    pub async fn connect_via(
        spec: &ConnectSpec,
        jump: Option<&Session>,
    ) -> Result<Session, SshError> {
        let what = match jump {
            Some(jump) => format!(
                "connecting to {}:{} via {}",
                spec.host, spec.port, jump.name
            ),
            None => format!("connecting to {}:{}", spec.host, spec.port),
        };
        tokio::time::timeout(spec.connect_timeout, Self::connect_inner(spec, jump))
            .await
            .map_err(|_| SshError::Timeout {
                what,
                after: spec.connect_timeout,
            })?
    }

    async fn connect_inner(
        spec: &ConnectSpec,
        jump: Option<&Session>,
    ) -> Result<Session, SshError> {
        let addr = format!("{}:{}", spec.host, spec.port);
        let config = Arc::new(client::Config {
            nodelay: true,
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            ..client::Config::default()
        });
        let check = HostKeyCheck {
            addr: addr.clone(),
            host: spec.host.clone(),
            port: spec.port,
            known_hosts: spec.known_hosts.clone(),
            policy: spec.host_key_policy,
        };
        let started = std::time::Instant::now();
        let via = jump.map(|j| format!(" via {}", j.name)).unwrap_or_default();
        tracing::info!("connecting to {addr} as {}{via}", spec.user);
        let mut handle = if let Some(jump) = jump {
            let channel = jump
                .handle
                .channel_open_direct_tcpip(spec.host.clone(), u32::from(spec.port), "127.0.0.1", 0)
                .await
                .map_err(|e| SshError::Connect {
                    addr: format!("{addr} via {}", jump.name),
                    source: std::io::Error::other(e.to_string()),
                })?;
            client::connect_stream(config, channel.into_stream(), check).await?
        } else {
            let stream = tokio::net::TcpStream::connect((spec.host.as_str(), spec.port))
                .await
                .map_err(|source| SshError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            stream.set_nodelay(true).ok();
            client::connect_stream(config, stream, check).await?
        };
        tracing::debug!(
            "{addr}: host key checked against {} ({:.0} ms)",
            spec.known_hosts.path().display(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        authenticate(&mut handle, spec, &addr).await?;
        tracing::info!(
            "connected to {addr} in {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        Ok(Session {
            handle,
            name: spec.name.clone(),
            command_timeout: spec.command_timeout,
        })
    }

    /// Run `command` through the login shell; wait for its exit status and all its output.
    ///
    /// # Errors
    /// The channel fails or the command runs longer than the command timeout.
    pub async fn run(&self, command: &str) -> Result<CommandOutput, SshError> {
        self.run_with_timeout(command, self.command_timeout).await
    }

    /// As [`Session::run`], with an explicit timeout (package installs take minutes).
    ///
    /// # Errors
    /// As for [`Session::run`].
    pub async fn run_with_timeout(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, SshError> {
        let what = format!("command on {}", self.name);
        tokio::time::timeout(timeout, self.run_inner(command))
            .await
            .map_err(|_| SshError::Timeout {
                what,
                after: timeout,
            })?
    }

    async fn run_inner(&self, command: &str) -> Result<CommandOutput, SshError> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let mut output = CommandOutput::default();
        // Keep reading after ExitStatus: data may still follow until the channel closes.
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => output.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => output.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(output)
    }

    /// Start `command` and keep its stdin and stdout open for a line-by-line conversation.
    ///
    /// # Errors
    /// The channel cannot be opened.
    pub async fn open_conversation(&self, command: &str) -> Result<Conversation, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        Ok(Conversation {
            channel,
            pending: Vec::new(),
            timeout: self.command_timeout,
            name: self.name.clone(),
        })
    }

    /// Start `command` and hand back its raw channel: output as it arrives, input when wanted
    /// (for a dialogue such as sudo's password prompt).
    ///
    /// # Errors
    /// The channel cannot be opened.
    pub async fn start(&self, command: &str) -> Result<Process, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        Ok(Process { channel })
    }

    /// The inventory name of the host, for messages.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long one remote command may run.
    #[must_use]
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }
}

/// A running remote command spoken to one line at a time (used to read a clock with the least
/// delay: no new process or channel per reading).
pub struct Conversation {
    channel: russh::Channel<client::Msg>,
    pending: Vec<u8>,
    timeout: Duration,
    name: String,
}

impl Conversation {
    /// Send `line` (a newline is added).
    ///
    /// # Errors
    /// The channel is closed.
    pub async fn send_line(&mut self, line: &str) -> Result<(), SshError> {
        let mut data = line.as_bytes().to_vec();
        data.push(b'\n');
        self.channel.data_bytes(data).await?;
        Ok(())
    }

    /// The next line of output; None when the command ended.
    ///
    /// # Errors
    /// No line arrives within the command timeout.
    pub async fn read_line(&mut self) -> Result<Option<String>, SshError> {
        let what = format!("reading from {}", self.name);
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=end).collect();
                    return Some(String::from_utf8_lossy(&line[..end]).into_owned());
                }
                match self.channel.wait().await? {
                    ChannelMsg::Data { data } => self.pending.extend_from_slice(&data),
                    ChannelMsg::Close | ChannelMsg::Eof => return None,
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| SshError::Timeout {
            what,
            after: timeout,
        })
    }

    /// End the command (closing its stdin) and the channel.
    pub async fn close(self) {
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }
}

/// What a started command did next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(u32),
    /// The channel is closed: nothing more will come.
    Closed,
}

/// A command started with [`Session::start`].
pub struct Process {
    channel: russh::Channel<client::Msg>,
}

impl Process {
    /// The next thing the command did; [`ProcessEvent::Closed`] once the channel is closed (data
    /// may still follow the exit status, so read until then).
    pub async fn next(&mut self) -> ProcessEvent {
        loop {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => return ProcessEvent::Stdout(data.to_vec()),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    return ProcessEvent::Stderr(data.to_vec());
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    return ProcessEvent::Exit(exit_status);
                }
                Some(ChannelMsg::Close) | None => return ProcessEvent::Closed,
                Some(_) => {}
            }
        }
    }

    /// Write `data` to the command's stdin.
    ///
    /// # Errors
    /// The channel is closed.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), SshError> {
        self.channel.data(data).await?;
        Ok(())
    }

    /// Close the command's stdin.
    ///
    /// # Errors
    /// The channel is closed.
    pub async fn eof(&mut self) -> Result<(), SshError> {
        self.channel.eof().await?;
        Ok(())
    }

    /// Close the channel (the command gets EOF and a hang-up).
    pub async fn close(self) {
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }
}

/// Offer the identity files' keys, then the ssh-agent's, until one is accepted.
///
/// # Errors
/// Every key was refused (the error lists them), or the connection failed.
async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    spec: &ConnectSpec,
    addr: &str,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    for key in &spec.identities {
        let fingerprint = key
            .public_key()
            .fingerprint(russh::keys::HashAlg::default());
        tracing::debug!(
            "{addr}: offering key {} ({fingerprint}) as {}",
            key.comment(),
            spec.user
        );
        let hash = if key.algorithm().is_rsa() {
            handle.best_supported_rsa_hash().await?.flatten()
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(
                spec.user.clone(),
                PrivateKeyWithHashAlg::new(key.clone(), hash),
            )
            .await?;
        if result.success() {
            tracing::info!(
                "authenticated as {} with publickey {} ({fingerprint})",
                spec.user,
                key.comment()
            );
            return Ok(());
        }
        tried.push(format!("key {fingerprint}"));
    }
    if spec.use_agent && authenticate_with_agent(handle, &spec.user, &mut tried).await? {
        tracing::info!(
            "authenticated as {} with publickey from the ssh-agent",
            spec.user
        );
        return Ok(());
    }
    if tried.is_empty() {
        tried.push("no keys: no usable identity file and no ssh-agent".to_owned());
    }
    Err(SshError::AuthRefused {
        user: spec.user.clone(),
        addr: addr.to_owned(),
        tried: tried.join(", "),
    })
}

async fn authenticate_with_agent(
    handle: &mut Handle<HostKeyCheck>,
    user: &str,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    let mut agent = match russh::keys::agent::client::AgentClient::connect_env().await {
        Ok(agent) => agent,
        Err(e) => {
            tried.push(format!("ssh-agent (cannot reach $SSH_AUTH_SOCK: {e})"));
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(identities) => identities,
        Err(e) => {
            tried.push(format!("ssh-agent (cannot list its keys: {e})"));
            return Ok(false);
        }
    };
    if identities.is_empty() {
        tried.push("ssh-agent (it holds no keys)".to_owned());
    }
    for identity in identities {
        let key = identity.public_key().into_owned();
        let hash = if key.algorithm().is_rsa() {
            handle.best_supported_rsa_hash().await?.flatten()
        } else {
            None
        };
        tracing::debug!(
            "offering ssh-agent key {} ({})",
            key.fingerprint(russh::keys::HashAlg::default()),
            key.comment()
        );
        match handle
            .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
            .await
        {
            Ok(result) if result.success() => return Ok(true),
            Ok(_) => tried.push(format!(
                "agent key {}",
                key.fingerprint(russh::keys::HashAlg::default())
            )),
            Err(e) => tried.push(format!(
                "agent key {} ({e:?})",
                key.fingerprint(russh::keys::HashAlg::default())
            )),
        }
    }
    Ok(false)
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    // The causes are in the messages and not chained as sources: `{:#}` would print them twice.
    #[error("cannot read identity file {}: {}", .path.display(), crate::inventory::io_reason(.error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("identity file {} is not a private key clockprov can use: {error}", .path.display())]
    Decode {
        path: PathBuf,
        error: russh::keys::Error,
    },
    #[error(
        "identity file {} is encrypted and no passphrase was given: set {} or run on a terminal to be asked",
        .path.display(), crate::ssh::secret::KEY_PASSPHRASE_ENV
    )]
    NoPassphrase { path: PathBuf },
    #[error("wrong passphrase for identity file {} (from {from})", .path.display())]
    WrongPassphrase { path: PathBuf, from: &'static str },
}

/// Read a private key for authentication, decrypting it with a passphrase from `passphrase`
/// when it is encrypted.
///
/// # Errors
/// The file cannot be read or decoded, or it is encrypted and the passphrase is missing or wrong.
pub fn load_identity(
    path: &Path,
    passphrase: &KeyPassphrase,
) -> Result<Arc<PrivateKey>, IdentityError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
        IdentityError::Read {
            path: path.to_owned(),
            error,
        }
    })?);
    let mut key = match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => key,
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let secret = passphrase
                .for_key(path)
                .ok_or_else(|| IdentityError::NoPassphrase {
                    path: path.to_owned(),
                })?;
            russh::keys::decode_secret_key(&text, Some(secret.expose())).map_err(|_| {
                IdentityError::WrongPassphrase {
                    path: path.to_owned(),
                    from: passphrase.origin_name(),
                }
            })?
        }
        Err(error) => {
            return Err(IdentityError::Decode {
                path: path.to_owned(),
                error,
            });
        }
    };
    // The comment is never sent to a host (public-key authentication sends the key only): it
    // names the file in `-v` logs, which say which key was offered and which was accepted.
    key.set_comment(path.display().to_string());
    tracing::debug!(
        "identity {}: {} key {}",
        path.display(),
        key.algorithm(),
        key.public_key()
            .fingerprint(russh::keys::HashAlg::default())
    );
    Ok(Arc::new(key))
}
