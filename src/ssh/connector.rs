//! Connections: each host's connection, opened once, on first use, and shared by the hosts
//! behind it. Where and as whom to connect is decided by `ssh::resolve` (pure); the
//! files it names are read by `ssh::files` (once each); this module turns the result
//! into live sessions.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::fleet::RunOptions;
use crate::inventory::{BecomeMethod, Inventory, io_reason};
use crate::outcome::HostError;
use crate::ssh::config::{ConfigError, local_user_name};
use crate::ssh::files::Files;
use crate::ssh::identity::IdentityError;
use crate::ssh::resolve::{self, Routes, Settings};
use crate::ssh::secret::Secrets;
use crate::ssh::sudo::Privilege;
use crate::ssh::transport::{ConnectSpec, Session};
use crate::value::JumpHop;

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

type SessionCell = OnceCell<Result<Arc<Session>, HostError>>;

/// One connection to open, and the one it goes through.
struct Node {
    spec: ConnectSpec,
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
    /// The nodes some other node is reached through.
    jumps: std::collections::HashSet<String>,
    /// How each host's privileged scripts run (sudo for `become: sudo` with a non-root login).
    privileges: HashMap<String, Privilege>,
}

impl Connector {
    /// As [`Connector::with_secrets`] with no secrets: encrypted keys and sudo passwords fail.
    ///
    /// # Errors
    /// As for [`Connector::with_secrets`].
    pub fn new(inventory: &Inventory, options: &RunOptions) -> Result<Connector, SetupError> {
        Connector::with_secrets(inventory, options, &Secrets::none(), &[])
    }

    /// Resolve every host's connection from the inventory and the OpenSSH config, and load the
    /// identities (decrypting them with `secrets.key_passphrase`) and `known_hosts` files they
    /// name, once each. `outside`: hosts outside the inventory to reach as its hosts are
    /// (its top-level `ssh:` settings), each [`Connector::session`]'s name its written form.
    ///
    /// # Errors
    /// A file cannot be read, the OpenSSH config is malformed, or a jump chain loops: nothing
    /// has been contacted yet.
    pub fn with_secrets(
        inventory: &Inventory,
        options: &RunOptions,
        secrets: &Secrets,
        outside: &[JumpHop],
    ) -> Result<Connector, SetupError> {
        let home = std::env::var_os("HOME").map_or_else(PathBuf::new, PathBuf::from);
        Self::with_home(inventory, options, secrets, home, outside)
    }

    /// As [`Connector::with_secrets`], with `home` for `~` (tests use their own).
    fn with_home(
        inventory: &Inventory,
        options: &RunOptions,
        secrets: &Secrets,
        home: PathBuf,
        outside: &[JumpHop],
    ) -> Result<Connector, SetupError> {
        let settings = Settings {
            home: home.clone(),
            local_user: local_user_name(),
            connect_timeout: options.connect_timeout,
            command_timeout: options.command_timeout,
            use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some(),
        };
        let mut files = Files::new(home, secrets);
        let routes = resolve::resolve(inventory, &settings, &mut files, outside)?;
        Self::connect_routes(inventory, &routes, &mut files, secrets, options, outside)
    }

    /// Load what `routes` names and make the nodes.
    fn connect_routes(
        inventory: &Inventory,
        routes: &Routes,
        files: &mut Files<'_>,
        secrets: &Secrets,
        options: &RunOptions,
        outside: &[JumpHop],
    ) -> Result<Connector, SetupError> {
        for (at, message) in &routes.warnings {
            files.warn_once(at, &format!("{at}: {message}"));
        }
        let mut nodes = HashMap::new();
        for (key, endpoint) in &routes.endpoints {
            let spec = ConnectSpec {
                name: endpoint.label.clone(),
                host: endpoint.host.clone(),
                port: endpoint.port,
                user: endpoint.user.clone(),
                identities: files.identities(&endpoint.identities)?,
                use_agent: endpoint.use_agent,
                known_hosts: files
                    .known_hosts(&endpoint.known_hosts, &endpoint.global_known_hosts)?,
                host_key_policy: endpoint.host_key_policy,
                connect_timeout: endpoint.connect_timeout,
                command_timeout: endpoint.command_timeout,
                max_output: options.max_output,
            };
            nodes.insert(
                key.clone(),
                Node {
                    spec,
                    via: endpoint.via.clone(),
                },
            );
        }
        let mut privileges = HashMap::new();
        // Hosts outside the inventory become as its top-level `ssh:` says.
        let becomes = inventory
            .hosts
            .iter()
            .map(|host| (host.name.to_string(), host.ssh.become_method))
            .chain(
                outside
                    .iter()
                    .map(|hop| (hop.to_string(), inventory.file.ssh.become_method)),
            );
        for (name, become_method) in becomes {
            // sudo only for a login that is not root already (the user may come from the config).
            let user = &routes.endpoints[&routes.hosts[&name]].user;
            if become_method == Some(BecomeMethod::Sudo) && user != "root" {
                privileges.insert(
                    name.clone(),
                    Privilege::Sudo {
                        user: user.clone(),
                        password: secrets.become_password.clone(),
                    },
                );
            }
            let route = routes.route(&name);
            if route.len() > 1 {
                tracing::debug!("route to {name}: {}", route.join(" -> "));
            }
        }
        let cells = nodes
            .keys()
            .map(|key| (key.clone(), SessionCell::new()))
            .collect();
        let jumps = nodes.values().filter_map(|n| n.via.clone()).collect();
        Ok(Connector {
            nodes,
            jumps,
            hosts: routes.hosts.clone(),
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
    /// The host (or a jump host on the way) cannot be reached or refuses us; the error's kind
    /// is a connection kind.
    pub async fn session(&self, name: &str) -> Result<Arc<Session>, HostError> {
        let key = self.hosts.get(name).ok_or_else(|| {
            HostError::new(
                crate::outcome::ErrorKind::Internal,
                format!("no host named {name}"),
            )
        })?;
        self.node_session(key).await
    }

    /// Close `name`'s connection now: the command is done with that host (see
    /// [`Session::release`]). Not a jump host's, which the hosts behind it still use.
    pub async fn release(&self, name: &str) {
        let Some(key) = self.hosts.get(name) else {
            return;
        };
        if self.jumps.contains(key) {
            return;
        }
        if let Some(Ok(session)) = self.cells[key].get() {
            session.release().await;
        }
    }

    /// Let go of every shell kept for a next script that never came (the hosts apply had
    /// nothing to do on): they get end of input and exit.
    pub async fn release_kept(&self) {
        for cell in self.cells.values() {
            if let Some(Ok(session)) = cell.get()
                && let Some(process) = session.take_kept()
            {
                process.close().await;
            }
        }
    }

    fn node_session<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<Session>, HostError>> + Send + 'a>> {
        Box::pin(async move {
            let node = &self.nodes[key];
            self.cells[key]
                .get_or_init(|| async move {
                    let jump = match &node.via {
                        Some(via) => Some(self.node_session(via).await.map_err(|e| {
                            e.context(&format!(
                                "cannot reach jump host {} for {}",
                                self.nodes[via].spec.name, node.spec.name
                            ))
                        })?),
                        None => None,
                    };
                    Session::connect_via(&node.spec, jump.as_deref())
                        .await
                        .map(Arc::new)
                        .map_err(|e| HostError::connecting(&e))
                })
                .await
                .clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inventory and an OpenSSH config in a scratch directory that is also `$HOME`: the
    /// resolution itself is tested without files in `resolve`; these test what is read.
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
            self.connector_with(inventory, &[])
        }

        /// As [`Scratch::connector`], with hosts outside the inventory to reach too.
        fn connector_with(
            &self,
            inventory: &str,
            outside: &[JumpHop],
        ) -> Result<Connector, SetupError> {
            let path = self.dir.path().join("inv.yaml");
            std::fs::write(&path, inventory).unwrap();
            let inventory = Inventory::load(&path).unwrap();
            let options = RunOptions {
                forks: 1,
                connect_timeout: None,
                command_timeout: None,
                max_output: crate::ssh::transport::DEFAULT_MAX_OUTPUT,
                progress: false,
                max_file_size: crate::host::facts::DEFAULT_MAX_FILE_SIZE,
                keep_shells: false,
                release_done: false,
                keep_open: None,
            };
            Connector::with_home(
                &inventory,
                &options,
                &Secrets::none(),
                self.dir.path().to_owned(),
                outside,
            )
        }
    }

    const SERVERS: &str = "ntp_servers:\n  zcloud:\n    address: 10.0.0.1\n    allow: [10.0.0.0/8]\n    local_stratum: 10\n";

    fn inventory(ssh: &str, clients: &str) -> String {
        format!("ssh:\n{ssh}{SERVERS}clients:\n{clients}")
    }

    #[test]
    fn files_are_read_where_the_settings_say() {
        let scratch = Scratch::new("Host *\n  User nobody\n  IdentityFile ~/.ssh/missing\n");
        let connector = scratch
            .connector(&inventory(
                "  known_hosts: kh\n",
                "  d1: { address: 10.0.0.2 }\n",
            ))
            .unwrap();
        let d1 = &connector.nodes[&connector.hosts["d1"]].spec;
        assert_eq!(d1.user, "nobody");
        assert!(
            d1.identities.is_empty(),
            "a missing IdentityFile is skipped"
        );
        assert_eq!(
            d1.known_hosts.path(),
            scratch.dir.path().join("kh"),
            "inventory paths are relative to the inventory"
        );
        // One known_hosts file, loaded once, shared by every host that names it (a key learned
        // through one is seen by all).
        let zcloud = &connector.nodes[&connector.hosts["zcloud"]].spec;
        assert!(d1.known_hosts.shares_files_with(&zcloud.known_hosts));
    }

    /// A host outside the inventory (`check --ceph ops@mon`) becomes root as the inventory's
    /// top-level `become` says, through sudo only for a login that is not root.
    #[test]
    fn hosts_outside_the_inventory_become_as_the_defaults_say() {
        let scratch = Scratch::new("Host mon\n  HostName 10.0.0.9\n");
        let outside: Vec<JumpHop> = ["ops@mon", "root@mon"]
            .iter()
            .map(|h| h.parse().unwrap())
            .collect();
        let connector = scratch
            .connector_with(
                &inventory("  known_hosts: kh\n  become: sudo\n", ""),
                &outside,
            )
            .unwrap();
        assert!(matches!(
            connector.privilege("ops@mon"),
            Privilege::Sudo { user, .. } if user == "ops"
        ));
        assert!(matches!(connector.privilege("root@mon"), Privilege::Direct));
        let mon = &connector.nodes[&connector.hosts["ops@mon"]].spec;
        assert_eq!((mon.host.as_str(), mon.port), ("10.0.0.9", 22));
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
        assert_eq!(
            connector.nodes[&connector.hosts["zcloud"]].spec.user,
            "other"
        );
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
