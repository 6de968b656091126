//! The SSH transport (russh): one connection per host, reused for every command on it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use crate::inventory::HostKeyPolicy;
use crate::ssh::identity::Identity;
use crate::ssh::known_hosts::{self, KnownHosts, Verdict};
use crate::value::ByteSize;

/// What one remote command may print (stdout and stderr together) unless `--max-output` says
/// otherwise: the facts of a host are a few KiB, so this is room to spare, yet a host that floods
/// us costs a bounded amount of memory.
pub const DEFAULT_MAX_OUTPUT: ByteSize = ByteSize(4 * ByteSize::MIB);

/// How long closing an abandoned channel may take: a host that stopped answering must not hold
/// up the failure it caused.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type Channel = russh::Channel<client::Msg>;

/// Everything needed to open one host's connection.
#[derive(Clone)]
pub struct ConnectSpec {
    /// The inventory name, for messages.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identities: Vec<Arc<Identity>>,
    /// Also offer the keys of the ssh-agent at `$SSH_AUTH_SOCK`.
    pub use_agent: bool,
    pub known_hosts: Arc<KnownHosts>,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// What one command may print before it is stopped and the host failed.
    pub max_output: ByteSize,
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
    /// A command (the connection is up) did not finish in time: the host stopped answering, or
    /// the command hangs. It is abandoned and its channel closed.
    #[error(
        "{what} did not finish within {}s (the command timeout: --command-timeout or ssh.command_timeout); the host stopped answering or the command hangs, so it was abandoned",
        .after.as_secs_f64()
    )]
    CommandTimeout { what: String, after: Duration },
    /// A command printed more than `--max-output`: it is stopped and its channel closed.
    #[error(
        "{host} sent more than {limit} of output for one command, so it was stopped; raise --max-output if this much is expected"
    )]
    OutputTooLarge { host: String, limit: ByteSize },
    /// `files`: every file consulted; `fingerprint`: as OpenSSH prints it.
    #[error(
        "host key of {addr} is not in {files} (host_key_policy is strict); {fingerprint}: check it against the host's own key (ssh-keygen -lf) and add it, e.g. with ssh-keyscan, or use host_key_policy: accept-new"
    )]
    HostKeyUnknown {
        addr: String,
        files: String,
        fingerprint: String,
    },
    #[error("{0}")]
    HostKeyChanged(Box<ChangedKey>),
    #[error("host key of {addr} is marked @revoked in {}, line {line}; {fingerprint}", .file.display())]
    HostKeyRevoked {
        addr: String,
        file: PathBuf,
        line: usize,
        fingerprint: String,
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
    /// The shell kept for a host's next script (see [`Session::keep`]) ended before that
    /// script printed anything: killed, or its session closed. A script prints before it
    /// changes anything, so nothing was.
    #[error(
        "the shell on {host} that read its facts ended before its transaction ran (killed, or its session closed); nothing was done"
    )]
    KeptShellGone { host: String },
    /// The command was done with this connection and closed it ([`Session::release`]): asking
    /// for it again is a bug in clockprov.
    #[error("the connection to {host} was already closed (clockprov was done with that host)")]
    Released { host: String },
    #[error("ssh: {0}")]
    Protocol(#[from] russh::Error),
}

/// A host key that differs from the one on record (boxed in [`SshError`]: it is large).
#[derive(Debug, thiserror::Error)]
#[error(
    "HOST KEY CHANGED for {addr}: the key it offered differs from the one in {}, line {line}{offered}; if the host was reinstalled, remove that line (ssh-keygen -R {name} -f {}), otherwise someone may be intercepting the connection",
    .file.display(), .file.display()
)]
pub struct ChangedKey {
    addr: String,
    /// The name as recorded and matched (`[host]:port`).
    name: String,
    file: PathBuf,
    line: usize,
    /// What it offered: a note when the key on record is of another type, then `; ` and its
    /// fingerprint.
    offered: String,
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
        // Every key learned or refused is shown on stderr as OpenSSH shows it, so that the
        // operator can compare it with the host's own (`ssh-keygen -lf`).
        let fingerprint = known_hosts::fingerprint(key);
        let refused = |error: SshError| {
            tracing::warn!("{error}");
            Err(error)
        };
        match self.known_hosts.check(&self.host, self.port, key) {
            Verdict::Trusted => Ok(true),
            Verdict::Changed {
                file,
                line,
                recorded_type,
            } => {
                let offered_type = key.algorithm().as_str().to_owned();
                let mut offered = String::new();
                if recorded_type != offered_type {
                    offered = format!(
                        " (an {recorded_type} key is on record there and it offered an {offered_type} key: a host with any key on record is known, and a key of another type is a changed key)"
                    );
                }
                offered.push_str("; ");
                offered.push_str(&fingerprint);
                refused(SshError::HostKeyChanged(Box::new(ChangedKey {
                    addr: self.addr.clone(),
                    name: known_hosts::record_name(&self.host, self.port),
                    file,
                    line,
                    offered,
                })))
            }
            Verdict::Revoked { file, line } => refused(SshError::HostKeyRevoked {
                addr: self.addr.clone(),
                file,
                line,
                fingerprint,
            }),
            Verdict::Unknown => match self.policy {
                HostKeyPolicy::Strict => refused(SshError::HostKeyUnknown {
                    addr: self.addr.clone(),
                    files: self.known_hosts.describe(),
                    fingerprint,
                }),
                HostKeyPolicy::AcceptNew => {
                    let file =
                        self.known_hosts
                            .learn(&self.host, self.port, key)
                            .map_err(|source| SshError::LearnKey {
                                addr: self.addr.clone(),
                                file: self.known_hosts.path().to_owned(),
                                source,
                            })?;
                    tracing::warn!(
                        "{}: recorded its new host key in {} (host_key_policy is accept-new); {fingerprint}",
                        self.addr,
                        file.display()
                    );
                    Ok(true)
                }
            },
        }
    }
}

/// An authenticated connection to one host.
pub struct Session {
    /// `None` once released ([`Session::release`]). An `Arc` so that a channel is opened
    /// without holding the lock across the wait.
    handle: std::sync::Mutex<Option<Arc<Handle<HostKeyCheck>>>>,
    name: String,
    command_timeout: Duration,
    max_output: ByteSize,
    /// A command kept running for this connection's next script (see [`Session::keep`]).
    kept: std::sync::Mutex<Option<Process>>,
}

/// Counts what one command has printed, against `--max-output`.
struct Budget {
    host: String,
    limit: ByteSize,
    received: usize,
}

impl Budget {
    fn new(host: &str, limit: ByteSize) -> Budget {
        Budget {
            host: host.to_owned(),
            limit,
            received: 0,
        }
    }

    /// `bytes` more arrived: an error once the total is over the limit (the caller closes the
    /// channel, so the rest is never read).
    fn take(&mut self, bytes: usize) -> Result<(), SshError> {
        self.received = self.received.saturating_add(bytes);
        if self.received > self.limit.bytes() {
            return Err(SshError::OutputTooLarge {
                host: self.host.clone(),
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// Close a channel we give up on, without waiting long for a host that may not answer.
async fn abandon(channel: &Channel) {
    let _ = tokio::time::timeout(CLOSE_GRACE, channel.close()).await;
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
                .handle()?
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
            // russh reads each packet in two reads (its length, then the rest): unbuffered, that
            // was a system call per read, four times as many as with this buffer, which takes
            // what the socket holds at once (a few packets at a time). Writes are not buffered.
            let stream = tokio::io::BufReader::with_capacity(8 * 1024, stream);
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
            handle: std::sync::Mutex::new(Some(Arc::new(handle))),
            name: spec.name.clone(),
            command_timeout: spec.command_timeout,
            max_output: spec.max_output,
            kept: std::sync::Mutex::new(None),
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
    /// As for [`Session::run`], and the command printing more than `--max-output`. On a timeout
    /// or too much output the channel is closed: nothing more is read from it.
    pub async fn run_with_timeout(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, SshError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let what = format!("a command on {}", self.name);
        let mut channel = tokio::time::timeout_at(deadline, self.exec(command))
            .await
            .map_err(|_| SshError::CommandTimeout {
                what: what.clone(),
                after: timeout,
            })??;
        match tokio::time::timeout_at(deadline, self.collect(&mut channel)).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(error)) => {
                abandon(&channel).await;
                Err(error)
            }
            Err(_) => {
                abandon(&channel).await;
                Err(SshError::CommandTimeout {
                    what,
                    after: timeout,
                })
            }
        }
    }

    /// The connection, unless it was released.
    fn handle(&self) -> Result<Arc<Handle<HostKeyCheck>>, SshError> {
        self.handle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| SshError::Released {
                host: self.name.clone(),
            })
    }

    /// Close the connection now, when the command is done with the host, instead of when it
    /// exits: its buffers are freed and the host's sshd ends, so a large fleet holds about
    /// `--forks` connections at a time, not one per host. A shell kept for a next script gets
    /// end of input with the rest. Idempotent.
    pub async fn release(&self) {
        drop(self.take_kept());
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let goodbye = handle.disconnect(russh::Disconnect::ByApplication, "", "en");
            let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
        }
    }

    async fn exec(&self, command: &str) -> Result<Channel, SshError> {
        let channel = self.handle()?.channel_open_session().await?;
        channel.exec(true, command).await?;
        Ok(channel)
    }

    /// Everything the command prints until its channel closes, within `--max-output`.
    async fn collect(&self, channel: &mut Channel) -> Result<CommandOutput, SshError> {
        let mut output = CommandOutput::default();
        let mut budget = Budget::new(&self.name, self.max_output);
        // Keep reading after ExitStatus: data may still follow until the channel closes.
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => {
                    budget.take(data.len())?;
                    output.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    budget.take(data.len())?;
                    output.stderr.extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(output)
    }

    /// Run `command` with `input` on its stdin (then EOF); wait for its exit status and all its
    /// output. How a [`crate::host::script::RemoteScript`] is run: its text can be any size.
    ///
    /// # Errors
    /// The channel fails, the command prints more than `--max-output`, or sending and running
    /// take longer than `timeout` (then the channel is closed).
    pub async fn run_with_input(
        &self,
        command: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<CommandOutput, SshError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let what = format!("a command on {}", self.name);
        let timed_out = || SshError::CommandTimeout {
            what: what.clone(),
            after: timeout,
        };
        let process = tokio::time::timeout_at(deadline, self.start(command))
            .await
            .map_err(|_| timed_out())??;
        self.finish_with_input(process, input, deadline, timeout)
            .await
    }

    /// Send `input` (then EOF) to the running `process` and wait for its exit status and the
    /// rest of its output, by `deadline` (`timeout` is what the error says).
    ///
    /// # Errors
    /// As for [`Session::run_with_input`].
    pub async fn finish_with_input(
        &self,
        mut process: Process,
        input: &[u8],
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<CommandOutput, SshError> {
        let what = format!("a command on {}", self.name);
        let timed_out = || SshError::CommandTimeout {
            what: what.clone(),
            after: timeout,
        };
        // Sending counts too: a host that stops reading must not hold the run forever.
        let work = async {
            process.send(input).await?;
            process.eof().await?;
            let mut output = CommandOutput::default();
            loop {
                match process.next().await? {
                    ProcessEvent::Stdout(data) => output.stdout.extend_from_slice(&data),
                    ProcessEvent::Stderr(data) => output.stderr.extend_from_slice(&data),
                    ProcessEvent::Exit(code) => output.status = Some(code),
                    ProcessEvent::Closed => return Ok(output),
                }
            }
        };
        let result = match tokio::time::timeout_at(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(timed_out()),
        };
        if result.is_err() {
            process.close().await;
        }
        result
    }

    /// Start `command` with `input` on its stdin, left open, and read its output until stdout
    /// ends with the line `marker` (which the output keeps) or the command ends, within
    /// `timeout`. Marker seen: the command, still running and waiting for more input, comes
    /// back with the output, for [`Session::keep`]. Ended: as [`Session::run_with_input`].
    ///
    /// # Errors
    /// As for [`Session::run_with_input`].
    pub async fn run_until_marker(
        &self,
        command: &str,
        input: &[u8],
        marker: &[u8],
        timeout: Duration,
    ) -> Result<(CommandOutput, Option<Process>), SshError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || SshError::CommandTimeout {
            what: format!("a command on {}", self.name),
            after: timeout,
        };
        let mut process = tokio::time::timeout_at(deadline, self.start(command))
            .await
            .map_err(|_| timed_out())??;
        let work = async {
            process.send(input).await?;
            let mut output = CommandOutput::default();
            loop {
                match process.next().await? {
                    ProcessEvent::Stdout(data) => {
                        output.stdout.extend_from_slice(&data);
                        if output.stdout.ends_with(marker) {
                            return Ok((output, true));
                        }
                    }
                    ProcessEvent::Stderr(data) => output.stderr.extend_from_slice(&data),
                    ProcessEvent::Exit(code) => output.status = Some(code),
                    ProcessEvent::Closed => return Ok((output, false)),
                }
            }
        };
        let result = match tokio::time::timeout_at(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(timed_out()),
        };
        match result {
            Ok((output, true)) => Ok((output, Some(process))),
            Ok((output, false)) => Ok((output, None)),
            Err(e) => {
                process.close().await;
                Err(e)
            }
        }
    }

    /// Keep `process` (a shell waiting on its stdin) for this connection's next script: apply
    /// sends its transaction to the shell that read the facts, so the host starts no second
    /// channel and login shell for it. One is kept at a time; one kept before is closed.
    pub async fn keep(&self, process: Process) {
        let before = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(process);
        if let Some(before) = before {
            before.close().await;
        }
    }

    /// The process kept by [`Session::keep`], if any (taken: it is used once).
    pub fn take_kept(&self) -> Option<Process> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Start `command` within the command timeout.
    async fn exec_in_time(&self, command: &str) -> Result<Channel, SshError> {
        tokio::time::timeout(self.command_timeout, self.exec(command))
            .await
            .map_err(|_| SshError::CommandTimeout {
                what: format!("starting a command on {}", self.name),
                after: self.command_timeout,
            })?
    }

    /// Start `command` and keep its stdin and stdout open for a line-by-line conversation.
    ///
    /// # Errors
    /// The channel cannot be opened within the command timeout.
    pub async fn open_conversation(&self, command: &str) -> Result<Conversation, SshError> {
        let channel = self.exec_in_time(command).await?;
        Ok(Conversation {
            channel,
            pending: Vec::new(),
            timeout: self.command_timeout,
            name: self.name.clone(),
            max_output: self.max_output,
        })
    }

    /// Start `command` and hand back its raw channel: output as it arrives, input when wanted
    /// (for a dialogue such as sudo's password prompt).
    ///
    /// # Errors
    /// The channel cannot be opened within the command timeout.
    pub async fn start(&self, command: &str) -> Result<Process, SshError> {
        let channel = self.exec_in_time(command).await?;
        Ok(Process {
            channel,
            budget: Budget::new(&self.name, self.max_output),
        })
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
    channel: Channel,
    pending: Vec<u8>,
    timeout: Duration,
    name: String,
    max_output: ByteSize,
}

impl Conversation {
    /// Send `line` (a newline is added).
    ///
    /// # Errors
    /// The channel is closed, or the host does not take the line within the command timeout.
    pub async fn send_line(&mut self, line: &str) -> Result<(), SshError> {
        let mut data = line.as_bytes().to_vec();
        data.push(b'\n');
        self.send(data).await
    }

    /// Send `data` as it is (a script, say).
    ///
    /// # Errors
    /// The channel is closed, or the host does not take the data within the command timeout.
    pub async fn send(&mut self, data: Vec<u8>) -> Result<(), SshError> {
        tokio::time::timeout(self.timeout, self.channel.data_bytes(data))
            .await
            .map_err(|_| SshError::CommandTimeout {
                what: format!("writing to {}", self.name),
                after: self.timeout,
            })??;
        Ok(())
    }

    /// The next line of output; None when the command ended.
    ///
    /// # Errors
    /// No line arrives within the command timeout, or a line longer than `--max-output`.
    pub async fn read_line(&mut self) -> Result<Option<String>, SshError> {
        let what = format!("reading from {}", self.name);
        let timeout = self.timeout;
        let limit = self.max_output;
        let name = self.name.clone();
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=end).collect();
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    return Ok(Some(String::from_utf8_lossy(text).into_owned()));
                }
                // A host that never ends its line must not fill our memory.
                Budget::new(&name, limit).take(self.pending.len())?;
                match self.channel.wait().await {
                    Some(ChannelMsg::Data { data }) => self.pending.extend_from_slice(&data),
                    Some(ChannelMsg::Close | ChannelMsg::Eof) | None => return Ok(None),
                    Some(_) => {}
                }
            }
        })
        .await
        .map_err(|_| SshError::CommandTimeout {
            what,
            after: timeout,
        })?
    }

    /// Every line up to and including `last` (each followed by a newline), within
    /// `--max-output` in all; fewer if the command ends first.
    ///
    /// # Errors
    /// As [`Conversation::read_line`], or more than `--max-output` before `last`.
    pub async fn read_until(&mut self, last: &str) -> Result<Vec<u8>, SshError> {
        let mut text = Vec::new();
        let mut budget = Budget::new(&self.name, self.max_output);
        while let Some(line) = self.read_line().await? {
            budget.take(line.len() + 1)?;
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
            if line == last {
                break;
            }
        }
        Ok(text)
    }

    /// End the command (closing its stdin) and the channel.
    pub async fn close(self) {
        let _ = tokio::time::timeout(CLOSE_GRACE, self.channel.eof()).await;
        abandon(&self.channel).await;
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
    channel: Channel,
    budget: Budget,
}

impl Process {
    /// The next thing the command did; [`ProcessEvent::Closed`] once the channel is closed (data
    /// may still follow the exit status, so read until then).
    ///
    /// # Errors
    /// The command printed more than `--max-output` in all (the caller closes the process).
    pub async fn next(&mut self) -> Result<ProcessEvent, SshError> {
        loop {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    self.budget.take(data.len())?;
                    return Ok(ProcessEvent::Stdout(data.to_vec()));
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    self.budget.take(data.len())?;
                    return Ok(ProcessEvent::Stderr(data.to_vec()));
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    return Ok(ProcessEvent::Exit(exit_status));
                }
                Some(ChannelMsg::Close) | None => return Ok(ProcessEvent::Closed),
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
        let _ = tokio::time::timeout(CLOSE_GRACE, self.channel.eof()).await;
        abandon(&self.channel).await;
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
    for identity in &spec.identities {
        let key = identity.key();
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
        let result = match identity.expanded_ed25519() {
            Some(mut signer) => handle
                .authenticate_publickey_with(
                    spec.user.clone(),
                    key.public_key().clone(),
                    None,
                    &mut signer,
                )
                .await
                .map_err(|russh::SendError {}| russh::Error::SendError)?,
            None => {
                handle
                    .authenticate_publickey(
                        spec.user.clone(),
                        PrivateKeyWithHashAlg::new(key.clone(), hash),
                    )
                    .await?
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_the_limit_naming_host_and_flag() {
        let mut budget = Budget::new("data-6", ByteSize(10));
        assert!(budget.take(6).is_ok());
        assert!(budget.take(4).is_ok());
        let error = budget.take(1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "data-6 sent more than 10 bytes of output for one command, so it was stopped; raise --max-output if this much is expected"
        );
        // No overflow, however much a host claims to send.
        assert!(budget.take(usize::MAX).is_err());
    }
}
