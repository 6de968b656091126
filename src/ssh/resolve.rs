//! Where and as whom each host is reached, decided without touching a file or the network:
//! the inventory's settings (a host's own `ssh:` over the top-level defaults) win over the
//! OpenSSH config's, which win over clockprov's defaults; the host key policy; the jump graph
//! (inventory hosts, hosts outside the inventory, chains), with loops refused before anything is
//! contacted.
//!
//! Configs come through a [`ConfigSource`] (the loader reads files; tests hand in text), and the
//! result names the files to load (identities, `known_hosts`) rather than loading them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::inventory::{HostKeyPolicy, Inventory, SshOptions};
use crate::ssh::config::{ConfigError, Context, HostConfig, Located, SshConfig, Strictness};
use crate::ssh::connector::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, SetupError};
use crate::value::{JumpHop, JumpList, JumpRef, NetAddress, UserName};

/// OpenSSH's default `UserKnownHostsFile`, under `~`.
const DEFAULT_USER_KNOWN_HOSTS: [&str; 2] = [".ssh/known_hosts", ".ssh/known_hosts2"];
/// OpenSSH's default `GlobalKnownHostsFile`.
const DEFAULT_GLOBAL_KNOWN_HOSTS: [&str; 2] =
    ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// The OpenSSH configs resolution may consult.
pub(crate) trait ConfigSource {
    /// The config at `path`, named by the inventory: it must be readable.
    ///
    /// # Errors
    /// It cannot be read or parsed.
    fn named(&mut self, path: &Path) -> Result<Arc<SshConfig>, ConfigError>;
    /// The config at `path` (`~/.ssh/config`) if it exists.
    ///
    /// # Errors
    /// It exists but cannot be read or parsed.
    fn default_config(&mut self, path: &Path) -> Result<Option<Arc<SshConfig>>, ConfigError>;
}

/// What resolution knows besides the inventory.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Where `~` and `~/.ssh` are.
    pub home: PathBuf,
    /// The user running clockprov (`%u`, `Match localuser`).
    pub local_user: String,
    /// The command line's timeouts, which win over the inventory's.
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    /// Offer the ssh-agent's keys too.
    pub use_agent: bool,
}

/// Which private keys to offer, in order (the agent's come after them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identities {
    /// The inventory's `identity_file`: it must load; an error names where it is written.
    Named {
        path: PathBuf,
        /// As the inventory writes it.
        written: String,
        /// `FILE:LINE:COLUMN` and the dotted field of the setting.
        location: String,
        field: String,
    },
    /// The config's `IdentityFile`s: missing ones are skipped, as OpenSSH does.
    FromConfig(Vec<Located<PathBuf>>),
    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`, those that exist.
    Defaults(Vec<PathBuf>),
}

/// One connection to open: to an inventory host, or to a jump host outside the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// For messages: the inventory name, or the hop as written.
    pub label: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identities: Identities,
    pub use_agent: bool,
    /// The user `known_hosts` files: new keys are recorded in the first.
    pub known_hosts: Vec<PathBuf>,
    /// The global ones, consulted after the user files, never written.
    pub global_known_hosts: Vec<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// The endpoint whose connection this one goes through.
    pub via: Option<String>,
}

/// Every endpoint, and which one each inventory host is.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub endpoints: HashMap<String, Endpoint>,
    /// Inventory name -> its endpoint's key.
    pub hosts: HashMap<String, String>,
    /// Config lines worth a warning (`StrictHostKeyChecking no`),
    /// each once: `(file:line, message)`.
    pub warnings: BTreeSet<(String, String)>,
}

impl Routes {
    /// The route to `name`: its jump hosts, first to last, then itself, as
    /// `label (user@host:port)` (for logs and tests).
    #[must_use]
    pub(crate) fn route(&self, name: &str) -> Vec<String> {
        let mut route = Vec::new();
        let mut key = self.hosts.get(name);
        while let Some(k) = key {
            let endpoint = &self.endpoints[k];
            route.push(format!(
                "{} ({}@{}:{})",
                endpoint.label, endpoint.user, endpoint.host, endpoint.port
            ));
            key = endpoint.via.as_ref();
        }
        route.reverse();
        route
    }
}

/// Resolve every inventory host's connection (and its jump hosts'), and those of `outside`:
/// hosts outside the inventory reached as its hosts are (`check --ceph root@10.0.0.5`), each
/// under its written form (`hop.to_string()`) in [`Routes::hosts`].
///
/// # Errors
/// A config cannot be read or is malformed, a jump host is not a host, or a jump chain loops.
pub(crate) fn resolve(
    inventory: &Inventory,
    settings: &Settings,
    configs: &mut dyn ConfigSource,
    outside: &[JumpHop],
) -> Result<Routes, SetupError> {
    let mut resolver = Resolver {
        inventory,
        settings,
        configs,
        routes: Routes::default(),
        stack: Vec::new(),
    };
    for host in &inventory.hosts {
        let target = Target::inventory(inventory, host.name.as_str())
            .expect("an inventory host is in the inventory");
        let key = resolver.endpoint(&target, &Route::Own)?;
        resolver.routes.hosts.insert(host.name.to_string(), key);
    }
    for hop in outside {
        let target = Target::reached(hop, &inventory.file.ssh);
        let key = resolver.endpoint(&target, &Route::Own)?;
        resolver.routes.hosts.insert(hop.to_string(), key);
    }
    Ok(resolver.routes)
}

/// What to connect to, before the OpenSSH config is applied.
struct Target {
    /// For messages: the inventory name, or the hop as written.
    label: String,
    /// Set for inventory hosts (their endpoint key is their name).
    inventory_name: Option<String>,
    /// The name looked up in the OpenSSH config and connected to unless it says `HostName`.
    connect_name: String,
    /// The inventory's settings: they win over the config's.
    ssh: SshOptions,
    /// Where `config_file` is in the inventory, for the message when it cannot be read.
    config_field: Vec<String>,
}

impl Target {
    /// The inventory host `name`, if there is one.
    fn inventory(inventory: &Inventory, name: &str) -> Option<Target> {
        let host = inventory.hosts.iter().find(|h| h.name.as_str() == name)?;
        Some(Target {
            label: host.name.to_string(),
            inventory_name: Some(host.name.to_string()),
            connect_name: host.ssh.host.as_ref().unwrap_or(&host.address).to_string(),
            ssh: host.ssh.clone(),
            config_field: inventory.ssh_setting(Some(name), "config_file"),
        })
    }

    /// A jump host outside the inventory: as [`Target::reached`], but never through the
    /// default `jump` (that would route it through itself).
    fn outside(hop: &JumpHop, defaults: &SshOptions) -> Target {
        let mut target = Target::reached(hop, defaults);
        target.ssh.jump = None;
        target
    }

    /// A host outside the inventory reached like its hosts: the inventory's top-level `ssh:`
    /// settings (its default `jump` too), with the hop's own user and port.
    fn reached(hop: &JumpHop, defaults: &SshOptions) -> Target {
        let mut ssh = defaults.clone();
        ssh.user = hop.user.clone().or(ssh.user);
        ssh.port = hop.port.or(ssh.port);
        ssh.host = None;
        Target {
            label: hop.to_string(),
            inventory_name: None,
            connect_name: hop.host.to_string(),
            ssh,
            config_field: vec!["ssh".to_owned(), "config_file".to_owned()],
        }
    }
}

/// How an endpoint is reached.
enum Route {
    /// As its own settings say (its `jump`, or the config's `ProxyJump`).
    Own,
    /// Through this endpoint (or directly), whatever its own settings say: the later hops of a
    /// chain `a,b` are reached through the hop before them, as with OpenSSH's `-J a,b`.
    Through(Option<String>),
}

struct Resolver<'a> {
    inventory: &'a Inventory,
    settings: &'a Settings,
    configs: &'a mut dyn ConfigSource,
    routes: Routes,
    /// The targets being resolved, outermost first: a target met again is a loop.
    stack: Vec<String>,
}

impl Resolver<'_> {
    /// Resolve `target`'s endpoint (and its jump hosts') and return its key.
    fn endpoint(&mut self, target: &Target, route: &Route) -> Result<String, SetupError> {
        if let (Some(name), Route::Own) = (&target.inventory_name, route)
            && self.routes.endpoints.contains_key(name)
        {
            return Ok(name.clone());
        }
        let (mut endpoint, own_jump) = self.settings_of(target)?;
        let identity = format!("{}@{}:{}", endpoint.user, endpoint.host, endpoint.port);
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
        endpoint.via = via;
        self.routes.endpoints.entry(key.clone()).or_insert(endpoint);
        Ok(key)
    }

    /// Resolve the endpoints of a jump chain; the key of its last hop.
    fn chain(&mut self, chain: &JumpList, host: &str) -> Result<Option<String>, SetupError> {
        let mut via: Option<String> = None;
        for (i, hop) in chain.0.iter().enumerate() {
            let route = if i == 0 {
                Route::Own
            } else {
                Route::Through(via.clone())
            };
            let target = match hop {
                JumpRef::Name(name) => {
                    if let Some(target) = Target::inventory(self.inventory, name.as_str()) {
                        target
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
                        Target::outside(&hop, &self.inventory.file.ssh)
                    }
                }
                JumpRef::Hop(hop) => Target::outside(hop, &self.inventory.file.ssh),
            };
            via = Some(self.endpoint(&target, &route)?);
        }
        Ok(via)
    }

    /// The connection settings of `target`: the inventory's values, then the OpenSSH config's,
    /// then the defaults. Also its jump chain, if it has one.
    fn settings_of(&mut self, target: &Target) -> Result<(Endpoint, Option<JumpList>), SetupError> {
        let ssh = &target.ssh;
        let home = &self.settings.home;
        let config = match self.config(ssh, &target.config_field)? {
            Some(config) => config.lookup(
                &target.connect_name,
                &Context {
                    user: ssh.user.as_ref().map(UserName::as_str),
                    port: ssh.port,
                    default_user: "root",
                    local_user: &self.settings.local_user,
                    home,
                },
            )?,
            None => HostConfig::default(),
        };
        let identities = if let Some(path) = &ssh.identity_file {
            let field = self
                .inventory
                .ssh_setting(target.inventory_name.as_deref(), "identity_file");
            let field: Vec<&str> = field.iter().map(String::as_str).collect();
            Identities::Named {
                path: self.inventory.resolve_path(path),
                written: path.to_string(),
                location: self.inventory.location(&field),
                field: field.join("."),
            }
        } else if !config.identity_files.is_empty() {
            Identities::FromConfig(config.identity_files.clone())
        } else {
            Identities::Defaults(
                [".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"]
                    .iter()
                    .map(|default| home.join(default))
                    .collect(),
            )
        };
        // Every file that applies is consulted, as OpenSSH does; new keys go to the first.
        let known_hosts = match (&ssh.known_hosts, &config.known_hosts_files) {
            (Some(path), _) => vec![self.inventory.resolve_path(path)],
            (None, Some(files)) => files.value.clone(),
            (None, None) => DEFAULT_USER_KNOWN_HOSTS
                .iter()
                .map(|file| home.join(file))
                .collect(),
        };
        let global_known_hosts = match &config.global_known_hosts_files {
            Some(files) => files.value.clone(),
            None => DEFAULT_GLOBAL_KNOWN_HOSTS
                .iter()
                .map(PathBuf::from)
                .collect(),
        };
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
        let endpoint = Endpoint {
            label: target.label.clone(),
            host: config
                .hostname
                .map_or_else(|| target.connect_name.clone(), |h| h.value.to_string()),
            port: ssh.port.or(config.port.map(|p| p.value)).unwrap_or(22),
            user: ssh
                .user
                .clone()
                .or(config.user.map(|u| u.value))
                .map_or_else(|| "root".to_owned(), |u| u.to_string()),
            identities,
            use_agent: self.settings.use_agent,
            known_hosts,
            global_known_hosts,
            host_key_policy,
            connect_timeout: self
                .settings
                .connect_timeout
                .or(ssh.connect_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            command_timeout: self
                .settings
                .command_timeout
                .or(ssh.command_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            via: None,
        };
        Ok((endpoint, jump))
    }

    /// `StrictHostKeyChecking` as a policy. We never turn host key checking off: `no`/`off`
    /// become accept-new (a changed key is still refused), and say so.
    fn policy(&mut self, strict: &Located<Strictness>) -> HostKeyPolicy {
        match strict.value {
            Strictness::Yes | Strictness::Ask => HostKeyPolicy::Strict,
            Strictness::AcceptNew => HostKeyPolicy::AcceptNew,
            Strictness::No => {
                self.routes.warnings.insert((
                    strict.loc.to_string(),
                    "StrictHostKeyChecking no: clockprov never turns host key checking off; using accept-new (unknown keys are recorded, changed keys refused)".to_owned(),
                ));
                HostKeyPolicy::AcceptNew
            }
        }
    }

    /// The OpenSSH config for these settings: `config_file` if set (it must be readable), else
    /// `~/.ssh/config` if it exists, else none.
    fn config(
        &mut self,
        ssh: &SshOptions,
        field: &[String],
    ) -> Result<Option<Arc<SshConfig>>, SetupError> {
        if let Some(path) = &ssh.config_file {
            let path = self.inventory.resolve_path(path);
            return match self.configs.named(&path) {
                Ok(config) => Ok(Some(config)),
                Err(error @ ConfigError::Read { .. }) => {
                    let field: Vec<&str> = field.iter().map(String::as_str).collect();
                    Err(SetupError::ConfigFile {
                        location: self.inventory.location(&field),
                        field: field.join("."),
                        error,
                    })
                }
                Err(e) => Err(e.into()),
            };
        }
        Ok(self
            .configs
            .default_config(&self.settings.home.join(".ssh/config"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configs as text, keyed by path: nothing is read from disk.
    #[derive(Default)]
    struct Texts(HashMap<PathBuf, String>);

    impl ConfigSource for Texts {
        fn named(&mut self, path: &Path) -> Result<Arc<SshConfig>, ConfigError> {
            match self.0.get(path) {
                Some(text) => Ok(Arc::new(SshConfig::parse(
                    path,
                    text,
                    Path::new("/home/u"),
                )?)),
                None => Err(ConfigError::Read {
                    path: path.to_owned(),
                    error: std::io::ErrorKind::NotFound.into(),
                }),
            }
        }

        fn default_config(&mut self, path: &Path) -> Result<Option<Arc<SshConfig>>, ConfigError> {
            self.0
                .get(path)
                .map(|text| SshConfig::parse(path, text, Path::new("/home/u")).map(Arc::new))
                .transpose()
        }
    }

    const SERVERS: &str = "ntp_servers:\n  zcloud:\n    address: 10.0.0.1\n    allow: [10.0.0.0/8]\n    local_stratum: 10\n";

    fn inventory(ssh: &str, clients: &str) -> Inventory {
        Inventory::parse(
            Path::new("/inv/inv.yaml"),
            &format!("ssh:\n{ssh}{SERVERS}clients:\n{clients}"),
        )
        .unwrap()
    }

    fn settings() -> Settings {
        Settings {
            home: PathBuf::from("/home/u"),
            local_user: "u".to_owned(),
            connect_timeout: None,
            command_timeout: None,
            use_agent: false,
        }
    }

    /// Resolve `inventory` with `config` as `~/.ssh/config` (and `others` by path).
    fn routes(
        config: &str,
        others: &[(&str, &str)],
        inventory: &Inventory,
    ) -> Result<Routes, SetupError> {
        let mut texts = Texts::default();
        texts
            .0
            .insert(PathBuf::from("/home/u/.ssh/config"), config.to_owned());
        for (path, text) in others {
            texts.0.insert(PathBuf::from(path), (*text).to_owned());
        }
        resolve(inventory, &settings(), &mut texts, &[])
    }

    /// The error resolving `inventory` ends with.
    fn refused(config: &str, others: &[(&str, &str)], inventory: &Inventory) -> String {
        routes(config, others, inventory).err().unwrap().to_string()
    }

    #[test]
    fn the_config_decides_where_unless_the_inventory_says() {
        let routes = routes(
            "Host data-*\n  HostName %h.int\n  User ops\n  Port 2222\n  ProxyJump admin@bastion.example:2200,zcloud\n  StrictHostKeyChecking no\nHost 10.0.0.1\n  User zroot\nHost *\n  User nobody\n  IdentityFile ~/.ssh/missing\n",
            &[],
            &inventory(
                "  known_hosts: kh\n",
                "  d1: { address: 10.0.0.2, ssh: { host: data-1 } }\n  d2: { address: 10.0.0.3, ssh: { host: data-2, user: root, port: 22 } }\n  d3: { address: 10.0.0.4, ssh: { jump: none.example } }\n",
            ),
        )
        .unwrap();
        assert_eq!(
            routes.route("d1"),
            [
                "admin@bastion.example:2200 (admin@bastion.example:2200)",
                "zcloud (zroot@10.0.0.1:22)",
                "d1 (ops@data-1.int:2222)"
            ]
        );
        assert_eq!(
            routes.route("d2").last().unwrap(),
            "d2 (root@data-2.int:22)"
        );
        // The inventory's jump wins over the config; the outside jump host gets `Host *`'s user.
        assert_eq!(
            routes.route("d3"),
            [
                "none.example (nobody@none.example:22)",
                "d3 (nobody@10.0.0.4:22)"
            ]
        );
        let d1 = &routes.endpoints[&routes.hosts["d1"]];
        assert_eq!(
            d1.host_key_policy,
            HostKeyPolicy::AcceptNew,
            "no means accept-new"
        );
        assert!(
            matches!(&d1.identities, Identities::FromConfig(files) if files.len() == 1 && files[0].value == Path::new("/home/u/.ssh/missing")),
            "the config's IdentityFile: {:?}",
            d1.identities
        );
        assert_eq!(
            d1.known_hosts,
            [Path::new("/inv/kh")],
            "inventory paths are relative to the inventory"
        );
        assert_eq!(
            d1.global_known_hosts,
            [
                Path::new("/etc/ssh/ssh_known_hosts"),
                Path::new("/etc/ssh/ssh_known_hosts2")
            ]
        );
        // `no` is said once, naming its line, however many hosts it applies to.
        assert_eq!(
            routes
                .warnings
                .iter()
                .map(|(at, _)| at.as_str())
                .collect::<Vec<_>>(),
            ["/home/u/.ssh/config:6"]
        );
        // zcloud as the second hop is reached through the first: an endpoint of its own, not
        // zcloud's direct connection.
        let zcloud_direct = &routes.hosts["zcloud"];
        assert_ne!(d1.via.as_ref(), Some(zcloud_direct));
        assert_eq!(routes.endpoints[zcloud_direct].via, None);
    }

    #[test]
    fn one_endpoint_per_jump_host_shared_by_the_hosts_behind_it() {
        let routes = routes(
            "",
            &[],
            &inventory(
                "  known_hosts: kh\n",
                "  d1: { address: 10.0.0.2, ssh: { jump: \"root@10.0.0.9:22\" } }\n  d2: { address: 10.0.0.3, ssh: { jump: \"root@10.0.0.9\" } }\n  d3: { address: 10.0.0.4, ssh: { jump: d1 } }\n  d4: { address: 10.0.0.5, ssh: { jump: d1 } }\n",
            ),
        )
        .unwrap();
        let via = |name: &str| routes.endpoints[&routes.hosts[name]].via.clone();
        assert_eq!(via("d1"), via("d2"));
        assert_eq!(via("d3"), Some("d1".to_owned()));
        assert_eq!(via("d4"), Some("d1".to_owned()));
        // zcloud, d1..d4 and the one outside jump host.
        assert_eq!(routes.endpoints.len(), 6);
        assert_eq!(
            routes.route("d3"),
            [
                "root@10.0.0.9:22 (root@10.0.0.9:22)",
                "d1 (root@10.0.0.2:22)",
                "d3 (root@10.0.0.4:22)"
            ]
        );
    }

    #[test]
    fn loops_through_the_config_are_errors() {
        let config = "Host *\n  ProxyJump bastion.example\n";
        let err = refused(config, &[], &inventory("  known_hosts: kh\n", ""));
        assert_eq!(
            err,
            "the jump chain of zcloud loops: root@bastion.example:22 -> root@bastion.example:22"
        );
        // `jump: none` in the inventory overrides the config's ProxyJump.
        let none = routes(
            config,
            &[],
            &inventory(
                "  known_hosts: kh\n  jump: none\n",
                "  d1: { address: 10.0.0.2, ssh: { jump: zcloud } }\n",
            ),
        )
        .unwrap();
        assert_eq!(none.route("zcloud"), ["zcloud (root@10.0.0.1:22)"]);
        assert_eq!(none.route("d1").len(), 2);
        // The usual way to write it works.
        let usual = routes(
            "Host * !bastion.example\n  ProxyJump bastion.example\n",
            &[],
            &inventory("  known_hosts: kh\n", ""),
        )
        .unwrap();
        assert_eq!(
            usual.route("zcloud"),
            [
                "bastion.example (root@bastion.example:22)",
                "zcloud (root@10.0.0.1:22)"
            ]
        );
    }

    #[test]
    fn config_file_errors_say_where() {
        let bad = "Host *\n  Port seventy\n";
        let err = refused(bad, &[], &inventory("  known_hosts: kh\n", ""));
        assert_eq!(
            err,
            "/home/u/.ssh/config:2: Port \"seventy\" is not a port number (1 to 65535)"
        );
        let err = refused(
            bad,
            &[],
            &inventory("  known_hosts: kh\n  config_file: nope/config\n", ""),
        );
        assert_eq!(
            err,
            "/inv/inv.yaml:3:16: ssh.config_file: cannot read OpenSSH config /inv/nope/config: entity not found"
        );
        // An explicit config_file replaces ~/.ssh/config (which has the bad line).
        let other = routes(
            bad,
            &[("/inv/other", "Host *\n  User other\n")],
            &inventory("  known_hosts: kh\n  config_file: other\n", ""),
        )
        .unwrap();
        assert_eq!(other.route("zcloud"), ["zcloud (other@10.0.0.1:22)"]);
    }

    /// `check --ceph root@10.0.0.9:2222`: a host outside the inventory is reached as its hosts
    /// are (the top-level defaults, its default jump, the config's Host block), with the
    /// written user and port winning; a bare address gets the defaults' user.
    #[test]
    fn hosts_outside_the_inventory_are_reached_like_its_hosts() {
        let inventory = inventory(
            "  known_hosts: kh\n  jump: admin@bastion.example:2201\n  port: 2200\n",
            "  d1: { address: 10.0.0.2 }\n",
        );
        let outside: Vec<JumpHop> = ["root@10.0.0.9:2222", "mon.example"]
            .iter()
            .map(|h| h.parse().unwrap())
            .collect();
        let mut texts = Texts::default();
        texts.0.insert(
            PathBuf::from("/home/u/.ssh/config"),
            "Host mon.example\n  HostName 10.0.0.10\nHost *\n  User ops\n".to_owned(),
        );
        let routes = resolve(&inventory, &settings(), &mut texts, &outside).unwrap();
        assert_eq!(
            routes.route("root@10.0.0.9:2222"),
            [
                "admin@bastion.example:2201 (admin@bastion.example:2201)",
                "root@10.0.0.9:2222 (root@10.0.0.9:2222)"
            ]
        );
        assert_eq!(
            routes.route("mon.example"),
            [
                "admin@bastion.example:2201 (admin@bastion.example:2201)",
                "mon.example (ops@10.0.0.10:2200)"
            ]
        );
        let mon = &routes.endpoints[&routes.hosts["mon.example"]];
        assert_eq!(mon.known_hosts, [PathBuf::from("/inv/kh")]);
        // One connection to the jump host, shared with the inventory's hosts.
        assert_eq!(mon.via, routes.endpoints[&routes.hosts["d1"]].via);
    }

    #[test]
    fn defaults_when_nothing_is_said() {
        let routes = routes("", &[], &inventory("  user: root\n", "")).unwrap();
        let zcloud = &routes.endpoints["zcloud"];
        assert_eq!(
            zcloud.known_hosts,
            [
                Path::new("/home/u/.ssh/known_hosts"),
                Path::new("/home/u/.ssh/known_hosts2")
            ]
        );
        assert_eq!(zcloud.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(zcloud.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(
            zcloud.identities,
            Identities::Defaults(vec![
                PathBuf::from("/home/u/.ssh/id_ed25519"),
                PathBuf::from("/home/u/.ssh/id_ecdsa"),
                PathBuf::from("/home/u/.ssh/id_rsa"),
            ])
        );
        assert!(routes.warnings.is_empty());
    }
}
