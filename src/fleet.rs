//! The fleet: connect to every selected host concurrently (bounded), gather facts, plan, apply.
//!
//! Hosts fail independently: each host ends with a plan or an error, and the caller decides the
//! exit code from all of them at the end.

use std::collections::HashMap;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use russh::keys::PrivateKey;
use serde::Serialize;
use tokio::sync::{OnceCell, Semaphore};

use crate::apply::{ApplyReport, apply_host};
use crate::facts;
use crate::inventory::{BecomeMethod, Host, HostKeyPolicy, Inventory};
use crate::known_hosts::KnownHosts;
use crate::plan::{HostPlan, plan};
use crate::privilege::{BecomeError, Privilege, Privileged};
use crate::render::{RenderInputs, Renderer};
use crate::secret::{KEY_PASSPHRASE_ENV, KeyPassphrase, Secrets};
use crate::ssh::{ConnectSpec, IdentityError, Session, load_identity};
use crate::value::LocalPath;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings that come from the command line rather than the inventory.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub forks: usize,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    /// Show a progress line on stderr (only ever on a terminal).
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot read known_hosts file {path}: {source}")]
    KnownHosts {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a host's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStatus {
    Change,
    Unchanged,
    Unreachable,
    Failed,
}

/// One host's result: its plan, and what apply did, or why it could not.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub name: String,
    pub address: String,
    pub role: String,
    pub os: Option<String>,
    pub status: HostStatus,
    pub error: Option<String>,
    pub plan: Option<HostPlan>,
    pub apply: Option<ApplyReport>,
}

type SessionCell = OnceCell<Result<Arc<Session>, String>>;

/// Opens (once) and hands out each host's connection; hosts behind a `jump` are reached through
/// their jump host's connection, which is itself opened once and shared.
pub struct Connector {
    specs: HashMap<String, ConnectSpec>,
    jumps: HashMap<String, String>,
    cells: HashMap<String, SessionCell>,
    /// How each host's privileged scripts run (sudo for `become: sudo` with a non-root login).
    privileges: HashMap<String, Privilege>,
}

impl Connector {
    /// As [`Connector::with_secrets`] with no secrets: encrypted keys and sudo passwords fail.
    ///
    /// # Errors
    /// As for [`Connector::with_secrets`].
    pub fn new(inventory: &Inventory, options: &RunOptions) -> Result<Connector, SetupError> {
        Connector::with_secrets(inventory, options, &Secrets::none())
    }

    /// Build every host's connection settings; loads identities (decrypting them with
    /// `secrets.key_passphrase`) and `known_hosts` files once.
    ///
    /// # Errors
    /// An identity or `known_hosts` file cannot be read: nothing has been contacted yet.
    pub fn with_secrets(
        inventory: &Inventory,
        options: &RunOptions,
        secrets: &Secrets,
    ) -> Result<Connector, SetupError> {
        let mut identities: HashMap<PathBuf, Arc<PrivateKey>> = HashMap::new();
        let mut known: HashMap<PathBuf, Arc<KnownHosts>> = HashMap::new();
        let base = inventory.base_dir();
        let mut specs = HashMap::new();
        let mut jumps = HashMap::new();
        let mut privileges = HashMap::new();
        let default_passphrase = secrets.key_passphrase.without_terminal();
        let mut skipped = std::collections::HashSet::new();
        for host in &inventory.hosts {
            let ssh = &host.ssh;
            let mut keys = Vec::new();
            match &ssh.identity_file {
                Some(path) => {
                    let path = resolve(base, path);
                    keys.push(load_cached(
                        &mut identities,
                        &path,
                        &secrets.key_passphrase,
                    )?);
                }
                None => {
                    for default in [".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"] {
                        let path = home_file(default);
                        if path.exists() && !skipped.contains(&path) {
                            // Never a terminal prompt for a key nobody named: an encrypted
                            // default key is usually in the ssh-agent, which is tried next.
                            match load_cached(&mut identities, &path, &default_passphrase) {
                                Ok(key) => keys.push(key),
                                Err(e) => {
                                    log_skipped_default(&path, &e);
                                    skipped.insert(path);
                                }
                            }
                        }
                    }
                }
            }
            let known_path = match &ssh.known_hosts {
                Some(path) => resolve(base, path),
                None => home_file(".ssh/known_hosts"),
            };
            let known_hosts = if let Some(k) = known.get(&known_path) {
                k.clone()
            } else {
                let k = Arc::new(KnownHosts::load(&known_path).map_err(|source| {
                    SetupError::KnownHosts {
                        path: known_path.clone(),
                        source,
                    }
                })?);
                known.insert(known_path.clone(), k.clone());
                k
            };
            let spec = ConnectSpec {
                name: host.name.to_string(),
                host: ssh.host.as_ref().unwrap_or(&host.address).to_string(),
                port: ssh.port.unwrap_or(22),
                user: ssh.user.as_ref().map_or("root", |u| u.as_str()).to_owned(),
                identities: keys,
                use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some(),
                known_hosts,
                host_key_policy: ssh.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
                connect_timeout: options
                    .connect_timeout
                    .or(ssh.connect_timeout.map(|d| d.0))
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                command_timeout: options
                    .command_timeout
                    .or(ssh.command_timeout.map(|d| d.0))
                    .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            };
            if let Some(jump) = &ssh.jump {
                jumps.insert(host.name.to_string(), jump.to_string());
            }
            // sudo only for a login that is not root already.
            if ssh.become_method == Some(BecomeMethod::Sudo) && spec.user != "root" {
                privileges.insert(
                    host.name.to_string(),
                    Privilege::Sudo {
                        user: spec.user.clone(),
                        password: secrets.become_password.clone(),
                    },
                );
            }
            specs.insert(host.name.to_string(), spec);
        }
        let cells = specs
            .keys()
            .map(|name| (name.clone(), SessionCell::new()))
            .collect();
        Ok(Connector {
            specs,
            jumps,
            cells,
            privileges,
        })
    }

    /// How the host's privileged scripts run.
    #[must_use]
    pub fn privilege(&self, name: &str) -> &Privilege {
        self.privileges.get(name).unwrap_or(&Privilege::Direct)
    }

    /// The host's connection, opened on first use.
    ///
    /// # Errors
    /// The host (or a jump host on the way) cannot be reached or refuses us.
    #[must_use]
    pub fn session<'a>(
        &'a self,
        name: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<Session>, String>> + Send + 'a>> {
        Box::pin(async move {
            let cell = self
                .cells
                .get(name)
                .ok_or_else(|| format!("no host named {name}"))?;
            cell.get_or_init(|| async move {
                let spec = &self.specs[name];
                let jump = match self.jumps.get(name) {
                    Some(jump) => Some(
                        self.session(jump)
                            .await
                            .map_err(|e| format!("jump host {jump}: {e}"))?,
                    ),
                    None => None,
                };
                Session::connect_via(spec, jump.as_deref())
                    .await
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .await
            .clone()
        })
    }
}

/// A file under `$HOME` (OpenSSH's defaults live there).
fn home_file(relative: &str) -> PathBuf {
    std::env::var_os("HOME").map_or_else(
        || PathBuf::from(relative),
        |home| PathBuf::from(home).join(relative),
    )
}

fn resolve(base: &Path, path: &LocalPath) -> PathBuf {
    let expanded = path.expand();
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

fn load_cached(
    cache: &mut HashMap<PathBuf, Arc<PrivateKey>>,
    path: &Path,
    passphrase: &KeyPassphrase,
) -> Result<Arc<PrivateKey>, SetupError> {
    if let Some(key) = cache.get(path) {
        return Ok(key.clone());
    }
    let key = load_identity(path, passphrase)?;
    cache.insert(path.to_owned(), key.clone());
    Ok(key)
}

fn log_skipped_default(path: &Path, error: &SetupError) {
    if let SetupError::Identity(IdentityError::NoPassphrase { .. }) = error {
        tracing::info!(
            "skipping encrypted default identity {} (no {KEY_PASSPHRASE_ENV})",
            path.display()
        );
    } else {
        tracing::warn!("skipping default identity: {error}");
    }
}

/// A one-line progress counter on stderr, shown only on a terminal.
struct Progress {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    enabled: bool,
}

impl Progress {
    fn new(label: &'static str, total: usize, wanted: bool) -> Progress {
        let enabled = wanted && total > 1 && std::io::stderr().is_terminal();
        Progress {
            label,
            total,
            done: AtomicUsize::new(0),
            enabled,
        }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{} {done}/{} hosts", self.label, self.total);
            if done == self.total {
                let _ = write!(err, "\r\x1b[K");
            }
            let _ = err.flush();
        }
    }
}

/// Connect to `hosts`, read their facts, render and plan each, `options.forks` at a time.
///
/// # Panics
/// Only if a host's task panics (a bug).
pub async fn plan_hosts(
    connector: Arc<Connector>,
    renderer: Arc<Renderer>,
    hosts: Vec<Host>,
    options: &RunOptions,
) -> Vec<HostResult> {
    let limit = Arc::new(Semaphore::new(options.forks.max(1)));
    let progress = Arc::new(Progress::new("planning", hosts.len(), options.progress));
    let mut tasks = Vec::with_capacity(hosts.len());
    for host in hosts {
        let (connector, renderer, limit, progress) = (
            connector.clone(),
            renderer.clone(),
            limit.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            let result = plan_one(&connector, &renderer, &host).await;
            progress.tick();
            result
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("planning task panicked"));
    }
    results
}

async fn plan_one(connector: &Connector, renderer: &Renderer, host: &Host) -> HostResult {
    let mut result = HostResult {
        name: host.name.to_string(),
        address: host.address.to_string(),
        role: host.role.to_string(),
        os: None,
        status: HostStatus::Failed,
        error: None,
        plan: None,
        apply: None,
    };
    let session = match connector.session(host.name.as_str()).await {
        Ok(session) => session,
        Err(e) => {
            result.status = HostStatus::Unreachable;
            result.error = Some(e);
            return result;
        }
    };
    let daemon = if host.is_server() {
        crate::daemon::Daemon::Chrony
    } else {
        crate::daemon::Daemon::Timesyncd
    };
    let root = Privileged {
        session: &session,
        privilege: connector.privilege(host.name.as_str()),
    };
    let facts = match root
        .run(&facts::script(&[daemon.config_path()], &[daemon.unit()]))
        .await
    {
        Ok(out) => facts::parse(&out.stdout_text()).map_err(|e| {
            let stderr = out.stderr_text();
            if stderr.is_empty() {
                format!("reading facts: {e}")
            } else {
                format!("reading facts: {e}: {stderr}")
            }
        }),
        Err(BecomeError::Ssh(e)) => Err(format!("reading facts: {e}")),
        // sudo's refusals say what they are about.
        Err(e) => Err(e.to_string()),
    };
    let facts = match facts {
        Ok(facts) => facts,
        Err(e) => {
            result.error = Some(e);
            return result;
        }
    };
    result.os = Some(facts.os.pretty_name.clone());
    let inputs = RenderInputs {
        os_id: &facts.os.id,
        version: facts.version_for(daemon),
    };
    let planned = renderer
        .render(host, inputs)
        .map_err(|e| e.to_string())
        .and_then(|desired| plan(host.name.as_str(), &desired, &facts).map_err(|e| e.to_string()));
    match planned {
        Ok(plan) => {
            result.status = if plan.has_changes() {
                HostStatus::Change
            } else {
                HostStatus::Unchanged
            };
            result.plan = Some(plan);
        }
        Err(e) => result.error = Some(e),
    }
    result
}

/// Apply every planned change, `options.forks` hosts at a time, over the connections opened
/// for planning. Hosts without changes are left alone.
///
/// # Panics
/// Only if a host's task panics (a bug).
pub async fn apply_hosts(
    connector: Arc<Connector>,
    results: Vec<HostResult>,
    options: &RunOptions,
) -> Vec<HostResult> {
    let limit = Arc::new(Semaphore::new(options.forks.max(1)));
    let to_apply = results
        .iter()
        .filter(|r| r.status == HostStatus::Change)
        .count();
    let progress = Arc::new(Progress::new("applying", to_apply, options.progress));
    let mut tasks = Vec::with_capacity(results.len());
    for mut result in results {
        let (connector, limit, progress) = (connector.clone(), limit.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            if result.status != HostStatus::Change {
                return result;
            }
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            let plan = result.plan.as_ref().expect("a changing host has a plan");
            match connector.session(&result.name).await {
                Ok(session) => match apply_host(
                    &Privileged {
                        session: &session,
                        privilege: connector.privilege(&result.name),
                    },
                    plan,
                )
                .await
                {
                    Ok(report) => result.apply = Some(report),
                    Err(e) => {
                        result.status = HostStatus::Failed;
                        result.error = Some(e.to_string());
                    }
                },
                Err(e) => {
                    result.status = HostStatus::Unreachable;
                    result.error = Some(e);
                }
            }
            progress.tick();
            result
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("apply task panicked"));
    }
    out
}

/// Counts of hosts by status, for summaries and exit codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub change: usize,
    pub unchanged: usize,
    pub unreachable: usize,
    pub failed: usize,
}

impl Summary {
    #[must_use]
    pub fn of(results: &[HostResult]) -> Summary {
        let mut summary = Summary::default();
        for r in results {
            match r.status {
                HostStatus::Change => summary.change += 1,
                HostStatus::Unchanged => summary.unchanged += 1,
                HostStatus::Unreachable => summary.unreachable += 1,
                HostStatus::Failed => summary.failed += 1,
            }
        }
        summary
    }

    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.unreachable + self.failed > 0
    }
}
