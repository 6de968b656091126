//! The inventory: the one declarative file that says which hosts serve time and which follow.
//!
//! Loading is all-or-nothing: the YAML is parsed into validated types (a bad value fails with
//! its line and column), then the inventory is checked as a whole. Every error names the file,
//! the line and the field, and nothing is done on any host before the inventory is accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::libvirt::LibvirtSpec;
use crate::value::{Cidr, DurationValue, JumpList, JumpRef, LocalPath, Name, NetAddress, UserName};

/// How the controller reaches a host. Every field is optional: a host's own block overrides the
/// inventory's `ssh:` defaults field by field.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SshOptions {
    pub user: Option<UserName>,
    /// Where to connect when it is not the host's `address`.
    pub host: Option<NetAddress>,
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
#[serde(deny_unknown_fields)]
struct UpstreamFields {
    pool: Option<NetAddress>,
    server: Option<NetAddress>,
    iburst: Option<bool>,
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
        if let Some(n) = fields.maxsources
            && (kind != UpstreamKind::Pool || !(1..=16).contains(&n))
        {
            return Err(D::Error::custom(
                "`maxsources` is for a `pool` and is 1..=16",
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
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub address: NetAddress,
    #[serde(default)]
    pub ssh: SshOptions,
    #[serde(default)]
    pub upstream: Vec<Upstream>,
    #[serde(default)]
    pub allow: Vec<Cidr>,
    #[serde(default, deserialize_with = "stratum")]
    pub local_stratum: Option<u8>,
}

fn stratum<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    let value = Option::<u8>::deserialize(deserializer)?;
    match value {
        Some(n) if !(1..=15).contains(&n) => Err(serde::de::Error::custom(format!(
            "invalid local_stratum {n}: chrony takes 1..=15"
        ))),
        other => Ok(other),
    }
}

/// A systemd-timesyncd client.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub address: NetAddress,
    #[serde(default)]
    pub ssh: SshOptions,
    /// The `ntp_servers` this client follows; all of them when absent.
    pub ntp: Option<Vec<Name>>,
    /// `FallbackNTP=`; the distribution's default when absent.
    pub fallback_ntp: Option<Vec<NetAddress>>,
}

/// A golden VM image for `bake`: a disk image or a mounted root directory (`path`), or a libvirt
/// domain's disks (`libvirt`); exactly one of the two.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub path: Option<LocalPath>,
    pub libvirt: Option<LibvirtSpec>,
    pub ntp: Option<Vec<Name>>,
    pub fallback_ntp: Option<Vec<NetAddress>>,
}

/// The inventory as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    #[serde(default)]
    pub ssh: SshOptions,
    /// A directory whose `chrony.conf.j2` / `timesyncd.conf.j2` replace the built-in templates.
    pub templates: Option<LocalPath>,
    #[serde(default)]
    pub ntp_servers: BTreeMap<Name, ServerSpec>,
    #[serde(default)]
    pub clients: BTreeMap<Name, ClientSpec>,
    #[serde(default)]
    pub images: BTreeMap<Name, ImageSpec>,
}

/// What a host does in the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Server(ServerSpec),
    /// A client, with the addresses of the servers it follows, in order.
    Client {
        spec: ClientSpec,
        servers: Vec<NetAddress>,
    },
}

/// One host with its effective settings, ready for rendering and connecting.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: Name,
    pub address: NetAddress,
    pub ssh: SshOptions,
    pub role: Role,
}

impl Host {
    #[must_use]
    pub fn is_server(&self) -> bool {
        matches!(self.role, Role::Server(_))
    }
}

/// A loaded, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    /// The text as read, to point at a field in later messages (e.g. a missing `config_file`).
    pub source: String,
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

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
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
        let source = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
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
        let file: InventoryFile = serde_yaml_ng::from_str(source).map_err(|e| {
            let location = e.location();
            let text = e.to_string();
            // serde_yaml_ng formats as "<path>: <message> at line L column C"; split it up so
            // every problem prints the same way.
            let text = match location.as_ref() {
                Some(l) => text
                    .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or(&text)
                    .to_owned(),
                None => text,
            };
            let (field, message) = match text.split_once(": ") {
                Some((field, message)) if !field.contains(' ') => {
                    (field.to_owned(), message.to_owned())
                }
                _ => (String::new(), text),
            };
            invalid(vec![InventoryProblem {
                line: location.as_ref().map(serde_yaml_ng::Location::line),
                column: location.as_ref().map(serde_yaml_ng::Location::column),
                field,
                message,
            }])
        })?;
        let problems = check(&file, source);
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let hosts = resolve_hosts(&file);
        Ok(Inventory {
            path: path.to_owned(),
            source: source.to_owned(),
            file,
            hosts,
        })
    }

    /// The directory that relative paths in the inventory are relative to.
    #[must_use]
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

fn resolve_hosts(file: &InventoryFile) -> Vec<Host> {
    let mut hosts = Vec::new();
    for (name, spec) in &file.ntp_servers {
        hosts.push(Host {
            name: name.clone(),
            address: spec.address.clone(),
            ssh: spec.ssh.or(&file.ssh),
            role: Role::Server(spec.clone()),
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
            },
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

/// Whole-inventory checks: references resolve, clients are allowed by their servers.
fn check(file: &InventoryFile, source: &str) -> Vec<InventoryProblem> {
    let mut problems = Vec::new();
    let mut problem = |path: &[&str], message: String| {
        let (line, column) = locate(source, path).map_or((None, None), |(l, c)| (Some(l), Some(c)));
        problems.push(InventoryProblem {
            line,
            column,
            field: path.join("."),
            message,
        });
    };
    for name in file.clients.keys() {
        if file.ntp_servers.contains_key(name) {
            problem(
                &["clients", name.as_str()],
                format!("{name} is also in ntp_servers; a host is a server or a client, not both"),
            );
        }
    }
    if !file.clients.is_empty() && file.ntp_servers.is_empty() {
        problem(
            &["clients"],
            "there are clients but no ntp_servers for them to follow".to_owned(),
        );
    }
    let known_host = |n: &Name| file.ntp_servers.contains_key(n) || file.clients.contains_key(n);
    let hosts = file
        .ntp_servers
        .iter()
        .map(|(n, s)| ("ntp_servers", n, &s.ssh))
        .chain(file.clients.iter().map(|(n, c)| ("clients", n, &c.ssh)));
    for (section, name, ssh) in hosts {
        let Some(jump) = &ssh.jump else { continue };
        let field = [section, name.as_str(), "ssh", "jump"];
        for hop in &jump.0 {
            let JumpRef::Name(hop) = hop else { continue };
            if hop == name {
                problem(&field, format!("{name} cannot jump through itself"));
            } else if !known_host(hop) && !looks_like_an_address(hop) {
                // A bare single word is an inventory name or a typo; an outside host is written
                // with a user or a port, so that a typo cannot send us somewhere else.
                problem(
                    &field,
                    format!(
                        "no inventory host is named {hop}; a host outside the inventory is written [user@]host[:port], e.g. root@{hop} or {hop}:22"
                    ),
                );
            }
        }
        if let Some(path) = jump_loop(file, name) {
            problem(&field, format!("the jump chain loops: {path}"));
        }
    }
    for (name, server) in &file.ntp_servers {
        if server.allow.is_empty() && !file.clients.is_empty() {
            problem(
                &["ntp_servers", name.as_str(), "allow"],
                "chrony refuses every client until an `allow` line exists; list the clients' networks"
                    .to_owned(),
            );
        }
    }
    for (name, client) in &file.clients {
        check_client_servers(
            file,
            &["clients", name.as_str()],
            &client.address,
            client.ntp.as_deref(),
            &mut problem,
        );
    }
    for (name, image) in &file.images {
        let path = &["images", name.as_str()];
        match (&image.path, &image.libvirt) {
            (None, None) => problem(
                path,
                "an image needs `path` (a disk image or a root directory) or `libvirt` (a domain)"
                    .to_owned(),
            ),
            (Some(_), Some(_)) => problem(
                &[path[0], path[1], "libvirt"],
                "give either `path` or `libvirt`, not both".to_owned(),
            ),
            (Some(local), None) if is_filesystem_root(local) => problem(
                &[path[0], path[1], "path"],
                "`/` is this machine's own root directory, not an image".to_owned(),
            ),
            _ => {}
        }
        if let Some(names) = &image.ntp {
            for server in names {
                if !file.ntp_servers.contains_key(server) {
                    problem(
                        &[path[0], path[1], "ntp"],
                        format!("no ntp_servers entry is named {server}"),
                    );
                }
            }
        } else if file.ntp_servers.is_empty() {
            problem(path, "an image needs ntp_servers to point at".to_owned());
        }
    }
    problems
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

fn check_client_servers(
    file: &InventoryFile,
    path: &[&str],
    address: &NetAddress,
    names: Option<&[Name]>,
    problem: &mut impl FnMut(&[&str], String),
) {
    let ntp_path = [path[0], path[1], "ntp"];
    let used: Vec<(&Name, &ServerSpec)> = match names {
        Some(names) => {
            if names.is_empty() {
                problem(
                    &ntp_path,
                    "an empty list leaves the client with no server".to_owned(),
                );
            }
            names
                .iter()
                .filter_map(|n| {
                    if let Some(found) = file.ntp_servers.get_key_value(n) {
                        Some(found)
                    } else {
                        problem(&ntp_path, format!("no ntp_servers entry is named {n}"));
                        None
                    }
                })
                .collect()
        }
        None => file.ntp_servers.iter().collect(),
    };
    let Some(ip) = address.ip() else { return };
    for (server_name, server) in used {
        if !server.allow.is_empty() && !server.allow.iter().any(|cidr| cidr.contains(ip)) {
            let allowed: Vec<String> = server.allow.iter().map(ToString::to_string).collect();
            problem(
                &[path[0], path[1], "address"],
                format!(
                    "{ip} is outside every `allow` network of server {server_name} ({}), so it would never be served",
                    allowed.join(", ")
                ),
            );
        }
    }
}

/// Find the line and column of a dotted field in YAML text, for messages about values that
/// parsed fine but do not fit together. Handles block mappings and one-line flow mappings; falls
/// back to the nearest enclosing key that it can find.
#[must_use]
pub fn locate(source: &str, path: &[&str]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found: Option<(usize, usize)> = None;
    // The block we search: lines [start, end) with keys indented more than `parent_indent`.
    let (mut start, mut end, mut parent_indent) = (0usize, lines.len(), -1isize);
    for key in path {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().take(end).skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = isize::try_from(line.len() - trimmed.len()).unwrap_or(isize::MAX);
            if indent <= parent_indent {
                end = i;
                break;
            }
            let bare = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            let key_text = bare
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\'']);
            if key_text == *key && bare.contains(':') {
                hit = Some((i, indent));
                break;
            }
        }
        if let Some((i, indent)) = hit {
            found = Some((i + 1, usize::try_from(indent).unwrap_or(0) + 1));
            start = i + 1;
            parent_indent = indent;
            end = lines.len();
        } else {
            // A flow mapping on the parent's line: `name: { address: ..., ssh: { jump: x } }`.
            if let Some((line_no, _)) = found {
                let text = lines[line_no - 1];
                if let Some(col) = find_flow_key(text, key) {
                    found = Some((line_no, col + 1));
                    continue;
                }
            }
            return found;
        }
    }
    found
}

fn find_flow_key(text: &str, key: &str) -> Option<usize> {
    let needle = format!("{key}:");
    text.match_indices(&needle)
        .find(|(i, _)| *i > 0 && matches!(text.as_bytes()[i - 1], b'{' | b' ' | b','))
        .map(|(i, _)| i)
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Server(_) => f.write_str("chrony server"),
            Role::Client { .. } => f.write_str("timesyncd client"),
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

    #[test]
    fn the_contract_inventory_loads() {
        let inventory = Inventory::parse(Path::new("inventories/zcloud.yaml"), GOOD).unwrap();
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
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
    }

    #[test]
    fn hostile_values_are_refused_with_their_line() {
        let newline = GOOD.replace(
            "address: 192.168.6.205",
            r#"address: "127.0.1.3\nallow all""#,
        );
        insta::assert_snapshot!(error(&newline), @r#"inv.yaml:21:15: clients.z-b-data-2: invalid address "127.0.1.3\nallow all": contains a newline; expected an IP address or a DNS name"#);
        let command = GOOD.replace("pool: ntp.ubuntu.com", "pool: $(reboot)");
        insta::assert_snapshot!(error(&command), @r#"inv.yaml:15:9: ntp_servers.zcloud.upstream[0]: invalid address "$(reboot)": contains '$', which is not allowed here; expected an IP address or a DNS name"#);
        let allow = GOOD.replace("allow: [192.168.6.0/24]", "allow: [\"192.168.6.0/24 all\"]");
        insta::assert_snapshot!(error(&allow), @r#"inv.yaml:16:12: ntp_servers.zcloud.allow: invalid CIDR "192.168.6.0/24 all": the prefix length must be a number"#);
    }

    #[test]
    fn typos_and_wrong_types_are_refused() {
        insta::assert_snapshot!(error(&GOOD.replace("local_stratum: 10", "local_stratun: 10")), @"inv.yaml:17:5: ntp_servers.zcloud: unknown field `local_stratun`, expected one of `address`, `ssh`, `upstream`, `allow`, `local_stratum`");
        insta::assert_snapshot!(error(&GOOD.replace("local_stratum: 10", "local_stratum: 16")), @"inv.yaml:12:5: ntp_servers.zcloud: invalid local_stratum 16: chrony takes 1..=15");
        insta::assert_snapshot!(error(&GOOD.replace("port: 22", "port: 70000")), @"inv.yaml:13:44: ntp_servers.zcloud.ssh.port: invalid value: integer `70000`, expected u16");
        insta::assert_snapshot!(error(&GOOD.replace("host_key_policy: strict", "host_key_policy: yolo")), @"inv.yaml:6:20: ssh.host_key_policy: unknown variant `yolo`, expected `strict` or `accept-new`");
        insta::assert_snapshot!(error(&GOOD.replace("user: root", "user: \"root;id\"")), @r#"inv.yaml:3:3: ssh: invalid user name "root;id": contains ';', which is not allowed here"#);
        insta::assert_snapshot!(error(&GOOD.replace("- pool: ntp.ubuntu.com", "- { pool: a, server: b }")), @"inv.yaml:15:7: ntp_servers.zcloud.upstream: an upstream has exactly one of `pool: HOST` or `server: HOST`");
        insta::assert_snapshot!(error("clients: [1, 2]\n"), @"inv.yaml:1:10: clients: invalid type: sequence, expected a map");
        insta::assert_snapshot!(error("ntp_servers:\n  'bad name':\n    address: 1.2.3.4\n"), @r#"inv.yaml:2:3: ntp_servers: invalid name "bad name": contains a space; names use letters, digits, '-', '_' and '.'"#);
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
        inv.yaml:20:48: clients.z-b-data-1.ssh.jump: no inventory host is named bastion; a host outside the inventory is written [user@]host[:port], e.g. root@bastion or bastion:22
        inv.yaml:21:17: clients.z-b-data-2.address: 10.0.0.5 is outside every `allow` network of server zcloud (192.168.6.0/24), so it would never be served
        inv.yaml:22:41: clients.z-b-data-3.ntp: no ntp_servers entry is named zclod
        ");
        let no_allow = GOOD.replace("    allow: [192.168.6.0/24]\n", "");
        insta::assert_snapshot!(error(&no_allow), @"inv.yaml:11:3: ntp_servers.zcloud.allow: chrony refuses every client until an `allow` line exists; list the clients' networks");
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
        insta::assert_snapshot!(error(&with("\"root@bad host:22\"")), @r#"inv.yaml:20:46: clients.z-b-data-1.ssh: invalid jump host "root@bad host:22": invalid address "bad host": contains a space; expected an IP address or a DNS name"#);
        insta::assert_snapshot!(error(&with("\"root@bastion:99999\"")), @r#"inv.yaml:20:46: clients.z-b-data-1.ssh: invalid jump host "root@bastion:99999": the port "99999" is not 1..=65535"#);
        insta::assert_snapshot!(error(&with("z-b-data-1")), @"inv.yaml:20:48: clients.z-b-data-1.ssh.jump: z-b-data-1 cannot jump through itself");
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
        inv.yaml:20:48: clients.z-b-data-1.ssh.jump: the jump chain loops: z-b-data-1 -> z-b-data-2 -> z-b-data-3 -> z-b-data-1
        inv.yaml:21:48: clients.z-b-data-2.ssh.jump: the jump chain loops: z-b-data-2 -> z-b-data-3 -> z-b-data-1 -> z-b-data-2
        inv.yaml:22:48: clients.z-b-data-3.ssh.jump: the jump chain loops: z-b-data-3 -> z-b-data-1 -> z-b-data-2 -> z-b-data-3
        ");
    }

    #[test]
    fn locate_finds_block_and_flow_fields() {
        let source = "a:\n  b:\n    c: 1\n  d: { e: 2, f: { g: 3 } }\n";
        assert_eq!(locate(source, &["a", "b", "c"]), Some((3, 5)));
        assert_eq!(locate(source, &["a", "d", "f"]), Some((4, 14)));
        assert_eq!(locate(source, &["a", "x"]), Some((1, 1)));
    }
}
