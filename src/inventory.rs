//! The inventory: the one declarative file that says which hosts serve time and which follow.
//!
//! Loading is all-or-nothing: the text is read once into a located YAML tree (a key given twice
//! is refused with both lines), deserialized into validated types (a bad value fails at its own
//! line and column, in the inventory's words), then checked as a whole. Every error names the
//! file, the line and the field, offers the closest valid name where there is one, and nothing
//! is done on any host before the inventory is accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::daemon::Daemon;
use crate::image::libvirt::LibvirtSpec;
use crate::nts::HostNts;
use crate::suggest;
use crate::value::{Cidr, DurationValue, JumpList, JumpRef, LocalPath, Name, NetAddress, UserName};
use crate::yaml::{self, ListOf, Location, MapOf, Node, Number, OptionalList};

/// How the controller reaches a host. Every field is optional: a host's own block overrides the
/// inventory's `ssh:` defaults field by field.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename = "SSH settings")]
pub struct SshOptions {
    pub user: Option<UserName>,
    /// Where to connect when it is not the host's `address`.
    pub host: Option<NetAddress>,
    #[serde(default, deserialize_with = "port")]
    pub port: Option<u16>,
    pub identity_file: Option<LocalPath>,
    pub known_hosts: Option<LocalPath>,
    pub host_key_policy: Option<HostKeyPolicy>,
    pub config_file: Option<LocalPath>,
    #[serde(rename = "become")]
    pub become_method: Option<BecomeMethod>,
    /// Reach this host through other hosts: inventory names or `[user@]host[:port]`, a chain
    /// written `a,b` (to `a`, through it to `b`, through both to this host).
    pub jump: Option<JumpList>,
    pub connect_timeout: Option<DurationValue>,
    pub command_timeout: Option<DurationValue>,
}

impl SshOptions {
    /// `self` with every unset field taken from `defaults`.
    #[must_use]
    pub fn or(&self, defaults: &SshOptions) -> SshOptions {
        SshOptions {
            user: self.user.clone().or_else(|| defaults.user.clone()),
            host: self.host.clone(),
            port: self.port.or(defaults.port),
            identity_file: self
                .identity_file
                .clone()
                .or_else(|| defaults.identity_file.clone()),
            known_hosts: self
                .known_hosts
                .clone()
                .or_else(|| defaults.known_hosts.clone()),
            host_key_policy: self.host_key_policy.or(defaults.host_key_policy),
            config_file: self
                .config_file
                .clone()
                .or_else(|| defaults.config_file.clone()),
            become_method: self.become_method.or(defaults.become_method),
            jump: self.jump.clone().or_else(|| defaults.jump.clone()),
            connect_timeout: self.connect_timeout.or(defaults.connect_timeout),
            command_timeout: self.command_timeout.or(defaults.command_timeout),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Only keys already in `known_hosts` are accepted.
    #[default]
    Strict,
    /// A host with no key on record has its key recorded; a changed key is still refused.
    AcceptNew,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BecomeMethod {
    Sudo,
}

/// One upstream time source of a chrony server: `pool: HOST` or `server: HOST`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upstream {
    pub kind: UpstreamKind,
    pub host: NetAddress,
    pub iburst: bool,
    pub maxsources: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    Pool,
    Server,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "upstream settings")]
struct UpstreamFields {
    pool: Option<NetAddress>,
    server: Option<NetAddress>,
    #[serde(default, deserialize_with = "flag")]
    iburst: Option<bool>,
    #[serde(default, deserialize_with = "maxsources")]
    maxsources: Option<u8>,
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let fields = UpstreamFields::deserialize(deserializer)?;
        let (kind, host) = match (fields.pool, fields.server) {
            (Some(host), None) => (UpstreamKind::Pool, host),
            (None, Some(host)) => (UpstreamKind::Server, host),
            _ => {
                return Err(D::Error::custom(
                    "an upstream has exactly one of `pool: HOST` or `server: HOST`",
                ));
            }
        };
        if fields.maxsources.is_some() && kind != UpstreamKind::Pool {
            return Err(D::Error::custom(
                "`maxsources` is for a `pool`; a `server` is one source",
            ));
        }
        Ok(Upstream {
            kind,
            host,
            iburst: fields.iburst.unwrap_or(true),
            maxsources: fields.maxsources,
        })
    }
}

/// A chrony server: syncs from `upstream` and serves the `allow`ed networks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename = "server settings")]
pub struct ServerSpec {
    pub address: NetAddress,
    #[serde(default)]
    pub ssh: SshOptions,
    #[serde(default, deserialize_with = "upstreams")]
    pub upstream: Vec<Upstream>,
    #[serde(default, deserialize_with = "networks")]
    pub allow: Vec<Cidr>,
    #[serde(default, deserialize_with = "stratum")]
    pub local_stratum: Option<u8>,
    /// Serve NTS-KE (TCP 4460) with this certificate and key.
    pub nts: Option<ServerNtsSpec>,
}

/// A server's `nts:`: PEM files, relative to the inventory's directory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename = "server NTS settings")]
pub struct ServerNtsSpec {
    pub certificate: LocalPath,
    pub key: LocalPath,
}

/// A client's `nts:` when on (`true`, or `{trusted_certs: FILE}` for a private CA).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientNtsSpec {
    /// The CA the servers' certificates are checked against; the system's CA store when absent.
    pub trusted_certs: Option<LocalPath>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "client NTS settings")]
struct ClientNtsFields {
    trusted_certs: LocalPath,
}

/// A systemd-timesyncd client.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename = "client settings")]
pub struct ClientSpec {
    pub address: NetAddress,
    #[serde(default)]
    pub ssh: SshOptions,
    /// The `ntp_servers` this client follows; all of them when absent.
    #[serde(default, deserialize_with = "server_names")]
    pub ntp: Option<Vec<Name>>,
    /// `FallbackNTP=`; the distribution's default when absent.
    #[serde(default, deserialize_with = "fallback_addresses")]
    pub fallback_ntp: Option<Vec<NetAddress>>,
    /// `timesyncd` or `chrony`; the inventory's `daemon:` when absent, else the OS's default.
    pub daemon: Option<Daemon>,
    /// Authenticate the servers with NTS (chrony only); off when absent or `false`.
    #[serde(default, deserialize_with = "client_nts")]
    pub nts: Option<ClientNtsSpec>,
}

/// A golden VM image for `bake`: a disk image or a mounted root directory (`path`), or a libvirt
/// domain's disks (`libvirt`); exactly one of the two.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename = "image settings")]
pub struct ImageSpec {
    pub path: Option<LocalPath>,
    pub libvirt: Option<LibvirtSpec>,
    #[serde(default, deserialize_with = "server_names")]
    pub ntp: Option<Vec<Name>>,
    #[serde(default, deserialize_with = "fallback_addresses")]
    pub fallback_ntp: Option<Vec<NetAddress>>,
    /// As a client's `daemon`.
    pub daemon: Option<Daemon>,
}

/// The inventory as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename = "inventory sections")]
pub struct InventoryFile {
    #[serde(default)]
    pub ssh: SshOptions,
    /// A directory whose `chrony.conf.j2` / `timesyncd.conf.j2` replace the built-in templates.
    pub templates: Option<LocalPath>,
    #[serde(default, deserialize_with = "servers")]
    pub ntp_servers: BTreeMap<Name, ServerSpec>,
    #[serde(default, deserialize_with = "clients")]
    pub clients: BTreeMap<Name, ClientSpec>,
    #[serde(default, deserialize_with = "images")]
    pub images: BTreeMap<Name, ImageSpec>,
    /// The clients' and images' daemon where their own `daemon` is not given (as `ssh:` is
    /// their connection default); unset, each runs its OS's default.
    pub daemon: Option<Daemon>,
}

// What each field holds, in the words its error messages use (`expected ..., found ...`).

fn number<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    deserializer: D,
    number: Number,
) -> Result<Option<T>, D::Error> {
    let n = deserializer.deserialize_u64(number)?;
    T::try_from(n)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("out of range"))
}

fn port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u16>, D::Error> {
    number(
        deserializer,
        Number {
            expecting: "a port number (1 to 65535)",
            range: "1 to 65535",
            min: 1,
            max: 65535,
        },
    )
}

fn stratum<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    number(
        deserializer,
        Number {
            expecting: "a stratum, 1 to 15 (chrony's range)",
            range: "1 to 15 (chrony's range)",
            min: 1,
            max: 15,
        },
    )
}

fn maxsources<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    number(
        deserializer,
        Number {
            expecting: "a number of sources, 1 to 16",
            range: "1 to 16",
            min: 1,
            max: 16,
        },
    )
}

fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    struct Flag;
    impl serde::de::Visitor<'_> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true` or `false`")
        }
        fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<bool, E> {
            Ok(value)
        }
    }
    deserializer.deserialize_bool(Flag).map(Some)
}

fn client_nts<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ClientNtsSpec>, D::Error> {
    struct Nts;
    impl<'de> serde::de::Visitor<'de> for Nts {
        type Value = Option<ClientNtsSpec>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true`, `false` or `{trusted_certs: FILE}` (a private CA)")
        }
        fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
            Ok(on.then(ClientNtsSpec::default))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let fields =
                ClientNtsFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            Ok(Some(ClientNtsSpec {
                trusted_certs: Some(fields.trusted_certs),
            }))
        }
    }
    deserializer.deserialize_any(Nts)
}

fn upstreams<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Upstream>, D::Error> {
    deserializer.deserialize_seq(ListOf::new(
        "a list of upstream sources, e.g. `- pool: ntp.ubuntu.com`",
    ))
}

fn networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Cidr>, D::Error> {
    deserializer.deserialize_seq(ListOf::new("a list of networks, e.g. [192.168.6.0/24]"))
}

fn server_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Name>>, D::Error> {
    deserializer.deserialize_option(OptionalList(ListOf::new(
        "a list of ntp_servers names, e.g. [zcloud]",
    )))
}

fn fallback_addresses<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<NetAddress>>, D::Error> {
    deserializer.deserialize_option(OptionalList(ListOf::new(
        "a list of NTP server addresses, e.g. [ntp.ubuntu.com]",
    )))
}

fn servers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Name, ServerSpec>, D::Error> {
    deserializer.deserialize_map(MapOf::new(
        "a mapping of server names to their settings, e.g. `zcloud: { address: 192.168.6.200 }`",
    ))
}

fn clients<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Name, ClientSpec>, D::Error> {
    deserializer.deserialize_map(MapOf::new(
        "a mapping of client names to their settings, e.g. `z-b-data-1: { address: 192.168.6.204 }`",
    ))
}

fn images<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Name, ImageSpec>, D::Error> {
    deserializer.deserialize_map(MapOf::new(
        "a mapping of image names to their settings, e.g. `z-ubuntu20: { path: z-ubuntu20.qcow2 }`",
    ))
}

/// What a host does in the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Server(ServerSpec),
    /// A client, with the addresses of the servers it follows, in order, and the daemon the
    /// inventory chose for it (its own `daemon`, else the inventory's), if any.
    Client {
        spec: ClientSpec,
        servers: Vec<NetAddress>,
        daemon: Option<Daemon>,
    },
}

/// One host with its effective settings, ready for rendering and connecting.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: Name,
    pub address: NetAddress,
    pub ssh: SshOptions,
    pub role: Role,
    /// NTS, with its files read (`Off` unless the inventory sets `nts`).
    pub nts: HostNts,
}

impl Host {
    #[must_use]
    pub fn is_server(&self) -> bool {
        matches!(self.role, Role::Server(_))
    }

    /// The daemon this host runs on the system `os_id` `version_id` (os-release): chrony on a
    /// server; on a client the inventory's choice, else the OS's default (chrony on Ubuntu
    /// 25.10+ and the RHEL family, timesyncd elsewhere). The one place roles meet daemons.
    #[must_use]
    pub fn daemon(&self, os_id: &str, version_id: &str) -> Daemon {
        self.chosen_daemon()
            .unwrap_or_else(|| crate::daemon::os_default_client_daemon(os_id, version_id))
    }

    /// The daemon an image (`images.NAME`) is baked for on its system: as a client's, its own
    /// `daemon`, else the inventory's, else the OS's default.
    #[must_use]
    pub fn image_daemon(
        file: &InventoryFile,
        spec: &ImageSpec,
        os_id: &str,
        version_id: &str,
    ) -> Daemon {
        spec.daemon
            .or(file.daemon)
            .unwrap_or_else(|| crate::daemon::os_default_client_daemon(os_id, version_id))
    }

    /// The daemon the inventory fixes for this host, whatever its OS: chrony on a server, a
    /// client's `daemon` (or the inventory's); `None` when it depends on the host's OS.
    #[must_use]
    pub fn chosen_daemon(&self) -> Option<Daemon> {
        match self.role {
            Role::Server(_) => Some(Daemon::Chrony),
            Role::Client { daemon, .. } => daemon,
        }
    }
}

impl Role {
    /// The role in one word, as every output names it: `server` or `client`.
    #[must_use]
    pub fn word(&self) -> &'static str {
        match self {
            Role::Server(_) => "server",
            Role::Client { .. } => "client",
        }
    }
}

/// A loaded, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    /// The text as read.
    pub source: String,
    /// The text as a located tree: where each field is, for messages about it later (a missing
    /// `identity_file`, an unreadable `config_file`).
    pub document: Node,
    pub file: InventoryFile,
    pub hosts: Vec<Host>,
}

/// A problem in the inventory, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryProblem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the field, e.g. `clients.z-b-data-1.address`.
    pub field: String,
    pub message: String,
}

impl InventoryProblem {
    fn at(location: Option<Location>, field: String, message: String) -> InventoryProblem {
        InventoryProblem {
            line: location.map(|l| l.line),
            column: location.map(|l| l.column),
            field,
            message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {}: {}", .path.display(), io_reason(.error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}", render_problems(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<InventoryProblem>,
    },
}

fn render_problems(path: &Path, problems: &[InventoryProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&path.display().to_string());
        if let Some(line) = p.line {
            let _ = write!(out, ":{line}");
            if let Some(column) = p.column {
                let _ = write!(out, ":{column}");
            }
        }
        out.push_str(": ");
        if !p.field.is_empty() {
            out.push_str(&p.field);
            out.push_str(": ");
        }
        out.push_str(&p.message);
    }
    out
}

impl Inventory {
    /// Read, parse and check an inventory file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid YAML for the schema, or fails a whole-inventory check.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let source = std::fs::read_to_string(path).map_err(|error| InventoryError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(path, &source)
    }

    /// Parse and check inventory text; `path` is used in messages only.
    ///
    /// # Errors
    /// As for [`Inventory::load`].
    pub fn parse(path: &Path, source: &str) -> Result<Inventory, InventoryError> {
        let invalid = |problems| InventoryError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let document = yaml::parse(source).map_err(|problems| {
            invalid(
                problems
                    .into_iter()
                    .map(|p| InventoryProblem::at(Some(p.at), p.path, p.message))
                    .collect(),
            )
        })?;
        let file: InventoryFile = yaml::from_node(&document).map_err(|error| {
            let message = with_placement_hint(&error);
            invalid(vec![InventoryProblem::at(error.at, error.path, message)])
        })?;
        let mut problems = check(&file, &document);
        let base = path.parent().unwrap_or(Path::new("."));
        let nts = check_nts(&file, &document, base, &mut problems);
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let hosts = resolve_hosts(&file, nts);
        Ok(Inventory {
            path: path.to_owned(),
            source: source.to_owned(),
            document,
            file,
            hosts,
        })
    }

    /// The directory that relative paths in the inventory are relative to.
    #[must_use]
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A path the inventory names, as used: `~/` is the home directory, and a relative path is
    /// relative to the inventory's directory.
    #[must_use]
    pub fn resolve_path(&self, path: &LocalPath) -> PathBuf {
        let expanded = path.expand();
        if expanded.is_absolute() {
            expanded
        } else {
            self.base_dir().join(expanded)
        }
    }

    /// `FILE:LINE:COLUMN` of the value at `path` (or of the nearest enclosing key), for messages
    /// about a value that turns out to be wrong only when it is used.
    #[must_use]
    pub fn location(&self, path: &[&str]) -> String {
        match self.document.value_location(path) {
            Some(at) => format!("{}:{at}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    /// The path of an `ssh:` setting as it applies to `host`: the host's own `ssh:` block when it
    /// sets `key` there, else the top-level one (`None` for a jump host outside the inventory).
    #[must_use]
    pub fn ssh_setting(&self, host: Option<&str>, key: &str) -> Vec<String> {
        if let Some(host) = host {
            for section in ["ntp_servers", "clients"] {
                let own = [section, host, "ssh", key];
                if self.document.get(&own).is_some() {
                    return own.iter().map(ToString::to_string).collect();
                }
            }
        }
        vec!["ssh".to_owned(), key.to_owned()]
    }

    /// Every host's name, servers first, as written.
    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|h| h.name.as_str())
    }
}

/// An I/O error as a reason, without the `(os error N)` that only repeats it in numbers.
#[must_use]
pub fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// A field written one level off reads as a field of the wrong mapping: say where it belongs.
fn with_placement_hint(error: &yaml::Error) -> String {
    let yaml::ErrorKind::UnknownField(field) = &error.kind else {
        return error.message.clone();
    };
    let homes: Vec<&str> = [
        yaml::struct_fields::<SshOptions>(),
        yaml::struct_fields::<ServerSpec>(),
        yaml::struct_fields::<ClientSpec>(),
        yaml::struct_fields::<ImageSpec>(),
        yaml::struct_fields::<Upstream>(),
        yaml::struct_fields::<InventoryFile>(),
    ]
    .into_iter()
    .flatten()
    .filter(|(_, fields)| fields.contains(&field.as_str()))
    .map(|(name, _)| name)
    .collect();
    if homes.is_empty() {
        return error.message.clone();
    }
    format!(
        "{}; `{field}` is one of the {}: check its indentation",
        error.message,
        homes.join(" and ")
    )
}

fn resolve_hosts(file: &InventoryFile, mut nts: BTreeMap<Name, HostNts>) -> Vec<Host> {
    let mut hosts = Vec::new();
    for (name, spec) in &file.ntp_servers {
        hosts.push(Host {
            name: name.clone(),
            address: spec.address.clone(),
            ssh: spec.ssh.or(&file.ssh),
            role: Role::Server(spec.clone()),
            nts: nts.remove(name).unwrap_or_default(),
        });
    }
    for (name, spec) in &file.clients {
        let servers = servers_of(file, spec.ntp.as_deref());
        hosts.push(Host {
            name: name.clone(),
            address: spec.address.clone(),
            ssh: spec.ssh.or(&file.ssh),
            role: Role::Client {
                spec: spec.clone(),
                servers,
                daemon: spec.daemon.or(file.daemon),
            },
            nts: nts.remove(name).unwrap_or_default(),
        });
    }
    hosts
}

/// Addresses of the named servers, or of every server when `names` is absent.
#[must_use]
pub fn servers_of(file: &InventoryFile, names: Option<&[Name]>) -> Vec<NetAddress> {
    match names {
        Some(names) => names
            .iter()
            .filter_map(|n| file.ntp_servers.get(n))
            .map(|s| s.address.clone())
            .collect(),
        None => file
            .ntp_servers
            .values()
            .map(|s| s.address.clone())
            .collect(),
    }
}

/// The problems found so far, each placed at its field's key or value in the text.
struct Problems<'d> {
    document: &'d Node,
    found: Vec<InventoryProblem>,
}

impl Problems<'_> {
    /// A problem with the field at `path` as a whole: placed at its key.
    fn at_key(&mut self, path: &[&str], message: String) {
        let at = self.document.key_location(path);
        self.found
            .push(InventoryProblem::at(at, path.join("."), message));
    }

    /// A problem with a value (`value` is its path, e.g. a list item): placed at the value;
    /// reported under the field `path`.
    fn at_value(&mut self, path: &[&str], value: &[&str], message: String) {
        let at = self.document.value_location(value);
        self.found
            .push(InventoryProblem::at(at, path.join("."), message));
    }
}

/// Whole-inventory checks: references resolve, servers can serve, clients are allowed.
fn check(file: &InventoryFile, document: &Node) -> Vec<InventoryProblem> {
    let mut problems = Problems {
        document,
        found: Vec::new(),
    };
    for name in file.clients.keys() {
        if file.ntp_servers.contains_key(name) {
            problems.at_key(
                &["clients", name.as_str()],
                format!("{name} is also in ntp_servers; a host is a server or a client, not both"),
            );
        }
    }
    if !file.clients.is_empty() && file.ntp_servers.is_empty() {
        problems.at_key(
            &["clients"],
            "there are clients but no ntp_servers for them to follow".to_owned(),
        );
    }
    check_jumps(file, &mut problems);
    for (name, server) in &file.ntp_servers {
        if server.upstream.is_empty() && server.local_stratum.is_none() {
            problems.at_key(
                &["ntp_servers", name.as_str()],
                "no `upstream` and no `local_stratum`: chrony would never count itself synchronized, so no client would ever synchronize to it; add `local_stratum: 10` to serve this server's own clock (an isolated LAN), or an `upstream:` list of time sources".to_owned(),
            );
        }
        if server.allow.is_empty() && !file.clients.is_empty() {
            problems.at_key(
                &["ntp_servers", name.as_str(), "allow"],
                "chrony refuses every client until an `allow` line exists; list the clients' networks, e.g. `allow: [192.168.6.0/24]`"
                    .to_owned(),
            );
        }
    }
    for (name, client) in &file.clients {
        check_client_servers(
            file,
            ["clients", name.as_str()],
            Some(&client.address),
            client.ntp.as_deref(),
            &mut problems,
        );
    }
    for (name, image) in &file.images {
        let at = ["images", name.as_str()];
        match (&image.path, &image.libvirt) {
            (None, None) => problems.at_key(
                &at,
                "an image needs `path` (a disk image or a root directory) or `libvirt` (a domain)"
                    .to_owned(),
            ),
            (Some(_), Some(_)) => problems.at_key(
                &[at[0], at[1], "libvirt"],
                "give either `path` or `libvirt`, not both".to_owned(),
            ),
            (Some(local), None) if is_filesystem_root(local) => problems.at_value(
                &[at[0], at[1], "path"],
                &[at[0], at[1], "path"],
                "`/` is this machine's own root directory, not an image".to_owned(),
            ),
            _ => {}
        }
        if image.ntp.is_none() && file.ntp_servers.is_empty() {
            problems.at_key(
                &["images", name.as_str()],
                "an image needs ntp_servers to point at".to_owned(),
            );
        }
        check_client_servers(
            file,
            ["images", name.as_str()],
            None,
            image.ntp.as_deref(),
            &mut problems,
        );
    }
    problems.found
}

/// The `nts:` blocks: their files read and checked (a server's certificate names its address,
/// its key is a private key; a client's CA parses), clients with NTS run chrony and follow
/// servers that serve NTS. Paths are relative to `base`, the inventory's directory.
fn check_nts(
    file: &InventoryFile,
    document: &Node,
    base: &Path,
    problems: &mut Vec<InventoryProblem>,
) -> BTreeMap<Name, HostNts> {
    let mut found = Problems {
        document,
        found: Vec::new(),
    };
    let resolve = |path: &LocalPath| {
        let expanded = path.expand();
        if expanded.is_absolute() {
            expanded
        } else {
            base.join(expanded)
        }
    };
    let mut nts = BTreeMap::new();
    for (name, server) in &file.ntp_servers {
        let Some(spec) = &server.nts else { continue };
        let cert_path = ["ntp_servers", name.as_str(), "nts", "certificate"];
        let key_path = ["ntp_servers", name.as_str(), "nts", "key"];
        let certificate = match crate::nts::load_certificate(&resolve(&spec.certificate)) {
            Ok((file, certificate)) => {
                let names = crate::nts::certificate_names(&certificate);
                if crate::nts::names_address(&names, &server.address) {
                    Some(file)
                } else {
                    found.at_value(
                        &cert_path,
                        &cert_path,
                        crate::nts::not_named(&file.source, &names, &server.address),
                    );
                    None
                }
            }
            Err(message) => {
                found.at_value(&cert_path, &cert_path, message);
                None
            }
        };
        let key = crate::nts::load_key(&resolve(&spec.key))
            .map_err(|message| found.at_value(&key_path, &key_path, message))
            .ok();
        if let (Some(certificate), Some(key)) = (certificate, key) {
            nts.insert(name.clone(), HostNts::Server { certificate, key });
        }
    }
    for (name, client) in &file.clients {
        let Some(spec) = &client.nts else { continue };
        let at = ["clients", name.as_str(), "nts"];
        if client.daemon.or(file.daemon) == Some(Daemon::Timesyncd) {
            found.at_key(
                &at,
                "systemd-timesyncd has no NTS; a client with `nts` runs chrony: set `daemon: chrony` (or leave `daemon` out where the OS runs chrony)".to_owned(),
            );
        }
        let servers: Vec<(&Name, &ServerSpec)> = match &client.ntp {
            Some(names) => names
                .iter()
                .filter_map(|n| file.ntp_servers.get_key_value(n))
                .collect(),
            None => file.ntp_servers.iter().collect(),
        };
        for (server_name, server) in servers {
            if server.nts.is_none() {
                found.at_key(
                    &at,
                    format!("server {server_name} serves no NTS (it has no `nts:` certificate and key), so this client could never authenticate it: give {server_name} an `nts:` block, or leave `nts` out here"),
                );
            }
        }
        let trusted_certs = match &spec.trusted_certs {
            None => None,
            Some(ca) => {
                let ca_path = ["clients", name.as_str(), "nts", "trusted_certs"];
                match crate::nts::load_ca(&resolve(ca)) {
                    Ok(file) => Some(file),
                    Err(message) => {
                        found.at_value(&ca_path, &ca_path, message);
                        continue;
                    }
                }
            }
        };
        nts.insert(name.clone(), HostNts::Client { trusted_certs });
    }
    problems.extend(found.found);
    nts
}

/// Does `path` name `/` itself (`/`, `//`, `/./..`)?
fn is_filesystem_root(path: &LocalPath) -> bool {
    let path = path.expand();
    path.has_root()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir
                    | std::path::Component::CurDir
                    | std::path::Component::ParentDir
            )
        })
}

/// Every `jump:` hop that is a bare word names an inventory host; no chain loops.
fn check_jumps(file: &InventoryFile, problems: &mut Problems<'_>) {
    let known_host = |n: &Name| file.ntp_servers.contains_key(n) || file.clients.contains_key(n);
    let hosts = file
        .ntp_servers
        .iter()
        .map(|(n, s)| (Some(("ntp_servers", n)), &s.ssh))
        .chain(
            file.clients
                .iter()
                .map(|(n, c)| (Some(("clients", n)), &c.ssh)),
        )
        .chain(std::iter::once((None, &file.ssh)));
    for (owner, ssh) in hosts {
        let Some(jump) = &ssh.jump else { continue };
        let field: Vec<&str> = match owner {
            Some((section, name)) => vec![section, name.as_str(), "ssh", "jump"],
            None => vec!["ssh", "jump"],
        };
        for hop in &jump.0 {
            let JumpRef::Name(hop) = hop else { continue };
            if owner.is_some_and(|(_, name)| name == hop) {
                problems.at_value(&field, &field, format!("{hop} cannot jump through itself"));
            } else if !known_host(hop) && !looks_like_an_address(hop) {
                // A bare single word is an inventory name or a typo; an outside host is written
                // with a user or a port, so that a typo cannot send us somewhere else.
                let names = file.ntp_servers.keys().chain(file.clients.keys());
                let suggestion = suggest::did_you_mean(hop.as_str(), names.map(Name::as_str));
                problems.at_value(
                    &field,
                    &field,
                    format!(
                        "no inventory host is named {hop}{suggestion} (a host outside the inventory is written [user@]host[:port], e.g. root@{hop} or {hop}:22)"
                    ),
                );
            }
        }
        if let Some((_, name)) = owner
            && let Some(path) = jump_loop(file, name)
        {
            problems.at_value(&field, &field, format!("the jump chain loops: {path}"));
        }
    }
}

/// A bare hop with a dot (an IP address or a DNS name) is a host outside the inventory.
fn looks_like_an_address(name: &Name) -> bool {
    name.as_str().contains('.') && name.as_str().parse::<NetAddress>().is_ok()
}

/// The inventory's jump settings of `name`, when it is an inventory host.
fn jump_of<'f>(file: &'f InventoryFile, name: &Name) -> Option<&'f JumpList> {
    let own = match (file.ntp_servers.get(name), file.clients.get(name)) {
        (Some(server), _) => &server.ssh,
        (None, Some(client)) => &client.ssh,
        (None, None) => return None,
    };
    own.jump.as_ref().or(file.ssh.jump.as_ref())
}

/// `a -> b -> a` when following the first hop of each jump chain through inventory hosts comes
/// back to `start` (the first hop is the one whose own jump settings are used; later hops are
/// reached through the hops before them).
fn jump_loop(file: &InventoryFile, start: &Name) -> Option<String> {
    let mut path = vec![start.clone()];
    let mut current = start;
    while let Some(JumpRef::Name(next)) = jump_of(file, current).and_then(|j| j.0.first()) {
        if next == start {
            if path.len() == 1 {
                return None; // jumping through itself is reported as such
            }
            path.push(next.clone());
            let names: Vec<&str> = path.iter().map(Name::as_str).collect();
            return Some(names.join(" -> "));
        }
        if path.contains(next) || next == current {
            return None; // a loop that does not pass through `start`: reported for its members
        }
        path.push(next.clone());
        current = next;
    }
    None
}

/// A client's (or an image's) `ntp:` names exist; a client's address is allowed by its servers.
fn check_client_servers(
    file: &InventoryFile,
    path: [&str; 2],
    address: Option<&NetAddress>,
    names: Option<&[Name]>,
    problems: &mut Problems<'_>,
) {
    let ntp_path = [path[0], path[1], "ntp"];
    let used: Vec<(&Name, &ServerSpec)> = match names {
        Some(names) => {
            if names.is_empty() {
                problems.at_key(
                    &ntp_path,
                    "an empty list leaves it with no server; leave `ntp` out to follow every server"
                        .to_owned(),
                );
            }
            let mut used = Vec::new();
            for (i, n) in names.iter().enumerate() {
                if let Some(found) = file.ntp_servers.get_key_value(n) {
                    used.push(found);
                    continue;
                }
                let index = i.to_string();
                let item = [path[0], path[1], "ntp", index.as_str()];
                let message = if file.clients.contains_key(n) {
                    format!("{n} is a client, not an ntp_servers entry")
                } else {
                    let suggestion = suggest::did_you_mean(
                        n.as_str(),
                        file.ntp_servers.keys().map(Name::as_str),
                    );
                    format!("no ntp_servers entry is named {n}{suggestion}")
                };
                problems.at_value(&ntp_path, &item, message);
            }
            used
        }
        None => file.ntp_servers.iter().collect(),
    };
    let Some(ip) = address.and_then(NetAddress::ip) else {
        return;
    };
    for (server_name, server) in used {
        if !server.allow.is_empty() && !server.allow.iter().any(|cidr| cidr.contains(ip)) {
            let allowed: Vec<String> = server.allow.iter().map(ToString::to_string).collect();
            let address_path = [path[0], path[1], "address"];
            problems.at_value(
                &address_path,
                &address_path,
                format!(
                    "{ip} is outside every `allow` network of server {server_name} ({}), so it would never be served",
                    allowed.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../inventories/zcloud.yaml");

    fn error(source: &str) -> String {
        Inventory::parse(Path::new("inv.yaml"), source)
            .unwrap_err()
            .to_string()
    }

    /// GOOD with `from` replaced by `to` (which must be there).
    fn with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from:?}");
        GOOD.replacen(from, to, 1)
    }

    #[test]
    fn the_contract_inventory_loads() {
        let inventory = Inventory::parse(Path::new("inventories/zcloud.yaml"), GOOD).unwrap();
        let names: Vec<&str> = inventory.host_names().collect();
        assert_eq!(names, ["zcloud", "z-b-data-1", "z-b-data-2", "z-b-data-3"]);
        let client = &inventory.hosts[1];
        assert_eq!(
            client.ssh.jump.as_ref().map(ToString::to_string).as_deref(),
            Some("zcloud")
        );
        assert_eq!(client.ssh.user.as_ref().map(UserName::as_str), Some("root"));
        let Role::Client { servers, .. } = &client.role else {
            panic!("client")
        };
        assert_eq!(servers, &["192.168.6.200".parse::<NetAddress>().unwrap()]);
        let server = &inventory.hosts[0];
        assert_eq!(
            server.ssh.host.as_ref().map(ToString::to_string).as_deref(),
            Some("zcloud.example.net")
        );
        assert_eq!(server.ssh.host_key_policy, Some(HostKeyPolicy::Strict));
        let Role::Server(spec) = &server.role else {
            panic!("server")
        };
        assert_eq!(spec.local_stratum, Some(10));
        assert_eq!(spec.upstream[0].kind, UpstreamKind::Pool);
        assert!(spec.upstream[0].iburst);
        assert_eq!(server.ssh.port, Some(22));
    }

    #[test]
    fn fields_are_located_where_they_are_written() {
        let inventory = Inventory::parse(Path::new("inv.yaml"), GOOD).unwrap();
        assert_eq!(
            inventory.location(&["ssh", "identity_file"]),
            "inv.yaml:4:18"
        );
        assert_eq!(
            inventory.location(&["clients", "z-b-data-1", "ssh", "jump"]),
            "inv.yaml:20:54"
        );
        assert_eq!(
            inventory.ssh_setting(Some("z-b-data-1"), "jump"),
            ["clients", "z-b-data-1", "ssh", "jump"]
        );
        assert_eq!(
            inventory.ssh_setting(Some("z-b-data-1"), "identity_file"),
            ["ssh", "identity_file"]
        );
        assert_eq!(inventory.ssh_setting(None, "user"), ["ssh", "user"]);
    }

    #[test]
    fn a_key_given_twice_is_refused_naming_both_lines() {
        let twice = with(
            "  z-b-data-3: { address: 192.168.6.206 }\n",
            "  z-b-data-3: { address: 192.168.6.206 }\n  z-b-data-2:\n    address: 192.168.6.207\n",
        );
        insta::assert_snapshot!(error(&twice), @"inv.yaml:23:3: clients.z-b-data-2: defined twice (first at line 21); only one can be kept: remove or rename one of them");
        let field_twice = with("  user: root\n", "  user: root\n  user: admin\n");
        insta::assert_snapshot!(error(&field_twice), @"inv.yaml:4:3: ssh.user: defined twice (first at line 3); only one can be kept: remove or rename one of them");
        let section_twice = format!("{GOOD}clients:\n  c9: {{ address: 192.168.6.209 }}\n");
        insta::assert_snapshot!(error(&section_twice), @"inv.yaml:27:1: clients: defined twice (first at line 19); only one can be kept: remove or rename one of them");
    }

    #[test]
    fn each_problem_is_reported_at_its_own_line() {
        // The same text twice: the second one's problem is at the second one's line.
        let source = with(
            "  z-b-data-2: { address: 192.168.6.205 }\n  z-b-data-3: { address: 192.168.6.206 }\n",
            "  z-b-data-2: { address: 192.168.6.205 }\n  z-b-data-3: { address: 192.168.6.206, ntp: [zclod] }\n  z-b-data-4: { address: 192.168.6.207, ntp: [zclod] }\n",
        );
        insta::assert_snapshot!(error(&source), @r"
            inv.yaml:22:47: clients.z-b-data-3.ntp: no ntp_servers entry is named zclod; did you mean `zcloud`?
            inv.yaml:23:47: clients.z-b-data-4.ntp: no ntp_servers entry is named zclod; did you mean `zcloud`?
            ");
    }

    #[test]
    fn hostile_values_are_refused_with_their_line() {
        let newline = with(
            "address: 192.168.6.205",
            r#"address: "127.0.1.3\nallow all""#,
        );
        insta::assert_snapshot!(error(&newline), @r#"inv.yaml:21:26: clients.z-b-data-2.address: invalid address "127.0.1.3\nallow all": contains a newline; expected an IP address or a DNS name"#);
        let command = with("pool: ntp.ubuntu.com", "pool: $(reboot)");
        insta::assert_snapshot!(error(&command), @r#"inv.yaml:15:15: ntp_servers.zcloud.upstream[0].pool: invalid address "$(reboot)": contains '$', which is not allowed here; expected an IP address or a DNS name"#);
        let allow = with("allow: [192.168.6.0/24]", "allow: [\"192.168.6.0/24 all\"]");
        insta::assert_snapshot!(error(&allow), @r#"inv.yaml:16:13: ntp_servers.zcloud.allow[0]: invalid CIDR "192.168.6.0/24 all": the prefix length must be a number"#);
    }

    #[test]
    fn a_typo_in_a_field_suggests_the_field() {
        insta::assert_snapshot!(error(&with("  identity_file:", "  identiy_file:")), @"inv.yaml:4:3: ssh: unknown field `identiy_file`; did you mean `identity_file`?");
        insta::assert_snapshot!(error(&with("local_stratum: 10", "local_stratun: 10")), @"inv.yaml:17:5: ntp_servers.zcloud: unknown field `local_stratun`; did you mean `local_stratum`?");
        insta::assert_snapshot!(error(&with("host_key_policy: strict", "host_key_policy: acept-new")), @"inv.yaml:6:20: ssh.host_key_policy: `acept-new` is not one of `strict` or `accept-new`; did you mean `accept-new`?");
        insta::assert_snapshot!(error(&with("host_key_policy: strict", "host_key_policy: yolo")), @"inv.yaml:6:20: ssh.host_key_policy: `yolo` is not one of `strict` or `accept-new`");
        insta::assert_snapshot!(error(&with("clients:", "client:")), @"inv.yaml:19:1: unknown field `client`; did you mean `clients`?");
        insta::assert_snapshot!(error(&with("      - pool: ntp.ubuntu.com", "      - pol: ntp.ubuntu.com")), @"inv.yaml:15:9: ntp_servers.zcloud.upstream[0]: unknown field `pol`; did you mean `pool`?");
    }

    #[test]
    fn a_dedented_field_says_where_it_belongs() {
        // A server's setting at the servers' level reads as a server named `allow`.
        let server_level = with(
            "    allow: [192.168.6.0/24]\n    local_stratum: 10             # keep serving the LAN while upstream is unreachable\n",
            "    local_stratum: 10\n  allow: [192.168.6.0/24]\n",
        );
        insta::assert_snapshot!(error(&server_level), @"inv.yaml:17:10: ntp_servers.allow: expected a mapping of server settings (address, ssh, upstream, allow, ...), found a list; `allow` looks like a setting of ntp_servers.zcloud indented too little (it is read as an entry named allow)");
        let scalar = with(
            "    local_stratum: 10             # keep serving the LAN while upstream is unreachable\n",
            "  local_stratum: 10\n",
        );
        insta::assert_snapshot!(error(&scalar), @"inv.yaml:17:18: ntp_servers.local_stratum: expected a mapping of server settings (address, ssh, upstream, allow, ...), found the value `10`; `local_stratum` looks like a setting of ntp_servers.zcloud indented too little (it is read as an entry named local_stratum)");
        // ... and at the top level it is an unknown section.
        let top_level = format!("{GOOD}allow: [192.168.6.0/24]\n");
        insta::assert_snapshot!(error(&top_level), @"inv.yaml:27:1: unknown field `allow`; the fields here are `ssh`, `templates`, `ntp_servers`, `clients`, `images` or `daemon`; `allow` is one of the server settings: check its indentation");
        let client_field = format!("{GOOD}ntp: [zcloud]\n");
        insta::assert_snapshot!(error(&client_field), @"inv.yaml:27:1: unknown field `ntp`; the fields here are `ssh`, `templates`, `ntp_servers`, `clients`, `images` or `daemon`; `ntp` is one of the client settings and image settings: check its indentation");
        // Misaligned by one space: not YAML at all.
        let misaligned = with(
            "    allow: [192.168.6.0/24]\n",
            "   allow: [192.168.6.0/24]\n",
        );
        insta::assert_snapshot!(error(&misaligned), @"inv.yaml:16:4: not valid YAML (while parsing a block mapping, did not find expected key): check the indentation of this line and of the lines above it (the keys of one mapping line up exactly; a setting belongs under its host)");
    }

    #[test]
    fn a_tab_is_named() {
        insta::assert_snapshot!(error(&with("    allow:", "\tallow:")), @"inv.yaml:16:1: a tab in the indentation: YAML indents with spaces only (replace the tab with spaces)");
        insta::assert_snapshot!(error(&with("  user: root", "\tuser: root")), @"inv.yaml:3:1: a tab in the indentation: YAML indents with spaces only (replace the tab with spaces)");
    }

    #[test]
    fn wrong_shapes_are_described_in_inventory_words() {
        insta::assert_snapshot!(error(&with("allow: [192.168.6.0/24]", "allow: 192.168.6.0/24")), @"inv.yaml:16:12: ntp_servers.zcloud.allow: expected a list of networks, e.g. [192.168.6.0/24], found the value `192.168.6.0/24`; a list is written `[192.168.6.0/24]`, or one `- item` per line");
        insta::assert_snapshot!(error(&with("      - pool: ntp.ubuntu.com", "      - ntp.ubuntu.com")), @"inv.yaml:15:9: ntp_servers.zcloud.upstream[0]: expected a mapping of upstream settings (pool, server, iburst, maxsources), found the value `ntp.ubuntu.com`");
        insta::assert_snapshot!(error("ntp_servers:\n  zcloud: [192.168.6.200]\n"), @"inv.yaml:2:11: ntp_servers.zcloud: expected a mapping of server settings (address, ssh, upstream, allow, ...), found a list");
        insta::assert_snapshot!(error("clients: [1, 2]\n"), @"inv.yaml:1:10: clients: expected a mapping of client names to their settings, e.g. `z-b-data-1: { address: 192.168.6.204 }`, found a list");
        insta::assert_snapshot!(error("- ssh\n"), @"inv.yaml:1:1: expected a mapping of inventory sections (ssh, templates, ntp_servers, clients, ...), found a list");
        insta::assert_snapshot!(error(&with("ssh: { jump: zcloud }", "ssh: zcloud")), @"inv.yaml:20:46: clients.z-b-data-1.ssh: expected a mapping of SSH settings (user, host, port, identity_file, ...), found the value `zcloud`");
        insta::assert_snapshot!(error(&with("port: 22", "port: 70000")), @"inv.yaml:13:44: ntp_servers.zcloud.ssh.port: must be 1 to 65535, not 70000");
        insta::assert_snapshot!(error(&with("port: 22", "port: ssh")), @"inv.yaml:13:44: ntp_servers.zcloud.ssh.port: expected a port number (1 to 65535), found the value `ssh`");
        insta::assert_snapshot!(error(&with("user: root", "user: \"root;id\"")), @r#"inv.yaml:3:9: ssh.user: invalid user name "root;id": contains ';', which is not allowed here"#);
        insta::assert_snapshot!(error(&with("- pool: ntp.ubuntu.com", "- { pool: a, server: b }")), @"inv.yaml:15:9: ntp_servers.zcloud.upstream[0]: an upstream has exactly one of `pool: HOST` or `server: HOST`");
        insta::assert_snapshot!(error(&with("- pool: ntp.ubuntu.com", "- { server: a, maxsources: 4 }")), @"inv.yaml:15:9: ntp_servers.zcloud.upstream[0]: `maxsources` is for a `pool`; a `server` is one source");
        insta::assert_snapshot!(error(&with("- pool: ntp.ubuntu.com", "- { pool: a, maxsources: 40 }")), @"inv.yaml:15:32: ntp_servers.zcloud.upstream[0].maxsources: must be 1 to 16, not 40");
        insta::assert_snapshot!(error(&with("- pool: ntp.ubuntu.com", "- { pool: a, iburst: yes }")), @"inv.yaml:15:28: ntp_servers.zcloud.upstream[0].iburst: expected `true` or `false`, found the value `yes`");
        insta::assert_snapshot!(error("ntp_servers:\n  'bad name':\n    address: 1.2.3.4\n"), @r#"inv.yaml:2:3: ntp_servers: invalid name "bad name": contains a space; names use letters, digits, '-', '_' and '.'"#);
        insta::assert_snapshot!(error("ntp_servers:\n  zcloud:\n    local_stratum: 10\n"), @"inv.yaml:3:5: ntp_servers.zcloud: the required field `address` is missing");
        insta::assert_snapshot!(error(&format!("{GOOD}---\nclients: {{}}\n")), @"inv.yaml:27:1: a second YAML document starts here; the inventory is one document (remove the `---` line)");
    }

    #[test]
    fn local_stratum_is_checked_at_its_own_line_in_words() {
        insta::assert_snapshot!(error(&with("local_stratum: 10", "local_stratum: 16")), @"inv.yaml:17:20: ntp_servers.zcloud.local_stratum: must be 1 to 15 (chrony's range), not 16");
        insta::assert_snapshot!(error(&with("local_stratum: 10", "local_stratum: 0")), @"inv.yaml:17:20: ntp_servers.zcloud.local_stratum: must be 1 to 15 (chrony's range), not 0");
        insta::assert_snapshot!(error(&with("local_stratum: 10", "local_stratum: ten")), @"inv.yaml:17:20: ntp_servers.zcloud.local_stratum: expected a stratum, 1 to 15 (chrony's range), found the value `ten`");
    }

    #[test]
    fn a_server_that_could_never_synchronize_is_refused() {
        let alone = with("    upstream:\n      - pool: ntp.ubuntu.com      # or `server: HOST`; iburst by default\n", "")
            .replace("    local_stratum: 10             # keep serving the LAN while upstream is unreachable\n", "");
        insta::assert_snapshot!(error(&alone), @"inv.yaml:11:3: ntp_servers.zcloud: no `upstream` and no `local_stratum`: chrony would never count itself synchronized, so no client would ever synchronize to it; add `local_stratum: 10` to serve this server's own clock (an isolated LAN), or an `upstream:` list of time sources");
        // Either one is enough.
        let stratum_only = with(
            "    upstream:\n      - pool: ntp.ubuntu.com      # or `server: HOST`; iburst by default\n",
            "",
        );
        assert!(Inventory::parse(Path::new("inv.yaml"), &stratum_only).is_ok());
        let upstream_only = with(
            "    local_stratum: 10             # keep serving the LAN while upstream is unreachable\n",
            "",
        );
        assert!(Inventory::parse(Path::new("inv.yaml"), &upstream_only).is_ok());
    }

    #[test]
    fn whole_inventory_checks_name_every_problem() {
        let source = GOOD
            .replace(
                "z-b-data-2: { address: 192.168.6.205 }",
                "z-b-data-2: { address: 10.0.0.5 }",
            )
            .replace(
                "z-b-data-3: { address: 192.168.6.206 }",
                "z-b-data-3: { address: 192.168.6.206, ntp: [zclod] }",
            )
            .replace("ssh: { jump: zcloud }", "ssh: { jump: bastion }");
        insta::assert_snapshot!(error(&source), @r"
            inv.yaml:20:54: clients.z-b-data-1.ssh.jump: no inventory host is named bastion (a host outside the inventory is written [user@]host[:port], e.g. root@bastion or bastion:22)
            inv.yaml:21:26: clients.z-b-data-2.address: 10.0.0.5 is outside every `allow` network of server zcloud (192.168.6.0/24), so it would never be served
            inv.yaml:22:47: clients.z-b-data-3.ntp: no ntp_servers entry is named zclod; did you mean `zcloud`?
            ");
        let no_allow = with("    allow: [192.168.6.0/24]\n", "");
        insta::assert_snapshot!(error(&no_allow), @"inv.yaml:11:3: ntp_servers.zcloud.allow: chrony refuses every client until an `allow` line exists; list the clients' networks, e.g. `allow: [192.168.6.0/24]`");
        let client_as_server = with(
            "z-b-data-3: { address: 192.168.6.206 }",
            "z-b-data-3: { address: 192.168.6.206, ntp: [z-b-data-1] }",
        );
        insta::assert_snapshot!(error(&client_as_server), @"inv.yaml:22:47: clients.z-b-data-3.ntp: z-b-data-1 is a client, not an ntp_servers entry");
        let image = with(
            "    path: /var/lib/libvirt/images/z-ubuntu20.qcow2\n",
            "    path: z.qcow2\n    ntp: [zcluod]\n",
        );
        insta::assert_snapshot!(error(&image), @"inv.yaml:27:11: images.z-ubuntu20.ntp: no ntp_servers entry is named zcluod; did you mean `zcloud`?");
    }

    #[test]
    fn host_name_references_suggest_the_closest_host() {
        insta::assert_snapshot!(error(&with("ssh: { jump: zcloud }", "ssh: { jump: zclod }")), @"inv.yaml:20:54: clients.z-b-data-1.ssh.jump: no inventory host is named zclod; did you mean `zcloud`? (a host outside the inventory is written [user@]host[:port], e.g. root@zclod or zclod:22)");
        insta::assert_snapshot!(error(&with("  user: root\n", "  user: root\n  jump: z-b-dat-1\n")), @"inv.yaml:4:9: ssh.jump: no inventory host is named z-b-dat-1; did you mean `z-b-data-1`? (a host outside the inventory is written [user@]host[:port], e.g. root@z-b-dat-1 or z-b-dat-1:22)");
    }

    #[test]
    fn jump_forms_are_checked_when_the_inventory_is_read() {
        let with =
            |jump: &str| GOOD.replace("ssh: { jump: zcloud }", &format!("ssh: {{ jump: {jump} }}"));
        for good in [
            "zcloud",
            "\"root@10.0.0.1:2222\"",
            "\"huatai@bastion\"",
            "\"bastion:22\"",
            "bastion.example.net",
            "10.0.0.1",
            "\"zcloud,root@bastion:22\"",
        ] {
            let inventory = Inventory::parse(Path::new("inv.yaml"), &with(good));
            assert!(inventory.is_ok(), "{good}: {}", inventory.unwrap_err());
        }
        insta::assert_snapshot!(error(&with("\"root@bad host:22\"")), @r#"inv.yaml:20:54: clients.z-b-data-1.ssh.jump: invalid jump host "root@bad host:22": invalid address "bad host": contains a space; expected an IP address or a DNS name"#);
        insta::assert_snapshot!(error(&with("\"root@bastion:99999\"")), @r#"inv.yaml:20:54: clients.z-b-data-1.ssh.jump: invalid jump host "root@bastion:99999": the port "99999" is not a port number (1 to 65535)"#);
        insta::assert_snapshot!(error(&with("z-b-data-1")), @"inv.yaml:20:54: clients.z-b-data-1.ssh.jump: z-b-data-1 cannot jump through itself");
        let looped = with("z-b-data-2")
            .replace(
                "z-b-data-2: { address: 192.168.6.205 }",
                "z-b-data-2: { address: 192.168.6.205, ssh: { jump: \"z-b-data-3,zcloud\" } }",
            )
            .replace(
                "z-b-data-3: { address: 192.168.6.206 }",
                "z-b-data-3: { address: 192.168.6.206, ssh: { jump: z-b-data-1 } }",
            );
        insta::assert_snapshot!(error(&looped), @r"
            inv.yaml:20:54: clients.z-b-data-1.ssh.jump: the jump chain loops: z-b-data-1 -> z-b-data-2 -> z-b-data-3 -> z-b-data-1
            inv.yaml:21:54: clients.z-b-data-2.ssh.jump: the jump chain loops: z-b-data-2 -> z-b-data-3 -> z-b-data-1 -> z-b-data-2
            inv.yaml:22:54: clients.z-b-data-3.ssh.jump: the jump chain loops: z-b-data-3 -> z-b-data-1 -> z-b-data-2 -> z-b-data-3
            ");
    }

    #[test]
    fn a_clients_daemon_is_its_own_else_the_inventorys_else_its_oss() {
        let source = "ntp_servers:\n  s: { address: 10.0.0.1, local_stratum: 10, allow: [10.0.0.0/24] }\nclients:\n  a: { address: 10.0.0.2 }\n  b: { address: 10.0.0.3, daemon: chrony }\n  c: { address: 10.0.0.4, daemon: timesyncd }\n";
        let alone = Inventory::parse(Path::new("inv.yaml"), source).unwrap();
        let daemons = |inventory: &Inventory, os: (&str, &str)| {
            inventory
                .hosts
                .iter()
                .map(|h| h.daemon(os.0, os.1))
                .collect::<Vec<_>>()
        };
        let (c, t) = (Daemon::Chrony, Daemon::Timesyncd);
        assert_eq!(daemons(&alone, ("ubuntu", "24.04")), [c, t, c, t]);
        assert_eq!(daemons(&alone, ("ubuntu", "26.04")), [c, c, c, t]);
        assert_eq!(daemons(&alone, ("rocky", "9.4")), [c, c, c, t]);
        assert_eq!(alone.hosts[1].chosen_daemon(), None);
        let defaulted =
            Inventory::parse(Path::new("inv.yaml"), &format!("daemon: chrony\n{source}")).unwrap();
        assert_eq!(daemons(&defaulted, ("debian", "12")), [c, c, c, t]);
        let typo = error(&source.replace("daemon: chrony", "daemon: chronyd"));
        assert!(
            typo.contains("inv.yaml:5:") && typo.contains("chronyd"),
            "{typo}"
        );
    }

    #[test]
    fn empty_sections_are_empty() {
        let inventory = Inventory::parse(
            Path::new("inv.yaml"),
            "ssh:\n  user: root\nclients:\n# none yet\n",
        )
        .unwrap();
        assert!(inventory.hosts.is_empty());
        assert!(Inventory::parse(Path::new("inv.yaml"), "").is_ok());
    }

    #[test]
    fn placement_hints_know_every_struct() {
        for (name, fields) in [
            yaml::struct_fields::<SshOptions>(),
            yaml::struct_fields::<ServerSpec>(),
            yaml::struct_fields::<Upstream>(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(!fields.is_empty(), "{name}");
        }
        assert_eq!(
            yaml::struct_fields::<Upstream>().map(|(name, _)| name),
            Some("upstream settings")
        );
    }
}

#[cfg(test)]
mod nts_tests {
    use super::*;
    use crate::nts::tests::fixture;

    /// An inventory beside the NTS fixtures, so that its relative paths name them.
    fn parse(source: &str) -> Result<Inventory, String> {
        Inventory::parse(&fixture("inv.yaml"), source).map_err(|e| {
            e.to_string()
                .replace(&fixture("").display().to_string(), "FIXTURES/")
        })
    }

    const NTS: &str = "ntp_servers:\n  zcloud:\n    address: 192.168.6.200\n    local_stratum: 10\n    allow: [192.168.6.0/24]\n    nts:\n      certificate: server.crt\n      key: server.key\nclients:\n  c1:\n    address: 192.168.6.226\n    daemon: chrony\n    nts: true\n  c2:\n    address: 192.168.6.227\n    nts: {trusted_certs: ca.crt}\n  c3:\n    address: 192.168.6.228\n";

    #[test]
    fn nts_servers_and_clients_load_with_their_files() {
        let inventory = parse(NTS).unwrap();
        let nts: Vec<&HostNts> = inventory.hosts.iter().map(|h| &h.nts).collect();
        let HostNts::Server { certificate, key } = nts[0] else {
            panic!("{nts:?}")
        };
        assert!(
            certificate
                .content
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            nts[1],
            &HostNts::Client {
                trusted_certs: None
            }
        );
        assert!(matches!(
            nts[2],
            HostNts::Client {
                trusted_certs: Some(_)
            }
        ));
        assert_eq!(nts[3], &HostNts::Off);
        // The key never shows in a Debug print of the inventory.
        let debug = format!("{inventory:?}");
        assert!(
            !debug.contains(key.expose().lines().nth(1).unwrap()),
            "{debug}"
        );
    }

    #[test]
    fn nts_refusals_name_file_line_and_field() {
        let wrong_address = NTS.replace("address: 192.168.6.200", "address: 192.168.6.201");
        insta::assert_snapshot!(parse(&wrong_address).unwrap_err(), @"FIXTURES/inv.yaml:7:20: ntp_servers.zcloud.nts.certificate: certificate server.crt names zcloud.lan, 192.168.6.200; not 192.168.6.201 (clients check the server's address against the certificate's subjectAltName)");
        let swapped = NTS
            .replace("certificate: server.crt", "certificate: server.key")
            .replace("key: server.key", "key: server.crt");
        insta::assert_snapshot!(parse(&swapped).unwrap_err(), @"
        FIXTURES/inv.yaml:7:20: ntp_servers.zcloud.nts.certificate: FIXTURES/server.key is not a PEM certificate (no `-----BEGIN CERTIFICATE-----` line)
        FIXTURES/inv.yaml:8:12: ntp_servers.zcloud.nts.key: FIXTURES/server.crt is not a PEM private key (it holds a CERTIFICATE)
        ");
        let missing = NTS.replace("key: server.key", "key: nowhere.key");
        insta::assert_snapshot!(parse(&missing).unwrap_err(), @"FIXTURES/inv.yaml:8:12: ntp_servers.zcloud.nts.key: cannot read the key FIXTURES/nowhere.key: No such file or directory");
        let timesyncd = NTS.replace(
            "    daemon: chrony\n    nts: true",
            "    daemon: timesyncd\n    nts: true",
        );
        insta::assert_snapshot!(parse(&timesyncd).unwrap_err(), @"FIXTURES/inv.yaml:13:5: clients.c1.nts: systemd-timesyncd has no NTS; a client with `nts` runs chrony: set `daemon: chrony` (or leave `daemon` out where the OS runs chrony)");
        let plain_server = NTS.replace(
            "    nts:\n      certificate: server.crt\n      key: server.key\n",
            "",
        );
        insta::assert_snapshot!(parse(&plain_server).unwrap_err(), @"
        FIXTURES/inv.yaml:10:5: clients.c1.nts: server zcloud serves no NTS (it has no `nts:` certificate and key), so this client could never authenticate it: give zcloud an `nts:` block, or leave `nts` out here
        FIXTURES/inv.yaml:13:5: clients.c2.nts: server zcloud serves no NTS (it has no `nts:` certificate and key), so this client could never authenticate it: give zcloud an `nts:` block, or leave `nts` out here
        ");
        let bad_ca = NTS.replace("trusted_certs: ca.crt", "trusted_certs: server.key");
        insta::assert_snapshot!(parse(&bad_ca).unwrap_err(), @"FIXTURES/inv.yaml:16:26: clients.c2.nts.trusted_certs: FIXTURES/server.key is not a PEM certificate (no `-----BEGIN CERTIFICATE-----` line)");
        let typo = NTS.replace("trusted_certs: ca.crt", "trusted_cert: ca.crt");
        insta::assert_snapshot!(parse(&typo).unwrap_err(), @"FIXTURES/inv.yaml:16:11: clients.c2.nts: unknown field `trusted_cert`; did you mean `trusted_certs`?");
        let word = NTS.replace("nts: true", "nts: yes please");
        insta::assert_snapshot!(parse(&word).unwrap_err(), @"FIXTURES/inv.yaml:13:10: clients.c1.nts: expected `true`, `false` or `{trusted_certs: FILE}` (a private CA), found the value `yes please`");
    }
}
