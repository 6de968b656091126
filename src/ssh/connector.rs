//! Connections: which address, user, key and route each host is reached by, from the inventory
//! and the OpenSSH config; each connection opened once and shared by the hosts behind it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use tokio::sync::OnceCell;

use crate::fleet::RunOptions;
use crate::inventory::{BecomeMethod, Host, HostKeyPolicy, Inventory, Role, SshOptions, io_reason};
use crate::ssh::config::{
    ConfigError, Context, HostConfig, Located, SshConfig, Strictness, local_user_name,
};
use crate::ssh::known_hosts::KnownHosts;
use crate::ssh::secret::{KEY_PASSPHRASE_ENV, KeyPassphrase, Secrets};
use crate::ssh::sudo::Privilege;
use crate::ssh::transport::{ConnectSpec, IdentityError, Session, load_identity};
use crate::value::{JumpHop, JumpList, JumpRef, LocalPath, NetAddress, UserName};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The inventory's `identity_file` cannot be used: where it is written, and why.
    #[error("{location}: {field}: {}", identity_file_problem(.written, .resolved, .error))]
    IdentityFile {
        location: String,
        field: String,
        /// As the inventory writes it.
        written: String,
        resolved: PathBuf,
        error: Box<IdentityError>,
    },
    #[error("cannot read known_hosts file {path}: {source}")]
    KnownHosts {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A problem in an OpenSSH config file (it names the file and line).
    #[error("{0}")]
    SshConfig(#[from] ConfigError),
    /// The inventory's `config_file` cannot be read (the cause in the message, not chained).
    #[error("{location}: {field}: {error}")]
    ConfigFile {
        location: String,
        field: String,
        error: ConfigError,
    },
    #[error("the jump chain of {host} loops: {path}")]
    JumpLoop { host: String, path: String },
    #[error("jump host {hop} of {host}: {message}")]
    JumpHost {
        host: String,
        hop: String,
        message: String,
    },
}

type SessionCell = OnceCell<Result<Arc<Session>, String>>;

/// One connection to open: to an inventory host, or to a jump host outside the inventory.
struct Node {
    spec: ConnectSpec,
    /// The node whose connection this one goes through.
    via: Option<String>,
}

/// Opens (once) and hands out each host's connection; hosts behind a jump host are reached
/// through its connection, which is itself opened once and shared by every host behind it
/// (jump hosts outside the inventory are shared by user, host, port and route).
pub struct Connector {
    nodes: HashMap<String, Node>,
    /// Inventory name -> its node.
    hosts: HashMap<String, String>,
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

    /// Build every host's connection settings from the inventory and the OpenSSH config; loads
    /// identities (decrypting them with `secrets.key_passphrase`), `known_hosts` and config files
    /// once each.
    ///
    /// # Errors
    /// A file cannot be read, the OpenSSH config is malformed, or a jump chain loops: nothing
    /// has been contacted yet.
    pub fn with_secrets(
        inventory: &Inventory,
        options: &RunOptions,
        secrets: &Secrets,
    ) -> Result<Connector, SetupError> {
        let home = std::env::var_os("HOME").map_or_else(PathBuf::new, PathBuf::from);
        Self::with_home(inventory, options, secrets, home)
    }

    /// As [`Connector::with_secrets`], with `home` for `~` (tests use their own).
    fn with_home(
        inventory: &Inventory,
        options: &RunOptions,
        secrets: &Secrets,
        home: PathBuf,
    ) -> Result<Connector, SetupError> {
        let mut builder = Builder {
            inventory,
            options,
            secrets,
            home,
            local_user: local_user_name(),
            identities: HashMap::new(),
            skipped_defaults: HashSet::new(),
            known: HashMap::new(),
            configs: HashMap::new(),
            nodes: HashMap::new(),
            stack: Vec::new(),
            warned: HashSet::new(),
        };
        let mut hosts = HashMap::new();
        let mut privileges = HashMap::new();
        for host in &inventory.hosts {
            let key = builder.node(&Target::inventory(host), &Route::Own)?;
            // sudo only for a login that is not root already (the user may come from the config).
            let user = &builder.nodes[&key].spec.user;
            if host.ssh.become_method == Some(BecomeMethod::Sudo) && user != "root" {
                privileges.insert(
                    host.name.to_string(),
                    Privilege::Sudo {
                        user: user.clone(),
                        password: secrets.become_password.clone(),
                    },
                );
            }
            hosts.insert(host.name.to_string(), key);
        }
        let cells = builder
            .nodes
            .keys()
            .map(|key| (key.clone(), SessionCell::new()))
            .collect();
        let connector = Connector {
            nodes: builder.nodes,
            hosts,
            cells,
            privileges,
        };
        for host in &inventory.hosts {
            let route = connector.route(host.name.as_str());
            if route.len() > 1 {
                tracing::debug!("route to {}: {}", host.name, route.join(" -> "));
            }
        }
        Ok(connector)
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
    pub async fn session(&self, name: &str) -> Result<Arc<Session>, String> {
        let key = self
            .hosts
            .get(name)
            .ok_or_else(|| format!("no host named {name}"))?;
        self.node_session(key).await
    }

    fn node_session<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<Session>, String>> + Send + 'a>> {
        Box::pin(async move {
            let node = &self.nodes[key];
            self.cells[key]
                .get_or_init(|| async move {
                    let jump = match &node.via {
                        Some(via) => Some(self.node_session(via).await.map_err(|e| {
                            format!(
                                "cannot reach jump host {} for {}: {e}",
                                self.nodes[via].spec.name, node.spec.name
                            )
                        })?),
                        None => None,
                    };
                    Session::connect_via(&node.spec, jump.as_deref())
                        .await
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                })
                .await
                .clone()
        })
    }

    /// The route to `name`: its jump hosts, first to last, then itself (for logs and tests).
    #[must_use]
    fn route(&self, name: &str) -> Vec<String> {
        let mut route = Vec::new();
        let mut key = self.hosts.get(name);
        while let Some(k) = key {
            let node = &self.nodes[k];
            route.push(format!(
                "{} ({}@{}:{})",
                node.spec.name, node.spec.user, node.spec.host, node.spec.port
            ));
            key = node.via.as_ref();
        }
        route.reverse();
        route
    }
}

/// What to connect to, before the OpenSSH config is applied.
struct Target<'i> {
    /// For messages: the inventory name, or the hop as written.
    label: String,
    /// Set for inventory hosts (their node key is their name).
    inventory_name: Option<String>,
    /// The name looked up in the OpenSSH config and connected to unless it says `HostName`.
    connect_name: String,
    /// The inventory's settings: they win over the config's.
    ssh: SshOptions,
    /// Where `config_file` is in the inventory, for the message when it cannot be read.
    config_field: Vec<&'i str>,
}

impl<'i> Target<'i> {
    fn inventory(host: &'i Host) -> Target<'i> {
        let (section, own) = match &host.role {
            Role::Server(spec) => ("ntp_servers", &spec.ssh),
            Role::Client { spec, .. } => ("clients", &spec.ssh),
        };
        let config_field = if own.config_file.is_some() {
            vec![section, host.name.as_str(), "ssh", "config_file"]
        } else {
            vec!["ssh", "config_file"]
        };
        Target {
            label: host.name.to_string(),
            inventory_name: Some(host.name.to_string()),
            connect_name: host.ssh.host.as_ref().unwrap_or(&host.address).to_string(),
            ssh: host.ssh.clone(),
            config_field,
        }
    }

    /// A jump host outside the inventory: the inventory's top-level `ssh:` settings, with the
    /// hop's own user and port; never the default `jump` (that would route it through itself).
    fn outside(hop: &JumpHop, defaults: &SshOptions) -> Target<'i> {
        let mut ssh = defaults.clone();
        ssh.user = hop.user.clone().or(ssh.user);
        ssh.port = hop.port.or(ssh.port);
        ssh.host = None;
        ssh.jump = None;
        Target {
            label: hop.to_string(),
            inventory_name: None,
            connect_name: hop.host.to_string(),
            ssh,
            config_field: vec!["ssh", "config_file"],
        }
    }
}

/// How a node is reached.
enum Route {
    /// As its own settings say (its `jump`, or the config's `ProxyJump`).
    Own,
    /// Through this node (or directly), whatever its own settings say: the later hops of a
    /// chain `a,b` are reached through the hop before them, as with OpenSSH's `-J a,b`.
    Through(Option<String>),
}

struct Builder<'a> {
    inventory: &'a Inventory,
    options: &'a RunOptions,
    secrets: &'a Secrets,
    home: PathBuf,
    local_user: String,
    identities: HashMap<PathBuf, Arc<PrivateKey>>,
    /// Default identities that could not be used (said once, not per host).
    skipped_defaults: HashSet<PathBuf>,
    known: HashMap<PathBuf, Arc<KnownHosts>>,
    configs: HashMap<PathBuf, Arc<SshConfig>>,
    nodes: HashMap<String, Node>,
    /// The targets being built, outermost first: a target met again is a loop.
    stack: Vec<String>,
    /// Config lines already warned about (one warning per line, not per host).
    warned: HashSet<String>,
}

impl Builder<'_> {
    /// Build `target`'s node (and the nodes of its jump hosts) and return its key.
    fn node(&mut self, target: &Target<'_>, route: &Route) -> Result<String, SetupError> {
        if let (Some(name), Route::Own) = (&target.inventory_name, route)
            && self.nodes.contains_key(name)
        {
            return Ok(name.clone());
        }
        let (spec, own_jump) = self.spec(target)?;
        let identity = format!("{}@{}:{}", spec.user, spec.host, spec.port);
        let me = target
            .inventory_name
            .clone()
            .unwrap_or_else(|| identity.clone());
        if let Some(pos) = self.stack.iter().position(|s| *s == me) {
            let mut path = self.stack[pos..].to_vec();
            path.push(me);
            return Err(SetupError::JumpLoop {
                host: self.stack[0].clone(),
                path: path.join(" -> "),
            });
        }
        self.stack.push(me);
        let via = match (route, &own_jump) {
            (Route::Through(via), _) => Ok(via.clone()),
            (Route::Own, Some(chain)) => self.chain(chain, &target.label),
            (Route::Own, None) => Ok(None),
        };
        self.stack.pop();
        let via = via?;
        let key = match (&target.inventory_name, route) {
            (Some(name), Route::Own) => name.clone(),
            _ => match &via {
                Some(via) => format!("{identity} via {via}"),
                None => identity,
            },
        };
        self.nodes.entry(key.clone()).or_insert(Node { spec, via });
        Ok(key)
    }

    /// Build the nodes of a jump chain; the key of its last hop.
    fn chain(&mut self, chain: &JumpList, host: &str) -> Result<Option<String>, SetupError> {
        let inventory = self.inventory;
        let mut via: Option<String> = None;
        for (i, hop) in chain.0.iter().enumerate() {
            let route = if i == 0 {
                Route::Own
            } else {
                Route::Through(via.clone())
            };
            let target = match hop {
                JumpRef::Name(name) => {
                    if let Some(host) = inventory.hosts.iter().find(|h| h.name == *name) {
                        Target::inventory(host)
                    } else {
                        let address = name.as_str().parse::<NetAddress>().map_err(|message| {
                            SetupError::JumpHost {
                                host: host.to_owned(),
                                hop: name.to_string(),
                                message,
                            }
                        })?;
                        let hop = JumpHop {
                            user: None,
                            host: address,
                            port: None,
                        };
                        Target::outside(&hop, &inventory.file.ssh)
                    }
                }
                JumpRef::Hop(hop) => Target::outside(hop, &inventory.file.ssh),
            };
            via = Some(self.node(&target, &route)?);
        }
        Ok(via)
    }

    /// The connection settings of `target`: the inventory's values, then the OpenSSH config's,
    /// then the defaults. Also its jump chain, if it has one.
    fn spec(&mut self, target: &Target<'_>) -> Result<(ConnectSpec, Option<JumpList>), SetupError> {
        let ssh = &target.ssh;
        let base = self.inventory.base_dir().to_owned();
        let config = match self.config(ssh, &target.config_field)? {
            Some(config) => config.lookup(
                &target.connect_name,
                &Context {
                    user: ssh.user.as_ref().map(UserName::as_str),
                    port: ssh.port,
                    default_user: "root",
                    local_user: &self.local_user,
                    home: &self.home,
                },
            )?,
            None => HostConfig::default(),
        };
        let keys = self.identities(ssh, &config, &base, target.inventory_name.as_deref())?;
        let known_path = match (&ssh.known_hosts, &config.known_hosts_files) {
            (Some(path), _) => resolve(&base, path),
            (None, Some(files)) => {
                if files.value.len() > 1 && self.warned.insert(files.loc.to_string()) {
                    tracing::warn!(
                        "{}: UserKnownHostsFile: only the first file, {}, is read and written",
                        files.loc,
                        files.value[0].display()
                    );
                }
                files.value[0].clone()
            }
            (None, None) => self.home.join(".ssh/known_hosts"),
        };
        let known_hosts = self.known_hosts(&known_path)?;
        let host_key_policy = match (ssh.host_key_policy, &config.strict_host_key_checking) {
            (Some(policy), _) => policy,
            (None, Some(strict)) => self.policy(strict),
            (None, None) => HostKeyPolicy::Strict,
        };
        let jump = match (&ssh.jump, &config.proxy_jump) {
            (Some(jump), _) => Some(jump.clone()),
            (None, Some(proxy_jump)) => proxy_jump.value.clone(),
            (None, None) => None,
        };
        let spec = ConnectSpec {
            name: target.label.clone(),
            host: config
                .hostname
                .map_or_else(|| target.connect_name.clone(), |h| h.value.to_string()),
            port: ssh.port.or(config.port.map(|p| p.value)).unwrap_or(22),
            user: ssh
                .user
                .clone()
                .or(config.user.map(|u| u.value))
                .map_or_else(|| "root".to_owned(), |u| u.to_string()),
            identities: keys,
            use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some(),
            known_hosts,
            host_key_policy,
            connect_timeout: self
                .options
                .connect_timeout
                .or(ssh.connect_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            command_timeout: self
                .options
                .command_timeout
                .or(ssh.command_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        };
        Ok((spec, jump))
    }

    /// The identities to offer, in order: the inventory's, else the config's `IdentityFile`s,
    /// else the default files that exist (the agent's keys come after them).
    fn identities(
        &mut self,
        ssh: &SshOptions,
        config: &HostConfig,
        base: &Path,
        host: Option<&str>,
    ) -> Result<Vec<Arc<PrivateKey>>, SetupError> {
        let mut keys = Vec::new();
        let secrets = self.secrets; // a shared reference, not a borrow of self
        let named = &secrets.key_passphrase;
        if let Some(path) = &ssh.identity_file {
            let resolved = resolve(base, path);
            let key = self.identity(&resolved, named).map_err(|e| match e {
                SetupError::Identity(error) => {
                    let field = self.inventory.ssh_setting(host, "identity_file");
                    let field: Vec<&str> = field.iter().map(String::as_str).collect();
                    SetupError::IdentityFile {
                        location: self.inventory.location(&field),
                        field: field.join("."),
                        written: path.to_string(),
                        resolved: std::path::absolute(&resolved).unwrap_or(resolved),
                        error: Box::new(error),
                    }
                }
                other => other,
            })?;
            keys.push(key);
        } else if !config.identity_files.is_empty() {
            // As OpenSSH: files that do not exist are skipped; the defaults are not added.
            for file in &config.identity_files {
                if file.value.exists() {
                    match self.identity(&file.value, named) {
                        Ok(key) => keys.push(key),
                        Err(e) => tracing::warn!("{}: skipping IdentityFile: {e}", file.loc),
                    }
                } else {
                    tracing::debug!(
                        "{}: IdentityFile {} does not exist",
                        file.loc,
                        file.value.display()
                    );
                }
            }
        } else {
            // Never a terminal prompt for a key nobody named: an encrypted default key is
            // usually in the ssh-agent, which is tried next.
            let unnamed = self.secrets.key_passphrase.without_terminal();
            for default in [".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"] {
                let path = self.home.join(default);
                if path.exists() && !self.skipped_defaults.contains(&path) {
                    match self.identity(&path, &unnamed) {
                        Ok(key) => keys.push(key),
                        Err(e) => {
                            log_skipped_default(&path, &e);
                            self.skipped_defaults.insert(path);
                        }
                    }
                }
            }
        }
        Ok(keys)
    }

    /// `StrictHostKeyChecking` as a policy. We never turn host key checking off: `no`/`off`
    /// become accept-new (a changed key is still refused), and say so once.
    fn policy(&mut self, strict: &Located<Strictness>) -> HostKeyPolicy {
        match strict.value {
            Strictness::Yes | Strictness::Ask => HostKeyPolicy::Strict,
            Strictness::AcceptNew => HostKeyPolicy::AcceptNew,
            Strictness::No => {
                if self.warned.insert(strict.loc.to_string()) {
                    tracing::warn!(
                        "{}: StrictHostKeyChecking no: clockprov never turns host key checking off; using accept-new (unknown keys are recorded, changed keys refused)",
                        strict.loc
                    );
                }
                HostKeyPolicy::AcceptNew
            }
        }
    }

    /// The OpenSSH config for these settings: `config_file` if set (it must be readable), else
    /// `~/.ssh/config` if it exists, else none.
    fn config(
        &mut self,
        ssh: &SshOptions,
        field: &[&str],
    ) -> Result<Option<Arc<SshConfig>>, SetupError> {
        let (path, explicit) = if let Some(path) = &ssh.config_file {
            (resolve(self.inventory.base_dir(), path), true)
        } else {
            let path = self.home.join(".ssh/config");
            if !path.exists() {
                return Ok(None);
            }
            (path, false)
        };
        if let Some(config) = self.configs.get(&path) {
            return Ok(Some(config.clone()));
        }
        let config = match SshConfig::load(&path, &self.home) {
            Ok(config) => Arc::new(config),
            Err(error @ ConfigError::Read { .. }) if explicit => {
                let location = self.inventory.location(field);
                return Err(SetupError::ConfigFile {
                    location,
                    field: field.join("."),
                    error,
                });
            }
            Err(e) => return Err(e.into()),
        };
        self.configs.insert(path, config.clone());
        Ok(Some(config))
    }

    fn identity(
        &mut self,
        path: &Path,
        passphrase: &KeyPassphrase,
    ) -> Result<Arc<PrivateKey>, SetupError> {
        if let Some(key) = self.identities.get(path) {
            return Ok(key.clone());
        }
        let key = load_identity(path, passphrase)?;
        self.identities.insert(path.to_owned(), key.clone());
        Ok(key)
    }

    fn known_hosts(&mut self, path: &Path) -> Result<Arc<KnownHosts>, SetupError> {
        if let Some(known) = self.known.get(path) {
            return Ok(known.clone());
        }
        let known = Arc::new(
            KnownHosts::load(path).map_err(|source| SetupError::KnownHosts {
                path: path.to_owned(),
                source,
            })?,
        );
        self.known.insert(path.to_owned(), known.clone());
        Ok(known)
    }
}

fn resolve(base: &Path, path: &LocalPath) -> PathBuf {
    let expanded = path.expand();
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

/// Why an inventory `identity_file` cannot be used, with the path it was resolved to.
fn identity_file_problem(written: &str, resolved: &Path, error: &IdentityError) -> String {
    let resolution = if written.starts_with("~/") {
        format!(" (resolved from {written} against $HOME)")
    } else if Path::new(written).is_relative() {
        format!(" (resolved from {written} against the inventory's directory)")
    } else {
        String::new()
    };
    match error {
        IdentityError::Read { error, .. } => format!(
            "cannot read {}{resolution}: {}",
            resolved.display(),
            io_reason(error)
        ),
        IdentityError::Decode { error, .. } => format!(
            "{}{resolution} is not a private key clockprov can use: {error}",
            resolved.display()
        ),
        other => other.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An inventory and an OpenSSH config in a scratch directory that is also `$HOME`.
    struct Scratch {
        dir: tempfile::TempDir,
    }

    impl Scratch {
        fn new(config: &str) -> Scratch {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
            std::fs::write(dir.path().join(".ssh/config"), config).unwrap();
            Scratch { dir }
        }

        fn connector(&self, inventory: &str) -> Result<Connector, SetupError> {
            let path = self.dir.path().join("inv.yaml");
            std::fs::write(&path, inventory).unwrap();
            let inventory = Inventory::load(&path).unwrap();
            let options = RunOptions {
                forks: 1,
                connect_timeout: None,
                command_timeout: None,
                progress: false,
            };
            Connector::with_home(
                &inventory,
                &options,
                &Secrets::none(),
                self.dir.path().to_owned(),
            )
        }
    }

    const SERVERS: &str = "ntp_servers:\n  zcloud:\n    address: 10.0.0.1\n    allow: [10.0.0.0/8]\n    local_stratum: 10\n";

    fn inventory(ssh: &str, clients: &str) -> String {
        format!("ssh:\n{ssh}{SERVERS}clients:\n{clients}")
    }

    #[test]
    fn the_config_decides_where_unless_the_inventory_says() {
        let scratch = Scratch::new(
            "Host data-*\n  HostName %h.int\n  User ops\n  Port 2222\n  ProxyJump admin@bastion.example:2200,zcloud\n  StrictHostKeyChecking no\nHost 10.0.0.1\n  User zroot\nHost *\n  User nobody\n  IdentityFile ~/.ssh/missing\n",
        );
        let connector = scratch
            .connector(&inventory(
                "  known_hosts: kh\n",
                "  d1: { address: 10.0.0.2, ssh: { host: data-1 } }\n  d2: { address: 10.0.0.3, ssh: { host: data-2, user: root, port: 22 } }\n  d3: { address: 10.0.0.4, ssh: { jump: none.example } }\n",
            ))
            .unwrap();
        assert_eq!(
            connector.route("d1"),
            [
                "admin@bastion.example:2200 (admin@bastion.example:2200)",
                "zcloud (zroot@10.0.0.1:22)",
                "d1 (ops@data-1.int:2222)"
            ]
        );
        assert_eq!(
            connector.route("d2").last().unwrap(),
            "d2 (root@data-2.int:22)"
        );
        // The inventory's jump wins over the config; the outside jump host gets `Host *`'s user.
        assert_eq!(
            connector.route("d3"),
            [
                "none.example (nobody@none.example:22)",
                "d3 (nobody@10.0.0.4:22)"
            ]
        );
        let d1 = &connector.nodes[&connector.hosts["d1"]];
        assert_eq!(
            d1.spec.host_key_policy,
            HostKeyPolicy::AcceptNew,
            "no means accept-new"
        );
        assert!(
            d1.spec.identities.is_empty(),
            "a missing IdentityFile is skipped"
        );
        assert_eq!(
            d1.spec.known_hosts.path(),
            scratch.dir.path().join("kh"),
            "inventory paths are relative to the inventory"
        );
        // zcloud as the second hop is reached through the first: a node of its own, not
        // zcloud's direct connection.
        let zcloud_direct = &connector.hosts["zcloud"];
        assert_ne!(d1.via.as_ref(), Some(zcloud_direct));
        assert_eq!(connector.nodes[zcloud_direct].via, None);
    }

    #[test]
    fn one_node_per_jump_host_shared_by_the_hosts_behind_it() {
        let scratch = Scratch::new("");
        let connector = scratch
            .connector(&inventory(
                "  known_hosts: kh\n",
                "  d1: { address: 10.0.0.2, ssh: { jump: \"root@10.0.0.9:22\" } }\n  d2: { address: 10.0.0.3, ssh: { jump: \"root@10.0.0.9\" } }\n  d3: { address: 10.0.0.4, ssh: { jump: d1 } }\n  d4: { address: 10.0.0.5, ssh: { jump: d1 } }\n",
            ))
            .unwrap();
        let via = |name: &str| connector.nodes[&connector.hosts[name]].via.clone();
        assert_eq!(via("d1"), via("d2"));
        assert_eq!(via("d3"), Some("d1".to_owned()));
        assert_eq!(via("d4"), Some("d1".to_owned()));
        // zcloud, d1..d4 and the one outside jump host.
        assert_eq!(connector.nodes.len(), 6);
        assert_eq!(
            connector.route("d3"),
            [
                "root@10.0.0.9:22 (root@10.0.0.9:22)",
                "d1 (root@10.0.0.2:22)",
                "d3 (root@10.0.0.4:22)"
            ]
        );
    }

    #[test]
    fn loops_through_the_config_are_errors() {
        let scratch = Scratch::new("Host *\n  ProxyJump bastion.example\n");
        let err = scratch
            .connector(&inventory("  known_hosts: kh\n", ""))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "the jump chain of zcloud loops: root@bastion.example:22 -> root@bastion.example:22"
        );
        // `jump: none` in the inventory overrides the config's ProxyJump.
        let connector = scratch
            .connector(&inventory(
                "  known_hosts: kh\n  jump: none\n",
                "  d1: { address: 10.0.0.2, ssh: { jump: zcloud } }\n",
            ))
            .unwrap();
        assert_eq!(connector.route("zcloud"), ["zcloud (root@10.0.0.1:22)"]);
        assert_eq!(connector.route("d1").len(), 2);
        // The usual way to write it works.
        let scratch = Scratch::new("Host * !bastion.example\n  ProxyJump bastion.example\n");
        let connector = scratch
            .connector(&inventory("  known_hosts: kh\n", ""))
            .unwrap();
        assert_eq!(
            connector.route("zcloud"),
            [
                "bastion.example (root@bastion.example:22)",
                "zcloud (root@10.0.0.1:22)"
            ]
        );
    }

    #[test]
    fn config_file_errors_say_where() {
        let scratch = Scratch::new("Host *\n  Port seventy\n");
        let err = scratch
            .connector(&inventory("  known_hosts: kh\n", ""))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}:2: Port \"seventy\" is not a port number (1 to 65535)",
                scratch.dir.path().join(".ssh/config").display()
            )
        );
        let err = scratch
            .connector(&inventory(
                "  known_hosts: kh\n  config_file: nope/config\n",
                "",
            ))
            .err()
            .unwrap()
            .to_string();
        let inv = scratch.dir.path().join("inv.yaml");
        assert_eq!(
            err,
            format!(
                "{}:3:16: ssh.config_file: cannot read OpenSSH config {}: No such file or directory",
                inv.display(),
                scratch.dir.path().join("nope/config").display()
            )
        );
        // An explicit config_file replaces ~/.ssh/config (which has the bad line).
        std::fs::write(scratch.dir.path().join("other"), "Host *\n  User other\n").unwrap();
        let connector = scratch
            .connector(&inventory("  known_hosts: kh\n  config_file: other\n", ""))
            .unwrap();
        assert_eq!(connector.route("zcloud"), ["zcloud (other@10.0.0.1:22)"]);
    }

    #[test]
    fn a_missing_identity_file_names_its_line_and_resolved_path() {
        let scratch = Scratch::new("");
        let message = |inventory: &str| {
            let error = scratch.connector(inventory).err().unwrap();
            // As the command line prints it: the error and its sources, `{:#}`.
            format!("{:#}", anyhow::Error::from(error))
                .replace(&scratch.dir.path().display().to_string(), "/SCRATCH")
                .replace(&std::env::var("HOME").unwrap_or_default(), "/HOME")
        };
        insta::assert_snapshot!(
            message(&inventory("  known_hosts: kh\n  identity_file: keys/z3\n", "")),
            @"/SCRATCH/inv.yaml:3:18: ssh.identity_file: cannot read /SCRATCH/keys/z3 (resolved from keys/z3 against the inventory's directory): No such file or directory"
        );
        insta::assert_snapshot!(
            message(&inventory(
                "  known_hosts: kh\n",
                "  c1: { address: 10.0.0.2, ssh: { identity_file: ~/.ssh/gone } }\n"
            )),
            @"/SCRATCH/inv.yaml:9:50: clients.c1.ssh.identity_file: cannot read /HOME/.ssh/gone (resolved from ~/.ssh/gone against $HOME): No such file or directory"
        );
        std::fs::write(scratch.dir.path().join("not-a-key"), "hello\n").unwrap();
        insta::assert_snapshot!(
            message(&inventory("  known_hosts: kh\n  identity_file: not-a-key\n", "")),
            @"/SCRATCH/inv.yaml:3:18: ssh.identity_file: /SCRATCH/not-a-key (resolved from not-a-key against the inventory's directory) is not a private key clockprov can use: Could not read key"
        );
    }
}
